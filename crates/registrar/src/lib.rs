//! sipmeter's built-in SIP registrar and proxy: a sans-IO core.
//!
//! It lets a test run with no SIP server of the user's own: endpoints REGISTER with digest
//! authentication (ephemeral HMAC credentials issued per run, or a static account list), and
//! INVITEs and in-dialog requests are proxied between registered endpoints.
//!
//! # Driving a [`Registrar`]
//!
//! Feed every received message with [`Registrar::handle_message`] (`now`, the message, the
//! address it came from), drain [`Registrar::poll_transmit`] (bytes and the address to send
//! them to), and call [`Registrar::handle_timeout`] when [`Registrar::poll_timeout`] has
//! passed (bindings expire). It never reads the clock; `now_unix` (seconds since the epoch)
//! is passed for credential expiry. A driver of connections (TCP, TLS, WS, WSS) says when
//! one closes with [`Registrar::handle_flow_closed`] (the flow it names): RFC 5626 outbound
//! bindings made straight over it fail (requests to them get 430 Flow Failed) and are
//! dropped after a hold; other bindings are not touched (see [`FlowState`]). Bytes it could
//! not send because their connection was gone go back with
//! [`Registrar::handle_undeliverable`] (a request for such a flow is answered 430 then).
//!
//! The proxy is stateless (RFC 3261 §16.11): it forwards requests and responses without
//! transaction state, computing its Via branch from the incoming one so that retransmissions
//! and CANCELs take the same path; endpoints retransmit end to end. It record-routes, so BYE
//! and re-INVITE pass through it too.
//!
//! # Who may register what
//!
//! The AOR is the To URI's user (RFC 3261 §10.3). A third party may register it (§10.2:
//! From ≠ To is allowed): with [`AuthMode::Open`] anyone may bind any AOR (a lab switch: the
//! From is not an identity); with [`AuthMode::Static`] the authenticated account must be the
//! AOR's user (403 otherwise), whatever the From says; with [`AuthMode::Ephemeral`] any
//! endpoint holding valid credentials of this run may bind any AOR.
//!
//! Contacts compare as RFC 3261 §19.1.4 says (escapes, host case, an omitted default port,
//! the parameters that count): a REGISTER of a contact the same as a bound one refreshes (or
//! removes) that binding (§10.3 step 7); see `uri_eq`.
//!
//! A binding keeps the Call-ID (a keyed 64-bit digest) and CSeq of the REGISTER that made it
//! (§10.3 steps 6 and 7). A REGISTER of the same Call-ID with a lower CSeq (a late, older one)
//! gets 400 and changes nothing; the same CSeq is a retransmission, answered 200 with the
//! current bindings and not applied again. Digest credentials must name the Request-URI
//! (their `uri`, RFC 7616 §3.4.6; 400 otherwise).
//!
//! INVITEs to the service numbers `echo` and `tone` at our domain are answered by the
//! registrar itself ([`services`]); drain [`Registrar::poll_service_event`] after every input
//! and bind their media as it says.
//!
//! # Several listeners
//!
//! One core can serve several listeners (UDP, TCP, TLS, WS, WSS at once) with one location
//! service, so a phone on UDP can call one on WSS. The first interface is the config's;
//! [`Registrar::add_interface`] adds more. Messages then come in with
//! [`Registrar::handle_message_on`] and go out with [`Registrar::poll_transmit_flow`], each
//! with its [`Flow`] (the interface and the peer's address). A request forwarded from one
//! interface to another gets our Via of the interface it leaves on, and an initial INVITE
//! two Record-Route entries, the outgoing interface's above the incoming one's (RFC 5658 §4,
//! "double record-routing"), so each side's in-dialog requests reach us over a transport it
//! has; both entries are removed from an in-dialog request's Route. A response goes back on
//! the interface its request came in on (our Via's branch records it); a next hop named by a
//! URI, on an interface of the URI's transport (RFC 3263 §4.1, see `transport_of`) and of
//! its address family, else the one it came in on; a `sip:` URI naming no transport that is
//! no registered binding, on the interface our last removed Route entry names.

mod auth;
pub mod services;
mod uri_eq;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::typed::{Contact, Expires, MaxForwards, RouteRef, ToRef, ViaRef, may_hold_tag};
use sip_msg::{
    BRANCH_MAGIC, Header, HeaderName, Host, HostRef, Message, Method, Scheme, SipUri, Uri, text_of,
    trim_fast,
};

pub use auth::{AccountStatus, Accounts, AuthMode};
pub use services::{Service, ServiceCallId, ServiceEvent, ServiceLimits, ServiceStats};

/// How the registrar is set up.
#[derive(Clone)]
pub struct RegistrarConfig {
    /// The domain it is authoritative for (AORs `sip:user@domain`).
    pub domain: String,
    /// Our address as it appears in Via and Record-Route.
    pub host: Host,
    /// Our port.
    pub port: u16,
    /// The Via transport token of the socket this core serves (`UDP`, `TCP` …).
    pub transport: String,
    /// Who may register and call.
    pub auth: AuthMode,
    /// Keys nonces and ephemeral credentials (never printed).
    pub secret: Vec<u8>,
    /// Shortest registration accepted (423 below it, RFC 3261 §10.3 step 7).
    pub min_expires: u32,
    /// Longest registration granted.
    pub max_expires: u32,
}

impl std::fmt::Debug for RegistrarConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarConfig")
            .field("domain", &self.domain)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("auth", &self.auth)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// How a REGISTER asking for outbound (`outbound` in Supported, a Contact with `reg-id`)
/// reached us (RFC 5626 §6), when the registrar can grant it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutboundVia {
    /// Straight from the phone (one Via, no Path): this registrar is its edge proxy too, and
    /// it reaches the binding over the flow its REGISTER came on (the binding's source).
    Direct,
    /// Through an edge proxy whose Path URI (the first) carries `ob`: the edge keeps the flow,
    /// and the binding is reached along the Path (RFC 3327).
    Edge,
}

/// What a REGISTER asking for outbound gets (RFC 5626 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutboundAsk {
    /// Outbound applies: `Require: outbound` in the 2xx.
    Grant(OutboundVia),
    /// Through a proxy that did not say it keeps the flow: 439 (First Hop Lacks Outbound
    /// Support).
    FirstHopLacksOutbound,
}

/// RFC 5626 §6: outbound asked for (`outbound` in Supported and a Contact with `reg-id` and
/// `+sip.instance`), and how it came; `None` when not asked (a `reg-id` without an instance,
/// or without the option tag, is ignored, as the binding ignores it).
fn outbound_asked(req: &Message, contacts: &[Contact]) -> Option<OutboundAsk> {
    let supported = supports(req, "outbound");
    let reg_id = contacts.iter().any(|c| {
        matches!(c, Contact::Addr(a)
            if a.params.get("reg-id").flatten().is_some()
                && a.params.get("+sip.instance").flatten().is_some())
    });
    if !supported || !reg_id {
        return None;
    }
    let path_ob = req.headers.get(&HeaderName::Path).map(|path| {
        let first = <RouteRef as sip_msg::HeaderView>::parse(first_value(path.value()));
        first
            .ok()
            .and_then(|r| r.uri.as_sip().map(|u| u.params.contains("ob")))
            .is_some_and(|ob| ob)
    });
    let vias = req
        .headers
        .get_all(&HeaderName::Via)
        .map(|h| top_commas(h.value()).count() + 1)
        .sum::<usize>();
    // RFC 5626 §6, in our words: the registrar learns from the Via whether it is the first
    // hop. If it is not, it looks at the Path: with no Path, or a first Path URI without
    // `ob`, outbound is not applied, and a REGISTER that asked for it (a reg-id, and
    // `outbound` in Supported) is answered 439 First Hop Lacks Outbound Support. As the
    // first hop (one Via) the Path is not examined for that; one with `ob` (an odd proxy
    // that added no Via) is still the route to the binding.
    Some(match (vias > 1, path_ob) {
        (_, Some(true)) => OutboundAsk::Grant(OutboundVia::Edge),
        (true, _) => OutboundAsk::FirstHopLacksOutbound,
        (false, _) => OutboundAsk::Grant(OutboundVia::Direct),
    })
}

/// True when the request's Supported names the option tag `tag` (any case).
fn supports(req: &Message, tag: &str) -> bool {
    req.headers
        .get_all(&HeaderName::Supported)
        .flat_map(|h| h.value().split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// The option tags of every `name` header (Require, Proxy-Require) that are not in `known`
/// (compared case-insensitively), joined for an Unsupported header; `None` when every one
/// is known (RFC 3261 §8.2.2.3, §16.3 step 5).
fn unsupported_tags(req: &Message, name: &HeaderName, known: &[&str]) -> Option<String> {
    let mut tags = Vec::new();
    for h in req.headers.get_all(name) {
        for t in h
            .value()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(t)) {
                tags.push(t);
            }
        }
    }
    (!tags.is_empty()).then(|| tags.join(", "))
}

/// The Path of a REGISTER (RFC 3327), its values joined in order: the Route a request to
/// the binding carries. `None` without one.
fn path_of(req: &Message) -> Option<Box<str>> {
    let mut all = req
        .headers
        .get_all(&HeaderName::Path)
        .map(|h| h.value().trim());
    let first = all.next()?;
    let mut joined = first.to_owned();
    for v in all {
        joined.push_str(", ");
        joined.push_str(v);
    }
    Some(joined.into_boxed_str())
}

/// The `Flow-Timer` header name (RFC 5626 §11.2).
fn flow_timer_name() -> HeaderName {
    HeaderName::Other(Box::new("Flow-Timer".to_owned()))
}

/// The Flow-Timer the registrar sends by default (seconds, [`Registrar::set_flow_timer`]):
/// RFC 5626 §4.4.1's suggested interval for connection-oriented transports, whose keep-alives
/// it asks at 80–100 % of.
pub const DEFAULT_FLOW_TIMER: u32 = 120;

/// `Require: outbound` (RFC 5626 §6).
fn require_outbound() -> Header {
    Header::new(HeaderName::Require, "outbound")
}

/// A peer as the core sees it: the listening interface it talks to (0 is the config's, see
/// [`Registrar::add_interface`]) and its address there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The interface: an index in the order the interfaces were added.
    pub iface: u8,
}

impl Flow {
    /// `addr` on the first interface (the config's).
    pub fn first(addr: SocketAddr) -> Self {
        Self { addr, iface: 0 }
    }
}

/// One listening interface: what our Via and Record-Route say for messages on it.
#[derive(Debug)]
pub(crate) struct Iface {
    /// The config with this interface's host, port and transport.
    pub(crate) config: RegistrarConfig,
    /// `SIP/2.0/TRANSPORT host:port;branch=`: the start of the Via we add when forwarding.
    via_prefix: String,
    /// The Record-Route we add to initial INVITEs (see [`record_route_of`]).
    record_route: String,
}

impl Iface {
    fn of(config: RegistrarConfig) -> Self {
        Self {
            via_prefix: format!(
                "SIP/2.0/{} {}:{};branch=",
                config.transport.to_ascii_uppercase(),
                config.host,
                config.port
            ),
            record_route: record_route_of(&config),
            config,
        }
    }

    /// True when a URI or Via naming `host` and `port` (5060 when absent) names this
    /// interface.
    fn is_at(&self, host: &HostRef<'_>, port: Option<u16>) -> bool {
        host_is(host, &self.config.host) && port.unwrap_or(5060) == self.config.port
    }
}

/// The interfaces of a core, the config's first.
#[derive(Debug)]
pub(crate) struct Ifaces(Vec<Iface>);

impl Ifaces {
    /// The interface `flow` talks to.
    pub(crate) fn of(&self, flow: Flow) -> &Iface {
        // Flows name interfaces the core handed out (`add_interface`), or 0, which always exists.
        self.0.get(usize::from(flow.iface)).unwrap_or(&self.0[0])
    }

    /// The interface that serves `transport` (a Via token or a URI's `transport=`, any case)
    /// towards `to`: the first of that transport and of `to`'s address family (a datagram
    /// to an IPv6 address cannot leave on an IPv4 socket), else the first of that
    /// transport, else `fallback`.
    fn for_transport(&self, transport: &str, to: std::net::IpAddr, fallback: u8) -> u8 {
        let serves = |i: &Iface| i.config.transport.eq_ignore_ascii_case(transport);
        let reaches = |i: &Iface| match i.config.host {
            Host::V4(_) => to.is_ipv4(),
            Host::V6(_) => to.is_ipv6(),
            Host::Name(_) => true,
        };
        self.0
            .iter()
            .position(|i| serves(i) && reaches(i))
            .or_else(|| self.0.iter().position(serves))
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(fallback)
    }

    /// The interface a next hop at `to` named by a URI is reached on (its transport as
    /// [`transport_of`] reads it), else `fallback`.
    fn for_target(
        &self,
        scheme: Scheme,
        transport: Option<&str>,
        to: std::net::IpAddr,
        fallback: u8,
    ) -> u8 {
        self.for_transport(transport_of(scheme, transport), to, fallback)
    }

    /// [`Self::for_target`] of an owned URI at `to` (`fallback` for one that is not
    /// `sip:`/`sips:`). `hop` is the interface our last removed Route entry named, if any:
    /// it serves a `sip:` URI without a `transport` parameter (the peer on the other side
    /// of a double-record-routed dialog reached us there, RFC 5658 §4; the UDP that RFC
    /// 3263 assumes for such a URI is only a default, and a peer on a stream transport,
    /// SIPp's stock UAC for one, often names none in its Contact).
    fn for_uri(&self, uri: &Uri, to: std::net::IpAddr, hop: Option<u8>, fallback: u8) -> u8 {
        uri.as_sip().map_or(fallback, |u| {
            let transport = u.params.value("transport");
            match (u.scheme, transport.as_deref(), hop) {
                (Scheme::Sip, None, Some(hop)) => hop,
                (scheme, transport, _) => self.for_target(scheme, transport, to, fallback),
            }
        })
    }

    /// The interface a Route entry of ours names: at its address and port, of its
    /// transport (as [`Self::for_target`] reads a URI).
    fn named_by(&self, route: &RouteRef<'_>) -> Option<u8> {
        let u = route.uri.as_sip()?;
        let transport = u.transport();
        let transport = transport_of(u.scheme, transport.as_deref());
        self.0
            .iter()
            .position(|i| {
                i.is_at(&u.host, u.port) && i.config.transport.eq_ignore_ascii_case(transport)
            })
            .and_then(|i| u8::try_from(i).ok())
    }
}

/// The transport (as a listener's token names it) a URI of `scheme` with `transport` asks
/// for (RFC 3263 §4.1): its `transport` parameter, else UDP for `sip:` and TLS for `sips:`;
/// a `sips:` URI's `transport=tcp` is TLS (RFC 3261 §26.2.2, RFC 5630 §3.1.3) and its
/// `transport=ws` secure WebSocket (RFC 7118 §5.2).
fn transport_of(scheme: Scheme, transport: Option<&str>) -> &str {
    match (scheme, transport) {
        (Scheme::Sip, None) => "UDP",
        (Scheme::Sips, None) => "TLS",
        (Scheme::Sips, Some(t)) if t.eq_ignore_ascii_case("tcp") => "TLS",
        (Scheme::Sips, Some(t)) if t.eq_ignore_ascii_case("ws") => "WSS",
        (_, Some(t)) => t,
    }
}

/// One binding of the location service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI the endpoint registered.
    pub contact: Uri,
    /// Where its REGISTER came from (used to reach it, so NAT and port 0 binds work).
    pub source: SocketAddr,
    /// The interface its REGISTER came in on (the binding is reached there).
    pub iface: u8,
    /// The Path its REGISTER carried (RFC 3327), joined: a request to the binding carries it
    /// as its Route. `None` for a phone that reached us directly.
    pub path: Option<Box<str>>,
    /// When it lapses.
    pub expires_at: Instant,
    /// Its flow as RFC 5626 sees it: not outbound, through an edge, straight from the phone,
    /// or failed (its connection closed, [`Registrar::handle_flow_closed`]).
    pub flow_state: FlowState,
    /// A keyed digest of its `+sip.instance` and `reg-id` (RFC 5626 §6) when outbound was
    /// granted: a later REGISTER of the same pair replaces it, whatever its contact URI.
    instance: Option<std::num::NonZeroU64>,
    /// The Call-ID of the REGISTER that made it, as a keyed 64-bit digest (`Registrar::call_id_key`),
    /// and that REGISTER's CSeq: a later REGISTER of the same Call-ID must carry a higher CSeq
    /// to change the binding (RFC 3261 §10.3 step 7).
    call_id: u64,
    cseq: u32,
}

/// A binding's flow (RFC 5626 §3.2: a flow is the transport association a phone's
/// REGISTER came over, and through which it is reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Not an outbound registration (RFC 3261 rules only): it lives until it expires or is
    /// removed, whatever becomes of the connection it came over.
    Plain,
    /// Outbound through an edge proxy (a Path with `ob`): the edge keeps the flow; our
    /// connection to the edge is not the phone's.
    Edge,
    /// Outbound straight from the phone (one Via): its flow is the connection (or UDP
    /// 5-tuple) its REGISTER came over, [`Binding::flow`].
    Direct,
    /// A [`FlowState::Direct`] binding whose connection closed: never used again (RFC 5626
    /// §7); a request finding only such bindings gets 430 (Flow Failed, §5.3) until they are
    /// dropped ([`Registrar::set_failed_flow_hold`]) or replaced by the phone's REGISTER on a
    /// new flow (§6).
    Failed,
}

/// How a REGISTER stands to a binding it would change (RFC 3261 §10.3 steps 6 and 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Order {
    /// Another Call-ID, or the same one with a higher CSeq: it applies.
    Newer,
    /// The same Call-ID and CSeq: a retransmission of the REGISTER that made the binding.
    Same,
    /// The same Call-ID with a lower CSeq: a late, older REGISTER; it fails.
    Older,
}

impl Binding {
    /// Where the endpoint is reached: [`Binding::source`] on [`Binding::iface`].
    pub fn flow(&self) -> Flow {
        Flow {
            addr: self.source,
            iface: self.iface,
        }
    }

    fn order_of(&self, call_id: u64, cseq: u32) -> Order {
        if self.call_id != call_id || cseq > self.cseq {
            Order::Newer
        } else if cseq == self.cseq {
            Order::Same
        } else {
            Order::Older
        }
    }
}

/// Counters for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// REGISTERs answered 200.
    pub registered: u64,
    /// Challenges sent (401 and 407).
    pub challenged: u64,
    /// Requests refused (403, 404, 480, 483 …).
    pub refused: u64,
    /// Requests forwarded.
    pub forwarded: u64,
    /// Responses forwarded.
    pub responses_forwarded: u64,
    /// Messages dropped (malformed or not ours).
    pub dropped: u64,
    /// Connections closed because nothing came over them for longer than the Flow-Timer
    /// allows ([`Registrar::poll_close_flow`]).
    pub silent_flows_closed: u64,
    /// The service numbers (echo, tone).
    pub services: ServiceStats,
}

/// The reason phrase of a 400 to credentials computed for another URI than the Request-URI.
const URI_MISMATCH: &str = "Bad Request (digest uri is not the Request-URI)";

/// Slots of the output queue kept between bursts.
const OUT_KEEP: usize = 64;

/// The built-in registrar and proxy.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    /// User → its bindings. A user who registered once keeps an entry, empty once its
    /// bindings are gone: that is how 480 (known, not bound) is told from 404 without an
    /// account list, with no second set of user names.
    bindings: HashMap<Box<str>, Vec<Binding>>,
    /// Registered contact (`user@host:port`) → the address its REGISTER came from, so
    /// in-dialog requests find their endpoint in O(1). Only contacts whose user part is not
    /// their AOR's user are listed: the others (nearly every phone's) are found through
    /// their user's bindings (see [`Registrar::flow_of_contact`]), with no second copy of
    /// them per registered endpoint.
    contacts: HashMap<String, Flow>,
    /// The earliest binding expiry (recomputed when bindings lapse).
    earliest: Option<Instant>,
    out: VecDeque<(Flow, Bytes)>,
    stats: Stats,
    auth: auth::Verifier,
    services: services::Services,
    /// The listening interfaces, the config's first (see [`Registrar::add_interface`]).
    ifaces: Ifaces,
    /// Keys the Call-ID digests bindings keep (derived from the secret, see `call_id_digest`).
    call_id_key: CallIdKey,
    /// Room the answers are printed in, kept between messages (each answer is then copied
    /// out at its exact size: one allocation, which a `Bytes` takes as it is).
    scratch: Scratch,
    /// The Flow-Timer sent to an outbound phone on a connection (RFC 5626 §4.4.1).
    flow_timer: Option<u32>,
    /// Connection (a flow on a TCP, TLS, WS or WSS interface) → the users with a
    /// [`FlowState::Direct`] binding made over it, so that [`Registrar::handle_flow_closed`]
    /// finds them without a walk over every binding. An entry goes when its connection
    /// closes; a user whose binding moved meanwhile is looked at and left alone then.
    outbound_flows: HashMap<Flow, OutboundFlow>,
    /// How long a binding whose flow failed is kept (answering 430) before it is dropped.
    failed_flow_hold: Duration,
    /// Connections that closed under a [`FlowState::Direct`] binding → when their hold
    /// ends: an in-dialog request whose target is one gets 430 (Flow Failed) until then, as
    /// an initial request to the failed binding's user does. A message received on the same
    /// address and port again (a new connection) takes its flow out.
    failed_flows: HashMap<Flow, Instant>,
    /// When the outbound connections are next looked at for silence (`None`: none to
    /// look at, or no Flow-Timer sent).
    flow_sweep: Option<Instant>,
    /// Connections the driver is to close ([`Registrar::poll_close_flow`]).
    closing: VecDeque<Flow>,
}

