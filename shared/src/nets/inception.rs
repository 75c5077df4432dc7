//! InceptionNet, int8: conv1 + max pool + ReLU (fused), incep1, conv2 +
//! max pool + ReLU (fused), incep2, fc, argmax.
//!
//! Each Inception module runs its three 1x1 convs that read the module's
//! input (b1, b5_1, b3_1) as one wider conv, then the pool branch, then
//! the 5x5 branch, then the 3x3 pair; each branch's last conv writes its
//! channel slice of the concat directly (no copy).
//!
//! Buffer plan (offsets in [`plan`], checked by [`PLAN`]`.verify()` and
//! against the graph by [`PLAN`]`.check()` at compile time). The concat of
//! incep1 (12x12x88 = 12,672 bytes) is the largest tensor; the module's
//! input and its branch temporaries sit after it, and each kernel's im2col
//! scratch goes where nothing live is. Peak: during incep1.b5_2, the concat
//! + the two reducer outputs + the scratch of the 5x5 conv.

use super::{buffers, end, quantize_input, step, Arena, Buffer, Plan, Probe, Progress, Step};
use crate::arch::{inception as inc, inception_a as ia, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::Error;
use crate::graph::{NetId, INCEPTION as G};
use crate::kernels::dsp::Quad;
use crate::kernels::tiled::scratch_quads;
use crate::kernels::{
    avgpool3x3_s8, conv2d_pool_s8, conv2d_s8, conv2d_x3_s8, linear_s8, ActRange, ChannelOffset,
    Tensor,
};
use crate::model::{ConvLayer, Decode, InputQuant, Layers, LinearLayer};

/// One InceptionA module on `CIN` input channels (fields in file order).
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see the graph
pub struct InceptionAModel<'a, const CIN: usize> {
    pub b1: ConvLayer<'a, CIN, { ia::B1 }, 1, 0>,
    pub b5_1: ConvLayer<'a, CIN, { ia::B5_REDUCE }, 1, 0>,
    pub b5_2: ConvLayer<'a, { ia::B5_REDUCE }, { ia::B5 }, 5, 2>,
    pub b3_1: ConvLayer<'a, CIN, { ia::B3_REDUCE }, 1, 0>,
    pub b3_2: ConvLayer<'a, { ia::B3_REDUCE }, { ia::B3 }, 3, 1>,
    pub b3_3: ConvLayer<'a, { ia::B3 }, { ia::B3 }, 3, 1>,
    pub bp: ConvLayer<'a, CIN, { ia::BP }, 1, 0>,
}

impl<'a, const CIN: usize> InceptionAModel<'a, CIN> {
    fn read(r: &mut Layers<'a>) -> Result<Self, Error> {
        Ok(InceptionAModel {
            b1: r.layer()?,
            b5_1: r.layer()?,
            b5_2: r.layer()?,
            b3_1: r.layer()?,
            b3_2: r.layer()?,
            b3_3: r.layer()?,
            bp: r.layer()?,
        })
    }
}

/// A decoded InceptionNet (fields in file order).
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see the graph
pub struct InceptionModel<'a> {
    pub input: InputQuant<'a>,
    pub conv1: ConvLayer<'a, 1, { inc::C1 }, { inc::K1 }, 0>,
    pub incep1: InceptionAModel<'a, { inc::C1 }>,
    pub conv2: ConvLayer<'a, { inc::INCEP_OUT }, { inc::C2 }, { inc::K2 }, 0>,
    pub incep2: InceptionAModel<'a, { inc::C2 }>,
    pub fc: LinearLayer<'a, { inc::P2 }, { inc::P2 }, { inc::INCEP_OUT }, CLASSES>,
}

impl<'a> Decode<'a> for InceptionModel<'a> {
    const NET: NetId = NetId::Inception;

    #[inline(never)]
    fn read(r: &mut Layers<'a>) -> Result<Self, Error> {
        Ok(InceptionModel {
            input: r.input(),
            conv1: r.layer()?,
            incep1: InceptionAModel::read(r)?,
            conv2: r.layer()?,
            incep2: InceptionAModel::read(r)?,
            fc: r.layer()?,
        })
    }
}

/// A conv's im2col scratch: `QUADS` is `scratch_quads(CI, K)`.
type Scratch<const QUADS: usize> = [Quad; QUADS];

/// The buffers of the InceptionNet plan.
pub mod plan {
    use super::*;

    const P1S: usize = inc::P1;
    const P2S: usize = inc::P2;

