//! The transferor of an attended transfer (RFC 5589 §7, RFC 3891 §7, RFC 3515): the
//! `attended_transfer` scenario action.
//!
//! 1. The first call (with the transferee) is held: re-INVITE `a=sendonly`, as `hold` does.
//! 2. Once the hold is answered, the consultation call goes to the target: an INVITE of the
//!    endpoint's user agent beside the first call (challenged like any call), with a media
//!    session of its own (bound, paced and read like the endpoint's call's, its figures
//!    folded into the endpoint's media report when it ends) or signalling only, as the
//!    group's media says. It is not counted in `calls_attempted`: `transfer.attended` and
//!    `transfer.consult_answered` count it.
//! 3. `consult` after its answer, REFER on the first call with `Refer-To:
//!    <target?Replaces=<consultation Call-ID>;to-tag=<the target's tag>;from-tag=<ours>>`
//!    (escaped) and `Referred-By`; its NOTIFYs are followed as a blind transfer's
//!    (`on_transfer_event`).
//! 4. A final 2xx: the user agent ends the first call with BYE (RFC 5589 §6); the target,
//!    replaced, ends the consultation call with its BYE, or we do after
//!    [`CONSULT_BYE_WAIT`]. The endpoint's next call (or its un-REGISTER) waits for the end of
//!    the consultation call.
//! 5. A consultation call not answered, or ended by the target before the REFER, a REFER
//!    refused, a final NOTIFY not 2xx, an outcome unknown: the consultation call (if up) is
//!    hung up, the first call resumed (re-INVITE `a=sendrecv`) and goes on to its planned
//!    end; counted in `transfer.failed` (or `unknown`), the endpoint COMPLETED_WITH_WARNINGS
//!    as for a failed blind transfer, not a failed call.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sip_msg::Uri;
use sip_proto::ua::{CallEvent, CallId, CallState};

use super::super::{CallMedia, Endpoint, OfferTiming, Outcome, Role, Script, Shard, ms, sdp_offer};
use crate::hints::hint_for;
use crate::sdpoffer::sdp;
use crate::trace::TraceEntry;

/// How long the target has, after the transfer succeeded, to end the consultation call it
/// was told to replace (RFC 3891 §3: it sends BYE once the transferee's INVITE is answered)
/// before we end it ourselves.
pub(in crate::engine) const CONSULT_BYE_WAIT: Duration = Duration::from_secs(2);

/// Where an attended transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The hold re-INVITE of the first call is out.
    Holding,
    /// The hold was answered: the consultation call is placed at `due`.
    Dial,
    /// The consultation call's media gathers its STUN/TURN candidates (ICE): its INVITE
    /// goes once that is over (`due`: the gathering's next timer, or now when the servers
    /// have answered).
    Gathering,
    /// The consultation call is ringing.
    Ringing,
    /// The target answered: the REFER goes at `due`.
    Talking,
    /// The REFER is out: its outcome comes from the NOTIFYs.
    Referred,
    /// Transferred (final 2xx): the target ends the consultation call; we do at `due`.
    Transferred,
    /// Given up: the first call resumed, the consultation call (if any) hung up.
    GivenUp,
}

/// An endpoint's attended transfer going on (in its boxed [`super::Transfers`]).
#[derive(Debug)]
pub(in crate::engine) struct Attended {
    /// The call with the transferee.
    first: CallId,
    /// The target (as the action names it; the REFER adds `?Replaces=`).
    target: Uri,
    /// How long the consultation talks before the REFER.
    consult: Duration,
    /// Our SDP address, for the resume of a call without media.
    ip: IpAddr,
    /// The hold's SDP version (without media; the resume goes one above).
    version: u64,
    step: Step,
    /// When the hold went.
    began: Instant,
    /// When the next step is due (see [`Step`]).
    due: Option<Instant>,
    /// The consultation call, until it has ended.
    call: Option<CallId>,
    /// Its Call-ID (its route retires when it ends).
    cid: Option<String>,
    /// When its INVITE went.
    placed: Option<Instant>,
    /// Its media (`None` without media, or once it has ended).
    media: Option<Box<CallMedia>>,
    /// The first call has ended: the endpoint's next call waits for the consultation's end.
    after_call: bool,
}

/// The seed of a consultation call's media (SSRC, sequence, impairments): the run's, the
/// endpoint's and the transfer's number.
fn consult_seed(run: u64, endpoint: u32, attended: u32) -> u64 {
    run ^ u64::from(endpoint) ^ u64::from(attended) << 40 ^ 0xa77e
}

