//! The crate's one error type: what went wrong while decoding a model file
//! (or, on the host, while filling an f32 network from named tensors).
//!
//! Kernels and forward passes cannot fail (their shapes are types); only
//! decoding returns `Result`. Each variant names the step that failed and
//! carries the values that did not match, so a message such as
//! "layer 5 (incep1.b3_2): weights are 3400 bytes, expected 3456" can be
//! printed without the file at hand.

use crate::graph::NetId;
use crate::model::LayerKind;
use core::fmt;

/// Which part of a model file a truncation or malformed value was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// Magic bytes and format version.
    Preamble,
    /// Op-set, network id, graph signature, layer count and input quantisation.
    Header,
    /// The 4-byte CRC-32 trailer.
    Crc,
}

/// A per-channel (or per-tensor) field of a layer record or f32 layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// int8 weights (bytes) or f32 weights (values).
    Weights,
    /// Bias: 4 bytes (i32 LE) per output channel, or f32 values.
    Bias,
    /// Requantisation multipliers: 5 bytes (i32 LE multiplier, i8 shift) each.
    Requant,
}

/// What is wrong with one layer record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerProblem {
    /// The record ends before its last field.
    Truncated,
    /// A field could not be decoded (bad varint, invalid UTF-8 name, ...).
    Malformed,
    /// The record's name is not the layer the architecture has here.
    Name,
    /// The record's kind byte is not the expected kind.
    Kind {
        /// Kind byte found (see [`LayerKind`]).
        found: u8,
        /// The kind the architecture has here.
        expected: LayerKind,
    },
    /// The record's dimensions differ from the architecture's.
    Shape {
        /// Dimensions found.
        found: [u16; 4],
        /// Dimensions the architecture has.
        expected: [u16; 4],
    },
    /// The record's padding differs from the architecture's.
    Padding {
        /// Padding found.
        found: u8,
        /// Padding the architecture has.
        expected: u8,
    },
    /// A byte field has the wrong length.
    Length {
        /// Which field.
        field: Field,
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A requantisation multiplier is out of range (see
    /// [`Requant::new`](crate::quant::Requant::new)).
    Requant {
        /// Output channel (for an add: 0 = input a, 1 = input b, 2 = output).
        channel: usize,
        /// The stored multiplier.
        multiplier: i32,
        /// The stored shift.
        shift: i8,
    },
    /// The output scale is not a positive finite number.
    Scale,
    /// The clamp range is empty (`min > max`).
    Range {
        /// Lower bound found.
        min: i8,
        /// Upper bound found.
        max: i8,
    },
    /// The clamp does not implement the activation the architecture puts
    /// after this layer (see [`Activation`](crate::model::Activation)).
    Activation {
        /// Output zero point.
        zero_point: i8,
        /// Lower bound found.
        min: i8,
        /// Upper bound found.
        max: i8,
    },
    /// An Inception branch's output quantisation (scale, zero point, clamp)
    /// differs from the first branch's: they share one concat tensor.
    Concat,
}

/// Everything that can go wrong decoding a model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The input ends inside `part`.
    Truncated {
        /// Where.
        part: Part,
    },
    /// A header value could not be decoded (e.g. an over-long varint).
    Malformed {
        /// Where.
        part: Part,
    },
    /// The file does not start with [`MAGIC`](crate::model::MAGIC).
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The format version is not the one this build reads.
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// [`FORMAT_VERSION`](crate::model::FORMAT_VERSION).
        supported: u16,
    },
    /// The file was written for int8 arithmetic other than this build's
    /// kernels implement ([`OPSET`](crate::model::OPSET)).
    UnsupportedOpset {
        /// Op-set in the file.
        found: u16,
        /// [`OPSET`](crate::model::OPSET).
        supported: u16,
    },
    /// The network id byte names no network we know.
    UnknownNetwork {
        /// The id byte.
        id: u8,
    },
    /// The file holds a different network than the one asked for.
    WrongNetwork {
        /// The network asked for.
        expected: NetId,
        /// The network in the file.
        found: NetId,
    },
    /// The file was made for a different architecture of this network
    /// (different layer names, kinds, shapes or activations).
    ShapeSignature {
        /// The network.
        net: NetId,
        /// This build's signature ([`signature`](crate::model::signature)).
        expected: u32,
        /// The signature in the file.
        found: u32,
    },
    /// The header's layer count differs from the architecture's.
    LayerCount {
        /// The network.
        net: NetId,
        /// Layers in the header.
        found: u16,
        /// Layers in the architecture.
        expected: u16,
    },
    /// The input lookup table does not have 256 entries.
    InputLut {
        /// Entries found.
        found: usize,
    },
    /// The input scale is not a positive finite number.
    InputScale,
    /// The CRC-32 trailer does not match the bytes before it.
    CrcMismatch {
        /// The trailer.
        stored: u32,
        /// CRC-32 of the bytes before it.
        computed: u32,
    },
    /// A layer record does not match the architecture.
    Layer {
        /// Position of the record (0-based, file order).
        index: usize,
        /// The layer the architecture has at this position.
        name: &'static str,
        /// What is wrong.
        problem: LayerProblem,
    },
    /// Bytes are left between the last layer record and the CRC trailer.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// An f32 tensor for [`nets::float`](crate::nets) is missing or has the
    /// wrong number of values (host side).
    FloatTensor {
        /// The layer (PyTorch name, e.g. `incep1.b5_2`).
        layer: &'static str,
        /// Weights or bias.
        field: Field,
        /// Values found (`None`: the tensor is missing).
        found: Option<usize>,
        /// Values expected.
        expected: usize,
    },
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Preamble => "preamble (magic, version)",
            Part::Header => "header",
            Part::Crc => "CRC trailer",
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Weights => "weights",
            Field::Bias => "bias",
            Field::Requant => "requant",
        })
    }
}

