//! Offers inside a call, as the user agent answers them itself: a re-INVITE without an offer
//! gets ours in the 2xx and the ACK answers it (RFC 3261 §14.2, §13.2.2.4), and an offer of
//! another of our codecs is answered with it (RFC 3264 §6.1). Bob calls Alice offering PCMU
//! and PCMA; both are real agents on a virtual clock, the messages delivered between them
//! through the public API (what the API would not send, a re-INVITE without offer and an
//! ACK with an answer, is forged from what it sends).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::{HeaderName, Message, Uri};
use sip_proto::ua::{CallEvent, CallId, SrtpPolicy, UaEvent, UserAgent};

mod common;
use common::{
    ALICE, BOB, addr, agent, call_events, config, deliver, drain, head_of, msg, of, settle,
    with_offer,
};

/// Bob's offer: PCMU and PCMA, telephone-event.
const BOB_OFFER: &str = "v=0\r\no=bob 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

/// Alice's description with `codecs` (`(pt, "NAME")`), version `v`.
fn alice_sdp(codecs: &[(u8, &str)], v: u32) -> String {
    let pts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    let maps: String = codecs
        .iter()
        .map(|(pt, name)| format!("a=rtpmap:{pt} {name}/8000\r\n"))
        .collect();
    format!(
        "v=0\r\no=alice 9 {v} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP {} 101\r\n{maps}a=rtpmap:101 telephone-event/8000\r\n\
         a=sendrecv\r\n",
        pts.join(" ")
    )
}

/// Bob calls Alice with [`BOB_OFFER`]; Alice answers with `answer`: (Alice, her call, Bob,
/// his call), confirmed.
fn bob_calls_alice(now: Instant, answer: &str) -> (UserAgent, CallId, UserAgent, CallId) {
    bob_calls(agent("alice", ALICE, 41, false, "alice"), now, answer)
}

/// [`bob_calls_alice`] with Alice as given.
fn bob_calls(
    alice: UserAgent,
    now: Instant,
    answer: &str,
) -> (UserAgent, CallId, UserAgent, CallId) {
    bob_offers(alice, now, BOB_OFFER, answer)
}

/// [`bob_calls`] with Bob's `offer`.
fn bob_offers(
    mut alice: UserAgent,
    now: Instant,
    offer: &str,
    answer: &str,
) -> (UserAgent, CallId, UserAgent, CallId) {
    let mut bob = agent("bob", BOB, 42, false, "bob");
    let b = bob.call(
        now,
        Uri::parse("sip:alice@127.0.0.1:5062").unwrap(),
        Some(Bytes::from(offer.to_owned())),
    );
    let (invite, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &invite);
    let (_, ev) = drain(&mut alice);
    let a = match ev.first() {
        Some(UaEvent::Call(c, CallEvent::Incoming { .. })) => *c,
        _ => panic!("no incoming call: {ev:?}"),
    };
    alice.answer(now, a, Some(Bytes::from(answer.to_owned())));
    settle(now, &mut alice, &mut bob);
    (alice, a, bob, b)
}

/// Alice's re-INVITE with its offer taken out (a PBX re-anchoring or resuming the call):
/// delivered to Bob; Bob's reply and events. (Either may be the other: `from` is the
/// sender's port.)
fn offerless_reinvite(
    now: Instant,
    alice: &mut UserAgent,
    a: CallId,
    bob: &mut UserAgent,
    from: u16,
) -> (Message, Vec<UaEvent>) {
    assert!(alice.reinvite(now, a, Bytes::from(alice_sdp(&[(0, "PCMU")], 2))));
    let (out, _) = drain(alice);
    let head = head_of(of(&out, "INVITE ")[0]);
    let bare = Message::parse(format!("{head}Content-Length: 0\r\n\r\n").as_bytes()).unwrap();
    assert!(bare.body().is_empty());
    bob.handle_message(now, bare, addr(from));
    let (reply, ev) = drain(bob);
    assert_eq!(reply.len(), 1, "{reply:?}");
    (msg(&reply[0]), ev)
}

/// Delivers Bob's 200 to Alice and returns her ACK with `answer` put in (or as sent, empty).
fn ack_of(now: Instant, alice: &mut UserAgent, ok: &Message, answer: Option<&str>) -> Message {
    alice.handle_message(now, Message::parse(&ok.to_bytes()).unwrap(), addr(BOB));
    let (out, _) = drain(alice);
    let ack = of(&out, "ACK ")[0];
    match answer {
        Some(a) => with_offer(ack, a),
        None => msg(ack),
    }
}

