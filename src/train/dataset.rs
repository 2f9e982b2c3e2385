//! The per-frame feature layout shared by LSTR, TeSTra, MAT and MiniROAD:
//! `DATA/<feature_dir>/<video>.npy` [L × D] for each feature dir (concatenated in the given order, e.g.
//! rgb then flow) and `DATA/target_perframe/<video>.npy` [L × C] (one-hot or multi-hot, class 0
//! background). Every file is checked as it is read: present, 2-D, finite, non-empty, the same number
//! of rows across dirs, and the widths the model expects.

use std::path::{Path, PathBuf};

use crate::npy::NpyError;

/// Name of the targets directory.
pub const TARGET_DIR: &str = "target_perframe";

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    At { path: PathBuf, line: usize, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl DatasetError {
    /// A problem on one line of a text file (1-based).
    pub fn at(path: &Path, line: usize, message: String) -> DatasetError {
        DatasetError::At { path: path.to_path_buf(), line, message }
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> DatasetError {
    DatasetError::Invalid { path: path.to_path_buf(), message: message.into() }
}

/// Where the data lives and how to read it.
#[derive(Debug, Clone)]
pub struct DatasetLayout {
    pub root: PathBuf,
    /// Feature directories, concatenated in this order.
    pub feature_dirs: Vec<String>,
}

/// One video in memory.
#[derive(Debug, Clone)]
pub struct Video {
    pub name: String,
    /// Row-major [len × dim].
    pub features: Vec<f32>,
    /// Row-major [len × classes].
    pub targets: Vec<f32>,
    pub len: usize,
    pub dim: usize,
    pub classes: usize,
}

impl Video {
    pub fn feature_row(&self, t: usize) -> &[f32] {
        &self.features[t * self.dim..(t + 1) * self.dim]
    }

    pub fn target_row(&self, t: usize) -> &[f32] {
        &self.targets[t * self.classes..(t + 1) * self.classes]
    }
}

impl DatasetLayout {
    pub fn feature_path(&self, dir: &str, video: &str) -> PathBuf {
        self.root.join(dir).join(format!("{video}.npy"))
    }

    pub fn target_path(&self, video: &str) -> PathBuf {
        self.root.join(TARGET_DIR).join(format!("{video}.npy"))
    }

    /// Every video that has a target file, sorted.
    pub fn all_videos(&self) -> Result<Vec<String>, DatasetError> {
        let dir = self.root.join(TARGET_DIR);
        let entries = std::fs::read_dir(&dir).map_err(|source| DatasetError::Io { path: dir.clone(), source })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".npy")).map(str::to_string))
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(invalid(&dir, "holds no .npy target files"));
        }
        Ok(names)
    }

    /// Reads one video, checking widths against `dim` / `classes` when given.
    pub fn load(&self, video: &str, dim: Option<usize>, classes: Option<usize>) -> Result<Video, DatasetError> {
        if self.feature_dirs.is_empty() {
            return Err(invalid(&self.root, "no feature directories given"));
        }
        let target_path = self.target_path(video);
        let targets = crate::npy::read_matrix(&target_path)?;
        let (len, c) = targets.dims2(&target_path)?;
        if len == 0 {
            return Err(invalid(&target_path, "the video is empty (0 frames)"));
        }
        if let Some(expected) = classes {
            if c != expected {
                return Err(invalid(&target_path, format!("targets have {c} classes, the model has {expected}")));
            }
        }
        let mut parts = Vec::new();
        for dir in &self.feature_dirs {
            let path = self.feature_path(dir, video);
            let array = crate::npy::read_matrix(&path)?;
            let (rows, cols) = array.dims2(&path)?;
            if rows != len {
                return Err(invalid(
                    &path,
                    format!("has {rows} rows but {} has {len}: features and targets must have one row per chunk", target_path.display()),
                ));
            }
            parts.push((cols, array.data));
        }
        let d: usize = parts.iter().map(|(cols, _)| cols).sum();
        if let Some(expected) = dim {
            if d != expected {
                let widths: Vec<String> = self.feature_dirs.iter().zip(&parts).map(|(dir, (cols, _))| format!("{dir} {cols}")).collect();
                return Err(invalid(
                    &self.feature_path(&self.feature_dirs[0], video),
                    format!("features are {d} wide ({}), the model reads {expected}", widths.join(" + ")),
                ));
            }
        }
        let mut features = Vec::with_capacity(len * d);
        for t in 0..len {
            for (cols, data) in &parts {
                features.extend_from_slice(&data[t * cols..(t + 1) * cols]);
            }
        }
        Ok(Video { name: video.to_string(), features, targets: targets.data, len, dim: d, classes: c })
    }
}

/// Video names from a split file: one per line; blank lines and `#` comments ignored; a trailing
/// `.npy` is dropped.
pub fn read_split(path: &Path) -> Result<Vec<String>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
    let names: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_suffix(".npy").unwrap_or(l).to_string())
        .collect();
    if names.is_empty() {
        return Err(invalid(path, "lists no videos"));
    }
    Ok(names)
}
