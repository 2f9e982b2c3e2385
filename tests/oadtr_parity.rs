//! OadTR against the official PyTorch model: tests/fixtures/oadtr/oadtr_small.safetensors holds the
//! official weights (state-dict names), an input window batch, the outputs and the debug taps.

use actiond::detector::oadtr::{Oadtr, OadtrConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

const FIXTURE: &str = "tests/fixtures/oadtr/oadtr_small.safetensors";

fn fixture() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(FIXTURE, &Device::Cpu).unwrap()
}

fn model() -> Oadtr {
    // SAFETY: the fixture is a read-only file of this repository.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[FIXTURE], DType::F32, &Device::Cpu).unwrap() };
    Oadtr::new(vb, &OadtrConfig::small()).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn small_config_matches_the_fixture_json() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/oadtr/oadtr_small.json").unwrap()).unwrap();
    let c = &json["config"];
    let cfg = OadtrConfig::small();
    assert_eq!(c["dim_feature"], cfg.dim_feature);
    assert_eq!(c["enc_layers"], cfg.enc_layers);
    assert_eq!(c["embedding_dim"], cfg.embedding_dim);
    assert_eq!(c["num_heads"], cfg.num_heads);
    assert_eq!(c["num_layers"], cfg.num_layers);
    assert_eq!(c["hidden_dim"], cfg.hidden_dim);
    assert_eq!(c["query_num"], cfg.query_num);
    assert_eq!(c["decoder_layers"], cfg.decoder_layers);
    assert_eq!(c["decoder_embedding_dim"], cfg.decoder_embedding_dim);
    assert_eq!(c["decoder_embedding_dim_out"], cfg.decoder_embedding_dim_out);
    assert_eq!(c["decoder_num_heads"], cfg.decoder_num_heads);
    assert_eq!(c["numclass"], cfg.numclass);
    assert_eq!(c["seq_length"], cfg.enc_layers + 1);
}

#[test]
fn debug_taps_and_logits_match_official_pytorch() {
    let fx = fixture();
    let model = model();
    let taps = model.forward_with_taps(&fx["input"]).unwrap();
    let mut report = Vec::new();
    let mut check = |name: &str, ours: &Tensor, tol: f32| {
        let err = max_abs_diff(ours, &fx[name]);
        report.push(format!("{name}: {err:.3e}"));
        assert!(err <= tol, "{name} differs by {err:.3e} (tolerance {tol:.0e}); so far: {report:?}");
    };
    // Taps are checked in data-flow order so the first failure names where the models diverge.
    check("debug.embedded", &taps.embedded, 1e-4);
    check("debug.encoder_out", &taps.encoder_out, 1e-4);
    for (i, layer) in taps.decoder_layers.iter().enumerate() {
        check(&format!("debug.decoder_layer{i}_out"), layer, 1e-4);
    }
    check("debug.decoder_out", &taps.decoder_out, 1e-4);
    check("out.current_logits", &taps.output.current, 1e-4);
    check("out.anticipation_logits", &taps.output.anticipation, 1e-4);
    // Against the float64 run of the same model: f32 rounding alone, on both sides, is ~1e-6.
    let f64_current = fx["out_f64.current_logits"].to_dtype(DType::F32).unwrap();
    let f64_anticipation = fx["out_f64.anticipation_logits"].to_dtype(DType::F32).unwrap();
    let err = max_abs_diff(&taps.output.current, &f64_current).max(max_abs_diff(&taps.output.anticipation, &f64_anticipation));
    report.push(format!("vs float64 reference: {err:.3e}"));
    assert!(err <= 1e-4, "float64 reference differs by {err:.3e}");
    eprintln!("max abs errors: {}", report.join(", "));
}

#[test]
fn forward_equals_taps_forward_and_batch_rows_are_independent() {
    let fx = fixture();
    let model = model();
    let input = &fx["input"];
    let out = model.forward(input, false).unwrap();
    let row1 = model.forward(&input.narrow(0, 1, 1).unwrap(), false).unwrap();
    assert!(max_abs_diff(&out.current.narrow(0, 1, 1).unwrap(), &row1.current) < 1e-5);
    assert!(max_abs_diff(&out.anticipation.narrow(0, 1, 1).unwrap(), &row1.anticipation) < 1e-5);
    assert!(max_abs_diff(&out.current, &fx["out.current_logits"]) <= 1e-4);
}

#[test]
fn dropout_is_active_only_in_training_mode() {
    let fx = fixture();
    let model = model();
    let eval_a = model.forward(&fx["input"], false).unwrap();
    let eval_b = model.forward(&fx["input"], false).unwrap();
    assert_eq!(max_abs_diff(&eval_a.current, &eval_b.current), 0.0);
    let train = model.forward(&fx["input"], true).unwrap();
    assert!(max_abs_diff(&eval_a.current, &train.current) > 1e-3);
}

#[test]
fn wrong_window_length_is_an_error_not_a_panic() {
    let model = model();
    let short = Tensor::zeros((1, 10, 384), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&short, false).unwrap_err().to_string();
    assert!(err.contains("window holds 10 chunks"), "{err}");
}

#[test]
fn cpu_inference_engine_matches_official_pytorch() {
    use actiond::detector::oadtr_cpu::OadtrCpu;
    let fx = fixture();
    // SAFETY: the fixture is a read-only file of this repository.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[FIXTURE], DType::F32, &Device::Cpu).unwrap() };
    let engine = OadtrCpu::new(vb, &OadtrConfig::small()).unwrap();
    let input = &fx["input"];
    let batch = input.dim(0).unwrap();
    let logits = engine.forward(&input.flatten_all().unwrap().to_vec1::<f32>().unwrap(), batch);
    let current = Tensor::from_vec(logits.current, fx["out.current_logits"].shape(), &Device::Cpu).unwrap();
    let anticipation = Tensor::from_vec(logits.anticipation, fx["out.anticipation_logits"].shape(), &Device::Cpu).unwrap();
    let errors = [
        max_abs_diff(&current, &fx["out.current_logits"]),
        max_abs_diff(&anticipation, &fx["out.anticipation_logits"]),
    ];
    eprintln!("CPU engine max abs errors: current {:.3e}, anticipation {:.3e}", errors[0], errors[1]);
    assert!(errors.iter().all(|&e| e <= 1e-4), "CPU engine differs from PyTorch by {errors:?}");
    // One window alone gives what it gives inside the batch.
    let first = engine.forward(&input.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), 1);
    let c = first.current.len();
    let in_batch = current.get(0).unwrap().to_vec1::<f32>().unwrap();
    let alone_err = first.current.iter().zip(&in_batch[..c]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(alone_err <= 1e-5, "batch row 0 differs from the window alone by {alone_err:.3e}");
}
