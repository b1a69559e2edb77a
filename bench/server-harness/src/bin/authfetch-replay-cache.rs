//! authfetch-replay-cache: what the DPoP replay cache (`MemoryReplayCache`) costs per remembered
//! proof, in heap bytes and in time, as evidence for BENCHMARKS.md §0e. It fills a cache of
//! CAPACITY with distinct proofs whose `iat` spreads over the default ±60 s window (as a steady
//! load does), then keeps inserting while the clock moves on, so that purging runs too.
//!
//! Heap bytes are counted exactly, by a global allocator that wraps the system one: the live
//! bytes the cache holds when full, divided by its entries (the allocator's own per-block
//! overhead comes on top, as it would for any structure).
//!
//!   cargo run --release --manifest-path bench/server-harness/Cargo.toml --bin authfetch-replay-cache [-- CAPACITY]
use authfetch_server::dpop::{MemoryReplayCache, ReplayCache as _, VerifiedProof};
use authfetch_server::jwt::Alg;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

const T0_S: i64 = 1_800_000_000;
const WINDOW_S: i64 = 60;

fn proof(i: usize, iat: i64) -> VerifiedProof {
    VerifiedProof {
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into(),
        jti: format!("{i:016x}-7b1e-4c1a-9f0e-5d1c3a2b4e6f"),
        iat,
        alg: Alg::Es256,
        acceptable_until_s: iat + WINDOW_S,
    }
}

fn main() {
    let capacity: usize = std::env::args()
        .nth(1)
        .map_or(500_000, |a| a.parse().expect("CAPACITY"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Proofs made before the timed loops, so that neither their strings nor their making count.
    let fill: Vec<VerifiedProof> = (0..capacity)
        .map(|i| {
            proof(
                i,
                T0_S - WINDOW_S + (i as i64 * 2 * WINDOW_S) / capacity as i64,
            )
        })
        .collect();
    let base = LIVE.load(Ordering::Relaxed);
    let cache = MemoryReplayCache::new(capacity);
    let started = Instant::now();
    rt.block_on(async {
        for p in &fill {
            assert!(cache.first_use(p, T0_S * 1000).await.expect("room"));
        }
    });
    let fill_ns = started.elapsed().as_nanos() as f64 / capacity as f64;
    let held = LIVE.load(Ordering::Relaxed) - base;
    let peak = PEAK.load(Ordering::Relaxed) - base;
    // Steady state: one second at a time, as many new proofs as the second frees.
    let per_s = capacity / (2 * WINDOW_S as usize + 1);
    let steady: Vec<(VerifiedProof, i64)> = (0..60)
        .flat_map(|s| (0..per_s).map(move |j| (s, j)))
        .map(|(s, j)| {
            (
                proof(capacity + s as usize * per_s + j, T0_S + s + 1),
                (T0_S + 1 + s) * 1000 + 500,
            )
        })
        .collect();
    let started = Instant::now();
    let mut refused = 0usize;
    rt.block_on(async {
        for (p, now_ms) in &steady {
            match cache.first_use(p, *now_ms).await {
                Ok(true) => {}
                _ => refused += 1,
            }
        }
    });
    let steady_ns = started.elapsed().as_nanos() as f64 / steady.len() as f64;
    println!(
        "{{\"capacity\":{capacity},\"held_bytes\":{held},\"bytes_per_entry\":{:.1},\"peak_bytes_per_entry\":{:.1},\"fill_ns_per_proof\":{fill_ns:.0},\"steady_ns_per_proof\":{steady_ns:.0},\"steady_proofs\":{},\"steady_refused\":{refused},\"entries_after\":{}}}",
        held as f64 / capacity as f64,
        peak as f64 / capacity as f64,
        steady.len(),
        cache.len()
    );
}
