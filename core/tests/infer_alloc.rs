//! `InferModel::decode` (lockstep and plain) and `encode` allocate nothing after construction (a counting global
//! allocator watches this thread). Runs with and without the `train` feature.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use arvae_core::checkpoint::Checkpoint;
use arvae_core::infer::steer::{steer, SteerTarget};
use arvae_core::infer::{InferModel, Kernel, Weights};
use arvae_core::music::{Attribute, Measure};
use arvae_core::music_model::MeasureVaeConfig;

struct Counting;

thread_local! {
    static COUNT: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with` so allocations during thread teardown are fine.
    let _ = COUNT.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and frees) made on this thread while running `f`.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCS.with(|a| a.set(0));
    COUNT.with(|c| c.set(true));
    f();
    COUNT.with(|c| c.set(false));
    ALLOCS.with(|a| a.get())
}

#[test]
fn decode_and_encode_do_not_allocate() {
    // The counter works.
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);

    for cfg in [
        MeasureVaeConfig::default(),
        MeasureVaeConfig {
            layers: 3,
            logit_relu: true,
            ..Default::default()
        },
    ] {
        let ck = Checkpoint::untrained(&cfg, 7);
        let variants = Kernel::ALL
            .into_iter()
            .filter(|k| k.is_supported())
            .flat_map(|k| [(k, Weights::F32), (k, Weights::F16)]);
        for (kernel, weights) in variants {
            let mut model = InferModel::with_options(&ck, kernel, weights).unwrap();
            let mut out = Measure::rest();
            let mut logits = vec![0.0f32; 24 * 132];
            let (mut mean, mut log_std) = (vec![0.0f32; 32], vec![0.0f32; 32]);
            let zs: Vec<Vec<f32>> = (0..20)
                .map(|i| {
                    (0..32)
                        .map(|j| ((i * 32 + j) as f32 * 0.37).sin() * 2.0)
                        .collect()
                })
                .collect();
            let targets = Attribute::ALL.map(|a| SteerTarget {
                attribute: a,
                dim: a.index(),
                target: 0.3,
                scale: 0.5,
                step: 3.0,
            });
            // Warm-up.
            model.decode(&zs[0], &mut out).unwrap();
            model.encode(&out, &mut mean, &mut log_std).unwrap();
            let n = allocations(|| {
                for z in &zs {
                    model.decode(z, &mut out).unwrap();
                    model
                        .decode_with_logits(z, &mut out, Some(&mut logits))
                        .unwrap();
                    model.decode_plain(z, &mut out, Some(&mut logits)).unwrap();
                    model.encode(&out, &mut mean, &mut log_std).unwrap();
                    model.encode_mean(&out, &mut mean).unwrap();
                    // Target matching (the plugin's worker) decodes into stack measures.
                    let mut zz = [0f32; 32];
                    zz.copy_from_slice(z);
                    steer(&mut model, &mut zz, &targets, 2, &mut out).unwrap();
                    // Errors are refused without allocating too.
                    assert!(model.decode(&z[..5], &mut out).is_err());
                }
            });
            assert_eq!(n, 0, "{kernel:?} {weights:?} allocated {n} times");
            assert!(mean.iter().chain(&log_std).all(|x| x.is_finite()));
        }
    }
}
