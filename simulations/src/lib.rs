//! # `simulations`: the real routing core on large simulated topologies (not built yet)
//!
//! This crate will own a discrete-event simulator with a virtual clock that drives many
//! instances of the [`routing`](../routing/index.html) core over a graph (generated or loaded from
//! `shared/topologies/`), scripts failures and joins, and reports convergence, stretch, state per
//! node and control traffic.
//!
//! ## What it must not do
//! It must not reimplement any routing logic: every routing decision comes from the `routing`
//! crate itself, so what is measured here is what `meshd` runs. It opens no sockets and uses no
//! real clock.
//!
//! Nothing is implemented yet: see issue 4 and `docs/ARCHITECTURE.md`.
