//! The registrar connectivity check of the seed page: DNS resolution → transport connection →
//! REGISTER answered → authenticated, each with its timing, plus the hint for a failure code
//! and the full SIP trace.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use sip_msg::{Host, Message, SipUri, Uri};
use sip_proto::auth::Credentials;
use sip_proto::transaction::TimerConfig;
use sip_proto::ua::{UaConfig, UaEvent, UserAgent};

use sip_net::dns::{Discovery, Dns};
use sip_net::tls::ClientSettings;
use sip_proto::rfc3263::{Destination, Failure, Target};

use crate::flow::{Flow, FlowError, FlowKind, WsTarget, kind_of as flow_kind, transport_of};
use crate::hints::hint_for;
use crate::trace::{Direction, TraceEntry};

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// The registrar's domain: a host name or an IP literal.
    pub domain: String,
    /// The port; `None` uses the transport's default (5060; 5061 for TLS).
    pub port: Option<u16>,
    /// The transport.
    pub transport: FlowKind,
    /// The outbound proxy (`host[:port]`): INVITEs go through it, REGISTER does not, so the
    /// check probes it on its own with an OPTIONS (step `proxy`).
    pub proxy: Option<String>,
    /// The account; without one the registrar must accept unauthenticated REGISTERs.
    pub credentials: Option<Credentials>,
    /// The AOR user when it differs from the auth user (extension).
    pub extension: Option<String>,
    /// Registration lifetime asked for.
    pub expires: u32,
    /// Overall limit (a REGISTER over UDP times out after 64*T1 = 32 s anyway).
    pub timeout: Duration,
    /// Seed for tags, branches and Call-IDs.
    pub seed: u64,
}

/// How `check` finds the server (RFC 3263).
#[derive(Debug, Clone, Default)]
pub struct CheckDns {
    /// AUTO: discover transport and port by NAPTR → SRV → A/AAAA (RFC 3263 §4); the request's
    /// `transport` is then ignored, and its `port`, if set, means "A/AAAA only, UDP".
    pub auto: bool,
    /// The DNS server as `address:port`; `None` uses the system's configuration.
    pub server: Option<SocketAddr>,
}

/// The outcome of one step of the checklist.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Done.
    Ok,
    /// Failed: the check stops here.
    Failed,
    /// Not reached or not applicable.
    Skipped,
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `dns`, `transport`, `tls` (TLS flows only: the handshake), `register`, `auth`.
    pub name: &'static str,
    /// What happened.
    pub status: StepStatus,
    /// Time the step took, in milliseconds.
    pub elapsed_ms: f64,
    /// Details in words.
    pub detail: String,
}

/// The result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The registration URI used.
    pub registration_uri: String,
    /// The address contacted (the last one when DNS offered several).
    pub server: Option<SocketAddr>,
    /// The transport used (chosen by DNS with AUTO).
    pub transport: Option<FlowKind>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// True when the endpoint registered (200 OK).
    pub registered: bool,
    /// The final SIP status code of the registration (408 for a timeout).
    pub final_code: Option<u16>,
    /// What to do about a failure.
    pub hint: Option<String>,
    /// Every message sent and received, in order.
    pub trace: Vec<TraceEntry>,
}

fn step(
    name: &'static str,
    status: StepStatus,
    elapsed: Duration,
    detail: impl Into<String>,
) -> Step {
    Step {
        name,
        status,
        elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        detail: detail.into(),
    }
}

/// The registration URI exactly as the seed page builds it: `sip:DOMAIN:PORT;transport=T`.
pub fn registration_uri(domain: &str, port: u16, transport: FlowKind) -> String {
    let host = match domain.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => format!("[{a}]"),
        _ => domain.to_owned(),
    };
    format!(
        "sip:{host}:{port};transport={}",
        transport.via_token().to_ascii_lowercase()
    )
}

/// Runs the check with the system's DNS and the request's transport; never panics on what
/// the server sends.
pub async fn run_check(req: CheckRequest) -> CheckReport {
    run_check_with(req, CheckDns::default()).await
}

/// Runs the check, finding the server as `dns` says (see [`run_check_with`]), with System
/// TLS verification and no client certificate; never panics on what the server sends.
pub async fn run_check_with(req: CheckRequest, dns: CheckDns) -> CheckReport {
    run_check_tls(req, dns, &ClientSettings::default()).await
}

/// What one attempt against one address ended with.
struct Attempt {
    /// Steps `transport`, `register`, `auth` (or fewer, then padded with skipped ones).
    steps: Vec<Step>,
    registered: bool,
    final_code: Option<u16>,
    hint: Option<String>,
    /// Set when RFC 3263 §4.3 says "try the next target".
    failover: Option<Failure>,
}

