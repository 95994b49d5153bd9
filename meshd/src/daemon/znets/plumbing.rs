//! The system side of a znet: its router namespace (sysctls, TUN `zt0`, routes to the other
//! members' subnets) and one veth pair per attached container, with addresses and routes on
//! both ends. Talks netlink ([`super::netlink`]) and enters namespaces on dedicated threads
//! ([`super::netns`]).
//!
//! Every step blocks on the kernel: this runs on the znet worker thread (or before the event
//! loop starts), never on the loop. Each function undoes its own half-done work when it fails,
//! and its error names the interface and the namespace.

use super::netlink::{self, Route, Rtnl};
use super::netns;
use super::nsref::{NsRef, router_if};
use crate::admin::Attachment;
use crate::znet::{Manifest, Member};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

/// MTU of a znet's TUN and veths: the overlay's usual room (`tun.mtu` 1420) less the znet
/// header. A path with less room (a deep tree) answers with ICMP "packet too big", and the
/// containers' TCP adapts.
pub const ZNET_MTU: u16 = 1400;

/// The name of a znet's TUN device inside its router namespace.
pub const TUN_NAME: &str = "zt0";

/// What failed while plumbing a znet, naming the interface and the namespace.
#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    /// Creating, entering or setting up a namespace.
    #[error("namespace {ns}: {cause}")]
    Namespace {
        /// The namespace.
        ns: String,
        /// What the system said.
        cause: io::Error,
    },
    /// Creating the veth pair (and moving its ends into their namespaces).
    #[error(
        "cannot create veth {router_if} in namespace {router_ns} with its peer {ifname} in \
         namespace {container_ns}: {cause}"
    )]
    Veth {
        /// The router end.
        router_if: String,
        /// The router namespace.
        router_ns: String,
        /// The container end.
        ifname: String,
        /// The container's namespace.
        container_ns: String,
        /// What the kernel said.
        cause: io::Error,
    },
    /// A step on one interface.
    #[error("cannot {step} on {ifname} in namespace {ns}: {cause}")]
    Link {
        /// What was being done (`add address 10.50.1.1/32`, `bring up`, ...).
        step: String,
        /// The interface.
        ifname: String,
        /// Its namespace.
        ns: String,
        /// What the kernel said.
        cause: io::Error,
    },
}

/// A step on `ifname` in `ns` that failed.
pub(super) fn link_err(
    step: impl Into<String>,
    ifname: &str,
    ns: &str,
) -> impl FnOnce(io::Error) -> PlumbError {
    let (step, ifname, ns) = (step.into(), ifname.to_string(), ns.to_string());
    move |cause| PlumbError::Link {
        step,
        ifname,
        ns,
        cause,
    }
}

pub(super) fn ns_err(ns: &str) -> impl FnOnce(io::Error) -> PlumbError {
    let ns = ns.to_string();
    move |cause| PlumbError::Namespace { ns, cause }
}

/// The index of `ifname` in the namespace of `rt`.
pub(super) fn index(rt: &mut Rtnl, ifname: &str, ns: &str) -> Result<u32, PlumbError> {
    match rt.index_of(ifname) {
        Ok(Some(i)) => Ok(i),
        Ok(None) => Err(link_err("find the interface", ifname, ns)(
            io::Error::from_raw_os_error(libc::ENODEV),
        )),
        Err(e) => Err(link_err("find the interface", ifname, ns)(e)),
    }
}

/// Creates router namespace `ns` (deleting one a crash left first): loopback up, forwarding
/// and reverse-path filtering on, and the TUN device. Returns the device and whether it has
/// offload. Nothing is left on failure.
pub fn router_up(ns: &str) -> Result<(tun_rs::SyncDevice, bool), PlumbError> {
    if netns::path_of(ns).exists() {
        // Left by a crash (or a daemon killed): start clean. The veths go first, at once
        // (deleting a namespace frees its links only later, which would make the containers'
        // old interfaces collide with the new ones).
        remove_router(ns);
    }
    netns::create(ns).map_err(ns_err(ns))?;
    let r = (|| {
        let file = netns::path_of(ns);
        let mut rt = netns::rtnl_in(&file, ns).map_err(ns_err(ns))?;
        rt.set_up("lo").map_err(link_err("bring up", "lo", ns))?;
        netns::sysctls_in(&file, ns, &netns::ROUTER_SYSCTLS).map_err(ns_err(ns))?;
        netns::open_tun_in(ns, ZNET_MTU).map_err(ns_err(ns))
    })();
    if r.is_err() {
        netns::delete(ns);
    }
    r
}

