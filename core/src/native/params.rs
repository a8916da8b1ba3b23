//! All MeasureVAE parameters in one flat f32 vector, in checkpoint order
//! ([`measure_vae_shapes`]), with the offsets of every tensor the engine reads.

use crate::checkpoint::NamedTensors;
use crate::music_model::{measure_vae_shapes, MeasureVaeConfig};

/// Offsets of one GRU cell's tensors (PyTorch layout: W_ih (3H, input), W_hh (3H, H)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GruP {
    pub w_ih: usize,
    pub w_hh: usize,
    pub b_ih: usize,
    pub b_hh: usize,
    pub input: usize,
}

/// Offsets of one Linear layer (weight (out, in), bias (out)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinP {
    pub w: usize,
    pub b: usize,
    pub input: usize,
    pub output: usize,
}

/// Where each tensor lives in the flat parameter (and gradient) vector.
#[derive(Clone, Debug)]
pub(crate) struct ParamLayout {
    /// (name, shape, offset) in checkpoint order.
    pub entries: Vec<(String, Vec<usize>, usize)>,
    pub total: usize,
    pub enc_emb: usize,
    /// By layer, then direction (forward, reverse).
    pub enc_rnn: Vec<[GruP; 2]>,
    /// mean.0, mean.2.
    pub mean: [LinP; 2],
    /// log_std.0, log_std.2.
    pub log_std: [LinP; 2],
    pub z_to_beat: LinP,
    pub beat_input: usize,
    pub beat_rnn: Vec<GruP>,
    pub beat_to_tick_hidden: LinP,
    pub beat_to_tick_input: LinP,
    pub dec_emb: usize,
    pub start_input: usize,
    pub tick_rnn: Vec<GruP>,
    pub output: LinP,
}

impl ParamLayout {
    pub fn new(cfg: &MeasureVaeConfig) -> Self {
        let mut entries = Vec::new();
        let mut total = 0;
        for (name, shape) in measure_vae_shapes(cfg) {
            let n: usize = shape.iter().product();
            entries.push((name, shape, total));
            total += n;
        }
        let find = |name: &str| -> usize {
            entries
                .iter()
                .find(|(n, _, _)| n == name)
                .unwrap_or_else(|| panic!("no parameter {name}"))
                .2
        };
        let shape = |name: &str| -> Vec<usize> {
            entries
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|e| e.1.clone())
                .unwrap_or_default()
        };
        let lin = |p: &str| {
            let s = shape(&format!("{p}.weight"));
            LinP {
                w: find(&format!("{p}.weight")),
                b: find(&format!("{p}.bias")),
                input: s[1],
                output: s[0],
            }
        };
        let gru = |p: &str, k: usize, d: &str| {
            let s = format!("l{k}{d}");
            GruP {
                w_ih: find(&format!("{p}.weight_ih_{s}")),
                w_hh: find(&format!("{p}.weight_hh_{s}")),
                b_ih: find(&format!("{p}.bias_ih_{s}")),
                b_hh: find(&format!("{p}.bias_hh_{s}")),
                input: shape(&format!("{p}.weight_ih_{s}"))[1],
            }
        };
        let l = cfg.layers;
        ParamLayout {
            enc_emb: find("enc.embedding.weight"),
            enc_rnn: (0..l)
                .map(|k| [gru("enc.rnn", k, ""), gru("enc.rnn", k, "_reverse")])
                .collect(),
            mean: [lin("enc.mean.0"), lin("enc.mean.2")],
            log_std: [lin("enc.log_std.0"), lin("enc.log_std.2")],
            z_to_beat: lin("dec.z_to_beat_hidden"),
            beat_input: find("dec.beat_input"),
            beat_rnn: (0..l).map(|k| gru("dec.beat_rnn", k, "")).collect(),
            beat_to_tick_hidden: lin("dec.beat_to_tick_hidden"),
            beat_to_tick_input: lin("dec.beat_to_tick_input"),
            dec_emb: find("dec.embedding.weight"),
            start_input: find("dec.start_input"),
            tick_rnn: (0..l).map(|k| gru("dec.tick_rnn", k, "")).collect(),
            output: lin("dec.output"),
            entries,
            total,
        }
    }

    /// The flat vector of `tensors` (every parameter required with its exact shape).
    pub fn flatten(&self, tensors: &NamedTensors) -> Result<Vec<f32>, String> {
        self.flatten_prefixed(tensors, "")
    }

    /// Like [`ParamLayout::flatten`] for tensors named `<prefix><parameter>`.
    pub fn flatten_prefixed(
        &self,
        tensors: &NamedTensors,
        prefix: &str,
    ) -> Result<Vec<f32>, String> {
        let mut out = vec![0.0; self.total];
        for (name, shape, off) in &self.entries {
            let key = format!("{prefix}{name}");
            let Some((s, v)) = tensors.get(&key) else {
                return Err(format!("missing tensor {key}"));
            };
            if s != shape || v.len() != shape.iter().product::<usize>() {
                return Err(format!("tensor {key} has shape {s:?}, expected {shape:?}"));
            }
            out[*off..*off + v.len()].copy_from_slice(v);
        }
        Ok(out)
    }

    /// Named tensors `<prefix><parameter>` of a flat vector.
    pub fn unflatten(&self, flat: &[f32], prefix: &str) -> NamedTensors {
        self.entries
            .iter()
            .map(|(name, shape, off)| {
                let n: usize = shape.iter().product();
                (
                    format!("{prefix}{name}"),
                    (shape.clone(), flat[*off..*off + n].to_vec()),
                )
            })
            .collect()
    }
}
