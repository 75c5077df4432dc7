//! The f32 forward passes of both networks (feature `std`), for parity with
//! the trainer and as the host's calibration and float-accuracy engine.
//!
//! Layouts are PyTorch's, so the host copies checkpoint tensors in as they
//! are: conv weights OIHW (`weight[((co * CI + ci) * K + ky) * K + kx]`),
//! fc weights `[out][in]` over the `(C, H, W)` flatten, activations CHW
//! (one image, batch dimension dropped). Input: the normalised image
//! (`arch::normalize_pixel`), row-major.
//!
//! Fill a network with `from_tensors`, passing a lookup by PyTorch
//! `state_dict` key (`conv1.weight`, `incep1.b5_2.bias`, `fc.weight`, ...).
//! `forward_observed` also hands every intermediate tensor to a callback,
//! named as the int8 plan's steps (`conv1` before its pool, `pool1`,
//! `incep1.b5_1`, ..., `incep1` for the concat, `r1.add` for a block's
//! output after the add and ReLU): what post-training quantisation
//! calibrates on.

use crate::arch::{inception as inc, inception_a as ia, normalize_pixel, resnet as res};
use crate::arch::{CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::{Error, Field};
use std::vec::Vec;

/// A conv layer: `CI -> CO`, kernel `K`, zero padding `PAD`, with bias.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvF32<const CI: usize, const K: usize, const PAD: usize, const CO: usize> {
    /// OIHW, `CO * CI * K * K` values.
    pub weight: Vec<f32>,
    /// `CO` values.
    pub bias: Vec<f32>,
}

impl<const CI: usize, const K: usize, const PAD: usize, const CO: usize> Default
    for ConvF32<CI, K, PAD, CO>
{
    fn default() -> Self {
        ConvF32 {
            weight: vec![0.0; CO * CI * K * K],
            bias: vec![0.0; CO],
        }
    }
}

