//! A znet's way out (the manifest's `egress`), on this host.
//!
//! What this node does depends on its [`Role`]:
//! * **Uplink** (`egress = "local"`, or this node is the exit member and `[znet] exit` allows
//!   it): a veth pair `zeXXXXXXXX` (host) ═ `zu0` (router namespace) with a /30 of
//!   [`TRANSFER`], a default route in the router namespace through it, and two nftables
//!   tables: in the router namespace (`inet znet_egress`) masquerade out of `zu0` and a filter
//!   that lets in from `zu0` only replies (`ct state established,related`) and lets out only
//!   the containers' (and, for the exit, the other members', from `zt0`) IPv4 traffic for
//!   addresses outside the znet; on the host (`inet zn-NAME-XXXXXX`) masquerade of the
//!   transfer address and the same guard (nothing new into `ze…`, nothing from it to the host
//!   itself). Two znets with the same range never meet: each is NATed in its own namespace.
//! * **Via the exit** (another member is the exit): a default route through `zt0` (set with
//!   the other routes, [`super::plumbing::set_routes`]); meshd sends what comes to the exit.
//! * **None**: nothing; the wall stays as it is without egress.
//!
//! ```text
//!  container ─ zv… ─ router ns: NAT → zu0 ═ ze… ─ host: NAT → uplink → outside
//!  10.50.1.2        (10.50.1.2 → 169.254.77.2)   (169.254.77.2 → host's address)
//! ```
//!
//! Rules are loaded with `nft -f -` ([`super::nft`]), run from a thread inside the namespace;
//! like all plumbing this runs on the znet worker, never on the event loop.

use super::jobs::State;
use super::netlink::{self, Route};
use super::netns;
use super::nft::{ROUTER_TABLE, host_rules, host_table_exists, nft, router_rules};
use super::plumbing::{PlumbError, index, link_err, ns_err};
use crate::identity::PublicKey;
use crate::znet::{Egress, Manifest};
use anyhow::Context as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

/// The router namespace's end of the uplink.
pub const UPLINK: &str = "zu0";
/// Addresses between the host and the router namespaces (link-local: never routed beyond
/// the host, and NATed before they leave it): a /30 per znet with an uplink.
pub const TRANSFER: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 0);
/// Znets with an uplink on one host (the /30s of [`TRANSFER`]'s /24).
pub const MAX_UPLINKS: u8 = 64;
/// MTU of the uplink veth.
const UPLINK_MTU: u16 = 1500;
/// How often making the uplink retries while a stale one of the same name is still there.
const STALE_RETRIES: u32 = 100;
/// The pause between two tries (so at most two seconds in all).
const STALE_RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// What this node does for a znet's egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No way out.
    None,
    /// Its own uplink, NATed; `exit`: also for the other members' traffic (from `zt0`).
    Uplink {
        /// This node is the znet's exit.
        exit: bool,
    },
    /// A default route through `zt0`: meshd sends it to the exit member.
    ViaExit,
}

/// This node's role for `m`: `me` is this node, `exits` the znets its operator allows it to
/// be the exit of (`[znet] exit`).
pub fn role(m: &Manifest, me: &PublicKey, exits: &[String]) -> Role {
    match m.egress {
        None => Role::None,
        Some(Egress::Local) => Role::Uplink { exit: false },
        Some(Egress::Member(k)) if k == *me => {
            if exits.contains(&m.name) {
                Role::Uplink { exit: true }
            } else {
                Role::None
            }
        }
        Some(Egress::Member(_)) => Role::ViaExit,
    }
}

/// The lowest /30 of [`TRANSFER`] that no other znet uses.
pub fn free_slot(used: impl IntoIterator<Item = u8>) -> Option<u8> {
    let used: Vec<u8> = used.into_iter().collect();
    (0..MAX_UPLINKS).find(|s| !used.contains(s))
}

