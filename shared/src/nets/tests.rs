//! Forward pass tests: the planned int8 passes against a plain composition
//! of the reference kernels written from the networks' definitions, and
//! against an interpreter of their graphs; the plans themselves; and the
//! f32 pass against a naive f64 implementation of each network.

use super::*;
use crate::arch::{
    inception as inc, inception_a as ia, resnet as res, resnet_identity as rid, IMAGE_PIXELS,
    IMAGE_SIDE,
};
use crate::graph::{NodeId, Op};
use crate::kernels::{
    add_requant_s8_ref, argmax_s8_ref, avgpool3x3_s8_ref, conv2d_s8_ref, linear_s8_ref,
    maxpool2d_s8_ref, ActRange, AddS8, ChannelOffset, Conv2dS8, LinearS8, OutputQuant, Tensor,
    ADD_LEFT_SHIFT,
};
use crate::model::{Decode, ModelSpec};
use crate::quant::{requantize_ref, Requant};
use crate::testutil::naive::{self, ConvShape};
use crate::testutil::Rng;
use std::boxed::Box;
use std::vec::Vec;

// ---------------------------------------------------------------------------
// The reference int8 path: every tensor in its own heap buffer, parameters
// taken from the owned ModelSpec by name (not from the decoded model), input
// zero points wired by hand from the networks' definitions (the PyTorch
// reference classes, as `docs/ARCHITECTURE.md` describes them), the
// concat done by copying channels, only `*_ref` kernels.

/// A conv's parameters, owned.
struct ConvP<const CI: usize, const CO: usize, const K: usize, const PAD: usize> {
    weights: Box<[[[[i8; CI]; K]; K]; CO]>,
    bias: [i32; CO],
    requant: [Requant; CO],
    in_zp: i8,
    output: OutputQuant,
}

