//! The motion descriptor of a sampled frame: how much the picture changed over the last few tens of
//! milliseconds, and where. A backbone sees one still image per chunk, so an actor frozen before an action
//! looks to it like the action itself; two-stream detectors add optical flow for that reason. This is
//! the cheap stand-in: frame differences on a small grey thumbnail of every decoded frame (TSN's "RGB
//! difference" modality, pooled), computed in the decode thread, which is the only place that sees the
//! frames between chunks.
//!
//! For each of [`GAPS`] the reference is the newest earlier frame at least that much older than the
//! sampled one, by presentation time: 1 and 3 frames back at 25–30 fps, 1 and 2 (83 and 167 ms) at
//! 12 fps. The references' age, and so the descriptor's scale, follows the input rate: features for a
//! detector should come from footage at a similar rate. The descriptor is, per gap, ln(1e-3 + mean
//! absolute difference) followed by the share of that difference in each cell of a [`GRID`]×[`GRID`]
//! grid, times the cell count (1 everywhere means evenly spread). Until a frame that old has been seen
//! (the start of a stream, after a clock jump) the oldest one kept stands in; the very first frame is
//! compared with itself: no motion.
//!
//! After those come, per gap, the *shape* of the motion, which does not depend on where the actor stands
//! or how large they are in the picture: the changed pixels (difference above [`SHAPE_NOISE`]) weighted by
//! how much they changed, their centroid and spread (standard deviation + 1 px per axis), then
//! ln(spread x / side), ln(spread y / side), ln(spread x / spread y), ln(total weight) and the weight's
//! shares over a [`GRID`]×[`GRID`] grid laid over centroid ± 2 spreads, times the cell count. One waving
//! arm and two, or arms and legs, differ there wherever the actor is; with no changed pixel it is all
//! zeros. `cls+motion` features keep the first [`MOTION_DIM`] values, `cls+motion+shape` all
//! [`MOTION_SHAPE_DIM`].

use std::collections::VecDeque;

use ffmpeg_next as ff;

/// Thumbnail side in pixels.
pub const THUMB: usize = 64;
/// Cells per side of the spatial grid.
pub const GRID: usize = 4;
/// How far back the reference frames are, in seconds: one frame at 25–30 fps, and about three.
pub const GAPS: [f64; 2] = [0.03, 0.1];
/// Values of the amount-and-place part of the descriptor (all gaps).
pub const MOTION_DIM: usize = GAPS.len() * (1 + GRID * GRID);
/// Values of the whole descriptor: the amount-and-place part, then the shape part (all gaps).
pub const MOTION_SHAPE_DIM: usize = MOTION_DIM + GAPS.len() * SHAPE_PER_GAP;
/// Differences up to this (in 0–1 grey levels, about 5 of 255) are sensor noise and compression, not
/// motion, for the shape.
pub const SHAPE_NOISE: f64 = 0.02;

const SHAPE_PER_GAP: usize = 4 + GRID * GRID;

/// Frames further back than this are never a reference.
const HISTORY_SECONDS: f64 = 0.5;
/// Timestamps are rationals seen through f64: three frames at 30 fps are 0.1 s apart, give or take.
const TIME_TOLERANCE: f64 = 1e-6;
/// Bounds the history on very high frame rates.
const HISTORY_FRAMES: usize = 64;

/// Keeps the recent thumbnails of one stream and describes the motion at a sampled frame.
pub struct MotionTracker {
    scaler: Option<(ScalerKey, ff::software::scaling::Context, ff::frame::Video)>,
    history: VecDeque<(f64, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

type ScalerKey = (ff::format::Pixel, u32, u32);

impl MotionTracker {
    pub fn new() -> Self {
        MotionTracker { scaler: None, history: VecDeque::new(), spare: Vec::new() }
    }

    /// Notes a decoded frame shown at `pts` seconds.
    pub fn observe(&mut self, frame: &ff::frame::Video, pts: f64) -> Result<(), ff::Error> {
        let key = (frame.format(), frame.width(), frame.height());
        if self.scaler.as_ref().is_none_or(|(k, _, _)| *k != key) {
            let context = ff::software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                ff::format::Pixel::GRAY8,
                THUMB as u32,
                THUMB as u32,
                ff::software::scaling::Flags::AREA,
            )?;
            self.scaler = Some((key, context, ff::frame::Video::empty()));
        }
        let (_, context, output) = self.scaler.as_mut().expect("just set");
        context.run(frame, output)?;
        let stride = output.stride(0);
        let data = output.data(0);
        let mut thumb = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(THUMB * THUMB));
        thumb.clear();
        for y in 0..THUMB {
            thumb.extend_from_slice(&data[y * stride..y * stride + THUMB]);
        }
        self.push(pts, thumb);
        Ok(())
    }