/// The host's and the router namespace's addresses in /30 number `slot`.
pub fn transfer(slot: u8) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(TRANSFER) + 4 * u32::from(slot);
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// The host's end of router namespace `rns`'s uplink: `ze` + 8 hex digits of a hash.
pub fn host_if(rns: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(rns.as_bytes());
    format!("ze{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
}

/// Moves router namespace `rns` from egress role `was` (with the uplink /30 `slot`, if any)
/// to `will` (routes through `zt0` are [`super::plumbing::set_routes`]'s). Returns the uplink's /30
/// now. A role that does not change is left alone (its connections live on).
pub fn set(
    state: &State,
    rns: &str,
    manifest: &Manifest,
    slot: Option<u8>,
    was: Role,
    will: Role,
) -> anyhow::Result<Option<u8>> {
    if was == will && (slot.is_some() || !matches!(will, Role::Uplink { .. })) {
        return Ok(slot);
    }
    if slot.is_some() || matches!(was, Role::Uplink { .. }) {
        down(rns);
        router_rules_down(rns);
    }
    let Role::Uplink { exit } = will else {
        return Ok(None);
    };
    let used = state
        .iter()
        .filter(|(n, _)| **n != manifest.name)
        .filter_map(|(_, u)| u.uplink);
    let slot = slot.or_else(|| free_slot(used)).ok_or_else(|| {
        anyhow::anyhow!(
            "no free uplink address: at most {} znets with egress on one host",
            MAX_UPLINKS
        )
    })?;
    up(rns, manifest, slot, exit)
        .with_context(|| format!("cannot set up the egress of znet {}", manifest.name))?;
    Ok(Some(slot))
}

/// Turns on IPv4 forwarding in meshd's own namespace (the host), as container runtimes do.
fn host_forwarding() -> io::Result<()> {
    let path = netns::sysctl_path("net.ipv4.ip_forward");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    tracing::info!("znet egress: turning on net.ipv4.ip_forward on this host");
    std::fs::write(&path, "1").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot set net.ipv4.ip_forward=1 on the host: {e}"),
        )
    })
}

/// Builds the uplink of router namespace `rns` (see the module's doc) with /30 number `slot`.
/// Nothing is left on failure.
pub fn up(rns: &str, manifest: &Manifest, slot: u8, exit: bool) -> Result<(), PlumbError> {
    let r = build(rns, manifest, slot, exit);
    if r.is_err() {
        down(rns);
        router_rules_down(rns);
    }
    r
}

fn build(rns: &str, manifest: &Manifest, slot: u8, exit: bool) -> Result<(), PlumbError> {
    let hif = host_if(rns);
    let (host_addr, router_addr) = transfer(slot);
    let host_file = std::fs::File::open("/proc/thread-self/ns/net").map_err(ns_err("of meshd"))?;
    let rfile = std::fs::File::open(netns::path_of(rns)).map_err(ns_err(rns))?;
    let mut host = netlink::Rtnl::open().map_err(ns_err("of meshd"))?;
    let veth = || {
        netlink::veth(
            &hif,
            host_file.as_raw_fd(),
            UPLINK,
            rfile.as_raw_fd(),
            netlink::container_mac(router_addr),
            UPLINK_MTU,
        )
    };
    // After a crash the old pair goes only once the kernel has freed the old router
    // namespace (a moment later); a `ze…` of this name is ours: removed, a bounded time.
    let mut tries = 0;
    loop {
        match host.add_link(veth()) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && tries < STALE_RETRIES => {
                tries += 1;
                let _ = host.del_link(&hif);
                std::thread::sleep(STALE_RETRY_EVERY);
            }
            r => {
                break r.map_err(link_err(
                    format!("create the uplink veth to {UPLINK} in namespace {rns}"),
                    &hif,
                    "of meshd",
                ))?;
            }
        }
    }
    let hi = index(&mut host, &hif, "of meshd")?;
    host.set_up(&hif)
        .map_err(link_err("bring up", &hif, "of meshd"))?;
    host.add_address(hi, host_addr.into(), 30)
        .map_err(link_err(
            format!("add address {host_addr}/30"),
            &hif,
            "of meshd",
        ))?;
    let mut rt = netns::rtnl_in(&netns::path_of(rns), rns).map_err(ns_err(rns))?;
    let ri = index(&mut rt, UPLINK, rns)?;
    rt.set_up(UPLINK)
        .map_err(link_err("bring up", UPLINK, rns))?;
    rt.add_address(ri, router_addr.into(), 30)
        .map_err(link_err(
            format!("add address {router_addr}/30"),
            UPLINK,
            rns,
        ))?;
    let default = Route {
        dest: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix: 0,
        gateway: Some(host_addr.into()),
        oif: ri,
    };
    rt.replace_route(&default).map_err(link_err(
        format!("add the default route via {host_addr}"),
        UPLINK,
        rns,
    ))?;
    let rules = router_rules(manifest.ipv4, exit);
    netns::in_netns(&netns::path_of(rns), rns, || nft(&rules)).map_err(link_err(
        "load the egress rules (nftables)",
        UPLINK,
        rns,
    ))?;
    nft(&host_rules(rns, &hif, router_addr)).map_err(link_err(
        "load the egress rules (nftables)",
        &hif,
        "of meshd",
    ))?;
    host_forwarding().map_err(ns_err("of meshd"))?;
    Ok(())
}

