//! The C functions. Each one validates its pointers, runs in [`guard`] (no panic crosses into
//! C) and returns a [`PlStatus`]; strings it returns are freed with [`pl_string_free`].

use crate::callbacks::{
    Ctx, EventSink, LogSink, PacketOut, PlEventCallback, PlLogCallback, PlPacketCallback,
    PlProtectCallback, ProtectSink,
};
use crate::error::{Error, PlStatus, copy_last_error, guard};
use crate::node::Mode;
use crate::registry as node;
use api::{PeerInfo, Request, Status};
use std::ffi::{CStr, CString, c_char, c_void};

/// A node handle: a number that names one node from `pl_node_new` until `pl_node_free`. It is
/// never reused, so a freed or made-up handle gives `PL_ERR_INVALID_HANDLE`. 0 is never a node.
pub type PlNode = u64;

fn null(what: &str) -> Error {
    Error::new(PlStatus::PlErrNullPointer, format!("{what} is NULL"))
}

/// # Safety
/// `p` is NULL or a NUL-terminated string that stays valid during the call.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: not NULL, and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|e| {
        Error::new(
            PlStatus::PlErrInvalidArgument,
            format!("{what} is not UTF-8: {e}"),
        )
    })
}

/// # Safety
/// `out` is NULL or points to writable room for one pointer.
unsafe fn put_string(out: *mut *mut c_char, what: &str, value: String) -> Result<(), Error> {
    if out.is_null() {
        return Err(null(what));
    }
    let c = CString::new(value.replace('\0', "\u{FFFD}")).unwrap_or_default();
    // SAFETY: `out` is not NULL and points to room for a pointer (the caller's contract).
    unsafe { *out = c.into_raw() };
    Ok(())
}

/// Makes a node from `config_json` (see `docs/MOBILE.md`: `state_dir` is required; `listen`,
/// `peers`, `log_level`, `policy_file`, `tun.mtu`, ... as for the daemon). Loads the node's key
/// from `<state_dir>/identity.key`, creating it on first use, so that `pl_node_address` answers
/// before the app sets up its VPN interface. Does not start the node.
///
/// `log_cb` and `event_cb` may be NULL; `ctx` is handed back to them. On success writes the
/// handle to `*out_node`.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `out_node` is NULL or writable; the
/// callbacks, if given, have these signatures and may be called from the node's thread with
/// `ctx` until `pl_node_free` returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_new(
    config_json: *const c_char,
    log_cb: PlLogCallback,
    event_cb: PlEventCallback,
    ctx: *mut c_void,
    out_node: *mut PlNode,
) -> PlStatus {
    guard(|| {
        if out_node.is_null() {
            return Err(null("out_node"));
        }
        // SAFETY: forwarded from this function's contract.
        let json = unsafe { str_arg(config_json, "config_json") }?;
        let cfg = crate::config::parse(json)?;
        let ctx = Ctx(ctx);
        let handle = node::create(
            cfg,
            LogSink::new(log_cb, ctx),
            EventSink::new(event_cb, ctx),
        )?;
        // SAFETY: not NULL, writable by the caller's contract.
        unsafe { *out_node = handle };
        Ok(())
    })
}

/// Stops the node if it runs, and forgets it. Once this returns `PL_OK` the handle is invalid
/// and no callback runs any more: the app may free `ctx`. If the node's thread cannot finish
/// (one of the app's callbacks has not returned within 5 s), returns `PL_ERR_TIMEOUT` and the
/// handle stays valid: call again later.
#[unsafe(no_mangle)]
pub extern "C" fn pl_node_free(node: PlNode) -> PlStatus {
    guard(|| node::free(node))
}

/// Starts the node on a TUN descriptor the OS gave the app (Android:
/// `VpnService.Builder.establish().getFd()`), already given the node's address (`/7`) and the
/// route `200::/7`. The node works on a duplicate: the app keeps and closes its own descriptor
/// (which shares the open file, so it is non-blocking from now on). Returns once the node is
/// up (sockets bound, `ready` delivered); `PL_ERR_BAD_DESCRIPTOR` if `tun_fd` is closed or not
/// a TUN device.
#[unsafe(no_mangle)]
pub extern "C" fn pl_node_start(node: PlNode, tun_fd: i32) -> PlStatus {
    guard(|| node::get(node)?.start(Mode::Fd(tun_fd)))
}

/// Starts the node in packet mode (iOS `NEPacketTunnelFlow`, or any platform without a
/// descriptor): the app hands packets in with `pl_node_send_packet`, and the node hands packets
/// for the app to `packet_cb` (with `ctx`) on its own thread.
///
/// # Safety
/// `packet_cb`, if not NULL, has this signature and may be called with `ctx` from the node's
/// thread until `pl_node_stop` or `pl_node_free` returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_start_packet_mode(
    node: PlNode,
    packet_cb: PlPacketCallback,
    ctx: *mut c_void,
) -> PlStatus {
    guard(|| {
        let out = PacketOut::new(packet_cb, Ctx(ctx)).ok_or_else(|| null("packet_cb"))?;
        node::get(node)?.start(Mode::Packets(out))
    })
}

