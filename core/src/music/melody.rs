//! The monophonic line every importer produces, before it is cut into measures.

use std::fmt;

/// One note or rest of a melody. Times are in beats (quarter notes) from the piece start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Note {
    /// Onset in quarter notes from the start of the piece.
    pub onset: f64,
    /// Duration in quarter notes (tied notes are already merged).
    pub duration: f64,
    /// MIDI pitch, or `None` for a rest.
    pub pitch: Option<u8>,
}

impl Note {
    /// End of the note in quarter notes.
    pub fn end(&self) -> f64 {
        self.onset + self.duration
    }
}

/// One bar of the source, after repeats are expanded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    /// Start in quarter notes from the start of the piece.
    pub start: f64,
    /// Actual length in quarter notes (shorter than `nominal` for a pickup or a split bar).
    pub duration: f64,
    /// Time signature in force, as (numerator, denominator).
    pub time_signature: (u32, u32),
}

impl Bar {
    /// The bar's full length by its time signature, in quarter notes.
    pub fn nominal(&self) -> f64 {
        self.time_signature.0 as f64 * 4.0 / self.time_signature.1 as f64
    }

    /// End of the bar in quarter notes.
    pub fn end(&self) -> f64 {
        self.start + self.duration
    }
}

/// A monophonic melody with its bars: what an importer hands to the tokenizer.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Melody {
    /// Stable identifier of the piece (file name, plus tune number for multi-tune files).
    pub id: String,
    /// Title, if the source names one.
    pub title: String,
    /// Notes and rests in time order, not overlapping.
    pub notes: Vec<Note>,
    /// Bars in time order, contiguous.
    pub bars: Vec<Bar>,
}

impl Melody {
    /// Lowest and highest MIDI pitch, or `None` without notes.
    pub fn pitch_bounds(&self) -> Option<(u8, u8)> {
        let mut it = self.notes.iter().filter_map(|n| n.pitch);
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), p| (lo.min(p), hi.max(p))))
    }
}

/// Why a piece (or a whole file) could not be used: a short reason key for counting, and a
/// message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError {
    /// The file, plus the tune when a file holds several.
    pub source: String,
    /// Short key used to count skips by reason, e.g. `off_grid`, `meter`, `parse`.
    pub reason: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl ImportError {
    /// A new error for `source` with reason key `reason`.
    pub fn new(
        source: impl Into<String>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ImportError {
            source: source.into(),
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

impl std::error::Error for ImportError {}
