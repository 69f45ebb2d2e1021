//! The service numbers' SIP side on a virtual clock: a sip-proto user agent calls `echo` and
//! `tone` at the registrar, which answers itself (100, 180, 200 with SDP, ACK, hold
//! re-INVITE, BYE); unusable offers get 488; calls whose caller vanished are cleaned up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::sdp::{self, Codec, Direction, LocalMedia, Sdes, SessionDescription};
use media::srtp::Suite;
use registrar::services::EndReason;
use registrar::{AuthMode, Registrar, Service, ServiceEvent, ServiceLimits};
use sip_msg::{Message, Uri};
use sip_proto::ua::{CallEvent, CallId, CallState, UaEvent, UserAgent};

mod common;
use common::NOW_UNIX;
const RTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000);

/// SDES for `suites`, the i-th suite's key all bytes `seed + i`.
fn sdes(required: bool, seed: u8, suites: &[Suite]) -> Sdes {
    let mut next = seed;
    let fill = |b: &mut [u8]| {
        b.fill(next);
        next += 1;
        Ok::<(), ()>(())
    };
    Sdes::generate(required, suites, fill).unwrap()
}

fn reg_addr() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

/// A registrar serving `transport` (`UDP`, `TCP`, `TLS`, `WS`, `WSS`).
fn registrar_on(transport: &str) -> Registrar {
    Registrar::new(common::config(transport, 5060, AuthMode::Ephemeral))
}

fn ua_on(user: &str, port: u16, transport: &str) -> UserAgent {
    common::phone(user, port, transport, 5060, true)
}

/// The caller's media: RTP at 127.0.0.1:30000.
fn caller_media(codecs: Vec<Codec>, direction: Direction, version: u64) -> LocalMedia {
    LocalMedia {
        codecs,
        telephone_event: true,
        ptime: 20,
        direction,
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 30_000,
        rtcp_mux: false,
        session_id: 7,
        session_version: version,
        srtp: None,
        dtls: None,
    }
}

fn offer(codecs: Vec<Codec>, direction: Direction, version: u64) -> Bytes {
    Bytes::from(sdp::build_offer(&caller_media(codecs, direction, version)).to_string())
}

/// One caller and the registrar wired by address; the test plays the socket driver.
struct Net {
    now: Instant,
    reg: Registrar,
    caller: UserAgent,
    caller_up: bool,
    events: Vec<UaEvent>,
    services: Vec<ServiceEvent>,
    log: Vec<(bool, String)>,
    /// Every message the registrar sent, and every one it received, in order.
    from_reg: Vec<Message>,
    to_reg: Vec<Message>,
    bind_fails: bool,
}

impl Net {
    fn new() -> Self {
        Self::on("UDP")
    }

    /// The registrar and the caller on `transport` (one flow: the test carries every message).
    fn on(transport: &str) -> Self {
        Self {
            now: Instant::now(),
            reg: registrar_on(transport),
            caller: ua_on("alice", 5071, transport),
            caller_up: true,
            events: Vec::new(),
            services: Vec::new(),
            log: Vec::new(),
            from_reg: Vec::new(),
            to_reg: Vec::new(),
            bind_fails: false,
        }
    }

    fn caller_addr(&self) -> SocketAddr {
        "127.0.0.1:5071".parse().unwrap()
    }

    /// Delivers messages until quiet, answering Bind events like a driver would.
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut to_reg = Vec::new();
            let mut to_caller = Vec::new();
            while let Some(o) = self.caller.poll_transmit() {
                to_reg.push(o.bytes);
            }
            self.events
                .extend(std::iter::from_fn(|| self.caller.poll_event()));
            while let Some(ev) = self.reg.poll_service_event() {
                if let ServiceEvent::Bind { call, .. } = &ev {
                    let r = if self.bind_fails { Err(()) } else { Ok(RTP) };
                    self.reg.handle_service_bound(self.now, *call, r);
                }
                self.services.push(ev);
            }
            while let Some((to, bytes)) = self.reg.poll_transmit() {
                assert_eq!(to, self.caller_addr());
                to_caller.push(bytes);
            }
            if to_reg.is_empty() && to_caller.is_empty() {
                return;
            }
            for b in to_reg {
                let msg = Message::parse(&b).unwrap();
                self.log.push((true, msg.summary()));
                self.to_reg.push(msg.clone());
                let from = self.caller_addr();
                self.reg.handle_message(self.now, NOW_UNIX, msg, from);
            }
            for b in to_caller {
                let msg = Message::parse(&b).unwrap();
                self.log.push((false, msg.summary()));
                self.from_reg.push(msg.clone());
                if self.caller_up {
                    self.caller.handle_message(self.now, msg, reg_addr());
                }
            }
        }
        panic!("the network never settled: {:?}", self.log);
    }

    /// Advances the virtual clock, firing both sides' timers.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let caller = self.caller_up.then(|| self.caller.poll_timeout()).flatten();
            let next = [self.reg.poll_timeout(), caller]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            self.reg.handle_timeout(self.now);
            if self.caller_up {
                self.caller.handle_timeout(self.now);
            }
            self.settle();
        }
        self.now = end;
    }

    fn call(&mut self, service: &str, sdp: Bytes) -> CallId {
        let now = self.now;
        let id = self.caller.call(
            now,
            Uri::parse(&format!("sip:{service}@sipmeter.test")).unwrap(),
            Some(sdp),
        );
        self.settle();
        id
    }

    fn sent_by_reg(&self) -> Vec<&str> {
        self.log
            .iter()
            .filter(|(to_reg, _)| !to_reg)
            .map(|(_, s)| s.as_str())
            .collect()
    }

    fn answer_sdp(&self) -> SessionDescription {
        let sdp = self
            .events
            .iter()
            .find_map(|e| match e {
                UaEvent::Call(_, CallEvent::Answered { sdp: Some(s) }) => Some(s.clone()),
                _ => None,
            })
            .expect("answered with sdp");
        SessionDescription::parse(&sdp).unwrap()
    }
}