impl Attended {
    /// When the next step is due.
    pub(in crate::engine) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The consultation call's gathering is over (its servers answered): its INVITE is
    /// due now. True if it was waiting for it.
    pub(in crate::engine) fn gathered(&mut self, now: Instant) -> bool {
        let waiting = self.step == Step::Gathering;
        if waiting {
            self.due = Some(now);
        }
        waiting
    }
}

impl Endpoint {
    /// The attended transfer going on, if any.
    fn attended(&mut self) -> Option<&mut Attended> {
        self.transfers.as_deref_mut()?.attended.as_deref_mut()
    }

    /// The consultation call's gathering is over: its INVITE is due now. True if it was
    /// waiting for it.
    pub(in crate::engine) fn consult_gathered(&mut self, now: Instant) -> bool {
        self.attended().is_some_and(|a| a.gathered(now))
    }

    /// The consultation call's media, when one runs.
    pub(in crate::engine) fn consult_media(&mut self) -> Option<&mut CallMedia> {
        self.attended()?.media.as_deref_mut()
    }

    /// Begins an attended transfer of `call` to `target` (the action): the hold (our SDP
    /// address `ip` and version `version` for a call without media); the trace note.
    pub(in crate::engine) fn attended_transfer(
        &mut self,
        now: Instant,
        call: CallId,
        (target, consult): (&Uri, Duration),
        ip: IpAddr,
        version: u64,
    ) -> String {
        let id = u64::from(self.id);
        let t = self.transfers.get_or_insert_with(Box::default);
        if t.attended.is_some() || t.pending.is_some() {
            return format!(
                "attended transfer to {target} not begun: a transfer of this call is going on"
            );
        }
        // As the `hold` action holds.
        let hold = match self.media.as_mut() {
            Some(m) => m.reoffer(now, media::sdp::Direction::SendOnly),
            None => sdp(ip, 0, id, version, "sendonly"),
        };
        if !self.ua.reinvite(now, call, hold) {
            return format!(
                "attended transfer to {target} not begun: the call cannot be held now (not \
                 confirmed, or an offer is open)"
            );
        }
        let r = &mut t.report;
        r.attended += 1;
        r.target = target.to_string();
        r.consult_code = None;
        r.consult_setup_ms = None;
        r.attended_ms = None;
        r.refer_code = None;
        r.final_code = None;
        r.time_to_final_ms = None;
        t.attended = Some(Box::new(Attended {
            first: call,
            target: target.clone(),
            consult,
            ip,
            version,
            step: Step::Holding,
            began: now,
            due: None,
            call: None,
            cid: None,
            placed: None,
            media: None,
            after_call: false,
        }));
        format!("attended transfer to {target}: hold (re-INVITE a=sendonly)")
    }

    /// After one of the REFER's events ([`Endpoint::on_transfer_event`], which counted and
    /// noted it): a final 2xx leaves the target to end the consultation call; a failure or
    /// an unknown outcome gives the attended transfer up (the first call resumed).
    pub(super) fn attended_after_refer_event(
        &mut self,
        now: Instant,
        at: Duration,
        ce: &CallEvent,
    ) {
        let Some(a) = self.attended().filter(|a| a.step == Step::Referred) else {
            return;
        };
        match *ce {
            CallEvent::TransferProgress { code, last: true } if (200..300).contains(&code) => {
                a.step = Step::Transferred;
                a.due = a.call.map(|_| now + CONSULT_BYE_WAIT);
                let took = ms(now - a.began);
                if let Some(t) = self.transfers.as_deref_mut() {
                    t.report.attended_ms = Some(took);
                }
                self.settle_attended();
            }
            CallEvent::ReferAnswered { code } if code >= 300 => self.give_up_attended(now, at),
            CallEvent::TransferProgress { last: true, .. } | CallEvent::TransferUnknown { .. } => {
                self.give_up_attended(now, at)
            }
            _ => {}
        }
    }

