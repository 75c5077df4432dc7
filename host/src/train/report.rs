//! What a training run tells its user: the per-epoch JSON log, the summary
//! table printed at the end, the test confusion matrix, and (in [`plot`])
//! SVG pictures of all of it. Every file is written atomically.

pub mod plot;

use crate::error::{Error, Result};
use files::atomic::write_atomic;
use serde::{Deserialize, Serialize};
use shared::arch::CLASSES;
use shared::NetId;
use std::fmt::Write as _;
use std::path::Path;

/// The log's file name inside the output directory.
pub const LOG_FILE: &str = "train_log.json";

/// Test-set counts: `m[true_label][predicted]`.
pub type ConfusionMatrix = [[u32; CLASSES]; CLASSES];

/// One epoch of one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches.
    pub train_loss: f64,
    /// Fraction of the test set classified correctly after the epoch, in [0, 1].
    pub test_accuracy: f64,
    /// Wall-clock seconds of the epoch's training pass (evaluation excluded).
    pub seconds: f64,
    /// The learning rate used in the epoch (its first batch's, if scheduled).
    pub lr: f64,
    /// Training images processed per second.
    pub images_per_second: f64,
    /// The process's peak resident memory during the epoch (training,
    /// evaluation and saving), in MiB, where the system tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// The training history of one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetLog {
    /// The network (its name in the JSON, e.g. `inception`).
    #[serde(with = "net_name")]
    pub net: NetId,
    /// Its number of trainable parameters.
    pub params: usize,
    /// The epochs so far, in order.
    pub epochs: Vec<EpochRecord>,
    /// The test confusion matrix after the last epoch, once computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<ConfusionMatrix>,
    /// The int8 model exported after training, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<Int8Record>,
    /// The settings of the run that produced the last epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<crate::train::Settings>,
}

/// The int8 model file exported from a network's final checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int8Record {
    /// Its bytes (the flash it takes).
    pub model_bytes: usize,
    /// Its test accuracy, in [0, 1].
    pub test_accuracy: f64,
    /// Fraction of test images where it predicts the f32 network's class.
    pub agreement: f64,
}

/// A network in the log by its name, as the checkpoints and the command
/// line name it.
pub(crate) mod net_name {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use shared::NetId;

    pub fn serialize<S: Serializer>(net: &NetId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(net.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NetId, D::Error> {
        let name = String::deserialize(d)?;
        NetId::from_name(&name).ok_or_else(|| D::Error::custom(format!("unknown network `{name}`")))
    }
}

impl NetLog {
    /// An empty history.
    pub fn new(net: NetId, params: usize) -> Self {
        NetLog {
            net,
            params,
            epochs: Vec::new(),
            confusion: None,
            int8: None,
            settings: None,
        }
    }

    /// The epoch with the highest test accuracy (the earliest among equals).
    pub fn best(&self) -> Option<&EpochRecord> {
        self.epochs.iter().reduce(|best, e| {
            if e.test_accuracy > best.test_accuracy {
                e
            } else {
                best
            }
        })
    }

    /// The last epoch.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }

    /// Training seconds summed over all epochs.
    pub fn total_seconds(&self) -> f64 {
        self.epochs.iter().map(|e| e.seconds).sum()
    }

    /// Mean training seconds per epoch (0 with no epochs).
    pub fn mean_epoch_seconds(&self) -> f64 {
        if self.epochs.is_empty() {
            0.0
        } else {
            self.total_seconds() / self.epochs.len() as f64
        }
    }
}

/// The whole run's log, saved as [`LOG_FILE`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainLog {
    /// The run's settings (seed, batch, threads, ...), as the trainer sees fit.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// One history per network, in training order.
    pub nets: Vec<NetLog>,
}

impl TrainLog {
    /// The history of `net`, created (with `params`) if it is not there yet.
    pub fn net_mut(&mut self, net: NetId, params: usize) -> &mut NetLog {
        match self.nets.iter().position(|n| n.net == net) {
            Some(i) => &mut self.nets[i],
            None => {
                self.nets.push(NetLog::new(net, params));
                self.nets.last_mut().expect("just pushed")
            }
        }
    }

