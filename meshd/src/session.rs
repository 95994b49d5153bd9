//! One transport session: the keys of a completed handshake, the send counter and the replay
//! window. Encryption and decryption write into buffers the caller owns.

use crate::replay::{COUNTER_LIMIT, ReplayWindow};
use crate::wire::{self, Suite};
use std::time::Instant;

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
    transport: snow::StatelessTransportState,
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

impl Session {
    /// Wraps a finished handshake.
    pub fn new(
        transport: snow::StatelessTransportState,
        local_index: u32,
        remote_index: u32,
        initiator: bool,
        suite: Suite,
        now: Instant,
    ) -> Self {
        Session {
            local_index,
            remote_index,
            created: now,
            initiator,
            confirmed: !initiator,
            suite,
            transport,
            send_counter: 0,
            replay: ReplayWindow::default(),
        }
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.send_counter
    }

    /// Encrypts `plaintext` into a complete transport message in `out`; returns its length.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SessionError> {
        if self.send_counter >= COUNTER_LIMIT {
            return Err(SessionError::Exhausted);
        }
        let need = wire::TRANSPORT_OVERHEAD + plaintext.len();
        if out.len() < need {
            return Err(SessionError::Buffer);
        }
        let counter = self.send_counter;
        wire::emit_transport_header(out, self.remote_index, counter);
        let n = self
            .transport
            .write_message(
                counter,
                plaintext,
                &mut out[wire::TRANSPORT_HEADER_LEN..need],
            )
            .map_err(|_| SessionError::Buffer)?;
        self.send_counter += 1;
        Ok(wire::TRANSPORT_HEADER_LEN + n)
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
        // At least the ciphertext's length, so that snow decrypts in place without allocating.
        if out.len() < ciphertext.len() {
            return Err(SessionError::Buffer);
        }
        let n = self
            .transport
            .read_message(counter, ciphertext, out)
            .map_err(|_| SessionError::Decrypt)?;
        if !self.replay.accept(counter) {
            return Err(SessionError::Replay);
        }
        Ok(n)
    }
}
