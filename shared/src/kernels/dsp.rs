//! The Cortex-M4 DSP core of the tiled convolution ([`super::tiled`]): a
//! dot product of one int8 weight row against [`TILE`] pixels at once, two
//! multiply-accumulates per `SMLAD`.
//!
//! # Scratch layout
//!
//! The pixels' input windows are first copied into a scratch buffer as
//! 16-bit values with the input zero point already subtracted ("im2col").
//! The reduction runs in *quads* of four values; quad `s` holds, for each
//! pixel `p`, two words:
//!
//! - `quad[2p]     = (x[4s] - zp) | (x[4s + 2] - zp) << 16`
//! - `quad[2p + 1] = (x[4s + 1] - zp) | (x[4s + 3] - zp) << 16`
//!
//! which is exactly what `SXTAB16` makes of an input word (even bytes, then
//! odd bytes after a rotation by 8), and exactly what `SXTB16` makes of the
//! weight word `w[4s..4s + 4]`. So the int8 weights are read in their stored
//! order (OHWI), one word per quad, and never copied.
//!
//! # The inner loop
//!
//! Per quad, 18 instructions do 24 multiply-accumulates: one weight load,
//! two sign extensions, three `LDM`s of four scratch words (two pixels
//! each) and twelve `SMLAD`s. All fourteen free registers are in use (six
//! accumulators, four pixel words, two weight halves, two pointers), so the
//! loop is fully unrolled with `.rept` and needs no counter. On other
//! targets (the host, tests) a portable loop computes the same sums.

use core::mem::MaybeUninit;

/// Output pixels per tile.
pub const TILE: usize = 6;

/// Scratch words per quad: two per pixel.
pub const QUAD_WORDS: usize = 2 * TILE;

/// One quad of the scratch buffer (see the module docs).
pub type Quad = [u32; QUAD_WORDS];

/// `x - zp` for the four bytes of `word`, as the two `SXTAB16` pairs
/// `(x0, x2)` and `(x1, x3)`. `neg_zp` is `-zp` in both halves
/// ([`neg_zero_point_pair`]).
#[inline(always)]
pub fn expand_word(word: u32, neg_zp: u32) -> (u32, u32) {
    add_bytes((neg_zp, neg_zp), word)
}

