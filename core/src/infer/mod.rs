//! Allocation-free MeasureVAE encoder and greedy decoder on plain f32 weights (no candle).
//!
//! [`InferModel`] copies a MeasureVAE checkpoint's weights once into a layout made for batch-1
//! matrix-vector products and allocates all its scratch space up front; afterwards
//! [`InferModel::decode`] and [`InferModel::encode`] never touch the heap, never lock and never
//! panic, so the plugin can run them on a worker thread beside the audio thread.
//!
//! The math is exactly the candle model's (`model::measure_vae`, docs/architecture.md §5) in evaluation
//! mode: no dropout, greedy argmax (first maximum on ties, as candle and torch), PyTorch GRU
//! gates. Only the summation order and the exp/tanh implementation differ, so values agree to
//! float rounding (about 1e-6) and greedy tokens agree except at exact near-ties.
//!
//! Speed: the token embedding's share of the tick GRU's input projection is a precomputed
//! V x 3H table, the beat context's share is computed once per beat, the beat-level layers
//! and the encoder's upper input projections run as small matrix products over all steps at
//! once, and the encoder steps its two directions in lockstep. What is left per tick is four
//! matrix-vector products (about 164k multiply-adds over 656 KB of f32 weights), so decoding
//! one beat after the other is bound by how fast the core streams weights from its L2 cache,
//! not by arithmetic. Hence hand-written AVX2 and AVX-512 kernels over cache-line-aligned
//! blocks, picked at run time ([`Kernel`]), an optional f16 storage of the weights that halves
//! the bytes ([`Weights::F16`]; it changes results slightly, so it is not the default), and
//! the lockstep decoder ([`InferModel::decode`]): the four beats depend on each other only
//! through one token, so they are decoded side by side on a guess of that token, each weight
//! read once per tick for all of them, and a beat whose guess was wrong is decoded again.

mod kernels;
pub mod steer;

pub use kernels::{Kernel, Weights};

use kernels::{argmax_pitches, padded_bias, Isa, Packed, Portable};

use crate::checkpoint::Checkpoint;
use crate::music::token::{
    Measure, BEATS_PER_MEASURE, HOLD, START, TICKS_PER_BEAT, TICKS_PER_MEASURE, VOCAB_SIZE,
};
use crate::music_model::{measure_vae_shapes, MeasureVaeConfig};

