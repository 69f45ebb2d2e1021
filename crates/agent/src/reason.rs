//! Why the far end ended or refused a call, as it said in `Reason` headers (RFC 3326).
//!
//! PBXs, SBCs and trunks put the cause of a hang-up or a refusal in a `Reason` header — on
//! a BYE or CANCEL (RFC 3326 §2), and in practice on error responses too (Asterisk and
//! FreeSWITCH add `Reason: Q.850;cause=17;text="User busy"` to a 486): the ISDN/SS7 cause
//! of ITU-T Q.850 when the call crossed the PSTN or the PBX's own logic, or a SIP status.
//! An endpoint keeps each distinct one it received with how often it came
//! ([`PeerReasons`]); the run's summary counts them over the endpoints.

use serde::Serialize;
use sip_msg::typed::Reason;
use sip_msg::{Message, Method};

/// Distinct reasons an endpoint keeps (by what carried them, protocol and cause); more are
/// counted in the last one's kind only if it is the same.
const KEPT: usize = 16;

/// One kind of `Reason` an endpoint received, and how often.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerReason {
    /// What carried it: `BYE`, `CANCEL`, or a response to our INVITE (`486`).
    pub on: String,
    /// `Q.850`, `SIP`, or another protocol token as sent.
    pub protocol: String,
    /// The `cause` parameter, if any and numeric.
    pub cause: Option<u16>,
    /// The `text` parameter (unquoted) of the first one received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The Q.850 cause's name (ITU-T Q.850 Table 1) for `Q.850` reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
    /// How many times it came.
    pub count: u32,
    /// When it first came, seconds since the run's start.
    pub first_s: f64,
}

impl PeerReason {
    /// `Q.850 17 (user busy)`, `SIP 200`, `Q.850 (no cause)`.
    pub fn label(&self) -> String {
        let mut s = self.protocol.clone();
        match self.cause {
            Some(c) => s.push_str(&format!(" {c}")),
            None => s.push_str(" (no cause)"),
        }
        if let Some(n) = self.name {
            s.push_str(&format!(" ({n})"));
        } else if let Some(t) = &self.text {
            s.push_str(&format!(" \"{t}\""));
        }
        s
    }
}

/// The reasons an endpoint received (absent when none: no allocation).
#[derive(Debug, Default)]
pub struct PeerReasons(Vec<PeerReason>);

impl PeerReasons {
    /// Notes the `Reason` values of `msg` if it is one that ends or refuses a call: a BYE
    /// or CANCEL, or a final error response to an INVITE. Returns the labels of those read
    /// (for the failure's words) and, for values that could not be read, why.
    pub fn note(&mut self, msg: &Message, at_s: f64) -> Noted {
        let mut noted = Noted::default();
        let on = match (msg.method(), msg.status()) {
            (Some(m @ (Method::Bye | Method::Cancel)), None) => m.as_str().to_owned(),
            (_, Some(code))
                if code >= 300 && msg.cseq().is_some_and(|c| c.method == Method::Invite) =>
            {
                code.to_string()
            }
            _ => return noted,
        };
        for r in msg.headers.typed_all::<Reason>() {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    noted
                        .unreadable
                        .push(format!("unreadable Reason header on {on}: {e}"));
                    continue;
                }
            };
            let (cause, text) = (r.cause(), r.text());
            let name = (r.protocol.eq_ignore_ascii_case("Q.850"))
                .then(|| cause.and_then(q850_name))
                .flatten();
            let kind = |p: &PeerReason| {
                p.on == on && p.protocol.eq_ignore_ascii_case(&r.protocol) && p.cause == cause
            };
            let label = if let Some(p) = self.0.iter_mut().find(|p| kind(p)) {
                p.count += 1;
                p.label()
            } else if self.0.len() < KEPT {
                let p = PeerReason {
                    on: on.clone(),
                    protocol: r.protocol,
                    cause,
                    text,
                    name,
                    count: 1,
                    first_s: at_s,
                };
                let label = p.label();
                self.0.push(p);
                label
            } else {
                continue;
            };
            noted.labels.push(label);
        }
        noted
    }

    /// What the endpoint received, for its report.
    pub fn into_vec(self) -> Vec<PeerReason> {
        self.0
    }
}