/// A connection with outbound bindings made straight over it ([`FlowState::Direct`]).
#[derive(Debug)]
struct OutboundFlow {
    /// The users with such a binding.
    users: Vec<Box<str>>,
    /// When anything last came over it: a message, or a keep-alive the driver reported
    /// ([`Registrar::handle_flow_alive`]).
    heard: Instant,
    /// The Flow-Timer (seconds) the phone was given when the connection is watched for
    /// silence: a TCP or TLS connection, where the phone keeps its flow with CRLF
    /// keep-alives (RFC 5626 §3.5.1), or a WS or WSS one, where it sends WebSocket ping
    /// frames (the driver reports them: [`Registrar::handle_flow_alive`]), with a Flow-Timer
    /// sent.
    watched: Option<u32>,
}

/// How long an outbound connection may stay silent before the registrar takes it for dead,
/// for a Flow-Timer of `secs`: a quarter more than the Flow-Timer. RFC 5626 §4.4.1 has the
/// phone send its keep-alives at 80–100 % of the Flow-Timer, so a live phone is always
/// heard within it; the quarter is slack for a late keep-alive, our choice.
fn silent_flow_limit(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs)) * 5 / 4
}

/// How often the outbound connections are looked at for silence: an eighth of the limit
/// (a dead flow is found at most 1/8 late), at least every 100 ms.
fn flow_sweep_period(secs: u32) -> Duration {
    (silent_flow_limit(secs) / 8).max(Duration::from_millis(100))
}

/// How long a binding whose connection closed is kept by default, answering 430 (Flow
/// Failed) to requests, before it is dropped ([`Registrar::set_failed_flow_hold`]): 30 s,
/// RFC 5626 §4.5's base back-off time when every flow failed. A phone registers again at
/// once on a new flow; when that attempt fails it waits about this long before the next, and
/// callers meanwhile learn that the flow failed (430) rather than that the user is away (480).
pub const DEFAULT_FAILED_FLOW_HOLD: Duration = Duration::from_secs(30);

/// Buffers [`Registrar::respond`] prints into, reused from one answer to the next.
#[derive(Debug, Default)]
struct Scratch {
    /// The answer.
    out: Vec<u8>,
    /// Its stamped top Via.
    via: String,
    /// The Via the proxy adds.
    ours: String,
    /// A forwarded request's Request-URI.
    uri: String,
    /// Two interfaces' Record-Route entries (RFC 5658 §4).
    record_route: String,
}

impl Registrar {
    /// A registrar with no bindings. `secret` keys its nonces (and ephemeral credentials).
    pub fn new(config: RegistrarConfig) -> Self {
        let auth = auth::Verifier::new(&config.auth, &config.domain, &config.secret);
        Self {
            ifaces: Ifaces(vec![Iface::of(config.clone())]),
            call_id_key: call_id_key_of(&config.secret),
            config,
            bindings: HashMap::new(),
            contacts: HashMap::new(),
            earliest: None,
            out: VecDeque::new(),
            stats: Stats::default(),
            auth,
            services: services::Services::default(),
            scratch: Scratch::default(),
            flow_timer: Some(DEFAULT_FLOW_TIMER),
            outbound_flows: HashMap::new(),
            failed_flow_hold: DEFAULT_FAILED_FLOW_HOLD,
            failed_flows: HashMap::new(),
            flow_sweep: None,
            closing: VecDeque::new(),
        }
    }

    /// How long a binding whose flow failed ([`Self::handle_flow_closed`]) stays, answering
    /// 430 (Flow Failed) to the requests that find it, before it is dropped (then 480 or 404,
    /// as for a user with no binding). Zero drops it at once. Default
    /// [`DEFAULT_FAILED_FLOW_HOLD`].
    pub fn set_failed_flow_hold(&mut self, hold: Duration) {
        // At most a year: `now + hold` must not overflow an `Instant`.
        self.failed_flow_hold = hold.min(Duration::from_secs(365 * 86_400));
    }

    /// The driver's word that a connection (a flow on a TCP, TLS, WS or WSS interface)
    /// closed, whichever side closed it. The outbound bindings made straight over it
    /// ([`FlowState::Direct`]) fail (RFC 5626 §7: a failed flow is not used again; the phone
    /// registers again over a new one): they become [`FlowState::Failed`] and are dropped
    /// after the hold ([`Self::set_failed_flow_hold`]). Other bindings stay as they are: a
    /// plain (RFC 3261) binding outlives its connection until it expires, and behind an edge
    /// proxy the edge keeps the phone's flow. Call [`Self::poll_timeout`] again after it.
    pub fn handle_flow_closed(&mut self, now: Instant, flow: Flow) {
        let Some(OutboundFlow { users, .. }) = self.outbound_flows.remove(&flow) else {
            return;
        };
        let until = now + self.failed_flow_hold;
        let mut failed = false;
        for user in users {
            let Some(list) = self.bindings.get_mut(&user) else {
                continue;
            };
            for b in list
                .iter_mut()
                .filter(|b| b.flow_state == FlowState::Direct && b.flow() == flow)
            {
                b.flow_state = FlowState::Failed;
                b.expires_at = b.expires_at.min(until);
                self.earliest = Some(self.earliest.map_or(b.expires_at, |e| e.min(b.expires_at)));
                failed = true;
            }
        }
        if failed && until > now {
            self.failed_flows.insert(flow, until);
        }
        self.drop_lapsed(now);
    }

    /// The `Flow-Timer` (seconds) of the 2xx to an outbound REGISTER that reached us straight
    /// from the phone over TCP, TLS, WS or WSS (RFC 5626 §4.4.1: the phone keeps its flow
    /// alive at 80–100 % of it); `None`: none sent. Default [`DEFAULT_FLOW_TIMER`]. Not sent
    /// over UDP (the phone's own STUN interval stands) nor through an edge proxy (the edge
    /// keeps the flow).
    pub fn set_flow_timer(&mut self, secs: Option<u32>) {
        self.flow_timer = secs;
    }

    /// The 2xx's headers for an outbound REGISTER that came `via` from `source`: `Require:
    /// outbound` (RFC 5626 §6), and `Flow-Timer` for a phone on a connection of its own.
    fn outbound_headers(&self, via: Option<OutboundVia>, source: Flow) -> Vec<Header> {
        let Some(via) = via else {
            return Vec::new();
        };
        let mut h = vec![require_outbound()];
        let stream = !self
            .ifaces
            .of(source)
            .config
            .transport
            .eq_ignore_ascii_case("UDP");
        if let (OutboundVia::Direct, true, Some(secs)) = (via, stream, self.flow_timer) {
            h.push(Header::new(flow_timer_name(), secs.to_string()));
        }
        h
    }

