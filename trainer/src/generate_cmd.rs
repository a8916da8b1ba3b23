//! `arvae-trainer generate`, `calibrate` and `score`: melodies from a model through the same
//! composer the plugin plays (`arvae_core::compose`), the model's prior and pitch range stored
//! into a checkpoint, and the numbers a listener hears beside real bars of the data set.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arvae_core::builtin::load_checkpoint;
use arvae_core::checkpoint::Checkpoint;
use arvae_core::compose::key::{root_from_name, Key, PitchMap, Scale};
use arvae_core::compose::knobs::KNOBS;
use arvae_core::compose::score::{knob_response, near_knob, score, Score};
use arvae_core::compose::{Composer, Settings, MAX_PHRASE};
use arvae_core::data::{Dataset, Split};
use arvae_core::infer::InferModel;
use arvae_core::music::attributes::attributes;
use arvae_core::music::midi_export::{tracks_to_smf_bytes, write_file, ExportOptions};
use arvae_core::music::midi_import::{self, MidiImportOptions};
use arvae_core::music::token::Measure;
use arvae_core::music::{tokenize, Attribute};
use arvae_core::prior::CodePrior;
use clap::Args;

/// Most bars one `generate` call writes.
pub const MAX_BARS: usize = 10_000;

/// The composer settings every command shares with the plugin's parameters.
#[derive(Args, Clone, Debug)]
pub struct ComposeArgs {
    /// Rhythmic complexity in percent (the plugin's knob; weighted share of off-beat onsets).
    #[arg(long, value_name = "PERCENT")]
    pub rhythmic_complexity: Option<f32>,
    /// Pitch range in semitones (highest minus lowest note of a bar).
    #[arg(long, value_name = "SEMITONES")]
    pub pitch_range: Option<f32>,
    /// Note density in notes per bar.
    ///
    /// Each knob not given is left to the model: drawn bar by bar from its own distribution
    /// of codes, so it varies as in the music the model learned (Bach about 4 notes a bar,
    /// folk about 8), and chosen to fit the knobs that are given.
    #[arg(long, value_name = "NOTES")]
    pub note_density: Option<f32>,
    /// Contour in semitones from the first to the last note of a bar (negative: falling).
    #[arg(long, value_name = "SEMITONES", allow_hyphen_values = true)]
    pub contour: Option<f32>,
    /// Key root: C, C#, Db, D, ... B.
    #[arg(long, default_value = "C")]
    pub key: String,
    /// Scale every bar is moved into: major, minor, dorian, phrygian, lydian, mixolydian,
    /// locrian, harmonic-minor, major-pentatonic, minor-pentatonic, blues, or any (off).
    #[arg(long, default_value = "major")]
    pub scale: String,
    /// How far the melody moves from one bar to the next: 0 the same bar, 1 a new bar.
    #[arg(long, default_value_t = Settings::default().motion)]
    pub motion: f32,
    /// Bars after which the phrase comes back (1, 2, 4 or 8).
    #[arg(long, default_value_t = Settings::default().phrase)]
    pub phrase: u32,
    /// How different a returning phrase is: 0 the same bars, 1 a new phrase.
    #[arg(long, default_value_t = Settings::default().variation)]
    pub variation: f32,
    /// Variation seed (the plugin's Variation knob).
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Turn target matching off: the paper's plain manipulation (regularized dimensions set
    /// from the calibration only, no search). On, each bar's code is searched (up to 121
    /// decodes) for the bar whose measured attributes are nearest the knobs.
    #[arg(long)]
    pub no_match: bool,
    /// Semitones added to the output (after key fitting).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub transpose: i32,
    /// Snap notes still outside the key to the nearest scale tone.
    #[arg(long)]
    pub snap: bool,
}

