//! The app's configuration: the daemon's keys, as JSON, minus those that make no sense inside
//! an app. `state_dir` is required (an app's files directory), since the default
//! `/var/lib/meshd` is not writable by an app.

use crate::error::{Error, PlStatus};
use meshd::config::Config;

/// Keys of the daemon's configuration an app may not set, and why.
const NOT_FOR_APPS: &[(&str, &str)] = &[
    (
        "admin_socket",
        "an app has no admin socket: use pl_node_status_json, pl_node_peers_json and \
         pl_node_add_peer instead",
    ),
    ("admin_group", "an app has no admin socket"),
];

/// Parses and checks the configuration JSON.
pub fn parse(json: &str) -> Result<Config, Error> {
    let bad = |m: String| Error::new(PlStatus::PlErrInvalidArgument, m);
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| bad(format!("config_json is not valid JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(bad(
            "config_json must be a JSON object such as {\"state_dir\": \"/data/.../files/mesh\"}"
                .into(),
        ));
    };
    for (key, why) in NOT_FOR_APPS {
        if obj.contains_key(*key) {
            return Err(bad(format!("config_json: {key:?} is not allowed: {why}")));
        }
    }
    if let Some(tun) = obj.get("tun").and_then(|t| t.as_object()) {
        for key in ["name", "offload"] {
            if tun.contains_key(key) {
                return Err(bad(format!(
                    "config_json: tun.{key} is not allowed: the app's TUN device is made by the \
                     OS (or there is none, in packet mode); only tun.mtu may be set"
                )));
            }
        }
    }
    if !obj.contains_key("state_dir") {
        return Err(bad(
            "config_json: \"state_dir\" is required: a directory the app owns (its files \
             directory), where the node keeps its key and peers"
                .into(),
        ));
    }
    let cfg: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        bad(match e.path().to_string().as_str() {
            "." => format!("config_json: {}", e.inner()),
            path => format!("config_json: {path}: {}", e.inner()),
        })
    })?;
    if cfg.state_dir.is_relative() {
        return Err(bad(format!(
            "config_json: state_dir {:?} must be an absolute path",
            cfg.state_dir
        )));
    }
    for (key, path) in [
        ("identity_file", cfg.identity_file.as_ref()),
        ("policy_file", cfg.policy_file.as_ref()),
    ] {
        if let Some(p) = path.filter(|p| p.is_relative()) {
            return Err(bad(format!(
                "config_json: {key} {p:?} must be an absolute path (an app's working directory \
                 is not its own)"
            )));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .map_err(|e| bad(format!("config_json: log_level {:?}: {e}", cfg.log_level)))?;
    if cfg.tun.mtu < 1280 {
        return Err(bad(format!(
            "config_json: tun.mtu {} is below IPv6's minimum of 1280",
            cfg.tun.mtu
        )));
    }
    cfg.validate()
        .map_err(|e| bad(format!("config_json: {e:#}")))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        match parse(json) {
            Ok(_) => panic!("{json} was accepted"),
            Err(e) => {
                assert_eq!(e.status, PlStatus::PlErrInvalidArgument);
                e.message
            }
        }
    }

    #[test]
    fn good_config() {
        let cfg = parse(
            r#"{"state_dir": "/tmp/x", "listen": ["udp://127.0.0.1:0"],
                "peers": ["udp://[::1]:7820"], "tun": {"mtu": 1280}}"#,
        )
        .expect("valid");
        assert_eq!(cfg.tun.mtu, 1280);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[]").contains("JSON object"));
        assert!(err("{}").contains("state_dir"));
        assert!(err(r#"{"state_dir": "rel"}"#).contains("absolute"));
        assert!(err(r#"{"state_dir": "/x", "admin_socket": "/a"}"#).contains("admin_socket"));
        assert!(err(r#"{"state_dir": "/x", "tun": {"name": "a"}}"#).contains("tun.name"));
        assert!(err(r#"{"state_dir": "/x", "bogus": 1}"#).contains("bogus"));
        assert!(err(r#"{"state_dir": "/x", "peers": ["nope"]}"#).contains("peers"));
        assert!(err(r#"{"state_dir": "/x", "tun": {"mtu": 500}}"#).contains("1280"));
        assert!(err(r#"{"state_dir": "/x", "policy_file": "p.toml"}"#).contains("policy_file"));
        assert!(err(r#"{"state_dir": "/x", "log_level": "=="}"#).contains("log_level"));
    }
}
