//! The services this node publishes. For each, and each of its gateways, a task dials the
//! gateway's `mesh_port` over the overlay (outbound: no port is opened for the service), says
//! hello on a control connection, and keeps [`POOL`] idle data connections dialed beside it;
//! the gateway hands each a public connection, and the task dials a replacement at once. It
//! re-dials with back-off when the control connection ends. Each data connection, and each
//! mesh user's connection to the service address, is carried to the container by a
//! connection from the znet's router namespace.

use super::Shared;
use super::hub::Stats;
use super::local::{connect_in, service_address, set_address};
use super::public::Open;
use super::splice::{Meter, splice};
use crate::daemon::znets::nsref::router_ns_of;
use crate::gateway::config::DEFAULT_MESH_PORT;
use crate::gateway::peek::dns_name;
use crate::gateway::wire::{self, Answer, Hello, Kind, Op};
use api::{Publish, ServiceGateway, ServiceInfo};
use std::cell::{Cell, RefCell};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, watch};

/// Default most connections at once to one service.
const MAX_CONNECTIONS: u32 = 1_000;
/// Default idle seconds.
const IDLE_TIMEOUT: u64 = 300;
/// How long dialing and the hello may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Re-dial back-off after a failure: from 1 s, doubling, up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After a refusal (policy, a held name), try again this much later: the gateway's operator
/// may fix it.
const REFUSED_BACKOFF: Duration = Duration::from_secs(60);
/// Idle data connections kept dialed per service and gateway: this many public connections
/// arriving at once start without waiting for a dial (each used one is replaced at once).
pub const POOL: usize = 4;

/// The published services.
#[derive(Default)]
pub struct Services(RefCell<Vec<Rc<Service>>>);

/// One gateway of a service: its key, port and state.
struct Gw {
    key: [u8; 32],
    port: u16,
    state: Cell<&'static str>,
    error: RefCell<Option<String>>,
    since: Cell<Instant>,
}

impl Gw {
    fn set(&self, state: &'static str, error: Option<String>) {
        if self.state.get() != state || *self.error.borrow() != error {
            self.since.set(Instant::now());
        }
        self.state.set(state);
        *self.error.borrow_mut() = error;
    }
}

/// One published service.
pub struct Service {
    spec: Publish,
    kind: Kind,
    address: Ipv6Addr,
    gateways: Vec<Gw>,
    stats: Rc<Stats>,
    failed: Cell<u64>,
    stop: watch::Sender<bool>,
}

impl Service {
    fn max(&self) -> u64 {
        u64::from(self.spec.max_connections.unwrap_or(MAX_CONNECTIONS))
    }
    fn idle(&self) -> Duration {
        Duration::from_secs(self.spec.idle_timeout.unwrap_or(IDLE_TIMEOUT))
    }
}

fn bad(msg: String) -> api::Error {
    api::Error::bad_request(msg)
}

/// A gateway argument: `KEY` or `KEY@PORT`.
fn parse_gateway(s: &str) -> Result<GatewayAt, api::Error> {
    let (k, port) = match s.split_once('@') {
        Some((k, p)) => (
            k,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(format!("gateway {s:?}: {p:?} is not a port")))?,
        ),
        None => (s, DEFAULT_MESH_PORT),
    };
    let key: crate::identity::PublicKey = k.parse().map_err(|_| {
        bad(format!(
            "gateway {k:?} is not a public key (64 hex digits, as `meshctl self` prints on the gateway)"
        ))
    })?;
    Ok((key.0, port))
}

/// Checks a publish request; answers the normalised spec, its kind and gateways.
/// A gateway's key and the port publishers dial on it.
type GatewayAt = ([u8; 32], u16);

