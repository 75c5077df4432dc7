//! The fast kernels against compositions of the plain references
//! (`conv2d_s8_ref`, `maxpool2d_s8_ref`, `add_requant_s8_ref`): identical
//! bytes on the networks' shapes and on odd ones, and nothing written
//! outside a kernel's channel slice.

use super::*;
use crate::kernels::dsp::Quad;
use crate::kernels::{add_requant_s8_ref, conv2d_s8_ref, maxpool2d_s8_ref, ChannelOffset};
use crate::testutil::{flat3, random_params, Rng};

fn scratch<const CI: usize, const K: usize>() -> Vec<Quad> {
    vec![[0xdead_beef; crate::kernels::dsp::QUAD_WORDS]; scratch_quads(CI, K)]
}

fn random_input<const H: usize, const W: usize, const C: usize>(
    rng: &mut Rng,
) -> Box<[[[i8; C]; W]; H]> {
    let mut x = Box::new([[[0i8; C]; W]; H]);
    rng.fill_i8(flat3(&mut x));
    x
}

fn random_range(rng: &mut Rng) -> ActRange {
    match rng.below(3) {
        0 => ActRange::FULL,
        1 => ActRange::relu(rng.i8()),
        _ => {
            let (a, b) = (rng.i8(), rng.i8());
            ActRange::new(a.min(b), a.max(b)).unwrap()
        }
    }
}

/// conv2d_s8 == conv2d_s8_ref, channel slice included.
fn conv_case<
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const CT: usize,
    const C_OFF: usize,
>(
    seed: u64,
    cases: usize,
) {
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let p = random_params::<CI, CO, K>(&mut rng);
        let input = random_input::<H, W, CI>(&mut rng);
        let mut fast = Box::new([[[0i8; CT]; WO]; HO]);
        rng.fill_uniform_i8(flat3(&mut fast));
        let mut slow = fast.clone();
        conv2d_s8(
            &p.layer::<PAD>(),
            &input,
            &mut fast,
            ChannelOffset::<C_OFF>,
            &mut scratch::<CI, K>(),
        );
        conv2d_s8_ref(&p.layer::<PAD>(), &input, &mut slow, ChannelOffset::<C_OFF>);
        assert_eq!(
            fast, slow,
            "H{H} W{W} CI{CI} K{K} P{PAD} CO{CO} case {case}"
        );
    }
}

#[test]
fn fast_conv_equals_reference_on_the_networks_shapes() {
    use crate::arch::{inception as i, inception_a as a, resnet as r};
    const S: usize = crate::arch::IMAGE_SIDE;
    const P: usize = i::P1;
    const Q: usize = i::P2;
    const R: usize = r::P1;
    conv_case::<S, S, 1, { i::C1 }, { i::K1 }, 0, { i::S1 }, { i::S1 }, { i::C1 }, 0>(1, 2);
    conv_case::<P, P, { a::OUT }, { i::C2 }, { i::K2 }, 0, { i::S2 }, { i::S2 }, { i::C2 }, 0>(
        2, 3,
    );
    conv_case::<P, P, { i::C1 }, { a::B1 }, 1, 0, P, P, { a::OUT }, 0>(3, 4);
    conv_case::<P, P, { a::B5_REDUCE }, { a::B5 }, 5, 2, P, P, { a::OUT }, { a::B1 }>(4, 4);
    conv_case::<P, P, { a::B3_REDUCE }, { a::B3 }, 3, 1, P, P, { a::B3 }, 0>(5, 4);
    conv_case::<P, P, { a::B3 }, { a::B3 }, 3, 1, P, P, { a::OUT }, { a::B1 + a::B5 }>(6, 4);
    conv_case::<Q, Q, { a::B5_REDUCE }, { a::B5 }, 5, 2, Q, Q, { a::OUT }, { a::B1 }>(7, 10);
    conv_case::<Q, Q, { i::C2 }, { a::BP }, 1, 0, Q, Q, { a::OUT }, { a::OUT - a::BP }>(8, 10);
    conv_case::<S, S, 1, { r::C1 }, { r::K }, { r::PAD }, S, S, { r::C1 }, 0>(9, 2);
    conv_case::<R, R, { r::C1 }, { r::C2 }, { r::K }, { r::PAD }, R, R, { r::C2 }, 0>(10, 3);
}

