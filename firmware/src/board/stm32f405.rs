//! A real STM32F405 board: 168 MHz from the PLL, defmt over RTT (read by
//! `probe-rs run`), and the DWT cycle counter.

use cortex_m::peripheral::DWT;
use defmt_rtt as _;
use shared::protocol::CostUnit;
use shared::server::CostCounter;
use stm32f4xx_hal::pac::{self, TIM2};
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::{Clocks, CFGR};
use stm32f4xx_hal::serial::Serial;

/// The name this build reports.
pub const NAME: &str = "stm32f405";

/// 168 MHz (the chip's maximum) from the PLL fed by the internal 16 MHz
/// oscillator, so that no particular crystal is assumed; the HAL picks the
/// bus dividers and flash wait states.
pub fn clocks(cfgr: CFGR) -> Clocks {
    cfgr.sysclk(168.MHz()).freeze()
}

/// The DWT cycle counter (32 bits: wraps after 25 s at 168 MHz, far
/// longer than an inference).
pub struct Counter;

impl Counter {
    /// Enable tracing and the cycle counter (TIM2 is not needed here).
    pub fn new(_tim2: TIM2, mut core: cortex_m::Peripherals, _clocks: &Clocks) -> Counter {
        core.DCB.enable_trace();
        core.DWT.enable_cycle_counter();
        Counter
    }
}

impl CostCounter for Counter {
    const UNIT: CostUnit = CostUnit::Cycles;

    #[inline(always)]
    fn now(&self) -> u32 {
        DWT::cycle_count()
    }
}

/// A board polls the receiver: nothing to set up.
pub fn wake_on_rx(_serial: &mut Serial<pac::USART1, u8>) {}

/// A board polls the receiver without sleeping: sleep would cost the debug
/// probe its access (and RTT its log) unless DBGMCU is set up for it.
pub fn idle() {}

/// After a fault (reported): reset, and serve again.
pub fn after_fault() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// A board has nowhere to return to: report the code and halt for the probe.
pub fn exit(code: i32) -> ! {
    defmt::info!("halted with code {}", code);
    loop {
        cortex_m::asm::bkpt();
    }
}
