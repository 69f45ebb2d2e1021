//! One call's media bound to sockets: an RTP/RTCP socket pair per call (RFC 3550 §11: RTP on
//! an even port, RTCP on the next), and the sans-IO [`MediaSession`] that paces, measures and
//! scores.
//!
//! The endpoint stays a struct in the shard's slab, and so do its sockets: no task per call.
//! Each shard has one [`MediaDriver`], an epoll set holding every media socket of the shard;
//! the shard loop waits on it (through tokio's reactor), asks it which sockets are readable,
//! and reads them into one reused buffer straight into the call's session: no task, channel
//! hop or allocation per datagram. Senders are paced by the shard's timer heap, and each RTP
//! send records how late it left against its schedule ([`SendTiming`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gather::{Gathered, Gathering, gather_blocking, turn_note};
use crate::rxstamp::RecvBatch;
use bytes::Bytes;
use media::audio::SourceKind;
use media::dtls::DtlsIdentity;
use media::ice::{CandidateType, Credentials, IceAgent, IceConfig, IceEvent, IceState};
use media::sdp::{
    self, Codec, Direction, LocalMedia, MediaDescription, Negotiated, NegotiationError, Sdes,
    SessionDescription,
};
use media::session::{CallMediaSummary, MediaSession, PacketKind, Sample, SessionConfig};
use media::sound::{SoundConfig, SoundWatch};
use media::srtp::{Mki, Suite};
use media::tone::{Tone, ToneWatch};
use media::turn::{TurnClient, TurnConfig, TurnEvent};
use mio::net::UdpSocket as MioUdpSocket;
use mio::{Events, Interest, Poll, Token};
use sip_proto::ua::SrtpPolicy;
use tokio::io::unix::AsyncFd;

mod fdtable;
mod pacer;
mod probe;
mod realtime;
mod slice;
mod thp;
mod timerfd;

pub use fdtable::reserve as reserve_descriptors;
pub use pacer::MediaPacer;
pub use probe::LoopProbe;
pub use thp::disable as disable_huge_pages;

/// A group's media settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlan {
    /// Codecs offered and accepted, in preference order.
    pub codecs: Vec<Codec>,
    /// Packetisation time, ms.
    pub ptime_ms: u32,
    /// Offer and accept RFC 4733 telephone-events.
    pub telephone_event: bool,
    /// Offer RTCP multiplexing (RFC 5761).
    pub rtcp_mux: bool,
    /// Advertise this address and port in SDP instead of the socket's own (a media relay or
    /// a static NAT mapping in front of the endpoint; the impairment tests put a relay
    /// there). Every call of the group advertises the same one. `None`: the bound socket.
    pub advertise: Option<SocketAddr>,
    /// What the calls send: the generated speech-like signal (default) or a WAV clip.
    pub source: SourceKind,
    /// DSCP of the calls' RTP and RTCP (`rtp_dscp`; `None`: unmarked).
    pub dscp: Option<crate::dscp::Dscp>,
    /// SRTP with SDES keys (`srtp`).
    pub srtp: SrtpMode,
    /// The SRTP suites offered and accepted, in preference order (`srtp_suites`; default
    /// [`Suite::ALL`], strongest first).
    pub srtp_suites: Vec<Suite>,
    /// The length of the MKI on our SDES keys (`srtp_mki`, value 1), if any.
    pub srtp_mki: Option<u8>,
    /// Send RTCP XR VoIP Metrics blocks (RFC 3611 §4.7) in each RTCP compound, and say so in
    /// the SDP (`a=rtcp-xr:rcvr-rtt=all voip-metrics`, §5.1); the peer's blocks are read either way.
    pub rtcp_xr: bool,
    /// The mean RTCP report interval (`rtcp_interval`; RFC 3550 §6.2, default 5 s): each
    /// report leaves at a random 0.5–1.5 times it, the first at 0.25–0.75 times it.
    pub rtcp_interval: Duration,
    /// Watch when sound starts and stops in what each call receives (scenario actions on
    /// `audio` or `silence`; `None`: not watched).
    pub sound: Option<SoundConfig>,
    /// Watch tones and in-band DTMF in what each call receives (scenario actions on
    /// `tone:F` or `inband_dtmf`; `None`: not watched).
    pub tones: Option<Arc<ToneListen>>,
    /// ICE (RFC 8445, `ice`): host candidates in the SDP, connectivity checks on the RTP
    /// (and RTCP) socket, media to the nominated pair; a peer without ICE gets plain media.
    pub ice: bool,
    /// The STUN and TURN servers of the calls' ICE (`stun_server`, `turn_server`, …).
    pub ice_servers: IceServers,
}

/// The STUN and TURN servers a group's ICE gathers candidates from (`stun_server`,
/// `turn_server`, `turn_user`, `turn_password`, `ice_policy`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IceServers {
    /// A server-reflexive candidate from a Binding request to this STUN server.
    pub stun: Option<SocketAddr>,
    /// A relayed candidate from an allocation on this TURN server (component 1).
    pub turn: Option<TurnConfig>,
    /// `ice_policy = "relay"`: only the relayed candidate.
    pub relay_only: bool,
}

impl IceServers {
    pub(crate) fn any(&self) -> bool {
        self.stun.is_some() || self.turn.is_some()
    }
}

/// The tones a group's calls listen for ([`MediaPlan::tones`]), shared by its calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToneListen {
    /// The tones, each with its minimum duration; a tone's entries are in increasing
    /// minimum order (the first is the one reported in `tones_heard`).
    pub tones: Vec<(Tone, Duration)>,
    /// In-band DTMF digits too.
    pub inband_dtmf: bool,
    /// Special Information Tones too.
    pub sit: bool,
}

/// A group's `srtp`: whether the calls' media is protected (SRTP, RFC 3711) with keys
/// exchanged in the SDP (SDES, RFC 4568).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpMode {
    /// Plain RTP; an `RTP/SAVP` offer is refused (488).
    #[default]
    Off,
    /// SRTP required: `RTP/SAVP` with `a=crypto` offered; a peer without keys fails the call.
    Sdes,
    /// SRTP when the peer takes it: `RTP/AVP` with `a=crypto` offered, plain RTP accepted.
    Optional,
    /// DTLS-SRTP (RFC 5763, RFC 5764): `UDP/TLS/RTP/SAVP` with our certificate's
    /// fingerprint offered, rtcp-mux; the keys come from the handshake on the RTP port.
    Dtls,
}

/// The run's DTLS certificate: one self-signed ECDSA P-256 certificate per run (per process),
/// made on first use and shared by every call: each call's keys are fresh anyway (the
/// handshake's ECDHE), a certificate costs ≈ 0.1–1 ms of CPU, and a fresh one per run keeps
/// runs apart. `io::Error` when the system's random source fails.
fn dtls_identity() -> io::Result<Arc<DtlsIdentity>> {
    static ID: std::sync::OnceLock<Arc<DtlsIdentity>> = std::sync::OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(id.clone());
    }
    let id = Arc::new(DtlsIdentity::generate().map_err(io::Error::other)?);
    Ok(ID.get_or_init(|| id).clone())
}

impl SrtpMode {
    /// The user agent's rule for offers inside a call that change the media's security.
    pub fn policy(self) -> SrtpPolicy {
        match self {
            SrtpMode::Off => SrtpPolicy::Off,
            SrtpMode::Sdes => SrtpPolicy::Sdes,
            SrtpMode::Optional => SrtpPolicy::Optional,
            SrtpMode::Dtls => SrtpPolicy::Dtls,
        }
    }

    /// Our SDES with fresh master keys from the system's CSPRNG (RFC 3711 §8.1.1: keys
    /// must be random and secret; not from the run's seed, which replays).
    /// One key per suite of `suites`, of its length.
    /// With `mki`, each key carries an MKI of that many bytes, value 1.
    fn sdes(self, suites: &[Suite], mki: Option<u8>) -> io::Result<Option<Sdes>> {
        if self == SrtpMode::Off {
            return Ok(None);
        }
        Sdes::generate(self == SrtpMode::Sdes, suites, getrandom::fill)
            .map(|s| Some(s.with_mki(mki.and_then(|len| Mki::new(1, len)))))
            .map_err(io::Error::other)
    }
}

impl Default for MediaPlan {
    fn default() -> Self {
        Self {
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            ptime_ms: 20,
            telephone_event: true,
            rtcp_mux: false,
            advertise: None,
            source: SourceKind::Generated,
            dscp: None,
            srtp: SrtpMode::Off,
            srtp_suites: Suite::ALL.to_vec(),
            srtp_mki: None,
            rtcp_xr: false,
            rtcp_interval: Duration::from_secs(5),
            sound: None,
            tones: None,
            ice: false,
            ice_servers: IceServers::default(),
        }
    }
}

impl MediaPlan {
    /// What a call of the plan can do, at `address`:`port`, in the session `session_id`,
    /// with the SDES keys `srtp` ([`SrtpMode::sdes`]).
    fn local(
        &self,
        address: IpAddr,
        port: u16,
        session_id: u64,
        srtp: Option<Sdes>,
        dtls: Option<Arc<DtlsIdentity>>,
    ) -> LocalMedia {
        LocalMedia {
            codecs: self.codecs.clone(),
            telephone_event: self.telephone_event,
            ptime: self.ptime_ms,
            direction: Direction::SendRecv,
            address: self.advertise.map_or(address, |a| a.ip()),
            port: self.advertise.map_or(port, |a| a.port()),
            rtcp_mux: self.rtcp_mux,
            session_id,
            session_version: 1,
            // DTLS-SRTP takes no SDES keys.
            srtp: srtp.filter(|_| self.srtp != SrtpMode::Dtls),
            dtls,
        }
    }

    /// Every codec of the plan, as the user agent matches offers inside a call against
    /// them ([`sip_proto::ua::UaProfile::codecs`]): our offer's SDP (the address and port
    /// are placeholders the user agent does not read).
    pub fn codec_list(&self) -> Bytes {
        let any = self.local(IpAddr::from([0, 0, 0, 0]), 9, 0, None, None);
        Bytes::from(sdp::build_offer(&any).to_string())
    }
}

/// Hands out RTP/RTCP port pairs: from a range (`rtp_ports = "20000-30000"`), or chosen by the
/// system when no range is set.
#[derive(Debug)]
pub struct PortAllocator {
    range: Option<(u16, u16)>,
    cursor: u16,
}

impl PortAllocator {
    /// `range`: inclusive bounds; `None` lets the system choose. `offset` spreads shards.
    pub fn new(range: Option<(u16, u16)>, offset: usize) -> Self {
        let cursor = range.map_or(0, |(from, to)| {
            let pairs = (usize::from(to).saturating_sub(usize::from(from)) / 2).max(1);
            let port = usize::from(from) + 2 * (offset % pairs);
            u16::try_from(port).unwrap_or(from)
        });
        Self { range, cursor }
    }

    /// Binds an RTP socket on an even port and RTCP on the next one.
    pub fn bind_pair(
        &mut self,
        ip: IpAddr,
    ) -> io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
        match self.range {
            None => {
                for _ in 0..64 {
                    let rtp = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
                    let port = rtp.local_addr()?.port();
                    if port % 2 == 1 || port == u16::MAX {
                        continue;
                    }
                    if let Ok(rtcp) = std::net::UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
                        return Ok((rtp, rtcp));
                    }
                }
                Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "no free even/odd port pair for RTP/RTCP",
                ))
            }
            Some((from, to)) => {
                // Even RTP ports with room for RTCP on the next one, in u32 so a range that
                // ends at 65535 cannot overflow.
                let (from32, to32) = (u32::from(from) + u32::from(from) % 2, u32::from(to));
                let from = u16::try_from(from32).unwrap_or(u16::MAX);
                let pairs = (to32.saturating_sub(from32) / 2).max(1);
                for _ in 0..pairs {
                    let port = self.cursor.max(from);
                    if u32::from(port) + 1 > to32 {
                        self.cursor = from;
                        continue;
                    }
                    self.cursor = if u32::from(port) + 3 > to32 {
                        from
                    } else {
                        port + 2
                    };
                    let Ok(rtp) = std::net::UdpSocket::bind(SocketAddr::new(ip, port)) else {
                        continue;
                    };
                    if let Ok(rtcp) = std::net::UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
                        return Ok((rtp, rtcp));
                    }
                }
                Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("every RTP port pair in {from}-{to} is in use"),
                ))
            }
        }
    }
}

/// Which of a call's two sockets a readiness event is about, and whose call it is: the
/// endpoint's slot, the call's generation (low 31 bits) and RTP/RTCP, packed in one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaToken {
    /// The endpoint's slot in the shard.
    pub endpoint: usize,
    /// The call's generation, low 31 bits (a datagram of an earlier call is not delivered).
    pub generation: u32,
    /// The RTCP socket (else RTP).
    pub rtcp: bool,
}

impl MediaToken {
    fn pack(self) -> Token {
        Token(
            self.endpoint << 32
                | (self.generation as usize & 0x7fff_ffff) << 1
                | usize::from(self.rtcp),
        )
    }

    fn unpack(t: Token) -> Self {
        Self {
            endpoint: t.0 >> 32,
            generation: ((t.0 >> 1) & 0x7fff_ffff) as u32,
            rtcp: t.0 & 1 == 1,
        }
    }

    /// Does this token belong to the call of `generation`?
    pub fn is_for(&self, generation: u64) -> bool {
        u64::from(self.generation) == generation & 0x7fff_ffff
    }
}

/// The media grid: every call's RTP schedule starts on a multiple of this after one
/// process-wide origin ([`on_grid`]), and the shards' precise timers tick on the same grid
/// ([`PreciseTimer::QUANTUM`]). So a wake-up finds whole grid points of packets due and sends
/// them at once (lateness: the wake-up's own and the packet's place in the pass), where
/// random phases rounded up to a quarter-millisecond quantum needed 4,000 wake-ups a second
/// and made each packet 0–250 µs late by the rounding alone.
pub const MEDIA_GRID: Duration = Duration::from_millis(1);

fn grid_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now) + GRID_PHASE.get()
}

thread_local! {
    /// This thread's offset of the media grid ([`set_grid_phase`]).
    static GRID_PHASE: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Sets up a shard's thread for media before its loop starts: its media grid's phase
/// ([`set_grid_phase`]) and, when `SIPMETER_MEDIA_RT` asks for it, real-time scheduling
/// (`callmedia/realtime.rs`; a refusal is printed once per shard and the run goes on).
///
/// Without real-time scheduling the shard asks for a short time slice (`callmedia/slice.rs`,
/// `SIPMETER_MEDIA_SLICE_US`, default [`DEFAULT_SLICE_US`]; `0` keeps the kernel's slice):
/// a woken shard then preempts a longer-slice task at once instead of waiting for the
/// scheduler tick. A kernel that refuses or ignores it is said once per shard and the run
/// goes on.
pub fn shard_thread_setup(index: usize, shards: usize) {
    set_grid_phase(index, shards);
    match realtime::priority_from_env() {
        None => {}
        Some(Err(e)) => eprintln!("sipmeter: {e}"),
        Some(Ok(p)) => match realtime::set_fifo(p) {
            Ok(()) => return,
            Err(e) => {
                eprintln!(
                    "sipmeter: shard {index}: SCHED_FIFO {p} refused ({e}); normal scheduling"
                );
            }
        },
    }
    match slice_from_env() {
        Err(e) => eprintln!("sipmeter: {e}"),
        Ok(0) => {}
        Ok(us) => match slice::set_slice(us) {
            Ok(true) => {}
            Ok(false) => eprintln!(
                "sipmeter: shard {index}: a {us} µs time slice was not kept (kernel older \
                 than 6.12?); the kernel's default slice"
            ),
            Err(e) => eprintln!(
                "sipmeter: shard {index}: a {us} µs time slice refused ({e}); the kernel's \
                 default slice"
            ),
        },
    }
}

/// The shards' time slice when `SIPMETER_MEDIA_SLICE_US` does not say: 100 µs, the
/// shortest the kernel takes (a pass at 3,000 calls is 0.5–0.8 ms, so a shard is
/// rescheduled within its pass only when another task is due, never for the slice alone:
/// a running short-slice task is preempted only by a task with an earlier deadline).
pub const DEFAULT_SLICE_US: u64 = 100;

/// `SIPMETER_MEDIA_SLICE_US`: the shards' time slice in µs (100–100,000; `0` or `off`: the
/// kernel's default). An unreadable value is an error (the default is used).
fn slice_from_env() -> Result<u64, String> {
    let Ok(v) = std::env::var("SIPMETER_MEDIA_SLICE_US") else {
        return Ok(DEFAULT_SLICE_US);
    };
    match v.trim() {
        "" => Ok(DEFAULT_SLICE_US),
        "off" | "0" => Ok(0),
        t => match t.parse::<u64>() {
            Ok(us) if (100..=100_000).contains(&us) => Ok(us),
            _ => Err(format!(
                "SIPMETER_MEDIA_SLICE_US={t}: want 100 to 100000 (µs) or 0; the kernel's slice"
            )),
        },
    }
}

/// The run's threads that are not on the media clock (the collector, the progress
/// printer) call this while media runs: the thread goes under `SCHED_BATCH`
/// (`callmedia/slice.rs`), so when it wakes it does not preempt a shard in its pass, at
/// nice level `nice` (or its own, if lower in priority). Under EEVDF two runnable threads
/// of equal weight share a CPU half and half, whatever their slices: a shard that needs
/// 75 % of its CPU falls behind while the collector works off a burst (≈ 4 ms of
/// per-second samples) on the same CPU; at nice 10 the collector gets ≈ 10 % of it then,
/// and all it wants when the shard sleeps. The built-in registrar's thread is left as it
/// is: it answers the calls being set up (at nice 10 an INVITE was retransmitted), and it
/// never held a shard's CPU for long in `perf sched` (docs/notes-rtpsched.md).
///
/// The thread is put back as it was when the guard is dropped (its nice level only where
/// the privilege allows: `RLIMIT_NICE`). `SIPMETER_MEDIA_BATCH`: `0` or `off` leaves the
/// threads as they are, `on` puts them under `SCHED_BATCH` at their own nice level, `N`
/// (1–19) at nice N. A refusal is said and changes nothing else.
pub fn background_thread(what: &str, nice: i32) -> Background {
    let nice = match std::env::var("SIPMETER_MEDIA_BATCH")
        .as_deref()
        .map(str::trim)
    {
        Ok("0" | "off") => return Background(None),
        Ok("") | Err(_) => nice,
        Ok("on") => 0,
        Ok(v) => match v.parse::<i32>() {
            Ok(n) if (1..=19).contains(&n) => n,
            _ => {
                eprintln!("sipmeter: SIPMETER_MEDIA_BATCH={v}: want 0, on or a nice level 1–19");
                nice
            }
        },
    };
    match slice::set_batch(nice) {
        Ok(saved) => Background(Some(saved)),
        Err(e) => {
            eprintln!("sipmeter: {what}: SCHED_BATCH refused ({e}); normal scheduling");
            Background(None)
        }
    }
}

/// The nice level [`background_thread`] gives the collector and the progress printer.
pub const BACKGROUND_NICE: i32 = 10;

/// The calling thread's scheduling before [`background_thread`], put back on drop (on the
/// same thread: drop it where it was made).
#[derive(Debug)]
#[must_use = "the thread is put back as it was when this is dropped"]
pub struct Background(Option<slice::Saved>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(saved) = self.0.take() {
            let _ = slice::restore(saved);
        }
    }
}

