//! The gateway's side of its publishers: their connections on `[address]:mesh_port` (the
//! overlay only), the hello, the `publish` rule, who holds which name. A publisher keeps one
//! control connection per name (the service is up while it is open) and a few idle data
//! connections, each of which carries one public connection when one arrives: its own TCP
//! connection over the overlay, so the kernel's flow control sizes its window (a multiplexer
//! such as yamux held each stream to a 256 KiB window: about 1 Gbit/s at a few ms of RTT),
//! and one slow client never holds up another.

use super::Shared;
use super::public;
use crate::gateway::config::{GatewayConfig, Listener};
use crate::gateway::names::{ConnId, Names};
use crate::gateway::wire::{Answer, Hello, Kind, Op};
use api::{GatewayCounters, GatewayService, GatewayStatus};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// How long a publisher has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes and connections of one service (shared with the splices that carry it).
#[derive(Default)]
pub struct Stats {
    pub open: Cell<u64>,
    pub total: Cell<u64>,
    pub bytes_in: Rc<Cell<u64>>,
    pub bytes_out: Rc<Cell<u64>>,
}

/// Most idle data connections a gateway keeps per service (more are closed).
const MAX_IDLE: usize = 16;

/// A publisher's control connection, and the data connections of its service.
pub struct PubConn {
    pub key: [u8; 32],
    /// Data connections waiting for a public connection.
    idle: VecDeque<TcpStream>,
    /// Public connections waiting for a data connection.
    waiting: VecDeque<oneshot::Sender<TcpStream>>,
    /// Set to end the connection.
    kill: watch::Sender<bool>,
}

/// A data connection now, or one to wait for.
pub enum Data {
    Ready(TcpStream),
    Wait(oneshot::Receiver<TcpStream>),
}

/// The gateway's state.
pub struct Hub {
    pub cfg: GatewayConfig,
    pub listeners: Vec<Listener>,
    pub names: Names,
    pub conns: HashMap<ConnId, PubConn>,
    next_conn: ConnId,
    /// Publisher connections open or saying hello.
    publishers: usize,
    pub stats: HashMap<(String, Kind), Rc<Stats>>,
    /// Open public connections by client address.
    pub clients: HashMap<IpAddr, usize>,
    /// Open public connections.
    pub open: usize,
    pub counters: GatewayCounters,
}

impl Hub {
    /// The stats of a service (made on first use).
    pub fn stats(&mut self, name: &str, kind: Kind) -> Rc<Stats> {
        self.stats
            .entry((name.to_string(), kind))
            .or_default()
            .clone()
    }

    /// A data connection of the service on control connection `id`, for a public connection.
    pub fn take_data(&mut self, id: ConnId, max_waiting: usize) -> Option<Data> {
        let c = self.conns.get_mut(&id)?;
        if let Some(s) = c.idle.pop_front() {
            return Some(Data::Ready(s));
        }
        c.waiting.retain(|w| !w.is_closed());
        if c.waiting.len() >= max_waiting {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        c.waiting.push_back(tx);
        Some(Data::Wait(rx))
    }

    /// A data connection arrived for control connection `id`: to a waiting public connection,
    /// or idle (at most [`MAX_IDLE`]).
    fn give_data(&mut self, id: ConnId, mut s: TcpStream) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        while let Some(w) = c.waiting.pop_front() {
            match w.send(s) {
                Ok(()) => return,
                Err(back) => s = back,
            }
        }
        if c.idle.len() < MAX_IDLE {
            c.idle.push_back(s);
        }
    }

    fn end(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            c.kill.send_replace(true);
        }
        self.names.closed(id);
        // Stats of names released since go with them (the map stays within max_names).
        let names = &self.names;
        self.stats
            .retain(|(n, _), s| names.holder(n).is_some() || s.open.get() > 0);
    }
}

