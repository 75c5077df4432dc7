//! The firmware's size on the chip: flash and RAM per ELF section, against
//! the STM32F405RGTx's boot flash and RAM as probe-rs's target database
//! gives them ([`crate::chip`]; the 64 KiB CCM is left out, QEMU does not
//! map it).
//!
//! Flash holds every allocated section with contents (code, constants, the
//! model files, and `.data`'s initial values); RAM holds `.data`, `.bss` and
//! `.uninit`. The stack gets all the rest of RAM, below them (flip-link), so what it
//! needs is measured on the running firmware instead ([`Info::stack_used`](shared::protocol::Info)).

use crate::chip;
use crate::error::{Error, Result};
use crate::qemu;
use object::{Object, ObjectSection, SectionFlags, SectionKind};
use shared::arch::IMAGE_PIXELS;
use shared::NetId;
use std::fmt;
use std::path::Path;

/// `SHF_ALLOC`: the section occupies memory on the target.
const SHF_ALLOC: u64 = 0x2;

/// One allocated section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// `.text`, `.rodata`, ...
    pub name: String,
    /// Run-time address.
    pub address: u64,
    /// Bytes of flash it takes.
    pub flash: u64,
    /// Bytes of RAM it takes.
    pub ram: u64,
}

/// Flash and RAM of one firmware ELF.
#[derive(Clone, Debug)]
pub struct SizeReport {
    /// Every allocated section, in address order.
    pub sections: Vec<Section>,
}

impl SizeReport {
    /// Read the sections of `elf`.
    pub fn of_file(elf: &Path) -> Result<SizeReport> {
        let bytes = std::fs::read(elf).map_err(|source| Error::Io {
            path: elf.to_path_buf(),
            source,
        })?;
        SizeReport::parse(&bytes).map_err(|problem| Error::Elf {
            path: elf.to_path_buf(),
            problem,
        })
    }

    /// Read the sections of an ELF image.
    pub fn parse(elf: &[u8]) -> Result<SizeReport, String> {
        let file = object::File::parse(elf).map_err(|e| e.to_string())?;
        let chip = chip::stm32f405();
        let mut sections = Vec::new();
        for s in file.sections() {
            let SectionFlags::Elf { sh_flags } = s.flags() else {
                continue;
            };
            if sh_flags & SHF_ALLOC == 0 || s.size() == 0 {
                continue;
            }
            let name = s.name().map_err(|e| e.to_string())?.to_string();
            let (address, size) = (s.address(), s.size());
            let has_contents = s.kind() != SectionKind::UninitializedData;
            let in_ram = chip.ram.contains_all(address, size);
            if !in_ram && !chip.flash.contains_all(address, size) {
                return Err(format!(
                    "section {name} ({size} bytes at {address:#010x}) lies neither in the {}'s flash ({}) nor in its RAM ({})",
                    chip.name, chip.flash, chip.ram
                ));
            }
            sections.push(Section {
                name,
                address,
                // A RAM section with contents (.data) is copied from flash at reset.
                flash: if has_contents { size } else { 0 },
                ram: if in_ram { size } else { 0 },
            });
        }
        sections.sort_by_key(|s| s.address);
        Ok(SizeReport { sections })
    }

    /// Bytes of flash used.
    pub fn flash(&self) -> u64 {
        self.sections.iter().map(|s| s.flash).sum()
    }

    /// Bytes of RAM taken by statics; the stack has the rest.
    pub fn static_ram(&self) -> u64 {
        self.sections.iter().map(|s| s.ram).sum()
    }

    /// Bytes of RAM left for the stack.
    pub fn stack_room(&self) -> u64 {
        chip::stm32f405()
            .ram
            .len()
            .saturating_sub(self.static_ram())
    }
}

/// The stack as the running firmware measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackUse {
    /// The high-water mark (bytes).
    pub used: u32,
    /// The stack's size: the RAM below the statics (bytes).
    pub size: u32,
}

/// Boot `elf` (the QEMU build) under QEMU, run one classification and one
/// profile per network (the deepest paths after boot), and read the stack's
/// high-water mark through [`Info`](shared::protocol::Info). Boot (decoding
/// the models, the self-test) is included: the stack is painted at reset.
pub fn measure_stack(elf: &Path, opts: &qemu::Options) -> Result<StackUse> {
    let mut session = qemu::start(elf, opts)?;
    let image = [0u8; IMAGE_PIXELS];
    let client = session.client();
    for net in NetId::ALL {
        client.classify(net, &image)?;
        client.profile(net, &image)?;
    }
    let info = client.info()?;
    session.stop()?;
    Ok(StackUse {
        used: info.stack_used,
        size: info.stack_bytes,
    })
}

fn percent(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole as f64
}

impl fmt::Display for SizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:>10} {:>10} {:>10}",
            "section", "address", "flash", "RAM"
        )?;
        for s in &self.sections {
            writeln!(
                f,
                "{:<14} {:#010x} {:>10} {:>10}",
                s.name, s.address, s.flash, s.ram
            )?;
        }
        let chip = chip::stm32f405();
        writeln!(
            f,
            "{:<25} {:>10} {:>10}   ({:.1}% of {} KiB flash, {:.1}% of {} KiB RAM)",
            "total",
            self.flash(),
            self.static_ram(),
            percent(self.flash(), chip.flash.len()),
            chip.flash.len() / 1024,
            percent(self.static_ram(), chip.ram.len()),
            chip.ram.len() / 1024,
        )?;
        write!(
            f,
            "stack: {} bytes of RAM below the statics (flip-link)",
            self.stack_room()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_an_elf_is_refused() {
        assert!(SizeReport::parse(b"not an elf").is_err());
    }
}