/// Shard `index` of `shards` runs its media on the grid shifted by `index / shards` of a
/// step: the shards' passes interleave instead of all falling due on the same instants.
/// When the scheduler puts two shards on one CPU (it does, for a few ms at a time), the
/// second one's pass no longer waits behind the whole first one at every grid point
/// (docs/notes-rtpp99.md). Call on the shard's thread before any media starts.
pub fn set_grid_phase(index: usize, shards: usize) {
    let step = MEDIA_GRID.as_nanos() as u64;
    let shards = shards.max(1) as u64;
    let phase = Duration::from_nanos(step * (index as u64 % shards) / shards);
    GRID_PHASE.set(phase);
}

/// `at` rounded up to the media grid (≤ [`MEDIA_GRID`] later).
pub fn on_grid(at: Instant) -> Instant {
    let origin = grid_origin();
    let q = MEDIA_GRID.as_nanos();
    let since = at.saturating_duration_since(origin).as_nanos();
    origin + Duration::from_nanos(u64::try_from(since.div_ceil(q) * q).unwrap_or(u64::MAX))
}

/// Grid points per 20 ms (the usual packet time): the slots a thread's calls are spread
/// over ([`SlotLoad`]).
const SLOTS: usize = 20;

/// The slot of grid point `at` (its index on the grid, modulo [`SLOTS`]).
fn slot_of(at: Instant) -> usize {
    let step = at.saturating_duration_since(grid_origin()).as_nanos() / MEDIA_GRID.as_nanos();
    (step % SLOTS as u128) as usize
}

/// How many running calls of this thread (a shard is one thread) send on each slot of the
/// grid. A call starts its schedule on the least loaded slot of the next [`SLOTS`] grid
/// points, so each of the shard's wake-ups carries about the same number of packets:
/// calls that are set up at a steady rate (a ramp of 500/s: one every 2 ms) would
/// otherwise share a few slots and their wake-ups would carry several times the mean
/// (the last packet of a pass leaves as late as the pass is long).
#[derive(Debug, Default)]
pub(crate) struct SlotLoad([u32; SLOTS]);

thread_local! {
    static SLOT_LOAD: std::cell::RefCell<SlotLoad> = std::cell::RefCell::default();
}

impl SlotLoad {
    /// The first grid point at or after `now` on the least loaded slot (the earliest of
    /// equals), counted as taken.
    pub(crate) fn take(now: Instant) -> (Instant, usize) {
        let base = on_grid(now);
        let first = slot_of(base);
        SLOT_LOAD.with_borrow_mut(|load| {
            let k = (0..SLOTS)
                .min_by_key(|k| (load.0[(first + k) % SLOTS], *k))
                .unwrap_or(0);
            let slot = (first + k) % SLOTS;
            load.0[slot] += 1;
            (base + MEDIA_GRID * k as u32, slot)
        })
    }

    /// A call of `slot` ended.
    pub(crate) fn give_back(slot: usize) {
        SLOT_LOAD.with_borrow_mut(|load| {
            if let Some(n) = load.0.get_mut(slot) {
                *n = n.saturating_sub(1);
            }
        });
    }

    /// The first grid point at or after `now` on `slot`.
    fn next_in(now: Instant, slot: usize) -> Instant {
        let base = on_grid(now);
        let k = (slot + SLOTS - slot_of(base)) % SLOTS;
        base + MEDIA_GRID * k as u32
    }
}

/// How many readiness events one poll of the set hands back.
const EVENTS_PER_POLL: usize = 256;

/// A shard's media sockets in one epoll set (`mio::Poll`, edge-triggered). The set is *not*
/// registered with tokio's reactor: a datagram does not wake the shard. The shard reads the
/// set on its own schedule instead, on every pass of its loop (and the pacing of its calls'
/// senders makes a pass at least every few hundred µs under load, see [`MediaPacer`]);
/// arrival times are the kernel's ([`crate::rxstamp`]), so reading later changes no figure.
/// [`Self::poll_ready`] names the sockets that became readable, and each is read until it
/// would block ([`CallMedia::receive`]). A socket leaves the set when it is closed (the
/// call's [`CallMedia`] is dropped).
pub struct MediaDriver {
    poll: Poll,
    events: Events,
    ready: Vec<MediaToken>,
    /// The receive buffers of the shard ([`crate::rxstamp::BATCH`] datagrams of 2 KB: RTP
    /// over UDP fits; a longer datagram is truncated and then counted as malformed by the
    /// session).
    pub batch: RecvBatch,
    /// Datagrams read.
    pub received: u64,
    /// Per-second samples taken.
    pub samples: u64,
    /// The calls of the current media pass (reused: no allocation per pass).
    pub due: Vec<usize>,
}

impl std::fmt::Debug for MediaDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaDriver")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl MediaDriver {
    /// A new, empty set.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_PER_POLL),
            ready: Vec::with_capacity(EVENTS_PER_POLL),
            batch: RecvBatch::default(),
            received: 0,
            samples: 0,
            due: Vec::new(),
        })
    }

    /// Asks the set which sockets became readable (never blocks) and returns how many;
    /// [`Self::token`] names them. Call again while it returns a full batch
    /// ([`Self::batch_full`]).
    pub fn poll_ready(&mut self) -> usize {
        self.wait_ready(Duration::ZERO)
    }

    /// [`Self::poll_ready`], waiting up to `timeout` for a first readable socket (blocks the
    /// thread: not for the shard loop).
    pub fn wait_ready(&mut self, timeout: Duration) -> usize {
        // An error (EINTR) reads as "nothing ready"; the next pass retries.
        if self.poll.poll(&mut self.events, Some(timeout)).is_err() {
            self.events.clear();
        }
        self.ready.clear();
        self.ready
            .extend(self.events.iter().map(|e| MediaToken::unpack(e.token())));
        self.ready.len()
    }

    /// Adds a socket to the set (readable, edge-triggered) under `token`; it leaves the set
    /// when it is closed.
    pub fn register(&self, sock: &mut MioUdpSocket, token: MediaToken) -> io::Result<()> {
        self.poll
            .registry()
            .register(sock, token.pack(), Interest::READABLE)
    }

    /// Reports `sock` readable again at the next [`Self::poll_ready`] if datagrams still wait
    /// on it (epoll re-checks a socket when its interest is modified): the set is
    /// edge-triggered, so a socket left unread after [`BATCHES_PER_PASS`] would otherwise
    /// not be reported until its next datagram. An error leaves it to that datagram.
    pub fn rearm(&self, sock: &mut MioUdpSocket, token: MediaToken) {
        let _ = self
            .poll
            .registry()
            .reregister(sock, token.pack(), Interest::READABLE);
    }

    /// Takes a socket out of the set (the RTP socket after its call's gathering). An error
    /// leaves it in: its datagrams are then read early, which changes no figure.
    pub fn deregister(&self, sock: &mut MioUdpSocket) {
        let _ = self.poll.registry().deregister(sock);
    }

    /// The `i`-th readable socket of the last [`Self::poll_ready`].
    pub fn token(&self, i: usize) -> Option<MediaToken> {
        self.ready.get(i).copied()
    }

    /// True when the last [`Self::poll_ready`] may have left events behind.
    pub fn batch_full(n: usize) -> bool {
        n == EVENTS_PER_POLL
    }
}

/// The set's own descriptor: readable while a socket in the set is (a loop that must react
/// to arrivals, the built-in registrar's echo, waits on it through tokio's reactor).
impl std::os::fd::AsRawFd for MediaDriver {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.poll.as_raw_fd()
    }
}

/// The most `recvmmsg` batches read from one socket in one pass (64 datagrams at
/// [`crate::rxstamp::BATCH`] = 4; a call's 50 packets a second need one). A peer sending
/// faster than the loop reads is left for the next pass, its socket re-armed
/// ([`MediaDriver::rearm`]), so one flooding socket cannot hold the loop away from the other
/// calls, the timers and the SIP.
pub const BATCHES_PER_PASS: usize = 16;

/// One `recvmmsg` of up to [`crate::rxstamp::BATCH`] datagrams from a media socket
/// ([`crate::rxstamp::recv_batch`]): `Some(k)` datagrams read (fewer than the batch: the
/// socket is drained), `None` when nothing more waits. An ICMP port unreachable from an
/// earlier send (the peer is not there yet or any more) and an interrupted call are read
/// past; any other error ends the read (an edge-triggered set reports the socket again).
pub fn read_batch(sock: &impl std::os::fd::AsRawFd, batch: &mut RecvBatch) -> Option<usize> {
    loop {
        match crate::rxstamp::recv_batch(sock, batch) {
            Ok(k) => return Some(k),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
    }
}

/// A precise wake-up for the shard loop. Tokio's timers tick in whole milliseconds (a sleep
/// ends at the first tick after its deadline), which alone makes paced RTP leave 0–1 ms
/// late. This is a `timerfd` in the shard's own tokio reactor: the shard's thread wakes at
/// the earliest deadline, rounded up to [`PreciseTimer::QUANTUM`] so that deadlines close
/// together share one wake-up (no helper thread, no hand-off). While deadlines are dense
/// (the next one within [`PreciseTimer::DENSE`]) the timer ticks on every quantum instead
/// of being set again after each wake-up: setting it costs more than a tick that finds
/// nothing due (a timer reprogramming per call, ≈ 4 % of a loaded shard).
#[derive(Debug)]
pub struct PreciseTimer {
    fd: AsyncFd<std::fs::File>,
    /// The one-shot deadline the timer is set to, as last set here.
    armed: Option<Instant>,
    /// Ticking on every quantum.
    periodic: bool,
    /// While ticking: the deadline asked for (ticks before it are not a wake-up).
    target: Instant,
}

impl PreciseTimer {
    /// Deadlines are rounded up to the media grid (at most 1,000 wake-ups a second); media
    /// deadlines are on it already ([`MEDIA_GRID`]).
    pub const QUANTUM: Duration = MEDIA_GRID;
    /// A deadline this close counts as dense: tick on every quantum.
    pub const DENSE: Duration = Duration::from_millis(2);

    /// A disarmed timer. Must be called inside a tokio runtime with I/O enabled; `_name`
    /// is kept for callers that named the former timer thread.
    pub fn new(_name: String) -> io::Result<Self> {
        let fd = std::fs::File::from(timerfd::create()?);
        // `with_interest` is deprecated for types whose descriptor could be closed behind the
        // reactor's back; the `File` owns the timer's descriptor and closes it only when
        // dropped, after the `AsyncFd` has deregistered it. The replacement
        // (`register_with_interest`) is `unsafe` for the same promise.
        #[allow(deprecated)] // reason: sound for an owned descriptor (see above)
        let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(Self {
            fd,
            armed: None,
            periodic: false,
            target: Instant::now(),
        })
    }

    /// Wakes the shard at `at` (rounded up to the quantum) unless an earlier wake-up is set.
    pub fn arm(&mut self, at: Instant) {
        let at = on_grid(at);
        let now = Instant::now();
        let dense = at.saturating_duration_since(now) <= Self::DENSE;
        if self.periodic && dense {
            // A tick (on the quantum grid, like `at`) comes at `at`.
            self.target = at;
            return;
        }
        if !self.periodic && self.armed.is_some_and(|a| a <= at && a > now) {
            // The timer fires earlier anyway; the shard then arms the next deadline.
            return;
        }
        let every = if dense { Self::QUANTUM } else { Duration::ZERO };
        // An error (none is expected for a valid descriptor) leaves the tokio sleep of the
        // shard loop as the wake-up.
        if timerfd::set(self.fd.get_ref(), at.saturating_duration_since(now), every).is_ok() {
            self.periodic = dense;
            self.armed = (!dense).then_some(at);
            self.target = at;
        }
    }

    /// Resolves when an armed deadline has passed.
    pub async fn fired(&self) {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            let mut count = [0u8; 8];
            // Would block (a spurious readiness): readiness cleared, wait again. Read (the
            // expiry count) or failed: the wake-up is due, unless the timer ticks and this
            // tick came before the deadline asked for.
            if guard
                .try_io(|f| std::io::Read::read(&mut f.get_ref(), &mut count))
                .is_ok()
                && (!self.periodic || Instant::now() >= self.target)
            {
                return;
            }
        }
    }

    /// [`PreciseTimer::fired`] of a timer the shard may not have (no media in the run):
    /// without one, never resolves.
    pub async fn fired_if(timer: Option<&Self>) {
        match timer {
            Some(t) => t.fired().await,
            None => std::future::pending().await,
        }
    }
}

/// The packets timed since the last look (the loop probe's timeline, per turn).
#[derive(Debug, Clone, Copy)]
pub struct RecentTiming {
    /// The earliest one, µs (`u64::MAX`: none).
    pub min_us: u64,
    /// The latest one, µs.
    pub max_us: u64,
    /// Those that left more than 1 ms late.
    pub over_1ms: u64,
}

impl Default for RecentTiming {
    fn default() -> Self {
        Self {
            min_us: u64::MAX,
            max_us: 0,
            over_1ms: 0,
        }
    }
}

/// How late RTP packets left against their schedule (the send time the session's pacing
/// asked for): a histogram in 10 µs steps up to 10 ms, then 1 ms steps up to 1 s.
#[derive(Debug, Clone)]
pub struct SendTiming {
    fine: Box<[u64; 1000]>,
    coarse: Box<[u64; 991]>,
    /// Packets measured.
    pub count: u64,
    /// The latest one, µs.
    pub max_us: u64,
    /// The earliest and the latest one, and those over 1 ms, since
    /// [`SendTiming::take_recent`] (for the loop probe's timeline; not merged).
    recent: RecentTiming,
}

impl Default for SendTiming {
    fn default() -> Self {
        Self {
            fine: Box::new([0; 1000]),
            coarse: Box::new([0; 991]),
            count: 0,
            max_us: 0,
            recent: RecentTiming::default(),
        }
    }
}

impl SendTiming {
    /// One packet that left `late` after its scheduled time.
    pub fn record(&mut self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        self.count += 1;
        self.max_us = self.max_us.max(us);
        self.recent.min_us = self.recent.min_us.min(us);
        self.recent.max_us = self.recent.max_us.max(us);
        self.recent.over_1ms += u64::from(us > 1000);
        if us < 10_000 {
            self.fine[(us / 10) as usize] += 1;
        } else {
            self.coarse[((us / 1000) as usize).min(1000) - 10] += 1;
        }
    }

    /// The earliest and latest packet and the packets over 1 ms late since the last call.
    pub fn take_recent(&mut self) -> RecentTiming {
        std::mem::take(&mut self.recent)
    }

