//! The identity ResNet, int8: conv1 + ReLU + max pool (fused), block rb1,
//! conv2 + ReLU + max pool (fused), block rb2, fc, argmax.
//!
//! A residual block runs in three steps: conv1 (+ ReLU), conv2, and the
//! residual add (+ ReLU). The two convs have one shape, so they run the
//! same code (a fused conv2 + add would be a second copy of it in flash,
//! for no fewer instructions). The add reads the block's input, so it stays
//! alive across both convs.
//!
//! Buffer plan (offsets in [`plan`], checked by [`PLAN`]`.verify()` and
//! against the graph by [`PLAN`]`.check()` at compile time). Peak (block
//! rb1, its add): its input, conv2's output, the block's output, and where
//! conv1's output and the scratch were, the add's tables.

use super::{buffers, end, quantize_input, step, Arena, Buffer, Plan, Probe, Progress};
use crate::arch::{resnet_identity as res, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::Error;
use crate::graph::{NetId, RESNET_IDENTITY as G};
use crate::kernels::dsp::Quad;
use crate::kernels::tiled::scratch_quads;
use crate::kernels::{
    add_requant_s8, conv2d_pool_s8, conv2d_s8, linear_s8, ActRange, AddLut, ChannelOffset, Tensor,
};
use crate::model::{AddLayer, ConvLayer, Decode, InputQuant, Layers, LinearLayer};

/// One decoded residual block on `C` channels (fields in file order).
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see the graph
pub struct BlockModel<'a, const C: usize> {
    pub conv1: ConvLayer<'a, C, C, { res::K }, { res::PAD }>,
    pub conv2: ConvLayer<'a, C, C, { res::K }, { res::PAD }>,
    pub add: AddLayer,
}

impl<'a, const C: usize> BlockModel<'a, C> {
    fn read(r: &mut Layers<'a>) -> Result<Self, Error> {
        Ok(BlockModel {
            conv1: r.layer()?,
            conv2: r.layer()?,
            add: r.layer()?,
        })
    }
}

/// A decoded identity ResNet (fields in file order).
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the PyTorch names, see the graph
pub struct ResNetIdentityModel<'a> {
    pub input: InputQuant<'a>,
    pub conv1: ConvLayer<'a, 1, { res::C1 }, { res::K_STEM }, 0>,
    pub rb1: BlockModel<'a, { res::C1 }>,
    pub conv2: ConvLayer<'a, { res::C1 }, { res::C2 }, { res::K_STEM }, 0>,
    pub rb2: BlockModel<'a, { res::C2 }>,
    pub fc: LinearLayer<'a, { res::P2 }, { res::P2 }, { res::C2 }, CLASSES>,
}

impl<'a> Decode<'a> for ResNetIdentityModel<'a> {
    const NET: NetId = NetId::ResNetIdentity;

    #[inline(never)]
    fn read(r: &mut Layers<'a>) -> Result<Self, Error> {
        Ok(ResNetIdentityModel {
            input: r.input(),
            conv1: r.layer()?,
            rb1: BlockModel::read(r)?,
            conv2: r.layer()?,
            rb2: BlockModel::read(r)?,
            fc: r.layer()?,
        })
    }
}

/// The buffers of the identity ResNet's plan.
pub mod plan {
    use super::*;

    const S: usize = IMAGE_SIDE;
    const Q: usize = res::P1;
    const R: usize = res::P2;

    buffers! {
        /// After conv1 + ReLU + max pool: rb1's input.
        P1: Tensor<Q, Q, { res::C1 }> = 0;
        /// The quantised image.
        X0: Tensor<S, S, 1> = end::<P1>();
        /// conv1's scratch.
        S_C1: [Quad; scratch_quads(1, res::K_STEM)] = end::<X0>();
        /// rb1.conv1's output (where the image was).
        Y1: Tensor<Q, Q, { res::C1 }> = X0::OFFSET;
        /// Scratch of rb1's convs.
        S_RB1: [Quad; scratch_quads(res::C1, res::K)] = end::<Y1>();
        /// rb1.conv2's output.
        Y2: Tensor<Q, Q, { res::C1 }> = end::<S_RB1>();
        /// rb1.add's tables (where rb1.conv1's output was).
        LUT1: AddLut = Y1::OFFSET;
        /// rb1's output: conv2's input.
        A1: Tensor<Q, Q, { res::C1 }> = end::<Y2>();
        /// After conv2 + ReLU + max pool: rb2's input (where P1 was).
        P2: Tensor<R, R, { res::C2 }> = 0;
        /// conv2's scratch (P1, Y1 and rb1's scratch are dead).
        S_C2: [Quad; scratch_quads(res::C1, res::K_STEM)] = end::<P2>();
        /// rb2.conv1's output.
        Z1: Tensor<R, R, { res::C2 }> = end::<P2>();
        /// Scratch of rb2's convs.
        S_RB2: [Quad; scratch_quads(res::C2, res::K)] = end::<Z1>();
        /// rb2.conv2's output.
        Z2: Tensor<R, R, { res::C2 }> = end::<S_RB2>();
        /// rb2.add's tables (where rb2.conv1's output and scratch were).
        LUT2: AddLut = Z1::OFFSET;
        /// rb2's output: fc's input.
        A2: Tensor<R, R, { res::C2 }> = end::<Z2>();
    }
}

