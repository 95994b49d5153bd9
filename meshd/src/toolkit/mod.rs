//! The pieces both kinds of session share: the link core's ([`crate::link`]) and the
//! end-to-end layer's ([`crate::e2e`]).
//!
//! * [`rng`]: SplitMix64, the seeded generator behind session indexes, jitter and nonces;
//! * [`index`]: picking a fresh session index that no table in use holds;
//! * [`bucket`]: a token bucket driven by the caller's `now` (handshake inits, LAN
//!   announcements);
//! * [`lifetime`]: when a session is rekeyed and when it must no longer be used;
//! * [`timer`]: a table of deadlines keyed by whatever wants them, so that finding and
//!   handling timeouts costs in proportion to what expires, not to the number of peers.
//!
//! Like the cores that use them, these never read a clock, never use global randomness and
//! never allocate on the data path. Replay windows live in [`crate::replay`], used by every
//! [`crate::session::Session`].

pub mod bucket;
pub mod fastmap;
pub mod index;
pub mod lifetime;
pub mod rng;
pub mod timer;
