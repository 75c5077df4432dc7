//! 2-D convolution, stride 1, square kernel, symmetric zero padding, int8.

use super::{dot4_s8, dot_s8, opaque_zero_point, ChannelOffset, OutputQuant, MAX_DOT_LEN};
use crate::quant::{requantize, requantize_ref, Requant};

/// One quantised conv layer, borrowed (the weights may sit in flash).
///
/// `PAD` is part of the type so a layer's padding is stated once, where the
/// network declares it; the kernels infer every other size from their
/// arguments and check them against it at compile time.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dS8<'a, const CI: usize, const K: usize, const PAD: usize, const CO: usize> {
    /// Weights, OHWI: `weights[co][ky][kx][ci]`, int8 symmetric per output
    /// channel.
    pub weights: &'a [[[[i8; CI]; K]; K]; CO],
    /// Bias per output channel, int32 at scale `in_scale * w_scale[co]`.
    pub bias: &'a [i32; CO],
    /// Per output channel: `in_scale * w_scale[co] / out_scale`.
    pub requant: &'a [Requant; CO],
    /// Zero point of the input tensor (subtracted from every input value;
    /// padding contributes nothing).
    pub input_zero_point: i8,
    /// Output zero point and fused activation.
    pub output: OutputQuant,
}

/// The shape relations both conv kernels rely on; evaluated at compile time.
const fn check_conv_shapes<
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
>() {
    assert!(H >= 1 && W >= 1 && CI >= 1 && CO >= 1, "empty tensor");
    assert!(K >= 1, "empty kernel");
    // PAD < K: every output window overlaps the input.
    assert!(PAD < K, "padding must be smaller than the kernel");
    assert!(HO + K == H + 2 * PAD + 1, "HO must be H + 2*PAD - K + 1");
    assert!(WO + K == W + 2 * PAD + 1, "WO must be W + 2*PAD - K + 1");
    assert!(
        C_OFF + CO <= CT,
        "channel slice C_OFF..C_OFF+CO outside the output"
    );
    assert!(
        K * K * CI <= MAX_DOT_LEN,
        "reduction too long for an i32 accumulator"
    );
}

/// Taps `kx` of kernel row `ky` of one output channel's weights, flat.
#[inline(always)]
fn window<const CI: usize, const K: usize>(
    w: &[[[i8; CI]; K]; K],
    ky: usize,
    kx: core::ops::Range<usize>,
) -> &[i8] {
    w.get(ky)
        .and_then(|r| r.get(kx))
        .unwrap_or(&[])
        .as_flattened()
}

