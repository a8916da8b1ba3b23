//! Builds a dataset from a collection: reads pieces, cuts measures, transposes, splits by piece.

use super::corpus::{sha256_file, Corpus, CorpusError};
use super::dataset::{
    attribute_names, vocabulary_names, Dataset, DatasetHeader, PieceInfo, SkippedPiece, Split,
    FORMAT_VERSION,
};
use super::synthetic;
use crate::music::attributes::attributes;
use crate::music::melody::{ImportError, Melody};
use crate::music::midi_import::{self, MidiImportOptions};
use crate::music::token::{is_note, Measure};
use crate::music::{abc, musicxml, tokenize};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Which pieces to build from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collection {
    /// Bach chorales (`music21/corpus/bach/bwv*.mxl` in the music21 wheel).
    Bach,
    /// Ryan's Mammoth, O'Neill's 1850 and Aird's Airs (ABC, in the music21 wheel).
    Folk,
    /// Built-in procedural melodies (no download).
    Synthetic,
    /// The user's own MIDI, MusicXML and ABC files or folders.
    Files(Vec<PathBuf>),
}

impl Collection {
    /// Name stored in the dataset header.
    pub fn name(&self) -> &'static str {
        match self {
            Collection::Bach => "bach",
            Collection::Folk => "folk",
            Collection::Synthetic => "synthetic",
            Collection::Files(_) => "files",
        }
    }
}

/// Folders of the folk collections inside the wheel.
pub const FOLK_FOLDERS: [&str; 3] = [
    "music21/corpus/ryansMammoth/",
    "music21/corpus/oneills1850/",
    "music21/corpus/airdsAirs/",
];

/// Options of [`build`].
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// What to read.
    pub collection: Collection,
    /// The music21 wheel for `Bach` and `Folk`.
    pub corpus: Option<PathBuf>,
    /// Add every transposition inside MIDI 55..=84 (docs/architecture.md §2). Off: the original only, if it fits.
    pub transpose: bool,
    /// Number of synthetic pieces (4 bars each).
    pub synthetic_pieces: usize,
    /// Seed of the synthetic generator.
    pub seed: u64,
    /// MIDI track to take the melody from (default: the highest monophonic track).
    pub midi_track: Option<usize>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            collection: Collection::Synthetic,
            corpus: None,
            transpose: true,
            synthetic_pieces: 2500,
            seed: 0,
            midi_track: None,
        }
    }
}

/// Receives progress while a dataset is built (a progress bar in the CLI).
pub trait Progress: Sync {
    /// Work of `total` units starts.
    fn start(&self, _total: usize, _what: &str) {}
    /// One unit done.
    fn inc(&self) {}
    /// A piece or file was skipped, with the reason.
    fn skipped(&self, _error: &ImportError) {}
    /// Something worth telling that is not a skip.
    fn note(&self, _message: &str) {}
}

/// Progress that reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// Why a build failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The corpus wheel is missing or unreadable.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// No corpus was given and none was found.
    #[error(
        "the music21 wheel was not found: run `arvae-trainer data fetch` or pass --corpus PATH"
    )]
    NoCorpus,
    /// Nothing usable was left.
    #[error("no usable measures: {0}")]
    Empty(String),
}

/// One unit of input: a file (or zip entry) and what it holds.
struct Source {
    name: String,
    kind: Kind,
    data: Result<Vec<u8>, String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mxl,
    Xml,
    Abc,
    Midi,
}

fn kind_of(path: &str) -> Option<Kind> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".mxl") {
        Some(Kind::Mxl)
    } else if lower.ends_with(".xml") || lower.ends_with(".musicxml") {
        Some(Kind::Xml)
    } else if lower.ends_with(".abc") {
        Some(Kind::Abc)
    } else if lower.ends_with(".mid") || lower.ends_with(".midi") || lower.ends_with(".smf") {
        Some(Kind::Midi)
    } else {
        None
    }
}

