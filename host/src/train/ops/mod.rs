//! Convolution, pooling, concat and flatten as dfdx tape ops, on stable Rust.
//!
//! dfdx 0.13 keeps its own conv and pool ops behind the `nightly` feature,
//! which does not build on stable Rust, so these are ours: forward and
//! backward on the CPU, registered with [`Tape::add_backward_op`], every
//! shape a const generic and every derived size proven by a const assertion
//! (which fires at `cargo build`, not at `cargo check`).
//!
//! Layouts are PyTorch's: activations NCHW, conv weights OIHW. A ReLU that
//! follows a conv, a max pool or a residual sum is fused into that op
//! (`*_relu`): dfdx's elementwise ops are single-threaded and slow here. A
//! residual block's sum is fused into its last conv ([`conv2d_add_relu`]),
//! and with the max pool after it ([`conv2d_add_relu_maxpool`]), so that
//! maps nothing else reads never become tensors. Convs run by im2col and
//! `gemm`, or by a direct conv (`direct`) that gives `gemm`'s bits where it
//! can; no fusion here changes a bit of what training computes.
//! Linear, the loss and Adam are dfdx's own. The Inception merge is one op
//! ([`conv2d_concat4`]): each branch's last conv writes its slice of the
//! concatenation, with no separate outputs to allocate, read and join.
//!
//! Inputs may be any tensor (a non-standard layout is copied into standard
//! order first). Parameters carry no tape: their gradients are accumulated
//! into the [`Gradients`] under their ids, as dfdx's own layers do.
//!
//! Call `dev.enable_cache()` on the device before training: the ops take
//! their output and saved buffers from dfdx's allocation cache, so with the
//! cache on, memory stays flat from step to step and no step pays for fresh
//! zero-filled pages. Scratch that never becomes a tensor comes from
//! per-thread buffers or a pool of our own, which skip the cache's
//! zero-fill.
//!
//! [`Tape::add_backward_op`]: dfdx::tensor::Tape::add_backward_op
//! [`Gradients`]: dfdx::tensor::Gradients

mod buffers;
mod concat;
mod conv;
mod conv_concat;
mod direct;
mod flatten;
mod im2col;
mod matmul;
mod pool;
mod relu;
mod sample;

pub(crate) use buffers::{alloc, release_scratch, tensor_from_slice, Buf};
#[cfg(test)]
pub(crate) use concat::concat2;
pub(crate) use concat::concat4;
pub use conv::{
    conv2d, conv2d_add_relu, conv2d_add_relu_maxpool, conv2d_first, conv2d_first_relu, conv2d_relu,
};
pub use conv_concat::{conv2d_concat4, Branch};
pub use flatten::flatten;
pub use pool::{avgpool3x3, maxpool2d, maxpool2d_relu};

#[cfg(test)]
mod tests;
pub mod timing;
