//! The serial link's receiving side on arbitrary bytes: the deframer, the
//! request decoder and the server that answers (`shared::server::serve`,
//! the firmware's own loop, with every network's model). It must answer
//! every frame with exactly one decodable response, never panic or hang,
//! and keep serving.
//!
//! The input is the byte stream, cut into reads of varying length (the
//! first byte seeds the lengths), with a read error wherever a chunk length
//! comes out as zero.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::model::ModelSpec;
use shared::nets::{Arena, ARENA_BYTES};
use shared::protocol::{decode, CostUnit, ErrorCode, Response, MAX_ENCODED};
use shared::server::{serve, CostCounter, Log, Models, Service};
use shared::NetId;
use std::sync::OnceLock;

fn models() -> &'static Models<'static> {
    static MODELS: OnceLock<Models<'static>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let files =
            NetId::ALL.map(|net| &*Vec::leak(ModelSpec::synthetic(net, 3).encode().unwrap()));
        let mut m = Models::new(files);
        for net in NetId::ALL {
            m.load(net).unwrap();
        }
        m
    })
}

struct Link<'a> {
    rest: &'a [u8],
    cuts: u32,
    output: Vec<u8>,
}

impl embedded_io::ErrorType for Link<'_> {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Link<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.rest.is_empty() {
            return Ok(0);
        }
        // xorshift: the next read's length, 0 being a read error.
        self.cuts ^= self.cuts << 13;
        self.cuts ^= self.cuts >> 17;
        self.cuts ^= self.cuts << 5;
        let n = (self.cuts % 48) as usize;
        if n == 0 {
            return Err(embedded_io::ErrorKind::Other);
        }
        let n = n.min(buf.len()).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

impl embedded_io::Write for Link<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

struct Counter;

impl CostCounter for Counter {
    const UNIT: CostUnit = CostUnit::Instructions;
    fn now(&self) -> u32 {
        0
    }
}

struct Quiet;

impl Log for Quiet {
    fn refused(&mut self, _: ErrorCode) {}
    fn send_failed(&mut self) {
        panic!("a response did not fit its frame");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut link = Link {
        rest: stream,
        cuts: u32::from(seed) | 0x100,
        output: Vec::new(),
    };
    let mut arena = Box::new(Arena::<ARENA_BYTES>::new());
    let mut service = Service {
        models: models(),
        arena: &mut arena,
        counter: Counter,
        board: "fuzz",
        clock_hz: 1,
        stack: || (0, 0),
        crash: None,
    };
    serve(&mut link, &mut service, &mut Quiet);
    // Every response decodes; there is at most one per delimiter seen.
    let mut responses = 0;
    for frame in link.output.split_mut(|&b| b == 0).filter(|f| !f.is_empty()) {
        assert!(frame.len() <= MAX_ENCODED);
        decode::<Response<String>>(frame).expect("the server's responses decode");
        responses += 1;
    }
    let delimiters = stream.iter().filter(|&&b| b == 0).count();
    assert!(
        responses <= delimiters + 1,
        "{responses} responses to {delimiters} delimiters"
    );
});
