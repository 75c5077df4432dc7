//! Model file tests: round trips, and rejection (never a panic) of every
//! truncation, every header byte change, random bytes, the other network,
//! and each kind of bad record.

use super::Decode;
use super::*;
use crate::error::{Error, Field, LayerProblem, Part};
use crate::kernels::{ActRange, OutputQuant};
use crate::nets::inception::InceptionModel;
use crate::nets::resnet::ResNetModel;
use crate::nets::resnet_identity::ResNetIdentityModel;
use crate::nets::Model;
use crate::testutil::Rng;
use std::vec::Vec;

fn file(net: NetId, seed: u64) -> (ModelSpec, Vec<u8>) {
    let spec = ModelSpec::synthetic(net, seed);
    let bytes = spec.encode().expect("a synthetic model encodes");
    (spec, bytes)
}

/// Bytes of the preamble and header (everything before the first record).
fn header_len(bytes: &[u8]) -> usize {
    let (_, rest) = postcard::take_from_bytes::<Preamble>(bytes).unwrap();
    let (_, rest) = postcard::take_from_bytes::<Header>(rest).unwrap();
    bytes.len() - rest.len()
}

fn fix_crc(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = crc32(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes with every entry point; all must agree on success or failure.
fn decode_all(bytes: &[u8]) -> Result<NetId, Error> {
    let any = Model::decode(bytes);
    let checked = Layers::check_all(bytes);
    let own = [
        InceptionModel::decode(bytes).map(Model::Inception),
        ResNetModel::decode(bytes).map(Model::ResNet),
        ResNetIdentityModel::decode(bytes).map(Model::ResNetIdentity),
    ];
    match &any {
        Ok(m) => {
            assert_eq!(checked, Ok(m.net()));
            for (net, decoded) in NetId::ALL.into_iter().zip(own) {
                if net == m.net() {
                    assert_eq!(decoded.as_ref(), Ok(m));
                } else {
                    assert!(matches!(decoded, Err(Error::WrongNetwork { .. })));
                }
            }
        }
        Err(_) => assert!(checked.is_err() && own.iter().all(|d| d.is_err())),
    }
    any.map(|m| m.net())
}

#[test]
fn round_trip_is_exact() {
    for net in NetId::ALL {
        for seed in 0..3 {
            let (spec, bytes) = file(net, seed);
            assert_eq!(decode_all(&bytes), Ok(net));
            let back = ModelSpec::decode(&bytes).unwrap();
            assert_eq!(back, spec, "{net:?} seed {seed}");
            assert_eq!(back.encode().unwrap(), bytes);
        }
    }
}

#[test]
fn decoded_layers_borrow_the_file_bytes() {
    let (spec, bytes) = file(NetId::Inception, 7);
    let m = InceptionModel::decode(&bytes).unwrap();
    let range = bytes.as_ptr_range();
    let w = m.incep1.b5_2.weights.as_ptr() as *const u8;
    assert!(range.contains(&w), "weights are not borrowed from the file");
    assert!(range.contains(&(m.fc.weights.as_ptr() as *const u8)));
    assert!(range.contains(&(m.input.lut.as_ptr() as *const u8)));
    // And they are the spec's values, in OHWI order.
    let l = spec.layer("incep1.b5_2").unwrap();
    let flat = m
        .incep1
        .b5_2
        .weights
        .as_flattened()
        .as_flattened()
        .as_flattened();
    assert_eq!(flat, &l.weights[..]);
    assert_eq!(m.incep1.b5_2.bias.as_slice(), &l.bias[..]);
    assert_eq!(m.incep1.b5_2.requant.as_slice(), &l.requant[..]);
    // Input zero points come from the producers.
    assert_eq!(
        m.incep1.b5_2.input_zero_point,
        spec.layer("incep1.b5_1").unwrap().output.zero_point
    );
    assert_eq!(
        m.conv2.input_zero_point,
        spec.layer("incep1.bp").unwrap().output.zero_point
    );
    assert_eq!(m.conv1.input_zero_point, spec.input.zero_point);

    let (spec, bytes) = file(NetId::ResNet, 7);
    let m = ResNetModel::decode(&bytes).unwrap();
    let add = spec.layer("r2.add").unwrap();
    assert_eq!(m.r2.add.params.a, add.requant[0]);
    assert_eq!(m.r2.add.params.out, add.requant[2]);
    assert_eq!(
        m.r2.add.params.a_zero_point,
        spec.layer("r2.conv2").unwrap().output.zero_point
    );
    assert_eq!(
        m.r2.add.params.b_zero_point,
        spec.layer("r2.conv").unwrap().output.zero_point
    );
    assert_eq!(
        m.fc.input_zero_point,
        spec.layer("r2.add").unwrap().output.zero_point
    );

    // The identity shortcut: the add's b is the block's input (conv1's,
    // through the pool).
    let (spec, bytes) = file(NetId::ResNetIdentity, 7);
    let m = ResNetIdentityModel::decode(&bytes).unwrap();
    let zp = |name| spec.layer(name).unwrap().output.zero_point;
    assert_eq!(m.rb1.add.params.a_zero_point, zp("rb1.conv2"));
    assert_eq!(m.rb1.add.params.b_zero_point, zp("conv1"));
    assert_eq!(m.rb1.conv1.input_zero_point, zp("conv1"));
    assert_eq!(m.conv2.input_zero_point, zp("rb1.add"));
    assert_eq!(m.rb2.add.params.b_zero_point, zp("conv2"));
    assert_eq!(m.fc.input_zero_point, zp("rb2.add"));
}

#[test]
fn the_other_network_is_rejected() {
    let (_, inc) = file(NetId::Inception, 1);
    let (_, res) = file(NetId::ResNet, 1);
    assert_eq!(
        ResNetModel::decode(&inc).unwrap_err(),
        Error::WrongNetwork {
            expected: NetId::ResNet,
            found: NetId::Inception
        }
    );
    assert_eq!(
        InceptionModel::decode(&res).unwrap_err(),
        Error::WrongNetwork {
            expected: NetId::Inception,
            found: NetId::ResNet
        }
    );
    // A ResNet header over InceptionNet records: the signature and layer
    // count are the network's, so the records themselves must be refused.
    let mut spec = ModelSpec::synthetic(NetId::Inception, 1);
    spec.net = NetId::ResNet;
    let err = spec.encode().unwrap_err();
    assert!(matches!(err, Error::LayerCount { .. }), "{err:?}");
    let bytes = spec.encode_edited(|h| h.layer_count = 9, |_, _| {});
    let err = ResNetModel::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Layer {
                index: 0,
                name: "r1.conv1",
                problem: LayerProblem::Name
            }
        ),
        "{err:?}"
    );
}

