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
