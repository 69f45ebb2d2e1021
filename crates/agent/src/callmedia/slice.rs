//! Scheduling without privileges: a short time slice for the shards, and the run's other
//! threads made less urgent (docs/notes-rtpsched.md).
//!
//! Under EEVDF (Linux 6.6+) a woken task preempts the running one only when its virtual
//! deadline is earlier; with the default slice (≈ 3 ms here) a woken shard often waited
//! for the next 4 ms scheduler tick for its CPU, then worked off a backlog
//! (docs/notes-rtpp99.md). Since Linux 6.12 a `SCHED_OTHER` thread may ask for its own
//! slice through `sched_setattr`'s `sched_runtime` (0.1–100 ms, no privilege needed): a
//! short slice gives the shard an early deadline at every wake-up, and with the kernel's
//! `PREEMPT_SHORT` feature a woken short-slice task preempts a longer-slice one at once.
//! Its share of the CPU stays what its nice level gives; only the latency changes.
//!
//! `SCHED_BATCH` (any kernel, no privilege) is for the run's own threads that are not on
//! the media clock (the collector and the progress printer; the built-in registrar keeps
//! normal scheduling, it gained nothing under batch): a woken batch thread never preempts a
//! running one, so a shard in its pass is not cut short by them; they still get their share
//! of the CPU.
#![allow(unsafe_code)] // reason: sched_setattr / sched_getattr (not in libc as functions)

use std::io;

/// The kernel's `struct sched_attr` (include/uapi/linux/sched/types.h), version 1 (56 bytes;
/// the utilisation clamps are not used).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

const ATTR_SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

fn getattr() -> io::Result<SchedAttr> {
    let mut a = SchedAttr::default();
    // SAFETY: `a` is a valid, writable sched_attr of ATTR_SIZE bytes; the kernel writes at
    // most that many; pid 0 is the calling thread; flags must be 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &raw mut a,
            libc::c_uint::try_from(ATTR_SIZE).unwrap_or(48),
            0,
        )
    };
    if r == 0 {
        Ok(a)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setattr(a: &SchedAttr) -> io::Result<()> {
    // SAFETY: `a` is a valid sched_attr whose `size` field is its own size; the kernel only
    // reads it; pid 0 is the calling thread; flags must be 0.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const *a, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for a slice of `slice_us` µs (100–100,000) for the calling thread under
/// `SCHED_OTHER`, its nice level kept. `Ok(true)`: the kernel took it (read back);
/// `Ok(false)`: accepted but not kept (a kernel older than 6.12 ignores `sched_runtime`).
pub fn set_slice(slice_us: u64) -> io::Result<bool> {
    let now = getattr()?;
    let want = slice_us.clamp(100, 100_000) * 1000;
    let a = SchedAttr {
        size: ATTR_SIZE,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_nice: now.sched_nice,
        sched_runtime: want,
        ..SchedAttr::default()
    };
    setattr(&a)?;
    let back = getattr()?;
    Ok(back.sched_policy == libc::SCHED_OTHER as u32 && back.sched_runtime == want)
}

/// Puts the calling thread under `SCHED_BATCH` at nice level `nice` or its own, whichever
/// is the lower priority (see the module's notes). Returns what it was, for [`restore`].
pub fn set_batch(nice: i32) -> io::Result<Saved> {
    let now = getattr()?;
    let a = SchedAttr {
        size: ATTR_SIZE,
        sched_policy: libc::SCHED_BATCH as u32,
        sched_nice: now.sched_nice.max(nice.clamp(-20, 19)),
        ..SchedAttr::default()
    };
    setattr(&a)?;
    Ok(Saved(now))
}

/// A thread's scheduling before [`set_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Saved(SchedAttr);

/// Puts the calling thread back as it was before [`set_batch`] (normal policies only: a
/// real-time one needs the privilege again and is left as is). Without the privilege to
/// lower a nice level again (`RLIMIT_NICE`) the policy and slice come back and the nice
/// level stays where [`set_batch`] put it.
pub fn restore(saved: Saved) -> io::Result<()> {
    let mut a = saved.0;
    if !matches!(
        a.sched_policy as i32,
        libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE
    ) {
        return Ok(());
    }
    a.size = ATTR_SIZE;
    a.sched_flags = 0;
    match setattr(&a) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            a.sched_nice = a.sched_nice.max(getattr()?.sched_nice);
            setattr(&a)
        }
        r => r,
    }
}

/// The calling thread's policy and slice (ns; 0 = the kernel's default slice).
#[cfg(test)]
pub fn current() -> io::Result<(i32, u64)> {
    let a = getattr()?;
    Ok((a.sched_policy as i32, a.sched_runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid utsname the kernel fills.
        if unsafe { libc::uname(&raw mut u) } != 0 {
            return false;
        }
        // SAFETY: the kernel NUL-terminates `release`.
        let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
        let mut it = rel.split(|c: char| !c.is_ascii_digit());
        let ma: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let mi: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        (ma, mi) >= (major, minor)
    }

    #[test]
    fn a_short_slice_is_taken_and_the_nice_level_kept() {
        std::thread::spawn(|| {
            // SAFETY: plain syscalls on the calling thread.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 3) };
            let nice = getattr().unwrap().sched_nice;
            let kept = set_slice(100).unwrap();
            if kernel_at_least(6, 12) {
                assert!(kept, "a 6.12+ kernel keeps a custom slice");
                assert_eq!(current().unwrap(), (libc::SCHED_OTHER, 100_000));
            }
            assert_eq!(getattr().unwrap().sched_nice, nice, "nice level kept");
            // Out-of-range asks are clamped, not refused.
            let kept = set_slice(1).unwrap();
            if kernel_at_least(6, 12) {
                assert!(kept);
                assert_eq!(current().unwrap().1, 100_000);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn batch_is_set_and_restored() {
        std::thread::spawn(|| {
            let before = current().unwrap();
            let nice = getattr().unwrap().sched_nice;
            let saved = set_batch(-20).unwrap();
            assert_eq!(current().unwrap().0, libc::SCHED_BATCH);
            assert_eq!(
                getattr().unwrap().sched_nice,
                nice,
                "never a higher priority"
            );
            restore(saved).unwrap();
            assert_eq!(current().unwrap(), before);
            assert_eq!(getattr().unwrap().sched_nice, nice);
            // A lower priority asked for: taken; restored where the privilege allows.
            let saved = set_batch(nice.clamp(5, 19)).unwrap();
            assert_eq!(getattr().unwrap().sched_nice, nice.clamp(5, 19));
            restore(saved).unwrap();
            assert_eq!(current().unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
