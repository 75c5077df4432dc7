//! What can go wrong talking to the firmware: building it, running it under
//! QEMU, the serial link and the firmware's own answers, and the model files
//! the host's reference reads.

use std::path::PathBuf;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A data file or an output file (see [`files::Error`]).
    #[error(transparent)]
    Files(#[from] files::Error),
    /// The test set lacks a digit the boot self-test needs.
    #[error("the test set has no image of class {class}")]
    NoImageOfClass {
        /// The missing class.
        class: u8,
    },
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Building the firmware failed.
    #[error("building the firmware ({features}) failed: {detail}")]
    FirmwareBuild {
        /// The cargo features of the build.
        features: String,
        /// cargo's exit status or the reason it did not start.
        detail: String,
    },
    /// `qemu-system-arm` is not installed.
    #[error("qemu-system-arm not found on PATH: install it (Debian/Ubuntu: `apt-get install --no-install-recommends qemu-system-arm`)")]
    QemuMissing,
    /// QEMU did not exit in time.
    #[error("QEMU did not exit within {seconds} s (firmware hung or waiting for input)")]
    QemuTimeout {
        /// The time limit.
        seconds: u64,
    },
    /// The firmware under QEMU did not start serving.
    #[error("{error}\nQEMU exit status: {status:?}\nfirmware log:\n{}\nQEMU stderr: {stderr}", log.join("\n"))]
    QemuFailed {
        /// What went wrong on the host's side.
        error: Box<Error>,
        /// QEMU's exit status (`None`: it was still running).
        status: Option<i32>,
        /// The firmware's decoded log, one line per entry.
        log: Vec<String>,
        /// QEMU's diagnostics.
        stderr: String,
    },
    /// The firmware's defmt output could not be decoded.
    #[error("defmt log of {elf}: {problem}")]
    Defmt {
        /// The firmware ELF whose table was used.
        elf: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// The firmware's linker script or runner does not fit the chip.
    #[error("{path}: {problem}")]
    FirmwareConfig {
        /// The file.
        path: PathBuf,
        /// What differs from the chip's description.
        problem: String,
    },
    /// A firmware ELF cannot be read.
    #[error("{path}: not a firmware ELF: {problem}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A serial device cannot be opened.
    #[error("cannot open serial port {port}: {source}")]
    SerialOpen {
        /// The device path.
        port: PathBuf,
        /// The driver's error.
        source: serialport::Error,
    },
    /// Reading from or writing to the serial link failed.
    #[error("serial link: {source}")]
    Serial {
        /// The OS error.
        source: std::io::Error,
    },
    /// The other end closed the link (QEMU exited, the adapter was unplugged).
    #[error("the serial link was closed by the other end")]
    SerialClosed,
    /// Nothing (complete) arrived in time.
    #[error("no {waiting_for} from the firmware within {seconds:.1} s (is it running, and at the same baud rate?)")]
    SerialTimeout {
        /// What the client was waiting for.
        waiting_for: &'static str,
        /// The time limit.
        seconds: f64,
    },
    /// A frame from the firmware could not be decoded.
    #[error("undecodable frame from the firmware: {code}")]
    BadResponse {
        /// What was wrong with it.
        code: shared::protocol::ErrorCode,
    },
    /// A request could not be encoded.
    #[error("request cannot be sent: {code}")]
    BadRequest {
        /// Why.
        code: shared::protocol::ErrorCode,
    },
    /// The firmware answered with an error.
    #[error("the firmware refused the request: {code} ({code:?})")]
    Device {
        /// Its error code.
        code: shared::protocol::ErrorCode,
    },
    /// The firmware failed (and reset, or under QEMU exited).
    #[error("the firmware failed: {report}")]
    DeviceFault {
        /// The firmware's fault report (a panic's message and location, or
        /// a fault's PC and status).
        report: String,
    },
    /// The firmware answered with a different kind of response.
    #[error("expected {expected} from the firmware, got {found}")]
    UnexpectedResponse {
        /// The response expected.
        expected: &'static str,
        /// The response received.
        found: String,
    },
    /// The firmware speaks another protocol version.
    #[error("the firmware speaks protocol version {found}, this host speaks {expected}: rebuild and flash the firmware")]
    ProtocolVersion {
        /// The firmware's version.
        found: u8,
        /// This host's.
        expected: u8,
    },
    /// A model file is malformed, or not the one expected.
    #[error("{path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// The decoder's error, naming what did not match.
        source: shared::Error,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
