//! The built plugin in a real CLAP host (clack-host): timing, no hanging notes, knob response,
//! session state and a bad model file. See `common/mod.rs` for how the plugin is found.

mod common;

use arvae_core::compose::knobs::KNOBS;
use arvae_core::music::attributes::attributes;
use arvae_core::music::token::tick_offset;
use arvae_plugin::model::LoadedModel;
use common::*;

/// Asserts every onset in `events[from..]` lies on the 24-tick grid within 1 sample, for a
/// segment that starts at absolute sample `origin` at beat `beats0` and runs at `tempo`.
fn assert_on_grid(notes: &[PlayedNote], origin: u64, end: u64, beats0: f64, tempo: f64) -> usize {
    let spb = 60.0 / tempo * SAMPLE_RATE;
    let mut n = 0;
    for note in notes.iter().filter(|n| n.start >= origin && n.start < end) {
        let beats = beats0 + (note.start - origin) as f64 / spb;
        let bar = (beats / 4.0).floor();
        let best = (0..=24)
            .map(|t| bar * 4.0 + if t == 24 { 4.0 } else { tick_offset(t) })
            .map(|b| origin as f64 + (b - beats0) * spb)
            .map(|s| (s - note.start as f64).abs())
            .fold(f64::INFINITY, f64::min);
        assert!(
            best <= 1.0,
            "onset at sample {} is {best} samples off the grid",
            note.start
        );
        n += 1;
    }
    n
}

#[test]
fn sixteen_bars_in_time_without_hanging_notes() {
    for tempo in [120.0, 97.0] {
        for block in [64u32, 512, 1000] {
            let mut s = Session::new(1000, false, None);
            // A real-time host that renders 20 times faster than real time (an unflagged
            // bounce); the knob is set before Play, as a host restores a session.
            s.pace = Some(20.0);
            s.set_plain("Variation", 3.0, 0.0, 9999.0);
            s.run(
                Transport {
                    playing: false,
                    tempo,
                    start_beats: 0.0,
                },
                (10.0 * SAMPLE_RATE) as u64,
                1000,
            );
            let t0 = s.now;
            let len = Session::bar_samples(16.0, tempo);
            let play = Transport {
                playing: true,
                tempo,
                start_beats: 0.0,
            };
            s.run(play, len, block);
            // Stop: every note must end in the stop block.
            let stop_at = s.now;
            let stop = Transport {
                playing: false,
                tempo,
                start_beats: 64.0,
            };
            s.run(stop, block as u64 * 2, block);
            let notes = notes(&s.events);
            assert!(
                notes.len() >= 16,
                "{tempo} bpm, block {block}: {} notes",
                notes.len()
            );
            for n in &notes {
                let end = n.end.expect("note without NoteOff");
                assert!(
                    end <= stop_at,
                    "note {n:?} ends after the stop block start {stop_at}"
                );
                assert!(n.pitch <= 127);
            }
            let on_grid = assert_on_grid(&notes, t0, t0 + len, 0.0, tempo);
            assert_eq!(on_grid, notes.len());
            // Bars are filled: notes reach the last bar.
            let last_bar_start = t0 + Session::bar_samples(15.0, tempo);
            assert!(notes.iter().any(|n| n.start >= last_bar_start));
            let (lo, hi) = notes
                .iter()
                .fold((127, 0), |(lo, hi), n| (lo.min(n.pitch), hi.max(n.pitch)));
            println!(
                "{tempo} bpm, block {block}: {} notes over 16 bars, pitches {lo}..={hi}",
                notes.len()
            );
        }
    }
}

