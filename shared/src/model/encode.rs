//! The host side of the model file: an owned, easy-to-fill description of a
//! quantised network ([`ModelSpec`]) and its encoder.

use super::decode::{Layers, REQUANT_BYTES};
use super::layers::{layers, signature, Activation, LayerKind};
use super::wire::{File, Header, LayerRecord, OutputRecord, Preamble};
use super::{crc32, NetId, FORMAT_VERSION, INPUT_LUT_LEN, MAGIC, OPSET};
use crate::arch::normalize_pixel;
use crate::error::Error;
use crate::kernels::{ActRange, OutputQuant};
use crate::quant::Requant;
use std::string::{String, ToString};
use std::vec::Vec;

/// The input quantisation: scale, zero point and the pixel lookup table.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    /// Scale of the int8 input tensor.
    pub scale: f32,
    /// Zero point of the int8 input tensor.
    pub zero_point: i8,
    /// `lut[p]`: the int8 input value for raw pixel value `p`.
    pub lut: [i8; INPUT_LUT_LEN],
}

impl InputSpec {
    /// The table for an input tensor quantised with `scale` and
    /// `zero_point`: `lut[p] = clamp(round(normalize_pixel(p) / scale) +
    /// zero_point, -128, 127)`, rounding half away from zero, in f64 from
    /// the f32 normalised value the float network sees.
    pub fn new(scale: f32, zero_point: i8) -> InputSpec {
        let mut lut = [0i8; INPUT_LUT_LEN];
        for (p, q) in lut.iter_mut().enumerate() {
            let real = normalize_pixel(p as u8) as f64;
            let v = (real / scale as f64).round() + zero_point as f64;
            *q = v.clamp(-128.0, 127.0) as i8;
        }
        InputSpec {
            scale,
            zero_point,
            lut,
        }
    }

    /// The usual choice: the range of the normalised pixels
    /// (`normalize_pixel(0)..=normalize_pixel(255)`) spread over -128..=127.
    pub fn full_range() -> InputSpec {
        let (lo, hi) = (normalize_pixel(0) as f64, normalize_pixel(255) as f64);
        let scale = (hi - lo) / 255.0;
        let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i8;
        InputSpec::new(scale as f32, zero_point)
    }
}

/// One layer record, owned (see [`LayerKind`] and the module docs of
/// [`crate::model`] for each field's meaning).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerData {
    /// The PyTorch module name (`conv1`, `incep1.b5_2`, `r1.add`, `fc`).
    pub name: String,
    /// Conv, fc or add.
    pub kind: LayerKind,
    /// Conv `[CO, K, K, CI]`, fc `[O, H, W, C]`, add `[H, W, C, 0]`.
    pub dims: [u16; 4],
    /// Zero padding (convs).
    pub pad: u8,
    /// int8 weights: conv OHWI, fc `[O][H][W][C]`; empty for an add.
    pub weights: Vec<i8>,
    /// int32 bias per output channel; empty for an add.
    pub bias: Vec<i32>,
    /// One per output channel; for an add `[a, b, out]` of
    /// [`AddS8::from_scales`](crate::kernels::AddS8::from_scales).
    pub requant: Vec<Requant>,
    /// Output zero point and clamp.
    pub output: OutputQuant,
    /// Output scale.
    pub output_scale: f32,
}

/// A whole quantised network, owned: what the host's exporter fills and
/// [`ModelSpec::encode`] writes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The network.
    pub net: NetId,
    /// Input quantisation.
    pub input: InputSpec,
    /// The layers in file order ([`layers()`]).
    pub layers: Vec<LayerData>,
}

