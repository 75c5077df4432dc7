//! Everything that differs between a real board and QEMU: the logger
//! transport, the panic handler and how a run ends. The rest of the firmware
//! is board-independent.

#[cfg(all(feature = "board", feature = "qemu"))]
compile_error!("features `board` and `qemu` select the target: enable exactly one (use --no-default-features --features qemu for QEMU)");
#[cfg(not(any(feature = "board", feature = "qemu")))]
compile_error!("enable feature `board` (real STM32F405) or `qemu` (netduinoplus2)");

#[cfg(feature = "board")]
mod stm32f405;
#[cfg(feature = "board")]
pub use stm32f405::*;

#[cfg(feature = "qemu")]
mod qemu;
#[cfg(feature = "qemu")]
pub use qemu::*;
