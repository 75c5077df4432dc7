//! The fast convolution: tiles of [`TILE`] output pixels, an im2col copy of
//! their input windows into scratch, and the `SMLAD` dot products of
//! [`super::dsp`]; then a per-output *epilogue* that decides what becomes of
//! each accumulator (requantise and store, max-pool, residual add).
//!
//! The public kernels, each with a reference built from the plain kernels
//! (the tests demand identical bytes):
//!
//! - [`conv2d_fast`]: one conv, into a channel slice (like [`conv2d_s8`]);
//! - [`conv2d_x2_fast`] and [`conv2d_x3_fast`]: two or three convs that read
//!   the same input, computed as one wider conv (the Inception 1x1 reducers;
//!   a ResNet block's conv1 and shortcut);
//! - [`conv2d_pool_fast`]: conv, 2x2 max pool and clamp (ReLU) in one pass,
//!   one requantisation per pooled output;
//! - [`conv2d_add_pool_fast`]: a residual block's last conv, the residual add
//!   and the 2x2 max pool + ReLU in one pass.
//!
//! Max pooling is fused exactly: requantisation, zero point and clamp are a
//! non-decreasing function of the accumulator, so the max of four outputs is
//! the output of the max of the four accumulators (after the bias).
//!
//! [`conv2d_s8`]: super::conv2d_s8

use super::dsp::{dot_tile, expand_word, half_index, neg_zero_point_pair, Step, TILE};
use super::{ActRange, AddS8, ChannelOffset, Conv2dS8, ADD_LEFT_SHIFT, MAX_DOT_LEN};
use crate::quant::requantize;

/// Largest reduction (`K*K*CI`) im2col'd whole per tile; longer ones go one
/// kernel row at a time (conv2's 2,200 would need 26 KB of scratch).
const WHOLE_WINDOW_MAX: usize = 512;

/// Reduction values one im2col pass covers: the whole window, or one kernel
/// row when the window is long.
pub const fn segment_len(ci: usize, k: usize) -> usize {
    if k * k * ci <= WHOLE_WINDOW_MAX {
        k * k * ci
    } else {
        k * ci
    }
}

/// Scratch steps a conv with `ci` input channels and kernel `k` needs.
pub const fn scratch_steps(ci: usize, k: usize) -> usize {
    segment_len(ci, k).div_ceil(4)
}

/// Scratch bytes for that conv (for buffer plans).
pub const fn scratch_bytes(ci: usize, k: usize) -> usize {
    scratch_steps(ci, k) * size_of::<Step>()
}

/// Output pixel `i` in visiting order: row-major, or (`POOL`) window by
/// window of the 2x2 pool, each window row-major.
#[inline(always)]
const fn pixel_at<const WO: usize, const POOL: bool>(i: usize) -> (usize, usize) {
    if POOL {
        let (w, j) = (i / 4, i % 4);
        let half = WO / 2;
        (2 * (w / half) + j / 2, 2 * (w % half) + j % 2)
    } else {
        (i / WO, i % WO)
    }
}

/// Copies the windows of the tile's pixels, kernel rows `ky0..ky0 + rows`,
/// into `scratch` as `x - zp` (zero for padding) in the layout of
/// [`super::dsp`]. Word-wide when `CI % 4 == 0` (each input word is one
/// step of one pixel), value by value otherwise (one input channel, CI = 10).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn im2col<const H: usize, const W: usize, const CI: usize, const K: usize, const PAD: usize>(
    input: &[[[i8; CI]; W]; H],
    zp: i8,
    pixels: &[(usize, usize)],
    ky0: usize,
    rows: usize,
    scratch: &mut [Step],
) {
    let neg_zp = neg_zero_point_pair(zp);
    let in_bounds = |oy: usize, ox: usize, ky: usize, kx: usize| -> Option<&[i8; CI]> {
        let iy = (oy + ky).checked_sub(PAD)?;
        let ix = (ox + kx).checked_sub(PAD)?;
        input.get(iy)?.get(ix)
    };
    if CI % 4 == 0 {
        for (p, &(oy, ox)) in pixels.iter().enumerate() {
            let mut s = 0;
            for ky in ky0..ky0 + rows {
                for kx in 0..K {
                    let px = in_bounds(oy, ox, ky, kx);
                    for q in 0..CI / 4 {
                        let (lo, hi) = match px.and_then(|px| px.get(4 * q..4 * q + 4)) {
                            Some(b) => expand_word(u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]), neg_zp),
                            None => (0, 0),
                        };
                        if let Some(step) = scratch.get_mut(s) {
                            step[2 * p] = lo;
                            step[2 * p + 1] = hi;
                        }
                        s += 1;
                    }
                }
            }
        }
    } else {
        let halves: &mut [u16] = bytemuck::cast_slice_mut(scratch);
        for (p, &(oy, ox)) in pixels.iter().enumerate() {
            let mut r = 0;
            for ky in ky0..ky0 + rows {
                for kx in 0..K {
                    let px = in_bounds(oy, ox, ky, kx);
                    for ci in 0..CI {
                        let v = px.map_or(0, |px| px[ci] as i16 - zp as i16);
                        if let Some(h) = halves.get_mut(half_index(p, r)) {
                            *h = v as u16;
                        }
                        r += 1;
                    }
                }
            }
            // The last step's unused lanes meet zero weights (`dot_segment`
            // pads them); zeroed so the sums never see stale values at all.
            while r % 4 != 0 {
                if let Some(h) = halves.get_mut(half_index(p, r)) {
                    *h = 0;
                }
                r += 1;
            }
        }
    }
}

