//! ICE (RFC 8445) for one audio stream, sans-IO: full ICE with host candidates (or ICE-lite,
//! §2.5), regular nomination, and consent freshness (RFC 7675). No trickle: both sides'
//! candidates are in the offer and answer (RFC 8839, [`crate::ice::sdp`] helpers).
//!
//! # Driving it
//!
//! [`IceAgent::new`] with our credentials and host candidates (one per component: the RTP
//! socket's address, and the RTCP socket's without rtcp-mux) and our role (the offerer
//! controls, §6.1.1). [`IceAgent::set_remote`] with the peer's description starts the
//! checks. Then, like [`crate::dtls::DtlsSrtp`]:
//!
//! - inputs: [`IceAgent::handle_datagram`] for every STUN datagram ([`crate::stun::is_stun`])
//!   received on a component's socket, [`IceAgent::handle_timeout`] when
//!   [`IceAgent::poll_timeout`] is reached, each with `now`;
//! - outputs, drained after every input: [`IceAgent::poll_transmit`] (checks, responses and
//!   consent requests, each with the component and the address to send to) and
//!   [`IceAgent::poll_event`] (state changes, the selected pair, a role switch, consent lost);
//! - getters: [`IceAgent::state`], [`IceAgent::selected`] (where a component's media goes),
//!   [`IceAgent::stats`].
//!
//! Checks go out every Ta (50 ms, §14.2), triggered checks first (§6.1.4.2), each
//! retransmitted on an RTO of max(500 ms, Ta × pending pairs) (§14.3), doubled after every
//! send, `Rc` sends and a last wait of `Rm` × RTO (RFC 8489 §6.2.1: 7 and 16, 39.5 s in
//! all). Requests are answered at all times, including before the peer's description is
//! known (answered, and processed once it is). No clock reads, no I/O.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::stun::{BINDING, Builder, Class, Message, StunError, TransactionId};

/// RFC 8445 §14.2: the pacing of new checks.
pub const TA: Duration = Duration::from_millis(50);
/// RFC 8445 §14.3: the lower bound of a check's RTO.
const MIN_RTO: Duration = Duration::from_millis(500);
/// RFC 8445 §6.1.2.5: at most 100 pairs in a checklist.
const MAX_PAIRS: usize = 100;
/// How long the controlling agent waits, after the first valid pair of a component, for a
/// better pair still being checked before it nominates the best valid one (RFC 8445 §8.1.1
/// leaves the stopping rule to the agent).
const NOMINATION_WAIT: Duration = Duration::from_millis(200);
/// Requests that arrive before the peer's description, kept for it (§7.3.1.3).
const MAX_EARLY: usize = 16;

/// A candidate's type (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateType {
    /// The socket's own address.
    Host,
    /// An address a STUN server saw.
    ServerReflexive,
    /// An address learned from a check (§7.2.5.3.1, §7.3.1.3).
    PeerReflexive,
    /// A TURN relay's address.
    Relayed,
}

impl CandidateType {
    /// RFC 8445 §5.1.2.2: the recommended type preferences.
    fn preference(self) -> u32 {
        match self {
            CandidateType::Host => 126,
            CandidateType::PeerReflexive => 110,
            CandidateType::ServerReflexive => 100,
            CandidateType::Relayed => 0,
        }
    }

    /// The SDP name (RFC 8839 §5.1: `host`, `srflx`, `prflx`, `relay`).
    pub fn name(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::ServerReflexive => "srflx",
            CandidateType::PeerReflexive => "prflx",
            CandidateType::Relayed => "relay",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "host" => CandidateType::Host,
            "srflx" => CandidateType::ServerReflexive,
            "prflx" => CandidateType::PeerReflexive,
            "relay" => CandidateType::Relayed,
            _ => return None,
        })
    }
}

/// One candidate (UDP only: ICE-TCP is not supported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The foundation (§5.1.1.3).
    pub foundation: String,
    /// The component: 1 RTP, 2 RTCP.
    pub component: u8,
    /// The priority (§5.1.2).
    pub priority: u32,
    /// The transport address.
    pub addr: SocketAddr,
    /// The type.
    pub kind: CandidateType,
    /// `raddr`/`rport` (the base or server-reflexive address it came from), if given.
    pub related: Option<SocketAddr>,
}

/// Why an `a=candidate` line was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandidateError {
    /// Not the grammar of RFC 8839 §5.1.
    #[error("malformed a=candidate {0:?}")]
    Malformed(String),
    /// A transport other than UDP (ICE-TCP, RFC 6544): not supported, skipped.
    #[error("a=candidate over {0} skipped (only UDP)")]
    NotUdp(String),
    /// An FQDN (an mDNS `.local` name, or any name): not resolved, skipped.
    #[error("a=candidate with the name {0:?} skipped (only IP addresses)")]
    Name(String),
}

impl Candidate {
    /// RFC 8445 §5.1.2.1: (2^24)·type preference + (2^8)·local preference + (256 − component).
    pub fn priority_of(kind: CandidateType, local_preference: u16, component: u8) -> u32 {
        (kind.preference() << 24)
            + (u32::from(local_preference) << 8)
            + (256 - u32::from(component.max(1)))
    }

    /// A host candidate of `component` at `addr`.
    pub fn host(component: u8, addr: SocketAddr) -> Self {
        Candidate {
            // §5.1.1.3: same type, base IP and transport → same foundation.
            foundation: format!("{}", foundation_of(addr, CandidateType::Host)),
            component,
            priority: Self::priority_of(CandidateType::Host, u16::MAX, component),
            addr,
            kind: CandidateType::Host,
            related: None,
        }
    }

    /// A server-reflexive candidate (RFC 8445 §5.1.1.2): `addr` as a STUN server saw
    /// `base`, a host candidate's address.
    pub fn server_reflexive(component: u8, addr: SocketAddr, base: SocketAddr) -> Self {
        let kind = CandidateType::ServerReflexive;
        Candidate {
            // §5.1.1.3: type, base IP and STUN server; one server here.
            foundation: format!("{}", foundation_of(base, kind)),
            component,
            priority: Self::priority_of(kind, u16::MAX, component),
            addr,
            kind,
            related: Some(base),
        }
    }

    /// A relayed candidate (RFC 8445 §5.1.1.2): the TURN allocation's relayed address,
    /// `mapped` (the server-reflexive address the server saw) as its related address.
    pub fn relayed(component: u8, addr: SocketAddr, mapped: SocketAddr) -> Self {
        let kind = CandidateType::Relayed;
        Candidate {
            foundation: format!("{}", foundation_of(addr, kind)),
            component,
            priority: Self::priority_of(kind, u16::MAX, component),
            addr,
            kind,
            related: Some(mapped),
        }
    }

    /// The base (§5.1.1.1): where checks from this candidate are sent from — the host
    /// socket for host and server-reflexive candidates, the relayed address itself for a
    /// relayed one.
    pub fn base(&self) -> SocketAddr {
        match self.kind {
            CandidateType::ServerReflexive => self.related.unwrap_or(self.addr),
            _ => self.addr,
        }
    }

    /// The value of an `a=candidate` line (RFC 8839 §5.1).
    pub fn to_sdp(&self) -> String {
        let mut s = format!(
            "{} {} UDP {} {} {} typ {}",
            self.foundation,
            self.component,
            self.priority,
            self.addr.ip(),
            self.addr.port(),
            self.kind.name()
        );
        if let Some(r) = self.related {
            s.push_str(&format!(" raddr {} rport {}", r.ip(), r.port()));
        }
        s
    }

