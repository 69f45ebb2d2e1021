//! Attended transfer (RFC 3891 Replaces) on a virtual clock. The receiving side of an INVITE
//! with Replaces: Alice (our agent) calls Bob (our agent); Carol (our agent, her INVITE given a
//! `Replaces` line here as a PBX or phone sends it) asks Bob to replace his call with Alice by
//! hers (RFC 3891 §3). The transferee's side: Alice refers Bob to Carol with `?Replaces=` in
//! the Refer-To URI, and Bob's INVITE to Carol carries that Replaces (RFC 3891 §6.1, RFC 3515
//! §2.1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sip_msg::{HeaderName, Message, Uri};
use sip_proto::ua::{CallEvent, CallId, CallState, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, CAROL, addr, calling, drain, msg, sdp, settle};

/// Alice and Bob in a confirmed call: (alice, her call, bob, his call, now).
fn in_call() -> (UserAgent, CallId, UserAgent, CallId, Instant) {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    settle(now, &mut alice, &mut bob);
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    (alice, a, bob, b, now)
}

/// The Replaces value naming the dialog of `invite` (Alice's INVITE to Bob) as Bob sees it:
/// `to-tag` his (the 2xx's To tag, `bob_tag`), `from-tag` Alice's (RFC 3891 §3).
fn replaces_of(invite: &Message, bob_tag: &str) -> String {
    let cid = invite.headers.value(&HeaderName::CallId).unwrap();
    let alice_tag = invite.from().unwrap().tag().unwrap();
    format!("{cid};to-tag={bob_tag};from-tag={alice_tag}")
}

/// An INFO of Alice in her call with Bob (delivered): it names the dialog as Alice sends in
/// it (her tag in From, Bob's in To).
fn dialog_of(alice: &mut UserAgent, a: CallId, bob: &mut UserAgent, now: Instant) -> Message {
    assert!(alice.info(now, a, "text/plain", sdp("x")));
    let (out, _) = drain(alice);
    let info = msg(&out[0]);
    bob.handle_message(now, info.clone(), addr(ALICE));
    settle(now, alice, bob);
    info
}

/// `replaces` (each a whole header value) for Bob's call with Alice, with tags the right way.
fn bob_side_replaces(info: &Message) -> String {
    let bob_tag = info.to().unwrap().tag().unwrap();
    replaces_of(info, &bob_tag)
}

/// Carol's INVITE to Bob with the header lines `lines` (each with its CRLF) added: Carol's
/// agent and the INVITE as received by Bob (his events and what he sent).
fn carol_invites_bob(
    bob: &mut UserAgent,
    now: Instant,
    lines: &str,
) -> (UserAgent, Vec<String>, Vec<(CallId, CallEvent)>) {
    // A seed of its own each time: two INVITEs are two calls (Call-ID, branch).
    static SEED: AtomicU64 = AtomicU64::new(100);
    let seed = SEED.fetch_add(1, Ordering::Relaxed);
    let mut carol = common::agent("carol", CAROL, seed, false, "carol");
    carol.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(sdp("v=0 c\r\n")),
    );
    let (out, _) = drain(&mut carol);
    let text = String::from_utf8_lossy(&out[0].bytes).into_owned();
    let (first, rest) = text.split_once("\r\n").unwrap();
    let invite = Message::parse(format!("{first}\r\n{lines}{rest}").as_bytes()).unwrap();
    bob.handle_message(now, invite, addr(CAROL));
    let (sent, ev) = drain(bob);
    (carol, texts(&sent), call_events(ev))
}

fn texts(out: &[sip_proto::ua::Outgoing]) -> Vec<String> {
    out.iter()
        .map(|o| String::from_utf8_lossy(&o.bytes).into_owned())
        .collect()
}

fn call_events(ev: Vec<UaEvent>) -> Vec<(CallId, CallEvent)> {
    ev.into_iter()
        .filter_map(|e| match e {
            UaEvent::Call(c, e) => Some((c, e)),
            _ => None,
        })
        .collect()
}

/// The final status line Bob sent Carol (the one of `sent` that is a response but 100).
fn final_status(sent: &[String]) -> &str {
    sent.iter()
        .find(|s| s.starts_with("SIP/2.0 ") && !s.starts_with("SIP/2.0 100 "))
        .map(|s| s.lines().next().unwrap())
        .unwrap_or_else(|| panic!("no final response: {sent:#?}"))
}

