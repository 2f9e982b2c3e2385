//! The synthetic world's random numbers: SplitMix64, written out here so that a seed means the same
//! video on every build, whatever version of a random-number crate the lock file holds.

/// A small, fast, seedable generator (SplitMix64). Not for anything but procedural content.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// A generator for the `index`-th child of `seed` (video `index` of a dataset seeded `seed`):
    /// children of one seed are independent of each other and of other seeds' children.
    pub fn derive(seed: u64, index: u64) -> Self {
        let mut mix = Rng::new(seed ^ 0x5EED_5EED_5EED_5EED);
        let base = mix.next_u64();
        Rng::new(base ^ Rng::new(index.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// An index drawn with probability proportional to `weights`.
    pub fn weighted(&mut self, weights: &[f32]) -> usize {
        let total: f32 = weights.iter().sum();
        let mut pick = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                return i;
            }
            pick -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_differ_and_repeat() {
        let a: Vec<u64> = (0..4).map(|i| Rng::derive(7, i).next_u64()).collect();
        let b: Vec<u64> = (0..4).map(|i| Rng::derive(7, i).next_u64()).collect();
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert_ne!(Rng::derive(8, 0).next_u64(), a[0]);
    }

    #[test]
    fn unit_stays_in_range() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let x = rng.unit();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
