//! ABC notation importer for the folk collections of the music21 wheel and for users' `.abc` files
//! (docs/architecture.md §4). No crate handles these collections, so this is our own parser of the subset of
//! ABC 2.1 that melodies need.
//!
//! - Tunes are split on `X:` (a blank line ends a tune, as in ABC 2.1); text before the first `X:`
//!   is the file header and is ignored. One result per tune; a broken tune never stops the others.
//! - Header and body fields `K:`, `L:`, `M:` and inline `[K:..]`, `[L:..]`, `[M:..]`; other fields
//!   (`Q:`, `P:`, `w:`, `W:`, `N:`, ...) are ignored. `M:C` is 4/4, `M:C|` is 2/2; free meter
//!   (`M:none`, or no `M:` at all) fails with reason `meter`. The default `L:` follows ABC 2.1
//!   (1/16 if the header meter is below 3/4, else 1/8).
//! - Keys with modes (maj, min, m, ion, aeo, mix, dor, phr, lyd, loc), `HP`/`Hp` (highland pipes),
//!   explicit accidentals (`K:D =c`, `K:Dmix=c`) and `exp`.
//! - Accidentals `^ ^^ _ __ =` carry to the end of the bar for that note letter in every octave
//!   (ABC 2.1's default `%%propagate-accidentals pitch`; `not` and `octave` are honoured too); a
//!   note tied into the next bar keeps its accidental.
//! - Octave marks, lengths (`A2 A/2 A/ A// A3/2`), broken rhythm (`> < >> <<`), tuplets
//!   (`(3` and `(p:q:r`), ties (merged into one note when the pitch is the same, also across
//!   barlines; a "tie" between different pitches is a slur), rests `z`, `x`, multi-measure rests
//!   `Z`, chords (top note; the chord lasts as long as its first note times the chord's length).
//! - Bars `| || |] [| |: :| :: :|: [|]` and endings (`[1 |1 :|2 [2`, lists `[1,3` and ranges
//!   `[1-3`) are expanded into the performed order; malformed repeats fall back to reading the tune
//!   once, linearly.
//! - Chord symbols and annotations `"..."`, grace notes `{...}`, decorations (`!..!`, `+..+`, `.`,
//!   `~`, `H`-`W`, `h`-`w`), slurs, beam breaks, line continuations and comments are skipped; an
//!   unclosed `!` is the old ABC line break. With several voices (`V:`) only the first is kept.
//! - Leniency for real files: stray non-field lines in the header (before `K:`) are ignored, an
//!   ending number may stand apart from its bar (`|` at a line end, `2` on the next line), and
//!   quoted-printable residue from e-mailed files (`=20`, `=3D`, a trailing `=`) is decoded.
//!
//! Errors name the file and tune (`file#X`) and the line; reason keys: `parse`, `empty`, `meter`,
//! `unreadable`.

use super::melody::{Bar, ImportError, Melody, Note};
use std::collections::HashSet;
use std::path::Path;

/// Largest number accepted in a length, tuplet or multi-measure rest (guards against garbage).
const MAX_NUMBER: u32 = 4096;
/// Largest count of bars in one `Z` multi-measure rest.
const MAX_MULTI_REST: u32 = 512;
/// Largest number of items the repeat expansion may produce before falling back to linear.
const MAX_PERFORMED: usize = 500_000;
/// Semitones of C D E F G A B above C.
const SEMITONES: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
/// Position of C D E F G A B on the circle of fifths, relative to C.
const LETTER_FIFTHS: [i32; 7] = [0, 2, 4, -1, 1, 3, 5];
/// Letters that get sharps, in order (F C G D A E B), as indices into C D E F G A B.
const SHARP_ORDER: [usize; 7] = [3, 0, 4, 1, 5, 2, 6];
/// Letters that get flats, in order (B E A D G C F).
const FLAT_ORDER: [usize; 7] = [6, 2, 5, 1, 4, 0, 3];

/// Parses every tune of an ABC file (tunes split on X:). One result per tune.
pub fn parse_tunes(text: &str, source: &str) -> Vec<Result<Melody, ImportError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let tunes = split_tunes(&text);
    if tunes.is_empty() {
        return vec![Err(ImportError::new(
            source,
            "empty",
            "no tunes (no X: field and no K: field)",
        ))];
    }
    let written: HashSet<&str> = tunes.iter().filter_map(|t| t.x.as_deref()).collect();
    let mut used: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(tunes.len());
    for (index, tune) in tunes.iter().enumerate() {
        let index = index + 1;
        let tag = match tune.x.as_deref() {
            Some(x) if !used.contains(x) => x.to_string(),
            _ => {
                let plain = index.to_string();
                if written.contains(plain.as_str()) || used.contains(&plain) {
                    format!("tune{index}")
                } else {
                    plain
                }
            }
        };
        used.insert(tag.clone());
        let id = format!("{source}#{tag}");
        out.push(parse_tune(&tune.lines, &id));
    }
    out
}

/// Reads an .abc file from disk (lossy UTF-8 / Latin-1 tolerant).
pub fn read_file(path: &Path) -> Vec<Result<Melody, ImportError>> {
    let source = path.display().to_string();
    match crate::files::read_input(path, crate::files::MAX_MUSIC_FILE) {
        Ok(bytes) => parse_tunes(&decode(&bytes), &source),
        Err(e) => vec![Err(ImportError::new(
            source,
            "unreadable",
            format!("cannot read: {e}"),
        ))],
    }
}

/// UTF-8 if valid, else Latin-1 (every byte is a character).
fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// One tune's lines (with 1-based line numbers in the file) and its `X:` value.
struct RawTune<'a> {
    x: Option<String>,
    lines: Vec<(usize, &'a str)>,
}

fn strip_comment(s: &str) -> &str {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%' && (i == 0 || b[i - 1] != b'\\') {
            return &s[..i];
        }
    }
    s
}

/// A field line `A:value`: its letter and value.
fn field(line: &str) -> Option<(char, &str)> {
    let mut it = line.chars();
    let c = it.next()?;
    if (c.is_ascii_alphabetic() || c == '+') && it.next() == Some(':') {
        Some((c, &line[2..]))
    } else {
        None
    }
}

fn split_tunes(text: &str) -> Vec<RawTune<'_>> {
    let mut tunes: Vec<RawTune> = Vec::new();
    let mut open = false;
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        let trimmed = line.trim_start();
        if let Some(("X", value)) = trimmed.split_once(':').map(|(a, b)| (a.trim_end(), b)) {
            let x = strip_comment(value).trim();
            tunes.push(RawTune {
                x: (!x.is_empty()).then(|| x.to_string()),
                lines: Vec::new(),
            });
            open = true;
            continue;
        }
        if line.trim().is_empty() {
            open = false;
        } else if open {
            if let Some(t) = tunes.last_mut() {
                t.lines.push((lineno, line));
            }
        }
    }
    if tunes.is_empty() && text.lines().any(|l| l.trim_start().starts_with("K:")) {
        // A fragment without X:: read the whole text as one tune.
        let lines = text.lines().enumerate().map(|(n, l)| (n + 1, l)).collect();
        tunes.push(RawTune { x: None, lines });
    }
    tunes
}

/// Time signature, or `None` for free meter.
type Meter = Option<(u32, u32)>;

fn parse_meter(value: &str) -> Result<Meter, String> {
    let v = strip_comment(value).trim();
    match v {
        "C" => return Ok(Some((4, 4))),
        "C|" => return Ok(Some((2, 2))),
        "" => return Ok(None),
        _ if v.eq_ignore_ascii_case("none") => return Ok(None),
        _ => {}
    }
    let bad = || format!("cannot read meter 'M:{v}'");
    let (num, den) = v.split_once('/').ok_or_else(bad)?;
    let mut n = 0u32;
    for part in num
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split('+')
    {
        n += part
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&x| x > 0 && x <= 64)
            .ok_or_else(bad)?;
    }
    let d = den
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&x| x > 0 && x <= 64)
        .ok_or_else(bad)?;
    Ok(Some((n, d)))
}

/// Unit note length `L:` in quarter notes.
fn parse_unit(value: &str) -> Result<f64, String> {
    let v = strip_comment(value).trim();
    let bad = || format!("cannot read unit note length 'L:{v}'");
    let num = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|&x| x > 0 && x <= 256)
            .ok_or_else(bad)
    };
    let (n, d) = match v.split_once('/') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(v)?, 1),
    };
    Ok(4.0 * n as f64 / d as f64)
}

