//! int8 kernels, each beside a plain reference kernel (`*_ref`); the tests
//! demand identical bytes from both. The networks' convs run in
//! [`tiled`] (im2col tiles, fused pooling, residual adds and wide convs) on
//! the `SMLAD` core of [`dsp`].
//!
//! Conventions shared by every kernel (TFLite-style; `docs/ARCHITECTURE.md`
//! shows where they sit in the model file):
//!
//! - **Activations**: int8, one scale and zero point per tensor (asymmetric):
//!   `real = scale * (q - zero_point)`. Scales live on the host only; the
//!   kernels see zero points and [`Requant`](crate::quant::Requant)
//!   multipliers.
//! - **Layout**: channels last. An activation tensor is `[[[i8; C]; W]; H]`
//!   (HWC, row by row, channels contiguous); conv weights are
//!   `[[[[i8; CI]; K]; K]; CO]` (OHWI); fc weights are `[[[[i8; C]; W]; H]; O]`
//!   (the exporter permutes PyTorch's (C, H, W) flatten order into HWC).
//! - **Weights**: int8, symmetric (zero point 0), one scale per output channel;
//!   **bias**: int32 at scale `in_scale * w_scale[c]`.
//! - **Input zero point**: the kernels compute `sum w * (x - in_zp) + bias`
//!   themselves (TFLite's `input_offset`), so the model stores the true bias
//!   and zero padding contributes exactly `(in_zp - in_zp) * w = 0`.
//! - **Output stage** ([`OutputQuant`]): `clamp(requantize(acc) + out_zp, min, max)`;
//!   a ReLU is fused as `min = out_zp`.
//! - **Shapes** are const generics; every relation between them (output
//!   sides, channel slices, accumulator headroom) is a `const` assertion, so a
//!   wrong shape fails `cargo build` and a kernel that has its inputs cannot
//!   fail. No heap, no float, no panics in the kernels.

pub mod add;
pub mod conv;
pub mod dsp;
mod epilogue;
pub mod linear;
pub mod pool;
pub mod tiled;

#[cfg(test)]
mod opset_tests;

pub use add::{add_requant_s8, add_requant_s8_ref, AddLut, AddS8, ADD_LEFT_SHIFT};

pub use conv::{conv2d_s8_ref, Conv2dS8};
pub use linear::{argmax_s8, argmax_s8_ref, linear_s8, linear_s8_ref, LinearS8};
pub use pool::{avgpool3x3_s8, avgpool3x3_s8_ref, maxpool2d_s8_ref};
pub use tiled::{conv2d_add_pool_s8, conv2d_pool_s8, conv2d_s8, conv2d_x2_s8, conv2d_x3_s8};

/// An int8 activation tensor: `H` rows of `W` pixels of `C` channels (HWC).
pub type Tensor<const H: usize, const W: usize, const C: usize> = [[[i8; C]; W]; H];

/// A clamp range `min..=max` for int8 values (`min <= max` always holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActRange {
    min: i8,
    max: i8,
}

impl ActRange {
    /// The whole int8 range: no activation.
    pub const FULL: ActRange = ActRange {
        min: i8::MIN,
        max: i8::MAX,
    };

    /// `min..=max`, or `None` if `min > max`.
    pub const fn new(min: i8, max: i8) -> Option<ActRange> {
        if min > max {
            None
        } else {
            Some(ActRange { min, max })
        }
    }

    /// A fused ReLU on a tensor with zero point `zero_point`: `zero_point..=127`
    /// (`q < zero_point` is a negative real value).
    pub const fn relu(zero_point: i8) -> ActRange {
        ActRange {
            min: zero_point,
            max: i8::MAX,
        }
    }

    /// The lower bound.
    pub const fn min(self) -> i8 {
        self.min
    }

    /// The upper bound.
    pub const fn max(self) -> i8 {
        self.max
    }

    /// This clamp followed by `next`, as one clamp: `next.clamp(self.clamp(v))
    /// == self.then(next).clamp(v)` (both are non-decreasing, so the
    /// composite is the clamp between the images of the bounds).
    pub const fn then(self, next: ActRange) -> ActRange {
        ActRange {
            min: next.clamp(self.min),
            max: next.clamp(self.max),
        }
    }

    /// Clamps an int8 value.
    #[inline(always)]
    pub const fn clamp(self, v: i8) -> i8 {
        if v < self.min {
            self.min
        } else if v > self.max {
            self.max
        } else {
            v
        }
    }

    /// Clamps a wide value into the range (and so into int8).
    #[inline(always)]
    pub const fn clamp_i32(self, v: i32) -> i8 {
        if v < self.min as i32 {
            self.min
        } else if v > self.max as i32 {
            self.max
        } else {
            v as i8
        }
    }
}

/// The output stage of a layer: zero point of the output tensor and the
/// clamp that fuses its activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutputQuant {
    /// Zero point of the output tensor.
    pub zero_point: i8,
    /// Clamp after adding the zero point ([`ActRange::FULL`] or
    /// [`ActRange::relu`]`(zero_point)` in our networks).
    pub range: ActRange,
}

impl OutputQuant {
    /// No activation: the full int8 range.
    pub const fn linear(zero_point: i8) -> OutputQuant {
        OutputQuant {
            zero_point,
            range: ActRange::FULL,
        }
    }

