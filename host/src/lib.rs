//! The host side of the project: MNIST data, training, export, and the
//! tools that talk to the firmware (QEMU runner, serial client).
#![deny(missing_docs)]

pub mod atomic;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod firmware;
pub mod qemu;
pub mod report;

pub use error::{Error, Result};
