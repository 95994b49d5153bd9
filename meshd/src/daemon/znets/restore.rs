//! Bringing the recorded znets up again at start (after a restart or a crash): stale router
//! namespaces removed, each znet's namespace, TUN, routes and egress made again, its containers
//! re-attached with the addresses they had. Runs before the event loop starts, so it may block;
//! it shares the plumbing and the checks of the worker's jobs.

use super::jobs::{self, Up};
use super::{Znets, egress, netns, nsref, plumbing};
use crate::identity::Identity;
use crate::node::Node;
use std::sync::Arc;
use std::time::Instant;
use tun_rs::AsyncDevice;

/// How often restoring a container retries while its old interface is still there.
const RESTORE_RETRIES: u32 = 100;
/// The pause between two tries (so at most two seconds in all).
const RESTORE_RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether creating a container's veth failed because an interface of that name is there.
fn interface_exists(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<plumbing::PlumbError>(),
            Some(plumbing::PlumbError::Veth { cause, .. })
                if cause.raw_os_error() == Some(libc::EEXIST)
        )
    })
}

impl Znets {
    /// Brings up every recorded znet and re-attaches its containers (after a restart or a
    /// crash). A znet that fails is reported and skipped; the others come up. Runs before the
    /// event loop starts, so it may block.
    pub fn restore(&mut self, node: &mut Node, identity: &Identity) {
        let names = self.ctx.records.names();
        // Router namespaces of this node that no record names (a crash between creating one
        // and recording it): removed.
        if let Ok(rd) = std::fs::read_dir(netns::RUN_DIR) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(z) = nsref::znet_of_router_ns(&n, &self.ctx.me.0)
                    && !names.iter().any(|k| k == z)
                {
                    tracing::warn!(netns = %n, "removing a router namespace no znet records");
                    plumbing::remove_router(&n);
                }
            }
        }
        for name in names {
            match self.restore_one(node, identity, &name) {
                Ok(()) => tracing::info!(znet = %name, "znet restored"),
                Err(e) => tracing::error!(znet = %name, "znet not restored: {e:#}"),
            }
        }
    }

    fn restore_one(
        &mut self,
        node: &mut Node,
        identity: &Identity,
        name: &str,
    ) -> anyhow::Result<()> {
        let (manifest, attach) = self.ctx.records.load(name)?;
        let rns = self.ctx.router_ns(name);
        let (sync, offload) = plumbing::router_up(&rns)?;
        let id = manifest.id;
        let r = AsyncDevice::new(sync)
            .map_err(|e| anyhow::anyhow!("cannot make the TUN of {rns} asynchronous: {e}"))
            .and_then(|dev| {
                node.znet_up(identity, manifest.clone(), Instant::now())
                    .map_err(anyhow::Error::msg)?;
                plumbing::set_routes(&rns, &manifest, &self.ctx.me).inspect_err(|_| {
                    node.znet_down(id);
                })?;
                Ok(dev)
            });
        let dev = match r {
            Ok(d) => d,
            Err(e) => {
                plumbing::remove_router(&rns);
                return Err(e);
            }
        };
        let role = self.ctx.role(&manifest);
        let uplink = egress::set(&self.up, &rns, &manifest, None, egress::Role::None, role);
        let uplink = match uplink {
            Ok(u) => u,
            Err(e) => {
                node.znet_down(id);
                plumbing::remove_router(&rns);
                return Err(e);
            }
        };
        self.devices.insert(id, Arc::new(dev), offload);
        let mut up = Up {
            manifest,
            attachments: Vec::new(),
            uplink,
        };
        for a in attach {
            let now_ino = nsref::NsRef::parse(&a.netns)
                .and_then(|n| n.identity(&a.netns))
                .ok();
            if a.ns_inode.is_some() && now_ino != a.ns_inode {
                tracing::warn!(znet = %name, netns = %a.netns, "container not re-attached: its namespace is gone (or the name now means another one)");
                continue;
            }
            // After a crash the container's old end goes only once the kernel has freed the
            // old router namespace (a moment later): wait for it, a bounded time.
            let mut tries = 0;
            let r = loop {
                let r = jobs::attach(
                    &self.ctx,
                    &up,
                    &a.netns,
                    Some(&a.ipv4),
                    &a.ifname,
                    a.container_id.clone(),
                );
                match r {
                    Err(e) if tries < RESTORE_RETRIES && interface_exists(&e) => {
                        tries += 1;
                        std::thread::sleep(RESTORE_RETRY_EVERY);
                    }
                    r => break r,
                }
            };
            match r {
                Ok(a) => up.attachments.push(a),
                Err(e) => {
                    tracing::warn!(znet = %name, netns = %a.netns, "container not re-attached: {e:#}")
                }
            }
        }
        let saved = self.ctx.records.save_attachments(name, &up.attachments);
        self.up.insert(name.to_string(), up);
        saved
    }
}
