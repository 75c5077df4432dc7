//! The serial protocol between the host and the firmware, defined once for
//! both sides.
//!
//! # Frames
//!
//! Every message is one [postcard] record, COBS-encoded and followed by a
//! single `0` byte ([`encode`]). COBS removes every `0` from the encoded
//! bytes, so the delimiter alone marks where a frame ends: after garbage or a
//! lost byte the receiver is back in step at the next `0`. A receiver feeds
//! the bytes it reads to a [`Deframer`], which hands out each complete frame,
//! and [`decode`]s it. A message is at most [`MAX_MESSAGE`] bytes, a frame on
//! the wire at most [`MAX_FRAME`].
//!
//! # Conversation
//!
//! The host sends a [`Request`]; the firmware answers each frame with exactly
//! one [`Response`], in order. At start-up the firmware announces
//! [`Response::Ready`] (nonce 0) once, unasked: QEMU's USART drops bytes that
//! arrive before the firmware enabled it, so the host waits for this before
//! it sends anything. A host that attaches to a board that is already
//! running sends [`Request::Ping`] with a fresh nonce and waits for the
//! [`Response::Ready`] that echoes it; everything before that is stale.
//!
//! A frame that is not a valid request is answered with
//! [`Response::Error`] and an [`ErrorCode`] naming the problem, and the
//! firmware goes on serving. An empty frame (a lone `0`) is ignored, so a
//! host may send `0` to cut off whatever half frame the firmware holds.

use crate::arch::{CLASSES, IMAGE_PIXELS};
use crate::graph::NetId;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Bumped whenever a message changes shape; [`Response::Ready`] and
/// [`Info`] carry it.
pub const PROTOCOL_VERSION: u8 = 3;

/// The largest message (postcard bytes, before COBS) either side sends or
/// accepts. A classification request, the largest, is 788 bytes.
pub const MAX_MESSAGE: usize = 1024;

/// The largest COBS-encoded frame, without its delimiter: what a
/// [`Deframer`] must be able to hold.
pub const MAX_ENCODED: usize = cobs::max_encoding_length(MAX_MESSAGE);

/// The largest frame on the wire, delimiter included: the buffer [`encode`]
/// needs.
pub const MAX_FRAME: usize = MAX_ENCODED + 1;

/// Steps in the longest of the networks' plans: the capacity of a
/// per-layer [`Profile`].
pub const MAX_LAYERS: usize = crate::nets::MAX_STEPS;

/// What the host asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Answered with [`Response::Ready`] echoing `nonce`.
    Ping {
        /// Chosen by the host; 0 is the start-up announcement's.
        nonce: u32,
    },
    /// Answered with [`Response::Info`].
    Info,
    /// Classify one image: answered with [`Response::Prediction`].
    Classify {
        /// A [`NetId`] as its byte. Raw on the wire so that an unknown id is
        /// answered with [`ErrorCode::UnknownNetwork`], not as a malformed frame.
        net: u8,
        /// The 784 raw pixels, row-major (0 = black). Any other length is
        /// answered with [`ErrorCode::ImageLength`].
        pixels: &'a [u8],
    },
    /// Classify one image and time every layer: answered with
    /// [`Response::Profile`]. Same fields as [`Request::Classify`].
    Profile {
        /// A [`NetId`] as its byte.
        net: u8,
        /// The 784 raw pixels.
        pixels: &'a [u8],
    },
    /// Make the firmware fail on purpose, to test how it reports faults: a
    /// build with fault injection (never a board build) ends in a
    /// [`Response::Fault`]; any other answers
    /// [`ErrorCode::Unsupported`].
    Crash(FaultKind),
}

