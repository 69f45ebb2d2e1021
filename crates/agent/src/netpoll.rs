//! One poll set per shard for the shard's signalling sockets: every endpoint's own TCP, TLS,
//! WS or WSS connection and every endpoint's own UDP socket (`udp_socket = "per-endpoint"`).
//!
//! No task or thread per connection: the sockets are non-blocking and registered in one
//! `mio::Poll` (edge-triggered), whose own descriptor is registered with the shard's tokio
//! reactor (as the media driver's is). The shard loop awaits [`NetPoll::readable`], then
//! [`NetPoll::poll_ready`] moves bytes for the sockets that are ready: it finishes connects,
//! drives TLS through rustls's sans-IO API (`read_tls`, `process_new_packets`, `reader`,
//! `writer`, `write_tls`), frames incoming bytes into whole SIP messages (sip-msg's framer)
//! and writes what is queued. WS and WSS connections also run the HTTP upgrade and the
//! WebSocket framing sans-IO ([`sip_net::wsclient`]). What happened comes out as
//! [`StreamIn`] events. Deadlines (connect and handshake timeouts, CRLF keep-alives) are in one
//! heap: [`NetPoll::next_deadline`] and [`NetPoll::on_timeout`].
//!
//! A busy shard coalesces its wakes (see `sipsock`): it takes the set out of its reactor
//! ([`NetPoll::disarm`]), so arrivals on the connections no longer wake it one by one, and
//! looks at the set ([`NetPoll::poll_ready`]) on each wake, at most a quantum later. A plain
//! TCP read shorter than the buffer ends the socket's reads for that wake (no read that would
//! only say `WouldBlock`).
//!
//! Sending never waits: [`NetPoll::send`] queues a message (at most [`SEND_QUEUE`] per
//! connection; a full queue refuses it, [`Sent::Full`], and the shard counts a dropped send)
//! and the shard calls [`NetPoll::flush_queued`] at the top of each turn of its loop (what
//! the last wake's input made) and before it sleeps (what the turn's timers made): what was
//! queued on one connection meanwhile leaves in one write (`writev` of up to
//! [`WRITE_BATCH`] messages; over TLS, one write of their records), as the shard's UDP sends
//! leave in one `sendmmsg`. A connection with [`FLUSH_AT`] messages queued is written at
//! once. What the socket does not take waits until it is writable.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use sip_msg::{Frame, Framer};
use sip_net::tls::{self, Negotiated, rustls};
use sip_net::wsclient::{WsClient, WsEvent, WsFailure};

use crate::conn::{SEND_QUEUE, StreamEvent, StreamIn, StreamSettings, UNREACHABLE_HINT};
use crate::flow::{FlowError, MAX_MESSAGE, tls_timeout, ws_timeout};
use crate::sipsock::Armable;
#[cfg(doc)]
use sip_proto::outbound::PONG_TIMEOUT;
use sip_proto::outbound::keepalive_after;

/// How many readiness events one poll of the set hands back.
const EVENTS_PER_POLL: usize = 256;

/// At most this many queued messages go in one `writev` (Linux takes up to 1,024 slices).
pub const WRITE_BATCH: usize = 64;

/// A connection is written at once, not at the turn's end, each time its queue reaches a
/// multiple of this many messages: a burst (a trunk's thousands of endpoints starting)
/// never fills its queue ([`SEND_QUEUE`]) before the socket had its chance.
pub const FLUSH_AT: usize = WRITE_BATCH;

/// At most this many bytes of messages handed to rustls at once (its outgoing buffer holds
/// 64 KiB; one message alone may be larger, as before).
const TLS_BATCH: usize = 16 * 1024;

/// The result of [`NetPoll::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written, or queued behind earlier messages.
    Queued,
    /// The connection's queue is full: the message is dropped.
    Full,
    /// The endpoint has no open connection.
    NotConnected,
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// TCP connected; the TLS handshake runs.
    Handshaking,
    /// TCP (and TLS) connected; the HTTP upgrade to WebSocket runs.
    Upgrading,
    /// Messages flow.
    Open,
}

/// One endpoint's connection.
struct Conn {
    generation: u32,
    /// When the last bytes read from the socket reached it (the kernel's stamp): the
    /// arrival of the messages those bytes completed ([`StreamIn::arrived`]).
    arrived: Option<Instant>,
    /// The server this connection goes to (one of the run's targets, RFC 3263).
    addr: SocketAddr,
    /// How it is made: transport, TLS, WebSocket, timeouts, keep-alive.
    settings: Arc<StreamSettings>,
    sock: TcpStream,
    phase: Phase,
    /// When the current phase began (its timeout counts from there).
    since: Instant,
    /// The TCP connect's time (for a TLS failure's report).
    tcp_time: Duration,
    tls: Option<Box<rustls::ClientConnection>>,
    /// WS and WSS: the WebSocket (it frames the messages); else the SIP stream framer.
    ws: Option<Box<WsClient>>,
    framer: Framer,
    /// Whole messages waiting for the socket; the front one is written from `offset` on
    /// (plain TCP; TLS takes a whole message into its own buffer).
    queue: VecDeque<Bytes>,
    offset: usize,
    /// Listed in [`NetPoll::unflushed`]: it has messages queued since the last flush.
    unflushed: bool,
    /// Registered for writability too: before it is open (connect, TLS handshake, WebSocket
    /// upgrade) and while a write is blocked.
    writable: bool,
    /// At most this many messages queued ([`SEND_QUEUE`], or more for a shared
    /// connection: [`NetPoll::set_send_limit`]).
    limit: usize,
    /// The connect's trace notes, handed over with [`StreamEvent::Connected`].
    notes: Vec<String>,
    /// The phase timeout, or the next keep-alive once open.
    deadline: Option<Instant>,
    /// RFC 5626 outbound keep-alives, once the registration uses the flow
    /// ([`NetPoll::keep_flow`]). Boxed: most connections have none.
    flow: Option<Box<FlowKeep>>,
}

/// RFC 5626 §4.4.1 keep-alives of a flow: CRLF pings (over a WebSocket, ping frames) at a
/// random 80–100 % of the period, each answered by a CRLF pong (a pong frame) within
/// [`PONG_TIMEOUT`] or the flow has failed.
struct FlowKeep {
    /// The Flow-Timer, else the configured interval.
    period: Duration,
    /// A xorshift state for the 80–100 % draw (seeded by the shard: replayable).
    rng: u64,
    /// When the unanswered ping went out.
    awaiting: Option<Instant>,
    /// How long a pong may take ([`PONG_TIMEOUT`] in a run).
    pong_timeout: Duration,
}

impl FlowKeep {
    /// The time from one ping to the next (RFC 5626 §4.4.1: random in 80–100 % of the period).
    fn next_gap(&mut self) -> Duration {
        // xorshift64: enough to spread the phones' pings; never zero from a non-zero seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let r = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        keepalive_after(self.period, r)
    }
}

/// The pong to an outbound flow's ping (RFC 5626 §4.4.1; over a WebSocket, RFC 6455
/// §5.5.3) on connection `key`: counted, and the next ping goes 80–100 % of the period after
/// the last. A pong nobody waits for (a server's heartbeat) changes nothing.
fn pong(
    c: &mut Conn,
    flows: &mut FlowCounts,
    deadlines: &mut BinaryHeap<Reverse<(Instant, usize, u32)>>,
    key: usize,
) {
    if let Some(f) = c.flow.as_deref_mut()
        && let Some(sent) = f.awaiting.take()
    {
        flows.pongs += 1;
        let next = sent + f.next_gap();
        c.deadline = Some(next);
        deadlines.push(Reverse((next, key, c.generation)));
    }
}

/// Keep-alive counts of the flows that use outbound ([`NetPoll::flow_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounts {
    /// Pings sent: CRLFCRLF, or WebSocket ping frames.
    pub pings: u64,
    /// Pongs received in answer: CRLF, or WebSocket pong frames.
    pub pongs: u64,
    /// Flows closed because a pong did not come.
    pub missing_pongs: u64,
}

/// A shard's signalling sockets in one poll set.
pub struct NetPoll {
    poll: Poll,
    /// A second descriptor of the poll set (`dup`), registered with the shard's reactor while
    /// armed: see [`NetPoll::arm`].
    read: Armable,
    events: Events,
    /// Connections by endpoint index: to the server ([`Leg::Server`]) and to the outbound
    /// proxy ([`Leg::Proxy`], grown only when some endpoint has one).
    conns: [Vec<Option<Conn>>; 2],
    /// Own UDP sockets by endpoint index.
    udp: Vec<Option<UdpSocket>>,
    /// (deadline, connection key, generation); stale entries are skipped.
    deadlines: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    /// Events for the shard, oldest first.
    ready: VecDeque<StreamIn>,
    /// The last poll returned a full batch: more sockets may be ready.
    more: bool,
    /// When the set was polled before the current poll (before the first of a run of full
    /// batches): bytes read now reached their socket after it (their edge came after that
    /// poll), so an arrival stamp is never taken as earlier (see [`StreamIn::arrived`]).
    floor: Option<Instant>,
    /// When the set was last polled.
    polled: Option<Instant>,
    /// The last poll's ready sockets, and whether each reported its peer's close or an
    /// error (then read to the end: see [`NetPoll::read`]).
    tokens: Vec<(Token, bool)>,
    buf: Box<[u8]>,
    /// Connections that reached the open phase, reconnects included.
    opened: u64,
    /// Outbound flows' keep-alive counts.
    flows: FlowCounts,
    /// Connections with messages queued since the last [`NetPoll::flush_queued`] (keys).
    unflushed: Vec<usize>,
}

