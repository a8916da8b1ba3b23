//! Mutation fuzzing of every importer and loader, in process: small seed inputs (MIDI,
//! MusicXML, .mxl, ABC, a checkpoint, music and image datasets, .npy, IDX) are mutated with a
//! seeded RNG (bit flips, truncations, insertions, deletions, repeated chunks, large integers,
//! odd numbers in text)
//! and each mutant must give `Ok` or an error: no panic, no input slower than a second or two,
//! and no single allocation larger than [`MAX_ALLOCATION`] (inputs are a few KB, so a loader
//! that believes a size field before checking it shows up here).

use arvae_core::checkpoint::{Checkpoint, CheckpointMeta, DatasetInfo};
use arvae_core::data::build::{build, BuildOptions, Silent};
use arvae_core::data::images::{dsprites, idx, ImageDataset};
use arvae_core::data::{npz, Dataset};
use arvae_core::infer::InferModel;
use arvae_core::music::midi_export::{to_smf_bytes, ExportOptions};
use arvae_core::music::midi_import::{read_bytes, MidiImportOptions};
use arvae_core::music::token::{Measure, HOLD, REST};
use arvae_core::music::{abc, musicxml, tokenize};
use arvae_core::music_model::measure_vae_shapes;
use arvae_core::music_model::MeasureVaeConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest single allocation a loader may ask for while reading a few-KB input.
const MAX_ALLOCATION: usize = 64 << 20;
/// Longest one input may take (debug build).
const MAX_INPUT_TIME: Duration = Duration::from_secs(2);
/// Mutants per seed (`ARVAE_FUZZ_MUTANTS` asks for a longer hunt).
fn mutants() -> usize {
    std::env::var("ARVAE_FUZZ_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

/// The system allocator, remembering the largest request (test-only bookkeeping).
struct Watch;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watch = Watch;

/// One mutation of `b` in place.
fn mutate_once(b: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    // Half the positions fall in the first KB, where headers and sizes live.
    let len = b.len().max(1);
    let at = |rng: &mut ChaCha8Rng| {
        if rng.gen_bool(0.5) {
            rng.gen_range(0..len.min(1024))
        } else {
            rng.gen_range(0..len)
        }
    };
    match rng.gen_range(0..7) {
        6 => replace_number(b, rng),
        0 if !b.is_empty() => {
            let i = at(rng).min(b.len() - 1);
            b[i] ^= 1 << rng.gen_range(0..8);
        }
        1 => b.truncate(rng.gen_range(0..=b.len())),
        2 => {
            let i = at(rng).min(b.len());
            let extra: Vec<u8> = (0..rng.gen_range(1..8)).map(|_| rng.gen()).collect();
            b.splice(i..i, extra);
        }
        3 if !b.is_empty() => {
            let i = at(rng).min(b.len() - 1);
            let j = (i + rng.gen_range(1..64)).min(b.len());
            let chunk = b[i..j].repeat(rng.gen_range(1..50));
            b.splice(j..j, chunk);
        }
        4 if b.len() >= 4 => {
            let i = at(rng).min(b.len() - 4);
            let v: [u8; 4] = match rng.gen_range(0..4) {
                0 => [0xFF; 4],
                1 => [0x7F, 0xFF, 0xFF, 0xFF],
                2 => [0xFF, 0xFF, 0xFF, 0x7F],
                _ => [0x80, 0, 0, 0],
            };
            b[i..i + 4].copy_from_slice(&v);
        }
        _ if !b.is_empty() => {
            let i = at(rng).min(b.len() - 1);
            let j = (i + rng.gen_range(1..32)).min(b.len());
            b.drain(i..j);
        }
        _ => b.push(rng.gen()),
    }
}

/// Numbers that break naive arithmetic, for text formats.
const ODD_NUMBERS: [&str; 10] = [
    "0",
    "-1",
    "4294967296",
    "99999999999",
    "1e308",
    "NaN",
    "-0",
    "7/0",
    "65536",
    "0.0000001",
];

/// Replaces a run of ASCII digits (a duration, a length, a size) with an odd number.
fn replace_number(b: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    let starts: Vec<usize> = (0..b.len())
        .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
        .collect();
    let Some(&i) = starts.get(rng.gen_range(0..starts.len().max(1))) else {
        return;
    };
    let j = (i..b.len())
        .find(|&j| !b[j].is_ascii_digit())
        .unwrap_or(b.len());
    let odd = ODD_NUMBERS[rng.gen_range(0..ODD_NUMBERS.len())];
    b.splice(i..j, odd.bytes());
}

/// What went wrong with one mutant.
fn check_one(
    name: &str,
    k: usize,
    input: &[u8],
    f: &dyn Fn(&[u8]) -> bool,
) -> Result<bool, String> {
    LARGEST.store(0, Ordering::Relaxed);
    let t0 = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| f(input)));
    let took = t0.elapsed();
    let largest = LARGEST.load(Ordering::Relaxed);
    let head: String = input.iter().take(48).map(|b| format!("{b:02x}")).collect();
    let what = match result {
        Err(_) => "panicked".to_string(),
        Ok(_) if took > MAX_INPUT_TIME => format!("took {took:?}"),
        Ok(_) if largest > MAX_ALLOCATION => format!("asked for {largest} bytes at once"),
        Ok(accepted) => return Ok(accepted),
    };
    Err(format!(
        "{name} mutant {k} ({} bytes, starts {head}): {what}",
        input.len()
    ))
}

