//! `host predict` and `host demo`.

use super::{DeviceArgs, NetChoice};
use anyhow::{Context, Result};
use clap::Args;
use device::reference::Reference;
use shared::NetId;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct PredictArgs {
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
    #[arg(long, default_value = device::reference::MODEL_DIR)]
    models: PathBuf,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Address to serve the page on. The default is loopback only: give
    /// `0.0.0.0:8000` to let other machines (a phone) in.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    device: DeviceArgs,
    /// Directory of the model files (the ones the firmware embeds).
    #[arg(long, default_value = device::reference::MODEL_DIR)]
    models: PathBuf,
}

/// The chosen networks' model files in `dir`, checked.
pub(crate) fn references(dir: &std::path::Path, nets: &[NetId]) -> Result<Vec<Reference>> {
    nets.iter()
        .map(|&net| Reference::load(dir, net).context("loading the model files"))
        .collect()
}

pub(crate) fn predict_command(args: PredictArgs) -> Result<()> {
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
            .and_then(|bytes| {
                host::demo::digit::Picture::decode(&bytes).map_err(|e| e.to_string())
            });
        let picture = match picture {
            Ok(p) => p,
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", path.display());
                images.push(serde_json::json!({ "file": path.display().to_string(), "error": e }));
                continue;
            }
        };
        let pixels = host::demo::digit::mnist_input(&picture);
        let answers = host::demo::predict::on_host(&refs, &pixels);
        let on_device = match (&mut device, unit) {
            (Some(d), Some(unit)) => answers
                .iter()
                .map(|h| host::demo::predict::on_device(d, unit, h, &pixels, false))
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
                    h.net.name(),
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

pub(crate) fn demo_command(args: DemoArgs) -> Result<()> {
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
