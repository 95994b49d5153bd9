//! # `meshd-cni`: a CNI plugin that attaches containers to znets
//!
//! A container runtime (containerd, CRI-O, podman with CNI, `cnitool`) runs this binary to put
//! a container on a znet; the plugin asks the local `meshd` over its admin socket to do the work
//! (`znet_attach`, `znet_detach`, `znet_show`, see the `api` crate). It keeps no state of its
//! own: meshd creates the veth pair, picks the address and installs the routes.
//!
//! It implements CNI spec 1.0.0 (and answers for 0.3.0, 0.3.1 and 0.4.0):
//!
//! ```json
//! {"cniVersion":"1.0.0","name":"shop-net","type":"meshd-cni","znet":"shop",
//!  "socket":"/run/meshd/admin.sock"}
//! ```
//!
//! * `znet` (required): the znet to attach to; it must be in force on this node.
//! * `socket` (optional, absolute path): meshd's admin socket, default `/run/meshd/admin.sock`.
//! * `ip` (optional): a fixed IPv4 address in this node's subnet of the znet. `CNI_ARGS`
//!   `IP=10.50.1.7` asks for one per container; giving both with different values is an
//!   error. Other `CNI_ARGS` keys (`IgnoreUnknown`, `K8S_POD_NAME`, …) are ignored.
//! * `dns` (optional) is copied into the result; `ipam` and `ipMasq: true` are refused (code 2):
//!   meshd assigns the addresses and the znet is routed, not masqueraded.
//!
//! ## Commands
//! * `ADD` attaches `CNI_NETNS` with interface `CNI_IFNAME`, tagged with `CNI_CONTAINERID`, and
//!   prints the result: the interface (`sandbox` = `CNI_NETNS`), its addresses (`<ipv4>/32` and
//!   `<ipv6>/128`, gateway = meshd's router of the znet) and routes to the znet's ranges through
//!   the gateways. With a `prevResult` (a chained plugin before us) our entries are appended to
//!   it. If meshd attached the container but its answer is unusable, the plugin detaches it
//!   again before failing.
//! * `DEL` detaches the attachment `(CNI_CONTAINERID, CNI_IFNAME)`. It is idempotent: it
//!   succeeds when the znet is not in force on this node or the container is not attached to
//!   it (anymore), so it may be repeated. When meshd is **not running** (no socket, connection
//!   refused, no answer in time) it succeeds only if the container's namespace is gone
//!   (`CNI_NETNS` empty or no longer existing): the kernel destroyed the veth with it and nothing
//!   is left that the plugin could clean up, and failing would leave the runtime retrying
//!   forever. While the namespace still exists it fails with code 11 (try again later) so the
//!   runtime retries once meshd is back, instead of leaving a live interface behind. Any other
//!   failure (no permission on the socket, a garbled answer, meshd refusing the detach while
//!   the attachment is still listed) is an error.
//! * `CHECK` (0.4.0 and later) asks meshd for the znet and fails unless an attachment of
//!   `CNI_CONTAINERID` on `CNI_IFNAME` exists in the same namespace as `CNI_NETNS` and every
//!   address the `prevResult` gives that interface is one of the attachment's. It trusts meshd
//!   for the interface itself (it does not enter the namespace).
//! * `VERSION` prints the supported versions.
//! * `STATUS` (CNI 1.1) succeeds when meshd answers and has the znet, and fails with code 50
//!   otherwise; `GC` (CNI 1.1) does nothing and succeeds: meshd does not record which CNI
//!   network made an attachment, so the plugin cannot tell stale attachments from other
//!   networks' or `meshctl`'s.
//!
//! A limitation: `znet_detach` takes the container id (not the interface), so a container
//! attached twice to the same znet under two interface names loses both on one `DEL`.
//!
//! ## Errors
//! A failure exits with status 1 and prints the CNI error object on stdout (and one line on
//! stderr): `{"cniVersion":…,"code":N,"msg":…,"details":…}`. Codes: 1 unsupported
//! `cniVersion` (or `CHECK` before 0.4.0), 2 unsupported configuration field, 4 invalid
//! environment variable (named in `msg`), 5 cannot read stdin, 6 stdin is not JSON, 7 invalid
//! network configuration (including a malformed `prevResult`), 11 meshd is not running or
//! did not answer in time (try again later), 50 not available (`STATUS`), and the plugin's own:
//! 100 meshd refused the request (its reason in `details`), 101 cannot talk to meshd (no
//! permission on the socket, an answer the plugin does not understand), 102 `CHECK` found the
//! attachment missing or different, 110 internal error.

use api::{Attachment, Reply, Request};
use serde_json::{Map, Value, json};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, ErrorKind, IsTerminal, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

