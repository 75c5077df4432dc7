//! Learning-rate schedules, per optimisation step.

use std::f64::consts::PI;

/// How the learning rate moves over a run.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The base rate throughout (the seed's recipe).
    Constant,
    /// A short linear warm-up, then a cosine decay to 1% of the base rate:
    /// the late small steps are what lift accuracy past a constant rate's plateau.
    Cosine,
}

/// Steps of linear warm-up for [`Schedule::Cosine`].
const WARMUP_STEPS: usize = 100;
/// Where the cosine decay ends, as a fraction of the base rate.
const FINAL_FRACTION: f64 = 0.01;

impl Schedule {
    /// The learning rate at `step` of `total` steps.
    pub fn lr(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let warmup = WARMUP_STEPS.min(total / 10);
                if step < warmup {
                    return base * (step + 1) as f64 / warmup as f64;
                }
                let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
                let cos = 0.5 * (1.0 + (PI * progress.min(1.0)).cos());
                base * (FINAL_FRACTION + (1.0 - FINAL_FRACTION) * cos)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_then_decays_to_its_floor() {
        let s = Schedule::Cosine;
        assert!(s.lr(1.0, 0, 10_000) < 0.02);
        assert!((s.lr(1.0, WARMUP_STEPS - 1, 10_000) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 9_999, 10_000) - FINAL_FRACTION).abs() < 1e-6);
        let mid = s.lr(1.0, WARMUP_STEPS + (10_000 - WARMUP_STEPS) / 2, 10_000);
        assert!((mid - (FINAL_FRACTION + 1.0) / 2.0).abs() < 1e-3, "{mid}");
    }

    #[test]
    fn constant_is_constant() {
        assert_eq!(Schedule::Constant.lr(0.01, 5, 10), 0.01);
    }
}
