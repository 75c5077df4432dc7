//! Per-layer timings at batch 128 on both seed networks' shapes: each
//! conv's forward and forward + backward through the tape ops, the pools,
//! ReLU and concat (`host bench --layers`), and each conv's kernels on raw
//! slices by input-gradient path (`host bench --kernels`). Run them on a
//! quiet machine and compare binaries side by side.

use super::sample::{random, weighted_sum};
use super::*;
use dfdx::prelude::*;
use shared::arch::{inception as inc, inception_a as m, resnet as res, IMAGE_SIDE as S};
use std::time::Instant;

const B: usize = 128;
const REPS: usize = 20;

/// Median milliseconds of `f` over `REPS` runs after two warm-ups.
fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..REPS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[REPS / 2]
}

fn tensor<S: ConstShape>(dev: &Cpu, seed: u64) -> Tensor<S, f32, Cpu> {
    dev.tensor_from_vec(random(S::NUMEL, seed), S::default())
}

/// Rows to run: those whose name contains `only` (all without).
fn selected(only: Option<&str>, name: &str) -> bool {
    only.is_none_or(|f| name.contains(f))
}

/// The time of the loss's own backward pass on an output of shape `S`
/// (weights `r`), which a row subtracts from its forward + backward time.
fn loss_ms<S: ConstShape>(dev: &Cpu, r: &[f32]) -> f64 {
    median_ms(|| {
        let y: Tensor<S, f32, Cpu> = dev.zeros();
        drop(weighted_sum(y.leaky_traced(), r).backward())
    })
}

fn conv_row<
    const CI: usize,
    const H: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
>(
    only: Option<&str>,
    name: &str,
    first: bool,
) {
    if !selected(only, name) {
        return;
    }
    let dev = Cpu::default();
    dev.enable_cache();
    let x = tensor::<Rank4<B, CI, H, H>>(&dev, 1);
    let w = tensor::<Rank4<CO, CI, K, K>>(&dev, 2);
    let b = tensor::<Rank1<CO>>(&dev, 3);
    let r = random(B * CO * HO * HO, 4);
    let fwd = median_ms(|| {
        drop(conv2d::<B, CI, H, H, CO, K, P, HO, HO, _>(
            x.clone(),
            &w,
            &b,
        ))
    });
    let loss = loss_ms::<Rank4<B, CO, HO, HO>>(&dev, &r);
    let both = median_ms(|| {
        let y = if first {
            conv2d_first::<B, CI, H, H, CO, K, P, HO, HO, _>(x.leaky_trace(), &w, &b)
        } else {
            conv2d::<B, CI, H, H, CO, K, P, HO, HO, _>(x.leaky_trace(), &w, &b)
        };
        drop(weighted_sum(y, &r).backward())
    });
    println!(
        "{name:<34} {CI:>3}->{CO:<3} k{K} p{P} {H:>2}x{H:<2} {fwd:>7.2} {:>9.2}",
        both - loss
    );
}

/// A seed ResNet block's merge: its last conv, the shortcut added, ReLU and
/// the 2x2 max pool, one fused op.
fn merge_row<const CI: usize, const H: usize, const CO: usize, const HP: usize>(
    only: Option<&str>,
    name: &str,
) {
    if !selected(only, name) {
        return;
    }
    let dev = Cpu::default();
    dev.enable_cache();
    let x = tensor::<Rank4<B, CI, H, H>>(&dev, 1);
    let w = tensor::<Rank4<CO, CI, { res::K }, { res::K }>>(&dev, 2);
    let b = tensor::<Rank1<CO>>(&dev, 3);
    let s = tensor::<Rank4<B, CO, H, H>>(&dev, 4);
    let r = random(B * CO * HP * HP, 5);
    macro_rules! merge {
        ($x:expr) => {
            conv2d_add_relu_maxpool::<B, CI, H, H, CO, { res::K }, { res::PAD }, H, H, HP, HP, _, _>(
                $x,
                &w,
                &b,
                s.clone(),
            )
        };
    }
    let fwd = median_ms(|| drop(merge!(x.clone())));
    let loss = loss_ms::<Rank4<B, CO, HP, HP>>(&dev, &r);
    let both = median_ms(|| drop(weighted_sum(merge!(x.leaky_trace()), &r).backward()));
    println!(
        "{name:<34} {CI:>3}->{CO:<3} k{} p{} {H:>2}x{H:<2} {fwd:>7.2} {:>9.2}",
        res::K,
        res::PAD,
        both - loss
    );
}

