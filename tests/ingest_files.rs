//! File ingest on real footage: sampling by PTS gives exactly the frames PTS arithmetic predicts, frames
//! come out scaled to the model's RGB input, and damaged copies decode without a panic and report errors.

mod support;

use std::path::Path;

use actiond::config::Config;
use actiond::shutdown::Shutdown;
use actiond::source::ffmpeg::{run_session, Flow, SessionEnd, StreamCursor};
use actiond::source::{spawn, Frame, SourceSettings, StreamStats};

fn settings_for(path: &Path, fps: f64) -> SourceSettings {
    let mut s = SourceSettings::for_url(&Config::default(), "test", &path.display().to_string()).unwrap();
    s.fps = fps;
    s
}

fn decode_all(path: &Path, fps: f64) -> (Vec<Frame>, actiond::source::StatsSnapshot, SessionEnd) {
    let settings = settings_for(path, fps);
    let stats = StreamStats::new();
    let mut frames = Vec::new();
    let end = run_session(&settings, &stats, &Shutdown::new(), &mut StreamCursor::new(fps), &mut |_| {}, &mut |f| {
        frames.push(f);
        Flow::Continue
    })
    .unwrap();
    (frames, stats.snapshot(), end)
}

/// Timestamps of every frame as FFmpeg's own ffprobe reports them, and the stream's time base.
fn ffprobe_timestamps(path: &Path) -> (Vec<i64>, (i64, i64)) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ffprobe").args(args).arg(path).output().expect("ffprobe runs");
        assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let frames = run(&["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp", "-of", "json"]);
    let stamps = frames["frames"].as_array().unwrap().iter().map(|f| f["best_effort_timestamp"].as_i64().unwrap()).collect();
    let stream = run(&["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=time_base", "-of", "json"]);
    let tb = stream["streams"][0]["time_base"].as_str().unwrap();
    let (n, d) = tb.split_once('/').unwrap();
    (stamps, (n.parse().unwrap(), d.parse().unwrap()))
}

/// The rule, written independently of the sampler: keep the first frame of each 1/fps slot.
fn expected_samples(stamps: &[i64], tb: (i64, i64), fps: i64) -> Vec<f64> {
    let mut last = None;
    let mut kept = Vec::new();
    for &ts in stamps {
        let slot = (ts * tb.0 * fps).div_euclid(tb.1);
        if last.is_none_or(|l| slot > l) {
            last = Some(slot);
            kept.push(ts as f64 * tb.0 as f64 / tb.1 as f64);
        }
    }
    kept
}

fn check_sampling(name: &str, total_frames: u64, expected_count: usize) {
    let path = support::fixture(name);
    let (stamps, tb) = ffprobe_timestamps(&path);
    let expected = expected_samples(&stamps, tb, 4);
    assert_eq!(expected.len(), expected_count, "{name}: PTS arithmetic");
    let (frames, stats, end) = decode_all(&path, 4.0);
    assert_eq!(end, SessionEnd::Eof);
    assert_eq!(stats.frames_decoded, total_frames, "{name}: every frame decoded");
    assert_eq!(stats.frames_sampled, expected_count as u64);
    assert_eq!(stats.decode_errors, 0);
    let got: Vec<f64> = frames.iter().map(|f| f.pts).collect();
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!((g - e).abs() < 1e-9, "{name}: sample {i} at {g}, expected {e}");
    }
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.index, i as u64);
        assert_eq!((f.width, f.height), (224, 224));
        assert_eq!(f.rgb.len(), 224 * 224 * 3);
        assert_eq!(&*f.stream, "test");
    }
    // Consecutive samples are at least one slot apart and never more than a slot plus one input frame.
    let input_period = 1.0 / stats.input_fps;
    for w in got.windows(2) {
        assert!(w[1] - w[0] >= 0.25 - 1e-9 - input_period && w[1] - w[0] <= 0.25 + input_period + 1e-9, "{w:?}");
    }
}

#[test]
fn vtest_avi_samples_by_pts() {
    // 795 frames at 10 fps span 79.4 s: quarter-second slots 0..=317.
    check_sampling("vtest.avi", 795, 318);
}