impl fmt::Display for LayerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerProblem::Truncated => f.write_str("record cut short"),
            LayerProblem::Malformed => f.write_str("record malformed"),
            LayerProblem::Name => f.write_str("record has a different layer name"),
            LayerProblem::Kind { found, expected } => {
                write!(f, "kind byte {found}, expected {expected:?}")
            }
            LayerProblem::Shape { found, expected } => {
                write!(f, "dims {found:?}, expected {expected:?}")
            }
            LayerProblem::Padding { found, expected } => {
                write!(f, "padding {found}, expected {expected}")
            }
            LayerProblem::Length {
                field,
                found,
                expected,
            } => write!(f, "{field} are {found} bytes, expected {expected}"),
            LayerProblem::Requant {
                channel,
                multiplier,
                shift,
            } => write!(
                f,
                "requant {channel} out of range (multiplier {multiplier}, shift {shift})"
            ),
            LayerProblem::Scale => f.write_str("output scale not positive and finite"),
            LayerProblem::Range { min, max } => write!(f, "empty clamp {min}..={max}"),
            LayerProblem::Activation {
                zero_point,
                min,
                max,
            } => write!(
                f,
                "clamp {min}..={max} with zero point {zero_point} is not the activation the \
                 architecture has here"
            ),
            LayerProblem::Concat => f.write_str(
                "output quantisation differs from the other branches of the same concat",
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { part } => write!(f, "model file truncated in the {part}"),
            Error::Malformed { part } => write!(f, "model file malformed in the {part}"),
            Error::BadMagic { found } => write!(f, "not a model file (magic {found:02x?})"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "model format version {found}, this build reads version {supported}"
            ),
            Error::UnsupportedOpset { found, supported } => write!(
                f,
                "model written for int8 op-set {found}, but this build's kernels implement op-set \
                 {supported} (their rounding, the add's left shift, the average pool's /9): \
                 re-export it with this build"
            ),
            Error::UnknownNetwork { id } => write!(f, "unknown network id {id}"),
            Error::WrongNetwork { expected, found } => {
                write!(f, "model file holds {found:?}, expected {expected:?}")
            }
            Error::ShapeSignature {
                net,
                expected,
                found,
            } => write!(
                f,
                "{net:?} model made for another graph (signature {found:#010x}, \
                 expected {expected:#010x})"
            ),
            Error::LayerCount {
                net,
                found,
                expected,
            } => write!(f, "{net:?} model has {found} layers, expected {expected}"),
            Error::InputLut { found } => {
                write!(f, "input lookup table has {found} entries, expected 256")
            }
            Error::InputScale => f.write_str("input scale not positive and finite"),
            Error::CrcMismatch { stored, computed } => write!(
                f,
                "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Error::Layer {
                index,
                name,
                problem,
            } => write!(f, "layer {index} ({name}): {problem}"),
            Error::TrailingBytes { count } => {
                write!(f, "{count} bytes after the last layer record")
            }
            Error::FloatTensor {
                layer,
                field,
                found: None,
                expected,
            } => write!(
                f,
                "f32 {layer} {field} missing ({expected} values expected)"
            ),
            Error::FloatTensor {
                layer,
                field,
                found: Some(found),
                expected,
            } => write!(
                f,
                "f32 {layer} {field}: {found} values, expected {expected}"
            ),
        }
    }
}

#[cfg(any(feature = "std", test))]
impl std::error::Error for Error {}