/// Each layer's forward and forward + backward time (ms, batch 128): the
/// rows whose name contains `only`, or all.
pub fn layers(only: Option<&str>) {
    println!(
        "{:<34} {:<17} {:>7} {:>9}   (ms, batch {B})",
        "layer", "shape", "fwd", "fwd+bwd"
    );
    conv_row::<1, S, { inc::C1 }, { inc::K1 }, 0, { inc::S1 }>(
        only,
        "inception conv1 (first)",
        true,
    );
    macro_rules! incep {
        ($tag:literal, $cin:expr, $s:expr) => {
            conv_row::<{ $cin }, { $s }, { m::B1 }, 1, 0, { $s }>(
                only,
                concat!($tag, ".b1/b5_1/b3_1 1x1"),
                false,
            );
            conv_row::<{ m::B5_REDUCE }, { $s }, { m::B5 }, 5, 2, { $s }>(
                only,
                concat!($tag, ".b5_2"),
                false,
            );
            conv_row::<{ m::B3_REDUCE }, { $s }, { m::B3 }, 3, 1, { $s }>(
                only,
                concat!($tag, ".b3_2"),
                false,
            );
            conv_row::<{ m::B3 }, { $s }, { m::B3 }, 3, 1, { $s }>(
                only,
                concat!($tag, ".b3_3"),
                false,
            );
            conv_row::<{ $cin }, { $s }, { m::BP }, 1, 0, { $s }>(
                only,
                concat!($tag, ".bp"),
                false,
            );
        };
    }
    incep!("incep1", inc::C1, inc::P1);
    conv_row::<{ inc::INCEP_OUT }, { inc::P1 }, { inc::C2 }, { inc::K2 }, 0, { inc::S2 }>(
        only,
        "inception conv2",
        false,
    );
    incep!("incep2", inc::C2, inc::P2);
    conv_row::<1, S, 1, { res::K }, { res::PAD }, S>(only, "resnet r1.conv1 (first)", true);
    conv_row::<1, S, { res::C1 }, { res::K }, { res::PAD }, S>(
        only,
        "resnet r1.conv (first)",
        true,
    );
    conv_row::<1, S, { res::C1 }, { res::K }, { res::PAD }, S>(only, "resnet r1.conv2", false);
    conv_row::<{ res::C1 }, { res::P1 }, { res::C1 }, { res::K }, { res::PAD }, { res::P1 }>(
        only,
        "resnet r2.conv1",
        false,
    );
    conv_row::<{ res::C1 }, { res::P1 }, { res::C2 }, { res::K }, { res::PAD }, { res::P1 }>(
        only,
        "resnet r2.conv2 / r2.conv",
        false,
    );
    merge_row::<1, S, { res::C1 }, { res::P1 }>(only, "resnet r1 merge: conv2+add+relu+pool");
    merge_row::<{ res::C1 }, { res::P1 }, { res::C2 }, { res::P2 }>(
        only,
        "resnet r2 merge: conv2+add+relu+pool",
    );

    let dev = Cpu::default();
    dev.enable_cache();
    macro_rules! other {
        ($name:expr, $shape:ty, $out:ty, $f:expr) => {{
            if selected(only, $name) {
                let x = tensor::<$shape>(&dev, 5);
                let r = random(<$out as ConstShape>::NUMEL, 6);
                let fwd = median_ms(|| drop($f(x.clone())));
                let loss = loss_ms::<$out>(&dev, &r);
                let both = median_ms(|| drop(weighted_sum($f(x.leaky_trace()), &r).backward()));
                println!("{:<34} {:<17} {fwd:>7.2} {:>9.2}", $name, "", both - loss);
            }
        }};
    }
    other!("maxpool 10x24x24", Rank4<B, 10, 24, 24>, Rank4<B, 10, 12, 12>, maxpool2d::<B, 10, 24, 24, 12, 12, _>);
    other!("maxpool 20x8x8", Rank4<B, 20, 8, 8>, Rank4<B, 20, 4, 4>, maxpool2d::<B, 20, 8, 8, 4, 4, _>);
    other!("maxpool 10x28x28", Rank4<B, 10, 28, 28>, Rank4<B, 10, 14, 14>, maxpool2d::<B, 10, 28, 28, 14, 14, _>);
    other!("maxpool 20x14x14", Rank4<B, 20, 14, 14>, Rank4<B, 20, 7, 7>, maxpool2d::<B, 20, 14, 14, 7, 7, _>);
    other!("avgpool3x3 10x12x12", Rank4<B, 10, 12, 12>, Rank4<B, 10, 12, 12>, avgpool3x3::<B, 10, 12, 12, _>);
    other!("avgpool3x3 20x4x4", Rank4<B, 20, 4, 4>, Rank4<B, 20, 4, 4>, avgpool3x3::<B, 20, 4, 4, _>);
    other!("relu (dfdx) 10x28x28", Rank4<B, 10, 28, 28>, Rank4<B, 10, 28, 28>, |x: Tensor<_, _, _, _>| x.relu());
    other!("concat4 ->88x12x12 (one input x4)", Rank4<B, 22, 12, 12>, Rank4<B, 88, 12, 12>, |x: Tensor<Rank4<B, 22, 12, 12>, f32, Cpu, _>| {
        let (a, b, c) = (x.retaped(), x.retaped(), x.retaped());
        concat4::<B, 22, 22, 22, 22, 88, 12, 12, _>(a, b, c, x)
    });
}

