//! InceptionNet: conv1, pool+ReLU, incep1, conv2,
//! pool+ReLU, incep2, fc. Every size comes from `shared::arch`.

use super::conv::Conv;
use crate::train::ops;
use dfdx::nn::tensor_collection::{ModuleVisitor, TensorCollection};
use dfdx::prelude::*;
use shared::arch::{inception as a, inception_a as m, CLASSES, IMAGE_SIDE};

use dfdx::nn::modules::Linear;
use num_traits::Float;

/// A batch of `C` square feature maps of side `S`.
type Map<const B: usize, const C: usize, const S: usize, T> =
    Tensor<Rank4<B, C, S, S>, f32, Cpu, T>;

/// One Inception module on `CIN` channels: four branches, no activation
/// inside, concatenated as b1, b5, b3, bp.
#[derive(Clone, Debug)]
pub struct InceptionA<const CIN: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// 1x1 branch.
    pub b1: Conv<CIN, { m::B1 }, 1, 0, E, D>,
    /// 1x1 reducer of the 5x5 branch.
    pub b5_1: Conv<CIN, { m::B5_REDUCE }, 1, 0, E, D>,
    /// 5x5 conv of the 5x5 branch.
    pub b5_2: Conv<{ m::B5_REDUCE }, { m::B5 }, 5, 2, E, D>,
    /// 1x1 reducer of the 3x3 branch.
    pub b3_1: Conv<CIN, { m::B3_REDUCE }, 1, 0, E, D>,
    /// First 3x3 conv of the 3x3 branch.
    pub b3_2: Conv<{ m::B3_REDUCE }, { m::B3 }, 3, 1, E, D>,
    /// Second 3x3 conv of the 3x3 branch.
    pub b3_3: Conv<{ m::B3 }, { m::B3 }, 3, 1, E, D>,
    /// 1x1 conv after the 3x3 average pool.
    pub bp: Conv<CIN, { m::BP }, 1, 0, E, D>,
}

impl<const CIN: usize> InceptionA<CIN> {
    /// Apply the module to `CIN x S x S` maps (the side is kept).
    pub fn forward<const B: usize, const S: usize, T>(
        &self,
        x: Tensor<Rank4<B, CIN, S, S>, f32, Cpu, T>,
    ) -> Tensor<Rank4<B, { m::OUT }, S, S>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        // Every conv here keeps the side S; spelling the types out lets the
        // compiler check it. Each branch's last conv writes straight into
        // its slice of the module's output.
        let b5: Map<B, { m::B5_REDUCE }, S, T> = self.b5_1.forward(x.retaped::<T>());
        let b3: Map<B, { m::B3_REDUCE }, S, T> = self.b3_1.forward(x.retaped::<T>());
        let b3: Map<B, { m::B3 }, S, T> = self.b3_2.forward(b3);
        let bp: Map<B, CIN, S, T> = ops::avgpool3x3(x.retaped::<T>());
        ops::conv2d_concat4(
            self.b1.branch(x),
            self.b5_2.branch(b5),
            self.b3_3.branch(b3),
            self.bp.branch(bp),
        )
    }
}

impl<const CIN: usize, E, D> TensorCollection<E, D> for InceptionA<CIN, E, D>
where
    E: Dtype + Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = InceptionA<CIN, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("b1", |s| &s.b1, |s| &mut s.b1),
                    Self::module("b5_1", |s| &s.b5_1, |s| &mut s.b5_1),
                    Self::module("b5_2", |s| &s.b5_2, |s| &mut s.b5_2),
                ),
                (
                    Self::module("b3_1", |s| &s.b3_1, |s| &mut s.b3_1),
                    Self::module("b3_2", |s| &s.b3_2, |s| &mut s.b3_2),
                    Self::module("b3_3", |s| &s.b3_3, |s| &mut s.b3_3),
                    Self::module("bp", |s| &s.bp, |s| &mut s.bp),
                ),
            ),
            |((b1, b5_1, b5_2), (b3_1, b3_2, b3_3, bp))| InceptionA {
                b1,
                b5_1,
                b5_2,
                b3_1,
                b3_2,
                b3_3,
                bp,
            },
        )
    }
}

/// The whole network.
#[derive(Clone, Debug)]
pub struct InceptionNet<E: Dtype = f32, D: Storage<E> = Cpu> {
    /// First conv, 1 -> C1, kernel K1.
    pub conv1: Conv<1, { a::C1 }, { a::K1 }, 0, E, D>,
    /// Inception module on C1 channels.
    pub incep1: InceptionA<{ a::C1 }, E, D>,
    /// Second conv, INCEP_OUT -> C2, kernel K2.
    pub conv2: Conv<{ a::INCEP_OUT }, { a::C2 }, { a::K2 }, 0, E, D>,
    /// Inception module on C2 channels.
    pub incep2: InceptionA<{ a::C2 }, E, D>,
    /// Classifier on the flattened (C, H, W) features.
    pub fc: Linear<{ a::FLAT }, CLASSES, E, D>,
}

impl InceptionNet {
    /// Logits for a batch of normalised 1 x 28 x 28 images.
    pub fn forward<const B: usize, T>(
        &self,
        x: Tensor<Rank4<B, 1, IMAGE_SIDE, IMAGE_SIDE>, f32, Cpu, T>,
    ) -> Tensor<Rank2<B, CLASSES>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        let x: Tensor<Rank4<B, { a::C1 }, { a::S1 }, { a::S1 }>, _, _, _> =
            self.conv1.forward_first(x);
        let x: Tensor<Rank4<B, { a::C1 }, { a::P1 }, { a::P1 }>, _, _, _> = ops::maxpool2d_relu(x);
        let x = self.incep1.forward(x);
        let x: Tensor<Rank4<B, { a::C2 }, { a::S2 }, { a::S2 }>, _, _, _> = self.conv2.forward(x);
        let x: Tensor<Rank4<B, { a::C2 }, { a::P2 }, { a::P2 }>, _, _, _> = ops::maxpool2d_relu(x);
        let x = self.incep2.forward(x);
        self.fc.forward(ops::flatten::<
            B,
            { a::INCEP_OUT },
            { a::P2 },
            { a::P2 },
            { a::FLAT },
            T,
        >(x))
    }
}

impl<E, D> TensorCollection<E, D> for InceptionNet<E, D>
where
    E: Dtype + Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = InceptionNet<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("incep1", |s| &s.incep1, |s| &mut s.incep1),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                Self::module("incep2", |s| &s.incep2, |s| &mut s.incep2),
                Self::module("fc", |s| &s.fc, |s| &mut s.fc),
            ),
            |(conv1, incep1, conv2, incep2, fc)| InceptionNet {
                conv1,
                incep1,
                conv2,
                incep2,
                fc,
            },
        )
    }
}
