//! The data path: TUN → node → UDP and UDP → node → TUN (or UDP again, forwarding), in batches.
//!
//! One TUN read may return a 64 KB TCP super-packet (TSO); tun-rs splits it into MTU-sized
//! packets, the node encrypts and routes each, and consecutive datagrams of one size to one
//! next hop leave in one GSO `sendmsg`. The other way, one `recvmmsg` returns up to 8
//! GRO-coalesced buffers of up to 64 datagrams each; packets for this node are decrypted where
//! they lie and written to the TUN device from there (a flow's segments joined into one
//! `writev`) before the buffers are read into again, packets for others are sealed again for
//! the next link where they lie and sent from there. No copy of a payload and no allocation
//! per packet (connections' frames and the optional writer threads copy once).

use super::Sockets;
use super::init_pacing::{Allowance, InitPacing};
use super::local::{GROTable, IDEAL_BATCH_SIZE, Local, LocalIo, VIRTIO_NET_HDR_LEN};
use crate::node::{Inbound, Node, Outbound};
use crate::seal_pool::SealPool;
use crate::session::SealJob;
use crate::udp::{InitBatch, canonical};
use crate::uri::{Endpoint, Scheme};
use quinn_udp::RecvMeta;
use std::io::{self, IoSliceMut};
use std::sync::Arc;
use std::time::Instant;

/// Read batches handled per wake-up before the loop looks at other work.
const BUDGET: usize = 16;
/// GRO buffers per `recvmmsg`.
const RX_SLOTS: usize = 8;
/// Size of one GRO buffer (the kernel coalesces up to 64 KB).
const RX_SLOT_LEN: usize = 65_536;
/// Spare TUN buffers kept for the znets' batches.
const MAX_SPARE: usize = 2 * MAX_TUN_BATCH;
/// Most packets decrypted before they are written to the TUN device.
pub const MAX_TUN_BATCH: usize = 128;
/// Most payload bytes one GSO send may carry: the total must fit one UDP datagram's length.
const MAX_GSO_BYTES: usize = 65_000;
/// Room reserved for one datagram in a GSO buffer.
const SLOT: usize = 2048;

/// A run of datagrams of one size to one destination: `buf[start..len]` of the buffer that
/// holds them.
struct Run {
    to: Endpoint,
    seg: usize,
    count: usize,
    start: usize,
    len: usize,
    /// The last datagram was shorter than `seg`: nothing more may follow it.
    closed: bool,
}

impl Run {
    /// Whether a datagram of `len` bytes to `to` may follow the run in one GSO send.
    fn takes(&self, to: Endpoint, len: usize, max_segs: usize) -> bool {
        self.to == to
            && !self.closed
            && len <= self.seg
            && self.count < max_segs
            && self.len - self.start + len <= MAX_GSO_BYTES
    }
}

/// Datagrams built in place and sent with GSO when they line up.
pub struct GsoBatch {
    out: Vec<u8>,
    run: Option<Run>,
    /// Encryptions left to do in `out` before any of it is sent, in the order of their
    /// places ([`Node::outbound_deferred`]).
    pending: Vec<SealJob>,
    /// Who does them (on more than one thread if it has them); none: nothing is deferred.
    sealer: Option<Arc<SealPool>>,
}

impl GsoBatch {
    fn new() -> Self {
        GsoBatch {
            out: vec![0; 64 * SLOT],
            run: None,
            pending: Vec::new(),
            sealer: None,
        }
    }

    /// The datagram just written at the tail is sealed by `job` (offsets from the tail).
    fn defer(&mut self, job: SealJob) {
        let at = self.run.as_ref().map_or(0, |r| r.len);
        self.pending.push(job.shifted(at));
    }

