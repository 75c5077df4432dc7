//! MNIST-shaped IDX data: loading, validation and normalisation.
//!
//! Files may be gzip-compressed (`NAME.gz`) or raw (`NAME`). Every file is
//! checked for its magic number, element type, dimensions and exact length;
//! with [`Verify::CanonicalMnist`] the decompressed bytes must also match the
//! canonical SHA-256 digests. Other IDX sets of the same shape
//! (Fashion-MNIST, say) load with [`Verify::ShapeOnly`].

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use shared::arch::{CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The data directory committed with the project.
pub const DEFAULT_DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/mnist");

/// No IDX file we accept decompresses to more than this; it bounds the
/// memory a hostile gzip stream can make us allocate.
const MAX_IDX_BYTES: u64 = 64 << 20;

/// One of the four files of an MNIST-shaped data set.
#[derive(Clone, Copy, Debug)]
struct IdxFile {
    name: &'static str,
    /// SHA-256 of the canonical MNIST file's decompressed bytes.
    mnist_sha256: &'static str,
}

const TRAIN_IMAGES: IdxFile = IdxFile {
    name: "train-images-idx3-ubyte",
    mnist_sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
};
const TRAIN_LABELS: IdxFile = IdxFile {
    name: "train-labels-idx1-ubyte",
    mnist_sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
};
const TEST_IMAGES: IdxFile = IdxFile {
    name: "t10k-images-idx3-ubyte",
    mnist_sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
};
const TEST_LABELS: IdxFile = IdxFile {
    name: "t10k-labels-idx1-ubyte",
    mnist_sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
};

/// How strictly to check the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Verify {
    /// Structure checks plus the canonical MNIST SHA-256 digests.
    #[default]
    CanonicalMnist,
    /// Structure checks only: any IDX set of 28x28 images and 10 classes.
    ShapeOnly,
}

/// Images and labels of one split.
#[derive(Clone, Debug)]
pub struct Split {
    /// `len() * IMAGE_PIXELS` raw pixels, image after image, row-major.
    pub images: Vec<u8>,
    /// One label in `0..CLASSES` per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The raw pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8; IMAGE_PIXELS] {
        self.images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
            .try_into()
            .expect("slice has IMAGE_PIXELS bytes")
    }

    /// How many images of each class the split holds.
    pub fn class_counts(&self) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// SHA-256 of the pixels, then the labels (hex): which data a run
    /// trained on, so a resumed run can tell whether it has the same.
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        h.update(&self.images);
        h.update(&self.labels);
        hex(&h.finalize())
    }

    /// The first `n` images (all of them if `n` is larger).
    pub fn truncated(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.images.truncate(n * IMAGE_PIXELS);
        self.labels.truncate(n);
        self
    }
}

/// A training and a test split.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The training split (60,000 images for MNIST).
    pub train: Split,
    /// The test split (10,000 images for MNIST).
    pub test: Split,
}

impl Dataset {
    /// Load and check the four files in `dir`.
    ///
    /// The structure is checked first, so a damaged file is named with what
    /// is wrong with it. With [`Verify::CanonicalMnist`], four valid files
    /// none of which is MNIST's are another data set ([`Error::NotMnist`]);
    /// some but not all differing is corruption ([`Error::Digest`]).
    pub fn load(dir: &Path, verify: Verify) -> Result<Self> {
        let canonical = verify == Verify::CanonicalMnist;
        // In order, stopping at the first bad file.
        let read = |file| read_idx(dir, file, canonical);
        let (train_images, train_labels) = (read(TRAIN_IMAGES)?, read(TRAIN_LABELS)?);
        let (test_images, test_labels) = (read(TEST_IMAGES)?, read(TEST_LABELS)?);
        let digest_error = mnist_digest_error(
            dir,
            [&train_images, &train_labels, &test_images, &test_labels],
        );
        let dataset = Dataset {
            train: to_split(train_images, train_labels)?,
            test: to_split(test_images, test_labels)?,
        };
        match digest_error {
            Some(e) => Err(e),
            None => Ok(dataset),
        }
    }
}

/// With the canonical check ([`read_idx`] hashed the files): none of the
/// four files MNIST's is another data set, some is corruption.
fn mnist_digest_error(dir: &Path, read: [&IdxRead; 4]) -> Option<Error> {
    let differing: Vec<&IdxRead> = read
        .into_iter()
        .filter(|r| {
            r.sha256
                .as_deref()
                .is_some_and(|d| d != r.file.mnist_sha256)
        })
        .collect();
    if differing.len() == read.len() {
        return Some(Error::NotMnist {
            dir: dir.to_path_buf(),
        });
    }
    differing.first().map(|r| Error::Digest {
        path: r.path.clone(),
        expected: r.file.mnist_sha256,
        actual: r.sha256.clone().expect("hashed"),
    })
}

