//! RFC 3263 §4.3 failover of the outbound proxy: an `outbound_proxy` given by name is located
//! on its own name when the run starts (`runner::locate`), and its targets (SRV priority and
//! weight, then A/AAAA) are a [`crate::failover::TargetList`] as the registrar's are. The rules
//! are the registrar's ([`crate::failover`]: the shard's table marks a target down for
//! [`crate::failover::DEAD_HOLD`] after a timeout or a refused connection, or for a 503's
//! Retry-After; each request visits each target once); only what moves differs:
//!
//! - Only the initial INVITE goes to the proxy (REGISTER goes to the registrar), so only it
//!   moves: on Timer B or a 503 it is sent again, as a new transaction (new branch, and a new
//!   Call-ID as the registrar's failover sends it) to the next target, keeping its SDP, media
//!   ports and first INVITE time. No registration is needed first: the registrar is the same.
//! - A CANCEL and the ACK of a failure go where their INVITE went (RFC 3261 §9.1, §17.1.1.3).
//! - Requests inside a dialog do not move: they follow the route set, whose first entry is the
//!   Record-Route of the proxy that served the call (its address, not the name), or the remote
//!   target. A proxy that dies under an established call loses that call, as a registrar does.
//! - Over TCP, TLS, WS and WSS the endpoint's second connection goes to its current proxy
//!   target: a refused or timed-out connect moves it to the next at once (a TLS or WebSocket
//!   refusal does not: a configuration error, as for the registrar); a Timer B or 503 closes
//!   the connection, opens one to the next target, and sends the call again once it is open.
//!
//! An endpoint keeps its proxy target across calls; a new INVITE skips a target that another
//! endpoint of the shard found down.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip_proto::ua::CallId;

use super::Shard;
use super::failover_glue::CallRetry;
use crate::failover::{EndpointFailover, Failure};
use crate::trace::TraceEntry;

/// An endpoint's outbound proxy failover state (boxed in the endpoint: only runs whose proxy
/// has more than one target pay for it). The `resume` slot is unused: nothing to register.
pub(super) type ProxyFailover = EndpointFailover<()>;

