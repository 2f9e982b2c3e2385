//! Reconnect delays: exponential from an initial wait up to a maximum, with jitter so a fleet of cameras
//! behind one switch that rebooted does not reconnect in lockstep.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), attempt: 0, rng: fastrand::Rng::new() }
    }

    /// A backoff with a fixed random sequence, for tests.
    pub fn with_seed(initial: Duration, max: Duration, seed: u64) -> Self {
        Backoff { rng: fastrand::Rng::with_seed(seed), ..Self::new(initial, max) }
    }

    /// The next wait: the exponential step (capped), scaled by a random factor in [0.5, 1.0].
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2f64.powi(self.attempt.min(30) as i32);
        let step = self.initial.mul_f64(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        step.mul_f64(0.5 + 0.5 * self.rng.f64())
    }

    /// Back to the initial wait, after a connection that delivered frames.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(2), 7);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let step = Duration::from_millis(100).mul_f64(2f64.powi(i as i32)).min(Duration::from_secs(2));
            assert!(*d >= step / 2 && *d <= step, "attempt {i}: {d:?} outside [{:?}, {step:?}]", step / 2);
        }
        assert!(delays[7] >= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_differs_between_sources() {
        let a: Vec<_> = { let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(60), 1); (0..4).map(|_| b.next_delay()).collect() };
        let c: Vec<_> = { let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(60), 2); (0..4).map(|_| b.next_delay()).collect() };
        assert_ne!(a, c);
    }
}
