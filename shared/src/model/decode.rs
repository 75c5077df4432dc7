//! Checked access to a model file: [`Layers`] reads the layer records in
//! file order and checks each against the network's layer table (derived
//! from its graph), and gives each as the kernels' parameter type, the
//! weights borrowed from the file bytes. Each network's typed model (in
//! [`crate::nets`]) is read with it.

use super::layers::{self, Activation, LayerKind, LayerSpec, MAX_LAYERS};
use super::wire::{File, LayerRecord, OutputRecord, Records};
use super::{NetId, INPUT_LUT_LEN};
use crate::error::{Error, Field, LayerProblem};
use crate::graph::Source;
use crate::kernels::{ActRange, AddS8, Conv2dS8, LinearS8, OutputQuant};
use crate::quant::Requant;

/// How raw pixels become the int8 input tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputQuant<'a> {
    /// Scale of the input tensor (informational).
    pub scale: f32,
    /// Zero point of the input tensor.
    pub zero_point: i8,
    /// The int8 input value of each raw pixel value, borrowed from the file.
    pub lut: &'a [i8; INPUT_LUT_LEN],
}

/// A decoded conv layer: weights borrowed from the model bytes, per-channel
/// arrays copied out (they need alignment and validation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvLayer<'a, const CI: usize, const CO: usize, const K: usize, const PAD: usize> {
    /// OHWI int8 weights, borrowed from the model bytes.
    pub weights: &'a [[[[i8; CI]; K]; K]; CO],
    /// int32 bias per output channel.
    pub bias: [i32; CO],
    /// Requant per output channel.
    pub requant: [Requant; CO],
    /// Zero point of the input tensor (the producer's output zero point).
    pub input_zero_point: i8,
    /// Output zero point and clamp.
    pub output: OutputQuant,
    /// Output scale (informational).
    pub output_scale: f32,
}

impl<const CI: usize, const CO: usize, const K: usize, const PAD: usize>
    ConvLayer<'_, CI, CO, K, PAD>
{
    /// The layer as the conv kernels take it.
    pub fn kernel(&self) -> Conv2dS8<'_, CI, CO, K, PAD> {
        Conv2dS8 {
            weights: self.weights,
            bias: &self.bias,
            requant: &self.requant,
            input_zero_point: self.input_zero_point,
            output: self.output,
        }
    }
}

/// The decoded classifier over an `[H][W][C]` feature map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearLayer<'a, const H: usize, const W: usize, const C: usize, const O: usize> {
    /// `[O][H][W][C]` int8 weights, borrowed from the model bytes.
    pub weights: &'a [[[[i8; C]; W]; H]; O],
    /// int32 bias per output.
    pub bias: [i32; O],
    /// Requant per output.
    pub requant: [Requant; O],
    /// Zero point of the input feature map.
    pub input_zero_point: i8,
    /// Zero point and clamp of the int8 logits.
    pub output: OutputQuant,
    /// Scale of the logits (to dequantise them for display).
    pub output_scale: f32,
}

impl<const H: usize, const W: usize, const C: usize, const O: usize> LinearLayer<'_, H, W, C, O> {
    /// The layer as the linear kernels take it.
    pub fn kernel(&self) -> LinearS8<'_, H, W, C, O> {
        LinearS8 {
            weights: self.weights,
            bias: &self.bias,
            requant: &self.requant,
            input_zero_point: self.input_zero_point,
            output: self.output,
        }
    }
}

/// A decoded residual add.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddLayer {
    /// The add's parameters: `a` is the block's main path (conv2), `b` the
    /// shortcut (the projection conv in the seed ResNet, the block's input
    /// in the identity ResNet).
    pub params: AddS8,
    /// Output scale (informational).
    pub output_scale: f32,
}

/// Reads a model file's layer records in file order. Every record is
/// checked against the network's layer table: name, kind, dimensions,
/// padding, the length of every byte field, every requant's range, the
/// output scale, that the clamp implements the layer's [`Activation`], and
/// that a concat's parts share one output quantisation. Each layer's input
/// zero point is the output zero point of the tensor the graph wires to it
/// ([`LayerSpec::input`]), so it is taken from a record already read.
pub struct Layers<'a> {
    file: File<'a>,
    records: Records<'a>,
    /// The output quantisation of every record read so far.
    outputs: [OutputRecord; MAX_LAYERS],
}

