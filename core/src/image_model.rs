//! The convolutional VAEs of the paper's Table 2 as a *format contract*, candle-free: the
//! config stored in a checkpoint and the name and shape of every parameter. The candle model
//! (`model::conv_vae`) builds itself from these.
//!
//! - `dsprites` (64 x 64): 4 x [Conv(k4, s2, p1), ReLU] with 1->32->32->32->32 channels, then
//!   Linear 512->256, ReLU, 256->256, ReLU, and two heads 256->z; the decoder mirrors it
//!   (z->256->256->512, ReLU, reshape 32x4x4, 3 x [ConvT(k4, s2, p1), ReLU], ConvT to 1).
//! - `mnist` (28 x 28): 3 x [Conv(k4, s1), SELU, Dropout 0.5] with 1->64->64->8 channels
//!   (8 x 19 x 19 = 2888), Linear 2888->256, SELU, two heads 256->z; the decoder mirrors it
//!   (z->256->2888 with SELU, ConvT 8->64->64 with SELU and dropout, ConvT 64->1).

use serde::{Deserialize, Serialize};

/// `model_kind` of a convolutional image VAE checkpoint.
pub const CONV_VAE_KIND: &str = "conv_vae";

/// Which of the two Table 2 architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvArch {
    /// 2-d sprites VAE, 64 x 64 inputs.
    Dsprites,
    /// MNIST VAE, 28 x 28 inputs.
    Mnist,
}

/// Sizes of a convolutional VAE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvVaeConfig {
    /// Architecture.
    pub arch: ConvArch,
    /// Latent dimensions (10 for dSprites, 16 for Morpho-MNIST).
    pub latent: usize,
    /// Dropout in the MNIST architecture (0.5); unused by dSprites.
    pub dropout: f32,
}

impl ConvVaeConfig {
    /// The paper's dSprites model (z = 10).
    pub fn dsprites() -> Self {
        ConvVaeConfig {
            arch: ConvArch::Dsprites,
            latent: 10,
            dropout: 0.0,
        }
    }

    /// The paper's Morpho-MNIST model (z = 16).
    pub fn mnist() -> Self {
        ConvVaeConfig {
            arch: ConvArch::Mnist,
            latent: 16,
            dropout: 0.5,
        }
    }

    /// Image side the architecture takes.
    pub fn side(&self) -> usize {
        match self.arch {
            ConvArch::Dsprites => 64,
            ConvArch::Mnist => 28,
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), String> {
        if self.latent == 0 || self.latent > 4096 {
            return Err(format!("config latent = {} is out of range", self.latent));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "config dropout = {} is not in [0, 1)",
                self.dropout
            ));
        }
        Ok(())
    }

    /// (input channels, output channels) of the encoder convolutions, kernel 4.
    pub fn enc_convs(&self) -> Vec<(usize, usize)> {
        match self.arch {
            ConvArch::Dsprites => vec![(1, 32), (32, 32), (32, 32), (32, 32)],
            ConvArch::Mnist => vec![(1, 64), (64, 64), (64, 8)],
        }
    }

    /// (input channels, output channels) of the decoder transposed convolutions, kernel 4.
    pub fn dec_convs(&self) -> Vec<(usize, usize)> {
        match self.arch {
            ConvArch::Dsprites => vec![(32, 32), (32, 32), (32, 32), (32, 1)],
            ConvArch::Mnist => vec![(8, 64), (64, 64), (64, 1)],
        }
    }

    /// (channels, side) of the feature map between the convolutions and the linear layers.
    pub fn feature_map(&self) -> (usize, usize) {
        match self.arch {
            ConvArch::Dsprites => (32, 4),
            ConvArch::Mnist => (8, 19),
        }
    }

    /// Widths of the encoder's linear stack before the heads (flattened map first).
    pub fn enc_linear(&self) -> Vec<usize> {
        let (c, s) = self.feature_map();
        match self.arch {
            ConvArch::Dsprites => vec![c * s * s, 256, 256],
            ConvArch::Mnist => vec![c * s * s, 256],
        }
    }

    /// Widths of the decoder's linear stack (latent first, flattened map last).
    pub fn dec_linear(&self) -> Vec<usize> {
        let (c, s) = self.feature_map();
        match self.arch {
            ConvArch::Dsprites => vec![self.latent, 256, 256, c * s * s],
            ConvArch::Mnist => vec![self.latent, 256, c * s * s],
        }
    }
}

