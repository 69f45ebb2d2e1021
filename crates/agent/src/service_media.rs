//! The media of the built-in registrar's service numbers (`echo`, `tone`) on real sockets.
//!
//! The registrar core decides (see `registrar::services`); this driver binds one RTP/RTCP
//! port pair per service call on the registrar's listen address and moves datagrams between
//! the sockets and the call's sans-IO media ([`EchoMedia`] or the tone's `MediaSession`).
//! The calls are structs in a slab driven by the registrar's one loop, as the callers' media
//! is in a shard (`crate::callmedia`), not a task per call:
//!
//! - every call's two sockets are in one epoll set (the shard's [`MediaDriver`]), which the
//!   registrar loop waits on through tokio's reactor: echo reflects each datagram as soon as
//!   the loop reads it (a batch of ready sockets per wake-up, `recvmmsg` per socket, each
//!   datagram stamped by the kernel on arrival), so the reflected stream carries no delay of
//!   a schedule of its own;
//! - the calls' deadlines (the tone's paced RTP and RTCP, the silence check) are one entry
//!   per call on the shards' timing wheel ([`MediaPacer`]), and one precise timer
//!   ([`PreciseTimer`], on the media grid) wakes the loop for the earliest.
//!
//! With SRTP (SDES) the sans-IO media does the crypto: echo unprotects and re-protects each
//! datagram in the read buffer, the tone's session protects what it polls out. When a call's
//! media is released (or the registrar stops), its SRTP failures go into the core's service
//! counters ([`Registrar::count_service_srtp`]).
//!
//! A call with no RTP or RTCP from the caller for [`ServiceOptions::inactivity`] is reported
//! to the core, which ends it with a BYE; its sockets close (and its ports are free again)
//! when the core says the call ended.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use media::rtp;
use media::sdp::Negotiated;
use media::session::{MediaSession, PacketKind};
use mio::net::UdpSocket as MioUdpSocket;
use registrar::services::{EchoAction, EchoMedia, sit_session, tone_session};
use registrar::{Registrar, Service, ServiceCallId, ServiceEvent, ServiceLimits};
use tokio::io::unix::AsyncFd;

use crate::callmedia::{
    BATCHES_PER_PASS, MediaDriver, MediaPacer, MediaToken, PortAllocator, PreciseTimer, SlotLoad,
    read_batch,
};
use crate::rxstamp::{BATCH, RecvBatch};

/// How the service numbers run.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// A call whose caller sent neither RTP nor RTCP for this long is ended (BYE).
    pub inactivity: Duration,
    /// RTP/RTCP port pairs from this inclusive range (`None`: chosen by the system).
    pub rtp_ports: Option<(u16, u16)>,
    /// Limits enforced by the core (the longest call).
    pub limits: ServiceLimits,
    /// The `Flow-Timer` (seconds) the registrar sends an RFC 5626 outbound phone that reached
    /// it over a connection of its own (`registrar::Registrar::set_flow_timer`; `None`: none).
    pub flow_timer: Option<u32>,
    /// How long the registrar keeps an RFC 5626 outbound binding whose connection closed,
    /// answering 430 (Flow Failed), before dropping it
    /// (`registrar::Registrar::set_failed_flow_hold`).
    pub failed_flow_hold: Duration,
}

impl Default for ServiceOptions {
    /// 30 s of silence ends a call (RTCP alone, every ≤ 7.5 s, keeps a held call alive);
    /// system-chosen ports; calls up to four hours; Flow-Timer 120 s; a failed flow's binding
    /// held 30 s.
    fn default() -> Self {
        Self {
            inactivity: Duration::from_secs(30),
            rtp_ports: None,
            limits: ServiceLimits::default(),
            flow_timer: Some(registrar::DEFAULT_FLOW_TIMER),
            failed_flow_hold: registrar::DEFAULT_FAILED_FLOW_HOLD,
        }
    }
}

/// What a call does with the caller's media.
enum Media {
    Echo(EchoMedia),
    Tone {
        session: Box<MediaSession>,
        rtp_to: SocketAddr,
        rtcp_to: SocketAddr,
        mux: bool,
    },
}