#[test]
fn echo_answers_holds_and_hangs_up() {
    let mut net = Net::new();
    let call = net.call(
        "echo",
        offer(vec![Codec::Pcma, Codec::Pcmu], Direction::SendRecv, 1),
    );
    assert_eq!(net.caller.call_state(call), Some(CallState::Confirmed));
    let sent = net.sent_by_reg();
    // Authenticated like any INVITE, then answered by the registrar itself.
    assert_eq!(
        sent,
        [
            "407 Proxy Authentication Required (INVITE)",
            "100 Trying (INVITE)",
            "180 Ringing (INVITE)",
            "200 OK (INVITE)"
        ]
    );
    let answer = net.answer_sdp();
    let m = &answer.media[0];
    assert_eq!(m.port, RTP.port());
    assert_eq!(m.formats[0], "8", "the offerer's first codec: PCMA");
    assert_eq!(answer.connection, Some(RTP.ip()));
    let (call_id, negotiated) = match &net.services[..] {
        [
            ServiceEvent::Bind { call, .. },
            ServiceEvent::Media {
                call: c2,
                service: Service::Echo,
                negotiated,
            },
        ] if call == c2 => (*call, negotiated.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(negotiated.codec, Codec::Pcma);
    assert_eq!(negotiated.remote_rtp, "127.0.0.1:30000".parse().unwrap());
    assert_eq!(negotiated.recv_event_pt, Some(101));
    assert_eq!(net.reg.stats().services.active, 1);

    // Hold: a re-INVITE with sendonly is answered recvonly and the driver told.
    let now = net.now;
    assert!(
        net.caller
            .reinvite(now, call, offer(vec![Codec::Pcma], Direction::SendOnly, 2))
    );
    net.settle();
    let held = net.events.iter().find_map(|e| match e {
        UaEvent::Call(
            _,
            CallEvent::Modified {
                code, sdp: Some(s), ..
            },
        ) => Some((*code, SessionDescription::parse(s).unwrap())),
        _ => None,
    });
    let (code, sd) = held.expect("re-INVITE answered");
    assert_eq!(code, 200);
    assert_eq!(sd.media[0].direction, Some(Direction::RecvOnly));
    assert_eq!(
        sd.origin.session_version, 2,
        "a new version of our description"
    );
    assert!(matches!(
        net.services.last(),
        Some(ServiceEvent::Media { negotiated, .. }) if negotiated.direction == Direction::RecvOnly
    ));
    assert_eq!(net.caller.call_state(call), Some(CallState::Confirmed));

    // BYE from the caller: 200, media released, nothing left over.
    let now = net.now;
    net.caller.hangup(now, call);
    net.settle();
    assert!(net.events.iter().any(|e| matches!(
        e,
        UaEvent::Call(
            _,
            CallEvent::Ended {
                by_remote: false,
                code: 200
            }
        )
    )));
    assert_eq!(
        net.services.last(),
        Some(&ServiceEvent::End {
            call: call_id,
            reason: EndReason::Bye
        })
    );
    let s = net.reg.stats().services;
    assert_eq!((s.answered, s.active, s.ended_bye), (1, 0, 1), "{s:?}");
    // The remembered dialog expires.
    net.advance(Duration::from_secs(40));
    assert_eq!(net.reg.poll_timeout(), None, "no timer left");
}

#[test]
fn an_offer_with_only_unsupported_codecs_gets_488() {
    let mut net = Net::new();
    // GSM (static PT 3) only.
    let gsm = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 30000 RTP/AVP 3\r\na=rtpmap:3 GSM/8000\r\n";
    let call = net.call("tone", Bytes::from_static(gsm.as_bytes()));
    let failed = net.events.iter().find_map(|e| match e {
        UaEvent::Call(id, CallEvent::Failed { code, .. }) if *id == call => Some(*code),
        _ => None,
    });
    assert_eq!(failed, Some(488));
    assert!(
        net.services.is_empty(),
        "no media bound: {:?}",
        net.services
    );
    let s = net.reg.stats().services;
    assert_eq!((s.refused_488, s.active, s.answered), (1, 0, 0));
    // The 488 names the problem in a Warning (RFC 3261 §20.43).
    assert!(
        net.sent_by_reg()
            .contains(&"488 Not Acceptable Here (INVITE)")
    );
}

#[test]
fn no_port_gets_503() {
    let mut net = Net::new();
    net.bind_fails = true;
    let call = net.call("echo", offer(vec![Codec::Pcmu], Direction::SendRecv, 1));
    let failed = net.events.iter().find_map(|e| match e {
        UaEvent::Call(id, CallEvent::Failed { code, .. }) if *id == call => Some(*code),
        _ => None,
    });
    assert_eq!(failed, Some(503));
    assert_eq!(net.reg.stats().services.active, 0);
}

#[test]
fn a_caller_that_never_acks_is_given_up_after_64_t1() {
    let mut net = Net::new();
    let now = net.now;
    // The caller sends its INVITE and vanishes once it is challenged and re-sent.
    net.caller.call(
        now,
        Uri::parse("sip:echo@sipmeter.test").unwrap(),
        Some(offer(vec![Codec::Pcmu], Direction::SendRecv, 1)),
    );
    // Deliver up to the authenticated INVITE, then cut the caller off.
    for _ in 0..3 {
        let out: Vec<Bytes> = std::iter::from_fn(|| net.caller.poll_transmit())
            .map(|o| o.bytes)
            .collect();
        for b in out {
            let from = net.caller_addr();
            net.reg
                .handle_message(now, NOW_UNIX, Message::parse(&b).unwrap(), from);
        }
        while let Some(ev) = net.reg.poll_service_event() {
            if let ServiceEvent::Bind { call, .. } = ev {
                net.reg.handle_service_bound(now, call, Ok(RTP));
            }
            net.services.push(ev);
        }
        while let Some((_, b)) = net.reg.poll_transmit() {
            let msg = Message::parse(&b).unwrap();
            if msg.status() == Some(407) {
                net.caller.handle_message(now, msg, reg_addr());
            } else {
                net.log.push((false, msg.summary()));
            }
        }
    }
    net.caller_up = false;
    assert_eq!(net.reg.stats().services.active, 1);
    net.advance(Duration::from_secs(33));
    let oks = net
        .sent_by_reg()
        .iter()
        .filter(|s| **s == "200 OK (INVITE)")
        .count();
    // Sent at 0, then T1 doubling up to T2: 0.5, 1.5, 3.5, 7.5, 11.5 … 31.5 s.
    assert_eq!(oks, 11, "{:?}", net.sent_by_reg());
    assert!(
        net.sent_by_reg()
            .iter()
            .any(|s| s.starts_with("BYE sip:alice@127.0.0.1:5071"))
    );
    assert!(matches!(
        net.services.last(),
        Some(ServiceEvent::End {
            reason: EndReason::NoAck,
            ..
        })
    ));
    let s = net.reg.stats().services;
    assert_eq!((s.active, s.ended_by_us), (0, 1));
}

#[test]
fn overlong_and_silent_calls_are_ended_with_bye() {
    let mut net = Net::new();
    net.reg.set_service_limits(ServiceLimits {
        max_call: Duration::from_secs(10),
    });
    let first = net.call("tone", offer(vec![Codec::G722], Direction::SendRecv, 1));
    assert_eq!(net.caller.call_state(first), Some(CallState::Confirmed));
    net.advance(Duration::from_secs(11));
    assert!(net.events.iter().any(|e| matches!(
        e,
        UaEvent::Call(id, CallEvent::Ended { by_remote: true, .. }) if *id == first
    )));
    assert!(matches!(
        net.services.last(),
        Some(ServiceEvent::End {
            reason: EndReason::MaxDuration,
            ..
        })
    ));
    // The driver saw no media: it ends the call.
    let second = net.call("echo", offer(vec![Codec::Opus], Direction::SendRecv, 1));
    let id = match net
        .services
        .iter()
        .rev()
        .find(|e| matches!(e, ServiceEvent::Bind { .. }))
    {
        Some(ServiceEvent::Bind { call, .. }) => *call,
        _ => unreachable!(),
    };
    let now = net.now;
    net.reg.end_service_call(now, id);
    net.settle();
    assert!(net.events.iter().any(|e| matches!(
        e,
        UaEvent::Call(c, CallEvent::Ended { by_remote: true, .. }) if *c == second
    )));
    let s = net.reg.stats().services;
    assert_eq!((s.answered, s.active, s.ended_by_us), (2, 0, 2), "{s:?}");
}

#[test]
fn echo_at_another_domain_is_proxied_not_answered() {
    // `echo` at another host is not ours: the proxy handles it (404 here, nobody registered).
    let mut net = Net::new();
    let now = net.now;
    let id = net.caller.call(
        now,
        Uri::parse("sip:echo@elsewhere.example").unwrap(),
        Some(offer(vec![Codec::Pcmu], Direction::SendRecv, 1)),
    );
    net.settle();
    let failed = net.events.iter().find_map(|e| match e {
        UaEvent::Call(c, CallEvent::Failed { code, .. }) if *c == id => Some(*code),
        _ => None,
    });
    assert_eq!(failed, Some(404));
    assert!(net.services.is_empty());
}

/// The Contact of a service's 200 names the registrar's transport, as its Record-Route does
/// (RFC 3261 §16.6 step 4's reasoning for the remote target: `sip:host:port` with no transport
/// resolves to UDP, RFC 3263 §4.1, where a stream-only registrar does not listen). The caller's
/// BYE, sent to that Contact, ends the service call.
#[test]
fn a_service_contact_names_the_transport_it_resolves_to() {
    for (transport, param) in [
        ("UDP", ""),
        ("TCP", ";transport=tcp"),
        ("TLS", ";transport=tls"),
        ("WS", ";transport=ws"),
        ("WSS", ";transport=wss"),
    ] {
        let mut net = Net::on(transport);
        let call = net.call("echo", offer(vec![Codec::Pcmu], Direction::SendRecv, 1));
        assert_eq!(
            net.caller.call_state(call),
            Some(CallState::Confirmed),
            "{transport}"
        );
        let ok = net
            .from_reg
            .iter()
            .find(|m| m.status() == Some(200))
            .expect("a 200");
        let contact = ok
            .headers
            .get(&sip_msg::HeaderName::Contact)
            .expect("a Contact")
            .value();
        assert_eq!(
            contact,
            format!("<sip:echo@127.0.0.1:5060{param}>"),
            "{transport}"
        );
        let now = net.now;
        net.caller.hangup(now, call);
        net.settle();
        let bye = net
            .to_reg
            .iter()
            .find(|m| m.method() == Some(sip_msg::Method::Bye))
            .expect("a BYE");
        assert_eq!(
            bye.request_uri().unwrap().to_string(),
            format!("sip:echo@127.0.0.1:5060{param}"),
            "{transport}: the BYE goes to the Contact"
        );
        assert!(
            matches!(
                net.services.last(),
                Some(ServiceEvent::End {
                    reason: EndReason::Bye,
                    ..
                })
            ),
            "{transport}: {:?}",
            net.services
        );
        let s = net.reg.stats().services;
        assert_eq!((s.active, s.ended_bye), (0, 1), "{transport}: {s:?}");
    }
}

/// An INVITE without SDP (a delayed offer, RFC 3261 §13.2.1, as many PBXs and SBCs send it):
/// the 200 carries our offer, the media starts with the ACK's answer, and an ACK with no
/// usable answer ends the call with BYE (RFC 3264 §5: there is no session).
#[test]
fn a_delayed_offer_is_answered_with_ours_and_the_ack_brings_the_answer() {
    let invite = |call_id: &str| {
        format!(
            "INVITE sip:echo@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK{call_id};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:echo@sipmeter.test>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5071>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let ack = |call_id: &str, to_tag: &str, body: &str| {
        let typed = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_owned()
        };
        format!(
            "ACK sip:echo@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK{call_id}ack;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:echo@sipmeter.test>;tag={to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 ACK\r\n{typed}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Open: no challenge, so the test's messages need no credentials.
    let mut reg = open_registrar();
    let now = Instant::now();

    // A caller that answers with PCMA (the second codec of our offer).
    let (sent, events) = exchange(&mut reg, now, &invite("do1"));
    assert!(events.is_empty(), "no media before the answer: {events:?}");
    let codes: Vec<u16> = sent.iter().filter_map(Message::status).collect();
    assert_eq!(codes, [100, 180, 200]);
    let ok = &sent[2];
    let ours = SessionDescription::parse(ok.body()).expect("our offer in the 200");
    assert_eq!(ours.media[0].port, RTP.port());
    // SRTP offered best effort (RFC 4568 §7.1.1 on RTP/AVP): a plain caller ignores the keys.
    assert_eq!(ours.media[0].proto, "RTP/AVP");
    let crypto = |sd: &SessionDescription| {
        sd.media[0]
            .attributes
            .iter()
            .filter(|a| a.name == "crypto")
            .count()
    };
    assert_eq!(
        crypto(&ours),
        Suite::ALL.len(),
        "one line per suite: {ours}"
    );
    let answer = caller_answer(&ours, Codec::Pcma);
    let tag = ok.to().and_then(|t| t.tag()).unwrap();
    let (sent, media) = exchange(&mut reg, now, &ack("do1", &tag, &answer.to_string()));
    assert!(sent.is_empty(), "{sent:?}");
    assert!(
        matches!(
            media.as_slice(),
            [ServiceEvent::Media { service: Service::Echo, negotiated, .. }]
                if negotiated.codec == Codec::Pcma
                    && negotiated.remote_rtp == "127.0.0.1:30000".parse().unwrap()
                    && negotiated.srtp.is_none()
        ),
        "{media:?}"
    );

    // An SRTP caller answers one of our lines with its own key: SRTP both ways.
    let (sent, _) = exchange(&mut reg, now, &invite("do3"));
    let ours = SessionDescription::parse(sent[2].body()).unwrap();
    let mut caller = caller_media(vec![Codec::Pcmu], Direction::SendRecv, 1);
    caller.srtp = Some(sdes(true, 3, &Suite::ALL));
    let (answer, theirs) = sdp::answer_offer(&ours, &caller).unwrap();
    assert_eq!(crypto(&answer), 1);
    let tag = sent[2].to().and_then(|t| t.tag()).unwrap();
    let (_, media) = exchange(&mut reg, now, &ack("do3", &tag, &answer.to_string()));
    let [ServiceEvent::Media { negotiated, .. }] = media.as_slice() else {
        panic!("{media:?}");
    };
    let (echo, theirs) = (negotiated.srtp.clone().unwrap(), theirs.srtp.unwrap());
    assert_eq!((echo.tx_key, echo.rx_key), (theirs.rx_key, theirs.tx_key));

    // An ACK without the answer: BYE, and the media released.
    let (sent, _) = exchange(&mut reg, now, &invite("do2"));
    let tag = sent[2].to().and_then(|t| t.tag()).unwrap();
    let (bye, ended) = exchange(&mut reg, now, &ack("do2", &tag, ""));
    assert_eq!(bye.len(), 1, "{bye:?}");
    assert_eq!(bye[0].method(), Some(sip_msg::Method::Bye));
    assert!(
        matches!(
            ended.as_slice(),
            [ServiceEvent::End {
                reason: EndReason::BadAnswer,
                ..
            }]
        ),
        "{ended:?}"
    );
    let s = reg.stats().services;
    assert_eq!((s.answered, s.active, s.ended_by_us), (3, 2, 1));
}

/// SDES (RFC 4568 §7.1.2): an offer with keys, `RTP/SAVP` or `RTP/AVP` (best effort), is
/// answered on its proto with its first usable line's tag and suite and a fresh key of the
/// service's own (another each call); the media gets both keys. `RTP/SAVP` without a usable
/// line gets 488; an offer without keys stays plain.
#[test]
fn an_offer_with_keys_is_answered_with_srtp_under_a_fresh_key() {
    let mut reg = open_registrar();
    let now = Instant::now();
    let mut echo_keys = Vec::new();
    let cm128 = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];
    let cases = [
        // Every suite offered (the default): the first, AEAD_AES_256_GCM, is taken.
        (
            true,
            "RTP/SAVP",
            &Suite::ALL[..],
            None,
            "1 ",
            Suite::AeadAes256Gcm,
        ),
        (
            false,
            "RTP/AVP",
            &Suite::ALL[..],
            None,
            "1 ",
            Suite::AeadAes256Gcm,
        ),
        // The first line in a suite we lack: the second (tag 2, the 32-bit tag) is taken.
        (
            true,
            "RTP/SAVP",
            &cm128[..],
            Some("a=crypto:1 AES_192_CM_HMAC_SHA1_80"),
            "2 ",
            Suite::AesCm128HmacSha1_32,
        ),
        // AES-GCM only, as an SBC restricted to it offers: taken, not 488.
        (
            true,
            "RTP/SAVP",
            &[Suite::AeadAes128Gcm][..],
            None,
            "1 ",
            Suite::AeadAes128Gcm,
        ),
        (
            true,
            "RTP/SAVP",
            &[Suite::AesCm256HmacSha1_32][..],
            None,
            "1 ",
            Suite::AesCm256HmacSha1_32,
        ),
    ];
    for (i, (required, proto, suites, first_line, tag, suite)) in cases.into_iter().enumerate() {
        let mut caller = caller_media(vec![Codec::Pcmu], Direction::SendRecv, 1);
        caller.srtp = Some(sdes(required, 1, suites));
        let mut offer = sdp::build_offer(&caller).to_string();
        if let Some(line) = first_line {
            offer = offer.replace("a=crypto:1 AES_CM_128_HMAC_SHA1_80", line);
        }
        let call_id = format!("sdes{i}");
        let (sent, media) = exchange(
            &mut reg,
            now,
            &alice_request("INVITE", &call_id, 1, "", "i", offer.as_bytes()),
        );
        let (ok, _) = answered(&sent);
        let answer = SessionDescription::parse(ok.body()).unwrap();
        let m = &answer.media[0];
        assert_eq!(m.proto, proto, "the offer's proto mirrored");
        let lines: Vec<_> = m.attributes.iter().filter(|a| a.name == "crypto").collect();
        assert_eq!(lines.len(), 1, "{answer}");
        let value = lines[0].value.as_deref().unwrap_or_default();
        assert!(
            value.starts_with(&format!("{tag}{}", suite.name())),
            "{value}"
        );
        let theirs = sdp::apply_answer(&caller, &answer).unwrap().srtp.unwrap();
        let [ServiceEvent::Media { negotiated, .. }] = media.as_slice() else {
            panic!("{media:?}");
        };
        let echo = negotiated.srtp.clone().unwrap();
        assert_eq!((echo.suite, theirs.suite), (suite, suite));
        assert_eq!(
            echo.tx_key, theirs.rx_key,
            "echo sends under the key it answered"
        );
        assert_eq!(
            echo.rx_key, theirs.tx_key,
            "and receives under the caller's"
        );
        assert!(
            caller.srtp.as_ref().unwrap().key_of(suite) != Some(&echo.tx_key),
            "a key of its own"
        );
        echo_keys.push(echo.tx_key);
    }
    assert!(
        echo_keys[0] != echo_keys[1] && echo_keys[2] != echo_keys[4],
        "fresh per call"
    );
    // RTP/SAVP without keys: 488 naming the missing line; without RTP/SAVP or keys: plain.
    let bare = offer(vec![Codec::Pcmu], Direction::SendRecv, 1);
    let savp = String::from_utf8_lossy(&bare).replace("RTP/AVP", "RTP/SAVP");
    let (sent, media) = exchange(
        &mut reg,
        now,
        &alice_request("INVITE", "nokeys", 1, "", "i", savp.as_bytes()),
    );
    assert_eq!(sent.last().and_then(Message::status), Some(488), "{sent:?}");
    assert!(media.is_empty());
    let warning = sent
        .last()
        .unwrap()
        .headers
        .get(&sip_msg::HeaderName::Warning);
    assert!(
        warning.is_some_and(|w| w.value().contains("no a=crypto line")),
        "{warning:?}"
    );
    let (sent, media) = exchange(
        &mut reg,
        now,
        &alice_request("INVITE", "plain", 1, "", "i", &bare),
    );
    let (ok, _) = answered(&sent);
    assert!(!String::from_utf8_lossy(ok.body()).contains("crypto"));
    assert!(
        matches!(media.as_slice(), [ServiceEvent::Media { negotiated, .. }] if negotiated.srtp.is_none()),
        "{media:?}"
    );
}

/// A caller's answer (sendrecv, RTP at 127.0.0.1:30000) in `codec` to our offer `ours`.
fn caller_answer(ours: &SessionDescription, codec: Codec) -> SessionDescription {
    let caller_media = LocalMedia {
        codecs: vec![codec],
        telephone_event: false,
        ptime: 20,
        direction: Direction::SendRecv,
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 30_000,
        rtcp_mux: false,
        session_id: 9,
        session_version: 1,
        srtp: None,
        dtls: None,
    };
    sdp::answer_offer(ours, &caller_media).unwrap().0
}

/// A registrar with no authentication (raw requests need no credentials).
fn open_registrar() -> Registrar {
    Registrar::new(common::config("UDP", 5060, AuthMode::Open))
}

/// Hands `text` to the registrar from alice at 127.0.0.1:5071, plays the driver (binds at
/// `RTP`), and returns what the registrar sent and its other service events.
fn exchange(reg: &mut Registrar, now: Instant, text: &str) -> (Vec<Message>, Vec<ServiceEvent>) {
    let caller: SocketAddr = "127.0.0.1:5071".parse().unwrap();
    reg.handle_message(
        now,
        NOW_UNIX,
        Message::parse(text.as_bytes()).unwrap(),
        caller,
    );
    let mut events = Vec::new();
    while let Some(ev) = reg.poll_service_event() {
        match ev {
            ServiceEvent::Bind { call, .. } => reg.handle_service_bound(now, call, Ok(RTP)),
            ev => events.push(ev),
        }
    }
    let sent = std::iter::from_fn(|| reg.poll_transmit())
        .map(|(to, b)| {
            assert_eq!(to, caller);
            Message::parse(&b).unwrap()
        })
        .collect();
    (sent, events)
}

/// alice's request in dialog `call_id` with echo (`to_tag` empty: none), with `body` as
/// SDP.
fn alice_request(
    method: &str,
    call_id: &str,
    cseq: u32,
    to_tag: &str,
    branch: &str,
    body: &[u8],
) -> String {
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    let typed = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:echo@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:echo@sipmeter.test>{to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:alice@127.0.0.1:5071>\r\n{typed}Content-Length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    )
}

/// The 200 to alice's INVITE and its To tag.
fn answered(sent: &[Message]) -> (&Message, String) {
    let ok = sent.last().unwrap();
    assert_eq!(ok.status(), Some(200), "{sent:?}");
    (ok, ok.to().and_then(|t| t.tag()).unwrap())
}

/// alice calls echo with a PCMU offer in dialog `call_id` and ACKs the 200; the To tag.
fn confirmed_call(reg: &mut Registrar, now: Instant, call_id: &str) -> String {
    let invite = offer(vec![Codec::Pcmu], Direction::SendRecv, 1);
    let (sent, _) = exchange(
        reg,
        now,
        &alice_request("INVITE", call_id, 1, "", "i", &invite),
    );
    let (_, tag) = answered(&sent);
    let (sent, _) = exchange(reg, now, &alice_request("ACK", call_id, 1, &tag, "a", b""));
    assert!(sent.is_empty(), "{sent:?}");
    tag
}

/// RFC 3311 §5.2: an UPDATE with an offer while our offer (in the 200 to a delayed-offer
/// INVITE) waits for its answer in the ACK gets 491 and changes nothing; the ACK's answer
/// then starts the media as usual.
#[test]
fn an_update_offer_while_our_offer_waits_for_the_ack_gets_491() {
    let mut reg = open_registrar();
    let now = Instant::now();
    let (sent, _) = exchange(
        &mut reg,
        now,
        &alice_request("INVITE", "up1", 1, "", "i1", b""),
    );
    let (ok, tag) = answered(&sent);
    let ours = SessionDescription::parse(ok.body()).expect("our offer in the 200");

    let update = offer(vec![Codec::Pcmu], Direction::SendOnly, 1);
    let (sent, events) = exchange(
        &mut reg,
        now,
        &alice_request("UPDATE", "up1", 2, &tag, "u1", &update),
    );
    let codes: Vec<u16> = sent.iter().filter_map(Message::status).collect();
    assert_eq!(codes, [491], "{sent:?}");
    assert!(events.is_empty(), "{events:?}");

    let answer = caller_answer(&ours, Codec::Pcmu);
    let ack = alice_request("ACK", "up1", 1, &tag, "a1", answer.to_string().as_bytes());
    let (sent, events) = exchange(&mut reg, now, &ack);
    assert!(sent.is_empty(), "{sent:?}");
    assert!(
        matches!(
            events.as_slice(),
            [ServiceEvent::Media { negotiated, .. }]
                if negotiated.codec == Codec::Pcmu && negotiated.direction == Direction::SendRecv
        ),
        "{events:?}"
    );
}

/// RFC 3311 §5.2: the 200 to an UPDATE without an offer carries no session description
/// (there is no later message to answer an offer in); the session stays as it was.
#[test]
fn an_update_without_an_offer_gets_a_200_without_sdp() {
    let mut reg = open_registrar();
    let now = Instant::now();
    let tag = confirmed_call(&mut reg, now, "up2");
    let (sent, events) = exchange(
        &mut reg,
        now,
        &alice_request("UPDATE", "up2", 2, &tag, "u2", b""),
    );
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].status(), Some(200));
    assert!(
        sent[0].body().is_empty(),
        "no offer in the 200: {:?}",
        sent[0]
    );
    assert!(events.is_empty(), "{events:?}");
}

/// A limit too long for the clock (`Duration::MAX`, as `--max-call 1e19s` gives) means no
/// limit: the call is answered, not a panic in `Instant + Duration`.
#[test]
fn an_unbounded_max_call_is_no_limit() {
    let mut reg = open_registrar();
    reg.set_service_limits(ServiceLimits {
        max_call: Duration::MAX,
    });
    let now = Instant::now();
    confirmed_call(&mut reg, now, "mx1");
    reg.handle_timeout(now + Duration::from_secs(365 * 86_400));
    assert_eq!(reg.stats().services.active, 1);
}

/// What the registrar sends by `until`, firing its timers every 100 ms from `from`: the
/// status codes of its responses.
fn codes_sent_by(reg: &mut Registrar, from: Instant, until: Instant) -> Vec<u16> {
    let mut codes = Vec::new();
    let mut now = from;
    while now <= until {
        reg.handle_timeout(now);
        while reg.poll_service_event().is_some() {}
        codes.extend(
            std::iter::from_fn(|| reg.poll_transmit())
                .map(|(_, b)| Message::parse(&b).unwrap().status().unwrap_or(0)),
        );
        now += Duration::from_millis(100);
    }
    codes
}

/// alice's request to `sit` (see [`alice_request`]).
fn to_sit(
    method: &str,
    call_id: &str,
    cseq: u32,
    to_tag: &str,
    branch: &str,
    body: &[u8],
) -> String {
    alice_request(method, call_id, cseq, to_tag, branch, body).replace("echo@", "sit@")
}

/// RFC 3261 §17.2.1: `sit`'s 404 (and a CANCEL's 487) is a final non-2xx response to an
/// INVITE over UDP: sent again for a retransmitted INVITE and on Timer G (T1 doubling up to
/// T2) until the ACK comes, and given up at Timer H (64·T1) without one.
#[test]
fn sit_refusals_are_retransmitted_until_their_ack() {
    let t0 = Instant::now();
    let invite = offer(vec![Codec::Pcmu], Direction::SendRecv, 1);
    let mut reg = open_registrar();
    let (sent, _) = exchange(&mut reg, t0, &to_sit("INVITE", "s1", 1, "", "i", &invite));
    let codes: Vec<_> = sent.iter().filter_map(Message::status).collect();
    assert_eq!(codes.last(), Some(&183), "{sent:?}");
    let tag = sent.last().unwrap().to().and_then(|t| t.tag()).unwrap();
    // 2.5 s after the 183: the 404; Timer G at +0.5 s and +1.5 s.
    let at404 = t0 + registrar::services::SIT_FINAL_AFTER;
    let codes = codes_sent_by(&mut reg, t0, at404 + Duration::from_millis(1600));
    assert_eq!(codes, [404, 404, 404]);
    // A retransmitted INVITE gets it again; the ACK ends it.
    let now = at404 + Duration::from_millis(1700);
    let (sent, _) = exchange(&mut reg, now, &to_sit("INVITE", "s1", 1, "", "i", &invite));
    assert_eq!(
        sent.iter().filter_map(Message::status).collect::<Vec<_>>(),
        [404]
    );
    // A CANCEL crossing the 404 (§9.2): 200, and the 404 still waits for its ACK.
    let (sent, _) = exchange(&mut reg, now, &to_sit("CANCEL", "s1", 1, "", "i", b""));
    assert_eq!(
        sent.iter().filter_map(Message::status).collect::<Vec<_>>(),
        [200]
    );
    let (sent, _) = exchange(&mut reg, now, &to_sit("ACK", "s1", 1, &tag, "i", b""));
    assert!(sent.is_empty(), "{sent:?}");
    assert!(codes_sent_by(&mut reg, now, now + Duration::from_secs(40)).is_empty());

    // Never acknowledged: 0, 0.5, 1.5, 3.5, 7.5, 11.5 … 31.5 s, then Timer H.
    let mut reg = open_registrar();
    exchange(&mut reg, t0, &to_sit("INVITE", "s2", 1, "", "i", &invite));
    let codes = codes_sent_by(&mut reg, t0, at404 + Duration::from_secs(40));
    assert_eq!(codes, [404; 11]);

    // Wake-ups 5 s and 10 s late send one 404 each, not the backlog, and the next is due
    // one interval after the wake-up, not in the past.
    let mut reg = open_registrar();
    exchange(&mut reg, t0, &to_sit("INVITE", "s4", 1, "", "i", &invite));
    let late = at404 + Duration::from_secs(5);
    assert_eq!(codes_sent_by(&mut reg, late, late), [404]);
    let later = late + Duration::from_secs(10);
    assert_eq!(codes_sent_by(&mut reg, later, later), [404]);
    assert!(reg.poll_timeout().is_some_and(|t| t > later));

    // A CANCEL's 487, the same way.
    let mut reg = open_registrar();
    exchange(&mut reg, t0, &to_sit("INVITE", "s3", 1, "", "i", &invite));
    let (sent, _) = exchange(&mut reg, t0, &to_sit("CANCEL", "s3", 1, "", "i", b""));
    let codes: Vec<_> = sent.iter().filter_map(Message::status).collect();
    assert_eq!(codes, [200, 487]);
    let tag = sent[1].to().and_then(|t| t.tag()).unwrap();
    assert_eq!(
        codes_sent_by(&mut reg, t0, t0 + Duration::from_millis(600)),
        [487]
    );
    let now = t0 + Duration::from_millis(700);
    let (sent, _) = exchange(&mut reg, now, &to_sit("ACK", "s3", 1, &tag, "i", b""));
    assert!(sent.is_empty(), "{sent:?}");
    assert!(codes_sent_by(&mut reg, now, now + Duration::from_secs(40)).is_empty());
}
