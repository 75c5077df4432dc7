//! Lowering a stride-1 convolution to a matrix product: im2col for a group
//! of samples, NCHW input, zero padding (negative padding crops).
//!
//! Rows of the im2col matrix are `(ci, ky, kx)`, columns `(sample, oy, ox)`,
//! so one GEMM covers a whole group. Each sample is padded into scratch
//! first; then every copy is one output row, 4-28 floats here, moved with
//! fixed-size chunks rather than `memcpy` calls, which cost more than the
//! copy at this size.

/// A stride-1 convolution's sizes. `p` is signed: the input gradient is
/// itself a convolution with padding `k - 1 - p`, negative (a crop) when the
/// forward padding exceeds `k - 1`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    /// Input channels.
    pub ci: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub co: usize,
    /// Kernel side.
    pub k: usize,
    /// Zero padding on every side.
    pub p: isize,
    /// Output height, `h + 2p - k + 1`.
    pub ho: usize,
    /// Output width, `w + 2p - k + 1`.
    pub wo: usize,
}

impl Geometry {
    /// The conv `ci -> co` with kernel `k` and padding `p` on `h x w` maps.
    pub fn new(ci: usize, h: usize, w: usize, co: usize, k: usize, p: usize) -> Self {
        Self {
            ci,
            h,
            w,
            co,
            k,
            p: p as isize,
            ho: h + 2 * p + 1 - k,
            wo: w + 2 * p + 1 - k,
        }
    }

    /// The conv whose forward pass gives this one's input gradient: the
    /// output gradient correlated with the flipped, transposed kernel
    /// ([`Geometry::flip_weights`]), padded by `k - 1 - p`.
    pub fn transposed(&self) -> Self {
        Self {
            ci: self.co,
            h: self.ho,
            w: self.wo,
            co: self.ci,
            k: self.k,
            p: self.k as isize - 1 - self.p,
            ho: self.h,
            wo: self.w,
        }
    }

    /// Floats in one input sample.
    pub fn in_len(&self) -> usize {
        self.ci * self.h * self.w
    }
    /// Floats in one output sample.
    pub fn out_len(&self) -> usize {
        self.co * self.ho * self.wo
    }
    /// Rows of the im2col matrix: `ci * k * k`.
    pub fn patch(&self) -> usize {
        self.ci * self.k * self.k
    }
    /// Output pixels per channel.
    pub fn pixels(&self) -> usize {
        self.ho * self.wo
    }

