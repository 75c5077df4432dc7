//! Test support, for the tests here, the host's and the firmware's boot
//! check (feature `testutil`): one seeded generator (SplitMix64, so runs
//! are reproducible without a dependency) and helpers to fill tensors and
//! draw quantisation parameters; and the naive f64 layers ([`naive`]) the
//! f32 tests compare against. What needs floating-point functions
//! (`powf`, `round`) or the multiplier quantiser is host-only (feature
//! `std`).
#![allow(missing_docs)] // test support: each helper says what it draws where it matters

#[cfg(any(test, feature = "std"))]
pub mod naive;

use crate::kernels::{ActRange, Conv2dS8, OutputQuant};
#[cfg(any(test, feature = "std"))]
use crate::quant::quantize_multiplier;
use crate::quant::Requant;

/// SplitMix64 (Steele, Lea, Flood 2014).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range_i32(&mut self, lo: i32, hi: i32) -> i32 {
        lo + self.below((hi as i64 - lo as i64 + 1) as u64) as i32
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn i8(&mut self) -> i8 {
        self.next_u32() as i8
    }

    /// Fills with int8 values: uniform, or (sometimes) piled at the extremes
    /// or in a narrow band, so saturation and ties get exercised.
    pub fn fill_i8(&mut self, xs: &mut [i8]) {
        match self.below(4) {
            0 => {
                for x in xs {
                    *x = if self.below(2) == 0 { i8::MIN } else { i8::MAX };
                }
            }
            1 => {
                let c = self.i8() as i32;
                for x in xs {
                    *x = (c + self.range_i32(-3, 3)).clamp(-128, 127) as i8;
                }
            }
            _ => {
                for x in xs {
                    *x = self.i8();
                }
            }
        }
    }

    /// Uniform int8 values.
    pub fn fill_uniform_i8(&mut self, xs: &mut [i8]) {
        for x in xs {
            *x = self.i8();
        }
    }

    #[cfg(any(test, feature = "std"))]
    /// A random multiplier: mostly realistic (2^-16 .. 2^2), sometimes at
    /// the shift extremes.
    pub fn requant(&mut self) -> Requant {
        match self.below(10) {
            0 => Requant::new(self.next_u32() as i32 & i32::MAX, self.range_i32(-31, 30)).unwrap(),
            1 => Requant::new((1 << 30) | (self.next_u32() as i32 & 0x3fff_ffff), -31).unwrap(),
            2 => Requant::new((1 << 30) | (self.next_u32() as i32 & 0x3fff_ffff), 30).unwrap(),
            _ => quantize_multiplier(2f64.powf(self.unit() * 18.0 - 16.0)).unwrap(),
        }
    }
}

/// All elements of a nested array as one mutable slice.
pub fn flat3<const H: usize, const W: usize, const C: usize>(
    t: &mut [[[i8; C]; W]; H],
) -> &mut [i8] {
    t.as_flattened_mut().as_flattened_mut()
}

/// Round half away from zero, as f64::round does; named for clarity.
#[cfg(any(test, feature = "std"))]
pub fn round_half_away(x: f64) -> f64 {
    x.round()
}

/// A conv layer's parameters, owned (tests borrow them as a `Conv2dS8`).
pub struct Params<const CI: usize, const CO: usize, const K: usize> {
    pub weights: [[[[i8; CI]; K]; K]; CO],
    pub bias: [i32; CO],
    pub requant: [Requant; CO],
    pub in_zp: i8,
    pub output: OutputQuant,
}

impl<const CI: usize, const CO: usize, const K: usize> Params<CI, CO, K> {
    pub fn layer<const PAD: usize>(&self) -> Conv2dS8<'_, CI, CO, K, PAD> {
        Conv2dS8 {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
            input_zero_point: self.in_zp,
            output: self.output,
        }
    }
}

pub fn random_output(rng: &mut Rng) -> OutputQuant {
    let zp = rng.i8();
    match rng.below(4) {
        0 => OutputQuant::linear(zp),
        1 => OutputQuant::relu(zp),
        2 => {
            let (a, b) = (rng.i8(), rng.i8());
            OutputQuant {
                zero_point: zp,
                range: ActRange::new(a.min(b), a.max(b)).unwrap(),
            }
        }
        _ => OutputQuant::relu(-128),
    }
}

/// A residual add with random zero points, multipliers and output stage.
#[cfg(any(test, feature = "std"))]
pub fn random_add(rng: &mut Rng) -> crate::kernels::AddS8 {
    crate::kernels::AddS8 {
        a_zero_point: rng.i8(),
        a: rng.requant(),
        b_zero_point: rng.i8(),
        b: rng.requant(),
        out: rng.requant(),
        output: random_output(rng),
    }
}

#[cfg(any(test, feature = "std"))]
pub fn random_params<const CI: usize, const CO: usize, const K: usize>(
    rng: &mut Rng,
) -> Params<CI, CO, K> {
    let mut weights = [[[[0i8; CI]; K]; K]; CO];
    for w in weights.iter_mut() {
        rng.fill_i8(flat3(w));
    }
    let bias_span = 1 << rng.below(24);
    let mut bias = [0i32; CO];
    for b in bias.iter_mut() {
        *b = match rng.below(20) {
            0 => i32::MAX - rng.below(100) as i32,
            1 => i32::MIN + rng.below(100) as i32,
            _ => rng.range_i32(-bias_span, bias_span),
        };
    }
    let mut requant = [Requant::ZERO; CO];
    for r in requant.iter_mut() {
        *r = rng.requant();
    }
    Params {
        weights,
        bias,
        requant,
        in_zp: rng.i8(),
        output: random_output(rng),
    }
}
