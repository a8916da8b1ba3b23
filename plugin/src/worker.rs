//! The decode worker: owns the model and turns requests for bars into bars.
//!
//! The audio thread sends fixed-size [`ToWorker`] messages with `try_send` and takes finished
//! [`Decoded`] bars with `try_recv`; both channels are bounded. The editor swaps models in over
//! a separate channel. A bar is a pure function of (model, [`Recipe`], bar index): the worker
//! decodes whole phrases through the composer (`arvae_core::compose`) and keeps them, so a bar
//! asked for again (a loop, a jump back) is answered at once and is the same bar.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use arvae_core::compose::{Settings, MAX_PHRASE};
use arvae_core::music::token::Measure;
use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::model::LoadedModel;
use crate::params::Regen;
use crate::shared::{AtomicMeasure, UiShared};

/// Everything besides the model and the bar index that decides a bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    /// Knobs, seed, motion, phrase, key, matching.
    pub settings: Settings,
    /// `Regen::OnChange` plays bar 0 of the phrase every bar (Hold never asks the worker).
    pub regen: Regen,
    /// Transform the captured bar instead of composing from the prior.
    pub transform: bool,
    /// Counts captured bars, so a new capture is a new recipe.
    pub capture: u32,
}

/// A bar to decode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeRequest {
    /// Bar index (host bars from the song start).
    pub bar: i64,
    /// Recipe generation the request was made with (the audio thread's counter).
    pub gen: u32,
    /// What the bar is made from.
    pub recipe: Recipe,
}

/// Messages from the audio thread.
#[derive(Clone, Copy, Debug)]
pub enum ToWorker {
    /// Decode a bar.
    Decode(DecodeRequest),
    /// A bar captured from the MIDI input: encode it and use it as the transform source.
    Capture(Measure),
    /// Forget the transform source.
    ClearCapture,
}

/// A decoded bar (in the key, before transpose and scale lock).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decoded {
    /// Bar index.
    pub bar: i64,
    /// Recipe generation.
    pub gen: u32,
    /// The measure.
    pub measure: Measure,
}

/// Channel ends the plugin keeps.
pub struct WorkerHandle {
    /// Requests (audio thread: `try_send` only).
    pub to_worker: Sender<ToWorker>,
    /// Finished bars (audio thread: `try_recv` only).
    pub from_worker: Receiver<Decoded>,
    /// Model swaps (editor, activation).
    pub models: Sender<Box<LoadedModel>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // Closing the request channel ends the worker loop.
        let (dead, _) = bounded(0);
        self.to_worker = dead;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Phrases kept per recipe before the oldest are forgotten.
const KEPT_PHRASES: usize = 4096;

/// The bars of one recipe, by phrase index.
struct Phrases {
    recipe: Recipe,
    phrases: HashMap<i64, [Measure; MAX_PHRASE]>,
}

struct Worker {
    model: Box<LoadedModel>,
    source: Option<Vec<f32>>,
    kept: Option<Phrases>,
    out: Sender<Decoded>,
    shared: Arc<UiShared>,
    captured_state: Arc<AtomicMeasure>,
}

impl Worker {
    fn encode_source(&mut self) {
        self.source = None;
        self.kept = None;
        if let Some(m) = self.captured_state.load() {
            let c = &mut self.model.composer;
            let mut mean = vec![0.0; c.latent()];
            // Transform mode uses the posterior mean only.
            if c.model().encode_mean(&m, &mut mean).is_ok() {
                self.source = Some(mean);
            }
        }
        self.shared
            .transform_active
            .store(self.source.is_some(), std::sync::atomic::Ordering::Relaxed);
    }

    fn set_model(&mut self, model: Box<LoadedModel>) {
        self.model = model;
        self.model_changed();
    }

    fn model_changed(&mut self) {
        if let Ok(mut info) = self.shared.model_info.lock() {
            *info = self.model.info.clone();
        }
        self.encode_source();
    }

    /// The bar `bar` of `recipe`, from the kept phrases or decoded (its whole phrase).
    fn bar(&mut self, recipe: &Recipe, bar: i64) -> Option<Measure> {
        if self.kept.as_ref().is_none_or(|k| k.recipe != *recipe) {
            self.kept = Some(Phrases {
                recipe: *recipe,
                phrases: HashMap::new(),
            });
        }
        let s = &recipe.settings;
        let source = self.source.as_deref().filter(|_| recipe.transform);
        let (q, k) = match (source, recipe.regen) {
            (Some(_), _) | (None, Regen::OnChange | Regen::Hold) => (0, 0),
            (None, Regen::EveryBar) => {
                let p = s.phrase_len() as i64;
                (bar.div_euclid(p), bar.rem_euclid(p) as usize)
            }
        };
        let kept = self.kept.as_mut()?;
        if let Some(ph) = kept.phrases.get(&q) {
            return Some(ph[k]);
        }
        let mut ph = [Measure::rest(); MAX_PHRASE];
        let c = &mut self.model.composer;
        match source {
            Some(src) => ph[0] = c.transform(s, src).ok()?,
            None => {
                c.phrase(s, q, &mut ph).ok()?;
            }
        }
        if kept.phrases.len() >= KEPT_PHRASES {
            kept.phrases.clear();
        }
        kept.phrases.insert(q, ph);
        Some(ph[k])
    }

