//! The host's int8 reference for the firmware: `shared`'s forward passes
//! on the same model files, run on the workstation. Host and firmware run
//! the same integer code, so their logits must agree bit for bit.

use crate::error::{Error, Result};
use shared::arch::IMAGE_PIXELS;
use shared::model::{InceptionModel, NetId, ResNetModel};
use shared::nets::{inception, resnet, Arena, Prediction, ARENA_BYTES};
use std::path::{Path, PathBuf};

/// Where the exporter writes the model files and the firmware embeds them from.
pub const MODEL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../artifacts");

/// The model file of `net` in `dir` (`inception.postcard`, `resnet.postcard`).
pub fn model_path(dir: &Path, net: NetId) -> PathBuf {
    dir.join(format!("{}.postcard", net.name()))
}

/// One network's model file, checked, ready to run.
pub struct Reference {
    net: NetId,
    bytes: Vec<u8>,
}

impl Reference {
    /// Read and check `net`'s model file in `dir`.
    pub fn load(dir: &Path, net: NetId) -> Result<Reference> {
        let path = model_path(dir, net);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let reference = Reference { net, bytes };
        reference
            .predict_all(&[])
            .map_err(|source| Error::Model { path, source })?;
        Ok(reference)
    }

    /// The model file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Classify one image.
    pub fn predict(&self, pixels: &[u8; IMAGE_PIXELS]) -> Prediction {
        self.predict_many(&[pixels]).remove(0)
    }

    /// Classify several images (the model is decoded once).
    pub fn predict_many(&self, images: &[&[u8; IMAGE_PIXELS]]) -> Vec<Prediction> {
        // `load` checked that the file decodes.
        self.predict_all(images).expect("the model decoded when loaded")
    }

    fn predict_all(&self, images: &[&[u8; IMAGE_PIXELS]]) -> Result<Vec<Prediction>, shared::Error> {
        let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
        Ok(match self.net {
            NetId::Inception => {
                let m = InceptionModel::decode(&self.bytes)?;
                images
                    .iter()
                    .map(|p| inception::classify(&m, p, &mut arena, &mut ()))
                    .collect()
            }
            NetId::ResNet => {
                let m = ResNetModel::decode(&self.bytes)?;
                images
                    .iter()
                    .map(|p| resnet::classify(&m, p, &mut arena, &mut ()))
                    .collect()
            }
        })
    }
}
