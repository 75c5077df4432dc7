//! 2-D convolution: stride 1, square kernel, zero padding, bias. NCHW
//! activations, OIHW weights.
//!
//! Forward is one GEMM per group of samples on their im2col matrix
//! (`CI*K*K` rows by `samples*HO*WO` columns). Backward recomputes those
//! columns for the weight gradient (a GEMM) and gets the input gradient
//! either as the forward pass of the transposed conv (the output gradient
//! correlated with the flipped kernel: a GEMM reducing over `CO*K*K`) or,
//! for a conv that shrinks its input or has very few input channels, by
//! col2im of `W^T * gout` (see `by_col2im`).
//! Runs of samples go to rayon's threads with single-threaded GEMMs inside:
//! at these sizes that beats one threaded GEMM per sample; groups are sized
//! so their columns stay in L2.

use super::buffers::{put, read, take, tensor_from, with_scratch, Pooled, SlotOf};
use super::direct;
use super::im2col::Geometry;
use super::matmul::{matmul, Mat, TILE_ROWS};
use super::pool::{max_backward_planes, max_forward_planes, Planes};
use super::relu::{add_passed, clamp, passed_onto_zero, Mask};
use dfdx::prelude::*;
use dfdx::tensor::CpuError;
use rayon::prelude::*;

/// Convolves `x` with `weight` (`[CO, CI, K, K]`) and adds `bias`; zero
/// padding `P`, stride 1, so `HO = H + 2P - K + 1` (likewise `WO`), which a
/// const assertion checks. Gradients flow to `x`, `weight` and `bias`.
pub fn conv2d<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    weight: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    bias: &Tensor<Rank1<CO>, f32, Cpu>,
) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T> {
    conv::<B, CI, H, W, CO, K, P, HO, WO, true, false, T>(x, weight, bias)
}

/// [`conv2d`] for a network's first layer, whose input needs no gradient:
/// the backward pass skips the input gradient, about half its cost, and
/// allocates no gradient for `x`.
pub fn conv2d_first<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    weight: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    bias: &Tensor<Rank1<CO>, f32, Cpu>,
) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T> {
    conv::<B, CI, H, W, CO, K, P, HO, WO, false, false, T>(x, weight, bias)
}

/// `relu(conv2d(x, weight, bias))`: the ReLU clamps the output in place and
/// masks the output gradient (see `relu`), no dfdx op in between.
pub fn conv2d_relu<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    weight: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    bias: &Tensor<Rank1<CO>, f32, Cpu>,
) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T> {
    conv::<B, CI, H, W, CO, K, P, HO, WO, true, true, T>(x, weight, bias)
}

/// [`conv2d_relu`] for a network's first layer, as [`conv2d_first`].
pub fn conv2d_first_relu<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    weight: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    bias: &Tensor<Rank1<CO>, f32, Cpu>,
) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T> {
    conv::<B, CI, H, W, CO, K, P, HO, WO, false, true, T>(x, weight, bias)
}

fn conv<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
    const INPUT_GRAD: bool,
    const RELU: bool,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    weight: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    bias: &Tensor<Rank1<CO>, f32, Cpu>,
) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T> {
    let g = geometry::<CI, H, W, CO, K, P, HO, WO>();
    let (x, mut tape) = x.split_tape();
    let conv = SavedConv::new(g, &x, weight, bias, INPUT_GRAD);
    let mut mask = None;
    let out = tensor_from::<Rank4<B, CO, HO, WO>>(x.device(), |out| {
        forward(&g, &conv.xs, &conv.ws, Some(&conv.bs), out);
        if RELU {
            mask = Some(Mask::apply(out));
        }
    });
    if T::OWNS_TAPE {
        let og = out.ghost();
        tape.add_backward_op(move |grads| {
            let mut gout = take(grads.get_or_alloc_mut(&og))?;
            if let Some(mask) = &mask {
                // Turned into the gradient at the ReLU's input in place: the
                // output's own gradient is not needed once its consumers'
                // backward ops, which all ran before this one, have added
                // to it. A copy would cost an allocation and a pass.
                mask.mask_gradient(&mut gout);
            }
            conv.backward(grads, &gout)?;
            put(grads.get_or_alloc_mut(&og), gout)
        });
    }
    out.put_tape(tape)
}