    /// Adds a listening interface (its Via transport token, address and port as our Via and
    /// Record-Route print them) and returns its index for [`Flow::iface`]. At most 255
    /// interfaces; `None` past that.
    pub fn add_interface(&mut self, transport: &str, host: Host, port: u16) -> Option<u8> {
        let index = u8::try_from(self.ifaces.0.len()).ok()?;
        self.ifaces.0.push(Iface::of(RegistrarConfig {
            host,
            port,
            transport: transport.to_owned(),
            ..self.config.clone()
        }));
        Some(index)
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            services: self.services.stats(),
            ..self.stats
        }
    }

    /// Sets the limits of service calls.
    pub fn set_service_limits(&mut self, limits: ServiceLimits) {
        self.services.set_limits(limits);
    }

    /// The next thing the socket driver must do for a service call (see [`services`]).
    pub fn poll_service_event(&mut self) -> Option<ServiceEvent> {
        self.services.poll_event()
    }

    /// The driver bound `call`'s RTP socket at `rtp` (`Err`: it could not; the caller gets 503).
    pub fn handle_service_bound(
        &mut self,
        now: Instant,
        call: ServiceCallId,
        rtp: Result<SocketAddr, ()>,
    ) {
        self.services
            .handle_bound(now, &self.ifaces, call, rtp, &mut self.out);
    }

    /// The driver's count of a service call's SRTP/SRTCP packets that failed authentication
    /// or were replayed, given when the call's media is released: into [`Stats::services`].
    pub fn count_service_srtp(&mut self, auth_failures: u64, replayed: u64) {
        self.services.count_srtp(auth_failures, replayed);
    }

    /// The driver's word on a DTLS-SRTP service call's handshake, given when the call's media
    /// is released: keyed or not, into [`Stats::services`].
    pub fn count_service_dtls(&mut self, keyed: bool) {
        self.services.count_dtls(keyed);
    }

    /// Ends a service call from our side (the driver saw no media): BYE to the caller.
    pub fn end_service_call(&mut self, now: Instant, call: ServiceCallId) {
        self.services.end_call(
            now,
            &self.ifaces,
            call,
            services::EndReason::Inactive,
            &mut self.out,
        );
    }

    /// The bindings of `user`, failed ones ([`FlowState::Failed`], answering 430 until
    /// their hold ends) included.
    pub fn bindings(&self, user: &str) -> &[Binding] {
        self.bindings.get(user).map_or(&[], Vec::as_slice)
    }

    /// The next datagram or stream message to send, with its destination (for a core with
    /// one interface; see [`Self::poll_transmit_flow`]).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.poll_transmit_flow()
            .map(|(flow, bytes)| (flow.addr, bytes))
    }

    /// The next datagram or stream message to send, with the interface and address to send
    /// it to.
    pub fn poll_transmit_flow(&mut self) -> Option<(Flow, Bytes)> {
        let next = self.out.pop_front();
        if next.is_none() && self.out.capacity() > OUT_KEEP {
            // A burst (every phone registering at once) must not leave its queue behind.
            self.out = VecDeque::with_capacity(OUT_KEEP);
        }
        next
    }

    /// When the next binding lapses, a service call's timer fires, or the outbound
    /// connections are looked at for silence.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.earliest, self.services.poll_timeout(), self.flow_sweep]
            .into_iter()
            .flatten()
            .min()
    }

    /// The driver could not send `bytes` (from [`Self::poll_transmit_flow`]) to `flow`: no
    /// connection to it is open any more, and the core has not yet been told it closed
    /// ([`Self::handle_flow_closed`] comes next). A request forwarded over a connection that
    /// carries an RFC 5626 outbound flow straight from a phone (a [`FlowState::Direct`]
    /// binding's; whichever binding the request was for) is answered 430 Flow Failed (§5.3) to
    /// its sender, as if the phone had answered, so the caller learns at once; an ACK, a
    /// response, or anything sent to another connection is dropped, as before.
    pub fn handle_undeliverable(&mut self, _now: Instant, flow: Flow, bytes: Bytes) {
        if !self.outbound_flows.contains_key(&flow) {
            return;
        }
        let Ok(req) = Message::parse_bytes(bytes) else {
            return;
        };
        if !req.is_request() || req.method().is_none_or(|m| m == Method::Ack) {
            return;
        }
        // The To tag our own answers to the caller's request carry (`respond`): its Via is
        // the one below ours, so the ACK of this 430 ends here as theirs do.
        let mut caller = req.clone();
        pop_first_value(&mut caller, HeaderName::Via);
        let Some(top) = TopVia::of(&caller) else {
            return;
        };
        let tag = Tag::of(top.tag_hash);
        let answer = Message::response_to(&req, 430, "Flow Failed", Some(tag.as_str()));
        // Our Via is on top: the response path pops it and sends the 430 where the request
        // came from.
        self.stats.refused += 1;
        self.forward_response(answer, flow);
    }

    /// Drops lapsed bindings; runs the service calls' timers; takes outbound connections
    /// silent for too long for dead ([`Self::poll_close_flow`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.services
            .handle_timeout(now, &self.ifaces, &mut self.out);
        self.drop_lapsed(now);
        if !self.failed_flows.is_empty() {
            self.failed_flows.retain(|_, until| *until > now);
        }
        if self.flow_sweep.is_some_and(|t| t <= now) {
            self.sweep_silent_flows(now);
        }
    }

    /// The driver's word that something came over `flow` that is not a message for the
    /// core: a CRLFCRLF keep-alive (RFC 5626 §3.5.1) or an empty WebSocket message. Messages
    /// count by themselves ([`Self::handle_message_on`]).
    pub fn handle_flow_alive(&mut self, now: Instant, flow: Flow) {
        if self.outbound_flows.is_empty() {
            return;
        }
        if let Some(f) = self.outbound_flows.get_mut(&flow) {
            f.heard = now;
        }
    }

    /// The next connection the driver is to close: a TCP, TLS, WS or WSS connection with
    /// outbound bindings straight from a phone that sent nothing, keep-alives included (CRLF
    /// pings; over a WebSocket, ping frames, which the driver reports through
    /// [`Self::handle_flow_alive`]), for a quarter longer than the Flow-Timer it was given
    /// (RFC 5626 §4.4.1; a NAT or firewall on the way that dropped the connection without a
    /// word). A driver
    /// drains this after each input, as it does [`Self::poll_transmit_flow`]: the queue
    /// holds every connection failed so far. Its bindings have already failed, as for
    /// [`Self::handle_flow_closed`] (which the driver may still call when the connection
    /// closes; it then does nothing).
    pub fn poll_close_flow(&mut self) -> Option<Flow> {
        self.closing.pop_front()
    }

    /// Fails the outbound connections heard from last longer ago than the limit.
    fn sweep_silent_flows(&mut self, now: Instant) {
        self.flow_sweep = None;
        // Each against the Flow-Timer it was given.
        let silent: Vec<Flow> = self
            .outbound_flows
            .iter()
            .filter(|(_, f)| {
                f.watched.is_some_and(|secs| {
                    now.saturating_duration_since(f.heard) >= silent_flow_limit(secs)
                })
            })
            .map(|(flow, _)| *flow)
            .collect();
        for flow in silent {
            // Still under an outbound binding? One deregistered, lapsed or replaced by a
            // plain one leaves its entry behind: the phone owes no keep-alive for it, and
            // the connection may carry other bindings. Then only the entry goes.
            let carried = self.outbound_flows.get(&flow).is_some_and(|f| {
                f.users.iter().any(|user| {
                    self.bindings.get(user).is_some_and(|list| {
                        list.iter()
                            .any(|b| b.flow_state == FlowState::Direct && b.flow() == flow)
                    })
                })
            });
            if !carried {
                self.outbound_flows.remove(&flow);
                continue;
            }
            self.stats.silent_flows_closed += 1;
            self.closing.push_back(flow);
            self.handle_flow_closed(now, flow);
        }
        if let Some(secs) = self.outbound_flows.values().filter_map(|f| f.watched).min() {
            self.flow_sweep = Some(now + flow_sweep_period(secs));
        }
    }

    /// Drops the bindings lapsed at `now`.
    fn drop_lapsed(&mut self, now: Instant) {
        if self.earliest.is_none_or(|t| t > now) {
            return;
        }
        self.failed_flows.retain(|_, until| *until > now);
        let mut unbound = Vec::new();
        for (user, list) in self.bindings.iter_mut() {
            list.retain(|b| {
                let keep = b.expires_at > now;
                if !keep && !found_by_user(user, &b.contact) {
                    unbound.push(contact_key(&b.contact));
                }
                keep
            });
        }
        for key in unbound {
            self.reindex(key);
        }
        // Emptied lists stay (the user is known) but give their room back.
        for list in self.bindings.values_mut().filter(|l| l.is_empty()) {
            list.shrink_to_fit();
        }
        self.earliest = self.bindings.values().flatten().map(|b| b.expires_at).min();
    }

    /// Handles one message received on the first interface (the config's).
    pub fn handle_message(
        &mut self,
        now: Instant,
        now_unix: u64,
        msg: Message,
        source: SocketAddr,
    ) {
        self.handle_message_on(now, now_unix, msg, Flow::first(source));
    }

    /// Handles one message received from `source` (an address on one of the interfaces).
    pub fn handle_message_on(&mut self, now: Instant, now_unix: u64, msg: Message, source: Flow) {
        // RFC 3261 §10.3 step 8: only current bindings are listed and reached. A driver may
        // hand a message in before the timer of a binding lapsed by then has run (its event
        // loop picked the message first): that binding goes now, not at `handle_timeout`.
        // (One comparison when nothing has lapsed.)
        self.drop_lapsed(now);
        self.handle_flow_alive(now, source);
        if !self.failed_flows.is_empty() {
            // A message on a failed connection's address and port: a new connection there.
            self.failed_flows.remove(&source);
        }
        if msg.is_request() {
            self.handle_request(now, now_unix, msg, source);
        } else if !self.services.is_idle() && self.services.owns_response(&msg) {
            // The answer to a BYE a service call sent: nothing more to do.
        } else {
            self.forward_response(msg, source);
        }
    }

    fn respond(
        &mut self,
        req: &Message,
        top: TopVia,
        source: Flow,
        code: u16,
        reason: &str,
        extra: &[Header],
    ) {
        // RFC 3261 §10.3: "Registrars MUST NOT include a Record-Route header field in any
        // response to a REGISTER request" (one may come through a proxy that took REGISTER for
        // an unknown method). `write_response` copies Record-Route into every 101–299 (right
        // for a UAS's dialog-creating responses, §12.1.1); the registrar's own 2xx answer
        // REGISTER and OPTIONS, which create no dialog, so it is left out of them. Rare: the
        // copy is made only when the request has one.
        let stripped;
        let req =
            if (101..300).contains(&code) && req.headers.get(&HeaderName::RecordRoute).is_some() {
                let mut copy = req.clone();
                while copy
                    .headers
                    .remove_first(&HeaderName::RecordRoute)
                    .is_some()
                {}
                stripped = copy;
                &stripped
            } else {
                req
            };
        // Printed straight from the request's lines into the bytes to send (the same bytes as
        // `Message::response_to` + `to_bytes`, test `a_printed_answer_is_the_built_one`).
        let Scratch {
            out, via: stamped, ..
        } = &mut self.scratch;
        out.clear();
        // RFC 3581: fill in rport and received so the endpoint learns its public address.
        // The top Via value is replaced in place; the other values of its line (a
        // comma-joined `Via: a, b`) stay, after it.
        // The top Via was read once, when the request came in (`TopVia`).
        let to_tag = Tag::of(top.tag_hash);
        stamped.clear();
        let is_stamped = write_stamped_top_via(req, source.addr, false, stamped);
        let rest = is_stamped
            .then(|| {
                req.headers
                    .get(&HeaderName::Via)
                    .and_then(|h| after_first_value(h.value()))
            })
            .flatten();
        let vias = [stamped.as_str(), rest.as_deref().unwrap_or_default()];
        let vias = &vias[..1 + usize::from(rest.is_some())];
        Message::write_response(
            req,
            code,
            reason,
            Some(to_tag.as_str()),
            is_stamped.then_some(vias),
            out,
        );
        for h in extra.iter().chain([&Header::from_static(
            HeaderName::Server,
            "sipmeter-registrar",
        )]) {
            out.extend_from_slice(h.name().as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if code >= 300 {
            self.stats.refused += u64::from(!matches!(code, 401 | 407));
        }
        // Copied out at its exact size (a `Bytes` of a `Vec` with spare room would allocate
        // a second block to share it).
        self.out.push_back((source, Bytes::copy_from_slice(out)));
    }

    fn handle_request(&mut self, now: Instant, now_unix: u64, req: Message, source: Flow) {
        let Some(method) = req.method() else { return };
        let Some(top) = TopVia::of(&req) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(cseq) = req.cseq() else {
            self.stats.dropped += 1;
            return;
        };
        // RFC 3261 §16.3 step 2 (§8.2.2.1 for the registrar as a UAS): "If the Request-URI
        // has a URI whose scheme is not understood by the proxy, the proxy SHOULD reject the
        // request with a 416 (Unsupported URI Scheme) response." We read sip:, sips: and
        // tel: (a tel: number names no binding here: 404, as before). An ACK is not answered.
        let unknown_scheme = match req.request_uri_in_place() {
            Some(u) => matches!(u, sip_msg::UriRef::Other { .. }),
            None => req
                .request_uri()
                .is_some_and(|u| matches!(&*u, Uri::Other { .. })),
        };
        if unknown_scheme {
            if method != Method::Ack {
                self.respond(&req, top, source, 416, "Unsupported URI Scheme", &[]);
            }
            return;
        }
        match method {
            Method::Register => self.register(now, now_unix, &req, top, cseq.seq, source),
            Method::Options if self.is_for_us(&req) => {
                let allow = Header::new(
                    HeaderName::Allow,
                    "REGISTER, INVITE, ACK, BYE, CANCEL, OPTIONS",
                );
                self.respond(&req, top, source, 200, "OK", &[allow]);
            }
            _ => self.proxy(now, now_unix, req, top, source),
        }
    }

    /// True when the Request-URI is a URI we record-route with: no user, the address and
    /// port of one of our interfaces (RFC 3261 §16.4, a strict router's Request-URI).
    fn request_uri_is_ours(&self, req: &Message) -> bool {
        let at = |user: bool, host: &HostRef<'_>, port: Option<u16>| {
            !user && self.ifaces.0.iter().any(|i| i.is_at(host, port))
        };
        match req.request_uri_in_place() {
            Some(u) => u
                .as_sip()
                .is_some_and(|u| at(u.user.is_some(), &u.host, u.port)),
            // Set by us (not as received): compared as owned.
            None => req.request_uri().is_some_and(|u| {
                u.as_sip().is_some_and(|u| {
                    u.user.is_none()
                        && self.ifaces.0.iter().any(|i| {
                            let host = match (&u.host, &i.config.host) {
                                (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
                                (a, b) => a == b,
                            };
                            host && u.port.unwrap_or(5060) == i.config.port
                        })
                })
            }),
        }
    }

    /// True when the Request-URI names us, not a user.
    fn is_for_us(&self, req: &Message) -> bool {
        req.request_uri()
            .as_deref()
            .and_then(Uri::as_sip)
            .is_some_and(|u| u.user.is_none())
    }

    fn register(
        &mut self,
        now: Instant,
        now_unix: u64,
        req: &Message,
        top: TopVia,
        cseq: u32,
        source: Flow,
    ) {
        // RFC 3261 §10.3: authenticate, then the To user is the AOR.
        // Read in place (`to()` would copy the whole name-addr to take its user).
        // Borrowed unless it holds escapes (then unescaped, as `unescape` does).
        let Some(user): Option<std::borrow::Cow<'_, str>> = req
            .headers
            .view::<ToRef>()
            .and_then(Result::ok)
            .and_then(|t| {
                t.0.uri.as_sip().and_then(|u| {
                    u.user.map(|raw| {
                        if raw.contains('%') {
                            sip_msg::unescape(raw).into()
                        } else {
                            raw.into()
                        }
                    })
                })
            })
        else {
            self.respond(req, top, source, 400, "Bad Request (no user in To)", &[]);
            return;
        };
        // §10.3 step 2: Require is processed as a UAS does (§8.2.2.3): 420 for what we lack.
        if let Some(tags) = unsupported_tags(req, &HeaderName::Require, &["path", "outbound"]) {
            let h = Header::new(HeaderName::Unsupported, tags);
            self.respond(req, top, source, 420, "Bad Extension", &[h]);
            return;
        }
        match self.auth.check(req, &Method::Register, now_unix, false) {
            auth::Outcome::Allowed(auth_user) => {
                // Third-party registration (RFC 3261 §10.2, From ≠ To) is allowed; with a
                // static account list the authenticated user must be the AOR's user (see
                // `Verifier::binds_own_aor_only`).
                if self.auth.binds_own_aor_only() && *auth_user != *user {
                    self.respond(
                        req,
                        top,
                        source,
                        403,
                        "Forbidden (user does not match credentials)",
                        &[],
                    );
                    return;
                }
            }
            auth::Outcome::Challenge(h) => {
                self.stats.challenged += 1;
                self.respond(req, top, source, 401, "Unauthorized", &h);
                return;
            }
            auth::Outcome::Forbidden => {
                self.respond(req, top, source, 403, "Forbidden", &[]);
                return;
            }
            auth::Outcome::NotFound => {
                self.respond(req, top, source, 404, "Not Found", &[]);
                return;
            }
            auth::Outcome::UriMismatch => {
                self.respond(req, top, source, 400, URI_MISMATCH, &[]);
                return;
            }
        }
        let default_expires = req
            .headers
            .typed::<Expires>()
            .and_then(Result::ok)
            .map_or(3600, |e| e.0);
        // §10.3 step 7 reads every Contact value: one that cannot be read makes the request
        // malformed (400), rather than a query answered 200 that the phone would take for its
        // binding.
        let Ok(contacts) = req
            .headers
            .typed_all::<Contact>()
            .into_iter()
            .collect::<Result<Vec<Contact>, _>>()
        else {
            self.respond(req, top, source, 400, "Bad Request (Contact)", &[]);
            return;
        };
        let star = contacts.iter().any(|c| matches!(c, Contact::Star));
        let outbound = match outbound_asked(req, &contacts) {
            // RFC 5626 §6 (see `outbound_asked`): through a proxy that keeps no flow.
            Some(OutboundAsk::FirstHopLacksOutbound) => {
                self.respond(
                    req,
                    top,
                    source,
                    439,
                    "First Hop Lacks Outbound Support",
                    &[],
                );
                return;
            }
            Some(OutboundAsk::Grant(via)) => Some(via),
            None => None,
        };
        let path = path_of(req);
        // RFC 3327 §5.3: the registrar returns the Path it stored, in the 200, to a UA that
        // said it supports Path (`path` in Supported; Kamailio's `path_mode` "lazy" reading:
        // a UA that did not say so gets none, as before).
        let path_back = path
            .as_ref()
            .filter(|_| supports(req, "path"))
            .map(|p| Header::new(HeaderName::Path, p.to_string()));
        // Over a connection, a flow that can close (`handle_flow_closed`).
        let on_stream = !self
            .ifaces
            .of(source)
            .config
            .transport
            .eq_ignore_ascii_case("UDP");
        // §10.3 step 6: `*` only with Expires: 0, and alone.
        if star && (default_expires != 0 || contacts.len() != 1) {
            self.respond(
                req,
                top,
                source,
                400,
                "Bad Request (* needs Expires: 0)",
                &[],
            );
            return;
        }
        // §10.3 step 7: the bindings are updated all or none, so an interval too brief
        // (423) refuses the REGISTER before any binding changes. A refused REGISTER does not
        // make its user known either.
        let too_brief = |c: &Contact| {
            let expires = c.expires().unwrap_or(default_expires);
            matches!(c, Contact::Addr(_)) && expires != 0 && expires < self.config.min_expires
        };
        if contacts.iter().any(too_brief) {
            let h = Header::new(HeaderName::MinExpires, self.config.min_expires.to_string());
            self.respond(req, top, source, 423, "Interval Too Brief", &[h]);
            return;
        }
        // §10.3 steps 6 and 7: a binding made by this Call-ID changes only for a higher CSeq.
        // A lower one is a late, older REGISTER: the request fails (400, as Kamailio's
        // registrar answers it) and nothing changes. The same CSeq is a retransmission of the
        // REGISTER that made the binding (a stateless registrar sees those; its 200 was
        // lost): it is answered 200 with the current bindings, as a server transaction would
        // answer it, and not applied again. All or none, like 423 above.
        let call_id = self.call_id_digest(req);
        let order = self.bindings.get(&*user).map_or(Order::Newer, |list| {
            list.iter()
                // Another Call-ID is always newer: only bindings of this one are compared.
                .filter(|b| b.call_id == call_id)
                // The bindings the request would change: of an equivalent contact, or
                // (RFC 5626 §6) of the same instance and reg-id.
                .filter(|b| {
                    star || contacts.iter().any(|c| match c {
                        Contact::Addr(a) => {
                            uri_eq::equivalent(&b.contact, &a.uri)
                                || b.instance.is_some_and(|i| {
                                    instance_of(&self.call_id_key, a, outbound) == Some(i)
                                })
                        }
                        Contact::Star => false,
                    })
                })
                .map(|b| b.order_of(call_id, cseq))
                .max()
                .unwrap_or(Order::Newer)
        });
        if order == Order::Older {
            self.respond(
                req,
                top,
                source,
                400,
                "Bad Request (CSeq lower than the binding's)",
                &[],
            );
            return;
        }
        if order == Order::Same {
            let list = self.bindings.get(&*user).map_or(&[][..], Vec::as_slice);
            let mut extra = listed_contacts(list, now);
            extra.extend(path_back);
            extra.extend(self.outbound_headers(outbound, source));
            self.stats.registered += 1;
            self.respond(req, top, source, 200, "OK", &extra);
            return;
        }
        if star && let Some(list) = self.bindings.get_mut(&*user) {
            for b in std::mem::take(list) {
                if !found_by_user(&user, &b.contact) {
                    self.reindex(contact_key(&b.contact));
                }
            }
        }
        // The user is known from now on (an empty list when nothing is bound). Its list is
        // looked up once for the whole REGISTER.
        if !self.bindings.contains_key(&*user) {
            self.bindings.insert(Box::from(&*user), Vec::new());
        }
        let Some(list) = self.bindings.get_mut(&*user) else {
            unreachable!("the user's list exists")
        };
        // Index entries of contacts unbound here, checked once the list is done (another AOR
        // may still bind the same contact: `reindex`).
        let mut unbound = Vec::new();
        for c in contacts {
            let expires = c.expires().unwrap_or(default_expires);
            // Each contact's URI is moved into its binding (not copied).
            let Contact::Addr(addr) = c else { continue };
            let instance = instance_of(&self.call_id_key, &addr, outbound);
            let flow_state = match (instance, outbound) {
                (Some(_), Some(OutboundVia::Direct)) => FlowState::Direct,
                (Some(_), Some(OutboundVia::Edge)) => FlowState::Edge,
                _ => FlowState::Plain,
            };
            // §10.3 step 7: a binding of the same contact (§19.1.4) is replaced; RFC 5626 §6:
            // so is one of the same instance and reg-id (the phone's new flow replaces the
            // old, failed or not, whatever its contact URI now says).
            list.retain(|b| {
                let replaced = uri_eq::equivalent(&b.contact, &addr.uri)
                    || (instance.is_some() && b.instance == instance);
                if replaced && !found_by_user(&user, &b.contact) {
                    unbound.push(contact_key(&b.contact));
                }
                !replaced
            });
            // The contact a binding replaced had the same user part: it was listed in
            // `contacts` exactly when this one is.
            let key = (!found_by_user(&user, &addr.uri)).then(|| contact_key(&addr.uri));
            if expires > 0 {
                let granted = expires.min(self.config.max_expires);
                let expires_at = now + Duration::from_secs(granted.into());
                // Nearly every user has one contact: room for exactly one more, not the four
                // a first push reserves (a Binding is 240 bytes, per registered endpoint).
                if list.len() == list.capacity() {
                    list.reserve_exact(1);
                }
                list.push(Binding {
                    contact: addr.uri,
                    source: source.addr,
                    iface: source.iface,
                    path: path.clone(),
                    expires_at,
                    flow_state,
                    instance,
                    call_id,
                    cseq,
                });
                if flow_state == FlowState::Direct && on_stream {
                    let transport = &self.ifaces.of(source).config.transport;
                    let watched = self.flow_timer.filter(|_| {
                        ["TCP", "TLS", "WS", "WSS"]
                            .iter()
                            .any(|t| transport.eq_ignore_ascii_case(t))
                    });
                    let flow = self.outbound_flows.entry(source).or_insert(OutboundFlow {
                        users: Vec::new(),
                        heard: now,
                        watched,
                    });
                    // The Flow-Timer of its last 2xx.
                    flow.watched = watched;
                    if !flow.users.iter().any(|u| **u == *user) {
                        flow.users.push(Box::from(&*user));
                    }
                    if let Some(secs) = watched {
                        let at = now + flow_sweep_period(secs);
                        self.flow_sweep = Some(self.flow_sweep.map_or(at, |t| t.min(at)));
                    }
                }
                if let Some(key) = key {
                    self.contacts.insert(key, source);
                }
                self.earliest = Some(self.earliest.map_or(expires_at, |e| e.min(expires_at)));
            } else if let Some(key) = key {
                unbound.push(key);
            }
        }
        if list.is_empty() {
            list.shrink_to_fit();
        }
        let mut extra = listed_contacts(list, now);
        extra.extend(path_back);
        extra.extend(self.outbound_headers(outbound, source));
        for key in unbound {
            self.reindex(key);
        }
        self.stats.registered += 1;
        self.respond(req, top, source, 200, "OK", &extra);
    }

    /// The request's Call-ID as a 64-bit SipHash-1-3 digest of a 128-bit key derived from
    /// the secret, then the Call-ID. Two Call-IDs share a digest with a chance of about 2⁻⁶⁴,
    /// and a client that does not know the secret has no known way to aim for a collision. std has no stable
    /// keyed SipHash, so the key is hashed in first. The same secret gives the same digests, so
    /// a run replays exactly. A collision would only make a REGISTER of a new Call-ID whose
    /// CSeq is not above the old one's look like a late or repeated one. A missing Call-ID
    /// reads as empty.
    fn call_id_digest(&self, req: &Message) -> u64 {
        use std::hash::Hasher;
        let call_id = req
            .headers
            .view::<sip_msg::typed::CallIdRef>()
            .and_then(Result::ok)
            .map_or("", |c| c.0);
        let mut h = std::hash::DefaultHasher::new();
        h.write_u64(self.call_id_key.0[0]);
        h.write_u64(self.call_id_key.0[1]);
        h.write(call_id.as_bytes());
        h.finish()
    }

    fn proxy(&mut self, now: Instant, now_unix: u64, mut req: Message, top: TopVia, source: Flow) {
        let method = req.method().unwrap_or(Method::Options);
        if !self.services.is_idle()
            && matches!(
                self.services
                    .handle_known(now, &self.ifaces, &req, source, &mut self.out),
                services::Verdict::Handled
            )
        {
            return;
        }
        // RFC 3261 §16.3 step 3: Max-Forwards; §16.6 step 3: decremented, or added with 70
        // when the request has none. One the proxy cannot read is refused (§16.3 step 1).
        let forwards = match req.headers.typed::<MaxForwards>() {
            None => 70,
            Some(Ok(m)) if m.0 == 0 => {
                if method != Method::Ack {
                    self.respond(&req, top, source, 483, "Too Many Hops", &[]);
                }
                return;
            }
            Some(Ok(m)) => m.0 - 1,
            Some(Err(_)) => {
                if method != Method::Ack {
                    self.respond(&req, top, source, 400, "Bad Request (Max-Forwards)", &[]);
                }
                return;
            }
        };
        // §16.3 step 5: a Proxy-Require option tag the proxy does not understand (it
        // understands none) gets 420 with Unsupported. An ACK is dropped.
        if let Some(tags) = unsupported_tags(&req, &HeaderName::ProxyRequire, &[]) {
            if method != Method::Ack {
                let h = Header::new(HeaderName::Unsupported, tags);
                self.respond(&req, top, source, 420, "Bad Extension", &[h]);
            }
            return;
        }
        // Printed in place of the received one when the request is forwarded.
        let forwards_text: std::borrow::Cow<'static, str> =
            match SMALL_DECIMALS.get(forwards as usize) {
                // Nearly always 69 (70, the RFC 3261 §8.1.1.6 default, less one): no allocation.
                Some(text) => (*text).into(),
                None => forwards.to_string().into(),
            };

        // §16.4: "If the Request-URI contains a value this proxy previously placed into a
        // Record-Route header field ..., the proxy MUST replace the Request-URI in the request
        // with the last value from the Route header field, and remove that value from the
        // Route header field": a strict router before us (RFC 2543 style) put our
        // Record-Route URI (an interface's address and port, no user) there. Rare: the Route
        // lines are rewritten then.
        if req.headers.get(&HeaderName::Route).is_some() && self.request_uri_is_ours(&req) {
            take_last_route_as_request_uri(&mut req);
        }
        // §16.4: remove our own Route entry (loose routing) from the top: one naming the
        // address and port of one of our interfaces, or our domain (the domain this registrar
        // is responsible for, in any case) with no port or one of ours. With several
        // interfaces a second entry of ours follows the first when the dialog was
        // double-record-routed (RFC 5658 §4): both go.
        let ours = |r: &RouteRef<'_>| {
            r.uri.as_sip().is_some_and(|u| {
                self.ifaces.0.iter().any(|i| {
                    i.is_at(&u.host, u.port)
                        || matches!(&u.host, HostRef::Name(n) if n.eq_ignore_ascii_case(&self.config.domain))
                            && u.port.is_none_or(|p| p == i.config.port)
                })
            })
        };
        let first_route = req.headers.view::<RouteRef>().and_then(Result::ok);
        let mut pop_routes = u8::from(first_route.as_ref().is_some_and(&ours));
        // With several interfaces, the one our last removed entry names: the one facing the
        // next hop (see `Ifaces::for_uri`).
        let mut hop = None;
        if pop_routes == 1 && self.ifaces.0.len() > 1 {
            hop = first_route.as_ref().and_then(|r| self.ifaces.named_by(r));
            if let Some(text) = nth_value(&req, &ROUTE, 1)
                && let Ok(second) = <RouteRef as sip_msg::HeaderView>::parse(first_value(&text))
                && ours(&second)
            {
                pop_routes = 2;
                hop = self.ifaces.named_by(&second);
            }
        }
        // A To value without the letters `tag` has no tag parameter: the name-addr is read
        // only when it may have one (an initial request's To is not).
        let to_tag = req
            .headers
            .get(&HeaderName::To)
            .is_some_and(|h| may_hold_tag(h.value()))
            .then(|| req.headers.view::<ToRef>().and_then(Result::ok))
            .flatten()
            .and_then(|t| t.tag());
        let in_dialog = to_tag.is_some();
        // The ACK of a final response we generated ourselves (its To tag is ours) ends here.
        if method == Method::Ack && to_tag.is_some_and(|t| t == Tag::of(top.tag_hash).as_str()) {
            return;
        }

        // The binding's Path, as the forwarded request's first Route (RFC 3327 §5.3).
        let mut path_route: Option<Box<str>> = None;
        // The Route entry after ours (§16.4), if any: the next hop (§16.6 step 7); `Some(None)`
        // for one we cannot reach (a name, or not a SIP URI).
        let after_ours = (pop_routes > 0).then(|| nth_value(&req, &ROUTE, pop_routes.into()));
        let next_route = match &after_ours {
            Some(text) => text
                .as_deref()
                .map(|t| <RouteRef as sip_msg::HeaderView>::parse(first_value(t))),
            None => req.headers.view::<RouteRef>(),
        }
        .and_then(Result::ok)
        .map(|r| match r.uri.as_sip() {
            Some(u) => host_ip(&u.host).map(|ip| Flow {
                addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
                iface: self
                    .ifaces
                    .for_target(u.scheme, u.transport().as_deref(), ip, source.iface),
            }),
            None => None,
        });
        let target: Option<Flow> = if in_dialog || method == Method::Ack {
            // In-dialog: the Request-URI is the remote target (a registered contact), or the
            // next Route entry.
            match next_route {
                Some(addr) => addr,
                None => {
                    // A peer that ignored our Record-Route (SIPp's default scenarios) sends
                    // in-dialog requests to us by AOR: find the user's binding then.
                    let uri = req.request_uri().map(std::borrow::Cow::into_owned);
                    // By AOR also when it names our domain (RFC 3261 §16.5: the location
                    // service of a domain we are responsible for).
                    let by_aor = uri.as_ref().filter(|u| self.uri_names_us(u));
                    match by_aor
                        .and_then(Uri::as_sip)
                        .and_then(SipUri::user_unescaped)
                    {
                        Some(user) => match self
                            .bindings
                            .get(user.as_str())
                            .and_then(|l| live_binding(l))
                            .map(|b| (b.contact.clone(), b.flow()))
                        {
                            Some((contact, to)) => {
                                req.set_request_uri(contact);
                                Some(to)
                            }
                            // Only failed flows left (RFC 5626 §5.3): 430, as for an initial
                            // request to the user.
                            None if self.bindings.get(user.as_str()).is_some_and(|l| {
                                l.iter().any(|b| b.flow_state == FlowState::Failed)
                            }) =>
                            {
                                if method != Method::Ack {
                                    self.respond(&req, top, source, 430, "Flow Failed", &[]);
                                }
                                return;
                            }
                            None => None,
                        },
                        None => uri.and_then(|u| self.flow_of_contact(&u, hop, source.iface)),
                    }
                }
            }
        } else {
            // Initial request: authenticate the caller (407, RFC 3261 §22.3), then look up the callee.
            if method != Method::Cancel {
                match self.auth.check(&req, &method, now_unix, true) {
                    auth::Outcome::Allowed(_) => {}
                    auth::Outcome::Challenge(h) => {
                        self.stats.challenged += 1;
                        self.respond(&req, top, source, 407, "Proxy Authentication Required", &h);
                        return;
                    }
                    auth::Outcome::Forbidden | auth::Outcome::NotFound => {
                        self.respond(&req, top, source, 403, "Forbidden", &[]);
                        return;
                    }
                    auth::Outcome::UriMismatch => {
                        self.respond(&req, top, source, 400, URI_MISMATCH, &[]);
                        return;
                    }
                }
            }
            // Borrowed from the Request-URI unless it holds escapes (as `user_unescaped`),
            // read in place when it is the received text (no owned copy of it).
            let uri_ref = req.request_uri_in_place();
            let owned = match uri_ref {
                Some(_) => None,
                None => req.request_uri(),
            };
            let raw_user = match (&uri_ref, &owned) {
                (Some(u), _) => u.as_sip().and_then(|u| u.user),
                (None, Some(u)) => u.as_sip().and_then(|u| u.user.as_deref()),
                (None, None) => None,
            };
            let Some(user): Option<std::borrow::Cow<'_, str>> = raw_user.map(|raw| {
                if raw.contains('%') {
                    sip_msg::unescape(raw).into()
                } else {
                    raw.into()
                }
            }) else {
                self.respond(&req, top, source, 404, "Not Found", &[]);
                return;
            };
            if method == Method::Invite
                && let Some(service) = Service::from_user(&user)
                && self.names_us(&req)
            {
                self.services.handle_invite(
                    now,
                    &self.ifaces,
                    service,
                    &req,
                    source,
                    &mut self.out,
                );
                return;
            }
            // A Request-URI naming another server by address (sip:user@192.0.2.9:5070) is
            // forwarded there: tests may call SIP peers that do not register here.
            // The address (a host name has none) from the URI read above; the owned URI is
            // made only for an address that is not ours (its transport picks the interface).
            let addr = match (&uri_ref, &owned) {
                (Some(u), _) => u.as_sip().and_then(|u| {
                    host_ip(&u.host).map(|ip| SocketAddr::new(ip, u.port.unwrap_or(5060)))
                }),
                (None, Some(u)) => uri_addr(u),
                (None, None) => None,
            };
            let foreign = addr.filter(|a| !self.is_our_addr(*a)).and_then(|addr| {
                let u = owned.clone().or_else(|| req.request_uri())?;
                Some(Flow {
                    addr,
                    iface: self.ifaces.for_uri(&u, addr.ip(), None, source.iface),
                })
            });
            let list = self.bindings.get(&*user).map_or(&[][..], Vec::as_slice);
            match live_binding(list) {
                // RFC 5626 §5.3: the flow to the phone no longer exists (its connection
                // closed, `handle_flow_closed`), and no other binding does: 430 (Flow
                // Failed). The phone is expected to register again over a new flow; once the
                // failed binding is dropped, 480.
                None if list.iter().any(|b| b.flow_state == FlowState::Failed) => {
                    if method != Method::Ack {
                        self.respond(&req, top, source, 430, "Flow Failed", &[]);
                    }
                    return;
                }
                Some(b) => {
                    let contact = b.contact.clone();
                    let to = b.flow();
                    // RFC 3327 §5.3: behind an edge proxy the request goes along the Path
                    // (its Route), to the edge, over the flow the REGISTER came on.
                    path_route = b.path.clone();
                    // §16.5 target → §16.6 step 2: the Request-URI becomes the contact; every
                    // header and the body are forwarded as received.
                    req.set_request_uri(contact);
                    Some(to)
                }
                None if foreign.is_some() => foreign,
                None => {
                    let known = if self.auth.has_accounts() {
                        self.auth.knows(&user)
                    } else {
                        self.bindings.contains_key(&*user)
                    };
                    let (code, reason) = if known {
                        (480, "Temporarily Unavailable")
                    } else {
                        (404, "Not Found")
                    };
                    if method != Method::Ack {
                        self.respond(&req, top, source, code, reason, &[]);
                    }
                    return;
                }
            }
        };
        // §16.6 steps 6–7: an initial request retargeted above still goes to the first Route
        // value left (a preloaded route beyond us), unless a Path was put above it (its first
        // hop is the binding's flow).
        let target = match (in_dialog || method == Method::Ack, &path_route, next_route) {
            (false, None, Some(hop)) => hop,
            _ => target,
        };
        let Some(to) = target else {
            if method != Method::Ack {
                self.respond(&req, top, source, 404, "Not Found (unknown target)", &[]);
            }
            return;
        };
        // §16.6 step 6: the next hop is the Route value after ours; one without `lr` is a
        // strict router, which expects its URI as the Request-URI: "The proxy MUST place the
        // Request-URI into the Route header field as the last value ... then place the first
        // Route header field value into the Request-URI and remove that value". Rare: the
        // common loose route costs one `lr` lookup.
        if next_route.is_some() && (in_dialog || method == Method::Ack || path_route.is_none()) {
            let strict = nth_value(&req, &ROUTE, pop_routes.into()).and_then(|t| {
                let r = <RouteRef as sip_msg::HeaderView>::parse(first_value(&t)).ok()?;
                let loose = r.uri.as_sip()?.params.contains("lr");
                (!loose).then(|| r.uri.into_owned())
            });
            if let Some(next) = strict
                && let Some(old) = req.request_uri().map(std::borrow::Cow::into_owned)
            {
                let mut last = String::with_capacity(64);
                last.push('<');
                // Writing into a String never fails.
                let _ = old.write_to(&mut last);
                last.push('>');
                req.set_request_uri(next);
                // The strict router's value leaves the Route with ours (`pop_routes`); the
                // old Request-URI goes last, on a line of its own after every other Route.
                pop_routes += 1;
                req.headers.push(Header::new(HeaderName::Route, last));
            }
        }
        // RFC 5626 §5.3 for a dialog: the target's connection closed under an outbound
        // binding (`handle_flow_closed`), so the request cannot reach the phone: 430 (Flow
        // Failed), as for an initial request to its user. An ACK is dropped.
        if in_dialog && self.failed_flows.get(&to).is_some_and(|until| *until > now) {
            if method != Method::Ack {
                self.respond(&req, top, source, 430, "Flow Failed", &[]);
            }
            return;
        }
        // §16.6 step 4: Record-Route on dialog-creating requests.
        let Scratch {
            out,
            via: stamped,
            ours,
            uri: uri_text,
            record_route,
        } = &mut self.scratch;
        let (iface_in, iface_out) = (self.ifaces.of(source), self.ifaces.of(to));
        // §16.6 step 4; across interfaces, RFC 5658 §4: the outgoing interface's entry
        // above the incoming one's, so the callee's requests come in where it can reach us
        // and the caller's (who reads the route set bottom up) where it can.
        let record_route = (method == Method::Invite && !in_dialog).then(|| {
            if source.iface == to.iface {
                iface_in.record_route.as_str()
            } else {
                record_route.clear();
                record_route.push_str(&iface_out.record_route);
                record_route.push_str(", ");
                record_route.push_str(&iface_in.record_route);
                record_route.as_str()
            }
        });
        // §16.11: a stateless proxy's branch is a function of the incoming branch, so
        // retransmissions and the CANCEL of an INVITE map to the same branch.
        // The top Via was read once, when the request came in (`TopVia`).
        let incoming = top.branch_hash;
        // Our Via, printed as `Via::new(transport, host, port, branch)` prints it.
        ours.clear();
        ours.push_str(&iface_out.via_prefix);
        ours.push_str(BRANCH_MAGIC);
        ours.push_str("sm");
        sip_msg::push_hex16(ours, incoming);
        if source.iface != 0 {
            // The interface it came in on, for its responses (see `iface_of_branch`).
            ours.push('i');
            sip_msg::push_decimal(ours, u64::from(source.iface));
        }
        // Record where the request came from on its Via (RFC 3581), so responses find it.
        stamped.clear();
        let from_stream = !iface_in.config.transport.eq_ignore_ascii_case("UDP");
        let is_stamped = write_stamped_top_via(&req, source.addr, from_stream, stamped);
        let vias = [ours.as_str(), stamped.as_str()];
        out.clear();
        write_forwarded(
            &req,
            &ForwardHead {
                vias: &vias[..1 + usize::from(is_stamped)],
                drop_top_via: is_stamped,
                record_route,
                route: path_route.as_deref(),
                pop_routes,
                max_forwards: Some(&forwards_text),
            },
            uri_text,
            out,
        );
        self.stats.forwarded += 1;
        // Copied out at its exact size (see `respond`).
        self.out.push_back((to, Bytes::copy_from_slice(out)));
    }

    /// §16.7 / §16.11: pop our Via and send the response to the next Via's address.
    fn forward_response(&mut self, resp: Message, source: Flow) {
        // Our Via's branch, when the top Via is ours.
        let our_branch: Option<std::borrow::Cow<'_, str>> = match self.our_via_branch(&resp) {
            Some(branch) => Some(branch.into()),
            None => resp
                .headers
                .view::<ViaRef>()
                .and_then(Result::ok)
                .filter(|v| self.ifaces.0.iter().any(|i| i.is_at(&v.host, v.port)))
                .map(|v| v.branch().unwrap_or_default()),
        };
        let ours = our_branch.is_some();
        // A response whose top Via is not ours was sent to us by a peer that answers "the
        // address the call came from" instead of following Via (SIPp's stock UAS does that for
        // in-dialog requests that bypassed us). RFC 3261 §16.7 would drop it; we deliver it
        // along its top Via, so such peers still interoperate.
        // The next Via: the second value when ours is popped, else the first.
        let after_ours = ours.then(|| nth_value(&resp, &VIA, 1));
        let next = match &after_ours {
            Some(text) => text
                .as_deref()
                .map(|t| <ViaRef as sip_msg::HeaderView>::parse(first_value(t))),
            None => resp.headers.view::<ViaRef>(),
        };
        let Some(Ok(next)) = next else {
            self.stats.dropped += 1;
            return;
        };
        let via_ip = match next.host {
            HostRef::V4(a) => Some(std::net::IpAddr::V4(a)),
            HostRef::V6(a) => Some(std::net::IpAddr::V6(a)),
            HostRef::Name(_) => None,
        };
        let host = next.received().and_then(|r| r.parse().ok()).or(via_ip);
        let port = next.rport().flatten().or(next.port).unwrap_or(5060);
        let Some(host) = host else {
            self.stats.dropped += 1;
            return;
        };
        // RFC 3261 §18.2.2: back on the interface the request came in on, as our branch
        // records it (with two listeners of one transport the Via's transport alone does
        // not tell which); without our Via, the interface of that Via's transport.
        let iface = our_branch
            .as_deref()
            .and_then(iface_of_branch)
            .filter(|&i| usize::from(i) < self.ifaces.0.len())
            .unwrap_or_else(|| {
                self.ifaces
                    .for_transport(next.transport, host, source.iface)
            });
        let to = Flow {
            addr: SocketAddr::new(host, port),
            iface,
        };
        self.stats.responses_forwarded += 1;
        let Scratch { out, uri, .. } = &mut self.scratch;
        out.clear();
        write_forwarded(
            &resp,
            &ForwardHead {
                vias: &[],
                drop_top_via: ours,
                record_route: None,
                route: None,
                pop_routes: 0,
                max_forwards: None,
            },
            uri,
            out,
        );
        self.out.push_back((to, Bytes::copy_from_slice(out)));
    }

    /// The branch of the top Via of `msg` when that Via is exactly as we print ours (an
    /// interface's `via_prefix` and a branch of letters and digits): such a Via reads as our
    /// host and port, so the parse that checks it in general is skipped. `None` says nothing
    /// (the caller parses then).
    fn our_via_branch<'m>(&self, msg: &'m Message) -> Option<&'m str> {
        let via = msg.headers.get(&HeaderName::Via)?.value();
        self.ifaces.0.iter().find_map(|i| {
            let rest = via.strip_prefix(i.via_prefix.as_str())?;
            let end = rest.find(',').unwrap_or(rest.len());
            let branch = rest[..end].trim_end_matches([' ', '\t']);
            (!branch.is_empty() && branch.bytes().all(|c| c.is_ascii_alphanumeric()))
                .then_some(branch)
        })
    }

    /// True when the Request-URI's host is our domain or our own address.
    fn names_us(&self, req: &Message) -> bool {
        req.request_uri().is_some_and(|u| self.uri_names_us(&u))
    }

    /// True when `uri`'s host is our domain or our own address.
    fn uri_names_us(&self, uri: &Uri) -> bool {
        let Some(u) = uri.as_sip() else {
            return false;
        };
        match &u.host {
            Host::Name(n) => n.eq_ignore_ascii_case(&self.config.domain),
            _ => uri_addr(uri).is_some_and(|a| self.is_our_addr(a)),
        }
    }

    /// True when `a` is the address of one of this registrar's interfaces.
    fn is_our_addr(&self, a: SocketAddr) -> bool {
        self.ifaces.0.iter().any(|i| {
            let ours = match &i.config.host {
                Host::V4(ip) => Some(std::net::IpAddr::V4(*ip)),
                Host::V6(ip) => Some(std::net::IpAddr::V6(*ip)),
                Host::Name(_) => None,
            };
            ours == Some(a.ip()) && a.port() == i.config.port
        })
    }

    /// The contacts index entry `key` after a binding of that contact went: another AOR
    /// may still bind the same contact (two AORs sharing a phone), and then the entry is the
    /// source of that AOR's binding; else it goes. A walk over the bindings, only when an
    /// indexed contact (one whose user part is not its AOR's user: rare) is unbound.
    fn reindex(&mut self, key: String) {
        let still = self.bindings.iter().find_map(|(user, list)| {
            list.iter()
                .rev()
                .find(|b| !found_by_user(user, &b.contact) && contact_key(&b.contact) == key)
                .map(Binding::flow)
        });
        match still {
            Some(source) => {
                self.contacts.insert(key, source);
            }
            None => {
                self.contacts.remove(&key);
            }
        }
    }

    /// Where a registered contact is reached: the source its REGISTER came from, on the
    /// interface it came in on. A contact whose user part is its AOR's user is found among
    /// that user's bindings; the others in `contacts`. A contact nobody registered is its
    /// own address, on the interface of its transport (else `fallback`).
    fn flow_of_contact(&self, uri: &Uri, hop: Option<u8>, fallback: u8) -> Option<Flow> {
        let own = uri.as_sip().and_then(|u| {
            let raw = u.user.as_deref()?;
            let user: std::borrow::Cow<'_, str> = if raw.contains('%') {
                u.user_unescaped()?.into()
            } else {
                raw.into()
            };
            let list = self.bindings.get(&*user)?;
            list.iter().rev().find(|b| uri_eq::reaches(&b.contact, uri))
        });
        if let Some(b) = own {
            return Some(b.flow());
        }
        self.contacts.get(&contact_key(uri)).copied().or_else(|| {
            uri_addr(uri).map(|addr| Flow {
                addr,
                iface: self.ifaces.for_uri(uri, addr.ip(), hop, fallback),
            })
        })
    }
}

