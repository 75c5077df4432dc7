//! `host export`, `host eval` and `host inspect` end to end on the committed
//! artifacts, and their errors on bad input.

use shared::model::layers;
use shared::nets::Model;
use shared::NetId;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .output()
        .expect("run host")
}

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../artifacts")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn eval_json_reports_accuracy_on_the_first_n_images() {
    let model = artifact("resnet.postcard");
    let out = host(&["eval", "--model", s(&model), "--limit", "300", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["images"], 300);
    assert_eq!(v["net"], "resnet");
    let acc = v["accuracy"].as_f64().unwrap();
    assert_eq!(acc, v["correct"].as_f64().unwrap() / 300.0);
    assert!(acc > 0.95, "{v}");
    // The checkpoint beside the model is picked up for the f32 accuracy.
    assert!(v["float_accuracy"].as_f64().unwrap() > 0.95, "{v}");
    assert!(
        v["checkpoint"]
            .as_str()
            .unwrap()
            .ends_with("resnet.safetensors"),
        "{v}"
    );
}

#[test]
fn eval_text_names_both_accuracies() {
    let model = artifact("inception.postcard");
    let out = host(&["eval", "--model", s(&model), "--limit", "100"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.contains("on 100 test images: int8 accuracy") && t.contains("f32 checkpoint"),
        "{t}"
    );
}

/// A copy of a committed model in a temporary directory, edited.
fn edited_copy(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(artifact(name)).unwrap();
    edit(&mut bytes);
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn a_corrupted_model_is_refused_naming_the_file_and_the_crc() {
    let (_dir, path) = edited_copy("resnet.postcard", |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
    });
    for args in [vec!["eval", "--model", s(&path)], vec!["inspect", s(&path)]] {
        let err = failure(&host(&args));
        assert!(
            err.contains(s(&path)) && err.contains("CRC mismatch"),
            "{err}"
        );
    }
}

#[test]
fn a_truncated_model_is_refused() {
    let (_dir, path) = edited_copy("inception.postcard", |b| b.truncate(b.len() - 100));
    let err = failure(&host(&["inspect", s(&path)]));
    assert!(
        err.contains(s(&path)) && err.contains("CRC mismatch"),
        "{err}"
    );
    let (_dir, path) = edited_copy("inception.postcard", |b| b.truncate(3));
    let err = failure(&host(&["inspect", s(&path)]));
    assert!(err.contains("truncated in the preamble"), "{err}");
}

#[test]
fn a_missing_model_is_named() {
    let err = failure(&host(&["eval", "--model", "/nonexistent/model.postcard"]));
    assert!(err.contains("/nonexistent/model.postcard"), "{err}");
}

#[test]
fn eval_refuses_a_checkpoint_of_the_other_network() {
    let model = artifact("resnet.postcard");
    let ckpt = artifact("inception.safetensors");
    let err = failure(&host(&[
        "eval",
        "--model",
        s(&model),
        "--checkpoint",
        s(&ckpt),
        "--limit",
        "10",
    ]));
    assert!(
        err.contains("`inception`") && err.contains("`resnet`"),
        "{err}"
    );
}

#[test]
fn inspect_lists_every_layer_flash_and_ram() {
    for net in NetId::ALL {
        let path = artifact(&format!("{}.postcard", net.name()));
        let bytes = std::fs::read(&path).unwrap();
        let out = host(&["inspect", s(&path), "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["net"], net.name());
        assert_eq!(v["file_bytes"], bytes.len());
        let names: Vec<&str> = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = layers(net).iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, expected);
        // The budgets: InceptionNet's file at most 110 KB, one
        // inference's activations at most 32 KB (aim: 24 KB).
        let arena = v["arena_bytes"].as_u64().unwrap();
        assert!(
            arena > 0 && arena <= 24 * 1024,
            "{net:?}: {arena} bytes of activations"
        );
        if net == NetId::Inception {
            assert!(bytes.len() <= 110_000, "{} bytes", bytes.len());
        }
        let t = text(&host(&["inspect", s(&path)]).stdout);
        assert!(
            t.contains(&format!("flash: {} bytes", bytes.len())) && t.contains("activation RAM"),
            "{t}"
        );
    }
}

#[test]
fn export_writes_a_model_that_decodes_and_refuses_a_missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        artifact("resnet.safetensors"),
        dir.path().join("resnet.safetensors"),
    )
    .unwrap();
    let out = host(&[
        "export",
        "--net",
        "resnet",
        "--out",
        s(dir.path()),
        "--calibration",
        "300",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(dir.path().join("resnet.postcard")).unwrap();
    assert_eq!(Model::decode(&bytes).unwrap().net(), NetId::ResNet);
    assert!(
        text(&out.stdout).contains("test accuracy"),
        "{}",
        text(&out.stdout)
    );

    let err = failure(&host(&[
        "export",
        "--net",
        "inception",
        "--out",
        s(dir.path()),
    ]));
    assert!(err.contains("inception.safetensors"), "{err}");
    assert!(!dir.path().join("inception.postcard").exists());
}