impl ComposeArgs {
    /// The composer settings, checked; knobs not given are left to the model
    /// ([`Settings::free`]).
    pub fn settings(&self) -> Result<Settings> {
        let given = [
            self.rhythmic_complexity,
            self.pitch_range,
            self.note_density,
            self.contour,
        ];
        let mut knobs = [0f32; 4];
        for (i, k) in KNOBS.iter().enumerate() {
            let v = given[i].unwrap_or(k.default);
            let flag = k.attribute.name().replace('_', "-");
            if !v.is_finite() || v < k.min || v > k.max {
                bail!("--{flag} {v} is outside {}..{}{}", k.min, k.max, k.unit());
            }
            knobs[i] = v;
        }
        let root = root_from_name(&self.key).with_context(|| {
            format!("--key {:?} is not a note name (C, C#, Db, ... B)", self.key)
        })?;
        let scale = Scale::from_name(&self.scale).with_context(|| {
            let names: Vec<&str> = Scale::ALL.iter().map(|s| s.name()).collect();
            format!(
                "--scale {:?} is not one of {}",
                self.scale,
                names.join(", ")
            )
        })?;
        for (name, v) in [("motion", self.motion), ("variation", self.variation)] {
            if !(0.0..=1.0).contains(&v) {
                bail!("--{name} {v} is outside 0..1");
            }
        }
        if !(1..=MAX_PHRASE as u32).contains(&self.phrase) {
            bail!("--phrase {} is outside 1..{MAX_PHRASE}", self.phrase);
        }
        if self.transpose.abs() > 24 {
            bail!("--transpose {} is outside -24..24", self.transpose);
        }
        Ok(Settings {
            knobs,
            seed: self.seed,
            motion: self.motion,
            phrase: self.phrase,
            variation: self.variation,
            key: Key { root, scale },
            match_targets: !self.no_match,
            free: given.map(|v| v.is_none()),
        })
    }

    /// Fails when a knob is given that the model has no calibration for (a β-VAE, or a model
    /// trained with fewer attributes).
    pub fn check_regularized(&self, ck: &Checkpoint, path: &Path) -> Result<()> {
        let given = [
            self.rhythmic_complexity,
            self.pitch_range,
            self.note_density,
            self.contour,
        ];
        for (a, v) in Attribute::ALL.iter().zip(given) {
            if v.is_some() && !ck.meta.calibration.iter().any(|c| c.attribute == a.name()) {
                bail!(
                    "{}: this model does not regularize {}, so it has no knob for it",
                    path.display(),
                    a.name()
                );
            }
        }
        Ok(())
    }

    /// Transpose and snapping, on the way out.
    pub fn pitch_map(&self, s: &Settings) -> PitchMap {
        PitchMap {
            transpose: self.transpose,
            key: s.key,
            snap: self.snap,
        }
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Checkpoint (model.safetensors or best.safetensors of a run), or the name of a shipped
    /// model: `bach` (AR-VAE on the Bach chorales) or `folk` (AR-VAE on the folk tunes).
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    compose: ComposeArgs,
    /// Number of bars (ignored with --encode: every bar of the input).
    #[arg(long, default_value_t = 8)]
    bars: usize,
    /// First bar index (bars are a pure function of the settings and their index, as in the
    /// plugin: bar 16 here is the plugin's bar 17 in the host).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    start_bar: i64,
    /// Take the bars of this MIDI file and move their attributes to the knobs (transform).
    #[arg(long)]
    encode: Option<PathBuf>,
    /// Output MIDI file.
    #[arg(long)]
    out: PathBuf,
    /// Tempo of the MIDI file.
    #[arg(long, default_value_t = 120.0)]
    bpm: f64,
}

/// The composer of a checkpoint (or shipped model), with a message naming it on failure.
pub fn composer(path: &Path) -> Result<(Composer, Checkpoint)> {
    let ck = load_checkpoint(path)?;
    Ok((composer_for(&ck, path)?, ck))
}

/// The composer of a loaded checkpoint; `path` names it in errors.
pub fn composer_for(ck: &Checkpoint, path: &Path) -> Result<Composer> {
    Composer::from_checkpoint(ck)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}: cannot build the decoder", path.display()))
}