impl<const CI: usize, const K: usize, const PAD: usize, const CO: usize> ConvF32<CI, K, PAD, CO> {
    /// `out` (CHW, `CO x HO x WO`) = conv of `input` (CHW, `CI x H x W`).
    /// Per output plane: the bias, then for each input channel and tap an
    /// axpy over the valid output rows (padded taps skipped).
    pub fn forward(&self, input: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let ho = h + 2 * PAD + 1 - K;
        let wo = w + 2 * PAD + 1 - K;
        assert_eq!(input.len(), CI * h * w, "conv input size");
        assert_eq!(out.len(), CO * ho * wo, "conv output size");
        for (co, plane) in out.chunks_exact_mut(ho * wo).enumerate() {
            plane.fill(self.bias[co]);
            for ci in 0..CI {
                let x = &input[ci * h * w..(ci + 1) * h * w];
                for ky in 0..K {
                    // Output rows whose input row oy + ky - PAD is inside.
                    let oy0 = PAD.saturating_sub(ky);
                    let oy1 = ho.min((h + PAD).saturating_sub(ky));
                    for kx in 0..K {
                        let wv = self.weight[((co * CI + ci) * K + ky) * K + kx];
                        let ox0 = PAD.saturating_sub(kx);
                        let ox1 = wo.min((w + PAD).saturating_sub(kx));
                        if ox0 >= ox1 {
                            continue;
                        }
                        for oy in oy0..oy1 {
                            let iy = oy + ky - PAD;
                            let src = &x[iy * w + ox0 + kx - PAD..iy * w + ox1 + kx - PAD];
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
}

/// A fully connected layer `IN -> OUT` with bias.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearF32<const IN: usize, const OUT: usize> {
    /// `[out][in]`, the input being the CHW flatten.
    pub weight: Vec<f32>,
    /// `OUT` values.
    pub bias: Vec<f32>,
}

impl<const IN: usize, const OUT: usize> Default for LinearF32<IN, OUT> {
    fn default() -> Self {
        LinearF32 {
            weight: vec![0.0; OUT * IN],
            bias: vec![0.0; OUT],
        }
    }
}

impl<const IN: usize, const OUT: usize> LinearF32<IN, OUT> {
    /// `W x + b`.
    pub fn forward(&self, x: &[f32]) -> [f32; OUT] {
        assert_eq!(x.len(), IN, "linear input size");
        let mut out = [0f32; OUT];
        for (o, (row, &b)) in out
            .iter_mut()
            .zip(self.weight.chunks_exact(IN).zip(&self.bias))
        {
            *o = b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
        }
        out
    }
}

/// 2x2 stride-2 max pool (floor), CHW, followed by ReLU.
fn maxpool2_relu(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0f32; c * ho * wo];
    for ch in 0..c {
        for oy in 0..ho {
            for ox in 0..wo {
                let at = |y: usize, x_: usize| x[(ch * h + y) * w + x_];
                let m = at(2 * oy, 2 * ox)
                    .max(at(2 * oy, 2 * ox + 1))
                    .max(at(2 * oy + 1, 2 * ox))
                    .max(at(2 * oy + 1, 2 * ox + 1));
                out[(ch * ho + oy) * wo + ox] = m.max(0.0);
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

fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// Loads one tensor by name, checking its length.
fn load(
    get: &mut dyn FnMut(&str) -> Option<Vec<f32>>,
    layer: &'static str,
    field: Field,
    dst: &mut Vec<f32>,
) -> Result<(), Error> {
    let key = match field {
        Field::Bias => format!("{layer}.bias"),
        _ => format!("{layer}.weight"),
    };
    let expected = dst.len();
    let v = get(&key).ok_or(Error::FloatTensor {
        layer,
        field,
        found: None,
        expected,
    })?;
    if v.len() != expected {
        return Err(Error::FloatTensor {
            layer,
            field,
            found: Some(v.len()),
            expected,
        });
    }
    *dst = v;
    Ok(())
}

/// Every parameter of a network as (PyTorch layer name, weight, bias),
/// mutable: what `parameters_mut` returns.
pub type Slots<'a> = Vec<(&'static str, &'a mut Vec<f32>, &'a mut Vec<f32>)>;

fn fill(slots: Slots<'_>, mut get: impl FnMut(&str) -> Option<Vec<f32>>) -> Result<(), Error> {
    for (layer, w, b) in slots {
        load(&mut get, layer, Field::Weights, w)?;
        load(&mut get, layer, Field::Bias, b)?;
    }
    Ok(())
}

/// One InceptionA module on `CIN` channels (PyTorch names).
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct InceptionAF32<const CIN: usize> {
    pub b1: ConvF32<CIN, 1, 0, { ia::B1 }>,
    pub b5_1: ConvF32<CIN, 1, 0, { ia::B5_REDUCE }>,
    pub b5_2: ConvF32<{ ia::B5_REDUCE }, 5, 2, { ia::B5 }>,
    pub b3_1: ConvF32<CIN, 1, 0, { ia::B3_REDUCE }>,
    pub b3_2: ConvF32<{ ia::B3_REDUCE }, 3, 1, { ia::B3 }>,
    pub b3_3: ConvF32<{ ia::B3 }, 3, 1, { ia::B3 }>,
    pub bp: ConvF32<CIN, 1, 0, { ia::BP }>,
}

impl<const CIN: usize> InceptionAF32<CIN> {
    fn slots(&mut self, names: [&'static str; 7]) -> Slots<'_> {
        vec![
            (names[0], &mut self.b1.weight, &mut self.b1.bias),
            (names[1], &mut self.b5_1.weight, &mut self.b5_1.bias),
            (names[2], &mut self.b5_2.weight, &mut self.b5_2.bias),
            (names[3], &mut self.b3_1.weight, &mut self.b3_1.bias),
            (names[4], &mut self.b3_2.weight, &mut self.b3_2.bias),
            (names[5], &mut self.b3_3.weight, &mut self.b3_3.bias),
            (names[6], &mut self.bp.weight, &mut self.bp.bias),
        ]
    }

    /// The concat (CHW, `OUT x S x S`) of the four branches on `x`
    /// (`CIN x S x S`). `names`: the step names b3_1, b3_2, b3_3, b5_1,
    /// b5_2, b1, avgpool, bp (as in the int8 plan).
    fn forward(
        &self,
        x: &[f32],
        s: usize,
        names: &[&'static str; 8],
        observe: &mut dyn FnMut(&'static str, &[f32]),
    ) -> Vec<f32> {
        let plane = s * s;
        let mut out = vec![0f32; ia::OUT * plane];
        let (o1, rest) = out.split_at_mut(ia::B1 * plane);
        let (o5, rest) = rest.split_at_mut(ia::B5 * plane);
        let (o3, op) = rest.split_at_mut(ia::B3 * plane);
        let mut t3a = vec![0f32; ia::B3_REDUCE * plane];
        self.b3_1.forward(x, s, s, &mut t3a);
        observe(names[0], &t3a);
        let mut t3b = vec![0f32; ia::B3 * plane];
        self.b3_2.forward(&t3a, s, s, &mut t3b);
        observe(names[1], &t3b);
        self.b3_3.forward(&t3b, s, s, o3);
        observe(names[2], o3);
        let mut t5 = vec![0f32; ia::B5_REDUCE * plane];
        self.b5_1.forward(x, s, s, &mut t5);
        observe(names[3], &t5);
        self.b5_2.forward(&t5, s, s, o5);
        observe(names[4], o5);
        self.b1.forward(x, s, s, o1);
        observe(names[5], o1);
        let ap = avgpool3(x, CIN, s);
        observe(names[6], &ap);
        self.bp.forward(&ap, s, s, op);
        observe(names[7], op);
        out
    }
}

/// InceptionNet in f32 (PyTorch names and layouts).
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct InceptionF32 {
    pub conv1: ConvF32<1, { inc::K1 }, 0, { inc::C1 }>,
    pub incep1: InceptionAF32<{ inc::C1 }>,
    pub conv2: ConvF32<{ inc::INCEP_OUT }, { inc::K2 }, 0, { inc::C2 }>,
    pub incep2: InceptionAF32<{ inc::C2 }>,
    pub fc: LinearF32<{ inc::FLAT }, CLASSES>,
}

const INCEP1_NAMES: [&str; 7] = [
    "incep1.b1",
    "incep1.b5_1",
    "incep1.b5_2",
    "incep1.b3_1",
    "incep1.b3_2",
    "incep1.b3_3",
    "incep1.bp",
];
const INCEP2_NAMES: [&str; 7] = [
    "incep2.b1",
    "incep2.b5_1",
    "incep2.b5_2",
    "incep2.b3_1",
    "incep2.b3_2",
    "incep2.b3_3",
    "incep2.bp",
];
const INCEP1_STEPS: [&str; 8] = [
    "incep1.b3_1",
    "incep1.b3_2",
    "incep1.b3_3",
    "incep1.b5_1",
    "incep1.b5_2",
    "incep1.b1",
    "incep1.avgpool",
    "incep1.bp",
];
const INCEP2_STEPS: [&str; 8] = [
    "incep2.b3_1",
    "incep2.b3_2",
    "incep2.b3_3",
    "incep2.b5_1",
    "incep2.b5_2",
    "incep2.b1",
    "incep2.avgpool",
    "incep2.bp",
];

/// The normalised image.
pub fn normalize(pixels: &[u8; IMAGE_PIXELS]) -> [f32; IMAGE_PIXELS] {
    pixels.map(normalize_pixel)
}

impl InceptionF32 {
    /// Every parameter as (layer, weight, bias), in PyTorch module order.
    pub fn parameters_mut(&mut self) -> Slots<'_> {
        let mut v: Slots<'_> = vec![("conv1", &mut self.conv1.weight, &mut self.conv1.bias)];
        v.extend(self.incep1.slots(INCEP1_NAMES));
        v.push(("conv2", &mut self.conv2.weight, &mut self.conv2.bias));
        v.extend(self.incep2.slots(INCEP2_NAMES));
        v.push(("fc", &mut self.fc.weight, &mut self.fc.bias));
        v
    }

    /// A network filled from tensors looked up by PyTorch `state_dict` key;
    /// a missing tensor or a wrong length is an error naming it.
    pub fn from_tensors(get: impl FnMut(&str) -> Option<Vec<f32>>) -> Result<Self, Error> {
        let mut net = InceptionF32::default();
        fill(net.parameters_mut(), get)?;
        Ok(net)
    }

    /// Logits for a normalised image.
    pub fn forward(&self, x: &[f32; IMAGE_PIXELS]) -> [f32; CLASSES] {
        self.forward_observed(x, &mut |_, _| {})
    }

    /// Logits for raw pixels (normalised here).
    pub fn forward_pixels(&self, pixels: &[u8; IMAGE_PIXELS]) -> [f32; CLASSES] {
        self.forward(&normalize(pixels))
    }

    /// [`InceptionF32::forward`], handing every intermediate tensor (CHW)
    /// to `observe` with its step name: `conv1`, `pool1` (after ReLU), the
    /// eight steps of `incep1`, `incep1` (the concat), `conv2`, `pool2`,
    /// incep2's, `incep2`, `fc`.
    pub fn forward_observed(
        &self,
        x: &[f32; IMAGE_PIXELS],
        observe: &mut dyn FnMut(&'static str, &[f32]),
    ) -> [f32; CLASSES] {
        let mut c1 = vec![0f32; inc::C1 * inc::S1 * inc::S1];
        self.conv1.forward(x, IMAGE_SIDE, IMAGE_SIDE, &mut c1);
        observe("conv1", &c1);
        let p1 = maxpool2_relu(&c1, inc::C1, inc::S1, inc::S1);
        observe("pool1", &p1);
        let q1 = self.incep1.forward(&p1, inc::P1, &INCEP1_STEPS, observe);
        observe("incep1", &q1);
        let mut c2 = vec![0f32; inc::C2 * inc::S2 * inc::S2];
        self.conv2.forward(&q1, inc::P1, inc::P1, &mut c2);
        observe("conv2", &c2);
        let p2 = maxpool2_relu(&c2, inc::C2, inc::S2, inc::S2);
        observe("pool2", &p2);
        let q2 = self.incep2.forward(&p2, inc::P2, &INCEP2_STEPS, observe);
        observe("incep2", &q2);
        let logits = self.fc.forward(&q2);
        observe("fc", &logits);
        logits
    }
}

/// One identity block `CIN -> COUT` (PyTorch names).
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct BlockF32<const CIN: usize, const COUT: usize> {
    pub conv1: ConvF32<CIN, { res::K }, { res::PAD }, CIN>,
    pub conv2: ConvF32<CIN, { res::K }, { res::PAD }, COUT>,
    pub conv: ConvF32<CIN, { res::K }, { res::PAD }, COUT>,
}

impl<const CIN: usize, const COUT: usize> BlockF32<CIN, COUT> {
    /// `ReLU(conv(x) + conv2(ReLU(conv1(x))))`, CHW at side `s`; `names`:
    /// conv1, conv, conv2, add (the sum after ReLU).
    fn forward(
        &self,
        x: &[f32],
        s: usize,
        names: [&'static str; 4],
        observe: &mut dyn FnMut(&'static str, &[f32]),
    ) -> Vec<f32> {
        let mut y1 = vec![0f32; CIN * s * s];
        self.conv1.forward(x, s, s, &mut y1);
        relu(&mut y1);
        observe(names[0], &y1);
        let mut sc = vec![0f32; COUT * s * s];
        self.conv.forward(x, s, s, &mut sc);
        observe(names[1], &sc);
        let mut y2 = vec![0f32; COUT * s * s];
        self.conv2.forward(&y1, s, s, &mut y2);
        observe(names[2], &y2);
        for (y, s) in y2.iter_mut().zip(&sc) {
            *y = (*y + s).max(0.0);
        }
        observe(names[3], &y2);
        y2
    }
}

/// The seed's ResNet in f32 (PyTorch names and layouts).
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct ResNetF32 {
    pub r1: BlockF32<1, { res::C1 }>,
    pub r2: BlockF32<{ res::C1 }, { res::C2 }>,
    pub fc: LinearF32<{ res::FLAT }, CLASSES>,
}

impl ResNetF32 {
    /// Every parameter as (layer, weight, bias), in PyTorch module order.
    pub fn parameters_mut(&mut self) -> Slots<'_> {
        vec![
            (
                "r1.conv1",
                &mut self.r1.conv1.weight,
                &mut self.r1.conv1.bias,
            ),
            (
                "r1.conv2",
                &mut self.r1.conv2.weight,
                &mut self.r1.conv2.bias,
            ),
            ("r1.conv", &mut self.r1.conv.weight, &mut self.r1.conv.bias),
            (
                "r2.conv1",
                &mut self.r2.conv1.weight,
                &mut self.r2.conv1.bias,
            ),
            (
                "r2.conv2",
                &mut self.r2.conv2.weight,
                &mut self.r2.conv2.bias,
            ),
            ("r2.conv", &mut self.r2.conv.weight, &mut self.r2.conv.bias),
            ("fc", &mut self.fc.weight, &mut self.fc.bias),
        ]
    }

    /// A network filled from tensors looked up by PyTorch `state_dict` key.
    pub fn from_tensors(get: impl FnMut(&str) -> Option<Vec<f32>>) -> Result<Self, Error> {
        let mut net = ResNetF32::default();
        fill(net.parameters_mut(), get)?;
        Ok(net)
    }

    /// Logits for a normalised image.
    pub fn forward(&self, x: &[f32; IMAGE_PIXELS]) -> [f32; CLASSES] {
        self.forward_observed(x, &mut |_, _| {})
    }

    /// Logits for raw pixels (normalised here).
    pub fn forward_pixels(&self, pixels: &[u8; IMAGE_PIXELS]) -> [f32; CLASSES] {
        self.forward(&normalize(pixels))
    }

    /// [`ResNetF32::forward`], handing every intermediate tensor (CHW) to
    /// `observe`: `r1.conv1` (after its ReLU), `r1.conv`, `r1.conv2`,
    /// `r1.add` (after the ReLU), `pool1`, the same for r2, `pool2`, `fc`.
    pub fn forward_observed(
        &self,
        x: &[f32; IMAGE_PIXELS],
        observe: &mut dyn FnMut(&'static str, &[f32]),
    ) -> [f32; CLASSES] {
        let s = IMAGE_SIDE;
        let y = self
            .r1
            .forward(x, s, ["r1.conv1", "r1.conv", "r1.conv2", "r1.add"], observe);
        let p1 = maxpool2_relu(&y, res::C1, s, s);
        observe("pool1", &p1);
        let y = self.r2.forward(
            &p1,
            res::P1,
            ["r2.conv1", "r2.conv", "r2.conv2", "r2.add"],
            observe,
        );
        let p2 = maxpool2_relu(&y, res::C2, res::P1, res::P1);
        observe("pool2", &p2);
        let logits = self.fc.forward(&p2);
        observe("fc", &logits);
        logits
    }
}
