//! The nftables rules of a znet's egress ([`super::egress`]) and the `nft` program that loads
//! them: each script replaces its table in one atomic transaction (`add table` then `delete
//! table` then the table), so rules are never half there. The scripts are pure functions,
//! tested without root; `nft` runs in the calling thread's network namespace (the child
//! inherits it), on the znet worker, for a bounded time.

use super::egress::UPLINK;
use super::plumbing::TUN_NAME;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `nft` may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);
/// The router namespace's table.
pub const ROUTER_TABLE: &str = "znet_egress";

/// The router namespace's rules: replies in, containers (and, for the exit, members) out to
/// addresses outside `range` (IPv4 only), masqueraded. Replaces the table atomically.
pub fn router_rules(range: Ipv4Addr, exit: bool) -> String {
    let members = if exit {
        format!("    oifname \"{UPLINK}\" iifname \"{}\" accept\n", TUN_NAME)
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

/// Whether the host has table `inet <rns>` (a crash between making the table and recording
/// the znet). Without `nft` there is none.
pub fn host_table_exists(rns: &str) -> bool {
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
