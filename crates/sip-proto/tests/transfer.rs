//! Call transfer (RFC 3515 REFER, RFC 5589 §6 blind transfer) on a virtual clock. The
//! transferor's side: Alice (our agent) is in a call with Bob (our agent too, for the call), and
//! transfers him; the transfer's answers — the REFER's response and the NOTIFYs of its
//! subscription — are written here as a PBX sends them, in Bob's dialog. The transferee's
//! side: Bob (our agent) referred by Alice to Carol, all three our agents.

use std::time::{Duration, Instant};

use sip_msg::{HeaderName, Message, Uri};
use sip_proto::ua::{CallEvent, CallId, CallState, TRANSFER_WAIT, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, addr, call_events, calling, deliver, drain, msg, of, sdp, settle};

/// Alice and Bob in a confirmed call: (alice, her call, bob, his call, now).
fn in_call() -> (UserAgent, CallId, UserAgent, CallId, Instant) {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    (alice, a, bob, b, now)
}

/// Alice refers Bob to 2001: the REFER she sends.
fn refer(alice: &mut UserAgent, a: CallId, now: Instant) -> Message {
    let target = Uri::parse("sip:2001@pbx.example.test").unwrap();
    assert!(alice.refer(now, a, &target));
    let (out, _) = drain(alice);
    assert_eq!(out.len(), 1, "one REFER");
    msg(&out[0])
}

/// The PBX's response `code` to `refer`.
fn answer(refer: &Message, code: u16, reason: &str) -> Message {
    Message::response_to(refer, code, reason, Some("bobtag"))
}

/// A NOTIFY the PBX (Bob's side of the dialog) sends about `refer`: CSeq `seq`, branch
/// `branch`, the given Subscription-State and body.
fn notify(refer: &Message, seq: u32, branch: &str, state: &str, body: &str) -> Message {
    common::notify(refer, seq, branch, "refer", state, body)
}

/// A `Subscription-State` line.
fn state(value: &str) -> String {
    format!("Subscription-State: {value}\r\n")
}

/// Delivers `m` to `alice` as sent by Bob; what she sends and her call events.
fn to_alice(alice: &mut UserAgent, now: Instant, m: &Message) -> (Vec<String>, Vec<CallEvent>) {
    alice.handle_message(now, m.clone(), addr(BOB));
    let (out, ev) = drain(alice);
    let out = out
        .iter()
        .map(|o| String::from_utf8_lossy(&o.bytes).into_owned())
        .collect();
    (out, call_events(&ev).into_iter().cloned().collect())
}