/// Bars `start..start + n` under `settings`, phrase by phrase.
pub fn compose_bars(c: &mut Composer, s: &Settings, start: i64, n: usize) -> Result<Vec<Measure>> {
    let p = s.phrase_len() as i64;
    let mut out = Vec::with_capacity(n);
    let mut phrase = [Measure::rest(); MAX_PHRASE];
    let mut q = start.div_euclid(p);
    while out.len() < n {
        c.phrase(s, q, &mut phrase)?;
        let from = if q == start.div_euclid(p) {
            start.rem_euclid(p) as usize
        } else {
            0
        };
        for m in &phrase[from..p as usize] {
            if out.len() < n {
                out.push(*m);
            }
        }
        q += 1;
    }
    Ok(out)
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    let settings = a.compose.settings()?;
    if !(a.bpm.is_finite() && a.bpm > 0.0 && a.bpm <= 1000.0) {
        bail!("--bpm {} is not a tempo (0 < bpm <= 1000)", a.bpm);
    }
    if a.encode.is_none() && !(1..=MAX_BARS).contains(&a.bars) {
        bail!("--bars {} is outside 1..{MAX_BARS}", a.bars);
    }
    crate::cli_paths::refuse_inputs_as_outputs(
        &[("--out", Some(&a.out))],
        &[Some(&a.checkpoint), a.encode.as_deref()],
    )?;
    let ck = load_checkpoint(&a.checkpoint)?;
    a.compose.check_regularized(&ck, &a.checkpoint)?;
    let mut c = composer_for(&ck, &a.checkpoint)?;
    let measures = match &a.encode {
        Some(input) => transform_file(&mut c, &settings, input)?,
        None => compose_bars(&mut c, &settings, a.start_bar, a.bars)?,
    };
    let map = a.compose.pitch_map(&settings);
    let measures: Vec<Measure> = measures.iter().map(|m| map.measure(m)).collect();
    write_file(
        &a.out,
        &measures,
        &ExportOptions {
            bpm: a.bpm,
            ..Default::default()
        },
    )
    .with_context(|| format!("cannot write {}", a.out.display()))?;
    print_bars(&measures, &settings);
    let s = score(&measures, c.pitch_range());
    println!(
        "{}, key fit {:.2} (4-bar windows), {:.1} semitones at bar joins",
        settings.key.describe(),
        s.key_fit,
        s.join_interval
    );
    println!("wrote {} bars to {}", measures.len(), a.out.display());
    Ok(())
}

fn transform_file(c: &mut Composer, s: &Settings, input: &Path) -> Result<Vec<Measure>> {
    let (melody, _) = midi_import::read_file(input, &MidiImportOptions { track: None })?;
    let ms = tokenize::measures(&melody)
        .with_context(|| format!("{}: cannot cut into bars", input.display()))?;
    if ms.len() > MAX_BARS {
        bail!(
            "{}: {} bars, more than {MAX_BARS}",
            input.display(),
            ms.len()
        );
    }
    let mut mean = vec![0.0; c.latent()];
    let mut out = Vec::with_capacity(ms.len());
    for m in &ms {
        c.model().encode_mean(m, &mut mean)?;
        out.push(c.transform(s, &mean)?);
    }
    Ok(out)
}

fn print_bars(measures: &[Measure], s: &Settings) {
    println!(
        "bar  {:>10}  {:>12}  {:>12}  {:>10}",
        "rhythm %", "range (st)", "density (n)", "contour (st)"
    );
    for (i, m) in measures.iter().enumerate().take(64) {
        let v = attributes(m);
        let k: Vec<String> = (0..4)
            .map(|j| KNOBS[j].format(KNOBS[j].from_attribute(v[j])))
            .collect();
        println!(
            "{:>3}  {:>10}  {:>12}  {:>12}  {:>10}",
            i + 1,
            k[0],
            k[1],
            k[2],
            k[3]
        );
    }
    if measures.len() > 64 {
        println!("... ({} bars in all)", measures.len());
    }
    println!("knobs: {}", describe_knobs(s));
}

/// `Rhythmic complexity 8 %, Pitch range free, ...`
fn describe_knobs(s: &Settings) -> String {
    let t: Vec<String> = (0..4)
        .map(|j| match s.free[j] {
            true => format!("{} free", KNOBS[j].label),
            false => format!("{} {}", KNOBS[j].label, KNOBS[j].describe(s.knobs[j])),
        })
        .collect();
    t.join(", ")
}

