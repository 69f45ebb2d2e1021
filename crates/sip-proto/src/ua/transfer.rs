//! Call transfer (RFC 3515 REFER, a blind transfer as RFC 5589 §6 draws it), both sides.
//!
//! The transferor's side: our REFER in a call and the NOTIFYs of its implicit subscription.
//!
//! [`UserAgent::refer`] sends REFER with `Refer-To` (the target), `Referred-By` (our AOR,
//! RFC 3892) and our Contact. Its final response is [`CallEvent::ReferAnswered`]; each NOTIFY
//! (`Event: refer`, a `message/sipfrag` body beginning with the status line of the
//! transferee's call to the target, RFC 3515 §2.4.5) is answered 200 and reported as
//! [`CallEvent::TransferProgress`]. A final 2xx status: the transfer succeeded and we end the
//! call with BYE (RFC 5589 §6: the transferor hangs up). A final non-2xx status: the transfer
//! failed and the call goes on (the transferee is still talking to us, as with a phone whose
//! blind transfer failed). No final status within [`TRANSFER_WAIT`] of the REFER's 2xx or
//! the last NOTIFY (or the subscription's `expires`, when longer), the subscription ended
//! without one, or a NOTIFY we cannot read: [`CallEvent::TransferUnknown`].
//!
//! The transferee's side: a REFER in a confirmed call is answered 202 and a NOTIFY
//! `SIP/2.0 100 Trying` follows; we call the Refer-To target (an INVITE with the REFER's
//! Referred-By, offering the call's description) and report it as
//! [`CallEvent::Referred`]; each provisional of that call (180, 183) and its final status
//! are NOTIFYed in the first call's dialog (the final one terminates the subscription). The
//! first call goes on until the transferor's BYE. An attended transfer's Refer-To carries
//! `?Replaces=…` (RFC 3891 §6.1): our INVITE carries that Replaces, unescaped (RFC 3515
//! §2.1), and is otherwise the same. Other URI headers, or a method other than INVITE, are
//! refused with 403; an unreadable Replaces, or a REFER without exactly one Refer-To, with
//! 400 (§2.4.1).
//!
//! Everything lives in the calls' `Rare` boxes ([`Transfer`], [`Referrer`]): a call without
//! a transfer pays nothing for it.

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use bytes::Bytes;
use sip_msg::typed::Replaces;
use sip_msg::{Header, HeaderName, Message, Method, RequestBuilder, TypedHeader, Uri, unescape};

use super::{
    CallEvent, CallId, CallState, Destination, Owner, Slot, Tie, UserAgent, reason_phrase,
    tidy_rare,
};
use crate::transaction::TxnKey;

/// How long we wait for the final NOTIFY after the REFER's 2xx or the last NOTIFY (unless the
/// subscription's `expires` says longer): 32 s, Timer F's 64×T1 with the default T1 — long
/// enough for a PBX to start the new call and report it, short enough that a lost final
/// NOTIFY is reported while the call is still up.
pub const TRANSFER_WAIT: Duration = Duration::from_secs(32);

/// Our REFER of a call and its implicit subscription (RFC 3515 §2.4.4), kept in the call's
/// `Rare` box from the REFER until the outcome is known and the subscription ended.
#[derive(Debug)]
pub(super) struct Transfer {
    /// The CSeq number of our REFER: the NOTIFYs' `Event: refer;id=` names it (§2.4.6).
    seq: u32,
    /// The outcome (a final status in a NOTIFY) was reported; later NOTIFYs of the
    /// subscription are answered 200 until it ends.
    decided: bool,
    /// When we stop waiting for the final status; `None` until the REFER's 2xx (or a NOTIFY)
    /// and once decided.
    at: Option<Instant>,
}

/// The transfer of `call`, if one is going on.
fn transfer_of(call: &mut super::Call) -> Option<&mut Transfer> {
    call.rare.as_mut()?.transfer.as_deref_mut()
}

/// When the call's transfer gives up waiting for its final NOTIFY, if it waits.
pub(super) fn transfer_at(call: &super::Call) -> Option<Instant> {
    call.rare.as_ref()?.transfer.as_ref()?.at
}

