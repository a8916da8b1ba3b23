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
