//! What can go wrong training and quantising: each variant names the step
//! that failed and the file or value involved. Data files, output files and
//! the device have their own error types, wrapped here.

use shared::NetId;
use std::path::PathBuf;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A data file or an output file (see [`files::Error`]).
    #[error(transparent)]
    Files(#[from] files::Error),
    /// The firmware, QEMU, the serial link or a model file (see
    /// [`device::Error`]).
    #[error(transparent)]
    Device(#[from] device::Error),
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
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

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
