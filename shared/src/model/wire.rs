//! The records of a model file as postcard sees them, and the first,
//! network-independent decoding step: preamble, header and CRC checks, then
//! an iterator over the layer records. Everything borrows from the input.

use super::layers::{self, LayerKind, LayerSpec};
use super::{crc32, NetId, FORMAT_VERSION, INPUT_LUT_LEN, MAGIC, OPSET};
use crate::error::{Error, LayerProblem, Part};
use serde::{Deserialize, Serialize};

/// The first record: never changes between format versions, so a reader
/// can always tell a file it cannot read from a file that is not a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preamble {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u16,
}

/// The second record: which network, for which architecture, and how the
/// input pixels are quantised.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header<'a> {
    /// [`NetId`] as a byte.
    pub net: u8,
    /// [`OPSET`]: the int8 arithmetic the file was written for.
    pub opset: u16,
    /// [`layers::signature`] of the network the file was made for.
    pub signature: u32,
    /// Number of layer records that follow.
    pub layer_count: u16,
    /// Scale of the input tensor (informational: the lookup table applies it).
    pub input_scale: f32,
    /// Zero point of the input tensor.
    pub input_zero_point: i8,
    /// 256 bytes: the int8 input value (as a two's complement byte) of each
    /// raw pixel value 0..=255, normalisation included.
    #[serde(borrow)]
    pub input_lut: &'a [u8],
}

/// The quantisation of a layer's output tensor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Real value of one step (informational for the int8 path; the
    /// requants already contain it).
    pub scale: f32,
    /// Zero point.
    pub zero_point: i8,
    /// Clamp lower bound (the zero point for a fused ReLU, else -128).
    pub min: i8,
    /// Clamp upper bound (127).
    pub max: i8,
}

/// One layer record.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord<'a> {
    /// The layer's name ([`LayerSpec::name`]).
    pub name: &'a str,
    /// [`LayerKind`] as a byte.
    pub kind: u8,
    /// Dimensions ([`LayerSpec::dims`]).
    pub dims: [u16; 4],
    /// Zero padding.
    pub pad: u8,
    /// int8 weights (two's complement bytes): OHWI for a conv,
    /// `[O][H][W][C]` for fc, empty for an add.
    #[serde(borrow)]
    pub weights: &'a [u8],
    /// int32 little-endian, one per output channel (empty for an add).
    #[serde(borrow)]
    pub bias: &'a [u8],
    /// 5 bytes per multiplier (i32 LE multiplier, i8 shift): one per output
    /// channel, or a, b, out for an add.
    #[serde(borrow)]
    pub requant: &'a [u8],
    /// Output tensor quantisation and clamp.
    pub output: OutputRecord,
}

fn part_error(part: Part) -> impl Fn(postcard::Error) -> Error {
    move |e| match e {
        postcard::Error::DeserializeUnexpectedEnd => Error::Truncated { part },
        _ => Error::Malformed { part },
    }
}

/// A model file whose preamble, header and CRC have been checked; its layer
/// records are still to be read.
#[derive(Clone, Copy, Debug)]
pub struct File<'a> {
    /// The network.
    pub net: NetId,
    /// The header as stored.
    pub header: Header<'a>,
    /// The CRC-32 trailer (verified).
    pub crc: u32,
    /// Length of the whole file.
    pub len: usize,
    /// The bytes of the layer records.
    records: &'a [u8],
}

