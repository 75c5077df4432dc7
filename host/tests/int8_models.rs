//! The committed int8 models against the committed f32 checkpoints they were
//! quantised from, on the full MNIST test set. The f32 side is the trainer's
//! own dfdx network, computed independently of `shared`'s int8 code and of
//! the exporter.

use files::mnist::{Dataset, Verify, DEFAULT_DATA_DIR};
use host::quant::export;
use host::train::checkpoint::Checkpoint;
use host::train::eval;
use host::train::modules::Net;
use shared::arch::CLASSES;
use shared::nets::Model;
use shared::NetId;
use std::path::PathBuf;
use std::sync::OnceLock;

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../artifacts")
        .join(name)
}

fn data() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        Dataset::load(DEFAULT_DATA_DIR.as_ref(), Verify::CanonicalMnist)
            .expect("MNIST in data/mnist")
    })
}

fn checkpoint(net: &str) -> Checkpoint {
    Checkpoint::load(&artifact(&format!("{net}.safetensors"))).unwrap()
}

fn correct(predictions: &[u8], labels: &[u8]) -> usize {
    predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count()
}

/// The int8 targets: int8 within 0.1 points of f32 and the same class on
/// at least 99.5% of the 10,000 test images. Returns the int8 and f32
/// counts of correct answers.
fn int8_tracks_f32(net: &str) -> (usize, usize) {
    let test = &data().test;
    let bytes = std::fs::read(artifact(&format!("{net}.postcard"))).unwrap();
    let model = Model::decode(&bytes).unwrap();
    assert_eq!(model.net().name(), net);
    let int8: Vec<u8> = device::reference::int8_predictions(&model, test, test.len())
        .iter()
        .map(|p| p.class)
        .collect();
    let float = eval::float_predictions(&checkpoint(net), test, test.len()).unwrap();
    assert_eq!((int8.len(), float.len()), (10_000, 10_000));
    let (q, f) = (correct(&int8, &test.labels), correct(&float, &test.labels));
    let agree = correct(&int8, &float);
    println!("{net}: int8 {q}, f32 {f} correct of 10000; {agree} agree");
    assert!(
        q + 10 >= f,
        "{net}: int8 gets {q} right, f32 {f}: more than 0.1 points lost"
    );
    assert!(
        agree >= 9_950,
        "{net}: int8 and f32 agree on {agree} of 10000 images"
    );
    (q, f)
}

#[test]
fn int8_inception_tracks_the_f32_checkpoint() {
    int8_tracks_f32("inception");
}

#[test]
fn int8_resnet_tracks_the_f32_checkpoint() {
    int8_tracks_f32("resnet");
}

/// The third network's targets: f32 at least 99.2%, int8
/// within 0.05 points of it.
#[test]
fn int8_resnet_identity_tracks_the_f32_checkpoint() {
    let (q, f) = int8_tracks_f32("resnet-identity");
    assert!(f >= 9_920, "f32 gets {f} of 10000 right");
    assert!(
        q + 5 >= f,
        "int8 gets {q} right, f32 {f}: more than 0.05 points lost"
    );
}

/// `shared`'s f32 forward pass (what calibration runs) equals the trainer's
/// network within 1e-4 on every logit.
fn shared_f32_matches_trainer<M: Net>() {
    let test = &data().test;
    let ckpt = checkpoint(M::ID.name());
    let n = 250;
    let want = eval::float_logits(&ckpt, test, n).unwrap();
    let net = export::float_net(&ckpt).unwrap();
    let mut worst = 0f32;
    for i in 0..n {
        let got = net.forward_pixels(test.image(i));
        for (g, w) in got.iter().zip(&want[i * CLASSES..(i + 1) * CLASSES]) {
            worst = worst.max((g - w).abs());
        }
    }
    println!("{}: largest logit difference {worst:e}", M::ID.name());
    assert!(worst <= 1e-4, "{}: logits differ by {worst}", M::ID.name());
}

#[test]
fn shared_f32_matches_the_trainer_on_every_network() {
    for net in NetId::ALL {
        host::with_net!(net, M => shared_f32_matches_trainer::<M>());
    }
}

/// The committed model files are what the exporter makes of the committed
/// checkpoints: nobody edited one without the other.
#[test]
fn committed_models_are_exports_of_the_committed_checkpoints() {
    for net in NetId::ALL.map(NetId::name) {
        let fresh =
            export::export(&checkpoint(net), &data().train, export::CALIBRATION_IMAGES).unwrap();
        let committed = std::fs::read(artifact(&format!("{net}.postcard"))).unwrap();
        assert!(
            fresh == committed,
            "{net}: re-run `cargo run -p host -- export` and commit artifacts/{net}.postcard"
        );
    }
}
