//! Both firmware builds link, and the QEMU build boots on the emulated STM32F405, logs its
//! greeting through defmt over semihosting, and exits with status 0.

use host::{firmware, qemu};
use shared::arch;

#[test]
fn firmware_boots_under_qemu_and_logs_through_defmt() {
    let elf = firmware::build(firmware::Build::Qemu).expect("build the firmware for QEMU");
    let run = qemu::run(&elf, &qemu::Options::default()).unwrap_or_else(|e| panic!("run QEMU: {e}"));
    assert_eq!(run.status, 0, "firmware exit status; QEMU stderr: {}", run.stderr);

    // The expected line is spelled out here, not taken from the firmware.
    let expected = format!(
        "mnist-cortex-m firmware booted on qemu-netduinoplus2: input {s}x{s}, {c} classes",
        s = arch::IMAGE_SIDE,
        c = arch::CLASSES
    );
    let first = run.log.first().unwrap_or_else(|| panic!("no defmt output; QEMU stderr: {}", run.stderr));
    assert_eq!(first.level.as_deref(), Some("info"));
    assert_eq!(first.message, expected);
}

#[test]
fn the_real_board_build_links_for_the_stm32f405() {
    let elf = firmware::build(firmware::Build::Board).expect("build the firmware for a real board");
    let bytes = std::fs::read(&elf).expect("read the board ELF");
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not an ELF file", elf.display());
}
