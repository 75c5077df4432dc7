//! Each op's forward against the direct loops of `shared::testutil::naive`, and its
//! gradients against central finite differences of its own forward pass.
//!
//! The loss is `sum(out * r)` for a fixed random `r`, so the output
//! gradient is `r`. Every op here is linear in each single input (max pool
//! piecewise so, with inputs spaced wider than the step), so a central
//! difference is exact up to f32 rounding of the forward pass; accumulating
//! the loss in f64 keeps that rounding near 1e-6 relative.

use super::sample::{random, weighted_sum};
use super::*;
use dfdx::prelude::*;
use shared::testutil::naive::{self, ConvShape};

fn dot(out: &[f32], r: &[f32]) -> f64 {
    out.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Central differences of `loss` at `at`, step `eps`.
fn numeric_grad(at: &[f32], eps: f32, loss: impl Fn(&[f32]) -> f64) -> Vec<f64> {
    let mut p = at.to_vec();
    (0..at.len())
        .map(|i| {
            p[i] = at[i] + eps;
            let up = loss(&p);
            p[i] = at[i] - eps;
            let down = loss(&p);
            p[i] = at[i];
            (up - down) / (2.0 * eps as f64)
        })
        .collect()
}

/// Relative error `|a - b| / |b|` over the whole vector.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths");
    let diff: f64 = a.iter().zip(b).map(|(&a, &b)| (a as f64 - b).powi(2)).sum();
    let norm: f64 = b.iter().map(|b| b * b).sum();
    (diff / norm.max(1e-30)).sqrt()
}

fn assert_close(what: &str, a: &[f32], b: &[f64], tol: f64) {
    let e = rel_err(a, b);
    assert!(e < tol, "{what}: relative error {e:e} >= {tol:e}");
}

const FWD_TOL: f64 = 1e-5;
const GRAD_TOL: f64 = 1e-4;
const EPS: f32 = 1e-2;

/// The conv op under test: plain or first-layer, with or without ReLU.
fn conv_op<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
    T: Tape<f32, Cpu>,
>(
    first: bool,
    relu: bool,
    x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    w: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    b: &Tensor<Rank1<CO>, f32, Cpu>,
) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T> {
    match (first, relu) {
        (false, false) => conv2d::<B, CI, H, W, CO, K, P, HO, WO, _>(x, w, b),
        (true, false) => conv2d_first::<B, CI, H, W, CO, K, P, HO, WO, _>(x, w, b),
        (false, true) => conv2d_relu::<B, CI, H, W, CO, K, P, HO, WO, _>(x, w, b),
        (true, true) => conv2d_first_relu::<B, CI, H, W, CO, K, P, HO, WO, _>(x, w, b),
    }
}

/// `relu` of a reference output.
fn relu_ref(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&v| v.max(0.0)).collect()
}

/// `r` with the weights of outputs whose ReLU input `pre` lies within
/// `margin` of zero set to 0: a step of the finite differences cannot
/// then move a weighted output across the ReLU's kink, so the differences
/// stay exact.
fn off_the_kink(r: &[f32], pre: &[f64], margin: f64) -> Vec<f32> {
    r.iter()
        .zip(pre)
        .map(|(&r, &p)| if p.abs() < margin { 0.0 } else { r })
        .collect()
}

/// Margin for [`off_the_kink`]: a step of `EPS` in one input of magnitude
/// at most 1 moves any conv or sum output by at most `EPS` (weights and
/// inputs are within [-1, 1]).
const KINK_MARGIN: f64 = 2.0 * EPS as f64;

fn conv_case<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
>(
    seed: u64,
) {
    let dev = Cpu::default();
    let s = ConvShape {
        b: B,
        ci: CI,
        h: H,
        w: W,
        co: CO,
        k: K,
        p: P,
    };
    let (xv, wv, bv) = (
        random(B * CI * H * W, seed),
        random(CO * CI * K * K, seed + 1),
        random(CO, seed + 2),
    );
    let x: Tensor<Rank4<B, CI, H, W>, f32, Cpu> =
        dev.tensor_from_vec(xv.clone(), Default::default());
    let w: Tensor<Rank4<CO, CI, K, K>, f32, Cpu> =
        dev.tensor_from_vec(wv.clone(), Default::default());
    let b: Tensor<Rank1<CO>, f32, Cpu> = dev.tensor_from_vec(bv.clone(), Default::default());
    let pre = naive::conv2d(s, &xv, &wv, &bv);

    for relu in [false, true] {
        let name = format!("conv {s:?} relu={relu}");
        // A macro, not a closure: it is used with and without a tape.
        macro_rules! op {
            ($first:expr, $x:expr, $w:expr, $b:expr) => {
                conv_op::<B, CI, H, W, CO, K, P, HO, WO, _>($first, relu, $x, $w, $b)
            };
        }
        let (want, r) = if relu {
            let r = random(B * CO * HO * WO, seed + 3);
            (relu_ref(&pre), off_the_kink(&r, &pre, KINK_MARGIN))
        } else {
            (pre.clone(), random(B * CO * HO * WO, seed + 3))
        };
        let y = op!(false, x.clone(), &w, &b);
        assert_close(&format!("{name} forward"), &y.as_vec(), &want, FWD_TOL);

        let loss = |xv: &[f32], wv: &[f32], bv: &[f32]| {
            let x: Tensor<Rank4<B, CI, H, W>, f32, Cpu> =
                dev.tensor_from_vec(xv.to_vec(), Default::default());
            let w: Tensor<Rank4<CO, CI, K, K>, f32, Cpu> =
                dev.tensor_from_vec(wv.to_vec(), Default::default());
            let b: Tensor<Rank1<CO>, f32, Cpu> =
                dev.tensor_from_vec(bv.to_vec(), Default::default());
            dot(&op!(false, x, &w, &b).as_vec(), &r)
        };
        let g = weighted_sum(op!(false, x.leaky_trace(), &w, &b), &r).backward();
        assert_close(
            &format!("{name} d/dx"),
            &g.get(&x).as_vec(),
            &numeric_grad(&xv, EPS, |p| loss(p, &wv, &bv)),
            GRAD_TOL,
        );
        assert_close(
            &format!("{name} d/dweight"),
            &g.get(&w).as_vec(),
            &numeric_grad(&wv, EPS, |p| loss(&xv, p, &bv)),
            GRAD_TOL,
        );
        assert_close(
            &format!("{name} d/dbias"),
            &g.get(&b).as_vec(),
            &numeric_grad(&bv, EPS, |p| loss(&xv, &wv, p)),
            GRAD_TOL,
        );

        // The first-layer variant computes the same parameter gradients.
        let g1 = weighted_sum(op!(true, x.leaky_trace(), &w, &b), &r).backward();
        assert_eq!(
            g1.get(&w).as_vec(),
            g.get(&w).as_vec(),
            "{name}: first-layer weight gradient"
        );
        assert_eq!(
            g1.get(&b).as_vec(),
            g.get(&b).as_vec(),
            "{name}: first-layer bias gradient"
        );
    }
}

