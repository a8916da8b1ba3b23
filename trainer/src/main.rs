//! `arvae-trainer`: build music datasets, train AR-VAE and the β-VAE baseline, evaluate, generate.

mod bench_cmd;
mod classify_cmd;
mod cli_paths;
mod data_cmd;
mod eval_cmd;
mod evaluation;
mod figures;
mod generate_cmd;
mod image_cmd;
mod progress;
mod report_cmd;
mod runs;
mod sweep_cmd;
mod train_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
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
    /// Train AR-VAE (or the β-VAE baseline) on a dataset file; checkpoints every epoch.
    ///
    /// The defaults shown are the music models'. On an image dataset (dSprites, Morpho-MNIST)
    /// the paper's image settings apply unless a flag is typed: 100 epochs, batch 128, z 10
    /// (dSprites) or 16 (MNIST), β-VAE beta 4, AR-VAE beta 1, gamma 10, delta 1. The image
    /// convolutions run on RAYON_NUM_THREADS threads: two runs side by side with
    /// RAYON_NUM_THREADS=1 each train more images per second in all than one run on both cores.
    Train(train_cmd::TrainArgs),
    /// Disentanglement metrics (Interpretability, MIG, SAP, SCC, Modularity) and reconstruction
    /// accuracy of a checkpoint on a dataset split.
    Eval(eval_cmd::EvalArgs),
    /// One table over many runs (seeds, AR-VAE against β-VAE): median and quartiles per metric.
    Compare(eval_cmd::CompareArgs),
    /// Melodies from a model with the plugin's knobs, key, motion and phrase (the same bars the
    /// plugin plays for the same settings and bar index), or a MIDI file's bars transformed.
    Generate(generate_cmd::GenerateArgs),
    /// Store a model's prior (the distribution of its encoded training measures) and the data's
    /// pitch range in a checkpoint trained before they were recorded.
    Calibrate(generate_cmd::CalibrateArgs),
    /// What a listener hears, in numbers: out-of-range pitches, crowded and empty bars, 4-bar
    /// key fit, intervals at bar joins and knob fidelity, generated beside real bars.
    Score(generate_cmd::ScoreArgs),
    /// The built-in demo (no download): builds the synthetic melodies, trains an AR-VAE for a few
    /// minutes, shows that each regularized dimension orders its attribute, writes MIDI sweeps.
    Demo(data_cmd::DemoArgs),
    /// Training throughput of the native and candle engines on the same batches, decoder and
    /// encoder latency, peak memory (`--export` writes the batches for scripts/bench_torch.py).
    Bench(bench_cmd::BenchArgs),
    /// Paper Fig. 11: test measures decoded along each attribute's latent dimension, as piano
    /// rolls (PNG + SVG) with the attribute values beside, and as MIDI.
    Traverse(figures::TraverseArgs),
    /// Paper Figs. 12, 13: heat maps of each attribute over a latent plane (the attribute's
    /// dimension against a non-regularized one), PNG + SVG.
    Surface(figures::surface::SurfaceArgs),
    /// Train a gamma x delta x seed grid N runs at a time (resumable), or write a Slurm job
    /// array with --slurm; `sweep plot DIR` draws reconstruction vs Interpretability (Fig. 8).
    Sweep(sweep_cmd::SweepArgs),
    /// One offline HTML page for runs (and sweeps): metric tables and every figure, with MIDI.
    Report(report_cmd::ReportArgs),
    /// Train the digit (or shape) classifier that `eval --content` uses to measure content
    /// preservation on an image dataset (paper Fig. 7).
    ClassifyTrain(classify_cmd::ClassifyTrainArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Train(args) => train_cmd::train(args),
        Command::Eval(args) => eval_cmd::eval(args),
        Command::Compare(args) => eval_cmd::compare(args),
        Command::Generate(args) => generate_cmd::generate(args),
        Command::Calibrate(args) => generate_cmd::calibrate(args),
        Command::Score(args) => generate_cmd::score_cmd(args),
        Command::Demo(args) => data_cmd::demo(args),
        Command::Bench(args) => bench_cmd::bench(args),
        Command::Traverse(args) => figures::traverse::traverse(args),
        Command::Surface(args) => figures::surface::surface(args),
        Command::Sweep(args) => sweep_cmd::sweep(args),
        Command::Report(args) => report_cmd::report(args),
        Command::ClassifyTrain(args) => classify_cmd::classify_train(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
