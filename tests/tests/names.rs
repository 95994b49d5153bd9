//! Secure names end to end (issue 19): five daemons in a ring, each with its DNS responder on
//! 127.0.0.1:53 of its namespace. A node claims `shop`; real clients (`dig`, and `curl` through
//! glibc with a per-namespace resolv.conf) reach it by name; a second claim is refused; records
//! with a bad signature, an old sequence number or a past expiry are dropped and counted at
//! the storing nodes; a policy pin and a trusted authority's delegation beat the first claim;
//! the claim survives a restart; after a release the name frees.

use ed25519_dalek::SigningKey;
use routing::name_record::NameRecord;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tests::{Mesh, Node, wait_until};

/// The ring of five: A=0, B=1, C=2, D=3, E=4.
const EDGES: [(usize, usize); 5] = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)];
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;
const E: usize = 4;
/// Where A serves HTTP on its overlay address.
const HTTP_PORT: u16 = 8080;
/// How long a step may take in a young mesh (lookups retried by the test until then).
const STEP: Duration = Duration::from_secs(20);

/// Files this test makes outside the nodes' directories, removed even when it fails.
struct Scratch {
    dir: PathBuf,
    netns_dirs: Vec<PathBuf>,
    server: Option<Child>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        for d in &self.netns_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `dig @127.0.0.1 +short TYPE NAME` in the node's namespace: the answer lines, or the
/// status word (`NXDOMAIN`, `REFUSED`, …) when there is no answer.
fn dig(n: &Node, rtype: &str, name: &str) -> String {
    let out =
        n.ns.cmd("dig")
            .args(["@127.0.0.1", "+tries=1", "+time=5", rtype, name])
            .output()
            .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_else(|| format!("no answer: {text}"));
    let answers: Vec<String> = text
        .split(";; ANSWER SECTION:")
        .nth(1)
        .map(|s| {
            s.lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| {
                    l.split_whitespace()
                        .last()
                        .map(|w| w.trim_matches('"').to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    if answers.is_empty() {
        status
    } else {
        answers.join(" ")
    }
}

/// Waits until `dig` on node `n` answers `want`.
fn dig_until(n: &Node, rtype: &str, name: &str, want: &str) {
    let mut last = String::new();
    let ok = wait_until(STEP, || {
        last = dig(n, rtype, name);
        last == want
    });
    assert!(
        ok,
        "dig {rtype} {name} on {} answered {last:?}, not {want:?}",
        n.ns.name
    );
}

/// `meshctl name resolve NAME --json` until its key is `want`.
fn resolve_until(n: &Node, name: &str, want: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(STEP, || {
        let out = n.ctl(&["name", "resolve", name, "--json"]);
        last = serde_json::from_slice(&out.stdout).unwrap_or_default();
        last["public_key"] == want
    });
    assert!(ok, "{name} on {} resolved to {last}, not {want}", n.ns.name);
    last
}

/// `meshctl name claim ARGS --json` until its state is `want`.
fn claim_until(n: &Node, args: &[&str], want: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(STEP, || {
        let mut a = vec!["name", "claim"];
        a.extend_from_slice(args);
        a.push("--json");
        let out = n.ctl(&a);
        last = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| String::from_utf8_lossy(&out.stderr).into());
        last["state"] == want
    });
    assert!(ok, "claim {args:?} on {}: {last}, not {want}", n.ns.name);
    last
}

/// Waits until `n`'s claim of `name` is held by `storers` storing nodes (a claim made while
/// the network is young reaches the rest on its quick re-publications).
fn held_by(n: &Node, name: &str, storers: u64) {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(STEP, || {
        last = n.ctl_json(&["name", "list"]);
        last.as_array().is_some_and(|a| {
            a.iter()
                .any(|c| c["name"] == name && c["storers"].as_u64() == Some(storers))
        })
    });
    assert!(
        ok,
        "{name} on {} not held by {storers} storing nodes: {last}",
        n.ns.name
    );
}

/// A name counter summed over every node.
fn total(m: &Mesh, counter: &str) -> u64 {
    m.nodes
        .iter()
        .map(|n| n.status()["names"][counter].as_u64().unwrap_or(0))
        .sum()
}

/// Sends a crafted record through node `n` (`meshctl name publish FILE`).
fn publish(n: &Node, dir: &std::path::Path, file: &str, rec: &NameRecord) {
    let path = dir.join(file);
    std::fs::write(&path, rec.to_bytes()).expect("write record");
    let out = n.ctl(&["name", "publish", path.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "publish {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the sum of `counter` over the nodes exceeds `before`.
fn counted(m: &Mesh, counter: &str, before: u64) {
    let mut now = before;
    let ok = wait_until(STEP, || {
        now = total(m, counter);
        now > before
    });
    assert!(
        ok,
        "no storing node counted {counter} ({before} before, {now} now)"
    );
}

#[test]
fn names_resolve_by_dns_and_policy_beats_squatting() {
    tests::require_root();
    let dir = std::env::temp_dir().join(tests::unique("planetary-names"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut scratch = Scratch {
        dir: dir.clone(),
        netns_dirs: vec![],
        server: None,
    };
    // B pins names by policy, D trusts authorities: both get a policy file, empty at first.
    let policy = |i: usize| dir.join(format!("policy-{i}.toml"));
    for i in [B, D] {
        std::fs::write(policy(i), "# names policy, filled in by the test\n").expect("policy");
    }
    let mut m = Mesh::new_with(5, &EDGES, |i| {
        let p = if i == B || i == D {
            format!("policy_file = {:?}\n", policy(i))
        } else {
            String::new()
        };
        // E's records live 8 s: once E is gone, its names free within that.
        let ttl = if i == E { 8 } else { 60 };
        format!("name_ttl = {ttl}\n{p}[dns]\nlisten = \"127.0.0.1:53\"\nsuffix = \"mesh\"\n")
    });
    let keys = m.keys.clone();
    let addrs = m.addrs.clone();

    // A claims shop and serves HTTP on its overlay address.
    let held = claim_until(&m.nodes[A], &["shop"], "held");
    assert!(held["storers"].as_u64().unwrap_or(0) >= 1, "{held}");
    // Four of the five nodes store it (REPLICAS), before anyone else may try.
    held_by(&m.nodes[A], "shop", 4);
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "the shop of A\n").expect("index");
    scratch.server = Some(
        m.nodes[A]
            .ns
            .cmd("python3")
            .args([
                "-m",
                "http.server",
                &HTTP_PORT.to_string(),
                "--bind",
                "::",
                "--directory",
            ])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the HTTP server"),
    );

    // Real clients on the other nodes: dig answers A's address and key.
    let a_addr = addrs[A].to_string();
    for i in [B, C, D, E] {
        dig_until(&m.nodes[i], "AAAA", "shop.mesh", &a_addr);
    }
    dig_until(&m.nodes[C], "TXT", "shop.mesh", &keys[A]);
    // Key names answer offline; A records of our names are empty; other names are refused.
    let self_c = m.nodes[C].ctl_json(&["self"]);
    let key_name = self_c["key_name"].as_str().expect("key_name").to_string();
    assert_eq!(dig(&m.nodes[E], "AAAA", &key_name), addrs[C].to_string());
    assert_eq!(dig(&m.nodes[E], "A", "shop.mesh"), "NOERROR");
    assert_eq!(dig(&m.nodes[E], "AAAA", "nobody-here.mesh"), "NXDOMAIN");
    assert_eq!(dig(&m.nodes[E], "AAAA", "example.com"), "REFUSED");

    // curl by name, through glibc and a per-namespace resolv.conf.
    let etc = PathBuf::from("/etc/netns").join(&m.nodes[E].ns.name);
    std::fs::create_dir_all(&etc).expect("/etc/netns/<ns>");
    scratch.netns_dirs.push(etc.clone());
    std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").expect("resolv.conf");
    let url = format!("http://shop.mesh:{HTTP_PORT}/");
    let mut body = String::new();
    let ok = wait_until(STEP, || {
        let out = m.nodes[E]
            .ns
            .cmd("curl")
            .args(["-s", "--max-time", "5", &url])
            .output()
            .expect("run curl");
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        body == "the shop of A\n"
    });
    assert!(ok, "curl {url} from E got {body:?}");

    // A second claim is refused: B sees who holds the name.
    let taken = claim_until(&m.nodes[B], &["shop"], "taken");
    assert_eq!(taken["taken_by"], keys[A].as_str(), "{taken}");
    let b_self = m.nodes[B].ctl_json(&["self"]);
    assert_eq!(b_self["names"][0]["state"], "taken", "{b_self}");

    // Crafted records, sent through C: each is dropped and counted where it is stored.
    let x = SigningKey::from_bytes(&[0x5a; 32]);
    let now = unix_now();
    let before = total(&m, "bad_signature");
    let mut bad = NameRecord::new(&x, "forged", 1, now + 600, vec![], None).expect("record");
    bad.sig[0] ^= 1;
    publish(&m.nodes[C], &dir, "bad.rec", &bad);
    counted(&m, "bad_signature", before);
    let before = total(&m, "old_sequence");
    let newer = NameRecord::new(&x, "oldseq", 1000, now + 600, vec![], None).expect("record");
    publish(&m.nodes[C], &dir, "newer.rec", &newer);
    let stored = wait_until(STEP, || {
        m.nodes[C]
            .ctl_json(&["name", "resolve", "oldseq"])
            .get("found")
            == Some(&serde_json::Value::Bool(true))
    });
    assert!(stored, "the valid record for oldseq was not stored");
    let older = NameRecord::new(&x, "oldseq", 999, now + 600, vec![], None).expect("record");
    publish(&m.nodes[C], &dir, "older.rec", &older);
    counted(&m, "old_sequence", before);
    let before = total(&m, "expired");
    let past = NameRecord::new(&x, "stale", 1, now - 60, vec![], None).expect("record");
    publish(&m.nodes[C], &dir, "past.rec", &past);
    counted(&m, "expired", before);

    // The claim survives a restart of A (saved, claimed again at start).
    m.nodes[A].kill9();
    m.nodes[A].start();
    let list = m.nodes[A].ctl_json(&["name", "list"]);
    assert_eq!(list[0]["name"], "shop", "{list}");
    assert!(m.nodes[A].wait_link_up(&keys[B], Duration::from_secs(10)));
    held_by(&m.nodes[A], "shop", 4);

    // A pin in B's policy beats A's first claim: shop is E's for B.
    std::fs::write(policy(B), format!("[names]\nshop = {:?}\n", keys[E])).expect("policy");
    tests::ok(m.nodes[B].ctl(&["policy", "reload"]), "policy reload on B");
    let r = resolve_until(&m.nodes[B], "shop", &keys[E]);
    assert_eq!(r["source"], "pinned", "{r}");
    dig_until(&m.nodes[B], "AAAA", "shop.mesh", &addrs[E].to_string());

    // D is a name authority: it delegates shop to C, C claims it with the token; D trusts
    // itself as an authority and resolves shop to C, while E (no such trust) keeps A.
    let d = m.nodes[D].ctl_json(&["name", "delegate", "shop", &keys[C], "--days", "1"]);
    let token = d["token"].as_str().expect("token").to_string();
    let out = m.nodes[C].ctl(&["name", "claim", "shop", "--delegation", &token, "--json"]);
    assert!(
        out.status.success(),
        "C's delegated claim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        policy(D),
        format!(
            "[circles]\nname-authorities = [{:?}]\n\n[names]\nauthorities = \"circle:name-authorities\"\n",
            keys[D]
        ),
    )
    .expect("policy");
    tests::ok(m.nodes[D].ctl(&["policy", "reload"]), "policy reload on D");
    let r = resolve_until(&m.nodes[D], "shop", &keys[C]);
    assert_eq!(
        (r["source"].as_str(), r["authority"].as_str()),
        (Some("delegated"), Some(keys[D].as_str())),
        "{r}"
    );
    dig_until(&m.nodes[D], "AAAA", "shop.mesh", &addrs[C].to_string());
    dig_until(&m.nodes[E], "AAAA", "shop.mesh", &a_addr);

    // A releases shop: it frees at once, and B's claim now holds.
    let out = m.nodes[A].ctl(&["name", "release", "shop", "--json"]);
    assert!(
        out.status.success(),
        "release: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        m.nodes[A].ctl_json(&["name", "list"]),
        serde_json::json!([])
    );
    claim_until(&m.nodes[B], &["shop"], "held");

    // An owner that stops renewing loses its name at expiry: E claims brief and dies.
    claim_until(&m.nodes[E], &["brief"], "held");
    resolve_until(&m.nodes[C], "brief", &keys[E]);
    m.nodes[E].kill9();
    let mut last = serde_json::Value::Null;
    let freed = wait_until(Duration::from_secs(30), || {
        last = m.nodes[C].ctl_json(&["name", "resolve", "brief"]);
        last["found"] == false
    });
    assert!(
        freed,
        "brief still resolves after its owner stopped renewing: {last}"
    );
}
