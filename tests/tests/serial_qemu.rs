//! The firmware under QEMU, driven over its serial link (loopback TCP) by
//! the same client `host classify --port` uses: its predictions and logits
//! must equal the host's `shared` reference exactly, and no bad frame may
//! stop it from serving.

use device::qemu::Session;
use device::serial::Reply;
use device::Error;
use shared::arch::IMAGE_PIXELS;
use shared::protocol::{encode, ErrorCode, ModelStatus, Request, MAX_ENCODED, MAX_FRAME};
use shared::NetId;
use tests::{agree_on_test_images, qemu_elf, reference, start, test_set};

/// Test images per network in the default run (the ignored test runs all).
const IMAGES: usize = 1_000;

#[test]
fn inception_agrees_with_the_host_on_1000_test_images() {
    let mut session = start(qemu_elf());
    agree_on_test_images(&mut session, NetId::Inception, IMAGES);
}

#[test]
fn resnet_agrees_with_the_host_on_1000_test_images() {
    let mut session = start(qemu_elf());
    agree_on_test_images(&mut session, NetId::ResNet, IMAGES);
}

#[test]
fn resnet_identity_agrees_with_the_host_on_1000_test_images() {
    let mut session = start(qemu_elf());
    agree_on_test_images(&mut session, NetId::ResNetIdentity, IMAGES);
}

#[test]
#[ignore = "all 10,000 test images: about 11 minutes under QEMU"]
fn inception_agrees_with_the_host_on_all_10000_test_images() {
    let mut session = start(qemu_elf());
    agree_on_test_images(&mut session, NetId::Inception, test_set().len());
}

#[test]
#[ignore = "all 10,000 test images: about 8 minutes under QEMU"]
fn resnet_agrees_with_the_host_on_all_10000_test_images() {
    let mut session = start(qemu_elf());
    agree_on_test_images(&mut session, NetId::ResNet, test_set().len());
}

#[test]
#[ignore = "all 10,000 test images: about 9 minutes under QEMU"]
fn resnet_identity_agrees_with_the_host_on_all_10000_test_images() {
    let mut session = start(qemu_elf());
    agree_on_test_images(&mut session, NetId::ResNetIdentity, test_set().len());
}

/// The next reply must be `Error(code)`, and a correct classification must
/// follow it.
fn answered_with(session: &mut Session, code: ErrorCode, what: &str) {
    match session.client().receive() {
        Ok(Reply::Error(got)) => assert_eq!(got, code, "{what}: error code"),
        other => panic!("{what}: expected Error({code:?}), got {other:?}"),
    }
    served_correctly(session, what);
}

/// A correct classification, checked against the host.
fn served_correctly(session: &mut Session, after: &str) {
    let image = test_set().image(0);
    let want = reference(NetId::ResNet).predict(image);
    let got = session
        .client()
        .classify(NetId::ResNet, image)
        .unwrap_or_else(|e| panic!("classification after {after}: {e}"));
    assert_eq!(
        (got.class, got.logits),
        (want.class, want.logits),
        "classification after {after}"
    );
}

fn classify_frame(net: u8, pixels: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    encode(&Request::Classify { net, pixels }, &mut buf)
        .expect("fits")
        .to_vec()
}

#[test]
fn bad_frames_are_answered_with_errors_and_serving_goes_on() {
    let mut session = start(qemu_elf());
    let image = test_set().image(0);

    // Garbage: 'h' (104) promises a COBS block longer than the frame.
    session.client().send_raw(b"hello, firmware!\0").unwrap();
    answered_with(&mut session, ErrorCode::NotCobs, "garbage bytes");

    // A frame cut short inside a COBS block: the frame's first block
    // (tag 2 and net 0) loses its last byte.
    let full = classify_frame(0, image);
    assert_eq!(full[0], 2, "the first COBS block is 2 bytes long");
    session.client().send_raw(&[full[0], 0]).unwrap();
    answered_with(
        &mut session,
        ErrorCode::NotCobs,
        "a frame cut inside a COBS block",
    );

    // A frame cut short after its first block (a COBS block is as long as
    // its code byte says): valid COBS, the message ends after the tag.
    let mut frame = full[..full[0] as usize].to_vec();
    frame.push(0);
    session.client().send_raw(&frame).unwrap();
    answered_with(
        &mut session,
        ErrorCode::Truncated,
        "a frame cut at a block boundary",
    );

    // An oversized frame: more bytes than any frame may have before the delimiter.
    let mut big = vec![0x42u8; MAX_ENCODED + 500];
    big.push(0);
    session.client().send_raw(&big).unwrap();
    answered_with(&mut session, ErrorCode::Oversized, "an oversized frame");

    // A wrong image length.
    session
        .client()
        .send_raw(&classify_frame(
            NetId::ResNet as u8,
            &image[..IMAGE_PIXELS - 1],
        ))
        .unwrap();
    answered_with(&mut session, ErrorCode::ImageLength, "783 pixels");
    session
        .client()
        .send_raw(&classify_frame(NetId::ResNet as u8, &[]))
        .unwrap();
    answered_with(&mut session, ErrorCode::ImageLength, "no pixels");

    // An unknown network id: the first after the known ones.
    session
        .client()
        .send_raw(&classify_frame(NetId::COUNT as u8, image))
        .unwrap();
    answered_with(
        &mut session,
        ErrorCode::UnknownNetwork,
        "the first unknown network id",
    );

    // The client reports the firmware's errors as such.
    let err = session
        .client()
        .classify_request(&Request::Classify {
            net: 255,
            pixels: image,
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Device {
                code: ErrorCode::UnknownNetwork
            }
        ),
        "{err}"
    );
    served_correctly(&mut session, "a refused request");

    let run = session.stop().unwrap();
    let warnings = run
        .log
        .iter()
        .filter(|l| l.level.as_deref() == Some("warn"))
        .count();
    assert_eq!(
        warnings, 8,
        "one warning per refused request: {:#?}",
        run.log
    );
}

