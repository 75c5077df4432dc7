//! The server on the host, through an in-memory link: every error code,
//! frames split at every byte boundary, several frames in one read, a frame
//! that never ends, a request that arrives while an answer is being
//! written; each bad frame followed by a correct answer.

use super::*;
use crate::model::ModelSpec;
use crate::nets::plan;
use crate::protocol::{Fault, MAX_ENCODED};
use core::cell::Cell;
use std::boxed::Box;
use std::collections::VecDeque;
use std::string::String;
use std::vec::Vec;

/// What a read of the in-memory link returns next.
enum Chunk {
    Bytes(Vec<u8>),
    /// A receive error (bytes lost).
    Error,
}

/// A byte stream with scripted input and captured output. Reads return a
/// chunk (or what a smaller buffer leaves of it); when the input is over
/// they return no bytes, which ends [`serve`]. `inject` is added to the
/// input when the first response is written: a request arriving while the
/// firmware is still answering.
struct MemLink {
    input: VecDeque<Chunk>,
    output: Vec<u8>,
    inject: Option<Vec<u8>>,
}

impl embedded_io::ErrorType for MemLink {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for MemLink {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match self.input.pop_front() {
            None => Ok(0),
            Some(Chunk::Error) => Err(embedded_io::ErrorKind::Other),
            Some(Chunk::Bytes(mut bytes)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                if n < bytes.len() {
                    self.input.push_front(Chunk::Bytes(bytes.split_off(n)));
                }
                Ok(n)
            }
        }
    }
}

impl embedded_io::Write for MemLink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        // Written one byte at a time, as a UART does: the injected request
        // arrives in the middle of the answer.
        let Some(&b) = buf.first() else {
            return Ok(0);
        };
        self.output.push(b);
        if self.output.len() > 8 {
            if let Some(bytes) = self.inject.take() {
                self.input.push_back(Chunk::Bytes(bytes));
            }
        }
        Ok(1)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Counts 7 per reading.
struct Ticks(Cell<u32>);

impl CostCounter for Ticks {
    const UNIT: CostUnit = CostUnit::Instructions;
    fn now(&self) -> u32 {
        self.0.set(self.0.get().wrapping_add(7));
        self.0.get()
    }
}

#[derive(Default)]
struct Count {
    refused: Vec<ErrorCode>,
    send_failed: usize,
}

impl Log for Count {
    fn refused(&mut self, code: ErrorCode) {
        self.refused.push(code);
    }
    fn send_failed(&mut self) {
        self.send_failed += 1;
    }
}

type Reply = Response<String>;

/// A synthetic model file of every network (the `broken` one's CRC spoilt).
fn models(broken: Option<NetId>) -> Models<'static> {
    let files = NetId::ALL.map(|net| {
        let mut bytes = ModelSpec::synthetic(net, 5).encode().unwrap();
        if Some(net) == broken {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 1;
        }
        &*Vec::leak(bytes)
    });
    let mut models = Models::new(files);
    for net in NetId::ALL {
        assert_eq!(models.load(net).is_ok(), Some(net) != broken);
    }
    models
}

/// Serves `input` (plus `inject`) and returns the responses after the
/// announcement, and what was logged.
fn serve_with(
    models: &Models<'static>,
    input: Vec<Chunk>,
    inject: Option<Vec<u8>>,
) -> (Vec<Reply>, Count) {
    let mut link = MemLink {
        input: input.into(),
        output: Vec::new(),
        inject,
    };
    let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
    let mut service = Service {
        models,
        arena: &mut arena,
        counter: Ticks(Cell::new(0)),
        board: "test",
        clock_hz: 1_000,
        stack: || (4096, 512),
        crash: None,
    };
    let mut log = Count::default();
    serve(&mut link, &mut service, &mut log);
    let mut replies: Vec<Reply> = link
        .output
        .split_mut(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| decode::<Reply>(f).unwrap())
        .collect();
    assert_eq!(
        replies.remove(0),
        Reply::Ready {
            version: PROTOCOL_VERSION,
            nonce: 0
        },
        "the announcement comes first"
    );
    (replies, log)
}

fn frame(request: &Request<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    encode(request, &mut buf).unwrap().to_vec()
}