#[test]
fn an_invite_replacing_a_confirmed_call_is_reported_and_its_answer_byes_the_old_call() {
    let (mut alice, a, mut bob, b, now) = in_call();
    let info = dialog_of(&mut alice, a, &mut bob, now);
    let value = bob_side_replaces(&info);
    let (mut carol, sent, ev) = carol_invites_bob(&mut bob, now, &format!("Replaces: {value}\r\n"));
    // Accepted: an incoming call that names the call it replaces; no refusal sent.
    assert!(
        sent.iter().all(|s| s.starts_with("SIP/2.0 100 ")),
        "{sent:#?}"
    );
    let new = match &ev[..] {
        [
            (
                n,
                CallEvent::Incoming {
                    replaces: Some(old),
                    offer: Some(_),
                    ..
                },
            ),
        ] if *old == b => *n,
        other => panic!("{other:?}"),
    };
    // The old call stays up until the new one is answered.
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    bob.answer(now, new, Some(sdp("v=0 b2\r\n")));
    let (out, _) = drain(&mut bob);
    let out_text = texts(&out);
    assert!(
        out_text[0].starts_with("SIP/2.0 200 OK\r\n"),
        "{out_text:#?}"
    );
    assert!(
        out_text[0].contains("\r\nSupported: replaces\r\n"),
        "{}",
        out_text[0]
    );
    // RFC 3891 §3: the replaced dialog is shut down with BYE, saying why.
    let bye = out_text
        .iter()
        .find(|s| s.starts_with("BYE "))
        .unwrap_or_else(|| panic!("no BYE: {out_text:#?}"));
    assert!(bye.contains(&format!(
        "\r\nCall-ID: {}\r\n",
        info.headers.value(&HeaderName::CallId).unwrap()
    )));
    assert!(
        bye.contains("\r\nReason: SIP;cause=200;text=\"Replaced\"\r\n"),
        "{bye}"
    );
    // Alice hangs up on the BYE; Carol's call is confirmed by her ACK.
    let byes: Vec<_> = out
        .iter()
        .filter(|o| o.bytes.starts_with(b"BYE "))
        .cloned()
        .collect();
    common::deliver(&mut alice, now, BOB, &byes);
    let (a_out, a_ev) = drain(&mut alice);
    assert!(call_events(a_ev).iter().any(|(c, e)| *c == a
        && matches!(
            e,
            CallEvent::Ended {
                by_remote: true,
                ..
            }
        )));
    common::deliver(&mut bob, now, ALICE, &a_out);
    let oks: Vec<_> = out
        .iter()
        .filter(|o| o.bytes.starts_with(b"SIP/2.0 200 "))
        .cloned()
        .collect();
    common::deliver(&mut carol, now, BOB, &oks);
    let (c_out, _) = drain(&mut carol);
    common::deliver(&mut bob, now, CAROL, &c_out);
    let (_, ev) = drain(&mut bob);
    let ev = call_events(ev);
    assert!(
        ev.iter().any(|(c, e)| *c == b
            && matches!(
                e,
                CallEvent::Ended {
                    by_remote: false,
                    code: 200
                }
            )),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|(c, e)| *c == new && matches!(e, CallEvent::Answered { .. })),
        "{ev:?}"
    );
    assert_eq!(bob.call_state(new), Some(CallState::Confirmed));
}

/// Writes the Replaces line(s) of a case from the call's Call-ID, Bob's tag, Alice's tag.
type ReplacesLine = fn(&str, &str, &str) -> String;

