//! The fast convolution: tiles of [`TILE`] output pixels, an im2col copy of
//! their input windows into scratch, and the `SMLAD` dot products of
//! [`super::dsp`]; then a per-output *epilogue* that decides what becomes of
//! each accumulator (requantise and store, max-pool, residual add).
//!
//! The public kernels, each with a reference built from the plain kernels
//! (the tests demand identical bytes):
//!
//! - [`conv2d_s8`]: one conv, into a channel slice (like [`conv2d_s8_ref`]);
//! - [`conv2d_x2_s8`] and [`conv2d_x3_s8`]: two or three convs that read
//!   the same input, computed as one wider conv (the Inception 1x1 reducers;
//!   a ResNet block's conv1 and shortcut);
//! - [`conv2d_pool_s8`]: conv, 2x2 max pool and clamp (ReLU) in one pass,
//!   one requantisation per pooled output;
//! - [`conv2d_add_pool_s8`]: a residual block's last conv, the residual add
//!   and the 2x2 max pool + ReLU in one pass.
//!
//! Max pooling is fused exactly: requantisation, zero point and clamp are a
//! non-decreasing function of the accumulator, so the max of four outputs is
//! the output of the max of the four accumulators (after the bias).
//!
//! [`conv2d_s8_ref`]: super::conv2d_s8_ref

use super::add::{add_sum_bound, fill_add_lut, AddLut};
use super::dsp::{
    dot_channels, dot_tile, expand_word, expand_words, neg_zero_point_pair, widen_weights, Quad,
    WideQuad, TILE, WIDE_WEIGHT_QUADS,
};
use super::epilogue::Epilogue;
use super::{ActRange, AddS8, ChannelOffset, Conv2dS8, MAX_DOT_LEN};
use core::mem::MaybeUninit;

/// Largest reduction (`K*K*CI`) im2col'd whole per tile; longer ones go one
/// kernel row at a time (conv2's 2,200 would need 26 KB of scratch).
const WHOLE_WINDOW_MAX: usize = 512;

/// Reduction values one im2col pass covers: the whole window, or one kernel
/// row when the window is long.
pub const fn segment_len(ci: usize, k: usize) -> usize {
    if k * k * ci <= WHOLE_WINDOW_MAX {
        k * k * ci
    } else {
        k * ci
    }
}

/// Scratch quads a conv with `ci` input channels and kernel `k` needs.
pub const fn scratch_quads(ci: usize, k: usize) -> usize {
    segment_len(ci, k).div_ceil(4)
}

/// The output pixels `(oy, ox)` in visiting order: row-major, or (`POOL`)
/// window by window of the 2x2 pool, each window row-major. Stepped one
/// pixel at a time (no division per pixel).
struct VisitOrder<const WO: usize, const POOL: bool> {
    /// The current pixel; in pool order, the top left of its window.
    y: usize,
    x: usize,
    /// Position inside the pool window (0..4; 0 in raster order).
    j: usize,
}

impl<const WO: usize, const POOL: bool> VisitOrder<WO, POOL> {
    const fn new() -> Self {
        VisitOrder { y: 0, x: 0, j: 0 }
    }

    /// The next pixel (past the last one it keeps counting rows; the tiles
    /// ask for exactly `HO * WO`).
    #[inline(always)]
    fn next_pixel(&mut self) -> (usize, usize) {
        if POOL {
            let at = (self.y + self.j / 2, self.x + self.j % 2);
            self.j += 1;
            if self.j == 4 {
                self.j = 0;
                self.x += 2;
                if self.x == WO {
                    self.x = 0;
                    self.y += 2;
                }
            }
            at
        } else {
            let at = (self.y, self.x);
            self.x += 1;
            if self.x == WO {
                self.x = 0;
                self.y += 1;
            }
            at
        }
    }
}

/// The output pixels of one tile, or of a group of `PIX / TILE` tiles (the
/// pooled kernels take two at a time: twelve pixels are three whole pool
/// windows).
struct Tile<const PIX: usize> {
    /// Visiting index of the first pixel (see [`VisitOrder`]).
    first: usize,
    /// Pixels in this tile (`PIX`, fewer in the last).
    n: usize,
    /// Each pixel's `(oy, ox)`.
    pixels: [(usize, usize); PIX],
    /// Each pixel's row-major index `oy * WO + ox`.
    at: [usize; PIX],
}

impl<const PIX: usize> Tile<PIX> {
    /// No pixels yet.
    const EMPTY: Self = Tile {
        first: 0,
        n: 0,
        pixels: [(0, 0); PIX],
        at: [0; PIX],
    };

    /// Refills this tile, in place, with the (up to) `PIX` pixels from
    /// visiting index `first` of `n_pixels`, taken from `order`.
    #[inline(always)]
    fn fill<const WO: usize, const POOL: bool>(
        &mut self,
        order: &mut VisitOrder<WO, POOL>,
        first: usize,
        n_pixels: usize,
    ) {
        self.first = first;
        self.n = PIX.min(n_pixels.saturating_sub(first));
        for p in 0..self.n {
            let (oy, ox) = order.next_pixel();
            self.pixels[p] = (oy, ox);
            self.at[p] = oy * WO + ox;
        }
    }
}

/// Bytes of a gathered window: the longest whole window plus a word.
const GATHER_MAX: usize = WHOLE_WINDOW_MAX + 4;

