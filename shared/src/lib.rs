//! What the host trainer and the firmware share: the architecture of both
//! networks as the single source of truth. Later: the model file format and
//! the int8 forward passes.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]

pub mod arch;
pub mod kernels;
pub mod quant;
