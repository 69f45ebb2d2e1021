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
