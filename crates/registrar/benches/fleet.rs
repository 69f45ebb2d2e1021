//! The state machines alone: N simulated phones register (with digest authentication) and
//! call each other through the registrar core, in one process, on a virtual clock, no sockets.
//! Prints transactions per second on one core and bytes of state per idle registered endpoint.
//!
//! A *transaction* is one request and its final response, run as a client transaction in the
//! sending `UserAgent` (RFC 3261 §17.1), through the registrar core (which authenticates,
//! answers, or proxies statelessly) and, for calls, as a server transaction in the called
//! `UserAgent`. Every message is printed by its sender and parsed by its receiver (the
//! registrar's forwarded copy too), and every digest is computed and verified.
//! - Registration, 2 per endpoint: REGISTER → 401; REGISTER with credentials → 200.
//! - Calls, 3 per call: INVITE → 407 (and its ACK); INVITE with credentials → 100, 180-less
//!   200 (and the 2xx ACK, end to end); BYE → 200. ACKs are messages, not transactions.
//! - The calls are made twice: first on a fresh heap (the figure includes the kernel clearing
//!   the pages the heap grows into), then again once the first round has ended ("calls again",
//!   as in a run where phones call again and again). The second round need not be free of
//!   fresh pages (mimalloc gives the pages the first round freed only to the sizes they held:
//!   on 2026-12-04 it touched 3,900 new ones at N = 10,000 until the boxes of a transaction
//!   and a call shrank, then 7). Each phase prints its page faults.
//!
//! The process is set up as `sipmeter run` sets up its own with `SIPMETER_HEAP_MB=auto`: the
//! allocator's first arena is handed over before `main` (`agent::heap`, the same file,
//! compiled in here), the part the run will need is written up front in huge pages
//! (`heap::estimate` of N endpoints and N/2 calls in flight: 76 MB at N = 10,000, ≈ 60 MB of
//! which is used), and huge pages are then off for every later fault; nothing is purged while
//! the bench runs. `SIPMETER_HEAP_MB=0` writes nothing up front: each phase then pays for its
//! fresh 4 KB pages (3–4 µs each in this VM) and runs on 4 KB pages (the TLB's reach), as
//! before 2026-12-04 16:30.
//!
//! The fake network is the harness's: its buffers are allocated once, before the count
//! starts, and the registrar's output is drained after each message it handles, as its
//! socket driver does.
//!
//! Run: `cargo bench -p registrar --bench fleet` (N = 10,000; `FLEET_N` overrides).
//! Instructions of the timed phases only:
//! `FLEET_N=1000 valgrind --tool=callgrind --toggle-collect='fleet::phase_*' <bench binary>`.
//! Those of the user agents alone (the figure's share: what they receive parsed, what they
//! send printed, the calls they are asked to make, answer and end):
//! `--toggle-collect='fleet::ua_*'` and `--toggle-collect='sip_proto::ua::UserAgent::M'` for
//! each `M` of `register`, `call`, `answer` and `hangup` instead.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use registrar::{AuthMode, Registrar, RegistrarConfig};
use sip_msg::{Host, Message, Uri};
use sip_proto::auth::Credentials;
use sip_proto::transaction::TimerConfig;
use sip_proto::ua::{CallEvent, CallId, Destination, UaEvent, UaIdentity, UaProfile, UserAgent};

/// Counts live heap bytes, to measure the state an idle endpoint keeps.
struct Counting;

/// Adds `v` to a counter. The bench runs on one thread, so a plain load and store is exact
/// here; a locked read-modify-write costs ~20 cycles, and the harness would pay it several
/// hundred times per transaction (estimate: a few % of the measured time).
fn bump(counter: &AtomicIsize, v: isize) {
    counter.store(counter.load(Ordering::Relaxed) + v, Ordering::Relaxed);
}

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most live bytes seen so far (reset before each phase): the heap the phase touches.
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// Allocations made (reallocations count as one each), for allocations per transaction.
/// Raises [`PEAK`] to the live bytes when they exceed it.
fn peak() {
    let live = LIVE.load(Ordering::Relaxed);
    if live > PEAK.load(Ordering::Relaxed) {
        PEAK.store(live, Ordering::Relaxed);
    }
}

