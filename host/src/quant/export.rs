//! Post-training quantisation: a trained f32 checkpoint becomes an int8
//! model file (`shared::model`) that the firmware embeds in flash.
//!
//! The recipe (TFLite's conventions; the model file's layout is in
//! `docs/ARCHITECTURE.md`):
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

use crate::error::{Error, Result};
use crate::train::checkpoint::Checkpoint;
use files::mnist::Split;
use rayon::prelude::*;
use shared::graph::{NodeId, Source};
use shared::kernels::{AddS8, OutputQuant};
use shared::model::{layers, Activation, InputSpec, LayerKind, ModelSpec};
use shared::nets::float::FloatNet;
use shared::quant::quantize_multiplier;

/// Training images calibrated on by default: every 30th of the 60,000, so
/// all classes and writers are represented.
pub const CALIBRATION_IMAGES: usize = 2000;

/// The network a checkpoint holds in f32, run by `shared`'s interpreter of
/// its graph (the calibration engine, and the reference the int8 network is
/// held to), with the checkpoint's tensors copied in.
pub fn float_net(ckpt: &Checkpoint) -> Result<FloatNet> {
    let get = |key: &str| ckpt.get(key).map(|t| t.data.clone());
    FloatNet::from_tensors(ckpt.net, get).map_err(|e| Error::TensorMismatch {
        net: ckpt.net,
        problem: e.to_string(),
    })
}

/// The observed value range of every node's output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranges(Vec<Option<(f32, f32)>>);

