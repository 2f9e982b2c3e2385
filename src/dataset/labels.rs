//! The label map of a dataset: class names in target-column order, background first. It is read
//! from a plain text file (one name per line) and written back as DATA/labels.txt, which `train`
//! and `eval` read so a checkpoint carries the names its columns mean.

use std::path::{Path, PathBuf};

use super::DatasetError;

/// Name of column 0, the chunks where no action is annotated.
pub const BACKGROUND: &str = "background";
/// Name of the class THUMOS uses for segments its annotators could not decide; training and
/// evaluation ignore chunks that carry it.
pub const AMBIGUOUS: &str = "ambiguous";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    names: Vec<String>,
}

impl LabelMap {
    /// Background, then `actions` in order. Names must be unique and free of whitespace, commas
    /// and path separators (they become file names and CSV fields).
    pub fn new(actions: impl IntoIterator<Item = String>) -> Result<LabelMap, String> {
        let mut names = vec![BACKGROUND.to_string()];
        for name in actions {
            check_name(&name)?;
            if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                return Err(format!("label {name:?} is listed twice"));
            }
            names.push(name);
        }
        if names.len() < 2 {
            return Err("no action labels".into());
        }
        Ok(LabelMap { names })
    }

    /// Reads one name per line; blank lines and `#` comments are skipped. A first line
    /// `background` is taken as column 0; otherwise background is added in front.
    pub fn read(path: &Path) -> Result<LabelMap, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
        let mut actions = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let name = line.split('#').next().unwrap_or("").trim();
            if name.is_empty() || (actions.is_empty() && name.eq_ignore_ascii_case(BACKGROUND)) {
                continue;
            }
            let at = |message: String| DatasetError::at(path, number + 1, message);
            check_name(name).map_err(at)?;
            if name.eq_ignore_ascii_case(BACKGROUND) {
                return Err(at("`background` may only be the first label (column 0)".into()));
            }
            if actions.iter().any(|n: &String| n.eq_ignore_ascii_case(name)) {
                return Err(at(format!("label {name:?} is listed twice")));
            }
            actions.push(name.to_string());
        }
        LabelMap::new(actions).map_err(|message| DatasetError::Invalid { path: path.to_path_buf(), message })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Column of `name`, case-insensitively (THUMOS writes `Ambiguous`, users write `ambiguous`).
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// Column of the `ambiguous` class, when the map has one.
    pub fn ambiguous(&self) -> Option<usize> {
        self.index(AMBIGUOUS)
    }

    /// The file form: one name per line, background first.
    pub fn to_text(&self) -> String {
        self.names.iter().map(|n| format!("{n}\n")).collect()
    }

    /// DATA/labels.txt.
    pub fn path_in(data: &Path) -> PathBuf {
        data.join("labels.txt")
    }

    /// The label map of a dataset whose targets have `classes` columns, when it has one
    /// (DATA/labels.txt); a map of another width is an error naming the file.
    pub fn of_dataset(data: &Path, classes: usize) -> Result<Option<LabelMap>, DatasetError> {
        let path = LabelMap::path_in(data);
        if !path.exists() {
            return Ok(None);
        }
        let labels = LabelMap::read(&path)?;
        if labels.len() != classes {
            return Err(DatasetError::Invalid { path, message: format!("lists {} classes, the targets have {classes}", labels.len()) });
        }
        Ok(Some(labels))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == ',' || c == '/' || c == '\\' || c.is_control()) {
        return Err(format!("label {name:?} must be non-empty, without spaces, commas or slashes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_comes_first_whether_written_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("with.txt");
        let without = dir.path().join("without.txt");
        std::fs::write(&with, "background\nwave\n# comment\n\njump\n").unwrap();
        std::fs::write(&without, "wave\njump\n").unwrap();
        let a = LabelMap::read(&with).unwrap();
        assert_eq!(a.names(), ["background", "wave", "jump"]);
        assert_eq!(a, LabelMap::read(&without).unwrap());
        assert_eq!(a.index("JUMP"), Some(2));
        assert_eq!(a.ambiguous(), None);
    }

    #[test]
    fn duplicates_and_bad_names_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.txt");
        std::fs::write(&path, "wave\njump\nWave\n").unwrap();
        let err = LabelMap::read(&path).unwrap_err().to_string();
        assert!(err.contains("labels.txt:3:") && err.contains("twice"), "{err}");
        std::fs::write(&path, "wave\nsit down\n").unwrap();
        let err = LabelMap::read(&path).unwrap_err().to_string();
        assert!(err.contains("labels.txt:2:"), "{err}");
    }
}
