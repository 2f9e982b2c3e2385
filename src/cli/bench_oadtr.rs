//! `actiond bench oadtr`: detector speed for the small and official-default configs: a live step at
//! batch 1 (one new chunk, projection reused) and full-window forward passes at batch 1 and 16 of the
//! inference engine (`oadtr_cpu`, what the daemon runs) and of the candle model the trainer runs, with
//! achieved GFLOP/s, beside the official PyTorch figures the issue measured on this machine class
//! (2 threads). PyTorch is not run here, so the ratios compare against those recorded figures.

use std::process::ExitCode;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::detector::oadtr::{Oadtr, OadtrConfig};
use crate::detector::oadtr_cpu::OadtrCpu;
use crate::detector::window::{Activation, StreamingDetector};
use crate::sgemm::PackedMatrix;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Timed repetitions per row at least (median reported); warm-up runs come on top.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Keep timing each row for at least this many seconds: a few milliseconds' worth of samples
    /// falls inside one burst of another tenant's work on a shared machine.
    #[arg(long, default_value_t = 1.0)]
    pub min_seconds: f64,
    /// Only the small config (skip the 1024-wide official default).
    #[arg(long)]
    pub small_only: bool,
    /// Print one JSON object per row.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Row {
    config: &'static str,
    mode: &'static str,
    batch: usize,
    ms_per_call: f64,
    ms_per_window: f64,
    gflops: f64,
    /// Official PyTorch ms per window for the same config and batch (issue figures, 2 threads).
    pytorch_ms_per_window: Option<f64>,
    /// PyTorch time over actiond time (above 1: actiond is faster).
    speedup: Option<f64>,
    target_ms_per_window: Option<f64>,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Median ms per call over at least `runs` calls and `min_seconds` (after two warm-up calls).
fn time_ms(runs: usize, min_seconds: f64, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    f()?;
    let mut times = Vec::with_capacity(runs);
    let began = Instant::now();
    while times.len() < runs.max(1) || began.elapsed().as_secs_f64() < min_seconds {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.min_seconds.is_finite() && args.min_seconds >= 0.0) {
        return Err(crate::cli::UsageError(format!("--min-seconds {}: give seconds, 0 or more", args.min_seconds)).into());
    }
    let mut configs = vec![("small", OadtrConfig::small(), 11.8, 3.9, Some(3.0))];
    if !args.small_only {
        configs.push(("official-default", OadtrConfig::official_default(), 74.6, 29.0, Some(40.0)));
    }
    let device = Device::Cpu;
    let mut rows = Vec::new();
    for (name, cfg, torch_b1, torch_b16, target_b1) in configs {
        let varmap = VarMap::new();
        let model = Oadtr::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &cfg)?;
        let engine = OadtrCpu::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &cfg)?;
        let (t, dim) = (cfg.enc_layers, cfg.dim_feature);
        let flops = cfg.flops_per_window();
        let projection_flops = 2.0 * dim as f64 * cfg.embedding_dim as f64;
        let runs = if name == "small" { args.runs } else { args.runs.div_ceil(2) };

        // Live step: one stream, window already full, one new chunk per call.
        let mut live = StreamingDetector::new(engine.clone(), Activation::Probabilities { ignore_class: None });
        let stream = live.add_stream();
        let chunk: Vec<f32> = (0..dim).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        for _ in 0..t {
            live.step(&[(stream, &chunk)])?;
        }
        let step_flops = flops - (t as f64 - 1.0) * projection_flops;
        let ms = time_ms(runs, args.min_seconds, || {
            live.step(&[(stream, &chunk)])?;
            Ok(())
        })?;
        rows.push(row(name, "stream step", 1, ms, step_flops, Some(torch_b1), target_b1));

        for batch in [1usize, 16] {
            let x = Tensor::randn(0f32, 1.0, (batch, t, dim), &device)?;
            let flat: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let (torch, target) = if batch == 1 { (torch_b1, target_b1) } else { (torch_b16, Some(torch_b16)) };
            let ms = time_ms(runs, args.min_seconds, || {
                std::hint::black_box(engine.forward(&flat, batch).current[0]);
                Ok(())
            })?;
            rows.push(row(name, "window forward", batch, ms, flops * batch as f64, Some(torch), target));
            // The candle model the trainer runs: the same arithmetic as a graph of tensor ops.
            let ms = time_ms(runs, args.min_seconds, || {
                let out = model.forward(&x, false)?;
                std::hint::black_box(out.current.sum_all()?.to_scalar::<f32>()?);
                Ok(())
            })?;
            rows.push(row(name, "candle forward", batch, ms, flops * batch as f64, Some(torch), None));
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"sgemm_ceiling_gflops": sgemm_ceiling()?, "packed_kernel_gflops": packed_ceiling()})
        );
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<17} {:<15} {:>5} {:>9} {:>11} {:>8} {:>11} {:>8} {:>8}",
        "config", "mode", "batch", "ms/call", "ms/window", "GFLOP/s", "pytorch ms", "speedup", "target"
    );
    for r in &rows {
        let opt = |x: Option<f64>, p: usize| x.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<17} {:<15} {:>5} {:>9.2} {:>11.2} {:>8.1} {:>11} {:>8} {:>8}",
            r.config, r.mode, r.batch, r.ms_per_call, r.ms_per_window, r.gflops,
            opt(r.pytorch_ms_per_window, 1), opt(r.speedup, 2), opt(r.target_ms_per_window, 1)
        );
    }
    println!("machine sgemm ceiling now (1040x1024x1024 f32 matmul): {:.1} GFLOP/s", sgemm_ceiling()?);
    println!("the same product in actiond's packed kernel (weights packed once): {:.1} GFLOP/s", packed_ceiling());
    println!("medians of timed runs; pytorch = official OadTR figures from the issue (2 threads, this machine class), not rerun here");
    Ok(ExitCode::SUCCESS)
}

