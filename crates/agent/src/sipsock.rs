//! The shard's shared SIP socket, and when its datagrams wake the loop (interrupt
//! coalescing).
//!
//! At a few thousand calls per second the server's answers arrive one by one, and a shard
//! that wakes for each of them spends more in the kernel's sleep and wake-up than in its own
//! work. So the loop has two modes ([`Coalescer`]):
//! - **Ready** (idle or slow runs): the socket is registered with the reactor for
//!   readability; a datagram wakes the loop at once.
//! - **Coalescing** (busy): the pass before read datagrams or has SIP timers due within the
//!   quantum. The socket is taken out of the reactor, and the loop sleeps a quantum at most
//!   (less if the next deadline is already due), then drains the socket with `recvmmsg` and
//!   sends what it queued with one `sendmmsg`. SIP deadlines that fall inside the quantum
//!   fire in that same wake (timer slack: at most one quantum late, and that slack is not
//!   counted as lateness). A wake that finds the socket empty and nothing due within the
//!   quantum goes back to **ready**, so an idle shard neither spins nor waits.
//!
//! The same holds for the shard's connections (TCP, TLS, WS, WSS: `NetPoll`): while
//! coalescing, the connections' poll set is out of the reactor too and is looked at on each
//! wake. Each source leaves the reactor only if it delivered something within
//! [`QUIET_SOURCE`]: in a run over TCP the UDP socket, which carries nothing, stays armed and
//! is not read at every wake (over TCP at 3,000 calls/s that was a `recvmmsg` finding nothing
//! on 4,617 wakes per 15,000 calls), and in a run over the shared UDP socket the poll set
//! stays armed (with `udp_socket = "per-endpoint"` it carries the datagrams and coalesces).
//!
//! What is measured does not move with the mode: each datagram carries the kernel's receive
//! stamp (`SO_TIMESTAMPNS`, see `rxstamp` and `udpbatch::RecvBatch::arrival`), and so does
//! each message on a connection or an endpoint's own UDP socket (`StreamIn::arrived`: the
//! stamp of the read that completed it; messages one read completes share it), and the
//! engine times answers from it.
//!
//! Why the socket leaves the reactor rather than being ignored: tokio registers a socket
//! edge-triggered for reading and writing, and the kernel wakes a parked `epoll_wait` for
//! every datagram that arrives whether or not a task waits for it (and, through `EPOLLOUT`,
//! after each of our own sends on loopback). So the socket itself is never registered; while
//! ready, the reactor watches it for readability only, and a full send buffer (rare) is
//! waited for through a second descriptor (`dup`) registered for writability only until it
//! drains.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::udpbatch::{self, Outgoing, RecvBatch};

/// The default quantum: how long a busy shard lets datagrams wait in its socket at most.
/// Chosen by measurement (docs/notes-coalesce.md). Without media the loop's timer is tokio's,
/// whose wakes fall on whole milliseconds, so the real wait is up to one more millisecond.
pub const DEFAULT_QUANTUM: Duration = Duration::from_micros(500);

/// The receive buffer asked for the shard's shared socket when the test file sets none
/// (`udp_recv_buffer`). The kernel caps it at `net.core.rmem_max`.
///
/// One socket carries the answers to every endpoint of the shard. At 4,000 calls/s about 16
/// datagrams arrive per millisecond, and the system default (208 KB, ~90 loopback
/// datagrams of ~2.3 KB `truesize`) is full after a stall of the shard of ~6 ms. A 200 OK lost
/// there makes the endpoint send its INVITE again after T1, and SIPp's `uas` scenario aborts
/// a call on that (docs/notes-cpsagent.md): 32 s of Timer F waits and failed calls. In
/// `cps.sh 6000 4000` on a loaded 2-core machine our socket dropped datagrams in every run
/// that collapsed that way with the default (61–12,132 each), and in none of ten with 4 MB.
pub const SHARED_RECV_BUFFER: usize = 4 << 20;

