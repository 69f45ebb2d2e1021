//! Requests inside a dialog challenged with 401/407 (RFC 3261 §22.2, §22.3), on a virtual
//! clock: Alice (our agent, with credentials) is in a call with Bob (our agent); a server that
//! authenticates every request (FreeSWITCH's `auth-all-packets`, a carrier's SBC) stands
//! between them and challenges her BYE, re-INVITE or REFER. The challenges are made, and the
//! credentials checked, by sip-auth's server side.

use std::time::Instant;

use sip_auth::{Algorithm, Authorization, NonceIssuer, Verdict, verify};
use sip_msg::{Header, HeaderName, Message, Method, Uri};
use sip_proto::auth::Credentials;
use sip_proto::ua::{CallEvent, CallId, CallState, UaConfig, UserAgent};

mod common;
use common::{ALICE, BOB, addr, call_events, config, drain, incoming, msg, sdp, seq, settle};

const REALM: &str = "example.test";
const PASSWORD: &str = "s3cret";
const NOW_UNIX: u64 = 1_790_000_000;

/// The server in the middle: issues challenges and checks the credentials of retries.
struct Challenger {
    issuer: NonceIssuer,
}

impl Challenger {
    fn new() -> Self {
        Self {
            issuer: NonceIssuer::new(b"in-dialog", 3600),
        }
    }

    /// `code` (401 or 407) to `req` with a fresh challenge, `stale` as told.
    fn challenge(&self, req: &Message, code: u16, stale: bool) -> Message {
        let (reason, ask) = if code == 407 {
            (
                "Proxy Authentication Required",
                HeaderName::ProxyAuthenticate,
            )
        } else {
            ("Unauthorized", HeaderName::WwwAuthenticate)
        };
        let mut resp = Message::response_to(req, code, reason, None);
        let ch = self
            .issuer
            .challenge(REALM, Algorithm::Sha256, stale, NOW_UNIX);
        resp.headers.push(Header::new(ask, ch));
        resp
    }

    /// The verdict on the credentials `req` carries in `header`.
    fn check(&self, req: &Message, header: HeaderName) -> Verdict {
        let value = req
            .headers
            .value(&header)
            .unwrap_or_else(|| panic!("no {header:?} in\n{req}"));
        let auth = Authorization::parse(value).unwrap();
        assert_eq!(auth.username, "alice");
        verify(
            &auth,
            &self.issuer,
            REALM,
            PASSWORD,
            req.method().unwrap().as_str(),
            req.body(),
            NOW_UNIX,
        )
    }
}

/// Alice (credentials alice/s3cret) and Bob in a confirmed call: (alice, her call, bob, his
/// call, now).
fn in_call() -> (UserAgent, CallId, UserAgent, CallId, Instant) {
    let now = Instant::now();
    let mut alice = UserAgent::new(UaConfig {
        credentials: Some(Credentials::new("alice", PASSWORD)),
        ..config("alice", ALICE, 41, false, "auth")
    });
    let mut bob = UserAgent::new(config("bob", BOB, 42, false, "auth"));
    let a = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(sdp("v=0 a\r\n")),
    );
    let (invite, _) = drain(&mut alice);
    let b = incoming(&mut bob, now, &invite);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    (alice, a, bob, b, now)
}

/// Delivers `m` to `alice` as from Bob's side: the requests she sends (parsed) and her call
/// events.
fn to_alice(alice: &mut UserAgent, now: Instant, m: Message) -> (Vec<Message>, Vec<CallEvent>) {
    alice.handle_message(now, m, addr(BOB));
    let (out, ev) = drain(alice);
    let events = call_events(&ev).into_iter().cloned().collect();
    (out.iter().map(msg).collect(), events)
}

/// The one message Alice has to send.
fn one(alice: &mut UserAgent) -> Message {
    let (out, _) = drain(alice);
    assert_eq!(out.len(), 1, "{out:?}");
    msg(&out[0])
}

