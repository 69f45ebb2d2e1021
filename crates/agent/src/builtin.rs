//! Runs the built-in registrar core on real sockets: UDP, TCP, TLS, WS or WSS, or several
//! of them at once with one location service ([`BuiltinRegistrar::start_many`]).
//!
//! Over TCP and TLS one task per connection frames the stream (sip-msg's framer) and hands
//! whole messages to the single task that owns the sans-IO core; the core's output goes back
//! on the connection whose peer address it names (RFC 3261 §18.2.2: responses return on the
//! connection the request came on). A message for an address with no open connection is
//! dropped and counted: the registrar does not open connections to endpoints. A closed
//! connection is reported to the core ([`Registrar::handle_flow_closed`]): the outbound
//! bindings made over it fail (RFC 5626 §7) and requests to them get 430. With several
//! listeners each UDP socket has a reader task feeding the same core, and every message
//! carries its listener ([`Flow::iface`]).
//!
//! Calls to the service numbers `echo` and `tone` get their media here too: one RTP/RTCP
//! port pair per call on the listen address, every call's sockets and deadlines driven by
//! the same loop as the core ([`crate::service_media`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use registrar::{Flow, Registrar, RegistrarConfig};
use sip_msg::{Frame, Framer, Host, Message};
use sip_net::tls::{ServerSettings, TlsError};
use sip_net::ws::WsIn;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::service_media::ServiceMedia;
pub use crate::service_media::ServiceOptions;
use crate::udpbatch::canonical;

/// Largest SIP message accepted from a stream.
const MAX_MESSAGE: usize = 64 * 1024;

/// Where and how the built-in registrar listens.
#[derive(Debug, Clone)]
pub enum Listen {
    /// UDP on this address.
    Udp(SocketAddr),
    /// TCP on this address.
    Tcp(SocketAddr),
    /// TLS on this address with these settings (certificate, optional client CAs).
    Tls(SocketAddr, ServerSettings),
    /// SIP over WebSocket (RFC 7118) on this address.
    Ws(SocketAddr),
    /// SIP over secure WebSocket on this address with these TLS settings.
    Wss(SocketAddr, ServerSettings),
}

impl Listen {
    /// The address to bind.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Listen::Udp(a) | Listen::Tcp(a) | Listen::Ws(a) => *a,
            Listen::Tls(a, _) | Listen::Wss(a, _) => *a,
        }
    }

    /// The Via transport token.
    pub fn token(&self) -> &'static str {
        match self {
            Listen::Udp(_) => "UDP",
            Listen::Tcp(_) => "TCP",
            Listen::Tls(..) => "TLS",
            Listen::Ws(_) => "WS",
            Listen::Wss(..) => "WSS",
        }
    }
}

/// Why the registrar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The socket could not be bound.
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
    /// The TLS settings were refused.
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Connection counters of a TCP/TLS registrar.
#[derive(Debug, Default)]
struct ConnCounters {
    accepted: AtomicU64,
    tls_failed: AtomicU64,
    ws_failed: AtomicU64,
    dropped_no_connection: AtomicU64,
}

/// Connection counters of a stream registrar, at the time asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// TLS handshakes that failed (bad client certificate, not TLS …).
    pub tls_failed: u64,
    /// WebSocket upgrades refused (not a WebSocket request, no `sip` subprotocol …).
    pub ws_failed: u64,
    /// Messages the core sent to an address with no open connection (dropped).
    pub dropped_no_connection: u64,
}

enum ConnEvent {
    /// A connection opened: its flow, its id ([`next_conn_id`]), and where to put what is to
    /// be sent on it.
    Open(Flow, u64, mpsc::Sender<Bytes>),
    /// A message, on a connection (its id) or a UDP socket (`None`).
    Message(Flow, Option<u64>, Bytes),
    /// A keep-alive came on the connection of this id: a CRLFCRLF (answered with a CRLF), or
    /// over a WebSocket a ping frame (tungstenite sends the pong) or a pong frame. The flow
    /// is alive.
    Alive(Flow, u64),
    /// The connection of this id closed.
    Closed(Flow, u64),
}