impl std::fmt::Debug for NetPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetPoll")
            .field(
                "connections",
                &self.conns.iter().flatten().flatten().count(),
            )
            .field("udp", &self.udp.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

/// Which of an endpoint's connections: to its server (registrar), or to its outbound proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Leg {
    /// The connection to the server the endpoint registers with.
    #[default]
    Server,
    /// The connection to the outbound proxy (INVITEs, RFC 3261 §8.1.2).
    Proxy,
}

/// A connection's key: the endpoint and its leg in one number (deadlines, tokens).
fn key(endpoint: usize, leg: Leg) -> usize {
    endpoint << 1 | usize::from(leg == Leg::Proxy)
}

/// The leg of connection `key`.
fn leg_of(key: usize) -> Leg {
    if key & 1 == 1 {
        Leg::Proxy
    } else {
        Leg::Server
    }
}

/// The poll token of connection `key`, or of endpoint `key >> 1`'s own UDP socket.
fn token(key: usize, udp: bool) -> Token {
    Token(key << 1 | usize::from(udp))
}

impl NetPoll {
    /// A new, empty set (each connection says how it is made). Must be called inside a tokio
    /// runtime with I/O enabled.
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let read = Armable::new(poll.registry().as_fd().try_clone_to_owned()?);
        let mut net = Self {
            poll,
            read,
            floor: None,
            polled: None,
            events: Events::with_capacity(EVENTS_PER_POLL),
            conns: [Vec::new(), Vec::new()],
            udp: Vec::new(),
            deadlines: BinaryHeap::new(),
            ready: VecDeque::new(),
            more: false,
            tokens: Vec::with_capacity(EVENTS_PER_POLL),
            buf: vec![0; 65_536].into_boxed_slice(),
            opened: 0,
            flows: FlowCounts::default(),
            unflushed: Vec::new(),
        };
        net.arm()?;
        Ok(net)
    }

    /// Resolves when some socket of the set may be ready; then call [`Self::poll_ready`].
    /// Never resolves while disarmed ([`Self::disarm`]). The readiness is cleared before the
    /// set is drained: readiness after the drain raises a new edge.
    pub async fn readable(&self) -> io::Result<()> {
        self.read.readable().await
    }

    /// Whether the sockets' news wakes the shard ([`Self::readable`]).
    pub fn is_armed(&self) -> bool {
        self.read.is_armed()
    }

    /// The sockets' news wakes the shard from now on (one `epoll_ctl`); news already
    /// waiting is reported at once (the kernel looks at the set's readiness when its
    /// descriptor is added). A new set starts armed.
    pub fn arm(&mut self) -> io::Result<()> {
        let poll = &self.poll;
        self.read
            .arm(|| poll.registry().as_fd().try_clone_to_owned())
    }

    /// The sockets' news no longer wakes the shard (one `epoll_ctl`): it waits in the set
    /// until [`Self::poll_ready`] looks (a busy shard coalescing its wakes, see `sipsock`).
    pub fn disarm(&mut self) {
        self.read.disarm();
    }

    /// True when events wait for the shard or sockets may still be ready: the shard loop
    /// must come back without sleeping.
    pub fn pending(&self) -> bool {
        self.more || !self.ready.is_empty()
    }

    /// True when the last poll returned a full batch: call [`Self::poll_ready`] again.
    pub fn more(&self) -> bool {
        self.more
    }

    /// How many connections opened (TCP connected, TLS and WebSocket done), reconnects
    /// included.
    pub fn opened_count(&self) -> u64 {
        self.opened
    }

    /// The outbound flows' keep-alive counts so far.
    pub fn flow_counts(&self) -> FlowCounts {
        self.flows
    }

    /// The registration over `leg` of endpoint `endpoint` uses the flow (RFC 5626 §4.2.1):
    /// from now on its keep-alives are CRLF pings every 80–100 % of `period` (the registrar's
    /// Flow-Timer, else the configured interval), each answered by a CRLF pong within
    /// `pong_timeout` ([`PONG_TIMEOUT`]), else the connection is closed as a failed flow
    /// (§4.4.1). `seed` seeds
    /// the draws. Over a WebSocket the pings are ping frames and the pongs pong frames
    /// (RFC 6455 §5.5.2, our choice over CRLF inside WebSocket messages). False when the connection is not
    /// open.
    pub fn keep_flow(
        &mut self,
        endpoint: usize,
        leg: Leg,
        period: Duration,
        pong_timeout: Duration,
        seed: u64,
        now: Instant,
    ) -> bool {
        let k = key(endpoint, leg);
        let Some(c) = self.cell_mut(k).and_then(Option::as_mut) else {
            return false;
        };
        if c.phase != Phase::Open {
            return false;
        }
        let mut keep = Box::new(FlowKeep {
            period,
            rng: seed | 1,
            awaiting: None,
            pong_timeout,
        });
        let first = now + keep.next_gap();
        c.flow = Some(keep);
        self.set_deadline(k, first);
        true
    }

    /// The next event for the shard, left in place.
    pub fn peek_event(&self) -> Option<&StreamIn> {
        self.ready.front()
    }

    /// The next event for the shard.
    pub fn next_event(&mut self) -> Option<StreamIn> {
        self.ready.pop_front()
    }

    /// Moves bytes for one batch of ready sockets (never blocks); events wait in
    /// [`Self::next_event`].
    pub fn poll_ready(&mut self, now: Instant) {
        // After a full batch the sockets left over were ready before that poll: the floor
        // stays the one before it.
        let previous = self.polled.replace(now);
        if !self.more {
            self.floor = previous;
        }
        // An error (EINTR) reads as "nothing ready"; the next edge retries.
        if self
            .poll
            .poll(&mut self.events, Some(Duration::ZERO))
            .is_err()
        {
            self.events.clear();
        }
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.clear();
        tokens.extend(
            self.events
                .iter()
                .map(|e| (e.token(), e.is_read_closed() || e.is_error())),
        );
        self.more = tokens.len() == EVENTS_PER_POLL;
        for &(t, closing) in &tokens {
            let key = t.0 >> 1;
            if t.0 & 1 == 1 {
                self.read_udp(key >> 1);
            } else {
                self.drive(key, now, closing);
            }
        }
        self.tokens = tokens;
    }

    /// The earliest connect/handshake timeout or keep-alive.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, e, g))) = self.deadlines.peek().copied() {
            if self.conn(e, g).is_some_and(|c| c.deadline == Some(at)) {
                return Some(at);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Runs the timeouts and keep-alives that are due.
    pub fn on_timeout(&mut self, now: Instant) {
        while let Some(at) = self.next_deadline().filter(|&t| t <= now) {
            let Some(Reverse((_, endpoint, _))) = self.deadlines.pop() else {
                break;
            };
            let Some(c) = self.cell_mut(endpoint).and_then(Option::as_mut) else {
                continue;
            };
            let settings = c.settings.clone();
            c.deadline = None;
            match c.phase {
                Phase::Connecting => {
                    let e = FlowError::ConnectTimeout(c.addr, settings.timeout);
                    self.fail(endpoint, &e);
                }
                Phase::Handshaking => {
                    let e =
                        FlowError::TlsHandshake(tls_timeout(c.addr, settings.timeout), c.tcp_time);
                    self.fail(endpoint, &e);
                }
                Phase::Upgrading => {
                    let e = FlowError::WebSocketUpgrade {
                        diagnosis: ws_timeout(settings.timeout),
                        tcp: c.tcp_time,
                        tls: None,
                    };
                    self.fail(endpoint, &e);
                }
                Phase::Open if c.flow.is_some() => {
                    let Some(flow) = c.flow.as_deref_mut() else {
                        continue;
                    };
                    let wait = flow.pong_timeout;
                    if flow.awaiting.is_some() {
                        let (what, rfc) = if c.ws.is_some() {
                            ("WebSocket pong", "RFC 6455 §5.5.2")
                        } else {
                            ("CRLF pong", "RFC 5626 §4.4.1")
                        };
                        self.flows.missing_pongs += 1;
                        self.close_with(
                            endpoint,
                            format!(
                                "no {what} within {} ms of our keep-alive ping ({rfc}): the flow failed",
                                wait.as_millis()
                            ),
                        );
                        continue;
                    }
                    // RFC 5626 §4.4.1: a double CRLF, answered by a single CRLF within 10 s;
                    // over a WebSocket, a ping frame answered by a pong (RFC 6455 §5.5.2).
                    // Queued past the queue's soft limit: its pong is waited for, so a burst
                    // that filled the queue must not leave it unsent (a false failure).
                    flow.awaiting = Some(at.max(now));
                    let ping = match c.ws.as_deref_mut() {
                        Some(w) => w.ping().map(Bytes::from),
                        None => Some(Bytes::from_static(b"\r\n\r\n")),
                    };
                    if let Some(ping) = ping {
                        c.queue.push_back(ping);
                    }
                    self.flows.pings += 1;
                    self.set_deadline(endpoint, at.max(now) + wait);
                    if let Err(e) = self.flush(endpoint) {
                        self.close_with(endpoint, format!("keep-alive failed: {e}"));
                    }
                }
                Phase::Open => {
                    let Some(period) = settings.keepalive else {
                        continue;
                    };
                    // RFC 5626 §3.5.1: a double CRLF; the server's CRLF pong is skipped by
                    // the framer. Over a WebSocket a ping frame (RFC 6455 §5.5.2), its pong
                    // ignored. A full queue has no room for it, and needs none.
                    let ping = match c.ws.as_deref_mut() {
                        Some(w) => w.ping().map(Bytes::from),
                        None => Some(Bytes::from_static(b"\r\n\r\n")),
                    };
                    if let Some(ping) = ping
                        && c.queue.len() < c.limit
                    {
                        c.queue.push_back(ping);
                    }
                    self.set_deadline(endpoint, at.max(now) + period);
                    if let Err(e) = self.flush(endpoint) {
                        self.close_with(endpoint, format!("keep-alive failed: {e}"));
                    }
                }
            }
        }
    }

    /// Starts endpoint `endpoint`'s connection `generation` (a previous one is closed).
    /// The outcome comes later as [`StreamEvent::Connected`] or [`StreamEvent::Failed`].
    pub fn connect(
        &mut self,
        endpoint: usize,
        generation: u32,
        now: Instant,
        settings: Arc<StreamSettings>,
    ) {
        let addr = settings.addr;
        self.connect_to(endpoint, Leg::Server, generation, now, addr, settings);
    }

    /// [`NetPoll::connect`] for `leg` of the endpoint, to `addr` (its current target)
    /// instead of the settings' address.
    pub fn connect_to(
        &mut self,
        endpoint: usize,
        leg: Leg,
        generation: u32,
        now: Instant,
        addr: SocketAddr,
        settings: Arc<StreamSettings>,
    ) {
        self.close(endpoint, leg);
        let conns = &mut self.conns[usize::from(leg == Leg::Proxy)];
        if conns.len() <= endpoint {
            conns.resize_with(endpoint + 1, || None);
        }
        let endpoint = key(endpoint, leg);
        let started = connect_marked(addr, settings.dscp).and_then(|mut sock| {
            // Arrival stamps (see `StreamIn::arrived`); without them, the time read.
            let _ = crate::rxstamp::enable(&sock);
            self.poll.registry().register(
                &mut sock,
                token(endpoint, false),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(sock)
        });
        let sock = match started {
            Ok(s) => s,
            Err(e) => {
                let e = connect_error(e, addr);
                self.push(endpoint, generation, failed(&e));
                return;
            }
        };
        let timeout = settings.timeout;
        let Some(cell) = self.cell_mut(endpoint) else {
            return; // grown above: there is one
        };
        *cell = Some(Conn {
            generation,
            arrived: None,
            addr,
            settings,
            sock,
            phase: Phase::Connecting,
            since: now,
            tcp_time: Duration::ZERO,
            tls: None,
            ws: None,
            framer: Framer::new(MAX_MESSAGE),
            queue: VecDeque::new(),
            offset: 0,
            unflushed: false,
            writable: true,
            limit: SEND_QUEUE,
            notes: Vec::new(),
            deadline: None,
            flow: None,
        });
        self.set_deadline(endpoint, now + timeout);
    }

    /// Closes endpoint `endpoint`'s connection `leg` on purpose (no event).
    pub fn close(&mut self, endpoint: usize, leg: Leg) {
        // What the turn queued (an un-REGISTER, a BYE) leaves first, if the socket takes it.
        let _ = self.flush(key(endpoint, leg));
        let Some(mut c) = self.cell_mut(key(endpoint, leg)).and_then(Option::take) else {
            return;
        };
        if c.phase == Phase::Open {
            // A polite WebSocket close and TLS close_notify, if the socket takes them now.
            if let Some(w) = c.ws.as_mut() {
                w.close();
                let f = w.take_output();
                match c.tls.as_mut() {
                    Some(t) => {
                        let _ = t.writer().write_all(&f);
                    }
                    // Not in the middle of a frame already half written.
                    None if c.offset == 0 => {
                        let _ = c.sock.write(&f);
                    }
                    None => {}
                }
            }
            if let Some(t) = c.tls.as_mut() {
                t.send_close_notify();
                let _ = t.write_tls(&mut c.sock);
            }
        }
        let _ = self.poll.registry().deregister(&mut c.sock);
    }

    /// Queues one message on endpoint `endpoint`'s open connection `leg`. It is written by
    /// the next [`Self::flush_queued`] (with whatever else the turn queued on the
    /// connection), or at once when [`FLUSH_AT`] messages are queued.
    pub fn send(&mut self, endpoint: usize, leg: Leg, bytes: Bytes) -> Sent {
        let endpoint = key(endpoint, leg);
        let Some(c) = self
            .cell_mut(endpoint)
            .and_then(Option::as_mut)
            .filter(|c| c.phase == Phase::Open)
        else {
            return Sent::NotConnected;
        };
        if c.queue.len() >= c.limit {
            return Sent::Full;
        }
        match c.ws.as_mut() {
            Some(w) => match w.frame(&bytes) {
                Some(f) => c.queue.push_back(Bytes::from(f)),
                None => return Sent::NotConnected,
            },
            None => c.queue.push_back(bytes),
        }
        // Every FLUSH_AT queued (not on each send past it: a socket that is full is written
        // again when it is writable).
        if c.queue.len() % FLUSH_AT == 0 {
            if let Err(e) = self.flush(endpoint) {
                self.close_with(endpoint, format!("send failed: {e}"));
            }
        } else if !c.unflushed {
            c.unflushed = true;
            self.unflushed.push(endpoint);
        }
        Sent::Queued
    }

    /// Writes what [`Self::send`] queued since the last call, each connection's messages
    /// together (the shard calls it at the top of each turn and before it sleeps). A
    /// connection whose write fails is closed ([`StreamEvent::Closed`]).
    pub fn flush_queued(&mut self) {
        let mut keys = std::mem::take(&mut self.unflushed);
        for &k in &keys {
            let Some(c) = self.cell_mut(k).and_then(Option::as_mut) else {
                continue;
            };
            if !std::mem::replace(&mut c.unflushed, false) {
                continue;
            }
            if let Err(e) = self.flush(k) {
                self.close_with(k, format!("send failed: {e}"));
            }
        }
        keys.clear();
        // The list's room is kept (nothing was queued while it was out: `flush` queues none).
        if self.unflushed.is_empty() {
            self.unflushed = keys;
        }
    }

    /// Lets connection `leg` of `endpoint` (made by the last `connect_to`) hold up to `limit`
    /// messages queued instead of [`SEND_QUEUE`]: a shared connection carries many
    /// endpoints' messages.
    pub fn set_send_limit(&mut self, endpoint: usize, leg: Leg, limit: usize) {
        if let Some(c) = self.cell_mut(key(endpoint, leg)).and_then(Option::as_mut) {
            c.limit = limit.max(1);
        }
    }

    /// Adds endpoint `endpoint`'s own UDP socket to the set.
    pub fn add_udp(&mut self, endpoint: usize, sock: std::net::UdpSocket) -> io::Result<()> {
        sock.set_nonblocking(true)?;
        // Arrival stamps (see `StreamIn::arrived`); without them, the time read.
        let _ = crate::rxstamp::enable(&sock);
        let mut sock = UdpSocket::from_std(sock);
        self.poll
            .registry()
            .register(&mut sock, token(endpoint << 1, true), Interest::READABLE)?;
        if self.udp.len() <= endpoint {
            self.udp.resize_with(endpoint + 1, || None);
        }
        self.udp[endpoint] = Some(sock);
        Ok(())
    }

    /// Sends a datagram from endpoint `endpoint`'s own socket; `Ok(false)`: the socket's
    /// buffer is full (a dropped send), or the endpoint has no socket.
    pub fn send_udp(&mut self, endpoint: usize, bytes: &[u8], to: SocketAddr) -> io::Result<bool> {
        let Some(s) = self.udp.get(endpoint).and_then(Option::as_ref) else {
            return Ok(false);
        };
        match s.send_to(bytes, to) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Closes endpoint `endpoint`'s own UDP socket.
    pub fn remove_udp(&mut self, endpoint: usize) {
        if let Some(mut s) = self.udp.get_mut(endpoint).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn read_udp(&mut self, endpoint: usize) {
        let Some(s) = self.udp.get(endpoint).and_then(Option::as_ref) else {
            return;
        };
        loop {
            match crate::rxstamp::recv(s, &mut self.buf) {
                Ok((n, at, Some(from), _)) => self.ready.push_back(StreamIn {
                    endpoint,
                    leg: Leg::Server,
                    generation: 0,
                    // An IPv4 peer heard on a dual-stack socket as IPv4 (see `udpbatch::source`).
                    event: StreamEvent::Datagram(
                        Bytes::copy_from_slice(&self.buf[..n]),
                        crate::udpbatch::canonical(from),
                    ),
                    arrived: Some(at),
                }),
                Ok((_, _, None, _)) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors on an unconnected UDP socket are not fatal: keep reading.
                Err(_) => {}
            }
        }
    }

    /// The cell of connection `key` (see [`key`]), if the table reaches it.
    fn cell_mut(&mut self, key: usize) -> Option<&mut Option<Conn>> {
        self.conns[key & 1].get_mut(key >> 1)
    }

    fn cell(&self, key: usize) -> Option<&Option<Conn>> {
        self.conns[key & 1].get(key >> 1)
    }

    fn conn(&self, endpoint: usize, generation: u32) -> Option<&Conn> {
        self.cell(endpoint)
            .and_then(Option::as_ref)
            .filter(|c| c.generation == generation)
    }

    fn set_deadline(&mut self, endpoint: usize, at: Instant) {
        // The table by field (not `cell_mut`): the heap is borrowed beside it.
        if let Some(c) = self.conns[endpoint & 1]
            .get_mut(endpoint >> 1)
            .and_then(Option::as_mut)
        {
            c.deadline = Some(at);
            self.deadlines.push(Reverse((at, endpoint, c.generation)));
        }
    }

    fn push(&mut self, key: usize, generation: u32, event: StreamEvent) {
        self.ready.push_back(StreamIn {
            endpoint: key >> 1,
            leg: leg_of(key),
            generation,
            event,
            arrived: None,
        });
    }

    /// The connect failed: the connection is gone, the shard is told why.
    fn fail(&mut self, endpoint: usize, e: &FlowError) {
        if let Some(c) = self.cell(endpoint).and_then(Option::as_ref) {
            let generation = c.generation;
            self.close(endpoint >> 1, leg_of(endpoint));
            self.push(endpoint, generation, failed(e));
        }
    }

    /// The open connection ended: the shard is told why.
    fn close_with(&mut self, endpoint: usize, reason: String) {
        if let Some(c) = self.cell(endpoint).and_then(Option::as_ref) {
            let generation = c.generation;
            // What is queued (a WebSocket close answering the server's) leaves if it can.
            let _ = self.flush(endpoint);
            if let Some(mut c) = self.cell_mut(endpoint).and_then(Option::take) {
                let _ = self.poll.registry().deregister(&mut c.sock);
            }
            self.push(endpoint, generation, StreamEvent::Closed(reason));
        }
    }

    /// The socket of endpoint `endpoint` is ready: moves the connection on.
    fn drive(&mut self, endpoint: usize, now: Instant, closing: bool) {
        let Some(c) = self.cell_mut(endpoint).and_then(Option::as_mut) else {
            return;
        };
        let settings = c.settings.clone();
        if c.phase == Phase::Connecting {
            match c.sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    let e = connect_error(e, c.addr);
                    return self.fail(endpoint, &e);
                }
            }
            match c.sock.peer_addr() {
                Ok(_) => {}
                // Not connected yet (a spurious wake-up): the next edge says more.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let e = connect_error(e, c.addr);
                    return self.fail(endpoint, &e);
                }
            }
            let _ = c.sock.set_nodelay(true);
            c.tcp_time = now.saturating_duration_since(c.since);
            c.notes.push(format!("TCP connected to {}", c.addr));
            match &settings.tls {
                Some((config, name, _)) => {
                    match rustls::ClientConnection::new(config.clone(), name.clone()) {
                        Ok(t) => c.tls = Some(Box::new(t)),
                        Err(e) => {
                            let cert = settings.tls.as_ref().is_some_and(|t| t.2);
                            let e = FlowError::TlsHandshake(tls::explain(&e, cert), c.tcp_time);
                            return self.fail(endpoint, &e);
                        }
                    }
                    c.phase = Phase::Handshaking;
                    c.since = now;
                    self.set_deadline(endpoint, now + settings.timeout);
                }
                None if settings.kind.websocket() => {
                    Self::upgrade(c, &settings, now);
                    self.set_deadline(endpoint, now + settings.timeout);
                }
                // Open; bytes that came with the connect are read below.
                None => self.opened(endpoint, now, &settings),
            }
        }
        match self.read(endpoint, &settings, now, closing) {
            Ok(()) => {}
            Err(e) => return self.end(endpoint, &e),
        }
        if let Err(e) = self.flush(endpoint) {
            let Some(c) = self.cell(endpoint).and_then(Option::as_ref) else {
                return;
            };
            return match c.phase {
                Phase::Open => self.close_with(endpoint, format!("send failed: {e}")),
                _ => self.end(endpoint, &tls_io_error(e, &settings)),
            };
        }
        let Some(c) = self.cell_mut(endpoint).and_then(Option::as_mut) else {
            return;
        };
        if c.phase == Phase::Handshaking && c.tls.as_ref().is_some_and(|t| !t.is_handshaking()) {
            let Some(t) = c.tls.as_deref() else { return };
            let n = Negotiated::of_connection(t);
            c.notes.push(format!(
                "TLS handshake done with {}: {} {} (verification: {}{})",
                c.addr,
                n.version,
                n.cipher_suite,
                settings.verify,
                if settings.tls.as_ref().is_some_and(|t| t.2) {
                    "; client certificate sent"
                } else {
                    ""
                }
            ));
            if settings.kind.websocket() {
                Self::upgrade(c, &settings, now);
                self.set_deadline(endpoint, now + settings.timeout);
                if let Err(e) = self.flush(endpoint) {
                    self.end(endpoint, &tls_io_error(e, &settings));
                }
                return;
            }
            self.opened(endpoint, now, &settings);
            // Application data may have come with the handshake's last flight.
            if let Err(e) = self.read(endpoint, &settings, now, closing) {
                self.end(endpoint, &e);
            }
        }
    }

    /// Starts the HTTP upgrade to WebSocket (RFC 6455 §4.1, subprotocol `sip`).
    fn upgrade(c: &mut Conn, settings: &StreamSettings, now: Instant) {
        let mut w = WsClient::new(settings.kind.secure(), &settings.ws.host, &settings.ws.path);
        c.queue.push_back(Bytes::from(w.take_output()));
        c.ws = Some(Box::new(w));
        c.phase = Phase::Upgrading;
        c.since = now;
    }

    /// The connection is open: the shard hears of it, keep-alives start.
    fn opened(&mut self, endpoint: usize, now: Instant, settings: &StreamSettings) {
        let Some(c) = self.cell_mut(endpoint).and_then(Option::as_mut) else {
            return;
        };
        let event = open(c);
        let generation = c.generation;
        self.opened += 1;
        self.push(endpoint, generation, event);
        if let Some(period) = settings.keepalive {
            self.set_deadline(endpoint, now + period);
        }
    }

    /// A failure during the connect is a `Failed` event; once open, a `Closed` one.
    fn end(&mut self, endpoint: usize, e: &FlowError) {
        match self.cell(endpoint).and_then(Option::as_ref) {
            Some(c) if c.phase == Phase::Open => self.close_with(endpoint, e.to_string()),
            Some(_) => self.fail(endpoint, e),
            None => {}
        }
    }

    /// Reads until the socket would block; whole messages become events.
    ///
    /// A read that returns less than asked for (the buffer over plain TCP, what rustls asks
    /// for over TLS) has drained the socket: the read that would only say so (`WouldBlock`)
    /// is not made, as nginx does. Bytes that
    /// arrive after it raise a new edge. Unless the poll reported the peer's close or an
    /// error with this wake (`closing`): then it reads on to the end (0) or the error, since
    /// that edge came with the last data and none follows it.
    fn read(
        &mut self,
        endpoint: usize,
        settings: &StreamSettings,
        now: Instant,
        closing: bool,
    ) -> Result<(), Box<FlowError>> {
        // The table by field: the buffer and the event queue are borrowed beside it.
        let Some(c) = self.conns[endpoint & 1]
            .get_mut(endpoint >> 1)
            .and_then(Option::as_mut)
        else {
            return Ok(());
        };
        let cert = settings.tls.as_ref().is_some_and(|t| t.2);
        // Stamps no earlier than the set's previous poll: a lost segment's retransmission
        // makes data readable with the stamp of a later segment that came before it.
        let floor = self.floor;
        let mut closed = false;
        loop {
            match &mut c.tls {
                None => match stamped_read(&c.sock, &mut self.buf, &mut c.arrived) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        feed(c.ws.as_deref_mut(), &mut c.framer, &self.buf[..n]);
                        if n < self.buf.len() && !closing {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Box::new(e.into())),
                },
                Some(t) => {
                    let mut short = false;
                    match t.read_tls(&mut Stamped(&c.sock, &mut c.arrived, &mut short)) {
                        Ok(0) => closed = true,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Box::new(e.into())),
                    }
                    if let Err(e) = t.process_new_packets() {
                        // Tell the server why (the alert rustls queued), if the socket takes it.
                        let _ = t.write_tls(&mut c.sock);
                        let d = tls::explain(&e, cert);
                        return Err(Box::new(if c.phase == Phase::Open {
                            FlowError::Tls(d)
                        } else {
                            FlowError::TlsHandshake(d, c.tcp_time)
                        }));
                    }
                    loop {
                        match t.reader().read(&mut self.buf) {
                            Ok(0) => {
                                closed = true; // close_notify
                                break;
                            }
                            Ok(n) => feed(c.ws.as_deref_mut(), &mut c.framer, &self.buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                                closed = true;
                                break;
                            }
                            Err(e) => return Err(Box::new(e.into())),
                        }
                    }
                    // As over plain TCP: a read shorter than rustls asked for emptied the
                    // socket, and asking again would only be told so.
                    if closed || (short && !closing) {
                        break;
                    }
                }
            }
        }
        let generation = c.generation;
        let mut got = Vec::new();
        let mut failure = None;
        if let Some(w) = c.ws.as_deref_mut() {
            loop {
                match w.next_event() {
                    Ok(None) => break,
                    Ok(Some(WsEvent::Closed)) => {
                        closed = true;
                        break;
                    }
                    Ok(Some(e)) => got.push(e),
                    Err(f) => {
                        failure = Some(f);
                        break;
                    }
                }
            }
            // Answers to pings and closes.
            if w.wants_write() {
                c.queue.push_back(Bytes::from(w.take_output()));
            }
        }
        let mut ws_opened = false;
        for e in got {
            let event = match e {
                WsEvent::Open => {
                    let url = c.ws.as_deref().map_or("", WsClient::url);
                    c.notes.push(format!(
                        "HTTP upgrade to WebSocket at {url} with subprotocol sip (RFC 7118)"
                    ));
                    self.opened += 1;
                    ws_opened = true;
                    open(c)
                }
                WsEvent::Message(m) => StreamEvent::Message(m),
                WsEvent::Pong => {
                    pong(c, &mut self.flows, &mut self.deadlines, endpoint);
                    continue;
                }
                WsEvent::Closed => continue,
            };
            self.ready.push_back(StreamIn {
                endpoint: endpoint >> 1,
                leg: leg_of(endpoint),
                generation,
                event,
                arrived: c.arrived.map(|a| floor.map_or(a, |f| a.max(f))),
            });
        }
        // Open over a WebSocket: the plain keep-alive starts, as `opened` starts it for TCP.
        if ws_opened && let Some(period) = settings.keepalive {
            let at = now + period;
            c.deadline = Some(at);
            self.deadlines.push(Reverse((at, endpoint, c.generation)));
        }
        match failure {
            None => {}
            Some(WsFailure::Upgrade(diagnosis)) => {
                return Err(Box::new(FlowError::WebSocketUpgrade {
                    diagnosis,
                    tcp: c.tcp_time,
                    tls: None,
                }));
            }
            Some(WsFailure::Protocol(why)) => return Err(Box::new(FlowError::WebSocket(why))),
        }
        while let Some(frame) = c.framer.next_frame() {
            match frame {
                Ok(Frame::Message(m)) => self.ready.push_back(StreamIn {
                    endpoint: endpoint >> 1,
                    leg: leg_of(endpoint),
                    generation,
                    event: StreamEvent::Message(m),
                    arrived: c.arrived.map(|a| floor.map_or(a, |f| a.max(f))),
                }),
                Ok(Frame::Pong) => pong(c, &mut self.flows, &mut self.deadlines, endpoint),
                Ok(Frame::Ping) => {}
                Err(e) => return Err(Box::new(e.into())),
            }
        }
        if closed {
            return Err(Box::new(match (c.phase, c.ws.as_deref()) {
                (Phase::Handshaking, _) => {
                    tls_io_error(io::ErrorKind::UnexpectedEof.into(), settings)
                }
                (Phase::Upgrading, Some(w)) => FlowError::WebSocketUpgrade {
                    diagnosis: w.closed_during_upgrade(),
                    tcp: c.tcp_time,
                    tls: None,
                },
                _ => FlowError::Closed,
            }));
        }
        Ok(())
    }

    /// Writes what is queued until the socket would block. An open connection is watched
    /// for writability only while a write is blocked: on loopback every ACK would raise a
    /// writable edge, and so wake the shard, after each of our writes.
    fn flush(&mut self, endpoint: usize) -> io::Result<()> {
        let registry = self.poll.registry();
        let Some(c) = self.conns[endpoint & 1]
            .get_mut(endpoint >> 1)
            .and_then(Option::as_mut)
        else {
            return Ok(());
        };
        if c.phase == Phase::Connecting {
            return Ok(());
        }
        let blocked = write_queue(c);
        let want = c.phase != Phase::Open || matches!(blocked, Ok(true));
        if want != c.writable {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut c.sock, token(endpoint, false), interest)?;
            c.writable = want;
        }
        blocked.map(|_| ())
    }
}

