//! `host predict` on picture files made here from MNIST test digits: each
//! classified by every network as the host's int8 pass classifies the
//! MNIST digit itself; bad files named, the others still classified.

use device::reference::{Reference, MODEL_DIR};
use files::mnist::{Dataset, Verify, DEFAULT_DATA_DIR};
use shared::arch::IMAGE_SIDE;
use shared::NetId;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .output()
        .expect("run host")
}

/// Test digit `i` drawn three times larger, dark on light, in a margin.
fn page(i: usize) -> image::GrayImage {
    let test = Dataset::load(DEFAULT_DATA_DIR.as_ref(), Verify::ShapeOnly)
        .unwrap()
        .test;
    let digit = test.image(i).to_vec();
    image::GrayImage::from_fn(120, 110, move |x, y| {
        let (dx, dy) = (
            (x as usize).wrapping_sub(20) / 3,
            (y as usize).wrapping_sub(12) / 3,
        );
        image::Luma([if dx < IMAGE_SIDE && dy < IMAGE_SIDE {
            255 - digit[dy * IMAGE_SIDE + dx]
        } else {
            255
        }])
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn encoded(img: &image::GrayImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn pictures_are_classified_as_their_mnist_digits_and_bad_files_named() {
    let dir = tempfile::tempdir().unwrap();
    let png = write(
        dir.path(),
        "seven.png",
        &encoded(&page(0), image::ImageFormat::Png),
    );
    let jpeg = write(
        dir.path(),
        "two.jpg",
        &encoded(&page(1), image::ImageFormat::Jpeg),
    );
    let pgm = write(
        dir.path(),
        "one.pgm",
        &encoded(&page(2), image::ImageFormat::Pnm),
    );
    let text = write(dir.path(), "notes.png", b"not a picture");
    let empty = write(dir.path(), "empty.jpg", b"");
    let files = [&png, &text, &jpeg, &empty, &pgm];
    let out = host(
        &[
            &["predict", "--json"][..],
            &files.map(|p| p.to_str().unwrap())[..],
        ]
        .concat(),
    );
    assert!(!out.status.success(), "two files are bad");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes.png: not a PNG, JPEG or PGM image"),
        "{stderr}"
    );
    assert!(stderr.contains("empty.jpg: the file is empty"), "{stderr}");
    assert!(
        stderr.contains("2 of 5 files could not be classified"),
        "{stderr}"
    );

    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 5);
    assert!(images[1]["error"].as_str().unwrap().contains("not a PNG"));
    // The MNIST digits the pictures were made from, classified by the host.
    let test = Dataset::load(DEFAULT_DATA_DIR.as_ref(), Verify::ShapeOnly)
        .unwrap()
        .test;
    for (entry, digit) in [(&images[0], 0), (&images[2], 1), (&images[4], 2)] {
        let answers = entry["host"].as_array().unwrap();
        assert_eq!(answers.len(), NetId::COUNT);
        for (a, net) in answers.iter().zip(NetId::ALL) {
            assert_eq!(a["net"], net.name());
            let want = Reference::load(MODEL_DIR.as_ref(), net)
                .unwrap()
                .predict(test.image(digit))
                .class;
            assert_eq!(a["class"], want, "{} of {}", net.name(), entry["file"]);
            assert_eq!(
                a["class"],
                test.labels[digit],
                "{} of {}",
                net.name(),
                entry["file"]
            );
            let p: Vec<f64> = a["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect();
            assert!(
                (p.iter().sum::<f64>() - 1.0).abs() < 1e-9
                    && p[usize::from(test.labels[digit])] > 0.5,
                "{p:?}"
            );
        }
        assert_eq!(entry["input"].as_array().unwrap().len(), 784);
        assert!(entry["device"].is_null());
    }
}

#[test]
fn one_network_in_text() {
    let dir = tempfile::tempdir().unwrap();
    let png = write(
        dir.path(),
        "seven.png",
        &encoded(&page(0), image::ImageFormat::Png),
    );
    let out = host(&["predict", "--net", "resnet-identity", png.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("seven.png (120x110 pixels):"), "{text}");
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0]
            .split_whitespace()
            .take(2)
            .eq(["resnet-identity", "7"]),
        "{text}"
    );
}

#[test]
fn a_huge_picture_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // 8,000 x 8,000 = 64 megapixels of white: small as a PNG.
    let big = image::GrayImage::from_pixel(8000, 8000, image::Luma([255]));
    let path = write(
        dir.path(),
        "huge.png",
        &encoded(&big, image::ImageFormat::Png),
    );
    let out = host(&["predict", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("huge.png: 8000x8000 pixels is over the limit"),
        "{stderr}"
    );
}
