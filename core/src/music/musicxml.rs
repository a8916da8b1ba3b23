//! MusicXML import (`.mxl`, `.xml`, `.musicxml`): one monophonic line per score.
//!
//! - **Part**: the part whose `part-name` is "Soprano" (case-insensitive, trimmed), else the first.
//! - **Voice**: the voice of the part's first note; a measure without that voice uses its own
//!   first voice. Other voices only count towards the measure length.
//! - **Notes**: `divisions` (and its changes), ties merged, rests kept, chords reduced to their
//!   top note, `backup`/`forward` followed, grace and cue notes skipped. A note without
//!   `<duration>` gets one from `<type>`, dots and `<time-modification>`.
//! - **Bars**: one per `<measure>` (empty ones dropped), lasting as far as any voice reaches in it,
//!   so a pickup or a bar split around a repeat sign is a short bar. The time signature in force
//!   (default 4/4) is recorded with each bar.
//! - **Repeats**: forward/backward repeat barlines (`times`), and endings (`number="1, 2"`,
//!   `type` start/stop/discontinue) are expanded into the order of performance. A malformed
//!   structure (an ending never closed, a measure never played, a run-away loop) falls back to
//!   the written order.
//! - **Encodings**: MusicXML 1.0 (DOCTYPE only) to 4.0, `score-partwise` and `score-timewise`,
//!   UTF-8 with or without BOM, UTF-16 (BOM or not), and declared ISO-8859-1 / windows-1252.
//!
//! Failures are [`ImportError`]s with reason `io` (unreadable file), `container` (bad `.mxl`),
//! `parse` (malformed XML, no parts, bad numbers or pitches) or `empty` (no notes).

use super::melody::{Bar, ImportError, Melody, Note};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::borrow::Cow;
use std::io::{Cursor, Read};

/// Largest decompressed size read from one `.mxl` entry (as large as a plain music file).
const MAX_ENTRY_BYTES: u64 = crate::files::MAX_MUSIC_FILE;
/// Time tolerance in quarter notes for ties and overlaps.
const EPS: f64 = 1e-7;
/// Largest number of extra passes one backward repeat may ask for.
const MAX_REPEAT_TIMES: u32 = 16;
/// Deepest element nesting accepted (MusicXML needs about 10; deeper trees would overflow
/// the stack when they are walked or dropped).
const MAX_DEPTH: usize = 256;

/// Parses a compressed MusicXML container (.mxl): finds the root file through META-INF/container.xml.
pub fn parse_mxl(bytes: &[u8], source: &str) -> Result<Melody, ImportError> {
    let xml = mxl_root_file(bytes, source)?;
    parse_xml(&xml, source)
}

/// The bytes of the root MusicXML file of an `.mxl` container.
fn mxl_root_file(bytes: &[u8], source: &str) -> Result<Vec<u8>, ImportError> {
    let err = |m: String| ImportError::new(source, "container", m);
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| err(format!("not a readable .mxl (zip) container: {e}")))?;
    let root = match read_entry(&mut zip, "META-INF/container.xml") {
        Ok(container) => root_file_from_container(&container)
            .map_err(|m| err(format!("META-INF/container.xml: {m}")))?,
        Err(_) => {
            // No container: take the first MusicXML file outside META-INF.
            zip.file_names()
                .filter(|n| !n.starts_with("META-INF/"))
                .find(|n| {
                    let l = n.to_ascii_lowercase();
                    l.ends_with(".xml") || l.ends_with(".musicxml")
                })
                .map(str::to_owned)
                .ok_or_else(|| err("no META-INF/container.xml and no .xml/.musicxml file".into()))?
        }
    };
    read_entry(&mut zip, &root).map_err(|m| err(format!("root file {root:?}: {m}")))
}

/// Parses uncompressed MusicXML (score-partwise) bytes.
pub fn parse_xml(bytes: &[u8], source: &str) -> Result<Melody, ImportError> {
    let perr = |m: String| ImportError::new(source, "parse", m);
    let text = decode_text(bytes).map_err(perr)?;
    let root = build_dom(&text).map_err(perr)?;
    let root = match root.name.as_str() {
        "score-partwise" => root,
        "score-timewise" => timewise_to_partwise(root),
        other => {
            return Err(perr(format!(
                "root element is <{other}>, not <score-partwise> or <score-timewise>"
            )))
        }
    };
    let title = root
        .child("work")
        .and_then(|w| w.child_text("work-title"))
        .filter(|t| !t.is_empty())
        .or_else(|| root.child_text("movement-title").filter(|t| !t.is_empty()))
        .unwrap_or("")
        .to_owned();
    let part = choose_part(&root).ok_or_else(|| perr("the score has no <part>".into()))?;
    let measures = read_part(part).map_err(perr)?;
    let order = expand_repeats(&measures).unwrap_or_else(|| (0..measures.len()).collect());
    let (notes, bars) = flatten(&measures, &order);
    if !notes.iter().any(|n| n.pitch.is_some()) {
        return Err(ImportError::new(
            source,
            "empty",
            "the chosen part has no notes",
        ));
    }
    Ok(Melody {
        id: source.to_owned(),
        title,
        notes,
        bars,
    })
}

/// Reads .mxl / .xml / .musicxml from disk by extension.
pub fn read_file(path: &std::path::Path) -> Result<Melody, ImportError> {
    let source = path.display().to_string();
    let bytes = crate::files::read_input(path, crate::files::MAX_MUSIC_FILE)
        .map_err(|e| ImportError::new(&source, "io", format!("cannot read the file: {e}")))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "mxl" => parse_mxl(&bytes, &source),
        "xml" | "musicxml" => parse_xml(&bytes, &source),
        // Unknown extension: a zip container starts with "PK".
        _ if bytes.starts_with(b"PK") => parse_mxl(&bytes, &source),
        _ => parse_xml(&bytes, &source),
    }
}

fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
) -> Result<Vec<u8>, String> {
    let entry = zip.by_name(name).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(entry.size().min(16 << 20) as usize);
    entry
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot decompress: {e}"))?;
    if buf.len() as u64 > MAX_ENTRY_BYTES {
        return Err(format!("larger than {} MiB", MAX_ENTRY_BYTES >> 20));
    }
    Ok(buf)
}

/// The first MusicXML `<rootfile full-path>` of a container.xml.
fn root_file_from_container(bytes: &[u8]) -> Result<String, String> {
    let text = decode_text(bytes)?;
    let dom = build_dom(&text)?;
    let mut roots = Vec::new();
    collect(&dom, "rootfile", &mut roots);
    let musicxml = |r: &&&El| {
        r.attr("media-type")
            .map(|m| m.contains("musicxml") || m.ends_with("/xml"))
            .unwrap_or(true)
    };
    roots
        .iter()
        .find(musicxml)
        .or(roots.first())
        .and_then(|r| r.attr("full-path"))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| "no <rootfile full-path=...>".to_owned())
}

fn collect<'a>(el: &'a El, name: &str, out: &mut Vec<&'a El>) {
    for k in &el.kids {
        if k.name == name {
            out.push(k);
        }
        collect(k, name, out);
    }
}

// ---------------------------------------------------------------------------------------------
// Text decoding and a small DOM
// ---------------------------------------------------------------------------------------------