/// One service call: its sockets (in the set) and, once offer/answer is done, its media.
struct ServiceCall {
    id: ServiceCallId,
    /// Tells this call's readiness from an earlier call's in the same slot.
    generation: u32,
    rtp: MioUdpSocket,
    rtcp: MioUdpSocket,
    /// `None` until the core hands over the negotiated media (datagrams before are dropped).
    media: Option<Media>,
    /// The caller's last datagram (RTP or RTCP), as the kernel stamped it.
    last_heard: Instant,
    /// Silence was reported to the core (the call is being ended).
    reported: bool,
    /// The tone's slot of the media grid ([`SlotLoad`]), given back when the call ends.
    slot: Option<usize>,
    /// Where echo's DTLS-SRTP flights go on its timer (the caller's RTP address: the
    /// offer's, then where the caller's datagrams come from).
    dtls_to: Option<SocketAddr>,
}

impl Drop for ServiceCall {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            SlotLoad::give_back(slot);
        }
    }
}

/// The service calls' sockets and media of one registrar.
pub(crate) struct ServiceMedia {
    /// Each listener's address, by interface number (the core's [`registrar::Flow::iface`]).
    ips: Vec<IpAddr>,
    ports: PortAllocator,
    inactivity: Duration,
    /// Every call's sockets, in the registrar's reactor (readable: a datagram waits).
    driver: AsyncFd<MediaDriver>,
    /// Wakes the loop at the earliest deadline of [`Self::pacer`].
    timer: PreciseTimer,
    /// Each call's next deadline (tone packets, silence check), by slot.
    pacer: MediaPacer,
    calls: Vec<Option<ServiceCall>>,
    free: Vec<usize>,
    slot_of: HashMap<ServiceCallId, usize>,
    generation: u32,
    /// The tone's datagram being sent (one buffer for every call).
    out: Vec<u8>,
    /// Calls found silent in this pass, reported to the core at its end.
    silent: Vec<ServiceCallId>,
}

impl ServiceMedia {
    /// Media bound on the address of the listener each call came in on (`ips`: the
    /// registrar's listen addresses, by interface number). Must be called inside the tokio
    /// runtime (with I/O) that will drive it.
    pub(crate) fn new(ips: Vec<IpAddr>, opts: &ServiceOptions) -> io::Result<Self> {
        // `AsyncFd::new` is deprecated for types whose descriptor could be closed behind the
        // reactor's back; the driver owns its epoll descriptor and closes it only when
        // dropped, after the `AsyncFd` has deregistered it (as for `PreciseTimer`).
        #[allow(deprecated)] // reason: sound for an owned descriptor (see above)
        let driver = AsyncFd::with_interest(MediaDriver::new()?, tokio::io::Interest::READABLE)?;
        Ok(Self {
            ips,
            ports: PortAllocator::new(opts.rtp_ports, 0),
            // Past `FOREVER` is never (and `last_heard + inactivity` cannot overflow).
            inactivity: opts.inactivity.min(registrar::services::FOREVER),
            driver,
            timer: PreciseTimer::new("services".into())?,
            pacer: MediaPacer::default(),
            calls: Vec::new(),
            free: Vec::new(),
            slot_of: HashMap::new(),
            generation: 0,
            out: Vec::with_capacity(256),
            silent: Vec::new(),
        })
    }

    /// Resolves when a call's socket has a datagram or a call's deadline has come; then
    /// call [`Self::handle_ready`].
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is taken before it completes (the readiness it clears on
    /// completion is what [`Self::handle_ready`] then reads).
    pub(crate) fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        // Borrows the set and the timer only (the calls' media is not `Sync`).
        let (driver, timer) = (&self.driver, &self.timer);
        async move {
            tokio::select! {
                r = driver.readable() => {
                    // Cleared before the set is read: a datagram arriving meanwhile makes
                    // the set readable again.
                    if let Ok(mut guard) = r {
                        guard.clear_ready();
                    }
                }
                () = timer.fired() => {}
            }
        }
    }

