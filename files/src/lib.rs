//! The workstation's files, shared by the trainer (`host`) and the device
//! tools (`device`), neither of which needs the other:
//!
//! - [`mnist`]: the IDX data sets, read (plain or gzipped) and checked
//!   against MNIST's canonical digests;
//! - [`atomic`]: writes that leave the old file or the new one, never half
//!   of either.
#![deny(missing_docs)]

pub mod atomic;
pub mod error;
pub mod mnist;

pub use error::{Error, Result};
