//! When the firmware fails: the HardFault and panic handlers. Each logs
//! what happened (defmt), tells the host over USART1 if it can (a
//! [`Response::Fault`] frame, which the host client prints), and then ends
//! the run: a board resets, QEMU exits with status 1.
//!
//! A stack overflow is a HardFault too: flip-link puts the stack at the
//! bottom of RAM, below the statics, so the push that overflows it writes
//! below RAM and faults instead of overwriting the decoded models or the
//! arena. The stack pointer is then unusable (the processor could not even
//! stack the exception frame), so the handler's first instructions, in
//! assembly, move it back to the top of the stack region before any Rust
//! runs.

use core::fmt::Write as _;
use core::ptr::read_volatile;
use core::sync::atomic::{AtomicBool, Ordering};
use shared::protocol::{encode, Fault, FaultKind, Response, MAX_FRAME};
use stm32f4xx_hal::pac;

core::arch::global_asm!(
    ".section .HardFaultTrampoline, \"ax\"",
    ".global HardFault",
    ".type HardFault, %function",
    ".thumb_func",
    "HardFault:",
    // The stack pointer at the fault: the exception frame, if it could be
    // stacked. Then a fresh stack, and the report.
    "mrs r0, msp",
    "ldr r1, ={top}",
    "msr msp, r1",
    "b {report}",
    ".ltorg",
    top = sym _stack_start,
    report = sym hard_fault,
);

extern "C" {
    static _stack_start: u32;
}

/// The System Control Block's fault status and address registers.
const CFSR: *const u32 = 0xE000_ED28 as *const u32;
const HFSR: *const u32 = 0xE000_ED2C as *const u32;
const MMFAR: *const u32 = 0xE000_ED34 as *const u32;
const BFAR: *const u32 = 0xE000_ED38 as *const u32;
/// CFSR bits: a bus fault or a memory fault while stacking the exception
/// frame (the stack pointer was out of RAM), and valid fault addresses.
const STKERR: u32 = 1 << 12;
const MSTKERR: u32 = 1 << 4;
const BFARVALID: u32 = 1 << 15;
const MMARVALID: u32 = 1 << 7;

/// What the CFSR's first set status bit means (usage, bus and memory
/// faults; the valid-address bits are not causes).
fn cause(cfsr: u32) -> &'static str {
    const CAUSES: [(u32, &str); 14] = [
        (16, "undefined instruction"),
        (17, "invalid state (not Thumb)"),
        (18, "invalid PC on exception return"),
        (19, "no coprocessor"),
        (24, "unaligned access"),
        (25, "division by zero"),
        (12, "bus error while stacking the exception frame"),
        (11, "bus error while unstacking"),
        (9, "precise data bus error"),
        (10, "imprecise data bus error"),
        (8, "instruction bus error"),
        (4, "memory fault while stacking the exception frame"),
        (1, "data access violation"),
        (0, "instruction access violation"),
    ];
    CAUSES
        .iter()
        .find(|&&(bit, _)| cfsr & (1 << bit) != 0)
        .map_or("forced HardFault", |&(_, why)| why)
}

