//! Everything that differs between a real board and QEMU: clocks, the
//! logger transport, the cost counter and how a run ends (after a fault:
//! a reset, or QEMU's exit) ([`stm32f405`] or [`qemu`], one per build). Both are the same chip,
//! so the USART1 set-up here is common; the rest of the firmware only sees
//! a [`Board`]: an embedded-io link and a
//! [`CostCounter`](shared::server::CostCounter).

#[cfg(all(feature = "board", feature = "qemu"))]
compile_error!("features `board` and `qemu` select the target: enable exactly one (use --no-default-features --features qemu for QEMU)");
#[cfg(not(any(feature = "board", feature = "qemu")))]
compile_error!("enable feature `board` (real STM32F405) or `qemu` (netduinoplus2)");
#[cfg(all(feature = "board", feature = "fault-injection"))]
compile_error!("fault injection is for tests under QEMU, never a board build");

#[cfg(feature = "board")]
mod stm32f405;
#[cfg(feature = "board")]
pub use stm32f405::*;

#[cfg(feature = "qemu")]
mod qemu;
#[cfg(feature = "qemu")]
pub use qemu::*;

use crate::link::NbLink;
use stm32f4xx_hal::pac;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::serial::{config::Config, Serial};

/// The serial link's speed. QEMU ignores it; a USB-serial adapter must
/// match it.
pub const BAUD: u32 = 115_200;

/// The serial port the protocol runs on: USART1, TX on PA9, RX on PA10.
pub type Link = NbLink<Serial<pac::USART1, u8>>;

/// What the board-independent firmware runs on.
pub struct Board {
    /// USART1 as an embedded-io byte stream.
    pub link: Link,
    /// Counts instructions (QEMU) or cycles (a board).
    pub counter: Counter,
    /// The core clock the clocks were set to.
    pub clock_hz: u32,
}

/// Set up clocks, the cost counter and USART1. Called once at boot.
pub fn init() -> Board {
    let (Some(dp), Some(cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        fail("peripherals already taken")
    };
    let clocks = clocks(dp.RCC.constrain().cfgr);
    let counter = Counter::new(dp.TIM2, cp, &clocks);
    let gpioa = dp.GPIOA.split();
    let config = Config::default().baudrate(BAUD.bps());
    let Ok(mut serial) = Serial::new(dp.USART1, (gpioa.pa9, gpioa.pa10), config, &clocks) else {
        fail("USART1 cannot run at the requested baud rate")
    };
    wake_on_rx(&mut serial);
    Board {
        link: NbLink::new(serial, idle),
        counter,
        clock_hz: clocks.sysclk().raw(),
    }
}

/// Log why the firmware cannot go on, and stop.
pub fn fail(why: &str) -> ! {
    defmt::error!("cannot start: {=str}", why);
    exit(1)
}
