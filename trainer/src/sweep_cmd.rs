//! `arvae-trainer sweep`: a gamma x delta x seed grid of AR-VAE runs (plus a β-VAE per seed),
//! N at a time as child processes of this binary, or as a Slurm job array; `sweep plot` draws
//! the reconstruction / Interpretability trade-off (paper Fig. 8).
//!
//! Resumable: a run whose checkpoint has all requested epochs and a stored evaluation is
//! skipped; any other run is started with `train --resume`, which continues a half-finished
//! run from its last complete epoch (or starts it when nothing was written yet).

use crate::figures::charts::{TradeoffFigure, TradeoffPoint};
use crate::figures::save;
use crate::runs::RunRecord;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    #[command(flatten)]
    run: SweepRunArgs,
}

#[derive(Subcommand)]
enum SweepAction {
    /// Reconstruction accuracy against Interpretability per (gamma, delta), mean over seeds
    /// (paper Fig. 8): tradeoff.{png,svg}, summary.csv, summary.json.
    Plot(SweepPlotArgs),
}

#[derive(Args)]
pub struct SweepPlotArgs {
    /// The sweep folder (with sweep.json).
    pub sweep: PathBuf,
    /// Where to write the figure and tables (default: the sweep folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
struct SweepRunArgs {
    /// Dataset file from `data build`.
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// AR loss weights, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,2,5,10,100")]
    gamma: Vec<String>,
    /// AR loss sharpness values, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    delta: Vec<String>,
    /// Seeds: a range `0..3` (0, 1, 2), `0..=3`, a list `0,4,7` or one seed.
    #[arg(long, default_value = "0..3")]
    seeds: String,
    /// Runs at a time: child processes on this machine, or with --slurm the job array's
    /// concurrency limit (`--array=0-N%JOBS`).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Sweep folder: sweep.json and one folder per run under runs/.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Leave out the β-VAE baseline (one run per seed, the paper's × in Fig. 8).
    #[arg(long)]
    no_baseline: bool,
    /// Write a Slurm job-array script and its command list (sweep-N.slurm, sweep-N.commands;
    /// N counts the generations written into --out) instead of running here.
    #[arg(long)]
    slurm: bool,
    #[command(flatten)]
    resources: SlurmResources,
    /// Flags for every `train` run, after `--` (e.g. `-- --epochs 10 --max-measures 20000`).
    #[arg(last = true)]
    train_args: Vec<String>,
}

/// What each Slurm array task asks for (defaults fit small nodes).
#[derive(Args, Clone, Debug)]
struct SlurmResources {
    /// With --slurm: CPU cores per task (RAYON_NUM_THREADS follows SLURM_CPUS_PER_TASK).
    #[arg(long, default_value_t = 2)]
    cpus: usize,
    /// With --slurm: memory per task (sbatch --mem).
    #[arg(long, default_value = "4G")]
    mem: String,
    /// With --slurm: time limit per task (sbatch --time); a run cut short resumes when
    /// submitted again.
    #[arg(long, default_value = "12:00:00")]
    time: String,
    /// With --slurm: partition (sbatch --partition).
    #[arg(long)]
    partition: Option<String>,
    /// With --slurm: account to charge (sbatch --account).
    #[arg(long)]
    account: Option<String>,
    /// With --slurm: generic resources, e.g. `gpu:1` for one GPU (needs a `--features cuda`
    /// build and `-- --device cuda`).
    #[arg(long)]
    gres: Option<String>,
}

impl SlurmResources {
    /// The `#SBATCH` lines for these resources; values must be plain words.
    fn directives(&self) -> Result<String> {
        if self.cpus == 0 {
            bail!("--cpus 0: each task needs at least 1 core");
        }
        let mut lines = vec![format!("#SBATCH --cpus-per-task={}", self.cpus)];
        let named = [
            ("mem", Some(&self.mem)),
            ("time", Some(&self.time)),
            ("partition", self.partition.as_ref()),
            ("account", self.account.as_ref()),
            ("gres", self.gres.as_ref()),
        ];
        for (flag, value) in named {
            let Some(v) = value else { continue };
            let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:,=+".contains(c);
            if v.is_empty() || !v.chars().all(plain) {
                bail!("--{flag} '{v}' is not a plain Slurm value (letters, digits, - _ . : , = +)");
            }
            lines.push(format!("#SBATCH --{flag}={v}"));
        }
        Ok(lines.join("\n"))
    }
}

/// One run of the grid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepRun {
    /// Folder name under runs/.
    pub name: String,
    /// "ar-vae" or "beta-vae".
    pub model: String,
    /// AR loss weight (0 for the β-VAE).
    pub gamma: f64,
    /// AR loss sharpness.
    pub delta: f64,
    /// Seed.
    pub seed: u64,
}

