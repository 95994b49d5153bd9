//! Configuration: a TOML file, every key overridable by a `MESHD_*` environment variable, and
//! embedded defaults so that `sudo meshd` with no file just works.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `state_dir` | `/var/lib/meshd` | where the daemon keeps state (runtime-added peers) |
//! | `identity_file` | `<state_dir>/identity.key` | the node's secret key (created on first start, mode 0600) |
//! | `listen` | `["udp://[::]:7820"]` | where to accept links: `udp://`, `tcp://`, `quic://` ADDRESS:PORT |
//! | `peers` | `[]` | peers to link with: `udp://`, `tcp://` or `quic://` HOST:PORT`[?key=PUBKEY]` |
//! | `admin_socket` | `/run/meshd/admin.sock` | the control socket `meshctl` talks to |
//! | `admin_group` | none | a group whose members may use the control socket (besides root) |
//! | `log_level` | `info` | `error`, `warn`, `info`, `debug`, `trace` or a tracing filter; `RUST_LOG` wins |
//! | `max_peers` | `1024` | most links at once; beyond, only configured peers may link |
//! | `eligible_roots` | `[]` (any) | public keys allowed to be the root of the tree (see `docs/ROUTING.md`) |
//! | `policy_file` | none | the circle policy (see `docs/POLICY.md`); none: everything allowed |
//! | `cipher` | `auto` | `auto`, `aes-256-gcm` or `chacha20-poly1305` (for links this node initiates) |
//! | `tun.name` | `mesh0` | name of the TUN interface |
//! | `tun.mtu` | `1420` | MTU of the TUN interface |
//! | `tun.offload` | `true` | use TSO/GRO on the TUN device (falls back if the kernel refuses) |
//! | `tun.writers` | `0` | threads writing to the TUN device (each flow on one; at most 8); `0`: the event loop writes |
//! | `tun.seal_threads` | `0` (auto: half the cores, at least 1) | threads that encrypt the direct messages made of what the TUN devices give (the link peer is the destination), the event loop's among them (at most 16); a batch still leaves in the order decided |
//! | `discovery.enabled` | `true` | announce this node and link with neighbours on the LAN (IPv6 link-local multicast) |
//! | `discovery.interfaces` | `[]` (all) | interfaces to discover on; empty: every multicast interface that is up |
//! | `discovery.exclude` | `[]` | interfaces never to discover on (wins over `interfaces`) |
//! | `[gateway]` | none | this node is a gateway for published services (`docs/GATEWAY.md`; keys in `gateway::config`) |
//! | `znet.exit` | `[]` | znets (by name) this node may be the exit of, when their manifest's `egress` names it (see `docs/ZNET.md`) |
//! | `name_ttl` | `3600` | seconds a name record this node signs stays valid (re-published every third of it; `docs/NAMES.md`) |
//! | `dns.listen` | none (off) | where the DNS responder answers for names under `dns.suffix`, UDP and TCP (`"127.0.0.1:53"`, `"[fdxx::1]:53"`) |
//! | `dns.suffix` | `mesh` | the DNS suffix of mesh names: `shop.mesh`, `<key in base32>.mesh` |
//! | `dns.forward` | none | an upstream resolver (`"192.0.2.53:53"`) for every other name; without it they are refused |
//! | `metrics_listen` | none (off) | where `GET /metrics` answers in the Prometheus/OpenMetrics format: `"9820"` (loopback, 127.0.0.1) or `"ADDRESS:PORT"` |
//!
//! Environment: `MESHD_` + the key in capitals, with `__` between a table and its key:
//! `MESHD_LOG_LEVEL=debug`, `MESHD_TUN__NAME=mesh1`, `MESHD_PEERS=udp://a:7820,udp://b:7820`.
//! Relative paths in a file are relative to the file's directory.

use crate::uri::PeerUri;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default UDP port.
pub const DEFAULT_PORT: u16 = 7820;
/// The default lifetime of the name records this node signs, in seconds.
pub const DEFAULT_NAME_TTL: u64 = 3600;
/// The shortest `name_ttl` (tests use it; a record is re-published every third of it).
pub const MIN_NAME_TTL: u64 = 6;

