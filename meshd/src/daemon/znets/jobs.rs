//! What each znet change does, on the worker thread: checked against a snapshot of the state
//! the event loop holds (every earlier change applied: see [`super::changes`]), then plumbed
//! ([`super::plumbing`]) and recorded ([`super::records`]). The [`Outcome`] goes back to the
//! loop, which applies it to the `Node` and its tables and answers the request.
//!
//! Nothing here touches the `Node`: a change the loop cannot apply is undone by a
//! [`Change::Discard`] job.

use super::egress::{self, Role};
use super::nsref::{NsRef, check_ifname, router_ns_of};
use super::plumbing::{self, Plan};
use super::records::Records;
use crate::admin::{Attachment, Request};
use crate::identity::PublicKey;
use crate::znet::Manifest;
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A znet that is up here: its manifest and the containers attached on this node.
#[derive(Debug, Clone)]
pub struct Up {
    /// The manifest in force.
    pub manifest: Manifest,
    /// The containers attached here.
    pub attachments: Vec<Attachment>,
    /// The /30 of its uplink, if it has one (see [`egress`]).
    pub uplink: Option<u8>,
}

/// A znet's TUN device on its way to be closed on the worker.
#[derive(Clone)]
pub struct Closing(pub std::sync::Arc<tun_rs::AsyncDevice>);

impl std::fmt::Debug for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closing(TUN device)")
    }
}

/// The znets that are up, by name.
pub type State = BTreeMap<String, Up>;

/// A change to the znets of this host.
#[derive(Debug, Clone)]
pub enum Change {
    /// `znet create`.
    Create {
        name: String,
        ipv4: String,
        ipv6: Option<String>,
    },
    /// `znet join` (a new znet, or a new version of one's manifest).
    Join { manifest: String },
    /// `znet leave`.
    Leave { name: String },
    /// `znet attach`.
    Attach {
        name: String,
        netns: String,
        ip: Option<String>,
        ifname: Option<String>,
        container_id: Option<String>,
    },
    /// `znet detach`.
    Detach {
        name: String,
        netns: Option<String>,
        container_id: Option<String>,
    },
    /// Undoes a new znet the loop could not put in force (router namespace and records).
    Discard { name: String },
    /// Closes the TUN device of a znet the loop no longer reads (`znet leave`, or the device
    /// failed). Closing a TUN unregisters its interface in the kernel, which waits for RCU
    /// grace periods: tens of milliseconds that must not be spent on the loop.
    Close { device: Closing },
}

impl Change {
    /// The change a request asks for; `None` for the requests that change nothing.
    pub fn of(req: Request) -> Option<Change> {
        Some(match req {
            Request::ZnetCreate { name, ipv4, ipv6 } => Change::Create { name, ipv4, ipv6 },
            Request::ZnetJoin { manifest } => Change::Join { manifest },
            Request::ZnetLeave { name } => Change::Leave { name },
            Request::ZnetAttach {
                name,
                netns,
                ip,
                ifname,
                container_id,
            } => Change::Attach {
                name,
                netns,
                ip,
                ifname,
                container_id,
            },
            Request::ZnetDetach {
                name,
                netns,
                container_id,
            } => Change::Detach {
                name,
                netns,
                container_id,
            },
            _ => return None,
        })
    }
}

/// What the worker needs besides the change: where records go and who this node is.
#[derive(Debug, Clone)]
pub struct Context {
    /// The records.
    pub records: Records,
    /// This node's key.
    pub me: PublicKey,
    /// The znets this node may be the exit of (`[znet] exit`).
    pub exits: Vec<String>,
}

impl Context {
    /// The router namespace of znet `name`.
    pub fn router_ns(&self, name: &str) -> String {
        router_ns_of(name, &self.me.0)
    }

    /// This node's egress role in znet `m`.
    pub fn role(&self, m: &Manifest) -> Role {
        egress::role(m, &self.me, &self.exits)
    }
}

