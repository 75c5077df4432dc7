//! A soak of the serial link under QEMU (behind `--ignored`: three
//! minutes): bursts of random bytes, random valid COBS frames and over-long
//! frames, each followed by a correct classification. Every valid request
//! must be answered correctly, the firmware must never restart, and its
//! stack high-water mark must not move.

use device::serial::{Client, Reply};
use device::Error;
use shared::arch::IMAGE_PIXELS;
use shared::protocol::{ErrorCode, Request, MAX_ENCODED};
use shared::NetId;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tests::{qemu_elf, reference, start, test_set};

/// How long the soak runs.
const SOAK: Duration = Duration::from_secs(180);

/// xorshift64: reproducible bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Ends whatever half frame the firmware holds, pings with a fresh nonce and
/// skips every reply until the ping's: back in step. Returns how many
/// replies were skipped.
fn resync(client: &mut Client<TcpStream>, rng: &mut Rng) -> usize {
    let nonce = (rng.next() as u32) | 1;
    client.send_raw(&[0]).unwrap();
    client.send(&Request::Ping { nonce }).unwrap();
    let mut skipped = 0;
    loop {
        match client.receive() {
            Ok(Reply::Ready { nonce: n, .. }) if n == nonce => return skipped,
            Ok(_) | Err(Error::BadResponse { .. }) => skipped += 1,
            Err(e) => panic!("resynchronising: {e}"),
        }
    }
}

#[test]
#[ignore = "a three-minute soak of the serial link under QEMU"]
fn the_link_survives_abuse_and_every_valid_request_is_answered() {
    let mut session = start(qemu_elf());
    let test = test_set();
    let references = NetId::ALL.map(reference);
    let client = session.client();
    // Warm up: every network classified and profiled once, so that the
    // high-water mark holds every path's deepest frame.
    for net in NetId::ALL {
        client.classify(net, test.image(0)).unwrap();
        client.profile(net, test.image(0)).unwrap();
    }
    let before = client.info().unwrap();
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let started = Instant::now();
    let (mut rounds, mut garbage, mut classified) = (0usize, 0usize, 0usize);
    while started.elapsed() < SOAK {
        match rounds % 3 {
            // Random bytes, zeros (frame ends) among them.
            0 => {
                let n = 1 + rng.below(3000);
                let bytes = rng.bytes(n);
                garbage += bytes.len();
                client.send_raw(&bytes).unwrap();
            }
            // Random valid COBS frames of random payloads.
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let n = 1 + rng.below(900);
                    let payload = rng.bytes(n);
                    let mut frame = vec![0u8; payload.len() + payload.len() / 254 + 2];
                    let n = cobs::encode(&payload, &mut frame);
                    frame.truncate(n);
                    frame.push(0);
                    garbage += frame.len();
                    client.send_raw(&frame).unwrap();
                }
            }
            // An over-long frame: answered with Oversized, exactly.
            _ => {
                let n = MAX_ENCODED + 1 + rng.below(4000);
                let mut frame: Vec<u8> = rng.bytes(n).into_iter().map(|b| b | 1).collect();
                frame.push(0);
                garbage += frame.len();
                resync(client, &mut rng);
                client.send_raw(&frame).unwrap();
                assert_eq!(
                    client.receive().unwrap(),
                    Reply::Error(ErrorCode::Oversized)
                );
            }
        }
        resync(client, &mut rng);
        let (net, i) = (NetId::ALL[rng.below(NetId::COUNT)], rng.below(test.len()));
        let pixels: &[u8; IMAGE_PIXELS] = test.image(i);
        let want = references[net as usize].predict(pixels);
        let got = client
            .classify(net, pixels)
            .unwrap_or_else(|e| panic!("round {rounds}: {e}"));
        assert_eq!(
            (got.class, got.logits),
            (want.class, want.logits),
            "round {rounds}: {} image {i}",
            net.name()
        );
        classified += 1;
        rounds += 1;
    }
    let after = client.info().unwrap();
    assert_eq!(
        after.stack_used, before.stack_used,
        "the stack's high-water mark moved"
    );
    let run = session.stop().unwrap();
    let boots = run
        .log
        .iter()
        .filter(|l| l.message.starts_with("mnist-cortex-m firmware booted"))
        .count();
    assert_eq!(boots, 1, "the firmware restarted");
    assert!(
        run.log.iter().all(|l| l.level.as_deref() != Some("error")),
        "{:#?}",
        run.log
    );
    eprintln!("{rounds} rounds in {:?}: {garbage} bytes of abuse, {classified} classifications, all right", started.elapsed());
}
