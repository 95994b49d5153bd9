//! The plugin driven in-process against a fake meshd.
use crate::*;
use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const NS: &str = "/var/run/netns/c1";

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).map(OsString::from)
}

fn base_env(command: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", "c1".to_string()),
        ("CNI_NETNS", NS.to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", "/opt/cni/bin".to_string()),
    ]
}

fn config(socket: &Path, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": "shop-net", "type": "meshd-cni", "znet": "shop",
        "socket": socket.to_str().expect("utf-8 path"),
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn run_with(envs: &[(&str, String)], stdin: &Value) -> Outcome {
    let pairs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let get = env(&pairs);
    let bytes = stdin.to_string().into_bytes();
    let mut r: &[u8] = &bytes;
    run(&get, Some(&mut r))
}

fn code_of(o: &Outcome) -> u32 {
    match &o.result {
        Err(e) => e.code,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

fn attachment(ifname: &str, container: &str, netns: &str) -> Attachment {
    Attachment {
        znet: "shop".into(),
        netns: netns.into(),
        ifname: ifname.into(),
        ipv4: "10.50.1.2".into(),
        ipv6: Some("fd00:5a31:7e2b:1:1::2".into()),
        gateway_v4: "10.50.1.1".into(),
        gateway_v6: Some("fd00:5a31:7e2b:1:1::1".into()),
        range_v4: "10.50.0.0/16".into(),
        range_v6: Some("fd00:5a31:7e2b:1::/64".into()),
        container_id: Some(container.into()),
        ns_inode: None,
        mac: Some("02:5a:0a:32:01:02".into()),
        default_route: false,
    }
}

/// A fake meshd: answers each request with `answer` and records the requests.
struct Fake {
    socket: PathBuf,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Fake {
    fn start(answer: impl Fn(&Request) -> Reply + Send + 'static) -> Fake {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshd-cni-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("admin.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_err() {
                    continue;
                }
                let reply = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => {
                        let r = answer(&req);
                        log.lock().expect("lock").push(req);
                        r
                    }
                    Err(e) => Reply::err(format!("bad request: {e}")),
                };
                let mut text = serde_json::to_string(&reply).expect("encode");
                text.push('\n');
                let _ = (&stream).write_all(text.as_bytes());
            }
        });
        Fake { socket, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A meshd with znet `shop` whose attachments are `attached`.
fn daemon(attached: Vec<Attachment>) -> Fake {
    let state = Arc::new(Mutex::new(attached));
    Fake::start(move |req| {
        let mut atts = state.lock().expect("lock");
        match req {
            Request::ZnetList => Reply::ok(vec![json!({"name": "shop"})]),
            Request::ZnetShow { name } if name == "shop" => {
                Reply::ok(json!({"name": "shop", "attachments": *atts}))
            }
            Request::ZnetShow { name } => Reply::err(format!("no znet {name}")),
            Request::ZnetAttach {
                name,
                netns,
                ip,
                ifname,
                container_id,
            } if name == "shop" => {
                let mut a = attachment(
                    ifname.as_deref().unwrap_or("zn0"),
                    container_id.as_deref().unwrap_or_default(),
                    netns,
                );
                if let Some(ip) = ip {
                    a.ipv4 = ip.clone();
                }
                atts.push(a.clone());
                Reply::ok(a)
            }
            Request::ZnetDetach {
                name, container_id, ..
            } if name == "shop" => {
                let before = atts.len();
                atts.retain(|a| a.container_id != *container_id);
                if atts.len() == before {
                    Reply::err("not attached")
                } else {
                    Reply::ok(())
                }
            }
            _ => Reply::err("unknown znet"),
        }
    })
}

#[test]
fn env_is_checked() {
    let ok = parse_params(
        Command::Add,
        &env(&[
            ("CNI_CONTAINERID", "abc-1.2_x"),
            ("CNI_NETNS", "/proc/42/ns/net"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.50.1.7"),
        ]),
    )
    .expect("valid");
    assert_eq!(ok.ip, Some(Ipv4Addr::new(10, 50, 1, 7)));
    assert_eq!(ok.netns.as_deref(), Some("/proc/42/ns/net"));

    let bad = |pairs: &[(&str, &str)], command: Command, needle: &str| {
        let e = parse_params(command, &env(pairs)).expect_err("invalid");
        assert_eq!(e.code, code::INVALID_ENV, "{e:?}");
        assert!(e.msg.contains(needle), "{e:?} should name {needle}");
    };
    let full = [
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", NS),
        ("CNI_IFNAME", "eth0"),
    ];
    bad(&full[1..], Command::Add, "CNI_CONTAINERID");
    bad(&[full[0], full[2]], Command::Add, "CNI_NETNS");
    bad(&full[..2], Command::Del, "CNI_IFNAME");
    bad(
        &[full[0], ("CNI_NETNS", "ns1"), full[2]],
        Command::Add,
        "CNI_NETNS",
    );
    bad(
        &[("CNI_CONTAINERID", "-x"), full[1], full[2]],
        Command::Add,
        "CNI_CONTAINERID",
    );
    for ifname in ["a/b", "a b", "a:1", "averyveryverylongname", ".."] {
        bad(
            &[full[0], full[1], ("CNI_IFNAME", ifname)],
            Command::Add,
            "CNI_IFNAME",
        );
    }
    for args in ["IP=10.50.1", "IP", "=1", "IP=10.50.1.7;IP=10.50.1.8"] {
        bad(
            &[full[0], full[1], full[2], ("CNI_ARGS", args)],
            Command::Add,
            "CNI_ARGS",
        );
    }
    // DEL needs no namespace; an empty one counts as none.
    let del =
        parse_params(Command::Del, &env(&[full[0], ("CNI_NETNS", ""), full[2]])).expect("valid");
    assert_eq!(del.netns, None);
}

#[test]
fn config_is_checked() {
    let s = Path::new("/run/x.sock");
    let c = parse_config(&config(
        s,
        json!({"ip": "10.50.1.9", "dns": {"nameservers": []}}),
    ))
    .expect("valid");
    assert_eq!(c.znet, "shop");
    assert_eq!(c.socket, PathBuf::from("/run/x.sock"));
    assert_eq!(c.ip, Some(Ipv4Addr::new(10, 50, 1, 9)));
    let d = parse_config(&json!({"cniVersion": "0.4.0", "name": "n", "type": "t",
        "znet": "a-1"}))
    .expect("valid");
    assert_eq!(d.socket, PathBuf::from(DEFAULT_SOCKET));
    assert_eq!(d.prev_result, None);

    let code = |v: Value| parse_config(&v).expect_err("invalid").code;
    let without = |key: &str| {
        let mut v = config(s, json!({}));
        if let Some(o) = v.as_object_mut() {
            o.remove(key);
        }
        v
    };
    for key in ["znet", "name", "type", "cniVersion"] {
        assert_eq!(code(without(key)), code::INVALID_CONFIG, "without {key}");
    }
    assert_eq!(code(json!([1])), code::INVALID_CONFIG);
    assert_eq!(
        code(config(s, json!({"cniVersion": "0.2.0"}))),
        code::INCOMPATIBLE_VERSION
    );
    for bad in [
        json!({"znet": "Shop"}),
        json!({"znet": "a-very-long-name"}),
        json!({"znet": 3}),
        json!({"socket": "admin.sock"}),
        json!({"ip": "10.50.1.300"}),
        json!({"ip": "fd00::1"}),
        json!({"name": "bad name"}),
        json!({"dns": "8.8.8.8"}),
        json!({"prevResult": []}),
    ] {
        assert_eq!(code(config(s, bad.clone())), code::INVALID_CONFIG, "{bad}");
    }
    assert_eq!(
        code(config(s, json!({"ipam": {"type": "host-local"}}))),
        code::UNSUPPORTED_FIELD
    );
    assert_eq!(
        code(config(s, json!({"ipMasq": true}))),
        code::UNSUPPORTED_FIELD
    );
    assert!(parse_config(&config(s, json!({"ipMasq": false, "args": {"x": 1}}))).is_ok());
}

#[test]
fn results_are_built_per_version_and_chain() {
    let a = Addresses::of(&attachment("eth0", "c1", NS)).expect("valid");
    let cfg = parse_config(&config(Path::new("/s"), json!({}))).expect("valid");
    let r = build_result(&cfg, "eth0", NS, &a).expect("result");
    assert_eq!(
        r,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "02:5a:0a:32:01:02", "sandbox": NS}],
            "ips": [
                {"address": "10.50.1.2/32", "gateway": "10.50.1.1", "interface": 0},
                {"address": "fd00:5a31:7e2b:1:1::2/128", "gateway": "fd00:5a31:7e2b:1:1::1",
                 "interface": 0},
            ],
            "routes": [
                {"dst": "10.50.0.0/16", "gw": "10.50.1.1"},
                {"dst": "fd00:5a31:7e2b:1::/64", "gw": "fd00:5a31:7e2b:1:1::1"},
            ],
            "dns": {},
        })
    );

    // An older version tags addresses; a prevResult is extended, its DNS kept.
    let prev = json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "lo", "sandbox": NS}],
        "ips": [{"version": "4", "address": "127.0.0.1/8", "interface": 0}],
        "dns": {"nameservers": ["10.0.0.53"]},
    });
    let cfg = parse_config(&config(
        Path::new("/s"),
        json!({"cniVersion": "0.4.0", "prevResult": prev}),
    ))
    .expect("valid");
    let mut v4only = attachment("eth0", "c1", NS);
    v4only.ipv6 = None;
    v4only.gateway_v6 = None;
    v4only.range_v6 = None;
    v4only.ipv4 = "10.50.1.3/24".into(); // a prefix from meshd is kept
    let a = Addresses::of(&v4only).expect("valid");
    let r = build_result(&cfg, "eth0", NS, &a).expect("result");
    assert_eq!(r["cniVersion"], "0.4.0");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(
        r["ips"][1],
        json!({"version": "4", "address": "10.50.1.3/24", "gateway": "10.50.1.1",
               "interface": 1})
    );
    assert_eq!(r["ips"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        r["routes"],
        json!([{"dst": "10.50.0.0/16", "gw": "10.50.1.1"}])
    );
    assert_eq!(r["dns"], json!({"nameservers": ["10.0.0.53"]}));

    // A znet with egress: a default route through the IPv4 gateway, after the range.
    let mut egress = attachment("eth0", "c1", NS);
    egress.default_route = true;
    let a = Addresses::of(&egress).expect("valid");
    let cfg = parse_config(&config(Path::new("/s"), json!({}))).expect("valid");
    let r = build_result(&cfg, "eth0", NS, &a).expect("result");
    assert_eq!(
        r["routes"],
        json!([
            {"dst": "10.50.0.0/16", "gw": "10.50.1.1"},
            {"dst": "0.0.0.0/0", "gw": "10.50.1.1"},
            {"dst": "fd00:5a31:7e2b:1::/64", "gw": "fd00:5a31:7e2b:1:1::1"},
        ])
    );

    // A malformed answer from meshd is caught.
    for (field, bad) in [
        ("ipv4", "10.50.1"),
        ("range_v4", "10.50.0.0"),
        ("gateway_v4", "x"),
    ] {
        let mut att = attachment("eth0", "c1", NS);
        match field {
            "ipv4" => att.ipv4 = bad.into(),
            "range_v4" => att.range_v4 = bad.into(),
            _ => att.gateway_v4 = bad.into(),
        }
        let e = Addresses::of(&att).expect_err("invalid");
        assert!(e.contains(field), "{e}");
    }
}

