//! The local stack: where the node's own programs' packets come from and where packets for them
//! go. A daemon has a TUN device it created; an app embedding the node (see `mobile-ffi`) hands
//! over a TUN descriptor the OS gave it, or, where the OS gives a packet flow instead of a
//! descriptor (iOS), exchanges packets one by one: [`PacketQueue`] in, a callback out.
//!
//! The data path ([`super::datapath`]) is written against [`LocalIo`], so the batching code is
//! the same for all three.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tun_rs::AsyncDevice;

#[cfg(target_os = "linux")]
pub(crate) use super::gro::GROTable;
#[cfg(target_os = "linux")]
pub(crate) use tun_rs::{IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

#[cfg(not(target_os = "linux"))]
pub(crate) use no_offload::{GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// Outside Linux (Android's adopted descriptors, and packet mode anywhere) there is no TUN
/// offload: nothing is coalesced, and the header room is kept only so that the data path's
/// buffer layout is the same everywhere.
#[cfg(not(target_os = "linux"))]
mod no_offload {
    /// Nothing to coalesce.
    #[derive(Default)]
    pub struct GROTable;
    /// Packets read per batch.
    pub const IDEAL_BATCH_SIZE: usize = 128;
    /// Room before each packet in the data path's buffers (unused here).
    pub const VIRTIO_NET_HDR_LEN: usize = 10;
}

/// A device the data path reads packets from and writes packets to, in batches.
pub(crate) trait LocalIo {
    /// Reads what is ready without waiting: packets go to `bufs[i][offset..]`, their sizes to
    /// `sizes[i]`. `WouldBlock` when nothing is.
    fn try_recv_multiple(
        &self,
        original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize>;

    /// Writes the packets `bufs[i][offset..]` (coalescing them where the device allows).
    async fn send_multiple<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        gro: &mut GROTable,
        bufs: &mut [B],
        offset: usize,
    ) -> io::Result<usize>;
}

#[cfg(target_os = "linux")]
impl LocalIo for AsyncDevice {
    fn try_recv_multiple(
        &self,
        original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        AsyncDevice::try_recv_multiple(self, original, bufs, sizes, offset)
    }

    async fn send_multiple<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        gro: &mut GROTable,
        bufs: &mut [B],
        offset: usize,
    ) -> io::Result<usize> {
        if !self.tcp_gso() {
            // No virtio-net header on this device: one packet per write. A packet the device
            // refuses is lost alone, unless the device is gone.
            let mut result = Ok(bufs.len());
            for b in bufs.iter() {
                if let Some(p) = b.as_ref().get(offset..) {
                    match self.send(p).await {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EBADFD) => return Err(e),
                        Err(e) => result = Err(e),
                    }
                }
            }
            return result;
        }
        gro.coalesce(bufs, offset)?;
        let bufs: &[B] = bufs;
        let mut total = 0;
        let mut result = Ok(());
        let mut iov = [io::IoSlice::new(&[]); super::gro::MAX_PIECES];
        for &i in &gro.to_write {
            let sent = match gro.pieces(i, bufs, offset, &mut iov) {
                0 => continue,
                1 => self.send(&iov[0]).await,
                n => self.send_vectored(&iov[..n]).await,
            };
            match sent {
                Ok(n) => total += n,
                // The device is gone: no point in writing the rest.
                Err(e) if e.raw_os_error() == Some(libc::EBADFD) => return Err(e),
                Err(e) => result = Err(e),
            }
        }
        result.map(|()| total)
    }
}

/// One packet per read and per write: tun-rs has no offload API outside Linux.
#[cfg(not(target_os = "linux"))]
impl LocalIo for AsyncDevice {
    fn try_recv_multiple(
        &self,
        _original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        let (Some(buf), Some(size)) = (bufs.first_mut(), sizes.first_mut()) else {
            return Ok(0);
        };
        let room = buf.get_mut(offset..).unwrap_or_default();
        *size = self.try_recv(room)?;
        Ok(1)
    }

    async fn send_multiple<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        _gro: &mut GROTable,
        bufs: &mut [B],
        offset: usize,
    ) -> io::Result<usize> {
        for b in bufs.iter() {
            if let Some(p) = b.as_ref().get(offset..) {
                self.send(p).await?;
            }
        }
        Ok(bufs.len())
    }
}

/// Why [`PacketQueue::push`] refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue is full (the node is behind): the packet is dropped, as a full NIC queue
    /// would drop it. Senders retransmit.
    Full,
    /// The node has stopped.
    Closed,
}

/// Packets from an app to the node, in packet mode: the app's thread pushes, the node's loop
/// takes them in batches. Bounded; never blocks the app.
pub struct PacketQueue {
    queue: Mutex<Option<VecDeque<Vec<u8>>>>,
    ready: Notify,
    capacity: usize,
    dropped: AtomicU64,
}