#[test]
fn fast_conv_equals_reference_on_odd_shapes() {
    // Every CI % 4, partial tiles, padding up to K - 1, slices at both ends,
    // a window longer than one im2col pass (CI 24, K 5: 600 values).
    conv_case::<1, 1, 1, 1, 1, 0, 1, 1, 1, 0>(20, 30);
    conv_case::<1, 1, 3, 2, 3, 1, 1, 1, 5, 3>(21, 30);
    conv_case::<2, 7, 3, 4, 3, 2, 4, 9, 7, 1>(22, 30);
    conv_case::<5, 3, 2, 3, 5, 4, 9, 7, 3, 0>(23, 30);
    conv_case::<6, 9, 4, 2, 5, 0, 2, 5, 2, 0>(24, 30);
    conv_case::<7, 5, 5, 6, 5, 1, 5, 3, 8, 2>(25, 30);
    conv_case::<4, 4, 17, 9, 1, 0, 4, 4, 30, 21>(27, 30);
    conv_case::<8, 8, 33, 3, 5, 2, 8, 8, 3, 0>(29, 10);
    conv_case::<7, 6, 24, 5, 5, 1, 5, 4, 5, 0>(30, 10);
    conv_case::<3, 3, 8, 7, 3, 2, 5, 5, 9, 2>(31, 30);
}

/// conv2d_x3_s8 == three reference convs.
#[test]
fn fused_convs_equal_separate_reference_convs() {
    let mut rng = Rng::new(40);
    for case in 0..20 {
        let a = random_params::<10, 16, 1>(&mut rng);
        let mut b = random_params::<10, 16, 1>(&mut rng);
        let mut c = random_params::<10, 16, 1>(&mut rng);
        // One pass (the networks' case), or passes of {a, b} | c, a | {b, c}
        // and (zero points drawn apart) a | b | c.
        match case % 5 {
            0 => {}
            1 => b.in_zp = a.in_zp,
            2 => c.in_zp = b.in_zp,
            _ => (b.in_zp, c.in_zp) = (a.in_zp, a.in_zp),
        }
        let input = random_input::<12, 12, 10>(&mut rng);
        let mut fast = (
            Box::new([[[0i8; 88]; 12]; 12]),
            Box::new([[[0i8; 16]; 12]; 12]),
            Box::new([[[0i8; 16]; 12]; 12]),
        );
        rng.fill_uniform_i8(flat3(&mut fast.0));
        let mut slow = fast.clone();
        conv2d_x3_s8(
            (&a.layer::<0>(), &b.layer::<0>(), &c.layer::<0>()),
            &input,
            (&mut *fast.0, &mut *fast.1, &mut *fast.2),
            (ChannelOffset::<0>, ChannelOffset::<0>, ChannelOffset::<0>),
            &mut scratch::<10, 1>(),
        );
        conv2d_s8_ref(&a.layer::<0>(), &input, &mut slow.0, ChannelOffset::<0>);
        conv2d_s8_ref(&b.layer::<0>(), &input, &mut slow.1, ChannelOffset::<0>);
        conv2d_s8_ref(&c.layer::<0>(), &input, &mut slow.2, ChannelOffset::<0>);
        assert_eq!(fast, slow, "case {case}");
    }
    for case in 0..10 {
        let a = random_params::<3, 3, 3>(&mut rng);
        let mut b = random_params::<3, 5, 3>(&mut rng);
        if case % 3 != 0 {
            b.in_zp = a.in_zp;
        }
        let input = random_input::<6, 5, 3>(&mut rng);
        let mut fast = (Box::new([[[0i8; 4]; 5]; 6]), Box::new([[[0i8; 5]; 5]; 6]));
        rng.fill_uniform_i8(flat3(&mut fast.0));
        let mut slow = fast.clone();
        conv2d_x2_s8(
            (&a.layer::<1>(), &b.layer::<1>()),
            &input,
            (&mut *fast.0, &mut *fast.1),
            (ChannelOffset::<1>, ChannelOffset::<0>),
            &mut scratch::<3, 3>(),
        );
        conv2d_s8_ref(&a.layer::<1>(), &input, &mut slow.0, ChannelOffset::<1>);
        conv2d_s8_ref(&b.layer::<1>(), &input, &mut slow.1, ChannelOffset::<0>);
        assert_eq!(fast, slow, "case {case}");
    }
}

