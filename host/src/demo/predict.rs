//! Classifying pictures of digits: every chosen network on the host (the
//! int8 pass the firmware runs, on the same model files) and, with a
//! device attached, the firmware's own answer beside it. `host predict`
//! does it for image files, `host demo` for the drawing pad.

use crate::error::Result;
use device::reference::Reference;
use device::Device;
use serde::Serialize;
use shared::arch::{CLASSES, IMAGE_PIXELS};
use shared::protocol::CostUnit;
use shared::NetId;
use std::time::Instant;

/// One network's answer on the host.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostAnswer {
    /// The network (its name in JSON).
    #[serde(serialize_with = "crate::train::report::net_name::serialize")]
    pub net: NetId,
    /// The predicted digit.
    pub class: u8,
    /// The ten int8 logits.
    pub logits: [i8; CLASSES],
    /// The softmax of the dequantised logits.
    pub probabilities: [f64; CLASSES],
}

/// The firmware's answer for one network.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceAnswer {
    /// The network (its name in JSON).
    #[serde(serialize_with = "crate::train::report::net_name::serialize")]
    pub net: NetId,
    /// The predicted digit.
    pub class: u8,
    /// The ten int8 logits.
    pub logits: [i8; CLASSES],
    /// Whether class and logits equal the host's.
    pub equal: bool,
    /// The inference's cost on the firmware.
    pub cost: u32,
    /// What the cost counts: `instructions` (QEMU) or `cycles` (a board).
    pub unit: &'static str,
    /// From sending the request to the answer, in milliseconds.
    pub round_trip_ms: f64,
    /// Each step of the firmware's plan and its cost (when profiled).
    pub layers: Vec<(String, u32)>,
}

/// The host's answers of every network in `refs` for `pixels`.
pub fn on_host(refs: &[Reference], pixels: &[u8; IMAGE_PIXELS]) -> Vec<HostAnswer> {
    refs.iter()
        .map(|r| {
            let p = r.predict(pixels);
            HostAnswer {
                net: r.net(),
                class: p.class,
                logits: p.logits,
                probabilities: r.probabilities(&p.logits),
            }
        })
        .collect()
}

/// The firmware's answer of `net` for `pixels`, compared with the host's
/// `host`; with `profile`, every step's cost too.
pub fn on_device(
    device: &mut Device,
    unit: CostUnit,
    host: &HostAnswer,
    pixels: &[u8; IMAGE_PIXELS],
    profile: bool,
) -> Result<DeviceAnswer> {
    let net = host.net;
    let started = Instant::now();
    let (prediction, layers) = if profile {
        let p = device.profile(net, pixels)?;
        (
            p.prediction,
            p.layers.into_iter().map(|l| (l.name, l.cost)).collect(),
        )
    } else {
        (device.classify(net, pixels)?, Vec::new())
    };
    let round_trip_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(DeviceAnswer {
        net: host.net,
        class: prediction.class,
        logits: prediction.logits,
        equal: prediction.class == host.class && prediction.logits == host.logits,
        cost: prediction.cost,
        unit: unit.name(),
        round_trip_ms,
        layers,
    })
}
