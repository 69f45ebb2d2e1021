//! A TURN client (RFC 8656) over UDP for one allocation, sans-IO, on top of [`crate::stun`]:
//! Allocate with long-term credentials (RFC 8489 §9.2: the first request goes without, the
//! server's 401 gives REALM and NONCE, the key is MD5(username:realm:password); a 438 Stale
//! Nonce is retried with the new nonce), REQUESTED-TRANSPORT UDP, XOR-RELAYED-ADDRESS and
//! LIFETIME; Refresh before the allocation expires and with LIFETIME 0 at the end
//! ([`TurnClient::close`]); CreatePermission per peer address; ChannelBind and ChannelData
//! (§12); Send and Data indications (§11) to and from a peer without a channel.
//!
//! # Driving it
//!
//! [`TurnClient::new`], then [`TurnClient::allocate`]. Every datagram from the server
//! ([`TurnClient::server`]) goes to [`TurnClient::handle_datagram`], which returns the peer
//! data it carried (a Data indication or ChannelData), if any; [`TurnClient::handle_timeout`]
//! when [`TurnClient::poll_timeout`] is reached. After every input drain
//! [`TurnClient::poll_transmit`] (datagrams to send to the server) and
//! [`TurnClient::poll_event`] (allocation steps, errors). Commands:
//! [`TurnClient::create_permission`], [`TurnClient::bind_channel`], [`TurnClient::close`];
//! [`TurnClient::send`] wraps a payload for a peer (ChannelData once the peer's channel is
//! bound, a Send indication before). Time is passed in, transaction IDs come from a seeded
//! RNG; no I/O, no clock reads.
//!
//! Requests are retransmitted like ICE's checks (RFC 8489 §6.2.1): RTO 500 ms doubling, `Rc`
//! = 7 sends and a last wait of 16 × RTO; a request without an answer then fails.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::stun::{Builder, Class, Message, StunError, TransactionId, attr, is_stun};

/// RFC 8656 §18: the TURN methods.
pub mod method {
    /// Allocate (§7).
    pub const ALLOCATE: u16 = 0x003;
    /// Refresh (§8).
    pub const REFRESH: u16 = 0x004;
    /// Send indication (§11).
    pub const SEND: u16 = 0x006;
    /// Data indication (§11).
    pub const DATA: u16 = 0x007;
    /// CreatePermission (§10).
    pub const CREATE_PERMISSION: u16 = 0x008;
    /// ChannelBind (§12).
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// RFC 8656 §18.7: REQUESTED-TRANSPORT carries the IP protocol number, 17 for UDP.
const UDP: u8 = 17;
/// RFC 8489 §6.2.1: the initial RTO, the number of sends and the last wait's multiple.
const RTO: Duration = Duration::from_millis(500);
const RC: u32 = 7;
const RM: u32 = 16;
/// RFC 8656 §7.2: the server's default allocation lifetime, when LIFETIME is missing.
const DEFAULT_LIFETIME: u32 = 600;
/// RFC 8656 §9: permissions last 300 s; refreshed a minute early.
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// RFC 8656 §12: channel bindings last 600 s; refreshed a minute early.
const CHANNEL_REFRESH: Duration = Duration::from_secs(540);
/// RFC 8656 §12: channel numbers 0x4000–0x4FFF.
const FIRST_CHANNEL: u16 = 0x4000;
const LAST_CHANNEL: u16 = 0x4FFF;
/// How many 438 Stale Nonce answers one request may get before it fails.
const MAX_STALE: u8 = 3;

/// MD5(username ":" realm ":" password), the long-term credential key (RFC 8489 §9.2.2).
/// No SASLprep/OpaqueString: ASCII credentials, which are all we take, are unchanged by it.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Where the TURN server is and who we are to it.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// The server's UDP address.
    pub server: SocketAddr,
    /// The long-term username.
    pub username: String,
    /// The long-term password.
    pub password: String,
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why the allocation (or a permission or channel on it) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// 401 to a request that carried our credentials (RFC 8489 §9.2.5): wrong user or password.
    #[error("TURN 401 Unauthorized: the server refused user {0:?} and its password")]
    Unauthorized(String),
    /// 401 without REALM and NONCE: no long-term credential challenge.
    #[error("TURN 401 without REALM and NONCE")]
    NoChallenge,
    /// 438 Stale Nonce again and again.
    #[error("TURN 438 Stale Nonce {MAX_STALE} times in a row")]
    StaleNonce,
    /// RFC 8656 §7.2: 486 Allocation Quota Reached.
    #[error("TURN 486 Allocation Quota Reached")]
    QuotaReached,
    /// RFC 8656 §7.2: 508 Insufficient Capacity.
    #[error("TURN 508 Insufficient Capacity")]
    InsufficientCapacity,
    /// Any other error response.
    #[error("TURN {method} rejected: {code} {reason}")]
    Rejected {
        /// The request's method name.
        method: &'static str,
        /// The ERROR-CODE.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// A success response without an attribute it must carry.
    #[error("TURN {0} success without {1}")]
    Missing(&'static str, &'static str),
    /// No answer after the last retransmission.
    #[error("TURN server {server} did not answer the {method} request")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// The request's method name.
        method: &'static str,
    },
}

/// A datagram from the server that is not TURN we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnInputError {
    /// A malformed STUN message.
    #[error(transparent)]
    Stun(#[from] StunError),
    /// ChannelData shorter than its header or its length field.
    #[error("truncated ChannelData ({0} bytes)")]
    TruncatedChannelData(usize),
    /// ChannelData on a channel we did not bind.
    #[error("ChannelData on unbound channel {0:#06x}")]
    UnknownChannel(u16),
    /// A Data indication without XOR-PEER-ADDRESS or DATA.
    #[error("Data indication without XOR-PEER-ADDRESS or DATA")]
    BadDataIndication,
    /// Neither STUN nor ChannelData.
    #[error("not TURN (first byte {0:#04x})")]
    NotTurn(u8),
}