/// Runs `alice`'s timers due until `until`: what she sent and her call events (with when).
fn run_until(alice: &mut UserAgent, until: Instant) -> (Vec<String>, Vec<(Instant, CallEvent)>) {
    let (mut out, mut events) = (Vec::new(), Vec::new());
    while let Some(t) = alice.poll_timeout().filter(|t| *t <= until) {
        alice.handle_timeout(t);
        let (o, ev) = drain(alice);
        out.extend(
            o.iter()
                .map(|o| String::from_utf8_lossy(&o.bytes).into_owned()),
        );
        events.extend(call_events(&ev).into_iter().map(|e| (t, e.clone())));
    }
    (out, events)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[test]
fn refer_202_then_notify_100_and_200_ends_the_call_with_bye() {
    let (mut alice, a, mut bob, b, now) = in_call();
    let r = refer(&mut alice, a, now);
    assert_eq!(r.method(), Some(sip_msg::Method::Refer));
    assert_eq!(
        r.headers.value(&HeaderName::ReferTo),
        Some("<sip:2001@pbx.example.test>")
    );
    assert_eq!(
        r.headers.value(&HeaderName::ReferredBy),
        Some("<sip:alice@example.test>")
    );
    assert!(r.headers.value(&HeaderName::Contact).is_some());
    // One transfer at a time.
    let again = Uri::parse("sip:2002@pbx.example.test").unwrap();
    assert!(!alice.refer(now, a, &again));

    let (out, ev) = to_alice(&mut alice, now, &answer(&r, 202, "Accepted"));
    assert!(out.is_empty());
    assert!(matches!(ev[..], [CallEvent::ReferAnswered { code: 202 }]));

    let n1 = notify(
        &r,
        100,
        "n1",
        &state("active;expires=60"),
        "SIP/2.0 100 Trying\r\n",
    );
    let (out, ev) = to_alice(&mut alice, now, &n1);
    assert_eq!(first_line(&out[0]), "SIP/2.0 200 OK");
    assert!(matches!(
        ev[..],
        [CallEvent::TransferProgress {
            code: 100,
            last: false
        }]
    ));
    // The subscription lasts 60 s: the wait is that long now (not TRANSFER_WAIT).
    let later = now + Duration::from_secs(40);
    let (_, ev) = run_until(&mut alice, later);
    assert!(ev.is_empty(), "{ev:?}");
    let now = later;

    let n2 = notify(
        &r,
        101,
        "n2",
        &state("terminated;reason=noresource"),
        "SIP/2.0 200 OK\r\n",
    );
    let (out, ev) = to_alice(&mut alice, now, &n2);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(first_line(&out[0]), "SIP/2.0 200 OK");
    assert!(
        out[1].starts_with("BYE "),
        "RFC 5589 §6: the transferor hangs up"
    );
    assert!(matches!(
        ev[..],
        [CallEvent::TransferProgress {
            code: 200,
            last: true
        }]
    ));
    // Bob answers the BYE: the call ends normally.
    let bye = Message::parse(out[1].as_bytes()).unwrap();
    bob.handle_message(now, bye, addr(ALICE));
    let (back, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &back);
    let (_, ev) = drain(&mut alice);
    assert!(call_events(&ev).iter().any(|e| matches!(
        e,
        CallEvent::Ended {
            by_remote: false,
            code: 200
        }
    )));
    assert_eq!(bob.call_state(b), Some(CallState::Terminated));
    let (_, ev) = run_until(&mut alice, now + Duration::from_secs(120));
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn refer_refused_with_403_leaves_the_call_up_and_another_may_go() {
    let (mut alice, a, _bob, _b, now) = in_call();
    let r = refer(&mut alice, a, now);
    let (out, ev) = to_alice(&mut alice, now, &answer(&r, 403, "Forbidden"));
    assert!(out.is_empty(), "no BYE: the call goes on");
    assert!(matches!(ev[..], [CallEvent::ReferAnswered { code: 403 }]));
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    // No subscription: a NOTIFY now is of none (RFC 6665 §4.1.3).
    let n = notify(&r, 100, "n1", &state("active"), "SIP/2.0 100 Trying\r\n");
    let (out, ev) = to_alice(&mut alice, now, &n);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 481 "), "{out:?}");
    assert!(ev.is_empty());
    // A new transfer may go.
    let r2 = refer(&mut alice, a, now);
    assert!(r2.cseq().unwrap().seq > r.cseq().unwrap().seq);
}

#[test]
fn a_486_in_the_sipfrag_is_a_failed_transfer_and_the_call_goes_on() {
    let (mut alice, a, _bob, _b, now) = in_call();
    let r = refer(&mut alice, a, now);
    to_alice(&mut alice, now, &answer(&r, 202, "Accepted"));
    let n1 = notify(&r, 100, "n1", &state("active"), "SIP/2.0 180 Ringing\r\n");
    let (_, ev) = to_alice(&mut alice, now, &n1);
    assert!(matches!(
        ev[..],
        [CallEvent::TransferProgress {
            code: 180,
            last: false
        }]
    ));
    let n2 = notify(
        &r,
        101,
        "n2",
        &state("terminated"),
        "SIP/2.0 486 Busy Here\r\n",
    );
    let (out, ev) = to_alice(&mut alice, now, &n2);
    assert_eq!(out.len(), 1, "only the 200 to the NOTIFY, no BYE: {out:?}");
    assert!(matches!(
        ev[..],
        [CallEvent::TransferProgress {
            code: 486,
            last: true
        }]
    ));
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    // Nothing is waited for any more.
    let (out, ev) = run_until(&mut alice, now + Duration::from_secs(120));
    assert!(ev.is_empty() && of_text(&out, "BYE ").is_empty(), "{ev:?}");
}

fn of_text<'a>(out: &'a [String], prefix: &str) -> Vec<&'a String> {
    out.iter().filter(|o| o.starts_with(prefix)).collect()
}

