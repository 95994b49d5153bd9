//! One transport session: the keys of a completed handshake, the send counter and the replay
//! window. Encryption and decryption write into buffers the caller owns, or work in place.
//!
//! The keys are taken out of snow once its handshake is done (Noise's `Split()`, snow's
//! `risky-raw-split`) and used with ring directly, exactly as snow's ring back-end uses them
//! (the same nonces, no associated data; a test holds the two to each other), because snow
//! encrypts and decrypts only from one buffer into another: a transit node would copy every
//! packet twice.

use crate::replay::{COUNTER_LIMIT, ReplayWindow};
use crate::wire::{self, Suite};
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroize;

/// Why a transport message was not accepted on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Seen before, or too old for the window.
    #[error("replayed or too old")]
    Replay,
    /// The tag did not verify (forged, corrupted, or meant for other keys).
    #[error("authentication failed")]
    Decrypt,
    /// The send counter is used up; the session must be replaced.
    #[error("session counter exhausted")]
    Exhausted,
    /// The output buffer is too small (a caller bug).
    #[error("output buffer too small")]
    Buffer,
}

/// A completed Noise session.
pub struct Session {
    /// Our index: the `receiver` field of messages sent to us on this session.
    pub local_index: u32,
    /// The peer's index: the `receiver` field of messages we send.
    pub remote_index: u32,
    /// When the handshake completed.
    pub created: Instant,
    /// True if we sent message 1.
    pub initiator: bool,
    /// True once the peer is known to hold the keys (we received on it, or we are the responder).
    pub confirmed: bool,
    /// The AEAD in use.
    pub suite: Suite,
    /// Shared with [`SealJob`]s in flight (another thread may seal with it).
    send: Arc<LessSafeKey>,
    recv: LessSafeKey,
    send_counter: u64,
    replay: ReplayWindow,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

/// Noise's nonce for a counter: 32 zero bits, then the counter, big-endian for AES-GCM and
/// little-endian for ChaCha20-Poly1305.
fn nonce(suite: Suite, counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&match suite {
        Suite::AesGcm => counter.to_be_bytes(),
        Suite::ChaChaPoly => counter.to_le_bytes(),
    });
    Nonce::assume_unique_for_key(n)
}

impl Session {
    /// The session of a finished handshake (`None` if it is not finished).
    pub fn from_handshake(
        mut hs: snow::HandshakeState,
        local_index: u32,
        remote_index: u32,
        suite: Suite,
        now: Instant,
    ) -> Option<Self> {
        if !hs.is_handshake_finished() {
            return None;
        }
        let initiator = hs.is_initiator();
        // The first key is the initiator's sending key.
        let (mut first, mut second) = hs.dangerously_get_raw_split();
        let alg = match suite {
            Suite::AesGcm => &AES_256_GCM,
            Suite::ChaChaPoly => &CHACHA20_POLY1305,
        };
        let keys =
            UnboundKey::new(alg, &first).and_then(|a| Ok((a, UnboundKey::new(alg, &second)?)));
        first.zeroize();
        second.zeroize();
        let (a, b) = keys.ok()?;
        let (send, recv) = match initiator {
            true => (a, b),
            false => (b, a),
        };
        Some(Session {
            local_index,
            remote_index,
            created: now,
            initiator,
            confirmed: !initiator,
            suite,
            send: Arc::new(LessSafeKey::new(send)),
            recv: LessSafeKey::new(recv),
            send_counter: 0,
            replay: ReplayWindow::default(),
        })
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.send_counter
    }

