//! Post-training quantisation: a trained f32 checkpoint becomes an int8
//! model file (`shared::model`) that the firmware embeds in flash.
//!
//! The recipe (GUIDE section 3, TFLite's conventions):
//! - **Calibration**: `shared`'s f32 forward pass runs on training images
//!   and records the range of every intermediate tensor ([`calibrate`]).
//! - **Activations**: int8 asymmetric per tensor, the calibrated range
//!   (widened to include 0) spread over -128..=127. A ReLU is fused as a
//!   clamp at the zero point, so a ReLU'd tensor's range starts at 0 and all
//!   256 codes cover positive values. The four branches of an Inception
//!   module write their channel slices of the concat, so they share the
//!   concat's range.
//! - **Weights**: int8 symmetric per output channel, `max|w| / 127`.
//! - **Bias**: int32 at `in_scale * w_scale[c]`, rounded to nearest.
//! - **Requantisation**: `in_scale * w_scale[c] / out_scale` as a Q31
//!   multiplier and shift; residual adds get TFLite's three multipliers.
//! - **Input**: the pixel range after normalisation, exactly: a table maps
//!   each raw byte to its int8 value, so no calibration is needed.

use crate::checkpoint::Checkpoint;
use crate::data::Split;
use crate::error::{Error, Result};
use rayon::prelude::*;
use shared::arch::{CLASSES, IMAGE_PIXELS};
use shared::kernels::{AddS8, OutputQuant};
use shared::model::{layers, Activation, InputSpec, LayerKind, ModelSpec, NetId};
use shared::nets::float::{normalize, InceptionF32, ResNetF32};
use shared::quant::quantize_multiplier;
use std::collections::HashMap;

/// Training images calibrated on by default: every 30th of the 60,000, so
/// all classes and writers are represented.
pub const CALIBRATION_IMAGES: usize = 2000;

/// A trained network in f32, run by `shared`'s float forward pass (the
/// calibration engine, and the reference the int8 network is held to).
pub enum FloatNet {
    /// InceptionNet.
    Inception(Box<InceptionF32>),
    /// The ResNet.
    ResNet(Box<ResNetF32>),
}

/// The network a checkpoint's `net` tag names.
pub fn net_id(name: &str) -> Result<NetId> {
    NetId::ALL.into_iter().find(|n| n.name() == name).ok_or_else(|| Error::WrongNet {
        expected: NetId::ALL.map(NetId::name).join(" or "),
        found: name.to_owned(),
    })
}

impl FloatNet {
    /// The network a checkpoint holds, with its tensors copied in.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<FloatNet> {
        let get = |key: &str| ckpt.get(key).map(|t| t.data.clone());
        let mismatch = |e: shared::Error| Error::TensorMismatch { net: ckpt.net.clone(), problem: e.to_string() };
        Ok(match net_id(&ckpt.net)? {
            NetId::Inception => FloatNet::Inception(Box::new(InceptionF32::from_tensors(get).map_err(mismatch)?)),
            NetId::ResNet => FloatNet::ResNet(Box::new(ResNetF32::from_tensors(get).map_err(mismatch)?)),
        })
    }

    /// Which network this is.
    pub fn net(&self) -> NetId {
        match self {
            FloatNet::Inception(_) => NetId::Inception,
            FloatNet::ResNet(_) => NetId::ResNet,
        }
    }

    /// Logits for raw pixels, handing every intermediate tensor to `observe`
    /// (names as in `shared::nets::float`).
    pub fn forward_observed(
        &self,
        pixels: &[u8; IMAGE_PIXELS],
        observe: &mut dyn FnMut(&'static str, &[f32]),
    ) -> [f32; CLASSES] {
        let x = normalize(pixels);
        match self {
            FloatNet::Inception(n) => n.forward_observed(&x, observe),
            FloatNet::ResNet(n) => n.forward_observed(&x, observe),
        }
    }

    /// Logits for raw pixels.
    pub fn logits(&self, pixels: &[u8; IMAGE_PIXELS]) -> [f32; CLASSES] {
        self.forward_observed(pixels, &mut |_, _| {})
    }
}

