//! The native methods of `lan.planetary.Native`, registered by `JNI_OnLoad`.
//!
//! Each one runs in [`entry`]: a Rust panic, a library error or a JNI failure becomes a Java
//! exception (`PlanetaryException` with the library's code and message, or
//! `NullPointerException`), never an abort of the JVM. They call the node directly
//! ([`crate::registry`], [`crate::node::Node`]), as the C functions do, not through them.

use super::classes::{self, Classes};
use super::upcalls::{self, EventTarget, PacketTarget, PacketTargets};
use crate::callbacks::{EventSink, LogSink};
use crate::error::{Error, PlStatus};
use crate::node::{Mode, on_other_thread};
use crate::registry;
use api::{PeerInfo, Request, Status};
use jni::objects::{JByteArray, JClass, JObject, JString, JValue};
use jni::strings::JNIString;
use jni::sys::{jboolean, jint, jlong};
use jni::{Env, EnvUnowned, Outcome, jni_str};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Why a native method failed.
pub enum Fail {
    /// The library's own error: thrown as `PlanetaryException`.
    Pl(Error),
    /// A null argument: thrown as `NullPointerException`.
    Null(&'static str),
    /// JNI failed (an exception may be pending already).
    Jni(jni::errors::Error),
}

impl From<jni::errors::Error> for Fail {
    fn from(e: jni::errors::Error) -> Fail {
        Fail::Jni(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Pl(e)
    }
}

/// The library's messages name the C functions; a Java caller knows the methods.
fn java_message(message: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("pl_node_start_packet_mode", "Node.startPacketMode"),
        ("pl_node_start", "Node.start"),
        ("pl_node_stop", "Node.stop"),
        ("pl_node_free", "Node.close"),
        ("pl_node_new", "Node.create"),
        ("pl_node_status_json", "Node.status"),
        ("pl_node_peers_json", "Node.peers"),
        ("pl_node_add_peer", "Node.addPeer"),
        ("pl_node_send_packet", "Node.sendPacket"),
        ("pl_node_set_protect", "Node.setSocketProtector"),
        ("pl_node_network_changed", "Node.networkChanged"),
        ("node handle", "node"),
        ("config_json", "configJson"),
    ];
    let mut m = message.to_string();
    for (c, java) in NAMES {
        m = m.replace(c, java);
    }
    m
}

fn throw(env: &mut Env, c: Option<&Classes>, fail: Fail) -> jni::errors::Result<()> {
    let (code, message) = match fail {
        // Already thrown (by the JVM, or a Java method we called): let it propagate.
        Fail::Jni(jni::errors::Error::JavaException) if env.exception_check() => return Ok(()),
        Fail::Jni(e) => (
            PlStatus::PlErrPanic as i32,
            format!("internal error (a bug in Planetary LAN, please report it): JNI: {e}"),
        ),
        Fail::Null(what) => {
            let Some(c) = c else {
                return Ok(());
            };
            return env.throw_new(&c.npe, JNIString::from(format!("{what} must not be null")));
        }
        Fail::Pl(e) => (e.status as i32, java_message(&e.message)),
    };
    let Some(c) = c else {
        // JNI_OnLoad failed to find the classes, so this cannot be: the class calling us is one.
        return env.throw_new(
            jni_str!("java/lang/IllegalStateException"),
            JNIString::from(message),
        );
    };
    if env.exception_check() {
        env.exception_clear();
    }
    let text = env.new_string(&message)?;
    let args = [JValue::Int(code).as_jni(), JValue::from(&text).as_jni()];
    // SAFETY: error_new is PlanetaryException(int, String), and the class is that one.
    let e = unsafe { env.new_object_unchecked(&c.error, c.error_new, &args) }?;
    let e = env.cast_local::<jni::objects::JThrowable>(e)?;
    env.throw(e)
}

/// Runs a native method's body: its result, or (after throwing) the default value.
fn entry<'l, T: Default>(
    env: &mut EnvUnowned<'l>,
    f: impl FnOnce(&mut Env<'l>, &'static Classes) -> Result<T, Fail>,
) -> T {
    let outcome = env
        .with_env(|env| -> Result<T, Fail> {
            let c = classes::get().ok_or_else(|| {
                Fail::Pl(Error::new(
                    PlStatus::PlErrPanic,
                    "the library was not loaded through JNI_OnLoad",
                ))
            })?;
            f(env, c)
        })
        .into_outcome();
    let fail = match outcome {
        Outcome::Ok(v) => return v,
        Outcome::Err(e) => e,
        Outcome::Panic(p) => Fail::Pl(Error::new(
            PlStatus::PlErrPanic,
            crate::error::panic_message(p.as_ref()),
        )),
    };
    let _ = env
        .with_env(|env| -> jni::errors::Result<()> { throw(env, classes::get(), fail) })
        .into_outcome();
    T::default()
}