/// What [`PeerReasons::note`] read from one message.
#[derive(Debug, Default)]
pub struct Noted {
    /// The labels of the reasons read ([`PeerReason::label`]).
    pub labels: Vec<String>,
    /// A note per value that could not be read.
    pub unreadable: Vec<String>,
}

/// One kind of reason over a run's endpoints (the summary's `peer_reasons`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCount {
    /// See [`PeerReason::protocol`].
    pub protocol: String,
    /// See [`PeerReason::cause`].
    pub cause: Option<u16>,
    /// See [`PeerReason::name`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
    /// Times received, over every endpoint and whatever carried it.
    pub count: u32,
    /// Endpoints that received it.
    pub endpoints: u32,
}

impl ReasonCount {
    /// As [`PeerReason::label`], without the text.
    pub fn label(&self) -> String {
        let mut s = self.protocol.clone();
        if let Some(c) = self.cause {
            s.push_str(&format!(" {c}"));
        }
        if let Some(n) = self.name {
            s.push_str(&format!(" ({n})"));
        }
        s
    }
}

/// The reasons of `each` endpoint counted by protocol and cause, most frequent first.
pub fn count<'a>(each: impl Iterator<Item = &'a [PeerReason]>) -> Vec<ReasonCount> {
    let mut out: Vec<ReasonCount> = Vec::new();
    for reasons in each {
        let mut seen: Vec<usize> = Vec::new();
        for r in reasons {
            let i = match out
                .iter()
                .position(|c| c.protocol.eq_ignore_ascii_case(&r.protocol) && c.cause == r.cause)
            {
                Some(i) => i,
                None => {
                    out.push(ReasonCount {
                        protocol: r.protocol.clone(),
                        cause: r.cause,
                        name: r.name,
                        count: 0,
                        endpoints: 0,
                    });
                    out.len() - 1
                }
            };
            out[i].count += r.count;
            if !seen.contains(&i) {
                seen.push(i);
                out[i].endpoints += 1;
            }
        }
    }
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.cause.cmp(&b.cause)));
    out
}

