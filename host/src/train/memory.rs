//! The process's peak resident memory (Linux `/proc`), over the whole run
//! and over a stretch of it, such as one epoch: the kernel's high-water
//! mark (`VmHWM`) can be reset, so each epoch's own peak shows whether
//! memory grows from one to the next. Elsewhere the figures are `None`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The highest mark seen before the last reset, in KiB: a reset must not
/// lose the run's peak.
static BEFORE_RESET_KIB: AtomicU64 = AtomicU64::new(0);

fn high_water_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Starts a new stretch: [`peak_since_reset_mib`] then measures from the
/// memory resident now. Returns false where the mark cannot be reset.
pub fn reset_peak() -> bool {
    let Some(kib) = high_water_kib() else {
        return false;
    };
    BEFORE_RESET_KIB.fetch_max(kib, Ordering::Relaxed);
    // Writing 5 to clear_refs resets VmHWM to the current resident size.
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident memory since the last [`reset_peak`] (or since the
/// process started), in MiB.
pub fn peak_since_reset_mib() -> Option<f64> {
    high_water_kib().map(mib)
}

/// The peak resident memory of the whole process so far, in MiB.
pub fn run_peak_mib() -> Option<f64> {
    high_water_kib().map(|kib| mib(kib.max(BEFORE_RESET_KIB.load(Ordering::Relaxed))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_starts_a_new_stretch_but_keeps_the_run_peak() {
        let Some(_) = run_peak_mib() else { return }; // not Linux
        let block = vec![1u8; 1 << 30];
        std::hint::black_box(&block);
        let with_block = peak_since_reset_mib().unwrap();
        drop(block);
        assert!(reset_peak(), "VmHWM could not be reset");
        let after = peak_since_reset_mib().unwrap();
        // Other tests run in this process too: compare with a wide margin.
        assert!(
            after < with_block - 512.0,
            "{after} MiB after the reset, {with_block} MiB before"
        );
        // The kernel counts resident pages per thread in batches: allow 1 MiB.
        let run_peak = run_peak_mib().unwrap();
        assert!(
            run_peak >= with_block - 1.0,
            "run peak {run_peak} MiB, {with_block} MiB with the block"
        );
    }
}
