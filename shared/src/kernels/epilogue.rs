//! What becomes of a tiled conv's accumulators ([`super::tiled`]): bias,
//! requantisation, output zero point and clamp, per output channel.
//!
//! The per-channel parameters are worked out once per layer
//! ([`Epilogue::new`]). On the Cortex-M4 the store (one pixel, a run of
//! channels) is an assembly loop of about 16 instructions per output: one
//! `LDM` of the channel's eight parameter words, the accumulator, the bias,
//! three instructions for the sign nudge of [`Rescale`], one `SMLAL`, the
//! high word's shift, the saturating zero point add, `SSAT` for the upper
//! clamp (127), three for the lower one, and the store. Compiled from Rust
//! the same work spills registers and costs about 28. Elsewhere (the host,
//! the tests, a left-shift multiplier, a clamp below 127) the portable loop
//! computes the same bytes.

use super::dsp::TILE;
use super::{ActRange, Conv2dS8, OutputQuant};
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
const _: () = assert!(
    core::mem::size_of::<ChannelOut>() == 32,
    "the assembly loads 8 words"
);

impl ChannelOut {
    #[inline(always)]
    fn new<const CI: usize, const CO: usize, const K: usize, const PAD: usize>(
        layer: &Conv2dS8<'_, CI, CO, K, PAD>,
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
        self.rescale
            .apply(v)
            .saturating_add(self.zero_point)
            .max(self.min)
            .min(self.max) as i8
    }

    /// The output of an accumulator.
    #[inline(always)]
    pub(super) fn out(&self, acc: i32) -> i8 {
        self.requant(self.biased(acc))
    }
}

/// Every output channel's epilogue of a layer, worked out once per call.
pub(super) struct Epilogue<const CO: usize> {
    qs: [ChannelOut; CO],
    /// The assembly computes these outputs: every multiplier is in
    /// high-word form ([`Rescale::is_high_word`]) and every clamp ends at
    /// 127 (a saturation to int8 then does the upper clamp). True for every
    /// layer of our networks; the portable loop serves the others.
    #[cfg_attr(not(arm_dsp), allow(dead_code))]
    assembly: bool,
}

impl<const CO: usize> Epilogue<CO> {
    #[inline(always)]
    fn from_channels(qs: [ChannelOut; CO]) -> Self {
        let assembly = qs
            .iter()
            .all(|q| q.rescale.is_high_word() && q.max == i8::MAX as i32);
        Epilogue { qs, assembly }
    }

    /// A conv layer's outputs.
    #[inline(always)]
    pub(super) fn new<const CI: usize, const K: usize, const PAD: usize>(
        layer: &Conv2dS8<'_, CI, CO, K, PAD>,
    ) -> Self {
        Self::from_channels(core::array::from_fn(|co| ChannelOut::new(layer, co)))
    }

    /// A conv layer's outputs from accumulators that already hold the bias
    /// (a pooled maximum of [`ChannelOut::biased`] values), clamped again by
    /// `range`.
    #[inline(always)]
    pub(super) fn pooled<const CI: usize, const K: usize, const PAD: usize>(
        layer: &Conv2dS8<'_, CI, CO, K, PAD>,
        range: ActRange,
    ) -> Self {
        let clamp = layer.output.range.then(range);
        Self::from_channels(core::array::from_fn(|co| ChannelOut {
            bias: 0,
            min: clamp.min() as i32,
            max: clamp.max() as i32,
            ..ChannelOut::new(layer, co)
        }))
    }

    /// One requantisation and output stage for every channel (an add's),
    /// then `range`.
    #[inline(always)]
    pub(super) fn uniform(rescale: Rescale, out: OutputQuant, range: ActRange) -> Self {
        let clamp = out.range.then(range);
        Self::from_channels(
            [ChannelOut {
                rescale,
                bias: 0,
                zero_point: out.zero_point as i32,
                min: clamp.min() as i32,
                max: clamp.max() as i32,
            }; CO],
        )
    }

