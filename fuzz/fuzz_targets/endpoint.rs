//! Drives one user agent with arbitrary sequences of API calls, timer ticks, responses to what
//! it sent (any status, with or without tags, challenges and Contacts), incoming requests and
//! raw bytes. It must never panic, and its queues and timers must stay bounded.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip_msg::{Header, HeaderName, Host, Message, Uri};
use sip_proto::auth::Credentials;
use sip_proto::transaction::TimerConfig;
use sip_proto::ua::{CallEvent, CallId, UaConfig, UaEvent, UserAgent};

const PEER: &str = "127.0.0.1:5060";

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.byte()?) << 8 | u16::from(self.byte()?))
    }
    fn bytes(&mut self) -> &[u8] {
        let n = usize::from(self.byte().unwrap_or(0)).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
}

fn config() -> UaConfig {
    UaConfig {
        user: "alice".into(),
        domain: "example.test".into(),
        registrar_uri: Uri::parse("sip:example.test:5060;transport=udp").unwrap(),
        outbound_proxy: None,
        credentials: Some(Credentials::new("alice", "secret")),
        local_host: Host::parse("127.0.0.1").unwrap(),
        local_port: 5070,
        transport: "UDP".into(),
        reliable: false,
        expires: 300,
        timers: TimerConfig::default(),
        user_agent: "fuzz".into(),
        seed: 1,
        use_100rel: true,
        session_timer: None,
        codecs: None,
    }
}