    /// Gives the attended transfer up (counted and noted by the caller): the consultation
    /// call hung up if it is up, the first call resumed (re-INVITE `a=sendrecv`).
    fn give_up_attended(&mut self, now: Instant, at: Duration) {
        let id = u64::from(self.id);
        let Some(a) = self.attended() else {
            return;
        };
        a.step = Step::GivenUp;
        a.due = None;
        let (first, ip, version, consult) = (a.first, a.ip, a.version + 1, a.call);
        if let Some(c) = consult {
            self.ua.hangup(now, c);
        }
        let offer = match self.media.as_mut() {
            Some(m) => m.reoffer(now, media::sdp::Direction::SendRecv),
            None => sdp(ip, 0, id, version, "sendrecv"),
        };
        let note = if self.ua.call_state(first) != Some(CallState::Confirmed) {
            "attended transfer given up: the first call is over"
        } else if self.ua.reinvite(now, first, offer) {
            "attended transfer given up: the first call resumed (re-INVITE a=sendrecv)"
        } else {
            "attended transfer given up: the first call could not be resumed now (an offer is \
             open in it)"
        };
        self.trace.push(TraceEntry::note(note.to_owned(), at));
        self.settle_attended();
    }

    /// Drops the attended transfer once it is over and its consultation call has ended.
    fn settle_attended(&mut self) {
        if let Some(t) = self.transfers.as_deref_mut()
            && t.attended.as_ref().is_some_and(|a| {
                a.call.is_none() && matches!(a.step, Step::Transferred | Step::GivenUp)
            })
        {
            t.attended = None;
        }
    }

    /// The first call ended (`transfer_call_ended`): an attended transfer not referred yet
    /// will not be; true (counted unknown by the caller) when there was one.
    pub(super) fn attended_call_ended(&mut self) -> bool {
        match self.attended() {
            Some(a)
                if matches!(
                    a.step,
                    Step::Holding | Step::Dial | Step::Gathering | Step::Ringing | Step::Talking
                ) =>
            {
                a.step = Step::GivenUp;
                a.due = None;
                true
            }
            _ => false,
        }
    }

    /// The run stops: the consultation call, if up, is hung up.
    pub(in crate::engine) fn hang_up_consult(&mut self, now: Instant) {
        if let Some(c) = self.attended().and_then(|a| a.call) {
            self.ua.hangup(now, c);
        }
    }
}