/// A new connection's id: a phone that reconnects from the same address and port makes a
/// flow equal to its old one's, and the old connection's close, reported late, must not be
/// taken for the new one's.
fn next_conn_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How long a send on an accepted connection (TCP, TLS, WS, WSS) may wait for the peer to
/// take it (its buffers full: a peer that stopped reading) before the connection is closed.
const SEND_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// At most one [`ConnEvent::Alive`] per connection in this long: a peer streaming CRLFCRLF
/// or ping frames cannot flood the core's inbox. Well under any Flow-Timer (whole seconds).
const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// A listener bound, before the core runs.
enum Bound {
    Udp(Arc<UdpSocket>),
    Stream {
        listener: TcpListener,
        tls: Option<Arc<sip_net::tls::rustls::ServerConfig>>,
        websocket: bool,
    },
}

impl Bound {
    async fn bind(listen: Listen) -> Result<(Self, &'static str), StartError> {
        let token = listen.token();
        let stream = |listener, tls, websocket| Bound::Stream {
            listener,
            tls,
            websocket,
        };
        let bound = match listen {
            Listen::Udp(a) => Bound::Udp(Arc::new(UdpSocket::bind(a).await?)),
            Listen::Tcp(a) => stream(TcpListener::bind(a).await?, None, false),
            Listen::Ws(a) => stream(TcpListener::bind(a).await?, None, true),
            Listen::Tls(a, settings) => {
                stream(TcpListener::bind(a).await?, Some(settings.config()?), false)
            }
            Listen::Wss(a, settings) => {
                stream(TcpListener::bind(a).await?, Some(settings.config()?), true)
            }
        };
        Ok((bound, token))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Bound::Udp(s) => s.local_addr(),
            Bound::Stream { listener, .. } => listener.local_addr(),
        }
    }
}

/// A running built-in registrar.
#[derive(Debug)]
pub struct BuiltinRegistrar {
    /// Every listener's bound address, in the order given.
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<registrar::Stats>,
    conns: Option<Arc<ConnCounters>>,
}

impl BuiltinRegistrar {
    /// Binds `listen` (port 0 picks a free port) and serves until stopped.
    /// `config.host`/`config.port`/`config.transport` are replaced by the bound socket's.
    pub async fn start(listen: Listen, config: RegistrarConfig) -> Result<Self, StartError> {
        Self::start_with(listen, config, ServiceOptions::default()).await
    }

    /// [`Self::start`] with these settings for the service numbers.
    pub async fn start_with(
        listen: Listen,
        config: RegistrarConfig,
        services: ServiceOptions,
    ) -> Result<Self, StartError> {
        match listen {
            Listen::Udp(a) => Ok(Self::start_udp_with(a, config, services).await?),
            stream => Self::start_many(vec![stream], config, services).await,
        }
    }