/// Copies the windows of `pixels` (at most [`TILE`]), kernel rows `ky0..ky0
/// + rows`, into `scratch` as `x - zp` (zero for padding and past the
/// segment's end) in the layout of [`super::dsp`]. When `CI % 4 == 0` each
/// input word is one quad of one pixel; a one-channel window inside the
/// image is read as words ([`one_channel_into`]); otherwise (CI = 10, or
/// one channel at the padding) each window is first gathered into a byte
/// buffer, padded with `zp`.
#[inline(always)]
fn im2col<const H: usize, const W: usize, const CI: usize, const K: usize, const PAD: usize>(
    input: &[[[i8; CI]; W]; H],
    zp: i8,
    pixels: &[(usize, usize)],
    (ky0, rows): (usize, usize),
    (scratch, window): (&mut [Quad], &mut [i8; GATHER_MAX]),
) {
    let neg_zp = neg_zero_point_pair(zp);
    for (p, &(oy, ox)) in pixels.iter().enumerate().take(TILE) {
        // Kernel row `ky` of this pixel's window: its input row, if inside
        // the image, and the whole run of K taps when it lies inside too
        // (the common case: one contiguous copy).
        let row = |ky: usize| {
            (oy + ky0 + ky)
                .checked_sub(PAD)
                .and_then(|iy| input.get(iy))
        };
        let run = |r| run_of::<CI, W, K>(r, ox.checked_sub(PAD));
        // Input pixel of tap `kx` in a row.
        let tap = |r: &[[i8; CI]; W], kx: usize| {
            (ox + kx).checked_sub(PAD).and_then(|ix| r.get(ix).copied())
        };
        if CI % 4 == 0 {
            // Whole kernel rows of quads: K * CI / 4 each (a constant, so
            // the copies are unrolled and unchecked).
            let Some(steps) = scratch.get_mut(..rows * K * CI / 4) else {
                return;
            };
            for (ky, steps) in steps.chunks_exact_mut(K * CI / 4).enumerate() {
                match row(ky) {
                    Some(r) => match run(r) {
                        Some(run) => {
                            for (steps, px) in steps.chunks_exact_mut(CI / 4).zip(run) {
                                expand_into(steps, p, px, neg_zp);
                            }
                        }
                        None => {
                            for (kx, steps) in steps.chunks_exact_mut(CI / 4).enumerate() {
                                match tap(r, kx) {
                                    Some(px) => expand_into(steps, p, &px, neg_zp),
                                    None => zero_into(steps, p),
                                }
                            }
                        }
                    },
                    None => zero_into(steps, p),
                }
            }
        } else {
            // One input channel, the window inside the image: word loads.
            if CI == 1 && K >= 3 && ky0 == 0 && rows == K {
                let flat = input.as_flattened().as_flattened();
                if let Some(win) = interior_window::<H, W, K, PAD>(flat, oy, ox) {
                    one_channel_into::<W, K>(scratch, p, win, neg_zp);
                    continue;
                }
            }
            // Gathered: the window's bytes (padding as zp, which the
            // expansion turns into 0; the bytes past the window keep the zp
            // they were filled with), then word by word.
            let len = rows * K * CI;
            // The buffer must stay in memory: promoted to registers, its
            // bytes are shifted in and out one at a time (measured: conv1's
            // gather cost about 190 instructions per pixel that way).
            let window = core::hint::black_box(&mut *window);
            let Some(bytes) = window.get_mut(..len) else {
                return;
            };
            for (ky, dst) in bytes.chunks_exact_mut(K * CI).enumerate() {
                match row(ky) {
                    Some(r) => match run(r) {
                        Some(run) => copy_bytes(dst, run.as_flattened()),
                        None => {
                            for (kx, dst) in dst.chunks_exact_mut(CI).enumerate() {
                                match tap(r, kx) {
                                    Some(px) => dst.copy_from_slice(&px),
                                    None => dst.fill(zp),
                                }
                            }
                        }
                    },
                    None => dst.fill(zp),
                }
            }
            let n = len.div_ceil(4);
            if let (Some(steps), Some(bytes)) = (scratch.get_mut(..n), window.get(..4 * n)) {
                expand_into(steps, p, bytes, neg_zp);
            }
        }
    }
}

/// The input bytes from the top left of output pixel `(oy, ox)`'s window
/// through three bytes past its last tap, in a one-channel image, if the
/// window lies inside the image (no padding) and the bytes inside the
/// slice: what [`one_channel_into`] reads. `None` sends the pixel to the
/// gathered path.
#[inline(always)]
fn interior_window<const H: usize, const W: usize, const K: usize, const PAD: usize>(
    flat: &[i8],
    oy: usize,
    ox: usize,
) -> Option<&[i8]> {
    let (iy, ix) = (oy.checked_sub(PAD)?, ox.checked_sub(PAD)?);
    if iy + K > H || ix + K > W {
        return None;
    }
    let start = iy * W + ix;
    flat.get(start..start + (K - 1) * W + K + 3)
}