#[test]
fn a_retransmitted_notify_gets_the_same_200_and_is_reported_once() {
    let (mut alice, a, _bob, _b, now) = in_call();
    let r = refer(&mut alice, a, now);
    to_alice(&mut alice, now, &answer(&r, 202, "Accepted"));
    let n1 = notify(&r, 100, "n1", &state("active"), "SIP/2.0 100 Trying\r\n");
    let (first, ev) = to_alice(&mut alice, now, &n1);
    assert_eq!(ev.len(), 1);
    // Our 200 was lost: the PBX sends the NOTIFY again (Timer E), it gets the same 200.
    let later = now + Duration::from_millis(500);
    let (again, ev) = to_alice(&mut alice, later, &n1);
    assert_eq!(again, first);
    assert!(ev.is_empty(), "reported once: {ev:?}");
}

#[test]
fn a_notify_before_the_202_counts_and_a_lost_final_notify_is_reported_after_the_wait() {
    let (mut alice, a, _bob, _b, now) = in_call();
    let r = refer(&mut alice, a, now);
    // RFC 6665 §4.1.2.4: the NOTIFY may overtake the 2xx.
    let n1 = notify(&r, 100, "n1", &state("active"), "SIP/2.0 100 Trying\r\n");
    let (_, ev) = to_alice(&mut alice, now, &n1);
    assert!(matches!(
        ev[..],
        [CallEvent::TransferProgress { code: 100, .. }]
    ));
    let (_, ev) = to_alice(&mut alice, now, &answer(&r, 202, "Accepted"));
    assert!(matches!(ev[..], [CallEvent::ReferAnswered { code: 202 }]));
    // The final NOTIFY never comes: reported once TRANSFER_WAIT has passed.
    let (out, ev) = run_until(&mut alice, now + Duration::from_secs(120));
    assert!(of_text(&out, "BYE ").is_empty(), "the call goes on");
    assert!(
        matches!(ev[..], [(t, CallEvent::TransferUnknown { .. })] if t == now + TRANSFER_WAIT),
        "{ev:?}"
    );
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
}

#[test]
fn an_unanswered_refer_is_a_408_and_the_call_goes_on() {
    let (mut alice, a, _bob, _b, now) = in_call();
    let _ = refer(&mut alice, a, now);
    let mut t = now;
    let mut retransmitted = 0;
    let mut answered = None;
    while let Some(next) = alice
        .poll_timeout()
        .filter(|n| *n < now + Duration::from_secs(40))
    {
        t = next;
        alice.handle_timeout(t);
        let (out, ev) = drain(&mut alice);
        retransmitted += of(&out, "REFER ").len();
        for e in call_events(&ev) {
            if let CallEvent::ReferAnswered { code } = e {
                answered = Some((*code, t - now));
            }
        }
    }
    assert!(retransmitted >= 9, "Timer E: {retransmitted}");
    assert_eq!(answered, Some((408, Duration::from_secs(32))), "Timer F");
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert!(t > now);
}

#[test]
fn unreadable_notifies_are_refused_and_never_panic() {
    let cases: [(&str, &str, &str, &str); 4] = [
        // No status line: 400 (RFC 3515 §2.4.5).
        (
            "Event: refer\r\n",
            "active",
            "INVITE sip:x SIP/2.0\r\n",
            "400",
        ),
        ("Event: refer\r\n", "active", "\u{ff}\u{fe} garbage", "400"),
        // No Subscription-State: 400 (RFC 6665 §8.2.3).
        ("Event: refer\r\n", "", "SIP/2.0 200 OK\r\n", "400"),
        // Another event package: 489 (RFC 6665 §4.1.3).
        ("Event: dialog\r\n", "active", "SIP/2.0 200 OK\r\n", "489"),
    ];
    for (event, st, body, code) in cases {
        let (mut alice, a, _bob, _b, now) = in_call();
        let r = refer(&mut alice, a, now);
        to_alice(&mut alice, now, &answer(&r, 202, "Accepted"));
        let st = if st.is_empty() {
            String::new()
        } else {
            state(st)
        };
        let n = notify(&r, 100, "n1", &st, body);
        let text = String::from_utf8_lossy(&n.to_bytes()).replace("Event: refer\r\n", event);
        let n = Message::parse(text.as_bytes()).unwrap();
        let (out, ev) = to_alice(&mut alice, now, &n);
        assert!(
            first_line(&out[0]).starts_with(&format!("SIP/2.0 {code} ")),
            "{event} {st} {body}: {out:?}"
        );
        assert!(
            matches!(ev[..], [CallEvent::TransferUnknown { .. }]),
            "{ev:?}"
        );
        assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
        // The subscription is over: a later NOTIFY is of none.
        let n2 = notify(&r, 101, "n2", &state("terminated"), "SIP/2.0 200 OK\r\n");
        let (out, ev) = to_alice(&mut alice, now, &n2);
        assert!(first_line(&out[0]).starts_with("SIP/2.0 481 "));
        assert!(ev.is_empty());
    }
}