fn decode_text(bytes: &[u8]) -> Result<Cow<'_, str>, String> {
    let utf16 = |b: &[u8], le: bool| -> Result<Cow<'_, str>, String> {
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units)
            .map(Cow::Owned)
            .map_err(|_| "invalid UTF-16 text".to_owned())
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest)
            .map(Cow::Borrowed)
            .map_err(|e| format!("invalid UTF-8 text after the BOM: {e}")),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false),
        [b'<', 0, ..] => utf16(bytes, true),
        [0, b'<', ..] => utf16(bytes, false),
        _ => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(e) => {
                let head =
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_ascii_lowercase();
                let latin = [
                    "iso-8859-1",
                    "latin1",
                    "latin-1",
                    "windows-1252",
                    "iso8859-1",
                ];
                if head.starts_with("<?xml") && latin.iter().any(|l| head.contains(l)) {
                    Ok(Cow::Owned(bytes.iter().map(|&b| b as char).collect()))
                } else {
                    Err(format!("not UTF-8 or UTF-16 text: {e}"))
                }
            }
        },
    }
}

/// An element with its attributes, its own (trimmed later) text and its child elements.
#[derive(Debug, Default)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    kids: Vec<El>,
}

impl El {
    fn child(&self, name: &str) -> Option<&El> {
        self.kids.iter().find(|k| k.name == name)
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.kids.iter().filter(move |k| k.name == name)
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|k| k.text.trim())
    }
}

/// Elements whose content the importer never needs: skipped while parsing, for speed.
const SKIP: &[&str] = &[
    "defaults",
    "credit",
    "identification",
    "print",
    "lyric",
    "direction",
    "harmony",
    "figured-bass",
    "beam",
    "stem",
    "notehead",
    "accidental",
    "sound",
    "key",
    "clef",
    "staff-details",
    "transpose",
    "articulations",
    "ornaments",
    "technical",
    "dynamics",
    "listening",
    "midi-instrument",
    "score-instrument",
    "play",
    "layout",
    "appearance",
];

fn local_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn element(e: &BytesStart<'_>, name: String) -> El {
    let attrs = e
        .attributes()
        .flatten()
        .map(|a| {
            let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
            let value = match a.unescape_value() {
                Ok(v) => v.into_owned(),
                Err(_) => String::from_utf8_lossy(&a.value).into_owned(),
            };
            (key, value)
        })
        .collect();
    El {
        name,
        attrs,
        text: String::new(),
        kids: Vec::new(),
    }
}

/// Whether to build the `<part>` starting at `e`: only the first part and the one
/// [`wanted_part_id`] names are needed (for speed: a chorale has four parts).
fn keep_part(score: &El, e: &BytesStart<'_>, parts_seen: &mut usize) -> bool {
    *parts_seen += 1;
    if *parts_seen == 1 {
        return true;
    }
    let id = e
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == b"id");
    match (id, wanted_part_id(score)) {
        (Some(a), Some(w)) => a.value.as_ref() == w.as_bytes(),
        _ => false,
    }
}

/// Parses `text` into its root element; an error says what is malformed.
fn build_dom(text: &str) -> Result<El, String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<El> = vec![El::default()];
    let mut parts_seen = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML near byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) => {
                let name = local_name(&e);
                let skip_part = name == "part"
                    && stack.len() == 2
                    && stack[1].name == "score-partwise"
                    && !keep_part(&stack[1], &e, &mut parts_seen);
                if skip_part || SKIP.contains(&name.as_str()) {
                    reader.read_to_end(e.name()).map_err(|err| {
                        format!(
                            "malformed XML in <{name}> near byte {}: {err}",
                            reader.error_position()
                        )
                    })?;
                    continue;
                }
                if stack.len() > MAX_DEPTH {
                    return Err(format!(
                        "elements nested deeper than {MAX_DEPTH} levels (at <{name}>, byte {}): \
                         not a MusicXML score",
                        reader.buffer_position()
                    ));
                }
                stack.push(element(&e, name));
            }
            Event::Empty(e) => {
                let name = local_name(&e);
                if SKIP.contains(&name.as_str()) {
                    continue;
                }
                let el = element(&e, name);
                if let Some(top) = stack.last_mut() {
                    top.kids.push(el);
                }
            }
            Event::End(_) => {
                if stack.len() < 2 {
                    return Err("malformed XML: closing tag without an opening tag".into());
                }
                if let Some(el) = stack.pop() {
                    if let Some(top) = stack.last_mut() {
                        top.kids.push(el);
                    }
                }
            }
            Event::Text(t) if stack.len() > 1 && !t.iter().all(|b| b.is_ascii_whitespace()) => {
                let s = match t.unescape() {
                    Ok(s) => s.into_owned(),
                    Err(_) => String::from_utf8_lossy(&t).into_owned(),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() > 1 {
        let open = stack.last().map(|e| e.name.clone()).unwrap_or_default();
        return Err(format!("truncated XML: <{open}> is never closed"));
    }
    let doc = stack.pop().unwrap_or_default();
    doc.kids
        .into_iter()
        .next()
        .ok_or_else(|| "no XML element found (not a MusicXML file)".to_owned())
}

/// Rearranges a `score-timewise` tree (measure > part) into `score-partwise` (part > measure).
fn timewise_to_partwise(root: El) -> El {
    let mut parts: Vec<El> = Vec::new();
    let mut out_kids = Vec::new();
    for kid in root.kids {
        if kid.name != "measure" {
            out_kids.push(kid);
            continue;
        }
        let attrs = kid.attrs;
        for p in kid.kids.into_iter().filter(|p| p.name == "part") {
            let id = p.attr("id").unwrap_or("").to_owned();
            let idx = match parts.iter().position(|q| q.attr("id") == Some(id.as_str())) {
                Some(i) => i,
                None => {
                    parts.push(El {
                        name: "part".into(),
                        attrs: vec![("id".into(), id)],
                        ..El::default()
                    });
                    parts.len() - 1
                }
            };
            parts[idx].kids.push(El {
                name: "measure".into(),
                attrs: attrs.clone(),
                text: String::new(),
                kids: p.kids,
            });
        }
    }
    out_kids.extend(parts);
    El {
        name: "score-partwise".into(),
        attrs: root.attrs,
        text: String::new(),
        kids: out_kids,
    }
}

/// The id of the score-part named "Soprano", else of the first one in `<part-list>`.
fn wanted_part_id(root: &El) -> Option<&str> {
    let list = root.child("part-list")?;
    let soprano = list.children("score-part").find(|sp| {
        sp.child_text("part-name")
            .map(|n| n.eq_ignore_ascii_case("soprano"))
            .unwrap_or(false)
    });
    soprano
        .or_else(|| list.child("score-part"))
        .and_then(|sp| sp.attr("id"))
}

/// The part [`wanted_part_id`] names, else the first `<part>`.
fn choose_part(root: &El) -> Option<&El> {
    let first = root.child("part")?;
    let wanted = wanted_part_id(root);
    Some(
        wanted
            .and_then(|id| root.children("part").find(|p| p.attr("id") == Some(id)))
            .unwrap_or(first),
    )
}

// ---------------------------------------------------------------------------------------------
// Measures of one part
// ---------------------------------------------------------------------------------------------

/// One note or rest of one voice, its onset relative to the measure start (quarter notes).
#[derive(Clone, Debug)]
struct Event1 {
    onset: f64,
    duration: f64,
    pitch: Option<u8>,
    tie_stop: bool,
    voice: String,
}

/// One `<measure>` as read: its kept events and its repeat marks.
#[derive(Clone, Debug, Default)]
struct MeasureData {
    duration: f64,
    time_signature: (u32, u32),
    events: Vec<Event1>,
    forward_repeat: bool,
    /// Extra passes asked for by a backward repeat at the end (times - 1).
    backward_repeat: Option<u32>,
    /// Ending numbers started at this measure (empty numbers = malformed).
    ending_start: Option<Vec<u32>>,
    ending_stop: bool,
}

fn number(s: &str, what: &str, measure: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "measure {measure}: <{what}> {s:?} is not a non-negative number"
        )),
    }
}

