//! First-in first-out queues that keep their first item inline: the queues of a transaction
//! and of a phone nearly always hold one item at a time, which then costs no allocation.

use std::collections::VecDeque;

/// A FIFO queue; `head` is the oldest item when present, `rest` the others in order.
#[derive(Debug, Clone)]
pub(crate) struct Fifo<T> {
    head: Option<T>,
    rest: VecDeque<T>,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Fifo<T> {
    /// An empty queue (no allocation).
    pub(crate) const fn new() -> Self {
        Self {
            head: None,
            rest: VecDeque::new(),
        }
    }

    /// Appends `x`.
    pub(crate) fn push_back(&mut self, x: T) {
        if self.head.is_none() && self.rest.is_empty() {
            self.head = Some(x);
        } else {
            self.rest.push_back(x);
        }
    }

    /// Takes the oldest item.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.head.take().or_else(|| self.rest.pop_front())
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none() && self.rest.is_empty()
    }

    /// The items, oldest first (only the tests read a phone's queues whole).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.head.iter().chain(self.rest.iter())
    }

    /// Gives back the room of the overflow list once it is empty (a phone's queues are
    /// dropped whole once empty: only the tests call it).
    #[cfg(test)]
    pub(crate) fn shrink(&mut self) {
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
    }
}

/// [`Fifo`] with its overflow list boxed: 8 bytes, not 32, for a list that is nearly never
/// there (one allocation more when it is). For the queues of a transaction, which hold one
/// item between their owner's drains; a phone's output queues, which often hold several,
/// keep [`Fifo`].
#[derive(Debug, Clone)]
pub(crate) struct SlimFifo<T> {
    head: Option<T>,
    #[allow(clippy::box_collection)] // reason: see above
    rest: Option<Box<VecDeque<T>>>,
}

impl<T> Default for SlimFifo<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> SlimFifo<T> {
    /// An empty queue (no allocation).
    pub(crate) const fn new() -> Self {
        Self {
            head: None,
            rest: None,
        }
    }

    /// Appends `x`.
    pub(crate) fn push_back(&mut self, x: T) {
        if self.is_empty() {
            self.head = Some(x);
        } else {
            self.rest.get_or_insert_default().push_back(x);
        }
    }

    /// Takes the oldest item.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.head
            .take()
            .or_else(|| self.rest.as_mut().and_then(|r| r.pop_front()))
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none() && self.rest.as_ref().is_none_or(|r| r.is_empty())
    }

    /// The items, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.head
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// Gives back the room of the overflow list once it is empty.
    pub(crate) fn shrink(&mut self) {
        if self.rest.as_ref().is_some_and(|r| r.is_empty()) {
            self.rest = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_the_order_they_went_in() {
        order_test!(Fifo);
    }

    #[test]
    fn items_come_out_of_the_slim_queue_in_the_order_they_went_in() {
        order_test!(SlimFifo);
    }

    /// Every interleaving of pushes and pops of a short run matches a VecDeque, with the
    /// overflow list's room given back now and then.
    macro_rules! order_test {
        ($fifo:ident) => {{
            for pattern in 0u32..(1 << 12) {
                let mut fifo = $fifo::new();
                let mut model = VecDeque::new();
                let mut next = 0;
                for bit in 0..12 {
                    if pattern & (1 << bit) != 0 {
                        fifo.push_back(next);
                        model.push_back(next);
                        next += 1;
                    } else {
                        assert_eq!(fifo.pop_front(), model.pop_front());
                        // Giving back the overflow list's room when it is empty changes nothing.
                        if bit % 3 == 0 {
                            fifo.shrink();
                        }
                    }
                    assert_eq!(fifo.is_empty(), model.is_empty());
                    assert!(fifo.iter().eq(model.iter()));
                }
                while let Some(x) = model.pop_front() {
                    assert_eq!(fifo.pop_front(), Some(x));
                }
                assert_eq!(fifo.pop_front(), None);
            }
        }};
    }
    use order_test;
}
