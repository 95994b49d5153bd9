//! What the runtime gives the plugin: `CNI_*` variables and the network configuration,
//! checked.

use crate::*;

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub(crate) fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// Looks up an environment variable (a function so that tests need not touch the process's).
pub(crate) type GetEnv<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// An environment variable as UTF-8; unset and empty are both `None`.
pub(crate) fn var(get: GetEnv<'_>, name: &str) -> Result<Option<String>, CniError> {
    match get(name) {
        None => Ok(None),
        Some(v) => match v.into_string() {
            Ok(s) if s.is_empty() => Ok(None),
            Ok(s) => Ok(Some(s)),
            Err(_) => Err(CniError::new(
                code::INVALID_ENV,
                format!("{name} is not valid UTF-8"),
                "",
            )),
        },
    }
}

/// The per-attachment parameters of `ADD`, `DEL` and `CHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) container_id: String,
    /// The namespace path (optional for `DEL` only).
    pub(crate) netns: Option<String>,
    pub(crate) ifname: String,
    /// `IP=` of `CNI_ARGS`.
    pub(crate) ip: Option<Ipv4Addr>,
}

/// Whether `s` is a CNI name: an alphanumeric, then alphanumerics, `_`, `.` and `-` (the
/// rule for `CNI_CONTAINERID` and the network's `name`).
pub(crate) fn cni_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && s.len() <= 1024
}

/// Whether Linux accepts `s` as an interface name.
pub(crate) fn ifname_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// Whether `s` is a znet name (the manifest's rule: 1 to 12 of a-z, 0-9 and `-`).
pub(crate) fn znet_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 12
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` names a file by absolute path, as a namespace or socket reference must.
pub(crate) fn abs_path(s: &str) -> bool {
    s.starts_with('/') && !s.contains('\0')
}

/// Reads and checks the environment `command` needs.
pub(crate) fn parse_params(command: Command, get: GetEnv<'_>) -> Result<Params, CniError> {
    let required = |name: &str| -> Result<String, CniError> {
        var(get, name)?.ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                format!("{name} is not set"),
                format!("the runtime must set {name} for {command:?}"),
            )
        })
    };
    let container_id = required("CNI_CONTAINERID")?;
    if !cni_name(&container_id) {
        return Err(CniError::new(
            code::INVALID_ENV,
            "CNI_CONTAINERID is invalid",
            format!("{container_id:?}: a letter or digit, then letters, digits, '_', '.' and '-'"),
        ));
    }
    let netns = match command {
        Command::Del => var(get, "CNI_NETNS")?,
        _ => Some(required("CNI_NETNS")?),
    };
    if let Some(n) = &netns
        && !abs_path(n)
    {
        return Err(CniError::new(
            code::INVALID_ENV,
            "CNI_NETNS is invalid",
            format!("{n:?}: the path of a network namespace, like /var/run/netns/NAME"),
        ));
    }
    let ifname = required("CNI_IFNAME")?;
    if !ifname_ok(&ifname) {
        return Err(CniError::new(
            code::INVALID_ENV,
            "CNI_IFNAME is invalid",
            format!("{ifname:?}: 1 to 15 characters, no spaces, '/' or ':'"),
        ));
    }
    let ip = match var(get, "CNI_ARGS")? {
        None => None,
        Some(args) => parse_cni_args(&args)?,
    };
    Ok(Params {
        container_id,
        netns,
        ifname,
        ip,
    })
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`. Returns `IP`; other keys are ignored.
pub(crate) fn parse_cni_args(args: &str) -> Result<Option<Ipv4Addr>, CniError> {
    let mut ip = None;
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(CniError::new(
                code::INVALID_ENV,
                "CNI_ARGS is invalid",
                format!("{pair:?} is not KEY=VALUE (pairs are separated by ';')"),
            ));
        };
        if key == "IP" {
            let a = value.parse::<Ipv4Addr>().map_err(|_| {
                CniError::new(
                    code::INVALID_ENV,
                    "CNI_ARGS: IP is invalid",
                    format!("{value:?} is not an IPv4 address (like IP=10.50.1.7)"),
                )
            })?;
            if ip.is_some_and(|old| old != a) {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "CNI_ARGS: IP is given twice",
                    args.to_string(),
                ));
            }
            ip = Some(a);
        }
    }
    Ok(ip)
}