/// A conv as its forward pass read it (geometry, input, weights, bias) and
/// where its gradients go: what every conv op's backward pass needs.
pub(crate) struct SavedConv {
    pub g: Geometry,
    pub xs: Pooled,
    pub ws: Pooled,
    pub bs: Pooled,
    /// The input's gradient slot; `None` for a conv that passes no
    /// gradient back to its input (the network's first).
    x: Option<SlotOf>,
    w: SlotOf,
    b: SlotOf,
}

impl SavedConv {
    /// Reads `x`, `weight` and `bias` for a conv of geometry `g`.
    pub(crate) fn new<SX: Shape, SW: Shape, SB: Shape>(
        g: Geometry,
        x: &Tensor<SX, f32, Cpu>,
        weight: &Tensor<SW, f32, Cpu>,
        bias: &Tensor<SB, f32, Cpu>,
        input_grad: bool,
    ) -> Self {
        let (xg, wg, bg) = (x.ghost(), weight.ghost(), bias.ghost());
        let x_slot: Option<SlotOf> = if input_grad {
            Some(Box::new(move |grads| grads.get_or_alloc_mut(&xg)))
        } else {
            None
        };
        SavedConv {
            g,
            xs: read(x),
            ws: read(weight),
            bs: read(bias),
            x: x_slot,
            w: Box::new(move |grads| grads.get_or_alloc_mut(&wg)),
            b: Box::new(move |grads| grads.get_or_alloc_mut(&bg)),
        }
    }

    /// Adds the gradients for `gout`, the gradient at the conv's output
    /// (its products and bias), into its weight's, bias's and input's.
    pub(crate) fn backward(
        &self,
        grads: &mut Gradients<f32, Cpu>,
        gout: &[f32],
    ) -> Result<(), CpuError> {
        let mut gw = take((self.w)(grads))?;
        let mut gb = take((self.b)(grads))?;
        let mut gx = self.x.as_ref().map(|x| take(x(grads))).transpose()?;
        let (xs, ws) = (&self.xs, &self.ws);
        backward(&self.g, xs, ws, gout, &mut gw, &mut gb, gx.as_deref_mut());
        if let (Some(x), Some(gx)) = (&self.x, gx) {
            put(x(grads), gx)?;
        }
        put((self.b)(grads), gb)?;
        put((self.w)(grads), gw)
    }
}

/// `relu(shortcut + conv2d(x, weight, bias))`: a residual block's merge
/// fused into its last conv. The conv adds its products onto a copy of the
/// shortcut, so no separate conv output or sum is allocated, written and
/// read back, in either pass. Every output is `shortcut + (product + bias)`
/// and every gradient is summed as the unfused ops would, so the bits are
/// theirs. Gradients flow to `x`, `weight`, `bias` and `shortcut`.
pub fn conv2d_add_relu<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
    T1: Tape<f32, Cpu> + Merge<T2>,
    T2: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T1>,
    weight: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    bias: &Tensor<Rank1<CO>, f32, Cpu>,
    shortcut: Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T2>,
) -> Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T1> {
    let g = geometry::<CI, H, W, CO, K, P, HO, WO>();
    let ((x, tx), (shortcut, ts)) = (x.split_tape(), shortcut.split_tape());
    let mut merge = None;
    let out = tensor_from::<Rank4<B, CO, HO, WO>>(x.device(), |out| {
        merge = Some(ResidualMerge::forward(
            g, &x, weight, bias, &shortcut, out, None,
        ));
    });
    let merge = merge.expect("filled by tensor_from");
    let mut tape = tx.merge(ts);
    if T1::OWNS_TAPE {
        let og = out.ghost();
        tape.add_backward_op(move |grads| {
            let mut gout = take(grads.get_or_alloc_mut(&og))?;
            merge.backward(grads, &mut gout, None)?;
            put(grads.get_or_alloc_mut(&og), gout)
        });
    }
    out.put_tape(tape)
}

