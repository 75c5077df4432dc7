//! The firmware fails safe: a panic, a processor fault and a stack overflow,
//! each asked for over the serial link of the QEMU build with fault
//! injection, end in a report (defmt log line and a `Fault` frame naming
//! what happened and where) and QEMU's exit with status 1. The stack
//! overflow faults at the end of RAM (flip-link): it never reaches the
//! statics, so it is reported as one, not as wrong answers.

use device::firmware::{self, Build};
use device::serial::Reply;
use shared::protocol::{ErrorCode, FaultKind, Request};
use std::path::PathBuf;
use std::sync::OnceLock;
use tests::{qemu_elf, reference, start, test_set};

fn faults_elf() -> &'static PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        firmware::build(Build::QemuFaults).expect("build the fault-injection firmware")
    })
}

/// The address range of the firmware's function whose name contains
/// `name` (demangled).
fn function(elf: &[u8], name: &str) -> (u64, u64) {
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(elf).unwrap();
    file.symbols()
        .find(|s| s.name().is_ok_and(|n| n.contains(name)) && s.size() > 0)
        .map(|s| ((s.address() & !1), (s.address() & !1) + s.size()))
        .unwrap_or_else(|| panic!("no function {name} in the ELF"))
}

/// Asks for `how`; returns the fault report and the run's log.
fn crash(how: FaultKind) -> (shared::protocol::Fault<String>, device::qemu::Run) {
    let mut session = start(faults_elf());
    // It serves as usual until then.
    let image = test_set().image(0);
    let want = reference(shared::NetId::ResNet).predict(image);
    assert_eq!(
        session
            .client()
            .classify(shared::NetId::ResNet, image)
            .unwrap()
            .logits,
        want.logits
    );
    let reply = session.client().request(&Request::Crash(how)).unwrap();
    let Reply::Fault(fault) = reply else {
        panic!("{how:?}: expected a Fault frame, got {reply:?}")
    };
    assert_eq!(fault.kind, how);
    let run = session.wait(std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(
        run.status,
        Some(1),
        "{how:?}: QEMU's exit status; log {:#?}",
        run.log
    );
    (fault, run)
}

fn error_lines(run: &device::qemu::Run) -> Vec<&str> {
    run.log
        .iter()
        .filter(|l| l.level.as_deref() == Some("error"))
        .map(|l| l.message.as_str())
        .collect()
}

#[test]
fn a_panic_is_reported_with_its_message_and_location() {
    let (fault, run) = crash(FaultKind::Panic);
    assert!(
        fault.message.contains("a panic asked for by the host")
            && fault.message.contains("src/fault.rs:"),
        "{fault:?}"
    );
    let errors = error_lines(&run);
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with("panic: ") && l.contains("a panic asked for by the host")),
        "{errors:?}"
    );
}

#[test]
fn a_hard_fault_is_reported_with_its_pc() {
    let (fault, run) = crash(FaultKind::HardFault);
    let elf = std::fs::read(faults_elf()).unwrap();
    let (lo, hi) = function(&elf, "fault5crash");
    assert!(
        (lo..hi).contains(&u64::from(fault.pc)),
        "PC {:#010x} is not in crash ({lo:#x}..{hi:#x})",
        fault.pc
    );
    let errors = error_lines(&run);
    let line = format!("HardFault at PC {:#010x}", fault.pc);
    assert!(errors.iter().any(|l| l.starts_with(&line)), "{errors:?}");
}

#[test]
fn a_stack_overflow_faults_instead_of_corrupting_data() {
    let (fault, run) = crash(FaultKind::StackOverflow);
    // The push that overflowed wrote below RAM.
    assert!(
        fault.address < 0x2000_0000 || fault.address == 0,
        "{fault:?}"
    );
    let errors = error_lines(&run);
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with("stack overflow: the stack ran out of RAM")),
        "{errors:?}"
    );
}

#[test]
fn the_usual_build_does_not_crash_on_request() {
    let mut session = start(qemu_elf());
    let reply = session
        .client()
        .request(&Request::Crash(FaultKind::Panic))
        .unwrap();
    assert_eq!(reply, Reply::Error(ErrorCode::Unsupported));
    let info = session.client().info().unwrap();
    assert!(info.stack_used > 0);
}