const NO_RECORDS_HINT: &str =
    "the domain does not resolve: check its spelling and its A/AAAA records";

/// Runs the check, finding the server as `dns` says and speaking TLS (when the transport is
/// TLS, or DNS picks it) with `tls`; never panics on what the server sends.
///
/// A TLS flow adds the step `tls` (the handshake, timed on its own) between `transport` (the
/// TCP connection) and `register`; a TLS failure says in words what is wrong with which
/// certificate, and the hint what to do. SNI and the name verified are the request's domain.
///
/// With AUTO (or a custom DNS server), the targets come from the RFC 3263 planner of
/// `sip-proto` through hickory-resolver; a target that fails at the transport, answers 503 or
/// never answers makes the check move on to the next one (RFC 3263 §4.3), and each DNS answer
/// and each failover is a note in the trace.
pub async fn run_check_tls(req: CheckRequest, dns: CheckDns, tls: &ClientSettings) -> CheckReport {
    run_check_ws(req, dns, tls, "/").await
}

/// [`run_check_tls`] with the WebSocket path for WS/WSS flows (RFC 7118; `/` by default).
/// WS and WSS add the step `websocket` (the HTTP upgrade with `Sec-WebSocket-Protocol: sip`)
/// after `transport` (and `tls` for WSS).
pub async fn run_check_ws(
    req: CheckRequest,
    dns: CheckDns,
    tls: &ClientSettings,
    ws_path: &str,
) -> CheckReport {
    let default_port = transport_of(req.transport).default_port().unwrap_or(5060);
    let port = req.port.unwrap_or(default_port);
    let reg_uri = if dns.auto {
        // RFC 3263 §4: no port and no transport in the URI, or DNS discovery is switched off.
        let host = match req.domain.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => format!("[{a}]"),
            _ => req.domain.clone(),
        };
        match req.port {
            Some(p) => format!("sip:{host}:{p}"),
            None => format!("sip:{host}"),
        }
    } else {
        registration_uri(&req.domain, port, req.transport)
    };
    let mut report = CheckReport {
        registration_uri: reg_uri.clone(),
        server: None,
        transport: None,
        steps: Vec::new(),
        registered: false,
        final_code: None,
        hint: None,
        trace: Vec::new(),
    };
    let start = Instant::now();
    let skip_rest = |report: &mut CheckReport, from: usize| {
        for name in ["dns", "transport", "register", "auth"]
            .into_iter()
            .skip(from)
        {
            report.steps.push(step(
                name,
                StepStatus::Skipped,
                Duration::ZERO,
                "not reached",
            ));
        }
    };

    // 1. DNS.
    let t = Instant::now();
    let literal = req.domain.trim_matches(['[', ']']).parse::<IpAddr>().ok();
    let mut discovery = None;
    let first: Target = match (literal, dns.auto || dns.server.is_some()) {
        (Some(ip), false) => {
            report.steps.push(step(
                "dns",
                StepStatus::Ok,
                Duration::ZERO,
                format!("{ip} is an IP address: no lookup needed"),
            ));
            Target {
                transport: transport_of(req.transport),
                address: ip,
                port,
            }
        }
        (None, false) => match tokio::net::lookup_host((req.domain.as_str(), port)).await {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => {
                    report.steps.push(step(
                        "dns",
                        StepStatus::Ok,
                        t.elapsed(),
                        format!("{} resolved to {}", req.domain, a.ip()),
                    ));
                    Target {
                        transport: transport_of(req.transport),
                        address: a.ip(),
                        port,
                    }
                }
                None => {
                    report.steps.push(step(
                        "dns",
                        StepStatus::Failed,
                        t.elapsed(),
                        format!("{} has no address records", req.domain),
                    ));
                    report.hint = Some(NO_RECORDS_HINT.into());
                    skip_rest(&mut report, 1);
                    return report;
                }
            },
            Err(e) => {
                report.steps.push(step(
                    "dns",
                    StepStatus::Failed,
                    t.elapsed(),
                    format!("{} did not resolve: {e}", req.domain),
                ));
                report.hint = Some(NO_RECORDS_HINT.into());
                skip_rest(&mut report, 1);
                return report;
            }
        },
        (_, true) => {
            let resolver = match Dns::new(dns.server) {
                Ok(r) => r,
                Err(e) => {
                    report
                        .steps
                        .push(step("dns", StepStatus::Failed, t.elapsed(), e.to_string()));
                    report.hint = Some("fix the DNS server setting (address:port)".into());
                    skip_rest(&mut report, 1);
                    return report;
                }
            };
            let host = sip_proto::target::Host::parse(&req.domain);
            let dest = host.map(|host| Destination {
                host,
                port: if dns.auto { req.port } else { Some(port) },
                transport: (!dns.auto).then(|| transport_of(req.transport)),
                sips: false,
            });
            let d = match dest
                .map_err(|e| e.to_string())
                .and_then(|d| Discovery::new(d, resolver, req.seed).map_err(|e| e.to_string()))
            {
                Ok(d) => d,
                Err(e) => {
                    report.steps.push(step(
                        "dns",
                        StepStatus::Failed,
                        Duration::ZERO,
                        format!("`{}`: {e}", req.domain),
                    ));
                    report.hint = Some("check the domain: a host name or an IP address".into());
                    skip_rest(&mut report, 1);
                    return report;
                }
            };
            let d = discovery.insert(d);
            let next = d.next_target().await;
            let asked: Vec<String> = d.log().iter().map(|e| e.to_string()).collect();
            for line in &asked {
                report
                    .trace
                    .push(TraceEntry::note(format!("DNS {line}"), start.elapsed()));
            }
            let via = match dns.server {
                Some(s) => format!(" (DNS server {s})"),
                None => String::new(),
            };
            match next {
                Some(target) => {
                    let how = if asked.is_empty() {
                        String::from("no lookup needed")
                    } else {
                        asked.join("; ")
                    };
                    report.steps.push(step(
                        "dns",
                        StepStatus::Ok,
                        t.elapsed(),
                        format!(
                            "{how} ⇒ {} {}{via}",
                            target.transport,
                            SocketAddr::new(target.address, target.port)
                        ),
                    ));
                    target
                }
                None => {
                    report.steps.push(step(
                        "dns",
                        StepStatus::Failed,
                        t.elapsed(),
                        format!(
                            "{} has no NAPTR, SRV or address records: {}{via}",
                            req.domain,
                            asked.join("; ")
                        ),
                    ));
                    report.hint = Some(NO_RECORDS_HINT.into());
                    skip_rest(&mut report, 1);
                    return report;
                }
            }
        }
    };

    // 2–4. Transport, REGISTER, authentication; the next target on an RFC 3263 §4.3 failure.
    let mut target = first;
    let mut unsupported = Vec::new();
    loop {
        let attempt = match flow_kind(target.transport) {
            Some(kind) => {
                let addr = SocketAddr::new(target.address, target.port);
                report.server = Some(addr);
                report.transport = Some(kind);
                let remaining = req.timeout.saturating_sub(start.elapsed());
                Some(
                    attempt(
                        &req,
                        &reg_uri,
                        kind,
                        addr,
                        remaining,
                        start,
                        (tls, ws_path),
                        &mut report.trace,
                    )
                    .await,
                )
            }
            None => {
                let what = format!(
                    "{} {} skipped: this build checks udp, tcp, tls, ws and wss",
                    target.transport,
                    SocketAddr::new(target.address, target.port)
                );
                report
                    .trace
                    .push(TraceEntry::note(what.clone(), start.elapsed()));
                unsupported.push(what);
                None
            }
        };
        let next = match (&mut discovery, attempt.as_ref().and_then(|a| a.failover)) {
            (Some(d), Some(failure)) => {
                d.handle_failure(target, failure);
                d.next_target().await
            }
            (Some(d), None) if attempt.is_none() => d.next_target().await,
            _ => None,
        };
        match (attempt, next) {
            (Some(a), Some(n)) if start.elapsed() < req.timeout => {
                report.trace.push(TraceEntry::note(
                    format!(
                        "{} {} failed ({}): trying {} {} (RFC 3263 §4.3)",
                        target.transport,
                        SocketAddr::new(target.address, target.port),
                        a.steps
                            .iter()
                            .rev()
                            .find(|s| s.status == StepStatus::Failed)
                            .map_or("no answer", |s| s.detail.as_str()),
                        n.transport,
                        SocketAddr::new(n.address, n.port)
                    ),
                    start.elapsed(),
                ));
                target = n;
            }
            (None, Some(n)) => target = n,
            (Some(a), _) => {
                report.steps.extend(a.steps);
                report.registered = a.registered;
                report.final_code = a.final_code;
                report.hint = a.hint;
                break;
            }
            (None, None) => {
                report.steps.push(step(
                    "transport",
                    StepStatus::Failed,
                    Duration::ZERO,
                    format!("no target this build can use: {}", unsupported.join("; ")),
                ));
                report.hint = Some(
                    "DNS offers only transports this build cannot check: choose a transport explicitly"
                        .into(),
                );
                skip_rest(&mut report, 2);
                break;
            }
        }
    }
    // The outbound proxy carries the calls, not the registration: probed on its own.
    if let Some(proxy) = &req.proxy {
        let user = req
            .extension
            .as_deref()
            .or(req.credentials.as_ref().map(|c| c.username.as_str()))
            .unwrap_or("sipmeter");
        let probe = crate::proxyprobe::ProxyProbe {
            proxy,
            kind: report.transport.unwrap_or(req.transport),
            tls,
            ws_path,
            user,
            domain: &req.domain,
            server_name: None,
            seed: req.seed,
            timeout: req
                .timeout
                .saturating_sub(start.elapsed())
                .max(Duration::from_secs(5))
                .min(Duration::from_secs(10)),
        };
        let (s, hint) =
            crate::proxyprobe::probe_located(&probe, dns.server, start, &mut report.trace).await;
        if report.hint.is_none() {
            report.hint = hint;
        }
        report.steps.push(s);
    }
    report
}