/// Letter index (C=0 .. B=6) of an ASCII note letter, either case.
fn letter_index(c: char) -> Option<usize> {
    match c.to_ascii_uppercase() {
        'C' => Some(0),
        'D' => Some(1),
        'E' => Some(2),
        'F' => Some(3),
        'G' => Some(4),
        'A' => Some(5),
        'B' => Some(6),
        _ => None,
    }
}

/// Key signature as alterations (in semitones) of C D E F G A B.
type KeySig = [i32; 7];

fn mode_shift(word: &str) -> Option<i32> {
    let w = word.to_ascii_lowercase();
    if w == "m" {
        return Some(-3);
    }
    if w.len() < 3 {
        return None;
    }
    match &w[..3] {
        "maj" | "ion" => Some(0),
        "min" | "aeo" => Some(-3),
        "mix" => Some(-1),
        "dor" => Some(-2),
        "phr" => Some(-4),
        "lyd" => Some(1),
        "loc" => Some(-5),
        _ => None,
    }
}

const CLEF_WORDS: [&str; 7] = ["treble", "bass", "alto", "tenor", "perc", "none", "clef"];

/// Explicit accidentals like `^f _b =c` (several may be glued together) applied to `key`.
fn explicit_accidentals(token: &str, key: &mut KeySig) -> Result<(), String> {
    let c: Vec<char> = token.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let alter = match (c[i], c.get(i + 1)) {
            ('^', Some('^')) => 2,
            ('_', Some('_')) => -2,
            ('^', _) => 1,
            ('_', _) => -1,
            ('=', _) => 0,
            _ => return Err(format!("unexpected '{token}' in K:")),
        };
        i += if alter == 2 || alter == -2 { 2 } else { 1 };
        let l = c
            .get(i)
            .and_then(|&ch| letter_index(ch))
            .ok_or_else(|| format!("unexpected '{token}' in K:"))?;
        key[l] = alter;
        i += 1;
    }
    Ok(())
}

/// Parses a `K:` value. `Ok(None)` when it names no key (only a clef or other clauses).
fn parse_key(value: &str) -> Result<Option<KeySig>, String> {
    let v = strip_comment(value).trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Ok(Some([0; 7]));
    }
    if v.starts_with("HP") {
        return Ok(Some([0; 7]));
    }
    if v.starts_with("Hp") {
        // Highland pipes: F sharp, C sharp, G natural.
        return Ok(Some([1, 0, 0, 1, 0, 0, 0]));
    }
    let first = v.chars().next().unwrap_or(' ');
    let tonic = match first {
        'A'..='G' => letter_index(first).unwrap_or(0),
        _ => {
            // No tonic: a clef or other clauses only; the key stays.
            return Ok(None);
        }
    };
    let mut rest = &v[1..];
    let mut tonic_alter = 0;
    if let Some(r) = rest.strip_prefix('#') {
        tonic_alter = 1;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('b') {
        tonic_alter = -1;
        rest = r;
    }
    let rest = rest.trim_start();
    let word_len = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let (word, after) = rest.split_at(word_len);
    let mut shift = 0;
    let mut explicit_only = false;
    let mut tail = rest;
    if !word.is_empty() {
        if let Some(s) = mode_shift(word) {
            shift = s;
            tail = after;
        } else if word.eq_ignore_ascii_case("exp") {
            explicit_only = true;
            tail = after;
        } else if !after.starts_with('=')
            && !CLEF_WORDS.contains(&word.to_ascii_lowercase().as_str())
        {
            return Err(format!("unknown mode '{word}' in 'K:{v}'"));
        }
    }
    let mut key = [0; 7];
    let n = LETTER_FIFTHS[tonic] + 7 * tonic_alter + shift;
    for i in 0..n.unsigned_abs() as usize {
        if n > 0 {
            key[SHARP_ORDER[i % 7]] += 1;
        } else {
            key[FLAT_ORDER[i % 7]] -= 1;
        }
    }
    let mut explicit = [None::<i32>; 7];
    for token in tail.split_whitespace() {
        let lower = token.to_ascii_lowercase();
        if let Some((name, _)) = token.split_once('=') {
            if name.len() >= 2 && name.chars().all(|c| c.is_ascii_alphabetic()) {
                continue; // clef=, middle=, transpose=, octave=, ...
            }
        }
        if lower == "exp" {
            explicit_only = true;
            continue;
        }
        if CLEF_WORDS.contains(&lower.as_str()) {
            continue;
        }
        let mut k = [i32::MIN; 7];
        explicit_accidentals(token, &mut k)?;
        for (e, v) in explicit.iter_mut().zip(k) {
            if v != i32::MIN {
                *e = Some(v);
            }
        }
    }
    if explicit_only {
        key = [0; 7];
    }
    for (k, e) in key.iter_mut().zip(explicit) {
        if let Some(e) = e {
            *k = e;
        }
    }
    Ok(Some(key))
}

/// How far an accidental carries inside its bar.
#[derive(Clone, Copy, PartialEq)]
enum Propagate {
    Not,
    Octave,
    Pitch,
}

#[derive(Clone, Copy, Debug)]
struct BarLine {
    /// `:|`: end of a repeated section.
    end: bool,
    /// `|:`: start of a repeated section.
    start: bool,
    /// A double or thick bar (`||`, `|]`, `[|`): closes an ending.
    section: bool,
}

#[derive(Clone, Debug)]
enum Item {
    Note {
        pitch: Option<u8>,
        dur: f64,
        tie: bool,
        meter: Meter,
    },
    MultiRest {
        bars: u32,
        meter: Meter,
    },
    Bar(BarLine),
    Ending(Vec<u32>),
}

struct Tuplet {
    remaining: u32,
    factor: f64,
}

struct Parser<'a> {
    id: &'a str,
    line: usize,
    title: Option<String>,
    in_body: bool,
    meter: Meter,
    unit: Option<f64>,
    key: KeySig,
    /// Accidentals in force in the current bar, by natural MIDI pitch (Octave) or letter (Pitch).
    bar_acc: Vec<(i32, i32)>,
    propagate: Propagate,
    kept_voice: Option<String>,
    voice: Option<String>,
    items: Vec<Item>,
    tuplet: Option<Tuplet>,
    broken_next: f64,
    /// Natural pitch and sounding pitch of the last note (for ties carrying accidentals).
    last_note: Option<(i32, u8)>,
    /// A tie is open from this (natural, sounding) pitch.
    tie_from: Option<(i32, u8)>,
}

fn parse_tune(lines: &[(usize, &str)], id: &str) -> Result<Melody, ImportError> {
    let mut p = Parser {
        id,
        line: lines.first().map_or(0, |l| l.0),
        title: None,
        in_body: false,
        meter: None,
        unit: None,
        key: [0; 7],
        bar_acc: Vec::new(),
        propagate: Propagate::Pitch,
        kept_voice: None,
        voice: None,
        items: Vec::new(),
        tuplet: None,
        broken_next: 1.0,
        last_note: None,
        tie_from: None,
    };
    for &(lineno, raw) in lines {
        p.line = lineno;
        if let Some(directive) = raw.trim_start().strip_prefix("%%") {
            p.directive(directive);
            continue;
        }
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        if let Some((letter, value)) = field(line.trim_start()) {
            p.field(letter, value)?;
            continue;
        }
        if !p.in_body {
            // Before K: only fields belong to the header; stray text there is not music.
            continue;
        }
        p.music_line(line)?;
    }
    p.finish()
}

