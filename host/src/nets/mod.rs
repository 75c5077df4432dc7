//! The trainable networks, defined once from the sizes in `shared::arch`,
//! and the bridge between their parameters and named checkpoint tensors.

mod conv;
mod inception;
mod resnet;

pub use conv::Conv;
pub use inception::{InceptionA, InceptionNet};
pub use resnet::{IdentityBlock, ResNet};

use crate::checkpoint::{Checkpoint, NamedTensor};
use crate::error::{Error, Result};
use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName, ViewTensorRef,
};
use dfdx::prelude::*;
use shared::arch::{CLASSES, IMAGE_SIDE};

/// What the trainer needs of a network.
pub trait Net: TensorCollection<f32, Cpu, To<f32, Cpu> = Self> + Clone + Send + Sync + 'static {
    /// The network's name on the command line and in files.
    const NAME: &'static str;
    /// Trainable parameters (from `shared::arch`).
    const PARAMS: usize;
    /// The learning rate that suits it with Adam.
    const DEFAULT_LR: f64;

    /// Logits for a batch of normalised 1 x 28 x 28 images.
    fn logits<const B: usize, T>(
        &self,
        x: Tensor<Rank4<B, 1, IMAGE_SIDE, IMAGE_SIDE>, f32, Cpu, T>,
    ) -> Tensor<Rank2<B, CLASSES>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>;
}

impl Net for InceptionNet {
    const NAME: &'static str = "inception";
    const PARAMS: usize = shared::arch::inception::PARAMS;
    const DEFAULT_LR: f64 = 1e-3;

    fn logits<const B: usize, T>(
        &self,
        x: Tensor<Rank4<B, 1, IMAGE_SIDE, IMAGE_SIDE>, f32, Cpu, T>,
    ) -> Tensor<Rank2<B, CLASSES>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        self.forward(x)
    }
}

impl Net for ResNet {
    const NAME: &'static str = "resnet";
    const PARAMS: usize = shared::arch::resnet::PARAMS;
    const DEFAULT_LR: f64 = 1e-2;

    fn logits<const B: usize, T>(
        &self,
        x: Tensor<Rank4<B, 1, IMAGE_SIDE, IMAGE_SIDE>, f32, Cpu, T>,
    ) -> Tensor<Rank2<B, CLASSES>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        self.forward(x)
    }
}

/// Every parameter under its PyTorch `state_dict` name (`conv1.weight`,
/// `incep1.b5_2.bias`, ...), in the layouts PyTorch uses (OIHW, [out, in]).
pub fn named_tensors<M: Net>(model: &M) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    M::iter_tensors(&mut RecursiveWalker { m: (model, String::new()), f: &mut Export(&mut out) })
        .expect("exporting tensors cannot fail");
    out
}

/// The model as a checkpoint.
pub fn to_checkpoint<M: Net>(model: &M) -> Checkpoint {
    Checkpoint::new(M::NAME, named_tensors(model))
}

/// Load a checkpoint into `model`: the network, every name and every shape
/// must match, or nothing is changed.
pub fn load_checkpoint<M: Net>(model: &mut M, ckpt: &Checkpoint) -> Result<()> {
    ckpt.expect_net(M::NAME)?;
    let expected = named_tensors(model);
    ckpt.check_shapes(expected.iter().map(|t| (t.name.as_str(), t.shape.as_slice())))?;
    M::iter_tensors(&mut RecursiveWalker { m: (model, String::new()), f: &mut Import(ckpt) })?;
    Ok(())
}

struct Export<'a>(&'a mut Vec<NamedTensor>);

impl TensorVisitor<f32, Cpu> for Export<'_> {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = std::convert::Infallible;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, Cpu>,
        (t, name): (&Tensor<S, f32, Cpu>, String),
    ) -> Result<Option<Tensor<S, f32, Cpu>>, Self::Err> {
        self.0.push(NamedTensor::new(name, t.shape().concrete().into(), t.as_vec()));
        Ok(None)
    }
}

struct Import<'a>(&'a Checkpoint);

impl TensorVisitor<f32, Cpu> for Import<'_> {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = Error;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, Cpu>,
        (t, name): (&mut Tensor<S, f32, Cpu>, String),
    ) -> Result<Option<Tensor<S, f32, Cpu>>, Self::Err> {
        // check_shapes has run: every name is present with the right size.
        let src = self.0.get(&name).expect("checked by check_shapes");
        t.copy_from(&src.data);
        Ok(None)
    }
}
