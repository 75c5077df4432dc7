//! The host side of the project: MNIST data, training, export, and the
//! tools that talk to the firmware (QEMU runner, serial client).
#![deny(missing_docs)]

pub mod atomic;
pub mod bench;
pub mod checkpoint;
pub mod classify;
pub mod data;
pub mod demo;
pub mod device;
pub mod digit;
pub mod error;
pub mod eval;
pub mod export;
pub mod firmware;
pub mod inspect;
pub mod memory;
pub mod nets;
pub mod ops;
pub mod predict;
pub mod profile;
pub mod qemu;
pub mod reference;
pub mod report;
pub mod schedule;
pub mod selftest;
pub mod serial;
pub mod size;
pub mod train;

pub use error::{Error, Result};
