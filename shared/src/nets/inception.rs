//! InceptionNet, int8: conv1 + max pool + ReLU (fused), incep1, conv2 +
//! max pool + ReLU (fused), incep2, fc, argmax.
//!
//! Each Inception module runs its three 1x1 convs that read the module's
//! input (b1, b5_1, b3_1) as one wider conv, then the pool branch, then
//! the 5x5 branch, then the 3x3 pair; each branch's last conv writes its
//! channel slice of the concat directly (no copy).
//!
//! Buffer plan (offsets in [`plan`], checked by [`PLAN`]`.verify()` at
//! compile time). The concat of incep1 (12x12x88 = 12,672 bytes) is the
//! largest tensor; the module's input and its branch temporaries sit after
//! it, and each kernel's im2col scratch goes where nothing live is. Peak:
//! during incep1.b5_2, the concat + the two reducer outputs + the scratch
//! of the 5x5 conv = [`INCEPTION_ARENA_BYTES`].

use super::{buffers, end, quantize_input, step, Arena, Buffer, Plan, Prediction, Probe, Step};
use crate::arch::{inception as inc, inception_a as ia, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::kernels::dsp::Step as ScratchStep;
use crate::kernels::tiled::scratch_steps;
use crate::kernels::{
    avgpool3x3_s8, conv2d_fast, conv2d_pool_fast, conv2d_x3_fast, linear_s8, ActRange,
    ChannelOffset, Tensor,
};
use crate::model::{InceptionAModel, InceptionModel};

/// A conv's im2col scratch: `STEPS` is `scratch_steps(CI, K)`.
type Scratch<const STEPS: usize> = [ScratchStep; STEPS];

/// The buffers of the InceptionNet plan.
pub mod plan {
    use super::*;

    const P1S: usize = inc::P1;
    const P2S: usize = inc::P2;

    buffers! {
        /// The quantised image.
        X0: Tensor<IMAGE_SIDE, IMAGE_SIDE, 1> = 0;
        /// conv1's scratch.
        S_C1: Scratch<{ scratch_steps(1, inc::K1) }> = end::<X0>();
        /// incep1's concat.
        Q1: Tensor<P1S, P1S, { ia::OUT }> = 0;
        /// After conv1 + max pool + ReLU: incep1's input.
        P1: Tensor<P1S, P1S, { inc::C1 }> = end::<Q1>();
        /// incep1.b5_1's output.
        T1_B5: Tensor<P1S, P1S, { ia::B5_REDUCE }> = end::<P1>();
        /// incep1.b3_1's output.
        T1_B3A: Tensor<P1S, P1S, { ia::B3_REDUCE }> = end::<T1_B5>();
        /// incep1's 3x3 average pool (after the 1x1s).
        T1_AP: Tensor<P1S, P1S, { inc::C1 }> = end::<T1_B3A>();
        /// incep1.b3_2's output (where P1 and T1_B5 were).
        T1_B3B: Tensor<P1S, P1S, { ia::B3 }> = P1::OFFSET;
        /// Scratch of incep1's 1x1 convs (where T1_AP goes next).
        S1_1X1: Scratch<{ scratch_steps(inc::C1, 1) }> = T1_AP::OFFSET;
        /// Scratch of incep1.bp.
        S1_BP: Scratch<{ scratch_steps(inc::C1, 1) }> = end::<T1_AP>();
        /// Scratch of incep1.b5_2 and b3_2 (after T1_B3A; T1_AP is dead).
        S1_B5: Scratch<{ scratch_steps(ia::B5_REDUCE, 5) }> = T1_AP::OFFSET;
        /// Scratch of incep1.b3_2.
        S1_B3B: Scratch<{ scratch_steps(ia::B3_REDUCE, 3) }> = T1_AP::OFFSET;
        /// Scratch of incep1.b3_3 (after T1_B3B; T1_B3A is dead).
        S1_B3C: Scratch<{ scratch_steps(ia::B3, 3) }> = end::<T1_B3B>();
        /// After conv2 + max pool + ReLU: incep2's input.
        P2: Tensor<P2S, P2S, { inc::C2 }> = end::<Q1>();
        /// conv2's scratch (one kernel row at a time).
        S_C2: Scratch<{ scratch_steps(ia::OUT, inc::K2) }> = end::<P2>();
        /// incep2's concat (where Q1 was).
        Q2: Tensor<P2S, P2S, { ia::OUT }> = 0;
        /// incep2.b5_1's output.
        T2_B5: Tensor<P2S, P2S, { ia::B5_REDUCE }> = end::<Q2>();
        /// incep2.b3_1's output.
        T2_B3A: Tensor<P2S, P2S, { ia::B3_REDUCE }> = end::<T2_B5>();
        /// incep2's 3x3 average pool.
        T2_AP: Tensor<P2S, P2S, { inc::C2 }> = end::<T2_B3A>();
        /// incep2.b3_2's output.
        T2_B3B: Tensor<P2S, P2S, { ia::B3 }> = end::<T2_AP>();
        /// Scratch of every incep2 conv (the largest: b5_2's).
        S2: Scratch<{ scratch_steps(ia::B5_REDUCE, 5) }> = end::<T2_B3B>();
    }
}

use plan::*;

/// The steps of one InceptionA module, in the order [`forward`] runs them.
/// Buffers: input, concat, b5_1 out, b3_1 out, avg pool out, b3_2 out, and
/// the scratch of the 1x1s, bp, b5_2, b3_2, b3_3.
macro_rules! module_steps {
    ($p:literal, $in:ty, $q:ty, $b5:ty, $b3a:ty, $ap:ty, $b3b:ty, [$s1:ty, $sp:ty, $s5:ty, $s3b:ty, $s3c:ty]) => {
        [
            step(
                concat!($p, ".b1+b5_1+b3_1"),
                &[concat!($p, ".b1"), concat!($p, ".b5_1"), concat!($p, ".b3_1")],
                &[<$in>::REGION], &[<$q>::REGION, <$b5>::REGION, <$b3a>::REGION, <$s1>::REGION]),
            step(concat!($p, ".avgpool"), &[], &[<$in>::REGION], &[<$ap>::REGION]),
            step(concat!($p, ".bp"), &[concat!($p, ".bp")], &[<$ap>::REGION], &[<$q>::REGION, <$sp>::REGION]),
            step(concat!($p, ".b5_2"), &[concat!($p, ".b5_2")], &[<$b5>::REGION], &[<$q>::REGION, <$s5>::REGION]),
            step(concat!($p, ".b3_2"), &[concat!($p, ".b3_2")], &[<$b3a>::REGION], &[<$b3b>::REGION, <$s3b>::REGION]),
            step(concat!($p, ".b3_3"), &[concat!($p, ".b3_3")], &[<$b3b>::REGION], &[<$q>::REGION, <$s3c>::REGION]),
        ]
    };
}

const MODULE_STEPS: usize = 6;
const INCEP1_STEPS: [Step; MODULE_STEPS] =
    module_steps!("incep1", P1, Q1, T1_B5, T1_B3A, T1_AP, T1_B3B, [S1_1X1, S1_BP, S1_B5, S1_B3B, S1_B3C]);
const INCEP2_STEPS: [Step; MODULE_STEPS] =
    module_steps!("incep2", P2, Q2, T2_B5, T2_B3A, T2_AP, T2_B3B, [S2, S2, S2, S2, S2]);

/// The steps of one inference, in order, with the buffers they use.
pub const PLAN: Plan = Plan {
    steps: &[
        step("input", &[], &[], &[X0::REGION]),
        step("conv1+pool1", &["conv1"], &[X0::REGION], &[P1::REGION, S_C1::REGION]),
        INCEP1_STEPS[0],
        INCEP1_STEPS[1],
        INCEP1_STEPS[2],
        INCEP1_STEPS[3],
        INCEP1_STEPS[4],
        INCEP1_STEPS[5],
        step("conv2+pool2", &["conv2"], &[Q1::REGION], &[P2::REGION, S_C2::REGION]),
        INCEP2_STEPS[0],
        INCEP2_STEPS[1],
        INCEP2_STEPS[2],
        INCEP2_STEPS[3],
        INCEP2_STEPS[4],
        INCEP2_STEPS[5],
        step("fc", &["fc"], &[Q2::REGION], &[]),
    ],
};

/// Peak activation + scratch RAM of one InceptionNet inference: the arena
/// size.
pub const INCEPTION_ARENA_BYTES: usize = PLAN.arena_bytes();

const _: () = assert!(
    PLAN.verify().is_ok(),
    "InceptionNet buffer plan clobbers a live buffer"
);
// Issue 6's bound: activations and scratch of one inference in 24 KB.
const _: () = assert!(
    INCEPTION_ARENA_BYTES <= 24 * 1024,
    "InceptionNet arena over 24 KB"
);

/// The names of a module's steps, in execution order (from the plan).
const fn names(steps: &[Step; MODULE_STEPS]) -> [&'static str; MODULE_STEPS] {
    let mut out = [""; MODULE_STEPS];
    let mut i = 0;
    while i < MODULE_STEPS {
        out[i] = steps[i].name;
        i += 1;
    }
    out
}

/// Channel offsets of the branches in the concat: b1, b5, b3, bp.
const B5_AT: usize = ia::B1;
const B3_AT: usize = ia::B1 + ia::B5;
const BP_AT: usize = ia::B1 + ia::B5 + ia::B3;

/// One InceptionA module: input `I`, concat `Q`, temporaries `B5` (b5_1),
/// `B3A` (b3_1), `AP` (avg pool), `B3B` (b3_2), and the scratch buffers.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn inception_a<
    const CIN: usize,
    const S: usize,
    const N: usize,
    I,
    Q,
    B5,
    B3A,
    AP,
    B3B,
    S1,
    SP,
    S5,
    S3B,
    S3C,
>(
    m: &InceptionAModel<'_, CIN>,
    arena: &mut Arena<N>,
    names: &[&'static str; MODULE_STEPS],
    probe: &mut impl Probe,
) where
    I: Buffer<T = Tensor<S, S, CIN>>,
    Q: Buffer<T = Tensor<S, S, { ia::OUT }>>,
    B5: Buffer<T = Tensor<S, S, { ia::B5_REDUCE }>>,
    B3A: Buffer<T = Tensor<S, S, { ia::B3_REDUCE }>>,
    AP: Buffer<T = Tensor<S, S, CIN>>,
    B3B: Buffer<T = Tensor<S, S, { ia::B3 }>>,
    S1: Buffer,
    SP: Buffer,
    S5: Buffer,
    S3B: Buffer,
    S3C: Buffer,
    S1::T: AsMut<[ScratchStep]>,
    SP::T: AsMut<[ScratchStep]>,
    S5::T: AsMut<[ScratchStep]>,
    S3B::T: AsMut<[ScratchStep]>,
    S3C::T: AsMut<[ScratchStep]>,
{
    let (x, q, b5, b3a, s) = arena.parts::<(I, Q, B5, B3A, S1)>();
    conv2d_x3_fast(
        (&m.b1.kernel(), &m.b5_1.kernel(), &m.b3_1.kernel()),
        x,
        (q, b5, b3a),
        (ChannelOffset::<0>, ChannelOffset::<0>, ChannelOffset::<0>),
        s.as_mut(),
    );
    probe.layer(names[0]);
    let (x, a) = arena.pair::<I, AP>();
    // The pool keeps its input's scale and zero point.
    avgpool3x3_s8(m.b1.input_zero_point, x, a);
    probe.layer(names[1]);
    let (a, q, s) = arena.parts::<(AP, Q, SP)>();
    conv2d_fast(&m.bp.kernel(), a, q, ChannelOffset::<BP_AT>, s.as_mut());
    probe.layer(names[2]);
    let (t, q, s) = arena.parts::<(B5, Q, S5)>();
    conv2d_fast(&m.b5_2.kernel(), t, q, ChannelOffset::<B5_AT>, s.as_mut());
    probe.layer(names[3]);
    let (t, u, s) = arena.parts::<(B3A, B3B, S3B)>();
    conv2d_fast(&m.b3_2.kernel(), t, u, ChannelOffset::<0>, s.as_mut());
    probe.layer(names[4]);
    let (u, q, s) = arena.parts::<(B3B, Q, S3C)>();
    conv2d_fast(&m.b3_3.kernel(), u, q, ChannelOffset::<B3_AT>, s.as_mut());
    probe.layer(names[5]);
}

/// One InceptionNet inference on 784 raw pixels (row-major, 0 = black):
/// the ten int8 logits. All activations live in `arena` (at least
/// [`INCEPTION_ARENA_BYTES`], checked at compile time); `probe` is called
/// after every step of [`PLAN`].
pub fn forward<const N: usize>(
    m: &InceptionModel<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> [i8; CLASSES] {
    const {
        assert!(
            N >= INCEPTION_ARENA_BYTES,
            "arena too small for InceptionNet"
        )
    };
    quantize_input(m.input.lut, pixels, arena.get::<X0>());
    probe.layer("input");
    // Max pool, then ReLU: one clamp at the zero point (they commute).
    let (x, p, s) = arena.parts::<(X0, P1, S_C1)>();
    let relu = ActRange::relu(m.conv1.output.zero_point);
    conv2d_pool_fast::<IMAGE_SIDE, IMAGE_SIDE, 1, { inc::K1 }, 0, { inc::C1 }, { inc::S1 }, { inc::S1 }, { inc::P1 }, { inc::P1 }>(
        &m.conv1.kernel(),
        relu,
        x,
        p,
        s,
    );
    probe.layer("conv1+pool1");
    const N1: [&str; MODULE_STEPS] = names(&INCEP1_STEPS);
    inception_a::<{ inc::C1 }, { inc::P1 }, N, P1, Q1, T1_B5, T1_B3A, T1_AP, T1_B3B, S1_1X1, S1_BP, S1_B5, S1_B3B, S1_B3C>(
        &m.incep1, arena, &N1, probe,
    );
    let (q, p, s) = arena.parts::<(Q1, P2, S_C2)>();
    let relu = ActRange::relu(m.conv2.output.zero_point);
    conv2d_pool_fast::<{ inc::P1 }, { inc::P1 }, { ia::OUT }, { inc::K2 }, 0, { inc::C2 }, { inc::S2 }, { inc::S2 }, { inc::P2 }, { inc::P2 }>(
        &m.conv2.kernel(),
        relu,
        q,
        p,
        s,
    );
    probe.layer("conv2+pool2");
    const N2: [&str; MODULE_STEPS] = names(&INCEP2_STEPS);
    inception_a::<{ inc::C2 }, { inc::P2 }, N, P2, Q2, T2_B5, T2_B3A, T2_AP, T2_B3B, S2, S2, S2, S2, S2>(
        &m.incep2, arena, &N2, probe,
    );
    let mut logits = [0i8; CLASSES];
    linear_s8(&m.fc.kernel(), arena.get::<Q2>(), &mut logits);
    probe.layer("fc");
    logits
}

/// [`forward`] and argmax.
pub fn classify<const N: usize>(
    m: &InceptionModel<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> Prediction {
    Prediction::from_logits(forward(m, pixels, arena, probe))
}