fn corpus_sources(
    wheel: &Path,
    folders: &[&str],
    exts: &[&str],
    filter: impl Fn(&str) -> bool,
) -> Result<Vec<Source>, BuildError> {
    let mut corpus = Corpus::open(wheel)?;
    let mut out = Vec::new();
    for folder in folders {
        for name in corpus.list(folder, exts).into_iter().filter(|n| filter(n)) {
            let kind = kind_of(&name).expect("listed by extension");
            let data = corpus.read(&name).map_err(|e| e.to_string());
            out.push(Source {
                name: name.trim_start_matches("music21/corpus/").to_string(),
                kind,
                data,
            });
        }
    }
    Ok(out)
}

/// Names the sources found under the input `root` from `root`'s own name on (`songs/a.mid`
/// for `--input /home/me/songs`), so piece ids, and with them the split, do not depend on
/// where the folder lives.
fn relative_names(sources: &mut [Source], root: &Path) {
    let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return;
    };
    for src in sources {
        if let Ok(rel) = Path::new(&src.name).strip_prefix(parent) {
            src.name = rel.display().to_string();
        }
    }
}

/// Collects the music files at `path` (a file or a folder, recursively). `seen` holds the
/// folders already walked, so a symlink loop is walked once instead of for ever.
fn walk(path: &Path, out: &mut Vec<Source>, progress: &dyn Progress, seen: &mut HashSet<PathBuf>) {
    let name = path.display().to_string();
    let skip = |reason: &'static str, message: String| {
        progress.skipped(&ImportError::new(&name, reason, message))
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return skip("unreadable", format!("cannot read: {e}")),
    };
    if meta.is_dir() {
        match path.canonicalize().map(|real| seen.insert(real)) {
            Ok(true) => walk_folder(path, out, progress, seen),
            Ok(false) => skip(
                "duplicate",
                "this folder was already read (a symlink loop?)".into(),
            ),
            Err(e) => skip("unreadable", format!("cannot resolve: {e}")),
        }
        return;
    }
    match kind_of(&name) {
        Some(kind) => out.push(Source {
            name: name.clone(),
            kind,
            data: crate::files::read_input(path, crate::files::MAX_MUSIC_FILE)
                .map_err(|e| format!("cannot read: {e}")),
        }),
        None => skip(
            "unsupported",
            "not a MIDI (.mid), MusicXML (.mxl, .xml, .musicxml) or ABC (.abc) file".into(),
        ),
    }
}

fn walk_folder(
    path: &Path,
    out: &mut Vec<Source>,
    progress: &dyn Progress,
    seen: &mut HashSet<PathBuf>,
) {
    let name = path.display().to_string();
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            let e = ImportError::new(name, "unreadable", format!("cannot list folder: {e}"));
            return progress.skipped(&e);
        }
    };
    entries.sort();
    let before = out.len();
    for e in entries {
        if e.is_dir() || kind_of(&e.to_string_lossy()).is_some() {
            walk(&e, out, progress, seen);
        }
    }
    if out.len() == before {
        progress.skipped(&ImportError::new(
            name,
            "empty_folder",
            "no MIDI, MusicXML or ABC files in this folder",
        ));
    }
}

/// Parses one source into its pieces (several for ABC files).
fn parse(
    source: &Source,
    opts: &BuildOptions,
) -> Vec<(Result<Melody, ImportError>, Option<String>)> {
    let bytes = match &source.data {
        Ok(b) => b,
        Err(e) => {
            return vec![(
                Err(ImportError::new(&source.name, "unreadable", e.clone())),
                None,
            )]
        }
    };
    match source.kind {
        Kind::Mxl => vec![(musicxml::parse_mxl(bytes, &source.name), None)],
        Kind::Xml => vec![(musicxml::parse_xml(bytes, &source.name), None)],
        Kind::Abc => {
            let text = String::from_utf8(bytes.clone())
                .unwrap_or_else(|_| bytes.iter().map(|&b| b as char).collect::<String>());
            abc::parse_tunes(&text, &source.name)
                .into_iter()
                .map(|r| (r, None))
                .collect()
        }
        Kind::Midi => {
            let mopts = MidiImportOptions {
                track: opts.midi_track,
            };
            match midi_import::read_bytes(bytes, &source.name, &mopts) {
                Ok((m, snap)) => {
                    let note = (snap.moved > 0).then(|| {
                        format!(
                            "{}: moved {} of {} notes onto the grid (at most {:.3} beats, mean {:.3})",
                            source.name, snap.moved, snap.notes, snap.max_shift_beats, snap.mean_shift_beats
                        )
                    });
                    vec![(Ok(m), note)]
                }
                Err(e) => vec![(Err(e), None)],
            }
        }
    }
}