    /// Runs every pending encryption. False if one failed (a bug): then nothing in the
    /// buffer may be sent, and the caller drops it all.
    fn seal_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let failed = match &self.sealer {
            Some(p) => p.seal_all(&mut self.out, &mut self.pending),
            None => {
                let n = self
                    .pending
                    .iter()
                    .filter(|j| !j.seal(&mut self.out))
                    .count();
                self.pending.clear();
                n
            }
        };
        if failed > 0 {
            tracing::error!(
                failed,
                "sealing a batch failed; the batch is dropped (a bug)"
            );
            // Nothing of it is sent; nothing of its plaintext stays either.
            self.out.fill(0);
        }
        failed == 0
    }

    /// Where the next datagram is written; flushes first if the buffer is full.
    async fn tail(&mut self, socks: &Sockets) -> &mut [u8] {
        let at = self.run.as_ref().map_or(0, |r| r.len);
        if at + SLOT > self.out.len() {
            self.flush(socks).await;
        }
        let at = self.run.as_ref().map_or(0, |r| r.len);
        &mut self.out[at..]
    }

    /// The datagram just written at the tail goes to `to`.
    async fn commit(&mut self, socks: &Sockets, to: Endpoint, len: usize) {
        if to.scheme != Scheme::Udp {
            // A connection: handed over at once (the run before it keeps its place), sealed
            // first if its sealing was left for later.
            let at = self.run.as_ref().map_or(0, |r| r.len);
            if self.pending.last().is_some_and(|j| j.start >= at)
                && let Some(j) = self.pending.pop()
                && !j.seal(&mut self.out)
            {
                tracing::error!("sealing a datagram failed; it is dropped (a bug)");
                self.out[at..].fill(0);
                return;
            }
            socks.streams.send(to, &self.out[at..at + len]);
            return;
        }
        let max_segs = socks.max_gso_segments(&to);
        let joins = self
            .run
            .as_ref()
            .is_some_and(|r| r.takes(to, len, max_segs));
        if joins {
            if let Some(r) = self.run.as_mut() {
                r.count += 1;
                r.len += len;
                r.closed = len < r.seg;
            }
            return;
        }
        if let Some(r) = self.run.take() {
            // The new datagram is sealed with the run (if it is pending), then moved.
            if !self.seal_pending() {
                return;
            }
            send_run(socks, &self.out[..r.len], &r).await;
            self.out.copy_within(r.len..r.len + len, 0);
        }
        self.run = Some(Run {
            to,
            seg: len,
            count: 1,
            start: 0,
            len,
            closed: false,
        });
    }

    async fn flush(&mut self, socks: &Sockets) {
        if let Some(r) = self.run.take()
            && self.seal_pending()
        {
            send_run(socks, &self.out[..r.len], &r).await;
        }
        self.pending.clear();
    }
}

async fn send_run(socks: &Sockets, contents: &[u8], run: &Run) {
    let segment = (run.count > 1).then_some(run.seg);
    socks.send(run.to, contents, segment).await;
}