impl Shard<'_> {
    /// Endpoint `idx`'s current proxy target (`configured` without a failover list).
    pub(super) fn proxy_target(&self, idx: usize, configured: SocketAddr) -> SocketAddr {
        let site = self.site(idx);
        self.endpoints[idx]
            .proxy_failover
            .as_ref()
            .and_then(|f| self.proxy_targets[site].get(f.current()))
            .map_or(configured, |t| t.addr)
    }

    /// Endpoint `idx`'s proxy target for a new INVITE or connection: its current one, moved
    /// past one that another endpoint of the shard found down (the trace says so).
    pub(super) fn proxy_target_up(
        &mut self,
        idx: usize,
        now: Instant,
        configured: SocketAddr,
    ) -> SocketAddr {
        let site = self.site(idx);
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let Some(f) = ep.proxy_failover.as_deref_mut() else {
            return configured;
        };
        let table = &self.proxy_targets[site];
        if table.is_down(f.current(), now)
            && let Some(note) = f.skip_down(table, now)
        {
            ep.trace
                .push(TraceEntry::note(format!("outbound proxy: {note}"), at));
        }
        table.get(f.current()).map_or(configured, |t| t.addr)
    }

    /// Where a request for the outbound proxy goes (UDP): an INVITE to the endpoint's current
    /// target ([`Shard::proxy_target_up`]), remembered; its CANCEL and the ACK of its failure
    /// where it went.
    pub(super) fn proxy_addr(
        &mut self,
        idx: usize,
        now: Instant,
        bytes: &[u8],
        configured: SocketAddr,
    ) -> SocketAddr {
        if bytes.starts_with(b"INVITE ") {
            let addr = self.proxy_target_up(idx, now, configured);
            if let Some(f) = self.endpoints[idx].proxy_failover.as_deref_mut() {
                f.invite_sent_to = f.current();
            }
            return addr;
        }
        let site = self.site(idx);
        let Some(f) = self.endpoints[idx].proxy_failover.as_deref() else {
            return configured;
        };
        let i = if bytes.starts_with(b"CANCEL ") || bytes.starts_with(b"ACK ") {
            f.invite_sent_to
        } else {
            f.current()
        };
        self.proxy_targets[site]
            .get(i)
            .map_or(configured, |t| t.addr)
    }

    /// An initial INVITE through the outbound proxy ended with `code`: on Timer B or a 503
    /// (RFC 3263 §4.3) send it again to the proxy's next target and return true; false when
    /// the proxy has one target, every target was tried, or the failure is an answer.
    pub(super) fn proxy_call_failed_over(
        &mut self,
        idx: usize,
        now: Instant,
        call: CallId,
        code: u16,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> bool {
        // An outbound flow through the proxy (RFC 5626) is the registration's: an INVITE does
        // not move it (a new flow is formed when it fails, and registered).
        if self.endpoints[idx].proxy_failover.is_none()
            || self.plan.site_server(self.site(idx)).flow_via_proxy()
        {
            return false;
        }
        let Some((retry, failure)) = self.call_retry(idx, call, code, reason, retry_after) else {
            return false;
        };
        let site = self.site(idx);
        if !self.proxy_moved_on(idx, now, false, &failure) {
            return false;
        }
        let ep = &mut self.endpoints[idx];
        // The failed INVITE is over; the call (and its media) carries on as the new one.
        ep.ua.forget_call(call);
        ep.active_call = None;
        if self.streams[site].is_some() {
            // Its connection goes to the failed target: open one to the next, and send the
            // call once it is up (`on_proxy_stream`).
            self.reconnect_proxy_elsewhere(idx, now, retry);
        } else {
            ep.active_call = Some(ep.ua.call(now, retry.target, retry.sdp));
        }
        true
    }

    /// Stream transports: endpoint `idx`'s connect to its proxy target failed (refused,
    /// unreachable, timed out; not a TLS or WebSocket refusal). With a target left, connect
    /// there now and return true (a dial waiting for the connection keeps waiting).
    pub(super) fn proxy_connect_failed_over(
        &mut self,
        idx: usize,
        now: Instant,
        error: &str,
    ) -> bool {
        if !self.proxy_flow_failed_over(idx, now, error) {
            return false;
        }
        self.connect_proxy(idx, now);
        true
    }

    /// A connect of endpoint `idx` to its proxy target failed: true when it has moved to the
    /// proxy's next target (the caller connects there).
    pub(super) fn proxy_flow_failed_over(&mut self, idx: usize, now: Instant, error: &str) -> bool {
        if self.stopping || self.endpoints[idx].link.leaving {
            return false;
        }
        let failure = Failure::Transport(format!("connect failed: {error}"));
        self.proxy_moved_on(idx, now, true, &failure)
    }

    /// Endpoint `idx`'s proxy target failed (the one its INVITE went to, or with `current`
    /// the one it connects to): mark it, pick the next, say so in the trace. True when the
    /// endpoint now has a next target (a failover, counted).
    fn proxy_moved_on(
        &mut self,
        idx: usize,
        now: Instant,
        current: bool,
        failure: &Failure,
    ) -> bool {
        let site = self.site(idx);
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let Some(f) = ep.proxy_failover.as_deref_mut() else {
            return false;
        };
        let failed = if current {
            f.current()
        } else {
            f.invite_sent_to
        };
        let d = f.handle_failure(&mut self.proxy_targets[site], failed, failure, now);
        ep.trace
            .push(TraceEntry::note(format!("outbound proxy: {}", d.note), at));
        if d.next.is_none() {
            return false;
        }
        self.stats.failovers += 1;
        true
    }

    /// Stream transports: the call moved to the proxy's next target after a timeout or a
    /// 503: close the connection to the failed one, open one to the next; the call is sent
    /// again once it is up.
    fn reconnect_proxy_elsewhere(&mut self, idx: usize, now: Instant, retry: Box<CallRetry>) {
        self.net.close(idx, crate::netpoll::Leg::Proxy);
        let ep = &mut self.endpoints[idx];
        ep.ua.set_proxy_local(None);
        let link = ep.link.proxy.get_or_insert_with(Default::default);
        link.local = None;
        link.connecting = false;
        link.retry = Some(retry);
        self.connect_proxy(idx, now);
    }

    /// The proxy connection of endpoint `idx` is up: a call that moved here is sent now.
    /// True when one was.
    pub(super) fn resend_moved_call(&mut self, idx: usize, now: Instant) -> bool {
        let ep = &mut self.endpoints[idx];
        let Some(retry) = ep.link.proxy.as_mut().and_then(|l| l.retry.take()) else {
            return false;
        };
        ep.active_call = Some(ep.ua.call(now, retry.target, retry.sdp));
        true
    }
}
