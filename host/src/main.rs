//! `host`: train, export and evaluate the MNIST networks.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use host::checkpoint::Checkpoint;
use host::classify::Report;
use host::data::{self, Dataset, Split, Verify};
use host::export;
use host::firmware;
use host::inspect::BufferPlan;
use host::nets::Net;
use host::qemu;
use host::reference::Reference;
use host::report::{self, TrainLog};
use host::schedule::Schedule;
use host::serial::Client;
use host::size::SizeReport;
use host::train::{self, Start};
use host::with_net;
use shared::nets::Model;
use shared::protocol::ModelStatus;
use shared::NetId;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Train the MNIST networks, quantize them to int8 and run them on a Cortex-M"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train the networks (the default when no command is given).
    Train(TrainArgs),
    /// Quantize trained checkpoints to int8 model files.
    Export(ExportArgs),
    /// Test accuracy of an int8 model file (and of its f32 checkpoint).
    Eval(EvalArgs),
    /// Print a model file's header, layers, scales, flash and RAM.
    Inspect(InspectArgs),
    /// Measure milliseconds per training batch and peak memory.
    Bench(BenchArgs),
    /// Write the firmware's self-test digits (the first test image of each class).
    SelftestDigits(SelftestArgs),
    /// Stream test images to the firmware over a serial port (or QEMU) and report
    /// accuracy, agreement with the host and latency.
    Classify(ClassifyArgs),
    /// Report the firmware's flash and RAM by section, the networks' buffer plans
    /// and the stack high-water mark.
    Size(SizeArgs),
    /// Instructions per layer of one inference on the firmware under QEMU.
    Profile(ProfileArgs),
    /// Classify pictures of handwritten digits (PNG, JPEG, PGM) with every
    /// network, on the host and, with a device, on the firmware.
    Predict(PredictArgs),
    /// A local web page: draw a digit, watch the networks (and the device)
    /// classify it.
    Demo(DemoArgs),
}

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
    fn open(&self) -> Result<Option<host::device::Device>> {
        let timeout = Duration::from_secs(self.timeout);
        let device =
            host::device::Device::open(self.port.as_deref(), self.baud, self.qemu, timeout);
        device.context("connecting to the firmware")
    }
}

#[derive(Args)]
struct PredictArgs {
    /// Pictures of handwritten digits: PNG, JPEG or PGM, any size up to 50
    /// megapixels, dark ink on a light background or light on dark.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Which network to run.
    #[arg(long, value_enum, default_value_t = NetChoice::All)]
    net: NetChoice,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
    /// Directory of the model files (the ones the firmware embeds).
    #[arg(long, default_value = host::reference::MODEL_DIR)]
    models: PathBuf,
}

#[derive(Args)]
struct DemoArgs {
    /// Address to serve the page on. The default is loopback only: give
    /// `0.0.0.0:8000` to let other machines (a phone) in.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    device: DeviceArgs,
    /// Directory of the model files (the ones the firmware embeds).
    #[arg(long, default_value = host::reference::MODEL_DIR)]
    models: PathBuf,
}

