//! How many handshake inits the loop reads from the handshake sockets (`udp.rs`), and when.
//!
//! Inits come from strangers, and a flood of spoofed ones can come faster than one core can
//! read and answer them. What the loop gives them depends on whether data is moving:
//!
//! * **Data moving** (a data socket or the TUN device had something within [`BUSY_WINDOW`]):
//!   each handshake socket is read at most [`BUSY_RATE`] inits a second. When its tokens are
//!   spent it is not even polled until they are back, so a flood costs the data path a bounded
//!   share of the loop and the kernel drops the excess for free.
//! * **Idle**: up to [`IDLE_BATCHES`] batches a turn, enough to empty the queue: reading is
//!   cheap, answering is not (a cookie reply is a send). When the queue is not emptied in a
//!   turn the loop is behind, and the **share** of unproven inits answered
//!   ([`crate::link::Links::set_cookie_share`]) goes down; when it is, the share goes back up.
//!   A flood then meets a random share of answers, the same odds for every init, instead of a
//!   full queue whose drops fall on whatever arrives while the reader is busy: a real
//!   initiator that happens to send just then (say, because it woke on the reader's core)
//!   would lose every time.
//!
//! The init that comes back with a cookie has a socket of its own, paced apart from the flood.

use crate::toolkit::bucket::{Bucket, Rate};
use crate::udp::INIT_BATCH;
use std::time::{Duration, Instant};

/// How long after the last data the loop counts as busy.
pub const BUSY_WINDOW: Duration = Duration::from_millis(10);
/// Inits a second read from one handshake socket while data moves.
pub const BUSY_RATE: Rate = Rate::new(50_000.0, 64.0);
/// Batches of [`INIT_BATCH`] read a turn while idle.
pub const IDLE_BATCHES: usize = 8;
/// The least share of unproven inits answered.
const MIN_SHARE: f64 = 1.0 / 256.0;
/// How the share falls after a turn that did not empty a queue, and rises after one that did.
const SHARE_DOWN: f64 = 0.8;
const SHARE_UP: f64 = 1.0 / 32.0;
/// A socket out of tokens rests at least this long (the timer's granularity).
const MIN_REST: Duration = Duration::from_millis(1);

/// How much to read from one handshake socket this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// `recvmmsg` calls.
    pub batches: usize,
    /// Datagrams each.
    pub per_batch: usize,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    tokens: Bucket,
    resting_until: Option<Instant>,
    /// What this socket's reads say the share should be.
    share: f64,
}

/// The pacing state of every handshake socket, by socket index.
#[derive(Debug, Default)]
pub struct InitPacing {
    last_data: Option<Instant>,
    slots: Vec<Slot>,
}

impl InitPacing {
    /// The share of unproven inits to answer (see the module's doc): the least any socket
    /// asks for, since one that is behind is behind for lack of the time answers take.
    pub fn share(&self) -> f64 {
        self.slots.iter().map(|s| s.share).fold(1.0, f64::min)
    }