    /// Binds every listener of `listens` (port 0 picks a free port) and serves them all
    /// with one core, so an endpoint on one transport can call one on another (see
    /// `registrar`'s "Several listeners"). The first listener's address and transport are
    /// the core's first interface: `config.host`/`config.port`/`config.transport` are
    /// replaced by its. A listener on every address (`0.0.0.0`, `[::]`) advertises
    /// `config.host` instead (in Via and Record-Route: where phones reach it). One UDP
    /// listener alone is served by [`Self::start_udp_with`]'s direct loop instead.
    pub async fn start_many(
        listens: Vec<Listen>,
        mut config: RegistrarConfig,
        services: ServiceOptions,
    ) -> Result<Self, StartError> {
        if let [Listen::Udp(a)] = listens.as_slice() {
            return Ok(Self::start_udp_with(*a, config, services).await?);
        }
        let mut bound = Vec::with_capacity(listens.len());
        let mut addrs = Vec::with_capacity(listens.len());
        for listen in listens {
            let (b, token) = Bound::bind(listen).await?;
            addrs.push((b.local_addr()?, token));
            bound.push(b);
        }
        let Some(&(first, token)) = addrs.first() else {
            return Err(StartError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listener given",
            )));
        };
        let advertised = config.host.clone();
        config.host = advertise(first.ip(), &advertised);
        config.port = first.port();
        config.transport = token.into();
        let mut core = Registrar::new(config);
        for &(addr, token) in &addrs[1..] {
            if core
                .add_interface(token, advertise(addr.ip(), &advertised), addr.port())
                .is_none()
            {
                return Err(StartError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "more than 255 listeners",
                )));
            }
        }
        core.set_service_limits(services.limits);
        core.set_flow_timer(services.flow_timer);
        core.set_failed_flow_hold(services.failed_flow_hold);
        let mut media = ServiceMedia::new(addrs.iter().map(|(a, _)| a.ip()).collect(), &services)?;
        let counters = Arc::new(ConnCounters::default());
        let (stop, mut stopped) = watch::channel(false);
        let (events, mut inbox) = mpsc::channel::<ConnEvent>(1024);
        // Per interface: its UDP socket (`None` for a stream listener).
        let mut udp: Vec<Option<Arc<UdpSocket>>> = Vec::with_capacity(bound.len());
        let mut readers = Vec::with_capacity(bound.len());
        for (iface, b) in (0u8..).zip(bound) {
            match b {
                Bound::Udp(sock) => {
                    udp.push(Some(sock.clone()));
                    readers.push(tokio::spawn(udp_reader(sock, iface, events.clone())));
                }
                Bound::Stream {
                    listener,
                    tls,
                    websocket,
                } => {
                    udp.push(None);
                    readers.push(tokio::spawn(accept_loop(
                        listener,
                        Acceptor {
                            iface,
                            tls,
                            websocket,
                            ws_ping_after: services
                                .flow_timer
                                .map(|s| std::time::Duration::from_secs(u64::from(s.max(1)))),
                        },
                        events.clone(),
                        stop.subscribe(),
                        counters.clone(),
                    )));
                }
            }
        }
        drop(events);
        let core_counters = counters.clone();
        let task = tokio::spawn(async move {
            // Open connections: id and sender of each.
            let mut conns: HashMap<Flow, (u64, mpsc::Sender<Bytes>)> = HashMap::new();
            loop {
                let wake = core.poll_timeout().map(tokio::time::Instant::from_std);
                tokio::select! {
                    ev = inbox.recv() => match ev {
                        Some(ConnEvent::Open(peer, id, tx)) => { conns.insert(peer, (id, tx)); }
                        Some(ConnEvent::Closed(peer, id)) => {
                            // Only the current connection of that flow: an older one's late
                            // close says nothing of it, and one closed for silence
                            // (`poll_close_flow`, already removed) is old news to the core.
                            if conns.get(&peer).is_some_and(|(current, _)| *current == id) {
                                conns.remove(&peer);
                                // RFC 5626 §7: the outbound bindings over it fail (the core decides).
                                core.handle_flow_closed(Instant::now(), peer);
                            }
                        }
                        // What a connection sent before it was closed or replaced (read before
                        // its task saw the close) is dropped: it must not revive the flow.
                        Some(ConnEvent::Message(peer, Some(id), _) | ConnEvent::Alive(peer, id))
                            if conns.get(&peer).is_none_or(|(current, _)| *current != id) => {}
                        Some(ConnEvent::Message(peer, _, bytes)) => {
                            // Malformed input is dropped here; a registrar answers what it can
                            // read. It still shows the flow alive.
                            match Message::parse_bytes(bytes) {
                                Ok(msg) => core.handle_message_on(Instant::now(), unix_now(), msg, peer),
                                Err(_) => core.handle_flow_alive(Instant::now(), peer),
                            }
                        }
                        Some(ConnEvent::Alive(peer, _)) => core.handle_flow_alive(Instant::now(), peer),
                        None => break,
                    },
                    () = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {
                        core.handle_timeout(Instant::now());
                    }
                    () = media.ready() => media.handle_ready(&mut core),
                    _ = stopped.changed() => break,
                }
                media.drive(&mut core);
                // A connection silent past its Flow-Timer: dropping its sender ends its task,
                // which closes it (its `Closed` then finds its bindings already failed).
                while let Some(flow) = core.poll_close_flow() {
                    conns.remove(&flow);
                }
                while let Some((to, bytes)) = core.poll_transmit_flow() {
                    if let Some(Some(sock)) = udp.get(usize::from(to.iface)) {
                        // A send error to one endpoint must not stop the registrar.
                        let _ = sock.send_to(&bytes, to.addr).await;
                        continue;
                    }
                    // A full or closed connection must not stop the registrar. One closed
                    // before its `Closed` came in (or gone): the core answers what it can
                    // (430 to a request for an outbound flow, RFC 5626 §5.3).
                    let undelivered = match conns.get(&to) {
                        Some((_, tx)) => match tx.try_send(bytes) {
                            Err(mpsc::error::TrySendError::Closed(bytes)) => Some(bytes),
                            _ => None,
                        },
                        None => {
                            core_counters
                                .dropped_no_connection
                                .fetch_add(1, Ordering::Relaxed);
                            Some(bytes)
                        }
                    };
                    if let Some(bytes) = undelivered {
                        core.handle_undeliverable(Instant::now(), to, bytes);
                    }
                }
            }
            for r in readers {
                r.abort();
            }
            media.finish(&mut core);
            core.stats()
        });
        Ok(Self {
            addrs: addrs.into_iter().map(|(a, _)| a).collect(),
            stop,
            task,
            conns: Some(counters),
        })
    }

    /// Connection counters (`None` for one UDP listener alone).
    pub fn connection_stats(&self) -> Option<ConnectionStats> {
        self.conns.as_ref().map(|c| ConnectionStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            tls_failed: c.tls_failed.load(Ordering::Relaxed),
            ws_failed: c.ws_failed.load(Ordering::Relaxed),
            dropped_no_connection: c.dropped_no_connection.load(Ordering::Relaxed),
        })
    }

    /// Binds `listen` over UDP (port 0 picks a free port) and serves until stopped.
    /// `config.host`/`config.port` are replaced by the bound address (`config.host` is kept,
    /// as the address advertised, when `listen` is on every address).
    pub async fn start_udp(listen: SocketAddr, config: RegistrarConfig) -> io::Result<Self> {
        Self::start_udp_with(listen, config, ServiceOptions::default()).await
    }

    /// [`Self::start_udp`] with these settings for the service numbers.
    pub async fn start_udp_with(
        listen: SocketAddr,
        mut config: RegistrarConfig,
        services: ServiceOptions,
    ) -> io::Result<Self> {
        let sock = UdpSocket::bind(listen).await?;
        let addr = sock.local_addr()?;
        config.host = advertise(addr.ip(), &config.host);
        config.port = addr.port();
        config.transport = "UDP".into();
        let (stop, mut stopped) = watch::channel(false);
        let mut media = ServiceMedia::new(vec![addr.ip()], &services)?;
        let task = tokio::spawn(async move {
            let mut core = Registrar::new(config);
            core.set_service_limits(services.limits);
            core.set_flow_timer(services.flow_timer);
            core.set_failed_flow_hold(services.failed_flow_hold);
            let mut buf = vec![0u8; 65_536];
            loop {
                let wake = core.poll_timeout().map(tokio::time::Instant::from_std);
                tokio::select! {
                    r = sock.recv_from(&mut buf) => {
                        let (n, from) = match r {
                            Ok((n, from)) => (n, canonical(from)),
                            Err(e) => {
                                pause_after(&e).await;
                                continue;
                            }
                        };
                        if let Some(answer) = stun_answer(&buf[..n], from) {
                            let _ = sock.send_to(&answer, from).await;
                            continue;
                        }
                        // Malformed input is dropped here; a registrar answers what it can read.
                        if let Ok(msg) = Message::parse(&buf[..n]) {
                            core.handle_message(Instant::now(), unix_now(), msg, from);
                        }
                    }
                    () = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {
                        core.handle_timeout(Instant::now());
                    }
                    () = media.ready() => media.handle_ready(&mut core),
                    _ = stopped.changed() => break,
                }
                media.drive(&mut core);
                while let Some((to, bytes)) = core.poll_transmit() {
                    // A send error to one endpoint must not stop the registrar.
                    let _ = sock.send_to(&bytes, to).await;
                }
            }
            media.finish(&mut core);
            core.stats()
        });
        Ok(Self {
            addrs: vec![addr],
            stop,
            task,
            conns: None,
        })
    }

    /// The bound address (the first listener's).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's bound address, in the order given.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops serving and returns the counters.
    pub async fn stop(self) -> registrar::Stats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// The address a listener advertises: its own, or where it listens on every address,
