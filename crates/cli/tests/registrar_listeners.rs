//! `sipmeter registrar` with several `--listen`s: one registrar answers on each of them
//! (`sipmeter check` registers over UDP, TCP and WebSocket in turn, over real sockets). Calls
//! across transports are tested in `agent/tests/sipp.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process, killed when dropped (even if the test fails).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sipmeter check` as user 1001 with `password` at 127.0.0.1:`port` over `transport`: its
/// exit code and stdout.
fn check(port: u16, transport: &str, password: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "check",
            "--domain",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args([
            "--transport",
            transport,
            "--user",
            "1001",
            "--password",
            password,
        ])
        .output()
        .expect("sipmeter check runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `sipmeter registrar` with `args`, killed when the returned guard drops, the line it prints
/// once listening, and its stdout (kept open: it may print more).
fn start_registrar(args: &[&str]) -> (Proc, String, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .arg("registrar")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sipmeter registrar starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let reg = Proc(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (reg, line, out)
}

/// The `proto` listener's port in the line "sipmeter registrar listening on
/// udp:127.0.0.1:P tcp:127.0.0.1:P ws:127.0.0.1:P for …".
fn port_in(line: &str, proto: &str) -> u16 {
    line.split(&format!("{proto}:127.0.0.1:"))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no {proto} port in {line:?}"))
}

#[test]
fn one_registrar_answers_on_every_listener() {
    let (_reg, line, _out) = start_registrar(&[
        "--domain",
        "lab.test",
        "--account",
        "1001:right",
        "--listen",
        "udp:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
        "--listen",
        "ws:127.0.0.1:0",
    ]);
    let port = |proto: &str| port_in(&line, proto);
    let (udp, tcp, ws) = (port("udp"), port("tcp"), port("ws"));

    for (transport, port) in [("udp", udp), ("tcp", tcp), ("ws", ws)] {
        let (code, stdout) = check(port, transport, "right");
        assert_eq!(code, Some(0), "{transport}: {stdout}");
        assert!(stdout.contains("registered"), "{transport}: {stdout}");
    }
    // The accounts are checked on every listener: a wrong password fails.
    let (code, _) = check(udp, "udp", "wrong");
    assert_ne!(code, Some(0), "a wrong password fails");
}

/// A listener on every address needs `--advertise` (else phones would be told to reach the
/// registrar at 0.0.0.0); with it, `sipmeter check` registers over IPv4 through `[::]`.
#[test]
fn a_listener_on_every_address_needs_and_uses_advertise() {
    let refused = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["registrar", "--listen", "udp:0.0.0.0:0", "--open"])
        .output()
        .expect("sipmeter registrar runs");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--listen 0.0.0.0:0 listens on every address: give --advertise HOST"),
        "{err}"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "registrar",
            "--listen",
            "udp:[::]:0",
            "--advertise",
            "127.0.0.1",
        ])
        .args(["--domain", "lab.test", "--account", "1001:right"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sipmeter registrar starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let _reg = Proc(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .split("udp:[::]:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let (code, stdout) = check(port, "udp", "right");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("registered"), "{stdout}");
    assert!(!stdout.contains("::ffff:"), "{stdout}");
}

/// An RFC 5626 outbound REGISTER of user 1001 straight over `transport` (`tcp`, `ws`) from
/// `local` to the registrar at 127.0.0.1:`port`.
fn outbound_register(transport: &str, port: u16, local: std::net::SocketAddr) -> String {
    let via = transport.to_ascii_uppercase();
    format!(
        "REGISTER sip:127.0.0.1:{port};transport={transport} SIP/2.0\r\n\
Via: SIP/2.0/{via} {local};branch=z9hG4bKflow{transport};rport\r\nMax-Forwards: 70\r\n\
From: <sip:1001@127.0.0.1>;tag=1\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: flow-{transport}@test\r\n\
CSeq: 1 REGISTER\r\nSupported: path, outbound\r\n\
Contact: <sip:1001@{local};transport={transport}>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\"\r\n\
Expires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

/// `sipmeter registrar --open` on one TCP listener with `flow_timer` args: the answer to an
/// RFC 5626 outbound REGISTER sent straight over TCP (its head, up to the blank line).
fn outbound_register_over_tcp(flow_timer: &[&str]) -> String {
    outbound_phone_over_tcp(flow_timer).3
}

/// A phone, user 1001, registered with RFC 5626 outbound straight over TCP at `sipmeter
/// registrar --open` on one TCP listener with `more` args: the registrar, its TCP port, the
/// phone's connection, and the answer to its REGISTER (its head).
fn outbound_phone_over_tcp(more: &[&str]) -> (Proc, u16, std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let mut args = vec!["--open", "--listen", "tcp:127.0.0.1:0"];
    args.extend_from_slice(more);
    let (reg, line, _out) = start_registrar(&args);
    let port = port_in(&line, "tcp");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let local = tcp.local_addr().unwrap();
    let register = outbound_register("tcp", port, local);
    tcp.write_all(register.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).expect("an answer within 10 s");
        assert!(n > 0, "closed before an answer: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    (
        reg,
        port,
        tcp,
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

/// The status of the answer to a MESSAGE to 1001 sent by a caller on a TCP connection of its
/// own to the registrar at `port`.
fn message_to_1001(port: u16, i: u32) -> u16 {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let local = tcp.local_addr().unwrap();
    let req = format!(
        "MESSAGE sip:1001@127.0.0.1:{port};transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/TCP {local};branch=z9hG4bKmsg{i}\r\nMax-Forwards: 70\r\n\
From: <sip:caller@127.0.0.1>;tag=c{i}\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: msg{i}@test\r\n\
CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).expect("an answer within 5 s");
        assert!(n > 0, "closed before an answer: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text}"))
}

/// RFC 5626 §4.4.1 from `sipmeter registrar`'s side: a phone registered with outbound
/// straight over TCP (`--flow-timer 1`) that then sends nothing, no CRLF keep-alive either,
/// has its connection closed 1.25 s after it was last heard; a MESSAGE to it gets 430 Flow
/// Failed for `--failed-flow-hold 1s`, then 480.
#[test]
fn a_silent_outbound_phone_is_closed_after_the_flow_timer_and_held_for_failed_flow_hold() {
    use std::io::Read;
    let (_reg, port, mut phone, answer) =
        outbound_phone_over_tcp(&["--flow-timer", "1", "--failed-flow-hold", "1s"]);
    let registered = std::time::Instant::now();
    assert!(answer.contains("Flow-Timer: 1\r\n"), "{answer}");
    phone
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = phone.read(&mut buf).expect("closed within 5 s");
    let closed_after = registered.elapsed();
    assert_eq!(
        n,
        0,
        "only a close: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        closed_after >= std::time::Duration::from_millis(1200)
            && closed_after <= std::time::Duration::from_millis(2500),
        "{closed_after:?}"
    );
    assert_eq!(message_to_1001(port, 1), 430);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(message_to_1001(port, 2), 480);
}

/// RFC 5626 §4.4.1: the Flow-Timer in the 200 to a phone registered straight over TCP is
/// 120 s by default, `--flow-timer N` sets it and `--flow-timer 0` sends none.
#[test]
fn the_flow_timer_of_an_outbound_register_over_tcp_is_set_by_flow_timer() {
    for (args, expected) in [
        (&[][..], Some("Flow-Timer: 120\r\n")),
        (&["--flow-timer", "7"][..], Some("Flow-Timer: 7\r\n")),
        (&["--flow-timer", "0"][..], None),
    ] {
        let answer = outbound_register_over_tcp(args);
        assert!(answer.starts_with("SIP/2.0 200 "), "{args:?}: {answer}");
        assert!(
            answer.contains("Require: outbound\r\n"),
            "{args:?}: {answer}"
        );
        match expected {
            Some(h) => assert!(answer.contains(h), "{args:?}: {answer}"),
            None => assert!(!answer.contains("Flow-Timer"), "{args:?}: {answer}"),
        }
    }
}

/// A phone, user 1001, registered with RFC 5626 outbound straight over a WebSocket at
/// `sipmeter registrar --open` on one WS listener with `more` args: the registrar, the
/// phone's WebSocket, and the answer to its REGISTER.
async fn outbound_phone_over_ws(
    more: &[&str],
) -> (
    Proc,
    sip_net::ws::SipWebSocket<tokio::net::TcpStream>,
    String,
) {
    let mut args = vec!["--open", "--listen", "ws:127.0.0.1:0"];
    args.extend_from_slice(more);
    let (reg, line, _out) = start_registrar(&args);
    let port = port_in(&line, "ws");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let local = tcp.local_addr().unwrap();
    let mut ws = sip_net::ws::connect(tcp, false, &format!("127.0.0.1:{port}"), "/", false)
        .await
        .expect("the WebSocket upgrade");
    let register = outbound_register("ws", port, local);
    ws.send(register.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), ws.recv())
        .await
        .expect("an answer within 10 s")
        .unwrap()
        .expect("an answer, not a close");
    (reg, ws, String::from_utf8_lossy(&answer).into_owned())
}

/// Reads `ws` for `wait`: how many ping or pong frames came (tungstenite answers pings as
/// it reads). Anything else (a message, a close) fails the test, named by `what`.
async fn control_frames_for(
    ws: &mut sip_net::ws::SipWebSocket<tokio::net::TcpStream>,
    wait: std::time::Duration,
    what: &str,
) -> usize {
    let until = tokio::time::Instant::now() + wait;
    let mut n = 0;
    loop {
        match tokio::time::timeout_at(until, ws.recv_any()).await {
            Err(_) => return n,
            Ok(Ok(Some(sip_net::ws::WsIn::Alive))) => n += 1,
            Ok(other) => panic!("{what}, after {n} control frames: {other:?}"),
        }
    }
}

/// RFC 5626 §4.4.1 over a WebSocket, from `sipmeter registrar`'s side (`--flow-timer 1`),
/// for a phone registered with outbound straight over WS:
/// - one that sends ping frames every 300 ms (as ours do) keeps its connection while it
///   pings (2.5 s here, twice the silence limit of 1.25 s);
/// - one that sends nothing but reads (a browser: it cannot send ping frames, but answers
///   the registrar's, sent after a Flow-Timer of silence) keeps it too (3 s);
/// - one that neither sends nor reads (gone behind a NAT) is closed: after 3 s of it the
///   stream ends.
#[tokio::test]
async fn a_websocket_phone_is_kept_while_it_pings_or_answers_and_closed_when_gone() {
    use sip_net::ws::WsIn;
    use std::time::Duration;
    let (_reg, mut ws, answer) =
        outbound_phone_over_ws(&["--flow-timer", "1", "--failed-flow-hold", "1s"]).await;
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert!(answer.contains("Flow-Timer: 1\r\n"), "{answer}");
    // Pinging: pongs come back, nothing else, no close.
    let mut alive = 0;
    for _ in 0..8 {
        ws.ping().await.unwrap();
        alive += control_frames_for(&mut ws, Duration::from_millis(300), "pinging").await;
    }
    assert!(alive >= 6, "{alive} pongs");
    // Reading only: the registrar's pings (answered as we read) keep it.
    let pinged = control_frames_for(&mut ws, Duration::from_secs(3), "reading only").await;
    assert!(pinged >= 2, "{pinged} pings from the registrar in 3 s");
    // Gone: neither a ping nor a pong for 3 s; then the stream has ended (the registrar
    // closed it 1.25 s after it last heard from us).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match ws.recv_any().await {
                Ok(Some(WsIn::Alive)) => {}
                Ok(None) | Err(_) => return,
                Ok(Some(WsIn::Message(m))) => panic!("{m:?}"),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "still open after 3 s of silence both ways");
}