    /// Writes the log as pretty JSON, atomically; cheap enough to call
    /// after every epoch, so an interrupted run keeps its history.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).expect("a log always serialises");
        json.push(b'\n');
        Ok(write_atomic(path, &json)?)
    }

    /// Reads a log written by [`TrainLog::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.to_owned(),
            source,
        })
    }
}

/// Counts `(label, prediction)` pairs: `m[label][prediction]`.
///
/// # Panics
/// If the slices differ in length or hold a class outside `0..CLASSES`:
/// both are bugs in the caller, not bad input.
pub fn confusion_matrix(predictions: &[u8], labels: &[u8]) -> ConfusionMatrix {
    assert_eq!(predictions.len(), labels.len(), "one prediction per label");
    let mut m = [[0u32; CLASSES]; CLASSES];
    for (&p, &l) in predictions.iter().zip(labels) {
        m[usize::from(l)][usize::from(p)] += 1;
    }
    m
}

/// Correct and total counts of a confusion matrix.
pub fn correct_and_total(m: &ConfusionMatrix) -> (u64, u64) {
    let correct = (0..CLASSES).map(|i| u64::from(m[i][i])).sum();
    let total = m.iter().flatten().map(|&c| u64::from(c)).sum();
    (correct, total)
}

/// The end-of-run table: one row per network, columns aligned.
///
/// ```text
/// net        epochs  best acc (epoch)  final acc  mean epoch  total time  params  int8 acc
/// inception      10     99.12% (9)        99.08%      27.9 s     4m 39s   97298    99.10%
/// ```
pub fn summary_table(log: &TrainLog) -> String {
    let header = [
        "net",
        "epochs",
        "best acc (epoch)",
        "final acc",
        "mean epoch",
        "total time",
        "params",
        "int8 acc",
    ];
    let rows: Vec<[String; 8]> = log
        .nets
        .iter()
        .map(|n| {
            let pct = |e: Option<&EpochRecord>| {
                e.map_or("-".into(), |e| format!("{:.2}%", 100.0 * e.test_accuracy))
            };
            let best = n
                .best()
                .map_or("-".into(), |e| format!("{} ({})", pct(Some(e)), e.epoch));
            [
                n.net.name().to_owned(),
                n.epochs.len().to_string(),
                best,
                pct(n.last()),
                format!("{:.1} s", n.mean_epoch_seconds()),
                minutes_seconds(n.total_seconds()),
                n.params.to_string(),
                n.int8
                    .as_ref()
                    .map_or("-".into(), |q| format!("{:.2}%", 100.0 * q.test_accuracy)),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // The name reads best left-aligned, numbers right-aligned.
            let _ = if i == 0 {
                write!(l, "{cell:<w$}")
            } else {
                write!(l, "  {cell:>w$}")
            };
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// `287.4` -> `4m 47s`; under a minute, `12.3s`.
fn minutes_seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = s.round() as u64;
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A two-network log shaped like a real run.
    pub(crate) fn sample_log() -> TrainLog {
        let mut log = TrainLog::default();
        log.settings.insert("seed".into(), 42.into());
        log.settings.insert("batch".into(), 128.into());
        let curves = [
            (
                NetId::Inception,
                97_298,
                27.9,
                [0.232, 0.061, 0.045, 0.037, 0.031],
                [0.9812, 0.9858, 0.9871, 0.9893, 0.9887],
            ),
            (
                NetId::ResNet,
                14_570,
                11.6,
                [0.180, 0.052, 0.041, 0.036, 0.030],
                [0.9790, 0.9835, 0.9851, 0.9872, 0.9880],
            ),
        ];
        for (net, params, secs, losses, accs) in curves {
            let n = log.net_mut(net, params);
            for (i, (loss, acc)) in losses.into_iter().zip(accs).enumerate() {
                n.epochs.push(EpochRecord {
                    epoch: i + 1,
                    train_loss: loss,
                    test_accuracy: acc,
                    seconds: secs + i as f64 * 0.25,
                    lr: 1e-3 * 0.5f64.powi(i as i32),
                    images_per_second: 60_000.0 / secs,
                    peak_rss_mib: Some(240.0 + i as f64),
                });
            }
            let mut m = [[0u32; CLASSES]; CLASSES];
            for (i, row) in m.iter_mut().enumerate() {
                row[i] = 980 + i as u32;
                row[(i + 3) % CLASSES] = (i as u32 * 7) % 5;
            }
            n.confusion = Some(m);
        }
        log.nets[0].int8 = Some(Int8Record {
            model_bytes: 100_666,
            test_accuracy: 0.9889,
            agreement: 0.9995,
        });
        log
    }

    #[test]
    fn log_round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let log = sample_log();
        log.save(&path).unwrap();
        assert_eq!(TrainLog::load(&path).unwrap(), log);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [LOG_FILE]);
    }

    #[test]
    fn log_json_has_the_documented_fields() {
        let json = serde_json::to_value(sample_log()).unwrap();
        let epoch = &json["nets"][1]["epochs"][0];
        assert_eq!(json["nets"][1]["net"], "resnet");
        assert_eq!(json["settings"]["seed"], 42);
        for key in [
            "epoch",
            "train_loss",
            "test_accuracy",
            "seconds",
            "lr",
            "images_per_second",
        ] {
            assert!(epoch.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["nets"][0]["confusion"][2][2], 982);
    }

    #[test]
    fn corrupt_log_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        std::fs::write(&path, b"{\"nets\": [").unwrap();
        let msg = TrainLog::load(&path).unwrap_err().to_string();
        assert!(msg.contains(LOG_FILE), "{msg}");
    }

    #[test]
    fn confusion_matrix_counts_a_hand_example() {
        let labels = [0, 0, 1, 1, 1, 9, 9, 3];
        let preds = [0, 6, 1, 1, 7, 9, 4, 3];
        let m = confusion_matrix(&preds, &labels);
        let mut expected = [[0u32; CLASSES]; CLASSES];
        expected[0][0] = 1;
        expected[0][6] = 1;
        expected[1][1] = 2;
        expected[1][7] = 1;
        expected[9][9] = 1;
        expected[9][4] = 1;
        expected[3][3] = 1;
        assert_eq!(m, expected);
        assert_eq!(correct_and_total(&m), (5, 8));
    }

    #[test]
    #[should_panic(expected = "one prediction per label")]
    fn confusion_matrix_rejects_length_mismatch() {
        confusion_matrix(&[1, 2], &[1]);
    }

    #[test]
    fn best_and_means() {
        let log = sample_log();
        let inc = &log.nets[0];
        assert_eq!(inc.best().unwrap().epoch, 4);
        assert_eq!(inc.last().unwrap().epoch, 5);
        assert!((inc.mean_epoch_seconds() - 28.4).abs() < 1e-9);
        assert!(NetLog::new(NetId::ResNet, 0).best().is_none());
    }

    #[test]
    fn summary_table_is_aligned() {
        let table = summary_table(&sample_log());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("net "));
        assert!(
            lines[1].starts_with("inception") && lines[1].contains("98.93% (4)"),
            "{table}"
        );
        assert!(
            lines[1].contains("98.87%")
                && lines[1].contains("2m 22s")
                && lines[1].contains("97298")
                && lines[1].ends_with("98.89%"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("resnet ")
                && lines[2].contains("14570")
                && lines[2].ends_with('-'),
            "{table}"
        );
        // Right-aligned columns end at the same place on every line.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
    }

    #[test]
    fn short_durations_keep_decimals() {
        assert_eq!(minutes_seconds(12.34), "12.3s");
        assert_eq!(minutes_seconds(287.4), "4m 47s");
    }
}