    /// Encrypts `plaintext` into a complete transport message in `out`; returns its length.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SessionError> {
        let at = wire::TRANSPORT_HEADER_LEN;
        let Some(room) = out.get_mut(at..at + plaintext.len()) else {
            return Err(SessionError::Buffer);
        };
        room.copy_from_slice(plaintext);
        self.encrypt_in_place(out, plaintext.len())
    }

    /// Makes a complete transport message of the `len` bytes of plaintext that `buf` holds
    /// after room for the header ([`wire::TRANSPORT_HEADER_LEN`]); returns its length.
    pub fn encrypt_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SessionError> {
        if self.send_counter >= COUNTER_LIMIT {
            return Err(SessionError::Exhausted);
        }
        let need = wire::TRANSPORT_OVERHEAD + len;
        if buf.len() < need {
            return Err(SessionError::Buffer);
        }
        let counter = self.send_counter;
        wire::emit_transport_header(buf, self.remote_index, counter);
        let at = wire::TRANSPORT_HEADER_LEN;
        let (text, tag) = buf[at..need].split_at_mut(len);
        let t = self
            .send
            .seal_in_place_separate_tag(nonce(self.suite, counter), Aad::empty(), text)
            .map_err(|_| SessionError::Buffer)?;
        tag.copy_from_slice(t.as_ref());
        self.send_counter += 1;
        Ok(need)
    }

    /// As [`Session::encrypt`], but the encryption itself is left to the returned job: the
    /// header is written and the counter taken now (so messages keep the order of these
    /// calls), the plaintext copied to its place; [`SealJob::seal`] on the same bytes, on
    /// any thread, makes the message complete. Nothing may send the message before that.
    pub fn encrypt_deferred(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, SealJob), SessionError> {
        if self.send_counter >= COUNTER_LIMIT {
            return Err(SessionError::Exhausted);
        }
        let at = wire::TRANSPORT_HEADER_LEN;
        let need = wire::TRANSPORT_OVERHEAD + plaintext.len();
        if out.len() < need {
            return Err(SessionError::Buffer);
        }
        out[at..at + plaintext.len()].copy_from_slice(plaintext);
        let counter = self.send_counter;
        wire::emit_transport_header(out, self.remote_index, counter);
        self.send_counter += 1;
        let job = SealJob {
            key: self.send.clone(),
            suite: self.suite,
            counter,
            start: at,
            len: plaintext.len(),
        };
        Ok((need, job))
    }

    /// Decrypts a transport message's `ciphertext` into `out`; returns the plaintext length.
    /// The replay window moves only if the message authenticated.
    pub fn decrypt(
        &mut self,
        counter: u64,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SessionError> {
        if !self.replay.check(counter) {
            return Err(SessionError::Replay);
        }
        let Some(room) = out.get_mut(..ciphertext.len()) else {
            return Err(SessionError::Buffer);
        };
        room.copy_from_slice(ciphertext);
        self.decrypt_in_place(counter, room)
    }

    /// Decrypts a transport message's ciphertext and tag where they are: the plaintext is
    /// left at the start of `buf`; returns its length. The replay window moves only if the
    /// message authenticated (on failure `buf` holds garbage).
    pub fn decrypt_in_place(
        &mut self,
        counter: u64,
        buf: &mut [u8],
    ) -> Result<usize, SessionError> {
        if !self.replay.check(counter) {
            return Err(SessionError::Replay);
        }
        if buf.len() < wire::TAG_LEN {
            return Err(SessionError::Decrypt);
        }
        let n = self
            .recv
            .open_in_place(nonce(self.suite, counter), Aad::empty(), buf)
            .map_err(|_| SessionError::Decrypt)?
            .len();
        if !self.replay.accept(counter) {
            return Err(SessionError::Replay);
        }
        Ok(n)
    }
}

/// An encryption left for later ([`Session::encrypt_deferred`]): the plaintext at
/// `start..start + len` of a buffer, sealed in place with its tag after it. Run once, by
/// [`crate::seal_pool::SealPool::seal_all`] (which empties its list): a job dropped leaves
/// plaintext behind its header, and one run twice would undo its encryption.
#[must_use = "a job not run leaves plaintext in the buffer"]
#[cfg_attr(test, derive(Clone))]
pub struct SealJob {
    key: Arc<LessSafeKey>,
    suite: Suite,
    counter: u64,
    /// Where the plaintext starts in the buffer it was written to.
    pub(crate) start: usize,
    len: usize,
}