/// Convolution, stride 1, kernel `K`x`K`, zero padding `PAD`, int8 in and out.
///
/// Layouts: `input` HWC `[H][W][CI]`; weights OHWI `[CO][K][K][CI]`; `out` HWC
/// `[HO][WO][CT]`, of which channels `C_OFF..C_OFF + CO` are written and the
/// rest left untouched (an Inception branch writes its slice of the concat).
/// `HO = H + 2*PAD - K + 1` and likewise `WO`, checked at compile time.
///
/// Arithmetic, per output pixel and channel `co`:
/// `acc = sum over in-bounds taps of w * (x - in_zp)` (exact in i32: the
/// reduction length is bounded at compile time), then `acc + bias[co]`
/// (wrapping), then [`requantize`] by `requant[co]` (rounding: ties up in the
/// doubling high multiply, ties away from zero in the shift; see
/// [`crate::quant`]), then `+ out_zp` and the clamp of [`OutputQuant`].
/// Padded taps are skipped, which is exactly padding with the input zero
/// point.
///
/// ```
/// use shared::kernels::{conv2d_s8, ChannelOffset, Conv2dS8, OutputQuant};
/// use shared::quant::Requant;
/// // A 3x3 "same" conv (pad 1), 2 -> 1 channels, into channel 1 of 3.
/// let weights = [[[[1i8; 2]; 3]; 3]; 1];
/// let layer = Conv2dS8::<2, 3, 1, 1> {
///     weights: &weights,
///     bias: &[0],
///     requant: &[Requant::ONE],
///     input_zero_point: -1,
///     output: OutputQuant::linear(0),
/// };
/// let input = [[[0i8; 2]; 4]; 4]; // real value 1 everywhere
/// let mut out = [[[0i8; 3]; 4]; 4];
/// conv2d_s8(&layer, &input, &mut out, ChannelOffset::<1>);
/// assert_eq!(out[0][0], [0, 8, 0]); // corner: 4 taps x 2 channels
/// assert_eq!(out[1][1], [0, 18, 0]);
/// ```
///
/// A wrong output size or channel slice does not build:
///
/// ```compile_fail
/// use shared::kernels::{conv2d_s8, ChannelOffset, Conv2dS8, OutputQuant};
/// use shared::quant::Requant;
/// let weights = [[[[1i8; 2]; 3]; 3]; 1];
/// let layer = Conv2dS8::<2, 3, 1, 1> {
///     weights: &weights,
///     bias: &[0],
///     requant: &[Requant::ONE],
///     input_zero_point: -1,
///     output: OutputQuant::linear(0),
/// };
/// let input = [[[0i8; 2]; 4]; 4];
/// let mut out = [[[0i8; 3]; 4]; 4];
/// conv2d_s8(&layer, &input, &mut out, ChannelOffset::<3>); // 3 + 1 > 3
/// ```
pub fn conv2d_s8<
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
) {
    const { check_conv_shapes::<H, W, CI, K, PAD, CO, HO, WO, CT, C_OFF>() };
    let zp = opaque_zero_point(layer.input_zero_point);
    // Slices are taken with `get`, never by indexing: the windows are always
    // in bounds (PAD < K), and this keeps panic paths out of the kernel.
    for (oy, out_row) in out.iter_mut().enumerate() {
        // Taps ky with 0 <= oy + ky - PAD < H (non-empty since PAD < K).
        let ky0 = PAD.saturating_sub(oy);
        let ky1 = K.min((H + PAD).saturating_sub(oy));
        let x_rows = input.get(oy + ky0 - PAD..).unwrap_or(&[]);
        for (ox, px) in out_row.iter_mut().enumerate() {
            let kx0 = PAD.saturating_sub(ox);
            let kx1 = K.min((W + PAD).saturating_sub(ox));
            // The valid taps of one kernel row are contiguous in both the
            // input row and the weight row: one dot product per row.
            let ix0 = ox + kx0 - PAD;
            let ix1 = ox + kx1 - PAD;
            let dst = &mut px[C_OFF..C_OFF + CO];
            // Four output channels at a time, then the rest one by one.
            let mut d4 = dst.chunks_exact_mut(4);
            let mut w4 = layer.weights.chunks_exact(4);
            let mut b4 = layer.bias.chunks_exact(4);
            let mut r4 = layer.requant.chunks_exact(4);
            for (((d, w), b), r) in (&mut d4).zip(&mut w4).zip(&mut b4).zip(&mut r4) {
                let mut acc = [0i32; 4];
                for (ky, x_row) in (ky0..ky1).zip(x_rows) {
                    let xs = x_row.get(ix0..ix1).unwrap_or(&[]).as_flattened();
                    let ws = [
                        window(&w[0], ky, kx0..kx1),
                        window(&w[1], ky, kx0..kx1),
                        window(&w[2], ky, kx0..kx1),
                        window(&w[3], ky, kx0..kx1),
                    ];
                    let part = dot4_s8(ws, xs, zp);
                    for (a, p) in acc.iter_mut().zip(part) {
                        *a += p;
                    }
                }
                for (((d, a), &b), &r) in d.iter_mut().zip(acc).zip(b).zip(r) {
                    *d = layer.output.apply(requantize(a.wrapping_add(b), r));
                }
            }
            let rest = d4.into_remainder().iter_mut().zip(w4.remainder());
            for ((d, w), (&b, &r)) in rest.zip(b4.remainder().iter().zip(r4.remainder())) {
                let mut acc = 0i32;
                for (ky, x_row) in (ky0..ky1).zip(x_rows) {
                    let xs = x_row.get(ix0..ix1).unwrap_or(&[]).as_flattened();
                    acc += dot_s8(window(w, ky, kx0..kx1), xs, zp);
                }
                *d = layer.output.apply(requantize(acc.wrapping_add(b), r));
            }
        }
    }
}

