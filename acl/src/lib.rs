//! # `acl`: circles and allow/deny policy (not built yet)
//!
//! This crate will own the *policy* of a Planetary LAN node: named **circles** of identities
//! (public keys, addresses that resolve to keys, and nested circles), and **rules** that allow or
//! deny a circle an action (`peer`, `traffic` with protocols and ports, `root`, outbound rules).
//! It will parse and validate the policy file (with locations in every error), run the tests a
//! policy carries inside it, and compile the policy into lookup structures that `meshd` queries
//! per packet.
//!
//! ## What it must not do
//! Like `routing`, it is pure and sans-IO: no files, sockets, clocks, threads or global state.
//! `meshd` reads the file and hands the text in; enforcement (refusing links and sessions,
//! dropping packets) happens in `meshd`, which asks this crate for the verdict.
//!
//! Nothing is implemented yet: see issue 5 and `docs/ARCHITECTURE.md`.