/// `maxpool2d_relu(conv2d_add_relu(x, weight, bias, shortcut))`: a
/// residual block's merge and the max pool after it, fused. The merged
/// maps live only in scratch of our own: neither they nor their gradient
/// become tensors, so dfdx never zero-fills them and the pool never copies
/// them in; the arithmetic, and so the bits, are the two ops'.
pub fn conv2d_add_relu_maxpool<
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
    const PH: usize,
    const PW: usize,
    T1: Tape<f32, Cpu> + Merge<T2>,
    T2: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, CI, H, W>, f32, Cpu, T1>,
    weight: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    bias: &Tensor<Rank1<CO>, f32, Cpu>,
    shortcut: Tensor<Rank4<B, CO, HO, WO>, f32, Cpu, T2>,
) -> Tensor<Rank4<B, CO, PH, PW>, f32, Cpu, T1> {
    const {
        assert!(
            PH == HO / 2 && PW == WO / 2 && PH >= 1 && PW >= 1,
            "2x2 max pool output must be HO/2 x WO/2"
        );
    }
    let g = geometry::<CI, H, W, CO, K, P, HO, WO>();
    let ((x, tx), (shortcut, ts)) = (x.split_tape(), shortcut.split_tape());
    let planes = Planes { h: HO, w: WO };
    let mut merged = Pooled::new(B * CO * HO * WO);
    let mut arg = vec![0u8; B * CO * PH * PW];
    let mut merge = None;
    let out = tensor_from::<Rank4<B, CO, PH, PW>>(x.device(), |out| {
        let pool = MaxPool {
            planes,
            out,
            arg: &mut arg,
        };
        merge = Some(ResidualMerge::forward(
            g,
            &x,
            weight,
            bias,
            &shortcut,
            &mut merged,
            Some(pool),
        ));
    });
    let merge = merge.expect("filled by tensor_from");
    drop(merged);
    let mut tape = tx.merge(ts);
    if T1::OWNS_TAPE {
        let og = out.ghost();
        tape.add_backward_op(move |grads| {
            let gpool = take(grads.get_or_alloc_mut(&og))?;
            let mut gmerged = Pooled::new(B * CO * HO * WO);
            let pool = MaxPoolGrad {
                planes,
                gout: &gpool,
                arg: &arg,
            };
            merge.backward(grads, &mut gmerged, Some(pool))?;
            put(grads.get_or_alloc_mut(&og), gpool)
        });
    }
    out.put_tape(tape)
}

/// The 2x2 max pool (and ReLU) after a merge: where its output and its
/// windows' winners go.
struct MaxPool<'a> {
    planes: Planes,
    out: &'a mut [f32],
    arg: &'a mut [u8],
}

impl<'a> MaxPool<'a> {
    /// The pool cut into pieces of `planes` planes each, in order.
    fn runs(self, planes: usize) -> impl Iterator<Item = MaxPool<'a>> {
        let len = planes * (self.planes.h / 2) * (self.planes.w / 2);
        let p = self.planes;
        self.out
            .chunks_mut(len)
            .zip(self.arg.chunks_mut(len))
            .map(move |(out, arg)| MaxPool {
                planes: p,
                out,
                arg,
            })
    }
}

/// The gradient at a [`MaxPool`]'s output, and its windows' winners.
struct MaxPoolGrad<'a> {
    planes: Planes,
    gout: &'a [f32],
    arg: &'a [u8],
}

impl<'a> MaxPoolGrad<'a> {
    /// As [`MaxPool::runs`].
    fn runs(self, planes: usize) -> impl Iterator<Item = MaxPoolGrad<'a>> {
        let len = planes * (self.planes.h / 2) * (self.planes.w / 2);
        let p = self.planes;
        self.gout
            .chunks(len)
            .zip(self.arg.chunks(len))
            .map(move |(gout, arg)| MaxPoolGrad {
                planes: p,
                gout,
                arg,
            })
    }
}

/// `relu(shortcut + conv(x))` as the forward pass read it, with what the
/// backward pass needs.
struct ResidualMerge {
    conv: SavedConv,
    mask: Mask,
    shortcut: SlotOf,
}