/// `<duration>` text in quarter notes, given the divisions in force.
fn quarters(text: &str, divisions: f64, measure: &str) -> Result<f64, String> {
    let q = number(text, "duration", measure)? / divisions;
    if q.is_finite() && q < 1e6 {
        Ok(q)
    } else {
        Err(format!(
            "measure {measure}: <duration> {text:?} is too long"
        ))
    }
}

fn time_signature(t: &El) -> Option<(u32, u32)> {
    let beats = t.child_text("beats")?;
    let beat_type = t.child_text("beat-type")?;
    let num = beats.split('+').try_fold(0u32, |acc, b| {
        acc.checked_add(b.trim().parse::<u32>().ok()?)
    })?;
    let den: u32 = beat_type.split('+').next()?.trim().parse().ok()?;
    (num > 0 && den > 0 && num <= 64 && den <= 128).then_some((num, den))
}

fn type_duration(note: &El) -> Option<f64> {
    let base = match note.child_text("type")? {
        "maxima" => 32.0,
        "long" => 16.0,
        "breve" => 8.0,
        "whole" => 4.0,
        "half" => 2.0,
        "quarter" => 1.0,
        "eighth" => 0.5,
        "16th" => 0.25,
        "32nd" => 0.125,
        "64th" => 0.0625,
        "128th" => 0.03125,
        "256th" => 0.015625,
        "512th" => 0.0078125,
        "1024th" => 0.00390625,
        _ => return None,
    };
    let dots = note.children("dot").count().min(8) as i32;
    let mut d = base * (2.0 - 0.5f64.powi(dots));
    if let Some(tm) = note.child("time-modification") {
        let actual = tm
            .child_text("actual-notes")
            .and_then(|s| s.parse::<f64>().ok());
        let normal = tm
            .child_text("normal-notes")
            .and_then(|s| s.parse::<f64>().ok());
        if let (Some(a), Some(n)) = (actual, normal) {
            if a > 0.0 && n > 0.0 {
                d *= n / a;
            }
        }
    }
    Some(d)
}

fn midi_pitch(p: &El, measure: &str) -> Result<u8, String> {
    let step = match p.child_text("step").map(|s| s.to_ascii_uppercase()) {
        Some(s) => match s.as_str() {
            "C" => 0,
            "D" => 2,
            "E" => 4,
            "F" => 5,
            "G" => 7,
            "A" => 9,
            "B" => 11,
            _ => return Err(format!("measure {measure}: unknown <step> {s:?}")),
        },
        None => return Err(format!("measure {measure}: <pitch> without <step>")),
    };
    let alter = match p.child_text("alter") {
        Some(a) => match a.parse::<f64>() {
            Ok(v) if v.is_finite() && v.abs() <= 12.0 => v.round() as i32,
            _ => return Err(format!("measure {measure}: <alter> {a:?} is not a number")),
        },
        None => 0,
    };
    let octave = match p.child_text("octave").map(|o| o.parse::<i32>()) {
        Some(Ok(o)) if (-2..=12).contains(&o) => o,
        _ => {
            return Err(format!(
                "measure {measure}: <pitch> without a valid <octave>"
            ))
        }
    };
    let midi = (octave + 1) * 12 + step + alter;
    u8::try_from(midi)
        .ok()
        .filter(|m| *m <= 127)
        .ok_or_else(|| format!("measure {measure}: pitch {midi} is outside MIDI 0..=127"))
}

fn tie_flags(note: &El) -> bool {
    let stop = |t: &El| matches!(t.attr("type"), Some("stop") | Some("continue"));
    note.children("tie").any(stop)
        || note
            .children("notations")
            .any(|n| n.children("tied").any(stop))
}

/// Reads the measures of a part: events of every voice, lengths, time signatures, repeat marks.
fn read_part(part: &El) -> Result<Vec<MeasureData>, String> {
    let mut divisions = 1.0f64;
    let mut ts = (4u32, 4u32);
    let mut out = Vec::new();
    for m in part.children("measure") {
        let mut reader = MeasureReader::new(m.attr("number").unwrap_or("?"), divisions, ts);
        for c in &m.kids {
            reader.element(c)?;
        }
        divisions = reader.divisions;
        ts = reader.ts;
        out.push(reader.finish());
    }
    keep_main_voice(&mut out);
    Ok(out)
}

/// Keeps one voice: the part's first, or a measure's own first where that one is silent.
fn keep_main_voice(measures: &mut [MeasureData]) {
    let main_voice = measures
        .iter()
        .flat_map(|m| m.events.first())
        .map(|e| e.voice.clone())
        .next();
    if let Some(main) = main_voice {
        for m in measures {
            let voice = if m.events.iter().any(|e| e.voice == main) {
                main.clone()
            } else {
                match m.events.first() {
                    Some(e) => e.voice.clone(),
                    None => continue,
                }
            };
            m.events.retain(|e| e.voice == voice);
        }
    }
}

/// Reads the children of one `<measure>` in order, tracking the position in the measure.
struct MeasureReader<'a> {
    /// The measure's number, for errors.
    num: &'a str,
    /// Divisions per quarter note in force (carries over to the next measure).
    divisions: f64,
    /// Time signature in force (carries over to the next measure).
    ts: (u32, u32),
    md: MeasureData,
    /// Current position, in quarter notes from the measure start.
    pos: f64,
    /// Furthest position reached: the measure's length.
    max_pos: f64,
    /// Onset of the last non-chord note, shared by the chord notes that follow it.
    last_onset: f64,
}

impl<'a> MeasureReader<'a> {
    /// A reader at the start of measure `num`, with the divisions and time signature in force.
    fn new(num: &'a str, divisions: f64, ts: (u32, u32)) -> Self {
        MeasureReader {
            num,
            divisions,
            ts,
            md: MeasureData::default(),
            pos: 0.0,
            max_pos: 0.0,
            last_onset: 0.0,
        }
    }

    /// Reads one child element of the measure.
    fn element(&mut self, c: &El) -> Result<(), String> {
        match c.name.as_str() {
            "attributes" => self.attributes(c)?,
            "note" => self.note(c)?,
            "backup" => {
                let d = self.duration(c)?;
                self.pos = (self.pos - d.unwrap_or(0.0)).max(0.0);
            }
            "forward" => {
                let d = self.duration(c)?;
                self.pos += d.unwrap_or(0.0);
                self.max_pos = self.max_pos.max(self.pos);
            }
            "barline" => barline_marks(c, &mut self.md),
            _ => {}
        }
        Ok(())
    }

