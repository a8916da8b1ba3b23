//! The built plugin in a real CLAP host (clack-host), played as a DAW plays it: a loop in real
//! time, a knob moved while stopped, a render faster than real time without the offline flag,
//! and 64 bars checked for one key and the trained pitch range. The debug build runs with
//! `assert_process_allocs`, so any allocation in `process()` aborts these tests.

mod common;

use arvae_core::compose::score::{key_fit, score};
use arvae_core::music::token::Measure;
use common::*;

const TEMPO: f64 = 120.0;
const BLOCK: u32 = 512;

fn play(from_bar: f64) -> Transport {
    Transport {
        playing: true,
        tempo: TEMPO,
        start_beats: from_bar * 4.0,
    }
}

/// Notes since `origin` as (offset from origin, pitch, length).
fn since(s: &Session, origin: u64) -> Vec<(u64, u8, Option<u64>)> {
    notes(&s.events)
        .into_iter()
        .filter(|n| n.start >= origin)
        .map(|n| (n.start - origin, n.pitch, n.end.map(|e| e - n.start)))
        .collect()
}

/// What a host does between a parameter change and Play: stopped blocks at position `bar`
/// for `seconds` of audio (paced like the session).
fn stopped(s: &mut Session, bar: f64, seconds: f64) {
    let t = Transport {
        playing: false,
        tempo: TEMPO,
        start_beats: bar * 4.0,
    };
    s.run(t, (seconds * SAMPLE_RATE) as u64, BLOCK);
}

fn bars_since(s: &Session, origin: u64, bars: usize) -> Vec<Measure> {
    measures_from_notes(&notes(&s.events), origin, TEMPO, bars)
}

#[test]
fn a_real_time_loop_replays_the_same_bars() {
    let mut s = Session::new(BLOCK, false, None);
    s.pace = Some(4.0);
    s.loop_beats = Some((0.0, 16.0));
    s.set_plain("Variation", 5.0, 0.0, 9999.0);
    // A second of wall time before Play: the first phrase is decoded in tens of milliseconds,
    // but CI machines are loaded.
    stopped(&mut s, 0.0, 4.0);
    let bars4 = Session::bar_samples(4.0, TEMPO);
    let mut passes = Vec::new();
    for _ in 0..3 {
        let origin = s.now;
        s.run(play(0.0), bars4, BLOCK);
        passes.push(since(&s, origin));
    }
    println!("a 4-bar loop, 3 passes: {} notes a pass", passes[0].len());
    assert!(passes[0].len() >= 8, "{:?}", passes[0]);
    // The last note of a pass is cut by the jump back; compare onsets and pitches.
    let onsets = |p: &[(u64, u8, Option<u64>)]| p.iter().map(|n| (n.0, n.1)).collect::<Vec<_>>();
    assert_eq!(
        onsets(&passes[1]),
        onsets(&passes[0]),
        "second pass differs"
    );
    assert_eq!(onsets(&passes[2]), onsets(&passes[0]), "third pass differs");
    // The four bars are not one bar repeated.
    let bars = bars_since(&s, s.now - bars4, 4);
    assert!(bars.windows(2).any(|w| w[0] != w[1]), "{bars:?}");
}

#[test]
fn a_knob_moved_while_stopped_is_heard_in_the_first_bar() {
    let mut s = Session::new(BLOCK, false, None);
    s.pace = Some(2.0);
    s.run(play(0.0), Session::bar_samples(2.0, TEMPO), BLOCK);
    // Stop, move the knob, wait stopped (half a second of blocks), then Play from the start.
    s.set_plain("Note density", 9.0, 1.0, 16.0);
    s.set_plain("Variation", 17.0, 0.0, 9999.0);
    s.run(
        Transport {
            playing: false,
            tempo: TEMPO,
            start_beats: 0.0,
        },
        96_000, // one second of wall time at 2x
        BLOCK,
    );
    let origin = s.now;
    s.run(play(0.0), Session::bar_samples(1.0, TEMPO), BLOCK);
    let heard = since(&s, origin);

    // What bar 0 is with those knobs: an offline render of a fresh instance.
    let mut o = Session::new(BLOCK, true, None);
    o.set_plain("Note density", 9.0, 1.0, 16.0);
    o.set_plain("Variation", 17.0, 0.0, 9999.0);
    o.play_from_start(1.0, TEMPO);
    let want = since(&o, 0);
    let onsets = |p: &[(u64, u8, Option<u64>)]| p.iter().map(|n| (n.0, n.1)).collect::<Vec<_>>();
    println!(
        "bar 0 after Play: {} notes; offline: {}",
        heard.len(),
        want.len()
    );
    assert_eq!(
        onsets(&heard),
        onsets(&want),
        "bar 0 does not follow the knob"
    );
}

