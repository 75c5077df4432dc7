//! Training: the dfdx networks ([`modules`]) and their conv, pool and concat
//! ops ([`ops`]) on MNIST (read by `files::mnist`), the learning-rate schedule
//! ([`schedule`]), checkpoints ([`checkpoint`]), evaluation ([`eval`]), the
//! log and its pictures ([`report`]), peak memory ([`memory`]) and the
//! training benchmark ([`bench`](mod@bench)).
//!
//! This module is the training loop itself: shuffled mini-batches, Adam,
//! cross-entropy, a test evaluation and, after every epoch, the checkpoint
//! and the training state that lets `--resume` continue the run exactly
//! (see [`state`]).

mod adam;
pub mod bench;
pub mod checkpoint;
pub mod eval;
pub mod memory;
pub mod modules;
pub mod ops;
pub mod report;
pub mod schedule;
pub mod state;

pub use adam::Adam;
pub use state::{checkpoint_path, state_path};

use crate::error::{Error, Result};
use checkpoint::Checkpoint;
use dfdx::nn::BuildModule;
use dfdx::prelude::*;
use files::mnist::{Dataset, Split};
use indicatif::{ProgressBar, ProgressStyle};
use modules::Net;
use rand::{seq::SliceRandom, SeedableRng};
use report::{EpochRecord, NetLog};
use schedule::Schedule;
use shared::arch::{CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use state::{Found, TrainState};
use std::path::Path;
use std::time::Instant;

/// Checkpoint metadata key: epochs completed.
const META_EPOCH: &str = "epoch";

/// Images per batch unless told otherwise.
pub const DEFAULT_BATCH: usize = 128;

/// The settings that decide a run's arithmetic, with its data. They are
/// saved in its training state, and a resumed run takes them from there.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Epochs to reach: with the cosine schedule, also the schedule's span.
    pub epochs: usize,
    /// Images per batch.
    pub batch: usize,
    /// Base learning rate.
    pub lr: f64,
    /// How the learning rate moves.
    pub schedule: Schedule,
    /// Seeds the initial weights and each epoch's shuffle.
    pub seed: u64,
}

/// What the command line asked for. `None` means the network's default for
/// a fresh run, and the saved run's value when resuming.
#[derive(Clone, Debug, Default)]
pub struct Requested {
    /// `--epochs`.
    pub epochs: Option<usize>,
    /// `--batch`.
    pub batch: Option<usize>,
    /// `--lr`.
    pub lr: Option<f64>,
    /// `--schedule`.
    pub schedule: Option<Schedule>,
    /// `--seed`.
    pub seed: Option<u64>,
}

impl Requested {
    /// The settings of a fresh run of `M`.
    pub fn fresh<M: Net>(&self) -> Settings {
        Settings {
            epochs: self.epochs.unwrap_or(M::DEFAULT_EPOCHS),
            batch: self.batch.unwrap_or(DEFAULT_BATCH),
            lr: self.lr.unwrap_or(M::DEFAULT_LR),
            schedule: self.schedule.unwrap_or(Schedule::Cosine),
            seed: self.seed.unwrap_or(0),
        }
    }

    /// The saved run's settings with the requested ones in their place,
    /// and, for each requested one that changes the run, why the run will
    /// no longer match an uninterrupted one.
    fn over(&self, saved: &Settings) -> (Settings, Vec<String>) {
        let s = Settings {
            epochs: self.epochs.unwrap_or(saved.epochs),
            batch: self.batch.unwrap_or(saved.batch),
            lr: self.lr.unwrap_or(saved.lr),
            schedule: self.schedule.unwrap_or(saved.schedule),
            seed: self.seed.unwrap_or(saved.seed),
        };
        let mut notes = Vec::new();
        let mut differs = |flag: &str, now: String, then: String| {
            if now != then {
                notes.push(format!("{flag} {now} differs from the run's {then}"));
            }
        };
        differs("--batch", s.batch.to_string(), saved.batch.to_string());
        differs("--lr", s.lr.to_string(), saved.lr.to_string());
        differs(
            "--schedule",
            format!("{:?}", s.schedule).to_lowercase(),
            format!("{:?}", saved.schedule).to_lowercase(),
        );
        differs("--seed", s.seed.to_string(), saved.seed.to_string());
        // A constant rate does not depend on the run's length.
        if s.schedule != Schedule::Constant {
            differs("--epochs", s.epochs.to_string(), saved.epochs.to_string());
        }
        (s, notes)
    }
}

