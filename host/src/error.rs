//! The host library's one error type: each variant names the step that
//! failed and the file or value involved.

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
}

/// Shorthand for the host library's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