/// The name of Q.850 cause `cause` (ITU-T Q.850 (05/1998) Table 1), lower case.
pub fn q850_name(cause: u16) -> Option<&'static str> {
    Some(match cause {
        1 => "unallocated (unassigned) number",
        2 => "no route to specified transit network",
        3 => "no route to destination",
        6 => "channel unacceptable",
        7 => "call awarded and being delivered in an established channel",
        8 => "preemption",
        16 => "normal call clearing",
        17 => "user busy",
        18 => "no user responding",
        19 => "no answer from user (user alerted)",
        20 => "subscriber absent",
        21 => "call rejected",
        22 => "number changed",
        23 => "redirection to new destination",
        25 => "exchange routing error",
        26 => "non-selected user clearing",
        27 => "destination out of order",
        28 => "invalid number format (address incomplete)",
        29 => "facility rejected",
        30 => "response to STATUS ENQUIRY",
        31 => "normal, unspecified",
        34 => "no circuit/channel available",
        38 => "network out of order",
        41 => "temporary failure",
        42 => "switching equipment congestion",
        43 => "access information discarded",
        44 => "requested circuit/channel not available",
        47 => "resource unavailable, unspecified",
        49 => "quality of service not available",
        50 => "requested facility not subscribed",
        55 => "incoming calls barred within the CUG",
        57 => "bearer capability not authorized",
        58 => "bearer capability not presently available",
        63 => "service or option not available, unspecified",
        65 => "bearer capability not implemented",
        66 => "channel type not implemented",
        69 => "requested facility not implemented",
        70 => "only restricted digital information bearer capability is available",
        79 => "service or option not implemented, unspecified",
        81 => "invalid call reference value",
        82 => "identified channel does not exist",
        83 => "a suspended call exists, but this call identity does not",
        84 => "call identity in use",
        85 => "no call suspended",
        86 => "call having the requested call identity has been cleared",
        87 => "user not member of CUG",
        88 => "incompatible destination",
        91 => "invalid transit network selection",
        95 => "invalid message, unspecified",
        96 => "mandatory information element is missing",
        97 => "message type non-existent or not implemented",
        98 => {
            "message not compatible with call state or message type non-existent or not implemented"
        }
        99 => "information element / parameter non-existent or not implemented",
        100 => "invalid information element contents",
        101 => "message not compatible with call state",
        102 => "recovery on timer expiry",
        103 => "parameter non-existent or not implemented, passed on",
        110 => "message with unrecognized parameter, discarded",
        111 => "protocol error, unspecified",
        127 => "interworking, unspecified",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Message {
        Message::parse(text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    const BYE: &str = "BYE sip:a@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\nFrom: <sip:b@x>;tag=1\nTo: <sip:a@x>;tag=2\nCall-ID: c1\nCSeq: 2 BYE\nReason: Q.850;cause=16;text=\"Normal Clearing\", SIP;cause=200\nContent-Length: 0\n\n";

    fn busy(reason: &str) -> Message {
        msg(&format!(
            "SIP/2.0 486 Busy Here\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>;tag=2\nCall-ID: c2\nCSeq: 1 INVITE\n{reason}Content-Length: 0\n\n"
        ))
    }

    /// A BYE's two reasons (a list on one line) and a 486's are kept by what carried them,
    /// Q.850 causes named; the same kind again is counted, not kept twice.
    #[test]
    fn reasons_are_kept_by_kind_and_counted() {
        let mut r = PeerReasons::default();
        let n = r.note(&msg(BYE), 1.5);
        assert_eq!(n.labels, ["Q.850 16 (normal call clearing)", "SIP 200"]);
        assert!(n.unreadable.is_empty());
        let n = r.note(&busy("Reason: Q.850 ;cause=17 ;text=\"User busy\"\n"), 2.0);
        assert_eq!(n.labels, ["Q.850 17 (user busy)"]);
        r.note(&busy("Reason: q.850;cause=17\n"), 3.0);
        let v = r.into_vec();
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(
            (v[0].on.as_str(), v[0].text.as_deref(), v[0].first_s),
            ("BYE", Some("Normal Clearing"), 1.5)
        );
        assert_eq!(
            (v[2].on.as_str(), v[2].cause, v[2].count),
            ("486", Some(17), 2)
        );
        assert_eq!(v[2].text.as_deref(), Some("User busy"));
    }

    /// Messages that end nothing are not read; a Reason that cannot be read is said, not
    /// kept, and the others of the message still are.
    #[test]
    fn only_ending_messages_count_and_bad_values_are_said() {
        let mut r = PeerReasons::default();
        let ringing = msg(
            "SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>;tag=2\nCall-ID: c2\nCSeq: 1 INVITE\nReason: Q.850;cause=16\nContent-Length: 0\n\n",
        );
        assert!(r.note(&ringing, 0.0).labels.is_empty());
        let bye_answer = msg(
            "SIP/2.0 481 No Call\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>;tag=2\nCall-ID: c2\nCSeq: 2 BYE\nReason: Q.850;cause=16\nContent-Length: 0\n\n",
        );
        assert!(r.note(&bye_answer, 0.0).labels.is_empty());
        let n = r.note(
            &busy("Reason: (bad);cause=1\nReason: Q.850;cause=999\n"),
            0.5,
        );
        assert_eq!(n.labels, ["Q.850 999"]);
        assert_eq!(n.unreadable.len(), 1, "{n:?}");
        assert!(
            n.unreadable[0].starts_with("unreadable Reason header on 486: "),
            "{n:?}"
        );
        assert_eq!(r.into_vec().len(), 1);
    }

    /// Over endpoints: counted by protocol and cause whatever carried them, most frequent
    /// first, with the endpoints that received each.
    #[test]
    fn the_run_counts_reasons_over_endpoints() {
        let mut a = PeerReasons::default();
        a.note(&msg(BYE), 1.0);
        a.note(&busy("Reason: Q.850;cause=16\n"), 2.0);
        let mut b = PeerReasons::default();
        b.note(&busy("Reason: Q.850;cause=16\n"), 2.0);
        let (a, b) = (a.into_vec(), b.into_vec());
        let c = count([a.as_slice(), b.as_slice()].into_iter());
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(
            (c[0].label(), c[0].count, c[0].endpoints),
            ("Q.850 16 (normal call clearing)".to_owned(), 3, 2)
        );
        assert_eq!(
            (c[1].label(), c[1].count, c[1].endpoints),
            ("SIP 200".to_owned(), 1, 1)
        );
    }
}
