//! The seed's ResNet: two blocks with a projection shortcut, each followed
//! by a 2x2 max pool and ReLU, then fc.

use super::{Act, Graph, NetId, NodeId};
use crate::arch::{resnet as a, CLASSES};

/// The seed's "IdentityBlock" on `x` (despite its name, a projection
/// block): `ReLU(conv(x) + conv2(ReLU(conv1(x))))`, 3x3 convs with padding
/// 1, then a 2x2 max pool with ReLU (named `pool`). The add's first operand
/// is conv2, the second the shortcut conv. Steps: conv1 and the shortcut,
/// which read `x`, as one wider conv; then conv2, the add and the pool in
/// one pass.
const fn block(g: &mut Graph, scope: &'static str, pool: &str, x: NodeId, cout: usize) -> NodeId {
    let cin = g.node(x).channels as usize;
    g.enter(scope);
    let conv1 = g.conv("conv1", x, cin, a::K, a::PAD, Act::Relu);
    let conv2 = g.conv("conv2", conv1, cout, a::K, a::PAD, Act::None);
    let conv = g.conv("conv", x, cout, a::K, a::PAD, Act::None);
    let add = g.add("add", conv2, conv, Act::Relu);
    g.leave();
    let pool = g.max_pool(pool, add, Act::Relu);
    g.step(&[conv1, conv]);
    g.step(&[conv2, add, pool]);
    pool
}

const fn build() -> Graph {
    let mut g = Graph::new(NetId::ResNet);
    g.step(&[Graph::INPUT]);
    let r1 = block(&mut g, "r1", "pool1", Graph::INPUT, a::C1);
    let r2 = block(&mut g, "r2", "pool2", r1, a::C2);
    let fc = g.linear("fc", r2, CLASSES);
    g.step(&[fc]);
    g.finish()
}

/// The seed ResNet's graph.
pub const RESNET: &Graph = &build();
