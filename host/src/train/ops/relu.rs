//! ReLU fused into the op that feeds it. dfdx's `relu` and `+` walk every
//! element through a strided index on one thread and allocate a fresh
//! output; the fused forms clamp on both threads right after a conv (or a
//! conv added onto a residual shortcut) writes its output, and backward
//! masks the output gradient with byte flags saved by the forward pass. As in dfdx,
//! ReLU's derivative is 1 where the output is positive and 0 elsewhere
//! (including at 0). The max pool's fused ReLU lives in `pool`, which
//! records it in its argmax instead.

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

    /// `g = 0 + g` where the ReLU passed, `0 + 0 * g` elsewhere, in place:
    /// what [`Mask::add_gradient`] would leave in a zeroed buffer (`+0.0`
    /// where [`Mask::mask_gradient`] leaves `-0.0` for a negative `g`).
    pub(crate) fn add_gradient_to_zero(&self, g: &mut [f32]) {
        g.par_chunks_mut(CHUNK)
            .zip(self.0.par_chunks(CHUNK))
            .for_each(|(g, m)| {
                let m = &m[..g.len()];
                for i in 0..g.len() {
                    g[i] = 0.0 + g[i] * m[i] as f32;
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
