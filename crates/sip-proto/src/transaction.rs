//! SIP transactions (RFC 3261 §17, with RFC 6026's Accepted state), sans-IO.
//!
//! # Driving a transaction
//!
//! A transaction never touches a socket or the clock. The owner:
//! 1. creates it with the current time ([`ClientTransaction::new`], [`ServerTransaction::new`]);
//! 2. feeds it what happens: `handle_response` / `handle_request` for matching messages,
//!    [`ServerTransaction::send_response`] for the TU's answers, and `handle_timeout(now)`
//!    whenever `poll_timeout()` has passed;
//! 3. after every call drains `poll_transmit()` (bytes to send on the transaction's flow) and
//!    `poll_event()` (responses for the TU, timer firings, retransmissions, termination)
//!    until both return `None`, then sleeps until `poll_timeout()`.
//!
//! Every retransmission and every timer firing is an event, so a tester can say
//! "REGISTER retransmitted 3 times, then Timer F fired".

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use crate::fifo::SlimFifo;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::typed::{FromRef, Route, To, Via, ViaBranch, ViaRef};
#[cfg(test)]
use sip_msg::{Header, Headers};
use sip_msg::{HeaderName, HostRef, Message, Method, TypedHeader, text_of};

// The timer names, base intervals and the deadline table live in `crate::timer`; re-exported
// here so `transaction::{Timer, TimerConfig}` keep working.
use crate::timer::TxnTimers as Timers;
pub use crate::timer::{Timer, TimerConfig};

/// Transaction states, named as in RFC 3261 §17 and RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Client INVITE, request sent.
    Calling,
    /// Non-INVITE, request sent or received.
    Trying,
    /// A provisional response was received or sent.
    Proceeding,
    /// A 2xx to an INVITE was received or sent (RFC 6026).
    Accepted,
    /// A final response was received or sent.
    Completed,
    /// Server INVITE: the ACK for a non-2xx final response arrived.
    Confirmed,
    /// Done; the owner may drop the transaction.
    Terminated,
}

/// What a transaction reports to its owner.
#[derive(Debug, Clone)]
pub enum TxnEvent {
    /// A response for the TU (client transactions). Retransmitted 2xx in Accepted are passed too,
    /// so the TU can re-send its ACK (RFC 6026 §7.2).
    Response(Message),
    /// A request (or ACK) for the TU (server transactions): only the first copy of a request;
    /// the ACK of a 2xx never reaches a server transaction (it has its own branch).
    Ack(Message),
    /// The request or response was sent again; `count` counts retransmissions so far.
    Retransmitted {
        /// The timer that caused it (A, E or G), or `None` when a peer's retransmission did.
        timer: Option<Timer>,
        /// Retransmissions so far.
        count: u32,
    },
    /// A timer fired (recorded for the trace, whatever it caused).
    TimerFired(Timer),
    /// The transaction timed out: Timer B or F (client, no final response) or Timer H (server,
    /// no ACK). The TU treats it as a 408 (RFC 3261 §8.1.3.1).
    Timeout(Timer),
    /// The transaction reached Terminated.
    Terminated,
}

/// Bytes to send on the transaction's flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The whole message.
    pub bytes: Bytes,
    /// True when this is a retransmission (for the trace).
    pub retransmission: bool,
}

/// Misuse of the transaction API (a bug in the caller, not the peer's fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// The request has no parseable top Via with a branch, or no CSeq.
    #[error("request lacks a top via branch or cseq")]
    MissingTxnHeaders,
    /// ACK is never sent in a client transaction of its own (RFC 3261 §17.1).
    #[error("ack does not create a transaction")]
    AckTransaction,
    /// A response may not be sent in the transaction's current state.
    #[error("response not allowed in state {0:?}")]
    BadState(State),
}

/// What identifies a transaction when matching messages to it (RFC 3261 §17.1.3, §17.2.3).
/// Its branch and sent-by are one text, inline when short ([`KeyText`]): no allocation for
/// the keys of the usual requests.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TxnKey {
    /// The top Via branch, then its sent-by, lower-cased (`host:port`; empty for client keys).
    text: KeyText,
    /// The method; ACK maps to INVITE for server matching.
    pub method: Method,
}

impl fmt::Debug for TxnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxnKey")
            .field("branch", &self.branch())
            .field("sent_by", &self.sent_by())
            .field("method", &self.method)
            .finish()
    }
}

impl TxnKey {
    /// The key of `branch`, `sent_by` (as given: a server key's is lower-cased) and `method`.
    pub fn new(branch: &str, sent_by: &str, method: Method) -> Self {
        let mut text = KeyText::default();
        text.push_str(branch);
        text.end_branch();
        text.push_str(sent_by);
        Self { text, method }
    }

    /// The client key of a request whose branch we made from 64 random bits (what
    /// [`sip_msg::branch_from`] gives), with no sent-by.
    pub fn client(random: u64, method: Method) -> Self {
        let mut text = KeyText::default();
        text.push_str(sip_msg::BRANCH_MAGIC);
        text.push_str(sip_msg::hex16(random, &mut sip_msg::HexText::default()));
        text.end_branch();
        Self { text, method }
    }

    /// The top Via branch.
    pub fn branch(&self) -> &str {
        self.text.parts().0
    }

    /// The top Via sent-by, lower-cased (`host:port`); empty for client keys.
    pub fn sent_by(&self) -> &str {
        self.text.parts().1
    }

    /// The branch's bytes (no UTF-8 check: for comparing and hashing).
    #[inline]
    pub fn branch_bytes(&self) -> &[u8] {
        self.text.byte_parts().0
    }

    /// The sent-by's bytes (as [`TxnKey::branch_bytes`]).
    #[inline]
    pub fn sent_by_bytes(&self) -> &[u8] {
        self.text.byte_parts().1
    }

    /// The key of a response, matching the client transaction that sent its request (§17.1.3).
    pub fn of_response(resp: &Message) -> Option<Self> {
        Self::of_client_request(resp)
    }

    /// The key of our own outgoing request (client side).
    pub fn of_client_request(req: &Message) -> Option<Self> {
        let (branch, method) = client_match(req)?;
        Some(Self::new(&branch, "", method))
    }

    /// True when `resp` answers the client transaction with this key (RFC 3261 §17.1.3):
    /// [`TxnKey::of_response`] compared without building a key.
    pub fn matches_response(&self, resp: &Message) -> bool {
        client_match(resp).is_some_and(|(b, m)| self.is(&b, &m))
    }

    /// True for the client key of `branch` and `method` (what [`TxnKey::matches_response`]
    /// compares; read the two once to match many keys).
    pub fn is(&self, branch: &str, method: &Method) -> bool {
        self.sent_by_bytes().is_empty()
            && self.branch_bytes() == branch.as_bytes()
            && self.method == *method
    }

    /// The key of a received request, matching a server transaction (§17.2.3); ACK matches
    /// the INVITE it acknowledges. CANCEL has its own transaction.
    pub fn of_server_request(req: &Message) -> Option<Self> {
        ServerKeyRef::read(req).map(|k| k.to_key())
    }
}

/// The key of a received request read in place (§17.2.3): what [`TxnKey::of_server_request`]
/// gives, without copying the branch and the sent-by, to look for the transaction it
/// belongs to ([`ServerKeyRef::matches`]). [`ServerKeyRef::to_key`] makes the key when a
/// transaction is made with it (an ACK or a retransmission only looks).
#[derive(Debug, Clone)]
pub struct ServerKeyRef<'a> {
    /// The top Via branch.
    pub branch: Cow<'a, str>,
    /// The top Via sent-by host.
    host: HostRef<'a>,
    /// The top Via sent-by port.
    port: Option<u16>,
    /// The method; ACK maps to INVITE for server matching.
    pub method: Method,
}

impl<'a> ServerKeyRef<'a> {
    /// The key of `req`, as [`TxnKey::of_server_request`] reads it.
    pub fn read(req: &'a Message) -> Option<Self> {
        let via = req.headers.view::<ViaRef>()?.ok()?;
        let branch = match via.branch() {
            Some(b) if b.starts_with(sip_msg::BRANCH_MAGIC) => b,
            // An RFC 2543 client (§17.2.3): no magic cookie, or no branch at all. The rare path.
            other => Cow::Owned(rfc2543_branch(req, other.as_deref())?),
        };
        let method = match req.method()? {
            Method::Ack => Method::Invite,
            m => m,
        };
        Some(Self {
            branch,
            host: via.host,
            port: via.port,
            method,
        })
    }

    /// The sent-by as printed (`host[:port]`), before lower-casing.
    fn write_sent_by(&self, out: &mut String) {
        sip_msg::push_host_ref(out, &self.host);
        if let Some(p) = self.port {
            out.push(':');
            sip_msg::push_decimal(out, u64::from(p));
        }
    }

    /// The owned key (its texts inline when short: no allocation for the usual branch and
    /// sent-by).
    pub fn to_key(&self) -> TxnKey {
        let mut text = KeyText::default();
        text.push_str(&self.branch);
        text.end_branch();
        // Writing into a `KeyText` never fails (a long text moves to the heap).
        let _ = sip_msg::write_host_ref(&mut text, &self.host);
        if let Some(p) = self.port {
            text.push_str(":");
            text.push_str(sip_msg::decimal(p.into(), &mut [0; 20]));
        }
        text.sent_by_to_lowercase();
        TxnKey {
            text,
            method: self.method.clone(),
        }
    }

    /// True when this is `key` (`self.to_key() == *key`), compared in place.
    pub fn matches(&self, key: &TxnKey) -> bool {
        if key.method != self.method || key.branch_bytes() != self.branch.as_bytes() {
            return false;
        }
        // The sent-by as printed, compared case-insensitively (the key holds it lower-cased),
        // printed on the stack (`HostRef`'s `Display` prints as `push_host_ref` does); a
        // host name too long for it is printed into a string.
        let mut text = StackText::default();
        let fits = write!(text, "{}", self.host).is_ok()
            && self.port.is_none_or(|p| write!(text, ":{p}").is_ok());
        if fits {
            text.as_bytes().eq_ignore_ascii_case(key.sent_by_bytes())
        } else {
            let mut sent_by = String::new();
            self.write_sent_by(&mut sent_by);
            sent_by.as_bytes().eq_ignore_ascii_case(key.sent_by_bytes())
        }
    }
}

/// A transaction key's text: its branch, then its sent-by. Inline up to
/// [`KeyText::INLINE`] bytes (a branch made here is 23 bytes, a sent-by `a.b.c.d:port` at
/// most 21), on the heap past that. A key is made for every transaction; its branch and
/// sent-by as two `String`s were two allocations per received request and one per sent one.
#[derive(Clone)]
enum KeyText {
    /// The text is `bytes[..len]`, the branch `bytes[..split]`; written from `&str`s only,
    /// whole (a text that does not fit moves to the heap): UTF-8, cut at a boundary.
    Inline {
        len: u8,
        split: u8,
        bytes: [u8; KeyText::INLINE],
    },
    /// The branch is `text[..split]`.
    Heap { text: String, split: usize },
}

impl KeyText {
    /// The longest text held inline (the whole key is 48 bytes, as its two `String`s were).
    const INLINE: usize = 45;

    /// The branch and the sent-by, as bytes.
    #[inline]
    fn byte_parts(&self) -> (&[u8], &[u8]) {
        match self {
            KeyText::Inline { len, split, bytes } => {
                bytes[..usize::from(*len)].split_at(usize::from(*split))
            }
            KeyText::Heap { text, split } => text.as_bytes().split_at(*split),
        }
    }

    /// The branch and the sent-by.
    fn parts(&self) -> (&str, &str) {
        match self {
            KeyText::Inline { .. } => {
                let (b, s) = self.byte_parts();
                // Written from `&str`s, whole, and cut where one ended (see `Inline`): the
                // checks cannot fail (`unwrap_or_default` only keeps this total).
                (
                    std::str::from_utf8(b).unwrap_or_default(),
                    std::str::from_utf8(s).unwrap_or_default(),
                )
            }
            KeyText::Heap { text, split } => text.split_at(*split),
        }
    }