/// Sets socket protection, for an app whose VPN takes all of the device's traffic: the node
/// calls `protect_cb` (with `ctx`) for every socket it opens towards the network (link UDP,
/// TCP dials, listeners and accepted connections, QUIC, LAN discovery, DNS forwarding), right
/// after creating it and before binding, connecting or using it; the app calls
/// `VpnService.protect(fd)` there and returns its answer. With `required`, a socket the
/// callback refuses is closed unused: `pl_node_start` fails with the reason if a listening
/// socket is refused, and a dial that is refused fails (no link). Without, a refusal is
/// logged and the socket used as it is. `protect_cb` NULL (with `required` false) turns
/// protection off. Call it before `pl_node_start` (`PL_ERR_ALREADY_RUNNING` while running);
/// it holds for every later start.
///
/// # Safety
/// `protect_cb`, if not NULL, has this signature and may be called with `ctx` from the node's
/// thread until `pl_node_free` returns or protection is set again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_set_protect(
    node: PlNode,
    protect_cb: PlProtectCallback,
    ctx: *mut c_void,
    required: bool,
) -> PlStatus {
    guard(|| {
        let protect = match ProtectSink::new(protect_cb, Ctx(ctx)) {
            Some(sink) => meshd::protect::Protect::new(
                Box::new(move |fd, kind| sink.protect(fd, kind as i32)),
                required,
            ),
            None if required => {
                return Err(Error::new(
                    PlStatus::PlErrNullPointer,
                    "protect_cb is NULL but protection is required: give the callback that \
                     calls VpnService.protect, or pass required = false",
                ));
            }
            None => meshd::protect::Protect::none(),
        };
        node::get(node)?.set_protect(protect)
    })
}

/// The device's network changed (Android: `ConnectivityManager.NetworkCallback`; iOS:
/// `NWPathMonitor`): the node closes and binds again its UDP sockets on the same ports
/// (protected again), moves its QUIC endpoint to a new socket, forgets the public endpoints
/// its peers saw, tells every peer where it is now (each answers with what it sees, and sends
/// there from then on), probes its paths, and dials unlinked peers at once. Without this call
/// the node notices by itself within about a second, as soon as traffic or a keepalive flows.
#[unsafe(no_mangle)]
pub extern "C" fn pl_node_network_changed(node: PlNode) -> PlStatus {
    guard(|| node::get(node)?.network_changed().map(|_| ()))
}

/// Stops the node: tells its peers, closes its sockets and its duplicate of the TUN
/// descriptor, and waits (at most 5 s) for its thread; the `stopped` event has been delivered
/// when it returns `PL_OK`. `PL_ERR_NOT_RUNNING` if it was not running. `PL_ERR_TIMEOUT` if the
/// thread did not finish (one of the app's callbacks has not returned): callbacks may still
/// run, and a later `pl_node_stop` or `pl_node_free` waits again.
#[unsafe(no_mangle)]
pub extern "C" fn pl_node_stop(node: PlNode) -> PlStatus {
    guard(|| node::get(node)?.stop())
}

/// Packet mode: hands one IPv6 packet from the app's stack to the node. Never blocks: when the
/// node is behind, the packet is dropped and `PL_ERR_QUEUE_FULL` returned. May be called from
/// any thread, the packet callback included.
///
/// # Safety
/// `packet` is NULL or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_send_packet(
    node: PlNode,
    packet: *const u8,
    len: usize,
) -> PlStatus {
    guard(|| {
        if packet.is_null() {
            return Err(null("packet"));
        }
        // SAFETY: not NULL and `len` readable bytes by the caller's contract.
        let p = unsafe { std::slice::from_raw_parts(packet, len) };
        node::get(node)?.send_packet(p)
    })
}

/// Asks the node, reads its answer as a `T` (the `api` type the app's JSON documents), and
/// writes it as JSON to `*out_json`.
///
/// # Safety
/// `out_json` is NULL or writable.
unsafe fn json_reply<T: serde::de::DeserializeOwned + serde::Serialize>(
    node: PlNode,
    req: Request,
    out_json: *mut *mut c_char,
) -> PlStatus {
    guard(|| {
        if out_json.is_null() {
            return Err(null("out_json"));
        }
        let data: T = node::get(node)?.request_as(req)?;
        // Through a `Value`: its keys are sorted, as `meshctl --json` prints them.
        let text = serde_json::to_value(&data)
            .map(|v| v.to_string())
            .map_err(|e| {
                Error::new(PlStatus::PlErrRefused, format!("a bug: cannot encode: {e}"))
            })?;
        // SAFETY: forwarded from the caller's contract.
        unsafe { put_string(out_json, "out_json", text) }
    })
}

