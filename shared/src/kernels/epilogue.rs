//! What becomes of a tiled conv's accumulators ([`super::tiled`]): bias,
//! requantisation, output zero point and clamp, per output channel.
//!
//! The per-channel parameters are worked out once per layer
//! ([`Epilogue::new`]), in one of two forms:
//!
//! - **Short form**, for a right-shift multiplier (`e = -shift` in
//!   `1..=MAX_SHORT_SHIFT`), a clamp ending at 127 and an input `x = acc +
//!   bias` known to stay below 2^30 in magnitude (every layer of our
//!   networks). With `A = x*m + 2^30`, the requantisation of
//!   [`Rescale`] is `floor((floor(A / 2^31) + 2^(e-1) - [x < 0]) / 2^e)`,
//!   and the output zero point joins the rounding term (a floor division
//!   by 2^e moves `zp * 2^e` out whole):
//!
//!   `out = max(sat8((R + floor((2x*m + 2^31) / 2^32) - [x < 0]) >> e), min)`
//!   with `R = 2^(e-1) + zp * 2^e`,
//!
//!   which is `SMMLAR` (most significant word, rounded, with accumulate) on
//!   `2x`, an add of the sign, a shift, `SSAT` and a byte maximum (`SSUB8`
//!   and `SEL`; left out when no channel clamps above -128). The bounds
//!   keep every step inside i32, so no step saturates or wraps.
//! - **Long form**, anything else (a left shift, a clamp below 127, a huge
//!   bias): [`Rescale`] and [`OutputQuant::apply`], portable code only.
//!
//! On the Cortex-M4 the short form runs in assembly loops that go channel
//! by channel, a channel's parameters loaded with one `LDM`: a tile's six
//! outputs (about 9 instructions each with the accumulator load and the
//! store), three pool windows' maxima (the maximum of raw accumulators: in
//! the short form the bias cannot wrap, so it moves past the maximum), a
//! residual add's table lookups, a whole add of two tensors.
//!
//! Off the Cortex-M4 (the host, the tests) both forms run as Rust, the
//! short one exactly as the assembly computes it, so the host's tests
//! against the reference kernels check its arithmetic.

use super::dsp::TILE;
use super::{ActRange, Conv2dS8, OutputQuant};
use crate::quant::{Requant, Rescale};

/// The largest right shift of the short form: it keeps `R` below 2^29.
const MAX_SHORT_SHIFT: i32 = 21;

/// The short form's bound on `|acc + bias|`: `2x` must fit an i32, with room
/// for `R`.
const SHORT_INPUT_LIMIT: i64 = 1 << 30;

/// The largest `|sum w * (x - zp)|` of a reduction of `len` products.
const fn acc_bound(len: usize) -> i64 {
    len as i64 * 128 * 255
}

/// One output channel's epilogue (see the module docs for the two forms).
#[derive(Clone, Copy)]
#[repr(C)] // eight words in the order the assembly loads them (one LDM)
pub(super) struct ChannelOut {
    /// Short form: `2 * bias`.
    bias2: i32,
    multiplier: i32,
    /// Short form: `2^(e-1) + zp * 2^e`, never 0 (an odd multiple of
    /// 2^(e-1)). Long form: 0.
    round: i32,
    /// The right shift `e = -shift` (negative for a left shift).
    e: i32,
    min: i32,
    bias: i32,
    zero_point: i32,
    max: i32,
}

#[cfg(arm_dsp)]
const _: () = assert!(
    core::mem::size_of::<ChannelOut>() == 32,
    "the assembly loads 8 words"
);

