//! The seed's ResNet, int8: two identity blocks (conv1 + ReLU, conv2, the
//! shortcut conv, residual add + ReLU), each followed by max pool + ReLU,
//! then fc and argmax.
//!
//! Each block runs in two fused steps: conv1 and the shortcut conv read the
//! block's input, so they run as one wider conv; then conv2, the residual
//! add, the max pool and the ReLU run as one pass that writes the pooled
//! output (conv2's and the add's full-size outputs never exist).
//!
//! Buffer plan (offsets in [`plan`], checked by [`PLAN`]`.verify()` and
//! against the graph by [`PLAN`]`.check()` at compile time). Peak (block
//! r1): the image, conv1's output, the shortcut (7,840 bytes), the scratch,
//! the add's tables and the pooled output.

use super::{buffers, end, quantize_input, step, Arena, Buffer, Plan, Probe, Progress};
use crate::arch::{resnet as res, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::Error;
use crate::graph::{NetId, RESNET as G};
use crate::kernels::dsp::Quad;
use crate::kernels::tiled::scratch_quads;
use crate::kernels::{conv2d_add_pool_s8, conv2d_x2_s8, linear_s8, ActRange, AddLut};
use crate::kernels::{ChannelOffset, Tensor};
use crate::model::{AddLayer, ConvLayer, Decode, InputQuant, Layers, LinearLayer};

/// One decoded block `CIN -> COUT` (fields in file order).
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see the graph
pub struct BlockModel<'a, const CIN: usize, const COUT: usize> {
    pub conv1: ConvLayer<'a, CIN, CIN, { res::K }, { res::PAD }>,
    pub conv2: ConvLayer<'a, CIN, COUT, { res::K }, { res::PAD }>,
    pub conv: ConvLayer<'a, CIN, COUT, { res::K }, { res::PAD }>,
    pub add: AddLayer,
}

impl<'a, const CIN: usize, const COUT: usize> BlockModel<'a, CIN, COUT> {
    fn read(r: &mut Layers<'a>) -> Result<Self, Error> {
        Ok(BlockModel {
            conv1: r.layer()?,
            conv2: r.layer()?,
            conv: r.layer()?,
            add: r.layer()?,
        })
    }
}

/// A decoded seed ResNet (fields in file order).
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see the graph
pub struct ResNetModel<'a> {
    pub input: InputQuant<'a>,
    pub r1: BlockModel<'a, 1, { res::C1 }>,
    pub r2: BlockModel<'a, { res::C1 }, { res::C2 }>,
    pub fc: LinearLayer<'a, { res::P2 }, { res::P2 }, { res::C2 }, CLASSES>,
}

impl<'a> Decode<'a> for ResNetModel<'a> {
    const NET: NetId = NetId::ResNet;

    #[inline(never)]
    fn read(r: &mut Layers<'a>) -> Result<Self, Error> {
        Ok(ResNetModel {
            input: r.input(),
            r1: BlockModel::read(r)?,
            r2: BlockModel::read(r)?,
            fc: r.layer()?,
        })
    }
}

/// The buffers of the ResNet plan.
pub mod plan {
    use super::*;

    const S: usize = IMAGE_SIDE;
    const Q: usize = res::P1;
    const R: usize = res::P2;

    buffers! {
        /// The quantised image.
        X0: Tensor<S, S, 1> = 0;
        /// r1.conv1's output.
        R1_Y1: Tensor<S, S, 1> = end::<X0>();
        /// r1.conv's output (the shortcut).
        R1_S: Tensor<S, S, { res::C1 }> = end::<R1_Y1>();
        /// Scratch of every conv (the largest: r2's).
        SCRATCH: [Quad; scratch_quads(res::C1, res::K)] = end::<R1_S>();
        /// The residual adds' tables.
        LUT: AddLut = end::<SCRATCH>();
        /// After r1 (add, max pool, ReLU): r2's input.
        P1: Tensor<Q, Q, { res::C1 }> = end::<LUT>();
        /// r2.conv1's output.
        R2_Y1: Tensor<Q, Q, { res::C1 }> = 0;
        /// r2.conv's output.
        R2_S: Tensor<Q, Q, { res::C2 }> = end::<R2_Y1>();
        /// After r2: fc's input.
        P2: Tensor<R, R, { res::C2 }> = end::<R2_S>();
    }
}

