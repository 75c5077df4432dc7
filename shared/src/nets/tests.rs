//! Forward pass tests: the planned int8 passes against a plain composition
//! of the reference kernels, the plans themselves, and the f32 passes
//! against a naive f64 implementation.

use super::*;
use crate::arch::{inception as inc, inception_a as ia, resnet as res, IMAGE_PIXELS, IMAGE_SIDE};
use crate::kernels::testutil::Rng;
use crate::kernels::{
    add_requant_s8_ref, argmax_s8_ref, avgpool3x3_s8_ref, conv2d_s8_ref, linear_s8_ref,
    maxpool2d_s8_ref, ActRange, AddS8, ChannelOffset, Conv2dS8, LinearS8, OutputQuant, Tensor,
};
use crate::model::{InceptionModel, ModelSpec, NetId, ResNetModel};
use crate::quant::Requant;
use std::boxed::Box;
use std::vec::Vec;

// ---------------------------------------------------------------------------
// The reference int8 path: every tensor in its own heap buffer, parameters
// taken from the owned ModelSpec by name (not from the decoded model), input
// zero points wired by hand from the GUIDE's network definitions, the
// concat done by copying channels, only `*_ref` kernels.

/// A conv's parameters, owned.
struct ConvP<const CI: usize, const K: usize, const PAD: usize, const CO: usize> {
    weights: Box<[[[[i8; CI]; K]; K]; CO]>,
    bias: [i32; CO],
    requant: [Requant; CO],
    in_zp: i8,
    output: OutputQuant,
}

fn conv_p<const CI: usize, const K: usize, const PAD: usize, const CO: usize>(
    spec: &ModelSpec,
    name: &str,
    in_zp: i8,
) -> ConvP<CI, K, PAD, CO> {
    let l = spec.layer(name).unwrap();
    let mut weights = Box::new([[[[0i8; CI]; K]; K]; CO]);
    weights
        .as_flattened_mut()
        .as_flattened_mut()
        .as_flattened_mut()
        .copy_from_slice(&l.weights);
    ConvP {
        weights,
        bias: l.bias.clone().try_into().unwrap(),
        requant: l.requant.clone().try_into().unwrap(),
        in_zp,
        output: l.output,
    }
}

impl<const CI: usize, const K: usize, const PAD: usize, const CO: usize> ConvP<CI, K, PAD, CO> {
    fn run<const H: usize, const W: usize, const HO: usize, const WO: usize>(
        &self,
        x: &Tensor<H, W, CI>,
    ) -> Box<Tensor<HO, WO, CO>> {
        let layer = Conv2dS8::<CI, K, PAD, CO> {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
            input_zero_point: self.in_zp,
            output: self.output,
        };
        let mut out = Box::new([[[0i8; CO]; WO]; HO]);
        conv2d_s8_ref(&layer, x, &mut out, ChannelOffset::<0>);
        out
    }

    fn out_zp(&self) -> i8 {
        self.output.zero_point
    }
}

fn maxpool_relu<
    const H: usize,
    const W: usize,
    const C: usize,
    const HO: usize,
    const WO: usize,
>(
    zp: i8,
    x: &Tensor<H, W, C>,
) -> Box<Tensor<HO, WO, C>> {
    let mut out = Box::new([[[0i8; C]; WO]; HO]);
    maxpool2d_s8_ref(ActRange::relu(zp), x, &mut out);
    out
}

fn linear<const H: usize, const W: usize, const C: usize>(
    spec: &ModelSpec,
    in_zp: i8,
    x: &Tensor<H, W, C>,
) -> [i8; CLASSES] {
    let l = spec.layer("fc").unwrap();
    let mut weights = Box::new([[[[0i8; C]; W]; H]; CLASSES]);
    weights
        .as_flattened_mut()
        .as_flattened_mut()
        .as_flattened_mut()
        .copy_from_slice(&l.weights);
    let bias: [i32; CLASSES] = l.bias.clone().try_into().unwrap();
    let requant: [Requant; CLASSES] = l.requant.clone().try_into().unwrap();
    let layer = LinearS8 {
        weights: &weights,
        bias: &bias,
        requant: &requant,
        input_zero_point: in_zp,
        output: l.output,
    };
    let mut out = [0i8; CLASSES];
    linear_s8_ref(&layer, x, &mut out);
    out
}