/// Asks for [`SHARED_RECV_BUFFER`] on `sock` unless its buffer is already that large.
/// Best effort: a refusal leaves the system's default.
pub fn widen_recv_buffer(sock: &std::net::UdpSocket) {
    let s = socket2::SockRef::from(sock);
    // The kernel reports twice the size asked (its bookkeeping share included).
    if s.recv_buffer_size()
        .is_ok_and(|n| n >= 2 * SHARED_RECV_BUFFER)
    {
        return;
    }
    let _ = s.set_recv_buffer_size(SHARED_RECV_BUFFER);
}

/// `u64::MAX`: not set (the environment or the default decides).
static QUANTUM_OVERRIDE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the quantum for shards started from now on in this process (`Duration::ZERO`: no
/// coalescing, every datagram wakes the loop). For tests and benches; the run otherwise
/// takes `SIPMETER_COALESCE_US` from the environment, else [`DEFAULT_QUANTUM`].
pub fn set_quantum(q: Duration) {
    let us = u64::try_from(q.as_micros()).unwrap_or(u64::MAX - 1);
    QUANTUM_OVERRIDE.store(us, Ordering::Relaxed);
}

/// The quantum a new shard uses (see [`set_quantum`]). A value of `SIPMETER_COALESCE_US`
/// that is not a whole number of µs is ignored (the default is used).
pub fn quantum() -> Duration {
    quantum_for(false)
}

/// The quantum a new shard uses in a run with media (`media`) or without. Unless
/// [`set_quantum`] or `SIPMETER_COALESCE_US` says otherwise, a run with media does not
/// coalesce: its loop already wakes on the media grid (at most every millisecond), and a
/// measured 3,000-call RTP run had a 2–4× worse send-timing p99 with coalescing on
/// (docs/notes-coalesce.md).
pub fn quantum_for(media: bool) -> Duration {
    let default = if media {
        Duration::ZERO
    } else {
        DEFAULT_QUANTUM
    };
    match QUANTUM_OVERRIDE.load(Ordering::Relaxed) {
        u64::MAX => std::env::var("SIPMETER_COALESCE_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(default, Duration::from_micros),
        us => Duration::from_micros(us),
    }
}

/// The shard's shared UDP socket (non-blocking), registered with the reactor for
/// readability only while [armed](Self::arm).
pub struct SipSocket {
    sock: std::net::UdpSocket,
    /// A second descriptor of the socket (`dup`), registered for readability while armed.
    read: Armable,
    /// A third descriptor, registered for writability while a full send buffer is waited
    /// for (one descriptor cannot be in one epoll set twice).
    wfd: Option<OwnedFd>,
}

impl std::fmt::Debug for SipSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipSocket")
            .field("sock", &self.sock)
            .field("armed", &self.read.is_armed())
            .finish_non_exhaustive()
    }
}

/// Registers `fd` with the reactor for `interest`.
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // `with_interest` is deprecated for types whose descriptor could be closed behind the
    // reactor's back; an `OwnedFd` closes its descriptor only when dropped, after the
    // `AsyncFd` has deregistered it (as for the media driver's timer and `NetPoll`). The
    // replacement (`register_with_interest`) is `unsafe` for the same promise.
    #[allow(deprecated)] // reason: sound for an owned descriptor (see above)
    AsyncFd::with_interest(fd, interest)
}

/// A descriptor that wakes the shard's reactor only while armed: registered for readability
/// then, else kept aside (a second descriptor of a socket or of a poll set, `dup`, so the
/// original is never the one deregistered). Used for the shard's SIP socket and its
/// connections' poll set (`NetPoll`).
pub(crate) struct Armable {
    /// The descriptor while disarmed. `None` in both only if a registration failed and took
    /// it (`arm` then makes another with its `dup`).
    idle: Option<OwnedFd>,
    armed: Option<AsyncFd<OwnedFd>>,
}

