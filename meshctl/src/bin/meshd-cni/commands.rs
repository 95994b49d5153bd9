//! The CNI commands: ADD, DEL, CHECK, STATUS, VERSION.

use crate::*;

/// `ADD`.
pub(crate) fn add(cfg: &Config, p: &Params) -> Result<Option<Value>, CniError> {
    let netns = p.netns.as_deref().unwrap_or_default();
    let ip = match (cfg.ip, p.ip) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "two different fixed addresses requested",
                format!("the configuration's ip is {a}, CNI_ARGS IP is {b}"),
            ));
        }
        (a, b) => a.or(b),
    };
    // Check the prevResult before changing anything.
    for key in ["interfaces", "ips", "routes"] {
        prev_list(cfg.prev_result.as_ref(), key)?;
    }
    let req = Request::ZnetAttach {
        name: cfg.znet.clone(),
        netns: netns.to_string(),
        ip: ip.map(|a| a.to_string()),
        ifname: Some(p.ifname.clone()),
        container_id: Some(p.container_id.clone()),
    };
    let data = call(&cfg.socket, &req, ATTACH_TIMEOUT)
        .map_err(|e| daemon_error(&format!("attach the container to znet {}", cfg.znet), e))?;
    let checked = serde_json::from_value::<Attachment>(data)
        .map_err(|e| format!("unexpected znet_attach answer: {e}"))
        .and_then(|att| {
            let a = Addresses::of(&att).map_err(|e| format!("znet_attach answered: {e}"))?;
            if att.ifname != p.ifname {
                return Err(format!(
                    "meshd named the interface {:?}, not {:?}",
                    att.ifname, p.ifname
                ));
            }
            if let Some(want) = ip.filter(|w| *w != a.v4.addr) {
                return Err(format!("meshd gave address {}, not {want}", a.v4.addr));
            }
            Ok(a)
        });
    let result = checked.and_then(|a| {
        build_result(cfg, &p.ifname, netns, &a).map_err(|e| format!("{}: {}", e.msg, e.details))
    });
    match result {
        Ok(v) => Ok(Some(v)),
        Err(details) => {
            // Undo the attachment rather than leave one the runtime does not know about.
            let undo = Request::ZnetDetach {
                name: cfg.znet.clone(),
                netns: None,
                container_id: Some(p.container_id.clone()),
            };
            if let Err(e) = call(&cfg.socket, &undo, TIMEOUT) {
                eprintln!("meshd-cni: cannot undo the attachment: {e:?}");
            }
            Err(CniError::new(
                code::DAEMON,
                "meshd's answer to the attach is unusable (the attachment was undone)",
                details,
            ))
        }
    }
}

/// How `DEL` ends when meshd could not be asked (see the crate documentation).
pub(crate) fn del_failed(p: &Params, e: CallError) -> Result<Option<Value>, CniError> {
    let gone = p.netns.as_deref().is_none_or(|n| !Path::new(n).exists());
    match e {
        // Runtimes do not retry a failed DEL (podman keeps its cached result and deletes the
        // namespace anyway), so an error here helps nobody. The veth goes with the namespace,
        // and meshd drops the attachment when it starts and finds the namespace gone.
        CallError::Unavailable(d) => {
            if gone {
                eprintln!(
                    "meshd-cni: {d}; the container's namespace is gone, so nothing is left to \
                     detach: DEL succeeds"
                );
            } else {
                eprintln!(
                    "meshd-cni: {d}; DEL succeeds: the container's interface goes with its \
                     namespace, and meshd forgets the attachment when it starts and finds the \
                     namespace gone"
                );
            }
            Ok(None)
        }
        e => Err(daemon_error("detach the container", e)),
    }
}

/// `DEL`.
pub(crate) fn del(cfg: &Config, p: &Params) -> Result<Option<Value>, CniError> {
    let lookup = || find_attachment(&cfg.socket, &cfg.znet, &p.container_id, &p.ifname);
    match lookup() {
        Ok(Lookup::NoZnet | Lookup::Absent) => return Ok(None),
        Ok(Lookup::Found(_)) => {}
        Err(e) => return del_failed(p, e),
    }
    let req = Request::ZnetDetach {
        name: cfg.znet.clone(),
        netns: None,
        container_id: Some(p.container_id.clone()),
    };
    match call(&cfg.socket, &req, TIMEOUT) {
        Ok(_) => Ok(None),
        // Refused: fine if it is gone anyway (a concurrent detach, a znet leave).
        Err(CallError::Refused(msg)) => match lookup() {
            Ok(Lookup::NoZnet | Lookup::Absent) => Ok(None),
            Ok(Lookup::Found(_)) => Err(daemon_error(
                "detach the container",
                CallError::Refused(msg),
            )),
            Err(e) => del_failed(p, e),
        },
        Err(e) => del_failed(p, e),
    }
}

