//! 2-D convolution, stride 1, square kernel, symmetric zero padding, int8.

use super::{ChannelOffset, OutputQuant, MAX_DOT_LEN};
use crate::quant::{requantize_ref, Requant};

/// One quantised conv layer, borrowed (the weights may sit in flash).
///
/// `PAD` is part of the type so a layer's padding is stated once, where the
/// network declares it; the kernels infer every other size from their
/// arguments and check them against it at compile time.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dS8<'a, const CI: usize, const CO: usize, const K: usize, const PAD: usize> {
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
    const CO: usize,
    const K: usize,
    const PAD: usize,
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

/// Convolution, stride 1, kernel `K`x`K`, zero padding `PAD`, int8 in and
/// out: the contract of every conv kernel, as the plainest loop (seven
/// nested loops, a bounds test per tap). The fast kernels
/// ([`super::tiled`]) are tested against it.
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
/// use shared::kernels::{conv2d_s8_ref, ChannelOffset, Conv2dS8, OutputQuant};
/// use shared::quant::Requant;
/// // A 3x3 "same" conv (pad 1), 2 -> 1 channels, into channel 1 of 3.
/// let weights = [[[[1i8; 2]; 3]; 3]; 1];
/// let layer = Conv2dS8::<2, 1, 3, 1> {
///     weights: &weights,
///     bias: &[0],
///     requant: &[Requant::ONE],
///     input_zero_point: -1,
///     output: OutputQuant::linear(0),
/// };
/// let input = [[[0i8; 2]; 4]; 4]; // real value 1 everywhere
/// let mut out = [[[0i8; 3]; 4]; 4];
/// conv2d_s8_ref(&layer, &input, &mut out, ChannelOffset::<1>);
/// assert_eq!(out[0][0], [0, 8, 0]); // corner: 4 taps x 2 channels
/// assert_eq!(out[1][1], [0, 18, 0]);
/// ```
///
/// A wrong output size or channel slice does not build:
///
/// ```compile_fail
/// use shared::kernels::{conv2d_s8_ref, ChannelOffset, Conv2dS8, OutputQuant};
/// use shared::quant::Requant;
/// let weights = [[[[1i8; 2]; 3]; 3]; 1];
/// let layer = Conv2dS8::<2, 1, 3, 1> {
///     weights: &weights,
///     bias: &[0],
///     requant: &[Requant::ONE],
///     input_zero_point: -1,
///     output: OutputQuant::linear(0),
/// };
/// let input = [[[0i8; 2]; 4]; 4];
/// let mut out = [[[0i8; 3]; 4]; 4];
/// conv2d_s8_ref(&layer, &input, &mut out, ChannelOffset::<3>); // 3 + 1 > 3
/// ```
#[allow(clippy::needless_range_loop)] // plain index loops on purpose
pub fn conv2d_s8_ref<
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const CT: usize,
    const C_OFF: usize,
>(
    layer: &Conv2dS8<'_, CI, CO, K, PAD>,
    input: &[[[i8; CI]; W]; H],
    out: &mut [[[i8; CT]; WO]; HO],
    _at: ChannelOffset<C_OFF>,
) {
    const { check_conv_shapes::<H, W, CI, CO, K, PAD, HO, WO, CT, C_OFF>() };
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
                let v =
                    requantize_ref(acc, layer.requant[co]) as i64 + layer.output.zero_point as i64;
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
    use crate::kernels::tiled::{conv2d_s8, scratch_quads};
    use crate::testutil::{flat3, round_half_away, Rng};

    /// The production conv (the tiled kernel), with its scratch.
    fn conv<
        const H: usize,
        const W: usize,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const PAD: usize,
        const HO: usize,
        const WO: usize,
        const CT: usize,
        const C_OFF: usize,
    >(
        layer: &Conv2dS8<'_, CI, CO, K, PAD>,
        input: &[[[i8; CI]; W]; H],
        out: &mut [[[i8; CT]; WO]; HO],
        at: ChannelOffset<C_OFF>,
    ) {
        let mut scratch = vec![[0u32; crate::kernels::dsp::QUAD_WORDS]; scratch_quads(CI, K)];
        conv2d_s8(layer, input, out, at, &mut scratch);
    }
    use crate::quant::quantize_multiplier;

    /// Independent check against real arithmetic: dequantise, convolve in
    /// f64, quantise with round-half-away. Within 1 LSB everywhere; exact for
    /// the overwhelming majority.
    fn close_to_f64<
        const H: usize,
        const W: usize,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const PAD: usize,
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
        let layer = Conv2dS8::<CI, CO, K, PAD> {
            weights: &weights,
            bias: &bias,
            requant: &requant,
            input_zero_point: in_zp,
            output,
        };
        let mut out = [[[0i8; CO]; WO]; HO];
        conv(&layer, &input, &mut out, ChannelOffset::<0>);
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
                close_to_f64::<12, 12, 16, 24, 5, 2, 12, 12>(100 + seed),
                close_to_f64::<12, 12, 10, 16, 1, 0, 12, 12>(200 + seed),
                close_to_f64::<14, 14, 10, 20, 3, 1, 14, 14>(300 + seed),
                close_to_f64::<28, 28, 1, 10, 5, 0, 24, 24>(400 + seed),
                close_to_f64::<4, 4, 24, 24, 3, 1, 4, 4>(500 + seed),
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
        let mut layer = Conv2dS8::<1, 2, 1, 0> {
            weights: &weights,
            bias: &bias,
            requant: &requant,
            input_zero_point: -128,
            output: OutputQuant::linear(0),
        };
        let input = [[[127i8; 1]; 1]; 1];
        let mut out = [[[0i8; 2]; 1]; 1];
        conv(&layer, &input, &mut out, ChannelOffset::<0>);
        assert_eq!(out, [[[127, -128]]]);
        layer.output = OutputQuant::relu(-5);
        conv(&layer, &input, &mut out, ChannelOffset::<0>);
        assert_eq!(out, [[[127, -5]]]);
        // A bias at the edge of i32 wraps instead of panicking, in both.
        let bias = [i32::MAX, i32::MIN];
        layer.bias = &bias;
        let mut slow = out;
        conv(&layer, &input, &mut out, ChannelOffset::<0>);
        conv2d_s8_ref(&layer, &input, &mut slow, ChannelOffset::<0>);
        assert_eq!(out, slow);
    }

    #[test]
    fn padding_is_the_input_zero_point() {
        // A 3x3 all-ones kernel over a 1x1 input of value zp + 2, pad 1:
        // only the centre tap is real, so acc = 2 whatever the zero point.
        for zp in [-128i8, -7, 0, 55, 125] {
            let weights = [[[[1i8; 1]; 3]; 3]; 1];
            let layer = Conv2dS8::<1, 1, 3, 1> {
                weights: &weights,
                bias: &[0],
                requant: &[Requant::ONE],
                input_zero_point: zp,
                output: OutputQuant::linear(0),
            };
            let input = [[[zp + 2; 1]; 1]; 1];
            let mut out = [[[0i8; 1]; 1]; 1];
            conv(&layer, &input, &mut out, ChannelOffset::<0>);
            assert_eq!(out[0][0][0], 2);
        }
    }
}
