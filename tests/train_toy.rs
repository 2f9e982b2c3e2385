//! Training learns a separable toy problem, is reproducible from its seed, resumes exactly, and the
//! `train` / `eval` commands work end to end on the dataset layout with clear errors for bad data.

use std::path::Path;
use std::process::Command;

use actiond::detector::checkpoint::{Detector, HeadCounts, ModelCard};
use actiond::detector::oadtr::OadtrConfig;
use actiond::train::dataset::{DatasetLayout, TARGET_DIR};
use actiond::train::trainer::{train, Quiet, TrainOptions};

fn tiny_config() -> OadtrConfig {
    OadtrConfig {
        dim_feature: 8,
        enc_layers: 8,
        embedding_dim: 16,
        num_heads: 2,
        num_layers: 1,
        hidden_dim: 16,
        query_num: 2,
        decoder_layers: 1,
        decoder_embedding_dim: 16,
        decoder_embedding_dim_out: 16,
        decoder_num_heads: 2,
        numclass: 3,
        ..OadtrConfig::small()
    }
}

/// Videos of 60 chunks in segments of 6–15 chunks (at least four, so every class appears); each class has its own mean feature, plus noise.
fn write_dataset(root: &Path, videos: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    std::fs::create_dir_all(root.join("rgb")).unwrap();
    std::fs::create_dir_all(root.join(TARGET_DIR)).unwrap();
    for v in 0..videos {
        let len = 60;
        let mut features = Vec::new();
        let mut targets = Vec::new();
        let (mut t, mut segment) = (0, v);
        while t < len {
            // Classes take turns so every video shows all three.
            let class = segment % 3;
            segment += 1;
            let run = rng.usize(6..16).min(len - t);
            for _ in 0..run {
                for d in 0..8 {
                    let mean = if d % 3 == class { 1.5 } else { 0.0 };
                    features.push(mean + (rng.f32() - 0.5));
                }
                targets.extend((0..3).map(|c| if c == class { 1.0 } else { 0.0 }));
            }
            t += run;
        }
        actiond::npy::write(&root.join("rgb").join(format!("v{v}.npy")), &[len, 8], &features).unwrap();
        actiond::npy::write(&root.join(TARGET_DIR).join(format!("v{v}.npy")), &[len, 3], &targets).unwrap();
    }
}

fn options(epochs: usize) -> TrainOptions {
    TrainOptions { epochs, batch_size: 16, lr: 3e-3, lr_drop: 100, seed: 7, ..TrainOptions::default() }
}

#[test]
fn learns_a_separable_toy_problem_reproducibly_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 6, 1);
    let layout = DatasetLayout { root: dir.path().to_path_buf(), feature_dirs: vec!["rgb".into()] };
    let cfg = tiny_config();
    let load = |names: &[&str]| names.iter().map(|n| layout.load(n, Some(8), Some(3)).unwrap()).collect::<Vec<_>>();
    let train_set = load(&["v0", "v1", "v2", "v3"]);
    let val_set = load(&["v4", "v5"]);
    let card = ModelCard::new(cfg.clone());

    let out = dir.path().join("run");
    let reports = train(&cfg, card.clone(), &options(6), &train_set, &val_set, &out, false, &mut Quiet).unwrap();
    let losses: Vec<f64> = reports.iter().map(|r| r.train_loss).collect();
    eprintln!("losses {losses:?}, val mAP {:?}", reports.iter().map(|r| r.val_map).collect::<Vec<_>>());
    assert!(losses[5] < 0.6 * losses[0], "loss did not fall: {losses:?}");
    let best_map = reports.iter().filter_map(|r| r.val_map).fold(0.0, f64::max);
    assert!(best_map > 0.9, "validation mAP {best_map}");

    // The best checkpoint loads as a project checkpoint and scores as reported.
    let best = Detector::load(&out.join("best.safetensors"), HeadCounts::default(), &actiond_device()).unwrap();
    assert_eq!(best.card.config, cfg);
    let recorded = best.card.training.as_ref().unwrap().val_map.unwrap();
    let map = actiond::train::trainer::validation_map(&best.engine, &val_set, None).unwrap();
    assert!((map - recorded).abs() < 1e-9 && (map - best_map).abs() < 1e-9);

    // Same seed, same run; 2 epochs then a resume to 4 equals the unbroken run.
    let split = dir.path().join("split");
    let first = train(&cfg, card.clone(), &options(2), &train_set, &val_set, &split, false, &mut Quiet).unwrap();
    assert_eq!(first.iter().map(|r| r.train_loss).collect::<Vec<_>>(), losses[..2].to_vec());
    let rest = train(&cfg, card, &options(6), &train_set, &val_set, &split, true, &mut Quiet).unwrap();
    assert_eq!(rest.len(), 4);
    assert_eq!(rest.iter().map(|r| r.train_loss).collect::<Vec<_>>(), losses[2..].to_vec());
    let a = std::fs::read(out.join("last.safetensors")).unwrap();
    let b = std::fs::read(split.join("last.safetensors")).unwrap();
    assert!(a == b, "resumed weights differ from the unbroken run");
}

