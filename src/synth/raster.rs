//! A small software rasteriser for the synthetic world: an RGB canvas of f32 (0–255) with
//! anti-aliased capsules and discs (coverage from the signed distance, one pixel of ramp), plus the
//! camera's whole-frame effects (blur, gain, sensor noise) and packing to RGB24.

use super::rng::Rng;

pub type Rgb = [f32; 3];

/// A point in pixels (x right, y down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Px {
    pub x: f32,
    pub y: f32,
}

#[derive(Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<Rgb>,
}

impl Canvas {
    pub fn new(width: usize, height: usize) -> Self {
        Canvas { width, height, pixels: vec![[0.0; 3]; width * height] }
    }

    /// A canvas from packed RGB24.
    pub fn from_rgb24(width: usize, height: usize, rgb: &[u8]) -> Self {
        let pixels = rgb.chunks_exact(3).map(|p| [p[0] as f32, p[1] as f32, p[2] as f32]).collect();
        Canvas { width, height, pixels }
    }

    /// Copies the `width`×`height` window of `source` whose top-left corner is (`left`, `top`), edges
    /// clamped, into `self`.
    pub fn copy_window(&mut self, source: &Canvas, left: i32, top: i32) {
        let inside = left >= 0 && left as usize + self.width <= source.width;
        for y in 0..self.height {
            let sy = (y as i32 + top).clamp(0, source.height as i32 - 1) as usize;
            let row = &mut self.pixels[y * self.width..(y + 1) * self.width];
            if inside {
                let start = sy * source.width + left as usize;
                row.copy_from_slice(&source.pixels[start..start + self.width]);
                continue;
            }
            for (x, pixel) in row.iter_mut().enumerate() {
                let sx = (x as i32 + left).clamp(0, source.width as i32 - 1) as usize;
                *pixel = source.pixels[sy * source.width + sx];
            }
        }
    }

    /// Blends `color` over pixel (x, y) with weight `alpha`.
    #[inline]
    fn blend(&mut self, x: usize, y: usize, color: Rgb, alpha: f32) {
        let p = &mut self.pixels[y * self.width + x];
        for c in 0..3 {
            p[c] += (color[c] - p[c]) * alpha;
        }
    }

    /// The pixel rows and columns a shape with this bounding box touches, clipped to the canvas.
    fn clip(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<(usize, usize, usize, usize)> {
        let left = (x0.floor() as i64).max(0);
        let top = (y0.floor() as i64).max(0);
        let right = (x1.ceil() as i64).min(self.width as i64 - 1);
        let bottom = (y1.ceil() as i64).min(self.height as i64 - 1);
        (left <= right && top <= bottom).then_some((left as usize, top as usize, right as usize, bottom as usize))
    }

    /// A thick segment from `a` to `b` with round ends of radius `radius` (a capsule).
    pub fn capsule(&mut self, a: Px, b: Px, radius: f32, color: Rgb, opacity: f32) {
        let pad = radius + 1.0;
        let Some((x0, y0, x1, y1)) = self.clip(a.x.min(b.x) - pad, a.y.min(b.y) - pad, a.x.max(b.x) + pad, a.y.max(b.y) + pad)
        else {
            return;
        };
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        for y in y0..=y1 {
            let py = y as f32 + 0.5 - a.y;
            for x in x0..=x1 {
                let px = x as f32 + 0.5 - a.x;
                let t = ((px * dx + py * dy) / len2).clamp(0.0, 1.0);
                let (ex, ey) = (px - t * dx, py - t * dy);
                let distance = (ex * ex + ey * ey).sqrt();
                let coverage = (radius - distance + 0.5).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    self.blend(x, y, color, coverage * opacity);
                }
            }
        }
    }

    /// A filled disc.
    pub fn disc(&mut self, center: Px, radius: f32, color: Rgb, opacity: f32) {
        self.capsule(center, center, radius, color, opacity);
    }

