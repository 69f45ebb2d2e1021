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

use crate::flow::{Flow, FlowKind};
use crate::hints::hint_for;
use crate::trace::{Direction, TraceEntry};

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// The registrar's domain: a host name or an IP literal.
    pub domain: String,
    /// The port; `None` uses the transport's default (5060).
    pub port: Option<u16>,
    /// The transport.
    pub transport: FlowKind,
    /// The outbound proxy (`host[:port]`), used for INVITEs only; recorded in the report.
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
    /// `dns`, `transport`, `register`, `auth`.
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
    /// The address contacted.
    pub server: Option<SocketAddr>,
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

/// Runs the check; never panics on what the server sends.
pub async fn run_check(req: CheckRequest) -> CheckReport {
    let port = req.port.unwrap_or(5060);
    let reg_uri = registration_uri(&req.domain, port, req.transport);
    let mut report = CheckReport {
        registration_uri: reg_uri.clone(),
        server: None,
        steps: Vec::new(),
        registered: false,
        final_code: None,
        hint: None,
        trace: Vec::new(),
    };
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
    let addr = match req.domain.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => {
            report.steps.push(step(
                "dns",
                StepStatus::Ok,
                Duration::ZERO,
                format!("{ip} is an IP address: no lookup needed"),
            ));
            SocketAddr::new(ip, port)
        }
        Err(_) => match tokio::net::lookup_host((req.domain.as_str(), port)).await {
            Ok(mut addrs) => {
                match addrs.next() {
                    Some(a) => {
                        report.steps.push(step(
                            "dns",
                            StepStatus::Ok,
                            t.elapsed(),
                            format!("{} resolved to {}", req.domain, a.ip()),
                        ));
                        a
                    }
                    None => {
                        report.steps.push(step(
                            "dns",
                            StepStatus::Failed,
                            t.elapsed(),
                            format!("{} has no address records", req.domain),
                        ));
                        report.hint = Some("the domain does not resolve: check its spelling and its A/AAAA records".into());
                        skip_rest(&mut report, 1);
                        return report;
                    }
                }
            }
            Err(e) => {
                report.steps.push(step(
                    "dns",
                    StepStatus::Failed,
                    t.elapsed(),
                    format!("{} did not resolve: {e}", req.domain),
                ));
                report.hint = Some(
                    "the domain does not resolve: check its spelling and its A/AAAA records".into(),
                );
                skip_rest(&mut report, 1);
                return report;
            }
        },
    };
    report.server = Some(addr);

    // 2. Transport.
    let t = Instant::now();
    let mut flow = match Flow::connect(req.transport, addr, Duration::from_secs(5)).await {
        Ok(f) => {
            let what = match req.transport {
                FlowKind::Udp => format!("UDP socket ready towards {addr} (UDP has no handshake)"),
                FlowKind::Tcp => format!("TCP connected to {addr}"),
            };
            report
                .steps
                .push(step("transport", StepStatus::Ok, t.elapsed(), what));
            f
        }
        Err(e) => {
            report.steps.push(step(
                "transport",
                StepStatus::Failed,
                t.elapsed(),
                e.to_string(),
            ));
            report.hint = Some("the server is unreachable on this transport and port: check the address, port, transport and firewall".into());
            skip_rest(&mut report, 2);
            return report;
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
        registrar_uri: Uri::parse(&reg_uri)
            .unwrap_or_else(|_| Uri::Sip(SipUri::new(Host::Name(req.domain.clone())))),
        outbound_proxy: None,
        credentials: req.credentials.clone(),
        local_host: ip_host(local_ip),
        local_port: local.port(),
        transport: req.transport.via_token().into(),
        reliable: req.transport.reliable(),
        expires: req.expires,
        timers: TimerConfig::default(),
        user_agent: concat!("sipmeter/", env!("CARGO_PKG_VERSION")).into(),
        seed: req.seed,
        use_100rel: false,
    };
    let mut ua = UserAgent::new(config);
    let start = Instant::now();
    let wall = SystemTime::now();
    let deadline = start + req.timeout;
    ua.register(start);
    let mut first_answer: Option<(Duration, u16)> = None;
    let mut challenged: Option<u16> = None;
    let outcome: Option<UaEvent>;
    let trace_entry = |dir: Direction, bytes: &Bytes, at: Instant, retrans: bool| {
        TraceEntry::new(
            dir,
            req.transport,
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
            report.trace.push(trace_entry(
                Direction::Sent,
                &o.bytes,
                Instant::now(),
                o.retransmission,
            ));
            // The check talks to one server: every destination is the registrar.
            if let Err(e) = flow.send(&o.bytes).await {
                report.trace.push(TraceEntry::note(
                    format!("send failed: {e}"),
                    start.elapsed(),
                ));
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
                    report.trace.push(TraceEntry::note(
                        format!("{method} retransmitted ({count})"),
                        start.elapsed(),
                    ));
                }
                UaEvent::TimerFired { timer, method } => {
                    report.trace.push(TraceEntry::note(
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
                    report.trace.push(trace_entry(Direction::Received, &bytes, now, false));
                    match Message::parse_bytes(bytes) {
                        Ok(msg) => {
                            if let Some(code) = msg.status() {
                                if first_answer.is_none() {
                                    first_answer = Some((now - start, code));
                                }
                                if matches!(code, 401 | 407) {
                                    challenged = Some(code);
                                }
                            }
                            ua.handle_message(now, msg, addr);
                        }
                        Err(e) => report.trace.push(TraceEntry::note(format!("malformed message from the server: {e}"), start.elapsed())),
                    }
                }
                Err(e) => {
                    report.trace.push(TraceEntry::note(format!("receive failed: {e}"), start.elapsed()));
                    // ICMP port unreachable on UDP, or a closed TCP connection.
                    ua.handle_transport_error(Instant::now());
                    if matches!(req.transport, FlowKind::Tcp) {
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

    let elapsed = start.elapsed();
    match first_answer {
        Some((d, code)) => report.steps.push(step(
            "register",
            StepStatus::Ok,
            d,
            format!("the server answered REGISTER with {code}"),
        )),
        None => report.steps.push(step(
            "register",
            StepStatus::Failed,
            elapsed,
            "no answer to REGISTER",
        )),
    }
    match outcome {
        Some(UaEvent::Registered { expires, .. }) => {
            report.registered = true;
            report.final_code = Some(200);
            let how = match challenged {
                Some(c) => format!("200 OK after a {c} challenge; registered for {expires} s"),
                None => format!("200 OK without a challenge; registered for {expires} s"),
            };
            report
                .steps
                .push(step("auth", StepStatus::Ok, elapsed, how));
            // Leave no binding behind: un-REGISTER, best effort.
            ua.unregister(Instant::now());
            unregister(
                &mut ua,
                &mut flow,
                &mut report,
                start,
                wall,
                local,
                addr,
                req.transport,
            )
            .await;
        }
        Some(UaEvent::RegistrationFailed { code, reason }) => {
            report.final_code = Some(code);
            let status = if first_answer.is_some() {
                StepStatus::Failed
            } else {
                StepStatus::Skipped
            };
            report
                .steps
                .push(step("auth", status, elapsed, format!("{code} {reason}")));
            report.hint = Some(hint_for(code).to_owned());
        }
        _ => {}
    }
    report
}

#[allow(clippy::too_many_arguments)] // reason: a private helper of run_check sharing its locals
async fn unregister(
    ua: &mut UserAgent,
    flow: &mut Flow,
    report: &mut CheckReport,
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
            report.trace.push(TraceEntry::new(
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
                    report.trace.push(TraceEntry::new(Direction::Received, kind, local, addr, bytes.clone(), at, wall + at, false));
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

fn ip_host(ip: IpAddr) -> Host {
    match ip {
        IpAddr::V4(a) => Host::V4(a),
        IpAddr::V6(a) => Host::V6(a),
    }
}

/// The local address the kernel would use towards `remote` (a connected UDP socket's view).
fn guess_local_ip(remote: SocketAddr) -> IpAddr {
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