const CHALLENGE: &str = "Digest realm=\"example.test\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"";

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor(data);
    let mut ua = UserAgent::new(config());
    let peer: SocketAddr = PEER.parse().unwrap();
    let mut now = Instant::now();
    let mut sent: Vec<Message> = Vec::new();
    let mut calls: Vec<CallId> = Vec::new();
    for _ in 0..64 {
        let Some(op) = c.byte() else { break };
        match op % 12 {
            0 => ua.register(now),
            1 => ua.unregister(now),
            // Early or late offer (an INVITE without SDP: the peer's 2xx or reliable 1xx offers).
            2 => {
                let late = c.byte().unwrap_or(0) % 2 == 1;
                calls.push(ua.call(
                    now,
                    Uri::parse("sip:bob@127.0.0.1:5060").unwrap(),
                    (!late).then(|| Bytes::from_static(b"v=0\r\n")),
                ))
            }
            3 | 4 => {
                // Answer the last request we sent with any status code.
                let Some(req) = sent.iter().rev().find(|m| m.is_request()).cloned() else {
                    continue;
                };
                let code = 100 + c.u16().unwrap_or(0) % 600;
                let flags = c.byte().unwrap_or(0);
                // Two forks (To tags t1, t2) and two Contacts: early dialogs per fork and
                // their target refresh.
                let tag = (flags & 1 == 1).then_some(if flags & 32 == 32 { "t2" } else { "t1" });
                let mut resp = Message::response_to(&req, code, "X", tag);
                if flags & 2 == 2 {
                    let contact = if flags & 64 == 64 {
                        "<sip:bob@127.0.0.1:5062>"
                    } else {
                        "<sip:bob@127.0.0.1:5060>"
                    };
                    resp.headers.push(Header::new(HeaderName::Contact, contact));
                }
                if flags & 4 == 4 {
                    let name = if code == 407 {
                        HeaderName::ProxyAuthenticate
                    } else {
                        HeaderName::WwwAuthenticate
                    };
                    resp.headers.push(Header::new(name, CHALLENGE));
                }
                if flags & 8 == 8 {
                    resp.headers.push(Header::new(HeaderName::Require, "100rel"));
                    resp.headers.push(Header::new(HeaderName::RSeq, (flags >> 4).to_string()));
                }
                if flags & 16 == 16 {
                    resp.headers.push(Header::new(HeaderName::MinExpires, "3600"));
                }
                // SDP: an answer, or the offer to a late-offer INVITE.
                if flags & 128 == 128 {
                    resp.set_body("application/sdp", Bytes::from_static(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"));
                }
                ua.handle_message(now, resp, peer);
            }
            5 => {
                let ms = u64::from(c.u16().unwrap_or(0)) * 4;
                now += Duration::from_millis(ms);
                ua.handle_timeout(now);
            }
            6 => {
                // An incoming INVITE, or an in-dialog request on a call we know (a REFER to
                // follow, a NOTIFY of our REFER with any sipfrag body).
                let method = [
                    "INVITE", "BYE", "ACK", "CANCEL", "OPTIONS", "PRACK", "INFO", "UPDATE", "REFER",
                    "NOTIFY",
                ][usize::from(c.byte().unwrap_or(0) % 10)];
                let cid = c.byte().unwrap_or(0) % 4;
                let to_tag = if c.byte().unwrap_or(0) % 2 == 0 { "" } else { ";tag=x" };
                let seq = c.byte().unwrap_or(1);
                let state = ["active;expires=60", "terminated", "pending", ""]
                    [usize::from(c.byte().unwrap_or(0) % 4)];
                // RFC 3891: an INVITE's Replaces (none, one naming another of these calls, two,
                // unreadable) and a Refer-To with URI headers (an attended transfer's, others).
                let other = c.byte().unwrap_or(0) % 4;
                let replaces = [
                    String::new(),
                    format!("Replaces: c{other};to-tag=x;from-tag=b{other}\r\n"),
                    format!("Replaces: c{other};to-tag=x;from-tag=b{other}\r\nReplaces: c{other};to-tag=x;from-tag=b{other};early-only\r\n"),
                    "Replaces: ;;;to-tag\r\n".to_owned(),
                ][usize::from(c.byte().unwrap_or(0) % 4)]
                .clone();
                let refer_to = [
                    "",
                    "?Replaces=c1%3Bto-tag%3Dx%3Bfrom-tag%3Db1",
                    "?Replaces=c1%3Bto-tag%3Dx",
                    "?Subject=x&Replaces=c1",
                ][usize::from(c.byte().unwrap_or(0) % 4)];
                let body = String::from_utf8_lossy(c.bytes()).into_owned();
                let text = format!(
                    "{method} sip:alice@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{cid}{method}\r\nFrom: <sip:bob@example.test>;tag=b{cid}\r\nTo: <sip:alice@example.test>{to_tag}\r\nCall-ID: c{cid}\r\nCSeq: {seq} {method}\r\nContact: <sip:bob@127.0.0.1:5060>\r\nRAck: 1 1 INVITE\r\nRefer-To: <sip:carol@127.0.0.1:5062{refer_to}>\r\n{replaces}Event: refer\r\nSubscription-State: {state}\r\nContent-Type: message/sipfrag\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if let Ok(m) = Message::parse(text.as_bytes()) {
                    ua.handle_message(now, m, peer);
                }
            }
            7 => {
                if let Ok(m) = Message::parse(c.bytes()) {
                    ua.handle_message(now, m, peer);
                }
            }
            8 => {
                if let Some(&id) = calls.get(usize::from(c.byte().unwrap_or(0)) % calls.len().max(1)) {
                    match c.byte().unwrap_or(0) % 12 {
                        0 => ua.hangup(now, id),
                        1 => ua.ring(now, id),
                        2 => ua.answer(now, id, Some(Bytes::from_static(b"v=0\r\n"))),
                        3 => ua.reject(now, id, 486),
                        4 => drop(ua.reinvite(now, id, Bytes::from_static(b"v=0\r\na=sendonly\r\n"))),
                        5 => drop(ua.info(now, id, "application/dtmf-relay", Bytes::from_static(b"Signal=1\r\n"))),
                        6 => drop(ua.update(now, id, None)),
                        // An offer (glare with the peer's) and the second fork's dialog.
                        7 => drop(ua.update(now, id, Some(Bytes::from_static(b"v=0\r\n")))),
                        // Early media: a reliable 183 with SDP closes or opens an offer.
                        8 => ua.progress(now, id, Bytes::from_static(b"v=0\r\n")),
                        // The answer to a late offer (in the ACK or the PRACK), if one waits.
                        10 => drop(ua.answer_offer(now, id, Bytes::from_static(b"v=0\r\n"))),
                        11 => drop(ua.can_offer(id)),
                        9 => drop(ua.refer(now, id, &Uri::parse("sip:carol@127.0.0.1:5062").unwrap())),
                        _ => drop(ua.update_fork(now, id, "t2", Some(Bytes::from_static(b"v=0\r\n")))),
                    }
                }
            }
            9 => ua.handle_transport_error(now),
            10 => {
                if let Some(&id) = calls.first() {
                    ua.forget_call(id);
                }
            }
            _ => {}
        }
        // Drain; every output must print and parse back.
        let mut n = 0;
        while let Some(o) = ua.poll_transmit() {
            n += 1;
            assert!(n < 1000, "unbounded transmit queue");
            let m = Message::parse(&o.bytes).expect("our own messages parse");
            sent.push(m);
        }
        let mut e = 0;
        while let Some(ev) = ua.poll_event() {
            e += 1;
            assert!(e < 1000, "unbounded event queue");
            match ev {
                UaEvent::Call(id, CallEvent::Incoming { .. }) => calls.push(id),
                // The call a REFER made us place.
                UaEvent::Call(_, CallEvent::Referred { call, .. }) => calls.push(call),
                _ => {}
            }
        }
        if sent.len() > 256 {
            sent.drain(..128);
        }
        if let Some(t) = ua.poll_timeout() {
            assert!(t >= now || t + Duration::from_secs(3600) > now, "timer far in the past");
        }
    }
});
