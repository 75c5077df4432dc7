//! Residual add of two int8 tensors with different scales, TFLite `ADD`-style:
//! both inputs are brought to a common fixed-point scale, summed, and the sum
//! requantised to the output scale.

use super::epilogue::Epilogue;
use super::{ActRange, OutputQuant};
use crate::quant::{requantize, requantize_ref, Requant, Rescale};

/// TFLite's `left_shift` for int8 `ADD`: inputs are scaled up by `2^20`
/// before their multipliers (at most 0.5) so that the rounding of each stays
/// far below one output step. `255 << 20` still fits an i32.
pub const ADD_LEFT_SHIFT: i32 = 20;

/// Quantisation parameters of one residual add `out = a + b`.
///
/// With `twice_max = 2 * max(a_scale, b_scale)`, TFLite's choice:
/// `a = a_scale / twice_max`, `b = b_scale / twice_max` (both at most 0.5) and
/// `out = twice_max / (2^ADD_LEFT_SHIFT * out_scale)`. `AddS8::from_scales`
/// (feature `std`) computes them on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddS8 {
    /// Zero point of input `a`.
    pub a_zero_point: i8,
    /// Multiplier of input `a` to the common scale.
    pub a: Requant,
    /// Zero point of input `b`.
    pub b_zero_point: i8,
    /// Multiplier of input `b` to the common scale.
    pub b: Requant,
    /// Multiplier from the common scale to the output scale.
    pub out: Requant,
    /// Output zero point and fused activation.
    pub output: OutputQuant,
}

impl AddS8 {
    /// TFLite's parameters for `out = a + b` from the real scales (host side).
    /// `None` if a scale is not positive and finite, or a multiplier is out
    /// of range.
    #[cfg(any(feature = "std", test))]
    pub fn from_scales(
        (a_scale, a_zero_point): (f64, i8),
        (b_scale, b_zero_point): (f64, i8),
        out_scale: f64,
        output: OutputQuant,
    ) -> Option<AddS8> {
        use crate::quant::quantize_multiplier;
        let ok = |s: f64| s.is_finite() && s > 0.0;
        if !(ok(a_scale) && ok(b_scale) && ok(out_scale)) {
            return None;
        }
        let twice_max = 2.0 * a_scale.max(b_scale);
        Some(AddS8 {
            a_zero_point,
            a: quantize_multiplier(a_scale / twice_max)?,
            b_zero_point,
            b: quantize_multiplier(b_scale / twice_max)?,
            out: quantize_multiplier(twice_max / ((1u64 << ADD_LEFT_SHIFT) as f64 * out_scale))?,
            output,
        })
    }

    /// One element: `clamp(requant_out(requant_a((a - a_zp) << 20) +
    /// requant_b((b - b_zp) << 20)) + out_zp)`; the middle sum saturates
    /// (never reached with multipliers from `AddS8::from_scales`).
    #[inline(always)]
    pub fn apply(&self, a: i8, b: i8) -> i8 {
        let a = requantize(
            (a as i32 - self.a_zero_point as i32) << ADD_LEFT_SHIFT,
            self.a,
        );
        let b = requantize(
            (b as i32 - self.b_zero_point as i32) << ADD_LEFT_SHIFT,
            self.b,
        );
        self.output.apply(requantize(a.saturating_add(b), self.out))
    }
}

/// An add's first input mapped to the common scale:
/// `requant_a((v - a_zp) << 20)` for every int8 `v` (index `v + 128`), and
/// likewise for the second input. Depends on the parameters only; built
/// per call (512 requantisations).
pub type AddLut = [[i32; 256]; 2];

/// Fills the tables of `add`.
pub(super) fn fill_add_lut(add: &AddS8, lut: &mut AddLut) {
    let [a, b] = lut;
    for (t, m, zp) in [(a, add.a, add.a_zero_point), (b, add.b, add.b_zero_point)] {
        let x0 = (-128 - zp as i32) << ADD_LEFT_SHIFT;
        Rescale::new(m).apply_steps(x0, 1 << ADD_LEFT_SHIFT, t);
    }
}

/// A bound on `|table(lut_a, a) + table(lut_b, b)|` for the tables of
/// `add`: what its output requantisation sees.
pub(super) fn add_sum_bound(add: &AddS8) -> i64 {
    let x_max = 255 << ADD_LEFT_SHIFT;
    add.a.bound(x_max) + add.b.bound(x_max)
}