impl Parser<'_> {
    fn err(&self, message: impl std::fmt::Display) -> ImportError {
        ImportError::new(self.id, "parse", format!("line {}: {message}", self.line))
    }

    fn directive(&mut self, d: &str) {
        let mut it = d.split_whitespace();
        if it.next() == Some("propagate-accidentals") {
            self.propagate = match it.next() {
                Some("not") => Propagate::Not,
                Some("octave") => Propagate::Octave,
                _ => Propagate::Pitch,
            };
        }
    }

    fn start_body(&mut self) {
        self.in_body = true;
        if self.unit.is_none() {
            let short = matches!(self.meter, Some((n, d)) if (n as f64) / (d as f64) < 0.75);
            self.unit = Some(if short { 0.25 } else { 0.5 });
        }
    }

    fn in_kept_voice(&self) -> bool {
        self.voice.is_none() || self.voice == self.kept_voice
    }

    fn field(&mut self, letter: char, value: &str) -> Result<(), ImportError> {
        let value = strip_comment(value);
        if letter == 'V' {
            let name = value.split_whitespace().next().unwrap_or("").to_string();
            if self.kept_voice.is_none() {
                self.kept_voice = Some(name.clone());
            }
            if self.in_body {
                self.voice = Some(name);
            }
            return Ok(());
        }
        if !self.in_kept_voice() {
            return Ok(());
        }
        match letter {
            'T' if self.title.is_none() && !self.in_body => {
                self.title = Some(value.trim().to_string())
            }
            'M' => {
                self.meter = parse_meter(value).map_err(|m| self.err(m))?;
            }
            'L' => self.unit = Some(parse_unit(value).map_err(|m| self.err(m))?),
            'K' => {
                if let Some(k) = parse_key(value).map_err(|m| self.err(m))? {
                    self.key = k;
                    self.bar_acc.clear();
                }
                if !self.in_body {
                    self.start_body();
                }
            }
            'I' => self.directive(value),
            _ => {}
        }
        Ok(())
    }

    fn push_event(&mut self, pitch: Option<u8>, units: f64) {
        let mut dur = units * self.unit.unwrap_or(0.5);
        if let Some(t) = &mut self.tuplet {
            dur *= t.factor;
            t.remaining = t.remaining.saturating_sub(1);
            if t.remaining == 0 {
                self.tuplet = None;
            }
        }
        dur *= self.broken_next;
        self.broken_next = 1.0;
        self.items.push(Item::Note {
            pitch,
            dur,
            tie: false,
            meter: self.meter,
        });
    }

    /// Sounding pitch of a note: explicit accidental, else tie, else bar accidental, else key.
    fn resolve_pitch(
        &mut self,
        letter: usize,
        natural: i32,
        explicit: Option<i32>,
    ) -> Result<u8, ImportError> {
        let slot = match self.propagate {
            Propagate::Octave => natural,
            _ => letter as i32,
        };
        let alter = match explicit {
            Some(a) => {
                if self.propagate != Propagate::Not {
                    self.bar_acc.retain(|&(s, _)| s != slot);
                    self.bar_acc.push((slot, a));
                }
                a
            }
            None => match self.tie_from {
                Some((nat, p)) if nat == natural => p as i32 - natural,
                _ => match self.bar_acc.iter().find(|&&(s, _)| s == slot) {
                    Some(&(_, a)) if self.propagate != Propagate::Not => a,
                    _ => self.key[letter],
                },
            },
        };
        let midi = natural + alter;
        if !(0..=127).contains(&midi) {
            return Err(self.err(format!("pitch {midi} is outside the MIDI range")));
        }
        Ok(midi as u8)
    }

    fn finish(self) -> Result<Melody, ImportError> {
        if !self.in_body {
            return Err(ImportError::new(
                self.id,
                "empty",
                "no K: field, so no tune body",
            ));
        }
        if !self
            .items
            .iter()
            .any(|i| matches!(i, Item::Note { pitch: Some(_), .. }))
        {
            return Err(ImportError::new(self.id, "empty", "no notes"));
        }
        let order = perform(&self.items);
        let (notes, bars) = layout(&self.items, &order, self.id)?;
        Ok(Melody {
            id: self.id.to_string(),
            title: self.title.unwrap_or_default(),
            notes,
            bars,
        })
    }

    /// One line of the tune body, read token by token.
    fn music_line(&mut self, line: &str) -> Result<(), ImportError> {
        let c: Vec<char> = decode_quoted_printable(line).chars().collect();
        let mut i = 0;
        while i < c.len() {
            i = if self.in_kept_voice() {
                self.music_token(&c, i)?
            } else {
                self.skip_other_voice(&c, i)?
            };
        }
        Ok(())
    }

    /// Skips another voice's music up to the next inline voice change: the index after `c[i]`.
    fn skip_other_voice(&mut self, c: &[char], i: usize) -> Result<usize, ImportError> {
        if c[i] == '[' && c.get(i + 1) == Some(&'V') && c.get(i + 2) == Some(&':') {
            self.inline_field(c, i)
        } else {
            Ok(i + 1)
        }
    }

    /// Reads the token starting at `c[i]` (note, rest, bar line, decoration, ...): the index after it.
    fn music_token(&mut self, c: &[char], i: usize) -> Result<usize, ImportError> {
        let ch = c[i];
        match ch {
            ' ' | '\t' | '`' | '\\' | 'y' | '$' | '*' | ')' | '.' | '~' | 'H'..='W' | 'h'..='w' => {
                Ok(i + 1)
            }
            '"' => skip_past(c, i, '"')
                .ok_or_else(|| self.err("unclosed chord symbol or annotation (\")")),
            '!' | '+' => Ok(decoration_end(c, i)),
            '{' => {
                skip_past(c, i, '}').ok_or_else(|| self.err("unclosed grace notes ({ without })"))
            }
            '(' if c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => self.tuplet(c, i + 1),
            '(' => Ok(i + 1), // slur
            '-' => {
                self.tie();
                Ok(i + 1)
            }
            '>' | '<' => Ok(self.broken_rhythm(c, i)),
            '[' if c.get(i + 1) == Some(&'|') && c.get(i + 2) == Some(&']') => Ok(i + 3), // invisible bar
            '|' | ':' | '[' if ch != '[' || c.get(i + 1) == Some(&'|') => self.barline(c, i),
            '[' if c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => Ok(self.ending(c, i + 1)),
            '[' if c.get(i + 1).is_some_and(|d| d.is_ascii_alphabetic())
                && c.get(i + 2) == Some(&':') =>
            {
                self.inline_field(c, i)
            }
            '[' => self.chord(c, i),
            ']' | '}' => Ok(i + 1), // stray closing bracket: nothing to play
            '0'..='9' if matches!(self.items.last(), Some(Item::Bar(_))) => {
                // An ending written apart from its bar, e.g. at the start of the next line.
                Ok(self.ending(c, i))
            }
            '^' | '_' | '=' | 'A'..='G' | 'a'..='g' => {
                let (pitch, units, j) = self.note(c, i)?;
                self.tie_from = None;
                self.push_event(Some(pitch), units);
                Ok(j)
            }
            'z' | 'x' => {
                let (units, j) = parse_length(c, i + 1).map_err(|m| self.err(m))?;
                self.tie_from = None;
                self.push_event(None, units);
                Ok(j)
            }
            'Z' => self.multi_rest(c, i),
            '&' => Err(self.err("voice overlay (&) is not supported")),
            other => Err(self.err(format!("unexpected character '{other}'"))),
        }
    }

    /// `-`: ties the last note (not a rest) to the next one.
    fn tie(&mut self) {
        if let Some(Item::Note {
            tie,
            pitch: Some(_),
            ..
        }) = self.items.last_mut()
        {
            *tie = true;
            self.tie_from = self.last_note;
        }
    }

    /// Broken rhythm `>`, `>>`, `<`, ... at `c[i]`: lengthens one note and shortens the other.
    fn broken_rhythm(&mut self, c: &[char], i: usize) -> usize {
        let ch = c[i];
        let n = c[i..].iter().take_while(|&&x| x == ch).count();
        let small = 0.5f64.powi(n.min(4) as i32);
        let (prev, next) = if ch == '>' {
            (2.0 - small, small)
        } else {
            (small, 2.0 - small)
        };
        if let Some(Item::Note { dur, .. }) = self.items.last_mut() {
            *dur *= prev;
        }
        self.broken_next = next;
        i + n
    }

    /// The ending numbers starting at `c[i]` (`1`, `1,2`, `1-3`): the index after them.
    fn ending(&mut self, c: &[char], i: usize) -> usize {
        let (nums, j) = ending_numbers(c, i);
        self.items.push(Item::Ending(nums));
        j
    }

    /// A multi-measure rest `Z` or `Z4` at `c[i]`: the index after it.
    fn multi_rest(&mut self, c: &[char], i: usize) -> Result<usize, ImportError> {
        let (n, j) = parse_number(c, i + 1);
        let bars = n.unwrap_or(1);
        if bars == 0 || bars > MAX_MULTI_REST {
            return Err(self.err(format!("multi-measure rest Z{bars} is out of range")));
        }
        self.tie_from = None;
        self.items.push(Item::MultiRest {
            bars,
            meter: self.meter,
        });
        Ok(j)
    }

    /// `(p:q:r` starting after the '('.
    fn tuplet(&mut self, c: &[char], mut i: usize) -> Result<usize, ImportError> {
        let (p, j) = parse_number(c, i);
        i = j;
        let p = p.unwrap_or(0);
        if !(1..=64).contains(&p) {
            return Err(self.err(format!("tuplet ({p} is out of range")));
        }
        let mut q = None;
        let mut r = None;
        if c.get(i) == Some(&':') {
            let (n, j) = parse_number(c, i + 1);
            q = n;
            i = j;
            if c.get(i) == Some(&':') {
                let (n, j) = parse_number(c, i + 1);
                r = n;
                i = j;
            }
        }
        let compound = matches!(self.meter, Some((n, _)) if n % 3 == 0 && n > 3);
        let q = q.unwrap_or(match p {
            1 => 1,
            2 | 4 | 8 => 3,
            3 | 6 => 2,
            _ if compound => 3,
            _ => 2,
        });
        let r = r.unwrap_or(p);
        if q == 0 || q > 64 || r == 0 || r > 64 {
            return Err(self.err(format!("tuplet ({p}:{q}:{r} is out of range")));
        }
        self.tuplet = Some(Tuplet {
            remaining: r,
            factor: q as f64 / p as f64,
        });
        Ok(i)
    }

    fn barline(&mut self, c: &[char], start: usize) -> Result<usize, ImportError> {
        let mut i = start;
        while i < c.len() {
            let ch = c[i];
            let ok = match ch {
                '|' | ':' => true,
                ']' => i > start && matches!(c[i - 1], '|' | ':'),
                '[' => c.get(i + 1) == Some(&'|') && c.get(i + 2) != Some(&']'),
                _ => false,
            };
            if !ok {
                break;
            }
            i += 1;
        }
        let s: String = c[start..i].iter().collect();
        let bars_or_brackets = s.chars().filter(|&x| x != ':').count();
        let lead = s.chars().take_while(|&x| x == ':').count();
        let trail = s.chars().rev().take_while(|&x| x == ':').count();
        let colons = s.chars().filter(|&x| x == ':').count();
        let bar = if bars_or_brackets == 0 {
            // "::" is end and start; a lone ':' an end.
            BarLine {
                end: true,
                start: colons >= 2,
                section: false,
            }
        } else {
            BarLine {
                end: lead > 0 || colons > lead + trail,
                start: trail > 0,
                section: s.contains("||") || s.contains(']') || s.contains('['),
            }
        };
        self.items.push(Item::Bar(bar));
        self.bar_acc.clear();
        // An ending right after the bar: |1  :|2  |[1
        if c.get(i).is_some_and(|d| d.is_ascii_digit()) {
            let (nums, j) = ending_numbers(c, i);
            self.items.push(Item::Ending(nums));
            i = j;
        } else if c.get(i) == Some(&'[') && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            let (nums, j) = ending_numbers(c, i + 1);
            self.items.push(Item::Ending(nums));
            i = j;
        }
        Ok(i)
    }

    fn inline_field(&mut self, c: &[char], start: usize) -> Result<usize, ImportError> {
        let close = c[start..]
            .iter()
            .position(|&x| x == ']')
            .ok_or_else(|| self.err("unclosed inline field ([X:... without ])"))?;
        let letter = c[start + 1];
        let value: String = c[start + 3..start + close].iter().collect();
        self.field(letter, &value)?;
        Ok(start + close + 1)
    }

    /// One note with accidentals, octave marks and length: (pitch, length in units, next index).
    fn note(&mut self, c: &[char], mut i: usize) -> Result<(u8, f64, usize), ImportError> {
        let mut explicit = None;
        match (c.get(i), c.get(i + 1)) {
            (Some('^'), Some('^')) => (explicit, i) = (Some(2), i + 2),
            (Some('_'), Some('_')) => (explicit, i) = (Some(-2), i + 2),
            (Some('^'), _) => (explicit, i) = (Some(1), i + 1),
            (Some('_'), _) => (explicit, i) = (Some(-1), i + 1),
            (Some('='), _) => (explicit, i) = (Some(0), i + 1),
            _ => {}
        }
        let ch = *c
            .get(i)
            .ok_or_else(|| self.err("accidental without a note"))?;
        let letter = letter_index(ch)
            .ok_or_else(|| self.err(format!("accidental before '{ch}', not a note")))?;
        let mut octave_c: i32 = if ch.is_ascii_lowercase() { 72 } else { 60 };
        i += 1;
        while let Some(&m) = c.get(i) {
            match m {
                '\'' => octave_c += 12,
                ',' => octave_c -= 12,
                _ => break,
            }
            if !(-24..=192).contains(&octave_c) {
                return Err(self.err("too many octave marks"));
            }
            i += 1;
        }
        let natural = octave_c + SEMITONES[letter];
        let pitch = self.resolve_pitch(letter, natural, explicit)?;
        let (units, j) = parse_length(c, i).map_err(|m| self.err(m))?;
        self.last_note = Some((natural, pitch));
        Ok((pitch, units, j))
    }

    /// A chord `[CEG]2`: the top note, lasting as long as the first note times the chord length.
    fn chord(&mut self, c: &[char], start: usize) -> Result<usize, ImportError> {
        let mut i = start + 1;
        let mut top: Option<(u8, i32)> = None;
        let mut first_units = None;
        let mut tied = false;
        let tie_from = self.tie_from;
        loop {
            let Some(&ch) = c.get(i) else {
                return Err(self.err("unclosed chord ([ without ])"));
            };
            match ch {
                ']' => {
                    i += 1;
                    break;
                }
                ' ' | '\t' | '.' | '~' | ')' | '(' => i += 1,
                '-' => {
                    tied = true;
                    i += 1;
                }
                '"' | '!' => match c[i + 1..].iter().position(|&x| x == ch) {
                    Some(k) => i += k + 2,
                    None => return Err(self.err("unclosed annotation or decoration in a chord")),
                },
                'z' | 'x' => {
                    let (units, j) = parse_length(c, i + 1).map_err(|m| self.err(m))?;
                    first_units.get_or_insert(units);
                    i = j;
                }
                '^' | '_' | '=' | 'A'..='G' | 'a'..='g' => {
                    self.tie_from = tie_from;
                    let (pitch, units, j) = self.note(c, i)?;
                    first_units.get_or_insert(units);
                    if top.is_none_or(|(p, _)| pitch > p) {
                        top = Some((pitch, self.last_note.map_or(0, |l| l.0)));
                    }
                    i = j;
                }
                other => return Err(self.err(format!("unexpected '{other}' in a chord"))),
            }
        }
        let (mult, j) = parse_length(c, i).map_err(|m| self.err(m))?;
        self.tie_from = None;
        if let (None, Some(units)) = (top, first_units) {
            self.push_event(None, units * mult); // a chord of rests
        }
        if let (Some((pitch, natural)), Some(units)) = (top, first_units) {
            self.last_note = Some((natural, pitch));
            self.push_event(Some(pitch), units * mult);
            if tied {
                if let Some(Item::Note { tie, .. }) = self.items.last_mut() {
                    *tie = true;
                }
                self.tie_from = self.last_note;
            }
        }
        Ok(j)
    }
}

