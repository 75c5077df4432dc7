//! `host train` and `host bench`.

use super::quant::export_one;
use super::{
    at_least_one, display_path, learning_rate, parse_batch, set_threads, thread_count, DataArgs,
    NetChoice,
};
use anyhow::Result;
use clap::Args;
use files::mnist::Dataset;
use host::quant::export;
use host::train::modules::Net;
use host::train::report::{self, TrainLog};
use host::train::schedule::Schedule;
use host::train::{self, DataId, Start};
use host::with_net;
use shared::NetId;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct BenchArgs {
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
    /// Instead of whole steps: each layer's forward and forward + backward
    /// time at batch 128 (the seed networks' shapes).
    #[arg(long, conflicts_with_all = ["kernels", "json"])]
    layers: bool,
    /// Instead of whole steps: each conv's kernels on raw slices at batch
    /// 128, by input-gradient path.
    #[arg(long, conflicts_with = "json")]
    kernels: bool,
    /// With --layers or --kernels: only the rows whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

#[derive(Args, Clone, serde::Serialize)]
pub(crate) struct TrainArgs {
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

pub(crate) fn bench_command(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(
        args.only.is_none() || args.layers || args.kernels,
        "--only selects rows of --layers or --kernels"
    );
    set_threads(args.threads)?;
    if args.layers || args.kernels {
        println!("threads: {}", rayon::current_num_threads());
        let only = args.only.as_deref();
        if args.layers {
            host::train::ops::timing::layers(only);
        } else {
            host::train::ops::timing::kernels(only);
        }
        return Ok(());
    }
    let ds = args.data.load()?;
    let mut results = Vec::new();
    for net in args.net.nets() {
        results.push(with_net!(net, M => with_batch!(args.batch, host::train::bench::measure, M, (&ds.train, 3, args.steps))));
    }
    let peak = host::train::memory::run_peak_mib();
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

/// One network's training, its start already built and checked.
type TrainRun = Box<dyn FnOnce(&Dataset, &TrainArgs, &mut TrainLog) -> Result<()>>;

pub(crate) fn train_command(args: TrainArgs) -> Result<()> {
    // Everything that can fail on bad input fails here, before training.
    let mut ds = args.data.load()?;
    if let Some(n) = args.limit_train {
        ds.train = ds.train.truncated(n);
    }
    files::atomic::check_writable_dir(&args.out)?;
    let nets = args.net.nets();
    // Hashed once: every network's start and training state use it.
    let data = DataId::of(&ds.train);
    if args.resume {
        for &net in &nets {
            train::state::recover(&args.out, net)?;
        }
    }
    // Each network's start, built once: checked now, trained below.
    let runs = nets
        .iter()
        .map(|&net| {
            with_net!(net, M => start::<M>(&args, &data).map(|start| -> TrainRun {
                Box::new(move |ds, args, log| run(start, ds, args, log))
            }))
        })
        .collect::<Result<Vec<TrainRun>>>()?;
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
    for train in runs {
        train(&ds, &args, &mut log)?;
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
    if let Some(mib) = host::train::memory::run_peak_mib() {
        println!("peak resident memory of this run: {mib:.0} MiB");
    }
    Ok(())
}

/// The starting point for `M`: fresh, or its run in `--out`. With
/// `--resume`, a network with no checkpoint yet starts fresh if another
/// chosen network has one (a `--net all` run stopped before reaching it);
/// if none has, `--out` is likely wrong and resuming fails. Says what will
/// happen.
pub(crate) fn start<M: Net>(args: &TrainArgs, data: &DataId) -> Result<Start<M>> {
    let req = args.requested();
    let name = M::ID.name();
    if !args.resume {
        return Ok(Start::fresh(&req, data));
    }
    let has_checkpoint = |net: NetId| train::checkpoint_path(&args.out, net).exists();
    if !has_checkpoint(M::ID) && args.net.nets().into_iter().any(has_checkpoint) {
        println!(
            "{name}: no checkpoint in {} yet; it will train from the start",
            args.out.display()
        );
        return Ok(Start::fresh(&req, data));
    }
    let start = Start::<M>::resume(&args.out, &req, data)?;
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
    Ok(start)
}

pub(crate) fn run<M: Net>(
    start: Start<M>,
    ds: &Dataset,
    args: &TrainArgs,
    log: &mut TrainLog,
) -> Result<()> {
    let log_path = args.out.join(report::LOG_FILE);
    let (net, params) = (M::ID, M::ID.graph().params());
    // A fresh run starts the network's history over; a resumed one extends it.
    let mut net_log = if start.epochs_done() == 0 {
        report::NetLog::new(net, params)
    } else {
        log.net_mut(net, params).clone()
    };
    let settings = log.settings.clone();
    let save = |net_log: &report::NetLog| -> host::Result<()> {
        let mut snapshot = TrainLog {
            settings: settings.clone(),
            nets: log.nets.clone(),
        };
        *snapshot.net_mut(net, params) = net_log.clone();
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
        &host::train::modules::to_checkpoint(&model),
        ds,
        &args.out,
        export::CALIBRATION_IMAGES,
    )?);
    save(&net_log)?;
    *log.net_mut(net, params) = net_log;
    Ok(())
}
