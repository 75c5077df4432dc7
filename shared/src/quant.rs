//! Requantisation arithmetic: fixed point only, bit-exact with TFLite's and
//! CMSIS-NN's `MultiplyByQuantizedMultiplier` (the double-rounding variant).
//!
//! A real multiplier `r` (for a conv: `in_scale * w_scale[c] / out_scale`) is
//! stored as a Q31 `multiplier` in `[2^30, 2^31)` and a power-of-two `shift`:
//! `r ≈ multiplier * 2^(shift - 31)`. [`requantize`] applies it to an i32
//! accumulator with integer operations only:
//!
//! 1. left shift by `max(shift, 0)`, saturating to the i32 range (TFLite
//!    leaves that overflow undefined). So for `shift > 0` the result is only
//!    meaningful for `|acc| < 2^(31 - shift)`; our accumulators stay below
//!    2^27 and our multipliers below 2^4;
//! 2. [`saturating_rounding_doubling_high_mul`]: `x * multiplier / 2^31`,
//!    rounded to nearest with ties towards **+infinity**;
//! 3. [`rounding_divide_by_pot`]: divided by `2^max(-shift, 0)`, rounded to
//!    nearest with ties **away from zero**.
//!
//! So the result is `RHA(RHU(x * 2^ls * m / 2^31) / 2^rs)` with
//! `ls = max(shift, 0)`, `rs = max(-shift, 0)`. Against the real
//! `round_half_away(acc * r)` it differs by at most 1, and only when
//! `acc * r` lies within `2^-(rs+1) + |acc * r| * 2^-31` of a half-integer
//! (the first rounding can land exactly on a tie of the second, and the
//! multiplier itself is rounded to 31 bits). The tests check both statements.

/// A real multiplier in fixed point: `multiplier * 2^(shift - 31)`.
///
/// Invariants (checked by [`Requant::new`]): `multiplier >= 0` and
/// `-31 <= shift <= 30`, the range TFLite's `QuantizeMultiplier` produces.
/// With them, [`requantize`] is total: it never panics and never overflows.
/// The host produces values with `quantize_multiplier` (feature `std`); they
/// are normalised (`multiplier` in `[2^30, 2^31)`, or zero), but any value in
/// range works.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requant {
    multiplier: i32,
    shift: i32,
}

impl Requant {
    /// The smallest allowed shift (a right shift by 31).
    pub const MIN_SHIFT: i32 = -31;
    /// The largest allowed shift (a left shift by 30).
    pub const MAX_SHIFT: i32 = 30;
    /// The real multiplier 0: every accumulator maps to 0.
    pub const ZERO: Requant = Requant {
        multiplier: 0,
        shift: 0,
    };
    /// The real multiplier 1.0 (`2^30 * 2^(1 - 31)`): the identity.
    pub const ONE: Requant = Requant {
        multiplier: 1 << 30,
        shift: 1,
    };

    /// A multiplier from its stored parts, or `None` if `multiplier` is
    /// negative or `shift` is outside `MIN_SHIFT..=MAX_SHIFT`. Model decoding
    /// goes through here, so a corrupt file cannot make a kernel misbehave.
    pub const fn new(multiplier: i32, shift: i32) -> Option<Requant> {
        if multiplier < 0 || shift < Self::MIN_SHIFT || shift > Self::MAX_SHIFT {
            None
        } else {
            Some(Requant { multiplier, shift })
        }
    }

    /// The Q31 mantissa.
    pub const fn multiplier(self) -> i32 {
        self.multiplier
    }

    /// The power-of-two exponent (positive: left shift; negative: right shift).
    pub const fn shift(self) -> i32 {
        self.shift
    }

    /// An upper bound on `|requantize(x, self)|` over `|x| <= x_max`: each
    /// of the two roundings adds at most 1. For a left shift, `i32::MAX`
    /// (nothing better is needed).
    pub const fn bound(self, x_max: i64) -> i64 {
        if self.shift > 0 {
            return i32::MAX as i64;
        }
        ((x_max * self.multiplier as i64) >> (31 - self.shift)) + 2
    }

