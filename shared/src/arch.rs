//! The networks' sizes: channel counts and kernel sides, the constants that
//! both each network's graph ([`crate::graph`]) and its typed code (the
//! trainer's dfdx module, the int8 forward pass) are written with. Every
//! derived size (feature map sides, concat widths, flatten lengths) is
//! computed here by `const fn`, never typed by hand; the graphs compute the
//! same sizes, and the typed code is checked against them.

/// Side of an MNIST image in pixels.
pub const IMAGE_SIDE: usize = 28;
/// Pixels in one image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Output classes (digits 0-9).
pub const CLASSES: usize = 10;
/// Normalisation mean applied to `pixel / 255`.
pub const PIXEL_MEAN: f32 = 0.1307;
/// Normalisation standard deviation applied after the mean.
pub const PIXEL_STD: f32 = 0.3081;

/// Normalise one raw pixel the way both networks expect their input.
pub fn normalize_pixel(p: u8) -> f32 {
    (p as f32 / 255.0 - PIXEL_MEAN) / PIXEL_STD
}

/// Output side of a stride-1 convolution with kernel `k` and zero padding `pad`.
pub const fn conv_out(side: usize, k: usize, pad: usize) -> usize {
    side + 2 * pad - k + 1
}

/// Output side of a 2x2, stride-2 max pool (floor, as PyTorch does).
pub const fn pool2_out(side: usize) -> usize {
    side / 2
}

/// The Inception module (PyTorch's `InceptionA`): four branches, no activation
/// inside, concatenated along channels in the order b1, b5, b3, bp.
pub mod inception_a {
    /// Output channels of the 1x1 branch `b1`.
    pub const B1: usize = 16;
    /// Channels of the 1x1 reducer in front of the 5x5 (`b5_1`).
    pub const B5_REDUCE: usize = 16;
    /// Output channels of the 5x5 branch (`b5_2`).
    pub const B5: usize = 24;
    /// Channels of the 1x1 reducer in front of the 3x3 pair (`b3_1`).
    pub const B3_REDUCE: usize = 16;
    /// Output channels of both 3x3 convs (`b3_2`, `b3_3`).
    pub const B3: usize = 24;
    /// Output channels of the pool branch's 1x1 (`bp`).
    pub const BP: usize = 24;
    /// Concatenated output channels.
    pub const OUT: usize = B1 + B5 + B3 + BP;
}

/// The GoogLeNet-style network: conv1, pool, incep1, conv2, pool, incep2, fc.
pub mod inception {
    use super::*;

    /// conv1 output channels.
    pub const C1: usize = 10;
    /// conv1 kernel side.
    pub const K1: usize = 5;
    /// Side after conv1.
    pub const S1: usize = conv_out(IMAGE_SIDE, K1, 0);
    /// Side after the first pool (input side of incep1).
    pub const P1: usize = pool2_out(S1);
    /// conv2 output channels.
    pub const C2: usize = 20;
    /// conv2 kernel side.
    pub const K2: usize = 5;
    /// Side after conv2.
    pub const S2: usize = conv_out(P1, K2, 0);
    /// Side after the second pool (input side of incep2).
    pub const P2: usize = pool2_out(S2);
    /// Channels after each Inception module.
    pub const INCEP_OUT: usize = inception_a::OUT;
    /// Length of the flattened (C, H, W) features in front of fc.
    pub const FLAT: usize = INCEP_OUT * P2 * P2;
}

/// The seed's ResNet: two projection "identity blocks", each followed by
/// a 2x2 max pool and ReLU, then fc.
pub mod resnet {
    use super::*;

    /// Kernel side of every conv in a block.
    pub const K: usize = 3;
    /// Padding of every conv in a block (keeps the side).
    pub const PAD: usize = 1;
    /// Output channels of block r1.
    pub const C1: usize = 10;
    /// Output channels of block r2.
    pub const C2: usize = 20;
    /// Side after r1 and its pool.
    pub const P1: usize = pool2_out(IMAGE_SIDE);
    /// Side after r2 and its pool.
    pub const P2: usize = pool2_out(P1);
    /// Length of the flattened features in front of fc.
    pub const FLAT: usize = C2 * P2 * P2;
}

/// The lecture's residual network: a 5x5 conv stem before each of two
/// residual blocks with identity shortcuts, then fc.
pub mod resnet_identity {
    use super::*;

    /// Kernel side of the two stem convs (conv1, conv2).
    pub const K_STEM: usize = 5;
    /// Kernel side of every conv in a residual block.
    pub const K: usize = 3;
    /// Padding of every conv in a residual block (keeps the side).
    pub const PAD: usize = 1;
    /// conv1 output channels (and block rb1's).
    pub const C1: usize = 16;
    /// conv2 output channels (and block rb2's).
    pub const C2: usize = 32;
    /// Side after conv1.
    pub const S1: usize = conv_out(IMAGE_SIDE, K_STEM, 0);
    /// Side after the first pool: rb1's.
    pub const P1: usize = pool2_out(S1);
    /// Side after conv2.
    pub const S2: usize = conv_out(P1, K_STEM, 0);
    /// Side after the second pool: rb2's.
    pub const P2: usize = pool2_out(S2);
    /// Length of the flattened features in front of fc.
    pub const FLAT: usize = C2 * P2 * P2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_sizes_match_the_pytorch_reference() {
        assert_eq!(inception::FLAT, 1408);
        assert_eq!(resnet::FLAT, 980);
        assert_eq!(resnet_identity::FLAT, 512);
    }
}
