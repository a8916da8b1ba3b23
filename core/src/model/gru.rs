//! A multi-layer, optionally bidirectional GRU with PyTorch's math and parameter names.
//!
//! PyTorch's cell, gates in the order r, z, n:
//! r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
//! n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h.
//! Parameters are stored as PyTorch stores them (`weight_ih_l{k}[_reverse]` of shape (3H, in),
//! ...). For speed, a forward pass first [`Gru::prepare`]s per-gate transposed weights once;
//! every time step then works on its own (B, H) tensors, so backward stays linear in the
//! sequence length (no per-step slicing of a (B, T, F) tensor, see the candle notes).

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, RngCore};

/// Parameters of one GRU cell (one layer, one direction), PyTorch layout.
#[derive(Clone, Debug)]
pub struct GruCell {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

impl GruCell {
    /// Loads `weight_ih_{suffix}` (3H, input), `weight_hh_{suffix}`, `bias_ih_{suffix}`,
    /// `bias_hh_{suffix}` from `vb`.
    pub fn new(vb: &VarBuilder, input: usize, hidden: usize, suffix: &str) -> Result<Self> {
        Ok(GruCell {
            w_ih: vb.get((3 * hidden, input), &format!("weight_ih_{suffix}"))?,
            w_hh: vb.get((3 * hidden, hidden), &format!("weight_hh_{suffix}"))?,
            b_ih: vb.get(3 * hidden, &format!("bias_ih_{suffix}"))?,
            b_hh: vb.get(3 * hidden, &format!("bias_hh_{suffix}"))?,
            hidden,
        })
    }

    /// A cell from explicit tensors (for tests and tools).
    pub fn from_tensors(w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Result<Self> {
        let hidden = w_hh.dim(1)?;
        Ok(GruCell {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            hidden,
        })
    }

    /// Per-gate transposed weights and folded biases for one forward pass.
    pub fn prepare(&self) -> Result<PreparedCell> {
        let h = self.hidden;
        let gate = |t: &Tensor, g: usize| t.narrow(0, g * h, h);
        let w_i = [0, 1, 2].map(|g| gate(&self.w_ih, g).and_then(|w| w.t()?.contiguous()));
        let w_h = [0, 1, 2].map(|g| gate(&self.w_hh, g).and_then(|w| w.t()?.contiguous()));
        let [w_i0, w_i1, w_i2] = w_i;
        let [w_h0, w_h1, w_h2] = w_h;
        // The r and z gates only ever see b_i + b_h; n keeps b_hn inside r ⊙ (...).
        let b_r = (gate(&self.b_ih, 0)? + gate(&self.b_hh, 0)?)?;
        let b_z = (gate(&self.b_ih, 1)? + gate(&self.b_hh, 1)?)?;
        let b_n = gate(&self.b_ih, 2)?;
        Ok(PreparedCell {
            w_i: [w_i0?, w_i1?, w_i2?],
            w_h: [w_h0?, w_h1?, w_h2?],
            b_i: [b_r, b_z, b_n],
            b_hn: gate(&self.b_hh, 2)?,
        })
    }
}

/// The three gate pre-activations (r, z, n) coming from the input side, biases included;
/// each (B, H), or (1, H) when the same for the whole batch.
#[derive(Clone, Debug)]
pub struct GateInputs(pub [Tensor; 3]);

/// One cell's weights split per gate, made once per forward pass and shared by all its steps.
#[derive(Clone, Debug)]
pub struct PreparedCell {
    /// Input weights per gate (r, z, n), transposed to (input, H).
    pub w_i: [Tensor; 3],
    /// Hidden weights per gate, transposed to (H, H).
    pub w_h: [Tensor; 3],
    /// Input-side bias per gate, with the hidden-side r and z biases folded in, (H).
    pub b_i: [Tensor; 3],
    /// Hidden-side bias of the n gate, (H).
    pub b_hn: Tensor,
}

impl PreparedCell {
    /// `x · W_i[g]` for the input columns `start..start + x.dim(1)`, without bias: use it to
    /// project the parts of a concatenated input separately.
    pub fn project_part(&self, x: &Tensor, start: usize) -> Result<[Tensor; 3]> {
        let n = x.dim(1)?;
        let full = self.w_i[0].dim(0)? == n && start == 0;
        let p = |g: usize| -> Result<Tensor> {
            if full {
                x.matmul(&self.w_i[g])
            } else {
                x.matmul(&self.w_i[g].narrow(0, start, n)?)
            }
        };
        Ok([p(0)?, p(1)?, p(2)?])
    }

