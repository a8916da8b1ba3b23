//! Reads a monophonic melody from a Standard MIDI File (user data, docs/architecture.md §4).
//!
//! - **Which notes**: the track given in [`MidiImportOptions::track`] (all its channels), else
//!   the most monophonic line of the file: notes are grouped by (track, channel), so a format-0
//!   file is separated by channel; channel 10 (index 9, General MIDI drums) is left out unless
//!   it is all there is. The group with the lowest polyphony wins (time-weighted mean number of
//!   sounding notes while any sounds; groups within 0.05 of the lowest count as tied), ties go
//!   to the highest mean pitch, then to the first group.
//! - **Timing**: onsets and offsets snap to the nearest tick of the grid (twelfths of a beat
//!   0, 3, 4, 6, 8, 9, or the next beat), so performed files come out quantized; the shifts are
//!   reported in a [`SnapReport`]. Notes that collapse to zero length are dropped and counted.
//! - **Polyphony** keeps the top line: at any time the highest sounding note. A lower note that is
//!   still held when a higher one ends comes back as a new onset (a monophonic line has no other
//!   way to say it). Silence becomes rests.
//! - **Bars** start at 0 (MIDI can't mark a pickup) and follow the time-signature meta events
//!   (4/4 until the first one); a change that falls inside a bar ends that bar early. The piece
//!   ends at the last note's end, extended to the end of the track if that comes within the same
//!   bar, so the last bar may be short; wholly silent bars after the music are dropped.
//! - **Reason keys** of errors: `parse` (not a MIDI file, truncated, implausibly long), `empty`
//!   (no notes), `track` (index out of range or a track without notes), `timing` (SMPTE
//!   timecode instead of ticks per beat), `io` (the file can't be read).

use std::collections::BTreeSet;
use std::path::Path;

use midly::{Format, MetaMessage, MidiMessage, Smf, Timing, TrackEventKind};

use super::melody::{Bar, ImportError, Melody, Note};

/// Where the melody comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MidiImportOptions {
    /// Index into the file's tracks (the conductor track of a format-1 file is track 0);
    /// `None` picks the most monophonic, highest line.
    pub track: Option<usize>,
}

/// How far notes were moved to the grid (performed, unquantized files).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SnapReport {
    /// Notes read from the chosen track, before snapping (dropped ones included).
    pub notes: usize,
    /// Notes whose onset or offset moved.
    pub moved: usize,
    /// Notes dropped because they had, or snapped to, zero length.
    pub dropped: usize,
    /// Largest shift of an onset or offset, in beats.
    pub max_shift_beats: f64,
    /// Mean over all notes of the larger of each note's onset and offset shift, in beats.
    pub mean_shift_beats: f64,
}

/// Grid points inside a beat, in twelfths, with the next beat as the last point.
const GRID: [u64; 7] = [0, 3, 4, 6, 8, 9, 12];
/// Bar lengths are counted in 1/192 of a beat so that every meter up to x/64 and every grid tick is exact.
const UNITS_PER_TWELFTH: u64 = 16;
const UNITS_PER_BEAT: u64 = 12 * UNITS_PER_TWELFTH;
/// More bars than this is not a melody (and would only eat memory).
const MAX_BARS: usize = 100_000;
/// Polyphony values this close to the lowest count as tied.
const POLYPHONY_TIE: f64 = 0.05;
/// The General MIDI drum channel (channel 10, index 9).
const DRUM_CHANNEL: u8 = 9;

/// A note as read from the file, in MIDI ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawNote {
    start: u64,
    end: u64,
    key: u8,
    channel: u8,
}

/// What one track holds, in MIDI ticks.
#[derive(Clone, Debug, Default)]
struct TrackData {
    notes: Vec<RawNote>,
    /// (tick, numerator, denominator)
    time_signatures: Vec<(u64, u32, u32)>,
    name: String,
    end: u64,
}

/// A note on the grid, in twelfths of a beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GridNote {
    start: u64,
    end: u64,
    key: u8,
}

