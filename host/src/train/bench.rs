//! Training-speed benchmark: milliseconds per training batch (forward,
//! backward, Adam) on real MNIST images, and the process's peak memory.

use crate::train::eval;
use crate::train::modules::Net;
use crate::train::Stepper;
use dfdx::nn::BuildModule;
use dfdx::prelude::*;
use files::mnist::Split;
use shared::arch::{CLASSES, IMAGE_PIXELS};
use std::time::Instant;

/// One network's measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    /// The network.
    pub net: &'static str,
    /// Images per batch.
    pub batch: usize,
    /// Threads in the pool.
    pub threads: usize,
    /// Median time of one training step.
    pub ms_per_batch_median: f64,
    /// Fastest step.
    pub ms_per_batch_min: f64,
    /// What a 60,000-image epoch takes at the median.
    pub epoch_seconds: f64,
}

/// Time `steps` training steps of `M` at batch `B` after `warmup` untimed ones.
pub fn measure<M: Net, const B: usize>(train: &Split, warmup: usize, steps: usize) -> Measurement {
    let dev = Cpu::seed_from_u64(0);
    dev.enable_cache();
    let mut stepper = Stepper::<M, B>::new(M::build(&dev), dev, M::DEFAULT_LR);
    let pixels = eval::normalized(&train.clone().truncated(B));
    assert_eq!(
        pixels.len(),
        B * IMAGE_PIXELS,
        "the benchmark needs at least {B} training images"
    );
    let mut onehot = vec![0f32; B * CLASSES];
    for (i, &l) in train.labels[..B].iter().enumerate() {
        onehot[i * CLASSES + l as usize] = 1.0;
    }
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let t = Instant::now();
        stepper.step(&pixels, &onehot, M::DEFAULT_LR);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Measurement {
        net: M::ID.name(),
        batch: B,
        threads: rayon::current_num_threads(),
        ms_per_batch_median: median,
        ms_per_batch_min: times[0],
        epoch_seconds: median * (60_000 / B) as f64 / 1e3,
    }
}
