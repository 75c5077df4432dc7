//! The command line: the arguments and checks every command shares, and
//! one module per job with its commands.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use files::mnist::{self, Dataset, Verify};
use shared::NetId;
use std::path::PathBuf;
use std::time::Duration;

/// Call `$f::<$net, B>($args)` with the batch size `$batch` as the const `B`.
macro_rules! with_batch {
    ($batch:expr, $($f:ident)::+, $net:ty, ($($arg:expr),*)) => {
        match $batch {
            16 => $($f)::+::<$net, 16>($($arg),*),
            32 => $($f)::+::<$net, 32>($($arg),*),
            64 => $($f)::+::<$net, 64>($($arg),*),
            128 => $($f)::+::<$net, 128>($($arg),*),
            256 => $($f)::+::<$net, 256>($($arg),*),
            b => unreachable!("parse_batch admits only {:?}, got {b}", $crate::cli::BATCHES),
        }
    };
}

pub(crate) mod demo;
pub(crate) mod device;
pub(crate) mod quant;
pub(crate) mod train;

/// A firmware to run beside the host: a board on a serial port, or QEMU.
#[derive(Args)]
struct DeviceArgs {
    /// Serial device wired to the board's USART1 (a USB-serial adapter, or a /dev/pts/N).
    #[arg(long, conflicts_with = "qemu")]
    port: Option<PathBuf>,
    /// Build the firmware for QEMU and run it there.
    #[arg(long)]
    qemu: bool,
    /// The serial port's speed (the firmware uses 115200, 8N1).
    #[arg(long, default_value_t = 115_200, value_parser = at_least_one::<u32>)]
    baud: u32,
    /// Seconds to wait for the firmware to answer (and, with --qemu, to boot).
    #[arg(long, default_value_t = 60, value_parser = at_least_one::<u64>)]
    timeout: u64,
}

impl DeviceArgs {
    fn open(&self) -> Result<Option<::device::Device>> {
        let timeout = Duration::from_secs(self.timeout);
        let device = ::device::Device::open(self.port.as_deref(), self.baud, self.qemu, timeout);
        device.context("connecting to the firmware")
    }
}

#[derive(Args, Clone, serde::Serialize)]
struct DataArgs {
    /// Directory holding the four IDX files (gzip or raw).
    #[arg(long, default_value = mnist::DEFAULT_DATA_DIR)]
    #[serde(serialize_with = "display_path")]
    data_dir: PathBuf,
    /// `mnist` checks the canonical SHA-256 digests; `idx` accepts any IDX
    /// set of 28x28 images and 10 classes (Fashion-MNIST, for instance).
    #[arg(long, value_enum, default_value_t = DatasetKind::Mnist)]
    dataset: DatasetKind,
}

#[derive(Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum DatasetKind {
    Mnist,
    Idx,
}

impl DataArgs {
    fn load(&self) -> Result<Dataset> {
        let verify = match self.dataset {
            DatasetKind::Mnist => Verify::CanonicalMnist,
            DatasetKind::Idx => Verify::ShapeOnly,
        };
        Dataset::load(&self.data_dir, verify).context("loading the data set")
    }
}

/// `--net`: one network by its name, or all of them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NetChoice {
    One(NetId),
    All,
}

impl NetChoice {
    /// Every network, then `all`: what `--net` accepts.
    const VARIANTS: [NetChoice; NetId::COUNT + 1] = {
        let mut v = [NetChoice::All; NetId::COUNT + 1];
        let mut i = 0;
        while i < NetId::COUNT {
            v[i] = NetChoice::One(NetId::ALL[i]);
            i += 1;
        }
        v
    };

    fn name(self) -> &'static str {
        match self {
            NetChoice::One(net) => net.name(),
            NetChoice::All => "all",
        }
    }

    fn includes(self, net: NetId) -> bool {
        self == NetChoice::All || self == NetChoice::One(net)
    }

    /// The networks chosen, in id order.
    pub(crate) fn nets(self) -> Vec<NetId> {
        NetId::ALL
            .into_iter()
            .filter(|&n| self.includes(n))
            .collect()
    }
}

impl ValueEnum for NetChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::VARIANTS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

impl serde::Serialize for NetChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Paths in the log as text, even where they are not UTF-8.
fn display_path<S: serde::Serializer>(
    path: &std::path::Path,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// A count that must be at least 1: zero images, epochs or steps would run
/// and report nothing.
fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + From<u8> + PartialOrd,
    T::Err: std::fmt::Display,
{
    let v: T = s.parse().map_err(|e: T::Err| e.to_string())?;
    if v < T::from(1) {
        return Err("must be at least 1".into());
    }
    Ok(v)
}

/// A learning rate: finite and positive (zero trains nothing, a negative
/// rate climbs the loss, NaN poisons the weights at the first step).
fn learning_rate(s: &str) -> Result<f64, String> {
    let lr: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(lr.is_finite() && lr > 0.0) {
        return Err("must be a positive number, such as 1e-3".into());
    }
    Ok(lr)
}

/// Worker threads: 1 up to the cores there are (more only contend).
fn thread_count(s: &str) -> Result<usize, String> {
    let n: usize = at_least_one(s)?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n > cores {
        return Err(format!(
            "this machine runs {cores} threads at once; more would only slow the work down"
        ));
    }
    Ok(n)
}

const BATCHES: [usize; 5] = [16, 32, 64, 128, 256];

fn parse_batch(s: &str) -> Result<usize, String> {
    let b: usize = s.parse().map_err(|e| format!("{e}"))?;
    if BATCHES.contains(&b) {
        Ok(b)
    } else {
        Err(format!(
            "batch sizes are compile-time shapes; choose one of {BATCHES:?}"
        ))
    }
}

fn read_model(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading model file {}", path.display()))
}

fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(threads) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("setting up the thread pool")?;
    }
    Ok(())
}
