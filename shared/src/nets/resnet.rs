//! The seed's ResNet, int8: two identity blocks (conv1 + ReLU, conv2, the
//! shortcut conv, residual add + ReLU), each followed by max pool + ReLU,
//! then fc and argmax.
//!
//! Each block runs in two fused steps: conv1 and the shortcut conv read the
//! block's input, so they run as one wider conv; then conv2, the residual
//! add, the max pool and the ReLU run as one pass that writes the pooled
//! output (conv2's and the add's full-size outputs never exist).
//!
//! Buffer plan (offsets in [`plan`], checked by [`PLAN`]`.verify()` at
//! compile time). Peak (block r1): the image, conv1's output, the shortcut
//! (7,840 bytes), the scratch, the add's tables and the pooled output =
//! [`RESNET_ARENA_BYTES`].

use super::{buffers, end, quantize_input, step, Arena, Buffer, Plan, Prediction, Probe};
use crate::arch::{resnet as res, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::kernels::dsp::Step as ScratchStep;
use crate::kernels::tiled::scratch_steps;
use crate::kernels::{conv2d_add_pool_fast, conv2d_x2_fast, linear_s8, ActRange, AddLut};
use crate::kernels::{ChannelOffset, Tensor};
use crate::model::{BlockModel, ResNetModel};

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
        SCRATCH: [ScratchStep; scratch_steps(res::C1, res::K)] = end::<R1_S>();
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
    steps: &[
        step("input", &[], &[], &[X0::REGION]),
        step("r1.conv1+conv", &["r1.conv1", "r1.conv"], &[X0::REGION], &[R1_Y1::REGION, R1_S::REGION, SCRATCH::REGION]),
        step(
            "r1.conv2+add+pool",
            &["r1.conv2", "r1.add"],
            &[R1_Y1::REGION, R1_S::REGION],
            &[P1::REGION, SCRATCH::REGION, LUT::REGION],
        ),
        step("r2.conv1+conv", &["r2.conv1", "r2.conv"], &[P1::REGION], &[R2_Y1::REGION, R2_S::REGION, SCRATCH::REGION]),
        step(
            "r2.conv2+add+pool",
            &["r2.conv2", "r2.add"],
            &[R2_Y1::REGION, R2_S::REGION],
            &[P2::REGION, SCRATCH::REGION, LUT::REGION],
        ),
        step("fc", &["fc"], &[P2::REGION], &[]),
    ],
};

/// Peak activation + scratch RAM of one ResNet inference: the arena size.
pub const RESNET_ARENA_BYTES: usize = PLAN.arena_bytes();

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
    names: [&'static str; 2],
    probe: &mut impl Probe,
) where
    X: Buffer<T = Tensor<S, S, CIN>>,
    Y1: Buffer<T = Tensor<S, S, CIN>>,
    SC: Buffer<T = Tensor<S, S, COUT>>,
    P: Buffer<T = Tensor<SO, SO, COUT>>,
{
    let (x, y1, s, scratch) = arena.parts::<(X, Y1, SC, SCRATCH)>();
    conv2d_x2_fast(
        (&m.conv1.kernel(), &m.conv.kernel()),
        x,
        (y1, s),
        (ChannelOffset::<0>, ChannelOffset::<0>),
        scratch,
    );
    probe.layer(names[0]);
    let (y1, s, p, scratch, lut) = arena.parts::<(Y1, SC, P, SCRATCH, LUT)>();
    // Max pool, then ReLU (the add's ReLU already holds: a no-op kept for
    // the network's definition).
    let relu = ActRange::relu(m.add.params.output.zero_point);
    conv2d_add_pool_fast((&m.conv2.kernel(), &m.add.params), relu, y1, s, p, (scratch, lut));
    probe.layer(names[1]);
}

/// One ResNet inference on 784 raw pixels (row-major, 0 = black): the ten
/// int8 logits. All activations live in `arena` (at least
/// [`RESNET_ARENA_BYTES`], checked at compile time); `probe` is called after
/// every step of [`PLAN`].
pub fn forward<const N: usize>(
    m: &ResNetModel<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> [i8; CLASSES] {
    const { assert!(N >= RESNET_ARENA_BYTES, "arena too small for the ResNet") };
    quantize_input(m.input.lut, pixels, arena.get::<X0>());
    probe.layer("input");
    block::<1, { res::C1 }, IMAGE_SIDE, { res::P1 }, N, X0, R1_Y1, R1_S, P1>(
        &m.r1,
        arena,
        [PLAN.steps[1].name, PLAN.steps[2].name],
        probe,
    );
    block::<{ res::C1 }, { res::C2 }, { res::P1 }, { res::P2 }, N, P1, R2_Y1, R2_S, P2>(
        &m.r2,
        arena,
        [PLAN.steps[3].name, PLAN.steps[4].name],
        probe,
    );
    let mut logits = [0i8; CLASSES];
    linear_s8(&m.fc.kernel(), arena.get::<P2>(), &mut logits);
    probe.layer("fc");
    logits
}

/// [`forward`] and argmax.
pub fn classify<const N: usize>(
    m: &ResNetModel<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> Prediction {
    Prediction::from_logits(forward(m, pixels, arena, probe))
}