/// Routes in router namespace `ns`: each other member's subnets through the TUN, and the
/// default route too if another member is the znet's exit; routes of members gone are removed (the others are replaced in place, never missing for a moment).
pub fn set_routes(
    ns: &str,
    manifest: &Manifest,
    me: &crate::identity::PublicKey,
) -> Result<(), PlumbError> {
    let mut rt = netns::rtnl_in(&netns::path_of(ns), ns).map_err(ns_err(ns))?;
    let oif = index(&mut rt, TUN_NAME, ns)?;
    let mut want: Vec<Route> = Vec::new();
    if manifest.exit_member().is_some_and(|k| k != me) {
        // Egress through the exit member: everything beyond the znet goes to meshd.
        want.push(Route {
            dest: Ipv4Addr::UNSPECIFIED.into(),
            prefix: 0,
            gateway: None,
            oif,
        });
    }
    for m in manifest.members.iter().filter(|m| m.key != *me) {
        want.push(Route {
            dest: m.v4.into(),
            prefix: 24,
            gateway: None,
            oif,
        });
        if let Some(v6) = m.v6 {
            want.push(Route {
                dest: v6.into(),
                prefix: 80,
                gateway: None,
                oif,
            });
        }
    }
    let have = rt
        .routes_of(oif)
        .map_err(link_err("list the routes", TUN_NAME, ns))?;
    for r in have {
        let keep = netlink::destination(&r)
            .is_some_and(|(d, p)| want.iter().any(|w| w.dest == d && w.prefix == p));
        if !keep {
            let what = netlink::destination(&r)
                .map(|(d, p)| format!("delete the route to {d}/{p}"))
                .unwrap_or_else(|| "delete a route".into());
            rt.del_route(r).map_err(link_err(what, TUN_NAME, ns))?;
        }
    }
    for w in &want {
        rt.replace_route(w).map_err(link_err(
            format!("route {}/{}", w.dest, w.prefix),
            TUN_NAME,
            ns,
        ))?;
    }
    Ok(())
}

/// Deletes router namespace `ns` and, first, its uplink (host veth and host rules, see
/// [`super::egress`]) and the veths in it (which removes their container ends too, wherever
/// they are: nothing runs inside a container's namespace). Whatever is missing is skipped.
pub fn remove_router(ns: &str) {
    super::egress::down(ns);
    if let Ok(mut rt) = netns::rtnl_in(&netns::path_of(ns), ns)
        && let Ok(names) = rt.link_names()
    {
        for n in names.iter().filter(|n| n.starts_with("zv")) {
            let _ = rt.del_link(n);
        }
    }
    netns::delete(ns);
}

/// Deletes the veth of container namespace `netns` (as given at attach) in router namespace
/// `router_ns`. Missing: nothing to do.
pub fn remove_veth(router_ns: &str, netns: &str) {
    if let Ok(mut rt) = netns::rtnl_in(&netns::path_of(router_ns), router_ns) {
        let _ = rt.del_link(&router_if(netns));
    }
}

/// What an attachment needs to know of its znet and of this node's place in it.
pub struct Plan<'a> {
    /// The znet's manifest.
    pub manifest: &'a Manifest,
    /// This node's member entry.
    pub me: &'a Member,
    /// The router namespace.
    pub router_ns: &'a str,
    /// The container's namespace, as given.
    pub netns: &'a str,
    /// The interface inside the container.
    pub ifname: &'a str,
    /// The container's IPv4 address.
    pub addr: Ipv4Addr,
    /// A default route through the gateway (the znet has `egress`).
    pub default_route: bool,
}

