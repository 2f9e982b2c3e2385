//! `actiond bench backbone`: the backbone's speed (ms per frame, achieved GFLOP/s) at a few batch sizes,
//! optionally beside onnxruntime on the same weights, measured in the same run.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context as _;
use candle_core::{Device, Tensor};

use crate::backbone::{Backbone, BackboneOptions, DeviceSpec, Precision};
use crate::cli::UsageError;
use crate::feature_spec::FeatureKind;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Batch sizes to time (repeat the flag for several).
    #[arg(long = "batch", value_name = "N", default_values_t = [1usize, 4])]
    pub batches: Vec<usize>,
    /// Models directory holding dinov2-vits14/ (see `actiond models fetch`).
    #[arg(long, value_name = "DIR", default_value = crate::cli::models::DEFAULT_MODELS_DIR)]
    pub models_dir: PathBuf,
    /// A model folder to time instead of the default backbone.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Input size in pixels.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// CPU threads (default: all cores this process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Timed runs per batch size (after 2 warm-up runs); the median is reported.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Also run this onnxruntime reference script (shared/tools/ort_backbone_bench.sh) with the same
    /// threads and batch sizes and report the ratio.
    #[arg(long, value_name = "SCRIPT")]
    pub reference: Option<PathBuf>,
    /// Print one JSON object per batch size.
    #[arg(long)]
    pub json: bool,
    /// With a reduced precision: the real footage whose frames its features are compared on against
    /// f32's (cosine similarity of the CLS features).
    #[arg(long, value_name = "VIDEO", default_value = crate::synth::background::DEFAULT_FOOTAGE)]
    pub compare_on: PathBuf,
}

#[derive(Debug, serde::Serialize)]
struct Row {
    runtime: String,
    model: String,
    device: String,
    threads: usize,
    batch: usize,
    median_ms: f64,
    ms_per_frame: f64,
    /// Process CPU time per frame (median): with one thread, a measure that other load on a shared
    /// machine barely moves.
    cpu_ms_per_frame: f64,
    gflop_per_frame: f64,
    gflops: f64,
    reference_ms_per_frame: Option<f64>,
    /// Reference time over ours (above 1: we are faster).
    speed_ratio: Option<f64>,
    precision: Precision,
    /// Reduced precision: CLS features against f32's on real frames, cosine similarity (mean, worst).
    feature_cosine_mean: Option<f64>,
    feature_cosine_min: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if threads == 0 || args.batches.contains(&0) || args.runs == 0 {
        return Err(UsageError("--threads, --batch and --runs must be at least 1".into()).into());
    }
    // candle sizes its worker pool from these on first use; they must be set before any tensor work.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    std::env::set_var("OPENBLAS_NUM_THREADS", threads.to_string());
    let device: DeviceSpec = args.device.parse().map_err(UsageError)?;
    let mut options = BackboneOptions::default_in(&args.models_dir);
    if let Some(model) = &args.model {
        options.model_dir = model.clone();
    }
    options.input_size = args.size;
    options.kind = FeatureKind::Cls;
    options.device = device;
    options.precision = args.precision;
    let backbone = Backbone::load(&options).context("cannot load the backbone")?;
    let spec = backbone.feature_spec(0.0);
    let cosines = match args.precision {
        Precision::F32 => None,
        _ => Some(feature_cosines(&options, &backbone, &args.compare_on)?),
    };
    let cosine_stats = cosines.as_ref().map(|c| (c.iter().sum::<f64>() / c.len() as f64, c.iter().copied().fold(1.0, f64::min)));
    let gflop = gflop_per_frame(&backbone);

