//! Float inference over a data split, for test accuracy and confusion.

use crate::data::Split;
use crate::nets::Net;
use dfdx::prelude::*;
use shared::arch::{normalize_pixel, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};

/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 250;

/// The split's pixels normalised for the networks, image after image.
pub fn normalized(split: &Split) -> Vec<f32> {
    split.images.iter().map(|&p| normalize_pixel(p)).collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(logits: &[f32]) -> usize {
    logits.iter().enumerate().fold(0, |best, (i, &v)| if v > logits[best] { i } else { best })
}

/// The model's logits for every image of `pixels` (normalised), in order.
pub fn logits<M: Net>(model: &M, dev: &Cpu, pixels: &[f32]) -> Vec<f32> {
    let n = pixels.len() / IMAGE_PIXELS;
    let mut out = Vec::with_capacity(n * CLASSES);
    for chunk in pixels.chunks(EVAL_BATCH * IMAGE_PIXELS) {
        // The batch size is a compile-time shape: pad the last batch.
        let mut batch = chunk.to_vec();
        batch.resize(EVAL_BATCH * IMAGE_PIXELS, 0.0);
        let x = dev.tensor_from_vec(batch, Rank4::<EVAL_BATCH, 1, IMAGE_SIDE, IMAGE_SIDE>::default());
        let y = model.logits(x).as_vec();
        out.extend_from_slice(&y[..chunk.len() / IMAGE_PIXELS * CLASSES]);
    }
    out
}

/// The predicted class of every image of `pixels` (normalised).
pub fn predictions<M: Net>(model: &M, dev: &Cpu, pixels: &[f32]) -> Vec<u8> {
    logits(model, dev, pixels).chunks(CLASSES).map(|l| argmax(l) as u8).collect()
}

/// Fraction of `predictions` equal to `labels`.
pub fn accuracy(predictions: &[u8], labels: &[u8]) -> f64 {
    let correct = predictions.iter().zip(labels).filter(|(p, l)| p == l).count();
    correct as f64 / labels.len().max(1) as f64
}