fn input(spec: &ModelSpec, pixels: &[u8; IMAGE_PIXELS]) -> Box<Tensor<IMAGE_SIDE, IMAGE_SIDE, 1>> {
    let mut x = Box::new([[[0i8; 1]; IMAGE_SIDE]; IMAGE_SIDE]);
    for (i, &p) in pixels.iter().enumerate() {
        x[i / IMAGE_SIDE][i % IMAGE_SIDE][0] = spec.input.lut[p as usize];
    }
    x
}

/// InceptionA by the book: four branches on the same input, concatenated
/// b1, b5, b3, bp by copying channels.
fn inception_a_ref<const CIN: usize, const S: usize>(
    spec: &ModelSpec,
    prefix: &str,
    in_zp: i8,
    x: &Tensor<S, S, CIN>,
) -> (Box<Tensor<S, S, { ia::OUT }>>, i8) {
    let n = |b: &str| format!("{prefix}.{b}");
    let b1: ConvP<CIN, 1, 0, { ia::B1 }> = conv_p(spec, &n("b1"), in_zp);
    let y1: Box<Tensor<S, S, { ia::B1 }>> = b1.run(x);
    let b5_1: ConvP<CIN, 1, 0, { ia::B5_REDUCE }> = conv_p(spec, &n("b5_1"), in_zp);
    let t5: Box<Tensor<S, S, { ia::B5_REDUCE }>> = b5_1.run(x);
    let b5_2: ConvP<{ ia::B5_REDUCE }, 5, 2, { ia::B5 }> = conv_p(spec, &n("b5_2"), b5_1.out_zp());
    let y5: Box<Tensor<S, S, { ia::B5 }>> = b5_2.run(&t5);
    let b3_1: ConvP<CIN, 1, 0, { ia::B3_REDUCE }> = conv_p(spec, &n("b3_1"), in_zp);
    let t3: Box<Tensor<S, S, { ia::B3_REDUCE }>> = b3_1.run(x);
    let b3_2: ConvP<{ ia::B3_REDUCE }, 3, 1, { ia::B3 }> = conv_p(spec, &n("b3_2"), b3_1.out_zp());
    let u3: Box<Tensor<S, S, { ia::B3 }>> = b3_2.run(&t3);
    let b3_3: ConvP<{ ia::B3 }, 3, 1, { ia::B3 }> = conv_p(spec, &n("b3_3"), b3_2.out_zp());
    let y3: Box<Tensor<S, S, { ia::B3 }>> = b3_3.run(&u3);
    let mut ap = Box::new([[[0i8; CIN]; S]; S]);
    avgpool3x3_s8_ref(in_zp, x, &mut ap);
    let bp: ConvP<CIN, 1, 0, { ia::BP }> = conv_p(spec, &n("bp"), in_zp);
    let yp: Box<Tensor<S, S, { ia::BP }>> = bp.run(&ap);
    let mut out = Box::new([[[0i8; ia::OUT]; S]; S]);
    for y in 0..S {
        for x_ in 0..S {
            let px: Vec<i8> = [
                &y1[y][x_][..],
                &y5[y][x_][..],
                &y3[y][x_][..],
                &yp[y][x_][..],
            ]
            .concat();
            out[y][x_].copy_from_slice(&px);
        }
    }
    (out, b1.out_zp())
}

