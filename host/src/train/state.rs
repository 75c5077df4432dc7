//! What `--resume` needs beside a checkpoint to continue a run exactly:
//! Adam's step count and moments, the schedule's position, the settings
//! that decide the run's arithmetic and which data it trained on. They go
//! in `NET.optim.safetensors` (the checkpoint itself stays a plain
//! `state_dict` that PyTorch loads strictly), written together with the
//! checkpoint as one atomic group, and tied to it by its SHA-256.

use super::{DataId, Settings};
use crate::error::{Error, Result};
use crate::train::checkpoint::{Checkpoint, NamedTensor};
use crate::train::schedule::Schedule;
use clap::ValueEnum;
use files::atomic::{recover_group, write_group_atomic};
use files::mnist::sha256_hex;
use shared::NetId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The `format` tag of a training-state file.
pub const FORMAT: &str = "mnist-cortex-m training state v1";

/// Where network `net`'s checkpoint lives in `out`.
pub fn checkpoint_path(out: &Path, net: NetId) -> PathBuf {
    out.join(format!("{}.safetensors", net.name()))
}

/// Where the training state that goes with it lives.
pub fn state_path(out: &Path, net: NetId) -> PathBuf {
    out.join(format!("{}.optim.safetensors", net.name()))
}

/// A run's state after a whole epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// The settings the run was started (or last resumed) with.
    pub settings: Settings,
    /// Epochs completed: the checkpoint's.
    pub epochs_done: usize,
    /// Optimisation steps taken: where the learning-rate schedule stands.
    pub schedule_step: usize,
    /// Adam's update count (the schedule's position unless the moments
    /// were once restarted).
    pub adam_step: i32,
    /// Adam's moments, named as `train::adam` names them.
    pub moments: Vec<NamedTensor>,
    /// The training data the run saw.
    pub data: DataId,
}

const EPOCHS_DONE: &str = "epochs_done";
const SCHEDULE_STEP: &str = "schedule_step";
const ADAM_STEP: &str = "adam_step";
const EPOCHS: &str = "epochs";
const BATCH: &str = "batch";
const LR: &str = "lr";
const SCHEDULE: &str = "schedule";
const SEED: &str = "seed";
const TRAIN_IMAGES: &str = "train_images";
const TRAIN_SHA256: &str = "train_sha256";
const CHECKPOINT_SHA256: &str = "checkpoint_sha256";

/// Writes `ckpt` and `state` to `out` as one: a crash at any moment leaves
/// both files of the previous epoch or both of this one (once
/// [`recover`] has run).
pub fn save(out: &Path, ckpt: &Checkpoint, state: &TrainState) -> Result<()> {
    let ckpt_path = checkpoint_path(out, ckpt.net);
    let path = state_path(out, ckpt.net);
    let ckpt_bytes = ckpt.to_bytes(&ckpt_path)?;
    let s = &state.settings;
    let meta = [
        (EPOCHS_DONE, state.epochs_done.to_string()),
        (SCHEDULE_STEP, state.schedule_step.to_string()),
        (ADAM_STEP, state.adam_step.to_string()),
        (EPOCHS, s.epochs.to_string()),
        (BATCH, s.batch.to_string()),
        // Rust prints the shortest decimal that parses back to the same f64.
        (LR, s.lr.to_string()),
        (
            SCHEDULE,
            s.schedule
                .to_possible_value()
                .expect("no skipped variants")
                .get_name()
                .to_owned(),
        ),
        (SEED, s.seed.to_string()),
        (TRAIN_IMAGES, state.data.images.to_string()),
        (TRAIN_SHA256, state.data.sha256.clone()),
        (CHECKPOINT_SHA256, sha256_hex(&ckpt_bytes)),
    ];
    let file = Checkpoint {
        net: ckpt.net,
        tensors: state.moments.clone(),
        meta: meta.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    };
    let state_bytes = file.encode(FORMAT, &path)?;
    Ok(write_group_atomic(&[
        (&ckpt_path, &ckpt_bytes),
        (&path, &state_bytes),
    ])?)
}

/// Finishes or undoes a [`save`] of `net` in `out` that a crash cut short.
pub fn recover(out: &Path, net: NetId) -> Result<()> {
    Ok(recover_group(&[
        &checkpoint_path(out, net),
        &state_path(out, net),
    ])?)
}

/// What is found beside a checkpoint.
#[derive(Debug)]
pub enum Found {
    /// The state saved with this very checkpoint.
    Matching(TrainState),
    /// No state file.
    Missing,
    /// A state saved with another checkpoint (its digest differs).
    OfAnotherCheckpoint,
}

