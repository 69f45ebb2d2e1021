//! sipmeter's built-in SIP registrar and proxy: a sans-IO core.
//!
//! It lets a test run with no SIP server of the user's own: endpoints REGISTER with digest
//! authentication (ephemeral HMAC credentials issued per run, or a static account list), and
//! INVITEs and in-dialog requests are proxied between registered endpoints.
//!
//! # Driving a [`Registrar`]
//!
//! Feed every received message with [`Registrar::handle_message`] (`now`, the message, the
//! address it came from), drain [`Registrar::poll_transmit`] (bytes and the address to send
//! them to), and call [`Registrar::handle_timeout`] when [`Registrar::poll_timeout`] has
//! passed (bindings expire). It never reads the clock; `now_unix` (seconds since the epoch)
//! is passed for credential expiry.
//!
//! The proxy is stateless (RFC 3261 §16.11): it forwards requests and responses without
//! transaction state, computing its Via branch from the incoming one so that retransmissions
//! and CANCELs take the same path; endpoints retransmit end to end. It record-routes, so BYE
//! and re-INVITE pass through it too.
//!
//! INVITEs to the service numbers `echo` and `tone` at our domain are answered by the
//! registrar itself ([`services`]); drain [`Registrar::poll_service_event`] after every input
//! and bind their media as it says.

mod auth;
pub mod services;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::typed::{Contact, Expires, MaxForwards, Route, Via};
use sip_msg::{BRANCH_MAGIC, Header, HeaderName, Host, Message, Method, SipUri, Uri};

pub use auth::{AccountStatus, Accounts, AuthMode};
pub use services::{Service, ServiceCallId, ServiceEvent, ServiceLimits, ServiceStats};

/// How the registrar is set up.
#[derive(Clone)]
pub struct RegistrarConfig {
    /// The domain it is authoritative for (AORs `sip:user@domain`).
    pub domain: String,
    /// Our address as it appears in Via and Record-Route.
    pub host: Host,
    /// Our port.
    pub port: u16,
    /// The Via transport token of the socket this core serves (`UDP`, `TCP` …).
    pub transport: String,
    /// Who may register and call.
    pub auth: AuthMode,
    /// Keys nonces and ephemeral credentials (never printed).
    pub secret: Vec<u8>,
    /// Shortest registration accepted (423 below it, RFC 3261 §10.3 step 7).
    pub min_expires: u32,
    /// Longest registration granted.
    pub max_expires: u32,
}

impl std::fmt::Debug for RegistrarConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarConfig")
            .field("domain", &self.domain)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("auth", &self.auth)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One binding of the location service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI the endpoint registered.
    pub contact: Uri,
    /// Where its REGISTER came from (used to reach it, so NAT and port 0 binds work).
    pub source: SocketAddr,
    /// When it lapses.
    pub expires_at: Instant,
}

/// Counters for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// REGISTERs answered 200.
    pub registered: u64,
    /// Challenges sent (401 and 407).
    pub challenged: u64,
    /// Requests refused (403, 404, 480, 483 …).
    pub refused: u64,
    /// Requests forwarded.
    pub forwarded: u64,
    /// Responses forwarded.
    pub responses_forwarded: u64,
    /// Messages dropped (malformed or not ours).
    pub dropped: u64,
    /// The service numbers (echo, tone).
    pub services: ServiceStats,
}

/// The built-in registrar and proxy.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    bindings: HashMap<String, Vec<Binding>>,
    /// Registered contact (`user@host:port`) → the address its REGISTER came from, so
    /// in-dialog requests find their endpoint in O(1).
    contacts: HashMap<String, SocketAddr>,
    /// The earliest binding expiry (recomputed when bindings lapse).
    earliest: Option<Instant>,
    /// Users that registered at some point (404 versus 480 without an account list).
    seen: std::collections::HashSet<String>,
    out: VecDeque<(SocketAddr, Bytes)>,
    stats: Stats,
    auth: auth::Verifier,
    services: services::Services,
}

