//! `sipmeter check --proxy HOST:PORT` as a user runs it: Kamailio registers the account and,
//! as the outbound proxy, answers the check's OPTIONS over UDP and TCP; a proxy address where
//! nothing listens fails the check (exit 1) while the registration itself succeeded.
//!
//! Skipped with a message when `kamailio` is absent (`./scripts/test` installs it and sets
//! SIPMETER_REQUIRE_PEERS=1, which turns the skip into a failure).

use std::process::Command;

use testpeers::{Kamailio, KamailioConfig, User, available};

fn check(k: &Kamailio, transport: &str, proxy: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "check",
            "--domain",
            "127.0.0.1",
            "--port",
            &k.port().to_string(),
        ])
        .args([
            "--transport",
            transport,
            "--user",
            "1001",
            "--password",
            "pw1001",
        ])
        .args(["--proxy", proxy, "--trace"])
        .output()
        .expect("sipmeter check runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}"); // shown with --nocapture: what a user sees
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn check_probes_the_outbound_proxy() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = Kamailio::start(&KamailioConfig {
        users: vec![User::new("1001", "pw1001")],
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let proxy = format!("127.0.0.1:{}", k.port());
    for transport in ["udp", "tcp"] {
        let (code, out) = check(&k, transport, &proxy);
        assert_eq!(code, 0, "{out}\n{}", k.log());
        let line = out
            .lines()
            .find(|l| l.contains("outbound proxy (OPTIONS)"))
            .unwrap_or_else(|| panic!("no proxy step:\n{out}"));
        assert!(line.contains("ok"), "{line}");
        assert!(
            line.contains(&format!(
                "outbound proxy {proxy} answered OPTIONS with 200 Keepalive"
            )),
            "{line}"
        );
        // The OPTIONS is in the trace, addressed to the proxy over the check's transport.
        assert!(out.contains(&format!("OPTIONS sip:{proxy}")), "{out}");
        if transport == "tcp" {
            assert!(
                out.contains(&format!("OPTIONS sip:{proxy};transport=tcp SIP/2.0")),
                "{out}"
            );
        }
    }

    // Nothing listens at the proxy's address: the registration passes, the check fails.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (code, out) = check(&k, "udp", &dead_addr.to_string());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("authenticated (200 OK)"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("outbound proxy (OPTIONS)"))
        .unwrap_or_else(|| panic!("no proxy step:\n{out}"));
    assert!(line.contains("FAIL") || line.contains("fail"), "{line}");
    assert!(line.contains("ICMP port unreachable"), "{line}");
    assert!(out.contains("calls routed through it will fail"), "{out}");

    // A malformed proxy address is named.
    let (code, out) = check(&k, "udp", "sbc.example.com:70000");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("`sbc.example.com:70000`: expected HOST or HOST:PORT"),
        "{out}"
    );
}