    /// Appends `s`, moving the text to the heap when it no longer fits inline.
    #[inline]
    fn push_str(&mut self, s: &str) {
        match self {
            KeyText::Inline { len, split, bytes } => {
                let at = usize::from(*len);
                match bytes.get_mut(at..at + s.len()) {
                    Some(slot) => {
                        slot.copy_from_slice(s.as_bytes());
                        // `at + s.len() <= INLINE < 256`: the cast cuts nothing.
                        *len = (at + s.len()) as u8;
                    }
                    None => {
                        let split = usize::from(*split);
                        let (b, rest) = self.parts();
                        let mut text = String::with_capacity(at + s.len());
                        text.push_str(b);
                        text.push_str(rest);
                        text.push_str(s);
                        *self = KeyText::Heap { text, split };
                    }
                }
            }
            KeyText::Heap { text, .. } => text.push_str(s),
        }
    }

    /// Ends the branch: what is pushed next is the sent-by.
    fn end_branch(&mut self) {
        match self {
            KeyText::Inline { len, split, .. } => *split = *len,
            KeyText::Heap { text, split } => *split = text.len(),
        }
    }

    /// Lower-cases the ASCII letters of the sent-by.
    fn sent_by_to_lowercase(&mut self) {
        match self {
            KeyText::Inline { len, split, bytes } => {
                bytes[usize::from(*split)..usize::from(*len)].make_ascii_lowercase();
            }
            KeyText::Heap { text, split } => text[*split..].make_ascii_lowercase(),
        }
    }
}

impl Default for KeyText {
    fn default() -> Self {
        KeyText::Inline {
            len: 0,
            split: 0,
            bytes: [0; Self::INLINE],
        }
    }
}

impl fmt::Write for KeyText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

/// Equal when the branch and the sent-by are (inline or not).
impl PartialEq for KeyText {
    fn eq(&self, other: &Self) -> bool {
        self.byte_parts() == other.byte_parts()
    }
}

impl Eq for KeyText {}

/// Hashes as the two `String`s it replaces did.
impl std::hash::Hash for KeyText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (branch, sent_by) = self.parts();
        branch.hash(state);
        sent_by.hash(state);
    }
}

/// The branch of the key of a request without the magic cookie (RFC 3261 §17.2.3: such a
/// client may use one branch value, or none, for all its requests): its branch (if any),
/// Request-URI, From tag, Call-ID and CSeq number joined by LF (which none of them can hold),
/// so that a request matches the transaction whose request has the same ones and the same
/// top Via (the rest of the key). The To tag is left out: an ACK matches its INVITE with the
/// response's To tag, and a CANCEL matches it by these too (§9.2, its method aside).
fn rfc2543_branch(req: &Message, branch: Option<&str>) -> Option<String> {
    let from_tag = req.headers.view::<FromRef>()?.ok()?.tag();
    let mut key = String::with_capacity(96);
    key.push_str(branch.unwrap_or_default());
    key.push('\n');
    // Writing into a String never fails.
    let _ = write!(key, "{}", req.request_uri()?);
    key.push('\n');
    key.push_str(from_tag.as_deref().unwrap_or_default());
    key.push('\n');
    key.push_str(&req.call_id()?);
    key.push('\n');
    sip_msg::push_decimal(&mut key, u64::from(req.cseq()?.seq));
    Some(key)
}

/// Up to 64 bytes of text on the stack (a sent-by to compare without an allocation); a
/// longer text is an error.
struct StackText {
    bytes: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        // `len` only grows by what `write_str` copied in: in bounds.
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(std::fmt::Error)?;
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The top Via branch (borrowed from the message) and CSeq method that match a response or
/// our own request to a client transaction (RFC 3261 §17.1.3). No copy of either header.
///
/// Only the branch of the top Via is read ([`ViaBranch`]: the sent-by host and the other
/// parameters are not parsed), so a response whose top Via carries our branch matches even if
/// its host is malformed.
pub fn client_match(msg: &Message) -> Option<(Cow<'_, str>, Method)> {
    // Borrowed unless the branch is quoted with escapes (never ours: only a peer's junk).
    let branch = msg.headers.view::<ViaBranch>()?.ok()?.0?;
    Some((branch, msg.cseq()?.method))
}

/// Queues a transaction event, boxed: a transaction holds an event only between its owner's
/// drains, and an inline one (a `Message`, ~300 bytes) made every entry that much bigger.
/// The queue holds its first box inline (no allocation for the queue itself).
fn push_event(q: &mut SlimFifo<Box<TxnEvent>>, ev: TxnEvent) {
    q.push_back(Box::new(ev));
}

/// Takes a transaction's key out of it (for its finished record), leaving an empty one.
fn take_key(key: &mut TxnKey) -> TxnKey {
    TxnKey {
        text: std::mem::take(&mut key.text),
        method: std::mem::replace(&mut key.method, Method::Ack),
    }
}

/// A client transaction's request: its own, or shared with its owner (the UA keeps the
/// INVITE of a call to answer a challenge, build a CANCEL and make the dialog: one copy for
/// both).
#[derive(Debug)]
pub(crate) enum RequestMsg {
    Own(Message),
    Shared(Arc<Message>),
    /// Shed or taken: reads as an empty message.
    Gone,
}

/// What a shed transaction's request reads as.
static NO_REQUEST: std::sync::LazyLock<Message> =
    std::sync::LazyLock::new(|| Message::new_response(0, ""));

impl std::ops::Deref for RequestMsg {
    type Target = Message;
    fn deref(&self) -> &Message {
        match self {
            Self::Own(m) => m,
            Self::Shared(m) => m,
            Self::Gone => &NO_REQUEST,
        }
    }
}

/// A client transaction (RFC 3261 §17.1): INVITE or non-INVITE.
#[derive(Debug)]
pub struct ClientTransaction {
    key: TxnKey,
    invite: bool,
    reliable: bool,
    config: TimerConfig,
    state: State,
    /// The request, which the ACK for a non-2xx response copies (§17.1.1.3). Each
    /// transmission sends [`Message::wire`]: a built request's one text, start line to body,
    /// shared without a copy (the retransmissions too); a request edited after it was built
    /// printed again.
    request_msg: RequestMsg,
    ack: Option<Bytes>,
    interval: Duration,
    retransmissions: u32,
    timers: Timers,
    transmits: SlimFifo<Transmit>,
    events: SlimFifo<Box<TxnEvent>>,
}

impl ClientTransaction {
    /// Starts a transaction for `request` and queues its first transmission.
    /// `reliable` is true on TCP, TLS, WS and WSS (no retransmission timers, §17.1.1.2).
    pub fn new(
        now: Instant,
        request: &Message,
        reliable: bool,
        config: TimerConfig,
    ) -> Result<Self, TxnError> {
        Self::from_request(now, request.clone(), reliable, config)
    }

    /// [`ClientTransaction::new`] taking the request (no copy of it).
    pub fn from_request(
        now: Instant,
        request: Message,
        reliable: bool,
        config: TimerConfig,
    ) -> Result<Self, TxnError> {
        let key = TxnKey::of_client_request(&request).ok_or(TxnError::MissingTxnHeaders)?;
        Self::from_request_keyed(now, request, key, reliable, config)
    }

    /// [`ClientTransaction::from_request`] for a caller that knows the request's key (it
    /// wrote the top Via's branch and the CSeq itself): the Via is not read back.
    /// `key` must be [`TxnKey::of_client_request`] of `request` (checked in debug builds).
    pub fn from_request_keyed(
        now: Instant,
        request: Message,
        key: TxnKey,
        reliable: bool,
        config: TimerConfig,
    ) -> Result<Self, TxnError> {
        Self::start(now, RequestMsg::Own(request), key, reliable, config)
    }

    fn start(
        now: Instant,
        request: RequestMsg,
        key: TxnKey,
        reliable: bool,
        config: TimerConfig,
    ) -> Result<Self, TxnError> {
        let invite = Self::invite_of(&key)?;
        let mut t = Self::started(request, key, invite, reliable, config);
        t.arm(now);
        Ok(t)
    }

    /// Whether a client transaction for `key` is an INVITE one; an error for ACK, which
    /// has none (the part of [`ClientTransaction::from_request_keyed`] that can fail).
    pub(crate) fn invite_of(key: &TxnKey) -> Result<bool, TxnError> {
        match key.method {
            Method::Ack => Err(TxnError::AckTransaction),
            Method::Invite => Ok(true),
            _ => Ok(false),
        }
    }

    /// The transaction of [`ClientTransaction::from_request_keyed`] once
    /// [`ClientTransaction::invite_of`] said `invite`, before [`ClientTransaction::arm`]:
    /// infallible, so that the UA can write it straight into the box that keeps it (a
    /// client transaction is over a kilobyte).
    #[inline(always)]
    pub(crate) fn started(
        request: RequestMsg,
        key: TxnKey,
        invite: bool,
        reliable: bool,
        config: TimerConfig,
    ) -> Self {
        debug_assert_eq!(
            TxnKey::of_client_request(&request).as_ref(),
            Some(&key),
            "the key given is the request's"
        );
        // The parts that are not empty at the start (the first transmission, the timers)
        // are filled in place by [`ClientTransaction::arm`]: built here and moved, they
        // were copied through the stack.
        Self {
            key,
            invite,
            reliable,
            config,
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            request_msg: request,
            ack: None,
            interval: config.t1,
            retransmissions: 0,
            timers: Timers::default(),
            transmits: SlimFifo::new(),
            events: SlimFifo::new(),
        }
    }

    /// Queues the first transmission and arms the timers of a transaction just made by
    /// [`ClientTransaction::started`] (once).
    pub(crate) fn arm(&mut self, now: Instant) {
        // A request edited since it was built (a retry with credentials) is printed once, into
        // a text of its own that every transmission then shares, rather than printed again for
        // each one while it also keeps the text it was built in.
        let bytes = match &mut self.request_msg {
            RequestMsg::Own(m) => m.wire_whole(),
            shared => shared.wire(),
        };
        self.transmits.push_back(Transmit {
            bytes,
            retransmission: false,
        });
        let (retransmit, timeout) = if self.invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        // RFC 3261 §17.1.1.2 / §17.1.2.2: retransmit only over unreliable transports;
        // Timer B / F = 64*T1 in every case.
        let (config, reliable) = (self.config, self.reliable);
        if !reliable {
            self.timers
                .set_after(retransmit, now, config.initial(retransmit, reliable));
        }
        self.timers
            .set_after(timeout, now, config.initial(timeout, reliable));
    }

