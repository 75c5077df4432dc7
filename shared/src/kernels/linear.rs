//! The classifier head: a fully connected layer over an HWC feature map, and
//! argmax over its int8 logits.

use super::{dot_s8, opaque_zero_point, OutputQuant, MAX_DOT_LEN};
use crate::quant::{requantize, requantize_ref, Requant};

/// One quantised fully connected layer reading a whole `[H][W][C]` feature
/// map (so the flatten is free), borrowed (the weights may sit in flash).
#[derive(Clone, Copy, Debug)]
pub struct LinearS8<'a, const H: usize, const W: usize, const C: usize, const O: usize> {
    /// Weights `[O][H][W][C]`: output `o`'s row in the input's HWC order.
    /// PyTorch flattens (C, H, W); the exporter permutes each row to HWC.
    /// int8 symmetric, one scale per output.
    pub weights: &'a [[[[i8; C]; W]; H]; O],
    /// Bias per output, int32 at scale `in_scale * w_scale[o]`.
    pub bias: &'a [i32; O],
    /// Per output: `in_scale * w_scale[o] / out_scale`.
    pub requant: &'a [Requant; O],
    /// Zero point of the input feature map.
    pub input_zero_point: i8,
    /// Zero point (and, normally, the full range) of the int8 logits.
    pub output: OutputQuant,
}

const fn check_linear_shapes<const H: usize, const W: usize, const C: usize, const O: usize>() {
    assert!(H >= 1 && W >= 1 && C >= 1 && O >= 1, "empty tensor");
    assert!(
        H * W * C <= MAX_DOT_LEN,
        "reduction too long for an i32 accumulator"
    );
}

/// Fully connected layer, int8 in, int8 logits out (the firmware protocol
/// returns ten int8 logits; argmax runs on them).
///
/// Layout: `input` HWC `[H][W][C]`, weights `[O][H][W][C]`, `out` `[O]`.
/// Arithmetic per output `o`: `acc = sum w * (x - in_zp)` (exact in i32,
/// bounded at compile time) `+ bias[o]` (wrapping), then [`requantize`] by
/// `requant[o]` (ties up in the doubling high multiply, away from zero in the
/// shift), `+ out_zp`, clamped by `output.range`.
pub fn linear_s8<const H: usize, const W: usize, const C: usize, const O: usize>(
    layer: &LinearS8<'_, H, W, C, O>,
    input: &[[[i8; C]; W]; H],
    out: &mut [i8; O],
) {
    const { check_linear_shapes::<H, W, C, O>() };
    let zp = opaque_zero_point(layer.input_zero_point);
    let x = input.as_flattened().as_flattened();
    for ((o, w), (&b, &rq)) in out
        .iter_mut()
        .zip(layer.weights)
        .zip(layer.bias.iter().zip(layer.requant))
    {
        let acc = dot_s8(w.as_flattened().as_flattened(), x, zp);
        *o = layer.output.apply(requantize(acc.wrapping_add(b), rq));
    }
}

/// Reference for [`linear_s8`]: index loops over `o, y, x, c`.
#[allow(clippy::needless_range_loop)] // plain index loops on purpose
pub fn linear_s8_ref<const H: usize, const W: usize, const C: usize, const O: usize>(
    layer: &LinearS8<'_, H, W, C, O>,
    input: &[[[i8; C]; W]; H],
    out: &mut [i8; O],
) {
    const { check_linear_shapes::<H, W, C, O>() };
    for o in 0..O {
        let mut acc: i32 = 0;
        for y in 0..H {
            for x in 0..W {
                for c in 0..C {
                    let w = layer.weights[o][y][x][c] as i32;
                    acc += w * (input[y][x][c] as i32 - layer.input_zero_point as i32);
                }
            }
        }
        let acc = acc.wrapping_add(layer.bias[o]);
        let v = requantize_ref(acc, layer.requant[o]) as i64 + layer.output.zero_point as i64;
        let v = v
            .max(layer.output.range.min() as i64)
            .min(layer.output.range.max() as i64);
        out[o] = v as i8;
    }
}