    /// A filled axis-aligned ellipse with a soft edge of `softness` pixels (shadows).
    pub fn soft_ellipse(&mut self, center: Px, rx: f32, ry: f32, softness: f32, color: Rgb, opacity: f32) {
        let Some((x0, y0, x1, y1)) = self.clip(center.x - rx - softness, center.y - ry - softness, center.x + rx + softness, center.y + ry + softness)
        else {
            return;
        };
        for y in y0..=y1 {
            let ny = (y as f32 + 0.5 - center.y) / ry.max(0.5);
            for x in x0..=x1 {
                let nx = (x as f32 + 0.5 - center.x) / rx.max(0.5);
                let r = (nx * nx + ny * ny).sqrt();
                // Distance outside the ellipse, roughly in pixels.
                let outside = (r - 1.0) * rx.min(ry);
                let coverage = (0.5 - outside / softness.max(0.5)).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    self.blend(x, y, color, coverage * opacity);
                }
            }
        }
    }

    /// A filled axis-aligned rectangle (no anti-aliasing: used for backdrops only).
    pub fn rect(&mut self, left: f32, top: f32, right: f32, bottom: f32, color: Rgb, opacity: f32) {
        let Some((x0, y0, x1, y1)) = self.clip(left, top, right - 1.0, bottom - 1.0) else {
            return;
        };
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.blend(x, y, color, opacity);
            }
        }
    }

    /// Mixes each pixel with the mean of its 3×3 neighbourhood: `amount` 0 is sharp, 1 a full box blur.
    pub fn blur(&mut self, amount: f32) {
        if amount <= 0.0 {
            return;
        }
        let (w, h) = (self.width, self.height);
        // The 3×3 box is separable: sum rows of three, then columns of three.
        let mut rows = vec![[0.0f32; 3]; w * h];
        for y in 0..h {
            let line = &self.pixels[y * w..(y + 1) * w];
            for x in 0..w {
                let (a, b, c) = (line[x.saturating_sub(1)], line[x], line[(x + 1).min(w - 1)]);
                rows[y * w + x] = [a[0] + b[0] + c[0], a[1] + b[1] + c[1], a[2] + b[2] + c[2]];
            }
        }
        for y in 0..h {
            let (up, down) = (y.saturating_sub(1) * w, (y + 1).min(h - 1) * w);
            for x in 0..w {
                let (a, b, c) = (rows[up + x], rows[y * w + x], rows[down + x]);
                let p = &mut self.pixels[y * w + x];
                for ch in 0..3 {
                    p[ch] += ((a[ch] + b[ch] + c[ch]) / 9.0 - p[ch]) * amount;
                }
            }
        }
    }

    /// Scales brightness by `gain`, pulls colours towards grey by `desaturate` (0–1).
    pub fn grade(&mut self, gain: f32, desaturate: f32) {
        for p in &mut self.pixels {
            let grey = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            for c in 0..3 {
                p[c] = (p[c] + (grey - p[c]) * desaturate) * gain;
            }
        }
    }

    /// Packs to RGB24 after scaling brightness by `gain`, adding uniform sensor noise of ±`noise`
    /// levels drawn from `rng`.
    pub fn to_rgb24(&self, gain: f32, noise: f32, rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pixels.len() * 3);
        let mut bits = 0u64;
        let mut left = 0;
        for p in &self.pixels {
            for &value in p {
                let jitter = if noise > 0.0 {
                    if left == 0 {
                        bits = rng.next_u64();
                        left = 8;
                    }
                    left -= 1;
                    let byte = (bits & 0xFF) as f32;
                    bits >>= 8;
                    (byte / 127.5 - 1.0) * noise
                } else {
                    0.0
                };
                out.push((value * gain + jitter).round().clamp(0.0, 255.0) as u8);
            }
        }
        out
    }
}

/// `color` scaled by `factor` (shading).
pub fn shade(color: Rgb, factor: f32) -> Rgb {
    [color[0] * factor, color[1] * factor, color[2] * factor]
}

/// An RGB colour from hue (0–1), saturation and value (0–1), in 0–255.
pub fn hsv(hue: f32, saturation: f32, value: f32) -> Rgb {
    let h = (hue.rem_euclid(1.0)) * 6.0;
    let i = h.floor();
    let f = h - i;
    let (p, q, t) = (value * (1.0 - saturation), value * (1.0 - saturation * f), value * (1.0 - saturation * (1.0 - f)));
    let (r, g, b) = match i as i32 {
        0 => (value, t, p),
        1 => (q, value, p),
        2 => (p, value, t),
        3 => (p, q, value),
        4 => (t, p, value),
        _ => (value, p, q),
    };
    [r * 255.0, g * 255.0, b * 255.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capsule_covers_its_core_and_fades_at_the_edge() {
        let mut canvas = Canvas::new(40, 40);
        canvas.capsule(Px { x: 10.0, y: 20.0 }, Px { x: 30.0, y: 20.0 }, 4.25, [255.0; 3], 1.0);
        let at = |x: usize, y: usize| canvas.pixels[y * 40 + x][0];
        assert_eq!(at(20, 19), 255.0);
        assert_eq!(at(20, 10), 0.0);
        // Row 24's centre is 4.5 px from the axis, 0.25 px beyond the radius: a quarter covered.
        assert!((at(20, 24) - 0.25 * 255.0).abs() < 1e-3, "{}", at(20, 24));
        assert_eq!(at(20, 25), 0.0);
        // The round cap reaches past the end point.
        assert!(at(33, 20) > 0.0 && at(35, 20) == 0.0);
    }

    #[test]
    fn blur_is_the_three_by_three_mean() {
        let mut canvas = Canvas::new(5, 5);
        canvas.pixels[12] = [90.0; 3];
        canvas.blur(1.0);
        for (i, p) in canvas.pixels.iter().enumerate() {
            let (x, y) = (i % 5, i / 5);
            let expected = if (1..=3).contains(&x) && (1..=3).contains(&y) { 10.0 } else { 0.0 };
            assert!((p[0] - expected).abs() < 1e-4, "({x},{y}) {p:?}");
        }
    }

    #[test]
    fn copy_window_clamps_at_the_edges() {
        let mut source = Canvas::new(4, 3);
        for (i, p) in source.pixels.iter_mut().enumerate() {
            *p = [i as f32; 3];
        }
        let mut inner = Canvas::new(2, 2);
        inner.copy_window(&source, 1, 1);
        assert_eq!(inner.pixels.iter().map(|p| p[0]).collect::<Vec<_>>(), vec![5.0, 6.0, 9.0, 10.0]);
        let mut outer = Canvas::new(2, 2);
        outer.copy_window(&source, -1, 2);
        assert_eq!(outer.pixels.iter().map(|p| p[0]).collect::<Vec<_>>(), vec![8.0, 8.0, 8.0, 8.0]);
    }
}
