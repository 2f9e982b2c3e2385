//! A training set written from synthetic worlds, in the layout the trainer reads (THUMOS-style):
//!
//! ```text
//! DIR/labels.txt                      class names, one per line, index order (0 background)
//! DIR/videos/<video>.mp4              H.264, yuv420p
//! DIR/annotations/<class>.txt         `<video> <start_s> <end_s>` per labelled segment
//! DIR/target_perframe/<video>.npy     [chunks × classes] float32 one-hot at the chunk rate
//! DIR/synth.json                      how the set was made
//! ```
//!
//! Segment times are frame-exact (`frame / fps`, the first frame in and the first frame out), and
//! chunk k's target is the label of the frame the ingest keeps for chunk k (the first frame at or
//! after k / chunk_fps), found with the ingest's own sampler.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::background::Footage;
use super::encode::Mp4Writer;
use super::rng::Rng;
use super::{SynthError, SynthStream, LABELS};
use crate::source::sampler::{Decision, Ratio, Sampler};

/// What to generate.
#[derive(Clone)]
pub struct DatasetSpec {
    pub out: PathBuf,
    pub videos: usize,
    pub seed: u64,
    pub seconds: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    /// Rate of the target_perframe rows (the model's chunk rate).
    pub chunk_fps: f64,
    /// x264 constant rate factor.
    pub crf: u32,
    pub footage: Footage,
}

/// One labelled stretch of a video, in frames: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledRun {
    pub label: usize,
    pub start_frame: u64,
    pub end_frame: u64,
}

/// The name of video `index` of a set seeded `seed`.
pub fn video_name(seed: u64, index: usize) -> String {
    format!("synth-{seed}-{index:04}")
}

/// The world seed of video `index` of a set seeded `seed`: each video has its own world.
pub fn video_seed(seed: u64, index: usize) -> u64 {
    Rng::derive(seed, index as u64).next_u64()
}

/// Runs of equal non-background labels in a per-frame label sequence.
pub fn labelled_runs(labels: &[usize]) -> Vec<LabelledRun> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=labels.len() {
        if i == labels.len() || labels[i] != labels[start] {
            if labels[start] != 0 {
                runs.push(LabelledRun { label: labels[start], start_frame: start as u64, end_frame: i as u64 });
            }
            start = i;
        }
    }
    runs
}

