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
//! {"cniVersion":"1.0.0","name":"shop-net","plugins":[{"type":"meshd-cni","znet":"shop",
//!  "socket":"/run/meshd/admin.sock"}]}
//! ```
//!
//! (a `.conflist`, which podman's CNI backend needs; the plugin's own object is the one in
//! `plugins`).
//!
//! The crate's files: [`input`] (the environment and the configuration, checked),
//! [`daemon`] (requests to meshd), [`result`] (the result format), [`commands`] (ADD, DEL,
//! CHECK, STATUS, VERSION), [`error`] (CNI error objects); this file runs one command.
//!
//! * `znet` (required): the znet to attach to; it must be in force on this node.
//! * `socket` (optional, absolute path): meshd's admin socket, default `/run/meshd/admin.sock`.
//! * `ip` (optional): a fixed IPv4 address in this node's subnet of the znet. `CNI_ARGS`
//!   `IP=10.50.1.7` asks for one per container; giving both with different values is an
//!   error. Other `CNI_ARGS` keys (`IgnoreUnknown`, `K8S_POD_NAME`, …) are ignored.
//! * `dns` (optional) is copied into the result; `ipam` and `ipMasq: true` are refused (code 2):
//!   meshd assigns the addresses, and masquerading (the manifest's `egress`) is meshd's.
//!
//! ## Commands
//! * `ADD` attaches `CNI_NETNS` with interface `CNI_IFNAME`, tagged with `CNI_CONTAINERID`, and
//!   prints the result: the interface (`sandbox` = `CNI_NETNS`), its addresses (`<ipv4>/32` and
//!   `<ipv6>/128`, gateway = meshd's router of the znet) and routes to the znet's ranges through
//!   the gateways (and, if the znet has `egress`, a default route `0.0.0.0/0` through the IPv4
//!   gateway); the interface carries its MAC address, which podman checks. With a
//!   `prevResult` (a chained plugin before us) our entries are appended to it. If meshd
//!   attached the container but its answer is unusable, the plugin detaches it again before
//!   failing.
//! * `DEL` detaches the attachment `(CNI_CONTAINERID, CNI_IFNAME)`. It is idempotent: it
//!   succeeds when the znet is not in force on this node or the container is not attached to
//!   it (anymore), so it may be repeated. When meshd is **not running** (no socket, connection
//!   refused, no answer in time) it succeeds too, with a warning on stderr: runtimes do not
//!   retry a failed DEL (podman keeps its cached result and deletes the namespace anyway), the
//!   kernel destroys the veth with the namespace, and meshd forgets the attachment when it
//!   starts and finds the namespace gone. Any other failure (no permission on the socket, a
//!   garbled answer, meshd refusing the detach while the attachment is still listed) is an
//!   error.
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

mod commands;
mod daemon;
mod error;
mod input;
mod result;
#[cfg(test)]
mod tests;

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

use commands::*;
use daemon::*;
use error::*;
use input::*;
use result::*;

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
