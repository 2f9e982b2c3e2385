//! Videos to features on disk, through the daemon's own first two stages: the ingest (PTS sampling
//! to the chunk rate, swscale to the model input) and the backbone, batched. One video becomes
//!
//! ```text
//! DATA/<feature_dir>/<video>.npy        [chunks × width] float32
//! DATA/<feature_dir>/<video>.json       its feature spec
//! DATA/chunk_times/<video>.json         each chunk's time from the first frame, the frame rate, the duration
//! ```
//!
//! The chunk times are what targets are made at (`dataset build`), so a video whose features are
//! already on disk needs no second decode. A video counts as finished when all three are present
//! and its spec matches; every file is written atomically.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::detector::checkpoint::write_atomically;
use crate::feature_spec::FeatureSpec;
use crate::pipeline::Embedder;
use crate::source::ffmpeg::{decode_offline, Flow};
use crate::source::Frame;

/// Directory under DATA for chunk times.
pub const CHUNK_TIMES_DIR: &str = "chunk_times";

/// Video file extensions picked up from directories.
pub const VIDEO_EXTENSIONS: &[&str] = &["mp4", "avi", "mkv", "mov", "webm", "m4v", "mpg", "mpeg", "ts", "flv", "wmv"];

/// When each chunk of a video was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkTimes {
    /// Seconds from the video's first decoded frame to the frame kept for each chunk.
    pub times: Vec<f64>,
    /// The container's declared frame rate, when it has one.
    pub frame_rate: Option<f64>,
    /// The container's duration in seconds, when known.
    pub duration: Option<f64>,
}

impl ChunkTimes {
    pub fn path(data: &Path, video: &str) -> PathBuf {
        data.join(CHUNK_TIMES_DIR).join(format!("{video}.json"))
    }

    pub fn read(path: &Path) -> anyhow::Result<ChunkTimes> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a chunk-times file", path.display()))
    }
}

/// Features of one video, in memory.
pub struct Embedded {
    /// Row-major [chunks × spec.dim].
    pub features: Vec<f32>,
    pub times: ChunkTimes,
}

/// The dataset name of a video: its file name without the extension.
pub fn video_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| path.display().to_string())
}

/// Video files among `inputs` (files, or directories searched recursively), sorted; two videos
/// that would get the same dataset name are an error.
pub fn list_videos(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            collect_dir(input, &mut out).with_context(|| format!("cannot list {}", input.display()))?;
        } else if input.exists() {
            out.push(input.clone());
        } else {
            anyhow::bail!(crate::cli::UsageError(format!("{}: no such file or directory", input.display())));
        }
    }
    out.sort();
    out.dedup();
    let mut names = std::collections::BTreeMap::new();
    for v in &out {
        if let Some(other) = names.insert(video_name(v), v.clone()) {
            anyhow::bail!(crate::cli::UsageError(format!(
                "{} and {} would both be named {:?} in the dataset",
                other.display(),
                v.display(),
                video_name(v)
            )));
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_dir(&path, out)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())) {
            out.push(path);
        }
    }
    Ok(())
}

/// Writes features for videos into one dataset directory.
pub struct FeatureWriter {
    pub data: PathBuf,
    pub feature_dir: String,
    pub spec: FeatureSpec,
}

impl FeatureWriter {
    fn npy(&self, video: &str) -> PathBuf {
        self.data.join(&self.feature_dir).join(format!("{video}.npy"))
    }

    fn sidecar(&self, video: &str) -> PathBuf {
        self.data.join(&self.feature_dir).join(format!("{video}.json"))
    }

    /// Creates the directories.
    pub fn prepare(&self) -> anyhow::Result<()> {
        for dir in [self.data.join(&self.feature_dir), self.data.join(CHUNK_TIMES_DIR)] {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }

    /// The chunk times of a video whose features are complete and of this spec.
    pub fn finished(&self, video: &str) -> Option<ChunkTimes> {
        let spec_matches = std::fs::read(self.sidecar(video))
            .ok()
            .and_then(|b| serde_json::from_slice::<FeatureSpec>(&b).ok())
            .is_some_and(|s| s == self.spec);
        if !spec_matches || !self.npy(video).exists() {
            return None;
        }
        ChunkTimes::read(&ChunkTimes::path(&self.data, video)).ok()
    }

    /// Writes one video's features, spec and chunk times (features last-but-one, spec last, so a
    /// crash leaves a video unfinished rather than mislabelled).
    pub fn write(&self, video: &str, embedded: &Embedded) -> anyhow::Result<()> {
        let chunks = embedded.times.times.len();
        write_atomically(&ChunkTimes::path(&self.data, video), serde_json::to_string(&embedded.times)?.as_bytes())?;
        crate::npy::write(&self.npy(video), &[chunks, self.spec.dim], &embedded.features)?;
        write_atomically(&self.sidecar(video), serde_json::to_string_pretty(&self.spec)?.as_bytes())?;
        Ok(())
    }
}

/// Decodes `video` through the ingest at `spec`'s rate and size and embeds every kept frame.
/// `on_batch` is called after each batch (for progress).
pub fn embed_video(video: &Path, config: &Config, spec: &FeatureSpec, embedder: &mut dyn Embedder, batch: usize, on_batch: &mut dyn FnMut()) -> anyhow::Result<Embedded> {
    let batch = batch.max(1);
    let mut features: Vec<f32> = Vec::new();
    let mut pts: Vec<f64> = Vec::new();
    let mut pending: Vec<Frame> = Vec::with_capacity(batch);
    let mut failure: Option<anyhow::Error> = None;
    let mut flush = |pending: &mut Vec<Frame>, features: &mut Vec<f32>| -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Frame> = pending.iter().collect();
        for row in embedder.embed(&refs)? {
            features.extend_from_slice(&row);
        }
        pending.clear();
        Ok(())
    };
    let (mut frame_rate, mut duration) = (None, None);
    let stats = decode_offline(
        config,
        "extract",
        &video.display().to_string(),
        spec.fps,
        (spec.input_size, spec.input_size),
        &mut |info| {
            frame_rate = info.declared_fps;
            duration = info.duration;
        },
        &mut |frame| {
            pts.push(frame.pts);
            pending.push(frame);
            if pending.len() >= batch {
                if let Err(e) = flush(&mut pending, &mut features) {
                    failure = Some(e);
                    return Flow::Stop;
                }
                on_batch();
            }
            Flow::Continue
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut pending, &mut features)?;
    anyhow::ensure!(!pts.is_empty(), "no frame could be decoded ({} decode errors)", stats.snapshot().decode_errors);
    anyhow::ensure!(features.len() == pts.len() * spec.dim, "the backbone returned {} values for {} frames of width {}", features.len(), pts.len(), spec.dim);
    let first = pts[0];
    let times = pts.iter().map(|t| t - first).collect();
    Ok(Embedded { features, times: ChunkTimes { times, frame_rate, duration } })
}