impl Shard<'_> {
    /// The events of an attended transfer: the hold's answer on the first call (not taken:
    /// the usual handling follows the answer; the consultation call is placed next), and
    /// every event of the consultation call (taken). True when `ce` was taken here.
    pub(in crate::engine) fn on_attended_event(
        &mut self,
        idx: usize,
        now: Instant,
        call: CallId,
        ce: &CallEvent,
    ) -> bool {
        let at = now - self.start;
        let seed = self.plan.seed;
        let ep = &mut self.endpoints[idx];
        let Some(t) = ep.transfers.as_deref_mut() else {
            return false;
        };
        let Some(a) = t.attended.as_deref_mut() else {
            return false;
        };
        if call == a.first && a.step == Step::Holding {
            if let CallEvent::Modified { code, .. } = *ce {
                if code < 300 {
                    a.step = Step::Dial;
                    a.due = Some(now);
                } else {
                    // The usual handling warns of the refused re-INVITE.
                    t.report.failed += 1;
                    t.attended = None;
                    ep.trace.push(TraceEntry::note(
                        format!("attended transfer given up: the hold was answered {code}"),
                        at,
                    ));
                }
            }
            return false;
        }
        if a.call != Some(call) {
            return false;
        }
        let target = a.target.to_string();
        match ce {
            CallEvent::Answered { sdp } => {
                a.step = Step::Talking;
                a.due = Some(now + a.consult);
                t.report.consult_answered += 1;
                t.report.consult_code = Some(200);
                t.report.consult_setup_ms = a.placed.map(|p| ms(now - p));
                let seed = consult_seed(seed, ep.id, t.report.attended);
                let cname = format!("{}@sipmeter", ep.ua.user());
                let mut negotiation = Ok(());
                if let Some(m) = a.media.as_mut() {
                    if !m.started() {
                        negotiation = match sdp {
                            Some(answer) => m.apply_answer(answer, seed as u32, &cname, seed, now),
                            None => Err("the 200 OK carried no SDP answer".to_owned()),
                        };
                    }
                    m.answered(now);
                }
                match negotiation {
                    Ok(()) => ep.trace.push(TraceEntry::note(
                        format!("attended transfer: the consultation call to {target} answered"),
                        at,
                    )),
                    Err(e) => {
                        let w = format!(
                            "the attended transfer's consultation call to {target} could not \
                             negotiate its media ({e}): given up, the first call resumed"
                        );
                        self.fail_attended(idx, now, w);
                    }
                }
            }
            CallEvent::Offered { sdp: offer } => {
                // A late offer's consultation: the target offered in its 2xx (or a reliable
                // 1xx); our answer starts the media and goes in the ACK (or PRACK).
                let seed = consult_seed(seed, ep.id, t.report.attended);
                let cname = format!("{}@sipmeter", ep.ua.user());
                let answer = match a.media.as_mut() {
                    Some(m) if !m.started() => {
                        m.answer_late_offer(offer, seed as u32, &cname, seed, now)
                    }
                    _ => Ok(sdp_offer(a.ip, 0, u64::from(ep.id))),
                };
                match answer {
                    Ok(answer) => {
                        ep.ua.answer_offer(now, call, answer);
                    }
                    Err(e) => {
                        // Hung up by the give-up (its streams rejected in the ACK, then
                        // BYE, as `hangup` does for the endpoint's own late-offer call).
                        let w = format!(
                            "the attended transfer's consultation call to {target} could not \
                             negotiate its media (the target's offer: {e}): given up, the first \
                             call resumed"
                        );
                        a.media = None;
                        self.fail_attended(idx, now, w);
                    }
                }
            }
            CallEvent::Failed { code, reason } => {
                let ringing = a.step == Step::Ringing;
                t.report.consult_code = Some(*code);
                let w = format!(
                    "the attended transfer's consultation call to {target} failed: {code} \
                     {reason}: {}; the first call was resumed",
                    hint_for(*code)
                );
                self.consult_over(idx, now, call);
                if ringing {
                    self.fail_attended(idx, now, w);
                } else {
                    self.endpoints[idx].trace.push(TraceEntry::note(
                        format!("the consultation call ended: {code} {reason}"),
                        at,
                    ));
                }
                self.after_consult(idx, now);
            }
            CallEvent::Ended { by_remote, code } => {
                let (by_remote, code) = (*by_remote, *code);
                let step = a.step;
                let note = match (by_remote, step) {
                    (true, Step::Referred | Step::Transferred) => {
                        "the consultation call ended: the target's BYE (replaced by the \
                         transferee's call, RFC 3891 §3)"
                            .to_owned()
                    }
                    (true, _) => "the consultation call ended: the target hung up".to_owned(),
                    (false, _) => format!("the consultation call ended: our BYE answered {code}"),
                };
                ep.trace.push(TraceEntry::note(note, at));
                if !by_remote && code != 0 && !(200..300).contains(&code) {
                    ep.worsen(
                        Outcome::TeardownError,
                        format!(
                            "the BYE of the consultation call was answered {code}: {}",
                            hint_for(code)
                        ),
                    );
                }
                self.consult_over(idx, now, call);
                if matches!(step, Step::Ringing | Step::Talking) {
                    self.fail_attended(
                        idx,
                        now,
                        "the target ended the attended transfer's consultation call before the \
                         REFER: given up, the first call resumed"
                            .to_owned(),
                    );
                }
                self.after_consult(idx, now);
            }
            CallEvent::Reinvited { sdp: Some(offer) } => {
                // The target's offer inside the consultation, answered by the user agent:
                // its media follows (as the endpoint's call's does).
                let answer = ep.ua.local_sdp(call).cloned().unwrap_or_default();
                if let Some(m) = a.media.as_mut() {
                    m.follow_remote_offer(now, offer, &answer);
                }
            }
            // Its ringing, PRACKs, refreshes: nothing to record.
            _ => {}
        }
        true
    }

    /// Runs endpoint `idx`'s attended transfer step that is due: the consultation call, the
    /// REFER, or our BYE of a consultation call the target did not end.
    pub(in crate::engine) fn run_attended(&mut self, idx: usize, now: Instant) {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let Some(a) = ep.attended() else {
            return;
        };
        if a.due.is_none_or(|d| d > now) {
            return;
        }
        a.due = None;
        let (step, first, consult, target) = (a.step, a.first, a.call, a.target.clone());
        match step {
            Step::Dial => self.place_consult(idx, now),
            Step::Gathering => self.consult_gathered(idx, now),
            Step::Talking => {
                let uri = consult.and_then(|c| ep.ua.replaces_uri(c, &target));
                let Some(uri) = uri else {
                    let w = format!(
                        "the attended transfer to {target} cannot name the consultation dialog \
                         in a Refer-To (not a SIP URI, or no dialog): given up, the first call \
                         resumed"
                    );
                    self.fail_attended(idx, now, w);
                    return;
                };
                match ep.transfer(now, first, &uri) {
                    Ok(note) => {
                        if let Some(t) = ep.transfers.as_deref_mut() {
                            t.report.target = target.to_string();
                            if let Some(a) = t.attended.as_deref_mut() {
                                a.step = Step::Referred;
                            }
                        }
                        ep.trace.push(TraceEntry::note(
                            format!("attended transfer: {note} (RFC 3891 §7)"),
                            at,
                        ));
                    }
                    Err(note) => {
                        let w = format!("attended {note}: given up, the first call resumed");
                        self.fail_attended(idx, now, w);
                    }
                }
            }
            Step::Transferred => {
                if let Some(c) = consult {
                    ep.ua.hangup(now, c);
                    ep.trace.push(TraceEntry::note(
                        format!(
                            "the target did not end the consultation call {:.0} s after the \
                             transfer: our BYE",
                            CONSULT_BYE_WAIT.as_secs_f64()
                        ),
                        at,
                    ));
                }
            }
            _ => {}
        }
    }

    /// Places the consultation call of endpoint `idx` (its media bound beside the first
    /// call's), unless the first call is no longer up.
    fn place_consult(&mut self, idx: usize, now: Instant) {
        let at = now - self.start;
        let with_media = self.plan.groups[self.endpoints[idx].group].media.is_some();
        let ep = &mut self.endpoints[idx];
        let Some(a) = ep.attended() else {
            return;
        };
        let first = a.first;
        if ep.ua.call_state(first) != Some(CallState::Confirmed) {
            if let Some(a) = ep.attended() {
                a.step = Step::GivenUp;
            }
            ep.settle_attended();
            return;
        }
        // The first call's media stays the endpoint's; the consultation's is bound in its
        // place, then set aside.
        let first_media = ep.media.take();
        let bound = if with_media {
            self.bind_media(idx)
        } else {
            Some(())
        };
        let ep = &mut self.endpoints[idx];
        let consult_media = std::mem::replace(&mut ep.media, first_media);
        // ICE with STUN/TURN servers: the INVITE waits for the candidates, the shard does
        // not (see `Shard::gather_first`).
        if let Some(t) = consult_media
            .as_deref()
            .filter(|m| m.gathering())
            .map(|m| m.gathering_timeout().unwrap_or(now))
            && let Some(a) = ep.attended()
        {
            a.step = Step::Gathering;
            a.due = Some(t);
            a.media = consult_media;
            ep.trace.push(TraceEntry::note(
                format!(
                    "ICE gathering started: the consultation INVITE waits for the STUN/TURN \
                     servers (at most {:?})",
                    crate::gather::GATHER_LIMIT
                ),
                at,
            ));
            self.gather_until = self
                .gather_until
                .max(Some(now + crate::gather::GATHER_LIMIT));
            return;
        }
        if bound.is_none() {
            // No RTP ports (OSERROR, said by `bind_media`).
            self.fail_attended(
                idx,
                now,
                "the attended transfer's consultation call could not be placed: no RTP ports; \
                 the first call resumed"
                    .to_owned(),
            );
            return;
        }
        self.invite_consult(idx, now, consult_media);
    }

    /// The consultation call's gathering is due (a retransmission, the limit, or the
    /// servers answered): once it is over, its INVITE goes with the candidates found —
    /// unless the first call ended or the run stops meanwhile.
    fn consult_gathered(&mut self, idx: usize, now: Instant) {
        let at = now - self.start;
        let stopping = self.stopping;
        let ep = &mut self.endpoints[idx];
        let Some(a) = ep
            .transfers
            .as_deref_mut()
            .and_then(|t| t.attended.as_deref_mut())
        else {
            return;
        };
        let first = a.first;
        let Some(m) = a.media.as_deref_mut() else {
            return;
        };
        if m.drive_gathering(now, &self.media).is_none() {
            a.due = Some(m.gathering_timeout().unwrap_or(now));
            return;
        }
        let notes = m.take_ice_notes();
        let consult_media = a.media.take();
        for n in notes {
            ep.trace.push(TraceEntry::note(n, at));
        }
        if stopping || ep.ua.call_state(first) != Some(CallState::Confirmed) {
            // Its media was never used: dropped, not measured (no call was made).
            drop(consult_media);
            if let Some(a) = ep.attended() {
                a.step = Step::GivenUp;
            }
            ep.settle_attended();
            return;
        }
        self.invite_consult(idx, now, consult_media);
    }

    /// Sends the consultation call's INVITE, its media (if any) bound and gathered.
    fn invite_consult(&mut self, idx: usize, now: Instant, consult_media: Option<Box<CallMedia>>) {
        let at = now - self.start;
        let with_media = self.plan.groups[self.endpoints[idx].group].media.is_some();
        let ip = self.local(idx).ip();
        let ep = &mut self.endpoints[idx];
        let Some(target) = ep.attended().map(|a| a.target.clone()) else {
            return;
        };
        let offer = match consult_media.as_deref() {
            Some(m) => m.offer(),
            None if !with_media => sdp_offer(ip, 0, u64::from(ep.id)),
            None => return,
        };
        // A caller with `offer = "late"` consults as it calls: no SDP in the INVITE, the
        // target's offer (in its 2xx) answered in the ACK (`CallEvent::Offered` below).
        let late = matches!(
            &self.plan.groups[ep.group].role,
            Role::Call {
                offer: OfferTiming::Late,
                ..
            }
        );
        let call = ep.ua.call(now, target.clone(), (!late).then_some(offer));
        // Routed to the endpoint by its Call-ID, but not as the endpoint's call (that route
        // is the first call's, which goes on).
        let cid = ep.ua.sip_call_id(call).map(str::to_owned);
        if let Some(c) = &cid {
            self.by_call_id.insert(c.clone(), idx);
        }
        let ep = &mut self.endpoints[idx];
        if let Some(a) = ep.attended() {
            a.step = Step::Ringing;
            a.call = Some(call);
            a.cid = cid;
            a.placed = Some(now);
            a.media = consult_media;
        }
        ep.trace.push(TraceEntry::note(
            format!("attended transfer: the first call held; consultation call to {target}"),
            at,
        ));
    }

    /// Gives endpoint `idx`'s attended transfer up for `why`: counted failed, the endpoint
    /// COMPLETED_WITH_WARNINGS (not a failed call), the first call resumed.
    fn fail_attended(&mut self, idx: usize, now: Instant, why: String) {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        if let Some(t) = ep.transfers.as_deref_mut() {
            t.report.failed += 1;
        }
        ep.trace.push(TraceEntry::note(why.clone(), at));
        ep.worsen(Outcome::CompletedWithWarnings, why);
        ep.give_up_attended(now, at);
    }

    /// The consultation call `call` of endpoint `idx` has ended: forgotten, its media's
    /// figures folded into the endpoint's report, its route retired.
    fn consult_over(&mut self, idx: usize, now: Instant, call: CallId) {
        let ep = &mut self.endpoints[idx];
        ep.ua.forget_call(call);
        let Some(a) = ep.attended() else {
            return;
        };
        a.call = None;
        let cid = a.cid.take();
        if let Some(m) = a.media.take() {
            let first = ep.media.replace(m);
            self.end_media(idx, now);
            self.endpoints[idx].media = first;
        }
        if let Some(cid) = cid {
            self.by_call_id
                .retire(cid, now, self.plan.timers.t1.saturating_mul(64));
        }
    }

    /// After the consultation call's end: the attended transfer dropped when it is over, and
    /// the endpoint's next call (or leave) when the first call has ended too.
    fn after_consult(&mut self, idx: usize, now: Instant) {
        let ep = &mut self.endpoints[idx];
        let waiting = match ep.attended() {
            Some(a) if a.after_call => {
                a.after_call = false;
                if a.step != Step::Transferred {
                    a.step = Step::GivenUp;
                }
                true
            }
            _ => false,
        };
        ep.settle_attended();
        if waiting {
            self.after_call(idx, now);
        }
    }

    /// The first call of endpoint `idx` ended (`after_call`): while its consultation call is
    /// up, the endpoint's next call waits for its end (and hangs it up unless the transfer
    /// succeeded, when the target ends it). True when `after_call` is to wait.
    pub(in crate::engine) fn attended_holds_after_call(
        &mut self,
        idx: usize,
        now: Instant,
    ) -> bool {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let Some(a) = ep.attended() else {
            return false;
        };
        let Some(consult) = a.call else {
            a.step = Step::GivenUp;
            a.due = None;
            ep.settle_attended();
            return false;
        };
        a.after_call = true;
        if a.step != Step::Transferred {
            a.step = Step::GivenUp;
            a.due = None;
            ep.ua.hangup(now, consult);
            ep.trace.push(TraceEntry::note(
                "the first call ended: the consultation call is hung up".into(),
                at,
            ));
        }
        ep.script = Script::Idle;
        ep.script_at = None;
        true
    }
}
