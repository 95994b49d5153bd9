//! The Java classes and methods the native side uses, looked up once in `JNI_OnLoad`.
//!
//! They must be found there: a native thread attached later (the node's thread) sees only the
//! system class loader, which on Android does not know the app's classes. The global references
//! to the classes keep the cached method IDs valid for the life of the process.

use jni::Env;
use jni::ids::JMethodID;
use jni::objects::JClass;
use jni::refs::Global;
use jni::{jni_sig, jni_str};
use std::sync::OnceLock;

pub struct Classes {
    /// `lan.planetary.Native`: where the native methods are registered.
    pub native: Global<JClass<'static>>,
    /// `lan.planetary.Dispatch`: a node's events and log lines (held so that the method IDs
    /// stay valid).
    pub _dispatch: Global<JClass<'static>>,
    /// `Dispatch.event(int kind, String a, String b)`.
    pub dispatch_event: JMethodID,
    /// `Dispatch.log(int level, String message)`.
    pub dispatch_log: JMethodID,
    /// `lan.planetary.PacketDispatch`: packet mode's packets (held, as above).
    pub _packets: Global<JClass<'static>>,
    /// `PacketDispatch.packet(byte[])`.
    pub packets_packet: JMethodID,
    /// `lan.planetary.ProtectDispatch` (held, as above).
    pub _protect: Global<JClass<'static>>,
    /// `ProtectDispatch.protect(int fd, int kind)` boolean.
    pub protect_protect: JMethodID,
    /// `lan.planetary.NodeStatus` and its constructor.
    pub status: Global<JClass<'static>>,
    pub status_new: JMethodID,
    /// `lan.planetary.Peer` and its constructor.
    pub peer: Global<JClass<'static>>,
    pub peer_new: JMethodID,
    /// `lan.planetary.PlanetaryException` and its `(int code, String message)` constructor.
    pub error: Global<JClass<'static>>,
    pub error_new: JMethodID,
    /// `java.lang.String`, for `String[]`.
    pub string: Global<JClass<'static>>,
    /// `java.lang.NullPointerException`.
    pub npe: Global<JClass<'static>>,
}

static CLASSES: OnceLock<Classes> = OnceLock::new();

/// The classes, once `JNI_OnLoad` found them.
pub fn get() -> Option<&'static Classes> {
    CLASSES.get()
}

fn global(env: &mut Env, class: JClass) -> jni::errors::Result<Global<JClass<'static>>> {
    env.new_global_ref(class)
}

/// Looks the classes up (on the thread running `JNI_OnLoad`, whose class loader is the app's).
pub fn init(env: &mut Env) -> jni::errors::Result<&'static Classes> {
    if let Some(c) = CLASSES.get() {
        return Ok(c);
    }
    let native = env.find_class(jni_str!("lan/planetary/Native"))?;
    let dispatch = env.find_class(jni_str!("lan/planetary/Dispatch"))?;
    let packets = env.find_class(jni_str!("lan/planetary/PacketDispatch"))?;
    let protect = env.find_class(jni_str!("lan/planetary/ProtectDispatch"))?;
    let status = env.find_class(jni_str!("lan/planetary/NodeStatus"))?;
    let peer = env.find_class(jni_str!("lan/planetary/Peer"))?;
    let error = env.find_class(jni_str!("lan/planetary/PlanetaryException"))?;
    let string = env.find_class(jni_str!("java/lang/String"))?;
    let npe = env.find_class(jni_str!("java/lang/NullPointerException"))?;
    let dispatch_event = env.get_method_id(
        &dispatch,
        jni_str!("event"),
        jni_sig!("(ILjava/lang/String;Ljava/lang/String;)V"),
    )?;
    let dispatch_log = env.get_method_id(
        &dispatch,
        jni_str!("log"),
        jni_sig!("(ILjava/lang/String;)V"),
    )?;
    let packets_packet = env.get_method_id(&packets, jni_str!("packet"), jni_sig!("([B)V"))?;
    let protect_protect = env.get_method_id(&protect, jni_str!("protect"), jni_sig!("(II)Z"))?;
    let status_new = env.get_method_id(
        &status,
        jni_str!("<init>"),
        jni_sig!(
            "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;ILjava/lang/String;Ljava/lang/String;JIIJ[Ljava/lang/String;[J)V"
        ),
    )?;
    let peer_new = env.get_method_id(
        &peer,
        jni_str!("<init>"),
        jni_sig!(
            "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;JJJJJJLjava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;)V"
        ),
    )?;
    let error_new = env.get_method_id(
        &error,
        jni_str!("<init>"),
        jni_sig!("(ILjava/lang/String;)V"),
    )?;
    let classes = Classes {
        native: global(env, native)?,
        _dispatch: global(env, dispatch)?,
        dispatch_event,
        dispatch_log,
        _packets: global(env, packets)?,
        packets_packet,
        _protect: global(env, protect)?,
        protect_protect,
        status: global(env, status)?,
        status_new,
        peer: global(env, peer)?,
        peer_new,
        error: global(env, error)?,
        error_new,
        string: global(env, string)?,
        npe: global(env, npe)?,
    };
    // A second JNI_OnLoad (another class loader) keeps the first set.
    Ok(CLASSES.get_or_init(|| classes))
}
