//! The layer tables: for each network, the layer records a model file holds,
//! in file order, with their names, kinds, dimensions and activations — all
//! computed from [`crate::arch`]. The decoder checks every record against
//! them, and the shape signature in the header is a hash of them.

use super::NetId;
use crate::arch::{inception as inc, inception_a as ia, resnet as res, CLASSES, IMAGE_SIDE};

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

/// One layer record as the architecture defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// PyTorch module name (`conv1`, `incep1.b5_2`, `r1.conv`, `fc`); the
    /// residual adds, which have no parameters in PyTorch, are `r1.add` and
    /// `r2.add`.
    pub name: &'static str,
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
}

impl LayerSpec {
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

const fn u16_of(n: usize) -> u16 {
    assert!(n <= u16::MAX as usize, "dimension does not fit a u16");
    n as u16
}

const fn conv(
    name: &'static str,
    ci: usize,
    k: usize,
    pad: usize,
    co: usize,
    out_side: usize,
    activation: Activation,
) -> LayerSpec {
    LayerSpec {
        name,
        kind: LayerKind::Conv,
        dims: [u16_of(co), u16_of(k), u16_of(k), u16_of(ci)],
        pad: pad as u8,
        activation,
        out_side: u16_of(out_side),
    }
}

const fn linear(name: &'static str, side: usize, c: usize, o: usize) -> LayerSpec {
    LayerSpec {
        name,
        kind: LayerKind::Linear,
        dims: [u16_of(o), u16_of(side), u16_of(side), u16_of(c)],
        pad: 0,
        activation: Activation::None,
        out_side: 1,
    }
}

const fn add(name: &'static str, side: usize, c: usize) -> LayerSpec {
    LayerSpec {
        name,
        kind: LayerKind::Add,
        dims: [u16_of(side), u16_of(side), u16_of(c), 0],
        pad: 0,
        activation: Activation::Relu,
        out_side: u16_of(side),
    }
}

/// The seven convs of one InceptionA module on `cin` channels at side `s`,
/// in PyTorch's module order (b1, b5_1, b5_2, b3_1, b3_2, b3_3, bp). No
/// activation inside the module.
macro_rules! inception_a {
    ($p:literal, $cin:expr, $s:expr) => {
        [
            conv(concat!($p, ".b1"), $cin, 1, 0, ia::B1, $s, Activation::None),
            conv(
                concat!($p, ".b5_1"),
                $cin,
                1,
                0,
                ia::B5_REDUCE,
                $s,
                Activation::None,
            ),
            conv(
                concat!($p, ".b5_2"),
                ia::B5_REDUCE,
                5,
                2,
                ia::B5,
                $s,
                Activation::None,
            ),
            conv(
                concat!($p, ".b3_1"),
                $cin,
                1,
                0,
                ia::B3_REDUCE,
                $s,
                Activation::None,
            ),
            conv(
                concat!($p, ".b3_2"),
                ia::B3_REDUCE,
                3,
                1,
                ia::B3,
                $s,
                Activation::None,
            ),
            conv(
                concat!($p, ".b3_3"),
                ia::B3,
                3,
                1,
                ia::B3,
                $s,
                Activation::None,
            ),
            conv(concat!($p, ".bp"), $cin, 1, 0, ia::BP, $s, Activation::None),
        ]
    };
}

const INCEP1: [LayerSpec; 7] = inception_a!("incep1", inc::C1, inc::P1);
const INCEP2: [LayerSpec; 7] = inception_a!("incep2", inc::C2, inc::P2);

/// Index in [`INCEPTION`] of each module's first record.
pub const INCEP1_FIRST: usize = 1;
/// Index in [`INCEPTION`] of incep2's first record.
pub const INCEP2_FIRST: usize = 9;

/// InceptionNet's records in file order: conv1, incep1 (7), conv2,
/// incep2 (7), fc.
pub const INCEPTION: [LayerSpec; 17] = [
    conv(
        "conv1",
        1,
        inc::K1,
        0,
        inc::C1,
        inc::S1,
        Activation::ReluAfterPool,
    ),
    INCEP1[0],
    INCEP1[1],
    INCEP1[2],
    INCEP1[3],
    INCEP1[4],
    INCEP1[5],
    INCEP1[6],
    conv(
        "conv2",
        inc::INCEP_OUT,
        inc::K2,
        0,
        inc::C2,
        inc::S2,
        Activation::ReluAfterPool,
    ),
    INCEP2[0],
    INCEP2[1],
    INCEP2[2],
    INCEP2[3],
    INCEP2[4],
    INCEP2[5],
    INCEP2[6],
    linear("fc", inc::P2, inc::INCEP_OUT, CLASSES),
];

/// The ResNet's records in file order: per block conv1 (ReLU), conv2, conv
/// (the shortcut), add (ReLU); then fc.
pub const RESNET: [LayerSpec; 9] = [
    conv(
        "r1.conv1",
        1,
        res::K,
        res::PAD,
        1,
        IMAGE_SIDE,
        Activation::Relu,
    ),
    conv(
        "r1.conv2",
        1,
        res::K,
        res::PAD,
        res::C1,
        IMAGE_SIDE,
        Activation::None,
    ),
    conv(
        "r1.conv",
        1,
        res::K,
        res::PAD,
        res::C1,
        IMAGE_SIDE,
        Activation::None,
    ),
    add("r1.add", IMAGE_SIDE, res::C1),
    conv(
        "r2.conv1",
        res::C1,
        res::K,
        res::PAD,
        res::C1,
        res::P1,
        Activation::Relu,
    ),
    conv(
        "r2.conv2",
        res::C1,
        res::K,
        res::PAD,
        res::C2,
        res::P1,
        Activation::None,
    ),
    conv(
        "r2.conv",
        res::C1,
        res::K,
        res::PAD,
        res::C2,
        res::P1,
        Activation::None,
    ),
    add("r2.add", res::P1, res::C2),
    linear("fc", res::P2, res::C2, CLASSES),
];

/// The records of `net`, in file order.
pub const fn layers(net: NetId) -> &'static [LayerSpec] {
    match net {
        NetId::Inception => &INCEPTION,
        NetId::ResNet => &RESNET,
    }
}

