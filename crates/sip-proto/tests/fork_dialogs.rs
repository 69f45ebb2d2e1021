//! The early dialogs of a forked INVITE (RFC 3261 §12.1.2, §12.2.2, §13.2.2.4; RFC 3311):
//! requests a fork sends in its own early dialog are answered in that dialog, our UPDATE
//! names the fork it goes to, each 1xx refreshes its early dialog's remote target, and a
//! 2xx without Contact is still ACKed (then ended with BYE and reported), glare retries are
//! kept per dialog and a BYE in an early dialog ends that dialog only. Alice's INVITE
//! reaches Bob and Carol (what a forking proxy does). Agents on a virtual clock, through the
//! public API.

use std::time::Instant;

use bytes::Bytes;
use sip_msg::{HeaderName, Message, Method};
use sip_proto::ua::{CallEvent, CallId, CallState, Destination, Outgoing, UaEvent, UserAgent};

mod common;
use common::{
    ALICE, BOB, CAROL, addr, call_events, deliver, drain, incoming, msg, of, seq, to_tag,
};

/// A phone the INVITE reached: its agent, call, port and (once it rang) To tag.
struct Fork {
    ua: UserAgent,
    call: CallId,
    port: u16,
    tag: String,
}

impl Fork {
    /// Rings; returns the 180 (not delivered).
    fn ring(&mut self, now: Instant) -> Vec<Outgoing> {
        self.ua.ring(now, self.call);
        let (out, _) = drain(&mut self.ua);
        let r = of(&out, "SIP/2.0 180 ");
        assert_eq!(r.len(), 1, "{out:?}");
        self.tag = to_tag(&msg(r[0]));
        out
    }

    /// Sends a reliable 183 with early media SDP (its answer to Alice's offer, RFC 3262):
    /// returns it (not delivered).
    fn early_answer(&mut self, now: Instant) -> Vec<Outgoing> {
        self.ua
            .progress(now, self.call, Bytes::from_static(b"v=0 early\r\n"));
        let (out, _) = drain(&mut self.ua);
        let r = of(&out, "SIP/2.0 183 ");
        assert_eq!(r.len(), 1, "{out:?}");
        self.tag = to_tag(&msg(r[0]));
        out
    }

    /// Sends UPDATE in its (early) dialog to Alice, who must answer it 200 in that dialog;
    /// the answer is delivered back and the fork reports it. Returns the UPDATE's CSeq.
    fn update(&mut self, alice: &mut UserAgent, now: Instant) -> u32 {
        assert!(self.ua.update(now, self.call, None));
        let (out, _) = drain(&mut self.ua);
        let update = of(&out, "UPDATE ");
        assert_eq!(update.len(), 1, "{out:?}");
        let cseq = seq(&msg(update[0]));
        deliver(alice, now, self.port, &out);
        let (reply, _) = drain(alice);
        assert!(of(&reply, "SIP/2.0 481 ").is_empty(), "{reply:?}");
        let ok = of(&reply, "SIP/2.0 200 ");
        assert_eq!(ok.len(), 1, "{reply:?}");
        let ok = msg(ok[0]);
        assert_eq!(ok.from().unwrap().tag().unwrap(), self.tag);
        assert_eq!(ok.cseq().unwrap().method, Method::Update);
        deliver(&mut self.ua, now, ALICE, &reply);
        let (_, ev) = drain(&mut self.ua);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                UaEvent::Call(
                    _,
                    CallEvent::Modified {
                        method: Method::Update,
                        code: 200,
                        ..
                    }
                )
            )),
            "{ev:?}"
        );
        cseq
    }
}

/// `ev` reports the 200 to our UPDATE in `call`.
fn assert_update_ok(ev: &[UaEvent], call: CallId) {
    assert!(
        ev.iter().any(|e| matches!(e,
            UaEvent::Call(c, CallEvent::Modified { method: Method::Update, code: 200, .. })
                if *c == call)),
        "{ev:?}"
    );
}

/// The port of a request's destination (the remote target or first route).
fn port_of(o: &Outgoing) -> u16 {
    match &o.destination {
        Destination::Uri(u) => u.to_string().rsplit(':').next().unwrap().parse().unwrap(),
        d => panic!("not to a URI: {d:?}"),
    }
}

/// Delivers Alice's PRACKs (100rel) to the fork each is for, and their 200s back.
fn pracks_answered(alice: &mut UserAgent, now: Instant, forks: &mut [&mut Fork]) {
    let (out, _) = drain(alice);
    for p in of(&out, "PRACK ") {
        let f = forks.iter_mut().find(|f| f.port == port_of(p)).unwrap();
        deliver(&mut f.ua, now, ALICE, std::slice::from_ref(p));
        let (ok, _) = drain(&mut f.ua);
        assert_eq!(of(&ok, "SIP/2.0 200 ").len(), 1, "{ok:?}");
        deliver(alice, now, f.port, &ok);
        drain(alice);
    }
}

