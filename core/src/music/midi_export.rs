//! Writes measures as a Standard MIDI File (one track, or one track per sequence in a format-1 file).
//!
//! Timing is exact: [`PPQ`] is a multiple of 12, so every tick of the non-uniform grid
//! (twelfths of a beat 0, 3, 4, 6, 8, 9) lands on an integer MIDI tick.

use std::path::Path;

use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::token::{is_note, tick_twelfths, Measure, END, HOLD, TICKS_PER_MEASURE};

/// Ticks per quarter note: a multiple of 12 so every grid tick (1/12 of a beat) is exact.
pub const PPQ: u16 = 480;

/// MIDI ticks in one twelfth of a beat.
const TICKS_PER_TWELFTH: u64 = PPQ as u64 / 12;
/// Twelfths of a beat in one measure.
const TWELFTHS_PER_MEASURE: u64 = 48;
/// Largest delta time a MIDI event can carry.
const MAX_DELTA: u64 = (1 << 28) - 1;
/// Most tracks a MIDI file can hold (the conductor track included).
const MAX_TRACKS: usize = u16::MAX as usize;

/// Export settings: tempo, velocity, MIDI channel and track name.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportOptions {
    /// Tempo in beats (quarter notes) per minute; not finite or not positive means 120.
    pub bpm: f64,
    /// Note-on velocity, clamped to 1..=127.
    pub velocity: u8,
    /// MIDI channel 0..=15 (shown as 1..=16 by most hosts); larger values are clamped to 15.
    pub channel: u8,
    /// Name of the track (of the conductor track in a multi-track file).
    pub track_name: String,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            bpm: 120.0,
            velocity: 100,
            channel: 0,
            track_name: "arvae".into(),
        }
    }
}

/// One sounding note, in exact twelfths of a beat from the start of the first measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoteSpan {
    /// Onset in twelfths of a beat.
    pub start_twelfths: u64,
    /// End (exclusive) in twelfths of a beat.
    pub end_twelfths: u64,
    /// MIDI pitch.
    pub pitch: u8,
}

/// Notes of consecutive measures. A note lasts until the next event (note, `REST`, `START`,
/// `END`); `HOLD` continues it, also across measures; a `HOLD` with nothing before it is silence.
/// Token values outside the vocabulary are treated as rests.
pub fn note_spans(measures: &[Measure]) -> Vec<NoteSpan> {
    let mut out = Vec::new();
    let mut open: Option<(u64, u8)> = None;
    for (m, measure) in measures.iter().enumerate() {
        let base = m as u64 * TWELFTHS_PER_MEASURE;
        for (t, &token) in measure.0.iter().enumerate() {
            if token == HOLD {
                continue;
            }
            let at = base + tick_twelfths(t) as u64;
            if let Some((start, pitch)) = open.take() {
                out.push(NoteSpan {
                    start_twelfths: start,
                    end_twelfths: at,
                    pitch,
                });
            }
            if is_note(token) {
                open = Some((at, token));
            }
        }
    }
    if let Some((start, pitch)) = open {
        let end = measures.len() as u64 * TWELFTHS_PER_MEASURE;
        out.push(NoteSpan {
            start_twelfths: start,
            end_twelfths: end,
            pitch,
        });
    }
    out
}

/// Where the music ends, in twelfths: where the trailing `END` padding begins (`HOLD`s after
/// an `END` continue it), else at the end of the last measure.
fn content_end_twelfths(measures: &[Measure]) -> u64 {
    let tokens: Vec<u8> = measures.iter().flat_map(|m| m.0).collect();
    // The tail made only of END and HOLD (which continues the END); the music ends at its first END.
    let mut tail = tokens.len();
    while tail > 0 && matches!(tokens[tail - 1], END | HOLD) {
        tail -= 1;
    }
    let end = tokens[tail..]
        .iter()
        .position(|&t| t == END)
        .map_or(tokens.len(), |i| tail + i);
    (end / TICKS_PER_MEASURE) as u64 * TWELFTHS_PER_MEASURE
        + tick_twelfths(end % TICKS_PER_MEASURE) as u64
}

