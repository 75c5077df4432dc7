//! What becomes of a tiled conv's accumulators ([`super::tiled`]): bias,
//! requantisation, output zero point and clamp, per output channel.
//!
//! The per-channel parameters are worked out once per layer
//! ([`Epilogue::new`]). On the Cortex-M4 the common store (one pixel, a run
//! of channels) is an assembly loop of 19 instructions per output: one
//! `LDM` of the channel's eight parameter words, the accumulator, the bias,
//! three instructions for the sign nudge of [`Rescale`], one `SMLAL`, the
//! high word's shift, the saturating zero point add, the clamp and the
//! store. Compiled from Rust the same work spills registers and costs about
//! 28. Elsewhere (the host, the tests, the rare left-shift multiplier) the
//! portable loop computes the same bytes.

use super::dsp::TILE;
use super::Conv2dS8;
use crate::quant::{Requant, Rescale};

/// One output channel's epilogue: bias, requantisation, output zero point
/// and clamp (as i32, ready to use).
#[derive(Clone, Copy)]
#[repr(C)] // eight words in the order the assembly loads them (one LDM)
pub(super) struct ChannelOut {
    rescale: Rescale,
    bias: i32,
    zero_point: i32,
    min: i32,
    max: i32,
}

#[cfg(arm_dsp)]
const _: () = assert!(core::mem::size_of::<ChannelOut>() == 32, "the assembly loads 8 words");

impl ChannelOut {
    #[inline(always)]
    fn new<const CI: usize, const K: usize, const PAD: usize, const CO: usize>(
        layer: &Conv2dS8<'_, CI, K, PAD, CO>,
        co: usize,
    ) -> ChannelOut {
        ChannelOut {
            bias: layer.bias.get(co).copied().unwrap_or(0),
            rescale: Rescale::new(layer.requant.get(co).copied().unwrap_or(Requant::ZERO)),
            zero_point: layer.output.zero_point as i32,
            min: layer.output.range.min() as i32,
            max: layer.output.range.max() as i32,
        }
    }

    /// `acc + bias` (wrapping, as the reference).
    #[inline(always)]
    pub(super) fn biased(&self, acc: i32) -> i32 {
        acc.wrapping_add(self.bias)
    }

    /// A biased accumulator through requantisation and the output stage
    /// ([`OutputQuant::apply`](super::OutputQuant::apply)).
    #[inline(always)]
    pub(super) fn requant(&self, v: i32) -> i8 {
        // `max` then `min`, not `clamp`: `min <= max` holds (ActRange), and
        // `clamp` would check it again for every output.
        self.rescale.apply(v).saturating_add(self.zero_point).max(self.min).min(self.max) as i8
    }

    /// The output of an accumulator.
    #[inline(always)]
    pub(super) fn out(&self, acc: i32) -> i8 {
        self.requant(self.biased(acc))
    }
}

/// Every output channel's epilogue of a layer, worked out once per call.
pub(super) struct Epilogue<const CO: usize> {
    pub(super) qs: [ChannelOut; CO],
    /// Every channel's multiplier in the high-word form the assembly
    /// computes ([`Rescale::is_high_word`]; true for every conv of our
    /// networks).
    #[cfg_attr(not(arm_dsp), allow(dead_code))]
    high_word: bool,
}

impl<const CO: usize> Epilogue<CO> {
    #[inline(always)]
    pub(super) fn new<const CI: usize, const K: usize, const PAD: usize>(
        layer: &Conv2dS8<'_, CI, K, PAD, CO>,
    ) -> Self {
        let qs: [ChannelOut; CO] = core::array::from_fn(|co| ChannelOut::new(layer, co));
        let high_word = qs.iter().all(|q| q.rescale.is_high_word());
        Epilogue { qs, high_word }
    }

    /// `dst[c] = out(acc[c][p])` for every channel `c`: pixel `p` of a tile
    /// into its slice of a channels-last output. `dst` and `acc` must hold
    /// `CO` entries (otherwise only the common prefix is written).
    #[inline(always)]
    pub(super) fn store(&self, dst: &mut [i8], acc: &[[i32; TILE]], p: usize) {
        #[cfg(arm_dsp)]
        if self.high_word && CO > 0 && dst.len() >= CO && acc.len() >= CO && p < TILE {
            // SAFETY: reads CO parameter blocks of `qs` (32 bytes each, size
            // asserted above), CO accumulators `acc[c][p]` (stride one
            // row of TILE words) and writes CO bytes of `dst`: all in
            // bounds by the checks above. r6, r7 and r9 are not available
            // as operands (see `dot_tile`), so they are saved around.
            unsafe {
                core::arch::asm!(
                    "push {{r6, r7, r9}}",
                    "2:",
                    // r0:r1 base, r2 multiplier, r3 high shift, r4 bias,
                    // r5 zero point, r6 min, r7 max.
                    "ldm r12!, {{r0, r1, r2, r3, r4, r5, r6, r7}}",
                    "ldr r8, [r10], #{row}",
                    "add r8, r8, r4",
                    // base - [x < 0] * 2^31, then + x * multiplier.
                    "and r9, r8, #0x80000000",
                    "adds r0, r0, r9",
                    "adc r1, r1, r8, asr #31",
                    "smlal r0, r1, r8, r2",
                    "asr r1, r1, r3",
                    "qadd r1, r1, r5",
                    "cmp r1, r6",
                    "it lt",
                    "movlt r1, r6",
                    "cmp r1, r7",
                    "it gt",
                    "movgt r1, r7",
                    "strb r1, [r11], #1",
                    "cmp r12, lr",
                    "bne 2b",
                    "pop {{r6, r7, r9}}",
                    row = const 4 * TILE,
                    inout("r12") self.qs.as_ptr() => _,
                    in("lr") self.qs.as_ptr().wrapping_add(CO),
                    inout("r10") acc.as_ptr().cast::<i32>().wrapping_add(p) => _,
                    inout("r11") dst.as_mut_ptr() => _,
                    out("r0") _,
                    out("r1") _,
                    out("r2") _,
                    out("r3") _,
                    out("r4") _,
                    out("r5") _,
                    out("r8") _,
                );
            }
            return;
        }
        for ((d, q), a) in dst.iter_mut().zip(&self.qs).zip(acc) {
            *d = q.out(a[p]);
        }
    }
}
