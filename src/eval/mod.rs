//! Evaluation: per-frame metrics ([`metrics`]) and probability timeline plots ([`plot`]).

pub mod metrics;
pub mod plot;
