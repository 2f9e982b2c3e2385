//! `actiond synth`'s training set: same seed, same bytes; annotations that agree with the per-chunk
//! targets; videos the project's own ingest decodes frame for frame; every class present; lead-ins
//! before the actions that have them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use actiond::config::Config;
use actiond::shutdown::Shutdown;
use actiond::source::ffmpeg::{run_session, Flow, StreamCursor};
use actiond::source::{SourceSettings, StreamStats};
use actiond::synth::background::Footage;
use actiond::synth::dataset::{self, DatasetSpec};
use actiond::synth::world::{Action, Motion};
use actiond::synth::{SynthStream, LABELS};

fn spec(out: &Path, videos: usize, seed: u64, seconds: f64, fps: f64, size: (u32, u32), footage: Footage) -> DatasetSpec {
    DatasetSpec { out: out.to_path_buf(), videos, seed, seconds, fps, width: size.0, height: size.1, chunk_fps: 4.0, crf: 23, footage }
}

fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["", "videos", "annotations", "target_perframe"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Annotation segments per video: (class, start_frame, end_frame), recovered from the seconds.
fn annotations(dir: &Path, fps: f64) -> BTreeMap<String, Vec<(usize, u64, u64)>> {
    let mut by_video: BTreeMap<String, Vec<(usize, u64, u64)>> = BTreeMap::new();
    for (label, name) in LABELS.iter().enumerate().skip(1) {
        let text = std::fs::read_to_string(dir.join("annotations").join(format!("{name}.txt"))).unwrap();
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "{name}.txt: {line}");
            let start: f64 = parts[1].parse().unwrap();
            let end: f64 = parts[2].parse().unwrap();
            assert!(start < end, "{line}");
            by_video.entry(parts[0].to_string()).or_default().push((label, (start * fps).round() as u64, (end * fps).round() as u64));
        }
    }
    by_video
}

#[test]
fn same_seed_same_bytes_other_seed_other_videos() {
    let footage = Footage::load(Path::new("assets/media/bikes.mp4"), 128, 96, 2.0, 6).unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (dir, seed) in dirs.iter().zip([5, 5, 6]) {
        dataset::write(&spec(dir.path(), 2, seed, 5.0, 12.0, (128, 96), footage.clone()), &mut || {}).unwrap();
    }
    let (a, b, c) = (files_under(dirs[0].path()), files_under(dirs[1].path()), files_under(dirs[2].path()));
    assert_eq!(a.len(), 2 * 2 + 9 + 2, "{:?}", a.keys().collect::<Vec<_>>());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        assert!(bytes == &b[path], "{} differs between two runs of seed 5", path.display());
    }
    let video = Path::new("videos/synth-5-0000.mp4");
    assert!(a[video].len() > 2_000);
    assert!(c.keys().all(|p| !p.to_string_lossy().contains("synth-5-")));
    assert_ne!(a[video], c[Path::new("videos/synth-6-0000.mp4")]);
    // No temporary files left behind.
    assert!(a.keys().all(|p| !p.to_string_lossy().ends_with(".tmp")));
}

#[test]
fn videos_decode_through_the_ingest_and_targets_agree_with_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let (fps, seconds) = (10.0, 12.0);
    let spec = spec(dir.path(), 2, 21, seconds, fps, (96, 64), Footage::none());
    dataset::write(&spec, &mut || {}).unwrap();
    let labels = std::fs::read_to_string(dir.path().join("labels.txt")).unwrap();
    assert_eq!(labels.lines().collect::<Vec<_>>(), LABELS);
    let notes = annotations(dir.path(), fps);

    let config = Config::load(None).unwrap();
    for index in 0..2 {
        let name = dataset::video_name(21, index);
        // Every frame, in order, at the writer's rate and size.
        let path = dir.path().join("videos").join(format!("{name}.mp4"));
        let mut settings = SourceSettings::for_url(&config, "t", path.to_str().unwrap()).unwrap();
        settings.fps = fps;
        settings.output_size = (96, 64);
        let mut pts = Vec::new();
        run_session(&settings, &StreamStats::new(), &Shutdown::new(), &mut StreamCursor::new(fps), &mut |_| {}, &mut |frame| {
            assert_eq!((frame.width, frame.height, frame.rgb.len()), (96, 64, 96 * 64 * 3));
            pts.push(frame.pts);
            Flow::Continue
        })
        .unwrap();
        assert_eq!(pts.len(), (seconds * fps) as usize, "{name}: decoded frames");
        for (i, t) in pts.iter().enumerate() {
            assert!((t - i as f64 / fps).abs() < 1e-3, "{name}: frame {i} at {t}");
        }

        // Chunk k of the targets is frame ceil(k · fps / 4) = ceil(2.5 k): labelled as the annotations say.
        let target = actiond::npy::read_matrix(&dir.path().join("target_perframe").join(format!("{name}.npy"))).unwrap();
        let (rows, cols) = (target.shape[0], target.shape[1]);
        assert_eq!((rows, cols), ((seconds * 4.0) as usize, LABELS.len()));
        let segments = notes.get(&name).cloned().unwrap_or_default();
        let mut labelled_rows = 0;
        for k in 0..rows {
            let row = &target.data[k * cols..(k + 1) * cols];
            assert_eq!(row.iter().sum::<f32>(), 1.0, "{name} row {k} is one-hot");
            let hot = row.iter().position(|v| *v == 1.0).unwrap();
            let frame = (k as u64 * 5).div_ceil(2);
            let expected = segments.iter().find(|(_, s, e)| *s <= frame && frame < *e).map_or(0, |(label, _, _)| *label);
            assert_eq!(hot, expected, "{name} chunk {k} (frame {frame})");
            labelled_rows += usize::from(hot != 0);
        }
        assert!(labelled_rows > 0, "{name}: some action within {seconds} s");
    }
}

