//! Two processes building different firmware at the same time each get
//! their own: `host size` (the board build) and `host profile --qemu` (the
//! QEMU build) run together, with a cargo slowed after each build so that
//! the builds overlap the way that once let one take the other's ELF.

use device::firmware::{self, Build};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use tests::host_exe;

fn has_symbol(elf: &[u8], part: &str) -> bool {
    use object::{Object, ObjectSymbol};
    object::File::parse(elf)
        .unwrap()
        .symbols()
        .any(|s| s.name().is_ok_and(|n| n.contains(part)))
}

#[test]
fn two_processes_building_at_once_each_get_their_own_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let slow = dir.path().join("slow-cargo");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\n\"{cargo}\" \"$@\"\nstatus=$?\nsleep 2\nexit $status\n"),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        Command::new(host_exe())
            .args(args)
            .env("CARGO", &slow)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let size = run(&["size", "--no-stack"]);
    let profile = run(&["profile", "--qemu", "--json", "--net", "resnet"]);
    let (size, profile) = (
        size.wait_with_output().unwrap(),
        profile.wait_with_output().unwrap(),
    );
    assert!(
        size.status.success(),
        "{}",
        String::from_utf8_lossy(&size.stderr)
    );
    assert!(
        profile.status.success(),
        "{}",
        String::from_utf8_lossy(&profile.stderr)
    );

    // Each ELF is its build's: only the QEMU build has the boot-time kernel
    // check and semihosting; only the board's has RTT.
    let board = std::fs::read(firmware::build(Build::Board).unwrap()).unwrap();
    let qemu = std::fs::read(firmware::build(Build::Qemu).unwrap()).unwrap();
    assert!(!has_symbol(&board, "kernel_check") && has_symbol(&board, "SEGGER_RTT"));
    assert!(has_symbol(&qemu, "kernel_check") && !has_symbol(&qemu, "SEGGER_RTT"));
    // And `host size` reported the board's.
    let out = String::from_utf8_lossy(&size.stdout);
    let first = out.lines().next().unwrap();
    assert!(
        first.contains("/board/") && first.contains("firmware-board"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_slice(&profile.stdout).unwrap();
    assert!(v["resnet"]["total"].as_u64().unwrap() > 1_000_000, "{v}");
}