/// The observed value range of every named intermediate tensor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranges(HashMap<&'static str, (f32, f32)>);

impl Ranges {
    /// Widen `name`'s range to cover `values`.
    pub fn observe(&mut self, name: &'static str, values: &[f32]) {
        let r = self.0.entry(name).or_insert((f32::INFINITY, f32::NEG_INFINITY));
        for &v in values {
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }

    /// The union of two sets of ranges.
    pub fn merge(mut self, other: Ranges) -> Ranges {
        for (name, (lo, hi)) in other.0 {
            self.observe(name, &[lo, hi]);
        }
        self
    }

    /// `name`'s range, if it was observed.
    pub fn get(&self, name: &str) -> Option<(f32, f32)> {
        self.0.get(name).copied()
    }
}

/// The ranges of every intermediate tensor over `count` images of `split`
/// spread evenly over it (all of them if it has fewer).
pub fn calibrate(net: &FloatNet, split: &Split, count: usize) -> Ranges {
    let n = split.len();
    let count = count.clamp(1, n.max(1)).min(n);
    (0..count)
        .into_par_iter()
        .fold(Ranges::default, |mut ranges, i| {
            net.forward_observed(split.image(i * n / count), &mut |name, t| ranges.observe(name, t));
            ranges
        })
        .reduce(Ranges::default, Ranges::merge)
}

/// Asymmetric int8 quantisation `(scale, zero_point)` of `lo..=hi`, widened
/// to include 0 so that zero (padding, ReLU's floor) is exact.
pub fn activation_quant(lo: f32, hi: f32) -> (f32, i8) {
    let (lo, hi) = (f64::from(lo.min(0.0)), f64::from(hi.max(0.0)));
    // A tensor that is always 0 still needs a valid scale.
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0);
    (scale as f32, zero_point as i8)
}

/// How one layer is wired, for quantisation: the calibrated tensor whose
/// range is its output's, and the layer whose output is its input (`None`:
/// the image). Pools keep their input's quantisation, so a layer after a
/// pool reads its quantisation from the layer before the pool.
struct Wiring {
    output_tensor: String,
    input_layer: Option<String>,
}

fn wiring(net: NetId, name: &str) -> Wiring {
    let (prefix, part) = name.split_once('.').unwrap_or((name, ""));
    let (output_tensor, input_layer) = match net {
        NetId::Inception => {
            // Every branch's last conv writes its slice of the concat.
            let out = match part {
                "b1" | "b5_2" | "b3_3" | "bp" => prefix.to_owned(),
                _ => name.to_owned(),
            };
            let input = match (prefix, part) {
                ("conv1", _) => None,
                ("conv2", _) => Some("incep1.b1".to_owned()),
                ("fc", _) => Some("incep2.b1".to_owned()),
                (p, "b5_2") => Some(format!("{p}.b5_1")),
                (p, "b3_2") => Some(format!("{p}.b3_1")),
                (p, "b3_3") => Some(format!("{p}.b3_2")),
                ("incep1", _) => Some("conv1".to_owned()),
                (_, _) => Some("conv2".to_owned()),
            };
            (out, input)
        }
        NetId::ResNet => {
            let input = match (prefix, part) {
                ("r1", "conv1" | "conv") => None,
                ("r2", "conv1" | "conv") => Some("r1.add".to_owned()),
                (p, "conv2") => Some(format!("{p}.conv1")),
                ("fc", _) => Some("r2.add".to_owned()),
                // Adds read their block's conv2 and conv (see `quantize`).
                _ => None,
            };
            (name.to_owned(), input)
        }
    };
    Wiring { output_tensor, input_layer }
}

