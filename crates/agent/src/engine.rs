//! The load engine: a [`RunPlan`] becomes a fleet of simulated endpoints on N shards.
//!
//! Each shard is one OS thread running one event loop over a slab of endpoints: an endpoint
//! is a struct (a sans-IO [`UserAgent`] plus its test script and results), never a task.
//! A shard owns one UDP socket shared by its endpoints and one timer heap for all of them.
//! Incoming requests are routed to an endpoint by their Request-URI user (each endpoint's
//! contact user is unique in its shard), responses by Call-ID.
//!
//! The run reports through one stream of [`RunEvent`]s: phase changes, progress, and each
//! endpoint's final [`EndpointReport`] with its SIP trace.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use sip_msg::typed::{CallIdRef, ViaRef};
use sip_msg::{Host, Message, Method, SipUri, Uri};
use sip_proto::auth::Credentials;
use sip_proto::transaction::TimerConfig;
use sip_proto::ua::{
    CallEvent, CallId, CallState, Destination, SessionTimerConfig, SrtpPolicy, UaEvent, UaIdentity,
    UaProfile, UserAgent,
};

use sip_net::tls::ClientSettings;

use crate::callmedia::{
    CallMedia, Followed, LoopProbe, MediaDriver, MediaPacer, MediaPlan, PortAllocator,
    PreciseTimer, SendTiming,
};
use crate::conn::{StreamEvent, StreamIn, StreamSettings};
use crate::eventbuf::EventSink;
use crate::fasthash::FastMap;
use crate::flow::FlowKind;
use crate::hints::{hint_for, hint_for_incoming};
use crate::netpoll::{Leg, NetPoll, Sent};
use crate::routes::CallRoutes;
use crate::sdpoffer::sdp;
use crate::sipsock::{Coalescer, SipSocket};
use crate::timerheap::TimerHeap;
use crate::trace::{Direction, Trace, TraceEntry};
use crate::udpbatch::{self, RecvBatch, SendQueue};

mod events;
mod failover_glue;
mod outbound_flow;
mod proxy_failover;
mod proxy_link;
mod shared_link;
mod transfer;
use crate::failover::{EndpointFailover, TargetList, TargetTable};
pub use events::{CallTrigger, EventAction, EventActionReport, SoundSpan, TONE_MIN, ToneSpan};
pub use outbound_flow::{OutboundEndpoint, OutboundSummary};
pub use transfer::{TransferCounts, TransferReport};

/// Where the endpoints register and send their calls.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    /// The registrar's address.
    pub addr: SocketAddr,
    /// The SIP domain (AOR host).
    pub domain: String,
    /// The REGISTER Request-URI.
    pub registrar_uri: Uri,
    /// The outbound proxy's URI and address, when INVITEs go through one.
    pub outbound_proxy: Option<(SipUri, SocketAddr)>,
    /// How endpoints reach it: transport, TLS, WebSocket path, keep-alive, UDP sockets.
    pub transport: TransportPlan,
}

impl ServerTarget {
    /// RFC 5626 outbound through an outbound proxy over TCP, TLS, WS or WSS: the flow is the
    /// endpoint's connection to the proxy (§3.2, the edge proxy's side of it), so that is its
    /// only connection and carries the REGISTER, the calls and the keep-alives; the registrar
    /// is reached through the proxy only.
    pub fn flow_via_proxy(&self) -> bool {
        self.transport.outbound
            && self.outbound_proxy.is_some()
            && self.transport.kind != FlowKind::Udp
    }
}

/// How the endpoints of a run reach their server.
#[derive(Debug, Clone)]
pub struct TransportPlan {
    /// UDP (a socket shared per shard, or one per endpoint), or one connection per endpoint
    /// over TCP, TLS, WS or WSS.
    pub kind: FlowKind,
    /// TLS verification and client certificate (TLS and WSS).
    pub tls: ClientSettings,
    /// The name the server's certificate must carry and the SNI (default: the domain).
    pub tls_name: Option<String>,
    /// The WebSocket resource (WS and WSS), e.g. `/` or `/ws`.
    pub ws_path: String,
    /// CRLF keep-alive interval on TCP and TLS (RFC 5626 §3.5.1); `None`: off.
    pub keepalive: Option<Duration>,
    /// Reconnect (with backoff) and re-register when a connection is lost.
    pub reconnect: bool,
    /// One UDP socket per endpoint instead of one per shard.
    pub udp_per_endpoint: bool,
    /// TCP, TLS, WS, WSS: the shard's endpoints of this server share one connection (a
    /// trunk, `connections = "shared"`) instead of one each. Ignored over UDP.
    pub shared_connection: bool,
    /// SO_RCVBUF for UDP signalling sockets, bytes (`None`: the system's default).
    pub udp_recv_buffer: Option<usize>,
    /// SO_SNDBUF for UDP signalling sockets, bytes.
    pub udp_send_buffer: Option<usize>,
    /// DSCP of the signalling sent to this server (`sip_dscp`; `None`: unmarked). A shard's
    /// shared UDP socket takes the first server's, as it takes its buffer sizes.
    pub sip_dscp: Option<crate::dscp::Dscp>,
    /// RFC 5626 outbound (`outbound = true`): instance and reg-id in REGISTER, flow
    /// keep-alives with their answers checked, a new registration when the flow fails.
    pub outbound: bool,
    /// The built-in registrar's entries only (`failed_flow_hold`): how long its RFC 5626
    /// bindings whose flow failed answer 430 before they are dropped (`None`: its default,
    /// 30 s; the shortest of the run's entries wins).
    pub failed_flow_hold: Option<Duration>,
}

impl Default for TransportPlan {
    fn default() -> Self {
        Self {
            kind: FlowKind::Udp,
            tls: ClientSettings::default(),
            tls_name: None,
            ws_path: "/".into(),
            keepalive: Some(Duration::from_secs(30)),
            reconnect: true,
            udp_per_endpoint: false,
            shared_connection: false,
            udp_recv_buffer: None,
            udp_send_buffer: None,
            sip_dscp: None,
            outbound: false,
            failed_flow_hold: None,
        }
    }
}

/// What a group of endpoints does.
#[derive(Debug, Clone)]
pub enum Role {
    /// Register and answer incoming calls after a delay.
    Answer {
        /// Time between the INVITE and the 200 OK (180 Ringing is sent at once).
        answer_delay: Duration,
    },
    /// Register and call `targets[i % len]` (endpoint i of the group), `calls` times.
    Call {
        /// Request-URIs to call.
        targets: Vec<Uri>,
        /// Calls per endpoint.
        calls: u32,
        /// Pause between two calls of one endpoint.
        pause: Duration,
        /// Where the session offer goes: in the INVITE, or in the callee's 2xx (or reliable
        /// 1xx), answered in our ACK (or PRACK).
        offer: OfferTiming,
    },
    /// Register, stay registered for the run, un-register.
    RegisterOnly,
}

/// When a caller's SDP offer goes (RFC 3264 §4; the test file's `offer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OfferTiming {
    /// In the INVITE (the default).
    #[default]
    Early,
    /// Late (delayed) offer: an INVITE without SDP; the callee offers in its 2xx or in a
    /// reliable 1xx, and our answer goes in the ACK (RFC 3261 §13.2.2.4) or the PRACK
    /// (RFC 3262 §5).
    Late,
}

/// One endpoint to simulate.
#[derive(Debug, Clone)]
pub struct EndpointPlan {
    /// Its AOR user (extension).
    pub user: String,
    /// Its credentials.
    pub credentials: Option<Credentials>,
}

/// A group of endpoints with one role.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// The group's name.
    pub name: String,
    /// Its endpoints.
    pub endpoints: Vec<EndpointPlan>,
    /// Where they register and call: 0 for [`RunPlan::server`], `i` for
    /// `RunPlan::more_servers[i - 1]` (see [`RunPlan::server_of`]).
    pub server: usize,
    /// What they do.
    pub role: Role,
    /// Offer and use reliable provisional responses (RFC 3262 100rel/PRACK).
    pub prack: bool,
    /// RFC 4028 session timers, calling and answering (`None`: off).
    pub session_timer: Option<SessionTimerConfig>,
    /// Register before calling (false: a trunk with IP authentication, or a direct peer).
    pub register: bool,
    /// What each call does while it is up, in time order (hold, resume, DTMF).
    pub actions: Vec<CallAction>,
    /// What each call does when something happens in it (a digit received, a hold).
    pub event_actions: Vec<EventAction>,
    /// RTP media in each call (`None`: signalling only, with a fixed SDP).
    pub media: Option<MediaPlan>,
    /// How its phones present themselves: `user_agent`, `display_name`, `headers`.
    pub identity: GroupIdentity,
    /// How its phones ring and answer: `ring_timeout`, `reject`, `answer_delay = "never"`.
    pub ringing: Ringing,
}

/// How a group's phones ring and answer beyond `answer_delay`: the callers' no-answer time,
/// the callees' refusals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ringing {
    /// Callers (`ring_timeout`): a call not answered this long after its INVITE is
    /// cancelled (CANCEL), as a phone gives up; the call's result is `cancelled`.
    pub ring_timeout: Option<Duration>,
    /// Callees (`reject`, `reject_percent`): this share of the calls is refused with the
    /// code after `answer_delay` of ringing, as a user declining.
    pub reject: Option<Reject>,
    /// Callees (`answer_delay = "never"`): ring until the caller gives up.
    pub never_answer: bool,
}

/// A callee's planned refusal of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// The final response (400..=699).
    pub code: u16,
    /// Percent of the calls (1..=100), spread evenly over the group's calls.
    pub percent: u8,
}

impl Reject {
    /// Whether the `n`-th call of the group (0-based, counted over its endpoints in turn)
    /// is refused: the refused calls are spread evenly (30 % refuses the 4th, 7th and 10th
    /// of every ten, counted from 1).
    pub fn refuses(&self, n: u64) -> bool {
        let p = u64::from(self.percent);
        (n + 1) * p / 100 > n * p / 100
    }
}

/// How a group's phones present themselves to the server.
#[derive(Debug, Clone, Default)]
pub struct GroupIdentity {
    /// The `User-Agent` of their requests and `Server` of their responses (default
    /// `sipmeter/VERSION`): a PBX that tells phones apart by it sees the model named.
    pub user_agent: Option<String>,
    /// The From display name and extra headers of the INVITEs they place.
    pub caller: sip_proto::ua::CallerHeaders,
}

/// Something an endpoint does in a call, `at` after the call was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAction {
    /// Time after the answer.
    pub at: Duration,
    /// What to do.
    pub kind: ActionKind,
}

/// The scenario actions an endpoint performs in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// re-INVITE with `a=sendonly` (RFC 3264 §8.4).
    Hold,
    /// re-INVITE with `a=sendrecv`.
    Resume,
    /// re-INVITE with a new offer in the same session (RFC 3264 §8: the version raised, the
    /// direction kept): a session refresh an SBC or PBX must answer without disturbing the
    /// media; with `codecs`, the offer names only those, and the call changes codec to the
    /// answer's (§8.3.2).
    Reinvite {
        /// The codecs offered from now on in this call; `None`: the call's own.
        codecs: Option<Vec<media::sdp::Codec>>,
    },
    /// DTMF digits as RFC 4733 telephone-events in the RTP stream.
    Dtmf {
        /// The digits: 0-9, *, #, A-D.
        digits: String,
        /// Each digit's duration.
        duration_ms: u32,
    },
    /// One DTMF digit as SIP INFO (`application/dtmf-relay`, `Signal=`/`Duration=`).
    DtmfInfo {
        /// The digit: 0-9, *, #, A-D.
        digit: char,
        /// Its duration.
        duration_ms: u32,
    },
    /// A blind transfer (RFC 3515 REFER, RFC 5589 §6) of the call to `targets[i % len]`
    /// (endpoint i of the group); a final 2xx status ends our call with BYE.
    Transfer {
        /// The Refer-To URIs.
        targets: Vec<Uri>,
    },
    /// An attended transfer (RFC 5589 §7) of the call to `targets[i % len]`: the call held
    /// (re-INVITE a=sendonly), a consultation call to the target, `consult` of talk once it
    /// answers, then REFER with `Refer-To: <target?Replaces=...>` naming the consultation
    /// dialog (RFC 3891 §7); see `engine/transfer/attended.rs`.
    AttendedTransfer {
        /// The targets (the REFER's Refer-To adds the Replaces header).
        targets: Vec<Uri>,
        /// How long the consultation call talks before the REFER.
        consult: Duration,
    },
    /// End the call now with BYE, before the call's duration: a normal end, not a failure.
    Hangup,
    /// A SIP MESSAGE (RFC 3428) in the call's dialog, `text/plain`.
    Message {
        /// Its body.
        text: String,
    },
}

/// The MESSAGEs an endpoint sent in its calls (the `message` action), in its report.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MessageCounts {
    /// Sent.
    pub sent: u32,
    /// Answered 2xx.
    pub answered_2xx: u32,
    /// Answered with an error, or not at all (408).
    pub failed: u32,
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The test's name.
    pub name: String,
    /// RTP/RTCP port pairs from this inclusive range (`None`: chosen by the system).
    pub rtp_ports: Option<(u16, u16)>,
    /// Keep every per-second media sample in the endpoint reports (they are always sent as
    /// [`RunEvent::Sample`]).
    pub keep_samples: bool,
    /// Where to register (the server of groups whose [`GroupPlan::server`] is 0).
    pub server: ServerTarget,
    /// More servers, for groups that register elsewhere (a group's `server` `i` ≥ 1 is
    /// `more_servers[i - 1]`).
    pub more_servers: Vec<ServerTarget>,
    /// The groups (answering groups register before calling groups dial).
    pub groups: Vec<GroupPlan>,
    /// How long each call stays up.
    pub call_duration: Duration,
    /// Endpoints started per second (0: all at once).
    pub ramp_per_sec: f64,
    /// New calls per second over the whole run at most (0: no cap).
    pub cps: f64,
    /// Registration lifetime asked for.
    pub register_expires: u32,
    /// Event loops (one per core).
    pub shards: usize,
    /// Seed for every tag, branch and Call-ID.
    pub seed: u64,
    /// Hard limit for the run; endpoints still busy then end with TIMEOUT.
    pub time_limit: Duration,
    /// Keep the trace of every endpoint (otherwise only of failed ones).
    pub keep_all_traces: bool,
    /// RFC 3261 T1, T2, T4 for every endpoint.
    pub timers: TimerConfig,
}

impl RunPlan {
    /// Every server, [`RunPlan::server`] first: index `i` is what [`GroupPlan::server`] names.
    pub fn servers(&self) -> impl Iterator<Item = &ServerTarget> {
        std::iter::once(&self.server).chain(&self.more_servers)
    }

    /// The server of group `g` (the first one for an index out of range).
    pub fn server_of(&self, g: usize) -> &ServerTarget {
        self.site_server(self.groups.get(g).map_or(0, |g| g.server))
    }

    /// Server `i` of [`RunPlan::servers`], to change (the first one for an index out of
    /// range).
    pub fn site_server_mut(&mut self, i: usize) -> &mut ServerTarget {
        match i.checked_sub(1) {
            Some(k) if k < self.more_servers.len() => &mut self.more_servers[k],
            _ => &mut self.server,
        }
    }

    /// Server `i` of [`RunPlan::servers`] (the first one for an index out of range).
    pub fn site_server(&self, i: usize) -> &ServerTarget {
        match i.checked_sub(1) {
            Some(k) => self.more_servers.get(k).unwrap_or(&self.server),
            None => &self.server,
        }
    }
}

/// Endpoint phases, forward only (product.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Created, registering.
    Initializing,
    /// Registered.
    Registered,
    /// INVITE sent or received.
    Calling,
    /// 180/183 sent or received.
    Ringing,
    /// 2xx sent or received, SDP being settled.
    Negotiating,
    /// In the call.
    Incall,
    /// BYE/CANCEL/un-REGISTER in flight.
    Disconnecting,
    /// Done.
    Closed,
}

/// Endpoint outcomes; a worse one is never overwritten by a milder one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Everything worked.
    Success,
    /// Worked, with something to look at (e.g. un-REGISTER refused).
    CompletedWithWarnings,
    /// Could not register.
    RegistrationFailed,
    /// The call was refused or failed.
    CallFailed,
    /// No common codec.
    NegotiationFailed,
    /// Something did not answer in time.
    Timeout,
    /// A socket error.
    Oserror,
    /// Hanging up failed.
    TeardownError,
}

impl Outcome {
    /// The name as reported (`CALL_FAILED`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::CompletedWithWarnings => "COMPLETED_WITH_WARNINGS",
            Outcome::RegistrationFailed => "REGISTRATION_FAILED",
            Outcome::CallFailed => "CALL_FAILED",
            Outcome::NegotiationFailed => "NEGOTIATION_FAILED",
            Outcome::Timeout => "TIMEOUT",
            Outcome::Oserror => "OSERROR",
            Outcome::TeardownError => "TEARDOWN_ERROR",
        }
    }

    /// The severity used to keep the worst outcome (product.md: 0, 1, then 10 each).
    pub fn severity(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::CompletedWithWarnings => 1,
            _ => 10,
        }
    }
}

/// How a call ended (product.md's call results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    /// Answered.
    Answered,
    /// 486/600.
    Busy,
    /// Other 4xx-6xx.
    Rejected,
    /// No final answer (408 or Timer B).
    Timeout,
    /// Cancelled (487).
    Cancelled,
    /// 480/503.
    Unavailable,
    /// Anything else.
    Failed,
}

/// Call timings in milliseconds (one-shot metrics).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// REGISTER sent → 200 OK.
    pub registration_ms: Option<f64>,
    /// INVITE sent → 100 Trying.
    pub time_to_100_ms: Option<f64>,
    /// INVITE sent → first 180/183.
    pub time_to_180_ms: Option<f64>,
    /// Post-dial delay: INVITE sent → first ringing or answer.
    pub post_dial_delay_ms: Option<f64>,
    /// INVITE sent → 2xx.
    pub call_setup_ms: Option<f64>,
    /// Answer → end of call.
    pub call_duration_ms: Option<f64>,
}

/// The final report of one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    /// Index in the run.
    pub id: u32,
    /// Its group.
    pub group: String,
    /// Its AOR user.
    pub user: String,
    /// The last phase reached.
    pub phase: Phase,
    /// The worst outcome seen.
    pub outcome: Outcome,
    /// Final code of the registration.
    pub registration_code: Option<u16>,
    /// Final code of the (last) call.
    pub call_code: Option<u16>,
    /// How the (last) call ended.
    pub call_result: Option<CallResult>,
    /// Calls completed.
    pub calls_answered: u32,
    /// Calls attempted (placed by this endpoint).
    pub calls_attempted: u32,
    /// Calls received.
    pub calls_received: u32,
    /// Calls received and refused as the group's `reject` asks.
    pub calls_refused: u32,
    /// RFC 4028 session refreshes of its calls: ours (each answered 2xx), and the peer's we
    /// answered 2xx (a re-INVITE or UPDATE in a call with a session timer is one).
    pub session_refreshes_sent: u32,
    /// See [`EndpointReport::session_refreshes_sent`].
    pub session_refreshes_received: u32,
    /// How its calls offered (`early` or `late`); absent for endpoints that place none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<OfferTiming>,
    /// Timings of the first call.
    pub timings: Timings,
    /// What went wrong, in words, with the hint for the code.
    pub error: Option<String>,
    /// Media figures, when the calls carried RTP.
    pub media: Option<MediaReport>,
    /// Per-second media samples (with `keep_samples`).
    pub samples: Vec<SampleRecord>,
    /// DTMF digits this endpoint sent (SIP INFO).
    pub dtmf_sent: String,
    /// DTMF digits this endpoint received (SIP INFO `application/dtmf-relay` or `application/dtmf`).
    pub dtmf_received: String,
    /// How often each of its group's actions on an event ran (absent when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_actions: Vec<EventActionReport>,
    /// The sounds it heard in its calls' received audio, when its group watches them
    /// (actions on `audio` or `silence`): when each started and stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sound_heard: Vec<SoundSpan>,
    /// The tones it heard in its calls' received audio, when its group listens for them
    /// (actions on `tone:…`): which, when each started, how long it lasted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tones_heard: Vec<ToneSpan>,
    /// The DTMF digits it heard in-band (in the audio), when its group listens for them
    /// (actions on `inband_dtmf`), over its calls.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dtmf_inband: String,
    /// The MESSAGEs it sent in its calls (the `message` action), when it sent any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessageCounts>,
    /// Its call transfers (the `transfer` action), when it sent any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferReport>,
    /// Its RFC 5626 outbound flow (`outbound = true`), once it registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundEndpoint>,
    /// The `Reason` headers (RFC 3326) the far end's BYEs, CANCELs and error responses to
    /// its INVITEs carried: each kind once, with how often it came.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_reasons: Vec<crate::reason::PeerReason>,
    /// The SIP trace (kept for failed endpoints, or for all with `keep_all_traces`).
    pub trace: Vec<TraceEntry>,
}

/// The stream the CLI, the server and remote workers consume.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// An endpoint entered a phase.
    Phase {
        /// Endpoint id.
        endpoint: u32,
        /// The phase.
        phase: Phase,
    },
    /// Counters, about once a second.
    Progress(Progress),
    /// An endpoint finished.
    Finished(Box<EndpointReport>),
    /// One second of one call's media figures (both directions).
    Sample(Box<SampleRecord>),
    /// The whole run finished (boxed: the summary is large, and every event of the stream
    /// is as large as its largest kind).
    Done(Box<RunSummary>),
}

/// One second of a call's media, under the metric names of `media::session::Sample::metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRecord {
    /// The endpoint.
    pub endpoint: u32,
    /// Which of its calls (1 = first).
    pub call: u32,
    /// Seconds since the call's media started, at the end of the interval.
    pub t: f64,
    /// Metric name → value (absent values are left out).
    pub metrics: Vec<(&'static str, f64)>,
}

