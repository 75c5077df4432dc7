//! QEMU netduinoplus2: the reset clock, defmt frames to semihosting stdout
//! (decoded on the host from the ELF), TIM2 as an instruction counter,
//! sleeping while the serial link is quiet, and the exit status through
//! semihosting.

use cortex_m::peripheral::NVIC;
use defmt_semihosting as _;
use shared::protocol::CostUnit;
use shared::server::CostCounter;
use stm32f4xx_hal::pac::{self, Interrupt, TIM2};
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::{Clocks, CFGR};
use stm32f4xx_hal::serial::{Event, Serial};
use stm32f4xx_hal::timer::Timer;

/// The name this build reports.
pub const NAME: &str = "qemu-netduinoplus2";

/// The reset clock (16 MHz HSI): QEMU stubs the RCC, and waiting for HSE
/// or the PLL to lock would spin forever.
pub fn clocks(cfgr: CFGR) -> Clocks {
    cfgr.freeze()
}

/// TIM2 free-running over its full 32 bits. Under `-icount shift=0` QEMU's
/// virtual clock advances 1 ns per instruction and the timer ticks at
/// 1 GHz with prescaler 0, so it counts executed instructions.
pub struct Counter(TIM2);

impl Counter {
    /// Start TIM2 (the core peripherals are not needed here).
    pub fn new(tim2: TIM2, _core: cortex_m::Peripherals, clocks: &Clocks) -> Counter {
        // Timer::new enables and resets TIM2 through the RCC.
        let tim = Timer::new(tim2, clocks).release();
        tim.psc().write(|w| w.psc().set(0));
        tim.arr().write(|w| w.arr().set(u32::MAX));
        // Load the prescaler now, not at the first overflow.
        tim.egr().write(|w| w.ug().set_bit());
        tim.cr1().modify(|_, w| w.cen().set_bit());
        Counter(tim)
    }
}

impl CostCounter for Counter {
    const UNIT: CostUnit = CostUnit::Instructions;

    #[inline(always)]
    fn now(&self) -> u32 {
        self.0.cnt().read().bits()
    }
}

/// Let a received byte wake the core from WFI.
///
/// Why: with `-icount`, QEMU runs a busy-polling guest in long slices and
/// services the serial socket only between them (about 190 us per received
/// byte, measured); a guest asleep in WFI lets it deliver each byte at once
/// (about 50 us). The
/// USART1 interrupt is enabled in the NVIC but masked by PRIMASK for good:
/// a pending interrupt still ends WFI, and no handler ever runs (QEMU, like
/// the hardware, ignores PRIMASK when deciding whether WFI wakes).
pub fn wake_on_rx(serial: &mut Serial<pac::USART1, u8>) {
    cortex_m::interrupt::disable();
    serial.listen(Event::RxNotEmpty);
    // SAFETY: PRIMASK is set, so unmasking cannot run a handler.
    unsafe { NVIC::unmask(Interrupt::USART1) };
}

/// Sleep until USART1 has received a byte (see [`wake_on_rx`]).
pub fn idle() {
    // Forget the byte already read; then sleep only if none has come since
    // (one arriving after this check pends the interrupt again, and WFI
    // returns at once).
    NVIC::unpend(Interrupt::USART1);
    // SAFETY: reads the status register only.
    let rx_not_empty = unsafe { (*pac::USART1::ptr()).sr().read().rxne().bit_is_set() };
    if !rx_not_empty {
        cortex_m::asm::wfi();
    }
}

/// End the emulation with `code` as QEMU's exit status.
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

/// The run is over after a fault (reported): QEMU exits with status 1.
pub fn after_fault() -> ! {
    exit(1)
}