/// Reads the melody of the MIDI file in `bytes`; `source` names it in errors and becomes the melody id.
pub fn read_bytes(
    bytes: &[u8],
    source: &str,
    opts: &MidiImportOptions,
) -> Result<(Melody, SnapReport), ImportError> {
    let err = |reason: &'static str, msg: String| ImportError::new(source, reason, msg);
    check_chunks(bytes).map_err(|m| err("parse", m))?;
    let smf =
        Smf::parse(bytes).map_err(|e| err("parse", format!("not a readable MIDI file: {e}")))?;
    let ppq = ticks_per_beat(smf.header.timing).map_err(|m| err("timing", m))?;
    let tracks: Vec<TrackData> = smf.tracks.iter().map(|t| read_track(t)).collect();
    let (track_index, raw) = chosen_notes(&tracks, opts.track).map_err(|(r, m)| err(r, m))?;

    let (grid_notes, report) = snap_notes(&raw, ppq);
    if grid_notes.is_empty() {
        return Err(err(
            "empty",
            format!(
                "all {} notes have zero length after snapping to the grid",
                report.notes
            ),
        ));
    }
    let line = top_line(&grid_notes);

    let signatures = unit_signatures(smf.header.format, &tracks, track_index, ppq);
    let music_end = line.last().map_or(0, |n| n.end) * UNITS_PER_TWELFTH;
    let track_end = snap(tracks[track_index].end, ppq).0 * UNITS_PER_TWELFTH;
    let bars = bars(&signatures, music_end, track_end).map_err(|m| err("parse", m))?;
    let piece_end = bars.last().map_or(0, |&(start, len, _)| start + len);

    let title = [&tracks[0].name, &tracks[track_index].name]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    Ok((
        Melody {
            id: source.to_string(),
            title,
            notes: line_notes(&line, piece_end),
            bars: melody_bars(&bars),
        },
        report,
    ))
}

/// Ticks per beat of the header's timing; SMPTE timecode and 0 ticks per beat are errors.
fn ticks_per_beat(timing: Timing) -> Result<u64, String> {
    match timing {
        Timing::Metrical(t) if t.as_int() > 0 => Ok(t.as_int() as u64),
        Timing::Metrical(_) => Err("the header gives 0 ticks per beat".into()),
        Timing::Timecode(fps, sub) => Err(format!(
            "SMPTE timecode timing ({} fps x {sub} subframes) has no beats; \
             only files with ticks per quarter note can be read",
            fps.as_f32()
        )),
    }
}

/// The track index and notes of the melody: the requested track, else the best line
/// ([`choose_line`]); errors as (reason, message).
fn chosen_notes(
    tracks: &[TrackData],
    requested: Option<usize>,
) -> Result<(usize, Vec<RawNote>), (&'static str, String)> {
    match requested {
        Some(i) => {
            let track = tracks.get(i).ok_or_else(|| {
                (
                    "track",
                    format!(
                        "track index {i} is out of range: the file has {} track(s)",
                        tracks.len()
                    ),
                )
            })?;
            if track.notes.is_empty() {
                return Err(("track", format!("track {i} has no notes")));
            }
            Ok((i, track.notes.clone()))
        }
        None => choose_line(tracks).ok_or_else(|| ("empty", "no notes in any track".into())),
    }
}

/// Time signatures as (start in 1/192 beat, signature), sorted by time: the chosen track's own
/// in a format-2 file, else those of every track.
fn unit_signatures(
    format: Format,
    tracks: &[TrackData],
    track_index: usize,
    ppq: u64,
) -> Vec<(u64, (u32, u32))> {
    let mut signatures: Vec<(u64, u32, u32)> = if format == Format::Sequential {
        tracks[track_index].time_signatures.clone()
    } else {
        tracks
            .iter()
            .flat_map(|t| t.time_signatures.iter().copied())
            .collect()
    };
    signatures.sort_by_key(|s| s.0);
    signatures
        .into_iter()
        .map(|(tick, n, d)| (snap(tick, ppq).0 * UNITS_PER_TWELFTH, (n, d)))
        .collect()
}

/// A length in 1/192 beat, in beats.
fn unit_beats(units: u64) -> f64 {
    units as f64 / UNITS_PER_BEAT as f64
}

/// The melody's bars, in beats.
fn melody_bars(bars: &[UnitBar]) -> Vec<Bar> {
    bars.iter()
        .map(|&(start, len, ts)| Bar {
            start: unit_beats(start),
            duration: unit_beats(len),
            time_signature: ts,
        })
        .collect()
}

/// The notes of the top line in beats, with rests filling the gaps up to `piece_end` (1/192 beat).
fn line_notes(line: &[GridNote], piece_end: u64) -> Vec<Note> {
    let mut notes = Vec::with_capacity(line.len() * 2 + 1);
    let mut at = 0u64;
    for n in line {
        let (start, end) = (n.start * UNITS_PER_TWELFTH, n.end * UNITS_PER_TWELFTH);
        if start > at {
            notes.push(Note {
                onset: unit_beats(at),
                duration: unit_beats(start - at),
                pitch: None,
            });
        }
        notes.push(Note {
            onset: unit_beats(start),
            duration: unit_beats(end - start),
            pitch: Some(n.key),
        });
        at = end;
    }
    if piece_end > at {
        notes.push(Note {
            onset: unit_beats(at),
            duration: unit_beats(piece_end - at),
            pitch: None,
        });
    }
    notes
}