/// The spec of the layer named `name` in `net`.
pub fn find(net: NetId, name: &str) -> Option<&'static LayerSpec> {
    layers(net).iter().find(|l| l.name == name)
}

/// FNV-1a, 32 bits, over a byte string, continuing from `h`.
const fn fnv1a(mut h: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

/// The shape signature of `net`: FNV-1a (32 bits) over the network id, the
/// image side, the class count and, per layer record in order, its name, a
/// 0 byte, kind, dims (u16 LE), padding, activation and output side.
/// Computed at compile time; any change to the architecture changes it, so
/// a file made for another architecture is refused with a clear error.
pub const fn signature(net: NetId) -> u32 {
    let mut h = fnv1a(0x811c_9dc5, &[net as u8, IMAGE_SIDE as u8, CLASSES as u8]);
    let ls = layers(net);
    let mut i = 0;
    while i < ls.len() {
        let l = &ls[i];
        h = fnv1a(h, l.name.as_bytes());
        let d = l.dims;
        let act = match l.activation {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::ReluAfterPool => 2,
        };
        let o = l.out_side.to_le_bytes();
        let bytes = [
            0,
            l.kind as u8,
            d[0] as u8,
            (d[0] >> 8) as u8,
            d[1] as u8,
            (d[1] >> 8) as u8,
            d[2] as u8,
            (d[2] >> 8) as u8,
            d[3] as u8,
            (d[3] >> 8) as u8,
            l.pad,
            act,
            o[0],
            o[1],
        ];
        h = fnv1a(h, &bytes);
        i += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;

    #[test]
    fn tables_count_the_pytorch_parameters() {
        for (net, params) in [
            (NetId::Inception, arch::inception::PARAMS),
            (NetId::ResNet, arch::resnet::PARAMS),
        ] {
            let n: usize = layers(net)
                .iter()
                .map(|l| l.weight_bytes() + l.bias_len())
                .sum();
            assert_eq!(n, params, "{net:?}");
        }
        assert_eq!(INCEPTION[INCEP1_FIRST].name, "incep1.b1");
        assert_eq!(INCEPTION[INCEP2_FIRST].name, "incep2.b1");
    }

    // GUIDE issue 6 states the MAC counts of both networks (CMSIS-NN's
    // count, padded taps included).
    #[test]
    fn tables_count_the_macs() {
        let macs = |net| layers(net).iter().map(LayerSpec::macs).sum::<usize>();
        assert_eq!(macs(NetId::Inception), 6_019_200);
        assert_eq!(macs(NetId::ResNet), 1_039_976);
    }

    #[test]
    fn signatures_differ_and_names_are_unique() {
        assert_ne!(signature(NetId::Inception), signature(NetId::ResNet));
        for net in [NetId::Inception, NetId::ResNet] {
            let ls = layers(net);
            for (i, a) in ls.iter().enumerate() {
                assert!(ls[i + 1..].iter().all(|b| b.name != a.name));
                assert_eq!(find(net, a.name), Some(a));
            }
        }
    }
}
