//! Progress bars and skip reporting for long work.

use arvae_core::data::build::Progress;
use arvae_core::music::melody::ImportError;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many skipped files or pieces are named when skips are quiet.
const SKIPS_NAMED: usize = 5;

/// A bar on stderr; skipped files and pieces print one line each with the reason (only the
/// first [`SKIPS_NAMED`] when `quiet_skips`, then a count).
pub struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
    quiet_skips: bool,
    pub skipped: AtomicUsize,
}

impl BarProgress {
    pub fn new(quiet_skips: bool) -> Self {
        BarProgress {
            bar: Mutex::new(None),
            quiet_skips,
            skipped: AtomicUsize::new(0),
        }
    }

    fn println(&self, line: &str) {
        // A hidden bar (no terminal) drops its println: such lines go to stderr directly.
        match self.bar.lock().unwrap().as_ref() {
            Some(b) if !b.is_hidden() => b.println(line),
            _ => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
        let skipped = self.skipped.load(Ordering::Relaxed);
        if self.quiet_skips && skipped > SKIPS_NAMED {
            eprintln!(
                "... and {} more skipped (--verbose names them all)",
                skipped - SKIPS_NAMED
            );
        }
    }
}

/// The style used by every bar of the trainer.
pub fn style() -> ProgressStyle {
    ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
        .expect("valid template")
        .progress_chars("=> ")
}

/// The bar of one training epoch: `epoch N [===>  ] done/batches <message> eta`.
pub fn epoch_bar(epoch: usize, batches: usize) -> ProgressBar {
    ProgressBar::new(batches as u64)
        .with_style(
            ProgressStyle::with_template(
                "epoch {prefix:>3} [{bar:25}] {pos}/{len} {msg} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        )
        .with_prefix(epoch.to_string())
}

impl Progress for BarProgress {
    fn start(&self, total: usize, what: &str) {
        let b = ProgressBar::new(total as u64)
            .with_style(style())
            .with_message(what.to_string());
        if let Some(old) = self.bar.lock().unwrap().replace(b) {
            old.finish_and_clear();
        }
    }
    fn inc(&self) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            b.inc(1);
        }
    }
    fn skipped(&self, e: &ImportError) {
        let before = self.skipped.fetch_add(1, Ordering::Relaxed);
        if !self.quiet_skips || before < SKIPS_NAMED {
            self.println(&format!("skipped {e}"));
        }
    }
    fn note(&self, message: &str) {
        self.println(message);
    }
}
