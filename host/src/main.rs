//! `host`: train, export and evaluate the MNIST networks.

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use host::data::{self, Dataset, Verify};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Train the MNIST networks, quantize them to int8 and run them on a Cortex-M")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train the networks (the default when no command is given).
    Train(TrainArgs),
}

#[derive(Args, Default)]
struct DataArgs {
    /// Directory holding the four IDX files (gzip or raw).
    #[arg(long, default_value = data::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// `mnist` checks the canonical SHA-256 digests; `idx` accepts any IDX
    /// set of 28x28 images and 10 classes (Fashion-MNIST, for instance).
    #[arg(long, value_enum, default_value_t = DatasetKind::Mnist)]
    dataset: DatasetKind,
}

#[derive(Clone, Copy, Default, ValueEnum)]
enum DatasetKind {
    #[default]
    Mnist,
    Idx,
}

impl DataArgs {
    fn load(&self) -> Result<Dataset> {
        let verify = match self.dataset {
            DatasetKind::Mnist => Verify::CanonicalMnist,
            DatasetKind::Idx => Verify::ShapeOnly,
        };
        Ok(Dataset::load(&self.data_dir, verify)?)
    }
}

#[derive(Args, Default)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Train(args)) => train(args),
        None => train(TrainArgs { data: DataArgs { data_dir: data::DEFAULT_DATA_DIR.into(), ..Default::default() } }),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let ds = args.data.load()?;
    println!("data: {} training and {} test images from {}", ds.train.len(), ds.test.len(), args.data.data_dir.display());
    println!("training class counts: {:?}", ds.train.class_counts());
    println!("training lands next (issue 3)");
    Ok(())
}
