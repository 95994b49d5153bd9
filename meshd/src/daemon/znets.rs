//! znets on this host: for each, a router network namespace `zn-NAME` holding the znet's TUN
//! device (`zt0`) and one veth pair per attached container; containers get an address from this
//! node's subnet and a route for the znet's range through the router. The host has no
//! interface into a router namespace, and the TUN carries only what the znet's sessions
//! delivered: nothing from outside the znet reaches its containers.
//!
//! ```text
//!  container netns ── zn0 ═veth═ zvXXXXXXXX ── router netns zn-NAME ── zt0 (TUN, meshd)
//!  10.50.1.2/32           gw 10.50.1.1/32       routes: 10.50.1.2/32 dev zv…,
//!  10.50.0.0/16 via .1                                  other members' /24 dev zt0
//! ```
//!
//! State (`<state_dir>/znets/NAME.toml`, `NAME.attach.json`) is written before a change is
//! reported done, and everything is built again from it at start: stale router namespaces
//! (a crash) are deleted first, so nothing half-configured survives; containers keep their
//! addresses. Every change that fails half-way is rolled back.
//!
//! Namespaces and links are set up with `ip` (iproute2) commands.

use crate::admin::{Attachment, ZnetInfo, ZnetMemberInfo};
use crate::identity::Identity;
use crate::node::Node;
use crate::znet::Manifest;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;
use tun_rs::AsyncDevice;

/// MTU of a znet's TUN and veths: the overlay's usual room (`tun.mtu` 1420) less the znet
/// header. A path with less room (a deep tree) answers with ICMP "packet too big", and the
/// containers' TCP adapts.
pub const ZNET_MTU: u16 = 1400;

/// The TUN devices of the znets, by id, for the data path (and whether each has offload: then
/// every packet read or written starts with a virtio-net header).
#[derive(Default, Clone)]
pub struct Devices(HashMap<u64, (Arc<AsyncDevice>, bool)>);

impl Devices {
    /// Writes a packet to znet `id`'s TUN. `framed` starts with
    /// [`super::local::VIRTIO_NET_HDR_LEN`] zero bytes (room for the header), then the packet.
    pub async fn write_framed(&self, id: u64, framed: &[u8]) {
        let Some((d, offload)) = self.0.get(&id) else {
            return;
        };
        let p = if *offload {
            framed
        } else {
            framed
                .get(super::local::VIRTIO_NET_HDR_LEN..)
                .unwrap_or(&[])
        };
        if let Err(e) = d.send(p).await {
            tracing::debug!("znet TUN write: {e}");
        }
    }

    /// Writes framed packets to znet `id`'s TUN, coalescing them (GRO) when it has offload.
    pub async fn write_batch(
        &self,
        id: u64,
        gro: &mut super::local::GROTable,
        bufs: &mut [Vec<u8>],
    ) {
        let Some((d, offload)) = self.0.get(&id) else {
            return;
        };
        if *offload {
            if let Err(e) = super::local::LocalIo::send_multiple(
                &**d,
                gro,
                bufs,
                super::local::VIRTIO_NET_HDR_LEN,
            )
            .await
            {
                tracing::debug!("znet TUN write: {e}");
            }
            return;
        }
        for b in bufs.iter() {
            self.write_framed(id, b).await;
        }
    }

    /// Writes a packet (without header room) to znet `id`'s TUN.
    pub async fn write(&self, id: u64, packet: &[u8]) {
        let mut framed = vec![0u8; super::local::VIRTIO_NET_HDR_LEN];
        framed.extend_from_slice(packet);
        self.write_framed(id, &framed).await;
    }