    /// Adds the input-side biases to projected parts.
    pub fn with_bias(&self, parts: [Tensor; 3]) -> Result<GateInputs> {
        let [a, b, c] = parts;
        Ok(GateInputs([
            a.broadcast_add(&self.b_i[0])?,
            b.broadcast_add(&self.b_i[1])?,
            c.broadcast_add(&self.b_i[2])?,
        ]))
    }

    /// Gate inputs for a whole (B, input) input.
    pub fn project(&self, x: &Tensor) -> Result<GateInputs> {
        self.with_bias(self.project_part(x, 0)?)
    }

    /// One step: the new hidden state (B, H) from gate inputs and the previous state (B, H).
    pub fn step(&self, gi: &GateInputs, h: &Tensor) -> Result<Tensor> {
        let r = candle_nn::ops::sigmoid(&h.matmul(&self.w_h[0])?.broadcast_add(&gi.0[0])?)?;
        let z = candle_nn::ops::sigmoid(&h.matmul(&self.w_h[1])?.broadcast_add(&gi.0[1])?)?;
        let hn = h.matmul(&self.w_h[2])?.broadcast_add(&self.b_hn)?;
        let n = (r * hn)?.broadcast_add(&gi.0[2])?.tanh()?;
        // (1 - z) n + z h = n + z (h - n)
        &n + (z * (h - &n)?)?
    }
}

/// Reborrows an optional RNG for one call (an `Option<&mut dyn _>` does not coerce by itself).
pub(crate) fn reborrow<'b>(rng: &'b mut Option<&mut dyn RngCore>) -> Option<&'b mut dyn RngCore> {
    match rng {
        Some(r) => Some(&mut **r),
        None => None,
    }
}

/// Draws an inverted-dropout mask (0 or 1/(1-p)) of `shape` from `rng`, on `device`.
pub fn dropout_mask(
    rng: &mut dyn RngCore,
    p: f32,
    shape: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let keep = 1.0 / (1.0 - p);
    let data: Vec<f32> = (0..n)
        .map(|_| if rng.gen::<f32>() >= p { keep } else { 0.0 })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu)?.to_device(device)
}

/// A GRU stack: `layers` layers, one or two directions, dropout between layers in training.
#[derive(Clone, Debug)]
pub struct Gru {
    /// Cells by layer, then direction (forward, reverse).
    cells: Vec<Vec<GruCell>>,
    hidden: usize,
    dropout: f32,
}

impl Gru {
    /// Loads a GRU stack with PyTorch parameter names from `vb`.
    pub fn new(
        vb: VarBuilder,
        input: usize,
        hidden: usize,
        layers: usize,
        bidirectional: bool,
        dropout: f32,
    ) -> Result<Self> {
        let dirs: &[&str] = if bidirectional {
            &["", "_reverse"]
        } else {
            &[""]
        };
        let mut cells = Vec::with_capacity(layers);
        for k in 0..layers {
            let in_k = if k == 0 { input } else { hidden * dirs.len() };
            let layer = dirs
                .iter()
                .map(|d| GruCell::new(&vb, in_k, hidden, &format!("l{k}{d}")))
                .collect::<Result<Vec<_>>>()?;
            cells.push(layer);
        }
        Ok(Gru {
            cells,
            hidden,
            dropout,
        })
    }

    /// Splits every cell's weights per gate for one forward pass.
    pub fn prepare(&self) -> Result<PreparedGru> {
        let cells = self
            .cells
            .iter()
            .map(|l| l.iter().map(GruCell::prepare).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        Ok(PreparedGru {
            cells,
            hidden: self.hidden,
            dropout: self.dropout,
        })
    }
}

/// A GRU stack ready to run (see [`Gru::prepare`]).
#[derive(Clone, Debug)]
pub struct PreparedGru {
    /// Prepared cells by layer, then direction.
    pub cells: Vec<Vec<PreparedCell>>,
    hidden: usize,
    dropout: f32,
}

impl PreparedGru {
    fn directions(&self) -> usize {
        self.cells[0].len()
    }