/// Which training data a run sees: how many images, and the SHA-256 of
/// their pixels and labels. Taken once per run, saved in the training
/// state, compared on resuming.
#[derive(Clone, Debug, PartialEq)]
pub struct DataId {
    /// Training images.
    pub images: usize,
    /// [`Split::sha256`] of them.
    pub sha256: String,
}

impl DataId {
    /// The identity of `train`.
    pub fn of(train: &Split) -> Self {
        DataId {
            images: train.len(),
            sha256: train.sha256(),
        }
    }
}

/// A network ready to train: fresh, or restored from its checkpoint and
/// training state.
pub struct Start<M> {
    model: M,
    dev: Cpu,
    epochs_done: usize,
    /// The training data the run goes on with.
    data: DataId,
    /// Adam: fresh, or with the step count and moments saved with the
    /// checkpoint.
    adam: Adam,
    /// The run's settings.
    pub settings: Settings,
    /// Why the run will not continue exactly as an uninterrupted one would
    /// have; empty when it will.
    pub inexact: Vec<String>,
}

impl<M: Net> Start<M> {
    /// Fresh weights, from the requested seed, to train on `data`.
    pub fn fresh(req: &Requested, data: &DataId) -> Self {
        let settings = req.fresh::<M>();
        let dev = device(settings.seed);
        let model = M::build(&dev);
        let adam = Adam::new(&model, &dev, settings.lr);
        Start {
            model,
            dev,
            epochs_done: 0,
            data: data.clone(),
            adam,
            settings,
            inexact: Vec::new(),
        }
    }