    /// The channel epilogues, for the loops that do more than store.
    #[inline(always)]
    pub(super) fn channels(&self) -> &[ChannelOut; CO] {
        &self.qs
    }

    /// `dst[c] = out(acc[c][p])` for every channel `c`: pixel `p` of a tile
    /// into its slice of a channels-last output. `dst` and `acc` must hold
    /// `CO` entries (otherwise only the common prefix is written).
    #[inline(always)]
    pub(super) fn store(&self, dst: &mut [i8], acc: &[[i32; TILE]], p: usize) {
        #[cfg(arm_dsp)]
        if self.assembly && dst.len() >= CO && acc.len() >= CO && p < TILE {
            // SAFETY: CO accumulators `acc[c][p]`, one row of TILE apart,
            // and CO bytes of `dst`, in bounds by the checks above.
            unsafe {
                self.run::<{ 4 * TILE }>(
                    dst.as_mut_ptr(),
                    acc.as_ptr().cast::<i32>().wrapping_add(p),
                )
            };
            return;
        }
        for ((d, q), a) in dst.iter_mut().zip(&self.qs).zip(acc) {
            *d = q.out(a[p]);
        }
    }

    /// `dst[c] = out(values[c])` for every channel `c`.
    #[inline(always)]
    pub(super) fn store_values(&self, dst: &mut [i8], values: &[i32; CO]) {
        #[cfg(arm_dsp)]
        if self.assembly && dst.len() >= CO {
            // SAFETY: CO consecutive values and CO bytes of `dst`.
            unsafe { self.run::<4>(dst.as_mut_ptr(), values.as_ptr()) };
            return;
        }
        for ((d, q), &v) in dst.iter_mut().zip(&self.qs).zip(values) {
            *d = q.out(v);
        }
    }

    /// The assembly loop: `dst[c] = out(*src)` for each channel, `src`
    /// advancing `STRIDE` bytes per channel.
    ///
    /// # Safety
    ///
    /// `src` must be readable at `STRIDE * c` and `dst` writable at `c` for
    /// every `c < CO`; `self.assembly` must hold.
    #[cfg(arm_dsp)]
    #[inline(always)]
    unsafe fn run<const STRIDE: usize>(&self, dst: *mut i8, src: *const i32) {
        if CO == 0 {
            return;
        }
        // SAFETY: the caller's contract; reads CO parameter blocks of `qs`
        // (32 bytes each, size asserted above). r6, r7 and r9 are not
        // available as operands (see `dot_tile`), so they are saved around.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7, r9}}",
                "2:",
                // Two channels per pass when CO is even.
                ".rept {unroll}",
                // r0:r1 base, r2 multiplier, r3 high shift, r4 bias,
                // r5 zero point, r6 min, r7 max (127, not needed).
                "ldm r12!, {{r0, r1, r2, r3, r4, r5, r6, r7}}",
                "ldr r8, [r10], #{stride}",
                "add r8, r8, r4",
                // base - [x < 0] * 2^31, then + x * multiplier.
                "and r9, r8, #0x80000000",
                "adds r0, r0, r9",
                "adc r1, r1, r8, asr #31",
                "smlal r0, r1, r8, r2",
                "asr r1, r1, r3",
                "qadd r1, r1, r5",
                "ssat r1, #8, r1",
                "cmp r1, r6",
                "it lt",
                "movlt r1, r6",
                "strb r1, [r11], #1",
                ".endr",
                "cmp r12, lr",
                "bne 2b",
                "pop {{r6, r7, r9}}",
                stride = const STRIDE,
                unroll = const 2 - CO % 2,
                inout("r12") self.qs.as_ptr() => _,
                in("lr") self.qs.as_ptr().wrapping_add(CO),
                inout("r10") src => _,
                inout("r11") dst => _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                out("r8") _,
            );
        }
    }
}