#[test]
fn info_reports_the_models_and_the_stack_high_water_mark() {
    let mut session = start(qemu_elf());
    let info = session.client().info().unwrap();
    assert_eq!(info.board, "qemu-netduinoplus2");
    for net in NetId::ALL {
        let bytes = reference(net).bytes().len() as u32;
        assert!(
            matches!(info.models[net as usize], ModelStatus::Loaded { bytes: b, .. } if b == bytes),
            "{:?}",
            info.models
        );
    }
    assert!(
        info.stack_used > 0 && info.stack_used < info.stack_bytes,
        "{info:?}"
    );
    assert_eq!(info.arena_bytes as usize, shared::nets::ARENA_BYTES);
}

#[test]
fn a_profile_times_every_layer_of_every_network() {
    let mut session = start(qemu_elf());
    let image = test_set().image(1);
    for net in NetId::ALL {
        let profile = session.client().profile(net, image).unwrap();
        let want = reference(net).predict(image);
        assert_eq!(
            (profile.prediction.class, profile.prediction.logits),
            (want.class, want.logits)
        );
        let names: Vec<&str> = profile.layers.iter().map(|l| l.name.as_str()).collect();
        let plan_names: Vec<&str> = shared::nets::plan(net)
            .steps
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(
            names,
            plan_names,
            "one entry per step of the {} plan",
            net.name()
        );
        let sum: u64 = profile.layers.iter().map(|l| u64::from(l.cost)).sum();
        let total = u64::from(profile.prediction.cost);
        // The layers add up to the whole pass, within 1% (the probe's own
        // reads; inlining around the probe calls differs a little).
        assert!(
            sum.abs_diff(total) * 100 <= total,
            "layers {sum} vs pass {total}"
        );
        // The same pass without the probe costs the same, within 0.1% (the
        // probe's reads, and inlining decided differently with it).
        let plain = session.client().classify(net, image).unwrap().cost as u64;
        assert!(plain.abs_diff(total) * 1000 < plain, "{plain} vs {total}");
    }
}

#[test]
fn a_corrupt_model_is_refused_and_the_other_networks_still_served() {
    // The firmware with one byte of the embedded InceptionNet file flipped
    // (found in the ELF by its contents), so that its CRC no longer matches.
    let elf = qemu_elf();
    let mut bytes = std::fs::read(elf).unwrap();
    let model = reference(NetId::Inception).bytes().to_vec();
    let at = bytes
        .windows(model.len())
        .position(|w| w == model)
        .expect("the model file is embedded verbatim");
    bytes[at + model.len() / 2] ^= 0x01;
    let corrupt = elf.with_file_name("firmware-qemu-corrupt-inception");
    std::fs::write(&corrupt, &bytes).unwrap();

    let mut session = start(&corrupt);
    let info = session.client().info().unwrap();
    assert_eq!(info.models[NetId::Inception as usize], ModelStatus::Refused);
    for net in [NetId::ResNet, NetId::ResNetIdentity] {
        assert!(matches!(
            info.models[net as usize],
            ModelStatus::Loaded { .. }
        ));
    }
    let image = test_set().image(0);
    let err = session
        .client()
        .classify(NetId::Inception, image)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Device {
                code: ErrorCode::ModelUnavailable
            }
        ),
        "{err}"
    );
    served_correctly(&mut session, "a request for the refused network");

    let run = session.stop().unwrap();
    let refused = run
        .log
        .iter()
        .find(|l| l.message.starts_with("model inception refused: "))
        .unwrap_or_else(|| panic!("no refusal in the log: {:#?}", run.log));
    assert_eq!(refused.level.as_deref(), Some("error"));
    assert!(
        refused.message.contains("CRC mismatch"),
        "{}",
        refused.message
    );
    assert!(run
        .log
        .iter()
        .any(|l| l.message == "self-test inception: skipped, the model was refused"));
    assert!(run
        .log
        .iter()
        .any(|l| l.message.starts_with("self-test resnet: ") && l.message.contains("correct")));
}