/// Every parameter of a convolutional VAE with its shape (PyTorch layouts: Conv2d weight
/// (out, in, k, k), ConvTranspose2d weight (in, out, k, k), Linear weight (out, in)).
pub fn conv_vae_shapes(cfg: &ConvVaeConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, (ci, co)) in cfg.enc_convs().into_iter().enumerate() {
        out.push((format!("enc.conv.{i}.weight"), vec![co, ci, 4, 4]));
        out.push((format!("enc.conv.{i}.bias"), vec![co]));
    }
    let el = cfg.enc_linear();
    for (i, w) in el.windows(2).enumerate() {
        out.push((format!("enc.linear.{i}.weight"), vec![w[1], w[0]]));
        out.push((format!("enc.linear.{i}.bias"), vec![w[1]]));
    }
    let last = *el.last().expect("widths");
    for head in ["enc.mean", "enc.log_std"] {
        out.push((format!("{head}.weight"), vec![cfg.latent, last]));
        out.push((format!("{head}.bias"), vec![cfg.latent]));
    }
    for (i, w) in cfg.dec_linear().windows(2).enumerate() {
        out.push((format!("dec.linear.{i}.weight"), vec![w[1], w[0]]));
        out.push((format!("dec.linear.{i}.bias"), vec![w[1]]));
    }
    for (i, (ci, co)) in cfg.dec_convs().into_iter().enumerate() {
        out.push((format!("dec.conv.{i}.weight"), vec![ci, co, 4, 4]));
        out.push((format!("dec.conv.{i}.bias"), vec![co]));
    }
    out
}

/// `model_kind` of the content-preservation classifier (a small CNN over the dataset's
/// images predicting its class label: the digit for Morpho-MNIST, the shape for dSprites).
pub const IMAGE_CLASSIFIER_KIND: &str = "image_classifier";

/// Sizes of the image classifier: Conv(1->32, k3, p1), ReLU, Conv(32->64, k4, s2, p1), ReLU,
/// Conv(64->64, k4, s2, p1), ReLU, Linear(64 * (side/4)^2 -> 128), ReLU, Dropout, Linear(128 ->
/// classes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Image side (28 for MNIST, 64 for dSprites); a multiple of 4.
    pub side: usize,
    /// Number of classes.
    pub classes: usize,
    /// Dropout before the last layer while training.
    pub dropout: f32,
}

impl ClassifierConfig {
    /// Channels of the three convolutions.
    pub const CHANNELS: [usize; 3] = [32, 64, 64];
    /// Width of the hidden linear layer.
    pub const HIDDEN: usize = 128;

    /// A classifier for `side` x `side` images and `classes` classes (dropout 0.25).
    pub fn new(side: usize, classes: usize) -> Self {
        ClassifierConfig {
            side,
            classes,
            dropout: 0.25,
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), String> {
        if self.side < 4 || !self.side.is_multiple_of(4) || self.side > 1024 {
            return Err(format!(
                "classifier side {} is not a multiple of 4 in 4..=1024",
                self.side
            ));
        }
        if self.classes < 2 || self.classes > 256 {
            return Err(format!(
                "classifier has {} classes (2..=256 supported)",
                self.classes
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "classifier dropout = {} is not in [0, 1)",
                self.dropout
            ));
        }
        Ok(())
    }

    /// Width of the flattened feature map.
    pub fn flat(&self) -> usize {
        Self::CHANNELS[2] * (self.side / 4) * (self.side / 4)
    }
}

/// Every parameter of the image classifier with its shape (PyTorch layouts).
pub fn classifier_shapes(cfg: &ClassifierConfig) -> Vec<(String, Vec<usize>)> {
    let [c0, c1, c2] = ClassifierConfig::CHANNELS;
    let h = ClassifierConfig::HIDDEN;
    vec![
        ("cls.conv.0.weight".into(), vec![c0, 1, 3, 3]),
        ("cls.conv.0.bias".into(), vec![c0]),
        ("cls.conv.1.weight".into(), vec![c1, c0, 4, 4]),
        ("cls.conv.1.bias".into(), vec![c1]),
        ("cls.conv.2.weight".into(), vec![c2, c1, 4, 4]),
        ("cls.conv.2.bias".into(), vec![c2]),
        ("cls.linear.weight".into(), vec![h, cfg.flat()]),
        ("cls.linear.bias".into(), vec![h]),
        ("cls.out.weight".into(), vec![cfg.classes, h]),
        ("cls.out.bias".into(), vec![cfg.classes]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_table_2() {
        let count = |c: &ConvVaeConfig| -> usize {
            conv_vae_shapes(c)
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum()
        };
        // dSprites: convs 4*(16*in*out + out), linears 512*256+256+256*256+256, heads 2*(256*10+10) ...
        let d = ConvVaeConfig::dsprites();
        let enc_conv = (16 * 32 + 32) + 3 * (16 * 32 * 32 + 32);
        let enc_lin = (512 * 256 + 256) + (256 * 256 + 256) + 2 * (256 * 10 + 10);
        let dec_lin = (10 * 256 + 256) + (256 * 256 + 256) + (256 * 512 + 512);
        let dec_conv = 3 * (16 * 32 * 32 + 32) + (16 * 32 + 1);
        assert_eq!(count(&d), enc_conv + enc_lin + dec_lin + dec_conv);
        let m = ConvVaeConfig::mnist();
        assert_eq!(m.enc_linear()[0], 2888);
        assert!(conv_vae_shapes(&m)
            .iter()
            .any(|(n, s)| n == "dec.conv.0.weight" && s == &vec![8, 64, 4, 4]));
    }
}
