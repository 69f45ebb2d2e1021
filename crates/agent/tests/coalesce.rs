//! A busy shard does not wake for each datagram (`sipsock`): it lets them wait in its socket
//! for a quantum. What it measures must not move with that: the answers' timings count from
//! their arrival (the kernel's receive stamp), not from when the loop read them. And an idle
//! shard still wakes at once for the first datagram.
//!
//! The quantum is made huge here (500 ms, `sipsock::set_quantum`; this file is its own
//! process) so that the wait is unmistakable. A scripted UAS answers INVITE with 100 at once,
//! 180 80 ms later and 200 OK 80 ms after that. The caller is idle when the 100 comes, so
//! it reads it at once, then coalesces: the 180 and the 200 sit in the socket until the
//! quantum ends. The trace (read times) shows that wait; the timings must not.
//!
//! The same holds on each way a message comes in: the shard's shared UDP socket, an
//! endpoint's own UDP socket and a TCP connection (the last two through the connections'
//! poll set, `NetPoll`, which leaves the reactor while the shard coalesces).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use agent::engine::TransportPlan;
use agent::engine::{
    EndpointPlan, GroupPlan, OfferTiming, Outcome, Role, RunPlan, ServerTarget, StopHandle, run,
};
use agent::flow::FlowKind;
use agent::trace::Direction;
use sip_msg::{Frame, Framer, Message, Method, Uri};
use sip_proto::transaction::TimerConfig;

const SDP: &str = "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

const QUANTUM: Duration = Duration::from_millis(500);
const RING_AFTER: Duration = Duration::from_millis(80);

/// How the caller reaches the scripted UAS.
#[derive(Clone, Copy, Debug)]
enum Way {
    /// The shard's shared UDP socket (`sipsock::SipSocket`).
    SharedUdp,
    /// The endpoint's own UDP socket (`udp_socket = "per-endpoint"`: the connections' poll
    /// set, `NetPoll`).
    OwnUdp,
    /// A TCP connection (`NetPoll`, read through the stamping reader).
    Tcp,
}

