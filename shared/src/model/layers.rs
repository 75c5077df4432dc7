//! The layer tables: for each network, the layer records a model file holds,
//! in file order, with their names, kinds, dimensions, activations and
//! int8 wiring — all derived from the network's graph ([`crate::graph`]).
//! The decoder checks every record against them. The graph signature in the
//! header is a hash of the whole graph ([`signature`]): every node, pools,
//! concats and wiring included.

use crate::arch::{CLASSES, IMAGE_SIDE};
use crate::graph::{self, fnv1a, Act, Graph, Name, NetId, Node, NodeId, Op, Source};

/// What a layer record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LayerKind {
    /// A convolution: int8 weights OHWI, int32 bias and a requant per
    /// output channel. `dims = [CO, K, K, CI]`.
    Conv = 0,
    /// The fully connected classifier: int8 weights `[O][H][W][C]` (HWC
    /// flatten), int32 bias and a requant per output. `dims = [O, H, W, C]`.
    Linear = 1,
    /// A residual add (`out = a + b`, TFLite-style): no weights, no bias,
    /// three requants (input a, input b, output). `dims = [H, W, C, 0]`.
    Add = 2,
}

impl LayerKind {
    /// The kind for a stored byte.
    pub const fn from_u8(b: u8) -> Option<LayerKind> {
        match b {
            0 => Some(LayerKind::Conv),
            1 => Some(LayerKind::Linear),
            2 => Some(LayerKind::Add),
            _ => None,
        }
    }
}

/// The activation the network applies to a layer's output, which the
/// stored clamp must implement (ReLU is fused as a clamp at the zero point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// None: the clamp must be the full range `-128..=127`.
    None,
    /// ReLU: the clamp must be `zero_point..=127`.
    Relu,
    /// The network applies max pool and then ReLU to this output. The
    /// forward pass always applies the ReLU as the pool's clamp; since ReLU
    /// and max commute, the layer may fuse it too (`zero_point..=127`) or
    /// not (full range): both give the same bytes.
    ReluAfterPool,
}

/// One layer record as the network's graph defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// PyTorch module name (`conv1`, `incep1.b5_2`, `r1.conv`, `fc`); the
    /// residual adds, which have no parameters in PyTorch, are `<block>.add`.
    pub name: Name,
    /// Its node in the graph.
    pub node: NodeId,
    /// What the record holds.
    pub kind: LayerKind,
    /// Dimensions (see [`LayerKind`] for their meaning per kind).
    pub dims: [u16; 4],
    /// Zero padding (convs; 0 otherwise).
    pub pad: u8,
    /// The activation on the layer's output.
    pub activation: Activation,
    /// Side of the layer's (square) output feature map; 1 for fc.
    pub out_side: u16,
    /// Whose quantisation the layer's input carries (an add: operand a's):
    /// its input zero point is that tensor's.
    pub input: Source,
    /// An add's operand b's quantisation ([`Source::Image`] for other
    /// kinds, which have no second input).
    pub input_b: Source,
    /// The layer whose output quantisation this one must equal (the first
    /// part of the concat this layer writes into), if another.
    pub shares_output_of: Option<u8>,
}

impl LayerSpec {
    /// The spec of layer node `id` of `g`.
    pub const fn of(g: &Graph, id: NodeId) -> LayerSpec {
        let node = g.node(id);
        let side = node.side as usize;
        let (kind, dims, pad, input, input_b) = match node.op {
            Op::Conv { input, kernel, pad } => {
                let ci = g.node(input).channels as usize;
                let k = kernel as usize;
                let dims = [
                    u16_of(node.channels as usize),
                    u16_of(k),
                    u16_of(k),
                    u16_of(ci),
                ];
                (LayerKind::Conv, dims, pad, g.source(input), Source::Image)
            }
            Op::Linear { input } => {
                let x = g.node(input);
                let (s, c) = (x.side as usize, x.channels as usize);
                let dims = [
                    u16_of(node.channels as usize),
                    u16_of(s),
                    u16_of(s),
                    u16_of(c),
                ];
                (LayerKind::Linear, dims, 0, g.source(input), Source::Image)
            }
            Op::Add { a, b } => {
                let dims = [
                    u16_of(side),
                    u16_of(side),
                    u16_of(node.channels as usize),
                    0,
                ];
                (LayerKind::Add, dims, 0, g.source(a), g.source(b))
            }
            _ => panic!("not a layer"),
        };
        let activation = match node.act {
            Act::Relu => Activation::Relu,
            Act::None => match g.sole_consumer(id) {
                Some(c) if is_max_pool_relu(g.node(c)) => Activation::ReluAfterPool,
                _ => Activation::None,
            },
        };
        let shares_output_of = match (g.source(id), g.layer_index(id)) {
            (Source::Layer(i), Some(own)) if i as usize != own => Some(i),
            _ => None,
        };
        LayerSpec {
            name: node.name,
            node: id,
            kind,
            dims,
            pad,
            activation,
            out_side: u16_of(side),
            input,
            input_b,
            shares_output_of,
        }
    }

