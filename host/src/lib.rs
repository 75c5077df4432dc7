//! The host side of the project, grouped by job:
//!
//! - [`train`]: MNIST data, the dfdx networks and their ops, the training
//!   loop, checkpoints, evaluation and the training report;
//! - [`quant`]: int8 export of a checkpoint, the model inspector and the
//!   host's int8 reference;
//! - [`device`]: the firmware the host talks to (build, QEMU, serial link)
//!   and the tools that use it (classify, profile, size, self-test digits);
//! - [`demo`]: pictures of digits made into inputs, `host predict` and the
//!   demo's web page.
//!
//! The `host` binary's command line is a thin layer over these.
#![deny(missing_docs)]

pub mod atomic;
pub mod demo;
pub mod device;
pub mod error;
pub mod quant;
pub mod train;

pub use error::{Error, Result};