use plan::*;

/// The steps of one inference, in order, with the buffers they use.
pub const PLAN: Plan = Plan {
    net: NetId::ResNet,
    steps: &[
        step(G, 0, &[], &[X0::REGION]),
        step(
            G,
            1,
            &[X0::REGION],
            &[R1_Y1::REGION, R1_S::REGION, SCRATCH::REGION],
        ),
        step(
            G,
            2,
            &[R1_Y1::REGION, R1_S::REGION],
            &[P1::REGION, SCRATCH::REGION, LUT::REGION],
        ),
        step(
            G,
            3,
            &[P1::REGION],
            &[R2_Y1::REGION, R2_S::REGION, SCRATCH::REGION],
        ),
        step(
            G,
            4,
            &[R2_Y1::REGION, R2_S::REGION],
            &[P2::REGION, SCRATCH::REGION, LUT::REGION],
        ),
        step(G, 5, &[P2::REGION], &[]),
    ],
};

const _: () = assert!(
    PLAN.check(G).is_ok(),
    "the ResNet's plan is not its graph's"
);
const _: () = assert!(
    PLAN.verify().is_ok(),
    "ResNet buffer plan clobbers a live buffer"
);

/// One identity block: input in `X`, conv1's output in `Y1`, the shortcut
/// in `SC`, pooled output in `P`.
#[inline(always)]
fn block<
    const CIN: usize,
    const COUT: usize,
    const S: usize,
    const SO: usize,
    const N: usize,
    X,
    Y1,
    SC,
    P,
>(
    m: &BlockModel<'_, CIN, COUT>,
    arena: &mut Arena<N>,
    progress: &mut Progress<'_, impl Probe>,
) where
    X: Buffer<T = Tensor<S, S, CIN>>,
    Y1: Buffer<T = Tensor<S, S, CIN>>,
    SC: Buffer<T = Tensor<S, S, COUT>>,
    P: Buffer<T = Tensor<SO, SO, COUT>>,
{
    let (x, y1, s, scratch) = arena.parts::<(X, Y1, SC, SCRATCH)>();
    conv2d_x2_s8(
        (&m.conv1.kernel(), &m.conv.kernel()),
        x,
        (y1, s),
        (ChannelOffset::<0>, ChannelOffset::<0>),
        scratch,
    );
    progress.done();
    let (y1, s, p, scratch, lut) = arena.parts::<(Y1, SC, P, SCRATCH, LUT)>();
    // Max pool, then ReLU (the add's ReLU already holds: a no-op kept for
    // the network's definition).
    let relu = ActRange::relu(m.add.params.output.zero_point);
    conv2d_add_pool_s8(
        (&m.conv2.kernel(), &m.add.params),
        relu,
        y1,
        s,
        p,
        (scratch, lut),
    );
    progress.done();
}

/// One ResNet inference on 784 raw pixels (row-major, 0 = black): the ten
/// int8 logits. All activations live in `arena` (at least [`PLAN`]'s
/// arena, checked at compile time); `probe` is called after every step of
/// [`PLAN`].
pub fn forward<const N: usize>(
    m: &ResNetModel<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> [i8; CLASSES] {
    const { assert!(N >= PLAN.arena_bytes(), "arena too small for the ResNet") };
    let mut progress = Progress::new(&PLAN, probe);
    quantize_input(m.input.lut, pixels, arena.get::<X0>());
    progress.done();
    block::<1, { res::C1 }, IMAGE_SIDE, { res::P1 }, N, X0, R1_Y1, R1_S, P1>(
        &m.r1,
        arena,
        &mut progress,
    );
    block::<{ res::C1 }, { res::C2 }, { res::P1 }, { res::P2 }, N, P1, R2_Y1, R2_S, P2>(
        &m.r2,
        arena,
        &mut progress,
    );
    let mut logits = [0i8; CLASSES];
    linear_s8(&m.fc.kernel(), arena.get::<P2>(), &mut logits);
    progress.done();
    logits
}
