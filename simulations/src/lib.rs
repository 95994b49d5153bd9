//! # `simulations`: the real routing core on large simulated topologies
//!
//! A discrete-event simulator with a virtual clock ([`engine`]) drives one
//! [`routing::Router`] per node over a graph ([`topology`]: generators, and loaders for edge
//! lists, NetworkX node-link JSON and GraphML). Links have latency and optional loss, and fail
//! and come back as a scenario ([`scenario`], TOML files in `simulations/scenarios/`) scripts.
//! [`run`] measures convergence, stretch against shortest paths (petgraph), hops, lookup
//! latency and cost, control traffic, routing state per node, and reachability over time after
//! failures; [`report`] writes JSON, CSV, SVG plots and a summary table.
//!
//! ```text
//! cargo run -p simulations --release -- run simulations/scenarios/ba-1k.toml
//! cargo run -p simulations --release -- sweep simulations/scenarios/ba-1k.toml --sizes 1000,3000,10000
//! ```
//!
//! ## What it must not do
//! It must not reimplement any routing logic: every routing decision comes from the `routing`
//! crate itself (the engine only carries messages to the peer a router named, and wakes a
//! router when it asked), so what is measured here is what `meshd` runs. It opens no sockets
//! and reads no clock for the simulation (only for the wall time it reports). Same scenario
//! and seed, same results.

pub mod diagnose;
pub mod engine;
pub mod inflight;
pub mod names;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod topology;
