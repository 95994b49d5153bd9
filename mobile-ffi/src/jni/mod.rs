//! # The Java API: `lan.planetary.Node` over JNI
//!
//! The same library serves C and Java: `libplanetary_lan.so` exports the `pl_` functions and
//! `JNI_OnLoad`. The Java sources are in `mobile-ffi/java/src/main/java/lan/planetary/`
//! (`Node`, `NodeListener`, `PacketListener`, `NodeStatus`, `Peer`, `PlanetaryException`,
//! `Config`); `docs/MOBILE.md` ("Java and Kotlin") is the guide.
//!
//! ```text
//!  app thread ── Node.status() ──> Native.status(handle) ──> registry ──> node::Node::request
//!                                   (natives.rs)                           │ (waits ≤ 5 s)
//!  node thread <──────────────────────────────────────────────────────────┘
//!      │ C callbacks (crate::callbacks) with a Java object as ctx
//!      └─> upcalls.rs: attach once as a daemon, local frame ──> Dispatch.event / PacketDispatch.packet
//! ```
//!
//! - **Registration.** `JNI_OnLoad` looks up the classes and method IDs once ([`classes`]) and
//!   registers the native methods of `lan.planetary.Native` with `RegisterNatives`
//!   ([`natives::register`]). No `Java_…` symbol is exported, a wrong signature fails
//!   `System.loadLibrary` at once (not the first call), and the classes are found with the
//!   app's class loader, which a native thread (the node's) would not see on Android.
//! - **Errors.** Every native method runs in a guard that turns a library error into
//!   `PlanetaryException` (code and message), a null argument into `NullPointerException`, and
//!   a Rust panic into `PlanetaryException` with code `PANIC`: nothing unwinds into the JVM.
//! - **Callbacks** ([`upcalls`]) run on the node's thread: it is attached to the JVM once, as a
//!   daemon, and detached when it ends; each call has its own local frame and leaves no
//!   exception pending.
//!
//! It holds no logic of the node: it converts arguments, calls [`crate::registry`] and
//! [`crate::node::Node`] as the C functions do, and builds Java objects from the `api` types
//! ([`convert`]).

mod classes;
mod convert;
mod natives;
mod upcalls;

use ::jni::JavaVM;
use ::jni::sys::{JNI_ERR, JNI_VERSION_1_6, jint};
use std::ffi::c_void;

/// Called by the JVM when `System.loadLibrary("planetary_lan")` loads the library: finds the
/// API's classes and registers its native methods. Failure makes `loadLibrary` throw
/// (`UnsatisfiedLinkError`), with the JVM's exception (say, `NoClassDefFoundError`) printed.
///
/// # Safety
/// Called by the JVM only, with its `JavaVM` pointer.
#[allow(non_snake_case)]
#[unsafe(no_mangle)]
pub unsafe extern "system" fn JNI_OnLoad(
    vm: *mut ::jni::sys::JavaVM,
    _reserved: *mut c_void,
) -> jint {
    let loaded = std::panic::catch_unwind(|| {
        if vm.is_null() {
            return false;
        }
        // SAFETY: the JVM passes its own, valid JavaVM pointer (JNI >= 1.6).
        let vm = unsafe { JavaVM::from_raw(vm) };
        vm.attach_current_thread(|env| -> ::jni::errors::Result<()> {
            let c = classes::init(env)?;
            natives::register(env, c)
        })
        .map_err(|e| eprintln!("planetary_lan: JNI_OnLoad failed: {e}"))
        .is_ok()
    });
    match loaded {
        Ok(true) => JNI_VERSION_1_6,
        _ => JNI_ERR,
    }
}
