//! Review 10: RFC conformance of the dialog layer and the in-dialog extensions (RFC 3261
//! §12, §14, §15; RFC 3262; RFC 3311; RFC 5057). Alice and Bob on a virtual clock through
//! the public API; where a peer must misbehave (an RSeq that skips, a RAck naming another
//! request, a moved Contact, a 481), one message is edited by hand.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::{HeaderName, Message};
use sip_proto::ua::{CallEvent, CallId, CallState, Destination, Outgoing, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, addr, calling, deliver, drain, msg, of, sdp, settle};

/// `o` with `from` replaced by `to` (once), parsed.
fn edited(o: &Outgoing, from: &str, to: &str) -> Message {
    let text = String::from_utf8(o.bytes.to_vec()).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    Message::parse(text.replacen(from, to, 1).as_bytes()).unwrap()
}

/// After the PRACK reached the callee: it answers the PRACK, then sends the INVITE's 2xx
/// (held for that PRACK), and both ends are confirmed once the caller has it.
fn prack_answered_then_2xx(
    now: Instant,
    (alice, a): (&mut UserAgent, CallId),
    (bob, b): (&mut UserAgent, CallId),
) {
    let (out, _) = drain(bob);
    let firsts: Vec<String> = out
        .iter()
        .map(|o| {
            let m = msg(o);
            format!("{} {}", m.status().unwrap_or(0), m.cseq().unwrap().method)
        })
        .collect();
    assert_eq!(firsts, ["200 PRACK", "200 INVITE"], "{out:?}");
    deliver(alice, now, BOB, &out);
    settle(now, alice, bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
}

/// Alice's call to Bob answered and ACKed (no 100rel): (alice, her call, bob, his call).
fn confirmed(now: Instant) -> (UserAgent, CallId, UserAgent, CallId) {
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    (alice, a, bob, b)
}

/// The call events of `ev` for `call`.
fn events_of(ev: &[UaEvent], call: CallId) -> Vec<&CallEvent> {
    ev.iter()
        .filter_map(|e| match e {
            UaEvent::Call(c, e) if *c == call => Some(e),
            _ => None,
        })
        .collect()
}

/// RFC 3262 §4: "if the UAC receives another reliable provisional response to the same
/// request, and its RSeq value is not one higher than the value of the sequence number, that
/// response MUST NOT be acknowledged with a PRACK, and MUST NOT be processed further" (a
/// retransmission, RSeq equal, and one that skips a number alike; errata 4604 keeps the
/// rule). Bob's 180 with RSeq 1 is PRACKed; one with RSeq 3 is not (before the fix it was:
/// any higher RSeq was taken); RSeq 2 then is, and RSeq 3 after it.
#[test]
fn a_reliable_provisional_whose_rseq_skips_is_not_pracked() {
    let now = Instant::now();
    let (mut alice, _a, mut bob, b) = calling(now, true, true);
    bob.ring(now, b);
    let (ringing, _) = drain(&mut bob);
    let r180 = of(&ringing, "SIP/2.0 180 ");
    assert_eq!(r180.len(), 1, "{ringing:?}");
    assert_eq!(
        msg(r180[0]).headers.value(&HeaderName::RSeq),
        Some("1"),
        "{ringing:?}"
    );
    deliver(&mut alice, now, BOB, &ringing);
    let (out, _) = drain(&mut alice);
    assert_eq!(of(&out, "PRACK ").len(), 1, "{out:?}");
    let rack = |out: &[Outgoing]| {
        of(out, "PRACK ")
            .iter()
            .map(|o| msg(o).headers.value(&HeaderName::RAck).unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(rack(&out), ["1 1 INVITE"]);
    // RSeq 3: one missing in between. Not PRACKed, not reported as progress.
    let skip = edited(r180[0], "RSeq: 1\r\n", "RSeq: 3\r\n");
    alice.handle_message(now, skip.clone(), addr(BOB));
    let (out, ev) = drain(&mut alice);
    assert!(rack(&out).is_empty(), "RSeq 3 after 1 PRACKed: {out:?}");
    assert!(
        !ev.iter()
            .any(|e| matches!(e, UaEvent::Call(_, CallEvent::Pracked { .. }))),
        "{ev:?}"
    );
    // RSeq 2 is the next one: PRACKed; then RSeq 3 is too.
    alice.handle_message(
        now,
        edited(r180[0], "RSeq: 1\r\n", "RSeq: 2\r\n"),
        addr(BOB),
    );
    let (out, _) = drain(&mut alice);
    assert_eq!(rack(&out), ["2 1 INVITE"]);
    alice.handle_message(now, skip, addr(BOB));
    let (out, _) = drain(&mut alice);
    assert_eq!(rack(&out), ["3 1 INVITE"]);
}

/// RFC 3262 §3: "If a reliable provisional response is retransmitted for 64*T1 seconds
/// without reception of a corresponding PRACK, the UAS SHOULD reject the original request
/// with a 5xx response." Bob rings reliably and no PRACK ever reaches him: the 180 goes at
/// T1, 2·T1, 4·T1 ... and at 64·T1 the INVITE is rejected with 5xx, reported as the call's
/// failure. Before the fix the retransmissions stopped and the call rang on, the caller
/// waiting for a final response that never came.
#[test]
fn a_reliable_provisional_never_pracked_rejects_the_invite_with_5xx_at_64_t1() {
    let start = Instant::now();
    let (_alice, _a, mut bob, b) = calling(start, true, true);
    bob.ring(start, b);
    let mut sent: Vec<(Duration, String)> = Vec::new();
    let mut events = Vec::new();
    let mut now = start;
    loop {
        let (out, ev) = drain(&mut bob);
        for o in &out {
            let text = String::from_utf8_lossy(&o.bytes);
            let first = text.lines().next().unwrap_or_default().to_owned();
            sent.push((now - start, first));
        }
        events.extend(ev);
        match bob.poll_timeout() {
            Some(t) if t <= start + Duration::from_secs(40) => {
                now = t.max(now);
                bob.handle_timeout(now);
            }
            _ => break,
        }
    }
    let ringing = sent.iter().filter(|(_, l)| l.starts_with("SIP/2.0 180 "));
    assert!(ringing.count() >= 6, "{sent:?}");
    let finals: Vec<_> = sent
        .iter()
        .filter(|(_, l)| l.starts_with("SIP/2.0 5"))
        .collect();
    assert!(!finals.is_empty(), "no 5xx to the INVITE: {sent:?}");
    assert_eq!(finals[0].0, Duration::from_secs(32), "{sent:?}");
    // No 180 after the 5xx.
    assert!(
        !sent
            .iter()
            .any(|(t, l)| *t > finals[0].0 && l.starts_with("SIP/2.0 180 ")),
        "{sent:?}"
    );
    assert!(
        events_of(&events, b).iter().any(|e| matches!(
            e,
            CallEvent::Failed {
                code: 500..=599,
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(bob.call_state(b), Some(CallState::Terminated));
}

/// RFC 3262 §3 (RAck, §7.2): a PRACK acknowledges the reliable provisional whose "RSeq and
/// CSeq number and method in the RAck match those of the provisional response"; one matching
/// none is answered 481 and the provisional stays unacknowledged. A PRACK naming the right
/// RSeq but another CSeq number, or another method, was taken (only the RSeq was compared).
#[test]
fn a_prack_whose_rack_names_another_request_gets_481() {
    for (wrong, what) in [("RAck: 1 2 INVITE", "CSeq"), ("RAck: 1 1 UPDATE", "method")] {
        let now = Instant::now();
        let (mut alice, _a, mut bob, b) = calling(now, true, true);
        bob.ring(now, b);
        let (ringing, _) = drain(&mut bob);
        deliver(&mut alice, now, BOB, &ringing);
        let (out, _) = drain(&mut alice);
        let prack = of(&out, "PRACK ");
        assert_eq!(prack.len(), 1, "{out:?}");
        let bad = edited(prack[0], "RAck: 1 1 INVITE", wrong);
        // Its own transaction: another branch.
        let bad = Message::parse(
            String::from_utf8(bad.to_bytes())
                .unwrap()
                .replacen(";branch=z9hG4bK", ";branch=z9hG4bKwrong", 1)
                .as_bytes(),
        )
        .unwrap();
        bob.handle_message(now, bad, addr(ALICE));
        let (reply, ev) = drain(&mut bob);
        assert_eq!(of(&reply, "SIP/2.0 481 ").len(), 1, "{what}: {reply:?}");
        assert!(
            !events_of(&ev, b)
                .iter()
                .any(|e| matches!(e, CallEvent::Pracked { .. })),
            "{what}: {ev:?}"
        );
        // The right PRACK is still taken (in the next CSeq: the refused one took 2).
        let right = edited(prack[0], "CSeq: 2 PRACK", "CSeq: 3 PRACK");
        bob.handle_message(now, right, addr(ALICE));
        let (reply, ev) = drain(&mut bob);
        assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{what}: {reply:?}");
        assert!(
            events_of(&ev, b)
                .iter()
                .any(|e| matches!(e, CallEvent::Pracked { rseq: 1 })),
            "{what}: {ev:?}"
        );
    }
}

/// RFC 3261 §12.2.1.2: "When a UAC receives a 2xx response to a target refresh request, it
/// MUST replace the dialog's remote target URI with the URI from the Contact header field in
/// that response"; RFC 3311 §5.1: UPDATE is a target refresh request. Bob's 200 to Alice's
/// UPDATE names a new Contact: Alice's next request goes there. Before the fix only a
/// re-INVITE's 2xx moved the remote target. A 2xx to INFO (no target refresh) moves nothing.
#[test]
fn the_2xx_to_our_update_refreshes_the_remote_target_and_a_2xx_to_info_does_not() {
    let now = Instant::now();
    let (mut alice, a, mut bob, _b) = confirmed(now);
    let moved = "sip:bob@127.0.0.1:5070";
    let next_request = |alice: &mut UserAgent| {
        assert!(alice.info(now, a, "application/dtmf-relay", Bytes::new()));
        let (out, _) = drain(alice);
        let info = of(&out, "INFO ");
        assert_eq!(info.len(), 1, "{out:?}");
        let m = msg(info[0]);
        (
            m.request_uri().unwrap().to_string(),
            match &info[0].destination {
                Destination::Uri(u) => u.to_string(),
                d => format!("{d:?}"),
            },
            info[0].clone(),
        )
    };
    // A 2xx to INFO with another Contact: the target stays.
    let (uri, _, info) = next_request(&mut alice);
    assert_eq!(uri, "sip:bob@127.0.0.1:5064");
    deliver(&mut bob, now, ALICE, &[info]);
    let (ok, _) = drain(&mut bob);
    let ok = Message::response_to(&msg(&of(&ok, "SIP/2.0 200 ")[0].clone()), 200, "OK", None);
    let mut ok = ok;
    ok.headers.push(sip_msg::Header::new(
        HeaderName::Contact,
        format!("<{moved}>"),
    ));
    alice.handle_message(now, ok, addr(BOB));
    drain(&mut alice);
    let (uri, _, info) = next_request(&mut alice);
    assert_eq!(uri, "sip:bob@127.0.0.1:5064", "moved by a 2xx to INFO");
    deliver(&mut bob, now, ALICE, &[info]);
    settle(now, &mut alice, &mut bob);
    // The 2xx to our UPDATE with another Contact: the target moves.
    assert!(alice.update(now, a, None));
    let (out, _) = drain(&mut alice);
    assert_eq!(of(&out, "UPDATE ").len(), 1, "{out:?}");
    deliver(&mut bob, now, ALICE, &out);
    let (reply, _) = drain(&mut bob);
    let ok = of(&reply, "SIP/2.0 200 ");
    assert_eq!(ok.len(), 1, "{reply:?}");
    let ok = edited(
        ok[0],
        "Contact: <sip:bob@127.0.0.1:5064",
        "Contact: <sip:bob@127.0.0.1:5070",
    );
    alice.handle_message(now, ok, addr(BOB));
    drain(&mut alice);
    let (uri, dest, _) = next_request(&mut alice);
    assert_eq!((uri.as_str(), dest.as_str()), (moved, moved));
}

/// RFC 3261 §12.2.1.2: "If the response for a request within a dialog is a 481
/// (Call/Transaction Does Not Exist) or a 408 (Request Timeout), the UAC SHOULD terminate the
/// dialog. A UAC SHOULD also terminate a dialog if no response at all is received for the
/// request"; §14.1 says the same of a re-INVITE ("the UAC will terminate the dialog"), and
/// RFC 5057 §5.1 lists 481 as destroying the dialog. An INVITE dialog is ended with BYE
/// (§15). Alice's INFO, re-INVITE and UPDATE answered 481 or 408 (Bob's dialog gone, a PBX
/// restarted or Kamailio's dialog module timed it out): Alice's call ends with a BYE. Before
/// the fix the call stayed confirmed (only a session refresh's 481/408 ended it).
#[test]
fn a_481_or_408_to_a_request_in_the_call_ends_it_with_bye() {
    for (method, code) in [
        ("INFO ", 481),
        ("INVITE ", 481),
        ("UPDATE ", 408),
        ("INFO ", 408),
    ] {
        let now = Instant::now();
        let (mut alice, a, _bob, _b) = confirmed(now);
        let sent = match method {
            "INFO " => alice.info(now, a, "application/dtmf-relay", Bytes::new()),
            "INVITE " => alice.reinvite(now, a, sdp("v=0 a2\r\n")),
            _ => alice.update(now, a, None),
        };
        assert!(sent, "{method}");
        let (out, _) = drain(&mut alice);
        let req = of(&out, method);
        assert_eq!(req.len(), 1, "{method}: {out:?}");
        let resp = Message::response_to(&msg(req[0]), code, "Gone", None);
        alice.handle_message(now, resp, addr(BOB));
        let (out, ev) = drain(&mut alice);
        assert_eq!(of(&out, "BYE ").len(), 1, "{method}{code}: {out:?}");
        assert_eq!(
            alice.call_state(a),
            Some(CallState::Terminating),
            "{method}{code}"
        );
        assert!(
            events_of(&ev, a)
                .iter()
                .any(|e| matches!(e, CallEvent::Modified { code: c, .. } if *c == code)),
            "{method}{code}: {ev:?}"
        );
    }
}

/// RFC 3261 §12.2.1.2: no response at all (the client transaction's timeout, Timer F) to
/// Alice's INFO: the call ends with BYE, as for a 408.
#[test]
fn an_unanswered_request_in_the_call_ends_it_with_bye() {
    let start = Instant::now();
    let (mut alice, a, _bob, _b) = confirmed(start);
    assert!(alice.info(start, a, "application/dtmf-relay", Bytes::new()));
    let mut now = start;
    let mut byes = 0;
    let mut events = Vec::new();
    loop {
        let (out, ev) = drain(&mut alice);
        byes += of(&out, "BYE ").len();
        events.extend(ev);
        if byes > 0 {
            break;
        }
        match alice.poll_timeout() {
            Some(t) if t <= start + Duration::from_secs(40) => {
                now = t.max(now);
                alice.handle_timeout(now);
            }
            _ => break,
        }
    }
    assert_eq!(byes, 1, "{events:?}");
    assert!(now >= start + Duration::from_secs(32), "{:?}", now - start);
    assert!(
        events_of(&events, a)
            .iter()
            .any(|e| matches!(e, CallEvent::Modified { code: 408, .. })),
        "{events:?}"
    );
}

/// RFC 3262 §3: "The UAS MAY send a final response to the initial request before having
/// received PRACKs for all unacknowledged reliable provisional responses, unless the final
/// response is 2xx and any of the unacknowledged reliable provisional responses contained a
/// session description. In that case, it MUST NOT send a final response until those
/// provisional responses are acknowledged." Bob sends a reliable 183 with SDP and answers at
/// once: his 200 waits for Alice's PRACK, then goes (after the PRACK's 200). Before the fix
/// the 200 went at once, crossing the PRACK. A reliable 180 without SDP does not hold it.
#[test]
fn the_2xx_waits_for_the_prack_of_a_reliable_provisional_with_sdp() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, true, true);
    bob.progress(now, b, sdp("v=0 b early\r\n"));
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    let (out, _) = drain(&mut bob);
    assert_eq!(of(&out, "SIP/2.0 183 ").len(), 1, "{out:?}");
    assert!(
        of(&out, "SIP/2.0 200 ").is_empty(),
        "2xx before PRACK: {out:?}"
    );
    deliver(&mut alice, now, BOB, &out);
    let (prack, _) = drain(&mut alice);
    assert_eq!(of(&prack, "PRACK ").len(), 1, "{prack:?}");
    deliver(&mut bob, now, ALICE, &prack);
    prack_answered_then_2xx(now, (&mut alice, a), (&mut bob, b));

    // A reliable 180 without SDP, then the answer: the 200 goes at once.
    let (_alice, _a, mut bob, b) = calling(now, true, true);
    bob.ring(now, b);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    let (out, _) = drain(&mut bob);
    assert_eq!(of(&out, "SIP/2.0 200 ").len(), 1, "{out:?}");
}

/// RFC 3261 §13.2.2.4: the 2xx whose dialog identifier matches an early dialog "MUST" move
/// that dialog to the confirmed state: it is the same dialog, and §12.2.2's remote sequence
/// number goes on. Bob sends an UPDATE with CSeq 5 in the early dialog; after the 2xx, a
/// request of his with CSeq 3 is out of order: 500. Before the fix the confirmed dialog was
/// made afresh from the 2xx with no remote sequence number, and took it (200).
#[test]
fn the_remote_cseq_of_the_early_dialog_goes_on_in_the_confirmed_one() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.ring(now, b);
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Early));
    assert!(bob.update(now, b, None));
    let (out, _) = drain(&mut bob);
    let update = of(&out, "UPDATE ");
    assert_eq!(update.len(), 1, "{out:?}");
    let text = String::from_utf8(update[0].bytes.to_vec()).unwrap();
    let cseq = format!("CSeq: {} UPDATE", msg(update[0]).cseq().unwrap().seq);
    alice.handle_message(
        now,
        Message::parse(text.replacen(&cseq, "CSeq: 5 UPDATE", 1).as_bytes()).unwrap(),
        addr(BOB),
    );
    let (reply, _) = drain(&mut alice);
    assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    // Bob's INFO with CSeq 3 (below the 5 of his UPDATE).
    assert!(bob.info(now, b, "application/dtmf-relay", Bytes::new()));
    let (out, _) = drain(&mut bob);
    let info = of(&out, "INFO ");
    assert_eq!(info.len(), 1, "{out:?}");
    let text = String::from_utf8(info[0].bytes.to_vec()).unwrap();
    let cseq = format!("CSeq: {} INFO", msg(info[0]).cseq().unwrap().seq);
    alice.handle_message(
        now,
        Message::parse(text.replacen(&cseq, "CSeq: 3 INFO", 1).as_bytes()).unwrap(),
        addr(BOB),
    );
    let (reply, _) = drain(&mut alice);
    assert_eq!(of(&reply, "SIP/2.0 500 ").len(), 1, "{reply:?}");
}

/// RFC 3262 §3: "The UAS MUST NOT send a second reliable provisional response until the
/// first is acknowledged." Bob rings (reliable 180, RSeq 1) and sends 183 with SDP before
/// Alice's PRACK comes: the 183 waits in Bob's call. Alice's PRACK of RSeq 1 gets 200 and
/// the 183 goes after it as RSeq 2, whose own PRACK is taken too. Before the fix the 183
/// went at once as RSeq 2, the 180 was no longer retransmitted, and Alice's PRACK of RSeq 1
/// got 481.
#[test]
fn a_second_reliable_provisional_waits_for_the_prack_of_the_first() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, true, true);
    bob.ring(now, b);
    bob.progress(now, b, sdp("v=0 b early\r\n"));
    let (out, _) = drain(&mut bob);
    assert_eq!(of(&out, "SIP/2.0 180 ").len(), 1, "{out:?}");
    assert!(
        of(&out, "SIP/2.0 183 ").is_empty(),
        "183 before the PRACK: {out:?}"
    );
    deliver(&mut alice, now, BOB, &out);
    let (prack, _) = drain(&mut alice);
    deliver(&mut bob, now, ALICE, &prack);
    let (out, ev) = drain(&mut bob);
    assert_eq!(of(&out, "SIP/2.0 200 ").len(), 1, "{out:?}");
    assert_eq!(of(&out, "SIP/2.0 183 ").len(), 1, "{out:?}");
    let r183 = msg(of(&out, "SIP/2.0 183 ")[0]);
    assert_eq!(r183.headers.value(&HeaderName::RSeq), Some("2"), "{out:?}");
    assert!(
        events_of(&ev, b)
            .iter()
            .any(|e| matches!(e, CallEvent::Pracked { rseq: 1 })),
        "{ev:?}"
    );
    // The 183's PRACK is taken; the answer then goes at once.
    deliver(&mut alice, now, BOB, &out);
    let (prack, _) = drain(&mut alice);
    assert_eq!(of(&prack, "PRACK ").len(), 1, "{prack:?}");
    deliver(&mut bob, now, ALICE, &prack);
    let (out, ev) = drain(&mut bob);
    assert_eq!(of(&out, "SIP/2.0 200 ").len(), 1, "{out:?}");
    assert!(
        events_of(&ev, b)
            .iter()
            .any(|e| matches!(e, CallEvent::Pracked { rseq: 2 })),
        "{ev:?}"
    );
    deliver(&mut alice, now, BOB, &out);
    bob.answer(now, b, Some(sdp("v=0 b early\r\n")));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
}