fn inception_ref(spec: &ModelSpec, pixels: &[u8; IMAGE_PIXELS]) -> [i8; CLASSES] {
    let x = input(spec, pixels);
    let conv1: ConvP<1, { inc::K1 }, 0, { inc::C1 }> = conv_p(spec, "conv1", spec.input.zero_point);
    let y: Box<Tensor<{ inc::S1 }, { inc::S1 }, { inc::C1 }>> = conv1.run(&x);
    let p: Box<Tensor<{ inc::P1 }, { inc::P1 }, { inc::C1 }>> = maxpool_relu(conv1.out_zp(), &y);
    let (q, zp) = inception_a_ref::<{ inc::C1 }, { inc::P1 }>(spec, "incep1", conv1.out_zp(), &p);
    let conv2: ConvP<{ inc::INCEP_OUT }, { inc::K2 }, 0, { inc::C2 }> = conv_p(spec, "conv2", zp);
    let y: Box<Tensor<{ inc::S2 }, { inc::S2 }, { inc::C2 }>> = conv2.run(&q);
    let p: Box<Tensor<{ inc::P2 }, { inc::P2 }, { inc::C2 }>> = maxpool_relu(conv2.out_zp(), &y);
    let (q, zp) = inception_a_ref::<{ inc::C2 }, { inc::P2 }>(spec, "incep2", conv2.out_zp(), &p);
    linear(spec, zp, &q)
}

fn block_ref<const CIN: usize, const COUT: usize, const S: usize>(
    spec: &ModelSpec,
    prefix: &str,
    in_zp: i8,
    x: &Tensor<S, S, CIN>,
) -> (Box<Tensor<S, S, COUT>>, i8) {
    let n = |b: &str| format!("{prefix}.{b}");
    let conv1: ConvP<CIN, { res::K }, { res::PAD }, CIN> = conv_p(spec, &n("conv1"), in_zp);
    let y1: Box<Tensor<S, S, CIN>> = conv1.run(x);
    let conv2: ConvP<CIN, { res::K }, { res::PAD }, COUT> =
        conv_p(spec, &n("conv2"), conv1.out_zp());
    let y2: Box<Tensor<S, S, COUT>> = conv2.run(&y1);
    let conv: ConvP<CIN, { res::K }, { res::PAD }, COUT> = conv_p(spec, &n("conv"), in_zp);
    let s: Box<Tensor<S, S, COUT>> = conv.run(x);
    let add = spec.layer(&n("add")).unwrap();
    let p = AddS8 {
        a_zero_point: conv2.out_zp(),
        a: add.requant[0],
        b_zero_point: conv.out_zp(),
        b: add.requant[1],
        out: add.requant[2],
        output: add.output,
    };
    let mut out = Box::new([[[0i8; COUT]; S]; S]);
    add_requant_s8_ref(&p, &y2, &s, &mut out);
    (out, add.output.zero_point)
}

fn resnet_ref(spec: &ModelSpec, pixels: &[u8; IMAGE_PIXELS]) -> [i8; CLASSES] {
    let x = input(spec, pixels);
    let (y, zp) = block_ref::<1, { res::C1 }, IMAGE_SIDE>(spec, "r1", spec.input.zero_point, &x);
    let p: Box<Tensor<{ res::P1 }, { res::P1 }, { res::C1 }>> = maxpool_relu(zp, &y);
    let (y, zp) = block_ref::<{ res::C1 }, { res::C2 }, { res::P1 }>(spec, "r2", zp, &p);
    let p: Box<Tensor<{ res::P2 }, { res::P2 }, { res::C2 }>> = maxpool_relu(zp, &y);
    linear(spec, zp, &p)
}

// ---------------------------------------------------------------------------

/// Images with some structure: a few bright strokes on black, sometimes
/// uniform noise.
fn random_image(rng: &mut Rng) -> [u8; IMAGE_PIXELS] {
    let mut px = [0u8; IMAGE_PIXELS];
    if rng.below(4) == 0 {
        for p in &mut px {
            *p = rng.next_u32() as u8;
        }
        return px;
    }
    for _ in 0..3 + rng.below(4) {
        let (mut y, mut x) = (4 + rng.below(20) as i32, 4 + rng.below(20) as i32);
        let (dy, dx) = (rng.range_i32(-1, 1), rng.range_i32(-1, 1));
        for _ in 0..8 {
            for (oy, ox) in [(0, 0), (0, 1), (1, 0)] {
                let (yy, xx) = (y + oy, x + ox);
                if (0..28).contains(&yy) && (0..28).contains(&xx) {
                    px[(yy * 28 + xx) as usize] = 200 + rng.below(56) as u8;
                }
            }
            y += dy;
            x += dx;
        }
    }
    px
}

