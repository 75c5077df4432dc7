//! Runs the firmware's QEMU build on the emulated STM32F405
//! (`netduinoplus2`), with its USART1 connected to the host over loopback
//! TCP, and decodes its defmt log.
//!
//! QEMU runs with `-icount shift=0`, so one emulated instruction is one tick
//! of the firmware's cost counter. The host listens on an ephemeral
//! loopback port first and QEMU connects to it (`server=off`), so no port
//! number is ever guessed. Every wait has a time limit: a firmware that
//! hangs must fail a test, not stall it.

use crate::error::{Error, Result};
use crate::serial::{Client, Handshake};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The emulator binary.
pub const QEMU: &str = "qemu-system-arm";

/// How to run the firmware.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long QEMU may take to connect and the firmware to announce
    /// itself (boot and self-test), and then to answer each request.
    pub timeout: Duration,
    /// The emulator to run (found on `PATH` unless a path is given).
    pub qemu: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(120),
            qemu: QEMU.into(),
        }
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

/// What a QEMU run left behind.
#[derive(Clone, Debug)]
pub struct Run {
    /// QEMU's exit status (the firmware's semihosting exit code), or `None`
    /// if it was still serving when stopped.
    pub status: Option<i32>,
    /// The firmware's defmt log, decoded.
    pub log: Vec<LogLine>,
    /// QEMU's own diagnostics.
    pub stderr: String,
}

/// A running firmware under QEMU and a protocol client connected to it.
/// Dropping it kills QEMU; [`Session::stop`] also returns the log.
pub struct Session {
    child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    elf: PathBuf,
    client: Option<Client<TcpStream>>,
}

/// The QEMU command line for `elf` with USART1 connected to `port`
/// (`netduinoplus2`'s first UART). `nodelay=on`: the firmware writes its responses one
/// byte at a time, and with Nagle's algorithm each exchange waited for the
/// host's delayed ACK (40 ms per request instead of under 2 ms).
fn command(elf: &Path, port: u16, opts: &Options) -> Command {
    let mut cmd = Command::new(&opts.qemu);
    cmd.args([
        "-machine",
        "netduinoplus2",
        "-nographic",
        "-monitor",
        "none",
    ])
    .args([
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
    ])
    .arg("-chardev")
    .arg(format!(
        "socket,id=u0,host=127.0.0.1,port={port},server=off,nodelay=on"
    ))
    .args(["-serial", "chardev:u0"])
    .arg("-kernel")
    .arg(elf);
    cmd
}

/// Build the QEMU firmware ([`Build::Qemu`](crate::firmware::Build::Qemu)) and
/// [`start`] it, each request allowed `timeout`: the device of the
/// commands' `--qemu`.
pub fn boot(timeout: Duration) -> Result<Session> {
    let elf = crate::firmware::build(crate::firmware::Build::Qemu)?;
    start(
        &elf,
        &Options {
            timeout,
            ..Options::default()
        },
    )
}

/// Start `elf` under QEMU and connect to it: returns once the firmware has
/// announced that it serves (after its boot self-test).
pub fn start(elf: &Path, opts: &Options) -> Result<Session> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Serial { source })?;
    let port = listener
        .local_addr()
        .map_err(|source| Error::Serial { source })?
        .port();
    let mut child = command(elf, port, opts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::QemuMissing,
            _ => Error::Io {
                path: opts.qemu.clone(),
                source: e,
            },
        })?;
    // Drain both pipes on their own threads so a chatty QEMU never blocks.
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let mut session = Session {
        child: Some(child),
        stdout: Some(stdout),
        stderr: Some(stderr),
        elf: elf.to_path_buf(),
        client: None,
    };
    let stream = match session.accept(&listener, opts.timeout) {
        Ok(stream) => stream,
        Err(e) => return Err(session.failed(e)),
    };
    if let Err(source) = stream.set_nonblocking(false) {
        return Err(session.failed(Error::Serial { source }));
    }
    match Client::tcp(stream, Handshake::Announced, opts.timeout) {
        Ok(client) => {
            session.client = Some(client);
            Ok(session)
        }
        Err(e) => Err(session.failed(e)),
    }
}

impl Session {
    /// The protocol client.
    pub fn client(&mut self) -> &mut Client<TcpStream> {
        self.client
            .as_mut()
            .expect("a started session has a client")
    }

    /// Stop QEMU (if the firmware is still running) and decode its log.
    pub fn stop(self) -> Result<Run> {
        self.wait(Duration::ZERO)
    }

    /// Wait up to `timeout` for the firmware to end the run itself (after
    /// a fault, say), then stop QEMU if it has not and decode its log.
    pub fn wait(mut self, timeout: Duration) -> Result<Run> {
        self.client = None;
        let mut child = self
            .child
            .take()
            .expect("a session has a child until stopped");
        let deadline = Instant::now() + timeout;
        let status = loop {
            let status = child.try_wait().map_err(|source| Error::Io {
                path: QEMU.into(),
                source,
            })?;
            if status.is_some() || Instant::now() >= deadline {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let stdout = self
            .stdout
            .take()
            .expect("stdout reader")
            .join()
            .expect("stdout reader thread");
        let stderr = self
            .stderr
            .take()
            .expect("stderr reader")
            .join()
            .expect("stderr reader thread");
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        let elf_bytes = std::fs::read(&self.elf).map_err(|source| Error::Io {
            path: self.elf.clone(),
            source,
        })?;
        let log = decode_defmt(&elf_bytes, &stdout).map_err(|problem| Error::Defmt {
            elf: self.elf.clone(),
            problem,
        })?;
        // A signal (our kill, a crash) leaves no code: report it as -1.
        Ok(Run {
            status: status.map(|s| s.code().unwrap_or(-1)),
            log,
            stderr,
        })
    }

    /// Wait for QEMU to connect to `listener`.
    fn accept(&mut self, listener: &TcpListener, timeout: Duration) -> Result<TcpStream> {
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Serial { source })?;
        let deadline = Instant::now() + timeout;
        loop {
            match listener.accept() {
                Ok((stream, _)) => return Ok(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(source) => return Err(Error::Serial { source }),
            }
            let child = self.child.as_mut().expect("running");
            if child
                .try_wait()
                .map_err(|source| Error::Io {
                    path: QEMU.into(),
                    source,
                })?
                .is_some()
            {
                return Err(Error::SerialClosed);
            }
            if Instant::now() >= deadline {
                return Err(Error::QemuTimeout {
                    seconds: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop after a failed start, and explain it with what QEMU and the
    /// firmware said.
    fn failed(self, error: Error) -> Error {
        match self.stop() {
            Ok(run) => Error::QemuFailed {
                error: Box::new(error),
                status: run.status,
                log: run
                    .log
                    .iter()
                    .map(|l| format!("{}: {}", l.level.as_deref().unwrap_or("-"), l.message))
                    .collect(),
                stderr: run.stderr,
            },
            Err(_) => error,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
                return Err(format!(
                    "malformed defmt frame after {} decoded lines",
                    lines.len()
                ))
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
        let opts = Options {
            qemu: "qemu-system-arm-that-does-not-exist".into(),
            ..Options::default()
        };
        let err = start(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("Cargo.toml")
                .as_path(),
            &opts,
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::QemuMissing), "{err}");
        assert!(err.to_string().contains("apt-get install"), "{err}");
    }

    #[test]
    fn a_stream_that_is_not_defmt_is_reported() {
        assert!(decode_defmt(b"not an elf", b"")
            .unwrap_err()
            .contains("defmt table"));
    }
}
