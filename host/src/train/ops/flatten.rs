//! Flattening NCHW maps to `[B, C*H*W]` in (C, H, W) order, PyTorch's
//! `flatten(1)`, in front of a Linear layer.

use dfdx::prelude::*;

/// `[B, C, H, W]` to `[B, F]` with `F = C*H*W` (a const assertion). This is
/// dfdx's reshape: free for a tensor in standard layout (the data and the
/// gradient are shared, no backward op), a copy otherwise.
pub fn flatten<
    const B: usize,
    const C: usize,
    const H: usize,
    const W: usize,
    const F: usize,
    T: Tape<f32, Cpu>,
>(
    x: Tensor<Rank4<B, C, H, W>, f32, Cpu, T>,
) -> Tensor<Rank2<B, F>, f32, Cpu, T> {
    const {
        assert!(F == C * H * W, "flattened length must be C*H*W");
    }
    x.reshape()
}
