//! The fast model against a direct f64 transcription of MeasureVAE from the raw tensors.

use super::*;
use crate::infer::Weights;
use crate::music::token::{HOLD, REST};

type Tensors = std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Straightforward f64 MeasureVAE (PyTorch formulas, no precomputation, no folding).
struct Reference<'a> {
    t: &'a Tensors,
    cfg: MeasureVaeConfig,
}

fn selu(x: f64) -> f64 {
    1.0507009873554805
        * if x >= 0.0 {
            x
        } else {
            1.6732632423543772 * x.exp_m1()
        }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Reference<'_> {
    fn get(&self, name: &str) -> Vec<f64> {
        self.t[name].1.iter().map(|&x| x as f64).collect()
    }

    fn linear(&self, prefix: &str, x: &[f64]) -> Vec<f64> {
        let w = self.get(&format!("{prefix}.weight"));
        let b = self.get(&format!("{prefix}.bias"));
        (0..b.len())
            .map(|r| b[r] + (0..x.len()).map(|j| w[r * x.len() + j] * x[j]).sum::<f64>())
            .collect()
    }

    fn gru_step(&self, prefix: &str, suffix: &str, x: &[f64], h: &[f64]) -> Vec<f64> {
        let w_ih = self.get(&format!("{prefix}.weight_ih_{suffix}"));
        let w_hh = self.get(&format!("{prefix}.weight_hh_{suffix}"));
        let b_ih = self.get(&format!("{prefix}.bias_ih_{suffix}"));
        let b_hh = self.get(&format!("{prefix}.bias_hh_{suffix}"));
        let hs = h.len();
        let gi = |r: usize| {
            b_ih[r]
                + (0..x.len())
                    .map(|j| w_ih[r * x.len() + j] * x[j])
                    .sum::<f64>()
        };
        let gh = |r: usize| b_hh[r] + (0..hs).map(|j| w_hh[r * hs + j] * h[j]).sum::<f64>();
        (0..hs)
            .map(|i| {
                let r = sigmoid(gi(i) + gh(i));
                let z = sigmoid(gi(hs + i) + gh(hs + i));
                let n = (gi(2 * hs + i) + r * gh(2 * hs + i)).tanh();
                (1.0 - z) * n + z * h[i]
            })
            .collect()
    }

    fn encode(&self, m: &Measure) -> (Vec<f64>, Vec<f64>) {
        let (e, h, l) = (self.cfg.embedding, self.cfg.hidden, self.cfg.layers);
        let emb = self.get("enc.embedding.weight");
        let mut xs: Vec<Vec<f64>> =
            m.0.iter()
                .map(|&t| emb[t as usize * e..(t as usize + 1) * e].to_vec())
                .collect();
        let mut state = Vec::new();
        for k in 0..l {
            let mut outs = vec![Vec::new(); xs.len()];
            for (d, suffix) in [format!("l{k}"), format!("l{k}_reverse")]
                .iter()
                .enumerate()
            {
                let mut hv = vec![0.0; h];
                let order: Vec<usize> = if d == 0 {
                    (0..xs.len()).collect()
                } else {
                    (0..xs.len()).rev().collect()
                };
                for t in order {
                    hv = self.gru_step("enc.rnn", suffix, &xs[t], &hv);
                    outs[t].push(hv.clone());
                }
                state.extend(hv);
            }
            xs = outs
                .into_iter()
                .map(|o: Vec<Vec<f64>>| o.concat())
                .collect();
        }
        let head = |p: &str| {
            let hid: Vec<f64> = self
                .linear(&format!("{p}.0"), &state)
                .into_iter()
                .map(selu)
                .collect();
            self.linear(&format!("{p}.2"), &hid)
        };
        (head("enc.mean"), head("enc.log_std"))
    }

    /// Logits (24 x V) feeding `tokens[t - 1]` as the previous token at tick t.
    fn decode_forced(&self, z: &[f64], tokens: &[u8; 24]) -> Vec<Vec<f64>> {
        let (e, h) = (self.cfg.embedding, self.cfg.hidden);
        let split = |v: Vec<f64>| -> Vec<Vec<f64>> {
            v.chunks(h)
                .map(|c| c.iter().map(|&x| selu(x)).collect())
                .collect()
        };
        let mut bh = split(self.linear("dec.z_to_beat_hidden", z));
        let bin = self.get("dec.beat_input");
        let emb = self.get("dec.embedding.weight");
        let start = self.get("dec.start_input");
        let mut logits = Vec::new();
        for b in 0..4 {
            let mut x = bin.clone();
            for (k, hk) in bh.iter_mut().enumerate() {
                *hk = self.gru_step("dec.beat_rnn", &format!("l{k}"), &x, hk);
                x = hk.clone();
            }
            let mut th = split(self.linear("dec.beat_to_tick_hidden", &x));
            let ctx: Vec<f64> = self
                .linear("dec.beat_to_tick_input", &x)
                .into_iter()
                .map(selu)
                .collect();
            for tick in 0..6 {
                let t = b * 6 + tick;
                let mut inp = if t == 0 {
                    start.clone()
                } else {
                    emb[tokens[t - 1] as usize * e..(tokens[t - 1] as usize + 1) * e].to_vec()
                };
                inp.extend(&ctx);
                for (k, hk) in th.iter_mut().enumerate() {
                    *hk = self.gru_step("dec.tick_rnn", &format!("l{k}"), &inp, hk);
                    inp = hk.clone();
                }
                let mut out = self.linear("dec.output", &inp);
                if self.cfg.logit_relu {
                    out.iter_mut().for_each(|x| *x = x.max(0.0));
                }
                logits.push(out);
            }
        }
        logits
    }
}