/// Connects a container: a veth pair between the router namespace and the container's, the
/// gateway address and a host route on the router end, the container's address and routes (to
/// the gateway, and the znet's range via it, and the default route via it if the znet has
/// egress) on the other. Rolled back on failure.
pub fn attach(
    p: &Plan<'_>,
    ns: &NsRef,
    container_id: Option<String>,
) -> Result<Attachment, PlumbError> {
    let v6 = p.me.v6_for(p.addr);
    let gw = p.me.gateway_v4();
    let gw6 = p.me.gateway_v6();
    let rif = router_if(p.netns);
    let rns = p.router_ns;
    let shown = p.netns;
    let rfile = File::open(netns::path_of(rns)).map_err(ns_err(rns))?;
    let cfile = File::open(ns.file()).map_err(ns_err(shown))?;
    let mut host = Rtnl::open().map_err(ns_err("of meshd"))?;
    let mac = netlink::container_mac(p.addr);
    host.add_link(netlink::veth(
        &rif,
        rfile.as_raw_fd(),
        p.ifname,
        cfile.as_raw_fd(),
        mac,
        ZNET_MTU,
    ))
    .map_err(|cause| PlumbError::Veth {
        router_if: rif.clone(),
        router_ns: rns.to_string(),
        ifname: p.ifname.to_string(),
        container_ns: shown.to_string(),
        cause,
    })?;
    let r = (|| -> Result<(), PlumbError> {
        let mut rt = netns::rtnl_in(&netns::path_of(rns), rns).map_err(ns_err(rns))?;
        let mut ct = netns::rtnl_in(&ns.file(), shown).map_err(ns_err(shown))?;
        let ri = index(&mut rt, &rif, rns)?;
        rt.set_up(&rif).map_err(link_err("bring up", &rif, rns))?;
        ct.set_up("lo").map_err(link_err("bring up", "lo", shown))?;
        let ci = index(&mut ct, p.ifname, shown)?;
        ct.set_up(p.ifname)
            .map_err(link_err("bring up", p.ifname, shown))?;
        let addr = |rt: &mut Rtnl, i: u32, ifname: &str, ns: &str, a: IpAddr, len: u8| {
            rt.add_address(i, a, len).map_err(link_err(
                format!("add address {a}/{len}"),
                ifname,
                ns,
            ))
        };
        let route = |rt: &mut Rtnl, ifname: &str, ns: &str, r: Route| {
            let what = match r.gateway {
                Some(g) => format!("add route {}/{} via {g}", r.dest, r.prefix),
                None => format!("add route {}/{}", r.dest, r.prefix),
            };
            rt.add_route(&r).map_err(link_err(what, ifname, ns))
        };
        let on = |dest: IpAddr, prefix: u8, gateway: Option<IpAddr>, oif: u32| Route {
            dest,
            prefix,
            gateway,
            oif,
        };
        addr(&mut rt, ri, &rif, rns, gw.into(), 32)?;
        route(&mut rt, &rif, rns, on(p.addr.into(), 32, None, ri))?;
        addr(&mut ct, ci, p.ifname, shown, p.addr.into(), 32)?;
        route(&mut ct, p.ifname, shown, on(gw.into(), 32, None, ci))?;
        let range = p.manifest.ipv4.into();
        route(&mut ct, p.ifname, shown, on(range, 16, Some(gw.into()), ci))?;
        if p.default_route {
            let any = Ipv4Addr::UNSPECIFIED.into();
            route(&mut ct, p.ifname, shown, on(any, 0, Some(gw.into()), ci))?;
        }
        if let (Some(v6), Some(gw6), Some(range6)) = (v6, gw6, p.manifest.ipv6) {
            addr(&mut rt, ri, &rif, rns, gw6.into(), 128)?;
            route(&mut rt, &rif, rns, on(v6.into(), 128, None, ri))?;
            addr(&mut ct, ci, p.ifname, shown, v6.into(), 128)?;
            route(&mut ct, p.ifname, shown, on(gw6.into(), 128, None, ci))?;
            route(
                &mut ct,
                p.ifname,
                shown,
                on(range6.into(), 64, Some(gw6.into()), ci),
            )?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        remove_veth(rns, p.netns);
        return Err(e);
    }
    Ok(Attachment {
        znet: p.manifest.name.clone(),
        netns: p.netns.to_string(),
        ifname: p.ifname.to_string(),
        ipv4: p.addr.to_string(),
        ipv6: v6.map(|a| a.to_string()),
        gateway_v4: gw.to_string(),
        gateway_v6: gw6.map(|a| a.to_string()),
        range_v4: format!("{}/16", p.manifest.ipv4),
        range_v6: p.manifest.ipv6.map(|a| format!("{a}/64")),
        container_id,
        ns_inode: ns.identity(p.netns).ok(),
        mac: Some(netlink::mac_text(mac)),
        default_route: p.default_route,
    })
}