struct Recorder(Vec<&'static str>);

impl Probe for Recorder {
    fn layer(&mut self, name: &'static str) {
        self.0.push(name);
    }
}

fn plan_names(plan: &Plan) -> Vec<&'static str> {
    plan.steps.iter().map(|s| s.name).collect()
}

/// The planned forward pass equals the reference composition, whatever the
/// arena held before; and the test has teeth (logits vary and are mostly
/// not saturated).
fn forward_equals_reference(net: NetId) {
    let mut rng = Rng::new(net as u64 + 100);
    let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
    let (mut distinct, mut saturated, mut total) = (std::collections::HashSet::new(), 0, 0);
    for seed in 0..4 {
        let spec = ModelSpec::synthetic(net, seed);
        let bytes = spec.encode().unwrap();
        for _ in 0..4 {
            let pixels = random_image(&mut rng);
            // Garbage in the arena: nothing may depend on it.
            for b in arena.bytes_mut().iter_mut() {
                *b = rng.next_u32() as u8;
            }
            let mut probe = Recorder(Vec::new());
            let (pred, want, names) = match net {
                NetId::Inception => {
                    let m = InceptionModel::decode(&bytes).unwrap();
                    let p = inception::classify(&m, &pixels, &mut *arena, &mut probe);
                    (
                        p,
                        inception_ref(&spec, &pixels),
                        plan_names(&inception::PLAN),
                    )
                }
                NetId::ResNet => {
                    let m = ResNetModel::decode(&bytes).unwrap();
                    let p = resnet::classify(&m, &pixels, &mut *arena, &mut probe);
                    (p, resnet_ref(&spec, &pixels), plan_names(&resnet::PLAN))
                }
            };
            assert_eq!(pred.logits, want, "{net:?} seed {seed}");
            assert_eq!(pred.class as usize, argmax_s8_ref(&want));
            assert_eq!(probe.0, names);
            distinct.insert(want);
            saturated += want.iter().filter(|&&v| v == 127 || v == -128).count();
            total += want.len();
        }
    }
    assert!(distinct.len() >= 14, "{net:?}: {} distinct", distinct.len());
    assert!(
        saturated * 4 < total,
        "{net:?}: {saturated} of {total} saturated"
    );
}

#[test]
fn inception_forward_equals_the_reference_composition() {
    forward_equals_reference(NetId::Inception);
}

#[test]
fn resnet_forward_equals_the_reference_composition() {
    forward_equals_reference(NetId::ResNet);
}

#[test]
fn a_model_of_zeros_predicts_class_zero() {
    // Template: every requant is zero, so every logit is the fc zero point.
    let bytes = ModelSpec::template(NetId::ResNet).encode().unwrap();
    let m = ResNetModel::decode(&bytes).unwrap();
    let mut arena = Arena::<RESNET_ARENA_BYTES>::new();
    let p = resnet::classify(&m, &[255; IMAGE_PIXELS], &mut arena, &mut ());
    assert_eq!(
        p,
        Prediction {
            class: 0,
            logits: [0; CLASSES]
        }
    );
}