/// Decodes quoted-printable residue from e-mailed files (Ryan's Mammoth has some): `=20`
/// (space), `=3D` (`=`) and a trailing `=` (soft line break) are never valid ABC.
fn decode_quoted_printable(line: &str) -> String {
    let mut line = line
        .replace("=20", " ")
        .replace("=09", " ")
        .replace("=3D", "=");
    if line.trim_end().ends_with('=') {
        line = line.trim_end().trim_end_matches('=').to_string();
    }
    line
}

/// The index after the next `close` following `c[i]`, or `None` if there is none.
fn skip_past(c: &[char], i: usize, close: char) -> Option<usize> {
    c[i + 1..]
        .iter()
        .position(|&x| x == close)
        .map(|k| i + k + 2)
}

/// The index after a decoration `!name!` / `+name+` at `c[i]`; a lone '!' (the old ABC line
/// break) or '+' is skipped alone.
fn decoration_end(c: &[char], i: usize) -> usize {
    let ch = c[i];
    match c[i + 1..].iter().position(|&x| x == ch) {
        Some(k)
            if k > 0 && k <= 40 && c[i + 1..i + 1 + k].iter().all(|&x| is_decoration_char(x)) =>
        {
            i + k + 2
        }
        _ => i + 1,
    }
}

fn is_decoration_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ".<>()^_-'/".contains(c)
}

