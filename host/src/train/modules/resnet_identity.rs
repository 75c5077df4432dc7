//! The lecture's residual network (`ResNetCourse` in the PyTorch
//! reference): conv1, ReLU, max pool, a residual block, conv2, ReLU, max
//! pool, a residual block, fc. Every size comes from `shared::arch`.

use super::conv::Conv;
use crate::train::ops;
use dfdx::nn::tensor_collection::{ModuleVisitor, TensorCollection};
use dfdx::prelude::*;
use shared::arch::{resnet_identity as a, CLASSES, IMAGE_SIDE};

use dfdx::nn::modules::Linear;
use num_traits::Float;

/// The lecture's block: `ReLU(x + conv2(ReLU(conv1(x))))`, two 3x3 convs
/// on `C` channels and an identity shortcut.
#[derive(Clone, Debug)]
pub struct ResidualBlock<const C: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// C -> C, 3x3.
    pub conv1: Conv<C, C, { a::K }, { a::PAD }, E, D>,
    /// C -> C, 3x3.
    pub conv2: Conv<C, C, { a::K }, { a::PAD }, E, D>,
}

impl<const C: usize> ResidualBlock<C> {
    /// Apply the block to `C x S x S` maps (the side is kept).
    pub fn forward<const B: usize, const S: usize, T>(
        &self,
        x: Tensor<Rank4<B, C, S, S>, f32, Cpu, T>,
    ) -> Tensor<Rank4<B, C, S, S>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T>,
    {
        let y: Tensor<Rank4<B, C, S, S>, _, _, _> = self.conv1.forward_relu(x.retaped::<T>());
        self.conv2.forward_add_relu(y, x)
    }
}

impl<const C: usize, E, D> TensorCollection<E, D> for ResidualBlock<C, E, D>
where
    E: Dtype + Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ResidualBlock<C, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
            ),
            |(conv1, conv2)| ResidualBlock { conv1, conv2 },
        )
    }
}

/// The whole network.
#[derive(Clone, Debug)]
pub struct ResNetIdentity<E: Dtype = f32, D: Storage<E> = Cpu> {
    /// 1 -> C1, 5x5.
    pub conv1: Conv<1, { a::C1 }, { a::K_STEM }, 0, E, D>,
    /// C1 -> C2, 5x5.
    pub conv2: Conv<{ a::C1 }, { a::C2 }, { a::K_STEM }, 0, E, D>,
    /// Block on C1 channels.
    pub rb1: ResidualBlock<{ a::C1 }, E, D>,
    /// Block on C2 channels.
    pub rb2: ResidualBlock<{ a::C2 }, E, D>,
    /// Classifier on the flattened (C, H, W) features.
    pub fc: Linear<{ a::FLAT }, CLASSES, E, D>,
}

impl ResNetIdentity {
    /// Logits for a batch of normalised 1 x 28 x 28 images.
    pub fn forward<const B: usize, T>(
        &self,
        x: Tensor<Rank4<B, 1, IMAGE_SIDE, IMAGE_SIDE>, f32, Cpu, T>,
    ) -> Tensor<Rank2<B, CLASSES>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        let x: Tensor<Rank4<B, { a::C1 }, { a::S1 }, { a::S1 }>, _, _, _> =
            self.conv1.forward_first_relu(x);
        let x: Tensor<Rank4<B, { a::C1 }, { a::P1 }, { a::P1 }>, _, _, _> = ops::maxpool2d(x);
        let x = self.rb1.forward(x);
        let x: Tensor<Rank4<B, { a::C2 }, { a::S2 }, { a::S2 }>, _, _, _> =
            self.conv2.forward_relu(x);
        let x: Tensor<Rank4<B, { a::C2 }, { a::P2 }, { a::P2 }>, _, _, _> = ops::maxpool2d(x);
        let x = self.rb2.forward(x);
        self.fc.forward(ops::flatten::<
            B,
            { a::C2 },
            { a::P2 },
            { a::P2 },
            { a::FLAT },
            T,
        >(x))
    }
}

impl<E, D> TensorCollection<E, D> for ResNetIdentity<E, D>
where
    E: Dtype + Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ResNetIdentity<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                Self::module("rb1", |s| &s.rb1, |s| &mut s.rb1),
                Self::module("rb2", |s| &s.rb2, |s| &mut s.rb2),
                Self::module("fc", |s| &s.fc, |s| &mut s.fc),
            ),
            |(conv1, conv2, rb1, rb2, fc)| ResNetIdentity {
                conv1,
                conv2,
                rb1,
                rb2,
                fc,
            },
        )
    }
}