/// Alice calls Bob; the INVITE reaches Bob and Carol. `use_100rel`: all three use RFC 3262.
fn forked(now: Instant, use_100rel: bool) -> (UserAgent, CallId, Fork, Fork) {
    let agent = |user: &str, port, seed| common::agent(user, port, seed, use_100rel, "forks3");
    let mut alice = agent("alice", ALICE, 1);
    let (call, invite) = common::call_bob(&mut alice, now);
    let fork = |port, seed| {
        let mut ua = agent(if port == BOB { "bob" } else { "carol" }, port, seed);
        let call = incoming(&mut ua, now, &invite);
        Fork {
            ua,
            call,
            port,
            tag: String::new(),
        }
    };
    (alice, call, fork(BOB, 2), fork(CAROL, 3))
}

/// Bob and Carol both ring (PRACKed with 100rel).
fn both_ringing(now: Instant, use_100rel: bool) -> (UserAgent, CallId, Fork, Fork) {
    let (mut alice, call, mut bob, mut carol) = forked(now, use_100rel);
    for f in [&mut bob, &mut carol] {
        let ringing = f.ring(now);
        deliver(&mut alice, now, f.port, &ringing);
        pracks_answered(&mut alice, now, &mut [f]);
    }
    assert_eq!(alice.call_state(call), Some(CallState::Early));
    (alice, call, bob, carol)
}

/// Bob and Carol both answer Alice's offer early (reliable 183 with SDP, PRACKed): in each
/// early dialog either side may send an UPDATE offer (RFC 3311 §5.1).
fn both_answered_early(now: Instant) -> (UserAgent, CallId, Fork, Fork) {
    let (mut alice, call, mut bob, mut carol) = forked(now, true);
    for f in [&mut bob, &mut carol] {
        let early = f.early_answer(now);
        deliver(&mut alice, now, f.port, &early);
        pracks_answered(&mut alice, now, &mut [f]);
    }
    assert_eq!(alice.call_state(call), Some(CallState::Early));
    (alice, call, bob, carol)
}

/// RFC 3261 §12.2.2 (a request is in the dialog of its Call-ID and tags), RFC 3311 §5.1 (UPDATE
/// in an early dialog): Carol, the second fork, sends UPDATEs in her early dialog and Alice
/// answers them 200 there (before: 481, only Bob's dialog was looked at). Each dialog has
/// its own CSeq numbers (§12.2.2): Bob's first UPDATE (CSeq 1) after Carol's second (CSeq 2)
/// is in order in Bob's dialog.
#[test]
fn requests_in_the_second_forks_early_dialog_are_answered_in_that_dialog() {
    for use_100rel in [false, true] {
        let now = Instant::now();
        let (mut alice, call, mut bob, mut carol) = both_ringing(now, use_100rel);
        assert_eq!(carol.update(&mut alice, now), 1, "100rel {use_100rel}");
        assert_eq!(carol.update(&mut alice, now), 2, "100rel {use_100rel}");
        assert_eq!(bob.update(&mut alice, now), 1, "100rel {use_100rel}");
        assert_eq!(alice.call_state(call), Some(CallState::Early));
        // Carol answers: the call goes on in her dialog.
        carol.ua.answer(now, carol.call, None);
        let (ok, _) = drain(&mut carol.ua);
        deliver(&mut alice, now, CAROL, &ok);
        let (out, _) = drain(&mut alice);
        let ack = of(&out, "ACK ");
        assert_eq!(ack.len(), 1, "{out:?}");
        assert_eq!(to_tag(&msg(ack[0])), carol.tag);
        assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    }
}

