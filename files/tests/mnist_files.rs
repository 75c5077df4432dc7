//! The IDX loader against real MNIST and against files this test corrupts.
//!
//! Expected values come from the MNIST README (counts, first labels) and from
//! IDX files written here by a writer independent of the loader.

use files::mnist::{Dataset, Verify, DEFAULT_DATA_DIR};
use files::Error;
use flate2::{write::GzEncoder, Compression};
use std::io::Write;
use std::path::{Path, PathBuf};

const NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// An IDX file of unsigned bytes: 00 00 08 ndim, big-endian dims, data.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A small, valid, non-MNIST data set (raw IDX files): `n` images per split.
fn synthetic_dir(n: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "t10k"] {
        let pixels: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        std::fs::write(
            dir.path().join(format!("{split}-images-idx3-ubyte")),
            idx_bytes(&[n, 28, 28], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(format!("{split}-labels-idx1-ubyte")),
            idx_bytes(&[n], &labels),
        )
        .unwrap();
    }
    dir
}

/// A copy of the committed MNIST files, to corrupt.
fn mnist_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in NAMES {
        let file = format!("{name}.gz");
        std::fs::copy(
            Path::new(DEFAULT_DATA_DIR).join(&file),
            dir.path().join(&file),
        )
        .unwrap();
    }
    dir
}

fn load_err(dir: &Path, verify: Verify) -> (Error, String) {
    let err = Dataset::load(dir, verify).expect_err("loading must fail");
    let msg = err.to_string();
    (err, msg)
}

fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn committed_mnist_loads_and_matches_the_published_facts() {
    let ds = Dataset::load(Path::new(DEFAULT_DATA_DIR), Verify::CanonicalMnist).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (60_000, 10_000));
    assert_eq!(ds.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(
        ds.train.class_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        ds.test.class_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
}

#[test]
fn another_idx_set_of_the_same_shape_loads_without_the_mnist_digests() {
    let dir = synthetic_dir(20);
    let ds = Dataset::load(dir.path(), Verify::ShapeOnly).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (20, 20));
    assert_eq!(ds.test.image(1)[0], (784 % 251) as u8);
    // The same files are not MNIST: the canonical check says so, and how to
    // use them.
    let (err, msg) = load_err(dir.path(), Verify::CanonicalMnist);
    assert!(matches!(err, Error::NotMnist { .. }), "{msg}");
    assert!(
        msg.contains("none of them is MNIST's") && msg.contains("--dataset idx"),
        "{msg}"
    );
}

#[test]
fn one_file_of_another_set_among_mnist_is_corruption_not_another_set() {
    let dir = mnist_copy();
    let other = synthetic_dir(10_000);
    std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
    std::fs::copy(
        other.path().join("t10k-images-idx3-ubyte"),
        dir.path().join("t10k-images-idx3-ubyte"),
    )
    .unwrap();
    let (err, msg) = load_err(dir.path(), Verify::CanonicalMnist);
    assert!(matches!(err, Error::Digest { .. }), "{msg}");
    assert!(
        msg.contains("t10k-images-idx3-ubyte") && msg.contains("corrupted"),
        "{msg}"
    );
}

#[test]
fn gzip_and_raw_files_load_alike() {
    let dir = synthetic_dir(5);
    let raw = Dataset::load(dir.path(), Verify::ShapeOnly).unwrap();
    for name in NAMES {
        let path = dir.path().join(name);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(dir.path().join(format!("{name}.gz")), gzip(&bytes)).unwrap();
        std::fs::remove_file(path).unwrap();
    }
    let gz = Dataset::load(dir.path(), Verify::ShapeOnly).unwrap();
    assert_eq!(raw.train.images, gz.train.images);
    assert_eq!(raw.test.labels, gz.test.labels);
}

