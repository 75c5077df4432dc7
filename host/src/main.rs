//! `host`: train, export and evaluate the MNIST networks, and run them on the
//! firmware. The commands live in `cli`, one module per job.

mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cli::demo::{demo_command, predict_command, DemoArgs, PredictArgs};
use cli::device::{
    classify_command, profile_command, selftest_digits_command, size_command, ClassifyArgs,
    ProfileArgs, SelftestArgs, SizeArgs,
};
use cli::quant::{
    eval_command, export_command, inspect_command, EvalArgs, ExportArgs, InspectArgs,
};
use cli::train::{bench_command, train_command, BenchArgs, TrainArgs};

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
