//! Call transfer (RFC 3515 REFER, a blind transfer as RFC 5589 §6 draws it): the `transfer`
//! scenario action (we are the transferor) and the REFERs our endpoints follow (we are the
//! transferee): what an endpoint records of them, what it reports, and the outcome each one
//! gives. The protocol is the user agent's ([`sip_proto::ua::UserAgent::refer`],
//! [`CallEvent::Referred`]); a child of `engine` so the shard's hooks stay one line each.
//!
//! Referred, the endpoint's user agent calls the target in a new call while the first goes
//! on; once the target answers, the endpoint's media follows its answer (the same RTP
//! session, now to the target), the new call is the endpoint's call and lasts the run's
//! call duration; the first call ends when the transferor hangs up.
//!
//! Replaced (RFC 3891 §3: an INVITE with Replaces naming the endpoint's call, we are the
//! target of an attended transfer), the new call is answered at once, as any incoming call
//! is answered (its own media session, bound and answered as usual; no ringing, no answer
//! delay: it takes over a call already up), and becomes the endpoint's call: its media,
//! metrics and hang-up (the old call's scheduled hang-up moves to it). The old call's media
//! ends there (its figures go into the endpoint's report like any call's), and the user
//! agent's BYE ends it; that end is noted ("replaced by the call <Call-ID>") and counted in
//! `transfer.replaced`, never a failure.
//!
//! The transferor of an attended transfer (the `attended_transfer` action: hold, a
//! consultation call, REFER with `Replaces`) is the child module `attended`.

use std::time::{Duration, Instant};

use serde::Serialize;
use sip_msg::Uri;
use sip_proto::ua::{CallEvent, CallId, CallState, reason_phrase};

use super::{CallMedia, Endpoint, Outcome, Script, Shard, ms};

mod attended;
use crate::hints::hint_for;
use crate::trace::TraceEntry;

/// An endpoint's transfers: counts over its calls and the last one's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferReport {
    /// The last transfer's target (the REFER's Refer-To).
    pub target: String,
    /// REFERs sent.
    pub sent: u32,
    /// REFERs answered 2xx (the transfer accepted).
    pub accepted: u32,
    /// Transfers whose final status was 2xx (the transferee reached the target; we hung up).
    pub succeeded: u32,
    /// REFERs refused (4xx–6xx, 408 for no answer) and transfers whose final status was not
    /// 2xx: the call went on.
    pub failed: u32,
    /// Transfers whose outcome never came (no final NOTIFY in time, an unreadable one, the
    /// subscription ended without one, or the call ended first).
    pub unknown: u32,
    /// The last REFER's final response code.
    pub refer_code: Option<u16>,
    /// The last transfer's final status (the sipfrag of its final NOTIFY, RFC 3515 §2.4.5).
    pub final_code: Option<u16>,
    /// The last transfer's time from the REFER to its final status, ms.
    pub time_to_final_ms: Option<f64>,
    /// REFERs of the peer we followed (transferee): calls placed to their targets.
    pub followed: u32,
    /// Of those, calls the target answered (our call moved there).
    pub followed_answered: u32,
    /// Of those, calls that failed (the first call went on).
    pub followed_failed: u32,
    /// Calls of ours replaced by an incoming INVITE with Replaces (RFC 3891, we are the
    /// target of an attended transfer): the new call was answered at once, the old one
    /// ended with our BYE (or CANCEL). Not a failure.
    pub replaced: u32,
    /// Attended transfers begun (`attended_transfer`: the call held, a consultation call to
    /// the target, then REFER with `Replaces`; RFC 5589 §7). Their REFERs count in `sent`
    /// and the rest; a consultation call not answered counts in `failed`.
    pub attended: u32,
    /// Of those, consultation calls the target answered.
    pub consult_answered: u32,
    /// The last consultation call's final code (200 when answered).
    pub consult_code: Option<u16>,
    /// The last consultation call's setup time, its INVITE to its 2xx, ms.
    pub consult_setup_ms: Option<f64>,
    /// The last attended transfer's time from its hold to its final status (NOTIFY 2xx), ms.
    pub attended_ms: Option<f64>,
}