    /// Adds another histogram (another shard's).
    pub fn merge(&mut self, other: &SendTiming) {
        for (a, b) in self.fine.iter_mut().zip(other.fine.iter()) {
            *a += b;
        }
        for (a, b) in self.coarse.iter_mut().zip(other.coarse.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `p`-th percentile in ms (the upper edge of its bucket, capped by the maximum);
    /// `None` before any packet.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        let upper = self
            .fine
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, (i as u64 + 1) * 10))
            .chain(
                self.coarse
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (*n, (i as u64 + 11) * 1000)),
            )
            .find_map(|(n, upper_us)| {
                seen += n;
                (seen >= rank).then_some(upper_us)
            })
            .unwrap_or(self.max_us);
        Some(upper.min(self.max_us) as f64 / 1000.0)
    }
}

/// Per-call media: sockets (registered with the shard's [`MediaDriver`]) and the session once
/// negotiated.
#[derive(Debug)]
pub struct CallMedia {
    local: LocalMedia,
    rtp: MioUdpSocket,
    rtcp: MioUdpSocket,
    session: Option<MediaSession>,
    negotiated: Option<Negotiated>,
    next_sample: Option<Instant>,
    generation: u64,
    source: SourceKind,
    /// Watch sound in the call's received audio ([`MediaPlan::sound`]).
    sound: Option<SoundConfig>,
    /// Watch tones in the call's received audio ([`MediaPlan::tones`]).
    tones: Option<Arc<ToneListen>>,
    /// The datagram being sent (one buffer for all of the call's packets).
    out: Vec<u8>,
    /// Datagrams the socket refused (buffer full): counted, never retried.
    pub send_errors: u64,
    /// The source the call's RTP is taken from (see [`CallMedia::takes_rtp_from`]).
    rtp_source: Option<SocketAddr>,
    /// The source RTP was taken from before the peer's last move: its leftovers may still
    /// be latched, until the new stream's first packet ([`CallMedia::takes_rtp_from`]).
    moved_from: Option<SocketAddr>,
    /// The peer's description names `c=0.0.0.0`: neither RTP nor RTCP is sent to it (RFC
    /// 3264 §8.4).
    parked: bool,
    /// RTP datagrams from any other source: counted, not measured.
    pub stray: u64,
    /// The DSCPs of the datagrams received on the call's sockets, one bit per codepoint
    /// (bit `d` for DSCP `d`).
    pub rx_dscp: u64,
    /// When the RTP socket is read next ([`CallMedia::read_due`]): every packet time, on
    /// the call's send schedule (the same grid points: no wake-up of its own while sending).
    next_read: Option<Instant>,
    /// The grid slot the call sends on, once its media started ([`SlotLoad`]).
    slot: Option<usize>,
    /// The far end's RTP address the session's gap watch waits on ([`Self::watch_far_end`]).
    watched: Option<SocketAddr>,
    /// The media started before the call was answered ([`Self::early`]).
    early: bool,
    /// When the first RTP packet came while [`Self::early`]: early media (RFC 3960).
    early_rtp: Option<Instant>,
    /// DTLS datagrams that arrived before the session started (the answerer, DTLS client
    /// by RFC 5763 §5, sends its ClientHello with its 200 OK, before our session exists):
    /// handed to the session when it starts, not drained (a lost ClientHello costs the 1 s
    /// retransmission timer).
    held_dtls: Vec<(Instant, Vec<u8>)>,
    /// The plan's `rtcp_xr`.
    rtcp_xr: bool,
    /// The plan's `rtcp_interval`.
    rtcp_interval: Duration,
    /// The call's ICE (`ice = true`; boxed: most calls have none).
    ice: Option<Box<IceCall>>,
}

/// One call's ICE: our credentials and host candidates from the bind, the agent once the
/// peer's description is known (or the fallback when it has no ICE), and what the driver
/// holds for it.
#[derive(Debug)]
struct IceCall {
    creds: Credentials,
    host: Vec<(u8, SocketAddr)>,
    /// Our server-reflexive candidate (component 1), gathered from `stun_server`.
    srflx: Vec<(u8, SocketAddr, SocketAddr)>,
    /// Our relayed candidate (component 1): the allocation's relayed and mapped addresses.
    relay: Vec<(u8, SocketAddr, SocketAddr)>,
    /// `ice_policy = "relay"`.
    relay_only: bool,
    /// The TURN allocation (`turn_server`), on the RTP socket.
    turn: Option<TurnClient>,
    /// Why the allocation failed, if it did.
    turn_error: Option<String>,
    /// The STUN Binding and TURN Allocate in flight: the offer or answer waits for them
    /// ([`CallMedia::gathering`]); the RTP socket is in the shard's media set meanwhile.
    gathering: Option<Gathering>,
    /// How long the gathering took, once it is over.
    gathered_in: Option<Duration>,
    agent: Option<IceAgent>,
    /// The peer's description has no ICE: plain media to its c=/m= address (RFC 8445 §5.1).
    fallback: bool,
    /// STUN datagrams that came before the session started: the agent takes them then
    /// (component 0: through the TURN allocation).
    held: Vec<(Instant, u8, SocketAddr, Vec<u8>)>,
    /// Our DTLS flights made before a pair was selected: sent to it once it is.
    held_dtls: Vec<Vec<u8>>,
    /// The agent has output (it took a datagram): the driver flushes at this instant.
    wake: Option<Instant>,
    /// Trace lines for the engine ([`CallMedia::take_ice_notes`]).
    notes: Vec<String>,
    /// Datagrams that looked like STUN (first byte 0–3) but were not readable.
    malformed: u64,
    /// RTP and RTCP packets the session made that were not sent: no pair selected (yet,
    /// or consent lost).
    not_sent: u64,
    /// The failure was handed to the engine ([`CallMedia::take_ice_failure`]).
    failure_taken: bool,
    /// The last selected pair of component 1: ours, the peer's, its type.
    selected: Option<(SocketAddr, SocketAddr, CandidateType)>,
    /// The type of our candidate in it.
    selected_local: Option<CandidateType>,
}

/// What a call's ICE did, for the endpoint's report.
#[derive(Debug, Clone, PartialEq)]
pub struct IceSummary {
    /// `connected`, `checking`, `failed`, `disconnected` (consent lost), `new`, or
    /// `fallback` (the peer has no ICE).
    pub state: &'static str,
    /// The agent's counters (zero in a fallback).
    pub stats: media::ice::IceStats,
    /// The last selected pair (component 1): ours, the peer's, the peer's candidate type.
    pub selected: Option<(SocketAddr, SocketAddr, CandidateType)>,
    /// The type of our candidate in it (`relay`: the media went through the TURN server).
    pub local_kind: Option<CandidateType>,
    /// The TURN allocation's relayed address, if one was made.
    pub relayed: Option<SocketAddr>,
    /// Why the TURN allocation failed (`TURN 401 Unauthorized: …`), if it did.
    pub turn_error: Option<String>,
    /// How long gathering the STUN and TURN candidates took (`None`: no servers).
    pub gathered_in: Option<Duration>,
    /// Unreadable STUN datagrams.
    pub malformed: u64,
    /// RTP and RTCP packets made but not sent: no pair selected (RFC 8445 §12.1).
    pub not_sent: u64,
}

impl IceSummary {
    /// Why the call has no media path, if its ICE failed: every pair failed (or none could
    /// form), consent was lost, or — `ended` with a call long enough to tell — it never
    /// connected.
    pub fn failure(&self, ended: Option<Duration>) -> Option<String> {
        let s = &self.stats;
        let failed = match self.state {
            "failed" => true,
            "checking" | "new" => ended.is_some(),
            _ => false,
        };
        if let (Some(e), true) = (&self.turn_error, failed) {
            // No relayed candidate: say why first, it is the likely cause.
            return Some(format!(
                "ICE failed: the TURN allocation failed ({e}), so no relayed candidate; {} \
                 checks sent, {} answered",
                s.checks_sent, s.responses_received
            ));
        }
        match self.state {
            "failed" if s.checks_sent == 0 => Some(
                "ICE failed: no candidate pair (the peer's a=candidate lines have none we can \
                 pair with: another address family, TCP or names only; the trace lists what \
                 was skipped)"
                    .to_string(),
            ),
            "failed" => Some(format!(
                "ICE failed: every candidate pair failed ({} checks sent, {} answered, {} \
                 received from the peer): no media path (RFC 8445 §8.1.2; check the peer's \
                 a=candidate addresses, NAT and firewalls; the trace lists each pair)",
                s.checks_sent, s.responses_received, s.checks_received
            )),
            "disconnected" => Some(
                "ICE consent lost: the peer stopped answering consent checks for 30 s (RFC \
                 7675 §5.1): media stopped"
                    .to_string(),
            ),
            "checking" | "new" => ended.map(|d| {
                format!(
                    "ICE did not connect in the call's {:.1} s ({} checks sent, {} answered, \
                     {} received from the peer): no media sent (check the peer's a=candidate \
                     addresses and that it answers STUN on them)",
                    d.as_secs_f64(),
                    s.checks_sent,
                    s.responses_received,
                    s.checks_received
                )
            }),
            _ => None,
        }
    }
}

/// Where a datagram of a component goes under ICE.
enum Route {
    /// To the selected pair's remote address.
    To(SocketAddr),
    /// To the selected pair's remote address, through our TURN allocation (our candidate
    /// in the pair is the relayed one).
    Relay(SocketAddr),
    /// Not yet (or no longer): held (our DTLS flights) or dropped.
    Hold,
    /// As without ICE: the peer has none, or the component has no candidates (RTCP of a
    /// peer that refused rtcp-mux to our one-component offer).
    Default,
}

impl IceCall {
    fn route(&self, component: u8) -> Route {
        let Some(agent) = self.agent.as_ref() else {
            return if self.fallback {
                Route::Default
            } else {
                Route::Hold
            };
        };
        if !self.host.iter().any(|(c, _)| *c == component) {
            return Route::Default;
        }
        match (agent.selected(component), agent.selected_local(component)) {
            (Some((to, _)), Some((_, CandidateType::Relayed))) => Route::Relay(to),
            (Some((to, _)), _) => Route::To(to),
            (None, _) => Route::Hold,
        }
    }

    /// The agent's configuration: our candidates, and the role.
    fn config(&self, controlling: bool, seed: u64) -> IceConfig {
        let mut cfg = IceConfig::new(self.creds.clone(), self.host.clone(), controlling, seed);
        cfg.srflx = self.srflx.clone();
        cfg.relay = self.relay.clone();
        cfg.relay_only = self.relay_only;
        cfg
    }

    /// Sends `bytes` to `to` through the TURN allocation (ChannelData once the channel to
    /// `to` is bound, a Send indication before).
    fn send_relayed(
        &mut self,
        rtp: &MioUdpSocket,
        bytes: &[u8],
        to: SocketAddr,
        send_errors: &mut u64,
    ) {
        if let Some(turn) = self.turn.as_mut()
            && let Some(d) = turn.send(to, bytes)
        {
            send(rtp, &d, turn.server(), send_errors);
        }
    }

    /// The TURN client's timers, datagrams and events (trace lines).
    fn drive_turn(&mut self, now: Instant, rtp: &MioUdpSocket, send_errors: &mut u64) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        if turn.poll_timeout().is_some_and(|t| t <= now) {
            turn.handle_timeout(now);
        }
        while let Some(d) = turn.poll_transmit() {
            send(rtp, &d, turn.server(), send_errors);
        }
        while let Some(e) = turn.poll_event() {
            if self.notes.len() < 64 {
                self.notes.push(turn_note(&e));
            }
            if let TurnEvent::Failed(e) = e {
                self.turn_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    /// Takes what the gathering found: the srflx and relayed candidates (component 1,
    /// based on the RTP socket `base`), the allocation, and the trace lines; an srflx
    /// address equal to a host candidate is dropped (RFC 8445 §5.1.3) and traced.
    fn take_gathered(&mut self, g: Gathered, base: SocketAddr) {
        self.srflx = g.srflx.map(|a| (1, a, base)).into_iter().collect();
        self.relay = g.relay.map(|(r, m)| (1, r, m)).into_iter().collect();
        self.turn = g.turn;
        self.turn_error = g.turn_error;
        self.notes.extend(g.notes);
        self.gathered_in = Some(g.took);
        let (_, dropped) = media::ice::local_candidates(&self.config(true, 0));
        for a in dropped {
            self.notes.push(format!(
                "ICE: server-reflexive candidate {a} equals the host candidate: dropped \
                 (RFC 8445 §5.1.3)"
            ));
        }
    }

    fn checking(&self) -> bool {
        self.agent
            .as_ref()
            .is_some_and(|a| matches!(a.state(), IceState::New | IceState::Checking))
    }

    fn summary(&self) -> IceSummary {
        let (state, stats) = match (&self.agent, self.fallback) {
            (_, true) => ("fallback", Default::default()),
            (Some(a), _) => (a.state().name(), a.stats()),
            (None, _) => ("new", Default::default()),
        };
        IceSummary {
            state,
            stats,
            selected: self.selected,
            local_kind: self.selected_local,
            relayed: self.relay.first().map(|r| r.1),
            turn_error: self.turn_error.clone(),
            gathered_in: self.gathered_in,
            malformed: self.malformed,
            not_sent: self.not_sent,
        }
    }

    /// Runs the agent's timers due by `now`, sends its datagrams and turns its events into
    /// trace lines.
    fn drive(
        &mut self,
        now: Instant,
        rtp: &MioUdpSocket,
        rtcp: &MioUdpSocket,
        send_errors: &mut u64,
    ) {
        self.wake = None;
        self.drive_turn(now, rtp, send_errors);
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        if agent.poll_timeout().is_some_and(|t| t <= now) {
            agent.handle_timeout(now);
        }
        let relayed = self.relay.first().map(|r| r.1);
        while let Some(t) = agent.poll_transmit() {
            if Some(t.local) == relayed {
                if let Some(d) = self.turn.as_mut().and_then(|c| c.send(t.to, &t.bytes)) {
                    send(
                        rtp,
                        &d,
                        self.turn.as_ref().map_or(t.to, TurnClient::server),
                        send_errors,
                    );
                }
                continue;
            }
            let sock = if t.component == 2 { rtcp } else { rtp };
            send(sock, &t.bytes, t.to, send_errors);
        }
        while let Some(e) = agent.poll_event() {
            let note = match e {
                IceEvent::State(s) => {
                    let st = agent.stats();
                    match s {
                        IceState::Connected => format!(
                            "ICE connected after {} ms ({} checks sent, {} received)",
                            st.connected_after.map_or(0, |d| d.as_millis()),
                            st.checks_sent,
                            st.checks_received
                        ),
                        IceState::Failed => format!(
                            "ICE failed: every candidate pair failed ({} checks sent, {} \
                             answered, {} received): no media path to the peer's candidates \
                             (RFC 8445 §8.1.2; check its a=candidate addresses, NAT, firewalls)",
                            st.checks_sent, st.responses_received, st.checks_received
                        ),
                        IceState::Disconnected => "ICE consent lost: no answer to consent \
                             checks for 30 s (RFC 7675 §5.1): media stopped"
                            .to_string(),
                        other => format!("ICE {}", other.name()),
                    }
                }
                IceEvent::Selected {
                    component,
                    local,
                    local_kind,
                    remote,
                    remote_kind,
                } => {
                    if component == 1 {
                        self.selected = Some((local, remote, remote_kind));
                        self.selected_local = Some(local_kind);
                    }
                    if local_kind == CandidateType::Relayed
                        && let Some(turn) = self.turn.as_mut()
                    {
                        // RFC 8656 §12: the media of the selected pair goes in ChannelData.
                        turn.bind_channel(now, remote);
                    }
                    format!(
                        "ICE selected pair, component {component}: {local} ({}) -> {remote} \
                         ({})",
                        local_kind.name(),
                        remote_kind.name()
                    )
                }
                IceEvent::RoleSwitched { controlling } => format!(
                    "ICE role conflict (RFC 8445 §7.3.1.1): now {}",
                    if controlling {
                        "controlling"
                    } else {
                        "controlled"
                    }
                ),
                IceEvent::PairFailed { local, remote, why } => {
                    format!("ICE pair {local} -> {remote} failed: {why}")
                }
                IceEvent::Rejected { from, code } => {
                    format!("ICE check from {from} rejected with {code} (credentials)")
                }
            };
            if self.notes.len() < 64 {
                self.notes.push(note);
            }
        }
        // A channel bound for a pair just selected goes out now.
        self.drive_turn(now, rtp, send_errors);
    }
}

/// Sends the gathering's datagrams from the RTP socket; a server the socket cannot send
/// to (another address family, no route) is the gathering's to note.
fn send_gathering(rtp: &MioUdpSocket, g: &mut Gathering, now: Instant) {
    while let Some((d, to)) = g.poll_transmit() {
        match crate::rxstamp::send_to(rtp, &d, &socket2::SockAddr::from(to)) {
            Ok(_) => {}
            // An ICMP port unreachable from an earlier request: the server is not there;
            // its silence ends the gathering at the limit, as a lost datagram would.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => g.handle_send_error(now, to, &e),
        }
    }
}

/// Sends one datagram, counting what the socket refused.
fn send(sock: &MioUdpSocket, bytes: &[u8], to: SocketAddr, send_errors: &mut u64) {
    match crate::rxstamp::send_to(sock, bytes, &socket2::SockAddr::from(to)) {
        Ok(_) => {}
        // An ICMP port-unreachable from an earlier datagram (the peer closed its port,
        // e.g. before our final RTCP BYE): not a failure of the generator.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(_) => *send_errors += 1,
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            SlotLoad::give_back(slot);
        }
    }
}

impl CallMedia {
    /// Binds the call's port pair and adds the RTCP socket to the shard's media set. With
    /// ICE servers (`stun_server`, `turn_server`) the call's gathering starts: with `defer`
    /// its requests are sent and the call is [`Self::gathering`] until
    /// [`Self::drive_gathering`] says it is over (the RTP socket is in the set meanwhile, so
    /// the servers' answers are read by [`Self::receive`]); without, the gathering is done
    /// here, waiting for the servers (at most [`crate::gather::GATHER_LIMIT`]: the thread
    /// waits with it).
    #[allow(clippy::too_many_arguments)] // Each is a different part of the shard's state.
    pub fn bind(
        ip: IpAddr,
        ports: &mut PortAllocator,
        plan: &MediaPlan,
        session_id: u64,
        endpoint: usize,
        generation: u64,
        driver: &MediaDriver,
        defer: bool,
    ) -> io::Result<Self> {
        let (rtp, rtcp) = ports.bind_pair(ip)?;
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        if let Some(d) = plan.dscp {
            d.mark(&rtp, ip.is_ipv6())?;
            d.mark(&rtcp, ip.is_ipv6())?;
        }
        // Arrival times from the kernel: a busy shard must not show up as network jitter.
        crate::rxstamp::enable(&rtp)?;
        crate::rxstamp::enable(&rtcp)?;
        // The DSCP of what arrives: did the path keep the far end's marking?
        crate::rxstamp::enable_tos(&rtp, ip.is_ipv6())?;
        crate::rxstamp::enable_tos(&rtcp, ip.is_ipv6())?;
        let port = rtp.local_addr()?.port();
        let mut ice = if plan.ice {
            // One component with rtcp-mux (RFC 5761 §5.1.3 with ICE: RTCP on the RTP
            // candidate), else RTP and RTCP.
            let mut host = vec![(1, rtp.local_addr()?)];
            if !plan.rtcp_mux {
                host.push((2, rtcp.local_addr()?));
            }
            // The password keys the checks' integrity: from the system's CSPRNG, not the
            // run's seed.
            let creds = Credentials::generate(getrandom::fill).map_err(io::Error::other)?;
            let servers = &plan.ice_servers;
            let (gathering, g) = match (servers.any(), defer) {
                (false, _) => (None, None),
                (true, true) => (
                    Some(Gathering::new(servers, session_id, Instant::now())),
                    None,
                ),
                (true, false) => (None, Some(gather_blocking(&rtp, servers, session_id)?)),
            };
            let mut ice = Box::new(IceCall {
                creds,
                host,
                srflx: Vec::new(),
                relay: Vec::new(),
                relay_only: servers.relay_only,
                turn: None,
                turn_error: None,
                gathering,
                gathered_in: None,
                selected_local: None,
                agent: None,
                fallback: false,
                held: Vec::new(),
                held_dtls: Vec::new(),
                wake: None,
                notes: Vec::new(),
                malformed: 0,
                not_sent: 0,
                failure_taken: false,
                selected: None,
            });
            if let Some(g) = g {
                ice.take_gathered(g, rtp.local_addr()?);
            }
            Some(ice)
        } else {
            None
        };
        let mut rtp = MioUdpSocket::from_std(rtp);
        let mut rtcp = MioUdpSocket::from_std(rtcp);
        if let Some(g) = ice.as_deref_mut().and_then(|i| i.gathering.as_mut()) {
            // The servers' answers are read when the set reports the socket (not on the
            // media's read schedule: there is none yet); it leaves the set when the
            // gathering is over.
            driver.register(
                &mut rtp,
                MediaToken {
                    endpoint,
                    generation: (generation & 0x7fff_ffff) as u32,
                    rtcp: false,
                },
            )?;
            send_gathering(&rtp, g, Instant::now());
        }
        // Only RTCP (a datagram every few seconds) is in the set. The RTP socket is read on
        // the call's own schedule ([`Self::read_due`]): in the set, every datagram cost a
        // readiness callback at arrival (and at the sender's buffer release) and a report
        // through `epoll_wait`, ≈ 10 % of a loaded shard.
        driver.register(
            &mut rtcp,
            MediaToken {
                endpoint,
                generation: (generation & 0x7fff_ffff) as u32,
                rtcp: true,
            },
        )?;
        Ok(Self {
            local: plan.local(
                ip,
                port,
                session_id,
                plan.srtp.sdes(&plan.srtp_suites, plan.srtp_mki)?,
                (plan.srtp == SrtpMode::Dtls)
                    .then(dtls_identity)
                    .transpose()?,
            ),
            rtp,
            rtcp,
            session: None,
            negotiated: None,
            next_sample: None,
            generation,
            source: plan.source.clone(),
            sound: plan.sound,
            tones: plan.tones.clone(),
            out: Vec::with_capacity(256),
            send_errors: 0,
            rtp_source: None,
            moved_from: None,
            parked: false,
            stray: 0,
            rx_dscp: 0,
            next_read: None,
            slot: None,
            watched: None,
            early: false,
            early_rtp: None,
            held_dtls: Vec::new(),
            rtcp_xr: plan.rtcp_xr,
            rtcp_interval: plan.rtcp_interval,
            ice,
        })
    }

