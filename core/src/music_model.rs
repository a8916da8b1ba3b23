//! MeasureVAE as a *format contract*, candle-free: the model kind, the config stored in a
//! checkpoint and the name and shape of every parameter (docs/architecture.md §5). The candle
//! model (`model::measure_vae`), the native engine and the plain-Rust decoder (`infer`) build
//! themselves from these; `image_model` is the same for the image family.

use serde::{Deserialize, Serialize};

use crate::music::token::VOCAB_SIZE;

/// `model_kind` of a MeasureVAE checkpoint.
pub const MEASURE_VAE_KIND: &str = "measure_vae";

/// Sizes of MeasureVAE (docs/architecture.md §5); the defaults are the reference's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureVaeConfig {
    /// Tokens in the vocabulary (132).
    pub vocab_size: usize,
    /// Token embedding width (10).
    pub embedding: usize,
    /// GRU hidden size (128).
    pub hidden: usize,
    /// GRU layers in every RNN (2).
    pub layers: usize,
    /// Latent dimensions (32).
    pub latent: usize,
    /// Dropout between GRU layers in training (0.5).
    pub dropout: f32,
    /// Width of the hidden layer of the mean and log-std heads (256).
    pub head_hidden: usize,
    /// Apply ReLU to the logits before cross-entropy, as the reference does. Off by default:
    /// it zeroes negative logits and blocks their gradients.
    #[serde(default)]
    pub logit_relu: bool,
}

impl Default for MeasureVaeConfig {
    fn default() -> Self {
        MeasureVaeConfig {
            vocab_size: VOCAB_SIZE,
            embedding: 10,
            hidden: 128,
            layers: 2,
            latent: 32,
            dropout: 0.5,
            head_hidden: 256,
            logit_relu: false,
        }
    }
}

impl MeasureVaeConfig {
    /// Checks that the sizes describe a buildable model for our vocabulary.
    pub fn validate(&self) -> Result<(), String> {
        if self.vocab_size != VOCAB_SIZE {
            return Err(format!(
                "config vocab_size is {}, this build's vocabulary has {VOCAB_SIZE} tokens",
                self.vocab_size
            ));
        }
        for (name, v) in [
            ("embedding", self.embedding),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("latent", self.latent),
            ("head_hidden", self.head_hidden),
        ] {
            if v == 0 || v > 1 << 16 {
                return Err(format!("config {name} = {v} is out of range"));
            }
        }
        if self.layers > 16 {
            return Err(format!("config layers = {} is out of range", self.layers));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "config dropout = {} is not in [0, 1)",
                self.dropout
            ));
        }
        Ok(())
    }
}

/// Names and shapes of a GRU stack's parameters, PyTorch style (`weight_ih_l{k}[_reverse]`).
pub fn gru_shapes(
    prefix: &str,
    input: usize,
    hidden: usize,
    layers: usize,
    bidirectional: bool,
) -> Vec<(String, Vec<usize>)> {
    let dirs: &[&str] = if bidirectional {
        &["", "_reverse"]
    } else {
        &[""]
    };
    let mut out = Vec::new();
    for k in 0..layers {
        let in_k = if k == 0 { input } else { hidden * dirs.len() };
        for d in dirs {
            out.push((
                format!("{prefix}.weight_ih_l{k}{d}"),
                vec![3 * hidden, in_k],
            ));
            out.push((
                format!("{prefix}.weight_hh_l{k}{d}"),
                vec![3 * hidden, hidden],
            ));
            out.push((format!("{prefix}.bias_ih_l{k}{d}"), vec![3 * hidden]));
            out.push((format!("{prefix}.bias_hh_l{k}{d}"), vec![3 * hidden]));
        }
    }
    out
}

fn linear_shapes(prefix: &str, input: usize, output: usize) -> [(String, Vec<usize>); 2] {
    [
        (format!("{prefix}.weight"), vec![output, input]),
        (format!("{prefix}.bias"), vec![output]),
    ]
}

/// Every MeasureVAE parameter with its shape, in model order (the checkpoint contract).
pub fn measure_vae_shapes(cfg: &MeasureVaeConfig) -> Vec<(String, Vec<usize>)> {
    let (v, e, h, l, z) = (
        cfg.vocab_size,
        cfg.embedding,
        cfg.hidden,
        cfg.layers,
        cfg.latent,
    );
    let mut out = vec![("enc.embedding.weight".to_string(), vec![v, e])];
    out.extend(gru_shapes("enc.rnn", e, h, l, true));
    for head in ["enc.mean", "enc.log_std"] {
        out.extend(linear_shapes(
            &format!("{head}.0"),
            2 * l * h,
            cfg.head_hidden,
        ));
        out.extend(linear_shapes(&format!("{head}.2"), cfg.head_hidden, z));
    }
    out.extend(linear_shapes("dec.z_to_beat_hidden", z, l * h));
    out.push(("dec.beat_input".to_string(), vec![1, 1]));
    out.extend(gru_shapes("dec.beat_rnn", 1, h, l, false));
    out.extend(linear_shapes("dec.beat_to_tick_hidden", h, l * h));
    out.extend(linear_shapes("dec.beat_to_tick_input", h, h));
    out.push(("dec.embedding.weight".to_string(), vec![v, e]));
    out.push(("dec.start_input".to_string(), vec![e]));
    out.extend(gru_shapes("dec.tick_rnn", e + h, h, l, false));
    out.extend(linear_shapes("dec.output", h, v));
    out
}
