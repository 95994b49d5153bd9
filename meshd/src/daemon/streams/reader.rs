//! Reading a connection's byte stream as length-prefixed frames (a 2-byte big-endian length,
//! then the frame), with every read under a deadline and a buffer that stays small until the
//! connection carries an authenticated link.
//!
//! A stranger's 2-byte length reserves nothing: the buffer ([`STRANGER_BUFFER`]) grows only
//! as the body's bytes actually arrive, and a frame whose first byte arrived must be complete
//! within [`FRAME_TIMEOUT`] (counted from that byte, so trickling bytes does not extend it).
//! Once the loop marks the connection authenticated, the buffer grows to [`LINK_BUFFER`], so
//! one read takes many frames. Deciding whether the connection lives is the
//! [`crate::conns`] core's; this only ends the reading, and says why.

use super::StreamEvent;
use crate::conns::{ConnId, FRAME_TIMEOUT};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes a reader holds while its connection carries no authenticated link (a body longer
/// than this grows the buffer as its bytes arrive, at most doubling per full read).
pub(super) const STRANGER_BUFFER: usize = 2 * 1024;
/// Bytes a reader holds once its connection carries an authenticated link.
pub(super) const LINK_BUFFER: usize = 64 * 1024;
/// A frame's length prefix.
const PREFIX: usize = 2;

/// Why a reader stopped.
pub(super) enum End {
    /// The stream ended (or a zero length, which ends it too).
    Closed,
    /// Nothing arrived for the idle bound given.
    Idle,
    /// A frame's body did not complete within [`FRAME_TIMEOUT`].
    FrameTimeout,
    /// A read failed.
    Error(std::io::Error),
    /// The event loop is gone (shutdown).
    LoopGone,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed => write!(f, "the stream ended"),
            End::Idle => write!(f, "nothing received within the idle bound"),
            End::FrameTimeout => write!(f, "a frame not complete within {FRAME_TIMEOUT:?}"),
            End::Error(e) => write!(f, "{e}"),
            End::LoopGone => write!(f, "shutting down"),
        }
    }
}

/// Reads frames from `r` and hands each to the loop as [`StreamEvent::Frame`] until the
/// stream ends or a deadline passes: `idle` (if any) bounds the wait for a frame's first
/// byte, [`FRAME_TIMEOUT`] the rest of the frame. `authenticated` is set by the loop.
pub(super) async fn read_frames(
    mut r: impl AsyncRead + Unpin,
    id: ConnId,
    events: &mpsc::Sender<StreamEvent>,
    authenticated: &AtomicBool,
    idle: Option<Duration>,
) -> End {
    let mut buf = vec![0u8; STRANGER_BUFFER];
    // buf[start..end] is received and not yet handed on.
    let (mut start, mut end) = (0usize, 0usize);
    // When the first byte of the incomplete frame at `start` arrived.
    let mut frame_since: Option<Instant> = None;
    loop {
        while end - start >= PREFIX {
            let len = usize::from(u16::from_be_bytes([buf[start], buf[start + 1]]));
            if len == 0 {
                return End::Closed;
            }
            if end - start < PREFIX + len {
                break;
            }
            let frame = buf[start + PREFIX..start + PREFIX + len].to_vec();
            start += PREFIX + len;
            frame_since = None;
            if events.send(StreamEvent::Frame(id, frame)).await.is_err() {
                return End::LoopGone;
            }
        }
        let authed = authenticated.load(Ordering::Relaxed);
        if start == end {
            (start, end) = (0, 0);
            frame_since = None;
            if !authed && buf.len() > STRANGER_BUFFER {
                // A stranger's long frame is done: give its memory back.
                buf = vec![0u8; STRANGER_BUFFER];
            }
        } else if frame_since.is_none() {
            frame_since = Some(Instant::now());
        }
        // What the frame being read needs in all, its prefix included.
        let need = if end - start >= PREFIX {
            PREFIX + usize::from(u16::from_be_bytes([buf[start], buf[start + 1]]))
        } else {
            PREFIX
        };
        if start > 0 && buf.len() - start < need {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        if authed && buf.len() < LINK_BUFFER.max(need) {
            buf.resize(LINK_BUFFER.max(need), 0);
        } else if end == buf.len() {
            // Full and the frame is longer (else it would be complete): grow with what came.
            buf.resize((buf.len() * 2).min(need), 0);
        }
        let deadline = match frame_since {
            Some(t) => Some(t + FRAME_TIMEOUT),
            None => idle.map(|d| Instant::now() + d),
        };
        let read = r.read(&mut buf[end..]);
        let n = match deadline {
            Some(at) => match tokio::time::timeout_at(at, read).await {
                Ok(n) => n,
                Err(_) if frame_since.is_some() => return End::FrameTimeout,
                Err(_) => return End::Idle,
            },
            None => read.await,
        };
        match n {
            Ok(0) => return End::Closed,
            Ok(n) => end += n,
            Err(e) => return End::Error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn framed(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![];
        for f in frames {
            out.extend_from_slice(&u16::try_from(f.len()).expect("short").to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// Writes `bytes` in `chunk`-sized pieces, reads them back with `read_frames`; returns the
    /// frames and why reading ended.
    async fn read_back(bytes: Vec<u8>, chunk: usize, authenticated: bool) -> (Vec<Vec<u8>>, End) {
        let (mut w, r) = tokio::io::duplex(128 * 1024);
        let (tx, mut rx) = mpsc::channel(1024);
        let auth = AtomicBool::new(authenticated);
        let writer = async move {
            for piece in bytes.chunks(chunk) {
                if w.write_all(piece).await.is_err() {
                    // The reader stopped (as it should at a zero length).
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        let reader = read_frames(r, ConnId(1), &tx, &auth, Some(Duration::from_secs(5)));
        let ((), end) = tokio::join!(writer, reader);
        drop(tx);
        let mut got = vec![];
        while let Some(ev) = rx.recv().await {
            if let StreamEvent::Frame(_, f) = ev {
                got.push(f);
            }
        }
        (got, end)
    }

    #[tokio::test]
    async fn frames_come_out_whole_however_the_bytes_are_cut() {
        let frames: Vec<Vec<u8>> = [1usize, 148, 1500, 3000, 65_535, 7]
            .iter()
            .map(|n| (0..*n).map(|i| i as u8).collect())
            .collect();
        for authenticated in [false, true] {
            for chunk in [1, 3, 1000, 70_000] {
                let bytes = framed(&frames);
                let (got, end) = read_back(bytes, chunk, authenticated).await;
                assert_eq!(got, frames, "chunk {chunk}, authenticated {authenticated}");
                assert!(matches!(end, End::Closed), "{end}");
            }
        }
    }

    #[tokio::test]
    async fn a_zero_length_ends_the_stream_and_silence_ends_it_at_the_idle_bound() {
        let mut bytes = framed(&[b"one".to_vec()]);
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend(framed(&[b"never".to_vec()]));
        let (got, end) = read_back(bytes, 4, false).await;
        assert_eq!(got, [b"one".to_vec()]);
        assert!(matches!(end, End::Closed));
        // Nothing at all, with an idle bound of 50 ms.
        let (_w, r) = tokio::io::duplex(64);
        let (tx, _rx) = mpsc::channel(4);
        let auth = AtomicBool::new(false);
        let start = Instant::now();
        let end = read_frames(r, ConnId(1), &tx, &auth, Some(Duration::from_millis(50))).await;
        assert!(matches!(end, End::Idle), "{end}");
        assert!(start.elapsed() < FRAME_TIMEOUT);
    }
}