/// `acc += w . x` over one segment of `LEN` reduction values: the unrolled
/// DSP loop over the whole steps, then the tail (`LEN % 4` values) as one
/// step with the weights padded by zeros.
macro_rules! dot_segment {
    ($acc:expr, $x:expr, $w:expr, $len:expr) => {{
        let (acc, x, w): (&mut [i32; TILE], &[Step], &[i8]) = ($acc, $x, $w);
        dot_tile!(acc, x, w, $len / 4);
        if $len % 4 != 0 {
            let mut tail = [0i8; 4];
            let rest = w.get($len / 4 * 4..$len).unwrap_or(&[]);
            tail[..rest.len()].copy_from_slice(rest);
            dot_tile!(acc, x.get($len / 4..).unwrap_or(&[]), &tail, 1);
        }
    }};
}

/// The tiled conv driver: visits the `HO * WO` output pixels (in pool order
/// if `POOL`) `TILE` at a time and hands every `(pixel index, oy, ox,
/// channel, accumulator)` to `finish`, channel by channel, pixels in order.
/// `weights(co)` is output channel `co`'s OHWI row for `co < co_n`
/// (`co_n <= CO_MAX`); the accumulator is `sum w * (x - zp)`, bias not
/// included.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv_tiles<
    'w,
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const CO_MAX: usize,
    const POOL: bool,
>(
    input: &[[[i8; CI]; W]; H],
    zp: i8,
    co_n: usize,
    weights: impl Fn(usize) -> &'w [[[i8; CI]; K]; K],
    scratch: &mut [Step],
    mut finish: impl FnMut(usize, usize, usize, usize, i32),
) {
    const {
        assert!(PAD < K, "padding must be smaller than the kernel");
        assert!(HO + K == H + 2 * PAD + 1 && WO + K == W + 2 * PAD + 1, "output side");
        assert!(K * K * CI <= MAX_DOT_LEN, "reduction too long for an i32 accumulator");
        assert!(!POOL || (HO % 2 == 0 && WO % 2 == 0), "fused pool needs even sides");
    };
    let co_n = co_n.min(CO_MAX);
    let n_pixels = HO * WO;
    let mut first = 0;
    while first < n_pixels {
        let n = TILE.min(n_pixels - first);
        let mut pixels = [(0, 0); TILE];
        for (p, px) in pixels.iter_mut().enumerate().take(n) {
            *px = pixel_at::<WO, POOL>(first + p);
        }
        let mut emit = |co: usize, a: &[i32; TILE]| {
            for (p, (&v, &(oy, ox))) in a.iter().zip(&pixels).take(n).enumerate() {
                finish(first + p, oy, ox, co, v);
            }
        };
        if K * K * CI <= WHOLE_WINDOW_MAX {
            // One im2col of the whole window; each channel is finished as
            // soon as its sums are ready.
            im2col::<H, W, CI, K, PAD>(input, zp, &pixels[..n], 0, K, scratch);
            for co in 0..co_n {
                let mut a = [0i32; TILE];
                dot_segment!(&mut a, scratch, weights(co).as_flattened().as_flattened(), K * K * CI);
                emit(co, &a);
            }
        } else {
            // Kernel row by kernel row; the sums wait for the last row.
            let mut acc = [[0i32; TILE]; CO_MAX];
            for ky in 0..K {
                im2col::<H, W, CI, K, PAD>(input, zp, &pixels[..n], ky, 1, scratch);
                for (co, a) in acc.iter_mut().enumerate().take(co_n) {
                    let w = weights(co).get(ky).map_or(&[][..], |r| r.as_flattened());
                    dot_segment!(a, scratch, w, K * CI);
                }
            }
            for (co, a) in acc.iter().enumerate().take(co_n) {
                emit(co, a);
            }
        }
        first += n;
    }
}

