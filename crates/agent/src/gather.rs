//! A call's gathering of its server-reflexive (STUN Binding, RFC 8489) and relayed (TURN
//! Allocate, RFC 8656) candidates before its offer or answer (RFC 8445 §5.1.1; no trickle:
//! they must be in the SDP), sans-IO, so the shard goes on driving its other endpoints while
//! the servers answer.
//!
//! # Driving it
//!
//! [`Gathering::new`] queues the requests. After every input drain
//! [`Gathering::poll_transmit`] (a datagram and the server it goes to) and send it from the
//! call's RTP socket; a send the socket refuses (a server of the other address family) goes
//! back through [`Gathering::handle_send_error`]. Every datagram the RTP socket receives goes
//! to [`Gathering::handle_datagram`] (`false`: not from a server of ours);
//! [`Gathering::handle_timeout`] when [`Gathering::poll_timeout`] is reached. Once
//! [`Gathering::is_done`] (every server answered or failed, or [`GATHER_LIMIT`] passed),
//! [`Gathering::finish`] gives the candidates, the TURN allocation (kept for the call) and
//! the trace lines. `now` is always passed in; no I/O, no clock reads.
//!
//! [`gather_blocking`] drives it on a blocking socket, for callers outside a shard's loop
//! (`CallMedia::bind` without `defer`: tests, tools); the engine never uses it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use media::stun::{BINDING, Builder, Class, Message, TransactionId};
use media::turn::{TurnClient, TurnEvent, TurnState};

use crate::callmedia::IceServers;

/// How long a call's gathering may take: the STUN Binding and the TURN Allocate (its 401
/// and the second try) on a nearby server take a few round trips.
pub const GATHER_LIMIT: Duration = Duration::from_secs(2);
/// The STUN Binding request is sent again this often while gathering.
const BINDING_RTO: Duration = Duration::from_millis(250);

/// The STUN Binding request in flight.
#[derive(Debug)]
struct Binding {
    server: SocketAddr,
    txn: TransactionId,
    request: Vec<u8>,
    /// When it is sent again.
    next: Instant,
}

/// One call's gathering in progress (see the module doc for how to drive it).
#[derive(Debug)]
pub struct Gathering {
    start: Instant,
    end: Instant,
    stun: Option<Binding>,
    turn: Option<TurnClient>,
    out: VecDeque<(Vec<u8>, SocketAddr)>,
    srflx: Option<SocketAddr>,
    turn_error: Option<String>,
    notes: Vec<String>,
    /// How long the STUN server took to answer, and the TURN server to allocate (or fail).
    stun_took: Option<Duration>,
    turn_took: Option<Duration>,
    /// When the gathering ended: the last answer, a refused send, or the limit.
    done_at: Option<Instant>,
}

/// What a gathering found.
#[derive(Debug, Default)]
pub struct Gathered {
    /// XOR-MAPPED-ADDRESS from the STUN server.
    pub srflx: Option<SocketAddr>,
    /// The relayed and mapped addresses of the allocation.
    pub relay: Option<(SocketAddr, SocketAddr)>,
    /// The allocation (kept for the call: refreshes, permissions, channels, release).
    pub turn: Option<TurnClient>,
    /// Why there is no relayed candidate, when a TURN server was asked.
    pub turn_error: Option<String>,
    /// Trace lines: each step, each server that did not answer, and the time taken.
    pub notes: Vec<String>,
    /// From the first request to the last answer (or to the limit).
    pub took: Duration,
}

impl Gathering {
    /// Starts gathering from `servers` at `now`; the requests wait in
    /// [`Self::poll_transmit`]. `seed` makes the STUN and TURN transaction IDs.
    pub fn new(servers: &IceServers, seed: u64, now: Instant) -> Self {
        let txn = TransactionId(std::array::from_fn(|i| {
            (seed >> (8 * (i % 8))) as u8 ^ i as u8
        }));
        let mut g = Self {
            start: now,
            end: now + GATHER_LIMIT,
            stun: servers.stun.map(|server| Binding {
                server,
                txn,
                request: Builder::new(Class::Request, BINDING, txn).fingerprint(),
                next: now,
            }),
            turn: servers.turn.clone().map(|cfg| TurnClient::new(cfg, seed)),
            out: VecDeque::new(),
            srflx: None,
            turn_error: None,
            notes: Vec::new(),
            stun_took: None,
            turn_took: None,
            done_at: None,
        };
        if let Some(t) = g.turn.as_mut() {
            t.allocate(now);
        }
        g.handle_timeout(now);
        g
    }

    /// The next datagram to send from the call's RTP socket, and to whom.
    pub fn poll_transmit(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        self.out.pop_front()
    }

