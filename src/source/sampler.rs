//! Chunk-rate sampling by presentation time. The timeline is cut into slots of 1/fps seconds; the first
//! decoded frame whose PTS falls in a slot not yet served is kept. Counting frames instead would drift on
//! variable-rate cameras and after lost frames; slots keep the chunk grid fixed to media time.
//!
//! Slot arithmetic is done on integer timestamps and rationals, so a frame exactly on a slot boundary
//! (PTS 0.5 s at 4 fps) lands in the later slot on every platform.

/// A rational number of seconds per tick, or ticks per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub num: i64,
    pub den: i64,
}

impl Ratio {
    pub fn new(num: i64, den: i64) -> Self {
        assert!(den != 0, "zero denominator");
        Ratio { num, den }
    }

    /// The closest ratio with a denominator up to 1001·1000 (covers 29.97 = 30000/1001 exactly).
    pub fn from_f64(x: f64) -> Self {
        for den in [1i64, 2, 4, 5, 8, 10, 100, 1000, 1001, 1_000_000] {
            let num = (x * den as f64).round();
            if ((num / den as f64) - x).abs() < 1e-9 {
                return Ratio::new(num as i64, den);
            }
        }
        Ratio::new((x * 1_000_000.0).round() as i64, 1_000_000)
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

/// What the sampler decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep the frame: it opens a new chunk slot.
    Keep { slot: i64 },
    /// Skip it: its slot is already served.
    Skip,
}

/// Keeps one frame per chunk slot of a stream's timeline.
#[derive(Debug, Clone)]
pub struct Sampler {
    fps: Ratio,
    last_slot: Option<i64>,
    /// Slots further back than this mean the stream's clock restarted (camera reboot, a new RTSP
    /// session, a looping file): start a new timeline rather than waiting for the old one.
    rewind_tolerance: i64,
}

impl Sampler {
    pub fn new(fps: f64) -> Self {
        let fps = Ratio::from_f64(fps);
        // One second back is never a reordering a decoder would emit.
        let rewind_tolerance = (fps.num + fps.den - 1) / fps.den;
        Sampler { fps, last_slot: None, rewind_tolerance: rewind_tolerance.max(1) }
    }

    /// The slot of a timestamp `ts` in units of `time_base` seconds.
    pub fn slot_of(&self, ts: i64, time_base: Ratio) -> i64 {
        // slot = floor(ts · tb · fps) with tb = a/b and fps = c/d: floor(ts·a·c / (b·d)).
        let num = ts as i128 * time_base.num as i128 * self.fps.num as i128;
        let den = time_base.den as i128 * self.fps.den as i128;
        num.div_euclid(den) as i64
    }

    /// Decides for a frame with timestamp `ts` (in `time_base` units).
    pub fn offer(&mut self, ts: i64, time_base: Ratio) -> Decision {
        let slot = self.slot_of(ts, time_base);
        match self.last_slot {
            Some(last) if slot <= last && last - slot <= self.rewind_tolerance => Decision::Skip,
            _ => {
                self.last_slot = Some(slot);
                Decision::Keep { slot }
            }
        }
    }

    /// Forgets the timeline, e.g. after a reconnect, when timestamps start over.
    pub fn reset(&mut self) {
        self.last_slot = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(fps: f64, stamps: &[i64], tb: Ratio) -> Vec<usize> {
        let mut s = Sampler::new(fps);
        stamps.iter().enumerate().filter(|(_, &ts)| matches!(s.offer(ts, tb), Decision::Keep { .. })).map(|(i, _)| i).collect()
    }

    #[test]
    fn ten_fps_to_four_keeps_the_first_frame_of_each_quarter_second() {
        let stamps: Vec<i64> = (0..11).collect();
        // Frames at 0.0, 0.1 … 1.0 s: slots [0,.25) [.25,.5) [.5,.75) [.75,1) [1,1.25).
        assert_eq!(kept(4.0, &stamps, Ratio::new(1, 10)), vec![0, 3, 5, 8, 10]);
    }

    #[test]
    fn boundaries_are_exact() {
        // 25 fps in a 1/12800 time base (as H.264 in MP4 often is): frame k at 512·k ticks.
        let stamps: Vec<i64> = (0..250).map(|k| 512 * k).collect();
        let keep = kept(4.0, &stamps, Ratio::new(1, 12800));
        assert_eq!(keep.len(), 40);
        // Slot k starts at 0.25·k s = frame 6.25·k, so the first frame in it is ceil(6.25·k).
        let expected: Vec<usize> = (0..40).map(|k| (6.25 * k as f64).ceil() as usize).collect();
        assert_eq!(keep, expected);
    }

    #[test]
    fn gaps_skip_slots_and_jitter_does_not_duplicate() {
        // 30 fps with a 2 s hole and a frame reordered by one tick.
        let tb = Ratio::new(1, 90000);
        let mut stamps: Vec<i64> = (0..30).map(|k| k * 3000).collect();
        stamps.extend((90..120).map(|k| k * 3000));
        let keep = kept(4.0, &stamps, tb);
        assert_eq!(keep.len(), 8);
    }

    #[test]
    fn a_clock_restart_starts_a_new_timeline() {
        let tb = Ratio::new(1, 1000);
        let mut s = Sampler::new(4.0);
        assert!(matches!(s.offer(100_000, tb), Decision::Keep { .. }));
        assert_eq!(s.offer(100_100, tb), Decision::Skip);
        // The camera rebooted: timestamps restart near zero.
        assert!(matches!(s.offer(0, tb), Decision::Keep { slot: 0 }));
        assert_eq!(s.offer(100, tb), Decision::Skip);
        assert!(matches!(s.offer(250, tb), Decision::Keep { slot: 1 }));
    }

    #[test]
    fn ntsc_rates_are_rational() {
        assert_eq!(Ratio::from_f64(30000.0 / 1001.0), Ratio::new(30000, 1001));
        assert_eq!(Ratio::from_f64(4.0), Ratio::new(4, 1));
        assert_eq!(Ratio::from_f64(2.5), Ratio::new(5, 2));
    }
}