/// What happened to the allocation, for the trace and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// The server asked for credentials (401 with REALM and NONCE); the request is re-sent
    /// with them.
    Challenged {
        /// The server's REALM.
        realm: String,
    },
    /// 438 Stale Nonce: the request is re-sent with the new NONCE.
    StaleNonce,
    /// The allocation exists.
    Allocated {
        /// XOR-RELAYED-ADDRESS: the relayed transport address (our relay candidate).
        relayed: SocketAddr,
        /// XOR-MAPPED-ADDRESS: our address as the server saw it, if given.
        mapped: Option<SocketAddr>,
        /// LIFETIME.
        lifetime: Duration,
    },
    /// A Refresh succeeded.
    Refreshed {
        /// The new LIFETIME.
        lifetime: Duration,
    },
    /// A permission for the peer's IP address is installed.
    PermissionCreated(IpAddr),
    /// A channel to the peer is bound.
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// The channel number.
        channel: u16,
    },
    /// A CreatePermission or ChannelBind for the peer failed; the allocation remains.
    PeerFailed {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        error: TurnError,
    },
    /// The allocation failed or was lost; the client is done.
    Failed(TurnError),
    /// The allocation was released (Refresh with LIFETIME 0 answered, or not answered).
    Closed,
}

/// Where the allocation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnState {
    /// Not started.
    Idle,
    /// Allocate sent.
    Allocating,
    /// Allocated.
    Allocated,
    /// Refresh with LIFETIME 0 sent.
    Closing,
    /// Released.
    Closed,
    /// Failed (see the [`TurnEvent::Failed`] event).
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Allocate,
    Refresh(u32),
    CreatePermission(SocketAddr),
    ChannelBind(SocketAddr, u16),
}

impl Request {
    fn method(self) -> u16 {
        match self {
            Request::Allocate => method::ALLOCATE,
            Request::Refresh(_) => method::REFRESH,
            Request::CreatePermission(_) => method::CREATE_PERMISSION,
            Request::ChannelBind(..) => method::CHANNEL_BIND,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Request::Allocate => "Allocate",
            Request::Refresh(_) => "Refresh",
            Request::CreatePermission(_) => "CreatePermission",
            Request::ChannelBind(..) => "ChannelBind",
        }
    }
}

#[derive(Debug)]
struct Pending {
    txn: TransactionId,
    req: Request,
    bytes: Vec<u8>,
    /// When to retransmit (or, after the last send, give up).
    next: Instant,
    rto: Duration,
    sends: u32,
    authenticated: bool,
    stale: u8,
}

#[derive(Debug)]
struct Permission {
    peer: SocketAddr,
    installed: bool,
    /// When to refresh it (once installed); `None` while a request is in flight.
    refresh_at: Option<Instant>,
}

#[derive(Debug)]
struct Channel {
    peer: SocketAddr,
    number: u16,
    bound: bool,
    refresh_at: Option<Instant>,
}

/// The long-term credential state after the server's challenge.
struct Auth {
    realm: String,
    nonce: Vec<u8>,
    key: [u8; 16],
}

/// One TURN allocation over UDP. See the module doc for how to drive it.
pub struct TurnClient {
    cfg: TurnConfig,
    rng: SmallRng,
    state: TurnState,
    auth: Option<Auth>,
    relayed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    refresh_at: Option<Instant>,
    pending: Vec<Pending>,
    permissions: Vec<Permission>,
    channels: Vec<Channel>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<TurnEvent>,
    error: Option<TurnError>,
}

impl fmt::Debug for TurnClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnClient")
            .field("cfg", &self.cfg)
            .field("state", &self.state)
            .field("relayed", &self.relayed)
            .finish_non_exhaustive()
    }
}

impl TurnClient {
    /// A client for `cfg`, transaction IDs from `seed`.
    pub fn new(cfg: TurnConfig, seed: u64) -> Self {
        TurnClient {
            cfg,
            rng: SmallRng::seed_from_u64(seed),
            state: TurnState::Idle,
            auth: None,
            relayed: None,
            mapped: None,
            refresh_at: None,
            pending: Vec::new(),
            permissions: Vec::new(),
            channels: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            error: None,
        }
    }

    // ---- getters ----

    /// The server's address: where every datagram of [`TurnClient::poll_transmit`] goes.
    pub fn server(&self) -> SocketAddr {
        self.cfg.server
    }

    /// Where the allocation is.
    pub fn state(&self) -> TurnState {
        self.state
    }