#[test]
fn every_class_appears_across_a_few_videos() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny frames at the chunk rate: this test is about the timelines, not the pixels.
    let spec = spec(dir.path(), 4, 1, 60.0, 4.0, (48, 32), Footage::none());
    dataset::write(&spec, &mut || {}).unwrap();
    let seen: BTreeSet<usize> = annotations(dir.path(), 4.0).values().flatten().map(|(label, _, _)| *label).collect();
    assert_eq!(seen, (1..LABELS.len()).collect::<BTreeSet<_>>());
    // Background (idle gaps, lead-ins, recoveries) is there too.
    let target = actiond::npy::read_matrix(&dir.path().join("target_perframe/synth-1-0000.npy")).unwrap();
    assert!(target.data.chunks(LABELS.len()).any(|row| row[0] == 1.0));
}

#[test]
fn lead_ins_precede_jump_fall_and_pick_up_and_are_labelled_background() {
    let fps = 12.0;
    let mut checked = BTreeSet::new();
    for index in 0..6 {
        let mut stream = SynthStream::new(dataset::video_seed(9, index), 32, 32, fps);
        let labels: Vec<usize> = (0..(fps * 90.0) as usize).map(|_| stream.skip_frame()).collect();
        for run in dataset::labelled_runs(&labels) {
            let start = run.start_frame as f64 / fps;
            let segment = stream.segment_at(start);
            let Motion::Act(action @ (Action::Jump | Action::Fall | Action::PickUp)) = segment.motion else { continue };
            // The stretch just before the onset is the lead-in, labelled background.
            let before = stream.segment_at(segment.start - 1e-6);
            assert_eq!(before.motion, Motion::LeadIn(action), "{action:?} at {start}");
            assert!(before.duration() >= 0.85, "{action:?}: lead-in of {} s", before.duration());
            let lead_frames = (before.duration() * fps) as u64 - 1;
            assert!(labels[(run.start_frame - lead_frames) as usize..run.start_frame as usize].iter().all(|l| *l == 0));
            checked.insert(format!("{action:?}"));
        }
    }
    assert_eq!(checked.len(), 3, "{checked:?}");
}

#[test]
fn lead_in_poses_differ_from_idle() {
    // A lead-in must be visible: the figure's pixels at its end differ from the idle frame before it.
    let fps = 12.0;
    let mut stream = SynthStream::new(dataset::video_seed(9, 0), 160, 120, fps);
    let mut previous_idle: Option<Vec<u8>> = None;
    let mut compared = 0;
    for _ in 0..(fps * 120.0) as usize {
        let frame = stream.next_frame();
        let segment = stream.segment_at(frame.pts);
        match segment.motion {
            Motion::Idle { .. } => previous_idle = Some(frame.rgb),
            Motion::LeadIn(_) if frame.pts + 1.5 / fps >= segment.end => {
                if let Some(idle) = previous_idle.take() {
                    let changed = idle.chunks(3).zip(frame.rgb.chunks(3)).filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.abs_diff(*y) > 40)).count();
                    assert!(changed > 60, "lead-in at {} s changes only {changed} pixels", frame.pts);
                    compared += 1;
                }
            }
            _ => {}
        }
    }
    assert!(compared >= 1);
}
