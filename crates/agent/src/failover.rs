//! RFC 3263 §4.3 failover during a run, sans-IO.
//!
//! A run located by DNS keeps every target of its transport in DNS order ([`TargetList`]).
//! Each shard holds one [`TargetTable`]: the list plus, per target, "down until T". Each
//! endpoint holds an [`EndpointFailover`]: the target it uses now, the targets its current
//! request has tried, and what to do once it is registered on the new one.
//!
//! How to drive it: when a new transaction of an endpoint (REGISTER, refresh, initial INVITE;
//! never a request inside a dialog) ends with a [`Failure`] (a transport error, Timer B/F, or
//! a 503), call [`EndpointFailover::handle_failure`] with the shard's table and `now`. It marks
//! the target down in the table (timeouts and transport errors for [`DEAD_HOLD`], a 503 for
//! its Retry-After), picks the next target in DNS order that this request has not tried and
//! that is not down, and returns a [`Decision`] whose note goes in the endpoint's trace. The
//! driver then sends the request again to [`EndpointFailover::current`]. When nothing is
//! left, the decision has no target and the driver reports the failure as before (the
//! endpoint's outcome is the worst seen). [`EndpointFailover::succeeded`] ends the request's
//! attempt (the tried set is cleared).
//!
//! The table is per shard, so an endpoint that finds a target dead spares the others of its
//! shard their own timeout: [`TargetTable::handle_failure`] returns true when a target newly
//! went down, and the driver moves the endpoints registered there (see the engine).
//! Everything takes `now`; nothing here reads a clock.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::flow::FlowKind;

/// How long a target that timed out or refused us stays skipped (about one Timer F with the
/// default T1: a target that did not answer for that long is not retried sooner).
pub const DEAD_HOLD: Duration = Duration::from_secs(32);

/// At most this many targets are kept (the tried set is a bit mask).
pub const MAX_TARGETS: usize = 64;

/// One place the endpoints may send their requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// Its transport.
    pub kind: FlowKind,
    /// Where it came from, for the trace: `SRV 2 of 3`, `A record`, `configured`.
    pub origin: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.addr, self.kind.via_token())
    }
}

/// The targets of a run in the order to try them, and the one to start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetList {
    /// DNS order (at most [`MAX_TARGETS`]).
    pub targets: Vec<Target>,
    /// The index to start at: targets before it failed the pre-run probe.
    pub start: usize,
}

impl TargetList {
    /// A single configured target: failover has nowhere to go.
    pub fn single(addr: SocketAddr, kind: FlowKind) -> Self {
        TargetList {
            targets: vec![Target {
                addr,
                kind,
                origin: "configured".into(),
            }],
            start: 0,
        }
    }
}

/// Why a request left a target (RFC 3263 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// ICMP unreachable, connection refused or closed.
    Transport(String),
    /// No response: the transaction's Timer B or F fired.
    Timeout(String),
    /// 503 Service Unavailable, with its Retry-After.
    Unavailable {
        /// The reason phrase.
        reason: String,
        /// Retry-After (RFC 3261 §21.5.4): skip the target that long.
        retry_after: Option<Duration>,
    },
}

impl Failure {
    /// The failure a final result of a REGISTER or initial INVITE stands for, if it is one
    /// RFC 3263 §4.3 fails over on: a 503, or the 408 the agent reports when its Timer B/F
    /// fired (a 408 *response* from the server is an answer, not a dead target).
    pub fn of(code: u16, reason: &str, retry_after: Option<Duration>) -> Option<Failure> {
        match code {
            503 => Some(Failure::Unavailable {
                reason: reason.to_owned(),
                retry_after,
            }),
            408 if reason.starts_with("no response (Timer")
                || reason.starts_with("no final response (Timer") =>
            {
                Some(Failure::Timeout(reason.to_owned()))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Transport(e) => write!(f, "{e}"),
            Failure::Timeout(e) => write!(f, "{e}"),
            Failure::Unavailable {
                reason,
                retry_after,
            } => {
                let reason = if reason.is_empty() {
                    "Service Unavailable"
                } else {
                    reason
                };
                write!(f, "503 {reason}")?;
                if let Some(d) = retry_after {
                    write!(f, " (Retry-After {} s)", d.as_secs())?;
                }
                Ok(())
            }
        }
    }
}

/// The shard's view of the targets: the list and when each is usable again.
#[derive(Debug, Clone)]
pub struct TargetTable {
    list: TargetList,
    down_until: Vec<Option<Instant>>,
}

impl TargetTable {
    /// The table at the run's start (`now`): targets before `list.start` failed the pre-run
    /// probe and are down for [`DEAD_HOLD`].
    pub fn new(mut list: TargetList, now: Instant) -> Self {
        list.targets.truncate(MAX_TARGETS);
        list.start = list.start.min(list.targets.len().saturating_sub(1));
        let down_until = (0..list.targets.len())
            .map(|i| (i < list.start).then_some(now + DEAD_HOLD))
            .collect();
        TargetTable { list, down_until }
    }

