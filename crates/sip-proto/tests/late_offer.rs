//! The late (delayed) offer, from the caller's side: our INVITE carries no SDP, so the
//! callee's first SDP is the offer and our answer goes in the ACK of its 2xx (RFC 3261
//! §13.2.2.4, RFC 3264 §4, RFC 6337 §2.1) or in the PRACK of its reliable 1xx (RFC 3262 §5).
//! Also the other offer rules of RFC 3264 §4 for our own requests (no second offer while one
//! is in flight) and a PRACK that carries a new offer (RFC 3262 §5). Alice calls Bob; both are
//! real agents on a virtual clock.

use std::time::{Duration, Instant};

use sip_msg::{HeaderName, Uri};
use sip_proto::ua::{CallEvent, CallState, UaEvent};

mod common;
use common::{
    ALICE, BOB, CAROL, call_events, calling, deliver, drain, incoming, msg, of, sdp, settle,
    to_tag, with_offer,
};

const BOBS_OFFER: &str = "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 40000 RTP/AVP 8 0\r\na=sendrecv\r\n";
const ALICES_ANSWER: &str = "v=0\r\no=alice 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 30000 RTP/AVP 8\r\na=sendrecv\r\n";

/// `ev`'s `Offered` events, their SDP.
fn offered(ev: &[UaEvent]) -> Vec<&[u8]> {
    call_events(ev)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::Offered { sdp } => Some(&sdp[..]),
            _ => None,
        })
        .collect()
}

/// RFC 3261 §13.2.2.4: "If the 2xx contains an offer (based on the rules above), the ACK MUST
/// carry an answer in its body." Bob's 2xx carries his offer; Alice is told once, her ACK
/// waits for her answer: a 2xx retransmitted meanwhile is neither reported again nor ACKed
/// without it. The ACK then carries the answer, the call is answered, and a 2xx retransmitted
/// after that gets the same ACK again (answer included). Before: the ACK went at once, empty.
#[test]
fn the_offer_in_the_2xx_is_answered_in_the_ack() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, false);
    bob.answer(now, b, Some(sdp(BOBS_OFFER)));
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    let (out, ev) = drain(&mut alice);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(offered(&ev), [BOBS_OFFER.as_bytes()], "{ev:?}");
    assert_eq!(alice.call_state(a), Some(CallState::Answering));
    // Bob's 2xx again (T1 passed without an ACK): nothing from Alice.
    bob.handle_timeout(now + Duration::from_millis(500));
    let (again, _) = drain(&mut bob);
    assert_eq!(of(&again, "SIP/2.0 200 ").len(), 1, "{again:?}");
    deliver(&mut alice, now, BOB, &again);
    let (out, ev) = drain(&mut alice);
    assert!(out.is_empty() && ev.is_empty(), "{out:?} {ev:?}");

    assert!(alice.answer_offer(now, a, sdp(ALICES_ANSWER)));
    let (ack, ev) = drain(&mut alice);
    assert_eq!((of(&ack, "ACK ").len(), ack.len()), (1, 1), "{ack:?}");
    assert_eq!(msg(&ack[0]).body().as_ref(), ALICES_ANSWER.as_bytes());
    assert!(
        matches!(call_events(&ev)[..], [CallEvent::Answered { sdp: Some(s) }] if s == BOBS_OFFER.as_bytes()),
        "{ev:?}"
    );
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert!(
        !alice.answer_offer(now, a, sdp(ALICES_ANSWER)),
        "answered once"
    );
    deliver(&mut bob, now, ALICE, &ack);
    let (_, ev) = drain(&mut bob);
    assert!(
        matches!(call_events(&ev)[..], [CallEvent::Answered { sdp: Some(s) }] if s == ALICES_ANSWER.as_bytes()),
        "{ev:?}"
    );
    // A retransmission that crossed the ACK: the same ACK, the answer in it.
    deliver(&mut alice, now, BOB, &again);
    let (out, ev) = drain(&mut alice);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].bytes, ack[0].bytes);
    assert!(ev.is_empty(), "{ev:?}");
}

