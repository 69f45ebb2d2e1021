//! RFC 3263 discovery through hickory against a real DNS server (dnsmasq on a free loopback
//! port): NAPTR → SRV → A, SRV only, A only, and nothing at all.
//!
//! Skipped with a message when `dnsmasq` is absent (Debian package `dnsmasq-base`).

use std::net::IpAddr;

use sip_net::dns::{Discovery, Dns};
use sip_proto::rfc3263::{Answer, Destination, Question, RecordType, Target};
use sip_proto::target::{Host, Transport};
use testpeers::{Dnsmasq, DnsmasqConfig, Naptr, Srv, available};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn zone() -> DnsmasqConfig {
    let naptr = |order, pref, service: &str, replacement: &str| Naptr {
        name: "naptr.test".into(),
        order,
        preference: pref,
        service: service.into(),
        replacement: replacement.into(),
    };
    let srv = |name: &str, target: &str, port, priority| Srv {
        name: name.into(),
        target: target.into(),
        port,
        priority,
        weight: 0,
    };
    DnsmasqConfig {
        local_domains: vec!["test".into()],
        naptr: vec![
            // TCP is preferred over UDP; TLS comes last by order.
            naptr(20, 10, "SIPS+D2T", "_sips._tcp.naptr.test"),
            naptr(10, 10, "SIP+D2T", "_sip._tcp.naptr.test"),
            naptr(10, 20, "SIP+D2U", "_sip._udp.naptr.test"),
        ],
        srv: vec![
            srv("_sips._tcp.naptr.test", "tls.naptr.test", 5061, 10),
            srv("_sip._tcp.naptr.test", "pbx1.naptr.test", 5070, 10),
            srv("_sip._tcp.naptr.test", "pbx2.naptr.test", 5071, 20),
            srv("_sip._udp.naptr.test", "pbx1.naptr.test", 5072, 10),
            srv("_sip._udp.srvonly.test", "host.srvonly.test", 5080, 10),
        ],
        hosts: vec![
            ("tls.naptr.test".into(), ip("127.0.0.3")),
            ("pbx1.naptr.test".into(), ip("127.0.0.1")),
            ("pbx2.naptr.test".into(), ip("127.0.0.2")),
            ("host.srvonly.test".into(), ip("127.0.0.4")),
            ("aonly.test".into(), ip("127.0.0.5")),
        ],
    }
}

fn dest(domain: &str) -> Destination {
    Destination {
        host: Host::parse(domain).unwrap(),
        port: None,
        transport: None,
        sips: false,
    }
}

fn t(transport: Transport, address: &str, port: u16) -> Target {
    Target {
        transport,
        address: ip(address),
        port,
    }
}

fn dnsmasq() -> Option<Dnsmasq> {
    if !available("dnsmasq", "dnsmasq-base") {
        return None;
    }
    Some(Dnsmasq::start(&zone()).unwrap_or_else(|e| panic!("{e}")))
}

#[tokio::test]
async fn naptr_then_srv_then_a_in_rfc3263_order() {
    let Some(d) = dnsmasq() else { return };
    let dns = Dns::with_server(d.addr()).unwrap();
    let mut disco = Discovery::new(dest("naptr.test"), dns, 1).unwrap();
    let targets = disco.all_targets().await;
    assert_eq!(
        targets,
        [
            t(Transport::Tcp, "127.0.0.1", 5070),
            t(Transport::Tcp, "127.0.0.2", 5071),
            t(Transport::Udp, "127.0.0.1", 5072),
            t(Transport::Tls, "127.0.0.3", 5061),
        ],
        "{:#?}\n{}",
        disco.log(),
        d.log()
    );
    let first = &disco.log()[0];
    assert_eq!(first.question.rtype, RecordType::Naptr);
    let Answer::Naptr(records) = &first.answer else {
        panic!("{first:?}")
    };
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.flags.eq_ignore_ascii_case("s")));
}

#[tokio::test]
async fn the_first_target_costs_only_the_lookups_it_needs() {
    let Some(d) = dnsmasq() else { return };
    let dns = Dns::with_server(d.addr()).unwrap();
    let mut disco = Discovery::new(dest("naptr.test"), dns, 1).unwrap();
    assert_eq!(
        disco.next_target().await,
        Some(t(Transport::Tcp, "127.0.0.1", 5070))
    );
    let asked: Vec<String> = disco.log().iter().map(|e| e.to_string()).collect();
    // NAPTR, the SRV it points to, then AAAA (none) and A of the first SRV target.
    assert_eq!(asked.len(), 4, "{asked:#?}");
    assert!(asked[1].starts_with("_sip._tcp.naptr.test Srv → "));
    assert!(asked[1].contains("pbx1.naptr.test:5070 (prio 10 weight 0)"));
    assert!(asked[1].contains("pbx2.naptr.test:5071 (prio 20 weight 0)"));
    assert_eq!(asked[2], "pbx1.naptr.test Aaaa → no records");
    assert_eq!(asked[3], "pbx1.naptr.test A → 127.0.0.1");
}

#[tokio::test]
async fn srv_only_and_a_only_domains() {
    let Some(d) = dnsmasq() else { return };
    let dns = Dns::with_server(d.addr()).unwrap();
    let mut srv_only = Discovery::new(dest("srvonly.test"), dns.clone(), 1).unwrap();
    assert_eq!(
        srv_only.all_targets().await,
        [t(Transport::Udp, "127.0.0.4", 5080)],
        "{:#?}",
        srv_only.log()
    );
    // RFC 3263 §4.2: no NAPTR, no SRV: A/AAAA of the domain with UDP 5060.
    let mut a_only = Discovery::new(dest("aonly.test"), dns.clone(), 1).unwrap();
    assert_eq!(
        a_only.all_targets().await,
        [t(Transport::Udp, "127.0.0.5", 5060)]
    );
    // Nothing published at all: no target, and every step was answered "no records".
    let mut none = Discovery::new(dest("nothing.test"), dns.clone(), 1).unwrap();
    assert_eq!(none.all_targets().await, []);
    assert!(
        none.log().iter().all(|e| e.answer == Answer::NoRecords),
        "{:#?}",
        none.log()
    );
    // Direct questions map record types faithfully.
    let a = dns
        .resolve(&Question {
            name: "aonly.test".into(),
            rtype: RecordType::A,
        })
        .await;
    assert_eq!(a, Answer::Addresses(vec![ip("127.0.0.5")]));
}

#[tokio::test]
async fn a_dead_dns_server_is_an_error_not_a_hang() {
    // A UDP port with nothing behind it: ICMP unreachable or timeout, within the 2 s limit.
    let port = testpeers::free_port().unwrap();
    let dns = Dns::with_server(([127, 0, 0, 1], port).into()).unwrap();
    let started = std::time::Instant::now();
    let a = dns
        .resolve(&Question {
            name: "aonly.test".into(),
            rtype: RecordType::A,
        })
        .await;
    assert_eq!(a, Answer::Error);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
