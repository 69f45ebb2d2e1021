//! An outbound proxy over TCP and TLS, with two real Kamailio 5.6: one registrar (it trusts
//! the proxy's calls) and one outbound proxy in front of it, an SBC in front of a PBX. 10
//! callers call 10 callees through the proxy: REGISTER goes to the registrar on each
//! endpoint's first connection, every INVITE (407, then authorised) goes to the proxy on a
//! second one, the callee's re-INVITE (hold) reaches the caller on that second connection,
//! and the BYE follows the proxy's Record-Route.
//!
//! Skipped with a message when `kamailio` (or its TLS module) is absent (fails instead with
//! `SIPMETER_REQUIRE_PEERS=1`).

use std::net::SocketAddr;

use agent::engine::{EndpointReport, Outcome, RunSummary};
use agent::flow::FlowKind;
use agent::trace::{Direction, TraceEntry};
use sip_net::tls::CertificateAuthority;
use testpeers::{
    Dnsmasq, DnsmasqConfig, Kamailio, KamailioConfig, KamailioTls, Srv, TempDir, User, available,
    tls_available, websocket_available,
};

mod streams_common;

fn users() -> Vec<User> {
    (1001..=1020)
        .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
        .collect()
}

fn tls_of(ca: Option<&CertificateAuthority>) -> Option<KamailioTls> {
    ca.map(streams_common::kamailio_tls)
}

