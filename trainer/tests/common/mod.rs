//! Helpers shared by the trainer's end-to-end tests: run the binary, expect success or a clear
//! error (never a panic).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arvae-trainer"))
        .args(args)
        .output()
        .expect("run arvae-trainer")
}

pub fn ok(args: &[&str]) -> String {
    let out = trainer(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "arvae-trainer {args:?} failed:\n{text}"
    );
    text
}

pub fn fails(args: &[&str]) -> String {
    let out = trainer(args);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "arvae-trainer {args:?} should fail");
    assert!(
        !text.contains("panicked"),
        "panic instead of an error: {text}"
    );
    text
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Width and height from a PNG's header (and that it is a PNG with content).
pub fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(b.len() > 1000, "{} is almost empty", p.display());
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is no PNG", p.display());
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// `data build --collection dsprites --stride <stride> --out <out>`: every stride-th frame of
/// the built-in renderer's 737,280.
pub fn dsprites_dataset(out: &Path, stride: usize) {
    let stride = stride.to_string();
    ok(&[
        "data",
        "build",
        "--collection",
        "dsprites",
        "--stride",
        &stride,
        "--out",
        s(out),
    ]);
}