/// A piece with its untransposed measures and the transpositions to add.
type CutPiece = (Melody, Vec<Measure>, Vec<i32>);

/// Measures of one piece, untransposed, or why it can't be used.
fn piece_measures(
    melody: &Melody,
    transpose: bool,
) -> Result<(Vec<Measure>, Vec<i32>), ImportError> {
    let measures = tokenize::measures(melody)?;
    let mut shifts = tokenize::transpositions(melody);
    if shifts.is_empty() {
        let (lo, hi) = melody.pitch_bounds().unwrap_or((0, 0));
        return Err(ImportError::new(
            &melody.id,
            "range",
            format!("pitch range {lo}..{hi} is wider than MIDI 55..84"),
        ));
    }
    if !transpose {
        if !shifts.contains(&0) {
            return Err(ImportError::new(
                &melody.id,
                "range",
                "notes outside MIDI 55..84 (transposition is off)",
            ));
        }
        shifts = vec![0];
    }
    Ok((measures, shifts))
}

/// A transposition-invariant key of a piece's measures, to drop duplicate encodings.
fn dedup_key(measures: &[Measure]) -> Vec<u8> {
    let lo = measures
        .iter()
        .flat_map(|m| m.0)
        .filter(|&t| is_note(t))
        .min()
        .unwrap_or(0);
    measures
        .iter()
        .flat_map(|m| m.0.map(|t| if is_note(t) { t - lo } else { t }))
        .collect()
}