#[derive(Args)]
pub struct CalibrateArgs {
    /// Checkpoint to complete (or a shipped model's name).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The dataset it was trained on.
    #[arg(long)]
    data: PathBuf,
    /// Where to write the completed checkpoint (may be the checkpoint itself).
    #[arg(long)]
    out: PathBuf,
    /// Training measures encoded for the prior (a seeded sample).
    #[arg(long, default_value_t = 20_000)]
    measures: usize,
}

/// Stores the model's prior (the Gaussian of its encoded training measures) and the data's
/// pitch range in a checkpoint trained before they were recorded.
pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    if a.measures == 0 {
        bail!("--measures must be at least 1");
    }
    // --out may be the checkpoint itself (completing it in place), never the dataset.
    crate::cli_paths::refuse_inputs_as_outputs(&[("--out", Some(&a.out))], &[Some(&a.data)])?;
    let mut ck = load_checkpoint(&a.checkpoint)?;
    let ds = Dataset::load(&a.data)?;
    let mut model = InferModel::from_checkpoint(&ck)
        .with_context(|| format!("{}: not a MeasureVAE", a.checkpoint.display()))?;
    let d = model.latent();
    let mut idx = ds.indices(Split::Train);
    if idx.is_empty() {
        bail!("{}: no training measures", a.data.display());
    }
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0xC0DE));
    idx.truncate(a.measures);
    let (mut means, mut log_stds) = (vec![0.0; idx.len() * d], vec![0.0; idx.len() * d]);
    let bar = indicatif::ProgressBar::new(idx.len() as u64)
        .with_style(crate::progress::style())
        .with_message("encoding training measures");
    for (k, &i) in idx.iter().enumerate() {
        let (m, l) = (
            &mut means[k * d..(k + 1) * d],
            &mut log_stds[k * d..(k + 1) * d],
        );
        model.encode(&ds.measures[i], m, l)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let prior = CodePrior::from_posteriors(&means, &log_stds, d)
        .context("the encoded measures give no usable prior (non-finite codes)")?;
    let spread: Vec<String> = (0..d.min(6))
        .map(|i| {
            format!(
                "{:+.2}±{:.2}",
                prior.mean[i],
                prior.covariance[i * d + i].sqrt()
            )
        })
        .collect();
    println!(
        "prior from {} training measures; dims 0-5: {}",
        idx.len(),
        spread.join(" ")
    );
    ck.meta.prior = Some(prior);
    ck.meta.pitch_range = ds.pitch_range();
    if let Some((lo, hi)) = ck.meta.pitch_range {
        println!("pitch range MIDI {lo}..={hi}");
    }
    ck.save_atomic(&a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

#[derive(Args)]
pub struct ScoreArgs {
    /// Model to generate from (a checkpoint or a shipped model's name).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The dataset it was trained on: real consecutive bars of its test split are scored
    /// beside the generated ones.
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    compose: ComposeArgs,
    /// Bars generated per seed.
    #[arg(long, default_value_t = 64)]
    bars: usize,
    /// Seeds (each a separate run of bars).
    #[arg(long, default_value_t = 8)]
    seeds: u32,
    /// Knob positions per knob in the fidelity sweep (0: no sweep).
    #[arg(long, default_value_t = 9)]
    positions: usize,
}

fn print_score(label: &str, s: &Score) {
    println!(
        "{label:<28} {:>6} {:>8} {:>9} {:>7} {:>6} {:>8} {:>8} {:>8.3} {:>8.2}",
        s.bars,
        s.notes,
        s.outside_range,
        s.crowded,
        s.empty,
        format!("{:.2}", s.notes as f32 / s.bars.max(1) as f32),
        format!("{:.2}", s.silences as f32 / s.bars.max(1) as f32),
        s.key_fit,
        s.join_interval
    );
}

fn merge(total: &mut Score, s: &Score, runs: usize) {
    let w = |old: f32, new: f32| (old * (runs - 1) as f32 + new) / runs as f32;
    total.key_fit = w(total.key_fit, s.key_fit);
    total.join_interval = w(total.join_interval, s.join_interval);
    total.bars += s.bars;
    total.notes += s.notes;
    total.outside_range += s.outside_range;
    total.crowded += s.crowded;
    total.empty += s.empty;
    total.silences += s.silences;
}

/// Runs of consecutive bars of the same piece and transposition in `split`.
fn real_runs(ds: &Dataset, split: Split) -> Vec<Vec<Measure>> {
    let mut runs: Vec<Vec<Measure>> = Vec::new();
    let mut last: Option<(u32, i8)> = None;
    for i in ds.indices(split) {
        let key = (ds.piece[i], ds.transpose[i]);
        if last != Some(key) {
            runs.push(Vec::new());
            last = Some(key);
        }
        runs.last_mut().expect("pushed").push(ds.measures[i]);
    }
    runs
}

pub fn score_cmd(a: ScoreArgs) -> Result<()> {
    let base = a.compose.settings()?;
    if a.bars == 0 || a.seeds == 0 {
        bail!("--bars and --seeds must be at least 1");
    }
    let (mut c, ck) = composer(&a.checkpoint)?;
    let range = c.pitch_range();
    let response = knob_response(&mut c, &ck);
    println!(
        "model {}: pitch range MIDI {}..={}, {}; {}",
        a.checkpoint.display(),
        range.0,
        range.1,
        if c.has_prior() {
            "its own prior"
        } else {
            "no stored prior (N(0, I))"
        },
        base.key.describe()
    );
    println!("knobs: {}", describe_knobs(&base));
    for (i, k) in KNOBS.iter().enumerate() {
        let (lo, hi) = c.reach(i);
        let rho = response[i].map_or("-".into(), |r| format!("{r:.3}"));
        println!(
            "  {:<20} reaches {} .. {}; response through its calibration: rho {rho}",
            k.label,
            k.describe(lo),
            k.describe(hi)
        );
    }
    println!(
        "\n{:<28} {:>6} {:>8} {:>9} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "",
        "bars",
        "notes",
        "outside",
        "crowded",
        "empty",
        "notes/b",
        "silences",
        "key fit",
        "join st"
    );
    if let Some(path) = &a.data {
        let ds = Dataset::load(path)?;
        let runs = real_runs(&ds, Split::Test);
        let (mut total, mut n) = (Score::default(), 0);
        let mut shuffled: Vec<Measure> = Vec::new();
        for r in runs.iter().filter(|r| r.len() >= 4) {
            n += 1;
            merge(&mut total, &score(r, range), n);
            shuffled.extend_from_slice(r);
        }
        if n == 0 {
            println!(
                "(the test split of {} has no run of 4 consecutive bars to compare with)",
                path.display()
            );
        } else {
            print_score("real bars in order (test)", &total);
        }
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        if n > 0 {
            print_score("real bars shuffled", &score(&shuffled, range));
        }
    }
    let modes: [(&str, Settings); 4] = [
        ("generated", base),
        (
            "generated, motion 1",
            Settings {
                motion: 1.0,
                variation: 1.0,
                ..base
            },
        ),
        (
            "generated, key any",
            Settings {
                key: Key {
                    scale: Scale::Any,
                    ..base.key
                },
                ..base
            },
        ),
        (
            "generated, no matching",
            Settings {
                match_targets: false,
                ..base
            },
        ),
    ];
    for (label, s) in modes {
        let (mut total, mut n) = (Score::default(), 0);
        for seed in 0..a.seeds {
            let bars = compose_bars(&mut c, &Settings { seed, ..s }, 0, a.bars)?;
            n += 1;
            merge(&mut total, &score(&bars, range), n);
        }
        print_score(label, &total);
    }
    if a.positions > 0 {
        fidelity(&mut c, &base, a.positions, a.seeds)?;
    }
    Ok(())
}

/// Knob fidelity: each knob swept over what the model reaches (the plugin's range where
/// smaller), the others as in `base` (free where not given); the share of bars within one
/// audible step of the knob.
fn fidelity(c: &mut Composer, base: &Settings, positions: usize, seeds: u32) -> Result<()> {
    println!("\nknob fidelity: share of bars within one audible step (5 %, 2 st, 1 note, 2 st)");
    for (i, k) in KNOBS.iter().enumerate() {
        let (lo, hi) = c.reach(i);
        let (lo, hi) = (lo.max(k.min), hi.min(k.max));
        let (mut near, mut all) = (0, 0);
        let mut line = Vec::new();
        for j in 0..positions {
            let v = lo + (hi - lo) * j as f32 / (positions - 1).max(1) as f32;
            let mut s = *base;
            s.knobs[i] = v;
            s.free[i] = false;
            let mut here = 0;
            for seed in 0..seeds {
                let bars = compose_bars(c, &Settings { seed, ..s }, 0, 4)?;
                here += bars
                    .iter()
                    .filter(|m| near_knob(m, Attribute::ALL[i], v))
                    .count();
                all += bars.len();
            }
            near += here;
            line.push(format!(
                "{}:{:.0}%",
                k.format(v),
                100.0 * here as f32 / (4 * seeds) as f32
            ));
        }
        println!(
            "  {:<20} {:>5.1} % over {} .. {}  [{}]",
            k.label,
            100.0 * near as f32 / all.max(1) as f32,
            k.describe(lo),
            k.describe(hi),
            line.join(" ")
        );
    }
    Ok(())
}

/// Knob positions per demo sweep.
const SWEEP_STEPS: usize = 8;

/// The demo's listening part: one sweep per knob from the shipped Bach model, through the
/// composer the plugin plays (C major, the other knobs at their defaults, one melody whose
/// knob moves bar by bar; the rhythm sweep moves note density with it), each sweep's measured
/// attribute printed beside its knob.
pub fn demo_sweeps(out: &Path) -> Result<()> {
    let (mut c, _) = crate::generate_cmd::composer(Path::new("bach"))?;
    println!("\nsweeps from the shipped Bach model ({SWEEP_STEPS} bars each, knob -> measured):");
    let mut tracks = Vec::new();
    for (i, k) in KNOBS.iter().enumerate() {
        let (lo, hi) = c.reach(i);
        let (lo, hi) = (lo.max(k.min), hi.min(k.max));
        let mut bars = Vec::new();
        let mut shown = Vec::new();
        for j in 0..SWEEP_STEPS {
            let v = lo + (hi - lo) * j as f32 / (SWEEP_STEPS - 1) as f32;
            let mut s = Settings {
                motion: 0.0,
                phrase: 1,
                variation: 0.0,
                seed: 3,
                ..Settings::default()
            };
            s.knobs[i] = v;
            if k.attribute == Attribute::RhythmicComplexity {
                // Off-beat onsets need notes: in the chorales rhythm and density have Spearman
                // rho 0.98, so the rhythm sweep takes the density knob along.
                let (dlo, dhi) = c.reach(Attribute::NoteDensity.index());
                s.knobs[Attribute::NoteDensity.index()] =
                    dlo + (dhi - dlo) * j as f32 / (SWEEP_STEPS - 1) as f32;
            }
            let m = c.bar(&s, 0)?;
            shown.push(format!(
                "{}->{}",
                k.format(v),
                k.format(k.from_attribute(k.attribute.of(&m)))
            ));
            bars.push(m);
        }
        println!("  {:<20} {}", k.label, shown.join(" "));
        let path = out.join(format!("sweep_{}.mid", k.attribute.name()));
        write_file(&path, &bars, &ExportOptions::default())
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracks.push((k.attribute.name().to_string(), bars));
    }
    let all = out.join("sweeps.mid");
    arvae_core::files::write_bytes(
        &all,
        tracks_to_smf_bytes(&tracks, &ExportOptions::default()),
    )
    .with_context(|| format!("cannot write {}", all.display()))?;
    println!(
        "\nwrote {}/sweep_<attribute>.mid and {} (one track per attribute)",
        out.display(),
        all.display()
    );
    Ok(())
}
