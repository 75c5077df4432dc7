//! Inputs for the op tests and the benchmarks: seeded random values, and a
//! loss whose gradient is known exactly.

use super::buffers::{put, read, take, tensor_from};
use dfdx::prelude::*;
use shared::testutil::Rng;

type Owned = OwnedTape<f32, Cpu>;

/// Uniform values in [-1, 1) from a fixed seed.
pub(crate) fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1));
    (0..n)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        .collect()
}

/// `sum(t * r)` as a tape op whose backward adds `r` (times the incoming
/// gradient) to `t`'s gradient: the tests' and benchmark's loss.
pub(crate) fn weighted_sum<S: ConstShape>(
    t: Tensor<S, f32, Cpu, Owned>,
    r: &[f32],
) -> Tensor<Rank0, f32, Cpu, Owned> {
    assert_eq!(r.len(), S::NUMEL);
    let (t, mut tape) = t.split_tape();
    let ts = read(&t);
    let dot = ts
        .iter()
        .zip(r)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum::<f64>() as f32;
    let out = tensor_from::<Rank0>(t.device(), |o| o[0] = dot);
    let (tg, og, r) = (t.ghost(), out.ghost(), r.to_vec());
    tape.add_backward_op(move |grads| {
        let gout = take(grads.get_or_alloc_mut(&og))?;
        let mut gt = take(grads.get_or_alloc_mut(&tg))?;
        gt.iter_mut().zip(&r).for_each(|(g, r)| *g += r * gout[0]);
        put(grads.get_or_alloc_mut(&tg), gt)?;
        put(grads.get_or_alloc_mut(&og), gout)
    });
    out.put_tape(tape)
}
