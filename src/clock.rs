//! Time stamps for frames. Wall-clock time is read once per connection and frame times are derived from
//! the monotonic clock after that, so an NTP step or a manual clock change never reorders frames or
//! makes latencies negative.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A pairing of the monotonic and the wall clock, taken at one moment.
#[derive(Debug, Clone, Copy)]
pub struct WallAnchor {
    instant: Instant,
    system: SystemTime,
}

impl WallAnchor {
    pub fn now() -> Self {
        WallAnchor { instant: Instant::now(), system: SystemTime::now() }
    }

    /// The wall-clock time of a monotonic instant, measured from this anchor.
    pub fn wall_time(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.system + after,
            None => self.system - self.instant.duration_since(at),
        }
    }
}

/// Seconds since the Unix epoch, for JSON output.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_follows_the_monotonic_clock() {
        let anchor = WallAnchor::now();
        let later = anchor.instant + Duration::from_millis(1500);
        let wall = anchor.wall_time(later);
        assert_eq!(wall.duration_since(anchor.system).unwrap(), Duration::from_millis(1500));
    }
}