/// A 2xx without SDP to an INVITE without SDP leaves the session without an offer (RFC 3264
/// §4; RFC 3261 §13.2.1 wants the offer in the 2xx then): the 2xx is still ACKed (§13.2.2.4),
/// the call ended at once with BYE, and its outcome names the violation. Before: taken as an
/// answered call without any session description.
#[test]
fn a_2xx_without_the_offer_is_acked_then_ended_with_bye() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, false);
    bob.answer(now, b, None);
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    let (out, ev) = drain(&mut alice);
    assert_eq!(of(&out, "ACK ").len(), 1, "{out:?}");
    assert!(msg(of(&out, "ACK ")[0]).body().is_empty());
    assert_eq!(of(&out, "BYE ").len(), 1, "{out:?}");
    match call_events(&ev)[..] {
        [CallEvent::Failed { code: 200, reason }] => {
            assert!(reason.contains("RFC 3264 §4"), "{reason}")
        }
        ref other => panic!("{other:?}"),
    }
    assert_eq!(alice.call_state(a), Some(CallState::Terminated));
}

/// Hanging up (or being hung up on) before answering the 2xx's offer: the 2xx is still ACKed
/// with a valid answer (RFC 3261 §13.2.2.4: "If the offer in the 2xx response is not
/// acceptable, the UAC core MUST generate a valid answer in the ACK and then send a BYE
/// immediately"), every stream rejected (RFC 3264 §6: port 0), then BYE; no `Answered`.
#[test]
fn hanging_up_before_answering_acks_with_every_stream_rejected() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, false);
    bob.answer(now, b, Some(sdp(BOBS_OFFER)));
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    drain(&mut alice);
    alice.hangup(now, a);
    let (out, ev) = drain(&mut alice);
    let ack = msg(of(&out, "ACK ")[0]);
    let body = String::from_utf8(ack.body().to_vec()).unwrap();
    assert!(body.contains("\r\nm=audio 0 RTP/AVP 8 0\r\n"), "{body}");
    assert_eq!(of(&out, "BYE ").len(), 1, "{out:?}");
    assert!(call_events(&ev).is_empty(), "{ev:?}");
    deliver(&mut bob, now, ALICE, &out);
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Terminated));
    assert_eq!(bob.call_state(b), Some(CallState::Terminated));

    // Bob hangs up first (his BYE before Alice's answer): 200, the ACK, the call ended.
    let (mut alice, a, mut bob, b) = calling(now, false, false);
    bob.answer(now, b, Some(sdp(BOBS_OFFER)));
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    drain(&mut alice);
    bob.hangup(now, b);
    let (bye, _) = drain(&mut bob);
    deliver(
        &mut alice,
        now,
        BOB,
        &of(&bye, "BYE ").into_iter().cloned().collect::<Vec<_>>(),
    );
    let (out, ev) = drain(&mut alice);
    assert_eq!(of(&out, "SIP/2.0 200 ").len(), 1, "{out:?}");
    let ack = msg(of(&out, "ACK ")[0]);
    assert!(String::from_utf8_lossy(ack.body()).contains("m=audio 0 "));
    assert!(
        matches!(
            call_events(&ev)[..],
            [CallEvent::Ended {
                by_remote: true,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(alice.call_state(a), Some(CallState::Terminated));
}

/// A forked late-offer INVITE answered by Bob and by Carol, each 2xx with its own offer
/// (RFC 3261 §13.2.2.4: the UAC core ACKs each 2xx; one that wants a single dialog then sends
/// BYE on the others). Alice answers Bob's offer; Carol's 2xx before that is not ACKed
/// without an answer, and the one Carol sends again afterwards is ACKed with a valid answer,
/// her streams rejected, then ended with BYE. Before this change: Carol's ACK had no body.
#[test]
fn another_forks_2xx_offer_is_acked_with_its_streams_rejected_then_byed() {
    let now = Instant::now();
    let mut alice = common::agent("alice", ALICE, 31, false, "offers");
    let mut bob = common::agent("bob", BOB, 32, false, "offers");
    let mut carol = common::agent("carol", CAROL, 33, false, "offers");
    let a = alice.call(now, Uri::parse("sip:bob@127.0.0.1:5064").unwrap(), None);
    let (invite, _) = drain(&mut alice);
    let b = incoming(&mut bob, now, &invite);
    let c = incoming(&mut carol, now, &invite);
    bob.answer(now, b, Some(sdp(BOBS_OFFER)));
    carol.answer(
        now,
        c,
        Some(bytes::Bytes::from(BOBS_OFFER.replace("bob", "carol"))),
    );
    let (ok_bob, _) = drain(&mut bob);
    let (ok_carol, _) = drain(&mut carol);
    deliver(&mut alice, now, BOB, &ok_bob);
    deliver(&mut alice, now, CAROL, &ok_carol);
    let (out, ev) = drain(&mut alice);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(offered(&ev), [BOBS_OFFER.as_bytes()], "{ev:?}");
    assert!(alice.answer_offer(now, a, sdp(ALICES_ANSWER)));
    let (ack, _) = drain(&mut alice);
    assert_eq!(of(&ack, "ACK ").len(), 1, "{ack:?}");
    carol.handle_timeout(now + Duration::from_millis(500));
    let (again, _) = drain(&mut carol);
    deliver(&mut alice, now, CAROL, &again);
    let (out, _) = drain(&mut alice);
    let acks = of(&out, "ACK ");
    assert_eq!(acks.len(), 1, "{out:?}");
    let carols = msg(acks[0]);
    assert_eq!(to_tag(&carols), to_tag(&msg(&again[0])));
    let body = String::from_utf8(carols.body().to_vec()).unwrap();
    assert!(body.contains("\r\nm=audio 0 RTP/AVP 8 0\r\n"), "{body}");
    assert_eq!(of(&out, "BYE ").len(), 1, "{out:?}");
}

/// RFC 3262 §5: "If the UAC receives a reliable provisional response with an offer (this would
/// occur if the UAC sent an INVITE without an offer, in which case the first reliable
/// provisional response will contain the offer), it MUST generate an answer in the PRACK."
/// Bob's reliable 183 carries his offer: Alice is told once, her PRACK waits for the answer
/// (the 183 retransmitted meanwhile gets nothing) and carries it; Bob's 2xx repeats his SDP,
/// which is no new offer: the ACK is empty. Before: the PRACK went at once, without answer.
#[test]
fn the_offer_in_a_reliable_1xx_is_answered_in_the_prack() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, true, false);
    bob.progress(now, b, sdp(BOBS_OFFER));
    let (p183, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &p183);
    let (out, ev) = drain(&mut alice);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(offered(&ev), [BOBS_OFFER.as_bytes()], "{ev:?}");
    bob.handle_timeout(now + Duration::from_millis(500));
    let (again, _) = drain(&mut bob);
    assert_eq!(of(&again, "SIP/2.0 183 ").len(), 1, "{again:?}");
    deliver(&mut alice, now, BOB, &again);
    let (out, ev) = drain(&mut alice);
    assert!(out.is_empty(), "{out:?}");
    assert!(offered(&ev).is_empty(), "{ev:?}");

    assert!(alice.answer_offer(now, a, sdp(ALICES_ANSWER)));
    let (prack, ev) = drain(&mut alice);
    assert_eq!(of(&prack, "PRACK ").len(), 1, "{prack:?}");
    let p = msg(of(&prack, "PRACK ")[0]);
    assert_eq!(p.body().as_ref(), ALICES_ANSWER.as_bytes());
    assert_eq!(p.headers.value(&HeaderName::RAck), Some("1 1 INVITE"));
    assert!(
        matches!(call_events(&ev)[..], [CallEvent::Pracked { rseq: 1 }]),
        "{ev:?}"
    );
    deliver(&mut bob, now, ALICE, &prack);
    let (ok, _) = drain(&mut bob);
    assert_eq!(of(&ok, "SIP/2.0 200 ").len(), 1, "{ok:?}");
    deliver(&mut alice, now, BOB, &ok);
    drain(&mut alice);
    // The exchange is complete: Bob's UPDATE offer in the early dialog is now taken.
    assert!(bob.can_offer(b) && alice.can_offer(a));

    bob.answer(now, b, Some(sdp(BOBS_OFFER)));
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    let (ack, ev) = drain(&mut alice);
    assert_eq!(of(&ack, "ACK ").len(), 1, "{ack:?}");
    assert!(msg(of(&ack, "ACK ")[0]).body().is_empty());
    assert!(offered(&ev).is_empty(), "{ev:?}");
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    deliver(&mut bob, now, ALICE, &ack);
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
}

/// RFC 3262 §5: the offer in a reliable 1xx "MUST" be answered in the PRACK, also when the
/// caller wants none of it and gives up: hanging up before answering sends the PRACK with every
/// stream rejected (port 0, RFC 3264 §6), then the CANCEL (RFC 3261 §9.1); Bob's 183 is
/// acknowledged, so he stops retransmitting it. Before: only the CANCEL, the 1xx unanswered.
#[test]
fn hanging_up_on_a_reliable_1xx_offer_pracks_it_with_streams_rejected_then_cancels() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, true, false);
    bob.progress(now, b, sdp(BOBS_OFFER));
    let (p183, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &p183);
    let (_, ev) = drain(&mut alice);
    assert_eq!(offered(&ev), [BOBS_OFFER.as_bytes()], "{ev:?}");

    alice.hangup(now, a);
    let (out, _) = drain(&mut alice);
    let pracks = of(&out, "PRACK ");
    assert_eq!((pracks.len(), of(&out, "CANCEL ").len()), (1, 1), "{out:?}");
    let p = msg(pracks[0]);
    assert_eq!(p.headers.value(&HeaderName::RAck), Some("1 1 INVITE"));
    let body = String::from_utf8(p.body().to_vec()).unwrap();
    assert!(body.contains("\r\nm=audio 0 RTP/AVP 8 0\r\n"), "{body}");
    assert!(
        out.iter().position(|o| o.bytes.starts_with(b"PRACK "))
            < out.iter().position(|o| o.bytes.starts_with(b"CANCEL ")),
        "the PRACK goes first: {out:?}"
    );
    deliver(&mut bob, now, ALICE, &out);
    let (answers, _) = drain(&mut bob);
    assert_eq!(
        of(&answers, "SIP/2.0 200 ").len(),
        2,
        "PRACK and CANCEL: {answers:?}"
    );
    assert_eq!(of(&answers, "SIP/2.0 487 ").len(), 1, "{answers:?}");
    settle(now, &mut alice, &mut bob);
    // Bob's 183 was acknowledged: T1 later he sends it no more.
    bob.handle_timeout(now + Duration::from_millis(500));
    assert!(of(&drain(&mut bob).0, "SIP/2.0 183 ").is_empty());
}

