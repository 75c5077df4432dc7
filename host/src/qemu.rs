//! Runs the firmware's QEMU build on the emulated STM32F405 (`netduinoplus2`)
//! and decodes its defmt log.
//!
//! QEMU runs with `-icount shift=0`, so one emulated instruction is one tick
//! of the firmware's cost counter, and always under a time limit: a firmware
//! that hangs (or a missing semihosting exit) must fail a test, not stall it.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The emulator binary.
pub const QEMU: &str = "qemu-system-arm";

/// Where the firmware's USART1 goes.
#[derive(Clone, Debug)]
pub enum Serial {
    /// Nowhere: the firmware's serial output is dropped.
    Null,
}

/// How to run the firmware.
#[derive(Clone, Debug)]
pub struct Options {
    /// Kill QEMU and fail after this long.
    pub timeout: Duration,
    /// USART1's connection.
    pub serial: Serial,
    /// The emulator to run (found on `PATH` unless a path is given).
    pub qemu: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options { timeout: Duration::from_secs(60), serial: Serial::Null, qemu: QEMU.into() }
    }
}

/// One decoded defmt log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// `info`, `error`, ... (`None` for `println!`-style frames).
    pub level: Option<String>,
    /// The formatted message.
    pub message: String,
}

/// What a finished QEMU run left behind.
#[derive(Clone, Debug)]
pub struct Run {
    /// QEMU's exit status: the firmware's semihosting exit code.
    pub status: i32,
    /// The firmware's defmt log, decoded.
    pub log: Vec<LogLine>,
    /// QEMU's own diagnostics.
    pub stderr: String,
}

/// The QEMU command line for `elf`, per GUIDE section 4.
fn command(elf: &Path, opts: &Options) -> Command {
    let mut cmd = Command::new(&opts.qemu);
    cmd.args(["-machine", "netduinoplus2", "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0"]);
    match opts.serial {
        Serial::Null => cmd.args(["-serial", "null"]),
    };
    cmd.arg("-kernel").arg(elf);
    cmd
}

/// Run `elf` until it exits through semihosting, then decode its log.
pub fn run(elf: &Path, opts: &Options) -> Result<Run> {
    let elf_bytes = std::fs::read(elf).map_err(|source| Error::Io { path: elf.to_path_buf(), source })?;
    let mut child = command(elf, opts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::QemuMissing,
            _ => Error::Io { path: opts.qemu.clone(), source: e },
        })?;
    // Drain both pipes on their own threads so a chatty QEMU never blocks.
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + opts.timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|source| Error::Io { path: opts.qemu.clone(), source })? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::QemuTimeout { seconds: opts.timeout.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().expect("stdout reader thread");
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader thread")).into_owned();
    let log = decode_defmt(&elf_bytes, &stdout).map_err(|problem| Error::Defmt { elf: elf.to_path_buf(), problem })?;
    // A signal (our kill, a crash) leaves no code: report it as -1.
    Ok(Run { status: status.code().unwrap_or(-1), log, stderr })
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Decode a complete defmt byte stream with the table in `elf`.
pub fn decode_defmt(elf: &[u8], stream: &[u8]) -> std::result::Result<Vec<LogLine>, String> {
    let table = defmt_decoder::Table::parse(elf)
        .map_err(|e| format!("cannot read the defmt table: {e}"))?
        .ok_or("the ELF has no .defmt section (not a defmt firmware?)")?;
    let mut decoder = table.new_stream_decoder();
    decoder.received(stream);
    let mut lines = Vec::new();
    loop {
        match decoder.decode() {
            Ok(frame) => lines.push(LogLine {
                level: frame.level().map(|l| l.as_str().to_owned()),
                message: frame.display_message().to_string(),
            }),
            Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
            Err(defmt_decoder::DecodeError::Malformed) => {
                return Err(format!("malformed defmt frame after {} decoded lines", lines.len()))
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_emulator_is_named_with_how_to_install_it() {
        let opts = Options { qemu: "qemu-system-arm-that-does-not-exist".into(), ..Options::default() };
        let err = run(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").as_path(), &opts).unwrap_err();
        assert!(matches!(err, Error::QemuMissing), "{err}");
        assert!(err.to_string().contains("apt-get install"), "{err}");
    }

    #[test]
    fn a_stream_that_is_not_defmt_is_reported() {
        assert!(decode_defmt(b"not an elf", b"").unwrap_err().contains("defmt table"));
    }
}