/// Loads the state of `net` in `out` and checks that it goes with the
/// checkpoint whose bytes are `ckpt_bytes`. Fails, naming the file and the
/// problem, if the file is unreadable, corrupt or of another network.
pub fn load(out: &Path, net: NetId, ckpt_bytes: &[u8]) -> Result<Found> {
    let path = state_path(out, net);
    if !path.exists() {
        return Ok(Found::Missing);
    }
    let file = Checkpoint::load_format(&path, FORMAT)?;
    let bad = |problem: String| Error::Resume {
        path: path.clone(),
        problem,
    };
    if file.net != net {
        return Err(bad(format!(
            "it holds the training state of `{}`, not of `{}`",
            file.net.name(),
            net.name()
        )));
    }
    let meta = &file.meta;
    if meta.get(CHECKPOINT_SHA256).map(String::as_str) != Some(sha256_hex(ckpt_bytes).as_str()) {
        return Ok(Found::OfAnotherCheckpoint);
    }
    let schedule = field::<String>(meta, SCHEDULE).map_err(&bad)?;
    let state = TrainState {
        settings: Settings {
            epochs: field(meta, EPOCHS).map_err(&bad)?,
            batch: field(meta, BATCH).map_err(&bad)?,
            lr: field(meta, LR).map_err(&bad)?,
            schedule: Schedule::from_str(&schedule, false)
                .map_err(|_| bad(format!("unknown schedule `{schedule}`")))?,
            seed: field(meta, SEED).map_err(&bad)?,
        },
        epochs_done: field(meta, EPOCHS_DONE).map_err(&bad)?,
        schedule_step: field(meta, SCHEDULE_STEP).map_err(&bad)?,
        adam_step: field(meta, ADAM_STEP).map_err(&bad)?,
        moments: file.tensors,
        data: DataId {
            images: field(meta, TRAIN_IMAGES).map_err(&bad)?,
            sha256: field(meta, TRAIN_SHA256).map_err(&bad)?,
        },
    };
    Ok(Found::Matching(state))
}

/// The metadata value under `key`, parsed.
fn field<T: FromStr>(meta: &BTreeMap<String, String>, key: &str) -> std::result::Result<T, String> {
    let value = meta
        .get(key)
        .ok_or_else(|| format!("no `{key}` in its metadata"))?;
    value
        .parse()
        .map_err(|_| format!("its `{key}` is `{value}`, not a valid value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Checkpoint, TrainState) {
        let ckpt = Checkpoint::new(
            NetId::ResNet,
            vec![NamedTensor::new("fc.bias", vec![2], vec![0.5, -1.0])],
        );
        let state = TrainState {
            settings: Settings {
                epochs: 8,
                batch: 64,
                lr: 0.1 + 0.2,
                schedule: Schedule::Cosine,
                seed: u64::MAX,
            },
            epochs_done: 3,
            schedule_step: 3 * 40,
            adam_step: 120,
            moments: vec![
                NamedTensor::new("exp_avg.fc.bias", vec![2], vec![1e-9, 2.0]),
                NamedTensor::new("exp_avg_sq.fc.bias", vec![2], vec![3.0, f32::MIN_POSITIVE]),
            ],
            data: DataId {
                images: 2560,
                sha256: "ab".repeat(32),
            },
        };
        (ckpt, state)
    }

    #[test]
    fn round_trips_exactly_and_refuses_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let (ckpt, state) = sample();
        save(dir.path(), &ckpt, &state).unwrap();
        let ckpt_bytes = std::fs::read(checkpoint_path(dir.path(), NetId::ResNet)).unwrap();
        match load(dir.path(), NetId::ResNet, &ckpt_bytes).unwrap() {
            Found::Matching(back) => assert_eq!(back, state),
            other => panic!("{other:?}"),
        }
        // The checkpoint on its own is an ordinary one.
        assert_eq!(
            Checkpoint::load(&checkpoint_path(dir.path(), NetId::ResNet))
                .unwrap()
                .tensors,
            ckpt.tensors
        );

        let mut other = ckpt_bytes.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(matches!(
            load(dir.path(), NetId::ResNet, &other).unwrap(),
            Found::OfAnotherCheckpoint
        ));
        assert!(matches!(
            load(dir.path(), NetId::Inception, &ckpt_bytes).unwrap(),
            Found::Missing
        ));

        std::fs::copy(
            state_path(dir.path(), NetId::ResNet),
            state_path(dir.path(), NetId::Inception),
        )
        .unwrap();
        let err = load(dir.path(), NetId::Inception, &ckpt_bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inception.optim.safetensors") && err.contains("of `resnet`"),
            "{err}"
        );

        // A state file cut short (a copy that stopped half way).
        let state_file = state_path(dir.path(), NetId::ResNet);
        let whole = std::fs::read(&state_file).unwrap();
        std::fs::write(&state_file, &whole[..whole.len() / 2]).unwrap();
        let err = load(dir.path(), NetId::ResNet, &ckpt_bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("resnet.optim.safetensors") && err.contains("not a valid checkpoint"),
            "{err}"
        );
        std::fs::write(&state_file, &whole).unwrap();

        // A model checkpoint where the state should be.
        std::fs::copy(
            checkpoint_path(dir.path(), NetId::ResNet),
            state_path(dir.path(), NetId::ResNet),
        )
        .unwrap();
        let err = load(dir.path(), NetId::ResNet, &ckpt_bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("resnet.optim.safetensors") && err.contains("unsupported format"),
            "{err}"
        );
    }
}