/// The call events are exactly our BYE's teardown, answered `code`.
fn assert_our_bye_ended(events: &[CallEvent], code: u16) {
    assert!(
        matches!(events, [CallEvent::Ended { by_remote: false, code: c }] if *c == code),
        "{events:?}"
    );
}

/// The top Via's branch of `m`.
fn branch(m: &Message) -> String {
    let via = m.headers.value(&HeaderName::Via).unwrap();
    via.split(";branch=").nth(1).unwrap().to_owned()
}

/// `retry` is `first` sent again: the dialog's next CSeq number, a new branch, the same
/// dialog, Request-URI and body.
fn assert_retry_of(first: &Message, retry: &Message) {
    assert_eq!(retry.method(), first.method());
    assert_eq!(
        seq(retry),
        seq(first) + 1,
        "RFC 3261 §8.1.3.5: CSeq one higher"
    );
    assert_ne!(branch(retry), branch(first), "a new transaction");
    for h in [HeaderName::CallId, HeaderName::From, HeaderName::To] {
        assert_eq!(retry.headers.value(&h), first.headers.value(&h), "{h:?}");
    }
    assert_eq!(
        retry.request_uri().map(|u| u.to_string()),
        first.request_uri().map(|u| u.to_string())
    );
    assert_eq!(retry.body(), first.body());
}

#[test]
fn a_challenged_bye_is_sent_again_with_credentials_and_ends_the_call() {
    let (mut alice, a, mut bob, _, now) = in_call();
    let server = Challenger::new();
    alice.hangup(now, a);
    let bye = one(&mut alice);
    assert_eq!(bye.method(), Some(Method::Bye));

    let (out, events) = to_alice(&mut alice, now, server.challenge(&bye, 407, false));
    assert!(
        events.is_empty(),
        "the 407 is not the BYE's answer: {events:?}"
    );
    assert_eq!(out.len(), 1, "the BYE again: {out:?}");
    let retry = &out[0];
    assert_retry_of(&bye, retry);
    assert_eq!(
        server.check(retry, HeaderName::ProxyAuthorization),
        Verdict::Ok
    );

    bob.handle_message(now, retry.clone(), addr(ALICE));
    let (ok, _) = drain(&mut bob);
    let (_, events) = to_alice(&mut alice, now, msg(&ok[0]));
    assert_our_bye_ended(&events, 200);
}

#[test]
fn a_second_challenge_to_our_credentials_is_the_answer_and_no_loop() {
    let (mut alice, a, _, _, now) = in_call();
    let server = Challenger::new();
    alice.hangup(now, a);
    let bye = one(&mut alice);
    let (out, _) = to_alice(&mut alice, now, server.challenge(&bye, 401, false));
    let retry = &out[0];
    assert_eq!(server.check(retry, HeaderName::Authorization), Verdict::Ok);

    // Refused again (a wrong password, say): no third BYE; the 401 ends the call's teardown.
    let (out, events) = to_alice(&mut alice, now, server.challenge(retry, 401, false));
    assert!(out.is_empty(), "{out:?}");
    assert_our_bye_ended(&events, 401);

    // A stale nonce is no rejection (RFC 7616 §3.3): answered once more.
    let (mut alice, a, _, _, now) = in_call();
    alice.hangup(now, a);
    let bye = one(&mut alice);
    let (out, _) = to_alice(&mut alice, now, server.challenge(&bye, 407, false));
    let (out, events) = to_alice(&mut alice, now, server.challenge(&out[0], 407, true));
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(out.len(), 1);
    assert_eq!(seq(&out[0]), seq(&bye) + 2);
}

