//! Training the detector: the dataset layout ([`dataset`]) and the trainer ([`trainer`]).

pub mod dataset;
pub mod trainer;