impl Armable {
    /// Disarmed, holding `fd`.
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self {
            idle: Some(fd),
            armed: None,
        }
    }

    pub(crate) fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Registers the descriptor (one `epoll_ctl`); readiness already there is reported at
    /// once (the kernel checks it when the descriptor is added). `dup` makes a new one if a
    /// failed registration took the last.
    pub(crate) fn arm(&mut self, dup: impl FnOnce() -> io::Result<OwnedFd>) -> io::Result<()> {
        if self.armed.is_none() {
            let fd = match self.idle.take() {
                Some(fd) => fd,
                None => dup()?,
            };
            self.armed = Some(register(fd, Interest::READABLE)?);
        }
        Ok(())
    }

    /// Deregisters the descriptor (one `epoll_ctl`) and keeps it.
    pub(crate) fn disarm(&mut self) {
        if let Some(a) = self.armed.take() {
            self.idle = Some(a.into_inner());
        }
    }

    /// Resolves when the armed descriptor is readable, with the readiness cleared (the
    /// caller then reads until drained, or looks again without sleeping if it stopped
    /// short). Never resolves while disarmed.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match &self.armed {
            Some(a) => {
                let mut guard = a.readable().await?;
                guard.clear_ready();
                Ok(())
            }
            None => std::future::pending().await,
        }
    }
}

impl SipSocket {
    /// Takes a non-blocking socket; it starts armed. Must be called inside a tokio runtime.
    pub fn new(sock: std::net::UdpSocket) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        let read = Armable::new(sock.try_clone()?.into());
        let wfd = Some(sock.try_clone()?.into());
        let mut s = Self { sock, read, wfd };
        s.arm()?;
        Ok(s)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Whether a datagram wakes the loop.
    pub fn is_armed(&self) -> bool {
        self.read.is_armed()
    }

    /// A datagram wakes the loop from now on (one `epoll_ctl`). One already waiting is
    /// reported at once: the kernel checks readiness when the descriptor is added.
    pub fn arm(&mut self) -> io::Result<()> {
        let sock = &self.sock;
        self.read.arm(|| Ok(sock.try_clone()?.into()))
    }

    /// Datagrams no longer wake the loop (one `epoll_ctl`); they wait in the socket.
    pub fn disarm(&mut self) {
        self.read.disarm();
    }

    /// Resolves when the armed socket is readable, with the readiness cleared (the caller
    /// then drains the socket, or looks again without sleeping if it stopped short). Never
    /// resolves while disarmed.
    pub async fn readable(&self) -> io::Result<()> {
        self.read.readable().await
    }

    /// Resolves once the socket's send buffer has room again (after a `WouldBlock`).
    pub async fn writable(&mut self) -> io::Result<()> {
        let fd = match self.wfd.take() {
            Some(fd) => fd,
            None => self.sock.try_clone()?.into(),
        };
        let w = register(fd, Interest::WRITABLE)?;
        let r = w.writable().await.map(drop);
        self.wfd = Some(w.into_inner());
        r
    }

    /// One `recvmmsg` (see [`udpbatch::recv_batch`]).
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        udpbatch::recv_batch(&self.sock, batch)
    }

    /// One `sendmmsg` (see [`udpbatch::send_batch`]).
    pub fn send_batch<T>(&self, items: &[Outgoing<T>]) -> io::Result<usize> {
        udpbatch::send_batch(&self.sock, items)
    }
}

/// How recently a source (the UDP socket, the stream connections) must have delivered
/// something for a coalescing sleep to take it out of the reactor. A source quiet for longer
/// stays armed and is not read on each wake: in a run over TCP the shard's UDP socket
/// carries nothing, and reading it at every quantum was one `recvmmsg` that found nothing
/// per wake (4,617 in 15,000 calls over TCP); in a run over UDP the connections are none.
pub const QUIET_SOURCE: Duration = Duration::from_secs(1);

/// The loop's mode and its decisions (sans-IO: the shard applies them to its
/// [`SipSocket`] and its connections, `NetPoll`).
#[derive(Debug, Clone)]
pub struct Coalescer {
    quantum: Duration,
    coalescing: bool,
    /// Datagrams and stream messages read since the loop last slept.
    got: usize,
    /// When the UDP socket last delivered a datagram, and the connections a message.
    udp_heard: Option<Instant>,
    streams_heard: Option<Instant>,
    /// When a source was last read, or the last coalescing wake ([`Self::woke`]): a
    /// coalescing wake comes one quantum after it, so a
    /// pass that took longer than the quantum does not sleep (a saturated loop never idles
    /// with datagrams waiting).
    last_read: Option<Instant>,
    /// The slack of the current wake: timers it fires were allowed this much late.
    slack: Duration,
    /// Sleeps decided in each mode (for the notes' figures and the tests).
    pub coalesced_sleeps: u64,
    pub ready_sleeps: u64,
}

