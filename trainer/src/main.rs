//! `arvae-trainer`: build music datasets, train AR-VAE and the β-VAE baseline, evaluate, generate.

mod data_cmd;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Attribute-Regularized VAEs (Pati & Lerch 2020) for one-bar melodies.
///
/// Start with `arvae-trainer demo` (no download). For the Bach chorales and folk tunes:
/// `arvae-trainer data fetch`, then `arvae-trainer data build --collection bach --out data/bach.arvae`.
#[derive(Parser)]
#[command(name = "arvae-trainer", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Get, build, inspect and listen to datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// The built-in demo: builds the synthetic melodies (no download) and shows their statistics.
    Demo(data_cmd::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Demo(args) => data_cmd::demo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
