//! `cfg(arm_dsp)` on targets with the Armv7E-M DSP extension (Cortex-M4 and
//! M7: `thumbv7em-*`), where the kernels use `SMLAD` and friends. rustc does
//! not expose `target_feature = "dsp"` to `cfg` on stable.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(arm_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") {
        println!("cargo::rustc-cfg=arm_dsp");
    }
}
