//! Both networks' shapes, from GUIDE section 1. Every derived size (feature
//! map sides, concat widths, flatten lengths) is computed here by `const fn`,
//! never typed by hand, so host and firmware cannot disagree.

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

/// Parameter count of a conv with bias.
pub const fn conv_params(cin: usize, cout: usize, k: usize) -> usize {
    cout * cin * k * k + cout
}

/// The Inception module (GUIDE "InceptionA"): four branches, no activation
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

    /// Parameters of one module with `cin` input channels.
    pub const fn params(cin: usize) -> usize {
        use super::conv_params;
        conv_params(cin, B1, 1)
            + conv_params(cin, B5_REDUCE, 1)
            + conv_params(B5_REDUCE, B5, 5)
            + conv_params(cin, B3_REDUCE, 1)
            + conv_params(B3_REDUCE, B3, 3)
            + conv_params(B3, B3, 3)
            + conv_params(cin, BP, 1)
    }
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
    /// Trainable parameters.
    pub const PARAMS: usize = conv_params(1, C1, K1)
        + inception_a::params(C1)
        + conv_params(INCEP_OUT, C2, K2)
        + inception_a::params(C2)
        + FLAT * CLASSES
        + CLASSES;
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

    /// Parameters of a block `cin -> cout` (conv1 cin->cin, conv2 and the
    /// shortcut conv cin->cout, all 3x3).
    pub const fn block_params(cin: usize, cout: usize) -> usize {
        conv_params(cin, cin, K) + 2 * conv_params(cin, cout, K)
    }

    /// Trainable parameters.
    pub const PARAMS: usize =
        block_params(1, C1) + block_params(C1, C2) + FLAT * CLASSES + CLASSES;
}

#[cfg(test)]
mod tests {
    use super::*;

    // The guide states these totals; they come from PyTorch's parameter count.
    #[test]
    fn parameter_counts_match_the_pytorch_reference() {
        assert_eq!(inception::PARAMS, 97_298);
        assert_eq!(resnet::PARAMS, 14_570);
    }

    #[test]
    fn flatten_sizes_match_the_pytorch_reference() {
        assert_eq!(inception::FLAT, 1408);
        assert_eq!(resnet::FLAT, 980);
    }
}
