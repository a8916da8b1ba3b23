//! `compare --plot`: box plots per metric across seeds, AR-VAE against β-VAE (paper Figs. 3, 5).

use super::charts::{BoxPanel, BoxPlotFigure};
use super::save;
use crate::evaluation::Evaluation;
use anyhow::Result;
use std::path::{Path, PathBuf};

type Metric = (&'static str, fn(&Evaluation) -> f64);

/// The disentanglement metrics of Fig. 3, in the paper's order.
pub const DISENTANGLEMENT: [Metric; 5] = [
    ("Interpretability", |e| e.metrics.interpretability_mean),
    ("MIG", |e| e.metrics.mig_mean),
    ("Modularity", |e| e.metrics.modularity),
    ("SAP", |e| e.metrics.sap_mean),
    ("SCC", |e| e.metrics.scc_mean),
];

/// Writes `metrics_boxplot.{png,svg}` (Fig. 3) and `reconstruction_boxplot.{png,svg}` (Fig. 5)
/// into `out` from `(model name, evaluation)` rows; returns the PNG paths.
pub fn write(rows: &[(String, &Evaluation)], dataset: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let mut models: Vec<String> = Vec::new();
    for (m, _) in rows {
        if !models.contains(m) {
            models.push(m.clone());
        }
    }
    // AR-VAE first, as the paper.
    models.sort_by_key(|m| m != "AR-VAE");
    let groups = |f: fn(&Evaluation) -> f64| -> Vec<(String, Vec<f64>)> {
        models
            .iter()
            .map(|m| {
                (
                    m.clone(),
                    rows.iter().filter(|r| &r.0 == m).map(|r| f(r.1)).collect(),
                )
            })
            .collect()
    };
    let n = rows.len();
    let fig3 = BoxPlotFigure {
        title: format!(
            "Disentanglement on {dataset} ({n} runs; dots: one seed each; higher is better)"
        ),
        panels: DISENTANGLEMENT
            .iter()
            .map(|(name, f)| BoxPanel {
                title: name.to_string(),
                y_desc: "score (0 to 1)".into(),
                groups: groups(*f),
            })
            .collect(),
    };
    let fig5 = BoxPlotFigure {
        title: format!("Reconstruction on {dataset} ({n} runs)"),
        panels: vec![BoxPanel {
            title: "Reconstruction accuracy".into(),
            y_desc: "greedy token accuracy (%)".into(),
            groups: groups(|e| 100.0 * e.reconstruction_accuracy),
        }],
    };
    let [a, _] = save(&fig3, &out.join("metrics_boxplot"))?;
    let [b, _] = save(&fig5, &out.join("reconstruction_boxplot"))?;
    Ok(vec![a, b])
}
