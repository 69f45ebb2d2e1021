//! A busy shard does not wake for each datagram (`sipsock`): it lets them wait in its socket
//! for a quantum. What it measures must not move with that: the answers' timings count from
//! their arrival (the kernel's receive stamp), not from when the loop read them. And an idle
//! shard still wakes at once for the first datagram.
//!
//! The quantum is made huge here (500 ms, `sipsock::set_quantum`; this file is its own
//! process) so that the wait is unmistakable. A scripted UAS answers INVITE with 100 at once,
//! 180 40 ms later and 200 OK 40 ms after that. The caller is idle when the 100 comes, so
//! it reads it at once, then coalesces: the 180 and the 200 sit in the socket until the
//! quantum ends. The trace (read times) shows that wait; the timings must not.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use agent::engine::{
    EndpointPlan, GroupPlan, OfferTiming, Outcome, Role, RunPlan, ServerTarget, StopHandle, run,
};
use agent::trace::Direction;
use sip_msg::{Message, Method, Uri};
use sip_proto::transaction::TimerConfig;

const SDP: &str = "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

const QUANTUM: Duration = Duration::from_millis(500);
const RING_AFTER: Duration = Duration::from_millis(40);

/// INVITE: 100 at once, 180 after `RING_AFTER`, 200 OK (SDP, Contact) after as long again.
/// BYE: 200 OK. ACK: nothing.
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
        match req.method() {
            Some(Method::Invite) => {
                let trying = Message::response_to(&req, 100, "Trying", None);
                sock.send_to(&trying.to_bytes(), from).unwrap();
                std::thread::sleep(RING_AFTER);
                let ringing = Message::response_to(&req, 180, "Ringing", Some("uas"));
                sock.send_to(&ringing.to_bytes(), from).unwrap();
                std::thread::sleep(RING_AFTER);
                let mut ok = Message::response_to(&req, 200, "OK", Some("uas"));
                ok.set_body("application/sdp", SDP);
                let text = String::from_utf8(ok.to_bytes()).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                let contact = format!("Contact: <sip:uas@{here}>\r\n");
                sock.send_to(format!("{head}\r\n{contact}\r\n{body}").as_bytes(), from)
                    .unwrap();
            }
            Some(Method::Bye) => {
                let ok = Message::response_to(&req, 200, "OK", Some("uas"));
                sock.send_to(&ok.to_bytes(), from).unwrap();
            }
            _ => {}
        }
    }
}

/// Linux turns receive stamping on for the whole system a moment after the first socket
/// asks (a deferred static key); until then datagrams are stamped when read. Make sure it
/// is on (and keep the socket, so it stays on) before the run.
fn stamping_on() -> UdpSocket {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    agent::rxstamp::enable(&rx).unwrap();
    rx.set_nonblocking(true).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..100 {
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = [0u8; 8];
        let (_, at, _, _) = agent::rxstamp::recv(&rx, &mut buf).unwrap();
        if at.elapsed() >= Duration::from_millis(15) {
            return rx;
        }
    }
    panic!("the kernel never stamped a datagram on arrival");
}

#[test]
fn answers_that_waited_in_a_coalescing_shard_are_timed_from_their_arrival() {
    agent::sipsock::set_quantum(QUANTUM);
    let _stamping = stamping_on();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || scripted_uas(sock, stop))
    };
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "coalesced answers".into(),
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
            endpoints: vec![EndpointPlan {
                user: "alice".into(),
                credentials: None,
            }],
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
                // The second call is dialled 100 ms after the first ends: a deadline inside
                // the quantum, which fires at the quantum's end (slack, not lateness).
                calls: 2,
                pause: Duration::from_millis(100),
                offer: OfferTiming::Early,
            },
        }],
        call_duration: Duration::ZERO,
        ramp_per_sec: 0.0,
        cps: 0.0,
        register_expires: 60,
        shards: 1,
        seed: 7,
        time_limit: Duration::from_secs(30),
        keep_all_traces: true,
        // T1 = 2 s: no INVITE retransmission (Timer A) falls inside the quantum, so the
        // caller waits for the 100 with its socket armed (idle).
        timers: TimerConfig {
            t1: Duration::from_secs(2),
            ..TimerConfig::default()
        },
    };
    let began = Instant::now();
    let (tx, _rx) = mpsc::channel();
    let (summary, reports) = run(plan, tx, StopHandle::default()).unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();

    let r = &reports[0];
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    assert_eq!(r.calls_answered, 2, "{r:#?}");
    // When the loop read each message (the trace's times), after the INVITE left.
    let read = |first: &str| {
        let invite = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Sent && e.first_line().starts_with("INVITE"))
            .expect("the INVITE is in the trace")
            .at_ms;
        let e = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Received && e.first_line().starts_with(first))
            .unwrap_or_else(|| panic!("no {first} in {:#?}", r.trace));
        e.at_ms - invite
    };
    // Idle, the shard woke for the 100 at once (well inside the quantum).
    let read_100 = read("SIP/2.0 100");
    assert!(read_100 < 250.0, "100 read {read_100} ms after the INVITE");
    // Then it coalesced: the 180 and the 200 waited in the socket for the quantum.
    let read_180 = read("SIP/2.0 180");
    let read_200 = read("SIP/2.0 200");
    assert!(read_180 >= 450.0, "180 read {read_180} ms after the INVITE");
    assert!(read_200 >= 450.0, "200 read {read_200} ms after the INVITE");
    // Yet the timings (the first call's) are the arrivals': 40 and 80 ms after the INVITE (give or take the
    // scripted peer's scheduling), not the reads.
    let t = &r.timings;
    let t100 = t.time_to_100_ms.unwrap();
    let t180 = t.time_to_180_ms.unwrap();
    let setup = t.call_setup_ms.unwrap();
    assert!(t100 <= read_100 && t100 < 250.0, "{t:?}");
    assert!((39.0..250.0).contains(&t180), "{t:?}");
    assert_eq!(t.post_dial_delay_ms, Some(t180), "{t:?}");
    assert!((79.0..250.0).contains(&setup) && setup > t180, "{t:?}");
    // The quantum's slack is not lateness: the second dial fired ~400 ms after its
    // deadline, inside the slack.
    assert_eq!(summary.late_timers, 0, "{summary:#?}");
    assert!(summary.max_timer_lateness_ms < 200.0, "{summary:#?}");
    assert!(began.elapsed() < Duration::from_secs(20));
}
