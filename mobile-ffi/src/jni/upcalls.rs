//! Calls from the node's thread into the JVM: the C callbacks of [`crate::callbacks`], with a
//! node's Java objects as their context pointer.
//!
//! - **Attach once, as a daemon.** The node's thread is a native thread. On its first callback
//!   it is attached to the JVM as a daemon thread named `planetary-node` (so a node the app
//!   forgot to close never keeps the JVM from exiting), and it stays attached until it ends:
//!   a thread-local guard detaches it when the thread exits, which `stop` waits for. jni 0.22
//!   dropped daemon attachments from its API (its `0.22-MIGRATION.md` explains why: after
//!   `DestroyJavaVM` a daemon thread must not touch JNI again), so this is done here with
//!   `AttachCurrentThreadAsDaemon`; the hazard does not arise on Android (the VM is never
//!   destroyed) and on a desktop JVM only when the app exits with a node still running.
//! - **A local frame per call.** The thread never returns to Java, so every local reference
//!   made for a call (strings, the packet's `byte[]`) is freed by popping the frame.
//! - **No exception left pending.** The Java dispatchers catch whatever a listener throws;
//!   should anything still be pending (an `OutOfMemoryError` while allocating), it is printed
//!   and cleared here.
//! - **Context lifetimes.** A node's event target lives until `Node.close` freed the node (no
//!   callback runs after that); packet targets live until the thread that used them is joined
//!   ([`PacketTargets`]).

use super::classes::{self, Classes};
use crate::callbacks::{Ctx, PacketOut};
use jni::objects::{JObject, JString, JValue};
use jni::refs::Global;
use jni::signature::{JavaType, Primitive};
use jni::sys;
use jni::{Env, JavaVM};
use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Local references one callback may make before the JVM grows the frame.
const LOCAL_FRAME: usize = 8;

/// A node's `Dispatch` object: the context pointer of its event and log callbacks.
pub struct EventTarget {
    dispatch: Global<JObject<'static>>,
}

impl EventTarget {
    /// A target calling `dispatch` (a `lan.planetary.Dispatch`).
    pub fn new(dispatch: Global<JObject<'static>>) -> Box<EventTarget> {
        Box::new(EventTarget { dispatch })
    }

    /// The context pointer for the C callbacks; valid while the box lives.
    pub fn ctx(self: &EventTarget) -> Ctx {
        Ctx(self as *const EventTarget as *mut c_void)
    }
}

/// A `PacketDispatch` object: the context pointer of one start's packet callback.
pub struct PacketTarget {
    dispatch: Global<JObject<'static>>,
}

impl PacketTarget {
    /// A target calling `dispatch` (a `lan.planetary.PacketDispatch`).
    pub fn new(dispatch: Global<JObject<'static>>) -> Box<PacketTarget> {
        Box::new(PacketTarget { dispatch })
    }

    /// The packet sink handing packets to this target; valid while the box lives. (Always
    /// `Some`: `PacketOut::new` is given a callback.)
    pub fn sink(self: &PacketTarget) -> Option<PacketOut> {
        PacketOut::new(
            Some(on_packet),
            Ctx(self as *const PacketTarget as *mut c_void),
        )
    }
}

/// The packet targets of a node's starts. One is in use while the node runs; older ones are
/// dropped once no thread can call them (after a start succeeded, which joined any earlier
/// thread, or a stop did).
#[derive(Default)]
#[allow(
    clippy::vec_box,
    reason = "each target's address is a callback's ctx: it must not move when the Vec grows"
)]
pub struct PacketTargets(Vec<Box<PacketTarget>>);

impl PacketTargets {
    /// Keeps `t` (the next start's).
    pub fn push(&mut self, t: Box<PacketTarget>) -> *const PacketTarget {
        let p: *const PacketTarget = &*t;
        self.0.push(t);
        p
    }

    /// Every earlier thread is joined: keeps only `current` (None: none).
    pub fn keep_only(&mut self, current: Option<*const PacketTarget>) {
        self.0
            .retain(|t| current.is_some_and(|c| std::ptr::eq(&**t, c)));
    }
}

/// Detaches the node's thread from the JVM when the thread ends.
struct DaemonAttachment {
    vm: *mut sys::JavaVM,
}

impl Drop for DaemonAttachment {
    fn drop(&mut self) {
        // SAFETY: `vm` is the process's JavaVM (never destroyed while a node runs, see the
        // module doc); this runs in the thread's TLS destructors, where no Java frame and no
        // jni AttachGuard remains on the thread, so detaching it is allowed.
        unsafe {
            ((**self.vm).v1_4.DetachCurrentThread)(self.vm);
        }
    }
}

thread_local! {
    static ATTACHMENT: RefCell<Option<DaemonAttachment>> = const { RefCell::new(None) };
}

/// Makes sure this thread is attached, attaching it as a daemon thread the first time.
fn attach(vm: &JavaVM) -> bool {
    if vm.is_thread_attached().unwrap_or(false) {
        return true;
    }
    let raw = vm.get_raw();
    let mut env: *mut c_void = std::ptr::null_mut();
    let mut args = sys::JavaVMAttachArgs {
        version: sys::JNI_VERSION_1_6,
        name: c"planetary-node".as_ptr() as *mut c_char,
        group: std::ptr::null_mut(),
    };
    // SAFETY: `raw` is the valid JavaVM pointer jni recorded in JNI_OnLoad; the thread is not
    // attached (checked above); `args` lives across the call.
    let rc = unsafe {
        ((**raw).v1_4.AttachCurrentThreadAsDaemon)(
            raw,
            &mut env,
            (&mut args as *mut sys::JavaVMAttachArgs).cast(),
        )
    };
    if rc != sys::JNI_OK {
        return false;
    }
    ATTACHMENT.with(|a| *a.borrow_mut() = Some(DaemonAttachment { vm: raw }));
    true
}

