//! `actiond config schema`: the JSON Schema of pipeline files, for editor completion and checks.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of the pipeline file format (point taplo or your editor at it).
    Schema,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&crate::config::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
