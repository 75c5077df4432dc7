//! Both firmware builds link; the QEMU build boots on the emulated
//! STM32F405, decodes every embedded model, runs its self-test on the
//! embedded digits (each prediction checked against the host's), and
//! announces that it serves.

use device::firmware;
use device::qemu::LogLine;
use files::mnist::Split;
use shared::arch;
use shared::NetId;
use std::path::Path;
use tests::{qemu_elf, reference, start, test_set};

fn messages(log: &[LogLine]) -> Vec<&str> {
    log.iter().map(|l| l.message.as_str()).collect()
}

/// The self-test digits' test-set indices, as the firmware source lists them.
fn selftest_indices(test: &Split) -> [usize; arch::CLASSES] {
    device::selftest::indices(test).expect("every class occurs in the test set")
}

#[test]
fn firmware_boots_under_qemu_runs_its_self_test_and_serves() {
    let run = start(qemu_elf())
        .stop()
        .expect("stop QEMU and decode the log");
    assert_eq!(
        run.status, None,
        "the firmware exited instead of serving; QEMU stderr: {}",
        run.stderr
    );
    let lines = messages(&run.log);
    assert!(
        run.log.iter().all(|l| l.level.as_deref() == Some("info")),
        "{:#?}",
        run.log
    );

    // Every expected line is spelled out here, not taken from the firmware.
    assert_eq!(
        lines[0],
        format!(
            "mnist-cortex-m firmware booted on qemu-netduinoplus2: input {s}x{s}, {c} classes",
            s = arch::IMAGE_SIDE,
            c = arch::CLASSES
        )
    );
    let mut next = 1;
    for net in NetId::ALL {
        let bytes = reference(net).bytes().to_vec();
        let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
        assert_eq!(
            lines[next],
            format!(
                "model {}: {} bytes, CRC {crc:#010x}, loaded",
                net.name(),
                bytes.len()
            )
        );
        next += 1;
    }
    let test = test_set();
    for net in NetId::ALL {
        let host = reference(net);
        let mut correct = 0;
        let mut total = 0u64;
        for i in selftest_indices(test) {
            let want = host.predict(test.image(i));
            let label = test.labels[i];
            let prefix = format!(
                "self-test {}: test image {i} label {label} predicted {} logits {:?} cost ",
                net.name(),
                want.class,
                want.logits
            );
            let line = lines[next];
            let cost = line
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(" instructions"))
                .unwrap_or_else(|| {
                    panic!("self-test line\n  {line}\nis not\n  {prefix}N instructions")
                });
            let cost: u64 = cost.parse().expect("cost is a number");
            assert!(
                cost > 10_000,
                "an inference costs more than {cost} instructions"
            );
            total += cost;
            correct += usize::from(want.class == label);
            next += 1;
        }
        assert_eq!(
            lines[next],
            format!(
                "self-test {}: {correct}/{} correct, {} instructions per inference on average",
                net.name(),
                arch::CLASSES,
                total / arch::CLASSES as u64
            )
        );
        eprintln!("{}", lines[next]);
        next += 1;
    }
    // The firmware's own check of its assembly kernels against the
    // references (firmware/src/kernel_check.rs): however many cases it
    // runs, some, and all equal.
    let cases: u32 = lines[next]
        .strip_prefix("kernel check: ")
        .and_then(|l| l.strip_suffix(" cases, fast kernels equal to the references"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a passing kernel check: {}", lines[next]));
    assert!(cases > 0, "{}", lines[next]);
    next += 1;
    let stack = lines[next]
        .strip_prefix("stack high-water mark after the self-test: ")
        .expect(lines[next]);
    eprintln!("{}", lines[next]);
    assert!(stack.ends_with(" bytes"), "{stack}");
    assert_eq!(lines[next + 1], "serving on USART1 at 115200 baud");
    assert_eq!(
        lines.len(),
        next + 2,
        "no more lines: {:#?}",
        &lines[next + 2..]
    );
}

#[test]
fn the_self_test_digits_are_the_first_test_image_of_each_class() {
    let committed =
        std::fs::read_to_string(device::selftest::DIGITS_FILE).expect("read selftest_digits.rs");
    let fresh = device::selftest::render(test_set()).expect("render the digits");
    assert!(
        committed == fresh,
        "{} is stale: regenerate it with `cargo run -p host -- selftest-digits`",
        Path::new(device::selftest::DIGITS_FILE).display()
    );
}

#[test]
fn the_real_board_build_links_for_the_stm32f405() {
    let elf = firmware::build(firmware::Build::Board).expect("build the firmware for a real board");
    let bytes = std::fs::read(&elf).expect("read the board ELF");
    assert_eq!(
        &bytes[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        elf.display()
    );
}
