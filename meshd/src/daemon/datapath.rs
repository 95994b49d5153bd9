//! The data path: TUN → encrypt → UDP and UDP → decrypt → TUN, in batches.
//!
//! One TUN read may return a 64 KB TCP super-packet (TSO); tun-rs splits it into MTU-sized
//! packets, each is encrypted, and consecutive datagrams of equal size to the same peer leave in
//! one GSO `sendmsg`. The other way, one `recvmmsg` returns up to 8 GRO-coalesced buffers of up to
//! 64 datagrams each; every datagram is decrypted in place into a TUN buffer, and the batch is
//! written with GRO coalescing, so the kernel sees few large TCP segments. No allocation per
//! packet: every buffer here is reused.

use super::Sockets;
use crate::link::{FRAME_HEADROOM, Links, Recv, Send};
use crate::udp::canonical;
use crate::wire::TRANSPORT_OVERHEAD;
use quinn_udp::RecvMeta;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::time::Instant;
use tun_rs::{AsyncDevice, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// Read batches handled per wake-up before the loop looks at other work.
const BUDGET: usize = 16;
/// GRO buffers per `recvmmsg`.
const RX_SLOTS: usize = 8;
/// Size of one GRO buffer (the kernel coalesces up to 64 KB).
const RX_SLOT_LEN: usize = 65_536;
/// Capacity of one TUN write buffer: a whole coalesced 64 KB segment and two headers.
const TUN_BUF_CAPACITY: usize = 2 * VIRTIO_NET_HDR_LEN + 65_535;
/// Most packets decrypted before they are written to the TUN device.
const MAX_TUN_BATCH: usize = 128;
/// Most payload bytes one GSO send may carry: the total must fit one UDP datagram's length.
const MAX_GSO_BYTES: usize = 65_000;

/// Buffers for the TUN → UDP direction.
pub struct TunToUdp {
    original: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    out: Vec<u8>,
    seg_cap: usize,
}

/// A run of datagrams of one size to one destination, waiting in `out`.
struct GsoRun {
    to: SocketAddr,
    seg: usize,
    count: usize,
    len: usize,
    /// The last datagram was shorter than `seg`: nothing more may follow it.
    closed: bool,
}

impl TunToUdp {
    /// Buffers for a TUN device of this MTU.
    pub fn new(mtu: u16) -> Self {
        let seg_cap = FRAME_HEADROOM + mtu as usize + 64;
        TunToUdp {
            original: vec![0; VIRTIO_NET_HDR_LEN + 65_535],
            bufs: (0..IDEAL_BATCH_SIZE).map(|_| vec![0; seg_cap]).collect(),
            sizes: vec![0; IDEAL_BATCH_SIZE],
            out: vec![0; 64 * (seg_cap + TRANSPORT_OVERHEAD)],
            seg_cap,
        }
    }

    /// Reads what the TUN device has (up to the budget), encrypts and sends it. Datagrams from
    /// successive reads join the same GSO send when they can (small packets such as TCP ACKs
    /// come one per read), so a burst costs one `sendmsg`, not one per packet.
    ///
    /// Fails if the device itself failed (deleted, or erroring on every read).
    pub async fn pump(
        &mut self,
        tun: &AsyncDevice,
        links: &mut Links,
        socks: &Sockets,
    ) -> io::Result<()> {
        let mut run: Option<GsoRun> = None;
        let mut errors = ReadErrors::default();
        let mut result = Ok(());
        for _ in 0..BUDGET {
            let n = match tun.try_recv_multiple(
                &mut self.original,
                &mut self.bufs,
                &mut self.sizes,
                FRAME_HEADROOM,
            ) {
                Ok(n) => n,
                Err(e) => match errors.on(e, "TUN read") {
                    Some(r) => {
                        result = r;
                        break;
                    }
                    None => continue,
                },
            };
            errors.reset();
            self.send_batch(n, links, socks, &mut run).await;
        }
        if let Some(r) = run {
            flush(socks, &self.out[..r.len], &r).await;
        }
        result
    }

    /// Encrypts `n` packets into `out`, extending `run` or flushing it when they cannot join.
    async fn send_batch(
        &mut self,
        n: usize,
        links: &mut Links,
        socks: &Sockets,
        run: &mut Option<GsoRun>,
    ) {
        let now = Instant::now();
        for i in 0..n {
            let pkt_len = FRAME_HEADROOM + self.sizes[i].min(self.seg_cap - FRAME_HEADROOM);
            let at = run.as_ref().map_or(0, |r| r.len);
            if at + pkt_len + TRANSPORT_OVERHEAD > self.out.len()
                && let Some(r) = run.take()
            {
                flush(socks, &self.out[..r.len], &r).await;
            }
            let at = run.as_ref().map_or(0, |r| r.len);
            let pkt = &mut self.bufs[i][..pkt_len];
            let Send::Transmit { to, len } = links.encapsulate(now, pkt, &mut self.out[at..])
            else {
                continue;
            };
            let max_segs = socks.max_gso_segments(&to);
            let joins = run.as_ref().is_some_and(|r| {
                r.to == to
                    && !r.closed
                    && len <= r.seg
                    && r.count < max_segs
                    && r.len + len <= MAX_GSO_BYTES
            });
            if joins {
                if let Some(r) = run.as_mut() {
                    r.count += 1;
                    r.len += len;
                    r.closed = len < r.seg;
                }
                continue;
            }
            if let Some(r) = run.take() {
                flush(socks, &self.out[..r.len], &r).await;
                self.out.copy_within(r.len..r.len + len, 0);
            }
            *run = Some(GsoRun {
                to,
                seg: len,
                count: 1,
                len,
                closed: false,
            });
        }
    }
}

/// Consecutive read errors within one pump. One bad packet (tun-rs refuses some GSO layouts)
/// is skipped; a descriptor that is gone, or fails every read, ends the pump with an error
/// instead of spinning.
#[derive(Default)]
struct ReadErrors(usize);

impl ReadErrors {
    /// What to do after `e`: `None` to read on, `Some(Ok)` to stop for now (nothing to read),
    /// `Some(Err)` to give up on the descriptor.
    fn on(&mut self, e: io::Error, what: &str) -> Option<io::Result<()>> {
        if e.kind() == io::ErrorKind::WouldBlock {
            return Some(Ok(()));
        }
        tracing::debug!("{what}: {e}");
        self.0 += 1;
        let gone = matches!(
            e.raw_os_error(),
            Some(libc::EBADFD | libc::EBADF | libc::ENODEV | libc::ENXIO | libc::EIO)
        );
        (gone || self.0 == BUDGET).then_some(Err(e))
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

async fn flush(socks: &Sockets, contents: &[u8], run: &GsoRun) {
    let segment = (run.count > 1).then_some(run.seg);
    socks.send(run.to, contents, segment).await;
}

/// Buffers for the UDP → TUN direction.
pub struct UdpToTun {
    rx: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    tun_bufs: Vec<Vec<u8>>,
    gro: GROTable,
}

impl Default for UdpToTun {
    fn default() -> Self {
        UdpToTun {
            rx: (0..RX_SLOTS).map(|_| vec![0; RX_SLOT_LEN]).collect(),
            meta: vec![RecvMeta::default(); RX_SLOTS],
            tun_bufs: Vec::new(),
            gro: GROTable::default(),
        }
    }
}

impl UdpToTun {
    /// Receives what socket `idx` has (up to the budget), decrypts it and writes it to the TUN.
    /// Packets from successive receives are written together, so GRO coalesces as many TCP
    /// segments as possible into one write (each write runs the kernel's TCP receive path).
    ///
    /// Fails if the socket itself failed (erroring on every receive).
    pub async fn pump(
        &mut self,
        idx: usize,
        tun: &AsyncDevice,
        links: &mut Links,
        socks: &Sockets,
    ) -> io::Result<()> {
        let Some(sock) = socks.get(idx) else {
            return Ok(());
        };
        let mut count = 0;
        let mut errors = ReadErrors::default();
        let mut result = Ok(());
        for _ in 0..BUDGET {
            let n = {
                let mut iovs: Vec<IoSliceMut<'_>> =
                    self.rx.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                match sock.try_recv(&mut iovs, &mut self.meta) {
                    Ok(n) => n,
                    Err(e) => match errors.on(e, "UDP receive") {
                        Some(r) => {
                            result = r;
                            break;
                        }
                        None => continue,
                    },
                }
            };
            errors.reset();
            let now = Instant::now();
            for (m, buf) in self.meta[..n].iter().zip(&self.rx) {
                let from = canonical(m.addr);
                let stride = if m.stride == 0 { m.len } else { m.stride };
                for dgram in buf[..m.len.min(buf.len())].chunks(stride.max(1)) {
                    if count == self.tun_bufs.len() {
                        // GRO appends the segments of a flow to its first buffer, and tun-rs
                        // coalesces only into a buffer with room for 64 KB: reserve it (pages
                        // are touched only as far as they are used).
                        self.tun_bufs.push(Vec::with_capacity(TUN_BUF_CAPACITY));
                    }
                    let tb = &mut self.tun_bufs[count];
                    tb.clear();
                    tb.resize(VIRTIO_NET_HDR_LEN - FRAME_HEADROOM + dgram.len(), 0);
                    let out = &mut tb[VIRTIO_NET_HDR_LEN - FRAME_HEADROOM..];
                    if let Recv::Deliver { len } = links.handle_datagram(now, from, dgram, out) {
                        tb.truncate(VIRTIO_NET_HDR_LEN + len);
                        count += 1;
                    }
                }
            }
            if count >= MAX_TUN_BATCH {
                self.write_tun(tun, count).await;
                count = 0;
            }
        }
        self.write_tun(tun, count).await;
        super::flush_control(links, socks).await;
        result
    }

    async fn write_tun(&mut self, tun: &AsyncDevice, count: usize) {
        if count == 0 {
            return;
        }
        let bufs = &mut self.tun_bufs[..count];
        if let Err(e) = tun
            .send_multiple(&mut self.gro, bufs, VIRTIO_NET_HDR_LEN)
            .await
        {
            tracing::debug!("TUN write: {e}");
        }
    }
}
