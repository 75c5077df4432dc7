//! The stack's high-water mark: paint the free stack with a pattern at boot,
//! and later find the lowest word that no longer holds it.
//!
//! flip-link gives the stack all RAM below the statics: from `_stack_end`
//! (the start of RAM) up to `_stack_start` (where `.data` begins).

use core::ptr::addr_of;

/// What unused stack words hold.
const PAINT: u32 = 0xCAFE_F00D;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

/// The stack region `[bottom, top)`: with flip-link, from the start of RAM
/// (`_stack_end`) up to the statics (`_stack_start`).
pub fn bounds() -> (usize, usize) {
    // Only the symbols' addresses are taken (no read: safe).
    (
        addr_of!(_stack_end) as usize,
        addr_of!(_stack_start) as usize,
    )
}

/// Paint every stack word below the current stack pointer. Call first
/// thing in `main`, before anything deep runs.
pub fn paint() {
    let (bottom, _) = bounds();
    // A Rust loop could itself spill to the stack below `sp`, into the
    // region it paints; this one uses registers only.
    // SAFETY: writes only words in [_stack_end, sp), which hold nothing:
    // no interrupt is enabled yet, and everything live is above sp.
    unsafe {
        core::arch::asm!(
            "mov {sp}, sp",
            "0:",
            "cmp {p}, {sp}",
            "bhs 1f",
            "str {v}, [{p}], #4",
            "b 0b",
            "1:",
            p = inout(reg) bottom => _,
            sp = out(reg) _,
            v = in(reg) PAINT,
            options(nostack),
        );
    }
}

/// `(used, size)`: the deepest the stack has been since [`paint`] (bytes
/// from the top of RAM to the lowest overwritten word) and its size.
pub fn usage() -> (u32, u32) {
    let (bottom, top) = bounds();
    let mut p = bottom;
    // SAFETY: reads words inside the stack region; volatile, because the
    // compiler does not know the stack changes under it.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    ((top - p) as u32, (top - bottom) as u32)
}
