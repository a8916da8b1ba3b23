//! The decode worker: owns the model, turns knob targets into latent codes and decodes bars.
//!
//! The audio thread sends fixed-size [`ToWorker`] messages with `try_send` and takes finished
//! [`Decoded`] bars with `try_recv`; both channels are bounded. The editor swaps models in over
//! a separate channel. A bar is a pure function of (model, knob targets, seed, regenerate mode,
//! bar index, captured source bar), so a restored session decodes the same bars.

use std::sync::Arc;
use std::thread::JoinHandle;

use arvae_core::infer::steer::steer;
use arvae_core::music::token::Measure;
use crossbeam_channel::{bounded, select, Receiver, Sender};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::LoadedModel;
use crate::params::Regen;
use crate::shared::{AtomicMeasure, UiShared};

/// What a bar should be decoded from: knob targets in attribute units and the seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeRequest {
    /// Bar index (host bars from the song start).
    pub bar: i64,
    /// Knob generation the request was made with (newer replaces older).
    pub gen: u32,
    /// Attribute targets (attribute units, [`Attribute::ALL`](arvae_core::music::Attribute) order).
    pub targets: [f32; 4],
    /// Variation seed of the non-regularized dimensions.
    pub seed: u32,
    /// When a new melody is drawn.
    pub regen: Regen,
    /// Transform the captured bar instead of sampling the prior.
    pub transform: bool,
    /// Search the regularized dimensions for the bar nearest the targets ([`steer`]).
    pub match_targets: bool,
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

/// A decoded bar (raw model pitches).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decoded {
    /// Bar index.
    pub bar: i64,
    /// Knob generation.
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

/// Passes of target matching: at most 1 + 3 * (4 * 6 + 16) = 121 decodes, about 7-12 ms at
/// 60-100 us a decode (README), against a bar of 800 ms at 300 BPM.
pub const MATCH_PASSES: usize = 3;

/// Mixes seed and bar into one RNG seed (SplitMix64 finalizer).
fn mix(seed: u32, bar: i64) -> u64 {
    let mut x = (seed as u64) << 32 ^ bar as u64 ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Fills `z` with standard normal values drawn from `rng` (Box-Muller).
fn normal(rng: &mut ChaCha8Rng, z: &mut [f32]) {
    for pair in z.chunks_mut(2) {
        let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.gen();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        pair[0] = (r * t.cos()) as f32;
        if pair.len() > 1 {
            pair[1] = (r * t.sin()) as f32;
        }
    }
}

/// The latent code of a request: prior sample (or the captured bar's mean) with the regularized
/// dimensions set from the knob targets through the calibration.
pub fn latent_for(model: &LoadedModel, source: Option<&[f32]>, r: &DecodeRequest, z: &mut [f32]) {
    match source.filter(|_| r.transform) {
        Some(s) => z.copy_from_slice(s),
        None => {
            let key = match r.regen {
                Regen::EveryBar => r.bar,
                Regen::OnChange | Regen::Hold => 0,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(mix(r.seed, key));
            normal(&mut rng, z);
        }
    }
    for i in 0..4 {
        z[model.dims[i]] = model.maps[i].latent(r.targets[i]);
    }
}

struct Worker {
    model: Box<LoadedModel>,
    captured: Option<Measure>,
    source: Option<Vec<f32>>,
    z: Vec<f32>,
    out: Sender<Decoded>,
    shared: Arc<UiShared>,
    captured_state: Arc<AtomicMeasure>,
}

impl Worker {
    fn encode_source(&mut self) {
        self.source = None;
        if let Some(m) = self.captured {
            let n = self.model.infer.latent();
            let mut mean = vec![0.0; n];
            // Transform mode uses the posterior mean only.
            if self.model.infer.encode_mean(&m, &mut mean).is_ok() {
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
        self.z = vec![0.0; self.model.infer.latent()];
        if let Ok(mut info) = self.shared.model_info.lock() {
            *info = self.model.info.clone();
        }
        self.encode_source();
    }

    fn handle(&mut self, msg: ToWorker, skip_decode: bool) {
        match msg {
            ToWorker::Capture(m) => {
                self.captured = Some(m);
                self.captured_state.store(Some(&m));
                self.encode_source();
            }
            ToWorker::ClearCapture => {
                self.captured = None;
                self.captured_state.store(None);
                self.encode_source();
            }
            ToWorker::Decode(r) if !skip_decode => {
                latent_for(&self.model, self.source.as_deref(), &r, &mut self.z);
                let mut measure = Measure::rest();
                let targets = self.model.steer_targets(&r.targets);
                let passes = if r.match_targets { MATCH_PASSES } else { 0 };
                let m = &mut self.model.infer;
                if steer(m, &mut self.z, &targets, passes, &mut measure).is_ok() {
                    let _ = self.out.try_send(Decoded {
                        bar: r.bar,
                        gen: r.gen,
                        measure,
                    });
                }
            }
            ToWorker::Decode(_) => {}
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
    let (out, from_worker) = bounded::<Decoded>(16);
    let (models, model_rx) = bounded::<Box<LoadedModel>>(2);
    let mut w = Worker {
        z: Vec::new(),
        captured: captured_state.load(),
        source: None,
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
                        // Only the newest decode request of a burst is worth decoding.
                        let last_decode = batch.iter().rposition(|m| matches!(m, ToWorker::Decode(_)));
                        for (i, m) in batch.iter().enumerate() {
                            w.handle(*m, Some(i) != last_decode);
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

    #[test]
    fn latent_is_deterministic_and_sets_regularized_dims() {
        let m = LoadedModel::embedded().unwrap();
        let r = DecodeRequest {
            bar: 3,
            gen: 0,
            targets: [0.3, 0.3, 0.25, 0.1],
            seed: 7,
            regen: Regen::EveryBar,
            transform: false,
            match_targets: false,
        };
        let n = m.infer.latent();
        let (mut a, mut b, mut c) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        latent_for(&m, None, &r, &mut a);
        latent_for(&m, None, &r, &mut b);
        assert_eq!(a, b);
        latent_for(&m, None, &DecodeRequest { bar: 4, ..r }, &mut c);
        assert_ne!(a[4..], c[4..]);
        assert_eq!(a[..4], c[..4]);
        latent_for(
            &m,
            None,
            &DecodeRequest {
                regen: Regen::OnChange,
                ..r
            },
            &mut a,
        );
        latent_for(
            &m,
            None,
            &DecodeRequest {
                regen: Regen::OnChange,
                bar: 9,
                ..r
            },
            &mut b,
        );
        assert_eq!(a, b);
        let source = vec![0.5; n];
        latent_for(
            &m,
            Some(&source),
            &DecodeRequest {
                transform: true,
                ..r
            },
            &mut a,
        );
        assert!(a[4..].iter().all(|&v| v == 0.5));
        assert_eq!(a[..4], c[..4]);
    }
}