/// One attempt: transport, REGISTER, authentication against `addr`; the trace goes to `trace`.
#[allow(clippy::too_many_arguments)] // reason: a private helper of run_check sharing its locals
async fn attempt(
    req: &CheckRequest,
    reg_uri: &str,
    kind: FlowKind,
    addr: SocketAddr,
    limit: Duration,
    start: Instant,
    (tls, ws_path): (&ClientSettings, &str),
    trace: &mut Vec<TraceEntry>,
) -> Attempt {
    let mut out = Attempt {
        steps: Vec::new(),
        registered: false,
        final_code: None,
        hint: None,
        failover: None,
    };
    let names: &[&'static str] = match kind {
        FlowKind::Udp | FlowKind::Tcp => &["transport", "register", "auth"],
        FlowKind::Tls => &["transport", "tls", "register", "auth"],
        FlowKind::Ws => &["transport", "websocket", "register", "auth"],
        FlowKind::Wss => &["transport", "tls", "websocket", "register", "auth"],
    };
    let skip_rest = |out: &mut Attempt, from: usize| {
        for &name in names.iter().skip(from) {
            out.steps.push(step(
                name,
                StepStatus::Skipped,
                Duration::ZERO,
                "not reached",
            ));
        }
    };

    // 2. Transport (and the TLS handshake and WebSocket upgrade, each timed on its own).
    let unreachable_hint = "the server is unreachable on this transport and port: check the address, port, transport and firewall";
    let t = Instant::now();
    let tls_setup = if kind.secure() {
        match tls.config().and_then(|config| {
            sip_net::tls::server_name(&req.domain)
                .map(|name| (config, name, tls.identity.is_some()))
        }) {
            Ok(x) => Some(x),
            Err(e) => {
                out.steps.push(step(
                    "transport",
                    StepStatus::Failed,
                    Duration::ZERO,
                    format!("TLS settings: {e}"),
                ));
                out.hint = Some(
                    "fix the TLS settings: the CA certificate, client certificate and key must be PEM files"
                        .into(),
                );
                skip_rest(&mut out, 1);
                return out;
            }
        }
    } else {
        None
    };
    let tls_detail = |n: &sip_net::tls::Negotiated| {
        format!(
            "{} {} with {}; server certificate {} (verification: {}{})",
            n.version,
            n.cipher_suite,
            req.domain,
            n.server_fingerprint
                .as_deref()
                .map_or_else(|| "?".to_owned(), |f| format!("SHA-256 {f}")),
            tls.verify.name(),
            if tls.identity.is_some() {
                "; client certificate sent"
            } else {
                ""
            }
        )
    };
    let tcp_ok = |d: Duration| {
        step(
            "transport",
            StepStatus::Ok,
            d,
            format!("TCP connected to {addr}"),
        )
    };
    let connected = match (kind, tls_setup) {
        (FlowKind::Tls, Some((config, name, cert))) => {
            Flow::connect_tls(addr, Duration::from_secs(5), config, name, cert)
                .await
                .map(|(flow, c)| {
                    let detail = tls_detail(&c.negotiated);
                    trace.push(TraceEntry::note(
                        format!("TLS handshake done with {addr}: {detail}"),
                        start.elapsed(),
                    ));
                    out.steps.push(tcp_ok(c.tcp));
                    out.steps
                        .push(step("tls", StepStatus::Ok, c.handshake, detail));
                    flow
                })
        }
        (FlowKind::Ws | FlowKind::Wss, setup) => {
            let host = match (req.domain.parse::<IpAddr>(), req.port) {
                (Ok(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
                (_, Some(p)) => format!("{}:{p}", req.domain),
                (Ok(IpAddr::V6(a)), None) => format!("[{a}]"),
                (_, None) => req.domain.clone(),
            };
            let target = WsTarget {
                host,
                path: ws_path.to_owned(),
            };
            Flow::connect_ws(addr, Duration::from_secs(5), setup, &target)
                .await
                .map(|(flow, c)| {
                    out.steps.push(tcp_ok(c.tcp));
                    if let Some((d, n)) = &c.tls {
                        let detail = tls_detail(n);
                        trace.push(TraceEntry::note(
                            format!("TLS handshake done with {addr}: {detail}"),
                            start.elapsed(),
                        ));
                        out.steps.push(step("tls", StepStatus::Ok, *d, detail));
                    }
                    let detail = format!(
                        "HTTP upgrade to WebSocket at {}://{}{} with subprotocol sip (RFC 7118)",
                        if kind == FlowKind::Wss { "wss" } else { "ws" },
                        target.host,
                        target.path
                    );
                    trace.push(TraceEntry::note(detail.clone(), start.elapsed()));
                    out.steps
                        .push(step("websocket", StepStatus::Ok, c.upgrade, detail));
                    flow
                })
        }
        _ => Flow::connect(kind, addr, Duration::from_secs(5))
            .await
            .inspect(|_| {
                let what = match kind {
                    FlowKind::Udp => {
                        format!("UDP socket ready towards {addr} (UDP has no handshake)")
                    }
                    _ => format!("TCP connected to {addr}"),
                };
                out.steps
                    .push(step("transport", StepStatus::Ok, t.elapsed(), what));
            }),
    };
    let mut flow = match connected {
        Ok(f) => f,
        Err(FlowError::TlsHandshake(d, tcp)) => {
            out.steps.push(tcp_ok(tcp));
            out.steps.push(step(
                "tls",
                StepStatus::Failed,
                t.elapsed().saturating_sub(tcp),
                d.problem.clone(),
            ));
            trace.push(TraceEntry::note(
                format!("TLS handshake with {addr} failed: {}", d.problem),
                start.elapsed(),
            ));
            out.hint = Some(d.hint);
            out.failover = Some(Failure::TransportError);
            skip_rest(&mut out, 2);
            return out;
        }
        Err(FlowError::WebSocketUpgrade {
            diagnosis,
            tcp,
            tls: tls_done,
        }) => {
            out.steps.push(tcp_ok(tcp));
            let mut before = tcp;
            if let Some((d, n)) = &tls_done {
                out.steps
                    .push(step("tls", StepStatus::Ok, *d, tls_detail(n)));
                before += *d;
            }
            let done = out.steps.len();
            out.steps.push(step(
                "websocket",
                StepStatus::Failed,
                t.elapsed().saturating_sub(before),
                diagnosis.problem.clone(),
            ));
            trace.push(TraceEntry::note(
                format!(
                    "WebSocket upgrade with {addr} failed: {}",
                    diagnosis.problem
                ),
                start.elapsed(),
            ));
            out.hint = Some(diagnosis.hint);
            out.failover = Some(Failure::TransportError);
            skip_rest(&mut out, done + 1);
            return out;
        }
        Err(e) => {
            out.steps.push(step(
                "transport",
                StepStatus::Failed,
                t.elapsed(),
                e.to_string(),
            ));
            out.hint = Some(unreachable_hint.into());
            out.failover = Some(Failure::TransportError);
            skip_rest(&mut out, 1);
            return out;
        }
    };
    let local = flow
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // A wildcard bind cannot go in Via/Contact: use the address the server sees us from.
    let local_ip = if local.ip().is_unspecified() {
        guess_local_ip(addr)
    } else {
        local.ip()
    };

    // 3 and 4. REGISTER, answered, authenticated.
    let user = req
        .extension
        .clone()
        .or_else(|| req.credentials.as_ref().map(|c| c.username.clone()))
        .unwrap_or_else(|| "sipmeter".into());
    let config = UaConfig {
        user,
        domain: req.domain.clone(),
        registrar_uri: Uri::parse(reg_uri)
            .unwrap_or_else(|_| Uri::Sip(SipUri::new(Host::Name(req.domain.clone())))),
        outbound_proxy: None,
        credentials: req.credentials.clone(),
        local_host: Host::from(local_ip),
        local_port: local.port(),
        transport: kind.via_token().into(),
        reliable: kind.reliable(),
        expires: req.expires,
        timers: TimerConfig::default(),
        user_agent: concat!("sipmeter/", env!("CARGO_PKG_VERSION")).into(),
        seed: req.seed,
        use_100rel: false,
        session_timer: None,
        codecs: None,
    };
    let mut ua = UserAgent::new(config);
    let begin = Instant::now();
    // The wall clock at `start`, so trace entries of every attempt share one time base.
    let wall = SystemTime::now()
        .checked_sub(begin.saturating_duration_since(start))
        .unwrap_or_else(SystemTime::now);
    let deadline = begin + limit;
    ua.register(begin);
    let mut first_answer: Option<(Duration, u16)> = None;
    let mut challenged: Option<u16> = None;
    let mut transport_error = false;
    let mut tls_failure = None;
    let outcome: Option<UaEvent>;
    let trace_entry = |dir: Direction, bytes: &Bytes, at: Instant, retrans: bool| {
        TraceEntry::new(
            dir,
            kind,
            local,
            addr,
            bytes.clone(),
            at - start,
            wall + (at - start),
            retrans,
        )
    };

    'run: loop {
        while let Some(o) = ua.poll_transmit() {
            trace.push(trace_entry(
                Direction::Sent,
                &o.bytes,
                Instant::now(),
                o.retransmission,
            ));
            // The check talks to one server: every destination is the registrar.
            if let Err(e) = flow.send(&o.bytes).await {
                trace.push(TraceEntry::note(
                    format!("send failed: {e}"),
                    start.elapsed(),
                ));
                transport_error = true;
                ua.handle_transport_error(Instant::now());
            }
        }
        while let Some(ev) = ua.poll_event() {
            match ev {
                UaEvent::Registered { .. } | UaEvent::RegistrationFailed { .. } => {
                    outcome = Some(ev);
                    break 'run;
                }
                UaEvent::Retransmitted { method, count } => {
                    trace.push(TraceEntry::note(
                        format!("{method} retransmitted ({count})"),
                        start.elapsed(),
                    ));
                }
                UaEvent::TimerFired { timer, method } => {
                    trace.push(TraceEntry::note(
                        format!("Timer {timer:?} fired ({method})"),
                        start.elapsed(),
                    ));
                }
                _ => {}
            }
        }
        let wake = ua.poll_timeout().unwrap_or(deadline).min(deadline);
        tokio::select! {
            r = flow.recv() => match r {
                Ok(bytes) => {
                    let now = Instant::now();
                    trace.push(trace_entry(Direction::Received, &bytes, now, false));
                    match Message::parse_bytes(bytes) {
                        Ok(msg) => {
                            if let Some(code) = msg.status() {
                                if first_answer.is_none() {
                                    first_answer = Some((now - begin, code));
                                }
                                if matches!(code, 401 | 407) {
                                    challenged = Some(code);
                                }
                            }
                            ua.handle_message(now, msg, addr);
                        }
                        Err(e) => trace.push(TraceEntry::note(format!("malformed message from the server: {e}"), start.elapsed())),
                    }
                }
                Err(e) => {
                    trace.push(TraceEntry::note(format!("receive failed: {e}"), start.elapsed()));
                    transport_error = true;
                    // ICMP port unreachable on UDP, or a closed TCP connection.
                    ua.handle_transport_error(Instant::now());
                    if let FlowError::Tls(d) = e {
                        tls_failure = Some(d);
                        outcome = Some(UaEvent::RegistrationFailed { code: 503, reason: "the TLS connection failed".into() });
                        break 'run;
                    }
                    if kind.reliable() {
                        // A dead stream cannot recover within the check.
                        outcome = Some(UaEvent::RegistrationFailed { code: 503, reason: e.to_string() });
                        break 'run;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let now = Instant::now();
                if now >= deadline {
                    outcome = Some(UaEvent::RegistrationFailed { code: 408, reason: "no final answer before the check's time limit".into() });
                    break 'run;
                }
                ua.handle_timeout(now);
            }
        }
    }

    let elapsed = begin.elapsed();
    match first_answer {
        Some((d, code)) => out.steps.push(step(
            "register",
            StepStatus::Ok,
            d,
            format!("the server answered REGISTER with {code}"),
        )),
        None => out.steps.push(step(
            "register",
            StepStatus::Failed,
            elapsed,
            if transport_error {
                format!("no answer to REGISTER: {addr} refused it (ICMP unreachable or connection closed)")
            } else {
                "no answer to REGISTER".to_owned()
            },
        )),
    }
    match outcome {
        Some(UaEvent::Registered { expires, .. }) => {
            out.registered = true;
            out.final_code = Some(200);
            let how = match challenged {
                Some(c) => format!("200 OK after a {c} challenge; registered for {expires} s"),
                None => format!("200 OK without a challenge; registered for {expires} s"),
            };
            out.steps.push(step("auth", StepStatus::Ok, elapsed, how));
            // Leave no binding behind: un-REGISTER, best effort.
            ua.unregister(Instant::now());
            unregister(&mut ua, &mut flow, trace, start, wall, local, addr, kind).await;
        }
        Some(UaEvent::RegistrationFailed { code, reason }) => {
            out.final_code = Some(code);
            let status = if first_answer.is_some() {
                StepStatus::Failed
            } else {
                StepStatus::Skipped
            };
            out.steps
                .push(step("auth", status, elapsed, format!("{code} {reason}")));
            out.hint = Some(hint_for(code).to_owned());
            // RFC 3263 §4.3: a transport error, a 503 or a timeout means "next target".
            out.failover = match (first_answer, code) {
                (_, 503) => Some(Failure::ServiceUnavailable),
                (None, _) if transport_error => Some(Failure::TransportError),
                (None, 408) => Some(Failure::Timeout),
                _ => None,
            };
        }
        _ => {}
    }
    if let Some(d) = tls_failure {
        // The server refused the TLS session after our side of the handshake (TLS 1.3 sends
        // a refused client certificate's alert then): the handshake step failed, not REGISTER.
        if first_answer.is_none() {
            for s in &mut out.steps {
                match s.name {
                    "tls" => {
                        s.status = StepStatus::Failed;
                        s.detail = d.problem.clone();
                    }
                    "register" | "auth" => {
                        s.status = StepStatus::Skipped;
                        s.detail = "not reached".into();
                    }
                    _ => {}
                }
            }
            out.final_code = None;
        }
        out.hint = Some(d.hint);
    }
    out
}

#[allow(clippy::too_many_arguments)] // reason: a private helper of run_check sharing its locals
async fn unregister(
    ua: &mut UserAgent,
    flow: &mut Flow,
    trace: &mut Vec<TraceEntry>,
    start: Instant,
    wall: SystemTime,
    local: SocketAddr,
    addr: SocketAddr,
    kind: FlowKind,
) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        while let Some(o) = ua.poll_transmit() {
            let at = Instant::now() - start;
            trace.push(TraceEntry::new(
                Direction::Sent,
                kind,
                local,
                addr,
                o.bytes.clone(),
                at,
                wall + at,
                o.retransmission,
            ));
            if flow.send(&o.bytes).await.is_err() {
                return;
            }
        }
        while let Some(ev) = ua.poll_event() {
            if matches!(ev, UaEvent::Unregistered { .. }) {
                return;
            }
        }
        let wake = ua.poll_timeout().unwrap_or(deadline).min(deadline);
        tokio::select! {
            r = flow.recv() => match r {
                Ok(bytes) => {
                    let at = Instant::now() - start;
                    trace.push(TraceEntry::new(Direction::Received, kind, local, addr, bytes.clone(), at, wall + at, false));
                    if let Ok(msg) = Message::parse_bytes(bytes) {
                        ua.handle_message(Instant::now(), msg, addr);
                    }
                }
                Err(_) => return,
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                if Instant::now() >= deadline {
                    return;
                }
                ua.handle_timeout(Instant::now());
            }
        }
    }
}

/// The local address the kernel would use towards `remote` (a connected UDP socket's view).
pub(crate) fn guess_local_ip(remote: SocketAddr) -> IpAddr {
    let any: SocketAddr = if remote.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect(remote)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(any.ip())
}

/// The transport of a stored registrar, AUTO included (the platform's setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrarTransport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SIP over WebSocket.
    Ws,
    /// SIP over secure WebSocket.
    Wss,
    /// DNS discovery (RFC 3263: NAPTR → SRV → A/AAAA).
    Auto,
}

