//! The detector: OadTR over a sliding window of chunk features ([`oadtr`]), the per-stream windows and
//! batched streaming step ([`window`]), and the checkpoint format ([`checkpoint`]).

pub mod checkpoint;
pub mod oadtr;
pub mod window;