    /// Output channels (convs), outputs (fc) or channels (add).
    pub const fn out_channels(&self) -> usize {
        match self.kind {
            LayerKind::Conv | LayerKind::Linear => self.dims[0] as usize,
            LayerKind::Add => self.dims[2] as usize,
        }
    }

    /// Length of the weights field in bytes.
    pub const fn weight_bytes(&self) -> usize {
        match self.kind {
            LayerKind::Conv | LayerKind::Linear => {
                self.dims[0] as usize
                    * self.dims[1] as usize
                    * self.dims[2] as usize
                    * self.dims[3] as usize
            }
            LayerKind::Add => 0,
        }
    }

    /// Number of int32 biases.
    pub const fn bias_len(&self) -> usize {
        match self.kind {
            LayerKind::Conv | LayerKind::Linear => self.dims[0] as usize,
            LayerKind::Add => 0,
        }
    }

    /// Number of requant multipliers.
    pub const fn requant_len(&self) -> usize {
        match self.kind {
            LayerKind::Conv | LayerKind::Linear => self.dims[0] as usize,
            LayerKind::Add => 3,
        }
    }

    /// Multiply-accumulates of one forward pass through this layer
    /// (padded taps included, as CMSIS-NN counts them).
    pub const fn macs(&self) -> usize {
        let side = self.out_side as usize;
        match self.kind {
            LayerKind::Conv => self.weight_bytes() * side * side,
            LayerKind::Linear => self.weight_bytes(),
            LayerKind::Add => 0,
        }
    }
}

const fn is_max_pool_relu(node: &Node) -> bool {
    matches!((node.op, node.act), (Op::MaxPool2 { .. }, Act::Relu))
}

const fn u16_of(n: usize) -> u16 {
    assert!(n <= u16::MAX as usize, "dimension does not fit a u16");
    n as u16
}

/// The layer records of `g`, in file order (its layers in node order).
/// `N` must be `g.layer_count()`.
const fn derive<const N: usize>(g: &Graph) -> [LayerSpec; N] {
    assert!(N == g.layer_count(), "wrong layer count");
    let first = LayerSpec::of(g, g.layer_node(0));
    let mut out = [first; N];
    let mut i = 1;
    while i < N {
        out[i] = LayerSpec::of(g, g.layer_node(i));
        i += 1;
    }
    out
}

const INCEPTION: [LayerSpec; graph::INCEPTION.layer_count()] = derive(graph::INCEPTION);
const RESNET: [LayerSpec; graph::RESNET.layer_count()] = derive(graph::RESNET);
const RESNET_IDENTITY: [LayerSpec; graph::RESNET_IDENTITY.layer_count()] =
    derive(graph::RESNET_IDENTITY);

/// The records of `net`, in file order.
pub const fn layers(net: NetId) -> &'static [LayerSpec] {
    match net {
        NetId::Inception => &INCEPTION,
        NetId::ResNet => &RESNET,
        NetId::ResNetIdentity => &RESNET_IDENTITY,
    }
}

/// Most layer records any network has.
pub const MAX_LAYERS: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < NetId::COUNT {
        let n = layers(NetId::ALL[i]).len();
        if n > max {
            max = n;
        }
        i += 1;
    }
    max
};

/// The spec of the layer named `name` in `net`.
pub fn find(net: NetId, name: &str) -> Option<&'static LayerSpec> {
    layers(net).iter().find(|l| l.name.is(name))
}

/// The graph signature of `net`: FNV-1a (32 bits) over the network id, the
/// image side, the class count and [`Graph::signature`] (every node: its
/// name, operation, inputs, kernel, padding, activation and shape). Any
/// change to the network's graph, its wiring included, changes it, so a
/// file made for another graph is refused with a clear error.
pub const fn signature(net: NetId) -> u32 {
    let h = fnv1a(0x811c_9dc5, &[net as u8, IMAGE_SIDE as u8, CLASSES as u8]);
    net.graph().signature(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_differ_and_names_are_unique() {
        for (i, a) in NetId::ALL.iter().enumerate() {
            for b in &NetId::ALL[i + 1..] {
                assert_ne!(signature(*a), signature(*b));
            }
        }
        for net in NetId::ALL {
            let ls = layers(net);
            for (i, a) in ls.iter().enumerate() {
                assert!(ls[i + 1..].iter().all(|b| b.name != a.name));
                assert_eq!(find(net, a.name.as_str()), Some(a));
            }
        }
    }
}