/// Our UPDATE while early names its fork (`update_fork`, by the fork's To tag, listed by
/// `fork_tags`); `update` goes to the first fork's early dialog (the first 1xx with a To
/// tag). Each goes in its fork's dialog: its To tag, its Contact, its own CSeq numbers.
#[test]
fn our_update_while_early_goes_to_the_fork_it_names() {
    for use_100rel in [false, true] {
        let now = Instant::now();
        let (mut alice, call, mut bob, mut carol) = both_ringing(now, use_100rel);
        let tags: Vec<String> = alice.fork_tags(call).map(str::to_owned).collect();
        assert_eq!(tags, [bob.tag.clone(), carol.tag.clone()]);
        // After its PRACK (100rel) each early dialog's next CSeq is 3, else 2.
        let next = if use_100rel { 3 } else { 2 };
        for (bob_s, by_tag) in [(true, false), (false, true), (true, true)] {
            let f = if bob_s { &mut bob } else { &mut carol };
            let sent = if by_tag {
                alice.update_fork(now, call, &f.tag, None)
            } else {
                alice.update(now, call, None)
            };
            assert!(sent);
            let (out, _) = drain(&mut alice);
            let update = of(&out, "UPDATE ");
            assert_eq!(update.len(), 1, "{out:?}");
            let m = msg(update[0]);
            assert_eq!(to_tag(&m), f.tag);
            assert_eq!(port_of(update[0]), f.port);
            let contact = format!("sip:{}@127.0.0.1:{}", f.ua.user(), f.port);
            assert_eq!(m.request_uri().unwrap().to_string(), contact);
            assert!(seq(&m) >= next, "{m:?}");
            deliver(&mut f.ua, now, ALICE, &out);
            let (ok, _) = drain(&mut f.ua);
            assert_eq!(of(&ok, "SIP/2.0 200 ").len(), 1, "{ok:?}");
            deliver(&mut alice, now, f.port, &ok);
            let (_, ev) = drain(&mut alice);
            assert_update_ok(&ev, call);
        }
        assert!(!alice.update_fork(now, call, "no-such-tag", None));
        // Carol answers: her dialog is the call's; it goes on from her early dialog's CSeq.
        carol.ua.answer(now, carol.call, None);
        let (ok, _) = drain(&mut carol.ua);
        deliver(&mut alice, now, CAROL, &ok);
        drain(&mut alice);
        let tags: Vec<&str> = alice.fork_tags(call).collect();
        assert_eq!(tags, [carol.tag.as_str()]);
        alice.hangup(now, call);
        let (out, _) = drain(&mut alice);
        let bye = of(&out, "BYE ");
        assert_eq!(bye.len(), 1, "{out:?}");
        assert_eq!(seq(&msg(bye[0])), next + 1);
        deliver(&mut carol.ua, now, ALICE, &out);
        let (reply, _) = drain(&mut carol.ua);
        assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
    }
}