/// The network configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) version: String,
    pub(crate) znet: String,
    pub(crate) socket: PathBuf,
    pub(crate) ip: Option<Ipv4Addr>,
    pub(crate) dns: Option<Value>,
    pub(crate) prev_result: Option<Map<String, Value>>,
}

/// The `cniVersion` to answer with: the input's if we support it, else the default.
pub(crate) fn reply_version(input: &Value) -> String {
    match input.get("cniVersion").and_then(Value::as_str) {
        Some(v) if SUPPORTED.contains(&v) => v.to_string(),
        _ => DEFAULT_VERSION.to_string(),
    }
}

pub(crate) fn invalid(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg, details)
}

/// An optional string field (`null` counts as absent).
pub(crate) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(
            format!("{key} must be a string"),
            format!("found {other}"),
        )),
    }
}

pub(crate) fn req_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, CniError> {
    opt_str(obj, key)?.ok_or_else(|| {
        invalid(
            format!("the network configuration has no {key:?}"),
            format!("add \"{key}\": … to the configuration"),
        )
    })
}

/// Checks the network configuration.
pub(crate) fn parse_config(input: &Value) -> Result<Config, CniError> {
    let obj = input.as_object().ok_or_else(|| {
        invalid(
            "the network configuration is not a JSON object",
            input.to_string(),
        )
    })?;
    let version = req_str(obj, "cniVersion")?;
    if !SUPPORTED.contains(&version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {version:?} is not supported"),
            format!("supported: {}", SUPPORTED.join(", ")),
        ));
    }
    let name = req_str(obj, "name")?;
    if !cni_name(name) {
        return Err(invalid(
            "the network name is invalid",
            format!("{name:?}: a letter or digit, then letters, digits, '_', '.' and '-'"),
        ));
    }
    req_str(obj, "type")?;
    let znet = req_str(obj, "znet")?;
    if !znet_name(znet) {
        return Err(invalid(
            "znet is not a znet name",
            format!("{znet:?}: 1 to 12 of a-z, 0-9 and '-'"),
        ));
    }
    let socket = match opt_str(obj, "socket")? {
        None => PathBuf::from(DEFAULT_SOCKET),
        Some(s) if abs_path(s) => PathBuf::from(s),
        Some(s) => {
            return Err(invalid(
                "socket must be an absolute path",
                format!("{s:?}: meshd's admin_socket, like {DEFAULT_SOCKET}"),
            ));
        }
    };
    let ip = match opt_str(obj, "ip")? {
        None => None,
        Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
            invalid(
                "ip is not an IPv4 address",
                format!("{s:?}: an address in this node's subnet of the znet, like 10.50.1.7"),
            )
        })?),
    };
    if let Some(v) = obj.get("ipam").filter(|v| !v.is_null()) {
        return Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            format!("unsupported field ipam: {v}"),
            "meshd assigns the addresses of a znet: remove \"ipam\" (use \"ip\" or CNI_ARGS \
             IP=… for a fixed address)",
        ));
    }
    if let Some(v) = obj
        .get("ipMasq")
        .filter(|v| v.as_bool() != Some(false) && !v.is_null())
    {
        return Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            format!("unsupported field ipMasq: {v}"),
            "a znet is routed between its members, not masqueraded: remove \"ipMasq\"",
        ));
    }
    let dns = match obj.get("dns") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(other) => return Err(invalid("dns must be an object", other.to_string())),
    };
    let prev_result = match obj.get("prevResult") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(other) => return Err(invalid("prevResult must be an object", other.to_string())),
    };
    Ok(Config {
        version: version.to_string(),
        znet: znet.to_string(),
        socket,
        ip,
        dns,
        prev_result,
    })
}
