//! An endpoint's second connection, to its outbound proxy, over TCP, TLS, WS or WSS.
//!
//! The seed's rule (product.md, "Registrars"): every INVITE carries `Route: <PROXY;lr>` and
//! goes to the proxy; REGISTER does not. Over UDP that is only another address on the shared
//! socket. Over a stream transport the endpoint holds a connection to the proxy besides the one
//! to its registrar, in the same poll set ([`crate::netpoll::Leg::Proxy`]): no task, and the
//! endpoint stays one entry of the shard's slab.
//!
//! - It is opened with the registrar's connection, at start: a refused proxy shows before the
//!   first call, and a call's setup time holds no TCP/TLS handshake.
//! - Via and Contact of the calls placed through it carry its address (RFC 3261 §18.1.1,
//!   §8.1.1.8): the proxy routes the dialog's requests back to us over it.
//! - Lost, it is reopened at once; a call through it is lost with it (as with the registrar's
//!   connection). A dial finding it down opens it and waits; a connect that fails then fails
//!   the call with OSERROR (CALL_FAILED for a TLS or WebSocket refusal), and the error names
//!   the proxy.

use std::net::SocketAddr;
use std::time::Instant;

use sip_msg::Host;
use sip_proto::ua::Destination;

use super::{Outcome, Role, Shard, uri_addr};
use crate::conn::{StreamEvent, StreamIn};
use crate::netpoll::Leg;
use crate::trace::TraceEntry;

/// The state of an endpoint's connection to its outbound proxy (boxed in [`super::Link`]:
/// only endpoints with one pay for it).
#[derive(Debug, Default)]
pub(super) struct ProxyLink {
    /// Counts connection attempts: events of an older one are stale.
    generation: u32,
    /// Our address on it, once connected.
    pub(super) local: Option<SocketAddr>,
    /// A connect is in progress.
    pub(super) connecting: bool,
    /// Connected at least once: a later connection is a reconnect.
    was_up: bool,
    /// A dial waits for the connection.
    dial_waiting: bool,
    /// A call that moved to this proxy target (RFC 3263 §4.3) waits for the connection.
    pub(super) retry: Option<Box<super::failover_glue::CallRetry>>,
}

/// Our host as Via and Contact write it.
pub(super) fn host_of(a: SocketAddr) -> Host {
    match a {
        SocketAddr::V4(a) => Host::V4(*a.ip()),
        SocketAddr::V6(a) => Host::V6(*a.ip()),
    }
}