    /// Reads every socket that became readable (echo reflects, tone listens), runs the
    /// deadlines due (tone sends, silence checks) and reports silent calls to the core.
    pub(crate) fn handle_ready(&mut self, core: &mut Registrar) {
        let driver = self.driver.get_mut();
        loop {
            let n = driver.poll_ready();
            for i in 0..n {
                let Some(t) = driver.token(i) else { continue };
                let Some(Some(call)) = self.calls.get_mut(t.endpoint) else {
                    continue;
                };
                if call.generation != t.generation {
                    continue;
                }
                let (retime, more) = call.receive(t.rtcp, &mut driver.batch);
                if retime {
                    // A new deadline: the tone's session heard RTCP, or a DTLS flight moved
                    // the handshake's timer.
                    self.pacer.set(t.endpoint, call.deadline(self.inactivity));
                }
                if more {
                    let sock = if t.rtcp {
                        &mut call.rtcp
                    } else {
                        &mut call.rtp
                    };
                    driver.rearm(sock, t);
                }
            }
            if !MediaDriver::batch_full(n) {
                break;
            }
        }
        let now = Instant::now();
        while let Some((idx, _)) = self.pacer.pop_due(now) {
            let Some(Some(call)) = self.calls.get_mut(idx) else {
                continue;
            };
            if call.on_deadline(now, self.inactivity, &mut self.out) {
                self.silent.push(call.id);
            }
            self.pacer.set(idx, call.deadline(self.inactivity));
        }
        for call in self.silent.drain(..) {
            core.end_service_call(now, call);
        }
        self.arm();
    }

    /// Carries out the core's service events (bind, start/update, release).
    pub(crate) fn drive(&mut self, core: &mut Registrar) {
        while let Some(ev) = core.poll_service_event() {
            match ev {
                ServiceEvent::Bind { call, peer, iface } => {
                    let bound = self.bind(call, peer, iface).map_err(|_| ());
                    core.handle_service_bound(Instant::now(), call, bound);
                }
                ServiceEvent::Media {
                    call,
                    service,
                    negotiated,
                } => self.start(call, service, &negotiated),
                ServiceEvent::End { call, .. } => {
                    // Dropping the call closes its sockets (they leave the set; the ports
                    // are free again).
                    if let Some(idx) = self.slot_of.remove(&call) {
                        if let Some(call) = self.calls[idx].take() {
                            call.count_srtp(core);
                        }
                        self.free.push(idx);
                        self.pacer.set(idx, None);
                    }
                }
            }
        }
        self.arm();
    }

    /// The registrar stops: the SRTP failures of the calls still up go into its counters.
    pub(crate) fn finish(&self, core: &mut Registrar) {
        for call in self.calls.iter().flatten() {
            call.count_srtp(core);
        }
    }

    /// Sets the timer for the earliest deadline.
    fn arm(&mut self) {
        if let Some(at) = self.pacer.next_deadline() {
            self.timer.arm(at);
        }
    }

    /// Binds the call's port pair and adds both sockets to the set; its RTP address.
    fn bind(&mut self, id: ServiceCallId, peer: SocketAddr, iface: u8) -> io::Result<SocketAddr> {
        let listener = self
            .ips
            .get(usize::from(iface))
            .or(self.ips.first())
            .copied()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let ip = if listener.is_unspecified() {
            facing(peer).unwrap_or(listener)
        } else {
            listener
        };
        let (rtp, rtcp) = self.ports.bind_pair(ip)?;
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        // Arrival times from the kernel: the echo's reports (jitter, DLSR) and the tone's
        // measurement must not show this loop's own delays.
        crate::rxstamp::enable(&rtp)?;
        crate::rxstamp::enable(&rtcp)?;
        let port = rtp.local_addr()?.port();
        let idx = self.free.pop().unwrap_or(self.calls.len());
        self.generation = self.generation.wrapping_add(1) & 0x7fff_ffff;
        let mut rtp = MioUdpSocket::from_std(rtp);
        let mut rtcp = MioUdpSocket::from_std(rtcp);
        let driver = self.driver.get_ref();
        let token = |rtcp| MediaToken {
            endpoint: idx,
            generation: self.generation,
            rtcp,
        };
        let registered = driver
            .register(&mut rtp, token(false))
            .and_then(|()| driver.register(&mut rtcp, token(true)));
        if let Err(e) = registered {
            // The slot stays free; the sockets close here.
            if idx < self.calls.len() {
                self.free.push(idx);
            }
            return Err(e);
        }
        let call = ServiceCall {
            id,
            generation: self.generation,
            rtp,
            rtcp,
            media: None,
            last_heard: Instant::now(),
            reported: false,
            slot: None,
            dtls_to: None,
        };
        if idx == self.calls.len() {
            self.calls.push(Some(call));
        } else {
            self.calls[idx] = Some(call);
        }
        self.slot_of.insert(id, idx);
        Ok(SocketAddr::new(ip, port))
    }