impl PacketQueue {
    /// A queue holding at most `capacity` packets.
    pub fn new(capacity: usize) -> Arc<PacketQueue> {
        Arc::new(PacketQueue {
            queue: Mutex::new(Some(VecDeque::with_capacity(capacity.min(1024)))),
            ready: Notify::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<VecDeque<Vec<u8>>>> {
        // A panic while the lock was held left a consistent queue (push and pop are single
        // calls); carry on with it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one packet for the node.
    pub fn push(&self, packet: Vec<u8>) -> Result<(), PushError> {
        {
            let mut q = self.lock();
            let Some(q) = q.as_mut() else {
                return Err(PushError::Closed);
            };
            if q.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(PushError::Full);
            }
            q.push_back(packet);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Packets refused because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Refuses further packets and drops those queued.
    pub fn close(&self) {
        *self.lock() = None;
        self.ready.notify_one();
    }

    /// Waits until a packet is queued (or the queue is closed).
    async fn readable(&self) {
        loop {
            if self.lock().as_ref().is_none_or(|q| !q.is_empty()) {
                return;
            }
            // A push between the check and this wait stored a permit: no wake-up is lost.
            self.ready.notified().await;
        }
    }
}

/// The packet callback of packet mode: called on the node's thread with each packet for the
/// app's stack.
pub type PacketSink = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Packet mode: packets in through a [`PacketQueue`], out through a callback.
pub struct PacketPort {
    /// Packets from the app.
    pub queue: Arc<PacketQueue>,
    /// Packets to the app.
    pub sink: PacketSink,
}

impl LocalIo for PacketPort {
    fn try_recv_multiple(
        &self,
        _original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        let mut guard = self.queue.lock();
        let Some(q) = guard.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "packet queue closed",
            ));
        };
        let mut n = 0;
        while n < bufs.len()
            && let Some(p) = q.pop_front()
        {
            let buf = &mut bufs[n];
            // The queue refuses packets over the MTU, and the buffers hold MTU + 64: this only
            // guards against a caller that changed the MTU.
            let len = p.len().min(buf.len().saturating_sub(offset));
            buf[offset..offset + len].copy_from_slice(&p[..len]);
            sizes[n] = len;
            n += 1;
        }
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    async fn send_multiple<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        _gro: &mut GROTable,
        bufs: &mut [B],
        offset: usize,
    ) -> io::Result<usize> {
        for b in bufs.iter() {
            if let Some(p) = b.as_ref().get(offset..) {
                (self.sink)(p);
            }
        }
        Ok(bufs.len())
    }
}

/// The node's local stack.
pub enum Local {
    /// A TUN device (created by the daemon, or adopted from a descriptor).
    Tun(AsyncDevice),
    /// Packet mode.
    Packets(PacketPort),
}

impl Local {
    /// Waits until there may be something to read.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Local::Tun(t) => t.readable().await,
            Local::Packets(p) => {
                p.queue.readable().await;
                Ok(())
            }
        }
    }
}

impl LocalIo for Local {
    fn try_recv_multiple(
        &self,
        original: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        match self {
            Local::Tun(t) => LocalIo::try_recv_multiple(t, original, bufs, sizes, offset),
            Local::Packets(p) => p.try_recv_multiple(original, bufs, sizes, offset),
        }
    }

    async fn send_multiple<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        gro: &mut GROTable,
        bufs: &mut [B],
        offset: usize,
    ) -> io::Result<usize> {
        match self {
            Local::Tun(t) => LocalIo::send_multiple(t, gro, bufs, offset).await,
            Local::Packets(p) => p.send_multiple(gro, bufs, offset).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_bounded_and_closes() {
        let q = PacketQueue::new(2);
        assert_eq!(q.push(vec![1]), Ok(()));
        assert_eq!(q.push(vec![2]), Ok(()));
        assert_eq!(q.push(vec![3]), Err(PushError::Full));
        assert_eq!(q.dropped(), 1);
        let port = PacketPort {
            queue: q.clone(),
            sink: Box::new(|_| {}),
        };
        let mut bufs = vec![vec![0u8; 8]; 4];
        let mut sizes = vec![0; 4];
        let n = port
            .try_recv_multiple(&mut [], &mut bufs, &mut sizes, 2)
            .expect("two packets");
        assert_eq!((n, sizes[0], bufs[1][2]), (2, 1, 2));
        let e = port.try_recv_multiple(&mut [], &mut bufs, &mut sizes, 2);
        assert_eq!(e.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
        q.close();
        assert_eq!(q.push(vec![4]), Err(PushError::Closed));
    }
}
