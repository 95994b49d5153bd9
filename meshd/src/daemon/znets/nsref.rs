//! Names on the host: a container's namespace as the user gives it (checked to be a container's
//! network namespace, never the host's or a router's), the router namespace of a znet, the
//! router-side interface of a container, and the interface name inside a container.
//!
//! The syntax checks are pure; [`NsRef::parse`] then looks at the file (it runs on the znet
//! worker). Nothing here changes the system.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

use super::netns::RUN_DIR;

/// A container's network namespace, by name (under `/run/netns`) or by process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsRef {
    /// `/run/netns/NAME` (also given as `/var/run/netns/NAME`).
    Name(String),
    /// `/proc/PID/ns/net`.
    Path(PathBuf),
}

impl NsRef {
    /// Reads a namespace name or path, without looking at the system.
    pub fn parse_syntax(s: &str) -> anyhow::Result<NsRef> {
        let ok = !s.is_empty()
            && !s.starts_with('-')
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./@:".contains(&b))
            && !s.split('/').any(|c| c == ".." || c == ".");
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
                // A namespace under /run/netns is known by name.
                ["", "run", "netns", n] | ["", "var", "run", "netns", n] if !n.is_empty() => {
                    NsRef::Name(n.to_string())
                }
                ["", "proc", pid, "ns", "net"]
                    if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) =>
                {
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
        Ok(r)
    }

    /// Reads a namespace name or path and checks that it is a container's network namespace.
    pub fn parse(s: &str) -> anyhow::Result<NsRef> {
        let r = NsRef::parse_syntax(s)?;
        if !r.file().exists() {
            bail!("there is no network namespace {s:?} (`ip netns list` shows the named ones)");
        }
        r.identity(s)?;
        Ok(r)
    }

    /// The namespace's file.
    pub fn file(&self) -> PathBuf {
        match self {
            NsRef::Name(n) => Path::new(RUN_DIR).join(n),
            NsRef::Path(p) => p.clone(),
        }
    }

    /// The namespace's inode: checked to be a network namespace other than the host's (this
    /// daemon's, or init's), so that nobody attaches the host itself.
    pub fn identity(&self, shown: &str) -> anyhow::Result<u64> {
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
}

/// The router namespace of znet `name` of the node with key `me`: the key's first bytes make
/// it unique even with several daemons on one host (tests, or a node per namespace).
pub fn router_ns_of(name: &str, me: &[u8; 32]) -> String {
    format!("zn-{name}-{:02x}{:02x}{:02x}", me[0], me[1], me[2])
}

/// The znet name of router namespace `ns` if it is one of the node with key `me`.
pub fn znet_of_router_ns<'a>(ns: &'a str, me: &[u8; 32]) -> Option<&'a str> {
    let suffix = format!("-{:02x}{:02x}{:02x}", me[0], me[1], me[2]);
    ns.strip_prefix("zn-").and_then(|r| r.strip_suffix(&suffix))
}

/// The router-side interface for a container namespace: `zv` + 8 hex digits of a hash.
pub fn router_if(netns: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(netns.as_bytes());
    format!("zv{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
}

/// Checks an interface name for inside a container.
pub fn check_ifname(ifname: &str) -> anyhow::Result<()> {
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname.contains('/')
        || ifname.contains(char::is_whitespace)
        || ifname.contains('\0')
        || ifname == "."
        || ifname == ".."
    {
        bail!("interface name {ifname:?} is not valid (1 to 15 characters, no '/')");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_read() {
        assert_eq!(
            NsRef::parse_syntax("c1").expect("name"),
            NsRef::Name("c1".into())
        );
        assert_eq!(
            NsRef::parse_syntax("/run/netns/c1").expect("path"),
            NsRef::Name("c1".into())
        );
        assert_eq!(
            NsRef::parse_syntax("/var/run/netns/c1").expect("path"),
            NsRef::Name("c1".into())
        );
        assert_eq!(
            NsRef::parse_syntax("/proc/42/ns/net").expect("proc"),
            NsRef::Path("/proc/42/ns/net".into())
        );
        assert_eq!(NsRef::Name("c1".into()).file(), Path::new("/run/netns/c1"));
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "-n",
            "a b",
            "run/netns/c1",
            "/run/netns/../c1",
            "/run/netns/",
            "/etc/passwd",
            "/proc/self/ns/net",
            "/proc/42/ns/mnt",
            "/run/netns/sub/c1",
            "zn-shop-010203",
            "/run/netns/zn-shop-010203",
            "x;rm",
        ] {
            assert!(NsRef::parse_syntax(bad).is_err(), "{bad:?} accepted");
        }
        assert!(NsRef::parse_syntax(&"a".repeat(256)).is_err());
    }

    #[test]
    fn router_names_round_trip() {
        let me = [0xab, 0x01, 0xff, 9];
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&me);
        let ns = router_ns_of("shop", &key);
        assert_eq!(ns, "zn-shop-ab01ff");
        assert_eq!(znet_of_router_ns(&ns, &key), Some("shop"));
        assert_eq!(znet_of_router_ns("zn-shop-000000", &key), None);
        assert_eq!(znet_of_router_ns("c1", &key), None);
        let i = router_if("c1");
        assert_eq!((i.len(), &i[..2]), (10, "zv"));
        assert_ne!(router_if("c1"), router_if("c2"));
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("zn0").is_ok());
        assert!(check_ifname("eth1").is_ok());
        for bad in ["", "a/b", "a b", "sixteen-chars-xx", ".."] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