/// The first message of `out` with its Contact's port `from` replaced by `to`.
fn moved(out: &[Outgoing], from: u16, to: u16) -> Message {
    let text = String::from_utf8(out[0].bytes.to_vec()).unwrap();
    let text: String = text
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with("Contact:") {
                l.replace(&format!(":{from}>"), &format!(":{to}>"))
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(text.contains(&format!(":{to}>")), "{text}");
    Message::parse(text.as_bytes()).unwrap()
}

/// RFC 3261 §12.1.2, §13.2.2.4 (and RFC 3262 §4, RFC 3311 §5.1 for what is sent in it): an
/// early dialog's remote target is the Contact of the latest 1xx of its fork, not only of the
/// first one. Bob, then Carol, ring again from a new Contact: Alice's next request in each
/// fork's early dialog (UPDATE; with 100rel the PRACK of that 1xx too) goes there.
#[test]
fn each_provisional_refreshes_its_forks_remote_target() {
    for use_100rel in [false, true] {
        let now = Instant::now();
        let (mut alice, call, mut bob, mut carol) = both_ringing(now, use_100rel);
        for (f, new_port) in [(&mut bob, 5099), (&mut carol, 5098)] {
            let again = f.ring(now);
            let again = moved(&again, f.port, new_port);
            alice.handle_message(now, again, addr(f.port));
            let (out, _) = drain(&mut alice);
            let want = format!("sip:{}@127.0.0.1:{new_port}", f.ua.user());
            if use_100rel {
                let prack = of(&out, "PRACK ");
                assert_eq!(prack.len(), 1, "{out:?}");
                assert_eq!(msg(prack[0]).request_uri().unwrap().to_string(), want);
                assert_eq!(port_of(prack[0]), new_port);
            } else {
                assert!(out.is_empty(), "{out:?}");
            }
            assert!(alice.update_fork(now, call, &f.tag, None));
            let (out, _) = drain(&mut alice);
            let update = of(&out, "UPDATE ");
            assert_eq!(update.len(), 1, "{out:?}");
            assert_eq!(msg(update[0]).request_uri().unwrap().to_string(), want);
            assert_eq!(port_of(update[0]), new_port);
        }
    }
}

/// The 200 in `ok` without its Contact line.
fn without_contact(ok: &[Outgoing]) -> Message {
    let ok = of(ok, "SIP/2.0 200 ");
    assert_eq!(ok.len(), 1);
    let text = String::from_utf8(ok[0].bytes.to_vec()).unwrap();
    let text: String = text
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Contact:"))
        .collect();
    let m = Message::parse(text.as_bytes()).unwrap();
    assert!(m.headers.value(&HeaderName::Contact).is_none());
    m
}

/// The ACK and BYE Alice sends for a 2xx without Contact (RFC 3261 §12.1.1 requires one):
/// the remote target is unknown, so both go to the INVITE's Request-URI (the target that
/// reached the UAS), sent there (no route set), in that 2xx's dialog. Returns them.
fn acked_and_byed(out: &[Outgoing], tag: &str, bye_seq: u32) -> Vec<Outgoing> {
    let ack = of(out, "ACK ");
    let bye = of(out, "BYE ");
    assert_eq!((ack.len(), bye.len(), out.len()), (1, 1, 2), "{out:?}");
    for (o, s) in [(ack[0], 1), (bye[0], bye_seq)] {
        let m = msg(o);
        assert_eq!(
            m.request_uri().unwrap().to_string(),
            "sip:bob@127.0.0.1:5064"
        );
        assert_eq!(port_of(o), BOB, "{o:?}");
        assert_eq!(to_tag(&m), tag);
        assert_eq!(seq(&m), s);
    }
    out.to_vec()
}

/// RFC 3261 §13.2.2.4: the UAC core ACKs every 2xx; a 2xx without Contact (a protocol
/// violation, §12.1.1) was neither ACKed nor ended (the UAS retransmitted it until Timer H
/// and its dialog stayed up). Now it is ACKed towards the INVITE's target and ended with BYE
/// at once; the call reports the violation as its failure. A retransmission gets the ACK
/// again, no second BYE. The same for another fork's 2xx without Contact.
#[test]
fn a_2xx_without_contact_is_acked_then_ended_and_reported() {
    // The only fork.
    let now = Instant::now();
    let (mut alice, call, mut bob, _carol) = forked(now, false);
    bob.ring(now);
    bob.ua.answer(now, bob.call, None);
    let (ok, _) = drain(&mut bob.ua);
    let bad = without_contact(&ok);
    alice.handle_message(now, bad.clone(), addr(BOB));
    let (out, ev) = drain(&mut alice);
    let sent = acked_and_byed(&out, &bob.tag, 2);
    assert!(
        ev.iter().any(|e| matches!(e,
            UaEvent::Call(c, CallEvent::Failed { code: 200, reason })
                if *c == call && reason.contains("Contact"))),
        "{ev:?}"
    );
    assert_eq!(alice.call_state(call), Some(CallState::Terminated));
    // Bob takes the ACK (his call is answered) and the BYE (it ends).
    deliver(&mut bob.ua, now, ALICE, &sent);
    let (reply, ev) = drain(&mut bob.ua);
    assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
    assert!(
        ev.iter()
            .any(|e| matches!(e, UaEvent::Call(_, CallEvent::Answered { .. }))),
        "{ev:?}"
    );
    assert_eq!(bob.ua.call_state(bob.call), Some(CallState::Terminated));
    deliver(&mut alice, now, BOB, &reply);
    drain(&mut alice);
    // The 2xx again: the ACK again, nothing else.
    alice.handle_message(now, bad, addr(BOB));
    let (again, _) = drain(&mut alice);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].bytes, of(&sent, "ACK ")[0].bytes);

    // Another fork's 2xx without Contact, after Bob's proper one.
    let (mut alice, call, mut bob, mut carol) = forked(now, false);
    for f in [&mut bob, &mut carol] {
        let ringing = f.ring(now);
        deliver(&mut alice, now, f.port, &ringing);
    }
    bob.ua.answer(now, bob.call, None);
    let (ok, _) = drain(&mut bob.ua);
    deliver(&mut alice, now, BOB, &ok);
    drain(&mut alice);
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    carol.ua.answer(now, carol.call, None);
    let (ok, _) = drain(&mut carol.ua);
    let bad = without_contact(&ok);
    for round in 0..2 {
        alice.handle_message(now, bad.clone(), addr(CAROL));
        let (out, ev) = drain(&mut alice);
        if round == 0 {
            let sent = acked_and_byed(&out, &carol.tag, 2);
            deliver(&mut carol.ua, now, ALICE, &sent);
            let (reply, _) = drain(&mut carol.ua);
            assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
            assert_eq!(carol.ua.call_state(carol.call), Some(CallState::Terminated));
        } else {
            assert_eq!((of(&out, "ACK ").len(), out.len()), (1, 1), "{out:?}");
        }
        assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    }
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
}

