//! The commands that use the firmware: `classify`, `size`, `profile` and
//! `selftest-digits`.

use super::{at_least_one, DataArgs, NetChoice};
use anyhow::{Context, Result};
use clap::Args;
use device::chip;
use device::classify::Report;
use device::firmware;
use device::qemu;
use device::reference::Reference;
use device::serial::Client;
use device::size::SizeReport;
use files::mnist::Split;
use host::quant::inspect::BufferPlan;
use shared::protocol::ModelStatus;
use shared::NetId;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub(crate) struct ProfileArgs {
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
pub(crate) struct ClassifyArgs {
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
    #[arg(long, default_value = device::reference::MODEL_DIR)]
    models: PathBuf,
    /// Seconds to wait for the firmware to answer (and, with --qemu, to boot).
    #[arg(long, default_value_t = 60, value_parser = at_least_one::<u64>)]
    timeout: u64,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
pub(crate) struct SizeArgs {
    /// The ELF to report on [default: build the board firmware].
    #[arg(long)]
    elf: Option<PathBuf>,
    /// Do not boot the QEMU build to measure the stack.
    #[arg(long)]
    no_stack: bool,
}

#[derive(Args)]
pub(crate) struct SelftestArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The file to write.
    #[arg(long, default_value = device::selftest::DIGITS_FILE)]
    out: PathBuf,
}

pub(crate) fn selftest_digits_command(args: SelftestArgs) -> Result<()> {
    let ds = args.data.load()?;
    let source = device::selftest::render(&ds.test)?;
    files::atomic::write_atomic(&args.out, source.as_bytes())?;
    println!("wrote {}", args.out.display());
    Ok(())
}

pub(crate) fn classify_command(args: ClassifyArgs) -> Result<()> {
    let test = args.data.load()?.test;
    let timeout = Duration::from_secs(args.timeout);
    if let Some(port) = &args.port {
        let mut client = Client::open_serial(port, args.baud, timeout)
            .with_context(|| format!("connecting to the firmware on {}", port.display()))?;
        classify_on(&mut client, &args, &test)
    } else {
        let mut session = qemu::boot(timeout)?;
        classify_on(session.client(), &args, &test)
    }
}

pub(crate) fn classify_on<L: std::io::Read + std::io::Write>(
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
    for net in args.net.nets() {
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
            device::classify::stream(client, net, test, n, |i| bar.set_position(i as u64))?;
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

pub(crate) fn size_command(args: SizeArgs) -> Result<()> {
    let elf = match args.elf {
        Some(elf) => elf,
        None => firmware::build(firmware::Build::Board)?,
    };
    let report = SizeReport::of_file(&elf)?;
    let chip = chip::stm32f405();
    chip::check_firmware(Path::new(firmware::FIRMWARE_DIR), chip)?;
    println!(
        "{} ({}, from probe-rs's target database: flash {}, RAM {}; \
         firmware/memory.x and the runner agree)\n{report}",
        elf.display(),
        chip.name,
        chip.flash,
        chip.ram
    );
    for net in NetId::ALL {
        print!("\n{} {}", net.name(), BufferPlan::of(net));
    }
    if !args.no_stack {
        let stack = device::size::measure_stack(
            &firmware::build(firmware::Build::Qemu)?,
            &qemu::Options::default(),
        )?;
        println!(
            "stack high-water mark: {} of {} bytes (QEMU build: boot, self-test, a classification and a profile per network); \
             RAM in use at most {} of {} bytes",
            stack.used,
            stack.size,
            report.static_ram() + u64::from(stack.used),
            chip.ram.len()
        );
    }
    Ok(())
}

pub(crate) fn profile_command(args: ProfileArgs) -> Result<()> {
    debug_assert!(args.qemu, "clap requires --qemu");
    let test = args.data.load()?.test;
    anyhow::ensure!(
        args.image < test.len(),
        "--image {}: the test set has {} images",
        args.image,
        test.len()
    );
    let nets = args.net.nets();
    let mut session = qemu::boot(Duration::from_secs(args.timeout))?;
    let profiles = device::profile::profile(session.client(), &nets, test.image(args.image))
        .with_context(|| {
            format!(
                "profiling test image {} on the firmware under QEMU",
                args.image
            )
        })?;
    drop(session);
    if args.json {
        println!("{}", device::profile::to_json(&profiles));
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
