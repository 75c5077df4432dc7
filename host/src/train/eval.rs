//! Inference over a data split, for test accuracy and confusion: the
//! trained f32 networks (dfdx, batched) and the int8 model files
//! (`shared`'s integer forward pass, the code the firmware runs).

use crate::error::Result;
use crate::train::checkpoint::Checkpoint;
use crate::train::modules::{load_checkpoint, Net};
use crate::train::ops::tensor_from_slice;
use dfdx::nn::BuildModule;
use dfdx::prelude::*;
use files::mnist::Split;
use serde::Serialize;
use shared::arch::{normalize_pixel, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use shared::nets::Model;
use std::time::Instant;

/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 250;

/// The split's pixels normalised for the networks, image after image.
pub fn normalized(split: &Split) -> Vec<f32> {
    split.images.iter().map(|&p| normalize_pixel(p)).collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best })
}

/// The model's logits for every image of `pixels` (normalised), in order.
pub fn logits<M: Net>(model: &M, dev: &Cpu, pixels: &[f32]) -> Vec<f32> {
    let n = pixels.len() / IMAGE_PIXELS;
    let mut out = Vec::with_capacity(n * CLASSES);
    let mut batch = vec![0.0; EVAL_BATCH * IMAGE_PIXELS];
    for chunk in pixels.chunks(EVAL_BATCH * IMAGE_PIXELS) {
        // The batch size is a compile-time shape: the last batch is padded.
        batch[..chunk.len()].copy_from_slice(chunk);
        batch[chunk.len()..].fill(0.0);
        let x = tensor_from_slice::<Rank4<EVAL_BATCH, 1, IMAGE_SIDE, IMAGE_SIDE>>(dev, &batch);
        let y = model.logits(x).as_vec();
        out.extend_from_slice(&y[..chunk.len() / IMAGE_PIXELS * CLASSES]);
    }
    out
}

/// The predicted class of every image of `pixels` (normalised).
pub fn predictions<M: Net>(model: &M, dev: &Cpu, pixels: &[f32]) -> Vec<u8> {
    logits(model, dev, pixels)
        .chunks(CLASSES)
        .map(|l| argmax(l) as u8)
        .collect()
}

/// Fraction of `predictions` equal to `labels`.
pub fn accuracy(predictions: &[u8], labels: &[u8]) -> f64 {
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// The trained f32 network's logits for each of the first `count` images of
/// `split` (dfdx, batched), `CLASSES` per image.
pub fn float_logits(ckpt: &Checkpoint, split: &Split, count: usize) -> Result<Vec<f32>> {
    fn run<M: Net>(ckpt: &Checkpoint, pixels: &[f32]) -> Result<Vec<f32>> {
        let dev = Cpu::default();
        let mut model = M::build(&dev);
        load_checkpoint(&mut model, ckpt)?;
        Ok(logits(&model, &dev, pixels))
    }
    let count = count.min(split.len());
    let pixels: Vec<f32> = split.images[..count * IMAGE_PIXELS]
        .iter()
        .map(|&p| normalize_pixel(p))
        .collect();
    crate::with_net!(ckpt.net, M => run::<M>(ckpt, &pixels))
}

/// The trained f32 network's predicted class for each of the first `count`
/// images of `split`.
pub fn float_predictions(ckpt: &Checkpoint, split: &Split, count: usize) -> Result<Vec<u8>> {
    Ok(float_logits(ckpt, split, count)?
        .chunks(CLASSES)
        .map(|l| argmax(l) as u8)
        .collect())
}

/// What `host eval` reports about a model file.
#[derive(Clone, Debug, Serialize)]
pub struct ModelEval {
    /// The network.
    pub net: &'static str,
    /// Test images classified.
    pub images: usize,
    /// Of which the int8 model got right.
    pub correct: usize,
    /// `correct / images`, in [0, 1].
    pub accuracy: f64,
    /// The f32 checkpoint's accuracy on the same images, if one was given.
    pub float_accuracy: Option<f64>,
    /// Fraction of images where int8 and f32 predict the same class.
    pub agreement: Option<f64>,
    /// Wall-clock seconds of the int8 inferences.
    pub seconds: f64,
}

/// Evaluate a decoded model on the first `count` images of `split`, and the
/// checkpoint it came from beside it if given.
pub fn evaluate(
    model: &Model<'_>,
    ckpt: Option<&Checkpoint>,
    split: &Split,
    count: usize,
) -> Result<ModelEval> {
    let started = Instant::now();
    let int8: Vec<u8> = device::reference::int8_predictions(model, split, count)
        .iter()
        .map(|p| p.class)
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let labels = &split.labels[..int8.len()];
    let float = ckpt
        .map(|c| float_predictions(c, split, count))
        .transpose()?;
    Ok(ModelEval {
        net: model.net().name(),
        images: int8.len(),
        correct: int8.iter().zip(labels).filter(|(p, l)| p == l).count(),
        accuracy: accuracy(&int8, labels),
        float_accuracy: float.as_ref().map(|f| accuracy(f, labels)),
        agreement: float.as_ref().map(|f| accuracy(&int8, f)),
        seconds,
    })
}