#[test]
fn plans_are_valid_and_small() {
    assert_eq!(inception::PLAN.verify(), Ok(()));
    assert_eq!(resnet::PLAN.verify(), Ok(()));
    // Hand-derived from the plans' doc comments. InceptionNet peaks in
    // incep1.b5_2: concat, module input, both reducer outputs, the 5x5's
    // im2col (100 steps of 48 bytes). ResNet in block r1: image, conv1's
    // output, shortcut, r2's scratch (23 steps), the add's tables, pool out.
    assert_eq!(INCEPTION_ARENA_BYTES, 12_672 + 1_440 + 2 * 2_304 + 100 * 48);
    assert_eq!(RESNET_ARENA_BYTES, 784 + 784 + 7_840 + 23 * 48 + 2 * 1024 + 1_960);
    const { assert!(INCEPTION_ARENA_BYTES <= 24 * 1024) };
    // Every step name is unique and every conv/linear/add layer of the
    // model is computed by exactly one step.
    for (net, plan) in [
        (NetId::Inception, inception::PLAN),
        (NetId::ResNet, resnet::PLAN),
    ] {
        let names = plan_names(&plan);
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "{n}");
        }
        let covered: Vec<&str> = plan.steps.iter().flat_map(|s| s.layers.iter().copied()).collect();
        let mut layers: Vec<&str> = crate::model::layers(net).iter().map(|l| l.name).collect();
        let mut sorted = covered.clone();
        sorted.sort();
        layers.sort();
        assert_eq!(sorted, layers, "{net:?}");
    }
}

#[test]
fn a_clobbering_plan_is_refused() {
    let a = Region {
        name: "a",
        offset: 0,
        len: 10,
    };
    let b = Region {
        name: "b",
        offset: 10,
        len: 10,
    };
    let c = Region {
        name: "c",
        offset: 5,
        len: 10,
    };
    fn st(name: &'static str, reads: &'static [Region], writes: Region) -> Step {
        super::step(name, &[], reads, Vec::leak(vec![writes]))
    }
    let reads_a: &'static [Region] = Vec::leak(vec![a]);
    let reads_b: &'static [Region] = Vec::leak(vec![b]);
    let ok = Plan {
        steps: Vec::leak(vec![
            st("0", &[], a),
            st("1", reads_a, b),
            st("2", reads_b, a),
        ]),
    };
    assert_eq!(ok.verify(), Ok(()));
    assert_eq!(ok.arena_bytes(), 20);
    // c overlaps a, which step 2 still reads.
    let bad = Plan {
        steps: Vec::leak(vec![st("0", &[], a), st("1", &[], c), st("2", reads_a, b)]),
    };
    assert_eq!(
        bad.verify(),
        Err(PlanViolation::Clobbered {
            writer: 1,
            reader: 2,
            buffer: "a"
        })
    );
    // A step whose output overlaps its input.
    let bad = Plan {
        steps: Vec::leak(vec![st("0", &[], a), st("1", reads_a, c)]),
    };
    assert!(matches!(
        bad.verify(),
        Err(PlanViolation::Clobbered { writer: 1, .. })
    ));
    let bad = Plan {
        steps: Vec::leak(vec![st("0", reads_b, a)]),
    };
    assert_eq!(
        bad.verify(),
        Err(PlanViolation::ReadBeforeWrite {
            step: 0,
            buffer: "b"
        })
    );
}

// ---------------------------------------------------------------------------
// f32: the networks written out naively in f64, from the GUIDE's
// definitions, on PyTorch layouts.

/// Conv, OIHW weights, CHW activations, zero padding, in f64.
#[allow(clippy::too_many_arguments)]
fn conv_naive(
    x: &[f64],
    ci: usize,
    s: usize,
    w: &[f32],
    b: &[f32],
    co: usize,
    k: usize,
    pad: usize,
) -> (Vec<f64>, usize) {
    let so = s + 2 * pad + 1 - k;
    let mut out = vec![0f64; co * so * so];
    for o in 0..co {
        for oy in 0..so {
            for ox in 0..so {
                let mut acc = b[o] as f64;
                for i in 0..ci {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = oy as isize + ky as isize - pad as isize;
                            let ix = ox as isize + kx as isize - pad as isize;
                            if iy < 0 || ix < 0 || iy >= s as isize || ix >= s as isize {
                                continue;
                            }
                            let wv = w[((o * ci + i) * k + ky) * k + kx] as f64;
                            acc += wv * x[(i * s + iy as usize) * s + ix as usize];
                        }
                    }
                }
                out[(o * so + oy) * so + ox] = acc;
            }
        }
    }
    (out, so)
}