/// Quantise the network in `ckpt` with the calibrated `ranges`.
pub fn quantize(ckpt: &Checkpoint, ranges: &Ranges) -> Result<ModelSpec> {
    let net = net_id(&ckpt.net)?;
    let bad = |problem: String| Error::Quantize { net: net.name(), problem };
    let mut spec = ModelSpec::template(net);
    spec.input = InputSpec::full_range();
    for i in 0..spec.layers.len() {
        let table = &layers(net)[i];
        let w = wiring(net, table.name);
        let (lo, hi) = ranges
            .get(&w.output_tensor)
            .ok_or_else(|| bad(format!("no calibrated range for `{}`", w.output_tensor)))?;
        let relu = matches!(table.activation, Activation::Relu | Activation::ReluAfterPool);
        // A fused ReLU spends all 256 codes on 0..=hi.
        let (out_scale, out_zp) = activation_quant(if relu { 0.0 } else { lo }, hi);
        let output = if relu { OutputQuant::relu(out_zp) } else { OutputQuant::linear(out_zp) };
        let in_scale = match &w.input_layer {
            None => spec.input.scale,
            Some(l) => spec.layer(l).map(|l| l.output_scale).ok_or_else(|| bad(format!("layer `{l}` missing")))?,
        };
        let scale_of = |name: String| spec.layer(&name).map(|l| (f64::from(l.output_scale), l.output.zero_point));
        let add = match table.kind {
            LayerKind::Add => {
                let block = table.name.split('.').next().unwrap_or_default();
                let (a, b) = (scale_of(format!("{block}.conv2")), scale_of(format!("{block}.conv")));
                let (a, b) = a.zip(b).ok_or_else(|| bad(format!("`{}`: its inputs are missing", table.name)))?;
                Some(
                    AddS8::from_scales(a, b, f64::from(out_scale), output)
                        .ok_or_else(|| bad(format!("`{}`: scales out of range", table.name)))?,
                )
            }
            LayerKind::Conv | LayerKind::Linear => None,
        };
        let layer = &mut spec.layers[i];
        layer.output = output;
        layer.output_scale = out_scale;
        match add {
            Some(add) => layer.requant = vec![add.a, add.b, add.out],
            None => quantize_weights(ckpt, table.name, table.dims, f64::from(in_scale), f64::from(out_scale), layer)
                .map_err(bad)?,
        }
    }
    Ok(spec)
}

/// Per-channel int8 weights, int32 bias and requants of one conv or fc,
/// permuted from PyTorch's layout to ours: conv OIHW -> OHWI
/// (`dims = [CO, K, K, CI]`), fc `[o][c*H*W + y*W + x]` -> `[o][y][x][c]`
/// (`dims = [O, H, W, C]`): both are "move the first of the three inner
/// axes last".
fn quantize_weights(
    ckpt: &Checkpoint,
    name: &str,
    dims: [u16; 4],
    in_scale: f64,
    out_scale: f64,
    layer: &mut shared::model::LayerData,
) -> std::result::Result<(), String> {
    let tensor = |field: &str| {
        let key = format!("{name}.{field}");
        ckpt.get(&key).map(|t| &t.data).ok_or_else(|| format!("the checkpoint has no `{key}`"))
    };
    let (w, b) = (tensor("weight")?, tensor("bias")?);
    let [co, d1, d2, d3] = dims.map(usize::from);
    let per = d1 * d2 * d3;
    if w.len() != co * per || b.len() != co {
        return Err(format!("`{name}`: {} weights and {} biases, expected {} and {co}", w.len(), b.len(), co * per));
    }
    for c in 0..co {
        let row = &w[c * per..(c + 1) * per];
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        // An all-zero channel: any scale represents it; keep its bias exact.
        let w_scale = if max > 0.0 { f64::from(max) / 127.0 } else { 1.0 / 127.0 };
        let dst = &mut layer.weights[c * per..(c + 1) * per];
        for i in 0..d3 {
            for y in 0..d1 {
                for x in 0..d2 {
                    let q = (f64::from(row[(i * d1 + y) * d2 + x]) / w_scale).round().clamp(-127.0, 127.0);
                    dst[(y * d2 + x) * d3 + i] = q as i8;
                }
            }
        }
        let acc_scale = in_scale * w_scale;
        layer.bias[c] = (f64::from(b[c]) / acc_scale).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        layer.requant[c] = quantize_multiplier(acc_scale / out_scale)
            .ok_or_else(|| format!("`{name}` channel {c}: multiplier {} out of range", acc_scale / out_scale))?;
    }
    Ok(())
}

