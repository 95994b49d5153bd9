//! The gateway thread: publishing this node's container services through gateways, and (with
//! a `[gateway]` section) being a gateway. It runs beside the event loop on a thread and a
//! tokio runtime of its own, so that carrying public connections (copying bytes, TLS passed
//! through) never delays the loop's packets; it talks to the loop only through channels.
//!
//! ```text
//!  public client ─TCP─▶ public.rs: peek the name, find the publisher ─┐  (gateway node)
//!                                                                    │ an idle data
//!  publisher.rs: dials [gateway]:mesh_port over the overlay ◀────────┘ connection the
//!        │ (outbound only: a control connection per service and gateway,  publisher
//!        │  and a few idle data connections, each replaced once used)      dialed
//!        └─▶ local.rs: connects to the container from the znet's router namespace
//!  mesh users ─▶ [service address]:port on this node's TUN ─▶ the same local connection
//! ```
//!
//! * `hub.rs`: the gateway's publishers (hello, `publish` rule, names, data connections);
//! * `public.rs`: public listeners, limits, peeking, refusals;
//! * `publisher.rs`: the services this node publishes, their dialers and mesh listeners;
//! * `splice.rs`, `local.rs`, `store.rs`: moving bytes, the wall's local side, the files.
//!
//! The loop sends requests (`publish`, `unpublish`, `services`, `gateway status`,
//! `gateway release`), the policy in force and the znets' containers (a `watch` each); the
//! thread answers requests itself.

mod hub;
mod local;
mod public;
mod publisher;
mod splice;
mod store;

use super::Responder;
use crate::admin::{Reply, Request};
use crate::gateway::config::GatewayConfig;
use acl::Policy;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The containers of this node's znets: (znet, namespace as given) → IPv4 address. A
/// namespace given as `/run/netns/NAME` is also filed as `NAME`.
pub type Targets = HashMap<(String, String), Ipv4Addr>;

/// What the gateway thread needs to start.
pub struct Setup {
    /// `[gateway]`, if this node is one.
    pub gateway: Option<GatewayConfig>,
    /// State directory.
    pub state_dir: PathBuf,
    /// This node's key.
    pub key: [u8; 32],
    /// Its overlay address.
    pub address: Ipv6Addr,
    /// Its /64.
    pub subnet: Ipv6Addr,
    /// The overlay TUN device's name.
    pub tun: String,
    /// The policy in force.
    pub policy: Arc<Policy>,
}

/// The loop's handle on the gateway thread.
pub struct Gateway {
    requests: mpsc::Sender<(Request, Responder)>,
    policy: watch::Sender<Arc<Policy>>,
    targets: watch::Sender<Arc<Targets>>,
}

/// Requests waiting for the thread at most.
const QUEUE: usize = 64;

/// Everything the thread's tasks share (one thread: `Rc`, `RefCell`, no locks).
pub(crate) struct Shared {
    pub key: [u8; 32],
    pub address: Ipv6Addr,
    pub subnet: Ipv6Addr,
    pub tun: String,
    pub policy: watch::Receiver<Arc<Policy>>,
    pub targets: watch::Receiver<Arc<Targets>>,
    pub store: store::Store,
    pub hub: RefCell<Option<hub::Hub>>,
    pub services: publisher::Services,
}

impl Gateway {
    /// Starts the thread; with `[gateway]`, binds its listeners first (an address in use stops
    /// meshd with the reason).
    pub fn start(setup: Setup) -> anyhow::Result<Gateway> {
        let (requests, mut rx) = mpsc::channel::<(Request, Responder)>(QUEUE);
        let (policy, policy_rx) = watch::channel(setup.policy.clone());
        let (targets, targets_rx) = watch::channel(Arc::new(Targets::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        std::thread::Builder::new()
            .name("meshd-gateway".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let tasks = tokio::task::LocalSet::new();
                tasks.block_on(&rt, async move {
                    let shared = Rc::new(Shared {
                        key: setup.key,
                        address: setup.address,
                        subnet: setup.subnet,
                        tun: setup.tun,
                        policy: policy_rx,
                        targets: targets_rx,
                        store: store::Store::new(&setup.state_dir),
                        hub: RefCell::new(None),
                        services: publisher::Services::default(),
                    });
                    if let Some(cfg) = setup.gateway
                        && let Err(e) = hub::start(&shared, cfg).await
                    {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    publisher::restore(&shared).await;
                    while let Some((req, reply)) = rx.recv().await {
                        let shared = shared.clone();
                        tokio::task::spawn_local(async move {
                            reply(answer(&shared, req).await);
                        });
                    }
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the gateway thread ended before it started"))??;
        Ok(Gateway {
            requests,
            policy,
            targets,
        })
    }

    /// Hands a request to the thread (answered from there).
    pub fn request(&self, req: Request, reply: Responder) {
        if let Err(e) = self.requests.try_send((req, reply)) {
            let (_, reply) = match e {
                mpsc::error::TrySendError::Full(x) | mpsc::error::TrySendError::Closed(x) => x,
            };
            reply(Reply::error(
                api::Error::unavailable("the gateway thread is busy or gone; try again")
                    .with_hint("meshd's log says why"),
            ));
        }
    }

    /// The policy now in force.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        self.policy.send_replace(policy);
    }

    /// The znets' containers now.
    pub fn set_targets(&self, targets: Targets) {
        self.targets.send_replace(Arc::new(targets));
    }
}

async fn answer(shared: &Rc<Shared>, req: Request) -> Reply {
    let r = match req {
        Request::Publish(p) => publisher::publish(shared, p).await,
        Request::Unpublish { name, kind } => publisher::unpublish(shared, name, kind).await,
        Request::Services => return Reply::ok(publisher::list(shared)),
        Request::GatewayStatus => return Reply::ok(hub::status(shared)),
        Request::GatewayRelease { name } => hub::release(shared, &name).await,
        _ => Err(api::Error::internal("not a gateway request")),
    };
    match r {
        Ok(v) => Reply::ok(v),
        Err(e) => Reply::error(e),
    }
}
