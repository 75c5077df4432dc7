//! Each network's graph, defined once as data: every node with its
//! operation, its inputs (references to earlier nodes), its activation and
//! its output shape, and the steps in which the int8 forward pass computes
//! the nodes (which nodes it fuses). Built by `const fn` at compile time
//! ([`Graph::new`] and its node methods), checked as it is built and by
//! [`Graph::finish`]; a graph that is not well formed fails `cargo build`.
//!
//! Everything else that depends on a network's topology is derived from
//! its graph: the model file's layer records and graph signature
//! ([`crate::model::layers`]), the decoder's checks (shapes, activations,
//! which zero point each layer reads, which layers share a concat's
//! quantisation), the f32 forward pass ([`crate::nets::float`]), the
//! host's calibration and quantisation, the checkpoint tensor names
//! (`<layer>.weight`, `<layer>.bias`) and the names of the int8 steps that
//! `host inspect` and `host profile` report. What stays written per network,
//! by design, is the trainer's dfdx module (its shapes are types on the
//! tape) and the int8 forward pass over its compile-time buffer plan
//! ([`crate::nets`]); tests hold both to the graph.
//!
//! # Semantics
//!
//! - Tensors are `channels x side x side` (square feature maps); the input
//!   is the normalised image, one channel of [`IMAGE_SIDE`].
//! - [`Op::Conv`]: stride 1, square kernel, zero padding, bias.
//!   [`Op::Linear`]: flatten in (C, H, W) order, then a fully connected
//!   layer with bias. [`Op::MaxPool2`]: 2x2, stride 2 (floor).
//!   [`Op::AvgPool3`]: 3x3, stride 1, padding 1, padding counted (always
//!   divided by 9). [`Op::Add`]: element-wise sum. [`Op::Concat`]: along
//!   channels, in the order given.
//! - [`Act::Relu`] on a node applies ReLU to its output.
//! - The *layers* of a graph are its convs, linears and adds: the nodes
//!   with a record in the model file, in node order (the order of the
//!   forward pass; every input comes before its readers). A layer's name is
//!   its PyTorch module name; a residual add, which PyTorch has no module
//!   for, is named `<block>.add`.
//!
//! # In int8
//!
//! Every layer has its own output quantisation (scale, zero point, clamp).
//! Pools keep their input's quantisation (a max pool with ReLU clamps at its
//! zero point); a concat's inputs must be layers, each writing its channel
//! slice of the concat, so they share one quantisation ([`Source`] says
//! whose quantisation a tensor carries). An add's operand `a` is its first
//! input. A layer's [`Activation`](crate::model::Activation) in the file is
//! derived: ReLU on the node, or a max pool with ReLU as its only consumer.

use crate::arch::{conv_out, pool2_out, CLASSES, IMAGE_SIDE};

mod inception;
mod resnet;
mod resnet_identity;

#[cfg(test)]
mod tests;

pub use inception::INCEPTION;
pub use resnet::RESNET;
pub use resnet_identity::RESNET_IDENTITY;

/// Which network a model file, a checkpoint or a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum NetId {
    /// InceptionNet ([`INCEPTION`]).
    Inception = 0,
    /// The seed's ResNet, with projection shortcuts ([`RESNET`]).
    ResNet = 1,
    /// The lecture's ResNet, with identity shortcuts ([`RESNET_IDENTITY`]).
    ResNetIdentity = 2,
}

impl NetId {
    /// Every network, in id order.
    pub const ALL: [NetId; 3] = [NetId::Inception, NetId::ResNet, NetId::ResNetIdentity];

    /// How many networks there are.
    pub const COUNT: usize = NetId::ALL.len();

