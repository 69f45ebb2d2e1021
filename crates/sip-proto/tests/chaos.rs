//! Property-style tests of two user agents and a registrar over a seeded lossy network
//! (issue #3): loss, duplication, reordering (uniform random delay) on a virtual clock.
//!
//! Each test runs the same flow over many seeds; a failure names the seed, which replays the
//! run exactly (the agents and the network draw from seeded RNGs, nothing reads the clock).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sip_msg::{Header, HeaderName, Host, Message, Method, Uri};
use sip_proto::timer::TimerConfig;
use sip_proto::ua::{CallEvent, CallId, CallState, Destination, UaConfig, UaEvent, UserAgent};

const SEEDS: u64 = 200;

/// Node indices on the virtual network.
const ALICE: usize = 0;
const BOB: usize = 1;
const REGISTRAR: usize = 2;

fn addr(node: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5061 + node as u16))
}

fn node_of(a: &SocketAddr) -> usize {
    (a.port() - 5061) as usize
}

fn config(user: &str, node: usize, seed: u64, use_100rel: bool) -> UaConfig {
    UaConfig {
        user: user.into(),
        domain: "example.test".into(),
        registrar_uri: Uri::parse("sip:example.test:5063;transport=udp").unwrap(),
        outbound_proxy: None,
        credentials: None,
        local_host: Host::parse("127.0.0.1").unwrap(),
        local_port: addr(node).port(),
        transport: "UDP".into(),
        reliable: false,
        expires: 300,
        timers: TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        },
        user_agent: "sipmeter-chaos".into(),
        seed,
        use_100rel,
        session_timer: None,
        codecs: None,
    }
}

/// The network's behaviour, per message.
#[derive(Debug, Clone, Copy)]
struct Impairment {
    /// Probability a copy is lost.
    loss: f64,
    /// Probability a message is delivered twice (each copy with its own delay).
    dup: f64,
    /// One-way delay, uniform in `[min, max]` ms: messages overtake each other.
    delay_ms: (u64, u64),
    /// Bound on the loss: a given byte string (a message and its identical retransmissions)
    /// is never dropped more than this many times, so every exchange must complete.
    max_losses_per_message: usize,
}

const CHAOS: Impairment = Impairment {
    loss: 0.10,
    dup: 0.10,
    delay_ms: (0, 200),
    max_losses_per_message: 3,
};

/// One datagram as sent: (from, to, bytes).
type Sent = (usize, usize, Bytes);

struct Net {
    rng: SmallRng,
    imp: Impairment,
    now: Instant,
    start: Instant,
    alice: UserAgent,
    bob: UserAgent,
    /// (deliver at, insertion order, from, to, bytes)
    wire: Vec<(Instant, u64, usize, usize, Bytes)>,
    order: u64,
    events: [Vec<(Instant, UaEvent)>; 2],
    sent: Vec<Sent>,
    losses: HashMap<Bytes, usize>,
    /// Messages delivered to each agent, in delivery order: (to, summary).
    delivered: Vec<(usize, String)>,
    /// Initial INVITEs (no To tag) delivered to Bob, copies included.
    delivered_invites: usize,
    /// Drop everything from `.0` to `.1` (for timeout tests).
    blackhole: Option<(usize, usize)>,
}

impl Net {
    fn new(seed: u64, imp: Impairment, use_100rel: bool) -> Self {
        let now = Instant::now();
        Self {
            rng: SmallRng::seed_from_u64(seed),
            imp,
            now,
            start: now,
            alice: UserAgent::new(config("alice", ALICE, seed.wrapping_mul(2) + 1, use_100rel)),
            bob: UserAgent::new(config("bob", BOB, seed.wrapping_mul(2) + 2, use_100rel)),
            wire: Vec::new(),
            order: 0,
            events: [Vec::new(), Vec::new()],
            sent: Vec::new(),
            losses: HashMap::new(),
            blackhole: None,
            delivered_invites: 0,
            delivered: Vec::new(),
        }
    }

    fn ua(&mut self, node: usize) -> &mut UserAgent {
        if node == ALICE {
            &mut self.alice
        } else {
            &mut self.bob
        }
    }