/// Binds the public listeners and the publishers' port, and starts accepting.
pub async fn start(shared: &Rc<Shared>, cfg: GatewayConfig) -> anyhow::Result<()> {
    cfg.validate()?;
    let listeners = cfg.listeners()?;
    let mut bound = Vec::new();
    for l in &listeners {
        let s = TcpListener::bind(l.addr)
            .await
            .map_err(|e| anyhow::anyhow!("gateway: cannot listen on {}: {e}", l.addr))?;
        bound.push((s, l.name.clone()));
    }
    let mesh_at = SocketAddrV6::new(shared.address, cfg.mesh_port, 0, 0);
    let mesh = bind_mesh(mesh_at).map_err(|e| {
        anyhow::anyhow!(
            "gateway: cannot listen on [{}]:{}: {e}",
            shared.address,
            cfg.mesh_port
        )
    })?;
    let mut names = Names::new(cfg.max_names);
    names.restore(shared.store.names());
    tracing::info!(
        public = ?listeners.iter().map(|l| l.addr).collect::<Vec<_>>(),
        mesh = %mesh_at,
        names = names.held().count(),
        "gateway up"
    );
    *shared.hub.borrow_mut() = Some(Hub {
        cfg,
        listeners,
        names,
        conns: HashMap::new(),
        next_conn: 1,
        publishers: 0,
        stats: HashMap::new(),
        clients: HashMap::new(),
        open: 0,
        counters: GatewayCounters::default(),
    });
    for (l, name) in bound {
        tokio::task::spawn_local(public::accept(shared.clone(), l, name));
    }
    tokio::task::spawn_local(accept(shared.clone(), mesh));
    tokio::task::spawn_local(recheck_on_policy_change(shared.clone()));
    Ok(())
}

/// The publishers' listener: on the overlay address only, so nothing outside the mesh can
/// reach it (freebind: the TUN's address may still be tentative).
fn bind_mesh(at: SocketAddrV6) -> std::io::Result<TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_freebind_v6(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::V6(at).into())?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

async fn accept(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("gateway: accepting a publisher failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = with_hub(&shared, |h| {
            if h.publishers >= h.cfg.max_publishers {
                h.counters.publish_refused += 1;
                return false;
            }
            h.publishers += 1;
            true
        });
        if admitted == Some(true) {
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                publisher(&shared, stream, peer).await;
                with_hub(&shared, |h| h.publishers -= 1);
            });
        }
    }
}

/// Runs `f` on the hub (there is one once the gateway started).
pub fn with_hub<T>(shared: &Shared, f: impl FnOnce(&mut Hub) -> T) -> Option<T> {
    shared.hub.borrow_mut().as_mut().map(f)
}

async fn read_hello(stream: &mut TcpStream) -> std::io::Result<Result<Hello, String>> {
    let mut buf = vec![0u8; 40];
    // The magic and version first: anything else is refused without waiting for more.
    stream.read_exact(&mut buf[..5]).await?;
    if let Err(e) = Hello::parse(&buf[..5]) {
        return Ok(Err(e.to_string()));
    }
    stream.read_exact(&mut buf[5..]).await?;
    let len = usize::from(buf[39]);
    buf.resize(40 + len, 0);
    stream.read_exact(&mut buf[40..]).await?;
    Ok(match Hello::parse(&buf) {
        Ok(Some((h, _))) => Ok(h),
        Ok(None) => Err("a truncated hello".into()),
        Err(e) => Err(e.to_string()),
    })
}

