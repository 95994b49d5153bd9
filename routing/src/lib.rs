//! # `routing`: the sans-IO routing core of Planetary LAN
//!
//! This crate owns *where things are* in the overlay and how to get there:
//!
//! * [`address`]: a node's overlay addresses from its public key, and the check anybody can run
//!   that an address belongs to a key;
//! * [`tree`]: root election, signed tree positions (node and parent both sign), coordinates,
//!   parent choice by RTT cost without flapping, root liveness and farewells;
//! * [`consent`]: a parent's consent expires unless renewed; stale chains are refused;
//! * [`forward`]: greedy forwarding by tree distance over all peers,
//!   made loop-free by a watermark, with feedback to the source when a path breaks;
//! * [`broken`]: a `BROKEN` notice makes the source look again, never forget;
//! * [`budget`]: lookup requests served within a budget per peer, and our own lookups bounded;
//! * [`dht`]: lookups from an address to the owner's key and coordinates, signed by the owner;
//! * [`names`] ([`name_record`], [`name_store`]): human names bound to keys, signed by their
//!   owners, stored at the nodes closest to the name's hash, resolved by policy then by claim;
//! * [`ring`]: the keyspace ring (nearest ids on each side), kept by linearization, where
//!   lookups end;
//! * [`testnet`]: N routers on a virtual network with a virtual clock, for tests;
//! * [`vecmap`]: a small map as a sorted vector, for per-router tables of a few entries.
//!
//! `docs/ROUTING.md` explains the design, its choices and its measured behaviour.
//!
//! ## The contract: sans-IO and deterministic
//! This crate never opens a socket, never reads a clock, never spawns a thread or a task, and
//! never draws from the operating system's random number generator. Time comes in as an argument
//! (`now`), randomness from a seed given at construction, and everything the core wants to do is
//! returned to the caller (messages to send to a peer, packets to deliver, the next timeout).
//! The same inputs always give the same outputs, which is what lets `meshd` (real sockets, real
//! clock) and `simulations` (a virtual network of 100,000 nodes, a virtual clock) run the very
//! same code.
//!
//! ```text
//!   meshd (tokio, sockets, TUN) ──┐                ┌── simulations (virtual clock, graph)
//!                                 ▼                ▼
//!                         routing: handle_*(now, input) → outputs
//! ```

pub mod address;
pub mod broken;
pub mod budget;
pub mod codec;
pub mod consent;
pub mod coords;
pub mod dht;
pub mod forward;
pub mod name_record;
pub mod name_store;
pub mod names;
pub mod place;
pub mod record;
pub mod ring;
pub mod router;
pub mod testnet;
pub mod tree;
pub mod vecmap;
pub mod wire;

pub use address::{AddrKind, KEY_LEN, OVERLAY_PREFIX, OVERLAY_PREFIX_LEN, SUBNET_PREFIX_LEN};
pub use codec::Key;
pub use coords::{Coords, Place};
pub use router::{Drop, Event, Handled, PeerId, RootFilter, Route, Router, RouterConfig, Stats};
pub use tree::SharedVerified;