/// RFC 3264 §4: "An agent MUST NOT generate a new offer if it has received an offer which it
/// has not yet answered or rejected. Furthermore, an agent MUST NOT generate a new offer if it
/// has generated a prior offer for which it has not yet received an answer or a rejection."
/// Alice's re-INVITE (hold) waits for its answer: a second re-INVITE or an UPDATE offer is
/// not sent (false), an UPDATE without offer still is; once the answer came, the next offer
/// goes. Before: the second re-INVITE was sent.
#[test]
fn no_second_offer_while_ours_waits_for_its_answer() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.answer(now, b, Some(sdp(BOBS_OFFER)));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert!(alice.can_offer(a));
    assert!(alice.reinvite(now, a, sdp("v=0 hold\r\n")));
    let (hold, _) = drain(&mut alice);
    assert!(!alice.can_offer(a));
    assert!(!alice.reinvite(now, a, sdp("v=0 resume\r\n")));
    assert!(!alice.update(now, a, Some(sdp("v=0 resume\r\n"))));
    assert!(drain(&mut alice).0.is_empty());
    assert_eq!(
        alice.local_sdp(a).map(|s| &s[..]),
        Some(&b"v=0 hold\r\n"[..])
    );
    assert!(alice.update(now, a, None));
    let (refresh, _) = drain(&mut alice);
    assert_eq!(of(&refresh, "UPDATE ").len(), 1);
    deliver(&mut bob, now, ALICE, &hold);
    deliver(&mut bob, now, ALICE, &refresh);
    settle(now, &mut alice, &mut bob);
    assert!(alice.can_offer(a));
    assert!(alice.reinvite(now, a, sdp("v=0 resume\r\n")));
    assert_eq!(of(&drain(&mut alice).0, "INVITE ").len(), 1);
}

