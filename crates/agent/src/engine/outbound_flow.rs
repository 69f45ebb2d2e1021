//! RFC 5626 SIP Outbound in the shard (`outbound = true` on a registrar): the phone's side.
//!
//! - REGISTER carries `+sip.instance` and `reg-id` ([`sip_proto::ua::UserAgent::enable_outbound`],
//!   set up in `new_ua`); the 2xx's `Require: outbound` says the registrar uses the flow.
//! - In use, the flow is kept alive (§4.4.1) at a random 80–100 % of the 2xx's Flow-Timer, else
//!   of the `keepalive` interval: over TCP and TLS by CRLF pings, over WS and WSS by WebSocket
//!   ping frames (RFC 6455 §5.5.2; our choice over CRLF inside WebSocket messages), whose pongs the poll set
//!   checks ([`crate::netpoll::NetPoll::keep_flow`]); over UDP by STUN Binding requests to the
//!   flow's peer (§4.4.2, [`sip_proto::stun`]) sent from here.
//! - A flow fails (§4.4.1) when a pong or a STUN answer does not come within 10 s, when the
//!   connection closes, or when the STUN answer's XOR-MAPPED-ADDRESS changes (the NAT binding
//!   moved). The phone then registers again over a new flow (a new connection, or a new
//!   REGISTER over UDP); a connect that fails waits the §4.5 backoff. Each failure and each
//!   recovery is counted and put in the trace.
//! - Not in use (no `Require: outbound`): a note in the trace, and keep-alives as without
//!   outbound.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use sip_proto::outbound::{PONG_TIMEOUT, keepalive_after, recovery_wait};
use sip_proto::stun;

use super::{Shard, ShardStats};
use crate::flow::FlowKind;
use crate::netpoll::Leg;
use crate::trace::TraceEntry;

/// The outbound part of the run's summary (`None` when no registrar uses outbound).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OutboundSummary {
    /// Endpoints whose registration used outbound (`Require: outbound` in a 2xx).
    pub endpoints_in_use: u32,
    /// Endpoints registered with outbound asked but not granted (no `Require: outbound`).
    pub endpoints_not_granted: u32,
    /// Flow keep-alives sent: CRLF pings (TCP, TLS) and STUN Binding requests (UDP).
    pub keepalives_sent: u64,
    /// Their answers: CRLF pongs and STUN Binding responses.
    pub pongs: u64,
    /// Flows found failed: a missing pong or STUN answer, a closed connection, a changed
    /// NAT binding (RFC 5626 §4.4.1).
    pub flow_failures: u64,
    /// Registrations made again over a new flow after a failure (§4.5).
    pub recoveries: u64,
}

impl OutboundSummary {
    /// Adds a shard's counts.
    pub(super) fn add(&mut self, s: &ShardStats) {
        let o = &s.outbound;
        self.endpoints_in_use += o.endpoints_in_use;
        self.endpoints_not_granted += o.endpoints_not_granted;
        self.keepalives_sent += o.keepalives_sent;
        self.pongs += o.pongs;
        self.flow_failures += o.flow_failures;
        self.recoveries += o.recoveries;
    }
}

/// An endpoint's RFC 5626 outbound flow, in its report (`EndpointReport::outbound`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OutboundEndpoint {
    /// The `+sip.instance` URN its REGISTERs carried.
    pub instance: String,
    /// Its last registration used outbound (`Require: outbound` in the 2xx).
    pub in_use: bool,
    /// The last 2xx's Flow-Timer, seconds.
    pub flow_timer: Option<u32>,
    /// UDP: STUN keep-alives sent, and answered (TCP/TLS pings and pongs are counted per
    /// run only, in `RunSummary::outbound`).
    pub stun_sent: u32,
    /// UDP: STUN Binding responses to them.
    pub stun_answered: u32,
    /// Where the flow's peer last saw us (XOR-MAPPED-ADDRESS), over UDP.
    pub mapped: Option<SocketAddr>,
    /// Its flow failed this many times.
    pub flow_failures: u32,
    /// And was registered again over a new flow this many times.
    pub recoveries: u32,
}