use plan::*;

/// The steps of one inference, in order, with the buffers they use.
pub const PLAN: Plan = Plan {
    net: NetId::ResNetIdentity,
    steps: &[
        step(G, 0, &[], &[X0::REGION]),
        step(G, 1, &[X0::REGION], &[P1::REGION, S_C1::REGION]),
        step(G, 2, &[P1::REGION], &[Y1::REGION, S_RB1::REGION]),
        step(G, 3, &[Y1::REGION], &[Y2::REGION, S_RB1::REGION]),
        step(G, 4, &[Y2::REGION, P1::REGION], &[A1::REGION, LUT1::REGION]),
        step(G, 5, &[A1::REGION], &[P2::REGION, S_C2::REGION]),
        step(G, 6, &[P2::REGION], &[Z1::REGION, S_RB2::REGION]),
        step(G, 7, &[Z1::REGION], &[Z2::REGION, S_RB2::REGION]),
        step(G, 8, &[Z2::REGION, P2::REGION], &[A2::REGION, LUT2::REGION]),
        step(G, 9, &[A2::REGION], &[]),
    ],
};

const _: () = assert!(
    PLAN.check(G).is_ok(),
    "the identity ResNet's plan is not its graph's"
);
const _: () = assert!(
    PLAN.verify().is_ok(),
    "identity ResNet buffer plan clobbers a live buffer"
);
// The arena budget: activations and scratch of one inference in 24 KB.
const _: () = assert!(
    PLAN.arena_bytes() <= 24 * 1024,
    "identity ResNet arena over 24 KB"
);

/// One residual block on `C x S x S`: input in `X`, conv1's output in
/// `Y`, conv2's in `Y2`, the block's output in `A`, the convs' scratch in
/// `SC`, the add's tables in `L`.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn block<const C: usize, const S: usize, const N: usize, X, Y, Y2, A, SC, L>(
    m: &BlockModel<'_, C>,
    arena: &mut Arena<N>,
    progress: &mut Progress<'_, impl Probe>,
) where
    X: Buffer<T = Tensor<S, S, C>>,
    Y: Buffer<T = Tensor<S, S, C>>,
    Y2: Buffer<T = Tensor<S, S, C>>,
    A: Buffer<T = Tensor<S, S, C>>,
    SC: Buffer,
    SC::T: AsMut<[Quad]>,
    L: Buffer<T = AddLut>,
{
    let (x, y, s) = arena.parts::<(X, Y, SC)>();
    conv2d_s8(&m.conv1.kernel(), x, y, ChannelOffset::<0>, s.as_mut());
    progress.done();
    let (y, y2, s) = arena.parts::<(Y, Y2, SC)>();
    conv2d_s8(&m.conv2.kernel(), y, y2, ChannelOffset::<0>, s.as_mut());
    progress.done();
    let (y2, x, a, lut) = arena.parts::<(Y2, X, A, L)>();
    add_requant_s8(&m.add.params, y2, x, a, lut);
    progress.done();
}

/// One identity ResNet inference on 784 raw pixels (row-major, 0 =
/// black): the ten int8 logits. All activations live in `arena` (at least
/// [`PLAN`]'s arena, checked at compile time); `probe` is called after
/// every step of [`PLAN`].
pub fn forward<const N: usize>(
    m: &ResNetIdentityModel<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> [i8; CLASSES] {
    const {
        assert!(
            N >= PLAN.arena_bytes(),
            "arena too small for the identity ResNet"
        )
    };
    let mut progress = Progress::new(&PLAN, probe);
    quantize_input(m.input.lut, pixels, arena.get::<X0>());
    progress.done();
    // ReLU, then max pool: the conv's clamp is the ReLU already.
    let (x, p, s) = arena.parts::<(X0, P1, S_C1)>();
    conv2d_pool_s8::<
        IMAGE_SIDE,
        IMAGE_SIDE,
        1,
        { res::C1 },
        { res::K_STEM },
        0,
        { res::S1 },
        { res::S1 },
        { res::P1 },
        { res::P1 },
    >(&m.conv1.kernel(), ActRange::FULL, x, p, s);
    progress.done();
    block::<{ res::C1 }, { res::P1 }, N, P1, Y1, Y2, A1, S_RB1, LUT1>(&m.rb1, arena, &mut progress);
    let (a, p, s) = arena.parts::<(A1, P2, S_C2)>();
    conv2d_pool_s8::<
        { res::P1 },
        { res::P1 },
        { res::C1 },
        { res::C2 },
        { res::K_STEM },
        0,
        { res::S2 },
        { res::S2 },
        { res::P2 },
        { res::P2 },
    >(&m.conv2.kernel(), ActRange::FULL, a, p, s);
    progress.done();
    block::<{ res::C2 }, { res::P2 }, N, P2, Z1, Z2, A2, S_RB2, LUT2>(&m.rb2, arena, &mut progress);
    let mut logits = [0i8; CLASSES];
    linear_s8(&m.fc.kernel(), arena.get::<A2>(), &mut logits);
    progress.done();
    logits
}
