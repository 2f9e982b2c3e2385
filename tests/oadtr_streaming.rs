//! Streaming equals offline windowed inference, and checkpoints round-trip in both formats.

use std::collections::HashMap;

use actiond::detector::checkpoint::{self, Detector, HeadCounts, ModelCard};
use actiond::detector::oadtr::{Oadtr, OadtrConfig};
use actiond::detector::oadtr_cpu::OadtrCpu;
use actiond::detector::window::{run_sequence, window_indices, Activation, StreamingDetector};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

const FIXTURE: &str = "tests/fixtures/oadtr/oadtr_small.safetensors";
const SMALL_HEADS: HeadCounts = HeadCounts { num_heads: 4, decoder_num_heads: 4 };

fn model() -> Oadtr {
    // SAFETY: the fixture is a read-only file of this repository.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[FIXTURE], DType::F32, &Device::Cpu).unwrap() };
    Oadtr::new(vb, &OadtrConfig::small()).unwrap()
}

/// The inference engine on the same weights (what streams and `run_sequence` run).
fn engine() -> OadtrCpu {
    // SAFETY: the fixture is a read-only file of this repository.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[FIXTURE], DType::F32, &Device::Cpu).unwrap() };
    OadtrCpu::new(vb, &OadtrConfig::small()).unwrap()
}

