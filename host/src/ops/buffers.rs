//! Moving data between dfdx tensors and plain slices.
//!
//! dfdx 0.13's public API reads a tensor only by copy (`copy_into`), builds
//! one only from an owned `Vec`, and hands out one gradient `&mut` at a time.
//! With `Cpu::enable_cache` on, every dropped buffer goes into a cache keyed
//! by size and every allocation pops from it; the helpers here keep that
//! traffic balanced, so memory stays flat from step to step.

use dfdx::prelude::*;
use dfdx::tensor::CpuError;

/// A buffer from dfdx's allocator: zero-filled, and back to the cache when
/// dropped.
pub(crate) type Buf = <Cpu as Storage<f32>>::Vec;

/// A gradient slot as [`Gradients::get_or_alloc_mut`] returns it.
pub(crate) type Slot<'a> = Result<&'a mut Buf, CpuError>;

/// `len` zeros from dfdx's allocator. Like dfdx's own infallible ops, this
/// panics when the allocation fails.
pub(crate) fn alloc(dev: &Cpu, len: usize) -> Buf {
    dev.try_alloc_len(len).expect("out of memory")
}

/// A copy of `t`'s elements in standard (row-major) order.
pub(crate) fn read<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Buf {
    let mut buf = alloc(t.device(), t.shape().num_elements());
    // `contiguous` costs nothing for the standard layout every op here and
    // dfdx's elementwise ops produce; a broadcast or permuted view is copied.
    t.retaped::<NoneTape>().contiguous().copy_into(&mut buf);
    buf
}

/// A tape-less tensor on a buffer from the cache, which `fill` receives
/// zero-filled.
pub(crate) fn tensor_from<S: ConstShape>(
    dev: &Cpu,
    fill: impl FnOnce(&mut [f32]),
) -> Tensor<S, f32, Cpu> {
    let mut shell = alloc(dev, S::NUMEL);
    let mut data: Vec<f32> = std::mem::take(&mut shell);
    // Dropped, the emptied shell would enter the cache as a zero-length
    // entry that nothing ever pops: one more per call, forever. Its only
    // resource is a reference count on the cache, so forget it instead.
    std::mem::forget(shell);
    fill(&mut data);
    dev.tensor_from_vec(data, S::default())
}

/// Moves a gradient out of its slot so that several can be used at once;
/// every taken buffer must go back with [`put`] (dropped, its memory would
/// leave the cache and the slot would be empty).
pub(crate) fn take(slot: Slot<'_>) -> Result<Vec<f32>, CpuError> {
    Ok(std::mem::take(&mut **slot?))
}

/// Returns a buffer taken with [`take`] to its slot.
pub(crate) fn put(slot: Slot<'_>, buf: Vec<f32>) -> Result<(), CpuError> {
    **slot? = buf;
    Ok(())
}

thread_local! {
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 3]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` on three per-thread scratch buffers of the given lengths
/// (contents unspecified). They persist across calls, so im2col columns
/// cost neither allocation nor page faults after the first step.
pub(crate) fn with_scratch<R>(
    lens: [usize; 3],
    f: impl FnOnce(&mut [f32], &mut [f32], &mut [f32]) -> R,
) -> R {
    SCRATCH.with(|s| {
        let bufs = &mut *s.borrow_mut();
        for (buf, &len) in bufs.iter_mut().zip(&lens) {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
        let [a, b, c] = bufs;
        f(&mut a[..lens[0]], &mut b[..lens[1]], &mut c[..lens[2]])
    })
}