impl Registrar {
    /// A registrar with no bindings. `secret` keys its nonces (and ephemeral credentials).
    pub fn new(config: RegistrarConfig) -> Self {
        let auth = auth::Verifier::new(&config.auth, &config.domain, &config.secret);
        Self {
            config,
            bindings: HashMap::new(),
            seen: Default::default(),
            contacts: HashMap::new(),
            earliest: None,
            out: VecDeque::new(),
            stats: Stats::default(),
            auth,
            services: services::Services::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            services: self.services.stats(),
            ..self.stats
        }
    }

    /// Sets the limits of service calls.
    pub fn set_service_limits(&mut self, limits: ServiceLimits) {
        self.services.set_limits(limits);
    }

    /// The next thing the socket driver must do for a service call (see [`services`]).
    pub fn poll_service_event(&mut self) -> Option<ServiceEvent> {
        self.services.poll_event()
    }

    /// The driver bound `call`'s RTP socket at `rtp` (`Err`: it could not; the caller gets 503).
    pub fn handle_service_bound(
        &mut self,
        now: Instant,
        call: ServiceCallId,
        rtp: Result<SocketAddr, ()>,
    ) {
        self.services
            .handle_bound(now, &self.config, call, rtp, &mut self.out);
    }

    /// Ends a service call from our side (the driver saw no media): BYE to the caller.
    pub fn end_service_call(&mut self, now: Instant, call: ServiceCallId) {
        self.services.end_call(
            now,
            &self.config,
            call,
            services::EndReason::Inactive,
            &mut self.out,
        );
    }

    /// The live bindings of `user`.
    pub fn bindings(&self, user: &str) -> &[Binding] {
        self.bindings.get(user).map_or(&[], Vec::as_slice)
    }