    fn send(&mut self, from: usize, to: usize, bytes: Bytes) {
        self.sent.push((from, to, bytes.clone()));
        if self.blackhole == Some((from, to)) {
            return;
        }
        let copies = if self.rng.random_bool(self.imp.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let lost = self.losses.entry(bytes.clone()).or_default();
            if *lost < self.imp.max_losses_per_message && self.rng.random_bool(self.imp.loss) {
                *lost += 1;
                continue;
            }
            let (lo, hi) = self.imp.delay_ms;
            let at = self.now + Duration::from_millis(self.rng.random_range(lo..=hi));
            self.order += 1;
            self.wire.push((at, self.order, from, to, bytes.clone()));
        }
    }

    /// Drains both agents' outputs onto the wire; returns the new events.
    fn collect(&mut self) -> Vec<(usize, UaEvent)> {
        let mut new = Vec::new();
        for node in [ALICE, BOB] {
            while let Some(o) = self.ua(node).poll_transmit() {
                let to = match &o.destination {
                    // Initial requests also go to the registrar's address when no outbound
                    // proxy is set; here it forwards them straight to the other agent.
                    Destination::Registrar if o.bytes.starts_with(b"REGISTER ") => REGISTRAR,
                    Destination::Registrar => 1 - node,
                    Destination::Source(a) => node_of(a),
                    Destination::Uri(_) | Destination::OutboundProxy => 1 - node,
                };
                self.send(node, to, o.bytes);
            }
            while let Some(e) = self.ua(node).poll_event() {
                self.events[node].push((self.now, e.clone()));
                new.push((node, e));
            }
        }
        new
    }

    /// The registrar: stateless, answers every REGISTER 200 with the binding.
    fn registrar(&mut self, from: usize, req: &Message) {
        if req.method() != Some(Method::Register) {
            return;
        }
        let mut resp = Message::response_to(req, 200, "OK", Some("reg"));
        if let Some(c) = req.headers.value(&HeaderName::Contact) {
            resp.headers.push(Header::new("Contact", c));
        }
        let expires = req.headers.value(&HeaderName::Expires).unwrap_or("300");
        resp.headers.push(Header::new("Expires", expires));
        self.send(REGISTRAR, from, Bytes::from(resp.to_bytes()));
    }