/// sweep.json: the grid, for `sweep plot`, `report` and re-runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct SweepPlan {
    /// Dataset file.
    pub data: String,
    /// Flags passed to every `train`.
    pub train_args: Vec<String>,
    /// Epochs each run trains for.
    pub epochs: usize,
    /// All runs.
    pub runs: Vec<SweepRun>,
}

impl SweepPlan {
    /// Reads `dir/sweep.json`.
    pub fn load(dir: &Path) -> Result<SweepPlan> {
        let p = dir.join("sweep.json");
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "cannot read {} (is {} a sweep folder written by `arvae-trainer sweep`?)",
                p.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a sweep plan", p.display()))
    }
}

/// Parses `--seeds`: `a..b`, `a..=b`, `a,b,c` or `a`.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "--seeds '{s}': {why} (write a range 0..3 or 0..=2, a list 0,1,2, or one seed)"
        )
    };
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| bad(&format!("'{}' is not a seed", x.trim())))
    };
    let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..=") {
        (num(a)?..=num(b)?).collect()
    } else if let Some((a, b)) = s.split_once("..") {
        (num(a)?..num(b)?).collect()
    } else {
        s.split(',').map(num).collect::<Result<_>>()?
    };
    if seeds.is_empty() {
        return Err(bad("the range is empty"));
    }
    if seeds.len() > 10_000 {
        return Err(bad("more than 10,000 seeds"));
    }
    let mut out = Vec::new();
    for x in seeds {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(out)
}

/// Parses a `--gamma`/`--delta` list: finite, non-negative, no duplicates.
fn parse_grid(flag: &str, values: &[String]) -> Result<Vec<f64>> {
    let mut out: Vec<f64> = Vec::new();
    for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let x: f64 = v
            .parse()
            .map_err(|_| anyhow::anyhow!("--{flag} '{v}' is not a number"))?;
        if !x.is_finite() || x < 0.0 {
            bail!("--{flag} {v}: values must be finite and not negative");
        }
        if !out.contains(&x) {
            out.push(x);
        }
    }
    if out.is_empty() {
        bail!("--{flag} names no value: the grid is empty");
    }
    Ok(out)
}

/// `train` flags the sweep sets itself.
const OWN_FLAGS: [&str; 7] = [
    "--data", "--out", "--gamma", "--delta", "--seed", "--model", "--resume",
];

/// Epochs requested by the pass-through flags (train's default is 30).
fn requested_epochs(train_args: &[String]) -> Result<usize> {
    let mut epochs = 30;
    let mut it = train_args.iter();
    while let Some(a) = it.next() {
        let value = if a == "--epochs" {
            it.next().map(String::as_str)
        } else {
            a.strip_prefix("--epochs=")
        };
        if a == "--epochs" || a.starts_with("--epochs=") {
            epochs = value
                .and_then(|v| v.parse().ok())
                .filter(|&e: &usize| e > 0)
                .with_context(|| format!("'{a}' after --: --epochs needs a positive number"))?;
        }
    }
    Ok(epochs)
}

fn check_train_args(train_args: &[String]) -> Result<()> {
    for a in train_args {
        let flag = a.split('=').next().unwrap_or(a);
        if OWN_FLAGS.contains(&flag) {
            bail!(
                "'{a}' after --: the sweep sets {flag} for each run itself (use the sweep's own --data, --out, --gamma, --delta, --seeds)"
            );
        }
    }
    Ok(())
}

/// The grid: AR-VAE for every (gamma, delta, seed), then a β-VAE per seed.
fn plan_runs(gammas: &[f64], deltas: &[f64], seeds: &[u64], baseline: bool) -> Vec<SweepRun> {
    let mut runs = Vec::new();
    for &seed in seeds {
        for &gamma in gammas {
            for &delta in deltas {
                runs.push(SweepRun {
                    name: format!("g{gamma}_d{delta}_s{seed}"),
                    model: "ar-vae".into(),
                    gamma,
                    delta,
                    seed,
                });
            }
        }
        if baseline {
            runs.push(SweepRun {
                name: format!("beta-vae_s{seed}"),
                model: "beta-vae".into(),
                gamma: 0.0,
                delta: 10.0,
                seed,
            });
        }
    }
    runs
}

