//! Service numbers answered by the registrar itself: `echo` reflects the caller's RTP back
//! to it, `tone` plays a 1 kHz tone, `sit` plays a Special Information Tone in early media
//! and then refuses the call (a number not in service, the old network's way). One
//! endpoint can so test a path alone.
//!
//! `sit`: the 183 Session Progress carries the SDP answer and the media starts with it
//! ([`sit_session`]: 0.2 s of silence, the SIT IC "intercept" of ANSI T1.401 — 913.8 Hz
//! 274 ms, 1370.6 Hz 274 ms, 1776.7 Hz 380 ms — at −24 dBm0, 1.5 s of silence, looped);
//! [`SIT_FINAL_AFTER`] after the 183, 404 Not Found ends the call (never answered). A
//! CANCEL before that gets 200 and the INVITE 487 (RFC 3261 §9.2). An INVITE without an
//! offer gets the 404 at once (no early media without an answer to give). A final non-2xx
//! response to an INVITE that was taken (sent after its 100 or 183: `sit`'s 404, a CANCEL's
//! 487, a 503 for want of ports) waits for its ACK as RFC 3261 §17.2.1 says: sent again for
//! a retransmitted INVITE and, over UDP, on Timer G until the ACK or Timer H.
//!
//! The SIP side is a small sans-IO UAS ([`Services`], driven by the [`crate::Registrar`]
//! core): INVITE → 100, 180, 200 with an SDP answer (RFC 3264, through the media crate's
//! offer/answer), ACK, re-INVITE/UPDATE (hold and resume), BYE. The media side is two small
//! sans-IO pieces the socket driver runs per call: [`EchoMedia`] (reflect RTP, answer RTCP)
//! and [`tone_session`] (a [`MediaSession`] whose source is the tone).
//!
//! SRTP with SDES keys (RFC 4568): an offer with a usable `a=crypto` line (`RTP/SAVP`, or
//! `RTP/AVP` offered best effort) is answered with its tag and suite and a fresh master key
//! of ours, drawn from the system's CSPRNG when the call's ports are bound (the one read
//! outside the inputs: keys must be secret, RFC 3711 §8.1.1); a plain offer stays plain RTP.
//! Our offer (in the 200 to an INVITE without one) is `RTP/AVP` with our `a=crypto` lines:
//! SRTP with a caller that answers a line, plain RTP with one that does not.
//!
//! DTLS-SRTP (RFC 5763, RFC 5764): an offer on `UDP/TLS/RTP/SAVP` (or a legacy `RTP/SAVP`
//! with `a=fingerprint` and no `a=crypto`) is answered on the same transport with the
//! fingerprint of the services' certificate (one self-signed P-256 certificate per process)
//! and `a=setup:active` to the usual `actpass`: the service is the DTLS client, its
//! ClientHello goes to the offer's RTP address when the media starts, on the RTP port (rtcp-mux
//! is required, as on our callers' side). The handshake's keys then key SRTP in both
//! directions: the tone's session runs the handshake itself; [`EchoMedia`] runs a
//! [`DtlsSrtp`] and reflects nothing until its keys are there. A re-INVITE keeps the call's
//! DTLS association (its offer must carry DTLS-SRTP again); one that would start or drop
//! DTLS inside a call gets 488, as on our callers' side (no new association inside a call).
//!
//! # Driving the services (through [`crate::Registrar`])
//!
//! After every input to the registrar, drain [`crate::Registrar::poll_service_event`]:
//! - [`ServiceEvent::Bind`]: bind an RTP/RTCP port pair for the call and report the RTP
//!   address with [`crate::Registrar::handle_service_bound`] (or the failure: the caller
//!   gets 503). The 180 and the 200 with the SDP answer go out then.
//! - [`ServiceEvent::Media`]: start (or update, after a re-INVITE) the call's media.
//! - [`ServiceEvent::End`]: release the call's media.
//!
//! When the driver sees no RTP or RTCP from the caller for a while (the caller vanished), it
//! calls [`crate::Registrar::end_service_call`]: the registrar sends a BYE and forgets the
//! call. A call longer than [`ServiceLimits::max_call`] is ended the same way by a timer.
//!
//! Service calls are authenticated like any other INVITE: with ephemeral or static
//! credentials the caller gets a 407 first. An open media reflector would let anyone aim RTP
//! (a tone, or reflected packets) at an address of their choosing.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::audio::{SourceConfig, SourceKind};
use media::dtls::{DtlsIdentity, DtlsSrtp, DtlsSummary};
use media::rtcp::{self, ReportBlock, RtcpPacket, ntp_middle};
use media::rtp::{self, RtpPacket};
use media::sdp::{self, Codec, Direction, LocalMedia, Negotiated, Sdes, SessionDescription};
use media::session::{ConfigError, MediaSession, SessionConfig};
use media::srtp::{SrtpContext, SrtpError, SrtpParams, Suite};
use media::stats::{ReceiveStats, ReportInterval};
use media::wav::WavAudio;
use sip_msg::typed::{Contact, NameAddr, Via};
use sip_msg::{BRANCH_MAGIC, Header, HeaderName, Message, Method, RequestBuilder, Uri};

use crate::{Flow, Ifaces, RegistrarConfig};

/// The tone's frequency, Hz.
pub const TONE_HZ: u32 = 1000;
/// The tone's level: RMS −10 dBov (a sine of amplitude 0.447 of full scale).
pub const TONE_DBOV: f64 = -10.0;

/// RFC 3261 §17.1.1.1: T1 and T2 for 2xx retransmission (§13.3.1.4).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How long an ended call is remembered, to answer a retransmitted BYE (64·T1, Timer J).
const LINGER: Duration = Duration::from_secs(32);
/// The branch prefix of requests we send as a UAS (BYE), so their responses stop here.
const BRANCH_PREFIX: &str = "z9hG4bKsvc";

/// A service number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Reflects every RTP packet back to its source.
    Echo,
    /// Plays a [`TONE_HZ`] tone at [`TONE_DBOV`].
    Tone,
    /// Early media with a SIT IC, then 404 (see the module doc).
    Sit,
}

/// How long after its 183 the `sit` service refuses the call (404).
pub const SIT_FINAL_AFTER: Duration = Duration::from_millis(2500);

impl Service {
    /// The service a Request-URI user names (`echo`, `tone`).
    pub fn from_user(user: &str) -> Option<Self> {
        match user {
            "echo" => Some(Service::Echo),
            "tone" => Some(Service::Tone),
            "sit" => Some(Service::Sit),
            _ => None,
        }
    }

    /// Its user name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Tone => "tone",
            Service::Sit => "sit",
        }
    }
}

/// A service call, as the driver knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceCallId(pub u64);

/// Why a service call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller sent BYE.
    Bye,
    /// The caller never acknowledged our 200 (RFC 3261 §13.3.1.4: 64·T1).
    NoAck,
    /// Longer than [`ServiceLimits::max_call`].
    MaxDuration,
    /// The driver ended it (no media from the caller).
    Inactive,
    /// Refused (500) after its ports were bound: the driver releases them.
    Refused,
    /// Our 200 carried the offer (the INVITE had none) and the ACK brought no usable answer
    /// (RFC 3264 §5: none, unreadable, or no codec of ours): BYE.
    BadAnswer,
    /// `sit`: refused with 404 after its early media.
    Refused404,
    /// `sit`: the caller CANCELled during the early media (487).
    Cancelled,
}

/// What the socket driver must do for the service calls.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceEvent {
    /// Bind an RTP/RTCP port pair and report with `handle_service_bound`.
    Bind {
        /// The call.
        call: ServiceCallId,
        /// Where the caller's INVITE came from (to pick a local address facing it).
        peer: SocketAddr,
        /// The listener it came in on ([`crate::Flow::iface`]): bind on that listener's
        /// address, so a caller on a second listener (another address or family) gets
        /// media it can reach.
        iface: u8,
    },
    /// Start or update the call's media with this negotiation.
    Media {
        /// The call.
        call: ServiceCallId,
        /// Echo or tone.
        service: Service,
        /// The outcome of offer/answer.
        negotiated: Negotiated,
    },
    /// Release the call's media.
    End {
        /// The call.
        call: ServiceCallId,
        /// Why.
        reason: EndReason,
    },
}

/// Limits of service calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// A call is ended with BYE after this long (past about a century: never).
    pub max_call: Duration,
}

impl Default for ServiceLimits {
    /// Four hours.
    fn default() -> Self {
        Self {
            max_call: Duration::from_secs(4 * 3600),
        }
    }
}

/// Service counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Calls answered 200.
    pub answered: u64,
    /// Calls now up (answered or being set up).
    pub active: u64,
    /// Offers refused with 488 (initial INVITEs and re-INVITEs).
    pub refused_488: u64,
    /// Calls ended by the caller's BYE.
    pub ended_bye: u64,
    /// Calls ended by us (no ACK, too long, no media).
    pub ended_by_us: u64,
    /// SRTP/SRTCP packets from callers that failed authentication (dropped), as the media
    /// driver reports them when a call's media is released
    /// ([`crate::Registrar::count_service_srtp`]).
    pub srtp_auth_failures: u64,
    /// SRTP/SRTCP packets from callers replayed or too old for the replay window (dropped),
    /// reported likewise.
    pub srtp_replayed: u64,
    /// DTLS-SRTP calls whose handshake gave keys, reported likewise
    /// ([`crate::Registrar::count_service_dtls`]).
    pub dtls_keyed: u64,
    /// DTLS-SRTP calls whose handshake gave none (failed: the caller's certificate not its
    /// fingerprint, no answer; or not over when the call ended).
    pub dtls_failures: u64,
}

