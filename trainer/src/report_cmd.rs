//! `arvae-trainer report`: one static HTML page for a set of runs and sweeps, readable offline
//! (no scripts, stylesheets or fonts from elsewhere): settings and metric tables, box plots over
//! the runs (Figs. 3, 5), sweep trade-offs (Fig. 8), and per run the latent traversals with their
//! MIDI files (Fig. 11) and attribute surfaces (Figs. 12, 13). Everything it links is written
//! inside the output folder, so the folder can be zipped or served as it is.

use crate::evaluation::Evaluation;
use crate::figures::surface::{self, SurfaceArgs};
use crate::figures::traverse;
use crate::figures::TraverseArgs;
use crate::runs::RunRecord;
use crate::sweep_cmd::{self, SweepPlan, SweepPlotArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ReportArgs {
    /// Run folders (with model.safetensors), checkpoint files, or sweep folders (with sweep.json).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder: index.html and everything it shows.
    #[arg(long)]
    out: PathBuf,
    /// Dataset for the traversals and surfaces (without it the page has tables and box plots only).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Test measures traversed per run.
    #[arg(long, default_value_t = 4)]
    traverse_count: usize,
    /// Grid points per axis of the surfaces.
    #[arg(long, default_value_t = 31)]
    surface_grid: usize,
    /// Page title.
    #[arg(long, default_value = "AR-VAE report")]
    title: String,
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A folder name made of safe characters, unique among `taken`.
fn slug(name: &str, taken: &mut Vec<String>) -> String {
    let base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = if base.is_empty() || base.starts_with('.') {
        format!("run{base}")
    } else {
        base
    };
    let mut s = base.clone();
    let mut k = 2;
    while taken.contains(&s) {
        s = format!("{base}-{k}");
        k += 1;
    }
    taken.push(s.clone());
    s
}

/// Path of `p` relative to `root` with forward slashes, for links.
fn rel(p: &Path, root: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// A figure block: the PNG, linked to its SVG, with a caption.
fn figure(html: &mut String, png: &str, caption: &str) {
    let svg = png.strip_suffix(".png").map(|s| format!("{s}.svg"));
    let _ = write!(
        html,
        "<figure><a href=\"{}\"><img src=\"{}\" alt=\"{}\"></a><figcaption>{}",
        esc(svg.as_deref().unwrap_or(png)),
        esc(png),
        esc(caption),
        esc(caption)
    );
    if let Some(svg) = svg {
        let _ = write!(
            html,
            " <span class=\"files\">[<a href=\"{}\">PNG</a> · <a href=\"{}\">SVG</a>]</span>",
            esc(png),
            esc(&svg)
        );
    }
    html.push_str("</figcaption></figure>\n");
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.8em}h2{margin-top:2em;border-bottom:2px solid #ddd;padding-bottom:.2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafafa}
figure{margin:1.2em 0}img{max-width:100%;border:1px solid #e4e4e4}figcaption{font-size:.9em;color:#555}
.files{white-space:nowrap}.note{color:#666;font-size:.92em}code{background:#f3f3f3;padding:0 .25em}
@media print{img{max-width:100%;page-break-inside:avoid}h2{page-break-before:auto}}";

fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".into()
    }
}

fn metrics_row(e: &Evaluation) -> String {
    let m = &e.metrics;
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td>",
        f3(m.interpretability_mean),
        f3(m.mig_mean),
        f3(m.modularity),
        f3(m.sap_mean),
        f3(m.scc_mean),
        100.0 * e.reconstruction_accuracy
    )
}

struct Run {
    slug: String,
    rec: RunRecord,
}

/// The `report` command.
pub fn report(a: ReportArgs) -> Result<()> {
    let (runs, sweeps) = inputs(&a)?;
    if let Some(d) = &a.data {
        if !d.is_file() {
            bail!("--data {}: no such file", d.display());
        }
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let out = &a.out;
    let steps = 1 + sweeps.len() + if a.data.is_some() { 2 * runs.len() } else { 0 };
    let bar = ProgressBar::new(steps as u64)
        .with_style(crate::progress::style())
        .with_message("report");

    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&a.title),
        esc(&a.title)
    );
    let _ = writeln!(
        html,
        "<p class=\"note\">Written by <code>arvae-trainer report</code> {}. Metrics as in Pati &amp; Lerch (2020): on the test split with sampled z; higher is better. Click a figure for its SVG.</p>",
        env!("CARGO_PKG_VERSION")
    );

    if !runs.is_empty() {
        run_tables(&mut html, &runs);
    }
    compare_figures(&mut html, &runs, out)?;
    bar.inc(1);
    for (s, dir) in &sweeps {
        sweep_section(&mut html, s, dir, out)?;
        bar.inc(1);
    }
    if let Some(data) = &a.data {
        for r in &runs {
            run_figures(&mut html, r, data, &a, &bar)?;
        }
    } else if !runs.is_empty() {
        html.push_str("<p class=\"note\">Traversals and attribute surfaces need the dataset: run <code>arvae-trainer report … --data FILE</code>.</p>\n");
    }
    html.push_str("</body></html>\n");
    bar.finish_and_clear();
    let index = out.join("index.html");
    arvae_core::files::write_bytes(&index, html)
        .with_context(|| format!("cannot write {}", index.display()))?;
    println!("wrote {}", index.display());
    Ok(())
}

/// A sweep folder and its slug.
type Sweep = (String, PathBuf);

/// Sorts the inputs into runs (folders or checkpoints) and sweep folders, each with a unique
/// slug; names the input that is neither.
fn inputs(a: &ReportArgs) -> Result<(Vec<Run>, Vec<Sweep>)> {
    let mut runs: Vec<Run> = Vec::new();
    let mut sweeps: Vec<Sweep> = Vec::new();
    let mut taken = Vec::new();
    for p in &a.inputs {
        if !p.exists() {
            bail!(
                "{}: no such run folder, checkpoint or sweep folder",
                p.display()
            );
        }
        if p.is_dir() && p.join("sweep.json").is_file() {
            let name = p
                .file_name()
                .map_or("sweep".into(), |n| n.to_string_lossy().into_owned());
            sweeps.push((slug(&name, &mut taken), p.clone()));
            continue;
        }
        if p.is_dir() && !p.join("model.safetensors").is_file() {
            bail!(
                "{}: neither a run folder (no model.safetensors) nor a sweep folder (no sweep.json)",
                p.display()
            );
        }
        let rec = RunRecord::load(p)?;
        let name = if p.is_dir() {
            p.file_name().map(|n| n.to_string_lossy().into_owned())
        } else {
            rec.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        }
        .unwrap_or_else(|| "run".into());
        runs.push(Run {
            slug: slug(&name, &mut taken),
            rec,
        });
    }
    Ok((runs, sweeps))
}

/// The runs table and the per-attribute table.
fn run_tables(html: &mut String, runs: &[Run]) {
    html.push_str("<h2>Runs</h2>\n<table><tr><th class=\"l\">run</th><th class=\"l\">model</th><th>β</th><th>γ</th><th>δ</th><th>seed</th><th>epochs</th><th class=\"l\">dataset</th><th>Interpretability</th><th>MIG</th><th>Modularity</th><th>SAP</th><th>SCC</th><th>recon. acc.</th></tr>\n");
    for r in runs {
        let c = r.rec.config.as_ref();
        let num = |f: fn(&arvae_core::training::TrainConfig) -> String| c.map_or("–".into(), f);
        let _ = write!(
            html,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&r.slug),
            r.rec.model_name(),
            num(|c| c.beta.to_string()),
            num(|c| c.gamma.to_string()),
            num(|c| c.delta.to_string()),
            num(|c| c.seed.to_string()),
            r.rec.epochs_done
        );
        match &r.rec.evaluation {
            Some(e) => {
                let _ = writeln!(
                    html,
                    "<td class=\"l\">{} ({})</td>{}</tr>",
                    esc(&e.dataset),
                    esc(&e.split),
                    metrics_row(e)
                );
            }
            None => {
                let _ = writeln!(html, "<td class=\"l\">–</td><td colspan=\"6\" class=\"l\">no stored evaluation (run <code>arvae-trainer eval</code>)</td></tr>");
            }
        }
    }
    html.push_str("</table>\n");

    // Per attribute.
    html.push_str("<h3>Per attribute</h3>\n<p class=\"note\">dim: the latent dimension with the highest mutual information (Interpretability's choice); reg.: the regularized dimension.</p>\n<table><tr><th class=\"l\">run</th><th class=\"l\">attribute</th><th>reg.</th><th>dim</th><th>Interpretability</th><th>MIG</th><th>SAP</th><th>SCC</th></tr>\n");
    for r in runs {
        if let Some(e) = &r.rec.evaluation {
            for at in &e.metrics.attributes {
                let _ = writeln!(
                    html,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&r.slug),
                    esc(&at.name),
                    at.regularized_dim.map_or("–".into(), |d| d.to_string()),
                    at.interpretability_dim,
                    f3(at.interpretability),
                    f3(at.mig),
                    f3(at.sap),
                    f3(at.scc)
                );
            }
        }
    }
    html.push_str("</table>\n");
}

