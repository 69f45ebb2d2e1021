//! The harness itself: each peer starts, answers, and is gone after drop.

use testpeers::{
    Coturn, CoturnConfig, Dnsmasq, DnsmasqConfig, Kamailio, KamailioConfig, User, available,
};

#[test]
fn kamailio_starts_answers_and_stops() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let cfg = KamailioConfig {
        users: vec![User::new("alice", "secret"), User::disabled("carol")],
        ..Default::default()
    };
    let mut k = Kamailio::start(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert!(k.is_running());
    let port = k.port();
    drop(k);
    // The port is free again once Kamailio is gone.
    released("kamailio", port);
}

#[test]
fn dnsmasq_starts_answers_and_stops() {
    if !available("dnsmasq", "dnsmasq-base") {
        return;
    }
    let d = Dnsmasq::start(&DnsmasqConfig {
        local_domains: vec!["sip.test".into()],
        hosts: vec![("sip.test".into(), "127.0.0.1".parse().unwrap())],
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let port = d.port();
    assert!(d.log().contains("probe.invalid"), "{}", d.log());
    drop(d);
    released("dnsmasq", port);
}

#[test]
fn coturn_starts_answers_and_stops() {
    if !available("turnserver", "coturn") {
        return;
    }
    let c = Coturn::start(&CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let port = c.port();
    // Its own log file, not syslog (Debian's /etc/turnserver.conf is not read).
    assert!(
        c.log().contains("Relay ports initialization done"),
        "{}",
        c.log()
    );
    drop(c);
    released("coturn", port);
}

/// `peer`'s UDP port on 127.0.0.1 can be bound again within 2 s of its drop (the process
/// group is killed on drop; a process of it may take a moment to exit and close the socket).
fn released(peer: &str, port: u16) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::net::UdpSocket::bind(("127.0.0.1", port)) {
            Ok(_) => return,
            Err(e) if std::time::Instant::now() >= end => {
                panic!("{peer} released its port {port} within 2 s: {e}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}