    /// When [`Self::handle_timeout`] must run next; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done_at.is_some() {
            return None;
        }
        [
            self.stun.as_ref().map(|s| s.next),
            self.turn.as_ref().and_then(TurnClient::poll_timeout),
            Some(self.end),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Every server answered or failed, or the limit passed.
    pub fn is_done(&self) -> bool {
        self.done_at.is_some()
    }

    /// Sends the Binding again when due, runs the TURN client's timers; at the limit the
    /// gathering ends with what it has.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done_at.is_some() {
            return;
        }
        if now >= self.end {
            self.done_at = Some(self.end);
            self.out.clear();
            return;
        }
        if let Some(s) = self.stun.as_mut()
            && s.next <= now
        {
            self.out.push_back((s.request.clone(), s.server));
            s.next = now + BINDING_RTO;
        }
        if let Some(t) = self.turn.as_mut()
            && t.poll_timeout().is_some_and(|x| x <= now)
        {
            t.handle_timeout(now);
        }
        self.after_turn(now);
    }

    /// A datagram the call's RTP socket received at `now` from `from`: `true` if it was a
    /// server's (taken), `false` if not (the caller drops it: the call has no peer yet).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        if self.done_at.is_some() {
            return false;
        }
        if let Some(s) = self.stun.as_ref()
            && from == s.server
            && let Ok(m) = Message::parse(bytes)
            && m.transaction == s.txn
        {
            let to = s.server;
            match (m.class, m.xor_mapped_address) {
                (Class::Success, Some(a)) => {
                    self.notes
                        .push(format!("STUN {to}: server-reflexive address {a}"));
                    self.srflx = Some(a);
                }
                _ => self
                    .notes
                    .push(format!("STUN {to}: no XOR-MAPPED-ADDRESS in the answer")),
            }
            self.stun = None;
            self.stun_took = Some(now.saturating_duration_since(self.start));
            self.check_done(now);
            return true;
        }
        if let Some(t) = self.turn.as_mut().filter(|t| t.server() == from) {
            // Malformed or unexpected answers are the client's to ignore (RFC 8489 §6.3).
            let _ = t.handle_datagram(now, bytes);
            self.after_turn(now);
            return true;
        }
        false
    }

    /// The RTP socket refused to send to `to` (another address family, no route): that
    /// server gives no candidate, which is a note, not a failure of the call.
    pub fn handle_send_error(&mut self, now: Instant, to: SocketAddr, e: &io::Error) {
        if self.stun.as_ref().is_some_and(|s| s.server == to) {
            self.notes.push(format!("STUN {to}: cannot send: {e}"));
            self.stun = None;
        }
        if self.turn_server() == Some(to) {
            let why = format!("TURN server {to}: cannot send: {e}");
            self.notes
                .push(format!("TURN: no relayed candidate: {why}"));
            self.turn_error = Some(why);
            self.turn = None;
        }
        self.out.retain(|(_, a)| *a != to);
        self.check_done(now);
    }

    /// Ends the gathering (done, or given up at `now`): the candidates, the allocation and
    /// the trace lines, the last one saying how long it took.
    pub fn finish(mut self, now: Instant) -> Gathered {
        let done_at = self.done_at.unwrap_or(now);
        let took = done_at.saturating_duration_since(self.start);
        let mut g = Gathered {
            srflx: self.srflx,
            turn_error: self.turn_error.take(),
            took,
            ..Gathered::default()
        };
        let mut parts = Vec::new();
        if let Some(s) = self.stun.take() {
            let to = s.server;
            self.notes.push(format!(
                "STUN {to}: no answer within {:?}: no server-reflexive candidate",
                took
            ));
            parts.push("STUN no answer".to_string());
        } else if let Some(d) = self.stun_took {
            parts.push(format!("STUN {} ms", d.as_millis()));
        }
        if let Some(mut t) = self.turn.take() {
            while let Some(e) = t.poll_event() {
                self.notes.push(turn_note(&e));
            }
            match (t.relayed(), t.mapped()) {
                (Some(r), m) => {
                    g.relay = Some((r, m.unwrap_or(r)));
                    g.turn = Some(t);
                }
                (None, _) => {
                    let why = t.error().map_or_else(
                        || {
                            format!(
                                "TURN server {} did not allocate within {took:?}",
                                t.server()
                            )
                        },
                        ToString::to_string,
                    );
                    self.notes
                        .push(format!("TURN: no relayed candidate: {why}"));
                    g.turn_error = Some(why);
                }
            }
        }
        match (self.turn_took, &g.relay) {
            (Some(d), Some(_)) => parts.push(format!("TURN {} ms", d.as_millis())),
            (Some(d), None) => parts.push(format!("TURN failed after {} ms", d.as_millis())),
            (None, _) if g.turn_error.is_some() => parts.push("TURN no allocation".to_string()),
            (None, _) => {}
        }
        self.notes.push(format!(
            "ICE gathering took {} ms ({})",
            took.as_millis(),
            parts.join(", ")
        ));
        g.notes = self.notes;
        g
    }

    fn turn_server(&self) -> Option<SocketAddr> {
        self.turn.as_ref().map(TurnClient::server)
    }

    /// The TURN client's datagrams and events after an input; its end (allocated or failed)
    /// is timed.
    fn after_turn(&mut self, now: Instant) {
        if let Some(t) = self.turn.as_mut() {
            while let Some(d) = t.poll_transmit() {
                self.out.push_back((d, t.server()));
            }
            while let Some(e) = t.poll_event() {
                self.notes.push(turn_note(&e));
            }
            if t.state() != TurnState::Allocating && self.turn_took.is_none() {
                self.turn_took = Some(now.saturating_duration_since(self.start));
            }
        }
        self.check_done(now);
    }

    fn check_done(&mut self, now: Instant) {
        let turn_done = self
            .turn
            .as_ref()
            .is_none_or(|t| t.state() != TurnState::Allocating);
        if self.done_at.is_none() && self.stun.is_none() && turn_done {
            self.done_at = Some(now);
        }
    }
}

