//! ReLU fused into the op that feeds it. dfdx's `relu` and `+` walk every
//! element through a strided index on one thread and allocate a fresh
//! output; the fused forms clamp on both threads while (a residual sum) or
//! right after (a conv) the output is written, and backward masks the
//! output gradient with byte flags saved by the forward pass. As in dfdx,
//! ReLU's derivative is 1 where the output is positive and 0 elsewhere
//! (including at 0). The max pool's fused ReLU lives in `pool`, which
//! records it in its argmax instead.

use super::buffers::{put, read, take, tensor_from};
use dfdx::prelude::*;
use rayon::prelude::*;

/// Elements per rayon task of the elementwise passes: large enough to
/// amortise the task, small enough for both threads to get several.
const CHUNK: usize = 32 * 1024;

/// Which elements a ReLU let through (1 where its output is positive, else
/// 0), saved by the forward pass for the backward one. Bytes used as
/// factors, not `bool`s chosen between: that form vectorises.
pub(crate) struct Mask(Vec<u8>);

impl Mask {
    /// Clamps `out` at zero in place and records what passed.
    pub(crate) fn apply(out: &mut [f32]) -> Self {
        let mut mask = vec![0u8; out.len()];
        out.par_chunks_mut(CHUNK)
            .zip(mask.par_chunks_mut(CHUNK))
            .for_each(|(o, m)| {
                // Indexed over equal lengths, so that the loop vectorises.
                let m = &mut m[..o.len()];
                for i in 0..o.len() {
                    m[i] = (o[i] > 0.0) as u8;
                    o[i] = o[i].max(0.0);
                }
            });
        Mask(mask)
    }

    /// `out = max(a + b, 0)`, recording what passed.
    fn add(a: &[f32], b: &[f32], out: &mut [f32]) -> Self {
        let mut mask = vec![0u8; out.len()];
        out.par_chunks_mut(CHUNK)
            .zip(mask.par_chunks_mut(CHUNK))
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|((o, m), (a, b))| {
                let n = o.len();
                let (m, a, b) = (&mut m[..n], &a[..n], &b[..n]);
                for i in 0..n {
                    let s = a[i] + b[i];
                    m[i] = (s > 0.0) as u8;
                    o[i] = s.max(0.0);
                }
            });
        Mask(mask)
    }

    /// `dst += gout` where the ReLU passed: its gradient added on.
    pub(crate) fn add_gradient(&self, gout: &[f32], dst: &mut [f32]) {
        dst.par_chunks_mut(CHUNK)
            .zip(gout.par_chunks(CHUNK))
            .zip(self.0.par_chunks(CHUNK))
            .for_each(|((d, g), m)| {
                let n = d.len();
                let (g, m) = (&g[..n], &m[..n]);
                for i in 0..n {
                    d[i] += g[i] * m[i] as f32;
                }
            });
    }

    /// Zeroes `g` where the ReLU did not pass, in place: the output
    /// gradient becomes the gradient at the ReLU's input.
    pub(crate) fn mask_gradient(&self, g: &mut [f32]) {
        g.par_chunks_mut(CHUNK)
            .zip(self.0.par_chunks(CHUNK))
            .for_each(|(g, m)| {
                let m = &m[..g.len()];
                for i in 0..g.len() {
                    g[i] *= m[i] as f32;
                }
            });
    }
}

/// `max(a + b, 0)`: a residual block's merge, in one pass each way.
/// Gradients flow to both `a` and `b` (which may be the same tensor).
pub fn add_relu<S: ConstShape, T1, T2>(
    a: Tensor<S, f32, Cpu, T1>,
    b: Tensor<S, f32, Cpu, T2>,
) -> Tensor<S, f32, Cpu, T1>
where
    T1: Tape<f32, Cpu> + Merge<T2>,
    T2: Tape<f32, Cpu>,
{
    let ((a, ta), (b, tb)) = (a.split_tape(), b.split_tape());
    let (av, bv) = (read(&a), read(&b));
    let mut mask = None;
    let out = tensor_from::<S>(a.device(), |out| mask = Some(Mask::add(&av, &bv, out)));
    drop((av, bv));
    let mask = mask.expect("filled by tensor_from");
    let mut tape = ta.merge(tb);
    if T1::OWNS_TAPE {
        let (ag, bg, og) = (a.ghost(), b.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gout = take(grads.get_or_alloc_mut(&og))?;
            // One input at a time: `a` and `b` may share a gradient slot.
            for slot in [&ag, &bg] {
                let mut g = take(grads.get_or_alloc_mut(slot))?;
                mask.add_gradient(&gout, &mut g);
                put(grads.get_or_alloc_mut(slot), g)?;
            }
            put(grads.get_or_alloc_mut(&og), gout)
        });
    }
    out.put_tape(tape)
}
