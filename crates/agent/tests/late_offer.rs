//! Late (delayed) offer callers, end to end over loopback sockets through the built-in
//! registrar: `offer = "late"` sends INVITEs without SDP; the callee offers in its 2xx (our own
//! answering endpoints, with and without 100rel, and the registrar's `echo`), our caller
//! answers in the ACK (RFC 3261 §13.2.2.4, RFC 3264 §4), and media flows both ways and is
//! measured. Nothing in common: the ACK rejects the offered stream (port 0), then BYE.

use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use agent::engine::{EndpointReport, OfferTiming, Outcome, RunSummary, StopHandle};
use agent::trace::Direction;

fn execute(text: &str) -> (RunSummary, Vec<EndpointReport>) {
    execute_traced(text, false)
}

/// As [`execute`]; `all_traces`: every endpoint's SIP trace is kept (`--all-traces`).
fn execute_traced(text: &str, all_traces: bool) -> (RunSummary, Vec<EndpointReport>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare("late.toml", text, b"late secret", now)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = all_traces;
    let (tx, _rx) = mpsc::channel();
    agent::runner::execute(prepared, tx, StopHandle::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The messages endpoint `r` sent whose first line starts with `method`.
fn sent<'a>(r: &'a EndpointReport, method: &str) -> Vec<&'a str> {
    r.trace
        .iter()
        .filter(|t| t.direction == Direction::Sent && t.text.starts_with(method))
        .map(|t| t.text.as_str())
        .collect()
}

/// The body of a SIP message's text.
fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn late_offer_callers_get_media_from_our_callees_and_the_echo() {
    let text = r#"name = "late offer"
duration = "3s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "callees"
endpoints = 2
registrar = "builtin"
role = "answer"
answer_delay = "100ms"
codecs = ["PCMA", "PCMU"]

[[group]]
name = "callees100rel"
endpoints = 2
registrar = "builtin"
role = "answer"
answer_delay = "100ms"
prack = true

[[group]]
name = "late"
endpoints = 2
registrar = "builtin"
call = "group:callees"
offer = "late"
codecs = ["PCMU", "PCMA"]

[[group]]
name = "late100rel"
endpoints = 2
registrar = "builtin"
call = "group:callees100rel"
offer = "late"
prack = true

[[group]]
name = "lateecho"
endpoints = 2
registrar = "builtin"
call = "builtin:echo"
offer = "late"
"#;
    let (summary, reports) = execute(text);
    assert_eq!(summary.calls_answered, 6, "{summary:?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let caller = r.group.starts_with("late");
        assert_eq!(
            r.offer,
            caller.then_some(OfferTiming::Late),
            "{}: the report names the caller's offer",
            r.user
        );
        let m = r.media.as_ref().expect("media measured");
        // Our callees offer PCMA first: the late caller's answer takes the offerer's order
        // (RFC 3264 §6.1) among its own codecs.
        if r.group == "late" || r.group == "callees" {
            assert_eq!(m.codec, Some("PCMA"), "{}: {m:?}", r.user);
        }
        // 3 s of 20 ms packets came in (≈150), none lost, and the MOS is computed from them.
        eprintln!(
            "{} {:?}: rx {} lost {} mos {:?}",
            r.user, m.codec, m.rx_packets, m.rx_lost, m.mos
        );
        assert!(m.rx_packets >= 100, "{}: {m:?}", r.user);
        assert_eq!(m.rx_lost, 0, "{}: {m:?}", r.user);
        if summary.late_timers == 0 {
            assert!(m.mos.is_some_and(|mos| mos >= 4.3), "{}: {m:?}", r.user);
        } else {
            assert!(m.mos.is_some_and(|mos| mos > 1.0), "{}: {m:?}", r.user);
        }
    }
}

/// The callee offers only G.722, the late caller accepts only PCMU: the 2xx is ACKed with an
/// answer rejecting the stream (RFC 3264 §6: port 0), then BYE; the caller ends
/// NEGOTIATION_FAILED with both codec lists. Its INVITE carried no SDP.
#[test]
fn nothing_in_common_rejects_the_stream_in_the_ack_then_byes() {
    let text = r#"name = "late offer, nothing in common"
duration = "2s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "callees"
endpoints = 1
registrar = "builtin"
role = "answer"
codecs = ["G722"]

[[group]]
name = "late"
endpoints = 1
registrar = "builtin"
call = "group:callees"
offer = "late"
codecs = ["PCMU"]
"#;
    let (_, reports) = execute(text);
    let r = reports.iter().find(|r| r.group == "late").unwrap();
    assert_eq!(r.outcome, Outcome::NegotiationFailed, "{r:#?}");
    let error = r.error.as_deref().unwrap_or("");
    assert!(error.contains("G722") && error.contains("PCMU"), "{error}");
    let invite = sent(r, "INVITE ");
    assert!(
        !invite.is_empty() && invite.iter().all(|i| body(i).is_empty()),
        "{invite:?}"
    );
    // The ACK of the 2xx (the other ACKs a 407 challenge to the INVITE, without body).
    let ack: Vec<&str> = sent(r, "ACK ")
        .into_iter()
        .filter(|a| !body(a).is_empty())
        .collect();
    assert_eq!(ack.len(), 1, "{ack:?}");
    assert!(body(ack[0]).contains("m=audio 0 RTP/AVP 9"), "{}", ack[0]);
    assert_eq!(sent(r, "BYE ").len(), 1);
}

/// DTLS-SRTP with a late offer: the callee offers `UDP/TLS/RTP/SAVP` with `a=setup:actpass`
/// in its 2xx, our caller answers `a=setup:active` in the ACK (RFC 5763 §5: the answerer is
/// the DTLS client) and starts the handshake; both calls keyed, media both ways, no failure.
#[test]
fn a_late_offer_call_keys_srtp_with_dtls() {
    let text = r#"name = "late dtls"
duration = "3s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "callees"
endpoints = 1
registrar = "builtin"
role = "answer"
answer_delay = "50ms"
srtp = "dtls"

[[group]]
name = "late"
endpoints = 1
registrar = "builtin"
call = "group:callees"
offer = "late"
srtp = "dtls"
"#;
    let (summary, reports) = execute_traced(text, true);
    assert_eq!(summary.calls_answered, 1, "{summary:?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().expect("media measured");
        assert_eq!((m.dtls_failures, m.srtp_auth_failures), (0, 0), "{m:?}");
        assert_eq!(m.srtp, Some("AEAD_AES_256_GCM"), "{m:?}");
        assert!(m.dtls_handshake_ms.is_some(), "{m:?}");
        assert!(m.rx_packets >= 100, "{}: {m:?}", r.user);
    }
    let callee = reports.iter().find(|r| r.group == "callees").unwrap();
    let ok = sent(callee, "SIP/2.0 200");
    let offer = body(ok.iter().find(|t| t.contains("INVITE")).unwrap());
    assert!(
        offer.contains(" UDP/TLS/RTP/SAVP ") && offer.contains("a=setup:actpass"),
        "{offer}"
    );
    let caller = reports.iter().find(|r| r.group == "late").unwrap();
    // The ACK of the 2xx (an ACK of a 407 before it has no body).
    let acks = sent(caller, "ACK");
    let answer = acks
        .iter()
        .map(|t| body(t))
        .find(|b| !b.is_empty())
        .unwrap_or_default();
    assert!(
        answer.contains(" UDP/TLS/RTP/SAVP ") && answer.contains("a=setup:active"),
        "{answer}"
    );
}
