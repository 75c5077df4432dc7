//! `host train` end to end: bad input fails before any training, a short
//! run writes every output and learns, and `--resume` continues it.

use host::checkpoint::Checkpoint;
use host::report::TrainLog;
use std::path::Path;
use std::process::{Command, Output};

fn host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host")).args(args).output().expect("run host")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn train_resnet(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--net", "resnet", "--limit-train", "2560", "--batch", "64", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    host(&args)
}

#[test]
fn a_missing_data_dir_fails_before_training() {
    let out = tempfile::tempdir().unwrap();
    let run = host(&["train", "--data-dir", "/nonexistent/mnist", "--out", out.path().to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("/nonexistent/mnist"), "{}", stderr(&run));
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "nothing may be written");
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
    assert!(stderr(&run).contains("compile-time shapes"), "{}", stderr(&run));
}

#[test]
fn resume_refuses_a_checkpoint_of_the_other_network() {
    let out = tempfile::tempdir().unwrap();
    assert!(train_resnet(out.path(), &["--epochs", "1"]).status.success());
    std::fs::copy(out.path().join("resnet.safetensors"), out.path().join("inception.safetensors")).unwrap();
    let run = host(&["train", "--net", "inception", "--resume", "--out", out.path().to_str().unwrap()]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(err.contains("inception.safetensors") && err.contains("`resnet`"), "{err}");
}

#[test]
fn resume_without_a_checkpoint_names_the_missing_file() {
    let out = tempfile::tempdir().unwrap();
    let run = host(&["train", "--net", "resnet", "--resume", "--out", out.path().to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("resnet.safetensors"), "{}", stderr(&run));
}

#[test]
fn a_short_run_learns_writes_every_output_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let run = train_resnet(out.path(), &["--epochs", "1"]);
    assert!(run.status.success(), "{}", stderr(&run));
    for file in ["resnet.safetensors", "train_log.json", "training_curves.svg", "confusion_resnet.svg"] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains("tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // 2,560 images for one epoch: far better than chance (10%) on the full
    // test set if, and only if, the gradients are right.
    let log = TrainLog::load(&out.path().join("train_log.json")).unwrap();
    let first = &log.nets[0].epochs[0];
    assert!(first.test_accuracy > 0.80, "accuracy after one short epoch: {}", first.test_accuracy);

    let run = train_resnet(out.path(), &["--epochs", "2", "--resume"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let log = TrainLog::load(&out.path().join("train_log.json")).unwrap();
    let epochs: Vec<usize> = log.nets[0].epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, [1, 2]);
    let ckpt = Checkpoint::load(&out.path().join("resnet.safetensors")).unwrap();
    assert_eq!(ckpt.meta.get("epoch").map(String::as_str), Some("2"));
}