#[derive(Debug)]
enum State {
    /// Waiting for the driver's port pair.
    Binding,
    /// 200 sent, waiting for the ACK; retransmitted over UDP.
    WaitAck {
        cseq: u32,
        /// The 200 carried our offer (the INVITE had none): the ACK carries the answer
        /// (RFC 3261 §13.2.1, RFC 3264 §5).
        offered: bool,
        resp: Bytes,
        next: Option<Instant>,
        interval: Duration,
        give_up: Instant,
    },
    /// Confirmed.
    Confirmed,
    /// `sit`: 183 with the answer sent, the media playing; 404 at `final_at`.
    Early {
        invite: Box<Message>,
        final_at: Instant,
    },
}

/// A final non-2xx response to an INVITE, kept until its ACK (RFC 3261 §17.2.1): sent
/// again for a retransmitted INVITE, and over UDP on Timer G (T1 doubling up to T2) until
/// the ACK or Timer H (64·T1).
#[derive(Debug)]
struct Refused {
    branch: String,
    peer: Flow,
    resp: Bytes,
    next: Option<Instant>,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
struct Call {
    id: ServiceCallId,
    service: Service,
    /// Where the caller's requests come from (responses and our BYE go there).
    peer: Flow,
    /// The initial INVITE (kept until answered) and its branch (retransmission matching).
    invite: Option<Message>,
    branch: String,
    state: State,
    /// Our side: the To of the INVITE with our tag.
    local: NameAddr,
    /// The caller: the From of the INVITE.
    remote: NameAddr,
    /// The caller's Contact (our BYE's Request-URI).
    remote_target: Uri,
    remote_cseq: u32,
    our_cseq: u32,
    media: Option<LocalMedia>,
    ends_at: Instant,
}

/// The UAS of the service numbers. Driven by [`crate::Registrar`]; see the module docs.
#[derive(Debug)]
pub struct Services {
    calls: HashMap<String, Call>,
    by_id: HashMap<ServiceCallId, String>,
    /// Ended calls (Call-ID → forget at), to answer a retransmitted BYE.
    ended: HashMap<String, Instant>,
    /// INVITEs refused (`sit`'s 404, a CANCEL's 487) whose ACK has not come: the server
    /// transaction's Completed state (RFC 3261 §17.2.1), by Call-ID.
    refused: HashMap<String, Refused>,
    events: VecDeque<ServiceEvent>,
    next_id: u64,
    limits: ServiceLimits,
    stats: ServiceStats,
    next_timeout: Option<Instant>,
}

impl Default for Services {
    fn default() -> Self {
        Self::new(ServiceLimits::default())
    }
}

/// What the core does with a request the services looked at.
pub(crate) enum Verdict {
    /// Not a service request: proxy it as usual.
    NotOurs,
    /// Handled (responses queued).
    Handled,
}

impl Services {
    /// No calls yet.
    pub fn new(limits: ServiceLimits) -> Self {
        Self {
            calls: HashMap::new(),
            by_id: HashMap::new(),
            ended: HashMap::new(),
            refused: HashMap::new(),
            events: VecDeque::new(),
            next_id: 1,
            limits,
            stats: ServiceStats::default(),
            next_timeout: None,
        }
    }

    /// Counters (with the calls now up).
    pub fn stats(&self) -> ServiceStats {
        ServiceStats {
            active: self.calls.len() as u64,
            ..self.stats
        }
    }

    /// Adds a call's SRTP failures (see [`ServiceStats::srtp_auth_failures`]).
    pub fn count_srtp(&mut self, auth_failures: u64, replayed: u64) {
        self.stats.srtp_auth_failures += auth_failures;
        self.stats.srtp_replayed += replayed;
    }

    /// Counts a DTLS-SRTP call's handshake: keyed or not (see [`ServiceStats::dtls_keyed`]).
    pub fn count_dtls(&mut self, keyed: bool) {
        if keyed {
            self.stats.dtls_keyed += 1;
        } else {
            self.stats.dtls_failures += 1;
        }
    }

    /// Replaces the limits (applies to calls answered from now on).
    pub fn set_limits(&mut self, limits: ServiceLimits) {
        self.limits = limits;
    }

    /// True when there is no call to look up: the core's fast path.
    pub(crate) fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.ended.is_empty() && self.refused.is_empty()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<ServiceEvent> {
        self.events.pop_front()
    }

    /// The next timer (2xx retransmission, give-up, call length, ended-call expiry).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }

    fn recompute_timeout(&mut self) {
        let calls = self.calls.values().flat_map(|c| {
            let retrans = match &c.state {
                State::WaitAck { next, give_up, .. } => {
                    Some(next.unwrap_or(*give_up).min(*give_up))
                }
                State::Early { final_at, .. } => Some(*final_at),
                _ => None,
            };
            retrans.into_iter().chain(Some(c.ends_at))
        });
        let refused = self
            .refused
            .values()
            .map(|r| r.next.unwrap_or(r.give_up).min(r.give_up));
        self.next_timeout = calls
            .chain(refused)
            .chain(self.ended.values().copied())
            .min();
    }

    /// True if `msg` is a response to a request we sent (our BYE): it ends here.
    pub(crate) fn owns_response(&self, msg: &Message) -> bool {
        msg.top_via()
            .and_then(|v| v.branch())
            .is_some_and(|b| b.starts_with(BRANCH_PREFIX))
    }

    /// A request for a known service dialog (in-dialog, a retransmitted INVITE, a CANCEL).
    pub(crate) fn handle_known(
        &mut self,
        now: Instant,
        ifaces: &Ifaces,
        req: &Message,
        source: Flow,
        out: &mut VecDeque<(Flow, Bytes)>,
    ) -> Verdict {
        let Some(call_id) = req.call_id() else {
            return Verdict::NotOurs;
        };
        let cfg = &ifaces.of(source).config;
        let method = req.method().unwrap_or(Method::Options);
        let to_tag = req.to().and_then(|t| t.tag());
        if let Some(r) = self.refused.get(&call_id) {
            let branch = req.top_via().and_then(|v| v.branch()).unwrap_or_default();
            match method {
                // §17.2.1: the ACK confirms the refusal (Timer I has nothing to absorb that
                // the Call-ID's lingering does not).
                Method::Ack => {
                    self.refused.remove(&call_id);
                    self.recompute_timeout();
                    return Verdict::Handled;
                }
                // A retransmitted INVITE gets the final response again.
                Method::Invite if to_tag.is_none() && branch == r.branch => {
                    out.push_back((r.peer, r.resp.clone()));
                    return Verdict::Handled;
                }
                // §9.2: a CANCEL crossing the final response finds the INVITE's transaction
                // (Completed): 200, and nothing else changes.
                Method::Cancel if branch == r.branch => {
                    out.push_back(respond(cfg, req, source, 200, "OK", None));
                    return Verdict::Handled;
                }
                _ => {}
            }
        }
        if !self.calls.contains_key(&call_id) {
            if self.ended.contains_key(&call_id) {
                // A retransmitted BYE whose 200 was lost is answered again; anything else
                // in a finished dialog gets 481 (RFC 3261 §12.2.2).
                match method {
                    Method::Ack => {}
                    Method::Bye => out.push_back(respond(cfg, req, source, 200, "OK", None)),
                    _ => out.push_back(respond(
                        cfg,
                        req,
                        source,
                        481,
                        "Call/Transaction Does Not Exist",
                        None,
                    )),
                }
                return Verdict::Handled;
            }
            return Verdict::NotOurs;
        }
        let result = match (method, to_tag) {
            (Method::Invite, None) => self.retransmitted_invite(cfg, req, source, out),
            (Method::Cancel, _) => {
                out.push_back(respond(cfg, req, source, 200, "OK", None));
                // RFC 3261 §9.2: an INVITE not yet answered (`sit`'s early media) ends with
                // 487; one already answered is not changed by the CANCEL.
                if let Some(call) = self.calls.get(&call_id)
                    && let State::Early { invite, .. } = &call.state
                {
                    let tag = call.local.tag().unwrap_or_default();
                    let (peer, id) = (call.peer, call.id);
                    let refusal = respond(cfg, invite, peer, 487, "Request Terminated", Some(&tag));
                    self.events.push_back(ServiceEvent::End {
                        call: id,
                        reason: EndReason::Cancelled,
                    });
                    self.refuse(now, cfg, &call_id, refusal, out);
                }
                Verdict::Handled
            }
            (_, Some(_)) => self.in_dialog(now, ifaces, req, &call_id, source, out),
            _ => Verdict::NotOurs,
        };
        self.recompute_timeout();
        result
    }

    fn retransmitted_invite(
        &mut self,
        cfg: &RegistrarConfig,
        req: &Message,
        source: Flow,
        out: &mut VecDeque<(Flow, Bytes)>,
    ) -> Verdict {
        let branch = req.top_via().and_then(|v| v.branch()).unwrap_or_default();
        let Some(call) = req.call_id().and_then(|c| self.calls.get(&c)) else {
            return Verdict::NotOurs;
        };
        if call.branch != branch {
            // Another INVITE with this Call-ID and no To tag: a merged request (RFC 3261
            // §8.2.2.2).
            out.push_back(respond(cfg, req, source, 482, "Loop Detected", None));
            return Verdict::Handled;
        }
        // RFC 3261 §13.3.1.4: a retransmitted INVITE gets the 2xx again.
        if let State::WaitAck { resp, .. } = &call.state {
            out.push_back((call.peer, resp.clone()));
        }
        Verdict::Handled
    }