/// The run's transfers, summed over the endpoints ([`TransferReport`]).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TransferCounts {
    /// REFERs sent.
    pub sent: u32,
    /// REFERs answered 2xx.
    pub accepted: u32,
    /// Final status 2xx.
    pub succeeded: u32,
    /// Refused or failed.
    pub failed: u32,
    /// Outcome unknown.
    pub unknown: u32,
    /// REFERs followed (transferee), answered by their target, failed.
    pub followed: u32,
    /// See `followed`.
    pub followed_answered: u32,
    /// See `followed`.
    pub followed_failed: u32,
    /// Calls replaced by an INVITE with Replaces (RFC 3891).
    pub replaced: u32,
    /// Attended transfers begun, and their consultation calls answered.
    pub attended: u32,
    /// See `attended`.
    pub consult_answered: u32,
}

impl TransferCounts {
    /// Adds one endpoint's counts.
    pub fn add(&mut self, r: &TransferReport) {
        self.sent += r.sent;
        self.accepted += r.accepted;
        self.succeeded += r.succeeded;
        self.failed += r.failed;
        self.unknown += r.unknown;
        self.followed += r.followed;
        self.followed_answered += r.followed_answered;
        self.followed_failed += r.followed_failed;
        self.replaced += r.replaced;
        self.attended += r.attended;
        self.consult_answered += r.consult_answered;
    }
}

/// What an endpoint keeps of its transfers while it runs (boxed: most endpoints never
/// transfer).
#[derive(Debug, Default)]
pub(super) struct Transfers {
    pub(super) report: TransferReport,
    /// When the transfer going on was sent; `None` once its outcome is known.
    pending: Option<Instant>,
    /// The call we placed for the peer's REFER, until it is answered or fails.
    referred: Option<CallId>,
    /// Our call an incoming INVITE with Replaces took over, until it has ended.
    replaced: Option<CallId>,
    /// The attended transfer going on (we are the transferor).
    attended: Option<Box<attended::Attended>>,
    /// An INVITE with Replaces whose answer waits for its media's ICE gathering.
    replacing: Option<Box<Replacing>>,
}

/// An INVITE with Replaces taking over the endpoint's call, answered once its media has
/// gathered its STUN/TURN candidates (the old call goes on meanwhile).
#[derive(Debug)]
pub(super) struct Replacing {
    /// The new call and the one it replaces.
    call: CallId,
    old: CallId,
    /// The new call's Call-ID (for the notes).
    cid: String,
    /// The new call's media, gathering.
    pub(super) media: Box<CallMedia>,
    /// When its gathering is due next (now once the servers answered).
    due: Instant,
}

impl Transfers {
    /// When the attended transfer's next step, or the gathering of a replacing call, is
    /// due.
    pub(super) fn due(&self) -> Option<Instant> {
        let replacing = self.replacing.as_ref().map(|r| r.due);
        self.attended
            .as_deref()
            .and_then(attended::Attended::due)
            .into_iter()
            .chain(replacing)
            .min()
    }
}

impl Endpoint {
    /// The media of an INVITE with Replaces whose answer waits for its gathering.
    pub(super) fn replacing_media(&mut self) -> Option<&mut CallMedia> {
        Some(
            &mut *self
                .transfers
                .as_deref_mut()?
                .replacing
                .as_deref_mut()?
                .media,
        )
    }

    /// That media's gathering is over (its servers answered): the answer is due now. True
    /// if one was waiting.
    pub(super) fn replacing_gathered(&mut self, now: Instant) -> bool {
        match self
            .transfers
            .as_deref_mut()
            .and_then(|t| t.replacing.as_deref_mut())
        {
            Some(r) => {
                r.due = now;
                true
            }
            None => false,
        }
    }

    /// Sends REFER to `target` in `call` (the `transfer` action); the trace note, `Err`
    /// when it was not sent.
    pub(super) fn transfer(
        &mut self,
        now: Instant,
        call: CallId,
        target: &Uri,
    ) -> Result<String, String> {
        if !self.ua.refer(now, call, target) {
            // A transfer still going on (one at a time), or a call no longer confirmed.
            return Err(format!(
                "transfer to {target} not sent: a transfer of this call is still going on, or \
                 the call is ending"
            ));
        }
        let t = self.transfers.get_or_insert_with(Box::default);
        t.report.target = target.to_string();
        t.report.sent += 1;
        t.report.refer_code = None;
        t.report.final_code = None;
        t.report.time_to_final_ms = None;
        t.pending = Some(now);
        Ok(format!("transfer (REFER to {target})"))
    }