#[derive(Args)]
struct ProfileArgs {
    /// Build the firmware for QEMU and run it there (required: costs are
    /// instructions only under QEMU's `-icount shift=0`).
    #[arg(long, required = true)]
    qemu: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Which network to profile.
    #[arg(long, value_enum, default_value_t = NetChoice::All)]
    net: NetChoice,
    /// The MNIST test image to classify (index into the test set).
    #[arg(long, default_value_t = 0)]
    image: usize,
    /// Seconds to wait for the firmware to boot and to answer.
    #[arg(long, default_value_t = 120, value_parser = at_least_one::<u64>)]
    timeout: u64,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
struct ClassifyArgs {
    /// Serial device wired to the board's USART1 (a USB-serial adapter, or a /dev/pts/N).
    #[arg(long, required_unless_present = "qemu", conflicts_with = "qemu")]
    port: Option<PathBuf>,
    /// Build the firmware for QEMU and run it there instead of on a board.
    #[arg(long)]
    qemu: bool,
    /// The serial port's speed (the firmware uses 115200, 8N1).
    #[arg(long, default_value_t = 115_200, value_parser = at_least_one::<u32>)]
    baud: u32,
    /// Which network to run.
    #[arg(long, value_enum, default_value_t = NetChoice::All)]
    net: NetChoice,
    /// Test images per network [default: all 10,000].
    #[arg(long, value_parser = at_least_one::<usize>)]
    limit: Option<usize>,
    /// Directory of the model files the firmware embeds (the host's reference runs them).
    #[arg(long, default_value = host::reference::MODEL_DIR)]
    models: PathBuf,
    /// Seconds to wait for the firmware to answer (and, with --qemu, to boot).
    #[arg(long, default_value_t = 60, value_parser = at_least_one::<u64>)]
    timeout: u64,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
struct SizeArgs {
    /// The ELF to report on [default: build the board firmware].
    #[arg(long)]
    elf: Option<PathBuf>,
    /// Do not boot the QEMU build to measure the stack.
    #[arg(long)]
    no_stack: bool,
}

#[derive(Args)]
struct SelftestArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The file to write.
    #[arg(long, default_value = host::selftest::DIGITS_FILE)]
    out: PathBuf,
}

#[derive(Args)]
struct ExportArgs {
    /// Which network to export.
    #[arg(long, value_enum, default_value_t = NetChoice::All)]
    net: NetChoice,
    /// Where the checkpoints (`<net>.safetensors`) are and the model files
    /// (`<net>.postcard`) go.
    #[arg(long, default_value = "artifacts")]
    out: PathBuf,
    /// Training images to calibrate activation ranges on.
    #[arg(long, default_value_t = export::CALIBRATION_IMAGES, value_parser = at_least_one::<usize>)]
    calibration: usize,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
struct EvalArgs {
    /// The int8 model file.
    #[arg(long)]
    model: PathBuf,
    /// The f32 checkpoint to compare with [default: `<model>.safetensors`
    /// beside the model, if there is one].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Evaluate the first N test images only.
    #[arg(long, value_parser = at_least_one::<usize>)]
    limit: Option<usize>,
    /// Worker threads, at most one per core [default: all cores].
    #[arg(long, value_parser = thread_count)]
    threads: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// The model file.
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Which network to measure.
    #[arg(long, value_enum, default_value_t = NetChoice::All)]
    net: NetChoice,
    /// Images per batch (one of 16, 32, 64, 128, 256).
    #[arg(long, default_value_t = 128, value_parser = parse_batch)]
    batch: usize,
    /// Timed steps per network (after 3 untimed ones).
    #[arg(long, default_value_t = 20, value_parser = at_least_one::<usize>)]
    steps: usize,
    /// Worker threads, at most one per core [default: all cores].
    #[arg(long, value_parser = thread_count)]
    threads: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone, serde::Serialize)]
struct DataArgs {
    /// Directory holding the four IDX files (gzip or raw).
    #[arg(long, default_value = data::DEFAULT_DATA_DIR)]
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
    fn nets(self) -> Vec<NetId> {
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

#[derive(Args, Clone, serde::Serialize)]
struct TrainArgs {
    /// Which network to train.
    #[arg(long, value_enum, default_value_t = NetChoice::All)]
    net: NetChoice,
    /// Epochs per network [default: 6 for inception, 8 for resnet, 5 for
    /// resnet-identity; resuming, the run's own].
    #[arg(long, value_parser = at_least_one::<usize>)]
    epochs: Option<usize>,
    /// Images per batch (a compile-time shape: one of 16, 32, 64, 128, 256)
    /// [default: 128; resuming, the run's own].
    #[arg(long, value_parser = parse_batch)]
    batch: Option<usize>,
    /// Base learning rate [default: 1e-3 for inception, 1e-2 for resnet,
    /// 2e-3 for resnet-identity; resuming, the run's own].
    #[arg(long, value_parser = learning_rate)]
    lr: Option<f64>,
    /// Learning-rate schedule (`constant` with `--lr 0.01 --epochs 10` is
    /// the seed's recipe) [default: cosine; resuming, the run's own].
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// Worker threads, at most one per core [default: all cores].
    #[arg(long, value_parser = thread_count)]
    threads: Option<usize>,
    #[command(flatten)]
    data: DataArgs,
    /// Where checkpoints, their training state, the log and the pictures go.
    #[arg(long, default_value = "artifacts")]
    #[serde(serialize_with = "display_path")]
    out: PathBuf,
    /// Seeds initial weights and shuffling [default: 0; resuming, the run's own].
    #[arg(long)]
    seed: Option<u64>,
    /// Train on the first N training images only (quick runs).
    #[arg(long, value_parser = at_least_one::<usize>)]
    limit_train: Option<usize>,
    /// Continue the runs saved in `--out` (checkpoint and training state)
    /// where they stopped, with their own settings unless flags change them.
    #[arg(long)]
    resume: bool,
}

impl TrainArgs {
    fn requested(&self) -> train::Requested {
        train::Requested {
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            schedule: self.schedule,
            seed: self.seed,
        }
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| {
        // `host` alone is `host train` with every default.
        match Cli::parse_from(["host", "train"]).command {
            Some(c) => c,
            None => unreachable!("`train` parses to a command"),
        }
    });
    match command {
        Command::Train(args) => train_command(args),
        Command::Export(args) => export_command(args),
        Command::Eval(args) => eval_command(args),
        Command::Inspect(args) => inspect_command(args),
        Command::Bench(args) => bench_command(args),
        Command::SelftestDigits(args) => selftest_digits_command(args),
        Command::Classify(args) => classify_command(args),
        Command::Size(args) => size_command(args),
        Command::Profile(args) => profile_command(args),
        Command::Predict(args) => predict_command(args),
        Command::Demo(args) => demo_command(args),
    }
}

/// The chosen networks' model files in `dir`, checked.
fn references(dir: &std::path::Path, nets: &[NetId]) -> Result<Vec<Reference>> {
    nets.iter()
        .map(|&net| Reference::load(dir, net).context("loading the model files"))
        .collect()
}

fn predict_command(args: PredictArgs) -> Result<()> {
    let refs = references(&args.models, &args.net.nets())?;
    let mut device = args.device.open()?;
    let unit = device
        .as_mut()
        .map(|d| d.info().map(|i| i.cost_unit))
        .transpose()?;
    let mut images = Vec::new();
    let (mut failed, mut differ) = (0, 0);
    for path in &args.images {
        let picture = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| host::digit::Picture::decode(&bytes).map_err(|e| e.to_string()));
        let picture = match picture {
            Ok(p) => p,
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", path.display());
                images.push(serde_json::json!({ "file": path.display().to_string(), "error": e }));
                continue;
            }
        };
        let pixels = host::digit::mnist_input(&picture);
        let answers = host::predict::on_host(&refs, &pixels);
        let on_device = match (&mut device, unit) {
            (Some(d), Some(unit)) => answers
                .iter()
                .map(|h| host::predict::on_device(d, unit, h, &pixels, false))
                .collect::<host::Result<Vec<_>>>()?,
            _ => Vec::new(),
        };
        differ += on_device.iter().filter(|d| !d.equal).count();
        if !args.json {
            println!(
                "{} ({}x{} pixels):",
                path.display(),
                picture.width,
                picture.height
            );
            for (i, h) in answers.iter().enumerate() {
                let mut line = format!(
                    "  {:<16} {}  {:5.1}%",
                    h.net,
                    h.class,
                    100.0 * h.probabilities[usize::from(h.class)]
                );
                if let Some(d) = on_device.get(i) {
                    let same = if d.equal {
                        "equal to the host's"
                    } else {
                        "DIFFERS from the host's"
                    };
                    line += &format!(
                        "   device {} ({same}), {} {}, {:.0} ms",
                        d.class, d.cost, d.unit, d.round_trip_ms
                    );
                }
                println!("{line}");
            }
        }
        images.push(serde_json::json!({
            "file": path.display().to_string(),
            "input": pixels.to_vec(),
            "host": answers,
            "device": (!on_device.is_empty()).then_some(on_device),
        }));
    }
    if args.json {
        println!("{}", serde_json::json!({ "images": images }));
    }
    anyhow::ensure!(
        differ == 0,
        "{differ} device answers differ from the host's"
    );
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} files could not be classified",
        args.images.len()
    );
    Ok(())
}

