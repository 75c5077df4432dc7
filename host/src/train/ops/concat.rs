//! Concatenation of NCHW tensors along channels (the Inception module's
//! branch merge). The output's channel count is a const parameter that a
//! const assertion proves equal to the sum of the parts'.

use super::buffers::{put, read, take, tensor_from, Slot};
use dfdx::prelude::*;
use dfdx::tensor::CpuError;
use rayon::prelude::*;

/// `[a, b]` along channels: `C = C1 + C2`.
#[cfg(test)] // the networks concatenate four branches
pub fn concat2<
    const B: usize,
    const C1: usize,
    const C2: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    T: Tape<f32, Cpu>,
>(
    a: Tensor<Rank4<B, C1, H, W>, f32, Cpu, T>,
    b: Tensor<Rank4<B, C2, H, W>, f32, Cpu, T>,
) -> Tensor<Rank4<B, C, H, W>, f32, Cpu, T> {
    const {
        assert!(
            C == C1 + C2,
            "concat output channels must be the sum of the parts'"
        );
    }
    let ((a, ta), (b, tb)) = (a.split_tape(), b.split_tape());
    let parts = [read(&a), read(&b)];
    let out =
        tensor_from::<Rank4<B, C, H, W>>(a.device(), |out| join(&parts, &[C1, C2], H * W, out));
    drop(parts);
    let mut tape = ta.merge(tb);
    if T::OWNS_TAPE {
        let (ag, bg, og) = (a.ghost(), b.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gout = take(grads.get_or_alloc_mut(&og))?;
            add_part(grads, |g| g.get_or_alloc_mut(&ag), &gout, C, 0, C1, H * W)?;
            add_part(grads, |g| g.get_or_alloc_mut(&bg), &gout, C, C1, C2, H * W)?;
            put(grads.get_or_alloc_mut(&og), gout)
        });
    }
    out.put_tape(tape)
}

/// `[a, b, c, d]` along channels: `C = C1 + C2 + C3 + C4`.
#[allow(clippy::type_complexity)]
pub fn concat4<
    const B: usize,
    const C1: usize,
    const C2: usize,
    const C3: usize,
    const C4: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    T: Tape<f32, Cpu>,
>(
    a: Tensor<Rank4<B, C1, H, W>, f32, Cpu, T>,
    b: Tensor<Rank4<B, C2, H, W>, f32, Cpu, T>,
    c: Tensor<Rank4<B, C3, H, W>, f32, Cpu, T>,
    d: Tensor<Rank4<B, C4, H, W>, f32, Cpu, T>,
) -> Tensor<Rank4<B, C, H, W>, f32, Cpu, T> {
    const {
        assert!(
            C == C1 + C2 + C3 + C4,
            "concat output channels must be the sum of the parts'"
        );
    }
    let ((a, ta), (b, tb), (c, tc), (d, td)) = (
        a.split_tape(),
        b.split_tape(),
        c.split_tape(),
        d.split_tape(),
    );
    let parts = [read(&a), read(&b), read(&c), read(&d)];
    let out = tensor_from::<Rank4<B, C, H, W>>(a.device(), |out| {
        join(&parts, &[C1, C2, C3, C4], H * W, out)
    });
    drop(parts);
    let mut tape = ta.merge(tb).merge(tc).merge(td);
    if T::OWNS_TAPE {
        let (ag, bg, cg, dg, og) = (a.ghost(), b.ghost(), c.ghost(), d.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let gout = take(grads.get_or_alloc_mut(&og))?;
            add_part(grads, |g| g.get_or_alloc_mut(&ag), &gout, C, 0, C1, H * W)?;
            add_part(grads, |g| g.get_or_alloc_mut(&bg), &gout, C, C1, C2, H * W)?;
            add_part(
                grads,
                |g| g.get_or_alloc_mut(&cg),
                &gout,
                C,
                C1 + C2,
                C3,
                H * W,
            )?;
            add_part(
                grads,
                |g| g.get_or_alloc_mut(&dg),
                &gout,
                C,
                C1 + C2 + C3,
                C4,
                H * W,
            )?;
            put(grads.get_or_alloc_mut(&og), gout)
        });
    }
    out.put_tape(tape)
}

/// Copies each sample's channel blocks of `parts` (with `channels` each)
/// one after the other into `out`.
fn join(
    parts: &[impl std::ops::Deref<Target = [f32]> + Sync],
    channels: &[usize],
    plane: usize,
    out: &mut [f32],
) {
    let total: usize = channels.iter().sum();
    out.par_chunks_mut(total * plane)
        .enumerate()
        .for_each(|(s, o)| {
            let mut offset = 0;
            for (part, &c) in parts.iter().zip(channels) {
                let block = c * plane;
                o[offset..offset + block].copy_from_slice(&part[s * block..][..block]);
                offset += block;
            }
        });
}

/// Adds channels `offset..offset + channels` of `gout` (with `c` channels)
/// into one part's gradient. Parts go one at a time, so a tensor passed as
/// two parts is never taken out of the gradients twice.
fn add_part<F>(
    grads: &mut Gradients<f32, Cpu>,
    slot: F,
    gout: &[f32],
    c: usize,
    offset: usize,
    channels: usize,
    plane: usize,
) -> Result<(), CpuError>
where
    F: for<'g> Fn(&'g mut Gradients<f32, Cpu>) -> Slot<'g>,
{
    let mut g = take(slot(grads))?;
    let block = channels * plane;
    g.par_chunks_mut(block)
        .zip(gout.par_chunks(c * plane))
        .for_each(|(g, o)| {
            g.iter_mut()
                .zip(&o[offset * plane..][..block])
                .for_each(|(g, o)| *g += o);
        });
    put(slot(grads), g)
}