/// The answer Bob gives to Alice's re-INVITE offering `codecs`.
fn bob_answers(
    now: Instant,
    alice: &mut UserAgent,
    a: CallId,
    bob: &mut UserAgent,
    codecs: &[(u8, &str)],
    v: u32,
) -> (Message, Vec<UaEvent>) {
    assert!(alice.reinvite(now, a, Bytes::from(alice_sdp(codecs, v))));
    request_and_reply(now, (alice, ALICE), (bob, BOB))
}

/// The request `from` (the agent, its port) has sent, delivered to `to`; `to`'s final reply
/// delivered back, both settled: the reply, and `to`'s events.
fn request_and_reply(
    now: Instant,
    (from, from_port): (&mut UserAgent, u16),
    (to, to_port): (&mut UserAgent, u16),
) -> (Message, Vec<UaEvent>) {
    let (out, _) = drain(from);
    deliver(to, now, from_port, &out);
    let (reply, ev) = drain(to);
    let ok = msg(of(&reply, "SIP/2.0 ")[0]);
    deliver(from, now, to_port, &reply);
    // `settle` takes Alice first.
    if from_port == ALICE {
        settle(now, from, to);
    } else {
        settle(now, to, from);
    }
    (ok, ev)
}

fn body(m: &Message) -> String {
    String::from_utf8(m.body().to_vec()).unwrap()
}

/// RFC 3261 §14.2: "A UAS providing an offer in a 2xx (because the INVITE did not contain
/// an offer)"; §13.2.2.4: the ACK carries the answer. Bob's 200 carries his description as
/// he last sent it, with its `o=` version unchanged (RFC 3264 §8: "The offer MAY be
/// identical to the last SDP provided"), is sent again until the ACK (§13.3.1.4), and the
/// ACK's answer is reported and sets the codec in use (a later offer of both keeps it).
#[test]
fn a_re_invite_without_offer_gets_ours_in_the_200_and_the_ack_answers_it() {
    let t0 = Instant::now();
    let (mut alice, a, mut bob, b) = bob_calls_alice(t0, &alice_sdp(&[(8, "PCMA")], 1));
    let (ok, ev) = offerless_reinvite(t0, &mut alice, a, &mut bob, ALICE);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(body(&ok), BOB_OFFER, "our description, the same version");
    assert!(
        !bob.can_offer(b),
        "our offer waits for its answer (RFC 3264 §4)"
    );
    assert!(
        call_events(&ev)
            .iter()
            .any(|e| matches!(e, CallEvent::Reinvited { sdp: None }))
    );
    // No ACK yet: the 200 goes again, the same bytes.
    bob.handle_timeout(t0 + Duration::from_millis(500));
    let (again, _) = drain(&mut bob);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(msg(&again[0]).to_bytes(), ok.to_bytes());
    let answer = alice_sdp(&[(0, "PCMU")], 2);
    let ack = ack_of(t0, &mut alice, &ok, Some(&answer));
    bob.handle_message(t0 + Duration::from_millis(600), ack, addr(ALICE));
    let (out, ev) = drain(&mut bob);
    assert!(out.is_empty(), "{out:?}");
    let reported: Vec<_> = call_events(&ev)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::OfferAnswered { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reported, [Some(Bytes::from(answer))]);
    assert!(bob.can_offer(b));
    // Retransmissions stopped.
    bob.handle_timeout(t0 + Duration::from_secs(5));
    assert!(drain(&mut bob).0.is_empty());
    // The ACK's answer chose PCMU: an offer of both keeps it.
    let (ok, _) = bob_answers(t0, &mut alice, a, &mut bob, &[(8, "PCMA"), (0, "PCMU")], 3);
    assert!(
        body(&ok).contains("m=audio 30000 RTP/AVP 0 101\r\n"),
        "{}",
        body(&ok)
    );
}

/// An ACK without the answer (RFC 3261 §13.2.2.4: it MUST carry one) ends the exchange all
/// the same, reported without SDP; the session stays as it was: PCMA, chosen by Alice's
/// first answer, stays in use (an offer of both keeps it).
#[test]
fn an_ack_without_the_answer_leaves_the_session_as_it_was() {
    let t0 = Instant::now();
    let (mut alice, a, mut bob, b) = bob_calls_alice(t0, &alice_sdp(&[(8, "PCMA")], 1));
    let (ok, _) = offerless_reinvite(t0, &mut alice, a, &mut bob, ALICE);
    let ack = ack_of(t0, &mut alice, &ok, None);
    bob.handle_message(t0, ack, addr(ALICE));
    let (_, ev) = drain(&mut bob);
    assert!(
        call_events(&ev)
            .iter()
            .any(|e| matches!(e, CallEvent::OfferAnswered { sdp: None })),
        "{ev:?}"
    );
    assert!(bob.can_offer(b));
    let (ok, _) = bob_answers(t0, &mut alice, a, &mut bob, &[(0, "PCMU"), (8, "PCMA")], 3);
    assert!(
        body(&ok).contains("m=audio 30000 RTP/AVP 8 101\r\n"),
        "{}",
        body(&ok)
    );
}

