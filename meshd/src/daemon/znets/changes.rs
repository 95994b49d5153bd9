//! The order of znet changes: one in flight on the worker, the others waiting behind it in the
//! order they came (at most [`MAX_WAITING`]), so that each change is checked against the state
//! all earlier ones left. A second attach of the same container therefore finds it attached and
//! is refused; a leave during an attach waits for the attach.
//!
//! A pure state machine: no I/O, no clock. The event loop owns it.

use std::collections::VecDeque;

/// Most changes waiting behind the one in flight; more are refused.
pub const MAX_WAITING: usize = 64;

/// What became of a submitted change.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted<T> {
    /// Nothing was in flight: start this one now.
    Start(T),
    /// Queued; it starts when those before it are done.
    Queued {
        /// How many are ahead of it, counting the one in flight.
        ahead: usize,
    },
    /// The queue is full: refused.
    Full(T),
}

/// One change in flight and those waiting.
#[derive(Debug)]
pub struct Changes<T> {
    in_flight: bool,
    waiting: VecDeque<T>,
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Changes {
            in_flight: false,
            waiting: VecDeque::new(),
        }
    }
}

impl<T> Changes<T> {
    /// A new change.
    pub fn submit(&mut self, t: T) -> Submitted<T> {
        if !self.in_flight {
            self.in_flight = true;
            return Submitted::Start(t);
        }
        if self.waiting.len() >= MAX_WAITING {
            return Submitted::Full(t);
        }
        self.waiting.push_back(t);
        Submitted::Queued {
            ahead: self.waiting.len(),
        }
    }

    /// Puts a change ahead of all waiting ones (the daemon's own clean-up of the change in
    /// flight, which must run before anything else sees its remains). Not counted against the
    /// bound: there is at most one per change in flight.
    /// Called while the change it cleans up is still in flight: it starts at the next
    /// [`Changes::done`].
    pub fn first(&mut self, t: T) {
        self.waiting.push_front(t);
    }

    /// The change in flight is done (or could not be started): the next one to start, which
    /// is then in flight.
    pub fn done(&mut self) -> Option<T> {
        let next = self.waiting.pop_front();
        self.in_flight = next.is_some();
        next
    }

    /// Whether a change is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight
    }

    /// How many changes wait.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_flight_the_rest_in_order() {
        let mut c = Changes::default();
        assert_eq!(c.submit(1), Submitted::Start(1));
        assert!(c.busy());
        assert_eq!(c.submit(2), Submitted::Queued { ahead: 1 });
        assert_eq!(c.submit(3), Submitted::Queued { ahead: 2 });
        assert_eq!(c.done(), Some(2));
        assert!(c.busy());
        assert_eq!(c.done(), Some(3));
        assert_eq!(c.done(), None);
        assert!(!c.busy());
        assert_eq!(c.submit(4), Submitted::Start(4));
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut c = Changes::default();
        assert_eq!(c.submit(0), Submitted::Start(0));
        for i in 1..=MAX_WAITING {
            assert!(matches!(c.submit(i), Submitted::Queued { .. }));
        }
        assert_eq!(c.submit(999), Submitted::Full(999));
        assert_eq!(c.waiting(), MAX_WAITING);
        // Draining frees room; order is kept.
        assert_eq!(c.done(), Some(1));
        assert!(matches!(c.submit(1000), Submitted::Queued { .. }));
        let mut last = 1;
        while let Some(n) = c.done() {
            assert!(n > last);
            last = n;
        }
        assert_eq!(last, 1000);
        assert!(!c.busy());
    }

    #[test]
    fn a_clean_up_goes_first() {
        let mut c = Changes::default();
        assert_eq!(c.submit("join"), Submitted::Start("join"));
        assert!(matches!(c.submit("attach"), Submitted::Queued { .. }));
        c.first("discard");
        assert_eq!(c.done(), Some("discard"));
        assert_eq!(c.done(), Some("attach"));
        assert_eq!(c.done(), None);
    }

    /// A model of the znet state machine: attaching the same container twice in a row, the
    /// second is checked only after the first is applied, so exactly one succeeds.
    #[test]
    fn a_second_attach_of_the_same_container_sees_the_first() {
        let mut c = Changes::default();
        let mut attached: Vec<&str> = Vec::new();
        let mut results = Vec::new();
        let run = |ns: &'static str, attached: &mut Vec<&str>| {
            if attached.contains(&ns) {
                Err("already attached")
            } else {
                attached.push(ns);
                Ok(())
            }
        };
        let first = match c.submit("c1") {
            Submitted::Start(ns) => ns,
            other => panic!("{other:?}"),
        };
        assert!(matches!(c.submit("c1"), Submitted::Queued { ahead: 1 }));
        let mut next = Some(first);
        while let Some(ns) = next {
            results.push(run(ns, &mut attached));
            next = c.done();
        }
        assert_eq!(results, vec![Ok(()), Err("already attached")]);
        assert_eq!(attached, vec!["c1"]);
    }
}