/// The binding of a user's list a request goes to: the last made (the newest) whose flow
/// has not failed (RFC 5626 §7: a failed flow is not used).
fn live_binding(list: &[Binding]) -> Option<&Binding> {
    list.iter()
        .rev()
        .find(|b| b.flow_state != FlowState::Failed)
}

/// The Contact lines of a 200 to a REGISTER: every binding of the AOR (`list`) with the
/// seconds it has left.
fn listed_contacts(list: &[Binding], now: Instant) -> Vec<Header> {
    let mut extra = Vec::with_capacity(list.len());
    for b in list {
        // Rounded up: a current binding (`drop_lapsed` has run) has more than 0 s left, and
        // `expires=0` would read as removed (§10.2.4).
        let left = b.expires_at.saturating_duration_since(now);
        let left = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        // `<contact>;expires=left`, written into one string.
        extra.push(Header::written(HeaderName::Contact, |value| {
            value.push('<');
            // Writing into a String never fails.
            let _ = b.contact.write_to(value);
            value.push_str(">;expires=");
            sip_msg::push_decimal(value, left);
        }));
    }
    extra
}

/// The key of the Call-ID digests (`Registrar::call_id_digest`): two SipHash-1-3 digests of
/// the secret under distinct labels, computed once. Derived from the secret: never printed.
struct CallIdKey([u64; 2]);

impl std::fmt::Debug for CallIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// RFC 5626 §6: with outbound granted (`outbound`), a contact with an instance and a reg-id
/// is an outbound binding of that pair: its [`instance_digest`]; else `None`.
fn instance_of(
    key: &CallIdKey,
    addr: &sip_msg::typed::NameAddr,
    outbound: Option<OutboundVia>,
) -> Option<std::num::NonZeroU64> {
    outbound?;
    let instance = addr.params.get("+sip.instance")??;
    let reg_id = addr.params.get("reg-id")??;
    Some(instance_digest(key, instance, reg_id))
}

/// The digest of a contact's `+sip.instance` and `reg-id` (RFC 5626 §6), keyed as the
/// Call-ID digests are (`Registrar::call_id_digest`), never zero.
fn instance_digest(key: &CallIdKey, instance: &str, reg_id: &str) -> std::num::NonZeroU64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write_u64(key.0[0]);
    h.write_u64(key.0[1]);
    h.write(instance.as_bytes());
    // A separator no instance holds unquoted, so ("a", "1") and ("a1", "") differ.
    h.write_u8(0);
    h.write(reg_id.as_bytes());
    std::num::NonZeroU64::new(h.finish()).unwrap_or(std::num::NonZeroU64::MIN)
}

fn call_id_key_of(secret: &[u8]) -> CallIdKey {
    use std::hash::Hasher;
    CallIdKey(
        [b"sipmeter call-id key 0", b"sipmeter call-id key 1"].map(|label| {
            let mut h = std::hash::DefaultHasher::new();
            h.write(label);
            h.write(secret);
            h.finish()
        }),
    )
}

/// The Record-Route value of a registrar: `<sip:host:port;lr>`, with `;transport=tcp` (`tls`,
/// `ws`, `wss`) when it serves a stream transport. RFC 3261 §16.6 step 4: the URI must resolve
/// to the proxy, and a `sip:` URI with an address, a port and no transport resolves to UDP
/// (RFC 3263 §4.1), where a stream-only registrar does not listen.
fn record_route_of(config: &RegistrarConfig) -> String {
    let mut rr = String::with_capacity(64);
    rr.push_str("<sip:");
    sip_msg::push_host(&mut rr, &config.host);
    rr.push(':');
    sip_msg::push_decimal(&mut rr, u64::from(config.port));
    if !config.transport.eq_ignore_ascii_case("UDP") {
        rr.push_str(";transport=");
        rr.push_str(&config.transport.to_ascii_lowercase());
    }
    rr.push_str(";lr>");
    rr
}

/// The interface a request we forwarded came in on, as our branch (`z9hG4bKsm`, the
/// incoming branch's 16 hex digits, then `i` and the interface's index unless it is the
/// first) records it; `None` for a branch not printed so.
fn iface_of_branch(branch: &str) -> Option<u8> {
    let rest = branch.strip_prefix(BRANCH_MAGIC)?.strip_prefix("sm")?;
    match rest.get(16..)? {
        "" => Some(0),
        index => index.strip_prefix('i')?.parse().ok(),
    }
}

/// `0` to `99` as text, for headers built from small numbers without allocating.
const SMALL_DECIMALS: [&str; 100] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
    "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47", "48",
    "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61", "62", "63", "64",
    "65", "66", "67", "68", "69", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79", "80",
    "81", "82", "83", "84", "85", "86", "87", "88", "89", "90", "91", "92", "93", "94", "95", "96",
    "97", "98", "99",
];

/// Header names for [`nth_value`], whose answer borrows them.
static VIA: HeaderName = HeaderName::Via;
static ROUTE: HeaderName = HeaderName::Route;

/// The text from the `n`th value of `name` on (0 is the first): the rest of the line it is
/// on, for reading what follows values we leave out.
fn nth_value<'a>(
    msg: &'a Message,
    name: &'a HeaderName,
    n: usize,
) -> Option<std::borrow::Cow<'a, str>> {
    let mut left = n;
    'lines: for line in msg.headers.get_all(name) {
        let mut text = std::borrow::Cow::Borrowed(line.value());
        while left > 0 {
            left -= 1;
            match after_first_value(&text) {
                Some(rest) => text = rest.into(),
                None => continue 'lines,
            }
        }
        return Some(text);
    }
    None
}

/// How [`write_forwarded`] edits the head of a message it forwards.
struct ForwardHead<'a> {
    /// Via values printed first, one `Via:` line each.
    vias: &'a [&'a str],
    /// The first value of the received top Via is left out (replaced by `vias`: stamped, or
    /// our own popped from a response); the other values of its line stay.
    drop_top_via: bool,
    /// A `Record-Route` printed after the Vias.
    record_route: Option<&'a str>,
    /// A `Route` printed after them, above the received Route values (a binding's Path).
    route: Option<&'a str>,
    /// This many first values of Route are left out (ours, RFC 3261 §16.4; two when double
    /// record-routed, RFC 5658 §4).
    pop_routes: u8,
    /// Max-Forwards printed in place of the first received one (the others left out), or
    /// last when there was none (§16.6 step 3).
    max_forwards: Option<&'a str>,
}