    /// The next datagram or stream message to send, with its destination.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.out.pop_front()
    }

    /// When the next binding lapses (or a service call's timer fires).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.earliest, self.services.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops lapsed bindings; runs the service calls' timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.services
            .handle_timeout(now, &self.config, &mut self.out);
        if self.earliest.is_none_or(|t| t > now) {
            return;
        }
        let contacts = &mut self.contacts;
        for list in self.bindings.values_mut() {
            list.retain(|b| {
                let keep = b.expires_at > now;
                if !keep {
                    contacts.remove(&contact_key(&b.contact));
                }
                keep
            });
        }
        self.bindings.retain(|_, l| !l.is_empty());
        self.earliest = self.bindings.values().flatten().map(|b| b.expires_at).min();
    }

    /// Handles one received message.
    pub fn handle_message(
        &mut self,
        now: Instant,
        now_unix: u64,
        msg: Message,
        source: SocketAddr,
    ) {
        if msg.is_request() {
            self.handle_request(now, now_unix, msg, source);
        } else if !self.services.is_idle() && self.services.owns_response(&msg) {
            // The answer to a BYE a service call sent: nothing more to do.
        } else {
            self.forward_response(msg);
        }
    }

    fn respond(
        &mut self,
        req: &Message,
        source: SocketAddr,
        code: u16,
        reason: &str,
        extra: Vec<Header>,
    ) {
        let mut resp = Message::response_to(req, code, reason, Some(&to_tag_for(req)));
        // RFC 3581: fill in rport and received so the endpoint learns its public address.
        if let Some(via) = req.top_via() {
            let mut via = via;
            via.params.set("received", Some(&source.ip().to_string()));
            if via.params.contains("rport") {
                via.params.set("rport", Some(&source.port().to_string()));
            }
            let mut vias: Vec<Header> = resp.headers.get_all(&HeaderName::Via).cloned().collect();
            resp.headers.remove(&HeaderName::Via);
            if !vias.is_empty() {
                vias[0] = Header::new(HeaderName::Via, via.to_string());
            }
            for v in vias.into_iter().rev() {
                resp.headers.push_front(v);
            }
        }
        for h in extra {
            resp.headers.push(h);
        }
        resp.headers
            .push(Header::new(HeaderName::Server, "sipmeter-registrar"));
        if code >= 300 {
            self.stats.refused += u64::from(!matches!(code, 401 | 407));
        }
        self.out.push_back((source, Bytes::from(resp.to_bytes())));
    }

    fn handle_request(&mut self, now: Instant, now_unix: u64, req: Message, source: SocketAddr) {
        let Some(method) = req.method() else { return };
        if req.top_via().and_then(|v| v.branch()).is_none() || req.cseq().is_none() {
            self.stats.dropped += 1;
            return;
        }
        match method {
            Method::Register => self.register(now, now_unix, &req, source),
            Method::Options if self.is_for_us(&req) => {
                let allow = Header::new(
                    HeaderName::Allow,
                    "REGISTER, INVITE, ACK, BYE, CANCEL, OPTIONS",
                );
                self.respond(&req, source, 200, "OK", vec![allow]);
            }
            _ => self.proxy(now, now_unix, req, source),
        }
    }

    /// True when the Request-URI names us, not a user.
    fn is_for_us(&self, req: &Message) -> bool {
        req.request_uri()
            .and_then(Uri::as_sip)
            .is_some_and(|u| u.user.is_none())
    }

    fn register(&mut self, now: Instant, now_unix: u64, req: &Message, source: SocketAddr) {
        // RFC 3261 §10.3: authenticate, then the To user is the AOR.
        let Some(user) = req
            .to()
            .and_then(|t| t.uri.as_sip().and_then(|u| u.user_unescaped()))
        else {
            self.respond(req, source, 400, "Bad Request (no user in To)", vec![]);
            return;
        };
        match self.auth.check(req, &Method::Register, now_unix, false) {
            auth::Outcome::Allowed(auth_user) => {
                if auth_user != user && !self.auth.is_ephemeral() {
                    self.respond(
                        req,
                        source,
                        403,
                        "Forbidden (user does not match credentials)",
                        vec![],
                    );
                    return;
                }
            }
            auth::Outcome::Challenge(h) => {
                self.stats.challenged += 1;
                self.respond(req, source, 401, "Unauthorized", h);
                return;
            }
            auth::Outcome::Forbidden => {
                self.respond(req, source, 403, "Forbidden", vec![]);
                return;
            }
            auth::Outcome::NotFound => {
                self.respond(req, source, 404, "Not Found", vec![]);
                return;
            }
        }
        let default_expires = req
            .headers
            .typed::<Expires>()
            .and_then(Result::ok)
            .map_or(3600, |e| e.0);
        let contacts: Vec<Contact> = req
            .headers
            .typed_all::<Contact>()
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        if contacts.iter().any(|c| matches!(c, Contact::Star)) {
            // §10.3 step 6: `*` only with Expires: 0, and alone.
            if default_expires != 0 || contacts.len() != 1 {
                self.respond(req, source, 400, "Bad Request (* needs Expires: 0)", vec![]);
                return;
            }
            if let Some(list) = self.bindings.remove(&user) {
                for b in list {
                    self.contacts.remove(&contact_key(&b.contact));
                }
            }
        }
        for c in contacts.iter().filter_map(|c| c.addr().map(|a| (c, a))) {
            let expires = c.0.expires().unwrap_or(default_expires);
            if expires != 0 && expires < self.config.min_expires {
                let h = Header::new(HeaderName::MinExpires, self.config.min_expires.to_string());
                self.respond(req, source, 423, "Interval Too Brief", vec![h]);
                return;
            }
            let list = self.bindings.entry(user.clone()).or_default();
            list.retain(|b| !same_uri(&b.contact, &c.1.uri));
            let key = contact_key(&c.1.uri);
            if expires > 0 {
                let granted = expires.min(self.config.max_expires);
                let expires_at = now + Duration::from_secs(granted.into());
                list.push(Binding {
                    contact: c.1.uri.clone(),
                    source,
                    expires_at,
                });
                self.contacts.insert(key, source);
                self.earliest = Some(self.earliest.map_or(expires_at, |e| e.min(expires_at)));
            } else {
                self.contacts.remove(&key);
            }
        }
        if self.bindings.get(&user).is_some_and(Vec::is_empty) {
            self.bindings.remove(&user);
        }
        let mut extra = Vec::new();
        for b in self.bindings(&user) {
            let left = b.expires_at.saturating_duration_since(now).as_secs();
            extra.push(Header::new(
                HeaderName::Contact,
                format!("<{}>;expires={left}", b.contact),
            ));
        }
        self.stats.registered += 1;
        self.seen.insert(user);
        self.respond(req, source, 200, "OK", extra);
    }

    fn proxy(&mut self, now: Instant, now_unix: u64, mut req: Message, source: SocketAddr) {
        let method = req.method().unwrap_or(Method::Options);
        if !self.services.is_idle()
            && matches!(
                self.services
                    .handle_known(now, &self.config, &req, source, &mut self.out),
                services::Verdict::Handled
            )
        {
            return;
        }
        // RFC 3261 §16.3 step 3: Max-Forwards.
        let mf = req
            .headers
            .typed::<MaxForwards>()
            .and_then(Result::ok)
            .map_or(70, |m| m.0);
        if mf == 0 {
            if method != Method::Ack {
                self.respond(&req, source, 483, "Too Many Hops", vec![]);
            }
            return;
        }
        req.headers
            .set(Header::new(HeaderName::MaxForwards, (mf - 1).to_string()));

        // §16.4: remove our own Route entry (loose routing) from the top.
        let ours = |r: &Route| {
            r.uri.as_sip().is_some_and(|u| {
                u.host == self.config.host && u.port.unwrap_or(5060) == self.config.port
            })
        };
        if req
            .headers
            .typed::<Route>()
            .and_then(Result::ok)
            .is_some_and(|r| ours(&r))
        {
            pop_first_value(&mut req, HeaderName::Route);
        }
        let in_dialog = req.to().and_then(|t| t.tag()).is_some();
        // The ACK of a final response we generated ourselves (its To tag is ours) ends here.
        if method == Method::Ack
            && req
                .to()
                .and_then(|t| t.tag())
                .is_some_and(|t| t == to_tag_for(&req))
        {
            return;
        }

        let target: Option<SocketAddr> = if in_dialog || method == Method::Ack {
            // In-dialog: the Request-URI is the remote target (a registered contact), or the
            // next Route entry.
            match req.headers.typed::<Route>().and_then(Result::ok) {
                Some(r) => uri_addr(&r.uri),
                None => {
                    // A peer that ignored our Record-Route (SIPp's default scenarios) sends
                    // in-dialog requests to us by AOR: find the user's binding then.
                    let uri = req.request_uri().cloned();
                    let by_aor = uri
                        .as_ref()
                        .filter(|u| uri_addr(u).is_some_and(|a| self.is_our_addr(a)));
                    match by_aor
                        .and_then(Uri::as_sip)
                        .and_then(SipUri::user_unescaped)
                    {
                        Some(user) => match self
                            .bindings
                            .get(&user)
                            .and_then(|l| l.last())
                            .map(|b| (b.contact.clone(), b.source))
                        {
                            Some((contact, to)) => {
                                req = retarget(req, contact);
                                Some(to)
                            }
                            None => None,
                        },
                        None => uri.and_then(|u| self.addr_of_contact(&u)),
                    }
                }
            }
        } else {
            // Initial request: authenticate the caller (407, RFC 3261 §22.3), then look up the callee.
            if method != Method::Cancel {
                match self.auth.check(&req, &method, now_unix, true) {
                    auth::Outcome::Allowed(_) => {}
                    auth::Outcome::Challenge(h) => {
                        self.stats.challenged += 1;
                        self.respond(&req, source, 407, "Proxy Authentication Required", h);
                        return;
                    }
                    auth::Outcome::Forbidden | auth::Outcome::NotFound => {
                        self.respond(&req, source, 403, "Forbidden", vec![]);
                        return;
                    }
                }
            }
            let Some(user) = req
                .request_uri()
                .and_then(Uri::as_sip)
                .and_then(SipUri::user_unescaped)
            else {
                self.respond(&req, source, 404, "Not Found", vec![]);
                return;
            };
            if method == Method::Invite
                && let Some(service) = Service::from_user(&user)
                && self.names_us(&req)
            {
                self.services.handle_invite(
                    now,
                    &self.config,
                    service,
                    &req,
                    source,
                    &mut self.out,
                );
                return;
            }
            // A Request-URI naming another server by address (sip:user@192.0.2.9:5070) is
            // forwarded there: tests may call SIP peers that do not register here.
            let foreign = req
                .request_uri()
                .and_then(uri_addr)
                .filter(|a| !self.is_our_addr(*a));
            match self.bindings.get(&user).and_then(|l| l.last()) {
                Some(b) => {
                    let contact = b.contact.clone();
                    let to = b.source;
                    req = retarget(req, contact);
                    Some(to)
                }
                None if foreign.is_some() => foreign,
                None => {
                    let known = if self.auth.has_accounts() {
                        self.auth.knows(&user)
                    } else {
                        self.seen.contains(&user)
                    };
                    let (code, reason) = if known {
                        (480, "Temporarily Unavailable")
                    } else {
                        (404, "Not Found")
                    };
                    if method != Method::Ack {
                        self.respond(&req, source, code, reason, vec![]);
                    }
                    return;
                }
            }
        };
        let Some(to) = target else {
            if method != Method::Ack {
                self.respond(&req, source, 404, "Not Found (unknown target)", vec![]);
            }
            return;
        };
        // §16.6 step 4: Record-Route on dialog-creating requests.
        if method == Method::Invite && !in_dialog {
            let rr = format!("<sip:{}:{};lr>", self.config.host, self.config.port);
            req.headers
                .push_front(Header::new(HeaderName::RecordRoute, rr));
        }
        // §16.11: a stateless proxy's branch is a function of the incoming branch, so
        // retransmissions and the CANCEL of an INVITE map to the same branch.
        let incoming = req.top_via().and_then(|v| v.branch()).unwrap_or_default();
        let branch = format!("{BRANCH_MAGIC}sm{}", fnv(&incoming));
        // Record where the request came from on its Via (RFC 3581), so responses find it.
        if let Some(mut via) = req.top_via() {
            via.params.set("received", Some(&source.ip().to_string()));
            if via.params.contains("rport") {
                via.params.set("rport", Some(&source.port().to_string()));
            }
            pop_first_value(&mut req, HeaderName::Via);
            req.headers
                .push_front(Header::new(HeaderName::Via, via.to_string()));
        }
        let ours = Via::new(
            &self.config.transport,
            self.config.host.clone(),
            Some(self.config.port),
            &branch,
        );
        req.headers
            .push_front(Header::new(HeaderName::Via, ours.to_string()));
        self.stats.forwarded += 1;
        self.out.push_back((to, Bytes::from(req.to_bytes())));
    }

    /// §16.7 / §16.11: pop our Via and send the response to the next Via's address.
    fn forward_response(&mut self, mut resp: Message) {
        let ours = resp.top_via().is_some_and(|v| {
            v.host == self.config.host && v.port.unwrap_or(5060) == self.config.port
        });
        // A response whose top Via is not ours was sent to us by a peer that answers "the
        // address the call came from" instead of following Via (SIPp's stock UAS does that for
        // in-dialog requests that bypassed us). RFC 3261 §16.7 would drop it; we deliver it
        // along its top Via, so such peers still interoperate.
        if ours {
            pop_first_value(&mut resp, HeaderName::Via);
        }
        let Some(next) = resp.top_via() else {
            self.stats.dropped += 1;
            return;
        };
        let via_ip = match &next.host {
            Host::V4(a) => Some(std::net::IpAddr::V4(*a)),
            Host::V6(a) => Some(std::net::IpAddr::V6(*a)),
            Host::Name(_) => None,
        };
        let host = next.received().and_then(|r| r.parse().ok()).or(via_ip);
        let port = next.rport().flatten().or(next.port).unwrap_or(5060);
        let Some(host) = host else {
            self.stats.dropped += 1;
            return;
        };
        self.stats.responses_forwarded += 1;
        self.out
            .push_back((SocketAddr::new(host, port), Bytes::from(resp.to_bytes())));
    }

    /// True when the Request-URI's host is our domain or our own address.
    fn names_us(&self, req: &Message) -> bool {
        let Some(u) = req.request_uri().and_then(Uri::as_sip) else {
            return false;
        };
        match &u.host {
            Host::Name(n) => n.eq_ignore_ascii_case(&self.config.domain),
            _ => req
                .request_uri()
                .and_then(uri_addr)
                .is_some_and(|a| self.is_our_addr(a)),
        }
    }

    /// True when `a` is this registrar's own address.
    fn is_our_addr(&self, a: SocketAddr) -> bool {
        let ours = match &self.config.host {
            Host::V4(ip) => Some(std::net::IpAddr::V4(*ip)),
            Host::V6(ip) => Some(std::net::IpAddr::V6(*ip)),
            Host::Name(_) => None,
        };
        ours == Some(a.ip()) && a.port() == self.config.port
    }

    /// The address of a registered contact: the source its REGISTER came from.
    fn addr_of_contact(&self, uri: &Uri) -> Option<SocketAddr> {
        self.contacts
            .get(&contact_key(uri))
            .copied()
            .or_else(|| uri_addr(uri))
    }
}

