//! Pooling on int8 HWC tensors: 2x2 max pool and the Inception pool branch's
//! 3x3 average pool. Both keep the input's scale and zero point (max and mean
//! commute with the affine dequantisation), so they need no multiplier.

use super::dsp::{add_bytes, add_halves};
use super::ActRange;

const fn check_maxpool_shapes<
    const H: usize,
    const W: usize,
    const C: usize,
    const HO: usize,
    const WO: usize,
>() {
    assert!(C >= 1, "empty tensor");
    assert!(HO >= 1 && WO >= 1, "max pool of a map smaller than 2x2");
    assert!(
        HO == H / 2 && WO == W / 2,
        "2x2 stride-2 pool: HO = H/2, WO = W/2 (floor)"
    );
}

/// Max pool 2x2, stride 2, no padding (floor: an odd last row or column is
/// dropped, as PyTorch does), with a fused clamp.
///
/// Layout: `input` HWC `[H][W][C]`, `out` HWC `[H/2][W/2][C]`, both in the
/// same scale and zero point. `out = range.clamp(max of the 4 values)`; the
/// networks' "pool, then ReLU" is `range = ActRange::relu(zero_point)`
/// (exact: max and ReLU commute). No rounding happens.
#[cfg(test)] // the networks fuse their max pools into the conv before them
pub fn maxpool2d_s8<
    const H: usize,
    const W: usize,
    const C: usize,
    const HO: usize,
    const WO: usize,
>(
    range: ActRange,
    input: &[[[i8; C]; W]; H],
    out: &mut [[[i8; C]; WO]; HO],
) {
    const { check_maxpool_shapes::<H, W, C, HO, WO>() };
    for (out_row, rows) in out.iter_mut().zip(input.chunks_exact(2)) {
        let (top, bottom) = (&rows[0], &rows[1]);
        for ((px, t), b) in out_row
            .iter_mut()
            .zip(top.chunks_exact(2))
            .zip(bottom.chunks_exact(2))
        {
            for ((o, (&a, &b)), (&c, &d)) in px
                .iter_mut()
                .zip(t[0].iter().zip(&t[1]))
                .zip(b[0].iter().zip(&b[1]))
            {
                *o = range.clamp(a.max(b).max(c.max(d)));
            }
        }
    }
}

/// Reference for [`maxpool2d_s8`]: index loops.
#[allow(clippy::needless_range_loop)] // plain index loops on purpose
pub fn maxpool2d_s8_ref<
    const H: usize,
    const W: usize,
    const C: usize,
    const HO: usize,
    const WO: usize,
>(
    range: ActRange,
    input: &[[[i8; C]; W]; H],
    out: &mut [[[i8; C]; WO]; HO],
) {
    const { check_maxpool_shapes::<H, W, C, HO, WO>() };
    for oy in 0..HO {
        for ox in 0..WO {
            for c in 0..C {
                let mut m = i8::MIN;
                for dy in 0..2 {
                    for dx in 0..2 {
                        let v = input[2 * oy + dy][2 * ox + dx][c];
                        if v > m {
                            m = v;
                        }
                    }
                }
                if m < range.min() {
                    m = range.min();
                }
                if m > range.max() {
                    m = range.max();
                }
                out[oy][ox][c] = m;
            }
        }
    }
}

const fn check_avgpool_shapes<const H: usize, const W: usize, const C: usize>() {
    assert!(H >= 1 && W >= 1 && C >= 1, "empty tensor");
}

/// Largest `(W + 3) * C` of an average pool: its column sums, 16-bit, with
/// the padding columns, live on the stack (InceptionNet's pools: 150 and 140).
const AVG_COLUMNS_MAX: usize = 1024;

/// Added to a window's sum `s` (`|s| <= 9 * 255`) so that `t = s + DIV9_BIAS`
/// is positive and `floor(t / 9) - 256` is `s / 9` rounded (see
/// [`div9_round`]).
const DIV9_BIAS: i32 = 4 + 9 * 256;

/// `floor(t / 9)` for `0 <= t < 32768`, by a multiply and a shift
/// (`14564 / 2^17` is `1/9` plus less than `1/(9 * 32768)`).
#[inline(always)]
const fn div9_floor(t: i32) -> i32 {
    (t * 14564) >> 17
}