/// One endpoint's media over its calls (averages over the calls measured).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaReport {
    /// Calls with media measured.
    pub calls: u32,
    /// Of those, the calls in which no RTP at all was received (not rated: they count in
    /// no mean below; each ended COMPLETED_WITH_WARNINGS when the far end was to send for
    /// 2 s or more, `SILENT_CALL_MIN`).
    pub calls_without_audio: u32,
    /// Of those, the calls that received RTP but had an audio gap: no RTP for 2 s or more
    /// (`media::gaps::AUDIO_GAP_MIN`) while the far end was to send (not held, not parked
    /// with `c=0.0.0.0`, not in the first 2 s after its media moved). Not rated either (no
    /// MOS, R or per-call minimum: RFC 3550 loss cannot see a sender that stopped, and G.107
    /// has no input for it); each ended COMPLETED_WITH_WARNINGS naming its longest gap.
    pub calls_with_gaps: u32,
    /// Audio gaps in those calls.
    pub gaps: u32,
    /// The longest gap, s (`None` without gaps).
    pub gap_longest_s: Option<f64>,
    /// All gaps together, s.
    pub gap_total_s: f64,
    /// The codec of the last call.
    pub codec: Option<&'static str>,
    /// The SRTP suite the last call ended with (`AES_CM_128_HMAC_SHA1_80` …); `None`: plain
    /// RTP (from the start, or after the peer dropped SRTP: [`Self::srtp_dropped`]).
    pub srtp: Option<&'static str>,
    /// DTLS-SRTP (`srtp = "dtls"`): the DTLS version of the last call's handshake
    /// ("DTLS1.2", "DTLS1.3"); `None`: no DTLS, or no handshake ended.
    pub dtls: Option<&'static str>,
    /// Mean DTLS-SRTP handshake time of the calls keyed, ms: from our first handshake
    /// datagram sent (client) or received (server) to the SRTP keys. Media waits for it: a
    /// caller hears nothing for this long at the start of each call.
    pub dtls_handshake_ms: Option<f64>,
    /// The longest of them, ms.
    pub dtls_handshake_max_ms: Option<f64>,
    /// Calls whose DTLS-SRTP handshake gave no keys (failed, the peer's certificate not
    /// its SDP fingerprint, or not over when the call ended): each ended NEGOTIATION_FAILED.
    pub dtls_failures: u32,
    /// SRTP/SRTCP packets received under DTLS-SRTP before our handshake gave keys (the peer
    /// had its keys first, or our handshake failed while the peer's succeeded): dropped.
    pub dtls_early: u64,
    /// Offers (or answers) inside the calls that dropped SRTP and were followed
    /// (`srtp = "optional"`): the call went on with plain RTP (traced "SRTP dropped by the
    /// peer's offer"); `srtp` is then what the last call ended with.
    pub srtp_dropped: u32,
    /// Offers (or answers) inside the calls that brought SRTP into a plain call and were
    /// taken (`srtp = "optional"`).
    pub srtp_taken: u32,
    /// SRTP/SRTCP packets received that failed authentication (RFC 3711 §3.3), over the
    /// calls: dropped, in no figure; a call with any ended COMPLETED_WITH_WARNINGS.
    pub srtp_auth_failures: u64,
    /// SRTP/SRTCP packets received twice or behind the 64-packet replay window (RFC 3711
    /// §3.3.2): dropped, in no figure; a call with any ended COMPLETED_WITH_WARNINGS.
    pub srtp_replayed: u64,
    /// Mean MOS of the calls that received audio (E-model: ITU-T G.107 for G.711, G.107.1
    /// for G.722 and Opus; one 1–4.5 scale); `None` when none did. `r_factor` is on the
    /// scale of the model used: up to 100 (G.107) or 129 (G.107.1).
    pub mos: Option<f64>,
    /// The lowest per-second MOS seen.
    pub mos_min: Option<f64>,
    /// Mean R-factor of the calls that received audio.
    pub r_factor: Option<f64>,
    /// Mean final interarrival jitter (RFC 3550 A.8) of the calls that received audio, ms.
    pub jitter_ms: f64,
    /// Largest jitter seen, ms.
    pub jitter_max_ms: f64,
    /// Packets lost / expected over all calls, percent.
    pub loss_percent: f64,
    /// Mean RTT from RTCP, ms (when reports came back).
    pub rtt_ms: Option<f64>,
    /// RTP packets sent.
    pub tx_packets: u64,
    /// RTP packets received.
    pub rx_packets: u64,
    /// Packets lost (RFC 3550 A.3).
    pub rx_lost: i64,
    /// Duplicates, out-of-order, jitter-buffer late packets.
    pub rx_duplicates: u64,
    /// Out-of-order packets.
    pub rx_out_of_order: u64,
    /// Late for the modelled jitter buffer.
    pub rx_jb_late: u64,
    /// DTMF digits received as RFC 4733 events.
    pub dtmf_received: String,
    /// Datagrams the socket refused to send.
    pub send_errors: u64,
    /// RTP datagrams from a source other than the call's (strict RTP): not measured.
    pub rx_stray: u64,
    /// The DSCPs (RFC 2474) the received RTP and RTCP carried, in order, over the calls: `[46]`
    /// when the far end marks EF and the path keeps it, `[0]` when nothing is marked or the
    /// path clears the mark.
    pub rx_dscp: Vec<u8>,
    /// RTCP XR VoIP Metrics blocks (RFC 3611 §4.7) the far end sent about our stream, over
    /// the calls (a phone, SBC or media server that reports XR; sipmeter with `rtcp_xr`).
    pub xr_received: u64,
    /// Round trips measured by RTCP XR (RFC 3611 §4.4–§4.5: our Receiver Reference Time
    /// blocks answered by the far end's DLRR) while we sent no RTP (held, or receiving
    /// only), over the calls; they are in `rtt_ms` like those from SR/RR.
    pub xr_rtts: u64,
    /// The far end's view of what we sent, from its last VoIP Metrics block of the last
    /// call that had one; absent when the far end sent none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_xr: Option<PeerXr>,
    /// ICE (`ice = true`, RFC 8445) over the calls; absent without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ice: Option<IceReport>,
}

/// An endpoint's ICE over its calls (`ice = true`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IceReport {
    /// The last call's final ICE state: `connected`, `failed`, `disconnected` (consent
    /// lost, RFC 7675), `checking` (not over when the call ended), or `fallback` (the peer
    /// had no ICE: media to its c=/m= address, RFC 8445 §5.1).
    pub state: &'static str,
    /// Connectivity and consent checks sent (retransmissions included), over the calls.
    pub checks_sent: u64,
    /// Checks received from the peer, over the calls.
    pub checks_received: u64,
    /// Mean time from the start of the checks to a selected pair on every component, ms,
    /// of the calls that connected.
    pub connected_ms: Option<f64>,
    /// The longest of them, ms.
    pub connected_max_ms: Option<f64>,
    /// The last call's selected pair (component 1): `ours -> the peer's`.
    pub selected_pair: Option<String>,
    /// The type of the peer's candidate in it (`host`, `srflx`, `prflx`, `relay`).
    pub remote_candidate: Option<&'static str>,
    /// The type of our candidate in it (`relay`: the media went through our TURN server).
    pub local_candidate: Option<&'static str>,
    /// The last call's TURN relayed address (`turn_server`).
    pub relayed: Option<String>,
    /// Calls whose TURN allocation failed.
    pub turn_failures: u32,
    /// Why the last of them failed (`TURN 401 Unauthorized: …`).
    pub turn_error: Option<String>,
    /// Consent checks (RFC 7675) that got no answer, over the calls.
    pub consent_failures: u64,
    /// Calls whose ICE failed or lost consent: each ended NEGOTIATION_FAILED.
    pub failures: u32,
    /// Calls whose peer had no ICE (fallback).
    pub fallbacks: u32,
    /// Calls whose ICE connected.
    pub connected: u32,
    /// Calls that gathered candidates from a STUN or TURN server (`stun_server`,
    /// `turn_server`).
    pub gathered: u32,
    /// Mean time those calls' gathering took (the STUN Binding and the TURN Allocate, up
    /// to the last answer or the 2 s limit), ms: their INVITE or answer waited that long.
    pub gathering_ms: Option<f64>,
    /// The longest of them, ms.
    pub gathering_max_ms: Option<f64>,
    /// RTP and RTCP packets made but not sent because no pair was selected (RFC 8445
    /// §12.1: before ICE connected, after it failed or lost consent), over the calls; they
    /// are in `tx_packets` (which counts what the calls made).
    pub media_not_sent: u64,
}

/// A far end's RTCP XR VoIP Metrics block (RFC 3611 §4.7) about our stream, in report units:
/// fractions in percent, unavailable fields (127, or a delay of 0) absent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PeerXr {
    /// Packets it lost, percent of those expected.
    pub loss_percent: f64,
    /// Packets it discarded (late for its jitter buffer), percent.
    pub discard_percent: f64,
    /// Share of the packets in bursts that were lost or discarded, percent.
    pub burst_density_percent: f64,
    /// Share of the packets in gaps that were lost or discarded, percent.
    pub gap_density_percent: f64,
    /// Mean burst length, ms.
    pub burst_duration_ms: u16,
    /// Mean gap length, ms.
    pub gap_duration_ms: u16,
    /// Its round trip delay, ms.
    pub round_trip_ms: Option<u16>,
    /// Its own delay (packetisation, jitter buffer, decoding), ms.
    pub end_system_delay_ms: Option<u16>,
    /// Speech level it heard, dBm0.
    pub signal_dbm0: Option<i8>,
    /// Noise level it heard in pauses, dBm0.
    pub noise_dbm0: Option<i8>,
    /// Its R factor (G.107, 0–100).
    pub r_factor: Option<u8>,
    /// Its listening-quality MOS.
    pub mos_lq: Option<f64>,
    /// Its conversational-quality MOS.
    pub mos_cq: Option<f64>,
    /// Its jitter buffer's nominal, maximum and absolute maximum delay, ms.
    pub jb_nominal_ms: u16,
    /// See `jb_nominal_ms`.
    pub jb_maximum_ms: u16,
    /// See `jb_nominal_ms`.
    pub jb_abs_max_ms: u16,
}

impl From<media::xr::VoipMetrics> for PeerXr {
    fn from(m: media::xr::VoipMetrics) -> Self {
        use media::xr::VoipMetrics as V;
        let pct = |x: u8| f64::from(x) * 100.0 / 256.0;
        let delay = |x: u16| (x != 0).then_some(x);
        PeerXr {
            loss_percent: pct(m.loss_rate),
            discard_percent: pct(m.discard_rate),
            burst_density_percent: pct(m.burst_density),
            gap_density_percent: pct(m.gap_density),
            burst_duration_ms: m.burst_duration_ms,
            gap_duration_ms: m.gap_duration_ms,
            round_trip_ms: delay(m.round_trip_delay_ms),
            end_system_delay_ms: delay(m.end_system_delay_ms),
            signal_dbm0: V::level(m.signal_level),
            noise_dbm0: V::level(m.noise_level),
            r_factor: V::r(m.r_factor),
            mos_lq: V::mos(m.mos_lq),
            mos_cq: V::mos(m.mos_cq),
            jb_nominal_ms: m.jb_nominal_ms,
            jb_maximum_ms: m.jb_maximum_ms,
            jb_abs_max_ms: m.jb_abs_max_ms,
        }
    }
}

/// Live counters. Shards report their own (`shard: Some(i)`); the stream [`run`] forwards
/// carries the totals over all shards (`shard: None`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Progress {
    /// The shard that counted, or `None` for run totals.
    pub shard: Option<usize>,
    /// Endpoints registered (now or before).
    pub registered: u32,
    /// Endpoints in a call setup.
    pub calling: u32,
    /// Endpoints in a call.
    pub in_call: u32,
    /// Endpoints finished.
    pub done: u32,
    /// Endpoints finished with a failure outcome.
    pub failed: u32,
}

/// The run's totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Endpoints in the run.
    pub endpoints: u32,
    /// Per outcome.
    pub outcomes: HashMap<String, u32>,
    /// Calls placed.
    pub calls_attempted: u32,
    /// Calls placed and answered.
    pub calls_answered: u32,
    /// Answer-seizure ratio in percent (answered / attempted).
    pub asr: Option<f64>,
    /// Network effectiveness ratio in percent: attempts that got an answer or a user
    /// response (busy, rejected, no answer), i.e. not a network failure (ITU-T E.411).
    pub ner: Option<f64>,
    /// Call setup time percentiles (ms).
    pub setup_p50_ms: Option<f64>,
    /// 95th percentile.
    pub setup_p95_ms: Option<f64>,
    /// 99th percentile.
    pub setup_p99_ms: Option<f64>,
    /// Post-dial delay percentiles (ms).
    pub pdd_p50_ms: Option<f64>,
    /// 95th percentile.
    pub pdd_p95_ms: Option<f64>,
    /// 99th percentile.
    pub pdd_p99_ms: Option<f64>,
    /// Wall time of the run (ms).
    pub duration_ms: f64,
    /// Timer events handled later than 10 ms after their deadline: the generator itself
    /// was overloaded when this is not small.
    pub late_timers: u64,
    /// Timer events handled in all (the base of `late_timers`).
    pub timers_fired: u64,
    /// The worst lateness of a timer (ms).
    pub max_timer_lateness_ms: f64,
    /// Sends that failed at the socket.
    pub send_errors: u64,
    /// Messages dropped because a connection's send queue was full: the generator (or the
    /// connection) was overloaded when this is not zero.
    pub dropped_sends: u64,
    /// Connections re-established after a loss (TCP, TLS, WS, WSS).
    pub reconnects: u64,
    /// TCP, TLS, WS and WSS connections opened (connected) over the run, reconnects
    /// included: one per endpoint (two with an outbound proxy), or one per shard and
    /// server with `connections = "shared"`.
    pub connections_opened: u64,
    /// RFC 3263 §4.3: requests sent again to the next target after a timeout or a 503, and
    /// endpoints moved off a target the shard found dead.
    pub failovers: u64,
    /// RFC 5626 outbound (`outbound = true` on a registrar): flows in use, keep-alives and
    /// their answers, flow failures and recoveries; `None` when no registrar uses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundSummary>,
    /// The far end's `Reason` headers (RFC 3326) on BYE, CANCEL and error responses to our
    /// INVITEs, counted by protocol and cause over the endpoints, most frequent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_reasons: Vec<crate::reason::ReasonCount>,
    /// The most tokio tasks alive at once on one shard's runtime, sampled each second. It
    /// does not grow with endpoints or connections: they all live in the shard's loop and
    /// its poll sets, never in a task of their own.
    pub shard_tasks_max: usize,
    /// RTP send-timing jitter of the generator itself: how late RTP packets left against
    /// the time their pacing scheduled (actual send − scheduled), median, 99th percentile
    /// and worst, in ms, over every RTP packet of the run (`None` without media). Target:
    /// p99 ≤ 1 ms.
    pub send_jitter_p50_ms: Option<f64>,
    /// 99th percentile (see `send_jitter_p50_ms`).
    pub send_jitter_p99_ms: Option<f64>,
    /// Worst (see `send_jitter_p50_ms`).
    pub send_jitter_max_ms: Option<f64>,
    /// RTP packets whose send timing was measured.
    pub rtp_sends_timed: u64,
    /// RTP/RTCP sends that failed at the socket.
    pub media_send_errors: u64,
    /// The run was stopped on request (Ctrl-C, or a stop from the server) before it ended.
    pub stopped: bool,
    /// How the server was found (AUTO): the target used and the ones failed over.
    pub discovery: Vec<String>,
    /// Calls per second the run actually offered: INVITEs placed (first attempts and
    /// repeats) over the time from the first to the last one; `None` with fewer than two.
    pub offered_cps: Option<f64>,
    /// Calls whose media was measured (summed over endpoints, both ends of a call count).
    pub media_calls: u32,
    /// Of those, calls in which no RTP at all was received (no or one-way audio): not
    /// rated, so they count in none of the quality figures below.
    pub media_calls_without_audio: u32,
    /// Of those, calls that received RTP but had an audio gap (`MediaReport::calls_with_gaps`):
    /// not rated either.
    pub media_calls_with_gaps: u32,
    /// The longest audio gap of any call, s.
    pub media_gap_longest_s: Option<f64>,
    /// Mean MOS over endpoints with media that received audio.
    pub mos_avg: Option<f64>,
    /// The lowest per-second MOS of any endpoint.
    pub mos_min: Option<f64>,
    /// Mean jitter, ms.
    pub jitter_avg_ms: Option<f64>,
    /// Largest jitter, ms.
    pub jitter_max_ms: Option<f64>,
    /// Mean loss, percent.
    pub loss_avg_percent: Option<f64>,
    /// Mean RTT, ms.
    pub rtt_avg_ms: Option<f64>,
    /// Endpoints whose far end reported on their stream with RTCP XR VoIP Metrics blocks
    /// (RFC 3611 §4.7): the far end's view of what sipmeter sent.
    pub xr_endpoints: u32,
    /// Mean of those far ends' conversational MOS (MOS-CQ of each endpoint's last block).
    pub xr_mos_cq_avg: Option<f64>,
    /// The lowest of them.
    pub xr_mos_cq_min: Option<f64>,
    /// Call transfers (the `transfer` action), summed over the endpoints.
    pub transfers: TransferCounts,
    /// The same figures per group, in the test's order.
    pub groups: Vec<GroupSummary>,
}

/// One group's share of the run's figures ([`RunSummary`] over its endpoints only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupSummary {
    /// The group's name.
    pub name: String,
    /// Its endpoints.
    pub endpoints: u32,
    /// Per outcome.
    pub outcomes: HashMap<String, u32>,
    /// Calls its endpoints placed.
    pub calls_attempted: u32,
    /// Of those, answered.
    pub calls_answered: u32,
    /// Answer-seizure ratio, percent.
    pub asr: Option<f64>,
    /// Network effectiveness ratio, percent.
    pub ner: Option<f64>,
    /// Call setup time percentiles, ms.
    pub setup_p50_ms: Option<f64>,
    /// See `setup_p50_ms`.
    pub setup_p95_ms: Option<f64>,
    /// Mean MOS of its endpoints that received audio.
    pub mos_avg: Option<f64>,
    /// Its lowest per-second MOS.
    pub mos_min: Option<f64>,
    /// Mean jitter, ms.
    pub jitter_avg_ms: Option<f64>,
    /// Mean loss, percent.
    pub loss_avg_percent: Option<f64>,
    /// Mean RTT, ms.
    pub rtt_avg_ms: Option<f64>,
}

impl GroupSummary {
    /// The figures of group `name` among `reports`.
    fn of(name: &str, reports: &[EndpointReport]) -> Self {
        let mine = reports.iter().filter(|r| r.group == name);
        let s = summarise_some(mine.clone(), RunSummary::default());
        GroupSummary {
            name: name.to_owned(),
            endpoints: mine.count() as u32,
            outcomes: s.outcomes,
            calls_attempted: s.calls_attempted,
            calls_answered: s.calls_answered,
            asr: s.asr,
            ner: s.ner,
            setup_p50_ms: s.setup_p50_ms,
            setup_p95_ms: s.setup_p95_ms,
            mos_avg: s.mos_avg,
            mos_min: s.mos_min,
            jitter_avg_ms: s.jitter_avg_ms,
            loss_avg_percent: s.loss_avg_percent,
            rtt_avg_ms: s.rtt_avg_ms,
        }
    }
}

impl RunSummary {
    /// sipmeter itself fell behind: a SIP or media send failed at the socket or was dropped
    /// (a connection's queue was full), RTP left more than 1 ms late at the 99th percentile
    /// (the pacing target of issue #6), or more than 1 % of the timers fired over 10 ms late
    /// with the worst over 50 ms late. A few timers a little late on a busy machine shift
    /// call timings by milliseconds and are not overload; a generator that falls tens of
    /// milliseconds behind its schedule is.
    pub fn generator_overloaded(&self) -> bool {
        self.send_errors > 0
            || self.dropped_sends > 0
            || self.media_send_errors > 0
            || self.send_jitter_p99_ms.is_some_and(|p| p > 1.0)
            || (self.late_timers * 100 > self.timers_fired && self.max_timer_lateness_ms > 50.0)
    }
}

/// Stops a run early (Ctrl-C): endpoints hang up, un-register and report.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the run to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `plan` to completion on `plan.shards` threads, forwarding every event to `events`
/// (ending with [`RunEvent::Done`]). Blocks until done; returns the summary and the reports.
pub fn run(
    plan: RunPlan,
    events: mpsc::Sender<RunEvent>,
    stop: StopHandle,
) -> std::io::Result<(RunSummary, Vec<EndpointReport>)> {
    let targets = plan
        .servers()
        .map(|s| TargetList::single(s.addr, s.transport.kind))
        .collect();
    let proxies = configured_proxies(&plan);
    run_with_targets(plan, targets, proxies, events, stop)
}

/// Per server of [`RunPlan::servers`]: its outbound proxy as configured, one target (none
/// without a proxy); the runner replaces those given by name with what DNS found.
pub fn configured_proxies(plan: &RunPlan) -> Vec<TargetList> {
    plan.servers()
        .map(|s| TargetList {
            targets: s
                .outbound_proxy
                .iter()
                .flat_map(|(_, addr)| TargetList::single(*addr, s.transport.kind).targets)
                .collect(),
            start: 0,
        })
        .collect()
}

