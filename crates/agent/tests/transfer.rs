//! Call transfer end to end over loopback UDP, set up from a test file: our callers call our
//! callees through the built-in registrar and transfer them a second into the call
//! (`do = "transfer"`, REFER) to a third group; the callees follow the REFER (202, NOTIFYs,
//! an INVITE to the target through the proxy, challenged with 407 and sent again) and the
//! callers hang up once the final NOTIFY says 200. The protocol's edges are tested on the
//! virtual clock (`sip-proto`'s `tests/transfer.rs`) and against SIPp (`tests/sipp.rs`).
//!
//! Attended (`do = "attended_transfer"`): the callers hold their callees, call a target
//! (the consultation), then REFER the callees to it with `Replaces` naming the consultation
//! dialog (RFC 5589 §7, RFC 3891); the callees' INVITEs with Replaces take over the
//! targets' calls. And a consultation refused: the first call resumed.

use agent::engine::{Outcome, StopHandle};

const TEST: &str = r#"
name = "transfer"
duration = "2s"
seed = 11

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "udp"

[[group]]
name = "targets"
endpoints = 2
registrar = "builtin"
role = "answer"

[[group]]
name = "callees"
endpoints = 2
registrar = "builtin"
role = "answer"

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
actions = [{ at = "1s", do = "transfer", to = "group:targets" }]
"#;

#[test]
fn callers_transfer_their_callees_to_a_third_group_through_the_builtin_registrar() {
    let (summary, reports) = run("transfer.toml", TEST);
    assert_eq!(reports.len(), 6);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    for r in reports.iter().filter(|r| r.group == "callers") {
        let t = r.transfer.as_ref().expect("a transfer");
        assert_eq!((t.sent, t.accepted, t.succeeded), (1, 1, 1), "{t:?}");
        assert_eq!(
            (t.refer_code, t.final_code),
            (Some(202), Some(200)),
            "{t:?}"
        );
        assert!(t.target.starts_with("sip:targets"), "{t:?}");
        // Hung up at the final NOTIFY, not at the planned 2 s.
        let lasted = r.timings.call_duration_ms.unwrap();
        assert!(lasted < 1900.0, "{lasted} ms");
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        let t = r.transfer.as_ref().expect("a REFER followed");
        assert_eq!((t.followed, t.followed_answered), (1, 1), "{t:?}");
        // Our audio went on with the target: a second with the caller, two with the target.
        let m = r.media.as_ref().expect("media");
        assert!(m.rx_packets >= 120, "{m:?}");
    }
    for r in reports.iter().filter(|r| r.group == "targets") {
        assert_eq!(r.calls_received, 1, "{r:#?}");
    }
    assert_eq!(summary.transfers.succeeded, 2);
    assert_eq!(summary.transfers.followed_answered, 2);
}

/// Runs a test file through the built-in registrar, keeping every trace.
fn run(
    name: &str,
    text: &str,
) -> (
    agent::engine::RunSummary,
    Vec<agent::engine::EndpointReport>,
) {
    // The built-in registrar's credentials are issued for a day from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare(name, text, name.as_bytes(), now)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    agent::runner::execute(prepared, tx, StopHandle::default()).unwrap()
}

/// The messages of `r`'s trace in `direction` whose first line starts with `start`.
fn messages<'a>(
    r: &'a agent::engine::EndpointReport,
    direction: agent::trace::Direction,
    start: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    r.trace
        .iter()
        .filter(move |e| e.direction == direction && e.text.starts_with(start))
        .map(|e| e.text.as_str())
}

/// A header's value in a message's text (the first line that starts with `name:`).
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// [`TEST`] with an attended transfer (a second of consultation) and 4 s calls.
fn attended() -> String {
    TEST.replace("duration = \"2s\"", "duration = \"4s\"")
        .replace(
            "do = \"transfer\", to = \"group:targets\"",
            "do = \"attended_transfer\", to = \"group:targets\", consult = \"1s\"",
        )
}

