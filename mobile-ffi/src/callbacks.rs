//! The app's callbacks and the context pointer they get back.
//!
//! All callbacks run on the node's own thread, one at a time per node. They must return
//! quickly (the node's data path waits for them), must not throw (C++ exceptions or
//! Objective-C ones must be caught inside), and may call `pl_node_send_packet` but no function
//! that waits for a node (`pl_node_status_json`, `pl_node_stop`, `pl_node_free`, ... of this
//! node or another): those return `PL_ERR_WRONG_THREAD` there.

use std::ffi::{CString, c_char, c_void};

/// Receives log lines: `level` is 1 (error), 2 (warn), 3 (info), 4 (debug) or 5 (trace);
/// `message` is valid only during the call.
pub type PlLogCallback =
    Option<unsafe extern "C" fn(ctx: *mut c_void, level: i32, message: *const c_char)>;

/// Receives events as JSON objects with an `event` key: `ready` (with `address` and
/// `public_key`), `peer_up` and `peer_down` (with `public_key` and `address`), and `stopped`
/// (with `error`: null after `pl_node_stop`, else why the node stopped by itself).
/// `event_json` is valid only during the call.
pub type PlEventCallback =
    Option<unsafe extern "C" fn(ctx: *mut c_void, event_json: *const c_char)>;

/// Packet mode: receives each IPv6 packet for the app's network stack; `packet` is valid only
/// during the call.
pub type PlPacketCallback =
    Option<unsafe extern "C" fn(ctx: *mut c_void, packet: *const u8, len: usize)>;

/// Protects one socket of the node from the app's VPN (Android: `VpnService.protect(fd)`);
/// returns true when it did. `kind` says what the socket is for: 1 UDP (links), 2 TCP
/// listener, 3 TCP dial, 4 accepted TCP connection, 5 QUIC, 6 LAN discovery, 7 DNS
/// forwarding. Called on the node's thread, with the socket created and not yet bound,
/// connected or used (an accepted connection: before it is read or written).
pub type PlProtectCallback =
    Option<unsafe extern "C" fn(ctx: *mut c_void, fd: i32, kind: i32) -> bool>;

/// The app's context pointer, handed back to its callbacks.
#[derive(Clone, Copy)]
pub struct Ctx(pub *mut c_void);

// SAFETY: the pointer is never dereferenced here, only handed back to the app's callbacks; the
// API documents that callbacks run on the node's thread, so the app promises that `ctx` may be
// used from there (it is the app's to synchronize).
unsafe impl Send for Ctx {}
// SAFETY: as above; the library never reads or writes through it.
unsafe impl Sync for Ctx {}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

/// Where log lines go.
#[derive(Clone, Copy)]
pub struct LogSink {
    cb: unsafe extern "C" fn(*mut c_void, i32, *const c_char),
    ctx: Ctx,
}

impl LogSink {
    /// The sink, if the app gave a callback.
    pub fn new(cb: PlLogCallback, ctx: Ctx) -> Option<LogSink> {
        cb.map(|cb| LogSink { cb, ctx })
    }

    /// Hands one line to the app.
    pub fn log(&self, level: i32, message: &str) {
        let c = c_string(message);
        // SAFETY: the callback is the app's function with this signature (its contract); the
        // string lives until the call returns.
        unsafe { (self.cb)(self.ctx.0, level, c.as_ptr()) }
    }
}

/// Where events go.
#[derive(Clone, Copy)]
pub struct EventSink {
    cb: unsafe extern "C" fn(*mut c_void, *const c_char),
    ctx: Ctx,
}

impl EventSink {
    /// The sink, if the app gave a callback.
    pub fn new(cb: PlEventCallback, ctx: Ctx) -> Option<EventSink> {
        cb.map(|cb| EventSink { cb, ctx })
    }

    /// Hands one event to the app.
    pub fn emit(&self, event: &serde_json::Value) {
        let c = c_string(&event.to_string());
        // SAFETY: the callback is the app's function with this signature; the string lives
        // until the call returns.
        unsafe { (self.cb)(self.ctx.0, c.as_ptr()) }
    }
}

/// Where packet mode's packets go.
#[derive(Clone, Copy)]
pub struct PacketOut {
    cb: unsafe extern "C" fn(*mut c_void, *const u8, usize),
    ctx: Ctx,
}

impl PacketOut {
    /// The sink, if the app gave a callback.
    pub fn new(cb: PlPacketCallback, ctx: Ctx) -> Option<PacketOut> {
        cb.map(|cb| PacketOut { cb, ctx })
    }

    /// Hands one packet to the app.
    pub fn deliver(&self, packet: &[u8]) {
        // SAFETY: the callback is the app's function with this signature; the slice lives
        // until the call returns.
        unsafe { (self.cb)(self.ctx.0, packet.as_ptr(), packet.len()) }
    }
}

/// The app's protect callback.
#[derive(Clone, Copy)]
pub struct ProtectSink {
    cb: unsafe extern "C" fn(*mut c_void, i32, i32) -> bool,
    ctx: Ctx,
}

impl ProtectSink {
    /// The sink, if the app gave a callback.
    pub fn new(cb: PlProtectCallback, ctx: Ctx) -> Option<ProtectSink> {
        cb.map(|cb| ProtectSink { cb, ctx })
    }

    /// Asks the app to protect `fd`.
    pub fn protect(&self, fd: i32, kind: i32) -> bool {
        // SAFETY: the callback is the app's function with this signature (its contract).
        unsafe { (self.cb)(self.ctx.0, fd, kind) }
    }
}
