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
#[derive(Debug, Default)]
pub struct Trace {
    items: Vec<Item>,
}

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
