//! The `ADD` result: the attachment meshd reports, checked, in the CNI result format.

use crate::*;

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Net<A> {
    pub(crate) addr: A,
    pub(crate) prefix: u8,
}

impl<A: std::fmt::Display> std::fmt::Display for Net<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `ADDR` (with prefix `default`) or `ADDR/PREFIX` (`PREFIX` ≤ `max`).
pub(crate) fn parse_net<A: FromStr>(s: &str, default: Option<u8>, max: u8) -> Option<Net<A>> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok().filter(|p| *p <= max)?),
        None => (s, default?),
    };
    Some(Net {
        addr: addr.parse().ok()?,
        prefix,
    })
}

/// An attachment's addresses, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addresses {
    pub(crate) v4: Net<Ipv4Addr>,
    pub(crate) gateway_v4: Ipv4Addr,
    pub(crate) range_v4: Net<Ipv4Addr>,
    pub(crate) v6: Option<Net<Ipv6Addr>>,
    pub(crate) gateway_v6: Option<Ipv6Addr>,
    pub(crate) range_v6: Option<Net<Ipv6Addr>>,
    pub(crate) mac: Option<String>,
    /// A default route through the IPv4 gateway (the znet has `egress`).
    pub(crate) default_route: bool,
}

/// Whether `s` is a MAC address as CNI results give it (`aa:bb:cc:dd:ee:ff`).
pub(crate) fn mac_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Addresses {
    /// Checks what meshd answered; the error says which field is wrong.
    pub(crate) fn of(a: &Attachment) -> Result<Addresses, String> {
        fn field<T>(name: &str, value: &str, v: Option<T>) -> Result<T, String> {
            v.ok_or_else(|| format!("{name} {value:?} is not valid"))
        }
        fn opt<T>(
            name: &str,
            value: Option<&String>,
            f: impl Fn(&str) -> Option<T>,
        ) -> Result<Option<T>, String> {
            value.map(|s| field(name, s, f(s))).transpose()
        }
        Ok(Addresses {
            v4: field("ipv4", &a.ipv4, parse_net(&a.ipv4, Some(V4_PREFIX), 32))?,
            gateway_v4: field("gateway_v4", &a.gateway_v4, a.gateway_v4.parse().ok())?,
            range_v4: field("range_v4", &a.range_v4, parse_net(&a.range_v4, None, 32))?,
            v6: opt("ipv6", a.ipv6.as_ref(), |s| {
                parse_net(s, Some(V6_PREFIX), 128)
            })?,
            gateway_v6: opt("gateway_v6", a.gateway_v6.as_ref(), |s| s.parse().ok())?,
            range_v6: opt("range_v6", a.range_v6.as_ref(), |s| parse_net(s, None, 128))?,
            mac: opt("mac", a.mac.as_ref(), |s| {
                mac_ok(s).then(|| s.to_lowercase())
            })?,
            default_route: a.default_route,
        })
    }
}

/// A list field of a `prevResult` (absent: empty).
pub(crate) fn prev_list(
    prev: Option<&Map<String, Value>>,
    key: &str,
) -> Result<Vec<Value>, CniError> {
    match prev.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.clone()),
        Some(other) => Err(invalid(
            format!("prevResult.{key} must be a list"),
            other.to_string(),
        )),
    }
}

/// The `ADD` result: `prev` (if any) with our interface, addresses and routes appended.
pub(crate) fn build_result(
    cfg: &Config,
    ifname: &str,
    netns: &str,
    a: &Addresses,
) -> Result<Value, CniError> {
    let prev = cfg.prev_result.as_ref();
    let legacy = cfg.version != "1.0.0"; // 0.3.x and 0.4.0 tag each address with its family
    let mut interfaces = prev_list(prev, "interfaces")?;
    let mut ips = prev_list(prev, "ips")?;
    let mut routes = prev_list(prev, "routes")?;
    let index = interfaces.len();
    // podman checks that a container interface has a MAC address.
    interfaces.push(match &a.mac {
        Some(mac) => json!({"name": ifname, "mac": mac, "sandbox": netns}),
        None => json!({"name": ifname, "sandbox": netns}),
    });
    let ip = |family: &str, address: String, gateway: Option<String>| {
        let mut m = Map::new();
        if legacy {
            m.insert("version".into(), family.into());
        }
        m.insert("address".into(), address.into());
        if let Some(g) = gateway {
            m.insert("gateway".into(), g.into());
        }
        m.insert("interface".into(), index.into());
        Value::Object(m)
    };
    ips.push(ip("4", a.v4.to_string(), Some(a.gateway_v4.to_string())));
    if let Some(v6) = a.v6 {
        ips.push(ip("6", v6.to_string(), a.gateway_v6.map(|g| g.to_string())));
    }
    routes.push(json!({"dst": a.range_v4.to_string(), "gw": a.gateway_v4.to_string()}));
    if a.default_route {
        // The znet has egress: everything beyond it through the router namespace.
        routes.push(json!({"dst": "0.0.0.0/0", "gw": a.gateway_v4.to_string()}));
    }
    if let Some(r) = a.range_v6 {
        routes.push(match a.gateway_v6 {
            Some(g) => json!({"dst": r.to_string(), "gw": g.to_string()}),
            None => json!({"dst": r.to_string()}),
        });
    }
    let dns = cfg
        .dns
        .clone()
        .or_else(|| prev.and_then(|p| p.get("dns")).cloned())
        .unwrap_or_else(|| json!({}));
    let mut out = prev.cloned().unwrap_or_default();
    out.insert("cniVersion".into(), cfg.version.clone().into());
    out.insert("interfaces".into(), interfaces.into());
    out.insert("ips".into(), ips.into());
    out.insert("routes".into(), routes.into());
    out.insert("dns".into(), dns);
    Ok(Value::Object(out))
}

/// Whether two namespace references name the same namespace (same path, or same inode).
pub(crate) fn same_netns(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
