//! The outbound proxy's step of `check` (`--proxy HOST:PORT`): the seed page routes INVITEs,
//! not REGISTER, through the proxy, so registering proves nothing about it. The check sends
//! it an OPTIONS (RFC 3261 §11) over the check's transport, in a client transaction of its
//! own (retransmitted over UDP), and reports what answered: any final response proves a SIP
//! server listens there; 503 or silence means calls through it will fail.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use sip_msg::typed::{NameAddr, Via};
use sip_msg::{
    HeaderName, Host, Message, Method, RequestBuilder, SipUri, Uri, branch_from, tag_from,
};
use sip_net::tls::ClientSettings;
use sip_proto::transaction::{ClientTransaction, TimerConfig, TxnEvent};

use crate::check::{Step, StepStatus};
use crate::flow::{Flow, FlowKind, WsTarget};
use crate::trace::{Direction, TraceEntry};

/// What the probe needs.
#[derive(Debug)]
pub struct ProxyProbe<'a> {
    /// `host[:port]` as the user gave it.
    pub proxy: &'a str,
    /// The transport (the registration's).
    pub kind: FlowKind,
    /// TLS settings for TLS and WSS.
    pub tls: &'a ClientSettings,
    /// The WebSocket path for WS and WSS.
    pub ws_path: &'a str,
    /// Our AOR user and domain (the From of the OPTIONS).
    pub user: &'a str,
    /// The registrar's domain.
    pub domain: &'a str,
    /// The name the TLS certificate must carry (and the SNI); default: the proxy's host.
    pub server_name: Option<&'a str>,
    /// Seed for the branch, tag and Call-ID.
    pub seed: u64,
    /// How long to wait for a final response at most.
    pub timeout: Duration,
}

/// Splits `host[:port]` (IPv6 in brackets) and applies the transport's default port.
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let s = s.trim();
    let bad = || format!("`{s}`: expected HOST or HOST:PORT, e.g. sbc.example.com:5060");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_owned(), Some(p)),
            None if after.is_empty() => (h.to_owned(), None),
            None => return Err(bad()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p)),
            Some(_) => (s.to_owned(), None), // a bare IPv6 address
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)?,
        None => default_port,
    };
    Ok((host, port))
}

/// The failed `proxy` step (begun at `t`) and its hint.
fn failed_step(detail: String, hint: &str, t: Instant) -> (Step, Option<String>) {
    (
        Step {
            name: "proxy",
            status: StepStatus::Failed,
            elapsed_ms: t.elapsed().as_secs_f64() * 1000.0,
            detail,
        },
        Some(hint.to_owned()),
    )
}