/// Box plots of AR-VAE against β-VAE over the evaluated runs (one dataset only).
fn compare_figures(html: &mut String, runs: &[Run], out: &Path) -> Result<()> {
    let evaluated: Vec<(String, &Evaluation)> = runs
        .iter()
        .filter_map(|r| {
            r.rec
                .evaluation
                .as_ref()
                .map(|e| (r.rec.model_name().to_string(), e))
        })
        .collect();
    if !evaluated.is_empty() {
        let hashes: std::collections::BTreeSet<&str> = evaluated
            .iter()
            .map(|e| e.1.dataset_hash.as_str())
            .collect();
        html.push_str("<h2>AR-VAE against β-VAE across seeds</h2>\n");
        if hashes.len() > 1 {
            html.push_str("<p class=\"note\">The runs were evaluated on different datasets, so no box plots are drawn; compare runs of one dataset.</p>\n");
        } else {
            let dir = out.join("compare");
            let pngs = crate::figures::compare::write(&evaluated, &evaluated[0].1.dataset, &dir)?;
            figure(html, &rel(&pngs[0], out), "Disentanglement metrics per model (paper Fig. 3); box: quartiles, whiskers: 1.5 IQR, dots: seeds.");
            figure(
                html,
                &rel(&pngs[1], out),
                "Reconstruction accuracy per model (paper Fig. 5).",
            );
        }
    }
    Ok(())
}

