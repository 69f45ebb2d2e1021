//! One offer at a time in each dialog, the INVITE's own offer included (RFC 3311 §5.1, §5.2;
//! RFC 3264 §4; RFC 3262 §5). An UPDATE (or re-INVITE) with an offer that arrives while an
//! offer of the INVITE transaction is still open in its dialog is refused: 491 when the
//! open offer is ours (the INVITE's offer not answered by a reliable 1xx yet, or our offer in
//! a reliable 1xx or in the 2xx not answered yet), 500 with a Retry-After of 0–10 s when it
//! is theirs (we owe the answer). And we send no UPDATE offer ourselves then. Alice calls
//! Bob; both are real agents on a virtual clock, the messages delivered between them through
//! the public API (an offer the API refuses to send is forged onto the request it sends).

use std::time::Instant;

use sip_msg::{HeaderName, Message};
use sip_proto::ua::{CallEvent, CallId, CallState, UaEvent, UserAgent};

mod common;
use common::{
    ALICE, BOB, addr, call_events, calling, deliver, drain, msg, of, sdp, settle, with_offer,
};

/// `from` sends UPDATE in its call `call` carrying the offer `body` (forged when the API
/// refuses to send it), delivered to `to` (from port `port`): `to`'s one answer.
fn update_offer(
    now: Instant,
    from: &mut UserAgent,
    call: CallId,
    to: &mut UserAgent,
    port: u16,
    body: &'static str,
) -> (Message, Vec<UaEvent>) {
    let update = if from.update(now, call, Some(sdp(body))) {
        let (out, _) = drain(from);
        msg(of(&out, "UPDATE ")[0])
    } else {
        assert!(from.update(now, call, None));
        let (out, _) = drain(from);
        with_offer(of(&out, "UPDATE ")[0], body)
    };
    to.handle_message(now, update, addr(port));
    let (reply, ev) = drain(to);
    assert_eq!(reply.len(), 1, "{reply:?}");
    let back = if port == ALICE { BOB } else { ALICE };
    deliver(from, now, back, &reply);
    drain(from);
    (msg(&reply[0]), ev)
}

/// `ev` holds no re-INVITE or UPDATE taken (`Reinvited`).
fn none_taken(ev: &[UaEvent]) {
    assert!(
        !ev.iter()
            .any(|e| matches!(e, UaEvent::Call(_, CallEvent::Reinvited { .. }))),
        "{ev:?}"
    );
}

/// `r` is a 500 with a Retry-After of 0–10 s (RFC 3311 §5.2).
fn is_500_retry_after(r: &Message) {
    assert_eq!(r.status(), Some(500), "{r:?}");
    let after: u32 = r
        .headers
        .value(&HeaderName::RetryAfter)
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(after <= 10, "{after}");
}

/// RFC 3311 §5.2: "If an UPDATE is received that contains an offer, and the UAS has generated
/// an offer (in an UPDATE, PRACK or INVITE) to which it has not yet received an answer, the
/// UAS MUST reject the UPDATE with a 491." Alice's INVITE offer has no answer yet: Bob rang
/// without SDP (unreliably, or reliably and PRACKed). Bob's UPDATE offer in that early
/// dialog is refused 491 by Alice. Before: answered 200 and taken as a new remote offer.
#[test]
fn an_update_offer_crossing_our_unanswered_invite_offer_gets_491() {
    for use_100rel in [false, true] {
        let now = Instant::now();
        let (mut alice, a, mut bob, b) = calling(now, use_100rel, true);
        bob.ring(now, b);
        settle(now, &mut alice, &mut bob);
        assert_eq!(alice.call_state(a), Some(CallState::Early));
        let (r, ev) = update_offer(now, &mut bob, b, &mut alice, BOB, "v=0 b2\r\n");
        assert_eq!(r.status(), Some(491), "100rel {use_100rel}: {r:?}");
        none_taken(&ev);
        // An unreliable 183 with SDP only previews the answer (RFC 6337 §3.1.1): still open.
        let (mut alice, a, mut bob, b) = calling(now, use_100rel, true);
        if !use_100rel {
            bob.progress(now, b, sdp("v=0 b\r\n"));
            settle(now, &mut alice, &mut bob);
            assert_eq!(alice.call_state(a), Some(CallState::Early));
            let (r, ev) = update_offer(now, &mut bob, b, &mut alice, BOB, "v=0 b2\r\n");
            assert_eq!(r.status(), Some(491), "{r:?}");
            none_taken(&ev);
        }
    }
}