impl ResidualMerge {
    /// Writes `relu(shortcut + conv(x))` into `out` (the conv's products
    /// and bias added onto a copy of the shortcut, then clamped), and its
    /// max pool into `pool` if given. After one copy of the shortcut, each
    /// run of samples goes through every stage while it is in cache.
    #[allow(clippy::too_many_arguments)]
    fn forward<
        const B: usize,
        const CI: usize,
        const H: usize,
        const W: usize,
        const CO: usize,
        const K: usize,
        const HO: usize,
        const WO: usize,
    >(
        g: Geometry,
        x: &Tensor<Rank4<B, CI, H, W>, f32, Cpu>,
        weight: &Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
        bias: &Tensor<Rank1<CO>, f32, Cpu>,
        shortcut: &Tensor<Rank4<B, CO, HO, WO>, f32, Cpu>,
        out: &mut [f32],
        pool: Option<MaxPool<'_>>,
    ) -> Self {
        let conv = SavedConv::new(g, x, weight, bias, true);
        shortcut.clone().contiguous().copy_into(out);
        let mut mask = Mask::zeroed(out.len());
        let run = run_len(B);
        let (out_run, in_run) = (run * g.out_len(), run * g.in_len());
        let pooled = per_run(pool.map(|p| p.runs(run * g.co)), B.div_ceil(run));
        out.par_chunks_mut(out_run)
            .zip(mask.bytes_mut().par_chunks_mut(out_run))
            .zip(conv.xs.par_chunks(in_run))
            .zip(pooled)
            .for_each(|(((o, m), xs), pooled)| {
                forward_run(&g, xs, &conv.ws, Some(&conv.bs), o, Channels::all(&g), true);
                clamp(o, m);
                if let Some(p) = pooled {
                    max_forward_planes::<true>(p.planes, o, p.out, p.arg);
                }
            });
        let sg = shortcut.ghost();
        Self {
            conv,
            mask,
            shortcut: Box::new(move |grads| grads.get_or_alloc_mut(&sg)),
        }
    }

    /// Adds the gradients for `gout`, the gradient at the merge's output,
    /// which is turned in place into the conv's output gradient. With
    /// `pool`, `gout` is scratch that receives the gradient the pool
    /// passes back, as the merged maps' own zeroed gradient would have.
    fn backward(
        &self,
        grads: &mut Gradients<f32, Cpu>,
        gout: &mut [f32],
        pool: Option<MaxPoolGrad<'_>>,
    ) -> Result<(), CpuError> {
        let mut gs = take((self.shortcut)(grads))?;
        let samples = gout.len() / self.conv.g.out_len();
        let run = run_len(samples);
        let pooled = per_run(
            pool.map(|p| p.runs(run * self.conv.g.co)),
            samples.div_ceil(run),
        );
        let len = run * self.conv.g.out_len();
        gout.par_chunks_mut(len)
            .zip(gs.par_chunks_mut(len))
            .zip(self.mask.bytes().par_chunks(len))
            .zip(pooled)
            .for_each(|(((g, gs), m), pooled)| {
                if let Some(p) = pooled {
                    g.fill(0.0);
                    max_backward_planes::<true>(p.planes, p.gout, p.arg, g);
                }
                add_passed(g, m, gs);
                // The conv's output gradient, as its own zeroed slot would
                // have received it from the sum.
                passed_onto_zero(g, m);
            });
        put((self.shortcut)(grads), gs)?;
        self.conv.backward(grads, gout)
    }
}

/// The conv's [`Geometry`], its shapes checked at compile time.
fn geometry<
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const HO: usize,
    const WO: usize,
>() -> Geometry {
    const {
        assert!(K >= 1, "kernel side must be at least 1");
        assert!(
            K <= H + 2 * P && K <= W + 2 * P,
            "kernel must fit the padded input"
        );
        assert!(
            HO + K == H + 2 * P + 1,
            "output height must be H + 2P - K + 1"
        );
        assert!(
            WO + K == W + 2 * P + 1,
            "output width must be W + 2P - K + 1"
        );
    }
    Geometry::new(CI, H, W, CO, K, P)
}

/// Floats of im2col columns per group: about half of a 1 MiB L2.
const GROUP_FLOATS: usize = 128 * 1024;