#[test]
fn replaces_refusals_481_486_and_400() {
    let cases: [(&str, ReplacesLine, &str); 7] = [
        // The tags the other way round (the to-tag must be Bob's own, RFC 3891 §3).
        (
            "swapped tags",
            |c, b, a| format!("Replaces: {c};to-tag={a};from-tag={b}\r\n"),
            "481",
        ),
        (
            "no such call",
            |_, b, a| format!("Replaces: nope@x;to-tag={b};from-tag={a}\r\n"),
            "481",
        ),
        (
            "early-only, confirmed",
            |c, b, a| format!("Replaces: {c};to-tag={b};from-tag={a};early-only\r\n"),
            "486",
        ),
        (
            "two Replaces",
            |c, b, a| {
                format!(
                    "Replaces: {c};to-tag={b};from-tag={a}\r\nReplaces: {c};to-tag={b};from-tag={a}\r\n"
                )
            },
            "400",
        ),
        (
            "no from-tag",
            |c, b, _| format!("Replaces: {c};to-tag={b}\r\n"),
            "400",
        ),
        (
            "garbage",
            |_, _, _| "Replaces: \u{1}\u{2};;;\r\n".to_owned(),
            "400",
        ),
        // Two values in one line (Replaces is no list header): unreadable.
        (
            "list of two",
            |c, b, a| {
                format!("Replaces: {c};to-tag={b};from-tag={a}, {c};to-tag={b};from-tag={a}\r\n")
            },
            "400",
        ),
    ];
    for (what, line, code) in cases {
        let (mut alice, a, mut bob, b, now) = in_call();
        let info = dialog_of(&mut alice, a, &mut bob, now);
        let cid = info.headers.value(&HeaderName::CallId).unwrap();
        let bob_tag = info.to().unwrap().tag().unwrap();
        let alice_tag = info.from().unwrap().tag().unwrap();
        let (_, sent, ev) = carol_invites_bob(&mut bob, now, &line(cid, &bob_tag, &alice_tag));
        assert!(
            final_status(&sent).starts_with(&format!("SIP/2.0 {code} ")),
            "{what}: {sent:#?}"
        );
        assert!(
            !ev.iter()
                .any(|(_, e)| matches!(e, CallEvent::Incoming { .. })),
            "{what}: {ev:?}"
        );
        // Nothing happened to the call with Alice.
        assert!(drain(&mut bob).0.is_empty(), "{what}");
        assert_eq!(bob.call_state(b), Some(CallState::Confirmed), "{what}");
    }
}

#[test]
fn a_call_already_being_replaced_or_ending_gets_603() {
    let (mut alice, a, mut bob, b, now) = in_call();
    let info = dialog_of(&mut alice, a, &mut bob, now);
    let line = format!("Replaces: {}\r\n", bob_side_replaces(&info));
    let (_, _, ev) = carol_invites_bob(&mut bob, now, &line);
    assert!(matches!(
        ev[..],
        [(
            _,
            CallEvent::Incoming {
                replaces: Some(_),
                ..
            }
        )]
    ));
    assert!(
        ev.iter()
            .any(|(_, e)| matches!(e, CallEvent::Incoming { replaces: Some(o), .. } if *o == b))
    );
    // A second INVITE for the same call while the first one's is not answered yet.
    let (_, sent, _) = carol_invites_bob(&mut bob, now, &line);
    assert!(final_status(&sent).starts_with("SIP/2.0 603 "), "{sent:#?}");
    // Bob hangs up: his BYE is in flight, the call is ending.
    let (mut alice2, a2, mut bob2, b2, now) = in_call();
    let info = dialog_of(&mut alice2, a2, &mut bob2, now);
    bob2.hangup(now, b2);
    drain(&mut bob2);
    let line = format!("Replaces: {}\r\n", bob_side_replaces(&info));
    let (_, sent, _) = carol_invites_bob(&mut bob2, now, &line);
    assert!(final_status(&sent).starts_with("SIP/2.0 603 "), "{sent:#?}");
}

/// RFC 3891 §3: "If the Replaces header field matches a dialog which has already
/// terminated, the UA SHOULD decline the request with a 603 Declined response": the call
/// ended (BYE answered) and forgotten by the agent, the INVITE naming it gets 603, and one
/// naming a dialog that never was still gets 481.
#[test]
fn a_call_that_has_ended_gets_603_and_an_unknown_one_481() {
    let (mut alice, a, mut bob, b, now) = in_call();
    let info = dialog_of(&mut alice, a, &mut bob, now);
    bob.hangup(now, b);
    settle(now, &mut alice, &mut bob);
    assert_eq!(bob.call_state(b), Some(CallState::Terminated));
    bob.forget_call(b);
    assert_eq!(bob.call_state(b), None);
    let ended = bob_side_replaces(&info);
    let (_, sent, ev) = carol_invites_bob(&mut bob, now, &format!("Replaces: {ended}\r\n"));
    assert!(final_status(&sent).starts_with("SIP/2.0 603 "), "{sent:#?}");
    assert!(ev.is_empty(), "{ev:?}");
    let unknown = ended.replacen(';', "x;", 1);
    let (_, sent, _) = carol_invites_bob(&mut bob, now, &format!("Replaces: {unknown}\r\n"));
    assert!(final_status(&sent).starts_with("SIP/2.0 481 "), "{sent:#?}");
}