    /// Target `i` (a valid index from this table).
    pub fn get(&self, i: usize) -> Option<&Target> {
        self.list.targets.get(i)
    }

    /// How many targets.
    pub fn len(&self) -> usize {
        self.list.targets.len()
    }

    /// True when the list is empty.
    pub fn is_empty(&self) -> bool {
        self.list.targets.is_empty()
    }

    /// Target `i` is skipped at `now`.
    pub fn is_down(&self, i: usize, now: Instant) -> bool {
        self.down_until
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|t| t > now)
    }

    /// Where a new endpoint starts: the first target at or after the start that is up, else
    /// the start (a request must go somewhere; it fails over from there).
    pub fn first_up(&self, now: Instant) -> usize {
        (self.list.start..self.len())
            .chain(0..self.list.start)
            .find(|&i| !self.is_down(i, now))
            .unwrap_or(self.list.start)
    }

    /// Records that target `i` failed at `now`; true when it was up and is now down (the
    /// driver then moves the endpoints registered there). A 503 without Retry-After does
    /// not mark the target down for others: only the request that got it moves on.
    pub fn handle_failure(&mut self, i: usize, failure: &Failure, now: Instant) -> bool {
        let until = match failure {
            Failure::Transport(_) | Failure::Timeout(_) => now + DEAD_HOLD,
            Failure::Unavailable {
                retry_after: Some(d),
                ..
            } if !d.is_zero() => now + *d,
            Failure::Unavailable { .. } => return false,
        };
        let was_down = self.is_down(i, now);
        if let Some(slot) = self.down_until.get_mut(i) {
            *slot = Some(slot.map_or(until, |t| t.max(until)));
        }
        !was_down
    }

    /// The next target for a request that tried `tried` (bit i: target i), in DNS order,
    /// skipping those down at `now`.
    fn next_for(&self, tried: u64, now: Instant) -> Option<usize> {
        (0..self.len()).find(|&i| tried & (1 << i) == 0 && !self.is_down(i, now))
    }
}

/// What the driver does once the endpoint is registered on its new target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume<C> {
    /// Nothing more: the REGISTER (or refresh) itself was the request.
    Registered,
    /// Send the call again (the driver's own description of it).
    Call(C),
}

/// The outcome of a failure: the note for the trace and where to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The target to use now; `None` when every target failed.
    pub next: Option<usize>,
    /// For the trace: `target 127.0.0.1:5070 UDP failed: 503 Service Unavailable; trying
    /// 127.0.0.1:5072 UDP (SRV 2 of 3)`.
    pub note: String,
    /// The failed target went down in the table just now (others should move too).
    pub newly_down: bool,
}

/// One endpoint's failover state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFailover<C> {
    current: usize,
    tried: u64,
    /// What to do once registered on the new target.
    pub resume: Option<Resume<C>>,
    /// The Retry-After of the last 503 the endpoint received, until a failure consumes it.
    pub retry_after: Option<Duration>,
    /// The target the last REGISTER went to (a refresh may leave before a move is known).
    pub register_sent_to: usize,
    /// The target the last initial INVITE went to.
    pub invite_sent_to: usize,
    /// The target the endpoint is registered on (`None`: not registered).
    pub registered_on: Option<usize>,
    /// A REGISTER (first, refresh or challenge answer) is in flight: its failure belongs to
    /// `register_sent_to`, so no second REGISTER may start meanwhile.
    pub register_pending: bool,
}

impl<C> EndpointFailover<C> {
    /// An endpoint that starts on `table.first_up(now)`.
    pub fn new(table: &TargetTable, now: Instant) -> Self {
        let current = table.first_up(now);
        EndpointFailover {
            current,
            tried: 0,
            resume: None,
            retry_after: None,
            register_sent_to: current,
            invite_sent_to: current,
            registered_on: None,
            register_pending: false,
        }
    }

