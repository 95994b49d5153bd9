//! Bad calls return an error code and a message naming the problem; none crashes.
//! NULL pointers, invalid JSON and configs, unknown and freed handles, closed and wrong
//! descriptors, double start/stop/free, packets that are not IPv6 or too big, calls from inside
//! a callback, a listen port in use.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use planetary_lan::*;
use std::ffi::{CString, c_char, c_void};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

fn expect(s: PlStatus, want: PlStatus, words: &str) {
    let msg = last_error();
    assert_eq!(s, want, "{msg}");
    assert!(
        msg.contains(words),
        "message {msg:?} does not say {words:?}"
    );
}

fn config(dir: &std::path::Path) -> String {
    serde_json::json!({ "state_dir": dir, "listen": ["udp://127.0.0.1:0"] }).to_string()
}

#[test]
fn null_pointers() {
    let mut node: PlNode = 0;
    let json = CString::new(config(&state_dir("null"))).unwrap();
    // SAFETY: NULL is what is tested; every other argument is valid.
    unsafe {
        expect(
            pl_node_new(
                std::ptr::null(),
                None,
                None,
                std::ptr::null_mut(),
                &mut node,
            ),
            PlStatus::PlErrNullPointer,
            "config_json is NULL",
        );
        expect(
            pl_node_new(
                json.as_ptr(),
                None,
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ),
            PlStatus::PlErrNullPointer,
            "out_node",
        );
        assert_eq!(
            pl_node_new(json.as_ptr(), None, None, std::ptr::null_mut(), &mut node),
            PlStatus::PlOk
        );
        expect(
            pl_node_status_json(node, std::ptr::null_mut()),
            PlStatus::PlErrNullPointer,
            "out_json",
        );
        expect(
            pl_node_peers_json(node, std::ptr::null_mut()),
            PlStatus::PlErrNullPointer,
            "out_json",
        );
        expect(
            pl_node_address(node, std::ptr::null_mut()),
            PlStatus::PlErrNullPointer,
            "out",
        );
        expect(
            pl_node_public_key(node, std::ptr::null_mut()),
            PlStatus::PlErrNullPointer,
            "out",
        );
        expect(
            pl_node_add_peer(node, std::ptr::null()),
            PlStatus::PlErrNullPointer,
            "uri",
        );
        expect(
            pl_node_remove_peer(node, std::ptr::null()),
            PlStatus::PlErrNullPointer,
            "uri",
        );
        expect(
            pl_node_start_packet_mode(node, None, std::ptr::null_mut()),
            PlStatus::PlErrNullPointer,
            "packet_cb",
        );
        expect(
            pl_node_send_packet(node, std::ptr::null(), 40),
            PlStatus::PlErrNullPointer,
            "packet",
        );
        pl_string_free(std::ptr::null_mut());
        assert_eq!(pl_last_error(std::ptr::null_mut(), 0), last_error().len());
    }
    assert_eq!(pl_node_free(node), PlStatus::PlOk);
}

