//! Resizing a ViT's learned position-embedding grid to another input size, the way Hugging Face's
//! `interpolate_pos_encoding` does it: torch bicubic (`align_corners=False`, a = -0.75, borders
//! replicated) from the stored grid to the target grid, the CLS row kept as is.

/// torch's cubic convolution coefficient.
const CUBIC_A: f32 = -0.75;

/// Resizes `[1 + g*g, dim]` position embeddings (CLS row first, grid row-major) to
/// `[1 + out_h*out_w, dim]`. Returns `None` when `rows - 1` is not a square.
pub fn interpolate(embeddings: &[f32], dim: usize, out_h: usize, out_w: usize) -> Option<Vec<f32>> {
    let rows = embeddings.len() / dim;
    if rows == 0 || rows * dim != embeddings.len() {
        return None;
    }
    let grid = ((rows - 1) as f64).sqrt().round() as usize;
    if grid * grid != rows - 1 {
        return None;
    }
    let mut out = Vec::with_capacity((1 + out_h * out_w) * dim);
    out.extend_from_slice(&embeddings[..dim]);
    if grid == out_h && grid == out_w {
        out.extend_from_slice(&embeddings[dim..]);
        return Some(out);
    }
    let patches = &embeddings[dim..];
    let taps_y = cubic_taps(grid, out_h);
    let taps_x = cubic_taps(grid, out_w);
    let mut row = vec![0f32; dim];
    for (ys, wy) in &taps_y {
        for (xs, wx) in &taps_x {
            row.iter_mut().for_each(|v| *v = 0.0);
            // Separable like torch: interpolate along x in each of the four source rows, then along y.
            for (&y, &weight_y) in ys.iter().zip(wy) {
                let mut along_x = vec![0f32; dim];
                for (&x, &weight_x) in xs.iter().zip(wx) {
                    let src = &patches[(y * grid + x) * dim..][..dim];
                    along_x.iter_mut().zip(src).for_each(|(a, s)| *a += weight_x * s);
                }
                row.iter_mut().zip(&along_x).for_each(|(r, a)| *r += weight_y * a);
            }
            out.extend_from_slice(&row);
        }
    }
    Some(out)
}

/// For each output index: the four source indices (clamped to the border) and their weights.
fn cubic_taps(input: usize, output: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|dst| {
            let real = scale * (dst as f32 + 0.5) - 0.5;
            let floor = real.floor();
            let t = real - floor;
            let base = floor as i64;
            let index = |offset: i64| (base + offset).clamp(0, input as i64 - 1) as usize;
            (
                [index(-1), index(0), index(1), index(2)],
                [
                    cubic_far(t + 1.0),
                    cubic_near(t),
                    cubic_near(1.0 - t),
                    cubic_far(2.0 - t),
                ],
            )
        })
        .collect()
}

/// Kernel for |x| <= 1.
fn cubic_near(x: f32) -> f32 {
    ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
}

/// Kernel for 1 < |x| < 2.
fn cubic_far(x: f32) -> f32 {
    ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_grid_stays_constant_and_cls_is_kept() {
        let dim = 2;
        let mut embeddings = vec![7.0, -7.0];
        embeddings.extend(std::iter::repeat_n([1.5f32, -0.25], 9).flatten());
        let out = interpolate(&embeddings, dim, 5, 5).unwrap();
        assert_eq!(out.len(), (1 + 25) * dim);
        assert_eq!(&out[..2], &[7.0, -7.0]);
        for pair in out[2..].chunks(2) {
            assert!((pair[0] - 1.5).abs() < 1e-5 && (pair[1] + 0.25).abs() < 1e-5, "{pair:?}");
        }
    }

    #[test]
    fn weights_sum_to_one() {
        for (_, weights) in cubic_taps(37, 16) {
            assert!((weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn a_non_square_grid_is_rejected() {
        assert!(interpolate(&[0.0; 4 * 3], 3, 2, 2).is_none());
    }
}