/// One publisher connection: hello, checks, then its session until it ends.
async fn publisher(shared: &Rc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut stream)).await {
        Ok(Ok(Ok(h))) => h,
        Ok(Ok(Err(why))) => {
            refuse(shared, &mut stream, peer, why).await;
            return;
        }
        Ok(Err(_)) | Err(_) => {
            with_hub(shared, |h| h.counters.publish_refused += 1);
            return;
        }
    };
    let source_ok =
        matches!(peer.ip(), IpAddr::V6(a) if a == routing::address::node_address(&hello.key));
    if !source_ok {
        let why = format!("{peer} is not the node address of the key in its hello");
        refuse(shared, &mut stream, peer, why).await;
        return;
    }
    let allowed = shared
        .policy
        .borrow()
        .decide(&hello.key, acl::Action::Publish, acl::Proto::Tcp, 0)
        .allows();
    let key_hex = hex(&hello.key);
    match hello.op {
        Op::Release => {
            let r = with_hub(shared, |h| {
                h.names.release(&hello.key, &hello.name).map(|conns| {
                    for c in conns {
                        h.end(c);
                    }
                })
            });
            match r {
                Some(Ok(())) => {
                    tracing::info!(name = %hello.name, publisher = %key_hex, "gateway: name released");
                    save_names(shared).await;
                    let _ = stream.write_all(&Answer::Ok.encode()).await;
                }
                Some(Err(e)) => {
                    let why = e.message(&hello.name, &hello.key);
                    refuse(shared, &mut stream, peer, why).await;
                }
                None => {}
            }
        }
        Op::Data => {
            // Only the key whose control connection carries the service now.
            let r = with_hub(shared, |h| match h.names.route(&hello.name, hello.kind) {
                Some(id) if h.conns.get(&id).is_some_and(|c| c.key == hello.key) => Ok(id),
                _ => Err(format!(
                    "no control connection of this key carries {} ({}) here",
                    hello.name, hello.kind
                )),
            });
            match r {
                Some(Ok(id)) if stream.write_all(&Answer::Ok.encode()).await.is_ok() => {
                    let _ = stream.set_nodelay(true);
                    with_hub(shared, |h| h.give_data(id, stream));
                }
                Some(Ok(_)) => {}
                Some(Err(why)) => refuse(shared, &mut stream, peer, why).await,
                None => {}
            }
        }
        Op::Publish => {
            let r = with_hub(shared, |h| {
                let id = h.next_conn;
                h.next_conn += 1;
                h.names
                    .publish(&hello.key, &hello.name, hello.kind, allowed, id)
                    .map(|(old, changed)| {
                        if let Some(old) = old {
                            h.end(old);
                        }
                        (id, changed, h.cfg.max_per_service)
                    })
            });
            let (id, changed, _) = match r {
                Some(Ok(x)) => x,
                Some(Err(e)) => {
                    let why = e.message(&hello.name, &hello.key);
                    refuse(shared, &mut stream, peer, why).await;
                    return;
                }
                None => return,
            };
            if changed {
                save_names(shared).await;
            }
            if stream.write_all(&Answer::Ok.encode()).await.is_err() {
                with_hub(shared, |h| h.names.closed(id));
                return;
            }
            let (kill, mut killed) = watch::channel(false);
            let ended = with_hub(shared, |h| {
                h.counters.publishers += 1;
                // It may have been replaced or released while the answer was written.
                if h.names.route(&hello.name, hello.kind) != Some(id) {
                    return true;
                }
                h.conns.insert(
                    id,
                    PubConn {
                        key: hello.key,
                        idle: VecDeque::new(),
                        waiting: VecDeque::new(),
                        kill,
                    },
                );
                false
            });
            if ended != Some(false) {
                return;
            }
            tracing::info!(name = %hello.name, kind = %hello.kind, publisher = %key_hex, "gateway: publisher connected");
            // Nothing comes on a control connection: it is up until it closes.
            let closed = async {
                let mut buf = [0u8; 64];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => return "closed".to_string(),
                        Err(e) => return e.to_string(),
                        Ok(_) => {}
                    }
                }
            };
            let why = tokio::select! {
                why = closed => why,
                _ = killed.wait_for(|k| *k) => "replaced or released".to_string(),
            };
            with_hub(shared, |h| {
                if h.conns.contains_key(&id) {
                    h.end(id);
                }
            });
            tracing::info!(name = %hello.name, kind = %hello.kind, publisher = %key_hex, "gateway: publisher disconnected ({why})");
        }
    }
}