/// A change done, for the loop to apply.
pub enum Outcome {
    /// A new znet: router namespace, TUN and routes ready, recorded.
    New {
        manifest: Manifest,
        device: (tun_rs::SyncDevice, bool),
        /// Made by `znet create` (the reply shows the manifest).
        created: bool,
        /// The /30 of its uplink, if it has one.
        uplink: Option<u8>,
    },
    /// A new manifest of a znet that is up: routes (and egress) set, recorded.
    Updated {
        manifest: Manifest,
        uplink: Option<u8>,
    },
    /// Left: namespace, veths and records gone.
    Left { name: String },
    /// A container attached and recorded.
    Attached(Attachment),
    /// A container detached; `recorded` says whether the record could be written.
    Detached {
        attachment: Attachment,
        recorded: Result<(), String>,
    },
    /// A discarded znet is gone.
    Discarded,
}

/// An error of kind `not_found` (what the request names is not here).
pub fn not_found(message: String) -> anyhow::Error {
    anyhow::Error::new(api::Error::not_found(message))
}

/// An error of kind `conflict` (the request clashes with what is here).
pub fn conflict(message: String) -> anyhow::Error {
    anyhow::Error::new(api::Error::conflict(message))
}

/// There is no znet `name` here.
pub fn no_znet(name: &str) -> anyhow::Error {
    anyhow::Error::new(
        api::Error::not_found(format!("there is no znet {name:?} here"))
            .with_hint("meshctl znet list shows them"),
    )
}

/// Does one change.
pub fn run(ctx: &Context, state: &State, change: Change) -> anyhow::Result<Outcome> {
    match change {
        Change::Create { name, ipv4, ipv6 } => {
            let text = new_manifest(&name, &ipv4, ipv6.as_deref(), &ctx.me)?;
            if state.contains_key(&name) {
                return Err(conflict(format!("a znet named {name:?} is here already")));
            }
            join(ctx, state, &text, true)
        }
        Change::Join { manifest } => join(ctx, state, &manifest, false),
        Change::Leave { name } => {
            let Some(up) = state.get(&name) else {
                return Err(no_znet(&name));
            };
            let rns = ctx.router_ns(&name);
            // Deleting the router side of each pair removes the container side too, wherever
            // it is now: nothing runs inside a namespace that may since belong to someone else.
            for a in &up.attachments {
                plumbing::remove_veth(&rns, &a.netns);
            }
            plumbing::remove_router(&rns);
            ctx.records.remove(&name);
            Ok(Outcome::Left { name })
        }
        Change::Attach {
            name,
            netns,
            ip,
            ifname,
            container_id,
        } => {
            let ifname = ifname.as_deref().unwrap_or("zn0");
            check_ifname(ifname)?;
            let Some(up) = state.get(&name) else {
                return Err(no_znet(&name));
            };
            let a = attach(ctx, up, &netns, ip.as_deref(), ifname, container_id)?;
            let mut all = up.attachments.clone();
            all.push(a.clone());
            if let Err(e) = ctx.records.save_attachments(&name, &all) {
                // Not recorded: not done.
                plumbing::remove_veth(&ctx.router_ns(&name), &netns);
                return Err(e.context("the attachment was not recorded, so it was undone"));
            }
            Ok(Outcome::Attached(a))
        }
        Change::Detach {
            name,
            netns,
            container_id,
        } => {
            let Some(up) = state.get(&name) else {
                return Err(no_znet(&name));
            };
            let Some(a) = up
                .attachments
                .iter()
                .find(|a| {
                    netns.as_deref().is_some_and(|n| a.netns == n)
                        || container_id
                            .as_deref()
                            .is_some_and(|c| a.container_id.as_deref() == Some(c))
                })
                .cloned()
            else {
                return Err(not_found(format!(
                    "nothing of that is attached to znet {name:?}"
                )));
            };
            plumbing::remove_veth(&ctx.router_ns(&name), &a.netns);
            let rest: Vec<Attachment> = up
                .attachments
                .iter()
                .filter(|x| x.netns != a.netns)
                .cloned()
                .collect();
            let recorded = ctx
                .records
                .save_attachments(&name, &rest)
                .map_err(|e| format!("{e:#}"));
            Ok(Outcome::Detached {
                attachment: a,
                recorded,
            })
        }
        Change::Discard { name } => {
            plumbing::remove_router(&ctx.router_ns(&name));
            ctx.records.remove(&name);
            Ok(Outcome::Discarded)
        }
        Change::Close { device } => {
            close(device.0);
            Ok(Outcome::Discarded)
        }
    }
}

