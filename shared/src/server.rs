//! The firmware's protocol server, written against traits so that it runs
//! anywhere: [`serve`] reads bytes from an embedded-io link, cuts them into
//! frames ([`Deframer`]) and answers every frame with one response, using
//! the networks ([`Networks`], [`Models`] for the decoded model files), an
//! activation arena and a cost counter ([`CostCounter`]) it is handed. The
//! firmware supplies a UART, TIM2 or the DWT counter and its logger; the
//! host's tests supply an in-memory link and drive every path.

use crate::arch::{CLASSES, IMAGE_PIXELS};
use crate::error::Error;
use crate::graph::NetId;
use crate::nets::{forward, Arena, Model, Prediction, Probe, ARENA_BYTES};
use crate::protocol::{
    decode, encode, Classification, CostUnit, Deframer, ErrorCode, FaultKind, Info, LayerCost,
    LayerCosts, ModelStatus, Profile, Request, Response, MAX_ENCODED, MAX_FRAME, PROTOCOL_VERSION,
};

/// A free-running 32-bit counter; differences are taken with wrapping
/// arithmetic, so one wrap between two readings is harmless.
pub trait CostCounter {
    /// What it counts.
    const UNIT: CostUnit;

    /// The current count.
    fn now(&self) -> u32;

    /// Run `f` and return its result with the count it took.
    #[inline(always)]
    fn measure<R>(&self, f: impl FnOnce() -> R) -> (R, u32) {
        let start = self.now();
        let result = f();
        (result, self.now().wrapping_sub(start))
    }
}

/// A [`Probe`] that records the count each step of a forward pass took.
pub struct LayerTimer<'c, C: CostCounter> {
    counter: &'c C,
    last: u32,
    /// The steps so far, in order.
    pub layers: LayerCosts<&'static str>,
}

impl<'c, C: CostCounter> LayerTimer<'c, C> {
    /// Start timing now: the first step's cost runs from here.
    pub fn start(counter: &'c C) -> Self {
        LayerTimer {
            counter,
            last: counter.now(),
            layers: LayerCosts::new(),
        }
    }
}

impl<C: CostCounter> Probe for LayerTimer<'_, C> {
    fn layer(&mut self, name: &'static str) {
        let now = self.counter.now();
        let cost = now.wrapping_sub(self.last);
        // The capacity is the longest plan (protocol::MAX_LAYERS): a push
        // cannot fail, and if it did the profile would merely be short.
        let _ = self.layers.push(LayerCost { name, cost });
        // Excludes the bookkeeping above from the next step.
        self.last = self.counter.now();
    }
}

/// The networks a server runs.
pub trait Networks {
    /// Whether `net` is served.
    fn status(&self, net: NetId) -> ModelStatus;

    /// One forward pass of `net`: the ten int8 logits, or
    /// [`ErrorCode::ModelUnavailable`] if it is not served.
    fn infer(
        &self,
        net: NetId,
        pixels: &[u8; IMAGE_PIXELS],
        arena: &mut Arena<ARENA_BYTES>,
        probe: &mut impl Probe,
    ) -> Result<[i8; CLASSES], ErrorCode>;
}

/// Every network's model file and, once [`Models::load`]ed, its decoded
/// model (weights borrowed from the file).
pub struct Models<'a> {
    files: [&'a [u8]; NetId::COUNT],
    models: [Option<Model<'a>>; NetId::COUNT],
}

impl<'a> Models<'a> {
    /// The model files, in [`NetId`] order, none decoded yet.
    pub const fn new(files: [&'a [u8]; NetId::COUNT]) -> Self {
        Models {
            files,
            models: [None; NetId::COUNT],
        }
    }

    /// Decodes `net`'s file into its slot: served from now on, or refused
    /// with the decoder's error (a file of another network included).
    /// Writes in place, out of line: the stack holds one decoded model at
    /// a time (the firmware decodes at boot, where its stack is deepest).
    #[inline(never)]
    pub fn load(&mut self, net: NetId) -> Result<(), Error> {
        let slot = &mut self.models[net as usize];
        *slot = None;
        let model = Model::decode(self.files[net as usize])?;
        if model.net() != net {
            return Err(Error::WrongNetwork {
                expected: net,
                found: model.net(),
            });
        }
        *slot = Some(model);
        Ok(())
    }

    /// `net`'s model file.
    pub fn file(&self, net: NetId) -> &'a [u8] {
        self.files[net as usize]
    }
}

impl Networks for Models<'_> {
    fn status(&self, net: NetId) -> ModelStatus {
        let file = self.files[net as usize];
        match self.models[net as usize] {
            Some(_) => ModelStatus::Loaded {
                bytes: file.len() as u32,
                crc: crc_trailer(file),
            },
            None => ModelStatus::Refused,
        }
    }

    fn infer(
        &self,
        net: NetId,
        pixels: &[u8; IMAGE_PIXELS],
        arena: &mut Arena<ARENA_BYTES>,
        probe: &mut impl Probe,
    ) -> Result<[i8; CLASSES], ErrorCode> {
        let model = self.models[net as usize].as_ref();
        model
            .map(|m| forward(m, pixels, arena, probe))
            .ok_or(ErrorCode::ModelUnavailable)
    }
}

/// A file's CRC-32 trailer (its last four bytes, little-endian).
pub fn crc_trailer(file: &[u8]) -> u32 {
    file.last_chunk().map_or(0, |b| u32::from_le_bytes(*b))
}

/// What a server reports as it goes (the firmware logs it).
pub trait Log {
    /// A frame was answered with `Error(code)`.
    fn refused(&mut self, code: ErrorCode);
    /// A response could not be written to the link.
    fn send_failed(&mut self);
}