/// Whether a run has all `epochs` and a stored evaluation.
fn finished(dir: &Path, epochs: usize) -> bool {
    let ck = dir.join("model.safetensors");
    ck.is_file()
        && RunRecord::load(&ck).is_ok_and(|r| r.epochs_done >= epochs && r.evaluation.is_some())
}

/// The `train` arguments of one run.
fn train_command(plan: &SweepPlan, run: &SweepRun, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "train".into(),
        "--data".into(),
        plan.data.clone(),
        "--model".into(),
        run.model.clone(),
        "--out".into(),
        dir.display().to_string(),
        "--seed".into(),
        run.seed.to_string(),
        "--delta".into(),
        run.delta.to_string(),
    ];
    if run.model == "ar-vae" {
        args.extend(["--gamma".into(), run.gamma.to_string()]);
    }
    args.push("--resume".into());
    args.extend(plan.train_args.iter().cloned());
    args
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A line above the bar, or on stderr when the bar is hidden (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// The `sweep` command.
pub fn sweep(a: SweepArgs) -> Result<()> {
    match a.action {
        Some(SweepAction::Plot(p)) => plot(&p).map(|_| ()),
        None => run_grid(a.run),
    }
}

fn run_grid(a: SweepRunArgs) -> Result<()> {
    let (Some(data), Some(out)) = (a.data, a.out) else {
        bail!("sweep needs --data and --out");
    };
    let gammas = parse_grid("gamma", &a.gamma)?;
    let deltas = parse_grid("delta", &a.delta)?;
    let seeds = parse_seeds(&a.seeds)?;
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if a.slurm {
        a.resources.directives()?;
    }
    check_train_args(&a.train_args)?;
    let epochs = requested_epochs(&a.train_args)?;
    check_data(&data)?;
    let plan = SweepPlan {
        data: absolute(&data).display().to_string(),
        train_args: a.train_args.clone(),
        epochs,
        runs: plan_runs(&gammas, &deltas, &seeds, !a.no_baseline),
    };
    write_plan(&out, &plan)?;

    let runs_dir = out.join("runs");
    let (done, todo): (Vec<&SweepRun>, Vec<&SweepRun>) = plan
        .runs
        .iter()
        .partition(|r| finished(&runs_dir.join(&r.name), epochs));
    let resumed = todo
        .iter()
        .filter(|r| runs_dir.join(&r.name).join("model.safetensors").is_file())
        .count();
    println!(
        "sweep of {} runs ({} gamma x {} delta x {} seeds{}), {epochs} epochs each: {} finished (skipped), {resumed} to resume, {} new",
        plan.runs.len(),
        gammas.len(),
        deltas.len(),
        seeds.len(),
        if a.no_baseline { "" } else { ", + a β-VAE per seed" },
        done.len(),
        todo.len() - resumed
    );

    if a.slurm {
        return write_slurm(&plan, &todo, &out, a.jobs, &a.resources);
    }
    if todo.is_empty() {
        println!(
            "nothing to do; `arvae-trainer sweep plot {}` draws the figure",
            out.display()
        );
        return Ok(());
    }
    run_local(&plan, &todo, &runs_dir, a.jobs)?;
    println!(
        "all {} runs finished; `arvae-trainer sweep plot {}` draws the figure",
        plan.runs.len(),
        out.display()
    );
    Ok(())
}

/// Fails unless `--data` is a file that loads as a dataset.
fn check_data(data: &Path) -> Result<()> {
    if !data.is_file() {
        bail!("--data {}: no such file", data.display());
    }
    // Fail here, once, rather than in every run.
    arvae_core::data::Dataset::load(data)?;
    Ok(())
}

/// Creates `out/runs` and writes `out/sweep.json`, noting when an older plan differs.
fn write_plan(out: &Path, plan: &SweepPlan) -> Result<()> {
    std::fs::create_dir_all(out.join("runs"))
        .with_context(|| format!("cannot create {}", out.join("runs").display()))?;
    if let Ok(old) = SweepPlan::load(out) {
        if old.data != plan.data || old.train_args != plan.train_args {
            eprintln!(
                "note: {} had other data or train flags ({} {:?}); runs resume only where their settings match",
                out.join("sweep.json").display(),
                old.data,
                old.train_args
            );
        }
    }
    let plan_path = out.join("sweep.json");
    // Atomically, so a `sweep plot` or `report` reading it never sees half a file.
    arvae_core::files::write_bytes(&plan_path, serde_json::to_string_pretty(plan)?)
        .with_context(|| format!("cannot write {}", plan_path.display()))?;
    Ok(())
}

/// Runs `todo` here, `jobs` child processes at a time, with a progress bar; fails when any
/// run failed.
fn run_local(plan: &SweepPlan, todo: &[&SweepRun], runs_dir: &Path, jobs: usize) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    let bar = ProgressBar::new(todo.len() as u64)
        .with_style(crate::progress::style())
        .with_message("sweep");
    bar.enable_steady_tick(Duration::from_millis(500));
    let mut pending: std::collections::VecDeque<&SweepRun> = todo.iter().copied().collect();
    let mut running: Vec<(Child, &SweepRun)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    while !pending.is_empty() || !running.is_empty() {
        while running.len() < jobs {
            let Some(run) = pending.pop_front() else {
                break;
            };
            let child = spawn_run(&exe, plan, run, runs_dir, threads)?;
            running.push((child, run));
        }
        bar.set_message(format!(
            "{} running",
            running
                .iter()
                .map(|r| r.1.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        std::thread::sleep(Duration::from_millis(200));
        reap_finished(&mut running, &bar, runs_dir, &mut failed)?;
    }
    bar.finish_and_clear();
    if !failed.is_empty() {
        bail!(
            "{} of {} runs failed ({}); their train.log says why; running the same command again resumes them",
            failed.len(),
            todo.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Starts one run's `train` as a child process, its output appended to the run's train.log.
fn spawn_run(
    exe: &Path,
    plan: &SweepPlan,
    run: &SweepRun,
    runs_dir: &Path,
    threads: usize,
) -> Result<Child> {
    let dir = runs_dir.join(&run.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join("train.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    Command::new(exe)
        .args(train_command(plan, run, &dir))
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

/// Removes the runs that have exited from `running`, reporting each and noting failures.
fn reap_finished(
    running: &mut Vec<(Child, &SweepRun)>,
    bar: &ProgressBar,
    runs_dir: &Path,
    failed: &mut Vec<String>,
) -> Result<()> {
    let mut i = 0;
    while i < running.len() {
        match running[i].0.try_wait()? {
            Some(status) => {
                let (_, run) = running.remove(i);
                bar.inc(1);
                if status.success() {
                    say(bar, format!("finished {}", run.name));
                } else {
                    say(
                        bar,
                        format!(
                            "FAILED {} ({status}); see {}",
                            run.name,
                            runs_dir.join(&run.name).join("train.log").display()
                        ),
                    );
                    failed.push(run.name.clone());
                }
            }
            None => i += 1,
        }
    }
    Ok(())
}

/// Claims the next generation number of `out` by creating its command file exclusively, so
/// two `sweep --slurm` writing at once never share a command list.
fn claim_generation(out: &Path) -> Result<(usize, PathBuf)> {
    for n in 1..10_000 {
        let path = out.join(format!("sweep-{n}.commands"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return Ok((n, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    bail!("{}: 10,000 sweep generations already", out.display())
}

/// The command lines of the runs to do, one per array task.
fn slurm_commands(plan: &SweepPlan, todo: &[&SweepRun], out_abs: &Path) -> String {
    let lines: Vec<String> = todo
        .iter()
        .map(|r| {
            let dir = out_abs.join("runs").join(&r.name);
            let args: Vec<String> = train_command(plan, r, &dir)
                .iter()
                .map(|a| shell_quote(a))
                .collect();
            format!("\"$ARVAE_TRAINER\" {}", args.join(" "))
        })
        .collect();
    lines.join("\n") + "\n"
}

/// The job-array script of one generation: task i runs line i + 1 of `commands`.
fn slurm_script(
    n: usize,
    jobs: usize,
    script: &Path,
    commands: &Path,
    out_abs: &Path,
    resources: &SlurmResources,
) -> Result<String> {
    let directives = resources.directives()?;
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "arvae-trainer".into());
    let log = out_abs.join("runs").join("slurm-%A_%a.log");
    Ok(format!(
        r#"#!/bin/bash
# AR-VAE sweep: {n} runs, one per array task, at most {jobs} at a time.
# Submit with:  sbatch {script}
# Each task runs line $SLURM_ARRAY_TASK_ID + 1 of {commands} (this generation's own list).
# Runs resume from their last complete epoch, so a task that was pre-empted or timed out can
# simply be submitted again; a run that another task is training is refused (its run.lock).
# GPUs: build with `cargo build --release -p arvae-trainer --features cuda`, write the sweep
# with `--gres gpu:1` and add `--device cuda` to the train flags after `--`.
#SBATCH --job-name=arvae-sweep
#SBATCH --array=0-{last}%{jobs}
{directives}
#SBATCH --output="{log}"
set -euo pipefail
export ARVAE_TRAINER="${{ARVAE_TRAINER:-{exe}}}"
export RAYON_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-{cpus}}}"
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {commands})
if [ -z "$line" ]; then
  echo "task $SLURM_ARRAY_TASK_ID: no line $((SLURM_ARRAY_TASK_ID + 1)) in {commands}" >&2
  exit 1
fi
echo "task $SLURM_ARRAY_TASK_ID: $line"
eval "$line"
"#,
        last = n - 1,
        cpus = resources.cpus,
        script = shell_quote(&script.display().to_string()),
        commands = shell_quote(&commands.display().to_string()),
        log = log.display().to_string().replace('"', "\\\""),
    ))
}

fn write_slurm(
    plan: &SweepPlan,
    todo: &[&SweepRun],
    out: &Path,
    jobs: usize,
    resources: &SlurmResources,
) -> Result<()> {
    if todo.is_empty() {
        println!("every run is finished; no Slurm script written");
        return Ok(());
    }
    let out_abs = absolute(out);
    let (n, cmd_path) = claim_generation(out)?;
    arvae_core::files::write_bytes(&cmd_path, slurm_commands(plan, todo, &out_abs))
        .with_context(|| format!("cannot write {}", cmd_path.display()))?;
    let script_path = out.join(format!("sweep-{n}.slurm"));
    let script = slurm_script(
        todo.len(),
        jobs,
        &out_abs.join(format!("sweep-{n}.slurm")),
        &absolute(&cmd_path),
        &out_abs,
        resources,
    )?;
    arvae_core::files::write_bytes(&script_path, script)
        .with_context(|| format!("cannot write {}", script_path.display()))?;
    println!(
        "wrote {} ({} array tasks, {jobs} at a time) and {}; submit with `sbatch {}`, then `arvae-trainer sweep plot {}`",
        script_path.display(),
        todo.len(),
        cmd_path.display(),
        script_path.display(),
        out.display()
    );
    Ok(())
}

/// What `sweep plot` found: per setting means and the baseline.
pub struct SweepSummary {
    /// AR-VAE settings with at least one evaluated run.
    pub points: Vec<TradeoffPoint>,
    /// β-VAE mean over seeds.
    pub baseline: Option<TradeoffPoint>,
    /// Runs without an evaluation yet.
    pub missing: Vec<String>,
    /// The figure (PNG).
    pub figure: PathBuf,
}

/// `sweep plot`: Fig. 8 and summary tables.
pub fn plot(a: &SweepPlotArgs) -> Result<SweepSummary> {
    let plan = SweepPlan::load(&a.sweep)?;
    let out = a.out.clone().unwrap_or_else(|| a.sweep.clone());
    type Key = (u64, u64);
    let mut groups: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let mut base: Vec<(f64, f64)> = Vec::new();
    let mut missing = Vec::new();
    for r in &plan.runs {
        let dir = a.sweep.join("runs").join(&r.name);
        let rec = match RunRecord::load(&dir) {
            Ok(rec) => rec,
            Err(_) => {
                missing.push(r.name.clone());
                continue;
            }
        };
        let Some(e) = rec.evaluation else {
            missing.push(r.name.clone());
            continue;
        };
        let v = (e.metrics.interpretability_mean, e.reconstruction_accuracy);
        if r.model == "beta-vae" {
            base.push(v);
        } else {
            groups
                .entry((r.gamma.to_bits(), r.delta.to_bits()))
                .or_default()
                .push(v);
        }
    }
    if groups.is_empty() && base.is_empty() {
        bail!(
            "{}: no run has an evaluation yet ({} runs planned); run the sweep first",
            a.sweep.display(),
            plan.runs.len()
        );
    }
    if !missing.is_empty() {
        eprintln!(
            "note: {} of {} runs have no evaluation yet and are left out: {}",
            missing.len(),
            plan.runs.len(),
            missing.join(", ")
        );
    }
    let mean = |v: &[(f64, f64)], gamma: f64, delta: f64| TradeoffPoint {
        gamma,
        delta,
        interpretability: v.iter().map(|x| x.0).sum::<f64>() / v.len() as f64,
        reconstruction: v.iter().map(|x| x.1).sum::<f64>() / v.len() as f64,
        seeds: v.len(),
    };
    let mut points: Vec<TradeoffPoint> = groups
        .iter()
        .map(|(&(g, d), v)| mean(v, f64::from_bits(g), f64::from_bits(d)))
        .collect();
    points.sort_by(|x, y| {
        x.gamma
            .total_cmp(&y.gamma)
            .then(x.delta.total_cmp(&y.delta))
    });
    let baseline = (!base.is_empty()).then(|| mean(&base, 0.0, 0.0));
    let fig = TradeoffFigure {
        title: format!(
            "AR-VAE: reconstruction vs Interpretability (mean over seeds; {} epochs per run)",
            plan.epochs
        ),
        points: points.clone(),
        baseline: baseline.clone(),
    };
    let [png, svg] = save(&fig, &out.join("tradeoff"))?;
    let mut csv =
        String::from("model,gamma,delta,seeds,interpretability,reconstruction_accuracy\n");
    for p in &points {
        csv += &format!(
            "ar-vae,{},{},{},{:.6},{:.6}\n",
            p.gamma, p.delta, p.seeds, p.interpretability, p.reconstruction
        );
    }
    if let Some(b) = &baseline {
        csv += &format!(
            "beta-vae,0,,{},{:.6},{:.6}\n",
            b.seeds, b.interpretability, b.reconstruction
        );
    }
    let csv_path = out.join("summary.csv");
    arvae_core::files::write_bytes(&csv_path, csv)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let json_path = out.join("summary.json");
    arvae_core::files::write_bytes(
        &json_path,
        serde_json::to_string_pretty(&serde_json::json!({
            "points": points, "baseline": baseline, "missing": missing
        }))?,
    )
    .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!(
        "wrote {}, {}, {} and {} ({} settings, {} β-VAE runs)",
        png.display(),
        svg.display(),
        csv_path.display(),
        json_path.display(),
        points.len(),
        base.len()
    );
    Ok(SweepSummary {
        points,
        baseline,
        missing,
        figure: png,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_syntax() {
        assert_eq!(parse_seeds("0..3").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_seeds("1..=2").unwrap(), vec![1, 2]);
        assert_eq!(parse_seeds("4,1,4").unwrap(), vec![4, 1]);
        assert_eq!(parse_seeds("7").unwrap(), vec![7]);
        assert!(parse_seeds("3..3")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(parse_seeds("a..3")
            .unwrap_err()
            .to_string()
            .contains("--seeds"));
        assert!(parse_seeds("").is_err());
    }

    #[test]
    fn grid_and_pass_through() {
        assert_eq!(
            parse_grid("gamma", &["1".into(), "0.1".into(), "1".into()]).unwrap(),
            vec![1.0, 0.1]
        );
        assert!(parse_grid("gamma", &["".into()])
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(parse_grid("delta", &["-1".into()]).is_err());
        assert_eq!(
            requested_epochs(&["--epochs".into(), "3".into()]).unwrap(),
            3
        );
        assert_eq!(requested_epochs(&["--epochs=2".into()]).unwrap(), 2);
        assert_eq!(requested_epochs(&[]).unwrap(), 30);
        assert!(check_train_args(&["--gamma".into(), "1".into()]).is_err());
        assert!(check_train_args(&["--batch".into(), "64".into()]).is_ok());
        let runs = plan_runs(&[1.0, 10.0], &[0.1], &[0, 1], true);
        assert_eq!(runs.len(), 6);
        assert_eq!(runs[0].name, "g1_d0.1_s0");
        assert_eq!(runs[2].name, "beta-vae_s0");
    }
}