/// A node's Java side: its event target, and the packet targets of its starts. The lock is
/// held across start and stop (never on a node's thread: those calls refuse to run there
/// first), so that concurrent starts cannot drop a target in use.
struct JavaNode {
    _events: Box<EventTarget>,
    packets: Mutex<PacketTargets>,
}

fn java_nodes() -> &'static Mutex<HashMap<u64, Arc<JavaNode>>> {
    static NODES: OnceLock<Mutex<HashMap<u64, Arc<JavaNode>>>> = OnceLock::new();
    NODES.get_or_init(Default::default)
}

fn java_node(handle: u64) -> Result<Arc<JavaNode>, Fail> {
    crate::node::lock(java_nodes())
        .get(&handle)
        .cloned()
        .ok_or_else(|| Fail::Pl(closed()))
}

fn closed() -> Error {
    Error::new(PlStatus::PlErrInvalidHandle, "this Node is closed")
}

fn handle(h: jlong) -> Result<u64, Fail> {
    u64::try_from(h).map_err(|_| Fail::Pl(closed()))
}

fn node(h: jlong) -> Result<Arc<crate::node::Node>, Fail> {
    registry::get(handle(h)?).map_err(|_| Fail::Pl(closed()))
}

fn string_arg(env: &mut Env, s: &JString, what: &'static str) -> Result<String, Fail> {
    if s.is_null() {
        return Err(Fail::Null(what));
    }
    Ok(s.try_to_string(env)?)
}

extern "system" fn create<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    config: JString<'l>,
    dispatch: JObject<'l>,
    logs: jboolean,
) -> jlong {
    entry(&mut env, |env, _| {
        let json = string_arg(env, &config, "configJson")?;
        if dispatch.is_null() {
            return Err(Fail::Null("listener"));
        }
        let cfg = crate::config::parse(&json)?;
        let target = EventTarget::new(env.new_global_ref(&dispatch)?);
        let ctx = target.ctx();
        let log = if logs {
            LogSink::new(Some(upcalls::on_log), ctx)
        } else {
            None
        };
        let events = EventSink::new(Some(upcalls::on_event), ctx);
        // On failure no node exists, so no callback can hold `target`.
        let handle = registry::create(cfg, log, events)?;
        let java = Arc::new(JavaNode {
            _events: target,
            packets: Mutex::default(),
        });
        crate::node::lock(java_nodes()).insert(handle, java);
        Ok(i64::try_from(handle).unwrap_or(i64::MAX))
    })
}

type Started = (Mode, Option<*const PacketTarget>);

/// Starts the node; `mode` makes its mode (keeping a packet target, if any, in `packets`).
fn start_with(
    h: jlong,
    mode: impl FnOnce(&mut PacketTargets) -> Result<Started, Fail>,
) -> Result<(), Fail> {
    on_other_thread()?;
    let (n, java) = (node(h)?, java_node(handle(h)?)?);
    let mut packets = crate::node::lock(&java.packets);
    let (mode, current) = mode(&mut packets)?;
    n.start(mode)?;
    // It started, so any earlier thread was joined: only this start's target is in use.
    packets.keep_only(current);
    Ok(())
}

extern "system" fn start<'l>(mut env: EnvUnowned<'l>, _c: JClass<'l>, h: jlong, fd: jint) {
    entry(&mut env, |_, _| start_with(h, |_| Ok((Mode::Fd(fd), None))))
}

extern "system" fn start_packet_mode<'l>(
    mut env: EnvUnowned<'l>,
    _c: JClass<'l>,
    h: jlong,
    dispatch: JObject<'l>,
) {
    entry(&mut env, |env, _| {
        if dispatch.is_null() {
            return Err(Fail::Null("packet listener"));
        }
        let target = PacketTarget::new(env.new_global_ref(&dispatch)?);
        start_with(h, move |packets| {
            let out = target.sink().ok_or_else(|| {
                Fail::Pl(Error::new(PlStatus::PlErrPanic, "no packet sink (a bug)"))
            })?;
            let current = packets.push(target);
            Ok((Mode::Packets(out), Some(current)))
        })
    })
}

/// The largest packet copied out of a Java array before the node checks it against its MTU.
const MAX_PACKET: usize = 65_535;

