//! Grows the process's descriptor table once, before the shards start.
//!
//! Linux doubles a process's descriptor table when a new descriptor does not fit, and in
//! a process with more than one thread the doubling waits for an RCU grace period
//! (`expand_fdtable` → `synchronize_rcu`, 10–30 ms in this VM) while every other thread
//! that opens a descriptor meanwhile sleeps until it is done (`alloc_fd` → `expand_files`,
//! state D). Each call binds its media sockets while the shards run, so without this the
//! table doubled 4–6 times during the callers' ramp-up and every shard stood still
//! 10–30 ms each time (both at once: the table is shared), sending every packet of
//! those moments late. Asking once for a descriptor as high as the run will need makes the
//! table that big at once, before the shards exist; the table never shrinks, so closing
//! that descriptor again leaves the room. std has no call that asks for a descriptor at
//! least N (`F_DUPFD`), hence the one `unsafe` block below.
#![allow(unsafe_code)] // reason: fcntl(F_DUPFD_CLOEXEC) and getrlimit (see above)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The highest descriptor number this process may have (`RLIMIT_NOFILE` − 1).
fn highest_allowed() -> io::Result<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the call; the kernel only writes it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(1))
}

/// Makes room in the descriptor table for descriptors up to `fds` (capped by the open-file
/// limit, and by 2²⁰): afterwards, opening that many descriptors never grows the table.
/// Returns the descriptor number reserved up to (0 when nothing was needed). Costs one
/// grace period at most, once, when called before the hot threads run.
pub fn reserve(fds: usize) -> io::Result<usize> {
    let target = fds.min(highest_allowed()?).min(1 << 20);
    if target < 64 {
        return Ok(0);
    }
    let any = std::fs::File::open("/dev/null")?;
    let arg = libc::c_int::try_from(target).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_DUPFD_CLOEXEC takes an int and returns a new descriptor (≥ `arg`) that we
    // own, or −1; `any` is open for the whole call.
    let fd = unsafe { libc::fcntl(any.as_raw_fd(), libc::F_DUPFD_CLOEXEC, arg) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it; dropping the
    // OwnedFd closes it (the table keeps its size).
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of this process's descriptor table (`FDSize` in /proc/self/status).
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize line")
    }

    #[test]
    fn reserving_grows_the_table_at_once_and_leaves_nothing_open() {
        let want = 3000.min(highest_allowed().expect("getrlimit"));
        let got = reserve(want).expect("reserve");
        assert_eq!(got, if want < 64 { 0 } else { want });
        if got > 0 {
            assert!(table_size() > got, "FDSize {} for {got}", table_size());
            // The reserved descriptor was closed again: a new one takes the lowest free
            // number, far below it.
            let f = std::fs::File::open("/dev/null").expect("open");
            assert!(usize::try_from(f.as_raw_fd()).expect("fd") < got);
        }
        assert_eq!(reserve(10).expect("small"), 0);
    }
}