#[test]
fn conv2d_pointwise() {
    conv_case::<3, 4, 5, 6, 3, 1, 0, 5, 6>(1);
}

#[test]
fn conv2d_3x3_same() {
    conv_case::<2, 3, 6, 5, 4, 3, 1, 6, 5>(2);
}

#[test]
fn conv2d_5x5_same() {
    conv_case::<2, 2, 7, 6, 3, 5, 2, 7, 6>(3);
}

#[test]
fn conv2d_5x5_valid() {
    conv_case::<2, 2, 9, 8, 3, 5, 0, 5, 4>(4);
}

#[test]
fn conv2d_even_kernel_and_wide_padding() {
    // Padding as wide as the kernel: border outputs see only zeros.
    conv_case::<2, 2, 4, 5, 2, 2, 2, 7, 8>(5);
    conv_case::<1, 3, 3, 3, 2, 1, 1, 5, 5>(6);
}

#[test]
fn conv2d_more_samples_than_threads_split() {
    // Enough samples that the backward pass splits them into several runs.
    conv_case::<13, 2, 5, 5, 3, 3, 1, 5, 5>(7);
}

#[test]
fn conv2d_reads_a_broadcast_input() {
    let dev = Cpu::default();
    let row = random(5, 8);
    let x: Tensor<Rank4<2, 3, 4, 5>, f32, Cpu> = dev
        .tensor_from_vec(row.clone(), Rank1::<5>::default())
        .broadcast();
    let dense: Vec<f32> = (0..2 * 3 * 4).flat_map(|_| row.clone()).collect();
    let (wv, bv) = (random(2 * 3 * 9, 9), random(2, 10));
    let w: Tensor<Rank4<2, 3, 3, 3>, f32, Cpu> =
        dev.tensor_from_vec(wv.clone(), Default::default());
    let b: Tensor<Rank1<2>, f32, Cpu> = dev.tensor_from_vec(bv.clone(), Default::default());
    let y = conv2d::<2, 3, 4, 5, 2, 3, 1, 4, 5, _>(x, &w, &b);
    let s = ConvShape {
        b: 2,
        ci: 3,
        h: 4,
        w: 5,
        co: 2,
        k: 3,
        p: 1,
    };
    assert_close(
        "broadcast input",
        &y.as_vec(),
        &naive::conv2d(s, &dense, &wv, &bv),
        FWD_TOL,
    );
}

/// Layer-sized shapes, where a run of samples spans several GEMM groups:
/// the kernels against the reference's gradients, both input-gradient
/// paths, with channel counts (10, 20) that leave gemm's last tiles short.
#[test]
fn conv_kernels_match_reference_gradients_at_layer_size() {
    use super::conv::{backward_via, forward};
    use super::im2col::Geometry;
    for (s, seed) in [
        (
            ConvShape {
                b: 40,
                ci: 16,
                h: 12,
                w: 12,
                co: 24,
                k: 5,
                p: 2,
            },
            81,
        ),
        (
            ConvShape {
                b: 9,
                ci: 24,
                h: 12,
                w: 10,
                co: 8,
                k: 5,
                p: 0,
            },
            82,
        ),
        (
            ConvShape {
                b: 12,
                ci: 3,
                h: 14,
                w: 14,
                co: 20,
                k: 3,
                p: 1,
            },
            83,
        ),
        (
            ConvShape {
                b: 12,
                ci: 1,
                h: 14,
                w: 13,
                co: 10,
                k: 3,
                p: 1,
            },
            84,
        ),
        (
            ConvShape {
                b: 10,
                ci: 12,
                h: 9,
                w: 9,
                co: 10,
                k: 3,
                p: 1,
            },
            85,
        ),
    ] {
        let g = Geometry::new(s.ci, s.h, s.w, s.co, s.k, s.p);
        let (xv, wv, bv) = (
            random(s.b * g.in_len(), seed),
            random(s.co * g.patch(), seed + 1),
            random(s.co, seed + 2),
        );
        let gout = random(s.b * g.out_len(), seed + 3);
        let mut out = vec![0.0; s.b * g.out_len()];
        forward(&g, &xv, &wv, Some(&bv), &mut out);
        assert_close(
            &format!("{s:?} forward"),
            &out,
            &naive::conv2d(s, &xv, &wv, &bv),
            FWD_TOL,
        );
        let (rx, rw, rb) = naive::conv2d_grads(s, &xv, &wv, &gout);
        for col2im in [false, true] {
            let (mut gx, mut gw, mut gb) =
                (vec![0.0; xv.len()], vec![0.0; wv.len()], vec![0.0; s.co]);
            backward_via(&g, &xv, &wv, &gout, &mut gw, &mut gb, Some(&mut gx), col2im);
            assert_close(&format!("{s:?} col2im={col2im} d/dx"), &gx, &rx, FWD_TOL);
            assert_close(
                &format!("{s:?} col2im={col2im} d/dweight"),
                &gw,
                &rw,
                FWD_TOL,
            );
            assert_close(&format!("{s:?} col2im={col2im} d/dbias"), &gb, &rb, FWD_TOL);
        }
    }
}

