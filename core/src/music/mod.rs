//! Measures, tokens, the four musical attributes, importers and MIDI export.

pub mod abc;
pub mod attributes;
pub mod melody;
pub mod midi_export;
pub mod midi_import;
pub mod musicxml;
pub mod token;
pub mod tokenize;

pub use attributes::{Attribute, AttributeValues};
pub use melody::{Bar, Melody, Note};
pub use token::{
    Measure, Token, END, HOLD, REST, START, TICKS_PER_BEAT, TICKS_PER_MEASURE, VOCAB_SIZE,
};
