//! End-to-end tests of the figure, sweep and report commands on a tiny real sweep: files
//! written, PNGs of the expected pixel size, SVGs well formed, report links resolving, sweep
//! skip and resume, Slurm files, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;
use common::{fails, ok, png_size, s};

/// Checks that an SVG is one balanced `<svg>` document with drawn content.
fn check_svg(p: &Path) {
    let t = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let t = t.trim();
    assert!(
        t.starts_with("<svg") && t.ends_with("</svg>"),
        "{} is not an SVG document",
        p.display()
    );
    assert_eq!(t.matches("<svg").count(), 1, "{}", p.display());
    assert!(
        t.contains("<text") && t.contains("<rect"),
        "{}",
        p.display()
    );
    // Every element is closed: opening tags = closing tags + self-closed ones.
    let opens = t.matches('<').count() - t.matches("</").count();
    let closes = t.matches("</").count() + t.matches("/>").count();
    assert_eq!(opens, closes, "{} has unbalanced tags", p.display());
}

/// Checks a figure pair `stem.png` / `stem.svg`.
fn check_figure(stem: &Path, size: (u32, u32)) {
    assert_eq!(
        png_size(&stem.with_extension("png")),
        size,
        "{}",
        stem.display()
    );
    check_svg(&stem.with_extension("svg"));
}

/// A tiny dataset and a sweep of two AR-VAE runs and a β-VAE (1 epoch), shared by the tests.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    sweep: PathBuf,
}

const TRAIN: [&str; 10] = [
    "--epochs",
    "1",
    "--batch",
    "32",
    "--max-measures",
    "64",
    "--latent",
    "8",
    "--eval-measures",
    "150",
];

fn sweep_args<'a>(f: &'a Fixture, extra: &[&'a str], train: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "sweep",
        "--data",
        s(&f.data),
        "--gamma",
        "1,10",
        "--delta",
        "1",
        "--seeds",
        "0..1",
        "--jobs",
        "2",
        "--out",
        s(&f.sweep),
    ];
    v.extend_from_slice(extra);
    v.push("--");
    v.extend_from_slice(train);
    v
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let data = root.join("synth.arvae");
        ok(&[
            "data",
            "build",
            "--collection",
            "synthetic",
            "--pieces",
            "100",
            "--out",
            s(&data),
        ]);
        let f = Fixture {
            _dir: dir,
            sweep: root.join("sweep"),
            root,
            data,
        };
        let text = ok(&sweep_args(&f, &[], &TRAIN));
        assert!(
            text.contains("0 finished (skipped), 0 to resume, 3 new"),
            "{text}"
        );
        f
    })
}

fn run_dir(f: &Fixture, name: &str) -> PathBuf {
    f.sweep.join("runs").join(name)
}

