//! znets on this host: for each, a router network namespace `zn-NAME` holding the znet's TUN
//! device (`zt0`) and one veth pair per attached container; containers get an address from this
//! node's subnet and a route for the znet's range through the router. The host has no
//! interface into a router namespace (but a znet with egress's uplink, which lets in only
//! replies: [`egress`]), and the TUN carries only what the znet's sessions delivered: nothing
//! from outside the znet reaches its containers.
//!
//! ```text
//!  container netns ── zn0 ═veth═ zvXXXXXXXX ── router netns zn-NAME ── zt0 (TUN, meshd)
//!  10.50.1.2/32           gw 10.50.1.1/32       routes: 10.50.1.2/32 dev zv…,
//!  10.50.0.0/16 via .1                                  other members' /24 dev zt0
//! ```
//!
//! This module is the event loop's side: the state in force ([`Znets`]), `znet list`/`show`
//! answered from it at once, and the changes (create, join, leave, attach, detach) handed to
//! the worker thread one at a time, in order ([`changes`], [`worker`], [`jobs`]). When the
//! worker is done the loop applies what touches the `Node` (`znet_up`, `znet_down`, the TUN
//! table) and answers. The worker talks netlink ([`netlink`]), enters namespaces on dedicated
//! threads ([`netns`]) and writes the records ([`records`]): no process is run, nothing slow
//! happens on the loop.
//!
//! ```text
//!  admin request ─▶ answer ─▶ Changes (one in flight, ≤ 64 waiting) ─▶ worker thread
//!                                                                       │ jobs: check, plumb,
//!  reply ◀─ Znets::finished (Node, Devices, state) ◀── Done (channel) ◀─┘ record
//! ```
//!
//! State (`<state_dir>/znets/NAME.toml`, `NAME.attach.json`) is written before a change is
//! reported done, and everything is built again from it at start ([`Znets::restore`], before
//! the loop runs): stale router namespaces (a crash) are deleted first, so nothing
//! half-configured survives; containers keep their addresses. Every change that fails half-way
//! is rolled back.

mod changes;
mod devices;
mod egress;
mod jobs;
pub(crate) mod netlink;
pub(crate) mod netns;
mod nft;
pub(crate) mod nsref;
mod plumbing;
mod records;
mod restore;
mod worker;

pub use devices::Devices;
pub use plumbing::ZNET_MTU;
pub use worker::Done;

use super::Responder;
use crate::admin::{Reply, Request, ZnetInfo, ZnetMemberInfo};
use crate::identity::{Identity, PublicKey};
use crate::node::Node;
use changes::{Changes, Submitted};
use jobs::{Change, Context, Outcome, State, Up};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tun_rs::AsyncDevice;
use worker::Worker;

/// A change waiting or in flight, and who to answer (nobody for the daemon's own clean-ups).
struct Pending {
    change: Change,
    reply: Option<Responder>,
}

/// The znets of this host, as the event loop holds them.
pub struct Znets {
    ctx: Context,
    up: State,
    /// TUN devices for the data path.
    pub devices: Devices,
    worker: Option<Worker>,
    changes: Changes<Pending>,
    /// Who to answer when the change in flight is done.
    in_flight: Option<Option<Responder>>,
}

impl Znets {
    /// The znets recorded in `state_dir`, not yet brought up (see [`Znets::restore`]);
    /// `exits`: the znets this node may be the exit of (`[znet] exit`).
    pub fn new(state_dir: &Path, me: &Identity, exits: Vec<String>) -> Znets {
        Znets {
            ctx: Context {
                records: records::Records::new(state_dir),
                me: me.public_key(),
                exits,
            },
            up: State::new(),
            devices: Devices::default(),
            worker: None,
            changes: Changes::default(),
            in_flight: None,
        }
    }

    /// Starts the worker thread that makes the changes; the loop selects on the receiver and
    /// hands each [`Done`] to [`Znets::finished`].
    pub fn start(&mut self) -> anyhow::Result<mpsc::Receiver<Done>> {
        let (w, rx) = Worker::start(self.ctx.clone())
            .map_err(|e| anyhow::anyhow!("cannot start the znet worker thread: {e}"))?;
        self.worker = Some(w);
        Ok(rx)
    }

    /// Queues a change behind those in flight (or starts it).
    fn submit(&mut self, change: Change, reply: Option<Responder>) {
        match self.changes.submit(Pending { change, reply }) {
            Submitted::Start(p) => self.start_or_refuse(p),
            Submitted::Queued { ahead } => {
                tracing::debug!(ahead, "znet change queued behind others");
            }
            Submitted::Full(p) => {
                if let Some(reply) = p.reply {
                    reply(to_reply(Err(anyhow::Error::new(
                        crate::admin::Error::unavailable(format!(
                            "meshd is busy with {} znet changes",
                            changes::MAX_WAITING
                        ))
                        .with_hint("try again shortly"),
                    ))));
                }
            }
        }
    }

