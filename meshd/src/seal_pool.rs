//! Sealing a batch on more than one core: the event loop decides every packet of a TUN batch
//! in order (policy, path, session, counter: [`crate::node::Node::outbound_deferred`]), then
//! the encryptions, which are most of a sender's work and independent of each other once their
//! counters are taken, run across threads, and the batch leaves in the order it was decided.
//! Nothing is reordered: a flow's packets keep the counters and the places in the send buffer
//! the loop gave them, and the buffer is sent only once every job in it is done.
//!
//! The loop's thread takes part; the shares go to it and to a pool of `threads - 1`
//! threads ([`micropool`]: the calling thread takes part, and runs a share itself if no pool
//! thread has taken it), split by bytes
//! into contiguous runs of the buffer, so the jobs borrow the batch's buffer safely. `rayon`
//! was measured first: its caller waits asleep for a pool thread that was asleep too, which
//! cost about 42 us per batch on this project's machines (the whole batch's encryption
//! takes about 27 us), against about 1 us here. A batch too small to be worth it is sealed by
//! the loop alone.
//!
//! Only direct messages (the link peer is the destination) are deferred; routed ones, with a
//! link layer around the end-to-end one, are still sealed by the loop.
//!
//! Must not: decide anything about a packet (that is the node's, in order), or let a buffer
//! be sent when one of its jobs failed (the caller drops the batch and wipes it).

use crate::session::SealJob;
use std::io;

/// Bytes of plaintext below which a batch is sealed by the calling thread alone: about a
/// dozen full-size packets, some tens of microseconds of AES-GCM, against the few
/// microseconds a sleeping thread takes to wake.
pub const MIN_PARALLEL_BYTES: usize = 16 * 1024;
/// How long an idle pool thread (or a caller waiting for one) spins before it sleeps, in
/// spin-loop hints (micropool's default), when the pool leaves a core to the rest of the
/// machine; else it does not spin at all. Two daemons and iperf3 sharing two cores, each
/// daemon with two sealing threads, spent 43% more CPU per GB and moved 19% less with this
/// spin than without (`bench/compare.sh`, 2026-12-06): a thread spinning there takes the core
/// another needs. Without it, a pool thread sleeps between batches and the caller seals the
/// shares nobody took itself (waking a thread costs tens of microseconds here).
pub const IDLE_SPIN: usize = 3000;
/// Most sealing threads (the caller included).
pub const MAX_SEAL_THREADS: usize = 16;

/// Threads that seal batches, the caller's among them.
pub struct SealPool {
    pool: Option<micropool::ThreadPool>,
    threads: usize,
}

impl std::fmt::Debug for SealPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealPool")
            .field("threads", &self.threads)
            .finish()
    }
}

impl SealPool {
    /// A pool in which `threads` threads seal (the caller and `threads - 1` others; at least
    /// one, at most [`MAX_SEAL_THREADS`]).
    pub fn new(threads: usize) -> io::Result<SealPool> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let spin = if threads < cores { IDLE_SPIN } else { 0 };
        SealPool::with_spin(threads, spin)
    }

    /// As [`SealPool::new`], with idle threads spinning `spin` hints before they sleep
    /// (benches compare the two ways).
    pub fn with_spin(threads: usize, spin: usize) -> io::Result<SealPool> {
        let threads = threads.clamp(1, MAX_SEAL_THREADS);
        let pool = if threads > 1 {
            // micropool's spawn handler cannot return an error: a thread that cannot start
            // panics there, caught here and returned as the error it was.
            let built = std::panic::catch_unwind(|| {
                micropool::ThreadPoolBuilder::default()
                    .num_threads(threads - 1)
                    .idle_spin_cycles(spin)
                    .spawn_handler(|i, run| {
                        std::thread::Builder::new()
                            .name(format!("meshd-seal-{i}"))
                            .spawn(run)
                            .unwrap_or_else(|e| panic!("cannot start a sealing thread: {e}"))
                    })
                    .build()
            });
            Some(built.map_err(|e| {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "cannot start a sealing thread".into());
                io::Error::other(why)
            })?)
        } else {
            None
        };
        Ok(SealPool { pool, threads })
    }

    /// The threads that seal, the caller's included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The number of threads the data path seals with by default on this machine: one per
    /// two cores (the rest is the kernel's: TUN reads, UDP sends, the TCP stacks), at least
    /// one.
    pub fn default_threads() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 2).clamp(1, MAX_SEAL_THREADS)
    }

    /// Seals every job of `jobs` in `buf` (the buffer their offsets refer to; the jobs in
    /// increasing order, none overlapping the next) and empties `jobs`. Returns how many
    /// could not be sealed (a bug: the caller must then send none of `buf`).
    pub fn seal_all(&self, buf: &mut [u8], jobs: &mut Vec<SealJob>) -> usize {
        debug_assert!(
            jobs.windows(2).all(|w| w[0].end() <= w[1].start),
            "sealing jobs out of order or overlapping"
        );
        let failed = match &self.pool {
            Some(pool) if bytes(jobs) >= MIN_PARALLEL_BYTES => {
                seal_split(pool, self.threads, buf, jobs)
            }
            _ => seal_run(buf, 0, jobs),
        };
        jobs.clear();
        failed
    }
}

