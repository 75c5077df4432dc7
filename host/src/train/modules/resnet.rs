//! The seed's ResNet: two projection blocks, each followed
//! by a 2x2 max pool and ReLU, then fc.

use super::conv::Conv;
use crate::train::ops;
use dfdx::nn::tensor_collection::{ModuleVisitor, TensorCollection};
use dfdx::prelude::*;
use shared::arch::{resnet as a, CLASSES, IMAGE_SIDE};

use dfdx::nn::modules::Linear;
use num_traits::Float;

/// The seed's "IdentityBlock": `ReLU(conv(x) + conv2(ReLU(conv1(x))))`,
/// where `conv` is a 3x3 projection shortcut.
#[derive(Clone, Debug)]
pub struct IdentityBlock<const CIN: usize, const COUT: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// cin -> cin, 3x3.
    pub conv1: Conv<CIN, CIN, { a::K }, { a::PAD }, E, D>,
    /// cin -> cout, 3x3.
    pub conv2: Conv<CIN, COUT, { a::K }, { a::PAD }, E, D>,
    /// The shortcut: cin -> cout, 3x3.
    pub conv: Conv<CIN, COUT, { a::K }, { a::PAD }, E, D>,
}

impl<const CIN: usize, const COUT: usize> IdentityBlock<CIN, COUT> {
    /// Apply the block to `CIN x S x S` maps, then the 2x2 max pool and
    /// ReLU that follow it in the network (fused into the block's merge):
    /// `COUT x S/2 x S/2` maps.
    pub fn forward_pool<const B: usize, const S: usize, const SP: usize, T>(
        &self,
        x: Tensor<Rank4<B, CIN, S, S>, f32, Cpu, T>,
    ) -> Tensor<Rank4<B, COUT, SP, SP>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        let y: Tensor<Rank4<B, CIN, S, S>, _, _, _> = self.conv1.forward_relu(x.retaped::<T>());
        let s: Tensor<Rank4<B, COUT, S, S>, _, _, _> = self.conv.forward(x);
        self.conv2.forward_add_relu_maxpool(y, s)
    }

    /// Like [`IdentityBlock::forward_pool`] for the network's input, which
    /// needs no gradient.
    pub fn forward_first_pool<const B: usize, const S: usize, const SP: usize, T>(
        &self,
        x: Tensor<Rank4<B, CIN, S, S>, f32, Cpu, T>,
    ) -> Tensor<Rank4<B, COUT, SP, SP>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        let y: Tensor<Rank4<B, CIN, S, S>, _, _, _> =
            self.conv1.forward_first_relu(x.retaped::<T>());
        let s: Tensor<Rank4<B, COUT, S, S>, _, _, _> = self.conv.forward_first(x);
        self.conv2.forward_add_relu_maxpool(y, s)
    }
}

impl<const CIN: usize, const COUT: usize, E, D> TensorCollection<E, D>
    for IdentityBlock<CIN, COUT, E, D>
where
    E: Dtype + Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = IdentityBlock<CIN, COUT, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                Self::module("conv", |s| &s.conv, |s| &mut s.conv),
            ),
            |(conv1, conv2, conv)| IdentityBlock { conv1, conv2, conv },
        )
    }
}

/// The whole network.
#[derive(Clone, Debug)]
pub struct ResNet<E: Dtype = f32, D: Storage<E> = Cpu> {
    /// Block 1 -> C1.
    pub r1: IdentityBlock<1, { a::C1 }, E, D>,
    /// Block C1 -> C2.
    pub r2: IdentityBlock<{ a::C1 }, { a::C2 }, E, D>,
    /// Classifier on the flattened (C, H, W) features.
    pub fc: Linear<{ a::FLAT }, CLASSES, E, D>,
}

impl ResNet {
    /// Logits for a batch of normalised 1 x 28 x 28 images.
    pub fn forward<const B: usize, T>(
        &self,
        x: Tensor<Rank4<B, 1, IMAGE_SIDE, IMAGE_SIDE>, f32, Cpu, T>,
    ) -> Tensor<Rank2<B, CLASSES>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        let x: Tensor<Rank4<B, { a::C1 }, { a::P1 }, { a::P1 }>, _, _, _> =
            self.r1.forward_first_pool(x);
        let x: Tensor<Rank4<B, { a::C2 }, { a::P2 }, { a::P2 }>, _, _, _> = self.r2.forward_pool(x);
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

impl<E, D> TensorCollection<E, D> for ResNet<E, D>
where
    E: Dtype + Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ResNet<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("r1", |s| &s.r1, |s| &mut s.r1),
                Self::module("r2", |s| &s.r2, |s| &mut s.r2),
                Self::module("fc", |s| &s.fc, |s| &mut s.fc),
            ),
            |(r1, r2, fc)| ResNet { r1, r2, fc },
        )
    }
}
