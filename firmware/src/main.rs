//! MNIST inference firmware for an STM32F405 (Cortex-M4F), real or
//! emulated: decodes every embedded network at boot, runs a self-test on
//! ten embedded test digits, then serves classifications over USART1
//! (`shared::protocol`, served by `shared::server`). This crate is the
//! board layer: clocks, logger, counter, the UART, the memory layout.
#![no_std]
#![no_main]

mod board;
mod fault;
#[cfg(feature = "qemu")]
mod kernel_check;
mod link;
mod models;
mod selftest;
mod selftest_digits;
mod stack;

use cortex_m_rt::entry;
use shared::arch;
use shared::nets::{Arena, ARENA_BYTES};
use shared::protocol::ErrorCode;
use shared::server::{self, Models};
use static_cell::{ConstStaticCell, StaticCell};

/// The activations of one inference, for any network (the largest plan's
/// arena, which `host size` reports: a static, not on the stack).
static ARENA: ConstStaticCell<Arena<ARENA_BYTES>> = ConstStaticCell::new(Arena::new());

/// The decoded networks (their per-channel arrays; the weights stay in
/// flash).
static MODELS: StaticCell<Models<'static>> = StaticCell::new();

/// The server's reports, to the log.
struct DefmtLog;

impl server::Log for DefmtLog {
    fn refused(&mut self, code: ErrorCode) {
        defmt::warn!("request refused: {}", defmt::Display2Format(&code));
    }

    fn send_failed(&mut self) {
        defmt::warn!("serial write failed");
    }
}

#[entry]
fn main() -> ! {
    stack::paint();
    let mut board = board::init();
    defmt::info!(
        "mnist-cortex-m firmware booted on {=str}: input {=usize}x{=usize}, {=usize} classes",
        board::NAME,
        arch::IMAGE_SIDE,
        arch::IMAGE_SIDE,
        arch::CLASSES
    );
    // Written in place: no decoded model is copied through the stack.
    let models = MODELS.uninit().write(Models::new(models::FILES));
    models::load(models);
    let models: &'static Models<'static> = models;
    let arena = ARENA.take();
    selftest::run(models, arena, &board.counter);
    // The test build checks its assembly kernels; the board build leaves
    // the check's 100 KB of code out of flash.
    #[cfg(feature = "qemu")]
    kernel_check::log();
    let (used, size) = stack::usage();
    defmt::info!(
        "stack high-water mark after the self-test: {=u32} of {=u32} bytes",
        used,
        size
    );
    defmt::info!("serving on USART1 at {=u32} baud", board::BAUD);
    let mut service = server::Service {
        models,
        arena,
        counter: board.counter,
        board: board::NAME,
        clock_hz: board.clock_hz,
        stack: || {
            let (used, size) = stack::usage();
            (size, used)
        },
        #[cfg(feature = "fault-injection")]
        crash: Some(fault::crash),
        #[cfg(not(feature = "fault-injection"))]
        crash: None,
    };
    server::serve(&mut board.link, &mut service, &mut DefmtLog);
    board::fail("the serial link closed")
}