/// The scripted UAS's answers to `req`, each after its wait: INVITE → 100 at once, 180
/// after `RING_AFTER`, 200 OK (SDP, Contact) after as long again; BYE → 200 OK; anything
/// else (the ACK) → none. `contact` is the UAS's Contact URI.
fn answers(req: &Message, contact: &str) -> Vec<(Duration, Vec<u8>)> {
    match req.method() {
        Some(Method::Invite) => {
            let trying = Message::response_to(req, 100, "Trying", None);
            let ringing = Message::response_to(req, 180, "Ringing", Some("uas"));
            let mut ok = Message::response_to(req, 200, "OK", Some("uas"));
            ok.set_body("application/sdp", SDP);
            let text = String::from_utf8(ok.to_bytes()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let ok = format!("{head}\r\nContact: <{contact}>\r\n\r\n{body}");
            vec![
                (Duration::ZERO, trying.to_bytes()),
                (RING_AFTER, ringing.to_bytes()),
                (RING_AFTER, ok.into_bytes()),
            ]
        }
        Some(Method::Bye) => {
            let ok = Message::response_to(req, 200, "OK", Some("uas"));
            vec![(Duration::ZERO, ok.to_bytes())]
        }
        _ => Vec::new(),
    }
}

/// The scripted UAS over UDP, until `stop`.
fn scripted_uas(sock: UdpSocket, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let contact = format!("sip:uas@{}", sock.local_addr().unwrap());
    let mut buf = [0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(req) = Message::parse(&buf[..n]) else {
            continue;
        };
        for (wait, bytes) in answers(&req, &contact) {
            std::thread::sleep(wait);
            // A caller gone is the run's failure to report, not this thread's.
            let _ = sock.send_to(&bytes, from);
        }
    }
}

/// The scripted UAS over TCP: each connection it accepts is served in turn, until `stop`.
/// Each answer is written at once (`TCP_NODELAY`: Nagle would hold the 180 back until the
/// 100 is acknowledged, and the test would time the server's own delay).
fn scripted_uas_tcp(listener: TcpListener, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    let contact = format!("sip:uas@{};transport=tcp", listener.local_addr().unwrap());
    let mut buf = [0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut conn, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_nodelay(true).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut framer = Framer::new(65_536);
        while !stop.load(Ordering::Relaxed) {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => framer.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    continue;
                }
                Err(_) => break,
            }
            while let Some(Ok(frame)) = framer.next_frame() {
                let Frame::Message(bytes) = frame else {
                    continue;
                };
                let Ok(req) = Message::parse_bytes(bytes) else {
                    continue;
                };
                for (wait, bytes) in answers(&req, &contact) {
                    std::thread::sleep(wait);
                    // A caller gone is the run's failure to report, not this thread's.
                    let _ = conn.write_all(&bytes);
                }
            }
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
    timed_from_arrival(Way::SharedUdp);
}

#[test]
fn answers_that_waited_on_an_endpoints_own_udp_socket_are_timed_from_their_arrival() {
    timed_from_arrival(Way::OwnUdp);
}

#[test]
fn answers_that_waited_on_a_tcp_connection_are_timed_from_their_arrival() {
    timed_from_arrival(Way::Tcp);
}

/// One caller calls the scripted UAS twice over `way`, on a shard with a 500 ms quantum:
/// the 180 and the 200 are read late, and timed from their arrival.
fn timed_from_arrival(way: Way) {
    agent::sipsock::set_quantum(QUANTUM);
    let _stamping = stamping_on();
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, server): (SocketAddr, _) = {
        let stop = Arc::clone(&stop);
        match way {
            Way::SharedUdp | Way::OwnUdp => {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                let addr = sock.local_addr().unwrap();
                (addr, std::thread::spawn(move || scripted_uas(sock, stop)))
            }
            Way::Tcp => {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                (
                    addr,
                    std::thread::spawn(move || scripted_uas_tcp(listener, stop)),
                )
            }
        }
    };
    let (kind, token, param) = match way {
        Way::SharedUdp | Way::OwnUdp => (FlowKind::Udp, "udp", ""),
        Way::Tcp => (FlowKind::Tcp, "tcp", ";transport=tcp"),
    };
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "coalesced answers".into(),
        rtp_ports: None,
        keep_samples: true,
        server: ServerTarget {
            addr,
            domain: "127.0.0.1".into(),
            registrar_uri: Uri::parse(&format!("sip:{addr};transport={token}")).unwrap(),
            outbound_proxy: None,
            transport: TransportPlan {
                kind,
                udp_per_endpoint: matches!(way, Way::OwnUdp),
                ..Default::default()
            },
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
                targets: vec![Uri::parse(&format!("sip:service@{addr}{param}")).unwrap()],
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
    assert_eq!(r.outcome, Outcome::Success, "{way:?}: {r:#?}");
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
    // Yet the timings (the first call's) are the arrivals': 80 and 160 ms after the INVITE (give or take the
    // scripted peer's scheduling), not the reads.
    let t = &r.timings;
    let t100 = t.time_to_100_ms.unwrap();
    let t180 = t.time_to_180_ms.unwrap();
    let setup = t.call_setup_ms.unwrap();
    assert!(t100 <= read_100 && t100 < 250.0, "{way:?}: {t:?}");
    assert_eq!(t.post_dial_delay_ms, Some(t180), "{t:?}");
    assert!((159.0..400.0).contains(&setup), "{way:?}: {t:?}");
    match way {
        // Each datagram carries its own stamp.
        Way::SharedUdp | Way::OwnUdp => {
            assert!(
                (79.0..250.0).contains(&t180) && setup > t180,
                "{way:?}: {t:?}"
            );
        }
        // On a connection one read took both answers, and the kernel stamps a read with
        // its last bytes' arrival: the 180 is timed at the 200's, late by less than the
        // time between two reads (here a quantum of 500 ms; in a run 0.5 ms plus the
        // timer's granularity), never early, and not by the wait in the socket.
        Way::Tcp => assert_eq!(t180, setup, "{t:?}"),
    }
    // The quantum's slack is not lateness: the second dial fired ~400 ms after its
    // deadline, inside the slack.
    assert_eq!(summary.late_timers, 0, "{summary:#?}");
    assert!(summary.max_timer_lateness_ms < 200.0, "{summary:#?}");
    assert!(began.elapsed() < Duration::from_secs(20));
}