/// The entry of int8 value `v` in a table: index `v + 128`, as the byte
/// `v ^ 0x80`.
#[inline(always)]
pub(super) fn table(t: &[i32; 256], v: i8) -> i32 {
    t[(v as u8 ^ 0x80) as usize]
}

/// Residual add: `out = a + b`, element by element, requantised.
///
/// Layout: `a`, `b` and `out` are HWC `[H][W][C]` (any layout works, as long
/// as all three agree). Rounding: three [`requantize`] steps (ties up in the
/// doubling high multiply, away from zero in the shift) as in TFLite's
/// reference `ADD`; within one output step of the real sum. Fused ReLU via
/// `output.range`. Each input's requantisation comes from a table built
/// once per call (`lut`, 2 KB of scratch); the output's runs through the
/// conv kernels' epilogue, a pixel's channels at a time.
pub fn add_requant_s8<const H: usize, const W: usize, const C: usize>(
    p: &AddS8,
    a: &[[[i8; C]; W]; H],
    b: &[[[i8; C]; W]; H],
    out: &mut [[[i8; C]; W]; H],
    lut: &mut AddLut,
) {
    fill_add_lut(p, lut);
    let [lut_a, lut_b] = &*lut;
    let sum = Epilogue::<C>::uniform(p.out, add_sum_bound(p), p.output, ActRange::FULL);
    sum.store_add(
        out.as_flattened_mut().as_flattened_mut(),
        (
            a.as_flattened().as_flattened(),
            b.as_flattened().as_flattened(),
        ),
        (lut_a, lut_b),
    );
}

/// [`add_requant_s8`] writing over its first input (`a_out = a_out + b`), so a
/// residual block needs no third buffer. Same bytes as the out-of-place form.
#[cfg(test)] // no network runs it: the identity blocks add out of place
pub fn add_requant_inplace_s8<const H: usize, const W: usize, const C: usize>(
    p: &AddS8,
    a_out: &mut [[[i8; C]; W]; H],
    b: &[[[i8; C]; W]; H],
) {
    let b = b.as_flattened().as_flattened();
    for (o, &b) in a_out
        .as_flattened_mut()
        .as_flattened_mut()
        .iter_mut()
        .zip(b)
    {
        *o = p.apply(*o, b);
    }
}