    buffers! {
        /// The quantised image.
        X0: Tensor<IMAGE_SIDE, IMAGE_SIDE, 1> = 0;
        /// conv1's scratch.
        S_C1: Scratch<{ scratch_quads(1, inc::K1) }> = end::<X0>();
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
        S1_1X1: Scratch<{ scratch_quads(inc::C1, 1) }> = T1_AP::OFFSET;
        /// Scratch of incep1.bp.
        S1_BP: Scratch<{ scratch_quads(inc::C1, 1) }> = end::<T1_AP>();
        /// Scratch of incep1.b5_2 and b3_2 (after T1_B3A; T1_AP is dead).
        S1_B5: Scratch<{ scratch_quads(ia::B5_REDUCE, 5) }> = T1_AP::OFFSET;
        /// Scratch of incep1.b3_2.
        S1_B3B: Scratch<{ scratch_quads(ia::B3_REDUCE, 3) }> = T1_AP::OFFSET;
        /// Scratch of incep1.b3_3 (after T1_B3B; T1_B3A is dead).
        S1_B3C: Scratch<{ scratch_quads(ia::B3, 3) }> = end::<T1_B3B>();
        /// After conv2 + max pool + ReLU: incep2's input.
        P2: Tensor<P2S, P2S, { inc::C2 }> = end::<Q1>();
        /// conv2's scratch (one kernel row at a time).
        S_C2: Scratch<{ scratch_quads(ia::OUT, inc::K2) }> = end::<P2>();
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
        S2: Scratch<{ scratch_quads(ia::B5_REDUCE, 5) }> = end::<T2_B3B>();
    }
}

use plan::*;

/// The buffers of one InceptionA module's six steps (graph steps `first`
/// to `first + 5`): input, concat, b5_1 out, b3_1 out, avg pool out, b3_2
/// out, and the scratch of the 1x1s, bp, b5_2, b3_2, b3_3.
macro_rules! module_steps {
    ($first:expr, $in:ty, $q:ty, $b5:ty, $b3a:ty, $ap:ty, $b3b:ty, [$s1:ty, $sp:ty, $s5:ty, $s3b:ty, $s3c:ty]) => {
        [
            step(
                G,
                $first,
                &[<$in>::REGION],
                &[<$q>::REGION, <$b5>::REGION, <$b3a>::REGION, <$s1>::REGION],
            ),
            step(G, $first + 1, &[<$in>::REGION], &[<$ap>::REGION]),
            step(
                G,
                $first + 2,
                &[<$ap>::REGION],
                &[<$q>::REGION, <$sp>::REGION],
            ),
            step(
                G,
                $first + 3,
                &[<$b5>::REGION],
                &[<$q>::REGION, <$s5>::REGION],
            ),
            step(
                G,
                $first + 4,
                &[<$b3a>::REGION],
                &[<$b3b>::REGION, <$s3b>::REGION],
            ),
            step(
                G,
                $first + 5,
                &[<$b3b>::REGION],
                &[<$q>::REGION, <$s3c>::REGION],
            ),
        ]
    };
}

const INCEP1_STEPS: [Step; 6] = module_steps!(
    2,
    P1,
    Q1,
    T1_B5,
    T1_B3A,
    T1_AP,
    T1_B3B,
    [S1_1X1, S1_BP, S1_B5, S1_B3B, S1_B3C]
);
const INCEP2_STEPS: [Step; 6] = module_steps!(
    9,
    P2,
    Q2,
    T2_B5,
    T2_B3A,
    T2_AP,
    T2_B3B,
    [S2, S2, S2, S2, S2]
);

/// The steps of one inference, in order, with the buffers they use.
pub const PLAN: Plan = Plan {
    net: NetId::Inception,
    steps: &[
        step(G, 0, &[], &[X0::REGION]),
        step(G, 1, &[X0::REGION], &[P1::REGION, S_C1::REGION]),
        INCEP1_STEPS[0],
        INCEP1_STEPS[1],
        INCEP1_STEPS[2],
        INCEP1_STEPS[3],
        INCEP1_STEPS[4],
        INCEP1_STEPS[5],
        step(G, 8, &[Q1::REGION], &[P2::REGION, S_C2::REGION]),
        INCEP2_STEPS[0],
        INCEP2_STEPS[1],
        INCEP2_STEPS[2],
        INCEP2_STEPS[3],
        INCEP2_STEPS[4],
        INCEP2_STEPS[5],
        step(G, 15, &[Q2::REGION], &[]),
    ],
};