#[test]
fn sweep_skips_finished_runs_resumes_and_plots() {
    let f = fixture();
    for r in ["g1_d1_s0", "g10_d1_s0", "beta-vae_s0"] {
        assert!(run_dir(f, r).join("model.safetensors").is_file(), "{r}");
        assert!(run_dir(f, r).join("train.log").is_file(), "{r}");
    }
    // Same command again: nothing runs.
    let text = ok(&sweep_args(f, &[], &TRAIN));
    assert!(
        text.contains("3 finished (skipped)") && text.contains("nothing to do"),
        "{text}"
    );

    // Slurm: a script and a command file, nothing trained here.
    let slurm = f.root.join("slurm");
    let text = ok(&[
        "sweep",
        "--data",
        s(&f.data),
        "--gamma",
        "1,10",
        "--delta",
        "1",
        "--seeds",
        "0..=1",
        "--no-baseline",
        "--jobs",
        "2",
        "--slurm",
        "--out",
        s(&slurm),
        "--",
        "--epochs",
        "2",
    ]);
    assert!(
        text.contains("0 finished (skipped), 0 to resume, 4 new"),
        "{text}"
    );
    let script = std::fs::read_to_string(slurm.join("sweep-1.slurm")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2"), "{script}");
    let cmds = std::fs::read_to_string(slurm.join("sweep-1.commands")).unwrap();
    assert_eq!(cmds.lines().count(), 4, "{cmds}");
    assert!(cmds
        .lines()
        .all(|l| l.contains(" train ") && l.contains("--resume") && l.contains("--epochs 2")));
    assert!(!slurm.join("runs").join("g1_d1_s0").exists());

    // A run of 1 epoch, then the same sweep with 2 epochs resumes it from epoch 1.
    let resume = f.root.join("resume");
    let one = |epochs: &'static str| {
        ok(&[
            "sweep",
            "--data",
            s(&f.data),
            "--gamma",
            "1",
            "--delta",
            "1",
            "--seeds",
            "0",
            "--no-baseline",
            "--out",
            s(&resume),
            "--",
            "--epochs",
            epochs,
            "--batch",
            "32",
            "--max-measures",
            "64",
            "--latent",
            "8",
            "--eval-measures",
            "150",
        ])
    };
    assert!(one("1").contains("0 to resume, 1 new"));
    let text = one("2");
    assert!(
        text.contains("0 finished (skipped), 1 to resume, 0 new"),
        "{text}"
    );
    let run = resume.join("runs").join("g1_d1_s0");
    let log = std::fs::read_to_string(run.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "header + 2 epochs:\n{log}");
    let train_log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert_eq!(train_log.matches("epoch   1 ").count(), 1, "{train_log}");
    assert_eq!(train_log.matches("epoch   2 ").count(), 1, "{train_log}");

    // Fig. 8 from a separate plan over the same runs folder.
    let text = ok(&[
        "sweep",
        "plot",
        s(&f.sweep),
        "--out",
        s(&f.root.join("plot")),
    ]);
    assert!(text.contains("tradeoff.png"), "{text}");
    check_figure(&f.root.join("plot").join("tradeoff"), (1200, 820));
    let csv = std::fs::read_to_string(f.root.join("plot").join("summary.csv")).unwrap();
    assert!(csv.starts_with("model,gamma,delta"), "{csv}");
}

