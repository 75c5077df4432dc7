//! The f32 forward pass of any network (feature `std`): an interpreter of
//! its graph ([`crate::graph`]), for parity with the trainer and as the
//! host's calibration and float-accuracy engine.
//!
//! Layouts are PyTorch's, so the host copies checkpoint tensors in as they
//! are: conv weights OIHW (`weight[((co * CI + ci) * K + ky) * K + kx]`),
//! linear weights `[out][in]` over the `(C, H, W)` flatten, activations CHW
//! (one image, batch dimension dropped). Input: the normalised image
//! (`arch::normalize_pixel`), row-major.
//!
//! Fill a network with [`FloatNet::from_tensors`], passing a lookup by
//! PyTorch `state_dict` key (`<layer>.weight`, `<layer>.bias`, with the
//! graph's layer names: `conv1.weight`, `incep1.b5_2.bias`, ...).
//! [`FloatNet::forward_observed`] also hands every node's output (after its
//! activation) to a callback: what post-training quantisation calibrates on.

use crate::arch::{normalize_pixel, CLASSES, IMAGE_PIXELS};
use crate::error::{Error, Field};
use crate::graph::{Act, Graph, NetId, Node, NodeId, Op};
use std::vec::Vec;

/// A conv or linear layer's parameters, in PyTorch's layouts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    /// Conv OIHW, linear `[out][in]`.
    pub weight: Vec<f32>,
    /// One per output.
    pub bias: Vec<f32>,
}

/// A network in f32: its graph and the parameters of its convs and linears.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatNet {
    net: NetId,
    /// Per node (empty for nodes without parameters).
    params: Vec<Params>,
}

/// The normalised image.
pub fn normalize(pixels: &[u8; IMAGE_PIXELS]) -> [f32; IMAGE_PIXELS] {
    pixels.map(normalize_pixel)
}

impl FloatNet {
    /// `net` with every parameter 0.
    pub fn zeros(net: NetId) -> FloatNet {
        let g = net.graph();
        let params = (0..g.nodes().len())
            .map(|i| {
                let id = NodeId(i as u8);
                let (fan_in, _) = g.fan_in(id);
                let outputs = if fan_in > 0 {
                    g.node(id).channels as usize
                } else {
                    0
                };
                Params {
                    weight: vec![0.0; outputs * fan_in],
                    bias: vec![0.0; outputs],
                }
            })
            .collect();
        FloatNet { net, params }
    }

    /// `net` filled from tensors looked up by PyTorch `state_dict` key; a
    /// missing tensor or a wrong length is an error naming it.
    pub fn from_tensors(
        net: NetId,
        mut get: impl FnMut(&str) -> Option<Vec<f32>>,
    ) -> Result<FloatNet, Error> {
        let mut n = FloatNet::zeros(net);
        for (layer, p) in n.parameters_mut() {
            for (field, dst) in [(Field::Weights, &mut p.weight), (Field::Bias, &mut p.bias)] {
                let key = match field {
                    Field::Bias => format!("{layer}.bias"),
                    _ => format!("{layer}.weight"),
                };
                let expected = dst.len();
                let found = get(&key);
                match found {
                    Some(v) if v.len() == expected => *dst = v,
                    found => {
                        return Err(Error::FloatTensor {
                            layer,
                            field,
                            found: found.map(|v| v.len()),
                            expected,
                        })
                    }
                }
            }
        }
        Ok(n)
    }

    /// The network.
    pub fn net(&self) -> NetId {
        self.net
    }

    /// Every conv's and linear's parameters with its layer name, in node
    /// order.
    pub fn parameters_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut Params)> {
        let g = self.net.graph();
        self.params
            .iter_mut()
            .zip(g.nodes())
            .filter(|(p, _)| !p.bias.is_empty())
            .map(|(p, node)| (node.name.as_str(), p))
    }

    /// The parameters of the conv or linear layer `name`.
    pub fn layer(&self, name: &str) -> Option<&Params> {
        let g = self.net.graph();
        let i = g.nodes().iter().position(|n| n.name.is(name))?;
        Some(&self.params[i]).filter(|p| !p.bias.is_empty())
    }

    /// Logits for a normalised image.
    pub fn forward(&self, x: &[f32; IMAGE_PIXELS]) -> [f32; CLASSES] {
        self.forward_observed(x, &mut |_, _| {})
    }

    /// Logits for raw pixels (normalised here).
    pub fn forward_pixels(&self, pixels: &[u8; IMAGE_PIXELS]) -> [f32; CLASSES] {
        self.forward(&normalize(pixels))
    }

    /// [`FloatNet::forward`], handing every node's output (CHW, after its
    /// activation) to `observe`, in node order.
    pub fn forward_observed(
        &self,
        x: &[f32; IMAGE_PIXELS],
        observe: &mut dyn FnMut(NodeId, &[f32]),
    ) -> [f32; CLASSES] {
        let g = self.net.graph();
        let mut values: Vec<Vec<f32>> = Vec::with_capacity(g.nodes().len());
        for (i, node) in g.nodes().iter().enumerate() {
            let mut out = compute(g, node, &self.params[i], &values, x);
            if node.act == Act::Relu {
                for v in out.iter_mut() {
                    *v = v.max(0.0);
                }
            }
            observe(NodeId(i as u8), &out);
            values.push(out);
        }
        let logits = values.last().map(|v| v.as_slice()).unwrap_or_default();
        core::array::from_fn(|i| logits.get(i).copied().unwrap_or(f32::NAN))
    }
}

