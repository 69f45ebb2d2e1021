//! Sends the kernel refuses on the shard's shared UDP socket. The shard writes a turn's
//! datagrams together (`sendmmsg`); one refused datagram must still be that endpoint's send
//! error, in its trace and its outcome, and must not cost any other endpoint a message.
//!
//! A scripted UAS answers every INVITE with 200 OK. For user `bad` its Contact is an IPv6
//! address, so that endpoint's ACK and BYE go to `[::1]` over our IPv4 socket, which the
//! kernel refuses at once (no timing involved). The other callers complete their calls.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use agent::engine::{
    EndpointPlan, GroupPlan, OfferTiming, Outcome, Role, RunPlan, ServerTarget, StopHandle, run,
};
use agent::trace::Direction;
use sip_msg::{Message, Method, Uri};
use sip_proto::transaction::TimerConfig;

const SDP: &str = "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Answers INVITE and BYE with 200 OK (INVITE's with an SDP answer and a Contact: IPv6 for
/// user `bad`); ignores ACK. Stops when `stop` is set.
fn scripted_uas(sock: UdpSocket, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let here = sock.local_addr().unwrap();
    let mut buf = [0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(req) = Message::parse(&buf[..n]) else {
            continue;
        };
        let mut resp = Message::response_to(&req, 200, "OK", Some("uas"));
        let contact = match req.method() {
            Some(Method::Invite) => {
                resp.set_body("application/sdp", SDP);
                let user = req
                    .from()
                    .and_then(|f| f.uri.as_sip().and_then(|u| u.user.clone()))
                    .unwrap_or_default();
                if user == "bad" {
                    "Contact: <sip:uas@[::1]:5060>\r\n".to_owned()
                } else {
                    format!("Contact: <sip:uas@{here}>\r\n")
                }
            }
            Some(Method::Bye) => String::new(),
            _ => continue,
        };
        let text = String::from_utf8(resp.to_bytes()).unwrap();
        // The Contact goes in with the other headers, before the blank line.
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let _ = sock.send_to(format!("{head}\r\n{contact}\r\n{body}").as_bytes(), from);
    }
}

#[test]
fn a_refused_datagram_fails_its_endpoint_and_spares_the_others() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || scripted_uas(sock, stop))
    };
    let users = ["good1", "bad", "good2", "good3"];
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "refused sends".into(),
        rtp_ports: None,
        keep_samples: true,
        server: ServerTarget {
            addr,
            domain: "127.0.0.1".into(),
            registrar_uri: Uri::parse(&format!("sip:{addr};transport=udp")).unwrap(),
            outbound_proxy: None,
            transport: Default::default(),
        },
        groups: vec![GroupPlan {
            server: 0,
            name: "callers".into(),
            endpoints: users
                .iter()
                .map(|u| EndpointPlan {
                    user: (*u).into(),
                    credentials: None,
                })
                .collect(),
            prack: false,
            ringing: Default::default(),
            identity: Default::default(),
            session_timer: None,
            register: false,
            event_actions: Vec::new(),
            actions: Vec::new(),
            media: None,
            role: Role::Call {
                targets: vec![Uri::parse(&format!("sip:service@{addr}")).unwrap()],
                calls: 2,
                pause: Duration::ZERO,
                offer: OfferTiming::Early,
            },
        }],
        call_duration: Duration::ZERO,
        ramp_per_sec: 0.0,
        cps: 0.0,
        register_expires: 60,
        shards: 1,
        seed: 5,
        time_limit: Duration::from_secs(30),
        keep_all_traces: true,
        // T1 = 20 ms: the BYE that cannot leave times out (64*T1) in 1.3 s.
        timers: TimerConfig {
            t1: Duration::from_millis(20),
            ..TimerConfig::default()
        },
    };
    let (tx, _rx) = mpsc::channel();
    let (summary, reports) = run(plan, tx, StopHandle::default()).unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();

    let bad = reports.iter().find(|r| r.user == "bad").unwrap();
    assert_eq!(bad.outcome, Outcome::Oserror, "{bad:#?}");
    let error = bad.error.as_deref().unwrap();
    assert!(error.starts_with("send failed: "), "{error}");
    // Each refused message is in the trace as sent, at its time, and a note says why.
    let refused: Vec<_> = bad
        .trace
        .iter()
        .filter(|e| {
            e.direction == Direction::Note && e.text.starts_with("send to [::1]:5060 failed: ")
        })
        .collect();
    assert!(!refused.is_empty(), "{:#?}", bad.trace);
    let ack = bad
        .trace
        .iter()
        .position(|e| {
            e.direction == Direction::Sent && e.first_line().starts_with("ACK sip:uas@[::1]:5060")
        })
        .expect("the ACK is in the trace as sent");
    let note = bad
        .trace
        .iter()
        .position(|e| {
            e.direction == Direction::Note && e.text.starts_with("send to [::1]:5060 failed: ")
        })
        .unwrap();
    assert!(note > ack, "the note follows the message: {:#?}", bad.trace);
    assert_eq!(
        bad.trace[note].at_ms, bad.trace[ack].at_ms,
        "{:#?}",
        bad.trace
    );
    assert_eq!(summary.send_errors, refused.len() as u64, "{summary:#?}");

    // The others lost nothing: both calls answered and ended (each BYE answered).
    for good in reports.iter().filter(|r| r.user != "bad") {
        assert_eq!(good.outcome, Outcome::Success, "{good:#?}");
        assert_eq!(good.calls_answered, 2, "{good:#?}");
        assert!(good.trace.iter().all(|e| !e.text.contains("failed")));
    }
}
