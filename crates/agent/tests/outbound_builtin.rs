//! RFC 5626 outbound (`outbound = true`) against the built-in registrar over real loopback
//! UDP and TCP (its 2xx says `Require: outbound`, it answers STUN on its UDP port and CRLF
//! pings on TCP), and against a scripted UDP registrar whose STUN answers report a changed
//! NAT binding: the phone finds its flow failed and registers again.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent::engine::{EndpointReport, Outcome, RunSummary};
use agent::trace::Direction;

mod streams_common;

fn builtin_run(transport: &str) -> (RunSummary, Vec<EndpointReport>) {
    let text = format!(
        r#"name = "outbound through the built-in registrar over {transport}"
duration = "2500ms"
seed = 4

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "{transport}"
outbound = true
keepalive = "1s"

[[group]]
name = "callees"
endpoints = 3
registrar = "builtin"
role = "answer"
answer_delay = "100ms"

[[group]]
name = "callers"
endpoints = 3
registrar = "builtin"
call = "group:callees"
"#
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    streams_common::run_file_at("outbound-builtin.toml", &text, now)
}

/// `granted` is how the note names the Flow-Timer: the built-in registrar sends one (its
/// entry's `keepalive`, 1 s here) to a phone on a connection of its own, none over UDP.
fn assert_builtin_outbound(
    summary: &RunSummary,
    reports: &[EndpointReport],
    granted: &str,
    by: &str,
) {
    for r in reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let notes = streams_common::notes(r);
        let i = streams_common::note_at(
            &notes,
            &format!("outbound in use: Require: outbound in the 2xx; {granted}"),
        );
        assert!(notes[i].contains(by), "{}", notes[i]);
    }
    assert_eq!(summary.calls_answered, 3);
    let o = summary.outbound.as_ref().expect("the outbound summary");
    assert_eq!((o.endpoints_in_use, o.flow_failures), (6, 0), "{o:?}");
    // A keep-alive every 0.8–1 s for the ≥ 2.5 s each endpoint lives: two or more each.
    assert!(o.pongs >= 12, "{o:?}");
    assert!(
        o.keepalives_sent >= o.pongs && o.keepalives_sent <= o.pongs + 6,
        "{o:?}"
    );
}

#[test]
fn the_builtin_registrar_grants_outbound_and_answers_stun_over_udp() {
    let (summary, reports) = builtin_run("udp");
    assert_builtin_outbound(&summary, &reports, "no Flow-Timer", "STUN Binding requests");
    for r in &reports {
        let notes = streams_common::notes(r);
        streams_common::note_at(&notes, "STUN Binding response from ");
    }
}

#[test]
fn the_builtin_registrar_grants_outbound_and_answers_pings_over_tcp() {
    let (summary, reports) = builtin_run("tcp");
    assert_builtin_outbound(&summary, &reports, "Flow-Timer: 1;", "CRLF ping");
    for r in &reports {
        let ok = r
            .trace
            .iter()
            .find(|e| {
                e.direction == Direction::Received
                    && e.first_line().starts_with("SIP/2.0 200 ")
                    && e.text.contains(" REGISTER\r\n")
            })
            .expect("a 200 to REGISTER");
        assert!(ok.text.contains("Flow-Timer: 1\r\n"), "{}", ok.text);
    }
}

/// Over WebSocket (RFC 7118) the flow is kept by the WebSocket itself: outbound in use, no
/// CRLF keep-alive of ours on it.
#[test]
fn over_websocket_outbound_is_granted_and_no_crlf_is_sent() {
    over_a_websocket("ws");
}

/// The same over WSS (the built-in registrar's certificate, made for the run).
#[test]
fn over_secure_websocket_outbound_is_granted_and_no_crlf_is_sent() {
    over_a_websocket("wss");
}

fn over_a_websocket(transport: &str) {
    let (summary, reports) = builtin_run(transport);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let notes = streams_common::notes(r);
        let i = streams_common::note_at(
            &notes,
            "outbound in use: Require: outbound in the 2xx; Flow-Timer: 1;",
        );
        assert!(
            notes[i].contains("the WebSocket's own keep-alive"),
            "{}",
            notes[i]
        );
    }
    assert_eq!(summary.calls_answered, 3);
    let o = summary.outbound.as_ref().unwrap();
    assert_eq!(
        (o.endpoints_in_use, o.keepalives_sent, o.flow_failures),
        (6, 0, 0),
        "{o:?}"
    );
}

/// A test file: `n` phones (2001…) registered for `duration` with outbound at the scripted
/// registrar on 127.0.0.1, `registrar` its other keys (port, proxy).
fn phones(name: &str, duration: &str, n: u32, registrar: &str) -> String {
    format!(
        r#"name = "{name}"
duration = "{duration}"
seed = 8

[[registrar]]
id = "scripted"
domain = "127.0.0.1"
{registrar}
outbound = true

[[accounts]]
registrar = "scripted"
range = {{ from = 2001, to = {last}, password = "x" }}

[[group]]
name = "phones"
endpoints = {n}
registrar = "scripted"
role = "register"
"#,
        last = 2000 + n
    )
}

