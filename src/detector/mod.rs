//! The detector: OadTR over a sliding window of chunk features ([`oadtr`], trainable, on candle; and
//! [`oadtr_cpu`], the same model for inference on the CPU), the per-stream windows and batched
//! streaming step ([`window`]), and the checkpoint format ([`checkpoint`]).

pub mod checkpoint;
pub mod oadtr;
pub mod oadtr_cpu;
pub mod window;
