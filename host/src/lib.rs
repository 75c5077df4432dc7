//! The workstation's tool, grouped by job:
//!
//! - [`train`]: the dfdx networks and their ops, the training loop,
//!   checkpoints, evaluation and the training report;
//! - [`quant`]: int8 export of a checkpoint and the model inspector;
//! - [`demo`]: pictures of digits made into inputs, `host predict` and the
//!   demo's web page.
//!
//! Two crates it builds on need no dfdx: `files` (MNIST's IDX files,
//! atomic writes) and `device` (the firmware: build, QEMU, serial link, the
//! int8 reference, and the tools that use them: classify, profile, size,
//! self-test digits). The `host` binary's command line (`cli`) is a thin
//! layer over all three.
#![deny(missing_docs)]

pub mod demo;
pub mod error;
pub mod quant;
pub mod train;

pub use error::{Error, Result};
