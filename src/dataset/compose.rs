//! Long untrimmed streams from trimmed single-action clips (UCF101-, Kinetics- or Weizmann-style),
//! the footage online detection is about: clips in random order, each preceded by an idle gap, with
//! exact per-frame ground truth, and a train/test split in which no group (actor, scene) appears on
//! both sides.
//!
//! Trimmed sets have no idle footage, so a gap shows the next clip's first frame held still: the
//! actor standing before the action starts. Telling that apart from the action needs motion, i.e.
//! temporal context — what a per-frame classifier lacks and OadTR has.
//!
//! ```text
//! OUT/videos/<stream>.mp4          H.264, the clips scaled to one size and resampled to one rate
//! OUT/annotations/<label>.txt      THUMOS-style `<stream> <start_s> <end_s>` (frame-exact)
//! OUT/frames/<stream>.txt          the label of every frame (`background` in gaps)
//! OUT/labels.txt                   background, then the labels in sorted order
//! OUT/split/train.txt, test.txt    stream names
//! OUT/streams.csv                  stream,split,start_s,end_s,label,group,clip: what went where
//! OUT/compose.json                 the settings and the groups on each side
//! ```
//! The same inputs and seed give the same files. With `augment`, each training placement is re-shot
//! (zoomed crop, mirror, exposure; see [`Augment`]); test streams never are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::labels::LabelMap;
use super::{csv_error, DatasetError};
use crate::config::Config;
use crate::source::ffmpeg::{decode_offline, Flow};
use crate::synth::encode::Mp4Writer;
use crate::synth::rng::Rng;

/// One trimmed clip from the clips CSV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clip {
    pub file: PathBuf,
    pub label: String,
    pub group: String,
}

/// Which CSV columns hold what.
#[derive(Debug, Clone)]
pub struct Columns {
    pub file: String,
    pub label: String,
    pub group: String,
}

/// Reads the clips CSV (with a header row naming its columns); relative file paths are taken from
/// `root`. Every problem names the CSV and its line.
pub fn read_clips(csv_path: &Path, root: &Path, columns: &Columns) -> Result<Vec<Clip>, DatasetError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_path(csv_path).map_err(|e| csv_error(csv_path, e))?;
    let headers = reader.headers().map_err(|e| csv_error(csv_path, e))?.clone();
    let column = |name: &str, what: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| DatasetError::at(
            csv_path,
            1,
            format!("no column {name:?} for the {what} (the header has {}); choose it with --{what}-column", headers.iter().collect::<Vec<_>>().join(", ")),
        ))
    };
    let (file_at, label_at, group_at) = (column(&columns.file, "file")?, column(&columns.label, "label")?, column(&columns.group, "group")?);
    let mut clips = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(csv_path, e))?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let field = |at: usize, what: &str| -> Result<String, DatasetError> {
            match record.get(at) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(DatasetError::at(csv_path, line, format!("empty {what}"))),
            }
        };
        let (file, label, group) = (field(file_at, "file")?, field(label_at, "label")?, field(group_at, "group")?);
        let path = root.join(&file);
        if !path.is_file() {
            return Err(DatasetError::at(csv_path, line, format!("clip {} does not exist", path.display())));
        }
        clips.push(Clip { file: path, label, group });
    }
    if clips.is_empty() {
        return Err(DatasetError::Invalid { path: csv_path.to_path_buf(), message: "lists no clips".into() });
    }
    Ok(clips)
}

/// How groups are put on the test side.
#[derive(Debug, Clone)]
pub enum TestGroups {
    /// Exactly these.
    Named(Vec<String>),
    /// This share of the groups (at least one, never all), drawn with the seed.
    Fraction(f64),
}

/// Groups on each side; never overlapping, neither empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSplit {
    pub train: BTreeSet<String>,
    pub test: BTreeSet<String>,
}