/// Ends the call's transfer (its box goes when nothing else is in it).
fn end_transfer(call: &mut super::Call) {
    if let Some(r) = call.rare.as_mut() {
        r.transfer = None;
    }
    tidy_rare(call);
}

/// The status code of a `message/sipfrag` body (RFC 3420) as RFC 3515 §2.4.5 requires it:
/// "The body of a NOTIFY MUST begin with a SIP Response Status-Line" (`SIP/2.0 180 Ringing`).
/// `None` when it does not (a request line, a bare code, no body).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let rest = body.get(..8)?;
    if !rest.eq_ignore_ascii_case(b"SIP/2.0 ") {
        return None;
    }
    let code = body.get(8..11)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // RFC 3261 §25.1: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF; a
    // fragment that stops after the code is read all the same.
    if !matches!(body.get(11), None | Some(b' ' | b'\r' | b'\n')) {
        return None;
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=699).contains(&code).then_some(code)
}

/// The state and `expires` of a `Subscription-State` value (RFC 6665 §8.2.3):
/// `terminated;reason=noresource`, `active;expires=60`.
fn subscription_state(value: &str) -> (&str, Option<u32>) {
    let mut parts = value.split(';');
    let state = parts.next().unwrap_or_default().trim();
    let expires = parts.find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("expires")
            .then(|| v.trim().parse().ok())?
    });
    (state, expires)
}

/// The event package of an `Event` value and its `id` parameter (RFC 6665 §8.2.1):
/// `refer;id=93809824`.
fn event_package(value: &str) -> (&str, Option<&str>) {
    let mut parts = value.split(';');
    let package = parts.next().unwrap_or_default().trim();
    let id = parts.find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("id").then(|| v.trim())
    });
    (package, id)
}

impl UserAgent {
    /// Sends REFER in the confirmed call `id`, asking the peer to call `target` (RFC 3515;
    /// a blind transfer, RFC 5589 §6), with `Referred-By` our AOR (RFC 3892) and our Contact.
    /// Its final response comes as [`CallEvent::ReferAnswered`], the progress of the
    /// transfer as [`CallEvent::TransferProgress`]. False (nothing sent) when the call is not
    /// confirmed or a transfer of it is still going on (one at a time: each REFER makes a
    /// subscription of its own, §2.4.6, and one transfer of a call is what a phone does).
    pub fn refer(&mut self, now: Instant, id: CallId, target: &Uri) -> bool {
        if self.call_state(id) != Some(CallState::Confirmed)
            || self
                .call_ref(id)
                .is_some_and(|c| c.rare.as_ref().is_some_and(|r| r.transfer.is_some()))
        {
            return false;
        }
        let mut referred_by = String::with_capacity(40);
        self.write_aor(&mut referred_by);
        let sent = self.send_subscription_request(now, id, Method::Refer, Owner::Refer(id), |b| {
            // RFC 3515 §2.4.1: "A REFER request MUST contain exactly one Refer-To header".
            b.header(HeaderName::ReferTo, format!("<{target}>"))
                .header(HeaderName::ReferredBy, referred_by)
        });
        let Some(seq) = sent else {
            return false;
        };
        if let Some(c) = self.call_mut(id) {
            c.rare.get_or_insert_with(Box::default).transfer = Some(Box::new(Transfer {
                seq,
                decided: false,
                at: None,
            }));
        }
        true
    }

    /// Our REFER of call `id` was sent again (with credentials) with CSeq number `seq`: the
    /// NOTIFYs of its subscription name that one (RFC 3515 §2.4.6, `id`).
    pub(super) fn refer_sent_again(&mut self, id: CallId, seq: u32) {
        if let Some(t) = self.call_mut(id).and_then(transfer_of) {
            t.seq = seq;
        }
    }