fn maxpool_case<
    const B: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    const HO: usize,
    const WO: usize,
>(
    seed: u64,
) {
    let dev = Cpu::default();
    // Distinct values 0.05 apart, shuffled, none within 0.025 of zero: a
    // step of EPS never changes which input wins a window, nor crosses the
    // fused ReLU's kink.
    let n = B * C * H * W;
    let order = random(n, seed);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| order[a].total_cmp(&order[b]));
    let mut xv = vec![0.0; n];
    for (rank, &i) in idx.iter().enumerate() {
        xv[i] = rank as f32 * 0.05 - n as f32 * 0.025 + 0.025;
    }
    let r = random(B * C * HO * WO, seed + 1);
    let x: Tensor<Rank4<B, C, H, W>, f32, Cpu> =
        dev.tensor_from_vec(xv.clone(), Default::default());
    let pooled = naive::maxpool2d(B * C, H, W, &xv);
    for relu in [false, true] {
        let name = format!("maxpool relu={relu}");
        // A macro, not a closure: it is used with and without a tape.
        macro_rules! op {
            ($x:expr) => {{
                let y: Tensor<Rank4<B, C, HO, WO>, _, _, _> = if relu {
                    maxpool2d_relu($x)
                } else {
                    maxpool2d($x)
                };
                y
            }};
        }
        let want = if relu {
            relu_ref(&pooled)
        } else {
            pooled.clone()
        };
        assert_close(
            &format!("{name} forward"),
            &op!(x.clone()).as_vec(),
            &want,
            FWD_TOL,
        );
        let loss = |xv: &[f32]| {
            let x: Tensor<Rank4<B, C, H, W>, f32, Cpu> =
                dev.tensor_from_vec(xv.to_vec(), Default::default());
            dot(&op!(x).as_vec(), &r)
        };
        let g = weighted_sum(op!(x.leaky_trace()), &r).backward();
        assert_close(
            &format!("{name} d/dx"),
            &g.get(&x).as_vec(),
            &numeric_grad(&xv, EPS, loss),
            GRAD_TOL,
        );
    }
}

#[test]
fn maxpool2d_even() {
    maxpool_case::<2, 3, 4, 6, 2, 3>(11);
}

#[test]
fn maxpool2d_odd_sides_floor() {
    maxpool_case::<2, 2, 5, 7, 2, 3>(12);
}