#[test]
fn a_missing_file_is_named() {
    let dir = mnist_copy();
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let (err, msg) = load_err(dir.path(), Verify::CanonicalMnist);
    assert!(
        matches!(
            err,
            Error::MissingFile {
                name: "t10k-labels-idx1-ubyte",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("not found"), "{msg}");
}

#[test]
fn a_missing_directory_is_reported() {
    let (err, msg) = load_err(Path::new("/nonexistent/mnist"), Verify::CanonicalMnist);
    assert!(matches!(err, Error::MissingFile { .. }), "{msg}");
    assert!(msg.contains("/nonexistent/mnist"), "{msg}");
}

#[test]
fn a_truncated_gzip_file_is_named() {
    let dir = mnist_copy();
    let path = path_of(dir.path(), "train-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let (err, msg) = load_err(dir.path(), Verify::CanonicalMnist);
    assert!(matches!(err, Error::Gzip { .. }), "{msg}");
    assert!(
        msg.contains("train-labels-idx1-ubyte.gz") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn a_tampered_mnist_file_fails_its_digest() {
    let dir = mnist_copy();
    let gz = path_of(dir.path(), "t10k-images-idx3-ubyte.gz");
    let mut bytes = flate2_decompress(&std::fs::read(&gz).unwrap());
    bytes[5000] ^= 0xff; // one pixel: the structure stays valid
    std::fs::write(&gz, gzip(&bytes)).unwrap();
    let (err, msg) = load_err(dir.path(), Verify::CanonicalMnist);
    assert!(matches!(err, Error::Digest { .. }), "{msg}");
    assert!(
        msg.contains("t10k-images-idx3-ubyte.gz") && msg.contains("SHA-256"),
        "{msg}"
    );
    // Structurally it is still a valid set.
    Dataset::load(dir.path(), Verify::ShapeOnly).unwrap();
}

fn flate2_decompress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Replace one raw file of a synthetic set, then expect an IDX error naming it.
fn expect_idx_error(name: &str, bytes: Vec<u8>, needle: &str) {
    let dir = synthetic_dir(4);
    std::fs::write(dir.path().join(name), bytes).unwrap();
    let (err, msg) = load_err(dir.path(), Verify::ShapeOnly);
    assert!(matches!(err, Error::Idx { .. }), "{msg}");
    assert!(msg.contains(name), "error does not name {name}: {msg}");
    assert!(msg.contains(needle), "error does not say {needle:?}: {msg}");
}

#[test]
fn a_truncated_raw_file_is_rejected() {
    let full = idx_bytes(&[4, 28, 28], &[0; 4 * 784]);
    expect_idx_error(
        "train-images-idx3-ubyte",
        full[..full.len() - 1].to_vec(),
        "truncated",
    );
    expect_idx_error(
        "train-images-idx3-ubyte",
        full[..10].to_vec(),
        "truncated header",
    );
    expect_idx_error(
        "train-images-idx3-ubyte",
        full[..2].to_vec(),
        "shorter than",
    );
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = idx_bytes(&[4], &[1, 2, 3, 4]);
    bytes.push(0);
    expect_idx_error("t10k-labels-idx1-ubyte", bytes, "trailing");
}

#[test]
fn a_bad_magic_or_element_type_is_rejected() {
    let mut bytes = idx_bytes(&[4], &[1, 2, 3, 4]);
    bytes[0] = 0x1;
    expect_idx_error("train-labels-idx1-ubyte", bytes, "magic");
    let mut bytes = idx_bytes(&[4], &[1, 2, 3, 4]);
    bytes[2] = 0x0d; // float
    expect_idx_error("train-labels-idx1-ubyte", bytes, "element type");
}

#[test]
fn a_wrong_image_size_is_rejected() {
    expect_idx_error(
        "t10k-images-idx3-ubyte",
        idx_bytes(&[4, 28, 27], &[0; 4 * 28 * 27]),
        "28 x 28",
    );
}

#[test]
fn labels_must_match_images() {
    expect_idx_error(
        "train-labels-idx1-ubyte",
        idx_bytes(&[3], &[1, 2, 3]),
        "3 labels for 4 images",
    );
    expect_idx_error(
        "train-labels-idx1-ubyte",
        idx_bytes(&[2, 2], &[1, 2, 3, 4]),
        "1-D",
    );
    expect_idx_error(
        "train-labels-idx1-ubyte",
        idx_bytes(&[4], &[1, 2, 10, 4]),
        "label 10 at index 2",
    );
}