/// Pixel `p`'s quads of a one-channel window; `K >= 3` (checked by the
/// caller), so a quad's four taps, row-major like the weights, span at most
/// two kernel rows. Each quad is an unaligned word of its first row,
/// completed from the next row's first bytes when the row ends inside it. Bytes past the window
/// meet the zero weights of the last quad (see `dot_tile!`). About four
/// instructions per quad, where the gathered path copies byte by byte.
#[inline(always)]
fn one_channel_into<const W: usize, const K: usize>(
    scratch: &mut [Quad],
    p: usize,
    win: &[i8],
    neg_zp: u32,
) {
    let word = |at: usize| {
        win.get(at..at + 4).map_or(0, |b| {
            u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
        })
    };
    for (q, step) in scratch.iter_mut().take((K * K).div_ceil(4)).enumerate() {
        let (ky, kx) = (4 * q / K, 4 * q % K);
        let mut v = word(ky * W + kx);
        // Taps of row ky in this quad; the rest from row ky + 1.
        let n = K - kx;
        if n < 4 && ky + 1 < K {
            v = v & ((1u32 << (8 * n)) - 1) | word((ky + 1) * W) << (8 * n);
        }
        let (lo, hi) = expand_word(v, neg_zp);
        if let Some(px) = step.get_mut(2 * p..2 * p + 2) {
            px[0] = lo;
            px[1] = hi;
        }
    }
}

/// The `K` input pixels from column `ix` of `row`, if inside the image.
#[inline(always)]
fn run_of<const CI: usize, const W: usize, const K: usize>(
    row: &[[i8; CI]; W],
    ix: Option<usize>,
) -> Option<&[[i8; CI]; K]> {
    let ix = ix?;
    row.get(ix..ix + K)?.try_into().ok()
}

/// `dst.copy_from_slice(src)` a word at a time: a short copy of constant
/// length that stays inline (a `memcpy` call costs more than the copy).
#[inline(always)]
fn copy_bytes(dst: &mut [i8], src: &[i8]) {
    let (mut d, mut s) = (dst.chunks_exact_mut(4), src.chunks_exact(4));
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// Pixel `p`'s words of `quads`, one quad per 4 bytes of `bytes`, as
/// `x - zp` ([`expand_word`]).
#[inline(always)]
fn expand_into(steps: &mut [Quad], p: usize, bytes: &[i8], neg_zp: u32) {
    for (step, b) in steps.iter_mut().zip(bytes.chunks_exact(4)) {
        let word = u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
        let (lo, hi) = expand_word(word, neg_zp);
        if let Some(px) = step.get_mut(2 * p..2 * p + 2) {
            px[0] = lo;
            px[1] = hi;
        }
    }
}

/// Pixel `p`'s words of `quads` as zero (padding).
#[inline(always)]
fn zero_into(steps: &mut [Quad], p: usize) {
    for step in steps {
        if let Some(px) = step.get_mut(2 * p..2 * p + 2) {
            px.fill(0);
        }
    }
}

/// Quads an expanded input ([`expand_input`]) may take: 10 KB on the stack
/// of the kernels that expand. Every whole-window conv of our networks with
/// `CI % 4 == 0` fits (the largest, InceptionNet's b3_3: 1,176); conv2's
/// 12x12x88 input (3,168) would not, and it reads each pixel fewer times.
const EXPANDED_QUADS_MAX: usize = 1280;

/// Whether [`conv_tiles`] expands its input once ([`expand_input`]) rather
/// than each window: `CI % 4 == 0`, whole windows, and a padded input that
/// fits [`EXPANDED_QUADS_MAX`].
const fn expands(h: usize, w: usize, ci: usize, k: usize, pad: usize) -> bool {
    ci % 4 == 0
        && k * k * ci <= WHOLE_WINDOW_MAX
        && (h + 2 * pad) * (w + 2 * pad) * ci / 4 <= EXPANDED_QUADS_MAX
}

/// The input as `x - zp`, one quad per input word in the pairs of
/// [`expand_word`], with `PAD` rows and columns of zeros around it:
/// row-major `[H + 2 PAD][W + 2 PAD][CI / 4]` (empty if `buf` is too
/// short). Every window is then a run of `K * CI / 4` quads per kernel row
/// that [`im2col_expanded`] copies, without the sign extensions or the
/// padding's branches of [`im2col`] (each input word is expanded once
/// instead of once per window that holds it).
#[inline(always)]
fn expand_input<'b, const H: usize, const W: usize, const CI: usize, const PAD: usize>(
    input: &[[[i8; CI]; W]; H],
    zp: i8,
    buf: &'b mut [MaybeUninit<WideQuad>],
) -> &'b [WideQuad] {
    let flat = input.as_flattened().as_flattened();
    let n = expand_padded(flat, (H, W * CI / 4), (PAD, PAD * CI / 4), zp, buf);
    let buf = buf.get(..n).unwrap_or(&[]);
    // SAFETY: `expand_padded` wrote the first `n` quads of `buf`, and
    // `MaybeUninit<WideQuad>` has `WideQuad`'s layout.
    unsafe { &*(buf as *const [MaybeUninit<WideQuad>] as *const [WideQuad]) }
}