/// RFC 3311 §5.2 per dialog: our UPDATE offer pending in Bob's early dialog crosses Bob's
/// UPDATE offer (491), not Carol's, which is in her own early dialog (200). (Each fork
/// answered Alice's INVITE offer early: before that, no UPDATE offer may cross it.)
#[test]
fn an_update_offer_crosses_ours_only_in_the_same_early_dialog() {
    let now = Instant::now();
    let (mut alice, call, mut bob, mut carol) = both_answered_early(now);
    assert!(alice.update_fork(now, call, &bob.tag, Some(Bytes::from_static(b"v=0 a\r\n"))));
    let (ours, _) = drain(&mut alice);
    assert_eq!(of(&ours, "UPDATE ").len(), 1, "{ours:?}");
    for (f, code) in [(&mut carol, "200"), (&mut bob, "491")] {
        assert!(f.ua.update(now, f.call, Some(Bytes::from_static(b"v=0 f\r\n"))));
        let (out, _) = drain(&mut f.ua);
        deliver(&mut alice, now, f.port, &out);
        let (reply, _) = drain(&mut alice);
        let r = of(&reply, &format!("SIP/2.0 {code} "));
        assert_eq!((r.len(), reply.len()), (1, 1), "{}: {reply:?}", f.ua.user());
        deliver(&mut f.ua, now, ALICE, &reply);
        drain(&mut f.ua);
    }
    // Ours reaches Bob, whose UPDATE is refused (he waits to send it again): answered 200.
    deliver(&mut bob.ua, now, ALICE, &ours);
    let (ok, _) = drain(&mut bob.ua);
    assert_eq!(of(&ok, "SIP/2.0 200 ").len(), 1, "{ok:?}");
    deliver(&mut alice, now, BOB, &ok);
    let (_, ev) = drain(&mut alice);
    assert_update_ok(&ev, call);
}

/// RFC 3261 §14.1 per dialog (RFC 3311 §5.1 for UPDATE): our UPDATE refused with 491 in
/// Bob's early dialog waits to go again there; an UPDATE we send in Carol's dialog does not
/// replace it (another dialog, another offer), nor does one naming no fork (not sent at
/// all). Bob's is sent again after Alice's 2.1–4 s (she owns the Call-ID). Before, either
/// dropped the waiting retry: no UPDATE again and no outcome.
#[test]
fn an_update_in_another_fork_keeps_the_waiting_retry() {
    let now = Instant::now();
    let (mut alice, call, mut bob, carol) = both_answered_early(now);
    assert!(alice.update_fork(now, call, &bob.tag, Some(Bytes::from_static(b"v=0 a\r\n"))));
    let (ours, _) = drain(&mut alice);
    // Bob's own offer is pending when ours reaches him: 491 (RFC 3311 §5.2).
    assert!(
        bob.ua
            .update(now, bob.call, Some(Bytes::from_static(b"v=0 b\r\n")))
    );
    drain(&mut bob.ua);
    deliver(&mut bob.ua, now, ALICE, &ours);
    let (refused, _) = drain(&mut bob.ua);
    assert_eq!(of(&refused, "SIP/2.0 491 ").len(), 1, "{refused:?}");
    deliver(&mut alice, now, BOB, &refused);
    drain(&mut alice);
    assert!(!alice.update_fork(now, call, "no-such-tag", None));
    assert!(alice.update_fork(
        now,
        call,
        &carol.tag,
        Some(Bytes::from_static(b"v=0 c\r\n"))
    ));
    drain(&mut alice);
    let later = now + std::time::Duration::from_millis(4010);
    alice.handle_timeout(later);
    let (out, ev) = drain(&mut alice);
    let again: Vec<_> = of(&out, "UPDATE ")
        .into_iter()
        .filter(|o| port_of(o) == BOB)
        .collect();
    assert_eq!(again.len(), 1, "{out:?} {ev:?}");
    assert_eq!(msg(again[0]).body().as_ref(), b"v=0 a\r\n");
}

/// RFC 3261 §14.1 per dialog: Alice's UPDATE offers in Bob's and in Carol's early dialogs are
/// each refused with 491 (each fork's own offer crossed it, RFC 3311 §5.2); both go again
/// after her 2.1–4 s, each in its dialog with its offer. Before, the call held one retry:
/// the second 491 was reported as that UPDATE's outcome and never retried.
#[test]
fn two_forks_each_keep_their_glare_retry() {
    let now = Instant::now();
    let (mut alice, call, mut bob, mut carol) = both_answered_early(now);
    for (f, ours) in [(&mut bob, "v=0 a1\r\n"), (&mut carol, "v=0 a2\r\n")] {
        assert!(alice.update_fork(now, call, &f.tag, Some(Bytes::from(ours))));
        let (out, _) = drain(&mut alice);
        assert!(f.ua.update(now, f.call, Some(Bytes::from_static(b"v=0 f\r\n"))));
        let (theirs, _) = drain(&mut f.ua);
        deliver(&mut f.ua, now, ALICE, &out);
        deliver(&mut alice, now, f.port, &theirs);
        let (a, _) = drain(&mut alice);
        let (b, _) = drain(&mut f.ua);
        assert_eq!(of(&a, "SIP/2.0 491 ").len(), 1, "{a:?}");
        assert_eq!(of(&b, "SIP/2.0 491 ").len(), 1, "{b:?}");
        deliver(&mut alice, now, f.port, &b);
        let (_, ev) = drain(&mut alice);
        assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    }
    alice.handle_timeout(now + std::time::Duration::from_millis(4010));
    let (out, ev) = drain(&mut alice);
    assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    for (f, ours) in [(&bob, "v=0 a1\r\n"), (&carol, "v=0 a2\r\n")] {
        let again: Vec<_> = of(&out, "UPDATE ")
            .into_iter()
            .filter(|o| port_of(o) == f.port)
            .collect();
        assert_eq!(again.len(), 1, "{out:?}");
        let m = msg(again[0]);
        assert_eq!(to_tag(&m), f.tag);
        assert_eq!(m.body().as_ref(), ours.as_bytes());
    }
}

