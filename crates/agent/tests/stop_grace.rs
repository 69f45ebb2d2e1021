//! The stop ends the run whatever the server does. At the time limit (or Ctrl-C) callers
//! hang up and answerers wait for those BYEs; an answerer whose caller never hangs up (a
//! BYE lost for good, or a caller that is not part of the run) hangs up itself after a
//! grace of 8 × T1, and the run ends with its report.
//!
//! A scripted server registers our answerer, calls it, ACKs its 200 OK and then never sends
//! a BYE nor answers ours. The run's time limit is 5 s (the call is up by then).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use agent::engine::{
    EndpointPlan, GroupPlan, Outcome, Phase, Role, RunPlan, ServerTarget, StopHandle, run,
};
use agent::trace::Direction;
use sip_msg::{Message, Method, Uri};
use sip_proto::transaction::TimerConfig;

const SDP: &str = "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The header line `name: …` of a message's text (full names only: our UA prints them).
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Answers REGISTER with 200 OK; once the answerer has registered, calls it and ACKs its
/// 200 OK; ignores everything else (the BYE above all). Stops when `stop` is set.
fn scripted_server(sock: UdpSocket, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let here = sock.local_addr().unwrap();
    let mut buf = [0u8; 65_536];
    let mut called: Option<SocketAddr> = None;
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(msg) = Message::parse(&buf[..n]) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        // (`method` of a response is its CSeq's.)
        match (msg.method(), msg.status()) {
            (Some(Method::Register), None) => {
                let resp = Message::response_to(&msg, 200, "OK", Some("reg"));
                let resp = String::from_utf8(resp.to_bytes()).unwrap();
                let (head, body) = resp.split_once("\r\n\r\n").unwrap();
                let contact = line(&text, "Contact");
                let _ = sock.send_to(
                    format!("{head}\r\n{contact};expires=60\r\n\r\n{body}").as_bytes(),
                    from,
                );
                if called.is_none() && !text.contains("expires=0") {
                    called = Some(from);
                    let invite = format!(
                        "INVITE sip:callee@{from} SIP/2.0\r\n\
                         Via: SIP/2.0/UDP {here};branch=z9hG4bK-stop-invite\r\n\
                         Max-Forwards: 70\r\n\
                         From: <sip:peer@{here}>;tag=peer\r\n\
                         To: <sip:callee@{from}>\r\n\
                         Call-ID: stop-grace@test\r\n\
                         CSeq: 1 INVITE\r\n\
                         Contact: <sip:peer@{here}>\r\n\
                         Content-Type: application/sdp\r\n\
                         Content-Length: {}\r\n\r\n{SDP}",
                        SDP.len()
                    );
                    let _ = sock.send_to(invite.as_bytes(), from);
                }
            }
            (Some(Method::Invite), Some(200)) => {
                let to = line(&text, "To");
                let ack = format!(
                    "ACK sip:callee@{from} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {here};branch=z9hG4bK-stop-ack\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:peer@{here}>;tag=peer\r\n\
                     {to}\r\n\
                     Call-ID: stop-grace@test\r\n\
                     CSeq: 1 ACK\r\n\
                     Content-Length: 0\r\n\r\n"
                );
                let _ = sock.send_to(ack.as_bytes(), from);
            }
            _ => {}
        }
    }
}

#[test]
fn an_answerer_whose_caller_never_hangs_up_ends_the_run_itself() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || scripted_server(sock, stop))
    };
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "stop grace".into(),
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
            name: "callees".into(),
            endpoints: vec![EndpointPlan {
                user: "callee".into(),
                credentials: None,
            }],
            prack: false,
            ringing: Default::default(),
            identity: Default::default(),
            session_timer: None,
            register: true,
            event_actions: Vec::new(),
            actions: Vec::new(),
            media: None,
            role: Role::Answer {
                answer_delay: Duration::ZERO,
            },
        }],
        call_duration: Duration::from_secs(60),
        ramp_per_sec: 0.0,
        cps: 0.0,
        register_expires: 60,
        shards: 1,
        seed: 7,
        time_limit: Duration::from_secs(5),
        keep_all_traces: true,
        // T1 = 20 ms: the grace is 160 ms, the unanswered BYE times out (64 × T1) in 1.3 s.
        timers: TimerConfig {
            t1: Duration::from_millis(20),
            ..TimerConfig::default()
        },
    };
    // The run in a thread, so that a run that never ends fails the test instead of hanging
    // it (the bound is far above the ≈ 7 s the run takes).
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (tx, _rx) = mpsc::channel();
        let _ = done_tx.send(run(plan, tx, StopHandle::default()));
    });
    let result = done_rx.recv_timeout(Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let (_summary, reports) = result.expect("the run ended after its time limit").unwrap();

    let r = &reports[0];
    assert_eq!(r.calls_received, 1, "{r:#?}");
    assert_eq!(r.phase, Phase::Closed, "{r:#?}");
    assert_eq!(r.outcome, Outcome::Timeout, "{r:#?}");
    assert_eq!(
        r.error.as_deref(),
        Some("the run's time limit was reached"),
        "{r:#?}"
    );
    // It answered, then (after the stop) hung up itself: its BYE is in the trace, and the
    // un-REGISTER after it.
    let sent = |start: &str| {
        r.trace
            .iter()
            .position(|e| e.direction == Direction::Sent && e.first_line().starts_with(start))
    };
    let answered = sent("SIP/2.0 200").expect("the 200 OK to the INVITE");
    let bye = sent("BYE ").expect("the answerer's own BYE");
    assert!(bye > answered, "{:#?}", r.trace);
    let unregister = r
        .trace
        .iter()
        .rposition(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER "))
        .unwrap();
    assert!(unregister > bye, "{:#?}", r.trace);
}