/// Writes `c`'s queue until it is empty (`Ok(false)`) or the socket would block
/// (`Ok(true)`).
fn write_queue(c: &mut Conn) -> io::Result<bool> {
    loop {
        match &mut c.tls {
            None => {
                if c.queue.is_empty() {
                    return Ok(false);
                }
                // Every queued message (up to WRITE_BATCH) in one write.
                let mut slices = [io::IoSlice::new(&[]); WRITE_BATCH];
                let mut n = 0;
                for (i, m) in c.queue.iter().take(WRITE_BATCH).enumerate() {
                    slices[i] = io::IoSlice::new(if i == 0 { &m[c.offset..] } else { m });
                    n = i + 1;
                }
                match c.sock.write_vectored(&slices[..n]) {
                    Ok(mut wrote) => {
                        // Whole messages written leave the queue; a part moves the offset.
                        while let Some(front) = c.queue.front() {
                            let left = front.len() - c.offset;
                            if wrote < left {
                                c.offset += wrote;
                                break;
                            }
                            wrote -= left;
                            c.queue.pop_front();
                            c.offset = 0;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Some(t) => {
                while t.wants_write() {
                    match t.write_tls(&mut c.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                // rustls holds nothing unsent: hand it the queued messages (up to
                // WRITE_BATCH and TLS_BATCH bytes, within rustls's 64 KiB buffer),
                // whose records then leave in one write.
                if matches!(c.phase, Phase::Connecting | Phase::Handshaking) {
                    return Ok(false);
                }
                let mut bytes = 0;
                let take = c
                    .queue
                    .iter()
                    .take(WRITE_BATCH)
                    .take_while(|m| {
                        bytes += m.len();
                        bytes <= TLS_BATCH
                    })
                    .count()
                    .max(1)
                    .min(c.queue.len());
                if take == 0 {
                    return Ok(false);
                }
                for m in c.queue.drain(..take) {
                    t.writer().write_all(&m)?;
                }
            }
        }
    }
}

/// Bytes read (after TLS): to the WebSocket, or to the SIP stream framer.
fn feed(ws: Option<&mut WsClient>, framer: &mut Framer, data: &[u8]) {
    match ws {
        Some(w) => w.push(data),
        None => framer.push(data),
    }
}

/// The connection is open: what the shard hears (our address, the connect's notes).
fn open(c: &mut Conn) -> StreamEvent {
    c.phase = Phase::Open;
    c.deadline = None;
    let local = c
        .sock
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    StreamEvent::Connected {
        local,
        notes: std::mem::take(&mut c.notes),
    }
}

/// What a failed connect tells the shard.
fn failed(e: &FlowError) -> StreamEvent {
    StreamEvent::Failed {
        error: e.to_string(),
        hint: e
            .tls_hint()
            .map_or_else(|| UNREACHABLE_HINT.to_owned(), str::to_owned),
        after_tcp: matches!(
            e,
            FlowError::TlsHandshake(..) | FlowError::WebSocketUpgrade { .. }
        ),
    }
}

/// A TCP connect error in the words `check` uses.
fn connect_error(e: io::Error, addr: SocketAddr) -> FlowError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        FlowError::Refused(addr)
    } else {
        FlowError::Io(e)
    }
}

/// An I/O error during the TLS handshake, explained when it says something about TLS (the
/// server closing the connection mid-handshake).
fn tls_io_error(e: io::Error, settings: &StreamSettings) -> FlowError {
    let cert = settings.tls.as_ref().is_some_and(|t| t.2);
    match tls::diagnose(&e, cert) {
        Some(d) if settings.kind.secure() => FlowError::TlsHandshake(d, Duration::ZERO),
        _ => e.into(),
    }
}

/// Reads from `sock` into `buf` with `recvmsg`, and notes in `arrived` when the last bytes
/// read reached the socket (the kernel's stamp, `SO_TIMESTAMPNS`, set when the connection
/// was made; else the time read).
fn stamped_read(
    sock: &TcpStream,
    buf: &mut [u8],
    arrived: &mut Option<Instant>,
) -> io::Result<usize> {
    let (n, at, _, _) = crate::rxstamp::recv(sock, buf)?;
    if n > 0 {
        *arrived = Some(at);
    }
    Ok(n)
}

/// A connection's socket as rustls reads it ([`stamped_read`]); the flag says whether the
/// read was short (some bytes, fewer than asked for: the socket was emptied).
struct Stamped<'a>(&'a TcpStream, &'a mut Option<Instant>, &'a mut bool);

impl Read for Stamped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = stamped_read(self.0, buf, self.1)?;
        *self.2 = n > 0 && n < buf.len();
        Ok(n)
    }
}

/// Starts a non-blocking TCP connection to `addr`, its packets (the SYN too) marked `dscp`.
fn connect_marked(addr: SocketAddr, dscp: Option<crate::dscp::Dscp>) -> io::Result<TcpStream> {
    let Some(d) = dscp else {
        return TcpStream::connect(addr);
    };
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    d.mark(&sock, addr.is_ipv6())?;
    sock.set_nonblocking(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowKind;
    use sip_net::tls::ClientSettings;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Runs the set as the shard loop does (readiness, deadlines), collecting its events.
    async fn drive(net: &mut NetPoll, events: &mut VecDeque<StreamIn>) {
        loop {
            let now = Instant::now();
            net.on_timeout(now);
            net.flush_queued();
            while let Some(e) = net.next_event() {
                events.push_back(e);
            }
            let wake = net.next_deadline().unwrap_or(now + Duration::from_secs(1));
            tokio::select! {
                r = net.readable() => {
                    r.unwrap();
                    net.poll_ready(Instant::now());
                }
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// The next event (the set driven meanwhile).
    /// `keep_flow` of connection `key` with a fast flow: a ping every 50 ms (80–100 % of it),
    /// each pong due within 300 ms.
    fn keep_fast(net: &mut NetPoll, key: usize) -> bool {
        net.keep_flow(
            key,
            Leg::Server,
            Duration::from_millis(50),
            Duration::from_millis(300),
            9,
            Instant::now(),
        )
    }

    async fn next(net: &mut NetPoll, events: &mut VecDeque<StreamIn>) -> StreamIn {
        let deadline = Instant::now() + Duration::from_secs(5);
        while events.is_empty() {
            assert!(Instant::now() < deadline, "an event in time");
            let _ = tokio::time::timeout(Duration::from_millis(20), drive(net, events)).await;
        }
        events.pop_front().unwrap()
    }

    fn tcp_settings(addr: SocketAddr, keepalive: Option<Duration>) -> Arc<StreamSettings> {
        Arc::new(
            StreamSettings::new(
                FlowKind::Tcp,
                addr,
                "127.0.0.1",
                &ClientSettings::default(),
                None,
                "/",
                keepalive,
            )
            .unwrap(),
        )
    }

    /// TLS to `addr` (a self-signed certificate for 127.0.0.1, not verified), and the
    /// server's config to accept with.
    fn tls_settings(addr: SocketAddr) -> (Arc<StreamSettings>, Arc<rustls::ServerConfig>) {
        let issued = tls::self_signed(&["127.0.0.1".to_owned()]).unwrap();
        let client = ClientSettings {
            verify: tls::Verify::InsecureSkipVerification,
            identity: None,
        };
        let server = tls::ServerSettings {
            identity: issued.identity().unwrap(),
            client_cas: None,
        };
        let settings =
            StreamSettings::new(FlowKind::Tls, addr, "127.0.0.1", &client, None, "/", None)
                .unwrap();
        (Arc::new(settings), server.config().unwrap())
    }

    /// A disarmed set (a busy shard coalescing its wakes) wakes no one: what arrives waits
    /// until the shard looks (`poll_ready`), and arming again reports news already there at
    /// once. A message and the peer's close that arrive together are both read, though the
    /// read of the message is short (the socket then drained): the close came with it.
    #[tokio::test]
    async fn a_disarmed_set_keeps_its_news_for_the_next_look() {
        use std::collections::HashMap;
        const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        let mut events = VecDeque::new();
        for key in [2, 4] {
            net.connect(key, 1, Instant::now(), tcp_settings(addr, None));
        }
        let mut accepted = vec![
            listener.accept().await.unwrap(),
            listener.accept().await.unwrap(),
        ];
        // The server's side of each endpoint's connection, by the endpoint's address.
        let mut peer_of = HashMap::new();
        for _ in 0..2 {
            let ev = next(&mut net, &mut events).await;
            let StreamEvent::Connected { local, .. } = ev.event else {
                panic!("{ev:?}")
            };
            let i = accepted
                .iter()
                .position(|(_, from)| *from == local)
                .unwrap();
            peer_of.insert(ev.endpoint, accepted.swap_remove(i).0);
        }
        let mut first = peer_of.remove(&2).unwrap();
        let mut second = peer_of.remove(&4).unwrap();
        assert!(net.is_armed());
        net.disarm();
        assert!(!net.is_armed());
        // A message, then the close, from the first peer (the kernel stamping by then).
        crate::rxstamp::tests::stamping_on();
        first.write_all(MSG).await.unwrap();
        let sent = Instant::now();
        drop(first);
        let woke = tokio::time::timeout(Duration::from_millis(200), net.readable()).await;
        assert!(woke.is_err(), "a disarmed set woke the shard");
        net.poll_ready(Instant::now());
        let read = Instant::now();
        let got: Vec<_> = std::iter::from_fn(|| net.next_event()).collect();
        assert!(
            matches!(&got[..], [
                StreamIn { endpoint: 2, event: StreamEvent::Message(m), .. },
                StreamIn { endpoint: 2, event: StreamEvent::Closed(_), .. },
            ] if &m[..] == MSG),
            "{got:?}"
        );
        // Read 200 ms late, the message is stamped with its arrival (the kernel's stamp),
        // not with the read.
        let arrived = got[0].arrived.expect("a stamp");
        assert!(
            arrived <= sent + Duration::from_millis(50)
                && read - arrived >= Duration::from_millis(150),
            "arrived {:?} after the write, read {:?} after it",
            arrived.saturating_duration_since(sent),
            read - sent
        );
        // News on the second while disarmed is reported as soon as the set is armed.
        second.write_all(MSG).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        net.arm().unwrap();
        tokio::time::timeout(Duration::from_secs(5), net.readable())
            .await
            .expect("armed with news waiting: at once")
            .unwrap();
        net.poll_ready(Instant::now());
        let ev = net.next_event().expect("the message");
        assert!(
            matches!(&ev.event, StreamEvent::Message(m) if &m[..] == MSG) && ev.endpoint == 4,
            "{ev:?}"
        );
        // A message in two parts, the set disarmed (looked at by the shard only): the short
        // read of the first leaves the second to its own edge, and the next look reads it.
        net.disarm();
        let (head, tail) = MSG.split_at(10);
        second.write_all(head).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        net.poll_ready(Instant::now());
        assert!(net.next_event().is_none());
        second.write_all(tail).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        net.poll_ready(Instant::now());
        let ev = net.next_event().expect("the message, whole");
        assert!(
            matches!(&ev.event, StreamEvent::Message(m) if &m[..] == MSG),
            "{ev:?}"
        );
    }

    /// RFC 5626 §4.4.1 over a real loopback connection: once the flow is kept
    /// (`keep_flow`), each ping waits for its pong; answered pings are counted, and a ping
    /// left unanswered past the pong timeout closes the connection as a failed flow.
    #[tokio::test]
    async fn an_outbound_flow_counts_pongs_and_fails_without_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        // The configured keep-alive is long: the flow's own period takes over.
        let settings = tcp_settings(addr, Some(Duration::from_secs(30)));
        let mut events = VecDeque::new();
        assert!(!keep_fast(&mut net, 2));
        net.connect(2, 1, Instant::now(), settings);
        let (mut server, _) = listener.accept().await.unwrap();
        let ev = next(&mut net, &mut events).await;
        assert!(matches!(ev.event, StreamEvent::Connected { .. }), "{ev:?}");
        assert!(keep_fast(&mut net, 2));
        // Two pings answered with a pong each.
        for _ in 0..2 {
            let mut ping = [0u8; 4];
            tokio::select! {
                r = server.read_exact(&mut ping) => { r.unwrap(); }
                () = drive(&mut net, &mut events) => unreachable!(),
                () = tokio::time::sleep(Duration::from_secs(2)) => panic!("no ping"),
            }
            assert_eq!(&ping, b"\r\n\r\n");
            server.write_all(b"\r\n").await.unwrap();
        }
        // The third ping goes unanswered: the flow fails.
        let began = Instant::now();
        let why = loop {
            let mut ping = [0u8; 4];
            tokio::select! {
                // The close reaches the server first: the event follows.
                r = server.read_exact(&mut ping) => if r.is_err() {
                    match next(&mut net, &mut events).await.event {
                        StreamEvent::Closed(why) => break why,
                        other => panic!("{other:?}"),
                    }
                },
                ev = next(&mut net, &mut events) => match ev.event {
                    StreamEvent::Closed(why) => break why,
                    other => panic!("{other:?}"),
                },
                () = tokio::time::sleep(Duration::from_secs(3)) => panic!("no failure"),
            }
        };
        assert!(why.starts_with("no CRLF pong within 300 ms"), "{why}");
        assert!(began.elapsed() >= Duration::from_millis(300));
        let c = net.flow_counts();
        assert_eq!((c.pongs, c.missing_pongs), (2, 1), "{c:?}");
        assert_eq!(c.pings, 3, "{c:?}");
    }

    /// RFC 5626 §3.5.1 over a real loopback connection: the client sends CRLFCRLF every
    /// interval, the server's CRLF pong is swallowed, the next SIP message is handed over
    /// whole, what the shard sends is written as is, and the server closing the connection
    /// is reported.
    #[tokio::test]
    async fn keepalive_pings_pongs_are_silent_and_a_close_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        let settings = tcp_settings(addr, Some(Duration::from_millis(50)));
        let mut events = VecDeque::new();
        net.connect(3, 7, Instant::now(), settings);
        let (mut server, _) = listener.accept().await.unwrap();
        let ev = next(&mut net, &mut events).await;
        assert_eq!((ev.endpoint, ev.generation), (3, 7));
        let StreamEvent::Connected { local, notes } = ev.event else {
            panic!("connected first: {ev:?}");
        };
        assert_eq!(local, server.peer_addr().unwrap());
        assert_eq!(notes, [format!("TCP connected to {addr}")]);
        // Two pings, 50 ms apart, while the set runs.
        for _ in 0..2 {
            let mut ping = [0u8; 4];
            tokio::select! {
                r = server.read_exact(&mut ping) => { r.unwrap(); }
                () = drive(&mut net, &mut events) => unreachable!(),
                () = tokio::time::sleep(Duration::from_secs(2)) => panic!("no ping"),
            }
            assert_eq!(&ping, b"\r\n\r\n");
        }
        // A pong, then a message in two pieces: only the whole message comes out.
        let options = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        server.write_all(b"\r\n").await.unwrap();
        server.write_all(&options[..10]).await.unwrap();
        server.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        server.write_all(&options[10..]).await.unwrap();
        let ev = next(&mut net, &mut events).await;
        assert_eq!((ev.endpoint, ev.generation), (3, 7));
        match ev.event {
            StreamEvent::Message(m) => assert_eq!(&m[..], &options[..]),
            other => panic!("{other:?}"),
        }
        // What the shard sends is written as is, at the turn's flush.
        assert_eq!(
            net.send(3, Leg::Server, Bytes::from_static(options)),
            Sent::Queued
        );
        net.flush_queued();
        let mut got = vec![0u8; options.len()];
        loop {
            server.read_exact(&mut got[..4]).await.unwrap();
            if &got[..4] != b"\r\n\r\n" {
                break; // not a ping
            }
        }
        server.read_exact(&mut got[4..]).await.unwrap();
        assert_eq!(&got[..], &options[..]);
        drop(server);
        loop {
            match next(&mut net, &mut events).await.event {
                StreamEvent::Closed(why) => {
                    assert_eq!(why, "the server closed the connection");
                    break;
                }
                StreamEvent::Message(m) => panic!("{m:?}"),
                _ => {}
            }
        }
        assert_eq!(
            net.send(3, Leg::Server, Bytes::from_static(options)),
            Sent::NotConnected
        );
    }

    /// Closing on purpose closes the socket without an event; a refused connect is a
    /// failure with the words and the hint `check` uses.
    #[tokio::test]
    async fn a_close_is_quiet_and_a_refusal_is_explained() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        let settings = tcp_settings(addr, None);
        let mut events = VecDeque::new();
        net.connect(0, 1, Instant::now(), settings.clone());
        let (mut server, _) = listener.accept().await.unwrap();
        assert!(matches!(
            next(&mut net, &mut events).await.event,
            StreamEvent::Connected { .. }
        ));
        net.close(0, Leg::Server);
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "the client closed");
        let _ =
            tokio::time::timeout(Duration::from_millis(100), drive(&mut net, &mut events)).await;
        assert!(events.is_empty(), "{events:?}");

        drop(listener);
        net.connect(0, 2, Instant::now(), settings.clone());
        let ev = next(&mut net, &mut events).await;
        assert_eq!(ev.generation, 2);
        match ev.event {
            StreamEvent::Failed {
                error,
                hint,
                after_tcp,
            } => {
                assert_eq!(
                    error,
                    format!("connection refused by {addr}: nothing listens on that port over TCP")
                );
                assert_eq!(hint, UNREACHABLE_HINT);
                assert!(!after_tcp);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A bounded queue: while the server reads nothing, messages queue up to the bound and
    /// the next one is refused; once the server reads, everything queued arrives in order.
    /// A shared connection's bound is its own (`set_send_limit`).
    #[tokio::test]
    async fn a_full_queue_refuses_sends_and_drains_in_order() {
        full_queue(None).await;
        full_queue(Some(1000)).await;
    }

    async fn full_queue(limit: Option<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        let settings = tcp_settings(addr, None);
        let mut events = VecDeque::new();
        net.connect(0, 1, Instant::now(), settings.clone());
        if let Some(l) = limit {
            net.set_send_limit(0, Leg::Server, l);
        }
        let (mut server, _) = listener.accept().await.unwrap();
        assert!(matches!(
            next(&mut net, &mut events).await.event,
            StreamEvent::Connected { .. }
        ));
        // 64 KiB messages fill the kernel's buffers, then the queue.
        let mut sent = 0u32;
        let full = loop {
            let mut m = format!("MESSAGE {sent:08} ").into_bytes();
            m.resize(64 * 1024, b'x');
            match net.send(0, Leg::Server, Bytes::from(m)) {
                Sent::Queued => sent += 1,
                Sent::Full => break true,
                Sent::NotConnected => panic!("closed"),
            }
            assert!(sent < 100_000, "never full");
        };
        let bound = limit.unwrap_or(SEND_QUEUE);
        // The kernel's buffers hold some messages more than the queue (default sysctls: a
        // few MB), never the 744 more (46 MB) that would read as the larger bound.
        assert!(
            full && sent as usize >= bound && (limit.is_some() || (sent as usize) < 1000),
            "{sent}"
        );
        // The server reads everything while the set writes the rest.
        let expected = sent as usize * 64 * 1024;
        let mut got = Vec::with_capacity(expected);
        let mut buf = vec![0u8; 256 * 1024];
        while got.len() < expected {
            tokio::select! {
                r = server.read(&mut buf) => {
                    let n = r.unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
                () = drive(&mut net, &mut events) => unreachable!(),
                () = tokio::time::sleep(Duration::from_secs(10)) => panic!("stalled at {}", got.len()),
            }
        }
        assert_eq!(got.len(), expected);
        for (i, m) in got.chunks(64 * 1024).enumerate() {
            assert!(m.starts_with(format!("MESSAGE {i:08} ").as_bytes()));
        }
        assert_eq!(
            net.send(0, Leg::Server, Bytes::from_static(b"\r\n\r\n")),
            Sent::Queued
        );
    }

    /// Reads from `server` until `n` bytes came, or `wait` passed with nothing more.
    async fn read_upto(
        server: &mut (impl AsyncReadExt + Unpin),
        n: usize,
        wait: Duration,
    ) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while got.len() < n {
            match tokio::time::timeout(wait, server.read(&mut buf)).await {
                Ok(Ok(k)) if k > 0 => got.extend_from_slice(&buf[..k]),
                _ => break,
            }
        }
        got
    }

    /// `n` numbered messages of about 500 bytes, each its own SIP-like text.
    fn numbered(n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| {
                let mut m = format!("OPTIONS sip:{i:05}@127.0.0.1 SIP/2.0\r\n").into_bytes();
                m.resize(500, b'x');
                Bytes::from(m)
            })
            .collect()
    }

    /// A set with endpoint 0 connected over TLS to a server of the test's, and the server's
    /// side of the connection (`TCP_NODELAY`: without it the server's second segment, a
    /// message after its session tickets, waits for our delayed ACK under Nagle and really
    /// arrives 20–40 ms later). The Connected event is taken.
    async fn tls_connected() -> (NetPoll, tls::ServerStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        let mut events = VecDeque::new();
        let (settings, config) = tls_settings(addr);
        net.connect(0, 1, Instant::now(), settings);
        let (tcp, _) = tokio::select! {
            r = listener.accept() => r.unwrap(),
            () = drive(&mut net, &mut events) => unreachable!(),
        };
        tcp.set_nodelay(true).unwrap();
        let server = tokio::select! {
            r = tls::accept(tcp, config) => r.unwrap(),
            () = drive(&mut net, &mut events) => unreachable!(),
        };
        let ev = next(&mut net, &mut events).await;
        assert!(matches!(ev.event, StreamEvent::Connected { .. }), "{ev:?}");
        assert!(events.is_empty(), "{events:?}");
        (net, server)
    }

    /// Over TLS (rustls reads through the stamping reader) and on an endpoint's own UDP
    /// socket, a message read late carries when it arrived, as over plain TCP.
    #[tokio::test]
    async fn messages_over_tls_and_own_udp_carry_their_arrival() {
        use tokio::io::AsyncWriteExt;
        const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        crate::rxstamp::tests::stamping_on();
        let (mut net, mut server) = tls_connected().await;
        // An endpoint's own UDP socket in the same set, and a peer for it.
        let own = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let own_addr = own.local_addr().unwrap();
        net.add_udp(1, own).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();

        net.disarm();
        // Well after the set's last poll (a stamp no earlier than that poll is not enough).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = Instant::now();
        server.write_all(MSG).await.unwrap();
        server.flush().await.unwrap();
        peer.send_to(MSG, own_addr).unwrap();
        let sent = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        net.poll_ready(Instant::now());
        let read = Instant::now();
        let got: Vec<_> = std::iter::from_fn(|| net.next_event()).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        for ev in &got {
            match &ev.event {
                StreamEvent::Message(m) | StreamEvent::Datagram(m, _) => assert_eq!(&m[..], MSG),
                other => panic!("{other:?}"),
            }
            let arrived = ev.arrived.expect("a stamp");
            // Between the writes (a millisecond of slack: the stamp is the wall clock's,
            // taken back to the monotonic one) and well before the read.
            let slack = Duration::from_millis(1);
            assert!(
                arrived + slack >= before
                    && arrived <= sent + slack
                    && read - arrived >= Duration::from_millis(150),
                "{:?}: arrived {:?} after the writes began, {:?} before the read",
                ev.event,
                arrived.saturating_duration_since(before),
                read - arrived
            );
        }
    }

    /// Over TLS a read shorter than rustls asked for ends the socket's reads for the look, as
    /// over plain TCP, and nothing is lost for it: a burst larger than rustls's reads is read
    /// whole in one look; a message in two records, the second sent later, is read whole at
    /// the look after it; and a message with the server's close behind it (close_notify and
    /// FIN) gives the message, then the close.
    #[tokio::test]
    async fn a_tls_connection_read_short_loses_nothing() {
        use tokio::io::AsyncWriteExt;
        let (mut net, mut server) = tls_connected().await;
        net.disarm();
        let messages = |got: Vec<StreamIn>| -> Vec<Bytes> {
            got.into_iter()
                .map(|e| match e.event {
                    StreamEvent::Message(m) => m,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        // Whole SIP messages of 500 bytes each (a body fills them up).
        let sip = |n: usize| -> Vec<Bytes> {
            (0..n)
                .map(|i| {
                    let head = format!("OPTIONS sip:{i:05}@127.0.0.1 SIP/2.0\r\nContent-Length: ");
                    let body = 500 - head.len() - "400\r\n\r\n".len();
                    Bytes::from(format!("{head}{body}\r\n\r\n{}", "x".repeat(body)))
                })
                .collect()
        };
        // 200 of them (100 KB: many records and many of rustls's reads).
        let burst = sip(200);
        for m in &burst {
            server.write_all(m).await.unwrap();
        }
        server.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        net.poll_ready(Instant::now());
        let got = messages(std::iter::from_fn(|| net.next_event()).collect());
        assert!(
            got == burst,
            "{} messages of {} read",
            got.len(),
            burst.len()
        );
        // A message in two records, the second 50 ms later.
        let one = &sip(1)[0];
        let (head, tail) = one.split_at(200);
        server.write_all(head).await.unwrap();
        server.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        net.poll_ready(Instant::now());
        assert!(net.next_event().is_none());
        server.write_all(tail).await.unwrap();
        server.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        net.poll_ready(Instant::now());
        let got: Vec<_> = std::iter::from_fn(|| net.next_event()).collect();
        assert_eq!(messages(got), vec![one.clone()]);
        // A message, then the server's close.
        server.write_all(one).await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        net.poll_ready(Instant::now());
        let got: Vec<_> = std::iter::from_fn(|| net.next_event()).collect();
        assert!(
            matches!(&got[..], [
                StreamIn { endpoint: 0, event: StreamEvent::Message(m), .. },
                StreamIn { endpoint: 0, event: StreamEvent::Closed(_), .. },
            ] if m == one),
            "{got:?}"
        );
    }

    /// A turn's messages wait for `flush_queued` and then leave together, in order, over
    /// TCP and over TLS; a connection with `FLUSH_AT` queued is written at once, and a close
    /// writes what was queued before it.
    #[tokio::test]
    async fn a_turns_messages_leave_together_at_the_flush() {
        let messages = numbered(FLUSH_AT + 36);
        let all: Vec<u8> = messages.iter().flat_map(|m| m.iter().copied()).collect();
        let cut = FLUSH_AT * 500;
        for secure in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut net = NetPoll::new().unwrap();
            let settings = if secure {
                let (settings, config) = tls_settings(addr);
                (settings, Some(config))
            } else {
                (tcp_settings(addr, None), None)
            };
            let mut events = VecDeque::new();
            net.connect(0, 1, Instant::now(), settings.0.clone());
            let (tcp, _) = tokio::select! {
                r = listener.accept() => r.unwrap(),
                () = drive(&mut net, &mut events) => unreachable!(),
            };
            let mut server: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match settings.1 {
                Some(config) => Box::new(tokio::select! {
                    r = tls::accept(tcp, config) => r.unwrap(),
                    () = drive(&mut net, &mut events) => unreachable!(),
                }),
                None => Box::new(tcp),
            };
            assert!(matches!(
                next(&mut net, &mut events).await.event,
                StreamEvent::Connected { .. }
            ));
            // Queued, not written: nothing on the wire before the flush.
            for m in &messages[..10] {
                assert_eq!(net.send(0, Leg::Server, m.clone()), Sent::Queued);
            }
            let early = read_upto(&mut server, 1, Duration::from_millis(100)).await;
            assert!(
                early.is_empty(),
                "secure {secure}: {} bytes before the flush",
                early.len()
            );
            net.flush_queued();
            if !secure {
                // One write: the reader, waiting already, gets all ten in its first read.
                let mut first = vec![0u8; 64 * 1024];
                let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut first))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(n, 10 * 500, "one write of the ten messages");
                assert_eq!(first[..n], all[..n]);
            } else {
                let got = read_upto(&mut server, 10 * 500, Duration::from_secs(5)).await;
                assert_eq!(got, all[..10 * 500], "secure {secure}");
            }
            // FLUSH_AT queued in one turn: written at once, the rest at the flush.
            for m in &messages[10..] {
                assert_eq!(net.send(0, Leg::Server, m.clone()), Sent::Queued);
            }
            let at_once = read_upto(&mut server, cut, Duration::from_secs(5)).await;
            assert_eq!(at_once, all[10 * 500..10 * 500 + cut], "secure {secure}");
            let early = read_upto(&mut server, 1, Duration::from_millis(100)).await;
            assert!(
                early.is_empty(),
                "secure {secure}: {} bytes before the flush",
                early.len()
            );
            // A close writes what the turn queued first.
            net.close(0, Leg::Server);
            let rest = read_upto(&mut server, all.len(), Duration::from_secs(5)).await;
            assert_eq!(rest, all[10 * 500 + cut..], "secure {secure}");
        }
    }

    fn ws_settings(addr: SocketAddr) -> Arc<StreamSettings> {
        Arc::new(
            StreamSettings::new(
                FlowKind::Ws,
                addr,
                "127.0.0.1",
                &ClientSettings::default(),
                None,
                "/sip",
                Some(Duration::from_millis(10)),
            )
            .unwrap(),
        )
    }

    /// SIP over WebSocket against sip-net's server side (tungstenite): the upgrade note,
    /// the plain keep-alive (10 ms here) running as ping frames the server answers, a message
    /// each way with no CRLF keep-alive, and the server's close reported.
    #[tokio::test]
    async fn websocket_messages_both_ways_and_the_servers_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        let settings = ws_settings(addr);
        let mut events = VecDeque::new();
        net.connect(1, 1, Instant::now(), settings.clone());
        let (tcp, _) = listener.accept().await.unwrap();
        let accept = sip_net::ws::accept(tcp);
        let mut server = tokio::select! {
            r = accept => r.unwrap(),
            () = drive(&mut net, &mut events) => unreachable!(),
        };
        let StreamEvent::Connected { notes, .. } = next(&mut net, &mut events).await.event else {
            panic!("connected first");
        };
        assert_eq!(
            notes,
            [
                format!("TCP connected to {addr}"),
                format!(
                    "HTTP upgrade to WebSocket at ws://127.0.0.1:{}/sip with subprotocol sip (RFC 7118)",
                    addr.port()
                )
            ]
        );
        // The keep-alive is due one period after the open, and due again after each: 100 ms
        // of pings, answered as the server reads, with nothing else on the connection.
        assert!(net.next_deadline().is_some(), "a keep-alive after the open");
        tokio::select! {
            r = server.recv() => panic!("{r:?}"),
            () = drive(&mut net, &mut events) => unreachable!(),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        assert!(events.is_empty(), "{events:?}");
        assert!(
            net.next_deadline()
                .is_some_and(|t| t > Instant::now() - Duration::from_millis(20)),
            "the next keep-alive"
        );
        let options = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            net.send(1, Leg::Server, Bytes::from_static(options)),
            Sent::Queued
        );
        let got = tokio::select! {
            r = server.recv() => r.unwrap().unwrap(),
            () = drive(&mut net, &mut events) => unreachable!(),
        };
        // One WebSocket message per SIP message, and no CRLF keep-alive (RFC 7118).
        assert_eq!(&got[..], &options[..]);
        server.send(options).await.unwrap();
        match next(&mut net, &mut events).await.event {
            StreamEvent::Message(m) => assert_eq!(&m[..], &options[..]),
            other => panic!("{other:?}"),
        }
        server.close().await;
        match next(&mut net, &mut events).await.event {
            StreamEvent::Closed(why) => assert_eq!(why, "the server closed the connection"),
            other => panic!("{other:?}"),
        }
    }

    /// RFC 5626 §4.4.1 over a WebSocket (RFC 6455 §5.5.2) against sip-net's server side
    /// (tungstenite, which answers pings as it reads): once the flow is kept, each keep-alive
    /// is a ping frame, counted with its pong; a server that stops reading leaves a ping
    /// unanswered past the pong timeout, and the flow fails.
    #[tokio::test]
    async fn an_outbound_flow_over_a_websocket_pings_and_fails_without_a_pong() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        let mut events = VecDeque::new();
        net.connect(1, 1, Instant::now(), ws_settings(addr));
        let (tcp, _) = listener.accept().await.unwrap();
        let accept = sip_net::ws::accept(tcp);
        let mut server = tokio::select! {
            r = accept => r.unwrap(),
            () = drive(&mut net, &mut events) => unreachable!(),
        };
        let ev = next(&mut net, &mut events).await;
        assert!(matches!(ev.event, StreamEvent::Connected { .. }), "{ev:?}");
        assert!(keep_fast(&mut net, 1));
        // The server reads (and so answers pings) for 400 ms: no message comes.
        tokio::select! {
            r = server.recv() => panic!("{r:?}"),
            () = drive(&mut net, &mut events) => unreachable!(),
            () = tokio::time::sleep(Duration::from_millis(400)) => {}
        }
        let c = net.flow_counts();
        assert!(c.pings >= 4 && c.pongs + 1 >= c.pings, "{c:?}");
        assert!(events.is_empty(), "{events:?}");
        // It stops reading: the next ping goes unanswered.
        let StreamEvent::Closed(why) = next(&mut net, &mut events).await.event else {
            panic!("the flow closed");
        };
        assert!(
            why.starts_with(
                "no WebSocket pong within 300 ms of our keep-alive ping (RFC 6455 §5.5.2)"
            ),
            "{why}"
        );
        assert_eq!(net.flow_counts().missing_pongs, 1);
        drop(server);
    }

    /// A port that answers the upgrade with HTTP 404: a failure after TCP, in words, with
    /// the hint.
    #[tokio::test]
    async fn a_refused_websocket_upgrade_is_explained() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut net = NetPoll::new().unwrap();
        let settings = ws_settings(addr);
        let mut events = VecDeque::new();
        net.connect(0, 4, Instant::now(), settings.clone());
        let (mut server, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            tokio::select! {
                r = server.read_exact(&mut b) => { r.unwrap(); }
                () = drive(&mut net, &mut events) => unreachable!(),
            }
            request.push(b[0]);
        }
        let request = String::from_utf8(request).unwrap();
        assert!(request.starts_with("GET /sip HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains("\r\nSec-WebSocket-Protocol: sip\r\n"),
            "{request}"
        );
        server
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let ev = next(&mut net, &mut events).await;
        assert_eq!(ev.generation, 4);
        match ev.event {
            StreamEvent::Failed {
                error,
                hint,
                after_tcp,
            } => {
                assert_eq!(
                    error,
                    format!(
                        "the server answered the WebSocket upgrade for ws://127.0.0.1:{}/sip with HTTP 404 Not Found",
                        addr.port()
                    )
                );
                assert!(hint.contains("WebSocket path"), "{hint}");
                assert!(after_tcp);
            }
            other => panic!("{other:?}"),
        }
    }
}
