//! The event loop's side of the DNS responder: queries for mesh names waiting for the
//! router's lookup. Each waits in a oneshot the server's task holds with a deadline; this
//! table only keeps the senders, bounded, and drops those whose task gave up.

use super::{Lookup, NameSource};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Names with queries waiting for a lookup, at most.
pub const MAX_WAITING_NAMES: usize = 256;
/// Queries waiting for one name, at most.
pub const MAX_WAITING_PER_NAME: usize = 64;
/// How long a query waits for its lookup before the server answers SERVFAIL.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(4);

/// Where a query's answer goes: `Some(answer)`, `None` for no such name; dropping it means
/// SERVFAIL.
pub type Reply<T> = oneshot::Sender<Option<T>>;

/// A query the server hands to the loop.
#[derive(Debug)]
pub struct Ask<T> {
    /// The mesh name (one label, lowercase).
    pub name: String,
    /// Where the answer goes.
    pub reply: Reply<T>,
}

/// Queries waiting for lookups, by name; `T` is what they are answered with.
#[derive(Debug)]
pub struct Waiting<T> {
    by_name: HashMap<String, (Instant, Vec<Reply<T>>)>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting {
            by_name: HashMap::new(),
        }
    }
}

impl<T: Clone> Waiting<T> {
    /// Answers `ask` at once if `source` knows the name now; otherwise keeps it until
    /// [`Waiting::resolved`] (or drops it: the server then answers SERVFAIL).
    pub fn ask(&mut self, source: &mut impl NameSource<T>, now: Instant, ask: Ask<T>) {
        if self.by_name.len() >= MAX_WAITING_NAMES {
            self.sweep(now);
        }
        let Ask { name, reply } = ask;
        let full = self.by_name.len() >= MAX_WAITING_NAMES && !self.by_name.contains_key(&name);
        if full {
            return;
        }
        match source.resolve(now, &name) {
            Lookup::Done(found) => {
                let _ = reply.send(found);
            }
            Lookup::Failed => {}
            Lookup::Started => {
                let (since, list) = self
                    .by_name
                    .entry(name)
                    .or_insert_with(|| (now, Vec::new()));
                if list.len() >= MAX_WAITING_PER_NAME {
                    list.retain(|r| !r.is_closed());
                }
                if list.len() < MAX_WAITING_PER_NAME {
                    list.push(reply);
                    *since = (*since).min(now);
                }
            }
        }
    }

    /// A lookup finished: answers every query waiting for `name`.
    pub fn resolved(&mut self, name: &str, found: Option<T>) {
        if let Some((_, list)) = self.by_name.remove(name) {
            for r in list {
                let _ = r.send(found.clone());
            }
        }
    }

    /// Forgets queries whose server task gave up (past the deadline, or closed).
    pub fn sweep(&mut self, now: Instant) {
        self.by_name.retain(|_, (since, list)| {
            list.retain(|r| !r.is_closed());
            !list.is_empty() && now.saturating_duration_since(*since) <= LOOKUP_DEADLINE * 2
        });
    }

    /// Names with queries waiting.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// No query waits.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::NameAnswer;

    /// Knows `known` at once, looks everything else up.
    struct Fake {
        known: Option<NameAnswer>,
        asked: usize,
    }

    impl NameSource<NameAnswer> for Fake {
        fn resolve(&mut self, _now: Instant, name: &str) -> Lookup<NameAnswer> {
            self.asked += 1;
            match name {
                "known" => Lookup::Done(self.known),
                "bad" => Lookup::Failed,
                _ => Lookup::Started,
            }
        }
    }

    fn ask(name: &str) -> (Ask<NameAnswer>, oneshot::Receiver<Option<NameAnswer>>) {
        let (reply, rx) = oneshot::channel();
        (
            Ask {
                name: name.into(),
                reply,
            },
            rx,
        )
    }

    #[test]
    fn answers_now_later_or_never() {
        let now = Instant::now();
        let a = NameAnswer {
            key: [3; 32],
            addr: "fd00::3".parse().expect("addr"),
        };
        let mut src = Fake {
            known: Some(a),
            asked: 0,
        };
        let mut w = Waiting::<NameAnswer>::default();
        let (q, mut rx) = ask("known");
        w.ask(&mut src, now, q);
        assert_eq!(rx.try_recv().expect("at once"), Some(a));
        let (q, mut rx) = ask("bad");
        w.ask(&mut src, now, q);
        assert!(rx.try_recv().is_err(), "dropped: SERVFAIL");
        let (q1, mut rx1) = ask("shop");
        let (q2, mut rx2) = ask("shop");
        w.ask(&mut src, now, q1);
        w.ask(&mut src, now, q2);
        assert_eq!(w.len(), 1);
        w.resolved("shop", None);
        assert_eq!(rx1.try_recv().expect("answered"), None);
        assert_eq!(rx2.try_recv().expect("answered"), None);
        assert!(w.is_empty());
    }

    #[test]
    fn bounded_and_swept() {
        let now = Instant::now();
        let mut src = Fake {
            known: None,
            asked: 0,
        };
        let mut w = Waiting::<NameAnswer>::default();
        let mut keep = Vec::new();
        for i in 0..MAX_WAITING_NAMES + 10 {
            let (q, rx) = ask(&format!("n{i}"));
            w.ask(&mut src, now, q);
            keep.push(rx);
        }
        assert_eq!(w.len(), MAX_WAITING_NAMES);
        for _ in 0..MAX_WAITING_PER_NAME + 5 {
            let (q, rx) = ask("n0");
            w.ask(&mut src, now, q);
            keep.push(rx);
        }
        assert!(
            w.by_name
                .get("n0")
                .is_some_and(|(_, l)| l.len() == MAX_WAITING_PER_NAME)
        );
        // The server gave up on them all: swept.
        keep.clear();
        w.sweep(now);
        assert!(w.is_empty());
        // Stale entries go after twice the deadline even if someone still waits.
        let (q, _rx) = ask("slow");
        w.ask(&mut src, now, q);
        w.sweep(now + LOOKUP_DEADLINE * 3);
        assert!(w.is_empty());
    }
}