/// Runs a batch is cut into, each one rayon task: four per thread on two
/// cores, so a thread slowed by another process does not hold up the rest.
/// A fixed count rather than one per thread: the weight gradient is summed
/// run by run, and the same cut on any machine gives the same bits.
const RUNS: usize = 8;

/// Samples per run.
fn run_len(batch: usize) -> usize {
    batch.div_ceil(RUNS).max(1)
}

/// One item per run of a batch cut into `runs`: `pieces`, one per run, or
/// `None` for each run when there are none.
fn per_run<T>(pieces: Option<impl Iterator<Item = T>>, runs: usize) -> Vec<Option<T>> {
    match pieces {
        Some(p) => p.map(Some).collect(),
        None => (0..runs).map(|_| None).collect(),
    }
}

/// Samples per GEMM within a run.
fn group_len(g: &Geometry, run: usize) -> usize {
    (GROUP_FLOATS / (g.patch() * g.pixels()).max(1)).clamp(1, run.max(1))
}

/// `out = weights * im2col(xs) (+ bias)` for every sample; `ws` is
/// `co x patch`.
pub(crate) fn forward(g: &Geometry, xs: &[f32], ws: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    forward_into(g, xs, ws, bias, out, Channels::all(g), false);
}

/// Where a conv's `co` output channels go in each sample of its output:
/// from channel `first` of `total`, so that a conv can write its slice of a
/// concatenation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Channels {
    /// The first of the conv's channels in the output.
    pub first: usize,
    /// Channels per sample of the output.
    pub total: usize,
}

impl Channels {
    /// The output is the conv's own.
    fn all(g: &Geometry) -> Self {
        Channels {
            first: 0,
            total: g.co,
        }
    }
}

/// [`forward`] into channels `ch` of `out`, or added onto them when
/// `accumulate`; the others are left alone.
pub(crate) fn forward_into(
    g: &Geometry,
    xs: &[f32],
    ws: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    ch: Channels,
    accumulate: bool,
) {
    let run = run_len(xs.len() / g.in_len());
    out.par_chunks_mut(run * ch.total * g.pixels())
        .zip(xs.par_chunks(run * g.in_len()))
        .for_each(|(out, xs)| forward_run(g, xs, ws, bias, out, ch, accumulate));
}

/// [`forward_into`] on one run of samples, on the calling thread; adds to
/// `out` when `accumulate`. The direct conv takes it where it can (the
/// same bits, faster: see `direct`), im2col and `gemm` elsewhere.
pub(crate) fn forward_run(
    g: &Geometry,
    xs: &[f32],
    ws: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    ch: Channels,
    accumulate: bool,
) {
    if direct::supported(g) {
        let [pad, prod] = direct::scratch_len(g);
        with_scratch([pad, prod, 0], |pad, prod, _| {
            direct::forward_run(g, xs, ws, bias, out, ch, accumulate, [pad, prod])
        });
    } else {
        forward_run_gemm(g, xs, ws, bias, out, ch, accumulate);
    }
}

/// `dst = src + b`, or `dst += src + b` when `accumulate`: a conv's
/// products, with their bias, into its output.
pub(crate) fn store_biased(dst: &mut [f32], src: &[f32], b: f32, accumulate: bool) {
    if accumulate {
        dst.iter_mut().zip(src).for_each(|(d, v)| *d += v + b);
    } else {
        dst.iter_mut().zip(src).for_each(|(d, v)| *d = v + b);
    }
}

/// [`forward_run`] by im2col and `gemm`, whatever the geometry.
pub(crate) fn forward_run_gemm(
    g: &Geometry,
    xs: &[f32],
    ws: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    ch: Channels,
    accumulate: bool,
) {
    let (patch, pixels) = (g.patch(), g.pixels());
    let group = group_len(g, xs.len() / g.in_len());
    let wm = Mat::new(ws, g.co, patch);
    let out_len = ch.total * pixels;
    with_scratch(
        [patch * group * pixels, g.co * group * pixels, g.pad_len()],
        |cols, prod, pad| {
            for (out, xs) in out
                .chunks_mut(group * out_len)
                .zip(xs.chunks(group * g.in_len()))
            {
                let n = xs.len() / g.in_len();
                let (cols, prod) = (
                    &mut cols[..patch * n * pixels],
                    &mut prod[..g.co * n * pixels],
                );
                g.im2col(xs, cols, pad);
                matmul(prod, wm, Mat::new(cols, patch, n * pixels), false);
                // `prod` is [co][sample][pixel]; the output is [sample][co][pixel].
                for (c, prod) in prod.chunks_exact(n * pixels).enumerate() {
                    let b = bias.map_or(0.0, |b| b[c]);
                    for (s, src) in prod.chunks_exact(pixels).enumerate() {
                        let dst = &mut out[s * out_len + (ch.first + c) * pixels..][..pixels];
                        store_biased(dst, src, b, accumulate);
                    }
                }
            }
        },
    );
}

