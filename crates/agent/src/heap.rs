//! The process's first heap arena: reserved before `main`, written in huge pages before a run.
//!
//! A load test's state (phones, transactions, calls, media buffers) grows while the run is
//! timed, and in this VM every fresh 4 KB page of it costs a page fault of 3–4 µs; spread over
//! 4 KB pages it also outgrows the TLB's reach (`docs/performance.md`, 2026-12-04). Huge pages
//! cannot simply be left on: each first touch of a fresh 2 MB page zeroes it while a shard waits
//! (`callmedia/thp.rs`). So:
//! - the binary hands the allocator, before its first allocation, one 2 MB-aligned region
//!   asking for huge pages ([`reserve`], registered in `.init_array`): mimalloc's first arena,
//!   from which every thread takes its pages until it is full;
//! - a run asked to (`SIPMETER_HEAP_MB`, [`asked`]) writes the part it will need
//!   ([`prefault`]) before its shards start, with huge pages allowed for that moment, then turns
//!   them off for every later fault. Not by default: mimalloc spreads its threads over the
//!   arena's 32 MiB chunks, so in a run of several threads part of what was written stays
//!   unused (a `benches/load/cps.sh` run of 4,000 endpoints at 4,000 calls/s: page faults 0.67
//!   → 0.39–0.50 per call, but CPU per call 1–7 µs higher in 6 of 6 pairs, the writing
//!   included, and RSS 64 → 77–93 MB); in one thread with 10,000 phones in flight at once (the
//!   fleet bench) it is 15–19 % faster;
//! - while a run lasts ([`Hold`]) the allocator gives nothing back to the system: a purge
//!   (`MADV_DONTNEED` on memory freed a while ago) would split those 2 MB pages and the run
//!   would fault the memory in again, 4 KB at a time. After the run it purges as before.
//!
//! [`reserve`] runs before `main`, so it must not allocate, panic or read Rust's environment;
//! it records the region in two atomics.
#![allow(unsafe_code)] // reason: mmap, madvise and prctl, and mimalloc's C API (see above)

use std::ffi::{c_long, c_void};
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The region's size: virtual address space, backed only where it is written. mimalloc's own
/// first arena is as large; past it the allocator reserves arenas of its own as before.
pub const REGION: usize = 1 << 30;

const HUGE: usize = 2 << 20;

