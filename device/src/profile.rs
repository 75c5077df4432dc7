//! `host profile`: where one inference's instructions go, layer by layer,
//! measured by the firmware itself ([`Request::Profile`](shared::protocol::Request)).
//!
//! The layer names are the firmware's (the steps of its buffer plan), taken
//! from its answer as they come: the host does not assume which steps exist.
//! MACs come from the model's layer table, for the layers the plan's step of
//! that name computes (several when layers are fused).

use crate::error::Result;
use crate::serial::Client;
use serde::Serialize;
use shared::arch::IMAGE_PIXELS;
use shared::model::layers;
use shared::NetId;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};

/// One step of the forward pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerProfile {
    /// The step's name in the firmware's plan.
    pub name: String,
    /// Its cost (instructions under QEMU).
    pub instructions: u64,
    /// Its multiply-accumulates, if the step is a layer of the model file.
    #[serde(skip)]
    pub macs: Option<usize>,
}

/// One network's inference, layer by layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetProfile {
    /// The network.
    #[serde(skip)]
    pub net: NetId,
    /// The predicted class.
    #[serde(skip)]
    pub class: u8,
    /// The whole forward pass, measured by the firmware apart from the layers
    /// (the layers add up to a little less: the probe's own reads).
    pub total: u64,
    /// Every step, in execution order.
    pub layers: Vec<LayerProfile>,
}

impl NetProfile {
    /// Multiply-accumulates of one inference (every layer of the model).
    pub fn macs(&self) -> usize {
        layers(self.net).iter().map(|l| l.macs()).sum()
    }
}

/// Profile one inference of `pixels` by each of `nets` on the firmware.
pub fn profile<L: Read + Write>(
    client: &mut Client<L>,
    nets: &[NetId],
    pixels: &[u8; IMAGE_PIXELS],
) -> Result<Vec<NetProfile>> {
    nets.iter()
        .map(|&net| {
            let p = client.profile(net, pixels)?;
            Ok(NetProfile {
                net,
                class: p.prediction.class,
                total: u64::from(p.prediction.cost),
                layers: p
                    .layers
                    .into_iter()
                    .map(|l| LayerProfile {
                        macs: step_macs(net, &l.name),
                        name: l.name,
                        instructions: u64::from(l.cost),
                    })
                    .collect(),
            })
        })
        .collect()
}

/// MACs of the plan step `name`: the sum over the model layers it computes
/// (`None` for steps without any, such as the input and the pools).
fn step_macs(net: NetId, name: &str) -> Option<usize> {
    let step = shared::nets::plan(net)
        .steps
        .iter()
        .find(|s| s.name() == name)?;
    let g = net.graph();
    let macs = step
        .graph
        .nodes()
        .iter()
        .filter_map(|&n| g.layer_index(n))
        .map(|i| layers(net)[i].macs());
    Some(macs.sum()).filter(|&m| m > 0)
}

/// The JSON report: one object keyed by network name.
pub fn to_json(profiles: &[NetProfile]) -> serde_json::Value {
    let by_net: BTreeMap<&str, &NetProfile> = profiles.iter().map(|p| (p.net.name(), p)).collect();
    serde_json::json!(by_net)
}

impl fmt::Display for NetProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let share = |n: u64| 100.0 * n as f64 / self.total.max(1) as f64;
        let macs = self.macs();
        writeln!(
            f,
            "{}: predicted {}; {} instructions per inference, {} MACs ({:.3} MACs per instruction)",
            self.net.name(),
            self.class,
            self.total,
            macs,
            macs as f64 / self.total.max(1) as f64
        )?;
        // The name column fits the longest step name (fused steps are long).
        let w = self
            .layers
            .iter()
            .map(|l| l.name.len())
            .max()
            .unwrap_or(0)
            .max("layers".len());
        writeln!(
            f,
            "{:<w$} {:>12} {:>7} {:>10} {:>11}",
            "layer", "instructions", "share", "MACs", "MACs/instr"
        )?;
        for l in &self.layers {
            let (macs, per) = match l.macs {
                Some(0) => ("0".into(), "-".into()),
                Some(m) => (
                    m.to_string(),
                    format!("{:.3}", m as f64 / l.instructions.max(1) as f64),
                ),
                None => ("-".into(), "-".into()),
            };
            writeln!(
                f,
                "{:<w$} {:>12} {:>6.1}% {:>10} {:>11}",
                l.name,
                l.instructions,
                share(l.instructions),
                macs,
                per
            )?;
        }
        let sum: u64 = self.layers.iter().map(|l| l.instructions).sum();
        writeln!(f, "{:<w$} {:>12} {:>6.1}%", "layers", sum, share(sum))?;
        write!(
            f,
            "{:<w$} {:>12} {:>6.1}% {:>10}",
            "total", self.total, 100.0, macs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> NetProfile {
        NetProfile {
            net: NetId::ResNet,
            class: 7,
            total: 1000,
            layers: vec![
                LayerProfile {
                    name: "input".into(),
                    instructions: 100,
                    macs: None,
                },
                LayerProfile {
                    name: "fc".into(),
                    instructions: 890,
                    macs: layers::find(NetId::ResNet, "fc").map(|l| l.macs()),
                },
            ],
        }
    }

    #[test]
    fn the_json_is_keyed_by_network_with_names_and_instructions_only() {
        let v = to_json(&[example()]);
        assert_eq!(
            v,
            serde_json::json!({"resnet": {"total": 1000, "layers": [
                {"name": "input", "instructions": 100},
                {"name": "fc", "instructions": 890},
            ]}})
        );
    }

    #[test]
    fn the_table_has_a_row_per_layer_with_its_share() {
        let text = example().to_string();
        assert!(text.contains("input"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("fc") && l.contains("89.0%")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("total") && l.contains("1000")),
            "{text}"
        );
    }
}
