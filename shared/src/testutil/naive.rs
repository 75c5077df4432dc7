//! Plain direct-loop f32 layers in f64: the independent computation the
//! host's op tests and the f32 network tests compare against. NCHW
//! activations (CHW for one image), OIHW weights, inputs in f32 or f64.

use std::vec;
use std::vec::Vec;

/// Sizes of a reference convolution (stride 1).
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub b: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub k: usize,
    pub p: usize,
}

impl ConvShape {
    /// Output height.
    pub fn ho(&self) -> usize {
        self.h + 2 * self.p + 1 - self.k
    }
    /// Output width.
    pub fn wo(&self) -> usize {
        self.w + 2 * self.p + 1 - self.k
    }
}

/// `out[b, o, y, x] = bias[o] + sum x[b, i, y + ky - p, x + kx - p] * w[o, i, ky, kx]`.
pub fn conv2d<T: Copy + Into<f64>>(s: ConvShape, x: &[T], w: &[f32], bias: &[f32]) -> Vec<f64> {
    let (ho, wo) = (s.ho(), s.wo());
    let mut out = vec![0.0; s.b * s.co * ho * wo];
    for b in 0..s.b {
        for o in 0..s.co {
            for y in 0..ho {
                for xo in 0..wo {
                    let mut acc = bias[o] as f64;
                    for i in 0..s.ci {
                        for ky in 0..s.k {
                            for kx in 0..s.k {
                                let (iy, ix) = (
                                    (y + ky) as isize - s.p as isize,
                                    (xo + kx) as isize - s.p as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                let xv: f64 = x
                                    [((b * s.ci + i) * s.h + iy as usize) * s.w + ix as usize]
                                    .into();
                                acc += xv * w[((o * s.ci + i) * s.k + ky) * s.k + kx] as f64;
                            }
                        }
                    }
                    out[((b * s.co + o) * ho + y) * wo + xo] = acc;
                }
            }
        }
    }
    out
}

/// 2x2 max pool, stride 2, floor, on `planes` planes of `h x w`.
pub fn maxpool2d<T: Copy + Into<f64>>(planes: usize, h: usize, w: usize, x: &[T]) -> Vec<f64> {
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0.0; planes * ho * wo];
    for p in 0..planes {
        for y in 0..ho {
            for xo in 0..wo {
                let mut m = f64::NEG_INFINITY;
                for dy in 0..2 {
                    for dx in 0..2 {
                        m = m.max(x[(p * h + 2 * y + dy) * w + 2 * xo + dx].into());
                    }
                }
                out[(p * ho + y) * wo + xo] = m;
            }
        }
    }
    out
}

/// 3x3 average pool, stride 1, zero padding 1, divided by 9.
pub fn avgpool3x3<T: Copy + Into<f64>>(planes: usize, h: usize, w: usize, x: &[T]) -> Vec<f64> {
    let mut out = vec![0.0; planes * h * w];
    for p in 0..planes {
        for y in 0..h as isize {
            for xo in 0..w as isize {
                let mut sum = 0.0;
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (iy, ix) = (y + dy, xo + dx);
                        if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                            sum += x[(p * h + iy as usize) * w + ix as usize].into();
                        }
                    }
                }
                out[(p * h + y as usize) * w + xo as usize] = sum / 9.0;
            }
        }
    }
    out
}

/// Channel concat of NCHW parts given as `(data, channels)`.
pub fn concat(b: usize, plane: usize, parts: &[(&[f32], usize)]) -> Vec<f64> {
    let mut out = Vec::new();
    for s in 0..b {
        for &(data, c) in parts {
            out.extend(
                data[s * c * plane..(s + 1) * c * plane]
                    .iter()
                    .map(|&v| v as f64),
            );
        }
    }
    out
}

/// Gradients of `sum(conv2d(x, w, b) * gout)` with respect to `x`, `w` and
/// `b`, by the same direct loops.
pub fn conv2d_grads(
    s: ConvShape,
    x: &[f32],
    w: &[f32],
    gout: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (ho, wo) = (s.ho(), s.wo());
    let mut gx = vec![0.0; x.len()];
    let mut gw = vec![0.0; w.len()];
    let mut gb = vec![0.0; s.co];
    for b in 0..s.b {
        for o in 0..s.co {
            for y in 0..ho {
                for xo in 0..wo {
                    let g = gout[((b * s.co + o) * ho + y) * wo + xo] as f64;
                    gb[o] += g;
                    for i in 0..s.ci {
                        for ky in 0..s.k {
                            for kx in 0..s.k {
                                let (iy, ix) = (
                                    (y + ky) as isize - s.p as isize,
                                    (xo + kx) as isize - s.p as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                let xi = ((b * s.ci + i) * s.h + iy as usize) * s.w + ix as usize;
                                let wi = ((o * s.ci + i) * s.k + ky) * s.k + kx;
                                gx[xi] += g * w[wi] as f64;
                                gw[wi] += g * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (gx, gw, gb)
}