/// `acc + bias[co]` (wrapping, as the reference).
#[inline(always)]
fn biased<const CI: usize, const K: usize, const PAD: usize, const CO: usize>(
    layer: &Conv2dS8<'_, CI, K, PAD, CO>,
    co: usize,
    acc: i32,
) -> i32 {
    acc.wrapping_add(layer.bias.get(co).copied().unwrap_or(0))
}

/// A biased accumulator through channel `co`'s requantisation and the
/// layer's output stage.
#[inline(always)]
fn requant_out<const CI: usize, const K: usize, const PAD: usize, const CO: usize>(
    layer: &Conv2dS8<'_, CI, K, PAD, CO>,
    co: usize,
    v: i32,
) -> i8 {
    let r = layer.requant.get(co).copied().unwrap_or(crate::quant::Requant::ZERO);
    layer.output.apply(requantize(v, r))
}

/// `requant(acc + bias)` through the layer's output stage, for channel `co`.
#[inline(always)]
fn output<const CI: usize, const K: usize, const PAD: usize, const CO: usize>(
    layer: &Conv2dS8<'_, CI, K, PAD, CO>,
    co: usize,
    acc: i32,
) -> i8 {
    requant_out(layer, co, biased(layer, co, acc))
}

/// Running max over the four pixels of each pool window, per channel:
/// `push` returns the window's max on its fourth pixel.
struct WindowMax<const C: usize>([i32; C]);

impl<const C: usize> WindowMax<C> {
    #[inline(always)]
    fn push(&mut self, i: usize, c: usize, v: i32) -> Option<i32> {
        let m = self.0.get_mut(c)?;
        *m = if i % 4 == 0 { v } else { (*m).max(v) };
        (i % 4 == 3).then_some(*m)
    }
}

/// Pooled output position of window `i / 4`.
#[inline(always)]
const fn window_at<const PW: usize>(i: usize) -> (usize, usize) {
    (i / 4 / PW, i / 4 % PW)
}

/// Stores `v` at channel `C_OFF + co` of pixel `(oy, ox)` (always in
/// bounds: the callers' shapes are checked at compile time).
#[inline(always)]
fn store<const HO: usize, const WO: usize, const CT: usize>(
    out: &mut [[[i8; CT]; WO]; HO],
    oy: usize,
    ox: usize,
    c: usize,
    v: i8,
) {
    if let Some(d) = out.get_mut(oy).and_then(|r| r.get_mut(ox)).and_then(|p| p.get_mut(c)) {
        *d = v;
    }
}

/// The fast [`conv2d_s8`](super::conv2d_s8): same contract, same bytes.
/// `scratch` must hold [`scratch_steps`]`(CI, K)` steps.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_fast<
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const CO: usize,
    const HO: usize,
    const WO: usize,
    const CT: usize,
    const C_OFF: usize,
>(
    layer: &Conv2dS8<'_, CI, K, PAD, CO>,
    input: &[[[i8; CI]; W]; H],
    out: &mut [[[i8; CT]; WO]; HO],
    _at: ChannelOffset<C_OFF>,
    scratch: &mut [Step],
) {
    const { assert!(C_OFF + CO <= CT, "channel slice outside the output") };
    conv_tiles::<H, W, CI, K, PAD, HO, WO, CO, false>(
        input,
        layer.input_zero_point,
        CO,
        |co| &layer.weights[co],
        scratch,
        |_, oy, ox, co, acc| store(out, oy, ox, C_OFF + co, output(layer, co, acc)),
    );
}

/// Two convs on the same input (same zero point), as one conv with
/// `CA + CB` output channels: `a` into `out_a` at channel `A_OFF`, `b` into
/// `out_b` at `B_OFF`. Same bytes as two [`conv2d_fast`] calls.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_x2_fast<
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const CA: usize,
    const CB: usize,
    const HO: usize,
    const WO: usize,
    const TA: usize,
    const TB: usize,
    const A_OFF: usize,
    const B_OFF: usize,
