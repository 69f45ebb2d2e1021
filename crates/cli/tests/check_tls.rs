//! `sipmeter registrar --listen tls:…` and `sipmeter check --transport tls` as a user runs
//! them: two real processes on loopback, certificates from a CA made at test time (rcgen) or
//! the registrar's own self-signed one.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use sip_net::tls::CertificateAuthority;

/// The registrar child process, killed when dropped (even if the test fails).
struct Registrar {
    child: Child,
    port: u16,
    /// The banner's lines (listening …, TLS: …).
    banner: Vec<String>,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory for this test's PEM files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("sipmeter-cli-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_registrar(extra: &[&str]) -> Registrar {
    start_registrar_on("tls", extra)
}

fn start_registrar_on(proto: &str, extra: &[&str]) -> Registrar {
    let listen = format!("{proto}:127.0.0.1:0");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["registrar", "--listen", &listen, "--domain", "lab.test"])
        .args(["--account", "1001:right"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sipmeter registrar starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut banner = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        banner.push(line.trim_end().to_owned());
    }
    // "sipmeter registrar listening on tls:127.0.0.1:PORT for domain …"
    let port = banner[0]
        .split(&format!("{proto}:127.0.0.1:"))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok());
    let port = port.unwrap_or_else(|| panic!("no port in {banner:?}"));
    Registrar {
        child,
        port,
        banner,
    }
}

fn check(port: u16, extra: &[&str]) -> (i32, String, String) {
    check_over("tls", port, extra)
}

fn check_over(transport: &str, port: u16, extra: &[&str]) -> (i32, String, String) {
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
            "right",
        ])
        .args(extra)
        .output()
        .expect("sipmeter check runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}"); // shown with --nocapture: what a user sees
    (
        out.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_over_tls_with_the_ca_then_refused_with_system_roots() {
    let dir = Dir::new("ca");
    let ca = CertificateAuthority::new("lab CA").unwrap();
    let server = ca
        .issue(&["lab.test".to_owned(), "127.0.0.1".to_owned()])
        .unwrap();
    let cert = dir.write("server.pem", &server.cert_pem);
    let key = dir.write("server.key", &server.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem());
    let reg = start_registrar(&["--cert", &cert, "--key", &key]);
    assert_eq!(
        reg.banner[1],
        format!(
            "TLS: certificate {cert}, SHA-256 fingerprint {}",
            server.fingerprint()
        )
    );

    let (code, out, _) = check(reg.port, &["--ca", &ca_file, "--trace"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "registration URI  sip:127.0.0.1:{};transport=tls\n",
            reg.port
        )),
        "{out}"
    );
    assert!(
        out.contains("[ok  ] transport connection (TLS handshake) "),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "server certificate SHA-256 {} (verification: Custom CA)",
            server.fingerprint()
        )),
        "{out}"
    );
    assert!(out.contains("[ok  ] authenticated (200 OK)"), "{out}");
    assert!(out.contains("Via: SIP/2.0/TLS 127.0.0.1:"), "{out}");
    assert!(
        out.contains("WWW-Authenticate: Digest realm=\"lab.test\""),
        "{out}"
    );

    let (code, out, _) = check(reg.port, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] transport connection (TLS handshake) ")
            && out.contains("the server's certificate is signed by an unknown authority"),
        "{out}"
    );
    assert!(out.contains("hint: signed by an authority this check does not trust: upload the CA certificate that signed it and choose Custom (--ca FILE)"), "{out}");
}

#[test]
fn self_signed_registrar_with_saved_certificate_and_insecure_mode() {
    let dir = Dir::new("self");
    let saved = dir.path("self.pem");
    let reg = start_registrar(&["--save-cert", &saved]);
    let fingerprint = reg.banner[1]
        .strip_prefix(
            "TLS: self-signed certificate for lab.test, localhost, 127.0.0.1, SHA-256 fingerprint ",
        )
        .unwrap_or_else(|| panic!("{:?}", reg.banner))
        .to_owned();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);

    let (code, out, _) = check(reg.port, &["--ca", &saved]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("SHA-256 {fingerprint} (verification: Custom CA)")),
        "{out}"
    );

    let (code, out, _) = check(reg.port, &["--insecure"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "SHA-256 {fingerprint} (verification: Skip (insecure))"
        )),
        "{out}"
    );
}

#[test]
fn mutual_tls_required_without_and_with_a_client_certificate() {
    let dir = Dir::new("mtls");
    let ca = CertificateAuthority::new("lab CA").unwrap();
    let server = ca.issue(&["127.0.0.1".to_owned()]).unwrap();
    let phone = ca.issue(&["phone1001.lab.test".to_owned()]).unwrap();
    let cert = dir.write("server.pem", &server.cert_pem);
    let key = dir.write("server.key", &server.key_pem);
    let ca_file = dir.write("ca.pem", &ca.cert_pem());
    let phone_cert = dir.write("phone.pem", &phone.cert_pem);
    let phone_key = dir.write("phone.key", &phone.key_pem);
    let reg = start_registrar(&["--cert", &cert, "--key", &key, "--client-ca", &ca_file]);
    assert!(reg.banner[1].ends_with("; client certificates required (mutual TLS)"));

    let (code, out, _) = check(reg.port, &["--ca", &ca_file]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] transport connection (TLS handshake) ")
            && out
                .contains("the server requires a client certificate (mutual TLS) and we sent none"),
        "{out}"
    );
    assert!(
        out.contains("hint: give a client certificate and its key (--cert FILE --key FILE)"),
        "{out}"
    );

    let (code, out, _) = check(
        reg.port,
        &["--ca", &ca_file, "--cert", &phone_cert, "--key", &phone_key],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("; client certificate sent)"), "{out}");
}

#[test]
fn unreadable_or_wrong_tls_files_are_argument_errors() {
    let dir = Dir::new("bad");
    let missing = dir.path("missing.pem");
    let (code, _, err) = check(1, &["--ca", &missing]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!("sipmeter: --ca {missing}: ")),
        "{err}"
    );

    let not_pem = dir.write("notpem.pem", "hello\n");
    let (code, _, err) = check(1, &["--ca", &not_pem]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        format!(
            "sipmeter: --ca {not_pem}: CA certificate: no CERTIFICATE block found in the PEM text"
        )
    );

    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "registrar",
            "--listen",
            "tls:127.0.0.1:0",
            "--cert",
            &not_pem,
            "--key",
            &not_pem,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no CERTIFICATE block"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["registrar", "--listen", "quic:127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expected [udp:|tcp:|tls:|ws:|wss:]ADDRESS:PORT"),
        "{err}"
    );
}

#[test]
fn check_over_wss_with_a_self_signed_registrar() {
    let dir = Dir::new("wss");
    let saved = dir.path("self.pem");
    let reg = start_registrar_on("wss", &["--save-cert", &saved]);
    let (code, out, _) = check_over("wss", reg.port, &["--ca", &saved, "--ws-path", "/sip"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "registration URI  sip:127.0.0.1:{};transport=wss\n",
            reg.port
        )),
        "{out}"
    );
    assert!(
        out.contains("[ok  ] transport connection (TLS handshake) "),
        "{out}"
    );
    assert!(
        out.contains("[ok  ] WebSocket upgrade ")
            && out.contains(&format!(
                "HTTP upgrade to WebSocket at wss://127.0.0.1:{}/sip with subprotocol sip (RFC 7118)",
                reg.port
            )),
        "{out}"
    );
    assert!(out.contains("[ok  ] authenticated (200 OK)"), "{out}");
}
