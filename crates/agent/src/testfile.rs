//! Test files: a TOML description of a test (registrars, accounts, groups, pass criteria),
//! turned into a [`RunPlan`]. Errors name the line and the field.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use media::audio::SourceKind;
use media::sdp::Codec;
use media::sound::SoundConfig;
use media::srtp::{Mki, Suite};
use media::wav::WavAudio;
use serde::Deserialize;
use sip_msg::{HeaderName, Host, SipUri, Uri};
use sip_proto::auth::Credentials;
use sip_proto::ua::{MIN_SE_FLOOR, Refresher, SessionTimerConfig};
use toml::Spanned;

use crate::callmedia::{IceServers, MediaPlan, SrtpMode};
use crate::dscp::Dscp;
use crate::engine::{
    ActionKind, CallAction, CallTrigger, EndpointPlan, EventAction, GroupIdentity, GroupPlan,
    OfferTiming, Reject, Ringing, Role, RunPlan, RunSummary, ServerTarget, TransportPlan,
};
use crate::flow::FlowKind;
use media::turn::TurnConfig;

/// A test file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The test's name.
    pub name: String,
    /// How long each call stays up (`30s`, `500ms`, `2m`).
    pub duration: Spanned<String>,
    /// Endpoints started per second (`20/s`); all at once when absent.
    pub ramp: Option<Spanned<String>>,
    /// Calls started per second over the whole run at most (`50/s`); no cap when absent.
    pub cps: Option<Spanned<String>>,
    /// Hard limit for the whole run (default: duration × calls + 2 minutes).
    pub time_limit: Option<Spanned<String>>,
    /// Event loops; default: one per core.
    pub shards: Option<usize>,
    /// Seed for tags, branches and Call-IDs.
    pub seed: Option<u64>,
    /// RTP/RTCP port pairs from this range (`"20000-30000"`); default: chosen by the system.
    pub rtp_ports: Option<Spanned<String>>,
    /// Registration lifetime in seconds (default 300).
    pub register_expires: Option<u32>,
    /// RFC 3261 T1, the round-trip estimate retransmissions start from (default 500ms).
    pub t1: Option<Spanned<String>>,
    /// DNS server for the registrar's domain, `address:port` (default: the system's).
    pub dns_server: Option<Spanned<String>>,
    /// The registrars.
    #[serde(rename = "registrar", default)]
    pub registrars: Vec<RegistrarEntry>,
    /// Accounts for non-builtin registrars.
    #[serde(default)]
    pub accounts: Vec<AccountsEntry>,
    /// The groups of endpoints.
    #[serde(rename = "group", default)]
    pub groups: Vec<GroupEntry>,
    /// Pass criteria; without them the test passes when every endpoint succeeds.
    #[serde(default)]
    pub pass: PassCriteria,
    /// How `sipmeter capacity` steps the load (ignored by `sipmeter run`).
    pub capacity: Option<CapacityEntry>,
}

/// `[capacity]`: what `sipmeter capacity` varies and over which range.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityEntry {
    /// `calls` (concurrent calls: every group is scaled) or `cps` (the calls-per-second cap).
    pub vary: Option<Spanned<String>>,
    /// The first level tried.
    pub start: Option<Spanned<f64>>,
    /// The highest level tried.
    pub max: Option<Spanned<f64>>,
    /// Add this much per step; without it each step doubles the level.
    pub step: Option<Spanned<f64>>,
    /// Stop refining once the knee is known within this many units (default: 5 % of it, at
    /// least 1).
    pub precision: Option<Spanned<f64>>,
}

/// A `[[registrar]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarEntry {
    /// How groups refer to it.
    pub id: String,
    /// `builtin` for sipmeter's own registrar; otherwise a SIP server.
    pub kind: Option<String>,
    /// Host name or IP address (not for builtin).
    pub domain: Option<Spanned<String>>,
    /// Port; default per transport.
    pub port: Option<u16>,
    /// `udp` (default), `tcp`, `tls`, `ws`, `wss`, or `auto` (RFC 3263 DNS discovery: the
    /// first target the records name). Over tcp/tls/ws/wss each endpoint has its own
    /// connection.
    pub transport: Option<Spanned<String>>,
    /// TLS server verification: `system` (default), `custom` (with `tls_ca`) or `skip`.
    pub tls_verify: Option<Spanned<String>>,
    /// The CA certificate (PEM file, relative to the test file) for `tls_verify = "custom"`.
    pub tls_ca: Option<Spanned<String>>,
    /// Client certificate (PEM) for mutual TLS, with `tls_key`.
    pub tls_cert: Option<Spanned<String>>,
    /// The client certificate's private key (PEM).
    pub tls_key: Option<Spanned<String>>,
    /// The name the server certificate must carry, sent as SNI (default: the domain).
    pub tls_server_name: Option<Spanned<String>>,
    /// WebSocket resource for ws/wss (default `/`).
    pub ws_path: Option<Spanned<String>>,
    /// CRLF keep-alive interval on tcp/tls (RFC 5626 §3.5.1), e.g. `30s` (default) or `0s` (off).
    pub keepalive: Option<Spanned<String>>,
    /// The built-in registrar only: how long an RFC 5626 binding whose flow failed answers
    /// 430 before it is dropped, e.g. `30s` (default) or `0s`.
    pub failed_flow_hold: Option<Spanned<String>>,
    /// Reconnect and re-register when a connection drops (default true).
    pub reconnect: Option<bool>,
    /// UDP: `shared` (one socket per shard, default) or `per-endpoint`.
    pub udp_socket: Option<Spanned<String>>,
    /// TCP, TLS, WS, WSS: `per-endpoint` (a connection per endpoint, default) or `shared`
    /// (trunk style: the shard's endpoints of this registrar share one connection).
    pub connections: Option<Spanned<String>>,
    /// UDP signalling socket receive buffer (SO_RCVBUF), bytes.
    pub udp_recv_buffer: Option<Spanned<usize>>,
    /// UDP signalling socket send buffer (SO_SNDBUF), bytes.
    pub udp_send_buffer: Option<Spanned<usize>>,
    /// DSCP of the signalling to this registrar: a number (24) or a name (`"CS3"`).
    pub sip_dscp: Option<Spanned<DscpValue>>,
    /// `host:port` of an outbound proxy for INVITEs.
    pub outbound_proxy: Option<Spanned<String>>,
    /// `false`: do not REGISTER; call straight away (a SIP trunk with IP authentication, a
    /// PBX that accepts unregistered calls, or a peer such as SIPp). Default true.
    pub register: Option<bool>,
    /// RFC 5626 SIP Outbound (default false): REGISTER with `+sip.instance` and `reg-id`,
    /// keep the flow alive (CRLF ping/pong, STUN over UDP), register again when it fails.
    pub outbound: Option<Spanned<bool>>,
}

/// An `[[accounts]]` entry: a numeric range, or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsEntry {
    /// The registrar these accounts belong to.
    pub registrar: Spanned<String>,
    /// A numeric range with a password pattern (`{n}` is the number).
    pub range: Option<AccountRange>,
    /// Explicit accounts.
    #[serde(default)]
    pub list: Vec<Account>,
}

/// `range = { from = 1001, to = 1100, password = "pass{n}" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRange {
    /// First number.
    pub from: u64,
    /// Last number (inclusive).
    pub to: u64,
    /// The password pattern.
    pub password: String,
}

/// One account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Auth user name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Realm (learned from the challenge when absent).
    pub realm: Option<String>,
    /// The AOR user when it differs from the auth user.
    pub extension: Option<String>,
}

/// A `[[group]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    /// The group's name.
    pub name: String,
    /// How many endpoints.
    pub endpoints: Spanned<usize>,
    /// Which registrar (`id`).
    pub registrar: Spanned<String>,
    /// `answer`, `call` or `register`.
    pub role: Option<Spanned<String>>,
    /// For `answer`: delay before 200 OK, or `"never"` (ring until the caller gives up).
    pub answer_delay: Option<Spanned<String>>,
    /// For `answer`: refuse calls with this final response (400..=699) after `answer_delay`.
    pub reject: Option<Spanned<i64>>,
    /// For `answer` with `reject`: the share of the calls refused, percent (default 100).
    pub reject_percent: Option<Spanned<i64>>,
    /// For `call`: cancel a call not answered this long after its INVITE.
    pub ring_timeout: Option<Spanned<String>>,
    /// For `call`: `group:NAME`, or a URI template such as `sip:{n}@pbx.example.com`.
    pub call: Option<Spanned<String>>,
    /// For `call`: calls per endpoint (default 1).
    pub calls: Option<u32>,
    /// For `call`: pause between calls (default 1s).
    pub pause: Option<Spanned<String>>,
    /// For `call`: `early` (SDP offer in the INVITE, the default) or `late` (an INVITE
    /// without SDP: the callee offers, our ACK or PRACK answers).
    pub offer: Option<Spanned<String>>,
    /// Scenario actions in each call: `{ at = "2s", do = "hold" }`, `do = "resume"`,
    /// `{ at = "1s", do = "dtmf", digits = "123#", duration = "100ms" }`, or on an event:
    /// `{ on = "dtmf:#", do = "hangup" }`.
    #[serde(default)]
    pub actions: Vec<ActionEntry>,
    /// Offer and use reliable provisionals (100rel/PRACK, RFC 3262); default false.
    #[serde(default)]
    pub prack: bool,
    /// RFC 4028 session timers on, with this session interval (`"1800s"`, `"30m"`; at least
    /// 90 s): asked for in our INVITEs, the most granted to callers. Off when absent.
    pub session_expires: Option<Spanned<String>>,
    /// Our Min-SE (at least 90 s, at most `session_expires`): sent in our INVITEs; callers
    /// asking for less get 422. Default: not sent, 90 s.
    pub min_se: Option<Spanned<String>>,
    /// Who refreshes: `uac` (the caller), `uas` (the callee) or `auto` (the default: our
    /// INVITE names none; answering, we let a caller that supports timers refresh).
    pub refresher: Option<Spanned<String>>,
    /// Codecs offered, in preference order (default PCMU, PCMA).
    #[serde(default)]
    pub codecs: Vec<Spanned<String>>,
    /// Packetisation time in ms (default 20).
    pub ptime: Option<Spanned<u32>>,
    /// RTP media in the calls (default true); false: signalling only.
    pub media: Option<bool>,
    /// Offer RTCP multiplexing on the RTP port (RFC 5761); default false.
    pub rtcp_mux: Option<bool>,
    /// Send RTCP XR VoIP Metrics blocks (RFC 3611) with each RTCP report; default false.
    pub rtcp_xr: Option<Spanned<bool>>,
    /// The mean RTCP report interval (RFC 3550 §6.2; default `"5s"`, 100 ms ..= 1 h).
    pub rtcp_interval: Option<Spanned<String>>,
    /// DSCP of the calls' RTP and RTCP: a number (46) or a name (`"EF"`).
    pub rtp_dscp: Option<Spanned<DscpValue>>,
    /// Media encryption: `"off"` (the default), `"sdes"` (SRTP required: RTP/SAVP with
    /// `a=crypto` keys, RFC 4568) or `"optional"` (RTP/AVP with `a=crypto`: SRTP with peers
    /// that take it, plain RTP with the others).
    pub srtp: Option<Spanned<String>>,
    /// The SRTP crypto suites offered and accepted, in preference order (default: every
    /// suite, strongest first — `AEAD_AES_256_GCM`, `AEAD_AES_128_GCM`,
    /// `AES_256_CM_HMAC_SHA1_80`, `AES_256_CM_HMAC_SHA1_32`, `AES_CM_128_HMAC_SHA1_80`,
    /// `AES_CM_128_HMAC_SHA1_32`).
    pub srtp_suites: Option<Spanned<Vec<Spanned<String>>>>,
    /// An MKI of this many bytes (1–128, value 1) on our SDES keys, in the `a=crypto` lines
    /// and every SRTP/SRTCP packet (RFC 3711 §3.1, RFC 4568 §6.1); default none (an offer's
    /// MKI is answered with one of its length either way).
    pub srtp_mki: Option<Spanned<u32>>,
    /// ICE (RFC 8445): host candidates in the SDP, connectivity checks, media over the
    /// nominated pair, consent freshness (RFC 7675); default false.
    pub ice: Option<Spanned<bool>>,
    /// `host:port` of a STUN server (RFC 8489): a server-reflexive candidate from a Binding
    /// request, dropped when equal to the host candidate (needs `ice = true`).
    pub stun_server: Option<Spanned<String>>,
    /// `host:port` of a TURN server (RFC 8656, UDP): a relayed candidate from an allocation
    /// with `turn_user` and `turn_password` (needs `ice = true`).
    pub turn_server: Option<Spanned<String>>,
    /// The TURN server's long-term credential user.
    pub turn_user: Option<Spanned<String>>,
    /// Its password.
    pub turn_password: Option<Spanned<String>>,
    /// `"all"` (default) or `"relay"`: only the relayed candidate, like a browser's
    /// `iceTransportPolicy` (needs `turn_server` and `rtcp_mux = true`).
    pub ice_policy: Option<Spanned<String>>,
    /// Send this WAV file (path relative to the test file) instead of the generated signal,
    /// looped for the call's duration.
    pub source: Option<Spanned<String>>,
    /// Received audio at or above this level is sound, for actions on `audio` and `silence`
    /// (`"-45dBov"`, the default).
    pub speech_level: Option<Spanned<String>>,
    /// Sound is that level for this long in a row (default `"60ms"`).
    pub speech_min: Option<Spanned<String>>,
    /// A `silence` lasts this long (default `"1s"`); quiet this long also ends a sound.
    pub silence: Option<Spanned<String>>,
    /// The `User-Agent` of the phones' requests and `Server` of their responses (default
    /// `sipmeter/VERSION`).
    pub user_agent: Option<Spanned<String>>,
    /// The From display name of the calls they place (`{user}` and `{domain}` replaced).
    pub display_name: Option<Spanned<String>>,
    /// Extra headers of the INVITEs they place, in the file's order:
    /// `{ "P-Asserted-Identity" = "<sip:{user}@{domain}>" }`.
    pub headers: Option<Spanned<HeaderList>>,
}

/// A group's `headers` table, its entries in the order written (a map would sort them).
#[derive(Debug, Clone, Default)]
pub struct HeaderList(pub Vec<(String, Spanned<String>)>);

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = HeaderList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of header names and values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<HeaderList, A::Error> {
                let mut list = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    list.push(entry);
                }
                Ok(HeaderList(list))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// Headers sipmeter writes itself in the INVITEs it places (or which another key sets):
/// a `headers` entry may not replace them.
fn managed_header(name: &HeaderName) -> Option<&'static str> {
    use HeaderName as H;
    Some(match name {
        H::Via | H::From | H::To | H::CallId | H::CSeq | H::Contact | H::MaxForwards => {
            "is written by the SIP stack (RFC 3261 §8.1.1)"
        }
        H::ContentLength | H::ContentType | H::ContentEncoding | H::ContentDisposition => {
            "describes the SDP body sipmeter writes"
        }
        H::Route | H::RecordRoute => "is the route set: use the registrar's outbound_proxy",
        H::Authorization | H::ProxyAuthorization => "is the digest answer to a challenge",
        H::Supported | H::Require | H::Allow | H::SessionExpires | H::MinSe | H::RAck | H::RSeq => {
            "states what the phone supports: use prack, session_expires and min_se"
        }
        H::Replaces => "is written by an attended transfer",
        H::UserAgent | H::Server => "is set by user_agent",
        _ => return None,
    })
}

/// RFC 3261 §25.1 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Text for a header value or a display name: no line breaks or other control characters
/// (tab aside), not blank, at most 1,024 bytes.
fn header_text(cx: &Ctx<'_>, v: &Spanned<String>, field: String) -> Result<String, FileError> {
    let t = v.get_ref().trim();
    if t.is_empty() {
        return cx.err(v.span(), field, "is empty");
    }
    if t.len() > 1024 {
        return cx.err(v.span(), field, "is longer than 1024 bytes");
    }
    if let Some(c) = t.chars().find(|c| c.is_control() && *c != '\t') {
        return cx.err(
            v.span(),
            field,
            format!("holds the control character {:?} (a header is one line)", c),
        );
    }
    Ok(t.to_owned())
}

/// A group's `ring_timeout` (callers), `reject`, `reject_percent` and `answer_delay =
/// "never"` (callees).
fn ringing_of(cx: &Ctx<'_>, g: &GroupEntry, gi: usize, role: &Role) -> Result<Ringing, FileError> {
    let field = |f: &str| format!("group[{gi}].{f}");
    let answers = matches!(role, Role::Answer { .. });
    let mut r = Ringing::default();
    if let Some(t) = &g.ring_timeout {
        if !matches!(role, Role::Call { .. }) {
            return cx.err(t.span(), field("ring_timeout"), "is for calling groups");
        }
        let d = cx.duration(t, &field("ring_timeout"))?;
        if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
            return cx.err(t.span(), field("ring_timeout"), "must be 100ms ..= 1h");
        }
        r.ring_timeout = Some(d);
    }
    if let Some(d) = &g.answer_delay
        && d.get_ref().eq_ignore_ascii_case("never")
    {
        if !answers {
            return cx.err(d.span(), field("answer_delay"), "is for answering groups");
        }
        r.never_answer = true;
    }
    if let Some(code) = &g.reject {
        if !answers {
            return cx.err(code.span(), field("reject"), "is for answering groups");
        }
        if r.never_answer {
            return cx.err(
                code.span(),
                field("reject"),
                "a phone that never answers refuses nothing: drop answer_delay = \"never\" \
                 or reject",
            );
        }
        let c = *code.get_ref();
        if !(400..=699).contains(&c) {
            return cx.err(
                code.span(),
                field("reject"),
                format!("{c}: expected a final response code 400..=699 (486 busy, 480 not available, 603 decline)"),
            );
        }
        let percent = match &g.reject_percent {
            None => 100,
            Some(p) if (1..=100).contains(p.get_ref()) => *p.get_ref() as u8,
            Some(p) => {
                return cx.err(p.span(), field("reject_percent"), "must be 1 ..= 100");
            }
        };
        r.reject = Some(Reject {
            code: c as u16,
            percent,
        });
    } else if let Some(p) = &g.reject_percent {
        return cx.err(p.span(), field("reject_percent"), "needs reject = CODE");
    }
    Ok(r)
}

/// A group's `user_agent`, `display_name` and `headers`.
fn identity_of(cx: &Ctx<'_>, g: &GroupEntry, gi: usize) -> Result<GroupIdentity, FileError> {
    let field = |f: &str| format!("group[{gi}].{f}");
    let mut id = GroupIdentity::default();
    if let Some(v) = &g.user_agent {
        id.user_agent = Some(header_text(cx, v, field("user_agent"))?);
    }
    if let Some(v) = &g.display_name {
        id.caller.display_name = Some(header_text(cx, v, field("display_name"))?);
    }
    if let Some(list) = &g.headers {
        for (name, value) in &list.get_ref().0 {
            let f = field(&format!("headers.{name}"));
            if !is_token(name) {
                return cx.err(list.span(), f, "is not a header name (RFC 3261 token)");
            }
            let h = HeaderName::from_name(name);
            if let Some(why) = managed_header(&h) {
                return cx.err(
                    list.span(),
                    f,
                    format!("cannot be set: {} {why}", h.as_str()),
                );
            }
            if id.caller.headers.iter().any(|(n, _)| *n == h) {
                return cx.err(list.span(), f, "is named twice");
            }
            id.caller.headers.push((h, header_text(cx, value, f)?));
        }
    }
    Ok(id)
}