    /// The measure as read, with its length and time signature.
    fn finish(mut self) -> MeasureData {
        self.md.duration = self.max_pos;
        self.md.time_signature = self.ts;
        self.md
    }

    /// `<duration>` of a `<backup>` or `<forward>` in quarter notes, if it has one.
    fn duration(&self, c: &El) -> Result<Option<f64>, String> {
        c.child_text("duration")
            .map(|d| quarters(d, self.divisions, self.num))
            .transpose()
    }

    /// `<attributes>`: new divisions and time signature.
    fn attributes(&mut self, c: &El) -> Result<(), String> {
        if let Some(d) = c.child_text("divisions") {
            let d = number(d, "divisions", self.num)?;
            if d <= 0.0 {
                return Err(format!(
                    "measure {}: <divisions> must be positive",
                    self.num
                ));
            }
            self.divisions = d;
        }
        if let Some(t) = c.children("time").find_map(time_signature) {
            self.ts = t;
        }
        Ok(())
    }

    /// `<note>`: advances the position and keeps the event (the top note of a chord); grace
    /// notes are skipped, cue notes only take time.
    fn note(&mut self, c: &El) -> Result<(), String> {
        if c.child("grace").is_some() {
            return Ok(());
        }
        let chord = c.child("chord").is_some();
        let duration = match c.child_text("duration") {
            Some(d) => quarters(d, self.divisions, self.num)?,
            None => type_duration(c).unwrap_or(0.0),
        };
        let onset = if chord { self.last_onset } else { self.pos };
        if !chord {
            self.last_onset = self.pos;
            self.pos += duration;
            self.max_pos = self.max_pos.max(self.pos);
        }
        if c.child("cue").is_some() {
            return Ok(());
        }
        let pitch = match c.child("pitch") {
            Some(p) if c.child("rest").is_none() => Some(midi_pitch(p, self.num)?),
            _ => None,
        };
        let voice = c.child_text("voice").unwrap_or("1").to_owned();
        let ev = Event1 {
            onset,
            duration,
            pitch,
            tie_stop: tie_flags(c),
            voice,
        };
        if chord {
            if let Some(prev) = self.md.events.last_mut() {
                if prev.voice == ev.voice && (prev.onset - ev.onset).abs() < EPS {
                    if ev.pitch > prev.pitch {
                        *prev = ev;
                    }
                    return Ok(());
                }
            }
        }
        self.md.events.push(ev);
        Ok(())
    }
}