/// Offsets where each layer record starts.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut rest = &bytes[header_len(bytes)..bytes.len() - 4];
    let mut starts = Vec::new();
    while !rest.is_empty() {
        starts.push(bytes.len() - 4 - rest.len());
        rest = postcard::take_from_bytes::<LayerRecord>(rest).unwrap().1;
    }
    starts
}

/// Prefixes of a valid file are refused, without a panic: every length
/// within 64 bytes of the header, a record start or the end, and every
/// `step`-th length elsewhere (each decode reads the whole prefix for its
/// CRC, so all 100 K prefixes of an InceptionNet file would take long).
fn every_truncation_is_rejected(bytes: &[u8], step: usize) {
    let header = header_len(bytes);
    let mut marks = record_starts(bytes);
    marks.push(bytes.len());
    let near = |n: usize| marks.iter().any(|&m| n.abs_diff(m) <= 64);
    for n in 0..bytes.len() {
        if !(n <= header + 64 || near(n) || n % step == 0) {
            continue;
        }
        let err = decode_all(&bytes[..n]).expect_err("a truncated file decoded");
        if n < header {
            assert!(
                matches!(err, Error::Truncated { .. }),
                "cut at {n}: {err:?}"
            );
        }
    }
}

#[test]
fn every_truncation_of_a_resnet_file_is_rejected() {
    let (_, bytes) = file(NetId::ResNet, 2);
    every_truncation_is_rejected(&bytes, 1);
}

