//! The app library (`mobile-ffi`) from outside Rust, against a real `meshd` in another
//! namespace:
//! - a C program (compiled here with gcc) opens a TUN device itself, as Android's VpnService
//!   would, hands its descriptor to `pl_node_start`, and pings the meshd node through it;
//! - a Python (ctypes) program drives packet mode: it builds an ICMPv6 echo request, hands it to
//!   `pl_node_send_packet`, and gets meshd's kernel's echo reply through the packet callback.

use std::process::Command;
use tests::{Node, mobile_library, require_root, veth, workspace};

const APP_IP: &str = "10.97.0.1";
const SRV_IP: &str = "10.97.0.2";

/// A meshd node in one namespace, an empty namespace for the app, a veth between them.
fn setup() -> (Node, tests::Netns, std::path::PathBuf) {
    require_root();
    let mut srv = Node::new("srv");
    let app = tests::Netns::new("app");
    veth(&app, APP_IP, &srv.ns, SRV_IP);
    srv.configure("udp://0.0.0.0:7820", &[], "");
    srv.start();
    let dir = std::env::temp_dir().join(format!("planetary-{}", app.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("app dir");
    (srv, app, dir)
}

fn app_config(dir: &std::path::Path) -> String {
    serde_json::json!({
        "state_dir": dir.join("state"),
        "listen": ["udp://0.0.0.0:7820"],
        "peers": [format!("udp://{SRV_IP}:7820")],
        "tun": { "mtu": 1280 },
    })
    .to_string()
}

fn output_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run the app");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn c_program_hands_its_tun_descriptor_and_pings_meshd() {
    let (srv, app, dir) = setup();
    let lib = mobile_library();
    let lib_dir = lib.parent().expect("library directory");
    let exe = dir.join("tun_ping");
    let (ok, text) = output_of(
        Command::new("gcc")
            .args([
                "-Wall",
                "-Wextra",
                "-Werror",
                "-std=c11",
                "-D_DEFAULT_SOURCE",
            ])
            .arg("-I")
            .arg(workspace().join("mobile-ffi/include"))
            .arg(workspace().join("tests/mobile/tun_ping.c"))
            .arg("-L")
            .arg(lib_dir)
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
            .args(["-lplanetary_lan", "-o"])
            .arg(&exe),
    );
    assert!(ok, "gcc failed:\n{text}");
    let (target, _) = srv.identity();
    let (ok, text) = output_of(
        app.cmd("timeout")
            .arg("60")
            .arg(&exe)
            .arg(app_config(&dir))
            .arg(target.to_string()),
    );
    assert!(
        ok && text.contains("PING OK"),
        "the C app could not ping meshd:\n{text}\nmeshd:\n{}",
        srv.log()
    );
    assert!(text.contains("bytes from"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn python_drives_packet_mode_with_an_icmpv6_echo() {
    let (srv, app, dir) = setup();
    let (target, _) = srv.identity();
    let mut cmd = app.cmd("timeout");
    cmd.args(["60", "python3"])
        .arg(workspace().join("tests/mobile/packet_mode.py"))
        .arg(mobile_library())
        .arg(app_config(&dir))
        .arg(target.to_string());
    let (ok, text) = output_of(&mut cmd);
    assert!(
        ok && text.contains("ECHO REPLY OK"),
        "packet mode failed:\n{text}\nmeshd:\n{}",
        srv.log()
    );
    println!(
        "{}",
        text.lines()
            .find(|l| l.contains("ECHO REPLY OK"))
            .unwrap_or("")
    );
    // The app made no TUN device in its namespace.
    let links = tests::run(app.cmd("ip").args(["-o", "link"]));
    assert!(!links.contains("tun"), "{links}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every `.java` file under `dir`.
fn java_sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read a source directory") {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            java_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "java") {
            out.push(p);
        }
    }
}

#[test]
fn java_app_hands_its_tun_descriptor_and_pings_meshd() {
    // The Java API's `Node.start(fd)`: a JVM program (tests/mobile/java/.../TunApp.java) gets a
    // TUN descriptor as an Android app gets one from VpnService, gives the interface the node's
    // address, starts the node on it, and pings meshd through it; packets never enter the JVM.
    let (srv, app, dir) = setup();
    let lib = mobile_library();
    let lib_dir = lib.parent().expect("library directory");
    let classes = dir.join("classes");
    let mut sources = Vec::new();
    java_sources(
        &workspace().join("mobile-ffi/java/src/main/java"),
        &mut sources,
    );
    java_sources(&workspace().join("tests/mobile/java"), &mut sources);
    let (ok, text) = output_of(
        Command::new("javac")
            .args(["-Xlint:all", "-Werror", "--release", "11", "-d"])
            .arg(&classes)
            .args(&sources),
    );
    assert!(
        ok,
        "javac failed (.ci/run installs default-jdk-headless):\n{text}"
    );
    let (target, _) = srv.identity();
    let (ok, text) = output_of(
        app.cmd("timeout")
            .args(["60", "python3"])
            .arg(workspace().join("tests/mobile/with_tun.py"))
            .args(["java", "-Xcheck:jni"])
            .arg(format!("-Djava.library.path={}", lib_dir.display()))
            .arg("-cp")
            .arg(&classes)
            .arg("lan.planetary.apptest.TunApp")
            .arg(app_config(&dir))
            .arg(target.to_string()),
    );
    assert!(
        ok && text.contains("PING OK"),
        "the Java app could not ping meshd:\n{text}\nmeshd:\n{}",
        srv.log()
    );
    assert!(text.contains("bytes from"), "{text}");
    assert!(
        !text.lines().any(|l| l.contains("WARNING")),
        "-Xcheck:jni warned:\n{text}"
    );
    println!(
        "{}",
        text.lines().find(|l| l.contains("PING OK")).unwrap_or("")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
