//! The host's int8 reference for the firmware: `shared`'s forward passes
//! on the same model files the firmware embeds, run on the workstation.
//! Host and firmware run the same integer code, so their logits must agree
//! bit for bit.

use crate::error::{Error, Result};
use files::mnist::Split;
use rayon::prelude::*;
use shared::arch::{CLASSES, IMAGE_PIXELS};
use shared::model::ModelSpec;
use shared::nets::{Arena, Model, Prediction, ARENA_BYTES};
use shared::NetId;
use std::path::{Path, PathBuf};

/// Where the exporter writes the model files and the firmware embeds them from.
pub const MODEL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../artifacts");

/// The model file of `net` in `dir` (`inception.postcard`, `resnet.postcard`,
/// `resnet-identity.postcard`).
pub fn model_path(dir: &Path, net: NetId) -> PathBuf {
    dir.join(format!("{}.postcard", net.name()))
}

/// One network's model file, checked, ready to run.
pub struct Reference {
    bytes: Vec<u8>,
    /// The logits' scale and zero point (fc's output quantisation).
    logits: (f32, i8),
}

impl Reference {
    /// Read and check `net`'s model file in `dir`.
    pub fn load(dir: &Path, net: NetId) -> Result<Reference> {
        let path = model_path(dir, net);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let found = Model::decode(&bytes)
            .map_err(|source| Error::Model {
                path: path.clone(),
                source,
            })?
            .net();
        if found != net {
            let source = shared::Error::WrongNetwork {
                expected: net,
                found,
            };
            return Err(Error::Model { path, source });
        }
        let spec = ModelSpec::decode(&bytes).map_err(|source| Error::Model {
            path: path.clone(),
            source,
        })?;
        let fc = spec.layers.last().expect("a checked model has layers");
        let logits = (fc.output_scale, fc.output.zero_point);
        Ok(Reference { bytes, logits })
    }

    /// The network.
    pub fn net(&self) -> NetId {
        self.model().net()
    }

    /// The softmax of the dequantised logits (`scale * (q - zero_point)`,
    /// fc's output quantisation): what the network's int8 answer means as
    /// probabilities.
    pub fn probabilities(&self, logits: &[i8; CLASSES]) -> [f64; CLASSES] {
        let (scale, zp) = self.logits;
        let real = logits.map(|q| f64::from(scale) * f64::from(i32::from(q) - i32::from(zp)));
        let max = real.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp = real.map(|v| (v - max).exp());
        let sum: f64 = exp.iter().sum();
        exp.map(|e| e / sum)
    }

    /// The model file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn model(&self) -> Model<'_> {
        Model::decode(&self.bytes).expect("the model decoded when loaded")
    }

    /// Classify one image.
    pub fn predict(&self, pixels: &[u8; IMAGE_PIXELS]) -> Prediction {
        let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
        shared::nets::classify(&self.model(), pixels, &mut arena, &mut ())
    }

    /// Classify the first `n` images of `split` (in parallel).
    pub fn predict_first(&self, split: &Split, n: usize) -> Vec<Prediction> {
        int8_predictions(&self.model(), split, n)
    }
}

/// The int8 prediction (class and logits) for each of the first `count`
/// images of `split`, in order, spread over the rayon pool.
pub fn int8_predictions(model: &Model<'_>, split: &Split, count: usize) -> Vec<Prediction> {
    (0..count.min(split.len()))
        .into_par_iter()
        // One arena per worker, on the heap (the firmware keeps it in a static).
        .map_init(
            || Box::new(Arena::<ARENA_BYTES>::new()),
            |arena, i| shared::nets::classify(model, split.image(i), arena, &mut ()),
        )
        .collect()
}
