//! Typed, checked access to a model file: each network's layers as the
//! kernels' parameter types, the weights borrowed from the file bytes.

use super::layers::{Activation, INCEP1_FIRST, INCEP2_FIRST};
use super::wire::{File, LayerRecord, OutputRecord, Records};
use super::{NetId, INPUT_LUT_LEN};
use crate::arch::{inception as inc, inception_a as ia, resnet as res, CLASSES};
use crate::error::{Error, Field, LayerProblem};
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
pub struct ConvLayer<'a, const CI: usize, const K: usize, const PAD: usize, const CO: usize> {
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

impl<const CI: usize, const K: usize, const PAD: usize, const CO: usize>
    ConvLayer<'_, CI, K, PAD, CO>
{
    /// The layer as the conv kernels take it.
    pub fn kernel(&self) -> Conv2dS8<'_, CI, K, PAD, CO> {
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
    /// shortcut (conv).
    pub params: AddS8,
    /// Output scale (informational).
    pub output_scale: f32,
}

/// One InceptionA module on `CIN` input channels (fields in file order).
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see arch::inception_a
pub struct InceptionAModel<'a, const CIN: usize> {
    pub b1: ConvLayer<'a, CIN, 1, 0, { ia::B1 }>,
    pub b5_1: ConvLayer<'a, CIN, 1, 0, { ia::B5_REDUCE }>,
    pub b5_2: ConvLayer<'a, { ia::B5_REDUCE }, 5, 2, { ia::B5 }>,
    pub b3_1: ConvLayer<'a, CIN, 1, 0, { ia::B3_REDUCE }>,
    pub b3_2: ConvLayer<'a, { ia::B3_REDUCE }, 3, 1, { ia::B3 }>,
    pub b3_3: ConvLayer<'a, { ia::B3 }, 3, 1, { ia::B3 }>,
    pub bp: ConvLayer<'a, CIN, 1, 0, { ia::BP }>,
}

impl<const CIN: usize> InceptionAModel<'_, CIN> {
    /// Zero point of the module's output (the concat).
    pub fn output_zero_point(&self) -> i8 {
        self.b1.output.zero_point
    }
}

/// A decoded InceptionNet.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see arch::inception
pub struct InceptionModel<'a> {
    pub input: InputQuant<'a>,
    pub conv1: ConvLayer<'a, 1, { inc::K1 }, 0, { inc::C1 }>,
    pub incep1: InceptionAModel<'a, { inc::C1 }>,
    pub conv2: ConvLayer<'a, { inc::INCEP_OUT }, { inc::K2 }, 0, { inc::C2 }>,
    pub incep2: InceptionAModel<'a, { inc::C2 }>,
    pub fc: LinearLayer<'a, { inc::P2 }, { inc::P2 }, { inc::INCEP_OUT }, CLASSES>,
}

/// One decoded identity block `CIN -> COUT`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see arch::resnet
pub struct BlockModel<'a, const CIN: usize, const COUT: usize> {
    pub conv1: ConvLayer<'a, CIN, { res::K }, { res::PAD }, CIN>,
    pub conv2: ConvLayer<'a, CIN, { res::K }, { res::PAD }, COUT>,
    pub conv: ConvLayer<'a, CIN, { res::K }, { res::PAD }, COUT>,
    pub add: AddLayer,
}

/// A decoded ResNet.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see arch::resnet
pub struct ResNetModel<'a> {
    pub input: InputQuant<'a>,
    pub r1: BlockModel<'a, 1, { res::C1 }>,
    pub r2: BlockModel<'a, { res::C1 }, { res::C2 }>,
    pub fc: LinearLayer<'a, { res::P2 }, { res::P2 }, { res::C2 }, CLASSES>,
}