/// Reads the melody of the MIDI file at `path` (see [`read_bytes`]).
pub fn read_file(
    path: &Path,
    opts: &MidiImportOptions,
) -> Result<(Melody, SnapReport), ImportError> {
    let source = path.display().to_string();
    let bytes = crate::files::read_input(path, crate::files::MAX_MUSIC_FILE)
        .map_err(|e| ImportError::new(&source, "io", format!("cannot read the file: {e}")))?;
    read_bytes(&bytes, &source, opts)
}

/// Checks the chunk structure that midly reads leniently: a file that ends inside a chunk, or
/// before all tracks its header announces, is truncated. Bytes after the last track are ignored.
fn check_chunks(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(..4) {
        Some(b"MThd") => {}
        Some(b"RIFF") => return Ok(()), // RIFF-wrapped MIDI: midly unwraps and checks it.
        _ => return Err("not a MIDI file (it does not start with an MThd header)".into()),
    }
    let be32 = |at: usize| -> Option<u64> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    let header_len = be32(4).ok_or("truncated: the file ends inside the header")?;
    if header_len < 6 || bytes.len() < 14 {
        return Err("truncated: the file ends inside the header".into());
    }
    let declared = u16::from_be_bytes([bytes[10], bytes[11]]) as usize;
    let mut pos = 8 + header_len;
    let mut found = 0usize;
    while found < declared {
        let remaining = (bytes.len() as u64).saturating_sub(pos);
        if remaining == 0 {
            return Err(format!(
                "truncated: the header announces {declared} track(s) but the file ends after {found}"
            ));
        }
        let len = match (remaining >= 8).then(|| be32(pos as usize + 4)).flatten() {
            Some(len) => len,
            None => {
                return Err(format!(
                    "truncated: the file ends inside the header of chunk {}",
                    found + 1
                ))
            }
        };
        if len > remaining - 8 {
            return Err(format!(
                "truncated: track chunk {} announces {len} bytes but only {} remain",
                found + 1,
                remaining - 8
            ));
        }
        if bytes.get(pos as usize..pos as usize + 4) == Some(b"MTrk") {
            found += 1;
        }
        pos += 8 + len;
    }
    Ok(())
}

/// Notes (paired note-on / note-off), time signatures, name and length of one track.
fn read_track(track: &[midly::TrackEvent]) -> TrackData {
    let mut data = TrackData::default();
    let mut open = [[None::<u64>; 128]; 16];
    let mut tick = 0u64;
    for ev in track {
        tick += ev.delta.as_int() as u64;
        match ev.kind {
            TrackEventKind::Midi { channel, message } => {
                let ch = channel.as_int();
                let (key, on) = match message {
                    MidiMessage::NoteOn { key, vel } => (key.as_int(), vel.as_int() > 0),
                    MidiMessage::NoteOff { key, .. } => (key.as_int(), false),
                    _ => continue,
                };
                let slot = &mut open[ch as usize][key as usize];
                // A note-on for a key that still sounds ends the old note and strikes it again.
                if let Some(start) = slot.take() {
                    data.notes.push(RawNote {
                        start,
                        end: tick,
                        key,
                        channel: ch,
                    });
                }
                if on {
                    *slot = Some(tick);
                }
            }
            TrackEventKind::Meta(MetaMessage::TimeSignature(num, dd, _, _))
                if num > 0 && dd <= 6 =>
            {
                data.time_signatures.push((tick, num as u32, 1 << dd));
            }
            TrackEventKind::Meta(MetaMessage::TrackName(name)) if data.name.is_empty() => {
                data.name = String::from_utf8_lossy(name).trim().to_string();
            }
            _ => {}
        }
    }
    data.end = tick;
    for (ch, keys) in open.iter().enumerate() {
        for (key, slot) in keys.iter().enumerate() {
            if let Some(start) = *slot {
                data.notes.push(RawNote {
                    start,
                    end: tick,
                    key: key as u8,
                    channel: ch as u8,
                });
            }
        }
    }
    data.notes.sort_by_key(|n| (n.start, n.end, n.key));
    data
}