/// [`expand_input`]'s work on flat slices, one copy for every kernel
/// (compiled per kernel, its constant-length loops were unrolled: about a
/// kilobyte of flash each). The image is `rows` rows of `row` quads (`4 *
/// row` bytes of `input` each); each row gets `pad` quads of zeros on
/// either side, and `pad_rows` rows of zeros go above and below. Returns
/// the number of quads written, all of them initialised (0 if `buf` or
/// `input` is too short).
#[inline(never)]
fn expand_padded(
    input: &[i8],
    (rows, row): (usize, usize),
    (pad_rows, pad): (usize, usize),
    zp: i8,
    buf: &mut [MaybeUninit<WideQuad>],
) -> usize {
    let padded_row = row + 2 * pad;
    let n = (rows + 2 * pad_rows) * padded_row;
    let (Some(buf), true) = (buf.get_mut(..n), input.len() >= 4 * row * rows) else {
        return 0;
    };
    let neg_zp = neg_zero_point_pair(zp);
    for (y, out) in buf.chunks_exact_mut(padded_row.max(1)).enumerate() {
        let src = y
            .checked_sub(pad_rows)
            .filter(|&iy| iy < rows)
            .and_then(|iy| input.get(4 * row * iy..4 * row * (iy + 1)));
        // Quads of `out` written so far, from the left.
        let mut written = 0;
        if let (Some(src), Some((left, rest))) = (src, out.split_at_mut_checked(pad)) {
            for q in left {
                q.write([0; 2]);
            }
            written = pad + expand_words(rest.get_mut(..row).unwrap_or(&mut []), src, neg_zp);
        }
        for q in out.get_mut(written..).unwrap_or(&mut []) {
            q.write([0; 2]);
        }
    }
    n
}

/// [`im2col`] of whole windows from an expanded input ([`expand_input`]):
/// per pixel and kernel row, a copy of `K * CI / 4` quads. On the M4 one
/// assembly loop per pixel, `LDM`s of eight words and `STRD`s into the
/// pixel's column (1.25 instructions a quad; the compiled copy took four
/// and a half); a window outside `x` (it cannot be) is not copied.
#[inline(always)]
fn im2col_expanded<const W: usize, const CI: usize, const K: usize, const PAD: usize>(
    x: &[WideQuad],
    pixels: &[(usize, usize)],
    scratch: &mut [Quad],
) {
    let run = K * CI / 4;
    for (p, &(oy, ox)) in pixels.iter().enumerate().take(TILE) {
        #[cfg(arm_dsp)]
        {
            const {
                assert!(
                    K >= 1 && (W + 2 * PAD - K) * CI * 2 < 4096,
                    "row skip too long"
                )
            };
            let at = (oy * (W + 2 * PAD) + ox) * (CI / 4);
            let end = at + (K - 1) * (W + 2 * PAD) * (CI / 4) + run;
            if end <= x.len() && scratch.len() >= K * run {
                // SAFETY: reads quads `at..end` of `x` (checked above),
                // `run` per kernel row, and writes pixel `p < TILE`'s two
                // words of quads `0..K * run` of `scratch` (checked). All
                // accesses are to word arrays, so LDRD/STRD are aligned.
                unsafe {
                    core::arch::asm!(
                        "2:",
                        ".rept {fours}",
                        "ldm {src}!, {{r0, r1, r2, r3, r4, r5, r8, r10}}",
                        "strd r0, r1, [{dst}], #{stride}",
                        "strd r2, r3, [{dst}], #{stride}",
                        "strd r4, r5, [{dst}], #{stride}",
                        "strd r8, r10, [{dst}], #{stride}",
                        ".endr",
                        ".rept {ones}",
                        "ldrd r0, r1, [{src}], #8",
                        "strd r0, r1, [{dst}], #{stride}",
                        ".endr",
                        "addw {src}, {src}, #{skip}",
                        "subs {n}, {n}, #1",
                        "bne 2b",
                        fours = const K * CI / 16,
                        ones = const (K * CI / 4) % 4,
                        stride = const 4 * super::dsp::QUAD_WORDS,
                        skip = const (W + 2 * PAD - K) * CI * 2,
                        src = inout(reg) x.as_ptr().wrapping_add(at) => _,
                        dst = inout(reg) scratch.as_mut_ptr().cast::<u32>().wrapping_add(2 * p) => _,
                        n = inout(reg) K => _,
                        out("r0") _,
                        out("r1") _,
                        out("r2") _,
                        out("r3") _,
                        out("r4") _,
                        out("r5") _,
                        out("r8") _,
                        out("r10") _,
                        options(nostack),
                    );
                }
            }
        }
        #[cfg(not(arm_dsp))]
        for (ky, steps) in scratch.chunks_exact_mut(run.max(1)).take(K).enumerate() {
            let at = ((oy + ky) * (W + 2 * PAD) + ox) * (CI / 4);
            let Some(src) = x.get(at..at + run) else {
                continue;
            };
            for (step, q) in steps.iter_mut().zip(src) {
                if let Some(px) = step.get_mut(2 * p..2 * p + 2) {
                    px.copy_from_slice(q);
                }
            }
        }
    }
}

/// The tiled conv driver: visits the `HO * WO` output pixels (in pool order
/// if `POOL`) `PIX` at a time (a multiple of [`TILE`]) and hands their
/// accumulators to `finish(tile, acc)`, `acc[co][p]` for channel `co < co_n`
/// and pixel `p`. `weights(co)` is output channel `co`'s OHWI row (`co_n <=
/// CO_MAX`); an accumulator is `sum w * (x - zp)`, bias not included;
/// entries past `tile.n` are meaningless.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv_tiles<
    'w,
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const CO_MAX: usize,
    const POOL: bool,
    const PIX: usize,