    /// Starts the call's media on its first offer/answer; follows a later one (hold).
    fn start(&mut self, id: ServiceCallId, service: Service, n: &Negotiated) {
        let Some(&idx) = self.slot_of.get(&id) else {
            return;
        };
        let Some(Some(call)) = self.calls.get_mut(idx) else {
            return;
        };
        let now = Instant::now();
        match &mut call.media {
            Some(Media::Echo(e)) => e.update(n),
            Some(Media::Tone { session, .. }) => {
                session.set_direction(now, n.direction);
                // New keys (or another suite) in the exchange: the changed direction starts
                // a new SRTP stream (RFC 4568 §7.1.4), as echo's `update` does; a plain
                // exchange ends SRTP, keys in a plain call start it.
                session.rekey(n.srtp.as_ref());
            }
            None => {
                // SSRC and seed from the call id: distinct per call, reproducible.
                let ssrc = 0x5e00_0000 ^ (id.0 as u32).wrapping_mul(0x9e37_79b9);
                call.media = Some(match service {
                    Service::Echo => {
                        let mut echo = EchoMedia::new(n, ssrc, now);
                        if n.dtls.is_some() {
                            // DTLS-SRTP's client: the ClientHello goes out now.
                            call.dtls_to = Some(n.remote_rtp);
                            send_dtls(&mut echo, &call.rtp, n.remote_rtp);
                        }
                        Media::Echo(echo)
                    }
                    Service::Tone | Service::Sit => {
                        // The tone's schedule starts on the media grid, on the least loaded
                        // of the next 20 grid points (the timer ticks on the grid).
                        let (at, slot) = SlotLoad::take(now);
                        call.slot = Some(slot);
                        let session = if service == Service::Sit {
                            sit_session(n, ssrc, id.0, at)
                        } else {
                            tone_session(n, ssrc, id.0, at)
                        };
                        match session {
                            Ok(s) => Media::Tone {
                                session: Box::new(s),
                                rtp_to: n.remote_rtp,
                                rtcp_to: n.remote_rtcp,
                                mux: n.rtcp_mux,
                            },
                            // The codec was negotiated from our own list, so only a build
                            // without Opus gets here: nothing to send; the silence check
                            // ends the call.
                            Err(_) => Media::Echo(EchoMedia::new(n, ssrc, now)),
                        }
                    }
                });
                call.last_heard = now;
            }
        }
        self.pacer.set(idx, call.deadline(self.inactivity));
    }
}

impl ServiceCall {
    /// Gives the core this call's SRTP/SRTCP packets that failed (echo's or the tone's),
    /// and whether its DTLS-SRTP handshake gave keys.
    fn count_srtp(&self, core: &mut Registrar) {
        let (auth, replayed, keyed) = match &self.media {
            Some(Media::Echo(e)) => (
                e.srtp_auth_failures,
                e.srtp_replayed,
                e.dtls_summary().map(|d| d.suite.is_some()),
            ),
            Some(Media::Tone { session, .. }) => {
                let s = session.summary();
                (
                    s.srtp_auth_failures,
                    s.srtp_replayed,
                    s.dtls.as_ref().map(|d| d.suite.is_some()),
                )
            }
            None => (0, 0, None),
        };
        if auth | replayed != 0 {
            core.count_service_srtp(auth, replayed);
        }
        if let Some(keyed) = keyed {
            core.count_service_dtls(keyed);
        }
    }

    /// The next deadline: the tone's next packet (or DTLS timer), echo's DTLS timer, else
    /// the silence check.
    fn deadline(&self, inactivity: Duration) -> Option<Instant> {
        let media = self.media.as_ref()?;
        let silence = (!self.reported).then(|| self.last_heard + inactivity);
        let own = match media {
            Media::Tone { session, .. } => session.poll_timeout(),
            Media::Echo(echo) => echo.poll_timeout(),
        };
        [silence, own].into_iter().flatten().min()
    }

    /// Sends what the tone has due (echo: its DTLS retransmissions) and checks for
    /// silence; true when the call has just gone silent.
    fn on_deadline(&mut self, now: Instant, inactivity: Duration, out: &mut Vec<u8>) -> bool {
        if let (Some(Media::Echo(echo)), Some(to)) = (&mut self.media, self.dtls_to) {
            if echo.poll_timeout().is_some_and(|t| t <= now) {
                echo.handle_timeout(now);
            }
            send_dtls(echo, &self.rtp, to);
        }
        if let Some(Media::Tone {
            session,
            rtp_to,
            rtcp_to,
            mux,
        }) = &mut self.media
        {
            while let Some(kind) = session.poll_transmit_into(now, out) {
                let (sock, to) = match kind {
                    PacketKind::Rtp | PacketKind::Dtls => (&self.rtp, *rtp_to),
                    PacketKind::Rtcp if *mux => (&self.rtp, *rtcp_to),
                    PacketKind::Rtcp => (&self.rtcp, *rtcp_to),
                };
                // A full socket buffer loses this datagram only; the call carries on.
                let _ = crate::rxstamp::send_to(sock, out, &socket2::SockAddr::from(to));
            }
        }
        let silent = self.media.is_some() && !self.reported && self.last_heard + inactivity <= now;
        self.reported |= silent;
        silent
    }

