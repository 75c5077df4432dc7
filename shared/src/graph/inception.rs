//! InceptionNet: conv1, max pool + ReLU, incep1, conv2, max pool + ReLU,
//! incep2, fc.

use super::{Act, Graph, NetId, NodeId};
use crate::arch::{inception as a, inception_a as m, CLASSES};

/// InceptionA on `x`: four branches, no activation inside, concatenated
/// in the order b1, b5, b3, bp (the concat is named `scope`). Steps: the
/// three 1x1 convs that read `x` as one wider conv, then the pool branch,
/// the 5x5 branch, the 3x3 pair.
const fn inception_a(g: &mut Graph, scope: &'static str, x: NodeId) -> NodeId {
    g.enter(scope);
    let b1 = g.conv("b1", x, m::B1, 1, 0, Act::None);
    let b5_1 = g.conv("b5_1", x, m::B5_REDUCE, 1, 0, Act::None);
    let b5_2 = g.conv("b5_2", b5_1, m::B5, 5, 2, Act::None);
    let b3_1 = g.conv("b3_1", x, m::B3_REDUCE, 1, 0, Act::None);
    let b3_2 = g.conv("b3_2", b3_1, m::B3, 3, 1, Act::None);
    let b3_3 = g.conv("b3_3", b3_2, m::B3, 3, 1, Act::None);
    let pool = g.avg_pool("avgpool", x);
    let bp = g.conv("bp", pool, m::BP, 1, 0, Act::None);
    g.leave();
    g.step(&[b1, b5_1, b3_1]);
    g.step(&[pool]);
    g.step(&[bp]);
    g.step(&[b5_2]);
    g.step(&[b3_2]);
    g.step(&[b3_3]);
    g.concat(scope, &[b1, b5_2, b3_3, bp])
}

const fn build() -> Graph {
    let mut g = Graph::new(NetId::Inception);
    g.step(&[Graph::INPUT]);
    let conv1 = g.conv("conv1", Graph::INPUT, a::C1, a::K1, 0, Act::None);
    let pool1 = g.max_pool("pool1", conv1, Act::Relu);
    g.step(&[conv1, pool1]);
    let incep1 = inception_a(&mut g, "incep1", pool1);
    let conv2 = g.conv("conv2", incep1, a::C2, a::K2, 0, Act::None);
    let pool2 = g.max_pool("pool2", conv2, Act::Relu);
    g.step(&[conv2, pool2]);
    let incep2 = inception_a(&mut g, "incep2", pool2);
    let fc = g.linear("fc", incep2, CLASSES);
    g.step(&[fc]);
    g.finish()
}

/// InceptionNet's graph.
pub const INCEPTION: &Graph = &build();
