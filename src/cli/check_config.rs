//! `actiond check-config FILE`: loads a pipeline file the way `run` would and prints every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline file (TOML). ACTIOND__SECTION__KEY environment variables are applied on top.
    pub file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match Config::load(Some(&args.file)) {
        Ok(config) => {
            let enabled = config.streams.iter().filter(|s| s.enabled).count();
            println!("{}: ok ({} streams, {} enabled)", args.file.display(), config.streams.len(), enabled);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            for problem in &err.problems {
                eprintln!("{}", crate::redact::redact_text(&problem.to_string()));
            }
            let n = err.problems.len();
            eprintln!("{}: {n} problem{}", args.file.display(), if n == 1 { "" } else { "s" });
            Ok(ExitCode::from(super::EXIT_USAGE))
        }
    }
}