/// [`run`] with the targets DNS found in order (RFC 3263), one list per server of
/// [`RunPlan::servers`]: an endpoint whose REGISTER or initial INVITE meets a timeout or a
/// 503 moves to the next one of its server's ([`crate::failover`]). `proxies`: likewise
/// the targets of each server's outbound proxy (empty without one); an initial INVITE through
/// it that meets a timeout or a 503 moves to its next target (`engine/proxy_failover.rs`).
pub fn run_with_targets(
    mut plan: RunPlan,
    targets: Vec<TargetList>,
    proxies: Vec<TargetList>,
    events: mpsc::Sender<RunEvent>,
    stop: StopHandle,
) -> std::io::Result<(RunSummary, Vec<EndpointReport>)> {
    let started = Instant::now();
    let servers = 1 + plan.more_servers.len();
    if targets.len() != servers || proxies.len() != servers {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} target lists and {} proxy lists for {servers} servers",
                targets.len(),
                proxies.len()
            ),
        ));
    }
    if let Some(g) = plan.groups.iter().find(|g| g.server >= servers) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("group `{}` names server {} of {servers}", g.name, g.server),
        ));
    }
    // A group acting on what its calls hear watches sound (the defaults, unless it says how),
    // and listens for the tones and in-band digits its actions wait for.
    for g in &mut plan.groups {
        if let Some(m) = g.media.as_mut()
            && m.sound.is_none()
            && g.event_actions.iter().any(|a| a.on.hears())
        {
            m.sound = Some(media::sound::SoundConfig::default());
        }
        if let Some(m) = g.media.as_mut()
            && m.tones.is_none()
        {
            m.tones = events::tone_listen(&g.event_actions).map(std::sync::Arc::new);
        }
    }
    let shards = plan.shards.max(1);
    // Deal endpoints to shards round-robin, keeping each group's order.
    let mut assignments: Vec<Vec<(u32, usize, usize)>> = vec![Vec::new(); shards];
    let mut id = 0u32;
    for (g, group) in plan.groups.iter().enumerate() {
        for i in 0..group.endpoints.len() {
            assignments[id as usize % shards].push((id, g, i));
            id += 1;
        }
    }
    let total = id;
    let count = |pred: fn(&Role) -> bool| -> u32 {
        plan.groups
            .iter()
            .filter(|g| pred(&g.role))
            .map(|g| g.endpoints.len() as u32)
            .sum()
    };
    let shared = Arc::new(Shared {
        answerers: count(|r| matches!(r, Role::Answer { .. })),
        registered: AtomicU32::new(0),
        callers_left: AtomicU32::new(count(|r| matches!(r, Role::Call { .. }))),
        targets,
        proxies,
    });
    // Per server: how its endpoints connect (`None`: UDP).
    let mut streams = Vec::new();
    for server in plan.servers() {
        streams.push(match server.transport.kind {
            FlowKind::Udp => None,
            kind => {
                let t = &server.transport;
                let s = StreamSettings::new(
                    kind,
                    server.addr,
                    &server.domain,
                    &t.tls,
                    t.tls_name.as_deref(),
                    &t.ws_path,
                    t.keepalive,
                )
                .map_err(std::io::Error::other)?;
                // The outbound proxy's connection: the same transport and TLS settings; the
                // name verified (and SNI) is the proxy's host as `outbound_proxy` writes it.
                let proxy = match &server.outbound_proxy {
                    None => None,
                    Some((uri, addr)) => {
                        let host = match &uri.host {
                            Host::Name(n) => n.clone(),
                            Host::V4(a) => a.to_string(),
                            Host::V6(a) => a.to_string(),
                        };
                        let p = StreamSettings::new(
                            kind,
                            *addr,
                            &host,
                            &t.tls,
                            None,
                            &t.ws_path,
                            t.keepalive,
                        )
                        .map_err(|e| std::io::Error::other(format!("outbound proxy: {e}")))?;
                        Some(Arc::new(StreamSettings {
                            dscp: t.sip_dscp,
                            ..p
                        }))
                    }
                };
                if server.flow_via_proxy() {
                    // RFC 5626: the endpoint's one connection, its flow, is the proxy's.
                    proxy
                } else {
                    Some(Arc::new(StreamSettings {
                        dscp: t.sip_dscp,
                        proxy,
                        ..s
                    }))
                }
            }
        });
    }
    let streams = Arc::new(streams);
    if plan.groups.iter().any(|g| g.media.is_some()) {
        // Room in the descriptor table for every call's sockets before the shards run: it
        // stalled the shards for ms while calls started (see callmedia/fdtable.rs).
        // And the connections: one per endpoint over a stream transport, two with an
        // outbound proxy.
        let conns: usize = plan
            .groups
            .iter()
            .map(|g| {
                let per = streams[g.server]
                    .as_ref()
                    .map_or(0, |s| 1 + usize::from(s.proxy.is_some()));
                per * g.endpoints.len()
            })
            .sum();
        let _ = crate::callmedia::reserve_descriptors(3 * total as usize + conns + 256);
    }
    // No huge-page faults, with media or without (see callmedia/thp.rs): each zeroes 2 MB
    // of mimalloc's arenas at the first touch, mostly never used. Without media too: a
    // SIP-only run of 6,000 calls at 2,000/s peaked at 41–42 MB RSS with them and 21–24 MB
    // without, and `clear_page_erms` under huge-page faults was 7 % of its perf samples.
    // But first, when asked (SIPMETER_HEAP_MB), the run's heap written up front in huge pages
    // (see heap.rs): no page fault for it while the run is timed, and 2 MB pages for the TLB;
    // and nothing purged (which would split those pages) until the run has returned.
    let _hold = crate::heap::Hold::new();
    let asked = crate::heap::asked(|| {
        let endpoints = total as usize;
        let with_media: usize = (plan.groups.iter())
            .filter(|g| g.media.is_some())
            .map(|g| g.endpoints.len())
            .sum();
        // Calls in flight at once: the rate times a call's length (and 250 ms to set it up
        // and end it), at most one per endpoint; every endpoint at once with no rate cap.
        let in_flight = if plan.cps > 0.0 {
            let per_call = plan.call_duration.as_secs_f64() + 0.25;
            ((plan.cps * per_call).ceil() as usize).min(endpoints)
        } else {
            endpoints
        };
        crate::heap::estimate(endpoints, in_flight, with_media)
    });
    if let Some(bytes) = asked {
        let _ = crate::heap::prefault(bytes);
    }
    let _ = crate::callmedia::disable_huge_pages();
    let plan = Arc::new(plan);
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for (s, work) in assignments.into_iter().enumerate() {
        let plan = Arc::clone(&plan);
        let tx = tx.clone();
        let stop = stop.clone();
        let shared = Arc::clone(&shared);
        let streams = Arc::clone(&streams);
        handles.push(
            std::thread::Builder::new()
                .name(format!("shard-{s}"))
                .spawn(move || -> std::io::Result<ShardStats> {
                    // I/O and timers only: `enable_all` also stacks the signal and process
                    // drivers, which look for child processes to reap on every park.
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .enable_time()
                        .build()?;
                    rt.block_on(Shard::run(s, &plan, work, tx, stop, shared, &streams))
                })?,
        );
    }
    drop(tx);
    // The collector is not on the media clock: it does not preempt a shard (callmedia).
    let _background = plan.groups.iter().any(|g| g.media.is_some()).then(|| {
        crate::callmedia::background_thread("collector", crate::callmedia::BACKGROUND_NICE)
    });
    let mut reports = Vec::with_capacity(total as usize);
    let mut per_shard = vec![Progress::default(); shards];
    // Each shard reports every second; the totals go out once per round, not once per shard.
    let mut last_total: Option<Instant> = None;
    // Each message is one shard's batch of events (see `eventbuf`). What goes on to
    // `events` is sent once the whole batch has been looked at, back to back: sent as each
    // was handled (a report copied between two sends), every event found the consumer
    // parked again and woke it (a futex wake, its park and two context switches per event:
    // ~850 futex calls in a run of 6,000 calls at 2,000/s, three quarters of the process's).
    let mut out = Vec::new();
    for batch in rx {
        collect_batch(
            batch,
            &mut per_shard,
            &mut last_total,
            &mut reports,
            &mut out,
        );
        for ev in out.drain(..) {
            let _ = events.send(ev);
        }
    }
    let mut base = RunSummary {
        endpoints: total,
        ..RunSummary::default()
    };
    let mut first_err = None;
    let mut dials: (Option<Instant>, Option<Instant>, u64) = (None, None, 0);
    let mut timing = SendTiming::default();
    for h in handles {
        match h.join() {
            Ok(Ok(stats)) => {
                timing.merge(&stats.send_timing);
                base.late_timers += stats.late_timers;
                base.timers_fired += stats.timers_fired;
                base.max_timer_lateness_ms = base.max_timer_lateness_ms.max(stats.max_lateness_ms);
                base.send_errors += stats.send_errors;
                if let Some((first, last)) = stats.dial_window {
                    dials.0 = Some(dials.0.map_or(first, |t| t.min(first)));
                    dials.1 = Some(dials.1.map_or(last, |t| t.max(last)));
                }
                dials.2 += stats.dials;
                base.dropped_sends += stats.dropped_sends;
                base.reconnects += stats.reconnects;
                base.connections_opened += stats.connections_opened;
                base.failovers += stats.failovers;
                if plan.servers().any(|s| s.transport.outbound) {
                    base.outbound
                        .get_or_insert_with(OutboundSummary::default)
                        .add(&stats);
                }
                base.shard_tasks_max = base.shard_tasks_max.max(stats.tasks_max);
            }
            Ok(Err(e)) => first_err = Some(e),
            Err(_) => first_err = Some(std::io::Error::other("a shard panicked")),
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    base.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    base.stopped = stop.requested();
    if let (Some(first), Some(last), n) = dials
        && n >= 2
        && last > first
    {
        base.offered_cps = Some((n - 1) as f64 / (last - first).as_secs_f64());
    }
    base.send_jitter_p50_ms = timing.percentile_ms(50.0);
    base.send_jitter_p99_ms = timing.percentile_ms(99.0);
    base.send_jitter_max_ms = (timing.count > 0).then(|| timing.max_us as f64 / 1000.0);
    base.rtp_sends_timed = timing.count;
    reports.sort_by_key(|r| r.id);
    let mut summary = summarise(&reports, base);
    summary.groups = plan
        .groups
        .iter()
        .map(|g| GroupSummary::of(&g.name, &reports))
        .collect();
    summary.media_send_errors = reports
        .iter()
        .filter_map(|r| r.media.as_ref())
        .map(|m| m.send_errors)
        .sum();
    let _ = events.send(RunEvent::Done(Box::new(summary.clone())));
    Ok((summary, reports))
}

/// The collector's work on one shard's batch of events: progress summed over the shards
/// (at most one total a round), final reports kept; what goes on to the run's event stream
/// is put in `out`, in order.
fn collect_batch(
    batch: Vec<RunEvent>,
    per_shard: &mut [Progress],
    last_total: &mut Option<Instant>,
    reports: &mut Vec<EndpointReport>,
    out: &mut Vec<RunEvent>,
) {
    for ev in batch {
        match ev {
            RunEvent::Progress(p) => {
                let Some(i) = p.shard else { continue };
                per_shard[i] = p;
                if last_total.is_some_and(|t| t.elapsed() < Duration::from_millis(900)) {
                    continue;
                }
                *last_total = Some(Instant::now());
                let mut sum = Progress::default();
                for q in per_shard.iter() {
                    sum.registered += q.registered;
                    sum.calling += q.calling;
                    sum.in_call += q.in_call;
                    sum.done += q.done;
                    sum.failed += q.failed;
                }
                out.push(RunEvent::Progress(sum));
            }
            RunEvent::Finished(r) => {
                reports.push((*r).clone());
                out.push(RunEvent::Finished(r));
            }
            other => out.push(other),
        }
    }
}

/// Counters the shards share.
#[derive(Debug)]
struct Shared {
    /// Endpoints of answering groups.
    answerers: u32,
    /// Answerers that registered (or failed to): callers dial once all have.
    registered: AtomicU32,
    /// Callers not finished: answerers leave when none is left.
    callers_left: AtomicU32,
    /// Per server: the targets in DNS order; each shard keeps its own table of which are
    /// down.
    targets: Vec<TargetList>,
    /// Per server: its outbound proxy's targets (empty without one), likewise.
    proxies: Vec<TargetList>,
}

/// Folds endpoint reports into the summary figures.
pub fn summarise(reports: &[EndpointReport], base: RunSummary) -> RunSummary {
    summarise_some(reports.iter(), base)
}

/// [`summarise`] over some of the reports (a group's).
fn summarise_some<'a>(
    reports: impl Iterator<Item = &'a EndpointReport> + Clone,
    mut base: RunSummary,
) -> RunSummary {
    let mut setups: Vec<f64> = Vec::new();
    let mut pdds: Vec<f64> = Vec::new();
    let mut network_ok = 0u32;
    for r in reports.clone() {
        *base
            .outcomes
            .entry(r.outcome.name().to_owned())
            .or_default() += 1;
        base.calls_attempted += r.calls_attempted;
        base.calls_answered += r.calls_answered;
        if r.calls_attempted > 0 {
            network_ok += match r.call_result {
                Some(
                    CallResult::Answered
                    | CallResult::Busy
                    | CallResult::Rejected
                    | CallResult::Cancelled,
                ) => r.calls_attempted,
                _ => r.calls_answered,
            };
        }
        setups.extend(r.timings.call_setup_ms);
        pdds.extend(r.timings.post_dial_delay_ms);
        if let Some(t) = &r.transfer {
            base.transfers.add(t);
        }
    }
    if base.calls_attempted > 0 {
        base.asr = Some(100.0 * f64::from(base.calls_answered) / f64::from(base.calls_attempted));
        base.ner = Some(
            100.0 * f64::from(network_ok.min(base.calls_attempted))
                / f64::from(base.calls_attempted),
        );
    }
    base.peer_reasons = crate::reason::count(reports.clone().map(|r| r.peer_reasons.as_slice()));
    let all_media: Vec<&MediaReport> = reports.filter_map(|r| r.media.as_ref()).collect();
    let xr: Vec<PeerXr> = all_media.iter().filter_map(|m| m.peer_xr).collect();
    base.xr_endpoints = xr.len() as u32;
    let cq: Vec<f64> = xr.iter().filter_map(|x| x.mos_cq).collect();
    base.xr_mos_cq_avg = (!cq.is_empty()).then(|| cq.iter().sum::<f64>() / cq.len() as f64);
    base.xr_mos_cq_min = cq.iter().copied().reduce(f64::min);
    base.media_calls = all_media.iter().map(|m| m.calls).sum();
    base.media_calls_without_audio = all_media.iter().map(|m| m.calls_without_audio).sum();
    base.media_calls_with_gaps = all_media.iter().map(|m| m.calls_with_gaps).sum();
    base.media_gap_longest_s = all_media
        .iter()
        .filter_map(|m| m.gap_longest_s)
        .reduce(f64::max);
    // The quality figures are those of endpoints that received audio (see `MediaReport`).
    let media: Vec<&MediaReport> = all_media.into_iter().filter(|m| m.mos.is_some()).collect();
    if !media.is_empty() {
        let n = media.len() as f64;
        let mean = |f: fn(&MediaReport) -> f64| media.iter().map(|m| f(m)).sum::<f64>() / n;
        base.mos_avg = Some(mean(|m| m.mos.unwrap_or_default()));
        base.mos_min = media.iter().filter_map(|m| m.mos_min).reduce(f64::min);
        base.jitter_avg_ms = Some(mean(|m| m.jitter_ms));
        base.jitter_max_ms = media.iter().map(|m| m.jitter_max_ms).reduce(f64::max);
        base.loss_avg_percent = Some(mean(|m| m.loss_percent));
        let rtts: Vec<f64> = media.iter().filter_map(|m| m.rtt_ms).collect();
        base.rtt_avg_ms = (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64);
    }
    base.setup_p50_ms = percentile(&mut setups, 50.0);
    base.setup_p95_ms = percentile(&mut setups, 95.0);
    base.setup_p99_ms = percentile(&mut setups, 99.0);
    base.pdd_p50_ms = percentile(&mut pdds, 50.0);
    base.pdd_p95_ms = percentile(&mut pdds, 95.0);
    base.pdd_p99_ms = percentile(&mut pdds, 99.0);
    base
}

/// Nearest-rank percentile.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    Some(values[rank.min(values.len()) - 1])
}

#[derive(Debug, Default)]
struct ShardStats {
    late_timers: u64,
    timers_fired: u64,
    max_lateness_ms: f64,
    send_errors: u64,
    /// When this shard placed its first and its last INVITE.
    dial_window: Option<(Instant, Instant)>,
    /// INVITEs placed (new calls, not retransmissions or re-INVITEs).
    dials: u64,
    dropped_sends: u64,
    reconnects: u64,
    /// Connections opened (see [`RunSummary::connections_opened`]).
    connections_opened: u64,
    failovers: u64,
    /// The most tokio tasks alive at once on the shard's runtime (sampled each second).
    tasks_max: usize,
    /// How late RTP packets left against their pacing schedule.
    send_timing: SendTiming,
    /// RFC 5626 outbound counts.
    outbound: OutboundSummary,
}

impl ShardStats {
    /// A timer (SIP heap or media pacer) fired `lateness` after its deadline; over 10 ms
    /// counts as late.
    fn timer_fired(&mut self, lateness: Duration) {
        self.timers_fired += 1;
        if lateness > Duration::from_millis(10) {
            self.late_timers += 1;
        }
        self.max_lateness_ms = self.max_lateness_ms.max(ms(lateness));
    }
}

/// An endpoint's own connection to the server (TCP, TLS, WS, WSS).
#[derive(Debug, Default)]
struct Link {
    /// Counts connection attempts: events of an older one are stale.
    generation: u32,
    /// Our address on the connection, once connected.
    local: Option<SocketAddr>,
    /// Connected at least once: a later connection is a reconnect.
    was_up: bool,
    /// Failed reconnect attempts in a row (the backoff).
    failures: u32,
    /// What the endpoint was doing when the connection dropped, resumed once re-registered.
    resume: Option<(Script, Option<Instant>)>,
    /// A call was lost with the connection: after re-registering, go on as after a call.
    lost_call: bool,
    /// Un-registering (the endpoint is leaving): a lost connection is not reopened.
    leaving: bool,
    /// The target the connection goes to (RFC 3263 failover may change it).
    addr: Option<SocketAddr>,
    /// The second connection, to the outbound proxy (stream transports with one).
    proxy: Option<Box<proxy_link::ProxyLink>>,
}

/// Reconnect attempts in a row before the endpoint gives up (RFC 5626 §4.5 backoff).
const MAX_RECONNECT_FAILURES: u32 = 5;

/// Datagrams read from the shard's UDP socket in one turn of its loop, at most.
const UDP_DRAIN: usize = 64;

/// The wait before reconnect attempt `failures + 1`: 0.5 s doubling up to 30 s.
fn reconnect_backoff(failures: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(30))
}

/// How long an answerer in a call waits, once the run stops, for the caller's BYE before it
/// hangs up itself: 8 × T1 (4 s by default), time for the BYE and three retransmissions.
fn answerer_grace(t: &TimerConfig) -> Duration {
    t.t1.saturating_mul(8)
}

/// How long the stop may take before every endpoint still busy is ended without waiting:
/// the answerers' grace, then a BYE and an un-REGISTER that each run to their transaction
/// timeout (64 × T1), and a second to spare (69 s by default).
fn stop_grace(t: &TimerConfig) -> Duration {
    answerer_grace(t) + t.t1.saturating_mul(128) + Duration::from_secs(1)
}

/// What an endpoint does next on its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Waiting to start (ramp).
    Start,
    /// Waiting for the answering groups to register before dialling.
    WaitForAnswerers,
    /// Dial now (subject to the calls-per-second cap).
    Dial,
    /// Dial now: the slot was reserved under the cap.
    DialAt,
    /// Answer the incoming call now.
    Answer(CallId),
    /// The call's media is gathering its STUN/TURN candidates: the INVITE or the answer
    /// waits for them (woken by a server's answer, a retransmission or the limit).
    Gather(Deferred),
    /// Refuse the incoming call now with the group's `reject` code.
    Refuse(CallId),
    /// Cancel the call now if it is still unanswered (the group's `ring_timeout`).
    GiveUp,
    /// Cancel the call now if it is still unanswered: an action `hangup` on what was heard
    /// in early media (a SIT, a tone, in-band digits; `events::EventState::early_hangup`).
    EarlyHangup,
    /// Hang up now.
    HangUp(CallId),
    /// Answerers: poll until every caller of the run is done, then un-register.
    WaitCallersDone,
    /// Un-register now.
    Unregister,
    /// Open the connection again (after a loss).
    Connect,
    /// Nothing scheduled.
    Idle,
}

/// What waits for a call's gathering ([`Script::Gather`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferred {
    /// The caller's INVITE (with our offer, or none for a late offer).
    Invite,
    /// The callee's answer (its 2xx) to this call.
    Answer(CallId),
    /// The callee's answer to this call, due at this instant (its `answer_delay` after the
    /// INVITE): the gathering started at the INVITE, so it overlaps the ringing.
    AnswerAt(CallId, Instant),
}

#[derive(Debug)]
struct Endpoint {
    id: u32,
    group: usize,
    index: usize,
    ua: UserAgent,
    phase: Phase,
    outcome: Outcome,
    error: Option<String>,
    registration_code: Option<u16>,
    call_code: Option<u16>,
    call_result: Option<CallResult>,
    calls_attempted: u32,
    calls_received: u32,
    calls_answered: u32,
    /// RFC 4028 refreshes: ours answered 2xx, and the peer's ([`EndpointReport`]).
    refreshes: (u32, u32),
    timings: Timings,
    reg_sent: Option<Instant>,
    invite_sent: Option<Instant>,
    answered_at: Option<Instant>,
    script: Script,
    script_at: Option<Instant>,
    /// Answerers in a run without callers (calls come from outside): when to leave.
    leave_at: Option<Instant>,
    /// The call in progress: an endpoint is one phone line; a second incoming call gets 486.
    active_call: Option<CallId>,
    /// The first malformed message the server sent this endpoint, in words.
    malformed: Option<String>,
    /// The far end's `Reason` headers on what ended or refused its calls.
    reasons: crate::reason::PeerReasons,
    /// The next scenario action of the current call (index into the group's actions).
    next_action: usize,
    /// The current call's media. Boxed: a `CallMedia` is ~1.9 KB, and a run without media
    /// would otherwise touch that much of fresh memory per endpoint at start-up (one
    /// `Endpoint` per slot of a `Vec`; 3.2 KB → 1.3 KB per endpoint).
    media: Option<Box<CallMedia>>,
    /// The SDP offer of the incoming call being answered.
    offer: Option<Bytes>,
    /// Media of the calls already ended.
    media_report: Option<MediaReport>,
    /// Sum of the RTT averages (for the mean) and how many calls had one.
    rtt_sum: (f64, u32),
    samples: Vec<SampleRecord>,
    dtmf_sent: String,
    dtmf_received: String,
    /// The MESSAGEs it sent, once it sent one.
    messages: Option<Box<MessageCounts>>,
    /// Its call transfers, once it sent one.
    transfers: Option<Box<transfer::Transfers>>,
    /// Its actions on events, once a call of a group with some was answered.
    events: Option<Box<events::EventState>>,
    trace: Trace,
    /// The Call-ID of the current call (its route retires when the call ends).
    call_cid: Option<String>,
    done: bool,
    /// A refusal the group asked for (`reject`) was sent: its `Failed` is no failure.
    refusing: bool,
    /// Calls it refused as its group's `reject` asks.
    calls_refused: u32,
    /// The connection (stream transports).
    link: Link,
    /// Has its own UDP socket in the shard's poll set (`udp_socket = "per-endpoint"`).
    own_udp: bool,
    /// Its target and failover state (a call to send again is boxed: endpoints stay small).
    failover: EndpointFailover<Box<failover_glue::CallRetry>>,
    /// Its outbound proxy target, when the proxy has several (RFC 3263 by its name).
    proxy_failover: Option<Box<proxy_failover::ProxyFailover>>,
    /// Its RFC 5626 outbound flow, once registered with `outbound = true`.
    ob: Option<Box<outbound_flow::ObFlow>>,
}

impl Endpoint {
    fn set_phase(&mut self, phase: Phase, events: &EventSink) {
        if phase > self.phase {
            self.phase = phase;
            let _ = events.send(RunEvent::Phase {
                endpoint: self.id,
                phase,
            });
        }
    }

    /// An `srtp = "optional"` call whose media is plain (answered plain, or SRTP dropped by
    /// the peer) gives its user agent fresh keys for a peer that offers SRTP inside it.
    fn keep_spare_keys(&mut self, call: CallId) {
        if let Some(keys) = self.media.as_ref().and_then(|m| m.spare_keys()) {
            self.ua.keep_srtp_keys(call, keys);
        }
    }

    /// The media of its call (`consult` false) or of its attended transfer's consultation
    /// call (true).
    fn media_slot(&mut self, consult: bool) -> Option<&mut CallMedia> {
        if consult {
            self.consult_media()
        } else {
            self.media.as_deref_mut()
        }
    }

    /// Its media (the call's or the consultation call's) that `is` picks.
    fn media_where(&mut self, is: impl Fn(&CallMedia) -> bool) -> Option<&mut CallMedia> {
        if self.media.as_deref().is_some_and(&is) {
            return self.media.as_deref_mut();
        }
        if self.consult_media().is_some_and(|m| is(m)) {
            return self.consult_media();
        }
        // An INVITE with Replaces whose answer waits for its media's ICE gathering.
        self.replacing_media().filter(|m| is(m))
    }

    /// When its media (the call's and the consultation call's) must run next.
    fn next_media_at(&mut self) -> Option<Instant> {
        let call = self.media.as_deref().and_then(CallMedia::poll_timeout);
        let consult = self.consult_media().and_then(|m| m.poll_timeout());
        call.into_iter().chain(consult).min()
    }

    fn worsen(&mut self, outcome: Outcome, error: String) {
        if outcome.severity() > self.outcome.severity() {
            self.outcome = outcome;
            self.error = Some(error);
        } else if self.error.is_none() && outcome != Outcome::Success {
            self.error = Some(error);
        }
    }
}

struct Shard<'a> {
    index: usize,
    plan: &'a RunPlan,
    /// The shared SIP socket; out of the reactor while the loop coalesces (see `sipsock`).
    sock: SipSocket,
    /// Whether datagrams wake the loop or wait for its next quantum (see `sipsock`).
    coalesce: Coalescer,
    /// The last read of `sock` stopped at `UDP_DRAIN` with more waiting: look again at once.
    udp_more: bool,
    /// When the datagram being handled reached the socket (kernel stamp): what the
    /// endpoint's signalling timings count from. `None` outside `on_udp_readable`.
    rx_arrival: Option<Instant>,
    /// The far end's reasons (RFC 3326) on the message being handled, for the words of the
    /// call failure it causes (empty outside `on_message`).
    reasons_in_hand: Vec<String>,
    /// The endpoint and its call that was confirmed when the message or timeout being handled
    /// went into its user agent (`None` outside `on_message` and `on_timer`): a 481 or 408
    /// to our request inside that call, after which the call is `Terminating`, means the
    /// user agent ended it with BYE for that answer (RFC 3261 §12.2.1.2), not that we were
    /// hanging up already (see `dialog_gone`).
    confirmed_in_hand: Option<(usize, CallId)>,
    /// What this turn of the loop sends on `sock` (endpoint and trace time of each), written
    /// with one `sendmmsg` before the loop sleeps: see `udpbatch`.
    udp_out: SendQueue<(usize, Duration)>,
    /// Datagrams read from `sock` with one `recvmmsg`.
    udp_in: RecvBatch,
    /// Our address on `sock` as each server (site) sees it (Via, Contact, SDP): with
    /// servers of both address families the socket is dual-stack, one address each.
    locals: Vec<SocketAddr>,
    endpoints: Vec<Endpoint>,
    /// One agent profile per group, shared by the group's agents.
    profiles: Vec<Arc<UaProfile>>,
    by_user: FastMap<String, usize>,
    by_call_id: CallRoutes,
    /// The second endpoint of this shard on a Call-ID already routed to another: two of our
    /// endpoints calling each other over the shard's shared socket (or connection). Their
    /// requests are routed by Request-URI user; a response goes to the one whose client
    /// transaction it answers (`UserAgent::expects_response`).
    twins: CallRoutes,
    /// Each endpoint's next SIP wake-up (UA timers, script, actions): see `timerheap`.
    timers: TimerHeap,
    /// How many endpoints are done (`finish`): the loop ends when all are.
    done_count: usize,
    /// Batched: see `eventbuf`.
    events: EventSink,
    start: Instant,
    wall: SystemTime,
    stats: ShardStats,
    /// A stop (request or time limit) began: endpoints hang up and un-register.
    stopping: bool,
    shared: Arc<Shared>,
    /// Every media socket of the shard, in one epoll set.
    media: MediaDriver,
    /// Wakes the loop at its next deadline with µs precision (tokio's timers tick in ms).
    /// Only when some group has media: RTP pacing needs sub-ms wake-ups, SIP timers do
    /// not (tokio's ms timer is enough).
    timer: Option<PreciseTimer>,
    /// The last media batch was full: more sockets may be readable.
    media_pending: bool,
    /// Until when calls may be gathering ICE candidates ([`Self::gather_first`]): the media
    /// set, where their servers' answers arrive, is looked at at least every
    /// [`GATHER_READ_EVERY`] until then.
    gather_until: Option<Instant>,
    ports: PortAllocator,
    /// Counts calls with media (tells a call's datagrams from an earlier call's).
    media_generation: u64,
    /// Media deadlines (paced sends, samples), apart from the SIP timer heap.
    pacer: MediaPacer,
    /// Stall diagnostic of the loop (`SIPMETER_STALL_MS`; off by default).
    probe: LoopProbe,
    /// The next free slot under the calls-per-second cap.
    next_dial: Instant,
    /// Per server of [`RunPlan::servers`]: how its endpoints connect (`None`: UDP).
    streams: Vec<Option<Arc<StreamSettings>>>,
    /// The shard's TCP and TLS connections and own UDP sockets, in one poll set.
    net: NetPoll,
    /// Per server: its targets and which are down (RFC 3263 §4.3 failover).
    targets: Vec<TargetTable>,
    /// Per server: its outbound proxy's targets and which are down.
    proxy_targets: Vec<TargetTable>,
    /// Per server: the shard's shared connection (`connections = "shared"`), else `None`.
    shared_links: Vec<Option<shared_link::SharedLink>>,
    /// While a message from a shared connection is handled: its transport and our address
    /// on it (the trace's), as `rx_arrival` is for the UDP socket.
    rx_shared: Option<(FlowKind, SocketAddr)>,
}