    /// Reads the value of an `a=candidate` line (RFC 8839 §5.1); extension attributes are
    /// skipped. Never panics.
    pub fn parse_sdp(value: &str) -> Result<Self, CandidateError> {
        let bad = || CandidateError::Malformed(value.chars().take(200).collect());
        let value = value.strip_prefix("candidate:").unwrap_or(value);
        let f: Vec<&str> = value.split_ascii_whitespace().collect();
        if f.len() < 8 || f[6] != "typ" {
            return Err(bad());
        }
        let foundation = f[0];
        if foundation.is_empty() || foundation.len() > 32 {
            return Err(bad());
        }
        let component: u8 = f[1]
            .parse()
            .ok()
            .filter(|c| (1..=2).contains(c))
            .ok_or_else(bad)?;
        if !f[2].eq_ignore_ascii_case("udp") {
            return Err(CandidateError::NotUdp(f[2].into()));
        }
        let priority: u32 = f[3].parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        let port: u16 = f[5].parse().map_err(|_| bad())?;
        let ip = match f[4].parse() {
            Ok(ip) => ip,
            Err(_) if f[4].contains('.') || f[4].contains(':') => {
                return Err(CandidateError::Name(f[4].into()));
            }
            Err(_) => return Err(bad()),
        };
        let kind = CandidateType::from_name(f[7]).ok_or_else(bad)?;
        let mut related = (None, None);
        let mut rest = f[8..].chunks(2);
        for kv in rest.by_ref() {
            match kv {
                ["raddr", a] => related.0 = a.parse().ok(),
                ["rport", p] => related.1 = p.parse::<u16>().ok(),
                [_, _] => {}
                _ => return Err(bad()),
            }
        }
        Ok(Candidate {
            foundation: foundation.into(),
            component,
            priority,
            addr: SocketAddr::new(ip, port),
            kind,
            related: match related {
                (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
                _ => None,
            },
        })
    }
}

/// Whether a local and a remote address can form a pair: the same family (§6.1.2.2), and
/// a loopback candidate only with a loopback one — a datagram from another address to a
/// loopback socket can only come from this host's other interfaces (a browser checks from
/// each of its host candidates), and answering would send test traffic to them.
fn compatible(local: SocketAddr, remote: SocketAddr) -> bool {
    local.is_ipv4() == remote.is_ipv4() && local.ip().is_loopback() == remote.ip().is_loopback()
}

fn foundation_of(addr: SocketAddr, kind: CandidateType) -> u32 {
    // A short stable number from the type and base IP (§5.1.1.3).
    let mut h: u32 = 2166136261;
    for b in kind
        .name()
        .bytes()
        .chain(addr.ip().to_string().into_bytes())
    {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    h % 1_000_000
}

/// ICE credentials (RFC 8445 §5.3: `ice-ufrag` ≥ 4 characters, `ice-pwd` ≥ 22).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username fragment.
    pub ufrag: String,
    /// The password.
    pub pwd: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Fresh credentials from `fill` (the system's random source: the password keys the
    /// checks' integrity): a 8-character ufrag and a 24-character password of the ICE
    /// character set (RFC 8839 §5.4: ALPHA / DIGIT / "+" / "/").
    pub fn generate<E>(fill: impl Fn(&mut [u8]) -> Result<(), E>) -> Result<Self, E> {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b = [0u8; 32];
        fill(&mut b)?;
        let s: String = b
            .iter()
            .map(|x| CHARS[usize::from(x & 63)] as char)
            .collect();
        Ok(Credentials {
            ufrag: s[..8].into(),
            pwd: s[8..].into(),
        })
    }
}

/// What we are, for [`IceAgent::new`].
#[derive(Debug, Clone)]
pub struct IceConfig {
    /// Our credentials.
    pub local: Credentials,
    /// Our host candidates: the component and its socket's address.
    pub host: Vec<(u8, SocketAddr)>,
    /// Our server-reflexive candidates: the component, the address a STUN server saw, and
    /// the host address it saw (the base). One equal to a host candidate is dropped (RFC
    /// 8445 §5.1.3); they are advertised, not paired (§6.1.2.4: a pair is checked from its
    /// base, which is the host candidate's pair).
    pub srflx: Vec<(u8, SocketAddr, SocketAddr)>,
    /// Our relayed candidates: the component, the TURN allocation's relayed address and
    /// the mapped address the TURN server saw. Checks and answers from one leave with
    /// [`Transmit::local`] = the relayed address: the driver sends them through the
    /// allocation; what arrives through it goes to [`IceAgent::handle_relayed`].
    pub relay: Vec<(u8, SocketAddr, SocketAddr)>,
    /// Only relayed candidates (a browser's `iceTransportPolicy: "relay"`): no host or
    /// server-reflexive candidate is advertised or paired, and nothing arriving on the
    /// host sockets directly is answered.
    pub relay_only: bool,
    /// The controlling role (the offerer, §6.1.1; a lite peer makes a full agent controlling).
    pub controlling: bool,
    /// Be an ICE-lite agent (§2.5): answer checks only, never send them.
    pub lite: bool,
    /// Seeds the tie-breaker and transaction IDs.
    pub seed: u64,
    /// `Rc`: how many times a check is sent (RFC 8489 §6.2.1: 7).
    pub max_sends: u32,
    /// RFC 7675 §5.1: a consent check about every this often (±20 %).
    pub consent_interval: Duration,
    /// RFC 7675 §5.1: consent is lost this long after the last answer.
    pub consent_timeout: Duration,
}

impl IceConfig {
    /// Full ICE with the RFC's timings.
    pub fn new(
        local: Credentials,
        host: Vec<(u8, SocketAddr)>,
        controlling: bool,
        seed: u64,
    ) -> Self {
        IceConfig {
            local,
            host,
            srflx: Vec::new(),
            relay: Vec::new(),
            relay_only: false,
            controlling,
            lite: false,
            seed,
            max_sends: 7,
            consent_interval: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
        }
    }
}

/// The peer's ICE, from its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIce {
    /// Its credentials.
    pub credentials: Credentials,
    /// Its candidates (UDP; others skipped when read).
    pub candidates: Vec<Candidate>,
    /// `a=ice-lite`.
    pub lite: bool,
}

/// The agent's state, as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// Waiting for the peer's description.
    New,
    /// Checks running.
    Checking,
    /// Every component has a selected pair.
    Connected,
    /// Every pair failed (or the peer had no candidate).
    Failed,
    /// Consent lost (RFC 7675 §5.1): no answer to consent checks for 30 s.
    Disconnected,
}

impl IceState {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            IceState::New => "new",
            IceState::Checking => "checking",
            IceState::Connected => "connected",
            IceState::Failed => "failed",
            IceState::Disconnected => "disconnected",
        }
    }
}

/// What happened, for the driver's trace and report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceEvent {
    /// The state changed.
    State(IceState),
    /// A component's media now goes between these addresses (the nominated pair).
    Selected {
        /// The component.
        component: u8,
        /// Our candidate's address.
        local: SocketAddr,
        /// Our candidate's type (relayed: media goes through the TURN allocation).
        local_kind: CandidateType,
        /// The peer's.
        remote: SocketAddr,
        /// The peer's candidate's type.
        remote_kind: CandidateType,
    },
    /// A role conflict (§7.3.1.1, §7.2.5.1) switched our role.
    RoleSwitched {
        /// Our role now.
        controlling: bool,
    },
    /// A pair failed: its check timed out, got an error or an asymmetric answer.
    PairFailed {
        /// Our address.
        local: SocketAddr,
        /// The peer's.
        remote: SocketAddr,
        /// Why.
        why: &'static str,
    },
    /// A request we could not take (bad credentials, integrity): answered with an error.
    Rejected {
        /// From where.
        from: SocketAddr,
        /// The STUN error code sent.
        code: u16,
    },
}