    /// A read of socket `idx` as allowed by [`Self::allowance`] ended; `emptied`: its queue
    /// was emptied.
    pub fn read(&mut self, idx: usize, allowed: Allowance, emptied: bool) {
        if allowed.batches < IDLE_BATCHES {
            // Paced (data moving): a full read says nothing about keeping up.
            return;
        }
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.share = if emptied {
                (slot.share + SHARE_UP).min(1.0)
            } else {
                (slot.share * SHARE_DOWN).max(MIN_SHARE)
            };
        }
    }

    /// Data moved (a data socket or the TUN device was read and had something).
    pub fn data_moved(&mut self, now: Instant) {
        self.last_data = Some(now);
    }

    fn busy(&self, now: Instant) -> bool {
        self.last_data
            .is_some_and(|t| now.saturating_duration_since(t) < BUSY_WINDOW)
    }

    fn slot(&mut self, idx: usize, now: Instant) -> &mut Slot {
        if self.slots.len() <= idx {
            self.slots.resize(
                idx + 1,
                Slot {
                    tokens: Bucket::full(BUSY_RATE.burst, now),
                    resting_until: None,
                    share: 1.0,
                },
            );
        }
        &mut self.slots[idx]
    }

    /// What socket `idx` may read now. `None`: nothing; it rests (see [`Self::resting`]).
    pub fn allowance(&mut self, idx: usize, now: Instant) -> Option<Allowance> {
        let busy = self.busy(now);
        let slot = self.slot(idx, now);
        if !busy {
            slot.resting_until = None;
            return Some(Allowance {
                batches: IDLE_BATCHES,
                per_batch: INIT_BATCH,
            });
        }
        let n = slot.tokens.take_up_to(now, BUSY_RATE, INIT_BATCH);
        if n == 0 {
            let refill = Duration::from_secs_f64(INIT_BATCH as f64 / BUSY_RATE.per_sec);
            slot.resting_until = Some(now + refill.max(MIN_REST));
            return None;
        }
        Some(Allowance {
            batches: 1,
            per_batch: n,
        })
    }

    /// Whether socket `idx` rests now (the loop does not poll it).
    pub fn resting(&self, idx: usize, now: Instant) -> bool {
        self.slots
            .get(idx)
            .and_then(|s| s.resting_until)
            .is_some_and(|t| now < t)
    }

    /// When the first resting socket may be read again.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.resting_until)
            .filter(|&t| now < t)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_reads_whole_batches_and_never_rests() {
        let now = Instant::now();
        let mut p = InitPacing::default();
        for k in 0..10_000u64 {
            let t = now + Duration::from_micros(k);
            assert_eq!(
                p.allowance(1, t),
                Some(Allowance {
                    batches: IDLE_BATCHES,
                    per_batch: INIT_BATCH
                })
            );
            assert!(!p.resting(1, t));
        }
    }

    #[test]
    fn while_data_moves_a_socket_gets_its_rate_then_rests() {
        let now = Instant::now();
        let mut p = InitPacing::default();
        let mut read = 0;
        let mut rested = 0;
        // One second of turns every 10 µs, data moving all along.
        for k in 0..100_000u64 {
            let t = now + Duration::from_micros(10 * k);
            p.data_moved(t);
            if p.resting(1, t) {
                rested += 1;
                continue;
            }
            match p.allowance(1, t) {
                Some(a) => read += a.batches * a.per_batch,
                None => assert!(p.next_wake(t).is_some_and(|w| w > t)),
            }
        }
        let rate = BUSY_RATE.per_sec as usize;
        assert!(read <= rate + BUSY_RATE.burst as usize, "read {read}");
        assert!(read >= rate * 9 / 10, "read {read}");
        assert!(rested > 0);
        // Another socket has tokens of its own.
        let t = now + Duration::from_secs(1);
        assert!(p.allowance(2, t).is_some());
    }

    #[test]
    fn the_share_follows_whether_the_queue_is_emptied() {
        let now = Instant::now();
        let mut p = InitPacing::default();
        assert_eq!(p.share(), 1.0);
        let idle = p.allowance(1, now).expect("idle");
        p.allowance(2, now).expect("idle");
        for _ in 0..10 {
            p.read(1, idle, false);
            // The other socket keeps up: the one that does not decides.
            p.read(2, idle, true);
        }
        let low = p.share();
        assert!((MIN_SHARE..0.15).contains(&low), "{low}");
        for _ in 0..1000 {
            p.read(1, idle, false);
        }
        assert_eq!(p.share(), MIN_SHARE);
        for _ in 0..32 {
            p.read(1, idle, true);
        }
        assert_eq!(p.share(), 1.0);
        // Paced reads leave it alone.
        p.data_moved(now);
        let paced = p.allowance(1, now).expect("tokens");
        p.read(1, paced, false);
        assert_eq!(p.share(), 1.0);
    }

    #[test]
    fn data_that_stopped_lets_the_flood_be_read_in_full() {
        let now = Instant::now();
        let mut p = InitPacing::default();
        p.data_moved(now);
        while p.allowance(1, now).is_some() {}
        assert!(p.resting(1, now));
        let later = now + BUSY_WINDOW;
        assert_eq!(p.allowance(1, later).map(|a| a.batches), Some(IDLE_BATCHES));
        assert!(!p.resting(1, later));
    }
}