#[test]
fn traverse_and_surface_write_figures_and_midi() {
    let f = fixture();
    let ck = run_dir(f, "g10_d1_s0").join("best.safetensors");
    let out = f.root.join("traverse");
    ok(&[
        "traverse",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&f.data),
        "--count",
        "2",
        "--steps",
        "3",
        "--out",
        s(&out),
    ]);
    for m in ["traverse_m00", "traverse_m01"] {
        check_figure(&out.join(m), (1600, 50 + 4 * 300));
        for a in [
            "rhythmic_complexity",
            "pitch_range",
            "note_density",
            "contour",
        ] {
            let mid = std::fs::read(out.join(format!("{m}_{a}.mid"))).unwrap();
            assert_eq!(&mid[..4], b"MThd");
        }
    }
    check_figure(&out.join("traverse_summary"), (1400, 60 + 2 * 520));
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("traverse.json")).unwrap()).unwrap();
    assert_eq!(index["axes"][2]["dim"], 2);
    assert_eq!(index["axes"][2]["how"], "regularized");

    // A β-VAE uses the highest-MI dimension of each attribute.
    let beta = run_dir(f, "beta-vae_s0").join("model.safetensors");
    let out_b = f.root.join("traverse_beta");
    ok(&[
        "traverse",
        "--checkpoint",
        s(&beta),
        "--data",
        s(&f.data),
        "--count",
        "1",
        "--steps",
        "2",
        "--out",
        s(&out_b),
    ]);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_b.join("traverse.json")).unwrap())
            .unwrap();
    assert_eq!(index["axes"][0]["how"], "highest MI");
    assert_eq!(index["axes"].as_array().unwrap().len(), 4);

    let out = f.root.join("surface");
    ok(&[
        "surface",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&f.data),
        "--grid",
        "4",
        "--out",
        s(&out),
    ]);
    check_figure(&out.join("surface_contour"), (820, 760));
    check_figure(&out.join("surface"), (1640, 60 + 2 * 700));
    let e = fails(&[
        "surface",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&f.data),
        "--other-dim",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(
        e.contains("--other-dim 1") && e.contains("pitch_range"),
        "{e}"
    );
    let e = fails(&[
        "surface",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&f.data),
        "--other-dim",
        "99",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--other-dim 99"), "{e}");
}

#[test]
fn compare_plot_and_offline_report() {
    let f = fixture();
    let runs: Vec<PathBuf> = ["g1_d1_s0", "g10_d1_s0", "beta-vae_s0"]
        .iter()
        .map(|r| run_dir(f, r).join("model.safetensors"))
        .collect();
    let plot = f.root.join("compare");
    let mut args = vec!["compare"];
    args.extend(runs.iter().map(|p| s(p)));
    args.extend(["--plot", s(&plot)]);
    ok(&args);
    check_figure(&plot.join("metrics_boxplot"), (1650, 560));
    check_figure(&plot.join("reconstruction_boxplot"), (700, 560));

    let report = f.root.join("report");
    let r1 = run_dir(f, "g10_d1_s0");
    let r2 = run_dir(f, "beta-vae_s0");
    let text = ok(&[
        "report",
        s(&r1),
        s(&r2),
        s(&f.sweep),
        "--data",
        s(&f.data),
        "--out",
        s(&report),
        "--traverse-count",
        "1",
        "--surface-grid",
        "3",
    ]);
    assert!(text.contains("index.html"), "{text}");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    // Offline: nothing fetched from elsewhere.
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    let mut links = 0;
    let (mut midi, mut png, mut svg) = (0, 0, 0);
    for attr in ["href=\"", "src=\""] {
        for part in html.split(attr).skip(1) {
            let link = &part[..part.find('"').unwrap()];
            if link.starts_with('#') {
                continue;
            }
            links += 1;
            let p = report.join(link);
            assert!(p.is_file(), "broken link {link}");
            if link.ends_with(".mid") {
                midi += 1;
            } else if link.ends_with(".png") {
                png += 1;
                png_size(&p);
            } else if link.ends_with(".svg") {
                svg += 1;
                check_svg(&p);
            }
        }
    }
    assert!(
        links > 20 && midi == 8 && png > 5 && svg > 5,
        "{links} {midi} {png} {svg}"
    );
    for needle in [
        "Interpretability",
        "β-VAE",
        "paper Fig. 11",
        "paper Fig. 8",
        "Fig. 3",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
}

#[test]
fn bad_inputs_name_the_file_or_flag() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let missing = dir.path().join("nope.safetensors");
    let e = fails(&[
        "traverse",
        "--checkpoint",
        s(&missing),
        "--data",
        s(&f.data),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("nope.safetensors"), "{e}");
    // A checkpoint given as the dataset.
    let ck = run_dir(f, "g1_d1_s0").join("model.safetensors");
    let e = fails(&[
        "surface",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&ck),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("model.safetensors"), "{e}");
    let e = fails(&[
        "traverse",
        "--checkpoint",
        s(&ck),
        "--data",
        s(&f.data),
        "--count",
        "0",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--count"), "{e}");

    let sweep = |extra: &[&str]| {
        let mut v = vec!["sweep", "--data", s(&f.data), "--out", s(&out)];
        v.extend_from_slice(extra);
        fails(&v)
    };
    assert!(sweep(&["--gamma", ""]).contains("--gamma"));
    assert!(sweep(&["--delta", "1,x"]).contains("--delta 'x'"));
    assert!(sweep(&["--seeds", "3..1"]).contains("--seeds '3..1'"));
    assert!(sweep(&["--seeds", "a"]).contains("--seeds 'a'"));
    assert!(sweep(&["--jobs", "0"]).contains("--jobs"));
    assert!(sweep(&["--", "--gamma", "3"]).contains("--gamma"));
    assert!(sweep(&["--", "--epochs", "0"]).contains("--epochs"));
    let e = fails(&[
        "sweep",
        "--data",
        s(&dir.path().join("none.arvae")),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("none.arvae"), "{e}");
    let e = fails(&["sweep", "plot", s(dir.path())]);
    assert!(e.contains("sweep.json"), "{e}");
    let e = fails(&["report", s(&dir.path().join("gone")), "--out", s(&out)]);
    assert!(e.contains("gone"), "{e}");
    let e = fails(&["report", s(dir.path()), "--out", s(&out)]);
    assert!(e.contains("neither a run folder"), "{e}");
    assert!(!out.join("runs").exists(), "a failed sweep started runs");
}