/// RFC 3264 §6.1: an offer of PCMA alone in a PCMU call (Bob offered both) is answered with
/// PCMA, one version higher, not with Bob's description; the next offer of PCMU alone gets
/// PCMU again (Bob's codecs are remembered though his answer named one), and one offering
/// neither is refused with 488.
#[test]
fn an_offer_of_another_of_our_codecs_is_answered_with_it() {
    let t0 = Instant::now();
    let (mut alice, a, mut bob, b) = bob_calls_alice(t0, &alice_sdp(&[(0, "PCMU")], 1));
    let (ok, ev) = bob_answers(t0, &mut alice, a, &mut bob, &[(8, "PCMA")], 2);
    assert_eq!(ok.status(), Some(200));
    let answer = body(&ok);
    assert!(
        answer.contains("m=audio 30000 RTP/AVP 8 101\r\n"),
        "{answer}"
    );
    assert!(answer.contains("o=bob 7 2 "), "{answer}");
    assert!(!answer.contains("PCMU"), "{answer}");
    assert!(
        call_events(&ev)
            .iter()
            .any(|e| matches!(e, CallEvent::Reinvited { sdp: Some(_) }))
    );
    assert_eq!(bob.local_sdp(b).map(|s| &s[..]), Some(answer.as_bytes()));
    let (ok, _) = bob_answers(t0, &mut alice, a, &mut bob, &[(0, "PCMU")], 3);
    assert!(
        body(&ok).contains("m=audio 30000 RTP/AVP 0 101\r\n"),
        "{}",
        body(&ok)
    );
    assert!(body(&ok).contains("o=bob 7 3 "), "{}", body(&ok));
    let (refused, ev) = bob_answers(t0, &mut alice, a, &mut bob, &[(18, "G729")], 4);
    assert_eq!(refused.status(), Some(488));
    assert!(
        call_events(&ev)
            .iter()
            .any(|e| matches!(e, CallEvent::OfferRefused { .. }))
    );
}

/// RFC 3264 §6.1: the answer may use any codec of the offer that we support, not only the
/// one our first answer chose. Alice, configured with PCMU and PCMA
/// ([`sip_proto::ua::UaConfig::codecs`]), answered Bob's call with PCMU; Bob's re-INVITE
/// offering PCMA alone is answered with PCMA (not 488), and an offer of G.729 alone is still
/// refused. The offer in her 200 to a re-INVITE without one lists both.
#[test]
fn a_callee_takes_an_offer_of_another_of_its_configured_codecs() {
    let t0 = Instant::now();
    let mut cfg = config("alice", ALICE, 41, false, "alice");
    cfg.codecs = Some(Bytes::from(alice_sdp(&[(0, "PCMU"), (8, "PCMA")], 1)));
    let (mut alice, _, mut bob, b) =
        bob_calls(UserAgent::new(cfg), t0, &alice_sdp(&[(0, "PCMU")], 1));
    let bob_sdp = |codecs: &[(u8, &str)], v: u32| {
        alice_sdp(codecs, v)
            .replace("o=alice 9", "o=bob 7")
            .replace("m=audio 40000", "m=audio 30000")
    };
    let reoffer = |alice: &mut UserAgent, bob: &mut UserAgent, codecs: &[(u8, &str)], v| {
        assert!(bob.reinvite(t0, b, Bytes::from(bob_sdp(codecs, v))));
        let (out, _) = drain(bob);
        deliver(alice, t0, BOB, &out);
        let (reply, ev) = drain(alice);
        let ok = msg(of(&reply, "SIP/2.0 ")[0]);
        deliver(bob, t0, ALICE, &reply);
        settle(t0, alice, bob);
        (ok, ev)
    };
    let (ok, ev) = reoffer(&mut alice, &mut bob, &[(8, "PCMA")], 2);
    assert_eq!(ok.status(), Some(200), "{}", body(&ok));
    let answer = body(&ok);
    assert!(
        answer.contains("m=audio 40000 RTP/AVP 8 101\r\n") && !answer.contains("PCMU"),
        "{answer}"
    );
    assert!(answer.contains("o=alice 9 2 "), "{answer}");
    assert!(
        call_events(&ev)
            .iter()
            .any(|e| matches!(e, CallEvent::Reinvited { sdp: Some(_) }))
    );
    let (refused, _) = reoffer(&mut alice, &mut bob, &[(18, "G729")], 3);
    assert_eq!(refused.status(), Some(488));
    // A re-INVITE without an offer: hers in the 200 lists every configured codec.
    let (ok, _) = offerless_reinvite(t0, &mut bob, b, &mut alice, BOB);
    assert!(
        body(&ok).contains("m=audio 40000 RTP/AVP 0 8 101\r\n"),
        "{}",
        body(&ok)
    );
}

