//! Training the detector: the dataset layout ([`dataset`]), the trainer ([`trainer`]) and the
//! per-frame linear baseline it is measured against ([`linear_probe`]).

pub mod dataset;
pub mod linear_probe;
pub mod trainer;