/// [`probe`] for a proxy given by name: located by RFC 3263 §4 on that name through
/// `dns_server` (the system's resolver when `None`), as a run locates it — SRV for the
/// transport when no port is written, A/AAAA with one (§4.2) — and each target probed in
/// order until one answers (§4.3: refused, silent or 503 moves on). The step names the
/// address used and the targets that failed. An IP literal is probed as [`probe`] does.
pub async fn probe_located(
    p: &ProxyProbe<'_>,
    dns_server: Option<SocketAddr>,
    start: Instant,
    trace: &mut Vec<TraceEntry>,
) -> (Step, Option<String>) {
    let t = Instant::now();
    let located = split_host_port(p.proxy, 0).ok().and_then(|(host, port)| {
        if host.parse::<IpAddr>().is_ok() {
            return None;
        }
        let name = sip_proto::target::Host::parse(&host).ok()?;
        Some((host, name, port))
    });
    let Some((host, name, port)) = located else {
        return probe(p, start, trace).await;
    };
    let destination = sip_proto::rfc3263::Destination {
        host: name,
        port: (port != 0).then_some(port),
        transport: Some(crate::flow::transport_of(p.kind)),
        sips: false,
    };
    let failed = |detail: String, hint: &str| failed_step(detail, hint, t);
    let dns = match sip_net::dns::Dns::new(dns_server) {
        Ok(d) => d,
        Err(e) => {
            return failed(
                format!("outbound proxy {host}: DNS: {e}"),
                "fix the DNS server setting (address:port)",
            );
        }
    };
    let mut disco = match sip_net::dns::Discovery::new(destination, dns, p.seed) {
        Ok(d) => d,
        Err(e) => {
            return failed(
                format!("outbound proxy {host}: {e}"),
                "check the outbound proxy's host name",
            );
        }
    };
    let targets = disco.all_targets().await;
    for e in disco.log() {
        trace.push(TraceEntry::note(
            format!("outbound proxy DNS: {e}"),
            start.elapsed(),
        ));
    }
    if targets.is_empty() {
        let asked: Vec<String> = disco.log().iter().map(|e| e.to_string()).collect();
        return failed(
            format!(
                "outbound proxy {host} does not resolve: {}",
                asked.join("; ")
            ),
            "check the outbound proxy's host name and the DNS server",
        );
    }
    let n = targets.len();
    let mut skipped = Vec::new();
    let mut last = None;
    for (i, target) in targets.into_iter().enumerate() {
        let addr = SocketAddr::new(target.address, target.port).to_string();
        let one = ProxyProbe {
            proxy: &addr,
            // The certificate must name the proxy as written, not the address DNS gave.
            server_name: Some(p.server_name.unwrap_or(&host)),
            ..*p
        };
        let (mut step, hint) = probe(&one, start, trace).await;
        step.detail = format!("{} (target {} of {n} for {host})", step.detail, i + 1);
        if step.status == StepStatus::Ok {
            if !skipped.is_empty() {
                step.detail = format!("{}; skipped: {}", step.detail, skipped.join("; "));
            }
            return (step, hint);
        }
        trace.push(TraceEntry::note(
            format!("{}: next target (RFC 3263 §4.3)", step.detail),
            start.elapsed(),
        ));
        skipped.push(step.detail.clone());
        last = Some((step, hint));
    }
    let (mut step, hint) = last.unwrap_or_else(|| {
        failed(
            format!("outbound proxy {host}: no target"),
            "check the outbound proxy's host name",
        )
    });
    if skipped.len() > 1 {
        step.detail = skipped.join("; ");
    }
    (step, hint)
}