/// `sp`: the stack pointer when the fault was taken.
extern "C" fn hard_fault(sp: u32) -> ! {
    // SAFETY: reads of the SCB's fault registers, always mapped.
    let (cfsr, hfsr, mmfar, bfar) = unsafe {
        (
            read_volatile(CFSR),
            read_volatile(HFSR),
            read_volatile(MMFAR),
            read_volatile(BFAR),
        )
    };
    let (bottom, top) = crate::stack::bounds();
    let stacked = sp as usize >= bottom && sp as usize + 32 <= top;
    // The exception frame: r0-r3, r12, lr, pc, xpsr.
    // SAFETY: inside the stack region, checked just above.
    let pc = if stacked {
        unsafe { read_volatile((sp + 24) as *const u32) }
    } else {
        0
    };
    let overflow = !stacked || cfsr & (STKERR | MSTKERR) != 0;
    let address = if cfsr & BFARVALID != 0 {
        bfar
    } else if cfsr & MMARVALID != 0 {
        mmfar
    } else {
        0
    };
    // The registers go to the log (formatted on the host), the cause to
    // both.
    defmt::error!(
        "fault status: CFSR {=u32:#010x}, HFSR {=u32:#010x}, SP {=u32:#010x}",
        cfsr,
        hfsr,
        sp
    );
    let kind = if overflow {
        FaultKind::StackOverflow
    } else {
        FaultKind::HardFault
    };
    report(Fault {
        kind,
        pc,
        address,
        message: cause(cfsr),
    })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut message = heapless::String::<160>::new();
    // Cut short if longer: what fits is reported.
    let _ = write!(message, "{info}");
    report(Fault {
        kind: FaultKind::Panic,
        pc: 0,
        address: 0,
        message: &message,
    })
}

/// Set while a fault is reported: a second fault in the report ends the
/// run at once.
static REPORTING: AtomicBool = AtomicBool::new(false);

fn report(fault: Fault<&str>) -> ! {
    if REPORTING.swap(true, Ordering::Relaxed) {
        crate::board::after_fault();
    }
    match fault.kind {
        FaultKind::Panic => defmt::error!("panic: {=str}", fault.message),
        FaultKind::HardFault => defmt::error!(
            "HardFault at PC {=u32:#010x}, address {=u32:#010x}: {=str}",
            fault.pc,
            fault.address,
            fault.message
        ),
        FaultKind::StackOverflow => defmt::error!(
            "stack overflow: the stack ran out of RAM (address {=u32:#010x}): {=str}",
            fault.address,
            fault.message
        ),
    }
    let mut buf = [0u8; MAX_FRAME];
    if let Ok(frame) = encode(&Response::Fault(fault), &mut buf) {
        send(frame);
    }
    crate::board::after_fault()
}

/// Writes `bytes` to USART1 by its registers (the server owns the HAL's
/// handle, and may have been mid-write), if the port is enabled; gives up
/// on a byte the transmitter does not take in time.
fn send(bytes: &[u8]) {
    // SAFETY: USART1's registers; the server is not running any more.
    let usart = unsafe { &*pac::USART1::ptr() };
    if usart.cr1().read().ue().bit_is_clear() {
        return;
    }
    for &b in bytes {
        let mut spins = 0u32;
        while usart.sr().read().txe().bit_is_clear() {
            spins += 1;
            if spins > 1_000_000 {
                return;
            }
        }
        usart.dr().write(|w| w.dr().set(u16::from(b)));
    }
    let mut spins = 0u32;
    while usart.sr().read().tc().bit_is_clear() && spins < 1_000_000 {
        spins += 1;
    }
}

/// What [`shared::protocol::Request::Crash`] does in a build with fault
/// injection (never a board build): the failure asked for.
#[cfg(feature = "fault-injection")]
pub fn crash(how: FaultKind) -> ! {
    match how {
        FaultKind::Panic => panic!("a panic asked for by the host"),
        // An undefined instruction: a usage fault, escalated.
        FaultKind::HardFault => cortex_m::asm::udf(),
        FaultKind::StackOverflow => {
            let n = recurse(0);
            panic!("the recursion returned {n}")
        }
    }
}

/// Recurses until the stack is gone (each frame holds 256 bytes the
/// optimiser cannot remove).
#[cfg(feature = "fault-injection")]
#[inline(never)]
#[allow(unconditional_recursion)] // on purpose: it ends in the fault
fn recurse(depth: u32) -> u32 {
    let frame = core::hint::black_box([depth; 64]);
    let deeper = recurse(core::hint::black_box(depth + 1));
    core::hint::black_box(deeper).wrapping_add(frame[depth as usize % 64])
}