#[test]
fn every_truncation_of_an_inception_file_is_rejected() {
    let (_, bytes) = file(NetId::Inception, 2);
    every_truncation_is_rejected(&bytes, 13);
}

#[test]
fn every_header_byte_change_is_rejected() {
    for net in NetId::ALL {
        let (_, bytes) = file(net, 3);
        let header = header_len(&bytes);
        let lut_start = header - INPUT_LUT_LEN;
        let mut changed = bytes.clone();
        for i in 0..header {
            // Every other value before the table; a few in the table (any
            // table value is valid, only the CRC can catch those).
            let deltas: Vec<u8> = if i < lut_start {
                (1..=255).collect()
            } else {
                vec![1, 0x80, 0xff]
            };
            for d in deltas {
                changed[i] = bytes[i].wrapping_add(d);
                let err = decode_all(&changed).expect_err("a changed header decoded");
                if i < 4 {
                    assert!(matches!(err, Error::BadMagic { .. }), "byte {i}: {err:?}");
                }
            }
            changed[i] = bytes[i];
        }
    }
}

#[test]
fn every_byte_change_anywhere_is_caught_by_the_crc() {
    let (_, bytes) = file(NetId::ResNet, 4);
    let header = header_len(&bytes);
    let mut changed = bytes.clone();
    let mut rng = Rng::new(4);
    for i in header..bytes.len() {
        let d = 1 + rng.below(255) as u8;
        changed[i] = bytes[i].wrapping_add(d);
        let err = decode_all(&changed).expect_err("a changed file decoded");
        if i + 4 < bytes.len() {
            assert!(
                matches!(err, Error::CrcMismatch { .. }),
                "byte {i}: {err:?}"
            );
        }
        changed[i] = bytes[i];
    }
}

#[test]
fn random_bytes_are_rejected() {
    let mut rng = Rng::new(5);
    for _ in 0..20_000 {
        let n = rng.below(600) as usize;
        let mut v = vec![0u8; n];
        for b in &mut v {
            *b = rng.next_u32() as u8;
        }
        // Half of them with a valid preamble, to get past the magic.
        if rng.below(2) == 0 && n >= 5 {
            v[..4].copy_from_slice(&MAGIC);
            v[4] = FORMAT_VERSION as u8;
        }
        assert!(decode_all(&v).is_err());
    }
}

/// Random changes to the records with the CRC fixed up, so that the record
/// parser (not the CRC) meets them: errors or successes, never a panic.
#[test]
fn corrupt_records_with_a_valid_crc_never_panic() {
    let mut rng = Rng::new(6);
    let mut refused = 0;
    for net in NetId::ALL {
        let (_, bytes) = file(net, 6);
        let header = header_len(&bytes);
        let cases = if net == NetId::Inception {
            1_000
        } else {
            3_000
        };
        for case in 0..cases {
            let mut v = bytes.clone();
            let edits = 1 + rng.below(4);
            for _ in 0..edits {
                let i = header + rng.below((v.len() - 4 - header) as u64) as usize;
                v[i] = rng.next_u32() as u8;
            }
            if case % 5 == 0 {
                // Cut or extend the records too.
                let cut = rng.below(64) as usize;
                let body = v.len() - 4;
                if case % 10 == 0 {
                    v.truncate(body - cut);
                } else {
                    v.splice(body..body, (0..cut).map(|k| k as u8));
                }
                v.extend_from_slice(&[0; 4]);
            }
            fix_crc(&mut v);
            refused += decode_all(&v).is_err() as usize;
        }
    }
    // Most random edits land in weights, which any value fits; the rest
    // must have been refused for a reason other than the CRC.
    assert!(refused > 100, "{refused}");
}

