//! What the virtual-clock tests of two or three agents share: the agents, their addresses,
//! draining what an agent sends and reports, and delivering it to another agent. No sockets,
//! no clock of their own.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sip_msg::{HeaderName, Host, Message, Uri};
use sip_proto::timer::TimerConfig;
use sip_proto::ua::{CallEvent, CallId, Outgoing, UaConfig, UaEvent, UserAgent};

pub const ALICE: u16 = 5062;
pub const BOB: u16 = 5064;
pub const CAROL: u16 = 5066;

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An agent for `user` at 127.0.0.1:`port` in example.test, no credentials, UDP;
/// `use_100rel`: it offers and uses reliable provisionals (RFC 3262).
pub fn agent(user: &str, port: u16, seed: u64, use_100rel: bool, name: &str) -> UserAgent {
    UserAgent::new(config(user, port, seed, use_100rel, name))
}

/// The configuration of [`agent`].
pub fn config(user: &str, port: u16, seed: u64, use_100rel: bool, name: &str) -> UaConfig {
    UaConfig {
        user: user.into(),
        domain: "example.test".into(),
        registrar_uri: Uri::parse("sip:example.test:5060").unwrap(),
        outbound_proxy: None,
        credentials: None,
        local_host: Host::parse("127.0.0.1").unwrap(),
        local_port: port,
        transport: "UDP".into(),
        reliable: false,
        expires: 300,
        timers: TimerConfig::default(),
        user_agent: name.into(),
        seed,
        use_100rel,
        session_timer: None,
        codecs: None,
    }
}

/// Everything `ua` has to send and report.
pub fn drain(ua: &mut UserAgent) -> (Vec<Outgoing>, Vec<UaEvent>) {
    let out = std::iter::from_fn(|| ua.poll_transmit()).collect();
    let ev = std::iter::from_fn(|| ua.poll_event()).collect();
    (out, ev)
}

/// Delivers every message of `out` to `to`, as sent from 127.0.0.1:`from`.
pub fn deliver(to: &mut UserAgent, now: Instant, from: u16, out: &[Outgoing]) {
    for o in out {
        to.handle_message(now, Message::parse(&o.bytes).unwrap(), addr(from));
    }
}

/// The messages of `out` whose first line starts with `prefix` (`"ACK "`, `"SIP/2.0 200 "`).
pub fn of<'a>(out: &'a [Outgoing], prefix: &str) -> Vec<&'a Outgoing> {
    out.iter()
        .filter(|o| o.bytes.starts_with(prefix.as_bytes()))
        .collect()
}

/// `o` parsed.
pub fn msg(o: &Outgoing) -> Message {
    Message::parse(&o.bytes).unwrap()
}

/// The To tag of `m`.
pub fn to_tag(m: &Message) -> String {
    m.to().unwrap().tag().unwrap()
}

/// The CSeq number of `m`.
pub fn seq(m: &Message) -> u32 {
    m.cseq().unwrap().seq
}

/// `alice` calls Bob (`sip:bob@127.0.0.1:5064`, an SDP offer): the call and what she sends
/// (the INVITE).
pub fn call_bob(alice: &mut UserAgent, now: Instant) -> (CallId, Vec<Outgoing>) {
    let call = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(bytes::Bytes::from_static(b"v=0\r\n")),
    );
    (call, drain(alice).0)
}

/// Delivers `invite` (from Alice) to `ua` and returns the incoming call it reports first.
pub fn incoming(ua: &mut UserAgent, now: Instant, invite: &[Outgoing]) -> CallId {
    deliver(ua, now, ALICE, invite);
    let (_, ev) = drain(ua);
    match ev.first() {
        Some(UaEvent::Call(c, CallEvent::Incoming { .. })) => *c,
        _ => panic!("no incoming call: {ev:?}"),
    }
}

/// The call events of `ev`, in order.
pub fn call_events(ev: &[UaEvent]) -> Vec<&CallEvent> {
    ev.iter()
        .filter_map(|e| match e {
            UaEvent::Call(_, e) => Some(e),
            _ => None,
        })
        .collect()
}

pub fn sdp(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Alice and Bob, Alice's call ringing at Bob (nothing of it delivered to Alice yet).
/// `offer`: the INVITE carries an offer (else a late offer: Bob's SDP is the offer).
pub fn calling(
    now: Instant,
    use_100rel: bool,
    offer: bool,
) -> (UserAgent, CallId, UserAgent, CallId) {
    let mut alice = agent("alice", ALICE, 31, use_100rel, "offers");
    let mut bob = agent("bob", BOB, 32, use_100rel, "offers");
    let a = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        offer.then(|| sdp("v=0 a\r\n")),
    );
    let (invite, _) = drain(&mut alice);
    let b = incoming(&mut bob, now, &invite);
    (alice, a, bob, b)
}

/// Delivers everything both have to send until neither has anything more.
pub fn settle(now: Instant, alice: &mut UserAgent, bob: &mut UserAgent) {
    loop {
        let (a, _) = drain(alice);
        let (b, _) = drain(bob);
        if a.is_empty() && b.is_empty() {
            return;
        }
        deliver(bob, now, ALICE, &a);
        deliver(alice, now, BOB, &b);
    }
}

/// The one request `o` (sent without a body) with the SDP `body` added: an offer the API
/// would not send.
pub fn with_offer(o: &Outgoing, body: &str) -> Message {
    let head = head_of(o);
    let text = format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Message::parse(text.as_bytes()).unwrap()
}

/// The header of the message `o`, each line with its CRLF, without Content-Length and
/// Content-Type.
pub fn head_of(o: &Outgoing) -> String {
    let text = String::from_utf8(o.bytes.to_vec()).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .filter(|l| !l.starts_with("Content-Length") && !l.starts_with("Content-Type"))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// A NOTIFY from Bob (the dialog's other side) in `refer`'s dialog, as a PBX sends it about a
/// transfer: CSeq `seq`, branch `branch`, `Event: {event}`, `state` (a whole Subscription-State
/// line, or nothing) and a `message/sipfrag` body.
pub fn notify(
    refer: &Message,
    seq: u32,
    branch: &str,
    event: &str,
    state: &str,
    body: &str,
) -> Message {
    let from = refer.headers.value(&HeaderName::To).unwrap();
    let to = refer.headers.value(&HeaderName::From).unwrap();
    let call_id = refer.headers.value(&HeaderName::CallId).unwrap();
    let text = format!(
        "NOTIFY sip:alice@127.0.0.1:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5064;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: {from}\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {seq} NOTIFY\r\n\
         Contact: <sip:bob@127.0.0.1:5064>\r\n\
         Event: {event}\r\n\
         {state}\
         Content-Type: message/sipfrag\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Message::parse(text.as_bytes()).unwrap()
}