    /// The key responses are matched with.
    pub fn key(&self) -> &TxnKey {
        &self.key
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The request this transaction sends (an empty message after [`ClientTransaction::shed`]).
    pub fn request(&self) -> &Message {
        &self.request_msg
    }

    /// Drops the request (its bytes and its message) once a final response has moved the
    /// transaction to Completed, Accepted or Terminated: nothing in those states sends or
    /// reads it again (retransmissions have stopped; the ACK for a non-2xx answer was built
    /// on the way into Completed and is kept). A finished transaction waiting out Timer D, K
    /// or M then holds a few hundred bytes instead of its request twice. Does nothing in
    /// Calling, Trying or Proceeding. Cheap when there is nothing (left) to drop: the owner
    /// calls it on every pass over its transactions.
    pub fn shed(&mut self) {
        if matches!(
            self.state,
            State::Completed | State::Accepted | State::Terminated
        ) {
            self.request_msg = RequestMsg::Gone;
            // Drained queues give their room back.
            self.transmits.shrink();
            self.events.shrink();
        }
    }

    /// The request, taken out once a final response has moved the transaction to
    /// Completed, Accepted or Terminated (nothing reads it then: see
    /// [`ClientTransaction::shed`]); `None` before, or when taken already.
    pub(crate) fn take_request(&mut self) -> Option<Message> {
        if !matches!(
            self.state,
            State::Completed | State::Accepted | State::Terminated
        ) {
            return None;
        }
        match std::mem::replace(&mut self.request_msg, RequestMsg::Gone) {
            RequestMsg::Own(m) => Some(m),
            RequestMsg::Shared(m) => Some(Arc::unwrap_or_clone(m)),
            RequestMsg::Gone => None,
        }
    }

    /// True when nothing waits in [`ClientTransaction::poll_transmit`] or
    /// [`ClientTransaction::poll_event`].
    pub fn is_quiet(&self) -> bool {
        self.transmits.is_empty() && self.events.is_empty()
    }

    /// The compact form of a transaction that has its final response and only waits out
    /// Timer D (INVITE, non-2xx: Completed), M (INVITE, 2xx: Accepted) or K (non-INVITE:
    /// Completed), with nothing left to drain: its key, that deadline and, for an INVITE in
    /// Completed, its ACK. It answers what the transaction would still answer (see
    /// [`Finished::handle_response`]). `Err(self)` in any other state or while something
    /// waits to be polled.
    #[allow(clippy::result_large_err)] // reason: the transaction is handed back whole, by value, as it came
    pub fn finish(mut self) -> Result<Finished, Self> {
        self.take_finished().ok_or(self)
    }

    /// [`ClientTransaction::finish`] in place, for an owner that keeps its transactions in
    /// boxes or lists (no copy of the whole transaction): the compact form, taken out of
    /// the transaction, which is left Terminated with nothing in it. `None` (and the
    /// transaction untouched) when `finish` would hand it back.
    pub fn take_finished(&mut self) -> Option<Finished> {
        let timer = match (self.state, self.invite) {
            (State::Completed, true) => Timer::D,
            (State::Accepted, true) => Timer::M,
            (State::Completed, false) => Timer::K,
            _ => return None,
        };
        let deadline = self.timers.get(timer)?;
        if !self.is_quiet() {
            return None;
        }
        let kind = match (timer, self.ack.take()) {
            (Timer::D, Some(ack)) => FinishedKind::ClientCompletedInvite(ack),
            (Timer::M, _) => FinishedKind::ClientAccepted,
            _ => FinishedKind::Absorb,
        };
        self.state = State::Terminated;
        self.timers = Timers::default();
        Some(Finished {
            key: take_key(&mut self.key),
            deadline,
            timer,
            kind,
        })
    }

    /// Retransmissions of the request so far.
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// Feeds a response whose [`TxnKey::of_response`] equals [`ClientTransaction::key`].
    pub fn handle_response(&mut self, now: Instant, resp: &Message) {
        if self.step(now, resp) {
            push_event(&mut self.events, TxnEvent::Response(resp.clone()));
        }
    }

    /// [`ClientTransaction::handle_response`] taking the response (passed on without a copy).
    pub fn handle_response_owned(&mut self, now: Instant, resp: Message) {
        if self.step(now, &resp) {
            push_event(&mut self.events, TxnEvent::Response(resp));
        }
    }

    /// [`ClientTransaction::handle_response_owned`] for the UA, which takes the response
    /// straight back when it would be the only event queued (`Some`): it then handles it
    /// as the next event of this transaction, in the same order, without a boxed event.
    /// Queued as usual (`None` back) behind events not yet drained, or absorbed (`None`).
    pub(crate) fn handle_response_direct(
        &mut self,
        now: Instant,
        resp: Message,
    ) -> Option<TxnEvent> {
        let alone = self.events.is_empty();
        if !self.step(now, &resp) {
            return None;
        }
        if alone {
            return Some(TxnEvent::Response(resp));
        }
        push_event(&mut self.events, TxnEvent::Response(resp));
        None
    }

    /// Moves the state machine for `resp`; true when the TU must see it.
    fn step(&mut self, now: Instant, resp: &Message) -> bool {
        let Some(code) = resp.status() else {
            return false;
        };
        let mut deliver = false;
        match (self.state, code) {
            (State::Calling | State::Trying | State::Proceeding, 100..=199) => {
                if self.state == State::Calling {
                    // §17.1.1.2: a provisional response stops INVITE retransmissions, and
                    // Timer B ends only a transaction still in Calling (Figure 5): a callee
                    // may ring for as long as it likes; the caller gives up with CANCEL.
                    self.timers.stop(Timer::A);
                    if self.invite {
                        self.timers.stop(Timer::B);
                    }
                }
                self.state = State::Proceeding;
                if !self.invite && !self.reliable {
                    // §17.1.2.2: in Proceeding, Timer E continues at T2.
                    self.interval = self.config.t2;
                }
                deliver = true;
            }
            (State::Calling | State::Proceeding, 200..=299) if self.invite => {
                // RFC 6026 §8.4: Accepted, Timer M; the TU sends the ACK.
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.state = State::Accepted;
                self.timers
                    .set_after(Timer::M, now, self.config.initial(Timer::M, self.reliable));
                deliver = true;
            }
            (State::Accepted, 200..=299) => {
                // A retransmitted 2xx: the TU re-sends its ACK (RFC 6026 §7.2).
                deliver = true;
            }
            (State::Calling | State::Proceeding, 300..=699) if self.invite => {
                // §17.1.1.2: Completed, ACK, Timer D (32 s unreliable, 0 reliable).
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.state = State::Completed;
                let ack = Bytes::from(self.build_ack_bytes(resp));
                self.ack = Some(ack.clone());
                self.transmits.push_back(Transmit {
                    bytes: ack,
                    retransmission: false,
                });
                deliver = true;
                self.timers
                    .set_after(Timer::D, now, self.config.initial(Timer::D, self.reliable));
            }
            (State::Completed, 300..=699) if self.invite => {
                // §17.1.1.2: a retransmitted final response is answered with the ACK again.
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(Transmit {
                        bytes: ack.clone(),
                        retransmission: true,
                    });
                }
            }
            (State::Trying | State::Proceeding, 200..=699) if !self.invite => {
                // §17.1.2.2: Completed, Timer K (T4 unreliable, 0 reliable).
                self.timers.stop(Timer::E);
                self.timers.stop(Timer::F);
                self.state = State::Completed;
                deliver = true;
                self.timers
                    .set_after(Timer::K, now, self.config.initial(Timer::K, self.reliable));
            }
            // Anything else (late provisional, retransmitted final in Completed) is absorbed.
            _ => {}
        }
        deliver
    }

    /// The transport failed to send (§17.1.1.2, §17.1.2.2): the transaction ends as a timeout
    /// would, reported as [`TxnEvent::Timeout`] of the transaction's timeout timer.
    pub fn handle_transport_error(&mut self) {
        if matches!(
            self.state,
            State::Calling | State::Trying | State::Proceeding
        ) {
            let t = if self.invite { Timer::B } else { Timer::F };
            push_event(&mut self.events, TxnEvent::Timeout(t));
            self.terminate();
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.expired(now) {
            push_event(&mut self.events, TxnEvent::TimerFired(timer));
            match timer {
                Timer::A | Timer::E => {
                    if matches!(
                        self.state,
                        State::Calling | State::Trying | State::Proceeding
                    ) {
                        self.retransmissions += 1;
                        self.transmits.push_back(Transmit {
                            bytes: self.request_msg.wire(),
                            retransmission: true,
                        });
                        push_event(
                            &mut self.events,
                            TxnEvent::Retransmitted {
                                timer: Some(timer),
                                count: self.retransmissions,
                            },
                        );
                        // §17.1.1.2: Timer A doubles without bound (B ends it);
                        // §17.1.2.2: Timer E doubles up to T2 (and stays at T2 in Proceeding).
                        self.interval = if timer == Timer::E && self.state == State::Proceeding {
                            self.config.proceeding_interval()
                        } else {
                            self.config.next_interval(timer, self.interval)
                        };
                        self.timers.set_after(timer, now, self.interval);
                    }
                }
                Timer::B | Timer::F => {
                    push_event(&mut self.events, TxnEvent::Timeout(timer));
                    self.terminate();
                }
                Timer::D | Timer::K | Timer::M => self.terminate(),
                _ => {}
            }
        }
    }

    /// A CANCEL for this INVITE has gone out (RFC 3261 §9.1): "If there is no final response
    /// for the original request in 64*T1 seconds ..., the client SHOULD then consider the
    /// original transaction cancelled and SHOULD destroy the client transaction". Timer B,
    /// which no longer runs in Proceeding, is armed for that: 64·T1 from now, reported as it
    /// is in Calling (`TxnEvent::Timeout(Timer::B)`, the transaction ended). In Calling, the
    /// Timer B of the INVITE still runs and comes first; in other states it does nothing.
    pub fn cancel_sent(&mut self, now: Instant) {
        if self.invite && self.state == State::Proceeding && self.timers.get(Timer::B).is_none() {
            self.timers
                .set_after(Timer::B, now, self.config.initial(Timer::B, self.reliable));
        }
    }

    fn terminate(&mut self) {
        if self.state != State::Terminated {
            self.state = State::Terminated;
            self.timers.stop_all();
            push_event(&mut self.events, TxnEvent::Terminated);
        }
    }

    /// §17.1.1.3: the ACK for a non-2xx final response: same Request-URI, Call-ID, From, top
    /// Via and CSeq number as the INVITE, To from the response, the INVITE's Route set.
    /// The reference for [`ClientTransaction::build_ack_bytes`]: the ACK as a message (its
    /// `to_bytes` are what that function prints).
    #[cfg(test)]
    fn build_ack(&self, resp: &Message) -> Message {
        let invite = &self.request_msg;
        // `new` only accepts requests (TxnKey::of_client_request needs a CSeq and a Via, and
        // responses never reach here), so the Request-URI is present.
        let uri = invite
            .request_uri()
            .map(std::borrow::Cow::into_owned)
            .expect("a request has a Request-URI");
        let mut ack = Message::new_request(Method::Ack, uri);
        // Via, Max-Forwards, the routes, From, Call-ID, To, CSeq, Content-Length: room for
        // them all at once. The request's lines are copied as it printed them, sharing its
        // text (no copy of each value).
        let routes = invite.headers.get_all(&Route::NAME).count();
        ack.headers = Headers::with_capacity(7 + routes);
        if let Some(via) = invite.headers.get(&HeaderName::Via) {
            // §17.1.1.3: one Via, equal to the request's top Via. A line holding one value
            // (ours always does) is that line as sent; a joined line is parsed for its first.
            let value = via.value();
            if value.contains(',') {
                let top = invite
                    .headers
                    .typed::<Via>()
                    .and_then(Result::ok)
                    .map_or_else(|| value.to_owned(), |v| text_of(&v, 96));
                ack.headers.push(Header::new(HeaderName::Via, top));
            } else {
                ack.headers.push_ref(via);
            }
        }
        ack.headers
            .push(Header::from_static(HeaderName::MaxForwards, "70"));
        for r in invite.headers.get_all(&Route::NAME) {
            ack.headers.push_ref(r);
        }
        for name in [HeaderName::From, HeaderName::CallId] {
            if let Some(h) = invite.headers.get(&name) {
                ack.headers.push_ref(h);
            }
        }
        if let Some(to) = resp.headers.get(&To::NAME) {
            ack.headers.push(Header::new(HeaderName::To, to.value()));
        }
        let seq = invite.cseq().map_or(1, |c| c.seq);
        // `CSeq { seq, method: Ack }` as its Display prints it, without the formatting machinery.
        let mut cseq = String::with_capacity(14);
        sip_msg::push_decimal(&mut cseq, u64::from(seq));
        cseq.push_str(" ACK");
        ack.headers.push(Header::new(HeaderName::CSeq, cseq));
        ack.headers
            .push(Header::from_static(HeaderName::ContentLength, "0"));
        ack
    }

    /// The ACK for the non-2xx `resp` printed (RFC 3261 §17.1.1.3), byte for byte what
    /// `build_ack(resp).to_bytes()` prints (test `the_ack_printed_at_once_is_the_built_one`),
    /// written straight into a buffer of its exact size (kept until Timer D): no owned copy
    /// of the Request-URI, no header list, no `To` and `CSeq` strings, no `Message`.
    fn build_ack_bytes(&self, resp: &Message) -> Vec<u8> {
        /// `fmt::Write` over bytes (what the URI is printed through).
        struct Out<'a>(&'a mut Vec<u8>);
        impl std::fmt::Write for Out<'_> {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                self.0.extend_from_slice(s.as_bytes());
                Ok(())
            }
        }
        /// Counts what is written (the URI's printed length, before the buffer is made).
        struct Count(usize);
        impl std::fmt::Write for Count {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                self.0 += s.len();
                Ok(())
            }
        }
        let invite = &self.request_msg;
        // `new` only accepts requests (TxnKey::of_client_request needs a CSeq and a Via, and
        // responses never reach here), so the Request-URI is present.
        let uri = invite.request_uri().expect("a request has a Request-URI");
        // The lines in the order `build_ack` pushes them: (name, value) or a line as sent.
        enum Line<'a> {
            Raw(&'a [u8]),
            Value(&'a str, &'a str),
        }
        /// A request's line copied into the ACK: printed as the request printed it.
        fn as_sent(h: sip_msg::HeaderRef<'_>) -> Line<'_> {
            match h.raw() {
                Some(raw) => Line::Raw(raw),
                None => Line::Value(h.name().as_str(), h.value()),
            }
        }
        let mut joined_top = None;
        let via = invite.headers.get(&HeaderName::Via).map(|via| {
            // §17.1.1.3: one Via, equal to the request's top Via. A line holding one value
            // (ours always does) is that line as sent; a joined line is parsed for its first.
            let value = via.value();
            if value.contains(',') {
                let top = invite
                    .headers
                    .typed::<Via>()
                    .and_then(Result::ok)
                    .map_or_else(|| value.to_owned(), |v| text_of(&v, 96));
                joined_top = Some(top);
                None
            } else {
                Some(as_sent(via))
            }
        });
        // The CSeq number in decimal, as `Display` prints it.
        let mut digits = [0u8; 20];
        let seq =
            sip_msg::decimal(invite.cseq().map_or(1, |c| c.seq).into(), &mut digits).as_bytes();
        let via = &via;
        let joined_top = joined_top.as_deref().unwrap_or("");
        let route = Route::NAME;
        let lines = || {
            via.iter()
                .map(move |v| match v {
                    Some(Line::Raw(raw)) => Line::Raw(raw),
                    Some(Line::Value(name, value)) => Line::Value(name, value),
                    None => Line::Value("Via", joined_top),
                })
                .chain([Line::Value("Max-Forwards", "70")])
                .chain(invite.headers.get_all(&route).map(as_sent))
                .chain(
                    [HeaderName::From, HeaderName::CallId]
                        .into_iter()
                        .filter_map(|name| invite.headers.get(&name).map(as_sent)),
                )
                .chain(
                    resp.headers
                        .get(&To::NAME)
                        .map(|to| Line::Value("To", to.value())),
                )
        };
        let line_len = |l: &Line<'_>| match l {
            Line::Raw(raw) => raw.len() + 2,
            Line::Value(name, value) => name.len() + 2 + value.len() + 2,
        };
        let mut uri_len = Count(0);
        // Counting never fails.
        let _ = uri.write_to(&mut uri_len);
        // `ACK <uri> SIP/2.0`, the lines, `CSeq: <seq> ACK`, `Content-Length: 0`, the end.
        let size = 4
            + uri_len.0
            + 10
            + lines().map(|l| line_len(&l)).sum::<usize>()
            + 6
            + seq.len()
            + 6
            + 19
            + 2;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(b"ACK ");
        // Writing into a Vec never fails.
        let _ = uri.write_to(&mut Out(&mut out));
        out.extend_from_slice(b" SIP/2.0\r\n");
        for l in lines() {
            match l {
                Line::Raw(raw) => out.extend_from_slice(raw),
                Line::Value(name, value) => {
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value.as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        // `CSeq { seq, method: Ack }` as its Display prints it.
        out.extend_from_slice(b"CSeq: ");
        out.extend_from_slice(seq);
        out.extend_from_slice(b" ACK\r\nContent-Length: 0\r\n\r\n");
        debug_assert_eq!(out.len(), size, "the room made is the room used");
        out
    }

    /// The next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front().map(|ev| *ev)
    }

    /// Every queued event at once, oldest first ([`ClientTransaction::poll_event`] until
    /// `None`, as one queue the owner reads by reference: no event is moved again).
    pub(crate) fn take_events(&mut self) -> SlimFifo<Box<TxnEvent>> {
        std::mem::take(&mut self.events)
    }

    /// When [`ClientTransaction::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }
}