fn actiond_device() -> candle_core::Device {
    candle_core::Device::Cpu
}

fn actiond(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_actiond")).args(args).output().unwrap()
}

#[test]
fn train_and_eval_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 4, 2);
    let config = dir.path().join("tiny.json");
    std::fs::write(&config, serde_json::to_string(&tiny_config()).unwrap()).unwrap();
    let data = dir.path().to_str().unwrap();
    let out = dir.path().join("model");
    let run = actiond(&[
        "train", "--data", data, "--feature-dirs", "rgb", "--train-videos", "v0,v1,v2", "--val-videos", "v3",
        "--config", config.to_str().unwrap(), "--epochs", "2", "--batch-size", "32", "--lr", "3e-3",
        "--labels", "background,a,b", "--out", out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let model = out.join("best.safetensors");
    let plot = dir.path().join("timeline.png");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rules]]\nname = \"a-now\"\nlabel = \"a\"\n\n[[rules]]\nname = \"b-soon\"\nlabel = \"b\"\nsource = \"anticipated\"\nhorizon = \"500ms\"\n").unwrap();
    let run = actiond(&[
        "eval", "--model", model.to_str().unwrap(), "--data", data, "--feature-dirs", "rgb", "--videos", "v3", "--json",
        "--plot", plot.to_str().unwrap(), "--rules", rules.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(report["mAP"].as_f64().unwrap() > 0.0 && report["cAP"].as_f64().is_some());
    assert!(report["per_class_AP"]["a"].is_number() && report["per_class_AP"]["b"].is_number());
    assert_eq!(report["anticipation_mAP"].as_array().unwrap().len(), 2);
    assert_eq!(report["anticipation_mAP"][1]["seconds"], 0.5);
    // The rules replayed: every run of `a` at least 2 s (8 chunks) long is an action to catch.
    let targets = actiond::npy::read_matrix(&dir.path().join(TARGET_DIR).join("v3.npy")).unwrap();
    let labelled: Vec<bool> = targets.data.chunks(3).map(|row| row[1] > 0.5).collect();
    let long_runs = labelled.split(|&on| !on).filter(|run| run.len() >= 8).count();
    let replayed = &report["rules"];
    assert_eq!(replayed["seconds"], 15.0);
    assert_eq!(replayed["rules"][0]["name"], "a-now");
    assert_eq!(replayed["rules"][0]["actions"].as_u64().unwrap() as usize, long_runs);
    assert_eq!(replayed["rules"][1]["source"], "anticipated");
    for rule in replayed["rules"].as_array().unwrap() {
        assert!(rule["caught"].as_u64().unwrap() <= rule["actions"].as_u64().unwrap(), "{rule}");
        assert!(rule["false_events"].as_u64().unwrap() <= rule["events"].as_u64().unwrap(), "{rule}");
    }
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // A rule on a label the model does not have is refused, naming the file.
    std::fs::write(&rules, "[[rules]]\nname = \"c-now\"\nlabel = \"c\"\n").unwrap();
    let run = actiond(&["eval", "--model", model.to_str().unwrap(), "--data", data, "--feature-dirs", "rgb", "--rules", rules.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("rules.toml") && stderr.contains("no label \"c\""), "{stderr}");

    // Bad data: one clear line naming the file, nothing written.
    std::fs::remove_file(dir.path().join("rgb/v2.npy")).unwrap();
    let bad_out = dir.path().join("bad");
    let run = actiond(&[
        "train", "--data", data, "--feature-dirs", "rgb", "--train-videos", "v0,v2", "--config", config.to_str().unwrap(),
        "--epochs", "1", "--out", bad_out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("rgb/v2.npy"), "{stderr}");
    assert!(!bad_out.exists());
    actiond::npy::write(&dir.path().join("rgb/v2.npy"), &[59, 8], &vec![0.0; 59 * 8]).unwrap();
    let run = actiond(&["eval", "--model", model.to_str().unwrap(), "--data", data, "--feature-dirs", "rgb", "--videos", "v2"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("rgb/v2.npy") && stderr.contains("has 59 rows"), "{stderr}");
}