/// An endpoint's outbound flow (boxed in the endpoint: only outbound endpoints pay for it).
#[derive(Debug, Default)]
pub(super) struct ObFlow {
    /// Counted in the summary's `endpoints_in_use` / `endpoints_not_granted` already.
    counted: bool,
    /// The last 2xx required outbound.
    in_use: bool,
    /// The flow failed: the next registration is its recovery.
    failed: bool,
    /// Random draws made so far (with the run seed and the endpoint, the next draw's input).
    draws: u64,
    /// UDP: the keep-alive period, the next STUN request, and the one awaiting its answer.
    period: Duration,
    stun_at: Option<Instant>,
    stun_sent: Option<([u8; 12], Instant)>,
    /// The address the flow's peer saw us at (XOR-MAPPED-ADDRESS).
    mapped: Option<SocketAddr>,
    /// What its report says (counts, last grant).
    report: OutboundEndpoint,
}

impl ObFlow {
    /// The report of a flow of phone `ua`.
    pub(super) fn report(&self, ua: &sip_proto::ua::UserAgent) -> OutboundEndpoint {
        OutboundEndpoint {
            instance: ua.outbound_instance().unwrap_or_default().to_owned(),
            in_use: self.in_use,
            mapped: self.mapped,
            ..self.report.clone()
        }
    }

    /// The next STUN deadline: a keep-alive to send or an answer overdue.
    pub(super) fn due(&self) -> Option<Instant> {
        let answer = self.stun_sent.map(|(_, at)| at + PONG_TIMEOUT);
        [self.stun_at, answer].into_iter().flatten().min()
    }
}

