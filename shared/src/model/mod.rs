//! The model file: one quantised network, written by the host, embedded in
//! the firmware's flash and decoded there in place.
//!
//! # Layout
//!
//! A model file is a sequence of [postcard] records followed by a CRC:
//!
//! | # | record | postcard fields, in order, and their encoding |
//! |---|--------|-----------------------------------------------|
//! | 1 | [`Preamble`] | `magic: [u8; 4]` = [`MAGIC`] (`b"MNQ8"`: 4 raw bytes, a fixed-size array has no length), `version: u16` = [`FORMAT_VERSION`] (varint) |
//! | 2 | [`Header`] | `net: u8` ([`NetId`]: 1 byte), `opset: u16` ([`OPSET`]: varint), `signature: u32` ([`signature`] of that network: varint), `layer_count: u16` (varint), `input_scale: f32` (4 bytes, little-endian IEEE 754), `input_zero_point: i8` (1 byte, two's complement), `input_lut: bytes` (varint length 256, then 256 bytes, each an int8 value in two's complement) |
//! | 3.. | [`LayerRecord`], `layer_count` times, in the order of [`layers()`] | `name: str` (varint length, then UTF-8), `kind: u8` ([`LayerKind`]: 1 byte), `dims: [u16; 4]` (4 varints, no length), `pad: u8` (1 byte), `weights: bytes`, `bias: bytes`, `requant: bytes` (each a varint length, then that many bytes, laid out as below), `output`: `scale: f32` (4 bytes LE), `zero_point: i8`, `min: i8`, `max: i8` (1 byte each) |
//! | end | CRC | 4 bytes: CRC-32 (ISO-HDLC, as zlib and PNG) of every byte before it (preamble, header and every record), little-endian |
//!
//! postcard's varint is unsigned LEB128: 7 bits per byte, the least
//! significant group first, the high bit set on every byte but the last
//! (so values below 128 take one byte). `u8` and `i8` are single raw bytes;
//! no field of the format is a signed varint.
//!
//! Per layer record (`CO` output channels; see [`LayerKind`]):
//! - `weights`: int8, conv OHWI `[CO][K][K][CI]`, fc `[O][H][W][C]` (the
//!   features in HWC order), nothing for an add. From PyTorch's tensors:
//!   `conv[co][ky][kx][ci] = torch[co][ci][ky][kx]` and
//!   `fc[o][y][x][c] = torch[o][c * H * W + y * W + x]`;
//! - `bias`: `CO` int32, each 4 bytes little-endian, at scale
//!   `in_scale * w_scale[c]` (nothing for an add);
//! - `requant`: 5 bytes per multiplier, the Q31 `multiplier` as i32
//!   little-endian then the `shift` as one i8 byte (see
//!   [`Requant`](crate::quant::Requant)): one per output
//!   channel, `in_scale * w_scale[c] / out_scale`; an add has three, for
//!   input a, input b and the output, as [`AddS8`](crate::kernels::AddS8)
//!   defines them;
//! - `output`: the output tensor's scale, zero point and clamp.
//!
//! Decoding ([`Model::decode`](crate::nets::Model::decode) for any network,
//! or [`Decode::decode`] for one network's typed model) checks, in order:
//! magic, version, op-set (a file written for other int8 arithmetic is
//! refused by name), network id (and that it is the one asked for), the
//! graph signature (the network's whole graph, wiring included), the layer
//! count, the input table's
//! length and scale, the CRC, then every record against [`layers()`] (see
//! [`Layers`]): name, kind, dims, padding, the length of every byte field,
//! every requant's range, the output scale, that the clamp is a range
//! (`min <= max`) and implements the
//! layer's [`Activation`], that the parts of a concat share one output
//! quantisation, and that no byte is left over. Any mismatch is an
//! [`Error`](crate::error::Error) naming it; no input makes the decoder
//! panic. After decoding, the int8 weights are borrowed from the input
//! bytes (a model in flash is never copied to RAM); the per-channel bias
//! and requant arrays (12 bytes per output channel: about 4 KB for
//! InceptionNet, 1 KB for the ResNet) are copied into the typed model.
//!
//! # What the host supplies
//!
//! Build a [`ModelSpec`] (feature `std`; [`ModelSpec::template`] gives every
//! layer with its name and dims) and call [`ModelSpec::encode`], which
//! refuses a spec the decoder would refuse. TFLite conventions
//! ([`crate::kernels`]): weights int8 symmetric per output channel; int32
//! bias at `in_scale * w_scale[c]`; activations int8 asymmetric per tensor,
//! `real = scale * (q - zero_point)`; multipliers from
//! [`quantize_multiplier`](crate::quant::quantize_multiplier).
//!
//! - **Input**: the input tensor's `scale` and `zero_point`, and the table
//!   `lut[p] = clamp(round(normalize(p) / scale) + zero_point)` for every raw
//!   pixel `p` (normalisation `(p/255 - 0.1307)/0.3081` folded in;
//!   [`InputSpec::new`] computes it).
//! - **Every conv and fc**: int8 weights (OHWI / `[O][H][W][C]`), int32 bias,
//!   a requant per output channel (`in_scale * w_scale[c] / out_scale`), and
//!   its output tensor's scale, zero point and clamp. The input zero point is
//!   not stored: it is the output zero point of the tensor the graph wires
//!   to the layer ([`LayerSpec::input`]; max and average pools keep their
//!   input's scale and zero point), so every layer's `in_scale` is that
//!   tensor's `out_scale`.
//! - **Every add** (`r1.add`, `rb1.add`, ...; `a` and `b` its operands in
//!   the graph's order, `a` the block's `conv2`): the three requants of
//!   [`AddS8::from_scales`](crate::kernels::AddS8::from_scales), in order a,
//!   b, out, and the output scale, zero point and clamp.
//! - **Clamps** (ReLU is fused as a clamp at the zero point, see
//!   [`Activation`]): a layer with ReLU in the graph: ReLU
//!   (`zero_point..=127`); a layer followed only by a max pool with ReLU
//!   (InceptionNet's `conv1`, `conv2`; the forward applies the ReLU as the
//!   pool's clamp): either; all others: the full range.
//! - **Concats**: each part (the last conv of each Inception branch: `b1`,
//!   `b5_2`, `b3_3`, `bp`) writes its channel slice of the concat directly,
//!   so all parts have the concat's output scale, zero point and clamp (the
//!   decoder checks this).
//! - **Logits**: fc's output quantisation gives ten int8 logits; the
//!   prediction is their argmax (ties to the lowest index).
//!
//! The host's exporter (`host/src/quant/export.rs`) is the worked example: it
//! calibrates on
//! [`forward_observed`](crate::nets::float::FloatNet::forward_observed)
//! of the f32 network and fills a [`ModelSpec`] from a trained checkpoint,
//! wired by the graph.

