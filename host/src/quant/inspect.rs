//! `host inspect`: what a model file holds and what it costs on the chip —
//! header, layers with shapes and scales, flash bytes, and the activation
//! RAM of one inference (the network's static buffer plan, which `host size`
//! prints too).

use serde::Serialize;
use shared::model::{layers, File, LayerKind, ModelSpec, FORMAT_VERSION};
use shared::nets::{plan, Plan, Region};
use shared::NetId;
use std::fmt::{self, Write as _};

/// One layer record, summarised.
#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    /// PyTorch module name.
    pub name: String,
    /// `conv`, `linear` or `add`.
    pub kind: &'static str,
    /// Conv `[CO, K, K, CI]` (OHWI), fc `[O, H, W, C]`, add `[H, W, C]`.
    pub shape: Vec<u16>,
    /// Zero padding.
    pub pad: u8,
    /// Multiply-accumulates per inference.
    pub macs: usize,
    /// Bytes of weights, bias and requants in the file.
    pub bytes: usize,
    /// Output scale.
    pub output_scale: f32,
    /// Output zero point.
    pub output_zero_point: i8,
    /// Output clamp (a fused ReLU starts at the zero point).
    pub clamp: (i8, i8),
    /// Smallest and largest requantisation multiplier (as reals).
    pub multipliers: (f64, f64),
}

/// What `host inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The network.
    pub net: &'static str,
    /// Model format version.
    pub version: u16,
    /// The int8 arithmetic the file was written for.
    pub opset: u16,
    /// The graph signature stored in the header.
    pub signature: u32,
    /// The CRC-32 trailer (checked).
    pub crc: u32,
    /// Bytes of the whole file: the flash it takes.
    pub file_bytes: usize,
    /// Of which int8 weights.
    pub weight_bytes: usize,
    /// Input tensor scale and zero point.
    pub input: (f32, i8),
    /// The layer records in file order.
    pub layers: Vec<LayerInfo>,
    /// Multiply-accumulates per inference.
    pub macs: usize,
    /// The activation RAM of one inference (`arena_bytes` and `buffers` in JSON).
    #[serde(flatten)]
    pub plan: BufferPlan,
}

/// A network's static buffer plan ([`shared::nets`]), as the firmware runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BufferPlan {
    /// Peak activation RAM of one inference: the arena of the buffer plan.
    pub arena_bytes: usize,
    /// The plan's buffers (name, offset, bytes), by offset.
    pub buffers: Vec<(&'static str, usize, usize)>,
}

impl BufferPlan {
    /// The arena and the buffers of `net`'s plan.
    pub fn of(net: NetId) -> BufferPlan {
        let plan = plan(net);
        BufferPlan {
            arena_bytes: plan.arena_bytes(),
            buffers: buffers(plan),
        }
    }
}

/// The buffers a plan writes, each once, by offset.
fn buffers(plan: &Plan) -> Vec<(&'static str, usize, usize)> {
    let mut out: Vec<Region> = Vec::new();
    for r in plan.steps.iter().flat_map(|s| s.writes) {
        if !out.contains(r) {
            out.push(*r);
        }
    }
    out.sort_by_key(|r| (r.offset, r.name));
    out.into_iter().map(|r| (r.name, r.offset, r.len)).collect()
}

impl fmt::Display for BufferPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "activation RAM of one inference: {} bytes ({:.1} KiB), planned by liveness:",
            self.arena_bytes,
            self.arena_bytes as f64 / 1024.0
        )?;
        for (name, offset, len) in &self.buffers {
            writeln!(
                f,
                "  {name:<8} {offset:>6}..{:<6} {len:>6} bytes",
                offset + len
            )?;
        }
        Ok(())
    }
}

/// Inspect a model file; errors are the decoder's, naming what is wrong.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, shared::Error> {
    let spec = ModelSpec::decode(bytes)?;
    let file = File::parse(bytes, Some(spec.net))?;
    let layers: Vec<LayerInfo> = spec
        .layers
        .iter()
        .zip(layers(spec.net))
        .map(|(l, table)| {
            let reals = l.requant.iter().map(|r| r.to_f64());
            LayerInfo {
                name: l.name.clone(),
                kind: match l.kind {
                    LayerKind::Conv => "conv",
                    LayerKind::Linear => "linear",
                    LayerKind::Add => "add",
                },
                shape: if l.kind == LayerKind::Add {
                    l.dims[..3].to_vec()
                } else {
                    l.dims.to_vec()
                },
                pad: l.pad,
                macs: table.macs(),
                bytes: l.weights.len()
                    + 4 * l.bias.len()
                    + shared::model::REQUANT_BYTES * l.requant.len(),
                output_scale: l.output_scale,
                output_zero_point: l.output.zero_point,
                clamp: (l.output.range.min(), l.output.range.max()),
                multipliers: (
                    reals.clone().fold(f64::INFINITY, f64::min),
                    reals.fold(0.0, f64::max),
                ),
            }
        })
        .collect();
    Ok(Inspection {
        net: spec.net.name(),
        version: FORMAT_VERSION,
        opset: file.header.opset,
        signature: file.header.signature,
        crc: file.crc,
        file_bytes: bytes.len(),
        weight_bytes: spec.layers.iter().map(|l| l.weights.len()).sum(),
        input: (spec.input.scale, spec.input.zero_point),
        macs: layers.iter().map(|l| l.macs).sum(),
        layers,
        plan: BufferPlan::of(spec.net),
    })
}

impl Inspection {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} model, format v{}, op-set {}, graph signature {:#010x}, CRC-32 {:#010x} (ok)",
            self.net, self.version, self.opset, self.signature, self.crc
        );
        let _ = writeln!(
            s,
            "flash: {} bytes ({} of int8 weights); {} MACs per inference",
            self.file_bytes, self.weight_bytes, self.macs
        );
        let _ = writeln!(
            s,
            "input: scale {:.6}, zero point {}\n",
            self.input.0, self.input.1
        );
        let _ = writeln!(
            s,
            "{:<13} {:<6} {:<16} {:>3} {:>9} {:>7} {:>10} {:>4} {:>10}  multipliers",
            "layer", "kind", "shape", "pad", "MACs", "bytes", "out scale", "zp", "clamp"
        );
        for l in &self.layers {
            let shape = l
                .shape
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join("x");
            let _ = writeln!(
                s,
                "{:<13} {:<6} {:<16} {:>3} {:>9} {:>7} {:>10.6} {:>4} {:>10}  {:.3e}..{:.3e}",
                l.name,
                l.kind,
                shape,
                l.pad,
                l.macs,
                l.bytes,
                l.output_scale,
                l.output_zero_point,
                format!("{}..{}", l.clamp.0, l.clamp.1),
                l.multipliers.0,
                l.multipliers.1
            );
        }
        let _ = write!(s, "\n{}", self.plan);
        s
    }
}