#[test]
fn a_notify_of_another_refer_or_without_a_transfer_gets_481() {
    let (mut alice, a, _bob, _b, now) = in_call();
    let r = refer(&mut alice, a, now);
    let seq = r.cseq().unwrap().seq;
    let n = notify(&r, 100, "n1", &state("active"), "SIP/2.0 100 Trying\r\n");
    let text = String::from_utf8_lossy(&n.to_bytes()).replace(
        "Event: refer\r\n",
        &format!("Event: refer;id={}\r\n", seq + 7),
    );
    let (out, ev) = to_alice(&mut alice, now, &Message::parse(text.as_bytes()).unwrap());
    assert!(first_line(&out[0]).starts_with("SIP/2.0 481 "), "{out:?}");
    assert!(ev.is_empty());
    // Its own id is fine.
    let text = String::from_utf8_lossy(&n.to_bytes())
        .replace("Event: refer\r\n", &format!("o: refer;id={seq}\r\n"))
        .replace("z9hG4bKn1", "z9hG4bKn3")
        .replace("CSeq: 100", "CSeq: 102");
    let (out, ev) = to_alice(&mut alice, now, &Message::parse(text.as_bytes()).unwrap());
    assert_eq!(first_line(&out[0]), "SIP/2.0 200 OK");
    assert_eq!(ev.len(), 1);

    // A call with no transfer.
    let (mut alice, a, _bob, _b, now) = in_call();
    let r = {
        let target = Uri::parse("sip:x@y").unwrap();
        assert!(alice.refer(now, a, &target));
        let (out, _) = drain(&mut alice);
        msg(&out[0])
    };
    to_alice(&mut alice, now, &answer(&r, 603, "Declined"));
    let n = notify(&r, 100, "n1", &state("active"), "SIP/2.0 100 Trying\r\n");
    let (out, _) = to_alice(&mut alice, now, &n);
    assert!(first_line(&out[0]).starts_with("SIP/2.0 481 "));
    // Only a confirmed call transfers.
    let (mut alice, a, _bob, _b) = calling(now, false, true);
    assert!(!alice.refer(now, a, &Uri::parse("sip:x@y").unwrap()));
}

// ---- the transferee's side: Bob is referred by Alice to Carol ----

/// Delivers what Alice, Bob and Carol send until none sends more: Bob's messages of the
/// call with Alice (its Call-ID `ab`) go to Alice, the others to Carol. The call events of
/// each, in order.
fn settle3(
    now: Instant,
    ab: &str,
    alice: &mut UserAgent,
    bob: &mut UserAgent,
    carol: &mut UserAgent,
    log: &mut Vec<String>,
) -> [Vec<(CallId, CallEvent)>; 3] {
    let mut evs: [Vec<(CallId, CallEvent)>; 3] = Default::default();
    let events = |ev: Vec<UaEvent>| {
        ev.into_iter().filter_map(|e| match e {
            UaEvent::Call(c, e) => Some((c, e)),
            _ => None,
        })
    };
    loop {
        let (a, ea) = drain(alice);
        let (b, eb) = drain(bob);
        let (c, ec) = drain(carol);
        evs[0].extend(events(ea));
        evs[1].extend(events(eb));
        evs[2].extend(events(ec));
        if a.is_empty() && b.is_empty() && c.is_empty() {
            return evs;
        }
        for o in &a {
            log.push(format!(
                "A>B {}",
                first_line(&String::from_utf8_lossy(&o.bytes))
            ));
        }
        deliver(bob, now, ALICE, &a);
        for o in &b {
            let m = msg(o);
            let to_alice = m.headers.value(&HeaderName::CallId) == Some(ab);
            let line = String::from_utf8_lossy(&o.bytes).into_owned();
            if to_alice {
                log.push(format!("B>A {line}"));
                alice.handle_message(now, m, addr(BOB));
            } else {
                log.push(format!("B>C {line}"));
                carol.handle_message(now, m, addr(BOB));
            }
        }
        for o in &c {
            log.push(format!(
                "C>B {}",
                first_line(&String::from_utf8_lossy(&o.bytes))
            ));
        }
        deliver(bob, now, common::CAROL, &c);
    }
}