pub(crate) fn check_failed(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(code::CHECK_FAILED, msg, details)
}

/// `CHECK`.
pub(crate) fn check(cfg: &Config, p: &Params) -> Result<Option<Value>, CniError> {
    if !matches!(cfg.version.as_str(), "0.4.0" | "1.0.0") {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("CHECK is not part of cniVersion {}", cfg.version),
            "CHECK needs cniVersion 0.4.0 or later",
        ));
    }
    let netns = p.netns.as_deref().unwrap_or_default();
    let att = match find_attachment(&cfg.socket, &cfg.znet, &p.container_id, &p.ifname) {
        Err(e) => return Err(daemon_error("show the znet", e)),
        Ok(Lookup::NoZnet) => {
            return Err(check_failed(
                format!("znet {} is not in force on this node", cfg.znet),
                "meshctl znet list shows the znets of this node",
            ));
        }
        Ok(Lookup::Absent) => {
            return Err(check_failed(
                format!(
                    "container {} is not attached to znet {} on {}",
                    p.container_id, cfg.znet, p.ifname
                ),
                format!("meshctl znet show {} lists its attachments", cfg.znet),
            ));
        }
        Ok(Lookup::Found(a)) => a,
    };
    if !same_netns(&att.netns, netns) {
        return Err(check_failed(
            "the attachment is in another namespace",
            format!("meshd has {:?}, CNI_NETNS is {netns:?}", att.netns),
        ));
    }
    let addrs = Addresses::of(&att)
        .map_err(|e| CniError::new(code::DAEMON, "unexpected znet_show answer", e))?;
    if let Some(prev) = &cfg.prev_result {
        check_prev(prev, p, netns, &addrs)?;
    }
    Ok(None)
}

/// `CHECK` against the `prevResult`: it lists our interface, and each address it gives that
/// interface is one of the attachment's.
pub(crate) fn check_prev(
    prev: &Map<String, Value>,
    p: &Params,
    netns: &str,
    a: &Addresses,
) -> Result<(), CniError> {
    let interfaces = prev_list(Some(prev), "interfaces")?;
    let index = interfaces
        .iter()
        .position(|i| {
            i.get("name").and_then(Value::as_str) == Some(p.ifname.as_str())
                && i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_none_or(|s| same_netns(s, netns))
        })
        .ok_or_else(|| {
            check_failed(
                format!("prevResult lists no interface {} in {netns}", p.ifname),
                Value::Array(interfaces.clone()).to_string(),
            )
        })?;
    for ip in prev_list(Some(prev), "ips")? {
        if ip.get("interface").and_then(Value::as_u64) != Some(index as u64) {
            continue;
        }
        let address = ip.get("address").and_then(Value::as_str).ok_or_else(|| {
            invalid(
                "prevResult.ips has an entry without address",
                ip.to_string(),
            )
        })?;
        let ours = match address.split_once('/').map_or(address, |(a, _)| a).parse() {
            Ok(std::net::IpAddr::V4(x)) => x == a.v4.addr,
            Ok(std::net::IpAddr::V6(x)) => a.v6.is_some_and(|v6| v6.addr == x),
            Err(_) => {
                return Err(invalid(
                    "prevResult.ips has an invalid address",
                    address.to_string(),
                ));
            }
        };
        if !ours {
            let now = match a.v6 {
                Some(v6) => format!("{} and {}", a.v4.addr, v6.addr),
                None => a.v4.addr.to_string(),
            };
            return Err(check_failed(
                format!("{} no longer has address {address}", p.ifname),
                format!("meshd gives it {now}"),
            ));
        }
    }
    Ok(())
}

/// `STATUS`: meshd answers and has the znet.
pub(crate) fn status(cfg: &Config) -> Result<Option<Value>, CniError> {
    let show = Request::ZnetShow {
        name: cfg.znet.clone(),
    };
    match call(&cfg.socket, &show, TIMEOUT) {
        Ok(_) => Ok(None),
        Err(CallError::Refused(m)) => Err(CniError::new(
            code::NOT_AVAILABLE,
            format!("znet {} is not usable on this node", cfg.znet),
            m,
        )),
        Err(CallError::Unavailable(d) | CallError::Failed(d)) => Err(CniError::new(
            code::NOT_AVAILABLE,
            "meshd is not available",
            d,
        )),
    }
}

/// `VERSION`: the input's `cniVersion` (if it looks like one) and ours.
pub(crate) fn version(input: &Value) -> Value {
    let asked = input
        .get("cniVersion")
        .and_then(Value::as_str)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 32
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        })
        .unwrap_or(DEFAULT_VERSION);
    json!({"cniVersion": asked, "supportedVersions": SUPPORTED})
}
