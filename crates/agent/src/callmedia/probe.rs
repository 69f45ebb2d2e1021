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
//!
//! With `SIPMETER_TIMELINE=DIR` every turn of the loop is recorded (in memory, a few dozen
//! bytes each) and written at the end of the run to `DIR/timeline-shard<N>.tsv`: when the
//! turn began, how late it woke, how long each part took, what the media pass did (calls,
//! RTP packets sent, the latest one's lateness and how many left more than 1 ms late,
//! per-second samples, datagrams read) and what the thread went through (CPU, run-queue
//! delay, context switches). The header gives the process's `CLOCK_MONOTONIC` origin, so a
//! `perf sched` trace of the same run lines up (docs/notes-rtpp99.md).
//! Off (the default), every call is one branch on a `None`.
#![allow(unsafe_code)] // reason: getrusage (see `Usage::now`)

use std::io::Write;
use std::time::{Duration, Instant};

use super::SendTiming;

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

/// One turn of the loop in the timeline (times in µs).
#[derive(Debug, Clone, Copy, Default)]
struct Rec {
    /// When the turn began, since the process-wide origin.
    t_us: u64,
    woke_late_us: u32,
    /// The turn's own time (without the wait).
    work_us: u32,
    flush_us: u32,
    sip_timers: u32,
    sip_timers_us: u32,
    media_us: u32,
    calls: u32,
    sent: u32,
    late_min_us: u32,
    late_max_us: u32,
    late_over_1ms: u32,
    samples: u32,
    reads: u32,
    net_us: u32,
    sip_rx: u32,
    sip_rx_us: u32,
    other_us: u32,
    cpu_us: u32,
    runq_us: u32,
    vcsw: u32,
    ivcsw: u32,
    minflt: u32,
    /// The CPU the thread ran on at the end of the turn.
    cpu: u32,
}

#[derive(Debug)]
struct Timeline {
    dir: std::path::PathBuf,
    recs: Vec<Rec>,
    cur: Rec,
    /// Counters at the previous media pass (packets timed, datagrams read, samples).
    last: (u64, u64, u64),
}

/// The process-wide origin of the timelines, and its `CLOCK_MONOTONIC` reading in ns.
fn origin() -> (Instant, u64) {
    static ORIGIN: std::sync::OnceLock<(Instant, u64)> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the kernel writes the local `timespec` we pass and keeps no pointer to it.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) } == 0;
        let ns = if ok {
            u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
                + u64::try_from(ts.tv_nsec).unwrap_or(0)
        } else {
            0
        };
        (Instant::now(), ns)
    })
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

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
    timeline: Option<Timeline>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct LoopProbe(Option<Box<Inner>>);

