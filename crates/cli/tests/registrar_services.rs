//! `sipmeter registrar` standalone answers its service numbers for other tools: SIPp's stock
//! UAC calls `echo` and `tone`, every call is answered and hung up, and the registrar's
//! counters (printed when it stops on Ctrl-C) show no service call left over.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed when dropped (even if the test fails).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registrar(extra: &[&str]) -> (Proc, BufReader<ChildStdout>, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "registrar",
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "lab.test",
            "--open",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sipmeter registrar starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // "sipmeter registrar listening on udp:127.0.0.1:PORT for domain …"
    let port = line
        .split("udp:127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let mut services = String::new();
    out.read_line(&mut services).unwrap();
    assert!(
        services.starts_with(
            "service numbers: echo@lab.test reflects RTP, tone@lab.test plays 1000 Hz at -10 dBov"
        ),
        "{services:?}"
    );
    (Proc(child), out, port)
}

fn sipp_uac(registrar_port: u16, service: &str, calls: u32, hold_ms: u32) -> i32 {
    let port = testpeers::free_port().unwrap();
    let mut child = Proc(
        Command::new("sipp")
            .args([
                &format!("127.0.0.1:{registrar_port}"),
                "-sn",
                "uac",
                "-s",
                service,
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &calls.to_string(),
                "-l",
                "2",
                "-d",
                &hold_ms.to_string(),
                "-nostdin",
                "-timeout",
                "20s",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts"),
    );
    let end = Instant::now() + Duration::from_secs(25);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < end, "sipp did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sipp_uac_calls_echo_and_tone_on_the_standalone_registrar() {
    if !testpeers::available("sipp", "sip-tester") {
        return;
    }
    let (reg, mut out, port) = start_registrar(&[]);
    assert_eq!(
        sipp_uac(port, "echo", 3, 500),
        0,
        "SIPp's 3 calls to echo succeeded"
    );
    assert_eq!(
        sipp_uac(port, "tone", 2, 500),
        0,
        "SIPp's 2 calls to tone succeeded"
    );
    let stopped = stop(&reg, &mut out);
    assert!(
        stopped.contains("services: ServiceStats { answered: 5, active: 0, refused_488: 0, ended_bye: 5, ended_by_us: 0, srtp_auth_failures: 0, srtp_replayed: 0, dtls_keyed: 0, dtls_failures: 0 }"),
        "{stopped}"
    );
}

/// Ctrl-C: the registrar stops and prints its counters (the `stopped:` line).
fn stop(reg: &Proc, out: &mut BufReader<ChildStdout>) -> String {
    let pid = reg.0.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    for line in out.lines() {
        let line = line.unwrap();
        if line.starts_with("stopped:") {
            return line;
        }
    }
    panic!("the registrar stopped without its counters");
}

/// `--media-timeout`: SIPp's stock UAC sends no RTP, so with a 1 s timeout the echo hangs up
/// on it (BYE) long before SIPp's own 4 s BYE; SIPp, not expecting a BYE in its pause,
/// counts the call failed. `--rtp-ports` and `--max-call` are accepted alongside.
#[test]
fn the_echo_hangs_up_on_a_silent_caller_after_the_media_timeout() {
    if !testpeers::available("sipp", "sip-tester") {
        return;
    }
    let (reg, mut out, port) = start_registrar(&[
        "--media-timeout",
        "1s",
        "--rtp-ports",
        "41000-41099",
        "--max-call",
        "1h",
    ]);
    let started = Instant::now();
    assert_ne!(
        sipp_uac(port, "echo", 1, 4000),
        0,
        "SIPp got a BYE it did not expect"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let stopped = stop(&reg, &mut out);
    assert!(
        stopped.contains("services: ServiceStats { answered: 1, active: 0, refused_488: 0, ended_bye: 0, ended_by_us: 1, srtp_auth_failures: 0, srtp_replayed: 0, dtls_keyed: 0, dtls_failures: 0 }"),
        "{stopped}"
    );
}

/// A delayed offer from a real peer: SIPp's scenario sends the INVITE without SDP, checks the
/// 200 offers PCMU, answers it in the ACK and hangs up a second later; the echo takes the
/// call and the ACK's answer (it would hang up on a caller with no usable answer).
#[test]
fn sipp_calls_echo_with_a_delayed_offer() {
    if !testpeers::available("sipp", "sip-tester") {
        return;
    }
    let (reg, mut out, port) = start_registrar(&[]);
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/sipp/uac-delayed-offer.xml");
    let local = testpeers::free_port().unwrap();
    let mut child = Proc(
        Command::new("sipp")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-sf")
            .arg(&scenario)
            .args(["-s", "echo", "-i", "127.0.0.1", "-p", &local.to_string()])
            .args(["-m", "2", "-l", "1", "-nostdin", "-timeout", "20s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts"),
    );
    let end = Instant::now() + Duration::from_secs(25);
    let code = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < end, "sipp did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 0, "SIPp's two delayed-offer calls succeeded");
    let stopped = stop(&reg, &mut out);
    assert!(
        stopped.contains("services: ServiceStats { answered: 2, active: 0, refused_488: 0, ended_bye: 2, ended_by_us: 0, srtp_auth_failures: 0, srtp_replayed: 0, dtls_keyed: 0, dtls_failures: 0 }"),
        "{stopped}"
    );
}