    /// The target the endpoint's requests go to.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The current request failed at `failed` (the target it was sent to): mark it down,
    /// pick the next. The tried set makes each request visit each target once.
    pub fn handle_failure(
        &mut self,
        table: &mut TargetTable,
        failed: usize,
        failure: &Failure,
        now: Instant,
    ) -> Decision {
        let newly_down = table.handle_failure(failed, failure, now);
        if failed < MAX_TARGETS {
            self.tried |= 1 << failed;
        }
        let next = table.next_for(self.tried, now);
        let from = table
            .get(failed)
            .map_or_else(|| "?".to_owned(), Target::to_string);
        let note = match next.and_then(|i| table.get(i)) {
            Some(t) => format!("target {from} failed: {failure}; trying {t} ({})", t.origin),
            None => format!(
                "target {from} failed: {failure}; no target left ({} of {} tried or down)",
                table.len(),
                table.len()
            ),
        };
        if let Some(i) = next {
            self.current = i;
        }
        Decision {
            next,
            note,
            newly_down,
        }
    }

    /// Another endpoint found the current target dead: move to the next one up (if any)
    /// without counting it as this endpoint's own attempt. Returns the note, or `None` when
    /// there is nowhere to go.
    pub fn move_off(&mut self, table: &TargetTable, now: Instant) -> Option<String> {
        self.move_past_down(table, now, "registering on")
    }

    /// [`EndpointFailover::move_off`] for a request that needs no registration first (an
    /// INVITE to the next outbound proxy target): the note says "sending to".
    pub fn skip_down(&mut self, table: &TargetTable, now: Instant) -> Option<String> {
        self.move_past_down(table, now, "sending to")
    }

    fn move_past_down(&mut self, table: &TargetTable, now: Instant, doing: &str) -> Option<String> {
        let from = table.get(self.current)?.to_string();
        let next = table.next_for(1 << self.current.min(MAX_TARGETS - 1), now)?;
        self.current = next;
        let t = table.get(next)?;
        Some(format!(
            "target {from} is down (found by another endpoint of the shard); {doing} {t} ({})",
            t.origin
        ))
    }

    /// The request got its answer: the next request starts a fresh round of targets.
    pub fn succeeded(&mut self) {
        self.tried = 0;
    }

    /// A new request (a new call): it may try every target again.
    pub fn new_request(&mut self) {
        self.tried = 0;
    }
}