    fn push(&mut self, pts: f64, thumb: Vec<u8>) {
        // A clock that went back (a looping file, a restarted camera) starts a new history.
        if self.history.back().is_some_and(|(last, _)| pts < *last) {
            self.spare.extend(self.history.drain(..).map(|(_, t)| t));
        }
        while self.history.front().is_some_and(|(t, _)| *t < pts - HISTORY_SECONDS)
            || self.history.len() >= HISTORY_FRAMES
        {
            let (_, old) = self.history.pop_front().expect("not empty");
            self.spare.push(old);
        }
        // Thumbnail buffers are recycled: one decoded frame must not cost an allocation.
        self.spare.truncate(HISTORY_FRAMES);
        self.history.push_back((pts, thumb));
    }

    /// The whole descriptor ([`MOTION_SHAPE_DIM`] values) of the newest observed frame.
    pub fn describe(&self) -> Vec<f32> {
        // Before any frame, everything is compared with nothing: no motion.
        let current = self.history.back().map_or(&[][..], |(_, thumb)| thumb.as_slice());
        let pts = self.history.back().map_or(0.0, |(pts, _)| *pts);
        let references = GAPS.map(|gap| {
            self.history
                .iter()
                .rev()
                .find(|(t, _)| *t <= pts - gap + TIME_TOLERANCE)
                .or_else(|| self.history.front())
                .map_or(&[][..], |(_, thumb)| thumb.as_slice())
        });
        let mut out = Vec::with_capacity(MOTION_SHAPE_DIM);
        for reference in references {
            out.extend(describe_pair(current, reference));
        }
        for reference in references {
            out.extend(describe_shape(current, reference));
        }
        out
    }
}

impl Default for MotionTracker {
    fn default() -> Self {
        Self::new()
    }
}

/// Log mean absolute difference and its per-cell shares (× cell count) for one pair of thumbnails.
fn describe_pair(current: &[u8], reference: &[u8]) -> Vec<f32> {
    let cell = THUMB / GRID;
    let mut cells = [0f64; GRID * GRID];
    if current.len() == THUMB * THUMB && reference.len() == current.len() {
        for y in 0..THUMB {
            for x in 0..THUMB {
                let i = y * THUMB + x;
                cells[(y / cell) * GRID + x / cell] += (current[i] as f64 - reference[i] as f64).abs() / 255.0;
            }
        }
    }
    let total: f64 = cells.iter().sum();
    let mean = total / (THUMB * THUMB) as f64;
    let mut out = Vec::with_capacity(1 + GRID * GRID);
    out.push((1e-3 + mean).ln() as f32);
    let scale = (GRID * GRID) as f64 / (total + 1e-6);
    out.extend(cells.iter().map(|c| (c * scale) as f32));
    out
}

