//! The training loop: shuffled mini-batches, Adam, cross-entropy, a test
//! evaluation and an atomic checkpoint after every epoch.

use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval;
use crate::nets::{self, Net};
use crate::report::{self, EpochRecord, NetLog};
use crate::schedule::Schedule;
use dfdx::nn::BuildModule;
use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{seq::SliceRandom, SeedableRng};
use shared::arch::{CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Checkpoint metadata key: epochs completed.
const META_EPOCH: &str = "epoch";

/// Settings of one network's run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Epochs to reach (a resumed run continues up to this count).
    pub epochs: usize,
    /// Base learning rate.
    pub lr: f64,
    /// How the learning rate moves.
    pub schedule: Schedule,
    /// Seeds the initial weights and the shuffling.
    pub seed: u64,
    /// Output directory.
    pub out: PathBuf,
    /// Show progress bars.
    pub progress: bool,
}

/// Where a network's checkpoint lives in `out`.
pub fn checkpoint_path(out: &Path, net: &str) -> PathBuf {
    out.join(format!("{net}.safetensors"))
}

/// A network ready to train: fresh, or restored from its checkpoint.
pub struct Start<M> {
    model: M,
    epochs_done: usize,
}

impl<M: Net> Start<M> {
    /// Fresh weights from `seed`.
    pub fn fresh(seed: u64) -> Self {
        Start { model: M::build(&device(seed)), epochs_done: 0 }
    }

    /// The weights and epoch count of `OUT/NET.safetensors`. Fails, before
    /// any training, if the file is missing, corrupt or of another network.
    pub fn resume(out: &Path) -> Result<Self> {
        let path = checkpoint_path(out, M::ID.name());
        let ckpt = Checkpoint::load(&path)?;
        let mut model = M::build(&device(0));
        nets::load_checkpoint(&mut model, &ckpt).map_err(|e| Error::Resume { path: path.clone(), problem: e.to_string() })?;
        let epochs_done = ckpt.meta.get(META_EPOCH).and_then(|e| e.parse().ok()).ok_or_else(|| Error::Resume {
            path,
            problem: format!("no `{META_EPOCH}` count in its metadata"),
        })?;
        Ok(Start { model, epochs_done })
    }
}

fn device(seed: u64) -> Cpu {
    let dev = Cpu::seed_from_u64(seed);
    // Reuse freed buffers: fresh zeroed allocations every step cost page faults.
    dev.enable_cache();
    dev
}