fn small() -> MeasureVaeConfig {
    MeasureVaeConfig {
        hidden: 24,
        latent: 6,
        head_hidden: 20,
        embedding: 5,
        ..Default::default()
    }
}

fn latent(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

fn measure(seed: u64) -> Measure {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Measure(std::array::from_fn(|_| match rng.gen_range(0..4) {
        0 => REST,
        1 => HOLD,
        _ => rng.gen_range(55..85),
    }))
}

fn check_against_reference(cfg: &MeasureVaeConfig, kernel: Kernel, cases: u64) {
    let ck = Checkpoint::untrained(cfg, 11);
    let mut model = InferModel::with_kernel(&ck, kernel).unwrap();
    let r = Reference {
        t: &ck.tensors,
        cfg: cfg.clone(),
    };
    let (v, zd) = (VOCAB_SIZE, cfg.latent);
    let mut logits = vec![0.0f32; 24 * v];
    let (mut mean, mut log_std) = (vec![0.0; zd], vec![0.0; zd]);
    let mut worst = 0.0f64;
    for case in 0..cases {
        let z = latent(case, zd, 2.0);
        let mut out = Measure::rest();
        model
            .decode_with_logits(&z, &mut out, Some(&mut logits))
            .unwrap();
        let zf: Vec<f64> = z.iter().map(|&x| x as f64).collect();
        let want = r.decode_forced(&zf, &out.0);
        for t in 0..24 {
            let max = want[t].iter().cloned().fold(f64::MIN, f64::max);
            // The chosen token is the reference's maximum up to rounding.
            assert!(
                want[t][out.0[t] as usize] >= max - 1e-5,
                "{kernel:?} case {case} tick {t}"
            );
            for i in 0..v {
                worst = worst.max((logits[t * v + i] as f64 - want[t][i]).abs());
            }
        }
        let m = measure(case);
        model.encode(&m, &mut mean, &mut log_std).unwrap();
        let (wm, ws) = r.encode(&m);
        for i in 0..zd {
            worst = worst
                .max((mean[i] as f64 - wm[i]).abs())
                .max((log_std[i] as f64 - ws[i]).abs());
        }
    }
    assert!(worst < 2e-5, "{kernel:?}: worst difference {worst}");
}

#[test]
fn small_model_matches_reference_on_every_kernel() {
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
        check_against_reference(&small(), kernel, 20);
        check_against_reference(
            &MeasureVaeConfig {
                layers: 3,
                logit_relu: true,
                ..small()
            },
            kernel,
            5,
        );
        check_against_reference(
            &MeasureVaeConfig {
                layers: 1,
                hidden: 40,
                ..small()
            },
            kernel,
            5,
        );
    }
}

#[test]
fn default_model_matches_reference() {
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
        check_against_reference(&MeasureVaeConfig::default(), kernel, 2);
    }
}

#[test]
fn kernels_agree() {
    let ck = Checkpoint::untrained(&MeasureVaeConfig::default(), 3);
    let mut models: Vec<InferModel> = Kernel::ALL
        .into_iter()
        .filter(|k| k.is_supported())
        .map(|k| InferModel::with_kernel(&ck, k).unwrap())
        .collect();
    for case in 0..10 {
        let z = latent(100 + case, 32, 2.0);
        let outs: Vec<Measure> = models
            .iter_mut()
            .map(|m| {
                let mut out = Measure::rest();
                m.decode(&z, &mut out).unwrap();
                out
            })
            .collect();
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "case {case}");
    }
}