/// `advertised` (the operator's `--advertise`).
fn advertise(ip: IpAddr, advertised: &Host) -> Host {
    if ip.is_unspecified() {
        advertised.clone()
    } else {
        Host::from(ip)
    }
}

/// RFC 5626 §4.4.2 / §5.3: an outbound phone's STUN Binding request on the SIP UDP port is
/// answered with its XOR-MAPPED-ADDRESS (where we saw it); `None` for anything else.
fn stun_answer(datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let tid = sip_proto::stun::binding_request_tid(datagram)?;
    Some(sip_proto::stun::binding_success(tid, from))
}

/// Hands every datagram of one UDP listener to the core (STUN keep-alives it answers itself).
async fn udp_reader(sock: Arc<UdpSocket>, iface: u8, events: mpsc::Sender<ConnEvent>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, addr) = match sock.recv_from(&mut buf).await {
            Ok((n, from)) => (n, canonical(from)),
            Err(e) => {
                pause_after(&e).await;
                continue;
            }
        };
        if let Some(answer) = stun_answer(&buf[..n], addr) {
            let _ = sock.send_to(&answer, addr).await;
            continue;
        }
        let msg = Bytes::copy_from_slice(&buf[..n]);
        if events
            .send(ConnEvent::Message(Flow { addr, iface }, None, msg))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// After a failed UDP receive: an ICMP error reported on the socket (a peer's port closed)
