//! The `transfer` scenario action (RFC 3515 REFER, a blind transfer as RFC 5589 §6 draws
//! it): what an endpoint records of its transfers, what it reports, and the outcome each one
//! gives. The protocol is the user agent's ([`sip_proto::ua::UserAgent::refer`]); a child of
//! `engine` so the shard's hooks stay one line each.

use std::time::{Duration, Instant};

use serde::Serialize;
use sip_msg::Uri;
use sip_proto::ua::{CallEvent, CallId, reason_phrase};

use super::{Endpoint, Outcome, ms};
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
}

impl TransferCounts {
    /// Adds one endpoint's counts.
    pub fn add(&mut self, r: &TransferReport) {
        self.sent += r.sent;
        self.accepted += r.accepted;
        self.succeeded += r.succeeded;
        self.failed += r.failed;
        self.unknown += r.unknown;
    }
}

/// What an endpoint keeps of its transfers while it runs (boxed: most endpoints never
/// transfer).
#[derive(Debug, Default)]
pub(super) struct Transfers {
    pub(super) report: TransferReport,
    /// When the transfer going on was sent; `None` once its outcome is known.
    pending: Option<Instant>,
}

impl Endpoint {
    /// Sends REFER to `target` in `call` (the `transfer` action); the trace note.
    pub(super) fn transfer(&mut self, now: Instant, call: CallId, target: &Uri) -> String {
        if !self.ua.refer(now, call, target) {
            // A transfer still going on (one at a time), or a call not confirmed.
            return format!("transfer to {target} not sent: the previous one is still going on");
        }
        let t = self.transfers.get_or_insert_with(Box::default);
        t.report.target = target.to_string();
        t.report.sent += 1;
        t.report.refer_code = None;
        t.report.final_code = None;
        t.report.time_to_final_ms = None;
        t.pending = Some(now);
        format!("transfer (REFER to {target})")
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
        true
    }

    /// The call ended: a transfer still going on will not be known.
    pub(super) fn transfer_call_ended(&mut self, at: Duration) {
        if let Some(t) = self.transfers.as_deref_mut()
            && t.pending.take().is_some()
        {
            t.report.unknown += 1;
            let w = "the call ended before the transfer's outcome was known".to_owned();
            self.trace.push(TraceEntry::note(w.clone(), at));
            self.worsen(Outcome::CompletedWithWarnings, w);
        }
    }
}
