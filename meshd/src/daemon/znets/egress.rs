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
//! Rules are loaded with `nft -f -` (one atomic transaction each), run from a thread inside
//! the namespace; like all plumbing this runs on the znet worker, never on the event loop.

use super::netlink::{self, Route};
use super::netns;
use super::plumbing::{PlumbError, index, link_err, ns_err};
use crate::identity::PublicKey;
use crate::znet::{Egress, Manifest};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The router namespace's end of the uplink.
pub const UPLINK: &str = "zu0";
/// Addresses between the host and the router namespaces (link-local: never routed beyond
/// the host, and NATed before they leave it): a /30 per znet with an uplink.
pub const TRANSFER: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 0);
/// Znets with an uplink on one host (the /30s of [`TRANSFER`]'s /24).
pub const MAX_UPLINKS: u8 = 64;
/// MTU of the uplink veth.
const UPLINK_MTU: u16 = 1500;
/// How long `nft` may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);
/// The router namespace's table.
const ROUTER_TABLE: &str = "znet_egress";

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

/// The router namespace's rules: replies in, containers (and, for the exit, members) out to
/// addresses outside `range` (IPv4 only), masqueraded. Replaces the table atomically.
pub fn router_rules(range: Ipv4Addr, exit: bool) -> String {
    let members = if exit {
        format!(
            "    oifname \"{UPLINK}\" iifname \"{}\" accept\n",
            super::plumbing::TUN_NAME
        )
    } else {
        String::new()
    };
    format!(
        "add table inet {ROUTER_TABLE}\ndelete table inet {ROUTER_TABLE}\n\
         table inet {ROUTER_TABLE} {{\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority filter; policy accept;\n\
         \x20   iifname \"{UPLINK}\" ct state established,related accept\n\
         \x20   iifname \"{UPLINK}\" drop\n\
         \x20   oifname \"{UPLINK}\" meta nfproto ipv6 drop\n\
         \x20   oifname \"{UPLINK}\" ip daddr {range}/16 drop\n\
         \x20   oifname \"{UPLINK}\" iifname \"zv*\" accept\n\
         {members}\
         \x20   oifname \"{UPLINK}\" drop\n\
         \x20 }}\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority filter; policy accept;\n\
         \x20   iifname \"{UPLINK}\" ct state established,related accept\n\
         \x20   iifname \"{UPLINK}\" drop\n\
         \x20 }}\n\
         \x20 chain postrouting {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   oifname \"{UPLINK}\" masquerade\n\
         \x20 }}\n\
         }}\n"
    )
}

/// The host's rules for router namespace `rns` (table `inet <rns>`): its transfer address
/// `router` masqueraded out of any other interface; nothing new into `hif`, nothing from it
/// to the host itself, no IPv6. Replaces the table atomically.
pub fn host_rules(rns: &str, hif: &str, router: Ipv4Addr) -> String {
    format!(
        "add table inet {rns}\ndelete table inet {rns}\n\
         table inet {rns} {{\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority filter; policy accept;\n\
         \x20   oifname \"{hif}\" ct state established,related accept\n\
         \x20   oifname \"{hif}\" drop\n\
         \x20   iifname \"{hif}\" meta nfproto ipv6 drop\n\
         \x20   iifname \"{hif}\" ip saddr != {router} drop\n\
         \x20 }}\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority filter; policy accept;\n\
         \x20   iifname \"{hif}\" ct state established,related accept\n\
         \x20   iifname \"{hif}\" drop\n\
         \x20 }}\n\
         \x20 chain postrouting {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ip saddr {router} oifname != \"{hif}\" masquerade\n\
         \x20 }}\n\
         }}\n"
    )
}

/// The `nft` program (systemd's PATH may lack /usr/sbin).
fn nft_program() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

/// Runs `nft -f -` with `script` in the calling thread's network namespace, for at most
/// [`NFT_TIMEOUT`].
pub fn nft(script: &str) -> io::Result<()> {
    let mut child = Command::new(nft_program())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run nft (egress needs nftables: install package nftables): {e}"),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let end = Instant::now() + NFT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(io::Error::other(format!("nft failed: {}", err.trim())));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nft did not finish within {NFT_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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
    host.add_link(netlink::veth(
        &hif,
        host_file.as_raw_fd(),
        UPLINK,
        rfile.as_raw_fd(),
        netlink::container_mac(router_addr),
        UPLINK_MTU,
    ))
    .map_err(link_err(
        format!("create the uplink veth to {UPLINK} in namespace {rns}"),
        &hif,
        "of meshd",
    ))?;
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

/// Whether the host has table `inet <rns>` (a crash between making the table and recording
/// the znet). Without `nft` there is none.
fn host_table_exists(rns: &str) -> bool {
    Command::new(nft_program())
        .args(["list", "table", "inet", rns])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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

    #[test]
    fn rules_let_in_only_replies_and_members_out_only_from_the_exit() {
        let r = router_rules(Ipv4Addr::new(10, 50, 0, 0), false);
        assert!(
            r.contains(
                "iifname \"zu0\" ct state established,related accept\n    iifname \"zu0\" drop"
            ),
            "{r}"
        );
        assert!(r.contains("ip daddr 10.50.0.0/16 drop"), "{r}");
        assert!(r.contains("oifname \"zu0\" masquerade"), "{r}");
        assert!(!r.contains("iifname \"zt0\""), "{r}");
        let e = router_rules(Ipv4Addr::new(10, 50, 0, 0), true);
        assert!(e.contains("oifname \"zu0\" iifname \"zt0\" accept"), "{e}");
        let h = host_rules(
            "zn-shop-ab01ff",
            "ze01020304",
            Ipv4Addr::new(169, 254, 77, 2),
        );
        assert!(
            h.starts_with("add table inet zn-shop-ab01ff\ndelete table"),
            "{h}"
        );
        assert!(h.contains("oifname \"ze01020304\" drop"), "{h}");
        assert!(
            h.contains("ip saddr 169.254.77.2 oifname != \"ze01020304\" masquerade"),
            "{h}"
        );
    }
}
