//! End to end, independent of the int8 reference composition: a random f32
//! network (PyTorch layouts, CHW) is quantised by a minimal post-training
//! quantiser written here from the conventions documented in
//! [`crate::model`], encoded, decoded and run in int8 (HWC); its
//! dequantised logits must track the f32 logits. This checks the int8
//! wiring (concat order, fc permutation, ReLU placement, add operands, zero
//! points) against the float network's definition, not against itself. It
//! is also a worked example of what the host's exporter does.

use super::float::{normalize, InceptionF32, ResNetF32};
use super::tests::random_image;
use super::*;
use crate::arch::IMAGE_PIXELS;
use crate::kernels::testutil::Rng;
use crate::kernels::{AddS8, OutputQuant};
use crate::model::{layers, Activation, InputSpec, LayerKind, ModelSpec, NetId};
use crate::model::{InceptionModel, ResNetModel};
use crate::quant::quantize_multiplier;
use std::collections::HashMap;
use std::string::String;
use std::vec::Vec;

type Params = HashMap<&'static str, (Vec<f32>, Vec<f32>)>;
type Ranges = HashMap<&'static str, (f32, f32)>;
/// A float forward pass that hands each intermediate tensor to an observer.
type Observed<'a> = &'a dyn Fn(&[f32; IMAGE_PIXELS], &mut dyn FnMut(&'static str, &[f32]));

/// He-uniform weights (so activations keep their size through the ReLUs),
/// small biases.
fn randomise(slots: Vec<(&'static str, &mut Vec<f32>, &mut Vec<f32>)>, rng: &mut Rng) -> Params {
    let mut params = HashMap::new();
    for (name, w, b) in slots {
        let fan_in = w.len() / b.len();
        let bound = (6.0 / fan_in as f64).sqrt();
        for v in w.iter_mut() {
            *v = ((rng.unit() * 2.0 - 1.0) * bound) as f32;
        }
        for v in b.iter_mut() {
            *v = ((rng.unit() * 2.0 - 1.0) * 0.1) as f32;
        }
        params.insert(name, (w.clone(), b.clone()));
    }
    params
}

/// Asymmetric int8 quantisation of a range (0 included).
fn act_quant(lo: f32, hi: f32) -> (f32, i8) {
    let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0);
    (scale as f32, zp as i8)
}

/// The tensor whose calibrated range gives a layer's output quantisation,
/// and the layer producing its input (`None`: the image).
fn wiring(net: NetId, name: &str) -> (String, Option<String>) {
    let (prefix, branch) = name.split_once('.').unwrap_or((name, ""));
    match net {
        NetId::Inception => {
            let module_input = |p: &str| Some(if p == "incep1" { "conv1" } else { "conv2" }.into());
            let out = match branch {
                "b1" | "b5_2" | "b3_3" | "bp" => prefix.into(), // the concat
                _ => name.into(),
            };
            let input = match (prefix, branch) {
                ("conv1", _) => None,
                ("conv2", _) => Some("incep1".into()),
                ("fc", _) => Some("incep2".into()),
                (p, "b5_2") => Some(format!("{p}.b5_1")),
                (p, "b3_2") => Some(format!("{p}.b3_1")),
                (p, "b3_3") => Some(format!("{p}.b3_2")),
                (p, _) => module_input(p),
            };
            (out, input)
        }
        NetId::ResNet => {
            let input = match (prefix, branch) {
                ("r1", "conv1" | "conv") => None,
                ("r2", "conv1" | "conv") => Some("r1.add".into()),
                (p, "conv2") => Some(format!("{p}.conv1")),
                ("fc", _) => Some("r2.add".into()),
                _ => None, // adds: see below
            };
            (name.into(), input)
        }
    }
}

/// Post-training quantisation: per-channel symmetric weights, int32 bias,
/// per-tensor activations from the calibrated ranges.
fn quantise(net: NetId, params: &Params, ranges: &Ranges) -> ModelSpec {
    let mut spec = ModelSpec::template(net);
    spec.input = InputSpec::full_range();
    let quant_of = |tensor: &str| -> (f32, i8) {
        let (lo, hi) = ranges[tensor];
        act_quant(lo, hi)
    };
    let in_scale = spec.input.scale;
    let scale_of = |layer: &Option<String>| match layer {
        None => in_scale,
        Some(l) => quant_of(&wiring(net, l).0).0,
    };
    for (l, table) in spec.layers.iter_mut().zip(layers(net)) {
        let (out_tensor, input) = wiring(net, &l.name);
        let (out_scale, out_zp) = quant_of(&out_tensor);
        l.output_scale = out_scale;
        l.output = match table.activation {
            Activation::Relu => OutputQuant::relu(out_zp),
            Activation::None | Activation::ReluAfterPool => OutputQuant::linear(out_zp),
        };
        match l.kind {
            LayerKind::Add => {
                let p = l.name.split('.').next().unwrap();
                let (sa, za) = quant_of(&format!("{p}.conv2"));
                let (sb, zb) = quant_of(&format!("{p}.conv"));
                let add = AddS8::from_scales(
                    (sa as f64, za),
                    (sb as f64, zb),
                    out_scale as f64,
                    l.output,
                )
                .unwrap();
                l.requant = vec![add.a, add.b, add.out];
            }
            LayerKind::Conv | LayerKind::Linear => {
                let (w, b) = &params[table.name];
                let s_in = scale_of(&input) as f64;
                let [co, d1, d2, d3] = table.dims.map(|d| d as usize);
                let per = d1 * d2 * d3;
                for c in 0..co {
                    let row = &w[c * per..(c + 1) * per];
                    let max = row.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-8);
                    let w_scale = max as f64 / 127.0;
                    // PyTorch order -> ours. Conv: OIHW -> OHWI with
                    // (d1, d2, d3) = (K, K, CI). fc: [o][c][y][x] (CHW
                    // flatten) -> [o][y][x][c] with (d1, d2, d3) = (H, W, C).
                    for i in 0..d3 {
                        for y in 0..d1 {
                            for x in 0..d2 {
                                let v = row[(i * d1 + y) * d2 + x] as f64 / w_scale;
                                l.weights[c * per + (y * d2 + x) * d3 + i] =
                                    v.round().clamp(-127.0, 127.0) as i8;
                            }
                        }
                    }
                    l.bias[c] = (b[c] as f64 / (s_in * w_scale)).round() as i32;
                    l.requant[c] = quantize_multiplier(s_in * w_scale / out_scale as f64).unwrap();
                }
            }
        }
    }
    spec
}

fn calibrate(images: &[[u8; IMAGE_PIXELS]], forward: Observed<'_>) -> Ranges {
    let mut ranges: Ranges = HashMap::new();
    for img in images {
        forward(&normalize(img), &mut |name, t| {
            let r = ranges.entry(name).or_insert((f32::MAX, f32::MIN));
            for &v in t {
                r.0 = r.0.min(v);
                r.1 = r.1.max(v);
            }
        });
    }
    ranges
}

/// Logit error relative to the spread of the float logits, and the share
/// of images whose int8 and f32 predictions agree.
fn compare(pairs: &[([f32; CLASSES], [i8; CLASSES])], scale: f32, zp: i8) -> (f64, f64) {
    let all: Vec<f64> = pairs.iter().flat_map(|p| p.0.map(|v| v as f64)).collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let spread = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
    let mut err: f64 = 0.0;
    let mut agree = 0;
    for (f, q) in pairs {
        for (a, &b) in f.iter().zip(q) {
            let deq = scale as f64 * (b as f64 - zp as f64);
            err = err.max((deq - *a as f64).abs());
        }
        let fa = (0..CLASSES).fold(0, |m, i| if f[i] > f[m] { i } else { m });
        agree += (fa == crate::kernels::argmax_s8(q)) as usize;
    }
    (err / spread, agree as f64 / pairs.len() as f64)
}

fn images(rng: &mut Rng, n: usize) -> Vec<[u8; IMAGE_PIXELS]> {
    (0..n).map(|_| random_image(rng)).collect()
}

#[test]
fn quantised_inception_tracks_the_f32_network() {
    let mut rng = Rng::new(41);
    let mut net = InceptionF32::default();
    let params = randomise(net.parameters_mut(), &mut rng);
    let ranges = calibrate(&images(&mut rng, 24), &|x, o| {
        net.forward_observed(x, o);
    });
    let bytes = quantise(NetId::Inception, &params, &ranges)
        .encode()
        .unwrap();
    let m = InceptionModel::decode(&bytes).unwrap();
    let mut arena = std::boxed::Box::new(Arena::<INCEPTION_ARENA_BYTES>::new());
    let pairs: Vec<_> = images(&mut rng, 24)
        .iter()
        .map(|img| {
            (
                net.forward_pixels(img),
                inception::forward(&m, img, &mut *arena, &mut ()),
            )
        })
        .collect();
    let (err, agree) = compare(&pairs, m.fc.output_scale, m.fc.output.zero_point);
    println!("error {err:.3} of the spread, {agree} agree");
    assert!(
        err < 0.25 && agree >= 0.9,
        "error {err:.3} of the spread, {agree} agree"
    );
}

#[test]
fn quantised_resnet_tracks_the_f32_network() {
    let mut rng = Rng::new(42);
    let mut net = ResNetF32::default();
    let params = randomise(net.parameters_mut(), &mut rng);
    let ranges = calibrate(&images(&mut rng, 24), &|x, o| {
        net.forward_observed(x, o);
    });
    let bytes = quantise(NetId::ResNet, &params, &ranges).encode().unwrap();
    let m = ResNetModel::decode(&bytes).unwrap();
    let mut arena = Arena::<RESNET_ARENA_BYTES>::new();
    let pairs: Vec<_> = images(&mut rng, 24)
        .iter()
        .map(|img| {
            (
                net.forward_pixels(img),
                resnet::forward(&m, img, &mut arena, &mut ()),
            )
        })
        .collect();
    let (err, agree) = compare(&pairs, m.fc.output_scale, m.fc.output.zero_point);
    println!("error {err:.3} of the spread, {agree} agree");
    assert!(
        err < 0.25 && agree >= 0.9,
        "error {err:.3} of the spread, {agree} agree"
    );
}