static ALLOCS: AtomicIsize = AtomicIsize::new(0);
/// Live heap blocks: the allocator's rounding per block comes on top of the bytes counted.
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
/// Live bytes as mimalloc holds them: each block rounded up to its size class (an estimate of
/// the resident size; mimalloc keeps no header in front of a block).
static CHUNKS: AtomicIsize = AtomicIsize::new(0);

/// The size of mimalloc's block for a request of `size` bytes: its size classes as this build
/// of mimalloc (v3, from `libmimalloc-sys`) reports them with `mi_usable_size` — 8, 16, then
/// 16-byte steps up to 128, then 4 classes per power of two (160, 192, 224, 256, 320, …).
/// Checked against `mi_usable_size` for every size up to 512 KiB; larger blocks are mapped
/// apart and counted as asked (this bench has a few, none per endpoint).
fn chunk(size: usize) -> isize {
    let block = match size {
        0..=8 => 8,
        9..=128 => size.div_ceil(16) * 16,
        129..=0x8_0000 => {
            // In words: the top bit of `words - 1` and the two bits under it give the class.
            let words = size.div_ceil(8);
            let step = 1usize << ((words - 1).ilog2() - 2);
            words.div_ceil(step) * step * 8
        }
        _ => size,
    };
    block as isize
}