    /// Reads the datagrams waiting on the RTP (or RTCP) socket into the session, each
    /// stamped when the kernel received it ([`crate::rxstamp`]), up to
    /// [`crate::rxstamp::BATCH`] per system call and [`BATCHES_PER_PASS`] calls. Returns how
    /// many were read, and whether the cap was reached (more may wait: the caller re-arms
    /// the socket with [`CallMedia::rearm`]).
    pub fn receive(&mut self, rtcp: bool, batch: &mut RecvBatch) -> (u64, bool) {
        let mut n = 0;
        for _ in 0..BATCHES_PER_PASS {
            let sock = if rtcp { &self.rtcp } else { &self.rtp };
            let Some(k) = read_batch(sock, batch) else {
                return (n, false);
            };
            for i in 0..k {
                if let Some(tos) = batch.tos(i) {
                    self.rx_dscp |= 1 << (tos >> 2);
                }
                if let Some((bytes, at, from)) = batch.datagram(i) {
                    n += 1;
                    self.on_datagram(at, bytes, from, rtcp);
                }
            }
            // A short batch: the socket is drained (no call to learn it would block).
            if k < crate::rxstamp::BATCH {
                return (n, false);
            }
        }
        (n, true)
    }

    /// Has `driver` report the RTP (or RTCP) socket again if datagrams still wait on it
    /// ([`MediaDriver::rearm`]), after [`CallMedia::receive`] stopped at its cap.
    pub fn rearm(&mut self, rtcp: bool, driver: &MediaDriver, token: MediaToken) {
        driver.rearm(if rtcp { &mut self.rtcp } else { &mut self.rtp }, token);
    }

    /// Reads what waits on both sockets (one datagram per call, into a buffer on the stack:
    /// for the rare drains at a call's start, end and samples).
    fn drain(&mut self) {
        let mut buf = [0u8; 2048];
        self.receive_each(false, &mut buf);
        self.receive_each(true, &mut buf);
    }

    fn receive_each(&mut self, rtcp: bool, buf: &mut [u8]) -> u64 {
        let mut n = 0;
        loop {
            let sock = if rtcp { &self.rtcp } else { &self.rtp };
            match crate::rxstamp::recv(sock, buf) {
                Ok((len, at, from, tos)) => {
                    n += 1;
                    if let Some(tos) = tos {
                        self.rx_dscp |= 1 << (tos >> 2);
                    }
                    self.on_datagram(at, &buf[..len], from, rtcp);
                }
                // ICMP port unreachable from an earlier send: the peer is not there yet or
                // any more; keep reading.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: drained. Anything else: the set reports the socket again.
                Err(_) => return n,
            }
        }
    }

    /// Reads the RTP socket when its read is due (every packet time while the media runs,
    /// on the grid points of the call's sends): every datagram waiting goes into the
    /// session with its kernel arrival stamp, so reading on this schedule instead of at
    /// arrival changes no figure. Returns how many were read.
    pub fn read_due(&mut self, now: Instant, batch: &mut RecvBatch) -> u64 {
        let (Some(at), Some(n)) = (self.next_read, self.negotiated.as_ref()) else {
            return 0;
        };
        if at > now {
            return 0;
        }
        let mut ptime = Duration::from_millis(u64::from(n.ptime.max(1)));
        if self
            .session
            .as_ref()
            .is_some_and(MediaSession::dtls_handshaking)
            || self.ice.as_deref().is_some_and(IceCall::checking)
        {
            // The DTLS handshake's flights are read within a millisecond, not a packet time:
            // its time is the network's and the peer's, not our read schedule's.
            ptime = Duration::from_millis(1);
        }
        // The next read on the same grid line, after `now` (a late pass skips, not bursts).
        let behind = now.saturating_duration_since(at).as_nanos() / ptime.as_nanos();
        self.next_read = Some(at + ptime * (u32::try_from(behind).unwrap_or(u32::MAX - 1) + 1));
        self.receive(false, batch).0
    }

    /// Which call of the endpoint this is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Our SDP offer.
    pub fn offer(&self) -> Bytes {
        self.sdp(sdp::build_offer(&self.local))
    }

    /// Our description as sent: with `rtcp_xr`, the audio section says we send VoIP Metrics
    /// blocks and Receiver Reference Time blocks whenever we send no RTP (RFC 3611 §5.1:
    /// `a=rtcp-xr:rcvr-rtt=all voip-metrics`).
    fn sdp(&self, mut sd: SessionDescription) -> Bytes {
        if let Some(ice) = self.ice.as_deref().filter(|i| !i.fallback)
            && let Some(m) = sd
                .media
                .iter_mut()
                .find(|m| m.media == "audio" && m.port != 0)
        {
            let (candidates, _) = media::ice::local_candidates(&ice.config(true, 0));
            m.attributes
                .extend(media::ice::sdp::attributes(&ice.creds, &candidates));
        }
        if self.rtcp_xr
            && let Some(m) = sd
                .media
                .iter_mut()
                .find(|m| m.media == "audio" && m.port != 0)
        {
            m.attributes.push(sdp::Attribute {
                name: "rtcp-xr".to_string(),
                value: Some("rcvr-rtt=all voip-metrics".to_string()),
            });
        }
        Bytes::from(sd.to_string())
    }

    /// A new offer in the same session with another direction (hold: sendonly; resume:
    /// sendrecv), with the session version raised (RFC 3264 §8).
    pub fn reoffer(&mut self, now: Instant, direction: Direction) -> Bytes {
        self.local.session_version += 1;
        self.set_direction(now, direction);
        self.offer()
    }

    /// A new offer in the same session (RFC 3264 §8: the version raised, the direction
    /// kept); with `codecs`, this call offers (and accepts) only those from now on.
    pub fn new_offer(&mut self, codecs: Option<&[Codec]>) -> Bytes {
        if let Some(c) = codecs {
            self.local.codecs = c.to_vec();
        }
        self.local.session_version += 1;
        self.offer()
    }

    /// Answers the remote offer and starts the session; the answer goes in our 200 OK.
    pub fn answer(
        &mut self,
        offer: &[u8],
        ssrc: u32,
        cname: &str,
        seed: u64,
        now: Instant,
    ) -> Result<Bytes, String> {
        let sd = SessionDescription::parse(offer).map_err(|e| format!("bad SDP offer: {e}"))?;
        let (answer, n) = sdp::answer_offer(&sd, &self.local).map_err(|e| negotiation(&e))?;
        self.start(n, ssrc, cname, seed, now)?;
        // RFC 8445 §6.1.1: the answerer is controlled.
        self.start_ice(now, &sd, false, seed);
        Ok(self.sdp(answer))
    }

    /// Applies the remote answer to our offer and starts the session.
    pub fn apply_answer(
        &mut self,
        answer: &[u8],
        ssrc: u32,
        cname: &str,
        seed: u64,
        now: Instant,
    ) -> Result<(), String> {
        let sd = SessionDescription::parse(answer).map_err(|e| format!("bad SDP answer: {e}"))?;
        let n = sdp::apply_answer(&self.local, &sd).map_err(|e| negotiation(&e))?;
        self.start(n, ssrc, cname, seed, now)?;
        // RFC 8445 §6.1.1: the offerer controls.
        self.start_ice(now, &sd, true, seed);
        Ok(())
    }

    /// Starts the call's ICE with the peer's description `sd` (`ice = true`): the agent
    /// checks its candidates, or, when it has no ICE, the fallback (RFC 8445 §5.1: media to
    /// its c=/m= address), traced either way.
    fn start_ice(&mut self, now: Instant, sd: &SessionDescription, controlling: bool, seed: u64) {
        let Some(ice) = self.ice.as_deref_mut() else {
            return;
        };
        let Some(m) = sd.media.iter().find(|m| m.media == "audio" && m.port != 0) else {
            return;
        };
        let remote = match media::ice::sdp::remote(sd, m) {
            Ok(Some(r)) => r,
            Ok(None) => {
                ice.fallback = true;
                ice.notes.push(
                    "the peer's SDP has no ICE (no a=ice-ufrag/a=ice-pwd): no checks, media \
                     to its c=/m= address (RFC 8445 §5.1)"
                        .into(),
                );
                return;
            }
            Err(e) => {
                ice.fallback = true;
                ice.notes.push(format!(
                    "the peer's ICE is unusable ({e}): no checks, media to its c=/m= address"
                ));
                return;
            }
        };
        let (remote, skipped) = remote;
        for e in skipped.iter().take(8) {
            ice.notes.push(format!("ICE: {e}"));
        }
        ice.notes.push(format!(
            "ICE checks start ({}, {} remote candidates{})",
            if controlling || remote.lite {
                "controlling"
            } else {
                "controlled"
            },
            remote.candidates.len(),
            if remote.lite { ", ICE-lite peer" } else { "" }
        ));
        if let Some(turn) = ice.turn.as_mut() {
            // RFC 8656 §9: the peer's candidates may reach our relayed address (checks).
            for c in &remote.candidates {
                turn.create_permission(now, c.addr);
            }
        }
        let mut agent = IceAgent::new(ice.config(controlling, seed));
        agent.set_remote(now, remote);
        let relayed = ice.relay.first().map(|r| r.1);
        for (t, c, from, d) in ice.held.drain(..) {
            // Component 0: it came through the TURN allocation.
            let _ = match (c, relayed) {
                (0, Some(r)) => agent.handle_relayed(t.max(now), r, from, &d),
                _ => agent.handle_datagram(t.max(now), c, from, &d),
            };
        }
        ice.agent = Some(agent);
        ice.wake = Some(now);
    }

    /// A new description of the peer inside the call: the same ICE credentials keep the
    /// ICE session (RFC 8839 §4.4.1.1.2: a re-INVITE or hold does not restart it), new
    /// ones restart it (§4.4.1.1.1).
    fn follow_ice(&mut self, now: Instant, sd: &SessionDescription, m: &MediaDescription) {
        let Some(ice) = self.ice.as_deref_mut() else {
            return;
        };
        let Some(agent) = ice.agent.as_mut() else {
            return;
        };
        if let Ok(Some((remote, _))) = media::ice::sdp::remote(sd, m)
            && agent.remote_credentials() != Some(&remote.credentials)
        {
            ice.notes
                .push("the peer's ICE credentials changed: ICE restarts (RFC 8445 §9)".into());
            agent.set_remote(now, remote);
            ice.held_dtls.clear();
            ice.wake = Some(now);
        }
    }

    /// Trace lines about the call's ICE since the last call (state changes, the selected
    /// pair, failures, the fallback).
    pub fn take_ice_notes(&mut self) -> Vec<String> {
        self.ice
            .as_deref_mut()
            .map(|i| std::mem::take(&mut i.notes))
            .unwrap_or_default()
    }

    /// Why the call's ICE failed or lost consent, once, when it just did: the engine ends
    /// the call then (no media path; RFC 7675 §5.1: media must stop).
    pub fn take_ice_failure(&mut self) -> Option<String> {
        let ice = self.ice.as_deref_mut()?;
        if ice.failure_taken {
            return None;
        }
        let why = ice.summary().failure(None)?;
        ice.failure_taken = true;
        Some(why)
    }

    /// What the call's ICE did (`ice = true`).
    pub fn ice_summary(&self) -> Option<IceSummary> {
        self.ice.as_deref().map(IceCall::summary)
    }