    /// An initial INVITE to a service (already authenticated by the core).
    pub(crate) fn handle_invite(
        &mut self,
        now: Instant,
        ifaces: &Ifaces,
        service: Service,
        req: &Message,
        source: Flow,
        out: &mut VecDeque<(Flow, Bytes)>,
    ) {
        let cfg = &ifaces.of(source).config;
        let tag = crate::to_tag_for(req);
        let (Some(call_id), Some(from), Some(to), Some(cseq), Some(branch)) = (
            req.call_id(),
            req.from(),
            req.to(),
            req.cseq(),
            req.top_via().and_then(|v| v.branch()),
        ) else {
            out.push_back(respond(cfg, req, source, 400, "Bad Request", Some(&tag)));
            return;
        };
        let contact = req
            .headers
            .typed::<Contact>()
            .and_then(Result::ok)
            .and_then(|c| c.addr().map(|a| a.uri.clone()));
        let Some(remote_target) = contact else {
            out.push_back(respond(
                cfg,
                req,
                source,
                400,
                "Bad Request (no Contact)",
                Some(&tag),
            ));
            return;
        };
        // RFC 3261 §8.2.2.3: extensions we do not support.
        let required: Vec<String> = req
            .headers
            .get_all(&HeaderName::Require)
            .flat_map(|h| h.value().split(',').map(|s| s.trim().to_owned()))
            .filter(|s| !s.is_empty())
            .collect();
        if !required.is_empty() {
            let mut resp = response(cfg, req, source, 420, "Bad Extension", Some(&tag));
            resp.headers
                .push(Header::new(HeaderName::Unsupported, required.join(", ")));
            out.push_back((source, Bytes::from(resp.to_bytes())));
            return;
        }
        // Check the offer before binding ports: an unusable one is refused at once. An INVITE
        // without one (a delayed offer, RFC 3261 §13.2.1) gets ours in the 200.
        if !req.body().is_empty() {
            let offer = match parse_offer(req) {
                Ok(o) => o,
                Err(why) => {
                    self.stats.refused_488 += 1;
                    out.push_back(not_acceptable(cfg, req, source, &tag, &why));
                    return;
                }
            };
            // Keys are drawn once the call is bound; these only let the check see SDES.
            let zeros = |b: &mut [u8]| {
                b.fill(0);
                Ok::<(), std::convert::Infallible>(())
            };
            let keys = Sdes::generate(false, &Suite::ALL, zeros).ok();
            let probe = local_media(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                9,
                0,
                0,
                keys,
                dtls_for(Some(&offer)),
            );
            if let Err(e) = sdp::answer_offer(&offer, &probe) {
                self.stats.refused_488 += 1;
                out.push_back(not_acceptable(cfg, req, source, &tag, &e.to_string()));
                return;
            }
        }
        out.push_back(respond(cfg, req, source, 100, "Trying", None));
        let id = ServiceCallId(self.next_id);
        self.next_id += 1;
        let call = Call {
            id,
            service,
            peer: source,
            invite: Some(req.clone()),
            branch,
            state: State::Binding,
            local: to.0.clone().with_tag(&tag),
            remote: from.0.clone(),
            remote_target,
            remote_cseq: cseq.seq,
            our_cseq: 0,
            media: None,
            ends_at: now + self.limits.max_call.min(FOREVER),
        };
        self.by_id.insert(id, call_id.clone());
        self.calls.insert(call_id, call);
        self.events.push_back(ServiceEvent::Bind {
            call: id,
            peer: source.addr,
            iface: source.iface,
        });
        self.recompute_timeout();
    }

    /// The driver bound the call's RTP socket at `rtp` (or could not: 503).
    pub(crate) fn handle_bound(
        &mut self,
        now: Instant,
        ifaces: &Ifaces,
        id: ServiceCallId,
        rtp: Result<SocketAddr, ()>,
        out: &mut VecDeque<(Flow, Bytes)>,
    ) {
        let Some(call_id) = self.by_id.get(&id).cloned() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let (State::Binding, Some(invite)) = (&call.state, call.invite.take()) else {
            return;
        };
        let cfg = &ifaces.of(call.peer).config;
        let tag = call.local.tag().unwrap_or_default();
        let Ok(rtp) = rtp else {
            let refusal = respond(
                cfg,
                &invite,
                call.peer,
                503,
                "Service Unavailable (no RTP port)",
                Some(&tag),
            );
            self.refuse(now, cfg, &call_id, refusal, out);
            self.recompute_timeout();
            return;
        };
        // A delayed offer gets ours in the 200 (the media starts with the ACK's answer), an
        // offer our answer; both with our keys (see `sdes_for`). The offer was checked in
        // handle_invite: answering it again with the real port and keys cannot fail
        // differently (only they changed), unless the system's random source gives none.
        let ready = if invite.body().is_empty() {
            sdes_for(None)
                .ok()
                .map(|s| (None, local_media(rtp.ip(), rtp.port(), id.0, 1, s, None)))
        } else {
            parse_offer(&invite).ok().and_then(|o| {
                let sdes = sdes_for(Some(&o)).ok()?;
                let dtls = dtls_for(Some(&o));
                let local = local_media(rtp.ip(), rtp.port(), id.0, 1, sdes, dtls);
                sdp::answer_offer(&o, &local).ok().map(|a| (Some(a), local))
            })
        };
        let Some((answered, local)) = ready else {
            let refusal = respond(cfg, &invite, call.peer, 500, "Server Error", Some(&tag));
            // The ports were bound for it: released like any ended call's (reachable only
            // when the random source fails, but a bound port must never leak).
            self.events.push_back(ServiceEvent::End {
                call: id,
                reason: EndReason::Refused,
            });
            self.refuse(now, cfg, &call_id, refusal, out);
            self.recompute_timeout();
            return;
        };
        let peer = call.peer;
        if call.service == Service::Sit {
            let Some((answer, negotiated)) = answered else {
                // No offer to answer in a 183: refused at once.
                let refusal = respond(cfg, &invite, peer, 404, "Not Found", Some(&tag));
                self.events.push_back(ServiceEvent::End {
                    call: id,
                    reason: EndReason::Refused404,
                });
                self.refuse(now, cfg, &call_id, refusal, out);
                self.recompute_timeout();
                return;
            };
            // RFC 3960 §3: the answer in the 183 starts the (early) media.
            let mut resp = response(cfg, &invite, peer, 183, "Session Progress", Some(&tag));
            resp.headers.push(Header::new(
                HeaderName::Contact,
                format!("<{}>", our_uri(cfg, Service::Sit)),
            ));
            resp.set_body("application/sdp", answer.to_string());
            out.push_back((peer, Bytes::from(resp.to_bytes())));
            call.state = State::Early {
                invite: Box::new(invite),
                final_at: now + SIT_FINAL_AFTER,
            };
            call.media = Some(local);
            self.events.push_back(ServiceEvent::Media {
                call: id,
                service: Service::Sit,
                negotiated,
            });
            self.recompute_timeout();
            return;
        }
        out.push_back(respond(cfg, &invite, peer, 180, "Ringing", Some(&tag)));
        let cseq = invite.cseq().map_or(0, |c| c.seq);
        let Some((answer, negotiated)) = answered else {
            let offer = sdp::build_offer(&local);
            let ok = answer_response(cfg, &invite, peer, &tag, call.service, Some(&offer));
            call.state = wait_ack(cfg, now, cseq, true, ok.1.clone());
            call.media = Some(local);
            out.push_back(ok);
            self.stats.answered += 1;
            self.recompute_timeout();
            return;
        };
        let ok = answer_response(cfg, &invite, peer, &tag, call.service, Some(&answer));
        call.state = wait_ack(cfg, now, cseq, false, ok.1.clone());
        call.media = Some(local);
        let service = call.service;
        out.push_back(ok);
        self.stats.answered += 1;
        self.events.push_back(ServiceEvent::Media {
            call: id,
            service,
            negotiated,
        });
        self.recompute_timeout();
    }