    /// OIHW weights `[co][ci][ky][kx]` to the transposed conv's
    /// `[ci][co][k-1-ky][k-1-kx]`.
    pub fn flip_weights(&self, w: &[f32]) -> Vec<f32> {
        let kk = self.k * self.k;
        let mut out = vec![0.0; w.len()];
        for o in 0..self.co {
            for i in 0..self.ci {
                let src = &w[(o * self.ci + i) * kk..][..kk];
                let dst = &mut out[(i * self.co + o) * kk..][..kk];
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = src[kk - 1 - j];
                }
            }
        }
        out
    }

    /// Height and width of the input window the kernel sweeps: the input
    /// padded (or cropped) by `p` on every side.
    pub(crate) fn window(&self) -> (usize, usize) {
        (self.ho + self.k - 1, self.wo + self.k - 1)
    }

    /// Floats of the per-sample scratch [`Geometry::im2col`] needs.
    pub fn pad_len(&self) -> usize {
        let (hp, wp) = self.window();
        if self.p == 0 && (hp, wp) == (self.h, self.w) {
            0
        } else {
            self.ci * hp * wp
        }
    }

    /// Writes the im2col matrix of the `xs.len() / in_len` samples in `xs`
    /// into `cols` (`patch` rows of `samples * pixels`); `pad` is scratch of
    /// [`Geometry::pad_len`] floats.
    pub fn im2col(&self, xs: &[f32], cols: &mut [f32], pad: &mut [f32]) {
        let (plane, pixels) = (self.h * self.w, self.pixels());
        let row_len = cols.len() / self.patch();
        debug_assert_eq!(row_len, xs.len() / self.in_len() * pixels);
        for (s, x) in xs.chunks_exact(self.in_len()).enumerate() {
            if self.k == 1 && self.p == 0 {
                // 1x1: each row is one channel plane.
                for (c, src) in x.chunks_exact(plane).enumerate() {
                    cols[c * row_len + s * pixels..][..pixels].copy_from_slice(src);
                }
                continue;
            }
            // Pad (or crop) first, so that every copy below is one whole
            // output row, the same length each time.
            let (hp, wp) = self.window();
            let x = if self.pad_len() == 0 {
                x
            } else {
                self.pad_into(x, pad);
                &pad[..]
            };
            let mut row = 0;
            for c in 0..self.ci {
                for ky in 0..self.k {
                    for kx in 0..self.k {
                        let start = (c * hp + ky) * wp + kx;
                        let src = &x[start..start + (self.ho - 1) * wp + self.wo];
                        copy_rows(
                            &mut cols[row * row_len + s * pixels..][..pixels],
                            src,
                            self.wo,
                            wp,
                        );
                        row += 1;
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geometry::im2col`]: adds every entry of `cols` back
    /// onto the input pixel it was copied from, for the samples of `gx`.
    /// `pad` is scratch of [`Geometry::pad_len`] floats.
    pub fn col2im(&self, cols: &[f32], gx: &mut [f32], pad: &mut [f32]) {
        let (plane, pixels) = (self.h * self.w, self.pixels());
        let row_len = cols.len() / self.patch();
        let (hp, wp) = self.window();
        for (s, gx) in gx.chunks_exact_mut(self.in_len()).enumerate() {
            if self.k == 1 && self.p == 0 {
                for (c, dst) in gx.chunks_exact_mut(plane).enumerate() {
                    add(dst, &cols[c * row_len + s * pixels..][..pixels]);
                }
                continue;
            }
            let padded = self.pad_len() != 0;
            if padded {
                pad.fill(0.0);
            }
            let win: &mut [f32] = if padded { pad } else { gx };
            let mut row = 0;
            for c in 0..self.ci {
                for ky in 0..self.k {
                    for kx in 0..self.k {
                        let start = (c * hp + ky) * wp + kx;
                        let dst = &mut win[start..start + (self.ho - 1) * wp + self.wo];
                        add_rows(
                            dst,
                            &cols[row * row_len + s * pixels..][..pixels],
                            self.wo,
                            wp,
                        );
                        row += 1;
                    }
                }
            }
            if padded {
                self.unpad_add(pad, gx);
            }
        }
    }

    /// The adjoint of [`Geometry::pad_into`]: adds the window's pixels that
    /// show input pixels onto `gx`.
    fn unpad_add(&self, pad: &[f32], gx: &mut [f32]) {
        let (hp, wp) = self.window();
        let lo = self.p.clamp(0, wp as isize) as usize;
        let hi = (self.w as isize + self.p).clamp(lo as isize, wp as isize) as usize;
        let src_x = (lo as isize - self.p) as usize;
        for (dst, src) in gx
            .chunks_exact_mut(self.h * self.w)
            .zip(pad.chunks_exact(hp * wp))
        {
            for (yy, s) in src.chunks_exact(wp).enumerate() {
                let iy = yy as isize - self.p;
                if iy >= 0 && iy < self.h as isize {
                    add(
                        &mut dst[iy as usize * self.w + src_x..][..hi - lo],
                        &s[lo..hi],
                    );
                }
            }
        }
    }

    /// One sample's channels, padded with zeros or cropped by `p` to
    /// [`Geometry::window`].
    pub(crate) fn pad_into(&self, x: &[f32], pad: &mut [f32]) {
        let (hp, wp) = self.window();
        // Window column `xx` shows input column `xx - p`.
        let lo = self.p.clamp(0, wp as isize) as usize;
        let hi = (self.w as isize + self.p).clamp(lo as isize, wp as isize) as usize;
        let src_x = (lo as isize - self.p) as usize;
        for (src, dst) in x
            .chunks_exact(self.h * self.w)
            .zip(pad.chunks_exact_mut(hp * wp))
        {
            for (yy, d) in dst.chunks_exact_mut(wp).enumerate() {
                let iy = yy as isize - self.p;
                if iy < 0 || iy >= self.h as isize {
                    d.fill(0.0);
                    continue;
                }
                zero(&mut d[..lo]);
                zero(&mut d[hi..]);
                copy(
                    &mut d[lo..hi],
                    &src[iy as usize * self.w + src_x..][..hi - lo],
                );
            }
        }
    }
}

/// Copies rows of `width` floats, `stride` apart in `src`, contiguously into
/// `dst`. The usual widths get a copy of compile-time length (a few vector
/// moves); others go through [`copy`].
fn copy_rows(dst: &mut [f32], src: &[f32], width: usize, stride: usize) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32], stride: usize) {
        for (d, s) in dst.chunks_exact_mut(N).zip(src.chunks(stride)) {
            d.copy_from_slice(&s[..N]);
        }
    }
    match width {
        4 => fixed::<4>(dst, src, stride),
        7 => fixed::<7>(dst, src, stride),
        8 => fixed::<8>(dst, src, stride),
        12 => fixed::<12>(dst, src, stride),
        14 => fixed::<14>(dst, src, stride),
        24 => fixed::<24>(dst, src, stride),
        28 => fixed::<28>(dst, src, stride),
        _ => {
            for (d, s) in dst.chunks_exact_mut(width).zip(src.chunks(stride)) {
                copy(d, &s[..width]);
            }
        }
    }
}

/// `dst += src` elementwise.
fn add(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// The adjoint of [`copy_rows`]: adds consecutive rows of `width` floats
/// from `src` onto rows `stride` apart in `dst`.
fn add_rows(dst: &mut [f32], src: &[f32], width: usize, stride: usize) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32], stride: usize) {
        for (d, s) in dst.chunks_mut(stride).zip(src.chunks_exact(N)) {
            let d: &mut [f32; N] = (&mut d[..N]).try_into().expect("row width");
            d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
        }
    }
    match width {
        4 => fixed::<4>(dst, src, stride),
        7 => fixed::<7>(dst, src, stride),
        8 => fixed::<8>(dst, src, stride),
        12 => fixed::<12>(dst, src, stride),
        14 => fixed::<14>(dst, src, stride),
        24 => fixed::<24>(dst, src, stride),
        28 => fixed::<28>(dst, src, stride),
        _ => {
            for (d, s) in dst.chunks_mut(stride).zip(src.chunks_exact(width)) {
                add(&mut d[..width], s);
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for short runs: 8-float chunks, the last one
/// overlapping, so no call and no scalar tail.
#[inline(always)]
pub(crate) fn copy(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    assert_eq!(n, src.len());
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
            i += 8;
        }
        if i < n {
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else {
        // Spelled out: a loop here would turn back into a `memcpy` call.
        if n > 0 {
            dst[0] = src[0];
        }
        if n > 1 {
            dst[1] = src[1];
        }
        if n > 2 {
            dst[2] = src[2];
        }
    }
}

/// `dst.fill(0.0)` for short runs, like [`copy`].
#[inline(always)]
pub(crate) fn zero(dst: &mut [f32]) {
    let n = dst.len();
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            dst[i..i + 8].copy_from_slice(&[0.0; 8]);
            i += 8;
        }
        if i < n {
            dst[n - 8..].copy_from_slice(&[0.0; 8]);
        }
    } else if n >= 4 {
        dst[..4].copy_from_slice(&[0.0; 4]);
        dst[n - 4..].copy_from_slice(&[0.0; 4]);
    } else {
        if n > 0 {
            dst[0] = 0.0;
        }
        if n > 1 {
            dst[1] = 0.0;
        }
        if n > 2 {
            dst[2] = 0.0;
        }
    }
}
