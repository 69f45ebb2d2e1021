//! RFC 3263 server location, sans-IO: which DNS questions to ask, and from the answers the
//! ordered list of `(transport, address, port)` to try.
//!
//! # Driving the planner
//!
//! ```text
//! let mut p = Planner::new(destination, rng)?;
//! loop {
//!     if let Some(target) = p.next_target() {           // try it
//!         match send_to(target) {
//!             Ok(_) => break,
//!             Err(f) => { p.handle_failure(target, f); continue } // RFC 3263 §4.3: next one
//!         }
//!     }
//!     match p.poll_question() {
//!         Some(q) => { let a = dns(&q); p.handle_answer(&q, a)?; }  // one question at a time
//!         None => break,                                 // plan exhausted
//!     }
//! }
//! ```
//!
//! The planner asks one question at a time and only when it has no target left to offer, so
//! a registrar answering on its first SRV target costs no further lookups. [`plan_with`] runs
//! it to completion against a synchronous [`Resolver`] (tests, `sipmeter check`).
//!
//! # Choices
//!
//! - **IP literal**: no DNS at all (RFC 3263 §4.1, §4.2).
//! - **AAAA before A** for each host name: RFC 6724's default policy table prefers IPv6
//!   (precedence 40 over 35 for IPv4-mapped), which is what `getaddrinfo` does, so a test
//!   reaches the server the way a real phone on the same host would. [`Planner::prefer_ipv4`]
//!   reverses it for IPv4-only workers.
//! - **WS/WSS with a transport but no port**: no SRV (RFC 7118 defines NAPTR services
//!   `SIP+D2W`/`SIPS+D2W` but no SRV owner name is in common use), so A/AAAA with port 80/443.
//!   A NAPTR record for D2W still leads to the SRV name it carries.
//! - **AUTO with nothing published**: A/AAAA with UDP 5060 (TLS 5061 for sips), §4.1/§4.2.
//! - **DNS errors** (SERVFAIL, timeout) are treated like "no records" for NAPTR and SRV, so
//!   discovery falls through to the next step rather than failing.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;

use rand::Rng;

use crate::target::{Host, RegistrarConfig, Transport};

/// What to locate: the parts of a SIP URI that RFC 3263 §4 looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The URI's host (or its `maddr`).
    pub host: Host,
    /// The URI's explicit port.
    pub port: Option<u16>,
    /// The URI's `transport` parameter (`None` or [`Transport::Auto`]: discover it).
    pub transport: Option<Transport>,
    /// True for a `sips:` URI: only TLS-protected transports are acceptable (RFC 3263 §4.1);
    /// its `transport=tcp` means TLS over TCP (RFC 3261 §26.2.2), planned as [`Transport::Tls`].
    pub sips: bool,
}

impl Destination {
    /// Where REGISTER goes for a registrar configuration (AUTO becomes "discover"): the URI
    /// [`RegistrarConfig::registration_uri`] writes, so a fixed transport's default port is
    /// there and RFC 3263 §4.2 asks A/AAAA only, as for any URI with a port.
    pub fn from_registrar(config: &RegistrarConfig) -> Self {
        Self {
            host: config.domain().clone(),
            port: config.effective_port(),
            transport: Some(config.transport()).filter(|&t| t != Transport::Auto),
            sips: false,
        }
    }

    /// Where requests routed through the outbound proxy go: the same URI as
    /// [`RegistrarConfig::route_header`] (port defaulted per transport, so A/AAAA only).
    pub fn from_outbound_proxy(config: &RegistrarConfig) -> Option<Self> {
        let proxy = config.outbound_proxy()?;
        let transport = Some(config.transport()).filter(|&t| t != Transport::Auto);
        Some(Self {
            host: proxy.host.clone(),
            port: proxy.port.or(config.transport().default_port()),
            transport,
            sips: false,
        })
    }
}

/// A DNS record type the planner asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// NAPTR (RFC 3403).
    Naptr,
    /// SRV (RFC 2782).
    Srv,
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
}

/// One DNS question: an owner name and a record type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    /// The owner name, lower case, without the trailing dot.
    pub name: String,
    /// The record type.
    pub rtype: RecordType,
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.name, self.rtype)
    }
}

/// A NAPTR record (RFC 3403 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaptrRecord {
    /// Lower is tried first.
    pub order: u16,
    /// Among equal orders, lower is tried first.
    pub preference: u16,
    /// Flags; RFC 3263 §4.1 uses "s" (next lookup is SRV).
    pub flags: String,
    /// The service, e.g. `SIP+D2U`.
    pub services: String,
    /// The regexp; SIP uses the replacement instead (RFC 3263 §4.1).
    pub regexp: String,
    /// The SRV owner name to look up next.
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative weight among records of equal priority.
    pub weight: u16,
    /// The port.
    pub port: u16,
    /// The host name; "." means the service is decidedly not available.
    pub target: String,
}

/// The answer to one [`Question`], as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NAPTR records.
    Naptr(Vec<NaptrRecord>),
    /// SRV records.
    Srv(Vec<SrvRecord>),
    /// A or AAAA records.
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN or no records of this type.
    NoRecords,
    /// The lookup failed (SERVFAIL, timeout, …).
    Error,
}

/// A place to send the request to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The transport (never [`Transport::Auto`]).
    pub transport: Transport,
    /// The address.
    pub address: IpAddr,
    /// The port.
    pub port: u16,
}

/// Why the caller moved on from a target (RFC 3263 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The transport reported an error (ICMP unreachable, connection refused, TLS failure).
    TransportError,
    /// The server answered 503 Service Unavailable.
    ServiceUnavailable,
    /// The transaction timed out (Timer B or F).
    Timeout,
}