    fn in_dialog(
        &mut self,
        now: Instant,
        ifaces: &Ifaces,
        req: &Message,
        call_id: &str,
        source: Flow,
        out: &mut VecDeque<(Flow, Bytes)>,
    ) -> Verdict {
        let cfg = &ifaces.of(source).config;
        let method = req.method().unwrap_or(Method::Options);
        let Some(call) = self.calls.get_mut(call_id) else {
            return Verdict::NotOurs;
        };
        if req.to().and_then(|t| t.tag()) != call.local.tag() {
            // Same Call-ID, another dialog: not ours.
            return Verdict::NotOurs;
        }
        let cseq = req.cseq().map_or(0, |c| c.seq);
        if method == Method::Ack {
            let State::WaitAck {
                cseq: c, offered, ..
            } = call.state
            else {
                return Verdict::Handled;
            };
            if c != cseq {
                return Verdict::Handled;
            }
            call.state = State::Confirmed;
            if !offered {
                return Verdict::Handled;
            }
            // RFC 3264 §5: our 200 made the offer; the ACK answers it. Without a usable answer
            // there is no session: BYE (RFC 3261 §13.3.1.4 leaves it to the UAS).
            let negotiated = match (req.body().is_empty(), call.media.as_ref()) {
                (false, Some(local)) => SessionDescription::parse(req.body())
                    .ok()
                    .and_then(|answer| sdp::apply_answer(local, &answer).ok()),
                _ => None,
            };
            let (id, service) = (call.id, call.service);
            match negotiated {
                Some(negotiated) => self.events.push_back(ServiceEvent::Media {
                    call: id,
                    service,
                    negotiated,
                }),
                None => self.end_call(now, ifaces, id, EndReason::BadAnswer, out),
            }
            return Verdict::Handled;
        }
        // RFC 3261 §12.2.2: a lower CSeq than the last one is out of order.
        if cseq < call.remote_cseq {
            out.push_back(respond(
                cfg,
                req,
                source,
                500,
                "Server Internal Error (CSeq out of order)",
                None,
            ));
            return Verdict::Handled;
        }
        call.remote_cseq = cseq;
        match method {
            Method::Bye => {
                out.push_back(respond(cfg, req, source, 200, "OK", None));
                self.stats.ended_bye += 1;
                let id = call.id;
                self.events.push_back(ServiceEvent::End {
                    call: id,
                    reason: EndReason::Bye,
                });
                self.forget(call_id, now);
            }
            Method::Invite | Method::Update => {
                if method == Method::Invite && !matches!(call.state, State::Confirmed) {
                    // RFC 3261 §14.2: an INVITE while one is pending.
                    out.push_back(respond(cfg, req, source, 491, "Request Pending", None));
                    return Verdict::Handled;
                }
                let Some(local) = call.media.as_mut() else {
                    out.push_back(respond(cfg, req, source, 491, "Request Pending", None));
                    return Verdict::Handled;
                };
                if !req.body().is_empty()
                    && matches!(call.state, State::WaitAck { offered: true, .. })
                {
                    // RFC 3311 §5.2: an offer while ours (in a 200) waits for its answer.
                    out.push_back(respond(cfg, req, source, 491, "Request Pending", None));
                    return Verdict::Handled;
                }
                if req.body().is_empty() {
                    // No offer: an offerless re-INVITE gets our current description as an
                    // offer, and its ACK's answer is applied. An UPDATE without one merely
                    // refreshes: its 200 carries no session description, as nothing could
                    // answer an offer in it (RFC 3311 §5.2).
                    if method == Method::Update {
                        out.push_back(answer_response(cfg, req, source, "", call.service, None));
                        return Verdict::Handled;
                    }
                    local.session_version += 1;
                    let sd = sdp::build_offer(local);
                    let ok = answer_response(cfg, req, source, "", call.service, Some(&sd));
                    call.state = wait_ack(cfg, now, cseq, true, ok.1.clone());
                    out.push_back(ok);
                    return Verdict::Handled;
                }
                let answered = parse_offer(req).and_then(|o| {
                    let mut next = local.clone();
                    next.session_version += 1;
                    // The services are "optional": the keys follow the offer (RFC 4568
                    // §7.1.4). An offer without a=crypto drops them (plain RTP from now
                    // on; a later SRTP offer gets fresh ones, never these again); one with
                    // a=crypto in a plain call gets fresh keys of ours (`sdes_for`).
                    match (next.srtp.is_some(), sdes_for(Some(&o))) {
                        (true, Ok(None)) => next.srtp = None,
                        (false, Ok(Some(fresh))) => next.srtp = Some(fresh),
                        (false, Err(())) => {
                            return Err("the system's random source failed".to_owned());
                        }
                        _ => {}
                    }
                    sdp::answer_offer(&o, &next)
                        .map(|(a, n)| (a, n, next))
                        .map_err(|e| e.to_string())
                });
                match answered {
                    Err(why) => {
                        // RFC 3264 §8: a refused modification leaves the session as it was.
                        self.stats.refused_488 += 1;
                        out.push_back(not_acceptable(cfg, req, source, "", &why));
                    }
                    Ok((answer, negotiated, next)) => {
                        *local = next;
                        let ok = answer_response(cfg, req, source, "", call.service, Some(&answer));
                        if method == Method::Invite {
                            call.state = wait_ack(cfg, now, cseq, false, ok.1.clone());
                        }
                        out.push_back(ok);
                        self.events.push_back(ServiceEvent::Media {
                            call: call.id,
                            service: call.service,
                            negotiated,
                        });
                    }
                }
            }
            Method::Info | Method::Options | Method::Notify | Method::Message => {
                out.push_back(respond(cfg, req, source, 200, "OK", None));
            }
            _ => {
                let mut resp = response(cfg, req, source, 405, "Method Not Allowed", None);
                resp.headers.push(Header::new(HeaderName::Allow, ALLOW));
                out.push_back((source, Bytes::from(resp.to_bytes())));
            }
        }
        Verdict::Handled
    }

    /// Ends a call from our side: BYE to the caller, media released.
    pub(crate) fn end_call(
        &mut self,
        now: Instant,
        ifaces: &Ifaces,
        id: ServiceCallId,
        reason: EndReason,
        out: &mut VecDeque<(Flow, Bytes)>,
    ) {
        let Some(call_id) = self.by_id.get(&id).cloned() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if !matches!(call.state, State::Binding) {
            // Fire and forget: the caller is probably gone; a lost BYE leaves it to its own
            // timers.
            call.our_cseq += 1;
            let cfg = &ifaces.of(call.peer).config;
            out.push_back((call.peer, Bytes::from(bye(cfg, call, &call_id).to_bytes())));
        }
        self.stats.ended_by_us += 1;
        self.events
            .push_back(ServiceEvent::End { call: id, reason });
        self.forget(&call_id, now);
        self.recompute_timeout();
    }

    /// Fires due timers: 2xx retransmissions, unacknowledged and overlong calls, expiry of
    /// ended calls.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        ifaces: &Ifaces,
        out: &mut VecDeque<(Flow, Bytes)>,
    ) {
        if self.next_timeout.is_none_or(|t| t > now) {
            return;
        }
        self.ended.retain(|_, until| *until > now);
        let mut to_end = Vec::new();
        let mut refused = Vec::new();
        for (call_id, call) in &self.calls {
            if let State::Early { invite, final_at } = &call.state
                && *final_at <= now
            {
                let cfg = &ifaces.of(call.peer).config;
                let tag = call.local.tag().unwrap_or_default();
                let refusal = respond(cfg, invite, call.peer, 404, "Not Found", Some(&tag));
                refused.push((call_id.clone(), call.id, refusal));
            }
        }
        for (call_id, id, refusal) in refused {
            self.events.push_back(ServiceEvent::End {
                call: id,
                reason: EndReason::Refused404,
            });
            let Some(call) = self.calls.get(&call_id) else {
                continue;
            };
            let cfg = &ifaces.of(call.peer).config;
            self.refuse(now, cfg, &call_id, refusal, out);
        }
        // §17.2.1: Timer G retransmits a refusal not yet acknowledged, Timer H gives up.
        self.refused.retain(|_, r| {
            if r.give_up <= now {
                return false;
            }
            if let Some(at) = r.next.filter(|at| *at <= now) {
                out.push_back((r.peer, r.resp.clone()));
                r.interval = (r.interval * 2).min(T2);
                // From now, not from when it was due: a late wake-up sends one, not a burst.
                r.next = Some(at.max(now) + r.interval);
            }
            true
        });
        for call in self.calls.values_mut() {
            if call.ends_at <= now {
                to_end.push((call.id, EndReason::MaxDuration));
                continue;
            }
            if let State::WaitAck {
                resp,
                next,
                interval,
                give_up,
                ..
            } = &mut call.state
            {
                if *give_up <= now {
                    to_end.push((call.id, EndReason::NoAck));
                } else if let Some(at) = next.filter(|at| *at <= now) {
                    // RFC 3261 §13.3.1.4: T1 doubling up to T2.
                    out.push_back((call.peer, resp.clone()));
                    *interval = (*interval * 2).min(T2);
                    *next = Some(at + *interval);
                }
            }
        }
        for (id, reason) in to_end {
            self.end_call(now, ifaces, id, reason, out);
        }
        self.recompute_timeout();
    }

    /// Sends a final non-2xx response to the call's INVITE and ends the call; the response
    /// waits for its ACK in [`Self::refused`].
    fn refuse(
        &mut self,
        now: Instant,
        cfg: &RegistrarConfig,
        call_id: &str,
        refusal: (Flow, Bytes),
        out: &mut VecDeque<(Flow, Bytes)>,
    ) {
        if let Some(call) = self.calls.get(call_id) {
            let reliable = !cfg.transport.eq_ignore_ascii_case("UDP");
            let (peer, resp) = refusal.clone();
            self.refused.insert(
                call_id.to_owned(),
                Refused {
                    branch: call.branch.clone(),
                    peer,
                    resp,
                    next: (!reliable).then_some(now + T1),
                    interval: T1,
                    give_up: now + T1 * 64,
                },
            );
        }
        out.push_back(refusal);
        self.forget(call_id, now);
    }

    fn forget(&mut self, call_id: &str, now: Instant) {
        if let Some(c) = self.calls.remove(call_id) {
            self.by_id.remove(&c.id);
        }
        self.ended.insert(call_id.to_owned(), now + LINGER);
    }
}

/// A service limit past this (about a century: [`ServiceLimits::max_call`], the driver's
/// media timeout) is no limit; the cap keeps `Instant + Duration` from overflowing
/// (`Duration::MAX` would panic there).
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";

fn wait_ack(cfg: &RegistrarConfig, now: Instant, cseq: u32, offered: bool, resp: Bytes) -> State {
    // Over a reliable transport the 2xx is not retransmitted (§13.3.1.4 still waits 64·T1
    // for the ACK).
    let reliable = !cfg.transport.eq_ignore_ascii_case("UDP");
    State::WaitAck {
        cseq,
        offered,
        resp,
        next: (!reliable).then_some(now + T1),
        interval: T1,
        give_up: now + 64 * T1,
    }
}