>(
    input: &[[[i8; CI]; W]; H],
    zp: i8,
    co_n: usize,
    weights: impl Fn(usize) -> &'w [[[i8; CI]; K]; K],
    scratch: &mut [Quad],
    mut finish: impl FnMut(&Tile<PIX>, &mut [[i32; PIX]]),
) {
    const {
        assert!(PAD < K, "padding must be smaller than the kernel");
        assert!(
            HO + K == H + 2 * PAD + 1 && WO + K == W + 2 * PAD + 1,
            "output side"
        );
        assert!(
            K * K * CI <= MAX_DOT_LEN,
            "reduction too long for an i32 accumulator"
        );
        assert!(
            !POOL || (HO % 2 == 0 && WO % 2 == 0),
            "fused pool needs even sides"
        );
        assert!(
            CI % 4 == 0 || segment_len(CI, K) <= WHOLE_WINDOW_MAX,
            "gathered window too long"
        );
        assert!(PIX > 0 && PIX % TILE == 0, "whole tiles per group");
    };
    if K * K * CI > WHOLE_WINDOW_MAX
        && CO_MAX * (K * CI).div_ceil(4) <= WIDE_WEIGHT_QUADS
        && HO * WO <= ROW_GROUPS * PIX
    {
        return conv_by_rows::<H, W, CI, K, PAD, HO, WO, CO_MAX, POOL, PIX>(
            input, zp, co_n, weights, scratch, finish,
        );
    }
    let co_n = co_n.min(CO_MAX);
    let n_pixels = HO * WO;
    // The gather buffer of small-CI windows, filled with zp once: the bytes
    // past a window must expand to 0.
    let mut window = [zp; GATHER_MAX];
    let mut acc = [[0i32; PIX]; CO_MAX];
    let acc = acc.get_mut(..co_n).unwrap_or(&mut []);
    // A whole window's weights, widened once for the layer when they fit
    // and the layer has enough tiles to repay it (about six instructions a
    // quad, against two saved per quad and tile, and eight per channel and
    // tile): the dot products then load them with one LDM per quad.
    let quads = (K * K * CI).div_ceil(4);
    // Left uninitialised: clearing 25 KB per call would cost more than the
    // smaller layers save.
    let mut wide_buf = [MaybeUninit::<WideQuad>::uninit(); WIDE_WEIGHT_QUADS];
    // A constant, so that each kernel keeps one of the two dot products
    // (the flash holds one).
    let widen = K * K * CI <= WHOLE_WINDOW_MAX
        && HO * WO >= 4 * TILE
        && CO_MAX * (K * K * CI).div_ceil(4) <= WIDE_WEIGHT_QUADS;
    let wide = if widen {
        let row = |co| weights(co).as_flattened().as_flattened();
        Some(widen_rows(&mut wide_buf, (co_n, quads), row))
    } else {
        None
    };
    let mut expanded_buf = [MaybeUninit::<WideQuad>::uninit(); EXPANDED_QUADS_MAX];
    let expanded = if expands(H, W, CI, K, PAD) {
        Some(expand_input::<H, W, CI, PAD>(input, zp, &mut expanded_buf))
    } else {
        None
    };
    let mut tile = Tile::<PIX>::EMPTY;
    let mut order = VisitOrder::<WO, POOL>::new();
    let mut first = 0;
    while first < n_pixels {
        tile.fill(&mut order, first, n_pixels);
        // The widened dot products overwrite their accumulators; the others
        // add to them.
        if wide.is_none() {
            for a in acc.iter_mut() {
                *a = [0; PIX];
            }
        }
        for g in (0..tile.n).step_by(TILE) {
            let pixels = &tile.pixels[g..tile.n.min(g + TILE)];
            if K * K * CI <= WHOLE_WINDOW_MAX {
                // One im2col of the whole window.
                match expanded {
                    Some(x) => im2col_expanded::<W, CI, K, PAD>(x, pixels, scratch),
                    None => im2col::<H, W, CI, K, PAD>(
                        input,
                        zp,
                        pixels,
                        (0, K),
                        (scratch, &mut window),
                    ),
                }
                if let Some(wide) = wide {
                    if g + TILE <= PIX && acc.len() * quads >= wide.len() {
                        // Rows of PIX words: channel c's part of this tile
                        // is PIX * c + g words on (a pointer to all rows).
                        let part = acc.as_mut_ptr().cast::<i32>().wrapping_add(g);
                        dot_channels!(
                            part,
                            4 * PIX,
                            scratch,
                            wide,
                            (K * K * CI).div_ceil(4),
                            false
                        );
                    }
                    continue;
                }
                for (co, a) in acc.iter_mut().enumerate() {
                    if let Some(a) = a.get_mut(g..).and_then(|a| a.first_chunk_mut::<TILE>()) {
                        let w = weights(co).as_flattened().as_flattened();
                        dot_tile!(a, scratch, w, K * K * CI);
                    }
                }
            } else {
                // Kernel row by kernel row.
                for ky in 0..K {
                    im2col::<H, W, CI, K, PAD>(input, zp, pixels, (ky, 1), (scratch, &mut window));
                    for (co, a) in acc.iter_mut().enumerate() {
                        if let Some(a) = a.get_mut(g..).and_then(|a| a.first_chunk_mut::<TILE>()) {
                            let w = weights(co).get(ky).map_or(&[][..], |r| r.as_flattened());
                            dot_tile!(a, scratch, w, K * CI);
                        }
                    }
                }
            }
        }
        finish(&tile, acc);
        first += tile.n;
    }
}

