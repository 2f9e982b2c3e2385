//! The models as the pipeline stages see them: the backbone behind [`Embedder`] and the OadTR
//! detector behind [`OnlineDetector`], loaded from a `[model]` section. `run`, `extract` and the tests
//! go through here, so the daemon and the offline tools load and call the models the same way.

use anyhow::Context as _;

use crate::backbone::{Backbone, BackboneOptions, DeviceSpec};
use crate::config::ModelConfig;
use crate::detector::checkpoint::{Detector, HeadCounts};
use crate::detector::window::{Activation, StreamId, StreamingDetector};
use crate::feature_spec::{FeatureKind, FeatureSpec};
use crate::pipeline::{Embedder, OnlineDetector, Prediction};
use crate::source::Frame;

/// Both models of a pipeline.
pub struct Models {
    pub embedder: Box<dyn Embedder>,
    pub detector: Box<dyn OnlineDetector>,
}

/// The feature kind `[model]` asks for: its `feature`, else what its detector's sidecar records, else
/// `cls` (no readable detector). `run` and `extract` both resolve it here, so their features agree.
pub fn resolve_feature(model: &ModelConfig) -> FeatureKind {
    model
        .feature
        .or_else(|| crate::detector::checkpoint::read_card(&model.detector).ok().flatten().and_then(|card| card.feature_spec).map(|spec| spec.kind))
        .unwrap_or(FeatureKind::Cls)
}

/// Loads the backbone and the detector; the backbone's feature spec takes the detector's chunk rate,
/// and its feature kind unless `[model] feature` names one.
pub fn load(model: &ModelConfig) -> anyhow::Result<Models> {
    let detector = load_detector(model)?;
    let model = ModelConfig { feature: Some(resolve_feature(model)), ..model.clone() };
    let embedder = load_embedder(&model, detector.spec().fps)?;
    Ok(Models { embedder, detector })
}

/// The backbone of `[model]`, its features stamped with chunk rate `fps`.
pub fn load_embedder(model: &ModelConfig, fps: f64) -> anyhow::Result<Box<dyn Embedder>> {
    let device: DeviceSpec = model.device.parse().map_err(anyhow::Error::msg)?;
    let options = BackboneOptions {
        model_dir: model.backbone.clone(),
        name: None,
        input_size: model.input_size as usize,
        kind: model.feature.unwrap_or(FeatureKind::Cls),
        device,
        precision: model.precision,
    };
    let backbone = Backbone::load(&options)?;
    let spec = backbone.feature_spec(fps);
    Ok(Box::new(BackboneEmbedder { backbone, spec }))
}

/// The detector checkpoint of `[model]` on its device, with softmax outputs.
pub fn load_detector(model: &ModelConfig) -> anyhow::Result<Box<dyn OnlineDetector>> {
    let device: DeviceSpec = model.device.parse().map_err(anyhow::Error::msg)?;
    let device = device.open().map_err(anyhow::Error::msg)?;
    let loaded = Detector::load(&model.detector, HeadCounts::default(), &device)?;
    let spec = loaded.card.feature_spec.clone().with_context(|| {
        format!(
            "{}: the checkpoint's sidecar records no feature spec, so the features it expects are unknown; \
             train it with `actiond train --feature-spec` or add `feature_spec` to {}",
            model.detector.display(),
            crate::detector::checkpoint::sidecar_path(&model.detector).display()
        )
    })?;
    Ok(Box::new(OadtrOnline::new(loaded, spec)))
}

/// [`Backbone`] as the pipeline's embedder.
struct BackboneEmbedder {
    backbone: Backbone,
    spec: FeatureSpec,
}

impl Embedder for BackboneEmbedder {
    fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    fn embed(&mut self, frames: &[&Frame]) -> anyhow::Result<Vec<Vec<f32>>> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let size = self.backbone.input_size();
        let frame_bytes = size * size * 3;
        let mut pixels = Vec::with_capacity(frames.len() * frame_bytes);
        for frame in frames {
            anyhow::ensure!(
                frame.width as usize == size && frame.height as usize == size && frame.rgb.len() == frame_bytes,
                "frame of {} is {}x{}, the backbone takes {size}x{size}",
                frame.stream,
                frame.width,
                frame.height
            );
            pixels.extend_from_slice(&frame.rgb);
        }
        let features = self.backbone.embed_frames(&pixels, frames.len())?;
        let mut rows = features.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        if self.spec.kind.needs_motion() {
            for (row, frame) in rows.iter_mut().zip(frames) {
                let motion = frame.motion.as_deref().with_context(|| {
                    format!("frame {} of {} has no motion descriptor, which {} features need", frame.index, frame.stream, self.spec.kind)
                })?;
                let wanted = self.spec.kind.motion_dim();
                anyhow::ensure!(
                    motion.len() >= wanted,
                    "frame {} of {} has {} motion values, {} features need {wanted}",
                    frame.index,
                    frame.stream,
                    motion.len(),
                    self.spec.kind
                );
                row.extend_from_slice(&motion[..wanted]);
            }
        }
        Ok(rows)
    }
}

/// [`StreamingDetector`] as the pipeline's detector; pipeline slots map to detector streams one to one.
struct OadtrOnline {
    streaming: StreamingDetector,
    labels: Vec<String>,
    queries: usize,
    spec: FeatureSpec,
}

impl OadtrOnline {
    fn new(detector: Detector, spec: FeatureSpec) -> Self {
        let activation = Activation::Probabilities { ignore_class: detector.card.ignore_class };
        Self {
            queries: detector.card.config.query_num,
            labels: detector.card.labels.clone(),
            streaming: StreamingDetector::new(detector.engine, activation),
            spec,
        }
    }
}

impl OnlineDetector for OadtrOnline {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn queries(&self) -> usize {
        self.queries
    }

    fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    fn step(&mut self, inputs: &[(usize, Vec<f32>)]) -> anyhow::Result<Vec<Prediction>> {
        let ids: Vec<StreamId> = inputs.iter().map(|(slot, _)| self.streaming.open_slot(*slot)).collect();
        let batch: Vec<(StreamId, &[f32])> = ids.iter().zip(inputs).map(|(id, (_, f))| (*id, f.as_slice())).collect();
        let outputs = self.streaming.step(&batch)?;
        Ok(outputs.into_iter().map(|o| Prediction { current: o.current, anticipated: o.anticipation }).collect())
    }

    fn reset(&mut self, slot: usize) {
        let id = self.streaming.open_slot(slot);
        self.streaming.reset(id);
    }
}