#[test]
fn callers_consult_a_third_group_then_transfer_their_callees_to_it_with_replaces() {
    use agent::trace::Direction::{Received, Sent};
    let (summary, reports) = run("attended.toml", &attended());
    assert_eq!(reports.len(), 6);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    for r in reports.iter().filter(|r| r.group == "callers") {
        let t = r.transfer.as_ref().expect("a transfer");
        assert_eq!((t.attended, t.consult_answered), (1, 1), "{t:?}");
        assert_eq!(
            (t.sent, t.accepted, t.succeeded, t.failed, t.unknown),
            (1, 1, 1, 0, 0),
            "{t:?}"
        );
        assert_eq!(
            (t.refer_code, t.final_code, t.consult_code),
            (Some(202), Some(200), Some(200)),
            "{t:?}"
        );
        assert!(t.attended_ms.is_some_and(|ms| ms > 1000.0), "{t:?}");
        // The first call on hold (sendonly), the consultation call to a target.
        let invites: Vec<_> = messages(r, Sent, "INVITE ").collect();
        let first = header(invites[0], "Call-ID");
        assert!(
            invites
                .iter()
                .any(|m| header(m, "Call-ID") == first && m.contains("a=sendonly")),
            "no hold re-INVITE"
        );
        let consult = invites
            .iter()
            .find(|m| header(m, "Call-ID") != first)
            .expect("a consultation INVITE");
        assert!(consult.starts_with("INVITE sip:targets"), "{consult}");
        let consult_cid = header(consult, "Call-ID");
        let our_tag = header(consult, "From").split(";tag=").nth(1).unwrap();
        // RFC 3891 §7: the REFER on the first call names the consultation dialog as the
        // target sees it (to-tag: the target's, from-tag: ours), escaped in the URI.
        let refer = messages(r, Sent, "REFER ").next().expect("a REFER");
        assert_eq!(header(refer, "Call-ID"), first);
        let refer_to = header(refer, "Refer-To");
        let escaped = consult_cid.replace('@', "%40");
        assert!(
            refer_to.starts_with("<sip:targets")
                && refer_to.contains(&format!("?Replaces={escaped}%3Bto-tag%3D"))
                && refer_to.ends_with(&format!("%3Bfrom-tag%3D{our_tag}>")),
            "{refer_to}"
        );
        assert!(header(refer, "Referred-By").contains("callers"), "{refer}");
        // BYEs on both dialogs: ours on the first call, the target's on the consultation.
        assert!(
            messages(r, Sent, "BYE ").any(|m| header(m, "Call-ID") == first),
            "no BYE of the first call"
        );
        assert!(
            messages(r, Received, "BYE ").any(|m| header(m, "Call-ID") == consult_cid),
            "no BYE of the consultation call from the target"
        );
        // Both calls' media are in the report.
        let m = r.media.as_ref().expect("media");
        assert_eq!(m.calls, 2, "{m:?}");
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        let t = r.transfer.as_ref().expect("a REFER followed");
        assert_eq!((t.followed, t.followed_answered), (1, 1), "{t:?}");
        let invite = messages(r, Sent, "INVITE ")
            .next()
            .expect("the INVITE to the target");
        assert!(header(invite, "Replaces").contains(";to-tag="), "{invite}");
        // Not the held call's direction: a new conversation with the target.
        assert!(!invite.contains("a=recvonly"), "{invite}");
    }
    for r in reports.iter().filter(|r| r.group == "targets") {
        assert_eq!(r.calls_received, 2, "{r:#?}");
        let t = r.transfer.as_ref().expect("a call replaced");
        assert_eq!(t.replaced, 1, "{t:?}");
        // The consultation's second of audio from the caller, then the callee's call
        // duration (4 s): the transferee's media flows to the target.
        let m = r.media.as_ref().expect("media");
        assert!(m.rx_packets >= 200, "{m:?}");
        assert_eq!(m.calls, 2, "{m:?}");
    }
    assert_eq!(summary.transfers.attended, 2);
    assert_eq!(summary.transfers.succeeded, 2);
    assert_eq!(summary.transfers.followed_answered, 2);
    assert_eq!(summary.transfers.replaced, 2);
}

