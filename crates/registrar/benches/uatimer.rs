//! One caller `UserAgent` and one callee `UserAgent`, back to back on a virtual clock (no
//! sockets), as the engine drives them: after every message or timer of an agent, its
//! `poll_timeout` is asked. Calls are set up and hung up one after another, 0.5 s apart, so
//! each agent holds the finished transactions of the last calls (Timers K/M/L/J, RFC 6026)
//! while new calls run: about 64 calls' worth at a time.
//!
//! Run: `cargo bench -p registrar --bench uatimer` (CALLS = 2,000; `UATIMER_CALLS` overrides).
//! Instructions of the measured phases only:
//! `valgrind --tool=callgrind --toggle-collect='uatimer::phase_*' <bench binary>`.
//! - `phase_calls`: the calls, every message parsed and printed, every timer fired.
//! - `phase_poll`: `poll_timeout` alone, asked 100,000 times of each agent holding the
//!   finished transactions of 60 calls.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mimalloc::MiMalloc;
use sip_msg::{Host, Message, Uri};
use sip_proto::timer::TimerConfig;
use sip_proto::ua::{CallEvent, CallId, CallState, UaConfig, UaEvent, UserAgent};

/// A new call every half second: with Timer M/L/J at 64*T1 = 32 s, an agent holds the
/// finished transactions of about 64 calls.
const SPACING: Duration = Duration::from_millis(500);

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const ALICE: &str = "127.0.0.1:5061";
const BOB: &str = "127.0.0.1:5062";

fn config(user: &str, port: u16, seed: u64) -> UaConfig {
    UaConfig {
        user: user.into(),
        domain: "example.test".into(),
        registrar_uri: Uri::parse("sip:example.test:5060;transport=udp").expect("uri"),
        outbound_proxy: None,
        credentials: None,
        local_host: Host::parse("127.0.0.1").expect("host"),
        local_port: port,
        transport: "UDP".into(),
        reliable: false,
        expires: 300,
        timers: TimerConfig::default(),
        user_agent: "sipmeter-bench".into(),
        seed,
        use_100rel: false,
        session_timer: None,
        codecs: None,
    }
}

struct Pair {
    now: Instant,
    a: UserAgent,
    b: UserAgent,
    /// (deliver at, to b?, bytes), 0.1 ms one way.
    wire: Vec<(Instant, bool, Bytes)>,
    incoming: Vec<CallId>,
    answered: Vec<CallId>,
    wakes: Vec<Option<Instant>>,
    incoming_seen: Vec<CallId>,
    /// Calls not yet forgotten: (handle, in Alice?).
    live: Vec<(CallId, bool)>,
}

impl Pair {
    /// Takes what both agents queued, asking each one's next deadline (as the engine does
    /// after every event of an endpoint).
    fn collect(&mut self) {
        for (from_a, ua) in [(true, &mut self.a), (false, &mut self.b)] {
            while let Some(o) = ua.poll_transmit() {
                self.wire
                    .push((self.now + Duration::from_micros(100), from_a, o.bytes));
            }
            while let Some(ev) = ua.poll_event() {
                match ev {
                    UaEvent::Call(id, CallEvent::Incoming { .. }) => self.incoming.push(id),
                    UaEvent::Call(id, CallEvent::Answered { .. }) => self.answered.push(id),
                    _ => {}
                }
            }
            self.wakes.push(ua.poll_timeout());
        }
    }

    fn run(&mut self, until: Duration) {
        let end = self.now + until;
        loop {
            self.collect();
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let next = [next_wire, self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|&n| n <= end) else {
                break;
            };
            self.now = next.max(self.now);
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= self.now);
            self.wire = rest;
            for (_, to_b, bytes) in due {
                let m = Message::parse(&bytes).expect("our own message parses");
                if to_b {
                    self.b
                        .handle_message(self.now, m, ALICE.parse().expect("addr"));
                } else {
                    self.a
                        .handle_message(self.now, m, BOB.parse().expect("addr"));
                }
                self.collect();
            }
            for ua in [&mut self.a, &mut self.b] {
                if ua.poll_timeout().is_some_and(|t| t <= self.now) {
                    ua.handle_timeout(self.now);
                }
            }
        }
        self.now = end;
    }
}

/// `calls` calls, each set up, answered and hung up; a new one every [`SPACING`].
#[inline(never)]
fn phase_calls(p: &mut Pair, calls: usize) -> usize {
    let bob: Uri = Uri::parse("sip:bob@127.0.0.1:5062").expect("uri");
    let mut done = 0;
    for _ in 0..calls {
        let call =
            p.a.call(p.now, bob.clone(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_micros(1500));
        for id in p.incoming.drain(..) {
            p.incoming_seen.push(id);
            p.b.answer(p.now, id, Some(Bytes::from_static(b"v=0\r\n")));
        }
        p.run(Duration::from_micros(300));
        if p.answered.contains(&call) {
            p.a.hangup(p.now, call);
            done += 1;
        }
        p.answered.clear();
        // Every finished call is forgotten (as the engine does); its transactions stay.
        p.live.push((call, true));
        p.live
            .extend(p.incoming_seen.drain(..).map(|id| (id, false)));
        let (a, b) = (&mut p.a, &mut p.b);
        p.live.retain(|&(id, caller)| {
            let ua = if caller { &mut *a } else { &mut *b };
            let ended = ua.call_state(id) == Some(CallState::Terminated);
            if ended {
                ua.forget_call(id);
            }
            !ended
        });
        p.run(SPACING - Duration::from_micros(1800));
    }
    done
}

#[inline(never)]
fn phase_poll(p: &Pair, n: usize) -> Option<Instant> {
    let mut earliest = None;
    for _ in 0..n {
        let t = [
            black_box(&p.a).poll_timeout(),
            black_box(&p.b).poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        earliest = earliest.min(t).or(t);
    }
    earliest
}

fn main() {
    let calls: usize = std::env::var("UATIMER_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let mut p = Pair {
        now: Instant::now(),
        a: UserAgent::new(config("alice", 5061, 1)),
        b: UserAgent::new(config("bob", 5062, 2)),
        wire: Vec::new(),
        incoming: Vec::new(),
        answered: Vec::new(),
        wakes: Vec::new(),
        incoming_seen: Vec::new(),
        live: Vec::new(),
    };
    let t0 = Instant::now();
    let done = phase_calls(&mut p, calls);
    let took = t0.elapsed();
    assert_eq!(done, calls, "every call was answered");
    println!(
        "calls: {done} in {:.3} s ({:.1} µs per call, {} poll_timeout asked)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / done as f64,
        p.wakes.len()
    );
    // 60 finished calls held, then asked alone.
    let mut q = Pair {
        now: p.now,
        a: UserAgent::new(config("alice", 5061, 3)),
        b: UserAgent::new(config("bob", 5062, 4)),
        wire: Vec::new(),
        incoming: Vec::new(),
        answered: Vec::new(),
        wakes: Vec::new(),
        incoming_seen: Vec::new(),
        live: Vec::new(),
    };
    phase_calls(&mut q, 60);
    let n = 100_000;
    let t0 = Instant::now();
    let earliest = phase_poll(&q, n);
    let took = t0.elapsed();
    assert!(
        earliest.is_some(),
        "finished transactions wait out their timers"
    );
    println!(
        "poll_timeout with 60 finished calls held: {:.1} ns per agent",
        took.as_secs_f64() * 1e9 / (2 * n) as f64
    );
}
