//! Action annotations in the three forms users bring, read into one model: labelled time segments
//! per video, or a label per video frame.
//!
//! - THUMOS: a directory of `<label>.txt` (or `<label>_<split>.txt`, as THUMOS'14 names them), each
//!   line `<video> <start_s> <end_s>`.
//! - CSV: one file, `video,start_s,end_s,label` per row; a header row is allowed.
//! - Per-frame: a directory of `<video>.txt`, line i the label of the video's frame i (`background`
//!   where nothing happens), as Breakfast and 50Salads ship their ground truth.
//!
//! Every problem names the file and line: unknown labels, unknown videos, malformed times.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::labels::LabelMap;
use super::{csv_error, DatasetError};

/// Which form a `--annotations` path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `<label>.txt` files with `video start end` lines.
    Thumos,
    /// One CSV file: `video,start_s,end_s,label`.
    Csv,
    /// `<video>.txt` files with one label per video frame.
    Frames,
}

/// Where a segment was written, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub path: PathBuf,
    pub line: usize,
}

/// One annotated stretch of a video, in seconds from its first frame: `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub label: usize,
    pub start: f64,
    pub end: f64,
    pub origin: Origin,
}

/// A label per video frame, from a per-frame file.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameLabels {
    pub labels: Vec<usize>,
    pub path: PathBuf,
}

/// The annotations of every video, in one of the two shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Annotations {
    Segments(BTreeMap<String, Vec<Segment>>),
    Frames(BTreeMap<String, FrameLabels>),
}

impl Annotations {
    /// Videos that have at least one annotated action.
    pub fn videos(&self) -> BTreeSet<&str> {
        match self {
            Annotations::Segments(map) => map.keys().map(String::as_str).collect(),
            Annotations::Frames(map) => map.keys().map(String::as_str).collect(),
        }
    }
}

/// Reads `path` in `format` (guessed when `None`: a `.csv` file is CSV; a directory whose `.txt`
/// names are labels is THUMOS, one whose names are videos is per-frame). Every video named must
/// be in `videos`, every label in `labels`.
pub fn read(path: &Path, format: Option<Format>, labels: &LabelMap, videos: &BTreeSet<String>) -> Result<Annotations, DatasetError> {
    let format = match format {
        Some(f) => f,
        None => guess_format(path, labels, videos)?,
    };
    match format {
        Format::Csv => read_csv(path, labels, videos).map(Annotations::Segments),
        Format::Thumos => read_thumos(path, labels, videos).map(Annotations::Segments),
        Format::Frames => read_frames(path, labels, videos).map(Annotations::Frames),
    }
}

fn guess_format(path: &Path, labels: &LabelMap, videos: &BTreeSet<String>) -> Result<Format, DatasetError> {
    if path.is_file() {
        return Ok(Format::Csv);
    }
    let stems = txt_files(path)?.into_iter().map(|(stem, _)| stem).collect::<Vec<_>>();
    let as_labels = stems.iter().filter(|s| label_of_file(s, labels).is_some()).count();
    let as_videos = stems.iter().filter(|s| videos.contains(*s)).count();
    match (as_labels == stems.len(), as_videos == stems.len()) {
        (true, false) => Ok(Format::Thumos),
        (false, true) => Ok(Format::Frames),
        _ => Err(DatasetError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "cannot tell the annotation format: of its {} .txt files {as_labels} are named after labels and {as_videos} after videos; give --format thumos or --format frames",
                stems.len()
            ),
        }),
    }
}

/// `(stem, path)` of every `.txt` file in `dir`, sorted.
fn txt_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DatasetError::Io { path: dir.to_path_buf(), source })?;
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "txt"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DatasetError::Invalid { path: dir.to_path_buf(), message: "holds no .txt annotation files".into() });
    }
    Ok(files)
}

/// The label a THUMOS file is about: its stem, or its stem less a `_<split>` suffix (the longest
/// label that fits wins, so `sit_down_val` is `sit_down`, not `sit`).
fn label_of_file(stem: &str, labels: &LabelMap) -> Option<usize> {
    if let Some(i) = labels.index(stem) {
        return Some(i);
    }
    labels
        .names()
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, name)| {
            // `get`: a stem of non-ASCII names may not split at a label's length.
            stem.get(..name.len()).is_some_and(|head| head.eq_ignore_ascii_case(name))
                && stem[name.len()..].strip_prefix('_').is_some_and(|split| !split.is_empty() && !split.contains('_'))
        })
        .max_by_key(|(_, name)| name.len())
        .map(|(i, _)| i)
}

