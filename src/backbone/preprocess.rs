//! Frames as the decoder delivers them (RGB24, already scaled to the input size by swscale) to the
//! model's input: ImageNet mean/std normalisation, batched NCHW float32.

use candle_core::{Device, Result, Tensor};

/// ImageNet channel means (RGB), on the 0..1 scale.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB), on the 0..1 scale.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `count` frames of `size`×`size`×3 RGB bytes, back to back → `[count, 3, size, size]` f32 on `device`.
pub fn frames_to_tensor(frames: &[u8], count: usize, size: usize, device: &Device) -> Result<Tensor> {
    let plane = size * size;
    if frames.len() != count * plane * 3 {
        candle_core::bail!(
            "expected {count} RGB frames of {size}x{size} ({} bytes), got {} bytes",
            count * plane * 3,
            frames.len()
        );
    }
    // (x/255 - mean)/std as one multiply-add per value, computed in f64 then rounded once, so the result
    // equals numpy's float64 reference after its cast to float32.
    let scale: [f64; 3] = std::array::from_fn(|c| 1.0 / (255.0 * f64::from(IMAGENET_STD[c])));
    let offset: [f64; 3] = std::array::from_fn(|c| f64::from(IMAGENET_MEAN[c]) / f64::from(IMAGENET_STD[c]));
    let mut out = vec![0f32; frames.len()];
    for (frame, dst) in frames.chunks_exact(plane * 3).zip(out.chunks_exact_mut(plane * 3)) {
        for (pixel, rgb) in frame.chunks_exact(3).enumerate() {
            for c in 0..3 {
                dst[c * plane + pixel] = (f64::from(rgb[c]) * scale[c] - offset[c]) as f32;
            }
        }
    }
    Tensor::from_vec(out, (count, 3, size, size), device)
}