/// Alice as a callee whose group's `srtp` is `policy`.
fn alice_under(policy: SrtpPolicy) -> UserAgent {
    let (mut profile, id) = config("alice", ALICE, 41, false, "alice").split();
    profile.srtp = policy;
    UserAgent::with_profile(Arc::new(profile), id)
}

/// Alice, a callee whose group's `srtp` is `policy`, answered Bob's SDES offer with one
/// `a=crypto` line on `RTP/SAVP`: (Alice, Bob, his call).
fn sdes_call(now: Instant, policy: SrtpPolicy) -> (UserAgent, CallId, UserAgent, CallId) {
    let alice = alice_under(policy);
    let answer = alice_sdp(&[(0, "PCMU")], 1).replace("RTP/AVP", "RTP/SAVP")
        + &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {ALICE_KEY}\r\n");
    bob_calls(alice, now, &answer)
}

const ALICE_KEY: &str = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const BOB_KEY: &str = "inline:UEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJY";

/// Bob's offer inside the call (PCMU, version `v`), plain or with his SDES key (tag 3),
/// sent in a re-INVITE or, `update`, an UPDATE: Alice's reply and events.
fn bob_reoffers(
    now: Instant,
    (alice, bob, b): (&mut UserAgent, &mut UserAgent, CallId),
    srtp: bool,
    update: bool,
    v: u32,
) -> (Message, Vec<UaEvent>) {
    let mut sdp = alice_sdp(&[(0, "PCMU")], v)
        .replace("o=alice 9", "o=bob 7")
        .replace("m=audio 40000", "m=audio 30000");
    if srtp {
        sdp = sdp.replace("RTP/AVP", "RTP/SAVP")
            + &format!("a=crypto:3 AES_CM_128_HMAC_SHA1_80 {BOB_KEY}\r\n");
    }
    let sdp = Bytes::from(sdp);
    assert!(if update {
        bob.update(now, b, Some(sdp))
    } else {
        bob.reinvite(now, b, sdp)
    });
    request_and_reply(now, (bob, BOB), (alice, ALICE))
}

/// An SRTP call whose peer re-offers plain RTP (music on hold, a gateway without SRTP):
/// srtp required (`sdes`) refuses it with 488 and `Warning: 399` saying the offer drops SRTP
/// and the group requires it, for a re-INVITE and an UPDATE alike, our description
/// unchanged (RFC 3261 §14.2), and a later SRTP offer is answered with keys as before.
/// Before: 200 with our `RTP/SAVP` and `a=crypto` line answering the plain offer.
#[test]
fn an_offer_that_drops_srtp_is_refused_when_srtp_is_required() {
    let t0 = Instant::now();
    let (mut alice, a, mut bob, b) = sdes_call(t0, SrtpPolicy::Sdes);
    let before = alice.local_sdp(a).cloned();
    for (update, v) in [(false, 2), (true, 3)] {
        let (refused, ev) = bob_reoffers(t0, (&mut alice, &mut bob, b), false, update, v);
        assert_eq!(refused.status(), Some(488), "{}", body(&refused));
        let warning = refused.headers.value(&HeaderName::Warning).unwrap_or("");
        assert!(
            warning.starts_with("399 sipmeter \"the offer drops SRTP")
                && warning.contains("requires it (srtp = sdes)"),
            "{warning}"
        );
        assert!(call_events(&ev).iter().any(|e| matches!(
            e,
            CallEvent::OfferRefused { warning: w, .. } if w.starts_with("399 ")
        )));
        assert_eq!(alice.local_sdp(a).cloned(), before);
    }
    let (ok, _) = bob_reoffers(t0, (&mut alice, &mut bob, b), true, false, 4);
    assert_eq!(ok.status(), Some(200));
    assert!(
        body(&ok).contains(&format!("a=crypto:3 AES_CM_128_HMAC_SHA1_80 {ALICE_KEY}")),
        "{}",
        body(&ok)
    );
}