fn row(config: &'static str, mode: &'static str, batch: usize, ms: f64, flops: f64, torch: Option<f64>, target: Option<f64>) -> Row {
    let per_window = ms / batch as f64;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Row {
        config,
        mode,
        batch,
        ms_per_call: round(ms),
        ms_per_window: round(per_window),
        gflops: round(flops / (ms * 1e-3) / 1e9),
        pytorch_ms_per_window: torch,
        speedup: torch.map(|t| round(t / per_window)),
        target_ms_per_window: target,
    }
}

/// GFLOP/s of the same product in the kernel the engine's layers use, its right operand packed once.
fn packed_ceiling() -> f64 {
    let (m, k, n) = (1040, 1024, 1024);
    let x: Vec<f32> = (0..m * k).map(|i| ((i % 31) as f32 - 15.0) / 15.0).collect();
    let w: Vec<f32> = (0..k * n).map(|i| ((i % 29) as f32 - 14.0) / 14.0).collect();
    let weight = PackedMatrix::new(&w, k, n);
    let mut out = vec![0.0; m * n];
    let ms = time_ms(5, 0.0, || {
        weight.product(&x, m, &mut out, false);
        std::hint::black_box(out[0]);
        Ok(())
    })
    .expect("the timed closure cannot fail");
    2.0 * (m * k * n) as f64 / (ms * 1e-3) / 1e9
}

/// GFLOP/s of a plain large matmul right now: the machine is shared, so this is the yardstick the
/// model's figures should be read against.
fn sgemm_ceiling() -> anyhow::Result<f64> {
    let device = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (1040, 1024), &device)?;
    let b = Tensor::randn(0f32, 1.0, (1024, 1024), &device)?;
    let ms = time_ms(5, 0.0, || {
        std::hint::black_box(a.matmul(&b)?);
        Ok(())
    })?;
    Ok(2.0 * 1040.0 * 1024.0 * 1024.0 / (ms * 1e-3) / 1e9)
}