    /// Sends a REFER or NOTIFY (`method`, for `owner`) in call `id`'s dialog: the dialog's
    /// lines, User-Agent, the lines `lines` adds, our Contact (RFC 3515 §2.4.1 for REFER; a
    /// NOTIFY is target-refreshing, RFC 6665 §4.1.3). Its CSeq number, or `None` when the
    /// call has no dialog (nothing sent).
    fn send_subscription_request(
        &mut self,
        now: Instant,
        id: CallId,
        method: Method,
        owner: Owner,
        lines: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Option<u32> {
        // A call placed through the outbound proxy's own connection: its address.
        let proxied = self.proxied(id);
        let (via, branch) = self.new_via_branch_at(proxied);
        let contact = self.contact_at(proxied);
        let ua = self.profile.user_agent.clone();
        let dialog = self.call_mut(id)?.dialog.as_mut()?;
        let b = dialog
            .request_via_text(method, via, None)
            .header_line(Header::from_shared(HeaderName::UserAgent, ua));
        let req = lines(b).contact(contact).build();
        let seq = req.cseq().map_or(0, |c| c.seq);
        let dest = Destination::Uri(dialog.next_hop_shared());
        self.start_client_branch(now, req, branch, owner, dest);
        Some(seq)
    }

    /// The final response to our REFER (`code` 408 also when none came): 2xx, the transfer
    /// is accepted and we wait for its final status; otherwise it is refused and the call
    /// goes on (RFC 3515 §2.4.2: no subscription was made).
    pub(super) fn on_refer_response(&mut self, now: Instant, id: CallId, code: u16) {
        if code < 200 {
            return;
        }
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if (200..300).contains(&code) {
            if let Some(t) = transfer_of(call)
                && !t.decided
                && t.at.is_none()
            {
                t.at = Some(now + TRANSFER_WAIT);
                self.set_flag(super::CALL_TIMERS, true);
            }
        } else {
            end_transfer(call);
        }
        self.call_event(id, CallEvent::ReferAnswered { code });
    }

    /// A NOTIFY in the dialog of call `id` (RFC 3515 §2.4.4, RFC 6665 §4.1.3): one of our
    /// REFER's subscription is answered 200 and its sipfrag's status reported; one we cannot
    /// read is refused (400, 489) and the transfer's outcome is unknown; one of no
    /// subscription of ours gets 481.
    pub(super) fn on_notify(
        &mut self,
        now: Instant,
        req: &Message,
        id: CallId,
        key: TxnKey,
        source: SocketAddr,
    ) {
        let event = req.headers.value(&HeaderName::Event).map(event_package);
        let Some(seq) = self.call_mut(id).and_then(transfer_of).map(|t| t.seq) else {
            // RFC 6665 §4.1.3: a NOTIFY that matches no subscription gets 481.
            self.respond_stateless(now, req, key, source, 481, "Subscription Does Not Exist");
            return;
        };
        // RFC 6665 §4.1.3: an event package we did not subscribe to gets 489; RFC 3515
        // §2.4.6: a NOTIFY naming another REFER's `id` is not of this subscription.
        match event {
            Some((p, id_param)) if p.eq_ignore_ascii_case("refer") => {
                if id_param.is_some_and(|i| i.parse() != Ok(seq)) {
                    let reason = "Subscription Does Not Exist";
                    self.respond_stateless(now, req, key, source, 481, reason);
                    return;
                }
            }
            _ => {
                self.respond_stateless(now, req, key, source, 489, "Bad Event");
                self.refused_notify(id, "a NOTIFY without `Event: refer` (RFC 3515 §2.4.4)");
                return;
            }
        }
        let state = req
            .headers
            .value(&HeaderName::SubscriptionState)
            .map(subscription_state);
        let status = sipfrag_status(req.body());
        let (Some((state, expires)), Some(code)) = (state, status) else {
            // RFC 6665 §8.2.3: a NOTIFY MUST carry Subscription-State; RFC 3515 §2.4.5: its
            // body MUST begin with a status line. 400 (RFC 3261 §21.4.1), after which the
            // notifier ends the subscription (RFC 6665 §4.2.2): the outcome stays unknown.
            let (reason, why) = if state.is_none() {
                (
                    "Bad Request (no Subscription-State)",
                    "a NOTIFY of the transfer without Subscription-State (RFC 6665 §8.2.3): \
                     refused with 400",
                )
            } else {
                (
                    "Bad Request (no sipfrag status line)",
                    "a NOTIFY of the transfer whose body is no sipfrag status line (RFC 3515 \
                     §2.4.5): refused with 400",
                )
            };
            self.respond_stateless(now, req, key, source, 400, reason);
            self.refused_notify(id, why);
            return;
        };
        self.respond_stateless(now, req, key, source, 200, "OK");
        let terminated = state.eq_ignore_ascii_case("terminated");
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let Some(t) = transfer_of(call) else {
            return;
        };
        let was_decided = t.decided;
        let last = !t.decided && code >= 200;
        if last {
            t.decided = true;
            t.at = None;
        } else if !t.decided {
            // The subscription lives on: wait again, for as long as it says it lasts.
            let lasts = Duration::from_secs(u64::from(expires.unwrap_or(0)));
            t.at = Some(now + TRANSFER_WAIT.max(lasts));
            self.set_flag(super::CALL_TIMERS, true);
        }
        if terminated && let Some(call) = self.call_mut(id) {
            end_transfer(call);
        }
        if !was_decided {
            self.call_event(id, CallEvent::TransferProgress { code, last });
        }
        if terminated && !was_decided && !last {
            self.call_event(
                id,
                CallEvent::TransferUnknown {
                    why: "the transfer's subscription was terminated without a final status \
                          (RFC 3515 §2.4.7)",
                },
            );
        }
        // RFC 5589 §6: the transfer succeeded, the transferor ends its call.
        if last && (200..300).contains(&code) {
            self.hangup(now, id);
        }
    }

    /// A NOTIFY of our transfer we refused: the transfer's outcome is unknown (the notifier
    /// ends the subscription on a failure response, RFC 6665 §4.2.2), the call goes on.
    fn refused_notify(&mut self, id: CallId, why: &'static str) {
        let decided = self
            .call_mut(id)
            .and_then(transfer_of)
            .is_some_and(|t| t.decided);
        if let Some(call) = self.call_mut(id) {
            end_transfer(call);
        }
        if !decided {
            self.call_event(id, CallEvent::TransferUnknown { why });
        }
    }

    /// The transfers whose final status did not come in time: reported, the call goes on.
    pub(super) fn fire_transfer_timers(&mut self, now: Instant) {
        let first = self.first_call;
        let due: Vec<CallId> = self
            .calls
            .iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| {
                let call = match slot {
                    Slot::Live(c) => c,
                    _ => return None,
                };
                transfer_at(call).is_some_and(|at| at <= now).then(|| {
                    end_transfer(call);
                    Self::id_at(first, i)
                })
            })
            .collect();
        for id in due {
            self.call_event(
                id,
                CallEvent::TransferUnknown {
                    why: "no final NOTIFY of the transfer came in time (RFC 3515 §2.4.5)",
                },
            );
        }
    }
}