    /// The real value this multiplier stands for (host side, for reports).
    #[cfg(any(feature = "std", test))]
    pub fn to_f64(self) -> f64 {
        self.multiplier as f64 * 2f64.powi(self.shift - 31)
    }
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: the high 32 bits of
/// `2 * a * b`, i.e. `a * b / 2^31`, rounded to nearest with ties towards
/// +infinity (the nudge is `2^30` for a non-negative product, `1 - 2^30`
/// otherwise, then C's truncating division). The one overflowing input,
/// `a = b = i32::MIN`, saturates to `i32::MAX`.
#[inline(always)]
pub const fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Truncating division, as in the C original (LLVM turns it into shifts).
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest,
/// ties away from zero. `exponent` must be in `0..=31` (it is clamped there,
/// so the function is total).
#[inline(always)]
pub const fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let e = if exponent < 0 {
        0
    } else if exponent > 31 {
        31
    } else {
        exponent
    };
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> e) + (remainder > threshold) as i32
}

/// Applies a real multiplier to an accumulator: TFLite's
/// `MultiplyByQuantizedMultiplier(acc, multiplier, shift)`, bit for bit
/// (see the module docs for the rounding rule). The left shift, when
/// `shift > 0`, saturates to the i32 range. The arithmetic is
/// [`Rescale`]'s; a kernel applying one multiplier many times keeps the
/// `Rescale`.
#[inline(always)]
pub const fn requantize(acc: i32, m: Requant) -> i32 {
    Rescale::new(m).apply(acc)
}

/// [`requantize`] by one multiplier, many times: what depends only on the
/// multiplier is worked out once (a layer's epilogue builds one per output
/// channel and applies it to every pixel).
///
/// For a right shift `e = -shift >= 1` (every conv of our networks) the two
/// roundings fold into one 64-bit multiply-accumulate and one shift:
///
/// `RDBP(SRDHM(x, m), e) = (x*m + 2^30 + 2^(30+e) - [x < 0] * 2^31) >> (31 + e)`
///
/// because `floor((floor(A / 2^31) + c) / 2^e) = floor((A + c * 2^31) / 2^(31+e))`
/// for `A = x*m + 2^30` and the rounding term `c = 2^(e-1) - [A < 0]`, and
/// `[A < 0]` may be replaced by `[x < 0]`: they differ only when
/// `floor(A / 2^31) = 0`, where both give 0. (`m >= 0`; the tests compare
/// with [`requantize_ref`].)
#[derive(Clone, Copy, Debug)]
#[repr(C)] // fields in the order `apply` reads them (the firmware's epilogue loads them with one LDM)
pub struct Rescale {
    /// High-word form: `2^30 + 2^(30+e)`. Left-shift form: 0.
    base: i64,
    multiplier: i32,
    /// High-word form (a right shift `e >= 1`): `e - 1`, the shift of the
    /// product's high word. Left-shift form (`shift >= 0`): `-1 - shift`.
    high_shift: i32,
}

impl Rescale {
    /// Precomputes `m`.
    #[inline(always)]
    pub const fn new(m: Requant) -> Rescale {
        if m.shift < 0 {
            let e = -m.shift;
            Rescale {
                base: (1 << 30) + (1i64 << (30 + e)),
                multiplier: m.multiplier,
                high_shift: e - 1,
            }
        } else {
            Rescale {
                base: 0,
                multiplier: m.multiplier,
                high_shift: -1 - m.shift,
            }
        }
    }

    /// Whether `apply` is the folded form: the high word of
    /// `x*multiplier + base - [x < 0] * 2^31`, shifted right by `high_shift`
    /// (what the firmware's assembly epilogue computes).
    #[inline(always)]
    pub const fn is_high_word(&self) -> bool {
        self.high_shift >= 0
    }

    /// [`requantize`]`(x, m)`: bit for bit [`requantize_ref`].
    #[inline(always)]
    pub const fn apply(&self, x: i32) -> i32 {
        if self.high_shift < 0 {
            // shift >= 0: saturating left shift, then the doubling high
            // multiply, whose two nudges meet for `m >= 0`: `(x*m + 2^30)
            // >> 31` (floor) is the truncating division in both signs.
            let x = saturate_i32((x as i64) << (-1 - self.high_shift));
            return ((x as i64 * self.multiplier as i64 + (1 << 30)) >> 31) as i32;
        }
        let negative = ((x >> 31) as i64) << 31; // -2^31 if x < 0
        let v = x as i64 * self.multiplier as i64 + self.base + negative;
        // The total shift 31 + e is at least 32: one shift of the high word.
        ((v >> 32) as i32) >> self.high_shift
    }

