//! RFC 5626 outbound (`outbound = true`) against the built-in registrar over real loopback
//! UDP and TCP (its 2xx says `Require: outbound`, it answers STUN on its UDP port and CRLF
//! pings on TCP), and against a scripted UDP registrar whose STUN answers report a changed
//! NAT binding: the phone finds its flow failed and registers again. The built-in
//! registrar's own side of a failed flow (a cut TCP connection: 430, then 480, then the
//! phone back on a new flow) and its 439 to a REGISTER through a proxy without `ob`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent::builtin::{BuiltinRegistrar, Listen, ServiceOptions};
use agent::engine::{EndpointReport, Outcome, RunSummary};
use agent::trace::Direction;
use registrar::{AuthMode, RegistrarConfig};
use sip_msg::Host;

mod relay_common;
mod streams_common;

use relay_common::Relay;

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

/// Over WebSocket (RFC 7118, which has no CRLF keep-alive) the flow is kept by WebSocket
/// ping frames (RFC 6455 §5.5.2), each answered by a pong (the registrar's tungstenite).
#[test]
fn over_websocket_outbound_is_granted_and_kept_by_websocket_pings() {
    over_a_websocket("ws");
}

/// The same over WSS (the built-in registrar's certificate, made for the run).
#[test]
fn over_secure_websocket_outbound_is_granted_and_kept_by_websocket_pings() {
    over_a_websocket("wss");
}