/// Train one network with batch size `B`, appending each epoch to `log`
/// (which the caller saves), and return the trained model.
pub fn train<M: Net, const B: usize>(
    start: Start<M>,
    data: &Dataset,
    cfg: &Config,
    log: &mut NetLog,
    mut after_epoch: impl FnMut(&NetLog) -> Result<()>,
) -> Result<M> {
    let Start { model, epochs_done } = start;
    let dev = device(cfg.seed);
    let train_x = eval::normalized(&data.train);
    let test_x = eval::normalized(&data.test);
    let n = data.train.len();
    let steps_per_epoch = n / B; // the last partial batch is dropped
    if steps_per_epoch == 0 {
        return Err(Error::Config(format!("{n} training images do not fill one batch of {B}")));
    }
    let total_steps = steps_per_epoch * cfg.epochs;

    let mut stepper = Stepper::<M, B>::new(model, dev.clone(), cfg.lr);
    let mut order: Vec<usize> = (0..n).collect();
    let mut batch_x = vec![0f32; B * IMAGE_PIXELS];
    let mut batch_y = vec![0f32; B * CLASSES];

    for epoch in epochs_done..cfg.epochs {
        // Each epoch's order depends only on (seed, epoch): a resumed run
        // sees the same batches as an uninterrupted one.
        order.sort_unstable();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let bar = progress_bar(cfg.progress, M::ID.name(), epoch, cfg.epochs, steps_per_epoch);
        let started = Instant::now();
        let mut loss_sum = 0.0f64;
        let mut lr = cfg.lr;
        for (step, idx) in order.chunks_exact(B).enumerate() {
            for (i, &img) in idx.iter().enumerate() {
                batch_x[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
                    .copy_from_slice(&train_x[img * IMAGE_PIXELS..(img + 1) * IMAGE_PIXELS]);
                let row = &mut batch_y[i * CLASSES..(i + 1) * CLASSES];
                row.fill(0.0);
                row[data.train.labels[img] as usize] = 1.0;
            }
            lr = cfg.schedule.lr(cfg.lr, epoch * steps_per_epoch + step, total_steps);
            let loss_value = stepper.step(&batch_x, &batch_y, lr);
            loss_sum += loss_value as f64;
            if !loss_value.is_finite() {
                return Err(Error::Diverged { net: M::ID.name(), epoch: epoch + 1, lr });
            }
            if step % 10 == 9 {
                let secs = started.elapsed().as_secs_f64();
                bar.set_message(format!("loss {:.4}  {:.0} img/s", loss_sum / (step + 1) as f64, ((step + 1) * B) as f64 / secs));
            }
            bar.inc(1);
        }
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let predictions = eval::predictions(&stepper.model, &dev, &test_x);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / steps_per_epoch as f64,
            test_accuracy: eval::accuracy(&predictions, &data.test.labels),
            seconds,
            lr,
            images_per_second: (steps_per_epoch * B) as f64 / seconds,
        };
        println!(
            "{:<9} epoch {:>2}/{}  loss {:.4}  test accuracy {:.2}%  {:.1} s ({:.0} img/s)  lr {:.2e}",
            M::ID.name(),
            record.epoch,
            cfg.epochs,
            record.train_loss,
            100.0 * record.test_accuracy,
            record.seconds,
            record.images_per_second,
            record.lr
        );
        log.epochs.retain(|e| e.epoch < record.epoch);
        log.epochs.push(record);
        log.confusion = Some(report::confusion_matrix(&predictions, &data.test.labels));

        let mut ckpt = nets::to_checkpoint(&stepper.model);
        ckpt.meta.insert(META_EPOCH.into(), (epoch + 1).to_string());
        ckpt.save(&checkpoint_path(&cfg.out, M::ID.name()))?;
        after_epoch(log)?;
    }
    Ok(stepper.model)
}

fn progress_bar(show: bool, net: &str, epoch: usize, epochs: usize, steps: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64).with_prefix(format!("{net} {}/{epochs}", epoch + 1));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} batches  {msg}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// One optimisation step after another on a batch of `B` images: the
/// trainer's inner loop, shared with the benchmark.
pub struct Stepper<M: Net, const B: usize> {
    /// The network being trained.
    pub model: M,
    dev: Cpu,
    grads: Gradients<f32, Cpu>,
    opt: Adam<M, f32, Cpu>,
}

impl<M: Net, const B: usize> Stepper<M, B> {
    /// Adam on `model` with learning rate `lr` (changed per step by [`Stepper::step`]).
    pub fn new(model: M, dev: Cpu, lr: f64) -> Self {
        let grads = model.alloc_grads();
        let opt = Adam::new(&model, AdamConfig { lr, ..Default::default() });
        Stepper { model, dev, grads, opt }
    }

    /// Forward, backward and an Adam update on `x` (B normalised images)
    /// against one-hot `y` (B x CLASSES); returns the batch's mean loss.
    pub fn step(&mut self, x: &[f32], y: &[f32], lr: f64) -> f32 {
        self.opt.cfg.lr = lr;
        let x = self.dev.tensor_from_vec(x.to_vec(), Rank4::<B, 1, IMAGE_SIDE, IMAGE_SIDE>::default());
        let y = self.dev.tensor_from_vec(y.to_vec(), Rank2::<B, CLASSES>::default());
        let grads = std::mem::replace(&mut self.grads, Gradients::leaky());
        let loss = cross_entropy_with_logits_loss(self.model.logits(x.traced(grads)), y);
        let value = loss.array();
        self.grads = loss.backward();
        // The gradients cover exactly the model's tensors, so Adam cannot
        // miss one: an error here is a bug, not bad input.
        self.opt.update(&mut self.model, &self.grads).expect("every parameter has a gradient");
        self.model.zero_grads(&mut self.grads);
        value
    }
}
