//! What the integration tests in `tests/` share: the firmware built once
//! per test binary, QEMU sessions, the MNIST test set, the host's
//! reference predictions and the `host` command line.
#![deny(missing_docs)]

pub mod browser;

use device::classify::{stream, Report};
use device::firmware::{self, Build};
use device::qemu::{self, Session};
use device::reference::{Reference, MODEL_DIR};
use files::mnist::{Dataset, Split, Verify};
use shared::protocol::CostUnit;
use shared::NetId;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The QEMU build's ELF, built on first use (cargo serialises concurrent
/// builds, so parallel tests share one).
pub fn qemu_elf() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        firmware::build(Build::Qemu).unwrap_or_else(|e| panic!("build the firmware for QEMU: {e}"))
    })
}

/// The `host` executable, built on first use. Cargo builds a package's own
/// binaries for its tests only, so this one is built here, by the cargo
/// running the tests, in the same profile and target directory.
pub fn host_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "host",
            "--bin",
            "host",
            "--message-format=json",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run cargo to build host: {e}"));
        assert!(
            out.status.success(),
            "building host failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "host")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the host executable")
    })
}

/// Run `host` with `args` and return what it printed; panics, with its
/// stderr, if it fails.
pub fn host_cli(args: &[&str]) -> String {
    let out = Command::new(host_exe())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", host_exe().display()));
    assert!(
        out.status.success(),
        "host {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("host prints UTF-8")
}

/// Start `elf` under QEMU and wait until it serves.
pub fn start(elf: &Path) -> Session {
    qemu::start(elf, &qemu::Options::default())
        .unwrap_or_else(|e| panic!("start the firmware under QEMU: {e}"))
}

/// The MNIST test split.
pub fn test_set() -> &'static Split {
    static TEST: OnceLock<Split> = OnceLock::new();
    TEST.get_or_init(|| {
        Dataset::load(
            Path::new(files::mnist::DEFAULT_DATA_DIR),
            Verify::CanonicalMnist,
        )
        .unwrap_or_else(|e| panic!("load MNIST: {e}"))
        .test
    })
}

/// The host's reference for `net`, from the model file the firmware embeds.
pub fn reference(net: NetId) -> Reference {
    Reference::load(Path::new(MODEL_DIR), net)
        .unwrap_or_else(|e| panic!("load the {} model: {e}", net.name()))
}

/// Classify the first `n` test images with `net` on the firmware and on
/// the host, and demand identical classes and logits for every one.
/// Returns the firmware's mean cost per inference (instructions).
pub fn agree_on_test_images(session: &mut Session, net: NetId, n: usize) -> u64 {
    let test = test_set();
    let n = n.min(test.len());
    let started = Instant::now();
    let outcomes = stream(session.client(), net, test, n, |_| ()).unwrap_or_else(|e| {
        panic!(
            "{}: classifying test images on the firmware: {e}",
            net.name()
        )
    });
    let expected = reference(net).predict_first(test, n);
    for (i, (got, want)) in outcomes.iter().zip(&expected).enumerate() {
        let got = got.prediction;
        assert_eq!(
            (got.class, got.logits),
            (want.class, want.logits),
            "{} test image {i}: firmware (class, logits) differ from the host's",
            net.name()
        );
    }
    let report = Report::new(
        net,
        &outcomes,
        test,
        Some(&expected),
        CostUnit::Instructions,
    );
    eprintln!(
        "{report}\n  {:.1} s under QEMU",
        started.elapsed().as_secs_f64()
    );
    report.cost.0
}