/// Deterministic pseudo-random features in [-2, 2).
fn features(len: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
                })
                .collect()
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn padding_repeats_the_first_chunk() {
    assert_eq!(window_indices(0, 4).collect::<Vec<_>>(), vec![0, 0, 0, 0]);
    assert_eq!(window_indices(2, 4).collect::<Vec<_>>(), vec![0, 0, 1, 2]);
    assert_eq!(window_indices(5, 4).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
}

#[test]
fn streaming_two_streams_equals_offline_windows() {
    let model = engine();
    let cfg = model.config().clone();
    let long = features(80, cfg.dim_feature, 1); // longer than the window: the ring wraps
    let short = features(20, cfg.dim_feature, 2); // joins at step 10
    let activation = Activation::Probabilities { ignore_class: Some(21) };
    let offline = |seq: &[Vec<f32>]| {
        let flat: Vec<f32> = seq.concat();
        let x = Tensor::from_vec(flat, (seq.len(), cfg.dim_feature), &Device::Cpu).unwrap();
        let (cur, ant) = run_sequence(&model, &x, activation, 16, |_| {}).unwrap();
        (cur.to_vec2::<f32>().unwrap(), ant.to_vec3::<f32>().unwrap())
    };
    let (long_cur, long_ant) = offline(&long);
    let (short_cur, short_ant) = offline(&short);

    let mut live = StreamingDetector::new(model.clone(), activation);
    let a = live.add_stream();
    let mut b = None;
    let mut worst = 0.0f32;
    for t in 0..long.len() {
        if t == 10 {
            b = Some(live.add_stream());
        }
        let mut inputs = vec![(a, long[t].as_slice())];
        let tb = t.wrapping_sub(10);
        if let Some(b) = b.filter(|_| tb < short.len()) {
            inputs.push((b, short[tb].as_slice()));
        }
        let outs = live.step(&inputs).unwrap();
        worst = worst.max(max_diff(&outs[0].current, &long_cur[t]));
        for i in 0..cfg.query_num {
            worst = worst.max(max_diff(&outs[0].anticipation[i], &long_ant[t][i]));
        }
        if inputs.len() == 2 {
            worst = worst.max(max_diff(&outs[1].current, &short_cur[tb]));
            worst = worst.max(max_diff(&outs[1].anticipation[cfg.query_num - 1], &short_ant[tb][cfg.query_num - 1]));
        }
        assert_eq!(outs[0].current[21], 0.0, "the ignore class is left out of the softmax");
        assert!((outs[0].current.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    eprintln!("streaming vs offline max abs difference: {worst:.3e}");
    assert!(worst < 1e-5, "streaming differs from offline windows by {worst}");
}

#[test]
fn offline_windows_equal_explicitly_built_windows() {
    let model = model();
    let cfg = model.config().clone();
    let seq = features(70, cfg.dim_feature, 3);
    let x = Tensor::from_vec(seq.concat(), (seq.len(), cfg.dim_feature), &Device::Cpu).unwrap();
    // Offline windows run in the inference engine; each window alone in the candle model.
    let (cur, _) = run_sequence(&engine(), &x, Activation::Logits, 32, |_| {}).unwrap();
    for t in [0usize, 5, 63, 69] {
        let rows: Vec<f32> = window_indices(t, cfg.enc_layers).flat_map(|i| seq[i].clone()).collect();
        let window = Tensor::from_vec(rows, (1, cfg.enc_layers, cfg.dim_feature), &Device::Cpu).unwrap();
        let direct = model.forward(&window, false).unwrap().current.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let row = cur.get(t).unwrap().to_vec1::<f32>().unwrap();
        assert!(max_diff(&direct, &row) < 1e-5, "window ending at {t}");
    }
}

#[test]
fn stream_errors_are_reported_not_panics() {
    let mut live = StreamingDetector::new(engine(), Activation::Logits);
    let a = live.add_stream();
    let short = vec![0.0f32; 10];
    assert!(live.step(&[(a, &short)]).unwrap_err().to_string().contains("expects 384"));
    let ok = vec![0.0f32; 384];
    assert!(live.step(&[(a, &ok), (a, &ok)]).unwrap_err().to_string().contains("twice"));
    // A reset stream starts a fresh padded window: its first output equals a new stream's.
    let first = live.step(&[(a, &ok)]).unwrap();
    let feature: Vec<f32> = (0..384).map(|i| i as f32 / 384.0).collect();
    live.step(&[(a, &feature)]).unwrap();
    live.reset(a);
    let after_reset = live.step(&[(a, &ok)]).unwrap();
    assert_eq!(first, after_reset);
    let slot = live.open_slot(5);
    assert_eq!(slot.slot(), 5);
    assert_eq!(live.step(&[(slot, &ok)]).unwrap(), first);
    live.remove_stream(a);
    assert!(live.step(&[(a, &ok)]).unwrap_err().to_string().contains("not open"));
}

#[test]
fn official_state_dict_loads_with_inferred_config() {
    let detector = Detector::load(FIXTURE.as_ref(), SMALL_HEADS, &Device::Cpu).unwrap();
    assert_eq!(detector.card.config, OadtrConfig::small());
    assert_eq!(detector.card.labels.len(), 22);
}

#[test]
fn project_checkpoint_round_trips_and_bad_sidecars_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.safetensors");
    let all = candle_core::safetensors::load(FIXTURE, &Device::Cpu).unwrap();
    let state: HashMap<String, Tensor> = all
        .into_iter()
        .filter(|(name, _)| !(name.starts_with("debug.") || name.starts_with("out") || name == "input"))
        .collect();
    let mut card = ModelCard::new(OadtrConfig::small());
    card.labels[1] = "wave".into();
    card.ignore_class = Some(21);
    checkpoint::save_tensors(&state, &card, &path).unwrap();
    assert!(!checkpoint::tmp_path(&path).exists());
    let loaded = Detector::load(&path, HeadCounts::default(), &Device::Cpu).unwrap();
    assert_eq!(loaded.card, card, "the sidecar wins over inferred head counts");
    let fx = candle_core::safetensors::load(FIXTURE, &Device::Cpu).unwrap();
    let out = loaded.model.forward(&fx["input"], false).unwrap();
    let err = (out.current - &fx["out.current_logits"]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(err < 1e-4);

    let sidecar = checkpoint::sidecar_path(&path);
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
    json["labels"] = serde_json::json!(["background", "wave"]);
    std::fs::write(&sidecar, json.to_string()).unwrap();
    let err = Detector::load(&path, HeadCounts::default(), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("small.json") && err.contains("labels lists 2 names but config.numclass is 22"), "{err}");

    json["labels"] = serde_json::json!(card.labels);
    json["config"]["embedding_dim"] = serde_json::json!("big");
    std::fs::write(&sidecar, json.to_string()).unwrap();
    let err = Detector::load(&path, HeadCounts::default(), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("small.json") && err.contains("config.embedding_dim"), "{err}");
}

#[test]
fn missing_and_foreign_files_are_clear_errors() {
    let err = Detector::load("no/such/model.safetensors".as_ref(), HeadCounts::default(), &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("no/such/model.safetensors"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    let mut t = HashMap::new();
    t.insert("weight".to_string(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&t, &path).unwrap();
    let err = Detector::load(&path, HeadCounts::default(), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("not an OadTR state dict"), "{err}");
}
