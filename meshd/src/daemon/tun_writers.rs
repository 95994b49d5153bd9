//! TUN writers: threads that write the packets for this node's own programs to the TUN device,
//! so that the kernel's part of a write (the receiving TCP stack runs inside it: the larger
//! part of a receiving daemon's time) runs beside the event loop, on another core, instead of
//! after it.
//!
//! The event loop decrypts a batch and hands each packet to the writer of its flow
//! ([`lane_of`]: addresses, protocol, ports), which joins the flow's segments (GRO) and writes
//! them in the order they came. One flow is always on one writer, so nothing is reordered;
//! flows spread over the writers.
//!
//! Bounded: a writer takes at most [`DEPTH`] batches ahead of what it has written, and the
//! event loop waits (as it waits for a full TUN device) when a writer is that far behind.
//! Written buffers go back to the event loop to be decrypted into again: a batch allocates
//! nothing once the pool is full. If a writer thread is gone, its lane is written by the event
//! loop itself, so a bug there cannot swallow a flow.
//!
//! Must not: hold any node state (the writers see only packets already decrypted and checked),
//! or block the event loop on anything but a writer that is [`DEPTH`] batches behind.

use super::gro::{GROTable, MAX_PIECES};
use super::local::VIRTIO_NET_HDR_LEN;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, IoSlice, Write};
use std::os::fd::BorrowedFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::mpsc as tokio_mpsc;

/// Batches a writer may hold: one being written and this many waiting.
const DEPTH: usize = 2;
/// Most writer threads (more cores than this gain nothing on one TUN device).
pub const MAX_WRITERS: usize = 8;
/// Digests of flows, to pick a writer (a fixed seed: the choice only has to be stable).
const FLOW: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x6c61_6e65);

type Batch = Vec<Vec<u8>>;

/// The writer threads of one TUN device.
pub struct TunWriters {
    lanes: Vec<Lane>,
    /// Batches written, given back by the writers.
    back: mpsc::Receiver<Batch>,
    /// Buffers written, to decrypt into again.
    pool: Vec<Vec<u8>>,
    pool_max: usize,
    /// Most bytes a pooled buffer may hold.
    buf_max: usize,
    /// Emptied batch vectors.
    empty: Vec<Batch>,
    /// Whether packets carry a virtio-net header (offload on).
    vnet: bool,
}

struct Lane {
    tx: Option<tokio_mpsc::Sender<Batch>>,
    filling: Batch,
    /// The lane's own handle on the device, for writing it from the event loop if the thread
    /// is gone.
    file: File,
    gro: GROTable,
    thread: Option<JoinHandle<()>>,
}

impl TunWriters {
    /// Starts `n` writer threads (at least one, at most [`MAX_WRITERS`]) on duplicates of
    /// `tun`. `vnet`: the device takes a virtio-net header (offload on); `batch`: the most
    /// packets the event loop hands over at once; `buf_max`: the most bytes a buffer kept for
    /// reuse may hold (a packet of the device's MTU with its header room and some slack).
    pub fn start(
        tun: BorrowedFd<'_>,
        n: usize,
        vnet: bool,
        batch: usize,
        buf_max: usize,
    ) -> io::Result<Self> {
        let n = n.clamp(1, MAX_WRITERS);
        let (back_tx, back) = mpsc::channel();
        let mut lanes = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = tokio_mpsc::channel(DEPTH);
            let file = File::from(tun.try_clone_to_owned()?);
            let theirs = File::from(tun.try_clone_to_owned()?);
            let back = back_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("meshd-tun-w{i}"))
                .spawn(move || run(theirs, vnet, rx, back))?;
            lanes.push(Lane {
                tx: Some(tx),
                filling: Vec::with_capacity(batch),
                file,
                gro: GROTable::default(),
                thread: Some(thread),
            });
        }
        Ok(TunWriters {
            lanes,
            back,
            pool: Vec::new(),
            // Every buffer that can be out at once: the loop's batch, and per writer one
            // filling, DEPTH waiting and one being written.
            pool_max: batch * (1 + n * (DEPTH + 2)),
            buf_max,
            empty: Vec::new(),
            vnet,
        })
    }

    /// How many writers there are.
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// A buffer to decrypt the next packet into (one given back by a writer, or a new one).
    pub fn spare(&mut self) -> Vec<u8> {
        if self.pool.is_empty() {
            self.collect();
        }
        self.pool.pop().unwrap_or_default()
    }

    /// Takes the batches the writers gave back into the pool (what it has no room for is
    /// freed, and so is a buffer grown past a packet of the device: the loop sizes a buffer
    /// to a datagram before knowing it is one, so garbage could grow every pooled buffer).
    fn collect(&mut self) {
        while let Ok(mut b) = self.back.try_recv() {
            keep(&mut self.pool, self.pool_max, self.buf_max, b.drain(..));
            if self.empty.len() < self.lanes.len() * (DEPTH + 2) {
                self.empty.push(b);
            }
        }
    }

    /// Queues `buf` (a packet after [`VIRTIO_NET_HDR_LEN`] bytes of header room) for the
    /// writer of its flow; [`TunWriters::flush`] hands the queues over.
    pub fn push(&mut self, buf: Vec<u8>) {
        let pkt = buf.get(VIRTIO_NET_HDR_LEN..).unwrap_or_default();
        let lane = lane_of(pkt, self.lanes.len());
        self.lanes[lane].filling.push(buf);
    }

    /// Hands every lane's queued packets to its writer, waiting while a writer is [`DEPTH`]
    /// batches behind.
    pub async fn flush(&mut self) {
        for lane in &mut self.lanes {
            if lane.filling.is_empty() {
                continue;
            }
            let fresh = self.empty.pop().unwrap_or_default();
            let batch = std::mem::replace(&mut lane.filling, fresh);
            let Some(tx) = lane.tx.as_ref() else {
                // The thread is gone: this loop writes the lane.
                let mut batch = batch;
                write_batch(&lane.file, self.vnet, &mut lane.gro, &mut batch);
                keep(&mut self.pool, self.pool_max, self.buf_max, batch);
                continue;
            };
            if let Err(tokio_mpsc::error::SendError(mut batch)) = tx.send(batch).await {
                tracing::error!("a TUN writer thread stopped; the event loop writes its flows");
                lane.tx = None;
                write_batch(&lane.file, self.vnet, &mut lane.gro, &mut batch);
                keep(&mut self.pool, self.pool_max, self.buf_max, batch);
            }
        }
    }
}