/// srtp optional follows: a plain re-offer in the SRTP call is answered `RTP/AVP` without
/// `a=crypto`; a later SRTP offer (the call now plain) is refused by name until the
/// application gave the call fresh keys ([`UserAgent::keep_srtp_keys`]), then answered
/// with them under the offer's tag, used once.
#[test]
fn an_offer_that_drops_srtp_is_followed_when_srtp_is_optional() {
    const SPARE: &str = "inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";
    let t0 = Instant::now();
    let (mut alice, a, mut bob, b) = sdes_call(t0, SrtpPolicy::Optional);
    let (ok, ev) = bob_reoffers(t0, (&mut alice, &mut bob, b), false, false, 2);
    assert_eq!(ok.status(), Some(200));
    let answer = body(&ok);
    assert!(
        answer.contains("m=audio 40000 RTP/AVP 0 101\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("a=crypto"), "{answer}");
    assert!(
        call_events(&ev)
            .iter()
            .any(|e| matches!(e, CallEvent::Reinvited { sdp: Some(_) }))
    );
    let (refused, _) = bob_reoffers(t0, (&mut alice, &mut bob, b), true, true, 3);
    assert_eq!(refused.status(), Some(488));
    let warning = refused.headers.value(&HeaderName::Warning).unwrap_or("");
    assert!(warning.contains("none of its own"), "{warning}");
    alice.keep_srtp_keys(
        a,
        Bytes::from(format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {SPARE}\r\n")),
    );
    let (ok, _) = bob_reoffers(t0, (&mut alice, &mut bob, b), true, false, 4);
    assert_eq!(ok.status(), Some(200));
    let answer = body(&ok);
    assert!(
        answer.contains("m=audio 40000 RTP/SAVP 0 101\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("a=crypto:3 AES_CM_128_HMAC_SHA1_80 {SPARE}\r\n")),
        "{answer}"
    );
}

/// A DTLS-SRTP call (RFC 5763): Alice (`srtp = "dtls"`) answered Bob's `actpass` offer as
/// the DTLS client (`a=setup:active`). Bob's re-INVITE with his fingerprint as before and
/// `actpass` (a hold, a refresh) is answered; one with another fingerprint (a new
/// certificate) or asking Alice's role of Bob (`a=setup:active`) would need a new
/// handshake, which is not done: refused with 488 and `Warning: 399` naming why, the call
/// going on (RFC 3261 §14.2). A plain re-offer drops DTLS-SRTP: 488 likewise. Before: all
/// answered 200 (the association kept, the peer's new certificate or role ignored).
#[test]
fn a_dtls_re_offer_that_needs_a_new_association_is_refused_by_name() {
    let t0 = Instant::now();
    let dtls = |sdp: &str, fp: &str, setup: &str| {
        sdp.replace("RTP/AVP", "UDP/TLS/RTP/SAVP")
            + &format!("a=fingerprint:sha-256 {fp}\r\na=setup:{setup}\r\na=rtcp-mux\r\n")
    };
    let offer = dtls(BOB_OFFER, "B0:B0", "actpass");
    let answer = dtls(&alice_sdp(&[(0, "PCMU")], 1), "A1:A1", "active");
    let (mut alice, _, mut bob, b) = bob_offers(alice_under(SrtpPolicy::Dtls), t0, &offer, &answer);
    let bob_sdp = |v: u32| {
        alice_sdp(&[(0, "PCMU")], v)
            .replace("o=alice 9", "o=bob 7")
            .replace("m=audio 40000", "m=audio 30000")
    };
    let mut reoffer = |sdp: String| {
        assert!(bob.reinvite(t0, b, Bytes::from(sdp)));
        request_and_reply(t0, (&mut bob, BOB), (&mut alice, ALICE)).0
    };
    let ok = reoffer(dtls(&bob_sdp(2), "B0:B0", "actpass"));
    assert_eq!(ok.status(), Some(200), "{}", body(&ok));
    assert!(body(&ok).contains("a=setup:active"), "{}", body(&ok));
    for (sdp, why) in [
        (dtls(&bob_sdp(3), "B2:B2", "actpass"), "new DTLS handshake"),
        (dtls(&bob_sdp(3), "B0:B0", "active"), "new DTLS handshake"),
        (bob_sdp(3), "drops DTLS-SRTP"),
    ] {
        let refused = reoffer(sdp);
        assert_eq!(refused.status(), Some(488));
        let warning = refused.headers.value(&HeaderName::Warning).unwrap_or("");
        assert!(
            warning.starts_with("399 ") && warning.contains(why),
            "{warning}"
        );
    }
}