#[test]
fn bikes_mp4_samples_by_pts() {
    // 250 frames at 25 fps span 9.96 s: slots 0..=39.
    check_sampling("bikes.mp4", 250, 40);
}

#[test]
fn sampled_frames_are_the_picture_scaled_to_rgb() {
    // The frame at 2.0 s of bikes.mp4, scaled by the ffmpeg CLI with the same bilinear swscale, matches ours.
    let path = support::fixture("bikes.mp4");
    let (frames, _, _) = decode_all(&path, 4.0);
    let ours = frames.iter().find(|f| (f.pts - 2.0).abs() < 1e-9).expect("a sample at 2.0 s");
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-vf", "select=eq(n\\,50),scale=224:224:flags=bilinear", "-frames:v", "1", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), ours.rgb.len());
    let mean_abs: f64 = ours.rgb.iter().zip(&out.stdout).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / ours.rgb.len() as f64;
    assert!(mean_abs < 2.0, "mean absolute difference {mean_abs} against the ffmpeg CLI");
    // And it is a picture, not a blank buffer.
    let distinct: std::collections::BTreeSet<u8> = ours.rgb.iter().copied().collect();
    assert!(distinct.len() > 100);
}

#[test]
fn chunk_rate_is_configurable() {
    let (frames, _, _) = decode_all(&support::fixture("bikes.mp4"), 2.0);
    assert_eq!(frames.len(), 20);
    let (frames, _, _) = decode_all(&support::fixture("bikes.mp4"), 25.0);
    assert_eq!(frames.len(), 250, "at the input rate every frame is kept");
}

#[test]
fn a_file_source_thread_delivers_everything_and_ends() {
    // A slow consumer: the file source waits instead of dropping.
    let settings = settings_for(&support::fixture("bikes.mp4"), 4.0);
    let handle = spawn(settings, Shutdown::new()).unwrap();
    let mut n = 0;
    for _frame in handle.frames.iter() {
        std::thread::sleep(std::time::Duration::from_millis(5));
        n += 1;
    }
    let stats = handle.stats.snapshot();
    handle.join().unwrap();
    assert_eq!(n, 40);
    assert_eq!(stats.frames_dropped, 0);
}

#[test]
fn realtime_pacing_follows_presentation_time() {
    let mut settings = settings_for(&support::fixture("bikes.mp4"), 4.0);
    settings.realtime = true;
    let stats = StreamStats::new();
    let start = std::time::Instant::now();
    let mut n = 0;
    run_session(&settings, &stats, &Shutdown::new(), &mut StreamCursor::new(4.0), &mut |_| {}, &mut |f| {
        n += 1;
        if f.pts >= 1.5 { Flow::Stop } else { Flow::Continue }
    })
    .unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(n, 7);
    assert!(elapsed >= 1.45, "paced: 1.5 s of video took {elapsed} s");
}

fn damaged_copy(name: &str, damage: impl FnOnce(&mut Vec<u8>)) -> tempfile::TempPath {
    let mut bytes = std::fs::read(support::fixture(name)).unwrap();
    damage(&mut bytes);
    let ext = Path::new(name).extension().unwrap().to_str().unwrap();
    let file = tempfile::Builder::new().suffix(&format!(".{ext}")).tempfile().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    file.into_temp_path()
}

/// Flips bytes across the middle of the file (past the header), with a fixed pattern.
fn flip_bytes(bytes: &mut Vec<u8>) {
    let len = bytes.len();
    let mut rng = fastrand::Rng::with_seed(42);
    for _ in 0..400 {
        let at = len / 10 + rng.usize(..len * 8 / 10);
        bytes[at] ^= 0xff;
    }
}

