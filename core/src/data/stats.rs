//! Summary statistics of a dataset: pieces, skips, measures per split, vocabulary in use, and the
//! distribution of each attribute.

use super::dataset::{Dataset, Split};
use crate::music::attributes::Attribute;
use crate::music::token::{token_name, VOCAB_SIZE};
use serde::Serialize;
use std::collections::BTreeMap;

/// Bins of the attribute histograms.
pub const HISTOGRAM_BINS: usize = 10;

/// Distribution of one attribute.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AttributeStats {
    /// Smallest value.
    pub min: f32,
    /// Mean.
    pub mean: f32,
    /// Largest value.
    pub max: f32,
    /// Number of distinct values.
    pub distinct: usize,
    /// Counts in [`HISTOGRAM_BINS`] equal bins from `min` to `max`.
    pub histogram: Vec<usize>,
}

/// Measures per split.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SplitCounts {
    /// Training measures.
    pub train: usize,
    /// Validation measures.
    pub val: usize,
    /// Test measures.
    pub test: usize,
}

/// What `arvae-trainer data stats` prints.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DatasetStats {
    /// Collection name.
    pub collection: String,
    /// Pieces read.
    pub pieces_total: usize,
    /// Pieces that contributed measures.
    pub pieces_used: usize,
    /// Skipped pieces by reason.
    pub pieces_skipped: BTreeMap<String, usize>,
    /// Measures per split.
    pub measures: SplitCounts,
    /// Pieces per split.
    pub pieces: SplitCounts,
    /// Number of distinct tokens used.
    pub vocabulary_in_use: usize,
    /// The tokens used, by name, with counts.
    pub token_counts: BTreeMap<String, usize>,
    /// Per attribute.
    pub attributes: BTreeMap<String, AttributeStats>,
}

fn attribute_stats(values: impl Iterator<Item = f32>) -> AttributeStats {
    let mut v: Vec<f32> = values.collect();
    if v.is_empty() {
        return AttributeStats {
            min: 0.0,
            mean: 0.0,
            max: 0.0,
            distinct: 0,
            histogram: vec![0; HISTOGRAM_BINS],
        };
    }
    v.sort_by(f32::total_cmp);
    let (min, max) = (v[0], v[v.len() - 1]);
    let mean = (v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64) as f32;
    let distinct = 1 + v.windows(2).filter(|w| w[0] != w[1]).count();
    let mut histogram = vec![0; HISTOGRAM_BINS];
    let width = (max - min) / HISTOGRAM_BINS as f32;
    for &x in &v {
        let b = if width > 0.0 {
            (((x - min) / width) as usize).min(HISTOGRAM_BINS - 1)
        } else {
            0
        };
        histogram[b] += 1;
    }
    AttributeStats {
        min,
        mean,
        max,
        distinct,
        histogram,
    }
}

/// Computes the statistics of `ds`.
pub fn stats(ds: &Dataset) -> DatasetStats {
    let mut counts = [0usize; VOCAB_SIZE];
    for m in &ds.measures {
        for &t in &m.0 {
            counts[t as usize] += 1;
        }
    }
    let token_counts = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(t, &c)| (token_name(t as u8), c))
        .collect::<BTreeMap<_, _>>();
    let pieces_in = |s: Split| ds.header.pieces.iter().filter(|p| p.split == s).count();
    DatasetStats {
        collection: ds.header.collection.clone(),
        pieces_total: ds.header.pieces_total,
        pieces_used: ds.header.pieces_used,
        pieces_skipped: ds.header.pieces_skipped.clone(),
        measures: SplitCounts {
            train: ds.count(Split::Train),
            val: ds.count(Split::Val),
            test: ds.count(Split::Test),
        },
        pieces: SplitCounts {
            train: pieces_in(Split::Train),
            val: pieces_in(Split::Val),
            test: pieces_in(Split::Test),
        },
        vocabulary_in_use: token_counts.len(),
        token_counts,
        attributes: Attribute::ALL
            .iter()
            .map(|a| {
                (
                    a.name().to_string(),
                    attribute_stats(ds.attributes.iter().map(|v| v[a.index()])),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_moments() {
        let s = attribute_stats([0.0f32, 0.0, 0.5, 1.0].into_iter());
        assert_eq!((s.min, s.max, s.distinct), (0.0, 1.0, 3));
        assert!((s.mean - 0.375).abs() < 1e-6);
        assert_eq!(s.histogram.iter().sum::<usize>(), 4);
        assert_eq!(s.histogram[0], 2);
        assert_eq!(s.histogram[9], 1);
        let c = attribute_stats([2.0f32; 3].into_iter());
        assert_eq!(c.histogram[0], 3);
    }
}