/// Either network, as found in a file.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // no heap to box into; both are small enough
pub enum Model<'a> {
    /// An InceptionNet.
    Inception(InceptionModel<'a>),
    /// A ResNet.
    ResNet(ResNetModel<'a>),
}

impl<'a> Model<'a> {
    /// Decodes a model file of either network.
    pub fn decode(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let file = File::parse(bytes, None)?;
        Ok(match file.net {
            NetId::Inception => Model::Inception(InceptionModel::from_file(&file)?),
            NetId::ResNet => Model::ResNet(ResNetModel::from_file(&file)?),
        })
    }

    /// The network.
    pub fn net(&self) -> NetId {
        match self {
            Model::Inception(_) => NetId::Inception,
            Model::ResNet(_) => NetId::ResNet,
        }
    }
}

fn input_quant<'a>(file: &File<'a>) -> InputQuant<'a> {
    // File::parse checked the length.
    let lut = bytemuck::try_from_bytes::<[i8; INPUT_LUT_LEN]>(file.header.input_lut)
        .unwrap_or(&[0; INPUT_LUT_LEN]);
    InputQuant {
        scale: file.header.input_scale,
        zero_point: file.header.input_zero_point,
        lut,
    }
}

impl<'a> InceptionModel<'a> {
    /// Decodes and checks an InceptionNet model file; the weights stay in
    /// `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<InceptionModel<'a>, Error> {
        Self::from_file(&File::parse(bytes, Some(NetId::Inception))?)
    }

    fn from_file(file: &File<'a>) -> Result<InceptionModel<'a>, Error> {
        let input = input_quant(file);
        let mut r = Reader(file.records());
        let conv1 = r.conv(input.zero_point)?;
        let incep1 = r.inception_a(INCEP1_FIRST, conv1.output.zero_point)?;
        let conv2 = r.conv(incep1.output_zero_point())?;
        let incep2 = r.inception_a(INCEP2_FIRST, conv2.output.zero_point)?;
        let fc = r.linear(incep2.output_zero_point())?;
        r.0.finish()?;
        Ok(InceptionModel {
            input,
            conv1,
            incep1,
            conv2,
            incep2,
            fc,
        })
    }
}

impl<'a> ResNetModel<'a> {
    /// Decodes and checks a ResNet model file; the weights stay in `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<ResNetModel<'a>, Error> {
        Self::from_file(&File::parse(bytes, Some(NetId::ResNet))?)
    }

    fn from_file(file: &File<'a>) -> Result<ResNetModel<'a>, Error> {
        let input = input_quant(file);
        let mut r = Reader(file.records());
        let r1 = r.block(crate::arch::IMAGE_SIDE, input.zero_point)?;
        let r2 = r.block(res::P1, r1.add.params.output.zero_point)?;
        let fc = r.linear(r2.add.params.output.zero_point)?;
        r.0.finish()?;
        Ok(ResNetModel { input, r1, r2, fc })
    }
}

/// A record with the context its errors need.
struct Checked<'a> {
    index: usize,
    name: &'static str,
    activation: Activation,
    rec: LayerRecord<'a>,
}

impl<'a> Checked<'a> {
    fn err(&self, problem: LayerProblem) -> Error {
        Error::Layer {
            index: self.index,
            name: self.name,
            problem,
        }
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

    fn bias<const N: usize>(&self) -> Result<[i32; N], Error> {
        let bytes = self.rec.bias;
        self.length(Field::Bias, bytes.len(), 4 * N)?;
        let mut out = [0i32; N];
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(out)
    }

    fn requant<const N: usize>(&self) -> Result<[Requant; N], Error> {
        let bytes = self.rec.requant;
        self.length(Field::Requant, bytes.len(), REQUANT_BYTES * N)?;
        let mut out = [Requant::ZERO; N];
        for (channel, (o, b)) in out
            .iter_mut()
            .zip(bytes.chunks_exact(REQUANT_BYTES))
            .enumerate()
        {
            let multiplier = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let shift = b[4] as i8;
            *o = Requant::new(multiplier, shift as i32).ok_or(self.err(LayerProblem::Requant {
                channel,
                multiplier,
                shift,
            }))?;
        }
        Ok(out)
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
        let ok = match self.activation {
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

struct Reader<'a>(Records<'a>);

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<Checked<'a>, Error> {
        let (index, spec, rec) = self.0.next_record()?;
        Ok(Checked {
            index,
            name: spec.name,
            activation: spec.activation,
            rec,
        })
    }

    fn conv<const CI: usize, const K: usize, const PAD: usize, const CO: usize>(
        &mut self,
        input_zero_point: i8,
    ) -> Result<ConvLayer<'a, CI, K, PAD, CO>, Error> {
        let c = self.next()?;
        c.dims([CO, K, K, CI], PAD)?;
        let weights = c.weights()?;
        let bias = c.bias()?;
        let requant = c.requant()?;
        let (output, output_scale) = c.output()?;
        Ok(ConvLayer {
            weights,
            bias,
            requant,
            input_zero_point,
            output,
            output_scale,
        })
    }

