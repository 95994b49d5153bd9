//! The data path: encrypting a packet into a DATA message on the newest usable session (or
//! queueing it and starting a handshake), and decrypting a DATA message, checking the
//! packet's source against the session's key and its destination against ours.
//!
//! It must not run a handshake step itself (it calls [`E2e::start_handshake`] and
//! [`E2e::flush_queue`]) nor keep anything beyond the per-remote counters and timestamps.

use super::{CONTROL, E2e, Encrypt, Received, wire};
use crate::codes;
use crate::identity::PublicKey;
use crate::packet::Ipv6Header;
use crate::session::{SealJob, SessionError};
use routing::address;
use std::time::Instant;

impl E2e {
    /// Encrypts an IPv6 packet for `dest` into `out` (a DATA message), or queues it while a
    /// session is set up.
    pub fn encrypt(
        &mut self,
        now: Instant,
        dest: &PublicKey,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Encrypt {
        out.resize(packet.len() + wire::DATA_OVERHEAD, 0);
        match self.seal(now, dest, packet, out) {
            Ok(n) => {
                out.truncate(n);
                Encrypt::Ready
            }
            Err(e) => e,
        }
    }

    /// Encrypts an IPv6 packet for `dest` as a DATA message into `out` (which needs
    /// `packet.len() + wire::DATA_OVERHEAD` bytes) and returns its length; or queues the
    /// packet while a session is set up (`Err(Queued)`), or drops it (`Err(Dropped)`).
    pub fn seal(
        &mut self,
        now: Instant,
        dest: &PublicKey,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Encrypt> {
        self.seal_with(now, dest, packet, out, None)
    }

    /// As [`E2e::seal`], with the encryption itself left to the job put in `job`
    /// ([`crate::session::Session::encrypt_deferred`]): everything else (session choice, counter, probes,
    /// rekeying) happens now. Without a job in `job` the message was sealed at once.
    pub fn seal_deferred(
        &mut self,
        now: Instant,
        dest: &PublicKey,
        packet: &[u8],
        out: &mut [u8],
        job: &mut Option<SealJob>,
    ) -> Result<usize, Encrypt> {
        self.seal_with(now, dest, packet, out, Some(job))
    }

    fn seal_with(
        &mut self,
        now: Instant,
        dest: &PublicKey,
        packet: &[u8],
        out: &mut [u8],
        defer: Option<&mut Option<SealJob>>,
    ) -> Result<usize, Encrypt> {
        let life = self.cfg.lifetime();
        let probe_after = self.cfg.probe_after;
        let Some(r) = self.remote(dest, now) else {
            self.counters.queue_dropped += 1;
            return Err(Encrypt::Dropped);
        };
        r.last_used = now;
        if let Some(s) = r.send_session(now, life) {
            let due_rekey = now >= life.rekey_at(s);
            let sealed = match defer {
                None => s.encrypt(packet, out),
                Some(slot) => s.encrypt_deferred(packet, out).map(|(n, job)| {
                    *slot = Some(job);
                    n
                }),
            };
            if let Ok(n) = sealed {
                r.tx_packets += 1;
                r.tx_bytes += packet.len() as u64;
                let mut file_probe = None;
                if r.first_unanswered.is_none() {
                    r.first_unanswered = Some(now);
                    // A probe is due if nothing comes back: file it unless an earlier
                    // deadline is filed already (the usual case: no work per packet).
                    let probe = now + probe_after;
                    if r.timer.is_none_or(|t| t > probe) {
                        file_probe = Some(probe);
                    }
                }
                if due_rekey && r.initiating.is_none() {
                    self.start_handshake(now, dest);
                }
                if let Some(probe) = file_probe {
                    self.file(dest, probe);
                }
                return Ok(n);
            }
        }
        let limit = self.cfg.queue_per_remote;
        let Some(r) = self.remotes.get_mut(dest) else {
            return Err(Encrypt::Dropped);
        };
        if r.queue.len() >= limit {
            r.queue.pop_front();
            self.counters.queue_dropped += 1;
        }
        r.queue.push_back(packet.to_vec());
        if r.initiating.is_none() {
            self.start_handshake(now, dest);
        }
        Err(Encrypt::Queued)
    }

    /// Counts a direct message dropped before any layer saw it: too short or too long
    /// (`malformed`), or for an index no layer holds (`unknown_session`).
    pub fn count_direct_drop(&mut self, unknown_index: bool) {
        if unknown_index {
            self.counters.unknown_session += 1;
        } else {
            self.counters.malformed += 1;
        }
    }

    /// Whether `receiver` names one of this layer's sessions.
    pub fn has_index(&self, receiver: u32) -> bool {
        self.by_index.contains_key(&receiver)
    }

    /// Tells `src` that its session `receiver` is unknown here (a STALE hint, rate-limited),
    /// so that it handshakes again now rather than after `probe_after`. False if the rate
    /// allowed none.
    pub fn stale_hint(&mut self, now: Instant, src: PublicKey, receiver: u32) -> bool {
        let sent = self.stale_tokens.take(now, super::STALE_RATE);
        if sent {
            self.transmits.push_back((src, wire::emit_stale(receiver)));
        }
        sent
    }

    /// A DATA message (routed, or direct from a link peer: the caller checks
    /// [`E2e::has_index`] first): decrypted, its source and destination checked.
    pub(crate) fn on_data(
        &mut self,
        now: Instant,
        receiver: u32,
        counter: u64,
        ct: &[u8],
        out: &mut [u8],
    ) -> Received {
        if !self.by_index.contains_key(&receiver) {
            self.counters.unknown_session += 1;
            return Received::Dropped;
        }
        let Some(room) = out.get_mut(..ct.len()) else {
            self.counters.decrypt_failed += 1;
            return Received::Dropped;
        };
        room.copy_from_slice(ct);
        self.on_data_in_place(now, receiver, counter, room)
    }

    /// As [`E2e::on_data`], decrypting the ciphertext and tag `buf` where they lie: what
    /// [`Received::Deliver`] or [`Received::Control`] announce is at the start of `buf`.
    pub(crate) fn on_data_in_place(
        &mut self,
        now: Instant,
        receiver: u32,
        counter: u64,
        buf: &mut [u8],
    ) -> Received {
        let Some(key) = self.by_index.get(&receiver).copied() else {
            self.counters.unknown_session += 1;
            return Received::Dropped;
        };
        let (me, my_subnet) = (self.address, self.subnet);
        let Some(r) = self.remotes.get_mut(&key) else {
            return Received::Dropped;
        };
        let Some(s) = r.sessions.iter_mut().find(|s| s.local_index == receiver) else {
            self.counters.unknown_session += 1;
            return Received::Dropped;
        };
        let n = match s.decrypt_in_place(counter, buf) {
            Ok(n) => n,
            Err(SessionError::Replay) => {
                self.counters.replay += 1;
                return Received::Dropped;
            }
            Err(_) => {
                self.counters.decrypt_failed += 1;
                return Received::Dropped;
            }
        };
        r.last_rx = Some(now);
        r.first_unanswered = None;
        if !s.confirmed {
            s.confirmed = true;
            tracing::debug!(peer = %key.short(), "end-to-end session up");
            if !r.queue.is_empty() {
                self.flush_queue(now, key);
            }
        }
        if n == 0 {
            return Received::Consumed; // a keepalive that confirmed the session
        }
        let Some(r) = self.remotes.get_mut(&key) else {
            return Received::Dropped;
        };
        if self.cfg.bind.is_some() {
            // A znet packet: IPv4 or IPv6 of the znet's private ranges, checked by the znet.
            if !matches!(
                buf[0] >> 4,
                codes::session_payload::IPV4_NIBBLE | codes::session_payload::IPV6_NIBBLE
            ) {
                self.counters.malformed += 1;
                return Received::Dropped;
            }
            r.rx_packets += 1;
            r.rx_bytes += n as u64;
            return Received::Deliver { len: n, from: key };
        }
        if buf[0] == CONTROL {
            // Not a packet: a message between the two nodes themselves (NAT traversal).
            return Received::Control { len: n, from: key };
        }
        let Ok(h) = Ipv6Header::parse(&buf[..n]) else {
            self.counters.malformed += 1;
            return Received::Dropped;
        };
        if !address::owner_id(&h.src).is_some_and(|o| o == r.address || o == r.subnet) {
            self.counters.spoofed_source += 1;
            return Received::Dropped;
        }
        if !address::owner_id(&h.dst).is_some_and(|o| o == me || o == my_subnet) {
            self.counters.not_for_us += 1;
            return Received::Dropped;
        }
        r.rx_packets += 1;
        r.rx_bytes += h.total_len as u64;
        Received::Deliver {
            len: h.total_len,
            from: key,
        }
    }
}