/// Gathers on `rtp` until done, waiting for the servers (at most [`GATHER_LIMIT`]): the
/// thread waits with it. The socket is non-blocking again afterwards. Datagrams from anyone
/// else meanwhile are dropped (the call has no peer yet).
pub fn gather_blocking(
    rtp: &std::net::UdpSocket,
    servers: &IceServers,
    seed: u64,
) -> io::Result<Gathered> {
    let mut g = Gathering::new(servers, seed, Instant::now());
    rtp.set_nonblocking(false)?;
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        while let Some((d, to)) = g.poll_transmit() {
            if let Err(e) = rtp.send_to(&d, to) {
                g.handle_send_error(now, to, &e);
            }
        }
        let Some(next) = g.poll_timeout() else {
            break;
        };
        if next <= now {
            g.handle_timeout(now);
            continue;
        }
        rtp.set_read_timeout(Some((next - now).max(Duration::from_millis(1))))?;
        match rtp.recv_from(&mut buf) {
            Ok((n, from)) => {
                g.handle_datagram(Instant::now(), from, &buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                rtp.set_read_timeout(None)?;
                rtp.set_nonblocking(true)?;
                return Err(e);
            }
        }
    }
    rtp.set_read_timeout(None)?;
    rtp.set_nonblocking(true)?;
    Ok(g.finish(Instant::now()))
}