/// The agent profile of group `g`: what its agents share.
fn ua_profile(plan: &RunPlan, g: usize) -> UaProfile {
    let server = plan.server_of(g);
    let kind = server.transport.kind;
    UaProfile {
        domain: server.domain.clone(),
        registrar_uri: server.registrar_uri.clone(),
        outbound_proxy: server.outbound_proxy.as_ref().map(|p| p.0.clone()),
        transport: kind.via_token().into(),
        // RFC 3261 §17.1.1.2: no retransmissions over a reliable transport.
        reliable: kind.reliable(),
        expires: plan.register_expires,
        timers: plan.timers,
        user_agent: plan.groups[g]
            .identity
            .user_agent
            .as_deref()
            .unwrap_or(concat!("sipmeter/", env!("CARGO_PKG_VERSION")))
            .into(),
        use_100rel: plan.groups[g].prack,
        session_timer: plan.groups[g].session_timer,
        // With media, offers inside a call are answered from every codec of the group
        // (RFC 3264 §6.1), not only the one a callee's first answer chose.
        codecs: plan.groups[g].media.as_ref().map(|m| m.codec_list()),
        // What an offer inside a call may do to the media's security.
        srtp: plan.groups[g]
            .media
            .as_ref()
            .map_or(SrtpPolicy::Off, |m| m.srtp.policy()),
        caller: plan.groups[g].identity.caller.clone(),
    }
}

/// The user agent of endpoint `i` of group `g` (sharing the group's `profile`), writing
/// `local` in Via and Contact.
fn new_ua(
    profile: &Arc<UaProfile>,
    plan: &RunPlan,
    g: usize,
    i: usize,
    local: SocketAddr,
    seed: u64,
) -> UserAgent {
    let ep_plan = &plan.groups[g].endpoints[i];
    let mut ua = UserAgent::with_profile(
        Arc::clone(profile),
        UaIdentity {
            user: ep_plan.user.clone(),
            credentials: ep_plan.credentials.clone(),
            local_host: Host::from(local.ip()),
            local_port: local.port(),
            seed,
        },
    );
    if plan.server_of(g).transport.outbound {
        // RFC 5626 §4.1: one instance ID per phone for the whole run (a reconnect's new
        // agent keeps it), from the run's seed, the group and the endpoint.
        let key = (g as u64) << 32 | i as u64;
        ua.enable_outbound(sip_proto::outbound::instance_urn(
            plan.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5626,
        ));
    }
    ua
}

fn sdp_offer(ip: IpAddr, port: u16, session: u64) -> Bytes {
    sdp(ip, port, session, 1, "sendrecv")
}

/// The digit of a SIP INFO DTMF body: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (`5`).
fn dtmf_of(content_type: Option<&str>, body: &[u8]) -> Option<char> {
    let ct = content_type?.split(';').next()?.trim();
    let text = std::str::from_utf8(body).ok()?;
    let value = if ct.eq_ignore_ascii_case("application/dtmf-relay") {
        text.lines()
            .find_map(|l| {
                l.split_once('=')
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case("signal"))
            })?
            .1
    } else if ct.eq_ignore_ascii_case("application/dtmf") {
        text
    } else {
        return None;
    };
    let mut chars = value.trim().chars();
    let d = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && matches!(d, '0'..='9' | '*' | '#' | 'A'..='D')).then_some(d)
}

/// Endpoint `idx`'s call, when it is confirmed (see `Shard::confirmed_in_hand`).
fn confirmed(idx: usize, ep: &Endpoint) -> Option<(usize, CallId)> {
    ep.active_call
        .filter(|&c| ep.ua.call_state(c) == Some(CallState::Confirmed))
        .map(|c| (idx, c))
}

fn classify(code: u16) -> CallResult {
    match code {
        200..=299 => CallResult::Answered,
        486 | 600 => CallResult::Busy,
        487 => CallResult::Cancelled,
        408 => CallResult::Timeout,
        480 | 503 => CallResult::Unavailable,
        400..=699 => CallResult::Rejected,
        _ => CallResult::Failed,
    }
}

/// A call whose media ran this long without one RTP packet received (while the far end
/// was to send) ends COMPLETED_WITH_WARNINGS: a peer sends its first packet within a
/// packet time of the answer, so two seconds of nothing is no or one-way audio, not a slow
/// start. The same rule as an audio gap in a call that did hear some (`media::gaps`).
const SILENT_CALL_MIN: Duration = media::gaps::AUDIO_GAP_MIN;

/// While media runs, the shard reads its RTCP sockets at least this often (arrival times
/// are the kernel's, so only the processing waits; RTP is read on each call's schedule).
const MEDIA_READ_EVERY: Duration = Duration::from_millis(20);
/// How often the media set is looked at while calls gather ICE candidates: a STUN or TURN
/// answer waits at most this long in the socket (the set does not wake the loop; its
/// arrival time is the kernel's, so the gathering's time does not include the wait).
const GATHER_READ_EVERY: Duration = Duration::from_millis(1);