fn to_split(images: IdxRead, labels: IdxRead) -> Result<Split> {
    let (img_path, img) = (&images.path, images.idx);
    let (lbl_path, lbl) = (&labels.path, labels.idx);
    let idx_err = |path: &PathBuf, problem: String| Error::Idx {
        path: path.clone(),
        problem,
    };

    if img.dims.len() != 3 || img.dims[1] != IMAGE_SIDE || img.dims[2] != IMAGE_SIDE {
        return Err(idx_err(
            img_path,
            format!(
                "expected images of shape N x {IMAGE_SIDE} x {IMAGE_SIDE}, found {:?}",
                img.dims
            ),
        ));
    }
    if lbl.dims.len() != 1 {
        return Err(idx_err(
            lbl_path,
            format!("expected a 1-D label file, found dimensions {:?}", lbl.dims),
        ));
    }
    if img.dims[0] != lbl.dims[0] {
        return Err(idx_err(
            lbl_path,
            format!(
                "{} labels for {} images in {}",
                lbl.dims[0],
                img.dims[0],
                img_path.display()
            ),
        ));
    }
    if let Some(pos) = lbl.data.iter().position(|&l| l as usize >= CLASSES) {
        return Err(idx_err(
            lbl_path,
            format!(
                "label {} at index {pos} is not a class 0..{CLASSES}",
                lbl.data[pos]
            ),
        ));
    }
    Ok(Split {
        images: img.data,
        labels: lbl.data,
    })
}

/// One file as read: where it was, its contents and their digest.
struct IdxRead {
    file: IdxFile,
    path: PathBuf,
    idx: Idx,
    /// SHA-256 of the decompressed bytes, in hex, when it was asked for.
    sha256: Option<String>,
}

/// A decoded IDX file of unsigned bytes.
struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Find `file` in `dir` (gzip first, then raw), read it and check its
/// structure; with `hash`, also take its SHA-256.
fn read_idx(dir: &Path, file: IdxFile, hash: bool) -> Result<IdxRead> {
    let gz = dir.join(format!("{}.gz", file.name));
    let raw = dir.join(file.name);
    let path = if gz.is_file() {
        gz
    } else if raw.is_file() {
        raw
    } else {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            name: file.name,
        });
    };
    let bytes = read_maybe_gzip(&path)?;
    let sha256 = hash.then(|| sha256_hex(&bytes));
    let idx = parse_idx(bytes).map_err(|problem| Error::Idx {
        path: path.clone(),
        problem,
    })?;
    Ok(IdxRead {
        file,
        path,
        idx,
        sha256,
    })
}

fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::read(path).map_err(io_err)?;
    if !file.starts_with(&[0x1f, 0x8b]) {
        return Ok(file);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&file[..])
        .take(MAX_IDX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|source| Error::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > MAX_IDX_BYTES {
        return Err(Error::Idx {
            path: path.to_path_buf(),
            problem: format!("decompresses to more than {MAX_IDX_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// Parse an IDX file of unsigned bytes: magic `00 00 08 ndim`, `ndim`
/// big-endian u32 dimensions, then exactly their product of bytes.
fn parse_idx(mut bytes: Vec<u8>) -> std::result::Result<Idx, String> {
    let header = bytes.get(..4).ok_or_else(|| {
        format!(
            "file is {} bytes, shorter than the 4-byte IDX magic",
            bytes.len()
        )
    })?;
    if header[..2] != [0, 0] {
        return Err(format!(
            "bad IDX magic {:02x}{:02x}{:02x}{:02x} (expected 0000 08 nn)",
            header[0], header[1], header[2], header[3]
        ));
    }
    if header[2] != 0x08 {
        return Err(format!(
            "IDX element type 0x{:02x} is not unsigned byte (0x08)",
            header[2]
        ));
    }
    let ndim = header[3] as usize;
    if ndim == 0 {
        return Err("IDX file declares zero dimensions".into());
    }
    let dims_end = 4 + 4 * ndim;
    let dim_bytes = bytes.get(4..dims_end).ok_or_else(|| {
        format!(
            "truncated header: {ndim} dimensions need {dims_end} bytes, file has {}",
            bytes.len()
        )
    })?;
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4-byte chunk")) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("dimensions overflow")?;
    let data = &bytes[dims_end..];
    if data.len() < expected {
        return Err(format!(
            "truncated: dimensions {dims:?} need {expected} data bytes, found {}",
            data.len()
        ));
    }
    if data.len() > expected {
        return Err(format!(
            "{} unexpected trailing bytes after the {expected} data bytes of dimensions {dims:?}",
            data.len() - expected
        ));
    }
    bytes.drain(..dims_end);
    Ok(Idx { dims, data: bytes })
}

/// The SHA-256 of `bytes`, in lowercase hex: how data files and
/// checkpoints are identified.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