/// Runs the probe; returns the `proxy` step and, when it failed, the hint.
pub async fn probe(
    p: &ProxyProbe<'_>,
    start: Instant,
    trace: &mut Vec<TraceEntry>,
) -> (Step, Option<String>) {
    let t = Instant::now();
    let failed = failed_step;
    // The run's default too (`testfile`): check and run reach the same proxy.
    let default_port = p.kind.default_port();
    let (host, port) = match split_host_port(p.proxy, default_port) {
        Ok(v) => v,
        Err(e) => {
            return failed(
                format!("outbound proxy {e}"),
                "give the outbound proxy as HOST:PORT",
                t,
            );
        }
    };
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(mut a) => match a.next() {
                Some(a) => a.ip(),
                None => {
                    return failed(
                        format!("outbound proxy {host} has no address records"),
                        "check the outbound proxy's host name",
                        t,
                    );
                }
            },
            Err(e) => {
                return failed(
                    format!("outbound proxy {host} does not resolve: {e}"),
                    "check the outbound proxy's host name and the DNS server",
                    t,
                );
            }
        },
    };
    let addr = SocketAddr::new(ip, port);
    let connect = Duration::from_secs(5);
    let tls = || {
        p.tls.config().and_then(|c| {
            sip_net::tls::server_name(p.server_name.unwrap_or(&host))
                .map(|n| (c, n, p.tls.identity.is_some()))
        })
    };
    let flow = match p.kind {
        FlowKind::Udp | FlowKind::Tcp => Flow::connect(p.kind, addr, connect).await,
        FlowKind::Tls => match tls() {
            Ok((c, n, id)) => Flow::connect_tls(addr, connect, c, n, id)
                .await
                .map(|f| f.0),
            Err(e) => return failed(format!("TLS settings: {e}"), "fix the TLS settings", t),
        },
        FlowKind::Ws | FlowKind::Wss => {
            let setup = if p.kind == FlowKind::Wss {
                match tls() {
                    Ok(s) => Some(s),
                    Err(e) => {
                        return failed(format!("TLS settings: {e}"), "fix the TLS settings", t);
                    }
                }
            } else {
                None
            };
            let target = WsTarget {
                host: if ip.is_ipv6() && host.parse::<IpAddr>().is_ok() {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                },
                path: p.ws_path.to_owned(),
            };
            Flow::connect_ws(addr, connect, setup, &target)
                .await
                .map(|f| f.0)
        }
    };
    let mut flow = match flow {
        Ok(f) => f,
        Err(e) => {
            return failed(
                format!("outbound proxy {addr} over {}: {e}", p.kind.via_token()),
                "the outbound proxy is unreachable on this transport and port: calls routed through it will fail; check its address, port and firewall",
                t,
            );
        }
    };
    let local = flow
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let local_ip = if local.ip().is_unspecified() {
        crate::check::guess_local_ip(addr)
    } else {
        local.ip()
    };
    let mut target = SipUri::new(Host::from(ip)).with_port(port);
    if p.kind != FlowKind::Udp {
        target = target.with_param("transport", Some(&p.kind.via_token().to_ascii_lowercase()));
    }
    let mut via = Via::new(
        p.kind.via_token(),
        Host::from(local_ip),
        Some(local.port()),
        &branch_from(p.seed ^ 0x6F70_7469_6F6E_7321),
    );
    via.params.set("rport", None);
    let from = SipUri::new(Host::parse(p.domain).unwrap_or(Host::Name(p.domain.to_owned())))
        .with_user(p.user.to_owned());
    let req = RequestBuilder::new(Method::Options, Uri::Sip(target.clone()))
        .via(via)
        .from(NameAddr::new(from).with_tag(&tag_from(p.seed.rotate_left(17))))
        .to(NameAddr::new(target))
        .call_id(format!(
            "{}@sipmeter-proxy-check",
            tag_from(p.seed.rotate_left(31))
        ))
        .cseq(1)
        .header(HeaderName::Accept, "application/sdp")
        .header(
            HeaderName::UserAgent,
            concat!("sipmeter/", env!("CARGO_PKG_VERSION")),
        )
        .build();
    let wall = SystemTime::now();
    let now = Instant::now();
    let mut txn = match ClientTransaction::new(now, &req, p.kind.reliable(), TimerConfig::default())
    {
        Ok(txn) => txn,
        Err(e) => {
            return failed(
                format!("could not build the OPTIONS: {e}"),
                "this is a sipmeter bug",
                t,
            );
        }
    };
    let deadline = now + p.timeout;
    let record = |trace: &mut Vec<TraceEntry>, dir, bytes, retransmission| {
        let at = Instant::now() - start;
        let (from, to) = match dir {
            Direction::Sent => (local, addr),
            _ => (addr, local),
        };
        trace.push(TraceEntry::new(
            dir,
            p.kind,
            from,
            to,
            bytes,
            at,
            wall + at,
            retransmission,
        ));
    };
    loop {
        while let Some(out) = txn.poll_transmit() {
            record(
                trace,
                Direction::Sent,
                out.bytes.clone(),
                out.retransmission,
            );
            if let Err(e) = flow.send(&out.bytes).await {
                return failed(
                    format!("sending OPTIONS to the outbound proxy {addr} failed: {e}"),
                    "the outbound proxy is unreachable: calls routed through it will fail",
                    t,
                );
            }
        }
        while let Some(ev) = txn.poll_event() {
            match ev {
                TxnEvent::Response(resp) => {
                    let code = resp.status().unwrap_or(0);
                    if code < 200 {
                        continue;
                    }
                    let reason = resp.reason().unwrap_or("").to_owned();
                    let server = resp
                        .headers
                        .value(&HeaderName::Server)
                        .map(|s| format!(" [Server: {s}]"))
                        .unwrap_or_default();
                    let detail = format!(
                        "outbound proxy {addr} answered OPTIONS with {code} {reason}{server}"
                    );
                    if code == 503 || code >= 600 {
                        return failed(
                            detail,
                            "the outbound proxy is up but refuses service: calls routed through it will fail until it recovers",
                            t,
                        );
                    }
                    let meaning = match code {
                        200..=299 => "",
                        401 | 407 => {
                            ": it asks for authentication, which calls answer with the account's credentials"
                        }
                        _ => ": a SIP server listens there",
                    };
                    return (
                        Step {
                            name: "proxy",
                            status: StepStatus::Ok,
                            elapsed_ms: t.elapsed().as_secs_f64() * 1000.0,
                            detail: format!("{detail}{meaning}"),
                        },
                        None,
                    );
                }
                TxnEvent::Timeout(_) => {
                    return failed(
                        format!("no answer to OPTIONS from the outbound proxy {addr} (Timer F)"),
                        "the outbound proxy does not answer: calls routed through it will fail; check its address, port, transport and firewall",
                        t,
                    );
                }
                _ => {}
            }
        }
        let wake = txn.poll_timeout().unwrap_or(deadline).min(deadline);
        tokio::select! {
            r = flow.recv() => match r {
                Ok(bytes) => {
                    record(trace, Direction::Received, bytes.clone(), false);
                    match Message::parse_bytes(bytes) {
                        Ok(m) if !m.is_request() => txn.handle_response(Instant::now(), &m),
                        Ok(_) => {}
                        Err(e) => trace.push(TraceEntry::note(
                            format!("malformed message from the outbound proxy {addr}: {e}"),
                            Instant::now() - start,
                        )),
                    }
                }
                Err(e) => {
                    let (what, hint) = if p.kind == FlowKind::Udp {
                        (
                            "refused the OPTIONS (ICMP port unreachable: nothing listens there)",
                            "nothing listens at the outbound proxy's address: calls routed through it will fail; check its port and transport",
                        )
                    } else {
                        (
                            "closed the connection",
                            "the outbound proxy dropped the connection: calls routed through it will fail",
                        )
                    };
                    return failed(format!("the outbound proxy {addr} {what}: {e}"), hint, t);
                }
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                if Instant::now() >= deadline {
                    return failed(
                        format!(
                            "no answer to OPTIONS from the outbound proxy {addr} within {:.0} s",
                            p.timeout.as_secs_f64()
                        ),
                        "the outbound proxy does not answer: calls routed through it will fail; check its address, port, transport and firewall",
                        t,
                    );
                }
                txn.handle_timeout(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port_forms() {
        assert_eq!(
            split_host_port("sbc.example.com:5080", 5060),
            Ok(("sbc.example.com".into(), 5080))
        );
        assert_eq!(
            split_host_port("sbc.example.com", 5061),
            Ok(("sbc.example.com".into(), 5061))
        );
        assert_eq!(
            split_host_port("[::1]:5070", 5060),
            Ok(("::1".into(), 5070))
        );
        assert_eq!(split_host_port("[::1]", 5060), Ok(("::1".into(), 5060)));
        assert_eq!(split_host_port("::1", 5060), Ok(("::1".into(), 5060)));
        assert_eq!(
            split_host_port("10.0.0.5:5060", 5060),
            Ok(("10.0.0.5".into(), 5060))
        );
        for bad in [
            "",
            "sbc:0",
            "sbc:x",
            "sbc:70000",
            "[::1",
            "[::1]x",
            "a b:5060",
        ] {
            assert!(split_host_port(bad, 5060).is_err(), "{bad}");
        }
    }
}
