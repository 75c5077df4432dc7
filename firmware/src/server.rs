//! The protocol loop (`shared::protocol`): read bytes from the link, cut
//! them into frames, answer every frame with one response. Written against
//! embedded-io, so it runs on any serial port.

use crate::cost::{CostCounter, LayerTimer};
use crate::models::Models;
use crate::stack;
use embedded_io::{Read, Write};
use shared::arch::IMAGE_PIXELS;
use shared::NetId;
use shared::nets::{Arena, Prediction, ARENA_BYTES};
use shared::protocol::{
    decode, encode, Classification, Deframer, ErrorCode, Info, Profile, Request, Response,
    MAX_ENCODED, MAX_FRAME, PROTOCOL_VERSION,
};

/// What answers requests: the networks, their arena and the cost counter.
pub struct Service<'a, C> {
    /// The decoded networks.
    pub models: &'a Models,
    /// The activations of one inference.
    pub arena: &'a mut Arena<ARENA_BYTES>,
    /// Measures each inference.
    pub counter: C,
    /// The build's name, for [`Info`].
    pub board: &'static str,
    /// The core clock, for [`Info`].
    pub clock_hz: u32,
}

impl<C: CostCounter> Service<'_, C> {
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
            Err(code) => Err(code),
        };
        result.unwrap_or_else(|code| {
            defmt::warn!("request refused: {}", defmt::Display2Format(&code));
            Response::Error(code)
        })
    }

    fn info(&self) -> Info<&'static str> {
        let (stack_used, stack_bytes) = stack::usage();
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

fn classification(logits: [i8; shared::arch::CLASSES], cost: u32) -> Classification {
    let p = Prediction::from_logits(logits);
    Classification {
        class: p.class,
        logits: p.logits,
        cost,
    }
}

/// Serve `link` forever: announce [`Response::Ready`], then answer every
/// frame. Bad frames get [`Response::Error`]; nothing ends the loop.
pub fn serve<L: Read + Write, C: CostCounter>(link: &mut L, mut service: Service<'_, C>) -> ! {
    let mut deframer = Deframer::<MAX_ENCODED>::new();
    let mut tx = [0u8; MAX_FRAME];
    send(
        link,
        &mut tx,
        &Response::Ready {
            version: PROTOCOL_VERSION,
            nonce: 0,
        },
    );
    loop {
        let mut byte = [0u8];
        match link.read(&mut byte) {
            Ok(1) => {}
            Ok(_) => continue,
            Err(_) => {
                deframer.link_error();
                continue;
            }
        }
        if let Some(frame) = deframer.push(byte[0]) {
            let response = service.answer(frame.and_then(decode::<Request<'_>>));
            send(link, &mut tx, &response);
        }
    }
}

fn send<L: Write>(link: &mut L, tx: &mut [u8; MAX_FRAME], response: &Response<&str>) {
    // Every response fits MAX_MESSAGE (shared's tests check the largest).
    let Ok(frame) = encode(response, tx) else {
        defmt::error!("response does not fit a frame");
        return;
    };
    if link.write_all(frame).and_then(|()| link.flush()).is_err() {
        defmt::warn!("serial write failed");
    }
}
