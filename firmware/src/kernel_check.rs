//! At boot, the fast kernels against the plain references, on the
//! target: the host's tests run the kernels' portable path, this runs the
//! `SMLAD` assembly on shapes the networks do not have (every reduction
//! length modulo 4, windows read one kernel row at a time, padding up to
//! K - 1, partial tiles), with pseudo-random weights, data and
//! quantisation. The boot log says how many cases agreed byte for byte.
//! QEMU build only: each case instantiates its own unrolled kernels (about
//! 100 KB of code), which the board's flash budget does not carry.

use shared::kernels::dsp::{Quad, QUAD_WORDS};
use shared::kernels::tiled::scratch_quads;
use shared::kernels::{
    add_requant_s8, add_requant_s8_ref, avgpool3x3_s8, avgpool3x3_s8_ref, conv2d_add_pool_s8,
    conv2d_pool_s8, conv2d_s8, conv2d_s8_ref, linear_s8, linear_s8_ref, maxpool2d_s8_ref, ActRange,
    AddS8, ChannelOffset, Conv2dS8, LinearS8, OutputQuant,
};
use shared::quant::Requant;

/// The tests' seeded generator ([`shared::testutil::Rng`]), with the draws
/// this check needs: the assembly epilogue's shifts and clamps.
struct Rng(shared::testutil::Rng);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn i8(&mut self) -> i8 {
        self.next() as i8
    }
    fn fill(&mut self, xs: &mut [i8]) {
        for x in xs {
            *x = self.i8();
        }
    }
    /// A right shift (the assembly epilogue's form), or with `mixed`
    /// sometimes a left shift (which sends the layer to the portable one).
    fn requant(&mut self, mixed: bool) -> Requant {
        let m = (1 << 30) | (self.next() as i32 & 0x3fff_ffff);
        let shift = (self.next() % if mixed { 16 } else { 13 }) as i32 - 13;
        Requant::new(m, shift).unwrap_or(Requant::ONE)
    }
    /// ReLU or none (the assembly epilogue's clamps), sometimes a clamp
    /// below 127 (the portable one's).
    fn output(&mut self) -> OutputQuant {
        let zp = self.i8();
        match self.next() % 5 {
            0 | 1 => OutputQuant::relu(zp),
            2 | 3 => OutputQuant::linear(zp),
            _ => OutputQuant {
                zero_point: zp,
                range: ActRange::new(zp.min(0), 100).unwrap_or(ActRange::FULL),
            },
        }
    }
}

/// A random conv layer's owned parameters.
struct Layer<const CI: usize, const CO: usize, const K: usize> {
    weights: [[[[i8; CI]; K]; K]; CO],
    bias: [i32; CO],
    requant: [Requant; CO],
    zp: i8,
    output: OutputQuant,
}

impl<const CI: usize, const CO: usize, const K: usize> Layer<CI, CO, K> {
    fn random(rng: &mut Rng) -> Self {
        let mut weights = [[[[0i8; CI]; K]; K]; CO];
        for w in weights.iter_mut() {
            rng.fill(w.as_flattened_mut().as_flattened_mut());
        }
        Layer {
            weights,
            bias: core::array::from_fn(|_| (rng.next() as i32) >> 14),
            requant: {
                let mixed = rng.next() % 4 == 0;
                core::array::from_fn(|_| rng.requant(mixed))
            },
            zp: rng.i8(),
            output: rng.output(),
        }
    }
    fn kernel<const PAD: usize>(&self) -> Conv2dS8<'_, CI, CO, K, PAD> {
        Conv2dS8 {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
            input_zero_point: self.zp,
            output: self.output,
        }
    }
}

/// `conv2d_s8` against `conv2d_s8_ref`; `S` is `scratch_quads(CI, K)`.
/// Not inlined, so that the cases do not add up on the stack.
#[inline(never)]
fn conv<
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const PAD: usize,
    const HO: usize,
    const WO: usize,
    const S: usize,
