//! actiond: streaming online action detection.
//!
//! Frames come in through [`source`] (FFmpeg: files, RTSP, V4L2, lavfi), one decode thread per stream,
//! sampled to the chunk rate. The library is what the `actiond` binary runs; the modules read in
//! data-flow order.

pub mod backbone;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cpu_attention;
pub mod dataset;
pub mod detector;
pub mod eval;
pub mod events;
pub mod feature_spec;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod npy;
pub mod pipeline;
pub mod redact;
pub mod rules;
pub mod qgemm;
pub mod sgemm;
pub mod shutdown;
pub mod sinks;
pub mod source;
pub mod synth;
pub mod train;