/// The call we placed for a REFER (transferee), in its `Rare` box: where its progress is
/// NOTIFYed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Referrer {
    /// The call whose dialog the REFER came in (the NOTIFYs go there).
    call: CallId,
    /// The REFER's CSeq number: our NOTIFYs' `Event: refer;id=` (RFC 3515 §2.4.6).
    seq: u32,
    /// The last status NOTIFYed (100 first).
    last: u16,
    /// The final status was NOTIFYed (the subscription terminated).
    done: bool,
}

/// How long we say the subscription of a REFER lasts (`Subscription-State: active;expires=`),
/// seconds: longer than a call to the target takes to be answered or refused (Timer C is
/// more than 3 minutes, RFC 3261 §16.6, but a phone rings for a minute at most).
const REFER_EXPIRES: u32 = 120;

/// The target of a REFER we may follow and the `Replaces` its URI carries (an attended
/// transfer, RFC 3891 §6.1), unescaped: its one Refer-To, a SIP URI whose only URI header
/// is Replaces, without a method other than INVITE; else the refusal.
fn refer_target(req: &Message) -> Result<(Uri, Option<String>), (u16, &'static str)> {
    let mut all = req.headers.get_all(&HeaderName::ReferTo);
    // RFC 3515 §2.4.1: "A REFER request MUST contain exactly one Refer-To header".
    let (Some(one), None) = (all.next(), all.next()) else {
        return Err((400, "Bad Request (not exactly one Refer-To)"));
    };
    let text = one.value();
    let inner = text
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map_or(text.trim(), |(uri, _)| uri);
    let params = inner.split_once('?').map_or(inner, |(p, _)| p);
    if params.to_ascii_lowercase().contains(";method=") {
        // A request other than INVITE (RFC 3261 §19.1.1).
        return Err((403, "Forbidden (only INVITE: no method parameter)"));
    }
    let Ok(Uri::Sip(mut uri)) = Uri::parse(inner) else {
        return Err((400, "Bad Request (Refer-To is not a SIP URI)"));
    };
    let mut replaces = None;
    // RFC 3515 §2.1: the URI's headers become headers of the request it triggers; only
    // Replaces is put in ours (RFC 3891 §6.1), the rest is refused rather than dropped.
    for (name, value) in std::mem::take(&mut uri.headers) {
        if !name.eq_ignore_ascii_case("Replaces") {
            return Err((
                403,
                "Forbidden (a Refer-To URI header other than Replaces: not supported)",
            ));
        }
        let value = unescape(&value);
        if Replaces::parse(&value).is_err() {
            return Err((
                400,
                "Bad Request (unreadable Replaces in Refer-To, RFC 3891 §6.1)",
            ));
        }
        // RFC 3891 §3: one Replaces in an INVITE.
        if replaces.replace(value).is_some() {
            return Err((400, "Bad Request (two Replaces in Refer-To, RFC 3891 §3)"));
        }
    }
    Ok((Uri::Sip(uri), replaces))
}

