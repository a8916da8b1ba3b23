//! `classify-train` and `eval --content`: content preservation on image datasets (paper §5.3,
//! Fig. 7). A small CNN learns the dataset's class label (the digit of Morpho-MNIST, the shape
//! of dSprites); `eval --content` asks it which class the VAE's reconstructions and its
//! traversals along every regularized dimension show.

use anyhow::{bail, Context, Result};
use arvae_core::checkpoint::{Checkpoint, DatasetInfo};
use arvae_core::data::images::ImageDataset;
use arvae_core::data::Split;
use arvae_core::family::Family;
use arvae_core::image_training::{content_preservation, ContentPreservation};
use arvae_core::model::classifier::{train_classifier, ClassifierTrainConfig, ImageClassifier};
use arvae_core::model::conv_vae::ConvVae;
use candle_core::Device;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ClassifyTrainArgs {
    /// Image dataset (from `data build --collection morpho-mnist` or `dsprites`); the classes
    /// are its labels (digits, shapes).
    #[arg(long)]
    data: PathBuf,
    /// Where to write the classifier checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Epochs over the training split.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of initialisation, shuffling, shifts and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shift each training image by up to this many pixels (augmentation).
    #[arg(long, default_value_t = 2)]
    max_shift: usize,
    /// Train on at most this many images per epoch.
    #[arg(long)]
    max_images: Option<usize>,
    /// Replace an existing file at --out.
    #[arg(long)]
    force: bool,
}

fn load_images(path: &Path) -> Result<ImageDataset> {
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    if Family::of_dataset(path) != Family::Images {
        bail!(
            "{} is not an image dataset (make one with `data build --collection morpho-mnist`)",
            path.display()
        );
    }
    Ok(ImageDataset::load(path)?)
}

pub fn classify_train(a: ClassifyTrainArgs) -> Result<()> {
    crate::cli_paths::refuse_inputs_as_outputs(&[("--out", Some(&a.out))], &[Some(&a.data)])?;
    if a.out.exists() && !a.force {
        bail!("{} exists; pass --force to replace it", a.out.display());
    }
    if a.epochs == 0 || a.batch == 0 {
        bail!("--epochs and --batch must be at least 1");
    }
    let ds = load_images(&a.data)?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let cfg = ClassifierTrainConfig {
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        max_shift: a.max_shift,
        max_train_images: a.max_images,
    };
    println!(
        "training a {}-class classifier ({}) on {} training images of {}",
        ds.header.label_classes.len(),
        ds.header.label_name,
        ds.count(Split::Train),
        a.data.display()
    );
    let bar = std::cell::RefCell::new(None::<indicatif::ProgressBar>);
    let model = train_classifier(
        &ds,
        &cfg,
        &Device::Cpu,
        &mut |done, total, loss, ips| {
            let mut b = bar.borrow_mut();
            let b = b.get_or_insert_with(|| {
                indicatif::ProgressBar::new(total as u64).with_style(
                    indicatif::ProgressStyle::with_template(
                        "[{bar:25}] {pos}/{len} {msg} eta {eta}",
                    )
                    .expect("template")
                    .progress_chars("=> "),
                )
            });
            b.set_position(done as u64);
            b.set_message(format!("loss {loss:.4} | {ips:.0} images/s"));
        },
        &mut |e| {
            if let Some(b) = bar.borrow_mut().take() {
                b.finish_and_clear();
            }
            println!(
                "epoch {:>2}  loss {:.4}  train acc {:.2}%  val acc {:.2}%  {:.0} images/s",
                e.epoch,
                e.train_loss,
                100.0 * e.train_accuracy,
                100.0 * e.val_accuracy,
                e.images_per_s
            );
        },
    )?;
    let test = ds.indices(Split::Test);
    let test_acc = model.accuracy(&ds, &test)?;
    println!(
        "test accuracy {:.2}% on {} images",
        100.0 * test_acc,
        test.len()
    );
    let ck = model.to_checkpoint(
        DatasetInfo {
            id: a.data.display().to_string(),
            collection: ds.header.collection.clone(),
            hash: ds.header.content_hash.clone(),
        },
        serde_json::to_value(&cfg)?,
        Some(serde_json::json!({ "test_accuracy": test_acc, "test_images": test.len() })),
    )?;
    ck.save_atomic(&a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

/// Content preservation of an image VAE with the classifier at `path` (see
/// [`content_preservation`]); prints a table.
#[allow(clippy::too_many_arguments)]
pub fn content(
    ck: &Checkpoint,
    vae: &ConvVae,
    ds: &ImageDataset,
    path: &Path,
    split: Split,
    max: usize,
    steps: usize,
    range: f32,
) -> Result<ContentPreservation> {
    let cls_ck = Checkpoint::load(path)?;
    let cls = ImageClassifier::from_checkpoint(&cls_ck, &Device::Cpu)
        .with_context(|| format!("{}: not usable as a classifier", path.display()))?;
    if cls_ck.meta.dataset.collection != ds.header.collection {
        bail!(
            "{} classifies {} images, the dataset is {}",
            path.display(),
            cls_ck.meta.dataset.collection,
            ds.header.collection
        );
    }
    if cls.config().classes != ds.header.label_classes.len() {
        bail!(
            "{} has {} classes, the dataset {}",
            path.display(),
            cls.config().classes,
            ds.header.label_classes.len()
        );
    }
    let idx = ds.sample(split, max, 0);
    // The β-VAE's axes come from the MI on a prefix of these: shuffled, not in file order.
    let mut test: Vec<usize> = ds.indices(Split::Test);
    {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        test.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    }
    let axes: Vec<(String, usize)> = crate::figures::image_traverse::axes_for(ck, vae, ds, &test)?
        .into_iter()
        .map(|(name, dim, _)| (name, dim))
        .collect();
    let bar = indicatif::ProgressBar::new(idx.len() as u64)
        .with_style(crate::progress::style())
        .with_message("content");
    let c = content_preservation(vae, &cls, ds, &idx, &axes, steps, range, &mut |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    print_content(&c, &ds.header.label_name);
    Ok(c)
}

/// The content-preservation table.
pub fn print_content(c: &ContentPreservation, label: &str) {
    println!(
        "content preservation ({label} classifier, {} images, {} points in [{:.0}, {:.0}] per axis):",
        c.images,
        c.z_values.len(),
        c.z_values.first().copied().unwrap_or(0.0),
        c.z_values.last().copied().unwrap_or(0.0)
    );
    println!("  inputs           {:>6.2}%", 100.0 * c.inputs);
    println!("  reconstructions  {:>6.2}%", 100.0 * c.reconstructions);
    for a in &c.axes {
        println!(
            "  along {:<12} (z{:<2}) {:>6.2}%   per point: {}",
            a.attribute,
            a.dim,
            100.0 * a.accuracy,
            a.per_step
                .iter()
                .map(|x| format!("{:.0}", 100.0 * x))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!("  traversals (mean) {:>6.2}%", 100.0 * c.traversals);
}
