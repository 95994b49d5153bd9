//! The daemon refuses to start, with a message naming the problem and the fix, when its key
//! file is exposed or corrupt or its configuration is wrong.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use tests::binaries;

fn meshd_with(dir: &std::path::Path, config: &str) -> (bool, String) {
    let cfg = dir.join("meshd.toml");
    std::fs::write(&cfg, config).expect("write config");
    let out = Command::new(&binaries().0)
        .arg("--config")
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .output()
        .expect("run meshd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_an_exposed_or_corrupt_key_and_a_bad_config() {
    let dir = std::env::temp_dir().join(tests::unique("planetary-startup"));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("identity.key");
    let cfg = "identity_file = \"identity.key\"\nstate_dir = \"state\"\n\
               admin_socket = \"admin.sock\"\n[tun]\nname = \"plstart0\"\n";

    // A key readable by others.
    std::fs::write(&key, "whatever").expect("write key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, err) = meshd_with(&dir, cfg);
    assert!(!ok);
    assert!(
        err.contains("readable by group or others") && err.contains("chmod 600"),
        "{err}"
    );

    // A corrupt key with the right mode.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (ok, err) = meshd_with(&dir, cfg);
    assert!(!ok);
    assert!(
        err.contains("corrupt") && err.contains(&key.display().to_string()),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // A config error names the key and the file.
    let (ok, err) = meshd_with(&dir, "peers = [\"10.0.0.1\"]\n");
    assert!(!ok);
    assert!(err.contains("peers") && err.contains("meshd.toml"), "{err}");

    // init-config writes a file that check-config accepts.
    let f = dir.join("default.toml");
    let st = Command::new(&binaries().0)
        .arg("init-config")
        .arg(&f)
        .status()
        .expect("run");
    assert!(st.success());
    let out = Command::new(&binaries().0)
        .args(["check-config", "--config"])
        .arg(&f)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_to_start_with_a_broken_policy_file() {
    // There is no previous policy to keep at start: the daemon stops with every problem,
    // each with file, line and column; check-config says the same.
    let dir = std::env::temp_dir().join(tests::unique("planetary-policy-start"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("policy.toml"),
        "[circles]\nfamily = [\"circle:friends\"]\n\n[[rules]]\naction = \"traffic\"\nallow = \"circle:family\"\nports = \"tcp/70000\"\n",
    )
    .expect("write policy");
    let cfg = "state_dir = \"state\"\nadmin_socket = \"admin.sock\"\npolicy_file = \"policy.toml\"\n\
               listen = [\"udp://127.0.0.1:0\"]\n[tun]\nname = \"plstart1\"\n";
    let (ok, err) = meshd_with(&dir, cfg);
    assert!(!ok);
    let file = dir.join("policy.toml").display().to_string();
    assert!(
        err.contains(&format!("{file}:7:9:")) && err.contains("not a port"),
        "{err}"
    );
    assert!(err.contains("fix them, then start again"), "{err}");
    let out = Command::new(&binaries().0)
        .args(["check-config", "--config"])
        .arg(dir.join("meshd.toml"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("{file}:7:9:")),
        "{err}"
    );
    // Once the port is fixed, the unknown circle is reported, with its place.
    std::fs::write(
        dir.join("policy.toml"),
        "[circles]\nfamily = [\"circle:friends\"]\n",
    )
    .expect("write policy");
    let (ok, err) = meshd_with(&dir, cfg);
    assert!(!ok);
    assert!(
        err.contains(&format!("{file}:2:11:")) && err.contains("unknown circle \"friends\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn meshctl_policy_check_needs_no_daemon() {
    let dir = std::env::temp_dir().join(tests::unique("planetary-policy-check"));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("policy.toml");
    let check = || {
        let out = Command::new(&binaries().1)
            .args(["policy", "check"])
            .arg(&f)
            .output()
            .expect("run meshctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    std::fs::write(
        &f,
        "[circles]\nguests = []\nfamily = [\"circle:guests\"]\n\n[[rules]]\naction = \"traffic\"\ndeny = \"circle:guests\"\n\n[[tests]]\nfrom = \"any\"\nto = \"tcp/22\"\nexpect = \"allow\"\n",
    )
    .expect("write");
    let (ok, text) = check();
    assert!(
        ok && text.contains("valid: 2 circles, 1 rules, 1 tests passed"),
        "{text}"
    );
    std::fs::write(&f, "[circles]\na = [\"circle:b\"]\nb = [\"circle:a\"]\n").expect("write");
    let (ok, text) = check();
    let name = f.display().to_string();
    assert!(
        !ok && text.contains(&format!("{name}:")) && text.contains("contain each other"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
