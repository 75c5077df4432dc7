//! The Inception module's merge without its copies: four convs that keep
//! their input's size, each writing straight into its channel slice of the
//! concatenated output (as the int8 pass does, see `docs/ARCHITECTURE.md`).
//!
//! Four [`conv2d`](super::conv2d)s and [`concat4`](super::concat4) would
//! also give the branches' four outputs, `concat4`'s reads of them and, in
//! backward, the four branch gradients: all buffers from dfdx's allocator,
//! which zero-fills (and `read` copies) on one thread while the other
//! waits, about 26 MB per step for `incep1` at batch 128.

use super::buffers::{put, take, tensor_from, Pooled};
use super::conv::{forward_into, Channels, SavedConv};
use super::im2col::Geometry;
use dfdx::prelude::*;
use dfdx::tensor::CpuError;
use rayon::prelude::*;

/// One branch of [`conv2d_concat4`]: the input, the weight `[CO, CI, K, K]`
/// and the bias `[CO]` of a conv with an odd kernel `K` and padding
/// `(K - 1) / 2`, which keeps the input's `H x W`.
pub type Branch<
    'a,
    const B: usize,
    const CI: usize,
    const H: usize,
    const W: usize,
    const CO: usize,
    const K: usize,
    T,
> = (
    Tensor<Rank4<B, CI, H, W>, f32, Cpu, T>,
    &'a Tensor<Rank4<CO, CI, K, K>, f32, Cpu>,
    &'a Tensor<Rank1<CO>, f32, Cpu>,
);

/// `[conv(a), conv(b), conv(c), conv(d)]` along channels, each conv as
/// [`conv2d`](super::conv2d) with the padding that keeps the size:
/// `C = CO1 + CO2 + CO3 + CO4`, checked by a const assertion. Gradients
/// flow to every input, weight and bias.
#[allow(clippy::type_complexity)]
pub fn conv2d_concat4<
    const B: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const CI1: usize,
    const CO1: usize,
    const K1: usize,
    const CI2: usize,
    const CO2: usize,
    const K2: usize,
    const CI3: usize,
    const CO3: usize,
    const K3: usize,
    const CI4: usize,
    const CO4: usize,
    const K4: usize,
    T: Tape<f32, Cpu>,
>(
    a: Branch<'_, B, CI1, H, W, CO1, K1, T>,
    b: Branch<'_, B, CI2, H, W, CO2, K2, T>,
    c: Branch<'_, B, CI3, H, W, CO3, K3, T>,
    d: Branch<'_, B, CI4, H, W, CO4, K4, T>,
) -> Tensor<Rank4<B, C, H, W>, f32, Cpu, T> {
    const {
        assert!(
            C == CO1 + CO2 + CO3 + CO4,
            "concat output channels must be the sum of the branches'"
        );
        assert!(
            K1 % 2 == 1 && K2 % 2 == 1 && K3 % 2 == 1 && K4 % 2 == 1,
            "a branch conv keeps the size only with an odd kernel"
        );
        assert!(
            K1 <= 2 * H + 1 && K2 <= 2 * H + 1 && K3 <= 2 * H + 1 && K4 <= 2 * H + 1,
            "kernel must fit the padded input"
        );
    }
    let dev = a.0.device().clone();
    let (ta, pa) = Part::new(a, Channels { first: 0, total: C });
    let (tb, pb) = Part::new(
        b,
        Channels {
            first: CO1,
            total: C,
        },
    );
    let (tc, pc) = Part::new(
        c,
        Channels {
            first: CO1 + CO2,
            total: C,
        },
    );
    let (td, pd) = Part::new(
        d,
        Channels {
            first: CO1 + CO2 + CO3,
            total: C,
        },
    );
    let parts = [pa, pb, pc, pd];
    let out = tensor_from::<Rank4<B, C, H, W>>(&dev, |out| {
        for p in &parts {
            let c = &p.conv;
            forward_into(&c.g, &c.xs, &c.ws, Some(&c.bs), out, p.ch, false);
        }
    });
    let mut tape = ta.merge(tb).merge(tc).merge(td);
    if T::OWNS_TAPE {
        let og = out.ghost();
        tape.add_backward_op(move |grads| {
            let gout = take(grads.get_or_alloc_mut(&og))?;
            for p in &parts {
                p.backward(grads, &gout)?;
            }
            put(grads.get_or_alloc_mut(&og), gout)
        });
    }
    out.put_tape(tape)
}

/// One branch's conv and where its channels go.
struct Part {
    conv: SavedConv,
    ch: Channels,
}

impl Part {
    fn new<
        const B: usize,
        const CI: usize,
        const H: usize,
        const W: usize,
        const CO: usize,
        const K: usize,
        T: Tape<f32, Cpu>,
    >(
        (x, weight, bias): Branch<'_, B, CI, H, W, CO, K, T>,
        ch: Channels,
    ) -> (T, Self) {
        let (x, tape) = x.split_tape();
        let g = Geometry::new(CI, H, W, CO, K, (K - 1) / 2);
        let conv = SavedConv::new(g, &x, weight, bias, true);
        (tape, Part { conv, ch })
    }

    /// Adds this branch's gradients for the concatenation's gradient `gout`.
    fn backward(&self, grads: &mut Gradients<f32, Cpu>, gout: &[f32]) -> Result<(), CpuError> {
        let g = &self.conv.g;
        let (own, total) = (g.out_len(), self.ch.total * g.pixels());
        let first = self.ch.first * g.pixels();
        // This branch's channels of every sample, packed as `conv::backward`
        // takes them.
        let mut part = Pooled::new(gout.len() / total * own);
        part.par_chunks_mut(own)
            .zip(gout.par_chunks(total))
            .for_each(|(dst, src)| dst.copy_from_slice(&src[first..][..own]));
        self.conv.backward(grads, &part)
    }
}
