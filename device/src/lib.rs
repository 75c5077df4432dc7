//! The host's side of the firmware, and the tools that use it: building it
//! ([`firmware`]), running it under QEMU ([`qemu`]), the serial client
//! ([`serial`]), streaming test images to it ([`classify`]), its per-layer
//! profile ([`profile`]), its size ([`size`]) against the chip's flash and
//! RAM from probe-rs's target database ([`chip`]) and the boot self-test's
//! digits ([`selftest`]).
//!
//! The firmware's answers are checked against [`reference`]: `shared`'s
//! int8 forward passes on the same model files, run on the workstation.
//!
//! [`Device`] is the device itself: a board on a serial port, or the QEMU
//! build running under QEMU. One type for the commands that take either
//! (`--port DEV` or `--qemu`).
//!
//! Nothing here trains, so this crate (and the integration tests that
//! drive QEMU through it) builds without dfdx.
#![deny(missing_docs)]

pub mod chip;
pub mod classify;
pub mod error;
pub mod firmware;
pub mod profile;
pub mod qemu;
pub mod reference;
pub mod selftest;
pub mod serial;
pub mod size;

pub use error::{Error, Result};
use qemu::Session;
use serial::Client;
use shared::arch::IMAGE_PIXELS;
use shared::protocol::{Classification, Info, Profile};
use shared::NetId;
use std::path::Path;
use std::time::Duration;

/// A running firmware and a protocol client connected to it.
pub enum Device {
    /// A board (or a pseudo-terminal) on a serial port.
    Port(Box<Client<Box<dyn serialport::SerialPort>>>),
    /// The QEMU build under QEMU (stopped when dropped).
    Qemu(Box<Session>),
}

impl Device {
    /// The board on `port` (pinged until it answers), or with `qemu` the
    /// QEMU build (built, then booted); `None` if neither is asked for.
    /// Every exchange may take up to `timeout`.
    pub fn open(
        port: Option<&Path>,
        baud: u32,
        qemu: bool,
        timeout: Duration,
    ) -> Result<Option<Device>> {
        Ok(match (port, qemu) {
            (Some(port), _) => Some(Device::Port(Box::new(Client::open_serial(
                port, baud, timeout,
            )?))),
            (None, true) => Some(Device::Qemu(Box::new(qemu::boot(timeout)?))),
            (None, false) => None,
        })
    }

    /// The firmware's board, clock, cost unit and models.
    pub fn info(&mut self) -> Result<Info<String>> {
        match self {
            Device::Port(c) => c.info(),
            Device::Qemu(s) => s.client().info(),
        }
    }

    /// One classification, with its cost.
    pub fn classify(&mut self, net: NetId, pixels: &[u8; IMAGE_PIXELS]) -> Result<Classification> {
        match self {
            Device::Port(c) => c.classify(net, pixels),
            Device::Qemu(s) => s.client().classify(net, pixels),
        }
    }

    /// One classification with the cost of every step.
    pub fn profile(&mut self, net: NetId, pixels: &[u8; IMAGE_PIXELS]) -> Result<Profile<String>> {
        match self {
            Device::Port(c) => c.profile(net, pixels),
            Device::Qemu(s) => s.client().profile(net, pixels),
        }
    }
}