/// The motion's shape around its own centroid for one pair of thumbnails (see the module doc).
fn describe_shape(current: &[u8], reference: &[u8]) -> [f32; SHAPE_PER_GAP] {
    let mut out = [0f32; SHAPE_PER_GAP];
    if current.len() != THUMB * THUMB || reference.len() != current.len() {
        return out;
    }
    // Recomputed in each pass rather than kept: no buffer per sampled frame.
    let weights = || {
        current
            .iter()
            .zip(reference)
            .map(|(&a, &b)| ((a as f64 - b as f64).abs() / 255.0 - SHAPE_NOISE).max(0.0))
            .enumerate()
    };
    let total: f64 = weights().map(|(_, w)| w).sum();
    if total < 1e-3 {
        return out;
    }
    let centre = |i: usize| i as f64 + 0.5;
    let (mut cx, mut cy) = (0.0, 0.0);
    for (i, w) in weights() {
        cx += w * centre(i % THUMB);
        cy += w * centre(i / THUMB);
    }
    cx /= total;
    cy /= total;
    let (mut vx, mut vy) = (0.0, 0.0);
    for (i, w) in weights() {
        vx += w * (centre(i % THUMB) - cx).powi(2);
        vy += w * (centre(i / THUMB) - cy).powi(2);
    }
    // The extra pixel keeps a one-pixel-wide change from a zero spread.
    let sx = (vx / total).sqrt() + 1.0;
    let sy = (vy / total).sqrt() + 1.0;
    let cell_of = |position: f64, c: f64, spread: f64| {
        (((position - c) / (4.0 * spread) + 0.5) * GRID as f64).floor().clamp(0.0, (GRID - 1) as f64) as usize
    };
    let mut cells = [0f64; GRID * GRID];
    for (i, w) in weights() {
        cells[cell_of(centre(i / THUMB), cy, sy) * GRID + cell_of(centre(i % THUMB), cx, sx)] += w;
    }
    let side = THUMB as f64;
    out[0] = (sx / side).ln() as f32;
    out[1] = (sy / side).ln() as f32;
    out[2] = (sx / sy).ln() as f32;
    out[3] = total.ln() as f32;
    let scale = (GRID * GRID) as f64 / total;
    for (o, c) in out[4..].iter_mut().zip(cells) {
        *o = (c * scale) as f32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb(value: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..THUMB * THUMB).map(|i| value(i % THUMB, i / THUMB)).collect()
    }

    #[test]
    fn a_still_picture_has_no_motion_and_a_change_is_located() {
        let mut tracker = MotionTracker::new();
        let still = thumb(|x, y| (x * 3 + y) as u8);
        for i in 0..5 {
            tracker.push(i as f64 * 0.04, still.clone());
        }
        let described = tracker.describe();
        assert_eq!(described.len(), MOTION_SHAPE_DIM);
        assert!((described[0] - (1e-3f32).ln()).abs() < 1e-6, "{described:?}");
        assert!(described[1..17].iter().all(|&c| c == 0.0));

        // Brighten the top-left cell only: all of the difference lands there, for both gaps.
        let moved = thumb(|x, y| if x < 16 && y < 16 { 255 } else { (x * 3 + y) as u8 });
        tracker.push(0.2, moved);
        let described = tracker.describe();
        for gap in 0..GAPS.len() {
            let part = &described[gap * 17..(gap + 1) * 17];
            assert!(part[0] > -4.0, "{part:?}");
            assert!((part[1] - 16.0).abs() < 1e-3 && part[2..].iter().all(|&c| c.abs() < 1e-3), "{part:?}");
        }
    }

    #[test]
    fn references_are_chosen_by_time_and_reset_when_the_clock_goes_back() {
        let mut tracker = MotionTracker::new();
        // 25 fps: the 0.03 s reference is the previous frame, the 0.1 s one three frames back.
        for i in 0..4 {
            tracker.push(i as f64 * 0.04, thumb(|_, _| (i * 10) as u8));
        }
        tracker.push(0.16, thumb(|_, _| 100));
        let described = tracker.describe();
        let mean_short = (described[0].exp() - 1e-3) * 255.0;
        let mean_long = (described[17].exp() - 1e-3) * 255.0;
        assert!((mean_short - 70.0).abs() < 0.01, "{mean_short}");
        assert!((mean_long - 90.0).abs() < 0.01, "{mean_long}");

        tracker.push(0.0, thumb(|_, _| 200));
        assert!((tracker.describe()[0] - (1e-3f32).ln()).abs() < 1e-6);
    }

    #[test]
    fn the_shape_follows_the_actor_not_the_frame() {
        // A flat background, so that every moved pixel changes by as much wherever the arms are.
        let background = |_: usize, _: usize| 40u8;
        // Two "arms" either side of a body, moved: near the top-left corner and lower right. The
        // amount-and-place part differs, the shape does not; twice the size only widens the spread.
        let arms = |left: usize, top: usize, size: usize| {
            thumb(move |x, y| {
                let inside = |x0: usize| x >= x0 && x < x0 + size && y >= top && y < top + size;
                if inside(left) || inside(left + 3 * size) { 250 } else { background(x, y) }
            })
        };
        let shape_of = |moved: Vec<u8>| {
            let mut tracker = MotionTracker::new();
            tracker.push(0.0, thumb(background));
            tracker.push(0.04, moved);
            tracker.describe()
        };
        let top_left = shape_of(arms(2, 4, 4));
        let lower_right = shape_of(arms(30, 40, 4));
        assert_eq!(top_left.len(), MOTION_SHAPE_DIM);
        assert!(top_left[1..17] != lower_right[1..17]);
        let shape = |d: &[f32]| d[MOTION_DIM..MOTION_DIM + SHAPE_PER_GAP].to_vec();
        for (p, q) in shape(&top_left).iter().zip(shape(&lower_right)) {
            assert!((p - q).abs() < 1e-3, "{top_left:?} vs {lower_right:?}");
        }
        // Mirror-symmetric about the centroid, wider than tall, and all of the weight in the grid.
        let grid = shape(&top_left)[4..].to_vec();
        for row in grid.chunks(GRID) {
            assert!((row[0] - row[3]).abs() < 1e-3 && (row[1] - row[2]).abs() < 1e-3, "{grid:?}");
        }
        assert!((grid.iter().sum::<f32>() - 16.0).abs() < 1e-3);
        assert!(top_left[MOTION_DIM + 2] > 0.5, "{top_left:?}");
        let large = shape_of(arms(20, 20, 8));
        let widening = large[MOTION_DIM] - top_left[MOTION_DIM];
        assert!(widening > 0.5 && widening < 2f32.ln() + 1e-3, "{widening}");

        // A still picture has no shape at all.
        let still = shape_of(thumb(background));
        assert!(still[MOTION_DIM..].iter().all(|&v| v == 0.0));
    }
}