impl std::fmt::Debug for SealJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealJob")
            .field("counter", &self.counter)
            .field("start", &self.start)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl SealJob {
    /// Where the plaintext starts in the buffer it was written to.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The bytes the job reads and writes: from `start` to the end of the tag.
    pub fn end(&self) -> usize {
        self.start + self.len + wire::TAG_LEN
    }

    /// The same job on the same bytes, `by` bytes further into its buffer.
    pub fn shifted(mut self, by: usize) -> SealJob {
        self.start += by;
        self
    }

    /// Seals the plaintext where it lies in `buf` (the buffer the offsets refer to); false if
    /// it could not (`buf` too short: a caller bug), and then the message must not be sent.
    pub(crate) fn seal(&self, buf: &mut [u8]) -> bool {
        self.seal_at(buf, 0)
    }

    /// As [`SealJob::seal`], where `buf` starts at byte `base` of the buffer the offsets
    /// refer to. If the AEAD itself fails the plaintext is wiped (zeros); if the bytes are
    /// not in `buf` nothing is touched, and the caller must not send them.
    pub(crate) fn seal_at(&self, buf: &mut [u8], base: usize) -> bool {
        let Some(start) = self.start.checked_sub(base) else {
            return false;
        };
        let Some(room) = buf.get_mut(start..start + self.len + wire::TAG_LEN) else {
            return false;
        };
        let (text, tag) = room.split_at_mut(self.len);
        match self.key.seal_in_place_separate_tag(
            nonce(self.suite, self.counter),
            Aad::empty(),
            text,
        ) {
            Ok(t) => {
                tag.copy_from_slice(t.as_ref());
                true
            }
            Err(_) => {
                text.fill(0);
                false
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::noise;

    /// Two sessions of one handshake of `suite`: (initiator's, responder's).
    pub(crate) fn session_pair(suite: Suite) -> (Session, Session) {
        let (i, r) = handshake(suite);
        let now = Instant::now();
        let a = Session::from_handshake(i, 1, 2, suite, now).expect("a");
        let b = Session::from_handshake(r, 2, 1, suite, now).expect("b");
        (a, b)
    }

    /// Two finished XX handshakes of `suite`: (initiator, responder).
    fn handshake(suite: Suite) -> (snow::HandshakeState, snow::HandshakeState) {
        let mut i = noise::initiator(&[1; 32], suite).expect("initiator");
        let mut r = noise::responder(&[2; 32], suite).expect("responder");
        let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
        let n = i.write_message(&[], &mut a).expect("msg 1");
        r.read_message(&a[..n], &mut b).expect("read 1");
        let n = r.write_message(&[], &mut a).expect("msg 2");
        i.read_message(&a[..n], &mut b).expect("read 2");
        let n = i.write_message(&[], &mut a).expect("msg 3");
        r.read_message(&a[..n], &mut b).expect("read 3");
        (i, r)
    }

    #[test]
    fn messages_are_what_snow_makes_of_the_same_keys_both_ways() {
        for suite in [Suite::AesGcm, Suite::ChaChaPoly] {
            for ours_initiates in [true, false] {
                let (i, r) = handshake(suite);
                let now = Instant::now();
                let (ours, theirs) = match ours_initiates {
                    true => (i, r),
                    false => (r, i),
                };
                let mut s = Session::from_handshake(ours, 7, 9, suite, now).expect("session");
                assert_eq!(s.initiator, ours_initiates);
                let snow = theirs.into_stateless_transport_mode().expect("snow");
                let mut msg = [0u8; 128];
                let mut plain = [0u8; 128];
                // Past 256 messages: the counter's byte order shows.
                for counter in 0..300u64 {
                    let text = [counter as u8; 40];
                    let n = s.encrypt(&text, &mut msg).expect("encrypt");
                    let m = snow
                        .read_message(counter, &msg[wire::TRANSPORT_HEADER_LEN..n], &mut plain)
                        .expect("snow reads ours");
                    assert_eq!(&plain[..m], &text);
                    let m = snow.write_message(counter, &text, &mut msg).expect("snow");
                    let k = s
                        .decrypt(counter, &msg[..m], &mut plain)
                        .expect("ours reads snow");
                    assert_eq!(&plain[..k], &text);
                }
            }
        }
    }

    #[test]
    fn deferred_seals_make_the_same_messages_in_any_order_and_on_any_thread() {
        for suite in [Suite::AesGcm, Suite::ChaChaPoly] {
            let now = Instant::now();
            let (i, r) = handshake(suite);
            let mut a = Session::from_handshake(i, 1, 2, suite, now).expect("a");
            let mut b = Session::from_handshake(r, 2, 1, suite, now).expect("b");
            // Eight messages, the first four into one buffer and the rest into another.
            let (mut low, mut high) = (vec![0u8; 4 * 200], vec![0u8; 4 * 200]);
            let mut jobs = Vec::new();
            for k in 0..8u8 {
                let at = (k as usize % 4) * 200;
                let buf = if k < 4 { &mut low } else { &mut high };
                let (n, job) = a
                    .encrypt_deferred(&[k; 60], &mut buf[at..])
                    .expect("deferred");
                assert_eq!(n, wire::TRANSPORT_OVERHEAD + 60);
                jobs.push(job.shifted(at));
            }
            // Sealed last first, the second four on another thread.
            let (jl, jh) = jobs.split_at(4);
            std::thread::scope(|t| {
                t.spawn(|| {
                    for j in jh.iter().rev() {
                        assert!(j.seal(&mut high));
                    }
                });
                for j in jl.iter().rev() {
                    assert!(j.seal(&mut low));
                }
            });
            let mut plain = [0u8; 128];
            for k in 0..8usize {
                let buf = if k < 4 { &low } else { &high };
                let m = &buf[(k % 4) * 200..][..wire::TRANSPORT_OVERHEAD + 60];
                let counter = u64::from_be_bytes(m[5..13].try_into().expect("8 bytes"));
                assert_eq!(counter, k as u64);
                let n = b
                    .decrypt(counter, &m[wire::TRANSPORT_HEADER_LEN..], &mut plain)
                    .expect("the peer opens it");
                assert_eq!(&plain[..n], &[k as u8; 60]);
            }
            // A job given too short a buffer seals nothing and says so.
            let (_, job) = a.encrypt_deferred(&[1; 60], &mut low).expect("deferred");
            assert!(!job.seal(&mut [0u8; 20]));
        }
    }

    #[test]
    fn in_place_and_copying_agree_and_a_replay_or_a_flipped_bit_is_refused() {
        let (i, r) = handshake(Suite::AesGcm);
        let now = Instant::now();
        let mut a = Session::from_handshake(i, 1, 2, Suite::AesGcm, now).expect("a");
        let mut b = Session::from_handshake(r, 2, 1, Suite::AesGcm, now).expect("b");
        let text = *b"a packet sealed where it lies...";
        let mut buf = [0u8; 64];
        buf[wire::TRANSPORT_HEADER_LEN..][..text.len()].copy_from_slice(&text);
        let n = a.encrypt_in_place(&mut buf, text.len()).expect("seal");
        assert_eq!(n, wire::TRANSPORT_OVERHEAD + text.len());
        let mut copy = buf;
        let counter = 0;
        let m = b
            .decrypt_in_place(counter, &mut buf[wire::TRANSPORT_HEADER_LEN..n])
            .expect("open");
        assert_eq!(&buf[wire::TRANSPORT_HEADER_LEN..][..m], &text);
        let mut out = [0u8; 64];
        assert_eq!(
            b.decrypt(counter, &copy[wire::TRANSPORT_HEADER_LEN..n], &mut out),
            Err(SessionError::Replay)
        );
        let n2 = a.encrypt(&text, &mut copy).expect("seal 2");
        copy[n2 - 1] ^= 1;
        assert_eq!(
            b.decrypt(1, &copy[wire::TRANSPORT_HEADER_LEN..n2], &mut out),
            Err(SessionError::Decrypt)
        );
        // the window did not move: the genuine message is still taken
        copy[n2 - 1] ^= 1;
        assert!(
            b.decrypt(1, &copy[wire::TRANSPORT_HEADER_LEN..n2], &mut out)
                .is_ok()
        );
        assert_eq!(
            b.decrypt_in_place(2, &mut [0u8; 15]),
            Err(SessionError::Decrypt)
        );
        assert!(
            Session::from_handshake(
                noise::initiator(&[1; 32], Suite::AesGcm).expect("hs"),
                1,
                2,
                Suite::AesGcm,
                now
            )
            .is_none()
        );
    }
}