>(
    (a, b): (&Conv2dS8<'_, CI, K, PAD, CA>, &Conv2dS8<'_, CI, K, PAD, CB>),
    input: &[[[i8; CI]; W]; H],
    (out_a, out_b): (&mut [[[i8; TA]; WO]; HO], &mut [[[i8; TB]; WO]; HO]),
    _at: (ChannelOffset<A_OFF>, ChannelOffset<B_OFF>),
    scratch: &mut [Step],
) {
    const {
        assert!(A_OFF + CA <= TA && B_OFF + CB <= TB, "channel slice outside the output");
        assert!(CA + CB <= WIDE_MAX, "too many fused channels");
    };
    if a.input_zero_point != b.input_zero_point {
        // Not one input tensor after all: no sharing possible.
        conv2d_fast(a, input, out_a, ChannelOffset::<A_OFF>, scratch);
        conv2d_fast(b, input, out_b, ChannelOffset::<B_OFF>, scratch);
        return;
    }
    wide::<H, W, CI, K, PAD, HO, WO>(
        input,
        a.input_zero_point,
        CA + CB,
        |co| if co < CA { &a.weights[co] } else { &b.weights[co - CA] },
        scratch,
        |oy, ox, co, acc| {
            if co < CA {
                store(out_a, oy, ox, A_OFF + co, output(a, co, acc))
            } else {
                store(out_b, oy, ox, B_OFF + co - CA, output(b, co - CA, acc))
            }
        },
    );
}

/// Three convs on the same input as one wider conv (the Inception module's
/// 1x1 convs b1, b5_1 and b3_1). Same bytes as three [`conv2d_fast`] calls.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn conv2d_x3_fast<
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const CA: usize,
    const CB: usize,
    const CC: usize,
    const HO: usize,
    const WO: usize,
    const TA: usize,
    const TB: usize,
    const TC: usize,
    const A_OFF: usize,
    const B_OFF: usize,
    const C_OFF: usize,
>(
    (a, b, c): (
        &Conv2dS8<'_, CI, K, PAD, CA>,
        &Conv2dS8<'_, CI, K, PAD, CB>,
        &Conv2dS8<'_, CI, K, PAD, CC>,
    ),
    input: &[[[i8; CI]; W]; H],
    (out_a, out_b, out_c): (
        &mut [[[i8; TA]; WO]; HO],
        &mut [[[i8; TB]; WO]; HO],
        &mut [[[i8; TC]; WO]; HO],
    ),
    _at: (ChannelOffset<A_OFF>, ChannelOffset<B_OFF>, ChannelOffset<C_OFF>),
    scratch: &mut [Step],
) {
    const {
        assert!(
            A_OFF + CA <= TA && B_OFF + CB <= TB && C_OFF + CC <= TC,
            "channel slice outside the output"
        );
        assert!(CA + CB + CC <= WIDE_MAX, "too many fused channels");
    };
    let zp = a.input_zero_point;
    if b.input_zero_point != zp || c.input_zero_point != zp {
        conv2d_fast(a, input, out_a, ChannelOffset::<A_OFF>, scratch);
        conv2d_fast(b, input, out_b, ChannelOffset::<B_OFF>, scratch);
        conv2d_fast(c, input, out_c, ChannelOffset::<C_OFF>, scratch);
        return;
    }
    wide::<H, W, CI, K, PAD, HO, WO>(
        input,
        zp,
        CA + CB + CC,
        |co| {
            if co < CA {
                &a.weights[co]
            } else if co < CA + CB {
                &b.weights[co - CA]
            } else {
                &c.weights[co - CA - CB]
            }
        },
        scratch,
        |oy, ox, co, acc| {
            if co < CA {
                store(out_a, oy, ox, A_OFF + co, output(a, co, acc))
            } else if co < CA + CB {
                store(out_b, oy, ox, B_OFF + co - CA, output(b, co - CA, acc))
            } else {
                let co = co - CA - CB;
                store(out_c, oy, ox, C_OFF + co, output(c, co, acc))
            }
        },
    );
}

/// Most output channels a fused wide conv may have (its accumulators live
/// on the stack when the window is long: `TILE * 4` bytes each).
pub const WIDE_MAX: usize = 64;

/// [`conv_tiles`] for a runtime channel count `co_n <= WIDE_MAX` (the sum of
/// the fused convs' channels: `{ CA + CB }` is not a type-level constant on
/// stable Rust).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn wide<
    'w,
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
>(
    input: &[[[i8; CI]; W]; H],
    zp: i8,
    co_n: usize,
    weights: impl Fn(usize) -> &'w [[[i8; CI]; K]; K],
    scratch: &mut [Step],
    mut finish: impl FnMut(usize, usize, usize, i32),
) {
    conv_tiles::<H, W, CI, K, PAD, HO, WO, WIDE_MAX, false>(
        input,
        zp,
        co_n,
        weights,
        scratch,
        |_, oy, ox, co, acc| finish(oy, ox, co, acc),
    );
}

