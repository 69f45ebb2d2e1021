//! The process's first heap arena: reserved before `main`, written in huge pages before a run.
//!
//! A load test's state (phones, transactions, calls, media buffers) grows while the run is
//! timed, and in this VM every fresh 4 KB page of it costs a page fault of 3–4 µs; spread over
//! 4 KB pages it also outgrows the TLB's reach (`docs/performance.md`, 2026-12-04). Huge pages
//! cannot simply be left on: each first touch of a fresh 2 MB page zeroes it while a shard waits
//! (`callmedia/thp.rs`). So the binary hands the allocator, before its first allocation, one
//! 2 MB-aligned region asking for huge pages ([`reserve`]: mimalloc's first arena, from which
//! every thread takes its pages until it is full), and a run writes the part it will need
//! ([`prefault`]) before its shards start, then turns huge pages off for every later fault. The
//! run's heap is then in 2 MB pages that no timed phase faults in.
//!
//! [`reserve`] runs before `main` (the binary registers it in `.init_array`), so it must not
//! allocate, panic or read Rust's environment; it records the region in two atomics.
#![allow(unsafe_code)] // reason: mmap and madvise on a region given to the allocator (see above)

use std::ffi::{c_int, c_void};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The region's size: virtual address space, backed only where it is written. mimalloc's own
/// first arena is as large; past it the allocator reserves arenas of its own as before.
pub const REGION: usize = 1 << 30;

const HUGE: usize = 2 << 20;

static START: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);

/// The allocator's call that takes a region as an arena (mimalloc's `mi_manage_os_memory`:
/// start, size, committed, pinned (never decommitted), zeroed, NUMA node).
pub type Manage = unsafe extern "C" fn(*mut c_void, usize, bool, bool, bool, c_int) -> bool;

/// Maps [`REGION`] bytes aligned to 2 MB, asks for huge pages on them and gives them to the
/// allocator as its first arena. Call once, before the first allocation (from `.init_array`);
/// on any failure the allocator keeps its own arenas and [`prefault`] does nothing.
pub fn reserve(manage: Manage) {
    // SAFETY: an anonymous private mapping of fresh address space; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION + HUGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return;
    }
    let start = (p as usize).next_multiple_of(HUGE);
    // SAFETY: [start, start + REGION) lies inside the mapping just made (HUGE bytes of slack).
    // The allocator takes it as an arena: committed (a private anonymous mapping), not pinned
    // (memory freed and left unused past mimalloc's purge delay is given back as from its own
    // arenas: a long `serve` does not keep a big run's peak), and zeroed.
    // Without MADV_HUGEPAGE (THP off system-wide) it is still a valid arena of 4 KB pages.
    let ok = unsafe {
        libc::madvise(start as *mut c_void, REGION, libc::MADV_HUGEPAGE);
        manage(start as *mut c_void, REGION, true, false, true, -1)
    };
    if ok {
        START.store(start, Ordering::Release);
        LEN.store(REGION, Ordering::Release);
    }
}

/// The region's start and length, when [`reserve`] succeeded.
pub fn region() -> Option<(usize, usize)> {
    let start = START.load(Ordering::Acquire);
    (start != 0).then(|| (start, LEN.load(Ordering::Acquire)))
}

/// How many bytes a run should write up front: room for its endpoints' state and in-flight
/// transactions (8 KiB each: a registered phone is ≈ 1 KB idle, a call in flight ≈ 7.5 KB of
/// SIP state at both ends) and for the endpoints with media (48 KiB more each: jitter buffer,
/// RTP and RTCP state; `callmedia/thp.rs` measured ≈ 90 KB per call, two ends), plus 16 MiB
/// for the runtime. `SIPMETER_HEAP_MB` sets it instead (0: none).
pub fn estimate(endpoints: usize, media_endpoints: usize) -> usize {
    if let Some(mb) = std::env::var("SIPMETER_HEAP_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return mb << 20;
    }
    (16 << 20) + endpoints.saturating_mul(8 << 10) + media_endpoints.saturating_mul(48 << 10)
}

/// Writes the region's first `bytes` (rounded up to 2 MB, at most [`REGION`]) in huge pages
/// where the kernel allows them (`MADV_POPULATE_WRITE`: the pages are backed and mapped
/// writable without their contents changing, so memory already in use is safe). Returns the
/// bytes written: 0 when the region was not reserved (a binary without [`reserve`]) or
/// `bytes` is 0. Call it before huge pages are turned off for the process: pages written
/// after are 4 KB.
pub fn prefault(bytes: usize) -> io::Result<usize> {
    let start = START.load(Ordering::Acquire);
    let len = bytes
        .next_multiple_of(HUGE)
        .min(LEN.load(Ordering::Acquire));
    if start == 0 || len == 0 {
        return Ok(0);
    }
    // SAFETY: the range lies inside the region `reserve` mapped and never unmaps;
    // MADV_POPULATE_WRITE only backs pages, it writes no byte that the program can see.
    let r = unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_POPULATE_WRITE) };
    if r == 0 {
        Ok(len)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_region_nothing_is_written() {
        // The test binary uses the system allocator and never calls `reserve`.
        assert_eq!(prefault(64 << 20).unwrap(), 0);
    }

    #[test]
    fn the_estimate_grows_with_the_run() {
        // SIPMETER_HEAP_MB is not set in the test environment.
        if std::env::var_os("SIPMETER_HEAP_MB").is_none() {
            assert_eq!(estimate(0, 0), 16 << 20);
            assert_eq!(estimate(10_000, 0), (16 << 20) + 10_000 * 8192);
            assert_eq!(estimate(0, 100), (16 << 20) + 100 * 48 * 1024);
        }
    }
}