/// The versions of the CNI spec this plugin speaks, oldest first.
const SUPPORTED: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
/// The version used when the input names none we know.
const DEFAULT_VERSION: &str = "1.0.0";
/// meshd's admin socket unless the configuration says otherwise.
const DEFAULT_SOCKET: &str = "/run/meshd/admin.sock";
/// The most stdin the plugin reads (a configuration with a `prevResult` is a few KiB).
const MAX_STDIN: u64 = 4 << 20;
/// The longest answer accepted from meshd.
const MAX_ANSWER: u64 = 16 << 20;
/// How long an attach may take (namespaces, veth, addresses).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any other request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The prefix length reported with the container's IPv4 address (a host address; the znet's
/// range is reached through the gateway, see the routes).
const V4_PREFIX: u8 = 32;
/// The prefix length reported with the container's IPv6 address.
const V6_PREFIX: u8 = 128;

/// Well-known and plugin error codes (see the crate documentation).
mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Invalid environment variable.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Cannot decode the input.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// Plugin not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// meshd refused the request.
    pub const REFUSED: u32 = 100;
    /// Cannot talk to meshd.
    pub const DAEMON: u32 = 101;
    /// CHECK: the attachment is missing or not as expected.
    pub const CHECK_FAILED: u32 = 102;
    /// A bug in the plugin.
    pub const INTERNAL: u32 = 110;
}

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CniError {
    code: u32,
    msg: String,
    details: String,
}

