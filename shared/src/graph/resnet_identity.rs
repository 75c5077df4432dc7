//! The lecture's residual network (`ResNetCourse` in the PyTorch
//! reference): conv1, ReLU, max pool, a residual block, conv2, ReLU, max
//! pool, a residual block, fc.

use super::{Act, Graph, NetId, NodeId};
use crate::arch::{resnet_identity as a, CLASSES};

/// The lecture's residual block on `x`: `ReLU(x + conv2(ReLU(conv1(x))))`,
/// 3x3 convs with padding 1, an identity shortcut. The add's first operand
/// is conv2, the second the shortcut `x`. Steps: conv1, conv2, the add (the
/// two convs have one shape, so they share their code in flash).
const fn residual_block(g: &mut Graph, scope: &'static str, x: NodeId) -> NodeId {
    let c = g.node(x).channels as usize;
    g.enter(scope);
    let conv1 = g.conv("conv1", x, c, a::K, a::PAD, Act::Relu);
    let conv2 = g.conv("conv2", conv1, c, a::K, a::PAD, Act::None);
    let add = g.add("add", conv2, x, Act::Relu);
    g.leave();
    g.step(&[conv1]);
    g.step(&[conv2]);
    g.step(&[add]);
    add
}

/// A 5x5 conv with ReLU, then a 2x2 max pool (PyTorch: `mp(relu(conv(x)))`),
/// in one step.
const fn conv_pool(g: &mut Graph, conv: &str, pool: &str, x: NodeId, channels: usize) -> NodeId {
    let c = g.conv(conv, x, channels, a::K_STEM, 0, Act::Relu);
    let p = g.max_pool(pool, c, Act::None);
    g.step(&[c, p]);
    p
}

const fn build() -> Graph {
    let mut g = Graph::new(NetId::ResNetIdentity);
    g.step(&[Graph::INPUT]);
    let x = conv_pool(&mut g, "conv1", "pool1", Graph::INPUT, a::C1);
    let x = residual_block(&mut g, "rb1", x);
    let x = conv_pool(&mut g, "conv2", "pool2", x, a::C2);
    let x = residual_block(&mut g, "rb2", x);
    let fc = g.linear("fc", x, CLASSES);
    g.step(&[fc]);
    g.finish()
}

/// The identity ResNet's graph.
pub const RESNET_IDENTITY: &Graph = &build();