    fn start(
        &mut self,
        n: Negotiated,
        ssrc: u32,
        cname: &str,
        seed: u64,
        now: Instant,
    ) -> Result<(), String> {
        // Datagrams that reached the sockets before the call's media started are not the
        // call's (the shard reads its sockets on its own schedule, so they may still wait).
        self.drain();
        let mut cfg = SessionConfig::from_negotiated(&n, ssrc, cname.to_owned(), seed);
        cfg.source.kind = self.source.clone();
        cfg.rtcp_xr = self.rtcp_xr;
        cfg.rtcp_interval = self.rtcp_interval;
        // The schedule starts on the media grid, on the least loaded slot of this shard
        // (0–19 ms after `now`, see [`SlotLoad`]); the first packet leaves then, paced and
        // measured like the others.
        let ptime = Duration::from_millis(u64::from(n.ptime.max(1)));
        let (at, slot) = match self.slot {
            // A second offer/answer of the same call (none today): it keeps its slot.
            Some(slot) => (SlotLoad::next_in(now, slot), slot),
            None => SlotLoad::take(now),
        };
        // Counted from here on: given back when the call's media is dropped.
        self.slot = Some(slot);
        let mut session = MediaSession::new(cfg, at).map_err(|e| e.to_string())?;
        if let Some(sound) = self.sound {
            session.watch_sound(sound);
        }
        if let Some(t) = &self.tones {
            session.watch_tones(&t.tones, t.inband_dtmf, t.sit);
        }
        for (t, d) in self.held_dtls.drain(..) {
            // Dropped as noise by the handshake if it is not this call's.
            let _ = session.handle_packet(t, &d);
        }
        self.session = Some(session);
        // RFC 3264 §8.4: nothing goes to c=0.0.0.0 (which Linux would route to this host).
        self.parked = n.remote_rtp.ip().is_unspecified();
        self.negotiated = Some(n);
        self.rtp_source = None;
        self.moved_from = None;
        self.next_sample = Some(at + Duration::from_secs(1));
        // A DTLS handshake's flights are read every millisecond from the start (`read_due`).
        let dtls = self
            .session
            .as_ref()
            .is_some_and(MediaSession::dtls_handshaking);
        self.next_read = Some(
            at + if dtls {
                Duration::from_millis(1)
            } else {
                ptime
            },
        );
        self.watch_far_end(at);
        Ok(())
    }

    /// Sends DTMF digits as RFC 4733 telephone-events (each `duration` long).
    pub fn send_dtmf(&mut self, digits: &str, duration: Duration) -> Result<(), String> {
        let s = self.session.as_mut().ok_or("no media session")?;
        s.send_dtmf(digits, duration).map_err(|e| e.to_string())
    }

    /// Follows a new offer of the remote inside the call (re-INVITE, UPDATE, PRACK), answered
    /// with `answer` (the user agent's, [`sip_proto::ua::UserAgent::local_sdp`]): our
    /// direction mirrors its direction (its sendonly → we stop sending; its sendrecv → we
    /// send again); a new address or port moves our RTP and RTCP there (RFC 3264 §8.3.1: an
    /// SBC or PBX re-anchoring the media, a transfer), taking RTP from the new source; the
    /// codec of the answer becomes ours (§8.3.2), and RTCP multiplexing stops when the offer
    /// no longer has it (RFC 5761 §5.1.3).
    pub fn follow_remote_offer(&mut self, now: Instant, offer: &[u8], answer: &[u8]) -> Followed {
        self.follow(now, offer, answer, false)
    }

    /// Follows the remote's answer to our offer `offer` inside the call: in its ACK (our
    /// offer was in our 2xx to its re-INVITE without one, RFC 3261 §14.2), or in its 2xx to
    /// our re-INVITE or UPDATE (hold, resume). As [`CallMedia::follow_remote_offer`], the
    /// direction being what we offered as far as the answer's mirror allows (RFC 3264 §6.1).
    pub fn follow_remote_answer(&mut self, now: Instant, answer: &[u8], offer: &[u8]) -> Followed {
        self.follow(now, answer, offer, true)
    }

    /// The new exchange of `remote` (the peer's SDP) and `ours` (ours); `remote_answers`:
    /// the peer's SDP is the answer.
    fn follow(
        &mut self,
        now: Instant,
        remote: &[u8],
        ours: &[u8],
        remote_answers: bool,
    ) -> Followed {
        let mut followed = Followed::default();
        let Ok(sd) = SessionDescription::parse(remote) else {
            return followed;
        };
        let Some(m) = sd.media.iter().find(|m| m.media == "audio") else {
            return followed;
        };
        self.follow_ice(now, &sd, m);
        let our_sd = SessionDescription::parse(ours).ok();
        let our_m = our_sd
            .as_ref()
            .and_then(|o| o.media.iter().find(|m| m.media == "audio"));
        let mut theirs = if m.port == 0 {
            Direction::Inactive
        } else {
            sd.direction_of(m)
        };
        // RFC 3264 §8.4: c=0.0.0.0 "means that neither RTP nor RTCP is to be sent to the
        // peer" (the RFC 2543 hold, often without a direction attribute), as in the first
        // offer/answer (`media::sdp`); the old address is kept for the resume.
        self.parked = m.port != 0 && sd.connection_of(m).is_some_and(|ip| ip.is_unspecified());
        if self.parked {
            theirs = theirs.intersect(Direction::SendOnly);
        }
        let direction = match (remote_answers, &our_sd, our_m) {
            (true, Some(o), Some(om)) => o.direction_of(om).intersect(theirs.mirror()),
            _ => theirs.mirror(),
        };
        if m.port != 0
            && let Some(n) = self.negotiated.as_ref()
        {
            let mut next = n.clone();
            let answer = if remote_answers { Some(m) } else { our_m };
            if let (Some(am), Some(om)) = (answer, our_m) {
                match self.renegotiated(&next, am, m, om) {
                    Some(codec) => next = codec,
                    None => followed.codec_missing = true,
                }
            }
            // RFC 5761 §5.1.3: an offer (or answer) without a=rtcp-mux ends the muxing.
            next.rtcp_mux = n.rtcp_mux && m.rtcp_mux && our_m.is_none_or(|o| o.rtcp_mux);
            // c=0.0.0.0 is the old way of holding (RFC 3264 §8.4), not a move.
            if let Some((rtp, rtcp)) = media::sdp::audio_addrs(&sd, next.rtcp_mux)
                && !rtp.ip().is_unspecified()
            {
                if rtp != n.remote_rtp
                    && self
                        .rtp
                        .local_addr()
                        .is_ok_and(|ours| ours.is_ipv4() != rtp.is_ipv4())
                {
                    // Our sockets are of one family: a move to the other one cannot be
                    // followed.
                    followed.unreachable = Some(rtp);
                    self.set_direction(now, direction);
                    return followed;
                }
                if rtp != n.remote_rtp {
                    self.moved_from = self.rtp_source.take();
                    followed.moved_to = Some(rtp);
                } else if rtcp != n.remote_rtcp {
                    followed.rtcp_to = Some(rtcp);
                }
                next.remote_rtp = rtp;
                next.remote_rtcp = rtcp;
            }
            if next.codec != n.codec {
                followed.codec = Some((n.codec.encoding_name(), next.codec.encoding_name()));
            }
            let changed = (next.codec, next.send_pt, next.recv_pt, next.ptime)
                != (n.codec, n.send_pt, n.recv_pt, n.ptime)
                || (next.send_event_pt, next.recv_event_pt) != (n.send_event_pt, n.recv_event_pt);
            if changed
                && let Some(s) = self.session.as_mut()
                && s.change_codec(now, &next).is_err()
            {
                // A codec this build cannot run (Opus without the feature): not taken.
                followed.codec = None;
                followed.codec_missing = true;
                next.codec = n.codec;
                (next.send_pt, next.recv_pt, next.ptime) = (n.send_pt, n.recv_pt, n.ptime);
                (next.send_event_pt, next.recv_event_pt) = (n.send_event_pt, n.recv_event_pt);
            }
            if let Some(om) = our_m {
                self.follow_keys(&mut next, om, m, &mut followed);
            }
            self.negotiated = Some(next);
        }
        self.set_direction(now, direction);
        followed
    }

    /// The SDES keys of an exchange inside the call, between our `om` and the peer's `m`
    /// (DTLS-SRTP's keys are its handshake's: not here). RFC 4568 §7.1.4: new keys (or
    /// another suite) are taken, the direction whose key changed starts anew; keys in a
    /// plain call start SRTP (the user agent answered an SRTP offer with keys only with
    /// `srtp = "optional"`); an exchange without keys in an SRTP call drops SRTP: followed
    /// with `"optional"` (plain RTP from now on), else (`"sdes"`: the peer's answer, as our
    /// user agent refused such an offer) not, and said so ([`Followed::srtp_refused`]).
    fn follow_keys(
        &mut self,
        next: &mut Negotiated,
        om: &MediaDescription,
        m: &MediaDescription,
        followed: &mut Followed,
    ) {
        let Some(sdes) = self.local.srtp.as_ref().filter(|_| next.dtls.is_none()) else {
            return;
        };
        let keyed = |m: &MediaDescription| m.attributes.iter().any(|a| a.name == "crypto");
        match (media::sdp::srtp_of_exchange(om, m), next.srtp.as_ref()) {
            (Some(p), old) if old != Some(&p) => {
                if let Some(s) = self.session.as_mut() {
                    s.rekey(Some(&p));
                }
                match old {
                    Some(_) => followed.rekeyed = Some(p.suite.name()),
                    None => followed.srtp_taken = Some(p.suite.name()),
                }
                next.srtp = Some(p);
            }
            (None, Some(old)) if !keyed(om) || !keyed(m) => {
                if sdes.required {
                    followed.srtp_refused = Some(old.suite.name());
                    return;
                }
                followed.srtp_dropped = Some(old.suite.name());
                if let Some(s) = self.session.as_mut() {
                    s.rekey(None);
                }
                next.srtp = None;
            }
            _ => {}
        }
    }

    /// Fresh SDES keys (every suite of the call's, from the system's CSPRNG, RFC 3711
    /// §8.1.1) as `a=crypto` lines, for the user agent to answer an SRTP offer inside the
    /// call with ([`sip_proto::ua::UserAgent::keep_srtp_keys`]): `Some` only for an
    /// `srtp = "optional"` call whose media is plain now.
    pub fn spare_keys(&self) -> Option<Bytes> {
        let sdes = self.local.srtp.as_ref().filter(|s| !s.required)?;
        let n = self.negotiated.as_ref()?;
        if n.srtp.is_some() || n.dtls.is_some() {
            return None;
        }
        let suites: Vec<Suite> = sdes.keys.iter().map(|(s, _)| *s).collect();
        let mki = sdes.keys.first().and_then(|(_, k)| k.mki());
        let fresh = Sdes::generate(false, &suites, getrandom::fill)
            .ok()?
            .with_mki(mki);
        Some(Bytes::from(fresh.crypto_lines()))
    }

    /// The codec an exchange settles on: the first of the answer `am` that we have (RFC
    /// 3264 §6.1), sent with the remote's (`rm`) payload type for it and received with ours
    /// (`om`), its telephone-event likewise, the remote's `a=ptime` (else ours). `None`
    /// when the answer names none of ours.
    fn renegotiated(
        &self,
        n: &Negotiated,
        am: &MediaDescription,
        rm: &MediaDescription,
        om: &MediaDescription,
    ) -> Option<Negotiated> {
        let pt_of = |m: &MediaDescription, c: Codec| {
            m.payload_types().find(|pt| Codec::of_pt(m, *pt) == Some(c))
        };
        let codec = am
            .payload_types()
            .filter_map(|pt| Codec::of_pt(am, pt))
            .find(|c| self.local.codecs.contains(c))?;
        let (send_pt, recv_pt) = (pt_of(rm, codec)?, pt_of(om, codec)?);
        let rate = codec.clock_rate();
        let event = |m: &MediaDescription| {
            m.payload_types().find(|pt| {
                m.rtpmap(*pt).is_some_and(|r| {
                    r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == rate
                })
            })
        };
        let events = self
            .local
            .telephone_event
            .then(|| event(rm).zip(event(om)))
            .flatten();
        Some(Negotiated {
            codec,
            send_pt,
            recv_pt,
            send_event_pt: events.map(|e| e.0),
            recv_event_pt: events.map(|e| e.1),
            clock_rate: rate,
            ptime: rm.ptime.unwrap_or(self.local.ptime),
            ..n.clone()
        })
    }

    /// Sets our direction (hold: sendonly; resume: sendrecv).
    pub fn set_direction(&mut self, now: Instant, direction: Direction) {
        self.local.direction = direction;
        if let Some(s) = self.session.as_mut() {
            // Sending resumes on the call's slot of the media grid (≤ 20 ms later).
            let at = self.slot.map_or(now, |slot| SlotLoad::next_in(now, slot));
            s.set_direction(at, direction);
        }
        self.watch_far_end(now);
    }

    /// Tells the session's gap watch (`media::gaps`) what the far end is to do from `now`:
    /// send nothing while it parks the call with `c=0.0.0.0` (RFC 3264 §8.4), and start
    /// anew when its address changed (a move, RFC 3264 §8.3.1: its first packet from there
    /// gets a wait of its own). Our own direction the session knows. Called after every
    /// change of direction, which every offer of the peer ends with.
    fn watch_far_end(&mut self, now: Instant) {
        let (Some(s), Some(n)) = (self.session.as_mut(), self.negotiated.as_ref()) else {
            return;
        };
        if self.watched.is_some_and(|a| a != n.remote_rtp) {
            s.far_end_moved(now);
        }
        self.watched = Some(n.remote_rtp);
        s.set_far_end_sends(now, !self.parked && !self.early);
    }

    /// Answers the callee's offer to our INVITE without SDP (a late offer, in its 2xx or a
    /// reliable 1xx) as [`Self::answer`] does, our answer going in the ACK or PRACK; marked
    /// [`Self::early`] until [`Self::answered`] (a 2xx's offer is answered next).
    pub fn answer_late_offer(
        &mut self,
        offer: &[u8],
        ssrc: u32,
        cname: &str,
        seed: u64,
        now: Instant,
    ) -> Result<Bytes, String> {
        let answer = self.answer(offer, ssrc, cname, seed, now);
        self.early(now);
        answer
    }

    /// The media started before the call was answered (the callee's offer in a reliable
    /// 1xx, RFC 3262 §5): until [`Self::answered`] the far end's silence is no audio gap,
    /// since early media is the callee's choice (RFC 3960 §3: ringback may be played
    /// locally).
    pub fn early(&mut self, now: Instant) {
        self.early = true;
        self.watch_far_end(now);
    }

    /// The call was answered at `now`: the far end is to send from then on.
    pub fn answered(&mut self, now: Instant) {
        if std::mem::take(&mut self.early) {
            self.watch_far_end(now);
        }
    }

    /// When the first RTP packet of early media came (before the answer, from a 18x's SDP on).
    pub fn early_rtp(&self) -> Option<Instant> {
        self.early_rtp
    }

    /// True once offer/answer completed and media flows.
    pub fn started(&self) -> bool {
        self.session.is_some()
    }

    /// True while media runs in a direction that receives (sendrecv or recvonly: the far
    /// end is to send us audio; not while we hold the call).
    pub fn receiving(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.config().direction.receives())
    }

    /// The DTMF digits received so far in this call as RFC 4733 events.
    pub fn dtmf_received(&self) -> &str {
        self.session
            .as_ref()
            .map_or("", MediaSession::dtmf_received)
    }

    /// When sound starts and stops in the call's received audio, if watched
    /// ([`MediaPlan::sound`]) and the media started.
    pub fn sound_mut(&mut self) -> Option<&mut SoundWatch> {
        self.session.as_mut().and_then(MediaSession::sound_mut)
    }

    /// Tones and in-band DTMF in the call's received audio, if watched
    /// ([`MediaPlan::tones`]) and the media started.
    pub fn tones_mut(&mut self) -> Option<&mut ToneWatch> {
        self.session.as_mut().and_then(MediaSession::tones_mut)
    }