/// Removes the uplink of router namespace `rns`: the veth pair (both ends, with the default
/// route through it) and the host's table. The router namespace's table goes with the
/// namespace, or with [`router_rules_down`]. Whatever is missing is skipped.
pub fn down(rns: &str) {
    let hif = host_if(rns);
    let had = netlink::Rtnl::open().is_ok_and(|mut host| host.del_link(&hif).is_ok());
    if had || host_table_exists(rns) {
        let _ = nft(&format!("delete table inet {rns}\n"));
    }
}

/// Removes the router namespace's egress table (the znet stays, without an uplink).
pub fn router_rules_down(rns: &str) {
    let _ = netns::in_netns(&netns::path_of(rns), rns, || {
        nft(&format!(
            "add table inet {ROUTER_TABLE}\ndelete table inet {ROUTER_TABLE}\n"
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn manifest(egress: &str) -> Manifest {
        let k = |n: u8| Identity::from_seed(&[n; 32]).public_key().to_string();
        let egress = match egress {
            "" => String::new(),
            "1" => format!("egress = \"{}\"\n", k(1)),
            e => format!("egress = \"{e}\"\n"),
        };
        Manifest::parse(&format!(
            "name = \"shop\"\nid = \"00000000000000aa\"\nsecret = \"{}\"\nipv4 = \"10.50.0.0/16\"\n\
             {egress}[[members]]\nkey = \"{}\"\n[[members]]\nkey = \"{}\"\n",
            "ab".repeat(32),
            k(1),
            k(2)
        ))
        .expect("manifest")
    }

    #[test]
    fn roles_follow_the_manifest_and_the_operators_opt_in() {
        let one = Identity::from_seed(&[1; 32]).public_key();
        let two = Identity::from_seed(&[2; 32]).public_key();
        let allowed = vec!["shop".to_string()];
        assert_eq!(role(&manifest(""), &one, &allowed), Role::None);
        assert_eq!(
            role(&manifest("local"), &two, &[]),
            Role::Uplink { exit: false }
        );
        assert_eq!(
            role(&manifest("1"), &one, &allowed),
            Role::Uplink { exit: true }
        );
        assert_eq!(
            role(&manifest("1"), &one, &["other".into()]),
            Role::None,
            "named as the exit, but its operator did not allow it"
        );
        assert_eq!(role(&manifest("1"), &two, &[]), Role::ViaExit);
    }

    #[test]
    fn slots_and_names_are_distinct() {
        assert_eq!(free_slot([]), Some(0));
        assert_eq!(free_slot([0, 1, 3]), Some(2));
        assert_eq!(free_slot(0..MAX_UPLINKS), None);
        assert_eq!(
            transfer(2),
            (
                Ipv4Addr::new(169, 254, 77, 9),
                Ipv4Addr::new(169, 254, 77, 10)
            )
        );
        assert_eq!(
            transfer(MAX_UPLINKS - 1).1,
            Ipv4Addr::new(169, 254, 77, 254)
        );
        let h = host_if("zn-shop-ab01ff");
        assert_eq!((h.len(), &h[..2]), (10, "ze"));
        assert_ne!(h, host_if("zn-shop-ab01fe"));
    }
}