/// The daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where state lives.
    pub state_dir: PathBuf,
    /// The key file; `None` means `<state_dir>/identity.key`.
    pub identity_file: Option<PathBuf>,
    /// Listen URIs.
    pub listen: Vec<String>,
    /// Peer URIs.
    pub peers: Vec<String>,
    /// Control socket path.
    pub admin_socket: PathBuf,
    /// Group allowed on the control socket.
    pub admin_group: Option<String>,
    /// Log filter.
    pub log_level: String,
    /// Cipher for initiated links.
    pub cipher: String,
    /// Most links at once (configured peers always link).
    pub max_peers: usize,
    /// Keys allowed to be root; empty means any.
    pub eligible_roots: Vec<String>,
    /// The circle policy file; `None`: everything allowed.
    pub policy_file: Option<PathBuf>,
    /// TUN settings.
    pub tun: TunConfig,
    /// LAN discovery settings.
    pub discovery: DiscoveryConfig,
    /// `[gateway]`: this node accepts public connections for published services.
    pub gateway: Option<crate::gateway::config::GatewayConfig>,
    /// znet settings.
    pub znet: ZnetConfig,
    /// Seconds a name record this node signs (a claim) stays valid; re-published every third.
    pub name_ttl: u64,
    /// `[dns]`: the DNS responder for mesh names.
    pub dns: DnsConfig,
    /// Where the metrics endpoint listens; `None`: off.
    pub metrics_listen: Option<String>,
    /// `MESHD_*` variables that name no key (reported at start, otherwise ignored).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// The `[tun]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunConfig {
    /// Interface name.
    pub name: String,
    /// Interface MTU.
    pub mtu: u16,
    /// TSO/GRO.
    pub offload: bool,
    /// Threads that write packets for this node's programs to the device (the receiving
    /// TCP stack runs in those writes), each flow on one of them; 0 (the default): the event
    /// loop writes them. On a 2-core machine running both ends of a transfer, a writer
    /// thread cost 7-12% of single-stream throughput and added a thread wake-up to every idle
    /// packet (`docs/BENCHMARKS.md`, "TUN writer threads"): they pay only where cores are
    /// idle, which is the user's call until a machine with more cores has measured it.
    pub writers: usize,
    /// Threads that encrypt the direct messages (the link peer is the destination) made of
    /// the packets read from the TUN devices, the event loop's among them: the loop decides
    /// each packet of a batch in order, the encryptions run across the threads, and the batch
    /// is sent in order once they are done (`crate::seal_pool`); routed messages are sealed
    /// by the loop. 0 (the default): one per two cores, at least 1; 1: the loop alone.
    pub seal_threads: usize,
}

/// The `[znet]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZnetConfig {
    /// Names of the znets whose traffic this node may carry out to its uplink as their exit
    /// member (when the manifest's `egress` names this node). Without it, a manifest alone
    /// cannot make this node a NAT for other nodes' containers.
    pub exit: Vec<String>,
}

/// The `[dns]` table: the DNS responder (`docs/NAMES.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Where to answer (UDP and TCP); `None`: no responder.
    pub listen: Option<String>,
    /// The suffix of mesh names (one or more DNS labels, no dots at the ends).
    pub suffix: String,
    /// An upstream resolver for every name outside the suffix; `None`: those are refused.
    pub forward: Option<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: None,
            suffix: "mesh".into(),
            forward: None,
        }
    }
}

impl DnsConfig {
    /// The responder's address, if it is on.
    pub fn listen_addr(&self) -> anyhow::Result<Option<std::net::SocketAddr>> {
        self.listen
            .as_deref()
            .map(|l| {
                l.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "dns.listen: {l:?} is not an address and port; write \"127.0.0.1:53\" \
                         or \"[fd00::53]:53\""
                    )
                })
            })
            .transpose()
    }

    /// The upstream resolver, if any.
    pub fn forward_addr(&self) -> anyhow::Result<Option<std::net::SocketAddr>> {
        self.forward
            .as_deref()
            .map(|l| {
                l.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "dns.forward: {l:?} is not an address and port; write \"192.0.2.53:53\" \
                         (an IP address: meshd does not resolve its own resolver)"
                    )
                })
            })
            .transpose()
    }

    /// Checks the suffix: DNS labels of `a-z 0-9 -`, dot-separated, 1 to 200 bytes.
    pub fn check_suffix(&self) -> anyhow::Result<()> {
        let s = &self.suffix;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if s.is_empty() || s.len() > 200 || !s.split('.').all(label_ok) {
            bail!(
                "dns.suffix: {s:?} is not a DNS suffix; write lowercase labels of a-z, 0-9 and \
                 '-' separated by dots, without a leading or trailing dot (\"mesh\", \"mesh.example\")"
            );
        }
        Ok(())
    }
}