impl CniError {
    fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error object, for `version`.
    fn to_json(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
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
type GetEnv<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// An environment variable as UTF-8; unset and empty are both `None`.
fn var(get: GetEnv<'_>, name: &str) -> Result<Option<String>, CniError> {
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
struct Params {
    container_id: String,
    /// The namespace path (optional for `DEL` only).
    netns: Option<String>,
    ifname: String,
    /// `IP=` of `CNI_ARGS`.
    ip: Option<Ipv4Addr>,
}

/// Whether `s` is a CNI name: an alphanumeric, then alphanumerics, `_`, `.` and `-` (the
/// rule for `CNI_CONTAINERID` and the network's `name`).
fn cni_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && s.len() <= 1024
}

/// Whether Linux accepts `s` as an interface name.
fn ifname_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// Whether `s` is a znet name (the manifest's rule: 1 to 12 of a-z, 0-9 and `-`).
fn znet_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 12
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` names a file by absolute path, as a namespace or socket reference must.
fn abs_path(s: &str) -> bool {
    s.starts_with('/') && !s.contains('\0')
}

/// Reads and checks the environment `command` needs.
fn parse_params(command: Command, get: GetEnv<'_>) -> Result<Params, CniError> {
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
fn parse_cni_args(args: &str) -> Result<Option<Ipv4Addr>, CniError> {
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
struct Config {
    version: String,
    znet: String,
    socket: PathBuf,
    ip: Option<Ipv4Addr>,
    dns: Option<Value>,
    prev_result: Option<Map<String, Value>>,
}

/// The `cniVersion` to answer with: the input's if we support it, else the default.
fn reply_version(input: &Value) -> String {
    match input.get("cniVersion").and_then(Value::as_str) {
        Some(v) if SUPPORTED.contains(&v) => v.to_string(),
        _ => DEFAULT_VERSION.to_string(),
    }
}

fn invalid(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg, details)
}

/// An optional string field (`null` counts as absent).
fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(
            format!("{key} must be a string"),
            format!("found {other}"),
        )),
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, CniError> {
    opt_str(obj, key)?.ok_or_else(|| {
        invalid(
            format!("the network configuration has no {key:?}"),
            format!("add \"{key}\": … to the configuration"),
        )
    })
}

/// Checks the network configuration.
fn parse_config(input: &Value) -> Result<Config, CniError> {
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

/// Why a request to meshd failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CallError {
    /// meshd is not running (no socket, connection refused) or did not answer in time.
    Unavailable(String),
    /// meshd answered with an error (its message).
    Refused(String),
    /// Anything else: no permission, a broken answer.
    Failed(String),
}

/// Sends one request to meshd and returns the `data` of its successful reply.
fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<Value, CallError> {
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => CallError::Unavailable(format!(
            "meshd is not running (nothing answers on {}): {e}",
            socket.display()
        )),
        ErrorKind::PermissionDenied => CallError::Failed(format!(
            "permission denied on {}: the plugin must run as root or as a member of meshd's \
             admin_group",
            socket.display()
        )),
        _ => CallError::Failed(format!("cannot connect to {}: {e}", socket.display())),
    })?;
    let io = |what: &str, e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => CallError::Unavailable(format!(
            "meshd did not answer within {} s on {}",
            timeout.as_secs(),
            socket.display()
        )),
        _ => CallError::Failed(format!("{what} {}: {e}", socket.display())),
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| io("cannot set a timeout on", e))?;
    let mut line =
        serde_json::to_vec(req).map_err(|e| CallError::Failed(format!("cannot encode: {e}")))?;
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .map_err(|e| io("cannot send the request to", e))?;
    let mut answer = String::new();
    BufReader::new((&stream).take(MAX_ANSWER))
        .read_line(&mut answer)
        .map_err(|e| io("cannot read the answer from", e))?;
    if answer.is_empty() {
        return Err(CallError::Failed(format!(
            "meshd closed the connection on {} without answering",
            socket.display()
        )));
    }
    let reply: Reply = serde_json::from_str(&answer).map_err(|e| {
        CallError::Failed(format!(
            "meshd sent an answer the plugin does not understand: {e}"
        ))
    })?;
    reply.into_result().map_err(|e| {
        CallError::Refused(match e.hint {
            Some(hint) => format!("{} ({hint})", e.message),
            None => e.message,
        })
    })
}

/// The CNI error for a failed request meant to `what`.
fn daemon_error(what: &str, e: CallError) -> CniError {
    match e {
        CallError::Unavailable(d) => CniError::new(
            code::TRY_AGAIN,
            format!("meshd is not available to {what}"),
            d,
        ),
        CallError::Refused(m) => {
            CniError::new(code::REFUSED, format!("meshd refused to {what}"), m)
        }
        CallError::Failed(d) => {
            CniError::new(code::DAEMON, format!("cannot ask meshd to {what}"), d)
        }
    }
}

/// What meshd knows of one attachment.
#[derive(Debug, Clone, PartialEq)]
enum Lookup {
    /// The znet is not in force on this node.
    NoZnet,
    /// The znet has no attachment of this container on this interface.
    Absent,
    /// The attachment.
    Found(Box<Attachment>),
}

/// The part of an [`api::ZnetInfo`] the plugin reads: a partial view, so that an answer with
/// fields this plugin does not know (a newer meshd) still works. The field names are the
/// `api` crate's, pinned by its `json_keys` test.
#[derive(Debug, serde::Deserialize)]
struct ZnetView {
    /// The znet's name.
    name: Option<String>,
    /// Its attachments on this node.
    attachments: Option<Vec<Attachment>>,
}

/// The names in a `znet_list` answer.
fn znet_names(data: Value) -> Result<Vec<String>, CallError> {
    let text = data.to_string();
    serde_json::from_value::<Vec<ZnetView>>(data)
        .ok()
        .and_then(|rows| rows.into_iter().map(|r| r.name).collect::<Option<Vec<_>>>())
        .ok_or_else(|| CallError::Failed(format!("unexpected znet_list answer: {text}")))
}

/// Finds the attachment `(container_id, ifname)` of `znet`.
fn find_attachment(
    socket: &Path,
    znet: &str,
    container_id: &str,
    ifname: &str,
) -> Result<Lookup, CallError> {
    let show = Request::ZnetShow {
        name: znet.to_string(),
    };
    let data = match call(socket, &show, TIMEOUT) {
        Ok(d) => d,
        Err(CallError::Refused(msg)) => {
            // Most likely an unknown znet; the list tells without reading the message.
            let names = znet_names(call(socket, &Request::ZnetList, TIMEOUT)?)?;
            return if names.iter().any(|n| n == znet) {
                Err(CallError::Refused(msg))
            } else {
                Ok(Lookup::NoZnet)
            };
        }
        Err(e) => return Err(e),
    };
    // Only `attachments` of the `ZnetInfo` is needed; the rest is left unparsed.
    let text = data.to_string();
    let attachments = serde_json::from_value::<ZnetView>(data)
        .map_err(|e| CallError::Failed(format!("unexpected znet_show answer: {e}")))?
        .attachments
        .ok_or_else(|| CallError::Failed(format!("znet_show answered no attachments: {text}")))?;
    Ok(attachments
        .into_iter()
        .find(|a| a.container_id.as_deref() == Some(container_id) && a.ifname == ifname)
        .map_or(Lookup::Absent, |a| Lookup::Found(Box::new(a))))
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net<A> {
    addr: A,
    prefix: u8,
}

impl<A: std::fmt::Display> std::fmt::Display for Net<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `ADDR` (with prefix `default`) or `ADDR/PREFIX` (`PREFIX` ≤ `max`).
fn parse_net<A: FromStr>(s: &str, default: Option<u8>, max: u8) -> Option<Net<A>> {
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
struct Addresses {
    v4: Net<Ipv4Addr>,
    gateway_v4: Ipv4Addr,
    range_v4: Net<Ipv4Addr>,
    v6: Option<Net<Ipv6Addr>>,
    gateway_v6: Option<Ipv6Addr>,
    range_v6: Option<Net<Ipv6Addr>>,
    mac: Option<String>,
}

/// Whether `s` is a MAC address as CNI results give it (`aa:bb:cc:dd:ee:ff`).
fn mac_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Addresses {
    /// Checks what meshd answered; the error says which field is wrong.
    fn of(a: &Attachment) -> Result<Addresses, String> {
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
        })
    }
}

/// A list field of a `prevResult` (absent: empty).
fn prev_list(prev: Option<&Map<String, Value>>, key: &str) -> Result<Vec<Value>, CniError> {
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
fn build_result(cfg: &Config, ifname: &str, netns: &str, a: &Addresses) -> Result<Value, CniError> {
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
fn same_netns(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// `ADD`.
fn add(cfg: &Config, p: &Params) -> Result<Option<Value>, CniError> {
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
fn del_failed(p: &Params, e: CallError) -> Result<Option<Value>, CniError> {
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
fn del(cfg: &Config, p: &Params) -> Result<Option<Value>, CniError> {
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

fn check_failed(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(code::CHECK_FAILED, msg, details)
}

/// `CHECK`.
fn check(cfg: &Config, p: &Params) -> Result<Option<Value>, CniError> {
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
fn check_prev(
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
fn status(cfg: &Config) -> Result<Option<Value>, CniError> {
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
fn version(input: &Value) -> Value {
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

/// What the plugin prints and how it exits.
#[derive(Debug)]
struct Outcome {
    /// The `cniVersion` of an error object.
    version: String,
    /// A result to print (`None`: print nothing), or an error.
    result: Result<Option<Value>, CniError>,
}

/// Reads stdin (at most [`MAX_STDIN`]).
fn read_input(stdin: &mut dyn Read) -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    stdin
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(code::IO_FAILURE, "cannot read stdin", e.to_string()))?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(CniError::new(
            code::IO_FAILURE,
            "the network configuration is too large",
            format!("more than {MAX_STDIN} bytes on stdin"),
        ));
    }
    Ok(buf)
}

/// The whole plugin but for the process: `stdin` is `None` when it is a terminal.
fn run(get: GetEnv<'_>, stdin: Option<&mut dyn Read>) -> Outcome {
    let fail = |version: &str, e: CniError| Outcome {
        version: version.to_string(),
        result: Err(e),
    };
    let command = match var(get, "CNI_COMMAND") {
        Err(e) => return fail(DEFAULT_VERSION, e),
        Ok(None) => {
            return fail(
                DEFAULT_VERSION,
                CniError::new(
                    code::INVALID_ENV,
                    "CNI_COMMAND is not set",
                    "meshd-cni is a CNI plugin: a container runtime runs it with CNI_COMMAND \
                     (ADD, DEL, CHECK, VERSION) and the network configuration on stdin",
                ),
            );
        }
        Ok(Some(c)) => match Command::parse(&c) {
            Some(c) => c,
            None => {
                return fail(
                    DEFAULT_VERSION,
                    CniError::new(
                        code::INVALID_ENV,
                        "CNI_COMMAND is invalid",
                        format!("{c:?}: one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
                    ),
                );
            }
        },
    };
    let bytes = match stdin.map(read_input) {
        None => Vec::new(),
        Some(Ok(b)) => b,
        Some(Err(e)) => return fail(DEFAULT_VERSION, e),
    };
    let input: Result<Value, CniError> = if bytes.iter().all(u8::is_ascii_whitespace) {
        Err(CniError::new(
            code::DECODE,
            "no network configuration on stdin",
            "the runtime passes the configuration as JSON on stdin",
        ))
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            CniError::new(
                code::DECODE,
                "the network configuration is not JSON",
                e.to_string(),
            )
        })
    };
    if command == Command::Version {
        let input = input.unwrap_or(Value::Null);
        return Outcome {
            version: reply_version(&input),
            result: Ok(Some(version(&input))),
        };
    }
    let input = match input {
        Ok(v) => v,
        Err(e) => return fail(DEFAULT_VERSION, e),
    };
    let reply = reply_version(&input);
    let cfg = match parse_config(&input) {
        Ok(c) => c,
        Err(e) => return fail(&reply, e),
    };
    let result = match command {
        Command::Status => status(&cfg),
        Command::Gc => Ok(None),
        Command::Add | Command::Del | Command::Check => match parse_params(command, get) {
            Err(e) => Err(e),
            Ok(p) => match command {
                Command::Add => add(&cfg, &p),
                Command::Del => del(&cfg, &p),
                _ => check(&cfg, &p),
            },
        },
        Command::Version => Ok(None), // answered above
    };
    Outcome {
        version: cfg.version,
        result,
    }
}

fn main() -> ExitCode {
    // A bug must still end in a CNI error, not in a bare panic message.
    std::panic::set_hook(Box::new(|info| eprintln!("meshd-cni: {info}")));
    let outcome = std::panic::catch_unwind(|| {
        let get = |name: &str| std::env::var_os(name);
        let mut stdin = std::io::stdin();
        let input: Option<&mut dyn Read> = if stdin.is_terminal() {
            None
        } else {
            Some(&mut stdin)
        };
        run(&get, input)
    })
    .unwrap_or_else(|_| Outcome {
        version: DEFAULT_VERSION.to_string(),
        result: Err(CniError::new(
            code::INTERNAL,
            "internal error in meshd-cni",
            "see stderr",
        )),
    });
    let (text, status) = match &outcome.result {
        Ok(None) => (None, ExitCode::SUCCESS),
        Ok(Some(v)) => (Some(v.to_string()), ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("meshd-cni: {}: {}", e.msg, e.details);
            (
                Some(e.to_json(&outcome.version).to_string()),
                ExitCode::FAILURE,
            )
        }
    };
    if let Some(text) = text {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    const NS: &str = "/var/run/netns/c1";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).map(OsString::from)
    }

    fn base_env(command: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", "c1".to_string()),
            ("CNI_NETNS", NS.to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", "/opt/cni/bin".to_string()),
        ]
    }

    fn config(socket: &Path, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0", "name": "shop-net", "type": "meshd-cni", "znet": "shop",
            "socket": socket.to_str().expect("utf-8 path"),
        });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    fn run_with(envs: &[(&str, String)], stdin: &Value) -> Outcome {
        let pairs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let get = env(&pairs);
        let bytes = stdin.to_string().into_bytes();
        let mut r: &[u8] = &bytes;
        run(&get, Some(&mut r))
    }

    fn code_of(o: &Outcome) -> u32 {
        match &o.result {
            Err(e) => e.code,
            Ok(v) => panic!("expected an error, got {v:?}"),
        }
    }

    fn attachment(ifname: &str, container: &str, netns: &str) -> Attachment {
        Attachment {
            znet: "shop".into(),
            netns: netns.into(),
            ifname: ifname.into(),
            ipv4: "10.50.1.2".into(),
            ipv6: Some("fd00:5a31:7e2b:1:1::2".into()),
            gateway_v4: "10.50.1.1".into(),
            gateway_v6: Some("fd00:5a31:7e2b:1:1::1".into()),
            range_v4: "10.50.0.0/16".into(),
            range_v6: Some("fd00:5a31:7e2b:1::/64".into()),
            container_id: Some(container.into()),
            ns_inode: None,
            mac: Some("02:5a:0a:32:01:02".into()),
        }
    }

    /// A fake meshd: answers each request with `answer` and records the requests.
    struct Fake {
        socket: PathBuf,
        requests: Arc<Mutex<Vec<Request>>>,
    }

    impl Fake {
        fn start(answer: impl Fn(&Request) -> Reply + Send + 'static) -> Fake {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "meshd-cni-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            let socket = dir.join("admin.sock");
            let listener = UnixListener::bind(&socket).expect("bind");
            let requests = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&requests);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let mut line = String::new();
                    if BufReader::new(&stream).read_line(&mut line).is_err() {
                        continue;
                    }
                    let reply = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => {
                            let r = answer(&req);
                            log.lock().expect("lock").push(req);
                            r
                        }
                        Err(e) => Reply::err(format!("bad request: {e}")),
                    };
                    let mut text = serde_json::to_string(&reply).expect("encode");
                    text.push('\n');
                    let _ = (&stream).write_all(text.as_bytes());
                }
            });
            Fake { socket, requests }
        }

        fn requests(&self) -> Vec<Request> {
            self.requests.lock().expect("lock").clone()
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            if let Some(dir) = self.socket.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// A meshd with znet `shop` whose attachments are `attached`.
    fn daemon(attached: Vec<Attachment>) -> Fake {
        let state = Arc::new(Mutex::new(attached));
        Fake::start(move |req| {
            let mut atts = state.lock().expect("lock");
            match req {
                Request::ZnetList => Reply::ok(vec![json!({"name": "shop"})]),
                Request::ZnetShow { name } if name == "shop" => {
                    Reply::ok(json!({"name": "shop", "attachments": *atts}))
                }
                Request::ZnetShow { name } => Reply::err(format!("no znet {name}")),
                Request::ZnetAttach {
                    name,
                    netns,
                    ip,
                    ifname,
                    container_id,
                } if name == "shop" => {
                    let mut a = attachment(
                        ifname.as_deref().unwrap_or("zn0"),
                        container_id.as_deref().unwrap_or_default(),
                        netns,
                    );
                    if let Some(ip) = ip {
                        a.ipv4 = ip.clone();
                    }
                    atts.push(a.clone());
                    Reply::ok(a)
                }
                Request::ZnetDetach {
                    name, container_id, ..
                } if name == "shop" => {
                    let before = atts.len();
                    atts.retain(|a| a.container_id != *container_id);
                    if atts.len() == before {
                        Reply::err("not attached")
                    } else {
                        Reply::ok(())
                    }
                }
                _ => Reply::err("unknown znet"),
            }
        })
    }

    #[test]
    fn env_is_checked() {
        let ok = parse_params(
            Command::Add,
            &env(&[
                ("CNI_CONTAINERID", "abc-1.2_x"),
                ("CNI_NETNS", "/proc/42/ns/net"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.50.1.7"),
            ]),
        )
        .expect("valid");
        assert_eq!(ok.ip, Some(Ipv4Addr::new(10, 50, 1, 7)));
        assert_eq!(ok.netns.as_deref(), Some("/proc/42/ns/net"));

        let bad = |pairs: &[(&str, &str)], command: Command, needle: &str| {
            let e = parse_params(command, &env(pairs)).expect_err("invalid");
            assert_eq!(e.code, code::INVALID_ENV, "{e:?}");
            assert!(e.msg.contains(needle), "{e:?} should name {needle}");
        };
        let full = [
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", NS),
            ("CNI_IFNAME", "eth0"),
        ];
        bad(&full[1..], Command::Add, "CNI_CONTAINERID");
        bad(&[full[0], full[2]], Command::Add, "CNI_NETNS");
        bad(&full[..2], Command::Del, "CNI_IFNAME");
        bad(
            &[full[0], ("CNI_NETNS", "ns1"), full[2]],
            Command::Add,
            "CNI_NETNS",
        );
        bad(
            &[("CNI_CONTAINERID", "-x"), full[1], full[2]],
            Command::Add,
            "CNI_CONTAINERID",
        );
        for ifname in ["a/b", "a b", "a:1", "averyveryverylongname", ".."] {
            bad(
                &[full[0], full[1], ("CNI_IFNAME", ifname)],
                Command::Add,
                "CNI_IFNAME",
            );
        }
        for args in ["IP=10.50.1", "IP", "=1", "IP=10.50.1.7;IP=10.50.1.8"] {
            bad(
                &[full[0], full[1], full[2], ("CNI_ARGS", args)],
                Command::Add,
                "CNI_ARGS",
            );
        }
        // DEL needs no namespace; an empty one counts as none.
        let del = parse_params(Command::Del, &env(&[full[0], ("CNI_NETNS", ""), full[2]]))
            .expect("valid");
        assert_eq!(del.netns, None);
    }

    #[test]
    fn config_is_checked() {
        let s = Path::new("/run/x.sock");
        let c = parse_config(&config(
            s,
            json!({"ip": "10.50.1.9", "dns": {"nameservers": []}}),
        ))
        .expect("valid");
        assert_eq!(c.znet, "shop");
        assert_eq!(c.socket, PathBuf::from("/run/x.sock"));
        assert_eq!(c.ip, Some(Ipv4Addr::new(10, 50, 1, 9)));
        let d = parse_config(&json!({"cniVersion": "0.4.0", "name": "n", "type": "t",
            "znet": "a-1"}))
        .expect("valid");
        assert_eq!(d.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(d.prev_result, None);

        let code = |v: Value| parse_config(&v).expect_err("invalid").code;
        let without = |key: &str| {
            let mut v = config(s, json!({}));
            if let Some(o) = v.as_object_mut() {
                o.remove(key);
            }
            v
        };
        for key in ["znet", "name", "type", "cniVersion"] {
            assert_eq!(code(without(key)), code::INVALID_CONFIG, "without {key}");
        }
        assert_eq!(code(json!([1])), code::INVALID_CONFIG);
        assert_eq!(
            code(config(s, json!({"cniVersion": "0.2.0"}))),
            code::INCOMPATIBLE_VERSION
        );
        for bad in [
            json!({"znet": "Shop"}),
            json!({"znet": "a-very-long-name"}),
            json!({"znet": 3}),
            json!({"socket": "admin.sock"}),
            json!({"ip": "10.50.1.300"}),
            json!({"ip": "fd00::1"}),
            json!({"name": "bad name"}),
            json!({"dns": "8.8.8.8"}),
            json!({"prevResult": []}),
        ] {
            assert_eq!(code(config(s, bad.clone())), code::INVALID_CONFIG, "{bad}");
        }
        assert_eq!(
            code(config(s, json!({"ipam": {"type": "host-local"}}))),
            code::UNSUPPORTED_FIELD
        );
        assert_eq!(
            code(config(s, json!({"ipMasq": true}))),
            code::UNSUPPORTED_FIELD
        );
        assert!(parse_config(&config(s, json!({"ipMasq": false, "args": {"x": 1}}))).is_ok());
    }

    #[test]
    fn results_are_built_per_version_and_chain() {
        let a = Addresses::of(&attachment("eth0", "c1", NS)).expect("valid");
        let cfg = parse_config(&config(Path::new("/s"), json!({}))).expect("valid");
        let r = build_result(&cfg, "eth0", NS, &a).expect("result");
        assert_eq!(
            r,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "02:5a:0a:32:01:02", "sandbox": NS}],
                "ips": [
                    {"address": "10.50.1.2/32", "gateway": "10.50.1.1", "interface": 0},
                    {"address": "fd00:5a31:7e2b:1:1::2/128", "gateway": "fd00:5a31:7e2b:1:1::1",
                     "interface": 0},
                ],
                "routes": [
                    {"dst": "10.50.0.0/16", "gw": "10.50.1.1"},
                    {"dst": "fd00:5a31:7e2b:1::/64", "gw": "fd00:5a31:7e2b:1:1::1"},
                ],
                "dns": {},
            })
        );

        // An older version tags addresses; a prevResult is extended, its DNS kept.
        let prev = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo", "sandbox": NS}],
            "ips": [{"version": "4", "address": "127.0.0.1/8", "interface": 0}],
            "dns": {"nameservers": ["10.0.0.53"]},
        });
        let cfg = parse_config(&config(
            Path::new("/s"),
            json!({"cniVersion": "0.4.0", "prevResult": prev}),
        ))
        .expect("valid");
        let mut v4only = attachment("eth0", "c1", NS);
        v4only.ipv6 = None;
        v4only.gateway_v6 = None;
        v4only.range_v6 = None;
        v4only.ipv4 = "10.50.1.3/24".into(); // a prefix from meshd is kept
        let a = Addresses::of(&v4only).expect("valid");
        let r = build_result(&cfg, "eth0", NS, &a).expect("result");
        assert_eq!(r["cniVersion"], "0.4.0");
        assert_eq!(r["interfaces"][1]["name"], "eth0");
        assert_eq!(
            r["ips"][1],
            json!({"version": "4", "address": "10.50.1.3/24", "gateway": "10.50.1.1",
                   "interface": 1})
        );
        assert_eq!(r["ips"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            r["routes"],
            json!([{"dst": "10.50.0.0/16", "gw": "10.50.1.1"}])
        );
        assert_eq!(r["dns"], json!({"nameservers": ["10.0.0.53"]}));

        // A malformed answer from meshd is caught.
        for (field, bad) in [
            ("ipv4", "10.50.1"),
            ("range_v4", "10.50.0.0"),
            ("gateway_v4", "x"),
        ] {
            let mut att = attachment("eth0", "c1", NS);
            match field {
                "ipv4" => att.ipv4 = bad.into(),
                "range_v4" => att.range_v4 = bad.into(),
                _ => att.gateway_v4 = bad.into(),
            }
            let e = Addresses::of(&att).expect_err("invalid");
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn version_and_errors() {
        let o = run_with(
            &[("CNI_COMMAND", "VERSION".into())],
            &json!({"cniVersion": "0.4.0"}),
        );
        assert_eq!(
            o.result.expect("ok"),
            Some(json!({"cniVersion": "0.4.0",
                        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}))
        );
        let get = env(&[("CNI_COMMAND", "VERSION")]);
        let o = run(&get, None);
        assert_eq!(o.result.expect("ok").expect("some")["cniVersion"], "1.0.0");

        let o = run_with(&[], &json!({}));
        assert_eq!(code_of(&o), code::INVALID_ENV);
        let o = run_with(&[("CNI_COMMAND", "FROB".into())], &json!({}));
        assert_eq!(code_of(&o), code::INVALID_ENV);

        let get = env(&[("CNI_COMMAND", "ADD")]);
        let mut garbage: &[u8] = b"{not json";
        let o = run(&get, Some(&mut garbage));
        assert_eq!(code_of(&o), code::DECODE);

        let e = CniError::new(7, "m", "d");
        assert_eq!(
            e.to_json("0.4.0"),
            json!({"cniVersion": "0.4.0", "code": 7, "msg": "m", "details": "d"})
        );
    }

    #[test]
    fn add_attaches_and_reports() {
        let fake = daemon(vec![]);
        let mut envs = base_env("ADD");
        envs.push(("CNI_ARGS", "IgnoreUnknown=1;IP=10.50.1.7".into()));
        let o = run_with(&envs, &config(&fake.socket, json!({})));
        let r = o.result.expect("ok").expect("a result");
        assert_eq!(r["ips"][0]["address"], "10.50.1.7/32");
        assert_eq!(
            r["interfaces"][0],
            json!({"name": "eth0", "mac": "02:5a:0a:32:01:02", "sandbox": NS})
        );
        assert_eq!(
            fake.requests(),
            vec![Request::ZnetAttach {
                name: "shop".into(),
                netns: NS.into(),
                ip: Some("10.50.1.7".into()),
                ifname: Some("eth0".into()),
                container_id: Some("c1".into()),
            }]
        );

        // Conflicting fixed addresses: refused before asking meshd.
        let o = run_with(&envs, &config(&fake.socket, json!({"ip": "10.50.1.8"})));
        assert_eq!(code_of(&o), code::INVALID_CONFIG);
        assert_eq!(fake.requests().len(), 1);

        // meshd refuses: its reason is passed on.
        let o = run_with(
            &base_env("ADD"),
            &config(&fake.socket, json!({"znet": "other"})),
        );
        match o.result {
            Err(e) => {
                assert_eq!(e.code, code::REFUSED);
                assert_eq!(e.details, "unknown znet");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_undoes_an_unusable_attachment() {
        let fake = Fake::start(|req| match req {
            Request::ZnetAttach { .. } => Reply::ok(attachment("zn0", "c1", NS)),
            _ => Reply::ok(()),
        });
        let o = run_with(&base_env("ADD"), &config(&fake.socket, json!({})));
        assert_eq!(code_of(&o), code::DAEMON);
        assert!(matches!(
            fake.requests().last(),
            Some(Request::ZnetDetach { container_id: Some(c), .. }) if c == "c1"
        ));
    }

    #[test]
    fn del_is_idempotent() {
        let fake = daemon(vec![
            attachment("eth0", "c1", NS),
            attachment("eth0", "c2", "/var/run/netns/c2"),
        ]);
        let cfg = config(&fake.socket, json!({}));
        let o = run_with(&base_env("DEL"), &cfg);
        assert_eq!(o.result, Ok(None));
        assert!(fake.requests().contains(&Request::ZnetDetach {
            name: "shop".into(),
            netns: None,
            container_id: Some("c1".into()),
        }));
        let n = fake.requests().len();
        // Again: nothing to detach, nothing asked but the lookup.
        let o = run_with(&base_env("DEL"), &cfg);
        assert_eq!(o.result, Ok(None));
        assert!(
            fake.requests()[n..]
                .iter()
                .all(|r| !matches!(r, Request::ZnetDetach { .. }))
        );
        // A znet that is not in force: nothing to do either.
        let o = run_with(
            &base_env("DEL"),
            &config(&fake.socket, json!({"znet": "gone"})),
        );
        assert_eq!(o.result, Ok(None));
        // CHECK now fails for c1, still succeeds for c2.
        let o = run_with(&base_env("CHECK"), &cfg);
        assert_eq!(code_of(&o), code::CHECK_FAILED);
        let mut envs = base_env("CHECK");
        envs[1].1 = "c2".into();
        envs[2].1 = "/var/run/netns/c2".into();
        assert_eq!(run_with(&envs, &cfg).result, Ok(None));
    }

    #[test]
    fn del_without_a_daemon() {
        let dir = std::env::temp_dir().join(format!("meshd-cni-none-{}", std::process::id()));
        let cfg = config(&dir.join("admin.sock"), json!({}));
        // The namespace is gone (or was never given): success.
        let mut envs = base_env("DEL");
        envs[2].1 = "/var/run/netns/surely-not-there-4242".into();
        assert_eq!(run_with(&envs, &cfg).result, Ok(None));
        envs.remove(2);
        assert_eq!(run_with(&envs, &cfg).result, Ok(None));
        // It still exists: success too (runtimes do not retry a DEL; the namespace is
        // deleted next, and meshd forgets the attachment when it starts).
        let mut envs = base_env("DEL");
        envs[2].1 = "/proc/self/ns/net".into();
        assert_eq!(run_with(&envs, &cfg).result, Ok(None));
        // ADD and CHECK: try again later; STATUS: not available; GC: fine.
        assert_eq!(code_of(&run_with(&base_env("ADD"), &cfg)), code::TRY_AGAIN);
        assert_eq!(
            code_of(&run_with(&base_env("CHECK"), &cfg)),
            code::TRY_AGAIN
        );
        assert_eq!(
            code_of(&run_with(&base_env("STATUS"), &cfg)),
            code::NOT_AVAILABLE
        );
        assert_eq!(run_with(&base_env("GC"), &cfg).result, Ok(None));
    }

    #[test]
    fn check_compares_with_prev_result() {
        let fake = daemon(vec![attachment("eth0", "c1", NS)]);
        let a = Addresses::of(&attachment("eth0", "c1", NS)).expect("valid");
        let plain = parse_config(&config(&fake.socket, json!({}))).expect("valid");
        let prev = build_result(&plain, "eth0", NS, &a).expect("result");
        let with = |prev: Value| config(&fake.socket, json!({"prevResult": prev}));
        assert_eq!(
            run_with(&base_env("CHECK"), &with(prev.clone())).result,
            Ok(None)
        );
        assert_eq!(
            run_with(&base_env("CHECK"), &plain_json(&fake)).result,
            Ok(None)
        );

        // An address meshd no longer gives.
        let mut moved = prev.clone();
        if let Some(ip) = moved.pointer_mut("/ips/0/address") {
            *ip = json!("10.50.1.99/32");
        }
        let o = run_with(&base_env("CHECK"), &with(moved));
        assert_eq!(code_of(&o), code::CHECK_FAILED);

        // prevResult without our interface.
        let o = run_with(
            &base_env("CHECK"),
            &with(json!({"interfaces": [], "ips": []})),
        );
        assert_eq!(code_of(&o), code::CHECK_FAILED);

        // Another namespace than the attachment's.
        let mut envs = base_env("CHECK");
        envs[2].1 = "/var/run/netns/other".into();
        assert_eq!(code_of(&run_with(&envs, &with(prev))), code::CHECK_FAILED);

        // Not part of 0.3.x.
        let o = run_with(
            &base_env("CHECK"),
            &config(&fake.socket, json!({"cniVersion": "0.3.1"})),
        );
        assert_eq!(code_of(&o), code::INCOMPATIBLE_VERSION);
        assert_eq!(o.version, "0.3.1");
    }

    fn plain_json(fake: &Fake) -> Value {
        config(&fake.socket, json!({}))
    }

    #[test]
    fn status_asks_for_the_znet() {
        let fake = daemon(vec![]);
        assert_eq!(
            run_with(&base_env("STATUS"), &config(&fake.socket, json!({}))).result,
            Ok(None)
        );
        let o = run_with(
            &base_env("STATUS"),
            &config(&fake.socket, json!({"znet": "x"})),
        );
        assert_eq!(code_of(&o), code::NOT_AVAILABLE);
    }

    #[test]
    fn netns_references_compare_by_inode() {
        assert!(same_netns("/proc/self/ns/net", "/proc/self/ns/net"));
        assert!(same_netns(
            "/proc/self/ns/net",
            &format!("/proc/{}/ns/net", std::process::id())
        ));
        assert!(!same_netns("/proc/self/ns/net", "/nonexistent/x"));
    }
}
