//! Fine-tuning a shipped model on a few hundred bars of one style, end to end through the
//! CLI: German children's songs (Essen collection, music21 wheel) built with `data build
//! --input`, `train --init bach --batch 64`, then `eval` of both models on the songs' own test split and
//! the knob response of the result through its new calibration.

mod common;

use arvae_core::checkpoint::Checkpoint;
use arvae_core::compose::score::knob_response;
use arvae_core::compose::Composer;
use arvae_core::data::corpus::{wheel_for_tests, Corpus};
use common::{ok, s};
use std::path::Path;

/// The first `n` tunes of an Essen ABC file (its header, then tunes separated by `X:` lines).
fn first_tunes(abc: &str, n: usize) -> String {
    let mut parts = abc.split("\nX:");
    let head = parts.next().unwrap_or_default();
    let tunes: Vec<String> = parts.take(n).map(|t| format!("X:{t}")).collect();
    format!("{head}\n{}\n", tunes.join("\n"))
}

fn reconstruction(json: &Path) -> f64 {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    v["reconstruction_accuracy"].as_f64().unwrap()
}

#[test]
fn fine_tuning_bach_on_childrens_songs_beats_it_there_and_keeps_the_knobs() {
    let Some(wheel) = wheel_for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let abc = Corpus::open(&wheel)
        .unwrap()
        .read("music21/corpus/essenFolksong/kinder0.abc")
        .unwrap();
    // Piece ids, and with them a split by piece, come from the file's name: this name gives
    // the split the README's row was measured with.
    let songs = d.join("k70.abc");
    std::fs::write(&songs, first_tunes(&String::from_utf8_lossy(&abc), 70)).unwrap();
    let data = d.join("k70.arvae");
    let built = ok(&["data", "build", "--input", s(&songs), "--out", s(&data)]);
    // 50 of the 70 tunes are in 4/4 (338 bars): a split by piece would leave test under 5 %.
    assert!(built.contains("split by bar ranges"), "{built}");

    let run = d.join("run");
    let model = run.join("model.safetensors");
    let train = "train --init bach --epochs 10 --batch 64 --eval-measures 2000";
    let mut args: Vec<&str> = train.split(' ').collect();
    args.extend(["--data", s(&data), "--out", s(&run)]);
    ok(&args);
    let (before, after) = (d.join("bach.json"), d.join("tuned.json"));
    for (ck, json) in [("bach", &before), (s(&model), &after)] {
        ok(&[
            "eval",
            "--checkpoint",
            ck,
            "--data",
            s(&data),
            "--json",
            s(json),
        ]);
    }
    let (before, after) = (reconstruction(&before), reconstruction(&after));
    // Measured: 89.7 % -> 91.2 %.
    assert!(
        after > before + 0.005,
        "reconstruction {before:.4} -> {after:.4}"
    );

    let ck = Checkpoint::load(&model).unwrap();
    let mut composer = Composer::from_checkpoint(&ck).unwrap();
    // Measured: rhythm 1.000, pitch range 0.996, density 1.000, contour 1.000. The pitch-range
    // response is the fragile one (the shipped model's own is 0.907, its decoder flat in the
    // middle of z1; other fine-tuning settings gave 0.18 to 0.99): held to 0.8, the others to 0.9.
    let floor = [0.9, 0.8, 0.9, 0.9];
    for (i, rho) in knob_response(&mut composer, &ck).iter().enumerate() {
        let rho = rho.unwrap_or_else(|| panic!("knob {i}: no response"));
        assert!(
            rho >= floor[i],
            "knob {i}: Spearman {rho:.3} through the calibration"
        );
    }
}
