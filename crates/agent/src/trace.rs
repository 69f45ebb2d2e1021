//! The SIP trace of an endpoint: every message sent or received, byte for byte, with its
//! timing, plus notes (retransmissions, timer firings, transport errors).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use crate::flow::FlowKind;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// We sent it.
    Sent,
    /// We received it.
    Received,
    /// A note, not a message.
    Note,
}

/// One line of a trace.
#[derive(Debug, Clone, Serialize)]
pub struct TraceEntry {
    /// Sent, received, or a note.
    pub direction: Direction,
    /// Milliseconds since the endpoint started (monotonic clock).
    pub at_ms: f64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// The transport, for messages.
    pub transport: Option<FlowKind>,
    /// Our address, for messages.
    pub local: Option<SocketAddr>,
    /// The peer's address, for messages.
    pub remote: Option<SocketAddr>,
    /// True for a retransmission we sent.
    pub retransmission: bool,
    /// The message exactly as sent or received (lossy UTF-8 for display), or the note.
    pub text: String,
    /// The exact bytes (messages only).
    #[serde(skip)]
    pub bytes: Bytes,
}

impl TraceEntry {
    /// A message entry.
    #[allow(clippy::too_many_arguments)] // reason: a record of eight facts, built in two places
    pub fn new(
        direction: Direction,
        transport: FlowKind,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Bytes,
        at: Duration,
        wall: SystemTime,
        retransmission: bool,
    ) -> Self {
        Self {
            direction,
            at_ms: at.as_secs_f64() * 1000.0,
            wall_ms: wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            transport: Some(transport),
            local: Some(local),
            remote: Some(remote),
            retransmission,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    /// A note at `at` since the start.
    pub fn note(text: String, at: Duration) -> Self {
        Self {
            direction: Direction::Note,
            at_ms: at.as_secs_f64() * 1000.0,
            wall_ms: 0,
            transport: None,
            local: None,
            remote: None,
            retransmission: false,
            text,
            bytes: Bytes::new(),
        }
    }

    /// The first line of the message (or the note).
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
}

/// An endpoint's trace as the engine keeps it while the endpoint runs: a message is its bytes
/// and facts; its text ([`TraceEntry::text`], a lossy UTF-8 copy) is made only when the trace
/// goes into a report ([`Trace::into_entries`]), which most successful endpoints' never do.
///
/// Retention: a report carries the trace of failed endpoints only (unless all traces are
/// asked for), so the records of a call that ended well need not wait for the end of the run.
/// A call's records run from [`Trace::call_begins`] (its first) or the end of the call before
/// to [`Trace::call_ended`], which drops them when the endpoint is still doing well. What
/// came before the endpoint's first call (notes, registration) stays, and so does everything
/// from the first call that went wrong on. One note in their place counts the calls left out.
#[derive(Debug, Default)]
pub struct Trace {
    items: Vec<Item>,
    /// Where the records of the current call (or of what follows the last call) begin;
    /// `None` before the first call.
    call_start: Option<usize>,
    /// The note counting the calls left out, when some were (an index into `items`).
    omitted: Option<usize>,
}

/// Room for a plain call's records (7) and the note that stands for the calls before it.
const CALL_RECORDS: usize = 8;

#[derive(Debug)]
enum Item {
    Message {
        direction: Direction,
        transport: FlowKind,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Bytes,
        at: Duration,
        retransmission: bool,
    },
    Entry(TraceEntry),
    /// Calls that ended well, left out: how many, how many records, from when.
    Omitted {
        calls: u32,
        records: usize,
        at: Duration,
    },
}

impl Item {
    fn at(&self) -> Duration {
        match self {
            Item::Message { at, .. } | Item::Omitted { at, .. } => *at,
            Item::Entry(e) => Duration::from_secs_f64(e.at_ms.max(0.0) / 1000.0),
        }
    }
}

impl Trace {
    /// Adds a finished entry (a note).
    pub fn push(&mut self, entry: TraceEntry) {
        self.items.push(Item::Entry(entry));
    }

    /// Adds a message sent or received `at` after the run's start (see [`TraceEntry::new`]).
    #[allow(clippy::too_many_arguments)] // reason: the facts of `TraceEntry::new` but the wall clock
    pub fn message(
        &mut self,
        direction: Direction,
        transport: FlowKind,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Bytes,
        at: Duration,
        retransmission: bool,
    ) {
        self.items.push(Item::Message {
            direction,
            transport,
            local,
            remote,
            bytes,
            at,
            retransmission,
        });
    }

    /// A call ended. `keep`: its records stay (the endpoint failed, or every trace is
    /// kept); otherwise they are dropped (see [`Trace`]). Either way the next call's records
    /// begin here.
    pub fn call_ended(&mut self, keep: bool) {
        let start = self.call_start.unwrap_or(self.items.len());
        if !keep && self.items.len() > start {
            let at = self.items[start].at();
            let dropped = self.items.len() - start;
            self.items.truncate(start);
            match self.omitted.and_then(|i| self.items.get_mut(i)) {
                Some(Item::Omitted { calls, records, .. }) => {
                    *calls += 1;
                    *records += dropped;
                }
                _ => {
                    self.omitted = Some(self.items.len());
                    self.items.push(Item::Omitted {
                        calls: 1,
                        records: dropped,
                        at,
                    });
                }
            }
        }
        self.call_start = Some(self.items.len());
    }

    /// A call begins with the next record (a no-op when the records since the last call's
    /// end already count as this call's).
    pub fn call_begins(&mut self) {
        self.call_start.get_or_insert(self.items.len());
        // Room for a whole call's records at once (a plain call is 7: INVITE, 100, 180,
        // 200, ACK, BYE, 200) rather than growing 0 → 4 → 8 in the first call. Later calls
        // reuse the room a dropped call left (its records become one `Omitted`).
        if self.items.capacity() == 0 {
            self.items.reserve_exact(CALL_RECORDS);
        }
    }

    /// Entries and messages so far.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The entries, in order; `start_wall` is the wall-clock time of the run's start (a
    /// message's wall time is `start_wall + at`).
    pub fn into_entries(self, start_wall: SystemTime) -> Vec<TraceEntry> {
        self.items
            .into_iter()
            .map(|item| match item {
                Item::Entry(e) => e,
                Item::Omitted {
                    calls,
                    records,
                    at,
                } => TraceEntry::note(
                    format!(
                        "{calls} call(s) that ended well left out of this trace ({records} records; --all-traces keeps them)"
                    ),
                    at,
                ),
                Item::Message {
                    direction,
                    transport,
                    local,
                    remote,
                    bytes,
                    at,
                    retransmission,
                } => TraceEntry::new(
                    direction,
                    transport,
                    local,
                    remote,
                    bytes,
                    at,
                    start_wall + at,
                    retransmission,
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(t: &mut Trace, n: u64) {
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        for (i, line) in ["INVITE", "SIP/2.0 200 OK", "ACK", "BYE", "SIP/2.0 200 OK"]
            .iter()
            .enumerate()
        {
            t.message(
                if i % 2 == 0 {
                    Direction::Sent
                } else {
                    Direction::Received
                },
                FlowKind::Udp,
                local,
                remote,
                Bytes::from(format!("{line} call {n}\r\n\r\n")),
                Duration::from_millis(n * 1000 + i as u64),
                false,
            );
        }
    }

    fn texts(t: Trace) -> Vec<String> {
        t.into_entries(UNIX_EPOCH)
            .into_iter()
            .map(|e| e.text.lines().next().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn calls_that_ended_well_leave_one_note_and_a_failing_call_stays_whole() {
        let mut t = Trace::default();
        t.push(TraceEntry::note("own UDP socket".into(), Duration::ZERO));
        t.message(
            Direction::Sent,
            FlowKind::Udp,
            "127.0.0.1:5060".parse().unwrap(),
            "127.0.0.1:5070".parse().unwrap(),
            Bytes::from_static(b"REGISTER sip:x SIP/2.0\r\n\r\n"),
            Duration::from_millis(1),
            false,
        );
        for n in 1..=3 {
            t.call_begins();
            call(&mut t, n);
            t.call_ended(false);
        }
        // The fourth call goes wrong: it stays, and so does all that follows.
        call(&mut t, 4);
        t.push(TraceEntry::note(
            "BYE timed out".into(),
            Duration::from_secs(5),
        ));
        t.call_ended(true);
        call(&mut t, 5);
        t.call_ended(true);
        let texts = texts(t);
        assert_eq!(texts[0], "own UDP socket");
        assert_eq!(
            texts[1], "REGISTER sip:x SIP/2.0",
            "what came before the calls stays"
        );
        assert_eq!(
            texts[2],
            "3 call(s) that ended well left out of this trace (15 records; --all-traces keeps them)"
        );
        assert_eq!(texts[3], "INVITE call 4");
        assert_eq!(texts[8], "BYE timed out");
        assert_eq!(texts[9], "INVITE call 5");
        assert_eq!(texts.len(), 14);
    }

    #[test]
    fn calls_that_end_well_reuse_the_room_of_the_first() {
        let mut t = Trace::default();
        assert_eq!(
            t.items.capacity(),
            0,
            "an endpoint that never calls holds nothing"
        );
        for n in 1..=100 {
            t.call_begins();
            call(&mut t, n);
            // Two more records: a plain call has seven (100 and 180 too).
            t.push(TraceEntry::note("100".into(), Duration::from_secs(n)));
            t.push(TraceEntry::note("180".into(), Duration::from_secs(n)));
            assert_eq!(t.items.capacity(), CALL_RECORDS, "call {n} grew the trace");
            t.call_ended(false);
        }
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn keeping_every_call_keeps_the_trace_whole() {
        let mut t = Trace::default();
        for n in 1..=3 {
            call(&mut t, n);
            t.call_ended(true);
        }
        let texts = texts(t);
        assert_eq!(texts.len(), 15);
        assert!(texts.iter().all(|l| !l.contains("left out")));
        assert_eq!(texts[10], "INVITE call 3");
    }

    #[test]
    fn the_note_stands_where_the_first_left_out_call_began() {
        let mut t = Trace::default();
        t.call_begins();
        call(&mut t, 1);
        t.call_ended(false);
        t.call_ended(false); // no records since: nothing to count
        t.call_begins(); // the records since the last end are this call's already
        call(&mut t, 2);
        t.call_ended(false);
        assert_eq!(t.len(), 1);
        let e = &t.into_entries(UNIX_EPOCH)[0];
        assert_eq!(e.direction, Direction::Note);
        assert_eq!(e.at_ms, 1000.0);
        assert!(e.text.starts_with("2 call(s)"), "{}", e.text);
    }

    #[test]
    fn a_trace_makes_the_same_entries_as_made_at_once() {
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let bytes = Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\n\xff\r\n\r\n");
        let at = Duration::from_micros(1_500);
        let mut t = Trace::default();
        assert!(t.is_empty());
        t.push(TraceEntry::note("first".into(), Duration::ZERO));
        t.message(
            Direction::Sent,
            FlowKind::Udp,
            local,
            remote,
            bytes.clone(),
            at,
            true,
        );
        assert_eq!(t.len(), 2);
        let entries = t.into_entries(wall);
        let direct = TraceEntry::new(
            Direction::Sent,
            FlowKind::Udp,
            local,
            remote,
            bytes,
            at,
            wall + at,
            true,
        );
        assert_eq!(entries[0].text, "first");
        assert_eq!(entries[0].direction, Direction::Note);
        let e = &entries[1];
        assert_eq!(e.direction, direct.direction);
        assert_eq!(e.at_ms, direct.at_ms);
        assert_eq!(e.wall_ms, direct.wall_ms);
        assert_eq!(e.transport, direct.transport);
        assert_eq!((e.local, e.remote), (direct.local, direct.remote));
        assert!(e.retransmission);
        assert_eq!(e.text, direct.text);
        assert_eq!(e.bytes, direct.bytes);
        assert_eq!(e.wall_ms, 1_700_000_000_124);
        assert_eq!(e.first_line(), "OPTIONS sip:a@b SIP/2.0");
    }
}