/// The trace note of a hold or resume: `what`, or that it was not sent (the call was not
/// confirmed, or an offer was open: RFC 3264 §4).
fn offer_note(sent: bool, what: &str) -> String {
    if sent {
        what.to_owned()
    } else {
        format!("{what} not sent: the call is not confirmed or an offer is open (RFC 3264 §4)")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<'a> Shard<'a> {
    async fn run(
        index: usize,
        plan: &'a RunPlan,
        work: Vec<(u32, usize, usize)>,
        events: mpsc::Sender<Vec<RunEvent>>,
        stop: StopHandle,
        shared: Arc<Shared>,
        streams: &[Option<Arc<StreamSettings>>],
    ) -> std::io::Result<ShardStats> {
        // The shard's UDP socket faces the servers: on loopback when they all are, of one
        // family (the first one's address), else on every address of their family; servers
        // of both families share one dual-stack IPv6 socket (IPv4 peers are reached and
        // heard as IPv4: `bind_udp`, `udpbatch::source`).
        let (v4, v6) = (
            plan.servers().any(|s| s.addr.is_ipv4()),
            plan.servers().any(|s| s.addr.is_ipv6()),
        );
        let bind_ip: IpAddr = if v4 && v6 {
            IpAddr::from([0u16; 8])
        } else if plan.servers().all(|s| s.addr.ip().is_loopback()) {
            plan.server.addr.ip()
        } else if v4 {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        };
        let (sock, udp_note) = bind_udp(SocketAddr::new(bind_ip, 0), &plan.server.transport)?;
        if plan.server.transport.udp_recv_buffer.is_none() {
            // One socket for the whole shard's answers (see `sipsock::SHARED_RECV_BUFFER`).
            crate::sipsock::widen_recv_buffer(&sock);
        }
        // Arrival stamps for the signalling timings (see `sipsock`); without them the read
        // time is used, as before.
        let _ = crate::rxstamp::enable(&sock);
        let sock = SipSocket::new(sock)?;
        let bound = sock.local_addr()?;
        let locals = plan
            .servers()
            .map(|s| facing(bound, s.addr))
            .collect::<std::io::Result<Vec<_>>>()?;
        let start = Instant::now();
        crate::callmedia::shard_thread_setup(index, plan.shards);
        let media = MediaDriver::new()?;
        let targets = shared
            .targets
            .iter()
            .map(|t| TargetTable::new(t.clone(), start))
            .collect();
        let proxy_targets = shared
            .proxies
            .iter()
            .map(|t| TargetTable::new(t.clone(), start))
            .collect();
        let net = NetPoll::new()?;
        let mut shard = Shard {
            index,
            plan,
            sock,
            coalesce: Coalescer::new(crate::sipsock::quantum_for(
                plan.groups.iter().any(|g| g.media.is_some()),
            )),
            udp_more: false,
            rx_arrival: None,
            reasons_in_hand: Vec::new(),
            confirmed_in_hand: None,
            udp_out: SendQueue::default(),
            udp_in: RecvBatch::default(),
            locals,
            endpoints: Vec::with_capacity(work.len()),
            profiles: (0..plan.groups.len())
                .map(|g| Arc::new(ua_profile(plan, g)))
                .collect(),
            by_user: FastMap::default(),
            by_call_id: CallRoutes::default(),
            twins: CallRoutes::default(),
            timers: TimerHeap::with_capacity(work.len()),
            done_count: 0,
            events: EventSink::new(events),
            start,
            wall: SystemTime::now(),
            stats: ShardStats::default(),
            stopping: false,
            shared,
            media,
            timer: if plan.groups.iter().any(|g| g.media.is_some()) {
                Some(PreciseTimer::new(format!("shard-{index}-timer"))?)
            } else {
                None
            },
            media_pending: false,
            gather_until: None,
            ports: PortAllocator::new(plan.rtp_ports, index.wrapping_mul(997)),
            media_generation: 0,
            pacer: MediaPacer::default(),
            probe: LoopProbe::from_env(index),
            // Shards' cap slots interleave: shard i starts i/cps after shard 0.
            next_dial: start
                + if plan.cps > 0.0 {
                    Duration::from_secs_f64(index as f64 / plan.cps)
                } else {
                    Duration::ZERO
                },
            streams: streams.to_vec(),
            net,
            targets,
            proxy_targets,
            shared_links: Vec::new(),
            rx_shared: None,
        };
        // Answerers start first; callers follow at the ramp rate and dial once every
        // answerer of the run is registered (product.md: receivers register first).
        let mut order = work;
        order.sort_by_key(|&(id, g, _)| (!matches!(plan.groups[g].role, Role::Answer { .. }), id));
        for (n, (id, g, i)) in order.into_iter().enumerate() {
            let server = plan.server_of(g);
            let local = shard.locals[plan.groups[g].server];
            let per_endpoint =
                server.transport.kind == FlowKind::Udp && server.transport.udp_per_endpoint;
            let ep_plan = &plan.groups[g].endpoints[i];
            let seed = plan.seed ^ (u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // `udp_socket = "per-endpoint"`: the endpoint's own socket (servers that tell
            // phones apart by source port), in the shard's poll set like a connection.
            let mut link = Link::default();
            let mut notes = Vec::new();
            let (udp, local) = if per_endpoint {
                let (s, note) = bind_udp(SocketAddr::new(bind_ip, 0), &server.transport)?;
                let mut own = s.local_addr()?;
                own.set_ip(local.ip());
                link.local = Some(own);
                notes.push(format!(
                    "own UDP socket {own}{}",
                    note.map_or(String::new(), |n| format!(" ({n})"))
                ));
                (Some(s), own)
            } else {
                if let Some(n) = &udp_note {
                    notes.push(format!("shared UDP socket {local} ({n})"));
                }
                (None, local)
            };
            // Over a stream transport the agent is made again once connected, with the
            // connection's address in Via and Contact.
            let ua = new_ua(&shard.profiles[g], plan, g, i, local, seed);
            // The ramp is global: endpoint n of this shard of `shards` starts at its slot.
            let slot = if plan.ramp_per_sec > 0.0 {
                Duration::from_secs_f64((n * plan.shards.max(1) + index) as f64 / plan.ramp_per_sec)
            } else {
                Duration::ZERO
            };
            let idx = shard.endpoints.len();
            shard.by_user.insert(ep_plan.user.clone(), idx);
            shard.endpoints.push(Endpoint {
                id,
                group: g,
                index: i,
                ua,
                phase: Phase::Initializing,
                outcome: Outcome::Success,
                error: None,
                registration_code: None,
                call_code: None,
                call_result: None,
                calls_attempted: 0,
                calls_received: 0,
                calls_answered: 0,
                refreshes: (0, 0),
                timings: Timings::default(),
                reg_sent: None,
                invite_sent: None,
                answered_at: None,
                script: Script::Start,
                script_at: Some(start + slot),
                leave_at: None,
                active_call: None,
                malformed: None,
                reasons: Default::default(),
                trace: Trace::default(),
                call_cid: None,
                done: false,
                refusing: false,
                calls_refused: 0,
                next_action: 0,
                media: None,
                offer: None,
                media_report: None,
                rtt_sum: (0.0, 0),
                samples: Vec::new(),
                dtmf_sent: String::new(),
                dtmf_received: String::new(),
                messages: None,
                transfers: None,
                events: None,
                link,
                own_udp: udp.is_some(),
                failover: EndpointFailover::new(&shard.targets[plan.groups[g].server], start),
                proxy_failover: {
                    let proxy = &shard.proxy_targets[plan.groups[g].server];
                    (proxy.len() > 1).then(|| Box::new(EndpointFailover::new(proxy, start)))
                },
                ob: None,
            });
            for n in notes {
                shard.endpoints[idx]
                    .trace
                    .push(TraceEntry::note(n, Duration::ZERO));
            }
            if let Some(s) = udp {
                shard.net.add_udp(idx, s)?;
            }
            shard.schedule(idx);
        }
        // `connections = "shared"`: the shard's shared connections open before the first
        // endpoint starts.
        shard.open_shared_links(start);
        shard.event_loop(stop).await?;
        shard.stats.connections_opened = shard.net.opened_count();
        let flows = shard.net.flow_counts();
        shard.stats.outbound.keepalives_sent += flows.pings;
        shard.stats.outbound.pongs += flows.pongs;
        Ok(shard.stats)
    }

    /// When the current call's next scenario action is due, at a time or on an event (a
    /// hold or resume only while a new offer may go,
    /// [`sip_proto::ua::UserAgent::can_offer`]; none once the call is ending).
    fn next_action_at(&self, idx: usize) -> Option<Instant> {
        let ep = &self.endpoints[idx];
        let call = ep.active_call?;
        if !events::call_up(ep, call, self.stopping) {
            return None;
        }
        // RFC 3264 §4: no new offer while one is open. A hold or resume due while our previous
        // re-INVITE (or an offer received) waits for its answer goes once that answer came
        // (the response re-schedules the endpoint), not dropped.
        let may = |kind: &ActionKind| {
            !matches!(
                kind,
                ActionKind::Hold
                    | ActionKind::Resume
                    | ActionKind::Reinvite { .. }
                    | ActionKind::AttendedTransfer { .. }
            ) || ep.ua.can_offer(call)
        };
        let timed = self.plan.groups[ep.group]
            .actions
            .get(ep.next_action)
            .filter(|a| may(&a.kind))
            .and_then(|a| Some(ep.answered_at? + a.at));
        let on_event = self
            .next_event_step(idx)
            .filter(|(_, kind)| may(kind))
            .map(|(at, _)| at);
        timed.into_iter().chain(on_event).min()
    }

    /// Runs the current call's scenario actions that are due (at a time or on an event, the
    /// earlier first).
    fn run_actions(&mut self, idx: usize, now: Instant) {
        while let Some(at) = self.next_action_at(idx).filter(|&t| t <= now) {
            let plan = self.plan;
            let ip = self.local(idx).ip();
            let (kind, on) = match self.take_event_step(idx, at) {
                Some((kind, on)) => (kind, Some(on)),
                None => {
                    let ep = &mut self.endpoints[idx];
                    let Some(action) = plan.groups[ep.group].actions.get(ep.next_action) else {
                        return;
                    };
                    ep.next_action += 1;
                    (&action.kind, None)
                }
            };
            let ep = &mut self.endpoints[idx];
            let Some(call) = ep.active_call else { return };
            let version = ep.next_action as u64 + events::steps_run(ep) + 1;
            let note = match kind {
                ActionKind::Hold => {
                    let offer = match ep.media.as_mut() {
                        Some(m) => m.reoffer(now, media::sdp::Direction::SendOnly),
                        None => sdp(ip, 0, u64::from(ep.id), version, "sendonly"),
                    };
                    offer_note(
                        ep.ua.reinvite(now, call, offer),
                        "hold (re-INVITE a=sendonly)",
                    )
                }
                ActionKind::Resume => {
                    let offer = match ep.media.as_mut() {
                        Some(m) => m.reoffer(now, media::sdp::Direction::SendRecv),
                        None => sdp(ip, 0, u64::from(ep.id), version, "sendrecv"),
                    };
                    offer_note(
                        ep.ua.reinvite(now, call, offer),
                        "resume (re-INVITE a=sendrecv)",
                    )
                }
                ActionKind::Reinvite { codecs } => {
                    let offer = match ep.media.as_mut() {
                        Some(m) => m.new_offer(codecs.as_deref()),
                        None => sdp(ip, 0, u64::from(ep.id), version, "sendrecv"),
                    };
                    let what = match codecs {
                        Some(c) => format!(
                            "re-INVITE offering {}",
                            c.iter()
                                .map(|c| c.encoding_name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => "re-INVITE (the same session, a new version)".to_owned(),
                    };
                    offer_note(ep.ua.reinvite(now, call, offer), &what)
                }
                ActionKind::Dtmf {
                    digits,
                    duration_ms,
                } => {
                    let duration = Duration::from_millis(u64::from(*duration_ms));
                    let sent = match ep.media.as_mut() {
                        Some(m) => m.send_dtmf(digits, duration),
                        None => Err("no media in this call".to_owned()),
                    };
                    match sent {
                        Ok(()) => {
                            ep.dtmf_sent.push_str(digits);
                            format!("DTMF {digits} (RFC 4733)")
                        }
                        Err(e) => {
                            let note = format!("DTMF {digits} not sent: {e}");
                            ep.worsen(Outcome::CompletedWithWarnings, note.clone());
                            note
                        }
                    }
                }
                ActionKind::DtmfInfo { digit, duration_ms } => {
                    let body = format!("Signal={digit}\r\nDuration={duration_ms}\r\n");
                    ep.ua
                        .info(now, call, "application/dtmf-relay", Bytes::from(body));
                    ep.dtmf_sent.push(*digit);
                    format!("DTMF {digit} (INFO)")
                }
                ActionKind::Transfer { targets } => {
                    match targets.get(ep.index % targets.len().max(1)) {
                        Some(target) => ep.transfer(now, call, target).unwrap_or_else(|e| e),
                        None => "transfer not sent: no target".to_owned(),
                    }
                }
                ActionKind::AttendedTransfer { targets, consult } => {
                    match targets.get(ep.index % targets.len().max(1)) {
                        Some(target) => {
                            ep.attended_transfer(now, call, (target, *consult), ip, version)
                        }
                        None => "attended transfer not begun: no target".to_owned(),
                    }
                }
                ActionKind::Message { text } => {
                    let n = text.len();
                    if ep
                        .ua
                        .message(now, call, "text/plain", Bytes::from(text.clone()))
                    {
                        ep.messages.get_or_insert_with(Box::default).sent += 1;
                        format!("MESSAGE (text/plain, {n} bytes)")
                    } else {
                        "MESSAGE not sent: no dialog".to_owned()
                    }
                }
                ActionKind::Hangup => {
                    // As the call's end at its duration; an answerer's phase stays (its
                    // next call's actions go by it).
                    if ep.ua.is_outgoing(call) {
                        ep.set_phase(Phase::Disconnecting, &self.events);
                    }
                    ep.ua.hangup(now, call);
                    "hang-up (BYE)".to_owned()
                }
            };
            let note = match on {
                Some(on) => format!("action on {on}: {note}"),
                None => format!("action: {note}"),
            };
            ep.trace.push(TraceEntry::note(note, at - self.start));
        }
    }

    fn schedule(&mut self, idx: usize) {
        let action_at = self.next_action_at(idx);
        let silence_at = self.silence_due(idx);
        let ep = &mut self.endpoints[idx];
        let media_at = ep.next_media_at();
        let transfer_at = ep.transfers.as_deref().and_then(transfer::Transfers::due);
        let outbound_at = ep.ob.as_deref().and_then(outbound_flow::ObFlow::due);
        let next = [
            ep.ua.poll_timeout(),
            ep.script_at,
            action_at,
            transfer_at,
            silence_at,
            outbound_at,
        ]
        .into_iter()
        .flatten()
        .min();
        self.timers.set(idx, next);
        self.pacer.set(idx, media_at);
    }

    async fn event_loop(&mut self, stop: StopHandle) -> std::io::Result<()> {
        let deadline = self.start + self.plan.time_limit;
        let mut next_progress = self.start + Duration::from_secs(1);
        // Whether every endpoint is done is looked at every 5 ms, not on each of the loop's
        // (many thousand per second, with media) turns. It is a count (`done_count`), no
        // longer a scan of the slab (0.6 % of the shard at 4,000 endpoints).
        let mut next_done_check = self.start;
        // Lateness counts from the loop's start: the endpoints' first wake-ups fall due while
        // the shard is still being set up (thousands of agents made), which is no overload.
        let began = Instant::now();
        // When the stop (Ctrl-C or the time limit) began: the run ends at most
        // `stop_grace` later, whatever the server does.
        let mut stopped_at = None;
        // One sleep for the whole loop, moved only when the deadline moves: a new tokio
        // sleep per turn is a timer-wheel removal and insertion each time.
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(began));
        tokio::pin!(sleep);
        loop {
            self.probe.turn();
            // What the last wake's input made (answers, ACKs, retries) leaves before this
            // turn's timers and media pass.
            self.net.flush_queued();
            let now = Instant::now();
            if self.events.due().is_some_and(|t| t <= now) {
                let _ = self.events.flush();
            }
            self.probe.mark("flush", 0);
            if now >= next_done_check {
                if self.done_count == self.endpoints.len() {
                    self.net.flush_queued();
                    self.flush_udp_wait().await;
                    let _ = self.events.flush();
                    return Ok(());
                }
                next_done_check = now + Duration::from_millis(5);
            }
            if (stop.requested() || now >= deadline) && !self.stopping {
                self.stopping = true;
                stopped_at = Some(now);
                self.stop_all(now, now >= deadline);
            }
            if let Some(at) = stopped_at
                && now >= at + stop_grace(&self.plan.timers)
            {
                self.end_unfinished(now, now - at);
                // Every endpoint is done now: the next turn looks at once (not in 5 ms,
                // going round without sleeping meanwhile).
                next_done_check = now;
                continue;
            }
            if now >= next_progress {
                next_progress = now + Duration::from_secs(1);
                self.by_call_id.expire(now);
                self.twins.expire(now);
                self.progress();
                let tasks = tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks();
                self.stats.tasks_max = self.stats.tasks_max.max(tasks);
            }
            self.probe.mark("done/stop/progress", 0);
            // Fire due timers.
            let mut fired = 0;
            while let Some((idx, at)) = self.timers.pop_due(now) {
                // A coalescing wake's slack is not lateness (see `sipsock`).
                self.stats
                    .timer_fired(self.coalesce.lateness(now, at.max(began)));
                self.on_timer(idx, now);
                fired += 1;
            }
            self.probe.mark("sip timers", fired);
            if self.gather_until.is_some_and(|t| t < now) {
                self.gather_until = None;
            }
            let paced = if self.media_pending || self.pacer.active() || self.gather_until.is_some()
            {
                self.pace_media()
            } else {
                0
            };
            self.probe.paced(
                paced,
                &mut self.stats.send_timing,
                self.media.received,
                self.media.samples,
            );
            self.net.on_timeout(now);
            if self.net.pending() {
                self.on_net();
            }
            // Each connection's messages of this turn in one write; a connection that
            // failed then is news for the next turn, which comes at once (`pending`).
            self.net.flush_queued();
            self.probe.mark("net", 0);
            let next = self
                .timers
                .next_deadline()
                .unwrap_or(now + Duration::from_millis(200))
                .min(next_progress)
                .min(deadline.max(now))
                .min(self.events.due().unwrap_or(next_progress));
            let next = self.net.next_deadline().map_or(next, |t| t.min(next));
            // Every endpoint done: the loop ends at its next look (above), not at whatever
            // deadline comes next (up to the progress tick, a second: the run's end was
            // that much late whenever its last endpoint finished after the look).
            let next = if self.done_count == self.endpoints.len() {
                next.min(next_done_check)
            } else {
                next
            };
            let next = if self.udp_more { now } else { next };
            let next = self.plan_sip_sleep(now, next);
            let next = self.next_media_pass(now, next);
            // More media or connection news waiting: look again at once (after any timer
            // now due).
            let next = if self.media_pending || self.net.pending() {
                now
            } else {
                if let Some(t) = &mut self.timer {
                    t.arm(next);
                }
                next
            };
            // What this turn sent leaves now, before the loop sleeps: each connection's
            // messages in one write (above), the UDP datagrams in one sendmmsg.
            self.flush_udp_wait().await;
            self.probe.sleeping(next);
            let wake = tokio::time::Instant::from_std(next);
            if sleep.deadline() != wake {
                sleep.as_mut().reset(wake);
            }
            tokio::select! {
                r = self.sock.readable() => {
                    self.probe.woke();
                    let got = if r.is_ok() { self.on_udp_readable() } else { 0 };
                    self.probe.mark("sip rx", got);
                }
                r = self.net.readable() => {
                    self.probe.woke();
                    if r.is_ok() {
                        self.net.poll_ready(Instant::now());
                        self.on_net();
                    }
                    self.probe.mark("net rx", 0);
                }
                () = PreciseTimer::fired_if(self.timer.as_ref()) => self.probe.woke(),
                () = &mut sleep => self.probe.woke(),
            }
            // Coalescing: a disarmed source did not wake the loop; what waits in it is
            // read now.
            self.coalesce.woke(Instant::now());
            if !self.sock.is_armed() || self.udp_more {
                let got = self.on_udp_readable();
                self.probe.mark("sip rx (coalesced)", got);
            }
            if !self.net.is_armed() {
                self.net.poll_ready(Instant::now());
                self.on_net();
                self.probe.mark("net rx (coalesced)", 0);
            }
        }
    }

    /// The signalling sources' mode for the coming sleep, and when to wake (see `sipsock`):
    /// `next` is the loop's next deadline. A busy shard takes the sources that delivered
    /// lately (the SIP socket, the connections' poll set) out of the reactor and wakes after
    /// a quantum to read them; an idle one waits for them or `next`. A source quiet for a
    /// while stays armed (a TCP run's UDP socket is not read at every quantum).
    fn plan_sip_sleep(&mut self, now: Instant, next: Instant) -> Instant {
        let (_, wake) = self
            .coalesce
            .plan_sleep(now, next, self.timers.next_deadline());
        // Only if the reactor could not take a source (out of memory): read it every
        // millisecond instead, so nothing waits for ever.
        let mut wake = wake;
        if self.coalesce.coalesce_streams(now) {
            self.net.disarm();
        } else if self.net.arm().is_err() {
            wake = wake.min(now + Duration::from_millis(1));
        }
        if self.coalesce.coalesce_udp(now) {
            self.sock.disarm();
        } else if self.sock.arm().is_err() {
            self.coalesce.read_without_waking();
            wake = wake.min(now + Duration::from_millis(1));
        }
        wake
    }

    fn progress(&self) {
        let mut p = Progress {
            shard: Some(self.index),
            ..Progress::default()
        };
        for e in &self.endpoints {
            if e.phase >= Phase::Registered && e.registration_code == Some(200) {
                p.registered += 1;
            }
            match e.phase {
                Phase::Calling | Phase::Ringing | Phase::Negotiating => p.calling += 1,
                Phase::Incall => p.in_call += 1,
                _ => {}
            }
            if e.done {
                p.done += 1;
                if e.outcome.severity() >= 10 {
                    p.failed += 1;
                }
            }
        }
        let _ = self.events.send(RunEvent::Progress(p));
    }

    fn stop_all(&mut self, now: Instant, timed_out: bool) {
        for idx in 0..self.endpoints.len() {
            let ep = &mut self.endpoints[idx];
            if ep.done {
                continue;
            }
            if timed_out {
                ep.worsen(Outcome::Timeout, "the run's time limit was reached".into());
            }
            ep.hang_up_consult(now);
            let caller = matches!(self.plan.groups[ep.group].role, Role::Call { .. });
            match (ep.script, ep.active_call) {
                // A callee still gathering answers once it is done (as one that was to
                // answer now), then the caller's BYE ends the call.
                (
                    Script::HangUp(_)
                    | Script::Answer(_)
                    | Script::Refuse(_)
                    | Script::Gather(Deferred::Answer(_)),
                    _,
                ) => ep.script_at = Some(now),
                // Gathering beside the ringing: the answer goes once it is done (or at once
                // if the gathering has not started yet).
                (Script::Gather(Deferred::AnswerAt(call, _)), _) => {
                    ep.script = if ep.media.is_some() {
                        Script::Gather(Deferred::Answer(call))
                    } else {
                        Script::Answer(call)
                    };
                    ep.script_at = Some(now);
                }
                // Callers hang up (BYE, or CANCEL while it rings); answerers stay registered
                // until that BYE arrives, then un-register (see `after_call`).
                (_, Some(call)) if caller => {
                    ep.script = Script::HangUp(call);
                    ep.script_at = Some(now);
                }
                // ... but not forever: a BYE lost for good (or a caller that is not ours and
                // does not hang up) would keep the run alive. After the grace they hang up.
                (_, Some(call)) => {
                    ep.script = Script::HangUp(call);
                    ep.script_at = Some(now + answerer_grace(&self.plan.timers));
                }
                (_, None) => {
                    ep.script = Script::Unregister;
                    ep.script_at = Some(now);
                }
            }
            self.schedule(idx);
        }
    }

    /// The stop's last step: endpoints still busy `waited` after it (a BYE or un-REGISTER
    /// that got no final answer, a call the server keeps up) end now with TIMEOUT and say
    /// so in their trace; their media is measured up to now.
    fn end_unfinished(&mut self, now: Instant, waited: Duration) {
        for idx in 0..self.endpoints.len() {
            if self.endpoints[idx].done {
                continue;
            }
            self.end_media(idx, now);
            let at = now - self.start;
            let ep = &mut self.endpoints[idx];
            let doing = match ep.phase {
                Phase::Disconnecting => "its BYE, CANCEL or un-REGISTER has no final answer",
                Phase::Calling | Phase::Ringing | Phase::Negotiating | Phase::Incall => {
                    "its call is still up"
                }
                _ => "it has not finished",
            };
            let why = format!(
                "{doing} {:.1} s after the stop began: ended without waiting further",
                waited.as_secs_f64()
            );
            ep.trace.push(TraceEntry::note(why.clone(), at));
            ep.worsen(Outcome::Timeout, why);
            self.finish(idx);
        }
    }

    fn on_timer(&mut self, idx: usize, now: Instant) {
        {
            let ep = &mut self.endpoints[idx];
            if ep.ua.poll_timeout().is_some_and(|t| t <= now) {
                self.confirmed_in_hand = confirmed(idx, ep);
                ep.ua.handle_timeout(now);
            }
        }
        let due = self.endpoints[idx].script_at.is_some_and(|t| t <= now);
        if due {
            let script = {
                let ep = &mut self.endpoints[idx];
                ep.script_at = None;
                std::mem::replace(&mut ep.script, Script::Idle)
            };
            self.run_script(idx, now, script);
        }
        // A silence due with no packet since (nothing wakes the media pass for it).
        self.events_media(idx, now);
        self.run_actions(idx, now);
        self.run_attended(idx, now);
        self.run_replacing(idx, now);
        self.media_timeout(idx, now);
        self.outbound_timer(idx, now);
        self.pump(idx, now);
        self.confirmed_in_hand = None;
    }

    /// Reads the media sockets the set reports readable: each one's datagrams go straight
    /// into its call's session (a socket of an ended call is closed, so it has left the
    /// set). One batch per pass, so
    /// a flood of datagrams cannot starve the timers (senders); a full batch leaves
    /// `media_pending` set and the loop comes back without sleeping.
    fn on_media_ready(&mut self) {
        let n = self.media.poll_ready();
        // One clock read per pass for the notes and events below (not two per socket).
        let now = Instant::now();
        for i in 0..n {
            let Some(t) = self.media.token(i) else { break };
            if let Some(media) = self
                .endpoints
                .get_mut(t.endpoint)
                .and_then(|ep| ep.media_where(|m| t.is_for(m.generation())))
            {
                let (read, more) = media.receive(t.rtcp, &mut self.media.batch);
                self.media.received += read;
                if more {
                    media.rearm(t.rtcp, &self.media, t);
                }
                if media.gathering_done() {
                    // The servers answered: the INVITE or answer goes at once, not at the
                    // gathering's next retransmission.
                    let ep = &mut self.endpoints[t.endpoint];
                    let consult = ep.consult_gathered(now) | ep.replacing_gathered(now);
                    if matches!(ep.script, Script::Gather(_)) {
                        ep.script_at = Some(now);
                    }
                    if consult || matches!(ep.script, Script::Gather(_)) {
                        self.schedule(t.endpoint);
                    }
                }
                self.trace_ice(t.endpoint, now);
                self.events_media(t.endpoint, now);
            }
        }
        self.media_pending = MediaDriver::batch_full(n);
    }

    /// Hands the poll set's news (connections, own UDP sockets) to the endpoints; sockets
    /// left over from a full batch are moved on first.
    fn on_net(&mut self) {
        if self.net.more() {
            self.net.poll_ready(Instant::now());
        }
        // A close that came with messages waits for the loop's next turn: the timers those
        // messages made due (Timer K of a last BYE's answer) fire first, as they would had
        // the close come a moment later (a server that hangs up once it is done).
        let mut first = true;
        let mut got = 0;
        while let Some(m) = self.net.peek_event() {
            if !first && matches!(m.event, StreamEvent::Closed(_)) {
                break;
            }
            first = false;
            let Some(m) = self.net.next_event() else {
                break;
            };
            // As for the shared UDP socket: the state machines see the loop's time, the
            // timings the message's arrival (read later when the loop coalesced its wakes).
            let now = Instant::now();
            // Only traffic counts: a connection made, refused or closed says nothing of
            // what comes next, and the idle shard that made it should still wake at once
            // for the first answer.
            if matches!(m.event, StreamEvent::Message(_) | StreamEvent::Datagram(..)) {
                got += 1;
            }
            self.rx_arrival = m.arrived.map(|at| at.min(now));
            self.on_stream(now, m);
            self.rx_arrival = None;
        }
        // What came on the connections makes the next sleep a coalescing one, as datagrams do.
        self.coalesce.read_streams(got, Instant::now());
    }

    /// One media pass: first every call due by now sends its packets due (without the
    /// endpoint's SIP work); then, call by call, the sample due is taken and emitted and the
    /// RTP socket read if its read is due (on its send schedule, `CallMedia::read_due`);
    /// then the readable RTCP sockets (one batch). Arrival times are the kernel's, so
    /// reading after the sends changes no figure, and the sends no longer wait behind the
    /// reads, samples and event hand-overs of the calls before them: the last packet of a
    /// pass left after the whole pass (≈ 4 µs a call), now after its sends (docs/notes-rtpp99.md).
    /// Returns how many calls' media it ran.
    fn pace_media(&mut self) -> usize {
        let now = Instant::now();
        let mut due = std::mem::take(&mut self.media.due);
        while let Some((idx, at)) = self.pacer.pop_due(now) {
            // Counted as the timer heap counts its own (`late_timers`).
            self.stats.timer_fired(now.saturating_duration_since(at));
            for consult in [false, true] {
                if let Some(m) = self.endpoints[idx].media_slot(consult) {
                    m.send_due(now, &mut self.stats.send_timing);
                }
            }
            due.push(idx);
        }
        for &idx in &due {
            // The endpoint's call's media, then an attended transfer's consultation call's.
            for consult in [false, true] {
                let Some(m) = self.endpoints[idx].media_slot(consult) else {
                    continue;
                };
                if let Some(sample) = m.sample_due(now) {
                    self.media.samples += 1;
                    self.emit_sample(idx, now, &sample);
                }
                if let Some(m) = self.endpoints[idx].media_slot(consult) {
                    self.media.received += m.read_due(now, &mut self.media.batch);
                }
            }
            let at = self.endpoints[idx].next_media_at();
            self.pacer.set(idx, at);
            self.trace_ice(idx, now);
            self.events_media(idx, now);
        }
        let ran = due.len();
        due.clear();
        self.media.due = due;
        self.on_media_ready();
        ran
    }

    /// When the loop must make its next media pass: the earliest media deadline (RTP reads
    /// included), and while media runs at least every [`MEDIA_READ_EVERY`] (RTCP datagrams
    /// do not wake the loop).
    fn next_media_pass(&mut self, now: Instant, next: Instant) -> Instant {
        let next = match self.gather_until {
            Some(_) => next.min(now + GATHER_READ_EVERY),
            None => next,
        };
        if !self.pacer.active() {
            return next;
        }
        let next = next.min(now + MEDIA_READ_EVERY);
        self.pacer.next_deadline().map_or(next, |t| t.min(next))
    }

    /// Moves the trace lines of the endpoint's calls' ICE (state changes, the selected
    /// pair, failures) into its trace as they happen.
    fn trace_ice(&mut self, idx: usize, now: Instant) {
        let at = now.saturating_duration_since(self.start);
        for consult in [false, true] {
            let Some(m) = self.endpoints[idx].media_slot(consult) else {
                continue;
            };
            let notes = m.take_ice_notes();
            let failed = m.take_ice_failure();
            let ep = &mut self.endpoints[idx];
            for n in notes {
                ep.trace.push(TraceEntry::note(n, at));
            }
            // No media path (every pair failed, none could form, or consent lost): the call
            // is ended now rather than at its planned time.
            if let (Some(why), false, Some(call)) = (failed, consult, ep.active_call) {
                ep.trace
                    .push(TraceEntry::note(format!("{why}: ending the call"), at));
                ep.worsen(Outcome::NegotiationFailed, why);
                ep.ua.hangup(now, call);
                // The BYE goes now (sent, events handled, the endpoint rescheduled).
                self.pump(idx, now);
                return;
            }
        }
    }

    /// Sends the media that is due and emits the second's sample.
    fn media_timeout(&mut self, idx: usize, now: Instant) {
        for consult in [false, true] {
            let Some(media) = self.endpoints[idx].media_slot(consult) else {
                continue;
            };
            if media.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            if let Some(sample) = media.on_timeout(now, &mut self.stats.send_timing) {
                self.media.samples += 1;
                self.emit_sample(idx, now, &sample);
            }
        }
    }

    /// Streams one second of a call's media as [`RunEvent::Sample`] (and keeps it when asked).
    fn emit_sample(&mut self, idx: usize, now: Instant, sample: &media::session::Sample) {
        let ep = &mut self.endpoints[idx];
        let record = SampleRecord {
            endpoint: ep.id,
            call: ep.calls_attempted.max(ep.calls_received),
            t: ep.answered_at.map_or(0.0, |a| (now - a).as_secs_f64()),
            metrics: sample.metrics(),
        };
        if self.plan.keep_samples {
            ep.samples.push(record.clone());
        }
        let _ = self.events.send(RunEvent::Sample(Box::new(record)));
    }

    /// The call's media is gathering (ICE `stun_server`/`turn_server`): `then` waits for it
    /// (`true`), the shard goes on with its other endpoints meanwhile. The servers' answers
    /// come through the media set ([`Self::on_media_ready`]), the retransmissions and the
    /// limit through the endpoint's timer.
    fn gather_first(&mut self, idx: usize, now: Instant, then: Deferred) -> bool {
        let ep = &mut self.endpoints[idx];
        let Some(at) = ep
            .media
            .as_deref()
            .filter(|m| m.gathering())
            .map(|m| m.gathering_timeout().unwrap_or(now))
        else {
            return false;
        };
        ep.script = Script::Gather(then);
        ep.script_at = Some(at);
        // The gathering's records are the call's (dropped with it if it goes well).
        ep.trace.call_begins();
        let limit = crate::gather::GATHER_LIMIT;
        let note = match then {
            Deferred::Invite => format!(
                "ICE gathering started: the INVITE waits for the STUN/TURN servers (at most \
                 {limit:?})"
            ),
            Deferred::Answer(_) => format!(
                "ICE gathering started: the answer waits for the STUN/TURN servers (at most \
                 {limit:?})"
            ),
            Deferred::AnswerAt(_, due) => format!(
                "ICE gathering started at the INVITE, beside the ringing: the answer, due in \
                 {} ms, waits for the STUN/TURN servers if they take longer (at most {limit:?})",
                (due.saturating_duration_since(now).as_secs_f64() * 1000.0).round()
            ),
        };
        ep.trace.push(TraceEntry::note(note, now - self.start));
        self.gather_until = self
            .gather_until
            .max(Some(now + crate::gather::GATHER_LIMIT));
        true
    }

    /// The gathering's timer (a retransmission, the limit) or its last answer: once it is
    /// over, what waited for it goes (the INVITE, the answer) with the candidates it found.
    fn gather_step(&mut self, idx: usize, now: Instant, then: Deferred) {
        if let Deferred::AnswerAt(call, due) = then
            && self.endpoints[idx].media.is_none()
        {
            // The INVITE just came: the media is bound and its gathering starts now, the
            // answer at its time (or when the gathering ends, if that is later).
            if self.endpoints[idx].active_call != Some(call) {
                return;
            }
            if self.bind_media(idx).is_none() {
                self.endpoints[idx].ua.reject(now, call, 500);
                return;
            }
            if !self.gather_first(idx, now, then) {
                let ep = &mut self.endpoints[idx];
                ep.script = Script::Answer(call);
                ep.script_at = Some(due);
            }
            return;
        }
        let ep = &mut self.endpoints[idx];
        let Some(media) = ep.media.as_deref_mut() else {
            return;
        };
        if media.drive_gathering(now, &self.media).is_none() {
            ep.script = Script::Gather(then);
            ep.script_at = Some(media.gathering_timeout().unwrap_or(now));
            return;
        }
        let at = now - self.start;
        for n in media.take_ice_notes() {
            ep.trace.push(TraceEntry::note(n, at));
        }
        match then {
            Deferred::Invite => self.send_invite(idx, now),
            // The caller may have cancelled meanwhile (the call is gone).
            Deferred::Answer(call) if ep.active_call == Some(call) => {
                self.send_answer(idx, now, call)
            }
            Deferred::AnswerAt(call, due) if ep.active_call == Some(call) => {
                if now >= due {
                    self.send_answer(idx, now, call);
                } else {
                    ep.script = Script::Answer(call);
                    ep.script_at = Some(due);
                }
            }
            Deferred::Answer(_) | Deferred::AnswerAt(..) => {}
        }
    }

    /// Binds the next call's media; `None` (and an OSERROR outcome) when no ports are free.
    /// Its ICE gathering (STUN/TURN servers) goes on alongside the shard: the caller waits
    /// for it ([`Self::gather_first`], an attended transfer's `Step::Gathering`, an INVITE
    /// with Replaces' `Replacing`).
    fn bind_media(&mut self, idx: usize) -> Option<()> {
        let plan = self.plan;
        let ip = self.local(idx).ip();
        self.media_generation += 1;
        let generation = self.media_generation;
        let ep = &mut self.endpoints[idx];
        let mp = plan.groups[ep.group].media.as_ref()?;
        let session_id = u64::from(ep.id) << 20 | generation;
        match CallMedia::bind(
            ip,
            &mut self.ports,
            mp,
            session_id,
            idx,
            generation,
            &self.media,
            true,
        ) {
            Ok(m) => {
                ep.media = Some(Box::new(m));
                Some(())
            }
            Err(e) => {
                ep.worsen(Outcome::Oserror, format!("cannot bind RTP ports: {e}"));
                None
            }
        }
    }

    /// The call ended: RTCP BYE, and its figures folded into the endpoint's media report.
    fn end_media(&mut self, idx: usize, now: Instant) {
        self.events_unanswered_sounds(idx, now);
        let ep = &mut self.endpoints[idx];
        let Some(mut media) = ep.media.take() else {
            return;
        };
        let codec = media.codec();
        let srtp = media.srtp_suite();
        let ice = media.ice_summary();
        let ice_notes = media.take_ice_notes();
        let send_errors = media.send_errors;
        let stray = media.stray;
        let rx_dscp = media.rx_dscp;
        let receiving = media.receiving();
        let Some((sum, last)) = (*media).finish(now) else {
            return;
        };
        self.emit_sample(idx, now, &last);
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        for n in ice_notes {
            ep.trace.push(TraceEntry::note(n, at));
        }
        let ice_failed = ice
            .as_ref()
            .and_then(|i| i.failure((sum.duration >= SILENT_CALL_MIN).then_some(sum.duration)));
        if let Some(why) = ice_failed.clone() {
            ep.worsen(Outcome::NegotiationFailed, why);
        }
        if let Some(i) = &ice {
            let r = ep
                .media_report
                .get_or_insert_with(MediaReport::default)
                .ice
                .get_or_insert_with(IceReport::default);
            r.state = i.state;
            r.checks_sent += i.stats.checks_sent;
            r.checks_received += i.stats.checks_received;
            r.consent_failures += i.stats.consent_failures;
            r.media_not_sent += i.not_sent;
            r.failures += u32::from(ice_failed.is_some());
            r.fallbacks += u32::from(i.state == "fallback");
            if let Some(d) = i.gathered_in {
                let ms = d.as_secs_f64() * 1000.0;
                let n = f64::from(r.gathered);
                r.gathering_ms = Some((r.gathering_ms.unwrap_or(0.0) * n + ms) / (n + 1.0));
                r.gathering_max_ms = Some(r.gathering_max_ms.unwrap_or(0.0).max(ms));
                r.gathered += 1;
            }
            if let Some(d) = i.stats.connected_after {
                let ms = d.as_secs_f64() * 1000.0;
                let n = f64::from(r.connected);
                r.connected_ms = Some((r.connected_ms.unwrap_or(0.0) * n + ms) / (n + 1.0));
                r.connected_max_ms = Some(r.connected_max_ms.unwrap_or(0.0).max(ms));
                r.connected += 1;
            }
            if let Some((l, rem, kind)) = i.selected {
                r.selected_pair = Some(format!("{l} -> {rem}"));
                r.remote_candidate = Some(kind.name());
                r.local_candidate = i.local_kind.map(|k| k.name());
            }
            if let Some(a) = i.relayed {
                r.relayed = Some(a.to_string());
            }
            if let Some(e) = &i.turn_error {
                r.turn_failures += 1;
                r.turn_error = Some(e.clone());
            }
        }
        let silent = sum.rx_packets == 0 && receiving && sum.duration >= SILENT_CALL_MIN;
        if let (false, Some(gap)) = (silent, sum.gaps.longest) {
            let more = match sum.gaps.count {
                1 => String::new(),
                n => format!(" ({n} gaps, {:.1} s in all)", sum.gaps.total.as_secs_f64()),
            };
            ep.worsen(
                Outcome::CompletedWithWarnings,
                format!(
                    "{gap}{more}: the far end stopped sending while it was to send (one-way \
                     audio after a re-INVITE, a NAT or SBC binding that timed out, a media \
                     server that stopped; check its RTP and the last offer/answer)"
                ),
            );
        }
        if silent {
            ep.worsen(
                Outcome::CompletedWithWarnings,
                format!(
                    "no RTP received in {:.1} s of media ({} packets sent): no or one-way \
                     audio (check the far end's SDP c= address and port, NAT, firewalls)",
                    sum.duration.as_secs_f64(),
                    sum.tx_packets
                ),
            );
        }
        if sum.srtp_auth_failures + sum.srtp_replayed > 0 {
            ep.worsen(
                Outcome::CompletedWithWarnings,
                format!(
                    "{} SRTP/SRTCP packets failed authentication and {} were replays (RFC 3711 \
                     §3.3): dropped, not measured (a wrong or changed key, packets altered on \
                     the path, or a stream sent twice)",
                    sum.srtp_auth_failures, sum.srtp_replayed
                ),
            );
        }
        let dtls_failed = sum
            .dtls
            .as_ref()
            .and_then(|d| match (&d.failure, d.handshake) {
                (Some(why), _) => Some(format!("DTLS-SRTP: {why}")),
                (None, None) => Some(format!(
                    "DTLS-SRTP: the handshake did not end in the call's {:.1} s ({} DTLS datagrams \
                 sent, {} received): no keys, no media sent",
                    sum.duration.as_secs_f64(),
                    d.sent,
                    d.received
                )),
                (None, Some(_)) => None,
            });
        if let Some(why) = dtls_failed.clone() {
            ep.worsen(Outcome::NegotiationFailed, why);
        }
        let r = ep.media_report.get_or_insert_with(MediaReport::default);
        r.calls += 1;
        r.srtp = srtp;
        if let Some(d) = &sum.dtls {
            r.dtls = d.version;
            r.dtls_early += sum.dtls_early;
            if dtls_failed.is_some() {
                r.dtls_failures += 1;
            } else if let Some(hs) = d.handshake {
                let ms = hs.as_secs_f64() * 1000.0;
                let n = f64::from(r.calls.saturating_sub(r.dtls_failures + 1));
                r.dtls_handshake_ms =
                    Some((r.dtls_handshake_ms.unwrap_or(0.0) * n + ms) / (n + 1.0));
                r.dtls_handshake_max_ms = Some(r.dtls_handshake_max_ms.unwrap_or(0.0).max(ms));
            }
        }
        r.srtp_auth_failures += sum.srtp_auth_failures;
        r.srtp_replayed += sum.srtp_replayed;
        for d in (0..64u8).filter(|d| rx_dscp & (1 << d) != 0) {
            if let Err(at) = r.rx_dscp.binary_search(&d) {
                r.rx_dscp.insert(at, d);
            }
        }
        r.codec = codec;
        if let (Some(mos), Some(rf)) = (sum.mos, sum.r_factor) {
            let n = f64::from(r.calls - 1 - r.calls_without_audio - r.calls_with_gaps);
            let mean = |old: f64, new: f64| (old * n + new) / (n + 1.0);
            r.mos = Some(mean(r.mos.unwrap_or(0.0), mos));
            r.r_factor = Some(mean(r.r_factor.unwrap_or(0.0), rf));
            r.jitter_ms = mean(r.jitter_ms, sum.rx_jitter_ms);
        } else if sum.rx_packets == 0 {
            r.calls_without_audio += 1;
        } else {
            // Not rated because of its gaps (`CallMediaSummary::mos`).
            r.calls_with_gaps += 1;
        }
        if sum.rx_packets > 0 && sum.gaps.count > 0 {
            r.gaps += sum.gaps.count;
            r.gap_total_s += sum.gaps.total.as_secs_f64();
            let longest = sum.gaps.longest.map(|g| g.length().as_secs_f64());
            r.gap_longest_s = [r.gap_longest_s, longest]
                .into_iter()
                .flatten()
                .reduce(f64::max);
        }
        r.mos_min = [r.mos_min, sum.mos_min, sum.mos]
            .into_iter()
            .flatten()
            .reduce(f64::min);
        r.jitter_max_ms = r.jitter_max_ms.max(sum.rx_max_jitter_ms);
        r.tx_packets += sum.tx_packets;
        r.rx_packets += sum.rx_packets;
        r.rx_lost += sum.rx_lost;
        r.rx_duplicates += sum.rx_duplicates;
        r.rx_out_of_order += sum.rx_out_of_order;
        r.rx_jb_late += sum.rx_jb_late;
        r.dtmf_received.push_str(&sum.dtmf_received);
        ep.dtmf_received.push_str(&sum.dtmf_received);
        r.send_errors += send_errors;
        r.rx_stray += stray;
        r.xr_received += sum.xr_received;
        r.xr_rtts += sum.xr_rtts;
        if let Some(m) = sum.peer_xr {
            r.peer_xr = Some(m.into());
        }
        let expected = r.rx_packets as f64 + r.rx_lost.max(0) as f64;
        r.loss_percent = if expected > 0.0 {
            r.rx_lost.max(0) as f64 / expected * 100.0
        } else {
            0.0
        };
        if let Some(rtt) = sum.rtt_avg_ms {
            ep.rtt_sum.0 += rtt;
            ep.rtt_sum.1 += 1;
            r.rtt_ms = Some(ep.rtt_sum.0 / f64::from(ep.rtt_sum.1));
        }
    }

    fn run_script(&mut self, idx: usize, now: Instant, script: Script) {
        let events = self.events.clone();
        let site = self.site(idx);
        let ep = &mut self.endpoints[idx];
        match script {
            Script::Start | Script::Connect
                if self.streams[site].is_some() && ep.link.local.is_none() =>
            {
                self.connect(idx, now)
            }
            Script::Connect => {}
            Script::Start if !self.plan.groups[ep.group].register => self.ready(idx, now),
            Script::Start => {
                ep.reg_sent = Some(now);
                ep.ua.register(now);
            }
            Script::WaitForAnswerers => {
                let ready = self.shared.registered.load(Ordering::Relaxed) >= self.shared.answerers;
                ep.script = if ready {
                    Script::Dial
                } else {
                    Script::WaitForAnswerers
                };
                ep.script_at = Some(if ready {
                    now
                } else {
                    now + Duration::from_millis(20)
                });
            }
            Script::WaitCallersDone => {
                if self.shared.callers_left.load(Ordering::Relaxed) == 0 {
                    ep.script = Script::Unregister;
                    ep.script_at = Some(now);
                } else {
                    ep.script = Script::WaitCallersDone;
                    ep.script_at = Some(now + Duration::from_millis(100));
                }
            }
            Script::Dial => {
                // The calls-per-second cap: each shard takes its share of the rate.
                if self.plan.cps > 0.0 {
                    let interval =
                        Duration::from_secs_f64(self.plan.shards.max(1) as f64 / self.plan.cps);
                    let slot = self.next_dial.max(now);
                    self.next_dial = slot + interval;
                    if slot > now {
                        let ep = &mut self.endpoints[idx];
                        ep.script = Script::DialAt;
                        ep.script_at = Some(slot);
                        return;
                    }
                }
                self.dial(idx, now)
            }
            Script::DialAt => self.dial(idx, now),
            Script::Answer(call) => self.answer(idx, now, call),
            Script::Gather(then) => self.gather_step(idx, now, then),
            Script::Refuse(call) => {
                let code = self.plan.groups[ep.group]
                    .ringing
                    .reject
                    .map_or(486, |r| r.code);
                ep.refusing = true;
                ep.ua.reject(now, call, code);
            }
            Script::GiveUp => {
                if let Some(call) = ep.active_call.filter(|_| ep.answered_at.is_none()) {
                    let limit = self.plan.groups[ep.group].ringing.ring_timeout;
                    let why = format!(
                        "not answered within the ring_timeout ({}): cancelled",
                        limit.map_or_else(String::new, |d| format!("{d:?}"))
                    );
                    ep.trace
                        .push(TraceEntry::note(why.clone(), now - self.start));
                    ep.worsen(Outcome::CallFailed, why);
                    ep.set_phase(Phase::Disconnecting, &events);
                    ep.ua.hangup(now, call);
                }
            }
            Script::EarlyHangup => {
                let call = ep.active_call.filter(|_| ep.answered_at.is_none());
                if let (Some(call), Some(why)) = (call, self.take_early_hangup(idx)) {
                    let ep = &mut self.endpoints[idx];
                    ep.trace
                        .push(TraceEntry::note(why.clone(), now - self.start));
                    ep.worsen(Outcome::CallFailed, why);
                    ep.set_phase(Phase::Disconnecting, &events);
                    ep.ua.hangup(now, call);
                }
            }
            Script::HangUp(call) => {
                ep.set_phase(Phase::Disconnecting, &events);
                ep.ua.hangup(now, call);
            }
            Script::Unregister => {
                ep.set_phase(Phase::Disconnecting, &events);
                let connected = self.streams[site].is_none() || ep.link.local.is_some();
                ep.link.leaving = true;
                if ep.registration_code == Some(200) && connected {
                    ep.ua.unregister(now);
                } else {
                    self.finish(idx);
                }
            }
            Script::Idle => {}
        }
    }

    /// Answers the incoming call: with media, the SDP answer to the caller's offer (488 and
    /// NEGOTIATION_FAILED when nothing matches).
    /// With ICE servers the answer waits for the media's gathering ([`Self::gather_first`]).
    fn answer(&mut self, idx: usize, now: Instant, call: CallId) {
        let with_media = self.plan.groups[self.endpoints[idx].group].media.is_some();
        // Bound already when the gathering started at the INVITE (`Deferred::AnswerAt`).
        let bound = self.endpoints[idx].media.is_some();
        if with_media && !bound && self.bind_media(idx).is_none() {
            self.endpoints[idx].ua.reject(now, call, 500);
            return;
        }
        if self.gather_first(idx, now, Deferred::Answer(call)) {
            return;
        }
        self.send_answer(idx, now, call);
    }

    /// The answer itself, once the call's media is bound (and gathered).
    fn send_answer(&mut self, idx: usize, now: Instant, call: CallId) {
        let events = self.events.clone();
        let sdp_ip = self.local(idx).ip();
        let with_media = self.plan.groups[self.endpoints[idx].group].media.is_some();
        let offer = self.endpoints[idx].offer.take();
        let sdp = match offer {
            _ if !with_media => sdp_offer(sdp_ip, 0, u64::from(self.endpoints[idx].id)),
            // An INVITE without offer (RFC 3264 §4): our offer goes in the 2xx, the caller's
            // answer comes in the ACK (`Answered`) and starts the media.
            None => match self.endpoints[idx].media.as_deref() {
                Some(m) => m.offer(),
                None => return,
            },
            Some(offer) => {
                let ep = &mut self.endpoints[idx];
                let seed = self.plan.seed ^ u64::from(ep.id) ^ u64::from(ep.calls_received) << 32;
                let cname = format!("{}@sipmeter", ep.ua.user());
                let Some(media) = ep.media.as_mut() else {
                    return;
                };
                match media.answer(&offer, seed as u32, &cname, seed, now) {
                    Ok(answer) => answer,
                    Err(e) => {
                        ep.media = None;
                        // RFC 3261 §20.43 / RFC 3264 §6.1: 488 says why in a Warning
                        // (305: incompatible media format; the text a quoted string).
                        let warning = format!("305 sipmeter \"{}\"", e.replace(['"', '\\'], "'"));
                        ep.ua.reject_with_warning(now, call, 488, &warning);
                        ep.worsen(Outcome::NegotiationFailed, e);
                        return;
                    }
                }
            }
        };
        let ep = &mut self.endpoints[idx];
        ep.ua.answer(now, call, Some(sdp));
        ep.keep_spare_keys(call);
        ep.set_phase(Phase::Negotiating, &events);
    }

    fn dial(&mut self, idx: usize, now: Instant) {
        if self.dial_waits_for_proxy(idx, now) {
            return;
        }
        let plan = self.plan;
        let ep = &mut self.endpoints[idx];
        let Role::Call { targets, .. } = &plan.groups[ep.group].role else {
            return;
        };
        if targets.is_empty() {
            ep.worsen(Outcome::CallFailed, "no call target".into());
            ep.script = Script::Unregister;
            ep.script_at = Some(now);
            return;
        }
        if plan.groups[ep.group].media.is_some() {
            if self.bind_media(idx).is_none() {
                let ep = &mut self.endpoints[idx];
                ep.script = Script::Unregister;
                ep.script_at = Some(now);
                return;
            }
            if self.gather_first(idx, now, Deferred::Invite) {
                return;
            }
        }
        self.send_invite(idx, now);
    }

    /// The INVITE itself, once the call's media is bound (and gathered).
    fn send_invite(&mut self, idx: usize, now: Instant) {
        let plan = self.plan;
        let ep = &mut self.endpoints[idx];
        let Role::Call { targets, offer, .. } = &plan.groups[ep.group].role else {
            return;
        };
        let late = *offer == OfferTiming::Late;
        let target = targets[ep.index % targets.len()].clone();
        let id = u64::from(ep.id);
        let sdp = if plan.groups[ep.group].media.is_some() {
            match self.endpoints[idx].media.as_deref() {
                Some(m) => m.offer(),
                None => sdp_offer(self.local(idx).ip(), 0, id),
            }
        } else {
            sdp_offer(self.local(idx).ip(), 0, id)
        };
        self.stats.dials += 1;
        self.stats.dial_window = Some(self.stats.dial_window.map_or((now, now), |(f, _)| (f, now)));
        let ep = &mut self.endpoints[idx];
        ep.calls_attempted += 1;
        ep.failover.new_request();
        ep.invite_sent = Some(now);
        ep.answered_at = None;
        ep.set_phase(Phase::Calling, &self.events);
        ep.trace.call_begins();
        // A late offer: the INVITE goes without SDP; the media bound above answers the
        // callee's offer (`CallEvent::Offered`).
        let sdp = (!late).then_some(sdp);
        let call = ep.ua.call(now, target, sdp);
        ep.active_call = Some(call);
        if let Some(limit) = plan.groups[ep.group].ringing.ring_timeout {
            ep.script = Script::GiveUp;
            ep.script_at = Some(now + limit);
        }
        self.events_dialled(idx, call);
    }

    /// Which server of [`RunPlan::servers`] endpoint `idx` uses.
    fn site(&self, idx: usize) -> usize {
        self.plan.groups[self.endpoints[idx].group].server
    }

    /// Endpoint `idx`'s address on the shared UDP socket, as its server sees it.
    fn local(&self, idx: usize) -> SocketAddr {
        self.locals[self.site(idx)]
    }

    /// Our address on the shared UDP socket facing `peer` (its address family's).
    fn local_facing(&self, peer: SocketAddr) -> SocketAddr {
        self.locals
            .iter()
            .find(|l| l.is_ipv4() == peer.is_ipv4())
            .unwrap_or(&self.locals[0])
            .to_owned()
    }

    /// Sends what the endpoint queued, handles its events, reschedules it.
    fn pump(&mut self, idx: usize, now: Instant) {
        let site = self.site(idx);
        let server = self.plan.site_server(site);
        loop {
            let mut sent_any = false;
            while let Some(out) = self.endpoints[idx].ua.poll_transmit() {
                sent_any = true;
                let to = match &out.destination {
                    Destination::Registrar => self.registrar_addr(idx, &out.bytes),
                    Destination::OutboundProxy => match &server.outbound_proxy {
                        Some(p) => self.proxy_addr(idx, now, &out.bytes, p.1),
                        None => self.registrar_addr(idx, &out.bytes),
                    },
                    Destination::Source(a) => *a,
                    Destination::Uri(u) => uri_addr(u).unwrap_or(server.addr),
                };
                // Our own requests are indexed by Call-ID (responses route by it) with a scan
                // of the header lines we wrote, not a second parse. ACK, BYE and CANCEL carry
                // the Call-ID of an INVITE sent or received, whose route is there already (it
                // retires 64 × T1 after the call): no scan (two of the three requests of a
                // call; the scan was ~1.5 % of the process's user instructions).
                if !out.bytes.starts_with(b"SIP/2.0 ")
                    && !in_dialog_of_invite(&out.bytes)
                    && let Some(cid) = raw_call_id(&out.bytes)
                    && !self.by_call_id.contains(cid)
                {
                    self.by_call_id.insert(cid.to_owned(), idx);
                    if out.bytes.starts_with(b"INVITE ") {
                        self.call_route(idx, now, cid.to_owned());
                    }
                }
                let at = now - self.start;
                if let Some(stream) = &self.streams[site] {
                    // The endpoint's connection to the registrar carries every message,
                    // whatever its destination (the server reuses it towards us, RFC 5923
                    // style), but those for the outbound proxy, which has its own.
                    let leg = self.leg_for(idx, &out.destination);
                    let open = self.leg_local(idx, leg);
                    let proxy = self.proxy_conn_addr(idx);
                    // Its own connection's key in the poll set, or its shared one's.
                    let key = self.conn_key(idx);
                    let ep = &mut self.endpoints[idx];
                    let remote = match (leg, proxy) {
                        (Leg::Proxy, Some(p)) => p,
                        _ => ep.link.addr.unwrap_or(stream.addr),
                    };
                    ep.trace.message(
                        Direction::Sent,
                        stream.kind,
                        open.unwrap_or(self.locals[site]),
                        remote,
                        out.bytes.clone(),
                        at,
                        out.retransmission,
                    );
                    let first = || {
                        String::from_utf8_lossy(
                            out.bytes.split(|&b| b == b'\r').next().unwrap_or(b""),
                        )
                        .into_owned()
                    };
                    let sent = match open {
                        None => Err(false),
                        Some(_) => match self.net.send(key, leg, out.bytes.clone()) {
                            Sent::Queued => Ok(()),
                            Sent::Full => Err(true),
                            Sent::NotConnected => Err(false),
                        },
                    };
                    match sent {
                        Ok(()) => {}
                        Err(true) => {
                            self.stats.dropped_sends += 1;
                            ep.trace.push(TraceEntry::note(
                                format!("send queue full: {} dropped (the generator or the connection is overloaded)", first()),
                                at,
                            ));
                        }
                        Err(false) => ep.trace.push(TraceEntry::note(
                            format!("not connected: {} not sent", first()),
                            at,
                        )),
                    }
                    continue;
                }
                let own = self.endpoints[idx].own_udp;
                let ep = &mut self.endpoints[idx];
                ep.trace.message(
                    Direction::Sent,
                    FlowKind::Udp,
                    ep.link.local.unwrap_or(self.locals[site]),
                    to,
                    out.bytes.clone(),
                    at,
                    out.retransmission,
                );
                let sent = if own {
                    self.net.send_udp(idx, &out.bytes, to)
                } else {
                    // Queued for this turn's `sendmmsg`; a refusal is answered for then
                    // (`udp_send_failed`), a full buffer waits as a blocking send did.
                    if self.udp_out.push(out.bytes, to, (idx, at)) {
                        self.flush_udp();
                    }
                    Ok(true)
                };
                if let Ok(false) = sent {
                    // The own socket's buffer is full: a dropped send, as on a full queue.
                    self.stats.dropped_sends += 1;
                    self.endpoints[idx].trace.push(TraceEntry::note(
                        "UDP send buffer full: message dropped (the generator is overloaded)"
                            .into(),
                        at,
                    ));
                } else if let Err(e) = sent {
                    self.udp_send_failed(idx, to, at, &e);
                }
            }
            let mut got_any = false;
            while let Some(ev) = self.endpoints[idx].ua.poll_event() {
                got_any = true;
                self.on_event(idx, now, ev);
            }
            if !sent_any && !got_any {
                break;
            }
        }
        self.schedule(idx);
    }

    /// Registered (or, for a group that does not register, started): wait, dial or stay.
    fn ready(&mut self, idx: usize, now: Instant) {
        let plan = self.plan;
        let ep = &mut self.endpoints[idx];
        let role = &plan.groups[ep.group].role;
        if matches!(role, Role::Answer { .. }) {
            self.shared.registered.fetch_add(1, Ordering::Relaxed);
        }
        match role {
            Role::Call { .. } => {
                ep.script = Script::WaitForAnswerers;
                ep.script_at = Some(now);
            }
            Role::RegisterOnly => {
                ep.script = Script::Unregister;
                ep.script_at = Some(now + plan.call_duration);
            }
            Role::Answer { .. }
                if !plan
                    .groups
                    .iter()
                    .any(|g| matches!(g.role, Role::Call { .. })) =>
            {
                // Nobody in this run calls: calls come from outside (another tool, a
                // PBX); stay registered for the test's duration.
                ep.leave_at = Some(now + plan.call_duration);
                ep.script = Script::Unregister;
                ep.script_at = ep.leave_at;
            }
            Role::Answer { .. } => {
                ep.script = Script::WaitCallersDone;
                ep.script_at = Some(now + Duration::from_millis(100));
            }
        }
    }

    fn on_event(&mut self, idx: usize, now: Instant, ev: UaEvent) {
        // RFC 5626: is the flow in use, and how is it kept alive (failover or not).
        if let UaEvent::Registered { refresh, .. } = &ev
            && self.outbound_on(idx)
        {
            self.outbound_registered(idx, now, *refresh);
        }
        // RFC 3263 §4.3: a REGISTER that timed out or got a 503 moves to the next target.
        match &ev {
            UaEvent::RegistrationFailed { code, reason }
                if self.register_failed_over(idx, now, *code, reason) =>
            {
                return;
            }
            UaEvent::Registered { .. } if self.registered_after_failover(idx, now) => return,
            _ => {}
        }
        let plan = self.plan;
        let events = self.events.clone();
        let ep = &mut self.endpoints[idx];
        let role = &plan.groups[ep.group].role;
        match ev {
            UaEvent::Registered { refresh, .. } => {
                ep.registration_code = Some(200);
                if refresh {
                    return;
                }
                // (A first connect that failed over to another target is not a reconnect.)
                if ep.link.was_up && ep.link.generation > 1 && ep.timings.registration_ms.is_some()
                {
                    // Registered again over a new connection: carry on where the loss left.
                    let at = now - self.start;
                    ep.trace.push(TraceEntry::note(
                        "registered again after reconnecting".into(),
                        at,
                    ));
                    if std::mem::take(&mut ep.link.lost_call) {
                        self.after_call(idx, now);
                    } else if let Some((script, when)) = ep.link.resume.take() {
                        ep.script = script;
                        ep.script_at = when.map(|t| t.max(now));
                    }
                    return;
                }
                let heard = self.rx_arrival.unwrap_or(now);
                ep.timings.registration_ms =
                    ep.reg_sent.map(|t| ms(heard.saturating_duration_since(t)));
                ep.set_phase(Phase::Registered, &events);
                self.ready(idx, now);
            }
            UaEvent::RegistrationFailed { code, reason } => {
                ep.registration_code = Some(code);
                if matches!(role, Role::Answer { .. }) {
                    // Callers must not wait for an answerer that will never register.
                    self.shared.registered.fetch_add(1, Ordering::Relaxed);
                }
                let outcome = if code == 408 {
                    Outcome::Timeout
                } else {
                    Outcome::RegistrationFailed
                };
                ep.worsen(
                    outcome,
                    format!("REGISTER failed: {code} {reason}: {}", hint_for(code)),
                );
                self.finish(idx);
            }
            UaEvent::Unregistered { code } => {
                if !(200..300).contains(&code) {
                    ep.worsen(
                        Outcome::CompletedWithWarnings,
                        format!("un-REGISTER answered {code}"),
                    );
                }
                self.finish(idx);
            }
            UaEvent::Call(call, ce) => self.on_call_event(idx, now, call, ce),
            UaEvent::Retransmitted { method, count } => {
                let at = now - self.start;
                ep.trace.push(TraceEntry::note(
                    format!("{method} retransmitted ({count})"),
                    at,
                ));
            }
            UaEvent::TimerFired { timer, method } => {
                let at = now - self.start;
                ep.trace.push(TraceEntry::note(
                    format!("Timer {timer:?} fired ({method})"),
                    at,
                ));
            }
            UaEvent::Ignored { what } => {
                let at = now - self.start;
                ep.trace
                    .push(TraceEntry::note(format!("ignored: {what}"), at));
                ep.malformed.get_or_insert_with(|| what.to_owned());
            }
            // RFC 3428 pager mode: answered 200 by the user agent; an action on `message`
            // of the endpoint's call (if it has one up) fires.
            UaEvent::Message { content_type, body } => {
                let call = ep.active_call;
                self.events_message(idx, now, call, content_type.as_deref(), &body, false);
            }
        }
    }

    fn on_call_event(&mut self, idx: usize, now: Instant, call: CallId, ce: CallEvent) {
        if let CallEvent::Failed { code, reason } = &ce
            && self.call_failed_over(idx, now, call, *code, reason)
        {
            return;
        }
        let at = now - self.start;
        if self.on_attended_event(idx, now, call, &ce)
            || self.endpoints[idx].on_transfer_event(now, at, &ce)
            || self.on_referred_event(idx, now, call, &ce)
            || self.on_replacing_event(idx, now, call, &ce)
        {
            return;
        }
        if let CallEvent::Modified {
            method,
            code: code @ (408 | 481),
            ..
        } = &ce
        {
            self.dialog_gone(idx, now, call, method, *code);
        }
        let plan = self.plan;
        let events = self.events.clone();
        let local_ip = self.local(idx).ip();
        let ep = &mut self.endpoints[idx];
        // From the answer's arrival when it came over the shared UDP socket (see
        // `rx_arrival`), not from when the loop read it.
        let heard = self.rx_arrival.unwrap_or(now);
        let since_invite = |ep: &Endpoint| {
            ep.invite_sent
                .map(|t| ms(heard.saturating_duration_since(t)))
        };
        match ce {
            CallEvent::Incoming { .. } if ep.active_call.is_some_and(|c| c != call) => {
                // One line per phone: a second call while busy is refused (RFC 3261 §21.4.24).
                ep.ua.reject(now, call, 486);
                ep.ua.forget_call(call);
                let at = now - self.start;
                ep.trace.push(TraceEntry::note(
                    "second incoming call refused with 486 Busy Here".into(),
                    at,
                ));
            }
            CallEvent::Incoming { offer, .. } => {
                ep.offer = offer;
                ep.active_call = Some(call);
                ep.calls_received += 1;
                ep.set_phase(Phase::Calling, &events);
                ep.ua.ring(now, call);
                ep.set_phase(Phase::Ringing, &events);
                let delay = match &plan.groups[ep.group].role {
                    Role::Answer { answer_delay } => *answer_delay,
                    _ => Duration::ZERO,
                };
                let ringing = &plan.groups[ep.group].ringing;
                // The group's calls counted over its endpoints in turn: the refused ones
                // spread evenly.
                let nth = u64::from(ep.calls_received - 1)
                    * plan.groups[ep.group].endpoints.len() as u64
                    + ep.index as u64;
                if ringing.never_answer {
                    // Rings until the caller gives up (its CANCEL: `Failed` 487).
                    ep.script = Script::Idle;
                    ep.script_at = None;
                } else {
                    let refuse = ringing.reject.is_some_and(|r| r.refuses(nth));
                    // With STUN/TURN servers the gathering starts now, beside the ringing,
                    // rather than adding its time to the answer's delay.
                    let gathers = plan.groups[ep.group]
                        .media
                        .as_ref()
                        .is_some_and(|m| m.ice && m.ice_servers.any());
                    (ep.script, ep.script_at) = match (refuse, gathers) {
                        (true, _) => (Script::Refuse(call), Some(now + delay)),
                        (false, true) => (
                            Script::Gather(Deferred::AnswerAt(call, now + delay)),
                            Some(now),
                        ),
                        (false, false) => (Script::Answer(call), Some(now + delay)),
                    };
                }
            }
            CallEvent::Trying => {
                if ep.timings.time_to_100_ms.is_none() {
                    ep.timings.time_to_100_ms = since_invite(ep);
                }
            }
            CallEvent::Progress { code, sdp } => {
                if (180..=183).contains(&code) && ep.timings.time_to_180_ms.is_none() {
                    ep.timings.time_to_180_ms = since_invite(ep);
                    ep.timings.post_dial_delay_ms = since_invite(ep);
                }
                ep.set_phase(Phase::Ringing, &events);
                // Early media (RFC 3960 §2): the answer to our INVITE's offer in a 18x starts
                // the media before the call is answered (the far end's silence is no audio gap
                // until then, `CallMedia::early`). A 18x answer we cannot use is noted and the
                // media waits for the 2xx's.
                let offered = matches!(
                    plan.groups[ep.group].role,
                    Role::Call {
                        offer: OfferTiming::Early,
                        ..
                    }
                ) && ep.ua.is_outgoing(call);
                if let (Some(answer), Some(media), true) = (sdp, ep.media.as_mut(), offered)
                    && !media.started()
                {
                    let seed = plan.seed ^ u64::from(ep.id) ^ u64::from(ep.calls_attempted) << 32;
                    let cname = format!("{}@sipmeter", ep.ua.user());
                    let note = match media.apply_answer(&answer, seed as u32, &cname, seed, now) {
                        Ok(()) => {
                            media.early(now);
                            format!("early media: the {code}'s SDP answer starts the media")
                        }
                        Err(e) => format!("the {code}'s SDP is not used ({e}): the media waits for the answer"),
                    };
                    ep.trace.push(TraceEntry::note(note, now - self.start));
                }
            }
            CallEvent::Offered { sdp: offer } => {
                // Late offer: the callee's offer (in its 2xx or a reliable 1xx). Our answer,
                // a codec of our list in the callee's order (RFC 3264 §6.1), starts the media
                // and goes in the ACK (or the PRACK). Nothing in common: the offer's streams
                // rejected in the ACK, then BYE (RFC 3261 §13.2.2.4), or in the PRACK, then
                // CANCEL (RFC 3262 §5) — `hangup` does both — NEGOTIATION_FAILED.
                ep.set_phase(Phase::Negotiating, &events);
                let seed = plan.seed ^ u64::from(ep.id) ^ u64::from(ep.calls_attempted) << 32;
                let cname = format!("{}@sipmeter", ep.ua.user());
                let answer = match ep.media.as_mut() {
                    // A reliable 1xx's offer: not answered yet (a 2xx's is `Answered` next),
                    // so silence is no audio gap until then.
                    Some(media) if !media.started() => {
                        media.answer_late_offer(&offer, seed as u32, &cname, seed, now)
                    }
                    _ => Ok(sdp_offer(local_ip, 0, u64::from(ep.id))),
                };
                match answer {
                    Ok(answer) => {
                        ep.ua.answer_offer(now, call, answer);
                        ep.keep_spare_keys(call);
                    }
                    Err(e) => {
                        ep.media = None;
                        ep.worsen(
                            Outcome::NegotiationFailed,
                            format!("the callee's offer (late offer): {e}"),
                        );
                        ep.ua.hangup(now, call);
                    }
                }
            }
            CallEvent::Answered { sdp } => {
                // A call of ours (not an incoming one, an INVITE with Replaces included,
                // RFC 3891, on a calling endpoint): its answer counts and starts its hold.
                let placed = ep.invite_sent.is_some() && ep.ua.is_outgoing(call);
                ep.set_phase(Phase::Negotiating, &events);
                // The answer to our offer starts the media: the caller's offer in its INVITE
                // (the answer in the 2xx), or the callee's offer in its 2xx to an INVITE
                // without one (the answer in the ACK). Media answering an offer started
                // already (the callee's early offer, the caller's late one: `Offered`).
                let mut negotiation = Ok(());
                if let Some(media) = ep.media.as_mut()
                    && !media.started()
                {
                    let calls = ep.calls_attempted.max(ep.calls_received);
                    let seed = plan.seed ^ u64::from(ep.id) ^ u64::from(calls) << 32;
                    let cname = format!("{}@sipmeter", ep.ua.user());
                    let carrier = if placed {
                        "the 200 OK"
                    } else {
                        "the ACK"
                    };
                    negotiation = match &sdp {
                        Some(answer) => media.apply_answer(answer, seed as u32, &cname, seed, now),
                        None => Err(format!("{carrier} carried no SDP answer")),
                    };
                }
                if let Err(e) = negotiation {
                    ep.media = None;
                    ep.worsen(Outcome::NegotiationFailed, e);
                    ep.answered_at = Some(now);
                    ep.script = Script::HangUp(call);
                    ep.script_at = Some(now);
                    return;
                }
                ep.set_phase(Phase::Incall, &events);
                let early_rtp = ep.media.as_deref().and_then(CallMedia::early_rtp);
                if let Some(media) = ep.media.as_mut() {
                    media.answered(now);
                }
                if placed {
                    ep.calls_answered += 1;
                }
                ep.call_code = Some(200);
                ep.call_result = Some(CallResult::Answered);
                ep.answered_at = Some(now);
                ep.next_action = 0;
                if placed {
                    if ep.timings.call_setup_ms.is_none() {
                        ep.timings.call_setup_ms = since_invite(ep);
                    }
                    if ep.timings.post_dial_delay_ms.is_none() {
                        ep.timings.post_dial_delay_ms = since_invite(ep);
                    }
                    ep.script = Script::HangUp(call);
                    ep.script_at = Some(now + plan.call_duration);
                }
                self.events_answered(idx, now, call);
                if let Some(at) = early_rtp {
                    self.events_early_media(idx, now, call, at);
                }
            }
            CallEvent::Failed { code, reason }
                if matches!(plan.groups[ep.group].role, Role::Answer { .. })
                    && ep.active_call == Some(call)
                    && (std::mem::take(&mut ep.refusing) || code == 487) =>
            {
                // What the callee was told to do (`reject`), or the caller giving up on a
                // ringing phone (its CANCEL, or a BYE of the early dialog): the call's
                // result, not the callee's failure.
                ep.call_code = Some(code);
                ep.call_result = Some(classify(code));
                ep.calls_refused += u32::from(code != 487);
                let note = if code == 487 {
                    format!("the caller gave up before the answer ({reason})")
                } else {
                    format!("refused with {code} as the group's reject asks")
                };
                ep.trace.push(TraceEntry::note(note, now - self.start));
                ep.ua.forget_call(call);
                ep.active_call = None;
                self.end_media(idx, now);
                self.after_call(idx, now);
            }
            CallEvent::Failed { code, reason } => {
                ep.call_code = Some(code);
                ep.call_result = Some(classify(code));
                let outcome = if code == 408 {
                    Outcome::Timeout
                } else if code == 488 || code == 606 {
                    Outcome::NegotiationFailed
                } else {
                    Outcome::CallFailed
                };
                let far_reasons = if self.reasons_in_hand.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (the far end's Reason: {})",
                        self.reasons_in_hand.join(", ")
                    )
                };
                // A call we received failed on a final response of ours (the reason says which):
                // a hint about a server's response would mislead.
                let hint = if ep.ua.is_outgoing(call) {
                    hint_for(code)
                } else {
                    hint_for_incoming(code)
                };
                let why = format!("call failed: {code} {reason}: {hint}{far_reasons}");
                ep.worsen(outcome, why.clone());
                if ep.error.as_deref() != Some(why.as_str()) {
                    // The endpoint's error already names an earlier cause (our own give-up:
                    // a `ring_timeout`, a `hangup` in early media): the failure's own words go
                    // in the trace, or they are lost — a CANCEL that never got its 487 ends in
                    // a 408 saying so 64·T1 later (RFC 3261 §9.1). Without the code's hint,
                    // which is for the error (a 408's "unreachable" would mislead here).
                    ep.trace.push(TraceEntry::note(
                        format!("call failed: {code} {reason}{far_reasons}"),
                        now - self.start,
                    ));
                }
                ep.ua.forget_call(call);
                if ep.active_call == Some(call) {
                    ep.active_call = None;
                    self.end_media(idx, now);
                    self.after_call(idx, now);
                }
            }
            CallEvent::Ended { by_remote, code } => {
                if let Some(a) = ep.answered_at {
                    ep.timings.call_duration_ms.get_or_insert(ms(now - a));
                }
                ep.transfer_call_ended(now - self.start);
                if !by_remote && code != 0 && !(200..300).contains(&code) {
                    ep.worsen(
                        Outcome::TeardownError,
                        format!("BYE answered {code}: {}", hint_for(code)),
                    );
                }
                ep.ua.forget_call(call);
                if ep.active_call == Some(call) {
                    ep.active_call = None;
                    self.end_media(idx, now);
                    self.after_call(idx, now);
                }
            }
            CallEvent::Info { content_type, body } => {
                if let Some(d) = dtmf_of(content_type.as_deref(), &body) {
                    ep.dtmf_received.push(d);
                    self.events_digit(idx, now, call, d);
                }
            }
            CallEvent::Message { content_type, body } => {
                let t = content_type.as_deref();
                self.events_message(idx, now, Some(call), t, &body, true);
            }
            CallEvent::Modified {
                method: Method::Message,
                code,
                ..
            } => {
                let m = ep.messages.get_or_insert_with(Box::default);
                if (200..300).contains(&code) {
                    m.answered_2xx += 1;
                } else {
                    m.failed += 1;
                    ep.worsen(
                        Outcome::CompletedWithWarnings,
                        format!("MESSAGE in the call answered {code}: {}", hint_for(code)),
                    );
                }
            }
            CallEvent::Modified { method, code, .. } if code >= 300 => {
                ep.worsen(
                    Outcome::CompletedWithWarnings,
                    format!("{method} in the call answered {code}: {}", hint_for(code)),
                );
            }
            CallEvent::Modified {
                method: Method::Invite | Method::Update,
                sdp: Some(answer),
                ..
            } => {
                // The answer to our offer (hold, resume): the media follows it as it
                // follows an offer's (a moved address, another of our codecs, RFC 3264
                // §8.3); our offer is the user agent's description.
                let offer = ep.ua.local_sdp(call).cloned().unwrap_or_default();
                if let Some(m) = ep.media.as_mut() {
                    let followed = m.follow_remote_answer(now, &answer, &offer);
                    self.followed(idx, now, call, followed, "answer");
                }
            }
            CallEvent::OfferRefused {
                method, warning, ..
            } => {
                let codec = ep
                    .media
                    .as_ref()
                    .and_then(|m| m.codec())
                    .unwrap_or("our codecs");
                let why = if warning.starts_with("305 sipmeter \"Incompatible media format") {
                    format!(
                        "the peer's {method} offer inside the call lists none of our codecs: \
                         refused with 488, the call went on with {codec} (RFC 3264 §6.1)"
                    )
                } else {
                    let srtp = ep.media.as_ref().and_then(|m| m.srtp_suite());
                    format!(
                        "the peer's {method} offer inside the call was refused with 488 \
                         (Warning: {warning}): the call went on as it was, {} (RFC 3261 §14.2)",
                        srtp.map_or("plain RTP".to_owned(), |s| format!("SRTP {s}"))
                    )
                };
                ep.worsen(Outcome::CompletedWithWarnings, why);
            }
            CallEvent::Reinvited { sdp: Some(offer) } => {
                // The user agent answered already: a codec of the offer's (RFC 3264 §6.1);
                // the media follows that answer.
                let answer = ep.ua.local_sdp(call).cloned().unwrap_or_default();
                if let Some(m) = ep.media.as_mut() {
                    let followed = m.follow_remote_offer(now, &offer, &answer);
                    self.followed(idx, now, call, followed, "offer");
                }
                self.events_offer(idx, now, call, &offer);
            }
            CallEvent::OfferAnswered { sdp } => {
                // Our offer in the 2xx to the peer's re-INVITE without one, answered in its
                // ACK (RFC 3261 §14.2, §13.2.2.4).
                let offer = ep.ua.local_sdp(call).cloned().unwrap_or_default();
                match (sdp, ep.media.as_mut()) {
                    (Some(answer), Some(m)) => {
                        let followed = m.follow_remote_answer(now, &answer, &offer);
                        self.followed(idx, now, call, followed, "answer in its ACK");
                    }
                    (None, _) => ep.worsen(
                        Outcome::CompletedWithWarnings,
                        "the peer's ACK carried no answer to the offer in our 200 to its \
                         re-INVITE without one (RFC 3261 §13.2.2.4): the session stayed as it was"
                            .into(),
                    ),
                    _ => {}
                }
            }
            CallEvent::SessionRefreshed {
                by_us,
                interval,
                we_refresh,
            } => {
                let (count, who) = if by_us {
                    (&mut ep.refreshes.0, "our")
                } else {
                    (&mut ep.refreshes.1, "the peer's")
                };
                *count += 1;
                let next = if we_refresh { "we" } else { "the peer" };
                ep.trace.push(TraceEntry::note(
                    format!(
                        "session refreshed by {who} request (RFC 4028): interval {interval} s, \
                         {next} refresh next"
                    ),
                    now - self.start,
                ));
            }
            CallEvent::SessionTooShort { interval, min_se } => {
                let why = format!(
                    "the peer's 2xx set the session interval to {interval} s, below the Min-SE \
                     of {min_se} s our request carried (RFC 4028 §9 forbids it): followed, so \
                     the session is refreshed more often than agreed"
                );
                ep.trace.push(TraceEntry::note(why.clone(), now - self.start));
                ep.worsen(Outcome::CompletedWithWarnings, why);
            }
            CallEvent::SessionExpired { interval, code } => {
                // The session was lost in the middle of the call: the call failed (not a slow
                // answer, TIMEOUT), and the error says whose refresh was missing. A refresh
                // answered 481 or 408 is said here: its `Modified` adds nothing.
                self.confirmed_in_hand = None;
                let why = if code == 0 {
                    format!(
                        "the peer did not refresh the session (RFC 4028 §10): no re-INVITE or \
                         UPDATE within its {interval} s interval, so we ended the call with BYE"
                    )
                } else {
                    format!(
                        "our session refresh was answered {code}: {} (RFC 4028 §10: the \
                         session is lost, we ended the call with BYE)",
                        hint_for(code)
                    )
                };
                ep.trace
                    .push(TraceEntry::note(why.clone(), now - self.start));
                ep.worsen(Outcome::CallFailed, why);
            }
            CallEvent::Reinvited { .. }
            | CallEvent::Modified { .. }
            | CallEvent::Pracked { .. }
            // Taken by `on_transfer_event` above.
            | CallEvent::ReferAnswered { .. }
            | CallEvent::TransferProgress { .. }
            | CallEvent::TransferUnknown { .. }
            | CallEvent::Referred { .. } => {}
        }
    }

    /// Our request inside the confirmed call `call` (`method`) was answered 481 or 408, or
    /// not at all (408): RFC 3261 §12.2.1.2, the user agent ended the call with BYE. The peer
    /// cut the call short, so the call failed, and the error and the trace say which request
    /// was answered how (a BYE answered 481 next is no teardown error: the outcome stays).
    /// Not when the call was ending already (our BYE went first, the peer then refused the
    /// request): the `Modified` arm's warning is all.
    fn dialog_gone(&mut self, idx: usize, now: Instant, call: CallId, method: &Method, code: u16) {
        let ep = &mut self.endpoints[idx];
        if self.confirmed_in_hand != Some((idx, call))
            || ep.ua.call_state(call) != Some(CallState::Terminating)
        {
            return;
        }
        self.confirmed_in_hand = None;
        let request = match method {
            Method::Invite => "re-INVITE".to_owned(),
            m => m.to_string(),
        };
        let why = if code == 481 {
            format!(
                "our {request} in the call was answered 481: the peer no longer knows the call, \
                 so we ended it with BYE (RFC 3261 §12.2.1.2)"
            )
        } else {
            format!(
                "our {request} in the call got no answer in time (408): the peer is unreachable \
                 or lost the call, so we ended it with BYE (RFC 3261 §12.2.1.2)"
            )
        };
        ep.trace
            .push(TraceEntry::note(why.clone(), now - self.start));
        ep.worsen(Outcome::CallFailed, why);
    }

    /// Traces what the media of endpoint `idx` followed of the peer's `what` inside the call
    /// ([`Followed`]), and ends the endpoint COMPLETED_WITH_WARNINGS for what it could not.
    fn followed(&mut self, idx: usize, now: Instant, call: CallId, followed: Followed, what: &str) {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        if let Some(suite) = followed.srtp_dropped {
            ep.trace.push(TraceEntry::note(
                format!(
                    "SRTP dropped by the peer's {what}: plain RTP from now on, sent and \
                     received (was {suite}; srtp = \"optional\" follows it)"
                ),
                at,
            ));
            ep.media_report
                .get_or_insert_with(MediaReport::default)
                .srtp_dropped += 1;
        }
        if let Some(suite) = followed.srtp_taken {
            ep.trace.push(TraceEntry::note(
                format!(
                    "SRTP brought into the plain call by the peer's {what}: {suite}, taken \
                     (srtp = \"optional\", RFC 4568 §7.1.4)"
                ),
                at,
            ));
            ep.media_report
                .get_or_insert_with(MediaReport::default)
                .srtp_taken += 1;
        }
        if followed.srtp_dropped.is_some() {
            ep.keep_spare_keys(call);
        }
        if let Some(suite) = followed.srtp_refused {
            // RFC 3261 §13.2.2.4 (an answer the offerer cannot accept: a valid ACK, then
            // BYE): an answer cannot be refused, and plain RTP is what the group forbids.
            ep.worsen(
                Outcome::NegotiationFailed,
                format!(
                    "the peer's {what} inside the call dropped SRTP (no a=crypto), which the \
                     group requires (srtp = \"sdes\"; was {suite}): the call was ended with BYE"
                ),
            );
            ep.ua.hangup(now, call);
        }
        if let Some(to) = followed.moved_to {
            ep.trace.push(TraceEntry::note(
                format!("the peer's {what} moved the media: RTP now to {to}"),
                at,
            ));
        }
        if let Some(to) = followed.rtcp_to {
            ep.trace.push(TraceEntry::note(
                format!("the peer's {what} moved RTCP: now to {to}"),
                at,
            ));
        }
        if let Some((from, to)) = followed.codec {
            ep.trace.push(TraceEntry::note(
                format!("the peer's {what} changed the codec: {from} → {to} (RFC 3264 §8.3.2)"),
                at,
            ));
        }
        if let Some(suite) = followed.rekeyed {
            ep.trace.push(TraceEntry::note(
                format!(
                    "the peer's {what} brought new SRTP keys ({suite}): taken (RFC 4568 §7.1.4)"
                ),
                at,
            ));
        }
        if let Some(to) = followed.unreachable {
            ep.worsen(
                Outcome::CompletedWithWarnings,
                format!(
                    "the peer's {what} moved the media to {to}, of the other address family \
                     than our media socket's: not followed (no audio from there)"
                ),
            );
        }
        if followed.codec_missing {
            let codec = ep
                .media
                .as_ref()
                .and_then(|m| m.codec())
                .unwrap_or("our codec");
            ep.worsen(
                Outcome::CompletedWithWarnings,
                format!(
                    "the peer's {what} inside the call names none of the codecs we can run: \
                     kept {codec}"
                ),
            );
        }
    }

    /// `cid` is the Call-ID of endpoint `idx`'s new call: its route retires when the call
    /// ends (see `routes`); a call left without an end (a failover to a new Call-ID) retires
    /// now.
    fn call_route(&mut self, idx: usize, now: Instant, cid: String) {
        if let Some(old) = self.endpoints[idx].call_cid.replace(cid) {
            self.retire_route(old, now);
        }
    }

    /// A call's route (and its twin's, when two of our endpoints share its Call-ID) retires:
    /// it goes once its last transaction can have ended (64 × T1).
    fn retire_route(&mut self, cid: String, now: Instant) {
        let linger = self.plan.timers.t1.saturating_mul(64);
        if self.twins.contains(&cid) {
            self.twins.retire(cid.clone(), now, linger);
        }
        self.by_call_id.retire(cid, now, linger);
    }

    /// After a call: dial again, un-register, or (answerers) wait for the callers.
    fn after_call(&mut self, idx: usize, now: Instant) {
        if self.attended_holds_after_call(idx, now) {
            return;
        }
        let plan = self.plan;
        if let Some(cid) = self.endpoints[idx].call_cid.take() {
            self.retire_route(cid, now);
        }
        let ep = &mut self.endpoints[idx];
        // A call that ended well leaves no records behind (see `Trace`'s retention rule).
        ep.trace
            .call_ended(plan.keep_all_traces || ep.outcome != Outcome::Success);
        if self.stopping {
            ep.script = Script::Unregister;
            ep.script_at = Some(now);
            return;
        }
        match &plan.groups[ep.group].role {
            Role::Call { calls, pause, .. } if ep.calls_attempted < *calls => {
                ep.script = Script::Dial;
                ep.script_at = Some(now + *pause);
            }
            Role::Call { .. } => {
                ep.script = Script::Unregister;
                ep.script_at = Some(now);
            }
            Role::Answer { .. } => match ep.leave_at {
                Some(at) => {
                    ep.script = Script::Unregister;
                    ep.script_at = Some(at.max(now));
                }
                None => {
                    ep.script = Script::WaitCallersDone;
                    ep.script_at = Some(now + Duration::from_millis(100));
                }
            },
            Role::RegisterOnly => {}
        }
    }

    fn finish(&mut self, idx: usize) {
        // What the endpoint sent last leaves first, so a refusal still reaches its report.
        // Only then: an endpoint usually finishes on an answer, with nothing of its own
        // queued, and a flush for it broke the turn's batch in two (at 3,000/s with two
        // calls per endpoint that was a third of the `sendmmsg` calls).
        if self.udp_out.holds(|&(i, _)| i == idx) {
            self.flush_udp();
        }
        let events = self.events.clone();
        let keep = self.plan.keep_all_traces;
        let ep = &mut self.endpoints[idx];
        if ep.done {
            return;
        }
        ep.done = true;
        self.done_count += 1;
        self.net.close(idx, Leg::Server);
        self.net.close(idx, Leg::Proxy);
        if std::mem::take(&mut ep.own_udp) {
            self.net.remove_udp(idx);
        }
        if matches!(self.plan.groups[ep.group].role, Role::Call { .. }) {
            self.shared.callers_left.fetch_sub(1, Ordering::Relaxed);
        }
        ep.set_phase(Phase::Closed, &events);
        let failed = ep.outcome != Outcome::Success;
        if ep.outcome.severity() >= 10
            && let Some(m) = &ep.malformed
        {
            let e = ep.error.get_or_insert_with(String::new);
            e.push_str(&format!(" (the server sent a malformed message: {m})"));
        }
        let (tones_heard, dtmf_inband) = events::tones(ep);
        let report = EndpointReport {
            id: ep.id,
            group: self.plan.groups[ep.group].name.clone(),
            user: ep.ua.user().to_owned(),
            phase: ep.phase,
            outcome: ep.outcome,
            registration_code: ep.registration_code,
            call_code: ep.call_code,
            call_result: ep.call_result,
            calls_answered: ep.calls_answered,
            calls_attempted: ep.calls_attempted,
            calls_received: ep.calls_received,
            calls_refused: ep.calls_refused,
            session_refreshes_sent: ep.refreshes.0,
            session_refreshes_received: ep.refreshes.1,
            offer: match &self.plan.groups[ep.group].role {
                Role::Call { offer, .. } => Some(*offer),
                _ => None,
            },
            timings: ep.timings.clone(),
            error: ep.error.clone(),
            media: ep.media_report.take(),
            samples: std::mem::take(&mut ep.samples),
            dtmf_sent: std::mem::take(&mut ep.dtmf_sent),
            dtmf_received: std::mem::take(&mut ep.dtmf_received),
            event_actions: events::report(&self.plan.groups[ep.group].event_actions, ep),
            sound_heard: events::sounds(ep),
            tones_heard,
            dtmf_inband,
            messages: ep.messages.take().map(|m| *m),
            transfer: ep.transfers.take().map(|t| t.report),
            outbound: ep.ob.as_deref().map(|o| o.report(&ep.ua)),
            peer_reasons: std::mem::take(&mut ep.reasons).into_vec(),
            trace: if keep || failed {
                std::mem::take(&mut ep.trace).into_entries(self.wall)
            } else {
                Vec::new()
            },
        };
        ep.trace = Trace::default();
        let _ = events.send(RunEvent::Finished(Box::new(report)));
        self.left_shared_link(idx);
    }

    /// Writes what this turn queued on the shared UDP socket (see `udpbatch`) without
    /// waiting: true when all of it left; else the socket's buffer is full and the rest
    /// stays queued, in order, for `flush_udp_wait`.
    fn flush_udp(&mut self) -> bool {
        if self.udp_out.is_empty() {
            return true;
        }
        let sock = &self.sock;
        let mut refused = Vec::new();
        let r = self
            .udp_out
            .flush(|items| sock.send_batch(items), |o, e| refused.push((o, e)));
        for (o, e) in refused {
            let (idx, at) = o.tag;
            self.udp_send_failed(idx, o.to, at, &e);
        }
        r.is_ok()
    }

    /// Writes everything queued, waiting while the socket's buffer is full (as the one
    /// awaited `send_to` per message did).
    async fn flush_udp_wait(&mut self) {
        while !self.flush_udp() {
            if self.sock.writable().await.is_err() {
                break;
            }
        }
    }

    /// The kernel refused a message to `to` that endpoint `idx` sent at `at`: a send error,
    /// noted in its trace, and the endpoint ends with OSERROR.
    fn udp_send_failed(&mut self, idx: usize, to: SocketAddr, at: Duration, e: &std::io::Error) {
        self.stats.send_errors += 1;
        let ep = &mut self.endpoints[idx];
        ep.trace
            .push(TraceEntry::note(format!("send to {to} failed: {e}"), at));
        ep.worsen(Outcome::Oserror, format!("send failed: {e}"));
    }

    /// The shared UDP socket is readable: read what has arrived, a `recvmmsg` batch at a
    /// time, and handle each datagram in order. At most `UDP_DRAIN` per turn, so timers
    /// stay on time; a short batch means the socket was drained.
    /// Returns how many datagrams were handled.
    fn on_udp_readable(&mut self) -> usize {
        let mut left = UDP_DRAIN;
        let mut got = 0;
        let began = Instant::now();
        // The readiness was cleared when the wake was taken (`SipSocket::readable`), so
        // stopping short of drained must bring the loop back without sleeping.
        self.udp_more = true;
        while left > 0 {
            // A short batch drained the socket: that saves the `recvmmsg` that would only
            // learn it. A datagram arriving meanwhile is a new edge for the reactor (armed)
            // or waits for the next quantum (coalescing), so none is missed.
            let drained = match self.sock.recv_batch(&mut self.udp_in) {
                Ok(n) => n < udpbatch::RECV_BATCH,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => false,
                // ICMP errors on an unconnected UDP socket are not per endpoint: ignored.
                Err(_) => {
                    left -= 1;
                    continue;
                }
            };
            let n = self.udp_in.len();
            let now = Instant::now();
            for i in 0..n {
                let Some((bytes, Some(from))) = self
                    .udp_in
                    .datagram(i)
                    .map(|(d, from)| (Bytes::copy_from_slice(d), from))
                else {
                    continue;
                };
                // The state machines see the loop's time (never going back); the timings
                // the datagram's arrival (see `rx_arrival`).
                self.rx_arrival = self.udp_in.arrival(i).map(|at| at.min(now));
                self.on_datagram(now, bytes, from);
                self.rx_arrival = None;
                got += 1;
            }
            if drained {
                self.udp_more = false;
                break;
            }
            left = left.saturating_sub(n);
        }
        self.coalesce.read(got, began);
        got
    }

    fn on_datagram(&mut self, now: Instant, bytes: Bytes, from: SocketAddr) {
        self.on_message(now, bytes, from, None);
    }

    /// A message from the server: over the shard's UDP socket (`on`: `None`, routed by
    /// Request-URI user or Call-ID), or over endpoint `on`'s own connection.
    fn on_message(&mut self, now: Instant, bytes: Bytes, from: SocketAddr, on: Option<usize>) {
        // RFC 5626 §4.4.2: STUN shares the flow with SIP (told apart by its first bits).
        if sip_proto::stun::is_stun(&bytes) {
            return self.on_stun(now, &bytes, from, on);
        }
        let (kind, local) = match on {
            Some(i) => (
                self.plan.site_server(self.site(i)).transport.kind,
                match self.proxy_conn_addr(i) {
                    Some(p) if p == from => self.leg_local(i, Leg::Proxy),
                    _ => self.endpoints[i].link.local,
                }
                .unwrap_or(self.local(i)),
            ),
            None => self
                .rx_shared
                .unwrap_or_else(|| (FlowKind::Udp, self.local_facing(from))),
        };
        let msg = match Message::parse_bytes(bytes.clone()) {
            Ok(m) => m,
            Err(e) => {
                // Malformed input from the server under test: find the endpoint it was for
                // (by Call-ID text) and put the bytes and the error in its trace.
                if let Some(idx) = on.or_else(|| self.find_by_raw_call_id(&bytes)) {
                    let at = now - self.start;
                    let ep = &mut self.endpoints[idx];
                    ep.trace
                        .message(Direction::Received, kind, local, from, bytes, at, false);
                    ep.trace.push(TraceEntry::note(
                        format!("malformed message from {from}: {e}"),
                        at,
                    ));
                    ep.worsen(
                        Outcome::CompletedWithWarnings,
                        format!("received a malformed message: {e}"),
                    );
                    ep.malformed.get_or_insert_with(|| format!("{e}"));
                }
                return;
            }
        };
        // The Call-ID, read in place: `call_id()` is the same parse plus a copy, and was
        // made twice per message (here and for the check below), with a full owned Via.
        let cid = msg
            .headers
            .view::<CallIdRef>()
            .and_then(Result::ok)
            .map(|c| c.0);
        // A message missing what transactions need is the server's fault: say exactly what.
        // (`ViaRef` reads what `top_via()` reads, without the copy.)
        let broken = if msg
            .headers
            .view::<ViaRef>()
            .and_then(Result::ok)
            .and_then(|v| v.branch())
            .is_none()
            || msg.cseq().is_none()
            || cid.is_none()
        {
            let mut copy = msg.clone();
            copy.validate().err().map(|e| e.to_string())
        } else {
            None
        };
        let by_cid = |m: &CallRoutes| cid.and_then(|c| m.get(c));
        let by_user = match on {
            None if msg.is_request() => msg
                .request_uri()
                .as_deref()
                .and_then(Uri::as_sip)
                .and_then(SipUri::user_unescaped)
                .and_then(|u| self.by_user.get(&u).copied()),
            _ => None,
        };
        // Found by its Call-ID (most messages: every response): its route exists, no
        // second lookup for it below.
        let (idx, routed) = match on.or(by_user) {
            Some(i) => (Some(i), false),
            None => {
                let mut i = by_cid(&self.by_call_id);
                // A Call-ID two of our endpoints share: the response is for the one whose
                // transaction it answers.
                // (Checked only while there is a twin: no second lookup per response else.)
                if !self.twins.is_empty()
                    && let (Some(first), Some(twin)) = (i, by_cid(&self.twins))
                    && !msg.is_request()
                    && twin != first
                    && !self.endpoints[first].ua.expects_response(&msg)
                    && self.endpoints[twin].ua.expects_response(&msg)
                {
                    i = Some(twin);
                }
                (i, i.is_some())
            }
        };
        let Some(idx) = idx else { return };
        let mut new_call = false;
        if !routed
            && let Some(cid) = cid
            && !self.by_call_id.contains(cid)
        {
            new_call = msg.method() == Some(Method::Invite);
            // An INVITE with Replaces taking over the endpoint's call (RFC 3891 §3) is
            // the endpoint's call from now on: its route is the call's.
            let active = self.endpoints[idx].active_call;
            let replacing = new_call
                && active.is_some()
                && matches!(self.endpoints[idx].ua.replaced_by(&msg), Ok(Some(c)) if Some(c) == active);
            if new_call && active.is_some() && !replacing {
                // A second call while busy is refused (486): its route goes with its
                // transaction, the current call's stays.
                self.by_call_id
                    .retire(cid.to_owned(), now, self.plan.timers.t1.saturating_mul(64));
            } else if new_call {
                self.call_route(idx, now, cid.to_owned());
            }
            self.by_call_id.insert(cid.to_owned(), idx);
        } else if !routed
            && let Some(cid) = cid
            && msg.method() == Some(Method::Invite)
            && self.by_call_id.get(cid).is_some_and(|other| other != idx)
            && !self.twins.contains(cid)
        {
            // Our own endpoint's call to this one, over the same socket: see `twins`.
            self.twins.insert(cid.to_owned(), idx);
        }
        let at = now - self.start;
        self.note_retry_after(idx, &msg);
        let ep = &mut self.endpoints[idx];
        if new_call {
            // An incoming call's records begin with its INVITE.
            ep.trace.call_begins();
        }
        ep.trace
            .message(Direction::Received, kind, local, from, bytes, at, false);
        if let Some(why) = broken {
            ep.trace.push(TraceEntry::note(
                format!("malformed message from {from}: {why}"),
                at,
            ));
            ep.malformed.get_or_insert(why);
        }
        let noted = ep.reasons.note(&msg, at.as_secs_f64());
        for why in noted.unreadable {
            ep.trace.push(TraceEntry::note(why, at));
        }
        if ep.done {
            return;
        }
        self.confirmed_in_hand = confirmed(idx, ep);
        ep.ua.handle_message(now, msg, from);
        self.reasons_in_hand = noted.labels;
        self.pump(idx, now);
        self.reasons_in_hand.clear();
        self.confirmed_in_hand = None;
    }

    /// Opens endpoint `idx`'s connection (a new generation); it registers once connected.
    fn connect(&mut self, idx: usize, now: Instant) {
        let Some(settings) = self.streams[self.site(idx)].clone() else {
            return;
        };
        if self.join_shared_link(idx, now) {
            return;
        }
        let addr = self.stream_target(idx, now);
        let via_proxy = self.plan.site_server(self.site(idx)).flow_via_proxy();
        let ep = &mut self.endpoints[idx];
        ep.link.generation += 1;
        ep.link.local = None;
        ep.link.addr = Some(addr);
        ep.trace.push(TraceEntry::note(
            format!(
                "connecting over {} to {}{}{}",
                settings.kind.via_token(),
                if via_proxy { "the outbound proxy " } else { "" },
                addr,
                match (via_proxy, ep.link.was_up) {
                    (true, true) => " (the RFC 5626 flow) (reconnect)",
                    (true, false) => " (the RFC 5626 flow)",
                    (false, true) => " (reconnect)",
                    (false, false) => "",
                }
            ),
            now - self.start,
        ));
        self.net
            .connect_to(idx, Leg::Server, ep.link.generation, now, addr, settings);
        // Opened at start with the registrar's (a no-op while it is open or opening).
        self.connect_proxy(idx, now);
    }

    /// News from the shard's poll set: an endpoint's connection, or its own UDP socket.
    fn on_stream(&mut self, now: Instant, m: StreamIn) {
        if let StreamEvent::Datagram(bytes, from) = m.event {
            if self.endpoints.get(m.endpoint).is_some_and(|e| !e.done) {
                self.on_message(now, bytes, from, Some(m.endpoint));
            }
            return;
        }
        let idx = m.endpoint;
        if idx >= self.endpoints.len() {
            // Past the endpoints: a shared connection's key.
            return self.on_shared_stream(now, m);
        }
        if m.leg == Leg::Proxy {
            return self.on_proxy_stream(now, m);
        }
        let site = self.site(idx);
        let Some(settings) = self.streams[site].clone() else {
            return;
        };
        let plan = self.plan;
        let server = plan.site_server(site);
        let at = now - self.start;
        let stopping = self.stopping;
        let Some(ep) = self.endpoints.get_mut(idx) else {
            return;
        };
        if m.generation != ep.link.generation || ep.done {
            return; // an older connection, or an endpoint that finished
        }
        match m.event {
            StreamEvent::Connected { local, notes } => {
                for n in notes {
                    ep.trace.push(TraceEntry::note(n, at));
                }
                ep.link.local = Some(local);
                ep.link.failures = 0;
                let reconnect = ep.link.was_up;
                ep.link.was_up = true;
                if reconnect {
                    self.stats.reconnects += 1;
                }
                // Via and Contact carry the connection's address. After a reconnect the
                // agent is new (a fresh seed: a new registration Call-ID).
                let seed = plan.seed
                    ^ u64::from(ep.id).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ u64::from(ep.link.generation - 1) << 48;
                ep.ua = new_ua(
                    &self.profiles[ep.group],
                    plan,
                    ep.group,
                    ep.index,
                    local,
                    seed,
                );
                if let Some(p) = ep.link.proxy.as_ref().and_then(|p| p.local) {
                    ep.ua
                        .set_proxy_local(Some((proxy_link::host_of(p), p.port())));
                }
                if stopping && reconnect {
                    self.finish(idx);
                    return;
                }
                if reconnect && !plan.groups[ep.group].register {
                    // Nothing to register again: carry on where the loss left.
                    if std::mem::take(&mut ep.link.lost_call) {
                        self.after_call(idx, now);
                    } else if let Some((script, when)) = ep.link.resume.take() {
                        ep.script = script;
                        ep.script_at = when.map(|t| t.max(now));
                    }
                    self.schedule(idx);
                    return;
                }
                ep.script = Script::Start;
                ep.script_at = Some(now);
                self.schedule(idx);
            }
            StreamEvent::Failed {
                error,
                hint,
                after_tcp,
            } => {
                let addr = ep.link.addr.unwrap_or(settings.addr);
                ep.trace.push(TraceEntry::note(
                    format!(
                        "{} connection to {addr} failed: {error}",
                        settings.kind.via_token(),
                    ),
                    at,
                ));
                // RFC 3263 §4.3: a connect that fails (not a TLS or WebSocket refusal, a
                // configuration error) moves to the next target.
                if !after_tcp && self.connect_failed_over(idx, now, &error) {
                    return;
                }
                let ep = &mut self.endpoints[idx];
                if ep.link.was_up
                    && server.transport.reconnect
                    && !stopping
                    && ep.link.failures < MAX_RECONNECT_FAILURES
                {
                    let failures = ep.link.failures;
                    // RFC 5626 §4.5: an outbound phone waits 30 s doubling (random 50-100 %).
                    let wait = if server.transport.outbound {
                        self.outbound_backoff(idx, failures)
                    } else {
                        reconnect_backoff(failures)
                    };
                    let ep = &mut self.endpoints[idx];
                    ep.link.failures += 1;
                    ep.trace.push(TraceEntry::note(
                        format!("reconnecting in {} ms", wait.as_millis()),
                        at,
                    ));
                    ep.script = Script::Connect;
                    ep.script_at = Some(now + wait);
                    self.schedule(idx);
                    return;
                }
                // A TLS or WebSocket refusal keeps the endpoint from registering; a TCP
                // failure is a socket error (product.md's outcomes).
                let outcome = if after_tcp {
                    Outcome::RegistrationFailed
                } else {
                    Outcome::Oserror
                };
                ep.worsen(
                    outcome,
                    format!(
                        "cannot connect over {} to {addr}: {error}: {hint}",
                        settings.kind.via_token(),
                    ),
                );
                if matches!(plan.groups[ep.group].role, Role::Answer { .. })
                    && ep.registration_code != Some(200)
                {
                    // Callers must not wait for an answerer that will never register.
                    self.shared.registered.fetch_add(1, Ordering::Relaxed);
                }
                self.finish(idx);
            }
            StreamEvent::Message(bytes) => {
                let from = ep.link.addr.unwrap_or(settings.addr);
                self.on_message(now, bytes, from, Some(idx));
            }
            StreamEvent::Datagram(..) => {} // handled above
            StreamEvent::Closed(reason) => {
                ep.trace
                    .push(TraceEntry::note(format!("connection closed: {reason}"), at));
                ep.link.local = None;
                let leaving = ep.link.leaving;
                // Its calls are done and it holds no registration: nothing is left to send on
                // this connection (a peer such as SIPp closes its connections when it exits,
                // possibly before our last transaction's Timer K has fired).
                if ep.active_call.is_none()
                    && matches!(ep.script, Script::Unregister)
                    && ep.registration_code != Some(200)
                {
                    ep.trace.push(TraceEntry::note(
                        "nothing left to send on it: not reopened".into(),
                        at,
                    ));
                    self.schedule(idx);
                    return;
                }
                if server.transport.reconnect && !stopping && !leaving {
                    self.outbound_failed(idx, now, &format!("the connection closed: {reason}"));
                    let ep = &mut self.endpoints[idx];
                    // The phone reconnects and registers again (RFC 5626 §4.4.1); a call
                    // in progress is lost with its connection.
                    if let Some(call) = ep.active_call.take() {
                        ep.worsen(
                            Outcome::CallFailed,
                            format!("the call was lost with the connection: {reason}"),
                        );
                        ep.ua.forget_call(call);
                        ep.link.lost_call = true;
                        self.end_media(idx, now);
                    }
                    let ep = &mut self.endpoints[idx];
                    if !ep.link.lost_call {
                        let script = std::mem::replace(&mut ep.script, Script::Connect);
                        ep.link.resume = Some((script, ep.script_at));
                    }
                    let wait = reconnect_backoff(0).min(Duration::from_millis(200));
                    ep.script = Script::Connect;
                    ep.script_at = Some(now + wait);
                    ep.trace.push(TraceEntry::note(
                        format!("reconnecting in {} ms", wait.as_millis()),
                        at,
                    ));
                    self.schedule(idx);
                    return;
                }
                ep.worsen(Outcome::Oserror, format!("connection lost: {reason}"));
                // Pending transactions end as on a timeout (RFC 3261 §8.1.3.1).
                ep.ua.handle_transport_error(now);
                self.pump(idx, now);
            }
        }
    }

    fn find_by_raw_call_id(&self, bytes: &[u8]) -> Option<usize> {
        self.by_call_id.get(raw_call_id(bytes)?)
    }
}

/// Our address on a socket bound at `bound` as `server` sees it: the bound one, or where
/// bound on every address, the local address the system routes to `server` from.
fn facing(bound: SocketAddr, server: SocketAddr) -> std::io::Result<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    let ip = crate::service_media::facing(server).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NetworkUnreachable,
            format!("no local address routes to {server}"),
        )
    })?;
    Ok(SocketAddr::new(ip, bound.port()))
}