/// Conv, then 2x2 max pool, then `range` (the networks' ReLU), in one pass:
/// the same bytes as [`conv2d_s8`](super::conv2d_s8) into a full-size
/// tensor followed by [`maxpool2d_s8`](super::maxpool2d_s8)`(range, ..)`,
/// with one requantisation per pooled output instead of four.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool_fast<
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const CO: usize,
    const HO: usize,
    const WO: usize,
    const PH: usize,
    const PW: usize,
>(
    layer: &Conv2dS8<'_, CI, K, PAD, CO>,
    range: ActRange,
    input: &[[[i8; CI]; W]; H],
    out: &mut [[[i8; CO]; PW]; PH],
    scratch: &mut [Step],
) {
    const { assert!(HO == 2 * PH && WO == 2 * PW, "pooled side must be half the conv's") };
    let mut best = WindowMax([0; CO]);
    conv_tiles::<H, W, CI, K, PAD, HO, WO, CO, true>(
        input,
        layer.input_zero_point,
        CO,
        |co| &layer.weights[co],
        scratch,
        |i, _, _, co, acc| {
            if let Some(m) = best.push(i, co, biased(layer, co, acc)) {
                let (py, px) = window_at::<PW>(i);
                store(out, py, px, co, range.clamp(requant_out(layer, co, m)));
            }
        },
    );
}

/// An add's first input mapped to the common scale:
/// `requant_a((v - a_zp) << 20)` for every int8 `v` (index `v + 128`), and
/// likewise for the second input. Depends on the parameters only; built
/// per call (512 requantisations).
pub type AddLut = [[i32; 256]; 2];

fn fill_add_lut(add: &AddS8, lut: &mut AddLut) {
    let [a, b] = lut;
    for (v, (a, b)) in (-128i32..).zip(a.iter_mut().zip(b.iter_mut())) {
        *a = requantize((v - add.a_zero_point as i32) << ADD_LEFT_SHIFT, add.a);
        *b = requantize((v - add.b_zero_point as i32) << ADD_LEFT_SHIFT, add.b);
    }
}

/// A residual block's tail in one pass: `conv` (the block's last conv) into
/// the add's first input, the shortcut tensor as its second, the add, the
/// 2x2 max pool and `range` (the ReLU after the pool). The same bytes as
/// [`conv2d_s8`](super::conv2d_s8), [`add_requant_s8`](super::add_requant_s8)
/// and [`maxpool2d_s8`](super::maxpool2d_s8) in turn; the conv's output
/// never goes to memory, and the add's last requantisation runs once per
/// pooled output.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_add_pool_fast<
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const CO: usize,
    const HO: usize,
    const WO: usize,
    const PH: usize,
    const PW: usize,
>(
    (conv, add): (&Conv2dS8<'_, CI, K, PAD, CO>, &AddS8),
    range: ActRange,
    input: &[[[i8; CI]; W]; H],
    shortcut: &[[[i8; CO]; WO]; HO],
    out: &mut [[[i8; CO]; PW]; PH],
    (scratch, lut): (&mut [Step], &mut AddLut),
) {
    const { assert!(HO == 2 * PH && WO == 2 * PW, "pooled side must be half the conv's") };
    fill_add_lut(add, lut);
    let [lut_a, lut_b] = &*lut;
    let at = |t: &[i32; 256], v: i8| t[(v as i32 + 128) as usize];
    let mut best = WindowMax([0; CO]);
    conv_tiles::<H, W, CI, K, PAD, HO, WO, CO, true>(
        input,
        conv.input_zero_point,
        CO,
        |co| &conv.weights[co],
        scratch,
        |i, oy, ox, co, acc| {
            let s = shortcut.get(oy).and_then(|r| r.get(ox)).and_then(|p| p.get(co));
            let s = s.copied().unwrap_or(0);
            let sum = at(lut_a, output(conv, co, acc)).saturating_add(at(lut_b, s));
            if let Some(m) = best.push(i, co, sum) {
                let (py, px) = window_at::<PW>(i);
                store(out, py, px, co, range.clamp(add.output.apply(requantize(m, add.out))));
            }
        },
    );
}

#[cfg(test)]
#[path = "tiled_tests.rs"]
mod tests;
