//! The serial port as an embedded-io byte stream, over the embedded-hal-nb
//! traits any HAL's UART implements.
//!
//! (The HAL's own embedded-io `Write` returns `Ok(0)` while the transmitter
//! is busy, which `write_all` turns into a panic; this adapter blocks.)

use embedded_hal_nb::serial;

/// A serial port `S` as [`embedded_io::Read`] + [`embedded_io::Write`].
pub struct NbLink<S> {
    serial: S,
    idle: fn(),
}

impl<S> NbLink<S> {
    /// `serial`, calling `idle` whenever a read finds no byte yet (to sleep
    /// until one arrives, say).
    pub fn new(serial: S, idle: fn()) -> Self {
        NbLink { serial, idle }
    }
}

/// The port reported an error: for a receiver, bytes were lost (overrun,
/// framing, noise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkError(pub serial::ErrorKind);

impl embedded_io::Error for LinkError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<S> embedded_io::ErrorType for NbLink<S> {
    type Error = LinkError;
}

impl<S: serial::Read<u8>> embedded_io::Read for NbLink<S> {
    /// Blocks until one byte has arrived and returns it: a UART without a
    /// FIFO never has more than one waiting, and returning at once keeps a
    /// receive error tied to the byte it spoiled.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        let Some(slot) = buf.first_mut() else {
            return Ok(0);
        };
        loop {
            match self.serial.read() {
                Ok(byte) => {
                    *slot = byte;
                    return Ok(1);
                }
                Err(nb::Error::WouldBlock) => (self.idle)(),
                Err(nb::Error::Other(e)) => return Err(LinkError(serial::Error::kind(&e))),
            }
        }
    }
}

impl<S: serial::Write<u8>> embedded_io::Write for NbLink<S> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        for &b in buf {
            nb::block!(self.serial.write(b)).map_err(|e| LinkError(serial::Error::kind(&e)))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        nb::block!(self.serial.flush()).map_err(|e| LinkError(serial::Error::kind(&e)))
    }
}