/// says nothing about the next datagram, which is read at once; any other error waits a
/// millisecond, so an error that persists cannot spin the loop.
async fn pause_after(e: &io::Error) {
    if !matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    ) {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// What a stream listener's connections speak.
struct Acceptor {
    iface: u8,
    tls: Option<Arc<sip_net::tls::rustls::ServerConfig>>,
    websocket: bool,
    /// A WebSocket silent this long gets a ping frame from us (the Flow-Timer: see
    /// [`serve_websocket`]); `None`: never.
    ws_ping_after: Option<std::time::Duration>,
}

async fn accept_loop(
    listener: TcpListener,
    Acceptor {
        iface,
        tls,
        websocket,
        ws_ping_after,
    }: Acceptor,
    events: mpsc::Sender<ConnEvent>,
    mut stopped: watch::Receiver<bool>,
    counters: Arc<ConnCounters>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((tcp, addr)) = r else { continue };
                let peer = Flow { addr: canonical(addr), iface };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = tcp.set_nodelay(true);
                let events = events.clone();
                let stopped = stopped.clone();
                let counters = counters.clone();
                let tls = tls.clone();
                // The handshake runs in the connection's task so a slow client blocks no one.
                tokio::spawn(async move {
                    match (tls, websocket) {
                        (None, false) => serve_connection(tcp, peer, events, stopped).await,
                        (None, true) => match sip_net::ws::accept(tcp).await {
                            Ok(ws) => serve_websocket(ws, peer, events, stopped, ws_ping_after).await,
                            Err(_) => { counters.ws_failed.fetch_add(1, Ordering::Relaxed); }
                        },
                        (Some(config), ws) => match sip_net::tls::accept(tcp, config).await {
                            Ok(stream) if !ws => serve_connection(stream, peer, events, stopped).await,
                            Ok(stream) => match sip_net::ws::accept(stream).await {
                                Ok(ws) => serve_websocket(ws, peer, events, stopped, ws_ping_after).await,
                                Err(_) => { counters.ws_failed.fetch_add(1, Ordering::Relaxed); }
                            },
                            Err(_) => {
                                counters.tls_failed.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                    }
                });
            }
            _ = stopped.changed() => return,
        }
    }
}

