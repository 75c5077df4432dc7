//! The firmware fits the STM32F405RGTx with every network: flash by
//! section, static RAM, and the stack's high-water mark measured on the
//! running firmware, against the chip's flash and RAM from probe-rs's target
//! database.

use device::chip;
use device::firmware::{self, Build};
use device::qemu;
use device::size::{self, SizeReport};
use shared::nets::{arena_bytes, plan};
use shared::NetId;
use tests::{host_cli, qemu_elf, reference};

/// The board build's flash budget: every network and the code
/// (448 KB, read as 448,000 bytes: the stricter reading).
const FLASH_BUDGET: u64 = 448_000;

#[test]
fn the_firmware_fits_the_chip_with_every_network() {
    let elf = firmware::build(Build::Board).expect("build the board firmware");
    let report = SizeReport::of_file(&elf).expect("read the ELF");
    eprintln!("{report}");
    let models: u64 = NetId::ALL
        .iter()
        .map(|&n| reference(n).bytes().len() as u64)
        .sum();
    assert!(report.flash() > models, "every model file is in flash");
    assert!(
        report.flash() <= FLASH_BUDGET,
        "flash: {} bytes, over {FLASH_BUDGET}",
        report.flash()
    );
    // Every section lies in the chip's flash or RAM (checked as the ELF is
    // read); what flash holds is at most the chip's bank.
    let chip = chip::stm32f405();
    let end_of_flash = report
        .sections
        .iter()
        .filter(|s| s.flash > 0 && chip.flash.contains(s.address))
        .map(|s| s.address + s.flash)
        .max()
        .unwrap();
    assert!(end_of_flash <= chip.flash.range.end, "{report}");

    let stack =
        size::measure_stack(qemu_elf(), &qemu::Options::default()).expect("measure the stack");
    eprintln!(
        "stack high-water mark {} of {} bytes",
        stack.used, stack.size
    );
    // The QEMU build's statics are the board build's, give or take the logger.
    let slack = 4096;
    assert!(
        u64::from(stack.size) + slack >= report.stack_room()
            && u64::from(stack.size) <= report.stack_room() + slack
    );
    assert!(stack.used > 1024 && stack.used < stack.size, "{stack:?}");
    assert!(report.static_ram() + u64::from(stack.used) <= chip.ram.len());
}

#[test]
fn host_size_prints_the_buffer_plan_of_every_network() {
    // The board ELF is built here (one build at a time within this process),
    // so that the command does not build it beside the other test.
    let elf = firmware::build(Build::Board).expect("build the board firmware");
    let out = host_cli(&["size", "--no-stack", "--elf", elf.to_str().unwrap()]);
    for net in NetId::ALL {
        let arena = arena_bytes(net);
        let heading = format!(
            "{} activation RAM of one inference: {arena} bytes",
            net.name()
        );
        let at = out
            .find(&heading)
            .unwrap_or_else(|| panic!("no `{heading}` in:\n{out}"));
        let section = &out[at..];
        for region in plan(net).steps.iter().flat_map(|s| s.writes) {
            let row = [
                region.name.to_string(),
                format!("{}..{}", region.offset, region.offset + region.len),
                region.len.to_string(),
                "bytes".into(),
            ];
            assert!(
                section
                    .lines()
                    .any(|l| l.split_whitespace().eq(row.iter().map(String::as_str))),
                "{} lacks the buffer {row:?}:\n{section}",
                net.name()
            );
        }
    }
}