impl ChannelOut {
    /// `x = acc + bias` through `requant`, then `out` clamped by `range`;
    /// `x_bound` bounds `|x|` (it decides the form).
    #[inline(always)]
    fn with(requant: Requant, bias: i32, x_bound: i64, out: OutputQuant) -> ChannelOut {
        let e = -requant.shift();
        let zp = out.zero_point as i32;
        let short = (1..=MAX_SHORT_SHIFT).contains(&e)
            && out.range.max() == i8::MAX
            && x_bound < SHORT_INPUT_LIMIT;
        ChannelOut {
            bias2: if short { 2 * bias } else { 0 },
            multiplier: requant.multiplier(),
            round: if short {
                (1 << (e - 1)) + zp * (1 << e)
            } else {
                0
            },
            e,
            min: out.range.min() as i32,
            bias,
            zero_point: zp,
            max: out.range.max() as i32,
        }
    }

    /// Output channel `co` of a conv layer, with or without its bias (a
    /// pooled maximum of biased accumulators holds it already), clamped by
    /// the layer's range, then by `range`.
    #[inline(always)]
    fn of_layer<const CI: usize, const CO: usize, const K: usize, const PAD: usize>(
        layer: &Conv2dS8<'_, CI, CO, K, PAD>,
        co: usize,
        with_bias: bool,
        range: ActRange,
    ) -> ChannelOut {
        let bias = layer.bias.get(co).copied().unwrap_or(0);
        let requant = layer.requant.get(co).copied().unwrap_or(Requant::ZERO);
        let x_bound = acc_bound(K * K * CI) + (bias as i64).abs();
        let out = OutputQuant {
            zero_point: layer.output.zero_point,
            range: layer.output.range.then(range),
        };
        Self::with(requant, if with_bias { bias } else { 0 }, x_bound, out)
    }

    /// Whether this channel takes the short form.
    #[inline(always)]
    fn is_short(&self) -> bool {
        self.round != 0
    }

    /// `acc + bias` (wrapping, as the reference).
    #[inline(always)]
    pub(super) fn biased(&self, acc: i32) -> i32 {
        acc.wrapping_add(self.bias)
    }

    /// The output of an accumulator.
    #[inline(always)]
    pub(super) fn out(&self, acc: i32) -> i8 {
        if self.is_short() {
            // As the assembly: SMMLAR, the sign, the shift, SSAT, the max.
            let x2 = acc.wrapping_mul(2).wrapping_add(self.bias2);
            let high =
                (((self.round as i64) << 32) + x2 as i64 * self.multiplier as i64 + (1 << 31))
                    >> 32;
            let v = (high as i32 + (x2 >> 31)) >> self.e;
            return v.clamp(i8::MIN as i32, i8::MAX as i32).max(self.min) as i8;
        }
        let requant = Requant::new(self.multiplier, -self.e).unwrap_or(Requant::ZERO);
        // `max` then `min`, not `clamp`: `min <= max` holds (ActRange), and
        // `clamp` would check it again for every output.
        Rescale::new(requant)
            .apply(self.biased(acc))
            .saturating_add(self.zero_point)
            .max(self.min)
            .min(self.max) as i8
    }
}

/// Every output channel's epilogue of a layer, worked out once per call.
pub(super) struct Epilogue<const CO: usize> {
    qs: [ChannelOut; CO],
    /// Every channel takes the short form, so the assembly computes the
    /// outputs (otherwise the portable loop).
    short: bool,
    /// Every channel clamps at -128 only (no activation): `SSAT` is the
    /// whole clamp, and the assembly leaves out the lower one.
    #[cfg_attr(not(arm_dsp), allow(dead_code))]
    unclamped: bool,
}

impl<const CO: usize> Epilogue<CO> {
    #[inline(always)]
    fn from_channels(qs: [ChannelOut; CO]) -> Self {
        let short = qs.iter().all(ChannelOut::is_short);
        let unclamped = qs.iter().all(|q| q.min == i8::MIN as i32);
        Epilogue {
            qs,
            short,
            unclamped,
        }
    }

    /// A conv layer's outputs.
    #[inline(always)]
    pub(super) fn new<const CI: usize, const K: usize, const PAD: usize>(
        layer: &Conv2dS8<'_, CI, CO, K, PAD>,
    ) -> Self {
        Self::from_channels(core::array::from_fn(|co| {
            ChannelOut::of_layer(layer, co, true, ActRange::FULL)
        }))
    }

