//! Attended transfer, the receiving side of an INVITE with `Replaces` (RFC 3891 §3).
//!
//! A new INVITE naming one of our calls in its `Replaces` header (Call-ID, `to-tag` our tag,
//! `from-tag` the peer's) is matched against our calls before anything else is done with it:
//!
//! | the call named                                | the INVITE gets                        |
//! |-----------------------------------------------|----------------------------------------|
//! | none                                          | 481                                    |
//! | one of our last 8 calls that have ended       | 603                                    |
//! | confirmed, `early-only` in the Replaces       | 486                                    |
//! | confirmed                                     | accepted: `Incoming { replaces }`      |
//! | early, placed by us                           | accepted: `Incoming { replaces }`      |
//! | early, placed by the peer                     | 481, that call left alone              |
//! | ending (our BYE or CANCEL in flight), or named by another INVITE not answered yet | 603 |
//! | two Replaces headers, or one we cannot read   | 400                                    |
//!
//! An accepted one is an incoming call like any other ([`super::CallEvent::Incoming`] with
//! `replaces`), to be answered at once. When it is answered (our 2xx sent), the call it
//! replaces is ended: BYE with `Reason: SIP;cause=200;text="Replaced"` (RFC 3326) for a
//! confirmed one, CANCEL for our early INVITE. Refused with a failure, or ended before it
//! was answered, it leaves that call alone.

use std::time::Instant;

use sip_msg::typed::Replaces;
use sip_msg::{Header, HeaderName, Message, TypedHeader, Uri};

use super::{CallId, CallState, Slot, Tie, UserAgent};

/// The `Reason` of our BYE ending a call another one replaced (RFC 3326 §2: the protocol
/// and cause of the event; 200, as the call ended well; RFC 3891 does not name one).
pub(super) const REPLACED_REASON: &str = "SIP;cause=200;text=\"Replaced\"";