    /// Hands the change that is now first to the worker; if that fails, answers it and goes on
    /// with the next.
    fn start_or_refuse(&mut self, mut p: Pending) {
        loop {
            let sent = match &self.worker {
                Some(w) => w.send(p.change, self.up.clone()),
                None => Err(anyhow::anyhow!(
                    "internal error: the znet worker is not started"
                )),
            };
            match sent {
                Ok(()) => {
                    self.in_flight = Some(p.reply);
                    return;
                }
                Err(e) => {
                    if let Some(reply) = p.reply {
                        reply(to_reply(Err(e)));
                    }
                    match self.changes.done() {
                        Some(next) => p = next,
                        None => return,
                    }
                }
            }
        }
    }

    /// Every container attached here, for the gateway thread: (znet, namespace) → IPv4
    /// address; a namespace given as `/run/netns/NAME` is filed under `NAME` too.
    pub fn targets(&self) -> super::gateway::Targets {
        let mut t = super::gateway::Targets::new();
        for (name, up) in &self.up {
            for a in &up.attachments {
                let Ok(ip) = a.ipv4.parse::<std::net::Ipv4Addr>() else {
                    continue;
                };
                t.insert((name.clone(), a.netns.clone()), ip);
                for prefix in ["/run/netns/", "/var/run/netns/"] {
                    if let Some(short) = a.netns.strip_prefix(prefix) {
                        t.insert((name.clone(), short.to_string()), ip);
                    }
                }
            }
        }
        t
    }

    /// The worker finished the change in flight: applies it, answers, starts the next.
    pub fn finished(&mut self, done: Done, node: &mut Node, identity: &Identity) {
        let reply = self.in_flight.take().flatten();
        let r = done.0.and_then(|o| self.apply(o, node, identity));
        match reply {
            Some(reply) => reply(to_reply(r)),
            None => {
                if let Err(e) = r {
                    tracing::warn!("znet clean-up: {e:#}");
                }
            }
        }
        if let Some(next) = self.changes.done() {
            self.start_or_refuse(next);
        }
    }

    /// Stops reading znet `id`'s TUN device and has the worker close it, before any change
    /// that is waiting (closing one takes the kernel tens of milliseconds).
    pub fn close_device(&mut self, id: u64) {
        if let Some(device) = self.devices.remove(id) {
            let p = Pending {
                change: Change::Close {
                    device: jobs::Closing(device),
                },
                reply: None,
            };
            if self.changes.busy() {
                self.changes.first(p);
            } else {
                self.submit(p.change, None);
            }
        }
    }

    /// Puts a change the worker made in force on the node and in the loop's tables.
    fn apply(
        &mut self,
        o: Outcome,
        node: &mut Node,
        identity: &Identity,
    ) -> anyhow::Result<serde_json::Value> {
        match o {
            Outcome::New {
                manifest,
                device: (sync, offload),
                created,
                uplink,
            } => {
                let name = manifest.name.clone();
                let r = AsyncDevice::new(sync)
                    .map_err(|e| anyhow::anyhow!("cannot make the znet TUN asynchronous: {e}"))
                    .and_then(|d| {
                        node.znet_up(identity, manifest.clone(), Instant::now())
                            .map_err(anyhow::Error::msg)?;
                        Ok(d)
                    });
                let dev = match r {
                    Ok(d) => d,
                    Err(e) => {
                        // Undone before anything else runs.
                        self.changes.first(Pending {
                            change: Change::Discard { name },
                            reply: None,
                        });
                        return Err(e.context("the znet was taken down again"));
                    }
                };
                self.devices.insert(manifest.id, Arc::new(dev), offload);
                let text = created.then(|| manifest.to_toml());
                self.up.insert(
                    name.clone(),
                    Up {
                        manifest,
                        attachments: Vec::new(),
                        uplink,
                    },
                );
                let info = self.info(node, &name)?;
                Ok(match text {
                    Some(m) => serde_json::to_value(crate::admin::ZnetCreated {
                        manifest: m,
                        znet: info,
                    })?,
                    None => serde_json::to_value(info)?,
                })
            }
            Outcome::Updated { manifest, uplink } => {
                let name = manifest.name.clone();
                node.znet_up(identity, manifest.clone(), Instant::now())
                    .map_err(anyhow::Error::msg)?;
                if let Some(up) = self.up.get_mut(&name) {
                    up.manifest = manifest;
                    up.uplink = uplink;
                }
                Ok(serde_json::to_value(self.info(node, &name)?)?)
            }
            Outcome::Left { name } => {
                if let Some(up) = self.up.remove(&name) {
                    self.close_device(up.manifest.id);
                    node.znet_down(up.manifest.id);
                }
                Ok(serde_json::to_value(crate::admin::ZnetLeft { left: name })?)
            }
            Outcome::Attached(a) => {
                if let Some(up) = self.up.get_mut(&a.znet) {
                    up.attachments.push(a.clone());
                }
                Ok(serde_json::to_value(a)?)
            }
            Outcome::Detached {
                attachment,
                recorded,
            } => {
                if let Some(up) = self.up.get_mut(&attachment.znet) {
                    up.attachments.retain(|x| x.netns != attachment.netns);
                }
                recorded.map_err(anyhow::Error::msg)?;
                Ok(serde_json::to_value(attachment)?)
            }
            Outcome::Discarded => Ok(serde_json::Value::Null),
        }
    }