/// One node's output (before its activation), from the outputs of the
/// nodes before it.
fn compute(g: &Graph, node: &Node, p: &Params, values: &[Vec<f32>], x: &[f32]) -> Vec<f32> {
    let shape = |id: NodeId| {
        let n = g.node(id);
        (n.channels as usize, n.side as usize)
    };
    match node.op {
        Op::Input => x.to_vec(),
        Op::Conv { input, kernel, pad } => {
            let (ci, side) = shape(input);
            let mut out = vec![0f32; node.tensor_bytes()];
            conv(
                p,
                &values[input.index()],
                (ci, side),
                (kernel as usize, pad as usize),
                &mut out,
            );
            out
        }
        Op::Linear { input } => {
            let x = &values[input.index()];
            p.weight
                .chunks_exact(x.len())
                .zip(&p.bias)
                .map(|(row, &b)| b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>())
                .collect()
        }
        Op::MaxPool2 { input } => {
            let (c, side) = shape(input);
            maxpool2(&values[input.index()], c, side)
        }
        Op::AvgPool3 { input } => {
            let (c, side) = shape(input);
            avgpool3(&values[input.index()], c, side)
        }
        Op::Add { a, b } => {
            let (a, b) = (&values[a.index()], &values[b.index()]);
            a.iter().zip(b).map(|(a, b)| a + b).collect()
        }
        Op::Concat { inputs, count } => inputs[..count as usize]
            .iter()
            .flat_map(|i| values[i.index()].iter().copied())
            .collect(),
    }
}

/// `out` (CHW, `CO x HO x WO`) = the conv with parameters `p` of `input`
/// (CHW, `ci x side x side`), kernel `k`, zero padding `pad`. Per output
/// plane: the bias, then for each input channel and tap an axpy over the
/// valid output rows (padded taps skipped).
fn conv(
    p: &Params,
    input: &[f32],
    (ci, side): (usize, usize),
    (k, pad): (usize, usize),
    out: &mut [f32],
) {
    let (h, w) = (side, side);
    let ho = h + 2 * pad + 1 - k;
    let wo = w + 2 * pad + 1 - k;
    for (co, plane) in out.chunks_exact_mut(ho * wo).enumerate() {
        plane.fill(p.bias[co]);
        for c in 0..ci {
            let x = &input[c * h * w..(c + 1) * h * w];
            for ky in 0..k {
                // Output rows whose input row oy + ky - pad is inside.
                let oy0 = pad.saturating_sub(ky);
                let oy1 = ho.min((h + pad).saturating_sub(ky));
                for kx in 0..k {
                    let wv = p.weight[((co * ci + c) * k + ky) * k + kx];
                    let ox0 = pad.saturating_sub(kx);
                    let ox1 = wo.min((w + pad).saturating_sub(kx));
                    if ox0 >= ox1 {
                        continue;
                    }
                    for oy in oy0..oy1 {
                        let iy = oy + ky - pad;
                        let src = &x[iy * w + ox0 + kx - pad..iy * w + ox1 + kx - pad];
                        let dst = &mut plane[oy * wo + ox0..oy * wo + ox1];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d += wv * s;
                        }
                    }
                }
            }
        }
    }
}

/// 2x2 stride-2 max pool (floor), CHW.
fn maxpool2(x: &[f32], c: usize, s: usize) -> Vec<f32> {
    let so = s / 2;
    let mut out = vec![0f32; c * so * so];
    for ch in 0..c {
        for oy in 0..so {
            for ox in 0..so {
                let at = |y: usize, x_: usize| x[(ch * s + y) * s + x_];
                out[(ch * so + oy) * so + ox] = at(2 * oy, 2 * ox)
                    .max(at(2 * oy, 2 * ox + 1))
                    .max(at(2 * oy + 1, 2 * ox))
                    .max(at(2 * oy + 1, 2 * ox + 1));
            }
        }
    }
    out
}

/// 3x3 stride-1 average pool with padding 1 counted as zeros (always / 9).
fn avgpool3(x: &[f32], c: usize, s: usize) -> Vec<f32> {
    let mut out = vec![0f32; c * s * s];
    for ch in 0..c {
        for y in 0..s {
            for x_ in 0..s {
                let mut sum = 0.0;
                for iy in y.saturating_sub(1)..s.min(y + 2) {
                    for ix in x_.saturating_sub(1)..s.min(x_ + 2) {
                        sum += x[(ch * s + iy) * s + ix];
                    }
                }
                out[(ch * s + y) * s + x_] = sum / 9.0;
            }
        }
    }
    out
}
