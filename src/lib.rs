//! authfetch (docs below)
#![no_std]
extern crate alloc;
// With `std` (the default: native tests, wasm-bindgen-test), std provides the allocator and the
// panic handler; the shipped `tiny` build brings its own (below).
#[cfg(feature = "std")]
extern crate std;

pub mod config;
pub mod error;
pub mod jwt;
pub mod session;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// A broken internal invariant: traps in the browser (no panic machinery in the `.wasm`), panics
/// natively so tests report it.
#[cold]
pub(crate) fn bug() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("authfetch: internal invariant broken");
}

#[cfg(all(feature = "tiny", target_arch = "wasm32", not(feature = "std")))]
mod tiny {
    use core::alloc::{GlobalAlloc, Layout};
    use lol_alloc::{AssumeSingleThreaded, FreeListAllocator};

    /// lol_alloc's free list behind out-of-line methods: inlined, its `dealloc` would be copied
    /// into every `drop` of a `String` or `Vec` (kilobytes of `.wasm` in total).
    struct Alloc(AssumeSingleThreaded<FreeListAllocator>);

    // SAFETY: forwards to an allocator that upholds the `GlobalAlloc` contract.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Alloc {
        #[inline(never)]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            unsafe { self.0.alloc(layout) }
        }
        #[inline(never)]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { self.0.dealloc(ptr, layout) }
        }
        #[inline(never)]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }
    }

    // SAFETY: this build targets wasm32 without the atomics feature, where there is exactly one
    // thread; `AssumeSingleThreaded` is sound exactly then.
    #[allow(unsafe_code)]
    #[global_allocator]
    static ALLOC: Alloc = Alloc(unsafe { AssumeSingleThreaded::new(FreeListAllocator::new()) });

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }
}