/// Runs `f` with this thread attached, in a local frame; clears any exception left.
fn call_java(f: impl FnOnce(&mut Env, &'static Classes) -> jni::errors::Result<()>) {
    let (Some(classes), Ok(vm)) = (classes::get(), JavaVM::singleton()) else {
        return;
    };
    if !attach(&vm) {
        return;
    }
    let _ = vm.with_local_frame(LOCAL_FRAME, |env| -> jni::errors::Result<()> {
        let r = f(env, classes);
        if env.exception_check() {
            env.exception_describe();
            env.exception_clear();
        }
        r
    });
}

fn string_or_null<'l>(env: &mut Env<'l>, s: Option<&str>) -> jni::errors::Result<JString<'l>> {
    match s {
        Some(s) => env.new_string(s),
        None => Ok(JString::default()),
    }
}

const VOID: JavaType = JavaType::Primitive(Primitive::Void);

/// An event's kind (as `Dispatch` numbers them) and its two strings.
fn event_args(v: &serde_json::Value) -> Option<(i32, Option<&str>, Option<&str>)> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str());
    match v.get("event")?.as_str()? {
        "ready" => Some((0, s("address"), s("public_key"))),
        "peer_up" => Some((1, s("public_key"), s("address"))),
        "peer_down" => Some((2, s("public_key"), s("address"))),
        "stopped" => Some((3, s("error"), None)),
        _ => None,
    }
}

/// The event callback (`PlEventCallback`): `ctx` is the node's [`EventTarget`].
pub unsafe extern "C" fn on_event(ctx: *mut c_void, json: *const c_char) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ctx is the node's EventTarget, alive until Node.close freed the node, after
        // which no callback runs; json is a NUL-terminated string valid for this call.
        let (target, json) = unsafe { (&*(ctx as *const EventTarget), CStr::from_ptr(json)) };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(json.to_bytes()) else {
            return;
        };
        let Some((kind, a, b)) = event_args(&v) else {
            return;
        };
        call_java(|env, c| {
            let (a, b) = (string_or_null(env, a)?, string_or_null(env, b)?);
            let args = [
                JValue::Int(kind).as_jni(),
                JValue::from(&a).as_jni(),
                JValue::from(&b).as_jni(),
            ];
            // SAFETY: the method ID is Dispatch.event(int, String, String) void, looked up on
            // the class of this object, and the arguments match it.
            unsafe {
                env.call_method_unchecked(target.dispatch.as_obj(), c.dispatch_event, VOID, &args)
            }
            .map(|_| ())
        });
    }));
}

/// The log callback (`PlLogCallback`): `ctx` is the node's [`EventTarget`].
pub unsafe extern "C" fn on_log(ctx: *mut c_void, level: i32, message: *const c_char) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in on_event; message is a NUL-terminated string valid for this call.
        let (target, message) = unsafe { (&*(ctx as *const EventTarget), CStr::from_ptr(message)) };
        let message = message.to_string_lossy();
        call_java(|env, c| {
            let m = env.new_string(&*message)?;
            let args = [JValue::Int(level).as_jni(), JValue::from(&m).as_jni()];
            // SAFETY: Dispatch.log(int, String) void, arguments as declared.
            unsafe {
                env.call_method_unchecked(target.dispatch.as_obj(), c.dispatch_log, VOID, &args)
            }
            .map(|_| ())
        });
    }));
}

/// The packet callback (`PlPacketCallback`): `ctx` is a [`PacketTarget`].
unsafe extern "C" fn on_packet(ctx: *mut c_void, packet: *const u8, len: usize) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ctx is a PacketTarget kept until the thread calling it is joined
        // (PacketTargets); packet has len readable bytes for this call.
        let (target, packet) = unsafe {
            (
                &*(ctx as *const PacketTarget),
                std::slice::from_raw_parts(packet, len),
            )
        };
        call_java(|env, c| {
            let array = env.byte_array_from_slice(packet)?;
            let args = [JValue::from(&array).as_jni()];
            // SAFETY: PacketDispatch.packet(byte[]) void, argument as declared.
            unsafe {
                env.call_method_unchecked(target.dispatch.as_obj(), c.packets_packet, VOID, &args)
            }
            .map(|_| ())
        });
    }));
}

/// Asks a `ProtectDispatch` (a `Global` to it) to protect `fd`: its answer, or `false` when it
/// cannot be asked (the thread cannot attach, the JVM threw).
pub fn protect(dispatch: &Global<JObject<'static>>, fd: i32, kind: i32) -> bool {
    let mut protected = false;
    let _ = catch_unwind(AssertUnwindSafe(|| {
        call_java(|env, c| {
            let args = [JValue::Int(fd).as_jni(), JValue::Int(kind).as_jni()];
            // SAFETY: ProtectDispatch.protect(int, int) boolean, looked up on the class of
            // this object, arguments as declared.
            let r = unsafe {
                env.call_method_unchecked(
                    dispatch.as_obj(),
                    c.protect_protect,
                    JavaType::Primitive(Primitive::Boolean),
                    &args,
                )
            }?;
            protected = r.z()?;
            Ok(())
        });
    }));
    protected
}