/// The `[discovery]` table: LAN discovery by IPv6 link-local multicast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Announce and listen at all.
    pub enabled: bool,
    /// Interfaces to use; empty: every interface that is up and multicast-capable (never
    /// loopback, meshd's own TUN or the znets' devices).
    pub interfaces: Vec<String>,
    /// Interfaces never to use, even if `interfaces` names them.
    pub exclude: Vec<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: true,
            interfaces: vec![],
            exclude: vec![],
        }
    }
}

impl DiscoveryConfig {
    /// Whether discovery may use the interface `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.enabled
            && !self.exclude.iter().any(|n| n == name)
            && (self.interfaces.is_empty() || self.interfaces.iter().any(|n| n == name))
    }
}

impl Default for TunConfig {
    fn default() -> Self {
        TunConfig {
            name: "mesh0".into(),
            mtu: 1420,
            offload: true,
            writers: 0,
            seal_threads: 0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: "/var/lib/meshd".into(),
            identity_file: None,
            listen: vec![format!("udp://[::]:{DEFAULT_PORT}")],
            peers: vec![],
            admin_socket: "/run/meshd/admin.sock".into(),
            admin_group: None,
            log_level: "info".into(),
            cipher: "auto".into(),
            max_peers: 1024,
            eligible_roots: vec![],
            policy_file: None,
            tun: TunConfig::default(),
            discovery: DiscoveryConfig::default(),
            gateway: None,
            znet: ZnetConfig::default(),
            name_ttl: DEFAULT_NAME_TTL,
            dns: DnsConfig::default(),
            metrics_listen: None,
            ignored_env: vec![],
        }
    }
}

/// The environment variable of every key: `MESHD_LOG_LEVEL`, `MESHD_TUN__NAME`, …
fn known_env_keys() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(Config::default()) {
        for (k, v) in t {
            match v {
                toml::Value::Table(inner) => {
                    for k2 in inner.keys() {
                        out.push(format!("MESHD_{}__{}", k.to_uppercase(), k2.to_uppercase()));
                    }
                }
                _ => out.push(format!("MESHD_{}", k.to_uppercase())),
            }
        }
    }
    // Keys whose default is absent (None) do not appear in the serialised defaults.
    out.push("MESHD_IDENTITY_FILE".into());
    out.push("MESHD_ADMIN_GROUP".into());
    out.push("MESHD_POLICY_FILE".into());
    out.push("MESHD_DNS__LISTEN".into());
    out.push("MESHD_DNS__FORWARD".into());
    out.push("MESHD_METRICS_LISTEN".into());
    out
}

/// The file `meshd init-config` writes: every key, commented, with its default.
pub const DEFAULT_CONFIG_TOML: &str = r#"# meshd configuration (Planetary LAN). Every key is optional; shown are the defaults.
# Each key can be overridden by an environment variable: MESHD_<KEY>, and MESHD_TUN__<KEY>
# for the [tun] table (for example MESHD_LOG_LEVEL=debug, MESHD_TUN__NAME=mesh1).

# Directory for the daemon's state (peers added with `meshctl peer add`).
state_dir = "/var/lib/meshd"

# The node's secret key. Created on first start with mode 0600; the node's address is derived
# from it, so keep it (and back it up) to keep the address. Default: <state_dir>/identity.key
# identity_file = "/var/lib/meshd/identity.key"

# Where to accept links. udp://[::]:PORT listens on IPv6 and IPv4. Add tcp://[::]:7820 for
# peers on networks that block UDP, and quic://[::]:7821 (a UDP port of its own) for QUIC.
listen = ["udp://[::]:7820"]

# Peers to link with: udp://HOST:PORT (or tcp://, quic://), optionally pinned to the key the
# peer must present: udp://203.0.113.7:7820?key=<64 hex digits>. A pinned peer presenting
# another key is refused.
peers = []

# Control socket for meshctl; only root and admin_group may use it.
admin_socket = "/run/meshd/admin.sock"
# admin_group = "meshadmin"

