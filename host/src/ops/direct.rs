//! Direct convolution for layers with few weights (the ResNet's first
//! block: one input channel, 3x3): a GEMM with a 9-deep reduction spends
//! its time packing, while these loops run straight over image rows.
//! Same layouts and results as the GEMM path in `conv`.

use super::buffers::with_scratch;
use super::im2col::Geometry;

/// Whether `g` is small enough for the direct loops to win.
pub(crate) fn suits(g: &Geometry) -> bool {
    g.co * g.patch() <= 128
}

/// The sample's input padded (or cropped) to the window the kernel sweeps,
/// given to `f`.
fn with_window<R>(g: &Geometry, x: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
    if g.pad_len() == 0 {
        return f(x);
    }
    with_scratch([0, 0, g.pad_len()], |_, _, pad| {
        g.pad_into(x, pad);
        f(pad)
    })
}

/// `out (+)= weights (*) xs + bias` sample by sample, as `conv::forward_run`.
pub(crate) fn forward_run(g: &Geometry, xs: &[f32], ws: &[f32], bias: Option<&[f32]>, out: &mut [f32], accumulate: bool) {
    let (hp, wp) = g.window();
    let (k, wo, pixels) = (g.k, g.wo, g.pixels());
    for (x, out) in xs.chunks_exact(g.in_len()).zip(out.chunks_exact_mut(g.out_len())) {
        with_window(g, x, |x| {
            for (c, plane) in out.chunks_exact_mut(pixels).enumerate() {
                let b = bias.map_or(0.0, |b| b[c]);
                if accumulate {
                    plane.iter_mut().for_each(|v| *v += b);
                } else {
                    plane.fill(b);
                }
                let w = &ws[c * g.patch()..][..g.patch()];
                for (i, src) in x.chunks_exact(hp * wp).enumerate() {
                    for ky in 0..k {
                        for kx in 0..k {
                            let wv = w[(i * k + ky) * k + kx];
                            for (oy, orow) in plane.chunks_exact_mut(wo).enumerate() {
                                let srow = &src[(oy + ky) * wp + kx..][..wo];
                                orow.iter_mut().zip(srow).for_each(|(o, s)| *o += wv * s);
                            }
                        }
                    }
                }
            }
        });
    }
}

/// `gwt += im2col(xs) * gout^T` (transposed, `patch x co`) and `gb += gout`
/// over pixels, as `conv::weight_grad_run`.
pub(crate) fn weight_grad_run(g: &Geometry, xs: &[f32], gout: &[f32], gwt: &mut [f32], gb: &mut [f32]) {
    let (hp, wp) = g.window();
    let (k, wo, pixels) = (g.k, g.wo, g.pixels());
    for (x, gout) in xs.chunks_exact(g.in_len()).zip(gout.chunks_exact(g.out_len())) {
        with_window(g, x, |x| {
            for (c, plane) in gout.chunks_exact(pixels).enumerate() {
                gb[c] += sum(plane);
                for (i, src) in x.chunks_exact(hp * wp).enumerate() {
                    for ky in 0..k {
                        for kx in 0..k {
                            let mut acc = 0.0;
                            for (oy, grow) in plane.chunks_exact(wo).enumerate() {
                                acc += dot(grow, &src[(oy + ky) * wp + kx..][..wo]);
                            }
                            gwt[((i * k + ky) * k + kx) * g.co + c] += acc;
                        }
                    }
                }
            }
        });
    }
}

/// A dot product in eight independent lanes, so that it vectorises
/// (a plain float sum may not be reordered).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn sum(a: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let c = a.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for l in 0..8 {
            lanes[l] += x[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}