fn read_thumos(dir: &Path, labels: &LabelMap, videos: &BTreeSet<String>) -> Result<BTreeMap<String, Vec<Segment>>, DatasetError> {
    let mut out: BTreeMap<String, Vec<Segment>> = BTreeMap::new();
    for (stem, path) in txt_files(dir)? {
        let label = label_of_file(&stem, labels).ok_or_else(|| DatasetError::Invalid {
            path: path.clone(),
            message: format!("{stem:?} is not a label of the label map ({})", labels.names()[1..].join(", ")),
        })?;
        if label == 0 {
            return Err(DatasetError::Invalid { path, message: "background is what no segment covers; it has no annotation file".into() });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| DatasetError::Io { path: path.clone(), source })?;
        for (number, line) in text.lines().enumerate() {
            let line_no = number + 1;
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.is_empty() || fields[0].starts_with('#') {
                continue;
            }
            if fields.len() != 3 {
                return Err(DatasetError::at(&path, line_no, format!("expected `<video> <start_s> <end_s>`, found {} fields", fields.len())));
            }
            let origin = Origin { path: path.clone(), line: line_no };
            let segment = segment(fields[1], fields[2], label, origin)?;
            known_video(fields[0], videos, &path, line_no)?;
            out.entry(fields[0].to_string()).or_default().push(segment);
        }
    }
    Ok(out)
}

fn read_csv(path: &Path, labels: &LabelMap, videos: &BTreeSet<String>) -> Result<BTreeMap<String, Vec<Segment>>, DatasetError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let mut out: BTreeMap<String, Vec<Segment>> = BTreeMap::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let line_no = record.position().map(|p| p.line() as usize).unwrap_or(index + 1);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != 4 {
            return Err(DatasetError::at(path, line_no, format!("expected 4 columns `video,start_s,end_s,label`, found {}", record.len())));
        }
        if index == 0 && record[1].parse::<f64>().is_err() {
            continue; // a header row
        }
        let label = labels.index(&record[3]).ok_or_else(|| unknown_label(&record[3], labels, path, line_no))?;
        let origin = Origin { path: path.to_path_buf(), line: line_no };
        let segment = segment(&record[1], &record[2], label, origin)?;
        known_video(&record[0], videos, path, line_no)?;
        if label != 0 {
            out.entry(record[0].to_string()).or_default().push(segment);
        }
    }
    Ok(out)
}

fn read_frames(dir: &Path, labels: &LabelMap, videos: &BTreeSet<String>) -> Result<BTreeMap<String, FrameLabels>, DatasetError> {
    let mut out = BTreeMap::new();
    for (stem, path) in txt_files(dir)? {
        if !videos.contains(&stem) {
            return Err(DatasetError::Invalid { path, message: format!("names video {stem:?}, which is not among the videos given") });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| DatasetError::Io { path: path.clone(), source })?;
        let mut frames = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let name = line.trim();
            if name.is_empty() {
                return Err(DatasetError::at(&path, number + 1, "empty line: every frame needs a label (`background` where nothing happens)".into()));
            }
            frames.push(labels.index(name).ok_or_else(|| unknown_label(name, labels, &path, number + 1))?);
        }
        if frames.is_empty() {
            return Err(DatasetError::Invalid { path, message: "is empty: it needs one label per video frame".into() });
        }
        out.insert(stem, FrameLabels { labels: frames, path });
    }
    Ok(out)
}

fn segment(start: &str, end: &str, label: usize, origin: Origin) -> Result<Segment, DatasetError> {
    let time = |text: &str, what: &str| -> Result<f64, DatasetError> {
        match text.parse::<f64>() {
            Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
            _ => Err(DatasetError::at(&origin.path, origin.line, format!("{what} time {text:?} is not a number of seconds ≥ 0"))),
        }
    };
    let (start, end) = (time(start, "start")?, time(end, "end")?);
    if end <= start {
        return Err(DatasetError::at(&origin.path, origin.line, format!("segment ends ({end} s) before it starts ({start} s)")));
    }
    Ok(Segment { label, start, end, origin })
}

fn known_video(name: &str, videos: &BTreeSet<String>, path: &Path, line: usize) -> Result<(), DatasetError> {
    if videos.contains(name) {
        Ok(())
    } else {
        Err(DatasetError::at(path, line, format!("video {name:?} is not among the videos given")))
    }
}

fn unknown_label(name: &str, labels: &LabelMap, path: &Path, line: usize) -> DatasetError {
    DatasetError::at(path, line, format!("label {name:?} is not in the label map ({})", labels.names().join(", ")))
}

/// How far past a video's end a segment may run before it is called out of range: annotators
/// round up, and containers round their duration.
pub const END_TOLERANCE_S: f64 = 0.5;

