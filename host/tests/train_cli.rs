//! `host train` end to end: bad input fails before any training, a short
//! run writes every output and learns, and `--resume` continues it.

use host::train::checkpoint::Checkpoint;
use host::train::report::TrainLog;
use host::train::state::{self, Found};
use shared::NetId;
use std::path::Path;
use std::process::{Command, Output};

fn host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .output()
        .expect("run host")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `host train` of the ResNet on reduced data into `out`, then `extra`.
fn resnet_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--net",
        "resnet",
        "--limit-train",
        "2560",
        "--batch",
        "64",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

fn train_resnet(out: &Path, extra: &[&str]) -> Output {
    host(&resnet_args(out, extra))
}

#[test]
fn a_missing_data_dir_fails_before_training() {
    let out = tempfile::tempdir().unwrap();
    let run = host(&[
        "train",
        "--data-dir",
        "/nonexistent/mnist",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("/nonexistent/mnist"),
        "{}",
        stderr(&run)
    );
    assert!(
        std::fs::read_dir(out.path()).unwrap().next().is_none(),
        "nothing may be written"
    );
}

#[test]
fn an_unwritable_output_dir_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let run = host(&["train", "--out", file.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("not writable"), "{}", stderr(&run));
}

#[test]
fn a_bad_batch_size_is_refused() {
    let run = host(&["train", "--batch", "100"]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("compile-time shapes"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn resume_refuses_a_checkpoint_of_the_other_network() {
    let out = tempfile::tempdir().unwrap();
    assert!(train_resnet(out.path(), &["--epochs", "1"])
        .status
        .success());
    std::fs::copy(
        out.path().join("resnet.safetensors"),
        out.path().join("inception.safetensors"),
    )
    .unwrap();
    let run = host(&[
        "train",
        "--net",
        "inception",
        "--resume",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(
        err.contains("inception.safetensors") && err.contains("`resnet`"),
        "{err}"
    );
}

#[test]
fn resume_without_a_checkpoint_names_the_missing_file() {
    let out = tempfile::tempdir().unwrap();
    let run = host(&[
        "train",
        "--net",
        "resnet",
        "--resume",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("resnet.safetensors"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_short_run_learns_writes_every_output_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let run = train_resnet(out.path(), &["--epochs", "1"]);
    assert!(run.status.success(), "{}", stderr(&run));
    for file in [
        "resnet.safetensors",
        "train_log.json",
        "training_curves.svg",
        "confusion_resnet.svg",
    ] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // 2,560 images for one epoch: far better than chance (10%) on the full
    // test set if, and only if, the gradients are right.
    let log = TrainLog::load(&out.path().join("train_log.json")).unwrap();
    let first = &log.nets[0].epochs[0];
    assert!(
        first.test_accuracy > 0.80,
        "accuracy after one short epoch: {}",
        first.test_accuracy
    );

    let run = train_resnet(out.path(), &["--epochs", "2", "--resume"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let log = TrainLog::load(&out.path().join("train_log.json")).unwrap();
    let epochs: Vec<usize> = log.nets[0].epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, [1, 2]);
    let ckpt = Checkpoint::load(&out.path().join("resnet.safetensors")).unwrap();
    assert_eq!(ckpt.meta.get("epoch").map(String::as_str), Some("2"));
}

fn peaks(out: &Path, net: &str) -> Vec<f64> {
    let log = TrainLog::load(&out.join("train_log.json")).unwrap();
    let net_log = log
        .nets
        .iter()
        .find(|n| n.net.name() == net)
        .expect("the network's log");
    net_log
        .epochs
        .iter()
        .map(|e| e.peak_rss_mib.expect("a peak on Linux"))
        .collect()
}

#[test]
fn memory_does_not_grow_across_epochs() {
    let out = tempfile::tempdir().unwrap();
    let run = train_resnet(out.path(), &["--epochs", "5"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let peaks = peaks(out.path(), "resnet");
    // Each epoch of 40 steps and an evaluation once leaked about 50 MiB; a
    // tenth of the first epoch's peak is far above noise and far below that.
    let limit = peaks[0] * 1.10;
    assert!(
        peaks.iter().all(|&p| p <= limit),
        "peak resident MiB per epoch: {peaks:?}"
    );
}

/// Runs `host` until the checkpoint of epoch `epoch` appears, then a
/// little into the next epoch, and kills it.
fn kill_after_epoch(args: &[&str], ckpt: &Path, epoch: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run host");
    let reached = || {
        Checkpoint::load(ckpt)
            .is_ok_and(|c| c.meta.get("epoch").is_some_and(|e| *e == epoch.to_string()))
    };
    while !reached() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before epoch {epoch}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed");
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_bytes() {
    let straight = tempfile::tempdir().unwrap();
    let run = train_resnet(straight.path(), &["--epochs", "3"]);
    assert!(run.status.success(), "{}", stderr(&run));

    let killed = tempfile::tempdir().unwrap();
    let ckpt = killed.path().join("resnet.safetensors");
    kill_after_epoch(&resnet_args(killed.path(), &["--epochs", "3"]), &ckpt, 1);
    // What the kill left is the first epoch's checkpoint and its state.
    assert_eq!(Checkpoint::load(&ckpt).unwrap().meta["epoch"], "1");
    match state::load(killed.path(), NetId::ResNet, &std::fs::read(&ckpt).unwrap()).unwrap() {
        Found::Matching(state) => assert_eq!(state.epochs_done, 1),
        other => panic!("the training state does not go with the checkpoint: {other:?}"),
    }

    // On one thread where the straight run had all cores: the arithmetic
    // does not depend on the thread count.
    let run = train_resnet(killed.path(), &["--resume", "--threads", "1"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(!stderr(&run).contains("warning"), "{}", stderr(&run));
    for file in [
        "resnet.safetensors",
        "resnet.optim.safetensors",
        "resnet.postcard",
    ] {
        let (a, b) = (
            std::fs::read(straight.path().join(file)).unwrap(),
            std::fs::read(killed.path().join(file)).unwrap(),
        );
        assert!(
            a == b,
            "{file} differs between the straight and the resumed run"
        );
    }
    let log = TrainLog::load(&killed.path().join("train_log.json")).unwrap();
    let epochs: Vec<usize> = log.nets[0].epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, [1, 2, 3]);

    // Fewer epochs than the run holds cannot be what was meant.
    let run = train_resnet(killed.path(), &["--resume", "--epochs", "2"]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("--epochs 2") && stderr(&run).contains("already holds 3 epochs"),
        "{}",
        stderr(&run)
    );

    // Without its training state the run resumes, with a warning.
    std::fs::remove_file(killed.path().join("resnet.optim.safetensors")).unwrap();
    let run = train_resnet(killed.path(), &["--resume", "--epochs", "4"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(
        err.contains("warning")
            && err.contains("no training state")
            && err.contains("moments restart"),
        "{err}"
    );
}

#[test]
fn a_training_state_of_another_network_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let quick = [
        "--limit-train",
        "640",
        "--batch",
        "64",
        "--out",
        dir,
        "--epochs",
        "1",
    ];
    for net in ["resnet", "resnet-identity"] {
        let run = host(&[&["train", "--net", net][..], &quick].concat());
        assert!(run.status.success(), "{}", stderr(&run));
    }
    std::fs::copy(
        out.path().join("resnet.optim.safetensors"),
        out.path().join("resnet-identity.optim.safetensors"),
    )
    .unwrap();
    let run = host(
        &[
            &["train", "--net", "resnet-identity", "--resume"][..],
            &quick[..6],
            &["--epochs", "2"],
        ]
        .concat(),
    );
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(
        err.contains("resnet-identity.optim.safetensors") && err.contains("of `resnet`"),
        "{err}"
    );

    // Training one network kept the other's history in the log.
    let log = TrainLog::load(&out.path().join("train_log.json")).unwrap();
    let nets: Vec<&str> = log.nets.iter().map(|n| n.net.name()).collect();
    assert_eq!(nets, ["resnet", "resnet-identity"]);
}

/// A training state that goes with its checkpoint but whose moments do
/// not fit the network is refused when the run starts: with `--net all`,
/// before the networks ahead of it train.
#[test]
fn a_training_state_that_does_not_fit_is_refused_before_any_training() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let quick = ["--limit-train", "640", "--batch", "64", "--out", dir];
    let run = host(
        &[
            &["train", "--net", "resnet-identity", "--epochs", "1"][..],
            &quick,
        ]
        .concat(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let net = NetId::ResNetIdentity;
    let ckpt_path = state::checkpoint_path(out.path(), net);
    let ckpt = Checkpoint::load(&ckpt_path).unwrap();
    let bytes = std::fs::read(&ckpt_path).unwrap();
    let Found::Matching(mut saved) = state::load(out.path(), net, &bytes).unwrap() else {
        panic!("the state saved with the checkpoint");
    };
    let dropped = saved.moments.pop().unwrap().name;
    state::save(out.path(), &ckpt, &saved).unwrap();

    let run = host(
        &[
            &["train", "--net", "all", "--resume", "--epochs", "2"][..],
            &quick,
        ]
        .concat(),
    );
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(
        err.contains("resnet-identity.optim.safetensors")
            && err.contains(&format!("tensor `{dropped}` is missing")),
        "{err}"
    );
    assert!(
        !state::checkpoint_path(out.path(), NetId::Inception).exists(),
        "InceptionNet, ahead in `all`, did not train"
    );
}

/// Flags that cannot do what was meant fail at once, naming the flag.
#[test]
fn impossible_flags_are_refused_before_any_work() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let cases: [(&[&str], &str); 10] = [
        (&["train", "--epochs", "0", "--out", dir], "--epochs"),
        (&["train", "--lr=-1", "--out", dir], "--lr"),
        (&["train", "--lr", "nan", "--out", dir], "--lr"),
        (&["train", "--lr", "0", "--out", dir], "--lr"),
        (&["train", "--threads", "100000", "--out", dir], "--threads"),
        (
            &["train", "--limit-train", "0", "--out", dir],
            "--limit-train",
        ),
        (&["eval", "--limit", "0"], "--limit"),
        (&["classify", "--limit", "0"], "--limit"),
        (&["bench", "--steps", "0"], "--steps"),
        (&["bench", "--threads", "0"], "--threads"),
    ];
    for (args, flag) in cases {
        let run = host(args);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(stderr(&run).contains(flag), "{args:?}: {}", stderr(&run));
    }
    assert!(
        std::fs::read_dir(out.path()).unwrap().next().is_none(),
        "nothing may be written"
    );
}

#[cfg(unix)]
#[test]
fn an_output_path_that_is_not_utf8_works() {
    use std::os::unix::ffi::OsStrExt;
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join(std::ffi::OsStr::from_bytes(b"run-\xff"));
    let run = Command::new(env!("CARGO_BIN_EXE_host"))
        .args([
            "train",
            "--net",
            "resnet-identity",
            "--limit-train",
            "640",
            "--batch",
            "64",
            "--epochs",
            "1",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(out.join("resnet-identity.postcard").is_file());
}