/// Calibrate on `count` images of `train` and quantise: the model file's
/// bytes.
pub fn export(ckpt: &Checkpoint, train: &Split, count: usize) -> Result<Vec<u8>> {
    let net = FloatNet::from_checkpoint(ckpt)?;
    let ranges = calibrate(&net, train, count);
    let spec = quantize(ckpt, &ranges)?;
    spec.encode().map_err(|e| Error::Quantize { net: net.net().name(), problem: format!("the encoder refused the result: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, Verify, DEFAULT_DATA_DIR};
    use crate::nets::{to_checkpoint, InceptionNet, Net, ResNet};
    use dfdx::nn::BuildModule;
    use dfdx::prelude::*;
    use shared::model::Model;
    use shared::nets::{Arena, ARENA_BYTES};

    /// An untrained network (dfdx's initialisation, seeded) quantised on
    /// real images: its dequantised int8 logits track its f32 logits. This
    /// checks the wiring of the export (concat scales, the fc permutation,
    /// ReLU clamps, add operands) against `shared`'s float network, which
    /// was written from the PyTorch definitions, not from the int8 code.
    fn untrained_network_tracks_f32<M: Net>() {
        let ds = Dataset::load(DEFAULT_DATA_DIR.as_ref(), Verify::ShapeOnly).unwrap();
        let ckpt = to_checkpoint(&M::build(&Cpu::seed_from_u64(7)));
        let float = FloatNet::from_checkpoint(&ckpt).unwrap();
        let spec = quantize(&ckpt, &calibrate(&float, &ds.train, 200)).unwrap();
        let bytes = spec.encode().unwrap();
        let model = Model::decode(&bytes).unwrap();
        let fc = spec.layers.last().unwrap();
        let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
        let (mut worst, mut spread, mut agree) = (0f64, 0f64, 0);
        let n = 100;
        for i in 0..n {
            let f = float.logits(ds.test.image(i));
            let q = shared::nets::classify(&model, ds.test.image(i), &mut arena, &mut ());
            let mean = f.iter().sum::<f32>() / CLASSES as f32;
            spread = spread.max(f.iter().map(|v| f64::from((v - mean).abs())).fold(0.0, f64::max));
            for (a, &b) in f.iter().zip(&q.logits) {
                let deq = f64::from(fc.output_scale) * f64::from(i32::from(b) - i32::from(fc.output.zero_point));
                worst = worst.max((deq - f64::from(*a)).abs());
            }
            agree += usize::from(crate::eval::argmax(&f) == usize::from(q.class));
        }
        println!("{}: worst logit error {worst:.4}, logit spread {spread:.4}, {agree}/{n} agree", M::NAME);
        assert!(worst < 0.1 * spread, "{}: int8 logits off by {worst}, spread {spread}", M::NAME);
        assert!(agree >= 90, "{}: {agree} of {n} predictions agree", M::NAME);
    }

    #[test]
    fn untrained_inception_tracks_f32() {
        untrained_network_tracks_f32::<InceptionNet>();
    }

    #[test]
    fn untrained_resnet_tracks_f32() {
        untrained_network_tracks_f32::<ResNet>();
    }

    #[test]
    fn activation_quant_keeps_zero_exact() {
        for (lo, hi) in [(-1.0, 3.0), (0.0, 6.0), (0.5, 2.0), (-4.0, -1.0), (0.0, 0.0)] {
            let (scale, zp) = activation_quant(lo, hi);
            assert!(scale > 0.0);
            // The real range covered includes lo, hi and 0.
            let (min, max) = (scale * (-128.0 - f32::from(zp)), scale * (127.0 - f32::from(zp)));
            assert!(min <= lo.min(0.0) + scale && max >= hi.max(0.0) - scale, "{lo}..{hi}: {min}..{max}");
        }
    }

    #[test]
    fn a_checkpoint_of_an_unknown_network_is_refused() {
        let mut ckpt = to_checkpoint(&ResNet::build(&Cpu::default()));
        ckpt.net = "lenet".into();
        let err = FloatNet::from_checkpoint(&ckpt).err().unwrap().to_string();
        assert!(err.contains("lenet"), "{err}");
    }
}