    /// `out[k] = self.apply(x0 + k * step)` for every `k`, where every
    /// `x0 + k * step` must fit an i32. With `step > 0` the products go up
    /// by a constant: one 64-bit add per value instead of a multiply (and
    /// in the high-word form the sign term changes once, where `x` crosses
    /// zero; in the left-shift form no value may saturate, or each is
    /// computed on its own). The sums are exact in i64, so the bits are
    /// `apply`'s. (An add's input tables: 256 values each.)
    #[inline(always)]
    pub fn apply_steps(&self, x0: i32, step: i32, out: &mut [i32]) {
        let m = self.multiplier as i64;
        let shift = -1 - self.high_shift;
        let last = x0 as i64 + (out.len() as i64 - 1) * step as i64;
        let fits = |x: i64| i32::try_from(x << shift.clamp(0, 31)).is_ok();
        if step <= 0 || (shift >= 0 && !(fits(x0 as i64) && fits(last))) {
            for (k, o) in (0i32..).zip(out) {
                *o = self.apply(x0.wrapping_add(k.wrapping_mul(step)));
            }
            return;
        }
        // The step after the last value is taken but never read, and may
        // leave the i64 range: hence the wrapping adds. Every value read is
        // the exact sum `apply` forms.
        if shift >= 0 {
            // No value saturates (the ends do not, and the values are
            // monotonic): `((x << shift) * m + 2^30) >> 31`, stepped.
            let d = ((step as i64) << shift).wrapping_mul(m);
            let mut v = ((x0 as i64) << shift) * m + (1 << 30);
            for o in out {
                *o = (v >> 31) as i32;
                v = v.wrapping_add(d);
            }
            return;
        }
        // The first `below` values are negative: `k < ceil(-x0 / step)`.
        let below = if x0 < 0 {
            (x0.unsigned_abs() as u64).div_ceil(step as u64) as usize
        } else {
            0
        };
        let (negative, rest) = out.split_at_mut(below.min(out.len()));
        let d = step as i64 * m;
        let mut v = x0 as i64 * m + self.base - (1 << 31);
        for o in negative {
            *o = ((v >> 32) as i32) >> self.high_shift;
            v = v.wrapping_add(d);
        }
        v = v.wrapping_add(1 << 31);
        for o in rest {
            *o = ((v >> 32) as i32) >> self.high_shift;
            v = v.wrapping_add(d);
        }
    }
}

/// `v` saturated to the i32 range (`Ord::clamp` is not `const`).
#[inline(always)]
const fn saturate_i32(v: i64) -> i32 {
    if v > i32::MAX as i64 {
        i32::MAX
    } else if v < i32::MIN as i64 {
        i32::MIN
    } else {
        v as i32
    }
}

/// The reference for [`requantize`]: gemmlowp's steps as written
/// ([`saturating_rounding_doubling_high_mul`], [`rounding_divide_by_pot`]),
/// in 64-bit arithmetic.
#[inline(always)]
pub const fn requantize_ref(acc: i32, m: Requant) -> i32 {
    let (left, right) = if m.shift > 0 {
        (m.shift, 0)
    } else {
        (0, -m.shift)
    };
    let shifted = saturate_i32((acc as i64) << left);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(shifted, m.multiplier),
        right,
    )
}