/// conv2d_pool_s8 == reference conv, then reference max pool.
fn pool_case<
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const PH: usize,
    const PW: usize,
>(
    seed: u64,
    cases: usize,
) {
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let p = random_params::<CI, CO, K>(&mut rng);
        let range = random_range(&mut rng);
        let input = random_input::<H, W, CI>(&mut rng);
        let mut full = Box::new([[[0i8; CO]; WO]; HO]);
        conv2d_s8_ref(&p.layer::<PAD>(), &input, &mut full, ChannelOffset::<0>);
        let mut slow = Box::new([[[0i8; CO]; PW]; PH]);
        maxpool2d_s8_ref(range, &full, &mut slow);
        let mut fast = Box::new([[[0i8; CO]; PW]; PH]);
        conv2d_pool_s8::<H, W, CI, CO, K, PAD, HO, WO, PH, PW>(
            &p.layer::<PAD>(),
            range,
            &input,
            &mut fast,
            &mut scratch::<CI, K>(),
        );
        assert_eq!(fast, slow, "H{H} W{W} CI{CI} K{K} CO{CO} case {case}");
    }
}

#[test]
fn fused_conv_pool_equals_reference_conv_then_pool() {
    use crate::arch::{inception as i, inception_a as a};
    const S: usize = crate::arch::IMAGE_SIDE;
    pool_case::<S, S, 1, { i::C1 }, { i::K1 }, 0, { i::S1 }, { i::S1 }, { i::P1 }, { i::P1 }>(
        50, 3,
    );
    pool_case::<
        { i::P1 },
        { i::P1 },
        { a::OUT },
        { i::C2 },
        { i::K2 },
        0,
        { i::S2 },
        { i::S2 },
        { i::P2 },
        { i::P2 },
    >(51, 3);
    pool_case::<6, 10, 3, 5, 3, 1, 6, 10, 3, 5>(52, 30);
    pool_case::<4, 4, 8, 7, 1, 0, 4, 4, 2, 2>(53, 30);
    pool_case::<9, 7, 2, 3, 2, 0, 8, 6, 4, 3>(54, 30);
}

/// conv2d_add_pool_s8 == reference conv, reference add, reference pool.
fn add_pool_case<const S: usize, const CI: usize, const CO: usize, const P: usize>(
    seed: u64,
    cases: usize,
) {
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let p = random_params::<CI, CO, 3>(&mut rng);
        let range = random_range(&mut rng);
        let add = AddS8 {
            a_zero_point: p.output.zero_point,
            ..crate::testutil::random_add(&mut rng)
        };
        let input = random_input::<S, S, CI>(&mut rng);
        let shortcut = random_input::<S, S, CO>(&mut rng);
        let mut y = Box::new([[[0i8; CO]; S]; S]);
        conv2d_s8_ref(&p.layer::<1>(), &input, &mut y, ChannelOffset::<0>);
        let mut sum = Box::new([[[0i8; CO]; S]; S]);
        add_requant_s8_ref(&add, &y, &shortcut, &mut sum);
        let mut slow = Box::new([[[0i8; CO]; P]; P]);
        maxpool2d_s8_ref(range, &sum, &mut slow);
        let mut fast = Box::new([[[0i8; CO]; P]; P]);
        let mut lut = Box::new([[0i32; 256]; 2]);
        conv2d_add_pool_s8(
            (&p.layer::<1>(), &add),
            range,
            &input,
            &shortcut,
            &mut fast,
            (&mut scratch::<CI, 3>(), &mut lut),
        );
        assert_eq!(fast, slow, "S{S} CI{CI} CO{CO} case {case}");
    }
}

#[test]
fn fused_conv_add_pool_equals_reference_conv_add_pool() {
    use crate::arch::resnet as r;
    add_pool_case::<{ crate::arch::IMAGE_SIDE }, 1, { r::C1 }, { r::P1 }>(60, 3);
    add_pool_case::<{ r::P1 }, { r::C1 }, { r::C2 }, { r::P2 }>(61, 5);
    add_pool_case::<6, 4, 3, 3>(62, 40);
    add_pool_case::<2, 5, 2, 1>(63, 40);
}