/// A server transaction (RFC 3261 §17.2): INVITE or non-INVITE.
#[derive(Debug)]
pub struct ServerTransaction {
    key: TxnKey,
    invite: bool,
    reliable: bool,
    config: TimerConfig,
    state: State,
    last_response: Option<Bytes>,
    interval: Duration,
    retransmissions: u32,
    timers: Timers,
    transmits: SlimFifo<Transmit>,
    events: SlimFifo<Box<TxnEvent>>,
}

impl ServerTransaction {
    /// Creates the transaction for a new request (not an ACK). The TU learns of the request
    /// from its own dispatch; the transaction absorbs retransmissions of it.
    pub fn new(request: &Message, reliable: bool, config: TimerConfig) -> Result<Self, TxnError> {
        let key = TxnKey::of_server_request(request).ok_or(TxnError::MissingTxnHeaders)?;
        Self::with_key(request, key, reliable, config)
    }

    /// [`ServerTransaction::new`] for a TU that has read the request's key already (to match
    /// it against its transactions): the Via is not read again. `key` must be
    /// [`TxnKey::of_server_request`] of `request` (checked in debug builds).
    pub fn with_key(
        request: &Message,
        key: TxnKey,
        reliable: bool,
        config: TimerConfig,
    ) -> Result<Self, TxnError> {
        debug_assert_eq!(
            TxnKey::of_server_request(request).as_ref(),
            Some(&key),
            "the key given is the request's"
        );
        if request.method() == Some(Method::Ack) {
            return Err(TxnError::AckTransaction);
        }
        let invite = key.method == Method::Invite;
        Ok(Self {
            key,
            invite,
            reliable,
            config,
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            last_response: None,
            interval: config.t1,
            retransmissions: 0,
            timers: Timers::default(),
            transmits: SlimFifo::new(),
            events: SlimFifo::new(),
        })
    }

    /// The key requests are matched with.
    pub fn key(&self) -> &TxnKey {
        &self.key
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Sends a response from the TU.
    pub fn send_response(&mut self, now: Instant, resp: &Message) -> Result<(), TxnError> {
        let code = resp.status().unwrap_or(500);
        self.send_response_bytes(now, code, Bytes::from(resp.to_bytes()))
    }

    /// [`ServerTransaction::send_response`] for a response the TU printed itself: `bytes` is
    /// the whole message and `code` its status code.
    pub fn send_response_bytes(
        &mut self,
        now: Instant,
        code: u16,
        bytes: Bytes,
    ) -> Result<(), TxnError> {
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => self.state = State::Proceeding,
            (State::Proceeding, 200..=299) if self.invite => {
                // RFC 6026 §8.5/§8.7: Accepted; the TU (UA core) retransmits 2xx until ACK
                // (RFC 3261 §13.3.1.4); Timer L absorbs INVITE retransmissions meanwhile.
                self.state = State::Accepted;
                self.timers
                    .set_after(Timer::L, now, self.config.initial(Timer::L, self.reliable));
            }
            (State::Accepted, 200..=299) => {}
            (State::Proceeding, 300..=699) if self.invite => {
                // §17.2.1: Completed, Timer G (unreliable) and Timer H.
                self.state = State::Completed;
                if !self.reliable {
                    self.timers
                        .set_after(Timer::G, now, self.config.initial(Timer::G, false));
                }
                self.timers
                    .set_after(Timer::H, now, self.config.initial(Timer::H, self.reliable));
            }
            (State::Trying | State::Proceeding, 200..=699) if !self.invite => {
                // §17.2.2: Completed, Timer J (64*T1 unreliable, 0 reliable).
                self.state = State::Completed;
                self.timers
                    .set_after(Timer::J, now, self.config.initial(Timer::J, self.reliable));
            }
            (state, _) => return Err(TxnError::BadState(state)),
        }
        // Kept to be sent again in Proceeding and Completed only: in Accepted the UA core
        // retransmits the 2xx and a retransmitted INVITE is absorbed (RFC 6026 §8.7), so a
        // finished INVITE does not hold its 2xx for Timer L's 32 s.
        self.last_response = (self.state != State::Accepted).then(|| bytes.clone());
        self.transmits.push_back(Transmit {
            bytes,
            retransmission: false,
        });
        Ok(())
    }

    /// Feeds a request matching [`ServerTransaction::key`]: a retransmission of the original,
    /// or the ACK of a non-2xx final response.
    pub fn handle_request(&mut self, now: Instant, req: &Message) {
        if req.method() == Some(Method::Ack) {
            if self.invite && self.state == State::Completed {
                // §17.2.1: Confirmed, Timer I (T4 unreliable, 0 reliable); G and H stop.
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                self.state = State::Confirmed;
                // Confirmed only absorbs ACKs: the final response is sent no more.
                self.last_response = None;
                self.timers
                    .set_after(Timer::I, now, self.config.initial(Timer::I, self.reliable));
                push_event(&mut self.events, TxnEvent::Ack(req.clone()));
            }
            return;
        }
        // A retransmitted request: re-send the last response (§17.2.1, §17.2.2), except in
        // Trying (no response yet) and Accepted (the UA core retransmits 2xx itself).
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(last) = &self.last_response
        {
            self.retransmissions += 1;
            self.transmits.push_back(Transmit {
                bytes: last.clone(),
                retransmission: true,
            });
            push_event(
                &mut self.events,
                TxnEvent::Retransmitted {
                    timer: None,
                    count: self.retransmissions,
                },
            );
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.expired(now) {
            push_event(&mut self.events, TxnEvent::TimerFired(timer));
            match timer {
                Timer::G if self.state == State::Completed => {
                    if let Some(last) = &self.last_response {
                        self.retransmissions += 1;
                        self.transmits.push_back(Transmit {
                            bytes: last.clone(),
                            retransmission: true,
                        });
                        push_event(
                            &mut self.events,
                            TxnEvent::Retransmitted {
                                timer: Some(Timer::G),
                                count: self.retransmissions,
                            },
                        );
                    }
                    // §17.2.1: Timer G doubles up to T2.
                    self.interval = self.config.next_interval(Timer::G, self.interval);
                    self.timers.set_after(Timer::G, now, self.interval);
                }
                Timer::H => {
                    push_event(&mut self.events, TxnEvent::Timeout(Timer::H));
                    self.terminate();
                }
                Timer::I | Timer::J | Timer::L => self.terminate(),
                _ => {}
            }
        }
    }

    fn terminate(&mut self) {
        if self.state != State::Terminated {
            self.state = State::Terminated;
            self.timers.stop_all();
            push_event(&mut self.events, TxnEvent::Terminated);
        }
    }

    /// The next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front().map(|ev| *ev)
    }

    /// True when nothing waits in [`ServerTransaction::poll_transmit`] or
    /// [`ServerTransaction::poll_event`].
    pub fn is_quiet(&self) -> bool {
        self.transmits.is_empty() && self.events.is_empty()
    }

    /// The compact form of a transaction that has sent its final response and only waits
    /// out Timer J (non-INVITE: Completed), L (INVITE, 2xx: Accepted) or I (INVITE,
    /// non-2xx, ACKed: Confirmed), with nothing left to drain: its key, that deadline and,
    /// for a non-INVITE, the response it re-sends for each retransmitted request. `Err(self)`
    /// in any other state (an INVITE in Completed still retransmits its answer) or while
    /// something waits to be polled.
    #[allow(clippy::result_large_err)] // reason: the transaction is handed back whole, by value, as it came
    pub fn finish(mut self) -> Result<Finished, Self> {
        self.take_finished().ok_or(self)
    }

    /// [`ServerTransaction::finish`] in place (see [`ClientTransaction::take_finished`]):
    /// the transaction is left Terminated with nothing in it; `None` (and the transaction
    /// untouched) when `finish` would hand it back.
    pub fn take_finished(&mut self) -> Option<Finished> {
        let timer = match (self.state, self.invite) {
            (State::Completed, false) => Timer::J,
            (State::Accepted, true) => Timer::L,
            (State::Confirmed, true) => Timer::I,
            _ => return None,
        };
        let deadline = self.timers.get(timer)?;
        if !self.is_quiet() {
            return None;
        }
        let kind = match (timer, self.last_response.take()) {
            (Timer::J, Some(last)) => FinishedKind::ServerCompleted {
                last,
                retransmissions: self.retransmissions,
            },
            (Timer::L, _) => FinishedKind::ServerAccepted,
            _ => FinishedKind::Absorb,
        };
        self.state = State::Terminated;
        self.timers = Timers::default();
        Some(Finished {
            key: take_key(&mut self.key),
            deadline,
            timer,
            kind,
        })
    }

