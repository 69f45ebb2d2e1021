//! `sipmeter registrar` and `sipmeter check` as a user runs them, against each other:
//! two real processes on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The registrar child process, killed when dropped (even if the test fails).
struct Registrar {
    child: Child,
    port: u16,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registrar() -> Registrar {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "registrar",
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "lab.test",
        ])
        .args([
            "--account",
            "1001:right",
            "--account",
            "1002:right:disabled",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sipmeter registrar starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "sipmeter registrar listening on udp:127.0.0.1:PORT for domain …"
    let port = line
        .split("udp:127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok());
    let port = port.unwrap_or_else(|| panic!("no port in {line:?}"));
    Registrar { child, port }
}

fn check(port: u16, user: &str, password: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "check",
            "--domain",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--transport",
            "udp",
        ])
        .args(["--user", user, "--password", password, "--trace"])
        .output()
        .expect("sipmeter check runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_registers_and_explains_refusals() {
    let reg = start_registrar();
    let (code, out) = check(reg.port, "1001", "right");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[ok  ] authenticated (200 OK)"), "{out}");
    assert!(out.contains("200 OK after a 401 challenge"), "{out}");
    assert!(
        out.contains("WWW-Authenticate: Digest realm=\"lab.test\""),
        "the trace shows the challenge: {out}"
    );

    let (code, out) = check(reg.port, "1001", "wrong");
    assert_eq!(code, 1);
    assert!(
        out.contains("[FAIL] authenticated (200 OK)") && out.contains("401 Unauthorized"),
        "{out}"
    );
    assert!(
        out.contains(
            "hint: authentication failed: check the SIP account's username, password and realm"
        ),
        "{out}"
    );

    let (code, out) = check(reg.port, "1002", "right");
    assert_eq!(code, 1);
    assert!(out.contains("403 Forbidden"), "{out}");
    assert!(
        out.contains(
            "hint: the server refused this account: IP not allow-listed or account disabled"
        ),
        "{out}"
    );

    let (code, out) = check(reg.port, "1009", "x");
    assert_eq!(code, 1);
    assert!(
        out.contains("404 Not Found") && out.contains("hint: not found"),
        "{out}"
    );
}