    /// Waits until one of the devices may be readable; returns its id (polling starts after
    /// `last`, so a busy znet cannot starve the others). Never ready without devices.
    pub async fn readable(&self, last: u64) -> u64 {
        let mut ids: Vec<u64> = self.0.keys().copied().collect();
        ids.sort_unstable();
        let start = ids.iter().position(|i| *i > last).unwrap_or(0);
        std::future::poll_fn(|cx| {
            for k in 0..ids.len() {
                let id = ids[(start + k) % ids.len()];
                if let Some((d, _)) = self.0.get(&id)
                    && d.poll_readable(cx).is_ready()
                {
                    return std::task::Poll::Ready(id);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Stops reading znet `id`'s device (it failed).
    pub fn remove(&mut self, id: u64) {
        self.0.remove(&id);
    }

    /// The device of znet `id`.
    pub fn get(&self, id: u64) -> Option<Arc<AsyncDevice>> {
        self.0.get(&id).map(|(d, _)| d.clone())
    }
}

struct Up {
    manifest: Manifest,
    attachments: Vec<Attachment>,
}

/// The znets of this host.
pub struct Znets {
    dir: PathBuf,
    up: BTreeMap<String, Up>,
    /// TUN devices for the data path.
    pub devices: Devices,
    me: Option<[u8; 32]>,
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?} (is iproute2 installed?)"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").args(args))
}

/// `ip` inside namespace `ns` given by name or path.
fn ip_in(ns: &NsRef, args: &[&str]) -> anyhow::Result<String> {
    match ns {
        NsRef::Name(n) => run(Command::new("ip").arg("-n").arg(n).args(args)),
        NsRef::Path(p) => run(Command::new("nsenter")
            .arg(format!("--net={}", p.display()))
            .arg("ip")
            .args(args)),
    }
}

/// A container's namespace, as `ip` can name it.
#[derive(Debug, Clone)]
enum NsRef {
    Name(String),
    Path(PathBuf),
}

impl NsRef {
    fn parse(s: &str) -> anyhow::Result<NsRef> {
        // Names and paths go to `ip` as arguments: nothing that reads as an option.
        let ok = !s.is_empty()
            && !s.starts_with('-')
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./@:".contains(&b))
            && !s.split('/').any(|c| c == "..");
        if !ok {
            bail!("{s:?} is not a namespace name or path (letters, digits, - _ . / : @)");
        }
        if s.contains('/') && !s.starts_with('/') {
            bail!("namespace path {s:?} must be absolute");
        }
        let r = if s.contains('/') {
            let p = PathBuf::from(s);
            let parts: Vec<&str> = s.split('/').collect();
            match parts.as_slice() {
                // A namespace under /run/netns is known to `ip` by name.
                ["", "run" | "var", ..]
                    if p.parent().is_some_and(|d| {
                        d == Path::new("/run/netns") || d == Path::new("/var/run/netns")
                    }) =>
                {
                    NsRef::Name(
                        p.file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                }
                ["", "proc", pid, "ns", "net"] if pid.bytes().all(|b| b.is_ascii_digit()) => {
                    NsRef::Path(p)
                }
                _ => bail!(
                    "namespace path {s:?}: give /run/netns/NAME, /var/run/netns/NAME or \
                     /proc/PID/ns/net"
                ),
            }
        } else {
            NsRef::Name(s.to_string())
        };
        if let NsRef::Name(n) = &r
            && n.starts_with("zn-")
        {
            bail!("{s:?} is a znet's router namespace, not a container");
        }
        let exists = match &r {
            NsRef::Name(n) => Path::new("/run/netns").join(n).exists(),
            NsRef::Path(p) => p.exists(),
        };
        if !exists {
            bail!("there is no network namespace {s:?} (`ip netns list` shows the named ones)");
        }
        r.identity(s)?;
        Ok(r)
    }

    fn file(&self) -> PathBuf {
        match self {
            NsRef::Name(n) => Path::new("/run/netns").join(n),
            NsRef::Path(p) => p.clone(),
        }
    }

    /// The namespace's inode: checked to be a network namespace other than the host's (this
    /// daemon's, or init's), so that nobody attaches the host itself.
    fn identity(&self, shown: &str) -> anyhow::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.file())
            .with_context(|| format!("cannot read namespace {shown:?}"))?;
        let own =
            std::fs::metadata("/proc/self/ns/net").context("cannot read /proc/self/ns/net")?;
        if m.dev() != own.dev() {
            bail!("{shown:?} is not a network namespace");
        }
        let init = std::fs::metadata("/proc/1/ns/net").map(|m| m.ino()).ok();
        if m.ino() == own.ino() || Some(m.ino()) == init {
            bail!("{shown:?} is the host's own network namespace, not a container's");
        }
        Ok(m.ino())
    }

    /// What `ip link … netns X` takes: a name or a PID.
    fn for_link(&self) -> anyhow::Result<String> {
        match self {
            NsRef::Name(n) => Ok(n.clone()),
            NsRef::Path(p) => {
                let pid = p
                    .strip_prefix("/proc")
                    .ok()
                    .and_then(|r| r.components().next())
                    .and_then(|c| c.as_os_str().to_str())
                    .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
                    .map(str::to_string);
                pid.ok_or_else(|| {
                    anyhow::anyhow!(
                        "namespace path {} is neither /proc/PID/ns/net nor under /run/netns",
                        p.display()
                    )
                })
            }
        }
    }
}

/// The router namespace of znet `name` of the node with key `me`: the key's first bytes make
/// it unique even with several daemons on one host (tests, or a node per namespace).
fn router_ns_of(name: &str, me: &[u8; 32]) -> String {
    format!("zn-{name}-{:02x}{:02x}{:02x}", me[0], me[1], me[2])
}

/// The router-side interface for a container namespace: `zv` + 8 hex digits of a hash.
fn router_if(netns: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(netns.as_bytes());
    format!("zv{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all())?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes a file that holds a znet's secret: mode 0600, atomically.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all())?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

impl Znets {
    fn router_ns(&self, name: &str) -> String {
        router_ns_of(name, &self.me.unwrap_or([0; 32]))
    }

    /// The znets recorded in `state_dir`, not yet brought up (see [`Znets::restore`]).
    pub fn new(state_dir: &Path, me: &Identity) -> Znets {
        Znets {
            dir: state_dir.join("znets"),
            up: BTreeMap::new(),
            devices: Devices::default(),
            me: Some(me.public_key().0),
        }
    }

    /// Brings up every recorded znet and re-attaches its containers (after a restart or a
    /// crash). A znet that fails is reported and skipped; the others come up.
    pub fn restore(&mut self, node: &mut Node, identity: &Identity) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".toml").map(str::to_string)
            })
            .collect();
        names.sort();
        // Router namespaces of this node that no record names (a crash between creating one
        // and recording it): removed.
        let mine = self.router_ns("");
        let suffix = mine.trim_start_matches("zn-").to_string();
        if let Ok(rd) = std::fs::read_dir("/run/netns") {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(z) = n.strip_prefix("zn-").and_then(|r| r.strip_suffix(&suffix))
                    && !names.iter().any(|k| k == z)
                {
                    tracing::warn!(netns = %n, "removing a router namespace no znet records");
                    remove_router_ns(&n);
                }
            }
        }
        for name in names {
            let r = (|| -> anyhow::Result<()> {
                let text = std::fs::read_to_string(self.dir.join(format!("{name}.toml")))?;
                let manifest = Manifest::parse(&text).map_err(anyhow::Error::msg)?;
                let attach: Vec<Attachment> =
                    match std::fs::read_to_string(self.dir.join(format!("{name}.attach.json"))) {
                        Ok(t) => serde_json::from_str(&t)?,
                        Err(_) => Vec::new(),
                    };
                self.bring_up(node, identity, manifest)?;
                for a in attach {
                    let now_ino = NsRef::parse(&a.netns)
                        .and_then(|n| n.identity(&a.netns))
                        .ok();
                    if a.ns_inode.is_some() && now_ino != a.ns_inode {
                        tracing::warn!(znet = %name, netns = %a.netns, "container not re-attached: its namespace is gone (or the name now means another one)");
                        continue;
                    }
                    let r = self.attach_one(
                        &name,
                        &a.netns,
                        Some(&a.ipv4),
                        &a.ifname,
                        a.container_id.clone(),
                    );
                    if let Err(e) = r {
                        tracing::warn!(znet = %name, netns = %a.netns, "container not re-attached: {e:#}");
                    }
                }
                self.save_attachments(&name)?;
                Ok(())
            })();
            match r {
                Ok(()) => tracing::info!(znet = %name, "znet restored"),
                Err(e) => tracing::error!(znet = %name, "znet not restored: {e:#}"),
            }
        }
    }

    /// Creates (or rebuilds) the router namespace and TUN of `manifest` and puts it in force
    /// on the node. Rolled back on failure.
    fn bring_up(
        &mut self,
        node: &mut Node,
        identity: &Identity,
        manifest: Manifest,
    ) -> anyhow::Result<()> {
        let name = manifest.name.clone();
        let ns = self.router_ns(&name);
        if Path::new("/run/netns").join(&ns).exists() {
            // Left by a crash (or a daemon killed): start clean. The veths go first, at once
            // (deleting a namespace frees its links only later, which would make the
            // containers' old interfaces collide with the new ones).
            remove_router_ns(&ns);
        }
        ip(&["netns", "add", &ns])?;
        let r = (|| -> anyhow::Result<(Arc<AsyncDevice>, bool)> {
            let nsr = NsRef::Name(ns.clone());
            ip_in(&nsr, &["link", "set", "lo", "up"])?;
            // Forwarding between the TUN and the veths; and a container may only send from
            // its own address: strict reverse-path filtering on every veth (IPv4; the node
            // checks the subnet for both families).
            for setting in [
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.conf.all.rp_filter=1",
                "net.ipv4.conf.default.rp_filter=1",
            ] {
                run(Command::new("ip").args(["netns", "exec", &ns, "sysctl", "-qw", setting]))?;
            }
            let (dev, offload) = open_tun_in(&ns)?;
            Ok((Arc::new(dev), offload))
        })();
        let dev = match r {
            Ok(d) => d,
            Err(e) => {
                let _ = ip(&["netns", "del", &ns]);
                return Err(e);
            }
        };
        if let Err(e) = node.znet_up(identity, manifest.clone(), Instant::now()) {
            let _ = ip(&["netns", "del", &ns]);
            bail!(e);
        }
        let id = manifest.id;
        self.devices.0.insert(id, dev);
        self.up.insert(
            name.clone(),
            Up {
                manifest,
                attachments: Vec::new(),
            },
        );
        if let Err(e) = self.set_routes(&name, identity) {
            self.up.remove(&name);
            self.devices.0.remove(&id);
            node.znet_down(id);
            remove_router_ns(&ns);
            return Err(e);
        }
        Ok(())
    }

    /// Routes in the router namespace: each other member's subnets through the TUN.
    fn set_routes(&self, name: &str, identity: &Identity) -> anyhow::Result<()> {
        let Some(up) = self.up.get(name) else {
            return Ok(());
        };
        let ns = NsRef::Name(self.router_ns(name));
        let _ = ip_in(&ns, &["route", "flush", "dev", "zt0"]);
        let _ = ip_in(&ns, &["-6", "route", "flush", "dev", "zt0"]);
        for m in &up.manifest.members {
            if m.key == identity.public_key() {
                continue;
            }
            ip_in(
                &ns,
                &["route", "replace", &format!("{}/24", m.v4), "dev", "zt0"],
            )?;
            if let Some(v6) = m.v6 {
                ip_in(
                    &ns,
                    &["-6", "route", "replace", &format!("{v6}/80"), "dev", "zt0"],
                )?;
            }
        }
        Ok(())
    }

    fn save(&self, name: &str) -> anyhow::Result<()> {
        let Some(up) = self.up.get(name) else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        write_atomically(
            &self.dir.join(format!("{name}.toml")),
            &up.manifest.to_toml(),
        )?;
        self.save_attachments(name)
    }

    fn save_attachments(&self, name: &str) -> anyhow::Result<()> {
        let Some(up) = self.up.get(name) else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir)?;
        write_atomically(
            &self.dir.join(format!("{name}.attach.json")),
            &serde_json::to_string_pretty(&up.attachments)?,
        )
    }

    /// Joins a znet, or updates its manifest (members added or removed).
    pub fn join(
        &mut self,
        node: &mut Node,
        identity: &Identity,
        text: &str,
    ) -> anyhow::Result<ZnetInfo> {
        let manifest = Manifest::parse(text).map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
        let name = manifest.name.clone();
        if let Some((other, _)) = self
            .up
            .iter()
            .find(|(n, u)| **n != name && u.manifest.id == manifest.id)
        {
            bail!(
                "znet id {:016x} is already znet {other:?} here",
                manifest.id
            );
        }
        match self.up.get_mut(&name) {
            Some(up) => {
                if up.manifest.id != manifest.id || up.manifest.secret != manifest.secret {
                    bail!(
                        "a different znet named {name:?} is here already (another id or secret); \
                         leave it first"
                    );
                }
                if up.manifest.ipv4 != manifest.ipv4 || up.manifest.ipv6 != manifest.ipv6 {
                    bail!("the ranges of znet {name:?} cannot change; create a new znet");
                }
                let me = identity.public_key();
                let (old_me, new_me) = (
                    up.manifest.member(&me).map(|m| m.v4),
                    manifest.member(&me).map(|m| m.v4),
                );
                if old_me != new_me {
                    bail!(
                        "this node's subnet in znet {name:?} would change (or it would leave); \
                         use `meshctl znet leave {name}` instead"
                    );
                }
                // Recorded first: a change that is in force survives a restart.
                std::fs::create_dir_all(&self.dir)
                    .with_context(|| format!("cannot create {}", self.dir.display()))?;
                write_secret(&self.dir.join(format!("{name}.toml")), &manifest.to_toml())?;
                node.znet_up(identity, manifest.clone(), Instant::now())
                    .map_err(anyhow::Error::msg)?;
                up.manifest = manifest;
                self.set_routes(&name, identity)?;
            }
            None => {
                self.bring_up(node, identity, manifest)?;
                if let Err(e) = self.save(&name) {
                    let _ = self.leave(node, &name);
                    return Err(e.context("the znet was not recorded, so it was taken down again"));
                }
            }
        }
        self.info(node, &name)
    }

    /// Leaves a znet: containers detached, namespace and state removed.
    pub fn leave(&mut self, node: &mut Node, name: &str) -> anyhow::Result<()> {
        let Some(up) = self.up.remove(name) else {
            bail!("there is no znet {name:?} here (meshctl znet list shows them)");
        };
        self.devices.0.remove(&up.manifest.id);
        node.znet_down(up.manifest.id);
        // Deleting the router side of each pair removes the container side too, wherever it
        // is now: nothing runs inside a namespace that may since belong to someone else.
        let rns = NsRef::Name(self.router_ns(name));
        for a in &up.attachments {
            let _ = ip_in(&rns, &["link", "del", &router_if(&a.netns)]);
        }
        let _ = ip(&["netns", "del", &self.router_ns(name)]);
        let _ = std::fs::remove_file(self.dir.join(format!("{name}.toml")));
        let _ = std::fs::remove_file(self.dir.join(format!("{name}.attach.json")));
        Ok(())
    }

    /// Attaches a container namespace; answers its addresses.
    pub fn attach(
        &mut self,
        name: &str,
        netns: &str,
        want_ip: Option<&str>,
        ifname: Option<&str>,
        container_id: Option<String>,
    ) -> anyhow::Result<Attachment> {
        let ifname = ifname.unwrap_or("zn0");
        if ifname.is_empty()
            || ifname.len() > 15
            || ifname.contains('/')
            || ifname.contains(char::is_whitespace)
        {
            bail!("interface name {ifname:?} is not valid (1 to 15 characters, no '/')");
        }
        let a = self.attach_one(name, netns, want_ip, ifname, container_id)?;
        if let Err(e) = self.save_attachments(name) {
            // Not recorded: not done.
            let _ = self.detach(name, Some(netns), None);
            return Err(e);
        }
        Ok(a)
    }

    fn attach_one(
        &mut self,
        name: &str,
        netns: &str,
        want_ip: Option<&str>,
        ifname: &str,
        container_id: Option<String>,
    ) -> anyhow::Result<Attachment> {
        let Some(up) = self.up.get(name) else {
            bail!("there is no znet {name:?} here (meshctl znet list shows them)");
        };
        let ns = NsRef::parse(netns)?;
        if up.attachments.iter().any(|a| a.netns == netns) {
            bail!("namespace {netns:?} is already attached to znet {name:?}");
        }
        let me_key = crate::identity::PublicKey(*self.me_key(name)?);
        let me = up
            .manifest
            .member(&me_key)
            .ok_or_else(|| anyhow::anyhow!("this node is not a member of znet {name:?}"))?
            .clone();
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
                    bail!("{a} is already used by another container of znet {name:?}");
                }
                a
            }
            None => (2u8..=254)
                .map(|h| Ipv4Addr::from(u32::from(me.v4) | u32::from(h)))
                .find(|a| !used.contains(a))
                .ok_or_else(|| anyhow::anyhow!("no free address left in {}/24", me.v4))?,
        };
        let v6 = me.v6_for(addr);
        let gw = me.gateway_v4();
        let gw6 = me.gateway_v6();
        let rif = router_if(netns);
        let rns = NsRef::Name(self.router_ns(name));
        // veth with one end in each namespace; deleting the router end undoes everything.
        ip(&[
            "link",
            "add",
            &rif,
            "netns",
            &self.router_ns(name),
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            &ns.for_link()?,
        ])?;
        let r = (|| -> anyhow::Result<()> {
            let mtu = ZNET_MTU.to_string();
            ip_in(&rns, &["link", "set", &rif, "mtu", &mtu, "up"])?;
            ip_in(&rns, &["addr", "add", &format!("{gw}/32"), "dev", &rif])?;
            ip_in(&rns, &["route", "add", &format!("{addr}/32"), "dev", &rif])?;
            ip_in(&ns, &["link", "set", "lo", "up"])?;
            ip_in(&ns, &["link", "set", ifname, "mtu", &mtu, "up"])?;
            ip_in(&ns, &["addr", "add", &format!("{addr}/32"), "dev", ifname])?;
            ip_in(&ns, &["route", "add", &gw.to_string(), "dev", ifname])?;
            ip_in(
                &ns,
                &[
                    "route",
                    "add",
                    &format!("{}/16", up.manifest.ipv4),
                    "via",
                    &gw.to_string(),
                    "dev",
                    ifname,
                ],
            )?;
            if let (Some(v6), Some(gw6), Some(range6)) = (v6, gw6, up.manifest.ipv6) {
                ip_in(
                    &rns,
                    &[
                        "-6",
                        "addr",
                        "add",
                        &format!("{gw6}/128"),
                        "dev",
                        &rif,
                        "nodad",
                    ],
                )?;
                ip_in(
                    &rns,
                    &["-6", "route", "add", &format!("{v6}/128"), "dev", &rif],
                )?;
                ip_in(
                    &ns,
                    &[
                        "-6",
                        "addr",
                        "add",
                        &format!("{v6}/128"),
                        "dev",
                        ifname,
                        "nodad",
                    ],
                )?;
                ip_in(
                    &ns,
                    &["-6", "route", "add", &gw6.to_string(), "dev", ifname],
                )?;
                ip_in(
                    &ns,
                    &[
                        "-6",
                        "route",
                        "add",
                        &format!("{range6}/64"),
                        "via",
                        &gw6.to_string(),
                        "dev",
                        ifname,
                    ],
                )?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            let _ = ip_in(&rns, &["link", "del", &rif]);
            return Err(e.context(format!(
                "attaching {netns} to znet {name} failed; rolled back"
            )));
        }
        let a = Attachment {
            znet: name.to_string(),
            netns: netns.to_string(),
            ifname: ifname.to_string(),
            ipv4: addr.to_string(),
            ipv6: v6.map(|a| a.to_string()),
            gateway_v4: gw.to_string(),
            gateway_v6: gw6.map(|a| a.to_string()),
            range_v4: format!("{}/16", up.manifest.ipv4),
            range_v6: up.manifest.ipv6.map(|a| format!("{a}/64")),
            container_id,
            ns_inode: ns.identity(netns).ok(),
        };
        if let Some(up) = self.up.get_mut(name) {
            up.attachments.push(a.clone());
        }
        Ok(a)
    }

    fn me_key(&self, _name: &str) -> anyhow::Result<&[u8; 32]> {
        self.me
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("internal error: node key unknown"))
    }

    /// Detaches a container (by namespace or container id).
    pub fn detach(
        &mut self,
        name: &str,
        netns: Option<&str>,
        container_id: Option<&str>,
    ) -> anyhow::Result<Attachment> {
        let Some(up) = self.up.get_mut(name) else {
            bail!("there is no znet {name:?} here (meshctl znet list shows them)");
        };
        let Some(i) = up.attachments.iter().position(|a| {
            netns.is_some_and(|n| a.netns == n)
                || container_id.is_some_and(|c| a.container_id.as_deref() == Some(c))
        }) else {
            bail!("nothing of that is attached to znet {name:?}");
        };
        let a = up.attachments.remove(i);
        let _ = ip_in(
            &NsRef::Name(self.router_ns(name)),
            &["link", "del", &router_if(&a.netns)],
        );
        self.save_attachments(name)?;
        Ok(a)
    }

    /// For `znet show`.
    pub fn info(&self, node: &Node, name: &str) -> anyhow::Result<ZnetInfo> {
        let Some(up) = self.up.get(name) else {
            bail!("there is no znet {name:?} here (meshctl znet list shows them)");
        };
        let m = &up.manifest;
        let counters = node
            .znets
            .get(&m.id)
            .map(|z| crate::admin::znet_counters(&z.counters))
            .unwrap_or_default();
        Ok(ZnetInfo {
            name: m.name.clone(),
            id: format!("{:016x}", m.id),
            ipv4: format!("{}/16", m.ipv4),
            ipv6: m.ipv6.map(|a| format!("{a}/64")),
            router_netns: self.router_ns(name),
            members: m
                .members
                .iter()
                .map(|x| ZnetMemberInfo {
                    public_key: x.key.to_string(),
                    subnet_v4: format!("{}/24", x.v4),
                    subnet_v6: x.v6.map(|a| format!("{a}/80")),
                    this_node: self.me.is_some_and(|k| k == x.key.0),
                })
                .collect(),
            attachments: up.attachments.clone(),
            counters,
        })
    }

    /// Every znet here.
    pub fn list(&self, node: &Node) -> Vec<ZnetInfo> {
        self.up
            .keys()
            .filter_map(|n| self.info(node, n).ok())
            .collect()
    }
}