/// TFLite's `QuantizeMultiplier` (host side): splits `real` frexp-style into
/// `q * 2^shift` with `q` in `[0.5, 1)` and rounds `q * 2^31` to nearest
/// (ties away from zero); a mantissa that rounds up to `2^31` becomes `2^30`
/// with `shift + 1`. Values below `2^-32` (shift < -31) become
/// [`Requant::ZERO`], as in TFLite.
///
/// Returns `None` for a negative, NaN or infinite `real`, or one too large to
/// represent (`>= 2^30`, which needs `shift > 30`).
#[cfg(any(feature = "std", test))]
pub fn quantize_multiplier(real: f64) -> Option<Requant> {
    if real.is_nan() || real.is_infinite() || real < 0.0 {
        return None;
    }
    let bits = real.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if real == 0.0 || biased == 0 {
        // Zero or subnormal (< 2^-1022): far below 2^-32.
        return Some(Requant::ZERO);
    }
    // frexp: real = q * 2^shift, q in [0.5, 1).
    let mut shift = biased - 1022;
    let q = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    let mut q_fixed = (q * (1u64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < Requant::MIN_SHIFT {
        return Some(Requant::ZERO);
    }
    Requant::new(q_fixed as i32, shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    fn q(real: f64) -> Requant {
        quantize_multiplier(real).unwrap()
    }

    // Hand-computed: frexp(1.0) = 0.5 * 2^1, 0.5 * 2^31 = 2^30, etc.
    #[test]
    fn quantize_multiplier_hand_values() {
        assert_eq!(q(1.0), Requant::ONE);
        assert_eq!(q(0.5), Requant::new(1 << 30, 0).unwrap());
        assert_eq!(q(0.75), Requant::new(1_610_612_736, 0).unwrap());
        // 0.1 = 0.8 * 2^-3; 0.8 * 2^31 = 1717986918.4 -> 1717986918.
        assert_eq!(q(0.1), Requant::new(1_717_986_918, -3).unwrap());
        // 3.0 = 0.75 * 2^2.
        assert_eq!(q(3.0), Requant::new(1_610_612_736, 2).unwrap());
        // The mantissa rounds up to 2^31: renormalised.
        assert_eq!(q(1.0 - 2f64.powi(-40)), Requant::ONE);
        // Smallest representable: 2^-32 = 0.5 * 2^-31.
        assert_eq!(q(2f64.powi(-32)), Requant::new(1 << 30, -31).unwrap());
        assert_eq!(q(2f64.powi(-33)), Requant::ZERO);
        assert_eq!(q(0.0), Requant::ZERO);
        assert_eq!(q(f64::MIN_POSITIVE / 4.0), Requant::ZERO);
        // Largest: just below 2^30 (shift 30).
        assert_eq!(q(2f64.powi(29)), Requant::new(1 << 30, 30).unwrap());
        assert_eq!(quantize_multiplier(2f64.powi(30)), None);
        assert_eq!(quantize_multiplier(-0.5), None);
        assert_eq!(quantize_multiplier(f64::NAN), None);
        assert_eq!(quantize_multiplier(f64::INFINITY), None);
    }

    #[test]
    fn requant_new_checks_its_range() {
        assert!(Requant::new(-1, 0).is_none());
        assert!(Requant::new(1 << 30, -32).is_none());
        assert!(Requant::new(1 << 30, 31).is_none());
        assert!(Requant::new(i32::MAX, 30).is_some());
        assert!(Requant::new(0, -31).is_some());
    }

    // The fast form against the reference, on random and extreme values.
    #[test]
    fn requantize_equals_the_reference() {
        let mut rng = Rng::new(11);
        let edges = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX];
        for i in 0..2_000_000u32 {
            let m = rng.requant();
            let acc = match i % 4 {
                0 => edges[rng.below(edges.len() as u64) as usize],
                1 => rng.range_i32(-(1 << 20), 1 << 20),
                _ => rng.next_u32() as i32,
            };
            assert_eq!(requantize(acc, m), requantize_ref(acc, m), "{acc} {m:?}");
            assert_eq!(
                Rescale::new(m).apply(acc),
                requantize_ref(acc, m),
                "{acc} {m:?}"
            );
        }
        for shift in Requant::MIN_SHIFT..=Requant::MAX_SHIFT {
            for mult in [0, 1, 1 << 30, i32::MAX] {
                let m = Requant::new(mult, shift).unwrap();
                for acc in edges {
                    assert_eq!(requantize(acc, m), requantize_ref(acc, m), "{acc} {m:?}");
                    assert_eq!(
                        Rescale::new(m).apply(acc),
                        requantize_ref(acc, m),
                        "{acc} {m:?}"
                    );
                }
            }
        }
    }

    // Stepped against one apply per value: both forms, starting below,
    // at and above zero, crossing it, and the add tables' own steps.
    #[test]
    fn apply_steps_equals_apply_per_value() {
        let mut rng = Rng::new(12);
        for i in 0..20_000u32 {
            let r = Rescale::new(rng.requant());
            let step = match i % 3 {
                0 => 1 << 20,
                1 => rng.range_i32(1, 1 << 16),
                _ => rng.range_i32(-(1 << 16), 1 << 16),
            };
            let n = rng.below(300) as i32;
            // |k * step| < 2^29 and |x0| < 2^30: every x inside the i32
            // range. The second kind crosses zero near a random k.
            let x0 = match rng.below(3) {
                0 => rng.range_i32(-(1 << 30), 1 << 30),
                1 => -(rng.below(n as u64 + 1) as i32) * step + rng.range_i32(-3, 3),
                _ => 0,
            };
            let mut out = vec![0i32; n as usize];
            r.apply_steps(x0, step, &mut out);
            for (k, &o) in out.iter().enumerate() {
                let x = x0 + k as i32 * step;
                assert_eq!(o, r.apply(x), "{r:?} x0 {x0} step {step} k {k}");
            }
        }
    }

    // Hand-computed requantisations, including both tie rules.
    #[test]
    fn requantize_hand_values() {
        let half = q(0.5); // (2^30, 0): only the doubling high mul rounds
        assert_eq!(requantize(100, half), 50);
        assert_eq!(requantize(3, half), 2); // 1.5 -> 2 (tie up)
        assert_eq!(requantize(-3, half), -1); // -1.5 -> -1 (tie up, not away)
        let quarter = q(0.25); // (2^30, -1): the power-of-two division rounds
        assert_eq!(requantize(6, quarter), 2); // 1.5 -> 2
        assert_eq!(requantize(-6, quarter), -2); // -1.5 -> -2 (tie away)
        assert_eq!(requantize(-2, quarter), -1); // -0.5 -> -1
        assert_eq!(requantize(2, quarter), 1); // 0.5 -> 1
        assert_eq!(requantize(-5, quarter), -1); // -1.25 -> -1
        assert_eq!(requantize(12345, Requant::ONE), 12345);
        assert_eq!(requantize(-12345, Requant::ONE), -12345);
        assert_eq!(requantize(7, q(3.0)), 21);
        // 0.1 is 1717986918 * 2^-34, slightly below 0.1: 1000 * that = 99.99999998.
        assert_eq!(requantize(1000, q(0.1)), 100);
        // Double rounding: -15 * 0.1 (stored slightly below 0.1) is
        // -1.4999999997, but the high mul rounds -11.99999999 to -12 and
        // -12 / 2^3 = -1.5 is then rounded away from zero.
        assert_eq!(requantize(-15, q(0.1)), -2);
    }

    // Extremes: no panic, saturation where the value does not fit.
    #[test]
    fn requantize_extremes() {
        let max_left = Requant::new(i32::MAX, 30).unwrap();
        // 2^30 - 1/2: the tie goes up.
        assert_eq!(requantize(1, max_left), 1 << 30);
        // 2 << 30 saturates to 2^31 - 1, then * (2^31 - 1) / 2^31.
        assert_eq!(requantize(2, max_left), i32::MAX - 1);
        assert_eq!(requantize(i32::MAX, max_left), i32::MAX - 1);
        // Saturated to i32::MIN, then * (2^31 - 1) / 2^31 exactly.
        assert_eq!(requantize(i32::MIN, max_left), -i32::MAX);
        // -(2^30 - 1/2): the tie goes up.
        assert_eq!(requantize(-1, max_left), -(1 << 30) + 1);
        let max_right = Requant::new(i32::MAX, -31).unwrap();
        // (2^31 - 1)^2 / 2^31 / 2^31 = 0.99999999907 -> 1.
        assert_eq!(requantize(i32::MAX, max_right), 1);
        assert_eq!(requantize(i32::MIN, max_right), -1);
        assert_eq!(requantize(1 << 20, max_right), 0);
        for acc in [i32::MIN, -1, 0, 1, i32::MAX] {
            assert_eq!(requantize(acc, Requant::ZERO), 0);
            assert_eq!(requantize(acc, Requant::new(0, 30).unwrap()), 0);
        }
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(rounding_divide_by_pot(-(1 << 30), 31), -1); // -0.5 -> -1
        assert_eq!(rounding_divide_by_pot(1 << 30, 31), 1); // 0.5 -> 1
        assert_eq!(rounding_divide_by_pot((1 << 30) - 1, 31), 0);
    }

    /// The rounding rule, computed independently in i128 with floor division:
    /// `RHA(RHU(x * 2^ls * m / 2^31) / 2^rs)`.
    fn oracle(acc: i32, m: Requant) -> i32 {
        fn floor_div(a: i128, b: i128) -> i128 {
            a.div_euclid(b)
        }
        let ls = m.shift().max(0);
        let rs = (-m.shift()).max(0);
        let x = ((acc as i128) << ls).clamp(i32::MIN as i128, i32::MAX as i128);
        let p = x * m.multiplier() as i128;
        // Round half up: floor(p / 2^31 + 1/2).
        let r1 = floor_div(2 * p + (1i128 << 31), 1i128 << 32);
        // Round half away from zero of r1 / 2^rs.
        let d = 1i128 << rs;
        let r2 = if r1 >= 0 {
            floor_div(2 * r1 + d, 2 * d)
        } else {
            -floor_div(-2 * r1 + d, 2 * d)
        };
        r2 as i32
    }

    fn random_acc(rng: &mut Rng) -> i32 {
        // A spread of magnitudes, not just uniform 32-bit values.
        let bits = rng.below(32) as u32;
        (rng.next_u64() as i64 >> (63 - bits)) as i32
    }

    #[test]
    fn requantize_equals_the_integer_oracle() {
        let mut rng = Rng::new(0x5eed_0001);
        for _ in 0..200_000 {
            let shift = rng.range_i32(Requant::MIN_SHIFT, Requant::MAX_SHIFT);
            let multiplier = match rng.below(4) {
                0 => rng.next_u32() as i32 & i32::MAX,
                _ => (1 << 30) | (rng.next_u32() as i32 & ((1 << 30) - 1)),
            };
            let m = Requant::new(multiplier, shift).unwrap();
            let acc = random_acc(&mut rng);
            assert_eq!(requantize(acc, m), oracle(acc, m), "acc {acc} m {m:?}");
        }
        // Exact ties of both roundings.
        for acc in -4096..=4096 {
            for shift in [-12, -3, -1, 0, 1, 5] {
                let m = Requant::new(1 << 30, shift).unwrap();
                assert_eq!(requantize(acc, m), oracle(acc, m));
            }
        }
    }

    /// Against the real computation `round_half_away(acc * real)` in f64:
    /// never more than 1 apart, and equal whenever `acc * real` is farther
    /// than `2^-(rs+1) + |acc * real| * 2^-30` from a half-integer.
    #[test]
    fn requantize_matches_f64_within_one_and_exactly_off_ties() {
        let mut rng = Rng::new(0x5eed_0002);
        let (mut checked, mut near_ties, mut off_by_one) = (0u32, 0u32, 0u32);
        for _ in 0..200_000 {
            // Real multipliers like a conv's: 2^-20 .. 2^4, log-uniform.
            let real = 2f64.powf(rng.unit() * 24.0 - 20.0);
            let m = q(real);
            let acc = random_acc(&mut rng) >> rng.below(8);
            let exact = acc as f64 * real;
            if ((acc as i64) << m.shift().max(0)).unsigned_abs() > i32::MAX as u64 {
                continue; // the left shift saturates (see the module docs)
            }
            let got = requantize(acc, m);
            let want = exact.round();
            let diff = (got as f64 - want).abs();
            assert!(diff <= 1.0, "acc {acc} real {real} got {got} want {want}");
            let rs = (-m.shift()).max(0);
            let dist_to_tie = ((exact - exact.floor()) - 0.5).abs();
            // The documented bound, plus f64's own error in `exact`.
            let margin = 2f64.powi(-(rs + 1)) + exact.abs() * (2f64.powi(-31) + 2f64.powi(-50));
            if margin > 0.05 {
                continue; // the claim is too weak to test for this value
            }
            checked += 1;
            if dist_to_tie > margin {
                assert_eq!(got as f64, want, "acc {acc} real {real}");
            } else {
                near_ties += 1;
                off_by_one += (diff != 0.0) as u32;
            }
        }
        // Most values are checked exactly; near-ties are rare on random data.
        assert!(checked > 100_000, "{checked} checked");
        assert!(
            near_ties * 100 < checked,
            "{near_ties} near ties of {checked}"
        );
        assert!(off_by_one <= near_ties);
        println!("{checked} checked, {near_ties} near ties, {off_by_one} off by one");
    }

    #[test]
    fn quantize_multiplier_is_accurate_to_31_bits() {
        let mut rng = Rng::new(0x5eed_0003);
        for _ in 0..100_000 {
            let real = 2f64.powf(rng.unit() * 60.0 - 31.0);
            let m = q(real);
            assert!(m.multiplier() >= 1 << 30, "{real} -> {m:?}");
            let rel = (m.to_f64() - real).abs() / real;
            assert!(rel <= 2f64.powi(-31), "{real} -> {m:?}: {rel}");
        }
    }
}