/// One sweep's section: its Fig. 8 plot and table, or why there is none.
fn sweep_section(html: &mut String, s: &str, dir: &Path, out: &Path) -> Result<()> {
    let plan = SweepPlan::load(dir)?;
    let _ = writeln!(html, "<h2>Sweep {}</h2>\n<p class=\"note\">{} runs on <code>{}</code>, {} epochs each, train flags <code>{}</code>.</p>", esc(s), plan.runs.len(), esc(&plan.data), plan.epochs, esc(&plan.train_args.join(" ")));
    let target = out.join("sweeps").join(s);
    match sweep_cmd::plot(&SweepPlotArgs {
        sweep: dir.to_path_buf(),
        out: Some(target.clone()),
    }) {
        Ok(sum) => {
            figure(html, &rel(&sum.figure, out), "Reconstruction accuracy against Interpretability per (γ, δ), mean over seeds (paper Fig. 8); ×: β-VAE.");
            html.push_str("<table><tr><th class=\"l\">model</th><th>γ</th><th>δ</th><th>seeds</th><th>Interpretability</th><th>recon. acc.</th></tr>\n");
            for p in sum.points.iter().chain(&sum.baseline) {
                let is_base = sum.baseline.as_ref().is_some_and(|b| std::ptr::eq(b, p));
                let _ = writeln!(
                    html,
                    "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td></tr>",
                    if is_base { "β-VAE" } else { "AR-VAE" },
                    if is_base { "0".into() } else { p.gamma.to_string() },
                    if is_base { "–".into() } else { p.delta.to_string() },
                    p.seeds,
                    f3(p.interpretability),
                    100.0 * p.reconstruction
                );
            }
            html.push_str("</table>\n");
            let _ = writeln!(
                html,
                "<p><a href=\"{}\">summary.csv</a></p>",
                esc(&rel(&target.join("summary.csv"), out))
            );
            if !sum.missing.is_empty() {
                let _ = writeln!(
                    html,
                    "<p class=\"note\">Not finished yet: {}.</p>",
                    esc(&sum.missing.join(", "))
                );
            }
        }
        Err(e) => {
            let _ = writeln!(
                html,
                "<p class=\"note\">No figure: {}</p>",
                esc(&format!("{e:#}"))
            );
        }
    }
    Ok(())
}