/// Closes a TUN device once nobody else holds it (the loop gives up its own handles within a
/// turn; after a second it is closed anyway, by whoever holds it last).
fn close(mut device: std::sync::Arc<tun_rs::AsyncDevice>) {
    for _ in 0..100 {
        match std::sync::Arc::try_unwrap(device) {
            Ok(d) => {
                drop(d);
                return;
            }
            Err(shared) => device = shared,
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tracing::debug!("a znet TUN device is still in use elsewhere; closed by its last user");
}

/// The manifest text of a new znet with this node its only member.
fn new_manifest(
    name: &str,
    ipv4: &str,
    ipv6: Option<&str>,
    me: &PublicKey,
) -> anyhow::Result<String> {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 8];
    getrandom::fill(&mut secret)
        .and_then(|_| getrandom::fill(&mut id))
        .map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    let mut text = format!(
        "name = {name:?}\nid = \"{:016x}\"\nsecret = \"{}\"\nipv4 = {ipv4:?}\n",
        u64::from_be_bytes(id),
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    if let Some(v6) = ipv6 {
        text.push_str(&format!("ipv6 = {v6:?}\n"));
    }
    text.push_str(&format!("\n[[members]]\nkey = \"{me}\"\n"));
    Ok(text)
}

/// Joins a znet, or updates its manifest (members added or removed).
fn join(ctx: &Context, state: &State, text: &str, created: bool) -> anyhow::Result<Outcome> {
    let manifest = Manifest::parse(text).map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
    let name = manifest.name.clone();
    if let Some((other, _)) = state
        .iter()
        .find(|(n, u)| **n != name && u.manifest.id == manifest.id)
    {
        bail!(
            "znet id {:016x} is already znet {other:?} here",
            manifest.id
        );
    }
    let me = ctx.me;
    if manifest.member(&me).is_none() {
        bail!(
            "this node ({me}) is not a member of znet {name}; add it to the manifest's [[members]]"
        );
    }
    let rns = ctx.router_ns(&name);
    match state.get(&name) {
        Some(up) => {
            let old = &up.manifest;
            if old.id != manifest.id || old.secret != manifest.secret {
                bail!(
                    "a different znet named {name:?} is here already (another id or secret); \
                     leave it first"
                );
            }
            if old.ipv4 != manifest.ipv4 || old.ipv6 != manifest.ipv6 {
                bail!("the ranges of znet {name:?} cannot change; create a new znet");
            }
            if old.member(&me).map(|m| m.v4) != manifest.member(&me).map(|m| m.v4) {
                bail!(
                    "this node's subnet in znet {name:?} would change (or it would leave); \
                     use `meshctl znet leave {name}` instead"
                );
            }
            if old.egress.is_some() != manifest.egress.is_some() && !up.attachments.is_empty() {
                bail!(
                    "egress of znet {name:?} cannot be turned {} while containers are attached \
                     here (their default route would have to change): detach them (or `meshctl \
                     znet leave {name}`), join, and attach them again",
                    if manifest.egress.is_some() {
                        "on"
                    } else {
                        "off"
                    }
                );
            }
            let (was, will) = (ctx.role(old), ctx.role(&manifest));
            plumbing::set_routes(&rns, &manifest, &me)?;
            let uplink = match egress::set(state, &rns, &manifest, up.uplink, was, will) {
                Ok(u) => u,
                Err(e) => {
                    let _ = plumbing::set_routes(&rns, old, &me);
                    let _ = egress::set(state, &rns, old, up.uplink, will, was);
                    return Err(e.context("the new manifest is not in force"));
                }
            };
            if let Err(e) = ctx.records.save_manifest(&manifest) {
                let _ = plumbing::set_routes(&rns, old, &me);
                let _ = egress::set(state, &rns, old, up.uplink.or(uplink), will, was);
                return Err(e.context("the new manifest was not recorded, so it is not in force"));
            }
            Ok(Outcome::Updated { manifest, uplink })
        }
        None => {
            let device = plumbing::router_up(&rns)?;
            let mut uplink = None;
            let r = plumbing::set_routes(&rns, &manifest, &me)
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    let role = ctx.role(&manifest);
                    uplink = egress::set(state, &rns, &manifest, None, Role::None, role)?;
                    Ok(())
                })
                .and_then(|()| ctx.records.save_manifest(&manifest))
                .and_then(|()| ctx.records.save_attachments(&name, &[]));
            if let Err(e) = r {
                drop(device);
                plumbing::remove_router(&rns);
                ctx.records.remove(&name);
                return Err(e.context(format!("znet {name} was not set up; rolled back")));
            }
            Ok(Outcome::New {
                manifest,
                device,
                created,
                uplink,
            })
        }
    }
}

