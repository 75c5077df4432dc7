//! A trainable 2-D convolution layer: stride 1, square kernel, zero padding,
//! bias. Weights are OIHW, as PyTorch stores them.

use crate::train::ops;
use dfdx::nn::tensor_collection::{ModuleVisitor, TensorCollection, TensorOptions};
use dfdx::prelude::*;
use rand_distr::Uniform;

/// `CO` filters of `CI x K x K`, padding `P`.
#[derive(Clone, Debug)]
pub struct Conv<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// `[CO, CI, K, K]`.
    pub weight: Tensor<Rank4<CO, CI, K, K>, E, D>,
    /// `[CO]`.
    pub bias: Tensor<Rank1<CO>, E, D>,
}

impl<const CI: usize, const CO: usize, const K: usize, const P: usize> Conv<CI, CO, K, P> {
    /// Apply the layer to a batch of `CI x H x W` feature maps.
    pub fn forward<
        const B: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
        T,
    >(
        &self,
        x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    ) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu>,
    {
        ops::conv2d::<B, CI, H, W, CO, K, P, HO, WO, T>(x, &self.weight, &self.bias)
    }

    /// Like [`Conv::forward`], for a layer whose input needs no gradient
    /// (the network's first): skips the input-gradient work.
    pub fn forward_first<
        const B: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
        T,
    >(
        &self,
        x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    ) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu>,
    {
        ops::conv2d_first::<B, CI, H, W, CO, K, P, HO, WO, T>(x, &self.weight, &self.bias)
    }

    /// `relu(self.forward(x))`, the ReLU fused into the conv.
    pub fn forward_relu<
        const B: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
        T,
    >(
        &self,
        x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    ) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu>,
    {
        ops::conv2d_relu::<B, CI, H, W, CO, K, P, HO, WO, T>(x, &self.weight, &self.bias)
    }

    /// `relu(self.forward_first(x))`, the ReLU fused into the conv.
    pub fn forward_first_relu<
        const B: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
        T,
    >(
        &self,
        x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    ) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu>,
    {
        ops::conv2d_first_relu::<B, CI, H, W, CO, K, P, HO, WO, T>(x, &self.weight, &self.bias)
    }
}

impl<const CI: usize, const CO: usize, const K: usize, const P: usize> Conv<CI, CO, K, P> {
    /// `relu(shortcut + self.forward(x))`: a residual block's merge, fused
    /// into its last conv.
    pub fn forward_add_relu<
        const B: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
        T1,
        T2,
    >(
        &self,
        x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T1>,
        shortcut: Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T2>,
    ) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T1>
    where
        T1: Tape<f32, Cpu> + Merge<T2>,
        T2: Tape<f32, Cpu>,
    {
        ops::conv2d_add_relu::<B, CI, H, W, CO, K, P, HO, WO, T1, T2>(
            x,
            &self.weight,
            &self.bias,
            shortcut,
        )
    }

    /// `maxpool2d_relu(self.forward_add_relu(x, shortcut))`: a residual
    /// block's merge and the max pool after it, fused into its last conv.
    pub fn forward_add_relu_maxpool<
        const B: usize,
        const H: usize,
        const W: usize,
        const HO: usize,
        const WO: usize,
        const PH: usize,
        const PW: usize,
        T1,
        T2,
    >(
        &self,
        x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T1>,
        shortcut: Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T2>,
    ) -> Tensor<Rank4<B, CO, PH, PW>, f32, Cpu, T1>
    where
        T1: Tape<f32, Cpu> + Merge<T2>,
        T2: Tape<f32, Cpu>,
    {
        ops::conv2d_add_relu_maxpool::<B, CI, H, W, CO, K, P, HO, WO, PH, PW, T1, T2>(
            x,
            &self.weight,
            &self.bias,
            shortcut,
        )
    }

    /// The layer applied to `x` as one branch of [`ops::conv2d_concat4`],
    /// which writes its output straight into its slice of the concatenation.
    /// The layer must keep the size (`K = 2P + 1`, a const assertion).
    pub fn branch<const B: usize, const H: usize, const W: usize, T>(
        &self,
        x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    ) -> ops::Branch<'_, B, CI, H, W, CO, K, T> {
        const {
            assert!(
                K == 2 * P + 1,
                "a concatenated branch must keep its input's size"
            )
        }
        (x, &self.weight, &self.bias)
    }
}

impl<const CI: usize, const CO: usize, const K: usize, const P: usize, E, D>
    Conv<CI, CO, K, P, E, D>
where
    E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    /// PyTorch's default init for weight and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    fn init() -> Uniform<E> {
        let bound = E::from(1.0 / ((CI * K * K) as f64).sqrt()).expect("bound fits the dtype");
        Uniform::new(-bound, bound)
    }
}

impl<const CI: usize, const CO: usize, const K: usize, const P: usize, E, D> TensorCollection<E, D>
    for Conv<CI, CO, K, P, E, D>
where
    E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Conv<CI, CO, K, P, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Self::init())),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Self::init())),
                ),
            ),
            |(weight, bias)| Conv { weight, bias },
        )
    }
}