#[test]
fn version_and_errors() {
    let o = run_with(
        &[("CNI_COMMAND", "VERSION".into())],
        &json!({"cniVersion": "0.4.0"}),
    );
    assert_eq!(
        o.result.expect("ok"),
        Some(json!({"cniVersion": "0.4.0",
                    "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}))
    );
    let get = env(&[("CNI_COMMAND", "VERSION")]);
    let o = run(&get, None);
    assert_eq!(o.result.expect("ok").expect("some")["cniVersion"], "1.0.0");

    let o = run_with(&[], &json!({}));
    assert_eq!(code_of(&o), code::INVALID_ENV);
    let o = run_with(&[("CNI_COMMAND", "FROB".into())], &json!({}));
    assert_eq!(code_of(&o), code::INVALID_ENV);

    let get = env(&[("CNI_COMMAND", "ADD")]);
    let mut garbage: &[u8] = b"{not json";
    let o = run(&get, Some(&mut garbage));
    assert_eq!(code_of(&o), code::DECODE);

    let e = CniError::new(7, "m", "d");
    assert_eq!(
        e.to_json("0.4.0"),
        json!({"cniVersion": "0.4.0", "code": 7, "msg": "m", "details": "d"})
    );
}

#[test]
fn add_attaches_and_reports() {
    let fake = daemon(vec![]);
    let mut envs = base_env("ADD");
    envs.push(("CNI_ARGS", "IgnoreUnknown=1;IP=10.50.1.7".into()));
    let o = run_with(&envs, &config(&fake.socket, json!({})));
    let r = o.result.expect("ok").expect("a result");
    assert_eq!(r["ips"][0]["address"], "10.50.1.7/32");
    assert_eq!(
        r["interfaces"][0],
        json!({"name": "eth0", "mac": "02:5a:0a:32:01:02", "sandbox": NS})
    );
    assert_eq!(
        fake.requests(),
        vec![Request::ZnetAttach {
            name: "shop".into(),
            netns: NS.into(),
            ip: Some("10.50.1.7".into()),
            ifname: Some("eth0".into()),
            container_id: Some("c1".into()),
        }]
    );

    // Conflicting fixed addresses: refused before asking meshd.
    let o = run_with(&envs, &config(&fake.socket, json!({"ip": "10.50.1.8"})));
    assert_eq!(code_of(&o), code::INVALID_CONFIG);
    assert_eq!(fake.requests().len(), 1);

    // meshd refuses: its reason is passed on.
    let o = run_with(
        &base_env("ADD"),
        &config(&fake.socket, json!({"znet": "other"})),
    );
    match o.result {
        Err(e) => {
            assert_eq!(e.code, code::REFUSED);
            assert_eq!(e.details, "unknown znet");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn add_undoes_an_unusable_attachment() {
    let fake = Fake::start(|req| match req {
        Request::ZnetAttach { .. } => Reply::ok(attachment("zn0", "c1", NS)),
        _ => Reply::ok(()),
    });
    let o = run_with(&base_env("ADD"), &config(&fake.socket, json!({})));
    assert_eq!(code_of(&o), code::DAEMON);
    assert!(matches!(
        fake.requests().last(),
        Some(Request::ZnetDetach { container_id: Some(c), .. }) if c == "c1"
    ));
}

#[test]
fn del_is_idempotent() {
    let fake = daemon(vec![
        attachment("eth0", "c1", NS),
        attachment("eth0", "c2", "/var/run/netns/c2"),
    ]);
    let cfg = config(&fake.socket, json!({}));
    let o = run_with(&base_env("DEL"), &cfg);
    assert_eq!(o.result, Ok(None));
    assert!(fake.requests().contains(&Request::ZnetDetach {
        name: "shop".into(),
        netns: None,
        container_id: Some("c1".into()),
    }));
    let n = fake.requests().len();
    // Again: nothing to detach, nothing asked but the lookup.
    let o = run_with(&base_env("DEL"), &cfg);
    assert_eq!(o.result, Ok(None));
    assert!(
        fake.requests()[n..]
            .iter()
            .all(|r| !matches!(r, Request::ZnetDetach { .. }))
    );
    // A znet that is not in force: nothing to do either.
    let o = run_with(
        &base_env("DEL"),
        &config(&fake.socket, json!({"znet": "gone"})),
    );
    assert_eq!(o.result, Ok(None));
    // CHECK now fails for c1, still succeeds for c2.
    let o = run_with(&base_env("CHECK"), &cfg);
    assert_eq!(code_of(&o), code::CHECK_FAILED);
    let mut envs = base_env("CHECK");
    envs[1].1 = "c2".into();
    envs[2].1 = "/var/run/netns/c2".into();
    assert_eq!(run_with(&envs, &cfg).result, Ok(None));
}

#[test]
fn del_without_a_daemon() {
    let dir = std::env::temp_dir().join(format!("meshd-cni-none-{}", std::process::id()));
    let cfg = config(&dir.join("admin.sock"), json!({}));
    // The namespace is gone (or was never given): success.
    let mut envs = base_env("DEL");
    envs[2].1 = "/var/run/netns/surely-not-there-4242".into();
    assert_eq!(run_with(&envs, &cfg).result, Ok(None));
    envs.remove(2);
    assert_eq!(run_with(&envs, &cfg).result, Ok(None));
    // It still exists: success too (runtimes do not retry a DEL; the namespace is
    // deleted next, and meshd forgets the attachment when it starts).
    let mut envs = base_env("DEL");
    envs[2].1 = "/proc/self/ns/net".into();
    assert_eq!(run_with(&envs, &cfg).result, Ok(None));
    // ADD and CHECK: try again later; STATUS: not available; GC: fine.
    assert_eq!(code_of(&run_with(&base_env("ADD"), &cfg)), code::TRY_AGAIN);
    assert_eq!(
        code_of(&run_with(&base_env("CHECK"), &cfg)),
        code::TRY_AGAIN
    );
    assert_eq!(
        code_of(&run_with(&base_env("STATUS"), &cfg)),
        code::NOT_AVAILABLE
    );
    assert_eq!(run_with(&base_env("GC"), &cfg).result, Ok(None));
}

#[test]
fn check_compares_with_prev_result() {
    let fake = daemon(vec![attachment("eth0", "c1", NS)]);
    let a = Addresses::of(&attachment("eth0", "c1", NS)).expect("valid");
    let plain = parse_config(&config(&fake.socket, json!({}))).expect("valid");
    let prev = build_result(&plain, "eth0", NS, &a).expect("result");
    let with = |prev: Value| config(&fake.socket, json!({"prevResult": prev}));
    assert_eq!(
        run_with(&base_env("CHECK"), &with(prev.clone())).result,
        Ok(None)
    );
    assert_eq!(
        run_with(&base_env("CHECK"), &plain_json(&fake)).result,
        Ok(None)
    );

    // An address meshd no longer gives.
    let mut moved = prev.clone();
    if let Some(ip) = moved.pointer_mut("/ips/0/address") {
        *ip = json!("10.50.1.99/32");
    }
    let o = run_with(&base_env("CHECK"), &with(moved));
    assert_eq!(code_of(&o), code::CHECK_FAILED);

    // prevResult without our interface.
    let o = run_with(
        &base_env("CHECK"),
        &with(json!({"interfaces": [], "ips": []})),
    );
    assert_eq!(code_of(&o), code::CHECK_FAILED);

    // Another namespace than the attachment's.
    let mut envs = base_env("CHECK");
    envs[2].1 = "/var/run/netns/other".into();
    assert_eq!(code_of(&run_with(&envs, &with(prev))), code::CHECK_FAILED);

    // Not part of 0.3.x.
    let o = run_with(
        &base_env("CHECK"),
        &config(&fake.socket, json!({"cniVersion": "0.3.1"})),
    );
    assert_eq!(code_of(&o), code::INCOMPATIBLE_VERSION);
    assert_eq!(o.version, "0.3.1");
}

fn plain_json(fake: &Fake) -> Value {
    config(&fake.socket, json!({}))
}

#[test]
fn status_asks_for_the_znet() {
    let fake = daemon(vec![]);
    assert_eq!(
        run_with(&base_env("STATUS"), &config(&fake.socket, json!({}))).result,
        Ok(None)
    );
    let o = run_with(
        &base_env("STATUS"),
        &config(&fake.socket, json!({"znet": "x"})),
    );
    assert_eq!(code_of(&o), code::NOT_AVAILABLE);
}

#[test]
fn netns_references_compare_by_inode() {
    assert!(same_netns("/proc/self/ns/net", "/proc/self/ns/net"));
    assert!(same_netns(
        "/proc/self/ns/net",
        &format!("/proc/{}/ns/net", std::process::id())
    ));
    assert!(!same_netns("/proc/self/ns/net", "/nonexistent/x"));
}