/// How the server certificate is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrarVerify {
    /// Against the bundled Mozilla roots.
    System,
    /// Against the registrar's CA certificate only.
    Custom,
    /// Not at all (labs only).
    Skip,
}

/// The account a check registers with, in clear.
#[derive(Clone)]
pub struct CheckAccount {
    /// Auth user name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Realm, when fixed.
    pub realm: Option<String>,
    /// AOR user when it differs from the auth user.
    pub extension: Option<String>,
}

impl std::fmt::Debug for CheckAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckAccount")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .field("extension", &self.extension)
            .finish()
    }
}

/// A registrar as the platform stores it, in plain data: what the server hands the engine for
/// "Check connectivity" (the server reaches protocol code only through this API).
#[derive(Debug, Clone)]
pub struct RegistrarCheck {
    /// Host name or IP literal.
    pub domain: String,
    /// Port (None: the transport's default, or DNS with AUTO).
    pub port: Option<u16>,
    /// Transport, AUTO included.
    pub transport: RegistrarTransport,
    /// Outbound proxy `host[:port]`: noted at the head of the trace; the check registers
    /// with the registrar directly (the proxy is for calls).
    pub proxy: Option<String>,
    /// The account, or none for a registrar that accepts anyone.
    pub account: Option<CheckAccount>,
    /// Server certificate verification (TLS/WSS/AUTO).
    pub verify: RegistrarVerify,
    /// CA certificate(s), PEM (for `Custom`).
    pub ca_pem: Option<String>,
    /// Client certificate, PEM (mutual TLS).
    pub client_cert_pem: Option<String>,
    /// Client private key, PEM, in clear.
    pub client_key_pem: Option<String>,
    /// Overall limit of the check.
    pub timeout: Duration,
    /// Seed for tags, branches, Call-IDs and DNS choices.
    pub seed: u64,
}