    /// Reads the datagrams waiting on the RTP (or RTCP) socket, at most
    /// [`BATCHES_PER_PASS`] batches: echo answers each at once, tone measures it. Returns
    /// whether the call's deadline may have moved (the tone heard something, a DTLS flight
    /// came) and whether the cap was reached (the socket is to be re-armed: more may wait).
    fn receive(&mut self, rtcp: bool, batch: &mut RecvBatch) -> (bool, bool) {
        let mut retime = false;
        for _ in 0..BATCHES_PER_PASS {
            let sock = if rtcp { &self.rtcp } else { &self.rtp };
            let Some(k) = read_batch(sock, batch) else {
                return (retime, false);
            };
            for i in 0..k {
                let Some((buf, at, from)) = batch.datagram_mut(i) else {
                    continue;
                };
                let Some(media) = self.media.as_mut() else {
                    continue;
                };
                self.last_heard = self.last_heard.max(at);
                let sock = if rtcp { &self.rtcp } else { &self.rtp };
                retime |= on_datagram(media, sock, buf, at, from, rtcp);
                if let (Media::Echo(echo), Some(from)) = (media, from)
                    && self.dtls_to.is_some()
                {
                    // The handshake's answer to what came, back where it came from (and
                    // its retransmissions from now on).
                    self.dtls_to = Some(from);
                    send_dtls(echo, sock, from);
                    retime = true;
                }
            }
            // A short batch: the socket is drained (no call to learn it would block).
            if k < BATCH {
                return (retime, false);
            }
        }
        // The cap: a caller sending faster than the loop reads waits for the next pass, and
        // the other calls, the timers and the SIP are served first.
        (retime, true)
    }
}

/// Sends echo's DTLS-SRTP datagrams waiting (the handshake's flights) to `to` on `sock`.
fn send_dtls(echo: &mut EchoMedia, sock: &MioUdpSocket, to: SocketAddr) {
    let to = socket2::SockAddr::from(to);
    while let Some(d) = echo.poll_datagram() {
        // A full socket buffer loses this datagram only: DTLS retransmits the flight.
        let _ = crate::rxstamp::send_to(sock, &d, &to);
    }
}

/// One datagram from the caller that arrived at `at` from `from` on the call's RTP or RTCP
/// socket `sock`. True for the tone (its session took it in).
fn on_datagram(
    media: &mut Media,
    sock: &MioUdpSocket,
    buf: &mut [u8],
    at: Instant,
    from: Option<SocketAddr>,
    on_rtcp_port: bool,
) -> bool {
    match media {
        Media::Echo(echo) => {
            let action = echo.handle_packet(at, buf);
            // Symmetric RTP: back to where it came from (a source we cannot name, none).
            let Some(from) = from else { return false };
            let to = socket2::SockAddr::from(from);
            // A full socket buffer loses this datagram only; the call carries on.
            let _ = match action {
                EchoAction::Reflect => crate::rxstamp::send_to(sock, buf, &to),
                EchoAction::Reply(bytes) => crate::rxstamp::send_to(sock, &bytes, &to),
                EchoAction::Drop => Ok(0),
            };
            false
        }
        Media::Tone {
            session,
            rtp_to,
            rtcp_to,
            mux,
        } => {
            let rtcp = rtp::is_rtcp(buf);
            if session.handle_packet(at, buf).is_ok()
                && let Some(from) = from
            {
                // Symmetric RTP (latching): send where the caller's packets come from, which
                // gets through a NAT the SDP address may not describe.
                if !rtcp {
                    *rtp_to = from;
                    if *mux {
                        *rtcp_to = from;
                    }
                } else if on_rtcp_port {
                    *rtcp_to = from;
                }
            }
            true
        }
    }
}

/// The local address the system routes to `peer` from (for SDP when listening on 0.0.0.0).
pub(crate) fn facing(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(peer).ok()?;
    Some(s.local_addr().ok()?.ip())
}