/// Repeat and ending marks of a `<barline>`.
fn barline_marks(c: &El, md: &mut MeasureData) {
    for r in c.children("repeat") {
        match r.attr("direction") {
            Some("forward") => md.forward_repeat = true,
            Some("backward") => {
                let times = r
                    .attr("times")
                    .and_then(|t| t.trim().parse::<u32>().ok())
                    .unwrap_or(2)
                    .clamp(1, MAX_REPEAT_TIMES + 1);
                md.backward_repeat = Some(times - 1);
            }
            _ => {}
        }
    }
    for e in c.children("ending") {
        match e.attr("type") {
            Some("start") => {
                let nums: Vec<u32> = e
                    .attr("number")
                    .unwrap_or("")
                    .split(|ch: char| !ch.is_ascii_digit())
                    .filter_map(|s| s.parse().ok())
                    .collect();
                md.ending_start = Some(nums);
            }
            Some("stop") | Some("discontinue") => md.ending_stop = true,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Repeats
// ---------------------------------------------------------------------------------------------

/// Measure indices in the order of performance, or `None` if the repeat marks do not make sense.
fn expand_repeats(measures: &[MeasureData]) -> Option<Vec<usize>> {
    let n = measures.len();
    let has_marks = measures.iter().any(|m| {
        m.forward_repeat || m.backward_repeat.is_some() || m.ending_start.is_some() || m.ending_stop
    });
    if !has_marks {
        return None;
    }
    let limit = n * (MAX_REPEAT_TIMES as usize + 2) + 16;
    let mut order = Vec::with_capacity(2 * n);
    let mut jumps_done = vec![0u32; n];
    let mut section_start = 0usize;
    let mut pass = 1u32;
    let mut i = 0usize;
    while i < n {
        if order.len() > limit {
            return None;
        }
        let m = &measures[i];
        if m.forward_repeat && i != section_start {
            section_start = i;
            pass = 1;
        }
        let mut in_final_ending = false;
        if let Some(nums) = &m.ending_start {
            if nums.is_empty() {
                return None;
            }
            if !nums.contains(&pass) {
                // Skip this ending up to and including the measure that closes it.
                let close = (i..n).find(|&j| measures[j].ending_stop)?;
                i = close + 1;
                continue;
            }
            // An ending we play: is it the last one (no backward repeat inside it)?
            let close = (i..n)
                .find(|&j| measures[j].ending_stop || measures[j].backward_repeat.is_some())?;
            in_final_ending = measures[close].backward_repeat.is_none();
        }
        order.push(i);
        if let Some(extra) = m.backward_repeat {
            if jumps_done[i] < extra {
                jumps_done[i] += 1;
                pass += 1;
                i = section_start;
                continue;
            }
            jumps_done[i] = 0;
            section_start = i + 1;
            pass = 1;
        } else if m.ending_stop && (in_final_ending || m.ending_start.is_none()) && pass > 1 {
            // The last ending is over: the next repeat goes back to here.
            section_start = i + 1;
            pass = 1;
        }
        i += 1;
    }
    let mut seen = vec![false; n];
    for &k in &order {
        seen[k] = true;
    }
    // Measures without music (dropped later) need not be played.
    if seen
        .iter()
        .zip(measures)
        .any(|(&s, m)| !s && m.duration > EPS)
    {
        return None;
    }
    Some(order)
}

// ---------------------------------------------------------------------------------------------
// The melody
// ---------------------------------------------------------------------------------------------

/// Lays the measures out in `order`: bars, and notes with ties merged and overlaps removed.
fn flatten(measures: &[MeasureData], order: &[usize]) -> (Vec<Note>, Vec<Bar>) {
    let mut bars = Vec::with_capacity(order.len());
    let mut raw: Vec<(Note, bool)> = Vec::new();
    let mut t = 0.0f64;
    for &k in order {
        let m = &measures[k];
        if m.duration <= EPS {
            continue;
        }
        bars.push(Bar {
            start: t,
            duration: m.duration,
            time_signature: m.time_signature,
        });
        for e in &m.events {
            if e.duration > EPS {
                raw.push((
                    Note {
                        onset: t + e.onset,
                        duration: e.duration,
                        pitch: e.pitch,
                    },
                    e.tie_stop,
                ));
            }
        }
        t += m.duration;
    }
    raw.sort_by(|a, b| a.0.onset.total_cmp(&b.0.onset));
    let mut notes: Vec<Note> = Vec::with_capacity(raw.len());
    for (note, tie_stop) in raw {
        if let Some(last) = notes.last_mut() {
            if (last.onset - note.onset).abs() < EPS {
                // Two events at one onset: keep the higher note.
                if note.pitch > last.pitch {
                    *last = note;
                }
                continue;
            }
            if tie_stop
                && note.pitch.is_some()
                && last.pitch == note.pitch
                && (last.end() - note.onset).abs() < 1e-5
            {
                last.duration = note.end() - last.onset;
                continue;
            }
            if last.end() > note.onset {
                last.duration = note.onset - last.onset;
            }
        }
        notes.push(note);
    }
    (notes, bars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::corpus::{wheel_for_tests, Corpus};
    use crate::music::tokenize;
    use std::collections::BTreeMap;
    use std::io::Write;

    /// A one-part score around `measures` (the inside of `<part>`).
    fn score(measures: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.0 Partwise//EN" "http://www.musicxml.org/dtds/partwise.dtd">
<score-partwise version="3.0">
  <work><work-title>Test</work-title></work>
  <part-list><score-part id="P1"><part-name>Melody</part-name></score-part></part-list>
  <part id="P1">{measures}</part>
</score-partwise>"#
        )
    }

    fn note(step: &str, octave: i32, duration: u32, extra: &str) -> String {
        format!(
            "<note><pitch><step>{step}</step><octave>{octave}</octave></pitch>\
             <duration>{duration}</duration><voice>1</voice>{extra}</note>"
        )
    }

    fn rest(duration: u32) -> String {
        format!("<note><rest/><duration>{duration}</duration><voice>1</voice></note>")
    }

    fn attrs(divisions: u32, beats: u32, beat_type: u32) -> String {
        format!(
            "<attributes><divisions>{divisions}</divisions><key><fifths>0</fifths></key>\
             <time><beats>{beats}</beats><beat-type>{beat_type}</beat-type></time></attributes>"
        )
    }

    fn parse(xml: &str) -> Melody {
        parse_xml(xml.as_bytes(), "test.xml").unwrap()
    }

    fn triples(m: &Melody) -> Vec<(f64, f64, Option<u8>)> {
        m.notes
            .iter()
            .map(|n| (n.onset, n.duration, n.pitch))
            .collect()
    }

    fn bar_lengths(m: &Melody) -> Vec<f64> {
        m.bars.iter().map(|b| b.duration).collect()
    }

    #[test]
    fn divisions_and_pitches() {
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}{}</measure>"#,
            attrs(4, 4, 4),
            note("C", 4, 4, ""),
            "<note><pitch><step>F</step><alter>1</alter><octave>4</octave></pitch><duration>2</duration></note>",
            note("B", 4, 10, ""),
        ));
        let m = parse(&xml);
        assert_eq!(m.id, "test.xml");
        assert_eq!(m.title, "Test");
        assert_eq!(
            triples(&m),
            vec![
                (0.0, 1.0, Some(60)),
                (1.0, 0.5, Some(66)),
                (1.5, 2.5, Some(71))
            ]
        );
        assert_eq!(
            m.bars,
            vec![Bar {
                start: 0.0,
                duration: 4.0,
                time_signature: (4, 4)
            }]
        );
    }

    #[test]
    fn divisions_change_mid_piece() {
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}</measure><measure number="2"><attributes><divisions>3</divisions></attributes>{}{}</measure>"#,
            attrs(1, 4, 4),
            note("C", 4, 2, ""),
            note("D", 4, 2, ""),
            note("E", 4, 9, ""),
            note("F", 4, 3, ""),
        ));
        let m = parse(&xml);
        assert_eq!(
            triples(&m),
            vec![
                (0.0, 2.0, Some(60)),
                (2.0, 2.0, Some(62)),
                (4.0, 3.0, Some(64)),
                (7.0, 1.0, Some(65))
            ]
        );
        assert_eq!(bar_lengths(&m), vec![4.0, 4.0]);
    }

    #[test]
    fn tie_across_barline_is_merged() {
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}</measure><measure number="2">{}{}</measure>"#,
            attrs(1, 4, 4),
            note("C", 4, 2, ""),
            note(
                "G",
                4,
                2,
                r#"<tie type="start"/><notations><tied type="start"/></notations>"#
            ),
            note(
                "G",
                4,
                1,
                r#"<tie type="stop"/><notations><tied type="stop"/></notations>"#
            ),
            note("A", 4, 3, ""),
        ));
        let m = parse(&xml);
        assert_eq!(
            triples(&m),
            vec![
                (0.0, 2.0, Some(60)),
                (2.0, 3.0, Some(67)),
                (5.0, 3.0, Some(69))
            ]
        );
        // Only `<tied>` (no `<tie>`) also merges; a repeated pitch without a tie does not.
        let xml2 = score(&format!(
            r#"<measure number="1">{}{}{}{}{}</measure>"#,
            attrs(1, 4, 4),
            note("G", 4, 1, r#"<notations><tied type="start"/></notations>"#),
            note("G", 4, 1, r#"<notations><tied type="stop"/></notations>"#),
            note("G", 4, 1, ""),
            note("G", 4, 1, ""),
        ));
        let m2 = parse(&xml2);
        assert_eq!(
            triples(&m2),
            vec![
                (0.0, 2.0, Some(67)),
                (2.0, 1.0, Some(67)),
                (3.0, 1.0, Some(67))
            ]
        );
    }

    #[test]
    fn rests_are_kept() {
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}{}</measure><measure number="2"><note><rest measure="yes"/><duration>4</duration><voice>1</voice></note></measure>"#,
            attrs(1, 4, 4),
            rest(1),
            note("E", 5, 2, ""),
            rest(1),
        ));
        let m = parse(&xml);
        assert_eq!(
            triples(&m),
            vec![
                (0.0, 1.0, None),
                (1.0, 2.0, Some(76)),
                (3.0, 1.0, None),
                (4.0, 4.0, None)
            ]
        );
        assert_eq!(bar_lengths(&m), vec![4.0, 4.0]);
    }

    #[test]
    fn chord_keeps_top_note() {
        let chord_e = note("E", 4, 2, "").replace("<pitch>", "<chord/><pitch>");
        let chord_c5 = note("C", 5, 2, "").replace("<pitch>", "<chord/><pitch>");
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}{}{}</measure>"#,
            attrs(1, 4, 4),
            note("G", 4, 2, ""),
            chord_c5,
            chord_e,
            note("D", 4, 2, ""),
        ));
        let m = parse(&xml);
        assert_eq!(
            triples(&m),
            vec![(0.0, 2.0, Some(72)), (2.0, 2.0, Some(62))]
        );
    }

    #[test]
    fn backup_and_second_voice_ignored() {
        let v2 =
            |s: &str, d: u32| note(s, 3, d, "").replace("<voice>1</voice>", "<voice>2</voice>");
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}<backup><duration>8</duration></backup>{}{}{}</measure>
               <measure number="2"><forward><duration>4</duration><voice>1</voice></forward>{}<backup><duration>8</duration></backup>{}</measure>"#,
            attrs(2, 4, 4),
            note("C", 5, 4, ""),
            note("D", 5, 4, ""),
            v2("C", 2),
            v2("D", 2),
            v2("E", 4),
            note("E", 5, 4, ""),
            v2("F", 8),
        ));
        let m = parse(&xml);
        assert_eq!(
            triples(&m),
            vec![
                (0.0, 2.0, Some(72)),
                (2.0, 2.0, Some(74)),
                (6.0, 2.0, Some(76))
            ]
        );
        assert_eq!(bar_lengths(&m), vec![4.0, 4.0]);
    }

    #[test]
    fn pickup_measure_is_a_short_bar() {
        let xml = score(&format!(
            r#"<measure number="0" implicit="yes">{}{}</measure><measure number="1">{}{}</measure><measure number="2">{}{}</measure>"#,
            attrs(1, 4, 4),
            note("G", 4, 1, ""),
            note("C", 5, 2, ""),
            note("D", 5, 2, ""),
            note("E", 5, 3, ""),
            "",
        ));
        let m = parse(&xml);
        assert_eq!(bar_lengths(&m), vec![1.0, 4.0, 3.0]);
        assert_eq!(m.bars[1].start, 1.0);
        let ms = tokenize::measures(&m).unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0].0[18], 67);
        assert_eq!(ms[0].0[0], crate::music::START);
    }

    #[test]
    fn time_signature_change() {
        let xml = score(&format!(
            r#"<measure number="1">{}{}</measure><measure number="2"><attributes><time><beats>3</beats><beat-type>4</beat-type></time></attributes>{}</measure><measure number="3">{}</measure><measure number="4"><attributes><time symbol="cut"><beats>2</beats><beat-type>2</beat-type></time></attributes>{}</measure>"#,
            attrs(1, 4, 4),
            note("C", 4, 4, ""),
            note("D", 4, 3, ""),
            note("E", 4, 3, ""),
            note("F", 4, 4, ""),
        ));
        let m = parse(&xml);
        let ts: Vec<_> = m.bars.iter().map(|b| b.time_signature).collect();
        assert_eq!(ts, vec![(4, 4), (3, 4), (3, 4), (2, 2)]);
        assert_eq!(bar_lengths(&m), vec![4.0, 3.0, 3.0, 4.0]);
        assert_eq!(m.bars[3].start, 10.0);
        // No time signature at all: 4/4.
        let plain = score(&format!(
            r#"<measure number="1"><attributes><divisions>1</divisions></attributes>{}</measure>"#,
            note("C", 4, 4, "")
        ));
        assert_eq!(parse(&plain).bars[0].time_signature, (4, 4));
    }

    #[test]
    fn triplets_with_time_modification() {
        let tm = "<type>eighth</type><time-modification><actual-notes>3</actual-notes><normal-notes>2</normal-notes></time-modification>";
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}{}{}{}</measure>"#,
            attrs(3, 4, 4),
            note("C", 4, 1, tm),
            note("D", 4, 1, tm),
            note("E", 4, 1, tm),
            note("F", 4, 3, ""),
            note("G", 4, 6, ""),
        ));
        let m = parse(&xml);
        let on: Vec<f64> = m.notes.iter().map(|n| n.onset).collect();
        assert_eq!(on.len(), 5);
        for (a, b) in on.iter().zip([0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0, 2.0]) {
            assert!((a - b).abs() < 1e-9, "{on:?}");
        }
        let ms = tokenize::measures(&m).unwrap();
        assert_eq!(&ms[0].0[..7], &[60, 129, 62, 129, 64, 129, 65]);
        // Without <duration>, the type, dots and time-modification give it.
        let bare = |step: &str| {
            format!("<note><pitch><step>{step}</step><octave>4</octave></pitch>{tm}</note>")
        };
        let no_dur = score(&format!(
            r#"<measure number="1">{}{}{}{}{}</measure>"#,
            attrs(3, 4, 4),
            bare("C"),
            bare("D"),
            bare("E"),
            "<note><pitch><step>F</step><octave>4</octave></pitch><type>half</type><dot/></note>",
        ));
        let m2 = parse(&no_dur);
        assert!((m2.notes[3].onset - 1.0).abs() < 1e-9);
        assert!((m2.notes[3].duration - 3.0).abs() < 1e-9);
    }

    #[test]
    fn grace_and_cue_notes_skipped() {
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}{}</measure>"#,
            attrs(1, 4, 4),
            "<note><grace/><pitch><step>B</step><octave>4</octave></pitch><voice>1</voice><type>eighth</type></note>",
            note("C", 5, 2, ""),
            note("D", 5, 2, "").replace("<pitch>", "<cue/><pitch>"),
        ));
        let m = parse(&xml);
        assert_eq!(triples(&m), vec![(0.0, 2.0, Some(72))]);
        assert_eq!(bar_lengths(&m), vec![4.0]);
    }

    fn barline(loc: &str, inner: &str) -> String {
        format!(r#"<barline location="{loc}">{inner}</barline>"#)
    }

    fn pitches(m: &Melody) -> Vec<u8> {
        m.notes.iter().filter_map(|n| n.pitch).collect()
    }

    #[test]
    fn repeats_with_endings_are_expanded() {
        // | C | :|: D | [1 E :| [2 F | G |   (forward repeat at measure 2)
        let xml = score(&format!(
            r#"<measure number="1">{a}{c}</measure>
               <measure number="2">{fwd}{d}</measure>
               <measure number="3">{e1}{e}{e1stop}</measure>
               <measure number="4">{e2}{f}{e2stop}</measure>
               <measure number="5">{g}</measure>"#,
            a = attrs(1, 4, 4),
            c = note("C", 4, 4, ""),
            fwd = barline("left", r#"<repeat direction="forward"/>"#),
            d = note("D", 4, 4, ""),
            e1 = barline("left", r#"<ending number="1" type="start"/>"#),
            e = note("E", 4, 4, ""),
            e1stop = barline(
                "right",
                r#"<ending number="1" type="stop"/><repeat direction="backward"/>"#
            ),
            e2 = barline("left", r#"<ending number="2" type="start"/>"#),
            f = note("F", 4, 4, ""),
            e2stop = barline("right", r#"<ending number="2" type="discontinue"/>"#),
            g = note("G", 4, 4, ""),
        ));
        let m = parse(&xml);
        assert_eq!(pitches(&m), vec![60, 62, 64, 62, 65, 67]);
        assert_eq!(m.bars.len(), 6);
        assert_eq!(m.bars[5].start, 20.0);
        assert_eq!(m.notes[5].onset, 20.0);
    }

    #[test]
    fn repeat_to_start_with_split_bar_and_shared_ending() {
        // Pickup G | C D :| with the repeat at the start; then endings "1, 2" and "3".
        let xml = score(&format!(
            r#"<measure number="0">{a}{g}</measure>
               <measure number="1">{c}</measure>
               <measure number="2">{d}{back}</measure>
               <measure number="3">{e12}{e}{e12stop}</measure>
               <measure number="4">{e3}{f}{e3stop}</measure>"#,
            a = attrs(1, 4, 4),
            g = note("G", 4, 1, ""),
            c = note("C", 5, 4, ""),
            d = note("D", 5, 3, ""),
            back = barline("right", r#"<repeat direction="backward"/>"#),
            e12 = barline(
                "left",
                r#"<repeat direction="forward"/><ending number="1, 2" type="start"/>"#
            ),
            e = note("E", 5, 4, ""),
            e12stop = barline(
                "right",
                r#"<ending number="1, 2" type="stop"/><repeat direction="backward" times="3"/>"#
            ),
            e3 = barline("left", r#"<ending number="3" type="start"/>"#),
            f = note("F", 5, 4, ""),
            e3stop = barline("right", r#"<ending number="3" type="stop"/>"#),
        ));
        let m = parse(&xml);
        // times="3": the section is played three times, endings "1, 2" then "3".
        assert_eq!(pitches(&m), vec![67, 72, 74, 67, 72, 74, 76, 76, 77]);
        assert_eq!(
            bar_lengths(&m),
            vec![1.0, 4.0, 3.0, 1.0, 4.0, 3.0, 4.0, 4.0, 4.0]
        );
        let ms = tokenize::measures(&m).unwrap();
        assert_eq!(ms.len(), 8);
    }

    #[test]
    fn malformed_repeats_fall_back_to_written_order() {
        // An ending that is never closed.
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}</measure><measure number="2">{}{}</measure>"#,
            attrs(1, 4, 4),
            note("C", 4, 4, ""),
            barline("right", r#"<repeat direction="backward"/>"#),
            barline("left", r#"<ending number="2" type="start"/>"#),
            note("D", 4, 4, ""),
        ));
        let m = parse(&xml);
        assert_eq!(pitches(&m), vec![60, 62]);
    }

    fn mxl(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            for (name, data) in entries {
                let opts = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated);
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    fn simple_score() -> String {
        score(&format!(
            r#"<measure number="1">{}{}</measure>"#,
            attrs(1, 4, 4),
            note("A", 4, 4, "")
        ))
    }

    #[test]
    fn mxl_container_names_the_root_file() {
        let container = br#"<?xml version="1.0" encoding="UTF-8"?>
<container><rootfiles><rootfile full-path="scores/song.musicxml" media-type="application/vnd.recordare.musicxml+xml"/></rootfiles></container>"#;
        let xml = simple_score();
        let bytes = mxl(&[
            ("mimetype", b"application/vnd.recordare.musicxml"),
            ("META-INF/container.xml", container),
            ("decoy.xml", b"<nothing/>"),
            ("scores/song.musicxml", xml.as_bytes()),
        ]);
        let m = parse_mxl(&bytes, "song.mxl").unwrap();
        assert_eq!(m.id, "song.mxl");
        assert_eq!(triples(&m), vec![(0.0, 4.0, Some(69))]);
        // Through the file system, by extension.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("song.mxl");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read_file(&p).unwrap().notes.len(), 1);
        let px = dir.path().join("song.musicxml");
        std::fs::write(&px, xml.as_bytes()).unwrap();
        assert_eq!(read_file(&px).unwrap().notes.len(), 1);
        // Without a container, the first .xml outside META-INF.
        let bare = mxl(&[("song.xml", xml.as_bytes())]);
        assert_eq!(parse_mxl(&bare, "bare.mxl").unwrap().notes.len(), 1);
    }

    #[test]
    fn encodings_boms_and_utf16() {
        let xml = simple_score();
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(xml.as_bytes());
        assert_eq!(parse_xml(&bom, "bom").unwrap().notes.len(), 1);
        let s16 = xml.replace("UTF-8", "UTF-16");
        let mut le = vec![0xFF, 0xFE];
        le.extend(s16.encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(parse_xml(&le, "le").unwrap().notes.len(), 1);
        let be: Vec<u8> = s16.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        assert_eq!(parse_xml(&be, "be").unwrap().notes.len(), 1);
        // MusicXML 1.0: DOCTYPE only, no version attribute.
        let v1 = xml
            .replace(r#" version="3.0""#, "")
            .replace("3.0 Partwise", "1.0 Partwise");
        assert_eq!(parse_xml(v1.as_bytes(), "v1").unwrap().notes.len(), 1);
    }

    #[test]
    fn soprano_part_is_chosen() {
        let xml = format!(
            r#"<score-partwise><part-list>
              <score-part id="A"><part-name>Flute</part-name></score-part>
              <score-part id="S"><part-name> soprano </part-name></score-part></part-list>
              <part id="A"><measure number="1">{a}{c}</measure></part>
              <part id="S"><measure number="1">{a}{e}</measure></part></score-partwise>"#,
            a = attrs(1, 4, 4),
            c = note("C", 4, 4, ""),
            e = note("E", 5, 4, ""),
        );
        assert_eq!(pitches(&parse(&xml)), vec![76]);
        let first = xml.replace("soprano", "Alto");
        assert_eq!(pitches(&parse(&first)), vec![60]);
    }

    #[test]
    fn timewise_scores_are_read() {
        let xml = format!(
            r#"<score-timewise version="3.0"><part-list><score-part id="P1"><part-name>S</part-name></score-part></part-list>
              <measure number="1"><part id="P1">{}{}</part></measure>
              <measure number="2"><part id="P1">{}</part></measure></score-timewise>"#,
            attrs(1, 4, 4),
            note("C", 4, 4, ""),
            note("D", 4, 4, ""),
        );
        assert_eq!(pitches(&parse(&xml)), vec![60, 62]);
    }

    fn reason(r: Result<Melody, ImportError>) -> (&'static str, String) {
        let e = r.unwrap_err();
        assert!(!e.message.is_empty());
        assert!(e.to_string().starts_with(&e.source));
        (e.reason, e.message)
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let xml = simple_score();
        let bytes = mxl(&[
            (
                "META-INF/container.xml",
                br#"<container><rootfiles><rootfile full-path="a.xml"/></rootfiles></container>"#,
            ),
            ("a.xml", xml.as_bytes()),
        ]);
        assert!(parse_mxl(&bytes, "ok.mxl").is_ok());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            let (r, msg) = reason(parse_mxl(&bytes[..cut], "cut.mxl"));
            assert_eq!(r, "container", "{msg}");
        }
        // Container naming a missing root file.
        let missing = mxl(&[(
            "META-INF/container.xml",
            br#"<container><rootfiles><rootfile full-path="b.xml"/></rootfiles></container>"#,
        )]);
        assert_eq!(reason(parse_mxl(&missing, "m.mxl")).0, "container");
        assert_eq!(
            reason(parse_xml(b"hello, this is not XML at all", "t.txt")).0,
            "parse"
        );
        assert_eq!(reason(parse_xml(b"", "e.xml")).0, "parse");
        assert_eq!(reason(parse_xml(&[0xC3, 0x28, 0xFF], "bin.xml")).0, "parse");
        assert_eq!(
            reason(parse_xml(&xml.as_bytes()[..xml.len() / 2], "half.xml")).0,
            "parse"
        );
        assert_eq!(
            reason(parse_xml(b"<html><body/></html>", "h.html")).0,
            "parse"
        );
        let (r, msg) = reason(parse_xml(
            b"<score-partwise version=\"4.0\"><part-list/></score-partwise>",
            "noparts.xml",
        ));
        assert_eq!(r, "parse");
        assert!(msg.contains("no <part>"), "{msg}");
        let rests_only = score(&format!(
            r#"<measure number="1">{}{}</measure>"#,
            attrs(1, 4, 4),
            rest(4)
        ));
        assert_eq!(reason(parse_xml(rests_only.as_bytes(), "r.xml")).0, "empty");
        let bad_dur = simple_score().replace("<duration>4</duration>", "<duration>four</duration>");
        assert_eq!(reason(parse_xml(bad_dur.as_bytes(), "d.xml")).0, "parse");
        let bad_pitch = simple_score().replace("<octave>4</octave>", "<octave>11</octave>");
        assert_eq!(reason(parse_xml(bad_pitch.as_bytes(), "p.xml")).0, "parse");
        let (r, msg) = reason(read_file(std::path::Path::new("/nonexistent/dir/x.mxl")));
        assert_eq!(r, "io", "{msg}");
    }

    #[test]
    fn no_panic_on_cut_or_damaged_input() {
        let xml = score(&format!(
            r#"<measure number="1">{}{}{}{}</measure><measure number="2">{}{}</measure>"#,
            attrs(3, 4, 4),
            note("C", 4, 6, r#"<tie type="start"/>"#),
            note("C", 4, 3, r#"<tie type="stop"/>"#),
            barline(
                "right",
                r#"<ending number="1" type="stop"/><repeat direction="backward" times="99999"/>"#
            ),
            barline(
                "left",
                r#"<repeat direction="forward"/><ending number="x" type="start"/>"#
            ),
            note("D", 4, 12, "<chord/>"),
        ));
        let bytes = xml.as_bytes();
        for cut in (0..bytes.len()).step_by(7) {
            let _ = parse_xml(&bytes[..cut], "cut.xml");
        }
        let container =
            br#"<container><rootfiles><rootfile full-path="a.xml"/></rootfiles></container>"#;
        let z = mxl(&[("META-INF/container.xml", container), ("a.xml", bytes)]);
        for cut in (0..z.len()).step_by(13) {
            let _ = parse_mxl(&z[..cut], "cut.mxl");
        }
        for (from, to) in [
            ("<divisions>3</divisions>", "<divisions>0</divisions>"),
            ("<divisions>3</divisions>", "<divisions>1e-300</divisions>"),
            ("<beats>4</beats>", "<beats>4294967295+9</beats>"),
            ("<duration>6</duration>", "<duration>-1</duration>"),
            ("<duration>6</duration>", "<duration>NaN</duration>"),
            ("<octave>4</octave>", "<octave>99999999999</octave>"),
            ("<step>C</step>", "<step>H</step>"),
            ("<alter>", "<alter>inf"),
        ] {
            let damaged = xml.replacen(from, to, 1);
            if let Err(e) = parse_xml(damaged.as_bytes(), "bad.xml") {
                assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 150_000;
        let xml = format!(
            "<score-partwise><part-list/><part id=\"P1\">{}{}</part></score-partwise>",
            "<a>".repeat(depth),
            "</a>".repeat(depth)
        );
        let (r, msg) = reason(parse_xml(xml.as_bytes(), "deep.xml"));
        assert_eq!(r, "parse");
        assert!(msg.contains("nested deeper than"), "{msg}");
        let container =
            br#"<container><rootfiles><rootfile full-path="a.xml"/></rootfiles></container>"#;
        let z = mxl(&[
            ("META-INF/container.xml", container),
            ("a.xml", xml.as_bytes()),
        ]);
        let e = parse_mxl(&z, "deep.mxl").unwrap_err();
        assert!(e.to_string().starts_with("deep.mxl: "), "{e}");
        let deep_container = format!("{}{}", "<c>".repeat(depth), "</c>".repeat(depth));
        let z = mxl(&[("META-INF/container.xml", deep_container.as_bytes())]);
        assert_eq!(reason(parse_mxl(&z, "c.mxl")).0, "container");
    }

    #[test]
    fn bach_corpus() {
        let Some(wheel) = wheel_for_tests() else {
            return;
        };
        let mut corpus = Corpus::open(&wheel).unwrap();
        let names: Vec<String> = corpus
            .list("music21/corpus/bach/", &[".mxl"])
            .into_iter()
            .filter(|n| n.rsplit('/').next().is_some_and(|f| f.starts_with("bwv")))
            .collect();
        assert_eq!(names.len(), 408);
        let files: Vec<(String, Vec<u8>)> = names
            .iter()
            .map(|n| (n.clone(), corpus.read(n).unwrap()))
            .collect();
        let t0 = std::time::Instant::now();
        let parsed: Vec<Result<Melody, ImportError>> =
            files.iter().map(|(n, b)| parse_mxl(b, n)).collect();
        let elapsed = t0.elapsed();
        // How the repeat marks were handled.
        let (mut with_marks, mut fell_back, mut written, mut performed) = (0, 0, 0, 0);
        for (n, b) in &files {
            let xml = mxl_root_file(b, n).unwrap();
            let dom = build_dom(&decode_text(&xml).unwrap()).unwrap();
            let ms = read_part(choose_part(&dom).unwrap()).unwrap();
            let marks = ms.iter().any(|m| {
                m.forward_repeat || m.backward_repeat.is_some() || m.ending_start.is_some()
            });
            if marks {
                with_marks += 1;
                match expand_repeats(&ms) {
                    Some(order) => {
                        written += ms.len();
                        performed += order.len();
                    }
                    None => {
                        fell_back += 1;
                        eprintln!("  repeats of {n} fall back to the written order");
                    }
                }
            }
        }
        eprintln!(
            "bach_corpus: {with_marks} files with repeat marks, {fell_back} fell back; {written} written measures became {performed}"
        );
        let mut skips: BTreeMap<&'static str, usize> = BTreeMap::new();
        let (mut ok, mut tokenized, mut total_measures) = (0, 0, 0);
        for r in &parsed {
            match r {
                Ok(m) => {
                    ok += 1;
                    assert!(
                        m.notes.windows(2).all(|w| w[0].end() <= w[1].onset + 1e-6),
                        "{}",
                        m.id
                    );
                    assert!(
                        m.bars
                            .windows(2)
                            .all(|w| (w[0].end() - w[1].start).abs() < 1e-6),
                        "{}",
                        m.id
                    );
                    match tokenize::measures(m) {
                        Ok(ms) => {
                            tokenized += 1;
                            total_measures += ms.len();
                        }
                        Err(e) => {
                            assert!(!e.reason.is_empty() && !e.message.is_empty());
                            if std::env::var_os("ARVAE_VERBOSE").is_some() {
                                eprintln!("  tokenize {}: {} ({})", e.source, e.message, e.reason);
                            }
                            *skips.entry(e.reason).or_default() += 1;
                        }
                    }
                }
                Err(e) => {
                    assert!(!e.reason.is_empty() && !e.message.is_empty());
                    eprintln!("  parse {}: {} ({})", e.source, e.message, e.reason);
                    *skips.entry(e.reason).or_default() += 1;
                }
            }
        }
        eprintln!(
            "bach_corpus: {} files, parsed {ok}, tokenized {tokenized}, skips {skips:?}, measures {total_measures}, parse time {:.3} s",
            names.len(),
            elapsed.as_secs_f64()
        );
        assert_eq!(ok, 408);
        assert!(tokenized >= 330, "only {tokenized} chorales give measures");
    }
}