/// A number in `[0, 1)` from the run's seed, the endpoint and a counter (splitmix64): the
/// §4.4.1 and §4.5 draws replay with the seed.
fn draw(seed: u64, id: u32, n: u64) -> f64 {
    let mut z = seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n.wrapping_mul(0xD1B5);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Shard<'_> {
    /// True when endpoint `idx`'s registrar uses outbound.
    pub(super) fn outbound_on(&self, idx: usize) -> bool {
        self.plan.site_server(self.site(idx)).transport.outbound
    }

    /// A random number for endpoint `idx` (see [`draw`]).
    fn ob_draw(&mut self, idx: usize) -> f64 {
        let seed = self.plan.seed;
        let ep = &mut self.endpoints[idx];
        let ob = ep.ob.get_or_insert_with(Box::default);
        ob.draws += 1;
        draw(seed, ep.id, ob.draws)
    }

    /// A 2xx to REGISTER arrived for an outbound endpoint: is the flow in use, how is it
    /// kept alive, and was this a recovery.
    pub(super) fn outbound_registered(&mut self, idx: usize, now: Instant, refresh: bool) {
        let site = self.site(idx);
        let server = self.plan.site_server(site);
        let kind = server.transport.kind;
        let configured = server.transport.keepalive;
        let at = now - self.start;
        let grant = self.endpoints[idx].ua.outbound_grant().unwrap_or_default();
        let r = self.ob_draw(idx);
        let seed = r.to_bits();
        let ep = &mut self.endpoints[idx];
        let ob = ep.ob.get_or_insert_with(Box::default);
        if !ob.counted {
            ob.counted = true;
            if grant.in_use {
                self.stats.outbound.endpoints_in_use += 1;
            } else {
                self.stats.outbound.endpoints_not_granted += 1;
            }
        }
        ob.report.flow_timer = grant.flow_timer;
        if std::mem::take(&mut ob.failed) {
            ob.report.recoveries += 1;
            self.stats.outbound.recoveries += 1;
            ep.trace.push(TraceEntry::note(
                "outbound flow recovered: registered again over a new flow (RFC 5626 §4.5)".into(),
                at,
            ));
        }
        let was_in_use = ob.in_use;
        ob.in_use = grant.in_use;
        if !grant.in_use {
            ob.stun_at = None;
            ob.stun_sent = None;
            if !refresh {
                ep.trace.push(TraceEntry::note(
                    "outbound asked, not in use: the registrar's 2xx has no Require: outbound (RFC 5626 §4.2.1); keep-alives as without outbound".into(),
                    at,
                ));
            }
            return;
        }
        // RFC 5626 §4.4.1: the Flow-Timer, else our configured interval.
        let period = grant.flow_timer.map_or_else(
            || configured.unwrap_or(Duration::from_secs(30)),
            |s| Duration::from_secs(u64::from(s.max(1))),
        );
        if refresh && was_in_use && ob.period == period {
            return; // a refresh of the same flow: its keep-alives run on
        }
        ob.period = period;
        let how = match kind {
            FlowKind::Udp => "STUN Binding requests (RFC 5626 §4.4.2)",
            FlowKind::Ws | FlowKind::Wss => {
                "WebSocket ping, pong expected within 10 s (RFC 6455 §5.5.2; no CRLF on it)"
            }
            _ => "CRLF ping, CRLF pong expected within 10 s (RFC 5626 §4.4.1)",
        };
        ep.trace.push(TraceEntry::note(
            format!(
                "outbound in use: Require: outbound in the 2xx; {}; keep-alives every 80-100 % of {} s by {how}",
                grant.flow_timer.map_or_else(
                    || "no Flow-Timer (the keepalive interval applies)".to_owned(),
                    |s| format!("Flow-Timer: {s}"),
                ),
                period.as_secs()
            ),
            at,
        ));
        match kind {
            FlowKind::Udp => ob.stun_at = Some(now + keepalive_after(period, r)),
            // TCP and TLS: CRLF; WS and WSS: WebSocket ping frames (the poll set knows which).
            _ => {
                let key = self.conn_key(idx);
                self.net
                    .keep_flow(key, Leg::Server, period, PONG_TIMEOUT, seed, now);
            }
        }
    }

    /// Endpoint `idx`'s flow failed (`why`): counted and noted; the caller registers again.
    pub(super) fn outbound_failed(&mut self, idx: usize, now: Instant, why: &str) {
        let at = now - self.start;
        let ep = &mut self.endpoints[idx];
        let Some(ob) = ep.ob.as_deref_mut().filter(|o| o.in_use) else {
            return;
        };
        ob.in_use = false;
        ob.failed = true;
        ob.stun_at = None;
        ob.stun_sent = None;
        ob.report.flow_failures += 1;
        self.stats.outbound.flow_failures += 1;
        ep.trace.push(TraceEntry::note(
            format!("outbound flow failed: {why}; registering again over a new flow"),
            at,
        ));
    }

    /// The wait before reconnect attempt `failures + 1` of an outbound endpoint (§4.5).
    pub(super) fn outbound_backoff(&mut self, idx: usize, failures: u32) -> Duration {
        let r = self.ob_draw(idx);
        recovery_wait(failures, r)
    }

    /// The UDP keep-alive timer of endpoint `idx`: a STUN answer overdue fails the flow; a
    /// keep-alive due is sent.
    pub(super) fn outbound_timer(&mut self, idx: usize, now: Instant) {
        let Some(ob) = self.endpoints[idx].ob.as_deref_mut() else {
            return;
        };
        if ob.stun_sent.is_some_and(|(_, at)| at + PONG_TIMEOUT <= now) {
            self.outbound_failed(
                idx,
                now,
                "no STUN Binding response within 10 s (RFC 5626 §4.4.2)",
            );
            self.register_again(idx, now);
            return;
        }
        if ob.stun_at.is_none_or(|t| t > now) {
            return;
        }
        let period = ob.period;
        let pending = ob.stun_sent;
        let r = self.ob_draw(idx);
        // The transaction ID: the endpoint's slot (to route the answer on the shared socket)
        // and eight random bytes (to match it). A request still unanswered is sent again as
        // it was (RFC 5389 §7.2.1: a retransmission keeps its transaction ID), its 10 s
        // counted from the first send.
        let (tid, first) = pending.unwrap_or_else(|| {
            let mut tid = [0u8; 12];
            tid[..4].copy_from_slice(&(idx as u32).to_be_bytes());
            tid[4..].copy_from_slice(&r.to_bits().to_be_bytes());
            (tid, now)
        });
        let to = self.flow_peer(idx);
        let at = now - self.start;
        let own = self.endpoints[idx].own_udp;
        let request = stun::binding_request(tid);
        if let Some(ob) = self.endpoints[idx].ob.as_deref_mut() {
            ob.stun_sent = Some((tid, first));
            ob.stun_at = Some(now + keepalive_after(period, r));
            ob.report.stun_sent += 1;
        }
        self.stats.outbound.keepalives_sent += 1;
        if own {
            if let Err(e) = self.net.send_udp(idx, &request, to) {
                self.udp_send_failed(idx, to, at, &e);
            }
        } else if self
            .udp_out
            .push(Bytes::copy_from_slice(&request), to, (idx, at))
        {
            self.flush_udp();
        }
    }

    /// Where endpoint `idx`'s outbound flow goes over UDP: the outbound proxy with one (the
    /// REGISTER went there), else its registrar's current target.
    fn flow_peer(&self, idx: usize) -> SocketAddr {
        let site = self.site(idx);
        let server = self.plan.site_server(site);
        match &server.outbound_proxy {
            Some(p) => p.1,
            None => self.targets[site]
                .get(self.endpoints[idx].failover.current())
                .map_or(server.addr, |t| t.addr),
        }
    }

    /// A STUN message came in (on endpoint `on`'s own socket, or the shared one): a Binding
    /// response to one of our keep-alives is counted, and a changed mapped address fails
    /// the flow. Anything else is noted where it can be placed, never a panic.
    pub(super) fn on_stun(
        &mut self,
        now: Instant,
        bytes: &[u8],
        from: SocketAddr,
        on: Option<usize>,
    ) {
        let at = now - self.start;
        let parsed = stun::parse_binding_response(bytes);
        let idx = on.or_else(|| {
            let i = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
            (i < self.endpoints.len()).then_some(i)
        });
        let Some(idx) = idx else { return };
        let ep = &mut self.endpoints[idx];
        let Some(ob) = ep.ob.as_deref_mut() else {
            return;
        };
        let response = match parsed {
            Ok(r) if ob.stun_sent.is_some_and(|(tid, _)| tid == r.tid) => r,
            Ok(_) => return, // not the answer we wait for (late, or another's)
            Err(e) => {
                if ob
                    .stun_sent
                    .is_some_and(|(tid, _)| bytes.get(8..20) == Some(&tid[..]))
                {
                    ep.trace.push(TraceEntry::note(
                        format!("STUN answer from {from} to our keep-alive unusable: {e}"),
                        at,
                    ));
                }
                return;
            }
        };
        ob.stun_sent = None;
        ob.report.stun_answered += 1;
        self.stats.outbound.pongs += 1;
        let Some(mapped) = response.mapped else {
            return;
        };
        match ob.mapped.replace(mapped) {
            None => ep.trace.push(TraceEntry::note(
                format!("STUN Binding response from {from}: the flow's peer sees us at {mapped}"),
                at,
            )),
            Some(old) if old != mapped => {
                let why = format!(
                    "the NAT binding changed: XOR-MAPPED-ADDRESS {old} became {mapped} (RFC 5626 §4.4.1)"
                );
                self.outbound_failed(idx, now, &why);
                self.register_again(idx, now);
            }
            Some(_) => {}
        }
    }

    /// Over UDP, a failed flow is replaced by registering again at once (§4.5: the flow is
    /// formed by the REGISTER itself; its failure, if any, is the registration's). The 2xx is
    /// a refresh to the endpoint's script: it carries on where it was.
    fn register_again(&mut self, idx: usize, now: Instant) {
        self.endpoints[idx].ua.refresh_registration(now);
        self.pump(idx, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_in_range_and_replay() {
        for n in 0..1000 {
            let r = draw(42, 7, n);
            assert!((0.0..1.0).contains(&r));
            assert_eq!(r.to_bits(), draw(42, 7, n).to_bits());
        }
        assert_ne!(draw(42, 7, 1).to_bits(), draw(42, 8, 1).to_bits());
    }
}