    /// Advances the clock to the next delivery or timer at or before `end`, delivering and
    /// firing what is due; returns false when nothing is due before `end`.
    fn step(&mut self, end: Instant) -> bool {
        let next_wire = self.wire.iter().map(|w| w.0).min();
        let next = [
            next_wire,
            self.alice.poll_timeout(),
            self.bob.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next.filter(|&n| n <= end) else {
            self.now = end.max(self.now);
            return false;
        };
        self.now = next.max(self.now);
        let mut due: Vec<_> = Vec::new();
        self.wire.retain(|w| {
            if w.0 <= self.now {
                due.push(w.clone());
                false
            } else {
                true
            }
        });
        due.sort_by_key(|w| (w.0, w.1));
        for (_, _, from, to, bytes) in due {
            let m = Message::parse(&bytes).expect("agents send parseable messages");
            if to == REGISTRAR {
                self.registrar(from, &m);
            } else {
                self.delivered.push((to, m.summary()));
                if to == BOB
                    && m.method() == Some(Method::Invite)
                    && m.to().is_some_and(|t| t.tag().is_none())
                {
                    self.delivered_invites += 1;
                }
                let now = self.now;
                self.ua(to).handle_message(now, m, addr(from));
            }
        }
        let now = self.now;
        self.alice.handle_timeout(now);
        self.bob.handle_timeout(now);
        true
    }

    /// Requests (other than ACK) sent by `node`, grouped by top Via branch: (method, sends).
    fn request_sends(&self, node: usize) -> HashMap<String, (Method, usize)> {
        let mut by_branch: HashMap<String, (Method, usize)> = HashMap::new();
        for (from, _, bytes) in &self.sent {
            let m = Message::parse(bytes).unwrap();
            let Some(method) = m.method() else { continue };
            if *from != node || method == Method::Ack {
                continue;
            }
            let branch = m.top_via().and_then(|v| v.branch());
            let e = by_branch
                .entry(branch.expect("every request has a branch"))
                .or_insert((method, 0));
            e.1 += 1;
        }
        by_branch
    }

    /// True when a message whose summary starts with `first` reached `node` before any
    /// starting with `then` (and `first` arrived at all).
    fn first_before(&self, node: usize, first: &str, then: &str) -> bool {
        let pos = |p: &str| {
            self.delivered
                .iter()
                .position(|(to, s)| *to == node && s.starts_with(p))
        };
        match (pos(first), pos(then)) {
            (Some(f), Some(t)) => f < t,
            (Some(_), None) => true,
            _ => false,
        }
    }

    fn call_events(&self, node: usize) -> Vec<&CallEvent> {
        self.events[node]
            .iter()
            .filter_map(|(_, e)| match e {
                UaEvent::Call(_, c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn count(&self, node: usize, f: impl Fn(&CallEvent) -> bool) -> usize {
        self.call_events(node).into_iter().filter(|c| f(c)).count()
    }
}

/// What one run of the full flow produced.
struct Outcome {
    net: Net,
    alice_call: Option<CallId>,
    bob_call: Option<CallId>,
}

/// Both register; once both are registered Alice calls Bob; Bob rings at once and answers
/// 300 ms later; Alice hangs up 500 ms after the answer. Runs 60 s of virtual time.
fn full_flow(seed: u64, imp: Impairment, use_100rel: bool) -> Outcome {
    let mut net = Net::new(seed, imp, use_100rel);
    let t0 = net.now;
    net.alice.register(t0);
    net.bob.register(t0);
    let end = t0 + Duration::from_secs(60);
    let mut registered = [false, false];
    let mut alice_call = None;
    let mut bob_call = None;
    let mut answer_at = None;
    let mut hangup_at = None;
    loop {
        for (node, e) in net.collect() {
            let now = net.now;
            match e {
                UaEvent::Registered { .. } => registered[node] = true,
                // A second Incoming would be a bug: it is counted by the assertions, not
                // answered.
                UaEvent::Call(id, CallEvent::Incoming { .. })
                    if node == BOB && bob_call.is_none() =>
                {
                    bob_call = Some(id);
                    net.bob.ring(now, id);
                    answer_at = Some(now + Duration::from_millis(300));
                }
                UaEvent::Call(_, CallEvent::Answered { .. }) if node == ALICE => {
                    hangup_at.get_or_insert(now + Duration::from_millis(500));
                }
                _ => {}
            }
        }
        let now = net.now;
        if registered == [true, true] && alice_call.is_none() {
            let uri = Uri::parse("sip:bob@127.0.0.1:5062").unwrap();
            alice_call = Some(net.alice.call(
                now,
                uri,
                Some(Bytes::from_static(b"v=0\r\ns=alice\r\n")),
            ));
            continue;
        }
        if let (Some(at), Some(id)) = (answer_at, bob_call)
            && now >= at
        {
            answer_at = None;
            net.bob
                .answer(now, id, Some(Bytes::from_static(b"v=0\r\ns=bob\r\n")));
            continue;
        }
        if let (Some(at), Some(id)) = (hangup_at, alice_call)
            && now >= at
        {
            hangup_at = Some(end + Duration::from_secs(1));
            net.alice.hangup(now, id);
            continue;
        }
        // The next action time bounds the step so scheduled commands run on time.
        let next_action = [answer_at, hangup_at.filter(|&h| h <= end)]
            .into_iter()
            .flatten()
            .min()
            .map_or(end, |a| a.min(end));
        if !net.step(next_action) && net.now >= end {
            break;
        }
    }
    net.collect();
    Outcome {
        net,
        alice_call,
        bob_call,
    }
}

/// The assertions every completed flow must satisfy.
fn assert_completed(seed: u64, o: &Outcome) {
    let net = &o.net;
    let ctx = || {
        format!(
            "seed {seed}: alice {:?}\nbob {:?}",
            net.events[0], net.events[1]
        )
    };
    let (Some(a), Some(b)) = (o.alice_call, o.bob_call) else {
        panic!("call never reached Bob: {}", ctx());
    };
    assert_eq!(
        net.alice.call_state(a),
        Some(CallState::Terminated),
        "{}",
        ctx()
    );
    assert_eq!(
        net.bob.call_state(b),
        Some(CallState::Terminated),
        "{}",
        ctx()
    );
    // Exactly one call at Bob however many INVITE copies arrived.
    assert_eq!(
        net.count(BOB, |c| matches!(c, CallEvent::Incoming { .. })),
        1,
        "{}",
        ctx()
    );
    // One answer each side, with the other side's SDP at Alice.
    assert_eq!(
        net.count(ALICE, |c| matches!(c, CallEvent::Answered { sdp: Some(s) } if s.as_ref() == b"v=0\r\ns=bob\r\n")),
        1,
        "{}",
        ctx()
    );
    // Bob reports the answer once: on the ACK, or — when every ACK copy is lost or overtaken
    // by the BYE — on the BYE, which proves the caller got the 2xx.
    assert_eq!(
        net.count(BOB, |c| matches!(c, CallEvent::Answered { .. })),
        1,
        "{}",
        ctx()
    );
    assert_eq!(
        net.count(ALICE, |c| matches!(
            c,
            CallEvent::Ended {
                by_remote: false,
                code: 200
            }
        )),
        1,
        "{}",
        ctx()
    );
    assert_eq!(
        net.count(BOB, |c| matches!(
            c,
            CallEvent::Ended {
                by_remote: true,
                ..
            }
        )),
        1,
        "{}",
        ctx()
    );
    for node in [ALICE, BOB] {
        assert_eq!(
            net.count(node, |c| matches!(c, CallEvent::Failed { .. })),
            0,
            "{}",
            ctx()
        );
        assert!(
            net.events[node]
                .iter()
                .any(|(_, e)| matches!(e, UaEvent::Registered { .. })),
            "{}",
            ctx()
        );
        assert!(
            !net.events[node]
                .iter()
                .any(|(_, e)| matches!(e, UaEvent::RegistrationFailed { .. })),
            "{}",
            ctx()
        );
    }
    assert_retransmission_bounds(seed, net);
}

/// RFC 3261 §17.1.1.2 / §17.1.2.2: with T1 = 500 ms an INVITE is sent at most 7 times before
/// Timer B (64·T1) and a non-INVITE request at most 11 times before Timer F.
fn assert_retransmission_bounds(seed: u64, net: &Net) {
    for node in [ALICE, BOB] {
        for (branch, (method, n)) in net.request_sends(node) {
            let max = if method == Method::Invite { 7 } else { 11 };
            assert!(
                n <= max,
                "seed {seed}: {method:?} {branch} sent {n} times (max {max})"
            );
        }
    }
}

#[test]
fn full_flow_completes_under_loss_duplication_and_reordering() {
    let (mut lost, mut sends, mut ack_overtaken, mut answer_overtook_180) = (0, 0, 0, 0);
    let mut max_sends = [0usize; 2];
    for seed in 0..SEEDS {
        let o = full_flow(seed, CHAOS, false);
        assert_completed(seed, &o);
        let net = &o.net;
        lost += net.losses.values().sum::<usize>();
        sends += net.sent.len();
        ack_overtaken += usize::from(!net.first_before(BOB, "ACK ", "BYE "));
        answer_overtook_180 += usize::from(!net.first_before(ALICE, "180 ", "200 OK (INVITE)"));
        for node in [ALICE, BOB] {
            for (method, n) in net.request_sends(node).into_values() {
                let i = usize::from(method != Method::Invite);
                max_sends[i] = max_sends[i].max(n);
            }
        }
    }
    eprintln!(
        "{SEEDS} runs: {sends} sends, {lost} lost copies, BYE overtook every ACK in \
         {ack_overtaken}, 200 overtook every 180 in {answer_overtook_180}, most sends of one \
         INVITE {} / non-INVITE {}",
        max_sends[0], max_sends[1]
    );
    // The impairment really bit: with 10 % loss, hundreds of copies were dropped, and the
    // reordering made answers overtake provisionals in some runs.
    assert!(
        lost > 100,
        "only {lost} losses over {SEEDS} runs ({sends} sends)"
    );
    assert!(answer_overtook_180 > 0);
}

#[test]
fn full_flow_with_100rel_completes_and_each_rseq_is_pracked_once() {
    let mut pracked = 0;
    let mut stale_180 = 0;
    for seed in 0..SEEDS {
        let o = full_flow(seed, CHAOS, true);
        assert_completed(seed, &o);
        let net = &o.net;
        // PRACK transactions Alice started, keyed by RAck; each RSeq acknowledged by one.
        let mut rack_branches: HashMap<String, HashSet<String>> = HashMap::new();
        for (from, _, bytes) in &net.sent {
            let m = Message::parse(bytes).unwrap();
            if *from == ALICE && m.method() == Some(Method::Prack) {
                let rack = m.headers.value(&HeaderName::RAck).unwrap().to_owned();
                let branch = m.top_via().unwrap().branch().unwrap();
                rack_branches.entry(rack).or_default().insert(branch);
            }
        }
        for (rack, branches) in &rack_branches {
            assert_eq!(
                branches.len(),
                1,
                "seed {seed}: RAck {rack} PRACKed by {branches:?}"
            );
        }
        let mut rseqs: Vec<u32> = net
            .call_events(ALICE)
            .iter()
            .filter_map(|c| match c {
                CallEvent::Pracked { rseq } => Some(*rseq),
                _ => None,
            })
            .collect();
        let n = rseqs.len();
        rseqs.dedup();
        assert_eq!(rseqs.len(), n, "seed {seed}: an RSeq reported twice");
        assert_eq!(
            n,
            rack_branches.len(),
            "seed {seed}: one PRACK per reported RSeq"
        );
        // Bob sends one reliable 180 (RSeq 1). Alice PRACKs it exactly when a copy reaches her
        // before the 200; a 180 that arrives after the 200 is stale and is not PRACKed.
        let expected = usize::from(net.first_before(ALICE, "180 ", "200 OK (INVITE)"));
        assert_eq!(n, expected, "seed {seed}: PRACKs {rseqs:?}");
        pracked += n;
        stale_180 += 1 - expected;
    }
    eprintln!("{SEEDS} runs with 100rel: {pracked} PRACKed 180s, {stale_180} 180s overtaken");
    // Most runs PRACK; the impairment makes some 200s overtake every copy of the 180.
    assert!(
        pracked > SEEDS as usize * 3 / 4,
        "{pracked} PRACKed, {stale_180} stale"
    );
}

#[test]
fn duplicated_invite_makes_one_incoming_call() {
    let imp = Impairment {
        loss: 0.0,
        dup: 0.5,
        delay_ms: (0, 200),
        max_losses_per_message: 0,
    };
    let mut runs_with_dup_invite = 0;
    for seed in 0..SEEDS {
        let o = full_flow(seed, imp, false);
        assert_completed(seed, &o);
        if o.net.delivered_invites > 1 {
            runs_with_dup_invite += 1;
        }
    }
    // About half the runs deliver the initial INVITE twice; each made exactly one call.
    assert!(
        runs_with_dup_invite > SEEDS / 4,
        "only {runs_with_dup_invite} runs duplicated the INVITE"
    );
}

#[test]
fn unreachable_bob_times_out_after_seven_invites() {
    for seed in 0..SEEDS {
        let mut net = Net::new(seed, CHAOS, false);
        net.blackhole = Some((ALICE, BOB));
        let uri = Uri::parse("sip:bob@127.0.0.1:5062").unwrap();
        let id = net.alice.call(net.now, uri, None);
        let end = net.now + Duration::from_secs(40);
        while {
            net.collect();
            net.step(end)
        } {}
        net.collect();
        let invites = net
            .sent
            .iter()
            .filter(|(f, _, b)| {
                *f == ALICE && Message::parse(b).unwrap().method() == Some(Method::Invite)
            })
            .count();
        assert_eq!(
            invites, 7,
            "seed {seed}: INVITE + 6 retransmissions before Timer B"
        );
        assert!(
            net.events[ALICE].iter().any(|(t, e)| matches!(
                e,
                UaEvent::TimerFired {
                    timer: sip_proto::timer::Timer::B,
                    ..
                }
            ) && *t - net.start == Duration::from_secs(32)),
            "seed {seed}: Timer B at 64·T1"
        );
        assert_eq!(
            net.count(ALICE, |c| matches!(c, CallEvent::Failed { code: 408, .. })),
            1,
            "seed {seed}"
        );
        assert_eq!(net.alice.call_state(id), Some(CallState::Terminated));
    }
}

#[test]
fn unreachable_registrar_times_out_after_eleven_registers() {
    for seed in 0..SEEDS {
        let mut net = Net::new(seed, CHAOS, false);
        net.blackhole = Some((ALICE, REGISTRAR));
        net.alice.register(net.now);
        let end = net.now + Duration::from_secs(40);
        while {
            net.collect();
            net.step(end)
        } {}
        net.collect();
        let sends = net.request_sends(ALICE);
        assert_eq!(sends.len(), 1, "seed {seed}: one REGISTER transaction");
        assert_eq!(
            sends.into_values().next().map(|(_, n)| n),
            Some(11),
            "seed {seed}: REGISTER + 10 retransmissions before Timer F"
        );
        assert!(
            net.events[ALICE].iter().any(|(t, e)| matches!(
                e,
                UaEvent::TimerFired {
                    timer: sip_proto::timer::Timer::F,
                    ..
                }
            ) && *t - net.start == Duration::from_secs(32)),
            "seed {seed}: Timer F at 64·T1"
        );
        assert!(
            net.events[ALICE]
                .iter()
                .any(|(_, e)| matches!(e, UaEvent::RegistrationFailed { code: 408, .. })),
            "seed {seed}"
        );
    }
}