#[test]
fn truncated_files_decode_what_is_there() {
    for name in ["vtest.avi", "bikes.mp4"] {
        let path = damaged_copy(name, |b| b.truncate(b.len() * 6 / 10));
        let settings = settings_for(&path, 4.0);
        let stats = StreamStats::new();
        let mut frames = 0;
        let result = run_session(&settings, &stats, &Shutdown::new(), &mut StreamCursor::new(4.0), &mut |_| {}, &mut |_| {
            frames += 1;
            Flow::Continue
        });
        match result {
            // A truncated AVI still has its header: most frames decode, then the file ends.
            Ok(end) => {
                assert_eq!(end, SessionEnd::Eof, "{name}");
                assert!(frames > 0, "{name}: the intact part decodes");
            }
            // A truncated MP4 loses its index (moov at the end): a clear error, no panic.
            Err(err) => {
                let text = err.to_string();
                assert!(text.contains(path.to_str().unwrap()), "{name}: the error names the file: {text}");
            }
        }
    }
}

#[test]
fn byte_flipped_files_decode_without_panic_and_count_errors() {
    for name in ["vtest.avi", "bikes.mp4"] {
        let path = damaged_copy(name, flip_bytes);
        let settings = settings_for(&path, 4.0);
        let stats = StreamStats::new();
        let result = run_session(&settings, &stats, &Shutdown::new(), &mut StreamCursor::new(4.0), &mut |_| {}, &mut |_| Flow::Continue);
        let s = stats.snapshot();
        assert!(result.is_ok(), "{name}: {result:?}");
        assert!(s.frames_decoded > 0, "{name}: most of the file still decodes");
        assert!(s.decode_errors > 0, "{name}: damage is reported: {s:?}");
    }
}

/// Decodes `url` with motion descriptors on, unpaced; returns (pts, descriptor) per sampled frame.
fn decode_motion(url: &str, fps: f64) -> Vec<(f64, Vec<f32>)> {
    let mut settings = SourceSettings::for_url(&Config::default(), "test", url).unwrap();
    settings.fps = fps;
    settings.realtime = false;
    settings.motion = true;
    let mut out = Vec::new();
    run_session(&settings, &StreamStats::new(), &Shutdown::new(), &mut StreamCursor::new(fps), &mut |_| {}, &mut |f| {
        out.push((f.pts, f.motion.expect("motion was asked for")));
        Flow::Continue
    })
    .unwrap();
    out
}

#[test]
fn motion_descriptors_tell_a_frozen_picture_from_a_moving_one() {
    use actiond::source::motion::{MOTION_DIM, MOTION_SHAPE_DIM};
    // 2 s of testsrc2 frozen on its first frame, then 2 s of it moving; H.264 as a camera sends it.
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("freeze-then-move.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-vf", "tpad=start_duration=2:start_mode=clone"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let described = decode_motion(&video.display().to_string(), 4.0);
    assert_eq!(described.len(), 16);
    let still = (1e-3f32).ln();
    for (pts, motion) in &described {
        assert_eq!(motion.len(), MOTION_SHAPE_DIM);
        // Log mean difference against the frame 0.03 s and 0.1 s back.
        let (short, long) = (motion[0], motion[MOTION_DIM / 2]);
        // The shape part: nothing changed (all zeros), or shares that add up to the cell count.
        let shape_cells: f32 = motion[MOTION_DIM + 4..MOTION_DIM + 20].iter().sum();
        if *pts < 1.9 {
            assert!(short < still + 0.5 && long < still + 0.5, "frozen at {pts} s, yet {short} / {long}");
            assert!(motion[MOTION_DIM..].iter().all(|&v| v == 0.0), "frozen at {pts} s, yet a shape: {motion:?}");
        } else if *pts > 2.2 {
            assert!(short > still + 2.0 && long > short, "moving at {pts} s, yet {short} / {long}");
            assert!((shape_cells - 16.0).abs() < 1e-3, "moving at {pts} s, shape shares {shape_cells}");
        }
    }

    // The synth:// world carries the same descriptor, from frames rendered between the chunks too.
    let synth = decode_motion("synth://seed=3?seconds=3", 4.0);
    assert_eq!(synth.len(), 12);
    assert!(synth.iter().all(|(_, m)| m.len() == MOTION_SHAPE_DIM));
    assert!(synth.iter().skip(1).all(|(_, m)| m[0] > still + 1.0), "a synth world always moves (camera jitter, noise)");
}