pub fn split_groups(clips: &[Clip], test: &TestGroups, seed: u64) -> Result<GroupSplit, String> {
    let all: BTreeSet<String> = clips.iter().map(|c| c.group.clone()).collect();
    if all.len() < 2 {
        return Err(format!("the clips have {} group(s); a split needs at least two", all.len()));
    }
    let test: BTreeSet<String> = match test {
        TestGroups::Named(names) => {
            for name in names {
                if !all.contains(name) {
                    return Err(format!("test group {name:?} is not a group of the clips ({})", all.iter().cloned().collect::<Vec<_>>().join(", ")));
                }
            }
            names.iter().cloned().collect()
        }
        TestGroups::Fraction(share) => {
            if !(*share > 0.0 && *share < 1.0) {
                return Err(format!("the test share must be between 0 and 1, got {share}"));
            }
            let count = ((all.len() as f64 * share).round() as usize).clamp(1, all.len() - 1);
            let mut groups: Vec<String> = all.iter().cloned().collect();
            shuffle(&mut groups, &mut Rng::derive(seed, 0x5e11));
            groups.into_iter().take(count).collect()
        }
    };
    let train: BTreeSet<String> = all.difference(&test).cloned().collect();
    if train.is_empty() {
        return Err("every group is on the test side; leave at least one for training".into());
    }
    Ok(GroupSplit { train, test })
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// What to make.
#[derive(Debug, Clone, Serialize)]
pub struct ComposeSpec {
    pub out: PathBuf,
    pub train_streams: usize,
    pub test_streams: usize,
    pub clips_per_stream: usize,
    /// Idle seconds before each clip, drawn uniformly from this range.
    pub gap_s: (f64, f64),
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
    pub crf: u32,
    /// Vary each training placement's framing and exposure (test streams stay as shot).
    pub augment: bool,
}

/// One clip in a stream and the idle gap before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub clip: usize,
    pub gap_s: f64,
    pub augment: Option<Augment>,
}

/// How one placement of a clip is re-shot: a zoomed crop, a mirror, an exposure change. A clip
/// reused across training streams then looks a little different each time, so a detector learns the
/// action rather than memorising the clip's exact features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Side of the crop as a share of the frame (1 = whole frame).
    pub scale: f32,
    /// Crop position within the free margin, 0..=1 on each axis.
    pub at: (f32, f32),
    pub mirror: bool,
    /// Pixel values become `gain * v + offset`.
    pub gain: f32,
    pub offset: f32,
}

impl Augment {
    fn draw(rng: &mut Rng) -> Augment {
        Augment { scale: rng.range(0.75, 1.0), at: (rng.unit(), rng.unit()), mirror: rng.chance(0.5), gain: rng.range(0.8, 1.2), offset: rng.range(-20.0, 20.0) }
    }