/// Per-chunk labels: the label of the frame the ingest's sampler keeps for each chunk slot.
pub fn chunk_labels(frame_labels: &[usize], fps: f64, chunk_fps: f64) -> Vec<usize> {
    let rate = Ratio::from_f64(fps);
    // One tick per frame: the time base is 1/fps seconds.
    let time_base = Ratio::new(rate.den, rate.num);
    let mut sampler = Sampler::new(chunk_fps);
    let mut chunks = Vec::new();
    for (i, &label) in frame_labels.iter().enumerate() {
        if let Decision::Keep { .. } = sampler.offer(i as i64, time_base) {
            chunks.push(label);
        }
    }
    chunks
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` through `path.tmp` and a rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Renders and encodes one video; returns its per-frame labels.
pub fn write_video(path: &Path, stream: &mut SynthStream, frames: u64, spec: &DatasetSpec, on_frame: &mut dyn FnMut()) -> Result<Vec<usize>, SynthError> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut writer = Mp4Writer::create(&tmp, spec.width, spec.height, spec.fps, spec.crf)?;
        let mut labels = Vec::with_capacity(frames as usize);
        for _ in 0..frames {
            let frame = stream.next_frame();
            writer.push(&frame.rgb)?;
            labels.push(frame.label);
            on_frame();
        }
        writer.finish()?;
        Ok(labels)
    })();
    match result {
        Ok(labels) => {
            std::fs::rename(&tmp, path).map_err(io_error(path))?;
            Ok(labels)
        }
        Err(err) => {
            let _ = std::fs::remove_file(&tmp);
            Err(err)
        }
    }
}

/// Frames per video for a spec.
pub fn frames_per_video(spec: &DatasetSpec) -> u64 {
    (spec.seconds * spec.fps).round().max(1.0) as u64
}

/// Checks a spec before anything is written.
pub fn check(spec: &DatasetSpec) -> Result<(), SynthError> {
    let bad = |what: String| Err(SynthError::Settings(what));
    if spec.videos == 0 {
        return bad("--videos must be at least 1".into());
    }
    if !(spec.seconds.is_finite() && spec.seconds > 0.0 && spec.seconds <= 24.0 * 3600.0) {
        return bad(format!("--seconds {} must be above 0 and at most a day", spec.seconds));
    }
    if !(spec.fps.is_finite() && spec.fps >= spec.chunk_fps && spec.fps <= 120.0) {
        return bad(format!("--fps {} must be between the chunk rate {} and 120", spec.fps, spec.chunk_fps));
    }
    if spec.width < 32 || spec.height < 32 || spec.width > 4096 || spec.height > 4096 || spec.width % 2 != 0 || spec.height % 2 != 0 {
        return bad(format!("--size {}x{}: width and height must be even and between 32 and 4096", spec.width, spec.height));
    }
    if spec.crf > 51 {
        return bad(format!("--crf {} must be 0–51", spec.crf));
    }
    Ok(())
}

/// Writes the whole set. `on_frame` is called after every encoded frame (progress).
pub fn write(spec: &DatasetSpec, on_frame: &mut dyn FnMut()) -> Result<(), SynthError> {
    check(spec)?;
    let dirs = ["videos", "annotations", "target_perframe"].map(|d| spec.out.join(d));
    for dir in &dirs {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let frames = frames_per_video(spec);
    let mut annotations = vec![String::new(); LABELS.len()];
    for index in 0..spec.videos {
        let name = video_name(spec.seed, index);
        let mut stream = SynthStream::with_footage(video_seed(spec.seed, index), spec.width, spec.height, spec.fps, &spec.footage);
        let labels = write_video(&dirs[0].join(format!("{name}.mp4")), &mut stream, frames, spec, on_frame)?;
        for run in labelled_runs(&labels) {
            let start = run.start_frame as f64 / spec.fps;
            let end = run.end_frame as f64 / spec.fps;
            writeln!(annotations[run.label], "{name} {start:.4} {end:.4}").expect("string");
        }
        let chunks = chunk_labels(&labels, spec.fps, spec.chunk_fps);
        let mut onehot = vec![0.0f32; chunks.len() * LABELS.len()];
        for (row, &label) in chunks.iter().enumerate() {
            onehot[row * LABELS.len() + label] = 1.0;
        }
        let target = dirs[2].join(format!("{name}.npy"));
        crate::npy::write(&target, &[chunks.len(), LABELS.len()], &onehot).map_err(|e| SynthError::Io {
            path: target.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    for (label, lines) in annotations.iter().enumerate().skip(1) {
        write_atomic(&dirs[1].join(format!("{}.txt", LABELS[label])), lines.as_bytes())?;
    }
    let mut names = LABELS.join("\n");
    names.push('\n');
    write_atomic(&spec.out.join("labels.txt"), names.as_bytes())?;
    let manifest = serde_json::json!({
        "generator": "actiond synth",
        "version": env!("CARGO_PKG_VERSION"),
        "seed": spec.seed,
        "videos": spec.videos,
        "seconds": spec.seconds,
        "fps": spec.fps,
        "width": spec.width,
        "height": spec.height,
        "chunk_fps": spec.chunk_fps,
        "crf": spec.crf,
        "footage_stills": spec.footage.frames.len(),
        "labels": LABELS,
    });
    let mut text = serde_json::to_string_pretty(&manifest).expect("json");
    text.push('\n');
    write_atomic(&spec.out.join("synth.json"), text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_skip_background_and_cover_the_end() {
        let runs = labelled_runs(&[0, 0, 3, 3, 0, 5, 5, 5]);
        assert_eq!(
            runs,
            vec![LabelledRun { label: 3, start_frame: 2, end_frame: 4 }, LabelledRun { label: 5, start_frame: 5, end_frame: 8 }]
        );
    }

    #[test]
    fn chunks_take_the_first_frame_at_or_after_each_quarter_second() {
        // 10 fps: chunk k (k/4 s) is frame ceil(2.5 k): 0, 3, 5, 8, 10.
        let labels: Vec<usize> = (0..11).collect();
        assert_eq!(chunk_labels(&labels, 10.0, 4.0), vec![0, 3, 5, 8, 10]);
    }
}
