//! Pooling on int8 HWC tensors: 2x2 max pool and the Inception pool branch's
//! 3x3 average pool. Both keep the input's scale and zero point (max and mean
//! commute with the affine dequantisation), so they need no multiplier.

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

/// `s / 9` rounded to nearest, ties away from zero (C's truncating division
/// after a nudge of 4). A tie cannot occur: `s / 9` is never `k + 1/2`.
#[inline(always)]
const fn div9_round(s: i32) -> i32 {
    if s >= 0 {
        (s + 4) / 9
    } else {
        (s - 4) / 9
    }
}

/// Average pool 3x3, stride 1, padding 1, always dividing by 9 (PyTorch's
/// `count_include_pad=True`); padded positions count as the zero point, i.e.
/// as a real 0.
///
/// Layout: `input` and `out` both HWC `[H][W][C]`, same scale and zero point
/// `zero_point`. Arithmetic: `s = sum over the in-bounds neighbours of
/// (x - zero_point)` (padding adds 0), `out = zero_point + round(s / 9)` with
/// round to nearest (ties away from zero, which never arise for /9) — the
/// exact nearest int8 to the real average. It always lies in the int8 range,
/// so no clamp changes it.
pub fn avgpool3x3_s8<const H: usize, const W: usize, const C: usize>(
    zero_point: i8,
    input: &[[[i8; C]; W]; H],
    out: &mut [[[i8; C]; W]; H],
) {
    const { check_avgpool_shapes::<H, W, C>() };
    let zp = zero_point as i32;
    for (oy, out_row) in out.iter_mut().enumerate() {
        // `get` instead of indexing: always in bounds, and no panic path.
        let rows = input
            .get(oy.saturating_sub(1)..H.min(oy + 2))
            .unwrap_or(&[]);
        for (ox, px) in out_row.iter_mut().enumerate() {
            let (x0, x1) = (ox.saturating_sub(1), W.min(ox + 2));
            let taps = (rows.len() * (x1 - x0)) as i32;
            let mut acc = [0i32; C];
            for row in rows {
                for pixel in row.get(x0..x1).unwrap_or(&[]) {
                    for (a, &v) in acc.iter_mut().zip(pixel) {
                        *a += v as i32;
                    }
                }
            }
            for (o, a) in px.iter_mut().zip(acc) {
                // |s| <= 9 * 255: no overflow, and the result is in range.
                let v = zp + div9_round(a - taps * zp);
                *o = ActRange::FULL.clamp_i32(v);
            }
        }
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