/// The trace line of a TURN allocation step (RFC 8656).
pub fn turn_note(e: &TurnEvent) -> String {
    match e {
        TurnEvent::Challenged { realm } => {
            format!("TURN Allocate: 401 challenge (realm {realm:?}), sent again with credentials")
        }
        TurnEvent::StaleNonce => "TURN 438 Stale Nonce: sent again with the new nonce".into(),
        TurnEvent::Allocated {
            relayed,
            mapped,
            lifetime,
        } => format!(
            "TURN allocation: relayed {relayed}, mapped {}, lifetime {} s",
            mapped.map_or("-".to_string(), |m| m.to_string()),
            lifetime.as_secs()
        ),
        TurnEvent::Refreshed { lifetime } => {
            format!(
                "TURN allocation refreshed: lifetime {} s",
                lifetime.as_secs()
            )
        }
        TurnEvent::PermissionCreated(ip) => format!("TURN permission for {ip}"),
        TurnEvent::ChannelBound { peer, channel } => {
            format!("TURN channel {channel:#06x} bound to {peer}")
        }
        TurnEvent::PeerFailed { peer, error } => format!("TURN for peer {peer}: {error}"),
        TurnEvent::Failed(e) => format!("TURN allocation failed: {e}"),
        TurnEvent::Closed => "TURN allocation released (Refresh, lifetime 0)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::turn::TurnConfig;

    fn cfg(server: SocketAddr) -> TurnConfig {
        TurnConfig {
            server,
            username: "u".into(),
            password: "p".into(),
        }
    }

    /// Gathering never fails the call's bind: a server of the other address family is a
    /// note, a silent TURN server is a TURN error after [`GATHER_LIMIT`]; the socket is
    /// non-blocking again afterwards.
    #[test]
    fn gathering_from_unreachable_or_silent_servers_is_a_note_not_an_error() {
        let v6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        v6.set_nonblocking(true).unwrap();
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let servers = IceServers {
            stun: Some(v4),
            turn: Some(cfg(v4)),
            relay_only: false,
        };
        let g = gather_blocking(&v6, &servers, 1).unwrap();
        assert_eq!((g.srflx, g.relay), (None, None));
        let e = g.turn_error.expect("a TURN error");
        assert!(e.contains("cannot send"), "{e}");
        assert!(
            g.notes
                .iter()
                .any(|n| n.starts_with("STUN 127.0.0.1:9: cannot send"))
        );

        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_nonblocking(true).unwrap();
        let servers = IceServers {
            stun: None,
            turn: Some(cfg(silent.local_addr().unwrap())),
            relay_only: true,
        };
        let g = gather_blocking(&rtp, &servers, 1).unwrap();
        let e = g.turn_error.expect("a TURN error");
        assert!(e.contains("did not allocate within 2s"), "{e}");
        let mut buf = [0u8; 64];
        assert_eq!(
            rtp.recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "non-blocking again"
        );
    }

    /// On a virtual clock: silent servers cost the gathering exactly its limit, with the
    /// Binding sent every 250 ms and the Allocate by RFC 8489's RTO; nothing is due in
    /// between, so a shard driving it sleeps until the next retransmission.
    #[test]
    fn silent_servers_end_the_gathering_at_its_limit() {
        let stun: SocketAddr = "127.0.0.1:3478".parse().unwrap();
        let turn: SocketAddr = "127.0.0.1:3479".parse().unwrap();
        let servers = IceServers {
            stun: Some(stun),
            turn: Some(cfg(turn)),
            relay_only: false,
        };
        let t0 = Instant::now();
        let mut g = Gathering::new(&servers, 7, t0);
        let (mut to_stun, mut to_turn, mut wakes) = (0, 0, 0);
        let mut now = t0;
        loop {
            while let Some((_, to)) = g.poll_transmit() {
                if to == stun {
                    to_stun += 1;
                } else {
                    assert_eq!(to, turn);
                    to_turn += 1;
                }
            }
            let Some(next) = g.poll_timeout() else { break };
            assert!(next > now || now == t0, "a timer in the past");
            now = next;
            wakes += 1;
            g.handle_timeout(now);
        }
        assert!(g.is_done());
        // 0, 250, …, 1750 ms; the Allocate at 0, 500 ms and 1.5 s.
        assert_eq!((to_stun, to_turn), (8, 3));
        assert!(wakes <= 11, "{wakes} wake-ups");
        let done = g.finish(now);
        assert_eq!(done.took, GATHER_LIMIT);
        assert_eq!((done.srflx, done.relay.is_some()), (None, false));
        assert!(
            done.turn_error
                .unwrap()
                .contains("did not allocate within 2s")
        );
        let last = done.notes.last().unwrap();
        assert_eq!(
            last, "ICE gathering took 2000 ms (STUN no answer, TURN no allocation)",
            "{:?}",
            done.notes
        );
    }

    /// The STUN answer ends a STUN-only gathering at its arrival; the time taken is the
    /// answer's, and answers from anyone else or with another transaction are not taken.
    #[test]
    fn a_stun_answer_ends_the_gathering_and_is_timed() {
        let stun: SocketAddr = "127.0.0.1:3478".parse().unwrap();
        let servers = IceServers {
            stun: Some(stun),
            turn: None,
            relay_only: false,
        };
        let t0 = Instant::now();
        let mut g = Gathering::new(&servers, 9, t0);
        let (req, to) = g.poll_transmit().unwrap();
        assert_eq!(to, stun);
        let txn = Message::parse(&req).unwrap().transaction;
        let mapped: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let answer = Builder::new(Class::Success, BINDING, txn)
            .xor_mapped_address(mapped)
            .fingerprint();
        let other = Builder::new(Class::Success, BINDING, TransactionId([1; 12]))
            .xor_mapped_address(mapped)
            .fingerprint();
        let at = t0 + Duration::from_millis(23);
        assert!(!g.handle_datagram(at, "127.0.0.1:9".parse().unwrap(), &answer));
        g.handle_datagram(at, stun, &other);
        assert!(!g.is_done());
        assert!(g.handle_datagram(at, stun, &answer));
        assert!(g.is_done());
        assert_eq!(g.poll_timeout(), None);
        let done = g.finish(at + Duration::from_millis(5));
        assert_eq!(done.srflx, Some(mapped));
        assert_eq!(done.took, Duration::from_millis(23));
        assert_eq!(
            done.notes,
            [
                "STUN 127.0.0.1:3478: server-reflexive address 192.0.2.7:40000",
                "ICE gathering took 23 ms (STUN 23 ms)"
            ]
        );
    }
}