#[test]
fn invalid_json_and_configs() {
    let r = Arc::new(Reports::default());
    for (json, words) in [
        ("{", "not valid JSON"),
        ("\"hello\"", "JSON object"),
        ("{}", "\"state_dir\" is required"),
        (
            r#"{"state_dir": "/tmp/x", "listen": ["tcp://nope"]}"#,
            "listen",
        ),
        (
            r#"{"state_dir": "/tmp/x", "admin_socket": "/a.sock"}"#,
            "admin socket",
        ),
        (r#"{"state_dir": "/tmp/x", "tun": {"mtu": "big"}}"#, "mtu"),
        (
            r#"{"state_dir": "/tmp/x", "log_level": "info", "typo": 1}"#,
            "typo",
        ),
    ] {
        let e = new_node(json, &r).unwrap_err();
        assert_eq!(e.0, PlStatus::PlErrInvalidArgument, "{json}: {}", e.1);
        assert!(
            e.1.contains(words),
            "{json}: {:?} does not say {words:?}",
            e.1
        );
    }
    // Not UTF-8.
    let bad = [b'{', 0xff, 0xfe, b'}', 0];
    let mut node: PlNode = 0;
    // SAFETY: a NUL-terminated byte string.
    let s = unsafe {
        pl_node_new(
            bad.as_ptr() as *const c_char,
            None,
            None,
            std::ptr::null_mut(),
            &mut node,
        )
    };
    expect(s, PlStatus::PlErrInvalidArgument, "UTF-8");
    // A state_dir the app cannot write.
    let e = new_node(r#"{"state_dir": "/proc/no/such/dir"}"#, &r).unwrap_err();
    assert_eq!(e.0, PlStatus::PlErrIo, "{}", e.1);
    assert!(e.1.contains("/proc/no/such/dir"), "{}", e.1);
}

#[test]
fn unknown_and_freed_handles() {
    let r = Arc::new(Reports::default());
    let node = new_node(&config(&state_dir("freed")), &r).unwrap();
    assert_eq!(pl_node_free(node), PlStatus::PlOk);
    for h in [0, node, 987_654_321] {
        let mut out: *mut c_char = std::ptr::null_mut();
        let uri = CString::new("udp://127.0.0.1:1").unwrap();
        let p = [0x60u8; 40];
        // SAFETY: valid pointers; only the handle is bad.
        unsafe {
            expect(
                pl_node_free(h),
                PlStatus::PlErrInvalidHandle,
                "not a node handle",
            );
            expect(
                pl_node_start(h, 0),
                PlStatus::PlErrInvalidHandle,
                "not a node handle",
            );
            expect(
                pl_node_stop(h),
                PlStatus::PlErrInvalidHandle,
                "not a node handle",
            );
            expect(
                pl_node_status_json(h, &mut out),
                PlStatus::PlErrInvalidHandle,
                "handle",
            );
            expect(
                pl_node_peers_json(h, &mut out),
                PlStatus::PlErrInvalidHandle,
                "handle",
            );
            expect(
                pl_node_address(h, &mut out),
                PlStatus::PlErrInvalidHandle,
                "handle",
            );
            expect(
                pl_node_public_key(h, &mut out),
                PlStatus::PlErrInvalidHandle,
                "handle",
            );
            expect(
                pl_node_add_peer(h, uri.as_ptr()),
                PlStatus::PlErrInvalidHandle,
                "handle",
            );
            expect(
                pl_node_remove_peer(h, uri.as_ptr()),
                PlStatus::PlErrInvalidHandle,
                "handle",
            );
            expect(
                pl_node_send_packet(h, p.as_ptr(), p.len()),
                PlStatus::PlErrInvalidHandle,
                "handle",
            );
            expect(
                pl_node_start_packet_mode(h, Some(on_packet), std::ptr::null_mut()),
                PlStatus::PlErrInvalidHandle,
                "handle",
            );
        }
        assert!(out.is_null());
    }
}

#[test]
fn bad_descriptors() {
    let r = Arc::new(Reports::default());
    let node = new_node(&config(&state_dir("fd")), &r).unwrap();
    expect(
        pl_node_start(node, -1),
        PlStatus::PlErrBadDescriptor,
        "not a file descriptor",
    );
    // A closed descriptor: open a file, note its number, close it.
    let closed = std::fs::File::open("/dev/null").unwrap().as_raw_fd();
    expect(
        pl_node_start(node, closed),
        PlStatus::PlErrBadDescriptor,
        "not open",
    );
    // Open, but not a TUN device.
    let file = std::fs::File::open("/dev/null").unwrap();
    expect(
        pl_node_start(node, file.as_raw_fd()),
        PlStatus::PlErrBadDescriptor,
        "not a TUN",
    );
    let (rd, _wr) = std::io::pipe().unwrap();
    expect(
        pl_node_start(node, rd.as_raw_fd()),
        PlStatus::PlErrBadDescriptor,
        "not a TUN",
    );
    // Nothing was started by any of these.
    expect(pl_node_stop(node), PlStatus::PlErrNotRunning, "not running");
    assert_eq!(pl_node_free(node), PlStatus::PlOk);
}

#[test]
fn double_start_stop_free_and_bad_packets() {
    let r = Arc::new(Reports::default());
    let node = new_node(&config(&state_dir("double")), &r).unwrap();
    let p = [0x60u8; 40];
    // SAFETY: valid slice.
    let s = unsafe { pl_node_send_packet(node, p.as_ptr(), p.len()) };
    expect(s, PlStatus::PlErrNotRunning, "not running");
    expect(
        // SAFETY: valid pointer.
        unsafe { pl_node_status_json(node, &mut std::ptr::null_mut()) },
        PlStatus::PlErrNotRunning,
        "pl_node_start",
    );
    start_packets(node, &r).unwrap();
    let again = start_packets(node, &r).unwrap_err();
    assert_eq!(again.0, PlStatus::PlErrAlreadyRunning, "{}", again.1);
    // The fd path is refused as well while running, before the descriptor is looked at.
    expect(
        pl_node_start(node, -1),
        PlStatus::PlErrAlreadyRunning,
        "already",
    );

    let v4 = [0x45u8; 40];
    let e = send(node, &v4).unwrap_err();
    assert!(
        e.0 == PlStatus::PlErrInvalidArgument && e.1.contains("IPv6"),
        "{e:?}"
    );
    let e = send(node, &[]).unwrap_err();
    assert_eq!(e.0, PlStatus::PlErrInvalidArgument, "{}", e.1);
    let mut big = vec![0u8; 1421];
    big[0] = 0x60;
    let e = send(node, &big).unwrap_err();
    assert!(
        e.0 == PlStatus::PlErrInvalidArgument && e.1.contains("MTU"),
        "{e:?}"
    );
    // A well-formed packet to an address nobody has is accepted (and dropped by the node).
    send(
        node,
        &echo(128, address(node), "200::1".parse().unwrap(), 1, 1, b"x"),
    )
    .unwrap();

    let uri = CString::new("udp://[::1]:7820").unwrap();
    // SAFETY: valid string.
    let s = unsafe { pl_node_add_peer(node, uri.as_ptr()) };
    expect(s, PlStatus::PlErrRefused, "IPv6");
    let uri = CString::new("carrier-pigeon://x").unwrap();
    // SAFETY: valid string.
    let s = unsafe { pl_node_add_peer(node, uri.as_ptr()) };
    expect(s, PlStatus::PlErrInvalidArgument, "uri");
    let uri = CString::new("udp://127.0.0.1:9").unwrap();
    // SAFETY: valid string.
    let s = unsafe { pl_node_remove_peer(node, uri.as_ptr()) };
    expect(s, PlStatus::PlErrRefused, "not a configured peer");

    assert_eq!(pl_node_stop(node), PlStatus::PlOk);
    expect(pl_node_stop(node), PlStatus::PlErrNotRunning, "not running");
    // Start again after stop: the same handle works.
    start_packets(node, &r).unwrap();
    assert_eq!(pl_node_free(node), PlStatus::PlOk);
    expect(
        pl_node_free(node),
        PlStatus::PlErrInvalidHandle,
        "already freed",
    );
}

#[test]
fn listen_port_in_use_fails_start_with_the_reason() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let r = Arc::new(Reports::default());
    let json = serde_json::json!({
        "state_dir": state_dir("port"),
        "listen": [format!("udp://127.0.0.1:{port}")],
    });
    let node = new_node(&json.to_string(), &r).unwrap();
    let e = start_packets(node, &r).unwrap_err();
    assert_eq!(e.0, PlStatus::PlErrStartFailed, "{}", e.1);
    assert!(e.1.contains(&port.to_string()), "{}", e.1);
    assert!(r.wait_event(std::time::Duration::from_secs(1), |ev| {
        ev.iter()
            .any(|e| e["event"] == "stopped" && e["error"].is_string())
    }));
    expect(pl_node_stop(node), PlStatus::PlErrNotRunning, "not running");
    drop(taken);
    start_packets(node, &r).unwrap();
    assert_eq!(pl_node_free(node), PlStatus::PlOk);
}

static INSIDE_NODE: AtomicU64 = AtomicU64::new(0);
static INSIDE_STATUS: AtomicI32 = AtomicI32::new(-1);
static INSIDE_STOP: AtomicI32 = AtomicI32::new(-1);

unsafe extern "C" fn calls_back_in(_ctx: *mut c_void, json: *const c_char) {
    // SAFETY: a valid string for the call.
    let j = unsafe { std::ffi::CStr::from_ptr(json) }.to_string_lossy();
    if j.contains("\"ready\"") {
        let node = INSIDE_NODE.load(Ordering::SeqCst);
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid out pointer.
        let s = unsafe { pl_node_status_json(node, &mut out) };
        INSIDE_STATUS.store(s as i32, Ordering::SeqCst);
        INSIDE_STOP.store(pl_node_stop(node) as i32, Ordering::SeqCst);
    }
}

#[test]
fn calls_that_wait_are_refused_inside_callbacks() {
    let json = CString::new(config(&state_dir("inside"))).unwrap();
    let mut node: PlNode = 0;
    // SAFETY: valid arguments.
    let s = unsafe {
        pl_node_new(
            json.as_ptr(),
            None,
            Some(calls_back_in),
            std::ptr::null_mut(),
            &mut node,
        )
    };
    assert_eq!(s, PlStatus::PlOk);
    INSIDE_NODE.store(node, Ordering::SeqCst);
    let r = Arc::new(Reports::default());
    start_packets(node, &r).unwrap();
    // The callback's calls wait for `start` to finish, then are refused: waiting for the node
    // from its own thread would never end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while INSIDE_STOP.load(Ordering::SeqCst) == -1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let wrong = PlStatus::PlErrWrongThread as i32;
    assert_eq!(INSIDE_STATUS.load(Ordering::SeqCst), wrong);
    assert_eq!(INSIDE_STOP.load(Ordering::SeqCst), wrong);
    // From here both work.
    assert!(status(node).is_ok());
    assert_eq!(pl_node_free(node), PlStatus::PlOk);
}

#[test]
fn two_nodes_on_one_state_dir_are_refused() {
    let r = Arc::new(Reports::default());
    let dir = state_dir("shared");
    let a = new_node(&config(&dir), &r).unwrap();
    let e = new_node(&config(&dir), &r).unwrap_err();
    assert_eq!(e.0, PlStatus::PlErrInvalidArgument, "{}", e.1);
    assert!(e.1.contains("in use by another node"), "{}", e.1);
    assert_eq!(pl_node_free(a), PlStatus::PlOk);
    // Once the first is freed, the directory is free again.
    let b = new_node(&config(&dir), &r).unwrap();
    assert_eq!(pl_node_free(b), PlStatus::PlOk);
}

static FREE_INSIDE: AtomicU64 = AtomicU64::new(0);
static FREE_INSIDE_STATUS: AtomicI32 = AtomicI32::new(-1);

unsafe extern "C" fn frees_inside(_ctx: *mut c_void, json: *const c_char) {
    // SAFETY: a valid string for the call.
    let j = unsafe { std::ffi::CStr::from_ptr(json) }.to_string_lossy();
    if j.contains("\"ready\"") {
        let s = pl_node_free(FREE_INSIDE.load(Ordering::SeqCst));
        FREE_INSIDE_STATUS.store(s as i32, Ordering::SeqCst);
    }
}

#[test]
fn free_inside_a_callback_is_refused_and_keeps_the_handle() {
    let json = CString::new(config(&state_dir("free-inside"))).unwrap();
    let mut node: PlNode = 0;
    // SAFETY: valid arguments.
    let s = unsafe {
        pl_node_new(
            json.as_ptr(),
            None,
            Some(frees_inside),
            std::ptr::null_mut(),
            &mut node,
        )
    };
    assert_eq!(s, PlStatus::PlOk);
    FREE_INSIDE.store(node, Ordering::SeqCst);
    let r = Arc::new(Reports::default());
    start_packets(node, &r).unwrap();
    assert_eq!(
        FREE_INSIDE_STATUS.load(Ordering::SeqCst),
        PlStatus::PlErrWrongThread as i32
    );
    assert!(status(node).is_ok(), "the handle must still work");
    assert_eq!(pl_node_free(node), PlStatus::PlOk);
}

/// An event callback that blocks on `stopped` (as an app's callback might, waiting on a lock the
/// app holds while it calls pl_node_stop), until the test lets go.
static BLOCK_ON_STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static CALLED_AFTER_FREE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static FREED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

unsafe extern "C" fn blocks_on_stopped(_ctx: *mut c_void, json: *const c_char) {
    if FREED.load(Ordering::SeqCst) {
        CALLED_AFTER_FREE.store(true, Ordering::SeqCst);
    }
    // SAFETY: a valid string for the call.
    let j = unsafe { std::ffi::CStr::from_ptr(json) }.to_string_lossy();
    if j.contains("\"stopped\"") {
        // Until the test lets go (at most 30 s).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while BLOCK_ON_STOPPED.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

#[test]
fn a_stop_that_times_out_keeps_the_handle_until_the_thread_is_gone() {
    let json = CString::new(config(&state_dir("slow"))).unwrap();
    let mut node: PlNode = 0;
    // SAFETY: valid arguments.
    let s = unsafe {
        pl_node_new(
            json.as_ptr(),
            None,
            Some(blocks_on_stopped),
            std::ptr::null_mut(),
            &mut node,
        )
    };
    assert_eq!(s, PlStatus::PlOk);
    let r = Arc::new(Reports::default());
    start_packets(node, &r).unwrap();
    BLOCK_ON_STOPPED.store(true, Ordering::SeqCst);
    let t = std::time::Instant::now();
    expect(pl_node_stop(node), PlStatus::PlErrTimeout, "keep ctx valid");
    assert!(t.elapsed() < std::time::Duration::from_secs(6));
    // Neither a restart nor free goes ahead while the old thread may still call back.
    let again = start_packets(node, &r).unwrap_err();
    assert_eq!(again.0, PlStatus::PlErrTimeout, "{}", again.1);
    expect(
        pl_node_free(node),
        PlStatus::PlErrTimeout,
        "callbacks may still run",
    );
    assert!(
        status(node).is_err(),
        "the handle stays, the node does not run"
    );
    // Once the callback returns, free completes, and nothing calls back afterwards.
    BLOCK_ON_STOPPED.store(false, Ordering::SeqCst);
    assert_eq!(pl_node_free(node), PlStatus::PlOk, "{}", last_error());
    FREED.store(true, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !CALLED_AFTER_FREE.load(Ordering::SeqCst),
        "a callback ran after free returned"
    );
}