/// Builds the dataset described by `opts`.
pub fn build(opts: &BuildOptions, progress: &dyn Progress) -> Result<Dataset, BuildError> {
    let (sources, source_desc, source_sha) = sources_of(opts, progress)?;
    let parsed = parse_all(opts, &sources, progress);
    let transpose = opts.transpose && opts.collection != Collection::Synthetic;
    let cut: Vec<Result<CutPiece, ImportError>> = parsed
        .into_par_iter()
        .map(|(r, note)| {
            if let Some(n) = note {
                progress.note(&n);
            }
            let m = r?;
            let (ms, shifts) = piece_measures(&m, transpose)?;
            Ok((m, ms, shifts))
        })
        .collect();

    let mut header = DatasetHeader {
        format_version: FORMAT_VERSION,
        kind: "music".into(),
        collection: opts.collection.name().into(),
        source: source_desc,
        source_sha256: source_sha,
        content_hash: String::new(),
        vocabulary: vocabulary_names(),
        attributes: attribute_names(),
        pieces_total: cut.len(),
        pieces_used: 0,
        pieces_skipped: BTreeMap::new(),
        num_measures: 0,
        pieces: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    let mut ds = Dataset {
        header: header.clone(),
        measures: Vec::new(),
        attributes: Vec::new(),
        piece: Vec::new(),
        transpose: Vec::new(),
        split: Vec::new(),
    };
    // Every skip is reported once and counted by reason in the header.
    let skip = |header: &mut DatasetHeader, e: ImportError| {
        progress.skipped(&e);
        *header
            .pieces_skipped
            .entry(e.reason.to_string())
            .or_default() += 1;
        header.skipped.push(SkippedPiece {
            source: e.source,
            reason: e.reason.into(),
            message: e.message,
        });
    };
    let mut seen = HashSet::new();
    for r in cut {
        let (melody, measures, shifts) = match r {
            Ok(x) => x,
            Err(e) => {
                skip(&mut header, e);
                continue;
            }
        };
        if !seen.insert(dedup_key(&measures)) {
            let e = ImportError::new(
                &melody.id,
                "duplicate",
                "same melody as an earlier piece (up to transposition)",
            );
            skip(&mut header, e);
            continue;
        }
        let split = Split::of_piece(&melody.id);
        let index = header.pieces.len() as u32;
        for &s in &shifts {
            for m in &measures {
                let t = m
                    .transposed(s)
                    .expect("transpositions keep notes in 55..=84");
                ds.attributes.push(attributes(&t));
                ds.measures.push(t);
                ds.piece.push(index);
                ds.transpose.push(s as i8);
                ds.split.push(split);
            }
        }
        header.pieces.push(PieceInfo {
            id: melody.id,
            title: melody.title,
            split,
            measures: measures.len(),
            transpositions: shifts,
        });
    }
    header.pieces_used = header.pieces.len();
    header.num_measures = ds.measures.len();
    if ds.measures.is_empty() {
        return Err(nothing_usable(&header));
    }
    ds.header = header;
    if !has_piece_split(&ds) {
        split_by_bars(&mut ds);
    }
    ds.header.content_hash = ds.compute_content_hash();
    Ok(ds)
}

/// The sources of `opts`' collection, a description of where they come from and the
/// corpus wheel's sha256 (the synthetic melodies have no sources: they are generated).
fn sources_of(
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<(Vec<Source>, String, Option<String>), BuildError> {
    Ok(match &opts.collection {
        Collection::Bach | Collection::Folk => {
            let wheel = opts
                .corpus
                .clone()
                .or_else(super::corpus::find_wheel)
                .ok_or(BuildError::NoCorpus)?;
            if !wheel.is_file() {
                return Err(BuildError::Corpus(CorpusError::Io {
                    path: wheel,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
                }));
            }
            let sha = sha256_file(&wheel).ok();
            let sources = if opts.collection == Collection::Bach {
                corpus_sources(&wheel, &["music21/corpus/bach/"], &[".mxl"], |n| {
                    n.rsplit('/').next().is_some_and(|f| f.starts_with("bwv"))
                })?
            } else {
                corpus_sources(&wheel, &FOLK_FOLDERS, &[".abc"], |_| true)?
            };
            (sources, wheel.display().to_string(), sha)
        }
        Collection::Synthetic => (
            Vec::new(),
            format!("built-in synthetic melodies, seed {}", opts.seed),
            None,
        ),
        Collection::Files(paths) => {
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            for p in paths {
                let first = out.len();
                walk(p, &mut out, progress, &mut seen);
                relative_names(&mut out[first..], p);
            }
            let desc = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            (out, desc, None)
        }
    })
}

/// Every piece of `sources` parsed (in parallel, in the sources' order), or the synthetic
/// melodies; each with the note an importer left.
fn parse_all(
    opts: &BuildOptions,
    sources: &[Source],
    progress: &dyn Progress,
) -> Vec<(Result<Melody, ImportError>, Option<String>)> {
    if opts.collection == Collection::Synthetic {
        progress.start(opts.synthetic_pieces, "generating");
        synthetic::generate(opts.synthetic_pieces, opts.seed)
            .into_iter()
            .map(|(m, _)| {
                progress.inc();
                (Ok(m), None)
            })
            .collect()
    } else {
        progress.start(sources.len(), "reading");
        sources
            .par_iter()
            .flat_map_iter(|s| {
                let r = parse(s, opts);
                progress.inc();
                r
            })
            .collect()
    }
}

/// Why a build that read pieces kept none: the skips counted by reason and the first three.
fn nothing_usable(header: &DatasetHeader) -> BuildError {
    let mut reasons: Vec<String> = header
        .pieces_skipped
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    if header.pieces_total == 0 {
        reasons.push("no readable pieces".into());
    }
    let first: Vec<String> = header
        .skipped
        .iter()
        .take(3)
        .map(|p| format!("{}: {}", p.source, p.message))
        .collect();
    BuildError::Empty(format!(
        "{} pieces read, none usable ({}){}{}",
        header.pieces_total,
        reasons.join(", "),
        if first.is_empty() { "" } else { "; " },
        first.join("; ")
    ))
}

/// Pieces from which a dataset may be split by piece (about two pieces for each of validation
/// and test); fewer are split by bar ranges ([`split_by_bars`]).
pub const PIECES_FOR_PIECE_SPLIT: usize = 20;

/// Whether the split by piece is usable: enough pieces, and validation and test each get at
/// least 5 % of the measures.
fn has_piece_split(ds: &Dataset) -> bool {
    let n = ds.measures.len();
    ds.header.pieces.len() >= PIECES_FOR_PIECE_SPLIT
        && [Split::Val, Split::Test]
            .iter()
            .all(|&s| ds.count(s) * 20 >= n)
}

/// The split for too few pieces (a small folder of one's own, or pieces so uneven that a split
/// by piece leaves validation or test almost empty): every piece of three or more
/// bars holds out its last tenth of bars (at least one) for test and the tenth before for
/// validation, all transpositions of a bar going with it. Neighbouring bars of one piece then
/// sit on both sides of the split, so the scores are less strict than with a split by piece;
/// the header's notes say so.
fn split_by_bars(ds: &mut Dataset) {
    let mut starts = vec![usize::MAX; ds.header.pieces.len()];
    for (i, &p) in ds.piece.iter().enumerate() {
        let start = &mut starts[p as usize];
        *start = (*start).min(i);
        let bars = ds.header.pieces[p as usize].measures;
        let k = if bars >= 3 { bars.div_ceil(10) } else { 0 };
        let bar = (i - *start) % bars;
        ds.split[i] = if bar + k >= bars {
            Split::Test
        } else if bar + 2 * k >= bars {
            Split::Val
        } else {
            Split::Train
        };
    }
    for p in &mut ds.header.pieces {
        p.split = Split::Train;
    }
    ds.header.notes.push(format!(
        "split by bar ranges: {} pieces are too few for a split by piece (under {PIECES_FOR_PIECE_SPLIT}, \
         or validation or test would get under 5 % of the bars), so each piece holds out its last \
         tenth of bars for test and the tenth before for validation",
        ds.header.pieces.len()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);
    impl Progress for Record {
        fn skipped(&self, e: &ImportError) {
            self.0.lock().unwrap().push(e.to_string());
        }
    }

    #[test]
    fn sources_are_named_from_the_input_on() {
        let src = |name: &str| Source {
            name: name.into(),
            kind: kind_of("a.abc").unwrap(),
            data: Ok(Vec::new()),
        };
        let mut v = vec![src("/home/me/songs/a.abc"), src("/home/me/songs/x/b.mid")];
        relative_names(&mut v, Path::new("/home/me/songs"));
        assert_eq!(v[0].name, "songs/a.abc");
        assert_eq!(v[1].name, "songs/x/b.mid");
        let mut v = vec![src("tunes.abc")];
        relative_names(&mut v, Path::new("tunes.abc"));
        assert_eq!(v[0].name, "tunes.abc");
    }

    #[test]
    fn too_few_pieces_hold_out_bar_ranges() {
        let opts = BuildOptions {
            synthetic_pieces: 5,
            ..Default::default()
        };
        let ds = build(&opts, &Silent).unwrap();
        // Synthetic pieces have 4 bars: bars 0-1 train, bar 2 validation, bar 3 test, in
        // every transposition.
        let n = ds.measures.len();
        assert_eq!(n % 4, 0);
        let counts = Split::ALL.map(|s| ds.count(s));
        assert_eq!(counts, [n / 2, n / 4, n / 4]);
        for (i, s) in ds.split.iter().enumerate() {
            let want = [Split::Train, Split::Train, Split::Val, Split::Test][i % 4];
            assert_eq!(*s, want, "measure {i}");
        }
        assert!(ds
            .header
            .notes
            .iter()
            .any(|t| t.starts_with("split by bar ranges")));
        assert_eq!(ds.header.content_hash, ds.compute_content_hash());
    }

    #[test]
    fn synthetic_builds_with_splits() {
        let opts = BuildOptions {
            synthetic_pieces: 200,
            ..Default::default()
        };
        let ds = build(&opts, &Silent).unwrap();
        assert_eq!(ds.measures.len(), 800);
        assert_eq!(ds.header.pieces_used, 200);
        for s in Split::ALL {
            assert!(ds.count(s) > 0);
        }
        // Splits are by piece: every measure of a piece has the piece's split.
        for i in 0..ds.measures.len() {
            assert_eq!(ds.split[i], ds.header.pieces[ds.piece[i] as usize].split);
        }
        let again = build(&opts, &Silent).unwrap();
        assert_eq!(again.header.content_hash, ds.header.content_hash);
    }

    #[test]
    fn bad_inputs_are_skipped_with_a_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("notes.mid"), "this is a text file, not MIDI").unwrap();
        std::fs::write(d.join("broken.mxl"), b"PK\x03\x04 truncated").unwrap();
        std::fs::write(
            d.join("tune.abc"),
            "X:1\nT:Good\nM:4/4\nL:1/8\nK:G\nGABc dedB|GABc d4|]\n\nX:2\nT:Garbage\nM:4/4\nK:G\n@@@ ### !!!\n",
        )
        .unwrap();
        std::fs::create_dir(d.join("empty")).unwrap();
        let rec = Record::default();
        let opts = BuildOptions {
            collection: Collection::Files(vec![d.to_path_buf(), d.join("missing.abc")]),
            ..Default::default()
        };
        let ds = build(&opts, &rec).unwrap();
        assert_eq!(ds.header.pieces_used, 1);
        let lines = rec.0.lock().unwrap().clone();
        for needle in ["notes.mid", "broken.mxl", "empty", "missing.abc"] {
            assert!(
                lines.iter().any(|l| l.contains(needle)),
                "no line for {needle}: {lines:#?}"
            );
        }
    }

    /// A variable-length MIDI quantity.
    fn vlq(mut v: u32) -> Vec<u8> {
        let mut out = vec![(v & 0x7F) as u8];
        v >>= 7;
        while v > 0 {
            out.insert(0, (v & 0x7F) as u8 | 0x80);
            v >>= 7;
        }
        out
    }

    /// A format-0 MIDI file (96 ticks per beat) with two quarter notes `bars` 4/4 bars apart.
    fn notes_far_apart(bars: u32) -> Vec<u8> {
        let mut track = vec![0x00, 0x90, 60, 64, 0x60, 0x80, 60, 0];
        track.extend(vlq(bars * 4 * 96 - 96));
        track.extend([0x90, 62, 64, 0x60, 0x80, 62, 0, 0x00, 0xFF, 0x2F, 0x00]);
        let mut f = b"MThd\0\0\0\x06\0\0\0\x01\0\x60MTrk".to_vec();
        f.extend((track.len() as u32).to_be_bytes());
        f.extend(track);
        f
    }

    #[test]
    fn hostile_files_are_skipped_or_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let depth = 150_000;
        let deep = format!(
            "<score-partwise>{}{}</score-partwise>",
            "<a>".repeat(depth),
            "</a>".repeat(depth)
        );
        std::fs::write(d.join("deep.xml"), deep).unwrap();
        let far = notes_far_apart(99_990);
        assert!(far.len() < 50);
        std::fs::write(d.join("far.mid"), far).unwrap();
        let rec = Record::default();
        let opts = BuildOptions {
            collection: Collection::Files(vec![d.to_path_buf()]),
            ..Default::default()
        };
        let ds = build(&opts, &rec).unwrap();
        let lines = rec.0.lock().unwrap().clone();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("deep.xml") && l.contains("nested")),
            "{lines:?}"
        );
        assert_eq!(ds.header.pieces_used, 1);
        let per_transposition = 1 + tokenize::MAX_IDLE_BARS + 1;
        assert_eq!(ds.header.pieces[0].measures, per_transposition);
        assert!(ds.measures.len() <= per_transposition * 30);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_and_fifos_do_not_hang_a_build() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("tune.abc"),
            "X:1\nT:Good\nM:4/4\nL:1/8\nK:G\nGABc dedB|GABc d4|]\n",
        )
        .unwrap();
        // Two loops back to the folder: walked naively, 2^40 paths.
        std::os::unix::fs::symlink(d, d.join("loop1")).unwrap();
        std::os::unix::fs::symlink(d, d.join("loop2")).unwrap();
        let fifo = d.join("pipe.mid");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let rec = Record::default();
        let opts = BuildOptions {
            collection: Collection::Files(vec![d.to_path_buf()]),
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let ds = build(&opts, &rec).unwrap();
        assert!(t0.elapsed().as_secs() < 20);
        assert_eq!(ds.header.pieces_used, 1);
        let lines = rec.0.lock().unwrap().clone();
        assert!(lines.iter().any(|l| l.contains("loop1")), "{lines:?}");
        if made.is_ok_and(|s| s.success()) {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("pipe.mid") && l.contains("not a regular file")),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn nothing_usable_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            collection: Collection::Files(vec![dir.path().to_path_buf()]),
            ..Default::default()
        };
        let e = build(&opts, &Silent).unwrap_err().to_string();
        assert!(e.contains("no usable measures"), "{e}");
    }
}