fn pool_relu_naive(x: &[f64], c: usize, s: usize) -> Vec<f64> {
    let so = s / 2;
    let mut out = vec![0f64; c * so * so];
    for ch in 0..c {
        for y in 0..so {
            for x_ in 0..so {
                let mut m = f64::NEG_INFINITY;
                for dy in 0..2 {
                    for dx in 0..2 {
                        m = m.max(x[(ch * s + 2 * y + dy) * s + 2 * x_ + dx]);
                    }
                }
                out[(ch * so + y) * so + x_] = m.max(0.0);
            }
        }
    }
    out
}

fn avgpool_naive(x: &[f64], c: usize, s: usize) -> Vec<f64> {
    let mut out = vec![0f64; c * s * s];
    for ch in 0..c {
        for y in 0..s as isize {
            for x_ in 0..s as isize {
                let mut sum = 0.0;
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (iy, ix) = (y + dy, x_ + dx);
                        if iy >= 0 && ix >= 0 && iy < s as isize && ix < s as isize {
                            sum += x[(ch * s + iy as usize) * s + ix as usize];
                        }
                    }
                }
                out[(ch * s + y as usize) * s + x_ as usize] = sum / 9.0;
            }
        }
    }
    out
}

fn fc_naive(x: &[f64], w: &[f32], b: &[f32]) -> Vec<f64> {
    let n = x.len();
    (0..b.len())
        .map(|o| b[o] as f64 + (0..n).map(|i| w[o * n + i] as f64 * x[i]).sum::<f64>())
        .collect()
}

fn incep_naive<const CIN: usize>(m: &float::InceptionAF32<CIN>, x: &[f64], s: usize) -> Vec<f64> {
    let cin = CIN;
    let (b1, _) = conv_naive(x, cin, s, &m.b1.weight, &m.b1.bias, ia::B1, 1, 0);
    let (t, _) = conv_naive(x, cin, s, &m.b5_1.weight, &m.b5_1.bias, ia::B5_REDUCE, 1, 0);
    let (b5, _) = conv_naive(
        &t,
        ia::B5_REDUCE,
        s,
        &m.b5_2.weight,
        &m.b5_2.bias,
        ia::B5,
        5,
        2,
    );
    let (t, _) = conv_naive(x, cin, s, &m.b3_1.weight, &m.b3_1.bias, ia::B3_REDUCE, 1, 0);
    let (t, _) = conv_naive(
        &t,
        ia::B3_REDUCE,
        s,
        &m.b3_2.weight,
        &m.b3_2.bias,
        ia::B3,
        3,
        1,
    );
    let (b3, _) = conv_naive(&t, ia::B3, s, &m.b3_3.weight, &m.b3_3.bias, ia::B3, 3, 1);
    let ap = avgpool_naive(x, cin, s);
    let (bp, _) = conv_naive(&ap, cin, s, &m.bp.weight, &m.bp.bias, ia::BP, 1, 0);
    [b1, b5, b3, bp].concat()
}

fn inception_naive(net: &float::InceptionF32, x: &[f32]) -> Vec<f64> {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (y, s) = conv_naive(
        &x,
        1,
        28,
        &net.conv1.weight,
        &net.conv1.bias,
        inc::C1,
        inc::K1,
        0,
    );
    let p = pool_relu_naive(&y, inc::C1, s);
    let q = incep_naive(&net.incep1, &p, s / 2);
    let (y, s) = conv_naive(
        &q,
        ia::OUT,
        inc::P1,
        &net.conv2.weight,
        &net.conv2.bias,
        inc::C2,
        inc::K2,
        0,
    );
    let p = pool_relu_naive(&y, inc::C2, s);
    let q = incep_naive(&net.incep2, &p, s / 2);
    fc_naive(&q, &net.fc.weight, &net.fc.bias)
}

fn block_naive<const CI: usize, const CO: usize>(
    b: &float::BlockF32<CI, CO>,
    x: &[f64],
    s: usize,
) -> Vec<f64> {
    let (mut y, _) = conv_naive(x, CI, s, &b.conv1.weight, &b.conv1.bias, CI, 3, 1);
    y.iter_mut().for_each(|v| *v = v.max(0.0));
    let (y, _) = conv_naive(&y, CI, s, &b.conv2.weight, &b.conv2.bias, CO, 3, 1);
    let (sc, _) = conv_naive(x, CI, s, &b.conv.weight, &b.conv.bias, CO, 3, 1);
    y.iter().zip(&sc).map(|(a, b)| (a + b).max(0.0)).collect()
}