#[test]
fn a_consultation_call_refused_resumes_the_first_call() {
    use agent::trace::Direction::Sent;
    let text = attended()
        .replace("group:targets", "sip:nobody{n}@sipmeter.builtin")
        .replace("\"4s\"", "\"3s\"");
    let (summary, reports) = run("attended-refused.toml", &text);
    assert_eq!(reports.len(), 6);
    for r in reports.iter().filter(|r| r.group == "callers") {
        let t = r.transfer.as_ref().expect("a transfer");
        assert_eq!(
            (t.attended, t.consult_answered, t.failed, t.sent),
            (1, 0, 1, 0),
            "{t:?}"
        );
        assert!(matches!(t.consult_code, Some(404 | 480)), "{t:?}");
        // A failed transfer, not a failed call: the call went on to its planned end.
        assert_eq!(r.outcome, Outcome::CompletedWithWarnings, "{r:#?}");
        assert!(
            r.error.as_deref().unwrap().contains("consultation"),
            "{r:?}"
        );
        assert_eq!((r.calls_attempted, r.calls_answered), (1, 1));
        let lasted = r.timings.call_duration_ms.unwrap();
        assert!(lasted >= 2900.0, "{lasted} ms");
        // Held, then resumed: the first call's INVITEs' directions.
        let first = header(messages(r, Sent, "INVITE ").next().unwrap(), "Call-ID");
        let mut held: Vec<_> = messages(r, Sent, "INVITE ")
            .filter(|m| header(m, "Call-ID") == first)
            .map(|m| m.contains("a=sendonly"))
            .collect();
        held.dedup(); // the first INVITE, challenged, went twice
        assert_eq!(held, [false, true, false]);
        assert!(messages(r, Sent, "REFER ").next().is_none());
    }
    for r in reports.iter().filter(|r| r.group != "callers") {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    // The callees heard the caller again after the resume: no gap was reported, and they
    // received audio for the whole call.
    for r in reports.iter().filter(|r| r.group == "callees") {
        let m = r.media.as_ref().expect("media");
        assert!(m.rx_packets >= 120, "{m:?}");
    }
    assert_eq!(summary.transfers.attended, 2);
    assert_eq!(summary.transfers.failed, 2);
}

/// A caller with `offer = "late"` places its consultation call as it places its calls: an
/// INVITE without SDP, the target's offer in its 200 answered in the ACK, and the
/// consultation's audio flows both ways.
#[test]
fn a_late_offer_callers_consultation_call_offers_in_the_ack() {
    use agent::trace::Direction::{Received, Sent};
    let text = attended().replace(
        "call = \"group:callees\"",
        "call = \"group:callees\"\noffer = \"late\"",
    );
    let (summary, reports) = run("attended-late.toml", &text);
    assert_eq!(reports.len(), 6);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    for r in reports.iter().filter(|r| r.group == "callers") {
        let t = r.transfer.as_ref().expect("a transfer");
        assert_eq!(
            (t.attended, t.consult_answered, t.succeeded),
            (1, 1, 1),
            "{t:?}"
        );
        let first = header(messages(r, Sent, "INVITE ").next().unwrap(), "Call-ID");
        let consult: Vec<_> = messages(r, Sent, "INVITE ")
            .filter(|m| header(m, "Call-ID") != first)
            .collect();
        assert!(!consult.is_empty(), "no consultation INVITE");
        for m in &consult {
            assert!(!m.contains("\r\n\r\nv=0"), "an offer in the INVITE: {m}");
        }
        let cid = header(consult[0], "Call-ID");
        // The target offered in its 200; our answer went in the ACK.
        assert!(
            messages(r, Received, "SIP/2.0 200")
                .any(|m| header(m, "Call-ID") == cid && m.contains("\r\n\r\nv=0")),
            "no offer in the target's 200"
        );
        assert!(
            messages(r, Sent, "ACK ")
                .any(|m| header(m, "Call-ID") == cid && m.contains("\r\n\r\nv=0")),
            "no answer in the consultation's ACK"
        );
        let m = r.media.as_ref().expect("media");
        assert_eq!(m.calls, 2, "{m:?}");
    }
    for r in reports.iter().filter(|r| r.group == "targets") {
        // The consultation's second of audio from the caller, then the transferee's.
        let m = r.media.as_ref().expect("media");
        assert!(m.rx_packets >= 200, "{m:?}");
        assert_eq!(m.calls, 2, "{m:?}");
    }
    assert_eq!(summary.transfers.succeeded, 2);
}

/// ICE with a STUN and a TURN server (coturn) on the callers and the targets: the
/// consultation call gathers like any call — its INVITE waits for its own allocation, the
/// shard does not — and offers the relayed candidate; the transfer succeeds as without.
#[test]
fn a_consultation_call_gathers_its_ice_candidates_before_its_invite() {
    use agent::trace::Direction::{Note, Sent};
    if !testpeers::available("turnserver", "coturn") {
        return;
    }
    let server = testpeers::Coturn::start(&testpeers::CoturnConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let ice = format!(
        "ice = true\nrtcp_mux = true\nstun_server = \"{0}\"\nturn_server = \"{0}\"\n\
         turn_user = \"u\"\nturn_password = \"p\"\n",
        server.addr()
    );
    let text = attended()
        .replace(
            "name = \"targets\"\n",
            &format!("name = \"targets\"\n{ice}"),
        )
        .replace(
            "name = \"callers\"\n",
            &format!("name = \"callers\"\n{ice}"),
        );
    let (summary, reports) = run("attended-ice.toml", &text);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    assert_eq!(summary.transfers.succeeded, 2);
    for r in reports.iter().filter(|r| r.group == "callers") {
        let notes: Vec<_> = r
            .trace
            .iter()
            .filter(|e| e.direction == Note)
            .map(|e| e.text.as_str())
            .collect();
        let waits = notes
            .iter()
            .position(|n| n.starts_with("ICE gathering started: the consultation INVITE waits"))
            .unwrap_or_else(|| panic!("{notes:?}"));
        // The first call's gathering and the consultation's, each with its allocation.
        let took: Vec<_> = notes
            .iter()
            .filter(|n| n.starts_with("ICE gathering took ") && n.contains("TURN "))
            .collect();
        assert_eq!(took.len(), 2, "{notes:?}");
        assert!(
            notes[waits..]
                .iter()
                .any(|n| n.starts_with("ICE gathering took ")),
            "{notes:?}"
        );
        let invites: Vec<_> = messages(r, Sent, "INVITE ").collect();
        let first = header(invites[0], "Call-ID");
        let consult = invites
            .iter()
            .find(|m| header(m, "Call-ID") != first)
            .expect("a consultation INVITE");
        assert!(consult.contains(" typ relay "), "{consult}");
        let ice = r.media.as_ref().and_then(|m| m.ice.as_ref()).expect("ice");
        assert_eq!((ice.gathered, ice.turn_failures), (2, 0), "{ice:?}");
    }
    // The targets' answer to the transferees' INVITE with Replaces waited for its own
    // gathering too (the consultation call went on meanwhile), then took the call over.
    for r in reports.iter().filter(|r| r.group == "targets") {
        let notes: Vec<_> = r
            .trace
            .iter()
            .filter(|e| e.direction == Note)
            .map(|e| e.text.as_str())
            .collect();
        let waits = notes
            .iter()
            .position(|n| {
                n.starts_with("ICE gathering started: the answer to the INVITE with Replaces")
            })
            .unwrap_or_else(|| panic!("{notes:?}"));
        let replaced = notes
            .iter()
            .position(|n| n.starts_with("our call is replaced by the call"))
            .unwrap_or_else(|| panic!("{notes:?}"));
        assert!(
            notes[waits..replaced]
                .iter()
                .any(|n| n.starts_with("ICE gathering took ")),
            "{notes:?}"
        );
        let t = r.transfer.as_ref().expect("a call replaced");
        assert_eq!(t.replaced, 1, "{t:?}");
    }
}
