//! The Java API (`lan.planetary`, `src/jni`) on a real JVM: the Java sources and the Java test
//! programs (`java/src/test/java/lan/planetary/tests/`) are compiled with `javac`, and run with
//! `java -Xcheck:jni` against the `libplanetary_lan.so` this profile built. A test fails with the
//! JVM's output when the program fails, the JVM dies, or `-Xcheck:jni` prints a warning.
//!
//! Needs a JDK (`javac`, `java`): `.ci/run` installs `default-jdk-headless`. No JUnit: the test
//! programs carry a small assertion helper (`Check.java`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`, where cargo puts `libplanetary_lan.so`: the test runs from
/// `target/<profile>/deps/`. The library is built there first (with this test's profile and
/// target directory), since building an integration test does not promise the cdylib: when it
/// is fresh, this takes a second.
fn library_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().and_then(|p| p.to_str()).unwrap() {
            "debug" => "dev",
            p => p,
        }
        .to_string();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // Cargo hands a test variables such as CARGO_MANIFEST_DIR; build scripts watch some of
        // them, and passing them on would rebuild dependencies.
        for (k, _) in std::env::vars() {
            if k.starts_with("CARGO_") && k != "CARGO_HOME" {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .current_dir(manifest_dir())
            .env("CARGO_TARGET_DIR", target_dir)
            .args([
                "build",
                "--quiet",
                "--profile",
                &profile,
                "-p",
                "mobile-ffi",
                "--lib",
            ])
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "cargo build -p mobile-ffi --lib failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let so = profile_dir.join("libplanetary_lan.so");
        assert!(so.exists(), "{} was not built", so.display());
        profile_dir
    })
}

fn java_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            java_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "java") {
            out.push(p);
        }
    }
}

fn javac(release: &str, classpath: &Path, out: &Path, sources: &Path) {
    let mut files = Vec::new();
    java_files(sources, &mut files);
    let result = Command::new("javac")
        .args(["-Xlint:all", "-Werror", "--release", release, "-cp"])
        .arg(classpath)
        .arg("-d")
        .arg(out)
        .args(&files)
        .output()
        .expect("run javac: is a JDK installed? (.ci/run installs default-jdk-headless)");
    assert!(
        result.status.success(),
        "javac failed:\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The Java API (as Java 8, which Android's toolchain takes) and the test programs (Java 11),
/// compiled once, warnings as errors.
fn classes() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pl-jvm-classes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let src = manifest_dir().join("java/src");
        javac("8", &dir, &dir, &src.join("main/java"));
        javac("11", &dir, &dir, &src.join("test/java"));
        dir
    })
}

/// Runs one section of `JvmTests` in a JVM of its own; returns its output.
fn run_java(section: &str) -> String {
    // The cycles section measures the library's memory: without the JIT, whose compilations
    // (code cache, compiler arenas) add a step of 3 to 6 MiB to the RSS at an unpredictable
    // cycle, the first few hundred cycles in.
    let flags: &[&str] = if section == "cycles" { &["-Xint"] } else { &[] };
    run_jvm(
        classes().as_os_str(),
        "lan.planetary.tests.JvmTests",
        section,
        flags,
    )
}

