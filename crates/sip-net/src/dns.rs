//! DNS for RFC 3263 server location: [`Dns`] answers the sans-IO planner's
//! [`Question`]s with hickory-resolver, and [`Discovery`] drives a [`Planner`] with it.
//!
//! The selection logic (NAPTR order/preference, SRV priority and weight, fallbacks) is the
//! planner's, in `sip-proto`; this module only moves questions and answers. The DNS server is
//! the system's (`/etc/resolv.conf`) or one given as `address:port`, so a lab server or a
//! test's dnsmasq on a free port can be used.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType as HRecordType};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sip_proto::rfc3263::{
    Answer, Destination, Failure, NaptrRecord, PlanError, Planner, Question, RecordType, SrvRecord,
    Target,
};

/// Why a resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The system's resolver configuration could not be read.
    #[error("cannot read the system's DNS configuration (/etc/resolv.conf): {0}")]
    SystemConfig(String),
    /// The resolver could not be built.
    #[error("cannot set up the DNS resolver: {0}")]
    Build(String),
}

/// A DNS resolver answering the planner's questions.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    server: Option<SocketAddr>,
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns").field("server", &self.server).finish()
    }
}

/// One question asked and what came back, for the trace and the check's DNS step.
#[derive(Debug, Clone)]
pub struct DnsExchange {
    /// The question.
    pub question: Question,
    /// The answer as the planner saw it.
    pub answer: Answer,
    /// How long the lookup took.
    pub elapsed: Duration,
}

impl fmt::Display for DnsExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = &self.question;
        write!(f, "{} {:?} → ", q.name, q.rtype)?;
        match &self.answer {
            Answer::NoRecords => f.write_str("no records"),
            Answer::Error => f.write_str("lookup failed"),
            Answer::Addresses(a) => {
                let list: Vec<String> = a.iter().map(IpAddr::to_string).collect();
                f.write_str(&list.join(", "))
            }
            Answer::Srv(records) => {
                let list: Vec<String> = records
                    .iter()
                    .map(|r| {
                        format!(
                            "{}:{} (prio {} weight {})",
                            r.target, r.port, r.priority, r.weight
                        )
                    })
                    .collect();
                f.write_str(&list.join(", "))
            }
            Answer::Naptr(records) => {
                let list: Vec<String> = records
                    .iter()
                    .map(|r| format!("{} {} → {}", r.order, r.services, r.replacement))
                    .collect();
                f.write_str(&list.join(", "))
            }
        }
    }
}

/// The planner's form of a name: no root dot (the root itself, SRV's "not here", is empty).
fn relative(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_owned()
}

fn options() -> ResolverOpts {
    let mut o = ResolverOpts::default();
    // A test or a check should fail in seconds, not minutes, when DNS is dead.
    o.timeout = Duration::from_secs(2);
    o.attempts = 1;
    // Every check asks afresh: a record just fixed must show up at once.
    o.cache_size = 0;
    o
}