async fn refuse(shared: &Shared, stream: &mut TcpStream, peer: SocketAddr, why: String) {
    tracing::warn!(%peer, "gateway: publisher refused: {why}");
    with_hub(shared, |h| h.counters.publish_refused += 1);
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(&Answer::Refused(why).encode()),
    )
    .await;
}

async fn save_names(shared: &Shared) {
    let held = with_hub(shared, |h| {
        h.names
            .held()
            .map(|(n, k)| (n.clone(), *k))
            .collect::<Vec<_>>()
    })
    .unwrap_or_default();
    if let Err(e) = shared.store.save_names(held).await {
        tracing::error!("gateway: cannot save the held names: {e}");
    }
}

/// A publisher whose `publish` rule a new policy denies is disconnected at once.
async fn recheck_on_policy_change(shared: Rc<Shared>) {
    let mut policy = shared.policy.clone();
    while policy.changed().await.is_ok() {
        let p = policy.borrow_and_update().clone();
        with_hub(&shared, |h| {
            let denied: Vec<ConnId> = h
                .conns
                .iter()
                .filter(|(_, c)| {
                    !p.decide(&c.key, acl::Action::Publish, acl::Proto::Tcp, 0)
                        .allows()
                })
                .map(|(id, _)| *id)
                .collect();
            for id in denied {
                tracing::warn!("gateway: a publisher's publish rule was withdrawn; disconnected");
                h.end(id);
            }
        });
    }
}

/// `meshctl gateway status`.
pub fn status(shared: &Shared) -> GatewayStatus {
    let hub = shared.hub.borrow();
    let Some(h) = hub.as_ref() else {
        return GatewayStatus {
            enabled: false,
            listen: vec![],
            mesh_port: 0,
            open: 0,
            services: vec![],
            counters: GatewayCounters::default(),
        };
    };
    let services = h
        .names
        .services()
        .into_iter()
        .map(|(name, kind, key, conn)| {
            let s = h.stats.get(&(name.clone(), kind));
            GatewayService {
                kind: kind.name().into(),
                publisher: hex(&key),
                connected: conn.is_some_and(|c| h.conns.contains_key(&c)),
                open: s.map_or(0, |s| s.open.get()),
                total: s.map_or(0, |s| s.total.get()),
                bytes_in: s.map_or(0, |s| s.bytes_in.get()),
                bytes_out: s.map_or(0, |s| s.bytes_out.get()),
                name,
            }
        })
        .collect();
    GatewayStatus {
        enabled: true,
        listen: h
            .listeners
            .iter()
            .map(|l| match &l.name {
                Some(n) => format!("{}={n}", l.addr),
                None => l.addr.to_string(),
            })
            .collect(),
        mesh_port: h.cfg.mesh_port,
        open: h.open as u64,
        services,
        counters: h.counters.clone(),
    }
}

/// `meshctl gateway release NAME`.
pub async fn release(shared: &Shared, name: &str) -> Result<serde_json::Value, api::Error> {
    let held = with_hub(shared, |h| {
        let by = h.names.holder(name).copied();
        for c in h.names.force_release(name) {
            h.end(c);
        }
        by
    })
    .ok_or_else(|| {
        api::Error::not_found("this node is not a gateway (it has no [gateway] section)")
    })?;
    let Some(by) = held else {
        return Err(
            api::Error::not_found(format!("nobody holds {name:?} on this gateway"))
                .with_hint("meshctl gateway status lists the names"),
        );
    };
    save_names(shared).await;
    tracing::info!(%name, publisher = %hex(&by), "gateway: name released by the operator");
    Ok(serde_json::to_value(api::NameReleased {
        name: name.to_string(),
        was_held_by: hex(&by),
    })
    .unwrap_or_default())
}

pub fn hex(k: &[u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}
