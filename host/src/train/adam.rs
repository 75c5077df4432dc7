//! Adam whose state can be saved: the step count and both moments of every
//! parameter are held here, by parameter name, so that a checkpoint can
//! carry them and a resumed run continue exactly where it stopped. The
//! update itself is dfdx's ([`AdamConfig::try_update`]), so the arithmetic
//! is bit for bit that of `dfdx::optim::Adam`, whose state is private.

use crate::train::checkpoint::{shape_mismatch, NamedTensor};
use crate::train::modules::{named_tensors, Net};
use crate::train::ops::Buf;
use dfdx::nn::tensor_collection::{RecursiveWalker, TensorOptions, TensorVisitor, ViewTensorMut};
use dfdx::prelude::*;

/// Prefixes of the moments' tensor names in a saved state, as in PyTorch's
/// `Adam.state_dict()`: `exp_avg.conv1.weight`, `exp_avg_sq.conv1.weight`.
pub const FIRST_MOMENT: &str = "exp_avg";
/// See [`FIRST_MOMENT`].
pub const SECOND_MOMENT: &str = "exp_avg_sq";

/// Adam over the parameters of a network `M`.
pub struct Adam {
    /// Learning rate (set per step by the schedule), betas and epsilon.
    pub cfg: AdamConfig,
    /// Updates applied so far: Adam's `t`, which its bias correction uses.
    step: i32,
    /// Per parameter, in the order dfdx visits them: name, first and
    /// second moment.
    moments: Vec<(String, Buf, Buf)>,
}

/// Why a saved state does not fit a network.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateMismatch(pub String);

impl Adam {
    /// A fresh optimizer (zero moments, step 0) with dfdx's default betas
    /// and epsilon.
    pub fn new<M: Net>(model: &M, dev: &Cpu, lr: f64) -> Self {
        let moments = named_tensors(model)
            .into_iter()
            .map(|t| {
                (
                    t.name,
                    crate::train::ops::alloc(dev, t.data.len()),
                    crate::train::ops::alloc(dev, t.data.len()),
                )
            })
            .collect();
        Adam {
            cfg: AdamConfig {
                lr,
                ..Default::default()
            },
            step: 0,
            moments,
        }
    }

    /// Updates applied so far.
    pub fn step(&self) -> i32 {
        self.step
    }

    /// One update of `model` with `grads` (which must hold a gradient for
    /// every parameter: [`Net`] modules' `alloc_grads` does).
    pub fn update<M: Net>(&mut self, model: &mut M, grads: &mut Gradients<f32, Cpu>) {
        self.step = self.step.checked_add(1).expect("fewer than 2^31 steps");
        let mut visitor = Update {
            adam: self,
            grads,
            next: 0,
        };
        M::iter_tensors(&mut RecursiveWalker {
            m: model,
            f: &mut visitor,
        })
        .expect("the CPU device does not fail");
        assert_eq!(
            visitor.next,
            visitor.adam.moments.len(),
            "every parameter was updated"
        );
    }

    /// The moments as named tensors (`exp_avg.NAME` and `exp_avg_sq.NAME`),
    /// shaped like their parameters.
    pub fn to_tensors<M: Net>(&self, model: &M) -> Vec<NamedTensor> {
        let params = named_tensors(model);
        let mut out = Vec::with_capacity(2 * params.len());
        for (p, (_, m, v)) in params.iter().zip(&self.moments) {
            out.push(NamedTensor::new(
                format!("{FIRST_MOMENT}.{}", p.name),
                p.shape.clone(),
                m.to_vec(),
            ));
            out.push(NamedTensor::new(
                format!("{SECOND_MOMENT}.{}", p.name),
                p.shape.clone(),
                v.to_vec(),
            ));
        }
        out
    }

    /// Restores the step count and moments saved by [`Adam::to_tensors`];
    /// fails, changing nothing, unless `tensors` holds exactly the moments
    /// of `M`'s parameters with their shapes.
    pub fn restore<M: Net>(
        &mut self,
        model: &M,
        step: i32,
        tensors: &[NamedTensor],
    ) -> Result<(), StateMismatch> {
        let params = named_tensors(model);
        let name = |moment: &str, p: &NamedTensor| format!("{moment}.{}", p.name);
        let expected = params.iter().flat_map(|p| {
            [FIRST_MOMENT, SECOND_MOMENT].map(|moment| (name(moment, p), p.shape.clone()))
        });
        if let Some(problem) = shape_mismatch(tensors, expected) {
            return Err(StateMismatch(problem));
        }
        if step < 0 {
            return Err(StateMismatch(format!("a negative step count, {step}")));
        }
        let saved = |name: String| {
            tensors
                .iter()
                .find(|t| t.name == name)
                .expect("checked above")
        };
        let found = params
            .iter()
            .map(|p| (saved(name(FIRST_MOMENT, p)), saved(name(SECOND_MOMENT, p))));
        for ((_, m, v), (saved_m, saved_v)) in self.moments.iter_mut().zip(found) {
            m.copy_from_slice(&saved_m.data);
            v.copy_from_slice(&saved_v.data);
        }
        self.step = step;
        Ok(())
    }
}