>(
    rng: &mut Rng,
) -> bool {
    let layer = Layer::<CI, CO, K>::random(rng);
    let mut x = [[[0i8; CI]; W]; H];
    rng.fill(x.as_flattened_mut().as_flattened_mut());
    let mut fast = [[[0i8; CO]; WO]; HO];
    let mut slow = fast;
    let mut scratch = [[0u32; QUAD_WORDS]; S];
    conv2d_s8(
        &layer.kernel::<PAD>(),
        &x,
        &mut fast,
        ChannelOffset::<0>,
        &mut scratch,
    );
    conv2d_s8_ref(&layer.kernel::<PAD>(), &x, &mut slow, ChannelOffset::<0>);
    fast == slow
}

/// `conv2d_pool_s8`, `conv2d_add_pool_s8` and `add_requant_s8` against
/// the references composed, on a 6x6 map with 3x3 kernels (CI input
/// channels).
#[inline(never)]
fn fused<const CI: usize, const S: usize>(rng: &mut Rng) -> [bool; 3] {
    const CO: usize = 3;
    let layer = Layer::<CI, CO, 3>::random(rng);
    let k = layer.kernel::<1>();
    let mut x = [[[0i8; CI]; 6]; 6];
    rng.fill(x.as_flattened_mut().as_flattened_mut());
    let mut full = [[[0i8; CO]; 6]; 6];
    conv2d_s8_ref(&k, &x, &mut full, ChannelOffset::<0>);
    let mut scratch: [Quad; S] = [[0; QUAD_WORDS]; S];
    let range = ActRange::relu(rng.i8());

    let mut slow = [[[0i8; CO]; 3]; 3];
    maxpool2d_s8_ref(range, &full, &mut slow);
    let mut fast = slow;
    fast[0][0][0] = fast[0][0][0].wrapping_add(1);
    conv2d_pool_s8::<6, 6, CI, CO, 3, 1, 6, 6, 3, 3>(&k, range, &x, &mut fast, &mut scratch);
    let pooled = fast == slow;

    let add = AddS8 {
        a_zero_point: layer.output.zero_point,
        a: Requant::new((1 << 30) | (rng.next() as i32 & 0xfff_ffff), -1).unwrap_or(Requant::ONE),
        b_zero_point: rng.i8(),
        b: Requant::new((1 << 30) | (rng.next() as i32 & 0xfff_ffff), -1).unwrap_or(Requant::ONE),
        out: rng.requant(true),
        output: rng.output(),
    };
    let mut shortcut = [[[0i8; CO]; 6]; 6];
    rng.fill(shortcut.as_flattened_mut().as_flattened_mut());
    let mut sum = [[[0i8; CO]; 6]; 6];
    add_requant_s8_ref(&add, &full, &shortcut, &mut sum);
    let mut slow = [[[0i8; CO]; 3]; 3];
    maxpool2d_s8_ref(range, &sum, &mut slow);
    let mut fast = slow;
    fast[2][2][2] = fast[2][2][2].wrapping_add(1);
    let mut lut = [[0i32; 256]; 2];
    conv2d_add_pool_s8(
        (&k, &add),
        range,
        &x,
        &shortcut,
        &mut fast,
        (&mut scratch, &mut lut),
    );
    let add_pooled = fast == slow;

    let mut fast = sum;
    fast[1][1][1] = fast[1][1][1].wrapping_add(1);
    add_requant_s8(&add, &full, &shortcut, &mut fast, &mut lut);
    [pooled, add_pooled, fast == sum]
}

/// `linear_s8` (SMLAD blocks of eight, then a plain tail) against
/// `linear_s8_ref`.
#[inline(never)]
fn linear<const H: usize, const W: usize, const C: usize, const O: usize>(rng: &mut Rng) -> bool {
    let mut weights = [[[[0i8; C]; W]; H]; O];
    for w in weights.iter_mut() {
        rng.fill(w.as_flattened_mut().as_flattened_mut());
    }
    let bias: [i32; O] = core::array::from_fn(|_| (rng.next() as i32) >> 14);
    let requant: [Requant; O] = core::array::from_fn(|_| rng.requant(true));
    let layer = LinearS8 {
        weights: &weights,
        bias: &bias,
        requant: &requant,
        input_zero_point: rng.i8(),
        output: rng.output(),
    };
    let mut x = [[[0i8; C]; W]; H];
    rng.fill(x.as_flattened_mut().as_flattened_mut());
    let (mut fast, mut slow) = ([0i8; O], [0i8; O]);
    linear_s8(&layer, &x, &mut fast);
    linear_s8_ref(&layer, &x, &mut slow);
    fast == slow
}

