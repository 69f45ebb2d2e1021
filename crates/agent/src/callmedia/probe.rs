//! A diagnostic of the shard loop's stalls, off unless `SIPMETER_STALL_MS` is set.
//!
//! With `SIPMETER_STALL_MS=N` every turn of a shard's loop that took longer than N ms, and
//! every wake-up that came more than N ms after the deadline the loop asked for, is printed
//! to stderr with what the turn did (time and count per part of the loop) and what the
//! thread went through meanwhile (`getrusage(RUSAGE_THREAD)`: voluntary context switches =
//! the thread slept in an `await`, involuntary ones = it was preempted, minor/major page
//! faults). At the end of the run each shard prints how many stalls it saw and the longest.
//! Off (the default), every call is one branch on a `None`.
#![allow(unsafe_code)] // reason: getrusage (see `Usage::now`)

use std::time::{Duration, Instant};

/// The thread's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    voluntary: i64,
    involuntary: i64,
    minor_faults: i64,
    major_faults: i64,
    cpu: Duration,
}

impl Usage {
    fn now() -> Self {
        // SAFETY: `rusage` is plain old data (all-zero is a valid value); the kernel writes
        // into the local we pass and keeps no pointer to it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; RUSAGE_THREAD is valid on Linux for the calling thread.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &raw mut ru) } != 0 {
            return Self::default();
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        Self {
            voluntary: ru.ru_nvcsw,
            involuntary: ru.ru_nivcsw,
            minor_faults: ru.ru_minflt,
            major_faults: ru.ru_majflt,
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        }
    }
}

const PARTS: usize = 8;

#[derive(Debug)]
struct Inner {
    shard: usize,
    threshold: Duration,
    origin: Instant,
    /// When the loop went to sleep, and the wake-up it asked for.
    slept: Option<(Instant, Instant)>,
    turn_start: Instant,
    last_mark: Instant,
    usage: Usage,
    parts: Vec<(&'static str, Duration, usize)>,
    stalls: u64,
    longest: Duration,
}

/// See the module documentation.
#[derive(Debug)]
pub struct LoopProbe(Option<Box<Inner>>);

impl LoopProbe {
    /// On when `SIPMETER_STALL_MS` holds a number of ms (fractions allowed).
    pub fn from_env(shard: usize) -> Self {
        let ms = std::env::var("SIPMETER_STALL_MS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0);
        Self(ms.map(|ms| {
            let now = Instant::now();
            Box::new(Inner {
                shard,
                threshold: Duration::from_secs_f64(ms / 1000.0),
                origin: now,
                slept: None,
                turn_start: now,
                last_mark: now,
                usage: Usage::default(),
                parts: Vec::with_capacity(PARTS),
                stalls: 0,
                longest: Duration::ZERO,
            })
        }))
    }

    /// The loop is about to wait until `next`.
    pub fn sleeping(&mut self, next: Instant) {
        let Some(p) = self.0.as_deref_mut() else {
            return;
        };
        let now = Instant::now();
        p.slept = Some((now, next));
        p.last_mark = now;
    }

    /// The loop's wait ended (first thing in every branch of the wait).
    pub fn woke(&mut self) {
        let Some(p) = self.0.as_deref_mut() else {
            return;
        };
        let now = Instant::now();
        let late = p.slept.map_or(Duration::ZERO, |(_, next)| {
            now.saturating_duration_since(next)
        });
        p.parts.push(("wait", now - p.last_mark, 0));
        if late > Duration::ZERO {
            p.parts.push(("woke late", late, 0));
        }
        p.last_mark = now;
    }

    /// The part of the turn since the last mark was `what`, handling `n` items.
    pub fn mark(&mut self, what: &'static str, n: usize) {
        let Some(p) = self.0.as_deref_mut() else {
            return;
        };
        let now = Instant::now();
        let d = now - p.last_mark;
        if n > 0 || d >= Duration::from_micros(100) {
            p.parts.push((what, d, n));
        }
        p.last_mark = now;
    }

    /// A new turn of the loop begins: reports the last one when it stalled.
    pub fn turn(&mut self) {
        let Some(p) = self.0.as_deref_mut() else {
            return;
        };
        let now = Instant::now();
        let busy = now - p.turn_start;
        // The wait itself is not the loop's work: a turn is busy for what it did, plus the
        // time it woke after its deadline.
        let waited = p
            .parts
            .iter()
            .filter(|x| x.0 == "wait")
            .map(|x| x.1)
            .sum::<Duration>();
        let worked = busy.saturating_sub(waited);
        let woke_late = p
            .parts
            .iter()
            .find(|x| x.0 == "woke late")
            .map_or(Duration::ZERO, |x| x.1);
        let stall = worked.max(woke_late);
        let u = Usage::now();
        if stall >= p.threshold {
            p.stalls += 1;
            p.longest = p.longest.max(stall);
            let mut line = format!(
                "stall shard={} t={:.3}s worked={:.2}ms woke_late={:.2}ms cpu={:.2}ms vcsw+{} ivcsw+{} minflt+{} majflt+{} |",
                p.shard,
                (p.turn_start - p.origin).as_secs_f64(),
                worked.as_secs_f64() * 1e3,
                woke_late.as_secs_f64() * 1e3,
                u.cpu.saturating_sub(p.usage.cpu).as_secs_f64() * 1e3,
                u.voluntary - p.usage.voluntary,
                u.involuntary - p.usage.involuntary,
                u.minor_faults - p.usage.minor_faults,
                u.major_faults - p.usage.major_faults,
            );
            for (what, d, n) in &p.parts {
                line.push_str(&format!(" {what} {:.2}ms", d.as_secs_f64() * 1e3));
                if *n > 0 {
                    line.push_str(&format!(" ({n})"));
                }
                line.push(',');
            }
            eprintln!("{line}");
        }
        p.usage = u;
        p.parts.clear();
        p.turn_start = now;
        p.last_mark = now;
        p.slept = None;
    }

    /// Turns that stalled, and the longest stall.
    pub fn stalls(&self) -> Option<(u64, Duration)> {
        self.0.as_deref().map(|p| (p.stalls, p.longest))
    }
}

impl Drop for LoopProbe {
    fn drop(&mut self) {
        if let Some((n, longest)) = self.stalls() {
            eprintln!(
                "stalls shard={}: {n} (longest {:.2} ms)",
                self.0.as_deref().map_or(0, |p| p.shard),
                longest.as_secs_f64() * 1e3
            );
        }
    }
}