    /// The negotiated codec's name (`PCMU` …).
    pub fn codec(&self) -> Option<&'static str> {
        self.negotiated.as_ref().map(|n| n.codec.encoding_name())
    }

    /// The SRTP suite negotiated (`AES_CM_128_HMAC_SHA1_80` …); `None`: plain RTP.
    pub fn srtp_suite(&self) -> Option<&'static str> {
        // DTLS-SRTP's keys are in the session's configuration once the handshake gave them.
        let s = self.session.as_ref()?;
        s.config().srtp.as_ref().map(|s| s.suite.name())
    }

    /// The call's ICE gathering is in progress: its offer or answer must wait (no trickle).
    pub fn gathering(&self) -> bool {
        self.ice.as_deref().is_some_and(|i| i.gathering.is_some())
    }

    /// The gathering is over (every server answered or failed) but not yet taken by
    /// [`Self::drive_gathering`].
    pub fn gathering_done(&self) -> bool {
        self.ice
            .as_deref()
            .and_then(|i| i.gathering.as_ref())
            .is_some_and(Gathering::is_done)
    }

    /// When [`Self::drive_gathering`] must run next (a STUN or TURN retransmission, the
    /// limit), while gathering.
    pub fn gathering_timeout(&self) -> Option<Instant> {
        self.ice.as_deref()?.gathering.as_ref()?.poll_timeout()
    }

    /// Runs the gathering's timers due by `now` and sends what they made; once it is over,
    /// takes the candidates (the offer and answer now carry them), takes the RTP socket out
    /// of `driver`'s set and returns how long the gathering took. `None` while it goes on.
    pub fn drive_gathering(&mut self, now: Instant, driver: &MediaDriver) -> Option<Duration> {
        let ice = self.ice.as_deref_mut()?;
        let g = ice.gathering.as_mut()?;
        if g.poll_timeout().is_some_and(|t| t <= now) {
            g.handle_timeout(now);
        }
        send_gathering(&self.rtp, g, now);
        if !g.is_done() {
            return None;
        }
        let g = ice.gathering.take()?.finish(now);
        driver.deregister(&mut self.rtp);
        let took = g.took;
        // The srflx candidate's base is the RTP socket, the host candidate of component 1.
        let base = ice.host.first().map(|h| h.1)?;
        ice.take_gathered(g, base);
        Some(took)
    }

    /// When [`Self::on_timeout`] (or [`Self::read_due`]) must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self.session.as_ref()?;
        let ice = self.ice.as_deref().and_then(|i| {
            let agent = i.agent.as_ref().and_then(IceAgent::poll_timeout);
            let turn = i.turn.as_ref().and_then(TurnClient::poll_timeout);
            [agent, turn, i.wake].into_iter().flatten().min()
        });
        [s.poll_timeout(), self.next_sample, self.next_read, ice]
            .into_iter()
            .flatten()
            .min()
    }

    /// A datagram arrived on one of the call's sockets from `from`.
    pub fn on_packet(&mut self, now: Instant, bytes: &[u8], from: Option<SocketAddr>) {
        self.on_datagram(now, bytes, from, false);
    }

    /// A datagram arrived on the RTP (or `rtcp`) socket from `from`: STUN goes to the
    /// call's ICE (RFC 7983: first byte 0–3; one branch for RTP), the rest to the session.
    fn on_datagram(&mut self, now: Instant, bytes: &[u8], from: Option<SocketAddr>, rtcp: bool) {
        // Gathering: the STUN and TURN servers' answers; anything else is dropped (the call
        // has no peer yet: our offer or answer has not gone).
        if let Some(ice) = self.ice.as_deref_mut()
            && let Some(g) = ice.gathering.as_mut()
        {
            // Not counted as stray: a server's late duplicate answer is no peer's RTP.
            if let (Some(from), false) = (from, rtcp)
                && g.handle_datagram(now, from, bytes)
            {
                send_gathering(&self.rtp, g, now);
            }
            return;
        }
        // From our TURN server on the RTP socket: unwrapped (a Data indication or
        // ChannelData), then taken as from the peer it came from.
        if let Some(ice) = self.ice.as_deref_mut()
            && !rtcp
            && let Some(turn) = ice.turn.as_mut()
            && from == Some(turn.server())
        {
            match turn.handle_datagram(now, bytes) {
                Ok(Some((peer, data))) if media::stun::is_stun(data) => {
                    let relayed = ice.relay.first().map(|r| r.1);
                    match (ice.agent.as_mut(), relayed) {
                        (Some(agent), Some(relayed)) => {
                            let read = agent.handle_relayed(now, relayed, peer, data);
                            ice.malformed += u64::from(read.is_err());
                        }
                        (None, Some(_)) if ice.held.len() < 16 => {
                            ice.held.push((now, 0, peer, data.to_vec()));
                        }
                        _ => {}
                    }
                }
                Ok(Some((peer, data))) => {
                    ice.wake.get_or_insert(now);
                    self.on_media(now, data, Some(peer));
                    return;
                }
                Ok(None) => {}
                Err(_) => ice.malformed += 1,
            }
            ice.wake.get_or_insert(now);
            return;
        }
        if let Some(ice) = self.ice.as_deref_mut()
            && media::stun::is_stun(bytes)
            && !ice.fallback
        {
            let (Some(from), c) = (from, if rtcp { 2 } else { 1 }) else {
                return;
            };
            match ice.agent.as_mut() {
                Some(agent) => {
                    if agent.handle_datagram(now, c, from, bytes).is_err() {
                        ice.malformed += 1;
                    }
                    ice.wake.get_or_insert(now);
                }
                None if ice.held.len() < 16 => ice.held.push((now, c, from, bytes.to_vec())),
                None => {}
            }
            return;
        }
        self.on_media(now, bytes, from);
    }

    /// A datagram that is not STUN: DTLS, RTP or RTCP for the session.
    fn on_media(&mut self, now: Instant, bytes: &[u8], from: Option<SocketAddr>) {
        if self.session.is_none() {
            if self.local.dtls.is_some() && media::dtls::is_dtls(bytes) && self.held_dtls.len() < 16
            {
                self.held_dtls.push((now, bytes.to_vec()));
            }
            return;
        }
        let rtp = !media::rtp::is_rtcp(bytes);
        if rtp && !self.takes_rtp_from(from) {
            self.stray += 1;
            return;
        }
        if rtp && self.early && self.early_rtp.is_none() {
            self.early_rtp = Some(now);
        }
        if let Some(s) = self.session.as_mut() {
            // Undecodable datagrams are counted by the session (summary.malformed).
            let _ = s.handle_packet(now, bytes);
        }
    }

    /// Strict RTP, as phones and SBCs latch: the call's RTP is taken from the address the
    /// remote SDP named, or, when its first RTP comes from elsewhere (a NAT), from that
    /// source; the SDP's address, once heard from, is kept. RTP from any other source (a
    /// stream still sent to a port this call now has) is stray: counted, not measured.
    /// After the peer moved its media, the old stream's leftovers (waiting in the socket or
    /// in flight) may latch again, but the first packet from any other source takes over.
    fn takes_rtp_from(&mut self, from: Option<SocketAddr>) -> bool {
        let (Some(from), Some(n)) = (from, self.negotiated.as_ref()) else {
            return true;
        };
        if self.rtp_source == Some(from) {
            return true;
        }
        let ice_remote = self
            .ice
            .as_deref()
            .and_then(|i| i.agent.as_ref())
            .and_then(|a| a.selected(1))
            .map(|s| s.0);
        if from == n.remote_rtp
            || ice_remote == Some(from)
            || self.rtp_source.is_none()
            || self.rtp_source == self.moved_from
        {
            self.rtp_source = Some(from);
            return true;
        }
        false
    }

    /// Sends what is due (recording each RTP packet's lateness in `timing`); returns the
    /// second's sample when one is due.
    pub fn on_timeout(&mut self, now: Instant, timing: &mut SendTiming) -> Option<Sample> {
        self.send_due(now, timing);
        self.sample_due(now)
    }

    /// Sends the RTP and RTCP packets due by `now` (recording each RTP packet's lateness in
    /// `timing`): the timed part of a media pass.
    pub fn send_due(&mut self, now: Instant, timing: &mut SendTiming) {
        self.flush(now, Some(timing));
    }

    /// The second's sample, when one is due by `now` (the sockets are drained first). A
    /// media pass takes it after every call's sends (see `pace_media` in the engine): the
    /// interval still ends at `now`, the pass's time.
    pub fn sample_due(&mut self, now: Instant) -> Option<Sample> {
        let due = self.next_sample.filter(|t| *t <= now)?;
        // What arrived before the second ended counts in it (the shard reads its sockets on
        // its own schedule, so some may still wait).
        self.drain();
        self.next_sample = Some(due + Duration::from_secs(1));
        self.session.as_mut().map(|s| s.sample(now))
    }

    fn flush(&mut self, now: Instant, mut timing: Option<&mut SendTiming>) {
        let (Some(s), Some(n)) = (self.session.as_mut(), self.negotiated.as_ref()) else {
            return;
        };
        let parked = self.parked;
        if let Some(ice) = self.ice.as_deref_mut() {
            ice.drive(now, &self.rtp, &self.rtcp, &mut self.send_errors);
            // Our DTLS flights made before the pair was selected go to it now.
            match ice.route(1) {
                Route::To(to) => {
                    for d in ice.held_dtls.drain(..) {
                        send(&self.rtp, &d, to, &mut self.send_errors);
                    }
                }
                Route::Relay(to) => {
                    for d in std::mem::take(&mut ice.held_dtls) {
                        ice.send_relayed(&self.rtp, &d, to, &mut self.send_errors);
                    }
                }
                Route::Hold | Route::Default => {}
            }
        }
        loop {
            // The send time the pacing asked for, if the next datagram is a paced RTP one.
            let due = s.rtp_due().filter(|t| *t <= now);
            let Some(kind) = s.poll_transmit_into(now, &mut self.out) else {
                break;
            };
            let (sock, mut to, component) = match kind {
                PacketKind::Rtp | PacketKind::Dtls => (&self.rtp, n.remote_rtp, 1),
                PacketKind::Rtcp if n.rtcp_mux => (&self.rtp, n.remote_rtcp, 1),
                PacketKind::Rtcp => (&self.rtcp, n.remote_rtcp, 2),
            };
            if let (Some(due), PacketKind::Rtp, Some(t)) = (due, kind, timing.as_deref_mut()) {
                t.record(Instant::now().saturating_duration_since(due));
            }
            if parked {
                // RFC 3264 §8.4: the peer named c=0.0.0.0: our RTCP is dropped unsent.
                continue;
            }
            if let Some(ice) = self.ice.as_deref_mut() {
                // RFC 8445 §12.1: media goes over the selected pair; none yet (or consent
                // lost, RFC 7675 §5.1): RTP and RTCP are dropped, our DTLS flights held.
                match ice.route(component) {
                    Route::To(a) => to = a,
                    Route::Relay(a) => {
                        ice.send_relayed(&self.rtp, &self.out, a, &mut self.send_errors);
                        continue;
                    }
                    Route::Default => {}
                    Route::Hold => {
                        if kind != PacketKind::Dtls {
                            ice.not_sent += 1;
                        } else if ice.held_dtls.len() < 16 {
                            ice.held_dtls.push(self.out.clone());
                        }
                        continue;
                    }
                }
            }
            send(sock, &self.out, to, &mut self.send_errors);
        }
    }

    /// Ends the call's media: sends RTCP BYE, closes the last interval and sums the call.
    pub fn finish(mut self, now: Instant) -> Option<(CallMediaSummary, Sample)> {
        // What already arrived counts (the shard reads its sockets on its own schedule).
        self.drain();
        if let Some(ice) = self.ice.as_deref_mut()
            && let Some(g) = ice.gathering.take()
        {
            // Ended while gathering (the run stopped, the caller cancelled): an allocation
            // already made is released like the call's.
            let g = g.finish(now);
            ice.turn = g.turn;
            if let Some(turn) = ice.turn.as_mut() {
                turn.close(now);
                ice.drive_turn(now, &self.rtp, &mut self.send_errors);
            }
        }
        let s = self.session.as_mut()?;
        s.stop(now);
        let last = s.sample(now);
        self.flush(now, None);
        if let Some(ice) = self.ice.as_deref_mut()
            && let Some(turn) = ice.turn.as_mut()
        {
            // RFC 8656 §8: the allocation is released (Refresh, LIFETIME 0), not left to
            // expire; its answer is not waited for.
            turn.close(now);
            ice.drive_turn(now, &self.rtp, &mut self.send_errors);
        }
        let summary = self.session.as_ref()?.summary();
        Some((summary, last))
    }
}

fn negotiation(e: &NegotiationError) -> String {
    format!("SDP negotiation failed: {e}")
}

/// What [`CallMedia::follow_remote_offer`] changed or could not follow.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Followed {
    /// The media moved: RTP now goes to (and is taken from) this address.
    pub moved_to: Option<SocketAddr>,
    /// The answer names none of our codecs, or one this build cannot run: the codec in
    /// use stays.
    pub codec_missing: bool,
    /// The codec changed: (from, to).
    pub codec: Option<(&'static str, &'static str)>,
    /// Only the RTCP address changed (a new `a=rtcp` port, or the end of RTCP muxing, RFC
    /// 5761 §5.1.3): RTCP now goes there.
    pub rtcp_to: Option<SocketAddr>,
    /// The offer moves the media to this address, of the other address family than our
    /// media socket's: not followed (nothing could be sent there).
    pub unreachable: Option<SocketAddr>,
    /// New SDES keys (or another suite) taken: the suite now in use.
    pub rekeyed: Option<&'static str>,
    /// The exchange dropped SRTP (`srtp = "optional"`): plain RTP from now on; the suite
    /// the call had.
    pub srtp_dropped: Option<&'static str>,
    /// The exchange brought SRTP into the plain call: the suite now in use.
    pub srtp_taken: Option<&'static str>,
    /// The peer's answer dropped SRTP, which the group requires (`srtp = "sdes"`): not
    /// followed (the suite kept); the call cannot go on as the group asks.
    pub srtp_refused: Option<&'static str>,
}