/// Channels `0..co_n`'s weight rows `row(co)` widened into `buf`, `quads`
/// quads each, one channel after another: the widened weights of
/// [`dot_channels!`] (`buf` may be uninitialised; empty if too short).
#[inline(always)]
fn widen_rows<'b, 'w>(
    buf: &'b mut [MaybeUninit<WideQuad>],
    (co_n, quads): (usize, usize),
    row: impl Fn(usize) -> &'w [i8],
) -> &'b [WideQuad] {
    let wide = buf.get_mut(..co_n * quads).unwrap_or(&mut []);
    for (co, dst) in wide.chunks_exact_mut(quads.max(1)).enumerate() {
        widen_weights(dst, row(co));
    }
    // SAFETY: `widen_weights` wrote every quad of `wide` (`quads` per
    // channel, the last one padded), and `MaybeUninit<WideQuad>` has
    // `WideQuad`'s layout.
    unsafe { &*(wide as *const [MaybeUninit<WideQuad>] as *const [WideQuad]) }
}

/// Groups of pixels whose accumulators [`conv_by_rows`] keeps at once.
const ROW_GROUPS: usize = 6;

/// [`conv_tiles`] for a window too long to im2col whole, on a small map:
/// kernel rows outermost. Each row's weights are widened once for every
/// channel, and every tile of the map (at most `ROW_GROUPS * PIX` pixels,
/// their accumulators all kept) adds that row's products; then each group
/// is finished. The conv2 of InceptionNet: 2,200-value windows, 64 pixels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv_by_rows<
    'w,
    const H: usize,
    const W: usize,
    const CI: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const CO_MAX: usize,
    const POOL: bool,
    const PIX: usize,
>(
    input: &[[[i8; CI]; W]; H],
    zp: i8,
    co_n: usize,
    weights: impl Fn(usize) -> &'w [[[i8; CI]; K]; K],
    scratch: &mut [Quad],
    mut finish: impl FnMut(&Tile<PIX>, &mut [[i32; PIX]]),
) {
    let co_n = co_n.min(CO_MAX);
    let n_pixels = HO * WO;
    let quads = (K * CI).div_ceil(4);
    let mut window = [zp; GATHER_MAX];
    let mut acc = [[[0i32; PIX]; CO_MAX]; ROW_GROUPS];
    // Left uninitialised, as in `conv_tiles`.
    let mut wide_buf = [MaybeUninit::<WideQuad>::uninit(); WIDE_WEIGHT_QUADS];
    let mut order = VisitOrder::<WO, POOL>::new();
    let mut tiles = [Tile::<PIX>::EMPTY; ROW_GROUPS];
    for (g, tile) in tiles.iter_mut().enumerate() {
        tile.fill(&mut order, g * PIX, n_pixels);
    }
    let groups = n_pixels.div_ceil(PIX);
    for ky in 0..K {
        let row = |co| weights(co).get(ky).map_or(&[][..], |r| r.as_flattened());
        let wide = widen_rows(&mut wide_buf, (co_n, quads), row);
        for (tile, acc) in tiles.iter().zip(acc.iter_mut()).take(groups) {
            for g in (0..tile.n).step_by(TILE) {
                let pixels = &tile.pixels[g..tile.n.min(g + TILE)];
                im2col::<H, W, CI, K, PAD>(input, zp, pixels, (ky, 1), (scratch, &mut window));
                if g + TILE <= PIX && acc.len() * quads >= wide.len() {
                    let part = acc.as_mut_ptr().cast::<i32>().wrapping_add(g);
                    dot_channels!(part, 4 * PIX, scratch, wide, (K * CI).div_ceil(4), true);
                }
            }
        }
    }
    for (tile, acc) in tiles.iter().zip(acc.iter_mut()).take(groups) {
        finish(tile, acc.get_mut(..co_n).unwrap_or(&mut []));
    }
}

/// Writes channels `c_off..c_off + CO` of the tile's pixels: channel
/// `c`'s accumulators `acc[c]` through its epilogue. The tile must be in
/// raster order: its pixels are `first..first + n`.
#[inline(always)]
fn store_pixels<const CT: usize, const CO: usize>(
    out: &mut [[i8; CT]],
    tile: &Tile<TILE>,
    c_off: usize,
    e: &Epilogue<CO>,
    acc: &[[i32; TILE]],
) {
    if let Some(px) = out.get_mut(tile.first..tile.first + tile.n) {
        e.store_tile(px, c_off, acc);
    }
}

/// The fast [`conv2d_s8_ref`](super::conv2d_s8_ref): same contract, same bytes.
/// `scratch` must hold [`scratch_quads`]`(CI, K)` quads.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_s8<
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
    scratch: &mut [Quad],
) {
    const { assert!(C_OFF + CO <= CT, "channel slice outside the output") };
    let out = out.as_flattened_mut();
    let e = Epilogue::new(layer);
    conv_tiles::<H, W, CI, K, PAD, HO, WO, CO, false, TILE>(
        input,
        layer.input_zero_point,
        CO,
        |co| &layer.weights[co],
        scratch,
        |tile, acc| store_pixels(out, tile, C_OFF, &e, acc),
    );
}

