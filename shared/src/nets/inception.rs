//! InceptionNet, int8: conv1, max pool + ReLU, incep1, conv2, max pool +
//! ReLU, incep2, fc, argmax.
//!
//! Buffer plan (offsets in [`plan`], checked by [`PLAN`]`.verify()` at
//! compile time). The concat of incep1 (12x12x88 = 12,672 bytes) is the
//! largest tensor; everything else is placed around it by liveness:
//!
//! - the image and conv1's output sit inside the future concat region;
//! - incep1 runs its 3x3 branch first, so the branch's first reducer output
//!   can also sit in the concat region (no concat channel is written yet),
//!   and its second conv's output, then the other branches' temporaries,
//!   share one scratch region after the module's input;
//! - each branch's last conv writes its channel slice of the concat
//!   directly (no copy);
//! - conv2 writes where incep1's input was; incep2 and fc fit at the start.
//!
//! Peak: concat + module input + the largest branch temporary =
//! 12,672 + 1,440 + 3,456 = [`INCEPTION_ARENA_BYTES`] = 17,568 bytes.

use super::{buffers, end, quantize_input, Arena, Buffer, Plan, Prediction, Probe, Step};
use crate::arch::{inception as inc, inception_a as ia, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::kernels::{
    avgpool3x3_s8, conv2d_s8, linear_s8, maxpool2d_s8, ActRange, ChannelOffset, Tensor,
};
use crate::model::{InceptionAModel, InceptionModel};

/// The buffers of the InceptionNet plan.
pub mod plan {
    use super::*;

    /// Start of the scratch region for incep1's branch temporaries: after
    /// the concat and the module's input.
    const SCRATCH1: usize = end::<P1>();

    buffers! {
        /// The quantised image.
        X0: Tensor<IMAGE_SIDE, IMAGE_SIDE, 1> = 0;
        /// conv1's output.
        C1: Tensor<{ inc::S1 }, { inc::S1 }, { inc::C1 }> = end::<X0>();
        /// incep1's concat.
        Q1: Tensor<{ inc::P1 }, { inc::P1 }, { ia::OUT }> = 0;
        /// After max pool + ReLU: incep1's input.
        P1: Tensor<{ inc::P1 }, { inc::P1 }, { inc::C1 }> = end::<Q1>();
        /// incep1.b3_1's output (inside Q1: written before any concat channel).
        T1_B3A: Tensor<{ inc::P1 }, { inc::P1 }, { ia::B3_REDUCE }> = 0;
        /// incep1.b3_2's output.
        T1_B3B: Tensor<{ inc::P1 }, { inc::P1 }, { ia::B3 }> = SCRATCH1;
        /// incep1.b5_1's output.
        T1_B5: Tensor<{ inc::P1 }, { inc::P1 }, { ia::B5_REDUCE }> = SCRATCH1;
        /// incep1's 3x3 average pool.
        T1_AP: Tensor<{ inc::P1 }, { inc::P1 }, { inc::C1 }> = SCRATCH1;
        /// conv2's output (where P1 was).
        C2: Tensor<{ inc::S2 }, { inc::S2 }, { inc::C2 }> = end::<Q1>();
        /// After max pool + ReLU: incep2's input.
        P2: Tensor<{ inc::P2 }, { inc::P2 }, { inc::C2 }> = 0;
        /// incep2's concat.
        Q2: Tensor<{ inc::P2 }, { inc::P2 }, { ia::OUT }> = end::<P2>();
        /// incep2.b3_1's output.
        T2_B3A: Tensor<{ inc::P2 }, { inc::P2 }, { ia::B3_REDUCE }> = end::<Q2>();
        /// incep2.b3_2's output.
        T2_B3B: Tensor<{ inc::P2 }, { inc::P2 }, { ia::B3 }> = end::<T2_B3A>();
        /// incep2.b5_1's output.
        T2_B5: Tensor<{ inc::P2 }, { inc::P2 }, { ia::B5_REDUCE }> = end::<Q2>();
        /// incep2's 3x3 average pool.
        T2_AP: Tensor<{ inc::P2 }, { inc::P2 }, { inc::C2 }> = end::<Q2>();
    }
}

use plan::*;

/// The steps of one InceptionA module, in the order [`forward`] runs them.
macro_rules! module_steps {
    ($p:literal, $in:ty, $q:ty, $b3a:ty, $b3b:ty, $b5:ty, $ap:ty) => {
        [
            Step {
                name: concat!($p, ".b3_1"),
                reads: &[<$in>::REGION],
                writes: Some(<$b3a>::REGION),
            },
            Step {
                name: concat!($p, ".b3_2"),
                reads: &[<$b3a>::REGION],
                writes: Some(<$b3b>::REGION),
            },
            Step {
                name: concat!($p, ".b3_3"),
                reads: &[<$b3b>::REGION],
                writes: Some(<$q>::REGION),
            },
            Step {
                name: concat!($p, ".b5_1"),
                reads: &[<$in>::REGION],
                writes: Some(<$b5>::REGION),
            },
            Step {
                name: concat!($p, ".b5_2"),
                reads: &[<$b5>::REGION],
                writes: Some(<$q>::REGION),
            },
            Step {
                name: concat!($p, ".b1"),
                reads: &[<$in>::REGION],
                writes: Some(<$q>::REGION),
            },
            Step {
                name: concat!($p, ".avgpool"),
                reads: &[<$in>::REGION],
                writes: Some(<$ap>::REGION),
            },
            Step {
                name: concat!($p, ".bp"),
                reads: &[<$ap>::REGION],
                writes: Some(<$q>::REGION),
            },
        ]
    };
}

const INCEP1_STEPS: [Step; 8] = module_steps!("incep1", P1, Q1, T1_B3A, T1_B3B, T1_B5, T1_AP);
const INCEP2_STEPS: [Step; 8] = module_steps!("incep2", P2, Q2, T2_B3A, T2_B3B, T2_B5, T2_AP);

const fn step(name: &'static str, reads: &'static [super::Region], writes: super::Region) -> Step {
    Step {
        name,
        reads,
        writes: Some(writes),
    }
}

/// The steps of one inference, in order, with the buffers they use.
pub const PLAN: Plan = Plan {
    steps: &[
        step("input", &[], X0::REGION),
        step("conv1", &[X0::REGION], C1::REGION),
        step("pool1", &[C1::REGION], P1::REGION),
        INCEP1_STEPS[0],
        INCEP1_STEPS[1],
        INCEP1_STEPS[2],
        INCEP1_STEPS[3],
        INCEP1_STEPS[4],
        INCEP1_STEPS[5],
        INCEP1_STEPS[6],
        INCEP1_STEPS[7],
        step("conv2", &[Q1::REGION], C2::REGION),
        step("pool2", &[C2::REGION], P2::REGION),
        INCEP2_STEPS[0],
        INCEP2_STEPS[1],
        INCEP2_STEPS[2],
        INCEP2_STEPS[3],
        INCEP2_STEPS[4],
        INCEP2_STEPS[5],
        INCEP2_STEPS[6],
        INCEP2_STEPS[7],
        Step {
            name: "fc",
            reads: &[Q2::REGION],
            writes: None,
        },
    ],
};

/// Peak activation RAM of one InceptionNet inference: the arena size.
pub const INCEPTION_ARENA_BYTES: usize = PLAN.arena_bytes();

const _: () = assert!(
    PLAN.verify().is_ok(),
    "InceptionNet buffer plan clobbers a live buffer"
);
// Issue 4's aim (and issue 6's bound, scratch included) for one inference.
const _: () = assert!(
    INCEPTION_ARENA_BYTES <= 24 * 1024,
    "InceptionNet arena over 24 KB"
);

/// The names of a module's steps, in execution order (from the plan).
const fn names(steps: &[Step; 8]) -> [&'static str; 8] {
    let mut out = [""; 8];
    let mut i = 0;
    while i < 8 {
        out[i] = steps[i].name;
        i += 1;
    }
    out
}

/// One InceptionA module: input in `I`, concat written to `Q`, branch
/// temporaries in `B3A`, `B3B`, `B5`, `AP`.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn inception_a<const CIN: usize, const S: usize, const N: usize, I, Q, B3A, B3B, B5, AP>(
    m: &InceptionAModel<'_, CIN>,
    arena: &mut Arena<N>,
    names: &[&'static str; 8],
    probe: &mut impl Probe,
) where
    I: Buffer<T = Tensor<S, S, CIN>>,
    Q: Buffer<T = Tensor<S, S, { ia::OUT }>>,
    B3A: Buffer<T = Tensor<S, S, { ia::B3_REDUCE }>>,
    B3B: Buffer<T = Tensor<S, S, { ia::B3 }>>,
    B5: Buffer<T = Tensor<S, S, { ia::B5_REDUCE }>>,
    AP: Buffer<T = Tensor<S, S, CIN>>,
{
    // Channel offsets of the branches in the concat: b1, b5, b3, bp.
    const B5_AT: usize = ia::B1;
    const B3_AT: usize = ia::B1 + ia::B5;
    const BP_AT: usize = ia::B1 + ia::B5 + ia::B3;
    let (x, t) = arena.pair::<I, B3A>();
    conv2d_s8(&m.b3_1.kernel(), x, t, ChannelOffset::<0>);
    probe.layer(names[0]);
    let (t, u) = arena.pair::<B3A, B3B>();
    conv2d_s8(&m.b3_2.kernel(), t, u, ChannelOffset::<0>);
    probe.layer(names[1]);
    let (u, q) = arena.pair::<B3B, Q>();
    conv2d_s8(&m.b3_3.kernel(), u, q, ChannelOffset::<B3_AT>);
    probe.layer(names[2]);
    let (x, t) = arena.pair::<I, B5>();
    conv2d_s8(&m.b5_1.kernel(), x, t, ChannelOffset::<0>);
    probe.layer(names[3]);
    let (t, q) = arena.pair::<B5, Q>();
    conv2d_s8(&m.b5_2.kernel(), t, q, ChannelOffset::<B5_AT>);
    probe.layer(names[4]);
    let (x, q) = arena.pair::<I, Q>();
    conv2d_s8(&m.b1.kernel(), x, q, ChannelOffset::<0>);
    probe.layer(names[5]);
    let (x, a) = arena.pair::<I, AP>();
    // The pool keeps its input's scale and zero point.
    avgpool3x3_s8(m.b1.input_zero_point, x, a);
    probe.layer(names[6]);
    let (a, q) = arena.pair::<AP, Q>();
    conv2d_s8(&m.bp.kernel(), a, q, ChannelOffset::<BP_AT>);
    probe.layer(names[7]);
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
    let (x, y) = arena.pair::<X0, C1>();
    conv2d_s8(&m.conv1.kernel(), x, y, ChannelOffset::<0>);
    probe.layer("conv1");
    let (y, p) = arena.pair::<C1, P1>();
    // Max pool, then ReLU: one clamp at the zero point (they commute).
    maxpool2d_s8(ActRange::relu(m.conv1.output.zero_point), y, p);
    probe.layer("pool1");
    const N1: [&str; 8] = names(&INCEP1_STEPS);
    inception_a::<{ inc::C1 }, { inc::P1 }, N, P1, Q1, T1_B3A, T1_B3B, T1_B5, T1_AP>(
        &m.incep1, arena, &N1, probe,
    );
    let (q, y) = arena.pair::<Q1, C2>();
    conv2d_s8(&m.conv2.kernel(), q, y, ChannelOffset::<0>);
    probe.layer("conv2");
    let (y, p) = arena.pair::<C2, P2>();
    maxpool2d_s8(ActRange::relu(m.conv2.output.zero_point), y, p);
    probe.layer("pool2");
    const N2: [&str; 8] = names(&INCEP2_STEPS);
    inception_a::<{ inc::C2 }, { inc::P2 }, N, P2, Q2, T2_B3A, T2_B3B, T2_B5, T2_AP>(
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
