//! The DNS responder: ordinary programs resolve mesh names (`shop.mesh`) and key names
//! (`<key in base32>.mesh`) through it, over UDP and TCP (`[dns]` in the configuration,
//! `docs/NAMES.md`).
//!
//! ```text
//!   client ──UDP/TCP──► server.rs (tokio tasks, bounded) ──► message.rs: Zone::handle(bytes)
//!                                  │ Reply: sent at once (key names, errors, REFUSED)
//!                                  │ Forward: to the upstream resolver (if configured)
//!                                  │ Lookup: Ask { name } ──bounded channel──► event loop
//!                                  ▼                                            │ waiting.rs:
//!   client ◄── answer(question, found) ◄── oneshot (deadline: SERVFAIL) ◄───────┘ router's
//!                                                              resolve_name / NameResolved
//! ```
//!
//! [`message`] is sans-IO (bytes in, a [`message::Step`] out) and is the fuzz target's entry
//! (`meshd/fuzz/fuzz_targets/dns_query.rs`); [`keyname`] encodes keys as labels; [`waiting`]
//! is the event loop's table of queries waiting for the router (bounded, with deadlines), and
//! is written against the [`NameSource`] trait so that it is tested without a router;
//! [`server`] owns the sockets.
//!
//! ## What it must not do
//! Block or do slow work on the event loop (the loop only asks the router and hands the answer
//! to a oneshot); hold unbounded state (queries, lookups, TCP connections and forwards each
//! have a limit and a deadline); panic on any input; answer anything that is not a query.

pub mod keyname;
pub mod message;
pub mod server;
pub mod waiting;

pub use message::{NameAnswer, Question, Step, Transport, Zone};

use std::time::Instant;

/// What the router said about a name, at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Known now (pinned, or a fresh cached answer): the answer, or `None`, no such name.
    Done(Option<NameAnswer>),
    /// A lookup runs; its outcome comes later ([`waiting::Waiting::resolved`]).
    Started,
    /// Not a valid name, or the router cannot look it up now.
    Failed,
}

/// Whoever resolves mesh names (the router, in the daemon).
pub trait NameSource {
    /// Resolves `name` (one label, lowercase).
    fn resolve(&mut self, now: Instant, name: &str) -> Lookup;
}

/// `label` as a mesh name (lowercase; 1–63 bytes of `a-z 0-9 -`, no `-` at either end), or
/// `None`.
pub fn valid_name(label: &str) -> Option<String> {
    let l = label.to_ascii_lowercase();
    let ok = !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(l)
}
