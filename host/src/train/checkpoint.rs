//! f32 checkpoints as safetensors files that PyTorch loads directly.
//!
//! Tensor names are PyTorch `state_dict` keys (`conv1.weight`,
//! `incep1.b5_2.bias`, `fc.weight`, ...), conv weights are OIHW, linear
//! weights `[out, in]`, all little-endian F32 — so
//! `net.load_state_dict(safetensors.torch.load_file(path))` works on the
//! reference definitions. The safetensors `__metadata__` records which
//! network the tensors belong to, so `--resume` with the wrong file fails
//! with a clear message instead of a shape error deep in training.

use crate::error::{Error, Result};
use files::atomic::write_atomic;
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors};
use shared::NetId;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The `format` metadata value of our checkpoints; bump on incompatible change.
pub const FORMAT: &str = "mnist-cortex-m checkpoint v1";

/// Metadata keys the module owns; the rest of the metadata is free-form.
const KEY_NET: &str = "net";
const KEY_FORMAT: &str = "format";

/// One parameter tensor, row-major (C order).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// The PyTorch `state_dict` key, e.g. `conv1.weight`.
    pub name: String,
    /// The dimensions, outermost first (OIHW for conv weights).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// A tensor from its parts.
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape`: a bug in the caller.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        let name = name.into();
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor `{name}`: shape {shape:?} does not match {} values",
            data.len()
        );
        NamedTensor { name, shape, data }
    }
}

/// A network's parameters, tagged with the network (by its name in the
/// file's metadata).
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The network.
    pub net: NetId,
    /// The parameters. [`Checkpoint::load`] returns them in file order
    /// (sorted by name); look one up with [`Checkpoint::get`].
    pub tensors: Vec<NamedTensor>,
    /// Further free-form metadata saved with the tensors (e.g. `epoch`).
    /// The keys `net` and `format` are reserved.
    pub meta: BTreeMap<String, String>,
}

impl Checkpoint {
    /// A checkpoint of `net` with no extra metadata.
    pub fn new(net: NetId, tensors: Vec<NamedTensor>) -> Self {
        Checkpoint {
            net,
            tensors,
            meta: BTreeMap::new(),
        }
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The number of scalar parameters.
    pub fn param_count(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    /// Encodes the checkpoint as safetensors bytes. The same checkpoint
    /// always gives the same bytes: the header's keys are sorted (the
    /// metadata first), the tensors laid out by name.
    ///
    /// Errors (as [`Error::Checkpoint`] naming `path`, the file it is meant
    /// for) on duplicate names, a reserved metadata key, or a tensor whose
    /// data length does not match its shape.
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        self.encode(FORMAT, path)
    }

    /// [`Checkpoint::to_bytes`] with another `format` tag: the same container
    /// for other tensors, such as an optimizer's state.
    pub(crate) fn encode(&self, format: &str, path: &Path) -> Result<Vec<u8>> {
        let bad = |problem: String| Error::Checkpoint {
            path: path.to_owned(),
            problem,
        };
        let mut seen = HashSet::new();
        for t in &self.tensors {
            if !seen.insert(t.name.as_str()) {
                return Err(bad(format!("tensor `{}` appears twice", t.name)));
            }
            if t.shape.iter().product::<usize>() != t.data.len() {
                return Err(bad(format!(
                    "tensor `{}` has shape {:?} but {} values",
                    t.name,
                    t.shape,
                    t.data.len()
                )));
            }
        }
        if let Some(k) = [KEY_NET, KEY_FORMAT]
            .into_iter()
            .find(|k| self.meta.contains_key(*k))
        {
            return Err(bad(format!("metadata key `{k}` is reserved")));
        }
        let mut meta = self.meta.clone();
        meta.insert(KEY_NET.into(), self.net.name().into());
        meta.insert(KEY_FORMAT.into(), format.into());
        Ok(serialize(&self.tensors, &meta))
    }

    /// Saves to `path` atomically: an interrupted save leaves the previous
    /// file, if any, intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(write_atomic(path, &self.to_bytes(path)?)?)
    }

    /// Loads a checkpoint saved by [`Checkpoint::save`] (or any safetensors
    /// file of F32 tensors with our metadata).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_format(path, FORMAT)
    }

    /// [`Checkpoint::load`] of a file tagged `format` (see [`Checkpoint::encode`]).
    pub(crate) fn load_format(path: &Path, format: &str) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &bytes, format)
    }

    /// Decodes the `bytes` read from `path` (which errors name), a file
    /// tagged `format`.
    pub(crate) fn parse(path: &Path, bytes: &[u8], format: &str) -> Result<Self> {
        Self::from_bytes(bytes, format).map_err(|problem| Error::Checkpoint {
            path: path.to_owned(),
            problem,
        })
    }

    /// Decodes safetensors bytes; the error says what is wrong.
    fn from_bytes(bytes: &[u8], format: &str) -> Result<Self, String> {
        let st = SafeTensors::deserialize(bytes).map_err(describe)?;
        // `read_metadata` repeats the header parse, but it is the only public
        // way to the `__metadata__` map; the header is a few kilobytes.
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(describe)?;
        let mut meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        match meta.remove(KEY_FORMAT) {
            Some(f) if f == format => {}
            Some(f) => return Err(format!("unsupported format `{f}` (expected `{format}`)")),
            None => {
                return Err(format!(
                    "no `{KEY_FORMAT}` in the safetensors metadata: not saved by this project"
                ))
            }
        }
        let name = meta
            .remove(KEY_NET)
            .ok_or_else(|| format!("no `{KEY_NET}` in the safetensors metadata"))?;
        let net = NetId::from_name(&name).ok_or_else(|| {
            let known = NetId::ALL.map(NetId::name).join(", ");
            format!("it holds network `{name}`, which this build does not know ({known})")
        })?;
        // File order: by data offset, which safetensors lays out by name.
        let mut order: Vec<(usize, String)> = header
            .tensors()
            .into_iter()
            .map(|(name, info)| (info.data_offsets.0, name))
            .collect();
        order.sort();
        let mut tensors = Vec::with_capacity(order.len());
        for (_, name) in order {
            let view = st.tensor(&name).map_err(describe)?;
            if view.dtype() != Dtype::F32 {
                return Err(format!(
                    "tensor `{name}` has dtype {:?}; checkpoints hold F32 only",
                    view.dtype()
                ));
            }
            let data = view
                .data()
                .chunks_exact(size_of::<f32>())
                .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4")))
                .collect();
            tensors.push(NamedTensor {
                name,
                shape: view.shape().to_vec(),
                data,
            });
        }
        Ok(Checkpoint { net, tensors, meta })
    }

    /// Fails unless the checkpoint was saved from network `net`.
    pub fn expect_net(&self, net: NetId) -> Result<()> {
        if self.net == net {
            Ok(())
        } else {
            Err(Error::WrongNet {
                expected: net,
                found: self.net,
            })
        }
    }

    /// Fails unless the checkpoint holds exactly the tensors `expected`
    /// lists, by name and shape; the error names the first missing,
    /// mis-shaped or extra tensor (checked in that order).
    pub fn check_shapes<I, N, S>(&self, expected: I) -> Result<()>
    where
        I: IntoIterator<Item = (N, S)>,
        N: AsRef<str>,
        S: AsRef<[usize]>,
    {
        match shape_mismatch(&self.tensors, expected) {
            Some(problem) => Err(Error::TensorMismatch {
                net: self.net,
                problem,
            }),
            None => Ok(()),
        }
    }
}

/// What keeps `tensors` from being exactly the tensors `expected` lists,
/// by name and shape: the first missing, mis-shaped or extra tensor
/// (checked in that order); `None` when they match.
pub(crate) fn shape_mismatch<I, N, S>(tensors: &[NamedTensor], expected: I) -> Option<String>
where
    I: IntoIterator<Item = (N, S)>,
    N: AsRef<str>,
    S: AsRef<[usize]>,
{
    let mut wanted = HashSet::new();
    for (name, shape) in expected {
        let (name, shape) = (name.as_ref(), shape.as_ref());
        let Some(t) = tensors.iter().find(|t| t.name == name) else {
            return Some(format!("tensor `{name}` is missing"));
        };
        if t.shape != shape {
            return Some(format!(
                "tensor `{name}` has shape {:?}, the network expects {shape:?}",
                t.shape
            ));
        }
        wanted.insert(name.to_owned());
    }
    tensors
        .iter()
        .find(|t| !wanted.contains(&t.name))
        .map(|t| format!("unexpected tensor `{}`", t.name))
}

/// The safetensors layout: the header's length (u64, little-endian), the
/// header (JSON, padded with spaces to a multiple of 8 bytes so the data
/// is aligned), then each tensor's little-endian bytes, by name. The
/// `safetensors` crate's writer takes the metadata as a `HashMap`, whose
/// order changes from run to run; here every key is sorted.
fn serialize(tensors: &[NamedTensor], meta: &BTreeMap<String, String>) -> Vec<u8> {
    let mut order: Vec<&NamedTensor> = tensors.iter().collect();
    order.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = format!(
        "{{\"__metadata__\":{}",
        serde_json::to_string(meta).expect("strings serialise")
    );
    let mut offset = 0;
    for t in &order {
        let end = offset + t.data.len() * size_of::<f32>();
        let name = serde_json::to_string(&t.name).expect("strings serialise");
        let shape = serde_json::to_string(&t.shape).expect("numbers serialise");
        header += &format!(
            ",{name}:{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[{offset},{end}]}}"
        );
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for t in order {
        out.extend(t.data.iter().flat_map(|v| v.to_le_bytes()));
    }
    out
}

/// The safetensors crate's errors, phrased for someone who passed a file.
fn describe(e: SafeTensorError) -> String {
    use SafeTensorError::*;
    match e {
        HeaderTooSmall | InvalidHeaderLength | HeaderTooLarge => {
            format!("not a safetensors file, or truncated ({e})")
        }
        InvalidHeader(_) | InvalidHeaderDeserialization(_) | JsonError(_) => {
            format!("not a safetensors file: its header is not valid JSON ({e})")
        }
        MetadataIncompleteBuffer | InvalidOffset(_) | TensorInvalidInfo => {
            format!("truncated or corrupt: tensor data does not match the header ({e})")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use serde_json::Value;
    use std::collections::HashMap;

    fn view(t: &NamedTensor) -> (String, Vec<u8>) {
        (
            t.name.clone(),
            t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    /// A small checkpoint with the naming and layout of the real ones.
    fn sample() -> Checkpoint {
        let ramp = |n: usize, scale: f32| (0..n).map(|i| (i as f32 - 3.0) * scale).collect();
        let mut ck = Checkpoint::new(
            NetId::Inception,
            vec![
                NamedTensor::new("conv1.weight", vec![2, 1, 3, 3], ramp(18, 0.125)),
                NamedTensor::new("conv1.bias", vec![2], vec![-0.5, f32::MIN_POSITIVE]),
                NamedTensor::new("incep1.b5_2.bias", vec![3], vec![1e-7, -2.5e6, 0.0]),
                NamedTensor::new("fc.weight", vec![2, 4], ramp(8, -1.5)),
            ],
        );
        ck.meta.insert("epoch".into(), "3".into());
        ck
    }

    fn expected_shapes() -> Vec<(&'static str, Vec<usize>)> {
        vec![
            ("conv1.weight", vec![2, 1, 3, 3]),
            ("conv1.bias", vec![2]),
            ("incep1.b5_2.bias", vec![3]),
            ("fc.weight", vec![2, 4]),
        ]
    }

    fn sorted(mut ck: Checkpoint) -> Checkpoint {
        ck.tensors.sort_by(|a, b| a.name.cmp(&b.name));
        ck
    }

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inception.safetensors");
        let ck = sample();
        ck.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back, sorted(ck));
        back.expect_net(NetId::Inception).unwrap();
        back.check_shapes(expected_shapes()).unwrap();
        assert_eq!(back.param_count(), 18 + 2 + 3 + 8);
    }

    /// Reads the file with nothing but the safetensors spec: 8-byte LE header
    /// length, a JSON header, then the raw tensor bytes — what PyTorch's
    /// loader relies on, checked independently of the `safetensors` crate.
    #[test]
    fn file_layout_follows_the_safetensors_spec() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let ck = sample();
        ck.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();

        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let data = &bytes[8 + n..];
        let header = header.as_object().unwrap();

        let meta = header["__metadata__"].as_object().unwrap();
        assert_eq!(meta["net"], "inception");
        assert_eq!(meta["format"], FORMAT);
        assert_eq!(meta["epoch"], "3");

        let mut spans = Vec::new();
        for t in &ck.tensors {
            let info = &header[&t.name];
            assert_eq!(info["dtype"], "F32", "{}", t.name);
            let shape: Vec<usize> = serde_json::from_value(info["shape"].clone()).unwrap();
            assert_eq!(shape, t.shape);
            let [a, b]: [usize; 2] = serde_json::from_value(info["data_offsets"].clone()).unwrap();
            assert_eq!(b - a, 4 * t.data.len());
            let values: Vec<f32> = data[a..b]
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(values, t.data, "{}", t.name);
            spans.push((a, b));
        }
        assert_eq!(
            header.len(),
            ck.tensors.len() + 1,
            "only tensors and __metadata__"
        );
        // The tensors tile the data section exactly, with no gaps or overlap.
        spans.sort();
        assert_eq!(spans[0].0, 0);
        assert!(spans.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(spans.last().unwrap().1, data.len());
    }

    /// With one metadata key (so no order to vary), the `safetensors`
    /// crate's own writer gives exactly our bytes.
    #[test]
    fn bytes_are_those_of_the_safetensors_writer() {
        let ck = sample();
        let bytes: Vec<(String, Vec<u8>)> = ck.tensors.iter().map(view).collect();
        let views = bytes.iter().zip(&ck.tensors).map(|((name, b), t)| {
            (
                name.as_str(),
                TensorView::new(Dtype::F32, t.shape.clone(), b).unwrap(),
            )
        });
        let theirs = safetensors::serialize(
            views,
            Some(HashMap::from([("epoch".to_string(), "3".to_string())])),
        )
        .unwrap();
        let ours = serialize(
            &ck.tensors,
            &BTreeMap::from([("epoch".to_string(), "3".to_string())]),
        );
        assert_eq!(
            String::from_utf8_lossy(&ours[..200]),
            String::from_utf8_lossy(&theirs[..200])
        );
        assert_eq!(ours, theirs);
    }

    /// Same checkpoint, same bytes, however its metadata was built; and the
    /// header lists the metadata in key order.
    #[test]
    fn the_same_checkpoint_always_gives_the_same_bytes() {
        let path = Path::new("ck.safetensors");
        let keys: Vec<String> = (0..12).map(|i| format!("key{i:02}")).collect();
        let mut forward = sample();
        keys.iter()
            .for_each(|k| drop(forward.meta.insert(k.clone(), k.repeat(2))));
        let mut backward = sample();
        backward.tensors.reverse();
        keys.iter()
            .rev()
            .for_each(|k| drop(backward.meta.insert(k.clone(), k.repeat(2))));
        let first = forward.to_bytes(path).unwrap();
        for _ in 0..20 {
            assert_eq!(forward.to_bytes(path).unwrap(), first);
            assert_eq!(backward.to_bytes(path).unwrap(), first);
        }
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
        let positions: Vec<usize> = ["epoch", "format", "key00", "key11", "net"]
            .iter()
            .map(|k| header.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{header}");
    }

    #[test]
    fn truncated_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let bytes = sample().to_bytes(&path).unwrap();
        for cut in [0, 5, 8, 40, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let msg = Checkpoint::load(&path).unwrap_err().to_string();
            assert!(
                msg.contains("ck.safetensors") && msg.contains("not a valid checkpoint"),
                "{cut}: {msg}"
            );
        }
    }

    #[test]
    fn other_files_are_rejected_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        std::fs::write(&path, b"PK\x03\x04 this is a zip, not a checkpoint").unwrap();
        let msg = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(msg.contains("not a safetensors file"), "{msg}");

        // A valid safetensors file from elsewhere: no metadata of ours.
        let one = TensorView::new(Dtype::F32, vec![1], &[0, 0, 128, 63]).unwrap();
        std::fs::write(&path, safetensors::serialize([("w", one)], None).unwrap()).unwrap();
        let msg = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(msg.contains("no `format`"), "{msg}");

        // Ours in all but dtype.
        let meta = HashMap::from([
            ("net".to_string(), "resnet".to_string()),
            ("format".into(), FORMAT.into()),
        ]);
        let half =
            safetensors::tensor::TensorView::new(Dtype::F16, vec![2], &[0, 60, 0, 60]).unwrap();
        std::fs::write(
            &path,
            safetensors::serialize([("fc.bias", half)], Some(meta)).unwrap(),
        )
        .unwrap();
        let msg = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(msg.contains("`fc.bias` has dtype F16"), "{msg}");

        let msg = Checkpoint::load(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("absent"), "{msg}");
    }

    #[test]
    fn a_checkpoint_of_an_unknown_network_is_refused() {
        let meta = BTreeMap::from([
            (KEY_NET.to_owned(), "lenet".to_owned()),
            (KEY_FORMAT.to_owned(), FORMAT.to_owned()),
        ]);
        let bytes = serialize(&sample().tensors, &meta);
        let err = Checkpoint::from_bytes(&bytes, FORMAT).unwrap_err();
        assert!(
            err.contains("`lenet`") && err.contains("resnet-identity"),
            "{err}"
        );
    }

    #[test]
    fn wrong_net_is_rejected() {
        let msg = sample().expect_net(NetId::ResNet).unwrap_err().to_string();
        assert!(
            msg.contains("`inception`") && msg.contains("`resnet`"),
            "{msg}"
        );
    }

    #[test]
    fn shape_check_names_the_first_problem() {
        let ck = sample();
        let mut missing = expected_shapes();
        missing.push(("fc.bias", vec![2]));
        let msg = ck.check_shapes(missing).unwrap_err().to_string();
        assert!(msg.contains("`fc.bias` is missing"), "{msg}");

        let mut reshaped = expected_shapes();
        reshaped[3].1 = vec![4, 2];
        let msg = ck.check_shapes(reshaped).unwrap_err().to_string();
        assert!(
            msg.contains("`fc.weight` has shape [2, 4], the network expects [4, 2]"),
            "{msg}"
        );

        let msg = ck
            .check_shapes(expected_shapes().into_iter().take(3))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unexpected tensor `fc.weight`"), "{msg}");
    }

    #[test]
    fn invalid_checkpoints_are_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let mut dup = sample();
        dup.tensors.push(dup.tensors[0].clone());
        assert!(dup
            .save(&path)
            .unwrap_err()
            .to_string()
            .contains("appears twice"));
        let mut reserved = sample();
        reserved.meta.insert("net".into(), "resnet".into());
        assert!(reserved
            .save(&path)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        assert!(!path.exists());
    }
}
