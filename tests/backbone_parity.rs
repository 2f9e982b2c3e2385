//! The DINOv2 ViT-S/14 backbone against onnxruntime's outputs on the same weights
//! (tests/fixtures/dinov2: two real frames, their model input, debug taps and last_hidden_state).
//! Needs the weights `actiond models fetch` writes; fails (never skips) with that instruction if absent.

use std::collections::HashMap;
use std::path::PathBuf;

use actiond::backbone::{preprocess, Backbone, BackboneOptions};
use actiond::feature_spec::FeatureKind;
use candle_core::{DType, Device, IndexOp, Tensor};

fn fixture() -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dinov2/dinov2_vits14_fixture.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).expect("fixture loads")
}

fn models_dir() -> PathBuf {
    std::env::var_os("ACTIOND_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models"))
}

fn backbone(kind: FeatureKind) -> Backbone {
    let mut options = BackboneOptions::default_in(&models_dir());
    options.kind = kind;
    assert!(
        options.model_dir.join("model.safetensors").is_file(),
        "the DINOv2 weights are not in {}: run `actiond models fetch` (or `cargo run -- models fetch`) first, \
         or point ACTIOND_MODELS_DIR at a models directory that has them",
        options.model_dir.display()
    );
    Backbone::load(&options).expect("backbone loads")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn preprocessing_matches_the_reference_input() {
    let fixture = fixture();
    let frames = fixture["frames_rgb_u8"].flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let pixels = preprocess::frames_to_tensor(&frames, 2, 224, &Device::Cpu).unwrap();
    let error = max_abs_diff(&pixels, &fixture["input"]);
    eprintln!("preprocess max abs error: {error:e}");
    assert!(error < 1e-6, "preprocessed frames differ from the reference input by {error}");
}

#[test]
fn hidden_states_match_onnxruntime() {
    let fixture = fixture();
    let backbone = backbone(FeatureKind::Cls);
    let model = backbone.as_dinov2().expect("the default backbone is DINOv2");

    let position = model.embeddings().position_embeddings();
    let position_error = max_abs_diff(position, &fixture["debug.position_embeddings_224"]);
    let fetched = candle_core::safetensors::load(
        models_dir().join("dinov2-vits14/position_embeddings_224.safetensors"),
        &Device::Cpu,
    )
    .expect("fetch wrote the 224x224 position embedding");
    let fetched_error = max_abs_diff(&fetched["position_embeddings"], &fixture["debug.position_embeddings_224"]);

    let states = model.forward_hidden_states(&fixture["input"]).unwrap();
    let embeddings_error = max_abs_diff(&states[0], &fixture["debug.embeddings"]);
    let layer0_error = max_abs_diff(&states[1], &fixture["debug.layer0_out"]);
    let last_error = max_abs_diff(states.last().unwrap(), &fixture["out.last_hidden_state"]);
    eprintln!(
        "max abs error vs onnxruntime: position embedding {position_error:e} (fetched file {fetched_error:e}), \
         embeddings {embeddings_error:e}, layer 0 {layer0_error:e}, last_hidden_state {last_error:e}"
    );
    // Checked in data-flow order so the first failure names the stage that diverges.
    assert!(position_error < 1e-5, "bicubic position embedding differs by {position_error}");
    assert!(fetched_error < 1e-5, "fetched position_embeddings_224 differs by {fetched_error}");
    assert!(embeddings_error < 1e-4, "embeddings differ by {embeddings_error}");
    assert!(layer0_error < 1e-4, "layer 0 output differs by {layer0_error}");
    assert!(last_error < 1e-3, "last_hidden_state differs by {last_error}");

    let direct = backbone.last_hidden_state(&fixture["input"]).unwrap();
    assert!(max_abs_diff(&direct, states.last().unwrap()) < 1e-6, "forward and forward_hidden_states disagree");
}

#[test]
fn features_from_frames_are_cls_or_cls_plus_mean() {
    let fixture = fixture();
    let reference = &fixture["out.last_hidden_state"];
    let frames = fixture["frames_rgb_u8"].flatten_all().unwrap().to_vec1::<u8>().unwrap();

    let cls = backbone(FeatureKind::Cls);
    assert_eq!(cls.feature_spec(4.0).dim, 384);
    let features = cls.embed_frames(&frames, 2).unwrap();
    assert_eq!(features.dims(), &[2, 384]);
    let error = max_abs_diff(&features, &reference.i((.., 0, ..)).unwrap());
    assert!(error < 1e-3, "CLS features differ from the reference by {error}");

    let cls_mean = backbone(FeatureKind::ClsMean);
    let spec = cls_mean.feature_spec(4.0);
    assert_eq!((spec.dim, spec.kind, spec.input_size, spec.backbone.as_str()), (768, FeatureKind::ClsMean, 224, "dinov2-vits14"));
    let features = cls_mean.embed_frames(&frames, 2).unwrap();
    let expected = Tensor::cat(&[reference.i((.., 0, ..)).unwrap(), reference.i((.., 1.., ..)).unwrap().mean(1).unwrap()], 1).unwrap();
    let error = max_abs_diff(&features, &expected);
    assert!(error < 1e-3, "CLS+mean features differ from the reference by {error}");
}

#[test]
fn wrong_frame_bytes_are_an_error() {
    let backbone = backbone(FeatureKind::Cls);
    let err = backbone.embed_frames(&[0u8; 100], 1).unwrap_err().to_string();
    assert!(err.contains("expected 1 RGB frames of 224x224"), "{err}");
}

/// Cosine similarity of two equally long vectors.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn int8_precision_stays_within_cosine_0_999_of_the_reference_or_is_refused() {
    let mut options = BackboneOptions::default_in(&models_dir());
    options.precision = actiond::backbone::Precision::Int8;
    if !actiond::qgemm::supported() {
        let err = Backbone::load(&options).unwrap_err().to_string();
        assert!(err.contains("AVX-512 VNNI"), "{err}");
        return;
    }
    let fixture = fixture();
    let int8 = Backbone::load(&options).expect("backbone loads in int8");
    let got: Vec<f32> = int8.last_hidden_state(&fixture["input"]).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let want: Vec<f32> = fixture["out.last_hidden_state"].flatten_all().unwrap().to_vec1().unwrap();
    let (tokens, d) = (257, 384);
    for image in 0..2 {
        let token = |v: &[f32], t: usize| v[(image * tokens + t) * d..(image * tokens + t + 1) * d].to_vec();
        let cls = cosine(&token(&got, 0), &token(&want, 0));
        let worst_patch = (1..tokens).map(|t| cosine(&token(&got, t), &token(&want, t))).fold(1.0, f64::min);
        eprintln!("image {image}: int8 CLS cosine {cls:.5}, worst patch token {worst_patch:.5}");
        assert!(cls > 0.999, "image {image}: int8 CLS cosine {cls}");
        assert!(worst_patch > 0.99, "image {image}: int8 patch token cosine {worst_patch}");
    }
}
