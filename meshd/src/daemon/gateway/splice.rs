//! Moving bytes: a public connection (or a mesh user's) and the connection that carries it,
//! both ways, until both sides are done or nothing moved for the idle timeout.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

/// The most connections at once to one service (`max_connections` of a service and
/// `max_per_service` of a gateway are checked against it).
pub const MAX_STREAMS: usize = 4096;