#[test]
fn a_challenged_reinvite_keeps_its_offer_and_is_answered_once() {
    let (mut alice, a, mut bob, _, now) = in_call();
    let server = Challenger::new();
    assert!(alice.reinvite(now, a, sdp("v=0 a hold\r\n")));
    let reinvite = one(&mut alice);
    assert_eq!(&reinvite.body()[..], b"v=0 a hold\r\n");

    let (out, events) = to_alice(&mut alice, now, server.challenge(&reinvite, 401, false));
    assert!(
        events.is_empty(),
        "the 401 is not the re-INVITE's answer: {events:?}"
    );
    // The 401 is ACKed by its transaction (RFC 3261 §17.1.1.3, its CSeq), then the retry.
    let methods: Vec<_> = out.iter().map(|m| m.method().unwrap()).collect();
    assert_eq!(methods, [Method::Ack, Method::Invite], "{out:?}");
    assert_eq!(seq(&out[0]), seq(&reinvite));
    let retry = &out[1];
    assert_retry_of(&reinvite, retry);
    assert_eq!(server.check(retry, HeaderName::Authorization), Verdict::Ok);
    // The offer is still ours and open: no other offer meanwhile (RFC 3264 §4).
    assert!(!alice.can_offer(a));

    bob.handle_message(now, retry.clone(), addr(ALICE));
    let (ok, _) = drain(&mut bob);
    let ok = ok
        .iter()
        .map(msg)
        .find(|m| m.status() == Some(200))
        .unwrap();
    let (out, events) = to_alice(&mut alice, now, ok);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].method(), Some(Method::Ack));
    assert_eq!(
        seq(&out[0]),
        seq(retry),
        "the 2xx's ACK has the retry's CSeq"
    );
    assert!(
        matches!(
            events.as_slice(),
            [CallEvent::Modified {
                code: 200,
                sdp: Some(_),
                ..
            }]
        ),
        "{events:?}"
    );
    assert!(alice.can_offer(a));
}

#[test]
fn a_challenged_refer_is_sent_again_and_its_notifies_name_the_retry() {
    let (mut alice, a, _, _, now) = in_call();
    let server = Challenger::new();
    let target = Uri::parse("sip:2001@pbx.example.test").unwrap();
    assert!(alice.refer(now, a, &target));
    let refer = one(&mut alice);
    assert_eq!(refer.method(), Some(Method::Refer));

    let (out, events) = to_alice(&mut alice, now, server.challenge(&refer, 407, false));
    assert!(events.is_empty(), "{events:?}");
    let retry = &out[0];
    assert_retry_of(&refer, retry);
    assert_eq!(
        retry.headers.value(&HeaderName::ReferTo),
        refer.headers.value(&HeaderName::ReferTo)
    );
    assert_eq!(
        server.check(retry, HeaderName::ProxyAuthorization),
        Verdict::Ok
    );

    let accepted = Message::response_to(retry, 202, "Accepted", None);
    let (_, events) = to_alice(&mut alice, now, accepted);
    assert!(
        matches!(events.as_slice(), [CallEvent::ReferAnswered { code: 202 }]),
        "{events:?}"
    );

    // RFC 3515 §2.4.6: the NOTIFYs' `id` is the CSeq number of the REFER that was accepted.
    for (id, expect) in [(seq(&refer), 481), (seq(retry), 200)] {
        let notify = notify_of(retry, id, 7 + id);
        let (out, _) = to_alice(&mut alice, now, notify);
        assert_eq!(out[0].status(), Some(expect), "id={id}: {}", out[0]);
    }
}

#[test]
fn without_credentials_the_challenge_is_the_answer() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = common::calling(now, false, true);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    settle(now, &mut alice, &mut bob);
    let server = Challenger::new();
    alice.hangup(now, a);
    let bye = one(&mut alice);
    let (out, events) = to_alice(&mut alice, now, server.challenge(&bye, 407, false));
    assert!(out.is_empty(), "{out:?}");
    assert_our_bye_ended(&events, 407);
}

/// A NOTIFY from Bob in `refer`'s dialog naming REFER `id`, with CSeq `cseq`, final 200.
fn notify_of(refer: &Message, id: u32, cseq: u32) -> Message {
    let state = "Subscription-State: terminated;reason=noresource\r\n";
    let event = format!("refer;id={id}");
    common::notify(
        refer,
        cseq,
        &format!("n{cseq}"),
        &event,
        state,
        "SIP/2.0 200 OK\r\n",
    )
}