thread_local! {
    /// `sendPacket`'s copy of the packet (one per calling thread, reused).
    static PACKET: std::cell::RefCell<Vec<i8>> = const { std::cell::RefCell::new(Vec::new()) };
}

extern "system" fn send_packet<'l>(
    mut env: EnvUnowned<'l>,
    _c: JClass<'l>,
    h: jlong,
    packet: JByteArray<'l>,
    offset: jint,
    length: jint,
) -> jboolean {
    entry(&mut env, |env, _| {
        if packet.is_null() {
            return Err(Fail::Null("packet"));
        }
        let n = node(h)?;
        let size = packet.len(env)?;
        let (Ok(off), Ok(len)) = (usize::try_from(offset), usize::try_from(length)) else {
            return Err(bad(format!(
                "offset {offset} and length {length} must not be negative"
            )));
        };
        if off.checked_add(len).is_none_or(|end| end > size) {
            return Err(bad(format!(
                "offset {off} + length {len} exceed the array's {size} bytes"
            )));
        }
        let mtu = usize::from(n.cfg.tun.mtu);
        if len > mtu.min(MAX_PACKET) {
            return Err(bad(format!(
                "a packet of {len} bytes exceeds the MTU {mtu}"
            )));
        }
        PACKET.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.resize(len, 0);
            packet.get_region(env, offset, &mut buf[..])?;
            // SAFETY: i8 and u8 have the same size and alignment; the slice covers `buf`.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
            match n.send_packet(bytes) {
                Ok(()) => Ok(true),
                Err(e) if e.status == PlStatus::PlErrQueueFull => Ok(false),
                Err(e) => Err(Fail::Pl(e)),
            }
        })
    })
}

fn bad(message: String) -> Fail {
    Fail::Pl(Error::new(PlStatus::PlErrInvalidArgument, message))
}

extern "system" fn set_protect<'l>(
    mut env: EnvUnowned<'l>,
    _c: JClass<'l>,
    h: jlong,
    dispatch: JObject<'l>,
    required: jboolean,
) {
    entry(&mut env, |env, _| {
        let n = node(h)?;
        let protect = if dispatch.is_null() {
            if required {
                return Err(Fail::Null("protector"));
            }
            meshd::protect::Protect::none()
        } else {
            // Dropped (its global reference deleted) when replaced or when the node is
            // closed, on the calling Java thread: the node's thread holds only clones.
            let target = env.new_global_ref(&dispatch)?;
            meshd::protect::Protect::new(
                Box::new(move |fd, kind| upcalls::protect(&target, fd, kind as i32)),
                required,
            )
        };
        n.set_protect(protect)?;
        Ok(())
    })
}

extern "system" fn network_changed<'l>(mut env: EnvUnowned<'l>, _c: JClass<'l>, h: jlong) {
    entry(&mut env, |_, _| {
        node(h)?.network_changed()?;
        Ok(())
    })
}

extern "system" fn stop<'l>(mut env: EnvUnowned<'l>, _c: JClass<'l>, h: jlong) {
    entry(&mut env, |_, _| {
        on_other_thread()?;
        let (n, java) = (node(h)?, java_node(handle(h)?)?);
        let mut packets = crate::node::lock(&java.packets);
        n.stop()?;
        // The thread is joined: no packet target is in use.
        packets.keep_only(None);
        Ok(())
    })
}

extern "system" fn free<'l>(mut env: EnvUnowned<'l>, _c: JClass<'l>, h: jlong) {
    entry(&mut env, |_, _| {
        let handle = handle(h)?;
        registry::free(handle).map_err(|e| match e.status {
            PlStatus::PlErrInvalidHandle => Fail::Pl(closed()),
            _ => Fail::Pl(e),
        })?;
        // The node's thread is gone: its Java objects may go (their global references are
        // deleted here, on this Java thread).
        crate::node::lock(java_nodes()).remove(&handle);
        Ok(())
    })
}

extern "system" fn status<'l>(mut env: EnvUnowned<'l>, _c: JClass<'l>, h: jlong) -> JObject<'l> {
    entry(&mut env, |env, c| {
        let st: Status = node(h)?.request_as(Request::Status)?;
        Ok(super::convert::status(env, c, &st)?)
    })
}

extern "system" fn peers<'l>(mut env: EnvUnowned<'l>, _c: JClass<'l>, h: jlong) -> JObject<'l> {
    entry(&mut env, |env, c| {
        let ps: Vec<PeerInfo> = node(h)?.request_as(Request::Peers)?;
        Ok(super::convert::peers(env, c, &ps)?)
    })
}