/// `s / 9` rounded to nearest, ties away from zero, for `|s| <= 9 * 255`.
/// A tie cannot occur (`s / 9` is never `k + 1/2`), so this is
/// `floor((s + 4) / 9)`, shifted to stay positive.
#[inline(always)]
const fn div9_round(s: i32) -> i32 {
    div9_floor(s + DIV9_BIAS) - 256
}

/// Average pool 3x3, stride 1, padding 1, always dividing by 9 (PyTorch's
/// `count_include_pad=True`); padded positions count as the zero point, i.e.
/// as a real 0.
///
/// Layout: `input` and `out` both HWC `[H][W][C]`, same scale and zero point
/// `zero_point`. Arithmetic: `s = sum over the in-bounds neighbours of
/// (x - zero_point)` (padding adds 0), `out = zero_point + round(s / 9)` with
/// round to nearest (ties away from zero, which never arise for /9) — the
/// result always lies in the int8 range.
///
/// Separable, two values at a time in 16-bit halves: per output row, the
/// column sums of its (two or three) input rows, four bytes at a time;
/// then per output pixel the sum of three columns and the division.
pub fn avgpool3x3_s8<const H: usize, const W: usize, const C: usize>(
    zero_point: i8,
    input: &[[[i8; C]; W]; H],
    out: &mut [[[i8; C]; W]; H],
) {
    const {
        check_avgpool_shapes::<H, W, C>();
        assert!(
            (W + 3) * C <= AVG_COLUMNS_MAX,
            "average pool row too long for its column sums"
        );
    };
    let zp = zero_point as i32;
    // Column sums of input column x at `C + x * C`, zeros for the padding
    // columns either side (and past them: the last pair of an odd C reads
    // one value beyond).
    let mut col = [0u16; AVG_COLUMNS_MAX];
    for (oy, out_row) in out.iter_mut().enumerate() {
        let rows = input
            .get(oy.saturating_sub(1)..H.min(oy + 2))
            .unwrap_or(&[]);
        if let Some(sums) = col.get_mut(C..C + W * C) {
            match rows {
                [a, b, c] => column_sums(sums, [a, b, c]),
                [a, b] => column_sums(sums, [a, b]),
                [a] => column_sums(sums, [a]),
                _ => {}
            }
        }
        for (ox, px) in out_row.iter_mut().enumerate() {
            let columns = W.min(ox + 2) - ox.saturating_sub(1);
            let taps = (rows.len() * columns) as i32;
            // Each half: the window's raw sum plus this, t = s + DIV9_BIAS
            // (in 0..32768).
            let k = (DIV9_BIAS - taps * zp) as u16 as u32 * 0x1_0001;
            let Some(win) = col.get(ox * C..ox * C + 3 * C + 1) else {
                continue;
            };
            let pair = |at: usize, c: usize| {
                win.get(at + c..at + c + 2)
                    .map_or(0, |h| h[0] as u32 | (h[1] as u32) << 16)
            };
            for (c, o) in (0..C).step_by(2).zip(px.chunks_mut(2)) {
                let t = add_halves(
                    add_halves(pair(0, c), pair(C, c)),
                    add_halves(pair(2 * C, c), k),
                );
                // In range: an average of int8 values and zero points.
                let q = |t: u32| (zp + div9_round(t as u16 as i32 - DIV9_BIAS)) as i8;
                o[0] = q(t);
                if let Some(o1) = o.get_mut(1) {
                    *o1 = q(t >> 16);
                }
            }
        }
    }
}