/// Replaces the Request-URI with the registered contact (§16.5 target → §16.6 step 2).
fn retarget(req: Message, contact: Uri) -> Message {
    let mut out = Message::new_request(req.method().unwrap_or(Method::Options), contact);
    for h in req.headers.iter() {
        out.headers.push(Header::new(h.name().clone(), h.value()));
    }
    if !req.body().is_empty() {
        let ct = req
            .headers
            .value(&HeaderName::ContentType)
            .unwrap_or("application/sdp")
            .to_owned();
        out.set_body(&ct, req.body().clone());
    }
    out
}

/// Removes the first value of a (possibly comma-joined) header.
fn pop_first_value(msg: &mut Message, name: HeaderName) {
    let Some(first) = msg.headers.get(&name).map(|h| h.value().to_owned()) else {
        return;
    };
    let rest: Vec<String> = split_values(&first).into_iter().skip(1).collect();
    let pos = msg
        .headers
        .iter()
        .position(|h| h.name() == &name)
        .unwrap_or(0);
    let others: Vec<Header> = msg.headers.iter().cloned().collect();
    let mut rebuilt = sip_msg::Headers::new();
    for (i, h) in others.into_iter().enumerate() {
        if i == pos {
            if !rest.is_empty() {
                rebuilt.push(Header::new(name.clone(), rest.join(", ")));
            }
        } else {
            rebuilt.push(h);
        }
    }
    msg.headers = rebuilt;
}

