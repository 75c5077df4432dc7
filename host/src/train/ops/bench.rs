//! Per-layer timings at batch 128 for both networks' shapes, and whole
//! forward + backward passes built from these ops and dfdx's ReLU, add,
//! Linear and cross-entropy. Ignored by default; run with
//! `cargo test -p host --release ops::bench -- --ignored --nocapture --test-threads 1`
//! (set `RAYON_NUM_THREADS=2` to match the PyTorch measurement).

use super::tests::{random, weighted_sum};
use super::*;
use dfdx::prelude::*;
use shared::arch::{inception as inc, inception_a as m, resnet as res, CLASSES, IMAGE_SIDE as S};
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

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

fn tensor<S: ConstShape>(dev: &Cpu, seed: u64) -> Tensor<S, f32, Cpu> {
    dev.tensor_from_vec(random(S::NUMEL, seed), S::default())
}

/// Rows to run: those whose name contains `$OPS_BENCH` (all when unset).
fn selected(name: &str) -> bool {
    std::env::var("OPS_BENCH").map_or(true, |f| name.contains(&f))
}

fn conv_row<
    const CI: usize,
    const H: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
>(
    name: &str,
    first: bool,
) {
    if !selected(name) {
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
    let loss = median_ms(|| {
        let y: Tensor<Rank4<B, CO, HO, HO>, f32, Cpu> = dev.zeros();
        drop(weighted_sum(y.leaky_traced(), &r).backward())
    });
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

#[test]
#[ignore = "benchmark"]
fn per_layer_timings() {
    println!("threads: {}", rayon::current_num_threads());
    println!(
        "{:<34} {:<17} {:>7} {:>9}   (ms, batch {B})",
        "layer", "shape", "fwd", "fwd+bwd"
    );
    conv_row::<1, S, { inc::C1 }, { inc::K1 }, 0, { inc::S1 }>("inception conv1 (first)", true);
    macro_rules! incep {
        ($tag:literal, $cin:expr, $s:expr) => {
            conv_row::<{ $cin }, { $s }, { m::B1 }, 1, 0, { $s }>(
                concat!($tag, ".b1/b5_1/b3_1 1x1"),
                false,
            );
            conv_row::<{ m::B5_REDUCE }, { $s }, { m::B5 }, 5, 2, { $s }>(
                concat!($tag, ".b5_2"),
                false,
            );
            conv_row::<{ m::B3_REDUCE }, { $s }, { m::B3 }, 3, 1, { $s }>(
                concat!($tag, ".b3_2"),
                false,
            );
            conv_row::<{ m::B3 }, { $s }, { m::B3 }, 3, 1, { $s }>(concat!($tag, ".b3_3"), false);
            conv_row::<{ $cin }, { $s }, { m::BP }, 1, 0, { $s }>(concat!($tag, ".bp"), false);
        };
    }
    incep!("incep1", inc::C1, inc::P1);
    conv_row::<{ inc::INCEP_OUT }, { inc::P1 }, { inc::C2 }, { inc::K2 }, 0, { inc::S2 }>(
        "inception conv2",
        false,
    );
    incep!("incep2", inc::C2, inc::P2);
    conv_row::<1, S, 1, { res::K }, { res::PAD }, S>("resnet r1.conv1 (first)", true);
    conv_row::<1, S, { res::C1 }, { res::K }, { res::PAD }, S>("resnet r1.conv (first)", true);
    conv_row::<1, S, { res::C1 }, { res::K }, { res::PAD }, S>("resnet r1.conv2", false);
    conv_row::<{ res::C1 }, { res::P1 }, { res::C1 }, { res::K }, { res::PAD }, { res::P1 }>(
        "resnet r2.conv1",
        false,
    );
    conv_row::<{ res::C1 }, { res::P1 }, { res::C2 }, { res::K }, { res::PAD }, { res::P1 }>(
        "resnet r2.conv2 / r2.conv",
        false,
    );

    let dev = Cpu::default();
    dev.enable_cache();
    macro_rules! other {
        ($name:expr, $shape:ty, $out:ty, $f:expr) => {{
            if selected($name) {
                let x = tensor::<$shape>(&dev, 5);
                let r = random(<$out as ConstShape>::NUMEL, 6);
                let fwd = median_ms(|| drop($f(x.clone())));
                let loss = median_ms(|| {
                    let y: Tensor<$out, f32, Cpu> = dev.zeros();
                    drop(weighted_sum(y.leaky_traced(), &r).backward())
                });
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

/// InceptionNet and the seed's ResNet from these ops, dfdx's ReLU, add,
/// Linear and cross-entropy: milliseconds per training batch (forward and
/// backward, no optimiser step) and resident memory over the steps.
#[test]
#[ignore = "benchmark"]
fn network_timings() {
    let dev = Cpu::default();
    dev.enable_cache();
    println!("threads: {}", rayon::current_num_threads());
    let images = tensor::<Rank4<B, 1, S, S>>(&dev, 10);
    let labels: Tensor<Rank2<B, CLASSES>, f32, Cpu> = {
        let mut onehot = vec![0.0; B * CLASSES];
        (0..B).for_each(|i| onehot[i * CLASSES + i % CLASSES] = 1.0);
        dev.tensor_from_vec(onehot, Default::default())
    };

    // InceptionNet.
    struct Conv<const CI: usize, const CO: usize, const K: usize> {
        w: Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
        b: Tensor<Rank1<CO>, f32, Cpu>,
    }
    fn conv<const CI: usize, const CO: usize, const K: usize>(
        dev: &Cpu,
        seed: u64,
    ) -> Conv<CI, CO, K> {
        let scale = 1.0 / ((CI * K * K) as f32).sqrt();
        let w = dev.tensor_from_vec(
            random(CO * CI * K * K, seed)
                .iter()
                .map(|v| v * scale)
                .collect(),
            Default::default(),
        );
        Conv {
            w,
            b: tensor(dev, seed + 1),
        }
    }
    struct Incep<const CI: usize> {
        b1: Conv<CI, { m::B1 }, 1>,
        b5_1: Conv<CI, { m::B5_REDUCE }, 1>,
        b5_2: Conv<{ m::B5_REDUCE }, { m::B5 }, 5>,
        b3_1: Conv<CI, { m::B3_REDUCE }, 1>,
        b3_2: Conv<{ m::B3_REDUCE }, { m::B3 }, 3>,
        b3_3: Conv<{ m::B3 }, { m::B3 }, 3>,
        bp: Conv<CI, { m::BP }, 1>,
    }
    fn incep<const CI: usize>(dev: &Cpu, s: u64) -> Incep<CI> {
        Incep {
            b1: conv(dev, s),
            b5_1: conv(dev, s + 2),
            b5_2: conv(dev, s + 4),
            b3_1: conv(dev, s + 6),
            b3_2: conv(dev, s + 8),
            b3_3: conv(dev, s + 10),
            bp: conv(dev, s + 12),
        }
    }
    fn incep_fwd<const CI: usize, const SD: usize>(
        p: &Incep<CI>,
        x: Tensor<Rank4<B, CI, SD, SD>, f32, Cpu, OwnedTape<f32, Cpu>>,
    ) -> Tensor<Rank4<B, { m::OUT }, SD, SD>, f32, Cpu, OwnedTape<f32, Cpu>> {
        type Tp = OwnedTape<f32, Cpu>;
        let a = conv2d::<B, CI, SD, SD, { m::B1 }, 1, 0, SD, SD, _>(
            x.retaped::<Tp>(),
            &p.b1.w,
            &p.b1.b,
        );
        let b5 = conv2d::<B, CI, SD, SD, { m::B5_REDUCE }, 1, 0, SD, SD, _>(
            x.retaped::<Tp>(),
            &p.b5_1.w,
            &p.b5_1.b,
        );
        let b5 = conv2d::<B, { m::B5_REDUCE }, SD, SD, { m::B5 }, 5, 2, SD, SD, _>(
            b5, &p.b5_2.w, &p.b5_2.b,
        );
        let b3 = conv2d::<B, CI, SD, SD, { m::B3_REDUCE }, 1, 0, SD, SD, _>(
            x.retaped::<Tp>(),
            &p.b3_1.w,
            &p.b3_1.b,
        );
        let b3 = conv2d::<B, { m::B3_REDUCE }, SD, SD, { m::B3 }, 3, 1, SD, SD, _>(
            b3, &p.b3_2.w, &p.b3_2.b,
        );
        let b3 =
            conv2d::<B, { m::B3 }, SD, SD, { m::B3 }, 3, 1, SD, SD, _>(b3, &p.b3_3.w, &p.b3_3.b);
        let bp =
            conv2d::<B, CI, SD, SD, { m::BP }, 1, 0, SD, SD, _>(avgpool3x3(x), &p.bp.w, &p.bp.b);
        concat4(a, b5, b3, bp)
    }
    let conv1: Conv<1, { inc::C1 }, { inc::K1 }> = conv(&dev, 100);
    let incep1: Incep<{ inc::C1 }> = incep(&dev, 200);
    let conv2: Conv<{ inc::INCEP_OUT }, { inc::C2 }, { inc::K2 }> = conv(&dev, 300);
    let incep2: Incep<{ inc::C2 }> = incep(&dev, 400);
    let fc = dev.build_module::<dfdx::nn::builders::Linear<{ inc::FLAT }, CLASSES>, f32>();
    let mut rss = Vec::new();
    let inception_step = || {
        let x = images.leaky_trace();
        let x = conv2d_first::<B, 1, S, S, { inc::C1 }, { inc::K1 }, 0, { inc::S1 }, { inc::S1 }, _>(
            x, &conv1.w, &conv1.b,
        );
        let x: Tensor<Rank4<B, { inc::C1 }, { inc::P1 }, { inc::P1 }>, _, _, _> = maxpool2d(x);
        let x = incep_fwd(&incep1, x.relu());
        let x = conv2d::<
            B,
            { inc::INCEP_OUT },
            { inc::P1 },
            { inc::P1 },
            { inc::C2 },
            { inc::K2 },
            0,
            { inc::S2 },
            { inc::S2 },
            _,
        >(x, &conv2.w, &conv2.b);
        let x: Tensor<Rank4<B, { inc::C2 }, { inc::P2 }, { inc::P2 }>, _, _, _> = maxpool2d(x);
        let x = incep_fwd(&incep2, x.relu());
        let logits = fc.forward(flatten::<
            B,
            { inc::INCEP_OUT },
            { inc::P2 },
            { inc::P2 },
            { inc::FLAT },
            _,
        >(x));
        drop(cross_entropy_with_logits_loss(logits, labels.clone()).backward());
    };
    let step = inception_step;
    let ms = if !selected("inception") {
        0.0
    } else {
        median_ms(|| {
            step();
            rss.push(rss_mib());
        })
    };
    println!("InceptionNet: {ms:.1} ms per batch (PyTorch: 28 s / 469 batches = 59.7 ms); RSS MiB over steps: {:.0?}", rss);

    // The seed's ResNet.
    struct Block<const CI: usize, const CO: usize> {
        conv1: Conv<CI, CI, { res::K }>,
        conv2: Conv<CI, CO, { res::K }>,
        conv: Conv<CI, CO, { res::K }>,
    }
    fn block<const CI: usize, const CO: usize>(dev: &Cpu, s: u64) -> Block<CI, CO> {
        Block {
            conv1: conv(dev, s),
            conv2: conv(dev, s + 2),
            conv: conv(dev, s + 4),
        }
    }
    const K: usize = res::K;
    const P: usize = res::PAD;
    let r1: Block<1, { res::C1 }> = block(&dev, 500);
    let r2: Block<{ res::C1 }, { res::C2 }> = block(&dev, 600);
    let fc2 = dev.build_module::<dfdx::nn::builders::Linear<{ res::FLAT }, CLASSES>, f32>();
    type Tp = OwnedTape<f32, Cpu>;
    let mut rss = Vec::new();
    let step = || {
        let x = images.leaky_trace();
        let y = conv2d_first::<B, 1, S, S, 1, K, P, S, S, _>(
            x.retaped::<Tp>(),
            &r1.conv1.w,
            &r1.conv1.b,
        )
        .relu();
        let y = conv2d::<B, 1, S, S, { res::C1 }, K, P, S, S, _>(y, &r1.conv2.w, &r1.conv2.b);
        let s = conv2d_first::<B, 1, S, S, { res::C1 }, K, P, S, S, _>(x, &r1.conv.w, &r1.conv.b);
        let x = (s + y).relu();
        let x: Tensor<Rank4<B, { res::C1 }, { res::P1 }, { res::P1 }>, _, _, _> = maxpool2d(x);
        let x = x.relu();
        const S1: usize = res::P1;
        let y = conv2d::<B, { res::C1 }, S1, S1, { res::C1 }, K, P, S1, S1, _>(
            x.retaped::<Tp>(),
            &r2.conv1.w,
            &r2.conv1.b,
        )
        .relu();
        let y = conv2d::<B, { res::C1 }, S1, S1, { res::C2 }, K, P, S1, S1, _>(
            y,
            &r2.conv2.w,
            &r2.conv2.b,
        );
        let s = conv2d::<B, { res::C1 }, S1, S1, { res::C2 }, K, P, S1, S1, _>(
            x, &r2.conv.w, &r2.conv.b,
        );
        let x = (s + y).relu();
        let x: Tensor<Rank4<B, { res::C2 }, { res::P2 }, { res::P2 }>, _, _, _> = maxpool2d(x);
        let logits = fc2.forward(flatten::<
            B,
            { res::C2 },
            { res::P2 },
            { res::P2 },
            { res::FLAT },
            _,
        >(x.relu()));
        drop(cross_entropy_with_logits_loss(logits, labels.clone()).backward());
    };
    let ms = median_ms(|| {
        step();
        rss.push(rss_mib());
    });
    println!("ResNet: {ms:.1} ms per batch (PyTorch: 12 s / 469 batches = 25.6 ms); RSS MiB over steps: {:.0?}", rss);
}

/// Each conv layer's kernels on raw slices at batch 128: forward, weight
/// gradient alone, and the whole backward pass by each input-gradient
/// path (transposed conv, col2im), interleaved and reported as the
/// fastest of `REPS` runs, which a shared machine's noise disturbs least.
#[test]
#[ignore = "benchmark"]
fn conv_kernel_timings() {
    use super::conv::{backward_via, forward};
    use super::im2col::Geometry;
    println!("threads: {}", rayon::current_num_threads());
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
            "resnet r1.conv2",
            Geometry::new(1, S, S, res::C1, res::K, res::PAD),
        ),
        (
            "resnet r2.conv1",
            Geometry::new(res::C1, res::P1, res::P1, res::C1, res::K, res::PAD),
        ),
        (
            "resnet r2.conv2",
            Geometry::new(res::C1, res::P1, res::P1, res::C2, res::K, res::PAD),
        ),
        (
            "resnet r1.conv (first)",
            Geometry::new(1, S, S, res::C1, res::K, res::PAD),
        ),
    ];
    for (name, g) in layers {
        if !selected(name) {
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