fn layer_err(bytes: &[u8]) -> (usize, &'static str, LayerProblem) {
    match decode_all(bytes) {
        Err(Error::Layer {
            index,
            name,
            problem,
        }) => (index, name, problem),
        other => panic!("expected a layer error, got {other:?}"),
    }
}

#[test]
fn bad_records_are_named() {
    let spec = ModelSpec::synthetic(NetId::Inception, 8);
    let at = |i: usize, f: fn(&mut LayerRecord<'_>)| {
        spec.encode_edited(
            |_| {},
            move |j, r| {
                if j == i {
                    f(r)
                }
            },
        )
    };
    assert_eq!(
        layer_err(&at(3, |r| r.name = "incep1.b5_3")),
        (3, "incep1.b5_2", LayerProblem::Name)
    );
    assert_eq!(
        layer_err(&at(3, |r| r.kind = 2)).2,
        LayerProblem::Kind {
            found: 2,
            expected: LayerKind::Conv
        }
    );
    assert_eq!(
        layer_err(&at(3, |r| r.dims[3] = 17)).2,
        LayerProblem::Shape {
            found: [24, 5, 5, 17],
            expected: [24, 5, 5, 16]
        }
    );
    assert_eq!(
        layer_err(&at(3, |r| r.pad = 1)).2,
        LayerProblem::Padding {
            found: 1,
            expected: 2
        }
    );
    assert_eq!(
        layer_err(&at(3, |r| r.weights = &r.weights[1..])),
        (
            3,
            "incep1.b5_2",
            LayerProblem::Length {
                field: Field::Weights,
                found: 24 * 25 * 16 - 1,
                expected: 24 * 25 * 16
            }
        )
    );
    assert_eq!(
        layer_err(&at(0, |r| r.bias = &r.bias[4..])).2,
        LayerProblem::Length {
            field: Field::Bias,
            found: 36,
            expected: 40
        }
    );
    assert_eq!(
        layer_err(&at(16, |r| r.requant = &r.requant[..45])).2,
        LayerProblem::Length {
            field: Field::Requant,
            found: 45,
            expected: 50
        }
    );
    // A negative multiplier and an out-of-range shift in channel 1.
    let bad = |mult: i32, shift: i8| {
        spec.encode_edited(
            |_| {},
            move |j, r| {
                if j == 5 {
                    let mut v = r.requant.to_vec();
                    v[5..9].copy_from_slice(&mult.to_le_bytes());
                    v[9] = shift as u8;
                    r.requant = Vec::leak(v);
                }
            },
        )
    };
    assert_eq!(
        layer_err(&bad(-5, 0)),
        (
            5,
            "incep1.b3_2",
            LayerProblem::Requant {
                channel: 1,
                multiplier: -5,
                shift: 0
            }
        )
    );
    assert_eq!(
        layer_err(&bad(1 << 30, 31)).2,
        LayerProblem::Requant {
            channel: 1,
            multiplier: 1 << 30,
            shift: 31
        }
    );
    for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let bytes = spec.encode_edited(
            |_| {},
            move |j, r| {
                if j == 8 {
                    r.output.scale = scale
                }
            },
        );
        assert_eq!(layer_err(&bytes), (8, "conv2", LayerProblem::Scale));
    }
    assert_eq!(
        layer_err(&at(8, |r| {
            r.output.min = 5;
            r.output.max = 4
        }))
        .2,
        LayerProblem::Range { min: 5, max: 4 }
    );
    // Trailing bytes before the CRC.
    let mut bytes = spec.encode().unwrap();
    let body = bytes.len() - 4;
    bytes.splice(body..body, [0u8; 3]);
    fix_crc(&mut bytes);
    assert_eq!(decode_all(&bytes), Err(Error::TrailingBytes { count: 3 }));
}