/// Our SDES (RFC 4568) with a fresh master key per suite (every suite we run) from the system's CSPRNG (RFC 3711 §8.1.1:
/// random and secret), not required: answering an `offer`, SRTP when one of its streams has
/// an `a=crypto` line (`RTP/SAVP`, or `RTP/AVP` offered best effort, §7.1.2), else none, so
/// a plain offer is answered as before; offering (`None`: a delayed offer), `RTP/AVP` with
/// our lines, which a plain caller ignores and an SRTP caller takes. `Err`: the random
/// source failed.
fn sdes_for(offer: Option<&SessionDescription>) -> Result<Option<Sdes>, ()> {
    let crypto = offer.is_none_or(|o| {
        o.media
            .iter()
            .any(|m| m.attributes.iter().any(|a| a.name == "crypto"))
    });
    if !crypto {
        return Ok(None);
    }
    Sdes::generate(false, &Suite::ALL, getrandom::fill)
        .map(Some)
        .map_err(|_| ())
}

/// The services' DTLS certificate (self-signed ECDSA P-256, RFC 5763 §5: its fingerprint in
/// our answer), made once per process on the first DTLS-SRTP offer. `None`: it could not be
/// made (the offer is then refused as if we did not do DTLS-SRTP).
fn dtls_identity() -> Option<Arc<DtlsIdentity>> {
    static ID: OnceLock<Option<Arc<DtlsIdentity>>> = OnceLock::new();
    ID.get_or_init(|| DtlsIdentity::generate().ok().map(Arc::new))
        .clone()
}

/// Our certificate when the offer asks for DTLS-SRTP ([`sdp::asks_for_dtls`]): the services
/// answer DTLS-SRTP with DTLS-SRTP, SDES with SDES and plain RTP with plain RTP. A delayed
/// offer (`None`) gets no DTLS in ours (`RTP/AVP` with SDES lines, see [`sdes_for`]).
fn dtls_for(offer: Option<&SessionDescription>) -> Option<Arc<DtlsIdentity>> {
    offer.filter(|o| sdp::asks_for_dtls(o)).and(dtls_identity())
}

/// What the services answer with: every codec of the media crate, telephone-event, RTCP mux
/// when offered, send and receive, SRTP when offered with keys, DTLS-SRTP when offered
/// (`dtls`: then no SDES keys).
fn local_media(
    address: IpAddr,
    port: u16,
    session_id: u64,
    version: u64,
    srtp: Option<Sdes>,
    dtls: Option<Arc<DtlsIdentity>>,
) -> LocalMedia {
    LocalMedia {
        codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus],
        telephone_event: true,
        ptime: 20,
        direction: Direction::SendRecv,
        address,
        port,
        rtcp_mux: true,
        session_id,
        session_version: version,
        srtp: srtp.filter(|_| dtls.is_none()),
        dtls,
    }
}

fn parse_offer(req: &Message) -> Result<SessionDescription, String> {
    if req.body().is_empty() {
        // Callers check for a delayed offer first.
        return Err("no sdp offer".into());
    }
    SessionDescription::parse(req.body()).map_err(|e| format!("unreadable sdp: {e}"))
}

