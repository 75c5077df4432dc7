//! The client against a scripted stand-in for the firmware: in memory, and
//! over a real pseudo-terminal opened by path like a USB-serial adapter.

use super::*;
use shared::protocol::ErrorCode;
use std::collections::VecDeque;

/// Answers requests the way the firmware's protocol says, with made-up
/// predictions (class = first pixel mod 10, cost 42).
struct FakeFirmware {
    deframer: Deframer<MAX_ENCODED>,
    /// Pings dropped before the first answered one (a board still booting).
    deaf_pings: usize,
    version: u8,
    out: VecDeque<u8>,
}

impl FakeFirmware {
    fn new(announce: bool, deaf_pings: usize) -> Self {
        let mut fw = FakeFirmware {
            deframer: Deframer::new(),
            deaf_pings,
            version: PROTOCOL_VERSION,
            out: VecDeque::new(),
        };
        if announce {
            // Stale bytes first: the client must skip them.
            fw.out.extend(b"\x07junk\x00");
            fw.reply(&Response::Ready {
                version: PROTOCOL_VERSION,
                nonce: 0,
            });
        }
        fw
    }

    fn reply(&mut self, r: &Response<&str>) {
        let mut buf = [0u8; MAX_FRAME];
        self.out.extend(encode(r, &mut buf).expect("fits"));
    }

    fn take(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let Some(frame) = self.deframer.push(b) else {
                continue;
            };
            let reply = match frame.and_then(decode::<Request<'_>>) {
                Ok(Request::Ping { nonce }) => {
                    if self.deaf_pings > 0 {
                        self.deaf_pings -= 1;
                        continue;
                    }
                    Response::Ready {
                        version: self.version,
                        nonce,
                    }
                }
                Ok(Request::Classify { pixels, .. }) if pixels.len() == IMAGE_PIXELS => {
                    Response::Prediction(Classification {
                        class: pixels[0] % 10,
                        logits: [pixels[1] as i8; 10],
                        cost: 42,
                    })
                }
                Ok(Request::Classify { .. }) => Response::Error(ErrorCode::ImageLength),
                Ok(_) => Response::Error(ErrorCode::Malformed),
                Err(code) => Response::Error(code),
            };
            self.reply(&reply);
        }
    }
}

/// An in-memory link to a [`FakeFirmware`]; reads time out when it has
/// nothing to say, like a real port.
struct Loopback(FakeFirmware);

impl Read for Loopback {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.out.is_empty() {
            return Err(ErrorKind::TimedOut.into());
        }
        let n = buf.len().min(self.0.out.len());
        for (slot, b) in buf.iter_mut().zip(self.0.out.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

impl Write for Loopback {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.take(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SHORT: Duration = Duration::from_millis(300);

fn image(first: u8) -> [u8; IMAGE_PIXELS] {
    let mut img = [0u8; IMAGE_PIXELS];
    img[0] = first;
    img[1] = 5;
    img
}

#[test]
fn the_announced_handshake_skips_stale_bytes() {
    let mut c = Client::connect(
        Loopback(FakeFirmware::new(true, 0)),
        Handshake::Announced,
        SHORT,
    )
    .unwrap();
    let p = c.classify(NetId::ResNet, &image(13)).unwrap();
    assert_eq!(
        p,
        Classification {
            class: 3,
            logits: [5; 10],
            cost: 42
        }
    );
}

#[test]
fn the_ping_handshake_retries_until_the_firmware_answers() {
    let started = Instant::now();
    let mut c = Client::connect(
        Loopback(FakeFirmware::new(false, 2)),
        Handshake::Ping,
        Duration::from_secs(5),
    )
    .unwrap();
    // Two pings went unanswered, one second each.
    assert!(started.elapsed() >= 2 * PING_EVERY);
    c.ping().unwrap();
    assert_eq!(c.classify(NetId::Inception, &image(7)).unwrap().class, 7);
}

#[test]
fn a_silent_firmware_times_out_naming_what_was_awaited() {
    let err = Client::connect(
        Loopback(FakeFirmware::new(false, 0)),
        Handshake::Announced,
        SHORT,
    )
    .err()
    .unwrap();
    assert!(
        matches!(
            err,
            Error::SerialTimeout {
                waiting_for: "the start-up announcement",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("baud"), "{err}");
}

#[test]
fn firmware_errors_and_version_mismatches_are_reported() {
    let mut c = Client::connect(
        Loopback(FakeFirmware::new(true, 0)),
        Handshake::Announced,
        SHORT,
    )
    .unwrap();
    let err = c
        .classify_request(&Request::Classify {
            net: 0,
            pixels: &[1, 2, 3],
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Device {
                code: ErrorCode::ImageLength
            }
        ),
        "{err}"
    );
    // The client goes on working after an error.
    assert_eq!(c.classify(NetId::ResNet, &image(4)).unwrap().class, 4);

    let mut old = FakeFirmware::new(false, 0);
    old.version = PROTOCOL_VERSION + 1;
    let err = Client::connect(Loopback(old), Handshake::Ping, SHORT)
        .err()
        .unwrap();
    assert!(matches!(err, Error::ProtocolVersion { .. }), "{err}");
}

#[test]
fn a_closed_link_is_reported() {
    struct Closed;
    impl Read for Closed {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Ok(0)
        }
    }
    impl Write for Closed {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let err = Client::connect(Closed, Handshake::Ping, SHORT)
        .err()
        .unwrap();
    assert!(matches!(err, Error::SerialClosed), "{err}");
}

/// `host classify --port` opens a device by path; a pseudo-terminal is one.
#[cfg(unix)]
#[test]
fn a_pseudo_terminal_opened_by_path_works_like_a_serial_adapter() {
    use serialport::SerialPort;
    let (mut master, slave) = serialport::TTYPort::pair().expect("open a pseudo-terminal pair");
    let path = slave.name().expect("the pty has a /dev/pts path");
    master.set_timeout(Duration::from_millis(20)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let firmware = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut fw = FakeFirmware::new(false, 0);
            let mut buf = [0u8; 1024];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = master.read(&mut buf) {
                    fw.take(&buf[..n]);
                }
                let out: Vec<u8> = fw.out.drain(..).collect();
                master.write_all(&out).unwrap();
            }
        })
    };
    let mut c = Client::open_serial(Path::new(&path), 115_200, Duration::from_secs(5)).unwrap();
    for first in [0u8, 1, 2, 255] {
        assert_eq!(
            c.classify(NetId::ResNet, &image(first)).unwrap().class,
            first % 10
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    firmware.join().unwrap();
    drop(slave);
}