/// A misuse of the planner's API, or a destination RFC 3263 cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A sips URI with a transport that cannot carry TLS, e.g. UDP (RFC 3261 §26.2.2).
    #[error("sips requires tls or wss, not {0}")]
    InsecureTransportForSips(Transport),
    /// An answer to a question that was not asked (or was already answered).
    #[error("answer to a question that is not outstanding: {0}")]
    UnexpectedAnswer(Question),
    /// The answer's kind does not fit the question's record type.
    #[error("{0:?} answer does not fit the question {1}")]
    AnswerTypeMismatch(&'static str, Question),
}

/// One step of the plan still to do.
#[derive(Debug, Clone)]
enum Work {
    /// Ask NAPTR for the domain (AUTO).
    Naptr,
    /// Ask SRV for `name`; targets found use `transport`.
    Srv { transport: Transport, name: String },
    /// Ask A or AAAA for `name`; addresses found become targets.
    Address {
        transport: Transport,
        name: String,
        port: u16,
        rtype: RecordType,
    },
    /// Look up one host name's addresses, both families (expanded in preference order).
    Host {
        transport: Transport,
        name: String,
        port: u16,
    },
    /// If no SRV record was found at all, resolve the domain itself (RFC 3263 §4.2).
    FallbackIfNoSrv { transport: Transport, port: u16 },
}

/// The RFC 3263 state machine: questions out, answers in, targets out one at a time.
pub struct Planner<R> {
    domain: String,
    sips: bool,
    prefer_ipv4: bool,
    work: VecDeque<Work>,
    outstanding: Option<(Question, Work)>,
    ready: VecDeque<Target>,
    offered: Vec<Target>,
    failures: Vec<(Target, Failure)>,
    found_srv: bool,
    rng: R,
}

impl<R> fmt::Debug for Planner<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Planner")
            .field("domain", &self.domain)
            .field("sips", &self.sips)
            .field("work", &self.work)
            .field("outstanding", &self.outstanding)
            .field("ready", &self.ready)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// The NAPTR services we support, with their transport (RFC 3263 §4.1, RFC 7118 §5).
