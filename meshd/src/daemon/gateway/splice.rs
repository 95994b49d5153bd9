//! Moving bytes: a public connection (or a mesh user's) and its stream, both ways, until both
//! sides are done or nothing moved for the idle timeout; and the task that drives a yamux
//! session.

use futures::future::poll_fn;
use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// The last moment any byte moved in one splice, and the service's byte counters it adds to.
pub struct Meter {
    /// Last activity either way.
    pub last: Cell<Option<Instant>>,
    /// Bytes read from the client side (the service's total).
    pub from_client: Rc<Cell<u64>>,
    /// Bytes read from the service side (the service's total).
    pub from_service: Rc<Cell<u64>>,
}

impl Meter {
    /// A meter adding to these totals.
    pub fn new(from_client: Rc<Cell<u64>>, from_service: Rc<Cell<u64>>) -> Meter {
        Meter {
            last: Cell::new(None),
            from_client,
            from_service,
        }
    }
}

/// A stream whose reads are counted.
struct Counted<S> {
    inner: S,
    meter: Rc<Meter>,
    client_side: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let c = if self.client_side {
                &self.meter.from_client
            } else {
                &self.meter.from_service
            };
            c.set(c.get() + n);
            self.meter.last.set(Some(Instant::now()));
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a splice ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed (or one failed).
    Done,
    /// Nothing moved for the idle timeout.
    Idle,
}

/// The buffer of each direction.
const BUF: usize = 64 * 1024;

/// Copies `client` ⇄ `service` until both directions end or nothing moves for `idle`.
pub async fn splice<C, S>(
    client: C,
    service: S,
    idle: std::time::Duration,
    meter: Rc<Meter>,
) -> Ended
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    meter.last.set(Some(Instant::now()));
    let mut c = Counted {
        inner: client,
        meter: meter.clone(),
        client_side: true,
    };
    let mut s = Counted {
        inner: service,
        meter: meter.clone(),
        client_side: false,
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut c, &mut s, BUF, BUF);
    let watchdog = async {
        loop {
            let due = meter.last.get().unwrap_or_else(Instant::now) + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    };
    tokio::select! {
        _ = copy => Ended::Done,
        _ = watchdog => Ended::Idle,
    }
}

/// A request for a new stream on a yamux session.
pub type Opener = oneshot::Sender<yamux::Stream>;

/// Drives a yamux session: opens a stream for each request on `open` (gateway side), hands
/// each stream the peer opens to `inbound` (publisher side), until the session or the
/// request channel ends.
pub async fn drive<T>(
    mut conn: yamux::Connection<T>,
    mut open: mpsc::Receiver<Opener>,
    mut inbound: impl FnMut(yamux::Stream),
) -> Result<(), yamux::ConnectionError>
where
    T: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let mut waiting: VecDeque<Opener> = VecDeque::new();
    let mut requests_open = true;
    poll_fn(|cx| {
        while requests_open {
            match open.poll_recv(cx) {
                Poll::Ready(Some(tx)) => waiting.push_back(tx),
                Poll::Ready(None) => requests_open = false,
                Poll::Pending => break,
            }
        }
        while !waiting.is_empty() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(Ok(s)) => {
                    if let Some(tx) = waiting.pop_front() {
                        let _ = tx.send(s);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(s))) => inbound(s),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        if !requests_open && waiting.is_empty() {
            // Whoever could ask for streams is gone: the session is no longer wanted.
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    })
    .await
}

/// The most streams a publisher session carries at once (the largest `max_connections` of a
/// service and `max_per_service` of a gateway).
pub const MAX_STREAMS: usize = 4096;

/// yamux's settings for publisher sessions: `max_streams` streams at once (at most
/// [`MAX_STREAMS`]), each with at least yamux's 256 KiB window, and no more buffered per
/// session than those windows (a peer cannot make this side hold more). Frames of 64 KiB:
/// a gigabyte moves in a quarter of the frames of yamux's default 16 KiB (measured in
/// `bench/gateway.sh`).
pub fn yamux_config(max_streams: usize) -> yamux::Config {
    let streams = max_streams.clamp(1, MAX_STREAMS);
    let mut c = yamux::Config::default();
    // yamux checks the window against the number of streams as each is set: the window first.
    c.set_max_connection_receive_window(None);
    c.set_max_num_streams(streams);
    c.set_max_connection_receive_window(Some((streams * 256 * 1024).max(64 << 20)));
    c.set_split_send_size(64 * 1024);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_limit_makes_a_valid_yamux_config() {
        // yamux asserts its window covers its streams: no limit a user can give may panic.
        for n in [0, 1, 255, 256, 1000, 4096, 4097, usize::MAX] {
            let _ = yamux_config(n);
        }
    }
}
