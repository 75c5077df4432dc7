//! The chip's facts from the field's own database: the STM32F405RGTx's
//! flash and RAM as probe-rs's target description gives them.
//!
//! `targets/STM32F4_Series.yaml` is probe-rs's description of the family,
//! copied verbatim from the probe-rs 0.29.1 crate (MIT OR Apache-2.0); to
//! update it, copy the file from a newer release. It is read with the YAML
//! parser probe-rs reads it with, into the few fields of probe-rs's schema
//! used here ([`Family`]). [`check_firmware`] holds `firmware/memory.x` and
//! the runner's `--chip` to it, and [`crate::size`] measures the firmware
//! against it.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::LazyLock;

/// The chip the firmware is built for, as probe-rs names it.
pub const CHIP: &str = "STM32F405RGTx";

const STM32F4_FAMILY: &str = include_str!("../targets/STM32F4_Series.yaml");

/// A chip family as probe-rs describes it (`probe_rs_target::ChipFamily`),
/// only the fields read here; serde skips the rest.
#[derive(Deserialize)]
struct Family {
    name: String,
    variants: Vec<Variant>,
}

#[derive(Deserialize)]
struct Variant {
    name: String,
    /// The packages of the chip; probe-rs knows the chip by these names
    /// too (or by `name` when there are none).
    #[serde(default)]
    package_variants: Vec<String>,
    memory_map: Vec<MemoryRegion>,
}

/// probe-rs's `MemoryRegion`: YAML tags `!Ram`, `!Nvm`, `!Generic`.
#[derive(Deserialize)]
enum MemoryRegion {
    Ram(RegionDesc),
    Nvm(RegionDesc),
    Generic(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct RegionDesc {
    name: Option<String>,
    range: Range<u64>,
    #[serde(default)]
    access: Access,
}

#[derive(Deserialize, Default)]
struct Access {
    /// The chip boots from this region.
    #[serde(default)]
    boot: bool,
}

/// A named address range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// The database's name (`BANK_1`; `SRAM+SRAM2` for merged regions).
    pub name: String,
    /// Its addresses.
    pub range: Range<u64>,
}

impl Region {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether it is empty (never, for a region of a chip).
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Whether `address` lies in it.
    pub fn contains(&self, address: u64) -> bool {
        self.range.contains(&address)
    }

    /// Whether all `len` bytes from `address` lie in it.
    pub fn contains_all(&self, address: u64, len: u64) -> bool {
        self.contains(address)
            && address
                .checked_add(len)
                .is_some_and(|end| end <= self.range.end)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {:#010x}, {} KiB",
            self.name,
            self.range.start,
            self.len() / 1024
        )
    }
}

/// What the firmware may use of a chip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chip {
    /// probe-rs's name of the chip (a package variant of its family).
    pub name: String,
    /// The flash bank the chip boots from.
    pub flash: Region,
    /// The largest run of contiguous RAM regions: on the STM32F405, SRAM1
    /// and SRAM2. The 64 KiB CCM is a region of its own, which the firmware
    /// leaves out: QEMU's netduinoplus2 does not map it.
    pub ram: Region,
}

impl Chip {
    /// The chip `name` (a package variant, such as `STM32F405RGTx`) in the
    /// family description `yaml`.
    pub fn from_family(yaml: &str, name: &str) -> std::result::Result<Chip, String> {
        let family: Family =
            serde_yaml::from_str(yaml).map_err(|e| format!("not a probe-rs target family: {e}"))?;
        let chip = family
            .variants
            .iter()
            .find(|c| c.name == name || c.package_variants.iter().any(|p| p == name))
            .ok_or_else(|| format!("{} has no chip {name}", family.name))?;
        let name_of = |n: &Option<String>| n.clone().unwrap_or_else(|| "unnamed".into());
        let flash = chip
            .memory_map
            .iter()
            .find_map(|r| match r {
                MemoryRegion::Nvm(nvm) if nvm.access.boot => Some(Region {
                    name: name_of(&nvm.name),
                    range: nvm.range.clone(),
                }),
                _ => None,
            })
            .ok_or_else(|| format!("{name} has no boot flash"))?;
        let mut rams: Vec<Region> = chip
            .memory_map
            .iter()
            .filter_map(|r| match r {
                MemoryRegion::Ram(ram) => Some(Region {
                    name: name_of(&ram.name),
                    range: ram.range.clone(),
                }),
                MemoryRegion::Nvm(_) | MemoryRegion::Generic(_) => None,
            })
            .collect();
        rams.sort_by_key(|r| r.range.start);
        let mut runs: Vec<Region> = Vec::new();
        for r in rams {
            match runs.last_mut() {
                Some(run) if run.range.end == r.range.start => {
                    run.name = format!("{}+{}", run.name, r.name);
                    run.range.end = r.range.end;
                }
                _ => runs.push(r),
            }
        }
        let ram = runs
            .into_iter()
            .max_by_key(Region::len)
            .ok_or_else(|| format!("{name} has no RAM"))?;
        Ok(Chip {
            name: name.into(),
            flash,
            ram,
        })
    }
}