#[test]
fn tempo_change_loop_jump_and_stop_leave_no_hanging_note() {
    let block = 512;
    let mut s = Session::new(1024, false, None);
    // Two bars at 120, then 97 from where it is (continuous position), then a loop jump back
    // to bar 1 in the middle of a bar, then stop mid-note.
    let a = Session::bar_samples(2.0, 120.0) + 300;
    s.run(
        Transport {
            playing: true,
            tempo: 120.0,
            start_beats: 0.0,
        },
        a,
        block,
    );
    let beats_a = a as f64 * 120.0 / 60.0 / SAMPLE_RATE;
    let b_start = s.now;
    let b = Session::bar_samples(1.5, 97.0) + 77;
    s.run(
        Transport {
            playing: true,
            tempo: 97.0,
            start_beats: beats_a,
        },
        b,
        block,
    );
    let jump_at = s.now;
    let sounding_before_jump = {
        let n = notes(&s.events);
        n.last().is_some_and(|l| l.end.is_none())
    };
    let c = Session::bar_samples(2.25, 97.0);
    s.run(
        Transport {
            playing: true,
            tempo: 97.0,
            start_beats: 4.5,
        },
        c,
        block,
    );
    let stop_at = s.now;
    s.run(
        Transport {
            playing: false,
            tempo: 97.0,
            start_beats: 4.5 + 2.25 * 4.0,
        },
        block as u64,
        block,
    );
    let notes = notes(&s.events);
    for n in &notes {
        let end = n.end.expect("hanging note");
        assert!(end <= stop_at);
    }
    if sounding_before_jump {
        assert!(
            notes.iter().any(|n| n.end == Some(jump_at)),
            "the note sounding at the jump ends at the jump"
        );
    }
    assert_on_grid(&notes, 0, b_start, 0.0, 120.0);
    assert_on_grid(&notes, b_start, jump_at, beats_a, 97.0);
    assert_on_grid(&notes, jump_at, stop_at, 4.5, 97.0);
    println!(
        "{} notes across tempo change, loop jump and stop",
        notes.len()
    );
}

