//! Network namespaces without `ip netns`: named namespaces under `/run/netns` made and removed
//! the way iproute2 does it, work done inside a namespace (a netlink socket, sysctls, the TUN
//! device) on a short-lived thread that entered it, and namespace descriptors for moving links.
//!
//! Only a dedicated thread ever changes its namespace (`setns`, `unshare`): the worker thread
//! and the event loop stay in the daemon's own. Everything here blocks, so it runs on the znet
//! worker (or before the event loop starts).

use super::netlink::Rtnl;
use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where named network namespaces live (as for `ip netns`).
pub const RUN_DIR: &str = "/run/netns";

/// Sysctls of a router namespace: forwarding between the TUN and the veths, and strict
/// reverse-path filtering, so that a container can only send from its own address (IPv4; the
/// node checks the subnet for both families).
pub const ROUTER_SYSCTLS: [(&str, &str); 4] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv4.conf.default.rp_filter", "1"),
];

/// The file of named namespace `name`.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

/// The `/proc/sys` file of sysctl `key` (`net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`).
pub fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Runs `f` on a new thread that entered the network namespace of file `ns` (shown as `shown`
/// in errors). Only that thread moves; what `f` opens (a socket, a TUN) stays in the namespace.
pub fn in_netns<T: Send>(
    ns: &Path,
    shown: &str,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(ns).map_err(|e| named(e, "cannot open namespace", shown))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| named(e.into(), "cannot enter namespace", shown))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(io::Error::other(format!(
                "a thread in namespace {shown} panicked"
            )))
        })
    })
}

/// An rtnetlink socket inside namespace file `ns`.
pub fn rtnl_in(ns: &Path, shown: &str) -> io::Result<Rtnl> {
    in_netns(ns, shown, Rtnl::open)
}

/// Writes the sysctls `settings` inside namespace file `ns`.
pub fn sysctls_in(ns: &Path, shown: &str, settings: &[(&str, &str)]) -> io::Result<()> {
    in_netns(ns, shown, || {
        for (key, value) in settings {
            std::fs::write(sysctl_path(key), value)
                .map_err(|e| named(e, &format!("cannot set {key}={value}"), shown))?;
        }
        Ok(())
    })
}

/// Creates the named namespace `name` as `ip netns add` does: `/run/netns` made a shared mount
/// (a bind mount of itself if it is not a mount point yet), so that the namespace mounts
/// propagate between mount namespaces; an empty file; a new namespace made by a dedicated
/// thread and bind-mounted onto the file. Nothing is left on failure.
pub fn create(name: &str) -> io::Result<()> {
    use nix::mount::{MsFlags, mount};
    let dir = Path::new(RUN_DIR);
    let _ = std::fs::create_dir_all(dir);
    let none: Option<&str> = None;
    let mut made_mount = false;
    while let Err(e) = mount(
        none,
        dir,
        Some("none"),
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        none,
    ) {
        if e != nix::errno::Errno::EINVAL || made_mount {
            return Err(named(e.into(), "cannot make a shared mount of", RUN_DIR));
        }
        // Not a mount point yet: make it one.
        mount(
            Some(dir),
            dir,
            Some("none"),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(|e| named(e.into(), "cannot bind-mount", RUN_DIR))?;
        made_mount = true;
    }
    let file = path_of(name);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&file)
        .map_err(|e| named(e, "cannot create", &file.display().to_string()))?;
    let r = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| named(e.into(), "cannot create a network namespace for", name))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &file,
                Some("none"),
                MsFlags::MS_BIND,
                none,
            )
            .map_err(|e| named(e.into(), "cannot bind-mount the new namespace on", name))
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the thread creating a namespace panicked")))
    });
    if r.is_err() {
        delete(name);
    }
    r
}

/// Deletes the named namespace `name` as `ip netns del` does: unmounted (lazily: a process
/// still inside keeps it alive) and its file removed. Whatever is missing is skipped.
pub fn delete(name: &str) {
    let file = path_of(name);
    let _ = nix::mount::umount2(&file, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(&file);
}

/// Opens a TUN device named `zt0` (MTU `mtu`) inside namespace `name`, with TSO/GRO offload
/// when the kernel allows it. Returns the device and whether offload is on. The device is
/// made asynchronous on the event loop's runtime.
pub fn open_tun_in(name: &str, mtu: u16) -> io::Result<(tun_rs::SyncDevice, bool)> {
    in_netns(&path_of(name), name, || {
        let build = |offload: bool| {
            tun_rs::DeviceBuilder::new()
                .name("zt0")
                .mtu(mtu)
                .offload(offload)
                .build_sync()
        };
        match build(true) {
            Ok(d) => Ok((d, true)),
            Err(_) => build(false)
                .map(|d| (d, false))
                .map_err(|e| named(e, "cannot create the TUN device of namespace", name)),
        }
    })
}

/// An error with what was done and to what, keeping its kind.
fn named(e: io::Error, what: &str, on: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {on}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_map_to_proc_files() {
        assert_eq!(
            sysctl_path("net.ipv4.conf.all.rp_filter"),
            Path::new("/proc/sys/net/ipv4/conf/all/rp_filter")
        );
        assert_eq!(path_of("zn-a-010203"), Path::new("/run/netns/zn-a-010203"));
    }
}