# error, warn, info, debug, trace, or a tracing filter such as "meshd=debug". RUST_LOG wins.
log_level = "info"

# AEAD for links this node initiates: auto (AES-256-GCM if the CPU has AES instructions,
# else ChaCha20-Poly1305), aes-256-gcm, chacha20-poly1305.
cipher = "auto"

# Most links at once. Beyond it, links from peers that are not in `peers` are refused, so that
# strangers cannot use up this node's memory; configured peers always link.
max_peers = 1024

# Keys (64 hex digits) allowed to be the root of the routing tree. Empty: any key, and the
# lowest key wins, so whoever grinds a low key becomes root. List trusted, well-connected
# nodes here (the same list on every node) to take that away. See docs/ROUTING.md.
eligible_roots = []

# The circle policy: who may link with this node, send it packets (by protocol and port), be
# the root of its tree, and whom it may send to. Reloaded by itself when the file changes (or
# with `meshctl policy reload`); a file with errors is refused and the previous policy stays.
# None: everything is allowed. See docs/POLICY.md.
# policy_file = "/etc/meshd/policy.toml"

# Seconds a name record this node signs (`meshctl name claim`) stays valid; it is re-published
# every third of it, and a name that is not renewed frees at the end of it. At most 86400.
name_ttl = 3600

# The Prometheus/OpenMetrics endpoint (GET /metrics; docs/OPERATING.md). Off unless set; a
# bare port listens on loopback only.
# metrics_listen = "9820"

[tun]
name = "mesh0"
mtu = 1420
# TCP segmentation/receive offload on the TUN device; turned off by itself if the kernel refuses.
offload = true
# Threads that write packets for this node's programs to the TUN device (the kernel's TCP stack
# runs in those writes), each flow always on the same one; at most 8. 0: the event loop writes
# them. Worth trying on a receiving server with idle cores; each adds a thread wake-up.
writers = 0
# Threads that encrypt what the TUN device gives, for peers linked directly (routed packets
# are sealed by the event loop), the event loop's among them (at most 16); the loop decides
# every packet in order and a batch leaves in order. 0: one per two cores (at least 1); 1: the
# event loop alone.
seal_threads = 0

# LAN discovery: every second this node announces its key (signed) to ff02::706c:616e port 7822
# on each chosen interface, and links with the neighbours it hears, if the circle policy's
# `peer` rules allow them. Their key is pinned; they are not saved, and are forgotten 10 s
# after they fall silent.
[discovery]
enabled = true
# Interfaces to use (names). Empty: every interface that is up and can multicast, except
# loopback and meshd's own devices.
interfaces = []
# Interfaces never to use, e.g. ["eth0"] for a network you do not trust.
exclude = []

# znets (private networks of containers, see docs/ZNET.md).
[znet]
# znets (by name) this node may be the exit of: their containers on other nodes reach the
# outside through this node's uplink, NATed, when the manifest says egress = "<this node's key>".
# A manifest alone cannot make this node an exit.
exit = []

# The DNS responder for mesh names (docs/NAMES.md): shop.mesh and <key in base32>.mesh
# resolve to AAAA (the owner's address) and TXT (its key). Off unless `listen` is given.
[dns]
# listen = "127.0.0.1:53"        # UDP and TCP; or the TUN's address, "[fdxx::1]:53"
suffix = "mesh"
# forward = "192.0.2.53:53"      # an upstream resolver for every other name; else REFUSED

# A gateway for published services (docs/GATEWAY.md): accepts public TCP and carries it to
# the containers whose nodes publish through this one (policy action "publish"). Off unless
# this section is given.
# [gateway]
# listen = ["0.0.0.0:443", "0.0.0.0:80"]   # TLS by SNI (passed through) or HTTP by Host
# mesh_port = 7443                         # publishers dial it on this node's overlay address
# max_connections = 10000
# max_per_client = 256
# max_per_service = 1000
# max_names = 1000
# max_publishers = 1000
# peek_timeout = 10                        # seconds to send the name
# idle_timeout = 300                       # seconds without a byte either way
# [[gateway.tcp]]                          # a raw TCP port for one name
# listen = "0.0.0.0:2222"
# name = "ssh.shop.example.com"
"#;