/// A response with RFC 3581 received/rport on the top Via, like the core's own.
fn respond(
    cfg: &RegistrarConfig,
    req: &Message,
    source: Flow,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> (Flow, Bytes) {
    (
        source,
        Bytes::from(response(cfg, req, source, code, reason, to_tag).to_bytes()),
    )
}

fn response(
    _cfg: &RegistrarConfig,
    req: &Message,
    source: Flow,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> Message {
    let to_tag = to_tag.filter(|t| !t.is_empty());
    let mut resp = Message::response_to(req, code, reason, to_tag);
    if let Some(mut via) = req.top_via() {
        via.params
            .set("received", Some(&source.addr.ip().to_string()));
        if via.params.contains("rport") {
            via.params
                .set("rport", Some(&source.addr.port().to_string()));
        }
        let mut vias: Vec<Header> = resp
            .headers
            .get_all(&HeaderName::Via)
            .map(|h| h.to_header())
            .collect();
        resp.headers.remove(&HeaderName::Via);
        if !vias.is_empty() {
            vias[0] = Header::new(HeaderName::Via, via.to_string());
        }
        for v in vias.into_iter().rev() {
            resp.headers.push_front(v);
        }
    }
    resp.headers.push(Header::from_static(
        HeaderName::Server,
        "sipmeter-registrar",
    ));
    resp
}

/// 488 with a Warning (RFC 3261 §20.43: 305 Incompatible media format).
fn not_acceptable(
    cfg: &RegistrarConfig,
    req: &Message,
    source: Flow,
    tag: &str,
    why: &str,
) -> (Flow, Bytes) {
    let mut resp = response(cfg, req, source, 488, "Not Acceptable Here", Some(tag));
    let text = why.replace(['"', '\\'], "'");
    resp.headers.push(Header::new(
        HeaderName::Warning,
        format!("305 {} \"{text}\"", cfg.host),
    ));
    (source, Bytes::from(resp.to_bytes()))
}

/// The 200 OK carrying our SDP (none for an UPDATE without an offer), with a Contact that
/// reaches this registrar.
fn answer_response(
    cfg: &RegistrarConfig,
    req: &Message,
    source: Flow,
    tag: &str,
    service: Service,
    sdp: Option<&SessionDescription>,
) -> (Flow, Bytes) {
    let mut resp = response(cfg, req, source, 200, "OK", Some(tag));
    resp.headers.push(Header::new(
        HeaderName::Contact,
        format!("<{}>", our_uri(cfg, service)),
    ));
    resp.headers.push(Header::new(HeaderName::Allow, ALLOW));
    if let Some(sdp) = sdp {
        resp.set_body("application/sdp", sdp.to_string());
    }
    (source, Bytes::from(resp.to_bytes()))
}

fn our_uri(cfg: &RegistrarConfig, service: Service) -> String {
    let transport = if cfg.transport.eq_ignore_ascii_case("UDP") {
        String::new()
    } else {
        format!(";transport={}", cfg.transport.to_ascii_lowercase())
    };
    format!(
        "sip:{}@{}:{}{transport}",
        service.name(),
        cfg.host,
        cfg.port
    )
}

fn bye(cfg: &RegistrarConfig, call: &Call, call_id: &str) -> Message {
    let branch = format!("{BRANCH_PREFIX}{:x}{}", call.id.0, call.our_cseq);
    debug_assert!(branch.starts_with(BRANCH_MAGIC));
    let via = Via::new(&cfg.transport, cfg.host.clone(), Some(cfg.port), &branch);
    RequestBuilder::new(Method::Bye, call.remote_target.clone())
        .via(via)
        .from(call.local.clone())
        .to(call.remote.clone())
        .call_id(call_id)
        .cseq(call.our_cseq)
        .build()
}

/// Echo's media: reflects RTP to its source, answers RTCP.
///
/// RTP goes back unchanged (SSRC, sequence numbers, timestamps, payload), like SIPp's
/// `-rtp_echo`: what the caller receives measures the whole round trip. On hold (we answered
/// recvonly or inactive) nothing is reflected; after the resume the sequence numbers are
/// shifted down by the packets held back, so the caller sees a pause in the stream, as from
/// a real peer that stopped sending (RFC 3550 §5.1: the sequence counts packets sent), not
/// a burst of loss. RTCP is not
/// reflected: a reflected SR would come back as the caller's own and double the RTT it
/// computes (RFC 3550 §6.4.1: the report would span two round trips). Each RTCP compound
/// from the caller is answered at once with a receiver report from our own SSRC about the
/// caller's stream as it arrived here: LSR/DLSR give the caller the true RTT, and its
/// "sent" figures (loss, jitter) describe the caller → echo leg alone.
///
/// With SRTP negotiated (SDES, RFC 4568), each SRTP and SRTCP packet is authenticated and
/// decrypted under the caller's key first (RFC 3711 §3.3: replay checked too); a packet that
/// fails is counted and dropped, and everything above sees plain RTP. What goes back is
/// protected under our own key: the reflected packet in place (the same suite, so the
/// caller's tag left the room for ours), our reports as SRTCP.
#[derive(Debug)]
pub struct EchoMedia {
    ssrc: u32,
    cname: String,
    stats: ReceiveStats,
    interval: ReportInterval,
    event_pt: Option<u8>,
    sends: bool,
    last_sr: Option<(u32, Instant)>,
    /// RTP packets not reflected while on hold (subtracted from later sequence numbers).
    held_back: u16,
    /// SRTP's keys and contexts when negotiated (boxed: most calls have none).
    srtp: Option<Box<(SrtpParams, SrtpContext)>>,
    /// DTLS-SRTP's handshake when negotiated (boxed: most calls have none): its keys key
    /// `srtp` once it is done; until then nothing is reflected.
    dtls: Option<Box<DtlsSrtp>>,
    /// RTP packets reflected.
    pub reflected: u64,
    /// RTCP reports sent.
    pub reports: u64,
    /// Undecodable datagrams (dropped).
    pub malformed: u64,
    /// SRTP/SRTCP packets that failed authentication (dropped).
    pub srtp_auth_failures: u64,
    /// SRTP/SRTCP packets replayed or too old for the replay window (dropped).
    pub srtp_replayed: u64,
    /// SRTP/SRTCP packets that came before DTLS-SRTP's handshake gave keys (dropped).
    pub before_keys: u64,
}

/// What to do with a datagram received by [`EchoMedia`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoAction {
    /// Send the datagram back to where it came from (unchanged, or with its sequence number
    /// shifted after a hold, or under our SRTP key: the buffer was rewritten in place, at
    /// its length).
    Reflect,
    /// Send this RTCP compound (SRTCP under SRTP) to where the datagram came from.
    Reply(Vec<u8>),
    /// Nothing (malformed, a BYE, or we do not send in this direction).
    Drop,
}

impl EchoMedia {
    /// Echo for a negotiated call; `ssrc` is our RTCP sender SSRC. With DTLS-SRTP its
    /// handshake starts at `now` (as the client, the ClientHello is in
    /// [`Self::poll_datagram`] at once).
    pub fn new(n: &Negotiated, ssrc: u32, now: Instant) -> Self {
        let spp = n.clock_rate / 1000 * n.ptime;
        Self {
            ssrc,
            cname: format!("echo-{ssrc:08x}@sipmeter"),
            stats: ReceiveStats::new(n.clock_rate, spp),
            interval: ReportInterval::default(),
            event_pt: n.recv_event_pt,
            sends: n.direction.sends(),
            last_sr: None,
            held_back: 0,
            srtp: n.srtp.as_ref().map(srtp_of),
            dtls: n.dtls.as_ref().map(|p| Box::new(DtlsSrtp::new(p, now))),
            reflected: 0,
            reports: 0,
            malformed: 0,
            srtp_auth_failures: 0,
            srtp_replayed: 0,
            before_keys: 0,
        }
    }

    /// The next DTLS datagram to send to the caller's RTP address (the handshake's flights
    /// and retransmissions).
    pub fn poll_datagram(&mut self) -> Option<Vec<u8>> {
        self.dtls.as_mut()?.poll_datagram()
    }

    /// When [`Self::handle_timeout`] must run: DTLS's retransmission or give-up timer while
    /// the handshake runs; `None` otherwise.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dtls.as_ref()?.poll_timeout()
    }

    /// The timer of [`Self::poll_timeout`] fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.dtls.as_mut() {
            d.handle_timeout(now);
            self.take_dtls_keys();
        }
    }

    /// What DTLS-SRTP's handshake did (`None`: no DTLS in this call).
    pub fn dtls_summary(&self) -> Option<&DtlsSummary> {
        self.dtls.as_deref().map(DtlsSrtp::summary)
    }

    /// Keys SRTP from the handshake once it gave them (both directions, RFC 5764 §4.2).
    fn take_dtls_keys(&mut self) {
        if let Some(keys) = self.dtls.as_mut().and_then(|d| d.take_keys()) {
            self.srtp = Some(srtp_of(&keys));
        }
    }

    /// A re-INVITE changed the direction (hold: echo stops reflecting), or the keys (SRTP
    /// then starts afresh under the new ones, RFC 4568 §7.1.4). DTLS-SRTP's keys are the
    /// association's: a re-INVITE keeps them (the services refuse one that drops DTLS).
    pub fn update(&mut self, n: &Negotiated) {
        self.sends = n.direction.sends();
        self.event_pt = n.recv_event_pt;
        if self.dtls.is_none() && n.srtp.as_ref() != self.srtp.as_ref().map(|s| &s.0) {
            self.srtp = n.srtp.as_ref().map(srtp_of);
        }
    }

    /// Handles one datagram received on the call's RTP or RTCP port. With DTLS-SRTP, a
    /// DTLS datagram goes to the handshake (what it answers is in [`Self::poll_datagram`]).
    pub fn handle_packet(&mut self, now: Instant, buf: &mut [u8]) -> EchoAction {
        if let Some(d) = self.dtls.as_mut() {
            if media::dtls::is_dtls(buf) {
                d.handle_datagram(now, buf);
                self.take_dtls_keys();
                return EchoAction::Drop;
            }
            if self.srtp.is_none() {
                // SRTP the handshake has not keyed yet: nothing to read it with.
                self.before_keys += 1;
                return EchoAction::Drop;
            }
        }
        let rtcp = rtp::is_rtcp(buf);
        let len = match self.srtp.as_mut() {
            None => buf.len(),
            Some(srtp) => {
                let plain = if rtcp {
                    srtp.1.rx.unprotect_rtcp(buf)
                } else {
                    srtp.1.rx.unprotect_rtp(buf)
                };
                match plain {
                    Ok(len) => len,
                    Err(e) => {
                        match e {
                            SrtpError::AuthFailed | SrtpError::UnknownMki => {
                                self.srtp_auth_failures += 1;
                            }
                            SrtpError::Replayed => self.srtp_replayed += 1,
                            SrtpError::Malformed | SrtpError::IndexExhausted => {
                                self.malformed += 1;
                            }
                        }
                        return EchoAction::Drop;
                    }
                }
            }
        };
        if rtcp {
            let mut action = self.handle_rtcp(now, &buf[..len]);
            if let (EchoAction::Reply(reply), Some(srtp)) = (&mut action, self.srtp.as_mut())
                && srtp.1.tx.protect_rtcp(reply).is_err()
            {
                // 2^31 reports under one key (RFC 3711 §9.2): none can go out any more.
                action = EchoAction::Drop;
            }
            return action;
        }
        if !self.handle_rtp(now, &mut buf[..len]) {
            return EchoAction::Drop;
        }
        if let Some(srtp) = self.srtp.as_mut() {
            // The caller's tag left the room ours needs: the answer named the offer's suite
            // (RFC 4568 §7.1.2), so the lengths match. Only 2^48 packets under our key
            // (RFC 3711 §9.2) could fail here.
            let protected = srtp.1.tx.protect_rtp_in_place(buf, len);
            if !matches!(protected, Ok(n) if n == buf.len()) {
                return EchoAction::Drop;
            }
        }
        self.reflected += 1;
        EchoAction::Reflect
    }

    /// A plain RTP packet: measured; true when it goes back (its sequence number shifted by
    /// the packets held back).
    fn handle_rtp(&mut self, now: Instant, buf: &mut [u8]) -> bool {
        let Ok(p) = RtpPacket::parse(buf) else {
            self.malformed += 1;
            return false;
        };
        if Some(p.payload_type) == self.event_pt {
            self.stats
                .on_other_packet(now, p.sequence, p.ssrc, buf.len());
        } else {
            self.stats
                .on_packet(now, p.sequence, p.timestamp, p.ssrc, p.marker, buf.len());
        }
        let seq = p.sequence;
        if !self.sends {
            self.held_back = self.held_back.wrapping_add(1);
            return false;
        }
        if self.held_back != 0 {
            // The sequence number is bytes 2..4 of every RTP header (RFC 3550 §5.1); the
            // packet parsed, so they are there.
            buf[2..4].copy_from_slice(&seq.wrapping_sub(self.held_back).to_be_bytes());
        }
        true
    }

    fn handle_rtcp(&mut self, now: Instant, buf: &[u8]) -> EchoAction {
        let Ok(pkts) = rtcp::parse_compound(buf) else {
            self.malformed += 1;
            return EchoAction::Drop;
        };
        let mut bye = false;
        for p in &pkts {
            match p {
                RtcpPacket::SenderReport { info, .. } => {
                    self.last_sr = Some((ntp_middle(info.ntp), now));
                }
                RtcpPacket::Bye { .. } => bye = true,
                _ => {}
            }
        }
        if bye {
            return EchoAction::Drop;
        }
        let mut reports = Vec::new();
        if let Some(remote) = self.stats.ssrc() {
            let t = self.stats.totals();
            let (lsr, dlsr) = match self.last_sr {
                // DLSR in 1/65536 s (RFC 3550 §6.4.1).
                Some((lsr, at)) => (
                    lsr,
                    (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
                ),
                None => (0, 0),
            };
            reports.push(ReportBlock {
                ssrc: remote,
                fraction_lost: self.interval.fraction(t.expected, t.received),
                cumulative_lost: t.lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
                highest_seq: t.ext_highest_seq,
                jitter: t.jitter as u32,
                lsr,
                dlsr,
            });
        }
        self.reports += 1;
        EchoAction::Reply(rtcp::build_compound(&[
            RtcpPacket::ReceiverReport {
                ssrc: self.ssrc,
                reports,
            },
            RtcpPacket::SourceDescription(vec![(self.ssrc, Some(self.cname.clone()))]),
        ]))
    }
}

fn srtp_of(p: &SrtpParams) -> Box<(SrtpParams, SrtpContext)> {
    Box::new((p.clone(), SrtpContext::new(p)))
}

/// One period-exact buffer of the tone at 8 kHz (20 ms: 20 periods of 1 kHz), shared by all
/// tone calls; the media crate resamples it (periodically) for 16 kHz codecs.
fn tone_clip() -> WavAudio {
    static CLIP: OnceLock<WavAudio> = OnceLock::new();
    CLIP.get_or_init(|| {
        let rate = 8000u32;
        // A sine's RMS is A/√2; 0 dBov is RMS 32768 (ITU-T G.100.1).
        let amp = 32768.0 * 10f64.powf(TONE_DBOV / 20.0) * 2f64.sqrt();
        let samples: Arc<[i16]> = (0..160u32)
            .map(|n| {
                let w = 2.0 * std::f64::consts::PI * f64::from(TONE_HZ) * f64::from(n)
                    / f64::from(rate);
                (amp * w.sin()).round() as i16
            })
            .collect();
        WavAudio::new(samples, rate)
    })
    .clone()
}

