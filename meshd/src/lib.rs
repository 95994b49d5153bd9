//! # `meshd`: the Planetary LAN daemon, as a library
//!
//! `meshd` owns everything that touches the operating system on a node: the identity file, the
//! UDP sockets, the TUN device, the admin socket, the configuration. It is a thin tokio shell
//! around sans-IO state machines: the link core ([`link`]) here, the routing core in the
//! `routing` crate.
//!
//! ```text
//!              ┌──────────────────────── daemon (tokio, one thread) ───────────────────────┐
//!  TUN  ──────►│ recv batch ─► Links::encapsulate ─► group by peer ─► UDP send (GSO)      │──► UDP
//!  TUN  ◄──────│ send batch (GRO) ◄─ Recv::Deliver ◄─ Links::handle_datagram ◄─ recv (GRO) │◄── UDP
//!  admin ◄────►│ JSON requests ─► status, peers, peer add/remove                          │
//!              │ timer ─► Links::handle_timeout / poll_timeout / poll_transmit             │
//!              └────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Modules, from the wire up: [`codes`] (every wire format's first-byte and kind codes),
//! [`wire`] (datagram formats, checked parsing), [`replay`] (RFC 6479 window), [`noise`] (XX
//! handshake set-up and cipher suites), [`session`] (one set of transport keys), [`toolkit`]
//! (what link and end-to-end sessions share: index allocation, token buckets, session
//! lifetimes, the timer table), [`link`] (all peers: handshakes, timers, data path), [`e2e`]
//! (end-to-end sessions), [`conns`] (TCP and QUIC connections, sans-IO: dial, redial, tie-break,
//! idle close, limits), [`node`] (a whole node without I/O, and its test network), [`packet`]
//! (IPv6 header view), [`firewall`] (the circle policy on the data path: verdicts, flow
//! tracking), [`identity`] (keys and the key file), [`uri`] (peer URIs), [`config`], [`admin`]
//! (the control socket: the typed protocol lives in the `api` crate, shared with `meshctl`,
//! `meshd-cni` and `mobile-ffi`), [`atomic_file`] (the one way state files are written), [`tun`]
//! and [`udp`] (OS glue), [`quic_tls`] (TLS of QUIC links), [`discovery`] (signed LAN
//! announcements), [`nat`] (observed endpoints and hole punching), [`znet`] (znets, sans-IO),
//! [`metrics`] (the opt-in Prometheus/OpenMetrics endpoint), [`daemon`] (the event loop; the worker threads that do its slow work: znet plumbing over
//! netlink, policy compiles, state files; the TCP/QUIC sockets and the multicast socket).
//!
//! ## What it must not do
//! The event loop never does slow work (a process, a netlink request, an fsync, a compile): a
//! worker does it and the result comes back as an event.
//! No routing or policy logic lives here: those belong to `routing` and `acl`, which stay pure
//! (`firewall` only asks `acl` for verdicts and remembers flows).
//! The data path must not allocate per packet, and nothing received from the network may make it
//! panic: every wire parser has a fuzz target in `meshd/fuzz`.

pub mod admin;
pub mod atomic_file;
pub mod codes;
pub mod config;
pub mod conns;
pub mod daemon;
pub mod discovery;
pub mod dns;
pub mod e2e;
pub mod firewall;
pub mod gateway;
pub mod identity;
pub mod link;
pub mod metrics;
pub mod nat;
pub mod node;
pub mod noise;
pub mod packet;
pub mod protect;
/// TLS for `quic://` links: the node's ed25519 key as the TLS identity, both ways.
pub mod quic_tls;
pub mod replay;
pub mod seal_pool;
pub mod session;
pub mod toolkit;
pub mod tun;
pub mod udp;
pub mod uri;
pub mod wire;
pub mod znet;