/// Deletes a router namespace and, first, the veths in it.
fn remove_router_ns(ns: &str) {
    let nsr = NsRef::Name(ns.to_string());
    if let Ok(out) = ip_in(&nsr, &["-o", "link", "show"]) {
        for l in out.lines() {
            let name = l.split(':').nth(1).map(str::trim).unwrap_or("");
            let name = name.split('@').next().unwrap_or("");
            if name.starts_with("zv") {
                let _ = ip_in(&nsr, &["link", "del", name]);
            }
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Opens a TUN device named `zt0` inside namespace `ns` (a thread enters it for the call; the
/// device stays in that namespace), with TSO/GRO offload when the kernel allows it. Returns the
/// device and whether offload is on.
#[cfg(not(target_os = "linux"))]
fn open_tun_in(_ns: &str) -> anyhow::Result<(AsyncDevice, bool)> {
    anyhow::bail!("znets need Linux network namespaces; this platform has none")
}

/// As above, on Linux.
#[cfg(target_os = "linux")]
fn open_tun_in(ns: &str) -> anyhow::Result<(AsyncDevice, bool)> {
    let path = format!("/run/netns/{ns}");
    let (sync, offload) = std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<(tun_rs::SyncDevice, bool)> {
            let f = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("cannot enter namespace {ns}"))?;
            let build = |offload: bool| {
                tun_rs::DeviceBuilder::new()
                    .name("zt0")
                    .mtu(ZNET_MTU)
                    .offload(offload)
                    .build_sync()
            };
            match build(true) {
                Ok(d) => Ok((d, true)),
                Err(_) => build(false)
                    .map(|d| (d, false))
                    .with_context(|| format!("cannot create the TUN device of namespace {ns}")),
            }
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread creating the TUN panicked"))?
    })?;
    Ok((
        AsyncDevice::new(sync).context("cannot make the znet TUN asynchronous")?,
        offload,
    ))
}

/// Answers the znet requests.
pub fn answer(
    req: crate::admin::Request,
    node: &mut Node,
    identity: &Identity,
    znets: &mut Znets,
) -> crate::admin::Reply {
    use crate::admin::{Reply, Request};
    let r: anyhow::Result<serde_json::Value> = (|| match req {
        Request::ZnetCreate { name, ipv4, ipv6 } => {
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
            text.push_str(&format!(
                "\n[[members]]\nkey = \"{}\"\n",
                identity.public_key()
            ));
            if znets.up.contains_key(&name) {
                bail!("a znet named {name:?} is here already");
            }
            let info = znets.join(node, identity, &text)?;
            let manifest = znets
                .up
                .get(&name)
                .map(|u| u.manifest.to_toml())
                .unwrap_or_default();
            Ok(serde_json::to_value(crate::admin::ZnetCreated {
                manifest,
                znet: info,
            })?)
        }
        Request::ZnetJoin { manifest } => Ok(serde_json::to_value(
            znets.join(node, identity, &manifest)?,
        )?),
        Request::ZnetLeave { name } => {
            znets.leave(node, &name)?;
            Ok(serde_json::to_value(crate::admin::ZnetLeft { left: name })?)
        }
        Request::ZnetList => Ok(serde_json::to_value(znets.list(node))?),
        Request::ZnetShow { name } => Ok(serde_json::to_value(znets.info(node, &name)?)?),
        Request::ZnetAttach {
            name,
            netns,
            ip,
            ifname,
            container_id,
        } => Ok(serde_json::to_value(znets.attach(
            &name,
            &netns,
            ip.as_deref(),
            ifname.as_deref(),
            container_id,
        )?)?),
        Request::ZnetDetach {
            name,
            netns,
            container_id,
        } => Ok(serde_json::to_value(znets.detach(
            &name,
            netns.as_deref(),
            container_id.as_deref(),
        )?)?),
        _ => bail!("internal error: request routed to the wrong handler"),
    })();
    match r {
        Ok(v) => Reply::ok(v),
        Err(e) => Reply::err(format!("{e:#}")),
    }
}
