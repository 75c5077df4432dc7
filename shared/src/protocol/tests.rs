//! Round trips of every message, the sizes the constants promise, and every
//! kind of bad frame: garbage, truncation, oversize, unknown tags, link
//! errors, and random streams.

use super::*;
use crate::nets::plan;

/// A test image whose pixels cover every byte value (zeros included, so
/// COBS has blocks to split).
fn image() -> [u8; IMAGE_PIXELS] {
    core::array::from_fn(|i| (i * 7 % 256) as u8)
}

/// The postcard bytes of `msg` (no framing).
fn raw<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut buf = [0u8; 2 * MAX_MESSAGE];
    postcard::to_slice(msg, &mut buf).expect("fits").to_vec()
}

/// `bytes` COBS-encoded and delimited: a frame around any payload.
fn cobs_frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; cobs::max_encoding_length(bytes.len())];
    let n = cobs::encode(bytes, &mut out);
    out.truncate(n);
    out.push(0);
    out
}

fn frame_of<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    encode(msg, &mut buf).expect("message fits").to_vec()
}

/// Feeds `stream` to a fresh deframer and decodes every frame as `T`
/// (owned via `f`, since frames borrow the deframer).
fn decode_stream<T: for<'a> Deserialize<'a>>(stream: &[u8]) -> Vec<Result<T, ErrorCode>> {
    let mut d = Deframer::<MAX_ENCODED>::new();
    let mut out = Vec::new();
    for &b in stream {
        if let Some(frame) = d.push(b) {
            out.push(frame.and_then(decode::<T>));
        }
    }
    out
}