/// Checks and plumbs one attachment (not recorded): the namespace is a container's and not
/// attached yet, the address is free and in this node's subnet.
pub fn attach(
    ctx: &Context,
    up: &Up,
    netns: &str,
    want_ip: Option<&str>,
    ifname: &str,
    container_id: Option<String>,
) -> anyhow::Result<Attachment> {
    let name = &up.manifest.name;
    let ns = NsRef::parse(netns)?;
    if up.attachments.iter().any(|a| a.netns == netns) {
        return Err(conflict(format!(
            "namespace {netns:?} is already attached to znet {name:?}"
        )));
    }
    let me = up
        .manifest
        .member(&ctx.me)
        .ok_or_else(|| anyhow::anyhow!("this node is not a member of znet {name:?}"))?;
    let used: Vec<Ipv4Addr> = up
        .attachments
        .iter()
        .filter_map(|a| a.ipv4.parse().ok())
        .collect();
    let addr = match want_ip {
        Some(s) => {
            let a: Ipv4Addr = s
                .split('/')
                .next()
                .unwrap_or(s)
                .parse()
                .map_err(|_| anyhow::anyhow!("{s:?} is not an IPv4 address"))?;
            let host = a.octets()[3];
            if !me.holds(a.into()) || host < 2 || host == 255 {
                bail!(
                    "{a} is outside this node's subnet {}/24 of znet {name:?} (use .2 to .254)",
                    me.v4
                );
            }
            if used.contains(&a) {
                return Err(conflict(format!(
                    "{a} is already used by another container of znet {name:?}"
                )));
            }
            a
        }
        None => (2u8..=254)
            .map(|h| Ipv4Addr::from(u32::from(me.v4) | u32::from(h)))
            .find(|a| !used.contains(a))
            .ok_or_else(|| anyhow::anyhow!("no free address left in {}/24", me.v4))?,
    };
    let rns = ctx.router_ns(name);
    let plan = Plan {
        manifest: &up.manifest,
        me,
        router_ns: &rns,
        netns,
        ifname,
        addr,
        default_route: up.manifest.egress.is_some(),
    };
    plumbing::attach(&plan, &ns, container_id)
        .with_context(|| format!("attaching {netns} to znet {name} failed; rolled back"))
}
