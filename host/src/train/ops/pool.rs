//! Pooling on NCHW maps: 2x2 max pool (stride 2, floor), optionally with
//! the ReLU that follows it fused in, and 3x3 average pool (stride 1, zero
//! padding 1, always divided by 9 as PyTorch's `count_include_pad`). Both
//! work plane by plane across rayon's threads.

use super::buffers::{put, read, take, tensor_from};
use dfdx::prelude::*;
use rayon::prelude::*;

/// 2x2 max pool, stride 2; an odd last row or column is dropped (floor), so
/// `HO = H / 2` and `WO = W / 2`, checked by a const assertion. The
/// gradient goes to the first maximum in row-major order, as in PyTorch
/// (NaN inputs are not propagated).
pub fn maxpool2d<
    const B: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, C, H, W>, f32, Cpu, T>,
) -> Tensor<Rank4<B, C, HO, WO>, f32, Cpu, T> {
    maxpool::<B, C, H, W, HO, WO, false, T>(x)
}

/// `relu(maxpool2d(x))` in one pass each way: the maximum clamped at zero,
/// its gradient passed on only where it is positive (dfdx's ReLU
/// derivative, 0 at 0).
pub fn maxpool2d_relu<
    const B: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, C, H, W>, f32, Cpu, T>,
) -> Tensor<Rank4<B, C, HO, WO>, f32, Cpu, T> {
    maxpool::<B, C, H, W, HO, WO, true, T>(x)
}

/// Marks an output in `arg` whose gradient goes nowhere (a maximum the
/// ReLU clamped).
const NO_INPUT: u8 = 4;

fn maxpool<
    const B: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
    const RELU: bool,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, C, H, W>, f32, Cpu, T>,
) -> Tensor<Rank4<B, C, HO, WO>, f32, Cpu, T> {
    const {
        assert!(H >= 2 && W >= 2, "2x2 max pool needs at least 2x2 input");
        assert!(
            HO == H / 2 && WO == W / 2,
            "2x2 max pool output must be H/2 x W/2"
        );
    }
    let (x, mut tape) = x.split_tape();
    let xs = read(&x);
    let dims = Planes { h: H, w: W };
    let mut arg = vec![0u8; B * C * HO * WO];
    let out = tensor_from::<Rank4<B, C, HO, WO>>(x.device(), |out| {
        max_forward::<RELU>(dims, &xs, out, &mut arg);
    });
    drop(xs);
    if T::OWNS_TAPE {
        let (xg, og) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gout = take(grads.get_or_alloc_mut(&og))?;
            let mut gx = take(grads.get_or_alloc_mut(&xg))?;
            max_backward::<RELU>(dims, &gout, &arg, &mut gx);
            put(grads.get_or_alloc_mut(&xg), gx)?;
            put(grads.get_or_alloc_mut(&og), gout)
        });
    }
    out.put_tape(tape)
}

/// The sides of the planes a 2x2 max pool takes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planes {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

/// The 2x2 max pool (then the ReLU when `RELU`) of every `h x w` plane of
/// `xs` into `out`, with the position of each window's winner (or
/// `NO_INPUT`) in `arg`: all that [`max_backward`] needs.
pub(crate) fn max_forward<const RELU: bool>(
    p: Planes,
    xs: &[f32],
    out: &mut [f32],
    arg: &mut [u8],
) {
    let (plane, pooled) = (p.h * p.w, (p.h / 2) * (p.w / 2));
    out.par_chunks_mut(pooled)
        .zip(arg.par_chunks_mut(pooled))
        .zip(xs.par_chunks(plane))
        .for_each(|((o, a), x)| max_forward_planes::<RELU>(p, x, o, a));
}

/// [`max_forward`] on the calling thread.
pub(crate) fn max_forward_planes<const RELU: bool>(
    p: Planes,
    xs: &[f32],
    out: &mut [f32],
    arg: &mut [u8],
) {
    let (h, w, ho, wo) = (p.h, p.w, p.h / 2, p.w / 2);
    for ((o, a), plane) in out
        .chunks_exact_mut(ho * wo)
        .zip(arg.chunks_exact_mut(ho * wo))
        .zip(xs.chunks_exact(h * w))
    {
        for ((i, orow), arow) in o
            .chunks_exact_mut(wo)
            .enumerate()
            .zip(a.chunks_exact_mut(wo))
        {
            let (r0, r1) = (
                &plane[2 * i * w..][..2 * wo],
                &plane[(2 * i + 1) * w..][..2 * wo],
            );
            for (((v, a), p0), p1) in orow
                .iter_mut()
                .zip(arow)
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
            {
                let (m, at) = max4([p0[0], p0[1], p1[0], p1[1]]);
                (*v, *a) = if !RELU || m > 0.0 {
                    (m, at)
                } else {
                    (0.0, NO_INPUT)
                };
            }
        }
    }
}

