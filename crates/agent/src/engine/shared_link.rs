//! Trunk-style shared connections (`connections = "shared"` on a registrar entry): over TCP,
//! TLS, WS or WSS the shard's endpoints of that server share one connection, as a SIP trunk
//! or an SBC peer carries all its calls on one (SIPp's `-t t1`), instead of one each.
//!
//! The connection is one more entry of the shard's poll set, keyed past the endpoints'
//! indices (`endpoints.len() + site`), opened when the shard starts. An endpoint that would
//! open its own connection joins the shared one instead ([`Shard::join_shared_link`]): what
//! happens to the shared connection is handed to each endpoint on it as the same
//! [`StreamEvent`] its own connection would have raised, so the per-endpoint handling
//! (`on_stream`: a new agent with the connection's address in Via and Contact, REGISTER;
//! OSERROR or REGISTRATION_FAILED with `check`'s words; reconnect with backoff and register
//! again; a call lost with the connection) is the same code. Messages arriving on it are
//! routed to endpoints as the shared UDP socket's are: requests by Request-URI user (the
//! Contact user, unique in the shard), responses by Call-ID.
//!
//! Not here: an outbound proxy (refused with `shared` when the test file is read) and RFC
//! 3263 failover (a shared connection stays on the server's first target).

use std::net::SocketAddr;
use std::time::Instant;

use super::Shard;
use crate::conn::{SEND_QUEUE, SHARED_SEND_QUEUE_MAX, StreamEvent, StreamIn};
use crate::netpoll::Leg;
use crate::trace::TraceEntry;

/// One shard's shared connection to one server.
#[derive(Debug)]
pub(super) struct SharedLink {
    /// Its key in the shard's poll set: past every endpoint's index.
    key: usize,
    /// Counts connection attempts: events of an older one are stale.
    generation: u32,
    /// Where it goes.
    addr: SocketAddr,
    /// Our address on it, once connected (every endpoint's Via and Contact).
    local: Option<SocketAddr>,
    /// A connect is in progress.
    connecting: bool,
    /// Connected at least once: a later connection is a reconnect.
    was_up: bool,
    /// The connect's notes (TCP, TLS, WebSocket), for each endpoint's trace.
    notes: Vec<String>,
    /// Endpoints waiting for it to connect.
    waiting: Vec<usize>,
    /// Endpoints of the server in this shard not finished: the last one closes it.
    members: usize,
}