/// A group's STUN and TURN servers for its ICE (`stun_server`, `turn_server`, `turn_user`,
/// `turn_password`, `ice_policy`): addresses that resolve, the TURN credentials together,
/// and each key only with `ice = true`.
fn ice_servers_of(
    cx: &Ctx<'_>,
    g: &GroupEntry,
    ice: bool,
    rtcp_mux: bool,
    field: &dyn Fn(&str) -> String,
) -> Result<IceServers, FileError> {
    let keys = [
        ("stun_server", &g.stun_server),
        ("turn_server", &g.turn_server),
        ("turn_user", &g.turn_user),
        ("turn_password", &g.turn_password),
        ("ice_policy", &g.ice_policy),
    ];
    if !ice {
        if let Some((name, Some(v))) = keys.iter().find(|(_, v)| v.is_some()) {
            return cx.err(
                v.span(),
                field(name),
                "gathers ICE candidates: needs ice = true",
            );
        }
        return Ok(IceServers::default());
    }
    let addr = |v: &Spanned<String>, name: &str| -> Result<SocketAddr, FileError> {
        use std::net::ToSocketAddrs;
        match v.get_ref().to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => Ok(a),
            Ok(None) | Err(_) => cx.err(
                v.span(),
                field(name),
                format!("`{}`: want host:port (e.g. 127.0.0.1:3478)", v.get_ref()),
            ),
        }
    };
    let mut servers = IceServers::default();
    if let Some(v) = &g.stun_server {
        servers.stun = Some(addr(v, "stun_server")?);
    }
    match (&g.turn_server, &g.turn_user, &g.turn_password) {
        (Some(t), Some(u), Some(p)) => {
            if u.get_ref().is_empty() || !u.get_ref().is_ascii() || !p.get_ref().is_ascii() {
                return cx.err(
                    u.span(),
                    field("turn_user"),
                    "want a non-empty ASCII user and password (no SASLprep here)",
                );
            }
            servers.turn = Some(TurnConfig {
                server: addr(t, "turn_server")?,
                username: u.get_ref().clone(),
                password: p.get_ref().clone(),
            });
        }
        (None, None, None) => {}
        (Some(t), _, _) => {
            return cx.err(
                t.span(),
                field("turn_server"),
                "needs turn_user and turn_password (long-term credentials, RFC 8489 §9.2)",
            );
        }
        (None, Some(v), _) | (None, None, Some(v)) => {
            let name = if g.turn_user.is_some() {
                "turn_user"
            } else {
                "turn_password"
            };
            return cx.err(v.span(), field(name), "needs turn_server");
        }
    }
    if let Some(p) = &g.ice_policy {
        match p.get_ref().as_str() {
            "all" => {}
            "relay" if servers.turn.is_none() => {
                return cx.err(p.span(), field("ice_policy"), "`relay` needs turn_server");
            }
            "relay" if !rtcp_mux => {
                return cx.err(
                    p.span(),
                    field("ice_policy"),
                    "`relay` needs rtcp_mux = true (one component: the relay carries RTP only)",
                );
            }
            "relay" => servers.relay_only = true,
            other => {
                return cx.err(
                    p.span(),
                    field("ice_policy"),
                    format!("`{other}`: must be \"all\" or \"relay\""),
                );
            }
        }
    }
    Ok(servers)
}

/// A group's `srtp_suites`: known names, each once, at least one, and SRTP on.
fn srtp_suites_of(
    cx: &Ctx<'_>,
    list: &Spanned<Vec<Spanned<String>>>,
    mode: SrtpMode,
    field: String,
) -> Result<Vec<Suite>, FileError> {
    if mode == SrtpMode::Off {
        return cx.err(list.span(), field, "needs srtp = \"sdes\" or \"optional\"");
    }
    if mode == SrtpMode::Dtls {
        // Said, not ignored: the test would not run what it asks for.
        return cx.err(
            list.span(),
            field,
            "does not apply to srtp = \"dtls\": the DTLS handshake chooses the suite (dimpl \
             offers SRTP_AEAD_AES_256_GCM, SRTP_AEAD_AES_128_GCM, SRTP_AES128_CM_SHA1_80)",
        );
    }
    let mut suites = Vec::new();
    for s in list.get_ref() {
        match Suite::from_name(s.get_ref()) {
            Some(x) if suites.contains(&x) => {
                return cx.err(s.span(), field, format!("`{}` twice", s.get_ref()));
            }
            Some(x) => suites.push(x),
            None => {
                let known: Vec<&str> = Suite::ALL.map(Suite::name).to_vec();
                return cx.err(
                    s.span(),
                    field,
                    format!("`{}`: unknown suite ({})", s.get_ref(), known.join(", ")),
                );
            }
        }
    }
    if suites.is_empty() {
        return cx.err(list.span(), field, "names no suite");
    }
    Ok(suites)
}

/// A DSCP in a test file: its number or its name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DscpValue {
    /// `rtp_dscp = 46`
    Number(i64),
    /// `rtp_dscp = "EF"`
    Name(String),
}

/// One scenario action of a group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionEntry {
    /// Time after the call is answered (or `on`).
    pub at: Option<Spanned<String>>,
    /// The event that runs it (instead of `at`): `dtmf`, `dtmf:DIGITS`, `held`, `resumed`,
    /// `reinvite`, `answered`, `audio`, `silence`, `silence:DURATION`, `early_media`,
    /// `message`, `message:TEXT`, `tone:HZ[+HZ][:DURATION]`, `inband_dtmf` or
    /// `inband_dtmf:DIGITS`.
    pub on: Option<Spanned<String>>,
    /// With `on`: the delay from the event (default none).
    pub after: Option<Spanned<String>>,
    /// With `on`: each time the event comes in a call (default: the first time only).
    pub repeat: Option<Spanned<bool>>,
    /// With `on`: the event's n-th time in a call (1: the first), e.g. the second silence.
    pub nth: Option<Spanned<i64>>,
    /// `hold`, `resume`, `reinvite`, `dtmf`, `transfer`, `attended_transfer`, `message` or
    /// `hangup`.
    #[serde(rename = "do")]
    pub action: Spanned<String>,
    /// For `message`: the MESSAGE's body (`text/plain`).
    pub text: Option<Spanned<String>>,
    /// For `dtmf`: the digits (0-9 * # A-D), sent one after another.
    pub digits: Option<Spanned<String>>,
    /// For `dtmf`: each digit's duration (default 100ms; INFO digits are sent 2× apart).
    pub duration: Option<Spanned<String>>,
    /// For `dtmf`: `rfc4733` (telephone-events in RTP; the default with media) or `info`
    /// (SIP INFO `application/dtmf-relay`; the default without media).
    pub method: Option<Spanned<String>>,
    /// For `transfer` and `attended_transfer`: the target, as a group's `call` names one
    /// (`group:NAME`, a URI template with `{n}`, `builtin:echo`).
    pub to: Option<Spanned<String>>,
    /// For `attended_transfer`: how long the consultation call talks before the REFER
    /// (default 2s).
    pub consult: Option<Spanned<String>>,
    /// For `reinvite`: offer only these codecs (the call changes to the answer's); absent:
    /// the call's own offer again, with a new version.
    pub codecs: Option<Vec<Spanned<String>>>,
}

/// `[pass]`: the gates a CI pipeline uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassCriteria {
    /// Minimum answer-seizure ratio, percent.
    pub min_asr: Option<f64>,
    /// Minimum share of endpoints with outcome SUCCESS, percent (default 100 when no gate is set).
    pub min_success: Option<f64>,
    /// Maximum 95th percentile call setup time, ms.
    pub max_setup_p95_ms: Option<f64>,
    /// Minimum mean MOS over the endpoints with media.
    pub min_mos: Option<f64>,
    /// Maximum mean jitter, ms.
    pub max_jitter_ms: Option<f64>,
    /// Maximum mean packet loss, percent.
    pub max_loss_percent: Option<f64>,
    /// Minimum network effectiveness ratio, percent (calls answered, busy or rejected by
    /// the callee over calls attempted).
    pub min_ner: Option<f64>,
    /// Maximum median call setup time, ms.
    pub max_setup_p50_ms: Option<f64>,
    /// Maximum 99th percentile call setup time, ms.
    pub max_setup_p99_ms: Option<f64>,
    /// Maximum median post-dial delay (INVITE to the first 18x), ms.
    pub max_pdd_p50_ms: Option<f64>,
    /// Maximum 95th percentile post-dial delay, ms.
    pub max_pdd_p95_ms: Option<f64>,
    /// Maximum 99th percentile post-dial delay, ms.
    pub max_pdd_p99_ms: Option<f64>,
    /// Minimum MOS of the worst endpoint (its lowest over its calls).
    pub min_mos_worst: Option<f64>,
    /// Maximum jitter of the worst endpoint, ms.
    pub max_jitter_worst_ms: Option<f64>,
    /// Maximum mean round-trip time (RTCP), ms.
    pub max_rtt_ms: Option<f64>,
}

impl PassCriteria {
    /// Whether any gate but `min_success` is set (without one, every endpoint must succeed).
    fn any_gate(&self) -> bool {
        [
            self.min_asr,
            self.max_setup_p95_ms,
            self.min_mos,
            self.max_jitter_ms,
            self.max_loss_percent,
            self.min_ner,
            self.max_setup_p50_ms,
            self.max_setup_p99_ms,
            self.max_pdd_p50_ms,
            self.max_pdd_p95_ms,
            self.max_pdd_p99_ms,
            self.min_mos_worst,
            self.max_jitter_worst_ms,
            self.max_rtt_ms,
        ]
        .iter()
        .any(Option::is_some)
    }
}

/// A problem in a test file: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct FileError {
    /// The file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The field concerned (`group[2].endpoints`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The outbound proxy's Route URI over `kind`: `;transport=` as the registration URI has
/// it, none over UDP (or while the transport is not known).
fn proxy_uri_for(uri: SipUri, kind: Option<FlowKind>) -> SipUri {
    match kind {
        None | Some(FlowKind::Udp) => uri,
        Some(k) => uri.with_param("transport", Some(&k.via_token().to_ascii_lowercase())),
    }
}

/// AUTO: the outbound proxy of a registrar found by DNS, completed with the transport
/// discovery chose (`kind`): the Route's `;transport=`, and the transport's default port
/// when the test file gave none.
pub fn complete_outbound_proxy(proxy: &mut (SipUri, SocketAddr), kind: FlowKind) {
    if proxy.1.port() == 0 {
        proxy.1.set_port(kind.default_port());
        proxy.0.port = Some(kind.default_port());
    }
    if proxy.0.params.get("transport").is_none() {
        proxy.0 = proxy_uri_for(proxy.0.clone(), Some(kind));
    }
}

/// An outbound proxy given by name, located at the run's start: its address is the target
/// DNS chose (`addr`, over `kind`); the Route URI keeps the name (and a port only if one was
/// written: without, the next hop locates it by SRV as we did) and names the transport as
/// the registration URI does.
pub fn complete_located_proxy(proxy: &mut (SipUri, SocketAddr), addr: SocketAddr, kind: FlowKind) {
    proxy.1 = addr;
    if proxy.0.params.get("transport").is_none() {
        proxy.0 = proxy_uri_for(proxy.0.clone(), Some(kind));
    }
}

/// How long an `attended_transfer`'s consultation call talks when `consult` is not given.
pub const DEFAULT_CONSULT: Duration = Duration::from_secs(2);

/// Parses a duration such as `30s`, `500ms`, `2m`, `1h`, `1.5s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 500ms, 2m)"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("`{s}` is not a duration (try 30s, 500ms, 2m)"));
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is too long a duration"))
}

/// Parses an RTP/RTCP port range `FROM-TO` (inclusive): 1024 ≤ FROM, and room for two pairs.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    s.split_once('-')
        .and_then(|(a, b)| {
            let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
            (1024 <= a && u32::from(a) + 3 <= u32::from(b)).then_some((a, b))
        })
        .ok_or_else(|| format!("`{s}`: expected FROM-TO with 1024 ≤ FROM and room for two pairs"))
}

/// How to run a test: the engine plan, plus what the runner must set up.
#[derive(Debug)]
pub struct Prepared {
    /// The plan: one server per registrar the groups use, in the order of their first group
    /// (the built-in's and those to locate by DNS have a placeholder address).
    pub plan: RunPlan,
    /// Start the built-in registrar (with this secret) and point `builtin_sites` at it.
    pub builtin: Option<Vec<u8>>,
    /// The servers of [`RunPlan::servers`] that are the built-in registrar.
    pub builtin_sites: Vec<usize>,
    /// The gates.
    pub pass: PassCriteria,
    /// Servers of [`RunPlan::servers`] to find by DNS before the run.
    pub discover: Vec<(usize, Discover)>,
    /// Outbound proxies given by name, to locate by DNS (RFC 3263 §4) when the run starts,
    /// per server of [`RunPlan::servers`].
    pub proxies: Vec<(usize, LocateProxy)>,
}

/// An outbound proxy given by name: located when the run starts, through the registrar's
/// resolver (`dns_server` or the system's), by RFC 3263 §4 on its own name — NAPTR and SRV
/// when the value has no port, A/AAAA only with one (§4.2).
#[derive(Debug, Clone)]
pub struct LocateProxy {
    /// What to locate. `transport`: the registrar's fixed one, or `None` with
    /// `transport = "auto"` (the proxy's own NAPTR/SRV choose; the run keeps the targets on
    /// the registrar's transport, see the runner).
    pub destination: sip_proto::rfc3263::Destination,
    /// The DNS server; `None` for the system's.
    pub dns_server: Option<SocketAddr>,
    /// `file:line: registrar[i].outbound_proxy`, for the error when it does not resolve.
    pub field: String,
}

/// A registrar to locate by DNS (RFC 3263) when the run starts.
#[derive(Debug, Clone)]
pub struct Discover {
    /// What to locate.
    pub destination: sip_proto::rfc3263::Destination,
    /// The DNS server; `None` for the system's.
    pub dns_server: Option<SocketAddr>,
}

pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn line_of(&self, span: Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    pub(crate) fn err<T>(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, FileError> {
        Err(FileError {
            file: self.file.to_owned(),
            line: self.line_of(span),
            field: field.into(),
            message: message.into(),
        })
    }

    /// An `outbound_proxy` value, `host[:port]` (split as `check --proxy` splits it): its
    /// Route URI and address. `kind`: the transport, which the URI names as the registration
    /// URI does (`;transport=tcp|tls|ws|wss`, RFC 3261 §19.1.1, RFC 7118 §5.2; UDP, the
    /// default, is left out: the seed's `<sip:PROXY:PORT;lr>`), and whose default port applies
    /// to an IP literal; `None` (AUTO): both come after discovery
    /// ([`complete_outbound_proxy`]), port 0 meaning "the default".
    ///
    /// A host name is not resolved here: it comes back with a [`LocateProxy`] for the run's
    /// start, and its Route URI keeps the name and only the port written (none: RFC 3263
    /// §4.2 SRV, so the URI must not pin a port either).
    fn outbound_proxy(
        &self,
        p: &Spanned<String>,
        field: &str,
        kind: Option<FlowKind>,
        dns_server: Option<SocketAddr>,
    ) -> Result<(SipUri, SocketAddr, Option<LocateProxy>), FileError> {
        let (ph, written) = match crate::proxyprobe::split_host_port(p.get_ref(), 0) {
            Ok(v) => v,
            Err(e) => return self.err(p.span(), field, e),
        };
        let default_port = kind.map_or(0, FlowKind::default_port);
        let host = Host::parse(&if ph.contains(':') {
            format!("[{ph}]")
        } else {
            ph.clone()
        })
        .or_else(|_| self.err(p.span(), field, "not a host"))?;
        let mut uri = SipUri::new(host);
        let Ok(ip) = ph.parse::<IpAddr>() else {
            let Ok(name) = sip_proto::target::Host::parse(&ph) else {
                return self.err(p.span(), field, format!("`{ph}` is not a host name"));
            };
            uri.port = (written != 0).then_some(written);
            let locate = LocateProxy {
                destination: sip_proto::rfc3263::Destination {
                    host: name,
                    port: (written != 0).then_some(written),
                    transport: kind.map(crate::flow::transport_of),
                    sips: false,
                },
                dns_server,
                field: format!("{}:{}: {field}", self.file, self.line_of(p.span())),
            };
            let addr = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), written);
            return Ok((proxy_uri_for(uri, kind), addr, Some(locate)));
        };
        let pp = if written == 0 { default_port } else { written };
        uri.port = (pp != 0).then_some(pp);
        Ok((proxy_uri_for(uri, kind), SocketAddr::new(ip, pp), None))
    }

    /// A list of codec names (`codecs` of a group or a `reinvite` action).
    fn codecs(&self, names: &[Spanned<String>], field: &str) -> Result<Vec<Codec>, FileError> {
        names
            .iter()
            .map(|c| match crate::callmedia::codec_by_name(c.get_ref()) {
                Some(codec) => Ok(codec),
                None => self.err(
                    c.span(),
                    field,
                    format!("`{}`: unknown codec (PCMU, PCMA, G722, OPUS)", c.get_ref()),
                ),
            })
            .collect()
    }

    /// A `sip_dscp` / `rtp_dscp` value (see [`crate::dscp`]).
    fn dscp(&self, v: &Option<Spanned<DscpValue>>, field: &str) -> Result<Option<Dscp>, FileError> {
        let Some(v) = v else { return Ok(None) };
        let parsed = match v.get_ref() {
            DscpValue::Number(n) => u8::try_from(*n)
                .ok()
                .and_then(Dscp::new)
                .ok_or_else(|| format!("{n} is not a DSCP (0–63)")),
            DscpValue::Name(s) => Dscp::parse(s),
        };
        parsed.map(Some).or_else(|m| self.err(v.span(), field, m))
    }

    fn duration(&self, v: &Spanned<String>, field: &str) -> Result<Duration, FileError> {
        parse_duration(v.get_ref()).or_else(|m| self.err(v.span(), field, m))
    }
}

/// A group's `speech_level`, `speech_min` and `silence`, where set, with their field names.
fn sound_keys(g: &GroupEntry) -> impl Iterator<Item = (std::ops::Range<usize>, &'static str)> {
    [
        (&g.speech_level, "speech_level"),
        (&g.speech_min, "speech_min"),
        (&g.silence, "silence"),
    ]
    .into_iter()
    .filter_map(|(v, f)| Some((v.as_ref()?.span(), f)))
}

/// How the group's calls tell sound from silence (`speech_level`, `speech_min`,
/// `silence`), when it has actions on `audio` or `silence` or sets one of those; `None`:
/// its calls do not watch sound.
fn sound_of(
    cx: &Ctx<'_>,
    g: &GroupEntry,
    gi: usize,
    actions: &[EventAction],
) -> Result<Option<SoundConfig>, FileError> {
    if sound_keys(g).next().is_none() && !actions.iter().any(|a| a.on.hears()) {
        return Ok(None);
    }
    let field = |f: &str| format!("group[{gi}].{f}");
    let mut c = SoundConfig::default();
    if let Some(l) = &g.speech_level {
        let text = l.get_ref().trim();
        let num = text
            .get(..text.len().saturating_sub(4))
            .filter(|_| text.to_ascii_lowercase().ends_with("dbov"))
            .unwrap_or(text)
            .trim();
        c.threshold_dbov = match num.parse::<f64>() {
            Ok(v) if (-100.0..=0.0).contains(&v) => v,
            _ => {
                return cx.err(
                    l.span(),
                    field("speech_level"),
                    format!("`{text}`: expected a level from -100dBov to 0dBov, e.g. \"-45dBov\""),
                );
            }
        };
    }
    if let Some(m) = &g.speech_min {
        c.min_sound = cx.duration(m, &field("speech_min"))?;
        if c.min_sound.is_zero() || c.min_sound > Duration::from_secs(10) {
            return cx.err(
                m.span(),
                field("speech_min"),
                "must be more than 0 s and at most 10 s",
            );
        }
    }
    if let Some(s) = &g.silence {
        c.gap = cx.duration(s, &field("silence"))?;
        if c.gap.is_zero() {
            return cx.err(s.span(), field("silence"), "must be more than 0 s");
        }
    }
    Ok(Some(c))
}

/// An action's event (`on`), checked against its `at`, `after` and `repeat`; `None` for an
/// action at a time.
fn event_of(
    cx: &Ctx<'_>,
    a: &ActionEntry,
    afield: &dyn Fn(&str) -> String,
) -> Result<Option<CallTrigger>, FileError> {
    match (&a.at, &a.on) {
        (Some(_), Some(on)) => cx.err(
            on.span(),
            afield("on"),
            "an action runs `at` a time after the answer or `on` an event, not both",
        ),
        (None, None) => cx.err(
            a.action.span(),
            afield("at"),
            "an action needs `at` (a time after the answer, e.g. \"5s\") or `on` (an event: \
             dtmf, dtmf:DIGITS, held, resumed, reinvite or answered)",
        ),
        (None, Some(on)) => CallTrigger::parse(on.get_ref())
            .map(Some)
            .or_else(|m| cx.err(on.span(), afield("on"), m)),
        (Some(_), None) => {
            if let Some(after) = &a.after {
                return cx.err(
                    after.span(),
                    afield("after"),
                    "is a delay from an event: only with `on` (an action at a time has `at`)",
                );
            }
            if let Some(r) = &a.repeat {
                return cx.err(
                    r.span(),
                    afield("repeat"),
                    "repeats an action on an event: only with `on`",
                );
            }
            if let Some(n) = &a.nth {
                return cx.err(
                    n.span(),
                    afield("nth"),
                    "counts an event's times: only with `on`",
                );
            }
            Ok(None)
        }
    }
}