fn check(p: &Publish) -> Result<(Publish, Kind, Vec<GatewayAt>), api::Error> {
    let kind = Kind::parse(&p.kind)
        .ok_or_else(|| bad(format!("kind {:?}: write tls, http or tcp", p.kind)))?;
    let name = dns_name(p.name.as_bytes())
        .ok_or_else(|| bad(format!("{:?} is not a DNS name (shop.example.com)", p.name)))?;
    if p.port == 0 {
        return Err(bad(
            "port 0: give the service's port in the container".into()
        ));
    }
    if p.gateways.is_empty() {
        return Err(bad("no gateway: give at least one --gateway KEY".into()));
    }
    let mut gws = Vec::new();
    for g in &p.gateways {
        let g = parse_gateway(g)?;
        if !gws.contains(&g) {
            gws.push(g);
        }
    }
    if p.max_connections == Some(0) || p.idle_timeout == Some(0) {
        return Err(bad(
            "max_connections and idle_timeout must be at least 1".into()
        ));
    }
    if p.max_connections
        .is_some_and(|m| m as usize > super::splice::MAX_STREAMS)
    {
        return Err(bad(format!(
            "max_connections is at most {} per service",
            super::splice::MAX_STREAMS
        )));
    }
    let mut spec = p.clone();
    spec.name = name;
    Ok((spec, kind, gws))
}

/// The container's address now, if it is attached.
fn target(shared: &Shared, spec: &Publish) -> Option<std::net::Ipv4Addr> {
    shared
        .targets
        .borrow()
        .get(&(spec.znet.clone(), spec.netns.clone()))
        .copied()
}