    /// Applies to one packed RGB24 frame of `width`×`height` (bilinear sampling of the crop).
    pub fn apply(&self, rgb: &[u8], width: usize, height: usize) -> Vec<u8> {
        let (cw, ch) = (width as f32 * self.scale, height as f32 * self.scale);
        let (x0, y0) = ((width as f32 - cw) * self.at.0, (height as f32 - ch) * self.at.1);
        let mut out = Vec::with_capacity(rgb.len());
        for y in 0..height {
            let sy = (y0 + (y as f32 + 0.5) * ch / height as f32 - 0.5).clamp(0.0, (height - 1) as f32);
            let (y_lo, fy) = (sy.floor() as usize, sy.fract());
            let y_hi = (y_lo + 1).min(height - 1);
            for x in 0..width {
                let xo = if self.mirror { width - 1 - x } else { x };
                let sx = (x0 + (xo as f32 + 0.5) * cw / width as f32 - 0.5).clamp(0.0, (width - 1) as f32);
                let (x_lo, fx) = (sx.floor() as usize, sx.fract());
                let x_hi = (x_lo + 1).min(width - 1);
                for c in 0..3 {
                    let at = |yy: usize, xx: usize| rgb[(yy * width + xx) * 3 + c] as f32;
                    let top = at(y_lo, x_lo) * (1.0 - fx) + at(y_lo, x_hi) * fx;
                    let bottom = at(y_hi, x_lo) * (1.0 - fx) + at(y_hi, x_hi) * fx;
                    let v = top * (1.0 - fy) + bottom * fy;
                    out.push((self.gain * v + self.offset).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        out
    }
}

/// One stream to write.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPlan {
    pub name: String,
    pub test: bool,
    pub clips: Vec<Placement>,
}

/// Draws every stream: each side's clips are dealt from a shuffled deck (reshuffled when used up,
/// so clips are used about equally), never the same clip twice in a row.
pub fn plan(clips: &[Clip], split: &GroupSplit, spec: &ComposeSpec) -> Vec<StreamPlan> {
    let mut plans = Vec::new();
    for (test, count, prefix) in [(false, spec.train_streams, "train"), (true, spec.test_streams, "test")] {
        let groups = if test { &split.test } else { &split.train };
        let pool: Vec<usize> = (0..clips.len()).filter(|&i| groups.contains(&clips[i].group)).collect();
        let mut rng = Rng::derive(spec.seed, test as u64);
        let mut deck: Vec<usize> = Vec::new();
        let mut last = None;
        for index in 0..count {
            let mut placed = Vec::new();
            for _ in 0..spec.clips_per_stream {
                if deck.is_empty() {
                    deck = pool.clone();
                    shuffle(&mut deck, &mut rng);
                }
                let mut clip = deck.pop().expect("the pool is not empty");
                if Some(clip) == last && !deck.is_empty() {
                    std::mem::swap(&mut clip, deck.last_mut().expect("checked"));
                }
                last = Some(clip);
                let gap_s = spec.gap_s.0 + (spec.gap_s.1 - spec.gap_s.0) * rng.unit() as f64;
                let augment = (spec.augment && !test).then(|| Augment::draw(&mut rng));
                placed.push(Placement { clip, gap_s, augment });
            }
            plans.push(StreamPlan { name: format!("{prefix}-{index:03}"), test, clips: placed });
        }
    }
    plans
}

/// A decoded clip, at the output size and in its own time.
struct DecodedClip {
    /// (seconds from the first frame, RGB24).
    frames: Vec<(f64, Vec<u8>)>,
}

impl DecodedClip {
    fn read(path: &Path, config: &Config, spec: &ComposeSpec) -> Result<DecodedClip, String> {
        // Keep every frame up to the output rate; resampling to the output rate happens below.
        let mut frames = Vec::new();
        decode_offline(config, "compose", &path.display().to_string(), spec.fps, (spec.width, spec.height), &mut |_| {}, &mut |frame| {
            frames.push((frame.pts, frame.rgb));
            Flow::Continue
        })
        .map_err(|e| e.to_string())?;
        let first = frames.first().map(|(t, _)| *t).ok_or("no frame could be decoded")?;
        for (t, _) in &mut frames {
            *t -= first;
        }
        Ok(DecodedClip { frames })
    }

    /// The clip at `fps`: one output frame per 1/fps, each the latest source frame due by then.
    fn resampled(&self, fps: f64) -> Vec<&[u8]> {
        let n = self.frames.len();
        let period = if n >= 2 { self.frames[n - 1].0 / (n - 1) as f64 } else { 1.0 / fps };
        let duration = self.frames[n - 1].0 + period;
        let count = ((duration * fps).round() as usize).max(1);
        let mut at = 0;
        (0..count)
            .map(|j| {
                let t = j as f64 / fps + 1e-6;
                while at + 1 < n && self.frames[at + 1].0 <= t {
                    at += 1;
                }
                self.frames[at].1.as_slice()
            })
            .collect()
    }
}

/// One labelled stretch of a written stream, in output frames `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub clip: usize,
    pub start_frame: u64,
    pub end_frame: u64,
}

/// Writes one stream's video (atomically) and returns where each clip landed and the frame count.
pub fn write_stream(plan: &StreamPlan, clips: &[Clip], config: &Config, spec: &ComposeSpec) -> Result<(Vec<Placed>, u64), DatasetError> {
    let path = spec.out.join("videos").join(format!("{}.mp4", plan.name));
    let tmp = crate::detector::checkpoint::tmp_path(&path);
    let encode_error = |e: crate::synth::SynthError| DatasetError::Invalid { path: path.clone(), message: e.to_string() };
    let mut writer = Mp4Writer::create(&tmp, spec.width, spec.height, spec.fps, spec.crf).map_err(encode_error)?;
    let mut placed = Vec::new();
    let mut frame: u64 = 0;
    let mut last_frame: Option<Vec<u8>> = None;
    let result = (|| {
        for placement in &plan.clips {
            let clip = &clips[placement.clip];
            let decoded = DecodedClip::read(&clip.file, config, spec).map_err(|message| DatasetError::Invalid { path: clip.file.clone(), message })?;
            let frames: Vec<Vec<u8>> = decoded
                .resampled(spec.fps)
                .into_iter()
                .map(|rgb| match &placement.augment {
                    Some(a) => a.apply(rgb, spec.width as usize, spec.height as usize),
                    None => rgb.to_vec(),
                })
                .collect();
            for _ in 0..(placement.gap_s * spec.fps).round() as u64 {
                writer.push(&frames[0]).map_err(encode_error)?;
                frame += 1;
            }
            let start_frame = frame;
            for rgb in &frames {
                writer.push(rgb).map_err(encode_error)?;
                frame += 1;
            }
            placed.push(Placed { clip: placement.clip, start_frame, end_frame: frame });
            last_frame = frames.last().map(|f| f.to_vec());
        }
        // A last idle stretch, so the final action has an end the detector sees.
        if let Some(rgb) = &last_frame {
            for _ in 0..(spec.gap_s.0 * spec.fps).round() as u64 {
                writer.push(rgb).map_err(encode_error)?;
                frame += 1;
            }
        }
        writer.finish().map_err(encode_error)
    })();
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, &path).map_err(|source| DatasetError::Io { path: path.clone(), source })?;
            Ok((placed, frame))
        }
        Err(err) => {
            let _ = std::fs::remove_file(&tmp);
            Err(err)
        }
    }
}