/// Reference for [`conv2d_s8`]: the same contract, as the plainest loop
/// (seven nested loops, a bounds test per tap).
#[allow(clippy::needless_range_loop)] // plain index loops on purpose
pub fn conv2d_s8_ref<
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
) {
    const { check_conv_shapes::<H, W, CI, K, PAD, CO, HO, WO, CT, C_OFF>() };
    let in_zp = layer.input_zero_point as i32;
    for oy in 0..HO {
        for ox in 0..WO {
            for co in 0..CO {
                let mut acc: i32 = 0;
                for ky in 0..K {
                    for kx in 0..K {
                        let iy = oy as isize + ky as isize - PAD as isize;
                        let ix = ox as isize + kx as isize - PAD as isize;
                        if iy < 0 || iy >= H as isize || ix < 0 || ix >= W as isize {
                            continue; // padding: x = in_zp, contributes 0
                        }
                        for ci in 0..CI {
                            let x = input[iy as usize][ix as usize][ci] as i32;
                            let w = layer.weights[co][ky][kx][ci] as i32;
                            acc += w * (x - in_zp);
                        }
                    }
                }
                let acc = acc.wrapping_add(layer.bias[co]);
                let v = requantize_ref(acc, layer.requant[co]) as i64 + layer.output.zero_point as i64;
                let lo = layer.output.range.min() as i64;
                let hi = layer.output.range.max() as i64;
                out[oy][ox][C_OFF + co] = v.max(lo).min(hi) as i8;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{flat3, random_params, round_half_away, Rng};
    use crate::quant::quantize_multiplier;

    /// Optimised and reference write the same bytes, and neither touches
    /// channels outside its slice.
    fn same_as_reference<
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
        seed: u64,
        cases: usize,
    ) {
        let mut rng = Rng::new(seed);
        for case in 0..cases {
            let p = random_params::<CI, K, CO>(&mut rng);
            let mut input = [[[0i8; CI]; W]; H];
            rng.fill_i8(flat3(&mut input));
            let mut fast = [[[0i8; CT]; WO]; HO];
            rng.fill_uniform_i8(flat3(&mut fast));
            let mut slow = fast;
            let before = fast;
            conv2d_s8(&p.layer::<PAD>(), &input, &mut fast, ChannelOffset::<C_OFF>);
            conv2d_s8_ref(&p.layer::<PAD>(), &input, &mut slow, ChannelOffset::<C_OFF>);
            assert_eq!(
                fast, slow,
                "H{H} W{W} CI{CI} K{K} P{PAD} CO{CO} case {case}"
            );
            for y in 0..HO {
                for x in 0..WO {
                    for c in (0..CT).filter(|c| !(C_OFF..C_OFF + CO).contains(c)) {
                        assert_eq!(fast[y][x][c], before[y][x][c]);
                    }
                }
            }
        }
    }

    #[test]
    fn conv_equals_reference_on_the_networks_shapes() {
        use crate::arch::{inception as i, inception_a as a, resnet as r};
        const S: usize = crate::arch::IMAGE_SIDE;
        // InceptionNet conv1 and conv2.
        same_as_reference::<S, S, 1, { i::K1 }, 0, { i::C1 }, { i::S1 }, { i::S1 }, { i::C1 }, 0>(
            1, 4,
        );
        same_as_reference::<
            { i::P1 },
            { i::P1 },
            { a::OUT },
            { i::K2 },
            0,
            { i::C2 },
            { i::S2 },
            { i::S2 },
            { i::C2 },
            0,
        >(2, 3);
        // InceptionA(10) at 12x12: the branch convs, writing into the concat.
        const P: usize = i::P1;
        same_as_reference::<P, P, { i::C1 }, 1, 0, { a::B1 }, P, P, { a::OUT }, 0>(3, 8);
        same_as_reference::<P, P, { a::B5_REDUCE }, 5, 2, { a::B5 }, P, P, { a::OUT }, { a::B1 }>(
            4, 8,
        );
        same_as_reference::<P, P, { a::B3 }, 3, 1, { a::B3 }, P, P, { a::OUT }, { a::B1 + a::B5 }>(
            5, 8,
        );
        same_as_reference::<P, P, { i::C1 }, 1, 0, { a::BP }, P, P, { a::OUT }, { a::OUT - a::BP }>(
            6, 8,
        );
        // InceptionA(20) at 4x4: the 5x5 pad 2 kernel is larger than the map.
        const Q: usize = i::P2;
        same_as_reference::<Q, Q, { a::B5_REDUCE }, 5, 2, { a::B5 }, Q, Q, { a::OUT }, { a::B1 }>(
            7, 20,
        );
        same_as_reference::<Q, Q, { i::C2 }, 1, 0, { a::B3_REDUCE }, Q, Q, { a::B3_REDUCE }, 0>(
            8, 20,
        );
        // ResNet blocks.
        same_as_reference::<S, S, 1, { r::K }, { r::PAD }, 1, S, S, 1, 0>(9, 6);
        same_as_reference::<S, S, 1, { r::K }, { r::PAD }, { r::C1 }, S, S, { r::C1 }, 0>(10, 6);
        const R: usize = r::P1;
        same_as_reference::<R, R, { r::C1 }, { r::K }, { r::PAD }, { r::C2 }, R, R, { r::C2 }, 0>(
            11, 6,
        );
    }

    #[test]
    fn conv_equals_reference_on_odd_shapes() {
        // Non-square maps, every padding a kernel allows, slices at both ends.
        same_as_reference::<1, 1, 1, 1, 0, 1, 1, 1, 1, 0>(20, 50);
        same_as_reference::<1, 1, 3, 3, 1, 2, 1, 1, 5, 3>(21, 50);
        same_as_reference::<2, 7, 3, 3, 2, 4, 4, 9, 7, 1>(22, 50);
        same_as_reference::<5, 3, 2, 5, 4, 3, 9, 7, 3, 0>(23, 50);
        same_as_reference::<6, 9, 4, 5, 0, 2, 2, 5, 2, 0>(24, 50);
        same_as_reference::<7, 5, 5, 5, 1, 6, 5, 3, 8, 2>(25, 50);
        same_as_reference::<3, 8, 7, 3, 0, 5, 1, 6, 6, 1>(26, 50);
        same_as_reference::<4, 4, 17, 1, 0, 9, 4, 4, 30, 21>(27, 50);
        same_as_reference::<9, 6, 2, 3, 2, 3, 11, 8, 4, 1>(28, 50);
        same_as_reference::<8, 8, 33, 5, 2, 3, 8, 8, 3, 0>(29, 20);
    }

    /// Independent check against real arithmetic: dequantise, convolve in
    /// f64, quantise with round-half-away. Within 1 LSB everywhere; exact for
    /// the overwhelming majority.
    fn close_to_f64<
        const H: usize,
        const W: usize,
        const CI: usize,
        const K: usize,
        const PAD: usize,
        const CO: usize,
        const HO: usize,
        const WO: usize,
    >(
        seed: u64,
    ) -> (usize, usize, usize) {
        let mut rng = Rng::new(seed);
        let in_scale = 0.02 + rng.unit() * 0.1;
        let in_zp = rng.i8();
        let mut input = [[[0i8; CI]; W]; H];
        rng.fill_uniform_i8(flat3(&mut input));
        let mut weights = [[[[0i8; CI]; K]; K]; CO];
        let mut w_scale = [0f64; CO];
        let mut bias = [0i32; CO];
        for co in 0..CO {
            rng.fill_uniform_i8(flat3(&mut weights[co]));
            w_scale[co] = 0.001 + rng.unit() * 0.01;
            bias[co] = rng.range_i32(-20_000, 20_000);
        }
        // The output scale of a calibrated layer: about the spread of the
        // real outputs over the int8 range.
        // int8 values spread with a standard deviation of about 73.
        let std = ((K * K * CI) as f64).sqrt() * (73.0 * 0.07) * (73.0 * 0.006);
        let out_scale = 3.0 * std / 127.0 * (0.5 + rng.unit());
        let out_zp = rng.i8();
        let output = if rng.below(2) == 0 {
            OutputQuant::linear(out_zp)
        } else {
            OutputQuant::relu(out_zp)
        };
        let mut requant = [Requant::ZERO; CO];
        for co in 0..CO {
            requant[co] = quantize_multiplier(in_scale * w_scale[co] / out_scale).unwrap();
        }
        let layer = Conv2dS8::<CI, K, PAD, CO> {
            weights: &weights,
            bias: &bias,
            requant: &requant,
            input_zero_point: in_zp,
            output,
        };
        let mut out = [[[0i8; CO]; WO]; HO];
        conv2d_s8(&layer, &input, &mut out, ChannelOffset::<0>);
        let (mut exact, mut total, mut inside) = (0, 0, 0);
        for oy in 0..HO {
            for ox in 0..WO {
                for co in 0..CO {
                    let mut y = bias[co] as f64 * in_scale * w_scale[co];
                    for ky in 0..K {
                        for kx in 0..K {
                            let (iy, ix) = (oy + ky, ox + kx);
                            if iy < PAD || ix < PAD || iy - PAD >= H || ix - PAD >= W {
                                continue; // zero padding in the real domain
                            }
                            for ci in 0..CI {
                                let x = in_scale
                                    * (input[iy - PAD][ix - PAD][ci] as f64 - in_zp as f64);
                                let w = w_scale[co] * weights[co][ky][kx][ci] as f64;
                                y += w * x;
                            }
                        }
                    }
                    let q = (round_half_away(y / out_scale) + out_zp as f64)
                        .clamp(output.range.min() as f64, output.range.max() as f64);
                    let got = out[oy][ox][co] as f64;
                    assert!((got - q).abs() <= 1.0, "({oy},{ox},{co}): {got} vs {q}");
                    exact += (got == q) as usize;
                    total += 1;
                    inside +=
                        (q > output.range.min() as f64 && q < output.range.max() as f64) as usize;
                }
            }
        }
        (exact, total, inside)
    }

    #[test]
    fn conv_is_within_one_lsb_of_real_arithmetic() {
        let (mut exact, mut total, mut inside) = (0, 0, 0);
        for seed in 0..4 {
            for e in [
                close_to_f64::<12, 12, 16, 5, 2, 24, 12, 12>(100 + seed),
                close_to_f64::<12, 12, 10, 1, 0, 16, 12, 12>(200 + seed),
                close_to_f64::<14, 14, 10, 3, 1, 20, 14, 14>(300 + seed),
                close_to_f64::<28, 28, 1, 5, 0, 10, 24, 24>(400 + seed),
                close_to_f64::<4, 4, 24, 3, 1, 24, 4, 4>(500 + seed),
            ] {
                exact += e.0;
                total += e.1;
                inside += e.2;
            }
        }
        // The check means something: most outputs are not clamped.
        assert!(inside * 3 >= total, "{inside} of {total} unclamped");
        // Off-by-one only near ties of x.5: a tiny fraction.
        assert!(exact * 1000 >= total * 998, "{exact} of {total} exact");
        println!("{exact} of {total} exact, {inside} unclamped");
    }

    #[test]
    fn conv_saturates_and_clamps() {
        // One tap, weight 127, input 127 with zero point -128: acc = 127*255
        // = 32385; times 1.0 it saturates at 127, negated at -128.
        let weights = [[[[127i8; 1]; 1]; 1]; 2];
        let bias = [0, -2 * 32385];
        let requant = [Requant::ONE; 2];
        let mut layer = Conv2dS8::<1, 1, 0, 2> {
            weights: &weights,
            bias: &bias,
            requant: &requant,
            input_zero_point: -128,
            output: OutputQuant::linear(0),
        };
        let input = [[[127i8; 1]; 1]; 1];
        let mut out = [[[0i8; 2]; 1]; 1];
        conv2d_s8(&layer, &input, &mut out, ChannelOffset::<0>);
        assert_eq!(out, [[[127, -128]]]);
        layer.output = OutputQuant::relu(-5);
        conv2d_s8(&layer, &input, &mut out, ChannelOffset::<0>);
        assert_eq!(out, [[[127, -5]]]);
        // A bias at the edge of i32 wraps instead of panicking, in both.
        let bias = [i32::MAX, i32::MIN];
        layer.bias = &bias;
        let mut slow = out;
        conv2d_s8(&layer, &input, &mut out, ChannelOffset::<0>);
        conv2d_s8_ref(&layer, &input, &mut slow, ChannelOffset::<0>);
        assert_eq!(out, slow);
    }

    #[test]
    fn padding_is_the_input_zero_point() {
        // A 3x3 all-ones kernel over a 1x1 input of value zp + 2, pad 1:
        // only the centre tap is real, so acc = 2 whatever the zero point.
        for zp in [-128i8, -7, 0, 55, 125] {
            let weights = [[[[1i8; 1]; 3]; 3]; 1];
            let layer = Conv2dS8::<1, 3, 1, 1> {
                weights: &weights,
                bias: &[0],
                requant: &[Requant::ONE],
                input_zero_point: zp,
                output: OutputQuant::linear(0),
            };
            let input = [[[zp + 2; 1]; 1]; 1];
            let mut out = [[[0i8; 1]; 1]; 1];
            conv2d_s8(&layer, &input, &mut out, ChannelOffset::<0>);
            assert_eq!(out[0][0][0], 2);
        }
    }
}