// The one unsafe block of the workspace: a global allocator must be an `unsafe impl`. It
// forwards to the system allocator unchanged and only counts sizes.
#[allow(unsafe_code)] // reason: measuring heap bytes per endpoint needs a counting allocator
// SAFETY: every method forwards to `MiMalloc` (the sipmeter binary's allocator) with the
// caller's arguments, so the allocator contract is upheld by `MiMalloc`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        bump(&LIVE, l.size() as isize);
        peak();
        bump(&ALLOCS, 1);
        bump(&BLOCKS, 1);
        bump(&CHUNKS, chunk(l.size()));
        // SAFETY: same contract as our caller's.
        unsafe { MiMalloc.alloc(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        bump(&LIVE, new_size as isize - l.size() as isize);
        peak();
        bump(&ALLOCS, 1);
        bump(&CHUNKS, chunk(new_size) - chunk(l.size()));
        // SAFETY: same contract as our caller's.
        unsafe { MiMalloc.realloc(p, l, new_size) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        bump(&LIVE, -(l.size() as isize));
        bump(&BLOCKS, -1);
        bump(&CHUNKS, -chunk(l.size()));
        // SAFETY: same contract as our caller's.
        unsafe { MiMalloc.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `sipmeter`'s heap set-up (crates/agent/src/heap.rs; this bench does not link the agent).
#[path = "../../agent/src/heap.rs"]
#[allow(dead_code, unused_imports)] // reason: `region` and the unit tests are the agent's
mod heap;

/// The allocator's first arena, handed over before `main`'s first allocation, as the
/// `sipmeter` binary does (crates/cli/src/main.rs).
// SAFETY: run by the C runtime before `main`; `reserve` neither allocates nor panics.
#[allow(unsafe_code)] // reason: a constructor in `.init_array`
#[unsafe(link_section = ".init_array")]
#[used]
static RESERVE: extern "C" fn() = heap::reserve;

const SECRET: &[u8] = b"bench";
const NOW_UNIX: u64 = 1_900_000_000;

/// The registrar's address (a constant: the harness must not parse it for every message).
fn reg_addr() -> SocketAddr {
    const REG: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 5060);
    REG
}

fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::new(
        [127, 0, (1 + i / 60_000) as u8, 1].into(),
        1024 + (i % 60_000) as u16,
    )
}

/// The fake network's routing table: the endpoint an address belongs to, computed from the
/// address (the inverse of [`addr_of`]), so that routing costs the harness no hashing.
struct Index {
    n: usize,
}

impl Index {
    fn of(&self, a: SocketAddr) -> Option<usize> {
        let IpAddr::V4(ip) = a.ip() else { return None };
        let [_, _, hi, _] = ip.octets();
        let i = usize::from(hi.checked_sub(1)?) * 60_000 + usize::from(a.port().checked_sub(1024)?);
        (i < self.n && addr_of(i) == a).then_some(i)
    }
}

/// Time this thread has run on a CPU (`CLOCK_THREAD_CPUTIME_ID`, exact to the nanosecond at
/// the moment of the call), so that the rate per core holds even when other processes share
/// the machine; `None` where the OS does not give it.
#[allow(unsafe_code)] // reason: clock_gettime has no safe wrapper in std
fn cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (r == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Where a phase's CPU time went: the user agents (sip-proto's state machines, with the
/// parsing of what they receive and the printing of what they send) or the in-process peer
/// (the registrar core, with the parsing of what it receives). The rest of a phase's time is
/// the harness's (its queues and routing). Counted with [`cpu_time`] around whole batches of
/// work (a few readings per round of messages), so the counting itself costs nothing
/// measurable.
#[derive(Default, Clone, Copy)]
struct Split {
    uas: Duration,
    peer: Duration,
}

impl Split {
    /// Runs `f`, adding its CPU time to the user agents' share.
    fn uas<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (r, t) = timed(f);
        self.uas += t;
        r
    }

    /// Runs `f`, adding its CPU time to the peer's share.
    fn peer<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (r, t) = timed(f);
        self.peer += t;
        r
    }
}

/// Page faults this thread has taken so far (`getrusage(RUSAGE_THREAD)`'s minor faults: a
/// fresh page of heap touched for the first time, which the kernel clears), or 0 where the
/// OS does not say.
#[allow(unsafe_code)] // reason: getrusage has no safe wrapper in std
fn page_faults() -> i64 {
    // SAFETY: rusage is plain old data, all-zero valid; getrusage writes only into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage for the duration of the call.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    if r == 0 { u.ru_minflt } else { 0 }
}

/// `f`'s result and the CPU time it took (zero where the OS gives no thread CPU clock).
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let a = cpu_time();
    let r = f();
    let t = cpu_time().zip(a).map_or(Duration::ZERO, |(b, a)| b - a);
    (r, t)
}

/// The fake network's buffers, allocated once and reused by every [`settle`]: the harness's
/// own queueing must not count against the state machines it drives.
struct Net {
    /// The messages of the current round: (from, to, bytes).
    queue: Vec<(SocketAddr, SocketAddr, Bytes)>,
    /// The messages sent while the current round is delivered (the next round).
    next: Vec<(SocketAddr, SocketAddr, Bytes)>,
}

impl Net {
    fn new(n: usize) -> Self {
        // A round holds at most about one message per endpoint.
        let mut net = Self {
            queue: Vec::with_capacity(2 * n),
            next: Vec::with_capacity(2 * n),
        };
        // Written once here: the kernel backs a fresh allocation's pages at their first
        // write, and these 96 bytes a slot (3.8 MB at N = 10,000, ~940 page faults) were
        // first written inside the count, by the phones' sends and the registrar's answers.
        for q in [&mut net.queue, &mut net.next] {
            q.resize(q.capacity(), (reg_addr(), reg_addr(), Bytes::new()));
            q.clear();
        }
        net
    }
}

