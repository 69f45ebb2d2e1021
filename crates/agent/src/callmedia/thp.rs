//! Turns transparent huge pages off for the process during a run with media.
//!
//! mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so with THP in `madvise`
//! mode (the usual default) the first touch of every fresh 2 MB of heap is one page fault
//! that zeroes a whole huge page: 2–5 ms in this VM (the host backs the memory at the same
//! time), during which the faulting shard sends nothing. While calls start, the heap grows
//! by ~90 KB per call, so a ramp of 1,000 calls took ≈ 50 such faults, each one a stall of
//! its shard and a burst of late packets (measured: send p99 2.7 ms with, 0.8 ms without,
//! same binary). With THP off the same memory comes in 4 KB faults of a few µs each,
//! spread over the calls; nothing else changes (RSS is counted in 4 KB pages too).
//! `PR_SET_THP_DISABLE` is per process and applies to later faults of existing mappings as
//! well; std has no wrapper, hence the `unsafe` block.
#![allow(unsafe_code)] // reason: prctl(PR_SET_THP_DISABLE) (see above)

use std::io;

/// Stops huge-page faults in this process from now on.
pub fn disable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; PR_SET_THP_DISABLE reads no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether huge pages are off for this process (`PR_GET_THP_DISABLE`).
#[cfg(test)]
pub fn disabled() -> io::Result<bool> {
    // SAFETY: as above; PR_GET_THP_DISABLE returns the flag and reads no memory.
    let r = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_are_off_after_disable() {
        disable().expect("prctl(PR_SET_THP_DISABLE)");
        assert!(disabled().expect("prctl(PR_GET_THP_DISABLE)"));
        // The kernel says so too (the line is there since Linux 6.1's THP_enabled field).
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(v) = status.lines().find_map(|l| l.strip_prefix("THP_enabled:"))
        {
            assert_eq!(v.trim(), "0");
        }
    }
}
