//! A whole node without I/O: the link layer, the router and the end-to-end sessions wired
//! together. The daemon feeds it TUN packets and datagrams and sends what it returns; tests run
//! several of them in memory.
//!
//! ```text
//!  TUN packet ─► outbound: address → key (router lookup, packets wait) → e2e encrypt
//!                → routed TRAFFIC → link frame → datagram
//!  datagram ──► inbound: link decrypt → router: Forward (re-encrypted for the next link)
//!                                            or Deliver → e2e decrypt + source check → TUN
//!  poll_transmit(): handshakes, keepalives, tree and lookup messages, flushed queues
//!  poll_tun():      ICMPv6 errors for the local stack (Packet Too Big, unreachable)
//! ```

use crate::e2e::{self, E2e, E2eConfig, Encrypt, Received};
use crate::firewall::{Firewall, PolicyCounters};
use crate::identity::{Identity, PublicKey};
use crate::link::{self, LinkConfig, LinkId, Links, Recv, Transmit};
use crate::nat::{self, Nat};
use crate::packet::{Icmp6Error, Ipv6Header, icmp6_error};
use crate::uri::Endpoint;
use crate::wire;
use crate::znet::{self, Manifest, Znet};
use routing::{Event as RouteEvent, Handled, PeerId, Router, RouterConfig, address};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// Largest UDP payload sent: fits a 1500-byte path over IPv6 (1500 - 40 - 8).
pub const MAX_DATAGRAM: usize = 1452;
/// Room for a routing message in one datagram (link header, frame kind, tag).
pub const MAX_ROUTING_MESSAGE: usize = MAX_DATAGRAM - wire::TRANSPORT_OVERHEAD - 1;
/// Packets kept per destination while its address is looked up.
const WAIT_PER_ADDRESS: usize = 32;
/// Destinations with control messages parked until their coordinates are known.
const MAX_PARKED_KEYS: usize = 1024;
/// Give up on a lookup (and its waiting packets) after this long.
const LOOKUP_PATIENCE: Duration = Duration::from_secs(5);
/// An overlay ping unanswered after this long has failed.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Configuration of a whole node.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// Link layer.
    pub link: LinkConfig,
    /// Routing.
    pub router: RouterConfig,
    /// End-to-end sessions.
    pub e2e: E2eConfig,
}

/// What became of a packet from the TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Send `net_out[..len]` to `to`.
    Datagram {
        /// Where to.
        to: Endpoint,
        /// Length.
        len: usize,
    },
    /// Waiting for a lookup or a session; it will come out of `poll_transmit`.
    Waiting,
    /// Too big for the path: an ICMPv6 Packet Too Big is waiting in `poll_tun`.
    TooBig,
    /// Dropped and counted.
    Dropped,
}

/// What became of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// An IPv6 packet for the TUN device is in `tun_out[..len]`.
    Tun {
        /// Length.
        len: usize,
    },
    /// Forward: send `net_out[..len]` to `to`.
    Forward {
        /// Where to.
        to: Endpoint,
        /// Length.
        len: usize,
    },
    /// A packet for znet `id`'s TUN device is in `tun_out[..len]`.
    Znet {
        /// The znet.
        id: u64,
        /// Length.
        len: usize,
    },
    /// Handled, nothing to pass on (control, or dropped and counted).
    Done,
}

/// Drops at the node level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeCounters {
    /// TUN packets that are not valid IPv6.
    pub bad_local_packet: u64,
    /// Multicast from the local stack (the overlay carries unicast).
    pub multicast: u64,
    /// TUN packets for addresses outside the overlay.
    pub outside_overlay: u64,
    /// TUN packets answered with Packet Too Big.
    pub too_big: u64,
    /// Packets for which no owner was found.
    pub unreachable: u64,
    /// Packets that had no way on (path broken while sending).
    pub no_path: u64,
}

