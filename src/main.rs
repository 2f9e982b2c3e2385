//! The `actiond` binary: parses the command line, runs one subcommand, prints its error once.

fn main() -> std::process::ExitCode {
    actiond::cli::main()
}
