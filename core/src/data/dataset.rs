//! The dataset file: measures (N x 24 tokens), their attributes (N x 4), piece ids, transpositions
//! and splits, behind a JSON header. Loading checks it and names the file and the problem.
//!
//! Layout (little-endian):
//! `b"ARVAEDS\x01"`, u64 header length, header JSON, then N x 24 u8 tokens, N x 4 f32 attributes,
//! N u32 piece indices, N i8 transpositions, N u8 splits (0 train, 1 val, 2 test).

use crate::music::attributes::Attribute;
use crate::music::token::{token_name, Measure, TICKS_PER_MEASURE, VOCAB_SIZE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// First bytes of every dataset file.
pub const MAGIC: &[u8; 8] = b"ARVAEDS\x01";
/// Version of the header layout; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// One of the three splits, by piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// 80% of the pieces.
    Train,
    /// 10% of the pieces.
    Val,
    /// 10% of the pieces.
    Test,
}

impl Split {
    /// All splits in file order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Parses `train`, `val` (or `valid`, `validation`) and `test`.
    pub fn from_name(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }

    /// The split of a piece: deterministic from its id (FNV-1a hash), 80/10/10.
    pub fn of_piece(id: &str) -> Split {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in id.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        // Mix the high bits down so nearby ids spread evenly.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51afd7ed558ccd);
        h ^= h >> 33;
        match h % 10 {
            0 => Split::Val,
            1 => Split::Test,
            _ => Split::Train,
        }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<Split> {
        Split::ALL.get(c as usize).copied()
    }
}

/// A piece that contributed measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PieceInfo {
    /// Stable id (file, plus tune for multi-tune files).
    pub id: String,
    /// Title if known.
    #[serde(default)]
    pub title: String,
    /// Its split.
    pub split: Split,
    /// Measures of the untransposed piece.
    pub measures: usize,
    /// Transpositions used (semitones).
    pub transpositions: Vec<i32>,
}

/// A piece that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkippedPiece {
    /// The file (and tune).
    pub source: String,
    /// Short reason key (`off_grid`, `meter`, `parse`, ...).
    pub reason: String,
    /// The full message.
    pub message: String,
}

/// The JSON header of a dataset file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetHeader {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Always `music` for now.
    pub kind: String,
    /// `bach`, `folk`, `synthetic` or `files`.
    pub collection: String,
    /// Where the data came from: a path or a description.
    pub source: String,
    /// sha256 of the source archive, where there is one.
    pub source_sha256: Option<String>,
    /// Identifier of the content: sha256 over the measures, attributes and splits.
    pub content_hash: String,
    /// Token names, index = token id.
    pub vocabulary: Vec<String>,
    /// Attribute names, index = column (and regularized latent dimension).
    pub attributes: Vec<String>,
    /// Pieces read (parsed or not).
    pub pieces_total: usize,
    /// Pieces that contributed measures.
    pub pieces_used: usize,
    /// Skipped pieces by reason key.
    pub pieces_skipped: BTreeMap<String, usize>,
    /// Number of measures in the file.
    pub num_measures: usize,
    /// Pieces used, in piece-index order.
    pub pieces: Vec<PieceInfo>,
    /// Every skipped piece with its reason.
    pub skipped: Vec<SkippedPiece>,
    /// Notes about how the data was made (e.g. MIDI snapping), free text.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A loaded (or freshly built) dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The header.
    pub header: DatasetHeader,
    /// Measures.
    pub measures: Vec<Measure>,
    /// Attributes per measure, in [`Attribute::ALL`] order.
    pub attributes: Vec<[f32; 4]>,
    /// Index into `header.pieces` per measure.
    pub piece: Vec<u32>,
    /// Transposition in semitones per measure.
    pub transpose: Vec<i8>,
    /// Split per measure.
    pub split: Vec<Split>,
}

/// Why a dataset file could not be read or written; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DatasetError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl DatasetError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        DatasetError {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Vocabulary names for the header.
pub fn vocabulary_names() -> Vec<String> {
    (0..VOCAB_SIZE as u16)
        .map(|t| token_name(t as u8))
        .collect()
}

/// Attribute names for the header.
pub fn attribute_names() -> Vec<String> {
    Attribute::ALL
        .iter()
        .map(|a| a.name().to_string())
        .collect()
}

