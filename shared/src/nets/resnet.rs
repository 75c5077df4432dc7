//! The seed's ResNet, int8: two identity blocks (conv1 + ReLU, conv2, the
//! shortcut conv, residual add + ReLU), each followed by max pool + ReLU,
//! then fc and argmax.
//!
//! Buffer plan (offsets in [`plan`], checked by [`PLAN`]`.verify()` at
//! compile time), per block: conv1 and the shortcut read the block input
//! first, so conv2's output may overwrite the input; the add updates conv2's
//! output in place (`a`), reading the shortcut (`b`); the pool then writes
//! where the shortcut was. Peak (block r1): conv2's output + the shortcut +
//! conv1's output = 7,840 + 7,840 + 784 = [`RESNET_ARENA_BYTES`] = 16,464
//! bytes.

use super::{buffers, end, quantize_input, Arena, Buffer, Plan, Prediction, Probe, Region, Step};
use crate::arch::{resnet as res, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::kernels::{add_requant_s8_inplace, conv2d_s8, linear_s8, maxpool2d_s8, ActRange};
use crate::kernels::{ChannelOffset, Tensor};
use crate::model::{BlockModel, ResNetModel};

/// The buffers of the ResNet plan.
pub mod plan {
    use super::*;

    const S: usize = IMAGE_SIDE;
    const Q: usize = res::P1;

    buffers! {
        /// The quantised image (inside R1_Y2: dead before conv2 runs).
        X0: Tensor<S, S, 1> = 0;
        /// r1.conv2's output, then (in place) r1.add's output.
        R1_Y2: Tensor<S, S, { res::C1 }> = 0;
        /// r1.conv's output (the shortcut).
        R1_S: Tensor<S, S, { res::C1 }> = end::<R1_Y2>();
        /// r1.conv1's output.
        R1_Y1: Tensor<S, S, 1> = end::<R1_S>();
        /// After max pool + ReLU: r2's input (where the shortcut was).
        P1: Tensor<Q, Q, { res::C1 }> = R1_S::OFFSET;
        /// r2.conv2's output, then r2.add's output.
        R2_Y2: Tensor<Q, Q, { res::C2 }> = 0;
        /// r2.conv's output.
        R2_S: Tensor<Q, Q, { res::C2 }> = end::<R2_Y2>();
        /// r2.conv1's output.
        R2_Y1: Tensor<Q, Q, { res::C1 }> = end::<P1>();
        /// After max pool + ReLU: fc's input.
        P2: Tensor<{ res::P2 }, { res::P2 }, { res::C2 }> = R2_S::OFFSET;
    }
}

use plan::*;

const fn step(name: &'static str, reads: &'static [Region], writes: Region) -> Step {
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
        step("r1.conv1", &[X0::REGION], R1_Y1::REGION),
        step("r1.conv", &[X0::REGION], R1_S::REGION),
        step("r1.conv2", &[R1_Y1::REGION], R1_Y2::REGION),
        step("r1.add", &[R1_Y2::REGION, R1_S::REGION], R1_Y2::REGION),
        step("pool1", &[R1_Y2::REGION], P1::REGION),
        step("r2.conv1", &[P1::REGION], R2_Y1::REGION),
        step("r2.conv", &[P1::REGION], R2_S::REGION),
        step("r2.conv2", &[R2_Y1::REGION], R2_Y2::REGION),
        step("r2.add", &[R2_Y2::REGION, R2_S::REGION], R2_Y2::REGION),
        step("pool2", &[R2_Y2::REGION], P2::REGION),
        Step {
            name: "fc",
            reads: &[P2::REGION],
            writes: None,
        },
    ],
};

/// Peak activation RAM of one ResNet inference: the arena size.
pub const RESNET_ARENA_BYTES: usize = PLAN.arena_bytes();

const _: () = assert!(
    PLAN.verify().is_ok(),
    "ResNet buffer plan clobbers a live buffer"
);

/// One identity block, input in `X`, output (after the add) in `Y2`, then
/// max pool + ReLU into `P`.
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
    Y2,
    P,
>(
    m: &BlockModel<'_, CIN, COUT>,
    arena: &mut Arena<N>,
    names: [&'static str; 5],
    probe: &mut impl Probe,
) where
    X: Buffer<T = Tensor<S, S, CIN>>,
    Y1: Buffer<T = Tensor<S, S, CIN>>,
    SC: Buffer<T = Tensor<S, S, COUT>>,
    Y2: Buffer<T = Tensor<S, S, COUT>>,
    P: Buffer<T = Tensor<SO, SO, COUT>>,
{
    let (x, y1) = arena.pair::<X, Y1>();
    conv2d_s8(&m.conv1.kernel(), x, y1, ChannelOffset::<0>);
    probe.layer(names[0]);
    let (x, s) = arena.pair::<X, SC>();
    conv2d_s8(&m.conv.kernel(), x, s, ChannelOffset::<0>);
    probe.layer(names[1]);
    let (y1, y2) = arena.pair::<Y1, Y2>();
    conv2d_s8(&m.conv2.kernel(), y1, y2, ChannelOffset::<0>);
    probe.layer(names[2]);
    let (y2, s) = arena.pair::<Y2, SC>();
    add_requant_s8_inplace(&m.add.params, y2, s);
    probe.layer(names[3]);
    let (y2, p) = arena.pair::<Y2, P>();
    // Max pool, then ReLU (the add's ReLU already holds: a no-op kept for
    // the network's definition).
    maxpool2d_s8(ActRange::relu(m.add.params.output.zero_point), y2, p);
    probe.layer(names[4]);
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
    block::<1, { res::C1 }, IMAGE_SIDE, { res::P1 }, N, X0, R1_Y1, R1_S, R1_Y2, P1>(
        &m.r1,
        arena,
        ["r1.conv1", "r1.conv", "r1.conv2", "r1.add", "pool1"],
        probe,
    );
    block::<{ res::C1 }, { res::C2 }, { res::P1 }, { res::P2 }, N, P1, R2_Y1, R2_S, R2_Y2, P2>(
        &m.r2,
        arena,
        ["r2.conv1", "r2.conv", "r2.conv2", "r2.add", "pool2"],
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