/// A BYE `f` sends in its early dialog (forged from its UPDATE: RFC 3261 §15 forbids a
/// callee to send one, the API does not).
fn early_bye(f: &mut Fork, now: Instant) -> Message {
    assert!(f.ua.update(now, f.call, None));
    as_bye(&drain(&mut f.ua).0)
}

/// The UPDATE first in `out` as a BYE (same dialog, CSeq number and branch).
fn as_bye(out: &[Outgoing]) -> Message {
    let text = String::from_utf8(out[0].bytes.to_vec()).unwrap();
    let bye = text
        .replacen("UPDATE ", "BYE ", 1)
        .replacen(" UPDATE\r\n", " BYE\r\n", 1);
    Message::parse(bye.as_bytes()).unwrap()
}

/// Alice's INVITE rings at Bob only (Carol never answers): Alice has his 180.
fn only_bob_ringing(now: Instant, use_100rel: bool) -> (UserAgent, CallId, Fork) {
    let (mut alice, call, mut bob, _carol) = forked(now, use_100rel);
    let ringing = bob.ring(now);
    deliver(&mut alice, now, BOB, &ringing);
    if use_100rel {
        pracks_answered(&mut alice, now, &mut [&mut bob]);
    } else {
        drain(&mut alice);
    }
    (alice, call, bob)
}

/// RFC 3261 §15 (a callee MUST NOT send BYE in an early dialog), §15.1.2 and §12.2.2 (a BYE
/// matching a dialog is answered 2xx and ends that dialog's session): the same for the first
/// fork (Bob) as for another (Carol). The BYE gets 200, is reported as the peer's protocol
/// violation, and ends that fork's early dialog only (its later requests get 481, it is no
/// longer among `fork_tags`); the call rings on with the other fork, which may answer.
/// Before: Bob's BYE ended the whole call (Ended by remote, nothing about the violation),
/// Carol's left her dialog in place.
#[test]
fn a_bye_in_an_early_dialog_ends_that_dialog_only_whichever_fork() {
    for first in [true, false] {
        let now = Instant::now();
        let (mut alice, call, mut bob, mut carol) = both_ringing(now, false);
        let (gone, stays) = if first {
            (&mut bob, &mut carol)
        } else {
            (&mut carol, &mut bob)
        };
        let bye = early_bye(gone, now);
        alice.handle_message(now, bye, addr(gone.port));
        let (reply, ev) = drain(&mut alice);
        assert_eq!(
            (of(&reply, "SIP/2.0 200 ").len(), reply.len()),
            (1, 1),
            "first fork {first}: {reply:?}"
        );
        assert!(
            ev.iter().any(
                |e| matches!(e, UaEvent::Ignored { what } if what.contains("BYE") && what.contains("§15"))
            ),
            "{ev:?}"
        );
        assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
        assert_eq!(alice.call_state(call), Some(CallState::Early));
        let tags: Vec<&str> = alice.fork_tags(call).collect();
        assert_eq!(tags, [stays.tag.as_str()], "first fork {first}");
        // Its early dialog is over: its next request there matches none.
        assert!(gone.ua.update(now, gone.call, None));
        let (out, _) = drain(&mut gone.ua);
        deliver(&mut alice, now, gone.port, &out);
        let (reply, _) = drain(&mut alice);
        assert_eq!(of(&reply, "SIP/2.0 481 ").len(), 1, "{reply:?}");
        // The other one answers: the call is up in its dialog.
        stays.ua.answer(now, stays.call, None);
        let (ok, _) = drain(&mut stays.ua);
        deliver(&mut alice, now, stays.port, &ok);
        let (out, ev) = drain(&mut alice);
        let ack = of(&out, "ACK ");
        assert_eq!(ack.len(), 1, "{out:?}");
        assert_eq!(to_tag(&msg(ack[0])), stays.tag);
        assert!(
            ev.iter()
                .any(|e| matches!(e, UaEvent::Call(_, CallEvent::Answered { .. }))),
            "{ev:?}"
        );
        assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    }
}