impl Coalescer {
    /// `quantum` zero: never coalesce (every datagram wakes the loop, as before).
    pub fn new(quantum: Duration) -> Self {
        Self {
            quantum,
            coalescing: false,
            got: 0,
            udp_heard: None,
            streams_heard: None,
            last_read: None,
            slack: Duration::ZERO,
            coalesced_sleeps: 0,
            ready_sleeps: 0,
        }
    }

    pub fn quantum(&self) -> Duration {
        self.quantum
    }

    /// Whether the coming sleep coalesces (a busy shard): it wakes at most a quantum after
    /// the last read and reads the sources out of the reactor ([`Self::coalesce_udp`],
    /// [`Self::coalesce_streams`]).
    pub fn coalescing(&self) -> bool {
        self.coalescing
    }

    /// The loop read the socket at `at` and got `n` datagrams.
    pub fn read(&mut self, n: usize, at: Instant) {
        self.got += n;
        self.last_read = Some(at);
        if n > 0 {
            self.udp_heard = Some(at);
        }
    }

    /// A coalescing wake at `at`: the next one comes a quantum after it at the earliest,
    /// whichever sources it reads (with none out of the reactor, it reads none).
    pub fn woke(&mut self, at: Instant) {
        if self.coalescing {
            self.last_read = Some(at);
        }
    }

    /// The loop read its connections at `at` and got `n` messages (a connection made,
    /// refused or closed is not counted: it says nothing of what comes next).
    pub fn read_streams(&mut self, n: usize, at: Instant) {
        self.got += n;
        self.last_read = Some(at);
        if n > 0 {
            self.streams_heard = Some(at);
        }
    }

    /// The socket could not be armed: the loop reads it on each wake, as when coalescing
    /// (and wakes at least every millisecond).
    pub fn read_without_waking(&mut self) {
        self.coalescing = true;
    }

    /// For the coming sleep (after [`Self::plan_sleep`]): whether the UDP socket is out of
    /// the reactor and read on the wake. Coalescing, and a datagram came within
    /// [`QUIET_SOURCE`]. (A socket the reactor could not take is read on every wake too:
    /// the shard reads whatever is not armed.)
    pub fn coalesce_udp(&self, now: Instant) -> bool {
        self.coalescing && heard_within(self.udp_heard, now)
    }

    /// For the coming sleep: whether the connections are out of the reactor and read on
    /// the wake. Coalescing, and a message came on one within [`QUIET_SOURCE`].
    pub fn coalesce_streams(&self, now: Instant) -> bool {
        self.coalescing && heard_within(self.streams_heard, now)
    }

    /// How late a timer that fell due at `at` and fires at `now` really is: its wait minus
    /// the slack of this wake (a coalescing wake may fire what fell due within its quantum).
    pub fn lateness(&self, now: Instant, at: Instant) -> Duration {
        now.saturating_duration_since(at).saturating_sub(self.slack)
    }

    /// Before the loop sleeps: the mode for the sleep and when to wake. `next` is the
    /// loop's next deadline of any kind; `sip_next` the SIP timer heap's (the dense
    /// deadlines of a busy run). Returns (coalesce, wake): with `coalesce`, the loop wakes at
    /// `wake` to read the sources that delivered lately, which it takes out of the reactor
    /// ([`Self::coalesce_udp`], [`Self::coalesce_streams`]); else every source is armed.
    pub fn plan_sleep(
        &mut self,
        now: Instant,
        next: Instant,
        sip_next: Option<Instant>,
    ) -> (bool, Instant) {
        let got = std::mem::take(&mut self.got);
        let busy = !self.quantum.is_zero()
            && (got > 0 || sip_next.is_some_and(|t| t < now + self.quantum));
        self.coalescing = busy;
        if busy {
            self.coalesced_sleeps += 1;
            // Anything already due: no sleep. Else one quantum after the last read (at once
            // if the pass took longer); whatever falls due by then fires then (slack).
            let wake = if next <= now {
                now
            } else {
                self.last_read
                    .map_or(now + self.quantum, |t| (t + self.quantum).max(now))
            };
            self.slack = self.quantum;
            (true, wake)
        } else {
            self.ready_sleeps += 1;
            self.slack = Duration::ZERO;
            (false, next)
        }
    }
}

