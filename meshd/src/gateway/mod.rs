//! The gateway's core: public TCP connections carried to services published over the mesh,
//! without ever terminating their TLS (issue 17; `docs/GATEWAY.md`).
//!
//! * [`peek`] reads which name a public connection asks for (TLS SNI, HTTP `Host`);
//! * [`wire`] is what publisher and gateway say when a connection opens (hello, answer) and
//!   when a data connection is given a public connection (the client's address);
//! * [`names`] decides who holds which name and which connection carries each service;
//! * [`config`] is the `[gateway]` table.
//!
//! Sans-IO, like the rest of the core: no sockets, no clock; the daemon's gateway thread
//! (`daemon/gateway/`) feeds it bytes and applies its answers.

pub mod config;
pub mod names;
pub mod peek;
pub mod wire;