/// The registrar: it registers the phones and delivers calls; calls come authenticated by
/// the proxy, so it does not challenge INVITEs itself.
fn registrar(ca: Option<&CertificateAuthority>, websocket: bool) -> Kamailio {
    Kamailio::start(&KamailioConfig {
        users: users(),
        one_time_nonce: true,
        invite_auth: false,
        tls: tls_of(ca),
        websocket,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The outbound proxy: 407 on INVITE with the same accounts, Record-Route, then on to
/// `registrar` at `forward_to`.
fn proxy(ca: Option<&CertificateAuthority>, websocket: bool, forward_to: String) -> Kamailio {
    Kamailio::start(&KamailioConfig {
        users: users(),
        one_time_nonce: true,
        tls: tls_of(ca),
        websocket,
        forward_to: Some(forward_to),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs 10 callers → 10 callees at the registrar `port` through the proxy `proxy_port`.
fn run(
    transport: &str,
    port: u16,
    proxy_port: u16,
    extra: &str,
) -> (RunSummary, Vec<EndpointReport>) {
    run_with(
        "",
        &format!(
            "domain = \"127.0.0.1\"\nport = {port}\ntransport = \"{transport}\"\noutbound_proxy = \"127.0.0.1:{proxy_port}\"\n{extra}"
        ),
    )
}

/// Runs 10 callers → 10 callees at the registrar `registrar` describes (its keys); `top`
/// holds more top-level keys.
fn run_with(top: &str, registrar: &str) -> (RunSummary, Vec<EndpointReport>) {
    let text = format!(
        r#"
name = "outbound proxy"
duration = "500ms"
seed = 8
shards = 2
time_limit = "40s"
{top}

[[registrar]]
id = "pbx"
{registrar}

[[accounts]]
registrar = "pbx"
range = {{ from = 1001, to = 1020, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 10
registrar = "pbx"
role = "answer"
answer_delay = "100ms"
# The callee puts the call on hold: a re-INVITE that reaches the caller through the proxy.
actions = [{{ at = "200ms", do = "hold" }}]

[[group]]
name = "callers"
endpoints = 10
registrar = "pbx"
call = "group:callees"
"#
    );
    streams_common::run_file("proxy.toml", &text)
}

fn sent<'a>(r: &'a EndpointReport, method: &str) -> Vec<&'a TraceEntry> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Sent && e.first_line().starts_with(method))
        .collect()
}

/// The header `name`'s value in a message's text.
fn header<'a>(e: &'a TraceEntry, name: &str) -> &'a str {
    e.text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {name} in {}", e.text))
}

#[allow(clippy::too_many_arguments)]
fn assert_through_the_proxy(
    kind: FlowKind,
    registrar: &Kamailio,
    registrar_addr: SocketAddr,
    proxy: &Kamailio,
    proxy_addr: SocketAddr,
    summary: &RunSummary,
    reports: &[EndpointReport],
) {
    let logs = || {
        format!(
            "registrar log:\n{}\nproxy log:\n{}",
            registrar.log(),
            proxy.log()
        )
    };
    assert_eq!(reports.len(), 20);
    for r in reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}\n{}", logs());
        assert_eq!(r.registration_code, Some(200), "{}", r.user);
        // REGISTER never goes through the proxy.
        for reg in sent(r, "REGISTER ") {
            assert_eq!(reg.remote, Some(registrar_addr), "{}", reg.text);
        }
        assert!(
            r.trace.iter().any(|e| e.direction == Direction::Note
                && e.text.starts_with(&format!(
                    "connecting over {} to the outbound proxy {proxy_addr}",
                    kind.via_token()
                ))),
            "{:#?}",
            r.trace
        );
    }
    assert_eq!((summary.calls_attempted, summary.calls_answered), (10, 10));
    let token = kind.via_token().to_ascii_lowercase();
    let route = format!("<sip:{proxy_addr};transport={token};lr>");
    for r in reports.iter().filter(|r| r.group == "callers") {
        let register = sent(r, "REGISTER ")[0];
        let invites = sent(r, "INVITE ");
        assert_eq!(invites.len(), 2, "407, then authorised: {:#?}", r.trace);
        assert!(invites[1].text.contains("Proxy-Authorization: Digest "));
        for inv in &invites {
            // On the proxy's connection, with its address in Via and Contact.
            assert_eq!(inv.remote, Some(proxy_addr));
            assert_ne!(inv.local, register.local, "a second connection");
            assert_eq!(header(inv, "Route"), route);
            let port = inv.local.unwrap().port();
            assert!(
                header(inv, "Via")
                    .starts_with(&format!("SIP/2.0/{} 127.0.0.1:{port};", kind.via_token())),
                "{}",
                inv.text
            );
            assert!(
                header(inv, "Contact").ends_with(&format!("@127.0.0.1:{port};transport={token}>")),
                "{}",
                inv.text
            );
        }
        let challenge = r
            .trace
            .iter()
            .find(|e| e.first_line() == "SIP/2.0 407 Proxy Authentication Required")
            .expect("the proxy challenged the INVITE");
        assert_eq!(challenge.remote, Some(proxy_addr));
        // The callee's re-INVITE (hold) came through the proxy, on the proxy's connection,
        // and was answered there.
        let reinvite = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Received && e.first_line().starts_with("INVITE "))
            .expect("the callee's re-INVITE reached the caller");
        assert_eq!(
            (reinvite.local, reinvite.remote),
            (invites[1].local, Some(proxy_addr))
        );
        assert!(
            r.trace.iter().any(|e| e.direction == Direction::Sent
                && e.first_line() == "SIP/2.0 200 OK"
                && e.text.contains("CSeq: ")
                && e.text.contains(" INVITE\r\n")
                && e.local == invites[1].local),
            "{:#?}",
            r.trace
        );
        // The BYE follows the proxy's Record-Route, on its connection.
        let bye = sent(r, "BYE ");
        assert_eq!(bye.len(), 1, "{:#?}", r.trace);
        assert_eq!(
            (bye[0].local, bye[0].remote),
            (invites[1].local, Some(proxy_addr))
        );
        let port = invites[1].local.unwrap().port();
        assert!(
            header(bye[0], "Via")
                .starts_with(&format!("SIP/2.0/{} 127.0.0.1:{port};", kind.via_token())),
            "{}",
            bye[0].text
        );
        // The proxy's own entry first (over WS Kamailio records two, `r2=on`: ours and the
        // registrar's side).
        let first_route = header(bye[0], "Route");
        assert!(
            first_route.starts_with(&format!("<sip:{proxy_addr};transport={token};")),
            "{first_route}"
        );
    }
    // Each callee's INVITE came from the registrar, on the callee's registrar connection.
    for r in reports.iter().filter(|r| r.group == "callees") {
        let register = sent(r, "REGISTER ")[0];
        let invite = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Received && e.first_line().starts_with("INVITE "))
            .expect("the callee received the INVITE");
        assert_eq!(invite.local, register.local);
        assert_eq!(invite.remote, Some(registrar_addr));
    }
    // The proxy saw every INVITE, with its Route (the proxy's log may hold an earlier run's
    // over another transport: those carry another Route), and no REGISTER.
    let log = proxy.log();
    let seen = log
        .lines()
        .filter(|l| {
            l.contains("initial INVITE from ") && l.ends_with(&format!("with Route: {route}"))
        })
        .count();
    assert_eq!(seen, 20, "{}", logs());
    assert!(!log.contains("REGISTER"), "{log}");
}

/// [`assert_through_the_proxy`] over TCP, at the Kamailio's own addresses.
fn assert_through_the_proxy_over_tcp(
    registrar: &Kamailio,
    proxy: &Kamailio,
    summary: &RunSummary,
    reports: &[EndpointReport],
) {
    let (r, p) = (registrar.addr(), proxy.addr());
    assert_through_the_proxy(FlowKind::Tcp, registrar, r, proxy, p, summary, reports);
}

#[test]
fn ten_calls_through_a_kamailio_outbound_proxy_over_tcp() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let r = registrar(None, false);
    let p = proxy(None, false, format!("sip:{};transport=tcp", r.addr()));
    let (summary, reports) = run("tcp", r.port(), p.port(), "");
    assert_through_the_proxy_over_tcp(&r, &p, &summary, &reports);
}