impl Drop for TunWriters {
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            // Closing the channel ends the thread once it has written what it holds.
            lane.tx = None;
            if let Some(t) = lane.thread.take()
                && t.join().is_err()
            {
                tracing::error!("a TUN writer thread panicked");
            }
        }
    }
}

/// Keeps `bufs` for reuse in `pool`, up to `pool_max` buffers, except those holding more than
/// `buf_max` bytes (freed).
fn keep(
    pool: &mut Vec<Vec<u8>>,
    pool_max: usize,
    buf_max: usize,
    bufs: impl IntoIterator<Item = Vec<u8>>,
) {
    let room = pool_max.saturating_sub(pool.len());
    pool.extend(
        bufs.into_iter()
            .filter(|v| v.capacity() <= buf_max)
            .take(room),
    );
}

/// The writer (of `n`) that packet `pkt`'s flow goes to: by addresses, protocol and, for TCP
/// and UDP, ports. Anything else (too short, not IP) goes to the first.
pub fn lane_of(pkt: &[u8], n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let h = match pkt.first().map(|b| b >> 4) {
        Some(6) if pkt.len() >= 40 => {
            let proto = pkt[6];
            let ports = match proto {
                6 | 17 => pkt.get(40..44).unwrap_or_default(),
                _ => &[],
            };
            FLOW.hash_one((&pkt[8..40], proto, ports))
        }
        Some(4) if pkt.len() >= 20 => {
            let proto = pkt[9];
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let ports = match proto {
                6 | 17 => pkt.get(ihl..ihl + 4).unwrap_or_default(),
                _ => &[],
            };
            FLOW.hash_one((&pkt[12..20], proto, ports))
        }
        _ => return 0,
    };
    ((u128::from(h) * n as u128) >> 64) as usize
}

/// One writer thread: writes the batches it is given, in order, and gives them back.
fn run(file: File, vnet: bool, mut rx: tokio_mpsc::Receiver<Batch>, back: mpsc::Sender<Batch>) {
    let mut gro = GROTable::default();
    while let Some(mut batch) = rx.blocking_recv() {
        write_batch(&file, vnet, &mut gro, &mut batch);
        if back.send(batch).is_err() {
            break;
        }
    }
}

/// Writes the packets of `batch` (each after [`VIRTIO_NET_HDR_LEN`] bytes of header room),
/// joining a flow's segments when the device takes a virtio-net header.
fn write_batch(mut file: &File, vnet: bool, gro: &mut GROTable, batch: &mut [Vec<u8>]) {
    if !vnet {
        for b in batch.iter() {
            if let Some(p) = b.get(VIRTIO_NET_HDR_LEN..) {
                report(file.write(p));
            }
        }
        return;
    }
    if let Err(e) = gro.coalesce(batch, VIRTIO_NET_HDR_LEN) {
        tracing::debug!("TUN write: {e}");
        return;
    }
    let batch: &[Vec<u8>] = batch;
    let mut iov = [IoSlice::new(&[]); MAX_PIECES];
    for &i in &gro.to_write {
        match gro.pieces(i, batch, VIRTIO_NET_HDR_LEN, &mut iov) {
            0 => {}
            1 => report(file.write(&iov[0])),
            n => report(file.write_vectored(&iov[..n])),
        }
    }
}

/// A failed write loses that packet only (as a full device queue would); the reason is logged
/// at debug level, as the event loop's own writes do.
fn report(r: io::Result<usize>) {
    if let Err(e) = r {
        tracing::debug!("TUN write: {e}");
    }
}

#[cfg(test)]
#[path = "tun_writers_tests.rs"]
mod tests;
