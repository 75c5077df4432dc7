//! The model files, embedded in flash and decoded there at boot: the
//! weights stay in flash, only the per-channel arrays are copied to RAM. A
//! file that does not decode (bad CRC, wrong architecture, ...) is logged
//! and refused; the other networks are still served.

use shared::arch::{CLASSES, IMAGE_PIXELS};
use shared::nets::{forward, Arena, Model, Probe, ARENA_BYTES};
use shared::protocol::{ErrorCode, ModelStatus};
use shared::NetId;

/// The model files the host exported (`artifacts/`, see the README), one
/// per network, in [`NetId`] order.
static FILES: [&[u8]; NetId::COUNT] = [
    include_bytes!("../../artifacts/inception.postcard"),
    include_bytes!("../../artifacts/resnet.postcard"),
    include_bytes!("../../artifacts/resnet-identity.postcard"),
];

/// The decoded networks, in [`NetId`] order; `None` for a refused file.
pub struct Models([Option<Model<'static>>; NetId::COUNT]);

impl Models {
    /// No network served.
    pub const fn none() -> Models {
        Models([None; NetId::COUNT])
    }

    /// Decode every file into its slot, logging each outcome.
    pub fn load(&mut self) {
        for (net, slot) in NetId::ALL.into_iter().zip(&mut self.0) {
            load(slot, net, FILES[net as usize]);
        }
    }

    /// Whether `net` is served.
    pub fn status(&self, net: NetId) -> ModelStatus {
        let file = FILES[net as usize];
        match self.0[net as usize] {
            Some(_) => ModelStatus::Loaded {
                bytes: file.len() as u32,
                crc: crc_trailer(file),
            },
            None => ModelStatus::Refused,
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
        let model = self.0[net as usize].as_ref();
        model
            .map(|m| forward(m, pixels, arena, probe))
            .ok_or(ErrorCode::ModelUnavailable)
    }
}

/// `file` decoded into `slot` as `net`'s model, or left empty (logged) if
/// it is refused. Out of line and writing in place: the stack holds one
/// decoded model at a time.
#[inline(never)]
fn load(slot: &mut Option<Model<'static>>, net: NetId, file: &'static [u8]) {
    let error = match Model::decode(file) {
        Ok(model) if model.net() == net => {
            *slot = Some(model);
            defmt::info!(
                "model {=str}: {=usize} bytes, CRC {=u32:#010x}, loaded",
                net.name(),
                file.len(),
                crc_trailer(file)
            );
            return;
        }
        Ok(model) => shared::Error::WrongNetwork {
            expected: net,
            found: model.net(),
        },
        Err(e) => e,
    };
    defmt::error!(
        "model {=str} refused: {}",
        net.name(),
        defmt::Display2Format(&error)
    );
}

/// The file's CRC-32 trailer (its last four bytes, little-endian).
fn crc_trailer(file: &[u8]) -> u32 {
    file.last_chunk().map_or(0, |b| u32::from_le_bytes(*b))
}
