//! Cuts a [`Melody`] into barline-aligned 4-beat measures on the 24-tick grid (docs/architecture.md §2).
//!
//! Bars of 4/4, C, 2/2 and C| are one window each. Bars of 2/4 are paired: two consecutive bars
//! make one window, starting at the first full bar. A pickup bar is padded with `START` in front,
//! the last bar with `END` behind. Two short bars in a row that add up to a full window (a bar split
//! around a repeat sign) are joined; any other short bar in the middle is padded with `END` so the
//! bars after it stay aligned. Other meters are rejected.
//!
//! Bounds: of a run of bars without a note onset (silence or one held note) only the first
//! [`MAX_IDLE_BARS`] are kept, and a piece of more than [`MAX_PIECE_MEASURES`] measures after
//! that is rejected (`too_long`), so a tiny file can't ask for millions of measures.

use super::melody::{Bar, ImportError, Melody};
use super::token::{
    is_note, tick_at, tick_offset, Measure, END, GRID_TOLERANCE, HOLD, REST, START,
    TICKS_PER_MEASURE,
};

/// Lowest MIDI pitch kept by augmentation.
pub const MIN_PITCH: u8 = 55;
/// Highest MIDI pitch kept by augmentation.
pub const MAX_PITCH: u8 = 84;

/// Bars in a row without a note onset that a piece keeps; the rest of such a run is dropped.
/// (The longest such run in the Bach and folk corpora is 7 bars, so they are unchanged.)
pub const MAX_IDLE_BARS: usize = 8;
/// Most measures one piece may yield (after long silences are dropped).
pub const MAX_PIECE_MEASURES: usize = 10_000;

const WINDOW: f64 = 4.0;
const TOL: f64 = 1e-4;

/// Whether a bar of this time signature fits the 4-beat windows (alone or paired).
pub fn meter_supported(ts: (u32, u32)) -> bool {
    matches!(ts, (4, 4) | (2, 2) | (2, 4))
}

/// One 4-beat window: its start and the part of it that has music.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Window {
    start: f64,
    content_start: f64,
    content_end: f64,
}

fn windows(melody: &Melody) -> Result<Vec<Window>, ImportError> {
    let bars: Vec<&Bar> = melody.bars.iter().filter(|b| b.duration > TOL).collect();
    if bars.is_empty() {
        return Err(ImportError::new(&melody.id, "empty", "no bars with music"));
    }
    if let Some(b) = bars.iter().find(|b| !meter_supported(b.time_signature)) {
        return Err(ImportError::new(
            &melody.id,
            "meter",
            format!(
                "meter {}/{} at beat {} is not a 4-beat meter (4/4, 2/2, or 2/4 paired)",
                b.time_signature.0, b.time_signature.1, b.start
            ),
        ));
    }
    let mut out = Vec::new();
    let mut rest = &bars[..];
    let first = bars[0];
    if first.duration < first.nominal() - TOL {
        // Pickup: right-align it in a window padded with START.
        out.push(Window {
            start: first.end() - WINDOW,
            content_start: first.start,
            content_end: first.end(),
        });
        rest = &bars[1..];
    }
    let mut open: Option<(f64, f64)> = None; // (start, accumulated duration)
    for bar in rest {
        if bar.duration > WINDOW + TOL {
            return Err(ImportError::new(
                &melody.id,
                "meter",
                format!(
                    "bar at beat {} lasts {} beats, longer than 4",
                    bar.start, bar.duration
                ),
            ));
        }
        let (start, acc) = open.unwrap_or((bar.start, 0.0));
        let acc2 = acc + bar.duration;
        if acc2 > WINDOW + TOL {
            // This bar would cross the window: close the open window with END padding.
            out.push(Window {
                start,
                content_start: start,
                content_end: start + acc,
            });
            open = Some((bar.start, bar.duration));
        } else {
            open = Some((start, acc2));
        }
        if let Some((s, a)) = open {
            if a >= WINDOW - TOL {
                out.push(Window {
                    start: s,
                    content_start: s,
                    content_end: s + WINDOW,
                });
                open = None;
            }
        }
    }
    if let Some((s, a)) = open {
        out.push(Window {
            start: s,
            content_start: s,
            content_end: s + a,
        });
    }
    Ok(out)
}

