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

/// What the router said about a name, at once; `T` is the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Known now (pinned, or a fresh cached answer): the answer, or `None`, no such name.
    Done(Option<T>),
    /// A lookup runs; its outcome comes later ([`waiting::Waiting::resolved`]).
    Started,
    /// Not a valid name, or the router cannot look it up now.
    Failed,
}

/// Whoever resolves mesh names (the router, in the daemon), answering with a `T`.
pub trait NameSource<T> {
    /// Resolves `name` (one label, lowercase).
    fn resolve(&mut self, now: Instant, name: &str) -> Lookup<T>;
}

/// The DNS answer of a resolution: the record's service address if it has one, else the
/// owner's node address.
pub fn answer_of(r: &routing::names::Resolution) -> NameAnswer {
    let addr = r
        .record
        .as_ref()
        .and_then(|rec| rec.service_addr())
        .unwrap_or_else(|| routing::address::node_address(&r.key));
    NameAnswer { key: r.key, addr }
}

/// The router as a [`NameSource`]: `f` turns a resolution into the answer wanted.
pub struct RouterNames<'a, F> {
    /// The router.
    pub router: &'a mut routing::Router,
    /// Resolution to answer.
    pub f: F,
}

impl<T, F: Fn(&routing::names::Resolution) -> T> NameSource<T> for RouterNames<'_, F> {
    fn resolve(&mut self, now: Instant, name: &str) -> Lookup<T> {
        match self.router.resolve_name(now, name) {
            Ok(Some(r)) => Lookup::Done(Some((self.f)(&r))),
            Ok(None) => Lookup::Started,
            Err(_) => Lookup::Failed,
        }
    }
}

/// `label` as a mesh name (lowercase; the routing core's rule), or `None`.
pub fn valid_name(label: &str) -> Option<String> {
    routing::name_record::validate_name(label).ok()
}