/// Reference for [`add_requant_s8`]: index loops, the steps written out.
#[allow(clippy::needless_range_loop)] // plain index loops on purpose
pub fn add_requant_s8_ref<const H: usize, const W: usize, const C: usize>(
    p: &AddS8,
    a: &[[[i8; C]; W]; H],
    b: &[[[i8; C]; W]; H],
    out: &mut [[[i8; C]; W]; H],
) {
    for y in 0..H {
        for x in 0..W {
            for c in 0..C {
                let da = (a[y][x][c] as i32 - p.a_zero_point as i32) * (1 << ADD_LEFT_SHIFT);
                let db = (b[y][x][c] as i32 - p.b_zero_point as i32) * (1 << ADD_LEFT_SHIFT);
                let sa = requantize_ref(da, p.a) as i64;
                let sb = requantize_ref(db, p.b) as i64;
                let sum = (sa + sb).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
                let v = requantize_ref(sum, p.out) as i64 + p.output.zero_point as i64;
                let v = v
                    .max(p.output.range.min() as i64)
                    .min(p.output.range.max() as i64);
                out[y][x][c] = v as i8;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::kernels::ActRange;
    use crate::testutil::{flat3, round_half_away, Rng};

    fn random_output(rng: &mut Rng) -> OutputQuant {
        let zp = rng.i8();
        match rng.below(3) {
            0 => OutputQuant::linear(zp),
            1 => OutputQuant::relu(zp),
            _ => {
                let (a, b) = (rng.i8(), rng.i8());
                OutputQuant {
                    zero_point: zp,
                    range: ActRange::new(a.min(b), a.max(b)).unwrap(),
                }
            }
        }
    }

    fn case<const H: usize, const W: usize, const C: usize>(seed: u64) {
        let mut rng = Rng::new(seed);
        for i in 0..40 {
            let p = if i % 2 == 0 {
                // Any multipliers at all, extremes included.
                AddS8 {
                    a_zero_point: rng.i8(),
                    a: rng.requant(),
                    b_zero_point: rng.i8(),
                    b: rng.requant(),
                    out: rng.requant(),
                    output: random_output(&mut rng),
                }
            } else {
                let s = |rng: &mut Rng| 0.01 * 2f64.powf(rng.unit() * 4.0 - 2.0);
                AddS8::from_scales(
                    (s(&mut rng), rng.i8()),
                    (s(&mut rng), rng.i8()),
                    s(&mut rng),
                    random_output(&mut rng),
                )
                .unwrap()
            };
            let (mut a, mut b) = ([[[0i8; C]; W]; H], [[[0i8; C]; W]; H]);
            rng.fill_i8(flat3(&mut a));
            rng.fill_i8(flat3(&mut b));
            let mut fast = [[[0i8; C]; W]; H];
            let mut slow = [[[1i8; C]; W]; H];
            add_requant_s8(&p, &a, &b, &mut fast, &mut [[0; 256]; 2]);
            add_requant_s8_ref(&p, &a, &b, &mut slow);
            assert_eq!(fast, slow, "{p:?}");
            let mut inplace = a;
            add_requant_inplace_s8(&p, &mut inplace, &b);
            assert_eq!(inplace, fast);
        }
    }

    #[test]
    fn add_equals_reference() {
        use crate::arch::{resnet as r, IMAGE_SIDE as S};
        case::<S, S, { r::C1 }>(1);
        case::<{ r::P1 }, { r::P1 }, { r::C2 }>(2);
        case::<1, 1, 1>(3);
        case::<3, 7, 5>(4);
    }

    /// Against the real sum, quantised with round-half-away: within 1 LSB,
    /// and exact for nearly all elements.
    #[test]
    fn add_is_within_one_lsb_of_real_arithmetic() {
        let mut rng = Rng::new(99);
        let (mut exact, mut total) = (0usize, 0usize);
        for _ in 0..2_000 {
            let sa = 0.01 * 2f64.powf(rng.unit() * 6.0 - 3.0);
            let sb = 0.01 * 2f64.powf(rng.unit() * 6.0 - 3.0);
            // An output scale that fits the sum's range, sometimes too small
            // (so saturation is exercised).
            let so = (sa + sb) * (0.3 + rng.unit());
            let (za, zb, zo) = (rng.i8(), rng.i8(), rng.i8());
            let output = if rng.below(2) == 0 {
                OutputQuant::linear(zo)
            } else {
                OutputQuant::relu(zo)
            };
            let p = AddS8::from_scales((sa, za), (sb, zb), so, output).unwrap();
            for _ in 0..50 {
                let (a, b) = (rng.i8(), rng.i8());
                let real = sa * (a as f64 - za as f64) + sb * (b as f64 - zb as f64);
                let q = (round_half_away(real / so) + zo as f64)
                    .clamp(output.range.min() as f64, output.range.max() as f64);
                let got = p.apply(a, b) as f64;
                assert!((got - q).abs() <= 1.0, "{a} {b} {p:?}: {got} vs {q}");
                exact += (got == q) as usize;
                total += 1;
            }
        }
        assert!(exact * 1000 >= total * 998, "{exact} of {total} exact");
    }

    #[test]
    fn add_hand_values_and_saturation() {
        // Same scales, zero points 0, out scale = in scale: out = a + b, saturating.
        let p = AddS8::from_scales((0.1, 0), (0.1, 0), 0.1, OutputQuant::linear(0)).unwrap();
        assert_eq!(p.a, Requant::new(1 << 30, 0).unwrap()); // 0.5
        assert_eq!(p.apply(3, 4), 7);
        assert_eq!(p.apply(-3, -4), -7);
        assert_eq!(p.apply(100, 100), 127);
        assert_eq!(p.apply(-100, -100), -128);
        assert_eq!(p.apply(127, -128), -1);
        let relu = AddS8 {
            output: OutputQuant::relu(0),
            ..p
        };
        assert_eq!(relu.apply(-3, 1), 0);
        assert_eq!(relu.apply(3, 1), 4);
        // Bad scales are refused.
        assert!(AddS8::from_scales((0.0, 0), (0.1, 0), 0.1, OutputQuant::linear(0)).is_none());
        assert!(AddS8::from_scales((0.1, 0), (f64::NAN, 0), 0.1, OutputQuant::linear(0)).is_none());
    }
}