fn conv_p<const CI: usize, const CO: usize, const K: usize, const PAD: usize>(
    spec: &ModelSpec,
    name: &str,
    in_zp: i8,
) -> ConvP<CI, CO, K, PAD> {
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

impl<const CI: usize, const CO: usize, const K: usize, const PAD: usize> ConvP<CI, CO, K, PAD> {
    fn run<const H: usize, const W: usize, const HO: usize, const WO: usize>(
        &self,
        x: &Tensor<H, W, CI>,
    ) -> Box<Tensor<HO, WO, CO>> {
        let layer = Conv2dS8::<CI, CO, K, PAD> {
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

fn maxpool<const H: usize, const W: usize, const C: usize, const HO: usize, const WO: usize>(
    range: ActRange,
    x: &Tensor<H, W, C>,
) -> Box<Tensor<HO, WO, C>> {
    let mut out = Box::new([[[0i8; C]; WO]; HO]);
    maxpool2d_s8_ref(range, x, &mut out);
    out
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
    maxpool(ActRange::relu(zp), x)
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
    let b1: ConvP<CIN, { ia::B1 }, 1, 0> = conv_p(spec, &n("b1"), in_zp);
    let y1: Box<Tensor<S, S, { ia::B1 }>> = b1.run(x);
    let b5_1: ConvP<CIN, { ia::B5_REDUCE }, 1, 0> = conv_p(spec, &n("b5_1"), in_zp);
    let t5: Box<Tensor<S, S, { ia::B5_REDUCE }>> = b5_1.run(x);
    let b5_2: ConvP<{ ia::B5_REDUCE }, { ia::B5 }, 5, 2> = conv_p(spec, &n("b5_2"), b5_1.out_zp());
    let y5: Box<Tensor<S, S, { ia::B5 }>> = b5_2.run(&t5);
    let b3_1: ConvP<CIN, { ia::B3_REDUCE }, 1, 0> = conv_p(spec, &n("b3_1"), in_zp);
    let t3: Box<Tensor<S, S, { ia::B3_REDUCE }>> = b3_1.run(x);
    let b3_2: ConvP<{ ia::B3_REDUCE }, { ia::B3 }, 3, 1> = conv_p(spec, &n("b3_2"), b3_1.out_zp());
    let u3: Box<Tensor<S, S, { ia::B3 }>> = b3_2.run(&t3);
    let b3_3: ConvP<{ ia::B3 }, { ia::B3 }, 3, 1> = conv_p(spec, &n("b3_3"), b3_2.out_zp());
    let y3: Box<Tensor<S, S, { ia::B3 }>> = b3_3.run(&u3);
    let mut ap = Box::new([[[0i8; CIN]; S]; S]);
    avgpool3x3_s8_ref(in_zp, x, &mut ap);
    let bp: ConvP<CIN, { ia::BP }, 1, 0> = conv_p(spec, &n("bp"), in_zp);
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
    let conv1: ConvP<1, { inc::C1 }, { inc::K1 }, 0> = conv_p(spec, "conv1", spec.input.zero_point);
    let y: Box<Tensor<{ inc::S1 }, { inc::S1 }, { inc::C1 }>> = conv1.run(&x);
    let p: Box<Tensor<{ inc::P1 }, { inc::P1 }, { inc::C1 }>> = maxpool_relu(conv1.out_zp(), &y);
    let (q, zp) = inception_a_ref::<{ inc::C1 }, { inc::P1 }>(spec, "incep1", conv1.out_zp(), &p);
    let conv2: ConvP<{ inc::INCEP_OUT }, { inc::C2 }, { inc::K2 }, 0> = conv_p(spec, "conv2", zp);
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
    let conv1: ConvP<CIN, CIN, { res::K }, { res::PAD }> = conv_p(spec, &n("conv1"), in_zp);
    let y1: Box<Tensor<S, S, CIN>> = conv1.run(x);
    let conv2: ConvP<CIN, COUT, { res::K }, { res::PAD }> =
        conv_p(spec, &n("conv2"), conv1.out_zp());
    let y2: Box<Tensor<S, S, COUT>> = conv2.run(&y1);
    let conv: ConvP<CIN, COUT, { res::K }, { res::PAD }> = conv_p(spec, &n("conv"), in_zp);
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

/// The lecture's residual block by the book: `ReLU(x + conv2(ReLU(conv1(x))))`.
fn residual_ref<const C: usize, const S: usize>(
    spec: &ModelSpec,
    prefix: &str,
    in_zp: i8,
    x: &Tensor<S, S, C>,
) -> (Box<Tensor<S, S, C>>, i8) {
    let n = |b: &str| format!("{prefix}.{b}");
    let conv1: ConvP<C, C, { rid::K }, { rid::PAD }> = conv_p(spec, &n("conv1"), in_zp);
    let y1: Box<Tensor<S, S, C>> = conv1.run(x);
    let conv2: ConvP<C, C, { rid::K }, { rid::PAD }> = conv_p(spec, &n("conv2"), conv1.out_zp());
    let y2: Box<Tensor<S, S, C>> = conv2.run(&y1);
    let add = spec.layer(&n("add")).unwrap();
    let p = AddS8 {
        a_zero_point: conv2.out_zp(),
        a: add.requant[0],
        b_zero_point: in_zp,
        b: add.requant[1],
        out: add.requant[2],
        output: add.output,
    };
    let mut out = Box::new([[[0i8; C]; S]; S]);
    add_requant_s8_ref(&p, &y2, x, &mut out);
    (out, add.output.zero_point)
}

fn resnet_identity_ref(spec: &ModelSpec, pixels: &[u8; IMAGE_PIXELS]) -> [i8; CLASSES] {
    let x = input(spec, pixels);
    let conv1: ConvP<1, { rid::C1 }, { rid::K_STEM }, 0> =
        conv_p(spec, "conv1", spec.input.zero_point);
    let y: Box<Tensor<{ rid::S1 }, { rid::S1 }, { rid::C1 }>> = conv1.run(&x);
    let p: Box<Tensor<{ rid::P1 }, { rid::P1 }, { rid::C1 }>> = maxpool(ActRange::FULL, &y);
    let (a, zp) = residual_ref::<{ rid::C1 }, { rid::P1 }>(spec, "rb1", conv1.out_zp(), &p);
    let conv2: ConvP<{ rid::C1 }, { rid::C2 }, { rid::K_STEM }, 0> = conv_p(spec, "conv2", zp);
    let y: Box<Tensor<{ rid::S2 }, { rid::S2 }, { rid::C2 }>> = conv2.run(&a);
    let p: Box<Tensor<{ rid::P2 }, { rid::P2 }, { rid::C2 }>> = maxpool(ActRange::FULL, &y);
    let (a, zp) = residual_ref::<{ rid::C2 }, { rid::P2 }>(spec, "rb2", conv2.out_zp(), &p);
    linear(spec, zp, &a)
}

/// The reference composition of `net`, written from its definition.
fn reference(spec: &ModelSpec, pixels: &[u8; IMAGE_PIXELS]) -> [i8; CLASSES] {
    match spec.net {
        NetId::Inception => inception_ref(spec, pixels),
        NetId::ResNet => resnet_ref(spec, pixels),
        NetId::ResNetIdentity => resnet_identity_ref(spec, pixels),
    }
}

// ---------------------------------------------------------------------------
// The int8 pass of any network by interpreting its graph: every node a
// naive loop over HWC tensors of runtime shape, parameters from the owned
// ModelSpec, zero points from the graph's wiring, the rounding rules
// written out (requantize_ref).

fn clamp_out(v: i32, o: OutputQuant) -> i8 {
    (v as i64 + o.zero_point as i64).clamp(o.range.min() as i64, o.range.max() as i64) as i8
}

fn interpret(spec: &ModelSpec, pixels: &[u8; IMAGE_PIXELS]) -> [i8; CLASSES] {
    let g = spec.net.graph();
    let zp = |id: NodeId| match g.source(id) {
        crate::graph::Source::Image => spec.input.zero_point as i32,
        crate::graph::Source::Layer(i) => spec.layers[i as usize].output.zero_point as i32,
    };
    let mut t: Vec<Vec<i8>> = Vec::new();
    for (i, node) in g.nodes().iter().enumerate() {
        let id = NodeId(i as u8);
        let layer = g.layer_index(id).map(|l| &spec.layers[l]);
        let (c, s) = (node.channels as usize, node.side as usize);
        let out: Vec<i8> = match node.op {
            Op::Input => pixels.iter().map(|&p| spec.input.lut[p as usize]).collect(),
            Op::Conv { input, kernel, pad } => {
                let l = layer.unwrap();
                let (x, ci, si) = (
                    &t[input.index()],
                    g.node(input).channels as usize,
                    g.node(input).side as isize,
                );
                let (k, pad) = (kernel as usize, pad as isize);
                let mut out = vec![0i8; c * s * s];
                for oy in 0..s {
                    for ox in 0..s {
                        for co in 0..c {
                            let mut acc = 0i32;
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (
                                        oy as isize + ky as isize - pad,
                                        ox as isize + kx as isize - pad,
                                    );
                                    if iy < 0 || ix < 0 || iy >= si || ix >= si {
                                        continue;
                                    }
                                    for cc in 0..ci {
                                        let xv = x
                                            [(iy as usize * si as usize + ix as usize) * ci + cc]
                                            as i32;
                                        let w =
                                            l.weights[((co * k + ky) * k + kx) * ci + cc] as i32;
                                        acc += w * (xv - zp(input));
                                    }
                                }
                            }
                            let acc = acc.wrapping_add(l.bias[co]);
                            out[(oy * s + ox) * c + co] =
                                clamp_out(requantize_ref(acc, l.requant[co]), l.output);
                        }
                    }
                }
                out
            }
            Op::Linear { input } => {
                let (l, x) = (layer.unwrap(), &t[input.index()]);
                (0..c)
                    .map(|o| {
                        let row = &l.weights[o * x.len()..(o + 1) * x.len()];
                        let acc: i32 = row
                            .iter()
                            .zip(x)
                            .map(|(&w, &v)| w as i32 * (v as i32 - zp(input)))
                            .sum();
                        clamp_out(
                            requantize_ref(acc.wrapping_add(l.bias[o]), l.requant[o]),
                            l.output,
                        )
                    })
                    .collect()
            }
            Op::MaxPool2 { input } => {
                let (x, si) = (&t[input.index()], g.node(input).side as usize);
                let floor = if node.act == crate::graph::Act::Relu {
                    zp(input) as i8
                } else {
                    i8::MIN
                };
                let mut out = vec![0i8; c * s * s];
                for y in 0..s {
                    for x_ in 0..s {
                        for ch in 0..c {
                            let at = |dy: usize, dx: usize| {
                                x[((2 * y + dy) * si + 2 * x_ + dx) * c + ch]
                            };
                            out[(y * s + x_) * c + ch] = at(0, 0)
                                .max(at(0, 1))
                                .max(at(1, 0))
                                .max(at(1, 1))
                                .max(floor);
                        }
                    }
                }
                out
            }
            Op::AvgPool3 { input } => {
                let x = &t[input.index()];
                let z = zp(input);
                let mut out = vec![0i8; c * s * s];
                for y in 0..s as isize {
                    for x_ in 0..s as isize {
                        for ch in 0..c {
                            let mut sum = 0i32;
                            for (iy, ix) in (y - 1..=y + 1)
                                .flat_map(|iy| (x_ - 1..=x_ + 1).map(move |ix| (iy, ix)))
                            {
                                if iy >= 0 && ix >= 0 && iy < s as isize && ix < s as isize {
                                    sum += x[(iy as usize * s + ix as usize) * c + ch] as i32 - z;
                                }
                            }
                            // sum / 9 rounded half away from zero.
                            let q = (2 * sum.abs() + 9) / 18 * sum.signum();
                            out[(y as usize * s + x_ as usize) * c + ch] =
                                (z + q).clamp(-128, 127) as i8;
                        }
                    }
                }
                out
            }
            Op::Add { a, b } => {
                let l = layer.unwrap();
                let (xa, xb) = (&t[a.index()], &t[b.index()]);
                let scaled = |v: i8, z: i32, m: Requant| {
                    requantize_ref((v as i32 - z) << ADD_LEFT_SHIFT, m) as i64
                };
                xa.iter()
                    .zip(xb)
                    .map(|(&va, &vb)| {
                        let sum = scaled(va, zp(a), l.requant[0]) + scaled(vb, zp(b), l.requant[1]);
                        let sum = sum.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
                        clamp_out(requantize_ref(sum, l.requant[2]), l.output)
                    })
                    .collect()
            }
            Op::Concat { inputs, count } => {
                let parts = &inputs[..count as usize];
                (0..s * s)
                    .flat_map(|px| {
                        parts.iter().flat_map(move |p| {
                            let pc = g.node(*p).channels as usize;
                            (0..pc).map(move |ch| (p.index(), px * pc + ch))
                        })
                    })
                    .map(|(node, at)| t[node][at])
                    .collect()
            }
        };
        assert_eq!(out.len(), c * s * s, "{}", node.name);
        t.push(out);
    }
    t.last().unwrap().clone().try_into().unwrap()
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

fn plan_names(plan: &'static Plan) -> Vec<&'static str> {
    plan.steps.iter().map(|s| s.name()).collect()
}

/// The planned forward pass equals the reference composition and the
/// graph's interpreter, whatever the arena held before; and the test has
/// teeth (logits vary and are mostly not saturated).
fn forward_equals_reference(net: NetId) {
    let mut rng = Rng::new(net as u64 + 100);
    let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
    let (mut distinct, mut saturated, mut total) = (std::collections::HashSet::new(), 0, 0);
    for seed in 0..4 {
        let spec = ModelSpec::synthetic(net, seed);
        let bytes = spec.encode().unwrap();
        let model = Model::decode(&bytes).unwrap();
        assert_eq!(model.net(), net);
        for _ in 0..4 {
            let pixels = random_image(&mut rng);
            // Garbage in the arena: nothing may depend on it.
            for b in arena.bytes_mut().iter_mut() {
                *b = rng.next_u32() as u8;
            }
            let mut probe = Recorder(Vec::new());
            let pred = classify(&model, &pixels, &mut *arena, &mut probe);
            let want = reference(&spec, &pixels);
            assert_eq!(pred.logits, want, "{net:?} seed {seed}");
            assert_eq!(
                interpret(&spec, &pixels),
                want,
                "{net:?} seed {seed}: the graph's interpreter"
            );
            assert_eq!(pred.class as usize, argmax_s8_ref(&want));
            assert_eq!(probe.0, plan_names(plan(net)));
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
fn resnet_identity_forward_equals_the_reference_composition() {
    forward_equals_reference(NetId::ResNetIdentity);
}

// Each network's own decoder and forward pass (the firmware's way) agree
// with the registry's.
#[test]
fn each_network_decodes_on_its_own() {
    let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
    let px = [77u8; IMAGE_PIXELS];
    let logits = |bytes: &[u8], arena: &mut Arena<ARENA_BYTES>| {
        forward(&Model::decode(bytes).unwrap(), &px, arena, &mut ())
    };
    let b = ModelSpec::synthetic(NetId::Inception, 1).encode().unwrap();
    let m = inception::InceptionModel::decode(&b).unwrap();
    assert_eq!(
        inception::forward(&m, &px, &mut *arena, &mut ()),
        logits(&b, &mut arena)
    );
    let b = ModelSpec::synthetic(NetId::ResNet, 1).encode().unwrap();
    let m = resnet::ResNetModel::decode(&b).unwrap();
    assert_eq!(
        resnet::forward(&m, &px, &mut *arena, &mut ()),
        logits(&b, &mut arena)
    );
    let b = ModelSpec::synthetic(NetId::ResNetIdentity, 1)
        .encode()
        .unwrap();
    let m = resnet_identity::ResNetIdentityModel::decode(&b).unwrap();
    assert_eq!(
        resnet_identity::forward(&m, &px, &mut *arena, &mut ()),
        logits(&b, &mut arena)
    );
    assert!(resnet::ResNetModel::decode(
        &ModelSpec::synthetic(NetId::ResNetIdentity, 1)
            .encode()
            .unwrap()
    )
    .is_err());
}

#[test]
fn a_model_of_zeros_predicts_class_zero() {
    // Template: every requant is zero, so every logit is the fc zero point.
    let bytes = ModelSpec::template(NetId::ResNet).encode().unwrap();
    let m = resnet::ResNetModel::decode(&bytes).unwrap();
    let mut arena = Arena::<{ resnet::PLAN.arena_bytes() }>::new();
    let p = Prediction::from_logits(resnet::forward(
        &m,
        &[255; IMAGE_PIXELS],
        &mut arena,
        &mut (),
    ));
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
    for net in NetId::ALL {
        assert_eq!(plan(net).verify(), Ok(()));
        assert_eq!(plan(net).check(net.graph()), Ok(()));
        assert_eq!(plan(net).net, net);
    }
    // Hand-derived from the plans' doc comments. InceptionNet peaks in
    // incep1.b5_2: concat, module input, both reducer outputs, the 5x5's
    // im2col (100 steps of 48 bytes). ResNet in block r1: image, conv1's
    // output, shortcut, r2's scratch (23 steps), the add's tables, pool out.
    // The identity ResNet in block rb1's add: its input, conv1's output
    // (now the add's tables), rb1's scratch (36 steps), conv2's output, the
    // block's output.
    assert_eq!(
        arena_bytes(NetId::Inception),
        12_672 + 1_440 + 2 * 2_304 + 100 * 48
    );
    assert_eq!(
        arena_bytes(NetId::ResNet),
        784 + 784 + 7_840 + 23 * 48 + 2 * 1024 + 1_960
    );
    assert_eq!(
        arena_bytes(NetId::ResNetIdentity),
        2_304 + 2_304 + 36 * 48 + 2_304 + 2_304
    );
    const { assert!(arena_bytes(NetId::Inception) <= 24 * 1024) };
    // Every step name is unique and every node but a concat is computed by
    // exactly one step.
    for net in NetId::ALL {
        let names = plan_names(plan(net));
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "{n}");
        }
        let g = net.graph();
        let mut covered: Vec<u8> = plan(net)
            .steps
            .iter()
            .flat_map(|s| s.graph.nodes().iter().map(|n| n.0))
            .collect();
        covered.sort();
        let nodes: Vec<u8> = (0..g.nodes().len() as u8)
            .filter(|&i| !matches!(g.node(NodeId(i)).op, Op::Concat { .. }))
            .collect();
        assert_eq!(covered, nodes, "{net:?}");
    }
}

// A plan whose steps are not its graph's, or whose buffers do not fit the
// tensors, is refused.
#[test]
fn a_plan_that_is_not_its_graphs_is_refused() {
    let g = NetId::ResNetIdentity.graph();
    let steps = resnet_identity::PLAN.steps;
    let with = |steps: Vec<Step>| Plan {
        net: NetId::ResNetIdentity,
        steps: Vec::leak(steps),
    };
    // One step short, two swapped.
    assert_eq!(
        with(steps[..9].to_vec()).check(g),
        Err(PlanViolation::NotTheGraphs { step: 9 })
    );
    let mut swapped = steps.to_vec();
    swapped.swap(2, 3);
    assert_eq!(
        with(swapped).check(g),
        Err(PlanViolation::NotTheGraphs { step: 2 })
    );
    // rb1.conv1 writes no buffer of its output's size.
    let mut unwritten = steps.to_vec();
    unwritten[2].writes = &steps[2].writes[1..];
    assert_eq!(
        with(unwritten).check(g),
        Err(PlanViolation::Unwritten { step: 2 })
    );
    // conv2 reads the image's buffer.
    let mut wrong = steps.to_vec();
    wrong[5].reads = steps[1].reads;
    assert_eq!(
        with(wrong).check(g),
        Err(PlanViolation::WrongRead {
            step: 5,
            buffer: "X0"
        })
    );
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
    fn st(_name: &'static str, reads: &'static [Region], writes: Region) -> Step {
        super::step(NetId::ResNet.graph(), 0, reads, Vec::leak(vec![writes]))
    }
    let reads_a: &'static [Region] = Vec::leak(vec![a]);
    let reads_b: &'static [Region] = Vec::leak(vec![b]);
    let ok = Plan {
        net: NetId::ResNet,
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
        net: NetId::ResNet,
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
        net: NetId::ResNet,
        steps: Vec::leak(vec![st("0", &[], a), st("1", reads_a, c)]),
    };
    assert!(matches!(
        bad.verify(),
        Err(PlanViolation::Clobbered { writer: 1, .. })
    ));
    let bad = Plan {
        net: NetId::ResNet,
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
// f32: the networks written out naively in f64, from their PyTorch
// definitions, on PyTorch layouts.

/// 2x2 max pool, then ReLU, on `c` planes of `s x s`.
fn pool_relu_naive(x: &[f64], c: usize, s: usize) -> Vec<f64> {
    naive::maxpool2d(c, s, s, x)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect()
}

fn fc_naive(x: &[f64], w: &[f32], b: &[f32]) -> Vec<f64> {
    let n = x.len();
    (0..b.len())
        .map(|o| b[o] as f64 + (0..n).map(|i| w[o * n + i] as f64 * x[i]).sum::<f64>())
        .collect()
}

/// The parameters of layer `name`.
fn w<'a>(net: &'a float::FloatNet, name: &str) -> (&'a [f32], &'a [f32]) {
    let p = net.layer(name).unwrap_or_else(|| panic!("no layer {name}"));
    (&p.weight, &p.bias)
}

/// [`naive::conv2d`] of one image with layer `name`'s parameters.
#[allow(clippy::too_many_arguments)]
fn conv_named(
    net: &float::FloatNet,
    name: &str,
    x: &[f64],
    ci: usize,
    s: usize,
    co: usize,
    k: usize,
    pad: usize,
) -> Vec<f64> {
    let (wt, b) = w(net, name);
    let shape = ConvShape {
        b: 1,
        ci,
        h: s,
        w: s,
        co,
        k,
        p: pad,
    };
    naive::conv2d(shape, x, wt, b)
}

fn relu_naive(mut x: Vec<f64>) -> Vec<f64> {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
    x
}

fn incep_naive(net: &float::FloatNet, p: &str, x: &[f64], cin: usize, s: usize) -> Vec<f64> {
    let n = |b: &str| format!("{p}.{b}");
    let b1 = conv_named(net, &n("b1"), x, cin, s, ia::B1, 1, 0);
    let t = conv_named(net, &n("b5_1"), x, cin, s, ia::B5_REDUCE, 1, 0);
    let b5 = conv_named(net, &n("b5_2"), &t, ia::B5_REDUCE, s, ia::B5, 5, 2);
    let t = conv_named(net, &n("b3_1"), x, cin, s, ia::B3_REDUCE, 1, 0);
    let t = conv_named(net, &n("b3_2"), &t, ia::B3_REDUCE, s, ia::B3, 3, 1);
    let b3 = conv_named(net, &n("b3_3"), &t, ia::B3, s, ia::B3, 3, 1);
    let ap = naive::avgpool3x3(cin, s, s, x);
    let bp = conv_named(net, &n("bp"), &ap, cin, s, ia::BP, 1, 0);
    [b1, b5, b3, bp].concat()
}

fn inception_naive(net: &float::FloatNet, x: &[f64]) -> Vec<f64> {
    let y = conv_named(net, "conv1", x, 1, 28, inc::C1, inc::K1, 0);
    let p = pool_relu_naive(&y, inc::C1, inc::S1);
    let q = incep_naive(net, "incep1", &p, inc::C1, inc::P1);
    let y = conv_named(net, "conv2", &q, ia::OUT, inc::P1, inc::C2, inc::K2, 0);
    let p = pool_relu_naive(&y, inc::C2, inc::S2);
    let q = incep_naive(net, "incep2", &p, inc::C2, inc::P2);
    let (wt, b) = w(net, "fc");
    fc_naive(&q, wt, b)
}

/// The seed's block: `ReLU(conv(x) + conv2(ReLU(conv1(x))))`.
fn block_naive(
    net: &float::FloatNet,
    p: &str,
    x: &[f64],
    ci: usize,
    co: usize,
    s: usize,
) -> Vec<f64> {
    let n = |b: &str| format!("{p}.{b}");
    let y = relu_naive(conv_named(net, &n("conv1"), x, ci, s, ci, 3, 1));
    let y = conv_named(net, &n("conv2"), &y, ci, s, co, 3, 1);
    let sc = conv_named(net, &n("conv"), x, ci, s, co, 3, 1);
    relu_naive(y.iter().zip(&sc).map(|(a, b)| a + b).collect())
}

fn resnet_naive(net: &float::FloatNet, x: &[f64]) -> Vec<f64> {
    let y = block_naive(net, "r1", x, 1, res::C1, 28);
    let p = pool_relu_naive(&y, res::C1, 28);
    let y = block_naive(net, "r2", &p, res::C1, res::C2, 14);
    let p = pool_relu_naive(&y, res::C2, 14);
    let (wt, b) = w(net, "fc");
    fc_naive(&p, wt, b)
}

/// The lecture's block: `ReLU(x + conv2(ReLU(conv1(x))))`.
fn residual_naive(net: &float::FloatNet, p: &str, x: &[f64], c: usize, s: usize) -> Vec<f64> {
    let n = |b: &str| format!("{p}.{b}");
    let y = relu_naive(conv_named(net, &n("conv1"), x, c, s, c, 3, 1));
    let y = conv_named(net, &n("conv2"), &y, c, s, c, 3, 1);
    relu_naive(x.iter().zip(&y).map(|(a, b)| a + b).collect())
}

/// PyTorch: `mp(relu(conv1(x)))`, rb1, `mp(relu(conv2(x)))`, rb2, fc.
fn resnet_identity_naive(net: &float::FloatNet, x: &[f64]) -> Vec<f64> {
    let y = relu_naive(conv_named(net, "conv1", x, 1, 28, 16, 5, 0));
    let p = pool_relu_naive(&y, 16, 24);
    let r = residual_naive(net, "rb1", &p, 16, 12);
    let y = relu_naive(conv_named(net, "conv2", &r, 16, 12, 32, 5, 0));
    let p = pool_relu_naive(&y, 32, 8);
    let r = residual_naive(net, "rb2", &p, 32, 4);
    let (wt, b) = w(net, "fc");
    fc_naive(&r, wt, b)
}

/// PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
fn randomise(net: &mut float::FloatNet, rng: &mut Rng) {
    for (_, p) in net.parameters_mut() {
        let fan_in = p.weight.len() / p.bias.len();
        let bound = 1.0 / (fan_in as f64).sqrt();
        for v in p.weight.iter_mut().chain(p.bias.iter_mut()) {
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

/// The graph's f32 pass equals the network written out naively, and it
/// observes every node once, in order.
fn f32_equals_naive(net: NetId, naive: fn(&float::FloatNet, &[f64]) -> Vec<f64>) {
    let mut rng = Rng::new(31 + net as u64);
    for _ in 0..3 {
        let mut f = float::FloatNet::zeros(net);
        randomise(&mut f, &mut rng);
        for _ in 0..2 {
            let px = random_image(&mut rng);
            let x = float::normalize(&px);
            let mut seen = Vec::new();
            let got = f.forward_observed(&x, &mut |n, t| seen.push((n.0, t.len())));
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            close(&got, &naive(&f, &x64));
            assert_eq!(f.forward_pixels(&px), got);
            let g = net.graph();
            let want: Vec<(u8, usize)> = g
                .nodes()
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u8, n.tensor_bytes()))
                .collect();
            assert_eq!(seen, want);
        }
    }
}

#[test]
fn f32_inception_equals_a_naive_implementation() {
    f32_equals_naive(NetId::Inception, inception_naive);
}

#[test]
fn f32_resnet_equals_a_naive_implementation() {
    f32_equals_naive(NetId::ResNet, resnet_naive);
}

#[test]
fn f32_resnet_identity_equals_a_naive_implementation() {
    f32_equals_naive(NetId::ResNetIdentity, resnet_identity_naive);
}

#[test]
fn f32_networks_load_named_tensors() {
    let mut rng = Rng::new(33);
    let mut net = float::FloatNet::zeros(NetId::ResNet);
    randomise(&mut net, &mut rng);
    let mut named = std::collections::HashMap::new();
    for (layer, p) in net.clone().parameters_mut() {
        named.insert(format!("{layer}.weight"), p.weight.clone());
        named.insert(format!("{layer}.bias"), p.bias.clone());
    }
    assert_eq!(named.len(), 14);
    let back = float::FloatNet::from_tensors(NetId::ResNet, |k| named.get(k).cloned()).unwrap();
    assert_eq!(back, net);
    named.get_mut("r2.conv.weight").unwrap().pop();
    assert_eq!(
        float::FloatNet::from_tensors(NetId::ResNet, |k| named.get(k).cloned()),
        Err(crate::Error::FloatTensor {
            layer: "r2.conv",
            field: crate::error::Field::Weights,
            found: Some(20 * 10 * 9 - 1),
            expected: 20 * 10 * 9
        })
    );
    assert!(matches!(
        float::FloatNet::from_tensors(NetId::Inception, |_| None),
        Err(crate::Error::FloatTensor {
            layer: "conv1",
            found: None,
            ..
        })
    ));
}
