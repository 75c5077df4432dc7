//! What the host trainer and the firmware share: each network's graph as
//! the single source of truth ([`graph`], with the sizes in [`arch`]), the
//! int8 kernels
//! ([`kernels`], [`quant`]), the model file format ([`model`]), the
//! forward passes ([`nets`]: int8 with a static buffer plan, and f32 with
//! feature `std`) and the serial protocol between host and firmware
//! ([`protocol`]: postcard messages in COBS frames) with the firmware's
//! server of it ([`server`]).
//!
//! `no_std`, no heap, no float in the int8 path. Feature `std` adds the
//! model encoder ([`model::ModelSpec`]), the f32 networks
//! ([`nets::float`]) and host-side helpers such as
//! [`quant::quantize_multiplier`].
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]

pub mod arch;
pub mod error;
pub mod graph;
pub mod kernels;
pub mod model;
pub mod nets;
pub mod protocol;
pub mod quant;
pub mod server;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use error::Error;
pub use graph::NetId;