fn demo_command(args: DemoArgs) -> Result<()> {
    let refs = references(&args.models, &NetId::ALL)?;
    let device = args.device.open()?;
    let with = match &device {
        Some(_) if args.device.qemu => "the QEMU firmware".to_owned(),
        Some(_) => format!(
            "the board on {}",
            args.device
                .port
                .as_deref()
                .unwrap_or(std::path::Path::new("?"))
                .display()
        ),
        None => "no device".to_owned(),
    };
    host::demo::serve(args.listen, refs, device, |addr| {
        use std::io::Write as _;
        println!("demo on http://{addr}/ ({with}); Ctrl-C stops it");
        if !addr.ip().is_loopback() {
            println!("note: {} is reachable from other machines", addr.ip());
        }
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}

fn read_model(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading model file {}", path.display()))
}

fn export_command(args: ExportArgs) -> Result<()> {
    let ds = args.data.load()?;
    host::atomic::check_writable_dir(&args.out)?;
    for net in NetId::ALL.into_iter().filter(|n| args.net.includes(*n)) {
        let ckpt_path = args.out.join(format!("{}.safetensors", net.name()));
        let ckpt = Checkpoint::load(&ckpt_path)?;
        ckpt.expect_net(net.name())?;
        export_one(&ckpt, &ds, &args.out, args.calibration)?;
    }
    Ok(())
}

/// Quantize `ckpt`, write `<out>/<net>.postcard` and report its int8 test
/// accuracy beside the float one.
fn export_one(
    ckpt: &Checkpoint,
    ds: &Dataset,
    out: &std::path::Path,
    calibration: usize,
) -> Result<report::Int8Record> {
    let bytes = export::export(ckpt, &ds.train, calibration)?;
    let path = host::reference::model_path(out, export::net_id(&ckpt.net)?);
    host::atomic::write_atomic(&path, &bytes)?;
    let model = Model::decode(&bytes).map_err(|source| host::Error::Model {
        path: path.clone(),
        source,
    })?;
    let e = host::eval::evaluate(&model, Some(ckpt), &ds.test, ds.test.len())?;
    println!(
        "{:<9} int8 model {} ({} bytes): test accuracy {:.2}% (f32 {:.2}%), predictions agree on {:.2}%",
        ckpt.net,
        path.display(),
        bytes.len(),
        100.0 * e.accuracy,
        100.0 * e.float_accuracy.unwrap_or(f64::NAN),
        100.0 * e.agreement.unwrap_or(f64::NAN)
    );
    Ok(report::Int8Record {
        model_bytes: bytes.len(),
        test_accuracy: e.accuracy,
        agreement: e.agreement.unwrap_or(f64::NAN),
    })
}

fn eval_command(args: EvalArgs) -> Result<()> {
    let bytes = read_model(&args.model)?;
    let model = Model::decode(&bytes).map_err(|source| host::Error::Model {
        path: args.model.clone(),
        source,
    })?;
    let beside = args.model.with_extension("safetensors");
    let ckpt_path = args
        .checkpoint
        .clone()
        .or_else(|| beside.exists().then_some(beside));
    let ckpt = ckpt_path.as_deref().map(Checkpoint::load).transpose()?;
    if let Some(c) = &ckpt {
        c.expect_net(model.net().name())?;
    }
    let ds = args.data.load()?;
    set_threads(args.threads)?;
    let e = host::eval::evaluate(
        &model,
        ckpt.as_ref(),
        &ds.test,
        args.limit.unwrap_or(usize::MAX),
    )?;
    if args.json {
        let mut v = serde_json::to_value(&e)?;
        v["model"] = args.model.display().to_string().into();
        v["checkpoint"] = ckpt_path.map(|p| p.display().to_string()).into();
        println!("{v}");
        return Ok(());
    }
    println!(
        "{}: {} on {} test images: int8 accuracy {:.2}% ({} correct) in {:.2} s ({:.0} images/s)",
        args.model.display(),
        e.net,
        e.images,
        100.0 * e.accuracy,
        e.correct,
        e.seconds,
        e.images as f64 / e.seconds
    );
    if let (Some(f), Some(a), Some(p)) = (e.float_accuracy, e.agreement, &ckpt_path) {
        println!(
            "f32 checkpoint {}: accuracy {:.2}%; int8 and f32 predictions agree on {:.2}%",
            p.display(),
            100.0 * f,
            100.0 * a
        );
    }
    Ok(())
}

fn inspect_command(args: InspectArgs) -> Result<()> {
    let bytes = read_model(&args.file)?;
    let report = host::inspect::inspect(&bytes).map_err(|source| host::Error::Model {
        path: args.file.clone(),
        source,
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// Call `$f::<$net, B>($args)` with the batch size `$batch` as the const `B`.
macro_rules! with_batch {
    ($batch:expr, $($f:ident)::+, $net:ty, ($($arg:expr),*)) => {
        match $batch {
            16 => $($f)::+::<$net, 16>($($arg),*),
            32 => $($f)::+::<$net, 32>($($arg),*),
            64 => $($f)::+::<$net, 64>($($arg),*),
            128 => $($f)::+::<$net, 128>($($arg),*),
            256 => $($f)::+::<$net, 256>($($arg),*),
            b => unreachable!("parse_batch admits only {BATCHES:?}, got {b}"),
        }
    };
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

fn bench_command(args: BenchArgs) -> Result<()> {
    let ds = args.data.load()?;
    set_threads(args.threads)?;
    let mut results = Vec::new();
    for net in args.net.nets() {
        results.push(with_net!(net, M => with_batch!(args.batch, host::bench::measure, M, (&ds.train, 3, args.steps))));
    }
    let peak = host::memory::run_peak_mib();
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "results": results, "peak_rss_mib": peak })
        );
        return Ok(());
    }
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    println!(
        "training step, batch {}, {} threads, {profile} build",
        args.batch,
        rayon::current_num_threads()
    );
    println!(
        "{:<10} {:>12} {:>10} {:>14}",
        "net", "ms/batch", "min ms", "epoch (60k)"
    );
    for r in &results {
        println!(
            "{:<10} {:>12.1} {:>10.1} {:>12.1} s",
            r.net, r.ms_per_batch_median, r.ms_per_batch_min, r.epoch_seconds
        );
    }
    if let Some(p) = peak {
        println!("peak resident memory: {p:.0} MiB");
    }
    Ok(())
}

fn selftest_digits_command(args: SelftestArgs) -> Result<()> {
    let ds = args.data.load()?;
    let source = host::selftest::render(&ds.test)?;
    host::atomic::write_atomic(&args.out, source.as_bytes())?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn classify_command(args: ClassifyArgs) -> Result<()> {
    let test = args.data.load()?.test;
    let timeout = Duration::from_secs(args.timeout);
    if let Some(port) = &args.port {
        let mut client = Client::open_serial(port, args.baud, timeout)
            .with_context(|| format!("connecting to the firmware on {}", port.display()))?;
        classify_on(&mut client, &args, &test)
    } else {
        let elf = firmware::build(firmware::Build::Qemu)?;
        let mut session = qemu::start(
            &elf,
            &qemu::Options {
                timeout,
                ..qemu::Options::default()
            },
        )?;
        classify_on(session.client(), &args, &test)
    }
}

fn classify_on<L: std::io::Read + std::io::Write>(
    client: &mut Client<L>,
    args: &ClassifyArgs,
    test: &Split,
) -> Result<()> {
    let info = client.info()?;
    println!(
        "firmware on {}: {} MHz, costs in {}",
        info.board,
        info.clock_hz / 1_000_000,
        info.cost_unit.name()
    );
    let n = args.limit.unwrap_or(test.len()).min(test.len());
    let mut differ = 0;
    for net in NetId::ALL {
        if !args.net.includes(net) {
            continue;
        }
        if info.models[net as usize] == ModelStatus::Refused {
            println!(
                "{}: the firmware refused its model at boot (see its log); skipped",
                net.name()
            );
            continue;
        }
        let reference = match Reference::load(&args.models, net) {
            Ok(r) => Some(r.predict_first(test, n)),
            Err(e) => {
                eprintln!("no host reference for {}: {e}", net.name());
                None
            }
        };
        let bar = indicatif::ProgressBar::new(n as u64).with_message(net.name());
        bar.set_style(indicatif::ProgressStyle::with_template(
            "{msg:10} {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
        )?);
        let outcomes =
            host::classify::stream(client, net, test, n, |i| bar.set_position(i as u64))?;
        bar.finish_and_clear();
        let report = Report::new(net, &outcomes, test, reference.as_deref(), info.cost_unit);
        println!("{report}");
        differ += report
            .agreement
            .map_or(0, |(agree, _)| report.images - agree);
    }
    anyhow::ensure!(
        differ == 0,
        "{differ} firmware predictions differ from the host's"
    );
    Ok(())
}

fn size_command(args: SizeArgs) -> Result<()> {
    let elf = match args.elf {
        Some(elf) => elf,
        None => firmware::build(firmware::Build::Board)?,
    };
    let report = SizeReport::of_file(&elf)?;
    println!(
        "{} (STM32F405RG: 1 MiB flash, 128 KiB RAM)\n{report}",
        elf.display()
    );
    for net in NetId::ALL {
        print!("\n{} {}", net.name(), BufferPlan::of(net));
    }
    if !args.no_stack {
        let stack = host::size::measure_stack(
            &firmware::build(firmware::Build::Qemu)?,
            &qemu::Options::default(),
        )?;
        println!(
            "stack high-water mark: {} of {} bytes (QEMU build: boot, self-test, a classification and a profile per network); \
             RAM in use at most {} of {} bytes",
            stack.used,
            stack.size,
            report.static_ram() + u64::from(stack.used),
            host::size::RAM.1
        );
    }
    Ok(())
}

fn profile_command(args: ProfileArgs) -> Result<()> {
    debug_assert!(args.qemu, "clap requires --qemu");
    let test = args.data.load()?.test;
    anyhow::ensure!(
        args.image < test.len(),
        "--image {}: the test set has {} images",
        args.image,
        test.len()
    );
    let nets: Vec<NetId> = NetId::ALL
        .into_iter()
        .filter(|&n| args.net.includes(n))
        .collect();
    let elf = firmware::build(firmware::Build::Qemu)?;
    let timeout = Duration::from_secs(args.timeout);
    let mut session = qemu::start(
        &elf,
        &qemu::Options {
            timeout,
            ..qemu::Options::default()
        },
    )?;
    let profiles = host::profile::profile(session.client(), &nets, test.image(args.image))
        .with_context(|| {
            format!(
                "profiling test image {} on the firmware under QEMU",
                args.image
            )
        })?;
    drop(session);
    if args.json {
        println!("{}", host::profile::to_json(&profiles));
        return Ok(());
    }
    println!(
        "test image {} (label {}), costs in instructions (QEMU, -icount shift=0)",
        args.image, test.labels[args.image]
    );
    for p in &profiles {
        println!("\n{p}");
    }
    Ok(())
}

fn train_command(args: TrainArgs) -> Result<()> {
    // Everything that can fail on bad input fails here, before training.
    let mut ds = args.data.load()?;
    if let Some(n) = args.limit_train {
        ds.train = ds.train.truncated(n);
    }
    host::atomic::check_writable_dir(&args.out)?;
    let nets = args.net.nets();
    if args.resume {
        for &net in &nets {
            train::state::recover(&args.out, net.name())?;
        }
    }
    for &net in &nets {
        with_net!(net, M => start::<M>(&args, &ds.train, true).map(drop))?;
    }
    let log_path = args.out.join(report::LOG_FILE);
    // The other networks' history stays in the log.
    let mut log = if log_path.exists() {
        TrainLog::load(&log_path)?
    } else {
        TrainLog::default()
    };
    set_threads(args.threads)?;
    println!(
        "data: {} training and {} test images from {}; {} threads; output in {}",
        ds.train.len(),
        ds.test.len(),
        args.data.data_dir.display(),
        rayon::current_num_threads(),
        args.out.display()
    );

    log.settings = match serde_json::to_value(&args)? {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("TrainArgs serialises to an object"),
    };
    for net in nets {
        with_net!(net, M => run(start::<M>(&args, &ds.train, false)?, &ds, &args, &mut log))?;
    }
    let pictures = report::plot::write_plots(&args.out, &log)?;
    println!("\n{}", report::summary_table(&log));
    println!(
        "wrote {} and {}",
        log_path.display(),
        pictures
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(mib) = host::memory::run_peak_mib() {
        println!("peak resident memory of this run: {mib:.0} MiB");
    }
    Ok(())
}

/// The starting point for `M`: fresh, or its run in `--out`. With
/// `--resume`, a network with no checkpoint yet starts fresh if another
/// chosen network has one (a `--net all` run stopped before reaching it);
/// if none has, `--out` is likely wrong and resuming fails. `announce`
/// prints what will happen.
fn start<M: Net>(args: &TrainArgs, train_split: &Split, announce: bool) -> Result<Start<M>> {
    let req = args.requested();
    let name = M::ID.name();
    if !args.resume {
        return Ok(Start::fresh(&req));
    }
    let has_checkpoint = |net: NetId| train::checkpoint_path(&args.out, net.name()).exists();
    if !has_checkpoint(M::ID) && args.net.nets().into_iter().any(has_checkpoint) {
        if announce {
            println!(
                "{name}: no checkpoint in {} yet; it will train from the start",
                args.out.display()
            );
        }
        return Ok(Start::fresh(&req));
    }
    let start = Start::<M>::resume(&args.out, &req, train_split)?;
    if announce {
        if start.is_complete() {
            println!(
                "{name}: the checkpoint already has all {} epochs; nothing to train",
                start.epochs_done()
            );
        } else if !start.inexact.is_empty() {
            eprintln!(
                "warning: {name} resumes after epoch {} but will not match an uninterrupted run: {}",
                start.epochs_done(),
                start.inexact.join("; ")
            );
        }
    }
    Ok(start)
}

fn run<M: Net>(start: Start<M>, ds: &Dataset, args: &TrainArgs, log: &mut TrainLog) -> Result<()> {
    let log_path = args.out.join(report::LOG_FILE);
    let (name, params) = (M::ID.name(), M::ID.graph().params());
    // A fresh run starts the network's history over; a resumed one extends it.
    let mut net_log = if start.epochs_done() == 0 {
        report::NetLog::new(name, params)
    } else {
        log.net_mut(name, params).clone()
    };
    let settings = log.settings.clone();
    let save = |net_log: &report::NetLog| -> host::Result<()> {
        let mut snapshot = TrainLog {
            settings: settings.clone(),
            nets: log.nets.clone(),
        };
        *snapshot.net_mut(name, params) = net_log.clone();
        snapshot.save(&log_path)
    };
    let model = if start.is_complete() {
        start.into_model()
    } else {
        with_batch!(
            start.settings.batch,
            train::train,
            M,
            (start, ds, &args.out, true, &mut net_log, save)
        )?
    };
    net_log.int8 = Some(export_one(
        &host::nets::to_checkpoint(&model),
        ds,
        &args.out,
        export::CALIBRATION_IMAGES,
    )?);
    save(&net_log)?;
    *log.net_mut(name, params) = net_log;
    Ok(())
}