/// The outcome of an overlay ping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PingOutcome {
    /// Answered.
    Reply {
        /// Hops one way.
        hops: u8,
        /// Round trip in microseconds.
        rtt_us: u64,
        /// The link to the destination when it is a direct peer (`udp://203.0.113.7:7820`);
        /// `None`: relayed through other nodes.
        direct: Option<String>,
    },
    /// Nobody owns the address (as far as the lookup found).
    Unreachable,
    /// No answer in time.
    Timeout,
}

struct PingWait {
    ticket: u64,
    addr: Ipv6Addr,
    started: Instant,
    nonce: Option<u64>,
}

/// One node: links, router, end-to-end sessions.
pub struct Node {
    /// The link layer.
    pub links: Links,
    /// The router.
    pub router: Router,
    /// End-to-end sessions.
    pub e2e: E2e,
    /// The circle policy on the data path.
    pub firewall: Firewall,
    /// znets this node is a member of, by id.
    pub znets: std::collections::BTreeMap<u64, Znet>,
    /// NAT traversal: observed endpoints, rounds of punching.
    pub nat: Nat,
    e2e_cfg: E2eConfig,
    seed: u64,
    address: Ipv6Addr,
    subnet: Ipv6Addr,
    /// Packets waiting for their destination's lookup, by owner id.
    waiting: HashMap<Ipv6Addr, (Instant, VecDeque<Vec<u8>>)>,
    /// End-to-end messages waiting for their destination's coordinates.
    parked: HashMap<PublicKey, VecDeque<Vec<u8>>>,
    ebuf: Vec<u8>,
    rbuf: Vec<u8>,
    transmits: VecDeque<Transmit>,
    tun_out: VecDeque<Vec<u8>>,
    pings: Vec<PingWait>,
    ping_results: VecDeque<(u64, PingOutcome)>,
    next_ticket: u64,
    counters: NodeCounters,
    links_events: VecDeque<crate::uri::PeerUri>,
    peer_events: VecDeque<PeerEvent>,
}

/// A link to a peer came up or went down (for whoever embeds the node: logs, apps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEvent {
    /// The peer's key.
    pub key: PublicKey,
    /// Up (`true`) or down.
    pub up: bool,
}

/// Most peer events kept for a reader that does not read them: the oldest go first.
const MAX_PEER_EVENTS: usize = 256;

impl Node {
    /// A node for `identity`. `seq` must exceed any routing sequence number this identity used
    /// before (the daemon passes wall-clock milliseconds); `seed` drives indexes and nonces.
    pub fn new(
        identity: &Identity,
        cfg: NodeConfig,
        secret: &[u8; 32],
        seq: u64,
        seed: u64,
        now: Instant,
    ) -> Self {
        let public = identity.public_key();
        Node {
            links: Links::new(identity, cfg.link, seed, now),
            router: Router::new(secret, cfg.router, seq, seed.rotate_left(17), now),
            e2e: E2e::new(identity, cfg.e2e.clone(), seed.rotate_left(33), now),
            firewall: Firewall::default(),
            znets: Default::default(),
            nat: Nat::default(),
            e2e_cfg: cfg.e2e,
            seed,
            address: public.address(),
            subnet: public.subnet(),
            waiting: HashMap::new(),
            parked: HashMap::new(),
            ebuf: Vec::with_capacity(2048),
            rbuf: Vec::with_capacity(2048),
            transmits: VecDeque::new(),
            tun_out: VecDeque::new(),
            pings: Vec::new(),
            ping_results: VecDeque::new(),
            next_ticket: 1,
            counters: NodeCounters::default(),
            links_events: VecDeque::new(),
            peer_events: VecDeque::new(),
        }
    }

    /// Node-level counters.
    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// What the circle policy did (links refused come from the link layer).
    pub fn policy_counters(&self) -> PolicyCounters {
        PolicyCounters {
            links_refused: self.links.counters().policy_refused,
            ..self.firewall.counters()
        }
    }