/// Moves every queued message to its receiver until the network is quiet; returns how many
/// messages were delivered. Every message is printed by its sender and parsed here, as a
/// driver does with a datagram. The registrar's output is drained after each message it
/// handles, as its socket driver does (`agent::builtin`), so its queue holds one answer at a
/// time; what it sends is delivered in the next round, with the phones' messages.
///
/// Within a round the registrar's messages are delivered before the phones' (each in the
/// order sent): neither sees the other's output before the next round, so the order between
/// them changes nothing, and each side's work is timed in one piece ([`Split`]).
#[allow(clippy::too_many_arguments)] // reason: the harness's state, passed apart to borrow it apart
fn settle(
    uas: &mut [UserAgent],
    reg: &mut Registrar,
    index: &Index,
    now: Instant,
    dirty: &mut Vec<usize>,
    incoming: &mut [Option<CallId>],
    net: &mut Net,
    split: &mut Split,
) -> u64 {
    let mut messages = 0;
    let Net { queue, next } = net;
    loop {
        std::mem::swap(queue, next);
        split.uas(|| ua_send(uas, dirty, incoming, queue));
        dirty.clear();
        if queue.is_empty() {
            return messages;
        }
        messages += queue.len() as u64;
        split.peer(|| {
            for (from, _, bytes) in queue.iter_mut().filter(|(_, to, _)| *to == reg_addr()) {
                // Taken, not cloned: a clone of a `Bytes` made from a `Vec` allocates.
                let msg = Message::parse_bytes(std::mem::take(bytes)).unwrap();
                reg.handle_message(now, NOW_UNIX, msg, *from);
                while let Some((to, b)) = reg.poll_transmit() {
                    next.push((reg_addr(), to, b));
                }
            }
        });
        split.uas(|| ua_receive(uas, index, now, dirty, queue));
    }
}

/// The phones' output of a round: every message the `dirty` endpoints send, queued with its
/// destination, and the incoming calls they report. A function of its own (not inlined), as
/// [`ua_receive`], so that `valgrind --tool=callgrind --toggle-collect='fleet::ua_*'` counts the
/// user agents' share alone.
#[inline(never)]
fn ua_send(
    uas: &mut [UserAgent],
    dirty: &[usize],
    incoming: &mut [Option<CallId>],
    queue: &mut Vec<(SocketAddr, SocketAddr, Bytes)>,
) {
    for &i in dirty.iter() {
        while let Some(o) = uas[i].poll_transmit() {
            let to = match o.destination {
                Destination::Registrar | Destination::OutboundProxy => reg_addr(),
                Destination::Source(a) => a,
                Destination::Uri(u) => {
                    let s = u.as_sip().unwrap();
                    let Host::V4(ip) = s.host else {
                        unreachable!("IPv4 only")
                    };
                    SocketAddr::new(ip.into(), s.port.unwrap_or(5060))
                }
            };
            queue.push((addr_of(i), to, o.bytes));
        }
        while let Some(e) = uas[i].poll_event() {
            if let UaEvent::Call(call, CallEvent::Incoming { .. }) = e {
                incoming[i] = Some(call);
            }
        }
    }
}

/// The phones' input of a round: every message of `queue` not for the registrar, parsed and
/// handed to its endpoint, which is noted in `dirty`.
#[inline(never)]
fn ua_receive(
    uas: &mut [UserAgent],
    index: &Index,
    now: Instant,
    dirty: &mut Vec<usize>,
    queue: &mut Vec<(SocketAddr, SocketAddr, Bytes)>,
) {
    for (from, to, bytes) in queue.drain(..).filter(|(_, to, _)| *to != reg_addr()) {
        if let Some(i) = index.of(to) {
            let msg = Message::parse_bytes(bytes).unwrap();
            uas[i].handle_message(now, msg, from);
            dirty.push(i);
        }
    }
}