impl<'a> File<'a> {
    /// Checks, in this order: preamble (magic, version), header (op-set,
    /// network id, graph signature, layer count, input table and scale),
    /// CRC.
    /// `expected`: the network the caller wants, or `None` for any.
    pub fn parse(bytes: &'a [u8], expected: Option<NetId>) -> Result<File<'a>, Error> {
        let (pre, rest) =
            postcard::take_from_bytes::<Preamble>(bytes).map_err(part_error(Part::Preamble))?;
        if pre.magic != MAGIC {
            return Err(Error::BadMagic { found: pre.magic });
        }
        if pre.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: pre.version,
                supported: FORMAT_VERSION,
            });
        }
        let (header, rest) =
            postcard::take_from_bytes::<Header>(rest).map_err(part_error(Part::Header))?;
        if header.opset != OPSET {
            return Err(Error::UnsupportedOpset {
                found: header.opset,
                supported: OPSET,
            });
        }
        let net = NetId::from_u8(header.net).ok_or(Error::UnknownNetwork { id: header.net })?;
        if let Some(expected) = expected {
            if net != expected {
                return Err(Error::WrongNetwork {
                    expected,
                    found: net,
                });
            }
        }
        let signature = layers::signature(net);
        if header.signature != signature {
            return Err(Error::ShapeSignature {
                net,
                expected: signature,
                found: header.signature,
            });
        }
        let count = layers::layers(net).len() as u16;
        if header.layer_count != count {
            return Err(Error::LayerCount {
                net,
                found: header.layer_count,
                expected: count,
            });
        }
        if header.input_lut.len() != INPUT_LUT_LEN {
            return Err(Error::InputLut {
                found: header.input_lut.len(),
            });
        }
        if !(header.input_scale.is_finite() && header.input_scale > 0.0) {
            return Err(Error::InputScale);
        }
        // The header may have run into the trailer of a cut file: the
        // records and the trailer must both fit after it.
        let records_start = bytes.len() - rest.len();
        let body_len = bytes
            .len()
            .checked_sub(4)
            .filter(|&n| n >= records_start)
            .ok_or(Error::Truncated { part: Part::Crc })?;
        let (body, trailer) = bytes.split_at(body_len);
        let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let computed = crc32(body);
        if stored != computed {
            return Err(Error::CrcMismatch { stored, computed });
        }
        Ok(File {
            net,
            header,
            crc: stored,
            len: bytes.len(),
            records: &body[records_start..],
        })
    }

    /// The layer records in file order, each checked for its name and kind
    /// against the architecture (the rest is checked by the typed decoders).
    pub fn records(&self) -> Records<'a> {
        Records {
            rest: self.records,
            index: 0,
            specs: layers::layers(self.net),
        }
    }
}

/// Reads layer records one by one (see [`File::records`]).
#[derive(Clone, Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    index: usize,
    specs: &'static [LayerSpec],
}

impl<'a> Records<'a> {
    /// The next record with its spec and index; checks name and kind.
    pub fn next_record(&mut self) -> Result<(usize, &'static LayerSpec, LayerRecord<'a>), Error> {
        let index = self.index;
        // The header's count equals the table's length, so running out of
        // table means the caller asked for one record too many.
        let spec = self.specs.get(index).ok_or(Error::TrailingBytes {
            count: self.rest.len(),
        })?;
        let err = |problem| Error::Layer {
            index,
            name: spec.name.as_str(),
            problem,
        };
        let (rec, rest) = postcard::take_from_bytes::<LayerRecord>(self.rest).map_err(|e| {
            err(match e {
                postcard::Error::DeserializeUnexpectedEnd => LayerProblem::Truncated,
                _ => LayerProblem::Malformed,
            })
        })?;
        if !spec.name.is(rec.name) {
            return Err(err(LayerProblem::Name));
        }
        if LayerKind::from_u8(rec.kind) != Some(spec.kind) {
            return Err(err(LayerProblem::Kind {
                found: rec.kind,
                expected: spec.kind,
            }));
        }
        self.rest = rest;
        self.index += 1;
        Ok((index, spec, rec))
    }

    /// Succeeds if every record has been read and no byte is left over.
    pub fn finish(&self) -> Result<(), Error> {
        if !self.rest.is_empty() || self.index != self.specs.len() {
            return Err(Error::TrailingBytes {
                count: self.rest.len(),
            });
        }
        Ok(())
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(&'static LayerSpec, LayerRecord<'a>), Error>;

    /// Every record, then `None`; an error ends the iteration (and bytes
    /// left over after the last record are reported as one).
    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.specs.len() {
            if self.rest.is_empty() {
                return None;
            }
            let count = self.rest.len();
            self.rest = &[];
            return Some(Err(Error::TrailingBytes { count }));
        }
        match self.next_record() {
            Ok((_, spec, rec)) => Some(Ok((spec, rec))),
            Err(e) => {
                self.index = self.specs.len();
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}