/// The STM32F405RGTx, read once from the embedded database.
pub fn stm32f405() -> &'static Chip {
    static STM32F405: LazyLock<Chip> = LazyLock::new(|| {
        Chip::from_family(STM32F4_FAMILY, CHIP)
            .expect("the embedded target database describes the STM32F405RGTx")
    });
    &STM32F405
}

/// Check the firmware in `dir` against `chip`: its linker script
/// (`memory.x`) must give exactly the chip's boot flash as `FLASH` and its
/// RAM as `RAM`, and its runner (`.cargo/config.toml`) must flash that chip.
pub fn check_firmware(dir: &Path, chip: &Chip) -> Result<()> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mismatch = |path: &Path, problem: String| Error::FirmwareConfig {
        path: path.to_path_buf(),
        problem,
    };

    let path = dir.join("memory.x");
    let regions = memory_x_regions(&read(&path)?).map_err(|p| mismatch(&path, p))?;
    for (name, want) in [("FLASH", &chip.flash), ("RAM", &chip.ram)] {
        let found = regions
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| mismatch(&path, format!("no {name} region")))?;
        if found.1 != want.range {
            return Err(mismatch(
                &path,
                format!(
                    "{name} is {:#010x}..{:#010x}, but the {} has {want} there",
                    found.1.start, found.1.end, chip.name
                ),
            ));
        }
    }

    let path = dir.join(".cargo").join("config.toml");
    let runner = runner_chip(&read(&path)?).map_err(|p| mismatch(&path, p))?;
    if runner != chip.name {
        return Err(mismatch(
            &path,
            format!("the runner flashes {runner}, not the {}", chip.name),
        ));
    }
    Ok(())
}

/// The regions of a GNU linker script's `MEMORY` block: `NAME : ORIGIN =
/// 0x..., LENGTH = 128K` (lengths in bytes, `K` or `M`).
fn memory_x_regions(script: &str) -> std::result::Result<Vec<(String, Range<u64>)>, String> {
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        let (digits, unit) = match s.strip_suffix(['K', 'k']) {
            Some(d) => (d, 1024),
            None => match s.strip_suffix(['M', 'm']) {
                Some(d) => (d, 1024 * 1024),
                None => (s, 1),
            },
        };
        let value = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(hex) => u64::from_str_radix(hex, 16).ok()?,
            None => digits.parse().ok()?,
        };
        value.checked_mul(unit)
    };
    let mut regions = Vec::new();
    for line in script.lines().filter(|l| l.contains("ORIGIN")) {
        let bad = || format!("cannot read the memory region `{}`", line.trim());
        let (name, rest) = line.split_once(':').ok_or_else(bad)?;
        let field = |key: &str| {
            rest.split(',')
                .find_map(|part| part.trim().strip_prefix(key))
                .and_then(|v| number(v.trim_start().strip_prefix('=')?))
        };
        let (origin, length) = (
            field("ORIGIN").ok_or_else(bad)?,
            field("LENGTH").ok_or_else(bad)?,
        );
        // `RAM (rwx) : ...`: the attributes are not part of the name.
        let name = name.split('(').next().unwrap_or(name).trim();
        regions.push((name.to_string(), origin..origin + length));
    }
    Ok(regions)
}

