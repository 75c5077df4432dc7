//! The trainable networks, each a dfdx module written from the sizes in
//! `shared::arch` (its shapes are types on the tape), held to its graph in
//! `shared::graph` by tests (the same tensors under the same names, the
//! same logits as the graph's f32 pass); and the bridge between their
//! parameters and named checkpoint tensors.
//!
//! [`with_net!`](crate::with_net) runs generic code for a network chosen
//! at run time: the one place that lists the dfdx modules.

mod conv;
mod inception;
mod resnet;
mod resnet_identity;

pub use conv::Conv;
pub use inception::{InceptionA, InceptionNet};
pub use resnet::{IdentityBlock, ResNet};
pub use resnet_identity::{ResNetIdentity, ResidualBlock};

use crate::error::{Error, Result};
use crate::train::checkpoint::{Checkpoint, NamedTensor};
use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName,
    ViewTensorRef,
};
use dfdx::prelude::*;
use shared::arch::{CLASSES, IMAGE_SIDE};
use shared::NetId;

/// What the trainer needs of a network.
pub trait Net:
    TensorCollection<f32, Cpu, To<f32, Cpu> = Self> + Clone + Send + Sync + 'static
{
    /// Which network it is (its name, graph and parameter count).
    const ID: NetId;
    /// The learning rate that suits it with Adam.
    const DEFAULT_LR: f64;
    /// Epochs of the default run: enough, with the cosine schedule, to pass
    /// 99.2% in a few minutes.
    const DEFAULT_EPOCHS: usize;

    /// Logits for a batch of normalised 1 x 28 x 28 images.
    fn logits<const B: usize, T>(
        &self,
        x: Tensor<Rank4<B, 1, IMAGE_SIDE, IMAGE_SIDE>, f32, Cpu, T>,
    ) -> Tensor<Rank2<B, CLASSES>, f32, Cpu, T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>;
}

/// Runs `$body` with `$M` the dfdx module of the network `$net` (a
/// [`NetId`]).
#[macro_export]
macro_rules! with_net {
    ($net:expr, $M:ident => $body:expr) => {
        match $net {
            shared::NetId::Inception => {
                type $M = $crate::train::modules::InceptionNet;
                $body
            }
            shared::NetId::ResNet => {
                type $M = $crate::train::modules::ResNet;
                $body
            }
            shared::NetId::ResNetIdentity => {
                type $M = $crate::train::modules::ResNetIdentity;
                $body
            }
        }
    };
}

/// `impl Net` for a module whose inherent `forward` computes the logits.
macro_rules! impl_net {
    ($M:ty, $id:expr, lr $lr:expr, epochs $epochs:expr) => {
        impl Net for $M {
            const ID: NetId = $id;
            const DEFAULT_LR: f64 = $lr;
            const DEFAULT_EPOCHS: usize = $epochs;

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
    };
}

impl_net!(InceptionNet, NetId::Inception, lr 1e-3, epochs 6);
impl_net!(ResNet, NetId::ResNet, lr 1e-2, epochs 8);
impl_net!(ResNetIdentity, NetId::ResNetIdentity, lr 2e-3, epochs 5);

/// Every parameter under its PyTorch `state_dict` name (`conv1.weight`,
/// `incep1.b5_2.bias`, ...), in the layouts PyTorch uses (OIHW, [out, in]).
pub fn named_tensors<M: Net>(model: &M) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut Export(&mut out),
    })
    .expect("exporting tensors cannot fail");
    out
}

/// The model as a checkpoint.
pub fn to_checkpoint<M: Net>(model: &M) -> Checkpoint {
    Checkpoint::new(M::ID, named_tensors(model))
}

/// Load a checkpoint into `model`: the network, every name and every shape
/// must match, or nothing is changed.
pub fn load_checkpoint<M: Net>(model: &mut M, ckpt: &Checkpoint) -> Result<()> {
    ckpt.expect_net(M::ID)?;
    let expected = named_tensors(model);
    ckpt.check_shapes(
        expected
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice())),
    )?;
    M::iter_tensors(&mut RecursiveWalker {
        m: (model, String::new()),
        f: &mut Import(ckpt),
    })?;
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
        self.0.push(NamedTensor::new(
            name,
            t.shape().concrete().into(),
            t.as_vec(),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::nn::BuildModule;
    use files::mnist::{Dataset, Verify, DEFAULT_DATA_DIR};

    /// The dfdx module computes its graph: on freshly initialised weights,
    /// its logits equal those of `shared`'s interpreter of the graph, fed
    /// the module's tensors by name.
    fn module_computes_its_graph<M: Net>() {
        let test = Dataset::load(DEFAULT_DATA_DIR.as_ref(), Verify::ShapeOnly)
            .unwrap()
            .test
            .truncated(40);
        let dev = Cpu::seed_from_u64(3);
        let model = M::build(&dev);
        let float = crate::quant::export::float_net(&to_checkpoint(&model)).unwrap();
        let want = crate::train::eval::logits(&model, &dev, &crate::train::eval::normalized(&test));
        let mut worst = 0f32;
        for (i, want) in want.chunks(CLASSES).enumerate() {
            let got = float.forward_pixels(test.image(i));
            worst = got
                .iter()
                .zip(want)
                .fold(worst, |w, (g, e)| w.max((g - e).abs()));
        }
        assert!(worst <= 1e-4, "{}: logits differ by {worst}", M::ID.name());
    }

    #[test]
    fn every_module_computes_its_graph() {
        for net in NetId::ALL {
            crate::with_net!(net, M => module_computes_its_graph::<M>());
        }
    }
}
