//! The command line: one clap subcommand per file in this folder, each with `Args` and
//! `run(Args) -> anyhow::Result<ExitCode>`. Errors are printed once here, as one line per cause.
//!
//! Exit codes: 0 success, 1 a runtime failure (a source that cannot be read, a model that fails),
//! 2 a usage or configuration error (the user must change what they typed or wrote).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::{LogFormat, LogOptions};

mod bench;
mod bench_backbone;
mod bench_oadtr;
mod check_config;
mod config_schema;
mod dataset;
mod eval;
mod events;
pub mod extract;
pub mod models;
mod predict;
mod probe;
mod run;
pub mod synth;
mod train;

/// Exit code for bad usage or configuration: what the user wrote must change.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a failure at run time.
pub const EXIT_FAILURE: u8 = 1;

/// Streaming online action detection: what is happening on each camera, and what is about to.
#[derive(Debug, Parser)]
#[command(name = "actiond", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log format: `text` for people, `json` for log shippers (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax, e.g. `info` or `actiond=debug,ffmpeg=warn`.
    /// Overrides RUST_LOG when given.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch the streams of a pipeline file, detect actions, fire rules, emit events.
    Run(run::Args),
    /// Open a source (file, rtsp://, /dev/videoN, lavfi:GRAPH), decode it and report what it carries.
    Probe(probe::Args),
    /// Check a pipeline config file and print every problem found, with its key and line.
    CheckConfig(check_config::Args),
    /// Configuration helpers (JSON Schema for editors).
    #[command(subcommand)]
    Config(config_schema::ConfigCommand),
    /// Turn videos into backbone features (DATA/<feature-dir>/<video>.npy), as the daemon sees them.
    Extract(extract::Args),
    /// Run the detector over a feature sequence (.npy) and write per-chunk current and anticipated outputs.
    Predict(predict::Args),
    /// Score a detector on a dataset, or precomputed scores against targets: per-frame mAP and cAP.
    Eval(eval::Args),
    /// Train the detector on per-frame features and targets.
    Train(train::Args),
    /// Measure the speed of a stage against its reference.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Pretrained weights: fetch and convert them.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Pretty-print a JSONL event log for people; `--follow` keeps reading as it grows and rotates.
    Events(events::Args),
    /// Training data from your own footage: build features and targets, compose streams from clips.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Write a labelled training set of synthetic action videos (procedural figure, exact ground truth).
    Synth(synth::Args),
}

/// Parses arguments, sets up logging, runs the command and turns its error into one printed chain.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout with exit 0 and usage errors to stderr with exit 2.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    if let Err(err) = crate::logging::init(&LogOptions { format: cli.log_format, filter: cli.log.clone() }) {
        eprintln!("actiond: {err}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Extract(args) => extract::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Config(cmd) => config_schema::run(cmd),
        Command::Predict(args) => predict::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Train(args) => train::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Models(cmd) => models::run(cmd),
        Command::Events(args) => events::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Dataset(cmd) => dataset::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            report_error(&err);
            ExitCode::from(exit_code_of(&err))
        }
    }
}

/// Prints the error chain on one line, credentials removed, as `actiond: outer: inner: cause`.
pub fn report_error(err: &anyhow::Error) {
    let text = crate::redact::redact_text(&format!("{err:#}"));
    if is_broken_pipe(err) {
        return;
    }
    eprintln!("actiond: {text}");
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Usage errors (bad config, bad arguments) exit 2; everything else exits 1.
fn exit_code_of(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<UsageError>() || cause.is::<crate::config::ConfigError>()) {
        EXIT_USAGE
    } else if is_broken_pipe(err) {
        0
    } else {
        EXIT_FAILURE
    }
}

/// An error the user fixes by changing what they typed: exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