    /// For `znet show`.
    pub fn info(&self, node: &Node, name: &str) -> anyhow::Result<ZnetInfo> {
        let Some(up) = self.up.get(name) else {
            return Err(jobs::no_znet(name));
        };
        let m = &up.manifest;
        let counters = node
            .znets
            .get(&m.id)
            .map(|z| crate::admin::znet_counters(&z.counters))
            .unwrap_or_default();
        let me: PublicKey = self.ctx.me;
        Ok(ZnetInfo {
            name: m.name.clone(),
            id: format!("{:016x}", m.id),
            ipv4: format!("{}/16", m.ipv4),
            ipv6: m.ipv6.map(|a| format!("{a}/64")),
            router_netns: self.ctx.router_ns(name),
            members: m
                .members
                .iter()
                .map(|x| ZnetMemberInfo {
                    public_key: x.key.to_string(),
                    subnet_v4: format!("{}/24", x.v4),
                    subnet_v6: x.v6.map(|a| format!("{a}/80")),
                    this_node: x.key == me,
                })
                .collect(),
            attachments: up.attachments.clone(),
            counters,
            egress: m.egress.map(|e| e.to_string()),
            exit: node.znets.get(&m.id).is_some_and(|z| z.exit),
        })
    }

    /// The names in `[znet] exit` that name no znet here (a typo, or not joined yet).
    pub fn unknown_exits(&self) -> Vec<String> {
        self.ctx
            .exits
            .iter()
            .filter(|n| !self.up.contains_key(*n))
            .cloned()
            .collect()
    }

    /// Every znet here.
    pub fn list(&self, node: &Node) -> Vec<ZnetInfo> {
        self.up
            .keys()
            .filter_map(|n| self.info(node, n).ok())
            .collect()
    }
}

/// The reply to a znet request. The error's kind: the one it was made with (not found,
/// conflict, unavailable); `internal` if a system call failed on the way (netlink, a
/// namespace, a file); otherwise the request was wrong (`bad_request`).
fn to_reply(r: anyhow::Result<serde_json::Value>) -> Reply {
    let e = match r {
        Ok(v) => return Reply::ok(v),
        Err(e) => e,
    };
    let message = format!("{e:#}");
    if let Some(typed) = e
        .chain()
        .find_map(|c| c.downcast_ref::<crate::admin::Error>())
    {
        let mut out = crate::admin::Error::new(typed.kind, message);
        out.hint = typed.hint.clone();
        return Reply::error(out);
    }
    let system = e.chain().any(|c| {
        c.downcast_ref::<plumbing::PlumbError>().is_some()
            || c.downcast_ref::<std::io::Error>().is_some()
    });
    Reply::error(if system {
        crate::admin::Error::internal(message)
    } else {
        crate::admin::Error::bad_request(message)
    })
}

/// Answers the znet requests: `list` and `show` at once from the loop's state; the changes
/// once the worker has made them (in order, see [`Znets::finished`]).
pub fn answer(req: Request, node: &Node, znets: &mut Znets, reply: Responder) {
    let r: anyhow::Result<serde_json::Value> = match req {
        Request::ZnetList => serde_json::to_value(znets.list(node)).map_err(Into::into),
        Request::ZnetShow { name } => znets
            .info(node, &name)
            .and_then(|i| serde_json::to_value(i).map_err(Into::into)),
        req => match Change::of(req) {
            Some(change) => return znets.submit(change, Some(reply)),
            None => Err(anyhow::anyhow!(
                "internal error: request routed to the wrong handler"
            )),
        },
    };
    reply(to_reply(r));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::ErrorKind;

    fn kind_of(e: anyhow::Error) -> (ErrorKind, String, Option<String>) {
        let r = to_reply(Err(e));
        let e = r.error.expect("an error");
        (e.kind, e.message, e.hint)
    }

    #[test]
    fn answers_carry_the_kind_of_their_error() {
        let (k, m, h) = kind_of(jobs::no_znet("shop").context("znet attach"));
        assert_eq!(k, ErrorKind::NotFound);
        assert!(m.contains("znet attach") && m.contains("\"shop\""), "{m}");
        assert!(h.is_some_and(|h| h.contains("znet list")));
        let (k, ..) = kind_of(jobs::conflict(
            "a znet named \"shop\" is here already".into(),
        ));
        assert_eq!(k, ErrorKind::Conflict);
        let io = std::io::Error::other("netlink said no");
        let (k, ..) = kind_of(anyhow::Error::new(io).context("cannot add the veth"));
        assert_eq!(k, ErrorKind::Internal);
        let (k, ..) = kind_of(anyhow::anyhow!("manifest: name must be 1 to 12 characters"));
        assert_eq!(k, ErrorKind::BadRequest);
    }
}
