//! Helpers for the tests that drive the C ABI from Rust: string outputs, callbacks that
//! collect into Rust values, ICMPv6 packets.
#![allow(dead_code, clippy::unwrap_used)]

use planetary_lan::*;
use std::ffi::{CStr, CString, c_char, c_void};
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// This thread's last error message.
pub fn last_error() -> String {
    // SAFETY: NULL/0 asks the length; then a buffer of that size plus the NUL.
    let n = unsafe { pl_last_error(std::ptr::null_mut(), 0) };
    let mut buf = vec![0u8; n + 1];
    // SAFETY: buf has n + 1 writable bytes.
    unsafe { pl_last_error(buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n);
    String::from_utf8(buf).unwrap()
}

/// A failure: the status and the message.
pub type Failure = (PlStatus, String);

/// Turns a status into a result with the message.
pub fn check(s: PlStatus) -> Result<(), Failure> {
    match s {
        PlStatus::PlOk => Ok(()),
        s => Err((s, last_error())),
    }
}

/// Calls a function that returns a string through `char **`.
pub fn string_out(f: impl FnOnce(*mut *mut c_char) -> PlStatus) -> Result<String, Failure> {
    let mut p: *mut c_char = std::ptr::null_mut();
    check(f(&mut p))?;
    // SAFETY: on success the library wrote a NUL-terminated string it allocated.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    // SAFETY: the string came from the library and is freed once.
    unsafe { pl_string_free(p) };
    Ok(s)
}

/// Events and log lines a node reported, with a condition variable to wait on.
#[derive(Default)]
pub struct Reports {
    pub events: Mutex<Vec<serde_json::Value>>,
    pub logs: Mutex<Vec<String>>,
    pub packets: Mutex<Vec<Vec<u8>>>,
    pub changed: Condvar,
}

impl Reports {
    /// Waits until `f` holds for the events (or the time is up).
    pub fn wait_event(&self, timeout: Duration, f: impl Fn(&[serde_json::Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut ev = self.events.lock().unwrap();
        while !f(&ev) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            ev = self.changed.wait_timeout(ev, left).unwrap().0;
        }
        true
    }

    /// Waits for a packet `f` accepts, and takes it.
    pub fn take_packet(&self, timeout: Duration, f: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut ps = self.packets.lock().unwrap();
        loop {
            if let Some(i) = ps.iter().position(|p| f(p)) {
                return Some(ps.remove(i));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            ps = self.changed.wait_timeout(ps, left).unwrap().0;
        }
    }
}

pub unsafe extern "C" fn on_log(ctx: *mut c_void, level: i32, msg: *const c_char) {
    // SAFETY: ctx is the Reports the test gave; msg a valid string for the call.
    let (r, m) = unsafe { (&*(ctx as *const Reports), CStr::from_ptr(msg)) };
    r.logs
        .lock()
        .unwrap()
        .push(format!("{level} {}", m.to_string_lossy()));
}

pub unsafe extern "C" fn on_event(ctx: *mut c_void, json: *const c_char) {
    // SAFETY: as above.
    let (r, j) = unsafe { (&*(ctx as *const Reports), CStr::from_ptr(json)) };
    let v: serde_json::Value = serde_json::from_str(j.to_str().unwrap()).unwrap();
    r.events.lock().unwrap().push(v);
    r.changed.notify_all();
}

pub unsafe extern "C" fn on_packet(ctx: *mut c_void, p: *const u8, len: usize) {
    // SAFETY: as above; p has len bytes for the call.
    let (r, p) = unsafe {
        (
            &*(ctx as *const Reports),
            std::slice::from_raw_parts(p, len),
        )
    };
    r.packets.lock().unwrap().push(p.to_vec());
    r.changed.notify_all();
}

/// A fresh directory for one node's state.
pub fn state_dir(label: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("pl-ffi-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A node made from `json`, reporting into `reports` (which must outlive it).
pub fn new_node(json: &str, reports: &Arc<Reports>) -> Result<PlNode, Failure> {
    let c = CString::new(json).unwrap();
    let mut node: PlNode = 0;
    // SAFETY: valid string, callbacks of the right types, ctx kept alive by the caller.
    check(unsafe {
        pl_node_new(
            c.as_ptr(),
            Some(on_log),
            Some(on_event),
            Arc::as_ptr(reports) as *mut c_void,
            &mut node,
        )
    })?;
    Ok(node)
}

/// Starts `node` in packet mode, packets into `reports`.
pub fn start_packets(node: PlNode, reports: &Arc<Reports>) -> Result<(), Failure> {
    // SAFETY: callback of the right type; ctx kept alive by the caller.
    check(unsafe {
        pl_node_start_packet_mode(node, Some(on_packet), Arc::as_ptr(reports) as *mut c_void)
    })
}

/// Sends one packet.
pub fn send(node: PlNode, p: &[u8]) -> Result<(), Failure> {
    // SAFETY: p is a valid slice.
    check(unsafe { pl_node_send_packet(node, p.as_ptr(), p.len()) })
}

/// The node's address.
pub fn address(node: PlNode) -> Ipv6Addr {
    // SAFETY: out is a valid pointer.
    string_out(|out| unsafe { pl_node_address(node, out) })
        .unwrap()
        .parse()
        .unwrap()
}

/// The node's status.
pub fn status(node: PlNode) -> Result<serde_json::Value, Failure> {
    // SAFETY: out is a valid pointer.
    string_out(|out| unsafe { pl_node_status_json(node, out) })
        .map(|s| serde_json::from_str(&s).unwrap())
}

/// The node's peers.
pub fn peers(node: PlNode) -> Result<serde_json::Value, Failure> {
    // SAFETY: out is a valid pointer.
    string_out(|out| unsafe { pl_node_peers_json(node, out) })
        .map(|s| serde_json::from_str(&s).unwrap())
}

/// The UDP port the node listens on (from its status).
pub fn port(node: PlNode) -> u16 {
    let st = status(node).unwrap();
    let l = st["self"]["listen"][0].as_str().unwrap().to_string();
    l.rsplit(':').next().unwrap().parse().unwrap()
}

fn checksum(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            sum += u32::from(w);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(body.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(body);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMPv6 echo request (`kind` 128) or reply (129).
pub fn echo(kind: u8, src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![kind, 0, 0, 0];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(payload);
    let c = checksum(src, dst, &body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&body);
    p
}

/// `(type, id, seq, src, dst)` of an ICMPv6 echo packet.
pub fn parse_echo(p: &[u8]) -> Option<(u8, u16, u16, Ipv6Addr, Ipv6Addr)> {
    if p.len() < 48 || p[0] >> 4 != 6 || p[6] != 58 {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?);
    let b = &p[40..];
    Some((
        b[0],
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]),
        src,
        dst,
    ))
}