impl UserAgent {
    /// The REFER `req` in the dialog of call `id` (we are the transferee, RFC 3515 §2.4.2):
    /// refused (400, 403) or accepted with 202, then a NOTIFY `100 Trying` and our INVITE to
    /// its target.
    pub(super) fn on_refer(
        &mut self,
        now: Instant,
        req: &Message,
        id: CallId,
        key: TxnKey,
        source: SocketAddr,
    ) {
        let busy = self.calls.iter().filter_map(Slot::as_ref).any(|c| {
            c.rare
                .as_ref()
                .and_then(|r| match r.tie.as_deref() {
                    Some(Tie::Referred(r)) => Some(r),
                    _ => None,
                })
                .is_some_and(|r| r.call == id && !r.done)
        });
        let target = if self.call_state(id) != Some(CallState::Confirmed) {
            Err((403, "Forbidden (not in a confirmed call)"))
        } else if busy {
            Err((403, "Forbidden (a transfer of this call is going on)"))
        } else {
            refer_target(req)
        };
        let (target, replaces) = match target {
            Ok(t) => t,
            Err((code, reason)) => {
                self.respond_stateless(now, req, key, source, code, reason);
                return;
            }
        };
        let seq = req.cseq().map_or(0, |c| c.seq);
        let contact = [Header::new(
            HeaderName::Contact,
            self.contact_text_at(self.proxied(id)),
        )];
        self.respond_with(now, req, key, source, 202, "Accepted", &contact, None);
        // RFC 3515 §2.4.4: "the agent receiving the REFER MUST ... send a NOTIFY" at once.
        self.send_refer_notify(now, id, seq, 100, "Trying", false);
        let referred_by = req
            .headers
            .value(&HeaderName::ReferredBy)
            .map(str::to_owned);
        // Our description in the first call, but not its hold (an attended transfer's
        // transferor holds us while it consults the target).
        let offer = self
            .call_ref(id)
            .and_then(|c| c.local_sdp.as_ref())
            .map(crate::sdpdir::not_held);
        let to = target.to_string();
        let new = self.call_referred(
            now,
            target,
            offer,
            referred_by.as_deref(),
            replaces.as_deref(),
        );
        if let Some(c) = self.call_mut(new) {
            c.rare.get_or_insert_with(Box::default).tie = Some(Box::new(Tie::Referred(Referrer {
                call: id,
                seq,
                last: 100,
                done: false,
            })));
        }
        self.call_event(id, CallEvent::Referred { to, call: new });
    }

    /// The call `id`'s referrer (it is the call a REFER made us place), if it is one.
    pub(super) fn referrer_of(&self, id: CallId) -> Option<Referrer> {
        match self.call_ref(id)?.rare.as_ref()?.tie.as_deref()? {
            Tie::Referred(r) => Some(*r),
            Tie::Replacing(_) => None,
        }
    }