/// The BYE ends the call's last early dialog: no phone is known to ring any more, but the
/// INVITE is still pending at the callee (a BYE is no final response to it). Alice cancels
/// it (§9.1); its 487 is the call's outcome, which names the violation. Before: the call
/// reported `Ended` (by remote, as if it had been answered and hung up), no CANCEL, and the
/// INVITE stayed pending.
#[test]
fn a_bye_in_the_only_early_dialog_cancels_the_invite() {
    let now = Instant::now();
    let (mut alice, call, mut bob) = only_bob_ringing(now, false);
    let bye = early_bye(&mut bob, now);
    alice.handle_message(now, bye, addr(BOB));
    let (out, ev) = drain(&mut alice);
    assert_eq!(of(&out, "SIP/2.0 200 ").len(), 1, "{out:?}");
    assert_eq!(of(&out, "CANCEL ").len(), 1, "{out:?}");
    assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    deliver(
        &mut bob.ua,
        now,
        ALICE,
        &of(&out, "CANCEL ").into_iter().cloned().collect::<Vec<_>>(),
    );
    let (reply, _) = drain(&mut bob.ua);
    assert_eq!(of(&reply, "SIP/2.0 487 ").len(), 1, "{reply:?}");
    deliver(&mut alice, now, BOB, &reply);
    let (out, ev) = drain(&mut alice);
    assert_eq!(of(&out, "ACK ").len(), 1, "{out:?}");
    assert!(
        ev.iter().any(|e| matches!(e,
            UaEvent::Call(c, CallEvent::Failed { code: 487, reason })
                if *c == call && reason.contains("BYE") && reason.contains("§15"))),
        "{ev:?}"
    );
    assert_eq!(alice.call_state(call), Some(CallState::Terminated));
}

/// The caller may end an early dialog with BYE (RFC 3261 §15); its callee answers the BYE
/// 200 and still owes the INVITE a final response: 487 (§15.1.2: "The UAS MUST still
/// respond to any pending requests received for that dialog. It is RECOMMENDED that a 487
/// (Request Terminated) response be generated"). The call fails with that 487. Before: the
/// call reported `Ended` and the INVITE was never answered.
#[test]
fn the_callers_bye_in_the_early_dialog_gets_the_invite_a_487() {
    let now = Instant::now();
    let (mut alice, call, mut bob) = only_bob_ringing(now, false);
    assert!(alice.update(now, call, None));
    let bye = as_bye(&drain(&mut alice).0);
    bob.ua.handle_message(now, bye, addr(ALICE));
    let (reply, ev) = drain(&mut bob.ua);
    assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
    assert_eq!(of(&reply, "SIP/2.0 487 ").len(), 1, "{reply:?}");
    assert!(
        ev.iter().any(|e| matches!(e,
            UaEvent::Call(c, CallEvent::Failed { code: 487, .. }) if *c == bob.call)),
        "{ev:?}"
    );
    assert_eq!(bob.ua.call_state(bob.call), Some(CallState::Terminated));
}

/// RFC 3262 §4: the UAC PRACKs every reliable provisional response, each in its fork's early
/// dialog, also once it has sent CANCEL (the INVITE is still pending until its final
/// response): Carol's first reliable 180 after Alice's CANCEL is PRACKed, as a new 180 of
/// Bob's (the first fork) is. Before: Bob's was PRACKed, Carol's was reported ignored ("past
/// the early dialogs kept") and left to be retransmitted until her Timer gave up.
#[test]
fn a_reliable_1xx_after_our_cancel_is_pracked_whichever_fork() {
    let now = Instant::now();
    let (mut alice, call, mut bob, mut carol) = forked(now, true);
    let ringing = bob.ring(now);
    deliver(&mut alice, now, BOB, &ringing);
    pracks_answered(&mut alice, now, &mut [&mut bob]);
    alice.hangup(now, call);
    let (out, _) = drain(&mut alice);
    assert_eq!(of(&out, "CANCEL ").len(), 1, "{out:?}");
    for f in [&mut carol, &mut bob] {
        let ringing = f.ring(now);
        deliver(&mut alice, now, f.port, &ringing);
        let (out, ev) = drain(&mut alice);
        let prack = of(&out, "PRACK ");
        assert_eq!(prack.len(), 1, "{}: {out:?} {ev:?}", f.ua.user());
        assert_eq!(to_tag(&msg(prack[0])), f.tag);
        assert_eq!(port_of(prack[0]), f.port);
        assert!(
            !ev.iter().any(|e| matches!(e, UaEvent::Ignored { .. })),
            "{ev:?}"
        );
    }
}

