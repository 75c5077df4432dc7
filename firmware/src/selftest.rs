//! The boot self-test: ten MNIST test digits, one per class, through every
//! served network, each prediction and its cost logged. The host's test
//! decodes the log and checks every line against its own computation.

use crate::selftest_digits::DIGITS;
use shared::arch::IMAGE_PIXELS;
use shared::nets::{Arena, Prediction, ARENA_BYTES};
use shared::server::{CostCounter, Networks};
use shared::NetId;

/// One embedded test image.
pub struct Digit {
    /// Its index in the MNIST test set.
    pub index: u16,
    /// Its label.
    pub label: u8,
    /// Raw pixels, row-major.
    pub pixels: [u8; IMAGE_PIXELS],
}

/// Classify every digit with every served network and log the results.
pub fn run<C: CostCounter>(models: &impl Networks, arena: &mut Arena<ARENA_BYTES>, counter: &C) {
    let unit = C::UNIT.name();
    for net in NetId::ALL {
        let mut correct = 0u32;
        let mut total = 0u64;
        for d in DIGITS.iter() {
            let (logits, cost) = counter.measure(|| models.infer(net, &d.pixels, arena, &mut ()));
            let Ok(logits) = logits else {
                defmt::warn!(
                    "self-test {=str}: skipped, the model was refused",
                    net.name()
                );
                break;
            };
            let p = Prediction::from_logits(logits);
            correct += u32::from(p.class == d.label);
            total += u64::from(cost);
            defmt::info!(
                "self-test {=str}: test image {=u16} label {=u8} predicted {=u8} logits {=[?]} cost {=u32} {=str}",
                net.name(),
                d.index,
                d.label,
                p.class,
                &p.logits[..],
                cost,
                unit
            );
        }
        if total > 0 {
            defmt::info!(
                "self-test {=str}: {=u32}/{=usize} correct, {=u64} {=str} per inference on average",
                net.name(),
                correct,
                DIGITS.len(),
                total / DIGITS.len() as u64,
                unit
            );
        }
    }
}
