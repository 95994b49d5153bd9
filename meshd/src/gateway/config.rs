//! The `[gateway]` table of `meshd.toml`: where public connections are accepted, the port
//! publishers dial on the overlay, and the limits.
//!
//! ```toml
//! [gateway]
//! listen = ["0.0.0.0:443", "0.0.0.0:80"]   # TLS (routed by SNI) or HTTP (by Host), by first bytes
//! mesh_port = 7443                         # publishers dial [this node's address]:7443
//!
//! [[gateway.tcp]]                          # a raw TCP port carries one name
//! listen = "0.0.0.0:2222"
//! name = "ssh.shop.example"
//! ```

use super::peek::dns_name;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// The `[gateway]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Public `ADDRESS:PORT`s for TLS and HTTP (told apart by the first bytes).
    pub listen: Vec<String>,
    /// Raw TCP ports, each carrying one published name.
    pub tcp: Vec<TcpPort>,
    /// The TCP port publishers dial on this node's overlay address (never on the uplink).
    pub mesh_port: u16,
    /// Most public connections open at once.
    pub max_connections: usize,
    /// Most public connections open at once from one client IP address.
    pub max_per_client: usize,
    /// Most public connections open at once to one service.
    pub max_per_service: usize,
    /// Most names held on this gateway (by all publishers).
    pub max_names: usize,
    /// Most publisher connections at once.
    pub max_publishers: usize,
    /// Seconds a public connection has to send the name it asks for.
    pub peek_timeout: u64,
    /// Seconds a public connection may sit idle (no byte either way) before it is closed.
    pub idle_timeout: u64,
}

/// One `[[gateway.tcp]]` port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpPort {
    /// `ADDRESS:PORT`.
    pub listen: String,
    /// The published name (kind `tcp`) it carries.
    pub name: String,
}

/// The default `mesh_port`.
pub const DEFAULT_MESH_PORT: u16 = 7443;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: vec![],
            tcp: vec![],
            mesh_port: DEFAULT_MESH_PORT,
            max_connections: 10_000,
            max_per_client: 256,
            max_per_service: 1_000,
            max_names: 1_000,
            max_publishers: 1_000,
            peek_timeout: 10,
            idle_timeout: 300,
        }
    }
}

/// A public listener, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Where.
    pub addr: SocketAddr,
    /// `None`: TLS or HTTP, by name; `Some(name)`: raw TCP for that name.
    pub name: Option<String>,
}

impl GatewayConfig {
    /// The listeners, checked: every problem names the key and the fix.
    pub fn listeners(&self) -> anyhow::Result<Vec<Listener>> {
        let mut out = Vec::new();
        let addr = |key: &str, s: &str| -> anyhow::Result<SocketAddr> {
            s.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{key}: {s:?} is not ADDRESS:PORT (write \"0.0.0.0:443\" or \"[::]:443\")"
                )
            })
        };
        for s in &self.listen {
            out.push(Listener {
                addr: addr("gateway.listen", s)?,
                name: None,
            });
        }
        for t in &self.tcp {
            let name = dns_name(t.name.as_bytes()).ok_or_else(|| {
                anyhow::anyhow!("gateway.tcp: name {:?} is not a DNS name", t.name)
            })?;
            out.push(Listener {
                addr: addr("gateway.tcp.listen", &t.listen)?,
                name: Some(name),
            });
        }
        for (i, a) in out.iter().enumerate() {
            if out[..i].iter().any(|b| b.addr == a.addr) {
                anyhow::bail!("gateway: {} is listed twice", a.addr);
            }
        }
        Ok(out)
    }

    /// Checks the table (at start: a bad gateway section stops meshd with the reason).
    pub fn validate(&self) -> anyhow::Result<()> {
        let l = self.listeners()?;
        if l.is_empty() {
            anyhow::bail!(
                "[gateway] has no listen address; add listen = [\"0.0.0.0:443\"] (or remove \
                 [gateway] if this node is not a gateway)"
            );
        }
        if self.mesh_port == 0 {
            anyhow::bail!("gateway.mesh_port must not be 0 (default {DEFAULT_MESH_PORT})");
        }
        for (k, v) in [
            ("max_connections", self.max_connections),
            ("max_per_client", self.max_per_client),
            ("max_per_service", self.max_per_service),
            ("max_names", self.max_names),
            ("max_publishers", self.max_publishers),
        ] {
            if v == 0 {
                anyhow::bail!("gateway.{k} must be at least 1");
            }
        }
        if self.max_per_service > 4096 {
            anyhow::bail!("gateway.max_per_service is at most 4096 (connections per service)");
        }
        if self.peek_timeout == 0 || self.idle_timeout == 0 {
            anyhow::bail!("gateway.peek_timeout and gateway.idle_timeout are seconds, at least 1");
        }
        Ok(())
    }

    /// `peek_timeout` as a duration.
    pub fn peek_timeout(&self) -> Duration {
        Duration::from_secs(self.peek_timeout)
    }

    /// `idle_timeout` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_the_key_and_the_fix() {
        let mut g = GatewayConfig::default();
        let e = g.validate().expect_err("no listener").to_string();
        assert!(e.contains("listen = ["), "{e}");
        g.listen = vec!["443".into()];
        let e = g.validate().expect_err("bad address").to_string();
        assert!(
            e.contains("gateway.listen") && e.contains("0.0.0.0:443"),
            "{e}"
        );
        g.listen = vec!["0.0.0.0:443".into()];
        g.tcp = vec![TcpPort {
            listen: "0.0.0.0:443".into(),
            name: "ssh.example".into(),
        }];
        assert!(
            g.validate()
                .expect_err("twice")
                .to_string()
                .contains("twice")
        );
        g.tcp[0].listen = "0.0.0.0:2222".into();
        g.tcp[0].name = "bad name".into();
        assert!(
            g.validate()
                .expect_err("name")
                .to_string()
                .contains("not a DNS name")
        );
        g.tcp[0].name = "SSH.Example.".into();
        g.validate().expect("valid");
        assert_eq!(
            g.listeners().expect("ok")[1].name.as_deref(),
            Some("ssh.example")
        );
    }
}