/// The timed registration phase (a function of its own so that
/// `valgrind --tool=callgrind --toggle-collect='fleet::phase_*'` counts exactly it).
#[inline(never)]
fn phase_register(
    uas: &mut [UserAgent],
    reg: &mut Registrar,
    index: &Index,
    now: Instant,
    net: &mut Net,
    split: &mut Split,
) -> u64 {
    let mut dirty: Vec<usize> = (0..uas.len()).collect();
    split.uas(|| {
        for ua in uas.iter_mut() {
            ua.register(now);
        }
    });
    settle(
        uas,
        reg,
        index,
        now,
        &mut dirty,
        &mut vec![None; uas.len()],
        net,
        split,
    )
}

/// The timed call phase: the first half calls the second half; answered, then hung up.
/// Run twice: on a fresh heap, then again after the first round's state has ended (on the
/// heap the first round grew, as in a run where phones call again and again).
#[inline(never)]
fn phase_calls(
    uas: &mut [UserAgent],
    reg: &mut Registrar,
    index: &Index,
    now: Instant,
    net: &mut Net,
    split: &mut Split,
) -> (u64, Vec<CallId>) {
    let half = uas.len() / 2;
    let calls: Vec<CallId> = split.uas(|| {
        (uas.iter_mut().take(half).enumerate())
            .map(|(i, ua)| {
                let target = Uri::parse(&format!("sip:u{}@bench.test", i + half)).unwrap();
                ua.call(now, target, Some(Bytes::from_static(b"v=0\r\n")))
            })
            .collect()
    });
    let mut dirty: Vec<usize> = (0..half).collect();
    let mut incoming = vec![None; uas.len()];
    let mut messages = settle(uas, reg, index, now, &mut dirty, &mut incoming, net, split);
    // Answer every incoming call (the callees saw Incoming events, drained above).
    split.uas(|| {
        for (ua, call) in uas.iter_mut().zip(&incoming).skip(half) {
            let call = call.expect("every callee saw its call");
            ua.answer(now, call, Some(Bytes::from_static(b"v=0\r\n")));
        }
    });
    let mut dirty: Vec<usize> = (half..uas.len()).collect();
    messages += settle(uas, reg, index, now, &mut dirty, &mut incoming, net, split);
    split.uas(|| {
        for (i, c) in calls.iter().enumerate() {
            uas[i].hangup(now, *c);
        }
    });
    let mut dirty: Vec<usize> = (0..half).collect();
    messages += settle(uas, reg, index, now, &mut dirty, &mut incoming, net, split);
    (messages, calls)
}

/// Turns transparent huge pages off for this process, as `sipmeter run` does for its own
/// (crates/agent/src/callmedia/thp.rs): mimalloc asks for huge pages on its arenas, and with
/// THP in `madvise` mode the first touch of each fresh 2 MB of heap zeroes a whole huge page.
/// Left on, that zeroing was 2–28 % of this bench's samples from run to run (`clear_page_erms`),
/// which measures the kernel's page policy, not the state machines; the product runs without it.
#[allow(unsafe_code)] // reason: prctl(PR_SET_THP_DISABLE) has no safe wrapper in std
fn disable_huge_pages() {
    // SAFETY: prctl with integer arguments only; PR_SET_THP_DISABLE reads no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        eprintln!(
            "fleet: huge pages stay on ({}); figures include huge-page zeroing",
            std::io::Error::last_os_error()
        );
    }
}