/// Time-weighted mean number of sounding notes while any note sounds (1.0 for a monophonic line).
fn polyphony(notes: &[RawNote]) -> f64 {
    let mut spans: Vec<(u64, u64)> = notes
        .iter()
        .filter(|n| n.end > n.start)
        .map(|n| (n.start, n.end))
        .collect();
    spans.sort_unstable();
    let total: u64 = spans.iter().map(|(s, e)| e - s).sum();
    let mut union = 0u64;
    let mut cur: Option<(u64, u64)> = None;
    for (s, e) in spans {
        cur = match cur {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                union += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = cur {
        union += ce - cs;
    }
    if union == 0 {
        1.0
    } else {
        total as f64 / union as f64
    }
}

/// The most monophonic, highest (track, channel) group of notes: its track index and notes.
fn choose_line(tracks: &[TrackData]) -> Option<(usize, Vec<RawNote>)> {
    let mut groups: Vec<(usize, u8, Vec<RawNote>)> = Vec::new();
    for (i, t) in tracks.iter().enumerate() {
        for ch in 0..16u8 {
            let notes: Vec<RawNote> = t
                .notes
                .iter()
                .filter(|n| n.channel == ch)
                .copied()
                .collect();
            if !notes.is_empty() {
                groups.push((i, ch, notes));
            }
        }
    }
    if groups.iter().any(|g| g.1 != DRUM_CHANNEL) {
        groups.retain(|g| g.1 != DRUM_CHANNEL);
    }
    let scored: Vec<(f64, f64, usize)> = groups
        .iter()
        .enumerate()
        .map(|(gi, (_, _, notes))| {
            let mean_pitch = notes.iter().map(|n| n.key as f64).sum::<f64>() / notes.len() as f64;
            (polyphony(notes), mean_pitch, gi)
        })
        .collect();
    let lowest = scored.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
    let best = scored
        .iter()
        .filter(|s| s.0 <= lowest + POLYPHONY_TIE)
        .fold(None::<(f64, usize)>, |best, &(_, pitch, gi)| match best {
            Some((bp, _)) if bp >= pitch => best,
            _ => Some((pitch, gi)),
        })?;
    let (track, _, notes) = groups.swap_remove(best.1);
    Some((track, notes))
}

/// Nearest grid point to MIDI tick `tick`, in twelfths of a beat, and the distance to it in
/// units of 1/(12 * ppq) beat (exact).
fn snap(tick: u64, ppq: u64) -> (u64, u64) {
    let (beat, rem) = (tick / ppq, tick % ppq);
    let (g, dist) = GRID
        .iter()
        .map(|&g| (g, (rem * 12).abs_diff(g * ppq)))
        .min_by_key(|&(_, d)| d)
        .unwrap_or((0, 0));
    (beat * 12 + g, dist)
}

/// Snaps every note to the grid, dropping those of zero length, and reports the shifts.
fn snap_notes(raw: &[RawNote], ppq: u64) -> (Vec<GridNote>, SnapReport) {
    let mut report = SnapReport {
        notes: raw.len(),
        ..SnapReport::default()
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut sum = 0.0;
    let scale = 12.0 * ppq as f64;
    for n in raw {
        let (start, d_on) = snap(n.start, ppq);
        let (end, d_off) = snap(n.end, ppq);
        let shift = d_on.max(d_off) as f64 / scale;
        if d_on > 0 || d_off > 0 {
            report.moved += 1;
        }
        report.max_shift_beats = report.max_shift_beats.max(shift);
        sum += shift;
        if end > start && n.end > n.start {
            out.push(GridNote {
                start,
                end,
                key: n.key,
            });
        } else {
            report.dropped += 1;
        }
    }
    if !raw.is_empty() {
        report.mean_shift_beats = sum / raw.len() as f64;
    }
    (out, report)
}

/// The highest sounding note at every moment, as non-overlapping notes in time order.
fn top_line(notes: &[GridNote]) -> Vec<GridNote> {
    let mut times: Vec<u64> = notes.iter().flat_map(|n| [n.start, n.end]).collect();
    times.sort_unstable();
    times.dedup();
    let mut by_start: Vec<usize> = (0..notes.len()).collect();
    by_start.sort_by_key(|&i| notes[i].start);
    // Sounding notes ordered by (pitch, start, index): the last is the top one, the latest
    // strike winning among equal pitches.
    let mut sounding: BTreeSet<(u8, u64, usize)> = BTreeSet::new();
    let mut next = 0usize;
    let mut out: Vec<GridNote> = Vec::new();
    let mut last_id: Option<usize> = None;
    for w in times.windows(2) {
        let (t, t_next) = (w[0], w[1]);
        sounding.retain(|&(_, _, i)| notes[i].end > t);
        while next < by_start.len() && notes[by_start[next]].start <= t {
            let i = by_start[next];
            sounding.insert((notes[i].key, notes[i].start, i));
            next += 1;
        }
        match sounding.last() {
            Some(&(key, _, i)) => {
                match out.last_mut() {
                    Some(prev) if last_id == Some(i) && prev.end == t => prev.end = t_next,
                    _ => out.push(GridNote {
                        start: t,
                        end: t_next,
                        key,
                    }),
                }
                last_id = Some(i);
            }
            None => last_id = None,
        }
    }
    out
}

/// A bar as (start, length, time signature), in 1/192 beat.
type UnitBar = (u64, u64, (u32, u32));

/// Bars in 1/192 beat from 0 to the end of the piece.
/// `music_end` is where the last note ends, `track_end` where the track ends.
fn bars(
    signatures: &[(u64, (u32, u32))],
    music_end: u64,
    track_end: u64,
) -> Result<Vec<UnitBar>, String> {
    let nominal = |(n, d): (u32, u32)| n as u64 * 4 * UNITS_PER_BEAT / d as u64;
    let mut out = Vec::new();
    let mut ts = (4, 4);
    let mut sig = 0usize;
    let mut pos = 0u64;
    while pos < music_end {
        while sig < signatures.len() && signatures[sig].0 <= pos {
            ts = signatures[sig].1;
            sig += 1;
        }
        let mut end = pos + nominal(ts);
        if let Some(&(at, _)) = signatures.get(sig) {
            end = end.min(at);
        }
        out.push((pos, end - pos, ts));
        if out.len() > MAX_BARS {
            return Err(format!("implausibly long: more than {MAX_BARS} bars"));
        }
        pos = end;
    }
    // The last bar reaches to the end of the track if that ends inside it, else to the music's end.
    if let Some(last) = out.last_mut() {
        let end = track_end.clamp(music_end, last.0 + last.1);
        last.1 = end - last.0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::midi_export::{to_smf_bytes, tracks_to_smf_bytes, ExportOptions, PPQ};
    use crate::music::token::{tick_twelfths, Measure, END, HOLD, REST, START};
    use crate::music::tokenize::measures;
    use midly::num::{u15, u28, u4, u7};
    use midly::{Header, TrackEvent};

    fn measure(tokens: &[(usize, u8)]) -> Measure {
        let mut t = [HOLD; 24];
        for &(i, tok) in tokens {
            t[i] = tok;
        }
        Measure(t)
    }

    fn opts() -> MidiImportOptions {
        MidiImportOptions::default()
    }

    /// Builds a file from tracks of (tick, channel, key, on) note events plus optional time signatures.
    fn smf_bytes(
        ppq: u16,
        format: Format,
        tracks: &[Vec<(u64, u8, u8, bool)>],
        ts: &[(u64, u8, u8)],
    ) -> Vec<u8> {
        let mut smf = Smf::new(Header::new(format, Timing::Metrical(u15::new(ppq))));
        for (ti, notes) in tracks.iter().enumerate() {
            let mut evs: Vec<(u64, TrackEventKind)> = Vec::new();
            if ti == 0 {
                for &(tick, n, dd) in ts {
                    evs.push((
                        tick,
                        TrackEventKind::Meta(MetaMessage::TimeSignature(n, dd, 24, 8)),
                    ));
                }
            }
            for &(tick, ch, key, on) in notes {
                let message = if on {
                    MidiMessage::NoteOn {
                        key: u7::new(key),
                        vel: u7::new(90),
                    }
                } else {
                    MidiMessage::NoteOff {
                        key: u7::new(key),
                        vel: u7::new(0),
                    }
                };
                evs.push((
                    tick,
                    TrackEventKind::Midi {
                        channel: u4::new(ch),
                        message,
                    },
                ));
            }
            evs.sort_by_key(|e| e.0);
            let mut last = 0;
            let mut track: Vec<TrackEvent> = evs
                .into_iter()
                .map(|(tick, kind)| {
                    let delta = u28::new((tick - last) as u32);
                    last = tick;
                    TrackEvent { delta, kind }
                })
                .collect();
            track.push(TrackEvent {
                delta: u28::new(0),
                kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
            });
            smf.tracks.push(track);
        }
        let mut out = Vec::new();
        smf.write(&mut out).unwrap();
        out
    }

    /// A note from `start` to `end` (ticks) on channel `ch`.
    fn note(start: u64, end: u64, ch: u8, key: u8) -> [(u64, u8, u8, bool); 2] {
        [(start, ch, key, true), (end, ch, key, false)]
    }

    #[test]
    fn every_grid_tick_is_an_integer_midi_tick() {
        assert_eq!(PPQ % 12, 0);
        for t in 0..=24 {
            let ticks = tick_twelfths(t) as u64 * PPQ as u64;
            assert_eq!(ticks % 12, 0, "tick {t}");
        }
        // And importing at PPQ snaps each of them back without moving.
        for t in 0..24 {
            let tick = tick_twelfths(t) as u64 * PPQ as u64 / 12;
            assert_eq!(snap(tick, PPQ as u64), (tick_twelfths(t) as u64, 0));
        }
    }

    #[test]
    fn round_trip_keeps_tokens() {
        let start_pickup = measure(&[
            (0, START),
            (1, START),
            (2, START),
            (3, START),
            (4, START),
            (5, START),
            (6, 67),
        ]);
        let input = vec![
            start_pickup,
            // Triplet ticks, a rest, a note held over the barline.
            measure(&[
                (0, 72),
                (2, 71),
                (4, 69),
                (6, REST),
                (9, 60),
                (12, 62),
                (13, 64),
                (18, 65),
            ]),
            // Held from the previous bar, repeated pitch, sixteenth and triplet mix.
            measure(&[
                (3, 65),
                (5, 65),
                (8, 66),
                (10, REST),
                (12, 70),
                (14, 71),
                (16, 72),
                (17, 73),
            ]),
            // A full-bar note held into an END tail.
            measure(&[(0, 60)]),
            measure(&[
                (6, 62),
                (11, REST),
                (12, END),
                (13, END),
                (14, END),
                (15, END),
                (16, END),
                (17, END),
                (18, END),
                (19, END),
                (20, END),
                (21, END),
                (22, END),
                (23, END),
            ]),
        ];
        let bytes = to_smf_bytes(&input, &ExportOptions::default());
        let (melody, report) = read_bytes(&bytes, "rt.mid", &opts()).unwrap();
        assert_eq!(report.moved, 0);
        assert_eq!(report.dropped, 0);
        assert_eq!(melody.title, "arvae");
        let back = measures(&melody).unwrap();
        // Asserted: every token is the same, except that the START padding of the pickup comes
        // back as a rest (REST then HOLD), since a MIDI file can't mark a pickup. The END tail and
        // the rest before it come back exactly.
        let mut expected = input.clone();
        expected[0].0[0] = REST;
        for t in &mut expected[0].0[1..6] {
            *t = HOLD;
        }
        assert_eq!(back, expected);
    }

    #[test]
    fn multi_track_export_reads_back_by_index() {
        let a = vec![measure(&[(0, 60), (12, 64)])];
        let b = vec![measure(&[(0, 72), (6, 74), (12, 76), (18, 77)])];
        let bytes = tracks_to_smf_bytes(
            &[("low".into(), a.clone()), ("high".into(), b.clone())],
            &ExportOptions::default(),
        );
        let pick = |i| read_bytes(&bytes, "mt.mid", &MidiImportOptions { track: Some(i) });
        assert_eq!(measures(&pick(1).unwrap().0).unwrap(), a);
        assert_eq!(measures(&pick(2).unwrap().0).unwrap(), b);
        // Automatic choice: both monophonic, the higher one wins.
        let (auto, _) = read_bytes(&bytes, "mt.mid", &opts()).unwrap();
        assert_eq!(measures(&auto).unwrap(), b);
        // The conductor track has no notes; index 3 does not exist.
        assert_eq!(pick(0).unwrap_err().reason, "track");
        let e = pick(3).unwrap_err();
        assert_eq!(e.reason, "track");
        assert!(e.message.contains("out of range"), "{e}");
        assert_eq!(e.source, "mt.mid");
    }

    #[test]
    fn performed_file_snaps_to_intended_ticks() {
        let ppq = 96u64;
        // Intended: quarter at 0, triplet eighths on beat 1, sixteenths on beat 2, half on beat 3.
        let intended: [(u64, u64, u8); 8] = [
            (0, 12, 60),
            (12, 16, 62),
            (16, 20, 64),
            (20, 24, 65),
            (24, 27, 67),
            (27, 30, 65),
            (30, 36, 64),
            (36, 48, 62),
        ];
        let jitter: [i64; 8] = [2, -3, 4, -2, 3, -4, 1, -1]; // ticks of 1/96 beat
        let mut evs = Vec::new();
        for (k, &(s, e, key)) in intended.iter().enumerate() {
            let start = (s * ppq / 12) as i64 + jitter[k];
            let end = (e * ppq / 12) as i64 - 2 + jitter[(k + 1) % 8].min(0);
            evs.extend(note(start.max(0) as u64, end as u64, 0, key));
        }
        let bytes = smf_bytes(ppq as u16, Format::SingleTrack, &[evs], &[]);
        let (melody, report) = read_bytes(&bytes, "perf.mid", &opts()).unwrap();
        assert_eq!(report.notes, 8);
        assert_eq!(report.moved, 8);
        assert_eq!(report.dropped, 0);
        // Largest jitter: 4 + 2 ticks on an offset (note 5 ends 2 early, minus 4), i.e. 6/96 beat.
        assert!(
            (report.max_shift_beats - 6.0 / 96.0).abs() < 1e-12,
            "{report:?}"
        );
        assert!(report.mean_shift_beats > 0.0 && report.mean_shift_beats < report.max_shift_beats);
        let got: Vec<(f64, f64, u8)> = melody
            .notes
            .iter()
            .filter_map(|n| n.pitch.map(|p| (n.onset, n.end(), p)))
            .collect();
        assert_eq!(got.len(), 8);
        for (g, &(s, e, key)) in got.iter().zip(&intended) {
            assert!(
                (g.0 - s as f64 / 12.0).abs() < 1e-9 && (g.1 - e as f64 / 12.0).abs() < 1e-9,
                "{g:?}"
            );
            assert_eq!(g.2, key);
        }
        let ms = measures(&melody).unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(&ms[0].0[6..12], &[62, HOLD, 64, HOLD, 65, HOLD]);
    }

    #[test]
    fn notes_collapsing_on_the_grid_are_dropped() {
        // A grace note of 1/48 beat (10 ticks at 480) before the main note.
        let mut evs = Vec::new();
        evs.extend(note(470, 478, 0, 70));
        evs.extend(note(480, 1920, 0, 72));
        let bytes = smf_bytes(480, Format::SingleTrack, &[evs], &[]);
        let (melody, report) = read_bytes(&bytes, "g.mid", &opts()).unwrap();
        assert_eq!(report.dropped, 1);
        assert_eq!(melody.notes.iter().filter(|n| n.pitch.is_some()).count(), 1);
        // Only the grace note: nothing is left.
        let bytes = smf_bytes(
            480,
            Format::SingleTrack,
            &[note(470, 478, 0, 70).to_vec()],
            &[],
        );
        assert_eq!(
            read_bytes(&bytes, "g.mid", &opts()).unwrap_err().reason,
            "empty"
        );
    }

    #[test]
    fn polyphony_keeps_the_top_line() {
        let q = 480u64;
        let mut evs = Vec::new();
        // Beat 0-2: chord C E G; beat 1: melody note B above; beat 2-4: C4 held under a high A at beat 3.
        evs.extend(note(0, 2 * q, 0, 60));
        evs.extend(note(0, 2 * q, 0, 64));
        evs.extend(note(0, q, 0, 67));
        evs.extend(note(q, 2 * q, 0, 71));
        evs.extend(note(2 * q, 4 * q, 0, 60));
        evs.extend(note(3 * q, 3 * q + q / 2, 0, 81));
        let bytes = smf_bytes(480, Format::SingleTrack, &[evs], &[]);
        let (melody, _) = read_bytes(&bytes, "poly.mid", &opts()).unwrap();
        let ms = measures(&melody).unwrap();
        let expected = measure(&[(0, 67), (6, 71), (12, 60), (18, 81), (21, 60)]);
        assert_eq!(ms, vec![expected]);
    }

    #[test]
    fn automatic_choice_prefers_monophonic_then_high() {
        let q = 480u64;
        // Track 1: a high chord part; track 2: a monophonic low line; track 3: drums (channel 10).
        let mut chords = Vec::new();
        for b in 0..4 {
            for k in [76, 79, 84] {
                chords.extend(note(b * q, (b + 1) * q, 0, k));
            }
        }
        let mut line = Vec::new();
        for b in 0..4 {
            line.extend(note(b * q, (b + 1) * q, 1, 48 + b as u8));
        }
        let mut drums = Vec::new();
        for b in 0..8 {
            drums.extend(note(b * q / 2, b * q / 2 + 60, 9, 90));
        }
        let bytes = smf_bytes(480, Format::Parallel, &[vec![], chords, line, drums], &[]);
        let (melody, _) = read_bytes(&bytes, "choice.mid", &opts()).unwrap();
        assert_eq!(melody.pitch_bounds(), Some((48, 51)));
        // The chord track on request keeps its top line.
        let (m1, _) =
            read_bytes(&bytes, "choice.mid", &MidiImportOptions { track: Some(1) }).unwrap();
        assert_eq!(m1.pitch_bounds(), Some((84, 84)));

        // Format 0 with two channels in one track: separated by channel, the higher line wins.
        let mut both = Vec::new();
        for b in 0..4 {
            both.extend(note(b * q, (b + 1) * q, 0, 60 + b as u8));
            both.extend(note(b * q, (b + 1) * q, 1, 40 + b as u8));
        }
        let bytes = smf_bytes(480, Format::SingleTrack, &[both], &[]);
        let (m0, _) = read_bytes(&bytes, "f0.mid", &opts()).unwrap();
        assert_eq!(m0.pitch_bounds(), Some((60, 63)));
    }

    #[test]
    fn time_signatures_give_bars() {
        let q = 480u64;
        let mut evs = Vec::new();
        for b in 0..9 {
            evs.extend(note(b * q, (b + 1) * q, 0, 60));
        }
        // 3/4 from the start, 4/4 from beat 3; music ends at beat 9 (two beats into bar 3).
        let bytes = smf_bytes(
            480,
            Format::SingleTrack,
            &[evs],
            &[(0, 3, 2), (3 * q, 4, 2)],
        );
        let (melody, _) = read_bytes(&bytes, "ts.mid", &opts()).unwrap();
        let bars: Vec<(f64, f64, (u32, u32))> = melody
            .bars
            .iter()
            .map(|b| (b.start, b.duration, b.time_signature))
            .collect();
        assert_eq!(
            bars,
            vec![(0.0, 3.0, (3, 4)), (3.0, 4.0, (4, 4)), (7.0, 2.0, (4, 4))]
        );
        // No time signature: 4/4.
        let bytes = smf_bytes(
            480,
            Format::SingleTrack,
            &[note(0, 6 * q, 0, 60).to_vec()],
            &[],
        );
        let (melody, _) = read_bytes(&bytes, "ts.mid", &opts()).unwrap();
        assert_eq!(melody.bars.len(), 2);
        assert_eq!(melody.bars[0].time_signature, (4, 4));
        assert_eq!(melody.bars[1].duration, 2.0);
    }

    #[test]
    fn bad_input_gives_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.mid");
        std::fs::write(&path, "these are my notes, not a MIDI file\n").unwrap();
        let e = read_file(&path, &opts()).unwrap_err();
        assert_eq!(e.reason, "parse");
        assert!(e.source.ends_with("notes.mid"), "{e}");
        assert!(e.message.contains("not a MIDI file"), "{e}");
        assert_eq!(
            read_file(&dir.path().join("missing.mid"), &opts())
                .unwrap_err()
                .reason,
            "io"
        );

        let good = to_smf_bytes(&[measure(&[(0, 60), (12, 62)])], &ExportOptions::default());
        for cut in [0, 3, 10, 13, 20, good.len() - 1] {
            let e = read_bytes(&good[..cut], "cut.mid", &opts()).unwrap_err();
            assert_eq!(e.reason, "parse", "cut at {cut}: {e}");
        }
        assert!(read_bytes(&good[..good.len() - 1], "cut.mid", &opts())
            .unwrap_err()
            .message
            .contains("truncated"));
        // Trailing padding after the last track is fine.
        let mut padded = good.clone();
        padded.extend([0, 0, 0]);
        assert!(read_bytes(&padded, "pad.mid", &opts()).is_ok());

        let no_notes = smf_bytes(480, Format::Parallel, &[vec![], vec![]], &[(0, 4, 2)]);
        let e = read_bytes(&no_notes, "quiet.mid", &opts()).unwrap_err();
        assert_eq!(e.reason, "empty");
        assert_eq!(e.to_string(), "quiet.mid: no notes in any track");
        assert_eq!(
            read_bytes(&good, "x.mid", &MidiImportOptions { track: Some(7) })
                .unwrap_err()
                .reason,
            "track"
        );

        // SMPTE timing.
        let mut smpte = good.clone();
        smpte[12] = 0xE7; // -25 fps
        smpte[13] = 40;
        assert_eq!(
            read_bytes(&smpte, "smpte.mid", &opts()).unwrap_err().reason,
            "timing"
        );
        // Zero ticks per beat.
        let mut zero = good.clone();
        zero[12] = 0;
        zero[13] = 0;
        assert_eq!(
            read_bytes(&zero, "zero.mid", &opts()).unwrap_err().reason,
            "timing"
        );
    }

    #[test]
    fn notes_far_apart_give_few_measures() {
        // Two notes 99,990 bars apart (a file of under 50 bytes): silence is shortened, not expanded.
        let far = 99_990 * 4 * 96;
        let notes = [note(0, 96, 0, 60), note(far, far + 96, 0, 62)].concat();
        let bytes = smf_bytes(96, Format::SingleTrack, &[notes], &[]);
        let (melody, _) = read_bytes(&bytes, "far.mid", &opts()).unwrap();
        let ms = measures(&melody).unwrap();
        assert_eq!(ms.len(), 1 + crate::music::tokenize::MAX_IDLE_BARS + 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let good = to_smf_bytes(
            &[
                measure(&[(0, 60), (2, 62), (12, REST), (18, 64)]),
                measure(&[(0, 65)]),
            ],
            &ExportOptions::default(),
        );
        // Flip every byte after the header in turn; every result must be Ok or an error.
        for i in 14..good.len() {
            for v in [0x00, 0x7F, 0x80, 0xFF] {
                let mut b = good.clone();
                b[i] = v;
                let _ = read_bytes(&b, "fuzz.mid", &opts());
                let _ = read_bytes(&b, "fuzz.mid", &MidiImportOptions { track: Some(0) });
            }
        }
        // A huge delta: too many bars is an error, not an allocation spree.
        let bytes = smf_bytes(
            1,
            Format::SingleTrack,
            &[note(0, 1 << 27, 0, 60).to_vec()],
            &[],
        );
        assert_eq!(
            read_bytes(&bytes, "long.mid", &opts()).unwrap_err().reason,
            "parse"
        );
    }
}