    fn handle(&mut self, msg: ToWorker) {
        match msg {
            ToWorker::Capture(m) => {
                self.captured_state.store(Some(&m));
                self.encode_source();
            }
            ToWorker::ClearCapture => {
                self.captured_state.store(None);
                self.encode_source();
            }
            ToWorker::Decode(r) => {
                if let Some(measure) = self.bar(&r.recipe, r.bar) {
                    let _ = self.out.try_send(Decoded {
                        bar: r.bar,
                        gen: r.gen,
                        measure,
                    });
                }
            }
        }
    }
}

/// Starts the worker with `model`; the captured bar in `captured_state` (restored sessions)
/// becomes the transform source.
pub fn spawn(
    model: Box<LoadedModel>,
    shared: Arc<UiShared>,
    captured_state: Arc<AtomicMeasure>,
) -> WorkerHandle {
    let (to_worker, requests) = bounded::<ToWorker>(64);
    let (out, from_worker) = bounded::<Decoded>(64);
    let (models, model_rx) = bounded::<Box<LoadedModel>>(2);
    let mut w = Worker {
        source: None,
        kept: None,
        model,
        out,
        shared,
        captured_state,
    };
    w.model_changed();
    let thread = std::thread::Builder::new()
        .name("arvae-decoder".into())
        .spawn(move || {
            let mut batch: Vec<ToWorker> = Vec::with_capacity(64);
            loop {
                select! {
                    recv(requests) -> msg => {
                        let Ok(msg) = msg else { break };
                        batch.clear();
                        batch.push(msg);
                        batch.extend(requests.try_iter());
                        // Requests made with an older recipe than the newest are not worth
                        // decoding (generations only grow, wrapping).
                        let newest = batch.iter().filter_map(|m| match m {
                            ToWorker::Decode(r) => Some(r.gen),
                            _ => None,
                        }).max_by(|a, b| (a.wrapping_sub(*b) as i32).cmp(&0));
                        for m in &batch {
                            if let (ToWorker::Decode(r), Some(n)) = (m, newest) {
                                if (n.wrapping_sub(r.gen) as i32) > 0 {
                                    continue;
                                }
                            }
                            w.handle(*m);
                        }
                    }
                    recv(model_rx) -> m => {
                        if let Ok(m) = m {
                            w.set_model(m);
                        }
                    }
                }
            }
        })
        .expect("spawn the decoder thread");
    WorkerHandle {
        to_worker,
        from_worker,
        models,
        thread: Some(thread),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(w: &WorkerHandle, bar: i64, gen: u32, recipe: Recipe) -> Measure {
        w.to_worker
            .send(ToWorker::Decode(DecodeRequest { bar, gen, recipe }))
            .unwrap();
        let d = w
            .from_worker
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        assert_eq!((d.bar, d.gen), (bar, gen));
        d.measure
    }

    #[test]
    fn bars_are_the_composers_and_repeat_exactly() {
        let shared = Arc::new(UiShared::default());
        let m = LoadedModel::embedded().unwrap();
        let w = spawn(Box::new(m), shared, Arc::new(AtomicMeasure::default()));
        let recipe = Recipe {
            settings: Settings {
                seed: 7,
                ..Settings::default()
            },
            regen: Regen::EveryBar,
            transform: false,
            capture: 0,
        };
        let bars: Vec<Measure> = (0..6).map(|b| ask(&w, b, 1, recipe)).collect();
        // The CLI's path gives the same bars.
        let mut c = LoadedModel::embedded().unwrap().composer;
        for (b, m) in bars.iter().enumerate() {
            assert_eq!(*m, c.bar(&recipe.settings, b as i64).unwrap(), "bar {b}");
        }
        // Asked again (a loop back), the same bars.
        assert_eq!(ask(&w, 1, 2, recipe), bars[1]);
        // Repeat bar: every bar is bar 0.
        let repeat = Recipe {
            regen: Regen::OnChange,
            ..recipe
        };
        assert_eq!(ask(&w, 5, 3, repeat), bars[0]);
    }
}