    /// A conv layer's outputs clamped again by `range` (a pooled maximum of
    /// accumulators, in the short form).
    #[inline(always)]
    pub(super) fn clamped<const CI: usize, const K: usize, const PAD: usize>(
        layer: &Conv2dS8<'_, CI, CO, K, PAD>,
        range: ActRange,
    ) -> Self {
        Self::from_channels(core::array::from_fn(|co| {
            ChannelOut::of_layer(layer, co, true, range)
        }))
    }

    /// A conv layer's outputs from accumulators that already hold the bias
    /// (a pooled maximum of [`ChannelOut::biased`] values), clamped again by
    /// `range`.
    #[inline(always)]
    pub(super) fn pooled<const CI: usize, const K: usize, const PAD: usize>(
        layer: &Conv2dS8<'_, CI, CO, K, PAD>,
        range: ActRange,
    ) -> Self {
        Self::from_channels(core::array::from_fn(|co| {
            ChannelOut::of_layer(layer, co, false, range)
        }))
    }

    /// One requantisation and output stage for every channel (an add's),
    /// then `range`; `x_bound` bounds the magnitude of the values.
    #[inline(always)]
    pub(super) fn uniform(
        requant: Requant,
        x_bound: i64,
        out: OutputQuant,
        range: ActRange,
    ) -> Self {
        let out = OutputQuant {
            zero_point: out.zero_point,
            range: out.range.then(range),
        };
        Self::from_channels([ChannelOut::with(requant, 0, x_bound, out); CO])
    }

    /// Whether every channel takes the short form (the assembly's).
    #[inline(always)]
    pub(super) fn is_short(&self) -> bool {
        self.short
    }

    /// `acc[c][p] + bias[c]` in place (wrapping, as the reference).
    #[inline(always)]
    pub(super) fn add_bias<const PIX: usize>(&self, acc: &mut [[i32; PIX]]) {
        portable::add_bias(&self.qs, acc.as_flattened_mut(), PIX);
    }

    /// `dst[w][c] = out(max of acc[c][4w..4w + 4])` for each of the
    /// `dst.len()` pool windows of a group of pixels in pool order.
    #[inline(always)]
    pub(super) fn store_pooled<const PIX: usize>(&self, dst: &mut [[i8; CO]], acc: &[[i32; PIX]]) {
        #[cfg(arm_dsp)]
        if self.short && PIX == 2 * TILE && dst.len() == PIX / 4 && acc.len() >= CO {
            // SAFETY: PIX values of each of CO channels, and the CO bytes of
            // each of the PIX / 4 pooled pixels, in bounds by the checks.
            unsafe {
                asm::pool3::<CO>(
                    &self.qs,
                    dst.as_mut_ptr().cast::<i8>(),
                    acc.as_ptr().cast::<i32>(),
                )
            };
            return;
        }
        portable::store_pooled(&self.qs, dst.as_flattened_mut(), acc.as_flattened(), PIX);
    }

    /// A residual add on this conv's outputs, in place, for pixels `p < n`:
    /// `acc[c][p] = lut_a[out(acc[c][p])] + lut_b[shortcut[offs[p] + c]]`
    /// (saturating; the tables of [`super::add`]). `offs[p]` is pixel `p`'s
    /// byte offset in the flattened shortcut.
    #[inline(always)]
    pub(super) fn add_tables<const PIX: usize>(
        &self,
        acc: &mut [[i32; PIX]],
        n: usize,
        (shortcut, offs): (&[i8], &[usize; PIX]),
        (lut_a, lut_b): (&[i32; 256], &[i32; 256]),
    ) {
        #[cfg(arm_dsp)]
        if self.short
            && PIX == 2 * TILE
            && n == PIX
            && acc.len() >= CO
            && offs.iter().all(|&o| o + CO <= shortcut.len())
        {
            let offs = offs.map(|o| o as u32);
            let args = (
                acc.as_mut_ptr().cast::<i32>(),
                (shortcut.as_ptr(), offs.as_ptr()),
                (
                    lut_a.as_ptr().wrapping_add(128),
                    lut_b.as_ptr().wrapping_add(128),
                ),
            );
            // SAFETY: PIX values of each of CO channels; the shortcut bytes
            // `offs[p] + c`, `c < CO`, in bounds by the checks; the tables'
            // middles indexed by int8 values.
            unsafe {
                if self.unclamped {
                    asm::add::<false>(&self.qs, args.0, args.1, args.2)
                } else {
                    asm::add::<true>(&self.qs, args.0, args.1, args.2)
                }
            };
            return;
        }
        portable::add_tables(
            &self.qs,
            (acc.as_flattened_mut(), PIX, n),
            (shortcut, offs),
            (lut_a, lut_b),
        );
    }