/// Everything written beside the videos, from the streams' placements.
pub struct Ground {
    annotations: BTreeMap<String, String>,
    frames: BTreeMap<String, String>,
    rows: String,
    train: String,
    test: String,
}

impl Ground {
    pub fn new() -> Ground {
        Ground { annotations: BTreeMap::new(), frames: BTreeMap::new(), rows: "stream,split,start_s,end_s,label,group,clip\n".into(), train: String::new(), test: String::new() }
    }

    /// Records one written stream.
    pub fn add(&mut self, plan: &StreamPlan, placed: &[Placed], total_frames: u64, clips: &[Clip], spec: &ComposeSpec) {
        let split = if plan.test { "test" } else { "train" };
        writeln!(if plan.test { &mut self.test } else { &mut self.train }, "{}", plan.name).expect("writing to a String");
        let mut per_frame = vec!["background"; total_frames as usize];
        for p in placed {
            let clip = &clips[p.clip];
            let (start, end) = (p.start_frame as f64 / spec.fps, p.end_frame as f64 / spec.fps);
            let text = self.annotations.entry(clip.label.clone()).or_default();
            writeln!(text, "{} {start:.6} {end:.6}", plan.name).expect("writing to a String");
            writeln!(self.rows, "{},{split},{start:.6},{end:.6},{},{},{}", plan.name, clip.label, clip.group, clip.file.display()).expect("writing to a String");
            for label in &mut per_frame[p.start_frame as usize..p.end_frame as usize] {
                *label = &clip.label;
            }
        }
        self.frames.insert(plan.name.clone(), per_frame.iter().map(|l| format!("{l}\n")).collect());
    }

    /// Writes annotations, per-frame labels, labels.txt, the split, streams.csv and compose.json.
    pub fn write(&self, clips: &[Clip], split: &GroupSplit, spec: &ComposeSpec) -> Result<(), DatasetError> {
        let labels = LabelMap::new(clips.iter().map(|c| c.label.clone()).collect::<BTreeSet<_>>())
            .map_err(|message| DatasetError::Invalid { path: spec.out.clone(), message })?;
        let write = |path: PathBuf, text: &str| -> Result<(), DatasetError> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| DatasetError::Io { path: dir.to_path_buf(), source })?;
            }
            crate::detector::checkpoint::write_atomically(&path, text.as_bytes()).map_err(|e| DatasetError::Invalid { path, message: e.to_string() })
        };
        for (label, text) in &self.annotations {
            write(spec.out.join("annotations").join(format!("{label}.txt")), text)?;
        }
        for (stream, text) in &self.frames {
            write(spec.out.join("frames").join(format!("{stream}.txt")), text)?;
        }
        write(spec.out.join("labels.txt"), &labels.to_text())?;
        write(spec.out.join("split").join("train.txt"), &self.train)?;
        write(spec.out.join("split").join("test.txt"), &self.test)?;
        write(spec.out.join("streams.csv"), &self.rows)?;
        let summary = serde_json::json!({ "spec": spec, "groups": split, "clips": clips.len() });
        write(spec.out.join("compose.json"), &serde_json::to_string_pretty(&summary).expect("plain data"))
    }
}