    /// When [`ServerTransaction::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }
}

/// A transaction that has its final answer and only waits out its last timer (client: D, K
/// or M; server: I, J or L), kept in the few bytes it still needs: its key (to match
/// retransmissions), the deadline, and the one message it may send again. Made by
/// [`ClientTransaction::finish`] or [`ServerTransaction::finish`]; it answers retransmissions
/// as the whole transaction would, and ends at [`Finished::deadline`] (the owner reports
/// [`Finished::timer`] fired then, as the transaction's `TimerFired` event did).
#[derive(Debug)]
pub struct Finished {
    key: TxnKey,
    deadline: Instant,
    timer: Timer,
    kind: FinishedKind,
}

#[derive(Debug)]
enum FinishedKind {
    /// Client INVITE in Completed: the ACK, sent again for each retransmitted final response
    /// (§17.1.1.2).
    ClientCompletedInvite(Bytes),
    /// Client INVITE in Accepted: retransmitted 2xx go to the TU (RFC 6026 §7.2).
    ClientAccepted,
    /// Server non-INVITE in Completed: the final response, sent again for each
    /// retransmitted request (§17.2.2).
    ServerCompleted { last: Bytes, retransmissions: u32 },
    /// Server INVITE in Accepted: retransmitted INVITEs are absorbed (RFC 6026 §8.7: the TU
    /// retransmits its 2xx), an ACK matching it goes to the TU (§8.7: a UAC may ACK the 2xx
    /// with the INVITE's branch).
    ServerAccepted,
    /// Absorbs whatever matches: a client non-INVITE in Completed (§17.1.2.2), a server
    /// INVITE in Confirmed (§17.2.1: ACKs absorbed).
    Absorb,
}

/// What a [`Finished`] transaction does with a matching message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishedReply {
    /// Nothing: the message is absorbed.
    Absorbed,
    /// The TU must see the message: a retransmitted 2xx to a client INVITE in Accepted (to
    /// re-send its ACK), an ACK matching a server INVITE in Accepted (RFC 6026 §8.7).
    Deliver,
    /// Send this again on the transaction's flow; `count` is the transaction's
    /// retransmissions so far when the transaction reports them (server non-INVITE, as a
    /// [`TxnEvent::Retransmitted`] with no timer), `None` for the ACK a client INVITE
    /// re-sends.
    Resend {
        /// The bytes, marked as a retransmission.
        transmit: Transmit,
        /// The retransmission count to report, if any.
        count: Option<u32>,
    },
}

impl Finished {
    /// The key messages are matched with (the transaction's).
    pub fn key(&self) -> &TxnKey {
        &self.key
    }

    /// When the transaction ends (its last timer).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The timer that ends it (D, K or M for a client; I, J or L for a server).
    pub fn timer(&self) -> Timer {
        self.timer
    }

    /// True for a server transaction's record.
    pub fn is_server(&self) -> bool {
        matches!(self.timer, Timer::I | Timer::J | Timer::L)
    }

    /// A response matching a finished client transaction's key: the ACK again for a
    /// retransmitted non-2xx final (INVITE, Completed), the TU for a retransmitted 2xx
    /// (INVITE, Accepted); anything else is absorbed.
    pub fn handle_response(&self, resp: &Message) -> FinishedReply {
        let code = resp.status().unwrap_or(0);
        match &self.kind {
            FinishedKind::ClientCompletedInvite(ack) if (300..=699).contains(&code) => {
                FinishedReply::Resend {
                    transmit: Transmit {
                        bytes: ack.clone(),
                        retransmission: true,
                    },
                    count: None,
                }
            }
            FinishedKind::ClientAccepted if (200..=299).contains(&code) => FinishedReply::Deliver,
            _ => FinishedReply::Absorbed,
        }
    }

