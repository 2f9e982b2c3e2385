//! Evaluation: per-frame metrics ([`metrics`]), probability timeline plots ([`plot`]) and the alert
//! quality of a pipeline's rules ([`alerts`]).

pub mod alerts;
pub mod metrics;
pub mod plot;