/// Why a check could not start (the check itself never fails: its report says what went wrong).
#[derive(Debug, thiserror::Error)]
pub enum CheckSetupError {
    /// The TLS material does not parse.
    #[error("{0}")]
    Tls(String),
    /// Custom verification without a CA certificate.
    #[error("verification mode Custom needs a CA certificate")]
    MissingCa,
    /// The loopback built-in registrar could not start.
    #[error("the built-in registrar cannot start: {0}")]
    Builtin(String),
}

/// Runs the checklist against a stored registrar's settings (see [`run_check_ws`]).
pub async fn check_registrar(c: RegistrarCheck) -> Result<CheckReport, CheckSetupError> {
    use sip_net::tls::{Identity, Verify, certificates_from_pem};
    let verify = match c.verify {
        RegistrarVerify::System => Verify::System,
        RegistrarVerify::Skip => Verify::InsecureSkipVerification,
        RegistrarVerify::Custom => {
            let pem = c.ca_pem.as_deref().ok_or(CheckSetupError::MissingCa)?;
            Verify::Custom(
                certificates_from_pem(pem.as_bytes(), "CA certificate")
                    .map_err(|e| CheckSetupError::Tls(e.to_string()))?,
            )
        }
    };
    let identity = match (&c.client_cert_pem, &c.client_key_pem) {
        (Some(cert), Some(key)) => Some(
            Identity::from_pem(cert.as_bytes(), key.as_bytes())
                .map_err(|e| CheckSetupError::Tls(format!("client certificate: {e}")))?,
        ),
        _ => None,
    };
    let tls = ClientSettings { verify, identity };
    let (transport, auto) = match c.transport {
        RegistrarTransport::Udp => (FlowKind::Udp, false),
        RegistrarTransport::Tcp => (FlowKind::Tcp, false),
        RegistrarTransport::Tls => (FlowKind::Tls, false),
        RegistrarTransport::Ws => (FlowKind::Ws, false),
        RegistrarTransport::Wss => (FlowKind::Wss, false),
        RegistrarTransport::Auto => (FlowKind::Udp, true),
    };
    let extension = c.account.as_ref().and_then(|a| a.extension.clone());
    let credentials = c.account.map(|a| Credentials {
        username: a.username,
        password: sip_proto::auth::Secret::new(a.password),
        realm: a.realm,
    });
    let req = CheckRequest {
        domain: c.domain,
        port: c.port,
        transport,
        proxy: c.proxy,
        credentials,
        extension,
        expires: 60,
        timeout: c.timeout,
        seed: c.seed,
    };
    let dns = CheckDns { auto, server: None };
    let note = req.proxy.as_ref().map(|p| {
        format!("outbound proxy {p} configured: used for calls; REGISTER goes to the registrar")
    });
    let mut report = run_check_ws(req, dns, &tls, "/").await;
    if let Some(note) = note {
        report
            .trace
            .insert(0, TraceEntry::note(note, Duration::ZERO));
    }
    Ok(report)
}