/// Runs `f` on the seed and [`mutants`] mutants of it; returns how many were accepted and
/// the failures.
fn fuzz(name: &str, seed: &[u8], rng_seed: u64, f: &dyn Fn(&[u8]) -> bool) -> (usize, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let mut failures = Vec::new();
    let mut accepted = 0;
    for k in 0..=mutants() {
        let mut b = seed.to_vec();
        for _ in 0..if k == 0 { 0 } else { rng.gen_range(1..=3) } {
            mutate_once(&mut b, &mut rng);
        }
        match check_one(name, k, &b, f) {
            Ok(a) => accepted += a as usize,
            Err(e) => failures.push(e),
        }
    }
    (accepted, failures)
}

// ---------------------------------------------------------------------------------------------
// Seeds

fn measure(notes: &[(usize, u8)]) -> Measure {
    let mut t = [HOLD; 24];
    for &(i, p) in notes {
        t[i] = p;
    }
    Measure(t)
}

fn midi_seed() -> Vec<u8> {
    let bars = [
        measure(&[(0, 60), (6, 62), (12, REST), (18, 64)]),
        measure(&[(0, 65), (3, 67), (8, 69)]),
    ];
    to_smf_bytes(&bars, &ExportOptions::default())
}

fn xml_seed() -> String {
    let note = |step: &str, dur: u32, extra: &str| {
        format!("<note><pitch><step>{step}</step><octave>4</octave></pitch><duration>{dur}</duration>{extra}</note>")
    };
    format!(
        r#"<?xml version="1.0"?><score-partwise version="4.0"><work><work-title>T</work-title></work>
<part-list><score-part id="P1"><part-name>Soprano</part-name></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>2</divisions><time><beats>4</beats><beat-type>4</beat-type></time></attributes>{}{}{}</measure>
<measure number="2">{}<barline location="right"><repeat direction="backward" times="2"/></barline>{}</measure></part></score-partwise>"#,
        note("C", 2, r#"<tie type="start"/>"#),
        note("C", 2, r#"<tie type="stop"/>"#),
        note("E", 4, "<chord/>"),
        note(
            "G",
            3,
            r#"<time-modification><actual-notes>3</actual-notes><normal-notes>2</normal-notes></time-modification>"#
        ),
        note("A", 5, "")
    )
}

fn mxl(xml: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    let container =
        br#"<container><rootfiles><rootfile full-path="a.xml"/></rootfiles></container>"#;
    for (name, bytes) in [("META-INF/container.xml", &container[..]), ("a.xml", xml)] {
        z.start_file(name, opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

const ABC_SEED: &str =
    "X:1\nT:Seed\nM:4/4\nL:1/8\nQ:1/4=120\nK:D\n|:d2fd (3efg a>b|[1c'2 z2 Z2|]\n\
[2 ^c=c_B2 A4:|\nX:2\nT:Two\nM:C|\nL:1/4\nK:Gm\nG,A, B,/C/ D|{g}e2 !trill!d2|]\n";

fn checkpoint_seed() -> Vec<u8> {
    let cfg = MeasureVaeConfig {
        hidden: 8,
        latent: 6,
        head_hidden: 12,
        ..Default::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let tensors = measure_vae_shapes(&cfg)
        .into_iter()
        .map(|(n, s)| {
            let len = s.iter().product();
            (n, (s, (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()))
        })
        .collect();
    let dataset = DatasetInfo {
        id: "fuzz".into(),
        collection: "synthetic".into(),
        hash: "abc".into(),
    };
    let meta = CheckpointMeta::measure_vae(&cfg, dataset);
    Checkpoint { meta, tensors }.to_bytes("seed").unwrap()
}

fn dataset_seed() -> Vec<u8> {
    let opts = BuildOptions {
        synthetic_pieces: 4,
        ..Default::default()
    };
    build(&opts, &Silent).unwrap().to_bytes()
}

fn image_dataset_seed() -> Vec<u8> {
    let ds = dsprites::build_rendered(200_000, 0, &Silent);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("img.arvae");
    ds.save(&p).unwrap();
    std::fs::read(p).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Targets

/// Cuts an imported melody into measures; true if that worked.
fn melody_through_tokenizer(
    m: Result<arvae_core::music::melody::Melody, impl std::fmt::Debug>,
) -> bool {
    let Ok(m) = m else {
        return false;
    };
    let _ = tokenize::transpositions(&m);
    tokenize::measures(&m).is_ok()
}

fn midi_target(b: &[u8]) -> bool {
    let mut any = false;
    for track in [None, Some(0), Some(1)] {
        let r = read_bytes(b, "fuzz.mid", &MidiImportOptions { track });
        any |= melody_through_tokenizer(r.map(|(m, _)| m));
    }
    any
}

fn checkpoint_target(b: &[u8]) -> bool {
    let Ok(ck) = Checkpoint::from_bytes(b, "fuzz.safetensors") else {
        return false;
    };
    let _ = ck.meta.measure_vae_config();
    if let Ok(mut model) = InferModel::from_checkpoint(&ck) {
        let z = vec![0.5; model.latent()];
        let mut out = Measure([HOLD; 24]);
        let _ = model.decode(&z, &mut out);
        let mut mean = vec![0.0; model.latent()];
        let _ = model.encode_mean(&out, &mut mean);
    }
    true
}

#[test]
fn importers_and_loaders_survive_mutated_inputs() {
    let t0 = Instant::now();
    let xml = xml_seed();
    let npy =
        npz::encode_npy(&npz::NpyArray::new(vec![2, 3], npz::NpyData::F32(vec![0.5; 6])).unwrap());
    let idx_bytes = idx::encode_idx(&[2, 2, 3], &[7; 12]);
    type Target<'a> = (&'a str, Vec<u8>, &'a dyn Fn(&[u8]) -> bool);
    let targets: Vec<Target> = vec![
        ("midi", midi_seed(), &midi_target),
        ("musicxml", xml.clone().into_bytes(), &|b| {
            let plain = melody_through_tokenizer(musicxml::parse_xml(b, "fuzz.xml"));
            let zipped = melody_through_tokenizer(musicxml::parse_mxl(&mxl(b), "inner.mxl"));
            plain || zipped
        }),
        ("mxl", mxl(xml.as_bytes()), &|b| {
            melody_through_tokenizer(musicxml::parse_mxl(b, "fuzz.mxl"))
        }),
        ("abc", ABC_SEED.as_bytes().to_vec(), &|b| {
            let tunes = abc::parse_tunes(&String::from_utf8_lossy(b), "fuzz.abc");
            // Every tune is cut (no short-circuit), then: did any work?
            let cut: Vec<bool> = tunes.into_iter().map(melody_through_tokenizer).collect();
            cut.contains(&true)
        }),
        ("checkpoint", checkpoint_seed(), &checkpoint_target),
        ("dataset", dataset_seed(), &|b| {
            Dataset::from_bytes(b, Path::new("fuzz.arvae")).is_ok()
        }),
        ("image dataset", image_dataset_seed(), &|b| {
            ImageDataset::from_bytes(b, Path::new("fuzz.arvae")).is_ok()
        }),
        ("npy", npy, &|b| npz::decode_npy(b).is_ok()),
        ("idx", idx_bytes, &|b| {
            idx::parse_idx(b, Path::new("fuzz.idx")).is_ok()
        }),
    ];
    let mut failures = Vec::new();
    for (i, (name, seed, f)) in targets.iter().enumerate() {
        let t = Instant::now();
        let (accepted, failed) = fuzz(name, seed, 1000 + i as u64, *f);
        failures.extend(failed);
        println!(
            "{name}: seed + {} mutants in {:?}, {accepted} accepted",
            mutants(),
            t.elapsed()
        );
        // The seed itself must load, or the mutants test nothing.
        assert!(accepted > 0, "{name}: the seed does not load");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if std::env::var("ARVAE_FUZZ_MUTANTS").is_err() {
        assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    }
}