/// Whether `heard` is within [`QUIET_SOURCE`] before `now`.
fn heard_within(heard: Option<Instant>, now: Instant) -> bool {
    heard.is_some_and(|t| now.saturating_duration_since(t) < QUIET_SOURCE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    const Q: Duration = Duration::from_micros(500);

    #[test]
    fn the_shared_socket_gets_a_wide_receive_buffer_within_the_systems_cap() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = socket2::SockRef::from(&sock).recv_buffer_size().unwrap();
        widen_recv_buffer(&sock);
        let after = socket2::SockRef::from(&sock).recv_buffer_size().unwrap();
        assert!(after >= before, "never narrower: {before} -> {after}");
        // What the kernel grants: the size asked, capped at rmem_max, doubled.
        if let Some(max) = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            assert!(
                after >= 2 * SHARED_RECV_BUFFER.min(max),
                "{after} bytes granted, rmem_max {max}"
            );
        }
    }

    #[test]
    fn datagrams_read_make_the_next_sleep_a_quantum() {
        let mut c = Coalescer::new(Q);
        let now = Instant::now();
        let far = now + Duration::from_secs(1);
        c.read(3, now);
        assert_eq!(c.plan_sleep(now, far, Some(far)), (true, now + Q));
        // The wake is a quantum after the read, not after the pass: a pass that took longer
        // than the quantum does not sleep.
        c.read(1, now);
        let slow = now + Q * 3;
        assert_eq!(c.plan_sleep(slow, far, Some(far)), (true, slow));
        c.read(1, now);
        assert_eq!(c.plan_sleep(now + Q / 2, far, Some(far)), (true, now + Q));
        assert!(c.coalescing());
        // A timer 0.9 quantum late fired in that wake is not late at all; 2 quanta late
        // is one quantum late.
        let t = now + Q;
        assert_eq!(c.lateness(t, t - Q * 9 / 10), Duration::ZERO);
        assert_eq!(c.lateness(t, t - Q * 2), Q);
        // Nothing read and nothing due soon: back to waking on the socket, at the deadline.
        assert_eq!(c.plan_sleep(t, far, Some(far)), (false, far));
        assert!(!c.coalescing());
        assert_eq!(c.lateness(far, far - Q), Q);
        assert_eq!((c.coalesced_sleeps, c.ready_sleeps), (3, 1));
    }

    #[test]
    fn dense_timers_coalesce_and_due_work_does_not_sleep() {
        let mut c = Coalescer::new(Q);
        let now = Instant::now();
        // A SIP deadline inside the quantum: coalesce; it fires at the quantum's end.
        let soon = now + Q / 4;
        assert_eq!(c.plan_sleep(now, soon, Some(soon)), (true, now + Q));
        // Something already due: no sleep, still coalescing.
        c.read(1, now);
        assert_eq!(c.plan_sleep(now, now, Some(now)), (true, now));
        // The progress tick or an event flush close by is not a reason to coalesce.
        let later = now + Duration::from_secs(1);
        assert_eq!(c.plan_sleep(now, soon, Some(later)), (false, soon));
    }

    /// Only a source that delivered within [`QUIET_SOURCE`] leaves the reactor while the
    /// loop coalesces: over TCP the UDP socket stays armed (not read at each wake), over UDP
    /// the connections do.
    #[test]
    fn only_a_source_heard_lately_is_read_on_each_wake() {
        let mut c = Coalescer::new(Q);
        let now = Instant::now();
        let far = now + Duration::from_secs(10);
        // Busy from dense timers alone: neither source has said anything.
        let soon = now + Q / 4;
        assert_eq!(c.plan_sleep(now, soon, Some(soon)), (true, now + Q));
        assert!(!c.coalesce_udp(now) && !c.coalesce_streams(now));
        // Messages on the connections: they are read on the wakes, the UDP socket is not.
        c.read_streams(4, now);
        assert!(c.plan_sleep(now, far, Some(far)).0);
        assert!(c.coalesce_streams(now) && !c.coalesce_udp(now));
        // A wake that found nothing on them keeps them coalesced while still busy.
        c.read_streams(0, now + Q);
        let t = now + QUIET_SOURCE / 2;
        assert!(c.plan_sleep(t, t + Q / 4, Some(t + Q / 4)).0);
        assert!(c.coalesce_streams(t));
        // Quiet for a second: armed again even though the loop still coalesces.
        let t = now + QUIET_SOURCE;
        assert!(c.plan_sleep(t, t + Q / 4, Some(t + Q / 4)).0);
        assert!(!c.coalesce_streams(t));
        // A datagram: the UDP socket is read on the wakes.
        c.read(2, t);
        assert!(c.plan_sleep(t, far, Some(far)).0);
        assert!(c.coalesce_udp(t) && !c.coalesce_streams(t));
        // Not coalescing (idle): both armed, whatever came lately.
        let t = t + Q;
        assert_eq!(c.plan_sleep(t, far, Some(far)), (false, far));
        assert!(!c.coalesce_udp(t) && !c.coalesce_streams(t));
        // Busy from dense timers with both sources armed: the wake is a quantum after the
        // last wake, not at once (no spinning until the timer is due).
        let t = t + QUIET_SOURCE * 2;
        assert!(c.plan_sleep(t, t + Q / 4, Some(t + Q / 4)).0);
        assert!(!c.coalesce_udp(t) && !c.coalesce_streams(t));
        c.woke(t);
        let (_, wake) = c.plan_sleep(t, t + Q / 4, Some(t + Q / 4));
        assert_eq!(wake, t + Q);
    }

    #[test]
    fn a_zero_quantum_never_coalesces() {
        let mut c = Coalescer::new(Duration::ZERO);
        let now = Instant::now();
        c.read(10, now);
        assert_eq!(c.plan_sleep(now, now, Some(now)), (false, now));
        assert_eq!(c.lateness(now, now), Duration::ZERO);
    }

    /// Without an override (no test in this binary sets one, and the suite does not set
    /// `SIPMETER_COALESCE_US`), a run with media does not coalesce; one without does.
    #[test]
    fn a_run_with_media_does_not_coalesce_by_default() {
        if std::env::var_os("SIPMETER_COALESCE_US").is_some() {
            return;
        }
        assert_eq!(quantum_for(true), Duration::ZERO);
        assert_eq!(quantum_for(false), DEFAULT_QUANTUM);
        assert_eq!(quantum(), DEFAULT_QUANTUM);
    }

    /// Armed, a datagram wakes a waiting task; disarmed, it waits in the socket (read
    /// directly) and arming again reports one that is already there.
    #[test]
    fn arming_and_disarming_the_socket() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut s = SipSocket::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
            let to = s.local_addr().unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut batch = RecvBatch::default();
            assert!(s.is_armed());
            tx.send_to(b"one", to).unwrap();
            tokio::time::timeout(Duration::from_secs(10), s.readable())
                .await
                .expect("an armed socket wakes the loop")
                .unwrap();
            assert_eq!(s.recv_batch(&mut batch).unwrap(), 1);
            s.disarm();
            tx.send_to(b"two", to).unwrap();
            // Disarmed: nothing wakes the waiter; the datagram is still there to read.
            assert!(
                tokio::time::timeout(Duration::from_millis(50), s.readable())
                    .await
                    .is_err()
            );
            s.arm().unwrap();
            tokio::time::timeout(Duration::from_secs(10), s.readable())
                .await
                .expect("arming reports a datagram already waiting")
                .unwrap();
            assert_eq!(s.recv_batch(&mut batch).unwrap(), 1);
            assert_eq!(batch.datagram(0).unwrap().0, b"two");
            assert_eq!(
                s.recv_batch(&mut batch).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            // Writable waits on the second descriptor resolve when there is room.
            tokio::time::timeout(Duration::from_secs(10), s.writable())
                .await
                .expect("an empty send buffer has room")
                .unwrap();
        });
    }
}
