//! The two model files, embedded in flash and decoded there at boot: the
//! weights stay in flash, only the per-channel arrays are copied to RAM. A
//! file that does not decode (bad CRC, wrong architecture, ...) is logged
//! and refused; the other network is still served.

use shared::arch::{CLASSES, IMAGE_PIXELS};
use shared::model::{InceptionModel, NetId, ResNetModel};
use shared::nets::{inception, resnet, Arena, Probe, ARENA_BYTES};
use shared::protocol::{ErrorCode, ModelStatus};

/// The model files the host exported (`artifacts/`, see the README).
static INCEPTION_FILE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../artifacts/inception.postcard"
));
static RESNET_FILE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../artifacts/resnet.postcard"
));

/// The decoded networks; `None` for a refused file.
pub struct Models {
    inception: Option<InceptionModel<'static>>,
    resnet: Option<ResNetModel<'static>>,
}

impl Models {
    /// Decode both files, logging each outcome.
    pub fn load() -> Models {
        Models {
            inception: logged(
                NetId::Inception,
                INCEPTION_FILE,
                InceptionModel::decode(INCEPTION_FILE),
            ),
            resnet: logged(NetId::ResNet, RESNET_FILE, ResNetModel::decode(RESNET_FILE)),
        }
    }

    /// Whether `net` is served.
    pub fn status(&self, net: NetId) -> ModelStatus {
        let (loaded, file) = match net {
            NetId::Inception => (self.inception.is_some(), INCEPTION_FILE),
            NetId::ResNet => (self.resnet.is_some(), RESNET_FILE),
        };
        if loaded {
            ModelStatus::Loaded {
                bytes: file.len() as u32,
                crc: crc_trailer(file),
            }
        } else {
            ModelStatus::Refused
        }
    }

    /// One forward pass of `net`: the ten int8 logits, or
    /// [`ErrorCode::ModelUnavailable`] if its file was refused.
    pub fn infer(
        &self,
        net: NetId,
        pixels: &[u8; IMAGE_PIXELS],
        arena: &mut Arena<ARENA_BYTES>,
        probe: &mut impl Probe,
    ) -> Result<[i8; CLASSES], ErrorCode> {
        match net {
            NetId::Inception => self
                .inception
                .as_ref()
                .map(|m| inception::forward(m, pixels, arena, probe)),
            NetId::ResNet => self
                .resnet
                .as_ref()
                .map(|m| resnet::forward(m, pixels, arena, probe)),
        }
        .ok_or(ErrorCode::ModelUnavailable)
    }
}

fn logged<M>(net: NetId, file: &[u8], decoded: Result<M, shared::Error>) -> Option<M> {
    match decoded {
        Ok(model) => {
            defmt::info!(
                "model {=str}: {=usize} bytes, CRC {=u32:#010x}, loaded",
                net.name(),
                file.len(),
                crc_trailer(file)
            );
            Some(model)
        }
        Err(e) => {
            defmt::error!(
                "model {=str} refused: {}",
                net.name(),
                defmt::Display2Format(&e)
            );
            None
        }
    }
}

/// The file's CRC-32 trailer (its last four bytes, little-endian).
fn crc_trailer(file: &[u8]) -> u32 {
    file.last_chunk().map_or(0, |b| u32::from_le_bytes(*b))
}