fn naptr_service(services: &str, sips: bool) -> Option<Transport> {
    let s = services.to_ascii_uppercase();
    let t = match s.as_str() {
        "SIP+D2U" => Transport::Udp,
        "SIP+D2T" => Transport::Tcp,
        "SIPS+D2T" => Transport::Tls,
        "SIP+D2W" => Transport::Ws,
        "SIPS+D2W" => Transport::Wss,
        _ => return None,
    };
    // RFC 3263 §4.1: for a SIPS URI, only SIPS services are acceptable.
    (!sips || t.is_secure()).then_some(t)
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl<R: Rng> Planner<R> {
    /// Starts a plan; `rng` drives RFC 2782 weighted selection (seed it to replay a run).
    pub fn new(dest: Destination, rng: R) -> Result<Self, PlanError> {
        let transport = dest.transport.filter(|&t| t != Transport::Auto);
        // RFC 3261 §26.2.2: "sips:alice@atlanta.com;transport=tcp" is valid, TLS being implied
        // by the scheme (RFC 3263 §4.1 "TCP for a SIPS URI", §4.2 `_sips` for it): our TLS.
        let transport = transport.map(|t| match t {
            Transport::Tcp if dest.sips => Transport::Tls,
            t => t,
        });
        if let Some(t) = transport
            && dest.sips
            && !t.is_secure()
        {
            return Err(PlanError::InsecureTransportForSips(t));
        }
        // RFC 3263 §4.1: with no transport, UDP for sip and TLS for sips once a port or an IP
        // literal fixes the server.
        let default_transport = if dest.sips {
            Transport::Tls
        } else {
            Transport::Udp
        };
        let mut p = Planner {
            domain: String::new(),
            sips: dest.sips,
            prefer_ipv4: false,
            work: VecDeque::new(),
            outstanding: None,
            ready: VecDeque::new(),
            offered: Vec::new(),
            failures: Vec::new(),
            found_srv: false,
            rng,
        };
        let name = match &dest.host {
            Host::Name(n) => normalise(n),
            Host::V4(_) | Host::V6(_) => {
                // RFC 3263 §4.1/§4.2: a numeric IP needs no lookup at all.
                let ip = dest.host.ip().expect("V4/V6 hosts always have an ip"); // matched above
                let t = transport.unwrap_or(default_transport);
                let port = dest.port.or(t.default_port()).unwrap_or(5060);
                p.push_target(Target {
                    transport: t,
                    address: ip,
                    port,
                });
                return Ok(p);
            }
        };
        p.domain = name.clone();
        match (transport, dest.port) {
            // RFC 3263 §4.2: a port but no IP: A/AAAA only; transport as given or the default.
            (t, Some(port)) => {
                let t = t.unwrap_or(default_transport);
                p.push_host(t, &name, port, false);
            }
            // RFC 7118 gives no SRV name for WebSocket in common use: A/AAAA on 80/443.
            (Some(t @ (Transport::Ws | Transport::Wss)), None) => {
                let port = t.default_port().unwrap_or(443);
                p.push_host(t, &name, port, false);
            }
            // RFC 3263 §4.2: a transport but no port: SRV for it, then A/AAAA.
            (Some(t), None) => {
                let srv = srv_name(t, &name);
                p.work.push_back(Work::Srv {
                    transport: t,
                    name: srv,
                });
                p.work.push_back(Work::FallbackIfNoSrv {
                    transport: t,
                    port: t.default_port().unwrap_or(5060),
                });
            }
            // RFC 3263 §4.1: neither: NAPTR.
            (None, None) => p.work.push_back(Work::Naptr),
        }
        Ok(p)
    }

    /// Offers A before AAAA for every host name (for IPv4-only workers).
    pub fn prefer_ipv4(mut self, yes: bool) -> Self {
        self.prefer_ipv4 = yes;
        self
    }

    /// The next DNS question to answer before the plan can go on; the same one until answered.
    ///
    /// `None` with [`next_target`](Self::next_target) also `None` means the plan is exhausted.
    pub fn poll_question(&mut self) -> Option<Question> {
        self.advance();
        if !self.ready.is_empty() {
            // Targets are offered before more DNS is asked.
            return None;
        }
        self.outstanding.as_ref().map(|(q, _)| q.clone())
    }

    /// Feeds the answer to an outstanding question.
    pub fn handle_answer(&mut self, question: &Question, answer: Answer) -> Result<(), PlanError> {
        let Some((q, work)) = self.outstanding.take_if(|(q, _)| q == question) else {
            return Err(PlanError::UnexpectedAnswer(question.clone()));
        };
        let kind = match (&work, &answer) {
            (_, Answer::NoRecords | Answer::Error)
            | (Work::Naptr, Answer::Naptr(_))
            | (Work::Srv { .. }, Answer::Srv(_))
            | (Work::Address { .. }, Answer::Addresses(_)) => None,
            (_, Answer::Naptr(_)) => Some("naptr"),
            (_, Answer::Srv(_)) => Some("srv"),
            (_, Answer::Addresses(_)) => Some("addresses"),
        };
        if let Some(kind) = kind {
            // Keep the question outstanding: the right answer may still come.
            let err = PlanError::AnswerTypeMismatch(kind, q.clone());
            self.outstanding = Some((q, work));
            return Err(err);
        }
        match (&work, answer) {
            (_, Answer::NoRecords | Answer::Error) => {
                if matches!(work, Work::Naptr) {
                    self.push_srv_sweep();
                }
            }
            (Work::Naptr, Answer::Naptr(records)) => self.handle_naptr(records),
            (Work::Srv { transport, .. }, Answer::Srv(records)) => {
                self.handle_srv(*transport, records)
            }
            (
                Work::Address {
                    transport,
                    port,
                    rtype,
                    ..
                },
                Answer::Addresses(addrs),
            ) => {
                for address in addrs {
                    // Only the family asked for: a resolver's stray record is not a target.
                    if address.is_ipv6() == (*rtype == RecordType::Aaaa) {
                        self.push_target(Target {
                            transport: *transport,
                            address,
                            port: *port,
                        });
                    }
                }
            }
            // Mismatched kinds were refused above.
            _ => {}
        }
        Ok(())
    }

    /// The next target to try, or `None` if a question must be answered first or none is left.
    pub fn next_target(&mut self) -> Option<Target> {
        self.advance();
        self.ready.pop_front()
    }

    /// Records that `target` failed; RFC 3263 §4.3: a transport error, a 503 or a timeout
    /// means "try the next one", which [`next_target`](Self::next_target) gives.
    pub fn handle_failure(&mut self, target: Target, failure: Failure) {
        self.failures.push((target, failure));
    }

    /// The failures reported so far, in order.
    pub fn failures(&self) -> &[(Target, Failure)] {
        &self.failures
    }

    /// True when no target and no question is left.
    pub fn is_exhausted(&mut self) -> bool {
        self.advance();
        self.ready.is_empty() && self.outstanding.is_none()
    }

    /// Turns queued work into an outstanding question, unless a target or question is pending.
    fn advance(&mut self) {
        while self.ready.is_empty() && self.outstanding.is_none() {
            let Some(work) = self.work.pop_front() else {
                return;
            };
            let question = match &work {
                Work::Naptr => Question {
                    name: self.domain.clone(),
                    rtype: RecordType::Naptr,
                },
                Work::Srv { name, .. } => Question {
                    name: name.clone(),
                    rtype: RecordType::Srv,
                },
                Work::Address { name, rtype, .. } => Question {
                    name: name.clone(),
                    rtype: *rtype,
                },
                Work::Host {
                    transport,
                    name,
                    port,
                } => {
                    if let Ok(address) = name.parse::<IpAddr>() {
                        // A numeric SRV target needs no lookup.
                        self.push_target(Target {
                            transport: *transport,
                            address,
                            port: *port,
                        });
                        continue;
                    }
                    let order = if self.prefer_ipv4 {
                        [RecordType::A, RecordType::Aaaa]
                    } else {
                        [RecordType::Aaaa, RecordType::A]
                    };
                    for rtype in order.into_iter().rev() {
                        self.work.push_front(Work::Address {
                            transport: *transport,
                            name: name.clone(),
                            port: *port,
                            rtype,
                        });
                    }
                    continue;
                }
                Work::FallbackIfNoSrv { transport, port } => {
                    // RFC 3263 §4.2: "If no SRV records were found, the client performs an A
                    // or AAAA record lookup of the domain name" with the default port.
                    if !self.found_srv {
                        let domain = self.domain.clone();
                        self.push_host(*transport, &domain, *port, true);
                    }
                    continue;
                }
            };
            self.outstanding = Some((question, work));
        }
    }

    fn push_target(&mut self, t: Target) {
        // The same address reached twice (two SRV names for one host) is tried once.
        if !self.offered.contains(&t) {
            self.offered.push(t);
            self.ready.push_back(t);
        }
    }

    /// Queues the address lookups for one host, at the front (`front`) or the back.
    fn push_host(&mut self, transport: Transport, name: &str, port: u16, front: bool) {
        let job = Work::Host {
            transport,
            name: normalise(name),
            port,
        };
        if front {
            self.work.push_front(job);
        } else {
            self.work.push_back(job);
        }
    }

    /// RFC 3263 §4.1: no usable NAPTR: an SRV query per supported transport, in our order of
    /// preference (TLS, TCP, UDP; sips: TLS only), then A/AAAA if none answers.
    fn push_srv_sweep(&mut self) {
        let transports: &[Transport] = if self.sips {
            &[Transport::Tls]
        } else {
            &[Transport::Tls, Transport::Tcp, Transport::Udp]
        };
        for &t in transports {
            let name = srv_name(t, &self.domain);
            self.work.push_back(Work::Srv { transport: t, name });
        }
        let t = if self.sips {
            Transport::Tls
        } else {
            Transport::Udp
        };
        self.work.push_back(Work::FallbackIfNoSrv {
            transport: t,
            port: t.default_port().unwrap_or(5060),
        });
    }

    fn handle_naptr(&mut self, records: Vec<NaptrRecord>) {
        let mut usable: Vec<(u16, u16, Transport, String)> = records
            .into_iter()
            .filter_map(|r| {
                // RFC 3263 §4.1: flag "s" (the replacement is an SRV name); we discard
                // services we do not support and records that rewrite with a regexp.
                let t = naptr_service(&r.services, self.sips)?;
                let srv = r.flags.eq_ignore_ascii_case("s")
                    && r.regexp.is_empty()
                    && !normalise(&r.replacement).is_empty();
                srv.then(|| (r.order, r.preference, t, normalise(&r.replacement)))
            })
            .collect();
        if usable.is_empty() {
            // RFC 3263 §4.1: "If no NAPTR records are found, the client constructs SRV
            // queries for those transport protocols it supports".
            self.push_srv_sweep();
            return;
        }
        // RFC 3403 §4.1 / RFC 3263 §4.1: order first, then preference (stable for ties).
        usable.sort_by_key(|&(order, pref, ..)| (order, pref));
        for (_, _, transport, name) in usable {
            self.work.push_back(Work::Srv { transport, name });
        }
        let t = if self.sips {
            Transport::Tls
        } else {
            Transport::Udp
        };
        self.work.push_back(Work::FallbackIfNoSrv {
            transport: t,
            port: t.default_port().unwrap_or(5060),
        });
    }

    fn handle_srv(&mut self, transport: Transport, records: Vec<SrvRecord>) {
        if records.is_empty() {
            return;
        }
        // The domain publishes SRV for this service: no A/AAAA guess on the bare domain. A
        // lone "." target (RFC 2782) means "decidedly not available": nothing to try here.
        self.found_srv = true;
        let ordered = order_srv(records, &mut self.rng);
        for r in ordered.into_iter().rev() {
            let name = normalise(&r.target);
            if name.is_empty() {
                continue;
            }
            // Each SRV target's lookups go before any later SRV question (§4.3 order); a
            // numeric target becomes a target in `advance`, without a lookup.
            self.work.push_front(Work::Host {
                transport,
                name,
                port: r.port,
            });
        }
    }
}

/// The SRV owner name for a transport (RFC 3263 §4.2; TLS is `_sips._tcp`).
fn srv_name(t: Transport, domain: &str) -> String {
    let prefix = match t {
        Transport::Tls | Transport::Wss => "_sips._tcp",
        Transport::Tcp | Transport::Ws => "_sip._tcp",
        Transport::Udp | Transport::Auto => "_sip._udp",
    };
    format!("{prefix}.{domain}")
}

/// RFC 2782 ordering: priority ascending; within a priority, weighted random selection.
pub fn order_srv<R: Rng + ?Sized>(mut records: Vec<SrvRecord>, rng: &mut R) -> Vec<SrvRecord> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.into_iter().peekable();
    while let Some(first) = rest.next() {
        let mut group = vec![first];
        while let Some(r) = rest.next_if(|r| r.priority == group[0].priority) {
            group.push(r);
        }
        // RFC 2782: "arrange all SRV RRs (that have not been ordered yet) in any order, except
        // that all those with weight 0 are placed at the beginning of the list".
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let sum: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            // "choose a uniform random number between 0 and the sum … (inclusive)", then the
            // first RR whose running sum is >= it. With all weights 0 this picks the first.
            let pick = rng.random_range(0..=sum);
            let mut running = 0u32;
            let idx = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0); // the running sum reaches `sum` >= pick, so a match exists
            out.push(group.remove(idx));
        }
    }
    out
}

