//! A real STM32F405 board: defmt over RTT, read by `probe-rs run`.

use defmt_rtt as _;
use panic_probe as _;

/// The name this build reports.
pub const NAME: &str = "stm32f405";

/// A board has nowhere to return to: report the code and halt for the probe.
pub fn exit(code: i32) -> ! {
    defmt::info!("halted with code {}", code);
    loop {
        cortex_m::asm::bkpt();
    }
}
