//! MNIST inference firmware for an STM32F405 (Cortex-M4F), real or
//! emulated: decodes both embedded networks at boot, runs a self-test on
//! ten embedded test digits, then serves classifications over USART1
//! (`shared::protocol`).
#![no_std]
#![no_main]

mod board;
mod cost;
#[cfg(feature = "qemu")]
mod kernel_check;
mod link;
mod models;
mod selftest;
mod selftest_digits;
mod server;
mod stack;

use cortex_m_rt::entry;
use models::Models;
use shared::arch;
use shared::nets::{Arena, ARENA_BYTES};
use static_cell::{ConstStaticCell, StaticCell};

/// The activations of one inference, for any network (the largest plan's
/// arena, which `host size` reports: a static, not on the stack).
static ARENA: ConstStaticCell<Arena<ARENA_BYTES>> = ConstStaticCell::new(Arena::new());

/// The decoded networks (their per-channel arrays; the weights stay in
/// flash).
static MODELS: StaticCell<Models> = StaticCell::new();

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
    let models: &'static mut Models = MODELS.uninit().write(Models::none());
    models.load();
    let models: &'static Models = models;
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
    let service = server::Service {
        models,
        arena,
        counter: board.counter,
        board: board::NAME,
        clock_hz: board.clock_hz,
    };
    server::serve(&mut board.link, service)
}