/// Alice refers Bob (in a call) to Carol: Carol, and the Call-ID of Alice's call with Bob.
fn alice_refers_bob_to_carol(
    alice: &mut UserAgent,
    a: CallId,
    bob: &mut UserAgent,
    now: Instant,
) -> (UserAgent, String) {
    let carol = common::agent("carol", common::CAROL, 33, false, "carol");
    let t = Uri::parse("sip:carol@127.0.0.1:5066").unwrap();
    assert!(alice.refer(now, a, &t));
    let (out, _) = drain(alice);
    let r = msg(&out[0]);
    let ab = r.headers.value(&HeaderName::CallId).unwrap().to_owned();
    bob.handle_message(now, r, addr(ALICE));
    (carol, ab)
}

#[test]
fn bob_referred_by_alice_calls_carol_and_notifies_alice_who_hangs_up() {
    let (mut alice, a, mut bob, b, now) = in_call();
    let (mut carol, ab) = alice_refers_bob_to_carol(&mut alice, a, &mut bob, now);
    let mut log = Vec::new();
    let [ea, eb, ec] = settle3(now, &ab, &mut alice, &mut bob, &mut carol, &mut log);
    // Bob: 202, NOTIFY 100, and his INVITE to Carol with Alice's Referred-By.
    let new = match eb.first() {
        Some((c, CallEvent::Referred { to, call })) if *c == b => {
            assert_eq!(to, "sip:carol@127.0.0.1:5066");
            *call
        }
        other => panic!("{other:?}"),
    };
    assert_ne!(new, b);
    assert!(
        log.iter()
            .any(|l| l.starts_with("B>A SIP/2.0 202 Accepted\r\n")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("B>C INVITE sip:carol@")),
        "{log:#?}"
    );
    assert!(
        matches!(
            ea[..],
            [
                (_, CallEvent::ReferAnswered { code: 202 }),
                (
                    _,
                    CallEvent::TransferProgress {
                        code: 100,
                        last: false
                    }
                )
            ]
        ),
        "{ea:?}"
    );
    let c = match &ec[..] {
        [
            (
                c,
                CallEvent::Incoming {
                    from,
                    offer: Some(_),
                    replaces: None,
                },
            ),
        ] => {
            assert!(from.contains("bob"), "{from}");
            *c
        }
        other => panic!("{other:?}"),
    };
    // Carol rings: Bob NOTIFYs 180.
    carol.ring(now, c);
    let [ea, _, _] = settle3(now, &ab, &mut alice, &mut bob, &mut carol, &mut log);
    assert!(
        matches!(
            ea[..],
            [(
                _,
                CallEvent::TransferProgress {
                    code: 180,
                    last: false
                }
            )]
        ),
        "{ea:?}"
    );
    // Carol answers: Bob NOTIFYs 200 (terminated), Alice hangs up with BYE.
    carol.answer(now, c, Some(sdp("v=0 c\r\n")));
    let [ea, eb, _] = settle3(now, &ab, &mut alice, &mut bob, &mut carol, &mut log);
    assert!(
        ea.iter().any(|(_, e)| matches!(
            e,
            CallEvent::TransferProgress {
                code: 200,
                last: true
            }
        )),
        "{ea:?}"
    );
    assert!(ea.iter().any(|(_, e)| matches!(
        e,
        CallEvent::Ended {
            by_remote: false,
            code: 200
        }
    )));
    assert!(
        eb.iter()
            .any(|(c, e)| *c == new && matches!(e, CallEvent::Answered { .. }))
    );
    assert!(eb.iter().any(|(c, e)| *c == b
        && matches!(
            e,
            CallEvent::Ended {
                by_remote: true,
                ..
            }
        )));
    assert_eq!(bob.call_state(new), Some(CallState::Confirmed));
    assert_eq!(carol.call_state(c), Some(CallState::Confirmed));
    assert_eq!(alice.call_state(a), Some(CallState::Terminated));
    // The INVITE carried Alice's Referred-By (RFC 3892 §3); the NOTIFYs `Event: refer;id=`
    // the REFER's CSeq, 100 and 180 active, the 200 terminating the subscription.
    let invite = log.iter().find(|l| l.starts_with("B>C INVITE ")).unwrap();
    assert!(
        invite.contains("\r\nReferred-By: <sip:alice@example.test>\r\n"),
        "{invite}"
    );
    let notifies: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("B>A NOTIFY "))
        .collect();
    assert_eq!(notifies.len(), 3, "{notifies:#?}");
    for (n, (frag, state)) in notifies.iter().zip([
        ("SIP/2.0 100 Trying", "active;expires="),
        ("SIP/2.0 180 Ringing", "active;expires="),
        ("SIP/2.0 200 OK", "terminated"),
    ]) {
        assert!(n.contains("\r\nEvent: refer;id="), "{n}");
        assert!(n.contains("\r\nContent-Type: message/sipfrag\r\n"), "{n}");
        assert!(n.ends_with(&format!("\r\n\r\n{frag}\r\n")), "{n}");
        assert!(
            n.contains(&format!("\r\nSubscription-State: {state}")),
            "{n}"
        );
    }
}

