//! A global allocator that counts live heap bytes, for measuring how much memory a session
//! really holds (the engine's own `Session::heap_bytes` is an estimate from capacities).
//!
//! Counting is off unless a measurement is running, so that the timed passes of a binary that
//! installs this allocator pay one relaxed load per allocation and nothing more.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

/// The system allocator, counting bytes requested minus bytes freed while a measurement runs.
/// Install it with `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
pub struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

/// What a measured piece of code left allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes requested and not freed (without the allocator's own rounding and headers).
    pub bytes: isize,
    /// Allocations not freed; each costs the allocator some bytes of its own (glibc: 8 to 23).
    pub blocks: isize,
}

impl CountingAlloc {
    /// Runs `f` and returns its result with what it left allocated. Meaningful only in a binary
    /// that installed [`CountingAlloc`], with no other thread allocating meanwhile.
    pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Usage) {
        LIVE_BYTES.store(0, Relaxed);
        LIVE_BLOCKS.store(0, Relaxed);
        COUNTING.store(true, Relaxed);
        let out = f();
        COUNTING.store(false, Relaxed);
        let usage = Usage {
            bytes: LIVE_BYTES.load(Relaxed),
            blocks: LIVE_BLOCKS.load(Relaxed),
        };
        (out, usage)
    }
}

fn count(bytes: isize, blocks: isize) {
    if COUNTING.load(Relaxed) {
        LIVE_BYTES.fetch_add(bytes, Relaxed);
        LIVE_BLOCKS.fetch_add(blocks, Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counting touches only atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` obeys `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize, 0);
        }
        p
    }
}