/// RFC 3262 §5: "If the UAS receives a PRACK with an offer, it MUST place the answer in the
/// 2xx to the PRACK." Bob's reliable 183 answered Alice's INVITE offer; her PRACK carries a
/// new offer (a=sendonly): Bob's 200 to it carries his answer (recvonly, RFC 3264 §6.1) and he
/// reports it like a re-INVITE's. Before: 200 without SDP.
/// A PRACK offer while Bob still owes the answer to the INVITE's offer (his reliable 180 had
/// no SDP) cannot be answered: refused 500 with Retry-After (as RFC 3311 §5.2 refuses an
/// UPDATE then), the 180 not acknowledged by it (still retransmitted).
#[test]
fn a_prack_with_a_new_offer_is_answered_in_its_200() {
    let now = Instant::now();
    let (mut alice, _, mut bob, b) = calling(now, true, true);
    bob.progress(now, b, sdp(BOBS_OFFER));
    let (p183, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &p183);
    let (prack, _) = drain(&mut alice);
    let offer = ALICES_ANSWER.replace("sendrecv", "sendonly");
    let forged = with_offer(of(&prack, "PRACK ")[0], &offer);
    bob.handle_message(now, forged, common::addr(ALICE));
    let (ok, ev) = drain(&mut bob);
    assert_eq!(of(&ok, "SIP/2.0 200 ").len(), 1, "{ok:?}");
    let answer = String::from_utf8(msg(of(&ok, "SIP/2.0 200 ")[0]).body().to_vec()).unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(
        call_events(&ev)
            .iter()
            .any(|e| matches!(e, CallEvent::Reinvited { sdp: Some(s) } if s == offer.as_bytes())),
        "{ev:?}"
    );

    let (mut alice, _, mut bob, b) = calling(now, true, true);
    bob.ring(now, b);
    let (r180, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &r180);
    let (prack, _) = drain(&mut alice);
    let forged = with_offer(of(&prack, "PRACK ")[0], &offer);
    bob.handle_message(now, forged, common::addr(ALICE));
    let (refused, _) = drain(&mut bob);
    let r = msg(of(&refused, "SIP/2.0 500 ")[0]);
    let after: u32 = r
        .headers
        .value(&HeaderName::RetryAfter)
        .unwrap()
        .parse()
        .unwrap();
    assert!(after <= 10);
    bob.handle_timeout(now + Duration::from_millis(500));
    let (again, _) = drain(&mut bob);
    assert_eq!(
        of(&again, "SIP/2.0 180 ").len(),
        1,
        "still unacknowledged: {again:?}"
    );
}