/// Binds a UDP signalling socket with the plan's buffer sizes; the note says what the
/// system granted (Linux doubles what is asked, and caps it at `net.core.rmem_max`).
fn bind_udp(
    addr: SocketAddr,
    t: &TransportPlan,
) -> std::io::Result<(std::net::UdpSocket, Option<String>)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let mut granted = Vec::new();
    if let Some(n) = t.udp_recv_buffer {
        sock.set_recv_buffer_size(n)?;
        granted.push(format!(
            "receive buffer {} bytes for {n} asked",
            sock.recv_buffer_size()?
        ));
    }
    if let Some(n) = t.udp_send_buffer {
        sock.set_send_buffer_size(n)?;
        granted.push(format!(
            "send buffer {} bytes for {n} asked",
            sock.send_buffer_size()?
        ));
    }
    sock.set_nonblocking(true)?;
    if let Some(d) = t.sip_dscp {
        d.mark(&sock, addr.is_ipv6())?;
        granted.push(format!("signalling marked DSCP {d}"));
    }
    if let SocketAddr::V6(a) = addr
        && a.ip().is_unspecified()
    {
        // Dual-stack (whatever `net.ipv6.bindv6only` says): IPv4 servers are sent to as
        // IPv4 addresses (Linux's `udpv6_sendmsg` takes them) and heard as mapped ones
        // (`udpbatch::source` gives them back as IPv4).
        sock.set_only_v6(false)?;
    }
    sock.bind(&addr.into())?;
    Ok((
        sock.into(),
        (!granted.is_empty()).then(|| granted.join(", ")),
    ))
}

