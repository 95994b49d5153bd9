//! `BROKEN` made harmless: it makes us look again, never forget.
//!
//! A node that cannot forward a message tells its source with a `BROKEN` naming the
//! destination. Nothing authenticates it: the node that dropped the message is any node on the
//! path, which the source does not know, and signing every notice would cost a signature per
//! drop at the node that drops. So a `BROKEN` is only a hint:
//!
//! * the source keeps the destination's place and goes on sending there;
//! * it looks the destination up again (one lookup at a time per address, at most one per
//!   [`RELOOK_INTERVAL`] per destination), and the answer replaces the place only if it comes
//!   from a newer record signed by the destination (`Router::record_coords`).
//!
//! A forged `BROKEN` therefore costs one rate-limited lookup and never a gap in traffic. A
//! genuine one (the destination moved, or the path is gone) is repaired by the same lookup, or
//! sooner by the destination's own `NOTIFY`; packets sent meanwhile take the old path as
//! before, where they used to wait for the lookup.
//!
//! This file must not drop what we know of a destination: only a signed newer record, or our
//! own finding that no peer leads there (`Router::send_traffic`), does that.

use crate::codec::Key;
use crate::router::{Event, Router};
use std::time::{Duration, Instant};

/// Least time between two lookups a `BROKEN` starts for the same destination.
pub const RELOOK_INTERVAL: Duration = Duration::from_secs(1);

/// Most destinations whose last such lookup we remember (the table is cleared of old entries,
/// then of all, when full).
const MAX_RELOOKED: usize = 4096;

impl Router {
    /// A `BROKEN` for `key` arrived: look it up again if we route to it and have not lately.
    pub(crate) fn on_broken(&mut self, now: Instant, key: Key) {
        // Only for a destination we actually route to.
        if !self.coords_of.contains_key(&key) {
            return;
        }
        self.events.push_back(Event::PathBroken { key });
        if self
            .relooked
            .get(&key)
            .is_some_and(|t| now < *t + RELOOK_INTERVAL)
        {
            self.stats.broken_ignored += 1;
            return;
        }
        if self.relooked.len() >= MAX_RELOOKED {
            self.relooked.retain(|_, t| now < *t + RELOOK_INTERVAL);
            if self.relooked.len() >= MAX_RELOOKED {
                self.relooked.clear();
            }
        }
        self.relooked.insert(key, now);
        let addr = crate::address::node_address(&key);
        self.lookup_again(now, addr);
    }
}
