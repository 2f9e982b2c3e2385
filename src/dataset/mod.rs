//! Training data from users' own footage: label maps, annotations in THUMOS, CSV and per-frame form,
//! per-chunk targets made at the times of the frames the ingest keeps, feature extraction to the
//! DATA layout `train` and `eval` read ([`crate::train::dataset`]), and long untrimmed streams
//! composed from trimmed single-action clips with a split that keeps groups apart.

pub mod annotations;
pub mod compose;
pub mod extract;
pub mod labels;
pub mod targets;

pub use crate::train::dataset::DatasetError;

/// One line for a CSV problem, naming the file (the csv crate's message carries the line).
pub(crate) fn csv_error(path: &std::path::Path, err: csv::Error) -> DatasetError {
    let message = err.to_string();
    match err.into_kind() {
        csv::ErrorKind::Io(source) => DatasetError::Io { path: path.to_path_buf(), source },
        _ => DatasetError::Invalid { path: path.to_path_buf(), message },
    }
}
