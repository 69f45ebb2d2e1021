//! Bad input from the server under test: a scripted UDP "registrar" answers one endpoint's
//! REGISTER with a malformed response. That endpoint ends with a clear outcome, the bytes and
//! the parser's verdict in its trace; the engine keeps running the others.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use agent::engine::{
    EndpointPlan, GroupPlan, Outcome, Role, RunPlan, ServerTarget, StopHandle, run,
};
use sip_msg::{Message, Uri};
use sip_proto::transaction::TimerConfig;

/// Answers REGISTER with 200 OK, except for user `bad`, who gets a response whose CSeq is not
/// a number. Stops when `stop` is set.
fn scripted_registrar(sock: UdpSocket, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(req) = Message::parse(&buf[..n]) else {
            continue;
        };
        let user = req
            .from()
            .and_then(|f| f.uri.as_sip().and_then(|u| u.user.clone()))
            .unwrap_or_default();
        let resp = Message::response_to(&req, 200, "OK", Some("srv"));
        let mut bytes = resp.to_bytes();
        if user == "bad" {
            let text = String::from_utf8(bytes).unwrap();
            let cseq = req.cseq().unwrap();
            bytes = text
                .replace(&format!("CSeq: {cseq}"), "CSeq: twelve REGISTER")
                .into_bytes();
        }
        let _ = sock.send_to(&bytes, from);
    }
}

#[test]
fn a_malformed_response_fails_one_endpoint_clearly_and_spares_the_others() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || scripted_registrar(sock, stop))
    };
    let users = ["good1", "bad", "good2"];
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "malformed".into(),
        rtp_ports: None,
        keep_samples: true,
        server: ServerTarget {
            addr,
            domain: "scripted.test".into(),
            registrar_uri: Uri::parse(&format!("sip:127.0.0.1:{};transport=udp", addr.port()))
                .unwrap(),
            outbound_proxy: None,
            transport: Default::default(),
        },
        groups: vec![GroupPlan {
            server: 0,
            name: "phones".into(),
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
            register: true,
            event_actions: Vec::new(),
            actions: Vec::new(),
            media: None,
            role: Role::RegisterOnly,
        }],
        call_duration: Duration::from_millis(200),
        ramp_per_sec: 0.0,
        cps: 0.0,
        register_expires: 60,
        shards: 1,
        seed: 1,
        time_limit: Duration::from_secs(20),
        keep_all_traces: true,
        // T1 = 20 ms: the REGISTER that never gets a usable answer times out (64*T1) in 1.3 s.
        timers: TimerConfig {
            t1: Duration::from_millis(20),
            ..TimerConfig::default()
        },
    };
    let (tx, _rx) = mpsc::channel();
    let (_summary, reports) = run(plan, tx, StopHandle::default()).unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();

    let bad = reports.iter().find(|r| r.user == "bad").unwrap();
    assert_eq!(bad.outcome, Outcome::Timeout, "{bad:#?}");
    assert_eq!(bad.registration_code, Some(408));
    let error = bad.error.as_deref().unwrap();
    assert!(
        error.contains("the server sent a malformed message"),
        "{error}"
    );
    assert!(
        error.contains("CSeq: bad header value: bad number"),
        "{error}"
    );
    assert!(
        bad.trace
            .iter()
            .any(|e| e.text.contains("CSeq: twelve REGISTER")),
        "the bytes as received are in the trace"
    );
    for good in reports.iter().filter(|r| r.user != "bad") {
        assert_eq!(good.outcome, Outcome::Success, "{good:#?}");
    }
}