/// Checks every segment of `video` against its duration in seconds.
pub fn check_ranges(video: &str, segments: &[Segment], duration: f64) -> Result<(), DatasetError> {
    for s in segments {
        if s.start >= duration || s.end > duration + END_TOLERANCE_S {
            return Err(DatasetError::at(
                &s.origin.path,
                s.origin.line,
                format!("segment {}–{} s is outside video {video:?}, which lasts {duration:.2} s", s.start, s.end),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, LabelMap, BTreeSet<String>) {
        let dir = tempfile::tempdir().unwrap();
        let labels = LabelMap::new(["wave".to_string(), "sit".to_string(), "sit_down".to_string(), "ambiguous".to_string()]).unwrap();
        let videos = ["v1".to_string(), "v2".to_string()].into_iter().collect();
        (dir, labels, videos)
    }

    #[test]
    fn thumos_files_map_to_labels_with_split_suffixes() {
        let (dir, labels, videos) = setup();
        let ann = dir.path().join("ann");
        std::fs::create_dir(&ann).unwrap();
        std::fs::write(ann.join("wave.txt"), "v1 1.0 2.5\nv2 0 1\n").unwrap();
        std::fs::write(ann.join("sit_down_val.txt"), "v1 2.0 3.0\n").unwrap();
        std::fs::write(ann.join("Ambiguous_val.txt"), "v2 4 5\n").unwrap();
        let Annotations::Segments(map) = read(&ann, None, &labels, &videos).unwrap() else { panic!("segments expected") };
        let v1: Vec<(usize, f64, f64)> = map["v1"].iter().map(|s| (s.label, s.start, s.end)).collect();
        assert_eq!(v1, [(3, 2.0, 3.0), (1, 1.0, 2.5)]);
        assert_eq!(map["v2"].iter().map(|s| s.label).collect::<Vec<_>>(), [4, 1]);
    }

    #[test]
    fn non_ascii_file_names_are_compared_not_sliced() {
        let (dir, labels, videos) = setup();
        let ann = dir.path().join("ann");
        std::fs::create_dir(&ann).unwrap();
        std::fs::write(ann.join("wä_val.txt"), "v1 1 2\n").unwrap();
        let err = read(&ann, Some(Format::Thumos), &labels, &videos).unwrap_err().to_string();
        assert!(err.contains("\"wä_val\" is not a label"), "{err}");
    }

    #[test]
    fn csv_with_header_and_errors_name_file_and_line() {
        let (dir, labels, videos) = setup();
        let csv = dir.path().join("ann.csv");
        std::fs::write(&csv, "video,start_s,end_s,label\nv1,0.5,1.5,wave\n\"v2\",1,2,sit\n").unwrap();
        let Annotations::Segments(map) = read(&csv, None, &labels, &videos).unwrap() else { panic!("segments expected") };
        assert_eq!(map["v2"][0].label, 2);
        assert_eq!(map["v1"][0].origin.line, 2);

        for (body, line, needle) in [
            ("v1,0,1,wave\nv1,0,1,dance\n", 2, "label \"dance\""),
            ("v1,0,1,wave\nv9,0,1,wave\n", 2, "video \"v9\""),
            ("v1,2,1,wave\n", 1, "before it starts"),
            ("v1,x,1,wave\nv1,-1,1,wave\n", 2, "start time"),
            ("v1,0,1\n", 1, "4 columns"),
        ] {
            std::fs::write(&csv, body).unwrap();
            let err = read(&csv, Some(Format::Csv), &labels, &videos).unwrap_err().to_string();
            assert!(err.contains(&format!("ann.csv:{line}:")) && err.contains(needle), "{body:?}: {err}");
        }
    }

    #[test]
    fn per_frame_files_are_recognised_by_video_names() {
        let (dir, labels, videos) = setup();
        let frames = dir.path().join("frames");
        std::fs::create_dir(&frames).unwrap();
        std::fs::write(frames.join("v1.txt"), "background\nwave\nwave\nsit\n").unwrap();
        let Annotations::Frames(map) = read(&frames, None, &labels, &videos).unwrap() else { panic!("frames expected") };
        assert_eq!(map["v1"].labels, [0, 1, 1, 2]);
        std::fs::write(frames.join("v1.txt"), "background\nwalk\n").unwrap();
        let err = read(&frames, None, &labels, &videos).unwrap_err().to_string();
        assert!(err.contains("v1.txt:2:") && err.contains("\"walk\""), "{err}");
    }

    #[test]
    fn out_of_range_segments_name_their_line() {
        let (dir, labels, videos) = setup();
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "v1,1,2,wave\nv1,9,12,wave\n").unwrap();
        let Annotations::Segments(map) = read(&csv, None, &labels, &videos).unwrap() else { panic!() };
        check_ranges("v1", &map["v1"][..1], 10.0).unwrap();
        let err = check_ranges("v1", &map["v1"], 10.0).unwrap_err().to_string();
        assert!(err.contains("a.csv:2:") && err.contains("lasts 10.00 s"), "{err}");
    }
}