/// Checks the built-in registrar: starts one on loopback UDP (port 0) exactly as a run does,
/// with ephemeral credentials keyed by `secret`, registers an endpoint with freshly issued
/// credentials, and stops it.
pub async fn check_builtin(
    secret: Vec<u8>,
    timeout: Duration,
    seed: u64,
) -> Result<CheckReport, CheckSetupError> {
    use registrar::{AuthMode, RegistrarConfig};
    let config = RegistrarConfig {
        domain: "sipmeter.builtin".to_owned(),
        host: Host::V4(std::net::Ipv4Addr::LOCALHOST),
        port: 0,
        transport: "UDP".into(),
        auth: AuthMode::Ephemeral,
        secret: secret.clone(),
        min_expires: 10,
        max_expires: 3600,
    };
    let reg = crate::builtin::BuiltinRegistrar::start_udp(([127, 0, 0, 1], 0).into(), config)
        .await
        .map_err(|e| CheckSetupError::Builtin(e.to_string()))?;
    let expiry = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 600;
    let (username, password) = sip_auth::ephemeral::issue(&secret, "check", expiry);
    let req = CheckRequest {
        domain: "127.0.0.1".into(),
        port: Some(reg.addr().port()),
        transport: FlowKind::Udp,
        proxy: None,
        credentials: Some(Credentials {
            username,
            password: sip_proto::auth::Secret::new(password),
            realm: None,
        }),
        extension: None,
        expires: 60,
        timeout,
        seed,
    };
    let report = run_check(req).await;
    reg.stop().await;
    Ok(report)
}
