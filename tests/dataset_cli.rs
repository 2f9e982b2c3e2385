//! `actiond dataset build` and `actiond dataset compose`, through the binary with the real FFmpeg
//! and the real backbone: targets made from THUMOS annotations agree with the synth world's own
//! ground truth chunk for chunk; a model trained on the built set carries its label names; bad
//! annotations stop the build before extraction with the file and line; composed streams keep
//! groups apart, hold the frames the ground truth says, and come out the same twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use actiond::config::Config;
use actiond::shutdown::Shutdown;
use actiond::source::ffmpeg::{run_session, Flow, StreamCursor};
use actiond::source::{SourceSettings, StreamStats};
use actiond::synth::encode::Mp4Writer;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn actiond(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actiond")).args(args).env_remove("RUST_LOG").output().unwrap()
}

fn text(out: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn build_from_thumos_annotations_matches_the_synth_ground_truth_and_feeds_training() {
    let dir = tempfile::tempdir().unwrap();
    let synth = dir.path().join("synth");
    let out = actiond(&["synth", "--out", s(&synth), "--videos", "1", "--seconds", "10", "--seed", "77", "--no-footage"]);
    assert!(out.status.success(), "{}", text(&out));

    let data = dir.path().join("data");
    let backbone = repo("assets/models/dinov2-vits14");
    let (videos, labels) = (synth.join("videos"), synth.join("labels.txt"));
    let build = |extra: &[&str]| {
        let mut args = vec!["dataset", "build", "--videos", s(&videos), "--labels", s(&labels), "--out", s(&data)];
        args.extend_from_slice(&["--backbone", s(&backbone)]);
        args.extend_from_slice(extra);
        actiond(&args)
    };
    let out = build(&["--annotations", s(&synth.join("annotations"))]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 videos, 40 chunks at 4 fps"), "{}", text(&out));

    let name = "synth-77-0000";
    let expected = actiond::npy::read_matrix(&synth.join("target_perframe").join(format!("{name}.npy"))).unwrap();
    let built = actiond::npy::read_matrix(&data.join("target_perframe").join(format!("{name}.npy"))).unwrap();
    assert_eq!(built.shape, expected.shape);
    assert_eq!(built.data, expected.data, "targets from the annotations differ from the world's per-chunk labels");
    let features = actiond::npy::read_matrix(&data.join("dinov2_vits14").join(format!("{name}.npy"))).unwrap();
    // Without --feature, the kind the configured detector reads (the bundled one: CLS + 74 motion values).
    assert_eq!(features.shape, vec![40, 384 + actiond::source::motion::MOTION_SHAPE_DIM]);
    let spec = std::fs::read_to_string(data.join("dinov2_vits14").join(format!("{name}.json"))).unwrap();
    assert!(spec.contains("\"cls+motion+shape\""), "{spec}");
    assert_eq!(std::fs::read_to_string(data.join("labels.txt")).unwrap(), std::fs::read_to_string(synth.join("labels.txt")).unwrap());

    // A second run finds the features done and only remakes the targets.
    let started = std::time::Instant::now();
    let out = build(&["--annotations", s(&synth.join("annotations"))]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(started.elapsed().as_secs_f64() < 10.0, "the second build extracted again");

    // Training reads the names and the feature spec from the dataset.
    let model = dir.path().join("model");
    let out = actiond(&[
        "train", "--data", s(&data), "--train-videos", name, "--small", "--window", "8", "--epochs", "1", "--max-windows", "16",
        "--batch-size", "8", "--out", s(&model),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let card: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("last.json")).unwrap()).unwrap();
    let card_text = card.to_string();
    assert!(card_text.contains("\"pick_up\"") && card_text.contains("dinov2-vits14"), "{card_text}");
}

#[test]
fn bad_annotations_stop_the_build_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    write_clip(&videos.join("clip.mp4"), [200, 40, 40], 50, 25.0); // 2 s
    let labels = dir.path().join("labels.txt");
    std::fs::write(&labels, "wave\njump\n").unwrap();
    let csv = dir.path().join("ann.csv");
    let data = dir.path().join("data");
    for (body, line, needle) in [
        ("video,start_s,end_s,label\nclip,0.2,1.0,wave\nclip,0.5,1.5,dance\n", 3, "label \"dance\""),
        ("clip,0.2,1.0,wave\nother,0,1,wave\n", 2, "video \"other\""),
        ("clip,0.2,1.0,wave\nclip,1.5,9.0,jump\n", 2, "lasts 2.00 s"),
        ("clip,1.0,0.5,wave\n", 1, "before it starts"),
    ] {
        std::fs::write(&csv, body).unwrap();
        let out = actiond(&["dataset", "build", "--videos", s(&videos), "--annotations", s(&csv), "--labels", s(&labels), "--out", s(&data)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body:?}: {}", text(&out));
        assert!(stderr.contains(&format!("ann.csv:{line}:")) && stderr.contains(needle), "{body:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!data.exists(), "nothing is written before the annotations are valid");
    }
}

/// Writes `frames` frames of one hue at `fps`, brightening over time so frame order is visible.
fn write_clip(path: &Path, rgb: [u8; 3], frames: usize, fps: f64) {
    let (w, h) = (32u32, 24u32);
    let mut writer = Mp4Writer::create(path, w, h, fps, 10).unwrap();
    for k in 0..frames {
        let gain = 0.5 + 0.5 * k as f32 / frames as f32;
        let pixel = rgb.map(|c| (c as f32 * gain) as u8);
        let frame: Vec<u8> = (0..w * h).flat_map(|_| pixel).collect();
        writer.push(&frame).unwrap();
    }
    writer.finish().unwrap();
}

/// Mean RGB of every frame of a video, decoded at `fps`.
fn mean_colours(path: &Path, fps: f64) -> Vec<[f32; 3]> {
    let config = Config::load(None).unwrap();
    let mut settings = SourceSettings::for_url(&config, "t", path.to_str().unwrap()).unwrap();
    settings.fps = fps;
    settings.output_size = (32, 24);
    let mut colours = Vec::new();
    run_session(&settings, &StreamStats::new(), &Shutdown::new(), &mut StreamCursor::new(fps), &mut |_| {}, &mut |frame| {
        let mut sum = [0f32; 3];
        for px in frame.rgb.chunks_exact(3) {
            for c in 0..3 {
                sum[c] += px[c] as f32;
            }
        }
        colours.push(sum.map(|v| v / (frame.rgb.len() / 3) as f32));
        Flow::Continue
    })
    .unwrap();
    colours
}

#[test]
fn compose_keeps_groups_apart_and_its_ground_truth_matches_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    std::fs::create_dir(&clips).unwrap();
    // Red clips are "wave", blue ones "bend"; three actors; one clip at half the frame rate.
    let mut csv = String::from("path,action,actor\n");
    for (actor, frames) in [("ann", 30), ("bob", 40), ("cy", 25)] {
        write_clip(&clips.join(format!("{actor}-wave.mp4")), [220, 30, 30], frames, 25.0);
        csv.push_str(&format!("{actor}-wave.mp4,wave,{actor}\n"));
    }
    for (actor, frames, fps) in [("ann", 20, 25.0), ("bob", 10, 12.5), ("cy", 35, 25.0)] {
        write_clip(&clips.join(format!("{actor}-bend.mp4")), [30, 30, 220], frames, fps);
        csv.push_str(&format!("{actor}-bend.mp4,bend,{actor}\n"));
    }
    let labels = dir.path().join("clips.csv");
    std::fs::write(&labels, csv).unwrap();
    let compose = |out: &Path| {
        actiond(&[
            "dataset", "compose", "--clips", s(&clips), "--labels", s(&labels), "--out", s(out), "--file-column", "path",
            "--label-column", "action", "--group-column", "actor", "--test-groups", "cy", "--train-streams", "2", "--test-streams", "1",
            "--clips-per-stream", "3", "--gap", "0.5-1", "--seed", "9",
        ])
    };
    let out_a = dir.path().join("a");
    let out = compose(&out_a);
    assert!(out.status.success(), "{}", text(&out));

    // The split: cy only in test, ann and bob only in train.
    let split = |name: &str| std::fs::read_to_string(out_a.join("split").join(name)).unwrap().lines().map(String::from).collect::<BTreeSet<_>>();
    assert_eq!(split("train.txt"), BTreeSet::from(["train-000".to_string(), "train-001".to_string()]));
    assert_eq!(split("test.txt"), BTreeSet::from(["test-000".to_string()]));
    let rows = std::fs::read_to_string(out_a.join("streams.csv")).unwrap();
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in rows.lines().skip(1) {
        let f: Vec<&str> = row.split(',').collect();
        groups.entry(f[1].to_string()).or_default().insert(f[5].to_string());
    }
    assert_eq!(groups["test"], BTreeSet::from(["cy".to_string()]));
    assert!(!groups["train"].contains("cy"), "{rows}");

    // Every stream: the per-frame labels cover every decoded frame; labelled frames show their
    // label's colour; each segment is as long as its clip at 25 fps (the 12.5 fps clip doubles).
    let clip_frames: BTreeMap<&str, u64> =
        [("ann-wave", 30), ("bob-wave", 40), ("cy-wave", 25), ("ann-bend", 20), ("bob-bend", 20), ("cy-bend", 35)].into_iter().collect();
    for stream in ["train-000", "train-001", "test-000"] {
        let labels: Vec<String> = std::fs::read_to_string(out_a.join("frames").join(format!("{stream}.txt"))).unwrap().lines().map(String::from).collect();
        let colours = mean_colours(&out_a.join("videos").join(format!("{stream}.mp4")), 25.0);
        assert_eq!(colours.len(), labels.len(), "{stream}: frames in the video vs lines of ground truth");
        for (i, (label, c)) in labels.iter().zip(&colours).enumerate() {
            match label.as_str() {
                "wave" => assert!(c[0] > c[2] + 50.0, "{stream} frame {i}: wave but {c:?}"),
                "bend" => assert!(c[2] > c[0] + 50.0, "{stream} frame {i}: bend but {c:?}"),
                "background" => {}
                other => panic!("unexpected label {other}"),
            }
        }
        for row in rows.lines().filter(|r| r.starts_with(stream)) {
            let f: Vec<&str> = row.split(',').collect();
            let (start, end): (f64, f64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
            let clip = Path::new(f[6]).file_stem().unwrap().to_str().unwrap();
            assert_eq!(((end - start) * 25.0).round() as u64, clip_frames[clip], "{row}");
            let first = (start * 25.0).round() as usize;
            assert!(first > 0 && labels[first - 1] == "background" && labels[first] == f[4], "{row}: an idle gap precedes each clip");
        }
        // The THUMOS annotations say the same as the per-frame files.
        let thumos: usize = ["wave", "bend"]
            .iter()
            .filter_map(|l| std::fs::read_to_string(out_a.join("annotations").join(format!("{l}.txt"))).ok())
            .map(|t| t.lines().filter(|line| line.starts_with(&format!("{stream} "))).count())
            .sum();
        assert_eq!(thumos, 3, "{stream}: three clips annotated");
    }

    // Same inputs and seed, same bytes.
    let out_b = dir.path().join("b");
    let out = compose(&out_b);
    assert!(out.status.success(), "{}", text(&out));
    for file in ["videos/train-000.mp4", "videos/test-000.mp4", "frames/train-001.txt", "streams.csv", "labels.txt", "annotations/wave.txt"] {
        assert_eq!(std::fs::read(out_a.join(file)).unwrap(), std::fs::read(out_b.join(file)).unwrap(), "{file} differs between runs");
    }
    let bad = actiond(&["dataset", "compose", "--clips", s(&clips), "--labels", s(&labels), "--out", s(&dir.path().join("c"))]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no column \"file\""), "{}", text(&bad));
}

#[test]
fn ambiguous_stretches_are_kept_as_a_column_and_ignored_by_training() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    write_clip(&videos.join("cam.mp4"), [200, 40, 40], 100, 25.0); // 4 s → 16 chunks
    let labels = dir.path().join("labels.txt");
    std::fs::write(&labels, "wave\nAmbiguous\n").unwrap();
    let csv = dir.path().join("ann.csv");
    // Overlapping wave and ambiguous from 1.5 s to 2 s: multi-hot rows.
    std::fs::write(&csv, "cam,0.5,2.0,wave\ncam,1.5,3.0,ambiguous\n").unwrap();
    let data = dir.path().join("data");
    let out = actiond(&[
        "dataset", "build", "--videos", s(&videos), "--annotations", s(&csv), "--labels", s(&labels), "--out", s(&data),
        "--backbone", s(&repo("assets/models/dinov2-vits14")),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(ignored in training and evaluation)"), "{}", text(&out));
    let targets = actiond::npy::read_matrix(&data.join("target_perframe/cam.npy")).unwrap();
    assert_eq!(targets.shape, vec![16, 3]);
    let rows: Vec<&[f32]> = targets.data.chunks(3).collect();
    // Chunk k is at k/4 s: 0–1 background, 2–5 wave, 6–7 wave and ambiguous, 8–11 ambiguous, then background.
    assert_eq!(rows[1], [1.0, 0.0, 0.0]);
    assert_eq!(rows[2], [0.0, 1.0, 0.0]);
    assert_eq!(rows[6], [0.0, 1.0, 1.0]);
    assert_eq!(rows[8], [0.0, 0.0, 1.0]);
    assert_eq!(rows[12], [1.0, 0.0, 0.0]);

    let model = dir.path().join("model");
    let out = actiond(&[
        "train", "--data", s(&data), "--train-videos", "cam", "--small", "--window", "4", "--epochs", "1", "--batch-size", "4", "--out", s(&model),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let card: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("last.json")).unwrap()).unwrap();
    assert_eq!(card["ignore_class"], 2, "{card}");
    assert_eq!(card["labels"], serde_json::json!(["background", "wave", "Ambiguous"]), "{card}");
}
