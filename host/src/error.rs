//! The host library's one error type: each variant names the step that
//! failed and the file or value involved.

use shared::NetId;
use std::path::PathBuf;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// None of the accepted spellings of a data file exists.
    #[error("{name} not found in {dir} (looked for {name}.gz and {name})")]
    MissingFile {
        /// The data directory.
        dir: PathBuf,
        /// The file's base name, e.g. `train-images-idx3-ubyte`.
        name: &'static str,
    },
    /// A gzip stream is corrupt or cut short.
    #[error("{path}: gzip data is corrupt or truncated: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// An IDX file is malformed.
    #[error("{path}: {problem}")]
    Idx {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        problem: String,
    },
    /// A file's contents differ from the canonical ones.
    #[error("{path}: SHA-256 {actual} does not match the canonical MNIST digest {expected} (file corrupted or tampered with)")]
    Digest {
        /// The file.
        path: PathBuf,
        /// The canonical digest.
        expected: &'static str,
        /// The digest of the bytes read.
        actual: String,
    },
    /// Four valid IDX files of MNIST's shape, none of them MNIST's.
    #[error(
        "{dir}: the four files are valid IDX files of 28x28 images and 10 classes, but none of them is MNIST's \
         (their SHA-256 digests differ from the canonical ones); to use another data set of this shape, \
         such as Fashion-MNIST, pass `--dataset idx`"
    )]
    NotMnist {
        /// The data directory.
        dir: PathBuf,
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
    /// An output directory cannot be created or written to.
    #[error("output directory {dir} is not writable: {source}")]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checkpoint file is malformed or not one of ours.
    #[error("{path}: not a valid checkpoint: {problem}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        problem: String,
    },
    /// A checkpoint holds a different network than the one asked for.
    #[error("the checkpoint holds network `{}`, not `{}`", found.name(), expected.name())]
    WrongNet {
        /// The network asked for.
        expected: NetId,
        /// The network the checkpoint was saved from.
        found: NetId,
    },
    /// A checkpoint's tensors do not match the network's parameters.
    #[error("the `{}` checkpoint does not fit the network: {problem}", net.name())]
    TensorMismatch {
        /// The checkpoint's network.
        net: NetId,
        /// The first missing, extra or mis-shaped tensor.
        problem: String,
    },
    /// A JSON file (e.g. the training log) cannot be parsed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// `--resume` found no usable checkpoint.
    #[error("cannot resume from {path}: {problem}")]
    Resume {
        /// The checkpoint looked for.
        path: PathBuf,
        /// Why it cannot be used.
        problem: String,
    },
    /// A setting cannot work (e.g. fewer images than one batch).
    #[error("{0}")]
    Config(String),
    /// Post-training quantisation could not produce a valid model.
    #[error("quantizing {net}: {problem}")]
    Quantize {
        /// The network.
        net: &'static str,
        /// What went wrong.
        problem: String,
    },
    /// A model file is malformed, or not the one expected.
    #[error("{path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// The decoder's error, naming what did not match.
        source: shared::Error,
    },
    /// Training produced a non-finite loss.
    #[error("{net} diverged in epoch {epoch} (loss is not finite at learning rate {lr:.2e}); try a smaller --lr")]
    Diverged {
        /// The network.
        net: &'static str,
        /// The epoch (from 1).
        epoch: usize,
        /// The learning rate at the time.
        lr: f64,
    },
}

/// Shorthand for the host library's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