#[test]
fn maxpool2d_ties_go_to_the_first() {
    let dev = Cpu::default();
    let x: Tensor<Rank4<1, 1, 2, 2>, f32, Cpu> =
        dev.tensor_from_vec(vec![1.0, 3.0, 3.0, 3.0], Default::default());
    let y: Tensor<Rank4<1, 1, 1, 1>, _, _, _> = maxpool2d(x.leaky_trace());
    let g = weighted_sum(y, &[1.0]).backward();
    assert_eq!(g.get(&x).as_vec(), [0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn maxpool2d_relu_clamps_and_blocks_the_gradient_at_zero() {
    let dev = Cpu::default();
    // Windows whose maximum is negative, zero and positive.
    let x: Tensor<Rank4<1, 1, 2, 6>, f32, Cpu> = dev.tensor_from_vec(
        vec![
            -3.0, -1.0, 0.0, -2.0, 1.0, 2.0, -2.0, -4.0, -1.0, -1.0, 0.5, -1.0,
        ],
        Default::default(),
    );
    let y: Tensor<Rank4<1, 1, 1, 3>, _, _, _> = maxpool2d_relu(x.leaky_trace());
    assert_eq!(y.as_vec(), [0.0, 0.0, 2.0]);
    let g = weighted_sum(y, &[1.0, 1.0, 1.0]).backward();
    assert_eq!(
        g.get(&x).as_vec(),
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
}

/// [`conv2d_add_relu`] against the direct loops: its forward pass, the
/// gradient at the shortcut exactly and every gradient by finite
/// differences; then bit for bit against the unfused computation it
/// replaces, `max(shortcut + conv2d(x), 0)` with the conv's gradients for
/// the masked output gradient.
fn conv_add_relu_case<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
>(
    seed: u64,
) {
    let dev = Cpu::default();
    let shape = ConvShape {
        b: B,
        ci: CI,
        h: H,
        w: W,
        co: CO,
        k: K,
        p: P,
    };
    let n = B * CO * HO * WO;
    let (xv, wv, bv, sv) = (
        random(B * CI * H * W, seed),
        random(CO * CI * K * K, seed + 1),
        random(CO, seed + 2),
        random(n, seed + 3),
    );
    let pre: Vec<f64> = naive::conv2d(shape, &xv, &wv, &bv)
        .iter()
        .zip(&sv)
        .map(|(&c, &s)| c + s as f64)
        .collect();
    let r = off_the_kink(&random(n, seed + 4), &pre, 2.0 * KINK_MARGIN);
    let x: Tensor<Rank4<B, CI, H, W>, f32, Cpu> =
        dev.tensor_from_vec(xv.clone(), Default::default());
    let w: Tensor<Rank4<CO, CI, K, K>, f32, Cpu> =
        dev.tensor_from_vec(wv.clone(), Default::default());
    let b: Tensor<Rank1<CO>, f32, Cpu> = dev.tensor_from_vec(bv.clone(), Default::default());
    let sc: Tensor<Rank4<B, CO, HO, WO>, f32, Cpu> =
        dev.tensor_from_vec(sv.clone(), Default::default());
    macro_rules! op {
        ($x:expr, $w:expr, $b:expr, $s:expr) => {
            conv2d_add_relu::<B, CI, H, W, CO, K, P, HO, WO, _, _>($x, $w, $b, $s)
        };
    }
    let y = op!(x.clone(), &w, &b, sc.clone()).as_vec();
    assert_close("conv2d_add_relu forward", &y, &relu_ref(&pre), FWD_TOL);

    let g = weighted_sum(op!(x.leaky_trace(), &w, &b, sc.leaky_trace()), &r).backward();
    let passed: Vec<f64> = r
        .iter()
        .zip(&pre)
        .map(|(&r, &p)| if p > 0.0 { r as f64 } else { 0.0 })
        .collect();
    assert_close(
        "conv2d_add_relu d/dshortcut",
        &g.get(&sc).as_vec(),
        &passed,
        1e-7,
    );
    let loss = |xv: &[f32], wv: &[f32], bv: &[f32], sv: &[f32]| {
        let x: Tensor<Rank4<B, CI, H, W>, f32, Cpu> =
            dev.tensor_from_vec(xv.to_vec(), Default::default());
        let w: Tensor<Rank4<CO, CI, K, K>, f32, Cpu> =
            dev.tensor_from_vec(wv.to_vec(), Default::default());
        let b: Tensor<Rank1<CO>, f32, Cpu> = dev.tensor_from_vec(bv.to_vec(), Default::default());
        let s: Tensor<Rank4<B, CO, HO, WO>, f32, Cpu> =
            dev.tensor_from_vec(sv.to_vec(), Default::default());
        dot(&op!(x, &w, &b, s).as_vec(), &r)
    };
    let numeric = [
        (
            "x",
            g.get(&x).as_vec(),
            numeric_grad(&xv, EPS, |p| loss(p, &wv, &bv, &sv)),
        ),
        (
            "weight",
            g.get(&w).as_vec(),
            numeric_grad(&wv, EPS, |p| loss(&xv, p, &bv, &sv)),
        ),
        (
            "bias",
            g.get(&b).as_vec(),
            numeric_grad(&bv, EPS, |p| loss(&xv, &wv, p, &sv)),
        ),
        (
            "shortcut",
            g.get(&sc).as_vec(),
            numeric_grad(&sv, EPS, |p| loss(&xv, &wv, &bv, p)),
        ),
    ];
    for (what, got, want) in numeric {
        assert_close(
            &format!("conv2d_add_relu d/d{what} numerically"),
            &got,
            &want,
            GRAD_TOL,
        );
    }

    // The unfused computation, in f32 as the separate ops did it.
    let conv = conv2d::<B, CI, H, W, CO, K, P, HO, WO, _>(x.clone(), &w, &b).as_vec();
    let sum: Vec<f32> = sv.iter().zip(&conv).map(|(s, c)| s + c).collect();
    let unfused: Vec<f32> = sum.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(bits(&y), bits(&unfused), "conv2d_add_relu forward bits");
    let masked: Vec<f32> = r
        .iter()
        .zip(&sum)
        .map(|(&r, &v)| r * f32::from(u8::from(v > 0.0)))
        .collect();
    let gu = weighted_sum(
        conv2d::<B, CI, H, W, CO, K, P, HO, WO, _>(x.leaky_trace(), &w, &b),
        &masked,
    )
    .backward();
    for (what, fused, separate) in [
        ("x", g.get(&x).as_vec(), gu.get(&x).as_vec()),
        ("weight", g.get(&w).as_vec(), gu.get(&w).as_vec()),
        ("bias", g.get(&b).as_vec(), gu.get(&b).as_vec()),
    ] {
        assert_eq!(
            bits(&fused),
            bits(&separate),
            "conv2d_add_relu d/d{what} bits"
        );
    }
}

/// [`conv2d_add_relu_maxpool`] bit for bit against the two ops it fuses,
/// forward and every gradient; those two are checked against the direct
/// loops and finite differences above.
fn conv_add_relu_maxpool_case<
    const B: usize,
    const CI: usize,
    const H: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const PH: usize,
>(
    seed: u64,
) {
    let dev = Cpu::default();
    let x: Tensor<Rank4<B, CI, H, H>, f32, Cpu> =
        dev.tensor_from_vec(random(B * CI * H * H, seed), Default::default());
    let w: Tensor<Rank4<CO, CI, K, K>, f32, Cpu> =
        dev.tensor_from_vec(random(CO * CI * K * K, seed + 1), Default::default());
    let b: Tensor<Rank1<CO>, f32, Cpu> =
        dev.tensor_from_vec(random(CO, seed + 2), Default::default());
    let sc: Tensor<Rank4<B, CO, HO, HO>, f32, Cpu> =
        dev.tensor_from_vec(random(B * CO * HO * HO, seed + 3), Default::default());
    let r = random(B * CO * PH * PH, seed + 4);
    let fused = conv2d_add_relu_maxpool::<B, CI, H, H, CO, K, P, HO, HO, PH, PH, _, _>(
        x.leaky_trace(),
        &w,
        &b,
        sc.leaky_trace(),
    );
    let separate: Tensor<Rank4<B, CO, PH, PH>, _, _, _> =
        maxpool2d_relu(conv2d_add_relu::<B, CI, H, H, CO, K, P, HO, HO, _, _>(
            x.leaky_trace(),
            &w,
            &b,
            sc.leaky_trace(),
        ));
    assert_eq!(
        bits(&fused.as_vec()),
        bits(&separate.as_vec()),
        "conv2d_add_relu_maxpool forward bits"
    );
    let gf = weighted_sum(fused, &r).backward();
    let gs = weighted_sum(separate, &r).backward();
    for (what, f, s) in [
        ("x", gf.get(&x).as_vec(), gs.get(&x).as_vec()),
        ("weight", gf.get(&w).as_vec(), gs.get(&w).as_vec()),
        ("bias", gf.get(&b).as_vec(), gs.get(&b).as_vec()),
        ("shortcut", gf.get(&sc).as_vec(), gs.get(&sc).as_vec()),
    ] {
        assert_eq!(bits(&f), bits(&s), "conv2d_add_relu_maxpool d/d{what} bits");
    }
}

#[test]
fn conv2d_add_relu_maxpool_is_the_two_ops() {
    // The ResNet's first block's shapes, fewer samples.
    conv_add_relu_maxpool_case::<3, 1, 28, 10, 3, 1, 28, 14>(121);
    // Odd sides (the pool drops the last row and column), more samples
    // than the threads' runs.
    conv_add_relu_maxpool_case::<9, 2, 7, 3, 3, 1, 7, 3>(122);
}

/// Bit patterns, so that `-0.0` and `0.0` differ too.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn conv2d_add_relu_forward_and_gradients() {
    // A residual block's merge: the size kept, the shortcut as wide as
    // the conv's output.
    conv_add_relu_case::<2, 3, 5, 4, 4, 3, 1, 5, 4>(101);
    // A conv that changes the size, more samples than the threads' runs.
    conv_add_relu_case::<9, 2, 6, 5, 3, 3, 0, 4, 3>(102);
}

fn avgpool_case<const B: usize, const C: usize, const H: usize, const W: usize>(seed: u64) {
    let dev = Cpu::default();
    let xv = random(B * C * H * W, seed);
    let r = random(B * C * H * W, seed + 1);
    let x: Tensor<Rank4<B, C, H, W>, f32, Cpu> =
        dev.tensor_from_vec(xv.clone(), Default::default());
    assert_close(
        "avgpool forward",
        &avgpool3x3(x.clone()).as_vec(),
        &naive::avgpool3x3(B * C, H, W, &xv),
        FWD_TOL,
    );
    let loss = |xv: &[f32]| {
        let x: Tensor<Rank4<B, C, H, W>, f32, Cpu> =
            dev.tensor_from_vec(xv.to_vec(), Default::default());
        dot(&avgpool3x3(x).as_vec(), &r)
    };
    let g = weighted_sum(avgpool3x3(x.leaky_trace()), &r).backward();
    assert_close(
        "avgpool d/dx",
        &g.get(&x).as_vec(),
        &numeric_grad(&xv, EPS, loss),
        GRAD_TOL,
    );
}

#[test]
fn avgpool3x3_counts_padding() {
    avgpool_case::<2, 3, 5, 4>(21);
    avgpool_case::<1, 2, 1, 3>(22);
    let dev = Cpu::default();
    let ones: Tensor<Rank4<1, 1, 3, 3>, f32, Cpu> = dev.ones();
    let corner = avgpool3x3(ones).as_vec()[0];
    assert!(
        (corner - 4.0 / 9.0).abs() < 1e-7,
        "a corner sees 4 of 9: {corner}"
    );
}

#[test]
fn concat4_forward_and_gradients() {
    let dev = Cpu::default();
    let (pv, plane) = (
        [
            random(2 * 2 * 6, 31),
            random(2 * 3 * 6, 32),
            random(2 * 6, 33),
            random(2 * 4 * 6, 34),
        ],
        6,
    );
    let r = random(2 * 10 * 6, 35);
    let a: Tensor<Rank4<2, 2, 2, 3>, f32, Cpu> =
        dev.tensor_from_vec(pv[0].clone(), Default::default());
    let b: Tensor<Rank4<2, 3, 2, 3>, f32, Cpu> =
        dev.tensor_from_vec(pv[1].clone(), Default::default());
    let c: Tensor<Rank4<2, 1, 2, 3>, f32, Cpu> =
        dev.tensor_from_vec(pv[2].clone(), Default::default());
    let d: Tensor<Rank4<2, 4, 2, 3>, f32, Cpu> =
        dev.tensor_from_vec(pv[3].clone(), Default::default());
    let y: Tensor<Rank4<2, 10, 2, 3>, _, _, _> =
        concat4(a.clone(), b.clone(), c.clone(), d.clone());
    let parts = [
        (&pv[0][..], 2),
        (&pv[1][..], 3),
        (&pv[2][..], 1),
        (&pv[3][..], 4),
    ];
    assert_close(
        "concat4 forward",
        &y.as_vec(),
        &naive::concat(2, plane, &parts),
        FWD_TOL,
    );

    let y: Tensor<Rank4<2, 10, 2, 3>, _, _, _> =
        concat4(a.leaky_trace(), b.retaped(), c.retaped(), d.retaped());
    let g = weighted_sum(y, &r).backward();
    // d loss / d part = the matching channels of r.
    let mut offset = 0;
    for (part, (got, c)) in [
        g.get(&a).as_vec(),
        g.get(&b).as_vec(),
        g.get(&c).as_vec(),
        g.get(&d).as_vec(),
    ]
    .iter()
    .zip([2, 3, 1, 4])
    .enumerate()
    {
        let want: Vec<f64> = (0..2)
            .flat_map(|s| {
                r[(s * 10 + offset) * plane..][..c * plane]
                    .iter()
                    .map(|&v| v as f64)
            })
            .collect();
        assert_close(&format!("concat4 d/dpart{part}"), got, &want, 1e-7);
        offset += c;
    }
}

#[test]
fn concat2_of_one_tensor_twice_adds_both_gradients() {
    let dev = Cpu::default();
    let av = random(2 * 3 * 4, 41);
    let r = random(2 * 6 * 4, 42);
    let a: Tensor<Rank4<2, 3, 2, 2>, f32, Cpu> =
        dev.tensor_from_vec(av.clone(), Default::default());
    let at = a.leaky_trace();
    let y: Tensor<Rank4<2, 6, 2, 2>, _, _, _> = concat2(at.retaped(), at);
    assert_close(
        "concat2 forward",
        &y.as_vec(),
        &naive::concat(2, 4, &[(&av, 3), (&av, 3)]),
        FWD_TOL,
    );
    let g = weighted_sum(y, &r).backward();
    let want: Vec<f64> = (0..2)
        .flat_map(|s| (0..12).map(move |i| (s, i)))
        .map(|(s, i)| (r[s * 24 + i] + r[s * 24 + 12 + i]) as f64)
        .collect();
    assert_close("concat2 d/da", &g.get(&a).as_vec(), &want, 1e-7);
}

#[test]
fn flatten_keeps_chw_order_and_passes_gradients() {
    let dev = Cpu::default();
    let xv = random(2 * 3 * 2 * 2, 51);
    let r = random(2 * 12, 52);
    let x: Tensor<Rank4<2, 3, 2, 2>, f32, Cpu> =
        dev.tensor_from_vec(xv.clone(), Default::default());
    let y = flatten::<2, 3, 2, 2, 12, _>(x.leaky_trace());
    assert_eq!(y.as_vec(), xv);
    let g = weighted_sum(y, &r).backward();
    assert_eq!(g.get(&x).as_vec(), r);
}

/// A small Inception-like module: four branches off one input, merged by
/// concat4. Checks that gradients from every branch add up in the input's.
#[test]
fn branches_accumulate_into_a_shared_input() {
    type Params = [Vec<f32>; 10];
    fn module<T: Tape<f32, Cpu> + Merge<NoneTape>>(
        dev: &Cpu,
        p: &Params,
        x: Tensor<Rank4<2, 3, 5, 5>, f32, Cpu, T>,
    ) -> Tensor<Rank4<2, 9, 5, 5>, f32, Cpu, T> {
        let t = |v: &Vec<f32>| -> Tensor<Rank1<2>, f32, Cpu> {
            dev.tensor_from_vec(v.clone(), Default::default())
        };
        let w1: Tensor<Rank4<2, 3, 1, 1>, f32, Cpu> =
            dev.tensor_from_vec(p[0].clone(), Default::default());
        let w2: Tensor<Rank4<2, 3, 1, 1>, f32, Cpu> =
            dev.tensor_from_vec(p[2].clone(), Default::default());
        let w3: Tensor<Rank4<3, 2, 3, 3>, f32, Cpu> =
            dev.tensor_from_vec(p[4].clone(), Default::default());
        let b3: Tensor<Rank1<3>, f32, Cpu> = dev.tensor_from_vec(p[5].clone(), Default::default());
        let w4: Tensor<Rank4<2, 3, 1, 1>, f32, Cpu> =
            dev.tensor_from_vec(p[6].clone(), Default::default());
        let w5: Tensor<Rank4<2, 3, 5, 5>, f32, Cpu> =
            dev.tensor_from_vec(p[8].clone(), Default::default());
        let a = conv2d::<2, 3, 5, 5, 2, 1, 0, 5, 5, _>(x.retaped::<T>(), &w1, &t(&p[1]));
        let b = conv2d::<2, 2, 5, 5, 3, 3, 1, 5, 5, _>(
            conv2d::<2, 3, 5, 5, 2, 1, 0, 5, 5, _>(x.retaped::<T>(), &w2, &t(&p[3])),
            &w3,
            &b3,
        );
        let c =
            conv2d::<2, 3, 5, 5, 2, 1, 0, 5, 5, _>(avgpool3x3(x.retaped::<T>()), &w4, &t(&p[7]));
        let d = conv2d::<2, 3, 5, 5, 2, 5, 2, 5, 5, _>(x, &w5, &t(&p[9]));
        concat4(a, b, c, d)
    }
    let dev = Cpu::default();
    let sizes = [6, 2, 6, 2, 54, 3, 6, 2, 150, 2];
    let p: Params = std::array::from_fn(|i| random(sizes[i], 60 + i as u64));
    let xv = random(2 * 3 * 25, 71);
    let r = random(2 * 9 * 25, 72);
    let x: Tensor<Rank4<2, 3, 5, 5>, f32, Cpu> =
        dev.tensor_from_vec(xv.clone(), Default::default());
    let g = weighted_sum(module(&dev, &p, x.leaky_trace()), &r).backward();
    let loss = |xv: &[f32]| {
        dot(
            &module(
                &dev,
                &p,
                dev.tensor_from_vec(xv.to_vec(), Default::default()),
            )
            .as_vec(),
            &r,
        )
    };
    assert_close(
        "module d/dx",
        &g.get(&x).as_vec(),
        &numeric_grad(&xv, EPS, loss),
        GRAD_TOL,
    );
}

/// With dfdx's allocation cache on, buffers come back used: results must
/// not depend on it, step after step.
#[test]
fn cached_buffers_give_the_same_results() {
    fn step(dev: &Cpu, xv: &[f32], wv: &[f32], r: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x: Tensor<Rank4<3, 2, 8, 8>, f32, Cpu> =
            dev.tensor_from_vec(xv.to_vec(), Default::default());
        let w: Tensor<Rank4<4, 2, 3, 3>, f32, Cpu> =
            dev.tensor_from_vec(wv.to_vec(), Default::default());
        let b: Tensor<Rank1<4>, f32, Cpu> = dev.zeros();
        let y = conv2d::<3, 2, 8, 8, 4, 3, 1, 8, 8, _>(x.leaky_trace(), &w, &b);
        let y: Tensor<Rank4<3, 4, 4, 4>, _, _, _> = maxpool2d(y);
        let y: Tensor<Rank4<3, 8, 4, 4>, _, _, _> = concat2(avgpool3x3(y.retaped()), y);
        let out = y.as_vec();
        let g = weighted_sum(y, r).backward();
        (out, g.get(&x).as_vec(), g.get(&w).as_vec())
    }
    let (xv, wv, r) = (
        random(3 * 2 * 64, 91),
        random(4 * 2 * 9, 92),
        random(3 * 8 * 16, 93),
    );
    let plain = step(&Cpu::default(), &xv, &wv, &r);
    let cached = Cpu::default();
    cached.enable_cache();
    for _ in 0..3 {
        assert_eq!(step(&cached, &xv, &wv, &r), plain);
    }
}

/// `conv2d_concat4` against the reference convs concatenated, and its
/// gradients for every input, weight and bias against finite differences.
/// Branches as InceptionNet's, smaller: 1x1, 3x3, 5x5 (wider than the 4x5
/// maps with its padding) and 1x1, two of them on one input.
#[test]
fn conv2d_concat4_forward_and_gradients() {
    type X<const CI: usize> = Tensor<Rank4<2, CI, 4, 5>, f32, Cpu>;
    type Wt<const CO: usize, const CI: usize, const K: usize> =
        Tensor<Rank4<CO, CI, K, K>, f32, Cpu>;
    type Bs<const CO: usize> = Tensor<Rank1<CO>, f32, Cpu>;
    struct Params {
        xa: X<2>,
        wa: Wt<2, 2, 1>,
        ba: Bs<2>,
        xb: X<3>,
        wb: Wt<1, 3, 3>,
        bb: Bs<1>,
        xc: X<1>,
        wc: Wt<2, 1, 5>,
        bc: Bs<2>,
        wd: Wt<3, 2, 1>,
        bd: Bs<3>,
    }
    fn params(dev: &Cpu, p: &[Vec<f32>]) -> Params {
        macro_rules! t {
            ($i:expr) => {
                dev.tensor_from_vec(p[$i].clone(), Default::default())
            };
        }
        Params {
            xa: t!(0),
            wa: t!(1),
            ba: t!(2),
            xb: t!(3),
            wb: t!(4),
            bb: t!(5),
            xc: t!(6),
            wc: t!(7),
            bc: t!(8),
            wd: t!(9),
            bd: t!(10),
        }
    }
    fn module<T: Tape<f32, Cpu>>(
        q: &Params,
        xa: Tensor<Rank4<2, 2, 4, 5>, f32, Cpu, T>,
        xb: Tensor<Rank4<2, 3, 4, 5>, f32, Cpu, T>,
        xc: Tensor<Rank4<2, 1, 4, 5>, f32, Cpu, T>,
    ) -> Tensor<Rank4<2, 8, 4, 5>, f32, Cpu, T> {
        // The last branch shares the first's input, as Inception's b1 and bp
        // share theirs (through the pool).
        conv2d_concat4(
            (xa.retaped(), &q.wa, &q.ba),
            (xb, &q.wb, &q.bb),
            (xc, &q.wc, &q.bc),
            (xa, &q.wd, &q.bd),
        )
    }
    // (input index, ci, co, k) per branch, in concatenation order.
    let branches = [(0, 2, 2, 1), (3, 3, 1, 3), (6, 1, 2, 5), (0, 2, 3, 1)];
    let sizes = [80, 4, 2, 120, 27, 1, 40, 50, 2, 6, 3];
    let p: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| random(n, 120 + i as u64))
        .collect();
    let r = random(2 * 8 * 20, 140);
    let dev = Cpu::default();

    // Forward: each branch's reference conv, concatenated per sample.
    let refs: Vec<(Vec<f64>, usize)> = branches
        .iter()
        .enumerate()
        .map(|(i, &(x, ci, co, k))| {
            let s = ConvShape {
                b: 2,
                ci,
                h: 4,
                w: 5,
                co,
                k,
                p: (k - 1) / 2,
            };
            let (w, b) = if i == 3 { (9, 10) } else { (x + 1, x + 2) };
            (naive::conv2d(s, &p[x], &p[w], &p[b]), co * 20)
        })
        .collect();
    let want: Vec<f64> = (0..2)
        .flat_map(|s| {
            refs.iter()
                .flat_map(move |(v, n)| v[s * n..][..*n].to_vec())
        })
        .collect();
    let q = params(&dev, &p);
    let y = module(&q, q.xa.clone(), q.xb.clone(), q.xc.clone());
    assert_close("conv2d_concat4 forward", &y.as_vec(), &want, FWD_TOL);

    // Gradients of sum(out * r) for every tensor.
    let g = weighted_sum(
        module(&q, q.xa.leaky_trace(), q.xb.retaped(), q.xc.retaped()),
        &r,
    )
    .backward();
    let got = [
        g.get(&q.xa).as_vec(),
        g.get(&q.wa).as_vec(),
        g.get(&q.ba).as_vec(),
        g.get(&q.xb).as_vec(),
        g.get(&q.wb).as_vec(),
        g.get(&q.bb).as_vec(),
        g.get(&q.xc).as_vec(),
        g.get(&q.wc).as_vec(),
        g.get(&q.bc).as_vec(),
        g.get(&q.wd).as_vec(),
        g.get(&q.bd).as_vec(),
    ];
    for (i, got) in got.iter().enumerate() {
        let numeric = numeric_grad(&p[i], EPS, |v| {
            let mut p = p.clone();
            p[i] = v.to_vec();
            let q = params(&dev, &p);
            dot(
                &module(&q, q.xa.clone(), q.xb.clone(), q.xc.clone()).as_vec(),
                &r,
            )
        });
        assert_close(
            &format!("conv2d_concat4 d/dtensor{i}"),
            got,
            &numeric,
            GRAD_TOL,
        );
    }
}

/// The direct conv against `gemm` and against a plain chain of `mul_add`s
/// in im2col's row order, bit for bit, on every conv of the three networks
/// (forward, and the transposed conv of each input gradient that takes
/// that path) and on odd shapes: channel blocks of every width, a last
/// block of positions cut short, output into a slice of the channels,
/// accumulation. `gemm` runs one chain per output for patches of up to 512
/// taps; the direct conv's outputs are only right if they are its bits.
#[test]
fn direct_conv_has_gemms_bits() {
    use super::conv::{forward_run, forward_run_gemm, Channels};
    use super::im2col::Geometry;
    let direct = super::direct::supported(&Geometry::new(1, 8, 8, 1, 1, 0));
    if !direct {
        eprintln!("no AVX2 and FMA here: only the im2col path runs");
    }
    let mut direct_shapes = 0;
    // (ci, side, co, k, p, samples)
    let mut shapes = vec![
        (1, 28, 10, 5, 0, 3),
        (10, 12, 48, 1, 0, 3),
        (16, 12, 24, 5, 2, 2),
        (16, 12, 24, 3, 1, 2),
        (24, 12, 24, 3, 1, 2),
        (10, 12, 24, 1, 0, 2),
        (20, 4, 48, 1, 0, 5),
        (16, 4, 24, 5, 2, 5),
        (20, 8, 88, 5, 4, 1),
        (1, 28, 1, 3, 1, 3),
        (1, 28, 10, 3, 1, 3),
        (10, 14, 10, 3, 1, 3),
        (10, 14, 20, 3, 1, 3),
        (16, 12, 16, 3, 1, 2),
        (32, 4, 32, 3, 1, 4),
        (1, 28, 16, 5, 0, 2),
        (16, 12, 32, 5, 0, 2),
        // Odd ones: a 2x2 kernel, wide padding, 512 taps.
        (3, 7, 7, 2, 1, 3),
        (2, 5, 13, 3, 2, 3),
        (8, 9, 11, 8, 3, 2),
    ];
    // Each conv's transposed conv, which the input gradient may run.
    let transposed: Vec<_> = shapes
        .iter()
        .map(|&(ci, side, co, k, p, n)| (co, side + 2 * p + 1 - k, ci, k, k - 1 - p, n))
        .collect();
    shapes.extend(transposed);
    for (ci, side, co, k, p, n) in shapes {
        let g = Geometry::new(ci, side, side, co, k, p);
        direct_shapes += usize::from(super::direct::supported(&g));
        let name = format!("{ci}->{co} k{k} p{p} {side}x{side}, {n} samples");
        let xs = random(n * g.in_len(), 31);
        let ws = random(co * g.patch(), 32);
        let bs = random(co, 33);
        let mut chain = vec![0.0f32; n * g.out_len()];
        for (s, out) in chain.chunks_exact_mut(g.out_len()).enumerate() {
            for (i, out) in out.iter_mut().enumerate() {
                let (o, oy, ox) = (i / g.pixels(), i / g.wo % g.ho, i % g.wo);
                let mut acc = 0.0f32;
                for c in 0..ci {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = ((oy + ky).wrapping_sub(p), (ox + kx).wrapping_sub(p));
                            let x = if iy < side && ix < side {
                                xs[s * g.in_len() + (c * side + iy) * side + ix]
                            } else {
                                0.0
                            };
                            acc = ws[o * g.patch() + (c * k + ky) * k + kx].mul_add(x, acc);
                        }
                    }
                }
                *out = acc + bs[o];
            }
        }
        // Into channels 2.. of 3 + co, then added onto that.
        let ch = Channels {
            first: 2,
            total: co + 3,
        };
        let run = |f: &dyn Fn(&mut [f32], bool)| {
            let mut out = random(n * ch.total * g.pixels(), 34);
            f(&mut out, false);
            let once = out.clone();
            f(&mut out, true);
            (once, out)
        };
        let gemm = run(&|out, acc| forward_run_gemm(&g, &xs, &ws, Some(&bs), out, ch, acc));
        let ours = run(&|out, acc| forward_run(&g, &xs, &ws, Some(&bs), out, ch, acc));
        let slice = |v: &[f32]| -> Vec<f32> {
            v.chunks_exact(ch.total * g.pixels())
                .flat_map(|s| s[ch.first * g.pixels()..][..g.out_len()].to_vec())
                .collect()
        };
        let twice: Vec<f32> = chain.iter().map(|v| v + v).collect();
        if g.patch() <= 512 {
            assert_eq!(
                bits(&slice(&gemm.0)),
                bits(&chain),
                "{name}: gemm is one chain"
            );
            assert_eq!(bits(&slice(&gemm.1)), bits(&twice), "{name}: gemm, added");
        }
        assert_eq!(bits(&ours.0), bits(&gemm.0), "{name}: forward_run");
        assert_eq!(bits(&ours.1), bits(&gemm.1), "{name}: forward_run, added");
    }
    if direct {
        println!("{direct_shapes} shapes ran the direct conv");
        assert!(
            direct_shapes >= 20,
            "only {direct_shapes} shapes ran the direct conv"
        );
    }
}
