//! The daemon: sets up the identity, sockets, TUN device and control socket, then runs one
//! event loop on one thread around the sans-IO [`Node`] (links, router, end-to-end sessions).
//!
//! Each turn of the loop waits for the first of: the TUN device readable, a znet's TUN
//! readable, a UDP socket readable, the core's next timeout, a control request, a resolved
//! host name, the policy file's next look, or shutdown. It handles that, runs due timers (so a busy data path cannot starve them), and sends whatever
//! control datagrams the core queued. One thread keeps every state change ordered and lock-free;
//! on two cores the other core is busy with the kernel and the applications anyway (see
//! `docs/ARCHITECTURE.md` for the plan to scale out).

mod blocking;
mod control;
mod datapath;
mod gateway;
#[cfg(target_os = "linux")]
mod gro;
mod init_pacing;
pub mod lan;
pub mod local;
mod name_store;
mod names;
mod network;
mod peer_store;
pub mod policy;
mod policy_worker;
mod state_file;
pub mod streams;
#[cfg(target_os = "linux")]
mod tun_writers;
#[cfg(target_os = "linux")]
pub use tun_writers::MAX_WRITERS as MAX_TUN_WRITERS;
/// Most TUN writer threads (`tun.writers`).
#[cfg(not(target_os = "linux"))]
pub const MAX_TUN_WRITERS: usize = 8;
mod turns;
pub mod znets;

use crate::admin;
use crate::config::Config;
use crate::discovery;
use crate::e2e::E2eConfig;
use crate::identity::Identity;
use crate::link::LinkConfig;
use crate::node::{Node, NodeConfig};
use crate::udp::UdpSock;
use crate::uri::{Endpoint, PeerUri, Scheme};
use anyhow::Context;
use routing::RouterConfig;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use local::{Local, PacketPort, PacketQueue, PushError};
pub use peer_store::PeerStore;

/// Connection events (frames above all) handled per wake-up of the loop.
const STREAM_BATCH: usize = 256;

/// The local stack an embedding app hands over.
pub enum Attach {
    /// A TUN descriptor (checked and duplicated by [`crate::tun::adopt`]).
    TunFd(std::os::fd::OwnedFd),
    /// Packet mode.
    Packets(PacketPort),
}

/// Answers one control request: the admin socket's connection, or an embedding app's call.
pub type Responder = Box<dyn FnOnce(admin::Reply) + Send>;

/// Something an embedding app hears about (see [`Host::on_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The node is up: sockets bound, local stack attached, identity known.
    Ready {
        /// The node's overlay address.
        address: std::net::Ipv6Addr,
        /// The node's public key.
        public_key: crate::identity::PublicKey,
    },
    /// A link to a peer came up.
    PeerUp(crate::identity::PublicKey),
    /// A link to a peer went down.
    PeerDown(crate::identity::PublicKey),
}

/// How the node meets its host: what the daemon makes for itself, or what an app embedding
/// the node (`mobile-ffi`) gives it.
pub struct Host {
    /// The local stack; `None`: create the TUN device of `cfg.tun`.
    pub local: Option<Attach>,
    /// Serve the admin socket `cfg.admin_socket`.
    pub admin_socket: bool,
    /// Control requests from the app, answered as the admin socket's are.
    pub requests: Option<mpsc::Receiver<(admin::Request, Responder)>>,
    /// Called on the node's thread with each [`Event`].
    pub on_event: Option<Box<dyn FnMut(Event) + Send>>,
    /// The identity, if the host loaded it already; `None`: the key file of `cfg`.
    pub identity: Option<Identity>,
    /// Act as a system service: tell systemd when the node is ready and when it stops
    /// (`sd_notify`, when `NOTIFY_SOCKET` is set), and reload the policy file on SIGHUP.
    pub service: bool,
    /// The app's socket protection ([`crate::protect`]); none for the daemon.
    pub protect: crate::protect::Protect,
}

impl Host {
    /// The daemon: its own TUN device and admin socket, the key file of the config.
    pub fn daemon() -> Host {
        Host {
            local: None,
            admin_socket: true,
            requests: None,
            on_event: None,
            identity: None,
            service: true,
            protect: crate::protect::Protect::none(),
        }
    }
}