/// The datagram at `buf[at..at + len]`, sealed again where it lay, goes to `to`: it joins
/// `run` (datagrams just before it, to the same place, of its size) or the run is sent and a
/// new one starts. Returns the run still open.
async fn forward_in_place(
    socks: &Sockets,
    buf: &[u8],
    run: Option<Run>,
    to: Endpoint,
    at: usize,
    len: usize,
) -> Option<Run> {
    if to.scheme != Scheme::Udp {
        // A connection: handed over at once (the run keeps its place).
        socks.streams.send(to, &buf[at..at + len]);
        return run;
    }
    if let Some(mut r) = run {
        if r.len == at && r.takes(to, len, socks.max_gso_segments(&to)) {
            r.count += 1;
            r.len += len;
            r.closed = len < r.seg;
            return Some(r);
        }
        send_run(socks, &buf[r.start..r.len], &r).await;
    }
    Some(Run {
        to,
        seg: len,
        count: 1,
        start: at,
        len: at + len,
        closed: false,
    })
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

/// Writes locally generated packets (ICMPv6 errors) to the local stack.
pub async fn write_local(tun: &Local, node: &mut Node, gro: &mut GROTable) {
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    while let Some(p) = node.poll_tun() {
        let mut b = vec![0u8; VIRTIO_NET_HDR_LEN];
        b.extend_from_slice(&p);
        bufs.push(b);
    }
    if !bufs.is_empty()
        && let Err(e) = tun.send_multiple(gro, &mut bufs, VIRTIO_NET_HDR_LEN).await
    {
        tracing::debug!("TUN write: {e}");
    }
}

/// Buffers for the TUN → UDP direction.
pub struct TunToUdp {
    original: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    batch: GsoBatch,
}

impl TunToUdp {
    /// Buffers for a TUN device of this MTU.
    pub fn new(mtu: u16) -> Self {
        let cap = mtu as usize + 64;
        TunToUdp {
            original: vec![0; VIRTIO_NET_HDR_LEN + 65_535],
            bufs: (0..IDEAL_BATCH_SIZE).map(|_| vec![0; cap]).collect(),
            sizes: vec![0; IDEAL_BATCH_SIZE],
            batch: GsoBatch::new(),
        }
    }

    /// From now on the batches' encryptions run on `sealer`'s threads, after every packet
    /// of a batch is decided and before any of it is sent ([`crate::seal_pool`]).
    pub fn set_sealer(&mut self, sealer: Arc<SealPool>) {
        self.batch.sealer = Some(sealer);
    }

    /// Reads what the TUN device has (up to the budget), encrypts, routes and sends it.
    /// Returns whether it read anything; fails if the device itself failed.
    pub async fn pump(
        &mut self,
        tun: &impl LocalIo,
        node: &mut Node,
        socks: &Sockets,
        znet: Option<u64>,
    ) -> io::Result<bool> {
        let mut errors = ReadErrors::default();
        let mut result = Ok(());
        let mut batches = 0;
        for _ in 0..BUDGET {
            let n =
                match tun.try_recv_multiple(&mut self.original, &mut self.bufs, &mut self.sizes, 0)
                {
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
            batches += 1;
            let now = Instant::now();
            let defer = self.batch.sealer.is_some();
            for i in 0..n {
                let len = self.sizes[i].min(self.bufs[i].len());
                let out = self.batch.tail(socks).await;
                let packet = &self.bufs[i][..len];
                let mut job = None;
                let r = match (znet, defer) {
                    (None, false) => node.outbound(now, packet, out),
                    (None, true) => node.outbound_deferred(now, packet, out, &mut job),
                    (Some(id), false) => node.znet_outbound(now, id, packet, out),
                    (Some(id), true) => node.znet_outbound_deferred(now, id, packet, out, &mut job),
                };
                if let Outbound::Datagram { to, len } = r {
                    if let Some(j) = job {
                        self.batch.defer(j);
                    }
                    self.batch.commit(socks, to, len).await;
                } else {
                    // A job only comes with a datagram; one without would be dropped unrun.
                    debug_assert!(job.is_none(), "a sealing job without a datagram");
                }
            }
        }
        self.batch.flush(socks).await;
        result.map(|()| batches > 0)
    }
}

/// A datagram the receive path may decrypt where it lies (its own receive buffers), or one
/// lent to it (a connection's frames, handshake inits), which it decrypts into scratch space.
enum Dgram<'a> {
    Own(&'a mut [u8]),
    Lent(&'a [u8]),
}

impl Dgram<'_> {
    fn len(&self) -> usize {
        match self {
            Dgram::Own(d) => d.len(),
            Dgram::Lent(d) => d.len(),
        }
    }
}

/// What one datagram of a pump's own buffers came to.
enum Step {
    /// Nothing to send from where it lies.
    Nothing,
    /// Sealed again where it lies: send its first `len` bytes to `to`.
    Forward(Endpoint, usize),
    /// A packet for the TUN device decrypted where it lies, at `at` (`len` bytes).
    Tun(usize, usize),
}

/// Buffers for the UDP → TUN (or forward) direction.
pub struct UdpToTun {
    rx: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    frame: Vec<u8>,
    tun_bufs: Vec<Vec<u8>>,
    /// Packets made by the node itself (ICMPv6 errors) go through here too.
    pub gro: GROTable,
    /// Packets decrypted where they lie in the receive buffers, written from there at the
    /// end of each receive: (buffer, start, length).
    places: Vec<(usize, usize, usize)>,
    forward: GsoBatch,
    /// Packets for znets' TUNs, by znet (framed), written per batch with GRO.
    znet_bufs: std::collections::HashMap<u64, (Vec<Vec<u8>>, GROTable)>,
    /// Buffers given back after a znet batch, to refill the slots they came from.
    spare: Vec<Vec<u8>>,
    /// Buffers for the handshake socket.
    inits: InitBatch,
    /// How much of the handshake sockets a turn reads.
    pacing: InitPacing,
    /// Threads that write the TUN batches, if there are any (else this loop writes them).
    #[cfg(target_os = "linux")]
    writers: Option<super::tun_writers::TunWriters>,
}

impl Default for UdpToTun {
    fn default() -> Self {
        UdpToTun {
            rx: (0..RX_SLOTS).map(|_| vec![0; RX_SLOT_LEN]).collect(),
            meta: vec![RecvMeta::default(); RX_SLOTS],
            frame: vec![0; RX_SLOT_LEN],
            tun_bufs: Vec::new(),
            gro: GROTable::default(),
            places: Vec::new(),
            forward: GsoBatch::new(),
            znet_bufs: Default::default(),
            spare: Vec::new(),
            inits: InitBatch::default(),
            pacing: InitPacing::default(),
            #[cfg(target_os = "linux")]
            writers: None,
        }
    }
}

impl UdpToTun {
    /// Whether writer threads take the TUN batches.
    fn has_writers(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.writers.is_some();
        #[cfg(not(target_os = "linux"))]
        return false;
    }

    /// From now on the TUN batches are written by `writers`.
    #[cfg(target_os = "linux")]
    pub fn set_writers(&mut self, writers: super::tun_writers::TunWriters) {
        self.writers = Some(writers);
    }

    /// Receives what socket `idx` has (up to the budget): packets for us go to the TUN device,
    /// packets for others on to their next hop. Fails if the socket itself failed.
    pub async fn pump(
        &mut self,
        idx: usize,
        tun: &Local,
        node: &mut Node,
        socks: &Sockets,
        znets: &super::znets::Devices,
    ) -> io::Result<()> {
        let Some(sock) = socks.get(idx) else {
            return Ok(());
        };
        if sock.handshakes() {
            return self.inits(idx, sock, tun, node, socks, znets).await;
        }
        let mut count = 0;
        let mut errors = ReadErrors::default();
        let mut result = Ok(());
        let mut batches = 0;
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
            batches += 1;
            let now = Instant::now();
            let rx = std::mem::take(&mut self.rx);
            let meta = std::mem::take(&mut self.meta);
            let mut rx = rx;
            for (slot, (m, buf)) in meta[..n].iter().zip(rx.iter_mut()).enumerate() {
                let from = Endpoint::udp(canonical(m.addr));
                let stride = if m.stride == 0 { m.len } else { m.stride };
                let len = m.len.min(buf.len());
                // Datagrams forwarded are sealed again where they lie: a run of them to one
                // next hop leaves straight from this buffer in one GSO send.
                let mut run: Option<Run> = None;
                let mut at = 0;
                while at < len {
                    let end = (at + stride.max(1)).min(len);
                    let dgram = Dgram::Own(&mut buf[at..end]);
                    match self
                        .one(&mut count, now, from, dgram, node, socks, znets)
                        .await
                    {
                        Step::Forward(to, n) => {
                            run = forward_in_place(socks, buf, run, to, at, n).await;
                        }
                        Step::Tun(start, len) => self.places.push((slot, at + start, len)),
                        Step::Nothing => {}
                    }
                    at = end;
                    // Written as soon as the batch is full, so that no more than
                    // MAX_TUN_BATCH write buffers ever exist (one read may bring 512
                    // datagrams, and each buffer GRO used holds up to 64 KB).
                    if count >= MAX_TUN_BATCH {
                        self.write_tun(tun, count).await;
                        count = 0;
                    }
                }
                if let Some(r) = run {
                    send_run(socks, &buf[r.start..r.len], &r).await;
                }
            }
            // Before the buffers are read into again.
            self.write_places(tun, &mut rx).await;
            self.rx = rx;
            self.meta = meta;
        }
        self.finish(count, tun, socks, znets).await;
        if batches > 0 {
            self.pacing.data_moved(Instant::now());
        }
        result
    }

    /// Reads a handshake socket ([`crate::udp`]: inits only) as far as [`InitPacing`] allows.
    async fn inits(
        &mut self,
        idx: usize,
        sock: &crate::udp::UdpSock,
        tun: &Local,
        node: &mut Node,
        socks: &Sockets,
        znets: &super::znets::Devices,
    ) -> io::Result<()> {
        let Some(allowed) = self.pacing.allowance(idx, Instant::now()) else {
            return Ok(());
        };
        let Allowance { batches, per_batch } = allowed;
        node.links.set_cookie_share(self.pacing.share());
        let mut emptied = false;
        let mut count = 0;
        let mut errors = ReadErrors::default();
        let mut result = Ok(());
        let mut batch = std::mem::take(&mut self.inits);
        for _ in 0..batches {
            match sock.try_recv_inits(&mut batch, per_batch) {
                Ok(n) => {
                    errors.reset();
                    emptied = n < per_batch;
                }
                Err(e) => match errors.on(e, "UDP receive") {
                    Some(r) => {
                        emptied = true;
                        result = r;
                        break;
                    }
                    None => continue,
                },
            }
            let now = Instant::now();
            for (from, dgram) in batch.datagrams() {
                let from = Endpoint::udp(canonical(from));
                self.one(
                    &mut count,
                    now,
                    from,
                    Dgram::Lent(dgram),
                    node,
                    socks,
                    znets,
                )
                .await;
            }
            // Answers (cookie replies) leave in batches too.
            super::flush_control(node, socks, tun, &mut self.gro).await;
            if emptied {
                break;
            }
        }
        self.pacing.read(idx, allowed, emptied);
        self.inits = batch;
        self.finish(count, tun, socks, znets).await;
        result
    }

    /// The TUN device had packets to send (see [`InitPacing`]).
    pub fn data_moved(&mut self) {
        self.pacing.data_moved(Instant::now());
    }

    /// Which handshake sockets rest now (bit `i`: socket `i`), and until when the first of
    /// them does (see [`InitPacing`]).
    pub fn resting(&self, sockets: usize) -> (u64, Option<Instant>) {
        let now = Instant::now();
        let mask = (0..sockets.min(64))
            .filter(|&i| self.pacing.resting(i, now))
            .fold(0u64, |m, i| m | 1 << i);
        (mask, self.pacing.next_wake(now))
    }

    /// Writes what a batch left: TUN packets, forwarded datagrams, znets' packets.
    async fn finish(
        &mut self,
        count: usize,
        tun: &Local,
        socks: &Sockets,
        znets: &super::znets::Devices,
    ) {
        self.write_tun(tun, count).await;
        self.forward.flush(socks).await;
        for (id, (bufs, gro)) in self.znet_bufs.iter_mut() {
            if !bufs.is_empty() {
                znets.write_batch(*id, gro, bufs).await;
                self.spare.append(bufs);
                self.spare.truncate(MAX_SPARE);
            }
        }
    }

    /// One link datagram from `from`: for this node (into the TUN batch), a znet, or on to
    /// the next hop: `Some((to, len))` if it was sealed again where it lies (a datagram of
    /// this pump's own buffers), to be sent from there.
    #[allow(clippy::too_many_arguments)]
    async fn one(
        &mut self,
        count: &mut usize,
        now: Instant,
        from: Endpoint,
        dgram: Dgram<'_>,
        node: &mut Node,
        socks: &Sockets,
        znets: &super::znets::Devices,
    ) -> Step {
        if *count == self.tun_bufs.len() {
            // One packet each: GRO writes a flow's joined segments from where they lie.
            self.tun_bufs.push(Vec::new());
        }
        let copy_out = self.has_writers();
        let tb = &mut self.tun_bufs[*count];
        // Sized, not cleared: what the node does not overwrite is cut off below, and the
        // header room is written by the TUN write (zeroing 1.4 KB per packet cost 1% of CPU).
        let need = VIRTIO_NET_HDR_LEN + dgram.len();
        if tb.len() < need {
            tb.resize(need, 0);
        } else {
            tb.truncate(need);
        }
        let tun_out = &mut tb[VIRTIO_NET_HDR_LEN..];
        let r = match dgram {
            Dgram::Own(d) => match node.inbound_in_place(now, from, d, tun_out) {
                // Written from where it lies, unless writer threads take the batches (they
                // own their buffers) or there were no room for the header before it (no
                // message is that short today): then copied.
                Inbound::TunAt { at, len } if at >= VIRTIO_NET_HDR_LEN && !copy_out => {
                    return Step::Tun(at, len);
                }
                Inbound::TunAt { at, len } => match (d.get(at..at + len), tun_out.get_mut(..len)) {
                    (Some(p), Some(out)) => {
                        out.copy_from_slice(p);
                        Inbound::Tun { len }
                    }
                    _ => Inbound::Done,
                },
                r => r,
            },
            Dgram::Lent(d) => {
                let net_out = self.forward.tail(socks).await;
                node.inbound(now, from, d, &mut self.frame, tun_out, net_out)
            }
        };
        match r {
            Inbound::Tun { len } => {
                tb.truncate(VIRTIO_NET_HDR_LEN + len);
                *count += 1;
            }
            Inbound::Forward { to, len } => self.forward.commit(socks, to, len).await,
            Inbound::ForwardInPlace { to, len } => return Step::Forward(to, len),
            // Only from a datagram of our own buffers: answered above.
            Inbound::TunAt { .. } => {}
            Inbound::Znet { id, len } => {
                // The header room is zero: no offload information. Moved out
                // whole (the slot gets a fresh buffer) and written per batch.
                tb.truncate(VIRTIO_NET_HDR_LEN + len);
                let fresh = self.spare.pop().unwrap_or_default();
                let b = std::mem::replace(tb, fresh);
                let (bufs, gro) = self.znet_bufs.entry(id).or_default();
                bufs.push(b);
                if bufs.len() >= MAX_TUN_BATCH {
                    znets.write_batch(id, gro, bufs).await;
                    self.spare.append(bufs);
                    self.spare.truncate(MAX_SPARE);
                }
            }
            Inbound::Done => {}
        }
        Step::Nothing
    }

    /// Link datagrams that came over connections (TCP, QUIC), handled as a batch the way a
    /// UDP batch is.
    pub async fn frames(
        &mut self,
        frames: &[(Endpoint, Vec<u8>)],
        tun: &Local,
        node: &mut Node,
        socks: &Sockets,
        znets: &super::znets::Devices,
    ) {
        let mut count = 0;
        let now = Instant::now();
        for (from, dgram) in frames {
            self.one(
                &mut count,
                now,
                *from,
                Dgram::Lent(dgram),
                node,
                socks,
                znets,
            )
            .await;
            if count >= MAX_TUN_BATCH {
                self.write_tun(tun, count).await;
                count = 0;
            }
        }
        self.finish(count, tun, socks, znets).await;
    }

    /// Writes the packets [`Step::Tun`] left in the receive buffers `rx`, from where they
    /// lie (each with the bytes before it as room for the virtio-net header).
    async fn write_places(&mut self, tun: &Local, rx: &mut [Vec<u8>]) {
        if self.places.is_empty() {
            return;
        }
        let mut packets: Vec<&mut [u8]> = Vec::with_capacity(self.places.len());
        let mut slots = rx.iter_mut().enumerate();
        let mut rest: &mut [u8] = &mut [];
        // The slot `rest` is the tail of, and where in it `rest` starts.
        let (mut cur, mut base) = (usize::MAX, 0);
        for &(slot, at, len) in &self.places {
            while cur != slot {
                let Some((i, b)) = slots.next() else {
                    break;
                };
                (cur, base, rest) = (i, 0, b.as_mut_slice());
            }
            let start = at - VIRTIO_NET_HDR_LEN;
            let taken = std::mem::take(&mut rest);
            // Places come in order and never overlap; anything else is skipped.
            let Some(skip) = start
                .checked_sub(base)
                .filter(|&k| k + VIRTIO_NET_HDR_LEN + len <= taken.len())
            else {
                rest = taken;
                continue;
            };
            let (packet, tail) = taken[skip..].split_at_mut(VIRTIO_NET_HDR_LEN + len);
            packets.push(packet);
            (rest, base) = (tail, at + len);
        }
        self.places.clear();
        if let Err(e) = tun
            .send_multiple(&mut self.gro, &mut packets, VIRTIO_NET_HDR_LEN)
            .await
        {
            tracing::debug!("TUN write: {e}");
        }
    }

    async fn write_tun(&mut self, tun: &Local, count: usize) {
        if count == 0 {
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(w) = self.writers.as_mut() {
            // Each packet to the writer of its flow; the slot gets a written buffer back.
            for b in &mut self.tun_bufs[..count] {
                let spare = w.spare();
                w.push(std::mem::replace(b, spare));
            }
            w.flush().await;
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