/// Spearman rank correlation (average ranks for ties); 0 when one side is constant.
fn spearman(x: &[f64], y: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for k in i..=j {
                r[idx[k]] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    if vx == 0.0 || vy == 0.0 {
        0.0
    } else {
        cov / (vx * vy).sqrt()
    }
}

/// Whether the knob-response targets are asserted: by default (the embedded Bach model, target
/// matching on); `ARVAE_KNOB_TARGETS=0` only reports, to measure other models or
/// `ARVAE_KNOB_PLAIN=1`.
fn knob_targets_apply() -> (bool, String) {
    match std::env::var("ARVAE_KNOB_TARGETS").ok().as_deref() {
        Some("0") => (false, "ARVAE_KNOB_TARGETS=0".into()),
        _ => (true, "the embedded model, target matching on".into()),
    }
}

#[test]
fn knobs_move_their_attribute() {
    let tempo = 120.0;
    let bars = 8;
    let positions = 9;
    let model = LoadedModel::embedded().unwrap();
    let mut s = Session::new(1024, true, None);
    s.set_plain("Variation", 11.0, 0.0, 9999.0);
    // ARVAE_KNOB_PLAIN=1: the paper's plain manipulation (regularized dimensions set from the
    // calibration, no search), for comparison.
    let plain = std::env::var("ARVAE_KNOB_PLAIN").is_ok_and(|v| v == "1");
    if plain {
        s.set_normalized("Match targets", 0.0);
    }
    let names = [
        "Rhythmic complexity",
        "Pitch range",
        "Note density",
        "Contour",
    ];
    let mut matrix = [[0.0f64; 4]; 4];
    for (i, name) in names.iter().enumerate() {
        let k = KNOBS[i];
        // Sweep the part of the knob the model was calibrated on.
        let (lo, hi) = model.info.calibrated[i].unwrap_or((k.min, k.max));
        let (lo, hi) = (lo.max(k.min), hi.min(k.max));
        let mut knob_values = Vec::new();
        let mut measured: [Vec<f64>; 4] = Default::default();
        for j in 0..positions {
            let v = lo + (hi - lo) * (0.05 + 0.9 * j as f32 / (positions - 1) as f32);
            // Other knobs at their defaults.
            for (o, other) in names.iter().enumerate() {
                let val = if o == i { v } else { KNOBS[o].default };
                s.set_plain(other, val as f64, KNOBS[o].min as f64, KNOBS[o].max as f64);
            }
            let origin = s.now;
            // Jump back to bar 0 so every position plays the same bar indices.
            s.run(
                Transport {
                    playing: true,
                    tempo,
                    start_beats: 0.0,
                },
                Session::bar_samples(bars as f64, tempo),
                1024,
            );
            let played = notes(&s.events);
            let ms = measures_from_notes(&played, origin, tempo, bars);
            for m in &ms {
                let a = attributes(m);
                knob_values.push(v as f64);
                for (q, av) in a.iter().enumerate() {
                    measured[q].push(*av as f64);
                }
            }
        }
        for q in 0..4 {
            matrix[i][q] = spearman(&knob_values, &measured[q]);
        }
        if std::env::var_os("ARVAE_KNOB_DETAIL").is_some() {
            for (j, chunk) in measured[i].chunks(bars).enumerate() {
                let shown: Vec<String> = chunk
                    .iter()
                    .map(|v| k.format(k.from_attribute(*v as f32)))
                    .collect();
                println!(
                    "  knob {}: {}",
                    k.format(knob_values[j * bars] as f32),
                    shown.join(" ")
                );
            }
        }
        println!(
            "{name}: swept {} .. {}",
            k.format(lo + 0.05 * (hi - lo)),
            k.format(hi - 0.05 * (hi - lo))
        );
    }
    println!("Spearman rho, knob (rows) vs measured attribute of the played bars (columns):");
    println!(
        "{:>22} {:>8} {:>8} {:>8} {:>8}",
        "", "rhythm", "range", "density", "contour"
    );
    for (i, row) in matrix.iter().enumerate() {
        println!(
            "{:>22} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            names[i], row[0], row[1], row[2], row[3]
        );
    }
    let (apply, why) = knob_targets_apply();
    let (apply, why) = if plain {
        (false, "ARVAE_KNOB_PLAIN=1".to_string())
    } else {
        (apply, why)
    };
    // Rhythm at the other knobs' defaults (4 notes a bar) is the weak knob: the Bach model's
    // 4-note bars take few values (6.4 %, quarter notes; 8.2 %, one eighth pair), so one bar
    // of the 72 moves rho by 0.025. Over Variation seeds 1-5 and 11 it ranged 0.687-0.839
    // (mean 0.771) before composing redrew costly bars, 0.804-0.859 (mean 0.841) since.
    let targets = [0.8, 0.9, 0.9, 0.9];
    let pass: Vec<bool> = (0..4).map(|i| matrix[i][i] >= targets[i]).collect();
    println!("targets (rho >= 0.8 rhythm, 0.9 others) met: {pass:?}; asserted: {apply} ({why})");
    if apply {
        for i in 0..4 {
            assert!(
                matrix[i][i] >= targets[i],
                "{}: rho {:.3} < {}",
                names[i],
                matrix[i][i],
                targets[i]
            );
        }
    }
}

#[test]
fn restored_session_plays_the_same_bars() {
    let tempo = 120.0;
    let mut a = Session::new(1024, true, None);
    a.set_plain("Variation", 42.0, 0.0, 9999.0);
    a.set_plain("Note density", 9.0, 1.0, 16.0);
    a.set_plain("Transpose", 3.0, -24.0, 24.0);
    a.set_normalized("Transform", 1.0);
    // Play a melody into it during bar 0 (transform mode captures and encodes it).
    let spb = 60.0 / tempo * SAMPLE_RATE;
    for (beat, pitch) in [(0.0, 60u8), (1.0, 64), (1.5, 67), (2.0, 72), (3.0, 71)] {
        let on = (beat * spb) as u64;
        a.input.push((on, true, pitch));
        a.input.push((on + (0.4 * spb) as u64, false, pitch));
    }
    a.run(
        Transport {
            playing: true,
            tempo,
            start_beats: 0.0,
        },
        Session::bar_samples(4.0, tempo),
        512,
    );
    let state = a.save();
    let split = a.events.len();
    let t4 = Transport {
        playing: true,
        tempo,
        start_beats: 16.0,
    };
    let eight = Session::bar_samples(8.0, tempo);
    // A keeps playing: bars 4..12 (a jump-free continuation).
    let origin_a = a.now;
    a.run(t4, eight, 512);
    let next_a: Vec<(u64, bool, u8)> = a.events[split..]
        .iter()
        .map(|&(t, on, p)| (t - origin_a, on, p))
        .collect();
    // B: a fresh instance restored from the saved state plays bars 4..12.
    let mut b = Session::new(1024, true, Some(&state));
    b.run(t4, eight, 512);
    let next_b: Vec<(u64, bool, u8)> = b.events.clone();
    assert!(next_a.len() >= 16, "{} events", next_a.len());
    // A note sounding across the save point is the only possible difference at the start.
    let strip = |v: &[(u64, bool, u8)]| -> Vec<(u64, bool, u8)> {
        v.iter().copied().filter(|e| e.0 > 0 || e.1).collect()
    };
    assert_eq!(
        strip(&next_a),
        strip(&next_b),
        "restored instance plays different bars"
    );
    // The captured bar matters: without it (no transform) the bars differ.
    let mut c = Session::new(1024, true, None);
    c.set_plain("Variation", 42.0, 0.0, 9999.0);
    c.set_plain("Note density", 9.0, 1.0, 16.0);
    c.set_plain("Transpose", 3.0, -24.0, 24.0);
    c.run(t4, eight, 512);
    println!(
        "restored: {} events identical over 8 bars; without the captured bar they {}",
        next_b.len(),
        if strip(&c.events) == strip(&next_b) {
            "are the same"
        } else {
            "differ"
        }
    );
}

#[test]
fn bad_model_file_keeps_the_plugin_playing() {
    let mut a = Session::new(512, true, None);
    let state = a.save();
    // nice-plug's CLAP state: a little-endian u64 length, then the JSON.
    let mut json: serde_json::Value = serde_json::from_slice(&state[8..]).expect("state is JSON");
    let bad = std::env::temp_dir().join(format!("arvae-bad-{}.safetensors", std::process::id()));
    std::fs::write(&bad, b"definitely not safetensors").unwrap();
    json["fields"]["model-path"] =
        serde_json::Value::String(serde_json::to_string(&bad.display().to_string()).unwrap());
    let mut b = Session::new(512, true, Some(&Session::state_blob(&json)));
    b.play_from_start(2.0, 120.0);
    std::fs::remove_file(&bad).ok();
    assert!(
        !notes(&b.events).is_empty(),
        "no notes with a bad model path"
    );
}

#[test]
fn a_host_without_transport_gets_free_running_bars_at_120_bpm() {
    let mut s = Session::new(512, true, None);
    s.send_transport = false;
    let bars = 4.0;
    // The tempo here only sizes the run: the plugin sees no transport.
    s.run(
        Transport {
            playing: true,
            tempo: 120.0,
            start_beats: 0.0,
        },
        Session::bar_samples(bars, 120.0),
        512,
    );
    let played = notes(&s.events);
    assert!(played.len() >= 4, "free-running plugin played {played:?}");
    // Onsets on the 24-tick grid at 120 BPM from the first sample.
    let len = Session::bar_samples(bars, 120.0);
    assert_eq!(assert_on_grid(&played, 0, len, 0.0, 120.0), played.len());
    // Every note ends.
    let ons = s.events.iter().filter(|e| e.1).count();
    let offs = s.events.iter().filter(|e| !e.1).count();
    assert!(ons == offs || ons == offs + 1, "{ons} on, {offs} off");
}

#[test]
fn newer_or_broken_state_never_stops_the_plugin() {
    let mut a = Session::new(512, true, None);
    let state = a.save();
    let mut json: serde_json::Value = serde_json::from_slice(&state[8..]).expect("state is JSON");
    // A newer version: a version string from the future, a parameter and a field this build
    // does not know, and a held bar in a shape it can't read; one known knob moved.
    json["version"] = serde_json::Value::String("99.0.0".into());
    json["params"]["future-knob"] = serde_json::json!({"f32": 0.5});
    json["params"]["density"] = serde_json::json!({"f32": 7.0});
    json["fields"]["future-field"] = serde_json::Value::String("\"x\"".into());
    json["fields"]["held-bar"] = serde_json::Value::String("{\"tokens\": \"not a bar\"}".into());
    let newer = Session::state_blob(&json);
    let garbage = b"\x05\x00\x00\x00\x00\x00\x00\x00{{{{{".to_vec();
    for (what, blob) in [
        ("newer", newer),
        ("garbage", garbage),
        ("empty", Vec::new()),
    ] {
        let mut b = Session::try_new(512, true, Some(&blob));
        println!("{what}: load error {:?}", b.load_error);
        if what == "newer" {
            // Loads what this build knows, ignores the rest.
            assert!(b.load_error.is_none(), "{:?}", b.load_error);
            let again = b.save();
            let j: serde_json::Value = serde_json::from_slice(&again[8..]).unwrap();
            assert_eq!(j["params"]["density"]["f32"], 7.0, "{j}");
            assert_eq!(j["fields"]["held-bar"], "null", "{j}");
        } else {
            // Refused with an error to the host; the instance plays with its defaults.
            assert!(b.load_error.is_some(), "{what} state loaded");
        }
        b.play_from_start(2.0, 120.0);
        assert!(!notes(&b.events).is_empty(), "{what} state: no notes");
    }
}

#[test]
fn parameters_read_as_numbers_with_units_and_lists_as_steps() {
    use clack_extensions::params::PluginParams;
    use std::ffi::CString;
    let mut s = Session::new(512, true, None);
    let h = s.instance.plugin_handle();
    let params: PluginParams = h.get_extension().expect("params extension");
    let text = |name: &str, v: f64| -> String {
        let (id, _, _) = s.ids[name];
        let mut buf = [0u8; 256];
        let t = params
            .value_to_text(&h, id, v, &mut buf)
            .expect("value to text");
        String::from_utf8_lossy(t)
            .trim_end_matches('\0')
            .to_string()
    };
    let value = |name: &str, t: &str| -> Option<f64> {
        let (id, _, _) = s.ids[name];
        params.text_to_value(&h, id, &CString::new(t).unwrap())
    };
    // Continuous knobs are normalized 0..1 in CLAP: the number first, the unit after it.
    let density_10 = (10.0 - 1.0) / 15.0;
    assert_eq!(text("Note density", density_10), "10.0 notes");
    assert_eq!(text("Contour", 0.75), "+12.0 semitones");
    assert_eq!(text("Motion", 0.5), "50 %");
    // Scripts set numbers, with or without the unit.
    for t in ["10", "10.0", "10 notes"] {
        let v = value("Note density", t).unwrap_or(f64::NAN);
        assert!((v - density_10).abs() < 1e-6, "{t:?} -> {v}");
    }
    assert!(value("Note density", "lots").is_none());
    // Lists are stepped, one step per entry, and show their names.
    let (_, lo, hi) = s.ids["Scale"];
    assert_eq!((lo, hi), (0.0, 11.0));
    assert_eq!(text("Scale", 2.0), "Minor");
    assert_eq!(text("Key", 2.0), "D");
    assert_eq!(s.ids["Phrase"].2, 3.0);
    assert_eq!(text("Phrase", 2.0), "4 bars");
    assert_eq!(text("Transpose", 27.0), "+3 semitones");
}