/// RFC 3261 §13.2.2.4: once Bob's 2xx confirmed the call in his dialog, Alice keeps no other
/// early dialog (she wants one dialog; Carol's 2xx, if it comes, is ACKed and ended with
/// BYE). Carol's UPDATE in her early dialog then matches no dialog of Alice's: 481, which
/// ends that early dialog at Carol's side too (§12.2.1.2). (Checked: this was so before.)
#[test]
fn an_update_in_another_forks_early_dialog_after_the_2xx_gets_481() {
    let now = Instant::now();
    let (mut alice, call, mut bob, mut carol) = both_ringing(now, false);
    bob.ua.answer(now, bob.call, None);
    let (ok, _) = drain(&mut bob.ua);
    deliver(&mut alice, now, BOB, &ok);
    drain(&mut alice);
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    assert!(carol.ua.update(now, carol.call, None));
    let (out, _) = drain(&mut carol.ua);
    deliver(&mut alice, now, CAROL, &out);
    let (reply, ev) = drain(&mut alice);
    assert_eq!(
        (of(&reply, "SIP/2.0 481 ").len(), reply.len()),
        (1, 1),
        "{reply:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
}

/// §9.1 with forks: Alice's CANCEL reaches Bob and Carol (as a forking proxy sends it to each
/// branch) while Bob's 2xx crosses it. Alice ACKs Bob's 2xx, reports the call answered and
/// ends it with BYE at once; Carol's 487 (her INVITE transaction's answer to the CANCEL) is
/// ACKed by the transaction and changes nothing. The call reports Answered then Ended, once
/// each. (Checked: this was so before.)
#[test]
fn a_cancel_crossing_one_forks_2xx() {
    let now = Instant::now();
    let (mut alice, call, mut bob, mut carol) = both_ringing(now, false);
    alice.hangup(now, call);
    let (cancel, _) = drain(&mut alice);
    assert_eq!(of(&cancel, "CANCEL ").len(), 1, "{cancel:?}");
    bob.ua.answer(now, bob.call, None);
    let (ok, _) = drain(&mut bob.ua);
    deliver(&mut alice, now, BOB, &ok);
    let (out, mut events) = drain(&mut alice);
    assert_eq!(of(&out, "ACK ").len(), 1, "{out:?}");
    assert_eq!(of(&out, "BYE ").len(), 1, "{out:?}");
    deliver(&mut bob.ua, now, ALICE, &out);
    deliver(&mut bob.ua, now, ALICE, &cancel);
    deliver(&mut carol.ua, now, ALICE, &cancel);
    let (from_bob, _) = drain(&mut bob.ua);
    let (from_carol, _) = drain(&mut carol.ua);
    assert_eq!(of(&from_carol, "SIP/2.0 487 ").len(), 1, "{from_carol:?}");
    deliver(&mut alice, now, BOB, &from_bob);
    deliver(&mut alice, now, CAROL, &from_carol);
    let (_, ev) = drain(&mut alice);
    events.extend(ev);
    let calls = call_events(&events);
    assert!(
        matches!(
            calls[..],
            [
                CallEvent::Answered { .. },
                CallEvent::Ended {
                    by_remote: false,
                    code: 200
                }
            ]
        ),
        "{calls:?}"
    );
    assert_eq!(alice.call_state(call), Some(CallState::Terminated));
    assert_eq!(bob.ua.call_state(bob.call), Some(CallState::Terminated));
    assert_eq!(carol.ua.call_state(carol.call), Some(CallState::Terminated));
}

/// An early dialog its callee ended with BYE stays ended (RFC 3261 §12.2.2: a request or 1xx
/// with its tags is in no dialog of ours any more): that fork's next reliable 180 is not
/// PRACKed and does not make its early dialog again, whichever fork it is (and for the only
/// fork, whose BYE cancelled the INVITE). Before: the 180 made a new early dialog, PRACKed.
#[test]
fn an_early_dialog_ended_with_bye_is_not_made_again_by_a_later_1xx() {
    for first in [true, false] {
        let now = Instant::now();
        let (mut alice, call, mut bob, mut carol) = both_ringing(now, true);
        let (gone, stays) = if first {
            (&mut bob, &mut carol)
        } else {
            (&mut carol, &mut bob)
        };
        let bye = early_bye(gone, now);
        alice.handle_message(now, bye, addr(gone.port));
        drain(&mut alice);
        let again = gone.ring(now);
        deliver(&mut alice, now, gone.port, &again);
        let (out, _) = drain(&mut alice);
        assert!(of(&out, "PRACK ").is_empty(), "first fork {first}: {out:?}");
        let tags: Vec<&str> = alice.fork_tags(call).collect();
        assert_eq!(tags, [stays.tag.as_str()], "first fork {first}");
    }
    let now = Instant::now();
    let (mut alice, call, mut bob) = only_bob_ringing(now, true);
    let bye = early_bye(&mut bob, now);
    alice.handle_message(now, bye, addr(BOB));
    let (out, _) = drain(&mut alice);
    assert_eq!(of(&out, "CANCEL ").len(), 1, "{out:?}");
    let again = bob.ring(now);
    deliver(&mut alice, now, BOB, &again);
    let (out, _) = drain(&mut alice);
    assert!(of(&out, "PRACK ").is_empty(), "{out:?}");
    assert_eq!(alice.fork_tags(call).count(), 0);
}