impl<'a> Layers<'a> {
    /// The records of a model file of `net`, after the checks of
    /// [`File::parse`].
    pub fn new(bytes: &'a [u8], net: NetId) -> Result<Layers<'a>, Error> {
        Ok(Layers::of(File::parse(bytes, Some(net))?))
    }

    /// The records of a parsed file.
    pub fn of(file: File<'a>) -> Layers<'a> {
        let unset = OutputRecord {
            scale: 0.0,
            zero_point: 0,
            min: 0,
            max: 0,
        };
        Layers {
            records: file.records(),
            file,
            outputs: [unset; MAX_LAYERS],
        }
    }

    /// Checks every record of a model file (of any network).
    pub fn check_all(bytes: &'a [u8]) -> Result<NetId, Error> {
        let mut layers = Layers::of(File::parse(bytes, None)?);
        for _ in layers::layers(layers.file.net) {
            layers.checked()?;
        }
        layers.finish()?;
        Ok(layers.file.net)
    }

    /// The network.
    pub fn net(&self) -> NetId {
        self.file.net
    }

    /// How raw pixels become the input tensor.
    pub fn input(&self) -> InputQuant<'a> {
        // File::parse checked the length.
        let lut = bytemuck::try_from_bytes::<[i8; INPUT_LUT_LEN]>(self.file.header.input_lut)
            .unwrap_or(&[0; INPUT_LUT_LEN]);
        InputQuant {
            scale: self.file.header.input_scale,
            zero_point: self.file.header.input_zero_point,
            lut,
        }
    }

    /// The next record as a layer of type `T` (whose dimensions must be
    /// the record's).
    #[inline(never)]
    pub fn layer<T: FromRecord<'a>>(&mut self) -> Result<T, Error> {
        T::from_record(&self.checked()?)
    }

    /// The typed model `M` of every record, and no byte left over.
    pub fn read_all<M: Decode<'a>>(&mut self) -> Result<M, Error> {
        let m = M::read(self)?;
        self.finish()?;
        Ok(m)
    }

    /// Succeeds if every record has been read and no byte is left over.
    pub fn finish(&self) -> Result<(), Error> {
        self.records.finish()
    }

    fn zero_point(&self, source: Source) -> i8 {
        match source {
            Source::Image => self.file.header.input_zero_point,
            Source::Layer(i) => self.outputs[i as usize].zero_point,
        }
    }

    /// The next record, checked against its spec.
    fn checked(&mut self) -> Result<Checked<'a>, Error> {
        let (index, spec, rec) = self.records.next_record()?;
        let c = Checked {
            index,
            spec,
            rec,
            input_zero_point: self.zero_point(spec.input),
            input_b_zero_point: self.zero_point(spec.input_b),
        };
        c.check()?;
        if let Some(first) = spec.shares_output_of {
            let a = self.outputs[first as usize];
            let b = rec.output;
            if (a.scale.to_bits(), a.zero_point, a.min, a.max)
                != (b.scale.to_bits(), b.zero_point, b.min, b.max)
            {
                return Err(c.err(LayerProblem::Concat));
            }
        }
        if let Some(o) = self.outputs.get_mut(index) {
            *o = rec.output;
        }
        Ok(c)
    }
}

/// A network's typed model (in [`crate::nets`]), read from its model file.
pub trait Decode<'a>: Sized {
    /// The network.
    const NET: NetId;

    /// Reads every layer, in file order, from records positioned after the
    /// header.
    fn read(r: &mut Layers<'a>) -> Result<Self, Error>;

    /// Decodes and checks a model file of this network; the weights stay
    /// in `bytes`.
    fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Layers::new(bytes, Self::NET)?.read_all()
    }
}

/// A layer type the kernels take, read from a checked record.
pub trait FromRecord<'a>: Sized {
    /// The layer in `record`. Fails if the record's dimensions are not the
    /// type's: the typed model disagrees with the graph (every decoding
    /// test then fails), or the file does.
    fn from_record(record: &Checked<'a>) -> Result<Self, Error>;
}

// The typed reads check only the type's dimensions against the record's:
// `Layers::checked` has checked everything else against the layer table.
// They fill their arrays through the untyped helpers, so that each layer
// type adds little code (the firmware decodes every network).

impl<'a, const CI: usize, const CO: usize, const K: usize, const PAD: usize> FromRecord<'a>
    for ConvLayer<'a, CI, CO, K, PAD>
{
    fn from_record(c: &Checked<'a>) -> Result<Self, Error> {
        c.kind(LayerKind::Conv)?;
        c.dims([CO, K, K, CI], PAD)?;
        let mut layer = ConvLayer {
            weights: c.weights()?,
            bias: [0; CO],
            requant: [Requant::ZERO; CO],
            input_zero_point: c.input_zero_point,
            output: OutputQuant::linear(0),
            output_scale: 0.0,
        };
        (layer.output, layer.output_scale) = c.fill(&mut layer.bias, &mut layer.requant);
        Ok(layer)
    }
}

impl<'a, const H: usize, const W: usize, const C: usize, const O: usize> FromRecord<'a>
    for LinearLayer<'a, H, W, C, O>
{
    fn from_record(c: &Checked<'a>) -> Result<Self, Error> {
        c.kind(LayerKind::Linear)?;
        c.dims([O, H, W, C], 0)?;
        let mut layer = LinearLayer {
            weights: c.weights()?,
            bias: [0; O],
            requant: [Requant::ZERO; O],
            input_zero_point: c.input_zero_point,
            output: OutputQuant::linear(0),
            output_scale: 0.0,
        };
        (layer.output, layer.output_scale) = c.fill(&mut layer.bias, &mut layer.requant);
        Ok(layer)
    }
}