impl Ranges {
    /// Widen `node`'s range to cover `values`.
    pub fn observe(&mut self, node: NodeId, values: &[f32]) {
        if self.0.len() <= node.index() {
            self.0.resize(node.index() + 1, None);
        }
        let r = self.0[node.index()].get_or_insert((f32::INFINITY, f32::NEG_INFINITY));
        for &v in values {
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }

    /// The union of two sets of ranges.
    pub fn merge(mut self, other: Ranges) -> Ranges {
        for (i, r) in other.0.into_iter().enumerate() {
            if let Some((lo, hi)) = r {
                self.observe(NodeId(i as u8), &[lo, hi]);
            }
        }
        self
    }

    /// `node`'s range, if it was observed.
    pub fn get(&self, node: NodeId) -> Option<(f32, f32)> {
        self.0.get(node.index()).copied().flatten()
    }
}

/// The ranges of every node's output over `count` images of `split` spread
/// evenly over it (all of them if it has fewer).
pub fn calibrate(net: &FloatNet, split: &Split, count: usize) -> Ranges {
    let n = split.len();
    let count = count.clamp(1, n.max(1)).min(n);
    (0..count)
        .into_par_iter()
        .fold(Ranges::default, |mut ranges, i| {
            let x = shared::nets::float::normalize(split.image(i * n / count));
            net.forward_observed(&x, &mut |node, t| ranges.observe(node, t));
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

/// Quantise the network in `ckpt` with the calibrated `ranges`, wired by
/// its graph: a layer's output range is its own output's (a concat's part:
/// the concat's, so the parts share it), its input scale that of the
/// tensor the graph wires to it ([`shared::model::LayerSpec::input`]), an
/// add's operands those of its two inputs.
pub fn quantize(ckpt: &Checkpoint, ranges: &Ranges) -> Result<ModelSpec> {
    let net = ckpt.net;
    let g = net.graph();
    let bad = |problem: String| Error::Quantize {
        net: net.name(),
        problem,
    };
    let mut spec = ModelSpec::template(net);
    spec.input = InputSpec::full_range();
    for (i, table) in layers(net).iter().enumerate() {
        let name = table.name.as_str();
        let tensor = g.concat_of(table.node).unwrap_or(table.node);
        let (lo, hi) = ranges
            .get(tensor)
            .ok_or_else(|| bad(format!("no calibrated range for `{}`", g.node(tensor).name)))?;
        let relu = matches!(
            table.activation,
            Activation::Relu | Activation::ReluAfterPool
        );
        // A fused ReLU spends all 256 codes on 0..=hi.
        let (out_scale, out_zp) = activation_quant(if relu { 0.0 } else { lo }, hi);
        let output = if relu {
            OutputQuant::relu(out_zp)
        } else {
            OutputQuant::linear(out_zp)
        };
        // Layers come in graph order, so every source is quantised already.
        let quant = |source: Source| match source {
            Source::Image => (f64::from(spec.input.scale), spec.input.zero_point),
            Source::Layer(j) => {
                let l = &spec.layers[usize::from(j)];
                (f64::from(l.output_scale), l.output.zero_point)
            }
        };
        let add = match table.kind {
            LayerKind::Add => Some(
                AddS8::from_scales(
                    quant(table.input),
                    quant(table.input_b),
                    f64::from(out_scale),
                    output,
                )
                .ok_or_else(|| bad(format!("`{name}`: scales out of range")))?,
            ),
            LayerKind::Conv | LayerKind::Linear => None,
        };
        let in_scale = quant(table.input).0;
        let layer = &mut spec.layers[i];
        layer.output = output;
        layer.output_scale = out_scale;
        match add {
            Some(add) => layer.requant = vec![add.a, add.b, add.out],
            None => quantize_weights(
                ckpt,
                name,
                table.dims,
                in_scale,
                f64::from(out_scale),
                layer,
            )
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
        ckpt.get(&key)
            .map(|t| &t.data)
            .ok_or_else(|| format!("the checkpoint has no `{key}`"))
    };
    let (w, b) = (tensor("weight")?, tensor("bias")?);
    let [co, d1, d2, d3] = dims.map(usize::from);
    let per = d1 * d2 * d3;
    if w.len() != co * per || b.len() != co {
        return Err(format!(
            "`{name}`: {} weights and {} biases, expected {} and {co}",
            w.len(),
            b.len(),
            co * per
        ));
    }
    for c in 0..co {
        let row = &w[c * per..(c + 1) * per];
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        // An all-zero channel: any scale represents it; keep its bias exact.
        let w_scale = if max > 0.0 {
            f64::from(max) / 127.0
        } else {
            1.0 / 127.0
        };
        let dst = &mut layer.weights[c * per..(c + 1) * per];
        for i in 0..d3 {
            for y in 0..d1 {
                for x in 0..d2 {
                    let q = (f64::from(row[(i * d1 + y) * d2 + x]) / w_scale)
                        .round()
                        .clamp(-127.0, 127.0);
                    dst[(y * d2 + x) * d3 + i] = q as i8;
                }
            }
        }
        let acc_scale = in_scale * w_scale;
        layer.bias[c] = (f64::from(b[c]) / acc_scale)
            .round()
            .clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        layer.requant[c] = quantize_multiplier(acc_scale / out_scale).ok_or_else(|| {
            format!(
                "`{name}` channel {c}: multiplier {} out of range",
                acc_scale / out_scale
            )
        })?;
    }
    Ok(())
}

/// Calibrate on `count` images of `train` and quantise: the model file's
/// bytes.
pub fn export(ckpt: &Checkpoint, train: &Split, count: usize) -> Result<Vec<u8>> {
    let net = float_net(ckpt)?;
    let ranges = calibrate(&net, train, count);
    let spec = quantize(ckpt, &ranges)?;
    spec.encode().map_err(|e| Error::Quantize {
        net: net.net().name(),
        problem: format!("the encoder refused the result: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::modules::{to_checkpoint, Net};
    use dfdx::nn::BuildModule;
    use dfdx::prelude::*;
    use files::mnist::{Dataset, Verify, DEFAULT_DATA_DIR};
    use shared::arch::CLASSES;
    use shared::nets::{Arena, Model, ARENA_BYTES};
    use shared::NetId;

    /// An untrained network (dfdx's initialisation, seeded) quantised on
    /// real images: its dequantised int8 logits track its f32 logits. This
    /// checks the wiring of the export (concat scales, the fc permutation,
    /// ReLU clamps, add operands) against `shared`'s float network, which
    /// was written from the PyTorch definitions, not from the int8 code.
    fn untrained_network_tracks_f32<M: Net>() {
        let ds = Dataset::load(DEFAULT_DATA_DIR.as_ref(), Verify::ShapeOnly).unwrap();
        let ckpt = to_checkpoint(&M::build(&Cpu::seed_from_u64(7)));
        let float = float_net(&ckpt).unwrap();
        let spec = quantize(&ckpt, &calibrate(&float, &ds.train, 200)).unwrap();
        let bytes = spec.encode().unwrap();
        let model = Model::decode(&bytes).unwrap();
        let fc = spec.layers.last().unwrap();
        let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
        let (mut worst, mut spread, mut agree) = (0f64, 0f64, 0);
        let n = 100;
        for i in 0..n {
            let f = float.forward_pixels(ds.test.image(i));
            let q = shared::nets::classify(&model, ds.test.image(i), &mut arena, &mut ());
            let mean = f.iter().sum::<f32>() / CLASSES as f32;
            spread = spread.max(
                f.iter()
                    .map(|v| f64::from((v - mean).abs()))
                    .fold(0.0, f64::max),
            );
            for (a, &b) in f.iter().zip(&q.logits) {
                let deq = f64::from(fc.output_scale)
                    * f64::from(i32::from(b) - i32::from(fc.output.zero_point));
                worst = worst.max((deq - f64::from(*a)).abs());
            }
            agree += usize::from(crate::train::eval::argmax(&f) == usize::from(q.class));
        }
        println!(
            "{}: worst logit error {worst:.4}, logit spread {spread:.4}, {agree}/{n} agree",
            M::ID.name()
        );
        assert!(
            worst < 0.1 * spread,
            "{}: int8 logits off by {worst}, spread {spread}",
            M::ID.name()
        );
        assert!(
            agree >= 90,
            "{}: {agree} of {n} predictions agree",
            M::ID.name()
        );
    }

    #[test]
    fn untrained_networks_track_f32() {
        for net in NetId::ALL {
            crate::with_net!(net, M => untrained_network_tracks_f32::<M>());
        }
    }

    #[test]
    fn activation_quant_keeps_zero_exact() {
        for (lo, hi) in [
            (-1.0, 3.0),
            (0.0, 6.0),
            (0.5, 2.0),
            (-4.0, -1.0),
            (0.0, 0.0),
        ] {
            let (scale, zp) = activation_quant(lo, hi);
            assert!(scale > 0.0);
            // The real range covered includes lo, hi and 0.
            let (min, max) = (
                scale * (-128.0 - f32::from(zp)),
                scale * (127.0 - f32::from(zp)),
            );
            assert!(
                min <= lo.min(0.0) + scale && max >= hi.max(0.0) - scale,
                "{lo}..{hi}: {min}..{max}"
            );
        }
    }
}
