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