/// RFC 3262 §3 again: a held provisional is dropped once a final response is due. After a
/// reliable 180 without SDP, the answer goes at once (the rule holding a 2xx only covers a
/// reliable 1xx with SDP) and the held 183 never goes, not even after the PRACK. After a
/// reliable 183 with SDP, the 2xx waits for the PRACK ("MUST NOT send a final response until
/// those provisional responses are acknowledged"), and the 180 asked for meanwhile never
/// goes: the PRACK's 200 is followed by the 2xx alone.
#[test]
fn a_held_provisional_gives_way_to_the_final_response() {
    let now = Instant::now();
    // Reliable 180 without SDP, 183 held, then the answer.
    let (mut alice, a, mut bob, b) = calling(now, true, true);
    bob.ring(now, b);
    bob.progress(now, b, sdp("v=0 b early\r\n"));
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    let (out, _) = drain(&mut bob);
    let firsts: Vec<u16> = out.iter().map(|o| msg(o).status().unwrap_or(0)).collect();
    assert_eq!(firsts, [180, 200], "{out:?}");
    deliver(&mut alice, now, BOB, &out);
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));

    // Reliable 183 with SDP, 180 held, the 2xx held: the PRACK releases the 2xx only.
    let (mut alice, a, mut bob, b) = calling(now, true, true);
    bob.progress(now, b, sdp("v=0 b early\r\n"));
    bob.ring(now, b);
    bob.answer(now, b, Some(sdp("v=0 b early\r\n")));
    let (out, _) = drain(&mut bob);
    let firsts: Vec<u16> = out.iter().map(|o| msg(o).status().unwrap_or(0)).collect();
    assert_eq!(firsts, [183], "{out:?}");
    deliver(&mut alice, now, BOB, &out);
    let (prack, _) = drain(&mut alice);
    deliver(&mut bob, now, ALICE, &prack);
    prack_answered_then_2xx(now, (&mut alice, a), (&mut bob, b));

    // A reliable 180, a 183 held, then a rejection: the 486 goes, the 183 never does.
    let (mut alice, _a, mut bob, b) = calling(now, true, true);
    bob.ring(now, b);
    bob.progress(now, b, sdp("v=0 b early\r\n"));
    bob.reject(now, b, 486);
    let (out, _) = drain(&mut bob);
    let firsts: Vec<u16> = out.iter().map(|o| msg(o).status().unwrap_or(0)).collect();
    assert_eq!(firsts, [180, 486], "{out:?}");
    deliver(&mut alice, now, BOB, &out);
    let (prack, _) = drain(&mut alice);
    deliver(&mut bob, now, ALICE, &prack);
    let (out, _) = drain(&mut bob);
    assert!(of(&out, "SIP/2.0 183 ").is_empty(), "{out:?}");
}