#[test]
fn activations_must_match_the_architecture() {
    let base = ModelSpec::synthetic(NetId::ResNet, 9);
    let refuse = |name: &str, output: OutputQuant| {
        let mut spec = base.clone();
        spec.layer_mut(name).unwrap().output = output;
        let err = spec.encode().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Layer {
                    problem: LayerProblem::Activation { .. },
                    ..
                }
            ),
            "{name}: {err:?}"
        );
    };
    // r1.conv1 needs its ReLU; conv2 and the shortcut must not clamp; the
    // add needs its ReLU; fc must not clamp.
    refuse("r1.conv1", OutputQuant::linear(-100));
    refuse("r1.conv2", OutputQuant::relu(3));
    refuse("r1.conv", OutputQuant::relu(3));
    refuse("r2.add", OutputQuant::linear(-100));
    refuse(
        "fc",
        OutputQuant {
            zero_point: 0,
            range: ActRange::new(-100, 100).unwrap(),
        },
    );
    // InceptionNet's conv1 and conv2 may fuse the ReLU that follows their
    // pool, or not.
    let mut spec = ModelSpec::synthetic(NetId::Inception, 9);
    for output in [OutputQuant::linear(-3), OutputQuant::relu(-3)] {
        spec.layer_mut("conv1").unwrap().output = output;
        spec.layer_mut("conv2").unwrap().output = output;
        spec.encode().unwrap();
    }
    spec.layer_mut("conv2").unwrap().output = OutputQuant {
        zero_point: -3,
        range: ActRange::new(0, 127).unwrap(),
    };
    assert!(spec.encode().is_err());
}

#[test]
fn concat_branches_share_their_quantisation() {
    let base = ModelSpec::synthetic(NetId::Inception, 10);
    for (name, index) in [("incep1.b5_2", 3), ("incep2.b3_3", 14), ("incep2.bp", 15)] {
        let mut spec = base.clone();
        spec.layer_mut(name).unwrap().output.zero_point ^= 1;
        let err = spec.encode().unwrap_err();
        assert_eq!(
            err,
            Error::Layer {
                index,
                name: layers::layers(NetId::Inception)[index].name.as_str(),
                problem: LayerProblem::Concat
            }
        );
        let mut spec = base.clone();
        spec.layer_mut(name).unwrap().output_scale *= 1.5;
        assert!(spec.encode().is_err());
    }
    // The reducers and b3_2 are free.
    let mut spec = base.clone();
    spec.layer_mut("incep1.b3_2").unwrap().output.zero_point ^= 1;
    spec.encode().unwrap();
}