    /// A transfer's event from the user agent: recorded, noted in the trace, and the
    /// endpoint's outcome worsened (COMPLETED_WITH_WARNINGS) for a transfer that failed or
    /// whose outcome never came; the call goes on then. True when `ce` was one.
    pub(super) fn on_transfer_event(&mut self, now: Instant, at: Duration, ce: &CallEvent) -> bool {
        let Some(t) = self.transfers.as_deref_mut() else {
            return matches!(
                ce,
                CallEvent::ReferAnswered { .. }
                    | CallEvent::TransferProgress { .. }
                    | CallEvent::TransferUnknown { .. }
            );
        };
        let (note, warning) = match *ce {
            CallEvent::ReferAnswered { code } => {
                t.report.refer_code = Some(code);
                if (200..300).contains(&code) {
                    t.report.accepted += 1;
                    (format!("transfer accepted: REFER answered {code}"), None)
                } else {
                    t.report.failed += 1;
                    t.pending = None;
                    let w = format!(
                        "the transfer's REFER was answered {code}: {} (the call went on)",
                        hint_for(code)
                    );
                    (w.clone(), Some(w))
                }
            }
            CallEvent::TransferProgress { code, last: false } => (
                format!(
                    "transfer: NOTIFY {code} {} (RFC 3515 sipfrag)",
                    reason_phrase(code)
                ),
                None,
            ),
            CallEvent::TransferProgress { code, last: true } => {
                t.report.final_code = Some(code);
                t.report.time_to_final_ms = t.pending.take().map(|s| ms(now - s));
                if (200..300).contains(&code) {
                    t.report.succeeded += 1;
                    (
                        format!("transfer succeeded: NOTIFY {code} (RFC 3515 sipfrag); hanging up"),
                        None,
                    )
                } else {
                    t.report.failed += 1;
                    let w = format!(
                        "the transfer failed: its final NOTIFY said {code} {} (RFC 3515 \
                         sipfrag): {}; the call went on with the transferee",
                        reason_phrase(code),
                        hint_for(code)
                    );
                    (w.clone(), Some(w))
                }
            }
            CallEvent::TransferUnknown { why } => {
                t.report.unknown += 1;
                t.pending = None;
                let w = format!("the transfer's outcome is unknown: {why}; the call went on");
                (w.clone(), Some(w))
            }
            _ => return false,
        };
        self.trace.push(TraceEntry::note(note, at));
        if let Some(w) = warning {
            self.worsen(Outcome::CompletedWithWarnings, w);
        }
        self.attended_after_refer_event(now, at, ce);
        true
    }

    /// The call ended: a transfer still going on will not be known.
    pub(super) fn transfer_call_ended(&mut self, at: Duration) {
        let attended = self.attended_call_ended();
        if let Some(t) = self.transfers.as_deref_mut()
            && (t.pending.take().is_some() || attended)
        {
            t.report.unknown += 1;
            let w = "the call ended before the transfer's outcome was known".to_owned();
            self.trace.push(TraceEntry::note(w.clone(), at));
            self.worsen(Outcome::CompletedWithWarnings, w);
        }
    }
}