/// `acc` plus the four bytes of `word`, sign-extended, in [`expand_word`]'s
/// pairs: `(acc.0 + (x0, x2), acc.1 + (x1, x3))`, each 16-bit half wrapping
/// on its own (two `SXTAB16`s).
#[inline(always)]
pub fn add_bytes(acc: (u32, u32), word: u32) -> (u32, u32) {
    #[cfg(arm_dsp)]
    {
        let (lo, hi): (u32, u32);
        // SAFETY: register-only arithmetic.
        unsafe {
            core::arch::asm!(
                "sxtab16 {lo}, {a}, {w}",
                "sxtab16 {hi}, {b}, {w}, ror #8",
                // Written before `b` and `w` are read: not `lateout`.
                lo = out(reg) lo,
                hi = lateout(reg) hi,
                a = in(reg) acc.0,
                b = in(reg) acc.1,
                w = in(reg) word,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        (lo, hi)
    }
    #[cfg(not(arm_dsp))]
    {
        let b = word.to_le_bytes();
        (
            add_halves(
                acc.0,
                (b[0] as i8 as u16 as u32) | (b[2] as i8 as u16 as u32) << 16,
            ),
            add_halves(
                acc.1,
                (b[1] as i8 as u16 as u32) | (b[3] as i8 as u16 as u32) << 16,
            ),
        )
    }
}

/// `a + b` in each 16-bit half, wrapping (`SADD16`).
#[inline(always)]
pub fn add_halves(a: u32, b: u32) -> u32 {
    #[cfg(arm_dsp)]
    {
        let sum: u32;
        // SAFETY: register-only arithmetic (it sets the GE flags, hence
        // no `preserves_flags`).
        unsafe {
            core::arch::asm!(
                "sadd16 {s}, {a}, {b}",
                s = lateout(reg) sum,
                a = in(reg) a,
                b = in(reg) b,
                options(pure, nomem, nostack),
            );
        }
        sum
    }
    #[cfg(not(arm_dsp))]
    {
        let lo = (a as u16).wrapping_add(b as u16) as u32;
        let hi = ((a >> 16) as u16).wrapping_add((b >> 16) as u16) as u32;
        lo | hi << 16
    }
}

/// `-zp` in both 16-bit halves, for [`expand_word`].
#[inline(always)]
pub fn neg_zero_point_pair(zp: i8) -> u32 {
    let h = (-(zp as i16)) as u16 as u32;
    h | h << 16
}

/// `acc[p] += sum over r < len of x[p][r] * w[r]`, the portable form (the
/// host, tests). `x` holds `len.div_ceil(4)` quads; a partial last quad
/// meets zero weights, as in the DSP loop.
#[inline(always)]
pub fn dot_tile_portable(acc: &mut [i32; TILE], x: &[Quad], w: &[i8], len: usize) {
    let len = len.min(w.len());
    for (s, step) in x.iter().enumerate().take(len.div_ceil(4)) {
        let wv = |j: usize| {
            if 4 * s + j < len {
                w[4 * s + j] as i32
            } else {
                0
            }
        };
        // The pairs as SXTB16 makes them: (w0, w2) and (w1, w3).
        let (w0, w1, w2, w3) = (wv(0), wv(1), wv(2), wv(3));
        for (a, px) in acc.iter_mut().zip(step.chunks_exact(2)) {
            let (lo, hi) = (px[0], px[1]);
            let h = |v: u32| v as u16 as i16 as i32;
            *a = a
                .wrapping_add(h(lo) * w0 + h(lo >> 16) * w2)
                .wrapping_add(h(hi) * w1 + h(hi >> 16) * w3);
        }
    }
}

/// One quad of a weight row widened to 16 bits, in the pairs `SXTB16`
/// makes: `(w0, w2)` and `(w1, w3)`. A kernel that widens a layer's weights
/// once ([`widen_weights`]) loads a quad's weights with one `LDM` instead
/// of a load and two sign extensions per tile.
pub type WideQuad = [u32; 2];

/// Output channels times quads a widened weight buffer holds (25,600
/// bytes, on the stack of the kernels that widen): every layer of our
/// networks whose whole window is im2col'd (the largest, the identity
/// ResNet's conv2, fills it).
pub const WIDE_WEIGHT_QUADS: usize = 3200;

/// `w`'s quads widened into `dst`, the last one padded with zero weights;
/// every quad of `dst` is written (past `w`'s end, zero weights).
#[inline(always)]
pub fn widen_weights(dst: &mut [MaybeUninit<WideQuad>], w: &[i8]) {
    let n = expand_words(dst, w, 0);
    // The partial last quad (if `w` ends inside one), then zero weights.
    let mut tail = [0u8; 4];
    for (t, &v) in tail.iter_mut().zip(w.get(4 * n..).unwrap_or(&[])) {
        *t = v as u8;
    }
    for d in dst.get_mut(n..).unwrap_or(&mut []) {
        let (lo, hi) = expand_word(u32::from_le_bytes(tail), 0);
        d.write([lo, hi]);
        tail = [0; 4];
    }
}

/// `dst[q] = expand_word(word q of src, neg_zp)` for as many whole words of
/// `src` as `dst` holds; returns that number (the quads of `dst` written,
/// from the first). On the M4, runs of four quads go through one assembly
/// loop, 15 instructions a run, where the compiled loop took ten to
/// fifteen a quad (InceptionNet widens 16,000 weight quads per inference).
#[inline(always)]
pub fn expand_words(dst: &mut [MaybeUninit<WideQuad>], src: &[i8], neg_zp: u32) -> usize {
    let n = (src.len() / 4).min(dst.len());
    #[allow(unused_mut)] // advanced on the Cortex-M4 only
    let mut done = 0;
    #[cfg(arm_dsp)]
    {
        let runs = n / 4;
        if runs > 0 {
            // SAFETY: reads `16 * runs` bytes of `src` (LDR may be
            // unaligned on the M4) and writes `4 * runs` quads of `dst`,
            // both within their slices (`4 * runs <= n`). r6 (not available
            // as an operand, see `dot_tile!`) holds `neg_zp` and is saved
            // around the loop.
            unsafe {
                core::arch::asm!(
                    "push {{r6}}",
                    "mov r6, r0",
                    "2:",
                    "ldr r0, [r11], #4",
                    "ldr r2, [r11], #4",
                    "ldr r4, [r11], #4",
                    "ldr r8, [r11], #4",
                    "sxtab16 r1, r6, r0, ror #8",
                    "sxtab16 r0, r6, r0",
                    "sxtab16 r3, r6, r2, ror #8",
                    "sxtab16 r2, r6, r2",
                    "sxtab16 r5, r6, r4, ror #8",
                    "sxtab16 r4, r6, r4",
                    "sxtab16 r10, r6, r8, ror #8",
                    "sxtab16 r8, r6, r8",
                    "stm r12!, {{r0, r1, r2, r3, r4, r5, r8, r10}}",
                    "subs lr, lr, #1",
                    "bne 2b",
                    "pop {{r6}}",
                    inout("r0") neg_zp => _,
                    inout("r11") src.as_ptr() => _,
                    inout("r12") dst.as_mut_ptr() => _,
                    inout("lr") runs => _,
                    out("r1") _,
                    out("r2") _,
                    out("r3") _,
                    out("r4") _,
                    out("r5") _,
                    out("r8") _,
                    out("r10") _,
                );
            }
            done = 4 * runs;
        }
    }
    let rest = dst.get_mut(done..n).unwrap_or(&mut []);
    // `rest` first: it is the shorter, and zip asks its first iterator first.
    for (d, b) in rest
        .iter_mut()
        .zip(src.get(4 * done..).unwrap_or(&[]).chunks_exact(4))
    {
        let word = u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
        let (lo, hi) = expand_word(word, neg_zp);
        d.write([lo, hi]);
    }
    n
}

/// `acc[p] = sum over quads s of x[s][p] . w[s]`, plus `acc[p]` if `add`:
/// the portable form of [`dot_channels!`] for one channel.
#[inline(always)]
pub fn dot_tile_wide_portable(acc: &mut [i32; TILE], x: &[Quad], w: &[WideQuad], add: bool) {
    let h = |v: u32| v as u16 as i16 as i32;
    if !add {
        *acc = [0; TILE];
    }
    for (step, w) in x.iter().zip(w) {
        let (w0, w2, w1, w3) = (h(w[0]), h(w[0] >> 16), h(w[1]), h(w[1] >> 16));
        for (a, px) in acc.iter_mut().zip(step.chunks_exact(2)) {
            *a = a
                .wrapping_add(h(px[0]) * w0 + h(px[0] >> 16) * w2)
                .wrapping_add(h(px[1]) * w1 + h(px[1] >> 16) * w3);
        }
    }
}

/// The twelve `SMLAD`s of one quad: the weight pair halves in r6 (w0, w2)
/// and r7 (w1, w3), the six pixels' scratch words loaded two pixels at a
/// time into r8-r11, accumulators r0-r5.
#[cfg(arm_dsp)]
macro_rules! tile_macs {
    () => {
        concat!(
            "ldm r12!, {{r8, r9, r10, r11}}\n",
            "smlad r0, r8, r6, r0\n",
            "smlad r0, r9, r7, r0\n",
            "smlad r1, r10, r6, r1\n",
            "smlad r1, r11, r7, r1\n",
            "ldm r12!, {{r8, r9, r10, r11}}\n",
            "smlad r2, r8, r6, r2\n",
            "smlad r2, r9, r7, r2\n",
            "smlad r3, r10, r6, r3\n",
            "smlad r3, r11, r7, r3\n",
            "ldm r12!, {{r8, r9, r10, r11}}\n",
            "smlad r4, r8, r6, r4\n",
            "smlad r4, r9, r7, r4\n",
            "smlad r5, r10, r6, r5\n",
            "smlad r5, r11, r7, r5",
        )
    };
}
#[cfg(arm_dsp)]
pub(crate) use tile_macs;

/// `acc[p] += sum over r < LEN of x[p][r] * w[r]` with `LEN` a constant
/// expression (it may use the caller's const generics): on the Cortex-M4
/// the unrolled `SMLAD` loop, whose last partial quad reads the row's last
/// word and shifts the bytes past `LEN` out (the scratch holds zeros there);
/// elsewhere [`dot_tile_portable`]. `$x: &[Quad]` must hold
/// `LEN.div_ceil(4)` quads and `$w: &[i8]` at least `max(LEN, 4)` bytes
/// (checked; otherwise the portable loop runs).
macro_rules! dot_tile {
    ($acc:expr, $x:expr, $w:expr, $len:expr) => {{
        let acc: &mut [i32; $crate::kernels::dsp::TILE] = $acc;
        let x: &[$crate::kernels::dsp::Quad] = $x;
        let w: &[i8] = $w;
        #[cfg(arm_dsp)]
        {
            if $len >= 4 && x.len() >= ($len as usize).div_ceil(4) && w.len() >= $len {
                let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5] = *acc;
                // SAFETY: reads `LEN.div_ceil(4)` quads of `x` and bytes
                // `0..LEN` of `w` (lengths checked above; LDR may be
                // unaligned on the M4, LDM reads the word-aligned scratch).
                // r6, r7 and r9 are not available as operands (LLVM's base
                // and frame pointers, the platform register), so they are
                // saved and restored around the loop.
                unsafe {
                    core::arch::asm!(
                        "push {{r6, r7, r9}}",
                        ".rept {steps}",
                        "ldr r7, [lr], #4",
                        "sxtb16 r6, r7",
                        "sxtb16 r7, r7, ror #8",
                        $crate::kernels::dsp::tile_macs!(),
                        ".endr",
                        // The last `rem` weights: the word ending at LEN,
                        // shifted so they land in the low lanes.
                        ".if {rem}",
                        "ldr r7, [lr, #{back}]",
                        "lsr r7, r7, #{bits}",
                        "sxtb16 r6, r7",
                        "sxtb16 r7, r7, ror #8",
                        $crate::kernels::dsp::tile_macs!(),
                        ".endif",
                        "pop {{r6, r7, r9}}",
                        steps = const $len / 4,
                        rem = const $len % 4,
                        back = const ($len % 4) as isize - 4,
                        bits = const 8 * ((4 - $len % 4) % 4),
                        inout("r0") a0,
                        inout("r1") a1,
                        inout("r2") a2,
                        inout("r3") a3,
                        inout("r4") a4,
                        inout("r5") a5,
                        inout("r12") x.as_ptr() => _,
                        inout("lr") w.as_ptr() => _,
                        out("r8") _,
                        out("r10") _,
                        out("r11") _,
                        options(readonly, preserves_flags),
                    );
                }
                *acc = [a0, a1, a2, a3, a4, a5];
            } else {
                $crate::kernels::dsp::dot_tile_portable(acc, x, w, $len);
            }
        }
        #[cfg(not(arm_dsp))]
        $crate::kernels::dsp::dot_tile_portable(acc, x, w, $len);
    }};
}
pub(crate) use dot_tile;

/// Every channel's dot product over one tile, from widened weights:
/// `acc(c)[p] = sum over quads s < QUADS of x[s][p] . w[c * QUADS + s]`
/// for `c < w.len() / QUADS`, where `acc(c)` is the `TILE` words at
/// `$acc + c * $stride` bytes (`$acc: *mut i32`, a tile's part of the first
/// channel's accumulators; `$stride` a constant). The accumulators are
/// overwritten, or with `$add` (a constant) added to. On the Cortex-M4 one
/// assembly loop over the channels: per quad an `LDM` of the weights, three
/// `LDM`s of pixels and twelve `SMLAD`s (without `$add`, the first quad's
/// `SMUAD`s start the sums), and about eight instructions per channel.
/// `$x: &[Quad]` must hold `QUADS` quads (checked; otherwise nothing is
/// computed).
///
/// # Safety
///
/// `$acc + c * $stride` must be valid for `TILE` words for every channel.
macro_rules! dot_channels {
    ($acc:expr, $stride:expr, $x:expr, $w:expr, $quads:expr, $add:expr) => {{
        let acc: *mut i32 = $acc;
        let x: &[$crate::kernels::dsp::Quad] = $x;
        let w: &[$crate::kernels::dsp::WideQuad] = $w;
        let channels = w.len() / $quads;
        if $quads >= 1 && x.len() >= $quads && channels > 0 {
            #[cfg(arm_dsp)]
            // SAFETY: reads QUADS quads of `x` and `channels * QUADS` of
            // `w`; writes TILE words at each channel's accumulators (the
            // caller's contract). r6, r7 and r9 are saved around (see
            // `dot_tile!`); the accumulators' address, the weights' end and
            // the pixels' start wait on the stack.
            unsafe {
                core::arch::asm!(
                    "push {{r6, r7, r9}}",
                    "push {{r0, r1, r12}}",
                    "2:",
                    ".if {add}",
                    "ldr r8, [sp]",
                    "ldm r8, {{r0, r1, r2, r3, r4, r5}}",
                    ".rept {quads}",
                    "ldm lr!, {{r6, r7}}",
                    $crate::kernels::dsp::tile_macs!(),
                    ".endr",
                    ".else",
                    "ldm lr!, {{r6, r7}}",
                    "ldm r12!, {{r8, r9, r10, r11}}",
                    "smuad r0, r8, r6",
                    "smlad r0, r9, r7, r0",
                    "smuad r1, r10, r6",
                    "smlad r1, r11, r7, r1",
                    "ldm r12!, {{r8, r9, r10, r11}}",
                    "smuad r2, r8, r6",
                    "smlad r2, r9, r7, r2",
                    "smuad r3, r10, r6",
                    "smlad r3, r11, r7, r3",
                    "ldm r12!, {{r8, r9, r10, r11}}",
                    "smuad r4, r8, r6",
                    "smlad r4, r9, r7, r4",
                    "smuad r5, r10, r6",
                    "smlad r5, r11, r7, r5",
                    ".rept {rest}",
                    "ldm lr!, {{r6, r7}}",
                    $crate::kernels::dsp::tile_macs!(),
                    ".endr",
                    ".endif",
                    // Store, next channel's accumulators and the pixels
                    // again.
                    "ldr r8, [sp]",
                    "stm r8, {{r0, r1, r2, r3, r4, r5}}",
                    "add r8, r8, #{stride}",
                    "str r8, [sp]",
                    "ldr r12, [sp, #8]",
                    "ldr r8, [sp, #4]",
                    "cmp lr, r8",
                    "bne 2b",
                    "add sp, sp, #12",
                    "pop {{r6, r7, r9}}",
                    add = const $add as u8,
                    quads = const $quads,
                    rest = const $quads - 1,
                    stride = const $stride,
                    inout("r0") acc => _,
                    inout("r1") w.as_ptr().wrapping_add(channels * $quads) => _,
                    out("r2") _,
                    out("r3") _,
                    out("r4") _,
                    out("r5") _,
                    inout("r12") x.as_ptr() => _,
                    inout("lr") w.as_ptr() => _,
                    out("r8") _,
                    out("r10") _,
                    out("r11") _,
                );
            }
            #[cfg(not(arm_dsp))]
            for (c, w) in w.chunks_exact($quads).enumerate() {
                // SAFETY: the caller's contract.
                let acc = unsafe { &mut *acc.byte_add(c * $stride).cast::<[i32; $crate::kernels::dsp::TILE]>() };
                $crate::kernels::dsp::dot_tile_wide_portable(acc, x, w, $add);
            }
        }
    }};
}
pub(crate) use dot_channels;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    /// The 16-bit value of reduction index `r` of pixel `p` in a scratch
    /// buffer viewed as halfwords (little endian): quad `r / 4`, word
    /// `2p + (r & 1)`, half `(r >> 1) & 1`.
    const fn half_index(p: usize, r: usize) -> usize {
        ((r / 4) * QUAD_WORDS + 2 * p + (r & 1)) * 2 + ((r >> 1) & 1)
    }

    // Independent of the packing: the plain sums over r.
    #[test]
    fn portable_dot_is_the_plain_sum_over_the_reduction() {
        let mut rng = Rng::new(7);
        for steps in [1usize, 2, 5] {
            let n = 4 * steps;
            let mut x = [[0i16; 20]; TILE];
            let mut w = [0i8; 20];
            for p in x.iter_mut() {
                for v in p[..n].iter_mut() {
                    *v = rng.range_i32(-255, 255) as i16;
                }
            }
            rng.fill_i8(&mut w[..n]);
            let mut scratch = [[0u32; QUAD_WORDS]; 5];
            let halves: &mut [u16] = bytemuck::cast_slice_mut(&mut scratch[..]);
            for (p, xp) in x.iter().enumerate() {
                for (r, &v) in xp[..n].iter().enumerate() {
                    halves[half_index(p, r)] = v as u16;
                }
            }
            let mut acc = [5i32; TILE];
            dot_tile_portable(&mut acc, &scratch[..steps], &w[..n], n);
            for p in 0..TILE {
                let want: i32 = 5 + (0..n).map(|r| x[p][r] as i32 * w[r] as i32).sum::<i32>();
                assert_eq!(acc[p], want, "pixel {p}, {steps} steps");
            }
        }
    }

    #[test]
    fn expand_word_subtracts_the_zero_point_in_sxtab16_order() {
        let mut rng = Rng::new(8);
        for _ in 0..1000 {
            let word = rng.next_u32();
            let zp = rng.i8();
            let (lo, hi) = expand_word(word, neg_zero_point_pair(zp));
            let b = word.to_le_bytes().map(|b| b as i8 as i32 - zp as i32);
            let h = |v: u32| v as u16 as i16 as i32;
            assert_eq!(
                [h(lo), h(lo >> 16), h(hi), h(hi >> 16)],
                [b[0], b[2], b[1], b[3]]
            );
        }
    }
}