/// Why an [`InferModel`] could not be built or a call was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InferError {
    /// The checkpoint is not a usable MeasureVAE (names what is wrong).
    #[error("cannot build the decoder from this checkpoint: {0}")]
    Checkpoint(String),
    /// The requested kernel variant does not run on this CPU.
    #[error("kernel {0} is not supported by this CPU")]
    UnsupportedKernel(&'static str),
    /// A slice passed to the model has the wrong length.
    #[error("{what} has {got} values, the model needs {expected}")]
    Length {
        /// Which argument.
        what: &'static str,
        /// Length the model needs.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A measure holds a token outside the vocabulary.
    #[error("token {token} at tick {tick} is outside the vocabulary")]
    Token {
        /// Tick of the bad token.
        tick: usize,
        /// The token.
        token: u8,
    },
    /// A steering target names a latent dimension the model does not have.
    #[error("latent dimension {dim} is out of range (the model has {latent})")]
    Dimension {
        /// The dimension asked for.
        dim: usize,
        /// Latent size of the model.
        latent: usize,
    },
}

/// One direction of one GRU layer: hidden-side weights and, above layer 0, input-side ones.
#[derive(Clone, Debug)]
struct GruDir {
    /// `W_ih` (3H x input), packed; `None` where the input side is precomputed (layer 0).
    w_ih: Option<Packed>,
    /// Input-side bias with the hidden-side r and z biases folded in (padded).
    b_i: Vec<f32>,
    /// `W_hh` (3H x H), packed.
    w_hh: Packed,
    /// Hidden-side bias: zero on r and z, `b_hn` on n (padded).
    b_h: Vec<f32>,
}

/// A linear layer, packed, with its padded bias.
#[derive(Clone, Debug)]
struct Dense {
    w: Packed,
    b: Vec<f32>,
}

impl Dense {
    fn padded(&self) -> usize {
        self.w.padded()
    }
}

#[derive(Clone, Debug)]
struct EncoderWeights {
    /// Per direction: for every token, layer 0's input-side gate pre-activations (V x 3H).
    table: [Vec<f32>; 2],
    /// Per layer, per direction.
    layers: Vec<[GruDir; 2]>,
    mean: [Dense; 2],
    log_std: [Dense; 2],
}

#[derive(Clone, Debug)]
struct DecoderWeights {
    z_to_beat_hidden: Dense,
    /// Layer 0's input-side gate pre-activations of the beat GRU (constant input), 3H.
    beat_gi0: Vec<f32>,
    beat_layers: Vec<GruDir>,
    beat_to_tick_hidden: Dense,
    beat_to_tick_input: Dense,
    /// The previous-token embedding's share of the tick GRU's layer-0 gates, per token (V x 3H).
    token_table: Vec<f32>,
    /// The same for the learned start input (3H).
    start_gi: Vec<f32>,
    /// The beat context's share of the tick GRU's layer-0 gates, with the folded biases.
    context: Dense,
    tick_layers: Vec<GruDir>,
    output: Dense,
}

/// Scratch space, allocated once.
#[derive(Clone, Debug)]
struct Scratch {
    /// Hidden states, one per layer (layers x H).
    h: Vec<f32>,
    /// Gate pre-activations, input side and hidden side (3H padded each).
    gi: Vec<f32>,
    gh: Vec<f32>,
    /// Per-step layer outputs, ping-pong (T x 2H).
    seq: [Vec<f32>; 2],
    /// Input-side gate pre-activations for all steps of a layer, per direction (T x 3H padded).
    gi_all: [Vec<f32>; 2],
    /// Encoder: hidden state per direction (H).
    dir_h: [Vec<f32>; 2],
    /// Encoder final states (2 x layers x H, padded to 16).
    state: Vec<f32>,
    /// Head hidden layer (padded).
    head: Vec<f32>,
    /// Head output (padded).
    head_out: Vec<f32>,
    /// Decoder: initial beat hidden (layers x H, padded).
    beat_h0: Vec<f32>,
    /// Decoder: per beat, the tick GRU's initial hidden (beats x padded(layers x H)).
    tick_h0: Vec<f32>,
    /// Decoder: per beat, the beat context (beats x padded H).
    context: Vec<f32>,
    /// Decoder: per beat, the context's share of the layer-0 gates (beats x 3H padded).
    context_gi: Vec<f32>,
    /// Logits of one tick (padded V).
    logits: Vec<f32>,
}

/// `guess` value of a beat that starts from the learned start input (beat 0).
const START_GUESS: u16 = u16::MAX;

/// Scratch space of the lockstep decoder (per beat where it says so), allocated once.
#[derive(Clone, Debug)]
struct Lockstep {
    /// Per stream (a beat being decoded): hidden (layers x H), gates, logits.
    h: Vec<f32>,
    gi: Vec<f32>,
    gh: Vec<f32>,
    logits: Vec<f32>,
    /// Per stream: its beat and the previous token.
    streams: [usize; BEATS_PER_MEASURE],
    prev: [u16; BEATS_PER_MEASURE],
    /// Per beat: the previous token it was last decoded from.
    guess: [u16; BEATS_PER_MEASURE],
}

/// MeasureVAE encoder and greedy decoder on plain f32 weights; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct InferModel {
    cfg: MeasureVaeConfig,
    kernel: Kernel,
    weights: Weights,
    enc: EncoderWeights,
    dec: DecoderWeights,
    s: Scratch,
    lock: Lockstep,
    /// Lowest and highest pitch token greedy decoding may choose, with the pad grammar of a
    /// melody (`None`: plain argmax over every token, as training and `eval` decode).
    pitches: Option<(u8, u8)>,
}

/// Looks up a tensor and checks its shape.
fn tensor<'a>(ck: &'a Checkpoint, name: &str, shape: &[usize]) -> Result<&'a [f32], InferError> {
    let (s, data) = ck
        .tensors
        .get(name)
        .ok_or_else(|| InferError::Checkpoint(format!("tensor {name} is missing")))?;
    if s.as_slice() != shape {
        return Err(InferError::Checkpoint(format!(
            "tensor {name} has shape {s:?}, the config needs {shape:?}"
        )));
    }
    if data.len() != shape.iter().product::<usize>() {
        return Err(InferError::Checkpoint(format!(
            "tensor {name} has {} values for shape {shape:?}",
            data.len()
        )));
    }
    Ok(data)
}

fn dense(
    ck: &Checkpoint,
    prefix: &str,
    input: usize,
    output: usize,
    format: Weights,
) -> Result<Dense, InferError> {
    let w = tensor(ck, &format!("{prefix}.weight"), &[output, input])?;
    let b = tensor(ck, &format!("{prefix}.bias"), &[output])?;
    let w = Packed::new(w, output, input, 0, input, format);
    let b = padded_bias(b, w.padded());
    Ok(Dense { w, b })
}

/// Raw tensors of one GRU direction: (w_ih, w_hh, b_ih, b_hh).
type RawGru<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32]);

fn raw_gru<'a>(
    ck: &'a Checkpoint,
    prefix: &str,
    suffix: &str,
    input: usize,
    h: usize,
) -> Result<RawGru<'a>, InferError> {
    Ok((
        tensor(ck, &format!("{prefix}.weight_ih_{suffix}"), &[3 * h, input])?,
        tensor(ck, &format!("{prefix}.weight_hh_{suffix}"), &[3 * h, h])?,
        tensor(ck, &format!("{prefix}.bias_ih_{suffix}"), &[3 * h])?,
        tensor(ck, &format!("{prefix}.bias_hh_{suffix}"), &[3 * h])?,
    ))
}

/// Input bias with the hidden r and z biases folded in (unpadded, 3H).
fn folded_bias(b_ih: &[f32], b_hh: &[f32], h: usize) -> Vec<f32> {
    (0..3 * h)
        .map(|i| {
            if i < 2 * h {
                b_ih[i] + b_hh[i]
            } else {
                b_ih[i]
            }
        })
        .collect()
}

