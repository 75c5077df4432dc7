//! Measuring what an inference costs, with whatever counter the board has
//! (instructions under QEMU, cycles on a board).

use shared::nets::Probe;
use shared::protocol::{CostUnit, LayerCost, LayerCosts};

/// A free-running 32-bit counter; differences are taken with wrapping
/// arithmetic, so one wrap between two readings is harmless.
pub trait CostCounter {
    /// What it counts.
    const UNIT: CostUnit;

    /// The current count.
    fn now(&self) -> u32;

    /// Run `f` and return its result with the count it took.
    #[inline(always)]
    fn measure<R>(&self, f: impl FnOnce() -> R) -> (R, u32) {
        let start = self.now();
        let result = f();
        (result, self.now().wrapping_sub(start))
    }
}

/// A [`Probe`] that records the count each step of a forward pass took.
pub struct LayerTimer<'c, C: CostCounter> {
    counter: &'c C,
    last: u32,
    /// The steps so far, in order.
    pub layers: LayerCosts<&'static str>,
}

impl<'c, C: CostCounter> LayerTimer<'c, C> {
    /// Start timing now: the first step's cost runs from here.
    pub fn start(counter: &'c C) -> Self {
        LayerTimer {
            counter,
            last: counter.now(),
            layers: LayerCosts::new(),
        }
    }
}

impl<C: CostCounter> Probe for LayerTimer<'_, C> {
    fn layer(&mut self, name: &'static str) {
        let now = self.counter.now();
        let cost = now.wrapping_sub(self.last);
        // The capacity is the longest plan (shared::protocol::MAX_LAYERS):
        // a push cannot fail, and if it did the profile would merely be short.
        let _ = self.layers.push(LayerCost { name, cost });
        // Excludes the bookkeeping above from the next step.
        self.last = self.counter.now();
    }
}