fn over_a_websocket(transport: &str) {
    let (summary, reports) = builtin_run(transport);
    assert_builtin_outbound(&summary, &reports, "Flow-Timer: 1;", "WebSocket ping");
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

/// The built-in registrar on its own: `listen`, open (no digest), domain `flow13.test` (a
/// name: a Request-URI at 127.0.0.1:5060 would be another server's, forwarded there), a
/// failed flow's binding held `hold`.
fn builtin_registrar(
    rt: &tokio::runtime::Runtime,
    listen: Listen,
    hold: Duration,
) -> BuiltinRegistrar {
    builtin_registrar_with(
        rt,
        listen,
        ServiceOptions {
            failed_flow_hold: hold,
            ..ServiceOptions::default()
        },
    )
}

/// [`builtin_registrar`] with these settings.
fn builtin_registrar_with(
    rt: &tokio::runtime::Runtime,
    listen: Listen,
    services: ServiceOptions,
) -> BuiltinRegistrar {
    rt.block_on(BuiltinRegistrar::start_with(
        listen,
        RegistrarConfig {
            domain: "flow13.test".into(),
            host: Host::parse("127.0.0.1").unwrap(),
            port: 0,
            transport: String::new(),
            auth: AuthMode::Open,
            secret: b"flow13".to_vec(),
            min_expires: 10,
            max_expires: 3600,
        },
        services,
    ))
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A caller on its own TCP connection to the registrar: sends MESSAGEs to an AOR and reads
/// what comes back for each.
struct Prober {
    conn: TcpStream,
    sent: u32,
}

impl Prober {
    fn connect(to: SocketAddr) -> Prober {
        let conn = TcpStream::connect(to).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Prober { conn, sent: 0 }
    }

    /// A MESSAGE to `sip:user@flow13.test`: the status of its answer, or `None` when none came
    /// within 700 ms (a request forwarded to a flow the registrar had not yet heard was
    /// closed is lost with it).
    fn message(&mut self, user: &str) -> Option<u16> {
        self.sent += 1;
        let i = self.sent;
        let local = self.conn.local_addr().unwrap();
        let call_id = format!("probe{i}");
        let req = format!(
            "MESSAGE sip:{user}@flow13.test SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKprobe{i}\r\n\
Max-Forwards: 70\r\nFrom: <sip:prober@flow13.test>;tag=p{i}\r\nTo: <sip:{user}@flow13.test>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        );
        self.conn.write_all(req.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_millis(700);
        let mut got = Vec::new();
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            match self.conn.read(&mut buf) {
                Ok(0) => panic!("the registrar closed the prober's connection"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            // Whole answers (no bodies: Content-Length 0), an earlier probe's skipped.
            let text = String::from_utf8_lossy(&got).into_owned();
            for answer in text.split("\r\n\r\n") {
                if answer.contains(&format!("Call-ID: {call_id}\r\n"))
                    && let Some(code) = answer
                        .strip_prefix("SIP/2.0 ")
                        .and_then(|r| r.get(..3))
                        .and_then(|c| c.parse().ok())
                {
                    return Some(code);
                }
            }
        }
        None
    }

    /// Probes every 100 ms until an answer `code` comes (within `limit`); every answer
    /// before it must be one of `before` (`None`: no answer). The answers seen.
    fn until(
        &mut self,
        user: &str,
        code: u16,
        before: &[Option<u16>],
        limit: Duration,
    ) -> Vec<Option<u16>> {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let got = self.message(user);
            seen.push(got);
            if got == Some(code) {
                return seen;
            }
            assert!(before.contains(&got), "waiting for {code}: {seen:?}");
            assert!(Instant::now() < end, "no {code} in time: {seen:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What a prober saw of phone 2001 through its flow's break ([`probe_through_a_break`]).
struct Probed {
    /// The answer to the MESSAGE before the break.
    before: Option<u16>,
    /// The answers after it, up to the first 430.
    failed: Vec<Option<u16>>,
    /// How long after the break the 430 came.
    failed_after: Duration,
    /// Then up to the first 480 (the failed binding dropped).
    dropped: Vec<Option<u16>>,
    /// Then up to the first 200 (the phone back on a new flow).
    back: Vec<Option<u16>>,
}

/// In a thread: once phone 2001 registered through `relay` (outbound granted), a MESSAGE
/// to it at the registrar `to`; then the relay holds new connections 3 s, `break_flow`
/// breaks those relayed so far, and the MESSAGEs go on until a 430 (only `before_430`
/// until then, within `limit_430` seconds), a 480 and a 200.
fn probe_through_a_break(
    relay: &Relay,
    to: SocketAddr,
    break_flow: fn(&std::sync::Mutex<Vec<relay_common::Relayed>>),
    before_430: &'static [Option<u16>],
    limit_430: u64,
) -> std::thread::JoinHandle<Probed> {
    let (conns, granted, hold_new) = (
        relay.conns.clone(),
        relay.granted.clone(),
        relay.hold_new.clone(),
    );
    std::thread::spawn(move || {
        let start = Instant::now();
        while granted.load(Ordering::SeqCst) < 1 {
            assert!(start.elapsed() < Duration::from_secs(5), "never registered");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut p = Prober::connect(to);
        let before = p.message("2001");
        hold_new.store(3000, Ordering::SeqCst);
        break_flow(&conns);
        let broken = Instant::now();
        let failed = p.until("2001", 430, before_430, Duration::from_secs(limit_430));
        let failed_after = broken.elapsed();
        let dropped = p.until("2001", 480, &[Some(430)], Duration::from_secs(3));
        let back = p.until("2001", 200, &[Some(480)], Duration::from_secs(6));
        Probed {
            before,
            failed,
            failed_after,
            dropped,
            back,
        }
    })
}

/// RFC 5626 §5.3, §6, §7 against the built-in registrar over real TCP: a phone registered
/// with outbound through a relay has its connection cut. The registrar fails its binding:
/// a MESSAGE to it gets 430 (Flow Failed) while the binding is held (1 s here), then 480
/// once dropped; the phone finds its flow failed and registers again over a new connection
/// (the relay holds new connections 3 s, so that all of this is seen first), and the next
/// MESSAGE reaches it there.
#[test]
fn a_cut_flow_fails_the_builtin_binding_430_then_480_and_the_phone_registers_again() {
    let rt = runtime();
    let reg = builtin_registrar(
        &rt,
        Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        Duration::from_secs(1),
    );
    let relay = Relay::start(reg.addr());
    let probes = probe_through_a_break(&relay, reg.addr(), Relay::cut, &[None], 2);
    let text = phones(
        "outbound flow cut at the built-in registrar",
        "8s",
        1,
        &format!("port = {}\ntransport = \"tcp\"", relay.addr.port()),
    );
    let (summary, reports) = streams_common::run_file("outbound-builtin-cut.toml", &text);
    let Probed {
        before,
        failed,
        dropped,
        back,
        ..
    } = probes.join().unwrap();
    assert_eq!(
        before,
        Some(200),
        "the MESSAGE reached the phone before the cut"
    );
    eprintln!("after the cut: {failed:?}, then {dropped:?}, then {back:?}");
    let r = &reports[0];
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    let notes = streams_common::notes(r);
    let in_use = streams_common::note_at(&notes, "outbound in use");
    let lost = streams_common::note_at(&notes, "outbound flow failed: the connection closed");
    let recovered = streams_common::note_at(&notes, "outbound flow recovered");
    assert!(in_use < lost && lost < recovered, "{notes:#?}");
    // Registered from two local addresses (two connections), one instance; the MESSAGEs
    // came in on the first, then on the second.
    let registers: Vec<_> = r
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER "))
        .collect();
    let (first, last) = (registers[0].local, registers[registers.len() - 1].local);
    assert_ne!(first, last, "registered again over a new connection");
    let messages: Vec<_> = r
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Received && e.first_line().starts_with("MESSAGE "))
        .map(|e| e.local)
        .collect();
    assert_eq!(messages, [first, last], "{messages:?}");
    let o = summary.outbound.unwrap();
    assert_eq!(
        (o.endpoints_in_use, o.flow_failures, o.recoveries),
        (1, 1, 1),
        "{o:?}"
    );
    assert_eq!(relay.accepted(), 2);
    Relay::cut(&relay.conns);
    let stats = rt.block_on(reg.stop());
    // The 430s and the 480s, and nothing else refused.
    let refused = [&failed, &dropped, &back]
        .into_iter()
        .flatten()
        .filter(|c| matches!(c, Some(430 | 480)))
        .count();
    assert_eq!(stats.refused, refused as u64, "{stats:?}");
}

/// RFC 5626 §4.4.1 from the built-in registrar's side over real TCP: a phone registered with
/// outbound (Flow-Timer 1 s) through a relay that then goes silent both ways (a NAT that
/// dropped the connection without a word: no FIN, no RST). Its keep-alives no longer reach
/// the registrar, which after 1.25 s of silence closes the connection and fails the
/// binding: a MESSAGE to the phone, lost in the silent connection before, gets 430 while the
/// binding is held (1 s), then 480; the phone sees its connection closed and registers again
/// over a new one (held 3 s by the relay), where the next MESSAGE reaches it.
#[test]
fn a_silent_flow_is_closed_by_the_builtin_registrar_and_the_phone_registers_again() {
    let rt = runtime();
    let reg = builtin_registrar_with(
        &rt,
        Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        ServiceOptions {
            failed_flow_hold: Duration::from_secs(1),
            flow_timer: Some(1),
            ..ServiceOptions::default()
        },
    );
    let relay = Relay::start(reg.addr());
    let probes = probe_through_a_break(&relay, reg.addr(), Relay::silence, &[None, Some(200)], 4);
    let text = phones(
        "outbound flow silenced at the built-in registrar",
        "10s",
        1,
        &format!("port = {}\ntransport = \"tcp\"", relay.addr.port()),
    );
    let (summary, reports) = streams_common::run_file("outbound-builtin-silent.toml", &text);
    let Probed {
        before,
        failed,
        failed_after: closed_after,
        dropped,
        back,
    } = probes.join().unwrap();
    assert_eq!(before, Some(200), "the MESSAGE reached the phone first");
    eprintln!("after the silence: {failed:?} ({closed_after:?}), then {dropped:?}, then {back:?}");
    // Heard last at most 1 s (a keep-alive) before the silence; closed 1.25 s after that,
    // looked at every 156 ms; and the 430 came within the prober's 100 ms + 700 ms.
    assert!(
        closed_after >= Duration::from_millis(250) && closed_after <= Duration::from_millis(2300),
        "{closed_after:?}"
    );
    let r = &reports[0];
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    let notes = streams_common::notes(r);
    let lost = streams_common::note_at(&notes, "outbound flow failed: the connection closed");
    let recovered = streams_common::note_at(&notes, "outbound flow recovered");
    assert!(lost < recovered, "{notes:#?}");
    let o = summary.outbound.unwrap();
    assert_eq!((o.flow_failures, o.recoveries), (1, 1), "{o:?}");
    assert_eq!(relay.accepted(), 2);
    Relay::cut(&relay.conns);
    let stats = rt.block_on(reg.stop());
    assert_eq!(stats.silent_flows_closed, 1, "{stats:?}");
}

/// A stateless UDP proxy in a thread in front of `registrar`: adds its Via to each request
/// (no Path: it keeps no flow, RFC 5626 §5.1), and sends the answers back to the phone
/// (one phone only). Its address.
fn proxy_without_path(registrar: SocketAddr) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut phone = None;
        let mut buf = [0u8; 65536];
        let mut n_req = 0u32;
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if from == registrar {
                // Our Via (the first) goes.
                let Some(to) = phone else { continue };
                let Some(start) = text.find("\r\nVia: ") else {
                    continue;
                };
                let end = start + 2 + text[start + 2..].find("\r\n").unwrap();
                let answer = format!("{}{}", &text[..start], &text[end..]);
                let _ = sock.send_to(answer.as_bytes(), to);
            } else if sip_proto::stun::binding_request_tid(&buf[..n]).is_none() {
                phone = Some(from);
                n_req += 1;
                let line_end = text.find("\r\n").unwrap();
                let request = format!(
                    "{}\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKproxy{n_req}{}",
                    &text[..line_end],
                    &text[line_end..]
                );
                let _ = sock.send_to(request.as_bytes(), registrar);
            }
        }
    });
    addr
}

/// RFC 5626 §6 end to end: phones with `outbound = true` whose outbound proxy adds no Path
/// with `ob` are refused 439 by the built-in registrar, and each ends REGISTRATION_FAILED with
/// the code and the hint naming the fix.
#[test]
fn a_register_through_a_proxy_without_ob_fails_439_with_the_hint() {
    let rt = runtime();
    let reg = builtin_registrar(
        &rt,
        Listen::Udp("127.0.0.1:0".parse().unwrap()),
        Duration::from_secs(1),
    );
    let proxy = proxy_without_path(reg.addr());
    let text = phones(
        "outbound through a proxy without ob",
        "2s",
        1,
        &format!("port = {}\noutbound_proxy = \"{proxy}\"", reg.addr().port()),
    );
    let (_, reports) = streams_common::run_file("outbound-no-ob.toml", &text);
    let r = &reports[0];
    assert_eq!(r.outcome, Outcome::RegistrationFailed, "{r:#?}");
    assert_eq!(r.registration_code, Some(439));
    let error = r.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("REGISTER failed: 439 First Hop Lacks Outbound Support: the first hop (outbound proxy) lacks RFC 5626 outbound support: set outbound = false"),
        "{error}"
    );
    let stats = rt.block_on(reg.stop());
    assert_eq!((stats.registered, stats.refused), (0, 1), "{stats:?}");
}