/// Runs `main` (with a scratch directory and `section` as its arguments) on the JVM under
/// `-Xcheck:jni`; fails with its output if it fails or the JVM warns.
fn run_jvm(classpath: &std::ffi::OsStr, main: &str, section: &str, flags: &[&str]) -> String {
    let lib = library_dir();
    let scratch = std::env::temp_dir().join(format!("pl-jvm-{section}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let started = Instant::now();
    let out = Command::new("java")
        .args([
            "-Xcheck:jni",
            // A pre-touched heap of fixed size: the cycles section reads the RSS, which a
            // growing heap would move.
            "-Xms64m",
            "-Xmx64m",
            "-XX:+AlwaysPreTouch",
        ])
        .args(flags)
        .arg(format!("-Djava.library.path={}", lib.display()))
        .arg("-cp")
        .arg(classpath)
        .arg(main)
        .arg(&scratch)
        .arg(section)
        .output()
        .expect("run java: is a JDK installed? (.ci/run installs default-jdk-headless)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}(the JVM ran {:?})", started.elapsed());
    assert!(
        out.status.success(),
        "the Java test `{section}` failed ({}):\n{text}",
        out.status
    );
    // -Xcheck:jni reports misuse as "WARNING in native method: ..." (or "WARNING: JNI local
    // refs ...") and goes on: any such line fails the test.
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARNING")).collect();
    assert!(
        warnings.is_empty(),
        "-Xcheck:jni warned in `{section}`:\n{}\n\nwhole output:\n{text}",
        warnings.join("\n")
    );
    assert!(text.contains(&format!("ok {section} ")), "{text}");
    let _ = std::fs::remove_dir_all(&scratch);
    text
}

/// Two nodes in packet mode in one JVM, over loopback UDP: an ICMPv6 echo request from A's
/// `sendPacket` reaches B's `PacketListener`, B's reply reaches A's. Events (ready, peer up and
/// down, stopped), status and peers as objects, peers added and removed at runtime; prints what
/// one `status()` costs seen from Java.
#[test]
fn java_two_nodes_exchange_an_echo() {
    let text = run_java("echo");
    assert!(text.contains("status() from Java: median"), "{text}");
}

/// Null arguments, invalid JSON and configurations, packets that are not IPv6 or too big or
/// outside their array, bad descriptors and URIs, use after close, double close: each gives
/// its exception (type, code, message), and the JVM lives on.
#[test]
fn java_bad_calls_throw_exceptions() {
    run_java("bad_calls");
}

/// A listener that calls `status`, `peers`, `stop`, `close`, `addPeer` and `startPacketMode`
/// inside a callback gets `WRONG_THREAD` (not a deadlock); one that throws is logged and
/// ignored.
#[test]
fn java_listeners_that_call_back_or_throw() {
    run_java("callbacks");
}

/// 100 start/stop cycles (each linking with a peer) after 10 of warm-up: the same number of
/// threads, descriptors and JVM threads after as before, no `planetary-node` thread left after
/// any stop, and RSS within a stated tolerance.
#[test]
fn java_start_stop_cycles_leave_nothing_behind() {
    run_java("cycles");
}

/// Socket protection and network changes from Java: the protector sees the node's sockets
/// before use and again after `networkChanged` (same port); required and refused, or a
/// protector that throws, fails the start with the reason; bad calls throw.
#[test]
fn java_socket_protection_and_network_changes() {
    run_java("protect");
}

/// The API from Kotlin, as an app writes it (`java/src/test/kotlin/.../KotlinTests.kt`,
/// compiled with `kotlinc -Werror` against the Java API): properties for getters, a lambda for
/// the `SocketProtector`, an object for the `NodeListener`, `use`, exceptions caught by code.
/// Two nodes in packet mode exchange an ICMPv6 echo; protection, a network change, bad calls.
/// Needs `kotlinc`: `.ci/run` installs the Kotlin compiler from the npm registry.
#[test]
fn kotlin_app_uses_the_api() {
    let dir = std::env::temp_dir().join(format!("pl-kotlin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let jar = dir.join("ktests.jar");
    let src = manifest_dir().join("java/src/test/kotlin/lan/planetary/ktests/KotlinTests.kt");
    let out = Command::new("kotlinc")
        .arg("-cp")
        .arg(classes())
        .arg(&src)
        .args(["-Werror", "-include-runtime", "-d"])
        .arg(&jar)
        .output()
        .expect("run kotlinc: is the Kotlin compiler installed? (.ci/run installs it)");
    assert!(
        out.status.success(),
        "kotlinc failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cp = jar.into_os_string();
    cp.push(":");
    cp.push(classes());
    run_jvm(&cp, "lan.planetary.ktests.KotlinTestsKt", "kotlin", &[]);
    let _ = std::fs::remove_dir_all(&dir);
}
