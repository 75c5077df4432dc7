//! Builds the firmware (its own cargo workspace in `firmware/`) from the host.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The firmware workspace shipped with the project.
pub const FIRMWARE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware");

/// The firmware's compilation target.
pub const TARGET: &str = "thumbv7em-none-eabihf";

/// Which board a firmware build is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// QEMU's netduinoplus2: defmt over semihosting, semihosting exit.
    Qemu,
    /// The QEMU build that also fails on request (`Request::Crash`): for
    /// the tests of its fault reports.
    QemuFaults,
    /// A real STM32F405 board: defmt over RTT, probe-rs runner.
    Board,
}

impl Build {
    fn features(self) -> &'static str {
        match self {
            Build::Qemu => "qemu",
            Build::QemuFaults => "qemu,fault-injection",
            Build::Board => "board",
        }
    }

    /// The build's name: its target directory and ELF (`firmware-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Build::Qemu => "qemu",
            Build::QemuFaults => "qemu-faults",
            Build::Board => "board",
        }
    }
}

/// Build the firmware in release mode and return the ELF's path.
///
/// Runs cargo inside `firmware/` so its `.cargo/config.toml` applies. The
/// variables cargo sets for a host build (`RUSTFLAGS` and friends, a build
/// target) would leak into the thumbv7em build, so they are removed.
///
/// Each build has a target directory of its own (`firmware/target/<build>`):
/// every build links an ELF named `firmware`, and two processes building
/// different features into one directory could each take the other's.
/// Within one, cargo's lock serialises builds of the same features; this
/// process's lock keeps its own threads from copying the ELF at once.
pub fn build(build: Build) -> Result<PathBuf> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let features = build.features();
    let dir = PathBuf::from(FIRMWARE_DIR);
    // Paths without `host/..` in messages.
    let dir = dir.canonicalize().unwrap_or(dir);
    let target_dir = dir.join("target").join(build.name());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&dir)
        .args([
            "build",
            "--release",
            "--no-default-features",
            "--features",
            features,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .map_err(|e| Error::FirmwareBuild {
            features: features.into(),
            detail: format!("cannot run cargo: {e}"),
        })?;
    if !status.success() {
        return Err(Error::FirmwareBuild {
            features: features.into(),
            detail: format!("cargo exited with {status} (is the {TARGET} target installed? `rustup target add {TARGET}`)"),
        });
    }
    let out = target_dir.join(TARGET).join("release");
    let elf = out.join(format!("firmware-{}", build.name()));
    // Atomically: a QEMU started meanwhile (another test, `host profile`)
    // must find the old ELF or the new one, never a half-copied file.
    let built = out.join("firmware");
    files::atomic::write_atomic_with(&elf, |w| {
        std::io::copy(&mut std::fs::File::open(&built)?, w).map(drop)
    })?;
    Ok(elf)
}