static START: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h`; the sys crate names no constant).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Maps [`REGION`] bytes aligned to 2 MB, asks for huge pages on them and gives them to the
/// allocator as its first arena. For `.init_array`, before the first allocation; on any
/// failure the allocator keeps its own arenas and [`prefault`] does nothing.
pub extern "C" fn reserve() {
    // Under strict overcommit a writable mapping is charged in full at once (MAP_NORESERVE is
    // ignored): 1 GiB of commit charge taken from the system. The allocator's own arenas
    // commit as they grow, so they are left alone there.
    if strict_overcommit() {
        return;
    }
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
    // (memory freed outside a run is given back as from its own arenas: a long `serve` does
    // not keep a big run's peak), zeroed, any NUMA node, open to every heap. Without
    // MADV_HUGEPAGE (THP off system-wide) it is still a valid arena of 4 KB pages.
    let ok = unsafe {
        libc::madvise(start as *mut c_void, REGION, libc::MADV_HUGEPAGE);
        libmimalloc_sys::mi_manage_os_memory_ex(
            start as *mut c_void,
            REGION,
            true,
            false,
            true,
            -1,
            false,
            std::ptr::null_mut(),
        )
    };
    if ok {
        START.store(start, Ordering::Release);
        LEN.store(REGION, Ordering::Release);
    }
}

/// Whether `vm.overcommit_memory` is 2 (strict). Reads the file with no allocation: this runs
/// before `main`.
pub fn strict_overcommit() -> bool {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/sys/vm/overcommit_memory".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut b = [0u8; 4];
    // SAFETY: reads at most `b.len()` bytes into `b`.
    let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    n > 0 && b[0] == b'2'
}

/// The region's start and length, when [`reserve`] succeeded.
pub fn region() -> Option<(usize, usize)> {
    let start = START.load(Ordering::Acquire);
    (start != 0).then(|| (start, LEN.load(Ordering::Acquire)))
}

/// How many bytes `SIPMETER_HEAP_MB` asks a run to write up front: `None` when it is unset;
/// `auto`, the run's [`estimate`] (computed only then); `N`, N MiB; `0`, nothing. Any other
/// value is said on standard error, and nothing is written.
pub fn asked(estimate: impl FnOnce() -> usize) -> Option<usize> {
    match asked_by(std::env::var("SIPMETER_HEAP_MB").ok().as_deref(), estimate) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("sipmeter: {e}");
            Some(0)
        }
    }
}

/// [`asked`] for the variable's value.
fn asked_by(
    value: Option<&str>,
    estimate: impl FnOnce() -> usize,
) -> Result<Option<usize>, String> {
    let Some(v) = value else { return Ok(None) };
    match v.trim() {
        "auto" => Ok(Some(estimate())),
        n => n.parse::<usize>().map(|mb| Some(mb << 20)).map_err(|_| {
            format!("SIPMETER_HEAP_MB={v:?} is neither `auto` nor a number of MiB: nothing written up front")
        }),
    }
}

/// What a run needs in its heap: 16 MiB for the runtime; 2 KiB per endpoint (a registered
/// phone is ≈ 1 KB of state idle, its registration in flight ≈ 2.9 KB); 8 KiB per call in
/// flight (≈ 7.5 KB of SIP state for its two ends); 48 KiB more per endpoint with media
/// (jitter buffer, RTP and RTCP state: `callmedia/thp.rs` measured ≈ 90 KB per call, two ends).
pub fn estimate(endpoints: usize, calls_in_flight: usize, media_endpoints: usize) -> usize {
    (16 << 20)
        + endpoints.saturating_mul(2 << 10)
        + calls_in_flight.saturating_mul(8 << 10)
        + media_endpoints.saturating_mul(48 << 10)
}

/// Writes the region's first `bytes` (rounded up to 2 MB, at most [`REGION`]) in huge pages
/// where the kernel allows them (`MADV_POPULATE_WRITE`: the pages are backed and mapped
/// writable without their contents changing, so memory already in use is safe). Huge pages are
/// allowed for this call if the process had them off, and left as they were after it, unless
/// another run holds the heap (`serve`: its shards must not meet a 2 MB fault meanwhile); parts
/// already written in 4 KB pages stay so. Returns the bytes written: 0 when the region was not
/// reserved (a binary without [`reserve`]) or `bytes` is 0.
pub fn prefault(bytes: usize) -> io::Result<usize> {
    let start = START.load(Ordering::Acquire);
    let len = bytes
        .next_multiple_of(HUGE)
        .min(LEN.load(Ordering::Acquire));
    if start == 0 || len == 0 {
        return Ok(0);
    }
    // Huge pages allowed for the call: the process has them off and no other run is going.
    // SAFETY: prctl with integer arguments only; the THP flag reads and writes no memory.
    let allow = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } == 1
        && HELD.lock().unwrap_or_else(|e| e.into_inner()).0 <= 1;
    if allow {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0 as libc::c_ulong, 0, 0, 0) };
    }
    // SAFETY: the range lies inside the region `reserve` mapped and never unmaps;
    // MADV_POPULATE_WRITE only backs pages, it writes no byte that the program can see.
    let r = unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_POPULATE_WRITE) };
    let err = io::Error::last_os_error();
    if allow {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0, 0, 0) };
    }
    if r == 0 { Ok(len) } else { Err(err) }
}

/// mimalloc's purge delay now, in ms (-1: it purges nothing).
pub fn purge_delay() -> c_long {
    // SAFETY: as in `Hold::new`.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
}

/// Runs in progress, and the purge delay to restore when the last one ends.
static HELD: Mutex<(usize, c_long)> = Mutex::new((0, 0));

/// While one lives, the allocator purges nothing (mimalloc's purge delay is -1), so that
/// memory a run freed stays in its pages for the run to use again. Runs may overlap (`serve`):
/// the delay is restored when the last hold is dropped. Without the region it does nothing.
#[derive(Debug)]
pub struct Hold(bool);

impl Hold {
    /// Stops purging until the returned hold, and every other, is dropped.
    pub fn new() -> Hold {
        if START.load(Ordering::Acquire) == 0 {
            return Hold(false);
        }
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if held.0 == 0 {
            // SAFETY: mimalloc's option calls take an option number and a value only.
            held.1 = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
            // SAFETY: as above.
            unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
        }
        held.0 += 1;
        Hold(true)
    }
}

impl Default for Hold {
    fn default() -> Hold {
        Hold::new()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.0 -= 1;
        if held.0 == 0 {
            // SAFETY: as in `new`.
            unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, held.1) };
        }
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
    fn sipmeter_heap_mb_is_read_as_auto_a_size_or_nothing() {
        let est = || 76 << 20;
        assert_eq!(asked_by(None, est), Ok(None));
        assert_eq!(asked_by(Some("auto"), est), Ok(Some(76 << 20)));
        assert_eq!(asked_by(Some(" 96 "), est), Ok(Some(96 << 20)));
        assert_eq!(asked_by(Some("0"), est), Ok(Some(0)));
        let e = asked_by(Some("lots"), est).unwrap_err();
        assert!(e.contains("SIPMETER_HEAP_MB=\"lots\""), "{e}");
        // The estimate is computed only for `auto`.
        assert_eq!(asked_by(Some("8"), || unreachable!()), Ok(Some(8 << 20)));
    }

    #[test]
    fn the_estimate_grows_with_the_run() {
        assert_eq!(estimate(0, 0, 0), 16 << 20);
        assert_eq!(estimate(10_000, 0, 0), (16 << 20) + 10_000 * 2048);
        assert_eq!(estimate(0, 5_000, 0), (16 << 20) + 5_000 * 8192);
        assert_eq!(estimate(0, 0, 100), (16 << 20) + 100 * 48 * 1024);
    }
}