/// The adjoint of [`max_forward`]: adds each output's gradient onto the
/// input that won its window, in `gx`.
pub(crate) fn max_backward<const RELU: bool>(p: Planes, gout: &[f32], arg: &[u8], gx: &mut [f32]) {
    let (plane, pooled) = (p.h * p.w, (p.h / 2) * (p.w / 2));
    gx.par_chunks_mut(plane)
        .zip(gout.par_chunks(pooled))
        .zip(arg.par_chunks(pooled))
        .for_each(|((gx, g), a)| max_backward_planes::<RELU>(p, g, a, gx));
}

/// [`max_backward`] on the calling thread.
pub(crate) fn max_backward_planes<const RELU: bool>(
    p: Planes,
    gout: &[f32],
    arg: &[u8],
    gx: &mut [f32],
) {
    let (w, wo) = (p.w, p.w / 2);
    let pooled = (p.h / 2) * wo;
    for ((gx, g), a) in gx
        .chunks_exact_mut(p.h * p.w)
        .zip(gout.chunks_exact(pooled))
        .zip(arg.chunks_exact(pooled))
    {
        for (idx, (&g, &a)) in g.iter().zip(a).enumerate() {
            if RELU && a == NO_INPUT {
                continue;
            }
            let (i, j) = (idx / wo, idx % wo);
            gx[(2 * i + (a as usize >> 1)) * w + 2 * j + (a as usize & 1)] += g;
        }
    }
}

/// The maximum of a 2x2 window in row-major order and the position of its
/// first occurrence. Branch-free: which input wins is random, and
/// mispredicted branches cost more than the comparisons.
#[inline(always)]
fn max4(v: [f32; 4]) -> (f32, u8) {
    let m = v[0].max(v[1]).max(v[2].max(v[3]));
    let (n0, n1, n2) = ((v[0] != m) as u8, (v[1] != m) as u8, (v[2] != m) as u8);
    (m, n0 * (1 + n1 * (1 + n2)))
}

/// 3x3 average pool, stride 1, zero padding 1, always divided by 9 (the
/// padding counts, PyTorch's default `count_include_pad`). Keeps the shape.
pub fn avgpool3x3<
    const B: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, C, H, W>, f32, Cpu, T>,
) -> Tensor<Rank4<B, C, H, W>, f32, Cpu, T> {
    let (x, mut tape) = x.split_tape();
    let xs = read(&x);
    let out = tensor_from::<Rank4<B, C, H, W>>(x.device(), |out| {
        out.par_chunks_mut(PLANES * H * W)
            .zip(xs.par_chunks(PLANES * H * W))
            .for_each(|(o, x)| box3_add(x, o, H, W));
    });
    drop(xs);
    if T::OWNS_TAPE {
        let (xg, og) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gout = take(grads.get_or_alloc_mut(&og))?;
            let mut gx = take(grads.get_or_alloc_mut(&xg))?;
            // The zero-padded 3x3 box is symmetric: its adjoint is itself.
            gx.par_chunks_mut(PLANES * H * W)
                .zip(gout.par_chunks(PLANES * H * W))
                .for_each(|(gx, g)| box3_add(g, gx, H, W));
            put(grads.get_or_alloc_mut(&xg), gx)?;
            put(grads.get_or_alloc_mut(&og), gout)
        });
    }
    out.put_tape(tape)
}

/// Planes per rayon task of the average pool: enough to amortise the
/// task and its row-sum buffer.
const PLANES: usize = 16;

/// `dst += box3(src) / 9` on each `h x w` plane, zero outside: a
/// horizontal 3-sum into `rows`, then a vertical one.
fn box3_add(src: &[f32], dst: &mut [f32], h: usize, w: usize) {
    let mut rows = vec![0.0; h * w];
    for (s, r) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(h * w)) {
        for (sr, rr) in s.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
            for j in 0..w {
                let left = if j > 0 { sr[j - 1] } else { 0.0 };
                let right = if j + 1 < w { sr[j + 1] } else { 0.0 };
                rr[j] = left + sr[j] + right;
            }
        }
        for i in 0..h {
            let mid = &rows[i * w..][..w];
            let out = &mut r[i * w..][..w];
            out.iter_mut().zip(mid).for_each(|(o, m)| *o += m / 9.0);
            if i > 0 {
                out.iter_mut()
                    .zip(&rows[(i - 1) * w..][..w])
                    .for_each(|(o, m)| *o += m / 9.0);
            }
            if i + 1 < h {
                out.iter_mut()
                    .zip(&rows[(i + 1) * w..][..w])
                    .for_each(|(o, m)| *o += m / 9.0);
            }
        }
    }
}
