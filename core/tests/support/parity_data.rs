//! Test data shared by the engines' parity tests: the CPU one (core/src/native/tests.rs,
//! native against candle) and the GPU one (core/tests/cuda_parity.rs, candle on CUDA against
//! native). Only `rand` here, so both can include this file by path.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Moves every value of every tensor by U(-0.05, 0.05) (seed + 100), so that learned inputs
/// and biases are not zero and every path carries gradient.
pub fn perturbed(
    mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    seed: u64,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    for (_, v) in tensors.values_mut() {
        for x in v.iter_mut() {
            *x += rng.gen_range(-0.05f32..0.05);
        }
    }
    tensors
}

/// `b` measures of realistic structure: mostly HOLD, some notes, some rests; attributes
/// (4 per measure) with ties.
pub fn batch(b: usize, seed: u64) -> (Vec<u32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tokens: Vec<u32> = (0..b * 24)
        .map(|_| match rng.gen_range(0..10) {
            0..=4 => 129,
            5 => 128,
            _ => rng.gen_range(55..85),
        })
        .collect();
    let attrs: Vec<f32> = (0..b * 4)
        .map(|_| (rng.gen_range(0..5) as f32) / 4.0)
        .collect();
    (tokens, attrs)
}