mod decode;
#[cfg(any(feature = "std", test))]
mod encode;
pub mod layers;
mod wire;

#[cfg(test)]
mod tests;

pub use decode::{
    AddLayer, Checked, ConvLayer, Decode, FromRecord, InputQuant, Layers, LinearLayer,
    REQUANT_BYTES,
};
#[cfg(any(feature = "std", test))]
pub use encode::{InputSpec, LayerData, ModelSpec};
pub use layers::{layers, signature, Activation, LayerKind, LayerSpec, MAX_LAYERS};
pub use wire::{File, Header, LayerRecord, OutputRecord, Preamble, Records};

use crate::graph::NetId;

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"MNQ8";

/// The format version this build writes and reads. Version 2 added
/// [`OPSET`] to the header and made the signature cover the whole graph.
pub const FORMAT_VERSION: u16 = 2;

/// The int8 arithmetic this build's kernels implement, which a model file
/// must have been written for: TFLite-style requantisation (one rounding
/// doubling high multiply, then a rounding right shift, half away from
/// zero), the residual add's inputs shifted left by
/// [`ADD_LEFT_SHIFT`](crate::kernels::ADD_LEFT_SHIFT) before their
/// multipliers, the 3x3 average pool's sum divided by 9 (rounded half away
/// from zero, padding counted), max pools and ReLU as clamps keeping the
/// quantisation, the input table. Bump it with any change to these: a
/// test pins the reference kernels' outputs to it, and the decoder refuses
/// a file of another op-set by name.
pub const OPSET: u16 = 1;

/// Entries of the input lookup table (one per raw pixel value).
pub const INPUT_LUT_LEN: usize = 256;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (ISO-HDLC: the zlib / PNG / Ethernet CRC) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}