fn main() {
    let n: usize = std::env::var("FLEET_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // As `sipmeter run` does before its shards start (crates/agent/src/engine.rs).
    let t = Instant::now();
    // The run's estimate unless SIPMETER_HEAP_MB says otherwise (`sipmeter run` writes
    // nothing unless it is set: see heap.rs).
    let estimate = || heap::estimate(n, n / 2, 0);
    let written = heap::prefault(heap::asked(estimate).unwrap_or_else(estimate));
    let prefault_time = t.elapsed();
    disable_huge_pages();
    let _hold = heap::Hold::new();
    let mut reg = Registrar::new(RegistrarConfig {
        domain: "bench.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth: AuthMode::Ephemeral,
        secret: SECRET.to_vec(),
        min_expires: 60,
        max_expires: 3600,
    });
    // The fake network's routing table is the harness's, not state of an endpoint.
    let index = Index { n };
    let mut net = Net::new(n);
    let before = LIVE.load(Ordering::Relaxed);
    let blocks_before = BLOCKS.load(Ordering::Relaxed);
    let chunks_before = CHUNKS.load(Ordering::Relaxed);
    // One profile for the group, shared by every phone (as the agent's engine does).
    let profile = Arc::new(UaProfile {
        domain: "bench.test".into(),
        registrar_uri: Uri::parse("sip:127.0.0.1:5060;transport=udp").unwrap(),
        outbound_proxy: None,
        transport: "UDP".into(),
        reliable: false,
        expires: 3600,
        timers: TimerConfig::default(),
        user_agent: "sipmeter-bench".into(),
        use_100rel: false,
        session_timer: None,
        codecs: None,
        srtp: sip_proto::ua::SrtpPolicy::Off,
        caller: Default::default(),
    });
    let mut uas: Vec<UserAgent> = (0..n)
        .map(|i| {
            let a = addr_of(i);
            let user = format!("u{i}");
            let (u, p) = sip_auth::ephemeral::issue(SECRET, &user, NOW_UNIX + 3600);
            UserAgent::with_profile(
                profile.clone(),
                UaIdentity {
                    user,
                    credentials: Some(Credentials::new(&u, &p)),
                    local_host: Host::V4(match a.ip() {
                        std::net::IpAddr::V4(v4) => v4,
                        std::net::IpAddr::V6(_) => unreachable!("IPv4 only"),
                    }),
                    local_port: a.port(),
                    seed: i as u64,
                },
            )
        })
        .collect();
    let now = Instant::now();

    // Phase 1: everyone registers (REGISTER, 401, REGISTER with credentials, 200).
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let l0 = LIVE.load(Ordering::Relaxed);
    PEAK.store(l0, Ordering::Relaxed);
    let (t0, c0, f0) = (Instant::now(), cpu_time(), page_faults());
    let mut reg_split = Split::default();
    let reg_msgs = phase_register(&mut uas, &mut reg, &index, now, &mut net, &mut reg_split);
    let (reg_time, reg_cpu) = (t0.elapsed(), cpu_time().zip(c0).map(|(b, a)| b - a));
    let reg_faults = page_faults() - f0;
    let reg_allocs = ALLOCS.load(Ordering::Relaxed) - a0;
    let reg_peak = PEAK.load(Ordering::Relaxed) - l0;
    let reg_kept = LIVE.load(Ordering::Relaxed) - l0;
    let registered = uas
        .iter()
        .filter(|u| matches!(u.registration(), sip_proto::ua::RegState::Registered { .. }))
        .count();
    assert_eq!(registered, n, "every endpoint registered");
    // Let the finished REGISTER transactions end (Timer K = T4) so what remains is the idle
    // state: the agent and its registration, and the registrar's binding.
    let later = now + Duration::from_secs(10);
    for ua in uas.iter_mut() {
        ua.handle_timeout(later);
        while ua.poll_event().is_some() {}
    }
    let after = LIVE.load(Ordering::Relaxed);
    let blocks_after = BLOCKS.load(Ordering::Relaxed);
    let chunks_after = CHUNKS.load(Ordering::Relaxed);

    // Phase 2: the first half calls the second half; answered, then hung up.
    let a1 = ALLOCS.load(Ordering::Relaxed);
    let l1 = LIVE.load(Ordering::Relaxed);
    PEAK.store(l1, Ordering::Relaxed);
    let (t1, c1, f1) = (Instant::now(), cpu_time(), page_faults());
    let mut call_split = Split::default();
    let (messages, calls) = phase_calls(&mut uas, &mut reg, &index, now, &mut net, &mut call_split);
    let (call_time, call_cpu) = (t1.elapsed(), cpu_time().zip(c1).map(|(b, a)| b - a));
    let call_faults = page_faults() - f1;
    let call_allocs = ALLOCS.load(Ordering::Relaxed) - a1;
    let call_peak = PEAK.load(Ordering::Relaxed) - l1;
    let call_kept = LIVE.load(Ordering::Relaxed) - l1;
    let half = n / 2;
    let ended = (0..half)
        .filter(|&i| uas[i].call_state(calls[i]) == Some(sip_proto::ua::CallState::Terminated))
        .count();
    assert_eq!(ended, half, "every call set up and torn down");

    // Phase 3: the same calls again once the first round's transactions and calls have ended
    // (Timers D/J/K/M, 64 × T1), on the heap the first round grew (some fresh pages are still
    // touched: see the top of this file).
    let later = now + Duration::from_secs(60);
    for ua in uas.iter_mut() {
        ua.handle_timeout(later);
        while ua.poll_event().is_some() {}
    }
    let a2 = ALLOCS.load(Ordering::Relaxed);
    let (t2, c2, f2) = (Instant::now(), cpu_time(), page_faults());
    let mut again_split = Split::default();
    let (messages2, calls2) = phase_calls(
        &mut uas,
        &mut reg,
        &index,
        later,
        &mut net,
        &mut again_split,
    );
    let (again_time, again_cpu) = (t2.elapsed(), cpu_time().zip(c2).map(|(b, a)| b - a));
    let again_faults = page_faults() - f2;
    let again_allocs = ALLOCS.load(Ordering::Relaxed) - a2;
    let ended = (0..half)
        .filter(|&i| uas[i].call_state(calls2[i]) == Some(sip_proto::ua::CallState::Terminated))
        .count();
    assert_eq!(
        ended, half,
        "every call of the second round set up and torn down"
    );

    // Transactions (see the top of this file): 2 per registration, 3 per call.
    let reg_txns = 2.0 * n as f64;
    let call_txns = 3.0 * half as f64;
    println!("fleet: {n} endpoints, one core, virtual clock, registrar core in process");
    match written {
        Ok(0) => println!(
            "  heap: nothing written up front (SIPMETER_HEAP_MB=0, or no region): 4 KB pages, faulted in by the phases"
        ),
        Ok(b) => println!(
            "  heap: {} MB written up front in huge pages in {:.0} ms, before the count (SIPMETER_HEAP_MB=0: none)",
            b >> 20,
            prefault_time.as_secs_f64() * 1e3
        ),
        Err(e) => {
            println!("  heap: not written up front ({e}): 4 KB pages, faulted in by the phases")
        }
    }
    // Rates per second of CPU time of this thread when the OS reports it (the machine may be
    // shared), else per second of wall-clock time.
    let clock = if reg_cpu.is_some() { "CPU" } else { "wall" };
    let (reg_t, call_t) = (reg_cpu.unwrap_or(reg_time), call_cpu.unwrap_or(call_time));
    println!(
        "  register: {reg_txns} transactions ({reg_msgs} messages) in {:.3} s {clock} ({:.3} s wall) = {:.0} transactions/s, {:.0} allocations each",
        reg_t.as_secs_f64(),
        reg_time.as_secs_f64(),
        reg_txns / reg_t.as_secs_f64(),
        reg_allocs as f64 / reg_txns
    );
    println!(
        "  calls:    {half} calls, {call_txns} transactions ({messages} messages) in {:.3} s {clock} ({:.3} s wall) = {:.0} transactions/s, {:.0} allocations each",
        call_t.as_secs_f64(),
        call_time.as_secs_f64(),
        call_txns / call_t.as_secs_f64(),
        call_allocs as f64 / call_txns
    );
    let again_t = again_cpu.unwrap_or(again_time);
    println!(
        "  calls again (on the heap the first round grew): {call_txns} transactions ({messages2} messages) in {:.3} s {clock} ({:.3} s wall) = {:.0} transactions/s, {:.0} allocations each",
        again_t.as_secs_f64(),
        again_time.as_secs_f64(),
        call_txns / again_t.as_secs_f64(),
        again_allocs as f64 / call_txns
    );
    println!(
        "  both:     {} transactions in {:.3} s {clock} = {:.0} transactions/s per core",
        reg_txns + call_txns,
        (reg_t + call_t).as_secs_f64(),
        (reg_txns + call_txns) / (reg_t + call_t).as_secs_f64()
    );
    // Where the time went, phase by phase: the user agents (the state machines this bench is
    // about, both ends of a call), the registrar they talk through, and the harness; and the
    // fresh pages of heap the phase touched (each a page fault the kernel clears, counted in
    // the time of whichever side touched it first).
    for (name, split, total, faults) in [
        ("register", reg_split, reg_t, reg_faults),
        ("calls", call_split, call_t, call_faults),
        ("calls again", again_split, again_t, again_faults),
    ] {
        println!(
            "    {name}: user agents {:.3} s, registrar peer {:.3} s, harness {:.3} s; {faults} page faults",
            split.uas.as_secs_f64(),
            split.peer.as_secs_f64(),
            total.saturating_sub(split.uas + split.peer).as_secs_f64()
        );
    }
    let uas_t = reg_split.uas + call_split.uas;
    let uas_again_t = reg_split.uas + again_split.uas;
    println!(
        "  the user agents alone (sip-proto's state machines, with parsing what they receive and printing what they send; without the registrar peer and the harness): {:.0} transactions/s per core ({:.0} with the calls made again)",
        (reg_txns + call_txns) / uas_t.as_secs_f64(),
        (reg_txns + call_txns) / uas_again_t.as_secs_f64()
    );
    // The heap a burst touches: messages and transactions in flight for every endpoint at once.
    println!(
        "  heap in flight at the peak: register {:.0} bytes per endpoint, calls {:.0} bytes per call",
        reg_peak as f64 / n as f64,
        call_peak as f64 / half as f64
    );
    // What is still held when the phase ends (finished transactions waiting out Timers
    // D/K/M/J, ended calls not yet forgotten): part of the peak, and what the next burst
    // adds to.
    println!(
        "  heap kept at the end of the phase: register {:.0} bytes per endpoint, calls {:.0} bytes per call",
        reg_kept as f64 / n as f64,
        call_kept as f64 / half as f64
    );
    // The registrar's share: what dropping it frees (its bindings are those of the idle
    // phase: calls add none, and its output queue is empty).
    let (with_reg, blocks_with_reg, chunks_with_reg) = (
        LIVE.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
        CHUNKS.load(Ordering::Relaxed),
    );
    drop(reg);
    let reg_bytes = (with_reg - LIVE.load(Ordering::Relaxed)) as f64 / n as f64;
    let reg_blocks = (blocks_with_reg - BLOCKS.load(Ordering::Relaxed)) as f64 / n as f64;
    let blocks = (blocks_after - blocks_before) as f64 / n as f64;
    let reg_chunks = (chunks_with_reg - CHUNKS.load(Ordering::Relaxed)) as f64 / n as f64;
    let chunks = (chunks_after - chunks_before) as f64 / n as f64;
    let total = (after - before) as f64 / n as f64;
    println!(
        "  state per idle registered endpoint: {total:.0} bytes (heap and inline, counted by the allocator): UserAgent {:.0} + the registrar's binding of it {reg_bytes:.0}",
        total - reg_bytes
    );
    println!(
        "    in {blocks:.1} heap blocks per endpoint (UserAgent {:.1} + binding {reg_blocks:.1}); with mimalloc's size-class rounding per block: {chunks:.0} bytes (UserAgent {:.0} + binding {reg_chunks:.0})",
        blocks - reg_blocks,
        chunks - reg_chunks
    );
}