/// A synchronous DNS resolver (for tests and simple drivers).
pub trait Resolver {
    /// Answers one question.
    fn resolve(&mut self, question: &Question) -> Answer;
}

/// Runs a [`Planner`] to completion against `resolver`: every target, in the order to try.
pub fn plan_with<D: Resolver + ?Sized, R: Rng>(
    resolver: &mut D,
    dest: Destination,
    rng: R,
) -> Result<Vec<Target>, PlanError> {
    let mut planner = Planner::new(dest, rng)?;
    let mut out = Vec::new();
    loop {
        if let Some(t) = planner.next_target() {
            out.push(t);
            continue;
        }
        match planner.poll_question() {
            Some(q) => {
                let a = resolver.resolve(&q);
                planner.handle_answer(&q, a)?;
            }
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// A zone in memory; unknown names answer `NoRecords`. Records every question asked.
    #[derive(Default)]
    struct FakeDns {
        zone: HashMap<(String, RecordType), Answer>,
        asked: Vec<Question>,
    }

    impl FakeDns {
        fn with(mut self, name: &str, rtype: RecordType, answer: Answer) -> Self {
            self.zone.insert((name.to_owned(), rtype), answer);
            self
        }
        fn a(self, name: &str, ip: &str) -> Self {
            self.with(
                name,
                RecordType::A,
                Answer::Addresses(vec![ip.parse().unwrap()]),
            )
        }
        fn aaaa(self, name: &str, ip: &str) -> Self {
            self.with(
                name,
                RecordType::Aaaa,
                Answer::Addresses(vec![ip.parse().unwrap()]),
            )
        }
        fn srv(self, name: &str, recs: &[(u16, u16, u16, &str)]) -> Self {
            let recs = recs
                .iter()
                .map(|&(priority, weight, port, target)| SrvRecord {
                    priority,
                    weight,
                    port,
                    target: target.to_owned(),
                })
                .collect();
            self.with(name, RecordType::Srv, Answer::Srv(recs))
        }
        fn naptr(self, name: &str, recs: &[(u16, u16, &str, &str, &str)]) -> Self {
            let recs = recs
                .iter()
                .map(
                    |&(order, preference, flags, services, replacement)| NaptrRecord {
                        order,
                        preference,
                        flags: flags.to_owned(),
                        services: services.to_owned(),
                        regexp: String::new(),
                        replacement: replacement.to_owned(),
                    },
                )
                .collect();
            self.with(name, RecordType::Naptr, Answer::Naptr(recs))
        }
        fn asked(&self) -> Vec<String> {
            self.asked.iter().map(|q| q.to_string()).collect()
        }
    }

    impl Resolver for FakeDns {
        fn resolve(&mut self, q: &Question) -> Answer {
            self.asked.push(q.clone());
            self.zone
                .get(&(q.name.clone(), q.rtype))
                .cloned()
                .unwrap_or(Answer::NoRecords)
        }
    }

    /// Fails the test if any question is asked: a URI holding an IP needs no DNS.
    struct NoDns;

    impl Resolver for NoDns {
        fn resolve(&mut self, q: &Question) -> Answer {
            panic!("DNS asked for an IP literal: {q}");
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn dest(host: &str, port: Option<u16>, t: Option<Transport>, sips: bool) -> Destination {
        Destination {
            host: Host::parse(host).unwrap(),
            port,
            transport: t,
            sips,
        }
    }

    fn tgt(t: Transport, ip: &str, port: u16) -> Target {
        Target {
            transport: t,
            address: ip.parse().unwrap(),
            port,
        }
    }

    use Transport::*;

    #[test]
    fn ip_literal_asks_no_dns() {
        let cases = [
            (
                dest("10.0.0.50", None, None, false),
                tgt(Udp, "10.0.0.50", 5060),
            ),
            (
                dest("10.0.0.50", None, None, true),
                tgt(Tls, "10.0.0.50", 5061),
            ),
            (
                dest("10.0.0.50", Some(5070), Some(Tcp), false),
                tgt(Tcp, "10.0.0.50", 5070),
            ),
            (
                dest("10.0.0.50", None, Some(Tls), false),
                tgt(Tls, "10.0.0.50", 5061),
            ),
            (dest("::1", None, Some(Wss), false), tgt(Wss, "::1", 443)),
            (
                dest("[2001:db8::1]", Some(5080), None, false),
                tgt(Udp, "2001:db8::1", 5080),
            ),
            (
                dest("10.0.0.50", None, Some(Auto), false),
                tgt(Udp, "10.0.0.50", 5060),
            ),
        ];
        for (d, want) in cases {
            assert_eq!(plan_with(&mut NoDns, d, rng()).unwrap(), vec![want]);
        }
    }

    #[test]
    fn from_registrar_with_ip_asks_no_dns() {
        let c = RegistrarConfig::new("10.0.0.50", Some(5060), Tcp, None).unwrap();
        let got = plan_with(&mut NoDns, Destination::from_registrar(&c), rng()).unwrap();
        assert_eq!(got, vec![tgt(Tcp, "10.0.0.50", 5060)]);
    }

    /// RFC 3263 §4.2: `registration_uri()` writes the transport's default port for a fixed
    /// transport (`sip:sip.example.com:5060;transport=udp`), and a URI with a port is located
    /// by A/AAAA only: the planner must locate that URI, not ask SRV and go elsewhere.
    #[test]
    fn from_registrar_locates_the_registration_uri() {
        let zone = || {
            FakeDns::default()
                .srv(
                    "_sip._udp.sip.example.com",
                    &[(0, 0, 5070, "elsewhere.example.com")],
                )
                .srv(
                    "_sips._tcp.pbx.corp.net",
                    &[(0, 0, 5071, "elsewhere.example.com")],
                )
                .a("elsewhere.example.com", "192.0.2.77")
                .a("sip.example.com", "192.0.2.1")
                .a("pbx.corp.net", "192.0.2.2")
        };
        for (domain, t, ip, port) in [
            ("sip.example.com", Udp, "192.0.2.1", 5060),
            ("pbx.corp.net", Tls, "192.0.2.2", 5061),
        ] {
            let c = RegistrarConfig::new(domain, None, t, None).unwrap();
            assert!(c.registration_uri().contains(&format!(":{port};")));
            let mut dns = zone();
            let got = plan_with(&mut dns, Destination::from_registrar(&c), rng()).unwrap();
            assert_eq!(got, vec![tgt(t, ip, port)], "{}", c.registration_uri());
            assert!(
                dns.asked.iter().all(|q| q.rtype != RecordType::Srv),
                "a URI with a port asks no SRV: {:?}",
                dns.asked()
            );
        }
    }

    /// RFC 3261 §26.2.2: "sips:alice@atlanta.com;transport=tcp" is a valid SIPS URI (TLS over
    /// TCP); RFC 3263 §4.1 says TCP for a SIPS URI and §4.2 asks `_sips._tcp` for it.
    #[test]
    fn sips_with_transport_tcp_is_tls_over_tcp() {
        let got = plan_with(&mut NoDns, dest("10.0.0.50", None, Some(Tcp), true), rng());
        assert_eq!(got.unwrap(), vec![tgt(Tls, "10.0.0.50", 5061)]);

        let mut dns = FakeDns::default()
            .srv(
                "_sips._tcp.example.com",
                &[(10, 0, 5061, "tls1.example.com")],
            )
            .srv(
                "_sip._tcp.example.com",
                &[(10, 0, 5060, "tcp1.example.com")],
            )
            .a("tls1.example.com", "192.0.2.10")
            .a("tcp1.example.com", "192.0.2.11");
        let got = plan_with(&mut dns, dest("example.com", None, Some(Tcp), true), rng());
        assert_eq!(got.unwrap(), vec![tgt(Tls, "192.0.2.10", 5061)]);
        assert_eq!(dns.asked()[0], "_sips._tcp.example.com Srv");

        let mut dns = FakeDns::default().a("example.com", "192.0.2.99");
        let got = plan_with(
            &mut dns,
            dest("example.com", Some(5071), Some(Tcp), true),
            rng(),
        );
        assert_eq!(got.unwrap(), vec![tgt(Tls, "192.0.2.99", 5071)]);
    }

    #[test]
    fn port_given_asks_addresses_only() {
        let mut dns = FakeDns::default()
            .a("sip.example.com", "192.0.2.1")
            .aaaa("sip.example.com", "2001:db8::1");
        let got = plan_with(
            &mut dns,
            dest("sip.example.com", Some(5070), None, false),
            rng(),
        );
        assert_eq!(
            got.unwrap(),
            vec![tgt(Udp, "2001:db8::1", 5070), tgt(Udp, "192.0.2.1", 5070)]
        );
        assert_eq!(dns.asked(), ["sip.example.com Aaaa", "sip.example.com A"]);

        let mut dns = FakeDns::default().a("sip.example.com", "192.0.2.1");
        let got = plan_with(
            &mut dns,
            dest("sip.example.com", Some(5071), None, true),
            rng(),
        );
        assert_eq!(got.unwrap(), vec![tgt(Tls, "192.0.2.1", 5071)]);
    }

    #[test]
    fn prefer_ipv4_reverses_families() {
        let mut dns = FakeDns::default()
            .a("h.example", "192.0.2.1")
            .aaaa("h.example", "2001:db8::1");
        let mut p = Planner::new(dest("h.example", Some(5060), Some(Udp), false), rng())
            .unwrap()
            .prefer_ipv4(true);
        let q = p.poll_question().unwrap();
        assert_eq!(q.rtype, RecordType::A);
        let a = dns.resolve(&q);
        p.handle_answer(&q, a).unwrap();
        assert_eq!(p.next_target(), Some(tgt(Udp, "192.0.2.1", 5060)));
    }

    #[test]
    fn transport_given_uses_srv_then_fallback() {
        let mut dns = FakeDns::default()
            .srv(
                "_sips._tcp.example.com",
                &[(10, 0, 5061, "tls1.example.com.")],
            )
            .a("tls1.example.com", "192.0.2.10")
            .a("example.com", "192.0.2.99");
        let got = plan_with(&mut dns, dest("example.com", None, Some(Tls), false), rng());
        assert_eq!(got.unwrap(), vec![tgt(Tls, "192.0.2.10", 5061)]);
        assert_eq!(dns.asked()[0], "_sips._tcp.example.com Srv");

        // No SRV: A/AAAA on the domain with the transport's default port.
        let mut dns = FakeDns::default().a("example.com", "192.0.2.99");
        let got = plan_with(&mut dns, dest("example.com", None, Some(Tcp), false), rng());
        assert_eq!(got.unwrap(), vec![tgt(Tcp, "192.0.2.99", 5060)]);
        assert_eq!(
            dns.asked(),
            [
                "_sip._tcp.example.com Srv",
                "example.com Aaaa",
                "example.com A"
            ]
        );

        let mut dns = FakeDns::default()
            .with("_sip._udp.example.com", RecordType::Srv, Answer::Error)
            .a("example.com", "192.0.2.99");
        let got = plan_with(&mut dns, dest("example.com", None, Some(Udp), false), rng());
        assert_eq!(got.unwrap(), vec![tgt(Udp, "192.0.2.99", 5060)]);
    }

    #[test]
    fn wss_without_port_uses_addresses_on_443() {
        let mut dns = FakeDns::default().a("ws.example.com", "192.0.2.7");
        let got = plan_with(
            &mut dns,
            dest("ws.example.com", None, Some(Wss), false),
            rng(),
        );
        assert_eq!(got.unwrap(), vec![tgt(Wss, "192.0.2.7", 443)]);
        assert!(dns.asked.iter().all(|q| q.rtype != RecordType::Srv));
    }

    #[test]
    fn srv_dot_target_means_not_available() {
        let mut dns = FakeDns::default()
            .srv("_sip._udp.example.com", &[(0, 0, 0, ".")])
            .a("example.com", "192.0.2.99");
        let got = plan_with(&mut dns, dest("example.com", None, Some(Udp), false), rng());
        assert_eq!(got.unwrap(), vec![], "no A/AAAA guess after a '.' SRV");
    }

    #[test]
    fn auto_naptr_order_preference_and_unsupported_skipped() {
        let mut dns = FakeDns::default()
            .naptr(
                "example.com",
                &[
                    (20, 10, "s", "SIP+D2U", "_sip._udp.example.com."),
                    (10, 20, "s", "SIP+D2T", "_sip._tcp.example.com."),
                    (10, 10, "S", "SIPS+D2T", "_sips._tcp.example.com."),
                    (5, 10, "s", "SIP+D2S", "_sip._sctp.example.com."), // SCTP: unsupported
                    (5, 10, "u", "SIP+D2T", ""),                        // regexp form: ignored
                    (5, 20, "s", "E2U+sip", "x.example.com."),          // ENUM: unsupported
                ],
            )
            .srv("_sips._tcp.example.com", &[(0, 1, 5061, "a.example.com")])
            .srv("_sip._tcp.example.com", &[(0, 1, 5060, "b.example.com")])
            .srv("_sip._udp.example.com", &[(0, 1, 5060, "c.example.com")])
            .a("a.example.com", "192.0.2.1")
            .a("b.example.com", "192.0.2.2")
            .a("c.example.com", "192.0.2.3");
        let got = plan_with(&mut dns, dest("example.com", None, None, false), rng()).unwrap();
        assert_eq!(
            got,
            vec![
                tgt(Tls, "192.0.2.1", 5061),
                tgt(Tcp, "192.0.2.2", 5060),
                tgt(Udp, "192.0.2.3", 5060)
            ]
        );
        assert!(
            !dns.asked()
                .iter()
                .any(|q| q.contains("sctp") || q.starts_with("x."))
        );
    }

    #[test]
    fn auto_sips_keeps_only_sips_services() {
        let mut dns = FakeDns::default()
            .naptr(
                "example.com",
                &[
                    (10, 10, "s", "SIP+D2U", "_sip._udp.example.com"),
                    (20, 10, "s", "SIPS+D2W", "_sips._ws.example.com"),
                ],
            )
            .srv("_sip._udp.example.com", &[(0, 1, 5060, "c.example.com")])
            .srv("_sips._ws.example.com", &[(0, 1, 443, "w.example.com")])
            .a("c.example.com", "192.0.2.3")
            .a("w.example.com", "192.0.2.4");
        let got = plan_with(&mut dns, dest("example.com", None, None, true), rng()).unwrap();
        assert_eq!(got, vec![tgt(Wss, "192.0.2.4", 443)]);
    }

    #[test]
    fn auto_without_naptr_sweeps_srv_in_preference_order() {
        let mut dns = FakeDns::default()
            .srv("_sip._tcp.example.com", &[(0, 1, 5060, "t.example.com")])
            .srv("_sip._udp.example.com", &[(0, 1, 5062, "u.example.com")])
            .a("t.example.com", "192.0.2.20")
            .a("u.example.com", "192.0.2.30");
        let got = plan_with(&mut dns, dest("example.com", None, None, false), rng()).unwrap();
        assert_eq!(
            got,
            vec![tgt(Tcp, "192.0.2.20", 5060), tgt(Udp, "192.0.2.30", 5062)]
        );
        let asked = dns.asked();
        assert_eq!(asked[0], "example.com Naptr");
        assert_eq!(asked[1], "_sips._tcp.example.com Srv");
        assert_eq!(asked[2], "_sip._tcp.example.com Srv");
        assert!(
            !asked.contains(&"example.com A".to_owned()),
            "SRV found: no domain fallback"
        );
    }

    #[test]
    fn auto_with_no_records_falls_back_to_udp_5060() {
        let mut dns = FakeDns::default()
            .with("example.com", RecordType::Naptr, Answer::Error)
            .a("example.com", "192.0.2.99");
        let got = plan_with(&mut dns, dest("example.com", None, None, false), rng()).unwrap();
        assert_eq!(got, vec![tgt(Udp, "192.0.2.99", 5060)]);
        assert_eq!(
            dns.asked(),
            [
                "example.com Naptr",
                "_sips._tcp.example.com Srv",
                "_sip._tcp.example.com Srv",
                "_sip._udp.example.com Srv",
                "example.com Aaaa",
                "example.com A"
            ]
        );
        let c = RegistrarConfig::new("example.com", None, Auto, None).unwrap();
        let mut dns = FakeDns::default().a("example.com", "192.0.2.99");
        let got = plan_with(&mut dns, Destination::from_registrar(&c), rng()).unwrap();
        assert_eq!(got, vec![tgt(Udp, "192.0.2.99", 5060)]);
    }

    #[test]
    fn failover_is_lazy_and_in_order() {
        let dns = FakeDns::default()
            .srv(
                "_sip._udp.example.com",
                &[
                    (10, 0, 5060, "p1.example.com"),
                    (20, 0, 5060, "p2.example.com"),
                ],
            )
            .a("p1.example.com", "192.0.2.1")
            .aaaa("p1.example.com", "2001:db8::1")
            .a("p2.example.com", "192.0.2.2");
        let mut dns = dns;
        let mut p = Planner::new(dest("example.com", None, Some(Udp), false), rng()).unwrap();
        let mut tried = vec![];
        let failures = [
            Failure::TransportError,
            Failure::ServiceUnavailable,
            Failure::Timeout,
        ];
        loop {
            if let Some(t) = p.next_target() {
                // No lookup for p2 until p1's addresses have all failed.
                if tried.len() < 2 {
                    assert!(!dns.asked().iter().any(|q| q.starts_with("p2")));
                }
                p.handle_failure(t, failures[tried.len() % 3]);
                tried.push(t);
                continue;
            }
            let Some(q) = p.poll_question() else { break };
            let a = dns.resolve(&q);
            p.handle_answer(&q, a).unwrap();
        }
        assert_eq!(
            tried,
            vec![
                tgt(Udp, "2001:db8::1", 5060),
                tgt(Udp, "192.0.2.1", 5060),
                tgt(Udp, "192.0.2.2", 5060)
            ]
        );
        assert_eq!(p.failures().len(), 3);
        assert_eq!(p.failures()[1].1, Failure::ServiceUnavailable);
        assert!(p.is_exhausted());
    }

    #[test]
    fn srv_priority_then_weight() {
        let recs = |v: &[(u16, u16, &str)]| -> Vec<SrvRecord> {
            v.iter()
                .map(|&(priority, weight, target)| SrvRecord {
                    priority,
                    weight,
                    port: 5060,
                    target: target.into(),
                })
                .collect()
        };
        let ordered = order_srv(
            recs(&[(20, 50, "c"), (10, 0, "a"), (30, 0, "d"), (20, 50, "b")]),
            &mut rng(),
        );
        assert_eq!(ordered[0].target, "a");
        assert_eq!(ordered[3].target, "d");

        // Weights 10/90 over 1000 draws: "heavy" first about 90% of the time.
        let mut r = rng();
        let heavy_first = (0..1000)
            .filter(|_| {
                order_srv(recs(&[(0, 10, "light"), (0, 90, "heavy")]), &mut r)[0].target == "heavy"
            })
            .count();
        assert!(
            (850..=950).contains(&heavy_first),
            "heavy first {heavy_first} / 1000"
        );

        // Weight 0 among weighted records is rarely first (RFC 2782: only when the draw is 0).
        let mut r = rng();
        let zero_first = (0..1000)
            .filter(|_| {
                order_srv(recs(&[(0, 0, "zero"), (0, 100, "w")]), &mut r)[0].target == "zero"
            })
            .count();
        assert!(zero_first < 30, "weight 0 first {zero_first} / 1000");

        // All weights 0: every record is still returned.
        let all = order_srv(recs(&[(0, 0, "x"), (0, 0, "y"), (0, 0, "z")]), &mut rng());
        assert_eq!(all.len(), 3);

        // Same seed, same order: a run replays exactly.
        let a = order_srv(recs(&[(0, 5, "a"), (0, 5, "b"), (0, 5, "c")]), &mut rng());
        let b = order_srv(recs(&[(0, 5, "a"), (0, 5, "b"), (0, 5, "c")]), &mut rng());
        assert_eq!(a, b);
    }

    #[test]
    fn api_misuse_is_an_error_not_a_panic() {
        let mut p = Planner::new(dest("example.com", None, None, false), rng()).unwrap();
        let q = p.poll_question().unwrap();
        assert_eq!(
            p.poll_question(),
            Some(q.clone()),
            "same question until answered"
        );
        let other = Question {
            name: "other.example".into(),
            rtype: RecordType::A,
        };
        assert!(matches!(
            p.handle_answer(&other, Answer::NoRecords),
            Err(PlanError::UnexpectedAnswer(_))
        ));
        assert!(matches!(
            p.handle_answer(&q, Answer::Addresses(vec![])),
            Err(PlanError::AnswerTypeMismatch(..))
        ));
        assert_eq!(
            p.poll_question(),
            Some(q.clone()),
            "still outstanding after a mismatch"
        );
        p.handle_answer(&q, Answer::NoRecords).unwrap();
        assert!(matches!(
            p.handle_answer(&q, Answer::NoRecords),
            Err(PlanError::UnexpectedAnswer(_))
        ));
        assert_eq!(
            Planner::new(dest("example.com", None, Some(Udp), true), rng()).unwrap_err(),
            PlanError::InsecureTransportForSips(Udp)
        );
    }

    #[test]
    fn naptr_whose_srv_is_empty_falls_back_to_the_domain() {
        let mut dns = FakeDns::default()
            .naptr(
                "example.com",
                &[(10, 10, "s", "SIP+D2T", "_sip._tcp.example.com")],
            )
            .a("example.com", "192.0.2.99");
        let got = plan_with(&mut dns, dest("example.com", None, None, false), rng()).unwrap();
        assert_eq!(got, vec![tgt(Udp, "192.0.2.99", 5060)]);
    }

    #[test]
    fn numeric_srv_target_needs_no_lookup() {
        let mut dns = FakeDns::default().srv(
            "_sip._udp.example.com",
            &[(10, 0, 5070, "192.0.2.5"), (20, 0, 5071, "h.example.com")],
        );
        let got = plan_with(&mut dns, dest("example.com", None, Some(Udp), false), rng());
        assert_eq!(got.unwrap(), vec![tgt(Udp, "192.0.2.5", 5070)]);
        assert!(!dns.asked().iter().any(|q| q.starts_with("192.")));
    }

    #[test]
    fn same_seed_same_plan() {
        let dns = || {
            FakeDns::default()
                .srv(
                    "_sip._udp.example.com",
                    &[
                        (0, 30, 5060, "a.example.com"),
                        (0, 70, 5060, "b.example.com"),
                    ],
                )
                .a("a.example.com", "192.0.2.1")
                .a("b.example.com", "192.0.2.2")
        };
        let d = || dest("example.com", None, Some(Udp), false);
        for seed in 0..20 {
            let one = plan_with(&mut dns(), d(), StdRng::seed_from_u64(seed)).unwrap();
            let two = plan_with(&mut dns(), d(), StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(one, two);
            assert_eq!(one.len(), 2);
        }
    }

    #[test]
    fn outbound_proxy_destination_mirrors_the_route_header() {
        let c = RegistrarConfig::new("example.com", None, Tls, Some("proxy.example.com")).unwrap();
        let d = Destination::from_outbound_proxy(&c).unwrap();
        assert_eq!((d.port, d.transport), (Some(5061), Some(Tls)));
        let mut dns = FakeDns::default().a("proxy.example.com", "192.0.2.8");
        let got = plan_with(&mut dns, d, rng()).unwrap();
        assert_eq!(got, vec![tgt(Tls, "192.0.2.8", 5061)]);
        let c = RegistrarConfig::new("example.com", None, Auto, None).unwrap();
        assert_eq!(Destination::from_outbound_proxy(&c), None);
    }

    #[test]
    fn stray_family_and_duplicates_are_dropped() {
        let mut dns = FakeDns::default().with(
            "h.example",
            RecordType::A,
            Answer::Addresses(vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            ]),
        );
        let got = plan_with(&mut dns, dest("h.example", Some(5060), None, false), rng()).unwrap();
        assert_eq!(got, vec![tgt(Udp, "192.0.2.1", 5060)]);
    }
}