fn image(seed: u8) -> [u8; IMAGE_PIXELS] {
    core::array::from_fn(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
}

/// The host's own answer for `net` on `pixels`.
fn expected(models: &Models<'static>, net: NetId, pixels: &[u8; IMAGE_PIXELS]) -> Prediction {
    let model = Model::decode(models.file(net)).unwrap();
    let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
    crate::nets::classify(&model, pixels, &mut arena, &mut ())
}

fn is_prediction(reply: &Reply, want: Prediction) -> bool {
    matches!(reply, Reply::Prediction(c) if c.class == want.class && c.logits == want.logits && c.cost > 0)
}

#[test]
fn every_request_is_answered() {
    let m = models(None);
    let px = image(3);
    let mut input: Vec<u8> = frame(&Request::Ping { nonce: 77 });
    input.extend(frame(&Request::Info));
    for net in NetId::ALL {
        input.extend(frame(&Request::classify(net, &px)));
        input.extend(frame(&Request::profile(net, &px)));
    }
    // One byte per read, as from a UART.
    let chunks = input.into_iter().map(|b| Chunk::Bytes(vec![b])).collect();
    let (replies, log) = serve_with(&m, chunks, None);
    assert_eq!(
        replies[0],
        Reply::Ready {
            version: PROTOCOL_VERSION,
            nonce: 77
        }
    );
    let Reply::Info(info) = &replies[1] else {
        panic!("{:?}", replies[1])
    };
    assert_eq!(
        (
            info.board.as_str(),
            info.clock_hz,
            info.stack_bytes,
            info.stack_used
        ),
        ("test", 1_000, 4096, 512)
    );
    assert_eq!(info.arena_bytes as usize, ARENA_BYTES);
    for net in NetId::ALL {
        let file = m.file(net);
        assert_eq!(
            info.models[net as usize],
            ModelStatus::Loaded {
                bytes: file.len() as u32,
                crc: crc_trailer(file)
            }
        );
    }
    for (i, net) in NetId::ALL.into_iter().enumerate() {
        let want = expected(&m, net, &px);
        assert!(
            is_prediction(&replies[2 + 2 * i], want),
            "{net:?}: {:?}",
            replies[2 + 2 * i]
        );
        let Reply::Profile(p) = &replies[3 + 2 * i] else {
            panic!("{:?}", replies[3 + 2 * i])
        };
        assert_eq!(
            (p.prediction.class, p.prediction.logits),
            (want.class, want.logits)
        );
        let names: Vec<&str> = p.layers.iter().map(|l| l.name.as_str()).collect();
        let steps: Vec<&str> = plan(net).steps.iter().map(|s| s.name()).collect();
        assert_eq!(names, steps);
    }
    assert!(log.refused.is_empty() && log.send_failed == 0);
}

#[test]
fn every_error_code_is_answered_and_serving_goes_on() {
    let m = models(Some(NetId::Inception));
    let px = image(5);
    let good = frame(&Request::classify(NetId::ResNet, &px));
    let classify = |net: u8, pixels: &[u8]| frame(&Request::Classify { net, pixels });
    let full = classify(NetId::ResNet as u8, &px);
    let mut cut = full[..full[0] as usize].to_vec();
    cut.push(0);
    let mut unknown_tag = [0u8; MAX_FRAME];
    let unknown_tag = postcard::to_slice_cobs(&[9u8], &mut unknown_tag)
        .unwrap()
        .to_vec();
    let cases: Vec<(ErrorCode, Vec<Chunk>)> = vec![
        (
            ErrorCode::NotCobs,
            vec![Chunk::Bytes(b"hello, firmware!\0".to_vec())],
        ),
        (ErrorCode::NotCobs, vec![Chunk::Bytes(vec![full[0], 0])]),
        (ErrorCode::Truncated, vec![Chunk::Bytes(cut)]),
        (ErrorCode::Malformed, vec![Chunk::Bytes(unknown_tag)]),
        (
            ErrorCode::Oversized,
            vec![Chunk::Bytes(
                [vec![0x42; MAX_ENCODED + 10], vec![0]].concat(),
            )],
        ),
        (
            ErrorCode::Link,
            vec![
                Chunk::Bytes(full[..10].to_vec()),
                Chunk::Error,
                Chunk::Bytes(full[10..].to_vec()),
            ],
        ),
        (
            ErrorCode::UnknownNetwork,
            vec![Chunk::Bytes(classify(NetId::COUNT as u8, &px))],
        ),
        (
            ErrorCode::ImageLength,
            vec![Chunk::Bytes(classify(0, &px[..IMAGE_PIXELS - 1]))],
        ),
        (ErrorCode::ImageLength, vec![Chunk::Bytes(classify(0, &[]))]),
        (
            ErrorCode::ModelUnavailable,
            vec![Chunk::Bytes(classify(NetId::Inception as u8, &px))],
        ),
        (
            ErrorCode::Unsupported,
            vec![Chunk::Bytes(frame(&Request::Crash(FaultKind::Panic)))],
        ),
    ];
    let want = expected(&m, NetId::ResNet, &px);
    let mut codes = Vec::new();
    for (code, mut chunks) in cases {
        codes.push(code);
        chunks.push(Chunk::Bytes(good.clone()));
        let (replies, log) = serve_with(&m, chunks, None);
        assert_eq!(replies.len(), 2, "{code:?}: {replies:?}");
        assert_eq!(replies[0], Reply::Error(code));
        assert!(
            is_prediction(&replies[1], want),
            "after {code:?}: {:?}",
            replies[1]
        );
        assert_eq!(log.refused, [code]);
    }
    // Every code the protocol has.
    for code in [
        ErrorCode::NotCobs,
        ErrorCode::Truncated,
        ErrorCode::Malformed,
        ErrorCode::Oversized,
        ErrorCode::Link,
        ErrorCode::UnknownNetwork,
        ErrorCode::ImageLength,
        ErrorCode::ModelUnavailable,
        ErrorCode::Unsupported,
    ] {
        assert!(codes.contains(&code), "{code:?}");
    }
}

#[test]
fn a_frame_split_at_any_byte_is_one_request() {
    let m = models(None);
    let px = image(9);
    let f = frame(&Request::classify(NetId::ResNetIdentity, &px));
    let want = expected(&m, NetId::ResNetIdentity, &px);
    for k in 1..f.len() {
        let chunks = vec![Chunk::Bytes(f[..k].to_vec()), Chunk::Bytes(f[k..].to_vec())];
        let (replies, _) = serve_with(&m, chunks, None);
        assert_eq!(replies.len(), 1, "split at {k}");
        assert!(
            is_prediction(&replies[0], want),
            "split at {k}: {:?}",
            replies[0]
        );
    }
}

#[test]
fn frames_back_to_back_in_one_read_are_answered_in_order() {
    let m = models(None);
    let (a, b) = (image(1), image(2));
    let mut bytes = frame(&Request::classify(NetId::ResNet, &a));
    bytes.extend(frame(&Request::Ping { nonce: 5 }));
    bytes.push(0); // an empty frame: ignored
    bytes.extend(frame(&Request::classify(NetId::Inception, &b)));
    // The reads take 64 bytes at a time, frames and their ends mixed.
    let (replies, log) = serve_with(&m, vec![Chunk::Bytes(bytes)], None);
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert!(is_prediction(&replies[0], expected(&m, NetId::ResNet, &a)));
    assert_eq!(
        replies[1],
        Reply::Ready {
            version: PROTOCOL_VERSION,
            nonce: 5
        }
    );
    assert!(is_prediction(
        &replies[2],
        expected(&m, NetId::Inception, &b)
    ));
    assert!(log.refused.is_empty());
}

#[test]
fn a_frame_that_never_ends_is_refused_once_then_serving_goes_on() {
    let m = models(None);
    // Ten times the longest frame without a delimiter, in many reads.
    let chunks: Vec<Chunk> = (0..10 * MAX_ENCODED / 100)
        .map(|_| Chunk::Bytes(vec![0x11; 100]))
        .chain([
            Chunk::Bytes(vec![0]),
            Chunk::Bytes(frame(&Request::Ping { nonce: 9 })),
        ])
        .collect();
    let (replies, log) = serve_with(&m, chunks, None);
    assert_eq!(
        replies,
        [
            Reply::Error(ErrorCode::Oversized),
            Reply::Ready {
                version: PROTOCOL_VERSION,
                nonce: 9
            }
        ]
    );
    assert_eq!(log.refused, [ErrorCode::Oversized]);
}

#[test]
fn a_request_arriving_while_an_answer_is_written_is_answered_next() {
    let m = models(None);
    let px = image(4);
    let first = frame(&Request::profile(NetId::Inception, &px));
    let second = frame(&Request::classify(NetId::ResNet, &px));
    // The second request arrives during the first's answer (after the
    // announcement and a few bytes of the profile).
    let (replies, _) = serve_with(&m, vec![Chunk::Bytes(first)], Some(second));
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        matches!(&replies[0], Reply::Profile(p) if p.prediction.class == expected(&m, NetId::Inception, &px).class)
    );
    assert!(is_prediction(&replies[1], expected(&m, NetId::ResNet, &px)));
}

#[test]
fn a_crash_request_calls_the_builds_crash() {
    fn crash(how: FaultKind) -> ! {
        std::panic::panic_any(how)
    }
    let m = models(None);
    let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
    let mut service = Service {
        models: &m,
        arena: &mut arena,
        counter: Ticks(Cell::new(0)),
        board: "test",
        clock_hz: 1,
        stack: || (0, 0),
        crash: Some(crash),
    };
    for how in [
        FaultKind::Panic,
        FaultKind::HardFault,
        FaultKind::StackOverflow,
    ] {
        let caught = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            service.answer(Ok(Request::Crash(how)))
        }));
        assert_eq!(*caught.unwrap_err().downcast::<FaultKind>().unwrap(), how);
    }
    // How the host shows a fault report.
    let f = Fault {
        kind: FaultKind::HardFault,
        pc: 0x0800_1234,
        address: 0x1fff_fff0,
        message: "CFSR 0x00008200",
    };
    assert_eq!(
        f.to_string(),
        "HardFault at PC 0x08001234, address 0x1ffffff0: CFSR 0x00008200"
    );
}