impl<'a> FromRecord<'a> for AddLayer {
    fn from_record(c: &Checked<'a>) -> Result<Self, Error> {
        c.kind(LayerKind::Add)?;
        let mut requant = [Requant::ZERO; 3];
        let (output, output_scale) = c.fill(&mut [], &mut requant);
        let [a, b, out] = requant;
        Ok(AddLayer {
            params: AddS8 {
                a_zero_point: c.input_zero_point,
                a,
                b_zero_point: c.input_b_zero_point,
                b,
                out,
                output,
            },
            output_scale,
        })
    }
}

/// A record with its spec and the zero points of its inputs.
pub struct Checked<'a> {
    index: usize,
    spec: &'static LayerSpec,
    rec: LayerRecord<'a>,
    input_zero_point: i8,
    input_b_zero_point: i8,
}

impl<'a> Checked<'a> {
    fn err(&self, problem: LayerProblem) -> Error {
        Error::Layer {
            index: self.index,
            name: self.spec.name.as_str(),
            problem,
        }
    }

    /// Everything the spec says of the record (not its typed dimensions).
    fn check(&self) -> Result<(), Error> {
        let s = self.spec;
        self.dims(s.dims.map(usize::from), s.pad as usize)?;
        self.length(Field::Weights, self.rec.weights.len(), s.weight_bytes())?;
        self.length(Field::Bias, self.rec.bias.len(), 4 * s.bias_len())?;
        self.length(
            Field::Requant,
            self.rec.requant.len(),
            REQUANT_BYTES * s.requant_len(),
        )?;
        for (channel, b) in self.rec.requant.chunks_exact(REQUANT_BYTES).enumerate() {
            let multiplier = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let shift = b[4] as i8;
            if Requant::new(multiplier, shift as i32).is_none() {
                return Err(self.err(LayerProblem::Requant {
                    channel,
                    multiplier,
                    shift,
                }));
            }
        }
        self.output().map(|_| ())
    }

    /// That the record is of `kind` (the typed model's, against the
    /// graph's).
    fn kind(&self, kind: LayerKind) -> Result<(), Error> {
        if self.spec.kind != kind {
            return Err(self.err(LayerProblem::Kind {
                found: self.spec.kind as u8,
                expected: kind,
            }));
        }
        Ok(())
    }

    fn dims(&self, expected: [usize; 4], pad: usize) -> Result<(), Error> {
        let expected = expected.map(|d| d as u16);
        if self.rec.dims != expected {
            return Err(self.err(LayerProblem::Shape {
                found: self.rec.dims,
                expected,
            }));
        }
        if self.rec.pad as usize != pad {
            return Err(self.err(LayerProblem::Padding {
                found: self.rec.pad,
                expected: pad as u8,
            }));
        }
        Ok(())
    }

    fn length(&self, field: Field, found: usize, expected: usize) -> Result<(), Error> {
        if found != expected {
            return Err(self.err(LayerProblem::Length {
                field,
                found,
                expected,
            }));
        }
        Ok(())
    }

    /// The weights as a nested int8 array (a checked, zero-copy cast).
    fn weights<T: bytemuck::Pod>(&self) -> Result<&'a T, Error> {
        let bytes = self.rec.weights;
        self.length(Field::Weights, bytes.len(), size_of::<T>())?;
        bytemuck::try_from_bytes(bytes).map_err(|_| {
            self.err(LayerProblem::Length {
                field: Field::Weights,
                found: bytes.len(),
                expected: size_of::<T>(),
            })
        })
    }

    /// Fills a typed layer's per-channel arrays from the checked record
    /// (its lengths and requants are valid), and returns its output
    /// quantisation.
    #[inline(never)]
    fn fill(&self, bias: &mut [i32], requant: &mut [Requant]) -> (OutputQuant, f32) {
        for (o, b) in bias.iter_mut().zip(self.rec.bias.chunks_exact(4)) {
            *o = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        for (o, b) in requant
            .iter_mut()
            .zip(self.rec.requant.chunks_exact(REQUANT_BYTES))
        {
            let multiplier = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            *o = Requant::new(multiplier, b[4] as i8 as i32).unwrap_or(Requant::ZERO);
        }
        let o = self.rec.output;
        let range = ActRange::new(o.min, o.max).unwrap_or(ActRange::FULL);
        (
            OutputQuant {
                zero_point: o.zero_point,
                range,
            },
            o.scale,
        )
    }

    fn output(&self) -> Result<(OutputQuant, f32), Error> {
        let OutputRecord {
            scale,
            zero_point,
            min,
            max,
        } = self.rec.output;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(self.err(LayerProblem::Scale));
        }
        let range = ActRange::new(min, max).ok_or(self.err(LayerProblem::Range { min, max }))?;
        let relu = range == ActRange::relu(zero_point);
        let full = range == ActRange::FULL;
        let ok = match self.spec.activation {
            Activation::None => full,
            Activation::Relu => relu,
            Activation::ReluAfterPool => full || relu,
        };
        if !ok {
            return Err(self.err(LayerProblem::Activation {
                zero_point,
                min,
                max,
            }));
        }
        Ok((OutputQuant { zero_point, range }, scale))
    }
}

/// Bytes of one stored requant: i32 LE multiplier, i8 shift.
pub const REQUANT_BYTES: usize = 5;