/// `sums[i]` = the sum over `rows` of value `i` (flat HWC order), as 16-bit
/// values: four bytes at a time, then the tail.
#[inline(always)]
fn column_sums<const W: usize, const C: usize, const N: usize>(
    sums: &mut [u16],
    rows: [&[[i8; C]; W]; N],
) {
    let rows = rows.map(|r| r.as_flattened());
    let word = |r: &[i8], j: usize| {
        r.get(4 * j..4 * j + 4).map_or(0, |b| {
            u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
        })
    };
    let mut quads = sums.chunks_exact_mut(4);
    for (j, s) in (&mut quads).enumerate() {
        let (lo, hi) = rows
            .iter()
            .fold((0, 0), |acc, r| add_bytes(acc, word(r, j)));
        // Back to HWC order: (x0, x1), (x2, x3).
        s[0] = lo as u16;
        s[1] = hi as u16;
        s[2] = (lo >> 16) as u16;
        s[3] = (hi >> 16) as u16;
    }
    let done = W * C / 4 * 4;
    for (i, s) in quads.into_remainder().iter_mut().enumerate() {
        *s = rows
            .iter()
            .map(|r| r.get(done + i).map_or(0, |&v| v as i16))
            .fold(0i16, i16::wrapping_add) as u16;
    }
}