/// Each conv layer's kernels on raw slices at batch 128: forward, weight
/// gradient alone, and the whole backward pass by each input-gradient
/// path (transposed conv, col2im), interleaved and reported as the
/// fastest of `REPS` runs, which a shared machine's noise disturbs least.
///
/// The rows whose name contains `only`, or all.
pub fn kernels(only: Option<&str>) {
    use super::conv::{backward_via, forward};
    use super::im2col::Geometry;
    println!(
        "{:<24} {:>7} {:>7} {:>9} {:>9}   (min ms, batch {B})",
        "layer", "fwd", "wgrad", "bwd via T", "bwd via C"
    );
    let layers: [(&str, Geometry); 11] = [
        ("incep conv1", Geometry::new(1, S, S, inc::C1, inc::K1, 0)),
        (
            "incep1 1x1",
            Geometry::new(inc::C1, inc::P1, inc::P1, m::B1, 1, 0),
        ),
        (
            "incep1 b5_2",
            Geometry::new(m::B5_REDUCE, inc::P1, inc::P1, m::B5, 5, 2),
        ),
        (
            "incep1 b3_2",
            Geometry::new(m::B3_REDUCE, inc::P1, inc::P1, m::B3, 3, 1),
        ),
        (
            "incep1 b3_3",
            Geometry::new(m::B3, inc::P1, inc::P1, m::B3, 3, 1),
        ),
        (
            "incep conv2",
            Geometry::new(inc::INCEP_OUT, inc::P1, inc::P1, inc::C2, inc::K2, 0),
        ),
        (
            "incep2 b5_2",
            Geometry::new(m::B5_REDUCE, inc::P2, inc::P2, m::B5, 5, 2),
        ),
        (
            "resnet r1.conv1",
            Geometry::new(1, S, S, 1, res::K, res::PAD),
        ),
        (
            "resnet r1.conv2 / r1.conv",
            Geometry::new(1, S, S, res::C1, res::K, res::PAD),
        ),
        (
            "resnet r2.conv1",
            Geometry::new(res::C1, res::P1, res::P1, res::C1, res::K, res::PAD),
        ),
        (
            "resnet r2.conv2 / r2.conv",
            Geometry::new(res::C1, res::P1, res::P1, res::C2, res::K, res::PAD),
        ),
    ];
    for (name, g) in layers {
        if !selected(only, name) {
            continue;
        }
        let xs = random(B * g.in_len(), 1);
        let ws = random(g.co * g.patch(), 2);
        let bs = random(g.co, 3);
        let gout = random(B * g.out_len(), 4);
        let mut out = vec![0.0; B * g.out_len()];
        let (mut gx, mut gw, mut gb) = (vec![0.0; xs.len()], vec![0.0; ws.len()], vec![0.0; g.co]);
        let mut best = [f64::MAX; 4];
        for _ in 0..REPS {
            for (i, b) in best.iter_mut().enumerate() {
                let start = Instant::now();
                match i {
                    0 => forward(&g, &xs, &ws, Some(&bs), &mut out),
                    1 => backward_via(&g, &xs, &ws, &gout, &mut gw, &mut gb, None, false),
                    _ => backward_via(&g, &xs, &ws, &gout, &mut gw, &mut gb, Some(&mut gx), i == 3),
                }
                *b = b.min(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        println!(
            "{name:<24} {:>7.2} {:>7.2} {:>9.2} {:>9.2}",
            best[0], best[1], best[2], best[3]
        );
    }
}
