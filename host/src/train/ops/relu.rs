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
            .for_each(|(o, m)| clamp(o, m));
        Mask(mask)
    }

    /// A mask recorded piece by piece with [`clamp`]: `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Self {
        Mask(vec![0u8; len])
    }

    /// The recorded bytes, 1 where the ReLU passed.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The recorded bytes, to be written piece by piece with [`clamp`].
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
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

/// Clamps `o` at zero in place, recording in `m` (as long) what passed.
pub(crate) fn clamp(o: &mut [f32], m: &mut [u8]) {
    // Indexed over equal lengths, so that the loop vectorises.
    let m = &mut m[..o.len()];
    for i in 0..o.len() {
        m[i] = (o[i] > 0.0) as u8;
        o[i] = o[i].max(0.0);
    }
}

/// `d += g` where `m` says the ReLU passed.
pub(crate) fn add_passed(g: &[f32], m: &[u8], d: &mut [f32]) {
    let n = d.len();
    let (g, m) = (&g[..n], &m[..n]);
    for i in 0..n {
        d[i] += g[i] * m[i] as f32;
    }
}

/// `g = 0 + g * m` in place: what [`add_passed`] would leave in zeros
/// (`+0.0` where [`Mask::mask_gradient`] leaves `-0.0` for a negative `g`).
pub(crate) fn passed_onto_zero(g: &mut [f32], m: &[u8]) {
    let m = &m[..g.len()];
    for i in 0..g.len() {
        g[i] = 0.0 + g[i] * m[i] as f32;
    }
}