impl ModelSpec {
    /// Every layer of `net` in file order with its name, kind, dims and
    /// padding, zero weights and bias, [`Requant::ZERO`], output scale 1,
    /// zero point 0 and the clamp its activation needs. Fill in the rest.
    pub fn template(net: NetId) -> ModelSpec {
        let layers = layers(net)
            .iter()
            .map(|l| LayerData {
                name: l.name.as_str().to_string(),
                kind: l.kind,
                dims: l.dims,
                pad: l.pad,
                weights: vec![0; l.weight_bytes()],
                bias: vec![0; l.bias_len()],
                requant: vec![Requant::ZERO; l.requant_len()],
                output: match l.activation {
                    Activation::Relu => OutputQuant::relu(0),
                    Activation::None | Activation::ReluAfterPool => OutputQuant::linear(0),
                },
                output_scale: 1.0,
            })
            .collect();
        ModelSpec {
            net,
            input: InputSpec::full_range(),
            layers,
        }
    }

    /// The layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerData> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The layer named `name`, to fill in.
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut LayerData> {
        self.layers.iter_mut().find(|l| l.name == name)
    }

    /// The model file. Refuses (with the decoder's error) a spec the decoder
    /// would refuse: the bytes are decoded and checked before they are
    /// returned.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let bytes = self.encode_unchecked();
        Layers::check_all(&bytes)?;
        Ok(bytes)
    }

    /// The bytes, whatever the spec holds.
    pub(crate) fn encode_unchecked(&self) -> Vec<u8> {
        self.encode_edited(|_| {}, |_, _| {})
    }

    /// The bytes, with the header and each layer record passed through an
    /// editing function before they are written (tests build bad files with
    /// it). The CRC is computed over what was written.
    pub(crate) fn encode_edited(
        &self,
        mut edit_header: impl FnMut(&mut Header<'_>),
        mut edit_layer: impl FnMut(usize, &mut LayerRecord<'_>),
    ) -> Vec<u8> {
        fn put<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
            let v = postcard::to_extend(value, core::mem::take(out));
            *out = v.expect("postcard writes to a Vec");
        }
        let mut out = Vec::new();
        put(
            &mut out,
            &Preamble {
                magic: MAGIC,
                version: FORMAT_VERSION,
            },
        );
        let mut header = Header {
            net: self.net as u8,
            opset: OPSET,
            signature: signature(self.net),
            layer_count: self.layers.len() as u16,
            input_scale: self.input.scale,
            input_zero_point: self.input.zero_point,
            input_lut: bytemuck::cast_slice(&self.input.lut),
        };
        edit_header(&mut header);
        put(&mut out, &header);
        for (i, l) in self.layers.iter().enumerate() {
            let bias: Vec<u8> = l.bias.iter().flat_map(|b| b.to_le_bytes()).collect();
            let requant: Vec<u8> = l
                .requant
                .iter()
                .flat_map(|r| {
                    let m = r.multiplier().to_le_bytes();
                    [m[0], m[1], m[2], m[3], r.shift() as i8 as u8]
                })
                .collect();
            debug_assert_eq!(requant.len(), REQUANT_BYTES * l.requant.len());
            let mut rec = LayerRecord {
                name: &l.name,
                kind: l.kind as u8,
                dims: l.dims,
                pad: l.pad,
                weights: bytemuck::cast_slice(&l.weights),
                bias: &bias,
                requant: &requant,
                output: OutputRecord {
                    scale: l.output_scale,
                    zero_point: l.output.zero_point,
                    min: l.output.range.min(),
                    max: l.output.range.max(),
                },
            };
            edit_layer(i, &mut rec);
            put(&mut out, &rec);
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// A checked model file back as a spec (for inspection and round trips).
    pub fn decode(bytes: &[u8]) -> Result<ModelSpec, Error> {
        Layers::check_all(bytes)?;
        let file = File::parse(bytes, None)?;
        let mut lut = [0i8; INPUT_LUT_LEN];
        for (q, &b) in lut.iter_mut().zip(file.header.input_lut) {
            *q = b as i8;
        }
        let mut layers = Vec::new();
        for r in file.records() {
            let (spec, rec) = r?;
            let requant = rec
                .requant
                .chunks_exact(REQUANT_BYTES)
                .map(|b| {
                    let m = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    // Checked by Layers::check_all above.
                    Requant::new(m, b[4] as i8 as i32).unwrap_or(Requant::ZERO)
                })
                .collect();
            let o = rec.output;
            layers.push(LayerData {
                name: spec.name.to_string(),
                kind: spec.kind,
                dims: rec.dims,
                pad: rec.pad,
                weights: rec.weights.iter().map(|&b| b as i8).collect(),
                bias: rec
                    .bias
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                requant,
                output: OutputQuant {
                    zero_point: o.zero_point,
                    range: ActRange::new(o.min, o.max).unwrap_or(ActRange::FULL),
                },
                output_scale: o.scale,
            });
        }
        Ok(ModelSpec {
            net: file.net,
            input: InputSpec {
                scale: file.header.input_scale,
                zero_point: file.header.input_zero_point,
                lut,
            },
            layers,
        })
    }

    /// A random but plausible quantised network (deterministic in `seed`):
    /// uniform int8 weights, and biases and multipliers sized so that
    /// activations spread over the int8 range instead of saturating. For
    /// tests and fuzzing without a trained model (feature `testutil`).
    #[cfg(any(test, feature = "testutil"))]
    pub fn synthetic(net: NetId, seed: u64) -> ModelSpec {
        use crate::graph::Source;
        use crate::kernels::AddS8;
        use crate::quant::quantize_multiplier;
        let mut rng = crate::testutil::Rng::new(seed ^ 0x5eed_5eed_5eed_5eed);
        let mut spec = ModelSpec::template(net);
        spec.input = InputSpec::full_range();
        for (i, table) in layers(net).iter().enumerate() {
            let relu = match table.activation {
                Activation::Relu => true,
                Activation::None => false,
                Activation::ReluAfterPool => rng.below(2) == 0,
            };
            let zp = if relu {
                -128 + rng.below(12) as i8
            } else {
                rng.below(61) as i8 - 30
            };
            let scale = 0.01 + 0.1 * rng.unit() as f32;
            let output = if relu {
                OutputQuant::relu(zp)
            } else {
                OutputQuant::linear(zp)
            };
            // A concat's parts share its first part's quantisation.
            let (output, scale) = match table.shares_output_of {
                Some(first) => {
                    let f = &spec.layers[first as usize];
                    (f.output, f.output_scale)
                }
                None => (output, scale),
            };
            let quant = |source: Source| match source {
                Source::Image => (spec.input.scale as f64, spec.input.zero_point),
                Source::Layer(j) => {
                    let l = &spec.layers[j as usize];
                    (l.output_scale as f64, l.output.zero_point)
                }
            };
            let add = (table.kind == LayerKind::Add).then(|| {
                AddS8::from_scales(
                    quant(table.input),
                    quant(table.input_b),
                    scale as f64 * 2.0,
                    output,
                )
                .expect("positive scales")
            });
            let l = &mut spec.layers[i];
            l.output = output;
            l.output_scale = scale;
            match add {
                Some(p) => l.requant = vec![p.a, p.b, p.out],
                None => {
                    for w in l.weights.iter_mut() {
                        *w = rng.next_u64() as i8;
                        if *w == -128 {
                            *w = -127; // symmetric weights
                        }
                    }
                    // Typical |x - zp| about 40, |w| about 73; padded taps
                    // count too, which keeps the spread modest.
                    let n = (table.weight_bytes() / table.out_channels()) as f64;
                    let acc_std = 73.0 * 40.0 * n.sqrt();
                    for b in l.bias.iter_mut() {
                        *b = ((rng.unit() - 0.5) * acc_std) as i32;
                    }
                    for r in l.requant.iter_mut() {
                        let real = 30.0 / acc_std * 2f64.powf(rng.unit() * 2.0 - 1.0);
                        *r = quantize_multiplier(real).expect("a small positive multiplier");
                    }
                }
            }
        }
        spec
    }
}
