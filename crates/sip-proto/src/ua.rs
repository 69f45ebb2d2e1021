//! The simulated phone: a sans-IO SIP user agent that registers, places and receives calls.
//!
//! # Driving a [`UserAgent`]
//!
//! Getters: [`UserAgent::registration`], [`UserAgent::call_state`], [`UserAgent::fork_tags`],
//! [`UserAgent::can_offer`].
//! Inputs (each takes `now`): [`UserAgent::handle_message`] for every SIP message received on
//! the agent's flow (parsed by the driver), [`UserAgent::handle_timeout`] once
//! [`UserAgent::poll_timeout`] has passed, [`UserAgent::handle_transport_error`].
//! Commands: [`UserAgent::register`], [`UserAgent::unregister`], [`UserAgent::call`],
//! [`UserAgent::answer_offer`], [`UserAgent::ring`], [`UserAgent::progress`],
//! [`UserAgent::answer`], [`UserAgent::reject`], [`UserAgent::hangup`], [`UserAgent::reinvite`],
//! [`UserAgent::update`], [`UserAgent::info`], [`UserAgent::refer`] (a call transfer: see
//! the `transfer` module).
//! Outputs: after every input or command, drain [`UserAgent::poll_transmit`] (bytes and where
//! they go) and [`UserAgent::poll_event`] until both return `None`, then wait until
//! [`UserAgent::poll_timeout`] or the next message.
//!
//! A late offer: [`UserAgent::call`] without SDP sends an INVITE without offer; the callee's
//! offer (in its 2xx or a reliable 1xx) comes as [`CallEvent::Offered`], and the ACK (or the
//! PRACK) goes once [`UserAgent::answer_offer`] gives the answer (RFC 3261 §13.2.2.4,
//! RFC 3262 §5). One offer at a time (RFC 3264 §4): [`UserAgent::reinvite`] and
//! [`UserAgent::update`] with an offer send nothing while [`UserAgent::can_offer`] is false.
//!
//! A forked INVITE has one early dialog per phone that rings (RFC 3261 §12.1.2): each
//! phone's requests are answered in its own, [`UserAgent::update_fork`] sends in the one
//! it names. Crossing re-INVITEs and UPDATE offers are refused with 491 and ours are sent
//! again after §14.1's random wait (a timer [`UserAgent::poll_timeout`] includes).
//!
//! Session timers (RFC 4028, [`UaProfile::session_timer`]): the INVITE asks, a 422 is
//! answered once with its Min-SE, the 2xx (ours or the peer's) fixes the interval and the
//! refresher; the refresher's refresh (an UPDATE without body, or a re-INVITE with our
//! description) and the other side's BYE for want of one are timers
//! [`UserAgent::poll_timeout`] includes, reported as [`CallEvent::SessionRefreshed`] and
//! [`CallEvent::SessionExpired`].
//!
//! The agent never reads the clock and draws tags, branches and Call-IDs from a seeded RNG,
//! so a run can be replayed exactly.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sip_msg::typed::{
    Allow, CSeq, ContactRef, Expires, MinExpires, MinSe, NameAddr, RAck, RSeq, Require, RouteRef,
    ServiceRouteRef, SessionExpires, Supported, ToRef,
};
use sip_msg::{
    BRANCH_MAGIC, Header, HeaderName, Headers, Host, HostRef, Message, Method, RequestBuilder,
    SipUri, Uri, UriRef, tag_from,
};

use crate::auth::{AuthFailure, Authenticator, Credentials};
use crate::dialog::{Dialog, DialogError, DialogIds, OpenOffer};
use crate::fifo::Fifo;
pub use crate::outbound::Grant;
use crate::sdpdir::InCallAnswer;
pub use crate::sdpdir::SrtpPolicy;
use crate::transaction::{
    ClientTransaction, Finished, FinishedReply, RequestMsg, ServerKeyRef, ServerTransaction, State,
    Timer, TimerConfig, TxnError, TxnEvent, TxnKey, client_match,
};

mod in_dialog_auth;
mod replaces;
mod transfer;
pub use replaces::ReplacesMatch;
pub use transfer::TRANSFER_WAIT;

/// Methods we accept, announced in Allow (REFER and the NOTIFYs of our REFER's
/// subscription: call transfer, the `transfer` module).
const ALLOW: &str =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, MESSAGE";

/// How the agent is set up: everything in one struct (see [`UaConfig::split`] for the shared
/// and the per-phone parts).
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The address-of-record user (extension).
    pub user: String,
    /// The domain of the address-of-record (the registrar's domain).
    pub domain: String,
    /// The REGISTER Request-URI (e.g. `sip:pbx.example.com:5060;transport=udp`).
    pub registrar_uri: Uri,
    /// The outbound proxy: every initial INVITE carries `Route: <PROXY;lr>` and goes there.
    pub outbound_proxy: Option<SipUri>,
    /// Digest credentials; `None` answers no challenge.
    pub credentials: Option<Credentials>,
    /// Our host and port as written in Via and Contact.
    pub local_host: Host,
    /// Our port.
    pub local_port: u16,
    /// The Via transport token (`UDP`, `TCP`, `TLS`, `WS`, `WSS`).
    pub transport: String,
    /// True on TCP/TLS/WS/WSS: no retransmissions (RFC 3261 §17.1.1.2).
    pub reliable: bool,
    /// Requested registration lifetime in seconds.
    pub expires: u32,
    /// T1, T2, T4.
    pub timers: TimerConfig,
    /// The User-Agent header.
    pub user_agent: String,
    /// Seed for tags, branches and Call-IDs.
    pub seed: u64,
    /// Offer and use reliable provisional responses (RFC 3262 100rel and PRACK).
    pub use_100rel: bool,
    /// RFC 4028 session timers; `None`: off (no `timer` in Supported, a peer's
    /// Session-Expires is ignored).
    pub session_timer: Option<SessionTimerConfig>,
    /// Every codec the phone can run, as an SDP whose first audio stream lists them (its
    /// payload types, `a=rtpmap`, `a=fmtp`, and `a=rtcp-mux` when muxing is accepted; its
    /// address is not read, its port is any but 0): an offer inside a call is answered with one of
    /// these (RFC 3264 §6.1), and the offer in our 2xx to a re-INVITE without one lists
    /// them. `None`: the codecs of the fullest description sent in the call (a callee then
    /// knows only the codec of its answer).
    pub codecs: Option<Bytes>,
}

/// RFC 4028 session timers as a group uses them, calling and answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// The session interval we ask for in our INVITEs (Session-Expires), and the most we
    /// grant as answerer, in seconds (at least [`MIN_SE_FLOOR`], RFC 4028 §4).
    pub expires: u32,
    /// Our Min-SE in seconds: sent in our INVITEs, and the least we accept as answerer
    /// (smaller: 422, §8.1). `None`: not sent, and §4's floor of 90 s applies.
    pub min_se: Option<u32>,
    /// Who we ask to refresh.
    pub refresher: Refresher,
}

/// Who refreshes the session (RFC 4028 §7.1, §9): the `refresher` parameter we ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The caller.
    Uac,
    /// The callee.
    Uas,
    /// The other side chooses: our INVITE names none; as callee we name the caller when it
    /// supports timers (its refreshes are then what we test), ourselves when it does not.
    Auto,
}

/// RFC 4028 §4: no session interval or Min-SE is below 90 seconds.
pub const MIN_SE_FLOOR: u32 = 90;

impl UaConfig {
    /// The part every phone of a group shares, and the phone's own part.
    pub fn split(self) -> (UaProfile, UaIdentity) {
        (
            UaProfile {
                domain: self.domain,
                registrar_uri: self.registrar_uri,
                outbound_proxy: self.outbound_proxy,
                transport: self.transport,
                reliable: self.reliable,
                expires: self.expires,
                timers: self.timers,
                user_agent: Arc::from(self.user_agent),
                use_100rel: self.use_100rel,
                session_timer: self.session_timer,
                codecs: self.codecs,
                srtp: SrtpPolicy::default(),
                caller: CallerHeaders::default(),
            },
            UaIdentity {
                user: self.user,
                credentials: self.credentials,
                local_host: self.local_host,
                local_port: self.local_port,
                seed: self.seed,
            },
        )
    }
}

/// The configuration every phone of a group shares: held once, behind an `Arc`, by all of
/// them (a fleet has thousands of phones and one copy of this per group).
#[derive(Debug, Clone)]
pub struct UaProfile {
    /// The domain of the address-of-record (the registrar's domain).
    pub domain: String,
    /// The REGISTER Request-URI (e.g. `sip:pbx.example.com:5060;transport=udp`).
    pub registrar_uri: Uri,
    /// The outbound proxy: every initial INVITE carries `Route: <PROXY;lr>` and goes there.
    pub outbound_proxy: Option<SipUri>,
    /// The Via transport token (`UDP`, `TCP`, `TLS`, `WS`, `WSS`).
    pub transport: String,
    /// True on TCP/TLS/WS/WSS: no retransmissions (RFC 3261 §17.1.1.2).
    pub reliable: bool,
    /// Requested registration lifetime in seconds.
    pub expires: u32,
    /// T1, T2, T4.
    pub timers: TimerConfig,
    /// The User-Agent header.
    pub user_agent: Arc<str>,
    /// Offer and use reliable provisional responses (RFC 3262 100rel and PRACK).
    pub use_100rel: bool,
    /// RFC 4028 session timers ([`UaConfig::session_timer`]).
    pub session_timer: Option<SessionTimerConfig>,
    /// Every codec the phone can run ([`UaConfig::codecs`]).
    pub codecs: Option<Bytes>,
    /// What an offer inside a call may do to the media's security (the group's `srtp`):
    /// drop SRTP, bring it in ([`SrtpPolicy`]). [`UaConfig::split`] gives `Off`.
    pub srtp: SrtpPolicy,
    /// The From display name and the extra headers of the INVITEs the phones place.
    pub caller: CallerHeaders,
}

/// What a group's phones put in the INVITEs they place beyond what SIP needs: a display
/// name in From and headers of the user's choosing (`P-Asserted-Identity`, `Diversion`,
/// `X-…`), each a template in which `{user}` is the phone's user and `{domain}` its domain.
#[derive(Debug, Clone, Default)]
pub struct CallerHeaders {
    /// The From display name (RFC 3261 §20.20), quoted when written.
    pub display_name: Option<String>,
    /// Header name and value template, in the order written.
    pub headers: Vec<(HeaderName, String)>,
}

/// What is a phone's own: its user, credentials, address and seed.
#[derive(Debug, Clone)]
pub struct UaIdentity {
    /// The address-of-record user (extension).
    pub user: String,
    /// Digest credentials; `None` answers no challenge.
    pub credentials: Option<Credentials>,
    /// Our host as written in Via and Contact.
    pub local_host: Host,
    /// Our port.
    pub local_port: u16,
    /// Seed for tags, branches and Call-IDs.
    pub seed: u64,
}

/// Where a message must be sent; the driver maps this to an address and flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The registrar (REGISTER, and initial requests when no outbound proxy nor service
    /// route is set).
    Registrar,
    /// The outbound proxy (initial INVITE and its CANCEL/ACK when one is set).
    OutboundProxy,
    /// The next hop of an in-dialog request (first route or remote target), or of an initial
    /// request without outbound proxy that carries a service route (its first entry,
    /// RFC 3608). Shared: an
    /// `Outgoing` stays small (it is moved through the queues for every message), and the
    /// copies kept for retransmissions (a transaction's, a 2xx's ACK) cost no allocation.
    Uri(Arc<Uri>),
    /// Back to where a request came from (responses).
    Source(SocketAddr),
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where to.
    pub destination: Destination,
    /// The whole message.
    pub bytes: Bytes,
    /// True for a retransmission.
    pub retransmission: bool,
}

/// Our handle on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(pub u32);

/// Registration status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// Never registered.
    Idle,
    /// A REGISTER is in flight.
    Registering,
    /// Bound until the given instant.
    Registered {
        /// When the binding expires.
        until: Instant,
    },
    /// Un-REGISTER in flight.
    Unregistering,
    /// Un-registered after a successful un-REGISTER.
    Unregistered,
    /// The last attempt failed.
    Failed,
}

/// What the agent reports.
#[derive(Debug, Clone)]
pub enum UaEvent {
    /// 200 OK to REGISTER: the binding and its granted lifetime.
    Registered {
        /// Granted seconds.
        expires: u32,
        /// True for a refresh of an existing binding.
        refresh: bool,
    },
    /// Registration failed: the final code (408 for a timeout) and reason phrase.
    RegistrationFailed {
        /// SIP status code.
        code: u16,
        /// Reason phrase, or a description of the local failure.
        reason: String,
    },
    /// The un-REGISTER was answered (any final code).
    Unregistered {
        /// SIP status code.
        code: u16,
    },
    /// A call event.
    Call(CallId, CallEvent),
    /// A request or response was sent again (RFC 3261 timers A, E, G or a peer's retransmission).
    Retransmitted {
        /// The method of the transaction.
        method: Method,
        /// Retransmissions so far in this transaction.
        count: u32,
    },
    /// A transaction timer fired.
    TimerFired {
        /// Which timer.
        timer: Timer,
        /// The method of the transaction.
        method: Method,
    },
    /// The peer sent something we had to refuse or ignore, or a protocol violation we took
    /// only as far as the RFC lets us (a callee's BYE in its early dialog); reported, never
    /// fatal.
    Ignored {
        /// What and why.
        what: &'static str,
    },
    /// A MESSAGE outside any dialog (RFC 3428 pager mode), answered 200.
    Message {
        /// Its Content-Type.
        content_type: Option<String>,
        /// Its body.
        body: Bytes,
    },
}

/// How a call ended or failed, from our point of view.
#[derive(Debug, Clone)]
pub enum CallEvent {
    /// An incoming INVITE; answer with [`UserAgent::answer`] or [`UserAgent::reject`].
    Incoming {
        /// The caller's URI.
        from: String,
        /// The SDP offer, if any.
        offer: Option<Bytes>,
        /// RFC 3891 §3: the INVITE's `Replaces` names this call of ours (confirmed, or early
        /// and placed by us): answering the new call ends that one (BYE, or CANCEL for our
        /// early INVITE). Answer it at once: it takes over a call already up (no ringing).
        replaces: Option<CallId>,
    },
    /// 100 Trying received.
    Trying,
    /// 180/183 received (with early media SDP, if any).
    Progress {
        /// 180, 183 …
        code: u16,
        /// SDP in the provisional response.
        sdp: Option<Bytes>,
    },
    /// UAC, late offer: the callee's offer to our INVITE without one (RFC 3264 §4), in its
    /// 2xx (RFC 3261 §13.2.1) or in a reliable 1xx (RFC 3262 §5). Reported once; answer it
    /// with [`UserAgent::answer_offer`]: the ACK of that 2xx (or the PRACK of that 1xx) waits
    /// for the answer and carries it (a retransmitted 2xx or 1xx meanwhile is not reported
    /// again and gets nothing). [`UserAgent::hangup`] meanwhile answers with every stream
    /// rejected (port 0) and ends the call.
    Offered {
        /// The callee's SDP offer.
        sdp: Bytes,
    },
    /// 2xx received (UAC; with a late offer, once our answer went in the ACK) or ACK received
    /// (UAS): the call is up.
    Answered {
        /// The remote SDP (answer for UAC; for UAS the offer already reported).
        sdp: Option<Bytes>,
    },
    /// A final failure response, a timeout (408) or cancellation (487).
    Failed {
        /// The status code.
        code: u16,
        /// The reason phrase or local description.
        reason: String,
    },
    /// An offer inside the call (re-INVITE or UPDATE) listed none of our codecs: refused with
    /// 488 and a Warning, the session goes on unchanged (RFC 3261 §14.2, RFC 3264 §6.1).
    OfferRefused {
        /// The request's method.
        method: Method,
        /// The offer refused.
        sdp: Bytes,
        /// The Warning sent with the 488 (code, agent, quoted text).
        warning: &'static str,
    },
    /// A re-INVITE (or UPDATE, or PRACK with an offer) was received and answered 200: an
    /// offer with our description answering it (a voice codec of the offer's, the one in
    /// use while the offer lists it, RFC 3264 §6.1; the direction mirrored; read it with
    /// [`UserAgent::local_sdp`]); a re-INVITE without one with our description as an offer,
    /// answered in the ACK ([`CallEvent::OfferAnswered`]).
    Reinvited {
        /// The new remote SDP.
        sdp: Option<Bytes>,
    },
    /// The ACK of our 2xx to a re-INVITE without an offer, which carried ours (RFC 3261
    /// §14.2): the exchange is over. RFC 3261 §13.2.2.4: the ACK "MUST carry an answer";
    /// `None` when it did not, and the session stays as it was (as after a refused
    /// re-INVITE, §14.2). An answer without any codec of ours leaves the codec in use as
    /// it was too.
    OfferAnswered {
        /// The peer's answer.
        sdp: Option<Bytes>,
    },
    /// The final response to our re-INVITE, UPDATE or INFO (2xx re-INVITEs are ACKed).
    Modified {
        /// The method we sent.
        method: Method,
        /// Its final status code.
        code: u16,
        /// SDP in the response, if any.
        sdp: Option<Bytes>,
    },
    /// A reliable provisional response arrived and was acknowledged with PRACK.
    Pracked {
        /// Its RSeq.
        rseq: u32,
    },
    /// An INFO request inside the call (e.g. DTMF `application/dtmf-relay`).
    Info {
        /// Its Content-Type.
        content_type: Option<String>,
        /// Its body.
        body: Bytes,
    },
    /// A MESSAGE inside the call (RFC 3428 §4: in a dialog too), answered 200.
    Message {
        /// Its Content-Type.
        content_type: Option<String>,
        /// Its body.
        body: Bytes,
    },
    /// RFC 4028 §10: a session refresh (a re-INVITE or UPDATE of the call, ours or the
    /// peer's, each one is) was answered 2xx: the session interval starts again.
    SessionRefreshed {
        /// True for our request, false for the peer's.
        by_us: bool,
        /// The session interval from now on, seconds.
        interval: u32,
        /// True when we are the refresher from now on.
        we_refresh: bool,
    },
    /// RFC 4028 §9: the 2xx to our INVITE or refresh set a session interval below the Min-SE
    /// our request carried (90 s without one), which a UAS "MUST NOT" do. We follow it (the
    /// peer polices the session by it), and report it: the refreshes come more often than
    /// agreed, and a broken timer is what a tester is there to see.
    SessionTooShort {
        /// The interval the 2xx set, seconds.
        interval: u32,
        /// Our request's Min-SE (90 when it had none), seconds.
        min_se: u32,
    },
    /// RFC 4028 §10: the session timer ends the call with BYE ([`CallEvent::Ended`] follows).
    SessionExpired {
        /// The session interval, seconds.
        interval: u32,
        /// 0: the peer, the refresher, sent no refresh before the session expired; otherwise
        /// the code our own refresh was answered with (481, or 408 also for no answer).
        code: u16,
    },
    /// RFC 3515: the final response to our REFER ([`UserAgent::refer`]; 408 also when none
    /// came). 2xx: the transfer is accepted, its progress comes as
    /// [`CallEvent::TransferProgress`]; otherwise it is refused and the call goes on.
    ReferAnswered {
        /// The status code.
        code: u16,
    },
    /// RFC 3515 §2.4.5: a NOTIFY of our REFER's subscription, answered 200: the status code
    /// its `message/sipfrag` body begins with (the transferee's call to the target: 100,
    /// 180, 200, 486 …). `last`: the first final status, the transfer's outcome; a 2xx, and
    /// we end the call with BYE ([`CallEvent::Ended`] follows, RFC 5589 §6); otherwise the
    /// transfer failed and the call goes on. Later NOTIFYs are answered, not reported.
    TransferProgress {
        /// The sipfrag's status code.
        code: u16,
        /// The transfer's outcome.
        last: bool,
    },
    /// RFC 3515 §2.4.2: the peer's REFER in this call was accepted (202): we are calling its
    /// target in the new call `call` (an INVITE offering this call's description, with the
    /// REFER's Referred-By), whose progress we NOTIFY in this call's dialog. This call goes on
    /// until the transferor ends it.
    Referred {
        /// The Refer-To URI.
        to: String,
        /// The new call.
        call: CallId,
    },
    /// Our transfer's outcome will not be known: no final status within
    /// [`TRANSFER_WAIT`] (or the subscription's `expires`), the subscription ended without
    /// one, or a NOTIFY of it we refused (unreadable). The call goes on.
    TransferUnknown {
        /// What happened.
        why: &'static str,
    },
    /// The call ended.
    Ended {
        /// True when the peer hung up.
        by_remote: bool,
        /// The final code of our BYE (200, or 408 on timeout; 0 when the peer hung up).
        code: u16,
    },
}

/// Phases a call goes through (forward only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallState {
    /// INVITE sent or received, nothing back yet.
    Calling,
    /// A provisional response was received or sent.
    Early,
    /// UAS: 2xx sent, waiting for the ACK. UAC, late offer: the 2xx carried the callee's
    /// offer, our ACK waits for the answer ([`UserAgent::answer_offer`]).
    Answering,
    /// Confirmed dialog.
    Confirmed,
    /// BYE or CANCEL in flight.
    Terminating,
    /// Over.
    Terminated,
}

/// Requests we send inside a call's dialog (besides ACK, BYE and CANCEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InDialogMethod {
    Reinvite,
    Update,
    Info,
    Message,
    Prack,
}

impl InDialogMethod {
    fn method(self) -> Method {
        match self {
            Self::Reinvite => Method::Invite,
            Self::Update => Method::Update,
            Self::Info => Method::Info,
            Self::Message => Method::Message,
            Self::Prack => Method::Prack,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Register,
    Unregister,
    Invite(CallId),
    Cancel(CallId),
    Bye(CallId),
    /// re-INVITE, UPDATE, INFO or PRACK inside a call.
    InDialog(CallId, InDialogMethod),
    /// Our REFER in a call (a transfer, [`UserAgent::refer`]).
    Refer(CallId),
    /// Our NOTIFY of a REFER's progress in a call (as transferee); its answer is nobody's
    /// business (a failure ends the subscription at the transferor, RFC 6665 §4.2.2).
    Notify(CallId),
    /// The BYE that ends a dialog another fork of the call's INVITE confirmed with its 2xx
    /// (RFC 3261 §13.2.2.4); its outcome is nobody's business (the call is not that dialog).
    ForkBye(CallId),
}

/// The ACK of a 2xx to an INVITE or re-INVITE and where it went, kept by the transaction
/// (in Accepted, then in its finished record) to be sent again for each retransmission of
/// the 2xx until Timer M (RFC 3261 §13.2.2.4).
#[derive(Debug)]
struct KeptAck {
    destination: Destination,
    bytes: Bytes,
    /// The other forks of the INVITE: those whose early dialog used CSeq numbers past the
    /// INVITE's (PRACK, UPDATE) when the first 2xx came, and those whose 2xx confirmed a
    /// dialog we ended with BYE (§13.2.2.4): each gets one BYE, and only its ACK again for a
    /// retransmitted 2xx. Bounded: [`MAX_EARLY_FORKS`] + 1 early ones, [`MAX_FORKS_ENDED`]
    /// ended ones.
    forks: Vec<KeptFork>,
}

/// An other fork of an INVITE as its 2xx's ACK keeps it ([`KeptAck::forks`]).
#[derive(Debug)]
struct KeptFork {
    /// Its To tag.
    tag: String,
    /// The last CSeq number its early dialog used (0: none past the INVITE's). The BYE that
    /// ends its dialog comes right after it (§12.2.1.1; its UAS refuses a lower or equal
    /// number with 500, §12.2.2).
    last_seq: u32,
    /// Its dialog is being ended with BYE.
    ended: bool,
}

/// The early dialog of a fork of our INVITE other than the first one's (the call's
/// `dialog`): RFC 3261 §12.1.2, each To tag of a 1xx makes its own. Kept to PRACK that
/// fork's reliable provisionals in it (RFC 3262 §4: its To tag, remote target, route set and
/// CSeq numbers, its RSeq), to answer the requests that fork sends in it and send ours
/// ([`UserAgent::update_fork`], RFC 3311 §5.1), and for the CSeq its dialog goes on from
/// (its 2xx confirming the call, or the BYE ending it). Made for each fork whose 1xx has a
/// To tag and a Contact.
#[derive(Debug)]
struct EarlyFork {
    dialog: Dialog,
    /// The last RSeq acknowledged with PRACK in this dialog.
    last_rseq: Option<u32>,
    /// Its callee ended it with BYE ([`UserAgent::on_early_bye`]): kept only so that its
    /// later 1xx do not make it again (nor are PRACKed) and its CSeq numbers carry on; no
    /// request is answered in it (481) nor sent.
    ended: bool,
}

/// The INVITE's offer/answer state of the call's dialog (`fork` `None`) or of another fork's
/// early dialog (`Some(i)`).
fn offer_of(call: &mut Call, fork: Option<usize>) -> Option<&mut OpenOffer> {
    dialog_of_mut(call, fork).map(|d| &mut d.offer)
}

/// A new early dialog of our INVITE `invite`: its offer, if it has one, is open in it until
/// that fork answers it (each fork's dialog has its own offer/answer, RFC 3261 §12.1.2).
fn with_invite_offer(mut dialog: Dialog, invite: Option<&Message>) -> Dialog {
    if invite.is_some_and(|i| !i.body().is_empty()) {
        dialog.offer = OpenOffer::Ours;
    }
    dialog
}

/// A re-INVITE or UPDATE of ours refused with 491 Request Pending (glare: the peer's own
/// offer crossed it), sent again at `at` (RFC 3261 §14.1; RFC 3311 §5.1 for UPDATE). Kept in
/// the call's [`Rare`] box while it is due or in flight (the rare path).
#[derive(Debug)]
struct GlareRetry {
    /// When it goes again; `None` once sent (kept to count the tries until its answer).
    at: Option<Instant>,
    kind: InDialogMethod,
    /// The To tag of the dialog it was sent in (an early fork's, or the confirmed one).
    tag: String,
    /// Its offer, sent again as it was.
    body: Option<Bytes>,
    /// How many times it was refused with 491 (at most [`MAX_GLARE_TRIES`]).
    tries: u8,
}

/// A call's RFC 4028 session timer, kept in its [`Rare`] box while the call has one: asked
/// for (our INVITE, until its 2xx), then agreed (the 2xx's Session-Expires) and running.
#[derive(Debug)]
struct SessionTimer {
    /// The session interval, seconds: the one we ask for until the 2xx, then the one agreed.
    interval: u32,
    /// The Min-SE we send (ours, or the one a 422 named: §7.4); `None`: none sent (90 s).
    min_se: Option<u32>,
    /// We are the refresher (else the peer is), once agreed.
    we_refresh: bool,
    /// When we refresh next (`we_refresh`) or end the call for want of the peer's refresh;
    /// `None` while not running (before the 2xx, our refresh in flight).
    at: Option<Instant>,
    /// When the interval last started (the 2xx of the INVITE or of the last refresh).
    started: Instant,
    /// A 422 was answered by a retry already (§7.4, §10: once).
    retried_422: bool,
    /// The peer lists UPDATE in its Allow: our refreshes go as UPDATE without a body.
    peer_update: bool,
    /// The peer supports timers (`timer` in its Supported or Require): our 2xx carries
    /// `Require: timer` (§9).
    peer_timer: bool,
}

impl SessionTimer {
    /// RFC 4028 §9: the least interval a 2xx to our request may set: the Min-SE it carried,
    /// 90 s when it carried none. `Some((interval, that))` when the interval now is below it.
    fn below_min_se(&self) -> Option<(u32, u32)> {
        let floor = self.min_se.unwrap_or(MIN_SE_FLOOR);
        (self.interval < floor).then_some((self.interval, floor))
    }

    /// Starts (again) the interval at `now` (§10): we refresh at half of it, or, not the
    /// refresher, end the call at its end minus the smaller of 32 s and a third of it.
    fn restart(&mut self, now: Instant) {
        self.started = now;
        let interval = Duration::from_secs(u64::from(self.interval));
        self.at = Some(if self.we_refresh {
            now + interval / 2
        } else {
            now + interval - (interval / 3).min(Duration::from_secs(32))
        });
    }

    /// When the session expires without a refresh.
    fn expiry(&self) -> Instant {
        self.started + Duration::from_secs(u64::from(self.interval))
    }

    /// The `Session-Expires` value we send, the refresher named from the side of the
    /// request's or response's UAC (`uac_is_us`: we sent the request).
    fn header(&self, uac_is_us: bool) -> Header {
        let refresher = if self.we_refresh == uac_is_us {
            "uac"
        } else {
            "uas"
        };
        let mut v = decimal_text(self.interval);
        v.push_str(";refresher=");
        v.push_str(refresher);
        Header::new(HeaderName::SessionExpires, v)
    }

    /// Takes the Session-Expires of `msg` (a 2xx to our request, or the peer's request):
    /// its interval and refresher (`uac` is the request's sender; `sender_is_us`), none
    /// named: the request's sender. False when it has none.
    fn take_terms(&mut self, msg: &Message, sender_is_us: bool) -> bool {
        let Some(Ok(se)) = msg.headers.typed::<SessionExpires>() else {
            return false;
        };
        // At least a second: 0 would refresh (or end the call) without a pause.
        self.interval = se.seconds.max(1);
        let uac_refreshes = se
            .refresher()
            .is_none_or(|r| !r.eq_ignore_ascii_case("uas"));
        self.we_refresh = uac_refreshes == sender_is_us;
        true
    }
}

/// The session timer of the call, if it has one.
fn session_of(call: &mut Call) -> Option<&mut SessionTimer> {
    call.rare.as_mut()?.session.as_mut()
}

/// When the call's session timer fires next, if one runs.
fn session_at(call: &Call) -> Option<Instant> {
    call.rare.as_ref()?.session.as_ref()?.at
}

/// True when `msg` lists `tag` in Supported or Require.
fn supports(msg: &Message, tag: &str) -> bool {
    msg.headers
        .typed_all::<Supported>()
        .into_iter()
        .flatten()
        .any(|s| s.contains(tag))
        || msg
            .headers
            .typed_all::<Require>()
            .into_iter()
            .flatten()
            .any(|r| r.contains(tag))
}

/// True when `msg`'s Allow lists UPDATE.
fn allows_update(msg: &Message) -> bool {
    msg.headers
        .typed_all::<Allow>()
        .into_iter()
        .flatten()
        .any(|a| a.contains("UPDATE"))
}

/// What a call keeps only on a rarer path, boxed in the call while any of it is kept (a
/// `Vec` inline would make every call 16 bytes bigger): the re-INVITEs and UPDATEs refused
/// with 491, the callee's offer our answer is owed to, and the session timer.
#[derive(Debug, Default)]
struct Rare {
    /// Our re-INVITEs and UPDATEs refused with 491: at most one of each method per dialog (a
    /// new one in that dialog replaces the one waiting, [`drop_waiting_retry`]), so each
    /// fork's early dialog and the confirmed one keep their own (RFC 3261 §12.2.2: each
    /// dialog on its own).
    retries: Vec<GlareRetry>,
    /// UAC, late offer: the callee's offer waiting for [`UserAgent::answer_offer`].
    owed: Option<OwedAnswer>,
    /// Our description as it last listed every codec of ours, while the one we sent since
    /// lists fewer (our answer inside the call names the one codec chosen): the codecs a
    /// later answer may choose from, and our offer in a 2xx lists
    /// ([`crate::sdpdir::answer_in_call`], [`crate::sdpdir::offer_again`]).
    codecs: Option<Bytes>,
    /// The voice codec in use (`NAME/RATE`), when it is not the first of our description:
    /// the peer's answer to an offer of ours chose another one of it.
    in_use: Option<String>,
    /// The call's RFC 4028 session timer.
    session: Option<SessionTimer>,
    /// Our REFER of the call and its subscription (RFC 3515); boxed, as `referrer`: a box
    /// pointer each (16 bytes) instead of 40 bytes in every call's `Rare` (a call with a
    /// session timer has one all its life).
    transfer: Option<Box<transfer::Transfer>>,
    /// The call's tie to another call of ours: placed for a REFER made in it, or replacing
    /// it (RFC 3891). One box for both (a call is never both: one we place, one we answer):
    /// one pointer, so that `Rare` stays in the 224-byte size class with `keys`.
    tie: Option<Box<Tie>>,
    /// The call's SRTP state beyond our description (boxed: only `srtp = "optional"`
    /// calls have one, and `Rare` stays in mimalloc's 224-byte size class).
    keys: Option<Box<CallKeys>>,
}

/// What an `srtp = "optional"` call knows of its keys beyond our description.
#[derive(Debug, Default)]
struct CallKeys {
    /// Our description carries `a=crypto` lines the peer's answer did not take (our
    /// offer answered plain): the call's media is plain.
    unkeyed: bool,
    /// `a=crypto` lines of fresh keys for an SRTP offer inside the call while our
    /// description has none ([`UserAgent::keep_srtp_keys`]).
    spare: Option<Bytes>,
    /// DTLS-SRTP: the peer's `a=fingerprint` value as its offer or answer gave it.
    peer_fingerprint: Option<Box<str>>,
}

/// What ties a call to another call of ours ([`Rare::tie`]).
#[derive(Debug)]
enum Tie {
    /// We placed it for a REFER in another call (transferee): where its progress is NOTIFYed.
    Referred(transfer::Referrer),
    /// An incoming call whose INVITE's Replaces named this other call of ours (RFC 3891 §3):
    /// answering it ends that one.
    Replacing(CallId),
}

impl Rare {
    /// Nothing kept: the box can go.
    fn is_empty(&self) -> bool {
        self.retries.is_empty()
            && self.owed.is_none()
            && self.codecs.is_none()
            && self.in_use.is_none()
            && self.session.is_none()
            && self.transfer.is_none()
            && self.tie.is_none()
            && self
                .keys
                .as_ref()
                .is_none_or(|k| !k.unkeyed && k.spare.is_none() && k.peer_fingerprint.is_none())
    }
}

/// Drops the call's [`Rare`] box when nothing is kept in it any more.
fn tidy_rare(call: &mut Call) {
    if call.rare.as_ref().is_some_and(|r| r.is_empty()) {
        call.rare = None;
    }
}

/// Our description becomes `new` (an answer or offer of ours inside the call): when it
/// lists fewer codecs than the one that listed them all, that one is kept (see
/// [`Rare::codecs`]).
fn now_describing(call: &mut Call, new: Bytes) {
    let fuller = call
        .rare
        .as_ref()
        .and_then(|r| r.codecs.clone())
        .or_else(|| call.local_sdp.clone());
    match fuller {
        Some(f) if crate::sdpdir::lists_fewer_codecs(&new, &f) => {
            call.rare.get_or_insert_with(Box::default).codecs = Some(f);
        }
        _ => {
            if let Some(r) = call.rare.as_mut() {
                r.codecs = None;
            }
        }
    }
    call.local_sdp = Some(new);
    tidy_rare(call);
}

/// The codec now in use is `codec` (`NAME/RATE`; `None`: unchanged), kept only when it is
/// not the first of our description ([`Rare::in_use`]).
fn now_using(call: &mut Call, codec: Option<String>) {
    let Some(codec) = codec else {
        return;
    };
    let first = call.local_sdp.as_deref().and_then(crate::sdpdir::codec_in);
    if first.as_ref() == Some(&codec) {
        if let Some(r) = call.rare.as_mut() {
            r.in_use = None;
        }
        tidy_rare(call);
    } else {
        call.rare.get_or_insert_with(Box::default).in_use = Some(codec);
    }
}

/// The voice codec in use (`NAME/RATE`): [`Rare::in_use`], else our description's first.
fn codec_in_use(call: &Call) -> Option<String> {
    call.rare
        .as_ref()
        .and_then(|r| r.in_use.clone())
        .or_else(|| call.local_sdp.as_deref().and_then(crate::sdpdir::codec_in))
}

/// The peer's `answer` to our offer (our description): the codec in use is its first one of
/// ours (RFC 3264 §6.1). Under the group's SRTP rule `policy`: `Optional`, an answer
/// without `a=crypto` to our offer with keys leaves the call plain ([`CallKeys::unkeyed`]);
/// `Dtls`, the answer's fingerprint is the peer's ([`heard_peer`]).
fn took_answer(call: &mut Call, answer: &[u8], policy: SrtpPolicy) {
    heard_peer(call, answer, policy);
    if policy == SrtpPolicy::Optional
        && call
            .local_sdp
            .as_deref()
            .is_some_and(crate::sdpdir::has_crypto)
    {
        let unkeyed = !crate::sdpdir::has_crypto(answer);
        if unkeyed || call.rare.as_ref().is_some_and(|r| r.keys.is_some()) {
            let rare = call.rare.get_or_insert_with(Box::default);
            rare.keys.get_or_insert_with(Box::default).unkeyed = unkeyed;
            tidy_rare(call);
        }
    }
    // The common case, cheaply: our first codec answered, and none other recorded.
    if call.rare.as_ref().is_none_or(|r| r.in_use.is_none())
        && call
            .local_sdp
            .as_deref()
            .is_some_and(|ours| crate::sdpdir::keeps_our_first_codec(ours, answer))
    {
        return;
    }
    let codec = call
        .local_sdp
        .as_deref()
        .and_then(|ours| crate::sdpdir::answered_codec(ours, answer));
    now_using(call, codec);
}

/// The codecs an offer inside the call is matched against, and the offer in our 2xx to a
/// re-INVITE without one lists: the configured ones ([`UaProfile::codecs`]; RFC 3264 §6.1
/// lets the answer use any codec of the offer we support, not only one we answered with
/// before), else our fullest description sent in the call ([`Rare::codecs`]); `None`: our
/// description as it is.
fn codec_list<'a>(call: &'a Call, configured: Option<&'a Bytes>) -> Option<&'a [u8]> {
    configured
        .map(|c| &c[..])
        .or_else(|| call.rare.as_ref()?.codecs.as_deref())
}

/// Our answer to an offer inside the call ([`crate::sdpdir::answer_in_call`]) from the
/// call's description and codecs ([`codec_list`]), under the group's SRTP rule `policy`;
/// `None` when the call has no description (answered without SDP then).
fn answer_in_call(
    call: &Call,
    configured: Option<&Bytes>,
    policy: SrtpPolicy,
    offer: &[u8],
) -> Option<crate::sdpdir::InCallAnswer> {
    let ours = call.local_sdp.as_ref()?;
    let rare = call.rare.as_deref();
    let keys = rare.and_then(|r| r.keys.as_deref());
    let srtp = crate::sdpdir::CallSrtp {
        policy,
        unkeyed: keys.is_some_and(|k| k.unkeyed),
        spare: keys.and_then(|k| k.spare.as_deref()),
        peer_fingerprint: keys.and_then(|k| k.peer_fingerprint.as_deref()),
    };
    Some(crate::sdpdir::answer_in_call(
        ours,
        codec_list(call, configured),
        rare.and_then(|r| r.in_use.as_deref()),
        offer,
        &srtp,
    ))
}

/// The peer's SDP `sdp` (its offer or answer) in a DTLS-SRTP call (`policy` `Dtls`): its
/// `a=fingerprint` is kept ([`CallKeys::peer_fingerprint`]), so that an offer inside the call
/// with another one (a new certificate: a new association, RFC 5763 §5) is told apart.
fn heard_peer(call: &mut Call, sdp: &[u8], policy: SrtpPolicy) {
    if policy != SrtpPolicy::Dtls {
        return;
    }
    if let Some(fp) = crate::sdpdir::fingerprint_of(sdp) {
        let rare = call.rare.get_or_insert_with(Box::default);
        rare.keys.get_or_insert_with(Box::default).peer_fingerprint = Some(fp.into());
    }
}

/// Our `answer` inside the call went out: it is our description, with its codec, and the
/// call's keys are those it carries (a spare key it used is used up; a plain answer leaves
/// nothing unkeyed).
fn answered_in_call(call: &mut Call, answer: Bytes, codec: Option<String>) {
    let keyed = crate::sdpdir::has_crypto(&answer);
    now_describing(call, answer);
    now_using(call, codec);
    if let Some(k) = call.rare.as_mut().and_then(|r| r.keys.as_mut()) {
        k.unkeyed = false;
        if keyed {
            k.spare = None;
        }
    }
    tidy_rare(call);
}

/// The callee's offer to our INVITE without one (RFC 3264 §4), reported as
/// [`CallEvent::Offered`], and the message our answer goes in once the application gives it
/// ([`UserAgent::answer_offer`]).
#[derive(Debug)]
struct OwedAnswer {
    offer: Bytes,
    at: OwedIn,
}

#[derive(Debug)]
enum OwedIn {
    /// The PRACK of the reliable 1xx that carried the offer (RFC 3262 §5: "it MUST generate
    /// an answer in the PRACK"), in the early dialog of the fork with To tag `tag`.
    Prack { tag: String, rseq: u32, cseq: u32 },
    /// The ACK of the 2xx that carried the offer (RFC 3261 §13.2.2.4: "If the 2xx contains an
    /// offer ..., the ACK MUST carry an answer in its body"), in the call's (confirmed)
    /// dialog: the INVITE's CSeq number, and the other forks' early dialogs for the kept ACK
    /// ([`KeptAck::forks`]).
    Ack { seq: u32, forks: Vec<KeptFork> },
}

/// What a PRACK matching the outstanding reliable 1xx does with its SDP (RFC 3262 §5).
enum PrackSdp {
    /// Acknowledged (200); with our answer when the PRACK carried a new offer.
    Taken(Option<Bytes>),
    /// It carried an offer we cannot answer now: refused, the 1xx stays unacknowledged.
    Refused,
    /// It carried an offer without any of our codecs (RFC 3264 §6.1), or one that changes
    /// the security as the group does not allow: refused with 488 and this Warning, the 1xx
    /// stays unacknowledged.
    NoCodec(&'static str),
    /// It matches no outstanding reliable 1xx: 481.
    NoMatch,
}

/// Whether a UAC's call asked for a CANCEL that is not sent yet, or sent one for a reason its
/// outcome names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    No,
    /// Hang-up asked before any provisional response (§9.1: sent after the first).
    Pending,
    /// Sent because the callee ended its (last) early dialog with BYE
    /// ([`UserAgent::on_early_bye`]).
    AfterEarlyBye,
}

/// What the outcome of a call cancelled after an early BYE adds to the final response's
/// reason phrase.
const EARLY_BYE_CANCELLED: &str =
    " (cancelled after the callee's BYE in its early dialog: RFC 3261 §15 forbids it)";

/// The most times one re-INVITE or UPDATE is refused with 491 and sent again: two agents
/// that each retry at once would otherwise cross for ever; the last 491 is reported as the
/// request's outcome ([`CallEvent::Modified`]).
const MAX_GLARE_TRIES: u8 = 4;

/// The most early dialogs kept for other forks of one INVITE ([`EarlyFork`]): a forking
/// proxy reaches a few phones; a peer sending reliable provisionals with endless new To tags
/// gets its first `MAX_EARLY_FORKS` PRACKed, the rest are reported ignored (not kept).
const MAX_EARLY_FORKS: usize = 16;

/// The most other forks of one INVITE ended with BYE ([`KeptAck::forks_ended`]): a real
/// forking proxy reaches a few phones; a peer answering with endless new To tags gets ACKs
/// only past this, not a BYE transaction (and a remembered tag) each.
const MAX_FORKS_ENDED: usize = 16;

/// The early dialog a provisional response to our INVITE belongs to, by its To tag `tag`
/// (RFC 3261 §12.1.2): `Some(None)` for the call's dialog (the first fork's, or a 1xx without
/// To tag as before), `Some(Some(i))` for `call.forks[i]`, made here for a new fork while the
/// call's INVITE is pending (early, or cancelled by us and not answered yet: RFC 3262 §4
/// PRACKs every reliable 1xx). `None` when no dialog is kept for it ([`MAX_EARLY_FORKS`] kept
/// already, the call confirmed, no Contact, its callee ended it with BYE).
fn early_dialog_of(call: &mut Call, tag: Option<&str>, resp: &Message) -> Option<Option<usize>> {
    let Some(tag) = tag else {
        return Some(None);
    };
    if let Some(i) = call
        .forks
        .iter()
        .position(|f| f.dialog.id.remote_tag == tag)
    {
        return (!call.forks[i].ended).then_some(Some(i));
    }
    match &call.dialog {
        Some(first) if first.id.remote_tag == tag => return Some(None),
        Some(_) => {}
        None => return Some(None),
    }
    if call.ack.is_some()
        || call.state == CallState::Terminated
        || call.forks.len() >= MAX_EARLY_FORKS
    {
        return None;
    }
    let dialog = Dialog::from_uac_tagged(call.invite.as_deref()?, &call.local_tag, resp).ok()?;
    // Room for this one only: nearly always the one other fork (the default first room is 4).
    call.forks.reserve_exact(1);
    call.forks.push(EarlyFork {
        dialog: with_invite_offer(dialog, call.invite.as_deref()),
        last_rseq: None,
        ended: false,
    });
    Some(Some(call.forks.len() - 1))
}

/// Which dialog of the call has the To tag `tag`: `Some(None)` the call's, `Some(Some(i))`
/// the early dialog of another fork still going (`call.forks[i]`), `None` none.
fn fork_of(call: &Call, tag: &str) -> Option<Option<usize>> {
    if call.dialog.as_ref().is_some_and(|d| d.id.remote_tag == tag) {
        return Some(None);
    }
    call.forks
        .iter()
        .position(|f| !f.ended && f.dialog.id.remote_tag == tag)
        .map(Some)
}

/// True when the callee of the fork with To tag `tag` ended its early dialog with BYE.
fn fork_ended(call: &Call, tag: &str) -> bool {
    call.forks
        .iter()
        .any(|f| f.ended && f.dialog.id.remote_tag == tag)
}

/// [`drop_waiting_retry`] for a request in the call's own dialog (none: nothing is sent).
fn drop_waiting_in_dialog(call: &mut Call, kind: InDialogMethod, offer: bool) {
    if let Some(tag) = call.dialog.as_ref().map(|d| d.id.remote_tag.clone()) {
        drop_waiting_retry(call, kind, offer, &tag);
    }
}

/// A new re-INVITE or UPDATE (`kind`; `offer`: it carries one) in the dialog with To tag
/// `tag` replaces the one of that kind refused with 491 in that dialog and waiting to go
/// again ([`GlareRetry`]), and, with an offer, every offer waiting there (an UPDATE's offer
/// after a re-INVITE's): its newer offer is the one to send (RFC 3264 §4: one offer at a
/// time; the stale one would cross it). One waiting in another fork's early dialog stays
/// (its offer is that dialog's; RFC 3261 §12.2.2: each dialog on its own).
fn drop_waiting_retry(call: &mut Call, kind: InDialogMethod, offer: bool, tag: &str) {
    drop_retries(call, |g| {
        (g.kind == kind || (offer && g.body.is_some())) && g.at.is_some() && g.tag == tag
    });
}

/// Drops the call's glare retries `which` picks (the box with the last one).
fn drop_retries(call: &mut Call, which: impl Fn(&GlareRetry) -> bool) {
    if let Some(g) = call.rare.as_mut() {
        g.retries.retain(|r| !which(r));
    }
    tidy_rare(call);
}

/// Takes the call's owed answer ([`OwedAnswer`]), dropping the box when nothing else is in it.
fn take_owed(call: &mut Call) -> Option<OwedAnswer> {
    let owed = call.rare.as_mut()?.owed.take();
    tidy_rare(call);
    owed
}

/// Keeps the callee's offer `offer`, to be answered in `at` ([`OwedAnswer`]); one owed at
/// a time (a later one replaces it: the earlier message needs no answer any more).
fn owe_answer(call: &mut Call, offer: Bytes, at: OwedIn) {
    call.rare.get_or_insert_with(Box::default).owed = Some(OwedAnswer { offer, at });
}

/// The call's owed answer, if one waits.
fn owed_of(call: &Call) -> Option<&OwedAnswer> {
    call.rare.as_ref()?.owed.as_ref()
}

/// The call's glare retries due at `at` or before (`None`: every one waiting).
fn retries_due(call: &Call, at: Option<Instant>) -> impl Iterator<Item = &GlareRetry> {
    call.rare
        .iter()
        .flat_map(|g| &g.retries)
        .filter(move |r| r.at.is_some_and(|t| at.is_none_or(|at| t <= at)))
}

/// The call's dialog (`fork` `None`) or the early dialog of another fork (`Some(i)`:
/// `call.forks[i]`).
fn dialog_of_mut(call: &mut Call, fork: Option<usize>) -> Option<&mut Dialog> {
    match fork {
        None => call.dialog.as_mut(),
        Some(i) => call.forks.get_mut(i).map(|f| &mut f.dialog),
    }
}

impl KeptAck {
    fn new((destination, bytes): (Destination, Bytes)) -> Box<Self> {
        Box::new(Self {
            destination,
            bytes,
            forks: Vec::new(),
        })
    }
}

#[derive(Debug)]
struct ClientEntry {
    /// The transaction; its key's method is the request's (the entry keeps no copy of it).
    txn: ClientTransaction,
    owner: Owner,
    destination: Destination,
    /// A re-INVITE whose call ended while it waited for its final response: the call's
    /// dialog, kept here (not in the ended call) to ACK a 2xx that still comes
    /// (RFC 3261 §13.2.2.4), dropped once that ACK is built or the transaction ends.
    dialog: Option<Box<Dialog>>,
    /// A re-INVITE's 2xx ACK (destination and bytes), sent again for each retransmission of
    /// the 2xx while the transaction waits out Timer M (its finished record keeps it).
    ack: Option<Box<KeptAck>>,
}

#[derive(Debug)]
struct ServerEntry {
    txn: ServerTransaction,
    source: SocketAddr,
    method: Method,
    /// The call of an initial INVITE's transaction (the call finds its transaction by it,
    /// a CANCEL finds the call: no copy of the key in the call).
    call: Option<CallId>,
}

/// A transaction that only waits out its last timer, in its compact form ([`Finished`]),
/// and whom it answers for.
#[derive(Debug)]
struct FinishedEntry {
    txn: Finished,
    peer: Peer,
    /// [`branch_hash`] of its key's branch, compared before the key: every new request is
    /// looked up among the finished records (a phone holding many finished calls has
    /// hundreds), and nearly all of them differ in this number.
    branch_hash: u64,
}

/// FNV-1a of a branch: a cheap first comparison of keys (not a defence against anything;
/// a collision only costs the full comparison that follows).
fn branch_hash(branch: &[u8]) -> u64 {
    branch.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug)]
enum Peer {
    /// A client transaction: its owner (a retransmitted 2xx in Accepted goes to it) and, for
    /// an INVITE in Completed, where its ACK goes again.
    Client(Owner, AckTo),
    /// A server transaction: where its request came from.
    Server(SocketAddr),
}

#[derive(Debug)]
struct Call {
    uac: bool,
    state: CallState,
    /// The INVITE we sent last (UAC) or received (UAS), until nothing reads it any more:
    /// dropped once the UAC has ACKed a 2xx or the UAS has sent its final response (the
    /// dialog and the kept ACK or 2xx bytes are what a confirmed call works from), and when
    /// the call ends. Boxed: a `Call` lives in a box of its own, and the `Message` inline
    /// would make every call's box 264 bytes (one size class) bigger for its whole life.
    invite: Option<Arc<Message>>,
    local_tag: String,
    dialog: Option<Dialog>,
    /// UAC: whether a provisional response arrived. UAS: the response held until the PRACK
    /// of the reliable provisional in `prov_retransmit` ([`Provisional`]).
    provisional: Provisional,
    /// UAC: a CANCEL asked before any provisional response, or sent for a reason the call's
    /// outcome names.
    cancel: Cancel,
    /// UAC: the ACK for the INVITE's 2xx, re-sent on 2xx retransmissions (a re-INVITE's
    /// 2xx ACK is kept by the re-INVITE's transaction: [`AckTo::Again`]).
    ack: Option<(Destination, Bytes)>,
    /// Our SDP (offer for UAC, answer for UAS).
    local_sdp: Option<Bytes>,
    /// UAS: where the INVITE came from.
    source: Option<SocketAddr>,
    /// UAS: 2xx retransmission (§13.3.1.4): the bytes, next time, interval, give-up time.
    ok_retransmit: Option<Retransmit>,
    /// UAC: the last RSeq acknowledged with PRACK in `dialog` (RFC 3262 §4).
    last_rseq: Option<u32>,
    /// UAC, while early: the early dialogs of the other forks of the INVITE that sent a 1xx
    /// with a To tag ([`EarlyFork`]); empty (no heap) unless such a fork appears, at most
    /// [`MAX_EARLY_FORKS`], dropped once a 2xx confirms the call.
    forks: Vec<EarlyFork>,
    /// UAS: the next RSeq to send.
    next_rseq: u32,
    /// UAS: a reliable provisional retransmitted until PRACK (bytes, next, interval, give-up).
    /// Boxed: only a call with reliable provisionals (RFC 3262, optional) has one, and inline
    /// its 80 bytes put every call's box in mimalloc's 768-byte class instead of the 640.
    prov_retransmit: Option<Box<Retransmit>>,
    /// Our re-INVITEs and UPDATEs refused with 491, to be sent again, and a late offer's
    /// owed answer ([`Rare`]).
    rare: Option<Box<Rare>>,
}

/// [`Call::provisional`]: what each role keeps of provisional responses beyond the dialog,
/// in one byte for both (a call is the caller's or the callee's, never both; a byte more
/// would take the call's box past its size class, test `calls_stay_small`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Provisional {
    /// UAC: no provisional response yet. UAS: nothing held.
    #[default]
    None,
    /// UAC: a provisional response arrived, so CANCEL may be sent (RFC 3261 §9.1).
    Seen,
    /// UAS: [`UserAgent::ring`] came while the reliable provisional in `prov_retransmit`
    /// waits for its PRACK: the 180 goes, reliable, once that PRACK is taken (RFC 3262 §3:
    /// "MUST NOT send a second reliable provisional response until the first is
    /// acknowledged").
    HeldRinging,
    /// UAS: [`UserAgent::progress`] came then: the 183 goes with `local_sdp` (its SDP) once
    /// the PRACK is taken, as `HeldRinging`.
    HeldProgress,
    /// UAS: [`UserAgent::answer`] came while the reliable provisional in `prov_retransmit`
    /// carries SDP ([`carries_body`]): the 2xx (with `local_sdp`) is held until the PRACK is
    /// taken (RFC 3262 §3). It takes the place of a held 1xx: the final response makes it
    /// moot.
    HeldAnswer,
}

/// One call handle's state.
#[derive(Debug)]
enum Slot {
    /// A call in progress (or ended, until [`Slot::end`] runs).
    Live(Box<Call>),
    /// An ended call: all that is kept is our SDP ([`UserAgent::local_sdp`]: the agent's
    /// failover re-sends it to the next server). A UAC's ACK for its 2xx is kept by the
    /// INVITE's transaction record, which sends it again for each 2xx retransmission until
    /// Timer M (RFC 3261 §13.2.2.4), whether the call is still known or not. Its handle
    /// reports `Terminated` until forgotten.
    Ended { sdp: Option<Bytes> },
    /// Forgotten ([`UserAgent::forget_call`]): the handle is unknown.
    Forgotten,
}

impl Slot {
    fn as_ref(&self) -> Option<&Call> {
        match self {
            Self::Live(c) => Some(c),
            _ => None,
        }
    }

    fn as_mut(&mut self) -> Option<&mut Call> {
        match self {
            Self::Live(c) => Some(c),
            _ => None,
        }
    }

    /// Keeps of an ended call only what may still be read (its SDP), freeing the rest (the
    /// call's box, its dialog if still there, its 2xx's ACK: the INVITE's transaction record
    /// keeps its own copy until Timer M).
    fn end(&mut self) {
        if let Self::Live(c) = self {
            *self = Self::Ended {
                sdp: c.local_sdp.take(),
            };
        }
    }
}

/// A phone's RFC 5626 outbound state ([`UserAgent::enable_outbound`]).
#[derive(Debug)]
struct OutboundState {
    /// The `urn:uuid:` instance ID sent in `+sip.instance`.
    instance: String,
    /// What the last 2xx to REGISTER granted.
    grant: Option<Grant>,
}

/// `Require: outbound` and `Flow-Timer` of a 2xx to REGISTER (an unreadable Flow-Timer is
/// as none: the configured interval applies).
fn outbound_grant_of(resp: &Message) -> Grant {
    let requires = resp
        .headers
        .get_all(&HeaderName::Require)
        .flat_map(|h| h.value().split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("outbound"));
    let flow_timer_name = HeaderName::Other(Box::new("Flow-Timer".to_owned()));
    let flow_timer = resp
        .headers
        .get_all(&flow_timer_name)
        .find_map(|h| h.value().parse().ok());
    Grant {
        in_use: requires,
        flow_timer,
    }
}

/// `name` as a quoted display name and a space (RFC 3261 §25.1 quoted-string: `"` and `\`
/// escaped).
fn write_display_name(text: &mut String, name: &str) {
    text.push('"');
    for c in name.chars() {
        if matches!(c, '"' | '\\') {
            text.push('\\');
        }
        text.push(c);
    }
    text.push_str("\" ");
}

/// [`UserAgent::flags`]: this registration is a refresh (reported in `Registered`).
const REG_REFRESH: u8 = 1;
/// [`UserAgent::flags`]: a 423 was answered once already (RFC 3261 §10.2.8).
const REG_423_RETRIED: u8 = 2;
/// [`UserAgent::flags`]: a live call may have a 2xx or reliable-provisional retransmission
/// armed. Clear, `poll_timeout` skips the walk over the calls (a phone holding many calls is
/// asked for its next deadline after every event). Set when one is armed; taken again (by
/// that walk) at the end of `handle_message` and `handle_timeout` while set.
const CALL_TIMERS: u8 = 4;
/// [`UserAgent::flags`]: the REGISTER in progress got a provisional response, so its Timer F
/// is not "no response" (RFC 3263 §4.3: a timeout is a failure to move to the next server
/// only when nothing at all came back). Cleared by each new REGISTER.
const REG_PROVISIONAL: u8 = 8;
/// [`UserAgent::flags`]: set while [`UserAgent::handle_transport_error`] ends the pending
/// transactions, whose Timer F then stands for the transport failure (RFC 3263 §4.3 fails
/// over on it, provisional or not).
const TRANSPORT_FAILED: u8 = 16;

/// A simulated SIP phone.
#[derive(Debug)]
pub struct UserAgent {
    /// Shared by the phones of a group.
    profile: Arc<UaProfile>,
    /// The user as a boxed string: no spare capacity on an idle phone.
    user: Box<str>,
    credentials: Option<Credentials>,
    local_host: Host,
    local_port: u16,
    rng: SmallRng,
    auth: Authenticator,
    reg_state: RegState,
    /// The random parts of the registration's Call-ID and From tag (RFC 3261 §10.2: the same
    /// for every REGISTER of this binding), printed when a REGISTER is built: two numbers
    /// instead of two strings on every idle phone.
    reg_call_id: u64,
    reg_from_tag: u64,
    reg_cseq: u32,
    reg_expires: u32,
    reg_refresh_at: Option<Instant>,
    /// `REG_REFRESH`, `REG_423_RETRIED`, `CALL_TIMERS`, `REG_PROVISIONAL` and
    /// `TRANSPORT_FAILED` (one byte: the phone's inline size has no room for a third `bool`).
    flags: u8,
    /// Calls by handle: `calls[i]` is `CallId(first_call + i)`. A live call is boxed; an
    /// ended one keeps only its SDP in its slot ([`Slot::Ended`]), a
    /// forgotten one nothing; forgotten calls at the front are dropped, so a phone that calls
    /// for days keeps only its recent calls.
    calls: VecDeque<Slot>,
    /// The handle of `calls[0]`: handles are never reused.
    first_call: u32,
    /// The dialogs of the last calls that ended, for RFC 3891 §3's 603 to an INVITE whose
    /// Replaces names one (allocated when the first call with a dialog ends).
    ended_dialogs: Option<Box<replaces::EndedDialogs>>,
    /// Boxed entries (see [`push_boxed`]).
    #[allow(clippy::vec_box)] // reason: entries of ~900 bytes moved on every grow and remove
    client: Vec<Box<ClientEntry>>,
    #[allow(clippy::vec_box)] // reason: as `client`
    server: Vec<Box<ServerEntry>>,
    /// Transactions that have their final answer and only wait out Timer D/K/M (client) or
    /// I/J/L (server), in deadline order: a few hundred bytes each instead of a whole entry,
    /// and never visited by the drains (`client` and `server` hold only the transactions
    /// still at work). Their earliest deadline is the first; `poll_timeout` walks only the
    /// transactions at work (the earliest deadline is no longer kept apart). A deque: the
    /// ones that end leave from the front without moving the others.
    finished: VecDeque<FinishedEntry>,
    /// Messages to send and events to report; `None` when both are empty (an idle phone).
    queues: Option<Box<Queues>>,
    /// Our address on the connection to the outbound proxy (stream transports: it is not the
    /// registrar's connection), written in Via and Contact of the calls we place through it
    /// ([`UserAgent::set_proxy_local`]). Boxed: most phones have none.
    proxy_local: Option<Box<(Host, u16)>>,
    /// RFC 5626 outbound, when the group uses it ([`UserAgent::enable_outbound`]). Boxed:
    /// most phones have none.
    outbound: Option<Box<OutboundState>>,
    /// RFC 3608: the service route of the last 2xx to our REGISTER, preloaded on the
    /// requests we send outside a dialog. Boxed: one pointer on the phones whose registrar
    /// gives none.
    service_route: Option<Box<ServiceRoute>>,
}

/// A service route (RFC 3608 §6): the Service-Route entries of a 2xx to a REGISTER, in
/// order, that read.
#[derive(Debug)]
struct ServiceRoute {
    /// The entries as our Route values print them, comma-joined (one Route line).
    text: Box<str>,
    /// The URI of the first entry: where a request goes without an outbound proxy.
    first: Arc<Uri>,
}

/// The service route of `resp`, a 2xx to a REGISTER (RFC 3608 §6: "the UA MUST replace
/// any previously stored service route"): `None` without any entry that reads. An entry
/// that does not read (or a line that does not split) is left out, the others kept.
///
/// An entry `<uri>[;params]` is kept as received; another form (a display name, a bare
/// addr-spec) as the typed print gives it, as the dialog's route set does.
fn service_route_of(resp: &Message) -> Option<Box<ServiceRoute>> {
    let mut text = String::new();
    let mut first = None;
    for (raw, entry) in resp.headers.view_all_texts::<ServiceRouteRef>() {
        let Ok(ServiceRouteRef(entry)) = entry else {
            continue;
        };
        if !text.is_empty() {
            text.push_str(", ");
        }
        if first.is_none() {
            first = Some(entry.uri.into_owned());
        }
        if raw.starts_with('<') {
            text.push_str(raw);
        } else {
            // Writing into a String never fails.
            let _ = entry.into_owned().write_to(&mut text);
        }
    }
    Some(Box::new(ServiceRoute {
        first: Arc::new(first?),
        text: text.into_boxed_str(),
    }))
}

/// Where a call's INVITE goes, and its retries and CANCEL (RFC 3261 §9.1: where the INVITE
/// went): the outbound proxy when one is set (`proxy`), else the first Route the INVITE
/// carries (a service route, RFC 3608), else the registrar.
fn invite_destination(proxy: bool, invite: &Message) -> Destination {
    if proxy {
        return Destination::OutboundProxy;
    }
    match invite.headers.view_all::<RouteRef>().next() {
        Some(Ok(RouteRef(first))) => Destination::Uri(Arc::new(first.uri.into_owned())),
        _ => Destination::Registrar,
    }
}

/// The output queues of an agent, allocated only while something is queued.
#[derive(Debug, Default)]
struct Queues {
    out: Fifo<Outgoing>,
    events: Fifo<UaEvent>,
}

/// Pushes a transaction entry. Entries are boxed (several hundred bytes each): growing the
/// list, removing from its middle and putting an entry back move pointers, not entries, and
/// the room a list keeps spare is 8 bytes a slot.
#[allow(clippy::vec_box)] // reason: see the function's comment
fn push_boxed<T>(v: &mut Vec<Box<T>>, x: T) {
    v.push(Box::new(x));
}

/// Where a finished client INVITE sends its ACK again: the usual destinations without a box
/// (a `Destination` is 128 bytes, for its `Uri`).
#[derive(Debug)]
enum AckTo {
    /// Not an INVITE in Completed, nor a re-INVITE in Accepted: nothing is sent again.
    Nowhere,
    Registrar,
    OutboundProxy,
    Other(Box<Destination>),
    /// A re-INVITE in Accepted (Timer M): the ACK of its 2xx and where it went, sent again
    /// (the same bytes) for each retransmission of the 2xx, which the core then does not see
    /// again (RFC 3261 §13.2.2.4; it was reported once).
    Again(Box<KeptAck>),
}

impl AckTo {
    fn new(d: Destination) -> Self {
        match d {
            Destination::Registrar => Self::Registrar,
            Destination::OutboundProxy => Self::OutboundProxy,
            d => Self::Other(Box::new(d)),
        }
    }

    fn destination(&self) -> Option<Destination> {
        match self {
            Self::Nowhere => None,
            Self::Registrar => Some(Destination::Registrar),
            Self::OutboundProxy => Some(Destination::OutboundProxy),
            Self::Other(d) => Some(Destination::clone(d)),
            Self::Again(a) => Some(a.destination.clone()),
        }
    }
}

/// A response sent again until acknowledged: its bytes, when next, the interval, and when
/// to give up.
type Retransmit = (Bytes, Instant, Duration, Instant);

/// Room for one slot in an empty call list (a phone mostly has one call at a time;
/// `VecDeque` would first make room for four 48-byte slots), the usual growth after that.
fn first_room(calls: &mut VecDeque<Slot>) {
    if calls.capacity() == 0 {
        calls.reserve_exact(1);
    }
}

/// Keeps a finished transaction in deadline order (nearly always the latest: a new one goes
/// at the back). The last record is looked at first: the binary search touched records in
/// the middle of the list (cold memory in a fleet of phones) for the usual append.
fn push_finished(list: &mut VecDeque<FinishedEntry>, txn: Finished, peer: Peer) {
    // Room for one record in an empty list, as for calls (`first_room`): a phone mostly holds
    // one at a time while a transaction of its waits, and a fleet's peak is one per phone.
    if list.capacity() == 0 {
        list.reserve_exact(1);
    }
    let deadline = txn.deadline();
    let at = match list.back() {
        Some(last) if last.txn.deadline() > deadline => {
            list.partition_point(|e| e.txn.deadline() <= deadline)
        }
        _ => list.len(),
    };
    let branch_hash = branch_hash(txn.key().branch_bytes());
    list.insert(
        at,
        FinishedEntry {
            txn,
            peer,
            branch_hash,
        },
    );
    debug_assert!(
        (at == 0 || list[at - 1].txn.deadline() <= deadline)
            && list.get(at + 1).is_none_or(|e| e.txn.deadline() > deadline),
        "finished records stay in deadline order, a new one after its equals"
    );
}

/// Queues a message to send (a phone mostly sends one message at a time: the queue holds
/// its first one inline).
fn push_out(q: &mut Option<Box<Queues>>, out: Outgoing) {
    queues(q).out.push_back(out);
}

/// Keeps a 2xx's ACK in the call (sent again if the 2xx is retransmitted) and returns it to
/// be queued.
fn keep_ack(
    kept: &mut Option<(Destination, Bytes)>,
    destination: Destination,
    bytes: Bytes,
) -> Outgoing {
    *kept = Some((destination.clone(), bytes.clone()));
    Outgoing {
        destination,
        bytes,
        retransmission: false,
    }
}

/// The queues, made when the first message or event is queued.
fn queues(q: &mut Option<Box<Queues>>) -> &mut Queues {
    q.get_or_insert_with(Box::default)
}

impl UserAgent {
    /// A new agent with a configuration of its own; nothing is sent until a command.
    pub fn new(config: UaConfig) -> Self {
        let (profile, identity) = config.split();
        Self::with_profile(Arc::new(profile), identity)
    }

    /// A new agent sharing `profile` with the other phones of its group.
    pub fn with_profile(profile: Arc<UaProfile>, identity: UaIdentity) -> Self {
        let mut rng = SmallRng::seed_from_u64(identity.seed);
        let reg_call_id = rng.random::<u64>();
        let reg_from_tag = rng.random::<u64>();
        let auth = Authenticator::new();
        let reg_expires = profile.expires;
        Self {
            profile,
            user: identity.user.into_boxed_str(),
            credentials: identity.credentials,
            local_host: identity.local_host,
            local_port: identity.local_port,
            rng,
            auth,
            reg_state: RegState::Idle,
            reg_call_id,
            reg_from_tag,
            reg_cseq: 0,
            reg_expires,
            reg_refresh_at: None,
            flags: 0,
            calls: VecDeque::new(),
            first_call: 0,
            ended_dialogs: None,
            client: Vec::new(),
            server: Vec::new(),
            finished: VecDeque::new(),
            queues: None,
            proxy_local: None,
            outbound: None,
            service_route: None,
        }
    }

    /// Registers with RFC 5626 outbound: `Supported: path, outbound`, Contact with
    /// `;reg-id=1;+sip.instance="<INSTANCE>"` (§4.2), and with an outbound proxy the REGISTER
    /// goes through it with its Route (§4.2.1: the flow the registrar reaches us by starts at
    /// the edge proxy). Once a 2xx said `Require: outbound`, the calls we place carry `ob` in
    /// their Contact URI (§4.3). `instance` is the `urn:uuid:` URN
    /// ([`crate::outbound::instance_urn`]), the same for every REGISTER of the run.
    pub fn enable_outbound(&mut self, instance: String) {
        self.outbound = Some(Box::new(OutboundState {
            instance,
            grant: None,
        }));
    }

    /// What the registrar's last 2xx granted to our outbound REGISTER: `None` before one, or
    /// without [`UserAgent::enable_outbound`].
    pub fn outbound_grant(&self) -> Option<Grant> {
        self.outbound.as_ref().and_then(|o| o.grant)
    }

    /// Our outbound instance URN, when outbound is on.
    pub fn outbound_instance(&self) -> Option<&str> {
        self.outbound.as_deref().map(|o| o.instance.as_str())
    }

    /// True when the REGISTER goes through the outbound proxy (outbound on, a proxy set).
    fn register_proxied(&self) -> bool {
        self.outbound.is_some() && self.profile.outbound_proxy.is_some()
    }

    /// Where a REGISTER goes (see [`UserAgent::register_proxied`]).
    fn register_destination(&self) -> Destination {
        if self.register_proxied() {
            Destination::OutboundProxy
        } else {
            Destination::Registrar
        }
    }

    /// Our address on a connection of its own to the outbound proxy (TCP, TLS, WS, WSS: the
    /// registrar's connection is another one). Via and Contact of the calls placed from now on
    /// through the proxy, and of their in-dialog requests, carry it (RFC 3261 §18.1.1 and
    /// §8.1.1.8: the address the request leaves from and where the dialog reaches us); REGISTER
    /// and the calls we answer keep [`UserAgent::local_port`]'s address. `None`: one address
    /// for everything (UDP, or no proxy).
    pub fn set_proxy_local(&mut self, local: Option<(Host, u16)>) {
        self.proxy_local = local.map(Box::new);
    }

    /// Our address for a request or dialog: the proxy connection's when `proxied` and set.
    fn local_of(&self, proxied: bool) -> (&Host, u16) {
        match (&self.proxy_local, proxied) {
            (Some(p), true) => (&p.0, p.1),
            _ => (&self.local_host, self.local_port),
        }
    }

    /// True when call `id` is one we placed through the outbound proxy's own connection.
    fn proxied(&self, id: CallId) -> bool {
        self.proxy_local.is_some() && self.call_ref(id).is_some_and(|c| c.uac)
    }

    /// The configuration shared with the phones of the group.
    pub fn profile(&self) -> &UaProfile {
        &self.profile
    }

    /// The address-of-record user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Our port as written in Via and Contact.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// The registration state.
    pub fn registration(&self) -> RegState {
        self.reg_state
    }

    /// The state of a call (`None` once forgotten or unknown).
    pub fn call_state(&self, call: CallId) -> Option<CallState> {
        match self.calls.get(self.slot(call)?)? {
            Slot::Live(c) => Some(c.state),
            Slot::Ended { .. } => Some(CallState::Terminated),
            Slot::Forgotten => None,
        }
    }

    /// The remote SDP of an established call is reported in events; this returns our SDP.
    pub fn local_sdp(&self, call: CallId) -> Option<&Bytes> {
        match self.calls.get(self.slot(call)?)? {
            Slot::Live(c) => c.local_sdp.as_ref(),
            Slot::Ended { sdp, .. } => sdp.as_ref(),
            Slot::Forgotten => None,
        }
    }

    /// The index of call `id` in `calls`.
    /// The Call-ID of call `id`: its dialog's, or before a UAC's first response with a tag
    /// its INVITE's (none for an ended call).
    pub fn sip_call_id(&self, id: CallId) -> Option<&str> {
        let c = self.call_ref(id)?;
        match (&c.dialog, &c.invite) {
            (Some(d), _) => Some(d.id.call_id.as_str()),
            (None, Some(invite)) => invite
                .headers
                .view::<sip_msg::typed::CallIdRef>()
                .and_then(Result::ok)
                .map(|c| c.0),
            (None, None) => None,
        }
    }

    /// True when we placed call `id` (our INVITE), false for an incoming or unknown one.
    pub fn is_outgoing(&self, id: CallId) -> bool {
        self.call_ref(id).is_some_and(|c| c.uac)
    }

    fn slot(&self, id: CallId) -> Option<usize> {
        id.0.checked_sub(self.first_call).map(|i| i as usize)
    }

    /// The handle of `calls[i]`.
    fn id_at(first_call: u32, i: usize) -> CallId {
        // There are never more than u32::MAX calls in the list (handles are u32).
        CallId(first_call.wrapping_add(i as u32))
    }

    fn call_ref(&self, id: CallId) -> Option<&Call> {
        self.calls.get(self.slot(id)?)?.as_ref()
    }

    fn call_mut(&mut self, id: CallId) -> Option<&mut Call> {
        let i = self.slot(id)?;
        self.calls.get_mut(i)?.as_mut()
    }

    /// Our AOR as a typed URI (what [`UserAgent::aor_text`] prints).
    #[cfg(test)]
    fn aor(&self) -> SipUri {
        SipUri::new(self.domain_host()).with_user(self.user.to_string())
    }

    /// The domain as the AOR's host (`aor_text` reads it in place the same way).
    #[cfg(test)]
    fn domain_host(&self) -> Host {
        let domain = &self.profile.domain;
        // RFC 3261 §25.1: an IPv6 domain given bare (`::1`) is an IPv6reference in the URI.
        Host::parse(domain)
            .or_else(|e| domain.parse().map(Host::V6).map_err(|_| e))
            .unwrap_or(Host::Name(domain.clone()))
    }

    /// Our AOR as a name-addr, `<sip:user@domain>`: what `text_of(&NameAddr::new(self.aor()), _)`
    /// prints, written straight into its string with room for `;tag=` and a tag (test
    /// `our_aor_text_is_the_printed_aor`).
    #[cfg(test)]
    fn aor_text(&self) -> String {
        let mut text = String::with_capacity(32 + self.user.len() + self.profile.domain.len());
        self.write_aor(&mut text);
        text
    }

    /// [`UserAgent::aor_text`] appended to `text` (a builder's string: no `String` of its own).
    /// `template` with `{user}` and `{domain}` replaced by this phone's.
    fn expand(&self, template: &str) -> String {
        template
            .replace("{user}", &self.user)
            .replace("{domain}", &self.profile.domain)
    }

    fn write_aor(&self, text: &mut String) {
        text.push_str("<sip:");
        text.push_str(&self.user);
        text.push('@');
        // `domain_host`, read in place (no owned host to print from).
        let domain = self.profile.domain.as_str();
        let host = HostRef::parse(domain)
            .or_else(|e| domain.parse().map(HostRef::V6).map_err(|_| e))
            .unwrap_or(HostRef::Name(domain));
        sip_msg::push_host_ref(text, &host);
        text.push('>');
    }

    /// Our Contact (the registrar connection's address) as a typed address.
    #[cfg(test)]
    fn contact(&self) -> NameAddr {
        self.contact_at(false)
    }

    /// Our Contact from the proxy connection's address when `proxied`.
    fn contact_at(&self, proxied: bool) -> NameAddr {
        let (host, port) = self.local_of(proxied);
        let mut uri = SipUri::new(host.clone())
            .with_user(self.user.to_string())
            .with_port(port);
        if !self.profile.transport.eq_ignore_ascii_case("udp") {
            uri = uri.with_param(
                "transport",
                Some(&self.profile.transport.to_ascii_lowercase()),
            );
        }
        NameAddr::new(uri)
    }

    /// Our Contact as text: what `text_of(&self.contact(), _)` prints (`<sip:user@host:port>`,
    /// `;transport=…` inside when not UDP), written straight into its string without building
    /// the URI (test `our_contact_text_is_the_printed_contact`).
    #[cfg(test)]
    fn contact_text(&self) -> String {
        self.contact_text_at(false)
    }

    /// [`UserAgent::contact_text`] from the proxy connection's address when `proxied`.
    fn contact_text_at(&self, proxied: bool) -> String {
        let transport = &self.profile.transport;
        let udp = transport.eq_ignore_ascii_case("udp");
        let mut text = String::with_capacity(
            48 + self.user.len() + if udp { 0 } else { 11 + transport.len() },
        );
        self.write_contact_at(&mut text, proxied);
        text
    }

    /// [`UserAgent::contact_text_at`] appended to `text` (a builder's string).
    fn write_contact_at(&self, text: &mut String, proxied: bool) {
        let (host, port) = self.local_of(proxied);
        let transport = &self.profile.transport;
        let udp = transport.eq_ignore_ascii_case("udp");
        text.push_str("<sip:");
        text.push_str(&self.user);
        text.push('@');
        sip_msg::push_host(text, host);
        text.push(':');
        sip_msg::push_decimal(text, u64::from(port));
        if !udp {
            text.push_str(";transport=");
            text.extend(transport.chars().map(|c| c.to_ascii_lowercase()));
        }
        text.push('>');
    }

    /// The outbound proxy's Route (`;lr`), with `ob` when `ob`: the `ob` URI parameter tells
    /// the edge proxy (RFC 5626 §5) that the phone wants this request's flow kept for the
    /// registration or dialog (Kamailio's outbound module reads it from the topmost Route);
    /// `None` without an outbound proxy.
    fn proxy_route(&self, ob: bool) -> Option<NameAddr> {
        let proxy = self.profile.outbound_proxy.as_ref()?.clone();
        let lr = proxy.with_param("lr", None);
        Some(NameAddr::new(if ob {
            lr.with_param("ob", None)
        } else {
            lr
        }))
    }

    /// Our Contact for a dialog-forming request we send, appended to `text` (a builder's
    /// string): with `ob` in its URI once the registration uses outbound (RFC 5626 §4.3: the
    /// edge proxy then keeps the dialog's requests to us on this flow).
    fn write_dialog_contact(&self, text: &mut String, proxied: bool) {
        self.write_contact_at(text, proxied);
        if self.outbound_grant().is_some_and(|g| g.in_use) {
            // `write_contact_at` ends the address with `>`.
            text.insert_str(text.len() - 1, ";ob");
        }
    }

    /// The registrar's URI as text (the digest URI of a REGISTER), printed straight into a
    /// string of its size.
    fn registrar_uri_text(&self) -> String {
        let mut uri = String::with_capacity(48);
        // Writing into a String never fails.
        let _ = self.profile.registrar_uri.write_to(&mut uri);
        uri
    }

    /// Our Via for a new request, printed straight into its string as
    /// `Via::new(transport, host, port, branch)` with `;rport` prints (one allocation).
    #[cfg(test)]
    fn new_via(&mut self) -> String {
        self.new_via_branch().0
    }

    /// [`UserAgent::new_via`] and the random part of its branch (`z9hG4bK` + 16 hex digits).
    #[cfg(test)]
    fn new_via_branch(&mut self) -> (String, u64) {
        self.new_via_branch_at(false)
    }

    /// [`UserAgent::new_via_branch`] from the proxy connection's address when `proxied`.
    fn new_via_branch_at(&mut self, proxied: bool) -> (String, u64) {
        let branch: u64 = self.rng.random();
        let mut via = String::with_capacity(64);
        self.write_via_at(&mut via, proxied, branch);
        (via, branch)
    }

    /// [`UserAgent::new_via_branch_at`] as a header (its value in a block of its exact
    /// length), and the branch's random part.
    fn new_via_header_at(&mut self, proxied: bool) -> (Header, u64) {
        let branch: u64 = self.rng.random();
        let via = Header::written(HeaderName::Via, |v| self.write_via_at(v, proxied, branch));
        (via, branch)
    }

    /// [`UserAgent::new_via_branch_at`]'s Via with the random part `branch`, appended to
    /// `via` (a builder's string).
    fn write_via_at(&self, via: &mut String, proxied: bool, branch: u64) {
        let (host, port) = self.local_of(proxied);
        write_via(via, &self.profile.transport, host, port, branch);
    }

    /// A Call-ID: `random` as 16 hex digits `@` our host (what `format!("{random:016x}@{host}")`
    /// gives, without the formatting machinery for the digits).
    /// A Call-ID (`<16 hex digits>@<our host>`) appended to `id`.
    fn write_call_id(&self, id: &mut String, random: u64) {
        sip_msg::push_hex16(id, random);
        id.push('@');
        sip_msg::push_host(id, &self.local_host);
    }

    fn common(&self, b: RequestBuilder) -> RequestBuilder {
        // The group's text, shared (a reference count, not a copy per request).
        b.header_line(Header::from_shared(
            HeaderName::UserAgent,
            Arc::clone(&self.profile.user_agent),
        ))
    }

    fn start_client(&mut self, now: Instant, req: Message, owner: Owner, destination: Destination) {
        self.start_client_keyed(now, req, None, owner, destination);
    }

    /// [`UserAgent::start_client`] for a request whose top Via has the branch
    /// `new_via_branch` returned: its key is known without reading the Via back.
    fn start_client_branch(
        &mut self,
        now: Instant,
        req: Message,
        branch: u64,
        owner: Owner,
        destination: Destination,
    ) {
        let key = req.method().map(|method| TxnKey::client(branch, method));
        self.start_client_keyed(now, req, key, owner, destination);
    }

    fn start_client_keyed(
        &mut self,
        now: Instant,
        req: Message,
        key: Option<TxnKey>,
        owner: Owner,
        destination: Destination,
    ) {
        let key = key
            .or_else(|| TxnKey::of_client_request(&req))
            .ok_or(TxnError::MissingTxnHeaders);
        self.push_client(now, RequestMsg::Own(req), key, owner, destination);
    }

    /// Keeps a new client transaction for `request` (keyed `key`) and sends the request.
    /// The transaction is written once, straight into the box the list keeps (made before
    /// it): built on the stack and moved in, its kilobyte was copied three times.
    fn push_client(
        &mut self,
        now: Instant,
        request: RequestMsg,
        key: Result<TxnKey, TxnError>,
        owner: Owner,
        destination: Destination,
    ) {
        let Ok((key, invite)) =
            key.and_then(|k| ClientTransaction::invite_of(&k).map(|invite| (k, invite)))
        else {
            // Our own requests always carry Via and CSeq and are never ACKs: this cannot
            // happen.
            queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                what: "could not start a transaction for our request",
            });
            return;
        };
        let (reliable, timers) = (self.profile.reliable, self.profile.timers);
        let slot = Box::<ClientEntry>::new_uninit();
        let mut entry = Box::write(
            slot,
            ClientEntry {
                txn: ClientTransaction::started(request, key, invite, reliable, timers),
                owner,
                destination,
                dialog: None,
                ack: None,
            },
        );
        entry.txn.arm(now);
        self.client.push(entry);
        self.drain_client(now);
    }

    // ---- registration ----

    /// Sends REGISTER (RFC 3261 §10.2) with the configured lifetime.
    pub fn register(&mut self, now: Instant) {
        self.reg_state = RegState::Registering;
        self.set_flag(REG_REFRESH, false);
        self.set_flag(REG_423_RETRIED, false);
        self.reg_expires = self.profile.expires;
        self.send_register(now, self.reg_expires, Owner::Register);
    }

    /// Refreshes the registration now instead of at its time: an outbound phone whose flow
    /// failed registers again over a new one (RFC 5626 §4.4.1, §4.5). The 2xx is reported as
    /// a refresh. Nothing happens unless registered.
    pub fn refresh_registration(&mut self, now: Instant) {
        if !matches!(self.reg_state, RegState::Registered { .. }) {
            return;
        }
        self.reg_refresh_at = None;
        self.set_flag(REG_REFRESH, true);
        self.set_flag(REG_423_RETRIED, false);
        self.send_register(now, self.reg_expires, Owner::Register);
    }

    /// Sends REGISTER with expires 0 for our contact (RFC 3261 §10.2.2).
    pub fn unregister(&mut self, now: Instant) {
        self.reg_state = RegState::Unregistering;
        self.reg_refresh_at = None;
        // RFC 3608 §6: the service route is the registration's; the calls placed from now on
        // go without it.
        self.service_route = None;
        self.send_register(now, 0, Owner::Unregister);
    }

    fn send_register(&mut self, now: Instant, expires: u32, owner: Owner) {
        self.reg_cseq += 1;
        self.set_flag(REG_PROVISIONAL, false);
        // The AOR printed once, for To and (with our tag) From: `<sip:user@domain>`, what
        // `NameAddr::new(aor)` prints (no parameters, so the tag goes last).
        // From, To and Call-ID are written into the builder's one string (no `String` each);
        // the AOR is printed once, for From, and copied for To.
        let proxied = self.register_proxied();
        // The branch's random part (drawn first, as `new_via_branch_at` draws it).
        let branch: u64 = self.rng.random();
        let mut aor = 0..0;
        let b = RequestBuilder::new(Method::Register, self.profile.registrar_uri.clone())
            // Via, From, To, Call-ID, then our Contact and Expires (all written in place).
            .reserve_text(3 * (8 + self.user.len()) + 2 * self.profile.domain.len() + 230)
            .via_with(|s| self.write_via_at(s, proxied, branch))
            .from_with(|s| {
                let start = s.len();
                self.write_aor(s);
                aor = start..s.len();
                s.push_str(";tag=");
                sip_msg::push_hex16(s, self.reg_from_tag);
            })
            .to_with(|s| s.extend_from_within(aor))
            .call_id_with(|s| self.write_call_id(s, self.reg_call_id))
            .cseq(self.reg_cseq)
            // Our Contact (after CSeq, where `.contact` puts it: the first header added).
            .header_with(HeaderName::Contact, |s| {
                self.write_contact_at(s, proxied);
                if let Some(o) = &self.outbound {
                    // RFC 5626 §4.2: the flow's reg-id and the phone's instance ID.
                    s.push_str(";reg-id=");
                    sip_msg::push_decimal(s, u64::from(crate::outbound::REG_ID));
                    s.push_str(";+sip.instance=\"<");
                    s.push_str(&o.instance);
                    s.push_str(">\"");
                }
            })
            .header_with(HeaderName::Expires, |s| {
                sip_msg::push_decimal(s, u64::from(expires))
            });
        let mut b = self
            .common(b)
            .header_line(Header::from_static(HeaderName::Allow, ALLOW));
        if self.outbound.is_some() {
            // RFC 5626 §4.2.1: `outbound` (and Path, RFC 3327, which an edge proxy adds).
            b = b.header_line(Header::from_static(HeaderName::Supported, "path, outbound"));
            if let Some(route) = self.proxy_route(true).filter(|_| proxied) {
                b = b.route(route);
            }
        }
        // Reuse the last challenge (RFC 7616 §3.4: nc increments), so refreshes need no 401.
        // The cnonce is drawn in every case (the RNG's sequence does not depend on whether a
        // challenge is kept); its text and the digest URI are written only when one is. The
        // credentials go in before the request is built, so that it is sent as built
        // (`Message::wire`: its one text, not printed again).
        let cnonce: u64 = self.rng.random();
        if self.credentials.is_some() && self.auth.has_challenge() {
            let (cnonce, uri) = (tag_from(cnonce), self.registrar_uri_text());
            if let Some(h) = self.auth.preemptive(
                self.credentials.as_ref(),
                &Method::Register,
                &uri,
                b"",
                &cnonce,
            ) {
                b = b.header_line(h);
            }
        }
        let req = b.build();
        let destination = self.register_destination();
        self.start_client_branch(now, req, branch, owner, destination);
    }

    fn on_register_response(
        &mut self,
        now: Instant,
        req: Cow<'_, Message>,
        resp: &Message,
        owner: Owner,
    ) {
        let code = resp.status().unwrap_or(0);
        if code >= 200 && self.register_overtaken(owner) {
            return;
        }
        // The reason phrase, copied only for a failure that reports it.
        let reason = || resp.reason().unwrap_or("").to_owned();
        match code {
            100..=199 => self.set_flag(REG_PROVISIONAL, true),
            200..=299 => {
                self.auth.succeeded();
                if owner == Owner::Unregister {
                    self.reg_state = RegState::Unregistered;
                    self.reg_refresh_at = None;
                    queues(&mut self.queues)
                        .events
                        .push_back(UaEvent::Unregistered { code });
                    return;
                }
                let granted = self.granted_expires(resp);
                // RFC 3608 §6: each 2xx to a REGISTER replaces the service route (one
                // without Service-Route clears it).
                self.service_route = service_route_of(resp);
                if let Some(o) = self.outbound.as_deref_mut() {
                    // RFC 5626 §4.2.1: the registrar uses the flow when its 2xx requires
                    // `outbound`; §4.4: Flow-Timer is the keep-alive interval it wants.
                    o.grant = Some(outbound_grant_of(resp));
                }
                self.reg_state = RegState::Registered {
                    until: now + Duration::from_secs(granted.into()),
                };
                // Refresh 32 s (a whole Timer F) before expiry, or at half the lifetime when
                // that is sooner, so a slow REGISTER still lands before the binding lapses.
                let margin = (granted / 2).min(32);
                self.reg_refresh_at =
                    (granted > 0).then(|| now + Duration::from_secs((granted - margin).into()));
                let refresh = self.flag(REG_REFRESH);
                queues(&mut self.queues)
                    .events
                    .push_back(UaEvent::Registered {
                        expires: granted,
                        refresh,
                    });
            }
            401 | 407 => match self.answer_register_challenge(resp, &req) {
                Ok(header) => {
                    let mut retry = req.into_owned();
                    self.reg_cseq += 1;
                    retry
                        .headers
                        .set(cseq_header(self.reg_cseq, &Method::Register));
                    let (via, branch) = self.new_via_header_at(self.register_proxied());
                    retry.headers.set(via);
                    // RFC 3261 §22.3: the credentials of the other realms stay.
                    crate::auth::put_credentials(&mut retry.headers, header);
                    let destination = self.register_destination();
                    self.start_client_branch(now, retry, branch, owner, destination);
                }
                Err(f) => self.register_failed(owner, code, auth_reason(&reason(), f)),
            },
            423 if !self.flag(REG_423_RETRIED) && owner == Owner::Register => {
                // RFC 3261 §10.2.8: retry with the Min-Expires the registrar asks for.
                match resp.headers.typed::<MinExpires>() {
                    Some(Ok(MinExpires(min))) if min > self.reg_expires => {
                        self.set_flag(REG_423_RETRIED, true);
                        self.reg_expires = min;
                        self.send_register(now, min, owner);
                    }
                    _ => self.register_failed(
                        owner,
                        code,
                        format!("{} (no usable Min-Expires)", reason()),
                    ),
                }
            }
            _ => self.register_failed(owner, code, reason()),
        }
    }

    fn answer_register_challenge(
        &mut self,
        resp: &Message,
        req: &Message,
    ) -> Result<Header, AuthFailure> {
        // On the stack: the cnonce is only read while the answer is computed.
        let mut cnonce = sip_msg::HexText::default();
        let cnonce = sip_msg::hex16(self.rng.random(), &mut cnonce);
        let uri = self.registrar_uri_text();
        self.auth.challenge(
            self.credentials.as_ref(),
            resp,
            req,
            &Method::Register,
            &uri,
            b"",
            cnonce,
        )
    }

    /// True when `owner` is a REGISTER (a refresh, or its retry) that an un-REGISTER sent
    /// since has overtaken: its outcome changes nothing. A 200 would arm a refresh that
    /// registers the phone again after it unregistered, and a challenge or a 423 answered
    /// would send a REGISTER whose CSeq, higher than the un-REGISTER's, makes the binding
    /// again at the registrar (RFC 3261 §10.3 step 7 applies the later one).
    fn register_overtaken(&self, owner: Owner) -> bool {
        owner == Owner::Register
            && matches!(
                self.reg_state,
                RegState::Unregistering | RegState::Unregistered
            )
    }

    fn register_failed(&mut self, owner: Owner, code: u16, reason: String) {
        if self.register_overtaken(owner) {
            return;
        }
        if owner == Owner::Unregister {
            self.reg_state = RegState::Unregistered;
            queues(&mut self.queues)
                .events
                .push_back(UaEvent::Unregistered { code });
        } else {
            self.reg_state = RegState::Failed;
            self.reg_refresh_at = None;
            queues(&mut self.queues)
                .events
                .push_back(UaEvent::RegistrationFailed { code, reason });
        }
    }

    /// The lifetime the registrar granted: our Contact's `expires`, else Expires, else asked.
    fn granted_expires(&self, resp: &Message) -> u32 {
        // Read in place: our Contact is `sip:user@host:port` with the address the REGISTER
        // wrote (`write_contact_at`: the outbound proxy connection's when it goes through
        // it); a contact is ours when user, host and port (5060 when absent) are the same.
        // RFC 3261 §10.2.4: the lifetime is that of the binding we asked for, not another
        // flow's or another phone's.
        let (host, port) = self.local_of(self.register_proxied());
        let is_ours = |u: &UriRef<'_>| {
            u.as_sip().is_some_and(|u| {
                u.user == Some(&*self.user)
                    && host_ref_is(&u.host, host)
                    && u.port.unwrap_or(5060) == port
            })
        };
        let from_contact = resp
            .headers
            .view_all::<ContactRef>()
            .filter_map(Result::ok)
            .filter(|c| c.addr().is_some_and(|a| is_ours(&a.uri)))
            .find_map(|c| c.addr()?.params.value("expires")?.parse().ok());
        from_contact
            .or_else(|| {
                resp.headers
                    .typed::<Expires>()
                    .and_then(Result::ok)
                    .map(|e| e.0)
            })
            .unwrap_or(self.reg_expires)
    }

    // ---- calls ----

    /// Places a call to `target` with an SDP offer, or without one (`None`, a late offer: the
    /// callee's offer comes as [`CallEvent::Offered`], answered with
    /// [`UserAgent::answer_offer`]); returns its handle.
    pub fn call(&mut self, now: Instant, target: Uri, offer: Option<Bytes>) -> CallId {
        self.call_referred(now, target, offer, None, None)
    }

    /// Our `Supported` option tags (in our INVITE, its 2xx and OPTIONS answers): `replaces`
    /// (RFC 3891 §3, answered as [`CallEvent::Incoming`]'s `replaces`), `100rel` and `timer`
    /// when we use them (RFC 4028 §7.1: `timer` only when we keep its promise, a UAC
    /// supporting it refreshes when the 2xx names it refresher).
    fn supported(&self) -> &'static str {
        match (
            self.profile.use_100rel,
            self.profile.session_timer.is_some(),
        ) {
            (true, true) => "100rel, replaces, timer",
            (true, false) => "100rel, replaces",
            (false, true) => "replaces, timer",
            (false, false) => "replaces",
        }
    }

    /// [`UserAgent::call`], with `Referred-By` (RFC 3892) when a REFER made us place it, and
    /// the `Replaces` its Refer-To URI carried (an attended transfer, RFC 3891 §6.1).
    fn call_referred(
        &mut self,
        now: Instant,
        target: Uri,
        offer: Option<Bytes>,
        referred_by: Option<&str>,
        replaces: Option<&str>,
    ) -> CallId {
        let local_tag = tag_from(self.rng.random());
        let random = self.rng.random::<u64>();
        let proxied = self.profile.outbound_proxy.is_some();
        // The branch's random part (drawn here, as `new_via_branch_at` draws it).
        let branch: u64 = self.rng.random();
        // `NameAddr::new(target)` printed (no display name, no parameters) without a copy of
        // the target, which the request line takes.
        let mut to = String::with_capacity(64);
        to.push('<');
        // Writing into a String never fails.
        let _ = target.write_to(&mut to);
        to.push('>');
        let mut b = RequestBuilder::new(Method::Invite, target)
            .reserve_text(2 * self.user.len() + self.profile.domain.len() + 205)
            .via_with(|s| self.write_via_at(s, proxied, branch))
            // From and Call-ID are written into the builder's one string (no `String` each).
            .from_with(|s| {
                if let Some(name) = &self.profile.caller.display_name {
                    write_display_name(s, &self.expand(name));
                }
                // `tagged_text(NameAddr::new(aor), tag)`: no parameters, so the tag goes last.
                self.write_aor(s);
                s.push_str(";tag=");
                s.push_str(&local_tag);
            })
            .to_text(to)
            .call_id_with(|s| self.write_call_id(s, random))
            .cseq(1)
            // Our Contact (after CSeq, where `.contact` puts it: the first header added).
            .header_with(HeaderName::Contact, |s| {
                self.write_dialog_contact(s, proxied)
            });
        // The seed's rule: every INVITE carries Route: <sip:PROXY:PORT;lr> (`;ob` too once
        // outbound is in use, as its Contact carries `ob`).
        let in_use = self.outbound_grant().is_some_and(|g| g.in_use);
        let mut destination = match self.proxy_route(in_use) {
            Some(route) => {
                b = b.route(route);
                Destination::OutboundProxy
            }
            None => Destination::Registrar,
        };
        // RFC 3608 §6: the service route is preloaded after the outbound proxy's Route; the
        // request goes to the first route.
        if let Some(sr) = &self.service_route {
            b = b.route_with(|s| s.push_str(&sr.text));
            if destination == Destination::Registrar {
                destination = Destination::Uri(Arc::clone(&sr.first));
            }
        }
        let timers = self.profile.session_timer;
        b = self
            .common(b)
            .header_line(Header::from_static(HeaderName::Allow, ALLOW))
            .header_line(Header::from_static(HeaderName::Supported, self.supported()));
        // RFC 4028 §7.1: the interval we ask for, the refresher we want (none: the UAS
        // chooses), our Min-SE when we have one.
        let session = timers.map(|t| SessionTimer {
            interval: t.expires,
            min_se: t.min_se,
            we_refresh: t.refresher != Refresher::Uas,
            at: None,
            started: now,
            retried_422: false,
            peer_update: false,
            peer_timer: false,
        });
        if let (Some(t), Some(session)) = (timers, &session) {
            b = match t.refresher {
                Refresher::Auto => {
                    b.header(HeaderName::SessionExpires, decimal_text(session.interval))
                }
                _ => b.header_line(session.header(true)),
            };
            if let Some(min) = session.min_se {
                b = b.header(HeaderName::MinSe, decimal_text(min));
            }
        }
        if let Some(by) = referred_by {
            // RFC 3892 §3: the REFER's Referred-By goes in the request it triggers.
            b = b.header(HeaderName::ReferredBy, by);
        }
        if let Some(r) = replaces {
            // RFC 3515 §2.1: the Refer-To URI's headers go in the request it triggers.
            b = b.header(HeaderName::Replaces, r);
        }
        for (name, value) in &self.profile.caller.headers {
            b = b.header(name.clone(), self.expand(value));
        }
        if let Some(sdp) = &offer {
            b = b.body("application/sdp", sdp.clone());
        }
        // Kept by the call and by its transaction: one copy, shared.
        let invite = Arc::new(b.build());
        let id = Self::id_at(self.first_call, self.calls.len());
        first_room(&mut self.calls);
        self.calls.push_back(Slot::Live(Box::new(Call {
            uac: true,
            state: CallState::Calling,
            invite: Some(Arc::clone(&invite)),
            local_tag,
            dialog: None,
            provisional: Provisional::None,
            cancel: Cancel::No,
            ack: None,
            local_sdp: offer,
            source: None,
            ok_retransmit: None,
            last_rseq: None,
            forks: Vec::new(),
            next_rseq: 1,
            prov_retransmit: None,
            rare: session.map(|session| {
                Box::new(Rare {
                    session: Some(session),
                    ..Rare::default()
                })
            }),
        })));
        self.start_invite(now, invite, branch, id, destination);
        id
    }

    /// Starts the client transaction of the call's INVITE (`branch` as in
    /// [`UserAgent::start_client_branch`]), sharing the request the call keeps.
    fn start_invite(
        &mut self,
        now: Instant,
        invite: Arc<Message>,
        branch: u64,
        id: CallId,
        destination: Destination,
    ) {
        let key = TxnKey::client(branch, Method::Invite);
        self.push_client(
            now,
            RequestMsg::Shared(invite),
            Ok(key),
            Owner::Invite(id),
            destination,
        );
    }

    fn call_event(&mut self, id: CallId, e: CallEvent) {
        if matches!(e, CallEvent::Failed { .. } | CallEvent::Ended { .. }) {
            // Reported once: the call's slot ends below, and an ended call is not live.
            let Some(c) = self.call_mut(id) else { return };
            c.state = CallState::Terminated;
            // RFC 3261 §15: the dialog ends with the call (a retransmitted BYE is answered by
            // its server transaction; other requests of the dialog get 481); the call keeps
            // only a UAC's 2xx ACK, re-sent while Timer M passes 2xx retransmissions up.
            if let Some(slot) = self.slot(id).and_then(|i| self.calls.get_mut(i)) {
                // A re-INVITE still waiting for its final response keeps a copy of the dialog
                // in its transaction's entry: its 2xx must still be ACKed (§13.2.2.4).
                if let Slot::Live(c) = slot
                    && let Some(d) = c.dialog.as_ref()
                {
                    self.ended_dialogs
                        .get_or_insert_with(Box::default)
                        .push(&d.id);
                    for e in self.client.iter_mut().filter(|e| {
                        e.owner == Owner::InDialog(id, InDialogMethod::Reinvite)
                            && !matches!(
                                e.txn.state(),
                                State::Completed | State::Accepted | State::Terminated
                            )
                    }) {
                        e.dialog = Some(Box::new(d.clone()));
                    }
                }
                slot.end();
            }
        }
        queues(&mut self.queues)
            .events
            .push_back(UaEvent::Call(id, e));
    }

    fn on_invite_response(&mut self, now: Instant, id: CallId, resp: &Message) {
        let code = resp.status().unwrap_or(0);
        if let Some(Slot::Ended { .. }) = self.slot(id).and_then(|i| self.calls.get(i)) {
            // Too late for an ended call. (A retransmitted 2xx is ACKed again by the INVITE's
            // transaction record, which keeps the ACK: `keep_invite_ack`.)
            return;
        }
        let sdp = sdp_of(resp);
        let use_100rel = self.profile.use_100rel;
        let Some(call) = self.call_mut(id) else {
            return;
        };
        match code {
            100 => {
                // §9.1: any provisional response, 100 included, lets a CANCEL go out (and
                // one asked for before it is sent now: the INVITE's transaction is in
                // Proceeding, where Timer B no longer ends it, §17.1.1.2).
                call.provisional = Provisional::Seen;
                let cancel = call.cancel == Cancel::Pending;
                self.call_event(id, CallEvent::Trying);
                if cancel {
                    self.send_cancel(now, id);
                }
            }
            101..=199 => {
                call.provisional = Provisional::Seen;
                if call.state == CallState::Calling {
                    call.state = CallState::Early;
                }
                // The To tag, read once: it names the fork's early dialog.
                let tag = resp
                    .headers
                    .view::<ToRef>()
                    .and_then(Result::ok)
                    .and_then(|t| t.tag());
                let made =
                    call.dialog.is_none() && tag.as_deref().is_some_and(|t| !fork_ended(call, t));
                if made {
                    call.dialog = call.invite.as_deref().and_then(|inv| {
                        let d = Dialog::from_uac_tagged(inv, &call.local_tag, resp).ok()?;
                        Some(with_invite_offer(d, Some(inv)))
                    });
                }
                // RFC 3261 §12.1.2: each 1xx with a To tag is in its fork's early dialog (made
                // by the first 1xx of that tag). Its Contact refreshes that dialog's remote
                // target (§12.2.1.2, §13.2.2.4: the target a later 1xx or the 2xx gives is
                // where the UAS is now; PRACK, UPDATE and INFO go there).
                let fork = early_dialog_of(call, tag.as_deref(), resp);
                if let Some(fork) = fork
                    && !(made && fork.is_none())
                    && let Some(d) = dialog_of_mut(call, fork)
                {
                    d.refresh_target(resp);
                }
                // RFC 3262 §4: a reliable provisional (Require: 100rel, RSeq) is PRACKed once,
                // in its fork's early dialog (RSeq counted per dialog).
                let reliable = requires_100rel(resp);
                let rseq = resp
                    .headers
                    .typed::<RSeq>()
                    .and_then(Result::ok)
                    .map(|r| r.0);
                if let (true, Some(rseq)) = (reliable && use_100rel, rseq) {
                    match fork {
                        Some(fork) => {
                            let last = match fork {
                                None => &mut call.last_rseq,
                                Some(i) => &mut call.forks[i].last_rseq,
                            };
                            // §4: the first RSeq starts the count; a later one is taken
                            // only when it is one more than the last (a retransmission, or
                            // one after a gap, is neither PRACKed nor processed further).
                            if last.is_none_or(|last| last.checked_add(1) == Some(rseq)) {
                                *last = Some(rseq);
                                // RFC 3262 §5: its SDP answers our INVITE's offer, or is the
                                // callee's offer (the first reliable 1xx with SDP).
                                let mut offered = false;
                                if sdp.is_some()
                                    && let Some(open) = offer_of(call, fork)
                                {
                                    *open = open.after_sdp(false);
                                    offered = *open == OpenOffer::Theirs;
                                }
                                let cseq = call
                                    .invite
                                    .as_deref()
                                    .and_then(Message::cseq)
                                    .map_or(1, |c| c.seq);
                                if let (true, Some(offer)) = (offered, sdp.clone()) {
                                    // §5: "it MUST generate an answer in the PRACK": the PRACK
                                    // waits for the application's answer.
                                    let tag = tag.as_deref().unwrap_or_default().to_owned();
                                    owe_answer(
                                        call,
                                        offer.clone(),
                                        OwedIn::Prack { tag, rseq, cseq },
                                    );
                                    queues(&mut self.queues).events.push_back(UaEvent::Call(
                                        id,
                                        CallEvent::Offered { sdp: offer },
                                    ));
                                } else {
                                    self.send_in_dialog_of(
                                        now,
                                        id,
                                        fork,
                                        InDialogMethod::Prack,
                                        None,
                                        Some(format!("{rseq} {cseq} INVITE")),
                                    );
                                    queues(&mut self.queues)
                                        .events
                                        .push_back(UaEvent::Call(id, CallEvent::Pracked { rseq }));
                                }
                            } else if last.is_some_and(|last| rseq > last) {
                                // Past a missing one (the UAS sent one we never got, or
                                // numbers wrongly): not PRACKed (§4; not cached either: the
                                // UAS sends the missing one again, then this one).
                                queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                                    what: "reliable provisional whose RSeq is not one more than \
                                           the last (RFC 3262 §4): not PRACKed",
                                });
                            }
                        }
                        None => queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                            what: "reliable provisional of a fork whose early dialog is not \
                                   kept (ended with BYE, or past the forks kept)",
                        }),
                    }
                }
                let Some(call) = self.call_mut(id) else {
                    return;
                };
                let cancel = call.cancel == Cancel::Pending;
                self.call_event(id, CallEvent::Progress { code, sdp });
                if cancel {
                    self.send_cancel(now, id);
                }
            }
            200..=299 => {
                if let Some(kept) = call.ack.clone() {
                    // A retransmitted 2xx: our ACK was lost; send it again (§13.2.2.4). The
                    // 2xx of another fork is ACKed in its own dialog, which BYE then ends.
                    self.on_2xx_again(now, Owner::Invite(id), &kept, resp);
                    return;
                }
                if matches!(
                    owed_of(call),
                    Some(OwedAnswer {
                        at: OwedIn::Ack { .. },
                        ..
                    })
                ) {
                    // The 2xx again (or another fork's) before the application answered its
                    // offer: not reported again, no ACK without the answer. Its UAS sends it
                    // again; the ACK answers that once it is there (another fork's then goes
                    // as `on_2xx_again` says).
                    return;
                }
                self.start_session_of_2xx(now, id, resp);
                let Some(call) = self.call_mut(id) else {
                    return;
                };
                let Some(invite) = call.invite.as_deref() else {
                    // The call ended (or failed) before this 2xx: nothing to build an ACK from.
                    queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                        what: "2xx to INVITE of an ended call",
                    });
                    return;
                };
                // A 2xx without Contact (RFC 3261 §12.1.1 requires one) or To tag is still
                // ACKed (§13.2.2.4: the UAC core ACKs every 2xx; unACKed, its UAS retransmits
                // it until Timer H and keeps its dialog up), towards its route set and the
                // INVITE's Request-URI as remote target (the target that reached that UAS:
                // nothing better is known), then ended at once with BYE the same way: the
                // call is not taken on a dialog whose peer cannot be reached. The call fails
                // with the violation named (its outcome); the 2xx is in the trace.
                let (dialog, violation) =
                    match Dialog::from_uac_tagged(invite, &call.local_tag, resp) {
                        Ok(d) => (d, None),
                        Err(e) => match invite
                            .request_uri()
                            .map(std::borrow::Cow::into_owned)
                            .map(|target| Dialog::from_uac_lenient(invite, resp, target))
                        {
                            Some(Ok(d)) => (d, Some(e)),
                            _ => {
                                // Not even a dialog to ACK in (no From, To or Call-ID).
                                queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                                    what: "2xx to INVITE without From, To or Call-ID",
                                });
                                self.call_event(
                                    id,
                                    CallEvent::Failed {
                                        code,
                                        reason: "2xx without From, To or Call-ID".into(),
                                    },
                                );
                                return;
                            }
                        },
                    };
                let cancelled =
                    call.cancel == Cancel::Pending || call.state == CallState::Terminating;
                let seq = invite.cseq().map_or(1, |c| c.seq);
                // A late offer (RFC 3264 §4: our INVITE had none): the 2xx carries the callee's
                // offer, unless an offer/answer completed in its fork's early dialog (a
                // reliable 1xx and our PRACK, RFC 3262 §5).
                let late = invite.body().is_empty();
                let mut answered_early = false;
                let mut dialog = dialog;
                // Requests sent in this fork's early dialog (PRACK, UPDATE) used CSeq numbers
                // the confirmed dialog must continue from (RFC 3261 §12.2.1.1); the other
                // forks' early dialogs' numbers go to the kept ACK, for the BYE that ends
                // each if its 2xx comes too.
                let forks = std::mem::take(&mut call.forks);
                let mut kept_forks = Vec::new();
                for early in call
                    .dialog
                    .as_ref()
                    .into_iter()
                    .chain(forks.iter().map(|f| &f.dialog))
                {
                    if early.id.remote_tag == dialog.id.remote_tag {
                        dialog.local_seq = dialog.local_seq.max(early.local_seq);
                        // §13.2.2.4: the early dialog is confirmed, not made again: the
                        // peer's requests in it set the remote CSeq the dialog goes on
                        // from (§12.2.2).
                        dialog.remote_seq = dialog.remote_seq.max(early.remote_seq);
                        answered_early = early.offer == OpenOffer::Answered;
                    } else if early.local_seq > seq {
                        kept_forks.push(KeptFork {
                            tag: early.id.remote_tag.clone(),
                            last_seq: early.local_seq,
                            ended: false,
                        });
                    }
                }
                drop(forks);
                // The offer our ACK answers: the 2xx's, or a reliable 1xx's whose PRACK still
                // waits for our answer (an answer owed is dropped: its message is past).
                let early_offer = take_owed(call).map(|o| o.offer);
                let offer = (late && !answered_early)
                    .then(|| sdp.clone().or(early_offer))
                    .flatten();
                let missing_offer = late && !answered_early && offer.is_none();
                let answer = match offer {
                    Some(offer) if !cancelled && violation.is_none() => {
                        // The ACK waits for the application's answer (`answer_offer`).
                        dialog.offer = OpenOffer::Theirs;
                        call.dialog = Some(dialog);
                        call.state = CallState::Answering;
                        call.invite = None;
                        let owed = OwedIn::Ack {
                            seq,
                            forks: kept_forks,
                        };
                        owe_answer(call, offer.clone(), owed);
                        queues(&mut self.queues)
                            .events
                            .push_back(UaEvent::Call(id, CallEvent::Offered { sdp: offer }));
                        return;
                    }
                    // The call ends at once: its ACK still carries a valid answer, every
                    // stream rejected (§13.2.2.4: "the UAC core MUST generate a valid answer in
                    // the ACK and then send a BYE immediately").
                    Some(offer) => Some(self.rejecting_answer(&offer)),
                    None => None,
                };
                self.ack_invite_2xx(id, dialog, seq, kept_forks, answer);
                let violation = match (violation, missing_offer) {
                    (Some(e), _) => Some(match e {
                        DialogError::MissingTag => "To tag (RFC 3261 §12.1.1)",
                        _ => "Contact (RFC 3261 §12.1.1)",
                    }),
                    (None, true) => {
                        Some("an offer to our INVITE without one (RFC 3264 §4, RFC 3261 §13.2.1)")
                    }
                    (None, false) => None,
                };
                if let Some(what) = violation {
                    self.send_bye(now, id);
                    self.call_event(
                        id,
                        CallEvent::Failed {
                            code,
                            reason: format!("2xx without {what}: ACKed and ended with BYE"),
                        },
                    );
                    return;
                }
                let policy = self.profile.srtp;
                if let (Some(answer), Some(c)) = (&sdp, self.call_mut(id)) {
                    took_answer(c, answer, policy);
                }
                queues(&mut self.queues)
                    .events
                    .push_back(UaEvent::Call(id, CallEvent::Answered { sdp }));
                if cancelled {
                    // §9.1 race: the 2xx crossed our CANCEL; end the call with BYE.
                    self.send_bye(now, id);
                }
            }
            401 | 407 if call.state != CallState::Terminating => {
                // The digest URI: the Request-URI printed straight into its string.
                let mut uri = String::with_capacity(48);
                if let Some(u) = call.invite.as_deref().and_then(Message::request_uri) {
                    // Writing into a String never fails.
                    let _ = u.write_to(&mut uri);
                }
                // On the stack: the cnonce is only read while the answer is computed.
                let mut cnonce = sip_msg::HexText::default();
                let cnonce = sip_msg::hex16(self.rng.random(), &mut cnonce);
                // Fields borrowed apart: the rejected INVITE is read where it is kept.
                let Some(Slot::Live(call)) = self.slot(id).and_then(|i| self.calls.get(i)) else {
                    return;
                };
                let Some(rejected) = call.invite.as_deref() else {
                    return;
                };
                match self.auth.challenge(
                    self.credentials.as_ref(),
                    resp,
                    rejected,
                    &Method::Invite,
                    &uri,
                    rejected.body(),
                    cnonce,
                ) {
                    Ok(header) => self.reinvite_with_auth(now, id, header),
                    Err(f) => {
                        let reason = auth_reason(resp.reason().unwrap_or(""), f);
                        self.call_event(id, CallEvent::Failed { code, reason });
                    }
                }
            }
            _ => {
                if code == 422
                    && call.state != CallState::Terminating
                    && self.retry_after_422(now, id, resp)
                {
                    return;
                }
                let Some(call) = self.call_mut(id) else {
                    return;
                };
                let mut reason = resp.reason().unwrap_or("").to_owned();
                if call.cancel == Cancel::AfterEarlyBye {
                    reason.push_str(EARLY_BYE_CANCELLED);
                }
                self.call_event(id, CallEvent::Failed { code, reason });
            }
        }
    }

    /// RFC 4028 §7.2: the 2xx to our INVITE sets the session interval and who refreshes (its
    /// Session-Expires), and the timer starts; a 2xx without one means no session timer.
    fn start_session_of_2xx(&mut self, now: Instant, id: CallId, resp: &Message) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let Some(rare) = call.rare.as_mut() else {
            return;
        };
        let Some(mut session) = rare.session.take() else {
            return;
        };
        if session.take_terms(resp, true) {
            session.peer_update = allows_update(resp);
            session.peer_timer = supports(resp, "timer");
            session.restart(now);
            let short = session.below_min_se();
            rare.session = Some(session);
            self.set_flag(CALL_TIMERS, true);
            if let Some((interval, min_se)) = short {
                self.call_event(id, CallEvent::SessionTooShort { interval, min_se });
            }
        } else {
            tidy_rare(call);
        }
    }

    /// Sends the ACK of the 2xx that confirmed `dialog` (the INVITE's CSeq number `seq`;
    /// `forks`: the other forks' early dialogs, [`KeptAck::forks`]) with `answer` in its body
    /// when the 2xx carried an offer (RFC 3261 §13.2.2.4): the call is confirmed, works from
    /// the dialog and the kept ACK from now on (a retransmitted 2xx is answered with that ACK;
    /// an auth retry or a CANCEL can no longer happen).
    fn ack_invite_2xx(
        &mut self,
        id: CallId,
        mut dialog: Dialog,
        seq: u32,
        forks: Vec<KeptFork>,
        answer: Option<Bytes>,
    ) {
        // The branch's random part (drawn as `new_via_branch_at` draws it); the Via is
        // written into the builder's string.
        let (proxied, branch) = (self.proxied(id), self.rng.random::<u64>());
        let mut ack = self.common(dialog.request_via_with(
            Method::Ack,
            |s| self.write_via_at(s, proxied, branch),
            80,
            Some(seq),
        ));
        if let Some(answer) = answer {
            ack = ack.body("application/sdp", answer);
        }
        let ack = Bytes::from(ack.build_bytes());
        let dest = Destination::Uri(dialog.next_hop_shared());
        let Some(call) = self.call_mut(id) else {
            return;
        };
        call.dialog = Some(dialog);
        call.state = CallState::Confirmed;
        call.invite = None;
        let out = keep_ack(&mut call.ack, dest, ack);
        self.keep_invite_ack(id, &out, forks);
        push_out(&mut self.queues, out);
    }

    /// An answer to `offer` that rejects every stream (RFC 3264 §6: port 0, the offer's
    /// formats), from our address, for a late offer we take no media of.
    fn rejecting_answer(&self, offer: &[u8]) -> Bytes {
        crate::sdpdir::rejecting_answer(offer, &self.local_host.to_string())
    }

    /// Gives the INVITE's transaction (in Accepted, waiting out Timer M) a copy of the ACK of
    /// its 2xx: the transaction, not the call, answers each retransmission of the 2xx with
    /// it, so the ACK is sent again even after the call has ended and been forgotten
    /// (RFC 3261 §13.2.2.4, RFC 6026 §8.4: until Timer M). The transaction is still at work
    /// when its first 2xx is handled; a finished record is looked at too.
    /// `forks`: the other forks' early dialogs that used CSeq numbers past the INVITE's.
    fn keep_invite_ack(&mut self, id: CallId, ack: &Outgoing, forks: Vec<KeptFork>) {
        let kept = || {
            let mut k = KeptAck::new((ack.destination.clone(), ack.bytes.clone()));
            k.forks = forks;
            k
        };
        if let Some(e) = self
            .client
            .iter_mut()
            .find(|e| e.owner == Owner::Invite(id) && e.txn.state() == State::Accepted)
        {
            e.ack = Some(kept());
            return;
        }
        if let Some(f) = self.finished.iter_mut().find(|f| {
            f.txn.timer() == Timer::M
                && matches!(&f.peer, Peer::Client(Owner::Invite(o), AckTo::Nowhere) if *o == id)
        }) {
            f.peer = Peer::Client(Owner::Invite(id), AckTo::Again(kept()));
        }
    }

    /// A 2xx to `owner`'s INVITE (or re-INVITE) after the ACK of its first 2xx (`kept`: where
    /// it went, its bytes) was sent: the ACK again ([`UserAgent::ack_again`]) and, for the 2xx
    /// of another fork of an initial INVITE, a BYE in that fork's dialog, once per fork
    /// (RFC 3261 §13.2.2.4: a UAC that wants one dialog ACKs each other 2xx, then sends BYE
    /// on it). Runs whether the call is live, ended or forgotten. The rare path.
    fn on_2xx_again(
        &mut self,
        now: Instant,
        owner: Owner,
        kept: &(Destination, Bytes),
        resp: &Message,
    ) {
        let Some((out, fork)) = self.ack_again(kept, resp) else {
            return;
        };
        match (owner, fork) {
            (Owner::Invite(id), Some((tag, dialog))) => match self.note_fork_ended(id, tag) {
                Some(Some(last_seq)) => {
                    push_out(&mut self.queues, out);
                    self.send_fork_bye(now, id, dialog, last_seq);
                }
                Some(None) => push_out(&mut self.queues, out),
                // The INVITE's transaction is gone (past Timer M, RFC 6026 §7.2): another
                // fork's 2xx is a stray response, discarded (§8.9); its UAS, never ACKed,
                // ends that dialog itself (RFC 3261 §13.3.1.4). Nothing is left to remember
                // the forks by, so an ACK and a BYE here would be sent for every copy.
                None => {}
            },
            _ => push_out(&mut self.queues, out),
        }
    }

    /// Records that the fork with To tag `tag` of call `id`'s INVITE is being ended with BYE,
    /// in the ACK its transaction keeps (until Timer M): the CSeq number its BYE comes after
    /// ([`KeptFork::last_seq`], 0 when its early dialog used none past the INVITE's).
    /// `Some(None)` when it was already, or when [`MAX_FORKS_ENDED`] forks were; `None` when
    /// the transaction is gone (past Timer M).
    fn note_fork_ended(&mut self, id: CallId, tag: String) -> Option<Option<u32>> {
        let owner = Owner::Invite(id);
        let kept = self
            .client
            .iter_mut()
            .filter(|e| e.owner == owner)
            .find_map(|e| e.ack.as_deref_mut())
            .or_else(|| {
                self.finished.iter_mut().find_map(|f| match &mut f.peer {
                    Peer::Client(o, AckTo::Again(k)) if *o == owner => Some(&mut **k),
                    _ => None,
                })
            });
        let k = kept?;
        let full = k.forks.iter().filter(|f| f.ended).count() >= MAX_FORKS_ENDED;
        match k.forks.iter_mut().find(|f| f.tag == tag) {
            Some(f) if f.ended || full => Some(None),
            Some(f) => {
                f.ended = true;
                Some(Some(f.last_seq))
            }
            None if full => Some(None),
            None => {
                k.forks.push(KeptFork {
                    tag,
                    last_seq: 0,
                    ended: true,
                });
                Some(Some(0))
            }
        }
    }

    /// Ends the dialog another fork's 2xx confirmed (already ACKed) with BYE
    /// (RFC 3261 §13.2.2.4, §15.1.1). The call itself is not that dialog: nothing of the
    /// call changes, and the BYE's outcome is not reported as a call event. Its CSeq comes
    /// right after `last_seq`, the last its early dialog used (its PRACKs, §12.2.1.1), or
    /// after the INVITE's.
    fn send_fork_bye(&mut self, now: Instant, id: CallId, mut dialog: Dialog, last_seq: u32) {
        dialog.local_seq = dialog.local_seq.max(last_seq);
        let (via, branch) = self.new_via_branch_at(self.proxied(id));
        let bye = self
            .common(dialog.request_via_text(Method::Bye, via, None))
            .build();
        let dest = Destination::Uri(dialog.next_hop_shared());
        self.start_client_branch(now, bye, branch, Owner::ForkBye(id), dest);
    }

    /// The ACK for a 2xx to our INVITE after `kept` (the ACK of the first 2xx, and where it
    /// went) was sent: `kept` again for a retransmission of that 2xx; for a 2xx of another
    /// dialog (a forked INVITE answered twice) an ACK in that dialog (RFC 3261 §13.2.2.4:
    /// the UAC core ACKs each 2xx), made from `kept` (our From and tag, Call-ID, CSeq, Via)
    /// and the 2xx (its To tag, Contact and Record-Route), with that dialog and its To tag.
    /// `None` when that 2xx cannot be ACKed (no To tag or Contact). Only runs for a 2xx
    /// received again: the rare path.
    fn ack_again(
        &self,
        kept: &(Destination, Bytes),
        resp: &Message,
    ) -> Option<(Outgoing, Option<(String, Dialog)>)> {
        let same = || Outgoing {
            destination: kept.0.clone(),
            bytes: kept.1.clone(),
            retransmission: true,
        };
        let Ok(first) = Message::parse(&kept.1) else {
            return Some((same(), None));
        };
        // A 2xx without To tag has a null one (RFC 3261 §12.1.2).
        let tag = |m: &Message| {
            m.headers
                .view::<ToRef>()
                .and_then(Result::ok)
                .map(|t| t.tag().map(Cow::into_owned).unwrap_or_default())
        };
        let theirs = tag(resp)?;
        if tag(&first).as_deref() == Some(theirs.as_str()) {
            return Some((same(), None));
        }
        // Without Contact (or To tag) it is still ACKed and ended, as the first 2xx is
        // (`on_invite_response`), towards the INVITE's Request-URI: our INVITE's To URI is
        // its Request-URI (`call`), and the kept ACK has that To.
        let mut dialog = match Dialog::from_uac(&first, resp) {
            Ok(d) => d,
            Err(_) => Dialog::from_uac_lenient(&first, resp, first.to()?.0.uri).ok()?,
        };
        let via = first.headers.value(&HeaderName::Via)?.to_owned();
        let seq = first.cseq().map_or(1, |c| c.seq);
        let mut ack = self.common(dialog.request_via_text(Method::Ack, via, Some(seq)));
        // A late offer (our first ACK answered its 2xx's offer): this fork's 2xx carries its
        // own offer, and its ACK a valid answer too, every stream rejected, before the BYE
        // (§13.2.2.4).
        if !first.body().is_empty()
            && let Some(offer) = sdp_of(resp)
        {
            ack = ack.body("application/sdp", self.rejecting_answer(&offer));
        }
        let out = Outgoing {
            destination: Destination::Uri(dialog.next_hop_shared()),
            bytes: Bytes::from(ack.build_bytes()),
            retransmission: false,
        };
        Some((out, Some((theirs, dialog))))
    }

    /// RFC 3261 §22.2: the same INVITE with credentials, a new branch and the next CSeq.
    fn reinvite_with_auth(&mut self, now: Instant, id: CallId, header: Header) {
        self.send_invite_again(now, id, |invite| {
            // RFC 3261 §22.3: the credentials of the other realms stay. Room for exactly
            // the credentials: the list was made to fit the first INVITE, and a doubled list
            // (12 spare slots of 56 bytes) would be kept until the 2xx is ACKed.
            crate::auth::put_credentials(&mut invite.headers, header);
        });
    }

    /// RFC 4028 §7.4: our INVITE refused with 422 is sent again (once) asking for the 422's
    /// Min-SE at least, with that Min-SE. False when it is not (timers off, retried already,
    /// no Min-SE in the 422): the 422 is the call's outcome then.
    fn retry_after_422(&mut self, now: Instant, id: CallId, resp: &Message) -> bool {
        let Some((expires, min)) = self.take_422(id, resp) else {
            return false;
        };
        let min_se = decimal_text(min);
        self.send_invite_again(now, id, |invite| {
            // The refresher asked for stays as it was written.
            let params = match invite.headers.typed::<SessionExpires>() {
                Some(Ok(se)) => se.params.to_string(),
                _ => String::new(),
            };
            let mut v = decimal_text(expires);
            v.push_str(&params);
            invite
                .headers
                .set(Header::new(HeaderName::SessionExpires, v));
            invite.headers.set(Header::new(HeaderName::MinSe, min_se));
        });
        true
    }

    /// The call's session timer takes a 422's Min-SE (RFC 4028 §7.4), once: the interval
    /// asked for becomes at least that, and our Min-SE that. `(interval, Min-SE)`, or `None`
    /// when the call has no timer, took one already, or `resp` names no Min-SE.
    fn take_422(&mut self, id: CallId, resp: &Message) -> Option<(u32, u32)> {
        let Some(Ok(min)) = resp.headers.typed::<MinSe>() else {
            return None;
        };
        let session = self.call_mut(id).and_then(session_of)?;
        if session.retried_422 {
            return None;
        }
        session.retried_422 = true;
        session.interval = session.interval.max(min.seconds);
        session.min_se = Some(min.seconds);
        Some((session.interval, min.seconds))
    }

    /// Sends the call's INVITE again (a new branch, the next CSeq number), changed by `edit`:
    /// after a challenge (RFC 3261 §22.2) or a 422 (RFC 4028 §7.4).
    fn send_invite_again(&mut self, now: Instant, id: CallId, edit: impl FnOnce(&mut Message)) {
        let (via, branch) = self.new_via_header_at(self.proxied(id));
        let Some(call) = self.call_mut(id) else {
            return;
        };
        // The rejected INVITE's transaction gave its reference back (it is shed when its
        // final response is handled), so the call's INVITE is changed in place, not copied.
        let Some(invite) = call.invite.as_mut().map(Arc::make_mut) else {
            return;
        };
        let seq = invite.cseq().map_or(1, |c| c.seq) + 1;
        invite.headers.set(cseq_header(seq, &Method::Invite));
        invite.headers.set(via);
        edit(invite);
        // Printed once, into the text its transaction's transmissions share (see
        // `ClientTransaction::arm`).
        invite.make_whole();
        let invite = call.invite.clone();
        call.provisional = Provisional::None;
        // The other forks' early dialogs were the rejected INVITE's.
        call.forks = Vec::new();
        if let Some(invite) = invite {
            let dest = invite_destination(self.profile.outbound_proxy.is_some(), &invite);
            self.start_invite(now, invite, branch, id, dest);
        }
    }

    /// Answers the callee's offer reported by [`CallEvent::Offered`] (a late offer, RFC 3264
    /// §4) with `sdp`: the ACK of its 2xx carries it (RFC 3261 §13.2.2.4; the call is then
    /// [`CallEvent::Answered`]), or the PRACK of its reliable 1xx (RFC 3262 §5; then
    /// [`CallEvent::Pracked`]). To refuse the offer's media, answer with its streams rejected
    /// (port 0, RFC 3264 §6) and hang up. False (nothing sent) when no offer waits for an
    /// answer (none came, it was answered, or its early dialog ended).
    pub fn answer_offer(&mut self, now: Instant, id: CallId, sdp: Bytes) -> bool {
        self.give_answer(now, id, sdp, true)
    }

    /// [`UserAgent::answer_offer`]; `report`: the 2xx's call is reported answered.
    fn give_answer(&mut self, now: Instant, id: CallId, sdp: Bytes, report: bool) -> bool {
        let Some(call) = self.call_mut(id) else {
            return false;
        };
        let Some(owed) = take_owed(call) else {
            return false;
        };
        call.local_sdp = Some(sdp.clone());
        match owed.at {
            OwedIn::Prack { tag, rseq, cseq } => {
                let Some(fork) = fork_of(call, &tag) else {
                    return false;
                };
                if let Some(open) = offer_of(call, fork) {
                    *open = open.after_sdp(true);
                }
                let rack = format!("{rseq} {cseq} INVITE");
                let body = Some(("application/sdp", sdp));
                self.send_in_dialog_of(now, id, fork, InDialogMethod::Prack, body, Some(rack));
                queues(&mut self.queues)
                    .events
                    .push_back(UaEvent::Call(id, CallEvent::Pracked { rseq }));
            }
            OwedIn::Ack { seq, forks } => {
                let Some(mut dialog) = call.dialog.take() else {
                    return false;
                };
                dialog.offer = OpenOffer::Answered;
                self.ack_invite_2xx(id, dialog, seq, forks, Some(sdp));
                if report {
                    let sdp = Some(owed.offer);
                    queues(&mut self.queues)
                        .events
                        .push_back(UaEvent::Call(id, CallEvent::Answered { sdp }));
                }
            }
        }
        true
    }

    /// The ACK of a 2xx (or the PRACK of a reliable 1xx) whose offer we were still to answer
    /// (a late offer), carrying every stream rejected: the call ends (hung up, or by the
    /// callee's BYE) before the application answered, and the 2xx must still be ACKed with a
    /// valid answer (RFC 3261 §13.2.2.4), the 1xx PRACKed with one (RFC 3262 §5: "it MUST
    /// generate an answer in the PRACK"). Nothing when no offer waits.
    fn answer_owed_offer_rejecting(&mut self, now: Instant, id: CallId) {
        let offer = self.call_ref(id).and_then(owed_of).map(|o| o.offer.clone());
        if let Some(offer) = offer {
            let answer = self.rejecting_answer(&offer);
            self.give_answer(now, id, answer, false);
        }
    }

    /// Ends a call: BYE when confirmed, CANCEL when early (or as soon as a provisional
    /// response arrives, §9.1), a 486 when it is an unanswered incoming call. A caller's
    /// call whose 2xx carried an offer not answered yet ([`CallEvent::Offered`]) is ACKed
    /// with every stream rejected, then ended with BYE.
    pub fn hangup(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        match (call.uac, call.state) {
            (true, CallState::Answering) => {
                self.answer_owed_offer_rejecting(now, id);
                self.send_bye(now, id);
            }
            (_, CallState::Confirmed) | (false, CallState::Answering) => self.send_bye(now, id),
            (true, CallState::Calling | CallState::Early) => {
                if call.provisional == Provisional::Seen {
                    // A reliable 1xx's offer waiting for our answer is answered first.
                    self.answer_owed_offer_rejecting(now, id);
                    self.send_cancel(now, id);
                } else {
                    call.cancel = Cancel::Pending;
                }
            }
            (false, CallState::Calling | CallState::Early) => self.reject(now, id, 486),
            _ => {}
        }
    }

    fn send_cancel(&mut self, now: Instant, id: CallId) {
        let proxy = self.profile.outbound_proxy.is_some();
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if call.cancel == Cancel::Pending {
            call.cancel = Cancel::No;
        }
        call.state = CallState::Terminating;
        // §9.1: CANCEL copies Request-URI, Call-ID, To, From, the top Via (same branch),
        // every Route header field (in order, as printed: a comma-joined line stays one
        // line), and the CSeq number of the INVITE.
        let Some(inv) = call.invite.as_deref() else {
            return;
        };
        let mut cancel = Message::new_request(
            Method::Cancel,
            inv.request_uri()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_else(|| Uri::Sip(SipUri::new(Host::Name("invalid".into())))),
        );
        // The INVITE's lines are copied as it printed them, sharing its text (no copy of each
        // value); room for them, CSeq and Content-Length at once.
        cancel.headers = Headers::with_capacity(8);
        for name in [
            HeaderName::Via,
            HeaderName::MaxForwards,
            HeaderName::Route,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
        ] {
            if name == HeaderName::Route {
                for h in inv.headers.get_all(&name) {
                    cancel.headers.push_ref(h);
                }
            } else if let Some(h) = inv.headers.get(&name) {
                cancel.headers.push_ref(h);
            }
        }
        let seq = inv.cseq().map_or(1, |c| c.seq);
        cancel.headers.push(Header::new(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Cancel,
            }
            .to_string(),
        ));
        cancel
            .headers
            .push(Header::from_static(HeaderName::ContentLength, "0"));
        let dest = invite_destination(proxy, inv);
        self.start_client(now, cancel, Owner::Cancel(id), dest);
        // §9.1: without a final response to the INVITE 64·T1 after its CANCEL, the INVITE
        // is taken as cancelled and its transaction ends (Timer B, armed again for that).
        if let Some(e) = self
            .client
            .iter_mut()
            .find(|e| e.owner == Owner::Invite(id))
        {
            e.txn.cancel_sent(now);
        }
    }

    fn send_bye(&mut self, now: Instant, id: CallId) {
        self.send_bye_with(now, id, None);
    }

    /// [`Self::send_bye`] with the header `extra` (a `Reason`, RFC 3326) when given.
    fn send_bye_with(&mut self, now: Instant, id: CallId, extra: Option<Header>) {
        // The branch's random part (drawn as `new_via_branch_at` draws it); the Via is
        // written into the builder's string, from the parts read here (the call is borrowed
        // while it is written).
        let proxied = self.proxied(id);
        let branch: u64 = self.rng.random();
        let profile = Arc::clone(&self.profile);
        let (host, port) = self.local_of(proxied);
        let host = host.clone();
        let ua = profile.user_agent.clone();
        let Some(call) = self.call_mut(id) else {
            return;
        };
        call.state = CallState::Terminating;
        call.ok_retransmit = None;
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let via = |s: &mut String| write_via(s, &profile.transport, &host, port, branch);
        let mut bye = dialog
            .request_via_with(Method::Bye, via, 80, None)
            .header_line(Header::from_shared(HeaderName::UserAgent, ua));
        if let Some(h) = extra {
            bye = bye.header_line(h);
        }
        let bye = bye.build();
        let dest = Destination::Uri(dialog.next_hop_shared());
        self.start_client_branch(now, bye, branch, Owner::Bye(id), dest);
    }

    /// Sends a re-INVITE with a new SDP offer in a confirmed call (hold: `a=sendonly`,
    /// resume: `a=sendrecv`). The final answer comes as [`CallEvent::Modified`]. False
    /// (nothing sent, our SDP unchanged) when the call is not confirmed, or while an offer is
    /// open in its dialog, our previous re-INVITE or UPDATE offer included
    /// ([`UserAgent::can_offer`]; RFC 3264 §4, RFC 3261 §14.1): send it once that offer's
    /// final response came ([`CallEvent::Modified`]).
    pub fn reinvite(&mut self, now: Instant, id: CallId, sdp: Bytes) -> bool {
        if self.call_state(id) != Some(CallState::Confirmed) || !self.can_offer(id) {
            return false;
        }
        if let Some(c) = self.call_mut(id) {
            c.local_sdp = Some(sdp.clone());
            drop_waiting_in_dialog(c, InDialogMethod::Reinvite, true);
        }
        self.send_in_dialog(
            now,
            id,
            InDialogMethod::Reinvite,
            Some(("application/sdp", sdp)),
            None,
        )
    }

    /// Sends UPDATE (RFC 3311) in a confirmed or early call, with an optional SDP offer.
    /// While a forked call is early it goes in the first fork's early dialog (the first 1xx
    /// with a To tag: the one the call had before any other fork rang, so a call that was
    /// never forked works as before; the next one still going once that fork's callee ended
    /// it with BYE); [`UserAgent::update_fork`] names another fork.
    /// False (nothing sent) with an offer while an offer is open in that dialog
    /// ([`UserAgent::can_offer`]: the INVITE's not answered, e.g. a call ringing without a
    /// reliable early answer, or our previous re-INVITE or UPDATE offer; RFC 3311 §5.1,
    /// RFC 3264 §4: one offer at a time).
    pub fn update(&mut self, now: Instant, id: CallId, sdp: Option<Bytes>) -> bool {
        // Without a dialog nothing is sent either way.
        if sdp.is_some() && !self.can_offer(id) {
            return false;
        }
        if let Some(c) = self.call_mut(id) {
            drop_waiting_in_dialog(c, InDialogMethod::Update, sdp.is_some());
        }
        self.send_in_dialog(
            now,
            id,
            InDialogMethod::Update,
            sdp.map(|b| ("application/sdp", b)),
            None,
        )
    }

    /// The To tags of the call's dialogs: while a UAC's call is early, one per fork of the
    /// INVITE whose 1xx carried a To tag (RFC 3261 §12.1.2: each makes its own early
    /// dialog), the first fork's first (the dialog [`UserAgent::update`] and
    /// [`UserAgent::info`] use), then the others in the order they appeared (at most
    /// `MAX_EARLY_FORKS` = 16 more), without those their callee ended with BYE (when it was
    /// the first fork's, the next one still going is first); once confirmed, the confirmed
    /// dialog's only.
    pub fn fork_tags(&self, id: CallId) -> impl Iterator<Item = &str> {
        self.call_ref(id).into_iter().flat_map(|c| {
            c.dialog
                .iter()
                .chain(c.forks.iter().filter(|f| !f.ended).map(|f| &f.dialog))
                .map(|d| d.id.remote_tag.as_str())
        })
    }

    /// [`UserAgent::update`] in the early dialog of the fork whose To tag is `tag` (one of
    /// [`UserAgent::fork_tags`]): RFC 3311 §5.1 lets the caller send UPDATE in any early
    /// dialog, and a forked INVITE has one per ringing phone. False when no dialog of the
    /// call has that tag, or (with an offer) while the INVITE's offer/answer is open in it
    /// (as [`UserAgent::update`]).
    pub fn update_fork(&mut self, now: Instant, id: CallId, tag: &str, sdp: Option<Bytes>) -> bool {
        let Some(call) = self.call_mut(id) else {
            return false;
        };
        let Some(fork) = fork_of(call, tag) else {
            return false;
        };
        if sdp.is_some() && offer_of(call, fork).is_some_and(|o| o.is_open()) {
            return false;
        }
        if sdp.is_some() && self.offer_in_flight(id, Some(tag)) {
            return false;
        }
        let Some(call) = self.call_mut(id) else {
            return false;
        };
        drop_waiting_retry(call, InDialogMethod::Update, sdp.is_some(), tag);
        self.send_in_dialog_of(
            now,
            id,
            fork,
            InDialogMethod::Update,
            sdp.map(|b| ("application/sdp", b)),
            None,
        )
    }

    /// Sends INFO (RFC 6086) in a call, e.g. `application/dtmf-relay` with `Signal=5\r\nDuration=160`.
    pub fn info(&mut self, now: Instant, id: CallId, content_type: &str, body: Bytes) -> bool {
        self.send_in_dialog(
            now,
            id,
            InDialogMethod::Info,
            Some((content_type, body)),
            None,
        )
    }

    /// Sends MESSAGE (RFC 3428) in a call's dialog, e.g. `text/plain`; its final answer comes
    /// as [`CallEvent::Modified`] with `method` MESSAGE (408 when none came).
    pub fn message(&mut self, now: Instant, id: CallId, content_type: &str, body: Bytes) -> bool {
        self.send_in_dialog(
            now,
            id,
            InDialogMethod::Message,
            Some((content_type, body)),
            None,
        )
    }

    /// Builds and sends a request inside the call's dialog; false when there is no dialog.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        id: CallId,
        kind: InDialogMethod,
        body: Option<(&str, Bytes)>,
        rack: Option<String>,
    ) -> bool {
        self.send_in_dialog_of(now, id, None, kind, body, rack)
    }

    /// [`UserAgent::send_in_dialog`] in the call's dialog (`fork` `None`) or in the early
    /// dialog of another fork (`Some(i)`: `call.forks[i]`).
    fn send_in_dialog_of(
        &mut self,
        now: Instant,
        id: CallId,
        fork: Option<usize>,
        kind: InDialogMethod,
        body: Option<(&str, Bytes)>,
        rack: Option<String>,
    ) -> bool {
        let method = kind.method();
        let proxied = self.proxied(id);
        let (via, branch) = self.new_via_branch_at(proxied);
        let contact = self.contact_at(proxied);
        let ua = self.profile.user_agent.clone();
        let session = if (method == Method::Invite || method == Method::Update) && fork.is_none() {
            self.session_lines(id, true)
        } else {
            None
        };
        let Some(dialog) = self.call_mut(id).and_then(|c| dialog_of_mut(c, fork)) else {
            return false;
        };
        let mut b = dialog
            .request_via_text(method.clone(), via, None)
            .header_line(Header::from_shared(HeaderName::UserAgent, ua));
        if method == Method::Invite || method == Method::Update {
            // Target-refresh requests carry our Contact (RFC 3261 §12.2.1.1, RFC 3311 §5.1).
            b = b.contact(contact);
        }
        // RFC 4028 §7.4, §10: a re-INVITE or UPDATE in a session with a timer refreshes it
        // and says so: the interval and refresher, our Min-SE, `Supported: timer`.
        for line in session.into_iter().flatten().flatten() {
            b = b.header_line(line);
        }
        if let Some(rack) = rack {
            b = b.header(HeaderName::RAck, rack);
        }
        if let Some((ct, body)) = body {
            b = b.body(ct, body);
        }
        let req = b.build();
        let dest = Destination::Uri(dialog.next_hop_shared());
        self.start_client_branch(now, req, branch, Owner::InDialog(id, kind), dest);
        true
    }

    /// The lines a refresh of the call's session carries (RFC 4028 §7.4, §9): the
    /// Session-Expires (`request`: in our request, else in our 2xx to the peer's), then
    /// `Supported: timer` and our Min-SE (a request), or `Require: timer` (a 2xx, when the
    /// peer supports timers). `None` when the call has no session timer agreed (none asked
    /// for, or before the INVITE's 2xx).
    fn session_lines(&self, id: CallId, request: bool) -> Option<[Option<Header>; 3]> {
        let call = self.call_ref(id)?;
        if !matches!(call.state, CallState::Answering | CallState::Confirmed) {
            return None;
        }
        let s = call.rare.as_ref()?.session.as_ref()?;
        Some(if request {
            [
                Some(s.header(true)),
                Some(Header::from_static(HeaderName::Supported, "timer")),
                s.min_se
                    .map(|m| Header::new(HeaderName::MinSe, decimal_text(m))),
            ]
        } else {
            [
                Some(s.header(false)),
                s.peer_timer
                    .then(|| Header::from_static(HeaderName::Require, "timer")),
                None,
            ]
        })
    }

    /// RFC 4028 §8.1 for a refresh from the peer: the Min-SE a 422 must name when its
    /// Session-Expires is below our minimum; `None` when it is not (or no timer runs).
    fn refresh_too_small(&self, id: CallId, req: &Message) -> Option<u32> {
        self.session_lines(id, false)?;
        let ours_min = self
            .profile
            .session_timer?
            .min_se
            .unwrap_or(MIN_SE_FLOOR)
            .max(MIN_SE_FLOOR);
        match req.headers.typed::<SessionExpires>() {
            Some(Ok(se)) if se.seconds < ours_min => Some(ours_min),
            _ => None,
        }
    }

    /// RFC 4028 §10: the peer's re-INVITE or UPDATE `req`, answered 2xx now, refreshes the
    /// session: its Session-Expires (none: the terms as they were) sets the interval and
    /// refresher, and the interval starts again. The session's (interval, we refresh), or
    /// `None` without one.
    fn refreshed_by_peer(
        &mut self,
        now: Instant,
        id: CallId,
        req: &Message,
    ) -> Option<(u32, bool)> {
        self.session_lines(id, false)?;
        let session = self.call_mut(id).and_then(session_of)?;
        session.take_terms(req, false);
        session.restart(now);
        let terms = (session.interval, session.we_refresh);
        self.set_flag(CALL_TIMERS, true);
        Some(terms)
    }

    /// RFC 4028 §10: the final answer `code` (`resp`; `None`: no answer, 408) to our
    /// re-INVITE or UPDATE in a session with a timer, each of which refreshes it. A 2xx
    /// starts the interval again with its terms (none from a peer supporting timers: no
    /// session timer any more, §7.2); a
    /// 422 is answered once by the request again asking for its Min-SE (§7.4); a 408 or 481
    /// ends the call with BYE ("the UAC sends a BYE request"); another failure leaves the
    /// session to expire, and we, the refresher, try again after half of what is left of it.
    /// True when the answer is handled here and is not the request's outcome (a 422
    /// answered by a retry).
    fn session_after_refresh(
        &mut self,
        now: Instant,
        id: CallId,
        kind: InDialogMethod,
        code: u16,
        resp: Option<&Message>,
    ) -> bool {
        if !matches!(kind, InDialogMethod::Reinvite | InDialogMethod::Update)
            || self.session_lines(id, true).is_none()
        {
            return false;
        }
        let Some(call) = self.call_mut(id) else {
            return false;
        };
        let Some(session) = session_of(call) else {
            return false;
        };
        match code {
            200..=299 => {
                // A peer that supports timers and answers without Session-Expires turns the
                // timer off (§7.2); one that does not support them never names the terms
                // (we refresh, §9): they stay.
                if !resp.is_some_and(|r| session.take_terms(r, true)) && session.peer_timer {
                    if let Some(r) = call.rare.as_mut() {
                        r.session = None;
                    }
                    tidy_rare(call);
                    return false;
                }
                session.restart(now);
                session.retried_422 = false;
                let (interval, we_refresh) = (session.interval, session.we_refresh);
                let short = session.below_min_se();
                self.set_flag(CALL_TIMERS, true);
                if let Some((interval, min_se)) = short {
                    self.call_event(id, CallEvent::SessionTooShort { interval, min_se });
                }
                queues(&mut self.queues).events.push_back(UaEvent::Call(
                    id,
                    CallEvent::SessionRefreshed {
                        by_us: true,
                        interval,
                        we_refresh,
                    },
                ));
                false
            }
            408 | 481 => {
                self.session_expired(now, id, code);
                false
            }
            _ if session.we_refresh => {
                let left = session.expiry().saturating_duration_since(now);
                if left >= Duration::from_secs(2) {
                    session.at = Some(now + left / 2);
                    self.set_flag(CALL_TIMERS, true);
                } else {
                    self.session_expired(now, id, code);
                }
                false
            }
            _ => false,
        }
    }

    /// RFC 4028 §7.4: "If a 422 response is received, the UAC MAY retry the request" with
    /// the 422's Min-SE: our re-INVITE or UPDATE (`kind`) in a timed session, refused with
    /// `resp` (a 422), goes again once, at once, asking for at least that Min-SE and naming
    /// it, with the offer it carried (`body`: an UPDATE offering hold still offers hold; a
    /// bodiless refresh stays bodiless). False when it does not (no session timer, a second
    /// 422, none naming a Min-SE): the 422 is then the request's outcome (a refresh retried
    /// later, [`UserAgent::session_after_refresh`]).
    fn retry_in_dialog_after_422(
        &mut self,
        now: Instant,
        id: CallId,
        kind: InDialogMethod,
        resp: &Message,
        body: Option<Bytes>,
    ) -> bool {
        if self.session_lines(id, true).is_none() || self.take_422(id, resp).is_none() {
            return false;
        }
        // Not `reinvite`/`update`: they would drop a request of ours waiting after a 491,
        // and this is the same request again, not a new one.
        let body = body.map(|b| ("application/sdp", b));
        self.send_in_dialog(now, id, kind, body, None)
    }

    /// RFC 4028 §10: the session ends for want of a refresh (`code` 0: the peer's; else the
    /// answer to ours): reported, and the call is ended with BYE.
    fn session_expired(&mut self, now: Instant, id: CallId, code: u16) {
        let Some(session) = self.call_mut(id).and_then(session_of) else {
            return;
        };
        session.at = None;
        let interval = session.interval;
        queues(&mut self.queues).events.push_back(UaEvent::Call(
            id,
            CallEvent::SessionExpired { interval, code },
        ));
        self.hangup(now, id);
    }

    /// The session timers due at `now` (RFC 4028 §10): our refreshes, and the sessions whose
    /// refresher (the peer) let them expire.
    fn fire_session_timers(&mut self, now: Instant) {
        let first = self.first_call;
        let due: Vec<(CallId, bool)> = self
            .calls
            .iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| {
                let session = session_of(slot.as_mut()?)?;
                if session.at.is_none_or(|at| at > now) {
                    return None;
                }
                session.at = None;
                Some((Self::id_at(first, i), session.we_refresh))
            })
            .collect();
        for (id, we_refresh) in due {
            if we_refresh {
                self.send_refresh(now, id);
            } else {
                self.session_expired(now, id, 0);
            }
        }
    }

    /// Our session refresh (RFC 4028 §10): an UPDATE without a body when the peer allows
    /// UPDATE (no offer: nothing for the peer's media to redo, no ACK, and no crossing with
    /// an offer of ours or theirs; it goes whatever waits, and leaves a request of ours
    /// waiting after a 491 as it is), else a re-INVITE offering our description unchanged.
    ///
    /// That re-INVITE waits (tried again a second later) while it may not go: an offer
    /// open in the dialog (ours in a re-INVITE or UPDATE, or in our 2xx to the peer's
    /// re-INVITE without one, until its ACK; RFC 3264 §4: one offer at a time; RFC 3261
    /// §14.1: no new INVITE transaction while one is in progress either way), the ACK of
    /// the INVITE not there yet, or a re-INVITE or UPDATE of ours waiting after a 491
    /// (§14.1's random wait is what resolves the glare; going before it would cross the
    /// peer's again). Each of those requests carries the session's terms, and its 2xx
    /// refreshes the session (§10: "Note that only a 2xx response to a session refresh
    /// request extends the session"). A re-INVITE without an offer would not help: the
    /// peer must offer in its 2xx (RFC 3261 §14.2) while an offer is open, which RFC 3264
    /// §4 forbids it.
    fn send_refresh(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.call_ref(id) else {
            return;
        };
        let update = call
            .rare
            .as_ref()
            .and_then(|r| r.session.as_ref())
            .is_some_and(|s| s.peer_update);
        let glare_wait = call.rare.as_ref().is_some_and(|r| {
            let tag = call.dialog.as_ref().map(|d| d.id.remote_tag.as_str());
            r.retries
                .iter()
                .any(|g| g.at.is_some() && Some(g.tag.as_str()) == tag)
        });
        let sent = match (call.state, update, call.local_sdp.clone()) {
            (CallState::Confirmed, true, _) => {
                self.send_in_dialog(now, id, InDialogMethod::Update, None, None)
            }
            (CallState::Confirmed, false, Some(sdp)) if !glare_wait => self.reinvite(now, id, sdp),
            (CallState::Answering | CallState::Confirmed, ..) => false,
            // Ending: nothing to refresh.
            _ => return,
        };
        if !sent && let Some(session) = self.call_mut(id).and_then(session_of) {
            session.at = Some(now + Duration::from_secs(1));
        }
    }

    fn on_in_dialog_response(
        &mut self,
        now: Instant,
        id: CallId,
        kind: InDialogMethod,
        resp: &Message,
    ) {
        let Some(code) = resp.status().filter(|c| *c >= 200) else {
            return;
        };
        if kind == InDialogMethod::Prack {
            return;
        }
        // RFC 3261 §12.2.1.2: the 2xx to a target refresh request replaces the remote target
        // with its Contact; UPDATE is one (RFC 3311 §5.1), in an early dialog too (the
        // dialog its To tag names). A re-INVITE's 2xx did it already (its ACK goes there).
        if kind == InDialogMethod::Update
            && (200..300).contains(&code)
            && let Some(c) = self.call_mut(id)
            && let Some(tag) = resp
                .headers
                .view::<ToRef>()
                .and_then(Result::ok)
                .and_then(|t| t.tag())
            && let Some(fork) = fork_of(c, &tag)
            && let Some(d) = dialog_of_mut(c, fork)
        {
            d.refresh_target(resp);
        }
        let retried = self.session_after_refresh(now, id, kind, code, Some(resp));
        // A retried request's answer: its glare retries are over (those of its dialog: the
        // response's To tag is the one our request had).
        if let Some(c) = self.call_mut(id)
            && c.rare.as_ref().is_some_and(|r| !r.retries.is_empty())
        {
            let tag = resp
                .headers
                .view::<ToRef>()
                .and_then(Result::ok)
                .and_then(|t| t.tag())
                .unwrap_or_default();
            drop_retries(c, |g| g.kind == kind && g.at.is_none() && g.tag == tag);
        }
        if retried {
            return;
        }
        // A re-INVITE's 2xx was ACKed already ([`UserAgent::ack_reinvite_2xx`]).
        let method = kind.method();
        let sdp = sdp_of(resp);
        // The answer to our offer: the codec in use is its first of ours.
        let policy = self.profile.srtp;
        if let (200..=299, Some(answer), Some(c)) = (code, &sdp, self.call_mut(id)) {
            took_answer(c, answer, policy);
        }
        queues(&mut self.queues)
            .events
            .push_back(UaEvent::Call(id, CallEvent::Modified { method, code, sdp }));
        self.end_if_dialog_gone(now, id, code);
    }

    /// RFC 3261 §12.2.1.2: "If the response for a request within a dialog is a 481
    /// (Call/Transaction Does Not Exist) or a 408 (Request Timeout), the UAC SHOULD terminate
    /// the dialog", and so for no response at all (reported as 408); §14.1 says the same of a
    /// re-INVITE. The call (confirmed: an early dialog's requests are not the call's end) is
    /// ended with BYE (§15), as the session timer does for a refresh answered so
    /// ([`UserAgent::session_after_refresh`]); the BYE's own answer (481, most likely) ends it.
    fn end_if_dialog_gone(&mut self, now: Instant, id: CallId, code: u16) {
        if matches!(code, 408 | 481) && self.call_state(id) == Some(CallState::Confirmed) {
            self.send_bye(now, id);
        }
    }

    /// The ACK of a 2xx to our re-INVITE (RFC 3261 §13.2.2.4: the UAC core ACKs every 2xx),
    /// sent, and returned to be kept by the transaction (sent again for retransmissions of
    /// the 2xx). Built from the call's dialog, or from `parked`, the copy the transaction kept
    /// when the call ended before the 2xx came. `None` when neither is there.
    fn ack_reinvite_2xx(
        &mut self,
        id: CallId,
        parked: Option<Box<Dialog>>,
        resp: &Message,
    ) -> Option<(Destination, Bytes)> {
        let via = self.new_via_branch_at(self.proxied(id)).0;
        let seq = resp.cseq().map_or(1, |c| c.seq);
        let mut parked = parked;
        let dialog = match parked.as_deref_mut() {
            Some(d) => d,
            None => self.call_mut(id)?.dialog.as_mut()?,
        };
        dialog.refresh_target(resp);
        let ack = Bytes::from(
            dialog
                .request_via_text(Method::Ack, via, Some(seq))
                .build()
                .to_bytes(),
        );
        let destination = Destination::Uri(dialog.next_hop_shared());
        push_out(
            &mut self.queues,
            Outgoing {
                destination: destination.clone(),
                bytes: ack.clone(),
                retransmission: false,
            },
        );
        Some((destination, ack))
    }

    // ---- incoming calls ----

    /// Sends 180 Ringing on an incoming call. Reliable when both sides use 100rel (RFC 3262
    /// §3); while an earlier reliable provisional waits for its PRACK, the 180 waits in the
    /// call and goes once that PRACK is taken ([`Self::held_for_prack`]).
    pub fn ring(&mut self, now: Instant, id: CallId) {
        if !self.held_for_prack(id, Provisional::HeldRinging) {
            self.respond_invite(now, id, 180, "Ringing", None);
        }
        self.now_early(id);
    }

    /// Sends 183 Session Progress with early media SDP on an incoming call (RFC 3261
    /// §13.3.1.1). Reliable when both sides use 100rel (RFC 3262 §3): its SDP is then the
    /// answer to the INVITE's offer (or our offer when the INVITE had none, RFC 3262 §5); an
    /// unreliable one only previews the answer the 2xx will carry (RFC 6337 §3.1.1). Our SDP
    /// becomes `sdp` (the 2xx carries it again). While an earlier reliable provisional waits
    /// for its PRACK, the 183 waits in the call, as [`Self::ring`]'s 180.
    pub fn progress(&mut self, now: Instant, id: CallId, sdp: Bytes) {
        if let Some(c) = self.call_mut(id) {
            c.local_sdp = Some(sdp.clone());
        }
        if !self.held_for_prack(id, Provisional::HeldProgress) {
            self.respond_invite(now, id, 183, "Session Progress", Some(sdp));
        }
        self.now_early(id);
    }

    /// RFC 3262 §3: "The UAS MUST NOT send a second reliable provisional response until the
    /// first is acknowledged." True when the reliable provisional in `prov_retransmit` still
    /// waits for its PRACK: the provisional asked for (`held`, 180 or 183) is then kept in
    /// the call instead, in place of one held before (the latest the application asked for
    /// is the one the caller needs), and goes once the PRACK is taken. A 2xx already held
    /// stays: the final response makes a later provisional moot. Only reliable provisionals
    /// set `prov_retransmit`, and whether one is reliable depends on the profile and the
    /// INVITE alone, so the held one will be reliable too.
    fn held_for_prack(&mut self, id: CallId, held: Provisional) -> bool {
        let Some(c) = self.call_mut(id) else {
            return false;
        };
        let waiting = c.invite.is_some() && c.prov_retransmit.is_some();
        if waiting && c.provisional != Provisional::HeldAnswer {
            c.provisional = held;
        }
        waiting
    }

    /// An incoming call that sent a provisional response is early.
    fn now_early(&mut self, id: CallId) {
        if let Some(c) = self.call_mut(id)
            && c.state == CallState::Calling
        {
            c.state = CallState::Early;
        }
    }

    /// Answers an incoming call with 200 OK and an SDP answer; retransmits it until the ACK.
    pub fn answer(&mut self, now: Instant, id: CallId, sdp: Option<Bytes>) {
        if let Some(c) = self.call_mut(id) {
            c.local_sdp = sdp.clone();
            // RFC 3262 §3: while a reliable provisional with SDP waits for its PRACK, the
            // UAS "MUST NOT send a final response" that is a 2xx: it goes once the PRACK
            // is taken (or a 500 goes at 64·T1 without one).
            if c.invite.is_some()
                && c.prov_retransmit
                    .as_deref()
                    .is_some_and(|(bytes, ..)| carries_body(bytes))
            {
                // In place of a held 1xx, if any.
                c.provisional = Provisional::HeldAnswer;
                return;
            }
        }
        if let Some(bytes) = self.respond_invite(now, id, 200, "OK", sdp) {
            let t1 = self.profile.timers.t1;
            if let Some(c) = self.call_mut(id) {
                c.state = CallState::Answering;
                // §13.3.1.4: retransmit 2xx from T1 doubling to T2 until ACK, give up after
                // 64*T1, on every transport: "there may be hops between UAS and UAC that
                // are UDP ... the response is retransmitted periodically even if the
                // transport at the UAS is reliable".
                c.ok_retransmit = Some((bytes, now + t1, t1, now + 64 * t1));
                // RFC 4028 §10: the session interval starts with the 2xx.
                if let Some(session) = session_of(c) {
                    session.restart(now);
                }
                self.set_flag(CALL_TIMERS, true);
            }
            // RFC 3891 §3: accepted with a 2xx, the call it replaces is shut down.
            self.end_replaced(now, id);
        }
    }

    /// Gives call `id` the `a=crypto` lines (each `a=crypto:TAG SUITE inline:KEY`, CRLF
    /// ended) it answers an SRTP offer inside the call with while our description has no
    /// keys: an `srtp = "optional"` call that is plain (answered plain, or SRTP dropped by
    /// the peer). Fresh keys from the application's CSPRNG (RFC 3711 §8.1.1; this crate
    /// draws none); used once ([`SrtpPolicy::Optional`], RFC 4568 §7.1.4).
    pub fn keep_srtp_keys(&mut self, id: CallId, crypto: Bytes) {
        if let Some(c) = self.call_mut(id) {
            let rare = c.rare.get_or_insert_with(Box::default);
            rare.keys.get_or_insert_with(Box::default).spare = Some(crypto);
        }
    }

    /// Rejects an incoming call with `code` (486 Busy Here, 603 Decline …).
    pub fn reject(&mut self, now: Instant, id: CallId, code: u16) {
        self.reject_warning(now, id, code, None);
    }

    /// Rejects an incoming call like [`Self::reject`], saying why in a `Warning: <warn-code>
    /// <agent> "<text>"` header (RFC 3261 §20.43; e.g. 488 with 305 "Incompatible media
    /// format" when the offer lacks what we require, RFC 3264 §6.1).
    pub fn reject_with_warning(&mut self, now: Instant, id: CallId, code: u16, warning: &str) {
        let warning = Header::new(HeaderName::Warning, warning.to_owned());
        self.reject_warning(now, id, code, Some(&warning));
    }

    fn reject_warning(&mut self, now: Instant, id: CallId, code: u16, warning: Option<&Header>) {
        self.respond_invite_warning(now, id, code, reason_phrase(code), None, warning);
        self.call_event(
            id,
            CallEvent::Failed {
                code,
                reason: format!("rejected locally with {code}"),
            },
        );
    }

    fn respond_invite(
        &mut self,
        now: Instant,
        id: CallId,
        code: u16,
        reason: &str,
        sdp: Option<Bytes>,
    ) -> Option<Bytes> {
        self.respond_invite_warning(now, id, code, reason, sdp, None)
    }

    /// [`Self::respond_invite`] with a `Warning` header (RFC 3261 §20.43) when given.
    fn respond_invite_warning(
        &mut self,
        now: Instant,
        id: CallId,
        code: u16,
        reason: &str,
        sdp: Option<Bytes>,
        warning: Option<&Header>,
    ) -> Option<Bytes> {
        // The call and its server transaction, borrowed apart.
        let call = self.calls.get(self.slot(id)?)?.as_ref()?;
        let at = self.server.iter().position(|e| e.call == Some(id))?;
        // Dropped once a final response was sent: nothing more is answered.
        let invite = call.invite.as_deref()?;
        // RFC 3262 §3: provisionals other than 100 are sent reliably when both sides support it.
        let reliable =
            code > 100 && code < 200 && self.profile.use_100rel && supports_100rel(invite);
        let rseq = call.next_rseq;
        // Contact (1xx–2xx but 100), Allow (200), Require and RSeq (reliable), Server: the
        // headers pushed after the copied ones, printed with them straight into the bytes to
        // send (`write_full_response`: the bytes `response_to` + `to_bytes` gave). Chained
        // where they are, not collected (no list per response).
        let contact = (101..300)
            .contains(&code)
            .then(|| Header::written(HeaderName::Contact, |t| self.write_contact_at(t, false)));
        let allow = (code == 200).then(|| Header::from_static(HeaderName::Allow, ALLOW));
        let supported =
            (code == 200).then(|| Header::from_static(HeaderName::Supported, self.supported()));
        let require = reliable.then(|| Header::from_static(HeaderName::Require, "100rel"));
        let rseq_line = reliable.then(|| Header::new(HeaderName::RSeq, rseq.to_string()));
        let server = Header::from_shared(HeaderName::Server, Arc::clone(&self.profile.user_agent));
        // RFC 4028 §9: the 2xx carries the session interval and refresher agreed, and
        // `Require: timer` when the caller supports timers.
        let session = call
            .rare
            .as_ref()
            .and_then(|r| r.session.as_ref())
            .filter(|_| (200..300).contains(&code));
        let session_expires = session.map(|s| s.header(false));
        let require_timer = session
            .filter(|s| s.peer_timer)
            .map(|_| Header::from_static(HeaderName::Require, "timer"));
        let extra = contact
            .iter()
            .chain(&allow)
            .chain(&supported)
            .chain(&require)
            .chain(&rseq_line)
            .chain(&session_expires)
            .chain(&require_timer)
            .chain(warning)
            .chain(std::iter::once(&server));
        // `write_full_response` reserves what it needs.
        let mut out = Vec::new();
        let sdp_sent = sdp.is_some();
        Message::write_full_response(
            invite,
            code,
            reason,
            (code > 100).then_some(call.local_tag.as_str()),
            extra,
            sdp.as_ref().map(|b| ("application/sdp", &b[..])),
            &mut out,
        );
        let bytes = Bytes::from(out);
        self.server[at]
            .txn
            .send_response_bytes(now, code, bytes.clone())
            .ok()?;
        self.drain_server(now);
        let t1 = self.profile.timers.t1;
        let call = self.call_mut(id)?;
        // SDP in a reliable 1xx or the 2xx answers the INVITE's offer, or is our offer when
        // it had none (RFC 3262 §5, RFC 3261 §13.2.1; an unreliable 1xx's only previews it).
        // A 2xx after a complete early exchange repeats that SDP; it is no new offer.
        if sdp_sent
            && (reliable || (200..300).contains(&code))
            && let Some(d) = call.dialog.as_mut()
            && !(code >= 200 && d.offer == OpenOffer::Answered)
        {
            d.offer = d.offer.after_sdp(true);
        }
        if code >= 200 {
            // The final answer is out: the server transaction re-sends a non-2xx, the call
            // keeps a 2xx's bytes, the dialog holds what in-dialog requests need. A 1xx
            // held for a PRACK is dropped: none may follow a final response. (RFC 3262 §3
            // lets a non-2xx go before the PRACK, and a 2xx when the unacknowledged
            // reliable 1xx has no SDP; `answer` holds it otherwise.)
            call.invite = None;
            call.provisional = Provisional::None;
        }
        if reliable {
            // §3: retransmit from T1 doubling (no cap) until PRACK, give up after 64*T1.
            call.next_rseq = rseq.wrapping_add(1);
            call.prov_retransmit = Some(Box::new((bytes.clone(), now + t1, t1, now + 64 * t1)));
            self.set_flag(CALL_TIMERS, true);
        } else if code >= 200 {
            call.prov_retransmit = None;
        }
        Some(bytes)
    }

    /// A new INVITE, whose server transaction was just pushed (the last of `server`).
    fn on_new_invite(&mut self, now: Instant, mut req: Message, source: SocketAddr) {
        let local_tag = tag_from(self.rng.random());
        // The caller's URI for the event, from the dialog's reading of the From (not read
        // twice): `from_uri_text`'s text.
        let mut from = String::with_capacity(48);
        let dialog = match Dialog::from_uas_noting(&req, &local_tag, Some(&mut from)) {
            // The INVITE's offer is theirs to be answered (RFC 3261 §13.3.1).
            Ok(mut d) => {
                if has_sdp(&req) {
                    d.offer = OpenOffer::Theirs;
                }
                d
            }
            Err(_) => {
                if let Some(key) = self.server.last().map(|e| e.txn.key().clone()) {
                    self.respond_stateless(
                        now,
                        &req,
                        key,
                        source,
                        400,
                        "Bad Request (missing From tag or Contact)",
                    );
                }
                return;
            }
        };
        // RFC 3891 §3: an INVITE with Replaces is matched to our calls first.
        let replaces = match self.replaced_by(&req) {
            Ok(r) => r,
            Err((code, reason)) => {
                if let Some(key) = self.server.last().map(|e| e.txn.key().clone()) {
                    self.respond_stateless(now, &req, key, source, code, reason);
                }
                return;
            }
        };
        let session = match self.session_asked_of(now, &req) {
            Ok(session) => session,
            Err(min_se) => {
                // RFC 4028 §8.1: "the UAS MUST reject the request with a 422 ... and
                // include a Min-SE header field" with our minimum.
                if let Some(key) = self.server.last().map(|e| e.txn.key().clone()) {
                    let extra = [Header::new(HeaderName::MinSe, decimal_text(min_se))];
                    let reason = "Session Interval Too Small";
                    self.respond_with(now, &req, key, source, 422, reason, &extra, None);
                }
                return;
            }
        };
        let id = Self::id_at(self.first_call, self.calls.len());
        if let Some(e) = self.server.last_mut() {
            e.call = Some(id);
        }
        // Taken out, not cloned: `keep_only` below drops the body anyway.
        let offer = has_sdp(&req).then(|| req.take_body());
        // The call keeps of the INVITE what its responses read (RFC 3261 §8.2.6.2 copies Via,
        // From, To, Call-ID, CSeq; §12.1.1 Record-Route; RFC 3262 §3: Require, Supported),
        // copied apart: not its body (a slice of the whole datagram) nor its other headers,
        // about 1.4 KB less a ringing call. The offer goes to the event as the body it is.
        let kept = req.keep_only(|n| {
            n.is_copied_to_responses() || matches!(n, HeaderName::Require | HeaderName::Supported)
        });
        first_room(&mut self.calls);
        self.calls.push_back(Slot::Live(Box::new(Call {
            uac: false,
            state: CallState::Calling,
            invite: Some(Arc::new(kept)),
            local_tag,
            dialog: Some(dialog),
            provisional: Provisional::None,
            cancel: Cancel::No,
            ack: None,
            local_sdp: None,
            source: Some(source),
            ok_retransmit: None,
            last_rseq: None,
            forks: Vec::new(),
            next_rseq: 1,
            prov_retransmit: None,
            rare: session.map(|session| {
                Box::new(Rare {
                    session: Some(session),
                    ..Rare::default()
                })
            }),
        })));
        if let Some(old) = replaces {
            self.tie_replacing(id, old);
        }
        // §17.2.1: answer 100 Trying at once so the caller's Timer A stops.
        self.respond_invite(now, id, 100, "Trying", None);
        let policy = self.profile.srtp;
        if let (Some(o), Some(c)) = (&offer, self.call_mut(id)) {
            heard_peer(c, o, policy);
        }
        queues(&mut self.queues).events.push_back(UaEvent::Call(
            id,
            CallEvent::Incoming {
                from,
                offer,
                replaces,
            },
        ));
    }

    /// The session timer our 2xx to the INVITE `req` agrees to (RFC 4028 §9), `None` with
    /// timers off; `Err(min_se)` when the interval it asks for is below our minimum (§8.1:
    /// 422). The interval: ours, at least both minimums, at most the one asked for. The
    /// refresher: the one the request names (§9: kept); none named, the caller when it
    /// supports timers and we do not want to refresh ourselves ([`Refresher::Uas`]), else us.
    fn session_asked_of(&self, now: Instant, req: &Message) -> Result<Option<SessionTimer>, u32> {
        let Some(cfg) = self.profile.session_timer else {
            return Ok(None);
        };
        let ours_min = cfg.min_se.unwrap_or(MIN_SE_FLOOR).max(MIN_SE_FLOOR);
        let theirs_min = match req.headers.typed::<MinSe>() {
            Some(Ok(m)) => m.seconds,
            _ => 0,
        };
        let peer_timer = supports(req, "timer");
        let least = cfg.expires.max(theirs_min).max(ours_min);
        let (interval, named) = match req.headers.typed::<SessionExpires>() {
            Some(Ok(se)) if se.seconds < ours_min => return Err(ours_min),
            Some(Ok(se)) => (least.min(se.seconds), se.refresher()),
            _ => (least, None),
        };
        let uac_refreshes = match named {
            Some(r) if r.eq_ignore_ascii_case("uac") => true,
            Some(r) if r.eq_ignore_ascii_case("uas") => false,
            _ => peer_timer && cfg.refresher != Refresher::Uas,
        };
        Ok(Some(SessionTimer {
            interval,
            min_se: cfg.min_se,
            we_refresh: !uac_refreshes,
            at: None,
            started: now,
            retried_422: false,
            peer_update: allows_update(req),
            peer_timer,
        }))
    }

    fn respond_stateless(
        &mut self,
        now: Instant,
        req: &Message,
        key: TxnKey,
        source: SocketAddr,
        code: u16,
        reason: &str,
    ) {
        self.respond_with(now, req, key, source, code, reason, &[], None);
    }

    /// 481: `req` matches no call, dialog or transaction (RFC 3261 §9.2, §12.2.2).
    fn respond_no_such_call(
        &mut self,
        now: Instant,
        req: &Message,
        key: TxnKey,
        source: SocketAddr,
    ) {
        self.respond_stateless(
            now,
            req,
            key,
            source,
            481,
            "Call/Transaction Does Not Exist",
        );
    }

    /// 405 Method Not Allowed, with the methods we accept (RFC 3261 §8.2.1: "MUST include
    /// an Allow header field").
    fn respond_405(&mut self, now: Instant, req: &Message, key: TxnKey, source: SocketAddr) {
        let extra = [Header::from_static(HeaderName::Allow, ALLOW)];
        let reason = "Method Not Allowed";
        self.respond_with(now, req, key, source, 405, reason, &extra, None);
    }

    /// 488 with `warning` to an offer inside the call we cannot take: without any of our
    /// codecs (RFC 3264 §6.1), or changing the media's security as the group does not allow
    /// (RFC 3261 §14.2 and §20.43).
    #[allow(clippy::too_many_arguments)] // reason: the request, its key, and the Warning
    fn refuse_offer(
        &mut self,
        now: Instant,
        req: &Message,
        key: TxnKey,
        source: SocketAddr,
        warning: &'static str,
    ) {
        let warning = Header::from_static(HeaderName::Warning, warning);
        let extra = std::slice::from_ref(&warning);
        self.respond_with(
            now,
            req,
            key,
            source,
            488,
            "Not Acceptable Here",
            extra,
            None,
        );
    }

    /// Answers `req` through its server transaction: the one at work with `key` (an INVITE's,
    /// made before the UA core looked at it), else a new one (absorbing its retransmissions).
    /// `body`: its Content-Type and bytes, if any.
    #[allow(clippy::too_many_arguments)] // reason: the request, its key, and the answer's parts
    fn respond_with(
        &mut self,
        now: Instant,
        req: &Message,
        key: TxnKey,
        source: SocketAddr,
        code: u16,
        reason: &str,
        extra: &[Header],
        body: Option<(&str, &[u8])>,
    ) {
        self.respond_tagged(now, req, key, source, (code, reason), extra, body, None);
    }

    /// [`UserAgent::respond_with`] with the To tag `tag` for a request without one (`None`:
    /// a fresh random tag).
    #[allow(clippy::too_many_arguments)] // reason: respond_with's, and the tag
    fn respond_tagged(
        &mut self,
        now: Instant,
        req: &Message,
        key: TxnKey,
        source: SocketAddr,
        (code, reason): (u16, &str),
        extra: &[Header],
        body: Option<(&str, &[u8])>,
        tag: Option<&str>,
    ) {
        // On the stack: the tag is printed into the response and not kept.
        let mut fresh = sip_msg::HexText::default();
        let tag = match tag {
            Some(tag) => tag,
            None => sip_msg::hex16(self.rng.random(), &mut fresh),
        };
        let server = Header::from_shared(HeaderName::Server, Arc::clone(&self.profile.user_agent));
        // Printed straight into the bytes to send (the bytes `response_to` + `to_bytes` gave),
        // `extra` then Server, chained (no list per response). `write_full_response` reserves
        // what it needs.
        let extra = extra.iter().chain(std::iter::once(&server));
        let mut out = Vec::new();
        Message::write_full_response(req, code, reason, Some(tag), extra, body, &mut out);
        if let Some(e) = self.server.iter_mut().find(|e| e.txn.key() == &key) {
            // An INVITE refused before it became a call (RFC 3261 §17.2.1: the final response
            // through its own transaction, which then waits for the ACK and ends).
            let _ = e.txn.send_response_bytes(now, code, Bytes::from(out));
            self.drain_server(now);
            return;
        }
        let Ok(mut txn) =
            ServerTransaction::with_key(req, key, self.profile.reliable, self.profile.timers)
        else {
            return;
        };
        if txn.send_response_bytes(now, code, Bytes::from(out)).is_ok() {
            let method = req.method().unwrap_or(Method::Options);
            push_boxed(
                &mut self.server,
                ServerEntry {
                    txn,
                    source,
                    method,
                    call: None,
                },
            );
            self.drain_server(now);
        }
    }

    // ---- input ----

    /// Feeds one received message (already parsed; malformed input is the driver's to report).
    pub fn handle_message(&mut self, now: Instant, msg: Message, source: SocketAddr) {
        if msg.is_request() {
            self.handle_request(now, msg, source);
        } else {
            self.handle_response(now, msg);
        }
        self.refresh_call_timers();
    }

    /// Takes [`CALL_TIMERS`] again when set: false once no live call has a
    /// retransmission armed (an ACK, a PRACK, a BYE or a give-up stopped the last one).
    fn refresh_call_timers(&mut self) {
        if self.flag(CALL_TIMERS) {
            let armed = self.calls.iter().filter_map(Slot::as_ref).any(|c| {
                c.ok_retransmit.is_some()
                    || c.prov_retransmit.is_some()
                    || retries_due(c, None).next().is_some()
                    || session_at(c).is_some()
                    || transfer::transfer_at(c).is_some()
            });
            self.set_flag(CALL_TIMERS, armed);
        }
    }

    fn flag(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    fn set_flag(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    /// Whether `resp` answers a client transaction of ours, at work or waiting out its last
    /// timer (RFC 3261 §17.1.3: the top Via's branch and the CSeq method). Two phones of one
    /// driver that share a Call-ID (they call each other over one socket) are told apart by
    /// it: the Call-ID names the call, the branch the phone that sent the request.
    pub fn expects_response(&self, resp: &Message) -> bool {
        let Some((branch, method)) = client_match(resp) else {
            return false;
        };
        let h = branch_hash(branch.as_bytes());
        self.client.iter().any(|e| e.txn.key().is(&branch, &method))
            || self.finished.iter().any(|f| {
                f.branch_hash == h
                    && matches!(f.peer, Peer::Client(..))
                    && f.txn.key().is(&branch, &method)
            })
    }

    fn handle_response(&mut self, now: Instant, resp: Message) {
        let Some((branch, method)) = client_match(&resp) else {
            queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                what: "response without Via branch or CSeq",
            });
            return;
        };
        let found = self
            .client
            .iter()
            .position(|e| e.txn.key().is(&branch, &method));
        match found {
            Some(i) => {
                drop(branch);
                // Handled at once when it is the transaction's only event (nearly always):
                // no boxed event. Every other entry is drained already (each input ends
                // with a drain), so handling this one first keeps the order of a drain.
                let direct = self.client[i].txn.handle_response_direct(now, resp);
                if direct.is_some() {
                    self.drain_client_entry(now, i, direct.as_ref());
                }
            }
            None if self.answer_finished_client(now, &branch, &method, &resp) => {}
            None => {
                // A 2xx retransmission after the INVITE transaction ended (no RFC 6026
                // Accepted state left): re-ACK through the call (§13.2.2.4).
                if method == Method::Invite
                    && resp.status().is_some_and(|c| (200..300).contains(&c))
                {
                    let call_id = resp.call_id();
                    let first = self.first_call;
                    let found = self.calls.iter().enumerate().find_map(|(i, c)| {
                        let c = c.as_ref()?;
                        let d = c.dialog.as_ref()?;
                        (c.uac
                            && Some(d.id.call_id.as_str()) == call_id.as_deref()
                            && c.ack.is_some())
                        .then_some(Self::id_at(first, i))
                    });
                    if let Some(id) = found {
                        self.on_invite_response(now, id, &resp);
                        return;
                    }
                }
                queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                    what: "response matches no transaction",
                });
            }
        }
        self.drain_client(now);
    }

    fn handle_request(&mut self, now: Instant, req: Message, source: SocketAddr) {
        let Some(method) = req.method() else { return };
        // The key is read in place for the lookups; it is copied only for a transaction
        // made with it (an ACK or a retransmission only looks).
        let Some(key_ref) = ServerKeyRef::read(&req) else {
            queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                what: "request without Via branch",
            });
            return;
        };
        // Retransmissions (a CANCEL's too: its key is its own, §9.2) and ACKs of non-2xx
        // finals belong to an existing server transaction. An ACK matching an INVITE's in
        // Accepted (a caller that ACKs a 2xx with the INVITE's branch) is passed to the core
        // as well (RFC 6026 §8.7).
        if let Some(e) = self
            .server
            .iter_mut()
            .find(|e| key_ref.matches(e.txn.key()))
        {
            let to_core = method == Method::Ack && e.txn.state() == State::Accepted;
            e.txn.handle_request(now, &req);
            self.drain_server(now);
            if to_core {
                self.on_ack(now, &req, DialogIds::read(&req));
            }
            return;
        }
        match self.answer_finished_server(&req, &key_ref) {
            Some(FinishedReply::Deliver) => {
                self.on_ack(now, &req, DialogIds::read(&req));
                return;
            }
            Some(_) => return,
            None => {}
        }
        if method == Method::Cancel {
            self.on_cancel(now, &req, source, &key_ref.to_key());
            return;
        }
        // The To header is read once: its tag says whether the request is in a dialog, and
        // it is one of the three identifiers matched against the calls' dialogs. Past the
        // ACK, an unreadable To (`Err`) and one without tag (`Ok(None)`) take the same paths
        // below (an INVITE's To is read again, and refused, by `Dialog::from_uas`): a To
        // without the letters `tag` is not parsed here (the INVITE of every new call).
        let to_tag = match req.headers.get(&HeaderName::To) {
            Some(h) if method != Method::Ack && !sip_msg::typed::may_hold_tag(h.value()) => {
                Ok(None)
            }
            _ => match req.headers.view::<ToRef>() {
                Some(Ok(to)) => Ok(to.tag()),
                _ => Err(()),
            },
        };
        if method == Method::Ack {
            let ids = to_tag
                .ok()
                .and_then(|tag| DialogIds::read_with_to_tag(&req, tag));
            self.on_ack(now, &req, ids);
            return;
        }
        let key = key_ref.to_key();
        if let Ok(tag @ Some(_)) = to_tag {
            let ids = DialogIds::read_with_to_tag(&req, tag);
            self.on_in_dialog(now, &req, ids, source, key, method);
            return;
        }
        match method {
            Method::Invite => {
                match ServerTransaction::with_key(
                    &req,
                    key,
                    self.profile.reliable,
                    self.profile.timers,
                ) {
                    Ok(txn) => {
                        push_boxed(
                            &mut self.server,
                            ServerEntry {
                                txn,
                                source,
                                method: Method::Invite,
                                call: None,
                            },
                        );
                        self.on_new_invite(now, req, source);
                    }
                    Err(_) => queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                        what: "INVITE without Via branch",
                    }),
                }
            }
            Method::Options => {
                let extra = [
                    Header::from_static(HeaderName::Allow, ALLOW),
                    Header::from_static(HeaderName::Accept, "application/sdp"),
                    Header::from_static(HeaderName::Supported, self.supported()),
                ];
                self.respond_with(now, &req, key, source, 200, "OK", &extra, None);
            }
            // A NOTIFY outside any dialog is of no subscription of ours (RFC 6665 §4.1.3).
            Method::Bye | Method::Info | Method::Update | Method::Prack | Method::Notify => {
                self.respond_no_such_call(now, &req, key, source);
            }
            // RFC 3428 §7: a MESSAGE we take is answered 200 (pager mode: no dialog).
            Method::Message => {
                self.respond_stateless(now, &req, key, source, 200, "OK");
                let content_type = req
                    .headers
                    .value(&HeaderName::ContentType)
                    .map(str::to_owned);
                queues(&mut self.queues).events.push_back(UaEvent::Message {
                    content_type,
                    body: req.body().clone(),
                });
            }
            _ => {
                self.respond_405(now, &req, key, source);
            }
        }
    }

    /// The call whose dialog a request with these identifiers belongs to (the request's
    /// headers read once, compared with every call's dialog), and which of its dialogs:
    /// `None` the call's, `Some(i)` the early dialog of another fork of its INVITE
    /// (`call.forks[i]`). RFC 3261 §12.2.2: a request is in the dialog of its Call-ID, From
    /// tag and To tag; a forked INVITE has one early dialog per fork, so a request a phone
    /// sends in its own early dialog (UPDATE, INFO) is matched to that one.
    fn find_dialog_call(&self, ids: Option<&DialogIds<'_>>) -> Option<(CallId, Option<usize>)> {
        let ids = ids?;
        self.calls.iter().enumerate().find_map(|(i, c)| {
            let c = c.as_ref()?;
            let fork = match &c.dialog {
                Some(d) if ids.matches(&d.id, true) => None,
                _ => Some(
                    c.forks
                        .iter()
                        .position(|f| !f.ended && ids.matches(&f.dialog.id, true))?,
                ),
            };
            Some((Self::id_at(self.first_call, i), fork))
        })
    }

    fn on_ack(&mut self, _now: Instant, req: &Message, ids: Option<DialogIds<'_>>) {
        let Some((id, _)) = self.find_dialog_call(ids.as_ref()) else {
            queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                what: "ACK matches no dialog",
            });
            return;
        };
        let policy = self.profile.srtp;
        let Some(call) = self.call_mut(id) else {
            return;
        };
        // The ACK of our 2xx to a re-INVITE without offer: its answer to ours (§14.2); a
        // late ACK of an earlier 2xx (another CSeq) is not it.
        let seq = req.cseq().map(|c| c.seq);
        // The ACK of our 2xx to a re-INVITE, with or without offer (its CSeq number is the
        // 2xx's): the 2xx goes no more (§13.3.1.4). Read from the kept bytes only while one
        // is retransmitted in a confirmed call (a re-INVITE's 2xx: rare).
        if call.state == CallState::Confirmed
            && call.ok_retransmit.as_ref().is_some_and(|(bytes, ..)| {
                Message::parse(bytes)
                    .ok()
                    .and_then(|m| m.cseq())
                    .map(|c| c.seq)
                    == seq
            })
        {
            call.ok_retransmit = None;
        }
        if call.state == CallState::Confirmed
            && let Some(d) = call.dialog.as_mut()
            && d.offer == OpenOffer::Ours
            && d.remote_seq == seq
        {
            d.offer = OpenOffer::Answered;
            call.ok_retransmit = None;
            let sdp = sdp_of(req);
            if let Some(answer) = &sdp {
                took_answer(call, answer, policy);
            }
            queues(&mut self.queues)
                .events
                .push_back(UaEvent::Call(id, CallEvent::OfferAnswered { sdp }));
            return;
        }
        if call.state == CallState::Answering {
            call.ok_retransmit = None;
            call.state = CallState::Confirmed;
            // The ACK answers our offer in the 2xx (RFC 3261 §13.2.1); without one the
            // exchange is over all the same.
            if let Some(d) = call.dialog.as_mut() {
                d.offer = OpenOffer::Answered;
            }
            let sdp = sdp_of(req);
            queues(&mut self.queues)
                .events
                .push_back(UaEvent::Call(id, CallEvent::Answered { sdp }));
        }
    }

    fn on_cancel(&mut self, now: Instant, req: &Message, source: SocketAddr, key: &TxnKey) {
        // §9.2: the transaction a CANCEL cancels is found "assuming that the request method
        // is anything but CANCEL or ACK and applying the transaction matching procedures of
        // Section 17.2.3": its branch and sent-by, an INVITE's or any other request's.
        let cancels = |k: &TxnKey| {
            !matches!(k.method, Method::Cancel | Method::Ack)
                && k.branch_bytes() == key.branch_bytes()
                && k.sent_by_bytes() == key.sent_by_bytes()
        };
        // The transaction, at work or finished (an ended call keeps no key: the transaction
        // is what the CANCEL matches).
        let at_work = self.server.iter().find(|e| cancels(e.txn.key()));
        let invite = at_work.filter(|e| e.txn.key().method == Method::Invite);
        let proceeding = invite.is_some_and(|e| e.txn.state() == State::Proceeding);
        let id = invite.and_then(|e| e.call);
        let h = branch_hash(key.branch_bytes());
        let known = at_work.is_some()
            || self.finished.iter().any(|f| {
                f.branch_hash == h && matches!(f.peer, Peer::Server(_)) && cancels(f.txn.key())
            });
        if !known {
            self.respond_no_such_call(now, req, key.clone(), source);
            return;
        }
        // §9.2: "the To tag of the response to the CANCEL and the To tag in the response to
        // the original request SHOULD be the same": the call's tag while its INVITE's
        // transaction is at work (a finished one's call is not looked for: a fresh tag).
        let tag = id
            .and_then(|id| self.call_ref(id))
            .map(|c| c.local_tag.clone());
        self.respond_tagged(
            now,
            req,
            key.clone(),
            source,
            (200, "OK"),
            &[],
            None,
            tag.as_deref(),
        );
        if let (true, Some(id)) = (proceeding, id) {
            self.respond_invite(now, id, 487, "Request Terminated", None);
            self.call_event(
                id,
                CallEvent::Failed {
                    code: 487,
                    reason: "cancelled by the caller".into(),
                },
            );
        }
    }

    fn on_in_dialog(
        &mut self,
        now: Instant,
        req: &Message,
        ids: Option<DialogIds<'_>>,
        source: SocketAddr,
        key: TxnKey,
        method: Method,
    ) {
        let Some((id, fork)) = self.find_dialog_call(ids.as_ref()) else {
            self.respond_no_such_call(now, req, key, source);
            return;
        };
        let seq = req.cseq().map_or(0, |c| c.seq);
        // Each dialog has its own CSeq numbers (§12.2.2), an early fork's too.
        let in_order = self
            .call_mut(id)
            .and_then(|c| dialog_of_mut(c, fork))
            .is_some_and(|d| d.accept_remote_cseq(seq));
        if !in_order {
            self.respond_stateless(
                now,
                req,
                key,
                source,
                500,
                "Server Internal Error (CSeq out of order)",
            );
            return;
        }
        if matches!(method, Method::Invite | Method::Update)
            && let Some((code, reason)) = self.crossing_refusal(
                id,
                fork,
                &method,
                has_sdp(req),
                ids.as_ref().and_then(|i| i.from_tag.as_deref()),
            )
        {
            // §14.2: the 500 for an INVITE that crossed the first one carries a Retry-After
            // of a random 0–10 s.
            let retry_after = (code == 500).then(|| {
                Header::new(
                    HeaderName::RetryAfter,
                    decimal_text(self.rng.random_range(0..=10)),
                )
            });
            let extra = retry_after.as_slice();
            self.respond_with(now, req, key, source, code, reason, extra, None);
            return;
        }
        // RFC 3264 §6.1: the answer's formats come "from amongst those listed in the offer":
        // an offer without any of our codecs cannot be answered: 488, and "the session ...
        // remains unchanged" (RFC 3261 §14.2).
        let offer = sdp_of(req);
        let configured = self.profile.codecs.as_ref();
        let policy = self.profile.srtp;
        let answer = match (&method, &offer) {
            (Method::Invite | Method::Update, Some(o)) => self
                .call_ref(id)
                .and_then(|c| answer_in_call(c, configured, policy, o)),
            _ => None,
        };
        if let (Some(InCallAnswer::Refused(warning)), Some(offer)) = (&answer, &offer) {
            let warning = *warning;
            self.refuse_offer(now, req, key, source, warning);
            self.call_event(
                id,
                CallEvent::OfferRefused {
                    method,
                    sdp: offer.clone(),
                    warning,
                },
            );
            return;
        }
        if matches!(method, Method::Invite | Method::Update)
            && let Some(min_se) = self.refresh_too_small(id, req)
        {
            let extra = [Header::new(HeaderName::MinSe, decimal_text(min_se))];
            let reason = "Session Interval Too Small";
            self.respond_with(now, req, key, source, 422, reason, &extra, None);
            return;
        }
        match method {
            // Our INVITE has no 2xx yet: the dialog is an early one.
            Method::Bye
                if self.call_ref(id).is_some_and(|c| {
                    c.uac && c.ack.is_none() && c.state != CallState::Answering
                }) =>
            {
                self.respond_stateless(now, req, key, source, 200, "OK");
                self.on_early_bye(now, id, fork);
            }
            Method::Bye
                if self.call_ref(id).is_some_and(|c| {
                    !c.uac && matches!(c.state, CallState::Calling | CallState::Early)
                }) =>
            {
                // RFC 3261 §15: the caller may end an early dialog with BYE; §15.1.2: "The UAS
                // MUST still respond to any pending requests received for that dialog. It is
                // RECOMMENDED that a 487 (Request Terminated) response be generated".
                self.respond_stateless(now, req, key, source, 200, "OK");
                self.respond_invite(now, id, 487, "Request Terminated", None);
                self.call_event(
                    id,
                    CallEvent::Failed {
                        code: 487,
                        reason: "the caller ended the early dialog with BYE".into(),
                    },
                );
            }
            Method::Bye => {
                self.respond_stateless(now, req, key, source, 200, "OK");
                // Every ACK was lost but the caller hangs up: its BYE proves our 2xx arrived,
                // so the call was answered (counted as such) before it ends.
                self.confirmed_without_ack(now, id);
                if let Some(c) = self.call_mut(id) {
                    c.ok_retransmit = None;
                }
                self.call_event(
                    id,
                    CallEvent::Ended {
                        by_remote: true,
                        code: 0,
                    },
                );
            }
            Method::Invite | Method::Update => {
                if method == Method::Invite {
                    // RFC 3261 §14.1: a UAC "MUST NOT initiate a new INVITE transaction
                    // within a dialog while another INVITE transaction is in progress": the
                    // caller's re-INVITE before its ACK proves our 2xx ended its INVITE
                    // transaction (the ACK is late or lost).
                    self.confirmed_without_ack(now, id);
                }
                if let Some(d) = self.call_mut(id).and_then(|c| dialog_of_mut(c, fork)) {
                    d.refresh_target(req);
                }
                // Our answer to an offer (`answer_in_call`: a codec of the offer's, the
                // direction mirroring the offer's), kept as our description. A re-INVITE
                // without an offer gets ours in the 2xx, and the ACK answers it (RFC 3261
                // §14.2: "the UAS ... MUST generate an offer in the 2xx"; §13.2.2.4).
                let reoffer = offer.is_none() && method == Method::Invite;
                // A counted reference: the call is borrowed mutably below.
                let configured = reoffer.then(|| self.profile.codecs.clone()).flatten();
                let sdp = self.call_mut(id).and_then(|c| match answer {
                    Some(InCallAnswer::Answer(a, codec)) => {
                        answered_in_call(c, a.clone(), codec);
                        Some(a)
                    }
                    _ if reoffer => {
                        let ours = c.local_sdp.as_ref()?;
                        let o =
                            crate::sdpdir::offer_again(ours, codec_list(c, configured.as_ref()));
                        let using = codec_in_use(c);
                        now_describing(c, o.clone());
                        now_using(c, using);
                        if let Some(d) = dialog_of_mut(c, fork) {
                            d.offer = OpenOffer::Ours;
                        }
                        Some(o)
                    }
                    _ => None,
                });
                let contact = self.contact_text_at(self.proxied(id));
                let Ok(mut txn) = ServerTransaction::with_key(
                    req,
                    key,
                    self.profile.reliable,
                    self.profile.timers,
                ) else {
                    return;
                };
                let local_tag = self
                    .call_ref(id)
                    .map(|c| c.local_tag.clone())
                    .unwrap_or_default();
                let mut resp = Message::response_to(req, 200, "OK", Some(&local_tag));
                resp.headers.push(Header::new(HeaderName::Contact, contact));
                let refreshed = self.refreshed_by_peer(now, id, req);
                if refreshed.is_some() {
                    for line in self
                        .session_lines(id, false)
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        resp.headers.push(line);
                    }
                }
                if let Some(sdp) = sdp {
                    resp.set_body("application/sdp", sdp);
                }
                if method == Method::Invite {
                    // §13.3.1.4 (§14.2: as for an INVITE): our 2xx goes again until the ACK
                    // (which carries the answer when the 2xx carries our offer), whether or
                    // not it answers an offer: the server transaction, in Accepted, absorbs
                    // the re-INVITE's retransmissions and sends no 2xx itself (RFC 6026
                    // §8.7), so a 2xx lost once is only sent again from here.
                    // On every transport, as `answer` does.
                    let t1 = self.profile.timers.t1;
                    let bytes = Bytes::from(resp.to_bytes());
                    if let Some(c) = self.call_mut(id) {
                        c.source = Some(source);
                        c.ok_retransmit = Some((bytes, now + t1, t1, now + 64 * t1));
                    }
                    self.set_flag(CALL_TIMERS, true);
                }
                if txn.send_response(now, &resp).is_ok() {
                    push_boxed(
                        &mut self.server,
                        ServerEntry {
                            txn,
                            source,
                            method: method.clone(),
                            call: None,
                        },
                    );
                    self.drain_server(now);
                }
                queues(&mut self.queues)
                    .events
                    .push_back(UaEvent::Call(id, CallEvent::Reinvited { sdp: offer }));
                if let Some((interval, we_refresh)) = refreshed {
                    queues(&mut self.queues).events.push_back(UaEvent::Call(
                        id,
                        CallEvent::SessionRefreshed {
                            by_us: false,
                            interval,
                            we_refresh,
                        },
                    ));
                }
            }
            Method::Prack => {
                // RFC 3262 §3: a PRACK matching the outstanding reliable provisional stops
                // its retransmission; one matching nothing is answered 481.
                let rack = req.headers.typed::<RAck>().and_then(Result::ok);
                let offer = sdp_of(req);
                // A counted reference: the call is borrowed mutably below.
                let configured = offer.as_ref().and_then(|_| self.profile.codecs.clone());
                let policy = self.profile.srtp;
                let verdict = self.call_mut(id).map_or(PrackSdp::NoMatch, |c| {
                    // §3 (RAck, §7.2): its RSeq, CSeq number and method are those of the
                    // outstanding provisional (the INVITE's CSeq: kept until the final).
                    let invite_seq = c.invite.as_deref().and_then(Message::cseq).map(|s| s.seq);
                    let outstanding = c.prov_retransmit.is_some()
                        && rack.as_ref().is_some_and(|r| {
                            r.rseq.wrapping_add(1) == c.next_rseq
                                && Some(r.cseq) == invite_seq
                                && r.method == Method::Invite
                        });
                    if !outstanding {
                        return PrackSdp::NoMatch;
                    }
                    let verdict = match (&offer, c.dialog.as_mut()) {
                        (Some(offer), Some(d)) => match d.offer {
                            // RFC 3262 §5: a PRACK with SDP answers our offer in the 1xx.
                            OpenOffer::Ours => {
                                d.offer = OpenOffer::Answered;
                                PrackSdp::Taken(None)
                            }
                            // §5: "If the UAS receives a PRACK with an offer, it MUST place
                            // the answer in the 2xx to the PRACK": our description, its
                            // direction mirrored (RFC 3264 §6.1), as for a re-INVITE.
                            OpenOffer::Answered if c.local_sdp.is_some() => {
                                match answer_in_call(c, configured.as_ref(), policy, offer) {
                                    Some(InCallAnswer::Answer(a, codec)) => {
                                        answered_in_call(c, a.clone(), codec);
                                        PrackSdp::Taken(Some(a))
                                    }
                                    Some(InCallAnswer::Refused(w)) => PrackSdp::NoCodec(w),
                                    None => PrackSdp::NoCodec(crate::sdpdir::NO_CODEC),
                                }
                            }
                            // An offer while we owe the answer to the INVITE's (RFC 3264 §4:
                            // one at a time), or with no description of ours to answer with.
                            _ => PrackSdp::Refused,
                        },
                        _ => PrackSdp::Taken(None),
                    };
                    if matches!(verdict, PrackSdp::Taken(_)) {
                        c.prov_retransmit = None;
                    }
                    verdict
                });
                match verdict {
                    PrackSdp::Taken(answer) => {
                        let body = answer.as_ref().map(|a| ("application/sdp", &a[..]));
                        self.respond_with(now, req, key, source, 200, "OK", &[], body);
                        if let Some(r) = rack {
                            queues(&mut self.queues)
                                .events
                                .push_back(UaEvent::Call(id, CallEvent::Pracked { rseq: r.rseq }));
                        }
                        if answer.is_some() {
                            queues(&mut self.queues)
                                .events
                                .push_back(UaEvent::Call(id, CallEvent::Reinvited { sdp: offer }));
                        }
                        // The 2xx or the next reliable 1xx held for this PRACK (RFC 3262
                        // §3) goes now, after its 200.
                        let held = self
                            .call_mut(id)
                            .map(|c| (std::mem::take(&mut c.provisional), c.local_sdp.clone()));
                        match held {
                            Some((Provisional::HeldAnswer, sdp)) => self.answer(now, id, sdp),
                            Some((Provisional::HeldRinging, _)) => self.ring(now, id),
                            Some((Provisional::HeldProgress, Some(sdp))) => {
                                self.progress(now, id, sdp);
                            }
                            // Only a UAS takes a PRACK, and it holds nothing else.
                            _ => {}
                        }
                    }
                    PrackSdp::Refused => {
                        // As RFC 3311 §5.2 refuses an UPDATE offer then: 500 with a random
                        // 0–10 s Retry-After. The reliable 1xx stays unacknowledged
                        // (retransmitted), so the caller may PRACK it again without an offer.
                        let extra = [Header::new(
                            HeaderName::RetryAfter,
                            decimal_text(self.rng.random_range(0..=10)),
                        )];
                        self.respond_with(
                            now,
                            req,
                            key,
                            source,
                            500,
                            "Server Internal Error",
                            &extra,
                            None,
                        );
                        queues(&mut self.queues).events.push_back(UaEvent::Ignored {
                            what: "PRACK with an offer we cannot answer (RFC 3264 §4: our answer \
                                   to the INVITE's offer is still owed): refused with 500",
                        });
                    }
                    PrackSdp::NoCodec(warning) => {
                        // As a re-INVITE's (RFC 3264 §6.1); the reliable 1xx stays
                        // unacknowledged, as above.
                        self.refuse_offer(now, req, key, source, warning);
                        if let Some(offer) = offer {
                            self.call_event(
                                id,
                                CallEvent::OfferRefused {
                                    method: Method::Prack,
                                    sdp: offer,
                                    warning,
                                },
                            );
                        }
                    }
                    PrackSdp::NoMatch => self.respond_no_such_call(now, req, key, source),
                }
            }
            Method::Info | Method::Message => {
                self.respond_stateless(now, req, key, source, 200, "OK");
                let content_type = req
                    .headers
                    .value(&HeaderName::ContentType)
                    .map(str::to_owned);
                let body = req.body().clone();
                let event = if method == Method::Info {
                    CallEvent::Info { content_type, body }
                } else {
                    CallEvent::Message { content_type, body }
                };
                queues(&mut self.queues)
                    .events
                    .push_back(UaEvent::Call(id, event));
            }
            Method::Options => {
                let extra = [Header::from_static(HeaderName::Allow, ALLOW)];
                self.respond_with(now, req, key, source, 200, "OK", &extra, None);
            }
            Method::Notify => self.on_notify(now, req, id, key, source),
            Method::Refer => self.on_refer(now, req, id, key, source),
            _ => {
                self.respond_405(now, req, key, source);
            }
        }
    }

    /// A request of the caller that proves our 2xx arrived (its BYE, its re-INVITE) while we
    /// wait for the ACK: the call is confirmed (reported answered, the 2xx no longer
    /// retransmitted), as the ACK would have done (RFC 3261 §13.3.1.4). A caller still to
    /// answer the offer of the callee's 2xx (late offer) ACKs it with every stream rejected.
    fn confirmed_without_ack(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.call_mut(id) else {
            return;
        };
        if c.uac {
            if matches!(owed_of(c).map(|o| &o.at), Some(OwedIn::Ack { .. })) {
                self.answer_owed_offer_rejecting(now, id);
            }
        } else if c.state == CallState::Answering {
            c.state = CallState::Confirmed;
            c.ok_retransmit = None;
            queues(&mut self.queues)
                .events
                .push_back(UaEvent::Call(id, CallEvent::Answered { sdp: None }));
        }
    }

    /// A BYE in an early dialog of our INVITE (`fork` as in [`UserAgent::find_dialog_call`]),
    /// answered 200 already. RFC 3261 §15: a callee MUST NOT send one; when it does, the BYE
    /// matches an existing dialog, so §15.1.2 and §12.2.2 apply: that dialog (the fork's early
    /// session) ends, whichever fork it is, and its later requests get 481. It is no final
    /// response to the INVITE: the call goes on with the other forks' early dialogs, or with
    /// a fork that has not rung yet. When it ended the last early dialog, no phone is known
    /// to ring any more while the INVITE stays pending: we CANCEL it (§9.1), and the outcome
    /// (its 487, or the 2xx that crosses the CANCEL, then ended with BYE) names why. The
    /// violation is reported at once either way.
    fn on_early_bye(&mut self, now: Instant, id: CallId, fork: Option<usize>) {
        queues(&mut self.queues).events.push_back(UaEvent::Ignored {
            what: "BYE in an early dialog (RFC 3261 §15: a callee must not send one): \
                   answered 200, that early dialog ended",
        });
        let Some(call) = self.call_mut(id) else {
            return;
        };
        match fork {
            Some(i) => {
                if let Some(f) = call.forks.get_mut(i) {
                    f.ended = true;
                }
            }
            // The first fork's dialog: kept as ended among the others, and the next fork
            // still going (if any) takes its place, the one `update` and `info` use.
            None => {
                let next = call.forks.iter().position(|f| !f.ended);
                let next = next.map(|i| call.forks.remove(i));
                let (dialog, last_rseq) = match next {
                    Some(f) => (Some(f.dialog), f.last_rseq),
                    None => (None, None),
                };
                let ended = std::mem::replace(&mut call.dialog, dialog);
                let last_rseq = std::mem::replace(&mut call.last_rseq, last_rseq);
                if let Some(dialog) = ended {
                    call.forks.push(EarlyFork {
                        dialog,
                        last_rseq,
                        ended: true,
                    });
                }
            }
        }
        if call.dialog.is_none() && call.state < CallState::Terminating {
            call.cancel = Cancel::AfterEarlyBye;
            self.send_cancel(now, id);
        }
    }

    /// The refusal of a re-INVITE or UPDATE (`offer`: it carries one) of call `id` that
    /// crosses a request of ours, if it does (the peer tries again later):
    /// - our BYE (or CANCEL) is out: the session is over (§15.1.1), nothing modifies it: 481;
    /// - an INVITE while the call's first INVITE is in progress (§14.2): 491 when it is ours
    ///   (we are its UAC), 500 (with Retry-After) when we have not answered it yet;
    /// - an INVITE, or an UPDATE with an offer, while our re-INVITE or our UPDATE with an
    ///   offer waits for its final response in the same dialog (`remote_tag`: the request's
    ///   From tag; an early fork's dialog is not another's): 491 (RFC 3261 §14.2; RFC 3311
    ///   §5.2: one offer at a time each way). An UPDATE without offer (a session refresh)
    ///   crosses nothing;
    /// - an INVITE, or an UPDATE with an offer, while an offer of the INVITE transaction is
    ///   open in its dialog (`fork`, [`OpenOffer`]): 491 when it is ours (RFC 3311 §5.2: "the
    ///   UAS has generated an offer (in an UPDATE, PRACK or INVITE) to which it has not yet
    ///   received an answer"), 500 with Retry-After when it is theirs (§5.2: "has received an
    ///   offer ... to which it has not yet generated an answer").
    fn crossing_refusal(
        &self,
        id: CallId,
        fork: Option<usize>,
        method: &Method,
        offer: bool,
        remote_tag: Option<&str>,
    ) -> Option<(u16, &'static str)> {
        let call = self.call_ref(id)?;
        let invite = *method == Method::Invite;
        if call.state == CallState::Terminating {
            return Some((481, "Call/Transaction Does Not Exist"));
        }
        if invite && matches!(call.state, CallState::Calling | CallState::Early) {
            return Some(if call.uac {
                (491, "Request Pending")
            } else {
                (500, "Server Internal Error")
            });
        }
        if !invite && !offer {
            return None;
        }
        let open = match fork {
            None => call.dialog.as_ref(),
            Some(i) => call.forks.get(i).map(|f| &f.dialog),
        };
        match open.map(|d| d.offer) {
            Some(OpenOffer::Ours) => return Some((491, "Request Pending")),
            Some(OpenOffer::Theirs) => return Some((500, "Server Internal Error")),
            _ => {}
        }
        self.offer_in_flight(id, remote_tag)
            .then_some((491, "Request Pending"))
    }

    /// Our re-INVITE, or our UPDATE with an offer, waits for its final response in call
    /// `id`'s dialog whose remote tag is `remote_tag` (RFC 3261 §14.1: one INVITE transaction
    /// at a time; RFC 3264 §4: one offer at a time).
    fn offer_in_flight(&self, id: CallId, remote_tag: Option<&str>) -> bool {
        self.client.iter().any(|e| match e.owner {
            Owner::InDialog(c, m) if c == id => {
                matches!(
                    e.txn.state(),
                    State::Calling | State::Trying | State::Proceeding
                ) && (m == InDialogMethod::Reinvite
                    || (m == InDialogMethod::Update && !e.txn.request().body().is_empty()))
                    && e.txn
                        .request()
                        .headers
                        .view::<ToRef>()
                        .and_then(Result::ok)
                        .is_some_and(|t| t.tag().as_deref() == remote_tag)
            }
            _ => false,
        })
    }

    /// Whether a new offer may go in the call's dialog now (RFC 3264 §4: "it MUST NOT
    /// generate a new offer" while one of its offers waits for the answer, nor while it owes
    /// one): no offer of the INVITE transaction is open in that dialog, and no re-INVITE or
    /// UPDATE offer of ours waits for its final response there. [`UserAgent::reinvite`] and
    /// [`UserAgent::update`] with an offer send nothing (false) otherwise.
    pub fn can_offer(&self, id: CallId) -> bool {
        self.call_ref(id)
            .and_then(|c| c.dialog.as_ref())
            .is_some_and(|d| {
                !d.offer.is_open() && !self.offer_in_flight(id, Some(d.id.remote_tag.as_str()))
            })
    }

    /// Our re-INVITE or UPDATE (`kind`, sent in the dialog with To tag `tag`, its offer
    /// `body`) was refused with 491: sent again after RFC 3261 §14.1's timer (RFC 3311 §5.1
    /// for UPDATE): a random 2.1–4 s when we own the dialog's Call-ID (we sent the INVITE
    /// that made it), 0–2 s when not, in units of 10 ms. False when it is not (tried
    /// [`MAX_GLARE_TRIES`] times): the 491 is its outcome then. Each dialog keeps its own.
    fn retry_after_glare(
        &mut self,
        now: Instant,
        id: CallId,
        kind: InDialogMethod,
        tag: String,
        body: Option<Bytes>,
    ) -> bool {
        let Some(uac) = self.call_ref(id).map(|c| c.uac) else {
            return false;
        };
        let units: u64 = if uac {
            self.rng.random_range(210..=400)
        } else {
            self.rng.random_range(0..=200)
        };
        let Some(call) = self.call_mut(id) else {
            return false;
        };
        // The same request again (in flight after an earlier 491) counts on; any other one
        // of that method in that dialog is replaced.
        let same = |g: &GlareRetry| g.kind == kind && g.tag == tag;
        let tries = call
            .rare
            .as_ref()
            .and_then(|g| g.retries.iter().find(|g| same(g) && g.at.is_none()))
            .map_or(1, |g| g.tries + 1);
        drop_retries(call, same);
        if tries > MAX_GLARE_TRIES {
            return false;
        }
        call.rare
            .get_or_insert_with(Box::default)
            .retries
            .push(GlareRetry {
                at: Some(now + Duration::from_millis(10 * units)),
                kind,
                tag,
                body,
                tries,
            });
        self.set_flag(CALL_TIMERS, true);
        true
    }

    /// Sends again the re-INVITEs and UPDATEs refused with 491 whose time has come
    /// ([`UserAgent::retry_after_glare`]), in the dialog they were sent in. One whose dialog
    /// is gone (its early fork's, once another answered) gets its 491 reported; one of a
    /// call that is ending is dropped.
    fn send_glare_retries(&mut self, now: Instant) {
        let first = self.first_call;
        // (call, method, dialog) of each retry due: a call may have several, one per
        // method and dialog.
        let due: Vec<(CallId, InDialogMethod, String)> = self
            .calls
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.as_ref()
                    .into_iter()
                    .flat_map(|c| retries_due(c, Some(now)))
                    .map(move |g| (Self::id_at(first, i), g.kind, g.tag.clone()))
            })
            .collect();
        for (id, kind, tag) in due {
            let Some(call) = self.call_mut(id) else {
                continue;
            };
            let Some(g) = call.rare.as_mut().and_then(|g| {
                g.retries
                    .iter_mut()
                    .find(|g| g.kind == kind && g.tag == tag)
            }) else {
                continue;
            };
            g.at = None;
            let mut body = g.body.clone();
            // RFC 3264 §8: our description may have moved on meanwhile (we answered the
            // peer's offer that crossed ours): the offer goes one version above it, and a
            // re-INVITE's is our description from then on, as when it first went.
            if let (Some(b), Some(last)) = (body.as_mut(), call.local_sdp.as_ref()) {
                *b = crate::sdpdir::offer_after(last, b);
                if kind == InDialogMethod::Reinvite {
                    call.local_sdp = Some(b.clone());
                }
            }
            let fork = fork_of(call, &tag);
            let live = match kind {
                InDialogMethod::Reinvite => call.state == CallState::Confirmed,
                _ => matches!(call.state, CallState::Early | CallState::Confirmed),
            };
            match (fork, live) {
                (Some(fork), true) => {
                    let body = body.map(|b| ("application/sdp", b));
                    self.send_in_dialog_of(now, id, fork, kind, body, None);
                }
                _ if call.state >= CallState::Terminating => {
                    drop_retries(call, |g| g.kind == kind && g.tag == tag)
                }
                _ => {
                    drop_retries(call, |g| g.kind == kind && g.tag == tag);
                    queues(&mut self.queues).events.push_back(UaEvent::Call(
                        id,
                        CallEvent::Modified {
                            method: kind.method(),
                            code: 491,
                            sdp: None,
                        },
                    ));
                }
            }
        }
    }

    /// The flow to the server broke (connection refused or reset, ICMP unreachable): every
    /// pending client transaction ends as a timeout would (RFC 3261 §8.1.3.1).
    pub fn handle_transport_error(&mut self, now: Instant) {
        for e in &mut self.client {
            e.txn.handle_transport_error();
        }
        self.set_flag(TRANSPORT_FAILED, true);
        self.drain_client(now);
        self.set_flag(TRANSPORT_FAILED, false);
    }

    /// Fires everything due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Finished transactions end at their last timer (reported as the whole transaction
        // reported it: that timer fired, for the transaction's method).
        // Counted from the front (the list is in deadline order): only the due records and
        // the next one are looked at. A binary search touched records in the middle of the
        // list, cold memory in a fleet of phones, for the usual answer of one or none.
        let due = self
            .finished
            .iter()
            .take_while(|f| f.txn.deadline() <= now)
            .count();
        if due > 0 {
            let q = queues(&mut self.queues);
            // Read in place and dropped in place (draining by value copied each record out).
            for f in self.finished.range(..due) {
                let (timer, method) = (f.txn.timer(), f.txn.key().method.clone());
                q.events.push_back(UaEvent::TimerFired { timer, method });
            }
            self.finished.drain(..due);
            if self.finished.is_empty() {
                // An idle phone keeps no room for them.
                self.finished = VecDeque::new();
            }
        }
        for e in &mut self.client {
            if e.txn.poll_timeout().is_some_and(|t| t <= now) {
                e.txn.handle_timeout(now);
            }
        }
        self.drain_client(now);
        for e in &mut self.server {
            if e.txn.poll_timeout().is_some_and(|t| t <= now) {
                e.txn.handle_timeout(now);
            }
        }
        self.drain_server(now);
        if self.reg_refresh_at.is_some_and(|t| t <= now) {
            self.reg_refresh_at = None;
            self.set_flag(REG_REFRESH, true);
            self.set_flag(REG_423_RETRIED, false);
            let expires = self.reg_expires;
            self.send_register(now, expires, Owner::Register);
        }
        // UAS reliable provisional retransmissions (RFC 3262 §3): T1 doubling until PRACK.
        let first = self.first_call;
        let mut unpracked = Vec::new();
        for (i, slot) in self.calls.iter_mut().enumerate() {
            let Some(call) = slot.as_mut() else { continue };
            let Some((bytes, next, interval, deadline)) = call.prov_retransmit.as_deref_mut()
            else {
                continue;
            };
            if *deadline <= now {
                call.prov_retransmit = None;
                unpracked.push(Self::id_at(first, i));
                continue;
            }
            if *next <= now {
                if let Some(src) = call.source {
                    push_out(
                        &mut self.queues,
                        Outgoing {
                            destination: Destination::Source(src),
                            bytes: bytes.clone(),
                            retransmission: true,
                        },
                    );
                    queues(&mut self.queues)
                        .events
                        .push_back(UaEvent::Retransmitted {
                            method: Method::Invite,
                            count: 0,
                        });
                }
                *interval *= 2;
                *next = now + *interval;
            }
        }
        for id in unpracked {
            // §3: "If a reliable provisional response is retransmitted for 64*T1 seconds
            // without reception of a corresponding PRACK, the UAS SHOULD reject the original
            // request with a 5xx response" (else the caller waits on, for a final response
            // nothing will send).
            if self
                .respond_invite(now, id, 500, "Server Internal Error", None)
                .is_some()
            {
                self.call_event(
                    id,
                    CallEvent::Failed {
                        code: 500,
                        reason: "no PRACK for our reliable provisional within 64×T1 \
                                 (RFC 3262 §3): rejected with 500"
                            .into(),
                    },
                );
            }
        }
        // Our re-INVITEs and UPDATEs refused with 491, due again (§14.1).
        if self.flag(CALL_TIMERS) {
            self.send_glare_retries(now);
            self.fire_session_timers(now);
            self.fire_transfer_timers(now);
        }
        // UAS 2xx retransmissions (§13.3.1.4).
        let t2 = self.profile.timers.t2;
        let mut give_up = Vec::new();
        let first = self.first_call;
        for (i, slot) in self.calls.iter_mut().enumerate() {
            let Some(call) = slot.as_mut() else { continue };
            let Some((bytes, next, interval, deadline)) = call.ok_retransmit.as_mut() else {
                continue;
            };
            if *deadline <= now {
                give_up.push(Self::id_at(first, i));
                continue;
            }
            if *next <= now {
                if let Some(src) = call.source {
                    push_out(
                        &mut self.queues,
                        Outgoing {
                            destination: Destination::Source(src),
                            bytes: bytes.clone(),
                            retransmission: true,
                        },
                    );
                    queues(&mut self.queues)
                        .events
                        .push_back(UaEvent::Retransmitted {
                            method: Method::Invite,
                            count: 0,
                        });
                }
                *interval = (*interval * 2).min(t2);
                *next = now + *interval;
            }
        }
        for id in give_up {
            // §13.3.1.4: no ACK within 64*T1: confirm the dialog and end it with BYE.
            if let Some(c) = self.call_mut(id) {
                c.ok_retransmit = None;
                c.state = CallState::Confirmed;
            }
            self.send_bye(now, id);
            self.call_event(
                id,
                CallEvent::Failed {
                    code: 408,
                    reason: "no ACK for our 2xx".into(),
                },
            );
        }
        self.refresh_call_timers();
    }

    fn drain_client(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.client.len() {
            // An entry with nothing to drain is finished with, passed over (still at work)
            // or kept in its compact form (waiting out Timer D, K or M). An entry that had
            // something is visited again once drained (`i` stays), to take that path.
            let e = &mut self.client[i];
            if e.txn.is_quiet() {
                match e.txn.state() {
                    State::Terminated => {
                        self.client.swap_remove(i);
                    }
                    State::Completed | State::Accepted => {
                        // Taken out of the entry in place (the entry is not moved).
                        let Some(txn) = e.txn.take_finished() else {
                            // Not reached (a quiet Completed or Accepted transaction has its
                            // last timer set); kept whole.
                            i += 1;
                            continue;
                        };
                        // Only an INVITE in Completed (its ACK) and an INVITE or re-INVITE
                        // in Accepted (its 2xx's ACK) send again.
                        let ack_to = match (txn.timer(), e.ack.take()) {
                            (Timer::D, _) => AckTo::new(std::mem::replace(
                                &mut e.destination,
                                Destination::Registrar,
                            )),
                            (Timer::M, Some(ack)) => AckTo::Again(ack),
                            _ => AckTo::Nowhere,
                        };
                        let owner = e.owner;
                        self.client.swap_remove(i);
                        push_finished(&mut self.finished, txn, Peer::Client(owner, ack_to));
                    }
                    _ => i += 1,
                }
                continue;
            }
            self.drain_client_entry(now, i, None);
        }
        if self.client.is_empty() && self.client.capacity() > 0 {
            self.client = Vec::new();
        }
    }

    /// Drains the client entry at `i`: its transmissions, then its events, then `extra` (a
    /// response its transaction handed straight back, see
    /// [`ClientTransaction::handle_response_direct`], which comes after the events already
    /// queued, as it would have been queued). The entry stays at `i` (visited again by
    /// [`UserAgent::drain_client`], quiet, to be finished with or kept).
    fn drain_client_entry(&mut self, now: Instant, i: usize, extra: Option<&TxnEvent>) {
        {
            // The events are taken out whole (nearly always one, boxed, or none and the
            // response in `extra`) and handled by reference: a response (300 bytes) is not
            // moved again.
            let events = {
                let e = &mut self.client[i];
                while let Some(t) = e.txn.poll_transmit() {
                    push_out(
                        &mut self.queues,
                        Outgoing {
                            destination: e.destination.clone(),
                            bytes: t.bytes,
                            retransmission: t.retransmission,
                        },
                    );
                }
                // A final response handled: an INVITE's transaction gives back its share
                // of the call's INVITE (its ACK is built and kept), so a retry with
                // credentials changes the call's INVITE in place (`reinvite_with_auth`).
                if matches!(e.owner, Owner::Invite(_)) {
                    e.txn.shed();
                }
                e.txn.take_events()
            };

            // The key's method is the request's (its CSeq's, which our requests write from it).
            let (owner, method) = (
                self.client[i].owner,
                self.client[i].txn.key().method.clone(),
            );
            // A REGISTER's response handler reads the request (to answer a challenge): the
            // entry is taken out of the list meanwhile (handlers may start transactions), and
            // put back at its place, to be visited again with nothing left to drain.
            let all = || events.iter().map(|ev| &**ev).chain(extra);
            // So does a request inside a dialog challenged with 401/407, to be sent again
            // with credentials (`in_dialog_auth`).
            let request_needed = all().any(|e| match e {
                TxnEvent::Response(r) => {
                    matches!(owner, Owner::Register | Owner::Unregister)
                        || in_dialog_auth::is_retried_challenge(owner, r)
                }
                _ => false,
            });
            if request_needed {
                let mut entry = self.client.remove(i);
                // With its final response the transaction no longer needs its request: the
                // handler takes it (a retry with credentials is that request changed, not a
                // copy of it).
                let mut request = entry.txn.take_request();
                for ev in all() {
                    let req = match (&ev, request.take()) {
                        (TxnEvent::Response(r), Some(m)) if r.status().unwrap_or(0) >= 200 => {
                            Cow::Owned(m)
                        }
                        (_, taken) => {
                            request = taken;
                            match &request {
                                Some(m) => Cow::Borrowed(m),
                                None => Cow::Borrowed(entry.txn.request()),
                            }
                        }
                    };
                    self.on_client_event(now, owner, &method, Some(req), ev);
                }
                let at = i.min(self.client.len());
                self.client.insert(at, entry);
                return;
            }
            // Handlers may start transactions and drain them (which may finish this one and
            // free its box, whose address a new entry may then get): after the first event
            // the entry is found again by its owner and its branch (a random 64-bit number
            // per transaction), and only to read what a 2xx needs from it.
            let this = all()
                .nth(1)
                .is_some()
                .then(|| branch_hash(self.client[i].txn.key().branch_bytes()));
            for (n, ev) in all().enumerate() {
                let is_2xx = matches!(ev, TxnEvent::Response(r)
                    if r.status().is_some_and(|c| (200..300).contains(&c)));
                let at = match (is_2xx, n, this) {
                    (true, 0, _) => Some(i),
                    (true, _, Some(h)) => self.client.iter().position(|e| {
                        e.owner == owner
                            && e.txn.state() != State::Terminated
                            && branch_hash(e.txn.key().branch_bytes()) == h
                    }),
                    _ => None,
                };
                // A 2xx retransmission to an INVITE whose ACK its transaction keeps: the
                // same ACK again, not reported again (as the finished record does).
                if let (Owner::Invite(_), TxnEvent::Response(r), Some(ack)) =
                    (owner, ev, at.and_then(|at| self.client[at].ack.as_deref()))
                    && r.status().is_some_and(|c| (200..300).contains(&c))
                {
                    // Another fork's 2xx is ACKed in its own dialog, then ended with BYE
                    // (`on_2xx_again`).
                    let kept = (ack.destination.clone(), ack.bytes.clone());
                    self.on_2xx_again(now, owner, &kept, r);
                    continue;
                }
                // Glare: our re-INVITE or UPDATE refused with 491 goes again after the §14.1
                // timer, with its offer and in its dialog (read from the request, at `at` as
                // a 2xx's entry is found); its outcome is reported once it has one. So does
                // one refused with 422 in a timed session, at once (RFC 4028 §7.4).
                if let (
                    Owner::InDialog(id, kind @ (InDialogMethod::Reinvite | InDialogMethod::Update)),
                    TxnEvent::Response(r),
                ) = (owner, ev)
                    && let Some(code @ (491 | 422)) = r.status()
                {
                    let at = match (n, this) {
                        (0, _) => Some(i),
                        (_, Some(h)) => self.client.iter().position(|e| {
                            e.owner == owner && branch_hash(e.txn.key().branch_bytes()) == h
                        }),
                        _ => None,
                    };
                    if let Some(req) = at.map(|at| self.client[at].txn.request()) {
                        let body = Some(req.body().clone()).filter(|b| !b.is_empty());
                        let tag = req
                            .headers
                            .view::<ToRef>()
                            .and_then(Result::ok)
                            .and_then(|t| t.tag().map(Cow::into_owned))
                            .unwrap_or_default();
                        let again = if code == 491 {
                            self.retry_after_glare(now, id, kind, tag, body)
                        } else {
                            self.retry_in_dialog_after_422(now, id, kind, r, body)
                        };
                        if again {
                            continue;
                        }
                    }
                }
                if let (Owner::InDialog(id, InDialogMethod::Reinvite), TxnEvent::Response(r)) =
                    (owner, ev)
                    && r.status().is_some_and(|c| (200..300).contains(&c))
                {
                    let parked = at.and_then(|at| self.client[at].dialog.take());
                    if let Some(ack) = self.ack_reinvite_2xx(id, parked, r)
                        && let Some(at) = at
                    {
                        self.client[at].ack = Some(KeptAck::new(ack));
                    }
                }
                self.on_client_event(now, owner, &method, None, ev);
            }
        }
    }

    /// A response matching no transaction at work: a finished one answers it if it matches
    /// (the ACK again for a retransmitted non-2xx, the call for a retransmitted 2xx). False
    /// when none matches.
    fn answer_finished_client(
        &mut self,
        now: Instant,
        branch: &str,
        method: &Method,
        resp: &Message,
    ) -> bool {
        let h = branch_hash(branch.as_bytes());
        let Some(f) = self.finished.iter().find(|f| {
            f.branch_hash == h
                && matches!(f.peer, Peer::Client(..))
                && f.txn.key().is(branch, method)
        }) else {
            return false;
        };
        let Peer::Client(owner, ack_to) = &f.peer else {
            return false;
        };
        match f.txn.handle_response(resp) {
            FinishedReply::Absorbed => {}
            FinishedReply::Deliver if matches!(ack_to, AckTo::Again(_)) => {
                // An (re-)INVITE's 2xx again: the same ACK again, not reported again (another
                // fork's 2xx: ACKed in its own dialog, then ended with BYE, `on_2xx_again`).
                if let AckTo::Again(ack) = ack_to {
                    let (owner, kept) = (*owner, (ack.destination.clone(), ack.bytes.clone()));
                    self.on_2xx_again(now, owner, &kept, resp);
                }
            }
            FinishedReply::Deliver => {
                let owner = *owner;
                self.on_client_response(now, owner, None, resp);
                // The handler may have started transactions.
                self.drain_client(now);
            }
            FinishedReply::Resend { transmit, .. } => {
                if let Some(destination) = ack_to.destination() {
                    push_out(
                        &mut self.queues,
                        Outgoing {
                            destination,
                            bytes: transmit.bytes,
                            retransmission: transmit.retransmission,
                        },
                    );
                }
            }
        }
        true
    }

    /// A request matching no server transaction at work: a finished one answers it if it
    /// matches (the final response again for a retransmitted non-INVITE, reported as a
    /// retransmission). `None` when none matches; else what the record did (`Deliver`: an ACK
    /// the core must see, RFC 6026 §8.7).
    fn answer_finished_server(
        &mut self,
        req: &Message,
        key: &ServerKeyRef<'_>,
    ) -> Option<FinishedReply> {
        let h = branch_hash(key.branch.as_bytes());
        let f = self.finished.iter_mut().find(|f| {
            f.branch_hash == h && matches!(f.peer, Peer::Server(_)) && key.matches(f.txn.key())
        })?;
        let Peer::Server(source) = f.peer else {
            return None;
        };
        let reply = f.txn.handle_request(req);
        if let FinishedReply::Resend { transmit, count } = reply.clone() {
            push_out(
                &mut self.queues,
                Outgoing {
                    destination: Destination::Source(source),
                    bytes: transmit.bytes,
                    retransmission: transmit.retransmission,
                },
            );
            if let Some(count) = count {
                queues(&mut self.queues)
                    .events
                    .push_back(UaEvent::Retransmitted {
                        method: key.method.clone(),
                        count,
                    });
            }
        }
        Some(reply)
    }

    /// The earliest timer of every client and server transaction (the finished ones are
    /// in deadline order).
    fn scan_txn_next(&self) -> Option<Instant> {
        // Plain loops: asked after every event, and the lists are nearly always empty.
        let mut next = self.finished.front().map(|f| f.txn.deadline());
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t
                && next.is_none_or(|n| t < n)
            {
                next = Some(t);
            }
        };
        for e in &self.client {
            consider(e.txn.poll_timeout());
        }
        for e in &self.server {
            consider(e.txn.poll_timeout());
        }
        next
    }

    fn on_client_event(
        &mut self,
        now: Instant,
        owner: Owner,
        method: &Method,
        req: Option<Cow<'_, Message>>,
        ev: &TxnEvent,
    ) {
        match *ev {
            TxnEvent::Response(ref resp) => self.on_client_response(now, owner, req, resp),
            TxnEvent::Timeout(timer) => match owner {
                Owner::Register | Owner::Unregister => {
                    // RFC 3263 §4.3: only a timeout "without ever having received any
                    // response, provisional or final" (or a transport failure) sends the
                    // request to the next server; the agent fails over on "no response".
                    let reason = if self.flag(REG_PROVISIONAL) && !self.flag(TRANSPORT_FAILED) {
                        format!("no final response after a provisional (Timer {timer:?} fired)")
                    } else {
                        format!("no response (Timer {timer:?} fired)")
                    };
                    self.register_failed(owner, 408, reason)
                }
                Owner::Invite(id) => {
                    let referrer = self.referrer_of(id);
                    let cancelled = self.call_ref(id).is_some_and(|c| {
                        c.provisional == Provisional::Seen && c.state == CallState::Terminating
                    });
                    let reason = if cancelled {
                        format!(
                            "no final response within 64×T1 of the CANCEL (RFC 3261 §9.1: \
                             Timer {timer:?} fired)"
                        )
                    } else {
                        format!("no final response (Timer {timer:?} fired)")
                    };
                    self.call_event(id, CallEvent::Failed { code: 408, reason });
                    self.notify_referrer(now, id, referrer, 408, None);
                }
                Owner::Bye(id) => self.call_event(
                    id,
                    CallEvent::Ended {
                        by_remote: false,
                        code: 408,
                    },
                ),
                Owner::InDialog(id, m) if m != InDialogMethod::Prack => {
                    self.session_after_refresh(now, id, m, 408, None);
                    queues(&mut self.queues).events.push_back(UaEvent::Call(
                        id,
                        CallEvent::Modified {
                            method: m.method(),
                            code: 408,
                            sdp: None,
                        },
                    ));
                    self.end_if_dialog_gone(now, id, 408);
                }
                Owner::Refer(id) => self.on_refer_response(now, id, 408),
                Owner::InDialog(..) | Owner::Cancel(_) | Owner::ForkBye(_) | Owner::Notify(_) => {}
            },
            TxnEvent::Retransmitted { count, .. } => {
                queues(&mut self.queues)
                    .events
                    .push_back(UaEvent::Retransmitted {
                        method: method.clone(),
                        count,
                    })
            }
            TxnEvent::TimerFired(timer) => {
                queues(&mut self.queues)
                    .events
                    .push_back(UaEvent::TimerFired {
                        timer,
                        method: method.clone(),
                    })
            }
            TxnEvent::Ack(_) | TxnEvent::Terminated => {}
        }
    }

    /// A response a client transaction passes up, for whom it is.
    fn on_client_response(
        &mut self,
        now: Instant,
        owner: Owner,
        req: Option<Cow<'_, Message>>,
        resp: &Message,
    ) {
        // Only a REGISTER's handler reads the request after this.
        let req = match req {
            Some(req) if in_dialog_auth::is_retried_challenge(owner, resp) => {
                if self.retry_in_dialog_with_auth(now, owner, req, resp) {
                    return;
                }
                None
            }
            req => req,
        };
        match owner {
            Owner::Register | Owner::Unregister => {
                if let Some(req) = req {
                    self.on_register_response(now, req, resp, owner);
                }
            }
            Owner::Invite(id) => {
                let referrer = self.referrer_of(id);
                self.on_invite_response(now, id, resp);
                if let Some(code) = resp.status() {
                    self.notify_referrer(now, id, referrer, code, resp.reason());
                }
            }
            Owner::InDialog(id, m) => self.on_in_dialog_response(now, id, m, resp),
            Owner::Refer(id) => {
                if let Some(code) = resp.status() {
                    self.on_refer_response(now, id, code);
                }
            }
            Owner::Cancel(_) | Owner::ForkBye(_) | Owner::Notify(_) => {}
            Owner::Bye(id) => {
                if let Some(code) = resp.status().filter(|&c| c >= 200) {
                    self.call_event(
                        id,
                        CallEvent::Ended {
                            by_remote: false,
                            code,
                        },
                    );
                }
            }
        }
    }

    fn drain_server(&mut self, _now: Instant) {
        let mut i = 0;
        while i < self.server.len() {
            let e = &mut self.server[i];
            if e.txn.is_quiet() {
                let finishable = match e.txn.state() {
                    State::Terminated => {
                        self.server.swap_remove(i);
                        continue;
                    }
                    // An INVITE in Completed still retransmits its answer (Timer G).
                    State::Completed => e.method != Method::Invite,
                    State::Accepted | State::Confirmed => true,
                    _ => false,
                };
                if !finishable {
                    i += 1;
                    continue;
                }
                // Taken out of the entry in place (see `drain_client`).
                let Some(txn) = e.txn.take_finished() else {
                    // Not reached (see `drain_client`); kept whole.
                    i += 1;
                    continue;
                };
                let source = e.source;
                self.server.swap_remove(i);
                push_finished(&mut self.finished, txn, Peer::Server(source));
                continue;
            }
            while let Some(t) = e.txn.poll_transmit() {
                push_out(
                    &mut self.queues,
                    Outgoing {
                        destination: Destination::Source(e.source),
                        bytes: t.bytes,
                        retransmission: t.retransmission,
                    },
                );
            }
            let method = e.method.clone();
            while let Some(ev) = e.txn.poll_event() {
                match ev {
                    TxnEvent::Retransmitted { count, .. } => queues(&mut self.queues)
                        .events
                        .push_back(UaEvent::Retransmitted {
                            method: method.clone(),
                            count,
                        }),
                    TxnEvent::TimerFired(timer) => {
                        queues(&mut self.queues)
                            .events
                            .push_back(UaEvent::TimerFired {
                                timer,
                                method: method.clone(),
                            })
                    }
                    _ => {}
                }
            }
            // Visited again (`i` stays), now quiet: dropped, kept compact or passed over.
        }
        if self.server.is_empty() && self.server.capacity() > 0 {
            self.server = Vec::new();
        }
    }

    // ---- output ----

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        let q = self.queues.as_mut()?;
        let next = q.out.pop_front();
        self.release_queues();
        next
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        let q = self.queues.as_mut()?;
        let next = q.events.pop_front();
        self.release_queues();
        next
    }

    /// An idle phone keeps no buffers: thousands of them share a shard.
    fn release_queues(&mut self) {
        if self
            .queues
            .as_ref()
            .is_some_and(|q| q.out.is_empty() && q.events.is_empty())
        {
            self.queues = None;
        }
    }

    /// When [`UserAgent::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = || {
            self.calls.iter().filter_map(Slot::as_ref).flat_map(|c| {
                [c.ok_retransmit.as_ref(), c.prov_retransmit.as_deref()]
                    .into_iter()
                    .flatten()
                    .map(|(_, next, _, deadline)| (*next).min(*deadline))
                    .chain(retries_due(c, None).filter_map(|g| g.at))
                    .chain(session_at(c))
                    .chain(transfer::transfer_at(c))
            })
        };
        debug_assert!(
            self.flag(CALL_TIMERS) || calls().next().is_none(),
            "a call retransmits while CALL_TIMERS is clear"
        );
        let calls = self.flag(CALL_TIMERS).then(|| calls().min()).flatten();
        calls
            .into_iter()
            .chain(self.scan_txn_next())
            .chain(self.reg_refresh_at)
            .min()
    }

    /// Forgets a finished call's state (its handle becomes unknown).
    pub fn forget_call(&mut self, id: CallId) {
        if self.call_state(id) == Some(CallState::Terminated)
            && let Some(i) = self.slot(id)
            && let Some(slot) = self.calls.get_mut(i)
        {
            *slot = Slot::Forgotten;
        }
        // Forgotten calls at the front go: their handles stay unknown (never reused).
        while matches!(self.calls.front(), Some(Slot::Forgotten)) {
            self.calls.pop_front();
            self.first_call = self.first_call.wrapping_add(1);
        }
        if self.calls.is_empty() && self.calls.capacity() > 0 {
            self.calls = VecDeque::new();
        }
    }
}

/// Our Via, `SIP/2.0/{TRANSPORT} {host}:{port};branch={BRANCH_MAGIC}{branch:016x};rport`,
/// appended to `via` piece by piece (no formatting machinery, no upper-cased copy of the
/// transport): what `Via::new(transport, host, port, branch)` with `;rport` prints.
fn write_via(via: &mut String, transport: &str, host: &Host, port: u16, branch: u64) {
    via.push_str("SIP/2.0/");
    via.extend(transport.chars().map(|c| c.to_ascii_uppercase()));
    via.push(' ');
    sip_msg::push_host(via, host);
    via.push(':');
    sip_msg::push_decimal(via, u64::from(port));
    via.push_str(";branch=");
    via.push_str(BRANCH_MAGIC);
    sip_msg::push_hex16(via, branch);
    // RFC 3581: ask for the source port, so answers reach us through NAT.
    via.push_str(";rport");
}

/// `n` in decimal, as `to_string` prints it, without the formatting machinery.
fn decimal_text(n: u32) -> String {
    let mut text = String::with_capacity(10);
    sip_msg::push_decimal(&mut text, u64::from(n));
    text
}

/// A CSeq value, `{seq} {method}` as `CSeq`'s `Display` prints it, without the formatting
/// machinery.
#[cfg(test)]
fn cseq_text(seq: u32, method: &Method) -> String {
    let mut text = String::new();
    write_cseq(&mut text, seq, method);
    text
}

/// [`cseq_text`] appended to `text`.
fn write_cseq(text: &mut String, seq: u32, method: &Method) {
    sip_msg::push_decimal(text, u64::from(seq));
    text.push(' ');
    text.push_str(method.as_str());
}

/// A CSeq header of `seq` and `method` (its value in a block of its exact length).
fn cseq_header(seq: u32, method: &Method) -> Header {
    Header::written(HeaderName::CSeq, |t| write_cseq(t, seq, method))
}

/// The From URI of `msg` as text (empty when From is missing or malformed): read in place
/// and printed straight into its string, what `msg.from()`'s URI prints (the in-place URI
/// is the owned one: `dialog::tests::dialog_uris_read_in_place_are_the_typed_ones_for_printed_values`),
/// without the owned parse of the whole header. (An incoming call gets this text from its
/// dialog's reading of the From, `Dialog::from_uas_noting`; kept for the test comparing the
/// two.)
#[cfg(test)]
fn from_uri_text(msg: &Message) -> String {
    match msg.headers.view::<sip_msg::typed::FromRef>() {
        Some(Ok(f)) => {
            let mut text = String::with_capacity(48);
            // Writing into a String never fails.
            let _ = f.0.uri.into_owned().write_to(&mut text);
            text
        }
        _ => String::new(),
    }
}

/// True when `msg` lists `100rel` in a Require header (any line).
/// True when the message `bytes` (one we printed: its head ends at the first blank line)
/// has a body.
fn carries_body(bytes: &[u8]) -> bool {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .is_some_and(|end| bytes.len() > end + 4)
}

fn requires_100rel(msg: &Message) -> bool {
    msg.headers
        .typed_all::<Require>()
        .into_iter()
        .flatten()
        .any(|r| r.contains("100rel"))
}

/// True when `msg` lists `100rel` in Supported or Require (RFC 3262 §3).
fn supports_100rel(msg: &Message) -> bool {
    supports(msg, "100rel")
}

fn sdp_of(msg: &Message) -> Option<Bytes> {
    has_sdp(msg).then(|| msg.body().clone())
}

/// True when `msg` carries an SDP body (what [`sdp_of`] gives), without a copy of the body's
/// handle: the clone of a body that shares a received datagram can allocate.
fn has_sdp(msg: &Message) -> bool {
    msg.headers
        .value(&HeaderName::ContentType)
        .and_then(|ct| ct.as_bytes().get(..15))
        .is_some_and(|t| t.eq_ignore_ascii_case(b"application/sdp"))
        && !msg.body().is_empty()
}

/// `Host` equality (names compared exactly, as the owned `Host`'s `==` does) for a host read
/// in place.
fn host_ref_is(a: &HostRef<'_>, b: &Host) -> bool {
    match (a, b) {
        (HostRef::Name(a), Host::Name(b)) => a == b,
        (HostRef::V4(a), Host::V4(b)) => a == b,
        (HostRef::V6(a), Host::V6(b)) => a == b,
        _ => false,
    }
}

fn auth_reason(reason: &str, f: AuthFailure) -> String {
    format!("{reason} ({f})")
}

/// The standard reason phrase of the codes we send.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::tagged_text;
    use sip_msg::text_of;

    const ALICE: &str = "127.0.0.1:5061";
    const BOB: &str = "127.0.0.1:5062";
    const SERVER: &str = "127.0.0.1:5060";

    fn config(user: &str, port: u16, seed: u64) -> UaConfig {
        UaConfig {
            user: user.into(),
            domain: "example.test".into(),
            registrar_uri: Uri::parse("sip:example.test:5060;transport=udp").unwrap(),
            outbound_proxy: None,
            credentials: None,
            local_host: Host::parse("127.0.0.1").unwrap(),
            local_port: port,
            transport: "UDP".into(),
            reliable: false,
            expires: 300,
            timers: TimerConfig::default(),
            user_agent: "sipmeter-test".into(),
            seed,
            use_100rel: false,
            session_timer: None,
            codecs: None,
        }
    }

    #[test]
    fn transaction_entries_stay_small() {
        // Every registration and call holds one or more of these while it is at work (the
        // fleet bench's peak heap per call). They were 1,232 and 872 bytes with the pending
        // event inline and a slot for each of the twelve timers, then 784 and 424 with the
        // overflow lists of their two queues inline, 704 and 376 with a `Message` of 312
        // bytes and the client entry's own copy of its method; do not let them grow back.
        // 640 is a size class of mimalloc (the next is 768).
        let (client, server) = (size_of::<ClientEntry>(), size_of::<ServerEntry>());
        eprintln!("ClientEntry {client} B, ServerEntry {server} B");
        assert!(client <= 640, "ClientEntry is {client} bytes");
        assert!(server <= 360, "ServerEntry is {server} bytes");
    }

    #[test]
    fn an_idle_phone_stays_small() {
        // Every phone of a fleet is one of these, most of them idle (the fleet bench's bytes
        // per idle endpoint). 456 bytes, 464 with the RFC 3608 service route's box pointer.
        let ua = size_of::<UserAgent>();
        eprintln!("UserAgent {ua} B");
        assert!(ua <= 464, "UserAgent is {ua} bytes");
    }

    #[test]
    fn calls_stay_small() {
        // A call's box: one `Vec` (24 bytes, no heap) more for the other forks' early
        // dialogs (664 -> 688 bytes, the same 768-byte size class of mimalloc); an early
        // dialog of 328 bytes more per other fork that sends a 1xx with a To tag. The glare
        // retry's box pointer took the byte of `reported_end` (never true on a live call).
        // The kept ACK's list of other forks (tag, last CSeq, ended) replaced its list of
        // ended tags and its one CSeq number (96 -> 88 bytes).
        let (call, kept) = (size_of::<Call>(), size_of::<KeptAck>());
        eprintln!(
            "Call {call} B, KeptAck {kept} B, EarlyFork {} B",
            size_of::<EarlyFork>()
        );
        // 688 -> 616 with the reliable provisional's retransmission boxed: mimalloc's
        // 640-byte class instead of the 768.
        assert!(call <= 640, "Call is {call} bytes");
        assert!(kept <= 88, "KeptAck is {kept} bytes");
        // The spare-state box of a call with a session timer (or glare, a late offer, a
        // transfer): 200 bytes before the transfer's two box pointers, 216 after, 224 with
        // the optional-SRTP keys' box pointer (all in the 224-byte size class of mimalloc).
        let rare = size_of::<Rare>();
        eprintln!("Rare {rare} B");
        assert!(rare <= 224, "Rare is {rare} bytes");
    }

    #[test]
    fn our_via_is_printed_as_the_typed_model_prints_it() {
        for (transport, host) in [
            ("UDP", "127.0.0.1"),
            ("tcp", "[2001:db8::5]"),
            ("TLS", "phone.example.test"),
        ] {
            let mut ua = UserAgent::new(UaConfig {
                transport: transport.into(),
                local_host: Host::parse(host).unwrap(),
                ..config("alice", 5061, 7)
            });
            for _ in 0..3 {
                // The same draw of the RNG as the agent makes.
                let branch = sip_msg::branch_from(ua.rng.clone().random());
                let mut via = sip_msg::typed::Via::new(
                    transport,
                    Host::parse(host).unwrap(),
                    Some(5061),
                    &branch,
                );
                via.params.set("rport", None);
                assert_eq!(ua.new_via(), text_of(&via, 96));
            }
        }
    }

    fn drain(ua: &mut UserAgent) -> (Vec<Outgoing>, Vec<UaEvent>) {
        (
            std::iter::from_fn(|| ua.poll_transmit()).collect(),
            std::iter::from_fn(|| ua.poll_event()).collect(),
        )
    }

    fn parse(o: &Outgoing) -> Message {
        Message::parse(&o.bytes).unwrap()
    }

    /// Two agents wired back to back on a virtual clock, with a drop filter on messages.
    struct Pair {
        now: Instant,
        a: UserAgent,
        b: UserAgent,
        /// (deliver at, to b?, bytes)
        wire: Vec<(Instant, bool, Bytes)>,
        events_a: Vec<UaEvent>,
        events_b: Vec<UaEvent>,
        sent: Vec<(bool, String)>,
        /// Every message sent, as sent (lost ones too): (sent by Alice, bytes).
        sent_bytes: Vec<(bool, Bytes)>,
        drop: DropFilter,
    }

    /// Decides whether a message is lost: (sent by Alice, message, earlier copies sent).
    type DropFilter = Box<dyn FnMut(bool, &Message, usize) -> bool>;

    impl Pair {
        /// Bob rings (180), then answers with an SDP answer 50 ms later; the 2xx and its
        /// ACK cross within the next 100 ms.
        fn ring_and_answer(&mut self, bob_call: CallId) {
            self.b.ring(self.now, bob_call);
            self.run(Duration::from_millis(50));
            self.b.answer(
                self.now,
                bob_call,
                Some(Bytes::from_static(b"v=0\r\ns=answer\r\n")),
            );
            self.run(Duration::from_millis(100));
        }

        fn new() -> Self {
            Self {
                now: Instant::now(),
                a: UserAgent::new(config("alice", 5061, 1)),
                b: UserAgent::new(config("bob", 5062, 2)),
                wire: Vec::new(),
                events_a: Vec::new(),
                events_b: Vec::new(),
                sent: Vec::new(),
                sent_bytes: Vec::new(),
                drop: Box::new(|_, _, _| false),
            }
        }

        fn collect(&mut self) {
            for (from_a, ua) in [(true, &mut self.a), (false, &mut self.b)] {
                let (out, ev) = drain(ua);
                for o in out {
                    let m = Message::parse(&o.bytes).unwrap();
                    let n = self
                        .sent
                        .iter()
                        .filter(|(fa, s)| *fa == from_a && *s == m.summary())
                        .count();
                    self.sent.push((from_a, m.summary()));
                    self.sent_bytes.push((from_a, o.bytes.clone()));
                    if !(self.drop)(from_a, &m, n) {
                        // 10 ms one-way delay.
                        self.wire
                            .push((self.now + Duration::from_millis(10), from_a, o.bytes));
                    }
                }
                if from_a {
                    self.events_a.extend(ev)
                } else {
                    self.events_b.extend(ev)
                }
            }
        }

        /// Runs until `until` on the virtual clock.
        fn run(&mut self, until: Duration) {
            let end = self.now + until;
            loop {
                self.collect();
                let next_wire = self.wire.iter().map(|w| w.0).min();
                let next = [next_wire, self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(next) = next.filter(|&n| n <= end) else {
                    break;
                };
                self.now = next.max(self.now);
                let (due, rest): (Vec<_>, Vec<_>) =
                    self.wire.drain(..).partition(|w| w.0 <= self.now);
                self.wire = rest;
                for (_, to_b, bytes) in due {
                    let m = Message::parse(&bytes).unwrap();
                    if to_b {
                        self.b.handle_message(self.now, m, ALICE.parse().unwrap());
                    } else {
                        self.a.handle_message(self.now, m, BOB.parse().unwrap());
                    }
                }
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
            self.now = end;
        }

        fn bob_uri() -> Uri {
            Uri::parse("sip:bob@127.0.0.1:5062").unwrap()
        }
    }

    fn incoming(ev: &[UaEvent]) -> Vec<CallId> {
        ev.iter()
            .filter_map(|e| match e {
                UaEvent::Call(id, CallEvent::Incoming { .. }) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn has(ev: &[UaEvent], f: impl Fn(&CallEvent) -> bool) -> bool {
        ev.iter().any(|e| matches!(e, UaEvent::Call(_, c) if f(c)))
    }

    #[test]
    fn a_call_ringing_longer_than_64_t1_is_still_answered() {
        // RFC 3261 §17.1.1.2: Timer B ends only an INVITE still in Calling; a callee that
        // rings for 40 s and then answers gets its 2xx ACKed and the call is up (Timer B used
        // to end the caller's INVITE at 32 s: a 408 with no CANCEL, the 200 never ACKed).
        let mut p = Pair::new();
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = *incoming(&p.events_b).last().unwrap();
        p.b.ring(p.now, bob_call);
        p.run(Duration::from_secs(40));
        assert_eq!(p.a.call_state(call), Some(CallState::Early));
        assert!(!has(&p.events_a, |c| matches!(c, CallEvent::Failed { .. })));
        p.b.answer(p.now, bob_call, Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
        assert_eq!(p.b.call_state(bob_call), Some(CallState::Confirmed));
        assert_eq!(count_of(&p, "ACK sip:bob@127.0.0.1:5062"), 1);
    }

    #[test]
    fn a_cancel_whose_invite_never_gets_a_final_response_ends_the_call_at_64_t1() {
        // RFC 3261 §9.1: a UAC "cannot rely on receiving a 487 ... as an RFC 2543-compliant
        // UAS will not generate such a response. If there is no final response for the
        // original request in 64*T1 seconds ..., the client SHOULD then consider the original
        // transaction cancelled". Bob's 487 is lost every time it is sent.
        let mut p = Pair::new();
        p.drop = Box::new(|from_a, m, _| !from_a && m.status() == Some(487));
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = *incoming(&p.events_b).last().unwrap();
        p.b.ring(p.now, bob_call);
        p.run(Duration::from_secs(10));
        p.a.hangup(p.now, call);
        p.run(Duration::from_secs(31));
        assert_eq!(count_of(&p, "200 OK (CANCEL)"), 1);
        assert_eq!(p.a.call_state(call), Some(CallState::Terminating));
        p.run(Duration::from_secs(2));
        assert_eq!(p.a.call_state(call), Some(CallState::Terminated));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Failed { code: 408, reason } if reason.contains("64×T1 of the CANCEL")
        )));
    }

    #[test]
    fn a_hangup_before_a_100_cancels_once_the_100_comes() {
        // RFC 3261 §9.1: a CANCEL waits for a provisional response, 100 included. Bob only
        // ever sends 100 Trying (its 180 is lost every time): Alice's hang-up, asked at once,
        // goes out when the 100 comes, and the 487 ends the call (Timer B no longer does,
        // once the INVITE is in Proceeding).
        let mut p = Pair::new();
        p.drop = Box::new(|from_a, m, _| !from_a && m.status() == Some(180));
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(50));
        let bob_call = *incoming(&p.events_b).last().unwrap();
        p.b.ring(p.now, bob_call);
        p.run(Duration::from_secs(1));
        assert_eq!(count_of(&p, "200 OK (CANCEL)"), 1);
        assert_eq!(p.a.call_state(call), Some(CallState::Terminated));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Failed { code: 487, .. }
        )));
    }

    #[test]
    fn forgotten_calls_free_their_slots_and_handles_are_never_reused() {
        let mut p = Pair::new();
        let mut seen = Vec::new();
        for round in 0..3 {
            let call =
                p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
            assert!(!seen.contains(&call), "handle {call:?} reused");
            seen.push(call);
            p.run(Duration::from_millis(50));
            let bob_call = *incoming(&p.events_b).last().unwrap();
            p.b.answer(p.now, bob_call, Some(Bytes::from_static(b"v=0\r\n")));
            p.run(Duration::from_millis(100));
            p.a.hangup(p.now, call);
            // Long enough for every timer of the call (64*T1) to end.
            p.run(Duration::from_secs(40));
            assert_eq!(
                p.a.call_state(call),
                Some(CallState::Terminated),
                "round {round}"
            );
            p.a.forget_call(call);
            p.b.forget_call(bob_call);
            assert_eq!(p.a.call_state(call), None);
            assert!(
                p.a.calls.is_empty() && p.b.calls.is_empty(),
                "round {round}"
            );
        }
        // A call forgotten out of order keeps the handles after it valid.
        let first = p.a.call(p.now, Pair::bob_uri(), None);
        let second = p.a.call(p.now, Pair::bob_uri(), None);
        p.a.hangup(p.now, first);
        p.run(Duration::from_secs(40));
        assert_eq!(p.a.call_state(first), Some(CallState::Terminated));
        p.a.forget_call(first);
        assert_eq!(p.a.call_state(first), None);
        assert!(p.a.call_state(second).is_some());
        assert_eq!(p.a.calls.len(), 1);
    }

    /// The callee keeps of the INVITE the headers its responses copy: the offer is reported
    /// with the incoming call, the kept copy holds no body (which would keep the whole
    /// datagram) nor the other headers, and the ringing and the answer are still built from it.
    #[test]
    fn the_kept_incoming_invite_holds_no_body_and_the_offer_is_reported() {
        let mut p = Pair::new();
        let call = p.a.call(
            p.now,
            Pair::bob_uri(),
            Some(Bytes::from_static(b"v=0\r\ns=offer\r\n")),
        );
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        assert!(p.events_b.iter().any(|e| matches!(e,
            UaEvent::Call(_, CallEvent::Incoming { offer: Some(o), .. }) if o.as_ref() == b"v=0\r\ns=offer\r\n")));
        let kept = p.b.call_ref(bob_call).unwrap().invite.clone().unwrap();
        assert!(kept.body().is_empty());
        assert_eq!(kept.method(), Some(Method::Invite));
        // Only what the responses copy: not the Content-Type, Contact or Max-Forwards.
        for gone in [
            HeaderName::ContentType,
            HeaderName::Contact,
            HeaderName::MaxForwards,
        ] {
            assert_eq!(kept.headers.value(&gone), None, "{gone:?}");
        }
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            assert!(kept.headers.value(&name).is_some(), "{name:?}");
        }
        p.ring_and_answer(bob_call);
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Progress { code: 180, .. }
        )));
        assert!(has(
            &p.events_a,
            |c| matches!(c, CallEvent::Answered { sdp: Some(s) } if s.as_ref() == b"v=0\r\ns=answer\r\n")
        ));
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
        assert_eq!(p.b.call_state(bob_call), Some(CallState::Confirmed));
    }

    #[test]
    fn call_answer_and_hang_up() {
        let mut p = Pair::new();
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.ring_and_answer(bob_call);
        assert!(has(&p.events_a, |c| matches!(c, CallEvent::Trying)));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Progress { code: 180, .. }
        )));
        assert!(has(
            &p.events_a,
            |c| matches!(c, CallEvent::Answered { sdp: Some(s) } if s.as_ref() == b"v=0\r\ns=answer\r\n")
        ));
        assert!(has(&p.events_b, |c| matches!(
            c,
            CallEvent::Answered { .. }
        )));
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
        assert_eq!(p.b.call_state(bob_call), Some(CallState::Confirmed));
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(100));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Ended {
                by_remote: false,
                code: 200
            }
        )));
        assert!(has(&p.events_b, |c| matches!(
            c,
            CallEvent::Ended {
                by_remote: true,
                ..
            }
        )));
        let summaries: Vec<&str> = p.sent.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "INVITE sip:bob@127.0.0.1:5062",
                "100 Trying (INVITE)",
                "180 Ringing (INVITE)",
                "200 OK (INVITE)",
                "ACK sip:bob@127.0.0.1:5062",
                "BYE sip:bob@127.0.0.1:5062",
                "200 OK (BYE)",
            ]
        );
        // Nothing left pending but timers that end transactions.
        p.run(Duration::from_secs(40));
        assert_eq!(
            p.sent.len(),
            7,
            "no retransmission on a clean path: {:?}",
            p.sent
        );
    }

    /// Alice calls Bob and Bob answers; both ends confirmed.
    fn confirmed_call(p: &mut Pair) -> (CallId, CallId) {
        let call = p.a.call(
            p.now,
            Pair::bob_uri(),
            Some(Bytes::from_static(b"v=0\r\na=sendrecv\r\n")),
        );
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.answer(
            p.now,
            bob_call,
            Some(Bytes::from_static(b"v=0\r\ns=bob\r\n")),
        );
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
        (call, bob_call)
    }

    #[test]
    fn reliable_180_is_retransmitted_until_pracked() {
        let mut p = Pair::new();
        p.a = UserAgent::new(UaConfig {
            use_100rel: true,
            session_timer: None,
            codecs: None,
            ..config("alice", 5061, 1)
        });
        p.b = UserAgent::new(UaConfig {
            use_100rel: true,
            session_timer: None,
            codecs: None,
            ..config("bob", 5062, 2)
        });
        // The first 180 is lost: Bob must resend it after T1 (RFC 3262 §3).
        p.drop = Box::new(|from_a, m, n| !from_a && m.status() == Some(180) && n == 0);
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let invite = p.sent.iter().find(|(a, _)| *a).map(|(_, s)| s.clone());
        assert_eq!(invite.as_deref(), Some("INVITE sip:bob@127.0.0.1:5062"));
        let bob_call = incoming(&p.events_b)[0];
        p.b.ring(p.now, bob_call);
        p.run(Duration::from_secs(2));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Pracked { rseq: 1 }
        )));
        assert!(has(&p.events_b, |c| matches!(
            c,
            CallEvent::Pracked { rseq: 1 }
        )));
        let count = |s: &str| p.sent.iter().filter(|(_, x)| x == s).count();
        assert_eq!(
            count("180 Ringing (INVITE)"),
            2,
            "lost once, resent once: {:?}",
            p.sent
        );
        assert_eq!(count("PRACK sip:bob@127.0.0.1:5062"), 1);
        assert_eq!(count("200 OK (PRACK)"), 1);
        // PRACKed: no more 180s however long Bob rings.
        p.run(Duration::from_secs(10));
        assert_eq!(count_of(&p, "180 Ringing (INVITE)"), 2);
        p.b.answer(p.now, bob_call, None);
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
        assert_eq!(count_of(&p, "ACK sip:bob@127.0.0.1:5062"), 1);
        // The BYE continues the CSeq after the PRACK sent in the early dialog.
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(100));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Ended {
                by_remote: false,
                code: 200
            }
        )));
    }

    fn count_of(p: &Pair, summary: &str) -> usize {
        p.sent.iter().filter(|(_, s)| s == summary).count()
    }

    #[test]
    fn reliable_provisionals_only_when_both_support_100rel() {
        let mut p = Pair::new();
        p.b = UserAgent::new(UaConfig {
            use_100rel: true,
            session_timer: None,
            codecs: None,
            ..config("bob", 5062, 2)
        });
        p.a.call(p.now, Pair::bob_uri(), None);
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.ring(p.now, bob_call);
        p.run(Duration::from_secs(3));
        assert_eq!(count_of(&p, "180 Ringing (INVITE)"), 1);
        assert_eq!(count_of(&p, "PRACK sip:bob@127.0.0.1:5062"), 0);
    }

    #[test]
    fn reinvite_hold_then_resume() {
        let mut p = Pair::new();
        let (call, _bob_call) = confirmed_call(&mut p);
        let hold = Bytes::from_static(b"v=0\r\na=sendonly\r\n");
        assert!(p.a.reinvite(p.now, call, hold.clone()));
        p.run(Duration::from_millis(100));
        assert!(has(
            &p.events_b,
            |c| matches!(c, CallEvent::Reinvited { sdp: Some(s) } if *s == hold)
        ));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Modified {
                method: Method::Invite,
                code: 200,
                sdp: Some(_)
            }
        )));
        let resume = Bytes::from_static(b"v=0\r\na=sendrecv\r\n");
        assert!(p.a.reinvite(p.now, call, resume));
        p.run(Duration::from_millis(100));
        assert_eq!(count_of(&p, "200 OK (INVITE)"), 3);
        // One ACK for the initial 2xx and one for each re-INVITE's 2xx.
        assert_eq!(count_of(&p, "ACK sip:bob@127.0.0.1:5062"), 3);
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
        // Nothing is retransmitted on a clean path.
        let before = p.sent.len();
        p.run(Duration::from_secs(40));
        assert_eq!(p.sent.len(), before, "{:?}", p.sent);
    }

    /// RFC 3264 §6.1, §8.4: the callee's 200 to a hold re-INVITE (sendonly) says recvonly,
    /// with a higher `o=` version; to the resume (sendrecv), sendrecv again.
    #[test]
    fn a_hold_reinvite_is_answered_recvonly_and_the_resume_sendrecv() {
        let sdp = |dir: &str, version: u32| {
            Bytes::from(format!(
                "v=0\r\no=x 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0\r\na={dir}\r\n"
            ))
        };
        let mut p = Pair::new();
        let call = p.a.call(p.now, Pair::bob_uri(), Some(sdp("sendrecv", 1)));
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.answer(p.now, bob_call, Some(sdp("sendrecv", 1)));
        p.run(Duration::from_millis(100));
        let answers = |p: &Pair| -> Vec<Bytes> {
            p.events_a
                .iter()
                .filter_map(|e| match e {
                    UaEvent::Call(_, CallEvent::Modified { sdp: Some(s), .. }) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        };
        assert!(p.a.reinvite(p.now, call, sdp("sendonly", 2)));
        p.run(Duration::from_millis(100));
        assert_eq!(answers(&p), [sdp("recvonly", 2)]);
        assert!(p.a.reinvite(p.now, call, sdp("sendrecv", 3)));
        p.run(Duration::from_millis(100));
        assert_eq!(answers(&p), [sdp("recvonly", 2), sdp("sendrecv", 3)]);
        // The same offer again changes nothing: the version stays (RFC 3264 §8).
        assert!(p.a.reinvite(p.now, call, sdp("sendrecv", 3)));
        p.run(Duration::from_millis(100));
        assert_eq!(answers(&p)[2], sdp("sendrecv", 3));
    }

    /// RFC 3264 §6.1, RFC 3261 §14.2: a re-INVITE (and an UPDATE) offering none of the
    /// callee's codecs is refused with 488 and a Warning, the callee is told, the session
    /// stays as it was (the next offer with its codec is answered with its unchanged SDP).
    #[test]
    fn an_offer_without_our_codec_is_refused_with_488() {
        let sdp = |codec: &str, version: u32| {
            let pt = if codec == "PCMU" { 0 } else { 8 };
            Bytes::from(format!(
                "v=0\r\no=x 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                 t=0 0\r\nm=audio 4000 RTP/AVP {pt}\r\na=rtpmap:{pt} {codec}/8000\r\n"
            ))
        };
        let mut p = Pair::new();
        let call = p.a.call(p.now, Pair::bob_uri(), Some(sdp("PCMU", 1)));
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.answer(p.now, bob_call, Some(sdp("PCMU", 1)));
        p.run(Duration::from_millis(100));
        let codes = |p: &Pair| -> Vec<(Method, u16)> {
            p.events_a
                .iter()
                .filter_map(|e| match e {
                    UaEvent::Call(_, CallEvent::Modified { method, code, .. }) => {
                        Some((method.clone(), *code))
                    }
                    _ => None,
                })
                .collect()
        };
        assert!(p.a.reinvite(p.now, call, sdp("PCMA", 2)));
        p.run(Duration::from_millis(100));
        assert_eq!(codes(&p), [(Method::Invite, 488)]);
        assert!(p.sent_bytes.iter().any(|(by_alice, m)| {
            let text = String::from_utf8_lossy(m);
            !by_alice && text.starts_with("SIP/2.0 488") && text.contains("Warning: 305 sipmeter")
        }));
        let refused = sdp("PCMA", 2);
        assert!(has(&p.events_b, |c| matches!(
            c,
            CallEvent::OfferRefused { method: Method::Invite, sdp, .. } if *sdp == refused
        )));
        assert!(!has(&p.events_b, |c| matches!(
            c,
            CallEvent::Reinvited { .. }
        )));
        assert!(p.a.update(p.now, call, Some(sdp("PCMA", 3))));
        p.run(Duration::from_millis(100));
        assert_eq!(codes(&p)[1], (Method::Update, 488));
        // The call goes on: an offer with PCMU gets Bob's SDP as it was.
        assert!(p.a.reinvite(p.now, call, sdp("PCMU", 4)));
        p.run(Duration::from_millis(100));
        assert_eq!(codes(&p)[2], (Method::Invite, 200));
        assert_eq!(p.b.local_sdp(bob_call), Some(&sdp("PCMU", 1)));
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
    }

    #[test]
    fn update_and_info_in_a_call() {
        let mut p = Pair::new();
        let (call, _) = confirmed_call(&mut p);
        assert!(p.a.update(p.now, call, None));
        let dtmf = Bytes::from_static(b"Signal=5\r\nDuration=160\r\n");
        p.run(Duration::from_millis(100));
        assert!(p.a.info(p.now, call, "application/dtmf-relay", dtmf.clone()));
        p.run(Duration::from_millis(100));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Modified {
                method: Method::Update,
                code: 200,
                ..
            }
        )));
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Modified {
                method: Method::Info,
                code: 200,
                ..
            }
        )));
        assert!(has(&p.events_b, |c| matches!(
            c,
            CallEvent::Info { content_type: Some(t), body } if t == "application/dtmf-relay" && *body == dtmf
        )));
        // In-dialog requests need a dialog.
        assert!(!p.a.info(p.now, CallId(99), "text/plain", Bytes::new()));
    }

    /// RFC 3428: a MESSAGE in the call is answered 200 and reported as the call's; one
    /// outside any dialog (pager mode, no To tag) too, as the agent's. Made from Alice's INFO
    /// (a new branch, a higher CSeq).
    #[test]
    fn a_message_in_or_out_of_a_call_is_answered_200() {
        let mut p = Pair::new();
        let (call, _) = confirmed_call(&mut p);
        assert!(p.a.info(p.now, call, "text/plain", Bytes::from_static(b"hi")));
        p.run(Duration::from_millis(100));
        let info = String::from_utf8(last_sent(&p, true, "INFO").to_vec()).unwrap();
        let seq = Message::parse(info.as_bytes()).unwrap().cseq().unwrap().seq;
        let message = info
            .replacen("INFO ", "MESSAGE ", 1)
            .replace(
                &format!("CSeq: {seq} INFO"),
                &format!("CSeq: {} MESSAGE", seq + 1),
            )
            .replace("z9hG4bK", "z9hG4bKmsg");
        for (text, in_call) in [
            (message.clone(), true),
            (
                // Outside the dialog: no To tag (and another transaction).
                message
                    .lines()
                    .map(|l| match l.strip_prefix("To: ") {
                        Some(v) => format!("To: {}", v.split(";tag=").next().unwrap_or(v)),
                        None => l.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("\r\n")
                    .replace("z9hG4bKmsg", "z9hG4bKpager"),
                false,
            ),
        ] {
            p.b.handle_message(
                p.now,
                Message::parse(text.as_bytes()).unwrap(),
                ALICE.parse().unwrap(),
            );
            let (out, events) = drain(&mut p.b);
            assert_eq!(out.len(), 1, "{text}");
            assert_eq!(parse(&out[0]).status(), Some(200), "{text}");
            let ok = |t: &Option<String>, b: &Bytes| {
                t.as_deref() == Some("text/plain") && &b[..] == b"hi"
            };
            assert!(
                events.iter().any(|e| match e {
                    UaEvent::Call(_, CallEvent::Message { content_type, body }) =>
                        in_call && ok(content_type, body),
                    UaEvent::Message { content_type, body } => !in_call && ok(content_type, body),
                    _ => false,
                }),
                "{events:?}"
            );
        }
    }

    /// RFC 3428: our MESSAGE in a call goes in its dialog (its Call-ID, both tags, the next
    /// CSeq), the peer's user agent reports it as the call's, and its 200 comes back to us
    /// as the MESSAGE's answer.
    #[test]
    fn a_message_we_send_in_a_call_is_answered_and_told() {
        let mut p = Pair::new();
        let (call, _) = confirmed_call(&mut p);
        p.events_a.clear();
        assert!(p.a.message(p.now, call, "text/plain", Bytes::from_static(b"hello")));
        p.run(Duration::from_millis(100));
        let sent = Message::parse(&last_sent(&p, true, "MESSAGE")).unwrap();
        assert_eq!(sent.cseq().map(|c| c.method.clone()), Some(Method::Message));
        assert!(
            sent.headers
                .view::<ToRef>()
                .and_then(Result::ok)
                .and_then(|t| t.tag())
                .is_some(),
            "in the dialog: the To tag"
        );
        assert!(p.events_b.iter().any(|e| matches!(
            e,
            UaEvent::Call(_, CallEvent::Message { content_type, body })
                if content_type.as_deref() == Some("text/plain") && &body[..] == b"hello"
        )));
        assert!(
            p.events_a.iter().any(|e| matches!(
                e,
                UaEvent::Call(c, CallEvent::Modified { method: Method::Message, code: 200, .. })
                    if *c == call
            )),
            "{:?}",
            p.events_a
        );
        // No call, no MESSAGE.
        assert!(!p.a.message(p.now, CallId(999), "text/plain", Bytes::new()));
    }

    #[test]
    fn lost_ack_makes_uas_retransmit_2xx_and_uac_ack_again() {
        let mut p = Pair::new();
        p.drop = Box::new(|from_a, m, n| from_a && m.method() == Some(Method::Ack) && n == 0);
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.answer(p.now, bob_call, None);
        p.run(Duration::from_secs(2));
        let oks = p
            .sent
            .iter()
            .filter(|(a, s)| !a && s == "200 OK (INVITE)")
            .count();
        let acks = p
            .sent
            .iter()
            .filter(|(a, s)| *a && s.starts_with("ACK"))
            .count();
        assert_eq!((oks, acks), (2, 2), "{:?}", p.sent);
        assert_eq!(p.b.call_state(bob_call), Some(CallState::Confirmed));
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
    }

    /// The last message `from_a` sent whose summary starts with `prefix`.
    fn last_sent(p: &Pair, from_a: bool, prefix: &str) -> Bytes {
        p.sent_bytes
            .iter()
            .rev()
            .find(|(a, b)| *a == from_a && Message::parse(b).unwrap().summary().starts_with(prefix))
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("no {prefix} sent"))
    }

    #[test]
    fn confirmed_and_ended_calls_drop_what_they_no_longer_need_and_still_answer_retransmissions() {
        let mut p = Pair::new();
        // The first ACK is lost: Bob retransmits his 2xx after Alice dropped her INVITE.
        p.drop = Box::new(|from_a, m, n| from_a && m.method() == Some(Method::Ack) && n == 0);
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.answer(p.now, bob_call, Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(100));
        // Alice has ACKed the 2xx (lost), Bob has sent his final answer: neither keeps the
        // INVITE; both keep the dialog.
        let (ca, cb) = (p.a.call_ref(call).unwrap(), p.b.call_ref(bob_call).unwrap());
        assert!(ca.invite.is_none() && cb.invite.is_none());
        assert!(ca.dialog.is_some() && cb.dialog.is_some());
        let first_ack = last_sent(&p, true, "ACK");
        p.run(Duration::from_secs(2));
        // The retransmitted 2xx got the same ACK again, and the call is confirmed at Bob.
        let acks: Vec<&Bytes> = p
            .sent_bytes
            .iter()
            .filter(|(a, b)| *a && b.starts_with(b"ACK "))
            .map(|(_, b)| b)
            .collect();
        assert_eq!(acks, [&first_ack, &first_ack], "{:?}", p.sent);
        assert_eq!(p.b.call_state(bob_call), Some(CallState::Confirmed));
        // A 2xx retransmission after the INVITE transaction ended (Timer M, 32 s) is still
        // ACKed while the call is up: the call is found by its dialog's Call-ID.
        p.run(Duration::from_secs(40));
        let ok = last_sent(&p, false, "200 OK (INVITE)");
        p.a.handle_message(p.now, Message::parse(&ok).unwrap(), BOB.parse().unwrap());
        let (out, _) = drain(&mut p.a);
        assert_eq!(out.len(), 1);
        assert!(out[0].retransmission);
        assert_eq!(out[0].bytes, first_ack);
        // Hang up: both ends forget the call but Alice's 2xx ACK (the dialog, the SDP, the
        // call's box go).
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Terminated));
        assert_eq!(p.b.call_state(bob_call), Some(CallState::Terminated));
        assert!(matches!(&p.a.calls[0], Slot::Ended { .. }));
        assert!(matches!(&p.b.calls[0], Slot::Ended { .. }));
        assert!(p.a.call_ref(call).is_none());
        // Our SDP stays readable (the agent's failover re-sends it).
        assert_eq!(p.a.local_sdp(call).map(|b| &b[..]), Some(&b"v=0\r\n"[..]));
        assert_eq!(
            p.b.local_sdp(bob_call).map(|b| &b[..]),
            Some(&b"v=0\r\n"[..])
        );
        // A retransmitted BYE is answered with the same 200 by its server transaction.
        let bye = last_sent(&p, true, "BYE");
        let ok_bye = last_sent(&p, false, "200 OK (BYE)");
        p.b.handle_message(p.now, Message::parse(&bye).unwrap(), ALICE.parse().unwrap());
        let (out, _) = drain(&mut p.b);
        assert_eq!(out.len(), 1);
        assert!(out[0].retransmission);
        assert_eq!(out[0].bytes, ok_bye);
        // Any other request of the ended dialog gets 481 (RFC 3261 §12.2.2).
        let info = String::from_utf8(bye.to_vec())
            .unwrap()
            .replace("BYE", "INFO");
        p.b.handle_message(
            p.now,
            Message::parse(info.as_bytes()).unwrap(),
            ALICE.parse().unwrap(),
        );
        let (out, _) = drain(&mut p.b);
        assert_eq!(out.len(), 1);
        assert_eq!(parse(&out[0]).status(), Some(481));
        // After Timer J the BYE's transaction is gone and a late copy of the BYE gets 481
        // too; nothing else was sent meanwhile.
        let before = p.sent.len();
        p.run(Duration::from_secs(40));
        assert_eq!(p.sent.len(), before, "{:?}", &p.sent[before..]);
        p.b.handle_message(p.now, Message::parse(&bye).unwrap(), ALICE.parse().unwrap());
        let (out, _) = drain(&mut p.b);
        assert_eq!(out.len(), 1);
        assert_eq!(parse(&out[0]).status(), Some(481));
    }

    #[test]
    fn our_aor_text_is_the_printed_aor() {
        for domain in [
            "example.test",
            "EXAMPLE.Test",
            "10.0.0.1",
            "::1",
            "[2001:db8::1]",
            "pbx.corp.net",
            "not a host",
        ] {
            let mut c = config("1001", 5070, 1);
            c.domain = domain.into();
            let ua = UserAgent::new(c);
            let typed = NameAddr::new(ua.aor());
            assert_eq!(ua.aor_text(), text_of(&typed, 64), "{domain}");
            let tagged = format!("{};tag=abc", ua.aor_text());
            assert_eq!(tagged, tagged_text(typed, "abc"), "{domain}");
        }
    }

    /// The group's caller headers: the From display name quoted (its `"` and `\\` escaped)
    /// and the extra headers after SIP's own, `{user}` and `{domain}` replaced; the REGISTER
    /// carries neither.
    #[test]
    fn the_callers_display_name_and_extra_headers_are_in_its_invites_only() {
        let (mut profile, identity) = config("1001", 5070, 3).split();
        profile.caller = CallerHeaders {
            display_name: Some("Desk {user} \"B\\2\"".into()),
            headers: vec![
                (
                    HeaderName::from_name("P-Asserted-Identity"),
                    "<sip:{user}@{domain}>".into(),
                ),
                (HeaderName::from_name("X-Test-Run"), "nightly".into()),
            ],
        };
        let mut ua = UserAgent::with_profile(Arc::new(profile), identity);
        let now = Instant::now();
        ua.register(now);
        ua.call(now, Uri::parse("sip:1002@example.test").unwrap(), None);
        let (out, _) = drain(&mut ua);
        let texts: Vec<String> = out
            .iter()
            .map(|o| String::from_utf8(o.bytes.to_vec()).unwrap())
            .collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(!texts[0].contains("Desk"), "{}", texts[0]);
        assert!(!texts[0].contains("P-Asserted-Identity"), "{}", texts[0]);
        let inv = parse(&out[1]);
        assert_eq!(inv.method(), Some(Method::Invite));
        let from = inv.headers.value(&HeaderName::From).unwrap();
        assert!(
            from.starts_with("\"Desk 1001 \\\"B\\\\2\\\"\" <sip:1001@example.test>;tag="),
            "{from}"
        );
        assert_eq!(
            inv.headers
                .value(&HeaderName::from_name("p-asserted-identity"))
                .unwrap(),
            "<sip:1001@example.test>"
        );
        assert_eq!(
            inv.headers
                .value(&HeaderName::from_name("X-Test-Run"))
                .unwrap(),
            "nightly"
        );
        // The From reads back as the name as configured, with our tag.
        let parsed = sip_msg::typed::NameAddrRef::parse(from).unwrap();
        assert_eq!(parsed.display().as_deref(), Some("Desk 1001 \"B\\2\""));
        assert!(parsed.tag().is_some(), "{from}");
    }

    #[test]
    fn register_and_invite_identifiers_are_written_as_printed_before() {
        // From, To and Call-ID are written into the builder's one string: the REGISTER's
        // From is the AOR with our tag, its To the AOR, its Call-ID ours (RFC 3261 §10.2),
        // for every form of domain; the INVITE's From carries the call's tag and its
        // Call-ID is a new one of ours (§8.1.1).
        for domain in [
            "example.test",
            "EXAMPLE.Test",
            "10.0.0.1",
            "::1",
            "not a host",
        ] {
            let mut c = config("1001", 5070, 3);
            c.domain = domain.into();
            let mut ua = UserAgent::new(c);
            let now = Instant::now();
            ua.register(now);
            let target = Uri::parse("sip:1002@example.test").unwrap();
            ua.call(now, target, None);
            let (out, _) = drain(&mut ua);
            let msgs: Vec<Message> = out.iter().map(parse).collect();
            assert_eq!(msgs.len(), 2, "{domain}");
            let aor = text_of(&NameAddr::new(ua.aor()), 64);
            let mut call_id = String::new();
            sip_msg::push_hex16(&mut call_id, ua.reg_call_id);
            call_id.push_str("@127.0.0.1");
            let mut tag = String::new();
            sip_msg::push_hex16(&mut tag, ua.reg_from_tag);
            let reg = &msgs[0];
            assert_eq!(reg.method(), Some(Method::Register));
            let value = |m: &Message, n: HeaderName| m.headers.value(&n).map(str::to_owned);
            assert_eq!(
                value(reg, HeaderName::From),
                Some(format!("{aor};tag={tag}")),
                "{domain}"
            );
            assert_eq!(value(reg, HeaderName::To), Some(aor.clone()), "{domain}");
            assert_eq!(reg.call_id(), Some(call_id.clone()), "{domain}");
            let inv = &msgs[1];
            assert_eq!(inv.method(), Some(Method::Invite));
            let from = value(inv, HeaderName::From).unwrap();
            let call_tag = from.strip_prefix(&format!("{aor};tag=")).unwrap();
            assert!(!call_tag.is_empty() && call_tag != tag, "{from}");
            assert_eq!(
                value(inv, HeaderName::To).as_deref(),
                Some("<sip:1002@example.test>")
            );
            let inv_id = inv.call_id().unwrap();
            let (hex, host) = inv_id.split_once('@').unwrap();
            assert_eq!(host, "127.0.0.1");
            assert!(
                hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                "{inv_id}"
            );
            assert_ne!(inv_id, call_id);
            // The typed views read them too (a domain that is no host gives no typed URI).
            assert!(
                domain == "not a host"
                    || (reg.from().is_some() && reg.to().is_some() && inv.from().is_some()),
                "{domain}"
            );
        }
    }

    #[test]
    fn our_contact_text_is_the_printed_contact() {
        for transport in ["UDP", "udp", "TCP", "TLS", "WSS"] {
            for host in ["127.0.0.1", "[2001:db8::1]", "pc.example.com"] {
                let mut c = config("1001", 5070, 1);
                c.transport = transport.into();
                c.local_host = Host::parse(host).unwrap();
                let ua = UserAgent::new(c);
                assert_eq!(
                    ua.contact_text(),
                    text_of(&ua.contact(), 96),
                    "{transport} {host}"
                );
                // Given as the first added header, it lands where `.contact` puts it.
                let b = || {
                    RequestBuilder::new(Method::Register, Uri::parse("sip:example.test").unwrap())
                        .via_text("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1".into())
                        .from_text("<sip:1001@example.test>;tag=1".into())
                        .to_text("<sip:1001@example.test>".into())
                        .call_id("c1")
                        .cseq(1)
                };
                let typed = b()
                    .contact(ua.contact())
                    .header(HeaderName::Expires, "60")
                    .build();
                let text = b()
                    .header(HeaderName::Contact, ua.contact_text())
                    .header(HeaderName::Expires, "60")
                    .build();
                assert_eq!(text.to_bytes(), typed.to_bytes());
            }
        }
        assert_eq!(decimal_text(0), "0");
        assert_eq!(decimal_text(u32::MAX), u32::MAX.to_string());
    }

    #[test]
    fn a_cseq_value_is_printed_as_the_typed_cseq_prints_it() {
        for method in [Method::Invite, Method::Register, Method::Bye, Method::Prack] {
            for seq in [0, 1, 9, 10, 4_294_967_295] {
                let typed = sip_msg::typed::CSeq {
                    seq,
                    method: method.clone(),
                }
                .to_string();
                assert_eq!(cseq_text(seq, &method), typed);
            }
        }
    }

    /// The caller's URI reported with an incoming call is read in place: the same text as
    /// the owned From's URI printed, for every form (display name, parameters, escapes,
    /// compact name, a tel URI).
    #[test]
    fn the_incoming_from_uri_is_the_owned_froms_uri_printed() {
        for from in [
            "<sip:alice@a.example>;tag=ft",
            "\"Alice A\" <sip:alice@a.example:5070;transport=tcp;lr>;x=1;tag=ft",
            "sip:alice@a.example;tag=ft",
            "<sip:al%69ce@[2001:db8::1]:5060;user=phone?subject=x>;tag=ft",
            "Alice <tel:+15551234567;phone-context=example.com>;tag=ft",
        ] {
            for name in ["From", "f"] {
                let raw = format!(
                    "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
{name}: {from}\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
                );
                let req = Message::parse(raw.as_bytes()).unwrap();
                let owned = req.from().unwrap().uri.to_string();
                assert_eq!(from_uri_text(&req), owned, "{from}");
                // The dialog's reading of the From gives the same text (and the same dialog).
                let with_contact = raw.replace(
                    "Content-Length",
                    "Contact: <sip:alice@192.0.2.1>\r\nContent-Length",
                );
                let req = Message::parse(with_contact.as_bytes()).unwrap();
                let mut noted = String::new();
                let d = Dialog::from_uas_noting(&req, "lt", Some(&mut noted)).unwrap();
                assert_eq!(noted, owned, "{from}");
                let plain = Dialog::from_uas(&req, "lt").unwrap();
                assert_eq!(format!("{d:?}"), format!("{plain:?}"));
            }
        }
        // A missing From: empty, as before.
        let req = Message::parse(
            b"OPTIONS sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
To: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(from_uri_text(&req), "");
        // And through a call: Bob is told Alice's URI.
        let mut p = Pair::new();
        p.a.call(p.now, Pair::bob_uri(), None);
        p.run(Duration::from_millis(50));
        assert!(
            p.events_b.iter().any(|e| matches!(e,
                UaEvent::Call(_, CallEvent::Incoming { from, .. }) if from == "sip:alice@example.test")),
            "{:?}",
            p.events_b
        );
    }

    #[test]
    fn poll_timeout_looks_at_the_calls_only_while_one_retransmits() {
        let mut p = Pair::new();
        // Five answered, ended calls held (not forgotten): none retransmits.
        for _ in 0..5 {
            let call =
                p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
            p.run(Duration::from_millis(50));
            let bob_call = *incoming(&p.events_b).last().unwrap();
            p.b.answer(p.now, bob_call, None);
            p.run(Duration::from_millis(50));
            p.a.hangup(p.now, call);
            p.run(Duration::from_millis(50));
        }
        assert!(!p.b.flag(CALL_TIMERS) && !p.a.flag(CALL_TIMERS));
        assert_eq!(p.b.calls.len(), 5);
        // Bob answers a sixth call and its ACK is lost: his 2xx retransmission (T1) is his
        // next deadline, before any finished transaction's.
        p.drop = Box::new(|from_a, m, _| from_a && m.method() == Some(Method::Ack));
        p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = *incoming(&p.events_b).last().unwrap();
        p.b.answer(p.now, bob_call, None);
        let answered = p.now;
        assert!(p.b.flag(CALL_TIMERS));
        assert_eq!(
            p.b.poll_timeout(),
            Some(answered + Duration::from_millis(500))
        );
        // The next ACK gets through: the retransmissions stop, the flag falls at the end of
        // the handling and the next deadline is a finished transaction's again.
        p.run(Duration::from_millis(400));
        p.drop = Box::new(|_, _, _| false);
        p.run(Duration::from_millis(800));
        assert_eq!(p.b.call_state(bob_call), Some(CallState::Confirmed));
        assert!(!p.b.flag(CALL_TIMERS));
        let next = p.b.poll_timeout().unwrap();
        assert_eq!(Some(next), p.b.scan_txn_next());
        assert!(
            next > answered + Duration::from_secs(4),
            "{:?}",
            next - answered
        );
    }

    #[test]
    fn an_ended_call_still_acks_a_2xx_retransmission_and_its_invite_still_takes_a_cancel() {
        let mut p = Pair::new();
        let call = p.a.call(p.now, Pair::bob_uri(), None);
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.answer(p.now, bob_call, None);
        p.run(Duration::from_millis(100));
        let ack = last_sent(&p, true, "ACK");
        let ok = last_sent(&p, false, "200 OK (INVITE)");
        let invite = last_sent(&p, true, "INVITE");
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Terminated));
        // Within Timer M the INVITE's transaction passes a 2xx retransmission up: the ended
        // call sends its ACK again (RFC 3261 §13.2.2.4).
        p.a.handle_message(p.now, Message::parse(&ok).unwrap(), BOB.parse().unwrap());
        let (out, _) = drain(&mut p.a);
        assert_eq!(out.len(), 1);
        assert!(out[0].retransmission);
        assert_eq!(out[0].bytes, ack);
        // A CANCEL of the answered INVITE, while its transaction waits out Timer L, gets
        // 200 and changes nothing (§9.2); once the transaction is gone, 481.
        let cancel = String::from_utf8(invite.to_vec())
            .unwrap()
            .replacen("INVITE", "CANCEL", 1)
            .replace("1 INVITE", "1 CANCEL");
        let send_cancel = |p: &mut Pair| {
            p.b.handle_message(
                p.now,
                Message::parse(cancel.as_bytes()).unwrap(),
                ALICE.parse().unwrap(),
            );
            let (out, ev) = drain(&mut p.b);
            assert_eq!(out.len(), 1, "{ev:?}");
            assert!(ev.is_empty(), "{ev:?}");
            parse(&out[0]).status()
        };
        assert_eq!(send_cancel(&mut p), Some(200));
        assert_eq!(p.b.call_state(bob_call), Some(CallState::Terminated));
        p.run(Duration::from_secs(40));
        assert_eq!(send_cancel(&mut p), Some(481));
        // After Timer M the ended call is not reached any more: nothing is sent.
        p.a.handle_message(p.now, Message::parse(&ok).unwrap(), BOB.parse().unwrap());
        let (out, _) = drain(&mut p.a);
        assert!(out.is_empty(), "{out:?}");
        // Forgotten, the handles are unknown.
        p.a.forget_call(call);
        p.b.forget_call(bob_call);
        assert_eq!(
            (p.a.call_state(call), p.b.call_state(bob_call)),
            (None, None)
        );
        assert!(p.a.calls.is_empty() && p.b.calls.is_empty());
    }

    /// `reject_with_warning`: the final response carries the Warning as given (RFC 3261
    /// §20.43, e.g. why an offer was not acceptable), and the call ends at the caller.
    #[test]
    fn a_rejection_can_say_why_in_a_warning() {
        let mut p = Pair::new();
        let call = p.a.call(p.now, Pair::bob_uri(), None);
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.reject_with_warning(p.now, bob_call, 488, "305 sipmeter \"srtp is required\"");
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Terminated));
        let refusal = last_sent(&p, false, "488");
        let text = String::from_utf8_lossy(&refusal);
        assert!(
            text.starts_with("SIP/2.0 488 Not Acceptable Here\r\n")
                && text.contains("\r\nWarning: 305 sipmeter \"srtp is required\"\r\n"),
            "{text}"
        );
    }

    #[test]
    fn finished_transactions_are_kept_compact_and_still_answer_retransmissions() {
        let mut p = Pair::new();
        let call = p.a.call(p.now, Pair::bob_uri(), None);
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.reject(p.now, bob_call, 486);
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Terminated));
        // Alice's INVITE waits out Timer D, Bob's (ACKed) Timer I: both in compact form,
        // out of the lists the drains walk.
        assert!(p.a.client.is_empty() && p.b.server.is_empty());
        let timers =
            |ua: &UserAgent| -> Vec<Timer> { ua.finished.iter().map(|f| f.txn.timer()).collect() };
        assert_eq!(timers(&p.a), [Timer::D]);
        assert_eq!(timers(&p.b), [Timer::I]);
        // Room for that one record only (a phone holds one at a time for much of a call, and
        // a fleet holds one per phone at its peak): 176 bytes, not the 704 of `VecDeque`'s
        // first growth.
        assert_eq!((p.a.finished.capacity(), p.b.finished.capacity()), (1, 1));
        // A retransmitted 486 gets the same ACK again, to where the INVITE went.
        let ack = last_sent(&p, true, "ACK");
        let busy = last_sent(&p, false, "486");
        p.a.handle_message(p.now, Message::parse(&busy).unwrap(), BOB.parse().unwrap());
        let (out, ev) = drain(&mut p.a);
        assert_eq!(out.len(), 1, "{ev:?}");
        assert_eq!(out[0].destination, Destination::Registrar);
        assert!(out[0].retransmission);
        assert_eq!(out[0].bytes, ack);
        // A retransmitted ACK is absorbed by Bob's confirmed transaction.
        p.b.handle_message(p.now, Message::parse(&ack).unwrap(), ALICE.parse().unwrap());
        let (out, ev) = drain(&mut p.b);
        assert!(out.is_empty() && ev.is_empty(), "{out:?} {ev:?}");
        // The records end at their timers, reported as the whole transactions reported them.
        p.run(Duration::from_secs(40));
        let fired = |ev: &[UaEvent], t: Timer| {
            ev.iter().any(|e| {
                matches!(e, UaEvent::TimerFired { timer, method: Method::Invite } if *timer == t)
            })
        };
        assert!(fired(&p.events_a, Timer::D), "{:?}", p.events_a);
        assert!(fired(&p.events_b, Timer::I), "{:?}", p.events_b);
        assert!(p.a.finished.is_empty() && p.a.finished.capacity() == 0);
        assert!(p.b.finished.is_empty() && p.b.finished.capacity() == 0);
        assert_eq!((p.a.poll_timeout(), p.b.poll_timeout()), (None, None));
    }

    #[test]
    fn lost_invite_is_retransmitted_and_duplicates_absorbed() {
        let mut p = Pair::new();
        // Drop the first INVITE and the first 100 Trying: the caller retransmits at 500 ms,
        // and the callee answers the retransmission with the 100 again.
        p.drop = Box::new(|from_a, m, n| {
            n == 0
                && ((from_a && m.method() == Some(Method::Invite))
                    || (!from_a && m.status() == Some(100)))
        });
        p.a.call(p.now, Pair::bob_uri(), None);
        p.run(Duration::from_millis(1600));
        assert_eq!(
            incoming(&p.events_b).len(),
            1,
            "one call despite the duplicate INVITE"
        );
        let invites = p
            .sent
            .iter()
            .filter(|(a, s)| *a && s.starts_with("INVITE"))
            .count();
        assert_eq!(invites, 3, "sent at 0, 500 ms and 1.5 s: {:?}", p.sent);
        assert!(p.events_a.iter().any(|e| matches!(
            e,
            UaEvent::Retransmitted {
                method: Method::Invite,
                count: 1
            }
        )));
        assert!(has(&p.events_a, |c| matches!(c, CallEvent::Trying)));
    }

    /// Each incoming call answers through its own INVITE transaction (found by the call),
    /// whatever the order, and a CANCEL reaches the right call.
    #[test]
    fn incoming_calls_answer_through_their_own_transactions() {
        let mut p = Pair::new();
        let calls: Vec<CallId> = (0..3)
            .map(|_| {
                p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")))
            })
            .collect();
        p.run(Duration::from_millis(50));
        let at_bob = incoming(&p.events_b);
        assert_eq!(at_bob.len(), 3);
        let call_id_of = |p: &Pair, bob_call: CallId| {
            p.b.call_ref(bob_call)
                .and_then(|c| c.dialog.as_ref())
                .map(|d| d.id.call_id.clone())
                .unwrap()
        };
        let ids: Vec<String> = at_bob.iter().map(|&c| call_id_of(&p, c)).collect();
        // Bob answers the third, rejects the first, rings the second; Alice cancels it.
        p.b.answer(p.now, at_bob[2], None);
        p.collect();
        let ok = last_from_b(&p, |m| m.status() == Some(200));
        assert_eq!(Message::parse(&ok).unwrap().call_id().unwrap(), ids[2]);
        p.b.reject(p.now, at_bob[0], 486);
        p.collect();
        let busy = last_from_b(&p, |m| m.status() == Some(486));
        assert_eq!(Message::parse(&busy).unwrap().call_id().unwrap(), ids[0]);
        p.b.ring(p.now, at_bob[1]);
        p.run(Duration::from_millis(50));
        p.a.hangup(p.now, calls[1]);
        p.run(Duration::from_millis(100));
        let terminated = last_from_b(&p, |m| m.status() == Some(487));
        assert_eq!(
            Message::parse(&terminated).unwrap().call_id().unwrap(),
            ids[1]
        );
        assert_eq!(p.b.call_state(at_bob[1]), Some(CallState::Terminated));
        assert_eq!(p.a.call_state(calls[2]), Some(CallState::Confirmed));
        assert_eq!(p.b.call_state(at_bob[2]), Some(CallState::Confirmed));
    }

    #[test]
    fn cancel_before_any_provisional_waits_for_one() {
        let mut p = Pair::new();
        // Bob's 100 Trying is lost, so Alice has seen no provisional when she hangs up.
        p.drop = Box::new(|from_a, m, _| !from_a && m.status() == Some(100));
        let call = p.a.call(p.now, Pair::bob_uri(), None);
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(50));
        assert!(
            !p.sent.iter().any(|(_, s)| s.starts_with("CANCEL")),
            "§9.1: no CANCEL before a provisional"
        );
        let bob_call = incoming(&p.events_b)[0];
        p.b.ring(p.now, bob_call);
        p.run(Duration::from_millis(100));
        assert!(p.sent.iter().any(|(a, s)| *a && s.starts_with("CANCEL")));
        assert!(p.sent.iter().any(|(a, s)| !*a && s == "200 OK (CANCEL)"));
        assert!(
            p.sent
                .iter()
                .any(|(a, s)| !*a && s == "487 Request Terminated (INVITE)")
        );
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Failed { code: 487, .. }
        )));
        assert!(has(&p.events_b, |c| matches!(
            c,
            CallEvent::Failed { code: 487, .. }
        )));
        p.run(Duration::from_secs(1));
        assert!(
            p.sent.iter().any(|(a, s)| *a && s.starts_with("ACK")),
            "487 is ACKed in the transaction"
        );
    }

    #[test]
    fn answer_crossing_cancel_is_acked_then_byed() {
        let mut p = Pair::new();
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.ring(p.now, bob_call);
        p.run(Duration::from_millis(15));
        // Both act at the same instant: Bob's 200 and Alice's CANCEL cross on the wire.
        p.b.answer(p.now, bob_call, None);
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(200));
        let alice: Vec<&str> = p
            .sent
            .iter()
            .filter(|(a, _)| *a)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(
            alice,
            [
                "INVITE sip:bob@127.0.0.1:5062",
                "CANCEL sip:bob@127.0.0.1:5062",
                "ACK sip:bob@127.0.0.1:5062",
                "BYE sip:bob@127.0.0.1:5062"
            ]
        );
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Ended { code: 200, .. }
        )));
        assert!(has(&p.events_b, |c| matches!(
            c,
            CallEvent::Ended {
                by_remote: true,
                ..
            }
        )));
    }

    #[test]
    fn unanswered_bye_times_out_with_retransmissions() {
        let mut p = Pair::new();
        p.drop = Box::new(|from_a, m, _| {
            !from_a && m.status() == Some(200) && m.method() == Some(Method::Bye)
        });
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.answer(p.now, bob_call, None);
        p.run(Duration::from_millis(100));
        p.a.hangup(p.now, call);
        p.run(Duration::from_secs(40));
        let byes = p
            .sent
            .iter()
            .filter(|(a, s)| *a && s.starts_with("BYE"))
            .count();
        assert_eq!(byes, 11, "BYE plus 10 Timer E retransmissions in 32 s");
        assert!(has(&p.events_a, |c| matches!(
            c,
            CallEvent::Ended {
                by_remote: false,
                code: 408
            }
        )));
        assert!(p.events_a.iter().any(|e| matches!(
            e,
            UaEvent::TimerFired {
                timer: Timer::F,
                method: Method::Bye
            }
        )));
    }

    #[test]
    fn options_unknown_methods_and_stray_requests() {
        let mut b = UserAgent::new(config("bob", 5062, 2));
        let now = Instant::now();
        let src: SocketAddr = ALICE.parse().unwrap();
        let req = |m: &str, to_tag: &str| {
            Message::parse(format!("{m} sip:bob@127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK{m}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>{to_tag}\r\nCall-ID: x1\r\nCSeq: 5 {m}\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap()
        };
        b.handle_message(now, req("OPTIONS", ""), src);
        b.handle_message(now, req("SUBSCRIBE", ""), src);
        b.handle_message(now, req("BYE", ";tag=zz"), src);
        let (out, _) = drain(&mut b);
        let got: Vec<(u16, Option<String>)> = out
            .iter()
            .map(|o| {
                let m = parse(o);
                (
                    m.status().unwrap(),
                    m.headers.value(&HeaderName::Allow).map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (200, Some(ALLOW.into())),
                (405, Some(ALLOW.into())),
                (481, None)
            ]
        );
        assert!(
            out.iter()
                .all(|o| o.destination == Destination::Source(src))
        );
    }

    /// The group's User-Agent text (shared, not copied per message) is printed as the
    /// User-Agent of our requests and the Server of our responses, and Allow as the constant.
    #[test]
    fn user_agent_and_server_print_the_groups_text() {
        let mut b = UserAgent::new(config("bob", 5062, 2));
        let now = Instant::now();
        let src: SocketAddr = ALICE.parse().unwrap();
        b.register(now);
        let options = Message::parse(b"OPTIONS sip:bob@127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKo1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\nCall-ID: o1\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n").unwrap();
        b.handle_message(now, options, src);
        let (out, _) = drain(&mut b);
        let texts: Vec<String> = out
            .iter()
            .map(|o| String::from_utf8(o.bytes.to_vec()).unwrap())
            .collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].starts_with("REGISTER "), "{}", texts[0]);
        assert!(
            texts[0].contains("\r\nUser-Agent: sipmeter-test\r\n"),
            "{}",
            texts[0]
        );
        assert!(texts[1].starts_with("SIP/2.0 200 OK\r\n"), "{}", texts[1]);
        assert!(
            texts[1].contains("\r\nServer: sipmeter-test\r\n"),
            "{}",
            texts[1]
        );
        assert!(
            texts[1].contains(&format!("\r\nAllow: {ALLOW}\r\n")),
            "{}",
            texts[1]
        );
        // The messages are printed: no header holds the group's text any more.
        assert_eq!(Arc::strong_count(&b.profile.user_agent), 1);
    }

    /// A scripted registrar: answers each REGISTER with the next scripted response.
    fn answer_register(
        ua: &mut UserAgent,
        now: Instant,
        code: u16,
        extra: &[(&str, &str)],
    ) -> Message {
        let (out, _) = drain(ua);
        let req = out
            .iter()
            .map(parse)
            .find(|m| m.method() == Some(Method::Register))
            .expect("a REGISTER was sent");
        let mut resp = Message::response_to(&req, code, reason_phrase(code), Some("srv"));
        for (n, v) in extra {
            resp.headers.push(Header::new(*n, *v));
        }
        ua.handle_message(now, resp, SERVER.parse().unwrap());
        req
    }

    #[test]
    fn the_granted_lifetime_is_our_contacts() {
        // Other phones' contacts (another port, user or host) do not count; a contact whose
        // `expires` is not delta-seconds (quoted) is unreadable, so the lifetime asked (300)
        // stands; without our contact, Expires gives the lifetime.
        for (contacts, expires, granted) in [
            (
                "<sip:alice@127.0.0.1:5062>;expires=50, <sip:bob@127.0.0.1:5061>;expires=60, <sip:alice@127.0.0.2:5061>;expires=70, <sip:alice@127.0.0.1:5061>;expires=120",
                None,
                120,
            ),
            ("<sip:alice@127.0.0.1:5061>;expires=\"90\"", None, 300),
            ("<sip:alice@127.0.0.1:5062>;expires=50", Some("200"), 200),
        ] {
            let mut ua = UserAgent::new(config("alice", 5061, 1));
            let t0 = Instant::now();
            ua.register(t0);
            let mut extra = vec![("Contact", contacts)];
            if let Some(e) = expires {
                extra.push(("Expires", e));
            }
            answer_register(&mut ua, t0, 200, &extra);
            let (_, ev) = drain(&mut ua);
            assert!(
                matches!(ev[..], [UaEvent::Registered { expires, .. }] if expires == granted),
                "{contacts}: {ev:?}"
            );
        }
    }

    #[test]
    fn register_refreshes_before_expiry_and_unregisters() {
        let mut ua = UserAgent::new(config("alice", 5061, 1));
        let t0 = Instant::now();
        ua.register(t0);
        let req = answer_register(
            &mut ua,
            t0,
            200,
            &[("Contact", "<sip:alice@127.0.0.1:5061>;expires=120")],
        );
        assert_eq!(req.headers.value(&HeaderName::Expires), Some("300"));
        assert_eq!(
            req.request_uri().unwrap().to_string(),
            "sip:example.test:5060;transport=udp"
        );
        let (_, ev) = drain(&mut ua);
        assert!(matches!(
            ev[..],
            [UaEvent::Registered {
                expires: 120,
                refresh: false
            }]
        ));
        // Granted 120 s: the refresh goes out 32 s before expiry, not earlier.
        let mut at = t0;
        while let Some(t) = ua.poll_timeout() {
            at = t;
            ua.handle_timeout(t);
            if ua.queues.as_ref().is_some_and(|q| {
                q.out
                    .iter()
                    .any(|o| parse(o).method() == Some(Method::Register))
            }) {
                break;
            }
        }
        assert_eq!(at, t0 + Duration::from_secs(88));
        let refresh = answer_register(
            &mut ua,
            t0 + Duration::from_secs(88),
            200,
            &[("Expires", "60")],
        );
        assert_eq!(
            refresh.call_id(),
            req.call_id(),
            "same Call-ID across refreshes"
        );
        assert_eq!(refresh.cseq().unwrap().seq, req.cseq().unwrap().seq + 1);
        let (_, ev) = drain(&mut ua);
        assert!(matches!(
            ev[..],
            [UaEvent::Registered {
                expires: 60,
                refresh: true
            }]
        ));
        ua.unregister(t0 + Duration::from_secs(100));
        let un = answer_register(&mut ua, t0 + Duration::from_secs(100), 200, &[]);
        assert_eq!(un.headers.value(&HeaderName::Expires), Some("0"));
        assert_eq!(ua.registration(), RegState::Unregistered);
    }

    #[test]
    fn register_423_uses_min_expires_and_403_fails() {
        let mut ua = UserAgent::new(config("alice", 5061, 1));
        let t0 = Instant::now();
        ua.register(t0);
        answer_register(&mut ua, t0, 423, &[("Min-Expires", "3600")]);
        let retry = answer_register(&mut ua, t0, 403, &[]);
        assert_eq!(retry.headers.value(&HeaderName::Expires), Some("3600"));
        let (_, ev) = drain(&mut ua);
        assert!(
            matches!(&ev[..], [UaEvent::RegistrationFailed { code: 403, .. }]),
            "{ev:?}"
        );
        assert_eq!(ua.registration(), RegState::Failed);
    }

    #[test]
    fn register_timeout_is_408_after_timer_f() {
        let mut ua = UserAgent::new(config("alice", 5061, 1));
        let t0 = Instant::now();
        ua.register(t0);
        let mut sent = 0;
        while let Some(t) = ua.poll_timeout() {
            ua.handle_timeout(t);
            sent += std::iter::from_fn(|| ua.poll_transmit()).count();
        }
        let ev: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert_eq!(sent, 11, "the REGISTER and ten retransmissions");
        assert!(
            matches!(
                ev.last(),
                Some(UaEvent::RegistrationFailed { code: 408, .. })
            ),
            "{ev:?}"
        );
    }

    /// RFC 3263 §4.3: a timeout is a failure to move to the next server only "if the
    /// transaction layer times out without ever having received any response, provisional or
    /// final". A REGISTER answered 100 Trying whose Timer F then fires must not be reported as
    /// "no response (Timer F fired)", the reason the agent fails over on; a transport error
    /// still is, provisional or not (§4.3: transport failures always count).
    #[test]
    fn register_timer_f_after_a_provisional_is_not_no_response() {
        let reason_after = |provisional: bool, transport_error: bool| {
            let mut ua = UserAgent::new(config("alice", 5061, 1));
            let t0 = Instant::now();
            ua.register(t0);
            if provisional {
                answer_register(&mut ua, t0, 100, &[]);
            }
            if transport_error {
                ua.handle_transport_error(t0 + Duration::from_secs(1));
            }
            while let Some(t) = ua.poll_timeout() {
                ua.handle_timeout(t);
                while ua.poll_transmit().is_some() {}
            }
            let ev: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
            match ev.last() {
                Some(UaEvent::RegistrationFailed { code: 408, reason }) => reason.clone(),
                other => panic!("{other:?} in {ev:?}"),
            }
        };
        assert_eq!(reason_after(false, false), "no response (Timer F fired)");
        let r = reason_after(true, false);
        assert!(
            !r.starts_with("no response (Timer") && !r.starts_with("no final response (Timer"),
            "{r}"
        );
        assert!(r.contains("provisional") && r.contains("Timer F"), "{r}");
        assert_eq!(reason_after(true, true), "no response (Timer F fired)");
        assert_eq!(reason_after(false, true), "no response (Timer F fired)");
    }

    #[test]
    fn outbound_proxy_route_on_invite_only() {
        let mut cfg = config("alice", 5061, 1);
        cfg.outbound_proxy =
            Some(SipUri::new(Host::parse("proxy.example.com").unwrap()).with_port(5060));
        let mut ua = UserAgent::new(cfg);
        let now = Instant::now();
        ua.register(now);
        ua.call(now, Uri::parse("sip:1002@example.test").unwrap(), None);
        let (out, _) = drain(&mut ua);
        let reg = parse(&out[0]);
        let inv = parse(&out[1]);
        assert_eq!(out[0].destination, Destination::Registrar);
        assert!(
            reg.headers.get(&HeaderName::Route).is_none(),
            "REGISTER is not routed through the proxy"
        );
        assert_eq!(out[1].destination, Destination::OutboundProxy);
        assert_eq!(
            inv.headers.value(&HeaderName::Route),
            Some("<sip:proxy.example.com:5060;lr>")
        );
    }

    /// RFC 5626 outbound: the REGISTER carries the instance and reg-id and `Supported: path,
    /// outbound`; `Require: outbound` and Flow-Timer in the 2xx are read; the calls placed
    /// afterwards carry `ob` in their Contact URI.
    #[test]
    fn outbound_register_carries_instance_and_reg_id_and_calls_get_ob() {
        let mut ua = UserAgent::new(config("alice", 5061, 1));
        let urn = crate::outbound::instance_urn(9);
        ua.enable_outbound(urn.clone());
        let t0 = Instant::now();
        ua.register(t0);
        let req = answer_register(
            &mut ua,
            t0,
            200,
            &[
                ("Contact", "<sip:alice@127.0.0.1:5061>;expires=120;reg-id=1"),
                ("Require", "outbound"),
                ("Flow-Timer", "25"),
            ],
        );
        assert_eq!(
            req.headers.value(&HeaderName::Contact),
            Some(&*format!(
                "<sip:alice@127.0.0.1:5061>;reg-id=1;+sip.instance=\"<{urn}>\""
            ))
        );
        assert_eq!(
            req.headers.value(&HeaderName::Supported),
            Some("path, outbound")
        );
        assert!(req.headers.get(&HeaderName::Route).is_none());
        assert_eq!(
            ua.outbound_grant(),
            Some(Grant {
                in_use: true,
                flow_timer: Some(25)
            })
        );
        let (_, ev) = drain(&mut ua);
        assert!(matches!(ev[..], [UaEvent::Registered { expires: 120, .. }]));
        // A failed flow: registered again now, reported as a refresh, the same instance.
        ua.refresh_registration(t0);
        let again = answer_register(&mut ua, t0, 200, &[("Require", "outbound")]);
        assert!(
            again
                .headers
                .value(&HeaderName::Contact)
                .is_some_and(|c| c.contains(&urn))
        );
        let (_, ev) = drain(&mut ua);
        assert!(
            matches!(ev[..], [UaEvent::Registered { refresh: true, .. }]),
            "{ev:?}"
        );
        ua.call(t0, Uri::parse("sip:1002@example.test").unwrap(), None);
        let (out, _) = drain(&mut ua);
        let inv = parse(&out[0]);
        assert_eq!(
            inv.headers.value(&HeaderName::Contact),
            Some("<sip:alice@127.0.0.1:5061;ob>")
        );
    }

    /// A registrar without outbound: no `Require: outbound`, so no `ob`; with an outbound
    /// proxy the outbound REGISTER goes through it with its Route (RFC 5626 §4.2.1), and
    /// without outbound it still does not (the seed's rule).
    #[test]
    fn outbound_register_goes_through_the_proxy_and_no_grant_means_no_ob() {
        let mut cfg = config("alice", 5061, 1);
        cfg.outbound_proxy =
            Some(SipUri::new(Host::parse("proxy.example.com").unwrap()).with_port(5060));
        let t0 = Instant::now();
        let mut first = UserAgent::new(cfg.clone());
        first.enable_outbound(crate::outbound::instance_urn(1));
        first.register(t0);
        let (out, _) = drain(&mut first);
        assert_eq!(out[0].destination, Destination::OutboundProxy);
        let mut ua = UserAgent::new(cfg);
        ua.enable_outbound(crate::outbound::instance_urn(1));
        ua.register(t0);
        let reg = answer_register(
            &mut ua,
            t0,
            200,
            &[("Contact", "<sip:alice@127.0.0.1:5061>;expires=120")],
        );
        // RFC 5626: `ob` on the edge proxy's Route asks it to keep the flow.
        assert_eq!(
            reg.headers.value(&HeaderName::Route),
            Some("<sip:proxy.example.com:5060;lr;ob>")
        );
        assert_eq!(
            ua.outbound_grant(),
            Some(Grant {
                in_use: false,
                flow_timer: None
            })
        );
        drain(&mut ua);
        ua.call(t0, Uri::parse("sip:1002@example.test").unwrap(), None);
        let (out, _) = drain(&mut ua);
        let inv = parse(&out[0]);
        assert_eq!(
            inv.headers.value(&HeaderName::Contact),
            Some("<sip:alice@127.0.0.1:5061>")
        );
        assert_eq!(
            inv.headers.value(&HeaderName::Route),
            Some("<sip:proxy.example.com:5060;lr>"),
            "not in use: no ob"
        );
    }

    /// Outbound in use through an edge proxy: the INVITE's Route carries `ob` as its Contact
    /// does.
    #[test]
    fn outbound_in_use_puts_ob_on_the_invites_route() {
        let mut cfg = config("alice", 5061, 1);
        cfg.outbound_proxy =
            Some(SipUri::new(Host::parse("proxy.example.com").unwrap()).with_port(5060));
        let t0 = Instant::now();
        let mut ua = UserAgent::new(cfg);
        ua.enable_outbound(crate::outbound::instance_urn(1));
        ua.register(t0);
        answer_register(&mut ua, t0, 200, &[("Require", "outbound")]);
        drain(&mut ua);
        ua.call(t0, Uri::parse("sip:1002@example.test").unwrap(), None);
        let (out, _) = drain(&mut ua);
        let inv = parse(&out[0]);
        assert_eq!(out[0].destination, Destination::OutboundProxy);
        assert_eq!(
            inv.headers.value(&HeaderName::Route),
            Some("<sip:proxy.example.com:5060;lr;ob>")
        );
        assert!(
            inv.headers
                .value(&HeaderName::Contact)
                .is_some_and(|c| c.ends_with(";ob>")),
            "{inv}"
        );
    }

    /// Over a stream transport the outbound proxy has a connection of its own: the INVITE's
    /// Via and Contact carry that connection's address, REGISTER keeps the registrar's.
    #[test]
    fn a_call_through_the_proxy_connection_carries_its_address() {
        let mut cfg = config("alice", 41000, 1);
        cfg.transport = "TCP".into();
        cfg.reliable = true;
        cfg.outbound_proxy = Some(
            SipUri::new(Host::parse("127.0.0.1").unwrap())
                .with_port(5070)
                .with_param("transport", Some("tcp")),
        );
        let mut ua = UserAgent::new(cfg);
        ua.set_proxy_local(Some((Host::parse("127.0.0.1").unwrap(), 42000)));
        let now = Instant::now();
        ua.register(now);
        ua.call(now, Uri::parse("sip:1002@example.test").unwrap(), None);
        let (out, _) = drain(&mut ua);
        let (reg, inv) = (parse(&out[0]), parse(&out[1]));
        let via = |m: &Message| m.headers.value(&HeaderName::Via).unwrap().to_owned();
        let contact = |m: &Message| m.headers.value(&HeaderName::Contact).unwrap().to_owned();
        assert!(
            via(&reg).starts_with("SIP/2.0/TCP 127.0.0.1:41000;"),
            "{}",
            via(&reg)
        );
        assert!(contact(&reg).contains("@127.0.0.1:41000;transport=tcp>"));
        assert!(
            via(&inv).starts_with("SIP/2.0/TCP 127.0.0.1:42000;"),
            "{}",
            via(&inv)
        );
        assert_eq!(contact(&inv), "<sip:alice@127.0.0.1:42000;transport=tcp>");
        assert_eq!(
            inv.headers.value(&HeaderName::Route),
            Some("<sip:127.0.0.1:5070;transport=tcp;lr>")
        );
        assert_eq!(out[1].destination, Destination::OutboundProxy);
    }

    // ---- review of branch `keep`: fixed on branch `keepfix` ----

    /// The bytes of the last message Bob sent that `pick` selects.
    fn last_from_b(p: &Pair, pick: impl Fn(&Message) -> bool) -> Bytes {
        p.sent_bytes
            .iter()
            .rev()
            .find(|(a, b)| !*a && pick(&Message::parse(b).unwrap()))
            .map(|(_, b)| b.clone())
            .expect("sent by Bob")
    }

    /// A 2xx to our re-INVITE that arrives after the call ended is still ACKed (RFC 3261
    /// §13.2.2.4: the UAC core MUST ACK every 2xx): the re-INVITE's transaction kept a copy of
    /// the dialog when the call ended (the ended call keeps none).
    #[test]
    fn a_reinvite_2xx_arriving_after_the_call_ended_is_still_acked() {
        let mut p = Pair::new();
        let (call, _bob_call) = confirmed_call(&mut p);
        let is_reinvite_ok = |m: &Message| {
            m.status() == Some(200)
                && m.cseq()
                    .is_some_and(|c| c.method == Method::Invite && c.seq > 1)
        };
        // Bob's 200 to the re-INVITE is delayed (held off the wire); Alice hangs up meanwhile.
        p.drop = Box::new(move |from_a, m, _| !from_a && is_reinvite_ok(m));
        assert!(p.a.reinvite(p.now, call, Bytes::from_static(b"v=0\r\na=sendonly\r\n")));
        p.run(Duration::from_millis(30));
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Terminated));
        // The delayed 200 (re-INVITE) arrives now.
        let ok = last_from_b(&p, is_reinvite_ok);
        p.a.handle_message(p.now, Message::parse(&ok).unwrap(), BOB.parse().unwrap());
        let (out, ev) = drain(&mut p.a);
        assert!(
            out.iter().any(|o| o.bytes.starts_with(b"ACK ")),
            "no ACK for the 2xx: out {out:?} events {ev:?}"
        );
        // The ACK is the 2xx's (its CSeq number, method ACK); a retransmitted 2xx gets the
        // same ACK again.
        let ack = out.iter().find(|o| o.bytes.starts_with(b"ACK ")).unwrap();
        let cseq = parse(ack).cseq().unwrap();
        let ok_seq = Message::parse(&ok).unwrap().cseq().unwrap().seq;
        assert_eq!((cseq.method, cseq.seq), (Method::Ack, ok_seq));
        p.a.handle_message(p.now, Message::parse(&ok).unwrap(), BOB.parse().unwrap());
        let (again, _) = drain(&mut p.a);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].bytes, ack.bytes);
    }

    /// A retransmitted CANCEL is answered by its own server transaction (§17.2.2: the same
    /// response again, reported as a retransmission), not anew (another 200 with another To
    /// tag, and one more finished record per copy).
    #[test]
    fn a_retransmitted_cancel_gets_the_same_200_again() {
        let mut p = Pair::new();
        let call = p.a.call(p.now, Pair::bob_uri(), None);
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.ring(p.now, bob_call);
        p.run(Duration::from_millis(50));
        p.a.hangup(p.now, call);
        p.run(Duration::from_millis(50));
        let cancel = last_sent(&p, true, "CANCEL");
        let ok = last_from_b(&p, |m| {
            m.status() == Some(200) && m.cseq().is_some_and(|c| c.method == Method::Cancel)
        });
        p.b.handle_message(
            p.now,
            Message::parse(&cancel).unwrap(),
            ALICE.parse().unwrap(),
        );
        let (out, ev) = drain(&mut p.b);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].retransmission && out[0].bytes == ok,
            "first 200:\n{}\nagain:\n{}\nevents {ev:?}",
            String::from_utf8_lossy(&ok),
            String::from_utf8_lossy(&out[0].bytes)
        );
    }

    /// A retransmitted 2xx to a re-INVITE (our first ACK lost) is answered with the same ACK
    /// again (kept by the re-INVITE's finished record), not a new one with a new branch, and
    /// is not reported again as `Modified { code: 200 }` (a tester would count it twice).
    #[test]
    fn a_retransmitted_reinvite_2xx_is_reported_once() {
        let mut p = Pair::new();
        let (call, _) = confirmed_call(&mut p);
        assert!(p.a.reinvite(p.now, call, Bytes::from_static(b"v=0\r\na=sendonly\r\n")));
        p.run(Duration::from_millis(100));
        let is_reinvite_ok = |m: &Message| {
            m.status() == Some(200)
                && m.cseq()
                    .is_some_and(|c| c.method == Method::Invite && c.seq > 1)
        };
        let ok = last_from_b(&p, is_reinvite_ok);
        let first_ack = last_sent(&p, true, "ACK");
        let modified = |ev: &[UaEvent]| {
            ev.iter()
                .filter(|e| matches!(e, UaEvent::Call(_, CallEvent::Modified { code: 200, .. })))
                .count()
        };
        assert_eq!(modified(&p.events_a), 1);
        // The 2xx again, within Timer M.
        p.a.handle_message(p.now, Message::parse(&ok).unwrap(), BOB.parse().unwrap());
        let (out, ev) = drain(&mut p.a);
        assert_eq!(modified(&ev), 0, "reported again: {ev:?}");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, first_ack, "another ACK");
    }

    /// An ACK that matches the INVITE server transaction in Accepted (a UAC that reuses the
    /// INVITE's branch for its 2xx ACK) is passed to the TU (RFC 6026 §8.7), not absorbed:
    /// else Bob never sees the ACK, retransmits his 2xx for 64*T1, then ends the call with
    /// BYE ("no ACK for our 2xx").
    #[test]
    fn an_ack_with_the_invites_branch_reaches_the_call() {
        let mut p = Pair::new();
        p.drop = Box::new(|from_a, m, _| from_a && m.method() == Some(Method::Ack));
        let call =
            p.a.call(p.now, Pair::bob_uri(), Some(Bytes::from_static(b"v=0\r\n")));
        p.run(Duration::from_millis(50));
        let bob_call = incoming(&p.events_b)[0];
        p.b.answer(p.now, bob_call, None);
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.call_state(call), Some(CallState::Confirmed));
        // Alice's ACK (lost on the wire), re-sent with the INVITE's branch.
        let invite = last_sent(&p, true, "INVITE");
        let ack = last_sent(&p, true, "ACK");
        let branch_of = |b: &Bytes| {
            let m = Message::parse(b).unwrap();
            client_match(&m).unwrap().0.into_owned()
        };
        let ack = String::from_utf8(ack.to_vec())
            .unwrap()
            .replace(&branch_of(&ack), &branch_of(&invite));
        p.b.handle_message(
            p.now,
            Message::parse(ack.as_bytes()).unwrap(),
            ALICE.parse().unwrap(),
        );
        let _ = drain(&mut p.b);
        assert_eq!(
            p.b.call_state(bob_call),
            Some(CallState::Confirmed),
            "the ACK was absorbed by the INVITE's Accepted record"
        );
    }

    /// An INVITE the UAS cannot make a dialog from (no From tag) is answered 400 through its
    /// own server transaction, which ends once the 400 is ACKed (Timer I). A second
    /// transaction for the 400 left the first, pushed before `on_new_invite`, in Proceeding
    /// forever (one ~1 KB entry per such INVITE, walked by every drain and match), and the
    /// first captured the 400's ACK (the 400 was then retransmitted until Timer H).
    #[test]
    fn an_invite_refused_for_a_missing_from_tag_leaves_no_transaction_behind() {
        let mut ua = UserAgent::new(config("bob", 5062, 2));
        let now = Instant::now();
        let raw = "INVITE sip:bob@127.0.0.1:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKnotag1\r\nMax-Forwards: 70\r\n\
From: <sip:alice@example.test>\r\nTo: <sip:bob@example.test>\r\nCall-ID: notag1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5061>\r\nContent-Length: 0\r\n\r\n";
        ua.handle_message(
            now,
            Message::parse(raw.as_bytes()).unwrap(),
            ALICE.parse().unwrap(),
        );
        let (out, _) = drain(&mut ua);
        assert_eq!(parse(&out[0]).status(), Some(400));
        // The caller ACKs the 400 (same branch).
        let ack = raw
            .replacen("INVITE sip", "ACK sip", 1)
            .replace("1 INVITE", "1 ACK");
        ua.handle_message(
            now,
            Message::parse(ack.as_bytes()).unwrap(),
            ALICE.parse().unwrap(),
        );
        let _ = drain(&mut ua);
        let mut t = now;
        let mut resent = 0;
        for _ in 0..200 {
            t += Duration::from_millis(500);
            ua.handle_timeout(t);
            resent += drain(&mut ua).0.len();
        }
        assert!(
            ua.server.is_empty() && resent == 0,
            "the ACKed 400 was retransmitted {resent} times; still held after 100 s: {:?}",
            ua.server
        );
        assert_eq!(ua.poll_timeout(), None);
    }
}

#[cfg(test)]
mod auth_tests {
    use std::time::Instant;

    use sip_auth::{Authorization, NonceIssuer, Verdict, verify};

    use super::*;

    fn config() -> UaConfig {
        UaConfig {
            user: "1001".into(),
            domain: "example.test".into(),
            registrar_uri: Uri::parse("sip:example.test:5060;transport=udp").unwrap(),
            outbound_proxy: None,
            credentials: Some(Credentials::new("1001", "s3cret")),
            local_host: Host::parse("127.0.0.1").unwrap(),
            local_port: 5070,
            transport: "UDP".into(),
            reliable: false,
            expires: 300,
            timers: TimerConfig::default(),
            user_agent: "sipmeter-test".into(),
            seed: 9,
            use_100rel: false,
            session_timer: None,
            codecs: None,
        }
    }

    /// A scripted registrar that checks digest credentials with sip-auth's server side.
    struct Server {
        issuer: NonceIssuer,
        password: &'static str,
        now_unix: u64,
    }

    impl Server {
        fn answer(&self, req: &Message, proxy: bool) -> Message {
            let (ask, got) = if proxy {
                (
                    HeaderName::ProxyAuthenticate,
                    HeaderName::ProxyAuthorization,
                )
            } else {
                (HeaderName::WwwAuthenticate, HeaderName::Authorization)
            };
            let method = req.method().unwrap();
            let verdict = req.headers.get(&got).map(|h| {
                let a = Authorization::parse(h.value()).unwrap();
                verify(
                    &a,
                    &self.issuer,
                    "example.test",
                    self.password,
                    method.as_str(),
                    req.body(),
                    self.now_unix,
                )
            });
            let (code, stale) = match verdict {
                Some(Verdict::Ok) => (200, false),
                Some(Verdict::Stale) => (if proxy { 407 } else { 401 }, true),
                _ => (if proxy { 407 } else { 401 }, false),
            };
            let mut resp = Message::response_to(req, code, reason_phrase(code), Some("srv"));
            if code != 200 {
                let ch = self.issuer.challenge(
                    "example.test",
                    sip_auth::Algorithm::Sha256,
                    stale,
                    self.now_unix,
                );
                resp.headers.push(Header::new(ask, ch));
            } else if method == Method::Invite {
                resp.headers.push(Header::new(
                    HeaderName::Contact,
                    "<sip:1002@127.0.0.1:5080>",
                ));
            }
            resp
        }
    }

    fn exchange(ua: &mut UserAgent, server: &Server, now: Instant, proxy: bool) -> Vec<Message> {
        let mut seen = Vec::new();
        for _ in 0..6 {
            let out: Vec<_> = std::iter::from_fn(|| ua.poll_transmit()).collect();
            if out.is_empty() {
                break;
            }
            for o in out {
                let req = Message::parse(&o.bytes).unwrap();
                if req.method() == Some(Method::Ack) {
                    continue;
                }
                let resp = server.answer(&req, proxy && req.method() == Some(Method::Invite));
                seen.push(req);
                ua.handle_message(now, resp, "127.0.0.1:5060".parse().unwrap());
            }
        }
        seen
    }

    #[test]
    fn register_answers_401_once_and_refreshes_with_the_same_nonce() {
        let server = Server {
            issuer: NonceIssuer::new(b"k", 3600),
            password: "s3cret",
            now_unix: 1_000,
        };
        let mut ua = UserAgent::new(config());
        let now = Instant::now();
        ua.register(now);
        let sent = exchange(&mut ua, &server, now, false);
        assert_eq!(sent.len(), 2, "REGISTER, then REGISTER with credentials");
        assert_eq!(sent[1].cseq().unwrap().seq, sent[0].cseq().unwrap().seq + 1);
        assert!(
            sent[1]
                .headers
                .value(&HeaderName::Authorization)
                .unwrap()
                .contains("algorithm=SHA-256")
        );
        let ev: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert!(
            ev.iter().any(|e| matches!(e, UaEvent::Registered { .. })),
            "{ev:?}"
        );
        // The refresh reuses the challenge with nc=2: no new 401.
        ua.handle_timeout(now + Duration::from_secs(300));
        let sent = exchange(&mut ua, &server, now, false);
        assert_eq!(sent.len(), 1, "refresh accepted at once");
        assert!(
            sent[0]
                .headers
                .value(&HeaderName::Authorization)
                .unwrap()
                .contains("nc=00000002")
        );
    }

    #[test]
    fn wrong_password_fails_after_one_retry_with_the_401() {
        let server = Server {
            issuer: NonceIssuer::new(b"k", 3600),
            password: "other",
            now_unix: 1_000,
        };
        let mut ua = UserAgent::new(config());
        let now = Instant::now();
        ua.register(now);
        let sent = exchange(&mut ua, &server, now, false);
        assert_eq!(sent.len(), 2, "no third attempt with the same credentials");
        let ev: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert!(
            matches!(
                ev.last(),
                Some(UaEvent::RegistrationFailed { code: 401, .. })
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn stale_nonce_is_answered_again() {
        let mut server = Server {
            issuer: NonceIssuer::new(b"k", 10),
            password: "s3cret",
            now_unix: 1_000,
        };
        let mut ua = UserAgent::new(config());
        let now = Instant::now();
        ua.register(now);
        exchange(&mut ua, &server, now, false);
        // Much later the reused nonce is stale: the server says stale=true and we answer it.
        server.now_unix = 5_000;
        ua.handle_timeout(now + Duration::from_secs(300));
        let sent = exchange(&mut ua, &server, now, false);
        assert_eq!(sent.len(), 2);
        let ev: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert!(
            matches!(ev.last(), Some(UaEvent::Registered { refresh: true, .. })),
            "{ev:?}"
        );
    }

    #[test]
    fn a_server_that_calls_each_fresh_nonce_stale_fails_the_registration_instead_of_looping() {
        // Each REGISTER with credentials is answered 401 stale=true with a new nonce (RFC
        // 7616 §3.3: stale means a valid but old nonce, which the one just given is not).
        // The first stale is answered (an expired nonce), and once more; the next is a
        // failure, not a REGISTER after REGISTER for ever.
        let issuer = NonceIssuer::new(b"k", 3600);
        let mut ua = UserAgent::new(config());
        let now = Instant::now();
        ua.register(now);
        let mut registers = 0;
        for round in 0..10 {
            let Some(o) = ua.poll_transmit() else { break };
            let req = Message::parse(&o.bytes).unwrap();
            registers += 1;
            let stale = req.headers.get(&HeaderName::Authorization).is_some();
            let mut resp = Message::response_to(&req, 401, "Unauthorized", Some("srv"));
            let ch = issuer.challenge(
                "example.test",
                sip_auth::Algorithm::Sha256,
                stale,
                1_000 + round,
            );
            resp.headers
                .push(Header::new(HeaderName::WwwAuthenticate, ch));
            ua.handle_message(now, resp, "127.0.0.1:5060".parse().unwrap());
        }
        assert_eq!(
            registers, 4,
            "REGISTER, its answer, and two answers to stale"
        );
        let ev: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert!(
            matches!(
                ev.last(),
                Some(UaEvent::RegistrationFailed { code: 401, reason })
                    if reason.contains("stale=true to the nonce the server had just given")
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn the_invite_is_shared_by_the_call_and_its_transaction_and_changed_in_place_for_a_retry() {
        let server = Server {
            issuer: NonceIssuer::new(b"k", 3600),
            password: "s3cret",
            now_unix: 1_000,
        };
        let mut ua = UserAgent::new(config());
        let now = Instant::now();
        let call = ua.call(now, Uri::parse("sip:1002@example.test").unwrap(), None);
        let shared = |ua: &UserAgent| {
            let invite = ua.call_ref(call).unwrap().invite.clone().unwrap();
            let at_work: Vec<&ClientEntry> = ua
                .client
                .iter()
                .map(|e| &**e)
                .filter(|e| e.owner == Owner::Invite(call) && e.txn.state() == State::Calling)
                .collect();
            assert_eq!(at_work.len(), 1);
            // The call's and the transaction's (and the clone just taken).
            assert_eq!(Arc::strong_count(&invite), 3);
            assert!(std::ptr::eq(&*invite, at_work[0].txn.request()));
            invite
        };
        let first = shared(&ua);
        assert_eq!(first.cseq().unwrap().seq, 1);
        drop(first);
        // The 407: the first transaction gives its share back, the call's INVITE is changed
        // in place (CSeq 2, credentials) and shared with the new transaction.
        let out = ua.poll_transmit().unwrap();
        let resp = server.answer(&Message::parse(&out.bytes).unwrap(), true);
        assert_eq!(resp.status(), Some(407));
        ua.handle_message(now, resp, "127.0.0.1:5060".parse().unwrap());
        let retry = shared(&ua);
        assert_eq!(retry.cseq().unwrap().seq, 2);
        assert!(retry.headers.get(&HeaderName::ProxyAuthorization).is_some());
        let sent: Vec<Message> = std::iter::from_fn(|| ua.poll_transmit())
            .map(|o| Message::parse(&o.bytes).unwrap())
            .filter(|m| m.method() == Some(Method::Invite))
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to_bytes(), retry.to_bytes());
    }

    /// RFC 3261 §22.2, §17.1.1.3, §9.1 with the INVITE shared by the call and its
    /// transactions: after two 407s (the second stale) the third INVITE carries CSeq 3 and
    /// one Proxy-Authorization; a retransmitted first 407 is ACKed with the first INVITE's
    /// branch and CSeq 1 (from that transaction's record, not from the INVITE changed since);
    /// the CANCEL of the early call is the third INVITE's (its branch, CSeq 3).
    #[test]
    fn a_twice_challenged_invite_acks_each_407_as_sent_and_cancels_the_last() {
        let mut server = Server {
            issuer: NonceIssuer::new(b"k", 10),
            password: "s3cret",
            now_unix: 1_000,
        };
        let from: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut ua = UserAgent::new(config());
        let now = Instant::now();
        let call = ua.call(now, Uri::parse("sip:1002@example.test").unwrap(), None);
        let take = |ua: &mut UserAgent| -> Vec<Message> {
            std::iter::from_fn(|| ua.poll_transmit())
                .map(|o| Message::parse(&o.bytes).unwrap())
                .collect()
        };
        let first = take(&mut ua).remove(0);
        let first_407 = server.answer(&first, true);
        ua.handle_message(now, first_407.clone(), from);
        let out = take(&mut ua);
        let second = out
            .iter()
            .find(|m| m.method() == Some(Method::Invite))
            .unwrap()
            .clone();
        // The second INVITE's credentials are stale by the time it arrives.
        server.now_unix = 5_000;
        let second_407 = server.answer(&second, true);
        assert!(
            second_407
                .headers
                .value(&HeaderName::ProxyAuthenticate)
                .unwrap()
                .contains("stale=true")
        );
        ua.handle_message(now, second_407, from);
        let third = take(&mut ua)
            .into_iter()
            .find(|m| m.method() == Some(Method::Invite))
            .unwrap();
        assert_eq!(
            [&first, &second, &third].map(|m| m.cseq().unwrap().seq),
            [1, 2, 3]
        );
        assert_eq!(
            third
                .headers
                .get_all(&HeaderName::ProxyAuthorization)
                .count(),
            1
        );
        let branches = [&first, &second, &third].map(|m| m.top_via().unwrap().branch());
        assert!(branches[0] != branches[1] && branches[1] != branches[2]);
        // The first 407 again: ACKed as the first INVITE was sent.
        ua.handle_message(now, first_407, from);
        let acks = take(&mut ua);
        assert_eq!(acks.len(), 1, "{acks:?}");
        assert_eq!(acks[0].method(), Some(Method::Ack));
        assert_eq!(acks[0].top_via().unwrap().branch(), branches[0]);
        assert_eq!(acks[0].cseq().unwrap().seq, 1);
        assert!(
            acks[0]
                .headers
                .get(&HeaderName::ProxyAuthorization)
                .is_none()
        );
        // A 180 to the third INVITE, then hang up: CANCEL matches the third INVITE.
        let mut ringing = Message::response_to(&third, 180, "Ringing", Some("srv"));
        ringing.headers.push(Header::new(
            HeaderName::Contact,
            "<sip:1002@127.0.0.1:5080>",
        ));
        ua.handle_message(now, ringing, from);
        ua.hangup(now, call);
        let cancel = take(&mut ua)
            .into_iter()
            .find(|m| m.method() == Some(Method::Cancel))
            .expect("a CANCEL");
        assert_eq!(cancel.top_via().unwrap().branch(), branches[2]);
        assert_eq!(
            cancel.cseq().map(|c| (c.seq, c.method)),
            Some((3, Method::Cancel))
        );
        assert_eq!(cancel.request_uri(), third.request_uri());
    }

    /// RFC 3261 §13.2.2.4: a forked INVITE answered by two UASs (two 2xx, two To tags)
    /// makes the UAC ACK each 2xx in its own dialog: the second ACK carries the second To
    /// tag and goes to the second Contact, not the first dialog's ACK again.
    #[test]
    fn each_forked_2xx_is_acked_in_its_own_dialog() {
        let from: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut cfg = config();
        cfg.credentials = None;
        let mut ua = UserAgent::new(cfg);
        let now = Instant::now();
        ua.call(
            now,
            Uri::parse("sip:1002@example.test").unwrap(),
            Some(Bytes::from_static(b"v=0\r\n")),
        );
        let invite = Message::parse(&ua.poll_transmit().unwrap().bytes).unwrap();
        let ok = |tag: &str, contact: &str| {
            let mut r = Message::response_to(&invite, 200, "OK", Some(tag));
            r.headers.push(Header::new(HeaderName::Contact, contact));
            r
        };
        let acks = |ua: &mut UserAgent| -> Vec<(Destination, Message)> {
            std::iter::from_fn(|| ua.poll_transmit())
                .map(|o| (o.destination, Message::parse(&o.bytes).unwrap()))
                .filter(|(_, m)| m.method() == Some(Method::Ack))
                .collect()
        };
        ua.handle_message(now, ok("ta", "<sip:1002@127.0.0.1:5080>"), from);
        let first = acks(&mut ua);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].1.to().unwrap().tag().as_deref(), Some("ta"));
        // The other fork's 2xx, then each one again.
        for round in 0..2 {
            ua.handle_message(now, ok("tb", "<sip:1002@127.0.0.1:5090>"), from);
            let second = acks(&mut ua);
            assert_eq!(second.len(), 1, "round {round}");
            let (dest, ack) = &second[0];
            assert_eq!(
                ack.to().unwrap().tag().as_deref(),
                Some("tb"),
                "round {round}"
            );
            assert_eq!(
                ack.request_uri().unwrap().to_string(),
                "sip:1002@127.0.0.1:5090",
                "round {round}"
            );
            assert!(
                matches!(dest, Destination::Uri(u) if u.to_string() == "sip:1002@127.0.0.1:5090"),
                "round {round}: {dest:?}"
            );
            ua.handle_message(now, ok("ta", "<sip:1002@127.0.0.1:5080>"), from);
            let again = acks(&mut ua);
            assert_eq!(again.len(), 1);
            assert_eq!(
                again[0].1.to_bytes(),
                first[0].1.to_bytes(),
                "round {round}"
            );
        }
        // Hung up and forgotten (until Timer M the INVITE's record still ACKs): the other
        // fork's 2xx is still ACKed in its own dialog.
        let call = CallId(0);
        ua.hangup(now, call);
        let bye = std::iter::from_fn(|| ua.poll_transmit())
            .map(|o| Message::parse(&o.bytes).unwrap())
            .find(|m| m.method() == Some(Method::Bye))
            .expect("a BYE");
        ua.handle_message(now, Message::response_to(&bye, 200, "OK", None), from);
        assert_eq!(ua.call_state(call), Some(CallState::Terminated));
        ua.forget_call(call);
        ua.handle_message(now, ok("tb", "<sip:1002@127.0.0.1:5090>"), from);
        let late = acks(&mut ua);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].1.to().unwrap().tag().as_deref(), Some("tb"));
    }

    /// RFC 3261 §13.2.2.4: a UAC that wants one dialog ACKs the 2xx of every other fork,
    /// then ends that dialog with BYE: one BYE per fork (a retransmitted 2xx of that fork
    /// gets the ACK again, no second BYE), in the fork's dialog (its To tag, its Contact,
    /// CSeq after the INVITE's), while the call stays in its own dialog; the same after the
    /// call was hung up and forgotten (until Timer M).
    #[test]
    fn each_other_forks_dialog_is_acked_then_ended_with_one_bye() {
        let from: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut cfg = config();
        cfg.credentials = None;
        let mut ua = UserAgent::new(cfg);
        let now = Instant::now();
        let call = ua.call(
            now,
            Uri::parse("sip:1002@example.test").unwrap(),
            Some(Bytes::from_static(b"v=0\r\n")),
        );
        let invite = Message::parse(&ua.poll_transmit().unwrap().bytes).unwrap();
        let invite_seq = invite.cseq().unwrap().seq;
        let ok = |tag: &str, port: u16| {
            let mut r = Message::response_to(&invite, 200, "OK", Some(tag));
            let contact = format!("<sip:1002@127.0.0.1:{port}>");
            r.headers.push(Header::new(HeaderName::Contact, contact));
            r
        };
        let sent = |ua: &mut UserAgent| -> Vec<(Destination, Message)> {
            std::iter::from_fn(|| ua.poll_transmit())
                .map(|o| (o.destination, Message::parse(&o.bytes).unwrap()))
                .collect()
        };
        let calls = |ua: &mut UserAgent| -> Vec<CallEvent> {
            std::iter::from_fn(|| ua.poll_event())
                .filter_map(|e| match e {
                    UaEvent::Call(_, c) => Some(c),
                    _ => None,
                })
                .collect()
        };
        let check_bye = |dest: &Destination, bye: &Message, tag: &str, port: u16| {
            let contact = format!("sip:1002@127.0.0.1:{port}");
            assert_eq!(bye.method(), Some(Method::Bye));
            assert_eq!(bye.to().unwrap().tag().as_deref(), Some(tag));
            assert_eq!(bye.from().unwrap().tag(), invite.from().unwrap().tag());
            assert_eq!(bye.call_id(), invite.call_id());
            assert_eq!(
                bye.cseq().map(|c| (c.seq, c.method)),
                Some((invite_seq + 1, Method::Bye))
            );
            assert_eq!(bye.request_uri().unwrap().to_string(), contact);
            assert!(
                matches!(dest, Destination::Uri(u) if u.to_string() == contact),
                "{dest:?}"
            );
        };
        ua.handle_message(now, ok("ta", 5080), from);
        let first = sent(&mut ua);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].1.method(), Some(Method::Ack));
        assert!(matches!(calls(&mut ua)[..], [CallEvent::Answered { .. }]));
        // The other fork's 2xx: an ACK, then a BYE, in its dialog.
        ua.handle_message(now, ok("tb", 5090), from);
        let out = sent(&mut ua);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].1.method(), Some(Method::Ack));
        assert_eq!(out[0].1.to().unwrap().tag().as_deref(), Some("tb"));
        check_bye(&out[1].0, &out[1].1, "tb", 5090);
        let fork_bye = out[1].1.clone();
        assert_ne!(
            fork_bye.top_via().unwrap().branch(),
            out[0].1.top_via().unwrap().branch(),
            "the BYE is a transaction of its own"
        );
        // That 2xx again (our ACK was lost): the ACK again, no second BYE.
        ua.handle_message(now, ok("tb", 5090), from);
        let out = sent(&mut ua);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].1.method(), Some(Method::Ack));
        assert_eq!(out[0].1.to().unwrap().tag().as_deref(), Some("tb"));
        // The fork's BYE is answered: nothing happens to the call, which stays in the
        // first dialog.
        ua.handle_message(now, Message::response_to(&fork_bye, 200, "OK", None), from);
        assert!(sent(&mut ua).is_empty());
        assert!(calls(&mut ua).is_empty());
        assert_eq!(ua.call_state(call), Some(CallState::Confirmed));
        // Hanging up ends the first dialog.
        ua.hangup(now, call);
        let out = sent(&mut ua);
        assert_eq!(out.len(), 1, "{out:?}");
        check_bye(&out[0].0, &out[0].1, "ta", 5080);
        ua.handle_message(now, Message::response_to(&out[0].1, 200, "OK", None), from);
        let ended = calls(&mut ua);
        assert!(
            matches!(
                ended[..],
                [CallEvent::Ended {
                    by_remote: false,
                    code: 200
                }]
            ),
            "{ended:?}"
        );
        ua.forget_call(call);
        assert_eq!(ua.call_state(call), None);
        // A third fork answers after the call was forgotten (before Timer M): ACK and BYE in
        // its dialog, once; the second fork's 2xx again still gets only its ACK.
        ua.handle_message(now, ok("tc", 5100), from);
        let out = sent(&mut ua);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].1.method(), Some(Method::Ack));
        assert_eq!(out[0].1.to().unwrap().tag().as_deref(), Some("tc"));
        check_bye(&out[1].0, &out[1].1, "tc", 5100);
        for (tag, port) in [("tc", 5100), ("tb", 5090)] {
            ua.handle_message(now, ok(tag, port), from);
            let out = sent(&mut ua);
            assert_eq!(out.len(), 1, "{tag}: {out:?}");
            assert_eq!(out[0].1.method(), Some(Method::Ack));
            assert_eq!(out[0].1.to().unwrap().tag().as_deref(), Some(tag));
        }
        assert!(calls(&mut ua).is_empty());
        // A peer answering with ever new tags: each 2xx is ACKed, but BYE transactions stop
        // at MAX_FORKS_ENDED forks (two ended above).
        let mut byes = 2;
        for n in 0..40 {
            ua.handle_message(now, ok(&format!("t{n}"), 5200), from);
            let out = sent(&mut ua);
            assert_eq!(out[0].1.method(), Some(Method::Ack), "{n}");
            byes += out
                .iter()
                .filter(|(_, m)| m.method() == Some(Method::Bye))
                .count();
        }
        assert_eq!(byes, MAX_FORKS_ENDED);
    }

    /// RFC 3261 §9.1: the CANCEL copies the INVITE's Request-URI, top Via, Max-Forwards,
    /// Route, From, To and Call-ID lines (as the INVITE printed them: `Name: value`), then
    /// CSeq with the INVITE's number and `Content-Length: 0`.
    /// An agent with an outbound proxy that called 1002 (its call and INVITE as sent).
    fn proxied_call(now: Instant) -> (UserAgent, CallId, Message) {
        let mut cfg = config();
        cfg.credentials = None;
        cfg.outbound_proxy = Uri::parse("sip:proxy.example.test:5060;lr")
            .unwrap()
            .as_sip()
            .cloned();
        let mut ua = UserAgent::new(cfg);
        let call = ua.call(now, Uri::parse("sip:1002@example.test").unwrap(), None);
        let invite = Message::parse(&ua.poll_transmit().unwrap().bytes).unwrap();
        (ua, call, invite)
    }

    /// The CANCEL `ua` sends when `call` (its INVITE `invite`) rings and is hung up.
    fn cancel_after_ringing(
        ua: &mut UserAgent,
        now: Instant,
        call: CallId,
        invite: &Message,
    ) -> Bytes {
        let from: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut ringing = Message::response_to(invite, 180, "Ringing", Some("srv"));
        ringing.headers.push(Header::new(
            HeaderName::Contact,
            "<sip:1002@127.0.0.1:5080>",
        ));
        ua.handle_message(now, ringing, from);
        ua.hangup(now, call);
        std::iter::from_fn(|| ua.poll_transmit())
            .map(|o| o.bytes)
            .find(|b| b.starts_with(b"CANCEL "))
            .expect("a CANCEL")
    }

    #[test]
    fn a_cancel_copies_the_invites_lines_as_printed() {
        let now = Instant::now();
        let (mut ua, call, invite) = proxied_call(now);
        let cancel = cancel_after_ringing(&mut ua, now, call, &invite);
        let cancel = String::from_utf8(cancel.to_vec()).unwrap();
        let mut want = format!("CANCEL {} SIP/2.0\r\n", invite.request_uri().unwrap());
        for name in [
            HeaderName::Via,
            HeaderName::MaxForwards,
            HeaderName::Route,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
        ] {
            let value = invite.headers.value(&name).unwrap();
            want.push_str(&format!("{name}: {value}\r\n"));
        }
        let seq = invite.cseq().unwrap().seq;
        want.push_str(&format!("CSeq: {seq} CANCEL\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(cancel, want);
    }

    /// RFC 3261 §9.1: the CANCEL's Route header fields are those of the INVITE it cancels,
    /// all of them, in order: a comma-joined line and further lines (a preloaded route set)
    /// as well as the outbound proxy's. Before: only the first Route line.
    #[test]
    fn a_cancel_copies_every_route_line_of_the_invite_in_order() {
        let now = Instant::now();
        let (mut ua, call, invite) = proxied_call(now);
        // The INVITE as a preloaded route set would make it: the proxy's line, then a
        // comma-joined line, then one more line (the call's INVITE is what CANCEL copies).
        let Some(Slot::Live(c)) = ua.calls.get_mut(0) else {
            panic!("a live call")
        };
        let kept = Arc::make_mut(c.invite.as_mut().unwrap());
        kept.headers.push(Header::new(
            HeaderName::Route,
            "<sip:p2.example.test;lr>, <sip:p3.example.test;lr>",
        ));
        kept.headers
            .push(Header::new(HeaderName::Route, "<sip:p4.example.test;lr>"));
        let routes: Vec<String> = kept
            .headers
            .get_all(&HeaderName::Route)
            .map(|h| h.value().to_owned())
            .collect();
        assert_eq!(routes.len(), 3);
        let cancel = Message::parse(&cancel_after_ringing(&mut ua, now, call, &invite)).unwrap();
        let got: Vec<String> = cancel
            .headers
            .get_all(&HeaderName::Route)
            .map(|h| h.value().to_owned())
            .collect();
        assert_eq!(got, routes);
    }

    #[test]
    fn invite_407_is_answered_with_proxy_authorization() {
        let server = Server {
            issuer: NonceIssuer::new(b"k", 3600),
            password: "s3cret",
            now_unix: 1_000,
        };
        let mut ua = UserAgent::new(config());
        let now = Instant::now();
        let call = ua.call(
            now,
            Uri::parse("sip:1002@example.test").unwrap(),
            Some(Bytes::from_static(b"v=0\r\n")),
        );
        let sent = exchange(&mut ua, &server, now, true);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].cseq().unwrap().seq, 2);
        assert_ne!(
            sent[0].top_via().unwrap().branch(),
            sent[1].top_via().unwrap().branch()
        );
        assert!(
            sent[1]
                .headers
                .get(&HeaderName::ProxyAuthorization)
                .is_some()
        );
        assert_eq!(
            sent[0].from().unwrap().tag(),
            sent[1].from().unwrap().tag(),
            "same dialog attempt"
        );
        assert_eq!(ua.call_state(call), Some(CallState::Confirmed));
    }
}