/// The `sit` service's clip at 8 kHz, shared by all its calls: 0.2 s of silence, the SIT IC
/// (913.8 Hz 274 ms, 1370.6 Hz 274 ms, 1776.7 Hz 380 ms, each segment's phase running on,
/// at −24 dBm0 as ITU-T E.180 asks: G.711's full-scale sine is +3.17 dBm0), 1.5 s of
/// silence.
fn sit_clip() -> WavAudio {
    static CLIP: OnceLock<WavAudio> = OnceLock::new();
    CLIP.get_or_init(|| {
        let rate = 8000u32;
        let amp = 32767.0 * 10f64.powf((-24.0 - 3.17) / 20.0);
        let ms = |m: u32| m * rate / 1000;
        let mut samples = vec![0i16; ms(200) as usize];
        for (f, len) in [(913.8, 274), (1370.6, 274), (1776.7, 380)] {
            let n0 = samples.len() as u32;
            samples.extend((n0..n0 + ms(len)).map(|n| {
                let w = 2.0 * std::f64::consts::PI * f * f64::from(n) / f64::from(rate);
                (amp * w.sin()).round() as i16
            }));
        }
        samples.extend(std::iter::repeat_n(0, ms(1500) as usize));
        WavAudio::new(samples.into(), rate)
    })
    .clone()
}

/// The `sit` service's media: a [`MediaSession`] as the tone's, whose source is
/// [`sit_clip`], looped.
pub fn sit_session(
    n: &Negotiated,
    ssrc: u32,
    seed: u64,
    now: Instant,
) -> Result<MediaSession, ConfigError> {
    let mut cfg = SessionConfig::from_negotiated(n, ssrc, format!("sit-{ssrc:08x}@sipmeter"), seed);
    cfg.source = SourceConfig {
        kind: SourceKind::Wav(sit_clip()),
        seed,
        ..SourceConfig::default()
    };
    MediaSession::new(cfg, now)
}