/// One run's traversals (Fig. 11) and attribute surfaces (Figs. 12, 13).
fn run_figures(
    html: &mut String,
    r: &Run,
    data: &Path,
    a: &ReportArgs,
    bar: &ProgressBar,
) -> Result<()> {
    let out = &a.out;
    let _ = writeln!(html, "<h2>{}: {}</h2>", esc(&r.slug), r.rec.model_name());
    let dir = out.join("runs").join(&r.slug);
    bar.set_message(format!("{} traverse", r.slug));
    let t = traverse::run(
        &TraverseArgs {
            checkpoint: r.rec.checkpoint.clone(),
            data: data.to_path_buf(),
            count: a.traverse_count,
            out: dir.join("traverse"),
            steps: 9,
            range: 4.0,
            seed: 0,
            bpm: 120.0,
        },
        true,
    )?;
    bar.inc(1);
    let tdir = dir.join("traverse");
    html.push_str("<h3>Traversals (paper Fig. 11)</h3>\n");
    figure(html, &rel(&tdir.join(&t.summary), out), "Attribute of the decoded bars along each attribute's dimension, over the traversed test measures.");
    html.push_str("<table><tr><th class=\"l\">measure</th>");
    for axis in &t.axes {
        let _ = write!(
            html,
            "<th class=\"l\">{} (z{}, {})</th>",
            esc(axis.attribute.name()),
            axis.dim,
            axis.how
        );
    }
    html.push_str("</tr>\n");
    for m in &t.measures {
        let _ = write!(
            html,
            "<tr><td class=\"l\"><a href=\"#{}-m{}\">test measure {}</a></td>",
            esc(&r.slug),
            m.dataset_index,
            m.dataset_index
        );
        for row in &m.rows {
            let _ = write!(
                html,
                "<td class=\"l\"><a href=\"{}\">MIDI</a></td>",
                esc(&rel(&tdir.join(&row.midi), out))
            );
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    for m in &t.measures {
        let _ = writeln!(
            html,
            "<div id=\"{}-m{}\"></div>",
            esc(&r.slug),
            m.dataset_index
        );
        figure(html, &rel(&tdir.join(&m.figure), out), &format!("Test measure {} decoded at 9 values from −4 to +4 of each attribute's dimension; right: the attribute of each bar.", m.dataset_index));
    }
    bar.set_message(format!("{} surface", r.slug));
    let s = surface::run(
        &SurfaceArgs {
            checkpoint: r.rec.checkpoint.clone(),
            data: data.to_path_buf(),
            out: dir.join("surface"),
            grid: a.surface_grid,
            range: 5.0,
            other_dim: None,
            seed: 0,
        },
        true,
    )?;
    bar.inc(1);
    html.push_str("<h3>Attribute surfaces (paper Figs. 12, 13)</h3>\n");
    figure(html, &rel(&dir.join("surface").join(&s.combined), out), "Attribute of decoded bars over the plane of the attribute's dimension (x) and a non-regularized one (y); the other dimensions drawn once from the prior.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_and_unique() {
        let mut t = Vec::new();
        assert_eq!(slug("run a", &mut t), "run_a");
        assert_eq!(slug("run a", &mut t), "run_a-2");
        assert_eq!(slug("..", &mut t), "run..");
        assert_eq!(esc("<a&\">"), "&lt;a&amp;&quot;&gt;");
    }
}