    fn linear<const H: usize, const W: usize, const C: usize, const O: usize>(
        &mut self,
        input_zero_point: i8,
    ) -> Result<LinearLayer<'a, H, W, C, O>, Error> {
        let c = self.next()?;
        c.dims([O, H, W, C], 0)?;
        let weights = c.weights()?;
        let bias = c.bias()?;
        let requant = c.requant()?;
        let (output, output_scale) = c.output()?;
        Ok(LinearLayer {
            weights,
            bias,
            requant,
            input_zero_point,
            output,
            output_scale,
        })
    }

    fn add(&mut self, side: usize, channels: usize, a_zp: i8, b_zp: i8) -> Result<AddLayer, Error> {
        let c = self.next()?;
        c.dims([side, side, channels, 0], 0)?;
        c.length(Field::Weights, c.rec.weights.len(), 0)?;
        c.length(Field::Bias, c.rec.bias.len(), 0)?;
        let [a, b, out] = c.requant::<3>()?;
        let (output, output_scale) = c.output()?;
        Ok(AddLayer {
            params: AddS8 {
                a_zero_point: a_zp,
                a,
                b_zero_point: b_zp,
                b,
                out,
                output,
            },
            output_scale,
        })
    }

    fn inception_a<const CIN: usize>(
        &mut self,
        first: usize,
        in_zp: i8,
    ) -> Result<InceptionAModel<'a, CIN>, Error> {
        let b1 = self.conv(in_zp)?;
        let b5_1 = self.conv(in_zp)?;
        let b5_2 = self.conv(b5_1.output.zero_point)?;
        let b3_1 = self.conv(in_zp)?;
        let b3_2 = self.conv(b3_1.output.zero_point)?;
        let b3_3 = self.conv(b3_2.output.zero_point)?;
        // The average pool keeps its input's scale and zero point.
        let bp = self.conv(in_zp)?;
        // The four branch ends write one concat tensor: one quantisation.
        let concat = (b1.output, b1.output_scale.to_bits());
        for (offset, end) in [
            (2, (b5_2.output, b5_2.output_scale.to_bits())),
            (5, (b3_3.output, b3_3.output_scale.to_bits())),
            (6, (bp.output, bp.output_scale.to_bits())),
        ] {
            if end != concat {
                let spec = &super::layers::INCEPTION[first + offset];
                return Err(Error::Layer {
                    index: first + offset,
                    name: spec.name,
                    problem: LayerProblem::Concat,
                });
            }
        }
        Ok(InceptionAModel {
            b1,
            b5_1,
            b5_2,
            b3_1,
            b3_2,
            b3_3,
            bp,
        })
    }

    /// An identity block at feature map side `side`.
    fn block<const CIN: usize, const COUT: usize>(
        &mut self,
        side: usize,
        in_zp: i8,
    ) -> Result<BlockModel<'a, CIN, COUT>, Error> {
        let conv1: ConvLayer<'a, CIN, { res::K }, { res::PAD }, CIN> = self.conv(in_zp)?;
        let conv2: ConvLayer<'a, CIN, { res::K }, { res::PAD }, COUT> =
            self.conv(conv1.output.zero_point)?;
        let conv: ConvLayer<'a, CIN, { res::K }, { res::PAD }, COUT> = self.conv(in_zp)?;
        let add = self.add(side, COUT, conv2.output.zero_point, conv.output.zero_point)?;
        Ok(BlockModel {
            conv1,
            conv2,
            conv,
            add,
        })
    }
}
