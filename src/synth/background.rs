//! Backdrops behind the figure: procedural scenes (sky or wall gradients, a floor, value-noise
//! texture, tiles or stripes, boxy furniture and buildings) and stills of real footage, decoded with
//! the project's own ingest and softened (blurred, darkened, desaturated) so the figure stays the
//! subject.

use std::path::Path;
use std::sync::Arc;

use super::raster::{hsv, Canvas, Rgb};
use super::rng::Rng;
use super::SynthError;
use crate::config::Config;
use crate::source::ffmpeg::{decode_offline, Flow};

/// Real footage whose stills become some of the backdrops, by default (`actiond synth`, `synth://`).
pub const DEFAULT_FOOTAGE: &str = "assets/media/bikes.mp4";

/// Stills of real footage at one frame size, shared by every video of a run.
#[derive(Clone, Default)]
pub struct Footage {
    pub width: usize,
    pub height: usize,
    pub frames: Arc<Vec<Canvas>>,
}

impl Footage {
    /// No footage: every backdrop is procedural.
    pub fn none() -> Footage {
        Footage::default()
    }

    /// Decodes `path` through the ingest (sampled at `stills_per_second`, scaled to `width`×`height`)
    /// and keeps at most `max_stills` frames.
    pub fn load(path: &Path, width: u32, height: u32, stills_per_second: f64, max_stills: usize) -> Result<Footage, SynthError> {
        let failed = |reason: String| SynthError::Footage { path: path.to_path_buf(), reason };
        let config = Config::load(None).map_err(|e| failed(e.to_string()))?;
        let mut frames = Vec::new();
        decode_offline(&config, "synth-footage", &path.display().to_string(), stills_per_second, (width, height), &mut |_| {}, &mut |frame| {
            frames.push(Canvas::from_rgb24(frame.width as usize, frame.height as usize, &frame.rgb));
            if frames.len() >= max_stills { Flow::Stop } else { Flow::Continue }
        })
        .map_err(|e| failed(e.to_string()))?;
        if frames.is_empty() {
            return Err(failed("no frames decoded".into()));
        }
        Ok(Footage { width: width as usize, height: height as usize, frames: Arc::new(frames) })
    }
}

/// One video's backdrop: a still canvas a little larger than the frame (room for camera shake) and
/// where the floor is.
pub struct Backdrop {
    pub canvas: Canvas,
    /// Pixels of margin on every side of the visible frame.
    pub margin: usize,
    /// The ground line in frame pixels (where the figure's feet are).
    pub ground_y: f32,
}

/// Cheap 2-D value noise in [0, 1) with smooth interpolation, from a small random lattice.
struct ValueNoise {
    lattice: Vec<f32>,
    size: usize,
}

impl ValueNoise {
    fn new(rng: &mut Rng, size: usize) -> Self {
        ValueNoise { lattice: (0..size * size).map(|_| rng.unit()).collect(), size }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let n = self.size as i64;
        let v = |i: i64, j: i64| self.lattice[(j.rem_euclid(n) * n + i.rem_euclid(n)) as usize];
        let (i, j) = (x0 as i64, y0 as i64);
        let top = v(i, j) + (v(i + 1, j) - v(i, j)) * sx;
        let bottom = v(i, j + 1) + (v(i + 1, j + 1) - v(i, j + 1)) * sx;
        top + (bottom - top) * sy
    }
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

impl Backdrop {
    /// Draws a backdrop for a `width`×`height` frame: real footage with probability `footage_share`
    /// when there is any, a procedural scene otherwise.
    pub fn random(rng: &mut Rng, width: usize, height: usize, footage: &Footage, footage_share: f32) -> Backdrop {
        let margin = (width.max(height) / 40).max(2);
        let ground_y = height as f32 * rng.range(0.8, 0.95);
        let usable = !footage.frames.is_empty() && footage.width == width && footage.height == height;
        let canvas = if usable && rng.chance(footage_share) {
            let still = &footage.frames[rng.below(footage.frames.len())];
            let mut canvas = Canvas::new(width + 2 * margin, height + 2 * margin);
            canvas.copy_window(still, -(margin as i32), -(margin as i32));
            if rng.chance(0.5) {
                // Mirror for variety.
                for row in canvas.pixels.chunks_mut(canvas.width) {
                    row.reverse();
                }
            }
            let blur_passes = 1 + rng.below(3);
            for _ in 0..blur_passes {
                canvas.blur(1.0);
            }
            canvas.grade(rng.range(0.45, 0.8), rng.range(0.2, 0.7));
            canvas
        } else {
            procedural(rng, width + 2 * margin, height + 2 * margin, ground_y + margin as f32)
        };
        Backdrop { canvas, margin, ground_y }
    }
}

/// A procedural scene: a back wall or sky, a floor from `ground_y` down, texture and a few boxes.
fn procedural(rng: &mut Rng, width: usize, height: usize, ground_y: f32) -> Canvas {
    let mut canvas = Canvas::new(width, height);
    let hue = rng.unit();
    let outdoor = rng.chance(0.5);
    let (top, bottom) = if outdoor {
        (hsv(0.55 + rng.range(-0.05, 0.05), rng.range(0.2, 0.6), rng.range(0.6, 0.95)), hsv(0.58, rng.range(0.05, 0.3), rng.range(0.75, 1.0)))
    } else {
        let base = hsv(hue, rng.range(0.05, 0.4), rng.range(0.35, 0.9));
        (base, mix(base, [255.0; 3], rng.range(0.0, 0.3)))
    };
    let floor_near = hsv(rng.unit(), rng.range(0.05, 0.5), rng.range(0.2, 0.7));
    let floor_far = mix(floor_near, top, rng.range(0.1, 0.4));
    let noise = ValueNoise::new(rng, 16);
    let grain = rng.range(0.0, 40.0);
    let noise_scale = rng.range(6.0, 30.0);
    let horizon = ground_y - rng.range(0.0, 0.25) * height as f32;
    for y in 0..height {
        let fy = y as f32;
        for x in 0..width {
            let fx = x as f32;
            let base = if fy < horizon {
                mix(top, bottom, fy / horizon.max(1.0))
            } else {
                mix(floor_far, floor_near, ((fy - horizon) / (height as f32 - horizon).max(1.0)).sqrt())
            };
            let n = noise.at(fx / noise_scale, fy / noise_scale) - 0.5;
            canvas.pixels[y * width + x] = [base[0] + n * grain, base[1] + n * grain, base[2] + n * grain];
        }
    }
    // Boxes: furniture indoors, buildings or trees outdoors, all standing on the horizon.
    for _ in 0..rng.below(6) {
        let w = rng.range(0.05, 0.3) * width as f32;
        let h = rng.range(0.1, 0.6) * height as f32;
        let left = rng.range(-0.1, 1.0) * width as f32;
        let color = hsv(rng.unit(), rng.range(0.0, 0.6), rng.range(0.2, 0.9));
        canvas.rect(left, horizon - h, left + w, horizon + 1.0, color, rng.range(0.6, 1.0));
    }
    // Tiles or stripes on the wall or the floor.
    match rng.below(3) {
        0 => {
            let step = rng.range(6.0, 24.0);
            let mut x = 0.0;
            while x < width as f32 {
                canvas.rect(x, 0.0, x + 1.0, horizon, [0.0; 3], 0.12);
                x += step;
            }
        }
        1 => {
            let step = rng.range(4.0, 16.0);
            let mut y = horizon;
            while y < height as f32 {
                canvas.rect(0.0, y, width as f32, y + 1.0, [255.0; 3], 0.1);
                y += step;
                }
        }
        _ => {}
    }
    canvas
}