    /// Puts a circle policy in force, live: new links, sessions and packets are judged by it at
    /// once; links and sessions it no longer allows are closed now; the tree drops a root it
    /// no longer allows. Allowed traffic is not disturbed.
    pub fn set_policy(&mut self, now: Instant, policy: std::sync::Arc<acl::Policy>) {
        let open = policy.is_open();
        self.firewall.set_policy(policy.clone());
        let closed = self.links.set_policy(Some(policy.clone()), now);
        let mut sessions = 0;
        let remotes: Vec<PublicKey> = self.e2e.remotes().copied().collect();
        for k in remotes {
            if !self.firewall.session_allowed(&k) && self.e2e.close(&k) {
                tracing::info!(peer = %k, "end-to-end session closed: the circle policy no longer allows it");
                sessions += 1;
            }
        }
        // Packets queued for a session were judged by the previous policy.
        let fw = &mut self.firewall;
        self.e2e.filter_queued(|k, p| fw.check_out(now, k, p));
        let c = self.firewall.counters_mut();
        c.links_closed += closed;
        c.sessions_closed += sessions;
        let root_rules = !open
            && (policy.has_rules(acl::Action::Root)
                || !policy.model().defaults[acl::Action::Root.index()].allows());
        let filter: Option<routing::RootFilter> = root_rules.then(|| {
            let p = policy.clone();
            std::sync::Arc::new(move |k: &[u8; 32]| p.classify(k).root().allows())
                as routing::RootFilter
        });
        self.router.set_root_filter(now, filter);
        self.pump(now);
    }

    /// Puts a znet in force (or a new version of its manifest: nodes no longer members are
    /// cut off at once). Fails if this node is not a member.
    pub fn znet_up(
        &mut self,
        identity: &Identity,
        manifest: Manifest,
        now: Instant,
    ) -> Result<(), String> {
        if manifest.member(&identity.public_key()).is_none() {
            return Err(format!(
                "this node ({}) is not a member of znet {}; add it to the manifest's [[members]]",
                identity.public_key(),
                manifest.name
            ));
        }
        if let Some(z) = self.znets.get_mut(&manifest.id) {
            z.update(manifest);
            return Ok(());
        }
        let seed = self.seed ^ manifest.id;
        let id = manifest.id;
        let z =
            Znet::new(identity, manifest, self.e2e_cfg.clone(), seed, now).ok_or("not a member")?;
        self.znets.insert(id, z);
        Ok(())
    }

    /// The next packet made here for a znet's TUN (ICMP errors): `(znet id, packet)`.
    pub fn poll_znet_tun(&mut self) -> Option<(u64, Vec<u8>)> {
        self.znets
            .iter_mut()
            .find_map(|(id, z)| z.tun_out.pop_front().map(|p| (*id, p)))
    }

    /// Takes a znet down (its sessions are forgotten).
    pub fn znet_down(&mut self, id: u64) -> bool {
        self.znets.remove(&id).is_some()
    }

    /// Handles one packet from znet `id`'s TUN device.
    pub fn znet_outbound(
        &mut self,
        now: Instant,
        id: u64,
        packet: &[u8],
        net_out: &mut [u8],
    ) -> Outbound {
        let Some(z) = self.znets.get_mut(&id) else {
            return Outbound::Dropped;
        };
        if !z.from_here(packet) {
            return Outbound::Dropped;
        }
        let Some(key) = z.destination(packet) else {
            return Outbound::Dropped;
        };
        if self.router.knows(&key.0) {
            let header = self.router.traffic_header_len(&key.0).unwrap_or(200);
            let mtu = MAX_ROUTING_MESSAGE
                .saturating_sub(header + e2e::wire::DATA_OVERHEAD + znet::HEADER);
            if packet.len() > mtu {
                z.too_big(packet, mtu);
                return Outbound::TooBig;
            }
        }
        let mut ebuf = std::mem::take(&mut self.ebuf);
        let r = match z.e2e.encrypt(now, &key, packet, &mut ebuf) {
            Encrypt::Ready => {
                z.counters.sent += 1;
                let mut msg = Vec::with_capacity(ebuf.len() + znet::HEADER);
                msg.push(znet::ZNET);
                msg.extend_from_slice(&id.to_be_bytes());
                msg.extend_from_slice(&ebuf);
                if self.router.knows(&key.0) {
                    match self.route(now, &key, &msg, net_out) {
                        Some((to, len)) => Outbound::Datagram { to, len },
                        None => Outbound::Dropped,
                    }
                } else {
                    self.route_owned(now, key, msg);
                    Outbound::Waiting
                }
            }
            Encrypt::Queued => {
                self.pump(now);
                Outbound::Waiting
            }
            Encrypt::Dropped => Outbound::Dropped,
        };
        self.ebuf = ebuf;
        r
    }

