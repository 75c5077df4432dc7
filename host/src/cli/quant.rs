//! `host export`, `host eval` and `host inspect`.

use super::{at_least_one, read_model, set_threads, thread_count, DataArgs, NetChoice};
use anyhow::Result;
use clap::Args;
use files::mnist::Dataset;
use host::quant::export;
use host::train::checkpoint::Checkpoint;
use host::train::report::{self};
use shared::nets::Model;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ExportArgs {
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
pub(crate) struct EvalArgs {
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
pub(crate) struct InspectArgs {
    /// The model file.
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn export_command(args: ExportArgs) -> Result<()> {
    let ds = args.data.load()?;
    files::atomic::check_writable_dir(&args.out)?;
    for net in args.net.nets() {
        let ckpt_path = host::train::checkpoint_path(&args.out, net);
        let ckpt = Checkpoint::load(&ckpt_path)?;
        ckpt.expect_net(net)?;
        export_one(&ckpt, &ds, &args.out, args.calibration)?;
    }
    Ok(())
}

/// Quantize `ckpt`, write `<out>/<net>.postcard` and report its int8 test
/// accuracy beside the float one.
pub(crate) fn export_one(
    ckpt: &Checkpoint,
    ds: &Dataset,
    out: &std::path::Path,
    calibration: usize,
) -> Result<report::Int8Record> {
    let bytes = export::export(ckpt, &ds.train, calibration)?;
    let path = device::reference::model_path(out, ckpt.net);
    files::atomic::write_atomic(&path, &bytes)?;
    let model = Model::decode(&bytes).map_err(|source| device::Error::Model {
        path: path.clone(),
        source,
    })?;
    let e = host::train::eval::evaluate(&model, Some(ckpt), &ds.test, ds.test.len())?;
    println!(
        "{:<9} int8 model {} ({} bytes): test accuracy {:.2}% (f32 {:.2}%), predictions agree on {:.2}%",
        ckpt.net.name(),
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

pub(crate) fn eval_command(args: EvalArgs) -> Result<()> {
    let bytes = read_model(&args.model)?;
    let model = Model::decode(&bytes).map_err(|source| device::Error::Model {
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
        c.expect_net(model.net())?;
    }
    let ds = args.data.load()?;
    set_threads(args.threads)?;
    let e = host::train::eval::evaluate(
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

pub(crate) fn inspect_command(args: InspectArgs) -> Result<()> {
    let bytes = read_model(&args.file)?;
    let report = host::quant::inspect::inspect(&bytes).map_err(|source| device::Error::Model {
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