/// Cuts `melody` into measures. Fails with reason `off_grid` if a note onset is not on the grid
/// (tolerance 1e-5 beats), `meter` for meters without 4-beat bars, `empty` without notes,
/// `too_long` beyond [`MAX_PIECE_MEASURES`]. Long runs of bars without onsets are shortened
/// to [`MAX_IDLE_BARS`].
pub fn measures(melody: &Melody) -> Result<Vec<Measure>, ImportError> {
    if !melody.notes.iter().any(|n| n.pitch.is_some()) {
        return Err(ImportError::new(&melody.id, "empty", "no notes"));
    }
    let wins = windows(melody)?;
    let mut out = Vec::with_capacity(wins.len().min(MAX_PIECE_MEASURES + 1));
    let mut idle = 0usize; // bars without an onset just before this one
    for m in window_measures(melody, &wins) {
        let m = m?;
        idle = if m.0.iter().any(|&t| is_note(t)) {
            0
        } else {
            idle + 1
        };
        if idle > MAX_IDLE_BARS {
            continue;
        }
        if out.len() == MAX_PIECE_MEASURES {
            return Err(ImportError::new(
                &melody.id,
                "too_long",
                format!(
                    "more than {MAX_PIECE_MEASURES} measures (after dropping silences longer \
                     than {MAX_IDLE_BARS} bars): not one melody"
                ),
            ));
        }
        out.push(m);
    }
    Ok(out)
}

/// The measure of each window, in order (lazily, so a long piece is cut only as far as needed).
fn window_measures<'a>(
    melody: &'a Melody,
    wins: &'a [Window],
) -> impl Iterator<Item = Result<Measure, ImportError>> + 'a {
    let notes = &melody.notes;
    let mut first_note = 0usize; // first note that may still sound at or after the window start
    wins.iter().map(move |&w| {
        while first_note < notes.len() && notes[first_note].end() <= w.start + GRID_TOLERANCE {
            first_note += 1;
        }
        // Every onset inside the window must be on a tick.
        for n in notes[first_note..]
            .iter()
            .take_while(|n| n.onset < w.content_end - GRID_TOLERANCE)
        {
            if n.onset >= w.content_start - GRID_TOLERANCE && tick_at(n.onset - w.start).is_none() {
                return Err(ImportError::new(
                    &melody.id,
                    "off_grid",
                    format!(
                        "onset at beat {:.4} is not on the 24-tick grid (16ths and 8th triplets)",
                        n.onset
                    ),
                ));
            }
        }
        let mut tokens = [HOLD; TICKS_PER_MEASURE];
        let mut j = first_note;
        let mut prev_gap = false;
        for (t, token) in tokens.iter_mut().enumerate() {
            let time = w.start + tick_offset(t);
            if time < w.content_start - GRID_TOLERANCE {
                *token = START;
                prev_gap = false;
                continue;
            }
            if time >= w.content_end - GRID_TOLERANCE {
                *token = END;
                continue;
            }
            while j < notes.len() && notes[j].end() <= time + GRID_TOLERANCE {
                j += 1;
            }
            match notes.get(j) {
                Some(n) if n.onset <= time + GRID_TOLERANCE => {
                    prev_gap = false;
                    *token = if (n.onset - time).abs() <= GRID_TOLERANCE {
                        n.pitch.unwrap_or(REST)
                    } else {
                        HOLD
                    };
                }
                _ => {
                    // No note sounds here: a rest the source left implicit.
                    *token = if prev_gap && t > 0 { HOLD } else { REST };
                    prev_gap = true;
                }
            }
        }
        Ok(Measure(tokens))
    })
}

