//! The per-frame baseline a temporal detector must beat: multinomial logistic regression on one
//! chunk's feature at a time (standardised with the training set's mean and deviation), fitted by
//! full-batch Adam on the same soft-target cross-entropy the detector trains with. It sees no
//! context, so whatever OadTR scores above it comes from time.

use crate::train::dataset::Video;

/// Fitting settings.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub steps: usize,
    pub lr: f64,
    /// L2 penalty on the weights (not the biases).
    pub weight_decay: f64,
    /// Chunks whose target has this class set are left out of the fit.
    pub ignore_class: Option<usize>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions { steps: 500, lr: 0.01, weight_decay: 1e-3, ignore_class: None }
    }
}

/// A fitted probe.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    mean: Vec<f32>,
    scale: Vec<f32>,
    /// Row-major [classes × dim].
    weights: Vec<f32>,
    bias: Vec<f32>,
    dim: usize,
    classes: usize,
}

impl LinearProbe {
    /// Fits on every chunk of `videos`, or `None` when no chunk is left to fit on (no videos, or every
    /// chunk carries the ignored class). Videos must share their widths (the dataset loader checks).
    pub fn fit(videos: &[Video], options: &ProbeOptions) -> Option<LinearProbe> {
        let (dim, classes) = videos.first().map(|v| (v.dim, v.classes))?;
        let mut xs: Vec<&[f32]> = Vec::new();
        let mut ys: Vec<Vec<f32>> = Vec::new();
        for video in videos {
            assert_eq!((video.dim, video.classes), (dim, classes), "videos of one dataset share widths");
            for t in 0..video.len {
                let target = video.target_row(t);
                if options.ignore_class.is_some_and(|i| target[i] > 0.5) {
                    continue;
                }
                let mut y: Vec<f32> = target.to_vec();
                if let Some(i) = options.ignore_class {
                    y[i] = 0.0;
                }
                let sum: f32 = y.iter().sum();
                if sum <= 0.0 {
                    continue;
                }
                y.iter_mut().for_each(|v| *v /= sum);
                xs.push(video.feature_row(t));
                ys.push(y);
            }
        }
        if xs.is_empty() {
            return None;
        }
        let n = xs.len() as f64;
        let mut mean = vec![0f64; dim];
        for x in &xs {
            mean.iter_mut().zip(x.iter()).for_each(|(m, &v)| *m += v as f64 / n);
        }
        let mut var = vec![0f64; dim];
        for x in &xs {
            var.iter_mut().zip(x.iter().zip(&mean)).for_each(|(s, (&v, m))| *s += (v as f64 - m).powi(2) / n);
        }
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let scale: Vec<f32> = var.iter().map(|&v| 1.0 / (v.sqrt() as f32).max(1e-6)).collect();
        let standard: Vec<Vec<f32>> = xs.iter().map(|x| x.iter().zip(&mean).zip(&scale).map(|((&v, m), s)| (v - m) * s).collect()).collect();

        let mut probe = LinearProbe { mean, scale, weights: vec![0.0; classes * dim], bias: vec![0.0; classes], dim, classes };
        let params = classes * dim + classes;
        let (mut m, mut v) = (vec![0f64; params], vec![0f64; params]);
        let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let mut grad = vec![0f64; params];
        for step in 1..=options.steps {
            grad.iter_mut().for_each(|g| *g = 0.0);
            for (x, y) in standard.iter().zip(&ys) {
                let p = probe.softmax_standard(x);
                for c in 0..classes {
                    let d = (p[c] - y[c]) as f64 / n;
                    if d == 0.0 {
                        continue;
                    }
                    let row = &mut grad[c * dim..(c + 1) * dim];
                    row.iter_mut().zip(x).for_each(|(g, &xv)| *g += d * xv as f64);
                    grad[classes * dim + c] += d;
                }
            }
            for i in 0..classes * dim {
                grad[i] += options.weight_decay * probe.weights[i] as f64;
            }
            let (c1, c2) = (1.0 - beta1.powi(step as i32), 1.0 - beta2.powi(step as i32));
            for i in 0..params {
                m[i] = beta1 * m[i] + (1.0 - beta1) * grad[i];
                v[i] = beta2 * v[i] + (1.0 - beta2) * grad[i] * grad[i];
                let update = options.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
                let p = if i < classes * dim { &mut probe.weights[i] } else { &mut probe.bias[i - classes * dim] };
                *p -= update as f32;
            }
        }
        Some(probe)
    }

    fn softmax_standard(&self, x: &[f32]) -> Vec<f32> {
        let mut logits: Vec<f32> = (0..self.classes)
            .map(|c| self.bias[c] + self.weights[c * self.dim..(c + 1) * self.dim].iter().zip(x).map(|(w, v)| w * v).sum::<f32>())
            .collect();
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for l in &mut logits {
            *l = (*l - max).exp();
            sum += *l;
        }
        logits.iter_mut().for_each(|l| *l /= sum);
        logits
    }

    /// Class probabilities of one chunk feature.
    pub fn predict(&self, feature: &[f32]) -> Vec<f32> {
        let x: Vec<f32> = feature.iter().zip(&self.mean).zip(&self.scale).map(|((&v, m), s)| (v - m) * s).collect();
        self.softmax_standard(&x)
    }

    /// Row-major [len × classes] probabilities for every chunk of a video.
    pub fn predict_video(&self, video: &Video) -> Vec<f32> {
        (0..video.len).flat_map(|t| self.predict(video.feature_row(t))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_classes_are_learned_and_ignored_rows_left_out() {
        // Class c lives around feature axis c; class 3 marks rows to ignore, with misleading features.
        let mut features = Vec::new();
        let mut targets = Vec::new();
        let mut rng = crate::synth::rng::Rng::new(1);
        for i in 0..300 {
            let c = i % 4;
            let mut x = [0f32; 3];
            for v in &mut x {
                *v = rng.range(-0.3, 0.3);
            }
            x[c.min(2)] += 2.0;
            let mut y = [0f32; 4];
            y[c] = 1.0;
            if c == 3 {
                x[0] += 2.0; // looks like class 0
            }
            features.extend_from_slice(&x);
            targets.extend_from_slice(&y);
        }
        let video = Video { name: "v".into(), features, targets, len: 300, dim: 3, classes: 4 };
        let probe = LinearProbe::fit(std::slice::from_ref(&video), &ProbeOptions { ignore_class: Some(3), ..Default::default() }).unwrap();
        assert!(LinearProbe::fit(&[], &ProbeOptions::default()).is_none());
        for c in 0..3 {
            let mut x = [0f32; 3];
            x[c] = 2.0;
            let p = probe.predict(&x);
            assert!(p[c] > 0.9, "class {c}: {p:?}");
            assert!(p[3] < 0.01, "the ignored class is never a target: {p:?}");
        }
    }
}