    /// Largest IPv6 packet that fits the path to `key` (known coordinates assumed).
    fn path_mtu(&self, key: &PublicKey) -> usize {
        let header = self.router.traffic_header_len(&key.0).unwrap_or(200);
        MAX_ROUTING_MESSAGE.saturating_sub(header + e2e::wire::DATA_OVERHEAD)
    }

    /// Handles one IPv6 packet from the TUN device (`packet` holds it exactly).
    pub fn outbound(&mut self, now: Instant, packet: &[u8], net_out: &mut [u8]) -> Outbound {
        let Ok(h) = Ipv6Header::parse(packet) else {
            self.counters.bad_local_packet += 1;
            return Outbound::Dropped;
        };
        let packet = &packet[..h.total_len];
        if h.dst.is_multicast() {
            self.counters.multicast += 1;
            return Outbound::Dropped;
        }
        let Some(owner) = address::owner_id(&h.dst) else {
            self.counters.outside_overlay += 1;
            return Outbound::Dropped;
        };
        if owner == self.address || owner == self.subnet {
            self.counters.bad_local_packet += 1;
            return Outbound::Dropped;
        }
        let Some(key) = self.router.resolve(now, &owner) else {
            self.wait(now, owner, packet);
            return Outbound::Waiting;
        };
        let key = PublicKey(key);
        if !self.firewall.check_out(now, &key, packet) {
            if let Some(e) = icmp6_error(Icmp6Error::AdminProhibited, packet) {
                self.tun_out.push_back(e);
            }
            return Outbound::Dropped;
        }
        if !self.links.peers.contains_key(&key) {
            self.offer_endpoints(now, key);
        }
        if self.router.knows(&key.0) {
            let mtu = self.path_mtu(&key);
            if packet.len() > mtu {
                self.counters.too_big += 1;
                if let Some(e) = icmp6_error(Icmp6Error::PacketTooBig(mtu.max(1280) as u32), packet)
                {
                    self.tun_out.push_back(e);
                }
                return Outbound::TooBig;
            }
        }
        let mut ebuf = std::mem::take(&mut self.ebuf);
        let r = match self.e2e.encrypt(now, &key, packet, &mut ebuf) {
            Encrypt::Ready => match self.route(now, &key, &ebuf, net_out) {
                Some((to, len)) => Outbound::Datagram { to, len },
                None => Outbound::Dropped,
            },
            Encrypt::Queued => Outbound::Waiting,
            Encrypt::Dropped => Outbound::Dropped,
        };
        self.ebuf = ebuf;
        r
    }

    fn wait(&mut self, now: Instant, owner: Ipv6Addr, packet: &[u8]) {
        let e = self
            .waiting
            .entry(owner)
            .or_insert_with(|| (now, VecDeque::new()));
        if e.1.len() >= WAIT_PER_ADDRESS {
            e.1.pop_front();
        }
        e.1.push_back(packet.to_vec());
    }

    /// Routes an end-to-end message to `key` into `net_out`.
    fn route(
        &mut self,
        now: Instant,
        key: &PublicKey,
        msg: &[u8],
        net_out: &mut [u8],
    ) -> Option<(Endpoint, usize)> {
        self.rbuf.clear();
        self.rbuf.push(wire::frame::ROUTING);
        let Some(peer) = self.router.send_traffic(now, &key.0, msg, &mut self.rbuf) else {
            self.counters.no_path += 1;
            let _ = self.router.resolve(now, &key.address());
            return None;
        };
        match self
            .links
            .encapsulate(now, LinkId(peer.0), &self.rbuf, net_out)
        {
            link::Send::Transmit { to, len } => Some((to, len)),
            link::Send::Dropped(_) => None,
        }
    }