    /// The run saved in `out` (checkpoint and training state), to continue
    /// on `data`. Fails, before any training, if the checkpoint is
    /// missing, corrupt or of another network, if the training state is
    /// corrupt, of another network or does not fit this one (Adam's
    /// moments by name and shape), or if the run already has more epochs
    /// than asked for. A missing or stale training state, other data or
    /// other settings are accepted, and [`Start::inexact`] says why the run
    /// will then differ from an uninterrupted one.
    pub fn resume(out: &Path, req: &Requested, data: &DataId) -> Result<Self> {
        let net = M::ID;
        state::recover(out, net)?;
        let path = checkpoint_path(out, net);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let ckpt = Checkpoint::parse(&path, &bytes, crate::train::checkpoint::FORMAT)?;
        let dev = device(0);
        let mut model = M::build(&dev);
        modules::load_checkpoint(&mut model, &ckpt).map_err(|e| Error::Resume {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let epochs_done: usize = ckpt
            .meta
            .get(META_EPOCH)
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| Error::Resume {
                path: path.clone(),
                problem: format!("no `{META_EPOCH}` count in its metadata"),
            })?;
        let state_file = state_path(out, net);
        let restart = |why: String| format!("{why}: Adam's moments restart from zero");
        let fresh = || {
            let settings = req.fresh::<M>();
            let adam = Adam::new(&model, &dev, settings.lr);
            (settings, adam)
        };
        let mut inexact = Vec::new();
        let (settings, adam) = match state::load(out, net, &bytes)? {
            Found::Matching(saved) => {
                if saved.epochs_done != epochs_done {
                    return Err(Error::Resume {
                        path: state_file,
                        problem: format!(
                            "it records {} epochs, its checkpoint {epochs_done}",
                            saved.epochs_done
                        ),
                    });
                }
                let (settings, notes) = req.over(&saved.settings);
                inexact.extend(notes);
                if saved.data != *data {
                    inexact.push(format!(
                        "the training data differ from the run's ({} images then, {} now; check --data-dir and --limit-train)",
                        saved.data.images, data.images
                    ));
                }
                let position = epochs_done * (data.images / settings.batch);
                if saved.schedule_step != position && inexact.is_empty() {
                    inexact.push(format!(
                        "the schedule stood at step {}, it resumes at step {position}",
                        saved.schedule_step
                    ));
                }
                let mut adam = Adam::new(&model, &dev, settings.lr);
                adam.restore(&model, saved.adam_step, &saved.moments)
                    .map_err(|e| Error::Resume {
                        path: state_file.clone(),
                        problem: e.to_string(),
                    })?;
                (settings, adam)
            }
            Found::Missing => {
                inexact.push(restart(format!(
                    "there is no training state {} beside the checkpoint",
                    state_file.display()
                )));
                fresh()
            }
            Found::OfAnotherCheckpoint => {
                inexact.push(restart(format!(
                    "the training state {} belongs to another checkpoint",
                    state_file.display()
                )));
                fresh()
            }
        };
        if settings.epochs < epochs_done {
            return Err(Error::Config(format!(
                "--epochs {}: {} already holds {epochs_done} epochs of {}; ask for more to train on, or train afresh without --resume",
                settings.epochs,
                path.display(),
                net.name()
            )));
        }
        Ok(Start {
            model,
            dev,
            epochs_done,
            data: data.clone(),
            adam,
            settings,
            inexact,
        })
    }

    /// Epochs already trained.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// Whether the run already has all its epochs.
    pub fn is_complete(&self) -> bool {
        self.epochs_done >= self.settings.epochs
    }

    /// The model as it stands.
    pub fn into_model(self) -> M {
        self.model
    }
}

fn device(seed: u64) -> Cpu {
    let dev = Cpu::seed_from_u64(seed);
    // Reuse freed buffers: fresh zeroed allocations every step cost page faults.
    dev.enable_cache();
    dev
}

/// Train one network with batch size `B` (its settings' batch) on `data`,
/// saving each epoch's checkpoint and training state in `out` and
/// appending the epoch to `log` (which `after_epoch` receives to save), and
/// return the trained model.
pub fn train<M: Net, const B: usize>(
    start: Start<M>,
    data: &Dataset,
    out: &Path,
    progress: bool,
    log: &mut NetLog,
    mut after_epoch: impl FnMut(&NetLog) -> Result<()>,
) -> Result<M> {
    let Start {
        model,
        dev,
        epochs_done,
        data: data_id,
        adam,
        settings: s,
        ..
    } = start;
    assert_eq!(s.batch, B, "the batch size is the const generic");
    assert_eq!(
        data_id.images,
        data.train.len(),
        "the run's data are `data`'s"
    );
    let train_x = eval::normalized(&data.train);
    let test_x = eval::normalized(&data.test);
    let n = data.train.len();
    let steps_per_epoch = n / B; // the last partial batch is dropped
    if steps_per_epoch == 0 {
        return Err(Error::Config(format!(
            "{n} training images do not fill one batch of {B}"
        )));
    }
    let total_steps = steps_per_epoch * s.epochs;

    let mut stepper = Stepper::<M, B>::with_adam(model, dev.clone(), adam);
    let mut order: Vec<usize> = (0..n).collect();
    let mut batch_x = vec![0f32; B * IMAGE_PIXELS];
    let mut batch_y = vec![0f32; B * CLASSES];

    for epoch in epochs_done..s.epochs {
        memory::reset_peak();
        // Each epoch's order depends only on (seed, epoch): a resumed run
        // sees the same batches as an uninterrupted one.
        order.sort_unstable();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            s.seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ));
        let bar = progress_bar(progress, M::ID.name(), epoch, s.epochs, steps_per_epoch);
        let started = Instant::now();
        let mut loss_sum = 0.0f64;
        let mut lr = s.lr;
        for (step, idx) in order.chunks_exact(B).enumerate() {
            for (i, &img) in idx.iter().enumerate() {
                batch_x[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
                    .copy_from_slice(&train_x[img * IMAGE_PIXELS..(img + 1) * IMAGE_PIXELS]);
                let row = &mut batch_y[i * CLASSES..(i + 1) * CLASSES];
                row.fill(0.0);
                row[data.train.labels[img] as usize] = 1.0;
            }
            lr = s
                .schedule
                .lr(s.lr, epoch * steps_per_epoch + step, total_steps);
            let loss_value = stepper.step(&batch_x, &batch_y, lr);
            loss_sum += loss_value as f64;
            if !loss_value.is_finite() {
                return Err(Error::Diverged {
                    net: M::ID.name(),
                    epoch: epoch + 1,
                    lr,
                });
            }
            if step % 10 == 9 {
                let secs = started.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4}  {:.0} img/s",
                    loss_sum / (step + 1) as f64,
                    ((step + 1) * B) as f64 / secs
                ));
            }
            bar.inc(1);
        }
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let predictions = eval::predictions(&stepper.model, &dev, &test_x);
        let mut ckpt = modules::to_checkpoint(&stepper.model);
        ckpt.meta.insert(META_EPOCH.into(), (epoch + 1).to_string());
        let train_state = TrainState {
            settings: s.clone(),
            epochs_done: epoch + 1,
            schedule_step: (epoch + 1) * steps_per_epoch,
            adam_step: stepper.adam.step(),
            moments: stepper.adam.to_tensors(&stepper.model),
            data: data_id.clone(),
        };
        state::save(out, &ckpt, &train_state)?;

        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / steps_per_epoch as f64,
            test_accuracy: eval::accuracy(&predictions, &data.test.labels),
            seconds,
            lr,
            images_per_second: (steps_per_epoch * B) as f64 / seconds,
            peak_rss_mib: memory::peak_since_reset_mib(),
        };
        println!(
            "{:<9} epoch {:>2}/{}  loss {:.4}  test accuracy {:.2}%  {:.1} s ({:.0} img/s)  lr {:.2e}{}",
            M::ID.name(),
            record.epoch,
            s.epochs,
            record.train_loss,
            100.0 * record.test_accuracy,
            record.seconds,
            record.images_per_second,
            record.lr,
            record.peak_rss_mib.map(|m| format!("  peak {m:.0} MiB")).unwrap_or_default()
        );
        log.epochs.retain(|e| e.epoch < record.epoch);
        log.epochs.push(record);
        log.settings = Some(s.clone());
        log.confusion = Some(report::confusion_matrix(&predictions, &data.test.labels));
        after_epoch(log)?;
    }
    let model = stepper.model;
    // What this network's steps kept for reuse is sized for it alone.
    drop((stepper.grads, stepper.adam));
    dev.empty_cache();
    ops::release_scratch();
    Ok(model)
}