/// Reference for [`avgpool3x3_s8`]: nine explicit neighbours per value, with
/// padding materialised as the zero point.
#[allow(clippy::needless_range_loop)] // plain index loops on purpose
pub fn avgpool3x3_s8_ref<const H: usize, const W: usize, const C: usize>(
    zero_point: i8,
    input: &[[[i8; C]; W]; H],
    out: &mut [[[i8; C]; W]; H],
) {
    const { check_avgpool_shapes::<H, W, C>() };
    let zp = zero_point as i32;
    for y in 0..H {
        for x in 0..W {
            for c in 0..C {
                let mut s: i32 = 0;
                for dy in -1isize..=1 {
                    for dx in -1isize..=1 {
                        let (iy, ix) = (y as isize + dy, x as isize + dx);
                        let inside = iy >= 0 && iy < H as isize && ix >= 0 && ix < W as isize;
                        let v = if inside {
                            input[iy as usize][ix as usize][c] as i32
                        } else {
                            zp
                        };
                        s += v - zp;
                    }
                }
                // Round half away from zero of s / 9, by cases on the sign.
                let q = if s >= 0 {
                    (2 * s + 9) / 18
                } else {
                    -((-2 * s + 9) / 18)
                };
                out[y][x][c] = (zp + q).clamp(-128, 127) as i8;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::testutil::{flat3, round_half_away, Rng};

    fn random_range(rng: &mut Rng) -> ActRange {
        match rng.below(3) {
            0 => ActRange::FULL,
            1 => ActRange::relu(rng.i8()),
            _ => {
                let (a, b) = (rng.i8(), rng.i8());
                ActRange::new(a.min(b), a.max(b)).unwrap()
            }
        }
    }

    fn maxpool_case<
        const H: usize,
        const W: usize,
        const C: usize,
        const HO: usize,
        const WO: usize,
    >(
        seed: u64,
    ) {
        let mut rng = Rng::new(seed);
        for _ in 0..30 {
            let mut input = [[[0i8; C]; W]; H];
            rng.fill_i8(flat3(&mut input));
            let range = random_range(&mut rng);
            let mut fast = [[[0i8; C]; WO]; HO];
            let mut slow = [[[1i8; C]; WO]; HO];
            maxpool2d_s8(range, &input, &mut fast);
            maxpool2d_s8_ref(range, &input, &mut slow);
            assert_eq!(fast, slow, "H{H} W{W} C{C}");
            // Independent: max of the dequantised values, requantised, is
            // exact (scale 0.05, any zero point), then the clamp.
            let (scale, zp) = (0.05, rng.i8() as f64);
            for oy in 0..HO {
                for ox in 0..WO {
                    for c in 0..C {
                        let mut m = f64::NEG_INFINITY;
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let v = input[2 * oy + dy][2 * ox + dx][c];
                            m = m.max(scale * (v as f64 - zp));
                        }
                        let q = (round_half_away(m / scale) + zp)
                            .clamp(range.min() as f64, range.max() as f64);
                        assert_eq!(fast[oy][ox][c] as f64, q);
                    }
                }
            }
        }
    }

    #[test]
    fn maxpool_equals_reference_and_real_max() {
        use crate::arch::{inception as i, resnet as r, IMAGE_SIDE as S};
        maxpool_case::<{ i::S1 }, { i::S1 }, { i::C1 }, { i::P1 }, { i::P1 }>(1);
        maxpool_case::<{ i::S2 }, { i::S2 }, { i::C2 }, { i::P2 }, { i::P2 }>(2);
        maxpool_case::<S, S, { r::C1 }, { r::P1 }, { r::P1 }>(3);
        maxpool_case::<{ r::P1 }, { r::P1 }, { r::C2 }, { r::P2 }, { r::P2 }>(4);
        maxpool_case::<2, 2, 1, 1, 1>(5);
        maxpool_case::<3, 5, 3, 1, 2>(6); // odd sides: last row/column dropped
        maxpool_case::<7, 4, 9, 3, 2>(7);
    }

    fn avgpool_case<const H: usize, const W: usize, const C: usize>(seed: u64) {
        let mut rng = Rng::new(seed);
        for _ in 0..30 {
            let mut input = [[[0i8; C]; W]; H];
            rng.fill_i8(flat3(&mut input));
            let zp = rng.i8();
            let mut fast = [[[0i8; C]; W]; H];
            let mut slow = [[[1i8; C]; W]; H];
            avgpool3x3_s8(zp, &input, &mut fast);
            avgpool3x3_s8_ref(zp, &input, &mut slow);
            assert_eq!(fast, slow, "H{H} W{W} C{C}");
            // Independent: the real average (padding = real 0, always / 9),
            // quantised to nearest. Exact, since /9 never ties.
            let scale = 0.013;
            for y in 0..H {
                for x in 0..W {
                    for c in 0..C {
                        let mut sum = 0.0;
                        for iy in y.saturating_sub(1)..H.min(y + 2) {
                            for ix in x.saturating_sub(1)..W.min(x + 2) {
                                sum += scale * (input[iy][ix][c] as f64 - zp as f64);
                            }
                        }
                        let q = round_half_away(sum / 9.0 / scale) + zp as f64;
                        assert_eq!(fast[y][x][c] as f64, q, "({y},{x},{c})");
                    }
                }
            }
        }
    }

    #[test]
    fn avgpool_equals_reference_and_real_average() {
        use crate::arch::inception as i;
        avgpool_case::<{ i::P1 }, { i::P1 }, { i::C1 }>(11);
        avgpool_case::<{ i::P2 }, { i::P2 }, { i::C2 }>(12);
        avgpool_case::<1, 1, 1>(13);
        avgpool_case::<1, 5, 3>(14);
        avgpool_case::<6, 2, 7>(15);
        avgpool_case::<3, 3, 33>(16);
    }

    // Every sum a 3x3 window can have, against the real quotient rounded.
    #[test]
    fn div9_round_is_the_rounded_quotient_over_the_whole_range() {
        for s in -9 * 255..=9 * 255 {
            assert_eq!(div9_round(s) as f64, round_half_away(s as f64 / 9.0), "{s}");
        }
    }

    #[test]
    fn avgpool_extremes() {
        // All 127 with zero point -128: corner average 4*255/9 = 113.3 -> 113.
        let input = [[[127i8; 1]; 3]; 3];
        let mut out = [[[0i8; 1]; 3]; 3];
        avgpool3x3_s8(-128, &input, &mut out);
        assert_eq!(out[1][1][0], 127);
        assert_eq!(out[0][0][0], -128 + 113);
        assert_eq!(out[0][1][0], 42); // -128 + 6*255/9 = -128 + 170
                                      // All -128 with zero point 127: 4*(-255)/9 = -113.3 -> -113.
        let input = [[[-128i8; 1]; 3]; 3];
        avgpool3x3_s8(127, &input, &mut out);
        assert_eq!(out[1][1][0], -128);
        assert_eq!(out[0][0][0], 127 - 113);
        // Rounding both ways around zero: s = +-5 -> +-0.56 -> +-1; s = +-4 -> 0.
        assert_eq!(div9_round(5), 1);
        assert_eq!(div9_round(-5), -1);
        assert_eq!(div9_round(4), 0);
        assert_eq!(div9_round(-4), 0);
        assert_eq!(div9_round(13), 1);
        assert_eq!(div9_round(14), 2);
        assert_eq!(div9_round(-14), -2);
    }
}