/// Parses a codec name from a test file (`PCMU`, `pcma`, `G711U` …).
pub fn codec_by_name(name: &str) -> Option<Codec> {
    match name.to_ascii_uppercase().as_str() {
        "PCMU" | "G711U" | "G.711U" | "ULAW" => Some(Codec::Pcmu),
        "PCMA" | "G711A" | "G.711A" | "ALAW" => Some(Codec::Pcma),
        "G722" | "G.722" => Some(Codec::G722),
        "OPUS" => Some(Codec::Opus),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_in_even_odd_pairs_from_the_range() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut system = PortAllocator::new(None, 0);
        let (rtp, rtcp) = system.bind_pair(ip).unwrap();
        let p = rtp.local_addr().unwrap().port();
        assert_eq!(p % 2, 0);
        assert_eq!(rtcp.local_addr().unwrap().port(), p + 1);
        // A range hands out successive pairs and skips ports in use.
        // A range that ends at the last port hands out its pairs without overflowing.
        let mut top = PortAllocator::new(Some((65530, 65535)), 7);
        for _ in 0..4 {
            if let Ok((rtp, rtcp)) = top.bind_pair(ip) {
                let p = rtp.local_addr().unwrap().port();
                assert!(p % 2 == 0 && rtcp.local_addr().unwrap().port() == p + 1);
            }
        }
        let base = p.saturating_sub(40) & !1;
        let mut ranged = PortAllocator::new(Some((base, base + 99)), 0);
        let a = ranged.bind_pair(ip).unwrap();
        let b = ranged.bind_pair(ip).unwrap();
        let (pa, pb) = (
            a.0.local_addr().unwrap().port(),
            b.0.local_addr().unwrap().port(),
        );
        assert!(pa >= base && pb <= base + 98 && pa != pb, "{pa} {pb}");
        assert_eq!((pa % 2, pb % 2), (0, 0));
    }

    #[test]
    fn send_timing_percentiles() {
        let mut t = SendTiming::default();
        assert_eq!(t.percentile_ms(99.0), None);
        // 98 packets 15 µs late, one 2.5 ms, one 40 ms.
        for _ in 0..98 {
            t.record(Duration::from_micros(15));
        }
        t.record(Duration::from_micros(2_500));
        t.record(Duration::from_millis(40));
        assert_eq!(t.count, 100);
        assert_eq!(t.percentile_ms(50.0), Some(0.02)); // upper edge of the 10–20 µs bucket
        assert_eq!(t.percentile_ms(98.0), Some(0.02));
        assert_eq!(t.percentile_ms(99.0), Some(2.51));
        assert_eq!(t.percentile_ms(100.0), Some(40.0));
        let mut other = SendTiming::default();
        other.record(Duration::from_secs(5)); // beyond the last bucket: counted there
        t.merge(&other);
        assert_eq!((t.count, t.max_us), (101, 5_000_000));
        assert_eq!(t.percentile_ms(100.0), Some(1001.0));
    }

    #[test]
    fn media_tokens_round_trip() {
        for (endpoint, generation, rtcp) in
            [(0, 0, false), (7, 3, true), (1 << 30, 0x7fff_ffff, true)]
        {
            let t = MediaToken {
                endpoint,
                generation,
                rtcp,
            };
            assert_eq!(MediaToken::unpack(t.pack()), t);
        }
        let t = MediaToken::unpack(
            MediaToken {
                endpoint: 1,
                generation: 5,
                rtcp: false,
            }
            .pack(),
        );
        assert!(t.is_for(5) && t.is_for(5 + (1 << 31)) && !t.is_for(6));
    }

    /// Two calls on loopback with the default plan: `a` offers, `b` answers, `a` applies the
    /// answer (its first RTP packet is then due).
    fn answered_pair(driver: &MediaDriver) -> (CallMedia, CallMedia) {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut ports = PortAllocator::new(None, 0);
        let plan = MediaPlan::default();
        let mut a = CallMedia::bind(ip, &mut ports, &plan, 1, 1, 1, driver, true).unwrap();
        let mut b = CallMedia::bind(ip, &mut ports, &plan, 2, 2, 1, driver, true).unwrap();
        let now = Instant::now();
        let answer = b.answer(&a.offer(), 0xb, "b@test", 2, now).unwrap();
        a.apply_answer(&answer, 0xa, "a@test", 1, now).unwrap();
        (a, b)
    }

    /// Strict RTP: the call measures the RTP of the address its SDP named; a stream from
    /// anywhere else reaching the same port (e.g. still sent to a port another call just
    /// freed) is counted as stray and not measured.
    #[tokio::test]
    async fn rtp_from_another_source_is_stray() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let driver = MediaDriver::new().unwrap();
        // `a` starts; its first RTP packet leaves when due, to `b`.
        let (mut a, mut b) = answered_pair(&driver);
        let first = a.poll_timeout().unwrap();
        assert!(a.on_timeout(first, &mut SendTiming::default()).is_none());
        let stray = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let to = b.rtp.local_addr().unwrap();
        for seq in 0..3u16 {
            let mut p = Vec::new();
            media::rtp::RtpHeader {
                payload_type: 0,
                sequence: seq,
                timestamp: u32::from(seq) * 160,
                ssrc: 0x5eed,
                ..media::rtp::RtpHeader::default()
            }
            .write(&[0xff; 160], &mut p);
            stray.send_to(&p, to).unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut read = 0;
        let give_up = Instant::now() + Duration::from_secs(5);
        while read < 4 {
            assert!(Instant::now() < give_up, "4 datagrams reach b: {read}");
            read += b.receive(false, &mut batch).0;
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(b.stray, 3);
        let (sum, _) = b.finish(Instant::now()).unwrap();
        assert_eq!(sum.rx_packets, 1, "only a's packet is measured: {sum:?}");
    }

    /// A peer flooding one socket is read [`BATCHES_PER_PASS`] batches at a time: the pass
    /// ends (the loop serves the other calls and its timers) and the re-armed socket is
    /// reported again by the edge-triggered set, with no new datagram, until it is drained.
    /// A deferred gathering: the Binding goes out at the bind, the call is `gathering` and
    /// its RTP socket in the media set; the server's answer comes through the set and
    /// `receive` like any datagram, `drive_gathering` then takes the srflx candidate (in the
    /// offer), times the gathering and takes the socket out of the set (a later datagram is
    /// not reported).
    #[tokio::test]
    async fn a_deferred_gathering_is_answered_through_the_media_set() {
        use media::stun::{BINDING, Builder, Class, Message};
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut driver = MediaDriver::new().unwrap();
        let mut ports = PortAllocator::new(None, 0);
        let stun = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let plan = MediaPlan {
            ice: true,
            rtcp_mux: true,
            ice_servers: IceServers {
                stun: Some(stun.local_addr().unwrap()),
                turn: None,
                relay_only: false,
            },
            ..MediaPlan::default()
        };
        let t0 = Instant::now();
        let mut a = CallMedia::bind(ip, &mut ports, &plan, 1, 7, 3, &driver, true).unwrap();
        assert!(a.gathering() && !a.gathering_done());
        assert!(a.gathering_timeout().is_some_and(|t| t > t0));
        let mut buf = [0u8; 256];
        stun.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (n, from) = stun.recv_from(&mut buf).unwrap();
        assert_eq!(from, a.rtp.local_addr().unwrap());
        let txn = Message::parse(&buf[..n]).unwrap().transaction;
        let mapped: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let answer = Builder::new(Class::Success, BINDING, txn)
            .xor_mapped_address(mapped)
            .fingerprint();
        stun.send_to(&answer, from).unwrap();
        let mut batch = RecvBatch::default();
        let k = driver.wait_ready(Duration::from_secs(5));
        assert_eq!(k, 1, "the RTP socket reported by the set");
        let t = driver.token(0).unwrap();
        assert!(!t.rtcp);
        assert_eq!(a.receive(t.rtcp, &mut batch).0, 1);
        assert!(a.gathering_done());
        let took = a.drive_gathering(Instant::now(), &driver).expect("over");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(!a.gathering());
        let offer = String::from_utf8(a.offer().to_vec()).unwrap();
        assert!(
            offer.contains(" 192.0.2.7 40000 typ srflx raddr 127.0.0.1 "),
            "{offer}"
        );
        let notes = a.take_ice_notes();
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("ICE gathering took ") && n.ends_with(" ms)")),
            "{notes:?}"
        );
        assert_eq!(a.ice_summary().and_then(|s| s.gathered_in), Some(took));
        // Out of the set: a datagram to the RTP socket is no longer reported.
        stun.send_to(b"late", from).unwrap();
        assert_eq!(driver.wait_ready(Duration::from_millis(50)), 0);
    }

    #[tokio::test]
    async fn a_flooded_socket_is_read_a_capped_batch_per_pass_and_reported_again() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut driver = MediaDriver::new().unwrap();
        let mut ports = PortAllocator::new(None, 0);
        let mut a = CallMedia::bind(
            ip,
            &mut ports,
            &MediaPlan::default(),
            1,
            7,
            3,
            &driver,
            true,
        )
        .unwrap();
        let cap = (BATCHES_PER_PASS * crate::rxstamp::BATCH) as u64;
        let flood = 2 * cap + 10;
        let peer = std::net::UdpSocket::bind((ip, 0)).unwrap();
        for _ in 0..flood {
            peer.send_to(b"\x80\xc8rtcp", a.rtcp.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut passes = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(5);
        while passes.iter().map(|&(n, _)| n).sum::<u64>() < flood {
            assert!(Instant::now() < give_up, "the flood is read: {passes:?}");
            let n = driver.wait_ready(Duration::from_millis(100));
            for i in 0..n {
                let t = driver.token(i).unwrap();
                let (read, more) = a.receive(t.rtcp, &mut batch);
                if more {
                    a.rearm(t.rtcp, &driver, t);
                }
                passes.push((read, more));
            }
        }
        assert_eq!(
            passes,
            vec![(cap, true), (cap, true), (10, false)],
            "one capped pass at a time, each reported by the set"
        );
    }

    /// A new offer inside the call: the same description moves nothing; a new port (or
    /// address) moves RTP and RTCP there; `c=0.0.0.0` (the old hold) is not a move; an offer
    /// without our codec is reported.
    #[tokio::test]
    async fn a_new_offer_moves_the_media_or_says_what_it_lacks() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let driver = MediaDriver::new().unwrap();
        let mut ports = PortAllocator::new(None, 0);
        let plan = MediaPlan::default();
        let mut a = CallMedia::bind(ip, &mut ports, &plan, 1, 7, 3, &driver, true).unwrap();
        let mut b = CallMedia::bind(ip, &mut ports, &plan, 2, 8, 1, &driver, true).unwrap();
        let now = Instant::now();
        let answer = b.answer(&a.offer(), 0xb, "b@test", 2, now).unwrap();
        a.apply_answer(&answer, 0xa, "a@test", 1, now).unwrap();
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let b_port = b.rtp.local_addr().unwrap().port();
        assert_eq!(a.codec(), Some("PCMU"));
        assert_eq!(
            a.follow_remote_offer(now, answer.as_ref(), &a.offer()),
            Followed::default()
        );
        let moved = text.replace(&format!("m=audio {b_port} "), "m=audio 40000 ");
        let f = a.follow_remote_offer(now, moved.as_bytes(), &a.offer());
        assert_eq!(f.moved_to, Some(SocketAddr::new(ip, 40000)), "{moved}");
        assert!(!f.codec_missing);
        let n = a.negotiated.as_ref().unwrap();
        assert_eq!(n.remote_rtp.port(), 40000);
        // RTCP on its own port (the next one) unless muxed with RTP.
        assert!(n.remote_rtcp.port() == 40000 || n.remote_rtcp.port() == 40001);
        let hold = moved.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        assert_eq!(
            a.follow_remote_offer(now, hold.as_bytes(), &a.offer())
                .moved_to,
            None
        );
        assert_eq!(a.negotiated.as_ref().unwrap().remote_rtp.port(), 40000);
        let pcma = moved
            .replace(" RTP/AVP 0", " RTP/AVP 8")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000");
        assert!(pcma.contains("RTP/AVP 8"), "{pcma}");
        assert!(
            a.follow_remote_offer(now, pcma.as_bytes(), &a.offer())
                .codec_missing,
            "{pcma}"
        );
    }

    /// RFC 4568 §7.1.4: the peer's re-INVITE with a new key (tag 1 as before): our media
    /// receives under it from then on (a trace note says so), sends under our key as before;
    /// the same offer again changes nothing. Before: the call kept its first keys and every
    /// packet under the new one failed authentication.
    #[tokio::test]
    async fn a_new_srtp_key_inside_the_call_is_taken() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let driver = MediaDriver::new().unwrap();
        let mut ports = PortAllocator::new(None, 0);
        let plan = MediaPlan {
            srtp: SrtpMode::Sdes,
            ..MediaPlan::default()
        };
        let mut a = CallMedia::bind(ip, &mut ports, &plan, 1, 7, 3, &driver, true).unwrap();
        let mut b = CallMedia::bind(ip, &mut ports, &plan, 2, 8, 1, &driver, true).unwrap();
        let now = Instant::now();
        let answer = b.answer(&a.offer(), 0xb, "b@test", 2, now).unwrap();
        a.apply_answer(&answer, 0xa, "a@test", 1, now).unwrap();
        let first = a.negotiated.as_ref().unwrap().srtp.clone().unwrap();
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let line = text.lines().find(|l| l.starts_with("a=crypto:1 ")).unwrap();
        let key = line.split("inline:").nth(1).unwrap();
        // Line 1 is AEAD_AES_256_GCM (the default order): a new 44-byte key of 7s.
        let sevens = media::srtp::MasterKey::new(Suite::AeadAes256Gcm, &[7; 44]).unwrap();
        let rekey = text.replace(key, &sevens.to_base64());
        let f = a.follow_remote_offer(now, rekey.as_bytes(), &a.offer());
        assert_eq!(f.rekeyed, Some("AEAD_AES_256_GCM"), "{rekey}");
        let now_keys = a.negotiated.as_ref().unwrap().srtp.clone().unwrap();
        assert_eq!(now_keys.tx_key, first.tx_key, "ours as before");
        assert_eq!(now_keys.rx_key, sevens);
        assert_eq!(
            a.session.as_ref().unwrap().config().srtp.as_ref(),
            Some(&now_keys)
        );
        let again = a.follow_remote_offer(now, rekey.as_bytes(), &a.offer());
        assert_eq!(again, Followed::default());
    }

    /// RFC 3264 §6.1, §8.3.2: a new offer of PCMA in a PCMU call, answered with PCMA (as
    /// the user agent answers it), switches our media to PCMA: payload type 8 sent, the
    /// jitter figure kept; an offer whose only RTCP change is muxing dropped (RFC 5761
    /// §5.1.3) sends RTCP to the port after RTP, reported as an RTCP move, not an RTP one.
    #[tokio::test]
    async fn a_new_codec_in_the_answer_switches_the_media() {
        let driver = MediaDriver::new().unwrap();
        let plan = MediaPlan {
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            rtcp_mux: true,
            ..MediaPlan::default()
        };
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut ports = PortAllocator::new(None, 0);
        let mut a = CallMedia::bind(ip, &mut ports, &plan, 1, 7, 3, &driver, true).unwrap();
        let mut b = CallMedia::bind(ip, &mut ports, &plan, 2, 8, 1, &driver, true).unwrap();
        let now = Instant::now();
        let answer = b.answer(&a.offer(), 0xb, "b@test", 2, now).unwrap();
        a.apply_answer(&answer, 0xa, "a@test", 1, now).unwrap();
        assert_eq!(a.codec(), Some("PCMU"));
        assert!(a.negotiated.as_ref().unwrap().rtcp_mux);
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let pcma_offer = text
            .replace(" RTP/AVP 0 101", " RTP/AVP 8 101")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000");
        assert_ne!(pcma_offer, text);
        let our_answer = String::from_utf8(a.offer().to_vec())
            .unwrap()
            .replace(" RTP/AVP 0 8 101", " RTP/AVP 8 101")
            .replace("a=rtpmap:0 PCMU/8000\r\n", "");
        let f = a.follow_remote_offer(now, pcma_offer.as_bytes(), our_answer.as_bytes());
        assert_eq!(
            f.codec,
            Some(("PCMU", "PCMA")),
            "{pcma_offer}\n{our_answer}"
        );
        assert_eq!(
            (f.moved_to, f.rtcp_to, f.codec_missing),
            (None, None, false)
        );
        let n = a.negotiated.as_ref().unwrap();
        assert_eq!((n.codec, n.send_pt, n.recv_pt), (Codec::Pcma, 8, 8));
        let cfg = a.session.as_ref().unwrap().config();
        assert_eq!((cfg.codec, cfg.send_pt), (Codec::Pcma, 8));
        assert_eq!(a.codec(), Some("PCMA"));
        // The same offer without a=rtcp-mux: RTCP to the next port, RTP where it was.
        let unmuxed = pcma_offer.replace("a=rtcp-mux\r\n", "");
        assert_ne!(unmuxed, pcma_offer);
        let rtp = a.negotiated.as_ref().unwrap().remote_rtp;
        let f = a.follow_remote_offer(now, unmuxed.as_bytes(), our_answer.as_bytes());
        assert_eq!(f.moved_to, None);
        let next = SocketAddr::new(rtp.ip(), rtp.port() + 1);
        assert_eq!(f.rtcp_to, Some(next));
        let n = a.negotiated.as_ref().unwrap();
        assert!(!n.rtcp_mux);
        assert_eq!((n.remote_rtp, n.remote_rtcp), (rtp, next));
        // Only an RFC 3605 a=rtcp port changes: an RTCP move, not "RTP now to" the same.
        let rtcp = unmuxed.replace("a=ptime:20\r\n", "a=ptime:20\r\na=rtcp:40555\r\n");
        assert_ne!(rtcp, unmuxed);
        let f = a.follow_remote_offer(now, rtcp.as_bytes(), our_answer.as_bytes());
        assert_eq!(f.moved_to, None);
        assert_eq!(f.rtcp_to, Some(SocketAddr::new(rtp.ip(), 40555)));
        assert_eq!(a.negotiated.as_ref().unwrap().remote_rtcp.port(), 40555);
    }

    /// A move to the other address family (an SBC re-anchoring an IPv4 call on IPv6) is one
    /// our IPv4 media socket cannot follow: every datagram would fail. It is reported, not
    /// taken: the media stays where it was.
    #[tokio::test]
    async fn a_move_to_the_other_address_family_is_reported_not_taken() {
        let driver = MediaDriver::new().unwrap();
        let (mut a, b) = answered_pair(&driver);
        let before = a.negotiated.as_ref().unwrap().remote_rtp;
        let offer = sdp::build_offer(&b.local)
            .to_string()
            .replace("IN IP4 127.0.0.1", "IN IP6 ::1");
        let f = a.follow_remote_offer(Instant::now(), offer.as_bytes(), &a.offer());
        assert_eq!(f.moved_to, None, "{offer}");
        assert_eq!(
            f.unreachable,
            Some(SocketAddr::new(
                [0u16, 0, 0, 0, 0, 0, 0, 1].into(),
                before.port()
            ))
        );
        assert_eq!(a.negotiated.as_ref().unwrap().remote_rtp, before);
    }

    /// Every datagram waiting on `sock` (RTP or RTCP of a peer under test), without blocking.
    fn datagrams_waiting(sock: &MioUdpSocket) -> usize {
        let mut buf = [0u8; 2048];
        std::iter::from_fn(|| sock.recv_from(&mut buf).ok()).count()
    }

    /// RFC 3264 §8.4: an offer with `c=0.0.0.0` (the RFC 2543 hold, still sent by older
    /// PBXs, with no direction attribute: sendrecv) "means that neither RTP nor RTCP is to
    /// be sent to the peer" — as the first offer/answer already treats it. Six seconds of
    /// the held call send nothing to the peer's old address (no RTP, no RTCP report), and a
    /// resume to that address sends again.
    #[tokio::test]
    async fn an_offer_with_c_0_0_0_0_stops_rtp_and_rtcp() {
        let driver = MediaDriver::new().unwrap();
        let (mut a, b) = answered_pair(&driver);
        let b_rtp = b.rtp.local_addr().unwrap();
        let offer = sdp::build_offer(&b.local).to_string();
        assert!(!offer.contains("a=sendonly"), "{offer}");
        let held = offer.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        assert_ne!(held, offer);
        let (mut timing, mut batch) = (SendTiming::default(), RecvBatch::default());
        let mut run = |a: &mut CallMedia, until: Instant| {
            while let Some(at) = a.poll_timeout().filter(|&at| at <= until) {
                let _ = a.on_timeout(at, &mut timing);
                a.read_due(at, &mut batch);
            }
        };
        let t0 = a.poll_timeout().unwrap();
        assert_eq!(
            a.follow_remote_offer(t0, held.as_bytes(), &a.offer()),
            Followed::default()
        );
        let end = t0 + Duration::from_secs(6);
        run(&mut a, end);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            (datagrams_waiting(&b.rtp), datagrams_waiting(&b.rtcp)),
            (0, 0),
            "nothing sent to {b_rtp} while held with c=0.0.0.0"
        );
        // Resumed with the old address: RTP flows again.
        assert_eq!(
            a.follow_remote_offer(end, offer.as_bytes(), &a.offer()),
            Followed::default()
        );
        run(&mut a, end + Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(50));
        assert!(datagrams_waiting(&b.rtp) >= 5, "resumed to {b_rtp}");
    }

    /// Strict RTP after a move (RFC 3264 §8.3.1): the old stream's packets that still wait
    /// in our socket (or are still in flight) when the re-INVITE is handled must not keep the
    /// call latched on the old source. The new stream — here from a NAT's address, not the
    /// one its SDP names — is taken; the old stream's packets after it are stray.
    #[tokio::test]
    async fn after_a_move_the_new_stream_is_taken_not_the_old_ones_leftovers() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let driver = MediaDriver::new().unwrap();
        let (mut a, b) = answered_pair(&driver);
        let a_rtp = a.rtp.local_addr().unwrap();
        let rtp = rtp_packet;
        let mut batch = RecvBatch::default();
        let read = |a: &mut CallMedia, batch: &mut RecvBatch, want: u64| {
            let mut n = 0;
            let give_up = Instant::now() + Duration::from_secs(5);
            while n < want {
                assert!(Instant::now() < give_up, "{want} datagrams reach a: {n}");
                n += a.receive(false, batch).0;
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // The old stream, from the address the first answer named: latched.
        b.rtp.send_to(&rtp(0xb, 1), a_rtp).unwrap();
        read(&mut a, &mut batch, 1);
        // Two more of it wait in our socket when the peer's re-INVITE moves the media.
        for seq in 2..4 {
            b.rtp.send_to(&rtp(0xb, seq), a_rtp).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let named = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let offer = sdp::build_offer(&b.local).to_string().replace(
            &format!("m=audio {} ", b_port(&b)),
            &format!("m=audio {} ", named.local_addr().unwrap().port()),
        );
        let moved = a.follow_remote_offer(Instant::now(), offer.as_bytes(), &a.offer());
        assert_eq!(moved.moved_to, Some(named.local_addr().unwrap()), "{offer}");
        // The new stream comes from a NAT's address; one late packet of the old one follows.
        let nat = std::net::UdpSocket::bind((ip, 0)).unwrap();
        for seq in 100..103 {
            nat.send_to(&rtp(0xc, seq), a_rtp).unwrap();
        }
        b.rtp.send_to(&rtp(0xb, 4), a_rtp).unwrap();
        read(&mut a, &mut batch, 6);
        assert_eq!(
            a.stray, 1,
            "only the old stream's packet after the new one is stray"
        );
        let (sum, _) = a.finish(Instant::now()).unwrap();
        assert_eq!(
            sum.rx_packets, 6,
            "1 + 2 of the old stream, 3 of the new: {sum:?}"
        );
    }

    /// RTP packet `seq` of stream `ssrc` (PCMU, 20 ms).
    fn rtp_packet(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = Vec::new();
        media::rtp::RtpHeader {
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
            ..media::rtp::RtpHeader::default()
        }
        .write(&[0xff; 160], &mut p);
        p
    }

    /// `a` hears a stream from `from` every 20 ms from `start` to `end` (s after `t0`),
    /// continuing the sequence at `*seq`.
    fn hear(a: &mut CallMedia, t0: Instant, from: SocketAddr, span: (f64, f64), seq: &mut u16) {
        let mut t = Duration::from_secs_f64(span.0);
        while t < Duration::from_secs_f64(span.1) {
            a.on_packet(t0 + t, &rtp_packet(0xb, *seq), Some(from));
            *seq += 1;
            t += Duration::from_millis(20);
        }
    }

    /// The peer's offers that let the far end be silent (`media::gaps`): a move (the new
    /// address gets a wait of its own: 1 s of silence before it and 1.5 s after it are not
    /// one gap), a park with `c=0.0.0.0` (RFC 3264 §8.4: 4 s of silence, then the resume to
    /// the same address), and a hold of ours (sendonly). The call is rated. A move to an
    /// address that then never sends is a gap from the move to the end.
    #[tokio::test]
    async fn moves_parks_and_holds_are_not_gaps_a_silent_new_address_is() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let driver = MediaDriver::new().unwrap();
        let (mut a, b) = answered_pair(&driver);
        let t0 = a.poll_timeout().unwrap();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let (old, mut seq) = (b.rtp.local_addr().unwrap(), 1);
        let offer = sdp::build_offer(&b.local).to_string();
        let moved_to = SocketAddr::new(ip, b_port(&b) + 100);
        let moved = offer.replace(
            &format!("m=audio {} ", b_port(&b)),
            &format!("m=audio {} ", moved_to.port()),
        );
        let parked = moved.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        hear(&mut a, t0, old, (0.0, 1.0), &mut seq);
        let f = a.follow_remote_offer(at(2.0), moved.as_bytes(), &a.offer());
        assert_eq!(f.moved_to, Some(moved_to), "{moved}");
        hear(&mut a, t0, moved_to, (3.5, 5.0), &mut seq);
        assert_eq!(
            a.follow_remote_offer(at(5.0), parked.as_bytes(), &a.offer())
                .moved_to,
            None
        );
        assert_eq!(
            a.follow_remote_offer(at(9.0), moved.as_bytes(), &a.offer())
                .moved_to,
            None
        );
        hear(&mut a, t0, moved_to, (9.5, 11.0), &mut seq);
        a.set_direction(at(11.0), Direction::SendOnly);
        let (sum, _) = a.finish(at(16.0)).unwrap();
        assert_eq!(sum.gaps.count, 0, "{sum:?}");
        assert!(sum.mos.is_some(), "{sum:?}");
        // A move (from the second pair's `b` to the same port), and nothing from there.
        let (mut a, b) = answered_pair(&driver);
        let t0 = a.poll_timeout().unwrap();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut seq = 1;
        hear(
            &mut a,
            t0,
            b.rtp.local_addr().unwrap(),
            (0.0, 1.0),
            &mut seq,
        );
        assert!(
            a.follow_remote_offer(at(2.0), moved.as_bytes(), &a.offer())
                .moved_to
                .is_some()
        );
        let (sum, _) = a.finish(at(6.0)).unwrap();
        assert_eq!((sum.gaps.count, sum.mos), (1, None), "{sum:?}");
        assert_eq!(
            sum.gaps.longest.unwrap().to_string(),
            "no RTP received from 2.0 s to the end of the call (6.0 s), after 50 packets"
        );
    }

    /// Media started by a reliable 1xx's offer: the ringing before the answer is no gap,
    /// whatever its length; from the answer on the far end is to send.
    #[tokio::test]
    async fn the_silence_before_the_answer_is_no_gap() {
        let driver = MediaDriver::new().unwrap();
        let (mut a, b) = answered_pair(&driver);
        let t0 = a.poll_timeout().unwrap();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let (from, mut seq) = (b.rtp.local_addr().unwrap(), 1);
        a.early(t0);
        a.answered(at(5.0));
        hear(&mut a, t0, from, (5.5, 8.0), &mut seq);
        let (sum, _) = a.finish(at(8.0)).unwrap();
        assert_eq!(sum.gaps.count, 0, "{sum:?}");
        // Answered, and silent after it: a gap from the answer.
        let (mut a, _b) = answered_pair(&driver);
        let t0 = a.poll_timeout().unwrap();
        a.early(t0);
        a.answered(t0 + Duration::from_secs(5));
        let (sum, _) = a.finish(t0 + Duration::from_secs(8)).unwrap();
        let gap = sum.gaps.longest.expect("a gap after the answer");
        assert_eq!(
            (gap.from, gap.to),
            (Duration::from_secs(5), Duration::from_secs(8))
        );
    }

    fn b_port(b: &CallMedia) -> u16 {
        b.rtp.local_addr().unwrap().port()
    }

    /// The shard's set reports a call's RTCP socket (read until it would block); the RTP
    /// socket is not in the set: it is read on the call's schedule ([`CallMedia::read_due`]).
    #[tokio::test]
    async fn driver_reports_rtcp_and_rtp_is_read_on_schedule() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut driver = MediaDriver::new().unwrap();
        let mut ports = PortAllocator::new(None, 0);
        let plan = MediaPlan::default();
        let mut a = CallMedia::bind(ip, &mut ports, &plan, 1, 7, 3, &driver, true).unwrap();
        let mut b = CallMedia::bind(ip, &mut ports, &plan, 2, 8, 1, &driver, true).unwrap();
        let now = Instant::now();
        let mut batch = RecvBatch::default();
        // Before the media starts nothing is read on schedule.
        assert_eq!((a.poll_timeout(), a.read_due(now, &mut batch)), (None, 0));
        let answer = b.answer(&a.offer(), 0xb, "b@test", 2, now).unwrap();
        // `a` starts; its first RTP packet leaves when due, to `b` (sent on loopback: it is
        // in b's socket when the call returns).
        a.apply_answer(&answer, 0xa, "a@test", 1, now).unwrap();
        let mut timing = SendTiming::default();
        let a_first = a.poll_timeout().unwrap();
        assert!(a.on_timeout(a_first, &mut timing).is_none());
        assert_eq!(timing.count, 1);
        // More than one batch of the receive call, from the peer the SDP named.
        let a_rtp = a.rtp.local_addr().unwrap();
        for _ in 0..5 {
            a.rtp
                .send_to(b"\x80\x00rtp", b.rtp.local_addr().unwrap())
                .unwrap();
        }
        let peer = std::net::UdpSocket::bind((ip, 0)).unwrap();
        peer.send_to(b"\x80\xc8rtcp", a.rtcp.local_addr().unwrap())
            .unwrap();
        // RTCP: reported by the set with a's token. The RTP datagrams queued before it
        // would be reported by the same wait were their sockets in the set.
        let mut seen = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(5);
        while seen.is_empty() {
            assert!(Instant::now() < give_up, "the set reports a's RTCP socket");
            let n = driver.wait_ready(Duration::from_millis(100));
            for i in 0..n {
                let t = driver.token(i).unwrap();
                let (read, _) = a.receive(t.rtcp, &mut batch);
                seen.push((t.endpoint, t.generation, t.rtcp, read));
            }
        }
        assert_eq!(seen, vec![(7, 3, true, 1)]);
        // Both calls start on the media grid, b (answered first) and a on different slots
        // of this thread's grid.
        let b_first = b.poll_timeout().unwrap();
        for first in [a_first, b_first] {
            assert_eq!(on_grid(first), first);
            assert!(first >= now && first < now + Duration::from_millis(21));
        }
        assert_ne!(slot_of(a_first), slot_of(b_first));
        assert!(b.on_timeout(b_first, &mut timing).is_none());
        // b's RTP read is due one packet time after its start, with its second send: not
        // before.
        let read_at = b.poll_timeout().unwrap();
        assert_eq!(read_at, b_first + Duration::from_millis(20));
        assert_eq!(
            b.read_due(read_at - Duration::from_micros(1), &mut batch),
            0
        );
        // The pass: b's second packet, then the read: everything waiting is read (a's first
        // packet + 5), in more than one batch.
        assert!(b.on_timeout(read_at, &mut timing).is_none());
        assert_eq!(timing.count, 3);
        assert_eq!(b.read_due(read_at, &mut batch), 6);
        assert_eq!(b.stray, 0, "all from {a_rtp}");
        // The next read is one packet time later, with the next send; a late pass skips to
        // the next read after it.
        assert_eq!(b.poll_timeout(), Some(read_at + Duration::from_millis(20)));
        let late = read_at + Duration::from_millis(65);
        assert_eq!(b.read_due(late, &mut batch), 0);
        assert_eq!(b.next_read, Some(read_at + Duration::from_millis(80)));
        let (sum, _) = b.finish(Instant::now()).unwrap();
        assert_eq!(
            sum.rx_packets, 1,
            "a's first packet (the 5 others are not RTP)"
        );
    }

    /// Calls that start on the same grid point spread over the slots of the grid: the
    /// least loaded one first; a slot is given back when its call's media is dropped.
    #[tokio::test]
    async fn calls_spread_over_the_grid_slots() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let driver = MediaDriver::new().unwrap();
        let mut ports = PortAllocator::new(None, 0);
        let plan = MediaPlan::default();
        let now = Instant::now();
        let base = on_grid(now);
        let mut start = |calls: &mut Vec<CallMedia>| {
            let n = calls.len() as u64;
            let mut a = CallMedia::bind(ip, &mut ports, &plan, n, 1, n, &driver, true).unwrap();
            let mut b = CallMedia::bind(ip, &mut ports, &plan, n, 2, n, &driver, true).unwrap();
            let answer = b.answer(&a.offer(), 1, "b@test", n, now).unwrap();
            a.apply_answer(&answer, 2, "a@test", n, now).unwrap();
            calls.push(b);
            calls.push(a);
        };
        let mut calls = Vec::new();
        for _ in 0..SLOTS {
            start(&mut calls);
        }
        // 40 call ends started at one instant: two on each slot, the first 20 on the next
        // 20 grid points in order, then again.
        let firsts: Vec<Instant> = calls.iter().map(|c| c.poll_timeout().unwrap()).collect();
        for (i, first) in firsts.iter().enumerate() {
            assert_eq!(
                *first,
                base + MEDIA_GRID * (i % SLOTS) as u32,
                "call end {i}"
            );
        }
        // Two calls (four ends) end: their slots are the least loaded again.
        let ended: Vec<usize> = [7, 8, 30, 31].into();
        for i in ended.iter().rev() {
            drop(calls.remove(*i));
        }
        start(&mut calls);
        start(&mut calls);
        let mut got: Vec<usize> = calls[36..]
            .iter()
            .map(|c| slot_of(c.poll_timeout().unwrap()))
            .collect();
        got.sort_unstable();
        let mut want: Vec<usize> = ended.iter().map(|i| slot_of(firsts[*i])).collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn the_media_grid_rounds_up_by_less_than_a_step() {
        let t0 = Instant::now();
        for us in [0, 1, 250, 999, 1_000, 1_001, 20_000, 123_457] {
            let at = t0 + Duration::from_micros(us);
            let g = on_grid(at);
            assert!(g >= at && g - at < MEDIA_GRID, "{us} µs");
            assert_eq!(on_grid(g), g);
            assert_eq!(on_grid(g + MEDIA_GRID), g + MEDIA_GRID);
        }
    }

    /// Shard 1 of 2 runs on the grid shifted by half a step: the same instant rounds up to
    /// grid points half a step apart on the two shards' threads, and each shard's grid
    /// keeps its own step.
    #[test]
    fn shards_grids_interleave() {
        let t0 = Instant::now();
        let on = |index: usize, at: Instant| {
            std::thread::spawn(move || {
                set_grid_phase(index, 2);
                let g = on_grid(at);
                (g, on_grid(g + Duration::from_nanos(1)), slot_of(g))
            })
            .join()
            .unwrap()
        };
        for us in [0, 1, 499, 500, 501, 999, 20_000, 123_457] {
            let at = t0 + Duration::from_micros(us);
            let ((g0, n0, _), (g1, n1, _)) = (on(0, at), on(1, at));
            assert!(g0 >= at && g1 >= at, "{us} µs");
            let apart = if g1 > g0 { g1 - g0 } else { g0 - g1 };
            assert_eq!(apart, MEDIA_GRID / 2, "{us} µs");
            assert_eq!((n0 - g0, n1 - g1), (MEDIA_GRID, MEDIA_GRID), "{us} µs");
        }
        // One shard: no shift.
        let at = t0 + Duration::from_micros(321);
        let alone = std::thread::spawn(move || {
            set_grid_phase(0, 1);
            on_grid(at)
        })
        .join()
        .unwrap();
        assert_eq!(alone, on_grid(at));
    }

    /// A media pass sends first and takes the per-second samples after every call's sends:
    /// `send_due` sends what is due and never samples; `sample_due` takes the sample once
    /// the second is over, with what was sent in it.
    #[tokio::test]
    async fn sends_and_samples_are_separate_steps() {
        let driver = MediaDriver::new().unwrap();
        let (mut a, _b) = answered_pair(&driver);
        let first = a.poll_timeout().unwrap();
        let mut timing = SendTiming::default();
        // Nothing is due before the first packet.
        a.send_due(first - Duration::from_micros(1), &mut timing);
        assert_eq!(timing.count, 0);
        assert!(a.sample_due(first).is_none());
        // One second of packets, sent on time: 50 of them, no sample among the sends.
        let mut at = first;
        while at < first + Duration::from_secs(1) {
            a.send_due(at, &mut timing);
            at += Duration::from_millis(20);
        }
        assert_eq!(timing.count, 50);
        let end = first + Duration::from_secs(1);
        a.send_due(end, &mut timing);
        assert_eq!(timing.count, 51);
        let sample = a.sample_due(end).expect("the second is over");
        assert_eq!(sample.sent.packets, 51);
        // Taken once.
        assert!(a.sample_due(end).is_none());
    }

    #[tokio::test]
    async fn precise_timer_wakes_at_its_deadline() {
        let mut timer = PreciseTimer::new("test-timer".into()).unwrap();
        // Dense deadlines (the timer then ticks on every quantum), then sparse ones (set once
        // each), then dense again.
        for us in [300, 200, 3_000, 7_000, 400] {
            let start = Instant::now();
            let at = start + Duration::from_micros(us);
            timer.arm(at);
            tokio::time::timeout(Duration::from_secs(5), timer.fired())
                .await
                .expect("the timer fires");
            // Never early; the rounding adds at most one quantum.
            assert!(Instant::now() >= at, "fired {us} µs deadline early");
        }
    }

    #[test]
    fn codec_names() {
        assert_eq!(codec_by_name("pcmu"), Some(Codec::Pcmu));
        assert_eq!(codec_by_name("G711A"), Some(Codec::Pcma));
        assert_eq!(codec_by_name("GSM"), None);
    }
}