/// Two convs on the same input (same zero point), as one conv with
/// `CA + CB` output channels: `a` into `out_a` at channel `A_OFF`, `b` into
/// `out_b` at `B_OFF`. Same bytes as two [`conv2d_s8`] calls. Runs as
/// [`conv2d_x3_s8`] with a third conv of no channels.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn conv2d_x2_s8<
    const H: usize,
    const W: usize,
    const CI: usize,
    const CA: usize,
    const CB: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const TA: usize,
    const TB: usize,
    const A_OFF: usize,
    const B_OFF: usize,
>(
    (a, b): (&Conv2dS8<'_, CI, CA, K, PAD>, &Conv2dS8<'_, CI, CB, K, PAD>),
    input: &[[[i8; CI]; W]; H],
    (out_a, out_b): (&mut [[[i8; TA]; WO]; HO], &mut [[[i8; TB]; WO]; HO]),
    _at: (ChannelOffset<A_OFF>, ChannelOffset<B_OFF>),
    scratch: &mut [Quad],
) {
    const {
        assert!(
            A_OFF + CA <= TA && B_OFF + CB <= TB,
            "channel slice outside the output"
        );
        assert!(CA + CB <= WIDE_MAX, "too many fused channels");
    };
    // Three convs, the third without channels (in b's pass).
    let none = Conv2dS8::<CI, 0, K, PAD> {
        weights: &[],
        bias: &[],
        requant: &[],
        input_zero_point: b.input_zero_point,
        output: b.output,
    };
    conv2d_x3_s8(
        (a, b, &none),
        input,
        (out_a, out_b, &mut [[[0i8; 0]; WO]; HO]),
        (
            ChannelOffset::<A_OFF>,
            ChannelOffset::<B_OFF>,
            ChannelOffset::<0>,
        ),
        scratch,
    );
}

/// Three convs on the same input as one wider conv (the Inception module's
/// 1x1 convs b1, b5_1 and b3_1). Same bytes as three [`conv2d_s8`] calls.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn conv2d_x3_s8<
    const H: usize,
    const W: usize,
    const CI: usize,
    const CA: usize,
    const CB: usize,
    const CC: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const TA: usize,
    const TB: usize,
    const TC: usize,
    const A_OFF: usize,
    const B_OFF: usize,
    const C_OFF: usize,
>(
    (a, b, c): (
        &Conv2dS8<'_, CI, CA, K, PAD>,
        &Conv2dS8<'_, CI, CB, K, PAD>,
        &Conv2dS8<'_, CI, CC, K, PAD>,
    ),
    input: &[[[i8; CI]; W]; H],
    (out_a, out_b, out_c): (
        &mut [[[i8; TA]; WO]; HO],
        &mut [[[i8; TB]; WO]; HO],
        &mut [[[i8; TC]; WO]; HO],
    ),
    _at: (
        ChannelOffset<A_OFF>,
        ChannelOffset<B_OFF>,
        ChannelOffset<C_OFF>,
    ),
    scratch: &mut [Quad],
) {
    const {
        assert!(
            A_OFF + CA <= TA && B_OFF + CB <= TB && C_OFF + CC <= TC,
            "channel slice outside the output"
        );
        assert!(CA + CB + CC <= WIDE_MAX, "too many fused channels");
    };
    let out_a = out_a.as_flattened_mut();
    let out_b = out_b.as_flattened_mut();
    let out_c = out_c.as_flattened_mut();
    let (qa, qb, qc) = (Epilogue::new(a), Epilogue::new(b), Epilogue::new(c));
    let zps = [a.input_zero_point, b.input_zero_point, c.input_zero_point];
    for (lo, hi, zp) in passes([CA, CB, CC], zps) {
        conv_tiles::<H, W, CI, K, PAD, HO, WO, WIDE_MAX, false, TILE>(
            input,
            zp,
            hi - lo,
            |co| {
                let co = lo + co;
                if co < CA {
                    &a.weights[co]
                } else if co < CA + CB {
                    &b.weights[co - CA]
                } else {
                    &c.weights[co - CA - CB]
                }
            },
            scratch,
            |tile, acc| {
                if let Some(acc) = pass_part(acc, (lo, hi), (0, CA)) {
                    store_pixels(out_a, tile, A_OFF, &qa, acc);
                }
                if let Some(acc) = pass_part(acc, (lo, hi), (CA, CB)) {
                    store_pixels(out_b, tile, B_OFF, &qb, acc);
                }
                if let Some(acc) = pass_part(acc, (lo, hi), (CA + CB, CC)) {
                    store_pixels(out_c, tile, C_OFF, &qc, acc);
                }
            },
        );
    }
}

/// The passes of a fused conv over `N` convs of `sizes` output channels:
/// runs of consecutive convs that share an input zero point, as channel
/// ranges `(lo, hi)` with their zero point. The networks' fused convs read
/// one tensor, so they take one pass; convs with different zero points are
/// computed apart but by the same code (a separate instantiation per conv
/// would cost flash for a case that does not occur).
fn passes<const N: usize>(
    sizes: [usize; N],
    zps: [i8; N],
) -> impl Iterator<Item = (usize, usize, i8)> {
    let mut lo = 0;
    let mut k = 0;
    core::iter::from_fn(move || {
        let zp = *zps.get(k)?;
        let start = lo;
        while let (Some(&n), Some(&z)) = (sizes.get(k), zps.get(k)) {
            if z != zp {
                break;
            }
            lo += n;
            k += 1;
        }
        Some((start, lo, zp))
    })
}

