//! Call transfer, the transferor's side: our REFER in a call (RFC 3515, a blind transfer as
//! RFC 5589 §6 draws it) and the NOTIFYs of its implicit subscription.
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
//! Everything lives in the call's `Rare` box ([`Transfer`]): a call without a transfer pays
//! nothing for it.

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use sip_msg::{Header, HeaderName, Message, Method, Uri};

use super::{CallEvent, CallId, CallState, Destination, Owner, Slot, UserAgent, tidy_rare};
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
    call.rare.as_mut()?.transfer.as_mut()
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
        let (via, branch) = self.new_via_branch();
        let contact = self.contact();
        let ua = self.profile.user_agent.clone();
        let mut referred_by = String::with_capacity(40);
        self.write_aor(&mut referred_by);
        let Some(dialog) = self.call_mut(id).and_then(|c| c.dialog.as_mut()) else {
            return false;
        };
        let req = dialog
            .request_via_text(Method::Refer, via, None)
            .header_line(Header::from_shared(HeaderName::UserAgent, ua))
            // RFC 3515 §2.4.1: "A REFER request MUST contain exactly one Refer-To header".
            .header(HeaderName::ReferTo, format!("<{target}>"))
            .header(HeaderName::ReferredBy, referred_by)
            // §2.4.1 (and RFC 3261 §12.2.1.1 for a target it may send the NOTIFYs to).
            .contact(contact)
            .build();
        let seq = req.cseq().map_or(0, |c| c.seq);
        let dest = Destination::Uri(dialog.next_hop_shared());
        if let Some(c) = self.call_mut(id) {
            c.rare.get_or_insert_with(Box::default).transfer = Some(Transfer {
                seq,
                decided: false,
                at: None,
            });
        }
        self.start_client_branch(now, req, branch, Owner::Refer(id), dest);
        true
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