/// Builds a track from events at absolute MIDI ticks (sorted by the caller), ending it at
/// `end_tick` or after the last event. Deltas longer than MIDI allows are split with empty text events.
fn track_from_events<'a>(
    events: Vec<(u64, TrackEventKind<'a>)>,
    end_tick: u64,
) -> Vec<TrackEvent<'a>> {
    let mut track = Vec::with_capacity(events.len() + 1);
    let mut last = 0u64;
    let mut push = |track: &mut Vec<TrackEvent<'a>>, tick: u64, kind: TrackEventKind<'a>| {
        let tick = tick.max(last);
        while tick - last > MAX_DELTA {
            last += MAX_DELTA;
            track.push(TrackEvent {
                delta: u28::new(MAX_DELTA as u32),
                kind: TrackEventKind::Meta(MetaMessage::Text(b"")),
            });
        }
        track.push(TrackEvent {
            delta: u28::new((tick - last) as u32),
            kind,
        });
        last = tick;
    };
    for (tick, kind) in events {
        push(&mut track, tick, kind);
    }
    push(
        &mut track,
        end_tick,
        TrackEventKind::Meta(MetaMessage::EndOfTrack),
    );
    track
}

/// Tempo and 4/4 time signature meta events at tick 0.
fn conductor_events(opts: &ExportOptions) -> Vec<(u64, TrackEventKind<'static>)> {
    let bpm = if opts.bpm.is_finite() && opts.bpm > 0.0 {
        opts.bpm
    } else {
        120.0
    };
    let micros = (60_000_000.0 / bpm).round().clamp(1.0, 0xFF_FFFF as f64) as u32;
    vec![
        (
            0,
            TrackEventKind::Meta(MetaMessage::Tempo(u24::new(micros))),
        ),
        (
            0,
            TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, 24, 8)),
        ),
    ]
}

/// Note-on and note-off events of `measures` at absolute MIDI ticks, note-offs first at equal ticks.
fn note_events(measures: &[Measure], opts: &ExportOptions) -> Vec<(u64, TrackEventKind<'static>)> {
    let channel = u4::new(opts.channel.min(15));
    let vel = u7::new(opts.velocity.clamp(1, 127));
    let mut events: Vec<(u64, u8, TrackEventKind<'static>)> = Vec::new();
    for span in note_spans(measures) {
        let key = u7::new(span.pitch);
        events.push((
            span.start_twelfths * TICKS_PER_TWELFTH,
            1,
            TrackEventKind::Midi {
                channel,
                message: MidiMessage::NoteOn { key, vel },
            },
        ));
        events.push((
            span.end_twelfths * TICKS_PER_TWELFTH,
            0,
            TrackEventKind::Midi {
                channel,
                message: MidiMessage::NoteOff {
                    key,
                    vel: u7::new(0),
                },
            },
        ));
    }
    events.sort_by_key(|&(tick, order, _)| (tick, order));
    events
        .into_iter()
        .map(|(tick, _, kind)| (tick, kind))
        .collect()
}

/// The music track of `measures`, named `name`, with the conductor events in front when given.
fn music_track<'a>(
    measures: &[Measure],
    name: &'a str,
    conductor: Vec<(u64, TrackEventKind<'a>)>,
    opts: &ExportOptions,
) -> Vec<TrackEvent<'a>> {
    let mut events = vec![(
        0,
        TrackEventKind::Meta(MetaMessage::TrackName(name.as_bytes())),
    )];
    events.extend(conductor);
    events.extend(note_events(measures, opts));
    track_from_events(events, content_end_twelfths(measures) * TICKS_PER_TWELFTH)
}

fn to_bytes(smf: &Smf) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to memory fails only past the limits of the format (tracks, sizes) that the
    // callers keep to; an empty result is the answer then, never a panic.
    if smf.write(&mut out).is_err() {
        out.clear();
    }
    out
}

/// One track of consecutive measures as a format-0 file: track name, tempo, 4/4, the notes, and
/// end-of-track where the music ends (before a trailing run of `END` padding).
/// A note lasts until the next event (note, `REST`, `START`, `END`); `HOLD` continues it, also across measures.
pub fn to_smf_bytes(measures: &[Measure], opts: &ExportOptions) -> Vec<u8> {
    let header = Header::new(Format::SingleTrack, Timing::Metrical(u15::new(PPQ)));
    let mut smf = Smf::new(header);
    smf.tracks.push(music_track(
        measures,
        &opts.track_name,
        conductor_events(opts),
        opts,
    ));
    to_bytes(&smf)
}