    /// After a response to (or the timeout of) the INVITE of call `id`, which a REFER made
    /// us place (`referrer`, read before the response was handled): its progress NOTIFYed
    /// in the REFER's dialog (RFC 3515 §2.4.5): a new provisional status, or the final one
    /// (a 2xx; a failure once the call has failed, not a challenge answered with a retry)
    /// with the subscription terminated.
    pub(super) fn notify_referrer(
        &mut self,
        now: Instant,
        id: CallId,
        referrer: Option<Referrer>,
        code: u16,
        reason: Option<&str>,
    ) {
        let Some(r) = referrer.filter(|r| !r.done) else {
            return;
        };
        let failed = self
            .call_ref(id)
            .is_none_or(|c| c.state == CallState::Terminated);
        let (last, done) = match code {
            101..=199 if code != r.last => (code, false),
            200..=299 => (code, true),
            300.. if failed => (code, true),
            _ => return,
        };
        if let Some(mine) =
            self.call_mut(id)
                .and_then(|c| match c.rare.as_mut()?.tie.as_deref_mut()? {
                    Tie::Referred(r) => Some(r),
                    Tie::Replacing(_) => None,
                })
        {
            mine.last = last;
            mine.done = done;
        }
        let reason = reason
            .filter(|r| !r.is_empty())
            .unwrap_or(reason_phrase(code));
        self.send_refer_notify(now, r.call, r.seq, code, reason, done);
    }

    /// A NOTIFY of our subscription for the REFER with CSeq `seq` in call `id`'s dialog: the
    /// status line `code reason` as `message/sipfrag` (RFC 3515 §2.4.5), the subscription
    /// `terminated` with the final one. Nothing when that call's dialog is gone (the
    /// transferor ended it already).
    fn send_refer_notify(
        &mut self,
        now: Instant,
        id: CallId,
        seq: u32,
        code: u16,
        reason: &str,
        terminated: bool,
    ) {
        let state = if terminated {
            "terminated;reason=noresource".to_owned()
        } else {
            format!("active;expires={REFER_EXPIRES}")
        };
        let frag = Bytes::from(format!("SIP/2.0 {code} {reason}\r\n"));
        self.send_subscription_request(now, id, Method::Notify, Owner::Notify(id), |b| {
            // RFC 3515 §2.4.6: the `id` names the REFER (its CSeq number).
            b.header(HeaderName::Event, format!("refer;id={seq}"))
                .header(HeaderName::SubscriptionState, state)
                .body("message/sipfrag", frag)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that is a sipfrag of `code`.
    fn frag(code: u16) -> Vec<u8> {
        format!("SIP/2.0 {code} Whatever\r\n").into_bytes()
    }

    #[test]
    fn sipfrag_status_lines_are_read_and_anything_else_is_not() {
        assert_eq!(sipfrag_status(&frag(180)), Some(180));
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK"), Some(200));
        assert_eq!(sipfrag_status(b"sip/2.0 486\r\n"), Some(486));
        assert_eq!(sipfrag_status(b"SIP/2.0 603"), Some(603));
        assert_eq!(sipfrag_status(b""), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 20 OK"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 2000 OK"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 099 Low"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 700 High"), None);
        assert_eq!(sipfrag_status(b"INVITE sip:a@b SIP/2.0\r\n"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 \xff\xfe\xfd"), None);
        assert_eq!(sipfrag_status(b"200 OK"), None);
    }

    #[test]
    fn subscription_state_and_event_values_are_read() {
        assert_eq!(
            subscription_state("active;expires=60"),
            ("active", Some(60))
        );
        assert_eq!(
            subscription_state("terminated;reason=noresource"),
            ("terminated", None)
        );
        assert_eq!(
            subscription_state(" pending ; EXPIRES = 5"),
            ("pending", Some(5))
        );
        assert_eq!(subscription_state("active;expires=x"), ("active", None));
        assert_eq!(
            event_package("refer;id=93809824"),
            ("refer", Some("93809824"))
        );
        assert_eq!(event_package("refer"), ("refer", None));
        assert_eq!(event_package("dialog"), ("dialog", None));
    }
}