struct Update<'a> {
    adam: &'a mut Adam,
    grads: &'a mut Gradients<f32, Cpu>,
    next: usize,
}

impl TensorVisitor<f32, Cpu> for Update<'_> {
    type Viewer = ViewTensorMut;
    type Err = <Cpu as HasErr>::Err;
    type E2 = f32;
    type D2 = Cpu;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, f32, Cpu>,
        p: &mut Tensor<S, f32, Cpu>,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, Self::Err> {
        if opts.do_gradient_update {
            let (_, m, v) = &mut self.adam.moments[self.next];
            let g = self.grads.get_or_alloc_mut(p)?;
            self.adam.cfg.try_update(self.adam.step, p, m, v, g)?;
        }
        self.next += 1;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::modules::ResNet;
    use dfdx::nn::BuildModule;
    use dfdx::optim::Optimizer;

    /// A few steps of real training with dfdx's own Adam and with ours,
    /// from the same weights and batches: the weights stay bit-identical;
    /// and a copy restored from the saved moments mid-way continues
    /// identically too.
    #[test]
    fn matches_dfdx_adam_bit_for_bit_and_restores_exactly() {
        const B: usize = 8;
        let dev = Cpu::seed_from_u64(5);
        let model = ResNet::build(&dev);
        let (mut theirs, mut ours, mut restored) = (model.clone(), model.clone(), None);
        let mut dfdx_adam = dfdx::optim::Adam::new(
            &theirs,
            AdamConfig {
                lr: 3e-3,
                ..Default::default()
            },
        );
        let mut adam = Adam::new(&ours, &dev, 3e-3);
        let mut resumed_adam = Adam::new(&ours, &dev, 3e-3);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9);
        for step in 0..6 {
            let x: Tensor<Rank4<B, 1, 28, 28>, f32, Cpu> = dev.sample_normal();
            let labels: Vec<usize> = (0..B)
                .map(|_| rand::Rng::gen_range(&mut rng, 0..10))
                .collect();
            let mut onehot = vec![0f32; B * 10];
            labels
                .iter()
                .enumerate()
                .for_each(|(i, &l)| onehot[i * 10 + l] = 1.0);
            let y: Tensor<Rank2<B, 10>, f32, Cpu> = dev.tensor_from_vec(onehot, Default::default());
            let grads_of = |m: &ResNet| {
                cross_entropy_with_logits_loss(
                    m.logits(x.clone().traced(m.alloc_grads())),
                    y.clone(),
                )
                .backward()
            };
            let g = grads_of(&theirs);
            dfdx_adam.update(&mut theirs, &g).unwrap();
            let mut g = grads_of(&ours);
            adam.update(&mut ours, &mut g);
            if let Some(r) = &mut restored {
                let mut g = grads_of(r);
                resumed_adam.update(r, &mut g);
            }
            assert_eq!(named_tensors(&ours), named_tensors(&theirs), "step {step}");
            if step == 2 {
                let saved = adam.to_tensors(&ours);
                resumed_adam.restore(&ours, adam.step(), &saved).unwrap();
                restored = Some(ours.clone());
            }
        }
        assert_eq!(
            named_tensors(restored.as_ref().unwrap()),
            named_tensors(&ours)
        );
    }

    #[test]
    fn a_state_of_another_shape_is_refused() {
        let dev = Cpu::seed_from_u64(5);
        let model = ResNet::build(&dev);
        let mut adam = Adam::new(&model, &dev, 1e-3);
        let mut saved = adam.to_tensors(&model);
        saved.pop();
        let err = adam.restore(&model, 3, &saved).unwrap_err().to_string();
        assert!(
            err.contains("tensor `exp_avg_sq.fc.bias` is missing"),
            "{err}"
        );
        let mut saved = adam.to_tensors(&model);
        saved[0].shape = vec![saved[0].data.len()];
        let err = adam.restore(&model, 3, &saved).unwrap_err().to_string();
        assert!(err.contains("has shape"), "{err}");
        assert_eq!(adam.step(), 0, "a refused state changes nothing");
    }
}
