//! The host side of the serial protocol ([`shared::protocol`]): a client
//! over any byte stream — a serial port (a USB-serial adapter wired to a
//! board, or a pseudo-terminal) or the TCP socket QEMU's USART1 is
//! connected to in the tests.

use crate::error::{Error, Result};
use shared::arch::IMAGE_PIXELS;
use shared::protocol::{
    decode, encode, Classification, Deframer, Info, Profile, Request, Response, MAX_ENCODED,
    MAX_FRAME, PROTOCOL_VERSION,
};
use shared::NetId;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A response with owned strings, as the host keeps it.
pub type Reply = Response<String>;

/// How long one read on a link may block: short, so that the client's own
/// deadlines decide when to give up.
const POLL: Duration = Duration::from_millis(50);

/// How often [`Handshake::Ping`] repeats its ping.
const PING_EVERY: Duration = Duration::from_secs(1);

/// How to get in step with the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Wait for the start-up announcement: the firmware starts together
    /// with the link (QEMU). Nothing may be sent before it: QEMU's USART
    /// drops bytes that arrive before the firmware has enabled it.
    Announced,
    /// The board may be running already (or still booting): send pings
    /// with fresh nonces until one is echoed; every reply before it is stale.
    Ping,
}

/// A client of the firmware's protocol over `L`, whose reads must return
/// within a short time (`TimedOut` or `WouldBlock` when no byte came):
/// [`Client::tcp`] and [`Client::open_serial`] set that up.
pub struct Client<L> {
    link: L,
    deframer: Box<Deframer<MAX_ENCODED>>,
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    timeout: Duration,
    nonce: u32,
}

impl Client<TcpStream> {
    /// A client on a connected TCP stream (QEMU's chardev), after the handshake.
    pub fn tcp(stream: TcpStream, handshake: Handshake, timeout: Duration) -> Result<Self> {
        let io = |source| Error::Serial { source };
        stream.set_read_timeout(Some(POLL)).map_err(io)?;
        // Requests are single frames: send each at once.
        stream.set_nodelay(true).map_err(io)?;
        Client::connect(stream, handshake, timeout)
    }
}

impl Client<Box<dyn serialport::SerialPort>> {
    /// Open a serial device (`/dev/ttyUSB0`, a `/dev/pts/N`, `COM3`) at
    /// `baud` (8N1) and ping the firmware until it answers.
    pub fn open_serial(port: &Path, baud: u32, timeout: Duration) -> Result<Self> {
        let link = serialport::new(port.to_string_lossy(), baud)
            .timeout(POLL)
            .open()
            .map_err(|source| Error::SerialOpen {
                port: port.to_path_buf(),
                source,
            })?;
        Client::connect(link, Handshake::Ping, timeout)
    }
}

impl<L: Read + Write> Client<L> {
    /// Get in step with the firmware over `link`; every later exchange may
    /// take up to `timeout`.
    pub fn connect(link: L, handshake: Handshake, timeout: Duration) -> Result<Self> {
        let mut client = Client {
            link,
            deframer: Box::new(Deframer::new()),
            rx: vec![0; 4096],
            rx_start: 0,
            rx_end: 0,
            timeout,
            nonce: 0,
        };
        let deadline = Instant::now() + timeout;
        match handshake {
            Handshake::Announced => loop {
                // Anything but the announcement (stale bytes) is skipped.
                match client.next_reply("the start-up announcement", deadline) {
                    Ok(Reply::Ready { version, nonce: 0 }) => {
                        check_version(version)?;
                        return Ok(client);
                    }
                    Ok(_) | Err(Error::BadResponse { .. }) => {}
                    Err(e) => return Err(e),
                }
            },
            Handshake::Ping => loop {
                client.fresh_nonce();
                // A lone 0 first ends whatever half frame the firmware holds.
                client.send_raw(&[0])?;
                client.send(&Request::Ping {
                    nonce: client.nonce,
                })?;
                let round = (Instant::now() + PING_EVERY).min(deadline);
                loop {
                    match client.next_reply("a reply to ping", round) {
                        Ok(Reply::Ready { version, nonce }) if nonce == client.nonce => {
                            check_version(version)?;
                            return Ok(client);
                        }
                        // Stale replies and frames garbled by a reset.
                        Ok(_) | Err(Error::BadResponse { .. }) => {}
                        Err(Error::SerialTimeout { .. }) if Instant::now() < deadline => break,
                        Err(e) => return Err(e),
                    }
                }
            },
        }
    }