fn gru_dir(raw: RawGru, input: usize, h: usize, pack_input: bool, format: Weights) -> GruDir {
    let (w_ih, w_hh, b_ih, b_hh) = raw;
    let w_hh = Packed::new(w_hh, 3 * h, h, 0, h, format);
    let padded = w_hh.padded();
    let b_h: Vec<f32> = (0..padded)
        .map(|i| {
            if (2 * h..3 * h).contains(&i) {
                b_hh[i]
            } else {
                0.0
            }
        })
        .collect();
    GruDir {
        w_ih: pack_input.then(|| Packed::new(w_ih, 3 * h, input, 0, input, format)),
        b_i: padded_bias(&folded_bias(b_ih, b_hh, h), padded),
        w_hh,
        b_h,
    }
}

/// `W[:, col0..col0 + x.len()] · x` for row-major `w` with `stride` columns (f64 sums).
fn project(w: &[f32], rows: usize, stride: usize, col0: usize, x: &[f32]) -> Vec<f32> {
    (0..rows)
        .map(|r| {
            let row = &w[r * stride + col0..r * stride + col0 + x.len()];
            row.iter()
                .zip(x)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

fn round16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

impl InferModel {
    /// Builds the model from a MeasureVAE checkpoint with the fastest kernel this CPU runs.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Self, InferError> {
        Self::with_kernel(ck, Kernel::detect())
    }

    /// Builds the model with a chosen kernel variant and f32 weights.
    pub fn with_kernel(ck: &Checkpoint, kernel: Kernel) -> Result<Self, InferError> {
        Self::with_options(ck, kernel, Weights::F32)
    }

    /// Builds the model with a chosen kernel variant and weight storage (for benchmarks, tests
    /// and hosts that prefer speed over bit-level agreement with candle: see [`Weights`]).
    pub fn with_options(
        ck: &Checkpoint,
        kernel: Kernel,
        weights: Weights,
    ) -> Result<Self, InferError> {
        if !kernel.is_supported() {
            return Err(InferError::UnsupportedKernel(kernel.name()));
        }
        let cfg = ck
            .meta
            .measure_vae_config()
            .map_err(InferError::Checkpoint)?;
        if cfg.vocab_size != VOCAB_SIZE {
            return Err(InferError::Checkpoint(format!(
                "vocab_size {} is not {VOCAB_SIZE}",
                cfg.vocab_size
            )));
        }
        // Every parameter of the contract must be there with its shape (and nothing else
        // unexpected, no non-finite values): the checkpoint's own validation says what is wrong.
        ck.validate().map_err(InferError::Checkpoint)?;
        for (name, shape) in measure_vae_shapes(&cfg) {
            tensor(ck, &name, &shape)?;
        }
        let enc = encoder_weights(ck, &cfg, weights)?;
        let dec = decoder_weights(ck, &cfg, weights)?;
        let s = Scratch::new(&cfg, &dec);
        let lock = Lockstep::new(&cfg, &dec);
        Ok(InferModel {
            cfg,
            kernel,
            weights,
            enc,
            dec,
            s,
            lock,
            pitches: None,
        })
    }

    /// Restricts greedy decoding to pitch tokens `lo..=hi` (the range the model was trained
    /// on): a pitch outside it is never chosen, whatever its logit; `REST` and `HOLD` stay
    /// allowed, and so does `START` while the bar has had nothing else (a late first onset),
    /// but never `END` or a `START` after music: the data's pads are `START*` music `END*`, so
    /// the decoder choosing one after music plays a broken bar, and a composed melody never
    /// ends. Without a call (the default) decoding is plain argmax over every token, as in
    /// training and `eval`. `lo > hi` or `hi > 127` is an error.
    pub fn set_pitch_range(&mut self, lo: u8, hi: u8) -> Result<(), InferError> {
        if lo > hi || hi > 127 {
            return Err(InferError::Checkpoint(format!(
                "pitch range {lo}..={hi} is not a range of MIDI pitches"
            )));
        }
        self.pitches = Some((lo, hi));
        Ok(())
    }

    /// The pitch tokens greedy decoding may choose ([`set_pitch_range`](Self::set_pitch_range);
    /// `0..=127` before it is set).
    pub fn pitch_range(&self) -> (u8, u8) {
        self.pitches.unwrap_or((0, 127))
    }

    /// The model's config.
    pub fn config(&self) -> &MeasureVaeConfig {
        &self.cfg
    }

    /// Latent dimensions (the length of z, mean and log-std).
    pub fn latent(&self) -> usize {
        self.cfg.latent
    }

    /// The kernel variant in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// How the weight matrices are stored.
    pub fn weights(&self) -> Weights {
        self.weights
    }

    /// Greedy decoding of one measure from z (`latent()` values), without allocating.
    ///
    /// The four beats are decoded side by side: each beat's tick GRU starts from its own
    /// hidden state, so the beats depend on each other only through the token that ends the
    /// previous beat. Beats 1-3 are first decoded assuming that token is a hold (what the
    /// last tick of a beat almost always holds), reading every weight matrix once per tick for
    /// all four; a beat whose assumption turns out wrong is decoded again from the right token.
    /// The result is bit for bit that of one beat after the other ([`decode_plain`]).
    ///
    /// [`decode_plain`]: Self::decode_plain
    pub fn decode(&mut self, z: &[f32], out: &mut Measure) -> Result<(), InferError> {
        self.decode_with_logits(z, out, None)
    }

    /// [`decode`](Self::decode) that also writes the logits of every tick (24 x 132, after
    /// the optional ReLU) to `logits` when given.
    pub fn decode_with_logits(
        &mut self,
        z: &[f32],
        out: &mut Measure,
        logits: Option<&mut [f32]>,
    ) -> Result<(), InferError> {
        self.dispatch_decode(Mode::Lockstep, z, out, logits)
    }

    /// [`decode`](Self::decode) one beat after the other, every weight matrix read once per
    /// tick per beat: the reference the lockstep decoder is tested and benchmarked against.
    /// Writes the logits as [`decode_with_logits`](Self::decode_with_logits) when given.
    pub fn decode_plain(
        &mut self,
        z: &[f32],
        out: &mut Measure,
        logits: Option<&mut [f32]>,
    ) -> Result<(), InferError> {
        self.dispatch_decode(Mode::Plain, z, out, logits)
    }

    /// Checks the lengths, then runs the decoder on the model's kernel.
    fn dispatch_decode(
        &mut self,
        mode: Mode,
        z: &[f32],
        out: &mut Measure,
        logits: Option<&mut [f32]>,
    ) -> Result<(), InferError> {
        check_len("z", self.cfg.latent, z.len())?;
        if let Some(l) = &logits {
            check_len("logits", TICKS_PER_MEASURE * VOCAB_SIZE, l.len())?;
        }
        match self.kernel {
            // SAFETY (all arms): the kernel was checked to be supported by this CPU at
            // construction.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { self.decode_avx512(mode, z, out, logits) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => unsafe { self.decode_avx2(mode, z, out, logits) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2FmaAuto => unsafe { self.decode_avx2_auto(mode, z, out, logits) },
            _ => self.decode_impl::<Portable>(mode, z, out, logits),
        }
        Ok(())
    }

    /// Posterior mean and log-std (`latent()` values each) of a measure, without allocating.
    pub fn encode(
        &mut self,
        m: &Measure,
        mean: &mut [f32],
        log_std: &mut [f32],
    ) -> Result<(), InferError> {
        check_len("mean", self.cfg.latent, mean.len())?;
        check_len("log_std", self.cfg.latent, log_std.len())?;
        self.encode_to(m, mean, Some(log_std))
    }

    /// The posterior mean only (`latent()` values): what transform mode needs. It skips the
    /// log-std head, whose first layer is as large as the mean's (a fifth of the weights read
    /// per encode); the mean is bit for bit [`encode`](Self::encode)'s.
    pub fn encode_mean(&mut self, m: &Measure, mean: &mut [f32]) -> Result<(), InferError> {
        self.encode_to(m, mean, None)
    }

    fn encode_to(
        &mut self,
        m: &Measure,
        mean: &mut [f32],
        log_std: Option<&mut [f32]>,
    ) -> Result<(), InferError> {
        check_len("mean", self.cfg.latent, mean.len())?;
        if let Some((tick, &token)) =
            m.0.iter()
                .enumerate()
                .find(|(_, &t)| t as usize >= VOCAB_SIZE)
        {
            return Err(InferError::Token { tick, token });
        }
        match self.kernel {
            // SAFETY (all arms): the kernel was checked to be supported by this CPU at
            // construction.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { self.encode_avx512(m, mean, log_std) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => unsafe { self.encode_avx2(m, mean, log_std) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2FmaAuto => unsafe { self.encode_avx2_auto(m, mean, log_std) },
            _ => self.encode_impl::<Portable>(m, mean, log_std),
        }
        Ok(())
    }

    // One entry point per kernel variant: the generic body inlined under the target features.

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn decode_avx512(&mut self, mode: Mode, z: &[f32], out: &mut Measure, lo: Logits) {
        self.decode_impl::<kernels::Avx512>(mode, z, out, lo)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn encode_avx512(&mut self, m: &Measure, mean: &mut [f32], log_std: LogStd) {
        self.encode_impl::<kernels::Avx512>(m, mean, log_std)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode_avx2(&mut self, mode: Mode, z: &[f32], out: &mut Measure, lo: Logits) {
        self.decode_impl::<kernels::Avx2Fma>(mode, z, out, lo)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn encode_avx2(&mut self, m: &Measure, mean: &mut [f32], log_std: LogStd) {
        self.encode_impl::<kernels::Avx2Fma>(m, mean, log_std)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn decode_avx2_auto(&mut self, mode: Mode, z: &[f32], out: &mut Measure, lo: Logits) {
        self.decode_impl::<kernels::GenericFma>(mode, z, out, lo)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn encode_avx2_auto(&mut self, m: &Measure, mean: &mut [f32], log_std: LogStd) {
        self.encode_impl::<kernels::GenericFma>(m, mean, log_std)
    }

    #[inline(always)]
    fn decode_impl<I: Isa>(&mut self, mode: Mode, z: &[f32], out: &mut Measure, lo: Logits) {
        match mode {
            Mode::Plain => self.decode_plain_impl::<I>(z, out, lo),
            Mode::Lockstep => self.decode_lockstep::<I>(z, out, lo),
        }
    }

    /// The beat level of the decoder: the beat GRU from z, then per beat the tick GRU's
    /// initial hidden (`s.tick_h0`), the context and its share of the tick GRU's layer-0
    /// gates (`s.context_gi`).
    #[inline(always)]
    fn decode_beats<I: Isa>(&mut self, z: &[f32]) {
        let (h, l) = (self.cfg.hidden, self.cfg.layers);
        let g = 3 * h;
        let gp = round16(g);
        let d = &self.dec;
        let s = &mut self.s;

        // Beat GRU: hidden from z, then layer by layer over the 4 beats (no dropout, so
        // layer-major order equals step-major order); the constant input's gates are fixed.
        I::matvec(
            &d.z_to_beat_hidden.w,
            &d.z_to_beat_hidden.b,
            z,
            &mut s.beat_h0,
        );
        I::selu(&mut s.beat_h0[..l * h]);
        let beats = BEATS_PER_MEASURE;
        for (k, dir) in d.beat_layers.iter().enumerate() {
            let (prev, cur) = split_pair(&mut s.seq, k % 2);
            if let Some(w_ih) = &dir.w_ih {
                I::matmul(w_ih, &dir.b_i, prev, h, beats, &mut s.gi_all[0], gp);
            }
            let hk = &mut s.h[..h];
            hk.copy_from_slice(&s.beat_h0[k * h..(k + 1) * h]);
            for t in 0..beats {
                let gi = if k == 0 {
                    &d.beat_gi0[..]
                } else {
                    &s.gi_all[0][t * gp..t * gp + g]
                };
                I::matvec(&dir.w_hh, &dir.b_h, hk, &mut s.gh);
                I::gru(hk, gi, &s.gh);
                cur[t * h..(t + 1) * h].copy_from_slice(hk);
            }
        }
        let beat_out = &s.seq[(l - 1) % 2];

        // Per beat, at once: the tick GRU's initial hidden, the context and its gate share.
        let (tp, cp) = (
            d.beat_to_tick_hidden.padded(),
            d.beat_to_tick_input.padded(),
        );
        I::matmul(
            &d.beat_to_tick_hidden.w,
            &d.beat_to_tick_hidden.b,
            beat_out,
            h,
            beats,
            &mut s.tick_h0,
            tp,
        );
        I::matmul(
            &d.beat_to_tick_input.w,
            &d.beat_to_tick_input.b,
            beat_out,
            h,
            beats,
            &mut s.context,
            cp,
        );
        for b in 0..beats {
            I::selu(&mut s.tick_h0[b * tp..b * tp + l * h]);
            I::selu(&mut s.context[b * cp..b * cp + h]);
        }
        I::matmul(
            &d.context.w,
            &d.context.b,
            &s.context,
            cp,
            beats,
            &mut s.context_gi,
            gp,
        );
    }

    /// One beat after the other.
    #[inline(always)]
    fn decode_plain_impl<I: Isa>(&mut self, z: &[f32], out: &mut Measure, mut logits_out: Logits) {
        self.decode_beats::<I>(z);
        let (h, l, v) = (self.cfg.hidden, self.cfg.layers, VOCAB_SIZE);
        let g = 3 * h;
        let gp = round16(g);
        let relu = self.cfg.logit_relu;
        let beats = BEATS_PER_MEASURE;
        let pitches = self.pitches;
        let d = &self.dec;
        let s = &mut self.s;
        let tp = d.beat_to_tick_hidden.padded();

        // Tick GRU, greedy: the previous token carries across beats.
        let mut prev: Option<usize> = None;
        for b in 0..beats {
            s.h[..l * h].copy_from_slice(&s.tick_h0[b * tp..b * tp + l * h]);
            let ctx = &s.context_gi[b * gp..b * gp + g];
            for tick in 0..TICKS_PER_BEAT {
                let t = b * TICKS_PER_BEAT + tick;
                let tok = match prev {
                    None => &d.start_gi[..],
                    Some(p) => &d.token_table[p * g..(p + 1) * g],
                };
                for ((gi, c), e) in s.gi[..g].iter_mut().zip(ctx).zip(tok) {
                    *gi = c + e;
                }
                for (k, dir) in d.tick_layers.iter().enumerate() {
                    let (below, hk) = s.h.split_at_mut(k * h);
                    let hk = &mut hk[..h];
                    if let Some(w_ih) = &dir.w_ih {
                        I::matvec(w_ih, &dir.b_i, &below[(k - 1) * h..], &mut s.gi);
                    }
                    I::matvec(&dir.w_hh, &dir.b_h, hk, &mut s.gh);
                    I::gru(hk, &s.gi[..g], &s.gh);
                }
                I::matvec(
                    &d.output.w,
                    &d.output.b,
                    &s.h[(l - 1) * h..l * h],
                    &mut s.logits,
                );
                let logits = &mut s.logits[..v];
                if relu {
                    for x in logits.iter_mut() {
                        *x = x.max(0.0);
                    }
                }
                let leading = prev.is_none_or(|p| p == START as usize);
                let best = argmax_pitches(logits, pitches, leading);
                out.0[t] = best as u8;
                prev = Some(best);
                if let Some(lo) = logits_out.as_deref_mut() {
                    lo[t * v..(t + 1) * v].copy_from_slice(logits);
                }
            }
        }
    }

    /// The beats side by side; see [`Self::decode`]. Every stage makes the same kernel call
    /// per input as [`Self::decode_plain_impl`] (`matvec_cols` equals `matvec` bit for bit,
    /// `matmul`'s outputs do not depend on how many inputs it gets), so the tokens and logits
    /// are the plain decoder's exactly.
    #[inline(always)]
    fn decode_lockstep<I: Isa>(&mut self, z: &[f32], out: &mut Measure, mut logits_out: Logits) {
        self.decode_beats::<I>(z);
        let (h, l, v) = (self.cfg.hidden, self.cfg.layers, VOCAB_SIZE);
        let (g, lh) = (3 * h, l * h);
        let gp = round16(g);
        let relu = self.cfg.logit_relu;
        let beats = BEATS_PER_MEASURE;
        let pitches = self.pitches;
        let d = &self.dec;
        let Lockstep {
            h: sh,
            gi: sgi,
            gh: sgh,
            logits: slog,
            streams,
            prev,
            guess,
        } = &mut self.lock;

        let tp = d.beat_to_tick_hidden.padded();
        let (tick_h0, context_gi) = (&self.s.tick_h0, &self.s.context_gi);

        // First round: every beat, beats 1.. assuming the beat before ends in a hold.
        for b in 0..beats {
            streams[b] = b;
            guess[b] = if b == 0 { START_GUESS } else { u16::from(HOLD) };
        }
        let (mut n, mut verified) = (beats, 1);
        let vp = d.output.padded();
        while n > 0 {
            // The tick GRU over the n streams, side by side.
            for (i, &b) in streams[..n].iter().enumerate() {
                sh[i * lh..(i + 1) * lh].copy_from_slice(&tick_h0[b * tp..b * tp + lh]);
                prev[i] = guess[b];
            }
            for tick in 0..TICKS_PER_BEAT {
                for (i, &b) in streams[..n].iter().enumerate() {
                    let tok = match prev[i] {
                        START_GUESS => &d.start_gi[..],
                        p => &d.token_table[p as usize * g..(p as usize + 1) * g],
                    };
                    let ctx = &context_gi[b * gp..b * gp + g];
                    for ((gi, c), e) in sgi[i * gp..i * gp + g].iter_mut().zip(ctx).zip(tok) {
                        *gi = c + e;
                    }
                }
                for (k, dir) in d.tick_layers.iter().enumerate() {
                    if let Some(w_ih) = &dir.w_ih {
                        I::matvec_cols(w_ih, &dir.b_i, &sh[(k - 1) * h..], lh, n, sgi, gp);
                    }
                    I::matvec_cols(&dir.w_hh, &dir.b_h, &sh[k * h..], lh, n, sgh, gp);
                    for i in 0..n {
                        let hk = &mut sh[i * lh + k * h..i * lh + (k + 1) * h];
                        I::gru(hk, &sgi[i * gp..i * gp + g], &sgh[i * gp..(i + 1) * gp]);
                    }
                }
                let o = &d.output;
                I::matvec_cols(&o.w, &o.b, &sh[(l - 1) * h..], lh, n, slog, vp);
                for (i, &b) in streams[..n].iter().enumerate() {
                    let logits = &mut slog[i * vp..i * vp + v];
                    if relu {
                        for x in logits.iter_mut() {
                            *x = x.max(0.0);
                        }
                    }
                    let leading = matches!(prev[i], START_GUESS) || prev[i] == u16::from(START);
                    let best = argmax_pitches(logits, pitches, leading);
                    let t = b * TICKS_PER_BEAT + tick;
                    out.0[t] = best as u8;
                    prev[i] = best as u16;
                    if let Some(lo) = logits_out.as_deref_mut() {
                        lo[t * v..(t + 1) * v].copy_from_slice(logits);
                    }
                }
            }
            // A beat is final once the beat before it is and it was decoded from the token
            // that beat ended with. Every beat after the final ones that was decoded from
            // another token than the one its predecessor now ends with goes again, from that
            // token, all side by side: the first of them becomes final, and the others are
            // often right too (a beat's last token seldom depends on its first).
            while verified < beats
                && guess[verified] == u16::from(out.0[verified * TICKS_PER_BEAT - 1])
            {
                verified += 1;
            }
            n = 0;
            for (b, gb) in guess.iter_mut().enumerate().skip(verified) {
                let ended = u16::from(out.0[b * TICKS_PER_BEAT - 1]);
                if *gb != ended {
                    *gb = ended;
                    streams[n] = b;
                    n += 1;
                }
            }
        }
    }

    #[inline(always)]
    fn encode_impl<I: Isa>(&mut self, m: &Measure, mean: &mut [f32], log_std: LogStd) {
        let h = self.cfg.hidden;
        let g = 3 * h;
        let gp = round16(g);
        let steps = TICKS_PER_MEASURE;
        let e = &self.enc;
        let s = &mut self.s;
        for (k, layer) in e.layers.iter().enumerate() {
            let (prev, cur) = split_pair(&mut s.seq, k % 2);
            for (d, dir) in layer.iter().enumerate() {
                if let Some(w_ih) = &dir.w_ih {
                    I::matmul(w_ih, &dir.b_i, prev, 2 * h, steps, &mut s.gi_all[d], gp);
                }
                s.dir_h[d].fill(0.0);
            }
            // The directions are independent: stepping them in lockstep gives the core two
            // chains of work to overlap at every step's boundary.
            for i in 0..steps {
                for (d, dir) in layer.iter().enumerate() {
                    let t = if d == 0 { i } else { steps - 1 - i };
                    let gi = if k == 0 {
                        let tok = m.0[t] as usize;
                        &e.table[d][tok * g..(tok + 1) * g]
                    } else {
                        &s.gi_all[d][t * gp..t * gp + g]
                    };
                    let hd = &mut s.dir_h[d][..h];
                    I::matvec(&dir.w_hh, &dir.b_h, hd, &mut s.gh);
                    I::gru(hd, gi, &s.gh);
                    cur[t * 2 * h + d * h..t * 2 * h + (d + 1) * h].copy_from_slice(hd);
                }
            }
            // h_n order: l0-fwd, l0-bwd, l1-fwd, l1-bwd.
            for d in 0..2 {
                s.state[(2 * k + d) * h..(2 * k + d + 1) * h].copy_from_slice(&s.dir_h[d][..h]);
            }
        }
        let latent = self.cfg.latent;
        let heads = [(&e.mean, Some(mean)), (&e.log_std, log_std)];
        for (head, dst) in heads {
            let Some(dst) = dst else { continue };
            I::matvec(&head[0].w, &head[0].b, &s.state, &mut s.head);
            I::selu(&mut s.head[..head[0].w.rows()]);
            I::matvec(&head[1].w, &head[1].b, &s.head, &mut s.head_out);
            dst.copy_from_slice(&s.head_out[..latent]);
        }
    }
}

/// (vocabulary, embedding, hidden, layers, latent) of `cfg`.
fn sizes(cfg: &MeasureVaeConfig) -> (usize, usize, usize, usize, usize) {
    (
        cfg.vocab_size,
        cfg.embedding,
        cfg.hidden,
        cfg.layers,
        cfg.latent,
    )
}

/// The encoder's weights, packed for `weights`: the first layer's input projections folded
/// into a table per token and direction.
fn encoder_weights(
    ck: &Checkpoint,
    cfg: &MeasureVaeConfig,
    weights: Weights,
) -> Result<EncoderWeights, InferError> {
    let (v, e, h, l, zd) = sizes(cfg);
    let g = 3 * h;
    let emb = tensor(ck, "enc.embedding.weight", &[v, e])?;
    let mut table: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
    let mut enc_layers = Vec::with_capacity(l);
    for k in 0..l {
        let input = if k == 0 { e } else { 2 * h };
        let mut dirs = Vec::with_capacity(2);
        for (d, suffix) in [format!("l{k}"), format!("l{k}_reverse")]
            .iter()
            .enumerate()
        {
            let raw = raw_gru(ck, "enc.rnn", suffix, input, h)?;
            let dir = gru_dir(raw, input, h, k > 0, weights);
            if k == 0 {
                let mut t = Vec::with_capacity(v * g);
                for tok in 0..v {
                    let p = project(raw.0, g, e, 0, &emb[tok * e..(tok + 1) * e]);
                    t.extend(p.iter().zip(&dir.b_i).map(|(a, b)| a + b));
                }
                table[d] = t;
            }
            dirs.push(dir);
        }
        let [f, b]: [GruDir; 2] = dirs.try_into().expect("two directions");
        enc_layers.push([f, b]);
    }
    let state = 2 * l * h;
    Ok(EncoderWeights {
        table,
        layers: enc_layers,
        mean: [
            dense(ck, "enc.mean.0", state, cfg.head_hidden, weights)?,
            dense(ck, "enc.mean.2", cfg.head_hidden, zd, weights)?,
        ],
        log_std: [
            dense(ck, "enc.log_std.0", state, cfg.head_hidden, weights)?,
            dense(ck, "enc.log_std.2", cfg.head_hidden, zd, weights)?,
        ],
    })
}

/// The decoder's weights, packed for `weights`: the first layers' constant inputs and the
/// token embeddings folded into their input projections.
fn decoder_weights(
    ck: &Checkpoint,
    cfg: &MeasureVaeConfig,
    weights: Weights,
) -> Result<DecoderWeights, InferError> {
    let (v, e, h, l, zd) = sizes(cfg);
    let g = 3 * h;
    let beat_input = tensor(ck, "dec.beat_input", &[1, 1])?;
    let mut beat_layers = Vec::with_capacity(l);
    let mut beat_gi0 = Vec::new();
    for k in 0..l {
        let input = if k == 0 { 1 } else { h };
        let raw = raw_gru(ck, "dec.beat_rnn", &format!("l{k}"), input, h)?;
        let dir = gru_dir(raw, input, h, k > 0, weights);
        if k == 0 {
            let p = project(raw.0, g, 1, 0, beat_input);
            beat_gi0 = p.iter().zip(&dir.b_i).map(|(a, b)| a + b).collect();
        }
        beat_layers.push(dir);
    }
    let demb = tensor(ck, "dec.embedding.weight", &[v, e])?;
    let start = tensor(ck, "dec.start_input", &[e])?;
    let mut tick_layers = Vec::with_capacity(l);
    let mut token_table = Vec::with_capacity(v * g);
    let mut start_gi = Vec::new();
    let mut context = None;
    for k in 0..l {
        let input = if k == 0 { e + h } else { h };
        let raw = raw_gru(ck, "dec.tick_rnn", &format!("l{k}"), input, h)?;
        let dir = gru_dir(raw, input, h, k > 0, weights);
        if k == 0 {
            for tok in 0..v {
                token_table.extend(project(raw.0, g, input, 0, &demb[tok * e..(tok + 1) * e]));
            }
            start_gi = project(raw.0, g, input, 0, start);
            let w = Packed::new(raw.0, g, h, e, input, weights);
            context = Some(Dense {
                b: dir.b_i.clone(),
                w,
            });
        }
        tick_layers.push(dir);
    }
    let context =
        context.ok_or_else(|| InferError::Checkpoint("config has no GRU layers".into()))?;
    Ok(DecoderWeights {
        z_to_beat_hidden: dense(ck, "dec.z_to_beat_hidden", zd, l * h, weights)?,
        beat_gi0,
        beat_layers,
        beat_to_tick_hidden: dense(ck, "dec.beat_to_tick_hidden", h, l * h, weights)?,
        beat_to_tick_input: dense(ck, "dec.beat_to_tick_input", h, h, weights)?,
        token_table,
        start_gi,
        context,
        tick_layers,
        output: dense(ck, "dec.output", h, v, weights)?,
    })
}

impl Scratch {
    /// Buffers for one encode or decode of a model of `cfg` (allocated once, at load).
    fn new(cfg: &MeasureVaeConfig, dec: &DecoderWeights) -> Self {
        let (h, l, zd) = (cfg.hidden, cfg.layers, cfg.latent);
        let g = 3 * h;
        let state = 2 * l * h;
        let gp = round16(g);
        let steps = TICKS_PER_MEASURE.max(BEATS_PER_MEASURE);
        Scratch {
            h: vec![0.0; l * h],
            gi: vec![0.0; gp],
            gh: vec![0.0; gp],
            seq: [vec![0.0; steps * 2 * h], vec![0.0; steps * 2 * h]],
            gi_all: [vec![0.0; steps * gp], vec![0.0; steps * gp]],
            dir_h: [vec![0.0; h], vec![0.0; h]],
            state: vec![0.0; round16(state)],
            head: vec![0.0; round16(cfg.head_hidden)],
            head_out: vec![0.0; round16(zd)],
            beat_h0: vec![0.0; dec.z_to_beat_hidden.padded()],
            tick_h0: vec![0.0; BEATS_PER_MEASURE * dec.beat_to_tick_hidden.padded()],
            context: vec![0.0; BEATS_PER_MEASURE * dec.beat_to_tick_input.padded()],
            context_gi: vec![0.0; BEATS_PER_MEASURE * gp],
            logits: vec![0.0; dec.output.padded()],
        }
    }
}

impl Lockstep {
    /// Buffers for decoding the beats in lockstep (allocated once, at load).
    fn new(cfg: &MeasureVaeConfig, dec: &DecoderWeights) -> Self {
        let (h, l) = (cfg.hidden, cfg.layers);
        let gp = round16(3 * h);
        let beats = BEATS_PER_MEASURE;
        Lockstep {
            h: vec![0.0; beats * l * h],
            gi: vec![0.0; beats * gp],
            gh: vec![0.0; beats * gp],
            logits: vec![0.0; beats * dec.output.padded()],
            streams: [0; BEATS_PER_MEASURE],
            prev: [0; BEATS_PER_MEASURE],
            guess: [0; BEATS_PER_MEASURE],
        }
    }
}

/// (input of layer k, output of layer k) from a ping-pong pair.
#[inline(always)]
fn split_pair(pair: &mut [Vec<f32>; 2], k_parity: usize) -> (&[f32], &mut [f32]) {
    let [a, b] = pair;
    if k_parity == 0 {
        (b, a)
    } else {
        (a, b)
    }
}

/// Where the encoder writes the log-std, if anywhere.
type LogStd<'a> = Option<&'a mut [f32]>;

/// Where a decoder writes the logits of every tick, if anywhere.
type Logits<'a> = Option<&'a mut [f32]>;

/// Which decoder runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One beat after the other.
    Plain,
    /// Beats (and codes) side by side.
    Lockstep,
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), InferError> {
    if expected == got {
        Ok(())
    } else {
        Err(InferError::Length {
            what,
            expected,
            got,
        })
    }
}

#[cfg(test)]
mod tests;