/// The control: Bob's reliable 183 carries the answer (RFC 3262), PRACKed: the INVITE's offer
/// is answered and either side may send an UPDATE offer in the early dialog (RFC 3311 §5.1),
/// answered 200 with the other's SDP.
#[test]
fn after_a_reliable_early_answer_update_offers_go_through() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, true, true);
    bob.progress(now, b, sdp("v=0 b\r\n"));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Early));
    let (r, ev) = update_offer(now, &mut bob, b, &mut alice, BOB, "v=0 b2\r\n");
    assert_eq!(r.status(), Some(200), "{r:?}");
    assert_eq!(r.body().as_ref(), b"v=0 a\r\n");
    assert!(
        ev.iter()
            .any(|e| matches!(e, UaEvent::Call(_, CallEvent::Reinvited { sdp: Some(_) }))),
        "{ev:?}"
    );
    let (r, _) = update_offer(now, &mut alice, a, &mut bob, ALICE, "v=0 a2\r\n");
    assert_eq!(r.status(), Some(200), "{r:?}");
}

/// The mirror (RFC 3311 §5.2, first rule, for the callee): Bob's offer is open when Alice's
/// UPDATE offer reaches him. (a) His UPDATE offer in the early dialog, after his reliable
/// early answer: 491 (this was right before). (b) A late-offer INVITE: Bob's SDP in his
/// reliable 183 is the offer (RFC 3262 §5), Alice's PRACK carries no answer: 491.
#[test]
fn the_callees_open_offer_refuses_a_crossing_update_offer_with_491() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, true, true);
    bob.progress(now, b, sdp("v=0 b\r\n"));
    settle(now, &mut alice, &mut bob);
    assert!(bob.update(now, b, Some(sdp("v=0 b2\r\n"))));
    drain(&mut bob);
    let (r, ev) = update_offer(now, &mut alice, a, &mut bob, ALICE, "v=0 a2\r\n");
    assert_eq!(r.status(), Some(491), "{r:?}");
    none_taken(&ev);

    let (mut alice, a, mut bob, b) = calling(now, true, false);
    bob.progress(now, b, sdp("v=0 b\r\n"));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Early));
    let (r, ev) = update_offer(now, &mut alice, a, &mut bob, ALICE, "v=0 a2\r\n");
    assert_eq!(r.status(), Some(491), "{r:?}");
    none_taken(&ev);
}

/// RFC 3311 §5.2, second rule: "if an UPDATE is received that contains an offer, and the UAS
/// has received an offer (in an UPDATE, PRACK, or INVITE) to which it has not yet generated
/// an answer, the UAS MUST reject the UPDATE with a 500 response, and MUST include a
/// Retry-After header field with a randomly chosen value between 0 and 10 seconds." (a) Bob
/// rings without answering the INVITE's offer; Alice's UPDATE offer. (b) Late offer: Alice
/// has Bob's offer from his reliable 183 and no answer sent; Bob's UPDATE offer. Before: 200.
#[test]
fn an_update_offer_while_we_owe_an_answer_gets_500_with_retry_after() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.ring(now, b);
    settle(now, &mut alice, &mut bob);
    let (r, ev) = update_offer(now, &mut alice, a, &mut bob, ALICE, "v=0 a2\r\n");
    is_500_retry_after(&r);
    none_taken(&ev);

    let (mut alice, _, mut bob, b) = calling(now, true, false);
    bob.progress(now, b, sdp("v=0 b\r\n"));
    settle(now, &mut alice, &mut bob);
    let (r, ev) = update_offer(now, &mut bob, b, &mut alice, BOB, "v=0 b2\r\n");
    is_500_retry_after(&r);
    none_taken(&ev);
}