/// The registrar's transport (`None` for auto) and its connection settings.
fn transport_plan(
    cx: &Ctx<'_>,
    file: &str,
    r: &RegistrarEntry,
    i: usize,
) -> Result<(Option<FlowKind>, TransportPlan), FileError> {
    use sip_net::tls::{ClientSettings, Identity, Verify, certificates_from_pem};
    let field = |f: &str| format!("registrar[{i}].{f}");
    let kind = match r
        .transport
        .as_ref()
        .map(|t| t.get_ref().to_ascii_lowercase())
    {
        None => Some(FlowKind::Udp),
        Some(t) => match t.as_str() {
            "udp" => Some(FlowKind::Udp),
            "tcp" => Some(FlowKind::Tcp),
            "tls" => Some(FlowKind::Tls),
            "ws" => Some(FlowKind::Ws),
            "wss" => Some(FlowKind::Wss),
            "auto" => None,
            other => {
                let span = r.transport.as_ref().map_or(0..0, Spanned::span);
                return cx.err(
                    span,
                    field("transport"),
                    format!("`{other}`: expected udp, tcp, tls, ws, wss or auto"),
                );
            }
        },
    };
    let path_of = |p: &str| {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            Path::new(file).parent().unwrap_or(Path::new("")).join(path)
        }
    };
    // Files and errors as `sipmeter check --ca/--cert/--key` reads and words them.
    let read = |v: &Spanned<String>, f: &str| {
        let full = path_of(v.get_ref());
        std::fs::read(&full)
            .or_else(|e| cx.err(v.span(), field(f), format!("{}: {e}", full.display())))
    };
    let verify_name = r
        .tls_verify
        .as_ref()
        .map(|v| v.get_ref().to_ascii_lowercase());
    let verify = match (verify_name.as_deref(), &r.tls_ca) {
        (None | Some("custom"), Some(ca)) => {
            let pem = read(ca, "tls_ca")?;
            Verify::Custom(certificates_from_pem(&pem, "CA certificate").or_else(|e| {
                cx.err(
                    ca.span(),
                    field("tls_ca"),
                    format!("{}: {e}", path_of(ca.get_ref()).display()),
                )
            })?)
        }
        (Some("custom"), None) => {
            let span = r.tls_verify.as_ref().map_or(0..0, Spanned::span);
            return cx.err(
                span,
                field("tls_ca"),
                "tls_verify = \"custom\" needs tls_ca (the CA certificate, PEM)",
            );
        }
        (None | Some("system"), None) => Verify::System,
        (Some("skip"), None) => Verify::InsecureSkipVerification,
        (Some("system" | "skip"), Some(ca)) => {
            return cx.err(
                ca.span(),
                field("tls_ca"),
                "tls_ca goes with tls_verify = \"custom\"",
            );
        }
        (Some(other), _) => {
            let span = r.tls_verify.as_ref().map_or(0..0, Spanned::span);
            return cx.err(
                span,
                field("tls_verify"),
                format!("`{other}`: expected system, custom or skip"),
            );
        }
    };
    let identity = match (&r.tls_cert, &r.tls_key) {
        (Some(c), Some(k)) => {
            let cert = read(c, "tls_cert")?;
            let key = read(k, "tls_key")?;
            Some(Identity::from_pem(&cert, &key).or_else(|e| {
                cx.err(
                    c.span(),
                    field("tls_cert"),
                    format!(
                        "{} with {}: {e}",
                        path_of(c.get_ref()).display(),
                        path_of(k.get_ref()).display()
                    ),
                )
            })?)
        }
        (None, None) => None,
        (Some(c), None) => {
            return cx.err(c.span(), field("tls_key"), "tls_cert needs tls_key");
        }
        (None, Some(k)) => {
            return cx.err(k.span(), field("tls_cert"), "tls_key needs tls_cert");
        }
    };
    let keepalive = match &r.keepalive {
        None => Some(Duration::from_secs(30)),
        Some(k) => {
            let d = cx.duration(k, &field("keepalive"))?;
            (!d.is_zero()).then_some(d)
        }
    };
    let udp_per_endpoint = match r
        .udp_socket
        .as_ref()
        .map(|u| u.get_ref().to_ascii_lowercase())
    {
        None => false,
        Some(u) if u == "shared" => false,
        Some(u) if u == "per-endpoint" => true,
        Some(u) => {
            let span = r.udp_socket.as_ref().map_or(0..0, Spanned::span);
            return cx.err(
                span,
                field("udp_socket"),
                format!("`{u}`: expected shared or per-endpoint"),
            );
        }
    };
    let shared_connection = match r
        .connections
        .as_ref()
        .map(|c| c.get_ref().to_ascii_lowercase())
    {
        None => false,
        Some(c) if c == "per-endpoint" => false,
        Some(c) if c == "shared" => true,
        Some(c) => {
            let span = r.connections.as_ref().map_or(0..0, Spanned::span);
            return cx.err(
                span,
                field("connections"),
                format!("`{c}`: expected per-endpoint or shared"),
            );
        }
    };
    if shared_connection {
        let span = r.connections.as_ref().map_or(0..0, Spanned::span);
        if kind == Some(FlowKind::Udp) {
            return cx.err(
                span,
                field("connections"),
                "connections = \"shared\" is for tcp, tls, ws and wss; over udp the shard's socket is shared already (udp_socket)",
            );
        }
        if r.outbound_proxy.is_some() {
            return cx.err(
                span,
                field("connections"),
                "connections = \"shared\" with an outbound_proxy is not supported yet: remove outbound_proxy or use connections = \"per-endpoint\"",
            );
        }
    }
    let outbound = r.outbound.as_ref().is_some_and(|o| *o.get_ref());
    if let Some(o) = r.outbound.as_ref().filter(|_| outbound) {
        // RFC 5626 needs a flow per phone, registered, and kept alive: refuse what is not.
        let clash = if shared_connection {
            Some(
                "outbound = true needs a flow per endpoint (RFC 5626 §4.2): remove connections = \"shared\"",
            )
        } else if keepalive.is_none() {
            Some("outbound = true needs keep-alives (RFC 5626 §4.4.1): remove keepalive = \"0s\"")
        } else if r.register == Some(false) {
            Some(
                "outbound = true registers the flow (RFC 5626 §4.2): it does not go with register = false",
            )
        } else {
            None
        };
        if let Some(why) = clash {
            return cx.err(o.span(), field("outbound"), why);
        }
    }
    let buffer = |b: &Option<Spanned<usize>>, f: &str| match b {
        None => Ok(None),
        Some(v) if (1024..=(256 << 20)).contains(v.get_ref()) => Ok(Some(*v.get_ref())),
        Some(v) => cx.err(
            v.span(),
            field(f),
            "must be between 1024 and 268435456 bytes",
        ),
    };
    let plan = TransportPlan {
        kind: kind.unwrap_or(FlowKind::Udp),
        tls: ClientSettings { verify, identity },
        tls_name: r.tls_server_name.as_ref().map(|n| n.get_ref().clone()),
        ws_path: r
            .ws_path
            .as_ref()
            .map_or_else(|| "/".to_owned(), |p| p.get_ref().clone()),
        keepalive,
        reconnect: r.reconnect.unwrap_or(true),
        udp_per_endpoint,
        shared_connection,
        udp_recv_buffer: buffer(&r.udp_recv_buffer, "udp_recv_buffer")?,
        udp_send_buffer: buffer(&r.udp_send_buffer, "udp_send_buffer")?,
        sip_dscp: cx.dscp(&r.sip_dscp, &field("sip_dscp"))?,
        outbound,
        failed_flow_hold: match &r.failed_flow_hold {
            None => None,
            Some(h) => match cx.duration(h, &field("failed_flow_hold"))? {
                d if d > MAX_FAILED_FLOW_HOLD => {
                    return cx.err(
                        h.span(),
                        field("failed_flow_hold"),
                        "at most 8760h (a year)",
                    );
                }
                d => Some(d),
            },
        },
    };
    if let Some(p) = &r.ws_path
        && !p.get_ref().starts_with('/')
    {
        return cx.err(p.span(), field("ws_path"), "must start with /");
    }
    Ok((kind, plan))
}

/// The longest `failed_flow_hold` (the registrar caps it there too).
const MAX_FAILED_FLOW_HOLD: Duration = Duration::from_secs(365 * 86_400);

/// Largest WAV file accepted as a source.
const MAX_WAV_BYTES: u64 = 64 << 20;

/// The rate a codec's audio is sampled at (what the source is resampled to).
fn decoded_rate(c: media::sdp::Codec) -> u32 {
    match c {
        media::sdp::Codec::Pcmu | media::sdp::Codec::Pcma => 8000,
        _ => 16000,
    }
}

/// Reads a WAV source; `path` is relative to the test file's directory.
fn read_wav(file: &str, path: &str) -> Result<WavAudio, String> {
    let p = Path::new(path);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(file).parent().unwrap_or(Path::new("")).join(p)
    };
    let shown = full.display();
    let len = std::fs::metadata(&full)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .len();
    if len > MAX_WAV_BYTES {
        return Err(format!(
            "{shown}: {len} bytes, more than the 64 MiB accepted"
        ));
    }
    let bytes = std::fs::read(&full).map_err(|e| format!("cannot read {shown}: {e}"))?;
    WavAudio::from_wav_bytes(&bytes).map_err(|e| format!("{shown}: {e}"))
}

/// Reads and checks a test file. `secret` keys ephemeral credentials for `builtin`.
pub fn prepare(
    file: &str,
    text: &str,
    secret: &[u8],
    now_unix: u64,
) -> Result<Prepared, FileError> {
    prepare_with(file, text, secret, now_unix, None)
}

/// [`prepare`], with a DNS server (`--dns-server`) that overrides the file's `dns_server`.
pub fn prepare_with(
    file: &str,
    text: &str,
    secret: &[u8],
    now_unix: u64,
    dns_server: Option<SocketAddr>,
) -> Result<Prepared, FileError> {
    let tf = parse(file, text)?;
    prepare_parsed(file, text, tf, secret, now_unix, dns_server)
}

/// Parses a test file without checking it further.
pub fn parse(file: &str, text: &str) -> Result<TestFile, FileError> {
    let cx = Ctx { file, text };
    toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| cx.line_of(s));
        FileError {
            file: file.to_owned(),
            line,
            field: "toml".into(),
            message: e.message().to_owned(),
        }
    })
}

