//! Regression (found by Kamailio, which answers `400 Invalid From Header`): a registrar domain
//! given as a bare IPv6 address (`::1`, as typed in the form or on the command line) must be
//! written as an IPv6reference (`[::1]`) in the From and To URIs (RFC 3261 §25.1).

use std::time::Instant;

use sip_msg::{Host, Uri};
use sip_proto::transaction::TimerConfig;
use sip_proto::ua::{UaConfig, UserAgent};

fn first_register(domain: &str) -> String {
    let mut ua = UserAgent::new(UaConfig {
        user: "alice".into(),
        domain: domain.into(),
        registrar_uri: Uri::parse("sip:[::1]:5060").unwrap(),
        outbound_proxy: None,
        credentials: None,
        local_host: Host::parse("[::1]").unwrap(),
        local_port: 5062,
        transport: "UDP".into(),
        reliable: false,
        expires: 60,
        timers: TimerConfig::default(),
        user_agent: "test".into(),
        seed: 1,
        use_100rel: false,
        session_timer: None,
        codecs: None,
    });
    ua.register(Instant::now());
    let out = ua.poll_transmit().expect("a REGISTER");
    String::from_utf8(out.bytes.to_vec()).unwrap()
}

#[test]
fn a_bare_ipv6_domain_is_bracketed_in_from_and_to() {
    for domain in ["::1", "[::1]"] {
        let text = first_register(domain);
        assert!(text.contains("\r\nFrom: <sip:alice@[::1]>;tag="), "{text}");
        assert!(text.contains("\r\nTo: <sip:alice@[::1]>\r\n"), "{text}");
    }
    // Names and IPv4 addresses are unchanged.
    assert!(first_register("pbx.example.com").contains("From: <sip:alice@pbx.example.com>"));
    assert!(first_register("10.0.0.1").contains("From: <sip:alice@10.0.0.1>"));
}