/// A datagram to send from a component's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The component (its socket).
    pub component: u8,
    /// The local candidate's base it leaves from: the component's host address, or a
    /// relayed address ([`IceConfig::relay`]: send it through that TURN allocation).
    pub local: SocketAddr,
    /// The destination.
    pub to: SocketAddr,
    /// The STUN message.
    pub bytes: Vec<u8>,
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceStats {
    /// Connectivity checks sent (retransmissions included; consent checks too).
    pub checks_sent: u64,
    /// Requests received (checks and consent checks).
    pub checks_received: u64,
    /// Success responses received to our checks.
    pub responses_received: u64,
    /// Time from the start of the checks to the first selected pair of every component.
    pub connected_after: Option<Duration>,
    /// Consent checks that got no answer.
    pub consent_failures: u64,
    /// Role conflicts resolved.
    pub role_conflicts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Frozen,
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Pair {
    local: usize,
    remote: usize,
    priority: u64,
    state: PairState,
    /// A check on it succeeded (§7.2.5.3.2: on the valid list); stays so while a nominating
    /// or triggered check is in progress.
    valid: bool,
    /// The controlling agent nominates it (its next check carries USE-CANDIDATE).
    nominating: bool,
    /// The controlled agent got USE-CANDIDATE on it before its own check succeeded.
    nominate_on_success: bool,
}

#[derive(Debug, Clone)]
struct Txn {
    id: TransactionId,
    pair: usize,
    bytes: Vec<u8>,
    to: SocketAddr,
    component: u8,
    /// The base it leaves from ([`Transmit::local`]).
    local: SocketAddr,
    sends: u32,
    rto: Duration,
    next_at: Instant,
    nominating: bool,
    /// A consent check (RFC 7675): sent once, its answer refreshes consent.
    consent: bool,
    /// Sent while controlling (a 487 to it switches us only if we still are).
    controlling: bool,
    /// §7.3.1.4: a triggered check replaced it: no more retransmissions, its answer still
    /// counts until its next send would have been due.
    cancelled: bool,
}

/// A request that came before the peer's description.
#[derive(Debug, Clone)]
struct Early {
    local: usize,
    component: u8,
    from: SocketAddr,
    priority: u32,
    use_candidate: bool,
}

/// Our candidates for `cfg` (what [`IceAgent::local_candidates`] will be, for an SDP made
/// before the agent exists), and the server-reflexive addresses dropped as equal to a host
/// candidate (RFC 8445 §5.1.3).
pub fn local_candidates(cfg: &IceConfig) -> (Vec<Candidate>, Vec<SocketAddr>) {
    let mut locals: Vec<Candidate> = Vec::new();
    let mut dropped = Vec::new();
    if !cfg.relay_only {
        locals.extend(cfg.host.iter().map(|(c, a)| Candidate::host(*c, *a)));
        for &(c, addr, base) in &cfg.srflx {
            // RFC 8445 §5.1.3: a candidate equal to another (same address, same base)
            // is redundant: a server-reflexive address equal to its host (no NAT).
            if locals.iter().any(|l| l.component == c && l.addr == addr) {
                dropped.push(addr);
            } else {
                locals.push(Candidate::server_reflexive(c, addr, base));
            }
        }
    }
    locals.extend(
        cfg.relay
            .iter()
            .map(|&(c, addr, mapped)| Candidate::relayed(c, addr, mapped)),
    );
    (locals, dropped)
}

/// The ICE agent of one call's media (see the module doc for how to drive it).
#[derive(Debug)]
pub struct IceAgent {
    cfg: IceConfig,
    tie_breaker: u64,
    rng: SmallRng,
    locals: Vec<Candidate>,
    remote: Option<RemoteIce>,
    pairs: Vec<Pair>,
    triggered: VecDeque<usize>,
    txns: Vec<Txn>,
    early: Vec<Early>,
    state: IceState,
    started: Option<Instant>,
    next_check: Option<Instant>,
    /// Per component (index component − 1): the selected pair.
    selected: [Option<usize>; 2],
    /// Per component: when the controlling agent nominates its best valid pair even if a
    /// better one is still being checked ([`NOMINATION_WAIT`] after its first valid pair).
    nominate_at: [Option<Instant>; 2],
    last_consent: Option<Instant>,
    next_consent: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<IceEvent>,
    stats: IceStats,
    prflx: u32,
    /// Server-reflexive addresses dropped as equal to a host candidate (RFC 8445 §5.1.3).
    dropped: Vec<SocketAddr>,
}

impl IceAgent {
    /// An agent with our candidates, waiting for the peer's description.
    pub fn new(cfg: IceConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let (locals, dropped) = local_candidates(&cfg);
        IceAgent {
            tie_breaker: rng.random(),
            rng,
            locals,
            remote: None,
            pairs: Vec::new(),
            triggered: VecDeque::new(),
            txns: Vec::new(),
            early: Vec::new(),
            state: IceState::New,
            started: None,
            next_check: None,
            selected: [None; 2],
            nominate_at: [None; 2],
            last_consent: None,
            next_consent: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: IceStats::default(),
            prflx: 0,
            dropped,
            cfg,
        }
    }

    // ---- getters ----

    /// Our candidates (for the SDP).
    pub fn local_candidates(&self) -> &[Candidate] {
        &self.locals
    }

    /// Server-reflexive addresses not offered: equal to a host candidate (RFC 8445 §5.1.3,
    /// no NAT between us and the STUN server).
    pub fn dropped_srflx(&self) -> &[SocketAddr] {
        &self.dropped
    }

    /// Our candidate of `component`'s selected pair: its address and type (relayed: its
    /// media goes through the TURN allocation).
    pub fn selected_local(&self, component: u8) -> Option<(SocketAddr, CandidateType)> {
        if self.state == IceState::Disconnected {
            return None;
        }
        let pi = (*self.selected.get(usize::from(component).checked_sub(1)?)?)?;
        let l = &self.locals[self.pairs[pi].local];
        Some((l.addr, l.kind))
    }

    /// Our credentials (for the SDP).
    pub fn credentials(&self) -> &Credentials {
        &self.cfg.local
    }

    /// Whether we are ICE-lite.
    pub fn is_lite(&self) -> bool {
        self.cfg.lite
    }

    /// The state.
    pub fn state(&self) -> IceState {
        self.state
    }

    /// Whether we control.
    pub fn controlling(&self) -> bool {
        self.cfg.controlling
    }

    /// The peer's credentials, once known.
    pub fn remote_credentials(&self) -> Option<&Credentials> {
        self.remote.as_ref().map(|r| &r.credentials)
    }

    /// Where `component`'s media goes: the selected pair's remote address and type (while
    /// consent holds; `None` before selection and after consent is lost).
    pub fn selected(&self, component: u8) -> Option<(SocketAddr, CandidateType)> {
        if self.state == IceState::Disconnected {
            return None;
        }
        let pi = (*self.selected.get(usize::from(component).checked_sub(1)?)?)?;
        let p = &self.pairs[pi];
        let r = &self.remote.as_ref()?.candidates[p.remote];
        Some((r.addr, r.kind))
    }

    /// Whether `from` is the selected remote of `component` (media from elsewhere is not
    /// the call's once ICE selected).
    pub fn is_selected_remote(&self, component: u8, from: SocketAddr) -> bool {
        self.selected(component).is_some_and(|(a, _)| a == from)
    }

    /// The counters.
    pub fn stats(&self) -> IceStats {
        self.stats
    }

    fn components(&self) -> usize {
        self.locals
            .iter()
            .map(|c| usize::from(c.component))
            .max()
            .unwrap_or(1)
    }

    // ---- inputs ----

    /// The peer's description: forms the checklist (§6.1.2) and starts the checks at `now`.
    /// A second description with the same credentials changes nothing (a re-INVITE keeps
    /// the ICE session, RFC 8839 §4.4.1.1.2); new credentials restart ICE (§9).
    pub fn set_remote(&mut self, now: Instant, remote: RemoteIce) {
        if let Some(old) = &self.remote {
            if old.credentials == remote.credentials {
                return;
            }
            self.restart();
        }
        if remote.lite && !self.cfg.lite && !self.cfg.controlling {
            // §6.1.1: with a lite peer the full agent controls.
            self.cfg.controlling = true;
            self.events
                .push_back(IceEvent::RoleSwitched { controlling: true });
        }
        self.remote = Some(remote);
        self.started = Some(now);
        let remote = self.remote.as_ref().expect("set just above");
        if !self.cfg.lite {
            // §6.1.2.4: a server-reflexive local candidate is replaced by its base, whose
            // pair (the host candidate's) is there already: never paired.
            let paired = self
                .locals
                .iter()
                .enumerate()
                .filter(|(_, l)| l.kind != CandidateType::ServerReflexive);
            for (li, l) in paired {
                for (ri, r) in remote.candidates.iter().enumerate() {
                    if l.component == r.component && compatible(l.addr, r.addr) {
                        self.pairs.push(Pair {
                            local: li,
                            remote: ri,
                            priority: 0,
                            state: PairState::Frozen,
                            valid: false,
                            nominating: false,
                            nominate_on_success: false,
                        });
                    }
                }
            }
            self.reprioritise();
            self.pairs.truncate(MAX_PAIRS);
            // §6.1.2.6: per foundation, the pair of the lowest component (then the highest
            // priority: the list is sorted) starts Waiting.
            let mut seen: Vec<(String, String)> = Vec::new();
            for i in 0..self.pairs.len() {
                let f = self.foundation(i);
                if self.pairs[i].state == PairState::Frozen && !seen.contains(&f) {
                    let comp = self.locals[self.pairs[i].local].component;
                    let lowest = self
                        .pairs
                        .iter()
                        .filter(|p| self.foundation_of(p) == f)
                        .map(|p| self.locals[p.local].component)
                        .min();
                    if lowest == Some(comp) {
                        self.pairs[i].state = PairState::Waiting;
                        seen.push(f);
                    }
                }
            }
            self.next_check = Some(now);
        }
        self.set_state(IceState::Checking);
        for e in std::mem::take(&mut self.early) {
            self.on_check(
                now,
                e.local,
                e.component,
                e.from,
                e.priority,
                e.use_candidate,
            );
        }
        if !self.cfg.lite && self.pairs.is_empty() {
            // No candidate we can pair with: nothing will ever connect (unless the peer
            // checks us first, which a peer-reflexive candidate then catches).
            self.check_failed(now);
        }
    }

    fn restart(&mut self) {
        self.pairs.clear();
        self.triggered.clear();
        self.txns.clear();
        self.selected = [None; 2];
        self.nominate_at = [None; 2];
        self.next_consent = None;
        self.last_consent = None;
        self.next_check = None;
        self.remote = None;
        self.stats.connected_after = None;
    }

    /// A STUN datagram arrived on `component`'s socket from `from`. `Err`: not a STUN
    /// message we can read (the driver counts it); requests and responses that fail the
    /// checks of RFC 8445 §7.3 are answered with an error or dropped, and are not errors.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        component: u8,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), StunError> {
        let local = self
            .locals
            .iter()
            .position(|c| c.component == component && c.kind == CandidateType::Host);
        self.handle(now, local, from, bytes)
    }

    /// A STUN datagram from `from` that arrived through the TURN allocation of our relayed
    /// candidate `relayed` (a Data indication or ChannelData the driver unwrapped).
    pub fn handle_relayed(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), StunError> {
        let local = self
            .locals
            .iter()
            .position(|c| c.addr == relayed && c.kind == CandidateType::Relayed);
        self.handle(now, local, from, bytes)
    }

    fn handle(
        &mut self,
        now: Instant,
        local: Option<usize>,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), StunError> {
        let m = Message::parse(bytes)?;
        if m.method != BINDING {
            return Ok(());
        }
        match m.class {
            // Requests on no local candidate of ours (the host socket under `relay_only`)
            // are not answered: that path is not offered.
            Class::Request => {
                if let Some(li) = local {
                    self.on_request(now, li, from, &m);
                }
            }
            Class::Success | Class::Error => self.on_response(now, from, &m),
            Class::Indication => {}
        }
        Ok(())
    }

    fn respond_error(
        &mut self,
        li: usize,
        to: SocketAddr,
        m: &Message<'_>,
        code: u16,
        reason: &str,
        key: Option<&str>,
    ) {
        let mut b = Builder::new(Class::Error, BINDING, m.transaction).error_code(code, reason);
        if let Some(k) = key {
            b = b.integrity(k.as_bytes());
        }
        let l = &self.locals[li];
        self.transmits.push_back(Transmit {
            component: l.component,
            local: l.base(),
            to,
            bytes: b.fingerprint(),
        });
        if code != 487 {
            self.events.push_back(IceEvent::Rejected { from: to, code });
        }
    }

    /// RFC 8445 §7.3: a check (or a consent check) from the peer.
    fn on_request(&mut self, now: Instant, li: usize, from: SocketAddr, m: &Message<'_>) {
        let component = self.locals[li].component;
        if !compatible(self.locals[li].addr, from) {
            // Not answered: a path we do not pair (see `compatible`); the peer's check
            // fails as if the packet were lost.
            return;
        }
        self.stats.checks_received += 1;
        // RFC 8489 §9.1.3: USERNAME "LFRAG:RFRAG" whose first part is ours, and integrity
        // under our password; else 400 (missing) or 401.
        let (Some(user), true) = (m.username, m.has_integrity()) else {
            return self.respond_error(li, from, m, 400, "Bad Request", None);
        };
        let ours = user.split(':').next() == Some(self.cfg.local.ufrag.as_str());
        if !ours || !m.check_integrity(self.cfg.local.pwd.as_bytes()) {
            return self.respond_error(li, from, m, 401, "Unauthenticated", None);
        }
        let pwd = self.cfg.local.pwd.clone();
        if !m.unknown_required.is_empty() {
            return self.respond_error(li, from, m, 420, "Unknown Attribute", Some(&pwd));
        }
        // §7.3.1.1: a role conflict (both controlling, or both controlled) is resolved by
        // the tie-breakers: the larger one controls; the agent that keeps its role answers
        // 487, the other switches.
        let same_role = if self.cfg.controlling {
            m.ice_controlling
        } else {
            m.ice_controlled
        };
        if let (false, Some(theirs)) = (self.cfg.lite, same_role) {
            if (self.tie_breaker >= theirs) == self.cfg.controlling {
                self.stats.role_conflicts += 1;
                return self.respond_error(li, from, m, 487, "Role Conflict", Some(&pwd));
            }
            self.switch_role();
        }
        // §7.3.1.2: the success response, XOR-MAPPED-ADDRESS the source.
        let bytes = Builder::new(Class::Success, BINDING, m.transaction)
            .xor_mapped_address(from)
            .integrity(pwd.as_bytes())
            .fingerprint();
        self.transmits.push_back(Transmit {
            component,
            local: self.locals[li].base(),
            to: from,
            bytes,
        });
        let priority = m.priority.unwrap_or_else(|| {
            Candidate::priority_of(CandidateType::PeerReflexive, u16::MAX, component)
        });
        if self.remote.is_none() {
            if self.early.len() < MAX_EARLY {
                self.early.push(Early {
                    local: li,
                    component,
                    from,
                    priority,
                    use_candidate: m.use_candidate,
                });
            }
            return;
        }
        self.on_check(now, li, component, from, priority, m.use_candidate);
    }

    fn switch_role(&mut self) {
        self.cfg.controlling = !self.cfg.controlling;
        self.stats.role_conflicts += 1;
        self.reprioritise();
        self.events.push_back(IceEvent::RoleSwitched {
            controlling: self.cfg.controlling,
        });
    }

    /// §7.3.1.3–§7.3.1.5: a check's source becomes a (peer-reflexive) remote candidate and
    /// a pair with a triggered check; USE-CANDIDATE nominates it (controlled agent).
    fn on_check(
        &mut self,
        now: Instant,
        local: usize,
        component: u8,
        from: SocketAddr,
        priority: u32,
        use_candidate: bool,
    ) {
        let Some(remote) = self.remote.as_mut() else {
            return;
        };
        let ri = match remote
            .candidates
            .iter()
            .position(|c| c.addr == from && c.component == component)
        {
            Some(i) => i,
            None => {
                self.prflx += 1;
                remote.candidates.push(Candidate {
                    foundation: format!("prflx{}", self.prflx),
                    component,
                    priority,
                    addr: from,
                    kind: CandidateType::PeerReflexive,
                    related: None,
                });
                remote.candidates.len() - 1
            }
        };
        let pi = match self
            .pairs
            .iter()
            .position(|p| p.local == local && p.remote == ri)
        {
            Some(i) => i,
            None => {
                if self.pairs.len() >= MAX_PAIRS * 2 {
                    return;
                }
                self.pairs.push(Pair {
                    local,
                    remote: ri,
                    priority: 0,
                    state: PairState::Waiting,
                    valid: false,
                    nominating: false,
                    nominate_on_success: false,
                });
                let i = self.pairs.len() - 1;
                self.pairs[i].priority = self.pair_priority(i);
                i
            }
        };
        if self.cfg.lite {
            // §2.5, §7.3.1.5: a lite agent's pair is valid when checked; USE-CANDIDATE
            // selects it.
            self.pairs[pi].state = PairState::Succeeded;
            self.pairs[pi].valid = true;
            if use_candidate {
                self.select(now, pi);
            }
            return;
        }
        if use_candidate && !self.cfg.controlling {
            if self.pairs[pi].valid {
                self.select(now, pi);
                return;
            }
            self.pairs[pi].nominate_on_success = true;
        }
        // §7.3.1.4: a triggered check, unless the pair is already valid.
        if !self.pairs[pi].valid {
            self.pairs[pi].state = PairState::Waiting;
            if !self.triggered.contains(&pi) {
                self.triggered.push_back(pi);
            }
            if self.next_check.is_none_or(|t| t > now + TA) {
                self.next_check = Some(now);
            }
            if self.state == IceState::Failed {
                self.set_state(IceState::Checking);
            }
        }
    }

    /// §7.2.5: the answer to one of our checks.
    fn on_response(&mut self, now: Instant, from: SocketAddr, m: &Message<'_>) {
        let Some(ti) = self.txns.iter().position(|t| t.id == m.transaction) else {
            return;
        };
        let Some(pwd) = self.remote.as_ref().map(|r| r.credentials.pwd.clone()) else {
            return;
        };
        // §7.2.5.1: a response without the peer's integrity is dropped (it may be forged).
        if !m.check_integrity(pwd.as_bytes()) {
            return;
        }
        let t = self.txns.swap_remove(ti);
        let pi = t.pair;
        if t.consent {
            if m.class == Class::Success && from == t.to {
                self.last_consent = Some(now);
            }
            return;
        }
        if m.class == Class::Error {
            let code = m.error.as_ref().map_or(0, |e| e.code);
            if code == 487 {
                // §7.2.5.1: switch (if the check was sent in the role we still have) and
                // check the pair again.
                if t.controlling == self.cfg.controlling {
                    self.switch_role();
                }
                self.pairs[pi].state = PairState::Waiting;
                self.triggered.push_back(pi);
                if self.next_check.is_none() {
                    self.next_check = Some(now);
                }
            } else {
                self.fail_pair(now, pi, "error response");
            }
            return;
        }
        // §7.2.5.2.1: the response must come from where the check went.
        if from != t.to {
            self.fail_pair(now, pi, "asymmetric response");
            return;
        }
        self.stats.responses_received += 1;
        self.pairs[pi].state = PairState::Succeeded;
        self.pairs[pi].valid = true;
        let comp = usize::from(self.locals[self.pairs[pi].local].component) - 1;
        if self.selected[comp].is_none() {
            self.nominate_at[comp].get_or_insert(now + NOMINATION_WAIT);
        }
        // §7.2.5.3.3: pairs of the same foundation unfreeze.
        let f = self.foundation(pi);
        for i in 0..self.pairs.len() {
            if self.pairs[i].state == PairState::Frozen && self.foundation(i) == f {
                self.pairs[i].state = PairState::Waiting;
            }
        }
        // §7.2.5.3.4 (controlling: the nominating check succeeded), §7.3.1.5 (controlled:
        // USE-CANDIDATE came before our check succeeded).
        if (t.nominating && self.cfg.controlling)
            || (!self.cfg.controlling && self.pairs[pi].nominate_on_success)
        {
            self.select(now, pi);
        }
        self.nominate(now);
        self.wake(now);
    }

    /// Paces checks again when a pair waits (or is frozen) and the pacing stopped.
    fn wake(&mut self, now: Instant) {
        if self.next_check.is_none()
            && self
                .pairs
                .iter()
                .any(|p| matches!(p.state, PairState::Frozen | PairState::Waiting))
        {
            self.next_check = Some(now);
        }
    }

    fn fail_pair(&mut self, now: Instant, pi: usize, why: &'static str) {
        self.pairs[pi].state = PairState::Failed;
        self.pairs[pi].valid = false;
        self.pairs[pi].nominating = false;
        let p = &self.pairs[pi];
        if let Some(r) = self.remote.as_ref() {
            self.events.push_back(IceEvent::PairFailed {
                local: self.locals[p.local].addr,
                remote: r.candidates[p.remote].addr,
                why,
            });
        }
        self.wake(now);
        self.check_failed(now);
    }

    /// §8.1.2: the checklist fails when every pair failed and a component has none selected.
    fn check_failed(&mut self, _now: Instant) {
        if self.state != IceState::Checking {
            return;
        }
        let all_failed = self.pairs.iter().all(|p| p.state == PairState::Failed);
        let unselected = (0..self.components()).any(|c| self.selected[c].is_none());
        if all_failed && unselected && self.triggered.is_empty() {
            self.next_check = None;
            self.set_state(IceState::Failed);
        }
    }

    fn select(&mut self, now: Instant, pi: usize) {
        let comp = self.locals[self.pairs[pi].local].component;
        let c = usize::from(comp) - 1;
        if let Some(old) = self.selected[c]
            && (old == pi || self.pairs[old].priority > self.pairs[pi].priority)
        {
            return;
        }
        self.selected[c] = Some(pi);
        let p = &self.pairs[pi];
        let r = &self
            .remote
            .as_ref()
            .expect("a pair has a remote")
            .candidates[p.remote];
        self.events.push_back(IceEvent::Selected {
            component: comp,
            local: self.locals[p.local].addr,
            local_kind: self.locals[p.local].kind,
            remote: r.addr,
            remote_kind: r.kind,
        });
        if (0..self.components()).all(|c| self.selected[c].is_some())
            && self.state != IceState::Connected
        {
            if self.stats.connected_after.is_none() {
                self.stats.connected_after = self.started.map(|s| now.saturating_duration_since(s));
            }
            self.last_consent = Some(now);
            if !self.cfg.lite {
                self.next_consent = Some(now + self.consent_delay());
            }
            self.set_state(IceState::Connected);
        }
    }

    fn consent_delay(&mut self) -> Duration {
        // RFC 7675 §5.1: randomised 0.8–1.2 of the interval.
        self.cfg
            .consent_interval
            .mul_f64(self.rng.random_range(0.8..1.2))
    }

    fn set_state(&mut self, s: IceState) {
        if self.state != s {
            self.state = s;
            self.events.push_back(IceEvent::State(s));
        }
    }

    /// Timers: retransmissions, the next paced check, nomination, consent.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retransmit(now);
        if self.cfg.lite || self.remote.is_none() {
            return;
        }
        self.nominate(now);
        if self.next_check.is_some_and(|t| t <= now) {
            self.next_check = self.send_next_check(now).then_some(now + TA);
        }
        self.consent(now);
    }

    fn retransmit(&mut self, now: Instant) {
        let max = self.cfg.max_sends;
        let mut i = 0;
        while i < self.txns.len() {
            let t = &mut self.txns[i];
            if t.next_at > now {
                i += 1;
                continue;
            }
            if t.cancelled {
                self.txns.swap_remove(i);
                continue;
            }
            if t.consent {
                // One send per consent check; its answer may come until the next one.
                self.stats.consent_failures += 1;
                self.txns.swap_remove(i);
                continue;
            }
            if t.sends >= max {
                let t = self.txns.swap_remove(i);
                self.fail_pair(now, t.pair, "no answer");
                continue;
            }
            // RFC 8489 §6.2.1: the interval doubles; after the last send, wait Rm × RTO.
            t.sends += 1;
            t.next_at = now
                + if t.sends == max {
                    t.rto * 16
                } else {
                    t.rto * 2u32.saturating_pow(t.sends - 1)
                };
            self.stats.checks_sent += 1;
            self.transmits.push_back(Transmit {
                component: t.component,
                local: t.local,
                to: t.to,
                bytes: t.bytes.clone(),
            });
            i += 1;
        }
    }

    /// Regular nomination (§8.1.1): the controlling agent nominates a component's best
    /// valid pair once no better pair is still pending, or [`NOMINATION_WAIT`] after its
    /// first valid pair.
    fn nominate(&mut self, now: Instant) {
        if !self.cfg.controlling {
            return;
        }
        for c in 0..self.components() {
            if self.selected[c].is_some()
                || self
                    .pairs
                    .iter()
                    .any(|p| p.nominating && self.locals[p.local].component as usize == c + 1)
            {
                self.nominate_at[c] = None;
                continue;
            }
            let of_c = |p: &&Pair| usize::from(self.locals[p.local].component) == c + 1;
            let Some(best) = self
                .pairs
                .iter()
                .filter(of_c)
                .filter(|p| p.valid)
                .map(|p| p.priority)
                .max()
            else {
                continue;
            };
            let better_pending = self.pairs.iter().filter(of_c).any(|p| {
                p.priority > best
                    && matches!(
                        p.state,
                        PairState::Frozen | PairState::Waiting | PairState::InProgress
                    )
            });
            let waited = self.nominate_at[c].is_some_and(|t| now >= t);
            if better_pending && !waited {
                continue;
            }
            if let Some(pi) = self.pairs.iter().position(|p| {
                usize::from(self.locals[p.local].component) == c + 1
                    && p.valid
                    && p.priority == best
            }) {
                self.pairs[pi].nominating = true;
                self.nominate_at[c] = None;
                self.triggered.retain(|t| *t != pi);
                self.triggered.push_front(pi);
                if self.next_check.is_none_or(|t| t > now) {
                    self.next_check = Some(now);
                }
            }
        }
    }

    /// Sends the next check (§6.1.4.2): the triggered queue first, then the best Waiting
    /// pair, then a Frozen one whose foundation has none Waiting or In-Progress. False:
    /// nothing to check.
    fn send_next_check(&mut self, now: Instant) -> bool {
        let pi = loop {
            if let Some(pi) = self.triggered.pop_front() {
                if self.pairs[pi].state != PairState::Failed || self.pairs[pi].nominating {
                    break Some(pi);
                }
                continue;
            }
            let waiting = (0..self.pairs.len())
                .filter(|i| self.pairs[*i].state == PairState::Waiting)
                .max_by_key(|i| self.pairs[*i].priority);
            if waiting.is_some() {
                break waiting;
            }
            let busy: Vec<(String, String)> = (0..self.pairs.len())
                .filter(|i| {
                    matches!(
                        self.pairs[*i].state,
                        PairState::Waiting | PairState::InProgress
                    )
                })
                .map(|i| self.foundation(i))
                .collect();
            break (0..self.pairs.len())
                .filter(|i| {
                    self.pairs[*i].state == PairState::Frozen
                        && !busy.contains(&self.foundation(*i))
                })
                .max_by_key(|i| self.pairs[*i].priority);
        };
        let Some(pi) = pi else {
            return false;
        };
        self.send_check(now, pi, false);
        true
    }

    fn send_check(&mut self, now: Instant, pi: usize, consent: bool) {
        let Some(remote) = self.remote.as_ref() else {
            return;
        };
        let p = &self.pairs[pi];
        let (l, r) = (&self.locals[p.local], &remote.candidates[p.remote]);
        let nominating = p.nominating && self.cfg.controlling;
        let id = TransactionId(self.rng.random());
        let mut b = Builder::new(Class::Request, BINDING, id)
            .username(&format!(
                "{}:{}",
                remote.credentials.ufrag, self.cfg.local.ufrag
            ))
            .priority(Candidate::priority_of(
                CandidateType::PeerReflexive,
                u16::MAX,
                l.component,
            ))
            .role(self.cfg.controlling, self.tie_breaker);
        if nominating {
            b = b.use_candidate();
        }
        let bytes = b.integrity(remote.credentials.pwd.as_bytes()).fingerprint();
        let pending = self
            .pairs
            .iter()
            .filter(|p| matches!(p.state, PairState::Waiting | PairState::InProgress))
            .count() as u32;
        // RFC 8445 §14.3.
        let rto = MIN_RTO.max(TA * pending);
        let (component, to, local) = (l.component, r.addr, l.base());
        if !consent {
            self.pairs[pi].state = PairState::InProgress;
            for t in self.txns.iter_mut().filter(|t| t.pair == pi && !t.consent) {
                t.cancelled = true;
            }
        }
        self.txns.push(Txn {
            id,
            pair: pi,
            bytes: bytes.clone(),
            to,
            component,
            local,
            sends: 1,
            rto,
            next_at: now
                + if consent {
                    self.cfg.consent_interval
                } else {
                    rto
                },
            nominating,
            consent,
            controlling: self.cfg.controlling,
            cancelled: false,
        });
        self.stats.checks_sent += 1;
        self.transmits.push_back(Transmit {
            component,
            local,
            to,
            bytes,
        });
    }

    /// RFC 7675: a check on each selected pair about every 5 s; no answer for 30 s loses
    /// consent (media must stop).
    fn consent(&mut self, now: Instant) {
        if self.state != IceState::Connected {
            return;
        }
        if self
            .last_consent
            .is_some_and(|t| now >= t + self.cfg.consent_timeout)
        {
            self.next_consent = None;
            self.set_state(IceState::Disconnected);
            return;
        }
        if self.next_consent.is_some_and(|t| t <= now) {
            for c in 0..self.components() {
                if let Some(pi) = self.selected[c] {
                    self.send_check(now, pi, true);
                }
            }
            self.next_consent = Some(now + self.consent_delay());
        }
    }

    // ---- outputs ----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let consent_expiry = (self.state == IceState::Connected && !self.cfg.lite)
            .then(|| self.last_consent.map(|t| t + self.cfg.consent_timeout))
            .flatten();
        let nomination = self
            .cfg
            .controlling
            .then(|| self.nominate_at.iter().flatten().min().copied())
            .flatten();
        self.txns
            .iter()
            .map(|t| t.next_at)
            .chain(self.next_check)
            .chain(self.next_consent)
            .chain(consent_expiry)
            .chain(nomination)
            .min()
    }

    // ---- helpers ----

    /// §6.1.2.3: 2^32·MIN(G,D) + 2·MAX(G,D) + (G>D ? 1 : 0), G the controlling agent's
    /// candidate's priority.
    fn pair_priority(&self, pi: usize) -> u64 {
        let p = &self.pairs[pi];
        let l = u64::from(self.locals[p.local].priority);
        let r = u64::from(
            self.remote
                .as_ref()
                .map_or(0, |r| r.candidates[p.remote].priority),
        );
        let (g, d) = if self.cfg.controlling { (l, r) } else { (r, l) };
        (g.min(d) << 32) + 2 * g.max(d) + u64::from(g > d)
    }

    fn reprioritise(&mut self) {
        for i in 0..self.pairs.len() {
            self.pairs[i].priority = self.pair_priority(i);
        }
        // Sorting moves indices; only before any transaction or triggered entry exists.
        if self.txns.is_empty() && self.triggered.is_empty() && self.selected == [None; 2] {
            self.pairs.sort_by_key(|p| std::cmp::Reverse(p.priority));
        }
    }

    fn foundation_of(&self, p: &Pair) -> (String, String) {
        let r = self
            .remote
            .as_ref()
            .map_or(String::new(), |r| r.candidates[p.remote].foundation.clone());
        (self.locals[p.local].foundation.clone(), r)
    }

    fn foundation(&self, pi: usize) -> (String, String) {
        self.foundation_of(&self.pairs[pi])
    }
}

