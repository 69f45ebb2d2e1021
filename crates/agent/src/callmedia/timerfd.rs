//! A `timerfd` (Linux): a descriptor that becomes readable at a deadline of the monotonic
//! clock with ns resolution and no timer slack. Registered with the shard's tokio reactor,
//! it wakes the shard's own thread at the deadline: no helper thread, one context switch per
//! wake-up. std, mio and socket2 have no safe wrapper for it, so this module holds the two
//! `unsafe` calls; every block says why it is sound.
#![allow(unsafe_code)] // reason: timerfd_create/timerfd_settime (see above)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A new disarmed, non-blocking timer on `CLOCK_MONOTONIC` (the clock of [`std::time::Instant`]).
pub fn create() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant flags; no pointers.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes the timer expire `after` from now (at least 1 ns: zero would disarm it), then every
/// `every` after that (`Duration::ZERO`: once).
pub fn set(fd: &impl AsRawFd, after: Duration, every: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: libc::time_t::try_from(every.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: every.subsec_nanos() as libc::c_long,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec that outlives the call; the old value is not asked
    // for (null is allowed).
    let r =
        unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &raw const spec, std::ptr::null_mut()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
