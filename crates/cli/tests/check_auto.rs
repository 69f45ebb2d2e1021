//! `sipmeter check --transport auto --dns-server …` as a user runs it: dnsmasq publishes
//! NAPTR and SRV records that lead to Kamailio over TCP.
//!
//! Skipped with a message when `kamailio` or `dnsmasq` is absent (Debian packages `kamailio`
//! and `dnsmasq-base`).

use std::process::Command;

use testpeers::{Dnsmasq, DnsmasqConfig, Kamailio, KamailioConfig, Naptr, Srv, User, available};

#[test]
fn check_auto_finds_kamailio_through_naptr_and_srv() {
    if !available("kamailio", "kamailio") || !available("dnsmasq", "dnsmasq-base") {
        return;
    }
    let k = Kamailio::start(&KamailioConfig {
        users: vec![User::new("1001", "secret1001")],
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let dns = Dnsmasq::start(&DnsmasqConfig {
        local_domains: vec!["test".into()],
        naptr: vec![Naptr {
            name: "pbx.test".into(),
            order: 10,
            preference: 10,
            service: "SIP+D2T".into(),
            replacement: "_sip._tcp.pbx.test".into(),
        }],
        srv: vec![Srv {
            name: "_sip._tcp.pbx.test".into(),
            target: "sip1.pbx.test".into(),
            port: k.port(),
            priority: 10,
            weight: 0,
        }],
        hosts: vec![("sip1.pbx.test".into(), "127.0.0.1".parse().unwrap())],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["check", "--domain", "pbx.test", "--transport", "auto"])
        .args(["--dns-server", &dns.addr().to_string()])
        .args(["--user", "1001", "--password", "secret1001"])
        .output()
        .expect("sipmeter check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}"); // shown with --nocapture: what a user sees
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", k.log());
    assert!(
        stdout.contains("registration URI  sip:pbx.test\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("server            127.0.0.1:{} TCP\n", k.port())),
        "{stdout}"
    );
    assert!(
        stdout.contains("pbx.test Naptr → 10 SIP+D2T → _sip._tcp.pbx.test"),
        "{stdout}"
    );
    assert!(stdout.contains("[ok  ] authenticated (200 OK)"), "{stdout}");
    assert!(stdout.contains("200 OK after a 401 challenge"), "{stdout}");

    // A bad --dns-server is refused by the argument parser (exit 2), not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["check", "--domain", "pbx.test", "--transport", "auto"])
        .args(["--dns-server", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