/// Several named tracks (e.g. one per attribute sweep) in one format-1 file, after a conductor
/// track (named `opts.track_name`) with tempo and 4/4. All tracks use `opts.channel`.
/// Tracks past the format's limit of 65,535 are left out.
pub fn tracks_to_smf_bytes(tracks: &[(String, Vec<Measure>)], opts: &ExportOptions) -> Vec<u8> {
    let header = Header::new(Format::Parallel, Timing::Metrical(u15::new(PPQ)));
    let mut smf = Smf::new(header);
    let name = opts.track_name.as_bytes();
    let mut conductor = vec![(0, TrackEventKind::Meta(MetaMessage::TrackName(name)))];
    conductor.extend(conductor_events(opts));
    smf.tracks.push(track_from_events(conductor, 0));
    for (name, measures) in tracks.iter().take(MAX_TRACKS - 1) {
        smf.tracks
            .push(music_track(measures, name, Vec::new(), opts));
    }
    to_bytes(&smf)
}

/// Writes `measures` to `path` as a one-track MIDI file (see [`to_smf_bytes`]).
pub fn write_file(path: &Path, measures: &[Measure], opts: &ExportOptions) -> std::io::Result<()> {
    crate::files::write_bytes(path, to_smf_bytes(measures, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::token::{REST, START};
    use midly::Format;

    fn measure(tokens: &[(usize, u8)]) -> Measure {
        let mut t = [HOLD; TICKS_PER_MEASURE];
        for &(i, tok) in tokens {
            t[i] = tok;
        }
        Measure(t)
    }

    #[test]
    fn grid_ticks_are_exact_midi_ticks() {
        assert_eq!(PPQ as u64 % 12, 0);
        for t in 0..=TICKS_PER_MEASURE {
            assert_eq!(
                tick_twelfths(t) as u64 * TICKS_PER_TWELFTH * 12,
                tick_twelfths(t) as u64 * PPQ as u64
            );
        }
    }

    #[test]
    fn spans_follow_holds_and_stop_at_events() {
        let ms = [
            measure(&[(0, HOLD), (2, 60), (6, REST), (9, 62), (18, 64)]),
            measure(&[(2, 65), (3, START), (12, 200), (20, 67)]),
        ];
        let spans: Vec<(u64, u64, u8)> = note_spans(&ms)
            .iter()
            .map(|s| (s.start_twelfths, s.end_twelfths, s.pitch))
            .collect();
        // A leading HOLD is silence; 64 is held over the barline; 200 is not a token and acts as a rest.
        assert_eq!(
            spans,
            vec![
                (4, 12, 60),
                (18, 36, 62),
                (36, 52, 64),
                (52, 54, 65),
                (88, 96, 67)
            ]
        );
        assert!(note_spans(&[]).is_empty());
    }

    #[test]
    fn single_track_file_has_tempo_meter_notes_and_end() {
        let ms = [
            measure(&[(0, 60), (12, 64)]),
            measure(&[(0, 67), (12, END)]),
        ];
        let opts = ExportOptions {
            bpm: 90.0,
            velocity: 0,
            channel: 20,
            track_name: "demo".into(),
        };
        let bytes = to_smf_bytes(&ms, &opts);
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.header.format, Format::SingleTrack);
        assert_eq!(smf.header.timing, Timing::Metrical(u15::new(PPQ)));
        assert_eq!(smf.tracks.len(), 1);
        let mut tick = 0u64;
        let mut seen = Vec::new();
        for ev in &smf.tracks[0] {
            tick += ev.delta.as_int() as u64;
            seen.push((tick, ev.kind));
        }
        assert!(seen.contains(&(0, TrackEventKind::Meta(MetaMessage::TrackName(b"demo")))));
        assert!(seen.contains(&(
            0,
            TrackEventKind::Meta(MetaMessage::Tempo(u24::new(666_667)))
        )));
        assert!(seen.contains(&(
            0,
            TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, 24, 8))
        )));
        let q = PPQ as u64;
        let on = |t, k| {
            (
                t,
                TrackEventKind::Midi {
                    channel: u4::new(15),
                    message: MidiMessage::NoteOn {
                        key: u7::new(k),
                        vel: u7::new(1),
                    },
                },
            )
        };
        let off = |t, k| {
            (
                t,
                TrackEventKind::Midi {
                    channel: u4::new(15),
                    message: MidiMessage::NoteOff {
                        key: u7::new(k),
                        vel: u7::new(0),
                    },
                },
            )
        };
        let notes: Vec<_> = seen
            .iter()
            .copied()
            .filter(|(_, k)| matches!(k, TrackEventKind::Midi { .. }))
            .collect();
        assert_eq!(
            notes,
            vec![
                on(0, 60),
                off(2 * q, 60),
                on(2 * q, 64),
                off(4 * q, 64),
                on(4 * q, 67),
                off(6 * q, 67)
            ]
        );
        // End of track where the END padding begins.
        assert_eq!(
            seen.last(),
            Some(&(6 * q, TrackEventKind::Meta(MetaMessage::EndOfTrack)))
        );
        // Tempo falls back to 120 for nonsense.
        let bad = to_smf_bytes(
            &ms,
            &ExportOptions {
                bpm: f64::NAN,
                ..ExportOptions::default()
            },
        );
        let smf = Smf::parse(&bad).unwrap();
        assert!(smf.tracks[0]
            .iter()
            .any(|e| e.kind == TrackEventKind::Meta(MetaMessage::Tempo(u24::new(500_000)))));
    }

    #[test]
    fn multi_track_file_has_conductor_and_named_tracks() {
        let a = vec![measure(&[(0, 60)])];
        let b = vec![measure(&[(0, 72)]), measure(&[(6, 74)])];
        let bytes = tracks_to_smf_bytes(
            &[("sweep 0".into(), a), ("sweep 1".into(), b)],
            &ExportOptions::default(),
        );
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.header.format, Format::Parallel);
        assert_eq!(smf.tracks.len(), 3);
        assert!(smf.tracks[0]
            .iter()
            .any(|e| matches!(e.kind, TrackEventKind::Meta(MetaMessage::Tempo(_)))));
        assert!(!smf.tracks[0]
            .iter()
            .any(|e| matches!(e.kind, TrackEventKind::Midi { .. })));
        assert_eq!(
            smf.tracks[1][0].kind,
            TrackEventKind::Meta(MetaMessage::TrackName(b"sweep 0"))
        );
        assert_eq!(
            smf.tracks[2][0].kind,
            TrackEventKind::Meta(MetaMessage::TrackName(b"sweep 1"))
        );
        let notes = |t: usize| {
            smf.tracks[t]
                .iter()
                .filter(|e| matches!(e.kind, TrackEventKind::Midi { .. }))
                .count()
        };
        assert_eq!((notes(1), notes(2)), (2, 4));
    }

    #[test]
    fn long_silence_splits_deltas() {
        let mut ms = vec![measure(&[(0, 60)])];
        ms.extend(std::iter::repeat_n(Measure::rest(), 140_000));
        ms.push(measure(&[(0, 62)]));
        let smf_bytes = to_smf_bytes(&ms, &ExportOptions::default());
        let smf = Smf::parse(&smf_bytes).unwrap();
        let total: u64 = smf.tracks[0].iter().map(|e| e.delta.as_int() as u64).sum();
        assert_eq!(total, ms.len() as u64 * 4 * PPQ as u64);
        let ons: Vec<u64> = smf.tracks[0]
            .iter()
            .scan(0u64, |t, e| {
                *t += e.delta.as_int() as u64;
                Some((*t, e.kind))
            })
            .filter(|(_, k)| {
                matches!(
                    k,
                    TrackEventKind::Midi {
                        message: MidiMessage::NoteOn { .. },
                        ..
                    }
                )
            })
            .map(|(t, _)| t)
            .collect();
        assert_eq!(ons, vec![0, 140_001 * 4 * PPQ as u64]);
    }

    #[test]
    fn write_file_writes_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.mid");
        let ms = [measure(&[(0, 60)])];
        write_file(&path, &ms, &ExportOptions::default()).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            to_smf_bytes(&ms, &ExportOptions::default())
        );
        assert!(write_file(
            &dir.path().join("no/such/dir/x.mid"),
            &ms,
            &ExportOptions::default()
        )
        .is_err());
    }
}