/// Moves whole messages between one connection and the core until either side closes.
///
/// A write (a message, a pong) that the peer does not take within [`SEND_LIMIT`] (a peer
/// that stopped reading, its window full) ends the connection: the task never hangs on a
/// stalled peer, and the core sees the close.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: Flow,
    events: mpsc::Sender<ConnEvent>,
    mut stopped: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut outbox) = mpsc::channel::<Bytes>(256);
    let id = next_conn_id();
    if events.send(ConnEvent::Open(peer, id, tx)).await.is_err() {
        return;
    }
    let mut alive_told: Option<tokio::time::Instant> = None;
    let mut framer = Framer::new(MAX_MESSAGE);
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = match r { Ok(0) | Err(_) => break 'conn, Ok(n) => n };
                framer.push(&buf[..n]);
                while let Some(frame) = framer.next_frame() {
                    match frame {
                        Ok(Frame::Message(m)) => {
                            if events.send(ConnEvent::Message(peer, Some(id), m)).await.is_err() {
                                break 'conn;
                            }
                        }
                        // RFC 5626 §3.5.1: answer a CRLFCRLF ping with a CRLF pong.
                        Ok(Frame::Ping) => {
                            if !write_within(&mut wr, b"\r\n").await { break 'conn; }
                            let now = tokio::time::Instant::now();
                            if alive_told.is_none_or(|t| now - t >= ALIVE_EVERY) {
                                alive_told = Some(now);
                                if events.send(ConnEvent::Alive(peer, id)).await.is_err() {
                                    break 'conn;
                                }
                            }
                        }
                        Ok(Frame::Pong) => {}
                        // An unframeable stream cannot be resynchronised: close it.
                        Err(_) => break 'conn,
                    }
                }
            }
            out = outbox.recv() => match out {
                Some(bytes) => {
                    if !write_within(&mut wr, &bytes).await {
                        break 'conn;
                    }
                }
                None => break 'conn,
            },
            _ = stopped.changed() => break 'conn,
        }
    }
    let _ = wr.shutdown().await;
    let _ = events.send(ConnEvent::Closed(peer, id)).await;
}

/// Writes and flushes `bytes`; false when that failed or took longer than [`SEND_LIMIT`].
async fn write_within<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> bool {
    let write = async {
        wr.write_all(bytes).await?;
        wr.flush().await
    };
    matches!(tokio::time::timeout(SEND_LIMIT, write).await, Ok(Ok(())))
}

