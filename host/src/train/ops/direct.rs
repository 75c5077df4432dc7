//! A direct convolution for the forward pass (and the transposed conv that
//! gives the input gradient) on x86-64 with AVX2 and FMA: no im2col
//! matrix, no GEMM packing, no transposition of the product.
//!
//! `gemm` forms each output of a product with at most 512 terms as one
//! chain of fused multiply-adds, from zero, in the order of the inner
//! dimension; here that dimension is im2col's rows, `(ci, ky, kx)`. This
//! kernel runs the same chain, padding taps included (a multiply-add of
//! zero can still turn `-0.0` into `0.0`), so its outputs are `gemm`'s to
//! the bit and training keeps its results, which a test checks on every
//! conv of the networks. Longer patches (InceptionNet's conv2, 2,200
//! terms) are cut into blocks by `gemm` and stay with it, as does every
//! machine without FMA.
//!
//! Each sample is padded into scratch with `w + 2p` columns, and the
//! outputs are computed over that width, `8` positions to a vector: the
//! `k - 1` extra columns of each row cost some lanes (2 in 16 for a 3x3
//! on 14 columns) but every tap is then one unaligned load at a fixed
//! offset. Blocks of up to 6 output channels by 16 positions keep 12
//! accumulators in registers.

use super::conv::{store_biased, Channels};
use super::im2col::Geometry;

/// The longest chain `gemm` keeps in one piece (its smallest `kc`).
const MAX_PATCH: usize = 512;

/// Whether [`forward_run`] takes this conv on this machine. Not below
/// outputs 8 wide: InceptionNet's 4x4 maps would leave half of every
/// vector's lanes on padding, and `gemm` ran them faster.
pub(crate) fn supported(g: &Geometry) -> bool {
    g.patch() <= MAX_PATCH && g.p >= 0 && g.wo >= LANES && has_fma()
}

#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_fma() -> bool {
    false
}

/// Floats of scratch [`forward_run`] needs: the padded sample with room
/// for the last vector's overrun, and one block of channels' products.
pub(crate) fn scratch_len(g: &Geometry) -> [usize; 2] {
    let (hp, wp) = g.window();
    [g.ci * hp * wp + g.k + 2 * LANES, g.co * positions(g)]
}

const LANES: usize = 8;

/// Output positions computed per channel: `ho` rows of the padded width,
/// rounded up to whole vectors.
fn positions(g: &Geometry) -> usize {
    (g.ho * g.window().1).next_multiple_of(2 * LANES)
}

/// `out = conv(xs) + bias` (or `out += ...` when `accumulate`) into
/// channels `ch` of every sample of `xs`, exactly as the im2col + `gemm`
/// path computes it. Only for [`supported`] geometries.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_run(
    g: &Geometry,
    xs: &[f32],
    ws: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    ch: Channels,
    accumulate: bool,
    [pad, prod]: [&mut [f32]; 2],
) {
    assert!(supported(g), "direct conv on an unsupported geometry");
    let (hp, wp) = g.window();
    let (patch, pixels, q) = (g.patch(), g.pixels(), positions(g));
    assert_eq!(ws.len(), g.co * patch, "weights");
    let [pad_len, prod_len] = scratch_len(g);
    assert!(pad.len() >= pad_len && prod.len() >= prod_len, "scratch");
    // Each tap's offset in the padded sample, in im2col's row order.
    let taps: Vec<usize> = (0..g.ci)
        .flat_map(|c| (0..g.k).flat_map(move |ky| (0..g.k).map(move |kx| (c * hp + ky) * wp + kx)))
        .collect();
    let out_len = ch.total * pixels;
    pad[g.ci * hp * wp..].fill(0.0);
    for (x, out) in xs
        .chunks_exact(g.in_len())
        .zip(out.chunks_exact_mut(out_len))
    {
        g.pad_into(x, pad);
        // SAFETY: `supported` checked AVX2 and FMA. A block at position
        // `p` reads, for each tap,
        // the 16 floats from `tap + p`, which end before
        // `(ci - 1) * hp * wp + (k - 1) * (wp + 1) + q`; as
        // `q <= ho * wp + 15`, that is below `ci * hp * wp + k + 16`, the
        // length asserted above. `prod` holds `co * q` floats.
        unsafe { products(pad, ws, &taps, prod, g.co, q) };
        for (c, prod) in prod.chunks_exact(q).take(g.co).enumerate() {
            let b = bias.map_or(0.0, |b| b[c]);
            let dst = &mut out[(ch.first + c) * pixels..][..pixels];
            for (dst, src) in dst.chunks_exact_mut(g.wo).zip(prod.chunks(wp)) {
                store_biased(dst, &src[..g.wo], b, accumulate);
            }
        }
    }
}

/// `prod[c][p] = sum over taps t of ws[c][t] * x[taps[t] + p]`, one FMA
/// chain per output in tap order, for `co` channels and `q` positions
/// (a multiple of 16).
///
/// # Safety
/// AVX2 and FMA must be available, `x` must hold `taps[t] + q` floats for
/// every tap, and `prod` `co * q`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn products(x: &[f32], ws: &[f32], taps: &[usize], prod: &mut [f32], co: usize, q: usize) {
    let patch = taps.len();
    // Blocks as even as six at most allow: a short last block (20 = 6 + 6
    // + 6 + 2) would wait on its loads rather than its multiply-adds.
    let blocks = co.div_ceil(6);
    let mut c = 0;
    for b in 0..blocks {
        let cb = (co - c).div_ceil(blocks - b);
        let w = &ws[c * patch..];
        let dst = &mut prod[c * q..];
        // SAFETY: the caller's promises, passed on.
        unsafe {
            match cb {
                1 => block::<1>(x, w, taps, dst, q),
                2 => block::<2>(x, w, taps, dst, q),
                3 => block::<3>(x, w, taps, dst, q),
                4 => block::<4>(x, w, taps, dst, q),
                5 => block::<5>(x, w, taps, dst, q),
                _ => block::<6>(x, w, taps, dst, q),
            }
        }
        c += cb;
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn products(_: &[f32], _: &[f32], _: &[usize], _: &mut [f32], _: usize, _: usize) {
    unreachable!("`supported` is false off x86-64")
}

/// [`products`] for `CB` channels, 16 positions at a time.
///
/// # Safety
/// As [`products`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block<const CB: usize>(x: &[f32], w: &[f32], taps: &[usize], dst: &mut [f32], q: usize) {
    use std::arch::x86_64::*;
    let patch = taps.len();
    assert!(w.len() >= (CB - 1) * patch + patch && dst.len() >= CB * q);
    let (x, w, dst) = (x.as_ptr(), w.as_ptr(), dst.as_mut_ptr());
    for p in (0..q).step_by(2 * LANES) {
        // SAFETY: the caller keeps every `taps[t] + p + 16 <= x.len()`;
        // weights and `dst` are within the lengths asserted above.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; CB];
            for (t, &tap) in taps.iter().enumerate() {
                let x0 = _mm256_loadu_ps(x.add(tap + p));
                let x1 = _mm256_loadu_ps(x.add(tap + p + LANES));
                for (c, acc) in acc.iter_mut().enumerate() {
                    let wv = _mm256_broadcast_ss(&*w.add(c * patch + t));
                    acc[0] = _mm256_fmadd_ps(wv, x0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(wv, x1, acc[1]);
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(dst.add(c * q + p), acc[0]);
                _mm256_storeu_ps(dst.add(c * q + p + LANES), acc[1]);
            }
        }
    }
}