impl Shard<'_> {
    /// The outbound proxy's address when endpoint `idx` reaches it over a connection of its
    /// own (a stream transport with `outbound_proxy`): its current proxy target.
    pub(super) fn proxy_conn_addr(&self, idx: usize) -> Option<SocketAddr> {
        let settings = self.streams[self.site(idx)].as_ref()?;
        settings
            .proxy
            .as_ref()
            .map(|p| self.proxy_target(idx, p.addr))
    }

    /// Opens endpoint `idx`'s connection to its outbound proxy (a new generation), unless
    /// it is open or opening.
    pub(super) fn connect_proxy(&mut self, idx: usize, now: Instant) {
        let Some(settings) = self.streams[self.site(idx)]
            .as_ref()
            .and_then(|s| s.proxy.clone())
        else {
            return;
        };
        let ep = &mut self.endpoints[idx];
        let link = ep.link.proxy.get_or_insert_with(Default::default);
        if link.connecting || link.local.is_some() {
            return;
        }
        let addr = self.proxy_target_up(idx, now, settings.addr);
        let ep = &mut self.endpoints[idx];
        let link = ep.link.proxy.get_or_insert_with(Default::default);
        link.generation += 1;
        link.connecting = true;
        ep.trace.push(TraceEntry::note(
            format!(
                "connecting over {} to the outbound proxy {}{}",
                settings.kind.via_token(),
                addr,
                if link.was_up { " (reconnect)" } else { "" }
            ),
            now - self.start,
        ));
        let generation = link.generation;
        self.net
            .connect_to(idx, Leg::Proxy, generation, now, addr, settings);
    }

    /// Which connection of endpoint `idx` a message to `to` leaves on: the proxy's for the
    /// proxy's address and for INVITE, CANCEL and non-2xx ACK ([`Destination::OutboundProxy`]);
    /// the registrar's for the rest, except an in-dialog request to a target we have no
    /// connection to (no Record-Route): it takes the flow its dialog was made on, the proxy's
    /// for the calls we place (RFC 5923 §1's reuse of a connection for the dialog).
    pub(super) fn leg_for(&self, idx: usize, to: &Destination) -> Leg {
        let Some(proxy) = self.proxy_conn_addr(idx) else {
            return Leg::Server;
        };
        let ep = &self.endpoints[idx];
        let server = ep
            .link
            .addr
            .unwrap_or_else(|| self.plan.site_server(self.site(idx)).addr);
        match to {
            Destination::OutboundProxy => Leg::Proxy,
            Destination::Registrar => Leg::Server,
            Destination::Source(a) if *a == proxy => Leg::Proxy,
            Destination::Source(_) => Leg::Server,
            Destination::Uri(u) => match uri_addr(u) {
                Some(a) if a == proxy => Leg::Proxy,
                Some(a) if a == server => Leg::Server,
                _ if matches!(self.plan.groups[ep.group].role, Role::Call { .. }) => Leg::Proxy,
                _ => Leg::Server,
            },
        }
    }

    /// Endpoint `idx`'s address on connection `leg` (Via, Contact, the trace), if open.
    pub(super) fn leg_local(&self, idx: usize, leg: Leg) -> Option<SocketAddr> {
        let link = &self.endpoints[idx].link;
        match leg {
            Leg::Server => link.local,
            Leg::Proxy => link.proxy.as_ref().and_then(|p| p.local),
        }
    }

    /// A dial of endpoint `idx` may go ahead: its proxy connection is open (or it needs
    /// none). Else the connection is (re)opened and the dial waits for it: true.
    pub(super) fn dial_waits_for_proxy(&mut self, idx: usize, now: Instant) -> bool {
        if self.proxy_conn_addr(idx).is_none() || self.leg_local(idx, Leg::Proxy).is_some() {
            return false;
        }
        self.connect_proxy(idx, now);
        if let Some(link) = self.endpoints[idx].link.proxy.as_mut() {
            link.dial_waiting = true;
        }
        true
    }

    /// News from endpoint `m.endpoint`'s connection to its outbound proxy.
    pub(super) fn on_proxy_stream(&mut self, now: Instant, m: StreamIn) {
        let idx = m.endpoint;
        let Some(proxy) = self.proxy_conn_addr(idx) else {
            return;
        };
        let kind = self.plan.site_server(self.site(idx)).transport.kind;
        let reconnect = self.plan.site_server(self.site(idx)).transport.reconnect;
        let at = now - self.start;
        let stopping = self.stopping;
        let ep = &mut self.endpoints[idx];
        let Some(link) = ep.link.proxy.as_mut() else {
            return;
        };
        if m.generation != link.generation || ep.done {
            return; // an older connection, or an endpoint that finished
        }
        match m.event {
            StreamEvent::Connected { local, notes } => {
                for n in notes {
                    ep.trace
                        .push(TraceEntry::note(format!("outbound proxy: {n}"), at));
                }
                link.connecting = false;
                link.local = Some(local);
                if std::mem::replace(&mut link.was_up, true) {
                    self.stats.reconnects += 1;
                }
                ep.ua.set_proxy_local(Some((host_of(local), local.port())));
                // A call moved here waited for it, or a dial (not after a stop began: the
                // stop ends the endpoint).
                if !stopping && self.resend_moved_call(idx, now) {
                    self.pump(idx, now);
                    return;
                }
                let Some(link) = self.endpoints[idx].link.proxy.as_mut() else {
                    return;
                };
                if std::mem::take(&mut link.dial_waiting) && !stopping {
                    self.dial(idx, now);
                    self.pump(idx, now);
                }
            }
            StreamEvent::Failed {
                error,
                hint,
                after_tcp,
            } => {
                link.connecting = false;
                ep.trace.push(TraceEntry::note(
                    format!(
                        "{} connection to the outbound proxy {proxy} failed: {error}",
                        kind.via_token()
                    ),
                    at,
                ));
                // RFC 3263 §4.3: a refused or silent target moves to the proxy's next one (a
                // waiting dial or moved call goes on waiting); not a TLS or WebSocket refusal.
                if !after_tcp && self.proxy_connect_failed_over(idx, now, &error) {
                    return;
                }
                let ep = &mut self.endpoints[idx];
                let Some(link) = ep.link.proxy.as_mut() else {
                    return;
                };
                let waiting = std::mem::take(&mut link.dial_waiting);
                let moved = link.retry.take().is_some();
                if waiting || moved {
                    // The call cannot leave. A refused or silent proxy is a socket error
                    // (OSERROR); a TLS or WebSocket refusal, a configuration error, fails the
                    // call (as it fails the registration with the registrar). The error and
                    // hint name the proxy, not the registrar. A moved call was counted.
                    ep.calls_attempted += u32::from(waiting);
                    ep.worsen(
                        if after_tcp {
                            Outcome::CallFailed
                        } else {
                            Outcome::Oserror
                        },
                        format!(
                            "cannot connect over {} to the outbound proxy {proxy}: {error}: {}",
                            kind.via_token(),
                            hint.replace("the server", "the outbound proxy"),
                        ),
                    );
                    self.after_call(idx, now);
                    self.schedule(idx);
                }
            }
            StreamEvent::Message(bytes) => self.on_message(now, bytes, proxy, Some(idx)),
            StreamEvent::Datagram(..) => {}
            StreamEvent::Closed(reason) => {
                link.local = None;
                ep.trace.push(TraceEntry::note(
                    format!("connection to the outbound proxy closed: {reason}"),
                    at,
                ));
                // A call placed through it is lost with it (the proxy reaches us for it only
                // there), as a call is lost with the registrar's connection.
                let placed = matches!(self.plan.groups[ep.group].role, Role::Call { .. });
                if placed && let Some(call) = ep.active_call.take() {
                    ep.worsen(
                        super::Outcome::CallFailed,
                        format!("the call was lost with the outbound proxy's connection: {reason}"),
                    );
                    ep.ua.forget_call(call);
                    self.end_media(idx, now);
                    self.after_call(idx, now);
                    self.schedule(idx);
                }
                let ep = &mut self.endpoints[idx];
                if reconnect && !stopping && !ep.link.leaving {
                    ep.trace.push(TraceEntry::note(
                        "reopening the connection to the outbound proxy".into(),
                        at,
                    ));
                    self.connect_proxy(idx, now);
                }
            }
        }
    }
}