/// What answers requests: the networks, their arena, the cost counter and
/// what [`Info`] reports.
pub struct Service<'a, N, C> {
    /// The networks.
    pub models: &'a N,
    /// The activations of one inference.
    pub arena: &'a mut Arena<ARENA_BYTES>,
    /// Measures each inference.
    pub counter: C,
    /// The build's name, for [`Info`].
    pub board: &'static str,
    /// The core clock, for [`Info`].
    pub clock_hz: u32,
    /// The stack's size and high-water mark, for [`Info`].
    pub stack: fn() -> (u32, u32),
    /// What [`Request::Crash`] does: fail as asked (a build with fault
    /// injection), or `None` (answered with [`ErrorCode::Unsupported`]).
    pub crash: Option<fn(FaultKind) -> !>,
}

impl<N: Networks, C: CostCounter> Service<'_, N, C> {
    /// The response to one frame (or to the reason it could not be read).
    pub fn answer(&mut self, request: Result<Request<'_>, ErrorCode>) -> Response<&'static str> {
        let result = match request {
            Ok(Request::Ping { nonce }) => Ok(Response::Ready {
                version: PROTOCOL_VERSION,
                nonce,
            }),
            Ok(Request::Info) => Ok(Response::Info(self.info())),
            Ok(Request::Classify { net, pixels }) => {
                self.classify(net, pixels).map(Response::Prediction)
            }
            Ok(Request::Profile { net, pixels }) => {
                self.profile(net, pixels).map(Response::Profile)
            }
            Ok(Request::Crash(how)) => match self.crash {
                Some(crash) => crash(how),
                None => Err(ErrorCode::Unsupported),
            },
            Err(code) => Err(code),
        };
        result.unwrap_or_else(Response::Error)
    }

    fn info(&self) -> Info<&'static str> {
        let (stack_bytes, stack_used) = (self.stack)();
        Info {
            board: self.board,
            version: PROTOCOL_VERSION,
            clock_hz: self.clock_hz,
            cost_unit: C::UNIT,
            models: NetId::ALL.map(|net| self.models.status(net)),
            arena_bytes: ARENA_BYTES as u32,
            stack_bytes,
            stack_used,
        }
    }

    fn classify(&mut self, net: u8, pixels: &[u8]) -> Result<Classification, ErrorCode> {
        let (net, pixels) = checked(net, pixels)?;
        let (logits, cost) = self
            .counter
            .measure(|| self.models.infer(net, pixels, self.arena, &mut ()));
        Ok(classification(logits?, cost))
    }

    fn profile(&mut self, net: u8, pixels: &[u8]) -> Result<Profile<&'static str>, ErrorCode> {
        let (net, pixels) = checked(net, pixels)?;
        let mut timer = LayerTimer::start(&self.counter);
        let (logits, cost) = self
            .counter
            .measure(|| self.models.infer(net, pixels, self.arena, &mut timer));
        Ok(Profile {
            prediction: classification(logits?, cost),
            layers: timer.layers,
        })
    }
}

/// The request's network and image, if they are valid.
fn checked(net: u8, pixels: &[u8]) -> Result<(NetId, &[u8; IMAGE_PIXELS]), ErrorCode> {
    let net = NetId::from_u8(net).ok_or(ErrorCode::UnknownNetwork)?;
    let pixels = pixels.try_into().map_err(|_| ErrorCode::ImageLength)?;
    Ok((net, pixels))
}

fn classification(logits: [i8; CLASSES], cost: u32) -> Classification {
    let p = Prediction::from_logits(logits);
    Classification {
        class: p.class,
        logits: p.logits,
        cost,
    }
}

/// Serve `link`: announce [`Response::Ready`] (nonce 0), then answer every
/// frame, bad ones with [`Response::Error`]; a read error spoils the frame
/// in progress ([`ErrorCode::Link`]). Returns only when a read returns no
/// bytes (the link has closed: the end of a test's input; a UART never
/// does).
pub fn serve<L, N, C>(link: &mut L, service: &mut Service<'_, N, C>, log: &mut impl Log)
where
    L: embedded_io::Read + embedded_io::Write,
    N: Networks,
    C: CostCounter,
{
    let mut deframer = Deframer::<MAX_ENCODED>::new();
    let mut tx = [0u8; MAX_FRAME];
    let ready = Response::Ready {
        version: PROTOCOL_VERSION,
        nonce: 0,
    };
    send(link, &mut tx, &ready, log);
    let mut rx = [0u8; 64];
    loop {
        let n = match link.read(&mut rx) {
            Ok(0) => return,
            Ok(n) => n,
            Err(_) => {
                deframer.link_error();
                continue;
            }
        };
        for &byte in &rx[..n] {
            if let Some(frame) = deframer.push(byte) {
                let response = service.answer(frame.and_then(decode::<Request<'_>>));
                if let Response::Error(code) = response {
                    log.refused(code);
                }
                send(link, &mut tx, &response, log);
            }
        }
    }
}

fn send<L: embedded_io::Write>(
    link: &mut L,
    tx: &mut [u8; MAX_FRAME],
    response: &Response<&str>,
    log: &mut impl Log,
) {
    // Every response fits MAX_MESSAGE (the protocol's tests check the
    // largest).
    let Ok(frame) = encode(response, tx) else {
        log.send_failed();
        return;
    };
    if link.write_all(frame).and_then(|()| link.flush()).is_err() {
        log.send_failed();
    }
}

#[cfg(test)]
mod tests;