/// The accumulators of the conv with channels `from..from + n` of the
/// fused conv, if the pass `lo..hi` (whose accumulators `acc` are) computed
/// them.
#[inline(always)]
fn pass_part(
    acc: &[[i32; TILE]],
    (lo, hi): (usize, usize),
    (from, n): (usize, usize),
) -> Option<&[[i32; TILE]]> {
    if from < lo || from + n > hi {
        return None;
    }
    acc.get(from - lo..from + n - lo)
}

/// Most output channels a fused wide conv may have (the accumulators of a
/// tile live on the stack: `TILE * 4` bytes each). The fused convs run
/// [`conv_tiles`] with this bound and their runtime channel sum: `{ CA + CB }`
/// is not a type-level constant on stable Rust.
pub const WIDE_MAX: usize = 64;

/// Conv, then 2x2 max pool, then `range` (the networks' ReLU), in one pass:
/// the same bytes as [`conv2d_s8_ref`](super::conv2d_s8_ref) into a full-size
/// tensor followed by [`maxpool2d_s8`](super::maxpool2d_s8)`(range, ..)`,
/// with one requantisation per pooled output instead of four.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool_s8<
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const PH: usize,
    const PW: usize,
>(
    layer: &Conv2dS8<'_, CI, CO, K, PAD>,
    range: ActRange,
    input: &[[[i8; CI]; W]; H],
    out: &mut [[[i8; CO]; PW]; PH],
    scratch: &mut [Quad],
) {
    const {
        assert!(
            HO == 2 * PH && WO == 2 * PW,
            "pooled side must be half the conv's"
        )
    };
    let out = out.as_flattened_mut();
    // Short form: the maximum of the raw accumulators through the layer's
    // epilogue, bias included (it cannot wrap there). Otherwise the maximum
    // of the biased accumulators (wrapping, as the reference) through an
    // epilogue without bias.
    let clamped = Epilogue::clamped(layer, range);
    let long =
        (!clamped.is_short()).then(|| (Epilogue::new(layer), Epilogue::pooled(layer, range)));
    conv_tiles::<H, W, CI, K, PAD, HO, WO, CO, true, POOL_PIX>(
        input,
        layer.input_zero_point,
        CO,
        |co| &layer.weights[co],
        scratch,
        |tile, acc| {
            let Some(dst) = out.get_mut(tile.first / 4..(tile.first + tile.n) / 4) else {
                return;
            };
            match &long {
                None => clamped.store_pooled(dst, acc),
                Some((e, pooled)) => {
                    e.add_bias(acc);
                    pooled.store_pooled(dst, acc);
                }
            }
        },
    );
}

/// A residual block's tail in one pass: `conv` (the block's last conv) into
/// the add's first input, the shortcut tensor as its second, the add, the
/// 2x2 max pool and `range` (the ReLU after the pool). The same bytes as
/// [`conv2d_s8_ref`](super::conv2d_s8_ref), [`add_requant_s8`](super::add_requant_s8)
/// and [`maxpool2d_s8`](super::maxpool2d_s8) in turn; the conv's output
/// never goes to memory, and the add's last requantisation runs once per
/// pooled output.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_add_pool_s8<
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const PH: usize,
    const PW: usize,
>(
    (conv, add): (&Conv2dS8<'_, CI, CO, K, PAD>, &AddS8),
    range: ActRange,
    input: &[[[i8; CI]; W]; H],
    shortcut: &[[[i8; CO]; WO]; HO],
    out: &mut [[[i8; CO]; PW]; PH],
    (scratch, lut): (&mut [Quad], &mut AddLut),
) {
    const {
        assert!(
            HO == 2 * PH && WO == 2 * PW,
            "pooled side must be half the conv's"
        )
    };
    fill_add_lut(add, lut);
    let [lut_a, lut_b] = &*lut;
    let shortcut = shortcut.as_flattened().as_flattened();
    let out = out.as_flattened_mut();
    let e = Epilogue::new(conv);
    let pooled = Epilogue::<CO>::uniform(add.out, add_sum_bound(add), add.output, range);
    conv_tiles::<H, W, CI, K, PAD, HO, WO, CO, true, POOL_PIX>(
        input,
        conv.input_zero_point,
        CO,
        |co| &conv.weights[co],
        scratch,
        |tile, acc| {
            let Some(dst) = out.get_mut(tile.first / 4..(tile.first + tile.n) / 4) else {
                return;
            };
            // Each pixel's byte offset in the shortcut.
            let offs = tile.at.map(|at| at * CO);
            e.add_tables(acc, tile.n, (shortcut, &offs), (lut_a, lut_b));
            pooled.store_pooled(dst, acc);
        },
    );
}

/// Pixels per call of a pooled kernel's finish: two tiles, three whole
/// pool windows (the pool order visits a window's four pixels in turn).
const POOL_PIX: usize = 2 * TILE;

#[cfg(test)]
#[path = "tiled_tests.rs"]
mod tests;
