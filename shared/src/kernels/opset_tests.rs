//! The int8 arithmetic that [`OPSET`] names, pinned: the reference
//! kernels' outputs on fixed pseudo-random inputs, hashed. Their
//! correctness is tested elsewhere (against real arithmetic, within one
//! step); this test fails when any of them changes at all, so that a
//! change of arithmetic comes with a new op-set, and model files written
//! for the old one are refused instead of answering differently.

use super::*;
use crate::model::{InputSpec, OPSET};
use crate::quant::requantize_ref;
use crate::testutil::{random_add, random_output, random_params, Rng};

/// FNV-1a over the outputs, in the order computed below.
fn fingerprint() -> u32 {
    let mut out: Vec<i32> = Vec::new();
    let mut rng = Rng::new(0x0b5e7);
    // Requantisation on every shift, both signs, ties included.
    for shift in -31..=30 {
        let m =
            crate::quant::Requant::new((1 << 30) + (rng.next_u32() >> 2) as i32, shift).unwrap();
        for acc in [
            0,
            1,
            -1,
            3,
            -3,
            1 << 20,
            -(1 << 20),
            i32::MAX,
            i32::MIN,
            rng.next_u32() as i32,
        ] {
            out.push(requantize_ref(acc, m));
        }
    }
    let p = random_params::<3, 4, 3>(&mut rng);
    let mut x = [[[0i8; 3]; 5]; 5];
    rng.fill_i8(x.as_flattened_mut().as_flattened_mut());
    let mut y = [[[0i8; 4]; 5]; 5];
    conv2d_s8_ref(&p.layer::<1>(), &x, &mut y, ChannelOffset::<0>);
    out.extend(
        y.as_flattened()
            .as_flattened()
            .iter()
            .map(|&v| i32::from(v)),
    );
    let mut pooled = [[[0i8; 4]; 2]; 2];
    maxpool2d_s8_ref(ActRange::relu(rng.i8()), &y, &mut pooled);
    out.extend(
        pooled
            .as_flattened()
            .as_flattened()
            .iter()
            .map(|&v| i32::from(v)),
    );
    let mut avg = [[[0i8; 3]; 5]; 5];
    avgpool3x3_s8_ref(rng.i8(), &x, &mut avg);
    out.extend(
        avg.as_flattened()
            .as_flattened()
            .iter()
            .map(|&v| i32::from(v)),
    );
    let add = random_add(&mut rng);
    let mut z = [[[0i8; 4]; 5]; 5];
    rng.fill_i8(z.as_flattened_mut().as_flattened_mut());
    let mut sum = [[[0i8; 4]; 5]; 5];
    add_requant_s8_ref(&add, &y, &z, &mut sum);
    out.extend(
        sum.as_flattened()
            .as_flattened()
            .iter()
            .map(|&v| i32::from(v)),
    );
    let mut w = [[[[0i8; 4]; 5]; 5]; 3];
    for o in w.iter_mut() {
        rng.fill_i8(o.as_flattened_mut().as_flattened_mut());
    }
    let (bias, requant) = (
        [7, -70_000, 1 << 20],
        [rng.requant(), rng.requant(), rng.requant()],
    );
    let fc = LinearS8 {
        weights: &w,
        bias: &bias,
        requant: &requant,
        input_zero_point: rng.i8(),
        output: random_output(&mut rng),
    };
    let mut logits = [0i8; 3];
    linear_s8_ref(&fc, &sum, &mut logits);
    out.extend(logits.map(i32::from));
    out.extend(InputSpec::full_range().lut.map(i32::from));
    out.iter().fold(0x811c_9dc5u32, |h, v| {
        v.to_le_bytes()
            .iter()
            .fold(h, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
    })
}

#[test]
fn the_reference_kernels_compute_the_arithmetic_of_the_opset() {
    // Op-set 1's fingerprint. If this fails, the arithmetic changed: if on
    // purpose, bump `model::OPSET` and record the new value here (and
    // re-export every model file).
    let recorded: [(u16, u32); 1] = [(1, 0x5876_7264)];
    let (_, want) = recorded
        .iter()
        .find(|(o, _)| *o == OPSET)
        .expect("OPSET has a recorded fingerprint");
    assert_eq!(
        fingerprint(),
        *want,
        "the int8 arithmetic changed without a new OPSET"
    );
}