fn resnet_naive(net: &float::ResNetF32, x: &[f32]) -> Vec<f64> {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let y = block_naive(&net.r1, &x, 28);
    let p = pool_relu_naive(&y, res::C1, 28);
    let y = block_naive(&net.r2, &p, 14);
    let p = pool_relu_naive(&y, res::C2, 14);
    fc_naive(&p, &net.fc.weight, &net.fc.bias)
}

/// PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
fn randomise(slots: Vec<(&'static str, &mut Vec<f32>, &mut Vec<f32>)>, rng: &mut Rng) {
    for (_, w, b) in slots {
        let fan_in = w.len() / b.len();
        let bound = 1.0 / (fan_in as f64).sqrt();
        for v in w.iter_mut().chain(b.iter_mut()) {
            *v = ((rng.unit() * 2.0 - 1.0) * bound) as f32;
        }
    }
}

fn close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= 1e-5 * scale, "{got:?} vs {want:?}");
    }
}

#[test]
fn f32_inception_equals_a_naive_implementation() {
    let mut rng = Rng::new(31);
    for _ in 0..3 {
        let mut net = float::InceptionF32::default();
        randomise(net.parameters_mut(), &mut rng);
        for _ in 0..2 {
            let x = float::normalize(&random_image(&mut rng));
            let mut seen = Vec::new();
            let got = net.forward_observed(&x, &mut |n, t| seen.push((n, t.len())));
            close(&got, &inception_naive(&net, &x));
            // Every layer of the int8 plan is observed.
            for layer in inception::PLAN.steps.iter().flat_map(|s| s.layers) {
                assert!(seen.iter().any(|s| s.0 == *layer), "{layer}");
            }
        }
    }
}

#[test]
fn f32_resnet_equals_a_naive_implementation() {
    let mut rng = Rng::new(32);
    for _ in 0..3 {
        let mut net = float::ResNetF32::default();
        randomise(net.parameters_mut(), &mut rng);
        for _ in 0..2 {
            let px = random_image(&mut rng);
            let got = net.forward_pixels(&px);
            close(&got, &resnet_naive(&net, &float::normalize(&px)));
            let mut seen = Vec::new();
            net.forward_observed(&float::normalize(&px), &mut |n, _| seen.push(n));
            let layers: Vec<&str> = resnet::PLAN.steps.iter().flat_map(|s| s.layers.iter().copied()).collect();
            let observed: Vec<&str> = seen.into_iter().filter(|n| layers.contains(n)).collect();
            assert_eq!(observed, layers);
        }
    }
}

#[test]
fn f32_networks_load_named_tensors() {
    let mut rng = Rng::new(33);
    let mut net = float::ResNetF32::default();
    randomise(net.parameters_mut(), &mut rng);
    let mut named = std::collections::HashMap::new();
    for (layer, w, b) in net.clone().parameters_mut() {
        named.insert(format!("{layer}.weight"), w.clone());
        named.insert(format!("{layer}.bias"), b.clone());
    }
    assert_eq!(named.len(), 14);
    let back = float::ResNetF32::from_tensors(|k| named.get(k).cloned()).unwrap();
    assert_eq!(back, net);
    named.get_mut("r2.conv.weight").unwrap().pop();
    assert_eq!(
        float::ResNetF32::from_tensors(|k| named.get(k).cloned()),
        Err(crate::Error::FloatTensor {
            layer: "r2.conv",
            field: crate::error::Field::Weights,
            found: Some(20 * 10 * 9 - 1),
            expected: 20 * 10 * 9
        })
    );
    assert!(matches!(
        float::InceptionF32::from_tensors(|_| None),
        Err(crate::Error::FloatTensor {
            layer: "conv1",
            found: None,
            ..
        })
    ));
}
