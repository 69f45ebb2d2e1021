//! The shard's end of the [`RunEvent`] stream, batched.
//!
//! A shard emits several events per call (phase changes, the final report). Handing each
//! one to the consuming thread on its own woke that thread for each (a futex wake and two
//! context switches, several µs of CPU per event at a few thousand calls a second). The sink
//! collects events and hands them over together: when [`EventSink::BATCH`] are waiting, when
//! the oldest has waited [`EventSink::LINGER`] (the shard loop wakes for that, see
//! [`EventSink::due`]), and when the sink is dropped. Order is kept; nothing is dropped.
//!
//! A hand-over is one message on the channel (a `Vec` of events), not one per event: sent
//! one by one, a batch woke the collecting thread many times over (it drained the channel
//! faster than the shard filled it, went back to sleep, and was woken by the next event):
//! ~0.6 futex calls and as many context switches per call at 2,000 calls/s.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::engine::RunEvent;

/// The receiving side of the event stream is gone (events sent are lost, as with a closed
/// `mpsc` channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverGone;

/// A cloneable handle on one shard's event buffer (the shard is one thread).
#[derive(Debug, Clone)]
pub struct EventSink(Rc<RefCell<Buffer>>);

#[derive(Debug)]
struct Buffer {
    tx: mpsc::Sender<Vec<RunEvent>>,
    waiting: Vec<RunEvent>,
    /// When the oldest waiting event was queued.
    since: Option<Instant>,
}

impl EventSink {
    /// Events handed over at once at the latest.
    pub const BATCH: usize = 256;
    /// How long an event waits at most (plus the shard loop's wake-up granularity, 1 ms).
    /// 20 ms: invisible to the live view (it redraws every 200 ms, progress comes every
    /// second) and 50 hand-overs a second instead of 500 (2 ms): at 2,000 calls/s each
    /// hand-over woke the collecting and the displaying threads (four context switches).
    pub const LINGER: Duration = Duration::from_millis(20);

    /// A sink in front of `tx`, which gets the events in batches.
    pub fn new(tx: mpsc::Sender<Vec<RunEvent>>) -> Self {
        Self(Rc::new(RefCell::new(Buffer {
            tx,
            waiting: Vec::with_capacity(Self::BATCH),
            since: None,
        })))
    }

    /// Queues `event`; the receiver sees it within [`EventSink::LINGER`] of the shard loop
    /// coming round. Fails only when the receiving side is gone.
    pub fn send(&self, event: RunEvent) -> Result<(), ReceiverGone> {
        let full = {
            let mut b = self.0.borrow_mut();
            b.since.get_or_insert_with(Instant::now);
            b.waiting.push(event);
            b.waiting.len() >= Self::BATCH
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// When the waiting events must go out (`None`: nothing waits).
    pub fn due(&self) -> Option<Instant> {
        self.0.borrow().since.map(|t| t + Self::LINGER)
    }

    /// Hands every waiting event over, in order.
    pub fn flush(&self) -> Result<(), ReceiverGone> {
        self.0.borrow_mut().flush()
    }
}

impl Buffer {
    fn flush(&mut self) -> Result<(), ReceiverGone> {
        self.since = None;
        if self.waiting.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.waiting, Vec::with_capacity(EventSink::BATCH));
        self.tx.send(batch).map_err(|_| ReceiverGone)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Phase;

    fn phase(endpoint: u32) -> RunEvent {
        RunEvent::Phase {
            endpoint,
            phase: Phase::Calling,
        }
    }

    fn ids(rx: &mpsc::Receiver<Vec<RunEvent>>) -> Vec<u32> {
        rx.try_iter()
            .flatten()
            .map(|e| match e {
                RunEvent::Phase { endpoint, .. } => endpoint,
                _ => u32::MAX,
            })
            .collect()
    }

    #[test]
    fn events_wait_for_a_flush_and_keep_their_order() {
        let (tx, rx) = mpsc::channel();
        let sink = EventSink::new(tx);
        assert_eq!(sink.due(), None);
        let before = Instant::now();
        sink.send(phase(1)).unwrap();
        sink.clone().send(phase(2)).unwrap();
        assert!(ids(&rx).is_empty(), "nothing goes out before a flush");
        let due = sink.due().unwrap();
        assert!(due >= before + EventSink::LINGER);
        sink.flush().unwrap();
        // One hand-over: one message with both.
        assert_eq!(rx.try_recv().map(|b| b.len()), Ok(2));
        sink.send(phase(1)).unwrap();
        sink.send(phase(2)).unwrap();
        sink.flush().unwrap();
        assert_eq!(ids(&rx), vec![1, 2]);
        assert_eq!(sink.due(), None);
    }

    #[test]
    fn a_full_batch_goes_out_at_once_and_drop_flushes_the_rest() {
        let (tx, rx) = mpsc::channel();
        let sink = EventSink::new(tx);
        let n = EventSink::BATCH as u32;
        for i in 0..n {
            sink.send(phase(i)).unwrap();
        }
        assert_eq!(ids(&rx), (0..n).collect::<Vec<_>>());
        sink.flush().unwrap();
        assert!(rx.try_recv().is_err(), "a flush of nothing sends nothing");
        sink.send(phase(n)).unwrap();
        sink.send(phase(n + 1)).unwrap();
        sink.send(phase(n + 2)).unwrap();
        drop(sink);
        assert_eq!(ids(&rx), vec![n, n + 1, n + 2]);
        assert!(rx.recv().is_err(), "the sender is gone with the sink");
    }

    #[test]
    fn events_are_small() {
        // Every event in the channel takes the size of the largest kind.
        assert!(std::mem::size_of::<RunEvent>() <= 64);
    }

    #[test]
    fn a_gone_receiver_is_an_error_not_a_panic() {
        let (tx, rx) = mpsc::channel();
        let sink = EventSink::new(tx);
        drop(rx);
        sink.send(phase(1)).unwrap();
        assert_eq!(sink.flush(), Err(ReceiverGone));
    }
}