/// The seconds of a `Retry-After` header value (`120`, `120 (lunch);duration=60`).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    use sip_msg::TypedHeader;
    use sip_msg::typed::RetryAfter;
    RetryAfter::parse(value)
        .ok()
        .map(|r| Duration::from_secs(u64::from(r.seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> TargetList {
        TargetList {
            targets: (0..n)
                .map(|i| Target {
                    addr: SocketAddr::from(([127, 0, 0, 1], 5070 + 2 * i as u16)),
                    kind: FlowKind::Udp,
                    origin: format!("SRV {} of {n}", i + 1),
                })
                .collect(),
            start: 0,
        }
    }

    fn unavailable(secs: Option<u64>) -> Failure {
        Failure::Unavailable {
            reason: "Service Unavailable".into(),
            retry_after: secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_503_moves_to_the_next_target_and_says_why() {
        let t0 = Instant::now();
        let mut table = TargetTable::new(list(3), t0);
        let mut ep = EndpointFailover::<()>::new(&table, t0);
        assert_eq!(ep.current(), 0);
        let d = ep.handle_failure(&mut table, 0, &unavailable(None), t0);
        assert_eq!(d.next, Some(1));
        assert_eq!(ep.current(), 1);
        assert_eq!(
            d.note,
            "target 127.0.0.1:5070 UDP failed: 503 Service Unavailable; trying 127.0.0.1:5072 UDP (SRV 2 of 3)"
        );
        // Without Retry-After, others may still use the target.
        assert!(!d.newly_down);
        assert!(!table.is_down(0, t0));
        assert_eq!(EndpointFailover::<()>::new(&table, t0).current(), 0);
    }

    #[test]
    fn retry_after_skips_the_target_for_that_long_for_every_endpoint() {
        let t0 = Instant::now();
        let mut table = TargetTable::new(list(2), t0);
        let mut a = EndpointFailover::<()>::new(&table, t0);
        let d = a.handle_failure(&mut table, 0, &unavailable(Some(60)), t0);
        assert!(d.newly_down);
        assert!(
            d.note
                .contains("503 Service Unavailable (Retry-After 60 s)")
        );
        // A new endpoint starts on the second target while the first is down …
        let t59 = t0 + Duration::from_secs(59);
        assert_eq!(EndpointFailover::<()>::new(&table, t59).current(), 1);
        // … and on the first again once Retry-After has passed.
        let t60 = t0 + Duration::from_secs(60);
        assert_eq!(EndpointFailover::<()>::new(&table, t60).current(), 0);
    }

    #[test]
    fn a_timeout_marks_the_target_dead_for_the_hold_and_only_once() {
        let t0 = Instant::now();
        let mut table = TargetTable::new(list(2), t0);
        let mut a = EndpointFailover::<()>::new(&table, t0);
        let mut b = EndpointFailover::<()>::new(&table, t0);
        let timeout = Failure::Timeout("no response (Timer F fired)".into());
        assert!(a.handle_failure(&mut table, 0, &timeout, t0).newly_down);
        // The second endpoint's own timeout on the same target is not news.
        let d = b.handle_failure(&mut table, 0, &timeout, t0 + Duration::from_millis(5));
        assert!(!d.newly_down);
        assert_eq!(d.next, Some(1));
        assert!(table.is_down(0, t0 + DEAD_HOLD - Duration::from_millis(1)));
        assert!(!table.is_down(0, t0 + DEAD_HOLD + Duration::from_millis(5)));
    }

    #[test]
    fn when_every_target_failed_there_is_nowhere_to_go() {
        let t0 = Instant::now();
        let mut table = TargetTable::new(list(2), t0);
        let mut ep = EndpointFailover::<()>::new(&table, t0);
        let timeout = Failure::Timeout("no final response (Timer B fired)".into());
        assert_eq!(ep.handle_failure(&mut table, 0, &timeout, t0).next, Some(1));
        let d = ep.handle_failure(&mut table, 1, &unavailable(None), t0);
        assert_eq!(d.next, None);
        assert_eq!(
            d.note,
            "target 127.0.0.1:5072 UDP failed: 503 Service Unavailable; no target left (2 of 2 tried or down)"
        );
        // The endpoint stays where it was; a new request starts over once the hold is over.
        assert_eq!(ep.current(), 1);
        ep.succeeded();
        let later = t0 + DEAD_HOLD + Duration::from_secs(1);
        let d = ep.handle_failure(&mut table, 1, &unavailable(None), later);
        assert_eq!(d.next, Some(0));
    }

    #[test]
    fn a_request_never_goes_back_to_a_target_it_tried() {
        let t0 = Instant::now();
        let mut table = TargetTable::new(list(3), t0);
        let mut ep = EndpointFailover::<()>::new(&table, t0);
        ep.handle_failure(&mut table, 0, &unavailable(None), t0);
        let d = ep.handle_failure(&mut table, 1, &unavailable(None), t0);
        assert_eq!(d.next, Some(2));
        assert_eq!(
            ep.handle_failure(&mut table, 2, &unavailable(None), t0)
                .next,
            None
        );
    }

    #[test]
    fn targets_that_failed_the_pre_run_probe_start_down() {
        let t0 = Instant::now();
        let mut l = list(3);
        l.start = 1;
        let table = TargetTable::new(l, t0);
        assert!(table.is_down(0, t0));
        assert_eq!(EndpointFailover::<()>::new(&table, t0).current(), 1);
        // A start past the end is clamped, not a panic.
        let mut l = list(2);
        l.start = 9;
        assert_eq!(TargetTable::new(l, t0).first_up(t0), 1);
    }

    #[test]
    fn an_endpoint_moves_off_a_target_another_found_dead() {
        let t0 = Instant::now();
        let mut table = TargetTable::new(list(2), t0);
        let mut a = EndpointFailover::<()>::new(&table, t0);
        let mut b = EndpointFailover::<()>::new(&table, t0);
        a.handle_failure(&mut table, 0, &Failure::Transport("refused".into()), t0);
        let note = b.move_off(&table, t0).unwrap();
        assert_eq!(b.current(), 1);
        assert_eq!(
            note,
            "target 127.0.0.1:5070 UDP is down (found by another endpoint of the shard); registering on 127.0.0.1:5072 UDP (SRV 2 of 2)"
        );
        // With a single target there is nowhere to move.
        let single = TargetTable::new(
            TargetList::single(list(1).targets[0].addr, FlowKind::Udp),
            t0,
        );
        let mut c = EndpointFailover::<()>::new(&single, t0);
        assert_eq!(c.move_off(&single, t0), None);
    }

    #[test]
    fn which_results_fail_over() {
        assert!(matches!(
            Failure::of(408, "no response (Timer F fired)", None),
            Some(Failure::Timeout(_))
        ));
        assert!(matches!(
            Failure::of(408, "no final response (Timer B fired)", None),
            Some(Failure::Timeout(_))
        ));
        // A 408 the server sent is an answer.
        assert_eq!(Failure::of(408, "Request Timeout", None), None);
        assert_eq!(Failure::of(486, "Busy Here", None), None);
        assert_eq!(
            Failure::of(503, "Busy", Some(Duration::from_secs(5))),
            Some(Failure::Unavailable {
                reason: "Busy".into(),
                retry_after: Some(Duration::from_secs(5))
            })
        );
        assert_eq!(
            parse_retry_after("120 (lunch);duration=60"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
