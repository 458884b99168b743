//! The global allocator, chosen per process: mimalloc for the servers, glibc's malloc for the
//! container runtime's small helper processes.
//!
//! The API server, scheduler and controllers allocate per request and per event, and glibc's
//! malloc/free was a quarter of their CPU (BENCHMARKS.md), hence mimalloc. The runtime's
//! helpers — the monitor spawner, a monitor per container, a pause process per pod — are this
//! same binary re-executed (`skiff __skiff_runtime …`) or forked from it, and each lives as
//! long as its container while allocating little. There mimalloc's layout (a separate page per
//! size class, segment metadata) dirties more pages than glibc's one compact heap, and every
//! dirty page of a forked child is its own: with 100 pods the helpers took 73 MB of PSS on
//! mimalloc and 52 MB on glibc's malloc.
//!
//! The choice is made at the first allocation, before `main` and before any thread exists, and
//! never changes, so every block is freed by the allocator that made it. A fork keeps its
//! parent's choice, which is what the monitors and pause processes need.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use nix::libc;

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

pub struct PerProcessAllocator {
    choice: AtomicU8,
}

impl PerProcessAllocator {
    pub const fn new() -> Self {
        PerProcessAllocator {
            choice: AtomicU8::new(UNDECIDED),
        }
    }

    fn uses_system(&self) -> bool {
        match self.choice.load(Ordering::Relaxed) {
            SYSTEM => true,
            MIMALLOC => false,
            _ => {
                let choice = if is_runtime_helper() && !helpers_asked_for_mimalloc() {
                    SYSTEM
                } else {
                    MIMALLOC
                };
                self.choice.store(choice, Ordering::Relaxed);
                choice == SYSTEM
            }
        }
    }
}

/// Set to `mimalloc` to give the runtime's helpers mimalloc too (benchmarks compare the two).
const HELPER_ALLOCATOR_ENV: &std::ffi::CStr = c"SKIFF_RUNTIME_HELPER_ALLOCATOR";

/// Whether [`HELPER_ALLOCATOR_ENV`] says `mimalloc`. Without allocating.
fn helpers_asked_for_mimalloc() -> bool {
    // SAFETY: getenv reads the environment without allocating; the result is only compared.
    let chosen = unsafe { libc::getenv(HELPER_ALLOCATOR_ENV.as_ptr()) };
    // SAFETY: a non-null result points at a NUL-terminated string in the environment.
    !chosen.is_null() && unsafe { std::ffi::CStr::from_ptr(chosen) } == c"mimalloc"
}

/// Whether this process's first argument is the runtime's re-exec marker. Reads
/// `/proc/self/cmdline` with plain syscalls into a stack buffer: the allocator cannot allocate.
fn is_runtime_helper() -> bool {
    let marker = skiff_runtime::reexec::MARKER.as_bytes();
    let mut buf = [0u8; 256];
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/cmdline".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut len = 0usize;
    while len < buf.len() {
        // SAFETY: reads into the unfilled tail of a stack buffer of that size.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n.unsigned_abs();
    }
    // SAFETY: fd was opened above and is not used afterwards.
    unsafe { libc::close(fd) };
    let mut args = buf[..len].split(|b| *b == 0);
    args.next();
    args.next() == Some(marker)
}

// SAFETY: every call goes to one of two allocators, the same one for the life of the process
// (decided once, before any other thread exists), so each block is freed or resized by the
// allocator that made it.
unsafe impl GlobalAlloc for PerProcessAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.uses_system() {
            unsafe { System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.uses_system() {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.uses_system() {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.uses_system() {
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_test_process_is_not_a_runtime_helper() {
        assert!(!super::is_runtime_helper());
    }
}