    /// Routes `msg` to `key` as an owned datagram (control paths), or parks it until the
    /// destination's coordinates are known.
    fn route_owned(&mut self, now: Instant, key: PublicKey, msg: Vec<u8>) {
        if !self.router.knows(&key.0) {
            if self.parked.len() >= MAX_PARKED_KEYS && !self.parked.contains_key(&key) {
                return;
            }
            let q = self.parked.entry(key).or_default();
            if q.len() < WAIT_PER_ADDRESS {
                q.push_back(msg);
            }
            let _ = self.router.resolve(now, &key.address());
            return;
        }
        let mut out = vec![0u8; msg.len() + 256];
        if let Some((to, len)) = self.route(now, &key, &msg, &mut out) {
            out.truncate(len);
            self.transmits.push_back(Transmit { to, data: out });
        }
    }

    /// Handles one datagram. `frame` is scratch space at least as long as the datagram (a test
    /// may read it afterwards to see what this node saw after link decryption).
    pub fn inbound(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
        frame: &mut [u8],
        tun_out: &mut [u8],
        net_out: &mut [u8],
    ) -> Inbound {
        let Recv::Frame { link, len } = self.links.handle_datagram(now, from, datagram, frame)
        else {
            return Inbound::Done;
        };
        if frame[0] != wire::frame::ROUTING {
            if frame[0] == wire::frame::OBSERVED
                && let Some((addr, _)) = nat::get_addr(&frame[1..len])
                && let Some(reporter) = self.links.key_of(link)
            {
                self.nat.observed(reporter, addr, now);
            }
            return Inbound::Done;
        }
        match self.router.handle(now, PeerId(link.0), &mut frame[1..len]) {
            Handled::Forward(peer) => {
                match self
                    .links
                    .encapsulate(now, LinkId(peer.0), &frame[..len], net_out)
                {
                    link::Send::Transmit { to, len } => Inbound::Forward { to, len },
                    link::Send::Dropped(_) => Inbound::Done,
                }
            }
            Handled::Deliver { src, body_at } => {
                let body = &frame[1 + body_at..len];
                let src = PublicKey(src);
                if body.first() == Some(&znet::ZNET) {
                    return self.znet_inbound(now, src, &frame[1..len], body_at, tun_out);
                }
                // Refused before any Diffie-Hellman: the claimed key is checked again against
                // the handshake's proof, so a lie gains nothing.
                if body.first() == Some(&e2e::wire::TYPE_INIT)
                    && !self.firewall.session_allowed(&src)
                {
                    self.firewall.counters_mut().sessions_refused += 1;
                    return Inbound::Done;
                }
                match self.e2e.handle(now, &src, body, tun_out) {
                    Received::Deliver { len: n, from } => {
                        if !self.firewall.check_in(now, &from, &tun_out[..n]) {
                            return Inbound::Done;
                        }
                        if from == src {
                            self.router.confirm_source(now, &frame[1..len]);
                        }
                        Inbound::Tun { len: n }
                    }
                    Received::Control { len: n, from } => {
                        if from == src {
                            let msg = tun_out[..n].to_vec();
                            self.control(now, from, &msg);
                        }
                        Inbound::Done
                    }
                    Received::Consumed => {
                        // A handshake init proves the key but not that it is fresh (anyone
                        // on a path could send it again): its way back is taken only when we
                        // know none, never over one we have.
                        if !self.router.knows(&src.0) {
                            self.router.confirm_source(now, &frame[1..len]);
                        }
                        Inbound::Done
                    }
                    Received::Dropped => Inbound::Done,
                }
            }
            Handled::Consumed | Handled::Dropped(_) => Inbound::Done,
        }
    }