fn split_values(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth_quote = false;
    let mut angle = false;
    let mut cur = String::new();
    for c in v.chars() {
        match c {
            '"' => depth_quote = !depth_quote,
            '<' if !depth_quote => angle = true,
            '>' if !depth_quote => angle = false,
            ',' if !depth_quote && !angle => {
                out.push(cur.trim().to_owned());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_owned());
    out
}

fn uri_addr(uri: &Uri) -> Option<SocketAddr> {
    let u = uri.as_sip()?;
    let ip = match &u.host {
        Host::V4(a) => std::net::IpAddr::V4(*a),
        Host::V6(a) => std::net::IpAddr::V6(*a),
        Host::Name(_) => return None,
    };
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

fn same_uri(a: &Uri, b: &Uri) -> bool {
    match (a.as_sip(), b.as_sip()) {
        (Some(a), Some(b)) => {
            a.user == b.user && a.host == b.host && a.port.unwrap_or(5060) == b.port.unwrap_or(5060)
        }
        _ => a == b,
    }
}

/// The key of a contact in the index: `user@host:port` (port defaulted).
fn contact_key(uri: &Uri) -> String {
    match uri.as_sip() {
        Some(u) => format!(
            "{}@{}:{}",
            u.user.as_deref().unwrap_or(""),
            u.host,
            u.port.unwrap_or(5060)
        ),
        None => uri.to_string(),
    }
}

/// A To tag for our own responses: stable per request so retransmitted requests get the same.
fn to_tag_for(req: &Message) -> String {
    let key = format!(
        "{}{}",
        req.call_id().unwrap_or_default(),
        req.top_via().and_then(|v| v.branch()).unwrap_or_default()
    );
    format!("r{}", fnv(&key))
}

/// FNV-1a, hex: a cheap deterministic digest for branches and tags (not security relevant).
fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
