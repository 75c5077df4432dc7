//! The model files, embedded in flash and decoded there at boot
//! ([`shared::server::Models`]): the weights stay in flash, only the
//! per-channel arrays are copied to RAM. A file that does not decode (bad
//! CRC, wrong graph, another op-set, ...) is logged and refused; the other
//! networks are still served.

use shared::server::{crc_trailer, Models};
use shared::NetId;

/// The model files the host exported (`artifacts/`, see the README), one
/// per network, in [`NetId`] order.
pub const FILES: [&[u8]; NetId::COUNT] = [
    include_bytes!("../../artifacts/inception.postcard"),
    include_bytes!("../../artifacts/resnet.postcard"),
    include_bytes!("../../artifacts/resnet-identity.postcard"),
];

/// Decode every file, logging each outcome.
pub fn load(models: &mut Models<'static>) {
    for net in NetId::ALL {
        let file = models.file(net);
        match models.load(net) {
            Ok(()) => defmt::info!(
                "model {=str}: {=usize} bytes, CRC {=u32:#010x}, loaded",
                net.name(),
                file.len(),
                crc_trailer(file)
            ),
            Err(e) => defmt::error!(
                "model {=str} refused: {}",
                net.name(),
                defmt::Display2Format(&e)
            ),
        }
    }
}
