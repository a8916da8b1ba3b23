//! The image dataset file: N images (grey bytes or packed bits), N x A f32 attributes, a class
//! label per image (digit or shape) and the split, behind a JSON header. Loading checks it
//! and names the file and the problem.
//!
//! Layout (little-endian): `b"ARVAEIM\x01"`, u64 header length, header JSON, then the pixels
//! (`N*H*W` bytes for `u8`, `ceil(N*H*W/8)` bytes, LSB first, for `bit`), N x A f32
//! attributes, N u8 labels, N u8 splits (0 train, 1 val, 2 test).

use crate::data::dataset::Split;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// First bytes of every image dataset file.
pub const IMAGE_MAGIC: &[u8; 8] = b"ARVAEIM\x01";
/// Version of the header layout.
pub const IMAGE_FORMAT_VERSION: u32 = 1;

/// How pixels are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// One byte per pixel, 0..=255 (MNIST).
    U8,
    /// One bit per pixel, 0 or 1 (dSprites).
    Bit,
}

/// The JSON header of an image dataset file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageHeader {
    /// [`IMAGE_FORMAT_VERSION`].
    pub format_version: u32,
    /// Always `images`.
    pub kind: String,
    /// `morpho-mnist` or `dsprites`.
    pub collection: String,
    /// Where the data came from.
    pub source: String,
    /// Digests of the source files, where known (`name: md5 or sha256`).
    #[serde(default)]
    pub source_digests: Vec<(String, String)>,
    /// sha256 over pixels, attributes, labels and splits.
    pub content_hash: String,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Pixel storage.
    pub pixel_format: PixelFormat,
    /// Attribute names, index = column = regularized latent dimension.
    pub attributes: Vec<String>,
    /// What the label is (`digit`, `shape`), and the names of its classes.
    pub label_name: String,
    /// Class names, index = label.
    pub label_classes: Vec<String>,
    /// Number of images.
    pub num_images: usize,
    /// How the data was made, free text.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A loaded (or freshly built) image dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageDataset {
    /// The header.
    pub header: ImageHeader,
    /// Pixels as stored ([`PixelFormat`]).
    pub pixels: Vec<u8>,
    /// `N x A` attributes, row-major.
    pub attributes: Vec<f32>,
    /// Class per image.
    pub labels: Vec<u8>,
    /// Split per image.
    pub split: Vec<Split>,
}

/// Why an image dataset file could not be read or written; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ImageDatasetError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> ImageDatasetError {
    ImageDatasetError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Packs 0/1 bytes into bits, LSB first.