/// Digits at `i`, capped: (value, next index). `None` without digits.
fn parse_number(c: &[char], mut i: usize) -> (Option<u32>, usize) {
    let mut v: Option<u32> = None;
    while let Some(d) = c.get(i).and_then(|x| x.to_digit(10)) {
        v = Some(
            v.unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(d)
                .min(u32::MAX / 16),
        );
        i += 1;
    }
    (v, i)
}

/// A note length after the letter: `2`, `/2`, `/`, `//`, `3/2`: (multiple of L, next index).
fn parse_length(c: &[char], i: usize) -> Result<(f64, usize), String> {
    let (num, mut i) = parse_number(c, i);
    let num = num.unwrap_or(1);
    let mut den: u32 = 1;
    while c.get(i) == Some(&'/') {
        let (d, j) = parse_number(c, i + 1);
        den = den.saturating_mul(d.unwrap_or(2));
        i = j;
    }
    if num == 0 || den == 0 {
        return Err("zero note length".into());
    }
    if num > MAX_NUMBER || den > MAX_NUMBER {
        return Err(format!("note length {num}/{den} is out of range"));
    }
    Ok((num as f64 / den as f64, i))
}

/// Ending numbers `1`, `1,3`, `1-3` at `i`: (numbers, next index).
fn ending_numbers(c: &[char], mut i: usize) -> (Vec<u32>, usize) {
    let mut out = Vec::new();
    loop {
        let (n, j) = parse_number(c, i);
        let Some(n) = n else { break };
        i = j;
        let n = n.min(64);
        if c.get(i) == Some(&'-') && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            let (m, j) = parse_number(c, i + 1);
            i = j;
            let m = m.unwrap_or(n).min(64);
            out.extend(n..=m.max(n));
        } else {
            out.push(n);
        }
        if c.get(i) == Some(&',') && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            i += 1;
        } else {
            break;
        }
    }
    (out, i)
}

/// Indices of `items` in performed order, or the written order when the repeats are malformed.
fn perform(items: &[Item]) -> Vec<usize> {
    expand_repeats(items).unwrap_or_else(|| (0..items.len()).collect())
}

/// Whether an ending containing `pass` follows `i` before the next start-repeat.
fn later_ending_has(items: &[Item], i: usize, pass: u32) -> bool {
    for item in &items[i + 1..] {
        match item {
            Item::Bar(b) if b.start => return false,
            Item::Ending(nums) if nums.contains(&pass) => return true,
            _ => {}
        }
    }
    false
}

fn expand_repeats(items: &[Item]) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(items.len() * 2);
    let mut start = 0usize;
    let mut explicit_start = false;
    let mut pass = 1u32;
    let mut ending: Option<&[u32]> = None;
    let mut jumps = vec![0u32; items.len()];
    let mut i = 0;
    let mut steps = 0usize;
    while i < items.len() {
        steps += 1;
        if out.len() > MAX_PERFORMED || steps > 4 * MAX_PERFORMED {
            return None;
        }
        let playing = ending.is_none_or(|e| e.contains(&pass));
        match &items[i] {
            Item::Ending(nums) => {
                if nums.is_empty() || nums.iter().all(|&n| n > pass) {
                    // An ending we cannot reach by repeating: the repeat signs are inconsistent.
                    return None;
                }
                ending = Some(nums);
            }
            Item::Bar(b) => {
                out.push(i);
                if b.end && playing {
                    let again = match ending {
                        None => pass == 1 && jumps[i] == 0,
                        Some(e) => {
                            jumps[i] < 16
                                && (e.contains(&(pass + 1)) || later_ending_has(items, i, pass + 1))
                        }
                    };
                    if again {
                        jumps[i] += 1;
                        pass += 1;
                        ending = None;
                        i = start;
                        continue;
                    }
                }
                if b.end {
                    if playing {
                        // The repeated section is done; a later :| without |: repeats from here.
                        start = i + 1;
                        pass = 1;
                        explicit_start = false;
                    }
                    ending = None;
                }
                if b.start {
                    start = i + 1;
                    pass = 1;
                    ending = None;
                    explicit_start = true;
                } else if b.section && !b.end {
                    if ending.is_some() {
                        if playing {
                            start = i + 1;
                            pass = 1;
                            explicit_start = false;
                        }
                        ending = None;
                    } else if pass == 1 && !explicit_start {
                        start = i + 1;
                    }
                }
            }
            _ => {
                if playing {
                    out.push(i);
                }
            }
        }
        i += 1;
    }
    Some(out)
}