/// The node's status as JSON (identity, uptime, links, counters, routing, policy): the same
/// object as `meshctl status --json`. Free `*out_json` with `pl_string_free`.
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_status_json(node: PlNode, out_json: *mut *mut c_char) -> PlStatus {
    // SAFETY: forwarded from this function's contract.
    unsafe { json_reply::<Status>(node, Request::Status, out_json) }
}

/// The node's peers as a JSON array (one object per link or configured peer: key, address,
/// state, endpoint, counters). Free `*out_json` with `pl_string_free`.
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_peers_json(node: PlNode, out_json: *mut *mut c_char) -> PlStatus {
    // SAFETY: forwarded from this function's contract.
    unsafe { json_reply::<Vec<PeerInfo>>(node, Request::Peers, out_json) }
}

/// Checks a peer URI argument and asks the node `req(uri)`.
///
/// # Safety
/// `uri` is NULL or a NUL-terminated string.
unsafe fn peer_request(node: PlNode, uri: *const c_char, req: fn(String) -> Request) -> PlStatus {
    guard(|| {
        // SAFETY: forwarded from the caller's contract.
        let uri = unsafe { str_arg(uri, "uri") }?.to_string();
        let n = node::get(node)?;
        if let Err(e) = uri.parse::<meshd::uri::PeerUri>() {
            return Err(Error::new(
                PlStatus::PlErrInvalidArgument,
                format!("uri: {e}"),
            ));
        }
        n.request(req(uri)).map(|_| ())
    })
}

/// Adds a peer (`udp://HOST:PORT[?key=PUBKEY]`) to the running node, kept in `state_dir`
/// across restarts.
///
/// # Safety
/// `uri` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_add_peer(node: PlNode, uri: *const c_char) -> PlStatus {
    // SAFETY: forwarded from this function's contract.
    unsafe { peer_request(node, uri, |uri| Request::PeerAdd { uri, persist: true }) }
}

/// Removes a peer from the running node (and from `state_dir`), closing its link.
///
/// # Safety
/// `uri` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_remove_peer(node: PlNode, uri: *const c_char) -> PlStatus {
    // SAFETY: forwarded from this function's contract.
    unsafe { peer_request(node, uri, |uri| Request::PeerRemove { uri }) }
}

/// The node's overlay address (e.g. `"203:…"`), known from `pl_node_new` on: give it to the
/// VPN interface with prefix length 7, and route `200::/7` to it. Free with `pl_string_free`.
///
/// # Safety
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_address(node: PlNode, out: *mut *mut c_char) -> PlStatus {
    guard(|| {
        let a = node::get(node)?.identity().address().to_string();
        // SAFETY: forwarded from this function's contract (put_string refuses NULL).
        unsafe { put_string(out, "out", a) }
    })
}

/// The node's public key (64 hex digits), which peers name it by. Free with `pl_string_free`.
///
/// # Safety
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_node_public_key(node: PlNode, out: *mut *mut c_char) -> PlStatus {
    guard(|| {
        let k = node::get(node)?.identity().public_key().to_string();
        // SAFETY: forwarded from this function's contract (put_string refuses NULL).
        unsafe { put_string(out, "out", k) }
    })
}

/// Frees a string this library returned. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a string returned by this library and not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` came from CString::into_raw in put_string (the caller's contract).
        drop(unsafe { CString::from_raw(s) });
    }
}

/// Copies the message of this thread's last failed call (NUL-terminated, cut to fit) into
/// `buf` of `len` bytes and returns the message's full length: call with NULL/0 to learn the
/// size. Messages say what went wrong and what to do.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pl_last_error(buf: *mut c_char, len: usize) -> usize {
    std::panic::catch_unwind(|| copy_last_error(buf.cast(), len)).unwrap_or(0)
}

/// The library's version, e.g. `"0.1.0"` (a static string: do not free).
#[unsafe(no_mangle)]
pub extern "C" fn pl_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The name of a status code, e.g. `"PL_ERR_NOT_RUNNING"` (a static string: do not free).
#[unsafe(no_mangle)]
pub extern "C" fn pl_status_name(status: i32) -> *const c_char {
    let name: &'static str = match status {
        0 => "PL_OK\0",
        1 => "PL_ERR_NULL_POINTER\0",
        2 => "PL_ERR_INVALID_ARGUMENT\0",
        3 => "PL_ERR_INVALID_HANDLE\0",
        4 => "PL_ERR_ALREADY_RUNNING\0",
        5 => "PL_ERR_NOT_RUNNING\0",
        6 => "PL_ERR_BAD_DESCRIPTOR\0",
        7 => "PL_ERR_START_FAILED\0",
        8 => "PL_ERR_QUEUE_FULL\0",
        9 => "PL_ERR_TIMEOUT\0",
        10 => "PL_ERR_WRONG_THREAD\0",
        11 => "PL_ERR_REFUSED\0",
        12 => "PL_ERR_IO\0",
        13 => "PL_ERR_PANIC\0",
        _ => "PL_UNKNOWN_STATUS\0",
    };
    name.as_ptr().cast()
}