/// Tone's media: a [`MediaSession`] (paced RTP in the negotiated codec, RTCP reports, and
/// measurement of what the caller sends) whose source is the tone.
pub fn tone_session(
    n: &Negotiated,
    ssrc: u32,
    seed: u64,
    now: Instant,
) -> Result<MediaSession, ConfigError> {
    let mut cfg =
        SessionConfig::from_negotiated(n, ssrc, format!("tone-{ssrc:08x}@sipmeter"), seed);
    cfg.source = SourceConfig {
        kind: SourceKind::Wav(tone_clip()),
        seed,
        ..SourceConfig::default()
    };
    MediaSession::new(cfg, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::rtcp::SenderInfo;
    use media::rtp::RtpHeader;
    use media::session::PacketKind;
    use media::srtp::{MasterKey, Suite};

    fn negotiated(codec: Codec, direction: Direction) -> Negotiated {
        let pt = codec.default_pt();
        let addr: SocketAddr = "127.0.0.1:30000".parse().unwrap_or_else(|_| unreachable!());
        Negotiated {
            codec,
            send_pt: pt,
            recv_pt: pt,
            send_event_pt: None,
            recv_event_pt: Some(101),
            clock_rate: codec.clock_rate(),
            ptime: 20,
            direction,
            remote_rtp: addr,
            remote_rtcp: addr,
            rtcp_mux: true,
            srtp: None,
            dtls: None,
        }
    }

    fn rtp(seq: u16, pt: u8) -> Vec<u8> {
        let mut out = Vec::new();
        RtpHeader {
            payload_type: pt,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 0xcafe,
            ..RtpHeader::default()
        }
        .write(&[0xff; 160], &mut out);
        out
    }

    #[test]
    fn echo_reflects_rtp_and_answers_rtcp_with_the_callers_lsr() {
        let t0 = Instant::now();
        let mut echo = EchoMedia::new(&negotiated(Codec::Pcmu, Direction::SendRecv), 0xec40, t0);
        for seq in 0..10u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            // Packet 5 is lost on the way in.
            if seq != 5 {
                let mut p = rtp(seq, 0);
                assert_eq!(echo.handle_packet(at, &mut p), EchoAction::Reflect);
                assert_eq!(p, rtp(seq, 0), "unchanged");
            }
        }
        // A DTMF event is reflected too.
        assert_eq!(
            echo.handle_packet(t0, &mut rtp(10, 101)),
            EchoAction::Reflect
        );
        let ntp = 0x1234_5678_9abc_def0u64;
        let sr = rtcp::build_compound(&[RtcpPacket::SenderReport {
            ssrc: 0xcafe,
            info: SenderInfo {
                ntp,
                ..SenderInfo::default()
            },
            reports: vec![],
        }]);
        let at = t0 + Duration::from_millis(300);
        let EchoAction::Reply(reply) = echo.handle_packet(at, &mut sr.clone()) else {
            panic!("rtcp is answered");
        };
        let pkts = rtcp::parse_compound(&reply).unwrap_or_default();
        let Some(RtcpPacket::ReceiverReport { ssrc, reports }) = pkts.first() else {
            panic!("{pkts:?}");
        };
        assert_eq!(*ssrc, 0xec40, "from our own SSRC, not reflected");
        assert_eq!(reports.len(), 1);
        let b = reports[0];
        assert_eq!((b.ssrc, b.lsr, b.dlsr), (0xcafe, ntp_middle(ntp), 0));
        assert_eq!(b.cumulative_lost, 1, "one packet lost on the way in");
        assert_eq!(b.highest_seq, 10);
        // Answered 100 ms after the SR: DLSR says so, in 1/65536 s.
        let later = echo.handle_packet(
            at + Duration::from_millis(100),
            &mut rtcp::build_compound(&[RtcpPacket::ReceiverReport {
                ssrc: 0xcafe,
                reports: vec![],
            }]),
        );
        let EchoAction::Reply(reply) = later else {
            panic!("answered")
        };
        let pkts = rtcp::parse_compound(&reply).unwrap_or_default();
        let Some(RtcpPacket::ReceiverReport { reports, .. }) = pkts.first() else {
            panic!("{pkts:?}");
        };
        assert_eq!(reports[0].dlsr, 6553);
        // The caller's BYE is not answered; garbage is dropped and counted.
        let bye = rtcp::build_compound(&[RtcpPacket::Bye {
            ssrcs: vec![0xcafe],
            reason: None,
        }]);
        assert_eq!(echo.handle_packet(at, &mut bye.clone()), EchoAction::Drop);
        assert_eq!(echo.handle_packet(at, &mut [0x80, 0]), EchoAction::Drop);
        assert_eq!(echo.malformed, 1);
        // On hold (we only receive) nothing is reflected ...
        echo.update(&negotiated(Codec::Pcmu, Direction::RecvOnly));
        for seq in 11..14 {
            assert_eq!(echo.handle_packet(at, &mut rtp(seq, 0)), EchoAction::Drop);
        }
        // ... and after the resume the stream continues where it paused: 14 goes out as 11.
        echo.update(&negotiated(Codec::Pcmu, Direction::SendRecv));
        let mut p = rtp(14, 0);
        assert_eq!(echo.handle_packet(at, &mut p), EchoAction::Reflect);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 11);
        assert_eq!(p[4..], rtp(14, 0)[4..], "only the sequence number changed");
        assert_eq!(echo.reflected, 11);
    }

    /// Echo with DTLS-SRTP against a caller's DTLS endpoint in process: echo (the answerer,
    /// active) sends the ClientHello at once, the flights go back and forth (a lost one
    /// retransmitted on echo's timer), each side checks the other's certificate against its
    /// fingerprint; SRTP before the keys is dropped and counted, after them it is reflected
    /// under echo's key and decrypts at the caller to the packet it sent; a re-INVITE (hold,
    /// resume) keeps the keys.
    #[test]
    fn echo_with_dtls_keys_srtp_by_the_handshake_and_reflects_under_it() {
        use media::dtls::{DtlsIdentity, DtlsParams, is_dtls};
        let t0 = Instant::now();
        let id =
            |name| Arc::new(DtlsIdentity::generate().unwrap_or_else(|e| panic!("{name}: {e}")));
        let (caller_id, echo_id) = (id("caller"), id("echo"));
        let mut n = negotiated(Codec::Pcmu, Direction::SendRecv);
        n.dtls = Some(DtlsParams {
            identity: echo_id.clone(),
            remote: caller_id.fingerprint().clone(),
            active: true,
        });
        let mut echo = EchoMedia::new(&n, 0xec40, t0);
        let mut caller = DtlsSrtp::new(
            &DtlsParams {
                identity: caller_id,
                remote: echo_id.fingerprint().clone(),
                active: false,
            },
            t0,
        );
        // SRTP before any key: dropped, counted, nothing reflected.
        assert_eq!(echo.handle_packet(t0, &mut rtp(0, 0)), EchoAction::Drop);
        assert_eq!(echo.before_keys, 1);
        // The ClientHello is lost once: echo's timer sends it again.
        let hello = echo
            .poll_datagram()
            .expect("echo, the client, speaks first");
        assert!(is_dtls(&hello));
        assert!(echo.poll_datagram().is_none());
        let retry = echo.poll_timeout().expect("a retransmission timer");
        let mut now = retry;
        echo.handle_timeout(now);
        let mut keys = None;
        for _ in 0..20 {
            while let Some(d) = echo.poll_datagram() {
                caller.handle_datagram(now, &d);
            }
            keys = keys.or_else(|| caller.take_keys());
            while let Some(mut d) = caller.poll_datagram() {
                assert_eq!(echo.handle_packet(now, &mut d), EchoAction::Drop);
            }
            if keys.is_some() && echo.srtp.is_some() {
                break;
            }
            now += Duration::from_millis(10);
        }
        let keys = keys.expect("the caller has its keys");
        let summary = echo.dtls_summary().expect("a dtls call");
        assert!(summary.active && summary.suite.is_some(), "{summary:?}");
        assert_eq!(summary.suite, Some(keys.suite.name()));
        let mut ctx = SrtpContext::new(&keys);
        let mut send_and_hear = |echo: &mut EchoMedia, seq: u16| {
            let mut p = rtp(seq, 0);
            ctx.tx.protect_rtp(&mut p).unwrap_or_else(|e| panic!("{e}"));
            let action = echo.handle_packet(now, &mut p);
            (action == EchoAction::Reflect).then(|| {
                let len = ctx
                    .rx
                    .unprotect_rtp(&mut p)
                    .unwrap_or_else(|e| panic!("{e}"));
                p[..len].to_vec()
            })
        };
        for seq in 1..10u16 {
            assert_eq!(send_and_hear(&mut echo, seq), Some(rtp(seq, 0)), "{seq}");
        }
        // Held and resumed by re-INVITEs (no keys in them: DTLS's are kept).
        echo.update(&negotiated(Codec::Pcmu, Direction::RecvOnly));
        assert_eq!(
            send_and_hear(&mut echo, 10),
            None,
            "held: nothing goes back"
        );
        echo.update(&negotiated(Codec::Pcmu, Direction::SendRecv));
        // Resumed: 11 goes back as 10 (the packet held back), under the same keys.
        let mut expected = rtp(11, 0);
        expected[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(send_and_hear(&mut echo, 11), Some(expected));
        assert_eq!(
            (echo.srtp_auth_failures, echo.before_keys, echo.reflected),
            (0, 1, 10)
        );
    }

    /// A caller's SRTP context and echo's negotiation for one call: the caller sends under
    /// key 1, echo under key 2, suite `suite`.
    fn srtp_pair(suite: Suite) -> (SrtpContext, Negotiated) {
        let key = |b: u8| MasterKey::new(suite, &vec![b; suite.master_len()]).unwrap();
        let (caller_key, echo_key) = (key(1), key(2));
        let caller = SrtpContext::new(&SrtpParams {
            suite,
            tx_key: caller_key.clone(),
            rx_key: echo_key.clone(),
        });
        let mut n = negotiated(Codec::Pcmu, Direction::SendRecv);
        n.srtp = Some(SrtpParams {
            suite,
            tx_key: echo_key,
            rx_key: caller_key,
        });
        (caller, n)
    }

    /// Echo with SRTP: it authenticates and decrypts under the caller's key, reflects under
    /// its own (the caller decrypts the very packet it sent, its hold shift applied to the
    /// plain packet), answers SRTCP with SRTCP, and drops what fails: tampered and replayed
    /// packets, and plain RTP, each counted.
    #[test]
    fn echo_with_srtp_reflects_under_its_own_key_and_drops_what_fails() {
        for suite in Suite::ALL {
            let t0 = Instant::now();
            let (mut caller, n) = srtp_pair(suite);
            let mut echo = EchoMedia::new(&n, 0xec40, t0);
            let send = |caller: &mut SrtpContext, seq: u16| {
                let mut p = rtp(seq, 0);
                caller
                    .tx
                    .protect_rtp(&mut p)
                    .unwrap_or_else(|e| panic!("{e}"));
                p
            };
            for seq in 0..10u16 {
                let mut p = send(&mut caller, seq);
                let sent = p.clone();
                assert_eq!(echo.handle_packet(t0, &mut p), EchoAction::Reflect);
                assert_eq!(p.len(), sent.len(), "{suite:?}: the same length back");
                assert_ne!(p, sent, "{suite:?}: under echo's key, not the caller's");
                let len = caller
                    .rx
                    .unprotect_rtp(&mut p)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(p[..len], rtp(seq, 0), "{suite:?}");
            }
            // Tampered (one payload bit), replayed, and plain packets are dropped and counted.
            let mut bad = send(&mut caller, 10);
            let good = bad.clone();
            bad[20] ^= 1;
            assert_eq!(echo.handle_packet(t0, &mut bad), EchoAction::Drop);
            assert_eq!(
                echo.handle_packet(t0, &mut good.clone()),
                EchoAction::Reflect
            );
            assert_eq!(echo.handle_packet(t0, &mut good.clone()), EchoAction::Drop);
            assert_eq!(echo.handle_packet(t0, &mut rtp(11, 0)), EchoAction::Drop);
            assert_eq!(
                (echo.srtp_auth_failures, echo.srtp_replayed, echo.reflected),
                (2, 1, 11),
                "{suite:?}"
            );
            // SRTCP in, SRTCP out: a receiver report from echo's SSRC, readable only under
            // echo's key.
            let mut sr = rtcp::build_compound(&[RtcpPacket::SenderReport {
                ssrc: 0xcafe,
                info: SenderInfo {
                    ntp: 0x1234_5678_9abc_def0,
                    ..SenderInfo::default()
                },
                reports: vec![],
            }]);
            caller
                .tx
                .protect_rtcp(&mut sr)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut tampered = sr.clone();
            tampered[10] ^= 1;
            assert_eq!(echo.handle_packet(t0, &mut tampered), EchoAction::Drop);
            assert_eq!(echo.srtp_auth_failures, 3);
            let srtcp = sr.clone();
            let EchoAction::Reply(mut reply) = echo.handle_packet(t0, &mut sr) else {
                panic!("{suite:?}: srtcp is answered");
            };
            let len = caller
                .rx
                .unprotect_rtcp(&mut reply)
                .unwrap_or_else(|e| panic!("{e}"));
            // The E flag: after the payload (RFC 3711 §3.4), last after GCM's tag (RFC 7714
            // §9.2).
            let e = if suite.is_aead() {
                reply.len() - 4
            } else {
                len
            };
            assert_eq!(reply[e] & 0x80, 0x80, "{suite:?}: encrypted: the E flag");
            let pkts = rtcp::parse_compound(&reply[..len]).unwrap_or_default();
            let Some(RtcpPacket::ReceiverReport { ssrc, reports }) = pkts.first() else {
                panic!("{pkts:?}");
            };
            assert_eq!((*ssrc, reports[0].ssrc), (0xec40, 0xcafe));
            assert_eq!(reports[0].lsr, ntp_middle(0x1234_5678_9abc_def0));
            // On hold nothing goes back; after the resume the shift is on the plain packet,
            // under echo's key.
            let mut held = n.clone();
            held.direction = Direction::RecvOnly;
            echo.update(&held);
            for seq in 12..14 {
                assert_eq!(
                    echo.handle_packet(t0, &mut send(&mut caller, seq)),
                    EchoAction::Drop
                );
            }
            echo.update(&n);
            let mut p = send(&mut caller, 14);
            assert_eq!(echo.handle_packet(t0, &mut p), EchoAction::Reflect);
            let len = caller
                .rx
                .unprotect_rtp(&mut p)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(u16::from_be_bytes([p[2], p[3]]), 12, "{suite:?}");
            assert_eq!(p[4..len], rtp(14, 0)[4..]);
            assert_eq!(
                (echo.srtp_auth_failures, echo.srtp_replayed, echo.malformed),
                (3, 1, 0)
            );
            // Every truncation of an SRTP and an SRTCP packet: dropped, never a panic.
            for p in [send(&mut caller, 15), srtcp] {
                for n in 0..p.len() {
                    let mut cut = p[..n].to_vec();
                    assert_eq!(echo.handle_packet(t0, &mut cut), EchoAction::Drop, "{n}");
                }
            }
        }
    }

    /// The tone decodes at its level and frequency in every codec.
    #[test]
    fn tone_is_1khz_at_minus_10_dbov_in_every_codec() {
        for codec in [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus] {
            let t0 = Instant::now();
            let n = negotiated(codec, Direction::SendRecv);
            let mut tone = tone_session(&n, 1, 1, t0).unwrap_or_else(|e| panic!("{e}"));
            let mut rx =
                MediaSession::new(SessionConfig::from_negotiated(&n, 2, "rx".into(), 2), t0)
                    .unwrap_or_else(|e| panic!("{e}"));
            let mut now = t0;
            let mut packets = 0;
            // Two seconds; the first half lets Opus's encoder settle.
            for i in 0..100 {
                now = t0 + Duration::from_millis(20 * i);
                while let Some(o) = tone.poll_transmit(now) {
                    if o.kind == PacketKind::Rtp {
                        packets += 1;
                        let _ = rx.handle_packet(now, &o.bytes);
                    }
                }
                if i == 49 {
                    let _ = rx.sample(now);
                }
            }
            assert_eq!(packets, 100, "{codec:?}: paced at the 20 ms ptime");
            let levels = rx.sample(now).rx.levels;
            let level = levels.speech_dbov.unwrap_or(f64::NAN);
            let tol = if codec == Codec::Opus { 0.5 } else { 0.2 };
            assert!((level - TONE_DBOV).abs() < tol, "{codec:?}: {level} dBov");
            // A sine of f Hz at rate r crosses zero 2f/r times a sample.
            let rate = if matches!(codec, Codec::Pcmu | Codec::Pcma) {
                8000.0
            } else {
                16000.0
            };
            let zc = levels.zero_crossings.unwrap_or(0.0);
            assert!(
                (zc - 2.0 * f64::from(TONE_HZ) / rate).abs() < 0.01,
                "{codec:?}: {zc}"
            );
        }
    }
}
