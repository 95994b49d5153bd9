//! The CNI plugin `meshd-cni` as a container runtime drives it: ADD puts a container namespace
//! on a znet (the interface and address really appear), CHECK confirms it, DEL removes it and
//! may be repeated, and bad input ends in a CNI error object.

use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tests::{Netns, Node, binaries, require_root, wait_until};

/// The plugin binary: `cargo build -p meshctl` puts it next to `meshctl`.
fn plugin() -> PathBuf {
    let path = binaries().1.with_file_name("meshd-cni");
    assert!(
        path.exists(),
        "{} is missing: it is built with `cargo build -p meshctl`",
        path.display()
    );
    path
}

/// Runs the plugin like a runtime does: `env` (the CNI_ variables) and `config` on stdin.
/// Returns whether it succeeded and what it printed on stdout (JSON, or null if nothing).
fn cni(env: &[(&str, &str)], config: &Value) -> (bool, Value) {
    let mut child = Command::new(plugin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run meshd-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config.to_string().as_bytes())
        .expect("write the configuration");
    let out = child.wait_with_output().expect("meshd-cni ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "meshd-cni printed no JSON ({e}): {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    if !out.status.success() {
        assert!(
            value["code"].is_u64() && value["msg"].is_string(),
            "a failure must print a CNI error object: {value}"
        );
    }
    (out.status.success(), value)
}

/// The CNI variables of one command on one attachment.
fn vars<'a>(
    command: &'a str,
    container: &'a str,
    netns: &'a str,
    args: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", args),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

/// `config` with `prevResult` set, as a runtime sends it to CHECK and DEL.
fn with_prev(config: &Value, prev: &Value) -> Value {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        o.insert("prevResult".into(), prev.clone());
    }
    c
}

/// Whether `eth0` exists in the namespace.
fn has_eth0(ns: &Netns) -> bool {
    Command::new("ip")
        .args(["-n", &ns.name, "link", "show", "eth0"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_runtime_attaches_checks_and_detaches_a_container() {
    require_root();
    let mut routers = tests::ZnetRouters::default();
    let mut n = Node::new("cni");
    n.configure("udp://0.0.0.0:7820", &[], "");
    n.start();
    let out = n.ctl(&["znet", "create", "shop", "--ipv4", "10.50.0.0/16"]);
    assert!(
        out.status.success(),
        "znet create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    routers.add(&n, "shop");

    let c1 = Netns::new("c");
    let ns1 = format!("/var/run/netns/{}", c1.name);
    let socket = n.socket();
    let config = json!({
        "cniVersion": "1.0.0",
        "name": "shop-net",
        "type": "meshd-cni",
        "znet": "shop",
        "socket": socket.to_str().expect("utf-8 path"),
    });

    // VERSION.
    let (ok, v) = cni(
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "1.0.0"}),
    );
    assert!(ok, "{v}");
    assert_eq!(v["cniVersion"], "1.0.0");
    assert!(
        v["supportedVersions"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("1.0.0"))),
        "{v}"
    );

    // ADD.
    let (ok, result) = cni(&vars("ADD", "c1", &ns1, ""), &config);
    assert!(ok, "ADD failed: {result}\nmeshd log:\n{}", n.log());
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    assert_eq!(result["interfaces"][0]["name"], "eth0", "{result}");
    assert_eq!(result["interfaces"][0]["sandbox"], ns1.as_str(), "{result}");
    // podman refuses a result whose container interface has no MAC address.
    let mac = result["interfaces"][0]["mac"].as_str().unwrap_or_default();
    let shown = tests::run(Command::new("ip").args(["-n", &c1.name, "link", "show", "eth0"]));
    assert!(
        mac.starts_with("02:") && shown.contains(&format!("link/ether {mac}")),
        "the result's MAC {mac:?} is not eth0's: {shown}"
    );
    let address = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address: {result}"))
        .to_string();
    assert!(address.starts_with("10.50.1."), "{result}");
    assert_eq!(result["ips"][0]["interface"], 0, "{result}");
    let gateway = result["ips"][0]["gateway"].as_str().unwrap_or_default();
    assert!(gateway.starts_with("10.50.1."), "{result}");
    assert!(
        result["routes"]
            .as_array()
            .is_some_and(|r| r.contains(&json!({"dst": "10.50.0.0/16", "gw": gateway}))),
        "{result}"
    );
    let plain = address.split('/').next().unwrap_or_default().to_string();
    let shown = tests::run(Command::new("ip").args(["-n", &c1.name, "addr", "show", "eth0"]));
    assert!(shown.contains(&format!("inet {plain}/")), "{shown}");

    // CHECK, as a runtime sends it: with the ADD result as prevResult.
    let (ok, v) = cni(&vars("CHECK", "c1", &ns1, ""), &with_prev(&config, &result));
    assert!(ok, "CHECK failed: {v}");
    assert_eq!(v, Value::Null, "CHECK prints nothing on success");

    // A second ADD of the same attachment fails: the interface exists.
    let (ok, v) = cni(&vars("ADD", "c1", &ns1, ""), &config);
    assert!(!ok, "a second ADD of c1/eth0 succeeded: {v}");

    // A fixed address through CNI_ARGS, in a second container.
    let c2 = Netns::new("c");
    let ns2 = format!("/var/run/netns/{}", c2.name);
    let (ok, r2) = cni(
        &vars("ADD", "c2", &ns2, "IgnoreUnknown=1;IP=10.50.1.7"),
        &config,
    );
    assert!(ok, "ADD with IP= failed: {r2}");
    assert_eq!(r2["ips"][0]["address"], "10.50.1.7/32", "{r2}");
    let shown = tests::run(Command::new("ip").args(["-n", &c2.name, "addr", "show", "eth0"]));
    assert!(shown.contains("inet 10.50.1.7/"), "{shown}");

    // A configuration without znet: invalid network configuration, nothing attached.
    let mut bad = config.clone();
    if let Some(o) = bad.as_object_mut() {
        o.remove("znet");
    }
    let c3 = Netns::new("c");
    let ns3 = format!("/var/run/netns/{}", c3.name);
    let (ok, v) = cni(&vars("ADD", "c3", &ns3, ""), &bad);
    assert!(!ok, "{v}");
    assert_eq!(v["code"], 7, "{v}");
    assert_eq!(v["cniVersion"], "1.0.0", "{v}");
    assert!(!has_eth0(&c3));
    // Bad environment: code 4.
    let (ok, v) = cni(&vars("ADD", "", &ns3, ""), &config);
    assert!(!ok, "{v}");
    assert_eq!(v["code"], 4, "{v}");

    // DEL removes the interface; c2 keeps its own.
    let del_config = with_prev(&config, &result);
    let (ok, v) = cni(&vars("DEL", "c1", &ns1, ""), &del_config);
    assert!(ok, "DEL failed: {v}");
    assert_eq!(v, Value::Null, "DEL prints nothing on success");
    assert!(
        wait_until(Duration::from_secs(5), || !has_eth0(&c1)),
        "eth0 is still in the container after DEL"
    );
    assert!(has_eth0(&c2), "DEL of c1 removed c2's interface");

    // DEL again (and once without a namespace, as after a crash): still success.
    let (ok, v) = cni(&vars("DEL", "c1", &ns1, ""), &del_config);
    assert!(ok, "a second DEL failed: {v}");
    let (ok, v) = cni(&vars("DEL", "c1", "", ""), &config);
    assert!(ok, "a DEL without CNI_NETNS failed: {v}");

    // CHECK after DEL fails; c2 still checks.
    let (ok, v) = cni(&vars("CHECK", "c1", &ns1, ""), &with_prev(&config, &result));
    assert!(!ok, "CHECK after DEL succeeded");
    assert_eq!(v["code"], 102, "{v}");
    let (ok, v) = cni(&vars("CHECK", "c2", &ns2, ""), &with_prev(&config, &r2));
    assert!(ok, "CHECK of c2 failed: {v}");

    // meshd down: CHECK fails; DEL of a live namespace succeeds (runtimes do not retry a
    // failed DEL: podman deletes the namespace next anyway, and meshd forgets the attachment
    // when it starts and finds the namespace gone).
    n.kill9();
    let (ok, _) = cni(&vars("CHECK", "c2", &ns2, ""), &with_prev(&config, &r2));
    assert!(!ok, "CHECK succeeded with meshd down");
    let (ok, v) = cni(&vars("DEL", "c2", &ns2, ""), &config);
    assert!(ok, "DEL failed with meshd down: {v}");
    // Its namespace gone too: nothing is left, DEL succeeds.
    drop(c2);
    let (ok, v) = cni(&vars("DEL", "c2", &ns2, ""), &config);
    assert!(ok, "DEL failed with meshd and the namespace gone: {v}");
}

/// What the plugin does without any daemon (needs neither root nor the znet side).
#[test]
fn without_a_daemon_del_succeeds_and_the_rest_fails_cleanly() {
    let dir = std::env::temp_dir().join(tests::unique("planetary-cni"));
    let config = json!({
        "cniVersion": "1.0.0",
        "name": "shop-net",
        "type": "meshd-cni",
        "znet": "shop",
        "socket": dir.join("admin.sock").to_str().expect("utf-8 path"),
    });
    let gone = "/var/run/netns/planetary-cni-never-created";
    let (ok, v) = cni(&vars("DEL", "c1", gone, ""), &config);
    assert!(ok, "{v}");
    // The namespace still exists: success too (runtimes do not retry a DEL; the namespace goes
    // next, and meshd forgets the attachment when it starts and finds it gone).
    let (ok, v) = cni(&vars("DEL", "c1", "/proc/self/ns/net", ""), &config);
    assert!(ok, "{v}");
    let (ok, v) = cni(&vars("ADD", "c1", "/proc/self/ns/net", ""), &config);
    assert!(!ok);
    assert_eq!(v["code"], 11, "{v}");
    let (ok, v) = cni(
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "0.4.0"}),
    );
    assert!(ok);
    assert_eq!(v["cniVersion"], "0.4.0", "{v}");
    let (ok, v) = cni(
        &vars("ADD", "c1", "/proc/self/ns/net", ""),
        &json!({"cniVersion": "9.9.9", "name": "n", "type": "meshd-cni", "znet": "shop"}),
    );
    assert!(!ok);
    assert_eq!(v["code"], 1, "{v}");
}
