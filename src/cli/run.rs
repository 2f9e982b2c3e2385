//! `actiond run CONFIG`: the daemon. Checks everything before any thread starts, then runs the pipeline
//! until its sources end (files) or a signal stops it: SIGTERM/SIGINT stop the sources, finish the chunks
//! in flight, end open events with reason `shutdown`, flush and fsync the sinks, and exit 0; SIGHUP
//! reloads rules and sinks from the same file, keeping the running ones if the new file is invalid.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::UsageError;
use crate::config::Config;
use crate::http::{HttpServer, StreamBoard};
use crate::metrics::Metrics;
use crate::pipeline::{self, Batching, Control, Parts};
use crate::rules::RuleEngine;
use crate::shutdown::Shutdown;
use crate::sinks::output::{SinkBoard, SinkOutput};
use crate::source::{spawn, SourceSettings};

/// Longest a stop may take before the process exits anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline file (TOML); `actiond check-config FILE` checks it without running.
    pub config: PathBuf,
    /// Also write every chunk's current and anticipated probabilities to FILE as JSON lines (for
    /// tuning rule thresholds, or comparing with `actiond predict`).
    #[arg(long, value_name = "FILE")]
    pub record_scores: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(Some(&args.config))?;
    let models = crate::models::runtime::load(&config.model).map_err(|e| UsageError(format!("{e:#}")))?;
    let embedder = models.embedder;
    let detector = models.detector;
    // The kind the backbone was loaded with (the detector's, unless the config names one): sources
    // attach motion descriptors when it needs them.
    config.model.feature = Some(embedder.spec().kind);
    if let Err(problems) = detector.spec().check_compatible(embedder.spec()) {
        return Err(UsageError(format!(
            "the detector {} was trained on other features than the backbone {} makes: {}",
            config.model.detector.display(),
            config.model.backbone.display(),
            problems.join("; ")
        ))
        .into());
    }
    let fps = detector.spec().fps;
    for stream in config.streams.iter().filter(|s| s.enabled) {
        let stream_fps = config.stream_fps(stream);
        if (stream_fps - fps).abs() > 1e-9 {
            return Err(UsageError(format!("streams.{}: fps {stream_fps} differs from the detector's chunk rate {fps}", stream.id)).into());
        }
    }
    let labels = detector.labels().to_vec();
    let anticipation_span = Duration::from_secs_f64(detector.queries() as f64 / fps);
    let rules = RuleEngine::new(&config.rules, detector.labels(), detector.queries(), fps).map_err(|p| UsageError(p.join("\n")))?;
    let sink_board = SinkBoard::default();
    let output = SinkOutput::start(&config.sinks, &sink_board).map_err(|p| UsageError(p.join("\n")))?;

    let scores: Option<Box<dyn std::io::Write + Send>> = match &args.record_scores {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| UsageError(format!("--record-scores {}: {e}", path.display())))?;
            Some(Box::new(std::io::BufWriter::new(file)))
        }
        None => None,
    };
    let metrics = Metrics::new();
    let board = StreamBoard::new();
    let healthy = Arc::new(AtomicBool::new(true));
    let _http = if config.http.enabled {
        Some(HttpServer::start(&config.http.listen, metrics.clone(), board.clone(), healthy.clone()).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    sink_board.register(&metrics);

    let shutdown = Shutdown::new();
    let mut sources = Vec::new();
    for stream in config.streams.iter().filter(|s| s.enabled) {
        let settings = SourceSettings::from_config(&config, stream)?;
        let shown = settings.url.to_string();
        let handle = spawn(settings, shutdown.clone()).context("cannot start a decode thread")?;
        metrics.add_stream(&stream.id, handle.stats.clone());
        board.register(&stream.id, &shown, handle.stats.clone());
        sources.push(handle);
    }
    if sources.is_empty() {
        return Err(UsageError(format!("{}: no enabled streams", args.config.display())).into());
    }
    tracing::info!(streams = sources.len(), rules = config.rules.len(), "running");
    let running = pipeline::start(
        Parts {
            sources,
            embedder,
            detector,
            rules,
            output: Box::new(output),
            metrics,
            board,
            batching: Batching { max: config.model.batch_max, timeout: config.model.batch_timeout },
            scores,
        },
        shutdown.clone(),
    )?;
    let checks = ReloadChecks { labels: labels.clone(), anticipation_span, sink_board };
    let _signals = watch_signals(&args.config, checks, shutdown.clone(), healthy, running.control.clone())?;
    let summary = running.join()?;
    tracing::info!(chunks = summary.chunks, events = summary.events, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// Handles SIGTERM/SIGINT (stop) and SIGHUP (reload rules and sinks) on a thread of its own.
fn watch_signals(path: &Path, checks: ReloadChecks, shutdown: Shutdown, healthy: Arc<AtomicBool>, control: crossbeam_channel::Sender<Control>) -> anyhow::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).context("cannot install signal handlers")?;
    let handle = signals.handle();
    let path = path.to_path_buf();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            match signal {
                SIGHUP => reload(&path, &checks, &control),
                _ => {
                    if shutdown.is_stopped() {
                        tracing::warn!("second stop signal: exiting now");
                        std::process::exit(1);
                    }
                    tracing::info!("stopping");
                    healthy.store(false, Ordering::Relaxed);
                    shutdown.stop();
                    // Whatever happens downstream, the process is gone within the deadline.
                    let started = Instant::now();
                    std::thread::spawn(move || {
                        std::thread::sleep(STOP_DEADLINE.saturating_sub(started.elapsed()));
                        tracing::error!("stop took longer than {}s: exiting", STOP_DEADLINE.as_secs());
                        std::process::exit(1);
                    });
                }
            }
        }
    })?;
    Ok(handle)
}

/// What a reloaded file must agree with: the running detector and the metrics of the sinks.
struct ReloadChecks {
    labels: Vec<String>,
    anticipation_span: Duration,
    sink_board: SinkBoard,
}

/// Reads the pipeline file again and swaps in its rules and sinks, or keeps the running ones when
/// anything in it is wrong. Streams and models stay as they are (a restart changes those).
fn reload(path: &Path, checks: &ReloadChecks, control: &crossbeam_channel::Sender<Control>) {
    let refuse = |why: String| tracing::error!("reload of {} refused, the running rules and sinks stay: {why}", path.display());
    let config = match Config::load(Some(path)) {
        Ok(c) => c,
        Err(e) => return refuse(e.to_string()),
    };
    let problems = crate::rules::check_rules(&config.rules, Some(&checks.labels), Some(checks.anticipation_span));
    if !problems.is_empty() {
        return refuse(problems.join("; "));
    }
    let output = match SinkOutput::start(&config.sinks, &checks.sink_board) {
        Ok(o) => o,
        Err(problems) => return refuse(problems.join("; ")),
    };
    tracing::info!(rules = config.rules.len(), sinks = config.sinks.0.len(), "reloaded rules and sinks from {}", path.display());
    let _ = control.send(Control::Reload { rules: config.rules, output: Some(Box::new(output)) });
}
