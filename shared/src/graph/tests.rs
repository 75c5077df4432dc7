//! The graphs against the networks' definitions: PyTorch's parameter counts
//! and `state_dict` names, the MAC counts, and the derived wiring.

use super::*;
use crate::arch::CLASSES;
use crate::model::{layers, Activation, LayerKind};

// PyTorch's `sum(p.numel() for p in model.parameters())` for the reference
// definitions.
#[test]
fn parameter_counts_match_the_pytorch_reference() {
    assert_eq!(INCEPTION.params(), 97_298);
    assert_eq!(RESNET.params(), 14_570);
    assert_eq!(RESNET_IDENTITY.params(), 41_514);
}

// The layers' MACs, padded taps included (as CMSIS-NN counts them): the
// first two as the firmware's profile reports them; the third worked out by hand from the
// definition: conv1 16*25*24*24, each rb1 conv 16*16*9*12*12, conv2
// 32*16*25*8*8, each rb2 conv 32*32*9*4*4, fc 512*10.
#[test]
fn layer_tables_count_the_macs() {
    let macs = |net| layers(net).iter().map(|l| l.macs()).sum::<usize>();
    assert_eq!(macs(NetId::Inception), 6_019_200);
    assert_eq!(macs(NetId::ResNet), 1_039_976);
    let identity =
        16 * 25 * 576 + 2 * 16 * 16 * 9 * 144 + 32 * 16 * 25 * 64 + 2 * 32 * 32 * 9 * 16 + 5120;
    assert_eq!(identity, 2_013_184);
    assert_eq!(macs(NetId::ResNetIdentity), identity);
}

fn layer_names(net: NetId) -> Vec<&'static str> {
    layers(net).iter().map(|l| l.name.as_str()).collect()
}

// The PyTorch module names of the reference definitions, in file order.
#[test]
fn layers_are_the_pytorch_modules() {
    let incep =
        |p: &str| ["b1", "b5_1", "b5_2", "b3_1", "b3_2", "b3_3", "bp"].map(|b| format!("{p}.{b}"));
    let mut inception = vec!["conv1".to_string()];
    inception.extend(incep("incep1"));
    inception.push("conv2".into());
    inception.extend(incep("incep2"));
    inception.push("fc".into());
    assert_eq!(layer_names(NetId::Inception), inception);
    assert_eq!(
        layer_names(NetId::ResNet),
        [
            "r1.conv1", "r1.conv2", "r1.conv", "r1.add", "r2.conv1", "r2.conv2", "r2.conv",
            "r2.add", "fc"
        ]
    );
    assert_eq!(
        layer_names(NetId::ResNetIdentity),
        [
            "conv1",
            "rb1.conv1",
            "rb1.conv2",
            "rb1.add",
            "conv2",
            "rb2.conv1",
            "rb2.conv2",
            "rb2.add",
            "fc"
        ]
    );
}

#[test]
fn step_names_join_their_nodes() {
    let names = |g: &'static Graph| {
        g.steps()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
    };
    let module = |p: &str| {
        ["b1+b5_1+b3_1", "avgpool", "bp", "b5_2", "b3_2", "b3_3"].map(|s| format!("{p}.{s}"))
    };
    let mut inception = vec!["input".to_string(), "conv1+pool1".into()];
    inception.extend(module("incep1"));
    inception.push("conv2+pool2".into());
    inception.extend(module("incep2"));
    inception.push("fc".into());
    assert_eq!(names(INCEPTION), inception);
    assert_eq!(
        names(RESNET),
        [
            "input",
            "r1.conv1+conv",
            "r1.conv2+add+pool1",
            "r2.conv1+conv",
            "r2.conv2+add+pool2",
            "fc"
        ]
    );
    assert_eq!(
        names(RESNET_IDENTITY),
        [
            "input",
            "conv1+pool1",
            "rb1.conv1",
            "rb1.conv2",
            "rb1.add",
            "conv2+pool2",
            "rb2.conv1",
            "rb2.conv2",
            "rb2.add",
            "fc"
        ]
    );
}

