//! Real-time scheduling for a shard's thread, opt-in: `SIPMETER_MEDIA_RT=PRIORITY` (1–99).
//!
//! A shard sleeps between media passes and is woken by its timer on the media grid. Under
//! the normal scheduler a woken shard does not always get its CPU at once: when another
//! task runs there, the scheduler (EEVDF here, 250 Hz tick) often lets it run on until the
//! next tick, and the shard's packets leave up to 4 ms late (the timeline of
//! `SIPMETER_TIMELINE` shows these as turns that woke late with the run-queue delay equal
//! to the lateness, quantised at 4 ms: docs/notes-rtpp99.md). With `SCHED_FIFO` the shard
//! preempts any normal task when its timer fires. It needs the privilege to (root or
//! `RLIMIT_RTPRIO`); the kernel's real-time throttling (by default 95 % of each second)
//! still leaves normal tasks some time if a shard never sleeps. Off by default: a busy
//! real-time thread can slow everything else on its CPU.
#![allow(unsafe_code)] // reason: sched_setscheduler (see `set_fifo`)

use std::io;

/// The priority asked for in `SIPMETER_MEDIA_RT`, if any (an unreadable value is an error).
pub fn priority_from_env() -> Option<Result<i32, String>> {
    let v = std::env::var("SIPMETER_MEDIA_RT").ok()?;
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    Some(match v.parse::<i32>() {
        Ok(p) if (1..=99).contains(&p) => Ok(p),
        _ => Err(format!(
            "SIPMETER_MEDIA_RT={v}: want a priority from 1 to 99"
        )),
    })
}

/// Puts the calling thread under `SCHED_FIFO` at `priority` (1–99).
pub fn set_fifo(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param on the stack; the kernel only reads it; pid 0
    // is the calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy (`SCHED_OTHER`, `SCHED_FIFO` …).
#[cfg(test)]
pub fn policy() -> i32 {
    // SAFETY: no pointers; pid 0 is the calling thread.
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_is_set_or_refused_with_an_error() {
        std::thread::spawn(|| {
            assert_eq!(policy(), libc::SCHED_OTHER);
            match set_fifo(1) {
                Ok(()) => assert_eq!(policy(), libc::SCHED_FIFO),
                // Without the privilege the thread stays as it was.
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
                    assert_eq!(policy(), libc::SCHED_OTHER);
                }
            }
            assert!(set_fifo(0).is_err(), "priority 0 is not a FIFO priority");
        })
        .join()
        .unwrap();
    }
}