impl Shard<'_> {
    /// The REFERs endpoint `idx` follows (transferee): [`CallEvent::Referred`] on the first
    /// call, then the new call's events until it is answered (the endpoint's call moves to
    /// it) or fails (the first call goes on). True when `ce` was taken here.
    pub(super) fn on_referred_event(
        &mut self,
        idx: usize,
        now: Instant,
        call: CallId,
        ce: &CallEvent,
    ) -> bool {
        let at = now - self.start;
        let duration = self.plan.call_duration;
        let ep = &mut self.endpoints[idx];
        if let CallEvent::Referred { to, call: new } = ce {
            let t = ep.transfers.get_or_insert_with(Box::default);
            t.report.followed += 1;
            t.referred = Some(*new);
            ep.trace.push(TraceEntry::note(
                format!("the peer's REFER followed (RFC 3515): calling {to}"),
                at,
            ));
            return true;
        }
        let Some(t) = ep.transfers.as_deref_mut() else {
            return false;
        };
        // The transferor hung up before the target answered: the endpoint's call (and its
        // media, still flowing to the transferor) is the one to the target from now on.
        if let (CallEvent::Ended { .. }, Some(new)) = (ce, t.referred)
            && ep.active_call == Some(call)
        {
            if let Some(a) = ep.answered_at {
                ep.timings.call_duration_ms.get_or_insert(ms(now - a));
            }
            ep.ua.forget_call(call);
            ep.active_call = Some(new);
            ep.trace.push(TraceEntry::note(
                "the transferor ended the call before the transfer target answered".into(),
                at,
            ));
            return true;
        }
        if t.referred != Some(call) {
            return false;
        }
        match ce {
            CallEvent::Trying | CallEvent::Progress { .. } => true,
            CallEvent::Answered { sdp } => {
                t.referred = None;
                t.report.followed_answered += 1;
                ep.trace.push(TraceEntry::note(
                    "the transfer target answered: our call is with it now".into(),
                    at,
                ));
                // The same media session, now with the target (RFC 3264 §8.3: its answer
                // names where its media goes and its codec).
                ep.active_call = Some(call);
                ep.script = Script::HangUp(call);
                ep.script_at = Some(now + duration);
                let offer = ep.ua.local_sdp(call).cloned().unwrap_or_default();
                if let (Some(answer), Some(m)) = (sdp, ep.media.as_mut()) {
                    let followed = m.follow_remote_answer(now, answer, &offer);
                    self.followed(idx, now, call, followed, "answer (the transfer target's)");
                }
                true
            }
            CallEvent::Failed { code, reason } => {
                t.referred = None;
                t.report.followed_failed += 1;
                ep.ua.forget_call(call);
                ep.worsen(
                    Outcome::CompletedWithWarnings,
                    format!(
                        "the call to the target of the peer's REFER failed: {code} {reason}: {} \
                         (the first call went on, unless the transferor had ended it)",
                        hint_for(*code)
                    ),
                );
                if ep.active_call == Some(call) {
                    // The first call is over already: nothing is left.
                    ep.active_call = None;
                    self.end_media(idx, now);
                    self.after_call(idx, now);
                }
                true
            }
            _ => false,
        }
    }

    /// An INVITE with Replaces naming endpoint `idx`'s call (RFC 3891 §3), and the events of
    /// the call it replaced after that: true when `ce` was taken here.
    pub(super) fn on_replacing_event(
        &mut self,
        idx: usize,
        now: Instant,
        call: CallId,
        ce: &CallEvent,
    ) -> bool {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        if let CallEvent::Incoming {
            replaces: Some(old),
            offer,
            ..
        } = ce
        {
            if ep.active_call != Some(*old) {
                // Not the endpoint's call (a call it placed for a REFER, say): one line,
                // busy, as any second call.
                return false;
            }
            let old = *old;
            let cid = ep.ua.sip_call_id(call).unwrap_or_default().to_owned();
            ep.offer = offer.clone();
            ep.calls_received += 1;
            // Answered as any incoming call, into media of its own; the old call's stays
            // aside until the answer is out.
            let with_media = self.plan.groups[ep.group].media.is_some();
            let old_media = ep.media.take();
            let bound = if with_media {
                self.bind_media(idx)
            } else {
                Some(())
            };
            let ep = &mut self.endpoints[idx];
            let new_media = std::mem::replace(&mut ep.media, old_media);
            match (bound, new_media) {
                (None, _) => {
                    // No RTP ports (OSERROR, said by `bind_media`): refused, our call goes on.
                    ep.ua.reject(now, call, 500);
                    ep.trace.push(TraceEntry::note(
                        format!(
                            "the INVITE with Replaces (call {cid}) could not be answered: our \
                             call went on"
                        ),
                        at,
                    ));
                }
                // ICE with STUN/TURN servers: the answer (and the takeover) wait for the
                // candidates, the old call goes on meanwhile; the shard does not wait.
                (Some(()), Some(m)) if m.gathering() => {
                    let due = m.gathering_timeout().unwrap_or(now);
                    ep.trace.push(TraceEntry::note(
                        format!(
                            "ICE gathering started: the answer to the INVITE with Replaces \
                             (call {cid}) waits for the STUN/TURN servers (at most {:?})",
                            crate::gather::GATHER_LIMIT
                        ),
                        at,
                    ));
                    ep.transfers.get_or_insert_with(Box::default).replacing =
                        Some(Box::new(Replacing {
                            call,
                            old,
                            cid,
                            media: m,
                            due,
                        }));
                    self.gather_until = self
                        .gather_until
                        .max(Some(now + crate::gather::GATHER_LIMIT));
                    return true;
                }
                (Some(()), m) => self.take_over(idx, now, call, old, cid, m),
            }
            return true;
        }
        self.on_replaced_call_event(idx, now, call, ce)
    }

    /// Answers the INVITE with Replaces `call` into `new_media` (bound, gathered) and, once
    /// the answer is out, ends the endpoint's call `old` it replaces (RFC 3891 §3): the
    /// endpoint's call from now on. Refused (488), our call goes on.
    fn take_over(
        &mut self,
        idx: usize,
        now: Instant,
        call: CallId,
        old: CallId,
        cid: String,
        new_media: Option<Box<CallMedia>>,
    ) {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let script = (ep.script, ep.script_at);
        if ep.script == Script::HangUp(old) {
            ep.script = Script::HangUp(call);
        }
        let old_media = std::mem::replace(&mut ep.media, new_media);
        self.send_answer(idx, now, call);
        let ep = &mut self.endpoints[idx];
        let new_media = std::mem::replace(&mut ep.media, old_media);
        if ep.ua.call_state(call) != Some(CallState::Answering) {
            // Refused (488, no ports): the user agent ended nothing, the call goes on.
            (ep.script, ep.script_at) = script;
            ep.trace.push(TraceEntry::note(
                format!(
                    "the INVITE with Replaces (call {cid}) could not be answered: our call \
                     went on"
                ),
                at,
            ));
            return;
        }
        ep.trace.push(TraceEntry::note(
            format!(
                "our call is replaced by the call {cid} (an INVITE with Replaces, RFC 3891 \
                 §3): answered at once, the old call ended with BYE"
            ),
            at,
        ));
        let t = ep.transfers.get_or_insert_with(Box::default);
        t.report.replaced += 1;
        t.replaced = Some(old);
        if let Some(a) = ep.answered_at {
            ep.timings.call_duration_ms.get_or_insert(ms(now - a));
        }
        self.end_media(idx, now);
        let ep = &mut self.endpoints[idx];
        ep.media = new_media;
        ep.active_call = Some(call);
    }

    /// An INVITE with Replaces whose answer waited for its media's gathering: once that is
    /// over, the answer and the takeover — unless our call ended meanwhile (RFC 3891 §3:
    /// 481, no dialog to replace).
    pub(super) fn run_replacing(&mut self, idx: usize, now: Instant) {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let Some(t) = ep.transfers.as_deref_mut() else {
            return;
        };
        let Some(r) = t.replacing.as_deref_mut().filter(|r| r.due <= now) else {
            return;
        };
        if r.media.drive_gathering(now, &self.media).is_none() {
            r.due = r.media.gathering_timeout().unwrap_or(now);
            return;
        }
        let Some(mut r) = t.replacing.take() else {
            return;
        };
        for n in r.media.take_ice_notes() {
            ep.trace.push(TraceEntry::note(n, at));
        }
        if ep.active_call != Some(r.old) {
            ep.ua.reject(now, r.call, 481);
            ep.trace.push(TraceEntry::note(
                format!(
                    "the INVITE with Replaces (call {}) refused with 481: our call ended while \
                     its answer waited for the ICE gathering",
                    r.cid
                ),
                at,
            ));
            return;
        }
        self.take_over(idx, now, r.call, r.old, r.cid, Some(r.media));
    }

    /// The events of our call an INVITE with Replaces took over (its end): true when `ce`
    /// was taken here.
    fn on_replaced_call_event(
        &mut self,
        idx: usize,
        now: Instant,
        call: CallId,
        ce: &CallEvent,
    ) -> bool {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let Some(t) = ep.transfers.as_deref_mut() else {
            return false;
        };
        if t.replaced != Some(call) {
            return false;
        }
        // The replaced call: its end is the one the replacement asked for.
        let note = match ce {
            CallEvent::Ended {
                by_remote: true, ..
            } => "the replaced call ended: the peer hung up first".to_owned(),
            CallEvent::Ended { code, .. } => {
                format!("the replaced call ended: our BYE answered {code}")
            }
            CallEvent::Failed { code, .. } => {
                format!("the replaced call (our INVITE) ended: cancelled, {code}")
            }
            _ => return true,
        };
        t.replaced = None;
        ep.ua.forget_call(call);
        ep.trace.push(TraceEntry::note(note, at));
        if let CallEvent::Ended {
            by_remote: false,
            code,
        } = *ce
            && code != 0
            && !(200..300).contains(&code)
        {
            ep.worsen(
                Outcome::TeardownError,
                format!(
                    "the BYE of the replaced call was answered {code}: {}",
                    hint_for(code)
                ),
            );
        }
        true
    }
}