fn peer_request(
    env: &mut Env,
    h: jlong,
    uri: &JString,
    req: fn(String) -> Request,
) -> Result<(), Fail> {
    let uri = string_arg(env, uri, "uri")?;
    let n = node(h)?;
    if let Err(e) = uri.parse::<meshd::uri::PeerUri>() {
        return Err(bad(format!("uri: {e}")));
    }
    n.request(req(uri))?;
    Ok(())
}

extern "system" fn add_peer<'l>(
    mut env: EnvUnowned<'l>,
    _c: JClass<'l>,
    h: jlong,
    uri: JString<'l>,
) {
    entry(&mut env, |env, _| {
        peer_request(env, h, &uri, |uri| Request::PeerAdd { uri, persist: true })
    })
}

extern "system" fn remove_peer<'l>(
    mut env: EnvUnowned<'l>,
    _c: JClass<'l>,
    h: jlong,
    uri: JString<'l>,
) {
    entry(&mut env, |env, _| {
        peer_request(env, h, &uri, |uri| Request::PeerRemove { uri })
    })
}

extern "system" fn address<'l>(mut env: EnvUnowned<'l>, _c: JClass<'l>, h: jlong) -> JString<'l> {
    entry(&mut env, |env, _| {
        let a = node(h)?.identity().address().to_string();
        Ok(env.new_string(a)?)
    })
}

extern "system" fn public_key<'l>(
    mut env: EnvUnowned<'l>,
    _c: JClass<'l>,
    h: jlong,
) -> JString<'l> {
    entry(&mut env, |env, _| {
        let k = node(h)?.identity().public_key().to_string();
        Ok(env.new_string(k)?)
    })
}

extern "system" fn version<'l>(mut env: EnvUnowned<'l>, _c: JClass<'l>) -> JString<'l> {
    entry(&mut env, |env, _| {
        Ok(env.new_string(env!("CARGO_PKG_VERSION"))?)
    })
}

/// Registers the native methods on `lan.planetary.Native`.
pub fn register(env: &mut Env, c: &Classes) -> jni::errors::Result<()> {
    use jni::NativeMethod;
    macro_rules! native {
        ($name:literal, $sig:literal, $f:expr) => {
            // SAFETY: each function is `extern "system"`, takes (EnvUnowned, JClass) for a
            // static method, then parameters and a return type matching the signature.
            unsafe { NativeMethod::from_raw_parts(jni_str!($name), jni_str!($sig), $f as *mut _) }
        };
    }
    let methods = [
        native!(
            "create",
            "(Ljava/lang/String;Llan/planetary/Dispatch;Z)J",
            create as extern "system" fn(_, _, _, _, _) -> _
        ),
        native!("start", "(JI)V", start as extern "system" fn(_, _, _, _)),
        native!(
            "startPacketMode",
            "(JLlan/planetary/PacketDispatch;)V",
            start_packet_mode as extern "system" fn(_, _, _, _)
        ),
        native!(
            "sendPacket",
            "(J[BII)Z",
            send_packet as extern "system" fn(_, _, _, _, _, _) -> _
        ),
        native!(
            "setProtect",
            "(JLlan/planetary/ProtectDispatch;Z)V",
            set_protect as extern "system" fn(_, _, _, _, _)
        ),
        native!(
            "networkChanged",
            "(J)V",
            network_changed as extern "system" fn(_, _, _)
        ),
        native!("stop", "(J)V", stop as extern "system" fn(_, _, _)),
        native!("free", "(J)V", free as extern "system" fn(_, _, _)),
        native!(
            "status",
            "(J)Llan/planetary/NodeStatus;",
            status as extern "system" fn(_, _, _) -> _
        ),
        native!(
            "peers",
            "(J)[Llan/planetary/Peer;",
            peers as extern "system" fn(_, _, _) -> _
        ),
        native!(
            "addPeer",
            "(JLjava/lang/String;)V",
            add_peer as extern "system" fn(_, _, _, _)
        ),
        native!(
            "removePeer",
            "(JLjava/lang/String;)V",
            remove_peer as extern "system" fn(_, _, _, _)
        ),
        native!(
            "address",
            "(J)Ljava/lang/String;",
            address as extern "system" fn(_, _, _) -> _
        ),
        native!(
            "publicKey",
            "(J)Ljava/lang/String;",
            public_key as extern "system" fn(_, _, _) -> _
        ),
        native!(
            "version",
            "()Ljava/lang/String;",
            version as extern "system" fn(_, _) -> _
        ),
    ];
    // SAFETY: every entry above pairs a name and signature of Native's static methods with a
    // function of the matching parameters (see the macro).
    unsafe { env.register_native_methods(&c.native, &methods) }
}