/// Semitone shifts that keep every note of the piece inside [`MIN_PITCH`, `MAX_PITCH`]
/// (the original, shift 0, only if it already fits). Empty if the piece is too wide.
pub fn transpositions(melody: &Melody) -> Vec<i32> {
    match melody.pitch_bounds() {
        Some((lo, hi)) => (MIN_PITCH as i32 - lo as i32..=MAX_PITCH as i32 - hi as i32).collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::melody::Note;

    fn n(onset: f64, duration: f64, pitch: Option<u8>) -> Note {
        Note {
            onset,
            duration,
            pitch,
        }
    }

    fn bars(durations: &[f64], ts: (u32, u32)) -> Vec<Bar> {
        let mut start = 0.0;
        durations
            .iter()
            .map(|&d| {
                let b = Bar {
                    start,
                    duration: d,
                    time_signature: ts,
                };
                start += d;
                b
            })
            .collect()
    }

    fn melody(notes: Vec<Note>, bars: Vec<Bar>) -> Melody {
        Melody {
            id: "t".into(),
            title: String::new(),
            notes,
            bars,
        }
    }

    #[test]
    fn quarter_notes_fill_a_bar() {
        let m = melody(
            (0..4)
                .map(|i| n(i as f64, 1.0, Some(60 + i as u8)))
                .collect(),
            bars(&[4.0], (4, 4)),
        );
        let ms = measures(&m).unwrap();
        assert_eq!(ms.len(), 1);
        let t = ms[0].0;
        assert_eq!(t[0], 60);
        assert_eq!(t[6], 61);
        assert_eq!(t[12], 62);
        assert_eq!(t[18], 63);
        assert!(t.iter().enumerate().all(|(i, &x)| i % 6 == 0 || x == HOLD));
    }

    #[test]
    fn pickup_is_padded_with_start_and_tail_with_end() {
        // One-beat pickup, one full bar, a three-beat last bar.
        let notes = vec![
            n(0.0, 1.0, Some(67)),
            n(1.0, 4.0, Some(72)),
            n(5.0, 1.0 / 3.0, Some(71)),
            n(5.0 + 1.0 / 3.0, 1.0 / 3.0, Some(69)),
            n(5.0 + 2.0 / 3.0, 1.0 / 3.0, Some(67)),
            n(6.0, 2.0, None),
        ];
        let m = melody(notes, bars(&[1.0, 4.0, 3.0], (4, 4)));
        let ms = measures(&m).unwrap();
        assert_eq!(ms.len(), 3);
        assert!(ms[0].0[..18].iter().all(|&t| t == START));
        assert_eq!(ms[0].0[18], 67);
        assert_eq!(ms[1].0[0], 72);
        assert!(ms[1].0[1..].iter().all(|&t| t == HOLD));
        assert_eq!(&ms[2].0[..6], &[71, HOLD, 69, HOLD, 67, HOLD]);
        assert_eq!(ms[2].0[6], REST);
        assert!(ms[2].0[18..].iter().all(|&t| t == END));
    }

    #[test]
    fn tie_across_barline_holds() {
        let notes = vec![
            n(0.0, 2.0, Some(60)),
            n(2.0, 4.0, Some(62)),
            n(6.0, 2.0, Some(64)),
        ];
        let ms = measures(&melody(notes, bars(&[4.0, 4.0], (4, 4)))).unwrap();
        assert_eq!(ms[1].0[0], HOLD);
        assert_eq!(ms[1].0[12], 64);
    }

    #[test]
    fn off_grid_onset_is_rejected() {
        let notes = vec![n(0.0, 0.125, Some(60)), n(0.125, 3.875, Some(62))];
        let e = measures(&melody(notes, bars(&[4.0], (4, 4)))).unwrap_err();
        assert_eq!(e.reason, "off_grid");
    }

    #[test]
    fn three_four_is_rejected_and_two_four_paired() {
        let notes = vec![n(0.0, 3.0, Some(60))];
        assert_eq!(
            measures(&melody(notes, bars(&[3.0], (3, 4))))
                .unwrap_err()
                .reason,
            "meter"
        );
        let mut notes = vec![n(0.0, 0.5, Some(60))];
        notes.extend((0..8).map(|i| n(0.5 + i as f64, 1.0, Some(61 + i as u8))));
        // 2/4 with an eighth pickup: pickup window, then pairs of bars.
        let ms = measures(&melody(notes, bars(&[0.5, 2.0, 2.0, 2.0, 2.0], (2, 4)))).unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0].0[21], 60);
        assert_eq!(ms[1].0[0], 61);
        assert_eq!(ms[1].0[6], 62);
        assert_eq!(ms[2].0[0], 65);
    }

    #[test]
    fn split_bar_around_repeat_is_joined() {
        // pickup 1, bar, 3-beat bar, 1-beat bar (repeat of the pickup), bar.
        let notes = (0..13)
            .map(|i| n(i as f64, 1.0, Some(60 + i as u8)))
            .collect();
        let ms = measures(&melody(notes, bars(&[1.0, 4.0, 3.0, 1.0, 4.0], (4, 4)))).unwrap();
        assert_eq!(ms.len(), 4);
        assert_eq!(ms[2].0[0], 65);
        assert_eq!(ms[2].0[18], 68);
        assert!(ms.iter().all(|m| !m.0.contains(&END)));
    }

    #[test]
    fn gaps_become_rests() {
        let notes = vec![n(0.0, 1.0, Some(60)), n(3.0, 1.0, Some(62))];
        let ms = measures(&melody(notes, bars(&[4.0], (4, 4)))).unwrap();
        assert_eq!(ms[0].0[6], REST);
        assert_eq!(ms[0].0[7], HOLD);
        assert_eq!(ms[0].0[12], HOLD);
        assert_eq!(ms[0].0[18], 62);
    }

    #[test]
    fn transposition_range() {
        let m = melody(
            vec![n(0.0, 1.0, Some(60)), n(1.0, 1.0, Some(72))],
            bars(&[4.0], (4, 4)),
        );
        assert_eq!(transpositions(&m), (-5..=12).collect::<Vec<_>>());
        let wide = melody(
            vec![n(0.0, 1.0, Some(50)), n(1.0, 1.0, Some(80))],
            bars(&[4.0], (4, 4)),
        );
        assert!(transpositions(&wide).is_empty());
    }

    #[test]
    fn long_silences_are_shortened() {
        let far = 99_990.0 * 4.0;
        let notes = vec![
            n(0.0, 1.0, Some(60)),
            n(1.0, far - 1.0, None),
            n(far, 1.0, Some(62)),
        ];
        let ms = measures(&melody(notes, bars(&vec![4.0; 99_991], (4, 4)))).unwrap();
        assert_eq!(ms.len(), 1 + MAX_IDLE_BARS + 1);
        assert_eq!(ms[0].0[0], 60);
        assert_eq!(ms.last().unwrap().0[0], 62);
        // A note held for ages is shortened the same way.
        let held = vec![n(0.0, far, Some(60)), n(far, 1.0, Some(62))];
        let ms = measures(&melody(held, bars(&vec![4.0; 99_991], (4, 4)))).unwrap();
        assert_eq!(ms.len(), 1 + MAX_IDLE_BARS + 1);
    }

    #[test]
    fn too_many_measures_is_an_error() {
        let count = MAX_PIECE_MEASURES + 1;
        let notes = (0..count)
            .map(|i| n(i as f64 * 4.0, 4.0, Some(60)))
            .collect();
        let e = measures(&melody(notes, bars(&vec![4.0; count], (4, 4)))).unwrap_err();
        assert_eq!(e.reason, "too_long", "{e}");
        assert!(e.message.contains("10000"), "{e}");
    }
}