/// [`prepare_with`] for a file already parsed from `text` (and perhaps changed: the spans
/// still point into `text`, so errors name its lines).
pub fn prepare_parsed(
    file: &str,
    text: &str,
    tf: TestFile,
    secret: &[u8],
    now_unix: u64,
    dns_server: Option<SocketAddr>,
) -> Result<Prepared, FileError> {
    let cx = Ctx { file, text };
    let duration = cx.duration(&tf.duration, "duration")?;
    let rate = |r: &Option<Spanned<String>>, field: &str| -> Result<f64, FileError> {
        let Some(r) = r else { return Ok(0.0) };
        let t = r.get_ref().trim();
        let n = t
            .strip_suffix("/s")
            .unwrap_or(t)
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| *n > 0.0 && n.is_finite());
        match n {
            Some(n) => Ok(n),
            None => cx.err(r.span(), field, format!("`{t}` is not a rate (try 20/s)")),
        }
    };
    let ramp_per_sec = rate(&tf.ramp, "ramp")?;
    let cps = rate(&tf.cps, "cps")?;
    if tf.groups.is_empty() {
        return cx.err(0..0, "group", "the test has no [[group]]");
    }
    let dns_server = match (dns_server, &tf.dns_server) {
        (Some(s), _) => Some(s),
        (None, None) => None,
        (None, Some(d)) => match d.get_ref().trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                return cx.err(
                    d.span(),
                    "dns_server",
                    format!(
                        "`{}`: expected ADDRESS:PORT, e.g. 127.0.0.1:53",
                        d.get_ref()
                    ),
                );
            }
        },
    };
    // Registrars located by DNS when the run starts.
    let mut deferred: HashMap<&str, sip_proto::rfc3263::Destination> = HashMap::new();
    // Outbound proxies given by name, located when the run starts.
    let mut proxy_names: HashMap<&str, LocateProxy> = HashMap::new();
    // Registrars.
    let mut servers: HashMap<&str, (ServerTarget, bool)> = HashMap::new();
    let mut builtin = None;
    for (i, r) in tf.registrars.iter().enumerate() {
        let field = |f: &str| format!("registrar[{i}].{f}");
        let is_builtin = r
            .kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case("builtin"))
            || r.id == "builtin";
        let (kind, transport) = transport_plan(&cx, file, r, i)?;
        if let Some(h) = r.failed_flow_hold.as_ref().filter(|_| !is_builtin) {
            return cx.err(
                h.span(),
                field("failed_flow_hold"),
                "applies to the built-in registrar (kind = \"builtin\"): another server keeps its own",
            );
        }
        if is_builtin {
            builtin = Some(secret.to_vec());
            let placeholder: SocketAddr = ([127, 0, 0, 1], 0).into();
            let Some(kind) = kind else {
                let span = r.transport.as_ref().map_or(0..0, Spanned::span);
                return cx.err(span, field("transport"), "the built-in registrar needs a fixed transport (udp, tcp, tls, ws or wss), not auto");
            };
            if let Some(p) = &r.outbound_proxy {
                // Not ignored in silence: the test would not go where its file says.
                return cx.err(
                    p.span(),
                    field("outbound_proxy"),
                    "the built-in registrar routes the calls itself: it takes no outbound proxy (remove the line, or point a registrar with a domain at your proxy)",
                );
            }
            let transport = TransportPlan { kind, ..transport };
            servers.insert(
                &r.id,
                (
                    ServerTarget {
                        addr: placeholder,
                        domain: "sipmeter.builtin".into(),
                        registrar_uri: Uri::Sip(SipUri::new(Host::Name("sipmeter.builtin".into()))),
                        outbound_proxy: None,
                        transport,
                    },
                    true,
                ),
            );
            continue;
        }
        let Some(domain) = &r.domain else {
            return cx.err(
                0..0,
                field("domain"),
                format!(
                    "registrar `{}` needs a domain (or kind = \"builtin\")",
                    r.id
                ),
            );
        };
        let auto = kind.is_none();
        let fixed = kind.unwrap_or(FlowKind::Udp);
        let token = fixed.via_token().to_ascii_lowercase();
        let default_port = fixed.default_port();
        let port = r.port.unwrap_or(default_port);
        let transport = TransportPlan {
            kind: fixed,
            ..transport
        };
        let host = domain.get_ref().trim_matches(['[', ']']);
        let is_name = host.parse::<IpAddr>().is_err();
        if auto || (is_name && dns_server.is_some()) {
            let Ok(h) = sip_proto::target::Host::parse(host) else {
                return cx.err(
                    domain.span(),
                    field("domain"),
                    format!("`{host}` is not a host name or IP address"),
                );
            };
            // RFC 3263 §4: AUTO puts neither port nor transport in the URI (or DNS discovery
            // would be off); a fixed transport keeps the seed page's form.
            let hostpart = h.to_string();
            let uri = match (auto, r.port) {
                (true, Some(p)) => format!("sip:{hostpart}:{p}"),
                (true, None) => format!("sip:{hostpart}"),
                (false, _) => format!("sip:{hostpart}:{port};transport={token}"),
            };
            let registrar_uri = Uri::parse(&uri).or_else(|_| {
                cx.err(
                    domain.span(),
                    field("domain"),
                    format!("`{host}` is not a host name or IP address"),
                )
            })?;
            deferred.insert(
                &r.id,
                sip_proto::rfc3263::Destination {
                    host: h,
                    port: if auto { r.port } else { Some(port) },
                    transport: (!auto).then_some(crate::flow::transport_of(fixed)),
                    sips: false,
                },
            );
            // The proxy goes over the transport discovery chooses for the registrar (as
            // `check --proxy` probes it): the runner completes it once DNS answered.
            let outbound_proxy = match &r.outbound_proxy {
                None => None,
                Some(p) => {
                    let (uri, addr, locate) = cx.outbound_proxy(
                        p,
                        &field("outbound_proxy"),
                        (!auto).then_some(fixed),
                        dns_server,
                    )?;
                    if let Some(l) = locate {
                        proxy_names.insert(&r.id, l);
                    }
                    Some((uri, addr))
                }
            };
            servers.insert(
                &r.id,
                (
                    ServerTarget {
                        addr: ([0, 0, 0, 0], 0).into(),
                        domain: host.to_owned(),
                        registrar_uri,
                        outbound_proxy,
                        transport,
                    },
                    false,
                ),
            );
            continue;
        }
        let addr = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => match std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                .ok()
                .and_then(|mut a| a.next())
            {
                Some(a) => a,
                None => {
                    return cx.err(
                        domain.span(),
                        field("domain"),
                        format!("`{host}` does not resolve"),
                    );
                }
            },
        };
        let hostpart = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let registrar_uri = Uri::parse(&format!("sip:{hostpart}:{port};transport={token}"))
            .or_else(|_| {
                cx.err(
                    domain.span(),
                    field("domain"),
                    format!("`{host}` is not a host name or IP address"),
                )
            })?;
        let outbound_proxy = match &r.outbound_proxy {
            None => None,
            Some(p) => {
                let (uri, addr, locate) =
                    cx.outbound_proxy(p, &field("outbound_proxy"), Some(fixed), dns_server)?;
                if let Some(l) = locate {
                    proxy_names.insert(&r.id, l);
                }
                Some((uri, addr))
            }
        };
        servers.insert(
            &r.id,
            (
                ServerTarget {
                    addr,
                    domain: host.to_owned(),
                    registrar_uri,
                    outbound_proxy,
                    transport,
                },
                false,
            ),
        );
    }
    // Accounts per registrar, drawn in order (never shared within a run).
    let mut pools: HashMap<String, Vec<Account>> = HashMap::new();
    for (i, a) in tf.accounts.iter().enumerate() {
        if !servers.contains_key(a.registrar.get_ref().as_str()) {
            return cx.err(
                a.registrar.span(),
                format!("accounts[{i}].registrar"),
                format!("no registrar with id `{}`", a.registrar.get_ref()),
            );
        }
        let pool = pools.entry(a.registrar.get_ref().clone()).or_default();
        if let Some(r) = &a.range {
            if r.to < r.from || r.to - r.from > 1_000_000 {
                return cx.err(
                    a.registrar.span(),
                    format!("accounts[{i}].range"),
                    "`to` must be ≥ `from` (at most a million accounts)",
                );
            }
            for n in r.from..=r.to {
                pool.push(Account {
                    username: n.to_string(),
                    password: r.password.replace("{n}", &n.to_string()),
                    realm: None,
                    extension: None,
                });
            }
        }
        pool.extend(a.list.iter().cloned());
    }
    // Groups.
    let registers = |rid: &str| {
        tf.registrars
            .iter()
            .find(|r| r.id == rid)
            .and_then(|r| r.register)
            .unwrap_or(true)
    };
    let mut groups = Vec::new();
    // The servers the groups use, in the order of their first group, and which are built in.
    let mut sites: Vec<(&str, ServerTarget, bool)> = Vec::new();
    let mut discover = Vec::new();
    let mut proxies = Vec::new();
    let mut users_of: HashMap<String, Vec<String>> = HashMap::new();
    let mut taken: HashMap<String, usize> = HashMap::new();
    for (gi, g) in tf.groups.iter().enumerate() {
        let field = |f: &str| format!("group[{gi}].{f}");
        let rid = g.registrar.get_ref();
        let Some((target, is_builtin)) = servers.get(rid.as_str()) else {
            return cx.err(
                g.registrar.span(),
                field("registrar"),
                format!("no registrar with id `{rid}`"),
            );
        };
        let site = match sites.iter().position(|(id, ..)| *id == rid.as_str()) {
            Some(i) => i,
            None => {
                if let Some(d) = deferred.get(rid.as_str()) {
                    let destination = d.clone();
                    discover.push((
                        sites.len(),
                        Discover {
                            destination,
                            dns_server,
                        },
                    ));
                }
                if let Some(l) = proxy_names.get(rid.as_str()) {
                    proxies.push((sites.len(), l.clone()));
                }
                sites.push((rid.as_str(), target.clone(), *is_builtin));
                sites.len() - 1
            }
        };
        let n = *g.endpoints.get_ref();
        if n == 0 {
            return cx.err(g.endpoints.span(), field("endpoints"), "must be at least 1");
        }
        let mut endpoints = Vec::with_capacity(n);
        if *is_builtin {
            for k in 0..n {
                let user = format!("{}{}", g.name, k + 1);
                let expiry = now_unix + 24 * 3600;
                let (u, p) = sip_auth::ephemeral::issue(secret, &user, expiry);
                endpoints.push(EndpointPlan {
                    user,
                    credentials: Some(Credentials::new(&u, &p)),
                });
            }
        } else if !registers(rid) && pools.get(rid).is_none_or(Vec::is_empty) {
            // No registration and no accounts: callers identified by name (IP-authenticated).
            for k in 0..n {
                endpoints.push(EndpointPlan {
                    user: format!("{}{}", g.name, k + 1),
                    credentials: None,
                });
            }
        } else {
            let pool = pools.get(rid).map_or(&[][..], Vec::as_slice);
            let used = taken.entry(rid.clone()).or_default();
            if pool.len() < *used + n {
                return cx.err(g.endpoints.span(), field("endpoints"), format!("needs {n} accounts but registrar `{rid}` has {} left of {}: add [[accounts]]", pool.len().saturating_sub(*used), pool.len()));
            }
            for a in &pool[*used..*used + n] {
                let mut creds = Credentials::new(&a.username, &a.password);
                creds.realm = a.realm.clone();
                endpoints.push(EndpointPlan {
                    user: a.extension.clone().unwrap_or_else(|| a.username.clone()),
                    credentials: Some(creds),
                });
            }
            *used += n;
        }
        users_of.insert(
            g.name.clone(),
            endpoints.iter().map(|e| e.user.clone()).collect(),
        );
        groups.push((gi, endpoints, site));
    }
    if sites.is_empty() {
        return cx.err(0..0, "group", "no group");
    }
    // Endpoints sharing a shard's UDP socket are told apart by their user: one user on two
    // registrars (extension 1001 on both PBXs) would get each other's calls.
    let mut udp_users: HashMap<&str, &str> = HashMap::new();
    for (gi, endpoints, site) in &groups {
        let t = &sites[*site].1.transport;
        let shared_udp = t.kind == FlowKind::Udp && !t.udp_per_endpoint;
        if !shared_udp && !t.shared_connection {
            continue;
        }
        let g = &tf.groups[*gi];
        for e in endpoints {
            match udp_users.insert(&e.user, &g.name) {
                Some(other) if other != g.name.as_str() => {
                    return cx.err(
                        g.registrar.span(),
                        format!("group[{gi}].registrar"),
                        format!(
                            "user `{}` is in group `{other}` too, on another registrar: {}",
                            e.user,
                            if shared_udp {
                                "over UDP with a shared socket their calls cannot be told apart; set udp_socket = \"per-endpoint\" on one of the registrars"
                            } else {
                                "on shared connections their calls cannot be told apart; set connections = \"per-endpoint\" on one of the registrars"
                            }
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    // Each group's server, by group name (`group:NAME` calls its users at their domain).
    let site_of: HashMap<&str, usize> = groups
        .iter()
        .map(|(gi, _, site)| (tf.groups[*gi].name.as_str(), *site))
        .collect();
    let mut plans = Vec::new();
    let mut max_calls = 1u32;
    for (gi, endpoints, site) in groups {
        let g = &tf.groups[gi];
        let (_, server, is_builtin) = &sites[site];
        let field = |f: &str| format!("group[{gi}].{f}");
        // `group:NAME`, `builtin:SERVICE` or a URI template with `{n}` (a group's `call`, a
        // `transfer` action's `to`): one URI per endpoint of the group (or one for all).
        let targets_of = |call: &Spanned<String>, fname: String| -> Result<Vec<Uri>, FileError> {
            let targets: Vec<Uri> = if let Some(name) = call.get_ref().strip_prefix("builtin:") {
                // The built-in registrar's service numbers (echo, tone, sit) at its domain.
                if !is_builtin {
                    return cx.err(
                        call.span(),
                        fname.clone(),
                        format!(
                            "`{}` needs the built-in registrar (kind = \"builtin\")",
                            call.get_ref()
                        ),
                    );
                }
                let Some(service) = registrar::Service::from_user(name) else {
                    return cx.err(
                        call.span(),
                        fname.clone(),
                        format!(
                            "no service `{name}`: use builtin:echo, builtin:tone or builtin:sit"
                        ),
                    );
                };
                match Uri::parse(&format!("sip:{}@{}", service.name(), server.domain)) {
                    Ok(u) => vec![u],
                    Err(e) => return cx.err(call.span(), fname.clone(), e.to_string()),
                }
            } else if let Some(name) = call.get_ref().strip_prefix("group:") {
                let Some(users) = users_of.get(name) else {
                    return cx.err(
                        call.span(),
                        fname.clone(),
                        format!("no group named `{name}`"),
                    );
                };
                // The callees at their own server's domain (the caller's server routes
                // there when it is another one). RFC 3261 §25.1: an IPv6 domain is
                // bracketed in a URI.
                let domain = &sites[site_of.get(name).copied().unwrap_or(site)].1.domain;
                let host = if domain.contains(':') {
                    format!("[{domain}]")
                } else {
                    domain.clone()
                };
                users
                    .iter()
                    .filter_map(|u| Uri::parse(&format!("sip:{u}@{host}")).ok())
                    .collect()
            } else {
                let mut v = Vec::new();
                for k in 0..endpoints.len() {
                    let s = call.get_ref().replace("{n}", &(k + 1).to_string());
                    match Uri::parse(&s) {
                        Ok(u) => v.push(u),
                        Err(e) => {
                            return cx.err(
                                call.span(),
                                fname.clone(),
                                format!("`{s}` is not a URI: {e}"),
                            );
                        }
                    }
                }
                v
            };
            Ok(targets)
        };
        let role_name = g.role.as_ref().map_or_else(
            || {
                if g.call.is_some() {
                    "call".to_owned()
                } else {
                    "answer".to_owned()
                }
            },
            |r| r.get_ref().to_ascii_lowercase(),
        );
        let role = match role_name.as_str() {
            "answer" => Role::Answer {
                answer_delay: g
                    .answer_delay
                    .as_ref()
                    .filter(|d| !d.get_ref().eq_ignore_ascii_case("never"))
                    .map(|d| cx.duration(d, &field("answer_delay")))
                    .transpose()?
                    .unwrap_or(Duration::ZERO),
            },
            "register" => Role::RegisterOnly,
            "call" => {
                let Some(call) = &g.call else {
                    return cx.err(
                        g.endpoints.span(),
                        field("call"),
                        "a calling group needs `call` (group:NAME or a URI template)",
                    );
                };
                let targets = targets_of(call, field("call"))?;
                let calls = g.calls.unwrap_or(1).max(1);
                max_calls = max_calls.max(calls);
                let pause = g
                    .pause
                    .as_ref()
                    .map(|d| cx.duration(d, &field("pause")))
                    .transpose()?
                    .unwrap_or(Duration::from_secs(1));
                let offer = match g
                    .offer
                    .as_ref()
                    .map(|o| (o, o.get_ref().to_ascii_lowercase()))
                {
                    None => OfferTiming::Early,
                    Some((_, v)) if v == "early" => OfferTiming::Early,
                    Some((_, v)) if v == "late" => OfferTiming::Late,
                    Some((o, _)) => {
                        return cx.err(
                            o.span(),
                            field("offer"),
                            format!("`{}`: expected early or late", o.get_ref()),
                        );
                    }
                };
                Role::Call {
                    targets,
                    calls,
                    pause,
                    offer,
                }
            }
            other => {
                let span = g.role.as_ref().map_or(0..0, Spanned::span);
                return cx.err(
                    span,
                    field("role"),
                    format!("`{other}`: expected answer, call or register"),
                );
            }
        };
        if let (Some(o), false) = (&g.offer, matches!(role, Role::Call { .. })) {
            return cx.err(
                o.span(),
                field("offer"),
                "only a calling group places calls with an offer",
            );
        }
        let mut actions = Vec::new();
        let mut event_actions = Vec::new();
        for (ai, a) in g.actions.iter().enumerate() {
            let afield = |f: &str| format!("group[{gi}].actions[{ai}].{f}");
            let on = event_of(&cx, a, &afield)?;
            // An action on an event: its steps are timed from the event (`after`).
            let at = match (&a.at, &a.after) {
                (Some(at), _) => cx.duration(at, &afield("at"))?,
                (None, Some(after)) => cx.duration(after, &afield("after"))?,
                (None, None) => Duration::ZERO,
            };
            let first = actions.len();
            let kind = a.action.get_ref().to_ascii_lowercase();
            if a.codecs.is_some() && !matches!(kind.as_str(), "reinvite" | "re-invite") {
                return cx.err(
                    a.action.span(),
                    afield("codecs"),
                    "only a reinvite action offers codecs",
                );
            }
            match kind.as_str() {
                "hold" => actions.push(CallAction {
                    at,
                    kind: ActionKind::Hold,
                }),
                "resume" => actions.push(CallAction {
                    at,
                    kind: ActionKind::Resume,
                }),
                "reinvite" | "re-invite" => {
                    let codecs = match &a.codecs {
                        None => None,
                        Some(_) if !g.media.unwrap_or(true) => {
                            return cx.err(
                                a.action.span(),
                                afield("codecs"),
                                "chooses the codec of RTP: needs media = true",
                            );
                        }
                        Some(list) if list.is_empty() => {
                            return cx.err(a.action.span(), afield("codecs"), "names no codec");
                        }
                        Some(list) => Some(cx.codecs(list, &afield("codecs"))?),
                    };
                    actions.push(CallAction {
                        at,
                        kind: ActionKind::Reinvite { codecs },
                    });
                }
                "dtmf" => {
                    let Some(digits) = &a.digits else {
                        return cx.err(a.action.span(), afield("digits"), "dtmf needs `digits`");
                    };
                    let duration = match &a.duration {
                        Some(d) => cx.duration(d, &afield("duration"))?,
                        None => Duration::from_millis(100),
                    };
                    if duration.is_zero() || duration > Duration::from_secs(5) {
                        let span = a.duration.as_ref().map_or(0..0, Spanned::span);
                        return cx.err(span, afield("duration"), "must be between 1ms and 5s");
                    }
                    let info = match a.method.as_ref().map(|m| m.get_ref().to_ascii_lowercase()) {
                        None => !g.media.unwrap_or(true),
                        Some(m) if m == "info" => true,
                        Some(m) if m == "rfc4733" => false,
                        Some(m) => {
                            let span = a.method.as_ref().map_or(0..0, Spanned::span);
                            return cx.err(
                                span,
                                afield("method"),
                                format!("`{m}`: expected rfc4733 or info"),
                            );
                        }
                    };
                    if let Some(c) = digits.get_ref().chars().find(
                        |c| !matches!(c.to_ascii_uppercase(), '0'..='9' | '*' | '#' | 'A'..='D'),
                    ) {
                        return cx.err(
                            digits.span(),
                            afield("digits"),
                            format!("`{c}` is not a DTMF digit (0-9 * # A-D)"),
                        );
                    }
                    if !info {
                        if !g.media.unwrap_or(true) {
                            return cx.err(
                                a.action.span(),
                                afield("method"),
                                "rfc4733 DTMF needs media (media = true) or method = \"info\"",
                            );
                        }
                        actions.push(CallAction {
                            at,
                            kind: ActionKind::Dtmf {
                                digits: digits.get_ref().to_ascii_uppercase(),
                                duration_ms: duration.as_millis() as u32,
                            },
                        });
                    } else {
                        // One INFO per digit, 2× its duration apart.
                        for (k, c) in digits.get_ref().chars().enumerate() {
                            actions.push(CallAction {
                                at: at + 2 * duration * k as u32,
                                kind: ActionKind::DtmfInfo {
                                    digit: c.to_ascii_uppercase(),
                                    duration_ms: duration.as_millis() as u32,
                                },
                            });
                        }
                    }
                }
                "transfer" | "attended_transfer" => {
                    let Some(to) = &a.to else {
                        return cx.err(a.action.span(), afield("to"), format!("{kind} needs `to`"));
                    };
                    let targets = targets_of(to, afield("to"))?;
                    if targets.is_empty() {
                        return cx.err(to.span(), afield("to"), "the group named has no endpoints");
                    }
                    let kind = match (kind.as_str(), &a.consult) {
                        ("transfer", Some(c)) => {
                            return cx.err(
                                c.span(),
                                afield("consult"),
                                "only an attended_transfer consults the target",
                            );
                        }
                        ("transfer", None) => ActionKind::Transfer { targets },
                        (_, consult) => ActionKind::AttendedTransfer {
                            targets,
                            consult: match consult {
                                Some(c) => cx.duration(c, &afield("consult"))?,
                                None => DEFAULT_CONSULT,
                            },
                        },
                    };
                    actions.push(CallAction { at, kind });
                }
                "message" => {
                    let Some(text) = &a.text else {
                        return cx.err(a.action.span(), afield("text"), "message needs `text`");
                    };
                    if text.get_ref().len() > 1300 {
                        // RFC 3428 §7: a MESSAGE over 1300 bytes needs congestion control
                        // (a stream transport) and is not sent by a UDP user agent.
                        return cx.err(
                            text.span(),
                            afield("text"),
                            "at most 1300 bytes (RFC 3428 §7)",
                        );
                    }
                    actions.push(CallAction {
                        at,
                        kind: ActionKind::Message {
                            text: text.get_ref().clone(),
                        },
                    });
                }
                "hangup" | "hang-up" | "bye" => actions.push(CallAction {
                    at,
                    kind: ActionKind::Hangup,
                }),
                other => {
                    return cx.err(
                        a.action.span(),
                        afield("do"),
                        format!(
                            "`{other}`: expected hold, resume, reinvite, dtmf, transfer, \
                             attended_transfer, message or hangup"
                        ),
                    );
                }
            }
            if let Some(on) = on {
                if (on.hears() || on.listens()) && g.media == Some(false) {
                    let span = a.on.as_ref().map_or(0..0, Spanned::span);
                    return cx.err(span, afield("on"), "hears RTP: needs media = true");
                }
                let repeat = a.repeat.as_ref().is_some_and(|r| *r.get_ref());
                let nth = match &a.nth {
                    None => None,
                    Some(n) if repeat => {
                        return cx.err(
                            n.span(),
                            afield("nth"),
                            "fires at one time of the event: not with `repeat = true`",
                        );
                    }
                    Some(n) => Some(
                        u32::try_from(*n.get_ref())
                            .ok()
                            .filter(|n| *n >= 1)
                            .map_or_else(
                                || cx.err(n.span(), afield("nth"), "must be 1 or more"),
                                Ok,
                            )?,
                    ),
                };
                event_actions.push(EventAction {
                    on,
                    repeat,
                    nth,
                    name: kind,
                    steps: actions.split_off(first),
                });
            }
        }
        actions.sort_by_key(|a| a.at);
        let media = if g.media.unwrap_or(true) {
            let codecs = cx.codecs(&g.codecs, &field("codecs"))?;
            let mut mp = MediaPlan::default();
            if !codecs.is_empty() {
                mp.codecs = codecs;
            }
            if let Some(p) = &g.ptime {
                if !(10..=120).contains(p.get_ref()) || p.get_ref() % 10 != 0 {
                    return cx.err(p.span(), field("ptime"), "must be 10, 20, … 120 (ms)");
                }
                mp.ptime_ms = *p.get_ref();
            }
            mp.rtcp_mux = g.rtcp_mux.unwrap_or(false);
            mp.rtcp_xr = g.rtcp_xr.as_ref().is_some_and(|x| *x.get_ref());
            if let Some(v) = &g.rtcp_interval {
                let d = cx.duration(v, &field("rtcp_interval"))?;
                if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
                    return cx.err(
                        v.span(),
                        field("rtcp_interval"),
                        "must be 100ms ..= 1h (RFC 3550 §6.2's mean report interval)",
                    );
                }
                mp.rtcp_interval = d;
            }
            mp.ice = g.ice.as_ref().is_some_and(|x| *x.get_ref());
            mp.ice_servers = ice_servers_of(&cx, g, mp.ice, mp.rtcp_mux, &field)?;
            mp.dscp = cx.dscp(&g.rtp_dscp, &field("rtp_dscp"))?;
            if let Some(s) = &g.srtp {
                mp.srtp = match s.get_ref().as_str() {
                    "off" => SrtpMode::Off,
                    "sdes" => SrtpMode::Sdes,
                    "optional" => SrtpMode::Optional,
                    "dtls" => SrtpMode::Dtls,
                    other => {
                        return cx.err(
                            s.span(),
                            field("srtp"),
                            format!(
                                "`{other}`: must be \"off\", \"sdes\", \"optional\" or \
                                 \"dtls\""
                            ),
                        );
                    }
                };
            }
            if let Some(list) = &g.srtp_suites {
                mp.srtp_suites = srtp_suites_of(&cx, list, mp.srtp, field("srtp_suites"))?;
            }
            if let Some(m) = &g.srtp_mki {
                let len = u8::try_from(*m.get_ref())
                    .ok()
                    .filter(|l| (1..=Mki::MAX_LEN).contains(l));
                let Some(len) = len else {
                    return cx.err(m.span(), field("srtp_mki"), "must be 1–128 (bytes)");
                };
                if !matches!(mp.srtp, SrtpMode::Sdes | SrtpMode::Optional) {
                    return cx.err(
                        m.span(),
                        field("srtp_mki"),
                        "identifies SDES keys: needs srtp = \"sdes\" or \"optional\"",
                    );
                }
                mp.srtp_mki = Some(len);
            }
            if let Some(src) = &g.source {
                let clip = read_wav(file, src.get_ref())
                    .or_else(|m| cx.err(src.span(), field("source"), m))?;
                // Resample now, not on the first call in the shard loop.
                for rate in [8000, 16000] {
                    if mp.codecs.iter().any(|c| decoded_rate(*c) == rate) {
                        clip.at_rate(rate);
                    }
                }
                mp.source = SourceKind::Wav(clip);
            }
            mp.sound = sound_of(&cx, g, gi, &event_actions)?;
            Some(mp)
        } else {
            if let Some((span, f)) = sound_keys(g).next() {
                return cx.err(span, field(f), "hears RTP: needs media = true");
            }

            if let Some(src) = &g.source {
                return cx.err(
                    src.span(),
                    field("source"),
                    "a WAV source needs media = true",
                );
            }
            if let Some(d) = &g.rtp_dscp {
                return cx.err(d.span(), field("rtp_dscp"), "marks RTP: needs media = true");
            }
            if let Some(s) = g.srtp.as_ref().filter(|s| s.get_ref() != "off") {
                return cx.err(s.span(), field("srtp"), "protects RTP: needs media = true");
            }
            if let Some(x) = g.ice.as_ref().filter(|x| *x.get_ref()) {
                return cx.err(
                    x.span(),
                    field("ice"),
                    "checks a media path: needs media = true",
                );
            }
            ice_servers_of(&cx, g, false, false, &field)?;
            if let Some(x) = g.rtcp_xr.as_ref().filter(|x| *x.get_ref()) {
                return cx.err(
                    x.span(),
                    field("rtcp_xr"),
                    "reports on RTP: needs media = true",
                );
            }
            if let Some(x) = &g.rtcp_interval {
                return cx.err(
                    x.span(),
                    field("rtcp_interval"),
                    "reports on RTP: needs media = true",
                );
            }
            if let Some(list) = &g.srtp_suites {
                return cx.err(
                    list.span(),
                    field("srtp_suites"),
                    "protects RTP: needs media = true",
                );
            }
            None
        };
        let session_timer = session_timer_of(&cx, g, gi)?;
        let ringing = ringing_of(&cx, g, gi, &role)?;
        plans.push(GroupPlan {
            server: site,
            media,
            actions,
            event_actions,
            name: g.name.clone(),
            endpoints,
            role,
            prack: g.prack,
            identity: identity_of(&cx, g, gi)?,
            ringing,
            session_timer,
            register: registers(g.registrar.get_ref()),
        });
    }
    let time_limit = match &tf.time_limit {
        Some(t) => cx.duration(t, "time_limit")?,
        None => duration * max_calls + Duration::from_secs(120),
    };
    let mut timers = sip_proto::transaction::TimerConfig::default();
    if let Some(t1) = &tf.t1 {
        timers.t1 = cx.duration(t1, "t1")?;
        if timers.t1.is_zero() || timers.t1 > Duration::from_secs(10) {
            return cx.err(t1.span(), "t1", "must be between 1ms and 10s");
        }
    }
    let rtp_ports = match &tf.rtp_ports {
        None => None,
        Some(r) => match parse_port_range(r.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => return cx.err(r.span(), "rtp_ports", e),
        },
    };
    let shards = tf
        .shards
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let builtin_sites: Vec<usize> = sites
        .iter()
        .enumerate()
        .filter(|(_, (_, _, b))| *b)
        .map(|(i, _)| i)
        .collect();
    // Started only when a group uses it.
    let builtin = builtin.filter(|_| !builtin_sites.is_empty());
    let mut servers = sites.into_iter().map(|(_, s, _)| s);
    let Some(server) = servers.next() else {
        return cx.err(0..0, "group", "no group");
    };
    Ok(Prepared {
        plan: RunPlan {
            more_servers: servers.collect(),
            name: tf.name,
            rtp_ports,
            keep_samples: false,
            server,
            groups: plans,
            call_duration: duration,
            ramp_per_sec,
            cps,
            register_expires: tf.register_expires.unwrap_or(300),
            shards,
            seed: tf.seed.unwrap_or(now_unix),
            time_limit,
            keep_all_traces: false,
            timers,
        },
        builtin,
        builtin_sites,
        pass: tf.pass,
        discover,
        proxies,
    })
}

/// The RFC 4028 session timer of group `g` (number `gi`): `None` without
/// `session_expires`; `min_se` and `refresher` need it.
fn session_timer_of(
    cx: &Ctx<'_>,
    g: &GroupEntry,
    gi: usize,
) -> Result<Option<SessionTimerConfig>, FileError> {
    let field = |f: &str| format!("group[{gi}].{f}");
    // Whole seconds, at least RFC 4028 §4's 90 s.
    let seconds = |v: &Spanned<String>, name: &str| -> Result<u32, FileError> {
        let d = cx.duration(v, &field(name))?;
        match u32::try_from(d.as_secs()) {
            Ok(s) if d.subsec_nanos() == 0 && s >= MIN_SE_FLOOR => Ok(s),
            _ => cx.err(
                v.span(),
                field(name),
                format!(
                    "`{}`: whole seconds, at least 90s (RFC 4028 §4), at most {}s",
                    v.get_ref(),
                    u32::MAX
                ),
            ),
        }
    };
    let Some(se) = &g.session_expires else {
        for (name, v) in [("min_se", &g.min_se), ("refresher", &g.refresher)] {
            if let Some(v) = v {
                return cx.err(
                    v.span(),
                    field(name),
                    "needs session_expires (session timers are off without it)",
                );
            }
        }
        return Ok(None);
    };
    let expires = seconds(se, "session_expires")?;
    let min_se = g
        .min_se
        .as_ref()
        .map(|m| {
            let min = seconds(m, "min_se")?;
            if min > expires {
                return cx.err(
                    m.span(),
                    field("min_se"),
                    format!(
                        "`{}` is above session_expires ({expires}s): RFC 4028 §4 wants the interval at least Min-SE",
                        m.get_ref()
                    ),
                );
            }
            Ok(min)
        })
        .transpose()?;
    let refresher = match g
        .refresher
        .as_ref()
        .map(|r| (r, r.get_ref().to_ascii_lowercase()))
    {
        None => Refresher::Auto,
        Some((_, r)) if r == "auto" => Refresher::Auto,
        Some((_, r)) if r == "uac" => Refresher::Uac,
        Some((_, r)) if r == "uas" => Refresher::Uas,
        Some((r, _)) => {
            return cx.err(
                r.span(),
                field("refresher"),
                format!("`{}`: expected uac, uas or auto", r.get_ref()),
            );
        }
    };
    Ok(Some(SessionTimerConfig {
        expires,
        min_se,
        refresher,
    }))
}

/// Whether the run passed its gates, and why not.
pub fn verdict(summary: &RunSummary, pass: &PassCriteria) -> Result<(), Vec<String>> {
    let mut failures = Vec::new();
    let success = f64::from(summary.outcomes.get("SUCCESS").copied().unwrap_or(0));
    let total = f64::from(summary.endpoints.max(1));
    let min_success = pass
        .min_success
        .unwrap_or(if pass.any_gate() { 0.0 } else { 100.0 });
    if 100.0 * success / total < min_success {
        failures.push(format!(
            "{:.1} % of endpoints succeeded, below min_success {min_success}",
            100.0 * success / total
        ));
    }
    if let Some(min) = pass.min_asr {
        match summary.asr {
            Some(asr) if asr >= min => {}
            Some(asr) => failures.push(format!("ASR {asr:.1} % below min_asr {min}")),
            None => failures.push("no calls were attempted, so min_asr cannot hold".into()),
        }
    }
    if let Some(min) = pass.min_ner {
        match summary.ner {
            Some(ner) if ner >= min => {}
            Some(ner) => failures.push(format!("NER {ner:.1} % below min_ner {min}")),
            None => failures.push("no calls were attempted, so min_ner cannot hold".into()),
        }
    }
    let timing_gates = [
        (
            "max_setup_p50_ms",
            pass.max_setup_p50_ms,
            summary.setup_p50_ms,
            "call setup P50",
        ),
        (
            "max_setup_p95_ms",
            pass.max_setup_p95_ms,
            summary.setup_p95_ms,
            "call setup P95",
        ),
        (
            "max_setup_p99_ms",
            pass.max_setup_p99_ms,
            summary.setup_p99_ms,
            "call setup P99",
        ),
        (
            "max_pdd_p50_ms",
            pass.max_pdd_p50_ms,
            summary.pdd_p50_ms,
            "post-dial delay P50",
        ),
        (
            "max_pdd_p95_ms",
            pass.max_pdd_p95_ms,
            summary.pdd_p95_ms,
            "post-dial delay P95",
        ),
        (
            "max_pdd_p99_ms",
            pass.max_pdd_p99_ms,
            summary.pdd_p99_ms,
            "post-dial delay P99",
        ),
    ];
    for (gate, limit, value, what) in timing_gates {
        let Some(max) = limit else { continue };
        match value {
            Some(p) if p <= max => {}
            Some(p) => failures.push(format!("{what} {p:.1} ms above {gate} {max}")),
            None if gate.starts_with("max_pdd") => {
                failures.push(format!("no call rang (no 18x), so {gate} cannot hold"))
            }
            None => failures.push(format!("no call was set up, so {gate} cannot hold")),
        }
    }
    let media_gates = [
        ("min_mos", pass.min_mos, summary.mos_avg, true, "MOS"),
        (
            "max_jitter_ms",
            pass.max_jitter_ms,
            summary.jitter_avg_ms,
            false,
            "jitter (ms)",
        ),
        (
            "max_loss_percent",
            pass.max_loss_percent,
            summary.loss_avg_percent,
            false,
            "loss (%)",
        ),
        (
            "min_mos_worst",
            pass.min_mos_worst,
            summary.mos_min,
            true,
            "worst endpoint's MOS",
        ),
        (
            "max_jitter_worst_ms",
            pass.max_jitter_worst_ms,
            summary.jitter_max_ms,
            false,
            "worst endpoint's jitter (ms)",
        ),
        (
            "max_rtt_ms",
            pass.max_rtt_ms,
            summary.rtt_avg_ms,
            false,
            "RTT (ms)",
        ),
    ];
    for (gate, limit, value, at_least, what) in media_gates {
        let Some(limit) = limit else { continue };
        match value {
            Some(v) if (at_least && v >= limit) || (!at_least && v <= limit) => {}
            Some(v) if what.starts_with("worst") => {
                failures.push(format!("{what} {v:.2} fails {gate} {limit}"));
            }
            Some(v) => failures.push(format!("mean {what} {v:.2} fails {gate} {limit}")),
            None if gate == "max_rtt_ms" && summary.media_calls > 0 => failures.push(
                "no round trip was measured (RTCP reports with LSR/DLSR, or RTCP XR DLRR), so \
                 max_rtt_ms cannot hold"
                    .into(),
            ),
            None if summary.media_calls_with_gaps > 0 => failures.push(format!(
                "none of {} calls was rated ({} without RTP, {} with audio gaps), so {gate} \
                 cannot hold",
                summary.media_calls,
                summary.media_calls_without_audio,
                summary.media_calls_with_gaps
            )),
            None if summary.media_calls > 0 => failures.push(format!(
                "no RTP was received in any of {} calls, so {gate} cannot hold",
                summary.media_calls
            )),
            None => failures.push(format!("no media was measured, so {gate} cannot hold")),
        }
    }
    // A call that heard nothing has no MOS to average, and it is the worst audio there is;
    // it lost every packet its peer was to send (its loss, from sequence numbers, is not
    // known: it counts in no mean). Jitter is a property of packets that arrived.
    for (gate, set) in [
        ("min_mos", pass.min_mos.is_some()),
        ("min_mos_worst", pass.min_mos_worst.is_some()),
        ("max_loss_percent", pass.max_loss_percent.is_some()),
    ] {
        if set && summary.media_calls_without_audio > 0 {
            failures.push(format!(
                "{} of {} calls received no RTP (no or one-way audio), so {gate} cannot hold",
                summary.media_calls_without_audio, summary.media_calls
            ));
        }
        // Likewise a call whose audio stopped for a while: the far end's sender stopped,
        // so the sequence numbers it sent show no loss, and the call has no MOS.
        if set && summary.media_calls_with_gaps > 0 {
            failures.push(format!(
                "{} of {} calls had an audio gap (no RTP for {:.0} s or more while the far end \
                 was to send; the longest {:.1} s), so {gate} cannot hold",
                summary.media_calls_with_gaps,
                summary.media_calls,
                media::gaps::AUDIO_GAP_MIN.as_secs_f64(),
                summary.media_gap_longest_s.unwrap_or_default()
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gates on NER, setup and post-dial delay percentiles, the worst endpoint's MOS and
    /// jitter, and RTT: each holds within its limit, and fails naming its figure and limit;
    /// setting any of them drops the default "every endpoint SUCCESS".
    #[test]
    fn timing_worst_case_and_rtt_gates_hold_or_name_the_figure() {
        let summary = crate::engine::RunSummary {
            endpoints: 10,
            calls_attempted: 10,
            calls_answered: 9,
            ner: Some(90.0),
            setup_p50_ms: Some(120.0),
            setup_p99_ms: Some(900.0),
            pdd_p50_ms: Some(80.0),
            pdd_p95_ms: Some(150.0),
            pdd_p99_ms: Some(400.0),
            media_calls: 9,
            mos_avg: Some(4.3),
            mos_min: Some(3.1),
            jitter_avg_ms: Some(2.0),
            jitter_max_ms: Some(45.0),
            rtt_avg_ms: Some(60.0),
            ..Default::default()
        };
        let holds = PassCriteria {
            min_ner: Some(90.0),
            max_setup_p50_ms: Some(150.0),
            max_setup_p99_ms: Some(1000.0),
            max_pdd_p50_ms: Some(100.0),
            max_pdd_p95_ms: Some(200.0),
            max_pdd_p99_ms: Some(500.0),
            min_mos_worst: Some(3.0),
            max_jitter_worst_ms: Some(50.0),
            max_rtt_ms: Some(100.0),
            ..Default::default()
        };
        assert_eq!(
            verdict(&summary, &holds),
            Ok(()),
            "9 of 10 SUCCESS is not gated"
        );
        let tight = PassCriteria {
            min_ner: Some(95.0),
            max_setup_p50_ms: Some(100.0),
            max_setup_p99_ms: Some(800.0),
            max_pdd_p50_ms: Some(50.0),
            max_pdd_p95_ms: Some(100.0),
            max_pdd_p99_ms: Some(300.0),
            min_mos_worst: Some(3.5),
            max_jitter_worst_ms: Some(30.0),
            max_rtt_ms: Some(50.0),
            ..Default::default()
        };
        let failures = verdict(&summary, &tight).unwrap_err();
        for says in [
            "NER 90.0 % below min_ner 95",
            "call setup P50 120.0 ms above max_setup_p50_ms 100",
            "call setup P99 900.0 ms above max_setup_p99_ms 800",
            "post-dial delay P50 80.0 ms above max_pdd_p50_ms 50",
            "post-dial delay P95 150.0 ms above max_pdd_p95_ms 100",
            "post-dial delay P99 400.0 ms above max_pdd_p99_ms 300",
            "worst endpoint's MOS 3.10 fails min_mos_worst 3.5",
            "worst endpoint's jitter (ms) 45.00 fails max_jitter_worst_ms 30",
            "mean RTT (ms) 60.00 fails max_rtt_ms 50",
        ] {
            assert!(failures.iter().any(|f| f == says), "{says}: {failures:?}");
        }
        assert_eq!(failures.len(), 9, "{failures:?}");
        // Nothing to measure: each says why it cannot hold.
        let empty = crate::engine::RunSummary {
            endpoints: 1,
            media_calls: 1,
            ..Default::default()
        };
        let failures = verdict(&empty, &tight).unwrap_err();
        assert!(
            failures
                .iter()
                .any(|f| f == "no calls were attempted, so min_ner cannot hold")
        );
        assert!(
            failures
                .iter()
                .any(|f| f == "no call rang (no 18x), so max_pdd_p95_ms cannot hold")
        );
        assert!(
            failures
                .iter()
                .any(|f| f.starts_with("no round trip was measured"))
        );
    }

    /// A call that received no RTP lost every packet its peer was to send: like `min_mos`,
    /// `max_loss_percent` cannot hold when some calls heard nothing, though the calls that
    /// did hear audio lost none (their mean loss is 0 %).
    #[test]
    fn calls_without_audio_fail_the_loss_gate_too() {
        let summary = crate::engine::RunSummary {
            media_calls: 4,
            media_calls_without_audio: 1,
            mos_avg: Some(4.4),
            loss_avg_percent: Some(0.0),
            jitter_avg_ms: Some(0.1),
            ..Default::default()
        };
        let pass = |loss, jitter| PassCriteria {
            max_loss_percent: loss,
            max_jitter_ms: jitter,
            ..Default::default()
        };
        let failures = verdict(&summary, &pass(Some(1.0), None)).unwrap_err();
        assert!(
            failures
                .iter()
                .any(|f| f.contains("received no RTP") && f.contains("max_loss_percent")),
            "{failures:?}"
        );
        // Jitter is a property of what arrived: a silent call has none to gate.
        assert_eq!(verdict(&summary, &pass(None, Some(20.0))), Ok(()));
        let all_heard = crate::engine::RunSummary {
            media_calls_without_audio: 0,
            ..summary
        };
        assert_eq!(verdict(&all_heard, &pass(Some(1.0), None)), Ok(()));
    }

    /// A call whose audio stopped for a while heard some RTP (its mean loss is 0 %: the far
    /// end's sender stopped, leaving no hole in its sequence numbers) and is not rated:
    /// `min_mos` and `max_loss_percent` cannot hold, even when the rated calls are perfect
    /// and even when no call was rated.
    #[test]
    fn calls_with_audio_gaps_fail_the_mos_and_loss_gates() {
        let summary = crate::engine::RunSummary {
            media_calls: 4,
            media_calls_with_gaps: 1,
            media_gap_longest_s: Some(5.2),
            mos_avg: Some(4.4),
            loss_avg_percent: Some(0.0),
            jitter_avg_ms: Some(0.1),
            ..Default::default()
        };
        let (min_mos, max_loss) = (
            PassCriteria {
                min_mos: Some(4.0),
                ..Default::default()
            },
            PassCriteria {
                max_loss_percent: Some(1.0),
                ..Default::default()
            },
        );
        for pass in [&min_mos, &max_loss] {
            let failures = verdict(&summary, pass).unwrap_err();
            assert!(
                failures
                    .iter()
                    .any(|f| f.starts_with("1 of 4 calls had an audio gap")
                        && f.contains("the longest 5.2 s")),
                "{failures:?}"
            );
        }
        let none_rated = crate::engine::RunSummary {
            media_calls_with_gaps: 4,
            mos_avg: None,
            loss_avg_percent: None,
            jitter_avg_ms: None,
            ..summary.clone()
        };
        let failures = verdict(&none_rated, &min_mos).unwrap_err();
        assert!(
            failures
                .iter()
                .any(|f| f
                    .starts_with("none of 4 calls was rated (0 without RTP, 4 with audio gaps)")),
            "{failures:?}"
        );
        let no_gaps = crate::engine::RunSummary {
            media_calls_with_gaps: 0,
            media_gap_longest_s: None,
            ..summary
        };
        assert_eq!(verdict(&no_gaps, &min_mos), Ok(()));
    }

    const GOOD: &str = r#"
name = "PBX smoke"
duration = "30s"
ramp = "20/s"

[[registrar]]
id = "pbx"
domain = "127.0.0.1"
transport = "udp"

[[accounts]]
registrar = "pbx"
range = { from = 1001, to = 1004, password = "pass{n}" }

[[group]]
name = "callees"
endpoints = 2
registrar = "pbx"
role = "answer"
answer_delay = "1s"

[[group]]
name = "callers"
endpoints = 2
registrar = "pbx"
call = "group:callees"
"#;

    /// `sip_dscp` on a registrar and `rtp_dscp` on a group, by number or name; a bad one
    /// names its line and field.
    #[test]
    fn dscp_marks_are_read_by_number_or_name() {
        let marked = GOOD
            .replace(
                "transport = \"udp\"",
                "transport = \"udp\"\nsip_dscp = \"cs3\"",
            )
            .replace(
                "call = \"group:callees\"",
                "call = \"group:callees\"\nrtp_dscp = 46",
            );
        let p = prepare("t.toml", &marked, b"s", 0).unwrap().plan;
        assert_eq!(p.server.transport.sip_dscp.map(Dscp::value), Some(24));
        let media = |name: &str| {
            let g = p.groups.iter().find(|g| g.name == name).unwrap();
            g.media.as_ref().unwrap().dscp.map(Dscp::value)
        };
        assert_eq!(media("callers"), Some(46));
        assert_eq!(media("callees"), None);
        for (bad, field, says) in [
            ("sip_dscp = 64", "registrar[0].sip_dscp", "0–63"),
            ("sip_dscp = -1", "registrar[0].sip_dscp", "0–63"),
            ("sip_dscp = \"XF\"", "registrar[0].sip_dscp", "unknown DSCP"),
        ] {
            let text = GOOD.replace(
                "transport = \"udp\"",
                &format!("transport = \"udp\"\n{bad}"),
            );
            let e = prepare("t.toml", &text, b"s", 0).unwrap_err();
            assert_eq!((e.field.as_str(), e.line), (field, 10), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        let no_media = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nmedia = false\nrtp_dscp = \"EF\"",
        );
        let e = prepare("t.toml", &no_media, b"s", 0).unwrap_err();
        assert_eq!(e.field, "group[1].rtp_dscp", "{e}");
    }

    /// The 0-based index of GOOD's `call = "group:callees"` line (lines added after it are
    /// numbered from it).
    fn call_line() -> usize {
        GOOD.lines()
            .position(|l| l == "call = \"group:callees\"")
            .unwrap()
    }

    /// `ice` per group (default off); on with `media = false` names its field.
    /// `stun_server`, `turn_server`, `turn_user`, `turn_password`, `ice_policy`: read into
    /// the group's media plan; bad values name their line and field.
    #[test]
    fn ice_servers_are_read_and_bad_values_named() {
        let with = |keys: &str| {
            GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\n{keys}"),
            )
        };
        let ok = "ice = true\nrtcp_mux = true\nstun_server = \"127.0.0.1:3478\"\n\
                  turn_server = \"127.0.0.1:3479\"\nturn_user = \"u\"\nturn_password = \"p\"\n\
                  ice_policy = \"relay\"";
        let p = prepare("t.toml", &with(ok), b"s", 0).unwrap().plan;
        let g = p.groups.iter().find(|g| g.name == "callers").unwrap();
        let s = &g.media.as_ref().unwrap().ice_servers;
        assert_eq!(s.stun, Some("127.0.0.1:3478".parse().unwrap()));
        let t = s.turn.as_ref().expect("turn");
        assert_eq!(
            (t.server, t.username.as_str(), t.password.as_str()),
            ("127.0.0.1:3479".parse().unwrap(), "u", "p")
        );
        assert!(s.relay_only);
        for (keys, field, says) in [
            (
                "stun_server = \"127.0.0.1:3478\"",
                "stun_server",
                "needs ice = true",
            ),
            (
                "ice = true\nstun_server = \"nowhere\"",
                "stun_server",
                "want host:port",
            ),
            (
                "ice = true\nturn_server = \"127.0.0.1:3478\"",
                "turn_server",
                "needs turn_user and turn_password",
            ),
            (
                "ice = true\nturn_user = \"u\"",
                "turn_user",
                "needs turn_server",
            ),
            (
                "ice = true\nice_policy = \"relay\"",
                "ice_policy",
                "needs turn_server",
            ),
            (
                "ice = true\nturn_server = \"127.0.0.1:1\"\nturn_user = \"u\"\n\
                 turn_password = \"p\"\nice_policy = \"relay\"",
                "ice_policy",
                "needs rtcp_mux = true",
            ),
            (
                "ice = true\nice_policy = \"some\"",
                "ice_policy",
                "must be \"all\" or \"relay\"",
            ),
        ] {
            let e = prepare("t.toml", &with(keys), b"s", 0).unwrap_err();
            assert_eq!(e.field, format!("group[1].{field}"), "{keys}: {e}");
            assert!(e.message.contains(says), "{keys}: {e}");
            assert!(e.to_string().starts_with("t.toml:"), "{e}");
        }
    }

    #[test]
    fn ice_is_read_per_group() {
        let text = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nice = true",
        );
        let p = prepare("t.toml", &text, b"s", 0).unwrap().plan;
        let ice = |name: &str| {
            let g = p.groups.iter().find(|g| g.name == name).unwrap();
            g.media.as_ref().unwrap().ice
        };
        assert_eq!((ice("callers"), ice("callees")), (true, false));
        let text = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nmedia = false\nice = true",
        );
        let e = prepare("t.toml", &text, b"s", 0).unwrap_err();
        assert_eq!(e.field, "group[1].ice", "{e}");
        assert!(e.message.contains("needs media = true"), "{e}");
    }

    /// `srtp` per group: off by default, "sdes", "optional" or "dtls"; a bad value, or SRTP without
    /// `rtcp_xr` per group (default off); on with `media = false` names its line and field;
    /// a value that is not a boolean is an error of the file.
    /// `ring_timeout` on callers, `reject`, `reject_percent` and `answer_delay = "never"` on
    /// callees; each on the wrong role, out of range or contradicting another names its
    /// line and field.
    #[test]
    fn ringing_keys_are_read_per_group() {
        let with = |callee: &str, caller: &str| {
            GOOD.replace(
                "answer_delay = \"1s\"",
                &format!("answer_delay = \"1s\"\n{callee}"),
            )
            .replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\n{caller}"),
            )
        };
        let p = prepare(
            "t.toml",
            &with(
                "reject = 486\nreject_percent = 30",
                "ring_timeout = \"30s\"",
            ),
            b"s",
            0,
        )
        .unwrap()
        .plan;
        let ringing = |name: &str| p.groups.iter().find(|g| g.name == name).unwrap().ringing;
        assert_eq!(
            ringing("callees").reject,
            Some(Reject {
                code: 486,
                percent: 30
            })
        );
        assert_eq!(
            ringing("callers").ring_timeout,
            Some(Duration::from_secs(30))
        );
        let p = prepare("t.toml", &with("reject = 603", ""), b"s", 0)
            .unwrap()
            .plan;
        assert_eq!(p.groups[0].ringing.reject.map(|r| r.percent), Some(100));
        let never = GOOD.replace("answer_delay = \"1s\"", "answer_delay = \"never\"");
        let p = prepare("t.toml", &never, b"s", 0).unwrap().plan;
        assert!(p.groups[0].ringing.never_answer);
        for (callee, caller, field, message) in [
            ("reject = 200", "", "group[0].reject", "400..=699"),
            (
                "reject = 486\nreject_percent = 0",
                "",
                "group[0].reject_percent",
                "1 ..= 100",
            ),
            (
                "reject_percent = 50",
                "",
                "group[0].reject_percent",
                "needs reject",
            ),
            (
                "",
                "reject = 486",
                "group[1].reject",
                "for answering groups",
            ),
            (
                "ring_timeout = \"5s\"",
                "",
                "group[0].ring_timeout",
                "for calling groups",
            ),
            (
                "",
                "ring_timeout = \"10ms\"",
                "group[1].ring_timeout",
                "100ms ..= 1h",
            ),
            (
                "",
                "ring_timeout = \"soon\"",
                "group[1].ring_timeout",
                "not a duration",
            ),
        ] {
            let e = prepare("t.toml", &with(callee, caller), b"s", 0).unwrap_err();
            assert_eq!(e.field, field, "{callee}/{caller}: {e}");
            assert!(e.message.contains(message), "{callee}/{caller}: {e}");
        }
        let e = prepare(
            "t.toml",
            &never.replace(
                "answer_delay = \"never\"",
                "answer_delay = \"never\"\nreject = 486",
            ),
            b"s",
            0,
        )
        .unwrap_err();
        assert_eq!(e.field, "group[0].reject", "{e}");
        assert!(e.message.contains("never answers"), "{e}");
    }

    /// A share of the calls refused is spread evenly: exactly that many in every hundred,
    /// 30 % refusing the 4th, 7th and 10th of every ten (counted from 1).
    #[test]
    fn refused_calls_are_spread_evenly() {
        for percent in [1u8, 25, 30, 50, 99, 100] {
            let r = Reject { code: 486, percent };
            let n = (0..100).filter(|&n| r.refuses(n)).count();
            assert_eq!(n, usize::from(percent), "{percent} %");
            let n = (100..300).filter(|&n| r.refuses(n)).count();
            assert_eq!(n, 2 * usize::from(percent), "{percent} %");
        }
        let r = Reject {
            code: 486,
            percent: 30,
        };
        let refused: Vec<u64> = (0..10).filter(|&n| r.refuses(n)).map(|n| n + 1).collect();
        assert_eq!(refused, [4, 7, 10]);
    }

    /// `user_agent`, `display_name` and `headers` per group: read in the file's order;
    /// a header SIP manages, a name that is not a token, a name given twice or a value with
    /// a line break names its line and field.
    #[test]
    fn identity_keys_are_read_per_group() {
        let with = |extra: &str| {
            GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\n{extra}"),
            )
        };
        let file = with(
            "user_agent = \"Yealink SIP-T46U 108.86.0.20\"\ndisplay_name = \"Desk {user}\"\n\
             headers = { \"X-Run\" = \"nightly\", \"P-Asserted-Identity\" = \"<sip:{user}@{domain}>\" }",
        );
        let p = prepare("t.toml", &file, b"s", 0).unwrap().plan;
        let id = |name: &str| &p.groups.iter().find(|g| g.name == name).unwrap().identity;
        let callers = id("callers");
        assert_eq!(
            callers.user_agent.as_deref(),
            Some("Yealink SIP-T46U 108.86.0.20")
        );
        assert_eq!(callers.caller.display_name.as_deref(), Some("Desk {user}"));
        let headers: Vec<(&str, &str)> = callers
            .caller
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers,
            [
                ("X-Run", "nightly"),
                ("P-Asserted-Identity", "<sip:{user}@{domain}>")
            ]
        );
        let callees = id("callees");
        assert!(callees.user_agent.is_none() && callees.caller.headers.is_empty());
        for (extra, field, message) in [
            (
                "headers = { Via = \"x\" }",
                "headers.Via",
                "written by the SIP stack",
            ),
            (
                "headers = { v = \"x\" }",
                "headers.v",
                "written by the SIP stack",
            ),
            (
                "headers = { Route = \"<sip:p;lr>\" }",
                "headers.Route",
                "outbound_proxy",
            ),
            (
                "headers = { \"User-Agent\" = \"x\" }",
                "headers.User-Agent",
                "user_agent",
            ),
            (
                "headers = { \"X Bad\" = \"x\" }",
                "headers.X Bad",
                "not a header name",
            ),
            (
                "headers = { \"X-A\" = \"a\", \"x-a\" = \"b\" }",
                "headers.x-a",
                "named twice",
            ),
            (
                "headers = { \"X-A\" = \"a\\r\\nVia: x\" }",
                "headers.X-A",
                "control character",
            ),
            ("headers = { \"X-A\" = \" \" }", "headers.X-A", "is empty"),
            (
                "display_name = \"a\\nb\"",
                "display_name",
                "control character",
            ),
            ("user_agent = \"\"", "user_agent", "is empty"),
        ] {
            let e = prepare("t.toml", &with(extra), b"s", 0).unwrap_err();
            assert_eq!(e.field, format!("group[1].{field}"), "{extra}: {e}");
            assert_eq!(e.line, call_line() + 2, "{extra}: {e}");
            assert!(e.message.contains(message), "{extra}: {e}");
        }
    }

    /// `rtcp_interval` per group (default 5 s, RFC 3550's): read as a duration; out of
    /// 100 ms ..= 1 h, not a duration, or with `media = false` names its line and field.
    #[test]
    fn rtcp_interval_is_read_per_group() {
        let with = |extra: &str| {
            GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\n{extra}"),
            )
        };
        let p = prepare("t.toml", &with("rtcp_interval = \"500ms\""), b"s", 0)
            .unwrap()
            .plan;
        let interval = |name: &str| {
            let g = p.groups.iter().find(|g| g.name == name).unwrap();
            g.media.as_ref().unwrap().rtcp_interval
        };
        assert_eq!(
            (interval("callers"), interval("callees")),
            (Duration::from_millis(500), Duration::from_secs(5))
        );
        for (extra, message) in [
            ("rtcp_interval = \"50ms\"", "must be 100ms ..= 1h"),
            ("rtcp_interval = \"2h\"", "must be 100ms ..= 1h"),
            ("rtcp_interval = \"often\"", "is not a duration"),
            (
                "media = false\nrtcp_interval = \"1s\"",
                "needs media = true",
            ),
        ] {
            let e = prepare("t.toml", &with(extra), b"s", 0).unwrap_err();
            assert_eq!(e.field, "group[1].rtcp_interval", "{extra}: {e}");
            assert_eq!(
                e.line,
                call_line() + 2 + extra.matches('\n').count(),
                "{extra}: {e}"
            );
            assert!(e.message.contains(message), "{extra}: {e}");
        }
    }

    #[test]
    fn rtcp_xr_is_read_per_group() {
        let text = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nrtcp_xr = true",
        );
        let p = prepare("t.toml", &text, b"s", 0).unwrap().plan;
        let xr = |name: &str| {
            let g = p.groups.iter().find(|g| g.name == name).unwrap();
            g.media.as_ref().unwrap().rtcp_xr
        };
        assert_eq!((xr("callers"), xr("callees")), (true, false));
        let text = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nmedia = false\nrtcp_xr = true",
        );
        let e = prepare("t.toml", &text, b"s", 0).unwrap_err();
        assert_eq!(e.field, "group[1].rtcp_xr", "{e}");
        assert_eq!(e.line, call_line() + 3, "{e}");
        assert!(e.message.contains("needs media = true"), "{e}");
        let text = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nrtcp_xr = \"yes\"",
        );
        let e = prepare("t.toml", &text, b"s", 0).unwrap_err();
        assert_eq!(e.line, call_line() + 2, "{e}");
    }

    /// media, names its line and field.
    #[test]
    fn srtp_is_read_per_group() {
        let text = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nsrtp = \"sdes\"",
        );
        let p = prepare("t.toml", &text, b"s", 0).unwrap().plan;
        let srtp = |name: &str| {
            let g = p.groups.iter().find(|g| g.name == name).unwrap();
            g.media.as_ref().unwrap().srtp
        };
        assert_eq!(
            (srtp("callers"), srtp("callees")),
            (SrtpMode::Sdes, SrtpMode::Off)
        );
        for (value, mode) in [("optional", SrtpMode::Optional), ("dtls", SrtpMode::Dtls)] {
            let text = GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\nsrtp = \"{value}\""),
            );
            let p = prepare("t.toml", &text, b"s", 0).unwrap().plan;
            let g = p.groups.iter().find(|g| g.name == "callers").unwrap();
            assert_eq!(g.media.as_ref().unwrap().srtp, mode);
        }
        let line = call_line() + 2;
        for (bad, says) in [
            (
                "srtp = \"dtls-srtp\"",
                "must be \"off\", \"sdes\", \"optional\" or \"dtls\"",
            ),
            ("srtp = \"SDES\"", "`SDES`"),
            ("media = false\nsrtp = \"sdes\"", "needs media = true"),
        ] {
            let text = GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\n{bad}"),
            );
            let e = prepare("t.toml", &text, b"s", 0).unwrap_err();
            assert_eq!(e.field, "group[1].srtp", "{e}");
            assert_eq!(e.line, line + bad.matches('\n').count(), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        // Written off with media = false is fine.
        let text = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nmedia = false\nsrtp = \"off\"",
        );
        assert!(prepare("t.toml", &text, b"s", 0).is_ok());
    }

    /// `srtp_suites` per group: the suites in the file's order (default every suite,
    /// strongest first); an unknown or repeated name, an empty list, or the list without
    /// SRTP names its line and field.
    #[test]
    fn srtp_suites_are_read_per_group() {
        let with = |extra: &str| {
            GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\nsrtp = \"sdes\"\n{extra}"),
            )
        };
        let suites = |text: &str| {
            let p = prepare("t.toml", text, b"s", 0).unwrap().plan;
            let g = p.groups.iter().find(|g| g.name == "callers").unwrap();
            g.media.as_ref().unwrap().srtp_suites.clone()
        };
        assert_eq!(suites(&with("")), Suite::ALL.to_vec());
        assert_eq!(
            suites(&with(
                "srtp_suites = [\"AEAD_AES_256_GCM\", \"AES_CM_128_HMAC_SHA1_80\"]"
            )),
            [Suite::AeadAes256Gcm, Suite::AesCm128HmacSha1_80]
        );
        let line = call_line() + 3;
        for (bad, says) in [
            (
                "srtp_suites = [\"AES_192_CM_HMAC_SHA1_80\"]",
                "unknown suite (AEAD_AES_256_GCM, ",
            ),
            (
                "srtp_suites = [\"AEAD_AES_128_GCM\", \"AEAD_AES_128_GCM\"]",
                "`AEAD_AES_128_GCM` twice",
            ),
            ("srtp_suites = []", "names no suite"),
        ] {
            let e = prepare("t.toml", &with(bad), b"s", 0).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.line),
                ("group[1].srtp_suites", line),
                "{e}"
            );
            assert!(e.message.contains(says), "{e}");
        }
        let off = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nsrtp_suites = [\"AEAD_AES_256_GCM\"]",
        );
        refused(&off, "group[1].srtp_suites", "needs srtp = \"sdes\"");
        let dtls = GOOD.replace(
            "call = \"group:callees\"",
            "call = \"group:callees\"\nsrtp = \"dtls\"\nsrtp_suites = [\"AEAD_AES_256_GCM\"]",
        );
        refused(
            &dtls,
            "group[1].srtp_suites",
            "does not apply to srtp = \"dtls\"",
        );
    }

    /// `srtp_mki`: the MKI's length in bytes on our SDES keys; 0, 129 or without SDES names
    /// its line and field.
    #[test]
    fn srtp_mki_is_read_and_checked() {
        let with = |extra: &str| {
            GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\n{extra}"),
            )
        };
        let p = prepare(
            "t.toml",
            &with("srtp = \"optional\"\nsrtp_mki = 4"),
            b"s",
            0,
        )
        .unwrap()
        .plan;
        let g = p.groups.iter().find(|g| g.name == "callers").unwrap();
        assert_eq!(g.media.as_ref().unwrap().srtp_mki, Some(4));
        // The line after `call` and `srtp`.
        let line = call_line() + 3;
        for (bad, says) in [
            ("srtp = \"sdes\"\nsrtp_mki = 0", "must be 1–128"),
            ("srtp = \"sdes\"\nsrtp_mki = 129", "must be 1–128"),
            (
                "srtp = \"dtls\"\nsrtp_mki = 1",
                "needs srtp = \"sdes\" or \"optional\"",
            ),
        ] {
            let e = prepare("t.toml", &with(bad), b"s", 0).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.line),
                ("group[1].srtp_mki", line),
                "{e}"
            );
            assert!(e.message.contains(says), "{e}");
        }
    }

    /// Groups on two registrars (product.md: "a group is a share of the endpoints with its
    /// own registrar"): one server each, in the order of their first group, accounts from
    /// each registrar's own pool, and `group:NAME` calls the callees at their own domain.
    #[test]
    fn groups_on_two_registrars_get_a_server_each() {
        let two = GOOD
            .replace(
                "[[accounts]]",
                "[[registrar]]\nid = \"b\"\ndomain = \"127.0.0.2\"\ntransport = \"tcp\"\n\n\
                 [[accounts]]\nregistrar = \"b\"\nrange = { from = 2001, to = 2002, password = \"x\" }\n\n[[accounts]]",
            )
            .replacen("registrar = \"pbx\"\nrole", "registrar = \"b\"\nrole", 1);
        let p = prepare("t.toml", &two, b"s", 0).unwrap();
        let servers: Vec<String> = p
            .plan
            .servers()
            .map(|s| s.registrar_uri.to_string())
            .collect();
        assert_eq!(
            servers,
            [
                "sip:127.0.0.2:5060;transport=tcp",
                "sip:127.0.0.1:5060;transport=udp"
            ],
            "{two}"
        );
        let g = &p.plan.groups;
        assert_eq!((g[0].server, g[1].server), (0, 1));
        assert_eq!(p.plan.server_of(1).transport.kind, FlowKind::Udp);
        assert_eq!(g[0].endpoints[0].user, "2001");
        assert_eq!(g[1].endpoints[0].user, "1001");
        let Role::Call { targets, .. } = &g[1].role else {
            panic!("callers call")
        };
        assert_eq!(targets[0].to_string(), "sip:2001@127.0.0.2");
        // The same extension on two registrars over shared UDP sockets is refused, named.
        let clash = two
            .replace("transport = \"tcp\"", "transport = \"udp\"")
            .replace("from = 2001, to = 2002", "from = 1001, to = 1002");
        let e = prepare("t.toml", &clash, b"s", 0).unwrap_err();
        assert_eq!(e.field, "group[1].registrar", "{e}");
        assert!(
            e.message.contains("user `1001` is in group `callees` too"),
            "{e}"
        );
        let apart = clash.replacen(
            "transport = \"udp\"",
            "transport = \"udp\"\nudp_socket = \"per-endpoint\"",
            1,
        );
        assert!(prepare("t.toml", &apart, b"s", 0).is_ok());
    }

    #[test]
    fn reads_a_test_file() {
        let p = prepare("t.toml", GOOD, b"s", 1_000).unwrap();
        assert_eq!(p.plan.call_duration, Duration::from_secs(30));
        assert_eq!(p.plan.ramp_per_sec, 20.0);
        assert_eq!(p.plan.groups[0].endpoints[1].user, "1002");
        assert_eq!(
            p.plan.groups[1].endpoints[0].user, "1003",
            "accounts are never shared"
        );
        let Role::Call { targets, .. } = &p.plan.groups[1].role else {
            panic!("callers call")
        };
        assert_eq!(targets[0].to_string(), "sip:1001@127.0.0.1");
        assert_eq!(
            p.plan.server.registrar_uri.to_string(),
            "sip:127.0.0.1:5060;transport=udp"
        );
    }

    #[test]
    fn group_targets_bracket_an_ipv6_domain() {
        let v6 = GOOD.replace("domain = \"127.0.0.1\"", "domain = \"::1\"");
        let p = prepare("t.toml", &v6, b"s", 0).unwrap();
        let Role::Call { targets, .. } = &p.plan.groups[1].role else {
            panic!("callers call")
        };
        assert_eq!(targets.len(), 2, "no callee dropped");
        assert_eq!(targets[0].to_string(), "sip:1001@[::1]");
        assert_eq!(
            p.plan.server.registrar_uri.to_string(),
            "sip:[::1]:5060;transport=udp"
        );
    }

    #[test]
    fn auto_defers_to_dns_and_keeps_port_and_transport_out_of_the_uri() {
        let auto = GOOD
            .replace("domain = \"127.0.0.1\"", "domain = \"pbx.example.com\"")
            .replace("transport = \"udp\"", "transport = \"auto\"")
            .replace("ramp = \"20/s\"", "dns_server = \"127.0.0.1:5353\"");
        let p = prepare("t.toml", &auto, b"s", 0).unwrap();
        assert_eq!(
            p.plan.server.registrar_uri.to_string(),
            "sip:pbx.example.com"
        );
        let [(0, d)] = p.discover.as_slice() else {
            panic!("located by DNS at run time: {:?}", p.discover)
        };
        assert_eq!(d.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!((d.destination.port, d.destination.transport), (None, None));
        // --dns-server wins over the file.
        let p = prepare_with(
            "t.toml",
            &auto,
            b"s",
            0,
            Some("10.0.0.1:53".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(
            p.discover[0].1.dns_server,
            Some("10.0.0.1:53".parse().unwrap())
        );
        // A fixed transport with an IP literal needs no DNS.
        assert!(
            prepare("t.toml", GOOD, b"s", 0)
                .unwrap()
                .discover
                .is_empty()
        );
        let bad = auto.replace("127.0.0.1:5353", "localhost");
        let e = prepare("t.toml", &bad, b"s", 0).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (4, "dns_server"), "{e}");
        assert!(e.message.contains("expected ADDRESS:PORT"), "{e}");
        let quic = auto.replace("\"auto\"", "\"quic\"");
        let e = prepare("t.toml", &quic, b"s", 0).unwrap_err();
        assert_eq!(e.field, "registrar[0].transport", "{e}");
        assert!(
            e.message
                .contains("expected udp, tcp, tls, ws, wss or auto"),
            "{e}"
        );
        // A fixed TLS transport with a DNS server: located by DNS, TLS only, port 5061.
        let tls = auto.replace("\"auto\"", "\"tls\"");
        let p = prepare("t.toml", &tls, b"s", 0).unwrap();
        let d = &p.discover[0].1;
        assert_eq!(
            (d.destination.port, d.destination.transport),
            (Some(5061), Some(sip_proto::target::Transport::Tls))
        );
        assert_eq!(p.plan.server.transport.kind, FlowKind::Tls);
    }

    #[test]
    fn an_outbound_proxy_names_its_transport_and_auto_completes_it_after_discovery() {
        for (transport, route) in [
            ("tls", "sip:127.0.0.2:5061;transport=tls"),
            ("tcp", "sip:127.0.0.2:5070;transport=tcp"),
            ("wss", "sip:127.0.0.2:443;transport=wss"),
            ("udp", "sip:127.0.0.2:5070"),
        ] {
            let proxy = if transport == "tcp" || transport == "udp" {
                "127.0.0.2:5070"
            } else {
                "127.0.0.2"
            };
            let text = GOOD.replace(
                "transport = \"udp\"",
                &format!(
                    "transport = \"{transport}\"\ntls_verify = \"skip\"\noutbound_proxy = \"{proxy}\""
                ),
            );
            let p = prepare("t.toml", &text, b"s", 0).unwrap_or_else(|e| panic!("{e}"));
            let (uri, addr) = p.plan.server.outbound_proxy.clone().unwrap();
            assert_eq!(uri.to_string(), route);
            assert_eq!(
                addr.to_string(),
                route.trim_start_matches("sip:").split(';').next().unwrap()
            );
        }
        // AUTO: host:port on the transport discovery chooses; the runner completes the URI
        // (`;transport=`) and, without a port, the transport's default.
        for (proxy, kind, route) in [
            (
                "127.0.0.2",
                FlowKind::Tls,
                "sip:127.0.0.2:5061;transport=tls",
            ),
            (
                "127.0.0.2:5070",
                FlowKind::Tcp,
                "sip:127.0.0.2:5070;transport=tcp",
            ),
            ("[::1]", FlowKind::Udp, "sip:[::1]:5060"),
        ] {
            let auto = GOOD.replace(
                "transport = \"udp\"",
                &format!("transport = \"auto\"\noutbound_proxy = \"{proxy}\""),
            );
            let p = prepare("t.toml", &auto, b"s", 0).unwrap_or_else(|e| panic!("{e}"));
            let mut target = p.plan.server.outbound_proxy.clone().unwrap();
            complete_outbound_proxy(&mut target, kind);
            assert_eq!(target.0.to_string(), route);
            assert_eq!(target.1.port(), target.0.port.unwrap());
        }
        let bad = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"tcp\"\noutbound_proxy = \"127.0.0.2:x\"",
        );
        let e = prepare("t.toml", &bad, b"s", 0).unwrap_err();
        assert_eq!(e.field, "registrar[0].outbound_proxy", "{e}");
        assert_eq!(
            e.line,
            bad.lines()
                .position(|l| l.starts_with("outbound_proxy"))
                .unwrap()
                + 1,
            "{e}"
        );
    }

    /// A proxy given by name is not resolved while the file is read (a name no resolver
    /// knows parses): it is located at the run's start by RFC 3263 on its own name, through
    /// the file's `dns_server`. Without a port: SRV for the registrar's transport (§4.2), and
    /// the Route keeps the bare name; with one: A/AAAA only, the port in the Route. AUTO
    /// leaves the transport to the proxy's own NAPTR/SRV; the runner completes the URI.
    #[test]
    fn an_outbound_proxy_given_by_name_is_located_at_run_start_on_its_own_name() {
        use sip_proto::target::Transport;
        for (transport, proxy, route, port, want) in [
            (
                "udp",
                "sbc.proxy.invalid",
                "sip:sbc.proxy.invalid",
                None,
                Some(Transport::Udp),
            ),
            (
                "udp",
                "sbc.proxy.invalid:5070",
                "sip:sbc.proxy.invalid:5070",
                Some(5070),
                Some(Transport::Udp),
            ),
            (
                "tcp",
                "sbc.proxy.invalid",
                "sip:sbc.proxy.invalid;transport=tcp",
                None,
                Some(Transport::Tcp),
            ),
            (
                "auto",
                "sbc.proxy.invalid",
                "sip:sbc.proxy.invalid",
                None,
                None,
            ),
        ] {
            let text = GOOD
                .replace(
                    "transport = \"udp\"",
                    &format!("transport = \"{transport}\"\noutbound_proxy = \"{proxy}\""),
                )
                .replace(
                    "ramp = \"20/s\"",
                    "ramp = \"20/s\"\ndns_server = \"127.0.0.1:5353\"",
                );
            let p = prepare("t.toml", &text, b"s", 0).unwrap_or_else(|e| panic!("{proxy}: {e}"));
            let (uri, _) = p.plan.server.outbound_proxy.clone().unwrap();
            assert_eq!(uri.to_string(), route, "{transport} {proxy}");
            let [(0, l)] = p.proxies.as_slice() else {
                panic!("located at run time: {:?}", p.proxies)
            };
            assert_eq!(l.destination.host.to_string(), "sbc.proxy.invalid");
            assert_eq!(l.destination.port, port, "{proxy}");
            assert_eq!(l.destination.transport, want, "{transport}");
            assert_eq!(l.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
            let line = text
                .lines()
                .position(|l| l.starts_with("outbound_proxy"))
                .unwrap()
                + 1;
            assert_eq!(
                l.field,
                format!("t.toml:{line}: registrar[0].outbound_proxy")
            );
            // The runner puts DNS's first target in and names the transport it kept.
            let mut target = p.plan.server.outbound_proxy.clone().unwrap();
            let found: SocketAddr = "127.0.0.9:5099".parse().unwrap();
            complete_located_proxy(&mut target, found, FlowKind::Tcp);
            assert_eq!(target.1, found);
            assert_eq!(target.0.port, port, "the Route keeps only the port written");
            assert_eq!(target.0.params.get("transport").flatten(), Some("tcp"));
        }
        // An IP literal needs no DNS (RFC 3263 §4.2), as before.
        let text = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"udp\"\noutbound_proxy = \"127.0.0.2\"",
        );
        let p = prepare("t.toml", &text, b"s", 0).unwrap();
        assert!(p.proxies.is_empty());
        assert_eq!(
            p.plan.server.outbound_proxy.unwrap().1,
            "127.0.0.2:5060".parse().unwrap()
        );
    }

    #[test]
    fn the_builtin_registrar_refuses_an_outbound_proxy() {
        let file = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\noutbound_proxy = \"127.0.0.2:5060\"\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n";
        let e = prepare("t.toml", file, b"s", 0).unwrap_err();
        assert_eq!(e.field, "registrar[0].outbound_proxy", "{e}");
        assert_eq!(e.line, 7, "{e}");
        assert!(e.to_string().contains("takes no outbound proxy"), "{e}");
    }

    /// The error `file` is refused with, after checking that it names `field` and says
    /// `words`.
    fn refused(file: &str, field: &str, words: &str) -> FileError {
        let e = prepare("t.toml", file, b"s", 0).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().contains(words), "{e}");
        e
    }

    /// `failed_flow_hold` sets the built-in registrar's 430 window; another server's entry
    /// refuses it, and a bad or over-long value names its line.
    #[test]
    fn failed_flow_hold_is_the_builtin_registrars() {
        let builtin = |hold: &str| {
            format!(
                "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\ntransport = \"tcp\"\n{hold}\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n"
            )
        };
        let p = prepare("t.toml", &builtin(""), b"s", 0).unwrap();
        assert_eq!(p.plan.server.transport.failed_flow_hold, None);
        let p = prepare("t.toml", &builtin("failed_flow_hold = \"5s\""), b"s", 0).unwrap();
        assert_eq!(
            p.plan.server.transport.failed_flow_hold,
            Some(Duration::from_secs(5))
        );
        for (hold, words) in [
            ("failed_flow_hold = \"soon\"", ""),
            ("failed_flow_hold = \"9000h\"", "at most 8760h"),
        ] {
            let e = refused(&builtin(hold), "registrar[0].failed_flow_hold", words);
            assert_eq!(e.line, 8, "{hold}: {e}");
        }
        let other = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"udp\"\nfailed_flow_hold = \"5s\"",
        );
        let e = refused(
            &other,
            "registrar[0].failed_flow_hold",
            "applies to the built-in registrar",
        );
        let line = other
            .lines()
            .position(|l| l.starts_with("failed_flow_hold"))
            .unwrap()
            + 1;
        assert_eq!(e.line, line, "{e}");
    }

    #[test]
    fn outbound_is_off_by_default_and_refuses_what_cannot_carry_it() {
        let p = prepare("t.toml", GOOD, b"s", 0).unwrap();
        assert!(!p.plan.server.transport.outbound);
        let on = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"tcp\"\noutbound = true",
        );
        let p = prepare("t.toml", &on, b"s", 0).unwrap();
        assert!(p.plan.server.transport.outbound);
        for (extra, words) in [
            (
                "transport = \"tcp\"\nconnections = \"shared\"",
                "flow per endpoint",
            ),
            ("keepalive = \"0s\"", "needs keep-alives"),
            ("register = false", "register = false"),
        ] {
            let file = GOOD.replace(
                "transport = \"udp\"",
                &format!(
                    "{}\noutbound = true",
                    extra.replace("keepalive", "transport = \"udp\"\nkeepalive")
                ),
            );
            let e = prepare("t.toml", &file, b"s", 0).unwrap_err();
            assert_eq!(e.field, "registrar[0].outbound", "{extra}: {e}");
            assert!(e.to_string().contains(words), "{extra}: {e}");
            let line = file.lines().position(|l| l == "outbound = true").unwrap() + 1;
            assert_eq!(e.line, line, "{e}");
        }
        // An outbound proxy takes the REGISTER too, over every transport (over a stream
        // transport the flow is the connection to the proxy).
        for transport in ["udp", "tcp", "tls", "ws", "wss"] {
            let proxied = GOOD.replace(
                "transport = \"udp\"",
                &format!(
                    "transport = \"{transport}\"\noutbound_proxy = \"127.0.0.2:5070\"\noutbound = true"
                ),
            );
            let p = prepare("t.toml", &proxied, b"s", 0).unwrap();
            assert!(
                p.plan.server.flow_via_proxy() == (transport != "udp"),
                "{transport}"
            );
        }
    }

    #[test]
    fn stream_transport_options() {
        let tcp = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"tcp\"\nkeepalive = \"10s\"",
        );
        let p = prepare("t.toml", &tcp, b"s", 0).unwrap();
        let t = &p.plan.server.transport;
        assert_eq!(
            (t.kind, t.keepalive),
            (FlowKind::Tcp, Some(Duration::from_secs(10)))
        );
        assert_eq!(
            p.plan.server.registrar_uri.to_string(),
            "sip:127.0.0.1:5060;transport=tcp"
        );
        let tls = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"tls\"\nport = 5061\ntls_verify = \"skip\"",
        );
        let p = prepare("t.toml", &tls, b"s", 0).unwrap();
        assert_eq!(p.plan.server.addr.port(), 5061);
        assert_eq!(p.plan.server.transport.tls.verify.name(), "Skip (insecure)");
        let custom = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"tls\"\ntls_verify = \"custom\"",
        );
        let e = prepare("t.toml", &custom, b"s", 0).unwrap_err();
        assert_eq!(e.field, "registrar[0].tls_ca", "{e}");
        let missing = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"tls\"\ntls_ca = \"/nonexistent/ca.pem\"",
        );
        let e = prepare("t.toml", &missing, b"s", 0).unwrap_err();
        assert_eq!(e.field, "registrar[0].tls_ca", "{e}");
        assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
        let key_only = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"tls\"\ntls_key = \"k.pem\"",
        );
        let e = prepare("t.toml", &key_only, b"s", 0).unwrap_err();
        assert_eq!(e.field, "registrar[0].tls_cert", "{e}");
        let ws = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"ws\"\nws_path = \"sip\"",
        );
        let e = prepare("t.toml", &ws, b"s", 0).unwrap_err();
        assert_eq!(e.field, "registrar[0].ws_path", "{e}");
        let udp = GOOD.replace(
            "transport = \"udp\"",
            "udp_socket = \"per-endpoint\"\nudp_recv_buffer = 1048576",
        );
        let t = prepare("t.toml", &udp, b"s", 0)
            .unwrap()
            .plan
            .server
            .transport;
        assert!(t.udp_per_endpoint);
        assert_eq!(t.udp_recv_buffer, Some(1 << 20));
        let bad = GOOD.replace("transport = \"udp\"", "udp_socket = \"each\"");
        let e = prepare("t.toml", &bad, b"s", 0).unwrap_err();
        assert_eq!(e.field, "registrar[0].udp_socket", "{e}");
    }

    /// `connections = "shared"` over a stream transport; a bad value, `shared` over UDP and
    /// `shared` with an outbound proxy are errors naming the line and the field.
    #[test]
    fn shared_connections_are_read_and_refused_where_they_do_not_apply() {
        let tcp = |extra: &str| {
            GOOD.replace(
                "transport = \"udp\"",
                &format!("transport = \"tcp\"\n{extra}"),
            )
        };
        let plan = |text: &str| prepare("t.toml", text, b"s", 0).map(|p| p.plan.server.transport);
        assert!(
            plan(&tcp("connections = \"shared\""))
                .unwrap()
                .shared_connection
        );
        assert!(
            !plan(&tcp("connections = \"per-endpoint\""))
                .unwrap()
                .shared_connection
        );
        assert!(!plan(&tcp("")).unwrap().shared_connection);
        let e = plan(&tcp("connections = \"one\"")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (10, "registrar[0].connections"),
            "{e}"
        );
        assert!(e.message.contains("expected per-endpoint or shared"), "{e}");
        let udp = GOOD.replace(
            "transport = \"udp\"",
            "transport = \"udp\"\nconnections = \"shared\"",
        );
        let e = plan(&udp).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (10, "registrar[0].connections"),
            "{e}"
        );
        assert!(e.message.contains("udp_socket"), "{e}");
        let e = plan(&tcp(
            "outbound_proxy = \"127.0.0.1:5070\"\nconnections = \"shared\"",
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (11, "registrar[0].connections"),
            "{e}"
        );
        assert!(e.message.contains("outbound_proxy"), "{e}");
    }

    #[test]
    fn errors_name_line_and_field() {
        let too_many = GOOD.replace(
            "endpoints = 2\nregistrar = \"pbx\"\ncall",
            "endpoints = 3\nregistrar = \"pbx\"\ncall",
        );
        let e = prepare("t.toml", &too_many, b"s", 0).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (24, "group[1].endpoints"),
            "{e}"
        );
        assert!(e.message.contains("needs 3 accounts"), "{e}");
        let e = prepare("t.toml", &GOOD.replace("\"1s\"", "\"soon\""), b"s", 0).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (20, "group[0].answer_delay"),
            "{e}"
        );
        let e = prepare(
            "t.toml",
            &GOOD.replace("ramp = \"20/s\"", "ramp = 20\nbogus = 1"),
            b"s",
            0,
        )
        .unwrap_err();
        // Two errors: the first in the file's order is reported (toml's preserve_order).
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("invalid type: integer `20`"), "{e}");
        let e = prepare(
            "t.toml",
            &GOOD.replace("ramp = \"20/s\"", "ramp = \"20/s\"\nbogus = 1"),
            b"s",
            0,
        )
        .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("unknown field `bogus`"), "{e}");
        let e = prepare(
            "t.toml",
            &GOOD.replace("call = \"group:callees\"", "call = \"group:nobody\""),
            b"s",
            0,
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (26, "no group named `nobody`")
        );
        assert_eq!(
            e.to_string(),
            "t.toml:26: group[1].call: no group named `nobody`"
        );
    }

    #[test]
    fn a_wav_source_is_read_relative_to_the_file_and_its_problems_named() {
        let dir = std::env::temp_dir().join(format!("sipmeter-wavsrc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tone: Vec<i16> = (0..22050)
            .map(|i| if i % 20 < 10 { 3000 } else { -3000 })
            .collect();
        std::fs::write(dir.join("ok.wav"), media::wav::write_pcm16(&tone, 22050)).unwrap();
        std::fs::write(dir.join("bad.wav"), b"RIFF\x04\0\0\0WAVE").unwrap();
        let file = dir.join("t.toml").display().to_string();
        let base = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n";
        let p = prepare(&file, &format!("{base}source = \"ok.wav\"\n"), b"s", 0).unwrap();
        let mp = p.plan.groups[0].media.as_ref().unwrap();
        let SourceKind::Wav(w) = &mp.source else {
            panic!("{mp:?}")
        };
        assert_eq!((w.rate(), w.samples().len()), (22050, 22050));
        // Square wave of ±3000: 20·log10(3000/32768) = −20.77 dBov.
        assert!((w.level_dbov() + 20.767).abs() < 0.01, "{}", w.level_dbov());
        assert_eq!(MediaPlan::default().source, SourceKind::Generated);

        let e = prepare(&file, &format!("{base}source = \"bad.wav\"\n"), b"s", 0).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (13, "group[0].source"));
        assert!(e.message.ends_with("bad.wav: no \"data\" chunk"), "{e}");
        let e = prepare(&file, &format!("{base}source = \"none.wav\"\n"), b"s", 0).unwrap_err();
        assert!(e.message.starts_with("cannot read "), "{e}");
        assert!(e.message.contains("none.wav"), "{e}");
        let e = prepare(
            &file,
            &format!("{base}media = false\nsource = \"ok.wav\"\n"),
            b"s",
            0,
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (14, "a WAV source needs media = true")
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// `offer = "late"` makes a calling group's INVITEs go without SDP; `early` and no
    /// `offer` are the default; anything else, or `offer` on a group that does not call, is an
    /// error naming the line and the field.
    #[test]
    fn a_calling_group_offers_early_or_late() {
        let offer = |p: &Prepared| match &p.plan.groups[1].role {
            Role::Call { offer, .. } => *offer,
            other => panic!("{other:?}"),
        };
        let p = prepare("t.toml", GOOD, b"s", 0).unwrap();
        assert_eq!(offer(&p), OfferTiming::Early);
        let with = |v: &str| {
            GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\noffer = {v}"),
            )
        };
        let p = prepare("t.toml", &with("\"late\""), b"s", 0).unwrap();
        assert_eq!(offer(&p), OfferTiming::Late);
        let p = prepare("t.toml", &with("\"Early\""), b"s", 0).unwrap();
        assert_eq!(offer(&p), OfferTiming::Early);
        let e = prepare("t.toml", &with("\"delayed\""), b"s", 0).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (27, "group[1].offer"), "{e}");
        assert!(e.message.contains("expected early or late"), "{e}");
        let answering = GOOD.replace(
            "answer_delay = \"1s\"",
            "answer_delay = \"1s\"\noffer = \"late\"",
        );
        let e = prepare("t.toml", &answering, b"s", 0).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (21, "group[0].offer"), "{e}");
    }

    #[test]
    fn session_timers_are_a_group_option_off_by_default() {
        use sip_proto::ua::{Refresher, SessionTimerConfig};
        let p = prepare("t.toml", GOOD, b"s", 0).unwrap();
        assert!(p.plan.groups.iter().all(|g| g.session_timer.is_none()));
        let with = |v: &str| {
            GOOD.replace(
                "call = \"group:callees\"",
                &format!("call = \"group:callees\"\n{v}"),
            )
        };
        let p = prepare(
            "t.toml",
            &with("session_expires = \"30m\"\nmin_se = \"120s\"\nrefresher = \"UAS\""),
            b"s",
            0,
        )
        .unwrap();
        assert_eq!(
            p.plan.groups[1].session_timer,
            Some(SessionTimerConfig {
                expires: 1800,
                min_se: Some(120),
                refresher: Refresher::Uas,
            })
        );
        assert!(p.plan.groups[0].session_timer.is_none());
        let p = prepare("t.toml", &with("session_expires = \"90\""), b"s", 0).unwrap();
        assert_eq!(
            p.plan.groups[1].session_timer,
            Some(SessionTimerConfig {
                expires: 90,
                min_se: None,
                refresher: Refresher::Auto,
            })
        );
        for (v, field, what) in [
            (
                "session_expires = \"60s\"",
                "session_expires",
                "at least 90s",
            ),
            (
                "session_expires = \"90.5s\"",
                "session_expires",
                "whole seconds",
            ),
            (
                "session_expires = \"soon\"",
                "session_expires",
                "not a duration",
            ),
            (
                "session_expires = \"90s\"\nmin_se = \"30s\"",
                "min_se",
                "at least 90s",
            ),
            (
                "session_expires = \"90s\"\nmin_se = \"120s\"",
                "min_se",
                "above session_expires",
            ),
            (
                "session_expires = \"90s\"\nrefresher = \"proxy\"",
                "refresher",
                "expected uac, uas or auto",
            ),
            ("min_se = \"120s\"", "min_se", "needs session_expires"),
            ("refresher = \"uac\"", "refresher", "needs session_expires"),
        ] {
            let e = prepare("t.toml", &with(v), b"s", 0).unwrap_err();
            let line = 27 + v.lines().count() - 1;
            assert_eq!(
                (e.line, e.field.as_str()),
                (line, format!("group[1].{field}").as_str()),
                "{v}: {e}"
            );
            assert!(e.message.contains(what), "{v}: {e}");
        }
    }

    #[test]
    fn a_trunk_that_does_not_register_needs_no_accounts() {
        let file = "name = \"trunk\"\nduration = \"1s\"\n\n[[registrar]]\nid = \"trunk\"\ndomain = \"127.0.0.1\"\nregister = false\n\n[[group]]\nname = \"out\"\nendpoints = 2\nregistrar = \"trunk\"\nprack = true\ncall = \"sip:{n}@127.0.0.1\"\n";
        let p = prepare("t.toml", file, b"s", 0).unwrap();
        let g = &p.plan.groups[0];
        assert!(!g.register && g.prack);
        assert_eq!(g.endpoints[1].user, "out2");
        assert!(g.endpoints.iter().all(|e| e.credentials.is_none()));
    }

    #[test]
    fn actions_expand_dtmf_digits_and_name_bad_fields() {
        let base = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n";
        let ok = format!(
            "{base}actions = [{{ at = \"1s\", do = \"dtmf\", method = \"info\", digits = \"1*\", duration = \"80ms\" }}, {{ at = \"500ms\", do = \"hold\" }}, {{ at = \"2s\", do = \"dtmf\", digits = \"#9\" }}]\n"
        );
        let p = prepare("t.toml", &ok, b"s", 0).unwrap();
        let at: Vec<u128> = p.plan.groups[0]
            .actions
            .iter()
            .map(|a| a.at.as_millis())
            .collect();
        assert_eq!(
            at,
            [500, 1000, 1160, 2000],
            "hold first, then one INFO digit every 2×80 ms, then the RFC 4733 digits"
        );
        assert_eq!(
            p.plan.groups[0].actions[3].kind,
            ActionKind::Dtmf {
                digits: "#9".into(),
                duration_ms: 100
            }
        );
        assert_eq!(
            p.plan.groups[0].actions[2].kind,
            ActionKind::DtmfInfo {
                digit: '*',
                duration_ms: 80
            }
        );
        let bad = format!("{base}actions = [{{ at = \"1s\", do = \"dtmf\", digits = \"1x\" }}]\n");
        let e = prepare("t.toml", &bad, b"s", 0).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (13, "group[0].actions[0].digits"),
            "{e}"
        );
        let bad = format!("{base}actions = [{{ at = \"1s\", do = \"dance\" }}]\n");
        let e = prepare("t.toml", &bad, b"s", 0).unwrap_err();
        assert!(
            e.message.contains(
                "expected hold, resume, reinvite, dtmf, transfer, attended_transfer, message or hangup"
            ),
            "{e}"
        );
    }

    /// `reinvite` with and without `codecs`; `codecs` unknown, empty, on another action or
    /// without media names the action's line and field.
    #[test]
    fn reinvite_actions_take_codecs_and_name_bad_fields() {
        let base = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n";
        let ok = format!(
            "{base}actions = [{{ at = \"1s\", do = \"reinvite\" }}, {{ at = \"2s\", do = \"re-INVITE\", codecs = [\"PCMA\", \"G722\"] }}]\n"
        );
        let p = prepare("t.toml", &ok, b"s", 0).unwrap();
        let kinds: Vec<&ActionKind> = p.plan.groups[0].actions.iter().map(|a| &a.kind).collect();
        assert_eq!(
            kinds,
            [
                &ActionKind::Reinvite { codecs: None },
                &ActionKind::Reinvite {
                    codecs: Some(vec![Codec::Pcma, Codec::G722])
                }
            ]
        );
        for (action, says) in [
            (
                "do = \"reinvite\", codecs = [\"G729\"]",
                "`G729`: unknown codec",
            ),
            ("do = \"reinvite\", codecs = []", "names no codec"),
            (
                "do = \"hold\", codecs = [\"PCMA\"]",
                "only a reinvite action offers codecs",
            ),
            (
                "do = \"reinvite\", codecs = [\"PCMA\"] }]\nmedia = false\n#",
                "needs media = true",
            ),
        ] {
            let bad = format!("{base}actions = [{{ at = \"1s\", {action} }}]\n");
            let e = prepare("t.toml", &bad, b"s", 0).unwrap_err();
            assert_eq!(
                (e.line, e.field.as_str()),
                (13, "group[0].actions[0].codecs"),
                "{e}"
            );
            assert!(e.message.contains(says), "{e}");
        }
    }

    #[test]
    fn transfer_actions_resolve_their_target_like_call_and_name_bad_fields() {
        let base = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"t\"\nendpoints = 2\nregistrar = \"builtin\"\nrole = \"answer\"\n\n[[group]]\nname = \"c\"\nendpoints = 2\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n";
        let uris = |p: &Prepared| match &p.plan.groups[1].actions[0].kind {
            ActionKind::Transfer { targets } => {
                targets.iter().map(ToString::to_string).collect::<Vec<_>>()
            }
            k => panic!("{k:?}"),
        };
        let ok = format!(
            "{base}actions = [{{ at = \"1s\", do = \"transfer\", to = \"sip:{{n}}00@pbx.example.com\" }}]\n"
        );
        let p = prepare("t.toml", &ok, b"s", 0).unwrap();
        assert_eq!(
            uris(&p),
            ["sip:100@pbx.example.com", "sip:200@pbx.example.com"]
        );
        let ok =
            format!("{base}actions = [{{ at = \"1s\", do = \"transfer\", to = \"group:t\" }}]\n");
        let p = prepare("t.toml", &ok, b"s", 0).unwrap();
        assert_eq!(uris(&p).len(), 2);
        assert!(uris(&p)[0].starts_with("sip:t1@"), "{:?}", uris(&p));
        let attended = |extra: &str| {
            format!(
                "{base}actions = [{{ at = \"1s\", do = \"attended_transfer\", to = \"group:t\"{extra} }}]\n"
            )
        };
        let p = prepare("t.toml", &attended(", consult = \"3s\""), b"s", 0).unwrap();
        match &p.plan.groups[1].actions[0].kind {
            ActionKind::AttendedTransfer { targets, consult } => {
                assert_eq!((targets.len(), *consult), (2, Duration::from_secs(3)));
            }
            k => panic!("{k:?}"),
        }
        let p = prepare("t.toml", &attended(""), b"s", 0).unwrap();
        assert!(matches!(
            p.plan.groups[1].actions[0].kind,
            ActionKind::AttendedTransfer {
                consult: DEFAULT_CONSULT,
                ..
            }
        ));
        for (action, field, what) in [
            (
                "do = \"attended_transfer\"",
                "to",
                "attended_transfer needs `to`",
            ),
            (
                "do = \"attended_transfer\", to = \"group:t\", consult = \"soon\"",
                "consult",
                "is not a duration",
            ),
            (
                "do = \"transfer\", to = \"group:t\", consult = \"1s\"",
                "consult",
                "only an attended_transfer",
            ),
            ("do = \"transfer\"", "to", "transfer needs `to`"),
            (
                "do = \"transfer\", to = \"group:nope\"",
                "to",
                "no group named `nope`",
            ),
            (
                "do = \"transfer\", to = \"not a uri\"",
                "to",
                "is not a URI",
            ),
        ] {
            let bad = format!("{base}actions = [{{ at = \"1s\", {action} }}]\n");
            let e = prepare("t.toml", &bad, b"s", 0).unwrap_err();
            assert_eq!(
                (e.line, e.field.as_str()),
                (19, format!("group[1].actions[0].{field}").as_str()),
                "{action}: {e}"
            );
            assert!(e.message.contains(what), "{action}: {e}");
        }
    }

    /// Actions on an event: `on` with `after` and `repeat`, beside timed ones; an INFO DTMF
    /// of several digits is one step per digit, timed from the event; `hangup`.
    #[test]
    fn event_actions_sit_beside_timed_ones() {
        let base = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n";
        let ok = format!(
            "{base}actions = [{{ at = \"3s\", do = \"hangup\" }}, {{ on = \"dtmf:5\", do = \"hold\" }}, {{ on = \"Held\", after = \"1s\", do = \"dtmf\", digits = \"12\", method = \"info\", duration = \"50ms\", repeat = true }}, {{ on = \"dtmf:#\", do = \"hang-up\" }}]\n"
        );
        let p = prepare("t.toml", &ok, b"s", 0).unwrap();
        let g = &p.plan.groups[0];
        assert_eq!(
            g.actions,
            [CallAction {
                at: Duration::from_secs(3),
                kind: ActionKind::Hangup
            }]
        );
        let ev = &g.event_actions;
        assert_eq!(ev.len(), 3);
        assert_eq!(
            (&ev[0].on, ev[0].repeat, ev[0].name.as_str()),
            (&CallTrigger::Dtmf(Some("5".into())), false, "hold")
        );
        assert_eq!(
            ev[0].steps,
            [CallAction {
                at: Duration::ZERO,
                kind: ActionKind::Hold
            }]
        );
        assert_eq!((&ev[1].on, ev[1].repeat), (&CallTrigger::Held, true));
        let steps: Vec<(u128, &ActionKind)> = ev[1]
            .steps
            .iter()
            .map(|s| (s.at.as_millis(), &s.kind))
            .collect();
        assert_eq!(
            steps,
            [
                (
                    1000,
                    &ActionKind::DtmfInfo {
                        digit: '1',
                        duration_ms: 50
                    }
                ),
                (
                    1100,
                    &ActionKind::DtmfInfo {
                        digit: '2',
                        duration_ms: 50
                    }
                ),
            ]
        );
        assert_eq!(ev[2].on, CallTrigger::Dtmf(Some("#".into())));
        assert_eq!(ev[2].steps[0].kind, ActionKind::Hangup);
    }

    /// A bad action on an event names its line and field: an unknown event, `at` and `on`
    /// both, neither, bad digits, `after` or `repeat` without `on`.
    #[test]
    fn bad_event_actions_name_their_line_and_field() {
        let base = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n";
        for (action, field, what) in [
            (
                "on = \"ringing\", do = \"hold\"",
                "on",
                "`ringing`: expected an event: dtmf, dtmf:DIGITS, held, resumed, reinvite, \
                 answered, audio, silence, silence:DURATION, early_media, message, \
                 message:TEXT, tone:HZ[+HZ][:DURATION], tone:HZ[+HZ]:ON/OFF, busy, reorder, \
                 tone:sit, sit:KIND or inband_dtmf[:DIGITS]",
            ),
            (
                "on = \"sit:busy\", do = \"hangup\"",
                "on",
                "`sit:busy`: `busy` is not a SIT kind",
            ),
            (
                "on = \"tone:440+4800\", do = \"hangup\"",
                "on",
                "`tone:440+4800`: 4800 Hz is outside 50–3900 Hz",
            ),
            (
                "at = \"1s\", on = \"held\", do = \"hold\"",
                "on",
                "`at` a time after the answer or `on` an event, not both",
            ),
            ("do = \"hold\"", "at", "needs `at`"),
            (
                "on = \"dtmf:12x\", do = \"hold\"",
                "on",
                "`x` is not a DTMF digit",
            ),
            ("on = \"dtmf:\", do = \"hold\"", "on", "names no digit"),
            (
                "at = \"1s\", after = \"1s\", do = \"hold\"",
                "after",
                "only with `on`",
            ),
            (
                "at = \"1s\", repeat = true, do = \"hold\"",
                "repeat",
                "only with `on`",
            ),
            (
                "on = \"held\", after = \"soon\", do = \"hold\"",
                "after",
                "",
            ),
            (
                "on = \"held\", do = \"dance\"",
                "do",
                "expected hold, resume, reinvite, dtmf, transfer, attended_transfer, message or hangup",
            ),
            (
                "on = \"silence:0s\", do = \"hold\"",
                "on",
                "a silence lasts more than 0 s",
            ),
            (
                "on = \"silence:long\", do = \"hold\"",
                "on",
                "`silence:long`: the silence's length",
            ),
            (
                "at = \"1s\", nth = 2, do = \"hold\"",
                "nth",
                "only with `on`",
            ),
            ("on = \"audio\", nth = 0, do = \"hold\"", "nth", "1 or more"),
            (
                "on = \"audio\", nth = 2, repeat = true, do = \"hold\"",
                "nth",
                "not with `repeat = true`",
            ),
        ] {
            let bad = format!(
                "{base}actions = [\n  {{ at = \"1s\", do = \"hold\" }},\n  {{ {action} }},\n]\n"
            );
            let e = prepare("t.toml", &bad, b"s", 0).unwrap_err();
            assert_eq!(
                (e.line, e.field.as_str()),
                (15, format!("group[0].actions[1].{field}").as_str()),
                "{action}: {e}"
            );
            assert!(e.message.contains(what), "{action}: {e}");
        }
        // The sound settings: where set, checked; an action on what is heard needs media.
        for (extra, line, field, what) in [
            (
                "speech_level = \"loud\"\n",
                13,
                "group[0].speech_level",
                "from -100dBov to 0dBov",
            ),
            (
                "speech_level = \"-145dBov\"\n",
                13,
                "group[0].speech_level",
                "from -100dBov",
            ),
            (
                "speech_min = \"0s\"\n",
                13,
                "group[0].speech_min",
                "more than 0 s",
            ),
            (
                "silence = \"0ms\"\n",
                13,
                "group[0].silence",
                "more than 0 s",
            ),
            (
                "media = false\nsilence = \"2s\"\n",
                14,
                "group[0].silence",
                "needs media = true",
            ),
            (
                "media = false\nactions = [{ on = \"silence\", do = \"hangup\" }]\n",
                14,
                "group[0].actions[0].on",
                "hears RTP: needs media = true",
            ),
            (
                "media = false\nactions = [{ on = \"tone:2100\", do = \"hangup\" }]\n",
                14,
                "group[0].actions[0].on",
                "hears RTP: needs media = true",
            ),
            (
                "media = false\nactions = [{ on = \"tone:sit\", do = \"hangup\" }]\n",
                14,
                "group[0].actions[0].on",
                "hears RTP: needs media = true",
            ),
        ] {
            let e = prepare("t.toml", &format!("{base}{extra}"), b"s", 0).unwrap_err();
            assert_eq!((e.line, e.field.as_str()), (line, field), "{extra}: {e}");
            assert!(e.message.contains(what), "{extra}: {e}");
        }
    }

    /// A group hears sound when it acts on `audio` or `silence`, or sets how: its calls'
    /// media watches with the group's level, length and silence (defaults −45 dBov, 60 ms,
    /// 1 s); other groups' calls do not watch.
    #[test]
    fn sound_settings_reach_the_groups_media() {
        let base = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\ncall = \"sip:x@sipmeter.builtin\"\n";
        let sound = |extra: &str| {
            let p = prepare("t.toml", &format!("{base}{extra}"), b"s", 0).unwrap();
            p.plan.groups[0].media.as_ref().unwrap().sound
        };
        assert_eq!(sound(""), None);
        assert_eq!(
            sound("actions = [{ on = \"audio\", do = \"hold\" }]\n"),
            Some(SoundConfig::default())
        );
        assert_eq!(
            sound("speech_level = \"-30 dBov\"\nspeech_min = \"100ms\"\nsilence = \"1.5s\"\n"),
            Some(SoundConfig {
                threshold_dbov: -30.0,
                min_sound: Duration::from_millis(100),
                gap: Duration::from_millis(1500),
            })
        );
        assert_eq!(
            sound("speech_level = \"-50\"\n").unwrap().threshold_dbov,
            -50.0
        );
        let p = prepare(
            "t.toml",
            &format!("{base}actions = [{{ on = \"silence:2500ms\", nth = 3, do = \"hangup\" }}]\n"),
            b"s",
            0,
        )
        .unwrap();
        let a = &p.plan.groups[0].event_actions[0];
        assert_eq!(
            (&a.on, a.nth, a.repeat),
            (
                &CallTrigger::Silence(Some(Duration::from_millis(2500))),
                Some(3),
                false
            )
        );
    }

    #[test]
    fn rtp_port_ranges_are_checked_without_overflow() {
        let base = "name = \"a\"\nduration = \"1s\"\n";
        let rest = "\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"c\"\nendpoints = 1\nregistrar = \"builtin\"\nrole = \"answer\"\n";
        for bad in [
            "65535-65535",
            "65534-65535",
            "100-200",
            "9000-8000",
            "x-y",
            "5000",
        ] {
            let file = format!("{base}rtp_ports = \"{bad}\"\n{rest}");
            let e = prepare("t.toml", &file, b"s", 0).unwrap_err();
            assert_eq!((e.line, e.field.as_str()), (3, "rtp_ports"), "{bad}: {e}");
        }
        let file = format!("{base}rtp_ports = \"65528-65535\"\n{rest}");
        let p = prepare("t.toml", &file, b"s", 0).unwrap();
        assert_eq!(p.plan.rtp_ports, Some((65528, 65535)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        // Too long for a Duration: an error, not a panic.
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("9999999999999999h").is_err());
    }

    #[test]
    fn builtin_service_targets_resolve_to_the_builtin_domain() {
        let base = "name = \"a\"\nduration = \"2s\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"c\"\nendpoints = 3\nregistrar = \"builtin\"\n";
        for service in ["echo", "tone", "sit"] {
            let p = prepare(
                "t.toml",
                &format!("{base}call = \"builtin:{service}\"\n"),
                b"s",
                0,
            )
            .unwrap();
            let Role::Call { targets, .. } = &p.plan.groups[0].role else {
                panic!("{:?}", p.plan.groups[0].role)
            };
            assert_eq!(targets.len(), 1, "every endpoint calls the one service");
            assert_eq!(
                targets[0].to_string(),
                format!("sip:{service}@sipmeter.builtin")
            );
        }
        let e = prepare(
            "t.toml",
            &format!("{base}call = \"builtin:music\"\n"),
            b"s",
            0,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml:12: group[0].call: no service `music`: use builtin:echo, builtin:tone or builtin:sit"
        );
        // A test on another registrar cannot use them.
        let e = prepare(
            "t.toml",
            &GOOD.replace("call = \"group:callees\"", "call = \"builtin:echo\""),
            b"s",
            0,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml:26: group[1].call: `builtin:echo` needs the built-in registrar (kind = \"builtin\")"
        );
    }
}