impl Shard<'_> {
    /// Makes the shard's shared connections (servers with `connections = "shared"` over a
    /// stream transport and endpoints in this shard) and starts opening them.
    pub(super) fn open_shared_links(&mut self, now: Instant) {
        let sites = self.streams.len();
        self.shared_links = (0..sites).map(|_| None).collect();
        for site in 0..sites {
            let server = self.plan.site_server(site);
            if self.streams[site].is_none() || !server.transport.shared_connection {
                continue;
            }
            let members = (0..self.endpoints.len())
                .filter(|&i| self.site(i) == site)
                .count();
            if members == 0 {
                continue;
            }
            let addr = self.targets[site].get(0).map_or(server.addr, |t| t.addr);
            self.shared_links[site] = Some(SharedLink {
                key: self.endpoints.len() + site,
                generation: 0,
                addr,
                local: None,
                connecting: false,
                was_up: false,
                notes: Vec::new(),
                waiting: Vec::new(),
                members,
            });
            self.open_shared_link(site, now);
        }
    }

    /// True when server `site`'s endpoints in this shard share one connection.
    pub(super) fn shares_connection(&self, site: usize) -> bool {
        self.shared_links.get(site).is_some_and(Option::is_some)
    }

    /// The poll-set key endpoint `idx` sends on: its shared connection's, else its own.
    pub(super) fn conn_key(&self, idx: usize) -> usize {
        self.shared_links
            .get(self.site(idx))
            .and_then(Option::as_ref)
            .map_or(idx, |l| l.key)
    }

    /// Starts a new connect of server `site`'s shared connection.
    fn open_shared_link(&mut self, site: usize, now: Instant) {
        let Some(settings) = self.streams[site].clone() else {
            return;
        };
        let Some(link) = self.shared_links[site].as_mut() else {
            return;
        };
        link.generation += 1;
        link.connecting = true;
        link.local = None;
        self.net.connect_to(
            link.key,
            Leg::Server,
            link.generation,
            now,
            link.addr,
            settings,
        );
        // Room for every member's messages (a trunk waits for a slow server, it does not
        // drop its calls' messages).
        let limit = link
            .members
            .saturating_mul(SEND_QUEUE)
            .min(SHARED_SEND_QUEUE_MAX);
        self.net.set_send_limit(link.key, Leg::Server, limit);
    }

    /// `connect` for an endpoint on a shared connection: it joins the connection (opening
    /// it when it is down) and hears of it as of its own. False: it has none, connect as
    /// before.
    pub(super) fn join_shared_link(&mut self, idx: usize, now: Instant) -> bool {
        let site = self.site(idx);
        let Some(kind) = self.streams[site].as_ref().map(|s| s.kind) else {
            return false;
        };
        let Some(link) = self.shared_links.get_mut(site).and_then(Option::as_mut) else {
            return false;
        };
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        ep.link.generation += 1;
        ep.link.local = None;
        ep.link.addr = Some(link.addr);
        let again = if ep.link.was_up { " (reconnect)" } else { "" };
        let (addr, via) = (link.addr, kind.via_token());
        if let Some(local) = link.local {
            ep.trace.push(TraceEntry::note(
                format!("on the shard's shared {via} connection {local} → {addr}{again}"),
                at,
            ));
            let notes = link.notes.clone();
            // Joining an open connection reconnects nothing (the endpoint counts one).
            let reconnects = self.stats.reconnects;
            self.deliver(idx, now, StreamEvent::Connected { local, notes });
            self.stats.reconnects = reconnects;
            return true;
        }
        link.waiting.push(idx);
        if link.connecting {
            ep.trace.push(TraceEntry::note(
                format!("waiting for the shard's shared {via} connection to {addr}{again}"),
                at,
            ));
        } else {
            ep.trace.push(TraceEntry::note(
                format!("connecting over {via} to {addr} (the shard's shared connection){again}"),
                at,
            ));
            self.open_shared_link(site, now);
        }
        true
    }

    /// Hands `event` to endpoint `idx` as news of its own (current) connection.
    fn deliver(&mut self, idx: usize, now: Instant, event: StreamEvent) {
        let generation = self.endpoints[idx].link.generation;
        self.on_stream(
            now,
            StreamIn {
                endpoint: idx,
                leg: Leg::Server,
                generation,
                event,
                // Not read past `on_net`, which set `rx_arrival` for the shared
                // connection's message (it stays set while it is handed on here).
                arrived: None,
            },
        );
    }

    /// News from a shared connection (`m.endpoint` is its key).
    pub(super) fn on_shared_stream(&mut self, now: Instant, m: StreamIn) {
        let Some(site) = m.endpoint.checked_sub(self.endpoints.len()) else {
            return;
        };
        let Some(kind) = self
            .streams
            .get(site)
            .and_then(|s| s.as_ref())
            .map(|s| s.kind)
        else {
            return;
        };
        let Some(link) = self.shared_links.get_mut(site).and_then(Option::as_mut) else {
            return;
        };
        if m.generation != link.generation || link.members == 0 {
            return; // an older connection, or one closed as its last endpoint left
        }
        match m.event {
            StreamEvent::Connected { local, notes } => {
                link.connecting = false;
                link.local = Some(local);
                link.notes = notes
                    .into_iter()
                    .map(|n| format!("shared connection: {n}"))
                    .collect();
                let reconnect = std::mem::replace(&mut link.was_up, true);
                let waiting = std::mem::take(&mut link.waiting);
                let notes = link.notes.clone();
                // Each endpoint counts its own reconnect; here one connection reconnected.
                let reconnects = self.stats.reconnects;
                for w in waiting {
                    let ep = &self.endpoints[w];
                    if ep.done || ep.link.local.is_some() {
                        continue;
                    }
                    let notes = notes.clone();
                    self.deliver(w, now, StreamEvent::Connected { local, notes });
                }
                self.stats.reconnects = reconnects + u64::from(reconnect);
            }
            StreamEvent::Failed {
                error,
                hint,
                after_tcp,
            } => {
                link.connecting = false;
                for w in std::mem::take(&mut link.waiting) {
                    if self.endpoints[w].done || self.endpoints[w].link.local.is_some() {
                        continue;
                    }
                    let event = StreamEvent::Failed {
                        error: error.clone(),
                        hint: hint.clone(),
                        after_tcp,
                    };
                    self.deliver(w, now, event);
                }
            }
            StreamEvent::Message(bytes) => {
                let from = link.addr;
                let local = link.local.unwrap_or(from);
                self.rx_shared = Some((kind, local));
                self.on_message(now, bytes, from, None);
                self.rx_shared = None;
            }
            StreamEvent::Datagram(..) => {}
            StreamEvent::Closed(reason) => {
                link.local = None;
                link.notes.clear();
                // Every endpoint on it loses it: each goes on as on the loss of its own
                // (reconnect and register again, or OSERROR); the first to reconnect
                // reopens it, the others wait for it.
                for j in 0..self.endpoints.len() {
                    let ep = &self.endpoints[j];
                    if ep.done || ep.link.local.is_none() || self.site(j) != site {
                        continue;
                    }
                    self.deliver(j, now, StreamEvent::Closed(reason.clone()));
                }
            }
        }
    }

    /// Endpoint `idx` finished: the last endpoint of a shared connection closes it.
    pub(super) fn left_shared_link(&mut self, idx: usize) {
        let site = self.site(idx);
        let Some(link) = self.shared_links.get_mut(site).and_then(Option::as_mut) else {
            return;
        };
        link.members = link.members.saturating_sub(1);
        link.waiting.retain(|&w| w != idx);
        if link.members == 0 {
            link.local = None;
            link.connecting = false;
            self.net.close(link.key, Leg::Server);
        }
    }
}
