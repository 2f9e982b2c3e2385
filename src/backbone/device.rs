//! Where the backbone runs and in what precision: `cpu` or `cuda:N` (with the `cuda` cargo feature),
//! f32 everywhere, f16/bf16 weights and activations on a GPU.

use std::str::FromStr;

use candle_core::{DType, Device};

/// A parsed device string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("cpu") {
            return Ok(DeviceSpec::Cpu);
        }
        if text.eq_ignore_ascii_case("cuda") {
            return Ok(DeviceSpec::Cuda(0));
        }
        if let Some(index) = text.strip_prefix("cuda:") {
            return index
                .parse()
                .map(DeviceSpec::Cuda)
                .map_err(|_| format!("device {text:?}: {index:?} is not a GPU index (write e.g. \"cuda:0\")"));
        }
        Err(format!("device {text:?} is not known: use \"cpu\" or \"cuda:N\""))
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device; a CUDA device needs a build with the `cuda` feature.
    pub fn open(self) -> Result<Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(index) => {
                if !cfg!(feature = "cuda") {
                    return Err(format!(
                        "device \"cuda:{index}\" needs actiond built with the `cuda` feature (cargo build --release --features cuda)"
                    ));
                }
                Device::new_cuda(index).map_err(|e| format!("cannot open cuda:{index}: {e}"))
            }
        }
    }
}

/// The number format of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// GPU only.
    F16,
    /// GPU only.
    Bf16,
    /// CPU only, with AVX-512 VNNI: the encoder's Linear layers in int8 (weights per output channel,
    /// activations per token, quantised symmetrically); everything else in f32.
    Int8,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
            // The weights load as f32 and the Linear layers quantise them.
            Precision::Int8 => DType::F32,
        }
    }

    /// Reduced precision is for GPUs: candle's CPU kernels for f16/bf16 are slower than f32.
    pub fn check_for(self, device: DeviceSpec) -> Result<(), String> {
        match (self, device) {
            (Precision::Int8, DeviceSpec::Cpu) if crate::qgemm::supported() => Ok(()),
            (Precision::Int8, DeviceSpec::Cpu) => {
                Err("precision int8 needs a CPU with AVX-512 VNNI, which this one lacks; use f32".into())
            }
            (Precision::Int8, DeviceSpec::Cuda(_)) => Err("precision int8 runs on the CPU; use f16 or bf16 on a GPU".into()),
            (Precision::F32, _) | (_, DeviceSpec::Cuda(_)) => Ok(()),
            (other, DeviceSpec::Cpu) => Err(format!("precision {other:?} is only supported on a CUDA device; use f32 on the CPU")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_strings() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda:1".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert!("cuda:x".parse::<DeviceSpec>().unwrap_err().contains("not a GPU index"));
        assert!("tpu".parse::<DeviceSpec>().unwrap_err().contains("\"cpu\" or \"cuda:N\""));
    }

    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        if !cfg!(feature = "cuda") {
            assert!(DeviceSpec::Cuda(0).open().unwrap_err().contains("`cuda` feature"));
        }
    }
}