impl Config {
    /// Loads the configuration: defaults, then `file` (if given), then `MESHD_*` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut b = config::Config::builder();
        if let Some(f) = file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read config file {}", f.display()))?;
            b = b.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        // Only variables that name a key: others (a script's own MESHD_SOMETHING) are reported,
        // not fatal.
        let known = known_env_keys();
        let mut ignored = Vec::new();
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("MESHD_") && k != "MESHD_CONFIG")
            .filter(|(k, _)| {
                let ok = known.iter().any(|n| n == k);
                if !ok {
                    ignored.push(k.clone());
                }
                ok
            })
            .collect();
        b = b.add_source(
            config::Environment::with_prefix("MESHD")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("listen")
                .with_list_parse_key("peers")
                .with_list_parse_key("eligible_roots")
                .with_list_parse_key("discovery.interfaces")
                .with_list_parse_key("discovery.exclude")
                .with_list_parse_key("znet.exit")
                .try_parsing(true)
                .source(Some(env)),
        );
        let where_ = match file {
            Some(f) => format!("{} or the MESHD_* environment", f.display()),
            None => "the MESHD_* environment".to_string(),
        };
        let mut cfg: Config = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| anyhow::anyhow!("invalid configuration in {where_}: {e}"))?;
        if let Some(dir) = file.and_then(Path::parent) {
            cfg.make_paths_absolute(dir);
        }
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration in {where_}: {e}"))?;
        ignored.sort();
        cfg.ignored_env = ignored;
        Ok(cfg)
    }

    fn make_paths_absolute(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.state_dir);
        fix(&mut self.admin_socket);
        if let Some(p) = self.identity_file.as_mut() {
            fix(p);
        }
        if let Some(p) = self.policy_file.as_mut() {
            fix(p);
        }
    }

    /// The key file path.
    pub fn identity_path(&self) -> PathBuf {
        self.identity_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join("identity.key"))
    }

    /// Parsed peer URIs.
    pub fn peer_uris(&self) -> anyhow::Result<Vec<PeerUri>> {
        self.peers
            .iter()
            .map(|p| p.parse().map_err(|e| anyhow::anyhow!("peers: {e}")))
            .collect()
    }

    /// Parsed listen URIs, every transport.
    pub fn listen_endpoints(&self) -> anyhow::Result<Vec<crate::uri::Endpoint>> {
        let eps = self
            .listen
            .iter()
            .map(|l| {
                let u: PeerUri = l.parse().map_err(|e| anyhow::anyhow!("listen: {e}"))?;
                if u.key.is_some() {
                    bail!("listen: {l:?} has a ?key=, which only peers take");
                }
                u.link_endpoint().ok_or_else(|| {
                    anyhow::anyhow!("listen: {l:?} must name an IP address, not a host name")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for q in eps.iter().filter(|e| e.scheme == crate::uri::Scheme::Quic) {
            let clash = eps.iter().any(|u| {
                u.scheme == crate::uri::Scheme::Udp
                    && u.addr.port() == q.addr.port()
                    && q.addr.port() != 0
            });
            if self.discovery.enabled && q.addr.is_ipv6() && q.addr.port() == crate::discovery::PORT
            {
                bail!(
                    "listen: {q} uses UDP port {}, which LAN discovery listens on; give QUIC \
                     another port, e.g. quic://[::]:7821",
                    crate::discovery::PORT
                );
            }
            if clash {
                bail!(
                    "listen: {q} and udp:// use the same UDP port {}; give QUIC a port of its \
                     own, e.g. quic://[::]:7821",
                    q.addr.port()
                );
            }
        }
        Ok(eps)
    }

    /// Parsed UDP listen addresses.
    pub fn listen_addrs(&self) -> anyhow::Result<Vec<std::net::SocketAddr>> {
        Ok(self
            .listen_endpoints()?
            .into_iter()
            .filter(|e| e.scheme == crate::uri::Scheme::Udp)
            .map(|e| e.addr)
            .collect())
    }

    /// The root eligibility set for the router (`None`: any key).
    pub fn eligible_roots(&self) -> anyhow::Result<Option<std::collections::BTreeSet<[u8; 32]>>> {
        if self.eligible_roots.is_empty() {
            return Ok(None);
        }
        self.eligible_roots
            .iter()
            .map(|k| {
                k.parse::<crate::identity::PublicKey>()
                    .map(|k| k.0)
                    .map_err(|e| anyhow::anyhow!("eligible_roots: {k:?}: {e}"))
            })
            .collect::<anyhow::Result<_>>()
            .map(Some)
    }

    /// The cipher for initiated links.
    pub fn suite(&self) -> anyhow::Result<crate::wire::Suite> {
        use crate::wire::Suite;
        match self.cipher.as_str() {
            "auto" => Ok(crate::noise::preferred_suite()),
            "aes-256-gcm" => Ok(Suite::AesGcm),
            "chacha20-poly1305" => Ok(Suite::ChaChaPoly),
            other => {
                bail!("cipher: unknown value {other:?}; use auto, aes-256-gcm or chacha20-poly1305")
            }
        }
    }

    /// The metrics endpoint's address, if it is on: a bare port means loopback.
    pub fn metrics_addr(&self) -> anyhow::Result<Option<std::net::SocketAddr>> {
        let Some(l) = self.metrics_listen.as_deref() else {
            return Ok(None);
        };
        if let Ok(port) = l.parse::<u16>() {
            return Ok(Some((std::net::Ipv4Addr::LOCALHOST, port).into()));
        }
        l.parse().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "metrics_listen: {l:?} is not a port or an address and port; write \"9820\" \
                 (loopback) or \"127.0.0.1:9820\", \"[::1]:9820\""
            )
        })
    }

    /// Checks everything that can be checked without touching the system.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.peer_uris()?;
        if self.listen_endpoints()?.is_empty() {
            bail!("listen: at least one listen URI is needed, e.g. udp://[::]:{DEFAULT_PORT}");
        }
        self.suite()?;
        self.eligible_roots()?;
        if let Some(g) = &self.gateway {
            g.validate()?;
        }
        self.dns.listen_addr()?;
        self.dns.forward_addr()?;
        self.dns.check_suffix()?;
        self.metrics_addr()?;
        if !(MIN_NAME_TTL..=86_400).contains(&self.name_ttl) {
            bail!(
                "name_ttl: {} is out of range {MIN_NAME_TTL}..=86400 (seconds a name record stays valid)",
                self.name_ttl
            );
        }
        if self.max_peers == 0 {
            bail!("max_peers: must be at least 1");
        }
        let n = &self.tun.name;
        if n.is_empty() || n.len() > 15 || n.contains('/') || n.contains(char::is_whitespace) {
            bail!("tun.name: {n:?} is not a valid interface name (1 to 15 characters, no '/')");
        }
        for n in &self.znet.exit {
            let ok = !n.is_empty()
                && n.len() <= 12
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                bail!("znet.exit: {n:?} is not a znet name (1 to 12 of a-z, 0-9 and '-')");
            }
        }
        let min = 1280;
        let max = 65_535 - 48 - crate::wire::TRANSPORT_OVERHEAD as u16 - 1;
        if self.tun.mtu < min || self.tun.mtu > max {
            bail!(
                "tun.mtu: {} is out of range {min}..={max} (IPv6 needs at least 1280)",
                self.tun.mtu
            );
        }
        let most = crate::daemon::MAX_TUN_WRITERS;
        if self.tun.writers > most {
            let n = self.tun.writers;
            bail!(
                "tun.writers: {n} is more than {most}; use 0..={most} (0: the event loop writes)"
            );
        }
        let most = crate::seal_pool::MAX_SEAL_THREADS;
        if self.tun.seal_threads > most {
            let n = self.tun.seal_threads;
            bail!(
                "tun.seal_threads: {n} is more than {most}; use 0..={most} (0: one per two cores)"
            );
        }
        Ok(())
    }

    /// The threads that encrypt TUN packets, `tun.seal_threads` with 0 made concrete.
    pub fn seal_threads(&self) -> usize {
        match self.tun.seal_threads {
            0 => crate::seal_pool::SealPool::default_threads(),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_commented_file() {
        let from_file: Config = toml::from_str(DEFAULT_CONFIG_TOML).expect("default file parses");
        assert_eq!(from_file, Config::default());
        assert_eq!(
            Config::load_with_env(None, env(&[])).expect("defaults"),
            Config::default()
        );
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("meshd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("m.toml");
        std::fs::write(
            &f,
            "identity_file = \"id.key\"\npeers = [\"udp://10.0.0.2:7820\"]\n[tun]\nname = \"a0\"\n",
        )
        .expect("write");
        let c = Config::load_with_env(Some(&f), env(&[])).expect("load");
        assert_eq!(c.identity_path(), dir.join("id.key"));
        assert_eq!(c.tun.name, "a0");
        let c = Config::load_with_env(
            Some(&f),
            env(&[
                ("MESHD_TUN__NAME", "b0"),
                ("MESHD_LOG_LEVEL", "debug"),
                ("MESHD_PEERS", "udp://10.0.0.3:1,udp://10.0.0.4:2"),
                ("MESHD_TUN__MTU", "1400"),
                ("OTHER", "x"),
            ]),
        )
        .expect("load");
        assert_eq!(c.tun.name, "b0");
        assert_eq!(c.tun.mtu, 1400);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.peers, vec!["udp://10.0.0.3:1", "udp://10.0.0.4:2"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("meshd-cfg-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("m.toml");
        for (text, want) in [
            ("peers = [\"10.0.0.2:7820\"]", "peers"),
            ("listn = []", "listn"),
            ("[tun]\nmtu = 500", "tun.mtu"),
            ("[tun]\nwriters = 100", "tun.writers"),
            ("[tun]\nwriters = -1", "writers"),
            ("[tun]\nseal_threads = 17", "tun.seal_threads"),
            (
                "listen = [\"quic://[::]:7822\"]",
                "LAN discovery listens on",
            ),
            (
                "listen = [\"udp://[::]:7821\", \"quic://[::]:7821\"]",
                "same UDP port 7821",
            ),
            ("listen = [\"sctp://[::]:7821\"]", "unsupported scheme"),
            ("cipher = \"rot13\"", "cipher"),
            ("[znet]\nexit = [\"Shop!\"]", "znet.exit"),
            ("[znet]\nexits = []", "exits"),
            ("[dns]\nlisten = \"53\"", "dns.listen"),
            ("[dns]\nforward = \"dns.example:53\"", "dns.forward"),
            ("[dns]\nsuffix = \".mesh\"", "dns.suffix"),
            ("[dns]\nsuffix = \"Mesh\"", "dns.suffix"),
            ("name_ttl = 1", "name_ttl"),
            ("metrics_listen = \"localhost:9820\"", "metrics_listen"),
            ("metrics_listen = \"99999\"", "metrics_listen"),
            ("peers = 3", "peers"),
            ("this is not toml", "m.toml"),
            ("[gateway]\nmesh_port = 7443", "no listen address"),
            ("[gateway]\nlisten = [\"443\"]", "gateway.listen"),
            ("[gateway]\nlisten = [\"0.0.0.0:443\"]\nlisen = 1", "lisen"),
            (
                "[gateway]\nlisten = [\"0.0.0.0:443\"]\n[[gateway.tcp]]\nlisten = \"0.0.0.0:22\"\nname = \"a b\"",
                "not a DNS name",
            ),
        ] {
            std::fs::write(&f, text).expect("write");
            let e = format!(
                "{:#}",
                Config::load_with_env(Some(&f), env(&[])).expect_err(text)
            );
            assert!(e.contains(want), "{text}: {e}");
        }
        // A good gateway section.
        std::fs::write(
            &f,
            "[gateway]\nlisten = [\"0.0.0.0:443\"]\nmax_per_client = 10\n[[gateway.tcp]]\nlisten = \"0.0.0.0:2222\"\nname = \"ssh.example\"",
        )
        .expect("write");
        let c = Config::load_with_env(Some(&f), env(&[])).expect("gateway loads");
        let g = c.gateway.expect("a gateway");
        assert_eq!((g.max_per_client, g.mesh_port, g.tcp.len()), (10, 7443, 1));
        // A variable that names no key is reported, not fatal.
        std::fs::write(&f, "").expect("write");
        let c = Config::load_with_env(
            Some(&f),
            env(&[("MESHD_BIN", "x"), ("MESHD_TUN__NAME", "q0")]),
        )
        .expect("loads");
        assert_eq!(c.ignored_env, vec!["MESHD_BIN".to_string()]);
        assert_eq!(c.tun.name, "q0");
        let c = Config::load_with_env(Some(&f), env(&[("MESHD_ZNET__EXIT", "shop,web")]))
            .expect("loads");
        assert_eq!(c.znet.exit, vec!["shop".to_string(), "web".to_string()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