    /// `px[p][c_off + c] = out(acc[c][p])` for every channel `c` and pixel
    /// `p < px.len()` (at most [`TILE`]): a tile of consecutive pixels into
    /// a channel slice of a channels-last output. Channel by channel, so
    /// the assembly loads a channel's parameters once per tile.
    #[inline(always)]
    pub(super) fn store_tile<const CT: usize>(
        &self,
        px: &mut [[i8; CT]],
        c_off: usize,
        acc: &[[i32; TILE]],
    ) {
        #[cfg(arm_dsp)]
        if self.short && px.len() == TILE && acc.len() >= CO && c_off + CO <= CT {
            let (dst, acc) = (
                px.as_mut_ptr().cast::<i8>().wrapping_add(c_off),
                acc.as_ptr().cast::<i32>(),
            );
            // SAFETY: TILE accumulators of each of CO channels, and bytes
            // `c_off..c_off + CO` of TILE pixels, in bounds by the checks.
            unsafe {
                if self.unclamped {
                    asm::tile::<CT, false>(&self.qs, dst, acc)
                } else {
                    asm::tile::<CT, true>(&self.qs, dst, acc)
                }
            };
            return;
        }
        portable::store_tile(
            &self.qs,
            (px.as_flattened_mut(), CT, c_off),
            acc.as_flattened(),
        );
    }

    /// A residual add of whole tensors through this epilogue, which must
    /// be [`Self::uniform`] (the same for every channel): `out[i] =
    /// out(lut_a[a[i]] + lut_b[b[i]])`, the sum saturating.
    #[inline(always)]
    pub(super) fn store_add(
        &self,
        out: &mut [i8],
        (a, b): (&[i8], &[i8]),
        (lut_a, lut_b): (&[i32; 256], &[i32; 256]),
    ) {
        let n = out.len().min(a.len()).min(b.len());
        #[cfg(arm_dsp)]
        if let (true, Some(q), 0) = (self.short, self.qs.first(), n % 4) {
            // SAFETY: n bytes of each tensor; the tables' middles indexed
            // by int8 values.
            unsafe {
                asm::add_elements(
                    q,
                    (a.as_ptr(), b.as_ptr(), out.as_mut_ptr(), n),
                    (
                        lut_a.as_ptr().wrapping_add(128),
                        lut_b.as_ptr().wrapping_add(128),
                    ),
                )
            };
            return;
        }
        portable::store_add(&self.qs, (out, a, b, n), (lut_a, lut_b));
    }
}

/// The assembly loops of [`Epilogue`], out of line: one copy per output
/// stride serves every layer (inlined, each call site had its own).
#[cfg(arm_dsp)]
mod asm {
    use super::super::dsp::TILE;
    use super::ChannelOut;