/// Adds the gradients for `gout` into `gw`, `gb` and, when given, `gx`.
pub(crate) fn backward(
    g: &Geometry,
    xs: &[f32],
    ws: &[f32],
    gout: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    gx: Option<&mut [f32]>,
) {
    backward_via(g, xs, ws, gout, gw, gb, gx, by_col2im(g));
}

/// [`backward`], with the input gradient by col2im or by the transposed
/// conv as `col2im` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_via(
    g: &Geometry,
    xs: &[f32],
    ws: &[f32],
    gout: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    gx: Option<&mut [f32]>,
    col2im: bool,
) {
    let batch = xs.len() / g.in_len();
    let run = run_len(batch);
    let t = g.transposed();
    let flipped = if gx.is_some() && !col2im {
        g.flip_weights(ws)
    } else {
        Vec::new()
    };
    let gx_runs = per_run(
        gx.map(|gx| gx.chunks_mut(run * g.in_len())),
        batch.div_ceil(run),
    );
    // Each run sums its own weight and bias gradients; they are added up in
    // a fixed order afterwards, so results do not depend on scheduling.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = gx_runs
        .into_par_iter()
        .zip(xs.par_chunks(run * g.in_len()))
        .zip(gout.par_chunks(run * g.out_len()))
        .map(|((gx, xs), gout)| {
            let mut pw = vec![0.0; gw.len()];
            let mut pb = vec![0.0; gb.len()];
            weight_grad_run(g, xs, gout, &mut pw, &mut pb);
            if let Some(gx) = gx {
                if col2im {
                    data_grad_run(g, ws, gout, gx);
                } else {
                    forward_run(&t, gout, &flipped, None, gx, Channels::all(&t), true);
                }
            }
            (pw, pb)
        })
        .collect();
    let patch = g.patch();
    for (pwt, pb) in partials {
        // The partials are transposed, `patch x co` (see `weight_grad_run`).
        for (r, row) in pwt.chunks_exact(g.co).enumerate() {
            for (c, v) in row.iter().enumerate() {
                gw[c * patch + r] += v;
            }
        }
        gb.iter_mut().zip(pb).for_each(|(g, p)| *g += p);
    }
}

/// `gwt += im2col(xs) * gout^T` (the weight gradient transposed,
/// `patch x co`: the GEMM runs 20-40% faster that way round) and
/// `gb += gout` summed over pixels, for one run of samples. A GEMM even
/// for a single output channel: with `gemm` 0.19 it beat the eight-lane
/// dot products this once took for few weights (11 against 15 us for the
/// ResNet's r1.conv1, 17 against 48 us for InceptionNet's 1x1 convs).
fn weight_grad_run(g: &Geometry, xs: &[f32], gout: &[f32], gwt: &mut [f32], gb: &mut [f32]) {
    let (patch, pixels) = (g.patch(), g.pixels());
    let group = group_len(g, xs.len() / g.in_len());
    with_scratch(
        [patch * group * pixels, g.co * group * pixels, g.pad_len()],
        |cols, gg, pad| {
            for (gout, xs) in gout
                .chunks(group * g.out_len())
                .zip(xs.chunks(group * g.in_len()))
            {
                let n = xs.len() / g.in_len();
                let cols = &mut cols[..patch * n * pixels];
                g.im2col(xs, cols, pad);
                let gg = by_channel(g, gout, gg);
                add_row_sums(gg, n * pixels, gb);
                let gm = Mat::new(gg, g.co, n * pixels);
                matmul(gwt, Mat::new(cols, patch, n * pixels), gm.t(), true);
            }
        },
    );
}