/// Prints `msg` as forwarded with `head`'s edits straight into `out`: the start line, then
/// `head`'s Vias and Record-Route, then every received header line byte for byte (compact
/// forms too) but those edited, then the body. The same header values, in the same order
/// for each name, as editing the parsed message and printing it with `to_bytes` (test
/// `a_forwarded_message_is_the_edited_one`), without changing the message.
/// `text` is room for printing the Request-URI, kept between calls.
fn write_forwarded(msg: &Message, head: &ForwardHead<'_>, text: &mut String, out: &mut Vec<u8>) {
    fn line(out: &mut Vec<u8>, name: &HeaderName, value: &str) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // `out` is kept between messages by the caller: it has room already after the first.
    // A response's method (its CSeq's, which `method()` would read) is not printed: it is
    // asked for only of a request (its start line's).
    match (
        msg.is_request().then(|| msg.method()).flatten(),
        msg.status(),
    ) {
        (Some(method), _) => {
            out.extend_from_slice(method.as_str().as_bytes());
            out.push(b' ');
            // Read in place when it prints as received (no owned copy), else printed.
            match msg.request_uri_printed() {
                Some(printed) => out.extend_from_slice(printed.as_bytes()),
                None => {
                    text.clear();
                    if let Some(uri) = msg.request_uri() {
                        // Writing into a String never fails.
                        let _ = uri.write_to(text);
                    }
                    out.extend_from_slice(text.as_bytes());
                }
            }
            out.extend_from_slice(b" SIP/2.0\r\n");
        }
        (None, Some(code)) => {
            out.extend_from_slice(b"SIP/2.0 ");
            // A status code has three digits (100–699).
            let code = code.min(999);
            out.extend_from_slice(&[
                b'0' + (code / 100) as u8,
                b'0' + (code / 10 % 10) as u8,
                b'0' + (code % 10) as u8,
            ]);
            out.push(b' ');
            out.extend_from_slice(msg.reason().unwrap_or_default().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    for v in head.vias {
        line(out, &HeaderName::Via, v);
    }
    if let Some(rr) = head.record_route {
        line(out, &HeaderName::RecordRoute, rr);
    }
    if let Some(route) = head.route {
        line(out, &HeaderName::Route, route);
    }
    let (mut via_left, mut routes_left, mut forwards_left) =
        (head.drop_top_via, head.pop_routes, head.max_forwards);
    let mut has_length = false;
    for h in msg.headers.iter() {
        let name = h.name();
        has_length |= *name == HeaderName::ContentLength;
        if via_left && *name == HeaderName::Via {
            // The first value goes; the rest of its line stays.
            via_left = false;
            if let Some(rest) = after_first_value(h.value()) {
                line(out, name, &rest);
            }
            continue;
        }
        if routes_left > 0 && *name == HeaderName::Route {
            // Values go from the front, over lines; the rest of the last line touched stays.
            let mut rest = Some(std::borrow::Cow::Borrowed(h.value()));
            while routes_left > 0 {
                let Some(text) = rest else { break };
                routes_left -= 1;
                rest = after_first_value(&text).map(std::borrow::Cow::Owned);
            }
            if let Some(rest) = rest {
                line(out, name, &rest);
            }
            continue;
        }
        if *name == HeaderName::MaxForwards && head.max_forwards.is_some() {
            if let Some(v) = forwards_left.take() {
                line(out, name, v);
            }
            continue;
        }
        match h.raw() {
            Some(raw) => out.extend_from_slice(raw),
            None => {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value().as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(v) = forwards_left {
        line(out, &HeaderName::MaxForwards, v);
    }
    if !has_length {
        // RFC 3261 §18.3, §20.14: a message on a stream MUST carry Content-Length, and one
        // that came as a datagram without it may leave on a connection (another interface,
        // or a binding's flow). Its body is the rest of the datagram.
        out.extend_from_slice(b"Content-Length: ");
        let mut digits = [0u8; 20];
        out.extend_from_slice(sip_msg::decimal(msg.body().len() as u64, &mut digits).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.body());
}

/// RFC 3261 §16.4 for a request a strict router sent us: the last Route value becomes the
/// Request-URI and leaves the Route (the values left are written on one Route line, where
/// the first was). A last value that is not a readable name-addr changes nothing.
fn take_last_route_as_request_uri(req: &mut Message) {
    let mut values: Vec<String> = Vec::new();
    for h in req.headers.get_all(&HeaderName::Route) {
        let v = h.value();
        let mut start = 0;
        for at in top_commas(v).chain([v.len()]) {
            values.push(trim_fast(&v[start..at]).to_owned());
            start = at + 1;
        }
    }
    let Some(last) = values.pop() else { return };
    let Ok(route) = <RouteRef as sip_msg::HeaderView>::parse(&last) else {
        return;
    };
    let uri = route.uri.into_owned();
    let Some(at) = req.headers.position(&HeaderName::Route) else {
        return;
    };
    req.headers.remove(&HeaderName::Route);
    if !values.is_empty() {
        req.headers
            .insert(at, Header::new(HeaderName::Route, values.join(", ")));
    }
    req.set_request_uri(uri);
}

/// Removes the first value of a (possibly comma-joined) header, in place: the other headers
/// keep their received bytes.
fn pop_first_value(msg: &mut Message, name: HeaderName) {
    let Some(i) = msg.headers.position(&name) else {
        return;
    };
    let Some(first) = msg.headers.remove_first(&name) else {
        return;
    };
    if let Some(rest) = after_first_value(first.value()) {
        msg.headers.insert(i, Header::new(name, rest));
    }
}

/// The top Via value of `msg` with `received` (and `rport`, when asked for) set to `source`
/// (RFC 3261 §18.2.1, RFC 3581 §4), edited as text: the rest of the value stays byte for
/// byte as received. `None` when the message has no readable top Via. (The registrar's paths
/// read the Via once and call `stamp_valid_top_via`; the tests use this whole form.)
#[cfg(test)]
fn stamped_top_via(msg: &Message, source: SocketAddr) -> Option<String> {
    msg.headers.view::<ViaRef>()?.ok()?;
    stamp_valid_top_via(msg, source)
}

/// The top Via of `msg` stamped as `stamped_top_via` says, for a message whose top Via the
/// caller has read as valid.
#[cfg(test)]
fn stamp_valid_top_via(msg: &Message, source: SocketAddr) -> Option<String> {
    let mut out = String::new();
    write_stamped_top_via(msg, source, false, &mut out).then_some(out)
}

/// [`stamp_valid_top_via`] appended to `out`; false (and nothing written) when the message
/// has no readable top Via. With `add_rport`, `rport` is set even when not asked for: a
/// request forwarded from a stream, whose responses must reach the connection's port, not
/// the Via's sent-by port (RFC 3261 §18.2.2).
fn write_stamped_top_via(
    msg: &Message,
    source: SocketAddr,
    add_rport: bool,
    out: &mut String,
) -> bool {
    let Some(line) = msg.headers.get(&HeaderName::Via).map(|h| h.value()) else {
        return false;
    };
    let top = first_value(line);
    if sip_msg::find_in_line(top.as_bytes(), b'"').is_some() {
        // A quoted parameter could hold `;`: let the typed model print it.
        let Some(mut via) = msg.top_via() else {
            return false;
        };
        via.params.set("received", Some(&source.ip().to_string()));
        if add_rport || via.params.contains("rport") {
            via.params.set("rport", Some(&source.port().to_string()));
        }
        out.push_str(&text_of(&via, 128));
        return true;
    }
    out.reserve(top.len() + 40);
    let mut segments = split_ascii(top, b';');
    out.push_str(segments.next().unwrap_or_default().trim_end());
    let (mut received, mut rport) = (false, false);
    for seg in segments {
        let name = trim_fast(split_ascii(seg, b'=').next().unwrap_or_default());
        if name.eq_ignore_ascii_case("received") {
            received = true;
            out.push(';');
            out.push_str(name);
            out.push('=');
            sip_msg::push_ip(out, source.ip());
        } else if name.eq_ignore_ascii_case("rport") {
            rport = true;
            out.push(';');
            out.push_str(name);
            out.push('=');
            sip_msg::push_decimal(out, u64::from(source.port()));
        } else {
            out.push(';');
            out.push_str(trim_fast(seg));
        }
    }
    if !received {
        out.push_str(";received=");
        sip_msg::push_ip(out, source.ip());
    }
    if add_rport && !rport {
        out.push_str(";rport=");
        sip_msg::push_decimal(out, u64::from(source.port()));
    }
    true
}

/// `s` split at every `sep` (an ASCII byte), as `str::split` splits it at that character: a
/// plain byte loop instead of the string searcher (the pieces of a Via are a few bytes long).
fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    debug_assert!(sep.is_ascii());
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        // `sep` is ASCII, so every cut is on a character boundary.
        match s.as_bytes()[from..].iter().position(|&c| c == sep) {
            Some(p) => {
                start = Some(from + p + 1);
                s.get(from..from + p)
            }
            None => {
                start = None;
                s.get(from..)
            }
        }
    })
}

/// The byte offsets of the commas that separate the values of a comma-joined header value:
/// commas inside a quoted string or angle brackets do not count, and inside a quoted string a
/// backslash escapes the next character (RFC 3261 §25.1 `quoted-pair`: `"a\", b"` is one
/// string), as sip-msg's own splitter reads them.
fn top_commas(v: &str) -> impl Iterator<Item = usize> + '_ {
    let b = v.as_bytes();
    let (mut quote, mut angle, mut i) = (false, false, 0);
    std::iter::from_fn(move || {
        while let Some(&c) = b.get(i) {
            let at = i;
            i += 1;
            match c {
                // The escaped character is skipped (it may be a quote).
                b'\\' if quote => i += 1,
                b'"' => quote = !quote,
                b'<' if !quote => angle = true,
                b'>' if !quote => angle = false,
                b',' if !quote && !angle => return Some(at),
                _ => {}
            }
        }
        None
    })
}

/// The first value of a comma-joined header value (see [`top_commas`]), trimmed.
fn first_value(v: &str) -> &str {
    // Nearly every value is alone on its line: without a comma there is nothing to split.
    if !has_comma(v) {
        return trim_fast(v);
    }
    // A comma is ASCII: the cut is on a character boundary.
    match top_commas(v).next() {
        Some(at) => trim_fast(&v[..at]),
        None => trim_fast(v),
    }
}

/// True when `v` holds a comma: the SIMD byte search for short texts (the values looked at
/// are whole header values, tens of bytes; `str::contains` walks them a word at a time).
fn has_comma(v: &str) -> bool {
    sip_msg::find_in_line(v.as_bytes(), b',').is_some()
}

/// The values after the first of a comma-joined header value (see [`top_commas`]),
/// re-joined with `, `; `None` when there is only one.
fn after_first_value(v: &str) -> Option<String> {
    // Without a comma there is one value only.
    if !has_comma(v) {
        return None;
    }
    let mut commas = top_commas(v);
    let first = commas.next()?;
    let mut parts = Vec::new();
    let mut start = first + 1;
    for at in commas {
        parts.push(trim_fast(&v[start..at]));
        start = at + 1;
    }
    parts.push(trim_fast(&v[start..]));
    Some(parts.join(", "))
}

/// The address of a host read in place, when it is one (names are not resolved here).
fn host_ip(h: &HostRef<'_>) -> Option<std::net::IpAddr> {
    match h {
        HostRef::V4(a) => Some(std::net::IpAddr::V4(*a)),
        HostRef::V6(a) => Some(std::net::IpAddr::V6(*a)),
        HostRef::Name(_) => None,
    }
}

/// True when `h` (read in place) is `host`; names compare case-insensitively.
fn host_is(h: &HostRef<'_>, host: &Host) -> bool {
    match (h, host) {
        (HostRef::V4(a), Host::V4(b)) => a == b,
        (HostRef::V6(a), Host::V6(b)) => a == b,
        (HostRef::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

fn uri_addr(uri: &Uri) -> Option<SocketAddr> {
    let u = uri.as_sip()?;
    let ip = match &u.host {
        Host::V4(a) => std::net::IpAddr::V4(*a),
        Host::V6(a) => std::net::IpAddr::V6(*a),
        Host::Name(_) => return None,
    };
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

/// True when `contact`'s user part (unescaped) is `user`: such a contact of `user`'s is found
/// through `user`'s bindings and is not listed in the contacts index.
fn found_by_user(user: &str, contact: &Uri) -> bool {
    match contact
        .as_sip()
        .and_then(|u| u.user.as_deref().map(|raw| (u, raw)))
    {
        Some((_, raw)) if !raw.contains('%') => raw == user,
        Some((u, _)) => u.user_unescaped().is_some_and(|c| c == user),
        None => false,
    }
}

/// The key of a contact in the index: `user@host:port`, written so that contacts that are the
/// same (RFC 3261 §19.1.4: escapes, host case) with the port defaulted have the same key
/// (see [`uri_eq::push_canonical`]).
fn contact_key(uri: &Uri) -> String {
    match uri.as_sip() {
        Some(u) => {
            // `user@host:port`, written piece by piece (no `format!` on the REGISTER path).
            let user = u.user.as_deref().unwrap_or("");
            let mut key = String::with_capacity(user.len() + 24);
            uri_eq::push_canonical(&mut key, user);
            key.push('@');
            let host_at = key.len();
            sip_msg::push_host(&mut key, &u.host);
            if let Host::Name(_) = u.host {
                key[host_at..].make_ascii_lowercase();
            }
            key.push(':');
            let port = u.port.unwrap_or(match u.scheme {
                sip_msg::Scheme::Sips => 5061,
                sip_msg::Scheme::Sip => 5060,
            });
            sip_msg::push_decimal(&mut key, u64::from(port));
            key
        }
        None => uri.to_string(),
    }
}

/// A To tag for our own responses: stable per request so retransmitted requests get the same.
fn to_tag_for(req: &Message) -> String {
    to_tag_with(
        req,
        req.headers.view::<ViaRef>().and_then(Result::ok).as_ref(),
    )
}

/// [`to_tag_for`] with the request's top Via already read.
fn to_tag_with(req: &Message, via: Option<&ViaRef<'_>>) -> String {
    let call_id = req
        .headers
        .view::<sip_msg::typed::CallIdRef>()
        .and_then(Result::ok)
        .map_or("", |c| c.0);
    let branch = via.and_then(ViaRef::branch);
    tag_text(fnv_extend(
        fnv_extend(FNV_BASIS, call_id.as_bytes()),
        branch.as_deref().unwrap_or_default().as_bytes(),
    ))
}

/// The To tag our answers carry: `r` and the digest of the request's Call-ID and branch.
fn tag_text(h: u64) -> String {
    Tag::of(h).as_str().to_owned()
}

/// [`tag_text`] on the stack: `r` and 16 lower-case hex digits (as `push_hex16` writes them).
struct Tag([u8; 17]);

impl Tag {
    fn of(h: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [b'r'; 17];
        for (i, d) in t[1..].iter_mut().enumerate() {
            // A nibble is < 16: the index is in bounds.
            *d = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
        }
        Self(t)
    }

    fn as_str(&self) -> &str {
        // Only `r` and ASCII hex digits are written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// What the registrar's paths need of a request's top Via, read once when the request comes
/// in: the digest of its branch (the proxy's own branch is a function of it) and the digest
/// of Call-ID and branch (the To tag of our answers). A request has one only when its top Via
/// is readable and has a branch (others are dropped).
#[derive(Debug, Clone, Copy)]
struct TopVia {
    branch_hash: u64,
    tag_hash: u64,
}

impl TopVia {
    fn of(req: &Message) -> Option<Self> {
        let via = req.headers.view::<ViaRef>()?.ok()?;
        let branch = via.branch()?;
        let call_id = req
            .headers
            .view::<sip_msg::typed::CallIdRef>()
            .and_then(Result::ok)
            .map_or("", |c| c.0);
        // The two digests of the branch in one pass (independent chains: they run side
        // by side), the tag's after the Call-ID's.
        let (mut branch_hash, mut tag_hash) =
            (FNV_BASIS, fnv_extend(FNV_BASIS, call_id.as_bytes()));
        for &b in branch.as_bytes() {
            branch_hash = (branch_hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
            tag_hash = (tag_hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        Some(Self {
            branch_hash,
            tag_hash,
        })
    }
}

/// FNV-1a: a cheap deterministic digest for branches and tags (not security relevant).
/// The digest of `a` then `b` is `fnv_extend(fnv_extend(FNV_BASIS, a), b)`.
const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// [`FNV_BASIS`]: `h` carried on over `bytes` (a plain loop over a slice: the running digest
/// stays in a register).
fn fnv_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands the text `raw` to the core as received from `from` at `now`, and returns the
    /// core's first output: where it goes, the message parsed, and its text (for assertion
    /// messages).
    fn deliver(
        reg: &mut Registrar,
        now: Instant,
        raw: &str,
        from: SocketAddr,
    ) -> (SocketAddr, Message, String) {
        let (to, msg, text) = deliver_flow(reg, now, raw, from);
        (to.addr, msg, text)
    }

    /// [`deliver`], with the output's flow (for connection-oriented registrars).
    fn deliver_flow(
        reg: &mut Registrar,
        now: Instant,
        raw: &str,
        from: SocketAddr,
    ) -> (Flow, Message, String) {
        reg.handle_message(
            now,
            1_900_000_000,
            Message::parse(raw.as_bytes()).unwrap(),
            from,
        );
        let (to, bytes) = reg.poll_transmit_flow().expect("an output");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (to, Message::parse(&bytes).unwrap(), text)
    }

    fn open_registrar() -> Registrar {
        Registrar::new(RegistrarConfig {
            domain: "reg.test".into(),
            host: Host::parse("127.0.0.1").unwrap(),
            port: 5060,
            transport: "UDP".into(),
            auth: AuthMode::Open,
            secret: b"s".to_vec(),
            min_expires: 60,
            max_expires: 3600,
        })
    }

    fn register(
        reg: &mut Registrar,
        now: Instant,
        user: &str,
        contact: &str,
        expires: u32,
        source: SocketAddr,
    ) {
        // Each REGISTER of a Call-ID carries a higher CSeq (RFC 3261 §10.2.4).
        static CSEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let cseq = CSEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let raw = format!(
            "REGISTER sip:reg.test SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK{user}{expires}\r\n\
From: <sip:{user}@reg.test>;tag=1\r\nTo: <sip:{user}@reg.test>\r\nCall-ID: r-{user}\r\n\
CSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
        );
        let (to, answer, text) = deliver(reg, now, &raw, source);
        assert_eq!(to, source);
        assert_eq!(answer.status(), Some(200), "{text}");
        assert!(reg.poll_transmit().is_none());
    }

    /// Where the registrar forwards an in-dialog BYE sent to `target` (no Route).
    fn forwarded_to(reg: &mut Registrar, now: Instant, target: &str) -> SocketAddr {
        let from: SocketAddr = "192.0.2.99:5060".parse().unwrap();
        let raw = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKbye\r\n\
From: <sip:x@reg.test>;tag=a\r\nTo: <sip:y@reg.test>;tag=b\r\nCall-ID: c1\r\n\
CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let (to, fwd, text) = deliver(reg, now, &raw, from);
        assert_eq!(fwd.method(), Some(Method::Bye), "{text}");
        assert!(reg.poll_transmit().is_none());
        to
    }

    #[test]
    fn in_dialog_requests_reach_a_contact_by_its_users_bindings_or_the_contacts_index() {
        let mut reg = open_registrar();
        let now = Instant::now();
        let (a, b, c): (SocketAddr, SocketAddr, SocketAddr) = (
            "192.0.2.1:40000".parse().unwrap(),
            "192.0.2.2:40001".parse().unwrap(),
            "192.0.2.3:40002".parse().unwrap(),
        );
        // Contact user = AOR user: found through the user's bindings, not indexed.
        register(&mut reg, now, "alice", "sip:alice@10.0.0.1:5062", 600, a);
        // Contact user ≠ AOR user: indexed.
        register(&mut reg, now, "bob", "sip:phone7@10.0.0.2:5070", 600, b);
        // An escaped contact user that unescapes to the AOR user: not indexed either.
        register(&mut reg, now, "carol", "sip:car%6Fl@10.0.0.3", 600, c);
        assert_eq!(reg.contacts.len(), 1, "{:?}", reg.contacts);
        assert!(reg.contacts.contains_key("phone7@10.0.0.2:5070"));
        // Each in-dialog request goes to where its contact's REGISTER came from (the NAT
        // source), not to the contact's own address.
        assert_eq!(forwarded_to(&mut reg, now, "sip:alice@10.0.0.1:5062"), a);
        assert_eq!(forwarded_to(&mut reg, now, "sip:phone7@10.0.0.2:5070"), b);
        assert_eq!(forwarded_to(&mut reg, now, "sip:car%6Fl@10.0.0.3:5060"), c);
        // A contact alice never registered (another port) goes to its own address.
        let other: SocketAddr = "10.0.0.1:5099".parse().unwrap();
        assert_eq!(
            forwarded_to(&mut reg, now, "sip:alice@10.0.0.1:5099"),
            other
        );
        // Un-registering bob's contact removes it from the index.
        register(&mut reg, now, "bob", "sip:phone7@10.0.0.2:5070", 0, b);
        assert!(reg.contacts.is_empty(), "{:?}", reg.contacts);
        let own: SocketAddr = "10.0.0.2:5070".parse().unwrap();
        assert_eq!(forwarded_to(&mut reg, now, "sip:phone7@10.0.0.2:5070"), own);
        // Lapsed bindings are not found any more.
        register(&mut reg, now, "bob", "sip:phone7@10.0.0.2:5070", 600, b);
        reg.handle_timeout(now + Duration::from_secs(601));
        assert!(reg.contacts.is_empty(), "{:?}", reg.contacts);
        assert!(reg.bindings("alice").is_empty());
        let own_a: SocketAddr = "10.0.0.1:5062".parse().unwrap();
        assert_eq!(
            forwarded_to(&mut reg, now, "sip:alice@10.0.0.1:5062"),
            own_a
        );
        assert_eq!(forwarded_to(&mut reg, now, "sip:phone7@10.0.0.2:5070"), own);
    }

    /// RFC 5626 §6: a REGISTER with `Supported: outbound` and a `reg-id` straight from the
    /// phone gets `Require: outbound`; without either it does not (through another proxy:
    /// `a_register_through_a_proxy_without_ob_gets_439`).
    #[test]
    fn an_outbound_register_is_answered_require_outbound() {
        let source: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        for (i, (supported, contact_params, via, granted)) in [
            (
                "path, outbound",
                ";reg-id=1;+sip.instance=\"<urn:uuid:1>\"",
                "",
                true,
            ),
            ("path", ";reg-id=1", "", false),
            ("outbound", "", "", false),
            (
                "path",
                ";reg-id=1",
                "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKedge\r\n",
                false,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let mut reg = open_registrar();
            let raw = format!(
                "REGISTER sip:reg.test SIP/2.0\r\n{via}Via: SIP/2.0/UDP {source};branch=z9hG4bK{i}\r\n\
From: <sip:a@reg.test>;tag=1\r\nTo: <sip:a@reg.test>\r\nCall-ID: ob{i}\r\n\
CSeq: 1 REGISTER\r\nSupported: {supported}\r\nContact: <sip:a@10.0.0.1:5062>{contact_params}\r\n\
Expires: 600\r\nContent-Length: 0\r\n\r\n"
            );
            let (answer, text) = registered_outbound(&mut reg, &raw, source);
            assert_eq!(answer, granted, "case {i}: {text}");
        }
    }

    /// `reg`'s 200 to `register` from `source`: whether it says `Require: outbound`, and the
    /// answer's text.
    fn registered_outbound(
        reg: &mut Registrar,
        register: &str,
        source: SocketAddr,
    ) -> (bool, String) {
        let (_, answer, text) = deliver(reg, Instant::now(), register, source);
        assert_eq!(answer.status(), Some(200), "{text}");
        (
            answer.headers.value(&HeaderName::Require) == Some("outbound"),
            text,
        )
    }

    /// A REGISTER for `a` with outbound asked (Supported, reg-id, instance) from `source`,
    /// `above` printed above its Via (the edge proxy's Via and Path, or nothing).
    fn outbound_register(i: usize, source: SocketAddr, above: &str) -> String {
        format!(
            "REGISTER sip:reg.test SIP/2.0\r\n{above}Via: SIP/2.0/TCP {source};branch=z9hG4bKob{i}\r\n\
From: <sip:a@reg.test>;tag=1\r\nTo: <sip:a@reg.test>\r\nCall-ID: obp{i}\r\n\
CSeq: 1 REGISTER\r\nSupported: path, outbound\r\n\
Contact: <sip:a@10.0.0.1:5062;transport=tcp>;reg-id=1;+sip.instance=\"<urn:uuid:1>\"\r\n\
Expires: 600\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// RFC 5626 §6 behind an edge proxy: a REGISTER whose first Path URI has `ob` is granted
    /// outbound (one without `ob` gets 439, see below), and a call to the binding goes to
    /// the edge with the Path as its Route (RFC 3327 §5.3). Flow-Timer only to a phone that
    /// reached us directly over a connection (TCP here), not over UDP nor through the edge.
    #[test]
    fn outbound_behind_an_edge_proxy_routes_along_the_path_and_flow_timer_is_for_direct_streams() {
        let phone: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let edge: SocketAddr = "192.0.2.9:5060".parse().unwrap();
        let edge_via = "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKedge\r\n";
        let path_ob = "Path: <sip:tok3n@192.0.2.9:5060;lr;ob>\r\n";
        let path = "Path: <sip:192.0.2.9:5060;lr>\r\n";
        for (i, (transport, above, from, require, flow_timer)) in [
            ("TCP", String::new(), phone, true, Some("120")),
            ("UDP", String::new(), phone, true, None),
            ("UDP", format!("{edge_via}{path_ob}"), edge, true, None),
            ("TCP", format!("{edge_via}{path_ob}"), edge, true, None),
            // The first hop (one Via): the Path is not examined for outbound (§6).
            ("UDP", path.to_owned(), edge, true, None),
        ]
        .into_iter()
        .enumerate()
        {
            let mut reg = Registrar::new(RegistrarConfig {
                transport: transport.into(),
                ..open_registrar().config.clone()
            });
            let now = Instant::now();
            let (granted, text) =
                registered_outbound(&mut reg, &outbound_register(i, from, &above), from);
            assert_eq!(granted, require, "case {i}: {text}");
            let answer = Message::parse(text.as_bytes()).unwrap();
            assert_eq!(
                answer.headers.value(&flow_timer_name()),
                flow_timer,
                "case {i}: {text}"
            );
            if from != edge {
                continue;
            }
            // A call to `a` goes to the edge, its Route the Path.
            let invite = format!(
                "INVITE sip:a@reg.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKc{i}\r\n\
From: <sip:b@reg.test>;tag=2\r\nTo: <sip:a@reg.test>\r\nCall-ID: call{i}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:b@192.0.2.7:5060>\r\nContent-Length: 0\r\n\r\n"
            );
            let caller: SocketAddr = "192.0.2.7:5060".parse().unwrap();
            let (to, fwd, text) = deliver(&mut reg, now, &invite, caller);
            assert_eq!(to, edge, "{text}");
            let route = &above[above.find("Path: ").unwrap() + 6..above.len() - 2];
            assert_eq!(fwd.headers.value(&HeaderName::Route), Some(route), "{text}");
            assert!(
                text.starts_with("INVITE sip:a@10.0.0.1:5062;transport=tcp SIP/2.0\r\n"),
                "{text}"
            );
        }
    }

    /// RFC 5626 §6: a REGISTER asking for outbound (Supported, reg-id) that came through a
    /// proxy (two Vias) whose Path is missing or lacks `ob` is refused with 439 and binds
    /// nothing; without `outbound` in Supported its reg-id is ignored (200, no Require); with
    /// `ob` in the first Path URI, or straight from the phone, it is granted.
    #[test]
    fn a_register_through_a_proxy_without_ob_gets_439() {
        let edge: SocketAddr = "192.0.2.9:5060".parse().unwrap();
        let edge_via = "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKedge\r\n";
        let contact = "Contact: <sip:a@10.0.0.1:5062;transport=tcp>;reg-id=1;+sip.instance=\"<urn:uuid:1>\"\r\n";
        for (i, (above, supported, status, require)) in [
            // No Path at all.
            (edge_via.to_owned(), "path, outbound", 439, false),
            // A Path whose first URI lacks `ob` (a later one with it does not count).
            (
                format!(
                    "{edge_via}Path: <sip:192.0.2.9:5060;lr>\r\nPath: <sip:192.0.2.8;lr;ob>\r\n"
                ),
                "path, outbound",
                439,
                false,
            ),
            // Two Vias in one line are two hops too.
            (
                "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKedge, ".to_owned(),
                "outbound",
                439,
                false,
            ),
            // Not asked (no `outbound` option tag): the reg-id is ignored.
            (
                format!("{edge_via}Path: <sip:192.0.2.9:5060;lr>\r\n"),
                "path",
                200,
                false,
            ),
            (
                format!("{edge_via}Path: <sip:192.0.2.9:5060;lr;ob>\r\n"),
                "path, outbound",
                200,
                true,
            ),
            (String::new(), "outbound", 200, true),
        ]
        .into_iter()
        .enumerate()
        {
            let mut reg = open_registrar();
            // A Via line ending in ", " continues on the phone's Via value.
            let (above, via_name) = match above.strip_suffix(", ") {
                Some(joined) => (format!("{joined}, "), ""),
                None => (above, "Via: "),
            };
            let raw = format!(
                "REGISTER sip:reg.test SIP/2.0\r\n{above}{via_name}SIP/2.0/TCP 10.0.0.1:5062;branch=z9hG4bK439{i}\r\n\
From: <sip:a@reg.test>;tag=1\r\nTo: <sip:a@reg.test>\r\nCall-ID: fh{i}\r\n\
CSeq: 1 REGISTER\r\nSupported: {supported}\r\n{contact}Expires: 600\r\nContent-Length: 0\r\n\r\n"
            );
            let (to, answer, text) = deliver(&mut reg, Instant::now(), &raw, edge);
            assert_eq!(to, edge, "case {i}");
            assert_eq!(answer.status(), Some(status), "case {i}: {text}");
            assert_eq!(
                answer.headers.value(&HeaderName::Require) == Some("outbound"),
                require,
                "case {i}: {text}"
            );
            if status == 439 {
                assert!(
                    text.starts_with("SIP/2.0 439 First Hop Lacks Outbound Support\r\n"),
                    "{text}"
                );
                assert!(reg.bindings("a").is_empty(), "case {i}: nothing bound");
                assert_eq!(reg.stats().refused, 1);
            } else {
                assert_eq!(reg.bindings("a").len(), 1, "case {i}");
            }
        }
    }

    /// A registrar on TCP, as `open_registrar`.
    fn tcp_registrar() -> Registrar {
        Registrar::new(RegistrarConfig {
            transport: "TCP".into(),
            ..open_registrar().config.clone()
        })
    }

    /// Registers `user` over TCP from `source` (its contact at `source`): with outbound
    /// (`instance` and reg-id 1) when `instance` is given, else a plain REGISTER. `above`:
    /// an edge proxy's Via and Path, or nothing.
    fn register_tcp(
        reg: &mut Registrar,
        now: Instant,
        user: &str,
        source: SocketAddr,
        instance: Option<&str>,
        above: &str,
    ) {
        static CSEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let cseq = CSEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let params = instance.map_or(String::new(), |i| {
            format!(";reg-id=1;+sip.instance=\"<urn:uuid:{i}>\"")
        });
        // Two instances on one connection are two contacts (a `line` parameter of each).
        let line = instance.map_or(String::new(), |i| format!(";line={i}"));
        let raw = format!(
            "REGISTER sip:reg.test SIP/2.0\r\n{above}Via: SIP/2.0/TCP {source};branch=z9hG4bKr{cseq}\r\n\
From: <sip:{user}@reg.test>;tag=1\r\nTo: <sip:{user}@reg.test>\r\nCall-ID: tcp-{user}\r\n\
CSeq: {cseq} REGISTER\r\nSupported: path, outbound\r\n\
Contact: <sip:{user}@{source};transport=tcp{line}>{params}\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
        );
        let from = if above.is_empty() {
            source
        } else {
            "192.0.2.9:5060".parse().unwrap()
        };
        let (_, answer, text) = deliver(reg, now, &raw, from);
        assert_eq!(answer.status(), Some(200), "{text}");
        assert_eq!(
            answer.headers.value(&HeaderName::Require) == Some("outbound"),
            instance.is_some()
        );
    }

    /// A TCP registrar where, at `now`, user `a` registered with outbound straight from
    /// 10.0.0.1:40001 and user `c` without outbound from 10.0.0.2:40002: the registrar and
    /// the two addresses.
    fn outbound_and_plain(now: Instant) -> (Registrar, SocketAddr, SocketAddr) {
        let mut reg = tcp_registrar();
        let phone: SocketAddr = "10.0.0.1:40001".parse().unwrap();
        let plain: SocketAddr = "10.0.0.2:40002".parse().unwrap();
        register_tcp(&mut reg, now, "a", phone, Some("a"), "");
        register_tcp(&mut reg, now, "c", plain, None, "");
        (reg, phone, plain)
    }

    /// What a MESSAGE (an initial request) to `user` from a caller becomes: `Ok(flow)`, the
    /// flow it was forwarded to, or `Err(status)` of the answer to the caller.
    fn send_to_user(reg: &mut Registrar, now: Instant, user: &str, i: u32) -> Result<Flow, u16> {
        let caller: SocketAddr = "192.0.2.7:5070".parse().unwrap();
        let raw = format!(
            "MESSAGE sip:{user}@reg.test SIP/2.0\r\nVia: SIP/2.0/TCP {caller};branch=z9hG4bKm{user}{i}\r\n\
From: <sip:caller@reg.test>;tag=9\r\nTo: <sip:{user}@reg.test>\r\nCall-ID: m{user}{i}\r\n\
CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        );
        let (to, msg, _) = deliver_flow(reg, now, &raw, caller);
        assert!(reg.poll_transmit().is_none());
        match msg.status() {
            Some(code) => {
                assert_eq!(to.addr, caller);
                Err(code)
            }
            None => Ok(to),
        }
    }

    /// RFC 5626 §5.3, §6, §7 on a connection that closes: a Direct outbound binding over it
    /// fails (a request to its user gets 430 Flow Failed) and is dropped after the hold (480
    /// then); a plain binding and one behind an edge proxy are left as they are; a REGISTER
    /// of the same instance and reg-id over a new connection replaces the failed binding.
    #[test]
    fn a_closed_connection_fails_its_outbound_bindings_only() {
        let t0 = Instant::now();
        let (mut reg, phone, plain) = outbound_and_plain(t0);
        let edge = Flow::first("192.0.2.9:5060".parse().unwrap());
        let edge_above = "Via: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKedge\r\nPath: <sip:192.0.2.9:5060;transport=tcp;lr;ob>\r\n";
        register_tcp(
            &mut reg,
            t0,
            "e",
            "10.0.0.5:40005".parse().unwrap(),
            Some("e"),
            edge_above,
        );
        let states = |reg: &Registrar, user: &str| -> Vec<FlowState> {
            reg.bindings(user).iter().map(|b| b.flow_state).collect()
        };
        assert_eq!(states(&reg, "a"), [FlowState::Direct]);
        assert_eq!(states(&reg, "c"), [FlowState::Plain]);
        assert_eq!(states(&reg, "e"), [FlowState::Edge]);
        assert_eq!(send_to_user(&mut reg, t0, "a", 1), Ok(Flow::first(phone)));

        // Every connection closes: only the Direct outbound binding fails.
        let t1 = t0 + Duration::from_secs(1);
        for flow in [Flow::first(phone), Flow::first(plain), edge] {
            reg.handle_flow_closed(t1, flow);
        }
        assert_eq!(states(&reg, "a"), [FlowState::Failed]);
        assert_eq!(send_to_user(&mut reg, t1, "a", 2), Err(430));
        assert_eq!(send_to_user(&mut reg, t1, "c", 3), Ok(Flow::first(plain)));
        assert_eq!(send_to_user(&mut reg, t1, "e", 4), Ok(edge));
        // A second word of the same close changes nothing.
        reg.handle_flow_closed(t1, Flow::first(phone));
        assert_eq!(states(&reg, "a"), [FlowState::Failed]);

        // The hold runs out: the failed binding goes (480: the user is known), and the
        // registrar's next wake-up was at most the hold away.
        let lapse = t1 + DEFAULT_FAILED_FLOW_HOLD;
        assert!(reg.poll_timeout().is_some_and(|t| t <= lapse));
        reg.handle_timeout(lapse - Duration::from_millis(1));
        // The last instant of the hold (at `lapse` the binding has lapsed, and a message
        // then no longer finds it, whether or not `handle_timeout` has run: review13).
        assert_eq!(
            send_to_user(&mut reg, lapse - Duration::from_millis(1), "a", 5),
            Err(430)
        );
        reg.handle_timeout(lapse);
        assert!(reg.bindings("a").is_empty());
        assert_eq!(send_to_user(&mut reg, lapse, "a", 6), Err(480));
        assert_eq!(
            send_to_user(&mut reg, lapse, "c", 7),
            Ok(Flow::first(plain))
        );
        assert_eq!(send_to_user(&mut reg, lapse, "e", 8), Ok(edge));
    }

    /// RFC 5626 §6: the phone registers the same instance and reg-id again over a new
    /// connection (a new source port, so a new contact URI) while its failed binding is
    /// held: the new binding replaces it, and requests go to the new flow. The old
    /// connection's close, told again, does not touch it. With a zero hold the failed
    /// binding goes at once (480). Over UDP nothing closes.
    #[test]
    fn the_phone_registering_again_on_a_new_flow_replaces_the_failed_binding() {
        let mut reg = tcp_registrar();
        let t0 = Instant::now();
        let old: SocketAddr = "10.0.0.1:40001".parse().unwrap();
        let new: SocketAddr = "10.0.0.1:40011".parse().unwrap();
        register_tcp(&mut reg, t0, "a", old, Some("a"), "");
        // A second phone of the same user (another instance) on the same connection is not
        // the first's binding; it fails with the connection too.
        register_tcp(&mut reg, t0, "a", old, Some("a2"), "");
        assert_eq!(reg.bindings("a").len(), 2);
        reg.handle_flow_closed(t0, Flow::first(old));
        assert!(
            reg.bindings("a")
                .iter()
                .all(|b| b.flow_state == FlowState::Failed)
        );
        assert_eq!(send_to_user(&mut reg, t0, "a", 1), Err(430));
        register_tcp(&mut reg, t0, "a", new, Some("a"), "");
        let list = reg.bindings("a");
        assert_eq!(list.len(), 2, "{list:#?}");
        assert_eq!(list[1].flow_state, FlowState::Direct);
        assert_eq!(list[1].source, new);
        assert_eq!(
            list[0].flow_state,
            FlowState::Failed,
            "the other instance's"
        );
        assert_eq!(send_to_user(&mut reg, t0, "a", 2), Ok(Flow::first(new)));
        reg.handle_flow_closed(t0, Flow::first(old));
        assert_eq!(send_to_user(&mut reg, t0, "a", 3), Ok(Flow::first(new)));
        // The new connection closes too, with no hold: both gone at once.
        reg.set_failed_flow_hold(Duration::ZERO);
        reg.handle_flow_closed(t0, Flow::first(new));
        assert_eq!(
            reg.bindings("a").len(),
            1,
            "the other instance's, held still"
        );
        reg.handle_flow_closed(t0, Flow::first(old));
        reg.handle_timeout(t0 + DEFAULT_FAILED_FLOW_HOLD);
        assert!(reg.bindings("a").is_empty());
        assert_eq!(send_to_user(&mut reg, t0, "a", 4), Err(480));

        // Over UDP an outbound binding is Direct too, but no connection closes: a stray
        // word of one is ignored.
        let mut reg = open_registrar();
        let phone: SocketAddr = "10.0.0.1:5062".parse().unwrap();
        register_tcp(&mut reg, t0, "u", phone, Some("u"), "");
        reg.handle_flow_closed(t0, Flow::first(phone));
        assert_eq!(reg.bindings("u")[0].flow_state, FlowState::Direct);
        assert_eq!(send_to_user(&mut reg, t0, "u", 5), Ok(Flow::first(phone)));
    }

    /// Runs `reg`'s timers on whole seconds after `t0`, up to `last`: the connections it
    /// closed for silence, with the second each was closed at.
    fn closed_each_second(reg: &mut Registrar, t0: Instant, last: u32) -> Vec<(u32, Flow)> {
        let mut closed = Vec::new();
        for t in 1..=last {
            let now = t0 + Duration::from_secs(u64::from(t));
            if reg.poll_timeout().is_some_and(|w| w <= now) {
                reg.handle_timeout(now);
            }
            closed.extend(std::iter::from_fn(|| reg.poll_close_flow()).map(|f| (t, f)));
        }
        closed
    }

    /// RFC 5626 §4.4.1 from the registrar's side: a connection with an outbound binding
    /// straight from the phone (Flow-Timer 120 s sent) that carries nothing, keep-alives
    /// included, for 150 s (a quarter more) is taken for dead: the driver is told to close
    /// it and its bindings fail as for a close (430). A keep-alive or a message on it keeps
    /// it; plain and edge bindings' connections are not watched; without a Flow-Timer none
    /// is. WS and WSS connections are watched as TCP ones.
    #[test]
    fn a_silent_outbound_connection_is_closed_and_its_binding_fails() {
        let mut reg = tcp_registrar();
        let t0 = Instant::now();
        let secs = |n: f64| t0 + Duration::from_secs_f64(n);
        let (pinged, talking): (SocketAddr, SocketAddr) = (
            "10.0.0.1:40001".parse().unwrap(),
            "10.0.0.3:40003".parse().unwrap(),
        );
        let plain: SocketAddr = "10.0.0.2:40002".parse().unwrap();
        register_tcp(&mut reg, t0, "a", pinged, Some("a"), "");
        register_tcp(&mut reg, t0, "b", talking, Some("b"), "");
        register_tcp(&mut reg, t0, "c", plain, None, "");
        // `d` registers with outbound too, then takes its binding back at 10 s: it owes no
        // keep-alive for it, and its connection is left alone.
        let gone: SocketAddr = "10.0.0.4:40004".parse().unwrap();
        register_tcp(&mut reg, t0, "d", gone, Some("d"), "");
        let deregister = format!(
            "REGISTER sip:reg.test SIP/2.0\r\nVia: SIP/2.0/TCP {gone};branch=z9hG4bKunreg\r\n\
From: <sip:d@reg.test>;tag=1\r\nTo: <sip:d@reg.test>\r\nCall-ID: tcp-d\r\n\
CSeq: 1000000 REGISTER\r\nSupported: path, outbound\r\n\
Contact: <sip:d@{gone};transport=tcp;line=d>;reg-id=1;+sip.instance=\"<urn:uuid:d>\";expires=0\r\n\
Content-Length: 0\r\n\r\n"
        );
        let (_, answer, text) = deliver(&mut reg, secs(10.0), &deregister, gone);
        assert_eq!(answer.status(), Some(200), "{text}");
        assert!(reg.bindings("d").is_empty());
        // Looked at every 150 s / 8.
        assert_eq!(reg.poll_timeout(), Some(secs(18.75)));
        // `a` sends a keep-alive at 100 s; `b` a message at 140 s (its OPTIONS to us).
        reg.handle_flow_alive(secs(100.0), Flow::first(pinged));
        let options = format!(
            "OPTIONS sip:reg.test SIP/2.0\r\nVia: SIP/2.0/TCP {talking};branch=z9hG4bKopt\r\n\
From: <sip:b@reg.test>;tag=1\r\nTo: <sip:reg.test>\r\nCall-ID: opt\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
        );
        let (_, answer, _) = deliver(&mut reg, secs(140.0), &options, talking);
        assert_eq!(answer.status(), Some(200));
        let mut t = 0.0;
        let mut closed = Vec::new();
        while t < 320.0 {
            t += 1.0;
            if reg.poll_timeout().is_some_and(|w| w <= secs(t)) {
                reg.handle_timeout(secs(t));
            }
            while let Some(flow) = reg.poll_close_flow() {
                closed.push((t, flow));
            }
        }
        // `a` heard last at 100 s: closed at the first look after 250 s; `b` after 290 s.
        let closed_at = |addr| {
            closed
                .iter()
                .find(|(_, f)| *f == Flow::first(addr))
                .map(|c| c.0)
        };
        let a_at = closed_at(pinged).expect("a's connection closed");
        assert!((250.0..=250.0 + 18.75 + 1.0).contains(&a_at), "{closed:?}");
        let b_at = closed_at(talking).expect("b's connection closed");
        assert!((290.0..=290.0 + 18.75 + 1.0).contains(&b_at), "{closed:?}");
        assert_eq!(
            closed.len(),
            2,
            "neither the plain binding's connection nor the one whose binding went"
        );
        assert_eq!(reg.stats().silent_flows_closed, 2);
        // `b` failed within the last 30 s: 430; `a`'s failed binding is gone after its hold.
        assert_eq!(send_to_user(&mut reg, secs(t), "b", 1), Err(430));
        assert_eq!(send_to_user(&mut reg, secs(t), "a", 4), Err(480));
        assert_eq!(
            send_to_user(&mut reg, secs(t), "c", 2),
            Ok(Flow::first(plain))
        );
        // The driver closes it and says so: nothing more happens.
        reg.handle_flow_closed(secs(t), Flow::first(pinged));
        assert_eq!(reg.stats().silent_flows_closed, 2);
        assert!(reg.poll_close_flow().is_none());

        // Each connection against the Flow-Timer it was given: `a` 120 s, then `b` 10 s.
        let mut reg = tcp_registrar();
        register_tcp(&mut reg, t0, "a", pinged, Some("a"), "");
        reg.set_flow_timer(Some(10));
        register_tcp(&mut reg, t0, "b", talking, Some("b"), "");
        let closed = closed_each_second(&mut reg, t0, 40);
        // b after 12.5 s (looked at every 1.56 s, here on whole seconds), a not yet.
        assert!(
            matches!(closed[..], [(13..=15, f)] if f == Flow::first(talking)),
            "{closed:?}"
        );

        // Without a Flow-Timer sent no connection is watched.
        let mut quiet = tcp_registrar();
        quiet.set_flow_timer(None);
        register_tcp(&mut quiet, t0, "a", pinged, Some("a"), "");
        assert_eq!(quiet.bindings("a")[0].flow_state, FlowState::Direct);
        quiet.handle_timeout(secs(500.0));
        assert!(quiet.poll_close_flow().is_none());
        assert_eq!(
            send_to_user(&mut quiet, secs(500.0), "a", 3),
            Ok(Flow::first(pinged))
        );

        // A WebSocket and a secure one are watched as TCP is: their ping frames, reported
        // by the driver, keep them; silent past 150 s, they are closed.
        for transport in ["WS", "WSS"] {
            let mut reg = Registrar::new(RegistrarConfig {
                transport: transport.into(),
                ..open_registrar().config.clone()
            });
            register_tcp(&mut reg, t0, "a", pinged, Some("a"), "");
            register_tcp(&mut reg, t0, "b", talking, Some("b"), "");
            assert_eq!(reg.bindings("a")[0].flow_state, FlowState::Direct);
            reg.handle_flow_alive(secs(100.0), Flow::first(pinged));
            let closed = closed_each_second(&mut reg, t0, 300);
            // b silent from the start: closed at the first look after 150 s; a, heard at
            // 100 s, at the first after 250 s.
            assert!(
                matches!(closed[..], [(150..=170, b), (250..=270, a)]
                    if b == Flow::first(talking) && a == Flow::first(pinged)),
                "{transport}: {closed:?}"
            );
        }
    }

    /// RFC 3261 §10.3 step 7 with RFC 5626 §6: a late REGISTER of the same Call-ID with a
    /// lower CSeq, from the phone's old flow (another contact URI, the same instance and
    /// reg-id), fails (400) and leaves the newer binding it would have replaced.
    #[test]
    fn a_late_register_of_an_old_flow_does_not_replace_the_newer_binding() {
        let mut reg = tcp_registrar();
        let now = Instant::now();
        let (old, new): (SocketAddr, SocketAddr) = (
            "10.0.0.1:40001".parse().unwrap(),
            "10.0.0.1:40011".parse().unwrap(),
        );
        register_tcp(&mut reg, now, "a", new, Some("a"), "");
        let late = format!(
            "REGISTER sip:reg.test SIP/2.0\r\nVia: SIP/2.0/TCP {old};branch=z9hG4bKlate\r\n\
From: <sip:a@reg.test>;tag=1\r\nTo: <sip:a@reg.test>\r\nCall-ID: tcp-a\r\n\
CSeq: 0 REGISTER\r\nSupported: path, outbound\r\n\
Contact: <sip:a@{old};transport=tcp;line=a>;reg-id=1;+sip.instance=\"<urn:uuid:a>\"\r\n\
Expires: 600\r\nContent-Length: 0\r\n\r\n"
        );
        let (_, answer, text) = deliver(&mut reg, now, &late, old);
        assert_eq!(answer.status(), Some(400), "{text}");
        let list = reg.bindings("a");
        assert_eq!(list.len(), 1, "{list:#?}");
        assert_eq!(list[0].source, new);
    }

    /// RFC 5626 §5.3 inside a dialog: once the connection under a phone's outbound binding
    /// closed, an in-dialog request to its contact gets 430 from us (an ACK is dropped) for
    /// the hold, where before it was forwarded into the closed connection and lost. A plain
    /// binding's dialog is forwarded as before, and a message on the same address and port
    /// (a new connection there) ends the refusal.
    #[test]
    fn an_in_dialog_request_to_a_failed_flow_is_answered_430() {
        let t0 = Instant::now();
        let (mut reg, phone, plain) = outbound_and_plain(t0);
        let caller: SocketAddr = "192.0.2.7:5070".parse().unwrap();
        let in_dialog = |method: &str, user: &str, contact: SocketAddr, i: u32| {
            format!(
                "{method} sip:{user}@{contact};transport=tcp;line={user} SIP/2.0\r\n\
Via: SIP/2.0/TCP {caller};branch=z9hG4bKd{user}{i}\r\nMax-Forwards: 70\r\n\
From: <sip:caller@reg.test>;tag=9\r\nTo: <sip:{user}@reg.test>;tag=callee\r\n\
Call-ID: dlg{user}\r\nCSeq: {i} {method}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let bye_a = |i| in_dialog("BYE", "a", phone, i);
        let (to, fwd, text) = deliver_flow(&mut reg, t0, &bye_a(1), caller);
        assert_eq!(
            (to, fwd.method()),
            (Flow::first(phone), Some(Method::Bye)),
            "{text}"
        );

        let t1 = t0 + Duration::from_secs(1);
        reg.handle_flow_closed(t1, Flow::first(phone));
        reg.handle_flow_closed(t1, Flow::first(plain));
        let (to, answer, text) = deliver_flow(&mut reg, t1, &bye_a(2), caller);
        assert_eq!(to, Flow::first(caller), "{text}");
        assert!(text.starts_with("SIP/2.0 430 Flow Failed\r\n"), "{text}");
        assert_eq!(
            answer.headers.get_all(&HeaderName::Via).count(),
            1,
            "{text}"
        );
        assert!(reg.poll_transmit().is_none());
        // The same from a peer that ignored the Record-Route and sends to the AOR.
        let by_aor = format!(
            "BYE sip:a@reg.test SIP/2.0\r\nVia: SIP/2.0/TCP {caller};branch=z9hG4bKaor\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller@reg.test>;tag=9\r\nTo: <sip:a@reg.test>;tag=callee\r\n\
Call-ID: dlga\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        let (_, _, text) = deliver_flow(&mut reg, t1, &by_aor, caller);
        assert!(text.starts_with("SIP/2.0 430 Flow Failed\r\n"), "{text}");
        // An in-dialog ACK to it goes nowhere and is not answered.
        let ack = in_dialog("ACK", "a", phone, 3);
        reg.handle_message(
            t1,
            1_900_000_000,
            Message::parse(ack.as_bytes()).unwrap(),
            caller,
        );
        assert!(reg.poll_transmit().is_none());
        // The plain binding's dialog: forwarded as before (RFC 3261 keeps no flows).
        let (to, fwd, text) = deliver_flow(&mut reg, t1, &in_dialog("INFO", "c", plain, 4), caller);
        assert_eq!(
            (to, fwd.method()),
            (Flow::first(plain), Some(Method::Info)),
            "{text}"
        );

        // The phone connects again from the same address and port (its REGISTER there ends
        // the refusal), and the dialog's requests reach it.
        register_tcp(&mut reg, t1, "a", phone, Some("a"), "");
        let (to, fwd, text) = deliver_flow(&mut reg, t1, &bye_a(5), caller);
        assert_eq!(
            (to, fwd.method()),
            (Flow::first(phone), Some(Method::Bye)),
            "{text}"
        );

        // Closed again: 430 until the hold ends, then no longer.
        reg.handle_flow_closed(t1, Flow::first(phone));
        let (_, _, text) = deliver_flow(&mut reg, t1, &bye_a(6), caller);
        assert!(text.starts_with("SIP/2.0 430 Flow Failed\r\n"), "{text}");
        let lapse = t1 + DEFAULT_FAILED_FLOW_HOLD;
        reg.handle_timeout(lapse);
        assert!(reg.failed_flows.is_empty());
        let (_, fwd, text) = deliver_flow(&mut reg, lapse, &bye_a(7), caller);
        assert_eq!(fwd.method(), Some(Method::Bye), "{text}");
    }

    /// RFC 5626 §5.3 in the race before the driver's word of a close: a request the driver
    /// could not deliver to a Direct outbound flow comes back 430 to the caller (our Via
    /// popped, a To tag whose ACK ends here); one to a plain binding's flow, and an ACK, are
    /// dropped as before.
    #[test]
    fn an_undeliverable_request_to_an_outbound_flow_is_answered_430() {
        let now = Instant::now();
        let (mut reg, phone, _) = outbound_and_plain(now);
        let caller: SocketAddr = "192.0.2.7:5070".parse().unwrap();
        let invite = |user: &str| {
            format!(
                "INVITE sip:{user}@reg.test SIP/2.0\r\nVia: SIP/2.0/TCP {caller};branch=z9hG4bKinv{user}\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller@reg.test>;tag=9\r\nTo: <sip:{user}@reg.test>\r\n\
Call-ID: inv{user}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{caller};transport=tcp>\r\n\
Content-Length: 0\r\n\r\n"
            )
        };
        for user in ["a", "c"] {
            let raw = invite(user);
            reg.handle_message(
                now,
                1_900_000_000,
                Message::parse(raw.as_bytes()).unwrap(),
                caller,
            );
            let (to, bytes) = reg.poll_transmit_flow().expect("forwarded");
            reg.handle_undeliverable(now, to, bytes);
            if user == "c" {
                assert!(reg.poll_transmit().is_none(), "a plain binding: dropped");
                continue;
            }
            let (back, bytes) = reg.poll_transmit_flow().expect("a 430");
            let text = String::from_utf8_lossy(&bytes).into_owned();
            assert_eq!(back, Flow::first(caller), "{text}");
            assert!(text.starts_with("SIP/2.0 430 Flow Failed\r\n"), "{text}");
            let answer = Message::parse(&bytes).unwrap();
            let vias: Vec<_> = answer.headers.get_all(&HeaderName::Via).collect();
            assert_eq!(vias.len(), 1, "ours popped: {text}");
            assert!(vias[0].value().contains("branch=z9hG4bKinva"), "{text}");
            let tag = answer
                .headers
                .view::<ToRef>()
                .and_then(Result::ok)
                .and_then(|t| t.tag().map(std::borrow::Cow::into_owned))
                .expect("a To tag");
            // The caller's ACK of the 430 ends at the registrar.
            let ack = format!(
                "ACK sip:a@reg.test SIP/2.0\r\nVia: SIP/2.0/TCP {caller};branch=z9hG4bKinva\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller@reg.test>;tag=9\r\nTo: <sip:a@reg.test>;tag={tag}\r\n\
Call-ID: inva\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            reg.handle_message(
                now,
                1_900_000_000,
                Message::parse(ack.as_bytes()).unwrap(),
                caller,
            );
            assert!(reg.poll_transmit().is_none(), "the ACK went nowhere");
            assert_eq!(reg.stats().refused, 1);
        }
        // An ACK the driver could not deliver is not answered.
        let ack = format!(
            "ACK sip:a@10.0.0.1:40001 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKsmx\r\n\
Via: SIP/2.0/TCP {caller};branch=z9hG4bKack\r\nFrom: <sip:caller@reg.test>;tag=9\r\n\
To: <sip:a@reg.test>;tag=x\r\nCall-ID: ack\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        reg.handle_undeliverable(now, Flow::first(phone), Bytes::from(ack));
        assert!(reg.poll_transmit().is_none());
    }

    #[test]
    fn first_value_of_a_joined_header_is_popped_in_place() {
        assert_eq!(after_first_value("SIP/2.0/UDP a;branch=z9hG4bK1"), None);
        assert_eq!(
            after_first_value("<sip:a;lr>, \"x, y\" <sip:b>,<sip:c,d>").as_deref(),
            Some("\"x, y\" <sip:b>, <sip:c,d>")
        );
        // A backslash escapes the next character of a quoted string (a quote too).
        let escaped = r#""a\", b" <sip:a;lr>, "c\\" <sip:c>,<sip:d>"#;
        assert_eq!(first_value(escaped), r#""a\", b" <sip:a;lr>"#);
        assert_eq!(
            after_first_value(escaped).as_deref(),
            Some(r#""c\\" <sip:c>, <sip:d>"#)
        );
        assert_eq!(first_value(r#"x;p="\","#), r#"x;p="\","#);
        assert_eq!(after_first_value(r#"x;p="\","#), None);
        let raw = "INVITE sip:b@x SIP/2.0\r\nv: SIP/2.0/UDP p;branch=z9hG4bK1, SIP/2.0/UDP q;branch=z9hG4bK2\r\n\
Via: SIP/2.0/UDP r;branch=z9hG4bK3\r\nf: <sip:a@x>;tag=1\r\nt: <sip:b@x>\r\ni: c\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
        let mut m = Message::parse(raw.as_bytes()).unwrap();
        pop_first_value(&mut m, HeaderName::Via);
        let vias: Vec<&str> = m
            .headers
            .get_all(&HeaderName::Via)
            .map(|h| h.value())
            .collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP q;branch=z9hG4bK2",
                "SIP/2.0/UDP r;branch=z9hG4bK3"
            ]
        );
        assert_eq!(m.headers.position(&HeaderName::Via), Some(0));
        pop_first_value(&mut m, HeaderName::Via);
        pop_first_value(&mut m, HeaderName::Via);
        pop_first_value(&mut m, HeaderName::Via);
        assert_eq!(m.headers.get(&HeaderName::Via).map(|h| h.value()), None);
        // The other headers keep the bytes they were received with (compact forms too).
        let out = String::from_utf8(m.to_bytes()).unwrap();
        assert!(out.contains("\r\nf: <sip:a@x>;tag=1\r\n"), "{out}");
    }

    /// The first value and the values after it, for values with every kind of white space
    /// around and between them (Unicode too), are the ones `str::trim` and `str::contains`
    /// gave: the commas found by the SIMD search, the trims by the ASCII shortcut.
    #[test]
    fn first_values_are_trimmed_as_str_trim_trims() {
        fn reference_first(v: &str) -> &str {
            match top_commas(v).next() {
                Some(at) => v[..at].trim(),
                None => v.trim(),
            }
        }
        fn reference_after(v: &str) -> Option<String> {
            let mut commas = top_commas(v);
            let mut start = commas.next()? + 1;
            let mut parts = Vec::new();
            for at in commas {
                parts.push(v[start..at].trim());
                start = at + 1;
            }
            parts.push(v[start..].trim());
            Some(parts.join(", "))
        }
        let spaces = ["", " ", "\t", "\u{a0}", "\u{3000}", "\u{b}", "\r\n "];
        let values = [
            "SIP/2.0/UDP a;branch=z9hG4bK1",
            "<sip:b;lr>",
            "\"x, y\" <sip:c>",
            "é",
        ];
        for a in spaces {
            for b in spaces {
                for v in values {
                    for w in values {
                        for text in [
                            format!("{a}{v}{b}"),
                            format!("{a}{v}{b},{a}{w}{b}"),
                            format!("{v},{b}{w}{a},{a}{v}"),
                        ] {
                            assert_eq!(first_value(&text), reference_first(&text), "{text:?}");
                            assert_eq!(
                                after_first_value(&text),
                                reference_after(&text),
                                "{text:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Over every combination of a few schemes, users, hosts, ports, parameters and headers:
    /// the comparison is reflexive and symmetric, `equivalent` implies `reaches`, and
    /// contacts that reach each other have one key in the contacts index (so a contact found
    /// by comparison is found by key too).
    #[test]
    fn contact_comparison_is_an_equivalence_the_index_key_follows() {
        let mut uris = Vec::new();
        for scheme in ["sip", "sips"] {
            for user in ["bob@", "b%6Fb@", "Bob@", "a%2Bb@", "a+b@", ""] {
                for host in ["h.example", "H.Example", "192.0.2.1"] {
                    for port in ["", ":5060", ":5061"] {
                        for params in ["", ";transport=udp", ";TRANSPORT=UDP;lr", ";user=phone"] {
                            for headers in ["", "?Subject=x"] {
                                let text = format!("{scheme}:{user}{host}{port}{params}{headers}");
                                uris.push(Uri::parse(&text).unwrap());
                            }
                        }
                    }
                }
            }
        }
        for a in &uris {
            assert!(uri_eq::equivalent(a, a), "{a}");
            for b in &uris {
                let eq = uri_eq::equivalent(a, b);
                let reach = uri_eq::reaches(a, b);
                assert_eq!(eq, uri_eq::equivalent(b, a), "{a} {b}");
                assert_eq!(reach, uri_eq::reaches(b, a), "{a} {b}");
                assert!(!eq || reach, "{a} {b}");
                if reach {
                    assert_eq!(contact_key(a), contact_key(b), "{a} {b}");
                }
            }
        }
    }

    /// `write_forwarded` prints what editing the parsed message (push the Vias and the
    /// Record-Route in front, pop the first value of the top Via and of the Route, set
    /// Max-Forwards) and `to_bytes` printed: the same start line, the same values of each
    /// header in the same order, the same body.
    #[test]
    fn a_forwarded_message_is_the_edited_one() {
        let requests = [
            "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
Route: <sip:127.0.0.1;lr>\r\nf: <sip:a@x>;tag=1\r\nt: <sip:b@x>\r\ni: c\r\nCSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\nl: 5\r\n\r\nv=0\r\n",
            "BYE sip:b@10.0.0.1:5070;transport=udp SIP/2.0\r\nv: SIP/2.0/UDP p;branch=z9hG4bK1, SIP/2.0/UDP q;branch=z9hG4bK2\r\n\
Via: SIP/2.0/UDP r;branch=z9hG4bK3\r\nRoute: <sip:127.0.0.1;lr>, <sip:10.0.0.9;lr>\r\nRoute: <sip:10.0.0.8;lr>\r\n\
f: <sip:a@x>;tag=1\r\nt: <sip:b@x>;tag=2\r\ni: c\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n",
            "ACK sip:b@x SIP/2.0\r\nf: <sip:a@x>;tag=1\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1\r\nt: <sip:b@x>;tag=2\r\n\
Max-Forwards: 9\r\ni: c\r\nMax-Forwards: 8\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1\r\ni: c\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n",
            "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsm1, SIP/2.0/UDP p;branch=z9hG4bK1\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\nf: <sip:a@x>;tag=1\r\nt: <sip:b@x>;tag=2\r\ni: c\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n",
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsm1\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1\r\n\
f: <sip:a@x>;tag=1\r\nt: <sip:b@x>;tag=2\r\ni: c\r\nCSeq: 1 BYE\r\nl: 0\r\n\r\n",
        ];
        let names = [
            HeaderName::Via,
            HeaderName::Route,
            HeaderName::RecordRoute,
            HeaderName::MaxForwards,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::ContentType,
            HeaderName::ContentLength,
        ];
        let values = |m: &Message, name: &HeaderName| -> Vec<String> {
            m.headers
                .get_all(name)
                .flat_map(|h| {
                    let mut v = vec![first_value(h.value()).to_owned()];
                    v.extend(after_first_value(h.value()));
                    v
                })
                .collect()
        };
        for raw in requests {
            for (vias, drop_top_via, rr, pop_routes, mf) in [
                (
                    &[
                        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsmA",
                        "SIP/2.0/UDP p;branch=z9hG4bK1;received=192.0.2.1",
                    ][..],
                    true,
                    Some("<sip:127.0.0.1:5060;lr>"),
                    1,
                    Some("69"),
                ),
                (
                    &["SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsmA"][..],
                    false,
                    None,
                    0,
                    Some("70"),
                ),
                (&[][..], true, None, 0, None),
                (&[][..], false, None, 0, None),
                // Double record-routing (RFC 5658): two entries of ours, then three (past the
                // end of a comma-joined line).
                (
                    &["SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKsmA"][..],
                    true,
                    Some("<sip:127.0.0.1:5061;transport=tcp;lr>, <sip:127.0.0.1:5060;lr>"),
                    2,
                    Some("69"),
                ),
                (&[][..], false, None, 3, None),
            ] {
                let msg = Message::parse(raw.as_bytes()).unwrap();
                let mut out = Vec::new();
                write_forwarded(
                    &msg,
                    &ForwardHead {
                        vias,
                        drop_top_via,
                        record_route: rr,
                        route: None,
                        pop_routes,
                        max_forwards: mf,
                    },
                    &mut String::new(),
                    &mut out,
                );
                let ours = Message::parse(&out).unwrap();
                // The old way: the parsed message edited, then printed.
                let mut edited = msg.clone();
                if let Some(mf) = mf {
                    edited.headers.set(Header::new(HeaderName::MaxForwards, mf));
                }
                for _ in 0..pop_routes {
                    pop_first_value(&mut edited, HeaderName::Route);
                }
                if drop_top_via {
                    pop_first_value(&mut edited, HeaderName::Via);
                }
                if let Some(rr) = rr {
                    edited
                        .headers
                        .push_front(Header::new(HeaderName::RecordRoute, rr));
                }
                for v in vias.iter().rev() {
                    edited.headers.push_front(Header::new(HeaderName::Via, *v));
                }
                let old = Message::parse(&edited.to_bytes()).unwrap();
                let text = String::from_utf8_lossy(&out);
                assert_eq!(ours.method(), old.method(), "{text}");
                assert_eq!(ours.request_uri(), old.request_uri(), "{text}");
                assert_eq!(ours.status(), old.status(), "{text}");
                assert_eq!(ours.reason(), old.reason(), "{text}");
                assert_eq!(ours.body(), old.body(), "{text}");
                for name in &names {
                    assert_eq!(values(&ours, name), values(&old, name), "{name:?}: {text}");
                }
            }
        }
    }

    #[test]
    fn the_top_via_is_stamped_as_text_and_matches_the_typed_model() {
        let src: SocketAddr = "192.0.2.7:5099".parse().unwrap();
        let msg = |via: &str| {
            let raw = format!(
                "OPTIONS sip:b@x SIP/2.0\r\nVia: {via}\r\nf: <sip:a@x>;tag=1\r\nt: <sip:b@x>\r\ni: c\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
            );
            Message::parse(raw.as_bytes()).unwrap()
        };
        // The typed model's answer, for comparison.
        let typed = |m: &Message| {
            let mut via = m.top_via().unwrap();
            via.params.set("received", Some(&src.ip().to_string()));
            if via.params.contains("rport") {
                via.params.set("rport", Some(&src.port().to_string()));
            }
            text_of(&via, 128)
        };
        for via in [
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bK1",
            "SIP/2.0/TCP h.example;branch=z9hG4bK1;received=1.1.1.1",
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/UDP q;branch=z9hG4bK2",
        ] {
            let m = msg(via);
            assert_eq!(stamped_top_via(&m, src).unwrap(), typed(&m), "{via}");
        }
        assert_eq!(
            stamped_top_via(&msg("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport"), src).unwrap(),
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5099;received=192.0.2.7"
        );
        // Spacing and case are kept as received (the typed model would re-print them).
        assert_eq!(
            stamped_top_via(&msg("SIP/2.0/udp  10.0.0.1 ;branch=z9hG4bK1"), src).unwrap(),
            "SIP/2.0/udp  10.0.0.1;branch=z9hG4bK1;received=192.0.2.7"
        );
        // The Via we add when forwarding prints as the typed model prints it.
        let reg = Registrar::new(RegistrarConfig {
            domain: "x".into(),
            host: Host::parse("[2001:db8::1]").unwrap(),
            port: 5070,
            transport: "tcp".into(),
            auth: AuthMode::Open,
            secret: b"s".to_vec(),
            min_expires: 60,
            max_expires: 3600,
        });
        let ours =
            sip_msg::typed::Via::new("tcp", reg.config.host.clone(), Some(5070), "z9hG4bKsm1");
        assert_eq!(
            format!("{}z9hG4bKsm1", reg.ifaces.0[0].via_prefix),
            text_of(&ours, 96)
        );
        // A quoted parameter goes through the typed model.
        let quoted = msg(r#"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;x="a;b""#);
        assert_eq!(stamped_top_via(&quoted, src).unwrap(), typed(&quoted));
        // Forwarded from a stream, rport is set even when not asked for (§18.2.2), once.
        let from_stream = |m: &Message| {
            let mut out = String::new();
            assert!(write_stamped_top_via(m, src, true, &mut out));
            out
        };
        assert_eq!(
            from_stream(&msg("SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1")),
            "SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1;received=192.0.2.7;rport=5099"
        );
        assert_eq!(
            from_stream(&msg("SIP/2.0/TCP 10.0.0.1;rport;branch=z9hG4bK1")),
            "SIP/2.0/TCP 10.0.0.1;rport=5099;branch=z9hG4bK1;received=192.0.2.7"
        );
        let quoted_rport = from_stream(&quoted);
        assert_eq!(
            quoted_rport.matches("rport=5099").count(),
            1,
            "{quoted_rport}"
        );
    }

    #[test]
    fn an_answer_keeps_every_via_of_a_joined_line() {
        let mut reg = Registrar::new(RegistrarConfig {
            domain: "reg.test".into(),
            host: Host::parse("127.0.0.1").unwrap(),
            port: 5060,
            transport: "UDP".into(),
            auth: AuthMode::Open,
            secret: b"s".to_vec(),
            min_expires: 60,
            max_expires: 3600,
        });
        let raw = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport, SIP/2.0/UDP p.example;branch=z9hG4bK2\r\n\
f: <sip:a@reg.test>;tag=1\r\nt: <sip:127.0.0.1>\r\ni: c\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
        let src: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        reg.handle_message(
            Instant::now(),
            0,
            Message::parse(raw.as_bytes()).unwrap(),
            src,
        );
        let (to, bytes) = reg.poll_transmit().unwrap();
        assert_eq!(to, src);
        let resp = Message::parse(&bytes).unwrap();
        assert_eq!(resp.status(), Some(200));
        let vias: Vec<sip_msg::typed::Via> = resp
            .headers
            .typed_all::<sip_msg::typed::Via>()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(vias.len(), 2, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(vias[0].received().as_deref(), Some("198.51.100.7"));
        assert_eq!(vias[0].rport(), Some(Some(40000)));
        assert_eq!(vias[1].branch().as_deref(), Some("z9hG4bK2"));
    }

    #[test]
    fn an_escaped_aor_user_binds_its_unescaped_name_with_the_contact_as_sent() {
        let mut reg = open_registrar();
        let now = Instant::now();
        let src: SocketAddr = "192.0.2.5:5070".parse().unwrap();
        register(
            &mut reg,
            now,
            "al%69ce",
            "sip:al%69ce@192.0.2.5:5070;transport=udp",
            600,
            src,
        );
        register(&mut reg, now, "bob", "sip:bob@192.0.2.6:5070", 600, src);
        let b = reg.bindings("alice");
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0].contact.to_string(),
            "sip:al%69ce@192.0.2.5:5070;transport=udp"
        );
        assert!(reg.bindings("al%69ce").is_empty());
        assert_eq!(
            reg.bindings("bob")[0].contact.to_string(),
            "sip:bob@192.0.2.6:5070"
        );
        // A second REGISTER of the same contact replaces the binding.
        register(&mut reg, now, "bob", "sip:bob@192.0.2.6:5070", 300, src);
        assert_eq!(reg.bindings("bob").len(), 1);
        // An INVITE to the escaped or the plain name reaches alice's contact, as registered.
        for target in ["sip:al%69ce@reg.test", "sip:alice@reg.test"] {
            let from: SocketAddr = "192.0.2.99:5060".parse().unwrap();
            let raw = format!(
                "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKinv\r\n\
From: <sip:x@reg.test>;tag=a\r\nTo: <{target}>\r\nCall-ID: c2\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let (to, fwd, _) = deliver(&mut reg, now, &raw, from);
            assert_eq!(to, src);
            assert_eq!(
                fwd.request_uri().unwrap().to_string(),
                "sip:al%69ce@192.0.2.5:5070;transport=udp"
            );
            assert_eq!(fwd.headers.value(&HeaderName::MaxForwards), Some("69"));
        }
    }

    #[test]
    fn the_top_via_digests_are_fnv_1a_of_the_branch_and_of_call_id_then_branch() {
        // FNV-1a as it was written before (over a chain of bytes), for comparison.
        fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h
        }
        // The published FNV-1a 64 vectors.
        assert_eq!(fnv_extend(FNV_BASIS, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv_extend(FNV_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
        for (call_id, branch) in [
            ("c1", "z9hG4bK1"),
            ("", "z9hG4bKx"),
            ("abc@h", "z9hG4bK-long-branch-0123456789"),
        ] {
            let m = Message::parse(
                format!(
                    "BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch={branch}\r\n\
Call-ID: {call_id}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
            let top = TopVia::of(&m).unwrap();
            assert_eq!(top.branch_hash, fnv(branch.bytes()));
            assert_eq!(top.tag_hash, fnv(call_id.bytes().chain(branch.bytes())));
            assert_eq!(to_tag_for(&m), tag_text(top.tag_hash));
        }
    }

    #[test]
    fn split_ascii_splits_as_str_split_does() {
        for s in [
            "",
            ";",
            "a",
            "a;b",
            ";a;;b;",
            "é;ü=ß;",
            "branch=z9hG4bK1;rport;received=1.2.3.4",
        ] {
            for sep in [b';', b'='] {
                let ours: Vec<&str> = split_ascii(s, sep).collect();
                let std: Vec<&str> = s.split(char::from(sep)).collect();
                assert_eq!(ours, std, "{s:?} {sep}");
            }
        }
    }

    #[test]
    fn small_decimals_and_the_tag_precheck() {
        for (i, text) in SMALL_DECIMALS.iter().enumerate() {
            assert_eq!(*text, i.to_string());
        }
        for (value, tag) in [
            ("<sip:bob@b.example>", None),
            ("<sip:bob@b.example>;tag=x1", Some("x1")),
            ("<sip:bob@b.example>;TAG=x2", Some("x2")),
            ("\"tag\" <sip:tag@b.example>", None),
            ("sip:bob@b.example;tag=x3", Some("x3")),
        ] {
            let m = Message::parse(
                format!("BYE sip:b@h SIP/2.0\r\nTo: {value}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            let to = m.headers.view::<ToRef>().unwrap().unwrap();
            assert_eq!(to.tag().as_deref(), tag, "{value}");
            assert!(may_hold_tag(value) || tag.is_none(), "{value}");
        }
        assert!(!may_hold_tag("<sip:bob@b.example;ta=g>"));
    }

    #[test]
    fn a_tag_on_the_stack_is_the_one_push_hex16_writes() {
        for h in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut want = String::from("r");
            sip_msg::push_hex16(&mut want, h);
            assert_eq!(Tag::of(h).as_str(), want);
            assert_eq!(tag_text(h), want);
        }
    }

    #[test]
    fn host_comparison_reads_in_place() {
        let v4 = Host::parse("192.0.2.1").unwrap();
        assert!(host_is(&HostRef::parse("192.0.2.1").unwrap(), &v4));
        assert!(!host_is(&HostRef::parse("192.0.2.2").unwrap(), &v4));
        let name = Host::parse("Reg.Example").unwrap();
        assert!(host_is(&HostRef::parse("reg.example").unwrap(), &name));
        assert!(!host_is(&HostRef::parse("192.0.2.1").unwrap(), &name));
    }

    // ---- review of branch `keep`: fixed on branch `keepfix` ----

    /// Two AORs bind one contact whose user part is neither's: when one AOR un-registers (or
    /// its binding lapses), the shared index entry stays while the other AOR's binding holds
    /// the contact, pointing at that binding's source (the NAT source its REGISTER came from),
    /// and goes with the last binding.
    #[test]
    fn a_contact_shared_by_two_aors_stays_reachable_while_one_still_binds_it() {
        let mut reg = open_registrar();
        let now = Instant::now();
        let (b, c): (SocketAddr, SocketAddr) = (
            "192.0.2.2:40001".parse().unwrap(),
            "192.0.2.3:40002".parse().unwrap(),
        );
        register(&mut reg, now, "bob", "sip:phone7@10.0.0.2:5070", 600, b);
        register(&mut reg, now, "carol", "sip:phone7@10.0.0.2:5070", 600, c);
        assert_eq!(forwarded_to(&mut reg, now, "sip:phone7@10.0.0.2:5070"), c);
        // Bob un-registers; Carol's binding of the same contact remains.
        register(&mut reg, now, "bob", "sip:phone7@10.0.0.2:5070", 0, b);
        assert_eq!(reg.bindings("carol").len(), 1);
        assert_eq!(forwarded_to(&mut reg, now, "sip:phone7@10.0.0.2:5070"), c);
        // Bob binds it again later; Carol's binding lapses first: the entry is Bob's source.
        let later = now + Duration::from_secs(300);
        register(&mut reg, later, "bob", "sip:phone7@10.0.0.2:5070", 600, b);
        register(&mut reg, later, "carol", "sip:phone7@10.0.0.2:5070", 0, c);
        assert_eq!(forwarded_to(&mut reg, later, "sip:phone7@10.0.0.2:5070"), b);
        register(&mut reg, later, "carol", "sip:phone7@10.0.0.2:5070", 60, c);
        assert_eq!(forwarded_to(&mut reg, later, "sip:phone7@10.0.0.2:5070"), c);
        let lapsed = later + Duration::from_secs(61);
        reg.handle_timeout(lapsed);
        assert!(reg.bindings("carol").is_empty());
        assert_eq!(
            forwarded_to(&mut reg, lapsed, "sip:phone7@10.0.0.2:5070"),
            b
        );
        // Bob's lapses too: nothing binds it, the entry goes.
        reg.handle_timeout(later + Duration::from_secs(601));
        assert!(reg.contacts.is_empty(), "{:?}", reg.contacts);
    }

    /// A contact whose user part is the AOR's user on another host, and one shared with
    /// another AOR whose user differs, are found by their own bindings.
    #[test]
    fn own_user_contacts_on_other_hosts_and_shared_with_another_aor() {
        let mut reg = open_registrar();
        let now = Instant::now();
        let (a1, a2, b): (SocketAddr, SocketAddr, SocketAddr) = (
            "192.0.2.1:40000".parse().unwrap(),
            "192.0.2.9:40009".parse().unwrap(),
            "192.0.2.2:40001".parse().unwrap(),
        );
        register(&mut reg, now, "alice", "sip:alice@10.0.0.1:5062", 600, a1);
        register(&mut reg, now, "alice", "sip:alice@10.0.0.9:5062", 600, a2);
        register(&mut reg, now, "bob", "sip:alice@10.0.0.7:5062", 600, b);
        assert_eq!(forwarded_to(&mut reg, now, "sip:alice@10.0.0.1:5062"), a1);
        assert_eq!(forwarded_to(&mut reg, now, "sip:alice@10.0.0.9:5062"), a2);
        assert_eq!(forwarded_to(&mut reg, now, "sip:alice@10.0.0.7:5062"), b);
        register(&mut reg, now, "alice", "sip:alice@10.0.0.9:5062", 0, a2);
        let own: SocketAddr = "10.0.0.9:5062".parse().unwrap();
        assert_eq!(forwarded_to(&mut reg, now, "sip:alice@10.0.0.9:5062"), own);
        assert_eq!(forwarded_to(&mut reg, now, "sip:alice@10.0.0.7:5062"), b);
        reg.handle_timeout(now + Duration::from_secs(601));
        assert!(reg.contacts.is_empty(), "{:?}", reg.contacts);
    }

    /// RFC 3261 §16.3 step 5: a request whose Proxy-Require names an option tag the proxy
    /// does not understand is answered 420 (Bad Extension) with an Unsupported header
    /// listing it; it is not forwarded.
    #[test]
    fn an_unknown_proxy_require_is_answered_420() {
        let mut reg = open_registrar();
        let now = Instant::now();
        let bob: SocketAddr = "192.0.2.2:40001".parse().unwrap();
        register(&mut reg, now, "bob", "sip:bob@10.0.0.2:5062", 600, bob);
        let alice: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let raw = format!(
            "INVITE sip:bob@reg.test SIP/2.0\r\nVia: SIP/2.0/UDP {alice};branch=z9hG4bKpr1\r\n\
From: <sip:alice@reg.test>;tag=a\r\nTo: <sip:bob@reg.test>\r\nCall-ID: pr1\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nProxy-Require: x-no-such-ext\r\nContent-Length: 0\r\n\r\n"
        );
        let (to, answer, text) = deliver(&mut reg, now, &raw, alice);
        assert_eq!(to, alice, "{text}");
        assert_eq!(answer.status(), Some(420), "{text}");
        assert_eq!(
            answer.headers.value(&HeaderName::Unsupported),
            Some("x-no-such-ext"),
            "{text}"
        );
    }

    /// RFC 3261 §10.3 step 2 (and §8.2.2.3): the registrar processes Require as a UAS does:
    /// an option tag it does not support gets 420 (Bad Extension) with Unsupported, and no
    /// binding is made.
    #[test]
    fn a_register_requiring_an_unknown_extension_is_answered_420() {
        let mut reg = open_registrar();
        let src: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let raw = format!(
            "REGISTER sip:reg.test SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKrq1\r\n\
From: <sip:alice@reg.test>;tag=1\r\nTo: <sip:alice@reg.test>\r\nCall-ID: rq1\r\n\
CSeq: 1 REGISTER\r\nRequire: x-no-such-ext\r\nContact: <sip:alice@10.0.0.1:5062>\r\n\
Expires: 600\r\nContent-Length: 0\r\n\r\n"
        );
        let (_, answer, text) = deliver(&mut reg, Instant::now(), &raw, src);
        assert_eq!(answer.status(), Some(420), "{text}");
        assert_eq!(
            answer.headers.value(&HeaderName::Unsupported),
            Some("x-no-such-ext"),
            "{text}"
        );
        assert!(reg.bindings("alice").is_empty());
    }

    /// RFC 3261 §16.6 steps 6–7: after our own Route entry is removed (§16.4), the next hop
    /// of a forwarded request is the first remaining Route value (a loose router), else the
    /// Request-URI. An initial INVITE with a preloaded route set beyond us went straight to
    /// the callee's binding, skipping the proxy its Route named.
    #[test]
    fn an_initial_request_follows_the_route_left_after_ours() {
        let mut reg = open_registrar();
        let now = Instant::now();
        let bob: SocketAddr = "192.0.2.2:40001".parse().unwrap();
        register(&mut reg, now, "bob", "sip:bob@10.0.0.2:5062", 600, bob);
        let alice: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let raw = format!(
            "INVITE sip:bob@reg.test SIP/2.0\r\nVia: SIP/2.0/UDP {alice};branch=z9hG4bKrt1\r\n\
Route: <sip:127.0.0.1:5060;lr>, <sip:192.0.2.50:5080;lr>\r\n\
From: <sip:alice@reg.test>;tag=a\r\nTo: <sip:bob@reg.test>\r\nCall-ID: rt1\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let (to, fwd, text) = deliver(&mut reg, now, &raw, alice);
        assert_eq!(fwd.method(), Some(Method::Invite), "{text}");
        assert_eq!(
            fwd.headers.value(&HeaderName::Route),
            Some("<sip:192.0.2.50:5080;lr>"),
            "{text}"
        );
        assert_eq!(
            to,
            "192.0.2.50:5080".parse::<SocketAddr>().unwrap(),
            "{text}"
        );
    }
}