/// A run over TLS through two Kamailio, and what it ran against.
struct TlsRun {
    r: Kamailio,
    p: Kamailio,
    r_tls: SocketAddr,
    p_tls: SocketAddr,
    summary: RunSummary,
    reports: Vec<EndpointReport>,
}

/// 10 → 10 over TLS: the registrar's certificate signed by `ca` (which the test file trusts,
/// Custom CA), the proxy's by `proxy_ca`; the proxy relays to the registrar over TLS.
fn run_over_tls(ca: &CertificateAuthority, proxy_ca: &CertificateAuthority) -> TlsRun {
    let r = registrar(Some(ca), false);
    let r_tls = r.tls_addr().unwrap();
    let p = proxy(Some(proxy_ca), false, format!("sip:{r_tls};transport=tls"));
    let p_tls = p.tls_addr().unwrap();
    let dir = TempDir::new("sipmeter-proxy-tls").unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let (summary, reports) = run(
        "tls",
        r_tls.port(),
        p_tls.port(),
        &format!(
            "tls_verify = \"custom\"\ntls_ca = \"{}\"",
            ca_file.display()
        ),
    );
    TlsRun {
        r,
        p,
        r_tls,
        p_tls,
        summary,
        reports,
    }
}

#[test]
fn ten_calls_through_a_kamailio_outbound_proxy_over_tls() {
    if !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("proxy CA").unwrap();
    let TlsRun {
        r,
        p,
        r_tls,
        p_tls,
        summary,
        reports,
    } = run_over_tls(&ca, &ca);
    assert_through_the_proxy(FlowKind::Tls, &r, r_tls, &p, p_tls, &summary, &reports);
    for r in &reports {
        let notes = streams_common::notes(r);
        let tls = streams_common::note_at(
            &notes,
            &format!("outbound proxy: TLS handshake done with {p_tls}"),
        );
        assert!(notes[tls].contains("verification: Custom CA"), "{notes:#?}");
    }
}

/// A proxy that refuses the connection: each call fails with OSERROR, and the error and hint
/// name the proxy, not the registrar (which answered every REGISTER).
#[test]
fn a_refused_proxy_connection_fails_the_calls_with_oserror_naming_the_proxy() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let r = registrar(None, false);
    let closed = testpeers::free_port().unwrap();
    let (summary, reports) = run("tcp", r.port(), closed, "");
    assert_calls_not_placed(
        &summary,
        &reports,
        Outcome::Oserror,
        &format!("cannot connect over TCP to the outbound proxy 127.0.0.1:{closed}: "),
        "the outbound proxy is unreachable",
    );
}

/// Every endpoint registered; no call was placed: each caller ended `outcome` with an error
/// starting with `prefix` and holding `words`, and sent no INVITE.
fn assert_calls_not_placed(
    summary: &RunSummary,
    reports: &[EndpointReport],
    outcome: Outcome,
    prefix: &str,
    words: &str,
) {
    assert_eq!(summary.calls_answered, 0);
    for rep in reports {
        assert_eq!(rep.registration_code, Some(200), "{rep:#?}");
        if rep.group == "callers" {
            assert_eq!(rep.outcome, outcome, "{rep:#?}");
            let e = rep.error.as_deref().unwrap();
            assert!(e.starts_with(prefix) && e.contains(words), "{e}");
            assert!(sent(rep, "INVITE ").is_empty());
        }
    }
}

/// Over WS: Kamailio as the proxy takes the calls over WebSocket and passes them to the
/// registrar over TCP (Kamailio opens no WebSocket connection itself). WSS is not run here:
/// with its two Record-Route entries (`r2=on`, WSS on one side, TCP on the other) Kamailio
/// 5.6 writes `;transport=ws` for its WSS port and then does not take the entry as its own:
/// the ACK and BYE died in it ("via_builder(): TCP/TLS connection (id: 0) for WebSocket
/// could not be found"), whatever the client does.
#[test]
fn ten_calls_through_a_kamailio_outbound_proxy_over_ws() {
    if !websocket_available() {
        return;
    }
    let r = registrar(None, true);
    let p = proxy(None, true, format!("sip:{};transport=tcp", r.addr()));
    let at = |k: &Kamailio| SocketAddr::new(k.addr().ip(), k.ws_port().unwrap());
    let (r_ws, p_ws) = (at(&r), at(&p));
    let (summary, reports) = run("ws", r_ws.port(), p_ws.port(), "");
    assert_through_the_proxy(FlowKind::Ws, &r, r_ws, &p, p_ws, &summary, &reports);
}