fn bytes(jobs: &[SealJob]) -> usize {
    jobs.iter().map(|j| j.end() - j.start).sum()
}

/// Seals `jobs` in `buf`, whose first byte is byte `base` of the buffer the offsets name.
fn seal_run(buf: &mut [u8], base: usize, jobs: &[SealJob]) -> usize {
    let mut failed = 0;
    for j in jobs {
        if !j.seal_at(buf, base) {
            failed += 1;
        }
    }
    failed
}

/// Splits `jobs` into `threads` contiguous groups of about equal bytes, each with the part of
/// `buf` it covers, and seals them on the pool, the caller taking part.
fn seal_split(
    pool: &micropool::ThreadPool,
    threads: usize,
    buf: &mut [u8],
    jobs: &[SealJob],
) -> usize {
    let total = bytes(jobs);
    // Group boundaries: indices into `jobs` where a new group starts, each once the bytes
    // before it reach the next multiple of a share.
    let mut cuts = Vec::with_capacity(threads);
    let mut acc = 0;
    for (i, j) in jobs.iter().enumerate() {
        if i > 0 && cuts.len() + 1 < threads && acc >= total * (cuts.len() + 1) / threads {
            cuts.push(i);
        }
        acc += j.end() - j.start;
    }
    // The buffer split at the first job of each later group.
    let mut parts: Vec<(&mut [u8], usize, &[SealJob])> = Vec::with_capacity(threads);
    let mut rest = buf;
    let mut base = 0;
    let mut from = 0;
    for &cut in &cuts {
        let at = jobs[cut].start.saturating_sub(base).min(rest.len());
        let (head, tail) = rest.split_at_mut(at);
        parts.push((head, base, &jobs[from..cut]));
        base += at;
        rest = tail;
        from = cut;
    }
    parts.push((rest, base, &jobs[from..]));
    join_all(pool, parts)
}

/// Seals every part, halves on the pool and halves here, down to one part each.
fn join_all(pool: &micropool::ThreadPool, mut parts: Vec<(&mut [u8], usize, &[SealJob])>) -> usize {
    if parts.len() <= 1 {
        return parts
            .pop()
            .map_or(0, |(part, base, group)| seal_run(part, base, group));
    }
    let right = parts.split_off(parts.len() / 2);
    let (a, b) = pool.join(|| join_all(pool, parts), || join_all(pool, right));
    a + b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::session_pair;
    use crate::wire::Suite;

    #[test]
    fn a_batch_sealed_on_any_number_of_threads_is_the_batch_sealed_one_by_one() {
        let (mut a, _) = session_pair(Suite::AesGcm);
        const SLOT: usize = 1500;
        for threads in 1..=4 {
            let pool = SealPool::with_spin(threads, 0).expect("pool");
            for count in [1usize, 2, 3, 13, 64] {
                let mut buf = vec![0u8; count * SLOT];
                let mut jobs = Vec::new();
                for k in 0..count {
                    // Lengths that differ, so that shares are uneven.
                    let text = vec![k as u8; 900 + (k * 37) % 500];
                    let (_, job) = a
                        .encrypt_deferred(&text, &mut buf[k * SLOT..])
                        .expect("deferred");
                    jobs.push(job.shifted(k * SLOT));
                }
                let mut one_by_one = buf.clone();
                for j in &jobs {
                    assert!(j.seal(&mut one_by_one));
                }
                assert_eq!(pool.seal_all(&mut buf, &mut jobs), 0);
                assert!(jobs.is_empty());
                assert!(buf == one_by_one, "{threads} threads, {count} jobs");
            }
        }
    }

    #[test]
    fn default_threads_is_at_least_one() {
        assert!(SealPool::default_threads() >= 1);
        assert_eq!(SealPool::new(0).expect("pool").threads(), 1);
        assert_eq!(SealPool::new(99).expect("pool").threads(), MAX_SEAL_THREADS);
    }
}