#[test]
fn a_referred_call_that_fails_is_notified_and_the_first_call_goes_on() {
    let (mut alice, a, mut bob, b, now) = in_call();
    let (mut carol, ab) = alice_refers_bob_to_carol(&mut alice, a, &mut bob, now);
    let mut log = Vec::new();
    let [_, _, ec] = settle3(now, &ab, &mut alice, &mut bob, &mut carol, &mut log);
    let c = match &ec[..] {
        [(c, CallEvent::Incoming { .. })] => *c,
        other => panic!("{other:?}"),
    };
    carol.reject(now, c, 486);
    let [ea, eb, _] = settle3(now, &ab, &mut alice, &mut bob, &mut carol, &mut log);
    assert!(
        matches!(
            ea[..],
            [(
                _,
                CallEvent::TransferProgress {
                    code: 486,
                    last: true
                }
            )]
        ),
        "{ea:?}"
    );
    assert!(
        eb.iter()
            .any(|(_, e)| matches!(e, CallEvent::Failed { code: 486, .. }))
    );
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    // Bob may be referred again now.
    let t = Uri::parse("sip:carol@127.0.0.1:5066").unwrap();
    assert!(alice.refer(now, a, &t));
    let [ea, eb, _] = settle3(now, &ab, &mut alice, &mut bob, &mut carol, &mut log);
    assert!(
        matches!(
            ea.first(),
            Some((_, CallEvent::ReferAnswered { code: 202 }))
        ),
        "{ea:?}"
    );
    assert!(
        matches!(eb.first(), Some((_, CallEvent::Referred { .. }))),
        "{eb:?}"
    );
}

#[test]
fn refers_we_do_not_follow_are_refused() {
    let cases = [
        ("", "400"),
        ("Refer-To: <sip:a@b>\r\nRefer-To: <sip:c@d>\r\n", "400"),
        // An attended transfer is followed now (tests/replaces.rs); a Replaces without its
        // from-tag is unreadable (RFC 3891 §6.1), other URI headers are refused.
        ("Refer-To: <sip:a@b?Replaces=x%40y%3Bto-tag%3D1>\r\n", "400"),
        ("Refer-To: <sip:a@b?Subject=x>\r\n", "403"),
        ("Refer-To: <sip:a@b;method=BYE>\r\n", "403"),
        ("Refer-To: <tel:+15551234>\r\n", "400"),
        ("Refer-To: garbage<<\r\n", "400"),
    ];
    for (lines, code) in cases {
        let (mut alice, a, mut bob, b, now) = in_call();
        let t = Uri::parse("sip:carol@127.0.0.1:5066").unwrap();
        assert!(alice.refer(now, a, &t));
        let (out, _) = drain(&mut alice);
        let text = String::from_utf8_lossy(&out[0].bytes).into_owned();
        let text: String = text
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with("Refer-To:"))
            .collect();
        let text = text.replacen("Contact:", &format!("{lines}Contact:"), 1);
        let Ok(r) = Message::parse(text.as_bytes()) else {
            continue;
        };
        bob.handle_message(now, r, addr(ALICE));
        let (out, ev) = drain(&mut bob);
        assert_eq!(out.len(), 1, "{lines}: {out:?}");
        assert!(
            out[0]
                .bytes
                .starts_with(format!("SIP/2.0 {code} ").as_bytes()),
            "{lines}: {}",
            String::from_utf8_lossy(&out[0].bytes)
        );
        assert!(call_events(&ev).is_empty(), "{ev:?}");
        assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    }
}