/// AUTO: DNS offers the registrar over TCP only (SRV), and the outbound proxy is taken as
/// `host:port` on the transport discovery chose, as `check --proxy` probes it: the second
/// connection is TCP too, and the Route says `;transport=tcp`.
#[test]
fn with_auto_the_proxy_takes_the_transport_discovery_chose() {
    if !available("kamailio", "kamailio") || !available("dnsmasq", "dnsmasq-base") {
        return;
    }
    let r = registrar(None, false);
    let p = proxy(None, false, format!("sip:{};transport=tcp", r.addr()));
    let dns = Dnsmasq::start(&DnsmasqConfig {
        local_domains: vec!["test".into()],
        naptr: Vec::new(),
        srv: vec![Srv {
            name: "_sip._tcp.pbx.test".into(),
            target: "reg.pbx.test".into(),
            port: r.port(),
            priority: 10,
            weight: 0,
        }],
        hosts: vec![("reg.pbx.test".into(), r.addr().ip())],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (summary, reports) = run_with(
        &format!("dns_server = \"{}\"", dns.addr()),
        &format!(
            "domain = \"pbx.test\"\ntransport = \"auto\"\noutbound_proxy = \"127.0.0.1:{}\"",
            p.port()
        ),
    );
    assert!(
        !summary.discovery.is_empty(),
        "the registrar was found by DNS"
    );
    assert_through_the_proxy_over_tcp(&r, &p, &summary, &reports);
}

/// A proxy whose certificate is signed by a CA the test file does not trust (the registrar's
/// is): registrations succeed, each call fails CALL_FAILED with the TLS words, and the error
/// names the proxy.
#[test]
fn a_proxy_with_an_untrusted_certificate_fails_the_calls_naming_the_proxy() {
    if !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("registrar CA").unwrap();
    let other = CertificateAuthority::new("another CA").unwrap();
    let TlsRun {
        p_tls,
        summary,
        reports,
        ..
    } = run_over_tls(&ca, &other);
    assert_calls_not_placed(
        &summary,
        &reports,
        Outcome::CallFailed,
        &format!("cannot connect over TLS to the outbound proxy {p_tls}: "),
        "authority",
    );
}

/// A proxy that drops each endpoint's first connection: the endpoint opens it again at once,
/// the trace says so, the summary counts the reconnects, and the new connection carries CRLF
/// keep-alives. (A stand-in that speaks no SIP: these endpoints only register and wait, so
/// nothing is sent to it.)
#[test]
fn a_lost_proxy_connection_is_reopened_and_the_trace_says_so() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let r = registrar(None, false);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let dropper = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut accepted = 0;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < end && kept.len() < 2 {
            match listener.accept() {
                // The first two connections (one per endpoint) are closed after a moment.
                Ok((s, _)) if accepted < 2 => {
                    accepted += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    drop(s);
                }
                Ok((s, _)) => kept.push(s),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        // Held open until the run has ended; each must carry a CRLF keep-alive (RFC 5626
        // §3.5.1, every 300 ms here).
        let mut pinged = 0;
        for s in &mut kept {
            use std::io::Read;
            s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    pinged += 1;
                    break;
                }
            }
        }
        // Not closed before the run has ended (a close would be another reconnect).
        std::thread::sleep(std::time::Duration::from_secs(2));
        drop(kept);
        pinged
    });
    let text = format!(
        r#"
name = "proxy drops"
duration = "1500ms"
seed = 9
shards = 1
time_limit = "20s"

[[registrar]]
id = "pbx"
domain = "127.0.0.1"
port = {}
transport = "tcp"
outbound_proxy = "{proxy_addr}"
keepalive = "300ms"

[[accounts]]
registrar = "pbx"
range = {{ from = 1001, to = 1002, password = "pw{{n}}" }}

[[group]]
name = "phones"
endpoints = 2
registrar = "pbx"
role = "answer"
"#,
        r.port()
    );
    let (summary, reports) = streams_common::run_file("drop.toml", &text);
    assert_eq!(
        dropper.join().unwrap(),
        2,
        "both endpoints came back, and kept their proxy connection alive"
    );
    assert_eq!(summary.reconnects, 2);
    for rep in &reports {
        assert_eq!(rep.outcome, Outcome::Success, "{rep:#?}");
        let notes = streams_common::notes(rep);
        let at = |prefix: &str| streams_common::note_at(&notes, prefix);
        let closed = at("connection to the outbound proxy closed: ");
        let reopening = at("reopening the connection to the outbound proxy");
        let again = at(&format!(
            "connecting over TCP to the outbound proxy {proxy_addr} (reconnect)"
        ));
        assert!(closed < reopening && reopening < again, "{notes:#?}");
        assert!(
            notes[again..]
                .iter()
                .any(|n| n.starts_with(&format!("outbound proxy: TCP connected to {proxy_addr}"))),
            "{notes:#?}"
        );
    }
}