    /// Fused ReLU: clamp at the zero point.
    pub const fn relu(zero_point: i8) -> OutputQuant {
        OutputQuant {
            zero_point,
            range: ActRange::relu(zero_point),
        }
    }

    /// `clamp(v + zero_point, min, max)` for a requantised value `v`
    /// (saturating, so any i32 is fine).
    #[inline(always)]
    pub const fn apply(self, v: i32) -> i8 {
        self.range
            .clamp_i32(v.saturating_add(self.zero_point as i32))
    }
}

/// Where a kernel writes in the channel dimension of a wider output tensor:
/// channels `C_OFF..C_OFF + CO` of each pixel. An Inception branch writes its
/// channel slice of the concat buffer this way, so the concat costs nothing.
/// The kernels check `C_OFF + CO <= C_TOTAL` at compile time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelOffset<const C_OFF: usize>;

/// The largest number of int8 x (int8 - zero point) products an i32
/// accumulator can hold with room for nothing else:
/// `n * 128 * 255 <= i32::MAX`. Kernels assert their reduction length
/// against it at compile time (the bias is then added wrapping).
pub const MAX_DOT_LEN: usize = i32::MAX as usize / (128 * 255);

/// A zero point widened for the dot products, hidden from the optimiser.
///
/// Why: when LLVM knows the zero point lies in -128..=127 it narrows
/// `x - zp` and vectorises the products with 32-bit multiplies, about 1.8x
/// slower on x86-64 than the 16-bit multiply-adds (`pmaddwd`) it picks for an
/// opaque value. `black_box` only hides the value; the result is the same
/// (and on the Cortex-M4 it costs one store and load per kernel call).
#[inline(always)]
pub(crate) fn opaque_zero_point(zp: i8) -> i32 {
    core::hint::black_box(zp as i32)
}

/// `sum w * (x - zp)` over two equally long slices; the caller guarantees
/// `w.len() <= MAX_DOT_LEN`, so the i32 sum cannot overflow. On the
/// Cortex-M4 eight values at a time take 18 instructions (two `SMLAD`s per
/// four), instead of about 5 per value.
#[inline(always)]
pub(crate) fn dot_s8(w: &[i8], x: &[i8], zp: i32) -> i32 {
    #[allow(unused_mut)] // assigned on the Cortex-M4 only
    let (mut acc, mut done) = (0i32, 0usize);
    #[cfg(arm_dsp)]
    {
        let blocks = w.len().min(x.len()) / 8;
        if blocks > 0 {
            let neg_zp = dsp::neg_zero_point_pair(zp as i8);
            // SAFETY: reads 8 * blocks bytes of `w` and of `x` (LDR may be
            // unaligned on the M4).
            unsafe {
                core::arch::asm!(
                    "2:",
                    ".rept 2",
                    "ldr {a}, [{w}], #4",
                    "ldr {b}, [{x}], #4",
                    // (w0, w2), (w1, w3) and (x0 - zp, x2 - zp), (x1 - zp, x3 - zp).
                    "sxtb16 {c}, {a}",
                    "sxtb16 {a}, {a}, ror #8",
                    "sxtab16 {d}, {z}, {b}",
                    "sxtab16 {b}, {z}, {b}, ror #8",
                    "smlad {acc}, {c}, {d}, {acc}",
                    "smlad {acc}, {a}, {b}, {acc}",
                    ".endr",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    acc = inout(reg) acc,
                    w = inout(reg) w.as_ptr() => _,
                    x = inout(reg) x.as_ptr() => _,
                    n = inout(reg) blocks => _,
                    z = in(reg) neg_zp,
                    a = out(reg) _,
                    b = out(reg) _,
                    c = out(reg) _,
                    d = out(reg) _,
                    options(readonly, nostack),
                );
            }
            done = 8 * blocks;
        }
    }
    // x - zp fits an i16 (-255..=255): written this way LLVM vectorises the
    // loop with widening 16-bit multiply-adds on the host.
    let zp = zp as i16;
    let (w, x) = (w.get(done..).unwrap_or(&[]), x.get(done..).unwrap_or(&[]));
    acc + w
        .iter()
        .zip(x)
        .map(|(&w, &x)| w as i16 as i32 * (x as i16 - zp) as i32)
        .sum::<i32>()
}

#[cfg(test)]
mod tests {
    use super::ActRange;

    // Against the two clamps applied in turn, over every range pair on a
    // grid of bounds (disjoint, nested and overlapping ones) and every value.
    #[test]
    fn then_is_the_two_clamps_in_turn() {
        let bounds = [-128i8, -100, -3, 0, 1, 50, 126, 127];
        let ranges = || {
            bounds
                .iter()
                .flat_map(|&a| bounds.iter().filter_map(move |&b| ActRange::new(a, b)))
        };
        for first in ranges() {
            for next in ranges() {
                let both = first.then(next);
                for v in i8::MIN..=i8::MAX {
                    assert_eq!(
                        both.clamp(v),
                        next.clamp(first.clamp(v)),
                        "{first:?} then {next:?} at {v}"
                    );
                }
            }
        }
    }
}