    let reference = match &args.reference {
        Some(script) => reference_times(script, threads, &args.batches)?,
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for &batch in &args.batches {
        let pixels = Tensor::randn(0f32, 1f32, (batch, 3, args.size, args.size), &Device::Cpu)?;
        for _ in 0..2 {
            backbone.embed_pixels(&pixels)?;
        }
        let mut times = Vec::with_capacity(args.runs);
        let mut cpu_times = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let (start, cpu_start) = (Instant::now(), process_cpu_ms());
            std::hint::black_box(backbone.embed_pixels(&pixels)?);
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            cpu_times.push(process_cpu_ms() - cpu_start);
        }
        times.sort_by(f64::total_cmp);
        cpu_times.sort_by(f64::total_cmp);
        let median_ms = times[times.len() / 2];
        let ms_per_frame = median_ms / batch as f64;
        let reference_ms = reference.iter().find(|(b, _)| *b == batch).map(|&(_, ms)| ms);
        rows.push(Row {
            runtime: format!("actiond (candle {})", env!("CARGO_PKG_VERSION")),
            model: format!("{}@{}", spec.backbone, args.size),
            device: device.to_string(),
            threads,
            batch,
            median_ms: round2(median_ms),
            ms_per_frame: round2(ms_per_frame),
            cpu_ms_per_frame: round2(cpu_times[cpu_times.len() / 2] / batch as f64),
            gflop_per_frame: round2(gflop),
            gflops: round2(gflop / (ms_per_frame / 1000.0)),
            reference_ms_per_frame: reference_ms,
            speed_ratio: reference_ms.map(|r| round2(r / ms_per_frame)),
            precision: args.precision,
            feature_cosine_mean: cosine_stats.map(|c| c.0),
            feature_cosine_min: cosine_stats.map(|c| c.1),
        });
    }
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
    } else {
        println!("{:>6} {:>10} {:>10} {:>9} {:>16} {:>8}", "batch", "ms", "ms/frame", "GFLOP/s", "onnxruntime ms/f", "ratio");
        for r in &rows {
            let opt = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
            println!(
                "{:>6} {:>10.1} {:>10.1} {:>9.1} {:>16} {:>8}",
                r.batch, r.median_ms, r.ms_per_frame, r.gflops, opt(r.reference_ms_per_frame), opt(r.speed_ratio)
            );
        }
        println!(
            "{} at {}x{} in {:?}, {:.2} GFLOP/frame, {} thread(s) on {}, median of {} runs; ratio = onnxruntime time / ours",
            spec.backbone, args.size, args.size, args.precision, gflop, threads, device, args.runs
        );
        if let (Some(cosines), Some((mean, min))) = (&cosines, cosine_stats) {
            println!(
                "{:?} CLS features against f32 on {} frames of {}: cosine similarity mean {mean:.5}, worst {min:.5}",
                args.precision,
                cosines.len(),
                args.compare_on.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Cosine similarity of `reduced`'s CLS features to an f32 backbone's on frames of `video` (16 frames,
/// 2 per second).
fn feature_cosines(options: &BackboneOptions, reduced: &Backbone, video: &std::path::Path) -> anyhow::Result<Vec<f64>> {
    const FRAMES: usize = 16;
    let f32_backbone = Backbone::load(&BackboneOptions { precision: Precision::F32, ..options.clone() })?;
    let size = options.input_size as u32;
    let mut rgb = Vec::new();
    let mut count = 0;
    let config = crate::config::Config::load(None)?;
    crate::source::ffmpeg::decode_offline(&config, "compare", &video.display().to_string(), 2.0, (size, size), &mut |_| {}, &mut |frame| {
        rgb.extend_from_slice(&frame.rgb);
        count += 1;
        if count >= FRAMES { crate::source::ffmpeg::Flow::Stop } else { crate::source::ffmpeg::Flow::Continue }
    })
    .with_context(|| format!("--compare-on {}", video.display()))?;
    anyhow::ensure!(count > 0, "--compare-on {}: no frames decoded", video.display());
    let ours: Vec<f32> = reduced.embed_frames(&rgb, count)?.flatten_all()?.to_vec1()?;
    let reference: Vec<f32> = f32_backbone.embed_frames(&rgb, count)?.flatten_all()?.to_vec1()?;
    let d = ours.len() / count;
    Ok(ours
        .chunks_exact(d)
        .zip(reference.chunks_exact(d))
        .map(|(a, b)| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            dot / (norm(a) * norm(b))
        })
        .collect())
}

/// Multiply-adds ×2 of the matmuls and the patch projection (elementwise work is not counted).
fn gflop_per_frame(backbone: &Backbone) -> f64 {
    let Some(shape) = backbone.transformer_shape() else { return f64::NAN };
    let tokens = shape.tokens as f64;
    let d = shape.hidden_size as f64;
    let m = shape.intermediate_size as f64;
    let per_layer = 2.0 * tokens * d * (3.0 * d + d + 2.0 * m) + 4.0 * tokens * tokens * d;
    let patch = 2.0 * (tokens - 1.0) * d * shape.patch_inputs as f64;
    (per_layer * shape.layers as f64 + patch) / 1e9
}

/// Runs the reference script and returns (batch, ms per frame) pairs.
fn reference_times(script: &std::path::Path, threads: usize, batches: &[usize]) -> anyhow::Result<Vec<(usize, f64)>> {
    let batch_list = batches.iter().map(usize::to_string).collect::<Vec<_>>().join(" ");
    let output = Command::new("bash")
        .arg(script)
        .arg(threads.to_string())
        .arg(&batch_list)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
    );
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.starts_with('{')) {
        let value: serde_json::Value = serde_json::from_str(line).with_context(|| format!("bad reference line {line:?}"))?;
        if let (Some(batch), Some(ms)) = (value["batch"].as_u64(), value["ms_per_frame"].as_f64()) {
            out.push((batch as usize, ms));
        }
    }
    Ok(out)
}

fn process_cpu_ms() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec; the clock id is a constant Linux supports.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 * 1000.0 + now.tv_nsec as f64 / 1e6
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