#[test]
fn an_early_dialog_we_did_not_start_gets_481_and_one_we_started_is_cancelled() {
    // Bob's incoming call from Alice, ringing: not his to replace (RFC 3891 §3).
    let now = Instant::now();
    let (mut alice, _a, mut bob, b) = calling(now, false, true);
    bob.ring(now, b);
    let (out, _) = drain(&mut bob);
    let ringing = msg(out
        .iter()
        .find(|o| o.bytes.starts_with(b"SIP/2.0 180 "))
        .unwrap());
    common::deliver(&mut alice, now, BOB, &out);
    drain(&mut alice);
    let line = format!(
        "Replaces: {}\r\n",
        replaces_of(&ringing, &ringing.to().unwrap().tag().unwrap())
    );
    let (_, sent, _) = carol_invites_bob(&mut bob, now, &line);
    assert!(final_status(&sent).starts_with("SIP/2.0 481 "), "{sent:#?}");
    assert_eq!(bob.call_state(b), Some(CallState::Early));

    // Alice's own call, early at her side: Carol's INVITE to Alice replacing it is accepted,
    // and its answer CANCELs Alice's INVITE (RFC 3891 §3).
    let alice_tag = ringing.from().unwrap().tag().unwrap();
    let bob_tag = ringing.to().unwrap().tag().unwrap();
    let cid = ringing.headers.value(&HeaderName::CallId).unwrap();
    let mut carol = common::agent("carol", CAROL, 33, false, "carol");
    carol.call(
        now,
        Uri::parse("sip:alice@127.0.0.1:5062").unwrap(),
        Some(sdp("v=0 c\r\n")),
    );
    let (out, _) = drain(&mut carol);
    let text = String::from_utf8_lossy(&out[0].bytes).into_owned();
    let (first, rest) = text.split_once("\r\n").unwrap();
    let line = format!("Replaces: {cid};to-tag={alice_tag};from-tag={bob_tag}\r\n");
    let invite = Message::parse(format!("{first}\r\n{line}{rest}").as_bytes()).unwrap();
    alice.handle_message(now, invite, addr(CAROL));
    let (_, ev) = drain(&mut alice);
    let ev = call_events(ev);
    let (new, old) = match &ev[..] {
        [
            (
                n,
                CallEvent::Incoming {
                    replaces: Some(o), ..
                },
            ),
        ] => (*n, *o),
        other => panic!("{other:?}"),
    };
    alice.answer(now, new, Some(sdp("v=0 a2\r\n")));
    let (out, _) = drain(&mut alice);
    let out = texts(&out);
    assert!(
        out.iter().any(|s| s.starts_with("SIP/2.0 200 OK\r\n")),
        "{out:#?}"
    );
    assert!(out.iter().any(|s| s.starts_with("CANCEL ")), "{out:#?}");
    assert_eq!(alice.call_state(old), Some(CallState::Terminating));
}

#[test]
fn options_answers_and_our_invite_say_supported_replaces() {
    let (_alice, _a, mut bob, _b, now) = in_call();
    let text = "OPTIONS sip:bob@127.0.0.1:5064 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5066;branch=z9hG4bKopt1\r\n\
        Max-Forwards: 70\r\nFrom: <sip:carol@example.test>;tag=c1\r\n\
        To: <sip:bob@example.test>\r\nCall-ID: opt1@x\r\nCSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    bob.handle_message(now, Message::parse(text.as_bytes()).unwrap(), addr(CAROL));
    let (out, _) = drain(&mut bob);
    let t = texts(&out);
    assert!(t[0].starts_with("SIP/2.0 200 OK\r\n"), "{t:#?}");
    assert!(t[0].contains("\r\nSupported: replaces\r\n"), "{}", t[0]);
}

/// Alice refers Bob with `refer_to` (a whole header value): what Bob sends and reports.
fn alice_refers_bob(refer_to: &str) -> (Vec<String>, Vec<(CallId, CallEvent)>, CallId) {
    let (mut alice, a, mut bob, b, now) = in_call();
    assert!(alice.refer(now, a, &Uri::parse("sip:carol@127.0.0.1:5066").unwrap()));
    let (out, _) = drain(&mut alice);
    let text = String::from_utf8_lossy(&out[0].bytes).replace(
        "Refer-To: <sip:carol@127.0.0.1:5066>",
        &format!("Refer-To: {refer_to}"),
    );
    bob.handle_message(now, Message::parse(text.as_bytes()).unwrap(), addr(ALICE));
    let (sent, ev) = drain(&mut bob);
    (texts(&sent), call_events(ev), b)
}

