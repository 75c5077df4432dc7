//! The model decoder on arbitrary bytes: it must return an error or a
//! model, never panic, hang or read out of bounds.
//!
//! Each input is tried three ways: as it is (mostly stopped by the magic,
//! the header checks or the CRC); with a valid CRC trailer appended over
//! it; and as edits to a valid model file (4 bytes per edit: a 24-bit
//! offset and a value; an odd first byte also cuts the file), with the CRC
//! fixed up, so the fuzzer reaches every check of the record parser from
//! the first run. A model that decodes must round-trip through the owned
//! spec, byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::model::{crc32, Layers, ModelSpec};
use shared::nets::Model;
use shared::NetId;
use std::sync::OnceLock;

fn check(bytes: &[u8]) {
    let any = Model::decode(bytes);
    // The typed decoders agree with the untyped checks.
    assert_eq!(any.is_ok(), Layers::check_all(bytes).is_ok());
    if any.is_ok() {
        // What decodes round-trips through the owned spec. (The forward
        // pass is not run: its kernels take any validated parameters, and
        // under instrumentation it would cost most of the fuzzing time.)
        let spec = ModelSpec::decode(bytes).expect("a decodable model converts");
        assert_eq!(spec.encode().expect("and encodes"), bytes);
    }
}

/// Valid files of every network, without their CRC trailers.
fn valid(net: usize) -> &'static [u8] {
    static FILES: OnceLock<[Vec<u8>; NetId::COUNT]> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        NetId::ALL.map(|n| {
            let mut v = ModelSpec::synthetic(n, 0)
                .encode()
                .expect("a synthetic model encodes");
            v.truncate(v.len() - 4);
            v
        })
    });
    &files[net % NetId::COUNT]
}

fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&with_crc(data.to_vec()));
    if let Some((&first, edits)) = data.split_first() {
        let mut body = valid(first as usize >> 1).to_vec();
        let mut edits = edits.chunks_exact(4);
        if first & 1 == 1 {
            if let Some(e) = edits.next() {
                let cut = u32::from_le_bytes([e[0], e[1], e[2], 0]) as usize % (body.len() + 1);
                body.truncate(cut);
            }
        }
        for e in edits {
            if body.is_empty() {
                break;
            }
            let at = u32::from_le_bytes([e[0], e[1], e[2], 0]) as usize % body.len();
            body[at] = e[3];
        }
        check(&with_crc(body));
    }
});