impl Dns {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Dns, DnsError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| DnsError::SystemConfig(e.to_string()))?;
        let cache_off = options();
        let o = builder.options_mut();
        o.timeout = cache_off.timeout;
        o.cache_size = cache_off.cache_size;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Build(e.to_string()))?;
        Ok(Dns {
            resolver,
            server: None,
        })
    }

    /// One DNS server at `server` (any port), over UDP with TCP fallback; no search domains.
    pub fn with_server(server: SocketAddr) -> Result<Dns, DnsError> {
        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
        for c in &mut ns.connections {
            c.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options())
            .build()
            .map_err(|e| DnsError::Build(e.to_string()))?;
        Ok(Dns {
            resolver,
            server: Some(server),
        })
    }

    /// `with_server` when a server is given, the system's configuration otherwise.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, DnsError> {
        match server {
            Some(s) => Dns::with_server(s),
            None => Dns::system(),
        }
    }

    /// The custom server, if one was given.
    pub fn server(&self) -> Option<SocketAddr> {
        self.server
    }

    /// Answers one planner question. NXDOMAIN and "no data" are [`Answer::NoRecords`];
    /// timeouts and server failures are [`Answer::Error`] (the planner treats both as "go on").
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped lookup leaves nothing behind but a late reply hickory discards.
    pub async fn resolve(&self, q: &Question) -> Answer {
        let rtype = match q.rtype {
            RecordType::Naptr => HRecordType::NAPTR,
            RecordType::Srv => HRecordType::SRV,
            RecordType::A => HRecordType::A,
            RecordType::Aaaa => HRecordType::AAAA,
        };
        // Fully qualified: the planner's names are absolute, never subject to search lists.
        let name = format!("{}.", q.name.trim_end_matches('.'));
        let lookup = match self.resolver.lookup(name.as_str(), rtype).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Answer::NoRecords,
            Err(_) => return Answer::Error,
        };
        let records = lookup.answers().iter().map(|r| &r.data);
        let answer = match q.rtype {
            RecordType::Naptr => Answer::Naptr(
                records
                    .filter_map(|d| match d {
                        RData::NAPTR(n) => Some(NaptrRecord {
                            order: n.order,
                            preference: n.preference,
                            flags: String::from_utf8_lossy(&n.flags).into_owned(),
                            services: String::from_utf8_lossy(&n.services).into_owned(),
                            regexp: String::from_utf8_lossy(&n.regexp).into_owned(),
                            replacement: relative(&n.replacement.to_ascii()),
                        }),
                        _ => None,
                    })
                    .collect(),
            ),
            RecordType::Srv => Answer::Srv(
                records
                    .filter_map(|d| match d {
                        RData::SRV(s) => Some(SrvRecord {
                            priority: s.priority,
                            weight: s.weight,
                            port: s.port,
                            target: relative(&s.target.to_ascii()),
                        }),
                        _ => None,
                    })
                    .collect(),
            ),
            // CNAMEs followed by hickory show up as other record types: keep addresses only.
            RecordType::A | RecordType::Aaaa => {
                Answer::Addresses(records.filter_map(RData::ip_addr).collect())
            }
        };
        let empty = match &answer {
            Answer::Naptr(v) => v.is_empty(),
            Answer::Srv(v) => v.is_empty(),
            Answer::Addresses(v) => v.is_empty(),
            Answer::NoRecords | Answer::Error => false,
        };
        if empty { Answer::NoRecords } else { answer }
    }
}

/// Drives a [`Planner`] with a [`Dns`]: targets one at a time, DNS asked only when needed.
#[derive(Debug)]
pub struct Discovery {
    planner: Planner<StdRng>,
    dns: Dns,
    log: Vec<DnsExchange>,
}

impl Discovery {
    /// Starts locating `dest`; `seed` drives SRV weighted selection (replayable).
    pub fn new(dest: Destination, dns: Dns, seed: u64) -> Result<Discovery, PlanError> {
        Ok(Discovery {
            planner: Planner::new(dest, StdRng::seed_from_u64(seed))?,
            dns,
            log: Vec::new(),
        })
    }

    /// The next target to try, asking DNS as the plan requires; `None` when exhausted.
    pub async fn next_target(&mut self) -> Option<Target> {
        loop {
            if let Some(t) = self.planner.next_target() {
                return Some(t);
            }
            let q = self.planner.poll_question()?;
            let start = Instant::now();
            let answer = self.dns.resolve(&q).await;
            self.log.push(DnsExchange {
                question: q.clone(),
                answer: answer.clone(),
                elapsed: start.elapsed(),
            });
            // The answer is built from the question's own type: it always fits.
            if self.planner.handle_answer(&q, answer).is_err() {
                return None;
            }
        }
    }

    /// Records that `target` failed (RFC 3263 §4.3); the next call moves on.
    pub fn handle_failure(&mut self, target: Target, failure: Failure) {
        self.planner.handle_failure(target, failure);
    }

    /// Every question asked so far, with its answer.
    pub fn log(&self) -> &[DnsExchange] {
        &self.log
    }

    /// Runs the plan to its end: every target in the order to try.
    pub async fn all_targets(&mut self) -> Vec<Target> {
        let mut out = Vec::new();
        while let Some(t) = self.next_target().await {
            out.push(t);
        }
        out
    }
}
