//! QEMU netduinoplus2: defmt frames go to semihosting stdout (decoded on the
//! host from the ELF), and the exit status reaches QEMU through semihosting.

use defmt_semihosting as _;
// Links cortex-m, whose `critical-section-single-core` feature provides the
// critical section defmt-semihosting needs.
use cortex_m as _;

/// The name this build reports.
pub const NAME: &str = "qemu-netduinoplus2";

/// End the emulation with `code` as QEMU's exit status.
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    exit(101)
}
