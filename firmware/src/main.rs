//! MNIST inference firmware for an STM32F405 (Cortex-M4F), real or emulated.
#![no_std]
#![no_main]

mod board;

use cortex_m_rt::entry;
use shared::arch;

#[entry]
fn main() -> ! {
    defmt::info!(
        "mnist-cortex-m firmware booted on {=str}: input {=usize}x{=usize}, {=usize} classes",
        board::NAME,
        arch::IMAGE_SIDE,
        arch::IMAGE_SIDE,
        arch::CLASSES
    );
    board::exit(0)
}