    /// The short form on the value in register `$v`, the channel's
    /// parameters in r0-r4 (`2 * bias`, multiplier, R, shift, min): `$x`
    /// gets `2 * (v + bias)`, `$out` the requantised output, saturated to
    /// int8 and, if `$clamp` (an assembler expression), clamped below by
    /// `min`; `$x` is then overwritten.
    #[rustfmt::skip]
    macro_rules! short_form {
        ($v:literal, $x:literal, $out:literal, $clamp:literal) => {
            concat!(
                "add ", $x, ", r0, ", $v, ", lsl #1\n",
                "smmlar ", $out, ", ", $x, ", r1, r2\n",
                "add ", $out, ", ", $out, ", ", $x, ", asr #31\n",
                "asr ", $out, ", ", $out, ", r3\n",
                "ssat ", $out, ", #8, ", $out, "\n",
                // max(v, min) in the low byte: SSUB8 sets GE[0] if v >= min.
                ".if ", $clamp, "\n",
                "ssub8 ", $x, ", ", $out, ", r4\n",
                "sel ", $out, ", ", $out, ", r4\n",
                ".endif",
            )
        };
    }

    /// The assembly of [`Epilogue::store_pooled`] for three windows: for each
    /// channel `c`, the twelve values from `acc + 12 * c`, window by window
    /// their maximum through the epilogue into byte `dst + c + CO * w`.
    ///
    /// # Safety
    ///
    /// `acc` must be readable for `12 * CO` words and `dst` writable for
    /// `3 * CO` bytes; every channel of `qs` must be in the short form.
    #[inline(never)]
    pub(super) unsafe fn pool3<const CO: usize>(qs: &[ChannelOut], dst: *mut i8, acc: *const i32) {
        const { assert!(CO <= 255, "a post-indexed STRB steps at most 255 bytes") };
        if qs.is_empty() {
            return;
        }
        // SAFETY: the caller's contract; reads the parameter blocks of `qs`.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7}}",
                "2:",
                // r0 2 * bias, r1 multiplier, r2 R, r3 shift, r4 min (the
                // other three words into r6-r8, overwritten).
                "ldm r12!, {{r0, r1, r2, r3, r4, r6, r7, r8}}",
                ".rept 3",
                // The window's maximum.
                "ldr r6, [r10], #4",
                ".rept 3",
                "ldr r7, [r10], #4",
                "cmp r6, r7",
                "it lt",
                "movlt r6, r7",
                ".endr",
                short_form!("r6", "r8", "r6", "1"),
                "strb r6, [r11], #{co}",
                ".endr",
                // Back to window 0, next channel.
                "sub r11, r11, #{back}",
                "cmp r12, lr",
                "bne 2b",
                "pop {{r6, r7}}",
                co = const CO,
                back = const (3 * CO).saturating_sub(1),
                inout("r12") qs.as_ptr() => _,
                in("lr") qs.as_ptr().wrapping_add(qs.len()),
                inout("r10") acc => _,
                inout("r11") dst => _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r8") _,
            );
        }
    }

    /// The assembly of [`Epilogue::add_tables`] for twelve pixels: `lut_a` and
    /// `lut_b` point at the tables' entries for 0, `shortcut` at channel 0
    /// of the shortcut, `offs` at the twelve pixel offsets.
    ///
    /// # Safety
    ///
    /// `acc` must be readable and writable for `12 * CO` words, the
    /// shortcut readable at `offs[p] + c` for `c < CO`, the tables at
    /// every int8 index; every channel of `qs` must be in the short form.
    #[inline(never)]
    pub(super) unsafe fn add<const CLAMP: bool>(
        qs: &[ChannelOut],
        acc: *mut i32,
        (shortcut, offs): (*const i8, *const u32),
        (lut_a, lut_b): (*const i32, *const i32),
    ) {
        const { assert!(2 * TILE == 12, "the assembly adds twelve pixels") };
        if qs.is_empty() {
            return;
        }
        // SAFETY: the caller's contract; reads the parameter blocks of `qs`.
        // r6, r7 and r9 are saved around (see `dot_tile!`); the loop's end is
        // kept on the stack, every register being in use.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7, r9}}",
                "push {{r0}}",
                "mov r6, r10",
                "mov r7, r11",
                "2:",
                "ldm r12!, {{r0, r1, r2, r3, r4, r9, r10, r11}}",
                ".rept 12",
                // The conv's output o, as in `pool3`.
                "ldr r9, [r8]",
                short_form!("r9", "r9", "r10", "{clamp}"),
                // lut_a[o] + lut_b[s], saturating.
                "ldr r10, [r6, r10, lsl #2]",
                "ldr r9, [r5], #4",
                "ldrsb r9, [lr, r9]",
                "ldr r9, [r7, r9, lsl #2]",
                "qadd r10, r10, r9",
                "str r10, [r8], #4",
                ".endr",
                // Same pixels, next channel.
                "sub r5, r5, #48",
                "add lr, lr, #1",
                "ldr r9, [sp]",
                "cmp r12, r9",
                "bne 2b",
                "add sp, sp, #4",
                "pop {{r6, r7, r9}}",
                clamp = const CLAMP as u8,
                inout("r12") qs.as_ptr() => _,
                inout("r0") qs.as_ptr().wrapping_add(qs.len()) => _,
                inout("r8") acc => _,
                inout("r5") offs => _,
                inout("lr") shortcut => _,
                inout("r10") lut_a => _,
                inout("r11") lut_b => _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
            );
        }
    }

    /// The assembly of [`Epilogue::store_add`]: `n` elements (a multiple
    /// of 4), four per pass, through the one epilogue `q`.
    ///
    /// # Safety
    ///
    /// `a`, `b` readable and `out` writable for `n` bytes, the tables at
    /// every int8 index; `q` in the short form.
    #[inline(never)]
    pub(super) unsafe fn add_elements(
        q: &ChannelOut,
        (a, b, out, n): (*const i8, *const i8, *mut i8, usize),
        (lut_a, lut_b): (*const i32, *const i32),
    ) {
        if n == 0 {
            return;
        }
        // SAFETY: the caller's contract. r6 and r7 are saved around (see
        // `tile`).
        unsafe {
            core::arch::asm!(
                "push {{r6, r7}}",
                "mov r6, r8",
                // r0 2 * bias (0), r1 multiplier, r2 R, r3 shift, r4 min.
                "ldm r0, {{r0, r1, r2, r3, r4}}",
                "2:",
                ".rept 4",
                "ldrsb r7, [r10], #1",
                "ldrsb r8, [r11], #1",
                "ldr r7, [r5, r7, lsl #2]",
                "ldr r8, [r6, r8, lsl #2]",
                "qadd r7, r7, r8",
                short_form!("r7", "r8", "r7", "1"),
                "strb r7, [r12], #1",
                ".endr",
                "cmp r10, lr",
                "bne 2b",
                "pop {{r6, r7}}",
                inout("r0") q as *const ChannelOut => _,
                inout("r10") a => _,
                inout("r11") b => _,
                inout("r12") out => _,
                in("lr") a.wrapping_add(n),
                inout("r5") lut_a => _,
                inout("r8") lut_b => _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
            );
        }
    }

    /// The assembly of [`Epilogue::store_tile`]: for each channel `c`, the
    /// TILE accumulators from `acc + TILE * c` into bytes `dst + c + CT * p`.
    ///
    /// # Safety
    ///
    /// `acc` must be readable for `TILE * CO` words and `dst` writable at
    /// `c + CT * p` for `c < CO`, `p < TILE`; every channel of `qs` must be
    /// in the short form.
    #[inline(never)]
    pub(super) unsafe fn tile<const CT: usize, const CLAMP: bool>(
        qs: &[ChannelOut],
        dst: *mut i8,
        acc: *const i32,
    ) {
        const { assert!(CT <= 255, "a post-indexed STRB steps at most 255 bytes") };
        if qs.is_empty() {
            return;
        }
        // SAFETY: the caller's contract; reads the parameter blocks of `qs`.
        // r6, r7 and r9 are saved around (see `dot_tile!`).
        unsafe {
            core::arch::asm!(
                "push {{r6, r7, r9}}",
                "2:",
                // As in `pool3`: r0 2 * bias, r1 multiplier, r2 R, r3 shift,
                // r4 min.
                "ldm r12!, {{r0, r1, r2, r3, r4, r5, r6, r7}}",
                ".rept {tile}",
                "ldr r8, [r10], #4",
                short_form!("r8", "r8", "r9", "{clamp}"),
                "strb r9, [r11], #{ct}",
                ".endr",
                // Back to pixel 0, next channel.
                "sub r11, r11, #{back}",
                "cmp r12, lr",
                "bne 2b",
                "pop {{r6, r7, r9}}",
                tile = const TILE,
                ct = const CT,
                clamp = const CLAMP as u8,
                back = const (TILE * CT).saturating_sub(1),
                inout("r12") qs.as_ptr() => _,
                in("lr") qs.as_ptr().wrapping_add(qs.len()),
                inout("r10") acc => _,
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

/// The portable loops of [`Epilogue`], on slices: one copy serves every
/// kernel (on the Cortex-M4 they run only for layers outside the short form
/// and for a layer's last, partial tile; monomorphised and unrolled per
/// kernel they cost more flash than the kernels themselves). `acc` holds
/// one row of `pix` values per channel.
mod portable {
    use super::super::add::table;
    use super::ChannelOut;

    /// `dst[p * ct + c_off + c] = out(acc[c * pix + p])`, `pix` pixels
    /// being `acc.len() / qs.len()` (a tile's rows: `TILE`).
    #[inline(never)]
    pub(super) fn store_tile(
        qs: &[ChannelOut],
        (dst, ct, c_off): (&mut [i8], usize, usize),
        acc: &[i32],
    ) {
        let pix = acc.len().checked_div(qs.len()).unwrap_or(0);
        for (p, px) in dst.chunks_exact_mut(ct.max(1)).enumerate().take(pix) {
            let px = px.get_mut(c_off..).unwrap_or(&mut []);
            for (c, (d, q)) in px.iter_mut().zip(qs).enumerate() {
                *d = q.out(acc.get(c * pix + p).copied().unwrap_or(0));
            }
        }
    }

    /// `dst[w * co + c] = out(max of acc[c * pix + 4w..][..4])`.
    #[inline(never)]
    pub(super) fn store_pooled(qs: &[ChannelOut], dst: &mut [i8], acc: &[i32], pix: usize) {
        for (w, px) in dst.chunks_exact_mut(qs.len().max(1)).enumerate() {
            for (c, (d, q)) in px.iter_mut().zip(qs).enumerate() {
                let window = acc.get(c * pix + 4 * w..).unwrap_or(&[]);
                let max = window.iter().take(4).copied().max().unwrap_or(0);
                *d = q.out(max);
            }
        }
    }

    /// `acc[c * pix + p] = lut_a[out(acc[..])] + lut_b[shortcut[offs[p] + c]]`
    /// (saturating) for `p < n`.
    #[inline(never)]
    pub(super) fn add_tables(
        qs: &[ChannelOut],
        (acc, pix, n): (&mut [i32], usize, usize),
        (shortcut, offs): (&[i8], &[usize]),
        (lut_a, lut_b): (&[i32; 256], &[i32; 256]),
    ) {
        for (c, (a, q)) in acc.chunks_exact_mut(pix.max(1)).zip(qs).enumerate() {
            for (v, &o) in a.iter_mut().zip(offs).take(n) {
                let s = shortcut.get(o + c).copied().unwrap_or(0);
                *v = table(lut_a, q.out(*v)).saturating_add(table(lut_b, s));
            }
        }
    }

    /// `out[i] = out(lut_a[a[i]] + lut_b[b[i]])` for `i < n`, channel `i %
    /// qs.len()`'s epilogue.
    #[inline(never)]
    pub(super) fn store_add(
        qs: &[ChannelOut],
        (out, a, b, n): (&mut [i8], &[i8], &[i8], usize),
        (lut_a, lut_b): (&[i32; 256], &[i32; 256]),
    ) {
        for (px, (a, b)) in out
            .chunks_mut(qs.len().max(1))
            .zip(a.chunks(qs.len().max(1)).zip(b.chunks(qs.len().max(1))))
            .take(n.div_ceil(qs.len().max(1)))
        {
            for (((o, q), &x), &y) in px.iter_mut().zip(qs).zip(a).zip(b) {
                *o = q.out(table(lut_a, x).saturating_add(table(lut_b, y)));
            }
        }
    }

    /// `acc[c * pix + p] += bias[c]`, wrapping.
    #[inline(never)]
    pub(super) fn add_bias(qs: &[ChannelOut], acc: &mut [i32], pix: usize) {
        for (a, q) in acc.chunks_exact_mut(pix.max(1)).zip(qs) {
            for v in a {
                *v = q.biased(*v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    /// The reference output of `x = acc + bias`: [`Rescale`] and
    /// [`OutputQuant::apply`].
    fn reference(requant: Requant, x: i32, out: OutputQuant) -> i8 {
        out.apply(Rescale::new(requant).apply(x))
    }

    // The short form against the reference at the edges of its domain:
    // every shift it takes, the largest inputs, every zero point's extremes
    // and both clamps.
    #[test]
    fn short_form_is_the_reference_at_its_edges() {
        let limit = (SHORT_INPUT_LIMIT - 1) as i32;
        let xs = [
            0,
            1,
            -1,
            2,
            -2,
            1000,
            -1000,
            limit,
            -limit,
            limit - 1,
            1 - limit,
        ];
        let mut rng = Rng::new(11);
        for e in 1..=MAX_SHORT_SHIFT {
            for multiplier in [
                0,
                1,
                1 << 30,
                i32::MAX,
                (1 << 30) | (rng.next_u32() as i32 & 0x3fff_ffff),
            ] {
                let requant = Requant::new(multiplier, -e).unwrap();
                for zp in [-128i8, -1, 0, 1, 127] {
                    for out in [OutputQuant::linear(zp), OutputQuant::relu(zp)] {
                        for &x in &xs {
                            for bias in [0, x / 2] {
                                let q = ChannelOut::with(requant, bias, SHORT_INPUT_LIMIT - 1, out);
                                assert!(q.is_short());
                                assert_eq!(
                                    q.out(x.wrapping_sub(bias)),
                                    reference(requant, x, out),
                                    "x {x} bias {bias} e {e} m {multiplier} {out:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    // Random inputs within the bound, random multipliers and output stages:
    // short and long form agree with the reference.
    #[test]
    fn both_forms_are_the_reference() {
        let mut rng = Rng::new(12);
        let (mut short, mut long) = (0, 0);
        for _ in 0..200_000 {
            let requant = rng.requant();
            let out = crate::testutil::random_output(&mut rng);
            let bound = (rng.next_u32() >> rng.below(32) as u32) as i64;
            let x = (rng.next_u32() as i64 % (bound + 1)) as i32
                * if rng.below(2) == 0 { 1 } else { -1 };
            let bias = rng.next_u32() as i32 >> rng.below(32) as u32;
            let q = ChannelOut::with(requant, bias, bound + (bias as i64).abs(), out);
            if q.is_short() {
                short += 1
            } else {
                long += 1
            }
            let acc = x.wrapping_sub(bias);
            assert_eq!(
                q.out(acc),
                reference(requant, acc.wrapping_add(bias), out),
                "{x} {bias} {requant:?} {out:?}"
            );
        }
        assert!(
            short > 50_000 && long > 50_000,
            "{short} short, {long} long"
        );
    }

    // The bound of a requantisation holds at its largest input.
    #[test]
    fn requant_bound_holds() {
        let mut rng = Rng::new(13);
        for _ in 0..100_000 {
            let requant = rng.requant();
            let x_max = (rng.next_u32() & i32::MAX as u32) as i64;
            let worst = Rescale::new(requant)
                .apply(x_max as i32)
                .abs()
                .max(Rescale::new(requant).apply(-(x_max as i32)).abs());
            assert!(worst as i64 <= requant.bound(x_max), "{requant:?} {x_max}");
        }
    }
}