/// The output gradient of a group of samples as `[co][sample][pixel]`,
/// the columns' order: `gout` itself for a single sample, else a copy in
/// `buf`.
fn by_channel<'a>(g: &Geometry, gout: &'a [f32], buf: &'a mut [f32]) -> &'a [f32] {
    let (n, pixels) = (gout.len() / g.out_len(), g.pixels());
    if n == 1 {
        return gout;
    }
    let buf = &mut buf[..gout.len()];
    for (c, row) in buf.chunks_exact_mut(n * pixels).enumerate() {
        for (s, dst) in row.chunks_exact_mut(pixels).enumerate() {
            dst.copy_from_slice(&gout[s * g.out_len() + c * pixels..][..pixels]);
        }
    }
    buf
}

/// `sums[r] += ` the sum of row `r` of `rows` (rows of `len` floats), each
/// row added up in order, as `iter().sum()` would. One row at a time, every
/// addition waits for the one before (four cycles, a tenth of a ResNet
/// step); eight rows side by side keep eight independent chains going, and
/// every row's sum keeps its bits.
fn add_row_sums(rows: &[f32], len: usize, sums: &mut [f32]) {
    const CHAINS: usize = 8;
    fn chains<const N: usize>(rows: &[f32], len: usize, sums: &mut [f32]) {
        // `-0.0` is the identity of `+`, so the first addition is exact.
        let mut acc = [-0.0f32; N];
        for i in 0..len {
            for (r, a) in acc.iter_mut().enumerate() {
                *a += rows[r * len + i];
            }
        }
        sums.iter_mut().zip(acc).for_each(|(s, a)| *s += a);
    }
    for (rows, sums) in rows.chunks(CHAINS * len).zip(sums.chunks_mut(CHAINS)) {
        match sums.len() {
            1 => chains::<1>(rows, len, sums),
            2 => chains::<2>(rows, len, sums),
            3 => chains::<3>(rows, len, sums),
            4 => chains::<4>(rows, len, sums),
            5 => chains::<5>(rows, len, sums),
            6 => chains::<6>(rows, len, sums),
            7 => chains::<7>(rows, len, sums),
            _ => chains::<CHAINS>(rows, len, sums),
        }
    }
}

/// Whether the input gradient goes through col2im rather than the
/// transposed conv, as measured at batch 128 (`host bench --kernels`). The
/// transposed conv sweeps the whole padded output gradient: for a conv that shrinks its input (InceptionNet's conv2, 12x12 -> 8x8)
/// it multiplies `h*w` rather than `ho*wo` pixels, mostly by zeros, and
/// col2im wins. Otherwise the transposed conv's GEMM, reducing over
/// `co*k*k`, beats col2im's, which reduces over only `co` and leaves
/// `ci*k*k` rows to scatter back (InceptionNet's 16->24 5x5: whole backward
/// 9.4 against 9.9 ms), unless `ci` is too small to fill one tile of its
/// product (the ResNet's 1->10 r1.conv2: 6.7 against 4.8 ms).
fn by_col2im(g: &Geometry) -> bool {
    g.pixels() < g.h * g.w || g.ci < TILE_ROWS
}

/// `gx += col2im(weights^T * gout)` for one run of samples.
fn data_grad_run(g: &Geometry, ws: &[f32], gout: &[f32], gx: &mut [f32]) {
    let (patch, pixels) = (g.patch(), g.pixels());
    let group = group_len(g, gx.len() / g.in_len());
    let wt = Mat::new(ws, g.co, patch).t();
    with_scratch(
        [patch * group * pixels, g.co * group * pixels, g.pad_len()],
        |cols, gg, pad| {
            for (gout, gx) in gout
                .chunks(group * g.out_len())
                .zip(gx.chunks_mut(group * g.in_len()))
            {
                let n = gx.len() / g.in_len();
                let cols = &mut cols[..patch * n * pixels];
                let gg = by_channel(g, gout, gg);
                matmul(cols, wt, Mat::new(gg, g.co, n * pixels), false);
                g.col2im(cols, gx, pad);
            }
        },
    );
}