impl Dataset {
    /// Indices of the measures in `split`.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.measures.len())
            .filter(|&i| self.split[i] == split)
            .collect()
    }

    /// Lowest and highest onset pitch of every measure (`None` without any note).
    pub fn pitch_range(&self) -> Option<(u8, u8)> {
        self.measures
            .iter()
            .flat_map(|m| m.tokens().iter().copied().filter(|&t| t < 128))
            .fold(None, |r, p| match r {
                None => Some((p, p)),
                Some((lo, hi)) => Some((lo.min(p), hi.max(p))),
            })
    }

    /// Measures in `split`.
    pub fn count(&self, split: Split) -> usize {
        self.split.iter().filter(|&&s| s == split).count()
    }

    /// sha256 over measures, attributes and splits, as hex.
    pub fn compute_content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for m in &self.measures {
            h.update(m.0);
        }
        for a in &self.attributes {
            for v in a {
                h.update(v.to_le_bytes());
            }
        }
        h.update(self.split.iter().map(|s| s.code()).collect::<Vec<u8>>());
        format!("{:x}", h.finalize())
    }

    /// Serializes to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("header serializes");
        let n = self.measures.len();
        let mut out = Vec::with_capacity(16 + header.len() + n * (24 + 16 + 4 + 2));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for m in &self.measures {
            out.extend_from_slice(&m.0);
        }
        for a in &self.attributes {
            for v in a {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        for p in &self.piece {
            out.extend_from_slice(&p.to_le_bytes());
        }
        out.extend(self.transpose.iter().map(|&t| t as u8));
        out.extend(self.split.iter().map(|s| s.code()));
        out
    }

    /// Writes the file atomically ([`crate::files::write_file`]).
    pub fn save(&self, path: &Path) -> Result<(), DatasetError> {
        let bytes = self.to_bytes();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DatasetError::new(path, format!("cannot create folder: {e}")))?;
        }
        crate::files::write_bytes(path, &bytes)
            .map_err(|e| DatasetError::new(path, format!("cannot write: {e}")))
    }

    /// Reads and checks a dataset file.
    pub fn load(path: &Path) -> Result<Dataset, DatasetError> {
        let bytes = crate::files::read_input(path, crate::files::MAX_DATA_FILE)
            .map_err(|e| DatasetError::new(path, format!("cannot read: {e}")))?;
        Dataset::from_bytes(&bytes, path)
    }

    /// Parses and checks dataset bytes; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Dataset, DatasetError> {
        let err = |m: String| DatasetError::new(path, m);
        if bytes.len() < 16 || bytes[..7] != MAGIC[..7] {
            if bytes.starts_with(b"ARVAEIM") {
                return Err(err(
                    "is an image dataset (dSprites or Morpho-MNIST); this needs a music dataset"
                        .into(),
                ));
            }
            return Err(err("not an arvae dataset file (bad magic bytes)".into()));
        }
        if bytes[7] != MAGIC[7] {
            return Err(err(format!(
                "dataset file layout {} is not supported (this build reads {})",
                bytes[7], MAGIC[7]
            )));
        }
        let hlen = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        let body = &bytes[16..];
        if hlen > body.len() {
            return Err(err(format!(
                "truncated: header says {hlen} bytes, file has {}",
                body.len()
            )));
        }
        let header: DatasetHeader = serde_json::from_slice(&body[..hlen])
            .map_err(|e| err(format!("header is not valid: {e}")))?;
        if header.format_version != FORMAT_VERSION {
            return Err(err(format!(
                "format version {} is not supported (this build reads version {FORMAT_VERSION}); rebuild the dataset",
                header.format_version
            )));
        }
        if header.kind != "music" {
            return Err(err(format!(
                "dataset kind '{}' is not a music dataset",
                header.kind
            )));
        }
        if header.vocabulary != vocabulary_names() {
            return Err(err(
                "vocabulary differs from this build's 132-token vocabulary".into(),
            ));
        }
        if header.attributes != attribute_names() {
            return Err(err(format!(
                "attributes {:?} differ from {:?}",
                header.attributes,
                attribute_names()
            )));
        }
        let n = header.num_measures;
        let need = n
            .checked_mul(TICKS_PER_MEASURE + 16 + 4 + 1 + 1)
            .ok_or_else(|| err("measure count overflows".into()))?;
        let data = &body[hlen..];
        if data.len() != need {
            return Err(err(format!(
                "truncated or corrupt: {} measures need {need} bytes of data, found {}",
                n,
                data.len()
            )));
        }
        let (tok, rest) = data.split_at(n * TICKS_PER_MEASURE);
        let (att, rest) = rest.split_at(n * 16);
        let (pc, rest) = rest.split_at(n * 4);
        let (tr, sp) = rest.split_at(n);
        let mut measures = Vec::with_capacity(n);
        for (i, c) in tok.chunks_exact(TICKS_PER_MEASURE).enumerate() {
            measures.push(
                Measure::from_slice(c).ok_or_else(|| {
                    err(format!("measure {i} has a token outside the vocabulary"))
                })?,
            );
        }
        let attributes: Vec<[f32; 4]> = att
            .chunks_exact(16)
            .map(|c| {
                std::array::from_fn(|k| f32::from_le_bytes(c[4 * k..4 * k + 4].try_into().unwrap()))
            })
            .collect();
        let piece: Vec<u32> = pc
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        if let Some(i) = piece
            .iter()
            .position(|&p| p as usize >= header.pieces.len())
        {
            return Err(err(format!(
                "measure {i} names piece {} of {}",
                piece[i],
                header.pieces.len()
            )));
        }
        let transpose = tr.iter().map(|&b| b as i8).collect();
        let split = sp
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                Split::from_code(c).ok_or_else(|| err(format!("measure {i} has split code {c}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ds = Dataset {
            header,
            measures,
            attributes,
            piece,
            transpose,
            split,
        };
        if ds.compute_content_hash() != ds.header.content_hash {
            return Err(err(
                "content hash does not match the header: the file is corrupt".into(),
            ));
        }
        Ok(ds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::attributes::attributes;

    pub(crate) fn tiny() -> Dataset {
        let measures: Vec<Measure> = (0..10u8)
            .map(|i| {
                let mut m = Measure::rest();
                m.0[0] = 60 + i;
                m.0[6] = 62 + i;
                m
            })
            .collect();
        let attributes = measures.iter().map(attributes).collect();
        let mut ds = Dataset {
            header: DatasetHeader {
                format_version: FORMAT_VERSION,
                kind: "music".into(),
                collection: "test".into(),
                source: "hand-made".into(),
                source_sha256: None,
                content_hash: String::new(),
                vocabulary: vocabulary_names(),
                attributes: attribute_names(),
                pieces_total: 3,
                pieces_used: 2,
                pieces_skipped: [("off_grid".to_string(), 1)].into(),
                num_measures: 10,
                pieces: vec![
                    PieceInfo {
                        id: "a".into(),
                        title: "A".into(),
                        split: Split::Train,
                        measures: 5,
                        transpositions: vec![0],
                    },
                    PieceInfo {
                        id: "b".into(),
                        title: "B".into(),
                        split: Split::Test,
                        measures: 5,
                        transpositions: vec![0],
                    },
                ],
                skipped: vec![SkippedPiece {
                    source: "c".into(),
                    reason: "off_grid".into(),
                    message: "x".into(),
                }],
                notes: vec![],
            },
            measures,
            attributes,
            piece: vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
            transpose: vec![0; 10],
            split: [Split::Train; 5]
                .into_iter()
                .chain([Split::Test; 5])
                .collect(),
        };
        ds.header.content_hash = ds.compute_content_hash();
        ds
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.arvae");
        let ds = tiny();
        ds.save(&p).unwrap();
        let back = Dataset::load(&p).unwrap();
        assert_eq!(back, ds);
        assert_eq!(back.count(Split::Test), 5);
        assert_eq!(back.indices(Split::Train), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn bad_files_name_the_file_and_problem() {
        let p = Path::new("bad.arvae");
        let bytes = tiny().to_bytes();
        let e = Dataset::from_bytes(&bytes[..bytes.len() - 3], p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.arvae: truncated"), "{e}");
        let e = Dataset::from_bytes(b"hello world, not a dataset", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad magic"), "{e}");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 30;
        flipped[last] ^= 1;
        let e = Dataset::from_bytes(&flipped, p).unwrap_err().to_string();
        assert!(e.contains("corrupt") || e.contains("names piece"), "{e}");
        let mut flipped = bytes.clone();
        let at = flipped.len() - 10 - 10 - 40 - 8;
        flipped[at] ^= 0x55;
        let e = Dataset::from_bytes(&flipped, p).unwrap_err().to_string();
        assert!(e.contains("content hash"), "{e}");
        let mut ds = tiny();
        ds.header.format_version = 99;
        let e = Dataset::from_bytes(&ds.to_bytes(), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("format version 99"), "{e}");
        let e = Dataset::load(Path::new("/nonexistent/x.arvae"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.arvae: cannot read"), "{e}");
    }

    #[test]
    fn split_is_deterministic_and_roughly_80_10_10() {
        let mut counts = [0usize; 3];
        for i in 0..10_000 {
            counts[Split::of_piece(&format!("piece-{i}")) as usize] += 1;
        }
        assert!((7700..8300).contains(&counts[0]), "{counts:?}");
        assert!((800..1200).contains(&counts[1]), "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
        assert_eq!(Split::of_piece("bwv1.6"), Split::of_piece("bwv1.6"));
    }
}