/// `meshctl publish`.
pub async fn publish(shared: &Rc<Shared>, p: Publish) -> Result<serde_json::Value, api::Error> {
    let (spec, kind, gws) = check(&p)?;
    if target(shared, &spec).is_none() {
        return Err(api::Error::not_found(format!(
            "{:?} is not a container of znet {:?} on this node",
            spec.netns, spec.znet
        ))
        .with_hint("meshctl znet show ZNET lists the attached namespaces; attach it first"));
    }
    if shared
        .services
        .0
        .borrow()
        .iter()
        .any(|s| s.spec.name == spec.name && s.kind == kind)
    {
        return Err(
            api::Error::conflict(format!("{} is published already as {kind}", spec.name))
                .with_hint("meshctl unpublish NAME first to change it"),
        );
    }
    let svc = start(shared, spec, kind, gws).await?;
    // The gateways' first answers, so that a refusal is told to whoever published.
    let answered = async {
        while svc.gateways.iter().any(|g| g.state.get() == "connecting") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::time::timeout(DIAL_TIMEOUT + Duration::from_secs(1), answered).await;
    if svc.gateways.iter().all(|g| g.state.get() == "refused") {
        svc.stop.send_replace(true);
        shared
            .services
            .0
            .borrow_mut()
            .retain(|s| !Rc::ptr_eq(s, &svc));
        let still_named = shared
            .services
            .0
            .borrow()
            .iter()
            .any(|s| s.spec.name == svc.spec.name);
        if !still_named {
            let _ = set_address(&shared.tun, svc.address, false).await;
        }
        let why: Vec<String> = svc
            .gateways
            .iter()
            .map(|g| {
                format!(
                    "{}: {}",
                    super::hub::hex(&g.key),
                    g.error.borrow().clone().unwrap_or_default()
                )
            })
            .collect();
        return Err(api::Error::denied(format!(
            "every gateway refused {}: {}",
            svc.spec.name,
            why.join("; ")
        ))
        .with_hint("nothing was published; the gateway's operator decides who may publish (action \"publish\")"));
    }
    save(shared).await?;
    Ok(serde_json::to_value(info(shared, &svc)).unwrap_or_default())
}

/// Starts a checked service: its mesh listener, and a dialer per gateway.
async fn start(
    shared: &Rc<Shared>,
    spec: Publish,
    kind: Kind,
    gws: Vec<GatewayAt>,
) -> Result<Rc<Service>, api::Error> {
    let address = service_address(shared.subnet, &spec.name);
    set_address(&shared.tun, address, true).await.map_err(|e| {
        api::Error::internal(format!("cannot put the service address on the TUN: {e}"))
    })?;
    let at = SocketAddrV6::new(address, spec.port, 0, 0);
    let listener = TcpListener::bind(at)
        .await
        .map_err(|e| api::Error::conflict(format!("cannot listen for mesh users on {at}: {e}")))?;
    let (stop, _) = watch::channel(false);
    let svc = Rc::new(Service {
        kind,
        address,
        gateways: gws
            .into_iter()
            .map(|(key, port)| Gw {
                key,
                port,
                state: Cell::new("connecting"),
                error: RefCell::new(None),
                since: Cell::new(Instant::now()),
            })
            .collect(),
        stats: Rc::default(),
        failed: Cell::new(0),
        stop,
        spec,
    });
    shared.services.0.borrow_mut().push(svc.clone());
    tracing::info!(name = %svc.spec.name, %kind, znet = %svc.spec.znet, netns = %svc.spec.netns, port = svc.spec.port, service_address = %address, "publishing");
    tokio::task::spawn_local(mesh_users(shared.clone(), svc.clone(), listener));
    for i in 0..svc.gateways.len() {
        tokio::task::spawn_local(dial_loop(shared.clone(), svc.clone(), i));
    }
    Ok(svc)
}

async fn save(shared: &Shared) -> Result<(), api::Error> {
    let list: Vec<Publish> = shared
        .services
        .0
        .borrow()
        .iter()
        .map(|s| s.spec.clone())
        .collect();
    shared
        .store
        .save_published(&list)
        .await
        .map_err(|e| api::Error::internal(format!("cannot save the published services: {e}")))
}

/// Starts the services published before a restart.
pub async fn restore(shared: &Rc<Shared>) {
    for p in shared.store.published() {
        match check(&p) {
            Ok((spec, kind, gws)) => {
                if let Err(e) = start(shared, spec, kind, gws).await {
                    tracing::error!(name = %p.name, "cannot publish again after the restart: {}", e.message);
                }
            }
            Err(e) => tracing::error!(name = %p.name, "a saved service is invalid: {}", e.message),
        }
    }
}

/// `meshctl unpublish`.
pub async fn unpublish(
    shared: &Rc<Shared>,
    name: String,
    kind: Option<String>,
) -> Result<serde_json::Value, api::Error> {
    let kind = match kind.as_deref() {
        None => None,
        Some(k) => {
            Some(Kind::parse(k).ok_or_else(|| bad(format!("kind {k:?}: write tls, http or tcp")))?)
        }
    };
    let name = dns_name(name.as_bytes()).unwrap_or(name);
    let gone: Vec<Rc<Service>> = {
        let mut list = shared.services.0.borrow_mut();
        let (gone, keep) = list
            .drain(..)
            .partition(|s| s.spec.name == name && kind.is_none_or(|k| s.kind == k));
        *list = keep;
        gone
    };
    if gone.is_empty() {
        return Err(
            api::Error::not_found(format!("{name:?} is not published here"))
                .with_hint("meshctl services lists them"),
        );
    }
    for s in &gone {
        s.stop.send_replace(true);
    }
    save(shared).await?;
    let still_named = shared
        .services
        .0
        .borrow()
        .iter()
        .any(|s| s.spec.name == name);
    if !still_named {
        let address = service_address(shared.subnet, &name);
        if let Err(e) = set_address(&shared.tun, address, false).await {
            tracing::warn!("unpublish {name}: {e}");
        }
    }
    // Release the name on each gateway (best effort: one that is down keeps it until its
    // operator releases it).
    let mut released = Vec::new();
    if !still_named {
        let mut tried = Vec::new();
        for s in &gone {
            for g in &s.gateways {
                if !tried.contains(&(g.key, g.port)) {
                    tried.push((g.key, g.port));
                }
            }
        }
        let kind = gone[0].kind;
        let results = futures::future::join_all(tried.iter().map(|&(key, port)| {
            let name = name.clone();
            async move {
                let r = hello(shared, key, port, Op::Release, kind, &name).await;
                (key, r)
            }
        }))
        .await;
        for (key, r) in results {
            released.push(api::Released {
                gateway: super::hub::hex(&key),
                released: r.is_ok(),
                error: r.err(),
            });
        }
    }
    tracing::info!(%name, "unpublished");
    Ok(serde_json::to_value(api::Unpublished {
        name,
        gateways: released,
    })
    .unwrap_or_default())
}

/// Dials gateway `key` (port `port`) and says `op`; answers the open connection.
async fn hello(
    shared: &Shared,
    key: [u8; 32],
    port: u16,
    op: Op,
    kind: Kind,
    name: &str,
) -> Result<TcpStream, String> {
    let to = SocketAddrV6::new(routing::address::node_address(&key), port, 0, 0);
    let work = async {
        let s = TcpSocket::new_v6().map_err(|e| e.to_string())?;
        // From the node address: the gateway checks it against the key in the hello.
        s.bind(SocketAddr::V6(SocketAddrV6::new(shared.address, 0, 0, 0)))
            .map_err(|e| format!("cannot bind to {}: {e}", shared.address))?;
        keepalive(&s);
        let mut stream = s
            .connect(SocketAddr::V6(to))
            .await
            .map_err(|e| format!("cannot connect to {to}: {e}"))?;
        // Small writes (a TLS record, a short response) go at once: no Nagle, which with the
        // peer's delayed ACK cost 40 ms at the 99th percentile.
        let _ = stream.set_nodelay(true);
        let h = Hello {
            op,
            kind,
            key: shared.key,
            name: name.to_string(),
        };
        stream
            .write_all(&h.encode())
            .await
            .map_err(|e| format!("{to}: {e}"))?;
        let mut head = [0u8; 8];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|e| format!("{to} closed without an answer ({e})"))?;
        let len = usize::from(u16::from_be_bytes([head[6], head[7]])).min(wire::MAX_MESSAGE);
        let mut buf = head.to_vec();
        buf.resize(8 + len, 0);
        stream
            .read_exact(&mut buf[8..])
            .await
            .map_err(|e| format!("{to}: {e}"))?;
        match Answer::parse(&buf) {
            Ok(Some((Answer::Ok, _))) => Ok(stream),
            Ok(Some((Answer::Refused(why), _))) => Err(format!("refused: {why}")),
            Ok(None) => Err("a truncated answer".into()),
            Err(e) => Err(format!("{to} is not a Planetary LAN gateway ({e})")),
        }
    };
    tokio::time::timeout(DIAL_TIMEOUT, work)
        .await
        .map_err(|_| format!("{to} did not answer within {DIAL_TIMEOUT:?}"))?
}