/// Index of the largest value; on ties the first (lowest index) wins, as
/// `torch.argmax` does on CPU. `N >= 1` is checked at compile time.
pub fn argmax_s8<const N: usize>(x: &[i8; N]) -> usize {
    const { assert!(N >= 1, "argmax of nothing") };
    let mut best = 0;
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Reference for [`argmax_s8`]: find the maximum, then its first index.
#[allow(clippy::needless_range_loop)] // plain index loops on purpose
pub fn argmax_s8_ref<const N: usize>(x: &[i8; N]) -> usize {
    const { assert!(N >= 1, "argmax of nothing") };
    let mut m = i8::MIN;
    for &v in x {
        if v > m {
            m = v;
        }
    }
    let mut i = 0;
    while x[i] != m {
        i += 1;
    }
    i
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::kernels::ActRange;
    use crate::quant::quantize_multiplier;
    use crate::testutil::{flat3, round_half_away, Rng};

    fn case<const H: usize, const W: usize, const C: usize, const O: usize>(seed: u64) {
        let mut rng = Rng::new(seed);
        for _ in 0..40 {
            let mut weights = [[[[0i8; C]; W]; H]; O];
            for w in weights.iter_mut() {
                rng.fill_i8(flat3(w));
            }
            let mut bias = [0i32; O];
            let span = 1 << rng.below(26);
            for b in bias.iter_mut() {
                *b = match rng.below(20) {
                    0 => i32::MAX - rng.below(10) as i32,
                    1 => i32::MIN + rng.below(10) as i32,
                    _ => rng.range_i32(-span, span),
                };
            }
            let mut requant = [Requant::ZERO; O];
            for r in requant.iter_mut() {
                *r = rng.requant();
            }
            let zp = rng.i8();
            let output = match rng.below(3) {
                0 => OutputQuant::linear(zp),
                1 => OutputQuant::relu(zp),
                _ => {
                    let (a, b) = (rng.i8(), rng.i8());
                    OutputQuant {
                        zero_point: zp,
                        range: ActRange::new(a.min(b), a.max(b)).unwrap(),
                    }
                }
            };
            let layer = LinearS8 {
                weights: &weights,
                bias: &bias,
                requant: &requant,
                input_zero_point: rng.i8(),
                output,
            };
            let mut input = [[[0i8; C]; W]; H];
            rng.fill_i8(flat3(&mut input));
            let (mut fast, mut slow) = ([0i8; O], [1i8; O]);
            linear_s8(&layer, &input, &mut fast);
            linear_s8_ref(&layer, &input, &mut slow);
            assert_eq!(fast, slow);
            assert_eq!(argmax_s8(&fast), argmax_s8_ref(&fast));
        }
    }

    #[test]
    fn linear_equals_reference() {
        use crate::arch::{inception as i, inception_a as a, resnet as r, CLASSES};
        case::<{ i::P2 }, { i::P2 }, { a::OUT }, CLASSES>(1);
        case::<{ r::P2 }, { r::P2 }, { r::C2 }, CLASSES>(2);
        case::<1, 1, 1, 1>(3);
        case::<1, 1, 300, 7>(4);
        case::<3, 2, 5, 13>(5);
    }

    #[test]
    fn linear_is_within_one_lsb_of_real_arithmetic() {
        const H: usize = 4;
        const C: usize = 88;
        const O: usize = 10;
        let mut rng = Rng::new(7);
        let (mut exact, mut total) = (0usize, 0usize);
        for _ in 0..200 {
            let in_scale = 0.02 + 0.1 * rng.unit();
            let in_zp = rng.i8();
            let mut input = [[[0i8; C]; H]; H];
            rng.fill_uniform_i8(flat3(&mut input));
            let mut weights = [[[[0i8; C]; H]; H]; O];
            let (mut w_scale, mut bias, mut requant) = ([0f64; O], [0i32; O], [Requant::ZERO; O]);
            let std = ((H * H * C) as f64).sqrt() * (73.0 * 0.07) * (73.0 * 0.006);
            let out_scale = 3.0 * std / 127.0 * (0.5 + rng.unit());
            for o in 0..O {
                rng.fill_uniform_i8(flat3(&mut weights[o]));
                w_scale[o] = 0.001 + 0.01 * rng.unit();
                bias[o] = rng.range_i32(-50_000, 50_000);
                requant[o] = quantize_multiplier(in_scale * w_scale[o] / out_scale).unwrap();
            }
            let output = OutputQuant::linear(rng.i8());
            let layer = LinearS8 {
                weights: &weights,
                bias: &bias,
                requant: &requant,
                input_zero_point: in_zp,
                output,
            };
            let mut out = [0i8; O];
            linear_s8(&layer, &input, &mut out);
            for o in 0..O {
                let mut y = bias[o] as f64 * in_scale * w_scale[o];
                for (wy, xy) in weights[o].iter().zip(&input) {
                    for (wx, xx) in wy.iter().zip(xy) {
                        for (&w, &x) in wx.iter().zip(xx) {
                            y += w_scale[o] * w as f64 * in_scale * (x as f64 - in_zp as f64);
                        }
                    }
                }
                let q = (round_half_away(y / out_scale) + output.zero_point as f64)
                    .clamp(-128.0, 127.0);
                let got = out[o] as f64;
                assert!((got - q).abs() <= 1.0, "{got} vs {q}");
                exact += (got == q) as usize;
                total += 1;
            }
        }
        assert!(exact * 1000 >= total * 995, "{exact} of {total} exact");
    }

    #[test]
    fn argmax_first_max_wins() {
        assert_eq!(argmax_s8(&[5]), 0);
        assert_eq!(argmax_s8(&[-128, -128, -128]), 0);
        assert_eq!(argmax_s8(&[1, 7, 7, 3]), 1);
        assert_eq!(argmax_s8(&[1, 2, 3, 127]), 3);
        assert_eq!(argmax_s8(&[127, 127]), 0);
        let mut rng = Rng::new(3);
        for _ in 0..10_000 {
            let mut x = [0i8; 10];
            for v in &mut x {
                *v = rng.range_i32(-3, 3) as i8; // many ties
            }
            assert_eq!(argmax_s8(&x), argmax_s8_ref(&x));
            let i = argmax_s8(&x);
            assert!(x[..i].iter().all(|&v| v < x[i]) && x[i..].iter().all(|&v| v <= x[i]));
        }
    }
}