impl LoopProbe {
    /// On when `SIPMETER_STALL_MS` holds a number of ms (fractions allowed), or when
    /// `SIPMETER_TIMELINE` names a directory.
    pub fn from_env(shard: usize) -> Self {
        let ms = std::env::var("SIPMETER_STALL_MS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0);
        let timeline = std::env::var_os("SIPMETER_TIMELINE").filter(|v| !v.is_empty());
        Self::new(shard, ms, timeline.map(Into::into))
    }

    /// Prints stalls over `stall_ms` (when given) and records the timeline into `timeline`
    /// (a directory, when given); off when neither is.
    pub fn new(shard: usize, stall_ms: Option<f64>, timeline: Option<std::path::PathBuf>) -> Self {
        let ms = stall_ms;
        let timeline = timeline.map(|dir| Timeline {
            dir,
            recs: Vec::with_capacity(1 << 16),
            cur: Rec::default(),
            last: (0, 0, 0),
        });
        if ms.is_none() && timeline.is_none() {
            return Self(None);
        }
        origin();
        Self(Some({
            let now = Instant::now();
            Box::new(Inner {
                shard,
                // Only the timeline: no stall is printed.
                threshold: ms.map_or(Duration::MAX, |ms| Duration::from_secs_f64(ms / 1000.0)),
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
                timeline,
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
        if let Some(tl) = p.timeline.as_mut() {
            let c = &mut tl.cur;
            match what {
                "flush" => c.flush_us += us(d),
                "sip timers" => {
                    c.sip_timers += n as u32;
                    c.sip_timers_us += us(d);
                }
                "media" => c.media_us += us(d),
                "net" => c.net_us += us(d),
                "sip rx" | "sip rx (coalesced)" => {
                    c.sip_rx += n as u32;
                    c.sip_rx_us += us(d);
                }
                _ => c.other_us += us(d),
            }
        }
        if n > 0 || d >= Duration::from_micros(100) {
            p.parts.push((what, d, n));
        }
        p.last_mark = now;
    }

    /// A media pass ran `n` calls' media (the part since the last mark); `timing`, the
    /// datagrams read and the samples taken so far tell the timeline what it did.
    pub fn paced(&mut self, n: usize, timing: &mut SendTiming, received: u64, samples: u64) {
        let Some(p) = self.0.as_deref_mut() else {
            return;
        };
        if n > 0 {
            let last = p.passes.len() - 1;
            p.passes[n.min(last)] += 1;
        }
        if let Some(tl) = p.timeline.as_mut() {
            let recent = timing.take_recent();
            let c = &mut tl.cur;
            if recent.min_us != u64::MAX {
                let min = u32::try_from(recent.min_us).unwrap_or(u32::MAX);
                c.late_min_us = if c.sent == 0 {
                    min
                } else {
                    c.late_min_us.min(min)
                };
            }
            c.calls += n as u32;
            c.sent += (timing.count - tl.last.0) as u32;
            c.reads += (received - tl.last.1) as u32;
            c.samples += (samples - tl.last.2) as u32;
            c.late_max_us = c
                .late_max_us
                .max(u32::try_from(recent.max_us).unwrap_or(u32::MAX));
            c.late_over_1ms += recent.over_1ms as u32;
            tl.last = (timing.count, received, samples);
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
        if let Some(tl) = p.timeline.as_mut() {
            let mut c = std::mem::take(&mut tl.cur);
            c.t_us = u64::try_from(
                p.turn_start
                    .saturating_duration_since(origin().0)
                    .as_micros(),
            )
            .unwrap_or(u64::MAX);
            c.woke_late_us = us(woke_late);
            c.work_us = us(worked);
            c.cpu_us = us(u.cpu.saturating_sub(p.usage.cpu));
            c.runq_us = us(u.run_delay.saturating_sub(p.usage.run_delay));
            c.vcsw = (u.voluntary - p.usage.voluntary) as u32;
            c.ivcsw = (u.involuntary - p.usage.involuntary) as u32;
            c.minflt = (u.minor_faults - p.usage.minor_faults) as u32;
            // SAFETY: no arguments; returns the calling thread's CPU or -1.
            c.cpu = u32::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(u32::MAX);
            tl.recs.push(c);
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
        if let Some(tl) = p.timeline.as_ref() {
            let path = tl.dir.join(format!("timeline-shard{}.tsv", p.shard));
            if let Err(e) = write_timeline(&path, &tl.recs) {
                eprintln!("timeline: cannot write {}: {e}", path.display());
            }
        }
        if p.threshold == Duration::MAX {
            return;
        }
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

fn write_timeline(path: &std::path::Path, recs: &[Rec]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "# origin_monotonic_ns={}", origin().1)?;
    writeln!(
        w,
        "t_us\twoke_late_us\twork_us\tflush_us\tsip_timers\tsip_timers_us\tmedia_us\tcalls\tsent\tlate_min_us\tlate_max_us\tlate_over_1ms\tsamples\treads\tnet_us\tsip_rx\tsip_rx_us\tother_us\tcpu_us\trunq_us\tvcsw\tivcsw\tminflt\tcpu"
    )?;
    for r in recs {
        writeln!(
            w,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.t_us,
            r.woke_late_us,
            r.work_us,
            r.flush_us,
            r.sip_timers,
            r.sip_timers_us,
            r.media_us,
            r.calls,
            r.sent,
            r.late_min_us,
            r.late_max_us,
            r.late_over_1ms,
            r.samples,
            r.reads,
            r.net_us,
            r.sip_rx,
            r.sip_rx_us,
            r.other_us,
            r.cpu_us,
            r.runq_us,
            r.vcsw,
            r.ivcsw,
            r.minflt,
            r.cpu
        )?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeline has a row per loop turn with what its media pass did: packets sent
    /// (from the send-timing counts), their lateness, datagrams read and samples taken.
    #[test]
    fn the_timeline_records_each_turn() {
        let dir = std::env::temp_dir().join(format!(
            "sipmeter-timeline-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut timing = SendTiming::default();
        {
            let mut p = LoopProbe::new(7, None, Some(dir.clone()));
            for turn in 0..3u64 {
                p.turn();
                p.mark("flush", 0);
                p.mark("sip timers", 1);
                for us in [40, 1_500] {
                    timing.record(Duration::from_micros(us));
                }
                p.paced(2, &mut timing, 5 * (turn + 1), turn + 1);
                p.sleeping(Instant::now());
                p.woke();
            }
            p.turn();
        }
        let text = std::fs::read_to_string(dir.join("timeline-shard7.tsv")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("# origin_monotonic_ns="));
        let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), 4, "{text}");
        let col = |row: &Vec<&str>, name: &str| -> u64 {
            let i = header.iter().position(|h| *h == name).unwrap();
            row[i].parse().unwrap()
        };
        // The first row is the turn before the loop's first turn (nothing done).
        assert_eq!(col(&rows[0], "sent"), 0);
        for row in &rows[1..] {
            assert_eq!(col(row, "calls"), 2);
            assert_eq!(col(row, "sent"), 2);
            assert_eq!(col(row, "late_min_us"), 40);
            assert_eq!(col(row, "late_max_us"), 1_500);
            assert_eq!(col(row, "late_over_1ms"), 1);
            assert_eq!(col(row, "reads"), 5);
            assert_eq!(col(row, "samples"), 1);
            assert_eq!(col(row, "sip_timers"), 1);
        }
    }
}