    /// Send one request.
    pub fn send(&mut self, request: &Request<'_>) -> Result<()> {
        let mut buf = [0u8; MAX_FRAME];
        let frame = encode(request, &mut buf).map_err(|code| Error::BadRequest { code })?;
        self.send_raw(frame)
    }

    /// Send bytes as they are (tests use this for bad frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.link
            .write_all(bytes)
            .and_then(|()| self.link.flush())
            .map_err(|source| Error::Serial { source })
    }

    /// The next response, waiting up to the client's timeout.
    pub fn receive(&mut self) -> Result<Reply> {
        self.next_reply("a response", Instant::now() + self.timeout)
    }

    /// Send `request` and return its response.
    pub fn request(&mut self, request: &Request<'_>) -> Result<Reply> {
        self.send(request)?;
        self.receive()
    }

    /// Ping the firmware.
    pub fn ping(&mut self) -> Result<()> {
        let nonce = self.fresh_nonce();
        match self.request(&Request::Ping { nonce })? {
            Reply::Ready { nonce: n, .. } if n == nonce => Ok(()),
            other => Err(unexpected("Ready with the ping's nonce", other)),
        }
    }

    /// What the firmware is and holds.
    pub fn info(&mut self) -> Result<Info<String>> {
        match self.request(&Request::Info)? {
            Reply::Info(info) => Ok(info),
            other => Err(unexpected("Info", other)),
        }
    }

    /// Classify one image with `net`.
    pub fn classify(&mut self, net: NetId, pixels: &[u8; IMAGE_PIXELS]) -> Result<Classification> {
        self.classify_request(&Request::classify(net, pixels))
    }

    /// Send any classification request (tests send invalid ones) and return
    /// the prediction, or the firmware's error as [`Error::Device`].
    pub fn classify_request(&mut self, request: &Request<'_>) -> Result<Classification> {
        match self.request(request)? {
            Reply::Prediction(p) => Ok(p),
            other => Err(unexpected("Prediction", other)),
        }
    }

    /// Classify one image with `net` and time every layer.
    pub fn profile(&mut self, net: NetId, pixels: &[u8; IMAGE_PIXELS]) -> Result<Profile<String>> {
        match self.request(&Request::profile(net, pixels))? {
            Reply::Profile(p) => Ok(p),
            other => Err(unexpected("Profile", other)),
        }
    }

    /// A nonce not used lately, never 0 (the announcement's).
    fn fresh_nonce(&mut self) -> u32 {
        self.nonce = self.nonce.wrapping_add(1).max(1);
        self.nonce
    }

    /// The next complete frame, decoded, before `deadline`.
    fn next_reply(&mut self, waiting_for: &'static str, deadline: Instant) -> Result<Reply> {
        loop {
            while self.rx_start < self.rx_end {
                let byte = self.rx[self.rx_start];
                self.rx_start += 1;
                if let Some(frame) = self.deframer.push(byte) {
                    return frame
                        .and_then(decode::<Reply>)
                        .map_err(|code| Error::BadResponse { code });
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::SerialTimeout {
                    waiting_for,
                    seconds: self.timeout.as_secs_f64(),
                });
            }
            match self.link.read(&mut self.rx) {
                Ok(0) => return Err(Error::SerialClosed),
                Ok(n) => (self.rx_start, self.rx_end) = (0, n),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                    ) => {}
                Err(source) => return Err(Error::Serial { source }),
            }
        }
    }
}

fn check_version(found: u8) -> Result<()> {
    if found == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(Error::ProtocolVersion {
            found,
            expected: PROTOCOL_VERSION,
        })
    }
}

/// The error for a reply that is not the one expected; the firmware's own
/// errors become [`Error::Device`].
fn unexpected(expected: &'static str, reply: Reply) -> Error {
    match reply {
        Reply::Error(code) => Error::Device { code },
        Reply::Fault(fault) => Error::DeviceFault {
            report: fault.to_string(),
        },
        other => Error::UnexpectedResponse {
            expected,
            found: format!("{other:?}"),
        },
    }
}

#[cfg(test)]
mod tests;