impl Default for Ground {
    fn default() -> Self {
        Ground::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clips() -> Vec<Clip> {
        let mut out = Vec::new();
        for group in ["a", "b", "c", "d"] {
            for label in ["wave", "bend"] {
                out.push(Clip { file: PathBuf::from(format!("{group}-{label}.mp4")), label: label.into(), group: group.into() });
            }
        }
        out
    }

    fn spec() -> ComposeSpec {
        ComposeSpec { out: PathBuf::from("out"), train_streams: 3, test_streams: 2, clips_per_stream: 5, gap_s: (1.0, 2.0), fps: 25.0, width: 64, height: 64, seed: 3, crf: 18, augment: false }
    }

    #[test]
    fn groups_never_cross_the_split() {
        let clips = clips();
        for seed in 0..20 {
            let split = split_groups(&clips, &TestGroups::Fraction(0.25), seed).unwrap();
            assert_eq!(split.test.len(), 1);
            assert!(split.train.is_disjoint(&split.test));
            for plan in plan(&clips, &split, &ComposeSpec { seed, ..spec() }) {
                let side = if plan.test { &split.test } else { &split.train };
                assert!(plan.clips.iter().all(|p| side.contains(&clips[p.clip].group)), "{plan:?}");
                assert!(plan.clips.windows(2).all(|w| w[0].clip != w[1].clip), "{plan:?}");
                assert!(plan.clips.iter().all(|p| (1.0..=2.0).contains(&p.gap_s)));
            }
        }
        let named = split_groups(&clips, &TestGroups::Named(vec!["b".into(), "d".into()]), 0).unwrap();
        assert_eq!(named.train.iter().collect::<Vec<_>>(), ["a", "c"]);
        assert!(split_groups(&clips, &TestGroups::Named(vec!["z".into()]), 0).unwrap_err().contains("\"z\""));
        assert!(split_groups(&clips, &TestGroups::Named(["a", "b", "c", "d"].map(String::from).to_vec()), 0).is_err());
    }

    #[test]
    fn plans_are_deterministic_and_use_clips_evenly() {
        let clips = clips();
        let split = split_groups(&clips, &TestGroups::Named(vec!["d".into()]), 0).unwrap();
        let a = plan(&clips, &split, &spec());
        assert_eq!(a, plan(&clips, &split, &spec()));
        let mut uses = BTreeMap::new();
        for p in a.iter().filter(|p| !p.test) {
            for c in &p.clips {
                *uses.entry(c.clip).or_insert(0) += 1;
            }
        }
        // 15 placements over 6 training clips: each used 2 or 3 times.
        assert_eq!(uses.len(), 6);
        assert!(uses.values().all(|&n| (2..=3).contains(&n)), "{uses:?}");
    }

    #[test]
    fn augmentation_is_identity_at_neutral_settings_and_mirrors_and_zooms() {
        let (w, h) = (8usize, 4usize);
        let rgb: Vec<u8> = (0..w * h).flat_map(|i| [(i * 7 % 256) as u8, (i * 3) as u8, 100]).collect();
        let neutral = Augment { scale: 1.0, at: (0.5, 0.5), mirror: false, gain: 1.0, offset: 0.0 };
        assert_eq!(neutral.apply(&rgb, w, h), rgb);
        let mirrored = Augment { mirror: true, ..neutral }.apply(&rgb, w, h);
        assert_eq!(&mirrored[..3], &rgb[(w - 1) * 3..w * 3]);
        let brighter = Augment { gain: 1.0, offset: 10.0, ..neutral }.apply(&rgb, w, h);
        assert_eq!(brighter[2], 110);
        // A half-size crop at the top-left corner shows only the top-left quarter, enlarged (its
        // last row and column blend with the next ones).
        let zoomed = Augment { scale: 0.5, at: (0.0, 0.0), ..neutral }.apply(&rgb, w, h);
        let top_left_max = (0..=h / 2).flat_map(|y| (0..=w / 2).map(move |x| (y * w + x) * 3 + 1)).map(|i| rgb[i]).max().unwrap();
        assert!(top_left_max < *rgb.iter().skip(1).step_by(3).max().unwrap());
        assert!(zoomed.chunks_exact(3).all(|p| p[1] <= top_left_max));
    }

    #[test]
    fn test_streams_are_never_augmented() {
        let clips = clips();
        let split = split_groups(&clips, &TestGroups::Named(vec!["d".into()]), 0).unwrap();
        let plans = plan(&clips, &split, &ComposeSpec { augment: true, ..spec() });
        assert!(plans.iter().filter(|p| !p.test).all(|p| p.clips.iter().all(|c| c.augment.is_some())));
        assert!(plans.iter().filter(|p| p.test).all(|p| p.clips.iter().all(|c| c.augment.is_none())));
    }

    #[test]
    fn resampling_keeps_duration_at_any_source_rate() {
        let clip = |rate: f64, n: usize| DecodedClip { frames: (0..n).map(|i| (i as f64 / rate, vec![i as u8])).collect() };
        // 2 s at 25 fps → 50 frames at 25 fps, each once.
        let same = clip(25.0, 50);
        let out = same.resampled(25.0);
        assert_eq!(out.len(), 50);
        assert!(out.iter().enumerate().all(|(i, f)| f[0] == i as u8));
        // 2 s at 10 fps → 50 frames at 25 fps, each source frame 2 or 3 times, in order.
        let slow = clip(10.0, 20);
        let out = slow.resampled(25.0);
        assert_eq!(out.len(), 50);
        assert!(out.windows(2).all(|w| w[0][0] <= w[1][0]));
        assert_eq!(out.last().unwrap()[0], 19);
    }
}
