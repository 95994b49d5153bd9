//! The hash map of the per-packet tables (link sessions and peers, end-to-end sessions, the
//! firewall's flows): foldhash instead of SipHash, about a fifth of the instructions per
//! lookup (`bench/callgrind.sh`). Seeded at random per process like std's `RandomState`, so
//! an outsider cannot aim keys at one bucket; and every such table is bounded anyway.

/// A `HashMap` with foldhash's randomly seeded fast hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