// Each layer reads the quantisation the networks' definitions give it:
// through pools to the layer before, a concat's parts sharing the first's.
#[test]
fn layers_are_wired_as_the_definitions_say() {
    let wiring = |net: NetId, name: &str| {
        let l = crate::model::layers::find(net, name).unwrap();
        let src = |s: Source| match s {
            Source::Image => "image",
            Source::Layer(i) => layers(net)[i as usize].name.as_str(),
        };
        (
            src(l.input),
            src(l.input_b),
            l.shares_output_of
                .map(|i| layers(net)[i as usize].name.as_str()),
        )
    };
    use NetId::*;
    assert_eq!(wiring(Inception, "conv1"), ("image", "image", None));
    assert_eq!(wiring(Inception, "incep1.b1"), ("conv1", "image", None));
    assert_eq!(
        wiring(Inception, "incep1.bp"),
        ("conv1", "image", Some("incep1.b1"))
    );
    assert_eq!(
        wiring(Inception, "incep1.b3_3"),
        ("incep1.b3_2", "image", Some("incep1.b1"))
    );
    assert_eq!(
        wiring(Inception, "incep1.b5_2"),
        ("incep1.b5_1", "image", Some("incep1.b1"))
    );
    assert_eq!(wiring(Inception, "conv2"), ("incep1.b1", "image", None));
    assert_eq!(wiring(Inception, "incep2.b3_1"), ("conv2", "image", None));
    assert_eq!(wiring(Inception, "fc"), ("incep2.b1", "image", None));
    assert_eq!(wiring(ResNet, "r1.conv"), ("image", "image", None));
    assert_eq!(wiring(ResNet, "r1.conv2"), ("r1.conv1", "image", None));
    assert_eq!(wiring(ResNet, "r1.add"), ("r1.conv2", "r1.conv", None));
    assert_eq!(wiring(ResNet, "r2.conv1"), ("r1.add", "image", None));
    assert_eq!(wiring(ResNet, "fc"), ("r2.add", "image", None));
    assert_eq!(
        wiring(ResNetIdentity, "rb1.conv1"),
        ("conv1", "image", None)
    );
    assert_eq!(
        wiring(ResNetIdentity, "rb1.add"),
        ("rb1.conv2", "conv1", None)
    );
    assert_eq!(wiring(ResNetIdentity, "conv2"), ("rb1.add", "image", None));
    assert_eq!(
        wiring(ResNetIdentity, "rb2.add"),
        ("rb2.conv2", "conv2", None)
    );
    assert_eq!(wiring(ResNetIdentity, "fc"), ("rb2.add", "image", None));
}

#[test]
fn activations_are_derived_from_the_nodes_after_a_layer() {
    let act = |net, name| crate::model::layers::find(net, name).unwrap().activation;
    use NetId::*;
    assert_eq!(act(Inception, "conv1"), Activation::ReluAfterPool);
    assert_eq!(act(Inception, "incep1.b1"), Activation::None);
    assert_eq!(act(Inception, "fc"), Activation::None);
    assert_eq!(act(ResNet, "r1.conv1"), Activation::Relu);
    assert_eq!(act(ResNet, "r1.conv"), Activation::None);
    assert_eq!(act(ResNet, "r2.add"), Activation::Relu);
    assert_eq!(act(ResNetIdentity, "conv1"), Activation::Relu);
    assert_eq!(act(ResNetIdentity, "rb1.conv2"), Activation::None);
    assert_eq!(act(ResNetIdentity, "rb2.add"), Activation::Relu);
    let add = crate::model::layers::find(ResNetIdentity, "rb1.add").unwrap();
    assert_eq!((add.kind, add.dims), (LayerKind::Add, [12, 12, 16, 0]));
}

#[test]
fn net_ids_round_trip() {
    for net in NetId::ALL {
        assert_eq!(NetId::from_u8(net as u8), Some(net));
        assert_eq!(NetId::from_name(net.name()), Some(net));
        assert_eq!(net.graph().net, net);
    }
    assert_eq!(NetId::from_u8(NetId::COUNT as u8), None);
    assert_eq!(NetId::from_name("lenet"), None);
}

#[test]
fn concat_offsets_follow_the_parts() {
    let g = INCEPTION;
    let find = |name: &str| NodeId(g.nodes().iter().position(|n| n.name.is(name)).unwrap() as u8);
    let offsets: Vec<usize> = ["incep1.b1", "incep1.b5_2", "incep1.b3_3", "incep1.bp"]
        .iter()
        .map(|n| g.concat_offset(find(n)))
        .collect();
    assert_eq!(offsets, [0, 16, 40, 64]);
    assert_eq!(g.node(find("incep1")).channels, 88);
}

/// The signature covers the wiring: a seed-style block whose add reads
/// conv1 instead of conv2 has every layer's shape and name, but another
/// signature.
#[test]
fn the_signature_covers_the_wiring() {
    const fn block(rewired: bool) -> Graph {
        let mut g = Graph::new(NetId::ResNet);
        g.step(&[Graph::INPUT]);
        let conv1 = g.conv("conv1", Graph::INPUT, 4, 3, 1, Act::Relu);
        let conv2 = g.conv("conv2", conv1, 4, 3, 1, Act::None);
        let sc = g.conv("conv", Graph::INPUT, 4, 3, 1, Act::None);
        let add = g.add("add", if rewired { conv1 } else { conv2 }, sc, Act::Relu);
        let pool = g.max_pool("pool", add, Act::None);
        g.step(&[conv1, sc]);
        g.step(&[conv2]);
        g.step(&[add, pool]);
        let fc = g.linear("fc", pool, CLASSES);
        g.step(&[fc]);
        g
    }
    let (a, b) = (block(false), block(true));
    assert_ne!(a.signature(1), b.signature(1));
    let shapes = |g: &Graph| {
        g.nodes()
            .iter()
            .map(|n| (n.name, n.channels, n.side))
            .collect::<Vec<_>>()
    };
    assert_eq!(shapes(&a), shapes(&b));
}
