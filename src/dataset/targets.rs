//! Per-chunk targets from annotations: chunk k is labelled by what is annotated at the time of the
//! frame the ingest kept for it (its PTS from the video's first frame), so targets line up with
//! the features row for row. Overlapping segments give multi-hot rows; a row with no action is
//! background (column 0).

use super::annotations::{Annotations, FrameLabels, Segment};
use super::DatasetError;

/// Targets of one video: row-major `[times.len() × classes]`.
pub fn chunk_targets(annotations: &Annotations, video: &str, times: &[f64], frame_rate: Option<f64>, classes: usize) -> Result<Vec<f32>, DatasetError> {
    match annotations {
        Annotations::Segments(map) => Ok(from_segments(map.get(video).map(Vec::as_slice).unwrap_or(&[]), times, classes)),
        Annotations::Frames(map) => match map.get(video) {
            Some(frames) => from_frames(frames, times, frame_rate, classes),
            None => Ok(from_segments(&[], times, classes)),
        },
    }
}

fn from_segments(segments: &[Segment], times: &[f64], classes: usize) -> Vec<f32> {
    let mut rows = vec![0f32; times.len() * classes];
    for (row, &t) in rows.chunks_exact_mut(classes).zip(times) {
        for s in segments {
            // A small slack: a segment written as `frame / fps` and the PTS of that frame differ
            // only by rounding, and must count as the same instant.
            if t + 1e-6 >= s.start && t + 1e-6 < s.end {
                row[s.label] = 1.0;
            }
        }
        if row.iter().all(|&v| v == 0.0) {
            row[0] = 1.0;
        }
    }
    rows
}

fn from_frames(frames: &FrameLabels, times: &[f64], frame_rate: Option<f64>, classes: usize) -> Result<Vec<f32>, DatasetError> {
    let rate = frame_rate.filter(|r| r.is_finite() && *r > 0.0).ok_or_else(|| DatasetError::Invalid {
        path: frames.path.clone(),
        message: "per-frame labels need the video's frame rate, and the video declares none".into(),
    })?;
    let mut rows = vec![0f32; times.len() * classes];
    for (row, &t) in rows.chunks_exact_mut(classes).zip(times) {
        let frame = (t * rate).round() as usize;
        let label = *frames.labels.get(frame).ok_or_else(|| DatasetError::Invalid {
            path: frames.path.clone(),
            message: format!("has {} lines, but the video has a frame {frame} (at {t:.3} s, {rate} fps)", frames.labels.len()),
        })?;
        row[label] = 1.0;
    }
    Ok(rows)
}

/// Chunks per class over many videos' targets (a multi-hot chunk counts for each of its labels).
pub fn class_counts(targets: &[f32], classes: usize, counts: &mut [usize]) {
    for row in targets.chunks_exact(classes) {
        for (count, &v) in counts.iter_mut().zip(row) {
            if v > 0.5 {
                *count += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::dataset::annotations::Origin;

    fn seg(label: usize, start: f64, end: f64) -> Segment {
        Segment { label, start, end, origin: Origin { path: PathBuf::from("a"), line: 1 } }
    }

    #[test]
    fn overlaps_are_multi_hot_and_gaps_background() {
        let ann = Annotations::Segments(BTreeMap::from([("v".to_string(), vec![seg(1, 0.5, 1.5), seg(2, 1.0, 2.0)])]));
        let times = [0.0, 0.5, 1.0, 1.5, 2.0];
        let rows = chunk_targets(&ann, "v", &times, None, 3).unwrap();
        assert_eq!(rows, [1., 0., 0., 0., 1., 0., 0., 1., 1., 0., 0., 1., 1., 0., 0.]);
        // A video without segments is all background.
        assert_eq!(chunk_targets(&ann, "other", &times[..2], None, 3).unwrap(), [1., 0., 0., 1., 0., 0.]);
    }

    #[test]
    fn per_frame_labels_are_read_at_each_chunk_frame() {
        let frames = FrameLabels { labels: vec![0, 0, 1, 1, 2, 2], path: PathBuf::from("v.txt") };
        let ann = Annotations::Frames(BTreeMap::from([("v".to_string(), frames)]));
        let rows = chunk_targets(&ann, "v", &[0.0, 0.4, 0.8], Some(5.0), 3).unwrap();
        assert_eq!(rows, [1., 0., 0., 0., 1., 0., 0., 0., 1.]);
        let err = chunk_targets(&ann, "v", &[2.0], Some(5.0), 3).unwrap_err().to_string();
        assert!(err.contains("v.txt") && err.contains("has 6 lines"), "{err}");
    }
}