/// Like [`decode_stream`] for requests, which borrow their pixels: each
/// result is mapped to something owned by `f`.
fn requests<R>(stream: &[u8], mut f: impl FnMut(Result<Request<'_>, ErrorCode>) -> R) -> Vec<R> {
    let mut d = Deframer::<MAX_ENCODED>::new();
    let mut out = Vec::new();
    for &b in stream {
        if let Some(frame) = d.push(b) {
            out.push(f(frame.and_then(decode::<Request<'_>>)));
        }
    }
    out
}

fn round_trip_request(req: Request<'_>) {
    let frame = frame_of(&req);
    assert_eq!(frame.last(), Some(&0), "a frame ends with its delimiter");
    assert!(
        !frame[..frame.len() - 1].contains(&0),
        "COBS removes every 0"
    );
    let got = requests(&frame, |r| r.map(|r| format!("{r:?}")));
    assert_eq!(got, vec![Ok(format!("{req:?}"))]);
}

fn round_trip_response(resp: Response<&str>) {
    let mut frame = frame_of(&resp);
    let n = frame.len() - 1;
    let decoded: Response<&str> = decode(&mut frame[..n]).expect("decodes");
    assert_eq!(decoded, resp);
    // The host keeps responses with owned strings: same wire format.
    let mut frame = frame_of(&resp);
    let owned: Response<String> = decode(&mut frame[..n]).expect("decodes as owned");
    assert_eq!(format!("{owned:?}"), format!("{resp:?}"));
}

/// The longest step name of any plan, to fill a profile to capacity.
fn longest_name() -> &'static str {
    NetId::ALL
        .iter()
        .flat_map(|&net| plan(net).steps)
        .map(|s| s.name())
        .max_by_key(|n| n.len())
        .unwrap_or("")
}

fn full_profile() -> Profile<&'static str> {
    let name = longest_name();
    let mut layers = heapless::Vec::new();
    for _ in 0..MAX_LAYERS {
        layers
            .push(LayerCost {
                name,
                cost: u32::MAX,
            })
            .expect("capacity");
    }
    Profile {
        prediction: Classification {
            class: 9,
            logits: [i8::MIN; CLASSES],
            cost: u32::MAX,
        },
        layers,
    }
}

#[test]
fn every_request_round_trips() {
    let img = image();
    round_trip_request(Request::Ping { nonce: 0 });
    round_trip_request(Request::Ping { nonce: u32::MAX });
    round_trip_request(Request::Info);
    for net in NetId::ALL {
        round_trip_request(Request::classify(net, &img));
        round_trip_request(Request::profile(net, &img));
    }
    // Lengths and ids the firmware refuses still travel intact.
    round_trip_request(Request::Classify {
        net: 200,
        pixels: &img[..3],
    });
}

#[test]
fn every_response_round_trips() {
    round_trip_response(Response::Ready {
        version: PROTOCOL_VERSION,
        nonce: 0xdead_beef,
    });
    round_trip_response(Response::Info(Info {
        board: "qemu-netduinoplus2",
        version: PROTOCOL_VERSION,
        clock_hz: 168_000_000,
        cost_unit: CostUnit::Cycles,
        models: [
            ModelStatus::Loaded {
                bytes: 100_000,
                crc: 0x1234_5678,
            },
            ModelStatus::Refused,
            ModelStatus::Loaded {
                bytes: 40_000,
                crc: 0x9abc_def0,
            },
        ],
        arena_bytes: 17_568,
        stack_bytes: 100_000,
        stack_used: 3_000,
    }));
    round_trip_response(Response::Prediction(Classification {
        class: 7,
        logits: [-128, -1, 0, 1, 127, 5, 6, 7, 8, 9],
        cost: 12_345_678,
    }));
    round_trip_response(Response::Profile(full_profile()));
    for code in [
        ErrorCode::NotCobs,
        ErrorCode::Truncated,
        ErrorCode::Malformed,
        ErrorCode::Oversized,
        ErrorCode::Link,
        ErrorCode::UnknownNetwork,
        ErrorCode::ImageLength,
        ErrorCode::ModelUnavailable,
    ] {
        round_trip_response(Response::Error(code));
    }
}

#[test]
fn the_largest_messages_fit_max_message() {
    let img = image();
    let classify = raw(&Request::classify(NetId::Inception, &img));
    // tag, net, varint 784 (2 bytes), pixels: the wire format is pinned.
    assert_eq!(&classify[..4], &[2, 0, 0x90, 0x06]);
    assert_eq!(classify.len(), 4 + IMAGE_PIXELS);
    let profile = raw(&Response::Profile(full_profile()));
    assert!(classify.len() <= MAX_MESSAGE && profile.len() <= MAX_MESSAGE);
    // The capacity covers every network's plan.
    assert!(NetId::ALL
        .iter()
        .all(|&net| plan(net).steps.len() <= MAX_LAYERS));
}

#[test]
fn one_stream_carries_many_frames_and_empty_frames_are_ignored() {
    let img = image();
    let mut stream = vec![0, 0];
    stream.extend(frame_of(&Request::Ping { nonce: 1 }));
    stream.push(0);
    stream.extend(frame_of(&Request::classify(NetId::ResNet, &img)));
    stream.extend(frame_of(&Request::Info));
    let got = requests(&stream, |r| r.map(|r| format!("{r:?}")));
    let want: Vec<Result<String, ErrorCode>> = vec![
        Ok(format!("{:?}", Request::Ping { nonce: 1 })),
        Ok(format!("{:?}", Request::classify(NetId::ResNet, &img))),
        Ok(format!("{:?}", Request::Info)),
    ];
    assert_eq!(got, want);
}

#[test]
fn garbage_is_not_cobs_and_the_next_frame_decodes() {
    // 'h' (104) promises 103 more bytes than the frame has.
    let mut stream = b"hello, firmware!".to_vec();
    stream.push(0);
    stream.extend(frame_of(&Request::Info));
    let got = requests(&stream, |r| r.map(|r| format!("{r:?}")));
    assert_eq!(got, vec![Err(ErrorCode::NotCobs), Ok("Info".to_string())]);
}

#[test]
fn a_message_cut_short_is_truncated_and_a_frame_cut_inside_a_block_is_not_cobs() {
    let img = image();
    let msg = raw(&Request::classify(NetId::Inception, &img));
    // The message cut in half, then framed properly: COBS is fine, postcard
    // runs out of bytes.
    let cut_message = cobs_frame(&msg[..msg.len() / 2]);
    // The frame cut inside its first COBS block (tag 2, net 0: the block
    // code 2 promises one more byte than is left).
    let full = frame_of(&Request::classify(NetId::Inception, &img));
    let cut_frame = [full[0], 0];
    assert_eq!(full[0], 2, "first block: the tag, then the zero net id");
    let mut stream = cut_message;
    stream.extend_from_slice(&cut_frame);
    stream.extend(frame_of(&Request::Ping { nonce: 5 }));
    let got = requests(&stream, |r| r.map(|r| format!("{r:?}")));
    assert_eq!(
        got,
        vec![
            Err(ErrorCode::Truncated),
            Err(ErrorCode::NotCobs),
            Ok("Ping { nonce: 5 }".to_string())
        ]
    );
}

#[test]
fn an_oversized_frame_is_dropped_up_to_its_delimiter() {
    let mut stream = vec![0x55; MAX_ENCODED + 100];
    stream.push(0);
    stream.extend(frame_of(&Request::Info));
    let got = requests(&stream, |r| r.map(|r| format!("{r:?}")));
    assert_eq!(got, vec![Err(ErrorCode::Oversized), Ok("Info".to_string())]);
    // A frame of exactly MAX_ENCODED bytes is held, and decoded (here it is
    // just garbage: the last block 0x55 overruns the frame).
    let mut exact = vec![0x55; MAX_ENCODED];
    exact.push(0);
    assert_eq!(
        requests(&exact, |r| r.err()),
        vec![Some(ErrorCode::NotCobs)]
    );
}

#[test]
fn unknown_tags_and_trailing_bytes_are_malformed() {
    let tag = cobs_frame(&[9]);
    let mut trailing = raw(&Request::Info);
    trailing.push(0x42);
    let trailing = cobs_frame(&trailing);
    let mut stream = tag;
    stream.extend(trailing);
    assert_eq!(
        requests(&stream, |r| r.err()),
        vec![Some(ErrorCode::Malformed); 2]
    );
}

#[test]
fn a_link_error_spoils_only_the_frame_in_progress() {
    let mut d = Deframer::<MAX_ENCODED>::new();
    let frame = frame_of(&Request::Info);
    for &b in &frame[..frame.len() - 1] {
        assert!(d.push(b).is_none());
    }
    d.link_error();
    assert_eq!(d.push(0).map(|r| r.err()), Some(Some(ErrorCode::Link)));
    let mut last = None;
    for &b in &frame {
        if let Some(r) = d.push(b) {
            last = Some(r.map(|f| decode::<Request<'_>>(f).map(|r| format!("{r:?}"))));
        }
    }
    assert_eq!(last, Some(Ok(Ok("Info".to_string()))));
}

#[test]
fn responses_decode_on_the_host_side_of_the_same_deframer() {
    let mut stream = frame_of(&Response::<&str>::Ready {
        version: PROTOCOL_VERSION,
        nonce: 0,
    });
    stream.extend(frame_of(&Response::<&str>::Error(ErrorCode::ImageLength)));
    let got = decode_stream::<ErrorOrReady>(&stream);
    assert_eq!(got, vec![Ok(ErrorOrReady::Ready), Ok(ErrorOrReady::Error)]);
}

/// An owned view of a [`Response`] for [`decode_stream`].
#[derive(Debug, PartialEq)]
enum ErrorOrReady {
    Ready,
    Error,
}

impl<'de> Deserialize<'de> for ErrorOrReady {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Response::<&str>::deserialize(d)? {
            Response::Ready { .. } => Ok(ErrorOrReady::Ready),
            Response::Error(_) => Ok(ErrorOrReady::Error),
            _ => Err(serde::de::Error::custom("unexpected response")),
        }
    }
}

#[test]
fn random_streams_never_panic_and_every_frame_is_answered() {
    let mut rng = crate::testutil::Rng::new(0x1234_5678_9abc_def0);
    let mut next = move || rng.next_u64();
    for _ in 0..2_000 {
        let len = (next() % 1_500) as usize;
        // Few zeros, so that frames are long and varied.
        let stream: Vec<u8> = (0..len)
            .map(|_| {
                let b = next() as u8;
                if b < 4 {
                    0
                } else {
                    b
                }
            })
            .collect();
        let frames = requests(&stream, |_| ());
        // Every delimiter that ends a non-empty run of bytes yields a result.
        let expected = stream
            .split(|&b| b == 0)
            .rev()
            .skip(1)
            .filter(|f| !f.is_empty())
            .count();
        assert_eq!(frames.len(), expected);
    }
}