#[test]
fn bad_inputs_and_checkpoints_give_errors() {
    let cfg = small();
    let ck = Checkpoint::untrained(&cfg, 1);
    let mut model = InferModel::from_checkpoint(&ck).unwrap();
    assert_eq!(model.latent(), 6);
    let mut out = Measure::rest();
    assert_eq!(
        model.decode(&[0.0; 5], &mut out),
        Err(InferError::Length {
            what: "z",
            expected: 6,
            got: 5
        })
    );
    let mut short = vec![0.0; 10];
    assert!(matches!(
        model.decode_with_logits(&[0.0; 6], &mut out, Some(&mut short)),
        Err(InferError::Length { what: "logits", .. })
    ));
    let (mut a, mut b) = (vec![0.0; 6], vec![0.0; 7]);
    assert!(matches!(
        model.encode(&out, &mut a, &mut b),
        Err(InferError::Length {
            what: "log_std",
            ..
        })
    ));
    let mut bad = Measure::rest();
    bad.0[3] = 200;
    let mut b = vec![0.0; 6];
    assert_eq!(
        model.encode(&bad, &mut a, &mut b),
        Err(InferError::Token {
            tick: 3,
            token: 200
        })
    );

    let mut missing = ck.clone();
    missing.tensors.remove("dec.tick_rnn.weight_hh_l1");
    let e = InferModel::from_checkpoint(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dec.tick_rnn.weight_hh_l1") && e.contains("missing"),
        "{e}"
    );

    let mut shape = ck.clone();
    shape.tensors.insert(
        "dec.output.weight".into(),
        (vec![VOCAB_SIZE, 3], vec![0.0; VOCAB_SIZE * 3]),
    );
    let e = InferModel::from_checkpoint(&shape).unwrap_err().to_string();
    assert!(
        e.contains("dec.output.weight") && e.contains("shape"),
        "{e}"
    );

    let mut kind = ck.clone();
    kind.meta.model_kind = "image_vae".into();
    assert!(InferModel::from_checkpoint(&kind)
        .unwrap_err()
        .to_string()
        .contains("model kind"));

    let mut cfg_bad = ck.clone();
    cfg_bad.meta.config = serde_json::json!({"hidden": 3});
    assert!(matches!(
        InferModel::from_checkpoint(&cfg_bad),
        Err(InferError::Checkpoint(_))
    ));

    let mut nan = ck;
    nan.tensors.get_mut("enc.mean.2.bias").unwrap().1[0] = f32::NAN;
    assert!(InferModel::from_checkpoint(&nan)
        .unwrap_err()
        .to_string()
        .contains("non-finite"));
}

#[test]
fn decoding_is_deterministic_and_reuses_no_state() {
    let ck = Checkpoint::untrained(&small(), 5);
    let mut model = InferModel::from_checkpoint(&ck).unwrap();
    let z1 = latent(1, 6, 2.0);
    let z2 = latent(2, 6, 2.0);
    let (mut a, mut b, mut c) = (Measure::rest(), Measure::rest(), Measure::rest());
    model.decode(&z1, &mut a).unwrap();
    model.decode(&z2, &mut b).unwrap();
    model.decode(&z1, &mut c).unwrap();
    assert_eq!(a, c);
    let (mut m1, mut s1, mut m2, mut s2) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 6], vec![0.0; 6]);
    model.encode(&a, &mut m1, &mut s1).unwrap();
    model.encode(&b, &mut m2, &mut s2).unwrap();
    model.encode(&a, &mut m2, &mut s2).unwrap();
    assert_eq!((m1, s1), (m2, s2));
}

/// f16 weights: logits within a few 1e-3 of the f32 model's; report how often greedy tokens
/// differ (they may, where the two best logits are closer than the rounding moves them).
#[test]
fn f16_weights_stay_close_to_f32() {
    let cfg = MeasureVaeConfig::default();
    let ck = Checkpoint::untrained(&cfg, 3);
    let kernel = Kernel::detect();
    let mut exact = InferModel::with_options(&ck, kernel, Weights::F32).unwrap();
    let mut half = InferModel::with_options(&ck, kernel, Weights::F16).unwrap();
    let n = 24 * VOCAB_SIZE;
    let (mut la, mut lb) = (vec![0.0f32; n], vec![0.0f32; n]);
    let (mut a, mut b) = (Measure::rest(), Measure::rest());
    let (mut same, mut worst, cases) = (0, 0.0f32, 200);
    for case in 0..cases {
        let z = latent(1000 + case, cfg.latent, 2.5);
        exact.decode_with_logits(&z, &mut a, Some(&mut la)).unwrap();
        half.decode_with_logits(&z, &mut b, Some(&mut lb)).unwrap();
        same += u64::from(a == b);
        if a == b {
            for (x, y) in la.iter().zip(&lb) {
                worst = worst.max((x - y).abs());
            }
        }
        let (mut ma, mut sa, mut mb, mut sb) =
            (vec![0.0; 32], vec![0.0; 32], vec![0.0; 32], vec![0.0; 32]);
        exact.encode(&a, &mut ma, &mut sa).unwrap();
        half.encode(&a, &mut mb, &mut sb).unwrap();
        for i in 0..32 {
            worst = worst.max((ma[i] - mb[i]).abs()).max((sa[i] - sb[i]).abs());
        }
    }
    println!("f16 weights: {same}/{cases} measures decode identically; max difference {worst:e}");
    assert!(worst < 1e-2, "f16 weights move outputs by {worst}");
    assert!(same * 10 >= cases * 9, "only {same}/{cases} identical");
}