    /// The relayed transport address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed.filter(|_| self.state == TurnState::Allocated)
    }

    /// XOR-MAPPED-ADDRESS of the Allocate response, if the server gave one.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// Why the allocation failed, once it has.
    pub fn error(&self) -> Option<&TurnError> {
        self.error.as_ref()
    }

    /// Whether a permission for `peer`'s IP address is installed.
    pub fn has_permission(&self, peer: SocketAddr) -> bool {
        self.permissions
            .iter()
            .any(|p| p.peer.ip() == peer.ip() && p.installed)
            || self
                .channels
                .iter()
                .any(|c| c.peer.ip() == peer.ip() && c.bound)
    }

    /// The channel bound to `peer`, if any.
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.bound)
            .map(|c| c.number)
    }

    // ---- commands ----

    /// Sends the Allocate request (without credentials: RFC 8489 §9.2.3, the server's 401
    /// says which realm and nonce to use). Only from [`TurnState::Idle`].
    pub fn allocate(&mut self, now: Instant) {
        if self.state == TurnState::Idle {
            self.state = TurnState::Allocating;
            self.request(now, Request::Allocate);
        }
    }

    /// Asks for a permission for `peer`'s IP address (RFC 8656 §10), now or once allocated,
    /// and keeps it refreshed. Once per IP address.
    pub fn create_permission(&mut self, now: Instant, peer: SocketAddr) {
        if self.permissions.iter().any(|p| p.peer.ip() == peer.ip()) {
            return;
        }
        self.permissions.push(Permission {
            peer,
            installed: false,
            refresh_at: None,
        });
        if self.state == TurnState::Allocated {
            self.request(now, Request::CreatePermission(peer));
        }
    }

    /// Binds a channel to `peer` (RFC 8656 §12), now or once allocated, and keeps it
    /// refreshed; returns its number, or `None` when all 4096 are taken.
    pub fn bind_channel(&mut self, now: Instant, peer: SocketAddr) -> Option<u16> {
        if let Some(c) = self.channels.iter().find(|c| c.peer == peer) {
            return Some(c.number);
        }
        let number = FIRST_CHANNEL.checked_add(u16::try_from(self.channels.len()).ok()?)?;
        if number > LAST_CHANNEL {
            return None;
        }
        self.channels.push(Channel {
            peer,
            number,
            bound: false,
            refresh_at: None,
        });
        if self.state == TurnState::Allocated {
            self.request(now, Request::ChannelBind(peer, number));
        }
        Some(number)
    }

    /// Releases the allocation: a Refresh with LIFETIME 0 (RFC 8656 §8). Anything else in
    /// flight is dropped. Before an allocation exists, the client is simply closed.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            TurnState::Allocated => {
                self.pending.clear();
                self.state = TurnState::Closing;
                self.refresh_at = None;
                self.request(now, Request::Refresh(0));
            }
            TurnState::Idle | TurnState::Allocating => {
                self.pending.clear();
                self.state = TurnState::Closed;
                self.events.push_back(TurnEvent::Closed);
            }
            TurnState::Closing | TurnState::Closed | TurnState::Failed => {}
        }
    }

    /// `payload` for `peer`, wrapped for the server: ChannelData once the peer's channel is
    /// bound (RFC 8656 §12.4; no padding over UDP, §12.5), a Send indication before (§11.1;
    /// the server drops it until the peer's permission exists). `None` without an allocation.
    pub fn send(&mut self, peer: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        if self.state != TurnState::Allocated {
            return None;
        }
        if let Some(number) = self.channel(peer) {
            let len = u16::try_from(payload.len()).ok()?;
            let mut out = Vec::with_capacity(4 + payload.len());
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(payload);
            return Some(out);
        }
        let txn = self.txn();
        Some(
            Builder::new(Class::Indication, method::SEND, txn)
                .xor_address(attr::XOR_PEER_ADDRESS, peer)
                .data(payload)
                .fingerprint(),
        )
    }

    // ---- inputs ----

    /// A datagram from the server. Returns the peer data it carries (ChannelData or a Data
    /// indication): the peer's address and the payload. Responses drive the allocation.
    /// Malformed input is an error, never a panic; a response to no request of ours is
    /// ignored (a late retransmission).
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        datagram: &'a [u8],
    ) -> Result<Option<(SocketAddr, &'a [u8])>, TurnInputError> {
        let first = *datagram
            .first()
            .ok_or(TurnInputError::TruncatedChannelData(0))?;
        // RFC 8656 §12 and RFC 7983 §7 as updated: ChannelData starts with 0x40–0x4F.
        if (0x40..=0x4F).contains(&first) {
            if datagram.len() < 4 {
                return Err(TurnInputError::TruncatedChannelData(datagram.len()));
            }
            let number = u16::from_be_bytes([datagram[0], datagram[1]]);
            let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
            let payload = datagram
                .get(4..4 + len)
                .ok_or(TurnInputError::TruncatedChannelData(datagram.len()))?;
            let peer = self
                .channels
                .iter()
                .find(|c| c.number == number && c.bound)
                .map(|c| c.peer)
                .ok_or(TurnInputError::UnknownChannel(number))?;
            return Ok(Some((peer, payload)));
        }
        if !is_stun(datagram) {
            return Err(TurnInputError::NotTurn(first));
        }
        let m = Message::parse(datagram)?;
        match m.class {
            Class::Indication if m.method == method::DATA => match (m.xor_peer_address, m.data) {
                (Some(peer), Some(data)) => Ok(Some((peer, data))),
                _ => Err(TurnInputError::BadDataIndication),
            },
            Class::Success | Class::Error => {
                self.on_response(now, &m);
                Ok(None)
            }
            // Requests and other indications from a TURN server: nothing for a client.
            _ => Ok(None),
        }
    }

    /// Retransmissions, request timeouts and refreshes due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].next > now {
                i += 1;
                continue;
            }
            let p = &mut self.pending[i];
            if p.sends >= RC {
                let p = self.pending.remove(i);
                let error = TurnError::Timeout {
                    server: self.cfg.server,
                    method: p.req.name(),
                };
                self.request_failed(p.req, error);
                continue;
            }
            // RFC 8489 §6.2.1: RTO doubles; after the last send wait Rm × the initial RTO.
            p.rto *= 2;
            p.sends += 1;
            p.next = now + if p.sends == RC { RTO * RM } else { p.rto };
            self.transmits.push_back(p.bytes.clone());
            i += 1;
        }
        if self.state != TurnState::Allocated {
            return;
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            self.request(now, Request::Refresh(DEFAULT_LIFETIME));
        }
        let mut due = Vec::new();
        for p in &mut self.permissions {
            if p.refresh_at.is_some_and(|t| t <= now) {
                p.refresh_at = None;
                due.push(Request::CreatePermission(p.peer));
            }
        }
        for c in &mut self.channels {
            if c.refresh_at.is_some_and(|t| t <= now) {
                c.refresh_at = None;
                due.push(Request::ChannelBind(c.peer, c.number));
            }
        }
        for req in due {
            self.request(now, req);
        }
    }

    // ---- outputs ----

    /// The next datagram to send to [`TurnClient::server`].
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// When [`TurnClient::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let refreshes = self
            .permissions
            .iter()
            .map(|p| p.refresh_at)
            .chain(self.channels.iter().map(|c| c.refresh_at))
            .chain([self.refresh_at]);
        self.pending
            .iter()
            .map(|p| Some(p.next))
            .chain(refreshes)
            .flatten()
            .min()
    }

    // ---- internals ----

    fn txn(&mut self) -> TransactionId {
        TransactionId(self.rng.random())
    }

    fn build(&self, txn: TransactionId, req: Request) -> Vec<u8> {
        let mut b = Builder::new(Class::Request, req.method(), txn);
        b = match req {
            Request::Allocate => b.requested_transport(UDP),
            Request::Refresh(lifetime) => b.lifetime(lifetime),
            Request::CreatePermission(peer) => b.xor_address(attr::XOR_PEER_ADDRESS, peer),
            Request::ChannelBind(peer, number) => b
                .channel_number(number)
                .xor_address(attr::XOR_PEER_ADDRESS, peer),
        };
        if let Some(auth) = &self.auth {
            b = b
                .username(&self.cfg.username)
                .realm(&auth.realm)
                .nonce(&auth.nonce)
                .integrity(&auth.key);
        }
        b.fingerprint()
    }

    fn request(&mut self, now: Instant, req: Request) {
        self.send_request(now, req, 0);
    }

    fn send_request(&mut self, now: Instant, req: Request, stale: u8) {
        let txn = self.txn();
        let bytes = self.build(txn, req);
        self.transmits.push_back(bytes.clone());
        self.pending.push(Pending {
            txn,
            req,
            bytes,
            next: now + RTO,
            rto: RTO,
            sends: 1,
            authenticated: self.auth.is_some(),
            stale,
        });
    }

    fn on_response(&mut self, now: Instant, m: &Message<'_>) {
        let Some(i) = self.pending.iter().position(|p| p.txn == m.transaction) else {
            return;
        };
        let p = &self.pending[i];
        if m.method != p.req.method() {
            return;
        }
        // RFC 8489 §9.2.5: a response to an authenticated request must carry a valid
        // MESSAGE-INTEGRITY under our key; one that does not is discarded (not ours).
        if p.authenticated && m.class == Class::Success {
            let ok = self
                .auth
                .as_ref()
                .is_some_and(|a| m.check_integrity(&a.key));
            if !ok {
                return;
            }
        }
        let p = self.pending.remove(i);
        match m.class {
            Class::Success => self.on_success(now, p.req, m),
            _ => self.on_error(now, p, m),
        }
    }

    fn on_success(&mut self, now: Instant, req: Request, m: &Message<'_>) {
        match req {
            Request::Allocate => {
                let Some(relayed) = m.xor_relayed_address else {
                    self.fail(TurnError::Missing("Allocate", "XOR-RELAYED-ADDRESS"));
                    return;
                };
                let lifetime = m.lifetime.unwrap_or(DEFAULT_LIFETIME);
                self.state = TurnState::Allocated;
                self.relayed = Some(relayed);
                self.mapped = m.xor_mapped_address;
                self.schedule_refresh(now, lifetime);
                self.events.push_back(TurnEvent::Allocated {
                    relayed,
                    mapped: m.xor_mapped_address,
                    lifetime: Duration::from_secs(u64::from(lifetime)),
                });
                // What was asked for before the allocation existed.
                let peers: Vec<_> = self.permissions.iter().map(|p| p.peer).collect();
                for peer in peers {
                    self.request(now, Request::CreatePermission(peer));
                }
                let channels: Vec<_> = self.channels.iter().map(|c| (c.peer, c.number)).collect();
                for (peer, number) in channels {
                    self.request(now, Request::ChannelBind(peer, number));
                }
            }
            Request::Refresh(0) => {
                self.state = TurnState::Closed;
                self.events.push_back(TurnEvent::Closed);
            }
            Request::Refresh(_) => {
                let lifetime = m.lifetime.unwrap_or(DEFAULT_LIFETIME);
                self.schedule_refresh(now, lifetime);
                self.events.push_back(TurnEvent::Refreshed {
                    lifetime: Duration::from_secs(u64::from(lifetime)),
                });
            }
            Request::CreatePermission(peer) => {
                if let Some(p) = self.permissions.iter_mut().find(|p| p.peer == peer) {
                    let first = !p.installed;
                    p.installed = true;
                    p.refresh_at = Some(now + PERMISSION_REFRESH);
                    if first {
                        self.events
                            .push_back(TurnEvent::PermissionCreated(peer.ip()));
                    }
                }
            }
            Request::ChannelBind(peer, number) => {
                if let Some(c) = self.channels.iter_mut().find(|c| c.number == number) {
                    let first = !c.bound;
                    c.bound = true;
                    c.refresh_at = Some(now + CHANNEL_REFRESH);
                    if first {
                        self.events.push_back(TurnEvent::ChannelBound {
                            peer,
                            channel: number,
                        });
                    }
                }
            }
        }
    }

    fn on_error(&mut self, now: Instant, p: Pending, m: &Message<'_>) {
        let (code, reason) = m
            .error
            .as_ref()
            .map_or((0, String::new()), |e| (e.code, e.reason.clone()));
        match code {
            // RFC 8489 §9.2.5: the challenge; retried once with credentials.
            401 if !p.authenticated => match (m.realm, m.nonce) {
                (Some(realm), Some(nonce)) => {
                    self.auth = Some(Auth {
                        realm: realm.to_owned(),
                        nonce: nonce.to_vec(),
                        key: long_term_key(&self.cfg.username, realm, &self.cfg.password),
                    });
                    self.events.push_back(TurnEvent::Challenged {
                        realm: realm.to_owned(),
                    });
                    self.send_request(now, p.req, p.stale);
                }
                _ => self.request_failed(p.req, TurnError::NoChallenge),
            },
            401 => {
                let user = self.cfg.username.clone();
                self.request_failed(p.req, TurnError::Unauthorized(user));
            }
            // RFC 8489 §9.2.5: 438 Stale Nonce: retry with the NONCE (and REALM) given.
            438 => match (m.nonce, p.stale < MAX_STALE) {
                (Some(nonce), true) => {
                    if let Some(auth) = &mut self.auth {
                        auth.nonce = nonce.to_vec();
                        if let Some(realm) = m.realm.filter(|r| *r != auth.realm) {
                            auth.realm = realm.to_owned();
                            auth.key = long_term_key(&self.cfg.username, realm, &self.cfg.password);
                        }
                    }
                    self.events.push_back(TurnEvent::StaleNonce);
                    self.send_request(now, p.req, p.stale + 1);
                }
                _ => self.request_failed(p.req, TurnError::StaleNonce),
            },
            486 => self.request_failed(p.req, TurnError::QuotaReached),
            508 => self.request_failed(p.req, TurnError::InsufficientCapacity),
            _ => {
                let error = TurnError::Rejected {
                    method: p.req.name(),
                    code,
                    reason,
                };
                self.request_failed(p.req, error);
            }
        }
    }

    /// A request failed for good: the allocation for Allocate and Refresh, the peer for the
    /// others. A failed Refresh with LIFETIME 0 still ends in `Closed`.
    fn request_failed(&mut self, req: Request, error: TurnError) {
        match req {
            Request::Allocate | Request::Refresh(1..) => self.fail(error),
            Request::Refresh(0) => {
                self.state = TurnState::Closed;
                self.events.push_back(TurnEvent::Closed);
            }
            Request::CreatePermission(peer) | Request::ChannelBind(peer, _) => {
                self.events.push_back(TurnEvent::PeerFailed { peer, error });
            }
        }
    }

    fn fail(&mut self, error: TurnError) {
        self.state = TurnState::Failed;
        self.pending.clear();
        self.refresh_at = None;
        for p in &mut self.permissions {
            p.refresh_at = None;
        }
        for c in &mut self.channels {
            c.refresh_at = None;
        }
        self.error = Some(error.clone());
        self.events.push_back(TurnEvent::Failed(error));
    }

    /// RFC 8656 §8: refresh before the lifetime ends: a minute early, or at half of a
    /// lifetime shorter than two minutes.
    fn schedule_refresh(&mut self, now: Instant, lifetime: u32) {
        let lifetime = u64::from(lifetime);
        let early = if lifetime > 120 {
            lifetime - 60
        } else {
            lifetime / 2
        };
        self.refresh_at = Some(now + Duration::from_secs(early.max(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &str = "sipmeter.test";
    const NONCE: &[u8] = b"0123456789abcdef";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn hex(text: &str) -> Vec<u8> {
        let hex = text
            .lines()
            .find(|l| !l.starts_with('#'))
            .expect("a hex line");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn client(password: &str) -> TurnClient {
        TurnClient::new(
            TurnConfig {
                server: addr("192.0.2.10:3478"),
                username: "u".into(),
                password: password.into(),
            },
            7,
        )
    }

    fn key() -> [u8; 16] {
        long_term_key("u", REALM, "p")
    }

    /// A request the client sent, parsed, with its integrity checked under the right key.
    fn sent(c: &mut TurnClient) -> (Vec<u8>, bool) {
        let raw = c.poll_transmit().expect("a request");
        let m = Message::parse(&raw).expect("the client sends well-formed STUN");
        assert!(m.fingerprint);
        let ok = m.check_integrity(&key());
        (raw, ok)
    }

    fn challenge(req: &[u8]) -> Vec<u8> {
        let m = Message::parse(req).expect("request");
        Builder::new(Class::Error, m.method, m.transaction)
            .error_code(401, "Unauthorized")
            .realm(REALM)
            .nonce(NONCE)
            .fingerprint()
    }

    fn error(req: &[u8], code: u16, reason: &str) -> Vec<u8> {
        let m = Message::parse(req).expect("request");
        Builder::new(Class::Error, m.method, m.transaction)
            .error_code(code, reason)
            .realm(REALM)
            .nonce(b"fresh-nonce")
            .fingerprint()
    }

    fn allocated(req: &[u8], relayed: &str, lifetime: u32) -> Vec<u8> {
        let m = Message::parse(req).expect("request");
        Builder::new(Class::Success, m.method, m.transaction)
            .xor_address(attr::XOR_RELAYED_ADDRESS, addr(relayed))
            .xor_mapped_address(addr("198.51.100.1:40000"))
            .lifetime(lifetime)
            .integrity(&key())
            .fingerprint()
    }

    fn ok(req: &[u8]) -> Vec<u8> {
        let m = Message::parse(req).expect("request");
        Builder::new(Class::Success, m.method, m.transaction)
            .integrity(&key())
            .fingerprint()
    }

    fn events(c: &mut TurnClient) -> Vec<TurnEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// Allocate → 401 → Allocate with credentials → success.
    fn allocate(c: &mut TurnClient, now: Instant) {
        c.allocate(now);
        let (first, authenticated) = sent(c);
        assert!(
            !authenticated,
            "the first Allocate goes without credentials"
        );
        c.handle_datagram(now, &challenge(&first)).expect("401");
        let (second, authenticated) = sent(c);
        assert!(authenticated);
        c.handle_datagram(now, &allocated(&second, "192.0.2.10:50000", 600))
            .expect("success");
        assert_eq!(c.state(), TurnState::Allocated);
    }

    /// RFC 5769 §2.4: the long-term key MD5(username:realm:password) verifies the sample
    /// request, and our builder writes it byte-exact (the password after SASLprep).
    #[test]
    fn rfc5769_long_term_request_verifies_and_is_built_byte_exact() {
        let raw = hex(include_str!(
            "../../../testdata/rfc5769/2.4-sample-long-term-request.hex"
        ));
        let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
        let m = Message::parse(&raw).expect("parses");
        assert_eq!(m.username, Some(username));
        assert_eq!(m.realm, Some("example.org"));
        assert_eq!(m.nonce, Some(&b"f//499k954d6OL34oL9FSTvy64sA"[..]));
        let key = long_term_key(username, "example.org", "TheMatrIX");
        assert!(m.check_integrity(&key));
        assert!(!m.check_integrity(&long_term_key(username, "example.org", "TheMatrix")));
        let txn = TransactionId([
            0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
        ]);
        let built = Builder::new(Class::Request, crate::stun::BINDING, txn)
            .username(username)
            .nonce(b"f//499k954d6OL34oL9FSTvy64sA")
            .realm("example.org")
            .integrity(&key)
            .finish();
        assert_eq!(built, raw);
    }

    #[test]
    fn turn_attributes_round_trip() {
        let txn = TransactionId([9; 12]);
        let raw = Builder::new(Class::Request, method::CHANNEL_BIND, txn)
            .requested_transport(UDP)
            .lifetime(600)
            .channel_number(0x4001)
            .xor_address(attr::XOR_PEER_ADDRESS, addr("[2001:db8::1]:5004"))
            .xor_address(attr::XOR_RELAYED_ADDRESS, addr("203.0.113.9:49152"))
            .data(b"hello")
            .fingerprint();
        let m = Message::parse(&raw).expect("parses");
        assert_eq!((m.class, m.method), (Class::Request, method::CHANNEL_BIND));
        assert_eq!(m.lifetime, Some(600));
        assert_eq!(m.channel_number, Some(0x4001));
        assert_eq!(m.xor_peer_address, Some(addr("[2001:db8::1]:5004")));
        assert_eq!(m.xor_relayed_address, Some(addr("203.0.113.9:49152")));
        assert_eq!(m.data, Some(&b"hello"[..]));
        assert!(m.unknown_required.is_empty());
    }

    #[test]
    fn allocate_with_long_term_credentials() {
        let now = Instant::now();
        let mut c = client("p");
        c.allocate(now);
        let (first, authenticated) = sent(&mut c);
        let m = Message::parse(&first).expect("request");
        assert_eq!((m.class, m.method), (Class::Request, method::ALLOCATE));
        assert!(!authenticated && m.username.is_none());
        c.handle_datagram(now, &challenge(&first)).expect("401");
        let (second, authenticated) = sent(&mut c);
        let m = Message::parse(&second).expect("request");
        assert!(authenticated);
        assert_eq!(m.username, Some("u"));
        assert_eq!(m.realm, Some(REALM));
        assert_eq!(m.nonce, Some(NONCE));
        // REQUESTED-TRANSPORT UDP (RFC 8656 §18.7).
        assert!(
            second
                .windows(8)
                .any(|w| w == [0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0])
        );
        // A response with the wrong integrity is not ours: ignored.
        let forged = Builder::new(Class::Success, m.method, m.transaction)
            .xor_address(attr::XOR_RELAYED_ADDRESS, addr("192.0.2.66:1"))
            .integrity(b"not the key")
            .fingerprint();
        c.handle_datagram(now, &forged).expect("ignored");
        assert_eq!(c.state(), TurnState::Allocating);
        c.handle_datagram(now, &allocated(&second, "192.0.2.10:50000", 600))
            .expect("success");
        assert_eq!(c.relayed(), Some(addr("192.0.2.10:50000")));
        assert_eq!(c.mapped(), Some(addr("198.51.100.1:40000")));
        assert_eq!(
            events(&mut c),
            [
                TurnEvent::Challenged {
                    realm: REALM.into()
                },
                TurnEvent::Allocated {
                    relayed: addr("192.0.2.10:50000"),
                    mapped: Some(addr("198.51.100.1:40000")),
                    lifetime: Duration::from_secs(600),
                }
            ]
        );
        // A late retransmitted answer is ignored.
        c.handle_datagram(now, &allocated(&second, "192.0.2.10:50000", 600))
            .expect("ignored");
        assert!(c.poll_transmit().is_none());
    }

    #[test]
    fn stale_nonce_is_retried_with_the_new_nonce() {
        let now = Instant::now();
        let mut c = client("p");
        c.allocate(now);
        let (first, _) = sent(&mut c);
        c.handle_datagram(now, &challenge(&first)).expect("401");
        let (second, _) = sent(&mut c);
        c.handle_datagram(now, &error(&second, 438, "Stale Nonce"))
            .expect("438");
        let (third, authenticated) = sent(&mut c);
        assert!(authenticated);
        let m = Message::parse(&third).expect("request");
        assert_eq!(m.nonce, Some(&b"fresh-nonce"[..]));
        assert_ne!(
            m.transaction,
            Message::parse(&second).expect("req").transaction
        );
        c.handle_datagram(now, &allocated(&third, "192.0.2.10:50000", 600))
            .expect("success");
        assert_eq!(c.state(), TurnState::Allocated);
        assert!(events(&mut c).contains(&TurnEvent::StaleNonce));
        // Stale again and again: a clear error, not a loop.
        let mut c = client("p");
        c.allocate(now);
        let (first, _) = sent(&mut c);
        c.handle_datagram(now, &challenge(&first)).expect("401");
        for _ in 0..=MAX_STALE {
            let (req, _) = sent(&mut c);
            c.handle_datagram(now, &error(&req, 438, "Stale Nonce"))
                .expect("438");
        }
        assert!(c.poll_transmit().is_none());
        assert_eq!(c.error(), Some(&TurnError::StaleNonce));
    }

    #[test]
    fn wrong_password_quota_and_capacity_are_clear_errors() {
        let now = Instant::now();
        let mut c = client("wrong");
        c.allocate(now);
        let (first, _) = sent(&mut c);
        c.handle_datagram(now, &challenge(&first)).expect("401");
        let (second, authenticated) = sent(&mut c);
        assert!(!authenticated, "keyed with the wrong password");
        c.handle_datagram(now, &challenge(&second))
            .expect("401 again");
        assert_eq!(c.state(), TurnState::Failed);
        let e = c.error().expect("an error").to_string();
        assert!(e.contains("401") && e.contains("\"u\""), "{e}");
        assert!(c.poll_transmit().is_none(), "no third try");
        assert_eq!(c.poll_timeout(), None);

        for (code, want) in [
            (486, TurnError::QuotaReached),
            (508, TurnError::InsufficientCapacity),
            (
                440,
                TurnError::Rejected {
                    method: "Allocate",
                    code: 440,
                    reason: "Address Family not Supported".into(),
                },
            ),
        ] {
            let mut c = client("p");
            c.allocate(now);
            let (first, _) = sent(&mut c);
            c.handle_datagram(now, &challenge(&first)).expect("401");
            let (second, _) = sent(&mut c);
            let reason = match code {
                486 => "Allocation Quota Reached",
                508 => "Insufficient Capacity",
                _ => "Address Family not Supported",
            };
            c.handle_datagram(now, &error(&second, code, reason))
                .expect("error response");
            assert_eq!(c.error(), Some(&want));
            assert_eq!(events(&mut c).last(), Some(&TurnEvent::Failed(want)));
        }

        // 401 without REALM/NONCE.
        let mut c = client("p");
        c.allocate(now);
        let (first, _) = sent(&mut c);
        let m = Message::parse(&first).expect("request");
        let bare = Builder::new(Class::Error, m.method, m.transaction)
            .error_code(401, "Unauthorized")
            .fingerprint();
        c.handle_datagram(now, &bare).expect("401");
        assert_eq!(c.error(), Some(&TurnError::NoChallenge));
    }

    #[test]
    fn a_silent_server_times_out_after_the_retransmissions() {
        let start = Instant::now();
        let mut c = client("p");
        c.allocate(start);
        let mut sends = 0;
        let mut now = start;
        while c.state() == TurnState::Allocating {
            while c.poll_transmit().is_some() {
                sends += 1;
            }
            now = c.poll_timeout().expect("a timer while allocating");
            c.handle_timeout(now);
        }
        assert_eq!(sends, RC);
        // RFC 8489 §6.2.1: 0.5+1+2+4+8+16 s of RTOs and 16 × 0.5 s = 39.5 s.
        assert_eq!(now - start, Duration::from_millis(39_500));
        assert_eq!(
            c.error(),
            Some(&TurnError::Timeout {
                server: addr("192.0.2.10:3478"),
                method: "Allocate"
            })
        );
    }

    #[test]
    fn refresh_before_expiry_and_lifetime_zero_at_the_end() {
        let start = Instant::now();
        let mut c = client("p");
        allocate(&mut c, start);
        events(&mut c);
        // 600 s: refreshed at 540 s.
        assert_eq!(c.poll_timeout(), Some(start + Duration::from_secs(540)));
        let t = start + Duration::from_secs(540);
        c.handle_timeout(t);
        let (refresh, authenticated) = sent(&mut c);
        let m = Message::parse(&refresh).expect("request");
        assert!(authenticated);
        assert_eq!((m.method, m.lifetime), (method::REFRESH, Some(600)));
        let answer = Builder::new(Class::Success, m.method, m.transaction)
            .lifetime(100)
            .integrity(&key())
            .fingerprint();
        c.handle_datagram(t, &answer).expect("refreshed");
        assert_eq!(
            events(&mut c),
            [TurnEvent::Refreshed {
                lifetime: Duration::from_secs(100)
            }]
        );
        // A short lifetime is refreshed at its half.
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(50)));

        c.close(t);
        assert_eq!(c.state(), TurnState::Closing);
        let (release, _) = sent(&mut c);
        let m = Message::parse(&release).expect("request");
        assert_eq!((m.method, m.lifetime), (method::REFRESH, Some(0)));
        c.handle_datagram(t, &ok(&release)).expect("released");
        assert_eq!(c.state(), TurnState::Closed);
        assert_eq!(events(&mut c), [TurnEvent::Closed]);
        assert_eq!(c.poll_timeout(), None);
        assert!(c.send(addr("192.0.2.20:4000"), b"x").is_none());
    }

    #[test]
    fn a_lost_allocation_fails_on_refresh() {
        let start = Instant::now();
        let mut c = client("p");
        allocate(&mut c, start);
        let t = start + Duration::from_secs(540);
        c.handle_timeout(t);
        let (refresh, _) = sent(&mut c);
        c.handle_datagram(t, &error(&refresh, 437, "Allocation Mismatch"))
            .expect("437");
        assert_eq!(c.state(), TurnState::Failed);
        assert!(
            c.error()
                .expect("error")
                .to_string()
                .contains("Refresh rejected: 437")
        );
    }

    #[test]
    fn send_indication_then_permission_then_channel_data() {
        let now = Instant::now();
        let peer = addr("192.0.2.20:4000");
        let mut c = client("p");
        // Asked for before the allocation: sent once it exists.
        c.create_permission(now, peer);
        assert!(c.poll_transmit().is_none());
        assert!(c.send(peer, b"early").is_none(), "no allocation yet");
        allocate(&mut c, now);
        let (perm, authenticated) = sent(&mut c);
        let m = Message::parse(&perm).expect("request");
        assert!(authenticated);
        assert_eq!(m.method, method::CREATE_PERMISSION);
        assert_eq!(m.xor_peer_address, Some(peer));
        c.handle_datagram(now, &ok(&perm)).expect("permission");
        assert!(c.has_permission(addr("192.0.2.20:9")), "per IP address");
        assert!(events(&mut c).contains(&TurnEvent::PermissionCreated(peer.ip())));

        // No channel yet: a Send indication.
        let send = c.send(peer, b"ping").expect("allocated");
        let m = Message::parse(&send).expect("indication");
        assert_eq!((m.class, m.method), (Class::Indication, method::SEND));
        assert_eq!(
            (m.xor_peer_address, m.data),
            (Some(peer), Some(&b"ping"[..]))
        );

        // A Data indication from the peer.
        let data = Builder::new(Class::Indication, method::DATA, TransactionId([3; 12]))
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .data(b"pong")
            .fingerprint();
        assert_eq!(
            c.handle_datagram(now, &data).expect("data"),
            Some((peer, &b"pong"[..]))
        );

        let number = c.bind_channel(now, peer).expect("a channel");
        assert_eq!(number, 0x4000);
        assert_eq!(c.bind_channel(now, peer), Some(number), "once per peer");
        let (bind, _) = sent(&mut c);
        let m = Message::parse(&bind).expect("request");
        assert_eq!(m.method, method::CHANNEL_BIND);
        assert_eq!(
            (m.channel_number, m.xor_peer_address),
            (Some(0x4000), Some(peer))
        );
        assert!(c.poll_transmit().is_none());
        // Until bound: still Send indications.
        assert!(is_stun(&c.send(peer, b"x").expect("allocated")));
        c.handle_datagram(now, &ok(&bind)).expect("bound");
        assert_eq!(
            events(&mut c),
            [TurnEvent::ChannelBound {
                peer,
                channel: 0x4000
            }]
        );
        // RFC 8656 §12.4: channel number, length, data; no padding over UDP.
        assert_eq!(
            c.send(peer, b"hello").expect("bound"),
            [0x40, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o']
        );
        let from_peer = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0];
        assert_eq!(
            c.handle_datagram(now, &from_peer).expect("channel data"),
            Some((peer, &[1u8, 2, 3][..]))
        );

        // Permission refreshed at 4 min, the channel at 9 min.
        c.handle_timeout(now + PERMISSION_REFRESH);
        let (again, _) = sent(&mut c);
        let m = Message::parse(&again).expect("request");
        assert_eq!(m.method, method::CREATE_PERMISSION);
        c.handle_datagram(now + PERMISSION_REFRESH, &ok(&again))
            .expect("refreshed");
        assert!(events(&mut c).is_empty(), "a refresh is no new event");
    }

    #[test]
    fn a_refused_permission_leaves_the_allocation() {
        let now = Instant::now();
        let peer = addr("192.0.2.20:4000");
        let mut c = client("p");
        allocate(&mut c, now);
        events(&mut c);
        c.create_permission(now, peer);
        let (perm, _) = sent(&mut c);
        c.handle_datagram(now, &error(&perm, 403, "Forbidden"))
            .expect("403");
        assert_eq!(c.state(), TurnState::Allocated);
        let evs = events(&mut c);
        assert!(
            matches!(&evs[..], [TurnEvent::PeerFailed { peer: p, error: TurnError::Rejected { code: 403, .. } }] if *p == peer),
            "{evs:?}"
        );
    }

    #[test]
    fn malformed_datagrams_are_errors_never_panics() {
        let now = Instant::now();
        let peer = addr("192.0.2.20:4000");
        let mut c = client("p");
        allocate(&mut c, now);
        c.bind_channel(now, peer);
        let (bind, _) = sent(&mut c);
        c.handle_datagram(now, &ok(&bind)).expect("bound");
        assert!(c.handle_datagram(now, &[]).is_err());
        assert!(c.handle_datagram(now, &[0x40]).is_err());
        assert_eq!(
            c.handle_datagram(now, &[0x40, 0x00, 0x00, 0x09, 1]),
            Err(TurnInputError::TruncatedChannelData(5))
        );
        assert_eq!(
            c.handle_datagram(now, &[0x4f, 0xff, 0x00, 0x00]),
            Err(TurnInputError::UnknownChannel(0x4fff))
        );
        assert_eq!(
            c.handle_datagram(now, &[0x80, 0, 0, 0]),
            Err(TurnInputError::NotTurn(0x80))
        );
        let no_data = Builder::new(Class::Indication, method::DATA, TransactionId([3; 12]))
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .fingerprint();
        assert_eq!(
            c.handle_datagram(now, &no_data),
            Err(TurnInputError::BadDataIndication)
        );
        // Every truncation and single-byte corruption of a Data indication and of an
        // Allocate success: an error or ignored, never a panic.
        let data = Builder::new(Class::Indication, method::DATA, TransactionId([3; 12]))
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .data(b"pong")
            .fingerprint();
        let success = allocated(&bind, "192.0.2.10:50000", 600);
        for msg in [data, success] {
            for cut in 0..msg.len() {
                let _ = c.handle_datagram(now, &msg[..cut]);
            }
            for i in 0..msg.len() {
                let mut bad = msg.clone();
                bad[i] ^= 0xFF;
                let _ = c.handle_datagram(now, &bad);
            }
        }
        assert_eq!(c.state(), TurnState::Allocated);
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let c = client("hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