/// The chip named by `--chip` in the runner of a cargo `config.toml`.
fn runner_chip(config: &str) -> std::result::Result<String, String> {
    let runner = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("runner"))
        .ok_or("no runner")?;
    let mut words = runner.split(|c: char| c.is_whitespace() || c == '"' || c == '=');
    words
        .find(|w| *w == "--chip")
        .and_then(|_| words.find(|w| !w.is_empty()))
        .map(str::to_string)
        .ok_or_else(|| format!("the runner `{}` names no --chip", runner.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::FIRMWARE_DIR;

    /// The database's STM32F405RGTx is the chip of its datasheet: 1 MiB of
    /// flash, 112 + 16 KiB of contiguous SRAM.
    #[test]
    fn the_database_describes_the_stm32f405() {
        let chip = stm32f405();
        assert_eq!(chip.flash.range, 0x0800_0000..0x0810_0000);
        assert_eq!(chip.ram.range, 0x2000_0000..0x2002_0000);
        assert_eq!(chip.ram.name, "SRAM+SRAM2");
    }

    #[test]
    fn a_range_lies_in_a_region_only_whole() {
        let flash = &stm32f405().flash;
        assert!(flash.contains_all(0x0800_0000, 1024 * 1024));
        assert!(flash.contains_all(0x080f_fff0, 16));
        assert!(!flash.contains_all(0x080f_fff0, 17));
        assert!(!flash.contains_all(0x07ff_ffff, 2));
        assert!(!flash.contains_all(0x0800_0000, u64::MAX));
    }

    #[test]
    fn the_firmware_is_linked_and_flashed_for_the_chip() {
        check_firmware(Path::new(FIRMWARE_DIR), stm32f405()).unwrap();
    }

    #[test]
    fn a_chip_unknown_to_the_family_is_refused() {
        let e = Chip::from_family(STM32F4_FAMILY, "STM32F999ZZTx").unwrap_err();
        assert!(e.contains("STM32F999ZZTx"), "{e}");
    }

    /// A linker script or runner for another chip is refused, naming the
    /// file and what differs.
    #[test]
    fn a_firmware_for_another_chip_is_refused() {
        let real = Path::new(FIRMWARE_DIR);
        let memory_x = std::fs::read_to_string(real.join("memory.x")).unwrap();
        let config = std::fs::read_to_string(real.join(".cargo/config.toml")).unwrap();
        let try_with = |memory_x: &str, config: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join(".cargo")).unwrap();
            std::fs::write(dir.path().join("memory.x"), memory_x).unwrap();
            std::fs::write(dir.path().join(".cargo/config.toml"), config).unwrap();
            check_firmware(dir.path(), stm32f405()).map_err(|e| e.to_string())
        };
        try_with(&memory_x, &config).unwrap();

        let e = try_with(&memory_x.replace("1024K", "512K"), &config).unwrap_err();
        assert!(
            e.contains("memory.x") && e.contains("FLASH") && e.contains("BANK_1"),
            "{e}"
        );
        let e = try_with(&memory_x.replace("128K", "192K"), &config).unwrap_err();
        assert!(e.contains("memory.x") && e.contains("RAM"), "{e}");
        let e = try_with(&config, &config).unwrap_err();
        assert!(
            e.contains("memory.x") && e.contains("no FLASH region"),
            "{e}"
        );
        let e = try_with(&memory_x, &config.replace(CHIP, "STM32F407VGTx")).unwrap_err();
        assert!(
            e.contains("config.toml") && e.contains("STM32F407VGTx"),
            "{e}"
        );
    }

    #[test]
    fn memory_regions_and_runners_are_read_as_written() {
        let regions = memory_x_regions(
            "MEMORY {\n  FLASH : ORIGIN = 0x08000000, LENGTH = 1M\n  RAM (rwx) : ORIGIN = 536870912, LENGTH = 0x400\n}",
        )
        .unwrap();
        assert_eq!(
            regions,
            [
                ("FLASH".to_string(), 0x0800_0000..0x0810_0000),
                ("RAM".to_string(), 0x2000_0000..0x2000_0400)
            ]
        );
        assert!(memory_x_regions("  RAM : ORIGIN = 0x2000000G, LENGTH = 1K").is_err());
        assert_eq!(
            runner_chip("runner = \"probe-rs run --chip STM32F405RGTx --verify\"").unwrap(),
            "STM32F405RGTx"
        );
        assert!(runner_chip("runner = \"probe-rs run\"").is_err());
    }
}