/// The Call-ID value of a message's header section (`Call-ID:` or compact `i:`), without
/// parsing the message.
/// An ACK, BYE or CANCEL: a request of the call an INVITE made, by its Call-ID.
fn in_dialog_of_invite(bytes: &[u8]) -> bool {
    bytes.starts_with(b"ACK ") || bytes.starts_with(b"BYE ") || bytes.starts_with(b"CANCEL ")
}

fn raw_call_id(bytes: &[u8]) -> Option<&str> {
    // One pass over the lines, up to the empty line that ends the header section.
    for line in crate::rawscan::lines(bytes) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        // Only a name that begins with `C`, `c` or `i` can match: other lines are passed
        // over without looking for their colon (most of the lines before the Call-ID).
        if !matches!(
            line.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'C' | b'c' | b'i')
        ) {
            continue;
        }
        let Some(colon) = crate::rawscan::find_byte(line, b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name == b"i" {
            return std::str::from_utf8(line[colon + 1..].trim_ascii()).ok();
        }
    }
    None
}

fn uri_addr(uri: &Uri) -> Option<SocketAddr> {
    let u = uri.as_sip()?;
    let ip = match &u.host {
        Host::V4(a) => IpAddr::V4(*a),
        Host::V6(a) => IpAddr::V6(*a),
        Host::Name(_) => return None,
    };
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_call_id_reads_full_and_compact_names_and_stops_at_the_body() {
        let m = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\ncall-ID:  abc@h \r\nContent-Length: 12\r\n\r\nCall-ID: no\r\n";
        assert_eq!(raw_call_id(m), Some("abc@h"));
        let compact = b"BYE sip:b@x SIP/2.0\ni: k1\n\n";
        assert_eq!(raw_call_id(compact), Some("k1"));
        let body_only = b"OPTIONS sip:b@x SIP/2.0\r\nTo: <sip:b@x>\r\n\r\nCall-ID: hidden\r\n";
        assert_eq!(
            raw_call_id(body_only),
            None,
            "a Call-ID in the body is not a header"
        );
        assert_eq!(raw_call_id(b"\xff\xfe:garbage"), None);
        // Names that begin like `Call-ID` and `i` but are not: passed over.
        let near = b"ACK sip:b@x SIP/2.0\r\nCSeq: 1 ACK\r\nContact: <sip:a@h>\r\nI: upper\r\nid: x\r\nCall-Info: y\r\n  Call-ID :  c9 \r\n\r\n";
        assert_eq!(raw_call_id(near), Some("c9"));
        assert_eq!(raw_call_id(b"BYE sip:b@x SIP/2.0\r\nCall-ID\r\n\r\n"), None);
    }

    #[test]
    fn dtmf_bodies() {
        assert_eq!(
            dtmf_of(
                Some("application/dtmf-relay"),
                b"Signal=5\r\nDuration=160\r\n"
            ),
            Some('5')
        );
        assert_eq!(dtmf_of(Some("application/dtmf"), b"#"), Some('#'));
        assert_eq!(
            dtmf_of(Some("application/dtmf-relay"), b"Signal=55\r\n"),
            None
        );
        assert_eq!(dtmf_of(Some("text/plain"), b"5"), None);
    }
}