/// The SDP side of ICE (RFC 8839).
pub mod sdp {
    use super::{Candidate, CandidateError, Credentials, RemoteIce};
    use crate::sdp::{Attribute, MediaDescription, SessionDescription};

    /// The attributes of our audio section: `a=ice-ufrag`, `a=ice-pwd`, one `a=candidate`
    /// per candidate, and `a=end-of-candidates` (RFC 8840 §4.1: no trickle), plus
    /// `a=ice-lite` when we are lite (a session-level attribute; put first by the caller).
    pub fn attributes(creds: &Credentials, candidates: &[Candidate]) -> Vec<Attribute> {
        let a = |name: &str, value: Option<String>| Attribute {
            name: name.into(),
            value,
        };
        let mut v = vec![
            a("ice-ufrag", Some(creds.ufrag.clone())),
            a("ice-pwd", Some(creds.pwd.clone())),
        ];
        v.extend(candidates.iter().map(|c| a("candidate", Some(c.to_sdp()))));
        v.push(a("end-of-candidates", None));
        v
    }

    /// Why the peer's description has no usable ICE.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum RemoteIceError {
        /// `a=ice-ufrag` without `a=ice-pwd` or the reverse, or one too short (RFC 8839
        /// §5.4: ufrag ≥ 4, pwd ≥ 22 characters).
        #[error("incomplete or invalid ICE credentials (RFC 8839 §5.4)")]
        BadCredentials,
    }

    /// The peer's ICE in its session `sd`, audio section `m` (media-level attributes
    /// override session-level ones, RFC 8839 §5.4). `Ok(None)`: no ICE attributes (RFC 8445
    /// §5.1 fallback: the c=/m= address). Candidates that cannot be used (not UDP, names,
    /// malformed) are returned apart, for the trace.
    pub fn remote(
        sd: &SessionDescription,
        m: &MediaDescription,
    ) -> Result<Option<(RemoteIce, Vec<CandidateError>)>, RemoteIceError> {
        let get = |name: &str| {
            m.attributes
                .iter()
                .chain(sd.attributes.iter())
                .find(|a| a.name == name)
                .and_then(|a| a.value.clone())
        };
        let (ufrag, pwd) = (get("ice-ufrag"), get("ice-pwd"));
        let (ufrag, pwd) = match (ufrag, pwd) {
            (None, None) => return Ok(None),
            (Some(u), Some(p))
                if u.len() >= 4 && p.len() >= 22 && u.len() <= 256 && p.len() <= 256 =>
            {
                (u, p)
            }
            _ => return Err(RemoteIceError::BadCredentials),
        };
        let lite = sd.attributes.iter().any(|a| a.name == "ice-lite");
        let mut candidates = Vec::new();
        let mut skipped = Vec::new();
        for a in m.attributes.iter().filter(|a| a.name == "candidate") {
            match Candidate::parse_sdp(a.value.as_deref().unwrap_or("")) {
                Ok(c) => candidates.push(c),
                Err(e) => skipped.push(e),
            }
        }
        Ok(Some((
            RemoteIce {
                credentials: Credentials { ufrag, pwd },
                candidates,
                lite,
            },
            skipped,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(n: u8) -> Credentials {
        Credentials {
            ufrag: format!("ufr{n}"),
            pwd: format!("password-of-agent-{n}-xxxxxx"),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    /// Two agents on a virtual clock: datagrams between their addresses, delivered 5 ms
    /// later, lost with probability `loss` (seeded).
    struct Net {
        agents: Vec<IceAgent>,
        /// Per agent: its components' addresses.
        addrs: Vec<Vec<(u8, SocketAddr)>>,
        flight: Vec<(Instant, usize, u8, SocketAddr, Vec<u8>)>,
        rng: SmallRng,
        loss: f64,
        /// Agents that are gone: nothing they send or are sent is delivered.
        deaf: Vec<bool>,
        events: Vec<Vec<IceEvent>>,
        now: Instant,
    }

    impl Net {
        fn new(cfgs: Vec<IceConfig>, loss: f64, seed: u64) -> Self {
            let addrs = cfgs.iter().map(|c| c.host.clone()).collect();
            let n = cfgs.len();
            Net {
                agents: cfgs.into_iter().map(IceAgent::new).collect(),
                addrs,
                flight: Vec::new(),
                rng: SmallRng::seed_from_u64(seed),
                loss,
                deaf: vec![false; n],
                events: vec![Vec::new(); n],
                now: Instant::now(),
            }
        }

        fn remote_of(&self, i: usize, lite: bool) -> RemoteIce {
            RemoteIce {
                credentials: self.agents[i].credentials().clone(),
                candidates: self.agents[i].local_candidates().to_vec(),
                lite,
            }
        }

        fn drain(&mut self) {
            for i in 0..self.agents.len() {
                while let Some(t) = self.agents[i].poll_transmit() {
                    let from = self.addrs[i]
                        .iter()
                        .find(|(c, _)| *c == t.component)
                        .expect("component")
                        .1;
                    let Some(j) = self
                        .addrs
                        .iter()
                        .position(|a| a.iter().any(|(_, x)| *x == t.to))
                    else {
                        continue;
                    };
                    if self.rng.random_bool(self.loss) {
                        continue;
                    }
                    let comp = self.addrs[j]
                        .iter()
                        .find(|(_, x)| *x == t.to)
                        .expect("found")
                        .0;
                    self.flight
                        .push((self.now + Duration::from_millis(5), j, comp, from, t.bytes));
                }
                while let Some(e) = self.agents[i].poll_event() {
                    self.events[i].push(e);
                }
            }
        }

        /// Runs until `until` (virtual).
        fn run(&mut self, until: Duration) {
            let end = self.now + until;
            loop {
                self.drain();
                let next = self
                    .agents
                    .iter()
                    .filter_map(IceAgent::poll_timeout)
                    .chain(self.flight.iter().map(|f| f.0))
                    .min();
                let Some(next) = next.filter(|t| *t <= end) else {
                    self.now = end;
                    return;
                };
                self.now = self.now.max(next);
                let now = self.now;
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flight)
                    .into_iter()
                    .partition(|f| f.0 <= now);
                self.flight = later;
                for (_, j, comp, from, bytes) in due {
                    if !self.deaf[j] && !self.deaf[from_agent(&self.addrs, from)] {
                        self.agents[j]
                            .handle_datagram(now, comp, from, &bytes)
                            .expect("valid STUN");
                    }
                }
                for a in &mut self.agents {
                    if a.poll_timeout().is_some_and(|t| t <= now) {
                        a.handle_timeout(now);
                    }
                }
            }
        }

        fn start(&mut self, lite: [bool; 2]) {
            let (r0, r1) = (self.remote_of(0, lite[0]), self.remote_of(1, lite[1]));
            let now = self.now;
            self.agents[0].set_remote(now, r1);
            self.agents[1].set_remote(now, r0);
        }
    }

    fn from_agent(addrs: &[Vec<(u8, SocketAddr)>], from: SocketAddr) -> usize {
        addrs
            .iter()
            .position(|a| a.iter().any(|(_, x)| *x == from))
            .expect("a known sender")
    }

    fn pair(controlling: [bool; 2], components: u8, seeds: [u64; 2]) -> Vec<IceConfig> {
        (0..2)
            .map(|i| {
                let host = (1..=components)
                    .map(|c| {
                        (
                            c,
                            addr(&format!("127.0.0.{}:{}", i + 1, 40000 + u16::from(c))),
                        )
                    })
                    .collect();
                IceConfig::new(creds(i as u8), host, controlling[i], seeds[i])
            })
            .collect()
    }

    fn selected_both(net: &Net, components: u8) {
        for c in 1..=components {
            let (a, _) = net.agents[0].selected(c).expect("0 selected");
            let (b, _) = net.agents[1].selected(c).expect("1 selected");
            assert_eq!(a, net.addrs[1][usize::from(c) - 1].1);
            assert_eq!(b, net.addrs[0][usize::from(c) - 1].1);
        }
    }

    #[test]
    fn two_agents_connect_and_keep_consent() {
        let mut net = Net::new(pair([true, false], 1, [1, 2]), 0.0, 7);
        net.start([false, false]);
        net.run(Duration::from_secs(2));
        assert_eq!(net.agents[0].state(), IceState::Connected);
        assert_eq!(net.agents[1].state(), IceState::Connected);
        selected_both(&net, 1);
        let s = net.agents[0].stats();
        assert!(
            s.connected_after.expect("connected") < Duration::from_millis(100),
            "{s:?}"
        );
        assert_eq!(
            net.agents[1].selected(1).map(|s| s.1),
            Some(CandidateType::Host)
        );
        // Consent checks keep it up for a minute.
        let sent = net.agents[0].stats().checks_sent;
        net.run(Duration::from_secs(60));
        assert_eq!(net.agents[0].state(), IceState::Connected);
        let consent = net.agents[0].stats().checks_sent - sent;
        assert!(
            (10..=16).contains(&consent),
            "{consent} consent checks in 60 s"
        );
        assert_eq!(net.agents[0].stats().consent_failures, 0);
    }

    #[test]
    fn two_agents_connect_under_loss_with_two_components() {
        for seed in 0..20 {
            // 20 % each way: a check and its answer both arrive with p = 0.64, so one of
            // the 7 sends of a pair's check gets through but with p = 0.36^7 ≈ 0.08 %.
            let mut net = Net::new(pair([true, false], 2, [seed, seed + 100]), 0.2, seed);
            net.start([false, false]);
            net.run(Duration::from_secs(45));
            assert_eq!(net.agents[0].state(), IceState::Connected, "seed {seed}");
            assert_eq!(net.agents[1].state(), IceState::Connected, "seed {seed}");
            selected_both(&net, 2);
        }
    }

    #[test]
    fn role_conflict_is_resolved_by_the_tie_breakers() {
        for controlling in [true, false] {
            let mut net = Net::new(pair([controlling, controlling], 1, [3, 4]), 0.0, 1);
            net.start([false, false]);
            net.run(Duration::from_secs(5));
            assert_eq!(net.agents[0].state(), IceState::Connected);
            assert_eq!(net.agents[1].state(), IceState::Connected);
            assert_ne!(net.agents[0].controlling(), net.agents[1].controlling());
            let switched = net
                .events
                .iter()
                .flatten()
                .filter(|e| matches!(e, IceEvent::RoleSwitched { .. }))
                .count();
            assert_eq!(switched, 1, "{:?}", net.events);
            selected_both(&net, 1);
        }
    }

    #[test]
    fn a_peer_that_never_answers_fails_after_the_checklist_timeouts() {
        let mut net = Net::new(pair([true, false], 1, [5, 6]), 0.0, 1);
        net.deaf[1] = true;
        let t0 = net.now;
        net.start([false, false]);
        net.run(Duration::from_secs(39));
        assert_eq!(net.agents[0].state(), IceState::Checking);
        net.run(Duration::from_secs(1));
        assert_eq!(net.agents[0].state(), IceState::Failed);
        // RFC 8489 §6.2.1 with RTO 500 ms: sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s,
        // failure at 39.5 s.
        assert_eq!(net.agents[0].stats().checks_sent, 7);
        let failed = net.events[0].iter().any(|e| {
            matches!(
                e,
                IceEvent::PairFailed {
                    why: "no answer",
                    ..
                }
            )
        });
        assert!(failed, "{:?}", net.events[0]);
        assert!(net.now - t0 >= Duration::from_millis(39_500));
    }

    #[test]
    fn consent_lost_after_30_s_without_answers() {
        let mut net = Net::new(pair([true, false], 1, [8, 9]), 0.0, 1);
        net.start([false, false]);
        net.run(Duration::from_secs(1));
        assert_eq!(net.agents[0].state(), IceState::Connected);
        net.deaf[1] = true;
        net.run(Duration::from_secs(29));
        assert_eq!(net.agents[0].state(), IceState::Connected);
        net.run(Duration::from_secs(2));
        assert_eq!(net.agents[0].state(), IceState::Disconnected);
        assert!(net.agents[0].selected(1).is_none());
        assert!(net.agents[0].stats().consent_failures >= 4);
    }

    #[test]
    fn a_full_agent_controls_an_ice_lite_peer() {
        let mut cfgs = pair([false, false], 1, [10, 11]);
        cfgs[1].lite = true;
        let mut net = Net::new(cfgs, 0.0, 1);
        // The full agent learns the peer is lite (a=ice-lite) and controls.
        net.start([false, true]);
        net.run(Duration::from_secs(2));
        assert!(net.agents[0].controlling());
        assert_eq!(net.agents[0].state(), IceState::Connected);
        assert_eq!(net.agents[1].state(), IceState::Connected);
        selected_both(&net, 1);
        // The lite agent never checks (§2.5): it only answers.
        assert_eq!(net.agents[1].stats().checks_sent, 0);
    }

    #[test]
    fn peer_reflexive_candidate_from_a_check() {
        let mut net = Net::new(pair([true, false], 1, [12, 13]), 0.0, 1);
        // Agent 1 was told no candidates of agent 0 (a NAT would hide them): it learns 0's
        // address from 0's check.
        let r0 = RemoteIce {
            candidates: Vec::new(),
            ..net.remote_of(0, false)
        };
        let r1 = net.remote_of(1, false);
        let now = net.now;
        net.agents[0].set_remote(now, r1);
        // Its check arrives before 1 has the description: answered, kept, processed later.
        net.run(Duration::from_millis(20));
        net.agents[1].set_remote(net.now, r0);
        net.run(Duration::from_secs(2));
        assert_eq!(net.agents[1].state(), IceState::Connected);
        assert_eq!(
            net.agents[1].selected(1).map(|s| s.1),
            Some(CandidateType::PeerReflexive)
        );
        selected_both(&net, 1);
    }

    #[test]
    fn a_loopback_candidate_pairs_and_answers_only_loopback() {
        let mut a = IceAgent::new(pair([true, false], 1, [1, 2]).remove(0));
        let now = Instant::now();
        let remote = RemoteIce {
            credentials: creds(1),
            candidates: vec![
                Candidate::host(1, addr("192.0.2.2:5000")),
                Candidate::host(1, addr("127.0.0.2:40001")),
            ],
            lite: false,
        };
        a.set_remote(now, remote);
        a.handle_timeout(now);
        let t = a.poll_transmit().expect("a check");
        assert_eq!(t.to, addr("127.0.0.2:40001"));
        a.handle_timeout(now + TA);
        assert!(a.poll_transmit().is_none(), "192.0.2.2 is not paired");
        // A check from a non-loopback address to our loopback candidate: not answered.
        let req = Builder::new(Class::Request, BINDING, TransactionId([2; 12]))
            .username("ufr0:ufr1")
            .integrity(creds(0).pwd.as_bytes())
            .fingerprint();
        a.handle_datagram(now, 1, addr("192.0.2.2:5000"), &req)
            .expect("STUN");
        assert!(a.poll_transmit().is_none());
        assert_eq!(a.stats().checks_received, 0);
    }

    #[test]
    fn bad_credentials_are_rejected_with_401() {
        let mut net = Net::new(pair([true, false], 1, [14, 15]), 0.0, 1);
        let mut r1 = net.remote_of(1, false);
        r1.credentials.pwd = "wrong-password-xxxxxxxxxxx".into();
        let r0 = net.remote_of(0, false);
        let now = net.now;
        net.agents[0].set_remote(now, r1);
        net.agents[1].set_remote(now, r0);
        net.run(Duration::from_secs(1));
        let rejected = net.events[1]
            .iter()
            .any(|e| matches!(e, IceEvent::Rejected { code: 401, .. }));
        assert!(rejected, "{:?}", net.events[1]);
        assert_ne!(net.agents[0].state(), IceState::Connected);
    }

    #[test]
    fn same_credentials_keep_the_session_new_ones_restart() {
        let mut net = Net::new(pair([true, false], 1, [16, 17]), 0.0, 1);
        net.start([false, false]);
        net.run(Duration::from_secs(1));
        let r1 = net.remote_of(1, false);
        let now = net.now;
        net.agents[0].set_remote(now, r1.clone());
        assert_eq!(net.agents[0].state(), IceState::Connected);
        let mut r1b = r1;
        r1b.credentials.ufrag = "newfrag".into();
        net.agents[0].set_remote(now, r1b);
        assert_eq!(net.agents[0].state(), IceState::Checking);
        assert!(net.agents[0].selected(1).is_none());
    }

    #[test]
    fn candidate_lines_round_trip_and_bad_ones_are_errors() {
        let c = Candidate::host(1, addr("127.0.0.1:5000"));
        assert_eq!(Candidate::parse_sdp(&c.to_sdp()), Ok(c));
        let srflx = "842163049 1 udp 1677729535 203.0.113.5 61665 typ srflx raddr 10.0.0.2 rport 61665 generation 0 network-cost 999";
        let c = Candidate::parse_sdp(srflx).expect("parses");
        assert_eq!(c.kind, CandidateType::ServerReflexive);
        assert_eq!(c.related, Some(addr("10.0.0.2:61665")));
        assert!(matches!(
            Candidate::parse_sdp("1 1 TCP 2128609279 10.0.0.2 9 typ host tcptype active"),
            Err(CandidateError::NotUdp(_))
        ));
        assert!(matches!(
            Candidate::parse_sdp("1 1 udp 2122260223 3f1c-a.local 5000 typ host"),
            Err(CandidateError::Name(_))
        ));
        for bad in [
            "",
            "1 1 udp",
            "1 3 udp 1 1.2.3.4 5 typ host",
            "1 1 udp 1 1.2.3.4 99999 typ host",
            "1 1 udp 1 1.2.3.4 5 type host",
            "1 1 udp 1 1.2.3.4 5 typ bogus",
            "1 1 udp 1 1.2.3.4 5 typ host raddr",
        ] {
            assert!(
                matches!(Candidate::parse_sdp(bad), Err(CandidateError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Candidate::priority_of(CandidateType::Host, 65535, 1),
            2_130_706_431
        );
    }

    #[test]
    fn remote_ice_from_sdp() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=ice-lite\r\n\
                   m=audio 5000 RTP/AVP 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
                   a=candidate:1 1 UDP 2130706431 127.0.0.1 5000 typ host\r\n\
                   a=candidate:2 1 TCP 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n";
        let sd = SessionDescriptionForTest::parse(sdp);
        let (r, skipped) = sdp::remote(&sd, &sd.media[0]).expect("valid").expect("ICE");
        assert!(r.lite);
        assert_eq!(r.candidates.len(), 1);
        assert_eq!(skipped.len(), 1);
        let plain = SessionDescriptionForTest::parse(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
        );
        assert_eq!(sdp::remote(&plain, &plain.media[0]), Ok(None));
        let short = SessionDescriptionForTest::parse(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=ice-ufrag:ab\r\na=ice-pwd:x\r\n",
        );
        assert_eq!(
            sdp::remote(&short, &short.media[0]),
            Err(sdp::RemoteIceError::BadCredentials)
        );
        let attrs = sdp::attributes(&creds(1), &[Candidate::host(1, addr("127.0.0.1:5000"))]);
        assert_eq!(
            attrs.last().map(|a| a.name.as_str()),
            Some("end-of-candidates")
        );
    }

    struct SessionDescriptionForTest;
    impl SessionDescriptionForTest {
        fn parse(s: &str) -> crate::sdp::SessionDescription {
            crate::sdp::SessionDescription::parse(s.as_bytes()).expect("SDP")
        }
    }

    #[test]
    fn a_srflx_equal_to_its_host_is_dropped_and_others_are_offered_not_paired() {
        let host = addr("192.0.2.1:40001");
        let mut cfg = IceConfig::new(creds(1), vec![(1, host)], true, 1);
        cfg.srflx = vec![(1, host, host), (1, addr("203.0.113.7:61000"), host)];
        let mut a = IceAgent::new(cfg);
        assert_eq!(a.dropped_srflx(), [host]);
        let kinds: Vec<_> = a.local_candidates().iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [CandidateType::Host, CandidateType::ServerReflexive]);
        let srflx = &a.local_candidates()[1];
        assert_eq!(srflx.base(), host);
        assert!(
            srflx
                .to_sdp()
                .ends_with("typ srflx raddr 192.0.2.1 rport 40001")
        );
        assert!(srflx.priority < a.local_candidates()[0].priority);
        // §6.1.2.4: one pair (host), checks leave from the host socket.
        let now = Instant::now();
        a.set_remote(
            now,
            RemoteIce {
                credentials: creds(2),
                candidates: vec![Candidate::host(1, addr("192.0.2.2:40001"))],
                lite: false,
            },
        );
        a.handle_timeout(now);
        let t = a.poll_transmit().expect("a check");
        assert_eq!((t.local, t.to), (host, addr("192.0.2.2:40001")));
        a.handle_timeout(now + TA);
        assert!(a.poll_transmit().is_none(), "only the host pair");
    }

    /// Two relay-only agents (`iceTransportPolicy: "relay"`): checks leave from and arrive
    /// at the relayed addresses (a perfect relay between them here), the selected pair is
    /// relayed on both sides, and a check straight to the host socket is not answered.
    #[test]
    fn relay_only_agents_connect_through_their_relayed_candidates() {
        let relays = [addr("198.51.100.1:50000"), addr("198.51.100.1:50002")];
        let hosts = [addr("192.0.2.1:40001"), addr("192.0.2.2:40001")];
        let mut agents: Vec<IceAgent> = (0..2)
            .map(|i| {
                let mut cfg = IceConfig::new(creds(i as u8), vec![(1, hosts[i])], i == 0, i as u64);
                cfg.relay = vec![(1, relays[i], addr("203.0.113.1:1000"))];
                cfg.relay_only = true;
                IceAgent::new(cfg)
            })
            .collect();
        for a in &agents {
            let kinds: Vec<_> = a.local_candidates().iter().map(|c| c.kind).collect();
            assert_eq!(kinds, [CandidateType::Relayed], "no host under relay_only");
        }
        let mut now = Instant::now();
        let remotes: Vec<_> = agents
            .iter()
            .map(|a| RemoteIce {
                credentials: a.credentials().clone(),
                candidates: a.local_candidates().to_vec(),
                lite: false,
            })
            .collect();
        agents[0].set_remote(now, remotes[1].clone());
        agents[1].set_remote(now, remotes[0].clone());
        let end = now + Duration::from_secs(5);
        while now < end && agents.iter().any(|a| a.state() != IceState::Connected) {
            for i in 0..2 {
                while let Some(t) = agents[i].poll_transmit() {
                    assert_eq!(t.local, relays[i], "through the allocation");
                    let j = relays.iter().position(|r| *r == t.to).expect("to a relay");
                    agents[j]
                        .handle_relayed(now, relays[j], relays[i], &t.bytes)
                        .expect("valid");
                }
            }
            now += Duration::from_millis(5);
            for a in &mut agents {
                a.handle_timeout(now);
            }
        }
        for i in 0..2 {
            assert_eq!(agents[i].state(), IceState::Connected, "agent {i}");
            assert_eq!(
                agents[i].selected_local(1),
                Some((relays[i], CandidateType::Relayed))
            );
            assert_eq!(
                agents[i].selected(1),
                Some((relays[1 - i], CandidateType::Relayed))
            );
        }
        // Straight to the host socket: not answered (that path is not offered).
        let check = Builder::new(Class::Request, BINDING, TransactionId([1; 12]))
            .username(&format!("{}:{}", creds(1).ufrag, creds(0).ufrag))
            .priority(1)
            .role(false, 1)
            .integrity(creds(1).pwd.as_bytes())
            .fingerprint();
        while agents[1].poll_transmit().is_some() {}
        agents[1]
            .handle_datagram(now, 1, hosts[0], &check)
            .expect("valid");
        assert!(agents[1].poll_transmit().is_none());
    }

    #[test]
    fn garbage_datagrams_are_errors_not_panics() {
        let mut a = IceAgent::new(pair([true, false], 1, [1, 2]).remove(0));
        let now = Instant::now();
        for bytes in [
            &b""[..],
            b"\x00\x01\x00\x00",
            &[0u8; 20],
            &[
                0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 9,
            ],
        ] {
            assert!(
                a.handle_datagram(now, 1, addr("127.0.0.9:9"), bytes)
                    .is_err()
            );
        }
        // A request without credentials: 400, no panic.
        let req = Builder::new(Class::Request, BINDING, TransactionId([1; 12])).fingerprint();
        a.handle_datagram(now, 1, addr("127.0.0.9:9"), &req)
            .expect("STUN");
        let t = a.poll_transmit().expect("an answer");
        assert_eq!(
            Message::parse(&t.bytes)
                .expect("STUN")
                .error
                .map(|e| e.code),
            Some(400)
        );
        assert!(crate::stun::is_stun(&t.bytes));
    }
}