fn progress_bar(show: bool, net: &str, epoch: usize, epochs: usize, steps: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64).with_prefix(format!("{net} {}/{epochs}", epoch + 1));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {pos}/{len} batches  {msg}  ETA {eta}",
        )
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
    adam: Adam,
}

impl<M: Net, const B: usize> Stepper<M, B> {
    /// A fresh Adam on `model` with learning rate `lr` (changed per step by
    /// [`Stepper::step`]).
    pub fn new(model: M, dev: Cpu, lr: f64) -> Self {
        let adam = Adam::new(&model, &dev, lr);
        Self::with_adam(model, dev, adam)
    }

    fn with_adam(model: M, dev: Cpu, adam: Adam) -> Self {
        let grads = model.alloc_grads();
        Stepper {
            model,
            dev,
            grads,
            adam,
        }
    }

    /// Forward, backward and an Adam update on `x` (B normalised images)
    /// against one-hot `y` (B x CLASSES); returns the batch's mean loss.
    pub fn step(&mut self, x: &[f32], y: &[f32], lr: f64) -> f32 {
        self.adam.cfg.lr = lr;
        let x = ops::tensor_from_slice::<Rank4<B, 1, IMAGE_SIDE, IMAGE_SIDE>>(&self.dev, x);
        let y = ops::tensor_from_slice::<Rank2<B, CLASSES>>(&self.dev, y);
        let grads = std::mem::replace(&mut self.grads, Gradients::leaky());
        let loss = cross_entropy_with_logits_loss(self.model.logits(x.traced(grads)), y);
        let value = loss.array();
        self.grads = loss.backward();
        self.adam.update(&mut self.model, &mut self.grads);
        self.model.zero_grads(&mut self.grads);
        value
    }
}