/// The call of ours the INVITE `invite`'s Replaces names (RFC 3891 §3): `Ok(None)` when it
/// has none, `Ok(Some(call))` when it may replace that call, `Err((code, reason))` how it is
/// refused.
pub type ReplacesMatch = Result<Option<CallId>, (u16, &'static str)>;

/// How many ended dialogs an agent remembers for [`EndedDialogs`].
const ENDED_KEPT: usize = 8;

/// The dialogs of an agent's last [`ENDED_KEPT`] calls that ended, as hashes of their
/// Call-ID and tags (72 bytes, not three strings each): an INVITE whose Replaces names one
/// is declined with 603 (RFC 3891 §3), one naming a dialog we never had gets 481. A hash
/// collision (2⁻⁶⁴) would answer 603 where 481 was due: both refuse.
#[derive(Debug, Default)]
pub(super) struct EndedDialogs {
    keys: [u64; ENDED_KEPT],
    /// How many dialogs ended so far; the next is written at `ended % ENDED_KEPT`.
    ended: usize,
}

impl EndedDialogs {
    fn key(call_id: &str, local_tag: &str, remote_tag: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (call_id, local_tag, remote_tag).hash(&mut h);
        h.finish()
    }

    /// Remembers the dialog `id` as ended, forgetting the oldest beyond [`ENDED_KEPT`].
    pub(super) fn push(&mut self, id: &crate::dialog::DialogId) {
        self.keys[self.ended % ENDED_KEPT] = Self::key(&id.call_id, &id.local_tag, &id.remote_tag);
        self.ended = self.ended.wrapping_add(1);
    }

    fn contains(&self, call_id: &str, local_tag: &str, remote_tag: &str) -> bool {
        let key = Self::key(call_id, local_tag, remote_tag);
        self.keys[..self.ended.min(ENDED_KEPT)].contains(&key)
    }
}

impl UserAgent {
    /// Which call of ours the INVITE `invite` would replace (RFC 3891 §3), without doing
    /// anything: the agent routes a new call that replaces one as the endpoint's call. See
    /// [`ReplacesMatch`].
    pub fn replaced_by(&self, invite: &Message) -> ReplacesMatch {
        let mut all = invite.headers.get_all(&HeaderName::Replaces);
        let Some(one) = all.next() else {
            return Ok(None);
        };
        // RFC 3891 §3: "If more than one Replaces header field is present in an INVITE ...
        // the UAS MUST reject the request with a 400 Bad Request response."
        if all.next().is_some() {
            return Err((400, "Bad Request (more than one Replaces, RFC 3891 §3)"));
        }
        let Ok(r) = Replaces::parse(one.value()) else {
            return Err((400, "Bad Request (unreadable Replaces, RFC 3891 §6.1)"));
        };
        // §3: "the to-tag parameter is compared to the local tag, and the from-tag parameter
        // is compared to the remote tag" (as if they were tags of an incoming request).
        let named = |d: &crate::dialog::Dialog| {
            d.id.call_id == r.call_id && d.id.local_tag == r.to_tag && d.id.remote_tag == r.from_tag
        };
        let found = self.calls.iter().enumerate().find_map(|(i, slot)| {
            let c = slot.as_ref()?;
            (c.dialog.as_ref().is_some_and(named)
                || c.forks.iter().any(|f| !f.ended && named(&f.dialog)))
            .then(|| (Self::id_at(self.first_call, i), c))
        });
        let Some((id, call)) = found else {
            // §3: "If the Replaces header field matches a dialog which has already
            // terminated, the UA SHOULD decline the request with a 603 Declined response."
            if self
                .ended_dialogs
                .as_ref()
                .is_some_and(|e| e.contains(&r.call_id, &r.to_tag, &r.from_tag))
            {
                return Err((603, "Decline (the call Replaces names has ended)"));
            }
            // §3: "If no match is found, the UAS rejects the INVITE and returns a 481".
            return Err((
                481,
                "Call/Transaction Does Not Exist (Replaces names no call)",
            ));
        };
        let being_replaced = self.calls.iter().filter_map(Slot::as_ref).any(|c| {
            c.state < CallState::Terminating
                && c.rare.as_ref().is_some_and(
                    |r| matches!(r.tie.as_deref(), Some(Tie::Replacing(o)) if *o == id),
                )
        });
        match call.state {
            // §3: a dialog "which has already terminated ... SHOULD decline the request with
            // a 603"; one being ended, or replaced by an INVITE not answered yet, as well.
            CallState::Terminating | CallState::Terminated => {
                Err((603, "Decline (the call Replaces names is ending)"))
            }
            _ if being_replaced => {
                Err((603, "Decline (the call Replaces names is being replaced)"))
            }
            // §3: "If the Replaces header field matches a confirmed dialog, it checks for the
            // presence of the "early-only" flag ... If the flag is present, the UA rejects
            // the request with a 486 Busy response."
            CallState::Confirmed | CallState::Answering if r.early_only => {
                Err((486, "Busy Here (early-only, and the call is confirmed)"))
            }
            CallState::Confirmed | CallState::Answering => Ok(Some(id)),
            // §3: an early dialog "initiated by the UA" is replaced (and CANCELled); one
            // "not initiated by this UA" gets 481 and is left alone.
            CallState::Calling | CallState::Early if call.uac => Ok(Some(id)),
            CallState::Calling | CallState::Early => Err((
                481,
                "Call/Transaction Does Not Exist (Replaces names an early call we did not place)",
            )),
        }
    }

    /// The incoming call `id` was answered (our 2xx sent): the call its INVITE replaces, if
    /// any, is ended (RFC 3891 §3): BYE with a Reason when confirmed, CANCEL of our early
    /// INVITE, as [`UserAgent::hangup`] does otherwise.
    pub(super) fn end_replaced(&mut self, now: Instant, id: CallId) {
        let Some(old) = self
            .call_ref(id)
            .and_then(|c| match c.rare.as_ref()?.tie.as_deref()? {
                Tie::Replacing(old) => Some(*old),
                Tie::Referred(_) => None,
            })
        else {
            return;
        };
        match self.call_state(old) {
            Some(CallState::Confirmed) => {
                let reason = Header::from_static(HeaderName::Reason, REPLACED_REASON);
                self.send_bye_with(now, old, Some(reason));
            }
            Some(s) if s < CallState::Terminating => self.hangup(now, old),
            _ => {}
        }
    }

    /// `target` with a `Replaces` URI header naming call `id`'s dialog as its peer sees it
    /// (RFC 3891 §7, the transferor of an attended transfer: `Refer-To:
    /// <target?Replaces=...>`): the Call-ID, `to-tag` the peer's tag (its local one),
    /// `from-tag` ours, escaped (RFC 3261 §19.1.1). `None` for a call without a confirmed or
    /// early dialog, or a target that is not a SIP URI.
    pub fn replaces_uri(&self, id: CallId, target: &Uri) -> Option<Uri> {
        let d = self.call_ref(id)?.dialog.as_ref()?;
        let mut uri = target.as_sip()?.clone();
        let value = format!(
            "{};to-tag={};from-tag={}",
            d.id.call_id, d.id.remote_tag, d.id.local_tag
        );
        uri.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("Replaces"));
        uri.headers
            .push(("Replaces".to_owned(), sip_msg::escape_hvalue(&value)));
        Some(Uri::Sip(uri))
    }

    /// Ties the new call `id` to the call `old` its INVITE replaces.
    pub(super) fn tie_replacing(&mut self, id: CallId, old: CallId) {
        if let Some(c) = self.call_mut(id) {
            c.rare.get_or_insert_with(Box::default).tie = Some(Box::new(Tie::Replacing(old)));
        }
    }
}