/// Dead gateways are noticed within about 20 s even when nothing is sent.
fn keepalive(s: &TcpSocket) {
    let r = socket2::SockRef::from(s);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(3))
        .with_retries(3);
    let _ = r.set_tcp_keepalive(&ka);
    let _ = r.set_tcp_user_timeout(Some(Duration::from_secs(20)));
}

/// Keeps one gateway connected while the service is published.
async fn dial_loop(shared: Rc<Shared>, svc: Rc<Service>, i: usize) {
    let mut stop = svc.stop.subscribe();
    let mut backoff = Duration::from_secs(1);
    loop {
        let g = &svc.gateways[i];
        let last_error = g.error.borrow().clone();
        g.set("connecting", last_error);
        let started = Instant::now();
        let session = async {
            let mut control = hello(
                &shared,
                g.key,
                g.port,
                Op::Publish,
                svc.kind,
                &svc.spec.name,
            )
            .await?;
            g.set("connected", None);
            tracing::info!(name = %svc.spec.name, gateway = %super::hub::hex(&g.key), "connected to the gateway");
            // Data connections wait while this is alive (dropped with the session).
            let (_alive, alive) = watch::channel(());
            let idle = Rc::new(Cell::new(0usize));
            let refill = Rc::new(Notify::new());
            let pool = async {
                loop {
                    if idle.get() >= POOL {
                        refill.notified().await;
                        continue;
                    }
                    match hello(&shared, g.key, g.port, Op::Data, svc.kind, &svc.spec.name).await {
                        Ok(s) => {
                            idle.set(idle.get() + 1);
                            tokio::task::spawn_local(data_connection(
                                shared.clone(),
                                svc.clone(),
                                s,
                                idle.clone(),
                                refill.clone(),
                                alive.clone(),
                            ));
                        }
                        Err(e) => {
                            tracing::debug!(name = %svc.spec.name, "a data connection failed: {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            };
            // Nothing comes on the control connection: the service is up until it closes.
            let closed = async {
                let mut b = [0u8; 64];
                loop {
                    match control.read(&mut b).await {
                        Ok(0) => return "the gateway closed the connection".to_string(),
                        Err(e) => return format!("the connection failed: {e}"),
                        Ok(_) => {}
                    }
                }
            };
            let why = tokio::select! {
                why = closed => why,
                _ = pool => String::new(),
            };
            Err::<(), String>(why)
        };
        let why: String = tokio::select! {
            r = session => match r {
                Ok(()) => String::new(),
                Err(e) => e,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let wait = if why.starts_with("refused:") {
            tracing::warn!(name = %svc.spec.name, gateway = %super::hub::hex(&g.key), "{why}");
            g.set("refused", Some(why));
            REFUSED_BACKOFF
        } else {
            tracing::info!(name = %svc.spec.name, gateway = %super::hub::hex(&g.key), "gateway connection: {why}");
            g.set("waiting", Some(why));
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_secs(1);
            }
            let w = backoff;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            w
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// An idle data connection: waits for the gateway to give it a public connection (its client
/// header), then carries it to the container. A replacement is dialed as soon as it is taken.
async fn data_connection(
    shared: Rc<Shared>,
    svc: Rc<Service>,
    mut s: TcpStream,
    idle: Rc<Cell<usize>>,
    refill: Rc<Notify>,
    mut alive: watch::Receiver<()>,
) {
    let header = async {
        let mut b = [0u8; 19];
        s.read_exact(&mut b[..1]).await.ok()?;
        let n = if b[0] == 4 { 7 } else { 19 };
        s.read_exact(&mut b[1..n]).await.ok()?;
        wire::parse_client(&b[..n]).ok().flatten().map(|(a, _)| a)
    };
    let client = tokio::select! {
        c = header => c,
        _ = alive.changed() => None,
    };
    idle.set(idle.get().saturating_sub(1));
    refill.notify_one();
    if client.is_none() {
        return;
    }
    to_container(&shared, &svc, s).await;
}

/// Mesh users reach the service at its address on the overlay; the circle policy (traffic
/// rules of this node) already decided who gets here.
async fn mesh_users(shared: Rc<Shared>, svc: Rc<Service>, listener: TcpListener) {
    let mut stop = svc.stop.subscribe();
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("service {}: accept failed: {e}", svc.spec.name);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let _ = stream.set_nodelay(true);
        tokio::task::spawn_local({
            let shared = shared.clone();
            let svc = svc.clone();
            async move { to_container(&shared, &svc, stream).await }
        });
    }
}

/// Carries `client` to the container, from the znet's router namespace.
async fn to_container<C: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    svc: &Service,
    client: C,
) {
    if svc.stats.open.get() >= svc.max() {
        svc.failed.set(svc.failed.get() + 1);
        return;
    }
    let Some(ip) = target(shared, &svc.spec) else {
        tracing::warn!(name = %svc.spec.name, "{} is not attached to znet {} now", svc.spec.netns, svc.spec.znet);
        svc.failed.set(svc.failed.get() + 1);
        return;
    };
    let _open = Open::new(&svc.stats);
    let ns = router_ns_of(&svc.spec.znet, &shared.key);
    let to = SocketAddr::new(ip.into(), svc.spec.port);
    let local = match connect_in(&ns, to).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(name = %svc.spec.name, "cannot reach the service at {to}: {e}");
            svc.failed.set(svc.failed.get() + 1);
            return;
        }
    };
    let meter = Rc::new(Meter::new(
        svc.stats.bytes_in.clone(),
        svc.stats.bytes_out.clone(),
    ));
    splice(client, local, svc.idle(), meter).await;
}

fn info(shared: &Shared, s: &Service) -> ServiceInfo {
    ServiceInfo {
        name: s.spec.name.clone(),
        kind: s.kind.name().into(),
        znet: s.spec.znet.clone(),
        netns: s.spec.netns.clone(),
        port: s.spec.port,
        target: target(shared, &s.spec).map(|a| a.to_string()),
        service_address: s.address.to_string(),
        max_connections: s.max() as u32,
        idle_timeout: s.idle().as_secs(),
        gateways: s
            .gateways
            .iter()
            .map(|g| ServiceGateway {
                key: if g.port == DEFAULT_MESH_PORT {
                    super::hub::hex(&g.key)
                } else {
                    format!("{}@{}", super::hub::hex(&g.key), g.port)
                },
                state: g.state.get().into(),
                error: g.error.borrow().clone(),
                since: g.since.get().elapsed().as_secs(),
            })
            .collect(),
        open: s.stats.open.get(),
        total: s.stats.total.get(),
        failed: s.failed.get(),
        bytes_in: s.stats.bytes_in.get(),
        bytes_out: s.stats.bytes_out.get(),
    }
}

/// `meshctl services`.
pub fn list(shared: &Shared) -> Vec<ServiceInfo> {
    shared
        .services
        .0
        .borrow()
        .iter()
        .map(|s| info(shared, s))
        .collect()
}