pub fn pack_bits(bits: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b != 0 {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

impl ImageDataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn pixels_per_image(&self) -> usize {
        self.header.height * self.header.width
    }

    /// Number of attributes.
    pub fn num_attributes(&self) -> usize {
        self.header.attributes.len()
    }

    /// Attributes of image `i`.
    pub fn attributes_of(&self, i: usize) -> &[f32] {
        let a = self.num_attributes();
        &self.attributes[i * a..(i + 1) * a]
    }

    /// Writes image `i` as intensities in [0, 1] into `out` (length H*W).
    pub fn image_into(&self, i: usize, out: &mut [f32]) {
        let n = self.pixels_per_image();
        match self.header.pixel_format {
            PixelFormat::U8 => {
                for (o, &p) in out.iter_mut().zip(&self.pixels[i * n..(i + 1) * n]) {
                    *o = p as f32 / 255.0;
                }
            }
            PixelFormat::Bit => {
                for (k, o) in out.iter_mut().enumerate().take(n) {
                    let b = i * n + k;
                    *o = ((self.pixels[b / 8] >> (b % 8)) & 1) as f32;
                }
            }
        }
    }

    /// Image `i` as intensities in [0, 1].
    pub fn image(&self, i: usize) -> Vec<f32> {
        let mut v = vec![0.0; self.pixels_per_image()];
        self.image_into(i, &mut v);
        v
    }

    /// Indices of the images in `split`.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.split[i] == split)
            .collect()
    }

    /// At most `max` indices of `split`, in file order: all of them when the split is no
    /// larger, else a seeded uniform sample. (The first `max` would not do: dSprites is stored
    /// in factor order, so a prefix of its test split holds one shape and two scales.)
    pub fn sample(&self, split: Split, max: usize, seed: u64) -> Vec<usize> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut idx = self.indices(split);
        if idx.len() > max {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5A3B_1E00_0000);
            idx.shuffle(&mut rng);
            idx.truncate(max);
            idx.sort_unstable();
        }
        idx
    }

    /// Number of images in `split`.
    pub fn count(&self, split: Split) -> usize {
        self.split.iter().filter(|&&s| s == split).count()
    }

    fn data_len(&self) -> usize {
        let n = self.header.num_images * self.pixels_per_image();
        match self.header.pixel_format {
            PixelFormat::U8 => n,
            PixelFormat::Bit => n.div_ceil(8),
        }
    }

    /// sha256 over pixels, attributes, labels and splits, as hex.
    pub fn compute_content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(&self.pixels);
        for v in &self.attributes {
            h.update(v.to_le_bytes());
        }
        h.update(&self.labels);
        h.update(self.split.iter().map(|&s| s as u8).collect::<Vec<u8>>());
        format!("{:x}", h.finalize())
    }

    /// Writes the file atomically ([`crate::files::write_file`]).
    pub fn save(&self, path: &Path) -> Result<(), ImageDatasetError> {
        let header = serde_json::to_vec(&self.header).expect("header serializes");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(path, format!("cannot create folder: {e}")))?;
        }
        let write = |f: &mut std::io::BufWriter<std::fs::File>| -> std::io::Result<()> {
            f.write_all(IMAGE_MAGIC)?;
            f.write_all(&(header.len() as u64).to_le_bytes())?;
            f.write_all(&header)?;
            f.write_all(&self.pixels)?;
            for v in &self.attributes {
                f.write_all(&v.to_le_bytes())?;
            }
            f.write_all(&self.labels)?;
            f.write_all(&self.split.iter().map(|&s| s as u8).collect::<Vec<u8>>())
        };
        crate::files::write_file(path, write).map_err(|e| err(path, format!("cannot write: {e}")))
    }

    /// Reads and checks an image dataset file.
    pub fn load(path: &Path) -> Result<ImageDataset, ImageDatasetError> {
        let bytes = crate::files::read_input(path, crate::files::MAX_DATA_FILE)
            .map_err(|e| err(path, format!("cannot read: {e}")))?;
        ImageDataset::from_bytes(&bytes, path)
    }

    /// Parses and checks image dataset bytes; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<ImageDataset, ImageDatasetError> {
        if bytes.len() < 16 || bytes[..7] != IMAGE_MAGIC[..7] {
            if bytes.len() >= 8 && &bytes[..7] == b"ARVAEDS" {
                return Err(err(path, "is a music dataset, not an image dataset"));
            }
            return Err(err(
                path,
                "not an arvae image dataset file (bad magic bytes)",
            ));
        }
        if bytes[7] != IMAGE_MAGIC[7] {
            return Err(err(
                path,
                format!(
                    "image dataset layout {} is not supported (this build reads {})",
                    bytes[7], IMAGE_MAGIC[7]
                ),
            ));
        }
        let hlen = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let body = &bytes[16..];
        if hlen > body.len() {
            return Err(err(
                path,
                format!(
                    "truncated: header says {hlen} bytes, file has {}",
                    body.len()
                ),
            ));
        }
        let header: ImageHeader = serde_json::from_slice(&body[..hlen])
            .map_err(|e| err(path, format!("header is not valid: {e}")))?;
        if header.format_version != IMAGE_FORMAT_VERSION {
            return Err(err(
                path,
                format!(
                    "format version {} is not supported (this build reads version {IMAGE_FORMAT_VERSION}); rebuild the dataset",
                    header.format_version
                ),
            ));
        }
        let n = header.num_images;
        let a = header.attributes.len();
        let mut ds = ImageDataset {
            header,
            pixels: Vec::new(),
            attributes: Vec::new(),
            labels: Vec::new(),
            split: Vec::new(),
        };
        let px = ds.data_len();
        let need = px + n * (4 * a + 2);
        let data = &body[hlen..];
        if data.len() != need {
            return Err(err(
                path,
                format!(
                    "truncated or corrupt: {n} images need {need} bytes of data, found {}",
                    data.len()
                ),
            ));
        }
        let (p, rest) = data.split_at(px);
        let (at, rest) = rest.split_at(n * a * 4);
        let (lb, sp) = rest.split_at(n);
        ds.pixels = p.to_vec();
        ds.attributes = at
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        ds.labels = lb.to_vec();
        ds.split = sp
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                Split::ALL
                    .get(c as usize)
                    .copied()
                    .ok_or_else(|| err(path, format!("image {i} has split code {c}")))
            })
            .collect::<Result<_, _>>()?;
        if ds.compute_content_hash() != ds.header.content_hash {
            return Err(err(
                path,
                "content hash does not match the header: the file is corrupt",
            ));
        }
        Ok(ds)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tiny(format: PixelFormat) -> ImageDataset {
        let (h, w, n) = (4, 4, 6);
        let raw: Vec<u8> = (0..n * h * w)
            .map(|i| if i % 3 == 0 { 1 } else { 0 })
            .collect();
        let pixels = match format {
            PixelFormat::U8 => raw.iter().map(|&b| b * 255).collect(),
            PixelFormat::Bit => pack_bits(&raw),
        };
        let mut ds = ImageDataset {
            header: ImageHeader {
                format_version: IMAGE_FORMAT_VERSION,
                kind: "images".into(),
                collection: "test".into(),
                source: "hand-made".into(),
                source_digests: vec![],
                content_hash: String::new(),
                height: h,
                width: w,
                pixel_format: format,
                attributes: vec!["a".into(), "b".into()],
                label_name: "class".into(),
                label_classes: vec!["x".into(), "y".into()],
                num_images: n,
                notes: vec![],
            },
            pixels,
            attributes: (0..2 * n).map(|i| i as f32).collect(),
            labels: vec![0, 1, 0, 1, 0, 1],
            split: vec![
                Split::Train,
                Split::Train,
                Split::Train,
                Split::Train,
                Split::Val,
                Split::Test,
            ],
        };
        ds.header.content_hash = ds.compute_content_hash();
        ds
    }

    #[test]
    fn round_trip_both_pixel_formats() {
        let dir = tempfile::tempdir().unwrap();
        for f in [PixelFormat::U8, PixelFormat::Bit] {
            let p = dir.path().join("x.arvae");
            let ds = tiny(f);
            ds.save(&p).unwrap();
            // What `Family::of_dataset` reads.
            assert!(std::fs::read(&p).unwrap().starts_with(IMAGE_MAGIC));
            let back = ImageDataset::load(&p).unwrap();
            assert_eq!(back, ds);
            let img = back.image(1);
            assert_eq!(img[0], 0.0);
            assert_eq!(img[2], 1.0); // pixel 18 of the stream: 18 % 3 == 0
            assert_eq!(back.attributes_of(2), &[4.0, 5.0]);
            assert_eq!(back.indices(Split::Test), vec![5]);
        }
    }

    #[test]
    fn sample_spreads_over_the_split_not_a_prefix() {
        let mut ds = tiny(PixelFormat::U8);
        assert_eq!(ds.sample(Split::Train, 10, 0), vec![0, 1, 2, 3]);
        assert_eq!(ds.sample(Split::Test, 1, 0), vec![5]);
        assert!(ds.sample(Split::Val, 0, 0).is_empty());
        // 1,000 test images in file order: 100 of them must come from all over the file.
        ds.split = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    Split::Test
                } else {
                    Split::Train
                }
            })
            .collect();
        ds.labels = vec![0; 1000];
        let s = ds.sample(Split::Test, 100, 7);
        assert_eq!(s.len(), 100);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert!(s.iter().all(|&i| ds.split[i] == Split::Test));
        assert!(s.iter().filter(|&&i| i < 500).count() < 80, "{s:?}");
        assert!(s.iter().filter(|&&i| i >= 500).count() > 20, "{s:?}");
        assert_eq!(s, ds.sample(Split::Test, 100, 7), "same seed, same sample");
        assert_ne!(s, ds.sample(Split::Test, 100, 8));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.arvae");
        tiny(PixelFormat::U8).save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let e = ImageDataset::from_bytes(&bytes[..bytes.len() - 1], &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated or corrupt"), "{e}");
        let mut f = bytes.clone();
        let k = f.len() - 20;
        f[k] ^= 1;
        let e = ImageDataset::from_bytes(&f, &p).unwrap_err().to_string();
        assert!(e.contains("content hash"), "{e}");
        let e = ImageDataset::from_bytes(b"ARVAEDS\x01aaaaaaaaaaaaaa", &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("music dataset"), "{e}");
    }
}