    /// A routed message for a znet: the sender must be a member, the session the znet's, the
    /// packet from the sender's subnet to ours.
    fn znet_inbound(
        &mut self,
        now: Instant,
        src: PublicKey,
        routed: &[u8],
        body_at: usize,
        tun_out: &mut [u8],
    ) -> Inbound {
        let Some(body) = routed.get(body_at..) else {
            return Inbound::Done;
        };
        let Some(id) = body
            .get(1..znet::HEADER)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            return Inbound::Done;
        };
        let Some(z) = self.znets.get_mut(&id) else {
            return Inbound::Done;
        };
        if !z.is_member(&src) {
            z.counters.not_member += 1;
            return Inbound::Done;
        }
        match z.e2e.handle(now, &src, &body[znet::HEADER..], tun_out) {
            Received::Deliver { len, from } => {
                if z.accept(&from, &tun_out[..len]) {
                    if from == src && !self.router.knows(&src.0) {
                        self.router.confirm_source(now, routed);
                    }
                    Inbound::Znet { id, len }
                } else {
                    Inbound::Done
                }
            }
            Received::Consumed => {
                if !self.router.knows(&src.0) {
                    self.router.confirm_source(now, routed);
                }
                self.pump(now);
                Inbound::Done
            }
            Received::Control { .. } | Received::Dropped => Inbound::Done,
        }
    }

    /// Sends this node's observed endpoints to `key` (not a direct peer) if they were not
    /// sent lately: the first step of punching a direct path ([`crate::nat`]).
    fn offer_endpoints(&mut self, now: Instant, key: PublicKey) {
        // Only to nodes this one may link with (the circle policy's `peer` rules): nobody
        // else learns this node's public address or gets to make it dial.
        if self.links.policy_refusal(&key).is_some() || !self.nat.should_send(&key, now) {
            return;
        }
        let msg = nat::endpoints_message(&self.nat.endpoints(now));
        let mut out = Vec::new();
        if self.e2e.encrypt(now, &key, &msg, &mut out) == Encrypt::Ready {
            self.route_owned(now, key, out);
        }
    }

    /// A message from the node `from` itself, over the end-to-end session.
    fn control(&mut self, now: Instant, from: PublicKey, msg: &[u8]) {
        let Some(endpoints) = nat::parse_endpoints(msg) else {
            return;
        };
        if self.links.peers.contains_key(&from) {
            return;
        }
        self.offer_endpoints(now, from);
        if self.nat.should_punch(&from, now) {
            let n = self.links.punch(from, &endpoints, now);
            tracing::debug!(peer = %from.short(), endpoints = ?endpoints, dialed = n, "endpoints received");
        }
    }

    /// Tells a peer where its datagrams come from (its public endpoint, when it is behind a
    /// NAT).
    fn report_observed(&mut self, now: Instant, key: PublicKey) {
        let Some(ep) = self.links.peers.get(&key).map(|p| p.endpoint) else {
            return;
        };
        if ep.scheme != crate::uri::Scheme::Udp {
            return;
        }
        let mut f = vec![wire::frame::OBSERVED];
        nat::put_addr(&mut f, &ep.addr);
        self.links.send_control_frame(&key, &f, now);
    }

    /// Moves events and control messages between the layers. Called by `poll_transmit`,
    /// `handle_timeout` and the accessors; cheap when there is nothing to do.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut busy = false;
            while let Some(e) = self.links.poll_event() {
                busy = true;
                match e {
                    link::Event::LinkUp { link, key, rtt } => {
                        self.router.peer_up(now, PeerId(link.0), key.0, rtt);
                        self.peer_event(key, true);
                        self.report_observed(now, key);
                        self.nat
                            .next_report
                            .get_or_insert(now + nat::REPORT_INTERVAL);
                    }
                    link::Event::LinkDown { link, key } => {
                        self.router.peer_down(now, PeerId(link.0));
                        self.peer_event(key, false);
                    }
                    link::Event::Resolve(uri) => self.links_events.push_back(uri),
                }
            }
            while let Some(e) = self.router.poll_event() {
                busy = true;
                self.on_route_event(now, e);
            }
            while let Some((key, msg)) = self.e2e.poll_transmit() {
                busy = true;
                self.route_owned(now, key, msg);
            }
            let mut zmsgs = Vec::new();
            for (id, z) in self.znets.iter_mut() {
                while let Some((key, msg)) = z.e2e.poll_transmit() {
                    let mut m = Vec::with_capacity(msg.len() + znet::HEADER);
                    m.push(znet::ZNET);
                    m.extend_from_slice(&id.to_be_bytes());
                    m.extend_from_slice(&msg);
                    zmsgs.push((key, m));
                }
            }
            for (key, m) in zmsgs {
                busy = true;
                self.route_owned(now, key, m);
            }
            while let Some((peer, msg)) = self.router.poll_transmit() {
                busy = true;
                let mut frame = Vec::with_capacity(msg.len() + 1);
                frame.push(wire::frame::ROUTING);
                frame.extend_from_slice(&msg);
                let mut out = vec![0u8; frame.len() + wire::TRANSPORT_OVERHEAD];
                if let link::Send::Transmit { to, len } =
                    self.links
                        .encapsulate(now, LinkId(peer.0), &frame, &mut out)
                {
                    out.truncate(len);
                    self.transmits.push_back(Transmit { to, data: out });
                }
            }
            while let Some(t) = self.links.poll_transmit() {
                busy = true;
                self.transmits.push_back(t);
            }
            if !busy {
                return;
            }
        }
    }

    fn on_route_event(&mut self, now: Instant, e: RouteEvent) {
        match e {
            RouteEvent::Resolved { addr, key } => {
                let waiting = self
                    .waiting
                    .remove(&addr)
                    .map(|(_, q)| q)
                    .unwrap_or_default();
                match key {
                    Some(k) => {
                        let key = PublicKey(k);
                        let mut out = vec![0u8; MAX_DATAGRAM + 64];
                        for pkt in waiting {
                            if let Outbound::Datagram { to, len } =
                                self.outbound(now, &pkt, &mut out)
                            {
                                let data = out[..len].to_vec();
                                self.transmits.push_back(Transmit { to, data });
                            }
                        }
                        if let Some(q) = self.parked.remove(&key) {
                            for m in q {
                                self.route_owned(now, key, m);
                            }
                        }
                        let mut pinged = false;
                        for p in self
                            .pings
                            .iter_mut()
                            .filter(|p| p.addr == addr && p.nonce.is_none())
                        {
                            p.nonce = self.router.ping(now, &k);
                            pinged = true;
                        }
                        if pinged {
                            self.offer_endpoints(now, key);
                        }
                    }
                    None => {
                        self.parked.retain(|k, _| k.address() != addr);
                        for pkt in waiting {
                            self.counters.unreachable += 1;
                            if let Some(e) = icmp6_error(Icmp6Error::AddressUnreachable, &pkt) {
                                self.tun_out.push_back(e);
                            }
                        }
                        let mut done = Vec::new();
                        self.pings.retain(|p| {
                            let gone = p.addr == addr && p.nonce.is_none();
                            if gone {
                                done.push(p.ticket);
                            }
                            !gone
                        });
                        for t in done {
                            self.ping_results.push_back((t, PingOutcome::Unreachable));
                        }
                    }
                }
            }
            RouteEvent::Pong { nonce, hops, rtt } => {
                if let Some(i) = self.pings.iter().position(|p| p.nonce == Some(nonce)) {
                    let p = self.pings.remove(i);
                    let rtt_us = rtt.as_micros() as u64;
                    let direct = self
                        .router
                        .resolve(now, &p.addr)
                        .and_then(|k| self.links.peers.get(&PublicKey(k)))
                        .map(|peer| peer.endpoint.to_string());
                    self.ping_results.push_back((
                        p.ticket,
                        PingOutcome::Reply {
                            hops,
                            rtt_us,
                            direct,
                        },
                    ));
                }
            }
            RouteEvent::PathBroken { .. } | RouteEvent::TreeChanged => {}
        }
    }

    /// The next control datagram to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.pump(now);
        self.transmits.pop_front()
    }

    /// The next packet for the local stack (ICMPv6 errors).
    pub fn poll_tun(&mut self) -> Option<Vec<u8>> {
        self.tun_out.pop_front()
    }

    /// Host names the link layer needs resolved.
    pub fn poll_resolve(&mut self) -> Option<crate::uri::PeerUri> {
        self.links_events.pop_front()
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = [
            self.links.poll_timeout(),
            self.router.poll_timeout(),
            self.e2e.poll_timeout(),
        ]
        .into_iter()
        .chain(self.znets.values().map(|z| z.e2e.poll_timeout()))
        .flatten()
        .min();
        let mut at = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for (started, _) in self.waiting.values() {
            at(*started + LOOKUP_PATIENCE);
        }
        for p in &self.pings {
            at(p.started + PING_TIMEOUT);
        }
        if let Some(r) = self.nat.next_report {
            at(r);
        }
        t
    }

    /// Runs whatever is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.links.handle_timeout(now);
        self.firewall.expire(now);
        self.router.handle_timeout(now);
        self.e2e.handle_timeout(now);
        for z in self.znets.values_mut() {
            z.e2e.handle_timeout(now);
        }
        let stale: Vec<Ipv6Addr> = self
            .waiting
            .iter()
            .filter(|(_, (t, _))| now >= *t + LOOKUP_PATIENCE)
            .map(|(a, _)| *a)
            .collect();
        for a in stale {
            if let Some((_, q)) = self.waiting.remove(&a) {
                self.counters.unreachable += q.len() as u64;
            }
        }
        let mut done = Vec::new();
        self.pings.retain(|p| {
            let late = now >= p.started + PING_TIMEOUT;
            if late {
                done.push(p.ticket);
            }
            !late
        });
        for t in done {
            self.ping_results.push_back((t, PingOutcome::Timeout));
        }
        if self.nat.next_report.is_some_and(|r| now >= r) {
            let keys: Vec<PublicKey> = self.links.peers.keys().copied().collect();
            for k in keys {
                self.report_observed(now, k);
            }
            self.nat.next_report = Some(now + nat::REPORT_INTERVAL);
        }
        self.pump(now);
    }

    /// The node is stopping: a root says farewell (so the tree re-forms at once), then every
    /// link is closed. Send what `poll_transmit` returns afterwards.
    pub fn shut_down(&mut self, now: Instant) {
        self.router.retire(now);
        self.pump(now);
        self.links.close_all(now);
        self.pump(now);
    }

    /// Starts an overlay ping of `addr`; its outcome comes from [`Node::poll_ping`].
    pub fn ping(&mut self, now: Instant, addr: Ipv6Addr) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let Some(owner) = address::owner_id(&addr) else {
            self.ping_results
                .push_back((ticket, PingOutcome::Unreachable));
            return ticket;
        };
        let nonce = match self.router.resolve(now, &owner) {
            Some(k) => {
                self.offer_endpoints(now, PublicKey(k));
                self.router.ping(now, &k)
            }
            None => None,
        };
        self.pings.push(PingWait {
            ticket,
            addr: owner,
            started: now,
            nonce,
        });
        self.pump(now);
        ticket
    }

    fn peer_event(&mut self, key: PublicKey, up: bool) {
        if self.peer_events.len() == MAX_PEER_EVENTS {
            self.peer_events.pop_front();
        }
        self.peer_events.push_back(PeerEvent { key, up });
    }

    /// The next link that came up or went down (at most the last 256 are kept).
    pub fn poll_peer_event(&mut self) -> Option<PeerEvent> {
        self.peer_events.pop_front()
    }

    /// A finished ping: `(ticket, outcome)`.
    pub fn poll_ping(&mut self) -> Option<(u64, PingOutcome)> {
        self.ping_results.pop_front()
    }
}