    /// A request matching a finished server transaction's key: a retransmitted non-INVITE
    /// request is answered with the final response again (counted); an ACK in Accepted goes
    /// to the TU (RFC 6026 §8.7); retransmitted INVITEs and other ACKs are absorbed.
    pub fn handle_request(&mut self, req: &Message) -> FinishedReply {
        match &mut self.kind {
            FinishedKind::ServerAccepted if req.method() == Some(Method::Ack) => {
                FinishedReply::Deliver
            }
            FinishedKind::ServerCompleted {
                last,
                retransmissions,
            } if req.method() != Some(Method::Ack) => {
                *retransmissions += 1;
                FinishedReply::Resend {
                    transmit: Transmit {
                        bytes: last.clone(),
                        retransmission: true,
                    },
                    count: Some(*retransmissions),
                }
            }
            _ => FinishedReply::Absorbed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str) -> Message {
        let raw = format!(
            "{method} sip:bob@biloxi.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\nRoute: <sip:p1.example;lr>\r\nFrom: <sip:alice@atlanta.example>;tag=9fxced76sl\r\n\
To: <sip:bob@biloxi.example>\r\nCall-ID: 3848276298220188511@atlanta.example\r\nCSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    fn response(req: &Message, code: u16) -> Message {
        Message::response_to(req, code, "X", (code > 100).then_some("8321234356"))
    }

    /// Runs `t` on a virtual clock until `end`, returning (offset, event) pairs.
    fn run_client(
        t: &mut ClientTransaction,
        start: Instant,
        end: Duration,
    ) -> Vec<(Duration, TxnEvent)> {
        let mut out = Vec::new();
        while let Some(at) = t.poll_timeout() {
            if at > start + end {
                break;
            }
            t.handle_timeout(at);
            while let Some(e) = t.poll_event() {
                out.push((at - start, e));
            }
        }
        out
    }

    /// The timeouts among `events`: (offset, timer).
    fn timeouts(events: &[(Duration, TxnEvent)]) -> Vec<(Duration, Timer)> {
        events
            .iter()
            .filter_map(|(at, e)| match e {
                TxnEvent::Timeout(timer) => Some((*at, *timer)),
                _ => None,
            })
            .collect()
    }

    fn retransmit_times(events: &[(Duration, TxnEvent)]) -> Vec<u64> {
        events
            .iter()
            .filter(|(_, e)| matches!(e, TxnEvent::Retransmitted { .. }))
            .map(|(d, _)| d.as_millis() as u64)
            .collect()
    }

    #[test]
    fn the_ack_printed_at_once_is_the_built_one() {
        // `build_ack_bytes` prints what `build_ack(..).to_bytes()` printed: requests parsed
        // (compact names, odd spacing, joined Vias, several or no routes, large CSeq numbers)
        // or with a Via set afresh (an owned value), responses with a compact `t:`.
        let now = Instant::now();
        let base = String::from_utf8(request("INVITE").to_bytes()).unwrap();
        let mut requests: Vec<Message> = [
            base.clone(),
            base.replace("Route: <sip:p1.example;lr>\r\n", ""),
            base.replace(
                "Route: <sip:p1.example;lr>\r\n",
                "Route: <sip:p1.example;lr>\r\nRoute: <sip:p2.example;lr>, <sip:p3.example;lr>\r\n",
            ),
            base.replace("Via: ", "v:   ")
                .replace("From: ", "f: ")
                .replace("Call-ID: ", "i: "),
            base.replace(
                "branch=z9hG4bK74bf9",
                "branch=z9hG4bK74bf9, SIP/2.0/TCP p.example;branch=z9hG4bKp",
            ),
            base.replace("CSeq: 1 INVITE", "CSeq: 4294967295 INVITE"),
            base.replace("CSeq: 1 INVITE", "CSeq: 1000 INVITE").replace(
                "sip:bob@biloxi.example SIP/2.0",
                "sip:bob:pw@[2001:db8::1]:5070;transport=tcp?x=y SIP/2.0",
            ),
        ]
        .iter()
        .map(|raw| Message::parse(raw.as_bytes()).unwrap())
        .collect();
        let mut set = requests[0].clone();
        set.headers.set(Header::new(
            HeaderName::Via,
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnew;rport",
        ));
        requests.push(set);
        for req in &requests {
            for compact_to in [false, true] {
                let t = ClientTransaction::new(now, req, false, TimerConfig::default()).unwrap();
                let mut resp = response(req, 407);
                if compact_to {
                    let raw = String::from_utf8(resp.to_bytes())
                        .unwrap()
                        .replace("\r\nTo: ", "\r\nt:  ");
                    resp = Message::parse(raw.as_bytes()).unwrap();
                }
                let want = String::from_utf8(t.build_ack(&resp).to_bytes()).unwrap();
                let got = String::from_utf8(t.build_ack_bytes(&resp)).unwrap();
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn every_retransmission_is_the_first_transmission_byte_for_byte() {
        // The request is printed again for each retransmission (its bytes are not kept):
        // Timer A's six resends of an INVITE (and Timer E's of a REGISTER) are the bytes
        // first sent, which are the request as printed.
        let now = Instant::now();
        for method in ["INVITE", "REGISTER"] {
            let req = request(method);
            let mut t = ClientTransaction::new(now, &req, false, TimerConfig::default()).unwrap();
            let first = t.poll_transmit().unwrap();
            assert!(!first.retransmission);
            assert_eq!(&first.bytes[..], &req.to_bytes()[..]);
            let mut at = now;
            let mut resent = 0;
            while let Some(next) = t.poll_timeout() {
                if next > now + Duration::from_secs(20) {
                    break;
                }
                at = at.max(next);
                t.handle_timeout(at);
                while let Some(x) = t.poll_transmit() {
                    assert!(x.retransmission);
                    assert_eq!(x.bytes, first.bytes);
                    resent += 1;
                }
                while t.poll_event().is_some() {}
            }
            assert!(resent >= 5, "{method}: {resent} retransmissions");
        }
    }

    #[test]
    fn a_shed_transaction_behaves_as_before() {
        let now = Instant::now();
        // Non-INVITE: shedding while Trying keeps the request (Timer E still resends it).
        let req = request("REGISTER");
        let mut t = ClientTransaction::new(now, &req, false, TimerConfig::default()).unwrap();
        let sent = t.poll_transmit().unwrap().bytes;
        t.shed();
        assert_eq!(t.request().to_bytes(), req.to_bytes());
        t.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(t.poll_transmit().unwrap().bytes, sent);
        while t.poll_event().is_some() {}
        // After the final response: Completed, the request dropped, a retransmitted 200
        // absorbed, Timer K (T4 = 5 s) ends it.
        t.handle_response(now, &response(&req, 200));
        assert!(matches!(t.poll_event(), Some(TxnEvent::Response(_))));
        t.shed();
        assert_eq!(t.state(), State::Completed);
        assert!(t.request().headers.is_empty());
        t.handle_response(now, &response(&req, 200));
        assert!(t.poll_event().is_none() && t.poll_transmit().is_none());
        let ev = run_client(&mut t, now, Duration::from_secs(60));
        assert!(
            ev.iter()
                .any(|(d, e)| matches!(e, TxnEvent::Terminated) && d.as_secs() == 5)
        );

        // INVITE: the ACK for a non-2xx answer is built on the way into Completed; after
        // shedding, a retransmitted 486 gets the same ACK again.
        let inv = request("INVITE");
        let mut t = ClientTransaction::new(now, &inv, false, TimerConfig::default()).unwrap();
        assert!(t.poll_transmit().is_some());
        t.handle_response(now, &response(&inv, 486));
        let ack = t.poll_transmit().unwrap().bytes;
        assert!(ack.starts_with(b"ACK sip:bob@biloxi.example SIP/2.0\r\n"));
        while t.poll_event().is_some() {}
        t.shed();
        t.handle_response(now, &response(&inv, 486));
        let again = t.poll_transmit().unwrap();
        assert!(again.retransmission);
        assert_eq!(again.bytes, ack);
        let ev = run_client(&mut t, now, Duration::from_secs(60));
        assert!(
            ev.iter()
                .any(|(d, e)| matches!(e, TxnEvent::Terminated) && d.as_secs() == 32)
        );
    }

    /// Drains a transaction's queues (what its owner does before `finish`).
    fn drain_client(t: &mut ClientTransaction) -> Vec<Transmit> {
        while t.poll_event().is_some() {}
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    #[test]
    fn finished_client_transactions_answer_as_the_whole_ones_did() {
        let now = Instant::now();
        let cfg = TimerConfig::default();
        // Still at work (Calling / Trying) or with something to poll: not finished.
        let inv = request("INVITE");
        let t = ClientTransaction::new(now, &inv, false, cfg).unwrap();
        let mut t = t.finish().expect_err("Calling, and its INVITE to send");
        drain_client(&mut t);
        let t = t.finish().expect_err("Calling");
        // INVITE, non-2xx: Completed, Timer D (32 s); a retransmitted 486 gets the same ACK
        // again, as the whole transaction sends it; a stray 2xx is absorbed.
        let mut whole = t;
        whole.handle_response(now, &response(&inv, 486));
        let ack = drain_client(&mut whole).remove(0);
        let deadline = whole.poll_timeout().unwrap();
        let f = whole.finish().unwrap();
        assert_eq!(
            (f.timer(), f.deadline(), f.is_server()),
            (Timer::D, deadline, false)
        );
        assert_eq!(deadline - now, Duration::from_secs(32));
        assert_eq!(f.key(), &TxnKey::of_client_request(&inv).unwrap());
        assert_eq!(
            f.handle_response(&response(&inv, 486)),
            FinishedReply::Resend {
                transmit: Transmit {
                    bytes: ack.bytes,
                    retransmission: true
                },
                count: None
            }
        );
        assert_eq!(
            f.handle_response(&response(&inv, 200)),
            FinishedReply::Absorbed
        );
        assert_eq!(
            f.handle_response(&response(&inv, 180)),
            FinishedReply::Absorbed
        );
        // INVITE, 2xx: Accepted, Timer M (32 s); retransmitted 2xx go to the TU (RFC 6026).
        let mut t = ClientTransaction::new(now, &inv, false, cfg).unwrap();
        t.handle_response(now, &response(&inv, 200));
        assert_eq!(drain_client(&mut t).len(), 1, "only the INVITE itself");
        let f = t.finish().unwrap();
        assert_eq!(f.timer(), Timer::M);
        assert_eq!(f.deadline() - now, Duration::from_secs(32));
        assert_eq!(
            f.handle_response(&response(&inv, 200)),
            FinishedReply::Deliver
        );
        assert_eq!(
            f.handle_response(&response(&inv, 486)),
            FinishedReply::Absorbed
        );
        // Non-INVITE: Completed, Timer K (T4 = 5 s), everything absorbed.
        let reg = request("REGISTER");
        let mut t = ClientTransaction::new(now, &reg, false, cfg).unwrap();
        t.handle_response(now, &response(&reg, 401));
        drain_client(&mut t);
        let f = t.finish().unwrap();
        assert_eq!(
            (f.timer(), f.deadline() - now),
            (Timer::K, Duration::from_secs(5))
        );
        assert_eq!(
            f.handle_response(&response(&reg, 401)),
            FinishedReply::Absorbed
        );
        // Reliable transport: Timer K is 0, the record ends at once.
        let mut t = ClientTransaction::new(now, &reg, true, cfg).unwrap();
        t.handle_response(now, &response(&reg, 200));
        drain_client(&mut t);
        assert_eq!(t.finish().unwrap().deadline(), now);
    }

    #[test]
    fn a_record_taken_in_place_is_the_finished_one_and_leaves_an_inert_transaction() {
        let now = Instant::now();
        let cfg = TimerConfig::default();
        let inv = request("INVITE");
        // Not finishable: nothing taken, nothing changed.
        let mut t = ClientTransaction::new(now, &inv, false, cfg).unwrap();
        let before = (t.state(), t.poll_timeout());
        assert!(t.take_finished().is_none(), "Calling, its INVITE to send");
        drain_client(&mut t);
        assert!(t.take_finished().is_none(), "Calling");
        assert_eq!((t.state(), t.poll_timeout()), before);
        assert_eq!(t.key(), &TxnKey::of_client_request(&inv).unwrap());
        // Completed: the same record as `finish` gives; the transaction is left Terminated,
        // with no timer, nothing to send and no key.
        t.handle_response(now, &response(&inv, 486));
        let ack = drain_client(&mut t).remove(0);
        let deadline = t.poll_timeout().unwrap();
        let f = t.take_finished().unwrap();
        assert_eq!((f.timer(), f.deadline()), (Timer::D, deadline));
        assert_eq!(f.key(), &TxnKey::of_client_request(&inv).unwrap());
        assert_eq!(
            f.handle_response(&response(&inv, 486)),
            FinishedReply::Resend {
                transmit: Transmit {
                    bytes: ack.bytes,
                    retransmission: true
                },
                count: None
            }
        );
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(t.poll_timeout(), None);
        assert!(t.is_quiet() && t.poll_transmit().is_none());
        assert!(t.key().branch().is_empty());
        assert!(t.take_finished().is_none(), "taken once");
        // A server non-INVITE in Completed: its record re-sends the final response.
        let reg = request("REGISTER");
        let mut s = ServerTransaction::new(&reg, false, cfg).unwrap();
        assert!(s.take_finished().is_none(), "Trying");
        s.send_response(now, &response(&reg, 200)).unwrap();
        let sent = s.poll_transmit().unwrap();
        let deadline = s.poll_timeout().unwrap();
        let mut f = s.take_finished().unwrap();
        assert_eq!((f.timer(), f.deadline()), (Timer::J, deadline));
        assert_eq!(
            f.handle_request(&reg),
            FinishedReply::Resend {
                transmit: Transmit {
                    bytes: sent.bytes,
                    retransmission: true
                },
                count: Some(1)
            }
        );
        assert_eq!((s.state(), s.poll_timeout()), (State::Terminated, None));
        assert!(s.take_finished().is_none(), "taken once");
    }

    #[test]
    fn finished_server_transactions_answer_as_the_whole_ones_did() {
        let now = Instant::now();
        let cfg = TimerConfig::default();
        let drain = |t: &mut ServerTransaction| -> Vec<Transmit> {
            while t.poll_event().is_some() {}
            std::iter::from_fn(|| t.poll_transmit()).collect()
        };
        // Non-INVITE: Completed, Timer J (32 s); each retransmitted request gets the final
        // response again, counted; an ACK is absorbed.
        let bye = request("BYE");
        let t = ServerTransaction::new(&bye, false, cfg).unwrap();
        let t0 = t.finish().expect_err("Trying");
        let mut t = t0;
        t.send_response(now, &response(&bye, 200)).unwrap();
        let mut t = t.finish().expect_err("its response to send");
        let ok = drain(&mut t).remove(0).bytes;
        let mut f = t.finish().unwrap();
        assert_eq!((f.timer(), f.is_server()), (Timer::J, true));
        assert_eq!(f.deadline() - now, Duration::from_secs(32));
        for count in 1..=2 {
            assert_eq!(
                f.handle_request(&bye),
                FinishedReply::Resend {
                    transmit: Transmit {
                        bytes: ok.clone(),
                        retransmission: true
                    },
                    count: Some(count)
                }
            );
        }
        assert_eq!(f.handle_request(&request("ACK")), FinishedReply::Absorbed);
        // INVITE, 2xx: Accepted, Timer L; retransmitted INVITEs absorbed (the UA core
        // retransmits its 2xx); an ACK with the INVITE's branch goes to the TU (RFC 6026 §8.7).
        let inv = request("INVITE");
        let mut t = ServerTransaction::new(&inv, false, cfg).unwrap();
        t.send_response(now, &response(&inv, 200)).unwrap();
        drain(&mut t);
        let mut f = t.finish().unwrap();
        assert_eq!(f.timer(), Timer::L);
        assert_eq!(f.handle_request(&inv), FinishedReply::Absorbed);
        assert_eq!(f.handle_request(&request("ACK")), FinishedReply::Deliver);
        assert_eq!(f.handle_request(&inv), FinishedReply::Absorbed);
        // INVITE, non-2xx: Completed still retransmits (Timer G): not finished; once ACKed,
        // Confirmed (Timer I, T4) absorbs further ACKs.
        let mut t = ServerTransaction::new(&inv, false, cfg).unwrap();
        t.send_response(now, &response(&inv, 486)).unwrap();
        drain(&mut t);
        let mut t = t.finish().expect_err("Completed INVITE");
        t.handle_request(now, &request("ACK"));
        drain(&mut t);
        let mut f = t.finish().unwrap();
        assert_eq!(
            (f.timer(), f.deadline() - now),
            (Timer::I, Duration::from_secs(5))
        );
        assert_eq!(f.handle_request(&request("ACK")), FinishedReply::Absorbed);
        assert_eq!(f.handle_request(&inv), FinishedReply::Absorbed);
    }

    #[test]
    fn timer_e_doubles_up_to_t2_then_f_times_out() {
        let now = Instant::now();
        let mut t =
            ClientTransaction::new(now, &request("REGISTER"), false, TimerConfig::default())
                .unwrap();
        assert_eq!(t.state(), State::Trying);
        assert!(!t.poll_transmit().unwrap().retransmission);
        let ev = run_client(&mut t, now, Duration::from_secs(60));
        // §17.1.2.2: 500, 1000, 2000, 4000, 4000 … ms intervals until Timer F at 64*T1 = 32 s.
        assert_eq!(
            retransmit_times(&ev),
            [
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert!(
            matches!(ev.iter().rev().nth(1), Some((d, TxnEvent::Timeout(Timer::F))) if d.as_secs() == 32)
        );
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(t.retransmissions(), 10);
    }

    #[test]
    fn a_response_is_handed_straight_back_only_when_no_event_waits() {
        let now = Instant::now();
        let inv = request("INVITE");
        // Alone: handed back, nothing queued, the state moved as `handle_response` would.
        let mut t = ClientTransaction::new(now, &inv, false, TimerConfig::default()).unwrap();
        let back = t.handle_response_direct(now, response(&inv, 180));
        assert!(matches!(back, Some(TxnEvent::Response(r)) if r.status() == Some(180)));
        assert_eq!(t.state(), State::Proceeding);
        assert!(t.poll_event().is_none());
        // Absorbed (a provisional after the final one): nothing back, nothing queued.
        let ack_count =
            |t: &mut ClientTransaction| std::iter::from_fn(|| t.poll_transmit()).count();
        ack_count(&mut t);
        assert!(t.handle_response_direct(now, response(&inv, 486)).is_some());
        assert_eq!(t.state(), State::Completed);
        assert_eq!(ack_count(&mut t), 1, "the ACK of the 486 is queued");
        assert!(t.handle_response_direct(now, response(&inv, 180)).is_none());
        assert!(t.poll_event().is_none());
        // Behind an event not yet drained (Timer A fired): queued after it, in order.
        let mut t = ClientTransaction::new(now, &inv, false, TimerConfig::default()).unwrap();
        let a = t.poll_timeout().unwrap();
        t.handle_timeout(a);
        assert!(t.handle_response_direct(a, response(&inv, 200)).is_none());
        let events: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
        assert!(matches!(events[0], TxnEvent::TimerFired(Timer::A)));
        assert!(matches!(
            events[1],
            TxnEvent::Retransmitted { count: 1, .. }
        ));
        assert!(matches!(&events[2], TxnEvent::Response(r) if r.status() == Some(200)));
        assert_eq!(events.len(), 3);
        assert_eq!(t.state(), State::Accepted);
    }

    #[test]
    fn timer_a_doubles_without_cap_then_b() {
        let now = Instant::now();
        let mut t =
            ClientTransaction::new(now, &request("INVITE"), false, TimerConfig::default()).unwrap();
        let ev = run_client(&mut t, now, Duration::from_secs(60));
        // §17.1.1.2: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; Timer B at 32 s.
        assert_eq!(retransmit_times(&ev), [500, 1500, 3500, 7500, 15500, 31500]);
        assert!(
            ev.iter()
                .any(|(d, e)| matches!(e, TxnEvent::Timeout(Timer::B)) && d.as_secs() == 32)
        );
    }

    #[test]
    fn timer_b_does_not_end_an_invite_in_proceeding() {
        // RFC 3261 §17.1.1.2 and Figure 5: Timer B only fires out of Calling ("If the client
        // transaction is still in the 'Calling' state when timer B fires ..."); once a
        // provisional response moved the transaction to Proceeding, it waits for the final
        // response however long the callee rings (a UAC gives up with CANCEL, §9.1).
        let now = Instant::now();
        for reliable in [false, true] {
            let inv = request("INVITE");
            let mut t =
                ClientTransaction::new(now, &inv, reliable, TimerConfig::default()).unwrap();
            t.poll_transmit().unwrap();
            t.handle_response(now + Duration::from_millis(100), &response(&inv, 180));
            assert_eq!(t.state(), State::Proceeding);
            let ev = run_client(&mut t, now, Duration::from_secs(60));
            assert_eq!(timeouts(&ev), [], "reliable={reliable}: {ev:?}");
            assert_eq!(t.state(), State::Proceeding, "reliable={reliable}");
            // The 200 that comes after 60 s of ringing is still the transaction's.
            t.handle_response(now + Duration::from_secs(60), &response(&inv, 200));
            assert_eq!(t.state(), State::Accepted, "reliable={reliable}");
        }
        // Without a provisional response Timer B still ends it at 64·T1.
        let inv = request("INVITE");
        let mut t = ClientTransaction::new(now, &inv, false, TimerConfig::default()).unwrap();
        let ev = run_client(&mut t, now, Duration::from_secs(60));
        assert_eq!(
            timeouts(&ev),
            [(Duration::from_secs(32), Timer::B)],
            "{ev:?}"
        );
        assert_eq!(t.state(), State::Terminated);
    }

    #[test]
    fn a_cancelled_invite_without_a_final_response_ends_64_t1_after_the_cancel() {
        // RFC 3261 §9.1: "If there is no final response for the original request in 64*T1
        // seconds ..., the client SHOULD then consider the original transaction cancelled and
        // SHOULD destroy the client transaction handling the original request."
        let now = Instant::now();
        let inv = request("INVITE");
        let mut t = ClientTransaction::new(now, &inv, false, TimerConfig::default()).unwrap();
        t.poll_transmit().unwrap();
        t.handle_response(now + Duration::from_secs(1), &response(&inv, 180));
        // The CANCEL goes out 50 s later; no final response ever comes (an RFC 2543 UAS).
        let cancelled_at = now + Duration::from_secs(50);
        t.cancel_sent(cancelled_at);
        t.cancel_sent(cancelled_at + Duration::from_secs(1)); // once armed, not moved
        let ev = run_client(&mut t, now, Duration::from_secs(200));
        assert_eq!(
            timeouts(&ev),
            [(Duration::from_secs(50 + 32), Timer::B)],
            "{ev:?}"
        );
        assert_eq!(t.state(), State::Terminated);

        // The usual end: the 487 comes, so the guard never fires.
        let mut t = ClientTransaction::new(now, &inv, false, TimerConfig::default()).unwrap();
        t.poll_transmit().unwrap();
        t.handle_response(now + Duration::from_secs(1), &response(&inv, 180));
        t.cancel_sent(now + Duration::from_secs(2));
        t.handle_response(now + Duration::from_secs(3), &response(&inv, 487));
        assert_eq!(t.state(), State::Completed);
        let ev = run_client(&mut t, now, Duration::from_secs(200));
        assert_eq!(timeouts(&ev), [], "{ev:?}");
        // Nor does a CANCEL in another state arm anything: Calling keeps its own Timer B
        // (from the INVITE), a non-INVITE has none.
        let mut t = ClientTransaction::new(now, &inv, false, TimerConfig::default()).unwrap();
        t.cancel_sent(now + Duration::from_secs(10));
        let ev = run_client(&mut t, now, Duration::from_secs(200));
        assert_eq!(
            timeouts(&ev),
            [(Duration::from_secs(32), Timer::B)],
            "{ev:?}"
        );
        let opt = request("OPTIONS");
        let mut t = ClientTransaction::new(now, &opt, false, TimerConfig::default()).unwrap();
        t.handle_response(now + Duration::from_secs(1), &response(&opt, 100));
        t.cancel_sent(now + Duration::from_secs(2));
        let ev = run_client(&mut t, now, Duration::from_secs(200));
        assert_eq!(timeouts(&ev), [(Duration::from_secs(32), Timer::F)]);
    }

    #[test]
    fn reliable_transport_never_retransmits() {
        let now = Instant::now();
        let mut t =
            ClientTransaction::new(now, &request("OPTIONS"), true, TimerConfig::default()).unwrap();
        t.poll_transmit().unwrap();
        let ev = run_client(&mut t, now, Duration::from_secs(60));
        assert!(retransmit_times(&ev).is_empty());
        assert!(matches!(ev[1], (_, TxnEvent::Timeout(Timer::F))));
    }

    #[test]
    fn provisional_moves_e_to_t2_and_final_completes() {
        let now = Instant::now();
        let req = request("BYE");
        let mut t = ClientTransaction::new(now, &req, false, TimerConfig::default()).unwrap();
        t.handle_response(now + Duration::from_millis(100), &response(&req, 100));
        assert_eq!(t.state(), State::Proceeding);
        assert!(matches!(t.poll_event(), Some(TxnEvent::Response(_))));
        // E was armed for 500 ms; after it fires in Proceeding the interval is T2.
        t.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_millis(4500)));
        t.handle_response(now + Duration::from_secs(1), &response(&req, 200));
        assert_eq!(t.state(), State::Completed);
        // Timer K = T4 on unreliable transports; then Terminated.
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(6)));
        t.handle_timeout(now + Duration::from_secs(6));
        assert_eq!(t.state(), State::Terminated);
    }

    #[test]
    fn invite_non_2xx_is_acked_in_the_transaction_and_again_on_retransmission() {
        let now = Instant::now();
        let req = request("INVITE");
        let mut t = ClientTransaction::new(now, &req, false, TimerConfig::default()).unwrap();
        t.poll_transmit();
        let busy = response(&req, 486);
        t.handle_response(now, &busy);
        assert_eq!(t.state(), State::Completed);
        let ack = Message::parse(&t.poll_transmit().unwrap().bytes).unwrap();
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.cseq().unwrap().seq, 1);
        assert_eq!(
            ack.top_via().unwrap().branch(),
            req.top_via().unwrap().branch()
        );
        assert_eq!(ack.to().unwrap().tag().as_deref(), Some("8321234356"));
        assert_eq!(
            ack.headers.value(&HeaderName::Route),
            Some("<sip:p1.example;lr>")
        );
        // The ACK's Via is the request's top Via (one value) as sent, its CSeq `1 ACK`.
        assert_eq!(
            ack.headers.value(&HeaderName::Via),
            Some("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9")
        );
        assert_eq!(ack.headers.value(&HeaderName::CSeq), Some("1 ACK"));
        t.handle_response(now + Duration::from_secs(1), &busy);
        assert!(t.poll_transmit().unwrap().retransmission);
        // One Response event only: the retransmission is absorbed.
        let responses = std::iter::from_fn(|| t.poll_event())
            .filter(|e| matches!(e, TxnEvent::Response(_)))
            .count();
        assert_eq!(responses, 1);
        // Timer D = 32 s.
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(32)));
    }

    #[test]
    fn the_request_is_taken_out_once_the_final_response_is_in() {
        let now = Instant::now();
        let reg = request("REGISTER");
        let mut t = ClientTransaction::new(now, &reg, false, TimerConfig::default()).unwrap();
        assert!(t.take_request().is_none(), "Trying: still sent again");
        t.handle_response(now, &response(&reg, 100));
        assert!(t.take_request().is_none(), "Proceeding");
        t.handle_response(now, &response(&reg, 401));
        let taken = t.take_request().unwrap();
        assert_eq!(taken.to_bytes(), reg.to_bytes());
        assert!(t.take_request().is_none(), "taken once");
        assert!(t.request().headers.is_empty());
        // The transaction still answers as before: a retransmitted 401 is absorbed.
        drain_client(&mut t);
        t.handle_response(now, &response(&reg, 401));
        assert!(t.poll_transmit().is_none());
        assert_eq!(t.state(), State::Completed);
    }

    /// The ACK for a non-2xx carries the request's top Via only: the first value of a
    /// joined line (printed as the typed Via prints it), or a one-value line as sent.
    #[test]
    fn the_non_2xx_ack_carries_the_top_via_of_the_request() {
        let now = Instant::now();
        for (via, top) in [
            (
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport",
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport",
            ),
            (
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9, SIP/2.0/TCP p.example;branch=z9hG4bKp",
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9",
            ),
        ] {
            let raw = String::from_utf8(request("INVITE").to_bytes())
                .unwrap()
                .replace("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9", via);
            let req = Message::parse(raw.as_bytes()).unwrap();
            let mut t = ClientTransaction::new(now, &req, false, TimerConfig::default()).unwrap();
            t.poll_transmit();
            t.handle_response(now, &response(&req, 486));
            let ack = Message::parse(&t.poll_transmit().unwrap().bytes).unwrap();
            let vias: Vec<&str> = ack
                .headers
                .get_all(&HeaderName::Via)
                .map(sip_msg::HeaderRef::value)
                .collect();
            assert_eq!(vias, [top], "{via}");
        }
    }

    /// The ACK for a non-2xx copies the request's top Via, routes, From and Call-ID lines as
    /// the request printed them (§17.1.1.3: equal to the request's): for a request printed
    /// the usual way (ours), the bytes are those of `Name: value` lines; a line written
    /// otherwise (compact name, other spacing) is copied as written, with the same value.
    #[test]
    fn the_non_2xx_ack_copies_the_requests_lines_as_sent() {
        let now = Instant::now();
        let ack_of = |req: &Message| {
            let mut t = ClientTransaction::new(now, req, false, TimerConfig::default()).unwrap();
            t.poll_transmit();
            t.handle_response(now, &response(req, 407));
            String::from_utf8(t.poll_transmit().unwrap().bytes.to_vec()).unwrap()
        };
        assert_eq!(
            ack_of(&request("INVITE")),
            "ACK sip:bob@biloxi.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\n\
Route: <sip:p1.example;lr>\r\nFrom: <sip:alice@atlanta.example>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example\r\n\
To: <sip:bob@biloxi.example>;tag=8321234356\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        // Our own INVITE, built: the same lines.
        let built = sip_msg::RequestBuilder::new(
            Method::Invite,
            sip_msg::Uri::parse("sip:bob@biloxi.example").unwrap(),
        )
        .via_text("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9".into())
        .route_text("<sip:p1.example;lr>".into())
        .from_text("<sip:alice@atlanta.example>;tag=9fxced76sl".into())
        .to_text("<sip:bob@biloxi.example>".into())
        .call_id("3848276298220188511@atlanta.example")
        .cseq(1)
        .build();
        let ack = ack_of(&built);
        for line in [
            "\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n",
            "\r\nRoute: <sip:p1.example;lr>\r\n",
            "\r\nFrom: <sip:alice@atlanta.example>;tag=9fxced76sl\r\n",
            "\r\nCall-ID: 3848276298220188511@atlanta.example\r\n",
        ] {
            assert!(ack.contains(line), "{line:?} in {ack}");
        }
        // Compact names and extra spaces: copied as written; the values are the same.
        let raw = String::from_utf8(request("INVITE").to_bytes())
            .unwrap()
            .replace("From: <", "f:   <")
            .replace("Call-ID: ", "i: ");
        let ack = ack_of(&Message::parse(raw.as_bytes()).unwrap());
        assert!(
            ack.contains("\r\nf:   <sip:alice@atlanta.example>;tag=9fxced76sl\r\n"),
            "{ack}"
        );
        assert!(
            ack.contains("\r\ni: 3848276298220188511@atlanta.example\r\n"),
            "{ack}"
        );
        let ack = Message::parse(ack.as_bytes()).unwrap();
        assert_eq!(
            ack.headers.value(&HeaderName::From),
            Some("<sip:alice@atlanta.example>;tag=9fxced76sl")
        );
        assert_eq!(
            ack.headers.value(&HeaderName::CallId),
            Some("3848276298220188511@atlanta.example")
        );
    }

    /// A key's text (inline or not) holds, compares and hashes as the two `String`s it
    /// replaces: a server key's sent-by is the one printed into a `String` (host, `:`, port,
    /// lower-cased) as before, a client key's branch is `branch_from`'s, and a branch and a
    /// sent-by of any length (multi-byte characters across the inline limit) read back as
    /// written.
    #[test]
    fn key_texts_read_as_the_strings_they_replace() {
        use std::hash::{BuildHasher, RandomState};
        let hashes = RandomState::new();
        let long = format!("{}.Example", "h".repeat(40));
        let hosts = [
            "192.0.2.1".to_owned(),
            "0.0.0.0".to_owned(),
            "255.255.255.255".to_owned(),
            "PC33.Atlanta.example".to_owned(),
            "[2001:DB8::1]".to_owned(),
            "[::ffff:192.0.2.1]".to_owned(),
            long,
        ];
        for host in &hosts {
            for port in [None, Some(0), Some(9), Some(10), Some(5060), Some(65535)] {
                let sent_by = match port {
                    Some(p) => format!("{host}:{p}"),
                    None => host.clone(),
                };
                let raw = String::from_utf8(request("INVITE").to_bytes())
                    .unwrap()
                    .replace("192.0.2.1:5060;", &format!("{sent_by};"));
                let m = Message::parse(raw.as_bytes()).unwrap();
                let read = ServerKeyRef::read(&m).unwrap();
                let mut printed = String::new();
                read.write_sent_by(&mut printed);
                printed.make_ascii_lowercase();
                let key = read.to_key();
                assert_eq!(key.sent_by(), printed, "{sent_by}");
                assert_eq!(key.branch(), "z9hG4bK74bf9");
                assert_eq!(key, TxnKey::new("z9hG4bK74bf9", &printed, Method::Invite));
                assert!(read.matches(&key));
            }
        }
        for r in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            let key = TxnKey::client(r, Method::Register);
            assert_eq!(key.branch(), sip_msg::branch_from(r));
            assert_eq!(
                key,
                TxnKey::new(&sip_msg::branch_from(r), "", Method::Register)
            );
            assert!(key.is(&sip_msg::branch_from(r), &Method::Register));
        }
        // The two `String`s the key held: the same equality and hashes.
        #[derive(Hash, PartialEq)]
        struct Before {
            branch: String,
            sent_by: String,
            method: Method,
        }
        let mut texts = Vec::new();
        for len in [0, 1, 20, 22, 23, 24, 25, 44, 45, 46, 47, 90] {
            for tail in ["", "é", "€", "𝄞"] {
                texts.push(format!("{}{tail}", "a".repeat(len)));
            }
        }
        let keys: Vec<(TxnKey, Before)> = texts
            .iter()
            .flat_map(|b| texts.iter().map(move |s| (b, s)))
            .filter(|(b, s)| b.len() + s.len() < 60 || b.len() == 90 || s.len() == 90)
            .map(|(b, s)| {
                let key = TxnKey::new(b, s, Method::Invite);
                assert_eq!((key.branch(), key.sent_by()), (b.as_str(), s.as_str()));
                assert_eq!(
                    (key.branch_bytes(), key.sent_by_bytes()),
                    (b.as_bytes(), s.as_bytes())
                );
                let before = Before {
                    branch: b.clone(),
                    sent_by: s.clone(),
                    method: Method::Invite,
                };
                assert_eq!(hashes.hash_one(&key), hashes.hash_one(&before));
                (key, before)
            })
            .collect();
        // Equal exactly when the `String`s were (a branch's end moved is another key).
        for (i, (a, before_a)) in keys.iter().enumerate().step_by(7) {
            for (b, before_b) in &keys {
                assert_eq!(a == b, before_a == before_b, "{a:?} {b:?}");
            }
            assert_eq!(
                format!("{a:?}"),
                format!(
                    "TxnKey {{ branch: {:?}, sent_by: {:?}, method: Invite }}",
                    before_a.branch, before_a.sent_by
                ),
                "{i}"
            );
        }
    }

    /// A received request's key read in place is the owned key (`to_key` is what
    /// `of_server_request` gives), and it matches exactly the keys equal to it: the same
    /// branch, sent-by (any case; host name, IPv4, IPv6, long name; with or without port)
    /// and method (ACK as INVITE).
    #[test]
    fn a_server_key_read_in_place_matches_the_owned_key_and_no_other() {
        let long = format!("{}.example", "h".repeat(70));
        let vias = [
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9".to_owned(),
            "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK74bf9".to_owned(),
            "SIP/2.0/UDP PC33.Atlanta.example:5070;branch=z9hG4bK74bf9".to_owned(),
            "SIP/2.0/TCP [2001:DB8::1]:5061;branch=z9hG4bK74bf9".to_owned(),
            "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK74bf9;rport".to_owned(),
            format!("SIP/2.0/UDP {long}:5060;branch=z9hG4bK74bf9"),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKother".to_owned(),
            "SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bK74bf9".to_owned(),
            "SIP/2.0/UDP 192.0.2.1:506;branch=z9hG4bK74bf9".to_owned(),
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9".to_owned(),
        ];
        let request_with = |method: &str, via: &str| {
            let raw = String::from_utf8(request(method).to_bytes())
                .unwrap()
                .replace("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9", via);
            Message::parse(raw.as_bytes()).unwrap()
        };
        let mut keys = Vec::new();
        for via in &vias {
            for method in ["INVITE", "ACK", "BYE"] {
                let m = request_with(method, via);
                let read = ServerKeyRef::read(&m).unwrap();
                let owned = TxnKey::of_server_request(&m).unwrap();
                assert_eq!(read.to_key(), owned, "{method} {via}");
                keys.push((format!("{method} {via}"), owned));
            }
        }
        for via in &vias {
            for method in ["INVITE", "ACK", "BYE"] {
                let m = request_with(method, via);
                let read = ServerKeyRef::read(&m).unwrap();
                let owned = read.to_key();
                for (what, key) in &keys {
                    assert_eq!(
                        read.matches(key),
                        owned == *key,
                        "{method} {via} against {what}"
                    );
                }
                // The sent-by in another case is the same sent-by.
                let (proto, rest) = via.split_at(12);
                let (sent_by, params) = rest.split_at(rest.find(';').unwrap());
                let upper = request_with(
                    method,
                    &format!("{proto}{}{params}", sent_by.to_uppercase()),
                );
                assert!(
                    ServerKeyRef::read(&upper).unwrap().matches(&owned),
                    "{method} {via}"
                );
            }
        }
        // ACK and INVITE share their key; BYE does not.
        let invite = request_with("INVITE", &vias[0]);
        let ack = request_with("ACK", &vias[0]);
        let bye = request_with("BYE", &vias[0]);
        let key = TxnKey::of_server_request(&invite).unwrap();
        assert!(ServerKeyRef::read(&ack).unwrap().matches(&key));
        assert!(!ServerKeyRef::read(&bye).unwrap().matches(&key));
    }

    #[test]
    fn invite_2xx_goes_to_accepted_and_passes_retransmissions() {
        let now = Instant::now();
        let req = request("INVITE");
        let mut t = ClientTransaction::new(now, &req, false, TimerConfig::default()).unwrap();
        let ok = response(&req, 200);
        t.handle_response(now, &ok);
        t.handle_response(now + Duration::from_millis(500), &ok);
        assert_eq!(t.state(), State::Accepted);
        let n = std::iter::from_fn(|| t.poll_event())
            .filter(|e| matches!(e, TxnEvent::Response(_)))
            .count();
        assert_eq!(n, 2, "the TU sees each 2xx to ACK it again");
        assert_eq!(
            t.poll_timeout(),
            Some(now + Duration::from_secs(32)),
            "Timer M = 64*T1"
        );
    }

    #[test]
    fn server_invite_retransmits_final_until_ack_then_confirmed() {
        let now = Instant::now();
        let req = request("INVITE");
        let mut s = ServerTransaction::new(&req, false, TimerConfig::default()).unwrap();
        assert_eq!(s.key(), &TxnKey::of_server_request(&req).unwrap());
        s.send_response(now, &response(&req, 100)).unwrap();
        s.poll_transmit().unwrap();
        // A retransmitted INVITE gets the last provisional again.
        s.handle_request(now, &req);
        assert!(s.poll_transmit().unwrap().retransmission);
        s.send_response(now, &response(&req, 486)).unwrap();
        s.poll_transmit().unwrap();
        let mut times = Vec::new();
        for _ in 0..5 {
            let at = s.poll_timeout().unwrap();
            s.handle_timeout(at);
            if s.poll_transmit().is_some() {
                times.push((at - now).as_millis());
            }
        }
        // §17.2.1: G = 500, 1000, 2000, 4000, 4000 ms.
        assert_eq!(times, [500, 1500, 3500, 7500, 11500]);
        let mut ack = request("ACK");
        ack.headers.set(Header::new(HeaderName::CSeq, "1 ACK"));
        assert_eq!(TxnKey::of_server_request(&ack).unwrap(), *s.key());
        s.handle_request(now + Duration::from_secs(12), &ack);
        assert_eq!(s.state(), State::Confirmed);
        assert_eq!(
            s.poll_timeout(),
            Some(now + Duration::from_secs(17)),
            "Timer I = T4"
        );
    }

    #[test]
    fn finished_server_invites_absorb_retransmissions_without_their_final_response() {
        let now = Instant::now();
        let req = request("INVITE");
        // Accepted (RFC 6026 §8.7): the 2xx went out once; a retransmitted INVITE is
        // absorbed (the UA core retransmits the 2xx), so the 2xx is not held.
        let mut s = ServerTransaction::new(&req, false, TimerConfig::default()).unwrap();
        s.send_response(now, &response(&req, 200)).unwrap();
        assert!(!s.poll_transmit().unwrap().retransmission);
        assert_eq!(s.state(), State::Accepted);
        assert!(s.last_response.is_none());
        s.handle_request(now, &req);
        assert!(s.poll_transmit().is_none());
        // Confirmed: only ACKs are absorbed, the non-2xx final is sent no more.
        let mut s = ServerTransaction::new(&req, false, TimerConfig::default()).unwrap();
        s.send_response(now, &response(&req, 486)).unwrap();
        s.poll_transmit().unwrap();
        let mut ack = request("ACK");
        ack.headers.set(Header::new(HeaderName::CSeq, "1 ACK"));
        s.handle_request(now, &ack);
        assert_eq!(s.state(), State::Confirmed);
        assert!(s.last_response.is_none());
        s.handle_request(now, &req);
        s.handle_timeout(now + Duration::from_secs(1));
        assert!(s.poll_transmit().is_none(), "no Timer G in Confirmed");
    }

    #[test]
    fn server_invite_without_ack_times_out_with_h() {
        let now = Instant::now();
        let req = request("INVITE");
        let mut s = ServerTransaction::new(&req, true, TimerConfig::default()).unwrap();
        s.send_response(now, &response(&req, 603)).unwrap();
        s.handle_timeout(now + Duration::from_secs(32));
        let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(ev.iter().any(|e| matches!(e, TxnEvent::Timeout(Timer::H))));
        assert_eq!(s.state(), State::Terminated);
    }

    #[test]
    fn server_non_invite_absorbs_and_answers_retransmissions() {
        let now = Instant::now();
        let req = request("OPTIONS");
        let mut s = ServerTransaction::new(&req, false, TimerConfig::default()).unwrap();
        s.handle_request(now, &req);
        assert!(s.poll_transmit().is_none(), "nothing to resend in Trying");
        s.send_response(now, &response(&req, 200)).unwrap();
        s.poll_transmit().unwrap();
        s.handle_request(now, &req);
        assert!(s.poll_transmit().unwrap().retransmission);
        assert_eq!(
            s.send_response(now, &response(&req, 500)),
            Err(TxnError::BadState(State::Completed))
        );
        assert_eq!(
            s.poll_timeout(),
            Some(now + Duration::from_secs(32)),
            "Timer J = 64*T1"
        );
    }

    #[test]
    fn ack_and_missing_headers_are_api_misuse() {
        let now = Instant::now();
        let mut ack = request("ACK");
        ack.headers.set(Header::new(HeaderName::CSeq, "1 ACK"));
        assert_eq!(
            ClientTransaction::new(now, &ack, false, TimerConfig::default()).err(),
            Some(TxnError::AckTransaction)
        );
        let mut bad = request("OPTIONS");
        bad.headers.remove(&HeaderName::Via);
        assert_eq!(
            ClientTransaction::new(now, &bad, false, TimerConfig::default()).err(),
            Some(TxnError::MissingTxnHeaders)
        );
    }
}