/// A UDP registrar in a thread: every REGISTER is answered 200 with `Require: outbound` and
/// `Flow-Timer: 1`; STUN Binding requests are answered with the sender's address until
/// `moved` is set, then with another port (a NAT that moved the binding), and not at all
/// while `mute` is set.
fn scripted_registrar(moved: Arc<AtomicBool>, mute: Arc<AtomicBool>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            let got = &buf[..n];
            if let Some(tid) = sip_proto::stun::binding_request_tid(got) {
                if mute.load(Ordering::SeqCst) {
                    continue;
                }
                let seen = if moved.load(Ordering::SeqCst) {
                    SocketAddr::new(from.ip(), from.port() ^ 1)
                } else {
                    from
                };
                let _ = sock.send_to(&sip_proto::stun::binding_success(tid, seen), from);
                continue;
            }
            let text = String::from_utf8_lossy(got);
            if !text.starts_with("REGISTER ") {
                continue;
            }
            let mut answer = String::from("SIP/2.0 200 OK\r\n");
            for line in text.lines() {
                for name in ["Via:", "From:", "Call-ID:", "CSeq:", "Contact:"] {
                    if line.starts_with(name) {
                        answer.push_str(line);
                        answer.push_str("\r\n");
                    }
                }
                if line.starts_with("To:") {
                    answer.push_str(line);
                    answer.push_str(";tag=scripted\r\n");
                }
            }
            answer.push_str("Require: outbound\r\nFlow-Timer: 1\r\nContent-Length: 0\r\n\r\n");
            let _ = sock.send_to(answer.as_bytes(), from);
        }
    });
    addr
}

/// The scripted registrar plays the edge proxy here (RFC 5626 §4.2.1): the REGISTER goes to
/// the `outbound_proxy` with its Route, and so do the STUN keep-alives (the flow's peer); the
/// registrar itself (a socket that never answers) hears nothing.
#[test]
fn a_changed_nat_binding_fails_the_udp_flow_and_registers_again() {
    let moved = Arc::new(AtomicBool::new(false));
    let addr = scripted_registrar(moved.clone(), Arc::default());
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_nonblocking(true).unwrap();
    let mover = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2000));
        moved.store(true, Ordering::SeqCst);
    });
    let text = phones(
        "outbound NAT binding change",
        "4s",
        2,
        &format!(
            "port = {}\noutbound_proxy = \"127.0.0.1:{}\"",
            silent.local_addr().unwrap().port(),
            addr.port()
        ),
    );
    let (summary, reports) = streams_common::run_file("outbound-nat.toml", &text);
    assert!(
        silent.recv_from(&mut [0u8; 2048]).is_err(),
        "nothing went to the registrar itself"
    );
    mover.join().unwrap();
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let notes = streams_common::notes(r);
        let first = streams_common::note_at(&notes, "STUN Binding response from ");
        let failed =
            streams_common::note_at(&notes, "outbound flow failed: the NAT binding changed");
        let recovered = streams_common::note_at(&notes, "outbound flow recovered");
        assert!(first < failed && failed < recovered, "{notes:#?}");
        assert!(
            notes[first].contains(&format!("from {addr}:")),
            "{}",
            notes[first]
        );
        // Registered, then registered again after the change, then un-registered, each
        // through the proxy with its Route.
        let registers: Vec<_> = r
            .trace
            .iter()
            .filter(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER "))
            .collect();
        assert!(registers.len() >= 3, "{} REGISTERs", registers.len());
        for reg in registers {
            assert_eq!(reg.remote, Some(addr));
            let route = format!("Route: <sip:127.0.0.1:{};lr;ob>\r\n", addr.port());
            assert!(reg.text.contains(&route), "{}", reg.text);
        }
    }
    let o = summary.outbound.unwrap();
    assert_eq!(
        (o.endpoints_in_use, o.flow_failures, o.recoveries),
        (2, 2, 2),
        "{o:?}"
    );
}

/// RFC 5626 §4.4.2: STUN keep-alives left unanswered (sent again with the same transaction
/// ID meanwhile) fail the flow 10 s after the first; the phone registers again, and once the
/// answers come back the flow is kept again.
#[test]
fn unanswered_stun_keepalives_fail_the_udp_flow_after_10_s() {
    let mute = Arc::new(AtomicBool::new(false));
    let addr = scripted_registrar(Arc::default(), mute.clone());
    let muter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        mute.store(true, Ordering::SeqCst);
        // The flow fails 11.5–12.5 s in (10 s after the first unanswered keep-alive).
        std::thread::sleep(Duration::from_millis(11_100));
        mute.store(false, Ordering::SeqCst);
    });
    let text = phones(
        "outbound STUN timeout",
        "14s",
        1,
        &format!("port = {}", addr.port()),
    );
    let (summary, reports) = streams_common::run_file("outbound-stun-timeout.toml", &text);
    muter.join().unwrap();
    let r = &reports[0];
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    let notes = streams_common::notes(r);
    let failed = streams_common::note_at(
        &notes,
        "outbound flow failed: no STUN Binding response within 10 s",
    );
    let recovered = streams_common::note_at(&notes, "outbound flow recovered");
    assert!(failed < recovered, "{notes:#?}");
    // The unanswered keep-alives were one request sent again: one transaction ID.
    let e = r.outbound.as_ref().unwrap();
    assert_eq!((e.flow_failures, e.recoveries), (1, 1), "{e:?}");
    let o = summary.outbound.unwrap();
    assert!(
        o.keepalives_sent >= o.pongs + 10,
        "unanswered keep-alives sent again: {o:?}"
    );
}