impl<'a> Request<'a> {
    /// A classification request for `net`.
    pub fn classify(net: NetId, pixels: &'a [u8; IMAGE_PIXELS]) -> Request<'a> {
        Request::Classify {
            net: net as u8,
            pixels,
        }
    }

    /// A profile request for `net`.
    pub fn profile(net: NetId, pixels: &'a [u8; IMAGE_PIXELS]) -> Request<'a> {
        Request::Profile {
            net: net as u8,
            pixels,
        }
    }
}

/// What the firmware answers. `S` is the type of its strings: `&str` where
/// a response is built or borrowed (the firmware), `String` where it is
/// kept (the host); both have the same wire format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // no heap to box a profile into; one response lives at a time
pub enum Response<S> {
    /// The firmware is serving: announced once at start-up (`nonce` 0) and
    /// sent in answer to [`Request::Ping`] (its nonce).
    Ready {
        /// [`PROTOCOL_VERSION`] of the firmware.
        version: u8,
        /// The ping's nonce, or 0 for the announcement.
        nonce: u32,
    },
    /// What the firmware is and holds.
    Info(Info<S>),
    /// One classification.
    Prediction(Classification),
    /// One classification with the cost of every layer.
    Profile(Profile<S>),
    /// The request could not be served.
    Error(ErrorCode),
    /// The firmware failed (sent unasked, as its last frame before it
    /// resets, or under QEMU exits).
    Fault(Fault<S>),
}

/// How the firmware failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// A Rust panic (a bug: the firmware's code cannot fail on any input).
    Panic,
    /// A processor fault (HardFault, escalated from a bus, memory or usage
    /// fault).
    HardFault,
    /// The stack ran into the end of RAM (below the statics, which the
    /// memory layout keeps out of its way).
    StackOverflow,
}

/// What the firmware reports of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fault<S> {
    /// What happened.
    pub kind: FaultKind,
    /// The program counter of the faulting instruction (0 if unknown: a
    /// panic, or a fault whose exception frame could not be stacked).
    pub pc: u32,
    /// The faulting address, for a bus or memory fault that recorded one
    /// (0 otherwise).
    pub address: u32,
    /// The panic's message and location, or the fault's status bits.
    pub message: S,
}