    /// Runs the stack over a sequence.
    ///
    /// `gi0[d][t]` are the gate inputs of layer 0, direction `d`, at time `t` (project them with
    /// `cells[0][d]`); `h0[k * dirs + d]` the initial states (zeros if `None`). With
    /// `dropout_rng` the pass trains: inputs of layers above 0 get dropout.
    /// Returns the top layer's outputs `[d][t]` (in time order for both directions) and the
    /// final states `[k * dirs + d]` (PyTorch's `h_n` order).
    pub fn run(
        &self,
        gi0: Vec<Vec<GateInputs>>,
        h0: Option<Vec<Tensor>>,
        mut dropout_rng: Option<&mut dyn RngCore>,
    ) -> Result<(Vec<Vec<Tensor>>, Vec<Tensor>)> {
        let dirs = self.directions();
        let steps = gi0[0].len();
        let mut gi = gi0;
        let mut finals = Vec::with_capacity(self.cells.len() * dirs);
        let mut outputs: Vec<Vec<Tensor>> = Vec::new();
        for (k, layer) in self.cells.iter().enumerate() {
            outputs.clear();
            for (d, cell) in layer.iter().enumerate() {
                let mut h = match &h0 {
                    Some(h0) => h0[k * dirs + d].clone(),
                    None => {
                        let like = &gi[d][0].0[0];
                        Tensor::zeros((like.dim(0)?, self.hidden), like.dtype(), like.device())?
                    }
                };
                let mut out = vec![None; steps];
                let order: Box<dyn Iterator<Item = usize>> = if d == 0 {
                    Box::new(0..steps)
                } else {
                    Box::new((0..steps).rev())
                };
                for t in order {
                    h = cell.step(&gi[d][t], &h)?;
                    out[t] = Some(h.clone());
                }
                finals.push(h);
                outputs.push(
                    out.into_iter()
                        .map(|o| o.expect("every step ran"))
                        .collect(),
                );
            }
            if k + 1 == self.cells.len() {
                break;
            }
            // Input of the next layer: both directions side by side, with dropout in training.
            let mut xs = (0..steps)
                .map(|t| {
                    if dirs == 1 {
                        Ok(outputs[0][t].clone())
                    } else {
                        Tensor::cat(&[&outputs[0][t], &outputs[1][t]], 1)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(rng) = reborrow(&mut dropout_rng) {
                if self.dropout > 0.0 {
                    let (b, f) = xs[0].dims2()?;
                    let mask = dropout_mask(rng, self.dropout, &[steps, b, f], xs[0].device())?
                        .to_dtype(xs[0].dtype())?;
                    for (t, x) in xs.iter_mut().enumerate() {
                        *x = x.mul(&mask.get(t)?)?;
                    }
                }
            }
            gi = self.cells[k + 1]
                .iter()
                .map(|cell| {
                    xs.iter()
                        .map(|x| cell.project(x))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
        }
        Ok((outputs, finals))
    }

    /// One time step of a one-direction stack: new states per layer from the layer-0 gate
    /// inputs and the previous states `h[k]`. The output is the last state.
    pub fn step(
        &self,
        gi0: &GateInputs,
        h: &[Tensor],
        mut dropout_rng: Option<&mut dyn RngCore>,
    ) -> Result<Vec<Tensor>> {
        let mut out: Vec<Tensor> = Vec::with_capacity(h.len());
        for (k, layer) in self.cells.iter().enumerate() {
            let cell = &layer[0];
            let new = if k == 0 {
                cell.step(gi0, &h[0])?
            } else {
                let mut x = out[k - 1].clone();
                if let Some(rng) = reborrow(&mut dropout_rng) {
                    if self.dropout > 0.0 {
                        let mask = dropout_mask(rng, self.dropout, x.dims(), x.device())?
                            .to_dtype(x.dtype())?;
                        x = x.mul(&mask)?;
                    }
                }
                cell.step(&cell.project(&x)?, &h[k])?
            };
            out.push(new);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};
    use rand::SeedableRng;

    /// The largest |a - b| over all entries of two f64 tensors.
    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    fn randn(rng: &mut impl Rng, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// PyTorch's GRU cell written out with loops over the (3H, in) layout.
    fn reference_step(
        w_ih: &[f64],
        w_hh: &[f64],
        b_ih: &[f64],
        b_hh: &[f64],
        x: &[f64],
        h: &[f64],
    ) -> Vec<f64> {
        let (hs, ins) = (h.len(), x.len());
        let gi = |row: usize| (0..ins).map(|j| w_ih[row * ins + j] * x[j]).sum::<f64>() + b_ih[row];
        let gh = |row: usize| (0..hs).map(|j| w_hh[row * hs + j] * h[j]).sum::<f64>() + b_hh[row];
        (0..hs)
            .map(|i| {
                let r = sigmoid(gi(i) + gh(i));
                let z = sigmoid(gi(hs + i) + gh(hs + i));
                let n = (gi(2 * hs + i) + r * gh(2 * hs + i)).tanh();
                (1.0 - z) * n + z * h[i]
            })
            .collect()
    }

    #[test]
    fn step_matches_pytorch_math_and_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (b, ins, hs) = (3, 5, 4);
        let vars: Vec<Var> = [
            vec![3 * hs, ins],
            vec![3 * hs, hs],
            vec![3 * hs],
            vec![3 * hs],
            vec![b, ins],
            vec![b, hs],
        ]
        .iter()
        .map(|s| Var::from_tensor(&randn(&mut rng, s)).unwrap())
        .collect();
        let weights = randn(&mut rng, &[b, hs]);
        let loss_of = |v: &[Tensor]| -> Tensor {
            let cell =
                GruCell::from_tensors(v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone())
                    .unwrap();
            let p = cell.prepare().unwrap();
            let h = p.step(&p.project(&v[4]).unwrap(), &v[5]).unwrap();
            (h * &weights).unwrap().sum_all().unwrap()
        };
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();

        // Forward against the written-out PyTorch formula.
        let cell = GruCell::from_tensors(
            tensors[0].clone(),
            tensors[1].clone(),
            tensors[2].clone(),
            tensors[3].clone(),
        )
        .unwrap();
        let p = cell.prepare().unwrap();
        let got = p
            .step(&p.project(&tensors[4]).unwrap(), &tensors[5])
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let (xs, hs0) = (
            tensors[4].to_vec2::<f64>().unwrap(),
            tensors[5].to_vec2::<f64>().unwrap(),
        );
        for i in 0..b {
            let want = reference_step(
                &flat(&tensors[0]),
                &flat(&tensors[1]),
                &flat(&tensors[2]),
                &flat(&tensors[3]),
                &xs[i],
                &hs0[i],
            );
            for (g, w) in got[i].iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{g} vs {w}");
            }
        }

        // Gradients against central differences, every entry of every input.
        let grads = loss_of(&tensors).backward().unwrap();
        let eps = 1e-6;
        let mut worst: f64 = 0.0;
        for (vi, var) in vars.iter().enumerate() {
            let g = flat(grads.get(var.as_tensor()).unwrap());
            let base = flat(var.as_tensor());
            for i in 0..base.len() {
                let eval = |delta: f64| {
                    let mut v = base.clone();
                    v[i] += delta;
                    let mut ts = tensors.clone();
                    ts[vi] = Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
                    loss_of(&ts).to_scalar::<f64>().unwrap()
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                let rel = (fd - g[i]).abs() / fd.abs().max(g[i].abs()).max(1e-3);
                worst = worst.max(rel);
            }
        }
        println!("GRU step: worst relative gradient error {worst:e}");
        assert!(worst < 1e-6, "worst relative gradient error {worst}");
    }

    #[test]
    fn bidirectional_run_matches_stepwise_cells() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let gru = Gru::new(vb, 3, 4, 2, true, 0.5).unwrap();
        for v in varmap.all_vars() {
            v.set(&randn(&mut rng, v.dims())).unwrap();
        }
        let p = gru.prepare().unwrap();
        let xs: Vec<Tensor> = (0..5).map(|_| randn(&mut rng, &[2, 3])).collect();
        let gi0 = (0..2)
            .map(|d| {
                xs.iter()
                    .map(|x| p.cells[0][d].project(x).unwrap())
                    .collect()
            })
            .collect();
        let (outs, finals) = p.run(gi0, None, None).unwrap();
        // Reverse direction of layer 0 by hand: its final state is after consuming x_0.
        let mut h = Tensor::zeros((2, 4), DType::F64, &Device::Cpu).unwrap();
        for x in xs.iter().rev() {
            h = p.cells[0][1]
                .step(&p.cells[0][1].project(x).unwrap(), &h)
                .unwrap();
        }
        let diff = max_abs_diff(&finals[1], &h);
        assert!(diff < 1e-12);
        assert_eq!(finals.len(), 4);
        assert_eq!(outs.len(), 2);
        // Top-layer forward output at the last step is l1-fwd's final state.
        let diff = max_abs_diff(&outs[0][4], &finals[2]);
        assert_eq!(diff, 0.0);
        // Top-layer reverse output at step 0 is l1-bwd's final state.
        let diff = max_abs_diff(&outs[1][0], &finals[3]);
        assert_eq!(diff, 0.0);
    }
}
