//! Moving data between dfdx tensors and plain slices.
//!
//! dfdx 0.13's public API reads a tensor only by copy (`copy_into`), builds
//! one only from an owned `Vec`, and hands out one gradient `&mut` at a time.
//! With `Cpu::enable_cache` on, every dropped buffer goes into a cache keyed
//! by size and every allocation pops from it; the helpers here keep that
//! traffic balanced, so memory stays flat from step to step.

use dfdx::prelude::*;
use dfdx::tensor::CpuError;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A buffer from dfdx's allocator: zero-filled, and back to the cache when
/// dropped.
pub(crate) type Buf = <Cpu as Storage<f32>>::Vec;

/// A gradient slot as [`Gradients::get_or_alloc_mut`] returns it.
pub(crate) type Slot<'a> = Result<&'a mut Buf, CpuError>;

/// A tensor's gradient slot, its type erased: how an op that keeps several
/// inputs' gradients together reaches each.
pub(crate) type SlotOf = Box<dyn for<'g> Fn(&'g mut Gradients<f32, Cpu>) -> Slot<'g>>;

/// `len` zeros from dfdx's allocator. Like dfdx's own infallible ops, this
/// panics when the allocation fails.
pub(crate) fn alloc(dev: &Cpu, len: usize) -> Buf {
    dev.try_alloc_len(len).expect("out of memory")
}

/// A copy of `t`'s elements in standard (row-major) order, in a buffer of
/// our pool: it is overwritten at once, so dfdx's zero-fill would be a
/// wasted pass over it (a tenth of a ResNet step, with the outputs' fills).
pub(crate) fn read<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Pooled {
    let mut buf = Pooled::new(t.shape().num_elements());
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

/// A tape-less tensor holding a copy of `src`, on a buffer from the cache.
/// `tensor_from_vec` would wrap a fresh allocation that, once dropped,
/// joins the cache under a size nothing else asks for: a leak of one input
/// batch per step.
pub(crate) fn tensor_from_slice<S: ConstShape>(dev: &Cpu, src: &[f32]) -> Tensor<S, f32, Cpu> {
    tensor_from(dev, |data| data.copy_from_slice(src))
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

/// Free buffers of [`Pooled`], by length.
static POOL: Mutex<BTreeMap<usize, Vec<Vec<f32>>>> = Mutex::new(BTreeMap::new());

/// Scratch that no tensor ever owns, from a pool of our own rather than
/// dfdx's cache, which zero-fills every buffer it hands out, on one
/// thread: for a buffer that is then overwritten in parallel, that pass
/// would be the slowest part. Contents are unspecified when handed out;
/// the buffer goes back to the pool when dropped, so the pool holds no
/// more than was in use at once, as dfdx's cache does.
pub(crate) struct Pooled(Vec<f32>);

impl Pooled {
    /// `len` floats, from the pool when it has a buffer of that length.
    pub(crate) fn new(len: usize) -> Self {
        let reused = POOL
            .lock()
            .expect("buffer pool poisoned")
            .get_mut(&len)
            .and_then(Vec::pop);
        Pooled(reused.unwrap_or_else(|| vec![0.0; len]))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // After a panic elsewhere poisoned the lock, the buffer is freed.
        if let Ok(mut pool) = POOL.lock() {
            pool.entry(buf.len()).or_default().push(buf);
        }
    }
}

impl std::ops::Deref for Pooled {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// Frees the scratch kept from step to step (every thread's im2col buffers
/// and the pool), which is sized for the network that used it: call it when
/// that network is done, or the next one's buffers come on top.
pub(crate) fn release_scratch() {
    let clear = || SCRATCH.with(|s| *s.borrow_mut() = Default::default());
    rayon::broadcast(|_| clear());
    clear();
    if let Ok(mut pool) = POOL.lock() {
        pool.clear();
    }
}