/// Moves whole messages between one WebSocket (one SIP message per WebSocket message,
/// RFC 7118 §5) and the core until either side closes.
///
/// A WebSocket that carried nothing for `ping_after` (the Flow-Timer) gets a ping frame:
/// a browser cannot send ping frames and its SIP stack (JsSIP, SIP.js by default) sends no
/// CRLF keep-alive, but every browser answers a ping with a pong, which tells the core the
/// flow is alive before its silence limit (a quarter more than the Flow-Timer) is reached.
/// A phone that keeps its own flow (ours ping at 80–100 % of it) is rarely pinged. A send
/// (a message, a ping) that the peer does not take within [`SEND_LIMIT`] (a peer that
/// stopped reading) ends the connection, so the task never hangs on a stalled peer.
async fn serve_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: sip_net::ws::SipWebSocket<S>,
    peer: Flow,
    events: mpsc::Sender<ConnEvent>,
    mut stopped: watch::Receiver<bool>,
    ping_after: Option<std::time::Duration>,
) {
    let (tx, mut outbox) = mpsc::channel::<Bytes>(256);
    let id = next_conn_id();
    if events.send(ConnEvent::Open(peer, id, tx)).await.is_err() {
        return;
    }
    let mut alive_told: Option<tokio::time::Instant> = None;
    let ping_at = |from: tokio::time::Instant| ping_after.map(|d| from + d);
    let mut next_ping = ping_at(tokio::time::Instant::now());
    loop {
        tokio::select! {
            r = ws.recv_any() => match r {
                Ok(Some(WsIn::Message(m))) => {
                    next_ping = ping_at(tokio::time::Instant::now());
                    if events.send(ConnEvent::Message(peer, Some(id), m)).await.is_err() {
                        break;
                    }
                }
                // RFC 5626 §4.4.1 over a WebSocket: a ping frame (tungstenite sends the
                // pong) keeps the flow, as a CRLFCRLF does over TCP.
                Ok(Some(WsIn::Alive)) => {
                    let now = tokio::time::Instant::now();
                    next_ping = ping_at(now);
                    if alive_told.is_none_or(|t| now - t >= ALIVE_EVERY) {
                        alive_told = Some(now);
                        if events.send(ConnEvent::Alive(peer, id)).await.is_err() {
                            break;
                        }
                    }
                }
                Ok(None) | Err(_) => break,
            },
            out = outbox.recv() => match out {
                Some(bytes) => {
                    if !matches!(tokio::time::timeout(SEND_LIMIT, ws.send(&bytes)).await, Ok(Ok(()))) {
                        break;
                    }
                }
                None => break,
            },
            () = async {
                match next_ping {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                // Silent for the Flow-Timer: ask (its pong is the answer), then wait as long
                // again before asking again.
                next_ping = ping_at(tokio::time::Instant::now());
                if !matches!(tokio::time::timeout(SEND_LIMIT, ws.ping()).await, Ok(Ok(()))) {
                    break;
                }
            }
            _ = stopped.changed() => break,
        }
    }
    ws.close().await;
    let _ = events.send(ConnEvent::Closed(peer, id)).await;
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that stops reading (its window full) cannot hold a connection's task: the
    /// write gives up after [`SEND_LIMIT`], the connection closes, and the core hears of it.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_closed_after_the_send_limit() {
        // 1 KiB of buffer between the task and a peer that never reads.
        let (ours, _peer) = tokio::io::duplex(1024);
        let (events_tx, mut events) = mpsc::channel(16);
        let (_stop, stopped) = watch::channel(false);
        let flow = Flow::first("127.0.0.1:5070".parse().unwrap());
        let task = tokio::spawn(serve_connection(ours, flow, events_tx, stopped));
        let Some(ConnEvent::Open(_, id, outbox)) = events.recv().await else {
            panic!("the connection was not opened first")
        };
        let start = tokio::time::Instant::now();
        outbox.try_send(Bytes::from(vec![b'x'; 4096])).unwrap();
        match events.recv().await {
            Some(ConnEvent::Closed(f, closed)) => assert_eq!((f, closed), (flow, id)),
            _ => panic!("expected the close"),
        }
        assert!(
            start.elapsed() >= SEND_LIMIT,
            "closed after {:?}",
            start.elapsed()
        );
        assert!(
            start.elapsed() < SEND_LIMIT * 2,
            "closed after {:?}",
            start.elapsed()
        );
        task.await.unwrap();
    }

    /// A peer that reads slowly, but takes the whole message within the limit (here in
    /// eight reads over half of it), gets every byte and keeps its connection.
    #[tokio::test(start_paused = true)]
    async fn a_peer_reading_within_the_limit_gets_every_byte() {
        let (ours, mut peer) = tokio::io::duplex(1024);
        let (events_tx, mut events) = mpsc::channel(16);
        let (_stop, stopped) = watch::channel(false);
        let flow = Flow::first("127.0.0.1:5070".parse().unwrap());
        tokio::spawn(serve_connection(ours, flow, events_tx, stopped));
        let Some(ConnEvent::Open(_, _, outbox)) = events.recv().await else {
            panic!("the connection was not opened first")
        };
        outbox.try_send(Bytes::from(vec![b'x'; 4096])).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 512];
        while got.len() < 4096 {
            tokio::time::sleep(SEND_LIMIT / 16).await;
            let n = peer.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, vec![b'x'; 4096]);
        assert!(events.try_recv().is_err(), "the connection was closed");
    }
}