    /// The network for a stored id byte.
    pub const fn from_u8(id: u8) -> Option<NetId> {
        let mut i = 0;
        while i < NetId::COUNT {
            if NetId::ALL[i] as u8 == id {
                return Some(NetId::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The network with this command-line name.
    pub fn from_name(name: &str) -> Option<NetId> {
        NetId::ALL.into_iter().find(|n| n.name() == name)
    }

    /// The name on the command line and in file names.
    pub const fn name(self) -> &'static str {
        match self {
            NetId::Inception => "inception",
            NetId::ResNet => "resnet",
            NetId::ResNetIdentity => "resnet-identity",
        }
    }

    /// The network's graph.
    pub const fn graph(self) -> &'static Graph {
        match self {
            NetId::Inception => INCEPTION,
            NetId::ResNet => RESNET,
            NetId::ResNetIdentity => RESNET_IDENTITY,
        }
    }
}

/// Most nodes a graph may have.
pub const MAX_NODES: usize = 32;
/// Most int8 steps a graph may have.
pub const MAX_STEPS: usize = 20;
/// Most nodes one step may compute.
pub const MAX_STEP_NODES: usize = 4;
/// Most inputs of a concat.
pub const MAX_CONCAT: usize = 4;
/// Most bytes in a node's or a step's name.
pub const NAME_BYTES: usize = 24;

/// A node of a graph: its index in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(pub u8);

impl NodeId {
    /// The index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A name stored inline (graphs are built at compile time, where names
/// such as `incep1.b5_2` are put together from a module's scope and a
/// local name).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    bytes: [u8; NAME_BYTES],
    len: u8,
}

impl Name {
    const EMPTY: Name = Name {
        bytes: [0; NAME_BYTES],
        len: 0,
    };

    /// `s` as a name.
    pub const fn new(s: &str) -> Name {
        Name::EMPTY.push(s.as_bytes())
    }

    const fn push(mut self, s: &[u8]) -> Name {
        assert!(
            self.len as usize + s.len() <= NAME_BYTES,
            "a name is longer than NAME_BYTES"
        );
        let mut i = 0;
        while i < s.len() {
            self.bytes[self.len as usize] = s[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    const fn bytes(&self) -> &[u8] {
        self.bytes.split_at(self.len as usize).0
    }

    /// The name.
    pub const fn as_str(&self) -> &str {
        // Built from whole `&str`s and ASCII separators only.
        match core::str::from_utf8(self.bytes()) {
            Ok(s) => s,
            Err(_) => "",
        }
    }

    /// The part before the first `.` (empty if there is none).
    const fn scope(&self) -> &[u8] {
        let b = self.bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'.' {
                return b.split_at(i).0;
            }
            i += 1;
        }
        &[]
    }

    /// Whether the name is `s`.
    pub const fn is(&self, s: &str) -> bool {
        bytes_eq(self.bytes(), s.as_bytes())
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether two byte strings are equal (`==` is not `const`).
pub(crate) const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What a node computes (see the module docs for the exact semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The image.
    Input,
    /// Convolution with bias; the output channels are the node's.
    Conv {
        /// The tensor convolved.
        input: NodeId,
        /// Kernel side.
        kernel: u8,
        /// Zero padding on every side.
        pad: u8,
    },
    /// (C, H, W) flatten, then fully connected with bias.
    Linear {
        /// The tensor flattened.
        input: NodeId,
    },
    /// 2x2 max pool, stride 2.
    MaxPool2 {
        /// The tensor pooled.
        input: NodeId,
    },
    /// 3x3 average pool, stride 1, padding 1, always divided by 9.
    AvgPool3 {
        /// The tensor pooled.
        input: NodeId,
    },
    /// `a + b`, element by element.
    Add {
        /// The first operand.
        a: NodeId,
        /// The second operand.
        b: NodeId,
    },
    /// Concatenation along channels.
    Concat {
        /// The parts, in channel order (the first `count`).
        inputs: [NodeId; MAX_CONCAT],
        /// How many parts.
        count: u8,
    },
}

/// The activation applied to a node's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// None.
    None,
    /// ReLU.
    Relu,
}

/// One node: a named operation on earlier nodes, and its output's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// PyTorch's module name for a layer (`incep1.b5_2`); for other nodes a
    /// descriptive name (`input`, `pool1`, `incep1.avgpool`, `incep1` for
    /// the module's concat).
    pub name: Name,
    /// What it computes.
    pub op: Op,
    /// The activation on its output.
    pub act: Act,
    /// Output channels.
    pub channels: u16,
    /// Output side (1 for a linear layer).
    pub side: u16,
}

impl Node {
    /// Whether the node is a layer (has a record in the model file).
    pub const fn is_layer(&self) -> bool {
        matches!(
            self.op,
            Op::Conv { .. } | Op::Linear { .. } | Op::Add { .. }
        )
    }

    /// Bytes of its int8 output tensor.
    pub const fn tensor_bytes(&self) -> usize {
        self.channels as usize * self.side as usize * self.side as usize
    }

    /// Its inputs, in order (the first of the returned count).
    pub const fn inputs(&self) -> ([NodeId; MAX_CONCAT], usize) {
        let none = NodeId(0);
        match self.op {
            Op::Input => ([none; MAX_CONCAT], 0),
            Op::Conv { input, .. }
            | Op::Linear { input }
            | Op::MaxPool2 { input }
            | Op::AvgPool3 { input } => ([input, none, none, none], 1),
            Op::Add { a, b } => ([a, b, none, none], 2),
            Op::Concat { inputs, count } => (inputs, count as usize),
        }
    }

    const fn reads(&self, id: NodeId) -> bool {
        let (inputs, n) = self.inputs();
        let mut i = 0;
        while i < n {
            if inputs[i].0 == id.0 {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// One step of the int8 forward pass: nodes computed together (fused) by
/// one kernel call. Its name joins the nodes' names with `+`, a name's
/// module scope written once (`incep1.b1+b5_1+b3_1`, `conv1+pool1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The step's name, as `host profile` reports it.
    pub name: Name,
    nodes: [NodeId; MAX_STEP_NODES],
    count: u8,
}

impl Step {
    /// The nodes it computes.
    pub const fn nodes(&self) -> &[NodeId] {
        self.nodes.split_at(self.count as usize).0
    }

    const fn has(&self, id: NodeId) -> bool {
        let mut i = 0;
        while i < self.count as usize {
            if self.nodes[i].0 == id.0 {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// Whose output quantisation a tensor carries in int8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The input image's (the model file's header).
    Image,
    /// The layer with this index in the model file.
    Layer(u8),
}

/// A network's graph: nodes in the order of the forward pass (inputs come
/// first), and the int8 steps in execution order.
#[derive(Clone, Copy, Debug)]
pub struct Graph {
    /// The network.
    pub net: NetId,
    nodes: [Node; MAX_NODES],
    node_count: u8,
    steps: [Step; MAX_STEPS],
    step_count: u8,
    /// Names of the nodes being added are `scope.name` while set.
    scope: Option<&'static str>,
}

const PLACEHOLDER: Node = Node {
    name: Name::EMPTY,
    op: Op::Input,
    act: Act::None,
    channels: 0,
    side: 0,
};

const NO_STEP: Step = Step {
    name: Name::EMPTY,
    nodes: [NodeId(0); MAX_STEP_NODES],
    count: 0,
};

// Building (compile time).
impl Graph {
    /// An empty graph of `net`, with its input node (`input`, one channel
    /// of [`IMAGE_SIDE`]) as node 0.
    pub const fn new(net: NetId) -> Graph {
        let mut g = Graph {
            net,
            nodes: [PLACEHOLDER; MAX_NODES],
            node_count: 0,
            steps: [NO_STEP; MAX_STEPS],
            step_count: 0,
            scope: None,
        };
        g.push("input", Op::Input, Act::None, 1, IMAGE_SIDE);
        g
    }

    /// The input node.
    pub const INPUT: NodeId = NodeId(0);

    /// Names of the nodes added until [`Graph::leave`] get `scope.` in
    /// front (a module's layers: `incep1.b1`).
    pub const fn enter(&mut self, scope: &'static str) {
        assert!(self.scope.is_none(), "scopes do not nest");
        self.scope = Some(scope);
    }

    /// Ends the scope of [`Graph::enter`].
    pub const fn leave(&mut self) {
        self.scope = None;
    }

    const fn push(&mut self, name: &str, op: Op, act: Act, channels: usize, side: usize) -> NodeId {
        let n = self.node_count as usize;
        assert!(n < MAX_NODES, "more than MAX_NODES nodes");
        assert!(
            channels > 0 && channels <= u16::MAX as usize,
            "channel count out of range"
        );
        assert!(side > 0, "a feature map vanished");
        let name = match self.scope {
            Some(scope) => Name::new(scope).push(b".").push(name.as_bytes()),
            None => Name::new(name),
        };
        let mut i = 0;
        while i < n {
            assert!(
                !bytes_eq(self.nodes[i].name.bytes(), name.bytes()),
                "two nodes have the same name"
            );
            i += 1;
        }
        self.nodes[n] = Node {
            name,
            op,
            act,
            channels: channels as u16,
            side: side as u16,
        };
        self.node_count += 1;
        NodeId(n as u8)
    }

    const fn at(&self, id: NodeId) -> &Node {
        assert!(
            id.index() < self.node_count as usize,
            "a node refers to a later node"
        );
        &self.nodes[id.index()]
    }

    /// A convolution of `input` to `channels` channels, kernel `kernel`,
    /// zero padding `pad`, then `act`.
    pub const fn conv(
        &mut self,
        name: &str,
        input: NodeId,
        channels: usize,
        kernel: usize,
        pad: usize,
        act: Act,
    ) -> NodeId {
        let x = *self.at(input);
        assert!(
            x.side as usize + 2 * pad >= kernel,
            "a kernel larger than its padded input"
        );
        assert!(
            kernel <= u8::MAX as usize && pad < kernel,
            "kernel or padding out of range"
        );
        let op = Op::Conv {
            input,
            kernel: kernel as u8,
            pad: pad as u8,
        };
        self.push(
            name,
            op,
            act,
            channels,
            conv_out(x.side as usize, kernel, pad),
        )
    }

    /// The (C, H, W) flatten of `input`, then a fully connected layer to
    /// `outputs` values.
    pub const fn linear(&mut self, name: &str, input: NodeId, outputs: usize) -> NodeId {
        let _ = self.at(input);
        self.push(name, Op::Linear { input }, Act::None, outputs, 1)
    }

    /// 2x2 max pool of `input`, then `act`.
    pub const fn max_pool(&mut self, name: &str, input: NodeId, act: Act) -> NodeId {
        let x = *self.at(input);
        let side = pool2_out(x.side as usize);
        self.push(name, Op::MaxPool2 { input }, act, x.channels as usize, side)
    }

    /// 3x3 average pool of `input` (stride 1, padding 1, divided by 9).
    pub const fn avg_pool(&mut self, name: &str, input: NodeId) -> NodeId {
        let x = *self.at(input);
        let (c, s) = (x.channels as usize, x.side as usize);
        self.push(name, Op::AvgPool3 { input }, Act::None, c, s)
    }

    /// `a + b`, then `act`.
    pub const fn add(&mut self, name: &str, a: NodeId, b: NodeId, act: Act) -> NodeId {
        let (x, y) = (*self.at(a), *self.at(b));
        assert!(
            x.channels == y.channels && x.side == y.side,
            "an add of two shapes"
        );
        let (c, s) = (x.channels as usize, x.side as usize);
        self.push(name, Op::Add { a, b }, act, c, s)
    }

    /// The concatenation of `parts` along channels.
    pub const fn concat(&mut self, name: &str, parts: &[NodeId]) -> NodeId {
        assert!(
            parts.len() >= 2 && parts.len() <= MAX_CONCAT,
            "a concat of 2 to MAX_CONCAT parts"
        );
        let mut inputs = [NodeId(0); MAX_CONCAT];
        let side = self.at(parts[0]).side;
        let mut channels = 0;
        let mut i = 0;
        while i < parts.len() {
            let p = *self.at(parts[i]);
            assert!(p.side == side, "a concat of different sides");
            inputs[i] = parts[i];
            channels += p.channels as usize;
            i += 1;
        }
        let op = Op::Concat {
            inputs,
            count: parts.len() as u8,
        };
        self.push(name, op, Act::None, channels, side as usize)
    }

    /// The next int8 step computes `nodes` (in one fused kernel call).
    pub const fn step(&mut self, nodes: &[NodeId]) {
        let s = self.step_count as usize;
        assert!(s < MAX_STEPS, "more than MAX_STEPS steps");
        assert!(
            !nodes.is_empty() && nodes.len() <= MAX_STEP_NODES,
            "a step of 1 to MAX_STEP_NODES nodes"
        );
        let mut step = NO_STEP;
        let mut i = 0;
        while i < nodes.len() {
            let name = self.at(nodes[i]).name;
            step.name = if i == 0 {
                name
            } else {
                // The first node's module scope is written once.
                let scope = step.nodes_scope(self);
                let b = name.bytes();
                let rest = if !scope.is_empty() && bytes_eq(name.scope(), scope) {
                    b.split_at(scope.len() + 1).1
                } else {
                    b
                };
                step.name.push(b"+").push(rest)
            };
            step.nodes[i] = nodes[i];
            step.count += 1;
            i += 1;
        }
        self.steps[s] = step;
        self.step_count += 1;
    }

    /// Checks what the builders could not check node by node, and returns
    /// the graph:
    /// - the last node is a linear layer with [`CLASSES`] outputs, and
    ///   every other node is used;
    /// - every node but a concat is computed by exactly one step, and each
    ///   step's inputs are computed before it (a concat counts as computed
    ///   once its parts are);
    /// - a concat's parts are layers with no other consumer, and the
    ///   average pools and concats have no activation (the int8 kernels
    ///   have none there).
    pub const fn finish(self) -> Graph {
        let n = self.node_count as usize;
        let last = self.nodes[n - 1];
        assert!(
            matches!(last.op, Op::Linear { .. }) && last.channels as usize == CLASSES,
            "the last node must be the linear layer of the logits"
        );
        let mut i = 0;
        while i < n {
            let node = self.nodes[i];
            let id = NodeId(i as u8);
            assert!(i == n - 1 || self.consumers(id) > 0, "a node nobody reads");
            match node.op {
                Op::Concat { inputs, count } => {
                    let mut k = 0;
                    while k < count as usize {
                        let part = self.nodes[inputs[k].index()];
                        assert!(part.is_layer(), "a concat's parts must be layers");
                        assert!(
                            self.consumers(inputs[k]) == 1,
                            "a concat's part is read elsewhere too"
                        );
                        k += 1;
                    }
                    assert!(matches!(node.act, Act::None), "a concat with an activation");
                }
                Op::AvgPool3 { .. } => {
                    assert!(
                        matches!(node.act, Act::None),
                        "an average pool with an activation"
                    )
                }
                _ => {
                    let s = self.step_of(id);
                    assert!(s < self.step_count as usize, "a node no step computes");
                    let mut t = s + 1;
                    while t < self.step_count as usize {
                        assert!(!self.steps[t].has(id), "a node two steps compute");
                        t += 1;
                    }
                    let (inputs, count) = node.inputs();
                    let mut k = 0;
                    while k < count {
                        assert!(
                            self.ready_by(inputs[k], s, id),
                            "a step reads a node computed later"
                        );
                        k += 1;
                    }
                }
            }
            i += 1;
        }
        self
    }

    /// The first step that computes `id` (the step count if none does: a
    /// concat).
    pub const fn step_of(&self, id: NodeId) -> usize {
        let mut s = 0;
        while s < self.step_count as usize && !self.steps[s].has(id) {
            s += 1;
        }
        s
    }

    /// Whether `input` is computed before node `reader` of step `s`: in an
    /// earlier step, or earlier in the same step.
    const fn ready_by(&self, input: NodeId, s: usize, reader: NodeId) -> bool {
        match self.nodes[input.index()].op {
            Op::Concat { inputs, count } => {
                let mut k = 0;
                while k < count as usize {
                    if !self.ready_by(inputs[k], s, reader) {
                        return false;
                    }
                    k += 1;
                }
                true
            }
            _ => {
                let t = self.step_of(input);
                if t != s {
                    return t < s;
                }
                let step = &self.steps[s];
                let mut i = 0;
                while step.nodes[i].0 != reader.0 {
                    if step.nodes[i].0 == input.0 {
                        return true;
                    }
                    i += 1;
                }
                false
            }
        }
    }
}

impl Step {
    /// The module scope of the step's first node.
    const fn nodes_scope<'g>(&self, g: &'g Graph) -> &'g [u8] {
        g.nodes[self.nodes[0].index()].name.scope()
    }
}

// Reading.
impl Graph {
    /// The nodes, in order.
    pub const fn nodes(&self) -> &[Node] {
        self.nodes.split_at(self.node_count as usize).0
    }

    /// The int8 steps, in execution order.
    pub const fn steps(&self) -> &[Step] {
        self.steps.split_at(self.step_count as usize).0
    }

    /// The node `id`.
    pub const fn node(&self, id: NodeId) -> &Node {
        &self.nodes()[id.index()]
    }

    /// How many nodes read `id`'s output.
    pub const fn consumers(&self, id: NodeId) -> usize {
        let mut count = 0;
        let mut i = id.index() + 1;
        while i < self.node_count as usize {
            if self.nodes[i].reads(id) {
                count += 1;
            }
            i += 1;
        }
        count
    }

    /// The only node that reads `id`'s output, if exactly one does.
    pub const fn sole_consumer(&self, id: NodeId) -> Option<NodeId> {
        if self.consumers(id) != 1 {
            return None;
        }
        let mut i = id.index() + 1;
        while !self.nodes[i].reads(id) {
            i += 1;
        }
        Some(NodeId(i as u8))
    }

    /// The concat `id` writes its channels into, if it is a concat's part.
    pub const fn concat_of(&self, id: NodeId) -> Option<NodeId> {
        match self.sole_consumer(id) {
            Some(c) if matches!(self.node(c).op, Op::Concat { .. }) => Some(c),
            _ => None,
        }
    }

    /// The channel offset of part `id` in its concat (0 if it is none).
    pub const fn concat_offset(&self, id: NodeId) -> usize {
        let Some(c) = self.concat_of(id) else {
            return 0;
        };
        let Op::Concat { inputs, .. } = self.node(c).op else {
            return 0;
        };
        let mut offset = 0;
        let mut k = 0;
        while inputs[k].0 != id.0 {
            offset += self.node(inputs[k]).channels as usize;
            k += 1;
        }
        offset
    }

    /// How many layers (convs, linears, adds) there are.
    pub const fn layer_count(&self) -> usize {
        let mut count = 0;
        let mut i = 0;
        while i < self.node_count as usize {
            if self.nodes[i].is_layer() {
                count += 1;
            }
            i += 1;
        }
        count
    }

    /// The index in the model file of layer node `id`, if it is a layer.
    pub const fn layer_index(&self, id: NodeId) -> Option<usize> {
        if !self.node(id).is_layer() {
            return None;
        }
        let mut index = 0;
        let mut i = 0;
        while i < id.index() {
            if self.nodes[i].is_layer() {
                index += 1;
            }
            i += 1;
        }
        Some(index)
    }

    /// The node of layer `index` of the model file.
    pub const fn layer_node(&self, index: usize) -> NodeId {
        let mut seen = 0;
        let mut i = 0;
        while i < self.node_count as usize {
            if self.nodes[i].is_layer() {
                if seen == index {
                    return NodeId(i as u8);
                }
                seen += 1;
            }
            i += 1;
        }
        panic!("no layer with that index")
    }

    /// Whose quantisation `id`'s output carries in int8: a layer's own (a
    /// concat's part: the concat's first part's), a pool's input's, a
    /// concat's first part's.
    pub const fn source(&self, id: NodeId) -> Source {
        let node = self.node(id);
        match node.op {
            Op::Input => Source::Image,
            Op::MaxPool2 { input } | Op::AvgPool3 { input } => self.source(input),
            Op::Concat { inputs, .. } => self.source(inputs[0]),
            Op::Conv { .. } | Op::Linear { .. } | Op::Add { .. } => match self.concat_of(id) {
                Some(c) if !is_first_part(self.node(c), id) => self.source(c),
                _ => match self.layer_index(id) {
                    Some(i) => Source::Layer(i as u8),
                    None => Source::Image,
                },
            },
        }
    }

    /// Trainable parameters (weights and biases of the convs and linears).
    pub const fn params(&self) -> usize {
        let mut count = 0;
        let mut i = 0;
        while i < self.node_count as usize {
            let node = self.nodes[i];
            let (fan_in, _) = self.fan_in(NodeId(i as u8));
            if fan_in > 0 {
                count += node.channels as usize * (fan_in + 1);
            }
            i += 1;
        }
        count
    }

    /// Weights per output of a conv or linear node (`CI * K * K`, or the
    /// flattened input's length), and its kernel side; `(0, 0)` for other
    /// nodes.
    pub const fn fan_in(&self, id: NodeId) -> (usize, usize) {
        match self.node(id).op {
            Op::Conv { input, kernel, .. } => {
                let k = kernel as usize;
                (self.node(input).channels as usize * k * k, k)
            }
            Op::Linear { input } => (self.node(input).tensor_bytes(), 1),
            _ => (0, 0),
        }
    }
}

impl Graph {
    /// Continues the FNV-1a hash `h` over every node in order: its name, a
    /// 0 byte, its operation, its inputs (count and ids), kernel and
    /// padding, activation, channels and side (u16 LE). The wiring is in
    /// it as much as the shapes: what [`crate::model::signature`] is made
    /// of.
    pub const fn signature(&self, mut h: u32) -> u32 {
        let nodes = self.nodes();
        let mut i = 0;
        while i < nodes.len() {
            let n = &nodes[i];
            h = fnv1a(h, n.name.bytes());
            let (tag, kernel, pad) = match n.op {
                Op::Input => (0, 0, 0),
                Op::Conv { kernel, pad, .. } => (1, kernel, pad),
                Op::Linear { .. } => (2, 0, 0),
                Op::MaxPool2 { .. } => (3, 0, 0),
                Op::AvgPool3 { .. } => (4, 0, 0),
                Op::Add { .. } => (5, 0, 0),
                Op::Concat { .. } => (6, 0, 0),
            };
            let (inputs, count) = n.inputs();
            h = fnv1a(h, &[0, tag, count as u8]);
            let mut k = 0;
            while k < count {
                h = fnv1a(h, &[inputs[k].0]);
                k += 1;
            }
            let act = match n.act {
                Act::None => 0,
                Act::Relu => 1,
            };
            let (c, s) = (n.channels.to_le_bytes(), n.side.to_le_bytes());
            h = fnv1a(h, &[kernel, pad, act, c[0], c[1], s[0], s[1]]);
            i += 1;
        }
        h
    }
}

/// FNV-1a, 32 bits, over a byte string, continuing from `h`.
pub(crate) const fn fnv1a(mut h: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

const fn is_first_part(concat: &Node, id: NodeId) -> bool {
    match concat.op {
        Op::Concat { inputs, .. } => inputs[0].0 == id.0,
        _ => false,
    }
}