#[test]
fn header_errors_are_named() {
    let spec = ModelSpec::synthetic(NetId::ResNet, 11);
    let with = |f: fn(&mut Header<'_>)| decode_all(&spec.encode_edited(f, |_, _| {}));
    assert_eq!(with(|h| h.net = 9), Err(Error::UnknownNetwork { id: 9 }));
    // A file written for other arithmetic is refused by name.
    let old = with(|h| h.opset = OPSET - 1);
    assert_eq!(
        old,
        Err(Error::UnsupportedOpset {
            found: OPSET - 1,
            supported: OPSET
        })
    );
    let msg = old.unwrap_err().to_string();
    assert!(
        msg.contains("op-set 0") && msg.contains("op-set 1"),
        "{msg}"
    );
    assert_eq!(
        with(|h| h.signature ^= 1),
        Err(Error::ShapeSignature {
            net: NetId::ResNet,
            expected: signature(NetId::ResNet),
            found: signature(NetId::ResNet) ^ 1
        })
    );
    assert_eq!(
        with(|h| h.layer_count = 10),
        Err(Error::LayerCount {
            net: NetId::ResNet,
            found: 10,
            expected: 9
        })
    );
    assert_eq!(
        with(|h| h.input_lut = &h.input_lut[1..]),
        Err(Error::InputLut { found: 255 })
    );
    assert_eq!(with(|h| h.input_scale = 0.0), Err(Error::InputScale));
    let mut bytes = spec.encode().unwrap();
    bytes[4] = 1; // a version 1 file (before the op-set)
    assert_eq!(
        decode_all(&bytes),
        Err(Error::UnsupportedVersion {
            found: 1,
            supported: FORMAT_VERSION
        })
    );
    bytes[4] = FORMAT_VERSION as u8;
    bytes[0] = b'X';
    assert!(matches!(decode_all(&bytes), Err(Error::BadMagic { .. })));
    assert_eq!(
        decode_all(&[]),
        Err(Error::Truncated {
            part: Part::Preamble
        })
    );
    let n = header_len(&bytes);
    bytes[0] = MAGIC[0];
    assert_eq!(
        decode_all(&bytes[..n + 3]),
        Err(Error::Truncated { part: Part::Crc })
    );
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(matches!(decode_all(&bytes), Err(Error::CrcMismatch { .. })));
}

#[test]
fn records_iterate_in_table_order() {
    for net in NetId::ALL {
        let (_, bytes) = file(net, 12);
        let f = File::parse(&bytes, Some(net)).unwrap();
        assert_eq!(f.len, bytes.len());
        let names: Vec<&str> = f.records().map(|r| r.unwrap().1.name).collect();
        let table: Vec<&str> = layers(net).iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, table);
    }
}

#[test]
fn input_lut_quantises_the_normalised_pixels() {
    let input = InputSpec::full_range();
    // Pixel 0 is the lowest value and maps to -128; 255 to 127.
    assert_eq!(input.lut[0], -128);
    assert_eq!(input.lut[255], 127);
    for p in 0..=255u8 {
        let real = crate::arch::normalize_pixel(p);
        let deq = input.scale * (input.lut[p as usize] as f32 - input.zero_point as f32);
        assert!((deq - real).abs() <= input.scale * 0.5 + 1e-6, "{p}");
    }
    assert!(input.lut.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn errors_display() {
    let errs = [
        Error::Truncated { part: Part::Header },
        Error::BadMagic { found: *b"abcd" },
        Error::Layer {
            index: 5,
            name: "incep1.b3_2",
            problem: LayerProblem::Length {
                field: Field::Weights,
                found: 3400,
                expected: 3456,
            },
        },
        Error::FloatTensor {
            layer: "fc",
            field: Field::Bias,
            found: None,
            expected: 10,
        },
    ];
    let texts: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        texts[2],
        "layer 5 (incep1.b3_2): weights are 3400 bytes, expected 3456"
    );
    assert!(texts.iter().all(|t| !t.is_empty()));
}

/// The model file budget: an InceptionNet file of at most 110 KB. Every field
/// but the header's varints has a fixed size, so a synthetic model has the
/// size of a trained one.
#[test]
fn files_fit_the_flash_budget() {
    let (_, inc) = file(NetId::Inception, 0);
    let (_, res) = file(NetId::ResNet, 0);
    assert!(inc.len() <= 110_000, "{}", inc.len());
    // Weights, 9 bytes per channel (bias, requant); the rest is the header
    // (with the 256-byte input table) and some 40 bytes per record (name,
    // dims, lengths, output quantisation).
    let overhead = |net: NetId, len: usize| {
        let ls = layers(net);
        let weights: usize = ls.iter().map(|l| l.weight_bytes()).sum();
        let channels: usize = ls
            .iter()
            .map(|l| 4 * l.bias_len() + 5 * l.requant_len())
            .sum();
        (len - weights - channels) as f64 / ls.len() as f64
    };
    assert!(overhead(NetId::Inception, inc.len()) < 64.0);
    assert!(overhead(NetId::ResNet, res.len()) < 64.0);
}