/// RFC 3311 §5.1 / RFC 3264 §4 for what we send: no UPDATE offer while an offer of the INVITE
/// is open in that dialog, ours or theirs (`update` returns false and sends nothing); an
/// UPDATE without offer (a session refresh) still goes. Before: sent, and refused by the
/// peer (or taken as a second offer).
#[test]
fn we_send_no_update_offer_while_an_offer_is_open() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.ring(now, b);
    settle(now, &mut alice, &mut bob);
    assert!(!alice.update(now, a, Some(sdp("v=0 a2\r\n"))));
    assert!(!bob.update(now, b, Some(sdp("v=0 b2\r\n"))));
    let tag = alice.fork_tags(a).next().unwrap().to_owned();
    assert!(!alice.update_fork(now, a, &tag, Some(sdp("v=0 a2\r\n"))));
    assert!(drain(&mut alice).0.is_empty());
    assert!(drain(&mut bob).0.is_empty());
    assert!(alice.update(now, a, None));
    assert_eq!(of(&drain(&mut alice).0, "UPDATE ").len(), 1);
}

/// A late-offer INVITE answered: Bob's 2xx carries his offer, the ACK the answer (RFC 3264;
/// RFC 3261 §13.2.1). Alice's re-INVITE offer reaching Bob before her ACK crosses his open
/// offer: 491 (as RFC 3311 §5.2 for an UPDATE); the ACK then confirms the call, and the same
/// re-INVITE afterwards is taken. Before: taken at once (200) while the call was unconfirmed.
#[test]
fn a_reinvite_offer_before_the_ack_of_a_2xx_offer_gets_491() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, false);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    drain(&mut alice);
    assert!(alice.answer_offer(now, a, sdp("v=0 a\r\n")));
    let (ack, _) = drain(&mut alice);
    assert_eq!(of(&ack, "ACK ").len(), 1, "{ack:?}");
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert!(alice.reinvite(now, a, sdp("v=0 a2\r\n")));
    let (reinvite, _) = drain(&mut alice);
    deliver(&mut bob, now, ALICE, &reinvite);
    let (reply, ev) = drain(&mut bob);
    let r = of(&reply, "SIP/2.0 491 ");
    assert_eq!((r.len(), reply.len()), (1, 1), "{reply:?}");
    none_taken(&ev);
    deliver(&mut bob, now, ALICE, &ack);
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
}

/// RFC 3261 §14.2 asks no refusal of a re-INVITE that arrives before the ACK of a 2xx that
/// answered the INVITE's offer (the first INVITE has its final response; nothing is open),
/// so Bob takes it. A caller sends re-INVITE only in a confirmed dialog, so it proves the 2xx
/// arrived (as a BYE already did): Bob's call is answered first (`Answered`, his 2xx is no
/// longer retransmitted), then re-invited; the late ACK adds nothing. Before: `Reinvited`
/// was reported on a call still waiting for its ACK, and `Answered` only after it.
#[test]
fn a_reinvite_before_the_ack_confirms_the_call_first() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    let (ack, _) = drain(&mut alice);
    assert!(alice.reinvite(now, a, sdp("v=0 a2\r\n")));
    let (reinvite, _) = drain(&mut alice);
    deliver(&mut bob, now, ALICE, &reinvite);
    let (reply, ev) = drain(&mut bob);
    assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
    let calls = call_events(&ev);
    assert!(
        matches!(
            calls[..],
            [
                CallEvent::Answered { .. },
                CallEvent::Reinvited { sdp: Some(_) }
            ]
        ),
        "{calls:?}"
    );
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    // No retransmission of the INVITE's 2xx is due any more; the ACK is taken silently.
    // The re-INVITE's 2xx, not ACKed yet (not delivered to Alice), goes again at T1
    // (§13.3.1.4, §14.2), and no more once Alice's ACK of it is in.
    deliver(&mut bob, now, ALICE, &ack);
    let (_, ev) = drain(&mut bob);
    assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    let later = now + std::time::Duration::from_millis(600);
    bob.handle_timeout(later);
    let (out, _) = drain(&mut bob);
    let again = of(&out, "SIP/2.0 200 ");
    assert!(
        again.iter().all(|o| msg(o).cseq().unwrap().seq == 2),
        "the INVITE's 2xx again: {out:?}"
    );
    assert_eq!(again.len(), 1, "{out:?}");
    deliver(&mut alice, later, BOB, &reply);
    let (ack2, _) = drain(&mut alice);
    assert_eq!(of(&ack2, "ACK ").len(), 1, "{ack2:?}");
    deliver(&mut bob, later, ALICE, &ack2);
    bob.handle_timeout(later + std::time::Duration::from_secs(5));
    let (out, _) = drain(&mut bob);
    assert!(of(&out, "SIP/2.0 200 ").is_empty(), "{out:?}");
}
