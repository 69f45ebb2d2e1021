//! A diagnostic of the shard loop's stalls, off unless `SIPMETER_STALL_MS` is set.
//!
//! With `SIPMETER_STALL_MS=N` every turn of a shard's loop that took longer than N ms, and
//! every wake-up that came more than N ms after the deadline the loop asked for, is printed
//! to stderr with what the turn did (time and count per part of the loop) and what the
//! thread went through meanwhile: CPU time, time runnable but waiting for a CPU
//! (`/proc/thread-self/schedstat`), voluntary context switches (it slept), involuntary ones
//! (it was preempted), minor/major page faults (`getrusage(RUSAGE_THREAD)`). At the end of
//! the run each shard prints how many stalls it saw, the longest, the stalls by kind —
//! busy (its own CPU work), preempted or woken but waiting for a CPU (other threads or
//! processes had the CPUs), off-cpu (neither: it slept in the kernel, e.g. on a lock, or
//! the host held the VM) — and how many calls' media each media pass ran.
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
    /// Time spent runnable but waiting for a CPU (`/proc/thread-self/schedstat`).
    run_delay: Duration,
}

impl Usage {
    fn now(schedstat: Option<&std::fs::File>) -> Self {
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
            run_delay: schedstat.map_or(Duration::ZERO, run_delay),
        }
    }
}

/// The second field of `/proc/thread-self/schedstat`: ns spent waiting on a run queue.
fn run_delay(f: &std::fs::File) -> Duration {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 96];
    let n = f.read_at(&mut buf, 0).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

const PARTS: usize = 8;

#[derive(Debug)]
struct Inner {
    shard: usize,
    threshold: Duration,
    schedstat: Option<std::fs::File>,
    origin: Instant,
    /// When the loop went to sleep, and the wake-up it asked for.
    slept: Option<(Instant, Instant)>,
    turn_start: Instant,
    last_mark: Instant,
    usage: Usage,
    parts: Vec<(&'static str, Duration, usize)>,
    stalls: u64,
    longest: Duration,
    /// Stalls by what the thread did meanwhile: mostly ran (its own work), was preempted,
    /// or neither (slept, or a page fault or the host held it).
    busy: u64,
    preempted: u64,
    waited_cpu: u64,
    off_cpu: u64,
    /// How many calls' media each media pass ran (index: count, the last bucket: more).
    passes: Vec<u64>,
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
                // Opened on the shard's own thread (the probe is made there).
                schedstat: std::fs::File::open("/proc/thread-self/schedstat").ok(),
                origin: now,
                slept: None,
                turn_start: now,
                last_mark: now,
                usage: Usage::default(),
                parts: Vec::with_capacity(PARTS),
                stalls: 0,
                longest: Duration::ZERO,
                busy: 0,
                preempted: 0,
                waited_cpu: 0,
                off_cpu: 0,
                passes: vec![0; 4097],
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

    /// A media pass ran `n` calls' media (the part since the last mark).
    pub fn paced(&mut self, n: usize) {
        let Some(p) = self.0.as_deref_mut() else {
            return;
        };
        if n > 0 {
            let last = p.passes.len() - 1;
            p.passes[n.min(last)] += 1;
        }
        self.mark("media", n);
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
        let u = Usage::now(p.schedstat.as_ref());
        if stall >= p.threshold {
            p.stalls += 1;
            p.longest = p.longest.max(stall);
            let cpu = u.cpu.saturating_sub(p.usage.cpu);
            let waited = u.run_delay.saturating_sub(p.usage.run_delay);
            if cpu.as_secs_f64() >= 0.7 * stall.as_secs_f64() {
                p.busy += 1;
            } else if waited.as_secs_f64() >= 0.5 * stall.as_secs_f64() {
                // Runnable, but the CPUs ran other threads (preempted or woken late).
                if u.involuntary > p.usage.involuntary {
                    p.preempted += 1;
                } else {
                    p.waited_cpu += 1;
                }
            } else {
                p.off_cpu += 1;
            }
            let mut line = format!(
                "stall shard={} t={:.3}s worked={:.2}ms woke_late={:.2}ms cpu={:.2}ms runq={:.2}ms vcsw+{} ivcsw+{} minflt+{} majflt+{} |",
                p.shard,
                (p.turn_start - p.origin).as_secs_f64(),
                worked.as_secs_f64() * 1e3,
                woke_late.as_secs_f64() * 1e3,
                u.cpu.saturating_sub(p.usage.cpu).as_secs_f64() * 1e3,
                u.run_delay.saturating_sub(p.usage.run_delay).as_secs_f64() * 1e3,
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
}

impl Drop for LoopProbe {
    fn drop(&mut self) {
        let Some(p) = self.0.as_deref() else {
            return;
        };
        // Media passes: how many calls each ran (a pass runs every call due in its quantum).
        let total: u64 = p.passes.iter().sum();
        let at = |q: f64| {
            let want = (q * total as f64).ceil() as u64;
            let mut seen = 0;
            p.passes
                .iter()
                .position(|c| {
                    seen += c;
                    seen >= want.max(1)
                })
                .unwrap_or(0)
        };
        let calls: u64 = p.passes.iter().enumerate().map(|(n, c)| n as u64 * c).sum();
        eprintln!(
            "stalls shard={}: {} (longest {:.2} ms; busy {}, preempted {}, woken but waited for a CPU {}, off-cpu {}); media passes {total}, calls per pass mean {:.1} p50 {} p99 {} max {}",
            p.shard,
            p.stalls,
            p.longest.as_secs_f64() * 1e3,
            p.busy,
            p.preempted,
            p.waited_cpu,
            p.off_cpu,
            calls as f64 / total.max(1) as f64,
            at(0.5),
            at(0.99),
            p.passes.iter().rposition(|c| *c > 0).unwrap_or(0),
        );
    }
}
