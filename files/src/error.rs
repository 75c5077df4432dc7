//! What can go wrong with the workstation's files: each variant names the
//! file or directory and what was wrong with it.

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
    /// An output directory cannot be created or written to.
    #[error("output directory {dir} is not writable: {source}")]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