/// How much faster than real time the unflagged render runs: 400 ms of wall time a bar at
/// 120 BPM, several times what the worker needs for the slowest knob settings found (90 ms a
/// bar on one core here, in release; README "Target matching costs"). A pace
/// the worker cannot keep up with plays late bars by design, so this test asks for margin,
/// not for speed (speed is measured by `generate`, not asserted here).
const FAST: f64 = 5.0;

#[test]
fn a_fast_unflagged_render_plays_the_real_time_bars_and_follows_the_knobs() {
    let bars = 16;
    let render = |density: f64, pace: Option<f64>, offline: bool| {
        let mut s = Session::new(BLOCK, offline, None);
        s.pace = pace;
        s.set_plain("Variation", 23.0, 0.0, 9999.0);
        s.set_plain("Note density", density, 1.0, 16.0);
        // The host's pre-roll: 20 s of audio, 4 s of wall time at 5x.
        stopped(&mut s, 0.0, 20.0);
        let origin = s.now;
        s.play_from_start(bars as f64, TEMPO);
        (since(&s, origin), bars_since(&s, origin, bars))
    };
    let notes_a_bar =
        |v: &[Measure]| v.iter().map(|m| m.onsets().count()).sum::<usize>() as f64 / v.len() as f64;
    let mut means = Vec::new();
    for density in [4.0, 10.0] {
        let (fast, fast_bars) = render(density, Some(FAST), false);
        let (exact, exact_bars) = render(density, None, true);
        let distinct = fast_bars
            .iter()
            .enumerate()
            .filter(|(i, m)| fast_bars[..*i].iter().all(|o| o != *m))
            .count();
        println!(
            "{FAST}x real time, no offline flag, note density {density}: {} notes ({:.2} a bar), \
             {distinct} distinct bars of {bars}",
            fast.len(),
            notes_a_bar(&fast_bars)
        );
        assert_eq!(
            fast_bars, exact_bars,
            "density {density}: the fast render differs from the offline one"
        );
        assert_eq!(exact.len(), fast.len());
        assert!(distinct >= 4, "{distinct} distinct bars");
        means.push(notes_a_bar(&fast_bars));
    }
    assert!(means[1] > means[0] + 2.0, "note density 4 -> 10: {means:?}");
}

#[test]
fn sixty_four_bars_keep_the_key_and_the_trained_range() {
    for (motion, label) in [(35.0, "motion 35 %"), (100.0, "motion 100 %")] {
        let mut s = Session::new(BLOCK, true, None);
        s.set_plain("Variation", 31.0, 0.0, 9999.0);
        s.set_plain("Motion", motion, 0.0, 100.0);
        s.set_plain("Phrase variation", motion, 0.0, 100.0);
        s.play_from_start(64.0, TEMPO);
        let bars = bars_since(&s, 0, 64);
        let sc = score(&bars, (55, 84));
        println!(
            "{label}: {} notes, key fit {:.3}, {} outside 55..84, {} empty, {} crowded, {:.2} st at joins",
            sc.notes, sc.key_fit, sc.outside_range, sc.empty, sc.crowded, sc.join_interval
        );
        assert_eq!(sc.outside_range, 0);
        // Real Bach bars in order: 0.986, shuffled: 0.816; 512 generated bars in `score`:
        // 0.979. One 64-bar run varies by a few hundredths (0.949 at motion 35 % here).
        assert!(key_fit(&bars, 4) >= 0.93, "{label}: key fit {}", sc.key_fit);
        assert_eq!(sc.crowded, 0);
        assert!(sc.empty <= 2, "{label}: {} empty bars", sc.empty);
    }
}