/// `avgpool3x3_s8` (column sums in 16-bit halves) against
/// `avgpool3x3_s8_ref`.
#[inline(never)]
fn avgpool<const H: usize, const W: usize, const C: usize>(rng: &mut Rng) -> bool {
    let mut x = [[[0i8; C]; W]; H];
    rng.fill(x.as_flattened_mut().as_flattened_mut());
    let zp = rng.i8();
    let (mut fast, mut slow) = ([[[0i8; C]; W]; H], [[[1i8; C]; W]; H]);
    avgpool3x3_s8(zp, &x, &mut fast);
    avgpool3x3_s8_ref(zp, &x, &mut slow);
    fast == slow
}

/// Runs the check and logs its outcome (an error if any case differs).
pub fn log() {
    let (cases, equal) = run();
    if cases == equal {
        defmt::info!(
            "kernel check: {=u32} cases, fast kernels equal to the references",
            cases
        );
    } else {
        defmt::error!(
            "kernel check: {=u32} of {=u32} cases differ from the references",
            cases - equal,
            cases
        );
    }
}

/// Runs every case a few times; returns (cases, cases that agreed).
fn run() -> (u32, u32) {
    let mut rng = Rng(shared::testutil::Rng::new(0x2545_f491));
    let (mut cases, mut equal) = (0, 0);
    let mut count = |ok: bool| {
        cases += 1;
        equal += u32::from(ok);
    };
    for _ in 0..3 {
        // Reduction lengths 27 (3 mod 4), 7 (3), 50 (2), 72 (0), 300 (0);
        // 600 goes row by row (120 per row); partial last tiles.
        count(conv::<5, 7, 3, 5, 3, 1, 5, 7, { scratch_quads(3, 3) }>(
            &mut rng,
        ));
        count(conv::<6, 5, 7, 9, 1, 0, 6, 5, { scratch_quads(7, 1) }>(
            &mut rng,
        ));
        count(conv::<7, 4, 2, 4, 5, 2, 7, 4, { scratch_quads(2, 5) }>(
            &mut rng,
        ));
        count(conv::<4, 4, 8, 3, 3, 2, 6, 6, { scratch_quads(8, 3) }>(
            &mut rng,
        ));
        count(conv::<3, 8, 12, 2, 5, 2, 3, 8, { scratch_quads(12, 5) }>(
            &mut rng,
        ));
        count(conv::<6, 6, 24, 4, 5, 0, 2, 2, { scratch_quads(24, 5) }>(
            &mut rng,
        ));
        // One input channel: windows read as words inside the image,
        // gathered at the padding; the first with widened weights (72
        // pixels), the second without (20).
        count(conv::<8, 9, 1, 5, 3, 1, 8, 9, { scratch_quads(1, 3) }>(
            &mut rng,
        ));
        count(conv::<9, 8, 1, 4, 5, 0, 5, 4, { scratch_quads(1, 5) }>(
            &mut rng,
        ));
        for ok in fused::<5, { scratch_quads(5, 3) }>(&mut rng) {
            count(ok);
        }
        // Average pools: an even channel count, an odd one whose rows end
        // inside a word, and a single row.
        count(avgpool::<5, 6, 10>(&mut rng));
        count(avgpool::<4, 3, 7>(&mut rng));
        count(avgpool::<1, 5, 3>(&mut rng));
        // 63 values: seven SMLAD blocks of eight and a tail of seven.
        count(linear::<3, 3, 7, 5>(&mut rng));
    }
    (cases, equal)
}
