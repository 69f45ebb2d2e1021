//! The engine's side of RFC 3263 §4.3 failover (the rules are in [`crate::failover`]): where
//! an endpoint's REGISTER and initial INVITE go, and what the shard does when one of them
//! meets a timeout or a 503. A child of `engine` so the shard's hooks stay one line each.
//!
//! Stream transports (TCP, TLS, WS, WSS): each endpoint's connection goes to its current
//! target. A refused or timed-out connect moves it to the next target; a timeout or a 503
//! moves it too, over a new connection (see docs/notes-failover2.md).

use std::time::Instant;

use bytes::Bytes;
use sip_msg::{Message, Uri};
use sip_proto::ua::{CallId, RegState};

use super::Script;
use super::{Role, Shard};
use crate::failover::{Failure, Resume, parse_retry_after};
use crate::trace::TraceEntry;

/// A call to send again on the next target: its Request-URI and our SDP offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CallRetry {
    pub(super) target: Uri,
    pub(super) sdp: Option<Bytes>,
}

impl Shard<'_> {
    /// The address for a request to the registrar (REGISTER, or an INVITE without outbound
    /// proxy): the endpoint's current target. Remembers where REGISTERs and INVITEs went;
    /// a CANCEL and the ACK of a failure go where their INVITE went (RFC 3261 §9.1, §17.1.1.3).
    pub(super) fn registrar_addr(&mut self, idx: usize, bytes: &[u8]) -> std::net::SocketAddr {
        let site = self.site(idx);
        let ep = &mut self.endpoints[idx];
        let mut i = ep.failover.current();
        if bytes.starts_with(b"CANCEL ") || bytes.starts_with(b"ACK ") {
            i = ep.failover.invite_sent_to;
        } else if bytes.starts_with(b"REGISTER ") {
            ep.failover.register_sent_to = i;
            ep.failover.register_pending = true;
        } else if bytes.starts_with(b"INVITE ") {
            ep.failover.invite_sent_to = i;
        }
        self.targets[site]
            .get(i)
            .map_or(self.plan.site_server(site).addr, |t| t.addr)
    }

    /// A response for endpoint `idx` arrived: keep a 503's Retry-After for the failure.
    pub(super) fn note_retry_after(&mut self, idx: usize, msg: &Message) {
        if msg.status() == Some(503) {
            self.endpoints[idx].failover.retry_after = msg
                .headers
                .value(&sip_msg::HeaderName::RetryAfter)
                .and_then(parse_retry_after);
        }
    }

    /// Failover is possible for server `site`'s endpoints: more than one target, not
    /// stopping.
    fn can_fail_over(&self, site: usize) -> bool {
        // A shared connection stays on its target (`shared_link`): no failover. An outbound
        // flow through the proxy reaches the registrar through it: the proxy picks the
        // registrar's target, not us.
        self.targets[site].len() > 1
            && !self.stopping
            && !self.shares_connection(site)
            && !self.plan.site_server(site).flow_via_proxy()
    }

    /// Stream transports: where endpoint `idx`'s next connection goes. Its current target,
    /// unless another endpoint of the shard found that one down: then the next one up.
    pub(super) fn stream_target(&mut self, idx: usize, now: Instant) -> std::net::SocketAddr {
        let at = now - self.start;
        let site = self.site(idx);
        if let Some((_, proxy)) = self
            .plan
            .site_server(site)
            .outbound_proxy
            .as_ref()
            .filter(|_| self.plan.site_server(site).flow_via_proxy())
        {
            // RFC 5626: the flow goes to the outbound proxy's current target.
            self.endpoints[idx].failover.register_pending = false;
            return self.proxy_target_up(idx, now, *proxy);
        }
        let ep = &mut self.endpoints[idx];
        // The old connection (and any REGISTER on it) is gone with its agent.
        ep.failover.register_pending = false;
        let targets = &mut self.targets[site];
        if targets.is_down(ep.failover.current(), now)
            && let Some(note) = ep.failover.move_off(targets, now)
        {
            ep.trace.push(TraceEntry::note(note, at));
            self.stats.failovers += 1;
        }
        targets
            .get(ep.failover.current())
            .map_or(self.plan.site_server(site).addr, |t| t.addr)
    }

    /// Stream transports: endpoint `idx`'s connect failed (refused, unreachable, timed out;
    /// not a TLS or WebSocket refusal). With a target left, connect there now and return
    /// true; the endpoint registers once connected and carries on (a reconnect resumes what
    /// it was doing). False: the engine handles the failure as before.
    pub(super) fn connect_failed_over(&mut self, idx: usize, now: Instant, error: &str) -> bool {
        let site = self.site(idx);
        if self.plan.site_server(site).flow_via_proxy() {
            // RFC 5626's flow to the outbound proxy: its next target (RFC 3263 §4.3).
            if !self.proxy_flow_failed_over(idx, now, error) {
                return false;
            }
            self.endpoints[idx].link.failures = 0;
            self.connect(idx, now);
            return true;
        }
        if !self.can_fail_over(site) || self.endpoints[idx].link.leaving {
            return false;
        }
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let failed = ep.failover.current();
        let failure = Failure::Transport(format!("connect failed: {error}"));
        let d = ep
            .failover
            .handle_failure(&mut self.targets[site], failed, &failure, now);
        ep.trace.push(TraceEntry::note(d.note, at));
        if d.next.is_none() {
            return false;
        }
        self.stats.failovers += 1;
        ep.link.failures = 0;
        self.connect(idx, now);
        true
    }

    /// Stream transports: the endpoint moved to another target because of a timeout or a
    /// 503. Its requests go over its connection, so it opens one to the new target (the
    /// old one is closed); once connected it registers and, with `call`, sends the call
    /// again, else carries on with its script.
    fn reconnect_elsewhere(&mut self, idx: usize, now: Instant, call: Option<Box<CallRetry>>) {
        let ep = &mut self.endpoints[idx];
        match call {
            Some(retry) => {
                ep.failover.resume = Some(Resume::Call(retry));
                ep.link.resume = None;
            }
            None => {
                ep.failover.resume = None;
                // Registered before: carry on with the script once registered again.
                ep.link.resume = ep
                    .timings
                    .registration_ms
                    .is_some()
                    .then_some((ep.script, ep.script_at));
            }
        }
        ep.failover.registered_on = None;
        ep.script = Script::Idle;
        ep.script_at = None;
        self.connect(idx, now);
    }

    /// A REGISTER (first or refresh) failed: on a timeout or a 503, register on the next
    /// target and return true; otherwise (or with no target left) false, and the engine
    /// reports the failure as before.
    pub(super) fn register_failed_over(
        &mut self,
        idx: usize,
        now: Instant,
        code: u16,
        reason: &str,
    ) -> bool {
        let retry_after = self.endpoints[idx].failover.retry_after.take();
        self.endpoints[idx].failover.register_pending = false;
        let site = self.site(idx);
        if !self.can_fail_over(site) {
            return false;
        }
        let Some(failure) = Failure::of(code, reason, retry_after) else {
            return false;
        };
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let failed = ep.failover.register_sent_to;
        ep.failover.registered_on = None;
        let d = ep
            .failover
            .handle_failure(&mut self.targets[site], failed, &failure, now);
        ep.trace.push(TraceEntry::note(d.note, at));
        if d.next.is_none() {
            return false;
        }
        self.stats.failovers += 1;
        if self.streams[site].is_some() {
            let call = match ep.failover.resume.take() {
                Some(Resume::Call(c)) => Some(c),
                _ => None,
            };
            self.reconnect_elsewhere(idx, now, call);
        } else {
            ep.failover.resume.get_or_insert(Resume::Registered);
            ep.ua.register(now);
        }
        if d.newly_down {
            self.move_others_off(idx, failed, now);
        }
        true
    }

    /// An initial INVITE failed: on a timeout or a 503, send it again on the next target
    /// (registering there first) and return true; otherwise false (reported as before).
    pub(super) fn call_failed_over(
        &mut self,
        idx: usize,
        now: Instant,
        call: CallId,
        code: u16,
        reason: &str,
    ) -> bool {
        let retry_after = self.endpoints[idx].failover.retry_after.take();
        let plan = self.plan;
        let site = self.site(idx);
        if plan.site_server(site).outbound_proxy.is_some() {
            // The INVITE went to the outbound proxy, not to the registrar: the proxy's
            // targets fail over (engine/proxy_failover.rs); the registrar's stay.
            return self.proxy_call_failed_over(idx, now, call, code, reason, retry_after);
        }
        if !self.can_fail_over(site) {
            return false;
        }
        let Some((retry, failure)) = self.call_retry(idx, call, code, reason, retry_after) else {
            return false;
        };
        let ep = &self.endpoints[idx];
        let register = plan.groups[ep.group].register;
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let failed = ep.failover.invite_sent_to;
        let d = ep
            .failover
            .handle_failure(&mut self.targets[site], failed, &failure, now);
        ep.trace.push(TraceEntry::note(d.note, at));
        let Some(next) = d.next else {
            return false;
        };
        self.stats.failovers += 1;
        // The failed INVITE is over; the call (and its media) carries on as the new one.
        ep.ua.forget_call(call);
        ep.active_call = None;
        if self.streams[site].is_some() {
            self.reconnect_elsewhere(idx, now, Some(retry));
        } else if !register
            || (ep.failover.registered_on == Some(next) && ep.failover.resume.is_none())
        {
            ep.active_call = Some(ep.ua.call(now, retry.target, retry.sdp));
        } else if ep.failover.resume.is_some() || ep.failover.register_pending {
            // A REGISTER is in flight: dial once it is answered (registering on the new
            // target first if it went elsewhere).
            ep.failover.resume = Some(Resume::Call(retry));
        } else {
            ep.failover.resume = Some(Resume::Call(retry));
            ep.ua.register(now);
        }
        if d.newly_down {
            self.move_others_off(idx, failed, now);
        }
        true
    }

    /// What an initial INVITE of endpoint `idx` that ended with `code` needs to be sent again
    /// elsewhere: the call (its Request-URI and our SDP offer) and the failure RFC 3263 §4.3
    /// moves on — `None` for anything else (an incoming call, a CANCEL's 487, a final answer).
    pub(super) fn call_retry(
        &self,
        idx: usize,
        call: CallId,
        code: u16,
        reason: &str,
        retry_after: Option<std::time::Duration>,
    ) -> Option<(Box<CallRetry>, Failure)> {
        let ep = &self.endpoints[idx];
        // Only our own dialling.
        let Role::Call { targets, .. } = &self.plan.groups[ep.group].role else {
            return None;
        };
        if self.stopping || ep.active_call != Some(call) || targets.is_empty() {
            return None;
        }
        let failure = Failure::of(code, reason, retry_after)?;
        let retry = Box::new(CallRetry {
            target: targets[ep.index % targets.len()].clone(),
            sdp: ep.ua.local_sdp(call).cloned(),
        });
        Some((retry, failure))
    }

    /// A REGISTER was answered 200: record where; after a failover, carry on with what the
    /// endpoint was doing and return true. A first registration returns false (the engine
    /// goes on as usual: timings, phase, the script).
    pub(super) fn registered_after_failover(&mut self, idx: usize, now: Instant) -> bool {
        let stopping = self.stopping;
        let at = now - self.start;
        let site = self.site(idx);
        let ep = &mut self.endpoints[idx];
        let was_registered = ep.registration_code == Some(200);
        ep.failover.register_pending = false;
        ep.failover.registered_on = Some(ep.failover.register_sent_to);
        if was_registered
            && matches!(ep.failover.resume, Some(Resume::Call(_)))
            && ep.failover.registered_on != Some(ep.failover.current())
        {
            // A refresh that was in flight landed on the old target: register on the new
            // one before the call is sent again.
            ep.ua.register(now);
            return true;
        }
        let Some(resume) = ep.failover.resume.take() else {
            ep.failover.succeeded();
            return false;
        };
        if !was_registered {
            // The first registration, on a later target: the usual path.
            ep.failover.succeeded();
            return false;
        }
        ep.registration_code = Some(200);
        if let Some(t) = self.targets[site].get(ep.failover.current()) {
            ep.trace
                .push(TraceEntry::note(format!("registered on {t}"), at));
        }
        match resume {
            Resume::Registered => ep.failover.succeeded(),
            Resume::Call(_) if stopping => self.after_call(idx, now),
            Resume::Call(retry) => {
                ep.active_call = Some(ep.ua.call(now, retry.target, retry.sdp));
            }
        }
        true
    }

    /// Target `dead` just went down: the other endpoints of the shard on it move to the next
    /// target now (re-registering there) instead of each waiting for its own timeout.
    /// Endpoints with a REGISTER in flight find out by themselves.
    fn move_others_off(&mut self, except: usize, dead: usize, now: Instant) {
        let at = now - self.start;
        let site = self.site(except);
        for j in 0..self.endpoints.len() {
            let registers = self.plan.groups[self.endpoints[j].group].register;
            // Target `dead` is an index in this server's list only.
            let other_site = self.site(j) != site;
            let ep = &mut self.endpoints[j];
            if j == except
                || other_site
                || ep.done
                || ep.failover.current() != dead
                || ep.failover.resume.is_some()
                || ep.failover.register_pending
            {
                continue;
            }
            if self.streams[site].is_some() && (ep.active_call.is_some() || ep.link.local.is_none())
            {
                // A call in progress keeps its connection; an endpoint without one picks a
                // live target when it connects.
                continue;
            }
            let state = ep.ua.registration();
            let idle = matches!(state, RegState::Idle) || !registers;
            if !idle && !matches!(state, RegState::Registered { .. }) {
                continue;
            }
            let Some(note) = ep.failover.move_off(&self.targets[site], now) else {
                return;
            };
            ep.trace.push(TraceEntry::note(note, at));
            self.stats.failovers += 1;
            if self.streams[site].is_some() {
                self.reconnect_elsewhere(j, now, None);
                continue;
            }
            if idle {
                continue; // its first request goes to the new target
            }
            ep.failover.resume = Some(Resume::Registered);
            ep.ua.register(now);
            // Wake it now: the loop sends its REGISTER on this turn.
            self.timers.set(j, Some(now));
        }
    }
}