/// Beats that the lockstep decoder has to decode twice: those after a beat that does not end
/// in a hold.
fn reruns(m: &Measure) -> usize {
    (1..4).filter(|b| m.0[b * 6 - 1] != HOLD).count()
}

/// The lockstep decoder (beats side by side, speculating on the token that ends each beat)
/// against the plain one (beats one after the other): the same tokens and bit-identical
/// logits, both where every guess holds (the trained model) and where many fail (random
/// weights), on every kernel and weight format and with more layers and the logit ReLU.
#[test]
fn lockstep_decoding_equals_plain_decoding_bit_for_bit() {
    let trained = Checkpoint::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/bach.safetensors"
    ))
    .unwrap();
    let deep = MeasureVaeConfig {
        layers: 3,
        logit_relu: true,
        ..small()
    };
    let cases = [
        (trained, 60, 1.5f32),
        (
            Checkpoint::untrained(&MeasureVaeConfig::default(), 9),
            12,
            2.0,
        ),
        (Checkpoint::untrained(&deep, 4), 30, 2.0),
    ];
    let mut rerun_counts = [0usize; 4];
    for (ck, n, scale) in &cases {
        let zd = ck.meta.measure_vae_config().unwrap().latent;
        for kernel in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
            for weights in [Weights::F32, Weights::F16] {
                let mut model = InferModel::with_options(ck, kernel, weights).unwrap();
                let (mut la, mut lb) =
                    (vec![0.0f32; 24 * VOCAB_SIZE], vec![0.0f32; 24 * VOCAB_SIZE]);
                let (mut a, mut b, mut c) = (Measure::rest(), Measure::rest(), Measure::rest());
                for case in 0..*n {
                    let z = latent(500 + case, zd, *scale);
                    model.decode_with_logits(&z, &mut a, Some(&mut la)).unwrap();
                    model.decode_plain(&z, &mut b, Some(&mut lb)).unwrap();
                    model.decode(&z, &mut c).unwrap();
                    assert_eq!(a, b, "{kernel:?} {weights:?} case {case}");
                    assert_eq!(a, c, "{kernel:?} {weights:?} case {case}");
                    assert!(
                        la.iter().zip(&lb).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{kernel:?} {weights:?} case {case}: logits differ"
                    );
                    if kernel == Kernel::detect() && weights == Weights::F32 {
                        rerun_counts[reruns(&a)] += 1;
                    }
                }
            }
        }
    }
    // Both paths of the speculation ran: measures decoded in one round and measures with
    // one, two and three beats decoded again.
    println!("measures by beats decoded twice: {rerun_counts:?}");
    assert!(rerun_counts.iter().all(|&k| k > 0), "{rerun_counts:?}");

    let mut model = InferModel::from_checkpoint(&cases[1].0).unwrap();
    let mut out = Measure::rest();
    assert_eq!(
        model.decode_plain(&[0.0; 31], &mut out, None),
        Err(InferError::Length {
            what: "z",
            expected: 32,
            got: 31
        })
    );
    assert!(model
        .decode_plain(&[0.0; 32], &mut out, Some(&mut [0.0; 10]))
        .is_err());
}

/// The mean-only encoder (transform mode) gives `encode`'s mean bit for bit on every kernel
/// and weight format, and refuses what `encode` refuses.
#[test]
fn encoding_the_mean_only_equals_the_full_encoder() {
    let ck = Checkpoint::untrained(&MeasureVaeConfig::default(), 14);
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
        for weights in [Weights::F32, Weights::F16] {
            let mut model = InferModel::with_options(&ck, kernel, weights).unwrap();
            let (mut mean, mut log_std, mut only) = ([0f32; 32], [0f32; 32], [0f32; 32]);
            for case in 0..20 {
                let m = measure(300 + case);
                model.encode(&m, &mut mean, &mut log_std).unwrap();
                only.fill(f32::NAN);
                model.encode_mean(&m, &mut only).unwrap();
                assert!(
                    mean.iter()
                        .zip(&only)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{kernel:?} {weights:?} case {case}"
                );
            }
            assert!(model.encode_mean(&Measure::rest(), &mut [0.0; 31]).is_err());
            let mut bad = Measure::rest();
            bad.0[7] = VOCAB_SIZE as u8;
            assert_eq!(
                model.encode_mean(&bad, &mut only),
                Err(InferError::Token {
                    tick: 7,
                    token: VOCAB_SIZE as u8
                })
            );
        }
    }
}