#[test]
fn a_refer_with_replaces_makes_an_invite_carrying_that_replaces() {
    let (sent, ev, b) = alice_refers_bob(
        "<sip:carol@127.0.0.1:5066?Replaces=abc%40pbx.example.test%3Bto-tag%3Dct1%3Bfrom-tag%3Dat1>",
    );
    assert!(sent[0].starts_with("SIP/2.0 202 "), "{sent:#?}");
    let invite = sent
        .iter()
        .find(|s| s.starts_with("INVITE "))
        .unwrap_or_else(|| panic!("no INVITE: {sent:#?}"));
    // The URI headers are not in the Request-URI (RFC 3261 §19.1.5), they are its headers.
    assert!(
        invite.starts_with("INVITE sip:carol@127.0.0.1:5066 SIP/2.0\r\n"),
        "{invite}"
    );
    assert!(
        invite.contains("\r\nReplaces: abc@pbx.example.test;to-tag=ct1;from-tag=at1\r\n"),
        "{invite}"
    );
    assert!(
        matches!(&ev[..], [(c, CallEvent::Referred { .. })] if *c == b),
        "{ev:?}"
    );
}

#[test]
fn a_refer_with_other_uri_headers_or_a_broken_replaces_is_refused() {
    for (refer_to, code) in [
        // Headers we do not put in an INVITE: refused, saying which.
        ("<sip:carol@127.0.0.1:5066?Subject=hi>", "403"),
        (
            "<sip:carol@127.0.0.1:5066?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&Subject=x>",
            "403",
        ),
        // A Replaces that is no Replaces (RFC 3891 §6.1): 400.
        ("<sip:carol@127.0.0.1:5066?Replaces=a%3Bto-tag%3D1>", "400"),
        (
            "<sip:carol@127.0.0.1:5066?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&Replaces=b%3Bto-tag%3D1%3Bfrom-tag%3D2>",
            "400",
        ),
        ("<sip:carol@127.0.0.1:5066;method=BYE>", "403"),
    ] {
        let (sent, ev, _) = alice_refers_bob(refer_to);
        assert!(
            sent[0].starts_with(&format!("SIP/2.0 {code} ")),
            "{refer_to}: {sent:#?}"
        );
        assert!(!sent.iter().any(|s| s.starts_with("INVITE ")), "{refer_to}");
        assert!(ev.is_empty(), "{refer_to}: {ev:?}");
    }
}

#[test]
fn the_transferors_replaces_uri_names_the_dialog_as_its_peer_sees_it() {
    // RFC 3891 §7: Alice (transferor) consulted Bob (target) in the call she placed; her
    // Refer-To names that dialog as Bob sees it, escaped, and Bob takes an INVITE carrying
    // it as replacing his call. Bob's view of the same call names it the other way round.
    let (mut alice, a, mut bob, b, now) = in_call();
    let target = Uri::parse("sip:bob@example.com;transport=udp").unwrap();
    let uri = alice.replaces_uri(a, &target).unwrap().to_string();
    let (base, value) = uri.split_once("?Replaces=").unwrap();
    assert_eq!(base, "sip:bob@example.com;transport=udp");
    assert!(!value.contains(['@', ';', '=']), "{value}");
    let info = dialog_of(&mut alice, a, &mut bob, now);
    assert_eq!(sip_msg::unescape(value), bob_side_replaces(&info));
    let (_carol, sent, ev) = carol_invites_bob(
        &mut bob,
        now,
        &format!("Replaces: {}\r\n", sip_msg::unescape(value)),
    );
    assert!(
        sent.iter().all(|s| s.starts_with("SIP/2.0 100 ")),
        "{sent:#?}"
    );
    assert!(
        matches!(&ev[..], [(_, CallEvent::Incoming { replaces: Some(old), .. })] if *old == b),
        "{ev:?}"
    );
    // From Bob's end, his call with Alice: to-tag hers, from-tag his.
    let alice_uri = Uri::parse("sip:alice@example.com").unwrap();
    let from_bob = bob.replaces_uri(b, &alice_uri).unwrap().to_string();
    let theirs = sip_msg::unescape(from_bob.split_once("?Replaces=").unwrap().1);
    let (cid, tags) = theirs.split_once(";to-tag=").unwrap();
    let (to_tag, from_tag) = tags.split_once(";from-tag=").unwrap();
    assert_eq!(
        format!("{cid};to-tag={from_tag};from-tag={to_tag}"),
        bob_side_replaces(&info)
    );
    // No dialog, no Replaces; a tel: target cannot carry one.
    assert!(alice.replaces_uri(CallId(9999), &target).is_none());
    let tel = Uri::parse("tel:+15550100").unwrap();
    assert!(alice.replaces_uri(a, &tel).is_none());
}
