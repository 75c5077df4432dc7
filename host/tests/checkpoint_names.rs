//! The checkpoints' tensor names and shapes are PyTorch's `state_dict` for
//! the PyTorch reference definitions, written out here by hand.

use dfdx::nn::BuildModule;
use dfdx::prelude::*;
use host::train::modules::{named_tensors, InceptionNet, ResNet, ResNetIdentity};

fn names_and_shapes<M: host::train::modules::Net>() -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<_> = named_tensors(&M::build(&Cpu::default()))
        .into_iter()
        .map(|t| (t.name, t.shape))
        .collect();
    v.sort();
    v
}

fn conv(prefix: &str, cout: usize, cin: usize, k: usize) -> [(String, Vec<usize>); 2] {
    [
        (format!("{prefix}.weight"), vec![cout, cin, k, k]),
        (format!("{prefix}.bias"), vec![cout]),
    ]
}

fn inception_a(prefix: &str, cin: usize) -> Vec<(String, Vec<usize>)> {
    [
        conv(&format!("{prefix}.b1"), 16, cin, 1),
        conv(&format!("{prefix}.b5_1"), 16, cin, 1),
        conv(&format!("{prefix}.b5_2"), 24, 16, 5),
        conv(&format!("{prefix}.b3_1"), 16, cin, 1),
        conv(&format!("{prefix}.b3_2"), 24, 16, 3),
        conv(&format!("{prefix}.b3_3"), 24, 24, 3),
        conv(&format!("{prefix}.bp"), 24, cin, 1),
    ]
    .concat()
}

#[test]
fn inception_matches_the_pytorch_state_dict() {
    let mut expected = [
        conv("conv1", 10, 1, 5).to_vec(),
        inception_a("incep1", 10),
        conv("conv2", 20, 88, 5).to_vec(),
        inception_a("incep2", 20),
    ]
    .concat();
    expected.push(("fc.weight".into(), vec![10, 1408]));
    expected.push(("fc.bias".into(), vec![10]));
    expected.sort();
    assert_eq!(names_and_shapes::<InceptionNet>(), expected);
    let total: usize = expected
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(total, 97_298);
}

#[test]
fn resnet_matches_the_pytorch_state_dict() {
    let mut expected = [
        conv("r1.conv1", 1, 1, 3),
        conv("r1.conv2", 10, 1, 3),
        conv("r1.conv", 10, 1, 3),
        conv("r2.conv1", 10, 10, 3),
        conv("r2.conv2", 20, 10, 3),
        conv("r2.conv", 20, 10, 3),
    ]
    .concat();
    expected.push(("fc.weight".into(), vec![10, 980]));
    expected.push(("fc.bias".into(), vec![10]));
    expected.sort();
    assert_eq!(names_and_shapes::<ResNet>(), expected);
    let total: usize = expected
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(total, 14_570);
}

#[test]
fn resnet_identity_matches_the_pytorch_state_dict() {
    let mut expected = [
        conv("conv1", 16, 1, 5),
        conv("conv2", 32, 16, 5),
        conv("rb1.conv1", 16, 16, 3),
        conv("rb1.conv2", 16, 16, 3),
        conv("rb2.conv1", 32, 32, 3),
        conv("rb2.conv2", 32, 32, 3),
    ]
    .concat();
    expected.push(("fc.weight".into(), vec![10, 512]));
    expected.push(("fc.bias".into(), vec![10]));
    expected.sort();
    assert_eq!(names_and_shapes::<ResNetIdentity>(), expected);
    let total: usize = expected
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(total, 41_514);
}

/// Every network's tensors are its graph's layers (`<layer>.weight`,
/// `<layer>.bias` of each conv and linear, in PyTorch's shapes): the dfdx
/// module and the graph describe the same network.
#[test]
fn every_network_has_its_graphs_tensors() {
    use shared::graph::Op;
    for net in shared::NetId::ALL {
        let g = net.graph();
        let mut expected = Vec::new();
        for node in g.nodes() {
            let name = node.name.as_str();
            let co = usize::from(node.channels);
            match node.op {
                Op::Conv { input, kernel, .. } => {
                    let k = usize::from(kernel);
                    expected.extend(conv(name, co, usize::from(g.node(input).channels), k));
                }
                Op::Linear { input } => {
                    expected.push((
                        format!("{name}.weight"),
                        vec![co, g.node(input).tensor_bytes()],
                    ));
                    expected.push((format!("{name}.bias"), vec![co]));
                }
                _ => {}
            }
        }
        expected.sort();
        let got = host::with_net!(net, M => names_and_shapes::<M>());
        assert_eq!(got, expected, "{net:?}");
    }
}