impl<S: fmt::Display> fmt::Display for Fault<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Panic => return write!(f, "panic: {}", self.message),
            FaultKind::HardFault => write!(f, "HardFault at PC {:#010x}", self.pc)?,
            FaultKind::StackOverflow => write!(f, "stack overflow (PC {:#010x})", self.pc)?,
        }
        if self.address != 0 {
            write!(f, ", address {:#010x}", self.address)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result of [`Request::Classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Classification {
    /// The predicted digit (argmax of the logits, first on ties).
    pub class: u8,
    /// The ten int8 logits, in the fc layer's output quantisation.
    pub logits: [i8; CLASSES],
    /// The cost of the forward pass in [`Info::cost_unit`]s.
    pub cost: u32,
}

/// The cost of one step of a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerCost<S> {
    /// The step's name in the network's plan (`conv1`, `incep1.b5_2`, ...).
    pub name: S,
    /// Its cost in [`Info::cost_unit`]s.
    pub cost: u32,
}

/// The costs of a forward pass's steps (fixed capacity: no heap).
pub type LayerCosts<S> = heapless::Vec<LayerCost<S>, MAX_LAYERS>;

/// The result of [`Request::Profile`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile<S> {
    /// The classification; its `cost` is the whole forward pass.
    pub prediction: Classification,
    /// Every step of the plan, in execution order.
    pub layers: LayerCosts<S>,
}

/// What a cost counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CostUnit {
    /// Executed instructions (QEMU with `-icount shift=0`, TIM2).
    Instructions,
    /// CPU clock cycles (a real board, DWT CYCCNT).
    Cycles,
}

impl CostUnit {
    /// The unit's plural noun, for logs and reports.
    pub const fn name(self) -> &'static str {
        match self {
            CostUnit::Instructions => "instructions",
            CostUnit::Cycles => "cycles",
        }
    }
}

/// Whether a network's model is being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelStatus {
    /// Decoded at boot and served.
    Loaded {
        /// Size of the model file in flash.
        bytes: u32,
        /// Its CRC-32 trailer.
        crc: u32,
    },
    /// Refused at boot (its decoding error is in the firmware's log);
    /// requests for it get [`ErrorCode::ModelUnavailable`].
    Refused,
}

/// The result of [`Request::Info`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Info<S> {
    /// The build: `stm32f405` or `qemu-netduinoplus2`.
    pub board: S,
    /// [`PROTOCOL_VERSION`] of the firmware.
    pub version: u8,
    /// The core clock.
    pub clock_hz: u32,
    /// What costs count.
    pub cost_unit: CostUnit,
    /// Each network's model, indexed by [`NetId`] (`as usize`).
    pub models: [ModelStatus; NetId::COUNT],
    /// Bytes of the activation arena (a static).
    pub arena_bytes: u32,
    /// Bytes of RAM left for the stack.
    pub stack_bytes: u32,
    /// The deepest the stack has been since reset (bytes), measured by
    /// painting it at boot: the high-water mark.
    pub stack_used: u32,
}

/// Why a request was not served: the payload of [`Response::Error`], and
/// what [`decode`] and [`Deframer::push`] return for a bad frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid COBS: garbage, or cut short inside a COBS
    /// block.
    NotCobs,
    /// The frame decodes, but the message ends before its last field.
    Truncated,
    /// The frame decodes to no known message (bad tag, varint or UTF-8, or
    /// bytes left after the message).
    Malformed,
    /// The frame is longer than [`MAX_ENCODED`] (its bytes were dropped up
    /// to the delimiter), or a message does not fit [`MAX_MESSAGE`].
    Oversized,
    /// The serial link reported an error (overrun, framing, noise) while
    /// the frame arrived: bytes were lost.
    Link,
    /// The network id names no network.
    UnknownNetwork,
    /// The image is not [`IMAGE_PIXELS`] bytes long.
    ImageLength,
    /// The network's model was refused at boot.
    ModelUnavailable,
    /// The request is known but this build does not serve it.
    Unsupported,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorCode::NotCobs => "frame is not valid COBS (garbage, or cut short)",
            ErrorCode::Truncated => "message cut short",
            ErrorCode::Malformed => "frame is no known message",
            ErrorCode::Oversized => "frame too long",
            ErrorCode::Link => "serial link error (bytes lost)",
            ErrorCode::UnknownNetwork => "unknown network id",
            ErrorCode::ImageLength => "image is not 784 pixels",
            ErrorCode::ModelUnavailable => "the network's model was refused at boot",
            ErrorCode::Unsupported => "this build does not serve that request",
        })
    }
}

#[cfg(any(feature = "std", test))]
impl std::error::Error for ErrorCode {}

/// Encodes `msg` as one frame (COBS, then the `0` delimiter) into `buf`
/// and returns the frame. Fails with [`ErrorCode::Oversized`] if the frame
/// does not fit `buf`, which never happens to a message of at most
/// [`MAX_MESSAGE`] bytes.
pub fn encode<'b, T: Serialize>(
    msg: &T,
    buf: &'b mut [u8; MAX_FRAME],
) -> Result<&'b [u8], ErrorCode> {
    match postcard::to_slice_cobs(msg, buf) {
        Ok(frame) => Ok(frame),
        Err(_) => Err(ErrorCode::Oversized),
    }
}

/// Decodes one frame's COBS bytes (as [`Deframer::push`] hands them out,
/// without the delimiter) into a message. Decodes in place: `frame` is
/// overwritten, and the message may borrow from it.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a mut [u8]) -> Result<T, ErrorCode> {
    let len = cobs::decode_in_place(frame).map_err(|_| ErrorCode::NotCobs)?;
    let (msg, rest) = postcard::take_from_bytes(&frame[..len]).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => ErrorCode::Truncated,
        _ => ErrorCode::Malformed,
    })?;
    if rest.is_empty() {
        Ok(msg)
    } else {
        Err(ErrorCode::Malformed)
    }
}

/// Splits a byte stream into frames at the `0` delimiters, holding up to
/// `N` bytes of the frame in progress (use [`MAX_ENCODED`]).
#[derive(Clone, Debug)]
pub struct Deframer<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// What is wrong with the frame in progress, if anything: its bytes
    /// are dropped up to the delimiter, which then reports it.
    problem: Option<ErrorCode>,
}

impl<const N: usize> Default for Deframer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deframer<N> {
    /// An empty deframer.
    pub const fn new() -> Self {
        Deframer {
            buf: [0; N],
            len: 0,
            problem: None,
        }
    }

    /// Takes one byte. At a delimiter that ends a non-empty frame, returns
    /// the frame's COBS bytes (to [`decode`]), or why the frame is lost:
    /// [`ErrorCode::Oversized`] or [`ErrorCode::Link`].
    pub fn push(&mut self, byte: u8) -> Option<Result<&mut [u8], ErrorCode>> {
        if byte != 0 {
            if self.problem.is_none() {
                match self.buf.get_mut(self.len) {
                    Some(slot) => {
                        *slot = byte;
                        self.len += 1;
                    }
                    None => self.problem = Some(ErrorCode::Oversized),
                }
            }
            return None;
        }
        let len = core::mem::replace(&mut self.len, 0);
        match self.problem.take() {
            Some(problem) => Some(Err(problem)),
            None if len == 0 => None,
            None => Some(Ok(&mut self.buf[..len])),
        }
    }

    /// The link lost bytes (a UART overrun, say): the frame in progress is
    /// answered with [`ErrorCode::Link`] at its delimiter.
    pub fn link_error(&mut self) {
        self.problem.get_or_insert(ErrorCode::Link);
    }
}

#[cfg(test)]
mod tests;