/// Lays the performed items out in time: notes (ties merged) and bars.
fn layout(items: &[Item], order: &[usize], id: &str) -> Result<(Vec<Note>, Vec<Bar>), ImportError> {
    const EPS: f64 = 1e-9;
    let mut notes: Vec<Note> = Vec::new();
    let mut bars: Vec<Bar> = Vec::new();
    let mut t = 0.0f64;
    let mut bar_start = 0.0f64;
    let mut bar_meter: Option<Meter> = None;
    let mut tie_open = false;
    let close =
        |t: f64, bar_start: &mut f64, bar_meter: &mut Option<Meter>, bars: &mut Vec<Bar>| {
            if t - *bar_start > EPS {
                match bar_meter.flatten() {
                    Some(ts) => bars.push(Bar {
                        start: *bar_start,
                        duration: t - *bar_start,
                        time_signature: ts,
                    }),
                    None => {
                        return Err(ImportError::new(
                            id,
                            "meter",
                            "free meter (M:none, or no M: field): bars have no time signature",
                        ))
                    }
                }
            }
            *bar_start = t;
            *bar_meter = None;
            Ok(())
        };
    for &k in order {
        match &items[k] {
            Item::Note {
                pitch,
                dur,
                tie,
                meter,
            } => {
                if bar_meter.is_none() {
                    bar_meter = Some(*meter);
                }
                let merge = tie_open
                    && pitch.is_some()
                    && notes
                        .last()
                        .is_some_and(|n| n.pitch == *pitch && (n.end() - t).abs() < EPS);
                match (merge, notes.last_mut()) {
                    (true, Some(last)) => last.duration += dur,
                    _ => notes.push(Note {
                        onset: t,
                        duration: *dur,
                        pitch: *pitch,
                    }),
                }
                tie_open = *tie && pitch.is_some();
                t += dur;
            }
            Item::MultiRest { bars: n, meter } => {
                close(t, &mut bar_start, &mut bar_meter, &mut bars)?;
                let (num, den) = meter.ok_or_else(|| {
                    ImportError::new(
                        id,
                        "meter",
                        "multi-measure rest (Z) in free meter has no length",
                    )
                })?;
                let len = num as f64 * 4.0 / den as f64;
                for _ in 0..*n {
                    bar_meter = Some(*meter);
                    notes.push(Note {
                        onset: t,
                        duration: len,
                        pitch: None,
                    });
                    t += len;
                    close(t, &mut bar_start, &mut bar_meter, &mut bars)?;
                }
                tie_open = false;
            }
            Item::Bar(_) => close(t, &mut bar_start, &mut bar_meter, &mut bars)?,
            Item::Ending(_) => {}
        }
    }
    close(t, &mut bar_start, &mut bar_meter, &mut bars)?;
    Ok((notes, bars))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::corpus::{wheel_for_tests, Corpus};
    use crate::music::tokenize;
    use std::collections::BTreeMap;

    fn parse(m: &str, l: &str, k: &str, body: &str) -> Melody {
        let text = format!("X:1\nT:Test\nM:{m}\nL:{l}\nK:{k}\n{body}\n");
        let mut r = parse_tunes(&text, "t.abc");
        assert_eq!(r.len(), 1);
        r.pop().unwrap().unwrap_or_else(|e| panic!("{e}"))
    }

    fn pitches(m: &Melody) -> Vec<u8> {
        m.notes.iter().filter_map(|n| n.pitch).collect()
    }

    fn durations(m: &Melody) -> Vec<f64> {
        m.notes.iter().map(|n| n.duration).collect()
    }

    fn bar_lengths(m: &Melody) -> Vec<f64> {
        m.bars.iter().map(|b| b.duration).collect()
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    fn assert_consistent(m: &Melody) {
        let mut t = 0.0;
        for n in &m.notes {
            assert!((n.onset - t).abs() < 1e-9, "{m:?}");
            assert!(n.duration > 0.0);
            t = n.end();
        }
        let mut s = 0.0;
        for b in &m.bars {
            assert!((b.start - s).abs() < 1e-9);
            s = b.end();
        }
        assert!((s - t).abs() < 1e-9, "bars end at {s}, notes at {t}");
    }

    #[test]
    fn ties_merge_also_across_barlines() {
        let m = parse("4/4", "1/4", "C", "C2-C2|D4-|D2 E2|]");
        assert_eq!(pitches(&m), vec![60, 62, 64]);
        assert!(close(&durations(&m), &[4.0, 6.0, 2.0]));
        assert!(close(&bar_lengths(&m), &[4.0, 4.0, 4.0]));
        assert_consistent(&m);
        // A "tie" between different pitches is a slur; a tied note keeps its accidental.
        let m = parse("4/4", "1/4", "C", "G3-A|^F4-|F2 F2|");
        assert_eq!(pitches(&m), vec![67, 69, 66, 65]);
        assert!(close(&durations(&m), &[3.0, 1.0, 6.0, 2.0]));
        // Tie on a chord.
        let m = parse("4/4", "1/4", "C", "[CE]2-[CE]2|");
        assert!(close(&durations(&m), &[4.0]));
    }

    #[test]
    fn triplets_and_general_tuplets() {
        let m = parse("2/4", "1/8", "C", "(3CDE F2|(3:2:2GA B c|");
        assert!(close(
            &durations(&m),
            &[
                1.0 / 3.0,
                1.0 / 3.0,
                1.0 / 3.0,
                1.0,
                1.0 / 3.0,
                1.0 / 3.0,
                0.5,
                0.5
            ]
        ));
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 67, 69, 71, 72]);
        // Quintuplet in simple meter: 5 in the time of 2 ... of 4 sixteenths with (5:4.
        let m = parse("4/4", "1/16", "C", "(5:4CDEFG c12|");
        assert!(close(&durations(&m)[..5], &[0.2; 5]));
        assert_eq!(m.bars.len(), 1);
        // A tuplet followed by a slur: (3(ABc)
        let m = parse("2/4", "1/8", "C", "(3(ABc) d2|");
        assert!(close(
            &durations(&m),
            &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 1.0]
        ));
    }

    #[test]
    fn broken_rhythm() {
        let m = parse("4/4", "1/8", "C", "A>B C<D E>>F G<<A|");
        assert!(close(
            &durations(&m),
            &[0.75, 0.25, 0.25, 0.75, 0.875, 0.125, 0.125, 0.875]
        ));
        // With a tie after the dotted note (O'Neill's writes d>-c).
        let m = parse("4/4", "1/8", "C", "d>-c B2 A4|");
        assert!(close(&durations(&m), &[0.75, 0.25, 1.0, 2.0]));
    }

    #[test]
    fn repeats_and_endings_are_expanded() {
        let m = parse("2/4", "1/4", "C", "|:C D|1 E F:|2 G A|]");
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 60, 62, 67, 69]);
        assert!(close(&bar_lengths(&m), &[2.0; 4]));
        assert_consistent(&m);
        // [1 and [2 forms, ending lists.
        let m = parse("2/4", "1/4", "C", "|:C D|[1 E F:|[2 G A||");
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 60, 62, 67, 69]);
        let m = parse("2/4", "1/4", "C", "|:C D|1,2 E F:|3 G A|]");
        assert_eq!(
            pitches(&m),
            vec![60, 62, 64, 65, 60, 62, 64, 65, 60, 62, 67, 69]
        );
        // :: and :|: join two repeated sections; a :| without |: repeats from the start.
        let m = parse("2/4", "1/4", "C", "C D::E F:|");
        assert_eq!(pitches(&m), vec![60, 62, 60, 62, 64, 65, 64, 65]);
        let m = parse("2/4", "1/4", "C", "C D:|:E F:|G A|]");
        assert_eq!(pitches(&m), vec![60, 62, 60, 62, 64, 65, 64, 65, 67, 69]);
        // A second section without |: repeats from the end of the first.
        let m = parse("2/4", "1/4", "C", "C D:|E F:|");
        assert_eq!(pitches(&m), vec![60, 62, 60, 62, 64, 65, 64, 65]);
        // A section after a double bar repeats from the double bar.
        let m = parse("2/4", "1/4", "C", "C D||E F:|");
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 64, 65]);
        // A double bar inside a section opened by |: does not move the repeat start.
        let m = parse("2/4", "1/4", "C", "|:C D||E F:|");
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 60, 62, 64, 65]);
        // Endings on their own line.
        let m = parse("2/4", "1/4", "C", "|:C D|\n[1 E F:|\n[2 G A|]");
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 60, 62, 67, 69]);
        // Pickup repeated with the section, split bar stays split.
        let m = parse("4/4", "1/4", "C", "G|c d e f|g3:|");
        assert_eq!(
            pitches(&m),
            vec![67, 72, 74, 76, 77, 79, 67, 72, 74, 76, 77, 79]
        );
        assert!(close(&bar_lengths(&m), &[1.0, 4.0, 3.0, 1.0, 4.0, 3.0]));
        assert!(tokenize::measures(&m).is_ok());
    }

    #[test]
    fn malformed_repeats_fall_back_to_linear() {
        // A second ending without a repeat sign before it.
        let m = parse("2/4", "1/4", "C", "C D|1 E F|2 G A||");
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 67, 69]);
        // Stray repeat marks never loop forever.
        let m = parse("2/4", "1/4", "C", ":|:|: C D :| :| :: E F :|2 G A |1 B c:|");
        assert!(!m.notes.is_empty());
        assert_consistent(&m);
    }

    #[test]
    fn pickup_bar() {
        let m = parse("4/4", "1/4", "G", "D|G A B c|d4|]");
        assert!(close(&bar_lengths(&m), &[1.0, 4.0, 4.0]));
        assert_eq!(m.bars[0].time_signature, (4, 4));
        let ms = tokenize::measures(&m).unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0].0[18], 62);
    }

    #[test]
    fn key_signatures_and_modes() {
        let scale = "C D E F G A B c|";
        let k = |key: &str| pitches(&parse("4/4", "1/8", key, scale));
        assert_eq!(k("C"), vec![60, 62, 64, 65, 67, 69, 71, 72]);
        assert_eq!(k("G"), vec![60, 62, 64, 66, 67, 69, 71, 72]);
        assert_eq!(k("Dm"), vec![60, 62, 64, 65, 67, 69, 70, 72]);
        assert_eq!(k("D minor"), k("Dm"));
        assert_eq!(k("A Dorian"), k("G"));
        assert_eq!(k("Ador"), k("G"));
        assert_eq!(k("Dmix"), k("G"));
        assert_eq!(k("E Minor"), k("G"));
        assert_eq!(k("EM"), k("G")); // mode names are case-insensitive: M is minor
        assert_eq!(k("Bb"), vec![60, 62, 63, 65, 67, 69, 70, 72]);
        assert_eq!(k("F#m"), vec![61, 62, 64, 66, 68, 69, 71, 73]);
        assert_eq!(k("Glyd"), vec![61, 62, 64, 66, 67, 69, 71, 73]);
        assert_eq!(k("Bphr"), vec![60, 62, 64, 66, 67, 69, 71, 72]);
        assert_eq!(k("Bloc"), k("C"));
        assert_eq!(k("HP"), k("C"));
        assert_eq!(k("Hp"), vec![61, 62, 64, 66, 67, 69, 71, 73]);
        assert_eq!(k("D =c"), vec![60, 62, 64, 66, 67, 69, 71, 72]);
        assert_eq!(k("Dmix=c"), k("G"));
        assert_eq!(k("D exp ^f"), vec![60, 62, 64, 66, 67, 69, 71, 72]);
        assert_eq!(k("G clef=treble"), k("G"));
        assert_eq!(k("G % comment"), k("G"));
        let e = parse_tunes("X:1\nM:4/4\nK:Bn\nC|\n", "t.abc")
            .pop()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.reason, "parse");
        assert!(e.message.contains("mode"), "{e}");
    }

    #[test]
    fn accidentals_carry_through_the_bar_and_reset() {
        let m = parse("4/4", "1/8", "C", "^F G F f F2 z2|F _B B =B|");
        assert_eq!(pitches(&m), vec![66, 67, 66, 78, 66, 65, 70, 70, 71]);
        let m = parse("4/4", "1/8", "G", "=F F ^^F __B B c4|F|");
        assert_eq!(pitches(&m), vec![65, 65, 67, 69, 69, 72, 66]);
        // %%propagate-accidentals octave: only the same octave.
        let text = "X:1\nM:4/4\nL:1/8\n%%propagate-accidentals octave\nK:C\n^F f F c4 z|\n";
        let m = parse_tunes(text, "t.abc").pop().unwrap().unwrap();
        assert_eq!(pitches(&m), vec![66, 77, 66, 72]);
    }

    #[test]
    fn octave_marks() {
        let m = parse("4/4", "1/4", "C", "C, C c c'|C,, c'' B, b|");
        assert_eq!(pitches(&m), vec![48, 60, 72, 84, 36, 96, 59, 83]);
    }

    #[test]
    fn note_lengths() {
        let m = parse("4/4", "1/8", "C", "A2 A/2 A/ A// A3/2 A3/ A A4 A/4 A//|");
        assert!(close(
            &durations(&m),
            &[1.0, 0.25, 0.25, 0.125, 0.75, 0.75, 0.5, 2.0, 0.125, 0.125]
        ));
        // Default L: 1/16 below 3/4, else 1/8.
        let m = parse_tunes("X:1\nM:2/4\nK:C\nA4 A4|\n", "t")
            .pop()
            .unwrap()
            .unwrap();
        assert!(close(&durations(&m), &[1.0, 1.0]));
        let m = parse_tunes("X:1\nM:6/8\nK:C\nA3 A3|\n", "t")
            .pop()
            .unwrap()
            .unwrap();
        assert!(close(&durations(&m), &[1.5, 1.5]));
        assert_eq!(m.bars[0].time_signature, (6, 8));
    }

    #[test]
    fn inline_and_body_fields() {
        let m = parse(
            "4/4",
            "1/8",
            "C",
            "F2 F2 [L:1/4] F F|[K:D] F F [M:2/4]|F F|\nK:C\nL:1/8\nF4|",
        );
        assert_eq!(pitches(&m), vec![65, 65, 65, 65, 66, 66, 66, 66, 65]);
        assert!(close(
            &durations(&m),
            &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]
        ));
        let ts: Vec<_> = m.bars.iter().map(|b| b.time_signature).collect();
        assert_eq!(ts, vec![(4, 4), (4, 4), (2, 4), (2, 4)]);
        // C and C| meters.
        let m = parse("C|", "1/8", "C", "A8|");
        assert_eq!(m.bars[0].time_signature, (2, 2));
        let m = parse("C", "1/8", "C", "A8|");
        assert_eq!(m.bars[0].time_signature, (4, 4));
        // Q:, P:, w: and friends are ignored.
        let m = parse(
            "C",
            "1/8",
            "C",
            "Q:1/4=120\nP:A\nA8|\nw: la la\nW: words\nN: note",
        );
        assert_eq!(pitches(&m), vec![69]);
    }

    #[test]
    fn chords_keep_the_top_note() {
        let m = parse("4/4", "1/8", "C", "[CEG]2 [G,Ec] [E2e2] [c/e/]4 z|");
        assert_eq!(pitches(&m), vec![67, 72, 76, 76]);
        assert!(close(&durations(&m), &[1.0, 0.5, 1.0, 1.0, 0.5]));
    }

    #[test]
    fn symbols_graces_and_decorations_are_skipped() {
        let body = "\"Am\"A !trill!B {ga}c ~d .e Te uf vg +fermata+a (Bc) `A \"^text\"B k[A2E2]|\\\nH!ped!C S|";
        let m = parse("C", "1/8", "C", body);
        assert_eq!(
            pitches(&m),
            vec![69, 71, 72, 74, 76, 76, 77, 79, 81, 71, 72, 69, 71, 69, 60]
        );
        // An unpaired '!' is the old ABC line break.
        let m = parse("C", "1/8", "C", "A2 B2 c2 d2|!e8|");
        assert_eq!(pitches(&m), vec![69, 71, 72, 74, 76]);
    }

    #[test]
    fn rests_and_multi_measure_rests() {
        let m = parse("4/4", "1/4", "C", "C z x D|Z2|E4|");
        let p: Vec<_> = m.notes.iter().map(|n| n.pitch).collect();
        assert_eq!(
            p,
            vec![Some(60), None, None, Some(62), None, None, Some(64)]
        );
        assert!(close(&bar_lengths(&m), &[4.0; 4]));
        assert_consistent(&m);
    }

    #[test]
    fn first_voice_only() {
        let text = "X:1\nT:Two voices\nM:4/4\nL:1/4\nV:1\nV:2 merge\nK:C\n[V:1] C D E F|G4|\n[V:2] x4|C,4|\n[V:1] A4|]\n[V:2] x4|]\n";
        let m = parse_tunes(text, "t.abc").pop().unwrap().unwrap();
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 67, 69]);
        let text = "X:1\nM:4/4\nL:1/4\nK:C\nV:A\nC D E F|\nV:B\nc d e f|\nV:A\nG4|\n";
        let m = parse_tunes(text, "t.abc").pop().unwrap().unwrap();
        assert_eq!(pitches(&m), vec![60, 62, 64, 65, 67]);
    }

    #[test]
    fn multi_tune_files_and_ids() {
        let text = "% file header\n\nX:1\nT:First\nT:Alt title\nM:4/4\nK:G\nG4|\n\nX:2\nT:Second\nM:2/4\nL:1/8\nK:D\nF4|\n\nX:2\nT:Dup\nM:2/4\nK:D\nF4|\n";
        let r = parse_tunes(text, "f.abc");
        assert_eq!(r.len(), 3);
        let ms: Vec<Melody> = r.into_iter().map(|x| x.unwrap()).collect();
        assert_eq!(ms[0].id, "f.abc#1");
        assert_eq!(ms[0].title, "First");
        assert_eq!(ms[1].id, "f.abc#2");
        assert_eq!(ms[2].id, "f.abc#3");
        assert_eq!(ms[1].title, "Second");
        assert_eq!(pitches(&ms[1]), vec![66]);
        // No X: at all but a K: -> one tune.
        let r = parse_tunes("M:4/4\nL:1/4\nK:C\nC D E F|\n", "frag.abc");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].as_ref().unwrap().id, "frag.abc#1");
    }

    #[test]
    fn bad_input_gives_clear_errors() {
        let text = "X:1\nT:Good\nM:4/4\nL:1/4\nK:C\nC D E F|\n\nX:2\nT:Garbage\nM:4/4\nL:1/4\nK:C\nC D E F|\n@@@ ### <<>> ;;; ???\n\nX:3\nT:Also good\nM:4/4\nL:1/4\nK:C\nG A B c|\n";
        let r = parse_tunes(text, "g.abc");
        assert_eq!(r.len(), 3);
        assert!(r[0].is_ok() && r[2].is_ok());
        let e = r[1].as_ref().unwrap_err();
        assert_eq!(e.reason, "parse");
        assert_eq!(e.source, "g.abc#2");
        assert!(e.message.contains("line 14"), "{e}");
        assert!(e.to_string().starts_with("g.abc#2: "));

        let r = parse_tunes("", "empty.abc");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].as_ref().unwrap_err().reason, "empty");

        let r = parse_tunes("X:1\nT:Nothing\nM:4/4\nK:C\n", "n.abc");
        assert_eq!(r[0].as_ref().unwrap_err().reason, "empty");
        let r = parse_tunes("X:1\nM:4/4\nK:C\nz4|\n", "n.abc");
        assert_eq!(r[0].as_ref().unwrap_err().reason, "empty");

        let r = parse_tunes("X:1\nM:none\nK:C\nCDEF|\n", "free.abc");
        assert_eq!(r[0].as_ref().unwrap_err().reason, "meter");
        let r = parse_tunes("X:1\nK:C\nCDEF|\n", "nometer.abc");
        assert_eq!(r[0].as_ref().unwrap_err().reason, "meter");

        for (body, what) in [
            ("\"Am A B|", "unclosed"),
            ("{ga A B|", "grace"),
            ("[CEG A|", "chord"),
            ("A0 B|", "zero"),
            ("c''''''''' B|", "range"),
            ("A & B|", "overlay"),
            ("A99999/3 B|", "range"),
        ] {
            let text = format!("X:7\nM:4/4\nK:C\n{body}\n");
            let e = parse_tunes(&text, "b.abc").pop().unwrap().unwrap_err();
            assert_eq!(e.source, "b.abc#7");
            assert!(e.message.contains(what), "{body}: {e}");
        }
    }

    #[test]
    fn no_panic_on_garbage() {
        // A small deterministic fuzz over ABC-ish characters and arbitrary bytes.
        let alphabet: Vec<char> =
            "ABCDEFGabcdefgzxZ|:[]()123456789/<>-^_=,' \n\"!{}+.~TuvKLMX%\\&@#"
                .chars()
                .collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let len = (next() % 120) as usize;
            let mut s = String::from(if round % 2 == 0 {
                "X:1\nM:4/4\nL:1/8\nK:G\n"
            } else {
                ""
            });
            for _ in 0..len {
                if round % 5 == 0 {
                    s.push(char::from_u32((next() % 0x3000) as u32).unwrap_or('?'));
                } else {
                    s.push(alphabet[(next() % alphabet.len() as u64) as usize]);
                }
            }
            for m in parse_tunes(&s, "fuzz").into_iter().flatten() {
                assert_consistent(&m);
                let _ = tokenize::measures(&m);
            }
        }
        let bytes: Vec<u8> = (0..=255u8)
            .chain(b"X:1\nK:C\nABC|".iter().copied())
            .collect();
        let _ = parse_tunes(&decode(&bytes), "bytes");
    }

    #[test]
    fn read_file_tolerates_latin1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.abc");
        std::fs::write(&path, b"X:1\nT:Caf\xe9\nM:4/4\nL:1/4\nK:C\nC D E F|\n").unwrap();
        let r = read_file(&path);
        assert_eq!(r[0].as_ref().unwrap().title, "Caf\u{e9}");
        let r = read_file(&dir.path().join("missing.abc"));
        assert_eq!(r[0].as_ref().unwrap_err().reason, "unreadable");
    }

    /// The first M: of a tune's header, as written.
    fn header_meter(lines: &[(usize, &str)]) -> Option<Meter> {
        lines.iter().find_map(|(_, l)| match field(l.trim_start()) {
            Some(('M', v)) => parse_meter(v).ok(),
            _ => None,
        })
    }

    /// What makes a melody's onsets miss the 24-tick grid: `16th-triplet` (sixths of a beat),
    /// `32nd` (eighths of a beat), or `other`, judged from bar starts.
    fn off_grid_kind(m: &Melody) -> &'static str {
        let mut kinds = (false, false, false);
        for n in &m.notes {
            let Some(b) = m.bars.iter().rev().find(|b| b.start <= n.onset + 1e-9) else {
                continue;
            };
            let f = n.onset - b.start;
            let on = |d: f64| ((f * d).round() - f * d).abs() < 1e-6;
            if on(4.0) || on(3.0) {
                continue;
            }
            if on(6.0) {
                kinds.0 = true;
            } else if on(8.0) {
                kinds.1 = true;
            } else {
                kinds.2 = true;
            }
        }
        match kinds {
            (_, _, true) => "other",
            (true, true, _) => "16th-triplet+32nd",
            (true, false, _) => "16th-triplet",
            (false, true, _) => "32nd",
            _ => "bar-shift",
        }
    }

    /// The melody with 2/4 bars read as 4/4 bars in doubled time (what an eighth-note beat in 2/4
    /// would give); used only to report what that reading would change.
    fn doubled_two_four(m: &Melody) -> Melody {
        let mut d = m.clone();
        for n in &mut d.notes {
            n.onset *= 2.0;
            n.duration *= 2.0;
        }
        for b in &mut d.bars {
            b.start *= 2.0;
            b.duration *= 2.0;
            if b.time_signature == (2, 4) {
                b.time_signature = (4, 4);
            }
        }
        d
    }

    /// Parses every tune of Ryan's Mammoth, O'Neill's and Aird's, then cuts the tunes in 4-beat
    /// meters (4/4, C, 2/2, C|, 2/4 by their first M:) into measures.
    ///
    /// The parser must read at least 95% of those tunes. Most tokenizer skips are rhythms the
    /// 24-tick grid cannot hold (sixteenth-note triplets and 32nd notes, mostly from `>` with
    /// L:1/16) or overfull bars in the transcriptions; they are counted by kind, and a floor on
    /// the tokenized share guards against regressions.
    #[test]
    fn folk_corpus() {
        let Some(wheel) = wheel_for_tests() else {
            return;
        };
        let mut corpus = Corpus::open(&wheel).unwrap();
        let folders = [
            "music21/corpus/ryansMammoth/",
            "music21/corpus/oneills1850/",
            "music21/corpus/airdsAirs/",
        ];
        let debug = std::env::var_os("ABC_DEBUG").is_some();
        let (mut all4, mut all4_parsed, mut all4_ok, mut all_doubled) =
            (0usize, 0usize, 0usize, 0usize);
        for folder in folders {
            let (mut tunes, mut parsed, mut four, mut four_parsed, mut four_ok, mut doubled_ok) =
                (0, 0, 0, 0, 0, 0);
            let mut parse_errors: BTreeMap<&str, usize> = BTreeMap::new();
            let mut skips: BTreeMap<String, usize> = BTreeMap::new();
            let mut examples: Vec<String> = Vec::new();
            for name in corpus.list(folder, &[".abc"]) {
                let text = decode(&corpus.read(&name).unwrap());
                let source = name.trim_start_matches("music21/corpus/");
                let text_n = text.replace("\r\n", "\n").replace('\r', "\n");
                let raw = split_tunes(&text_n);
                let results = parse_tunes(&text, source);
                assert_eq!(raw.len().max(1), results.len());
                for (k, r) in results.into_iter().enumerate() {
                    tunes += 1;
                    let meter = raw.get(k).and_then(|t| header_meter(&t.lines)).flatten();
                    let is4 = meter.is_some_and(tokenize::meter_supported);
                    four += is4 as usize;
                    let m = match r {
                        Ok(m) => {
                            parsed += 1;
                            assert_consistent(&m);
                            m
                        }
                        Err(e) => {
                            assert!(!e.message.is_empty() && e.source.starts_with(source));
                            *parse_errors.entry(e.reason).or_default() += 1;
                            if examples.len() < 8 || debug {
                                examples.push(format!("  {e}"));
                            }
                            continue;
                        }
                    };
                    if !is4 {
                        continue;
                    }
                    four_parsed += 1;
                    match tokenize::measures(&m) {
                        Ok(_) => four_ok += 1,
                        Err(e) => {
                            let key = if e.reason == "off_grid" {
                                format!("off_grid ({})", off_grid_kind(&m))
                            } else {
                                e.reason.to_string()
                            };
                            *skips.entry(key).or_default() += 1;
                            if meter == Some((2, 4))
                                && tokenize::measures(&doubled_two_four(&m)).is_ok()
                            {
                                doubled_ok += 1;
                            }
                            if debug {
                                examples.push(format!("  skip {e}"));
                            }
                        }
                    }
                }
            }
            eprintln!(
                "{folder}: {tunes} tunes, {parsed} parsed, parse errors {parse_errors:?}\n  \
                 4-beat meters: {four}, parsed {four_parsed}, tokenized {four_ok} ({:.1}%), skipped {skips:?}\n  \
                 2/4 read in doubled time would tokenize {doubled_ok} more",
                100.0 * four_ok as f64 / four.max(1) as f64
            );
            for e in &examples {
                eprintln!("{e}");
            }
            all4 += four;
            all4_parsed += four_parsed;
            all4_ok += four_ok;
            all_doubled += doubled_ok;
        }
        let parse_rate = all4_parsed as f64 / all4.max(1) as f64;
        let rate = all4_ok as f64 / all4.max(1) as f64;
        eprintln!(
            "all 4-beat tunes: {all4}, parsed {all4_parsed} ({:.1}%), tokenized {all4_ok} ({:.1}%); \
             with 2/4 in doubled time {} ({:.1}%)",
            100.0 * parse_rate,
            100.0 * rate,
            all4_ok + all_doubled,
            100.0 * (all4_ok + all_doubled) as f64 / all4.max(1) as f64
        );
        assert!(all4 > 2500);
        assert!(
            parse_rate >= 0.95,
            "only {:.1}% of 4-beat tunes parse",
            100.0 * parse_rate
        );
        assert!(
            rate >= 0.80,
            "only {:.1}% of 4-beat tunes tokenize",
            100.0 * rate
        );
    }
}
