//! `arvae-trainer eval` and `compare`: the paper's disentanglement metrics for checkpoints.

use crate::evaluation::{check_compatible, print_evaluation, Evaluation};
use anyhow::{bail, Context, Result};
use arvae_core::builtin::load_checkpoint;
use arvae_core::checkpoint::Checkpoint;
use arvae_core::data::{Dataset, Split};
use arvae_core::family::Family;
use arvae_core::metrics::{compute_metrics, Matrix, MetricsConfig, MetricsData};
use arvae_core::model::{LossConfig, MeasureVae};
use arvae_core::music::attributes::Attribute;
use arvae_core::music::Measure;
use arvae_core::training;
use candle_core::Device;
use clap::Args;
use std::path::{Path, PathBuf};

/// Most latents the reference evaluates (201 batches of 256).
pub const REFERENCE_MAX_POINTS: usize = 51_456;

#[derive(Args)]
pub struct EvalArgs {
    /// Checkpoint to evaluate, or a shipped model's name (bach, folk).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset file (the one the model was trained on, or another with the same vocabulary).
    #[arg(long)]
    data: PathBuf,
    /// Split to evaluate on.
    #[arg(long, default_value = "test", value_parser = parse_split)]
    split: Split,
    /// Write the numbers as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write sampled z, mean z and attributes as a NumPy .npz.
    #[arg(long)]
    latents: Option<PathBuf>,
    /// Evaluate at most this many measures (the reference stops at 51,456).
    #[arg(long, default_value_t = REFERENCE_MAX_POINTS)]
    max_measures: usize,
    /// Seed of the latent sampling and of the MI jitter.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image models: content preservation (paper Fig. 7) with this classifier (from
    /// `classify-train`): its accuracy on the inputs, their reconstructions and the traversals
    /// along every regularized dimension (a β-VAE's highest-MI dimension per attribute).
    #[arg(long, value_name = "CLASSIFIER")]
    content: Option<PathBuf>,
    /// Images for --content (the paper: the 10,000 MNIST test digits).
    #[arg(long, default_value_t = 10_000)]
    content_images: usize,
    /// Traversal points per dimension for --content, evenly in [-4, 4] (the paper: 10).
    #[arg(long, default_value_t = 10)]
    content_steps: usize,
    /// Store the evaluation in the checkpoint's metadata (music models; a file, not a shipped
    /// model's name), where `compare`, `report` and the built-in model list read it.
    #[arg(long)]
    store: bool,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Checkpoints (e.g. runs/*/model.safetensors) or shipped models' names.
    #[arg(required = true)]
    checkpoints: Vec<PathBuf>,
    /// Dataset to evaluate on when a checkpoint has no stored evaluation (or with --recompute).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Evaluate every checkpoint again instead of using the evaluation stored in it.
    #[arg(long)]
    recompute: bool,
    /// Split to evaluate on.
    #[arg(long, default_value = "test", value_parser = parse_split)]
    split: Split,
    /// Write the table as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw box plots per metric across seeds into this folder (paper Figs. 3 and 5):
    /// metrics_boxplot.{png,svg}, reconstruction_boxplot.{png,svg}.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write a Markdown table: per metric and model the median and the range (min-max) over
    /// the checkpoints, then AR-VAE's Interpretability per attribute.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

fn parse_split(s: &str) -> Result<Split, String> {
    Split::from_name(s).ok_or_else(|| format!("unknown split '{s}' (train, val or test)"))
}

/// Evaluates `model` on `split` of `ds`: metrics on sampled z and reconstruction accuracy.
pub fn evaluate(
    ck: &Checkpoint,
    model: &MeasureVae,
    ds: &Dataset,
    split: Split,
    max: usize,
    seed: u64,
    latents_out: Option<&Path>,
) -> Result<Evaluation> {
    let mut idx = ds.indices(split);
    if idx.is_empty() {
        bail!("the {} split of the dataset is empty", split.name());
    }
    idx.truncate(max);
    let ms: Vec<Measure> = idx.iter().map(|&i| ds.measures[i]).collect();
    let (means, samples) = training::latents(model, &ms, 256, seed)?;
    let d = model.config().latent;
    let n = ms.len();
    let attrs: Vec<f64> = idx
        .iter()
        .flat_map(|&i| ds.attributes[i].map(|x| x as f64))
        .collect();
    let names: Vec<String> = Attribute::ALL
        .iter()
        .map(|a| a.name().to_string())
        .collect();
    let regularized: Vec<Option<usize>> = Attribute::ALL
        .iter()
        .map(|a| {
            ck.meta
                .attributes
                .iter()
                .find(|x| x.name == a.name())
                .map(|x| x.latent_dim)
        })
        .collect();
    let data = MetricsData {
        z: Matrix::from_f32(n, d, &samples)?,
        z_mean: Some(Matrix::from_f32(n, d, &means)?),
        attributes: Matrix::new(n, 4, attrs)?,
        names,
        regularized,
    };
    if let Some(p) = latents_out {
        data.write_npz(p, true)?;
    }
    let metrics = compute_metrics(
        &data.z,
        &data.attributes,
        &data.names,
        &data.regularized,
        &MetricsConfig {
            n_neighbors: 3,
            seed,
        },
    )?;
    let loss = LossConfig {
        beta: 0.0,
        gamma: 0.0,
        delta: 10.0,
        regularized: Vec::new(),
    };
    let recon = training::evaluate(model, ds, &idx, &loss, 256, seed)?;
    Ok(Evaluation {
        dataset: ds.header.collection.clone(),
        dataset_hash: ds.header.content_hash.clone(),
        split: split.name().into(),
        reconstruction_accuracy: recon.accuracy as f64,
        metrics,
        content: None,
    })
}

pub fn eval(a: EvalArgs) -> Result<()> {
    crate::cli_paths::refuse_inputs_as_outputs(
        &[
            ("--json", a.json.as_deref()),
            ("--latents", a.latents.as_deref()),
        ],
        &[Some(&a.checkpoint), Some(&a.data), a.content.as_deref()],
    )?;
    let ck = load_checkpoint(&a.checkpoint)?;
    match Family::of_pair(&ck, &a.checkpoint, &a.data).map_err(anyhow::Error::msg)? {
        Family::Images => crate::image_cmd::eval(
            &ck,
            crate::image_cmd::EvalRequest {
                checkpoint: &a.checkpoint,
                data: &a.data,
                split: a.split,
                max: a.max_measures,
                seed: a.seed,
                json: a.json.as_deref(),
                content: a
                    .content
                    .as_deref()
                    .map(|p| (p, a.content_images, a.content_steps)),
            },
        ),
        Family::Music => eval_music(&a, &ck),
    }
}

/// `eval` of a MeasureVAE on a music dataset.
fn eval_music(a: &EvalArgs, ck: &Checkpoint) -> Result<()> {
    if let Some(p) = &a.content {
        bail!(
            "--content {} needs an image dataset and model; {} is a music dataset",
            p.display(),
            a.data.display()
        );
    }
    if a.store && !a.checkpoint.is_file() {
        bail!(
            "--store writes into the checkpoint file; {} is not a file (a shipped model is \
             stored with its evaluation already)",
            a.checkpoint.display()
        );
    }
    let ds = Dataset::load(&a.data)?;
    check_compatible(ck, &a.checkpoint, &ds, &a.data)?;
    let model = MeasureVae::from_checkpoint(ck, &Device::Cpu)
        .with_context(|| format!("{}: cannot build the model", a.checkpoint.display()))?;
    let e = evaluate(
        ck,
        &model,
        &ds,
        a.split,
        a.max_measures,
        a.seed,
        a.latents.as_deref(),
    )?;
    print_evaluation(&e);
    if a.store {
        let mut stored = ck.clone();
        stored.meta.evaluation = Some(serde_json::to_value(&e)?);
        stored.save_atomic(&a.checkpoint)?;
        println!("stored the evaluation in {}", a.checkpoint.display());
    }
    if let Some(p) = &a.json {
        arvae_core::files::write_bytes(p, serde_json::to_string_pretty(&e)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &a.latents {
        println!(
            "wrote {} (z, z_mean, attributes, attribute_names, regularized_dims)",
            p.display()
        );
    }
    Ok(())
}

/// Evaluates the finished run's best checkpoint (the one a user ships) on the test split and
/// stores the summary in it, and in the last epoch's checkpoint when that is the same epoch.
pub fn record_evaluation(run: &Path, ds: &Dataset, max: usize) -> Result<Evaluation> {
    let ck = Checkpoint::load(run.join("best.safetensors"))?;
    let model = MeasureVae::from_checkpoint(&ck, &Device::Cpu)?;
    let split = if ds.count(Split::Test) > 0 {
        Split::Test
    } else {
        Split::Train
    };
    let e = evaluate(&ck, &model, ds, split, max, 0, None)?;
    let value = serde_json::to_value(&e)?;
    for name in ["best.safetensors", "model.safetensors"] {
        let p = run.join(name);
        let mut c = Checkpoint::load(&p)?;
        if name == "best.safetensors" || c.meta.training == ck.meta.training {
            c.meta.evaluation = Some(value.clone());
            c.save_atomic(&p)?;
        }
    }
    Ok(e)
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let x = p * (v.len() - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
    };
    (q(0.25), q(0.5), q(0.75))
}

/// "median (min–max)" with `decimals` decimals; one value alone; "–" for none.
fn median_range(v: &[f64], decimals: usize) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let (_, med, _) = quartiles(v.to_vec());
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() == 1 {
        format!("{med:.decimals$}")
    } else {
        format!("{med:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
    }
}

/// The Markdown table of `compare --markdown`: (model kind, evaluation) per checkpoint.
pub fn markdown_table(runs: &[(&str, &Evaluation)]) -> String {
    type Metric = (&'static str, usize, fn(&Evaluation) -> f64);
    let metrics: [Metric; 6] = [
        ("Interpretability", 3, |e| e.metrics.interpretability_mean),
        ("MIG", 3, |e| e.metrics.mig_mean),
        ("SAP", 3, |e| e.metrics.sap_mean),
        ("SCC", 3, |e| e.metrics.scc_mean),
        ("Modularity", 3, |e| e.metrics.modularity),
        ("Recon. acc. %", 1, |e| 100.0 * e.reconstruction_accuracy),
    ];
    let group = |kind: &str| -> Vec<&Evaluation> {
        runs.iter().filter(|r| r.0 == kind).map(|r| r.1).collect()
    };
    let (ar, beta) = (group("ar-vae"), group("beta-vae"));
    let mut s = format!(
        "| metric | AR-VAE (n={}) | β-VAE (n={}) |\n|---|---|---|\n",
        ar.len(),
        beta.len()
    );
    for (name, decimals, f) in metrics {
        let col =
            |g: &[&Evaluation]| median_range(&g.iter().map(|e| f(e)).collect::<Vec<_>>(), decimals);
        s += &format!("| {name} | {} | {} |\n", col(&ar), col(&beta));
    }
    if let Some(first) = ar.first() {
        s += "\n| AR-VAE Interpretability per attribute | median (range) |\n|---|---|\n";
        for (i, attr) in first.metrics.attributes.iter().enumerate() {
            let v: Vec<f64> = ar
                .iter()
                .filter_map(|e| e.metrics.attributes.get(i))
                .map(|a| a.interpretability)
                .collect();
            s += &format!("| {} | {} |\n", attr.name, median_range(&v, 3));
        }
    }
    s
}

/// One compared checkpoint: its path, model kind ("ar-vae" or "beta-vae") and evaluation.
type CompareRow = (String, String, Evaluation);

/// A column of `compare`: its name and how to read it from an evaluation.
type CompareMetric = (&'static str, fn(&Evaluation) -> f64);

pub fn compare(a: CompareArgs) -> Result<()> {
    let mut inputs: Vec<Option<&Path>> = a.checkpoints.iter().map(|c| Some(c.as_path())).collect();
    inputs.push(a.data.as_deref());
    crate::cli_paths::refuse_inputs_as_outputs(
        &[
            ("--json", a.json.as_deref()),
            ("--markdown", a.markdown.as_deref()),
        ],
        &inputs,
    )?;
    let ds = match &a.data {
        Some(p) => Some((Dataset::load(p)?, p.clone())),
        None => None,
    };
    let mut rows: Vec<CompareRow> = Vec::new();
    for path in &a.checkpoints {
        rows.push(compare_row(&a, path, ds.as_ref())?);
    }
    let datasets: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.2.dataset_hash.as_str()).collect();
    if datasets.len() > 1 {
        bail!("the checkpoints were evaluated on different datasets; pass --data (and --recompute) to compare them on one");
    }
    let metrics: [CompareMetric; 6] = [
        ("interpretability", |e| e.metrics.interpretability_mean),
        ("mig", |e| e.metrics.mig_mean),
        ("sap", |e| e.metrics.sap_mean),
        ("scc", |e| e.metrics.scc_mean),
        ("modularity", |e| e.metrics.modularity),
        ("recon_accuracy", |e| e.reconstruction_accuracy),
    ];
    print_compare_table(&rows, &metrics);
    let summary = compare_summary(&rows, &metrics);
    write_compare_outputs(&a, &rows, summary)
}

/// The row of one checkpoint: its stored evaluation where it fits, else a new one on --data.
fn compare_row(
    a: &CompareArgs,
    path: &Path,
    ds: Option<&(Dataset, PathBuf)>,
) -> Result<CompareRow> {
    let ck = load_checkpoint(path)?;
    let kind = if ck.meta.attributes.is_empty() {
        "beta-vae"
    } else {
        "ar-vae"
    }
    .to_string();
    let stored: Option<Evaluation> = ck
        .meta
        .evaluation
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let e = match (stored, ds) {
        (Some(e), Some((d, _))) if !a.recompute && e.dataset_hash == d.header.content_hash => e,
        (Some(e), None) if !a.recompute => e,
        (_, Some((d, dp))) => {
            check_compatible(&ck, path, d, dp)?;
            let model = MeasureVae::from_checkpoint(&ck, &Device::Cpu)?;
            evaluate(&ck, &model, d, a.split, REFERENCE_MAX_POINTS, 0, None)?
        }
        (_, None) => bail!(
            "{}: has no stored evaluation; pass --data to evaluate it",
            path.display()
        ),
    };
    Ok((path.display().to_string(), kind, e))
}

/// Prints one line of metrics per checkpoint under a header.
fn print_compare_table(rows: &[CompareRow], metrics: &[CompareMetric]) {
    println!(
        "{:<60} {:<9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "checkpoint", "model", "interp", "MIG", "SAP", "SCC", "modul", "recon"
    );
    for (p, k, e) in rows {
        let v: Vec<String> = metrics
            .iter()
            .map(|(_, f)| format!("{:>7.3}", f(e)))
            .collect();
        println!("{p:<60} {k:<9} {}", v.join(" "));
    }
}

/// Prints and returns the quartiles of each metric per model kind.
fn compare_summary(
    rows: &[CompareRow],
    metrics: &[CompareMetric],
) -> serde_json::Map<String, serde_json::Value> {
    println!("\nmedian [25%, 75%] per model:");
    let mut summary = serde_json::Map::new();
    for kind in ["ar-vae", "beta-vae"] {
        let group: Vec<&Evaluation> = rows.iter().filter(|r| r.1 == kind).map(|r| &r.2).collect();
        if group.is_empty() {
            continue;
        }
        let mut line = format!("{kind:<9} (n={})", group.len());
        let mut obj = serde_json::Map::new();
        for &(name, f) in metrics {
            let (q1, med, q3) = quartiles(group.iter().map(|e| f(e)).collect());
            line += &format!("  {name} {med:.3} [{q1:.3}, {q3:.3}]");
            obj.insert(
                name.into(),
                serde_json::json!({"q1": q1, "median": med, "q3": q3}),
            );
        }
        println!("{line}");
        summary.insert(kind.into(), serde_json::Value::Object(obj));
    }
    summary
}

/// Writes what --json, --markdown and --plot ask for.
fn write_compare_outputs(
    a: &CompareArgs,
    rows: &[CompareRow],
    summary: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    if let Some(p) = &a.json {
        let rows_json: Vec<_> = rows
            .iter()
            .map(|(p, k, e)| serde_json::json!({"checkpoint": p, "model": k, "evaluation": e}))
            .collect();
        let v = serde_json::json!({"runs": rows_json, "summary": summary});
        arvae_core::files::write_bytes(p, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.markdown {
        let evals: Vec<(&str, &Evaluation)> =
            rows.iter().map(|(_, k, e)| (k.as_str(), e)).collect();
        arvae_core::files::write_bytes(p, markdown_table(&evals))
            .with_context(|| format!("cannot write {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    if let Some(dir) = &a.plot {
        let named: Vec<(String, &Evaluation)> = rows
            .iter()
            .map(|(_, k, e)| {
                let name = if k == "ar-vae" { "AR-VAE" } else { "β-VAE" };
                (name.to_string(), e)
            })
            .collect();
        let dataset = rows.first().map_or("", |r| r.2.dataset.as_str());
        for p in crate::figures::compare::write(&named, dataset, dir)? {
            println!("wrote {} (and .svg)", p.display());
        }
    }
    Ok(())
}