const _: () = assert!(
    PLAN.check(G).is_ok(),
    "InceptionNet's plan is not its graph's"
);
const _: () = assert!(
    PLAN.verify().is_ok(),
    "InceptionNet buffer plan clobbers a live buffer"
);
// The arena budget: activations and scratch of one inference in 24 KB.
const _: () = assert!(
    PLAN.arena_bytes() <= 24 * 1024,
    "InceptionNet arena over 24 KB"
);

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
    progress: &mut Progress<'_, impl Probe>,
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
    S1::T: AsMut<[Quad]>,
    SP::T: AsMut<[Quad]>,
    S5::T: AsMut<[Quad]>,
    S3B::T: AsMut<[Quad]>,
    S3C::T: AsMut<[Quad]>,
{
    let (x, q, b5, b3a, s) = arena.parts::<(I, Q, B5, B3A, S1)>();
    conv2d_x3_s8(
        (&m.b1.kernel(), &m.b5_1.kernel(), &m.b3_1.kernel()),
        x,
        (q, b5, b3a),
        (ChannelOffset::<0>, ChannelOffset::<0>, ChannelOffset::<0>),
        s.as_mut(),
    );
    progress.done();
    let (x, a) = arena.pair::<I, AP>();
    // The pool keeps its input's scale and zero point.
    avgpool3x3_s8(m.b1.input_zero_point, x, a);
    progress.done();
    let (a, q, s) = arena.parts::<(AP, Q, SP)>();
    conv2d_s8(&m.bp.kernel(), a, q, ChannelOffset::<BP_AT>, s.as_mut());
    progress.done();
    let (t, q, s) = arena.parts::<(B5, Q, S5)>();
    conv2d_s8(&m.b5_2.kernel(), t, q, ChannelOffset::<B5_AT>, s.as_mut());
    progress.done();
    let (t, u, s) = arena.parts::<(B3A, B3B, S3B)>();
    conv2d_s8(&m.b3_2.kernel(), t, u, ChannelOffset::<0>, s.as_mut());
    progress.done();
    let (u, q, s) = arena.parts::<(B3B, Q, S3C)>();
    conv2d_s8(&m.b3_3.kernel(), u, q, ChannelOffset::<B3_AT>, s.as_mut());
    progress.done();
}

/// One InceptionNet inference on 784 raw pixels (row-major, 0 = black):
/// the ten int8 logits. All activations live in `arena` (at least
/// [`PLAN`]'s arena, checked at compile time); `probe` is called after
/// every step of [`PLAN`].
pub fn forward<const N: usize>(
    m: &InceptionModel<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> [i8; CLASSES] {
    const { assert!(N >= PLAN.arena_bytes(), "arena too small for InceptionNet") };
    let mut progress = Progress::new(&PLAN, probe);
    quantize_input(m.input.lut, pixels, arena.get::<X0>());
    progress.done();
    // Max pool, then ReLU: one clamp at the zero point (they commute).
    let (x, p, s) = arena.parts::<(X0, P1, S_C1)>();
    let relu = ActRange::relu(m.conv1.output.zero_point);
    conv2d_pool_s8::<
        IMAGE_SIDE,
        IMAGE_SIDE,
        1,
        { inc::C1 },
        { inc::K1 },
        0,
        { inc::S1 },
        { inc::S1 },
        { inc::P1 },
        { inc::P1 },
    >(&m.conv1.kernel(), relu, x, p, s);
    progress.done();
    inception_a::<
        { inc::C1 },
        { inc::P1 },
        N,
        P1,
        Q1,
        T1_B5,
        T1_B3A,
        T1_AP,
        T1_B3B,
        S1_1X1,
        S1_BP,
        S1_B5,
        S1_B3B,
        S1_B3C,
    >(&m.incep1, arena, &mut progress);
    let (q, p, s) = arena.parts::<(Q1, P2, S_C2)>();
    let relu = ActRange::relu(m.conv2.output.zero_point);
    conv2d_pool_s8::<
        { inc::P1 },
        { inc::P1 },
        { ia::OUT },
        { inc::C2 },
        { inc::K2 },
        0,
        { inc::S2 },
        { inc::S2 },
        { inc::P2 },
        { inc::P2 },
    >(&m.conv2.kernel(), relu, q, p, s);
    progress.done();
    inception_a::<
        { inc::C2 },
        { inc::P2 },
        N,
        P2,
        Q2,
        T2_B5,
        T2_B3A,
        T2_AP,
        T2_B3B,
        S2,
        S2,
        S2,
        S2,
        S2,
    >(&m.incep2, arena, &mut progress);
    let mut logits = [0i8; CLASSES];
    linear_s8(&m.fc.kernel(), arena.get::<Q2>(), &mut logits);
    progress.done();
    logits
}
