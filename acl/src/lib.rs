//! # `acl`: circles and allow/deny policy
//!
//! This crate owns the *policy* of a Planetary LAN node: named **circles** of identities (public
//! keys, overlay addresses that stand for the key owning them, and other circles), and
//! **rules** that allow or deny a circle (or `any`) an action:
//!
//! | action | question | asked by `meshd` |
//! |---|---|---|
//! | `peer` | may this identity link with me? | at the link handshake |
//! | `traffic` | may it send me this packet (protocol, my port)? | at session set-up, per packet received |
//! | `root` | may it be the root of the tree I use? | for every tree record chain |
//! | `outbound` | may I send it this packet (protocol, its port)? | per packet sent |
//!
//! Deny wins over allow; when no rule matches, the action's default decides. A policy carries
//! its own tests, run at every load. The file format and worked examples are in
//! `docs/POLICY.md`.
//!
//! ```text
//!  text ─► parse::parse ─► Model (as written, every item located)
//!                              │ compile::check: unknown circles, cycles
//!                              ▼
//!          Policy::compile ─► tables: key → Class, per class a verdict per action and,
//!                              │        for traffic/outbound, a step function over ports
//!                              ▼
//!          Policy::run_tests ─► Policy (or PolicyError: every problem, file:line:col)
//!
//!  per packet: policy.classify(key) → Class;  class.traffic(proto, port) → Verdict
//!  tools:      policy.explain(who, action, packet) → the deciding rule, in words
//!              edit::add_member / remove_member → new file text, comments kept
//! ```
//!
//! A packet costs one hash lookup (key to class) and one binary search over a few port ranges:
//! about 13 ns with 10,000 identities and 1,000 rules (`cargo bench -p acl --bench eval`,
//! `docs/BENCHMARKS.md`). [`explain`](Policy::explain) works from the rules as written, not
//! from the tables, so it doubles as a check of them (the property tests compare both with a
//! naive reference evaluator).
//!
//! ## What it must not do
//! Like `routing`, it is pure and sans-IO: no files, sockets, clocks, threads or global state.
//! `meshd` reads the file and hands the text in; enforcement (refusing links and sessions,
//! dropping packets, tracking flows so that replies pass) happens in `meshd`, which asks this
//! crate for the verdict. Nothing here may panic on any input text.

pub mod compile;
pub mod edit;
pub mod error;
pub mod model;
pub mod parse;
pub mod policy;

pub use error::{Loc, PolicyError, Problem, ProblemKind};
pub use model::*;
pub use parse::parse;
pub use policy::{Class, Explanation, Policy, RuleRef, Who};