/// The next item of an optional channel; pending forever once there is none (so a closed
/// channel does not wake the loop again and again).
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> T {
    if let Some(r) = rx.as_mut()
        && let Some(item) = r.recv().await
    {
        return item;
    }
    *rx = None;
    std::future::pending().await
}

/// The link transports of the node: UDP sockets, TCP and QUIC connections.
pub struct Sockets {
    pub(crate) udp: Vec<UdpSock>,
    /// TCP and QUIC.
    pub streams: streams::Streams,
}

impl Sockets {
    fn for_dest(&self, to: &SocketAddr) -> Option<&UdpSock> {
        self.udp.iter().find(|s| s.can_reach(to))
    }

    /// Whether this node can send to IPv4 and to IPv6 addresses.
    fn families(&self) -> (bool, bool) {
        let v4 = SocketAddr::from(([192, 0, 2, 1], 1));
        let v6 = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 1));
        (
            self.udp.iter().any(|s| s.can_reach(&v4)),
            self.udp.iter().any(|s| s.can_reach(&v6)),
        )
    }

    /// Why this node cannot send to `uri`, if it cannot (an address of a family it has no
    /// socket for).
    pub fn unreachable(&self, uri: &PeerUri) -> Option<String> {
        if uri.scheme != Scheme::Udp {
            return None;
        }
        let addr = uri.socket_addr()?;
        let listen: Vec<String> = self
            .udp
            .iter()
            .filter(|s| !s.handshakes())
            .map(|s| s.local_addr().to_string())
            .collect();
        (!self.udp.iter().any(|s| s.can_reach(&addr))).then(|| {
            format!(
                "peer {} is {} but meshd listens only on {} (add a listen address of that \
                 family, e.g. udp://[::]:7820)",
                uri.endpoint(),
                if addr.is_ipv4() { "IPv4" } else { "IPv6" },
                listen.join(", ")
            )
        })
    }

    fn get(&self, i: usize) -> Option<&UdpSock> {
        self.udp.get(i)
    }

    fn max_gso_segments(&self, to: &Endpoint) -> usize {
        match to.scheme {
            Scheme::Udp => self.for_dest(&to.addr).map_or(1, |s| s.max_gso_segments()),
            _ => 1,
        }
    }

    async fn send(&self, to: Endpoint, contents: &[u8], segment: Option<usize>) {
        if to.scheme != Scheme::Udp {
            for d in contents.chunks(segment.unwrap_or(contents.len()).max(1)) {
                self.streams.send(to, d);
            }
            return;
        }
        let to = to.addr;
        let Some(s) = self.for_dest(&to) else {
            tracing::debug!(%to, "no socket of this address family");
            return;
        };
        if let Err(e) = s.send(to, contents, segment).await {
            tracing::debug!(%to, "UDP send: {e}");
        }
    }

    /// Sends each UDP datagram to its address, in batches per socket (`sendmmsg`).
    async fn send_many(&self, transmits: &[crate::link::Transmit]) {
        let mut run: Vec<(SocketAddr, &[u8])> = Vec::new();
        let mut run_sock: Option<usize> = None;
        for t in transmits {
            let to = t.to.addr;
            let Some(i) = self.udp.iter().position(|s| s.can_reach(&to)) else {
                tracing::debug!(%to, "no socket of this address family");
                continue;
            };
            if run_sock.is_some_and(|r| r != i) {
                if let Some(s) = run_sock.and_then(|r| self.udp.get(r)) {
                    s.send_many(&run).await;
                }
                run.clear();
            }
            run_sock = Some(i);
            run.push((to, &t.data));
        }
        if let Some(s) = run_sock.and_then(|r| self.udp.get(r)) {
            s.send_many(&run).await;
        }
    }

    /// Waits until one of the sockets may be readable; returns its index. Polling starts after
    /// the socket served last, so a busy socket cannot starve the others.
    /// Sockets whose bit is set in `resting` are not polled.
    async fn readable(&self, last: usize, resting: u64) -> usize {
        let n = self.udp.len();
        std::future::poll_fn(|cx| {
            for k in 1..=n {
                let i = (last + k) % n;
                if i < 64 && resting & (1 << i) != 0 {
                    continue;
                }
                if self.udp[i].poll_recv_ready(cx).is_ready() {
                    return Poll::Ready(i);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// Sends every control datagram the node has queued, and its packets for the local stack.
async fn flush_control(node: &mut Node, socks: &Sockets, tun: &Local, gro: &mut local::GROTable) {
    let now = Instant::now();
    let mut udp = Vec::new();
    while let Some(t) = node.poll_transmit(now) {
        if t.to.scheme == Scheme::Udp {
            udp.push(t);
        } else {
            socks.send(t.to, &t.data, None).await;
        }
    }
    socks.send_many(&udp).await;
    datapath::write_local(tun, node, gro).await;
}

/// Milliseconds since the Unix epoch: the first routing sequence number, so that it exceeds
/// any this identity used before a restart.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

/// Runs the daemon until `shutdown` completes or a fatal error occurs.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_with(cfg, Host::daemon(), shutdown).await
}

/// Runs a node on `host` until `shutdown` completes or a fatal error occurs.
pub async fn run_with(
    mut cfg: Config,
    host: Host,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let Host {
        local,
        admin_socket,
        requests: mut app_rx,
        mut on_event,
        identity,
        service,
        protect,
    } = host;
    let identity = match identity {
        Some(i) => i,
        None => {
            let id_path = cfg.identity_path();
            let (identity, created) = Identity::load_or_create(&id_path)?;
            if created {
                tracing::info!(file = %id_path.display(), "created a new node identity");
            }
            identity
        }
    };
    tracing::info!(public_key = %identity.public_key(), address = %identity.address(), "node identity");

    let mut store = PeerStore::open(&cfg.state_dir)?;
    let (mut policy_file, policy) = policy::PolicyFile::open(cfg.policy_file.clone())?;
    let mut socks = Vec::new();
    let mut init_socks = Vec::new();
    for addr in cfg.listen_addrs()? {
        for s in UdpSock::bind_steered(addr, &protect)? {
            if s.handshakes() {
                init_socks.push(s);
                continue;
            }
            tracing::info!(listen = %s.local_addr(), gso_segments = s.max_gso_segments(), "listening");
            socks.push(s);
        }
    }
    // After the data sockets, so that sends (the first socket of a family) never pick them.
    socks.append(&mut init_socks);
    // What a rebind after a network change binds again: the ports first bound.
    let udp_bound: Vec<SocketAddr> = socks
        .iter()
        .filter(|s| !s.handshakes())
        .map(|s| s.local_addr())
        .collect();
    let listen = cfg.listen_endpoints()?;
    let wants_quic = cfg
        .peer_uris()?
        .iter()
        .chain(store.peers())
        .any(|u| u.scheme == Scheme::Quic);
    let (streams, mut stream_rx) =
        streams::Streams::open(&listen, &identity, wants_quic, &protect).await?;
    let mut socks = Sockets {
        udp: socks,
        streams,
    };
    let own_tun = local.is_none();
    let tun = match local {
        Some(Attach::TunFd(fd)) => {
            let t = crate::tun::from_owned(fd)?;
            #[cfg(target_os = "linux")]
            {
                cfg.tun.name = t.name().unwrap_or_else(|_| "(adopted TUN)".into());
            }
            #[cfg(not(target_os = "linux"))]
            {
                cfg.tun.name = "(adopted TUN)".into();
            }
            tracing::info!(tun = %cfg.tun.name, mtu = cfg.tun.mtu, "TUN descriptor adopted");
            Local::Tun(t)
        }
        Some(Attach::Packets(port)) => {
            cfg.tun.name = "(packet mode)".into();
            tracing::info!(mtu = cfg.tun.mtu, "packet mode");
            Local::Packets(port)
        }
        None => {
            let (tun, offload) = crate::tun::open(&cfg.tun, identity.address())?;
            tracing::info!(tun = %cfg.tun.name, mtu = cfg.tun.mtu, offload, "TUN device up");
            Local::Tun(tun)
        }
    };
    let (_admin, mut admin_rx) = match admin_socket {
        true => {
            let (server, rx) = admin::Server::bind(&cfg.admin_socket, cfg.admin_group.as_deref())
                .await
                .context("cannot start the admin API")?;
            (Some(server), Some(rx))
        }
        false => (None, None),
    };
    // The metrics endpoint asks the loop as `meshctl` does, on a channel of its own.
    let (_metrics, mut metrics_rx) = match cfg.metrics_addr()? {
        Some(addr) => {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let server = crate::metrics::server::start(addr, tx).await?;
            (Some(server), Some(rx))
        }
        None => (None, None),
    };

    let suite = cfg.suite()?;
    let node_cfg = NodeConfig {
        link: LinkConfig {
            suite,
            max_peers: cfg.max_peers,
            ..LinkConfig::default()
        },
        router: RouterConfig {
            eligible_roots: cfg.eligible_roots()?,
            name_ttl: Duration::from_secs(cfg.name_ttl),
            ..RouterConfig::default()
        },
        e2e: E2eConfig {
            suite,
            ..E2eConfig::default()
        },
    };
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).context("the operating system gave no random bytes")?;
    let mut node = Node::new(
        &identity,
        node_cfg,
        &identity.secret_seed(),
        wall_clock_ms(),
        u64::from_le_bytes(seed),
        Instant::now(),
    );
    // Names expire by the date: the router is told the wall clock once.
    node.router
        .set_wall_clock(Instant::now(), names::unix_now());
    node.set_policy(Instant::now(), policy);
    let mut names = names::Names::open(&cfg.state_dir, &cfg.dns.suffix)?;
    names.restore(&mut node, Instant::now());
    let (_dns, mut dns_rx) = match cfg.dns.listen_addr()? {
        Some(addr) => {
            let zone = crate::dns::Zone::new(&cfg.dns.suffix, cfg.dns.forward.is_some())
                .map_err(anyhow::Error::msg)?;
            let (server, rx) =
                crate::dns::server::start(addr, zone, cfg.dns.forward_addr()?, protect.clone())
                    .await?;
            (Some(server), Some(rx))
        }
        None => (None, None),
    };
    node.znet_exits = cfg.znet.exit.clone();
    let mut znets = znets::Znets::new(&cfg.state_dir, &identity, cfg.znet.exit.clone());
    znets.restore(&mut node, &identity);
    for n in znets.unknown_exits() {
        tracing::warn!(znet = %n, "[znet] exit names a znet that is not joined here (yet)");
    }
    let mut znet_done = znets.start()?;
    // Publishing and the gateway: a thread of their own (not for an app's packet mode).
    let gw = match &tun {
        Local::Tun(_) if admin_socket => {
            node.firewall
                .set_gateway_port(cfg.gateway.as_ref().map(|g| g.mesh_port));
            let g = gateway::Gateway::start(gateway::Setup {
                gateway: cfg.gateway.clone(),
                state_dir: cfg.state_dir.clone(),
                key: identity.public_key().0,
                address: identity.address(),
                subnet: routing::address::node_subnet(&identity.public_key().0),
                tun: cfg.tun.name.clone(),
                policy: node.firewall.policy().clone(),
            })?;
            g.set_targets(znets.targets());
            Some(g)
        }
        _ => None,
    };
    let mut znet_rx = datapath::TunToUdp::new(znets::ZNET_MTU);
    let mut last_znet = 0u64;
    let config_peers = cfg.peer_uris()?;
    if let Some(why) = config_peers.iter().find_map(|u| socks.unreachable(u)) {
        anyhow::bail!("peers: {why}");
    }
    for uri in config_peers.iter().chain(store.peers()) {
        node.links.add_peer(uri.clone(), Instant::now());
    }

    let ctl = control::Control {
        cfg: &cfg,
        identity: &identity,
        started,
        config_peers,
    };
    let (resolve_tx, mut resolve_rx) = mpsc::channel::<(PeerUri, Result<SocketAddr, String>)>(16);
    let mut tun_rx = datapath::TunToUdp::new(cfg.tun.mtu);
    let seal_threads = cfg.seal_threads();
    if seal_threads > 1 {
        let pool = std::sync::Arc::new(
            crate::seal_pool::SealPool::new(seal_threads)
                .context("cannot start the sealing threads (tun.seal_threads)")?,
        );
        tun_rx.set_sealer(pool.clone());
        znet_rx.set_sealer(pool);
    }
    tracing::info!(seal_threads, "data path");
    let mut udp_rx = datapath::UdpToTun::default();
    #[cfg(target_os = "linux")]
    if let Local::Tun(t) = &tun
        && own_tun
    {
        let n = cfg.tun.writers;
        if n > 0 {
            use std::os::fd::AsFd;
            let writers = tun_writers::TunWriters::start(
                (**t).as_fd(),
                n,
                t.tcp_gso(),
                datapath::MAX_TUN_BATCH,
                // A packet of the MTU with room for headers; twice that, since a Vec grown
                // by a few bytes may double.
                2 * (local::VIRTIO_NET_HDR_LEN + usize::from(cfg.tun.mtu) + 512),
            )
            .context("cannot start the TUN writer threads")?;
            tracing::info!(writers = writers.len(), "TUN writers started");
            udp_rx.set_writers(writers);
        }
    }
    let mut pings: HashMap<u64, Responder> = HashMap::new();
    if let Some(f) = on_event.as_mut() {
        f(Event::Ready {
            address: identity.address(),
            public_key: identity.public_key(),
        });
    }
    // SIGHUP (`systemctl reload`) reloads the policy file, as `meshctl policy reload` does.
    let mut hangup = match service {
        true => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot watch for SIGHUP")?,
        ),
        false => None,
    };
    if service {
        // The TUN device, the sockets and the admin socket are up. (No NOTIFY_SOCKET: nothing.)
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    }
    // LAN discovery, opened again after a network change.
    let lan_listen = cfg.listen_addrs()?;
    let open_lan = || {
        lan::Lan::open(
            &cfg.discovery,
            vec![cfg.tun.name.clone()],
            &lan_listen,
            &identity,
            wall_clock_ms().saturating_mul(1000),
            Instant::now(),
            &protect,
        )
    };
    let mut lan = open_lan();
    let mut lan_tick = tokio::time::interval(discovery::INTERVAL);
    lan_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = pin!(shutdown);
    let mut last_sock = 0;
    // The policy file is looked at four times a second, and read once it holds still for one
    // look (a file being written is not read half-way): a change is in force (and what it denies
    // is torn down) within a second, whatever editor or tool wrote it.
    let mut policy_poll = tokio::time::interval(Duration::from_millis(250));
    policy_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let t = turns::turn("between waits");
        let now = Instant::now();
        let mut deadline = node.poll_timeout();
        if deadline.is_some_and(|t| t <= now) {
            node.handle_timeout(now);
            deadline = node.poll_timeout();
        }
        flush_control(&mut node, &socks, &tun, &mut udp_rx.gro).await;
        while let Some(uri) = node.poll_resolve() {
            tokio::spawn(resolve(uri, socks.families(), resolve_tx.clone()));
        }
        while let Some((ticket, outcome)) = node.poll_ping() {
            if let Some(reply) = pings.remove(&ticket) {
                reply(admin::Reply::ok(admin::ping_outcome(outcome)));
            }
        }
        while let Some(e) = node.poll_name_event() {
            names.on_event(e);
        }
        while let Some(e) = node.poll_peer_event() {
            if let Some(f) = on_event.as_mut() {
                f(if e.up {
                    Event::PeerUp(e.key)
                } else {
                    Event::PeerDown(e.key)
                });
            }
        }
        let (resting, wake) = udp_rx.resting(socks.udp.len());
        let deadline = match (deadline, wake) {
            (Some(d), Some(w)) => d.min(w),
            (d, w) => d.or(w).unwrap_or(now + Duration::from_secs(3600)),
        };
        drop(t);
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            _ = &mut shutdown => break,
            r = tun.readable() => {
                let _t = turns::turn("TUN to links");
                let r = match r {
                    Ok(()) => tun_rx.pump(&tun, &mut node, &socks, None).await,
                    Err(e) => Err(e),
                };
                if r.as_ref().is_ok_and(|read| *read) {
                    udp_rx.data_moved();
                }
                if let Err(e) = r {
                    anyhow::bail!(
                        "the TUN device {} failed ({e}); was it deleted or closed? exiting",
                        cfg.tun.name
                    );
                }
            }
            i = socks.readable(last_sock, resting) => {
                let _t = turns::turn("links to TUN");
                last_sock = i;
                if let Err(e) = udp_rx.pump(i, &tun, &mut node, &socks, &znets.devices).await {
                    let at = socks.get(i).map(|s| s.local_addr().to_string()).unwrap_or_default();
                    anyhow::bail!("the UDP socket {at} failed ({e}); exiting");
                }
            }
            _ = sleep => {
                let _t = turns::control_turn("timers");
                node.handle_timeout(Instant::now());
            }
            id = znets.devices.readable(last_znet) => {
                let _t = turns::turn("znet TUN to links");
                last_znet = id;
                if let Some(dev) = znets.devices.get(id)
                    && let Err(e) = znet_rx.pump(&*dev, &mut node, &socks, Some(id)).await
                {
                    // Not read again (it would be ready forever); `znet leave` and a
                    // restart clear it.
                    tracing::error!("the TUN device of a znet failed ({e}); that znet is down until meshd restarts");
                    znets.close_device(id);
                }
                while let Some((id, p)) = node.poll_znet_tun() {
                    znets.devices.write(id, &p).await;
                }
            }
            Some(ev) = streams::next_event(&mut stream_rx, socks.streams.poll_timeout()) => {
                let _t = turns::turn("streams to TUN");
                // A batch, like a UDP batch: the frames go through the data path together.
                let now = Instant::now();
                let mut frames = Vec::new();
                let mut next = Some(ev);
                let mut budget = STREAM_BATCH;
                while let Some(ev) = next.take() {
                    socks.streams.handle(now, ev, &mut node.links, &mut frames);
                    budget -= 1;
                    if budget > 0 {
                        next = stream_rx.try_recv().ok();
                    }
                }
                udp_rx.frames(&frames, &tun, &mut node, &socks, &znets.devices).await;
            }
            _ = lan_tick.tick(), if lan.is_some() => {
                let _t = turns::control_turn("LAN announcement");
                if let Some(l) = lan.as_mut() {
                    l.tick(&identity, Instant::now()).await;
                }
            }
            _ = async { if let Some(l) = &lan { l.readable().await } else { std::future::pending().await } } => {
                let _t = turns::control_turn("LAN discovery");
                if let Some(l) = lan.as_mut() {
                    l.receive(&mut node, Instant::now());
                }
            }
            _ = async {
                match hangup.as_mut() {
                    Some(h) => { h.recv().await; }
                    None => std::future::pending().await,
                }
            } => {
                let _t = turns::control_turn("SIGHUP");
                let reply: Responder = Box::new(|r: admin::Reply| match r.into_result() {
                    Ok(_) => tracing::info!("SIGHUP: policy file read again"),
                    Err(e) => tracing::warn!("SIGHUP: policy not reloaded: {}", e.message),
                });
                policy_file.request(admin::Request::PolicyReload, reply, &mut node);
            }
            _ = policy_poll.tick() => {
                let _t = turns::control_turn("policy file poll");
                policy_file.poll(&mut node);
            }
            done = policy_file.done() => {
                let _t = turns::control_turn("policy in force");
                policy_file.finish(done, &mut node);
                if let Some(g) = &gw {
                    g.set_policy(node.firewall.policy().clone());
                }
            }
            ask = recv_opt(&mut dns_rx) => {
                let _t = turns::control_turn("DNS query");
                names.dns_ask(&mut node, ask);
            }
            saved = names.store.saved() => {
                let _t = turns::control_turn("names saved");
                names::finish(&mut names, saved);
            }
            saved = store.saved() => {
                let _t = turns::control_turn("peers saved");
                store.finish(saved);
            }
            (req, reply) = async {
                tokio::select! {
                    (req, tx) = recv_opt(&mut admin_rx) => {
                        let reply: Responder = Box::new(move |r| { let _ = tx.send(r); });
                        (req, reply)
                    }
                    (req, tx) = recv_opt(&mut metrics_rx) => {
                        let reply: Responder = Box::new(move |r| { let _ = tx.send(r); });
                        (req, reply)
                    }
                    item = recv_opt(&mut app_rx) => item,
                }
            } => {
                let _t = turns::control_turn("admin request");
                match req {
                    admin::Request::NetworkChanged => {
                        let r = network::changed(&mut socks, &udp_bound, &protect, &mut node);
                        lan = open_lan();
                        match r {
                            Ok(info) => reply(admin::Reply::ok(info)),
                            Err(e) => {
                                let msg = format!("{e:#}");
                                reply(admin::Reply::err(msg.clone()));
                                return Err(e.context("after a network change"));
                            }
                        }
                    }
                    admin::Request::Ping { address } => match address.parse() {
                        Ok(addr) => {
                            let ticket = node.ping(Instant::now(), addr);
                            pings.insert(ticket, reply);
                        }
                        Err(_) => {
                            reply(admin::Reply::err(format!("{address:?} is not an IPv6 address")));
                        }
                    },
                    req @ (admin::Request::ZnetCreate { .. }
                    | admin::Request::ZnetJoin { .. }
                    | admin::Request::ZnetLeave { .. }
                    | admin::Request::ZnetList
                    | admin::Request::ZnetShow { .. }
                    | admin::Request::ZnetAttach { .. }
                    | admin::Request::ZnetDetach { .. }) => {
                        znets::answer(req, &node, &mut znets, reply);
                    }
                    req @ (admin::Request::Publish(_)
                    | admin::Request::Unpublish { .. }
                    | admin::Request::Services
                    | admin::Request::GatewayStatus
                    | admin::Request::GatewayRelease { .. }) => match &gw {
                        Some(g) => g.request(req, reply),
                        None => reply(admin::Reply::error(api::Error::unavailable(
                            "publishing needs meshd's own TUN device (not an app's packet mode)",
                        ))),
                    },
                    req @ (admin::Request::PolicyShow
                    | admin::Request::PolicyReload
                    | admin::Request::PolicyExplain { .. }
                    | admin::Request::CircleList
                    | admin::Request::CircleShow { .. }
                    | admin::Request::CircleAdd { .. }
                    | admin::Request::CircleRemove { .. }) => {
                        policy_file.request(req, reply, &mut node);
                    }
                    req @ (admin::Request::NameClaim { .. }
                    | admin::Request::NameRelease { .. }
                    | admin::Request::NameResolve { .. }
                    | admin::Request::NameList
                    | admin::Request::NameDelegate { .. }
                    | admin::Request::NamePublish { .. }) => {
                        names.request(req, reply, &mut node, &identity);
                    }
                    req => {
                        let sources = control::StatusSources { policy_file: &policy_file, lan: lan.as_ref(), names: &names };
                        let r = ctl.handle(req, &mut node, &mut store, &socks, &sources);
                        // A peer change is answered once it is saved (off the loop).
                        store.answer(r, reply);
                    }
                }
            }
            Some((uri, res)) = resolve_rx.recv() => {
                let _t = turns::control_turn("name resolved");
                node.links.resolved(&uri, res, Instant::now());
            }
            // A znet change the worker made (off the loop): applied to the node, answered.
            Some(done) = znet_done.recv() => {
                let _t = turns::control_turn("znet change in force");
                znets.finished(done, &mut node, &identity);
                if let Some(g) = &gw {
                    g.set_targets(znets.targets());
                }
            }
        }
    }
    tracing::info!("shutting down: telling the peers");
    node.shut_down(Instant::now());
    flush_control(&mut node, &socks, &tun, &mut udp_rx.gro).await;
    socks.streams.close().await;
    Ok(())
}

/// Resolves a peer's host name to the first address of a family this node can send to.
async fn resolve(
    uri: PeerUri,
    (v4, v6): (bool, bool),
    tx: mpsc::Sender<(PeerUri, Result<SocketAddr, String>)>,
) {
    // Connections (TCP, QUIC) are made from either family whatever the UDP sockets are.
    let (v4, v6) = match uri.scheme {
        Scheme::Udp => (v4, v6),
        _ => (true, true),
    };
    let result = match &uri.host {
        crate::uri::Host::Ip(_) | crate::uri::Host::Scoped(..) => {
            uri.socket_addr().ok_or_else(|| "no address".to_string())
        }
        crate::uri::Host::Name(name) => {
            match tokio::net::lookup_host((name.as_str(), uri.port)).await {
                Ok(addrs) => {
                    let all: Vec<SocketAddr> = addrs.collect();
                    all.iter()
                        .find(|a| if a.is_ipv4() { v4 } else { v6 })
                        .copied()
                        .ok_or_else(|| match all.is_empty() {
                            true => "no address found".to_string(),
                            false => format!(
                                "only addresses of a family meshd does not listen on: {all:?}"
                            ),
                        })
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let _ = tx.send((uri, result)).await;
}
