//! The policy file: loaded at start (a bad file stops the start, with the reason), reloaded
//! when it changes or on request (a bad file is refused and the policy in force stays), and
//! edited on behalf of `meshctl circle add/remove` (checked before it is written, written
//! atomically, then put in force).

use crate::admin::PolicyInfo;
use acl::Policy;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime_ns: i128,
    ctime_ns: i128,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        len: m.len(),
        ino: m.ino(),
    })
}

/// The configured policy file and what became of it.
pub struct PolicyFile {
    path: Option<PathBuf>,
    stamp: Option<Stamp>,
    /// A change seen at the last poll, loaded once the file holds still for one more poll
    /// (so that a file being written in place is not read half-way).
    pending: Option<Option<Stamp>>,
    loaded_at: Option<SystemTime>,
    last_error: Option<String>,
    reloads: u64,
    failures: u64,
}

fn read(path: &Path) -> Result<(String, Option<Stamp>), String> {
    let st = stamp(path);
    std::fs::read_to_string(path)
        .map(|t| (t, st))
        .map_err(|e| format!("cannot read the policy file {}: {e}", path.display()))
}

fn load(path: &Path, text: &str) -> Result<Policy, String> {
    // An empty file is far more often one caught while being written (or truncated by
    // mistake) than a wish to allow everything, which `default = "allow"` says plainly.
    if text.trim().is_empty() {
        return Err(format!(
            "{}: the policy file is empty; to allow everything, write default = \"allow\"",
            path.display()
        ));
    }
    Policy::load(text, &path.display().to_string()).map_err(|e| e.to_string())
}

impl PolicyFile {
    /// Loads the configured file (none: everything allowed). An error here stops the daemon:
    /// there is no previous policy to keep, and starting without the one configured would
    /// open what it closes.
    pub fn open(path: Option<PathBuf>) -> anyhow::Result<(PolicyFile, Arc<Policy>)> {
        let mut f = PolicyFile {
            path,
            stamp: None,
            pending: None,
            loaded_at: None,
            last_error: None,
            reloads: 0,
            failures: 0,
        };
        let Some(path) = f.path.clone() else {
            return Ok((f, Arc::new(Policy::allow_all())));
        };
        let (text, st) = read(&path).map_err(anyhow::Error::msg)?;
        let p = load(&path, &text).map_err(|e| {
            anyhow::anyhow!("the policy file has errors (fix them, then start again):\n{e}")
        })?;
        f.stamp = st;
        f.loaded_at = Some(SystemTime::now());
        tracing::info!(file = %path.display(), circles = p.model().circles.len(), rules = p.model().rules.len(), tests = p.model().tests.len(), "circle policy loaded");
        Ok((f, Arc::new(p)))
    }

    /// If the file changed since it was last read, and has not changed since the previous
    /// poll, loads it again: `Some(Ok)` to put in force,
    /// `Some(Err)` if it was refused (the caller keeps the policy it has).
    pub fn poll(&mut self) -> Option<Result<Arc<Policy>, String>> {
        let path = self.path.as_ref()?;
        let st = stamp(path);
        if st == self.stamp {
            self.pending = None;
            return None;
        }
        if self.pending != Some(st) {
            self.pending = Some(st);
            return None;
        }
        self.pending = None;
        self.stamp = st;
        Some(self.reload())
    }

    /// Loads the file again now.
    pub fn reload(&mut self) -> Result<Arc<Policy>, String> {
        let Some(path) = self.path.clone() else {
            return Err(
                "no policy file is configured; set policy_file in meshd's config file".into(),
            );
        };
        let r = read(&path).and_then(|(text, st)| {
            self.stamp = st;
            load(&path, &text)
        });
        self.settle(r)
    }

    fn settle(&mut self, r: Result<Policy, String>) -> Result<Arc<Policy>, String> {
        match r {
            Ok(p) => {
                self.reloads += 1;
                self.loaded_at = Some(SystemTime::now());
                self.last_error = None;
                tracing::info!(
                    circles = p.model().circles.len(),
                    rules = p.model().rules.len(),
                    "circle policy reloaded"
                );
                Ok(Arc::new(p))
            }
            Err(e) => {
                self.failures += 1;
                tracing::error!("policy file refused, the previous policy stays in force:\n{e}");
                self.last_error = Some(e.clone());
                Err(format!("{e}\n(the previous policy stays in force)"))
            }
        }
    }

    /// Applies `edit` to the file's text; the result is checked (parsed, compiled, its tests
    /// run) before it is written, then written atomically and returned for putting in force.
    /// `Ok(None)`: nothing to change.
    pub fn edit(
        &mut self,
        edit: impl FnOnce(&str) -> Result<Option<String>, acl::edit::EditError>,
    ) -> Result<Option<Arc<Policy>>, String> {
        let Some(path) = self.path.clone() else {
            return Err(
                "no policy file is configured; set policy_file in meshd's config file \
                 (for example policy_file = \"/etc/meshd/policy.toml\") and restart meshd"
                    .into(),
            );
        };
        let (text, _) = read(&path)?;
        let Some(new) = edit(&text).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let p = load(&path, &new).map_err(|e| {
            format!("the change would make the policy invalid, so the file was not changed:\n{e}")
        })?;
        write_atomically(&path, &new)
            .map_err(|e| format!("cannot write the policy file {}: {e}", path.display()))?;
        self.stamp = stamp(&path);
        self.settle(Ok(p)).map(Some)
    }

    /// For `meshctl policy show` and `status`.
    pub fn info(&self, policy: &Policy, counters: crate::firewall::PolicyCounters) -> PolicyInfo {
        let m = policy.model();
        PolicyInfo {
            file: self.path.as_ref().map(|p| p.display().to_string()),
            loaded_unix: self
                .loaded_at
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            circles: m.circles.len(),
            rules: m.rules.len(),
            tests: m.tests.len(),
            defaults: acl::Action::ALL
                .iter()
                .map(|a| {
                    (
                        a.name().to_string(),
                        m.defaults[a.index()].name().to_string(),
                    )
                })
                .collect(),
            reloads: self.reloads,
            reload_failures: self.failures,
            last_error: self.last_error.clone(),
            counters: crate::admin::policy_counters(&counters),
        }
    }
}

/// Writes `text` to a temporary file beside `path`, syncs it, keeps the old file's mode, and
/// renames it over `path`: readers see the old file or the new one, never a mix.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.meshd-tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    if let Ok(m) = std::fs::metadata(path) {
        f.set_permissions(m.permissions())?;
    }
    let r = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// Puts `policy` in force on `node`.
pub fn apply(node: &mut crate::node::Node, policy: Arc<Policy>) {
    node.set_policy(std::time::Instant::now(), policy);
}

/// Answers the policy and circle requests.
pub fn answer(
    req: crate::admin::Request,
    node: &mut crate::node::Node,
    pf: &mut PolicyFile,
) -> crate::admin::Reply {
    use crate::admin::{CircleEdited, CircleInfo, ExplainRow, Reply, Request};
    let policy = node.firewall.policy().clone();
    let circle = |p: &Policy, name: &str| -> Option<CircleInfo> {
        let c = p.model().circles.iter().find(|c| c.name == name)?;
        Some(CircleInfo {
            name: c.name.clone(),
            line: c.loc.line,
            members: c.members.iter().map(|m| m.value.to_string()).collect(),
            resolved: p
                .circle_members(name)
                .unwrap_or_default()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        })
    };
    let edited = |node: &mut crate::node::Node,
                  pf: &PolicyFile,
                  r: Result<Option<Arc<Policy>>, String>,
                  what: String| match r {
        Ok(Some(p)) => {
            apply(node, p.clone());
            tracing::info!("{what}");
            Reply::ok(CircleEdited {
                done: what,
                policy: Some(pf.info(&p, node.policy_counters())),
            })
        }
        Ok(None) => Reply::ok(CircleEdited {
            done: format!("nothing to change: {what} already"),
            policy: None,
        }),
        Err(e) => Reply::err(e),
    };
    match req {
        Request::PolicyShow => Reply::ok(pf.info(&policy, node.policy_counters())),
        Request::PolicyReload => match pf.reload() {
            Ok(p) => {
                apply(node, p.clone());
                Reply::ok(pf.info(&p, node.policy_counters()))
            }
            Err(e) => Reply::err(e),
        },
        Request::PolicyExplain { who, packet } => {
            let who = match who.parse::<crate::identity::PublicKey>() {
                Ok(k) => acl::Who::Key(k.0),
                Err(_) => match who.parse::<std::net::Ipv6Addr>() {
                    Ok(a) if routing::address::owner_id(&a).is_some() => acl::Who::Addr(a),
                    _ => {
                        return Reply::err(format!(
                            "{who:?} is neither a public key (64 hex digits) nor an overlay address"
                        ));
                    }
                },
            };
            let packet = match packet.as_deref().map(acl::parse::parse_packet).transpose() {
                Ok(p) => p,
                Err(e) => return Reply::err(e),
            };
            let class = policy.classify_who(&who);
            let rows: Vec<ExplainRow> = acl::Action::ALL
                .iter()
                .map(|&a| {
                    let e = policy.explain(&who, a, if a.has_ports() { packet } else { None });
                    let mut row = ExplainRow {
                        action: a.name().into(),
                        packet: None,
                        verdict: e.verdict.name().into(),
                        rule_line: e.decided_by.as_ref().map(|r| r.line),
                        reason: e.reason,
                        circles: e.circles,
                    };
                    if a.has_ports() {
                        match packet {
                            Some((p, n)) if p.has_ports() => row.packet = Some(format!("{p}/{n}")),
                            Some((p, _)) => row.packet = Some(p.name().into()),
                            None => {
                                // No packet named: say whether anything passes, and which
                                // rules are about this identity.
                                let any = if a == acl::Action::Traffic { class.receives_any() } else { class.sends_any() };
                                let rules: Vec<String> = policy
                                    .rules_naming(&who, a)
                                    .iter()
                                    .map(|r| format!("rule {} at line {}: {}", r.number, r.line, r.summary))
                                    .collect();
                                row.packet = Some("any".into());
                                row.verdict = if any { "allow" } else { "deny" }.into();
                                row.rule_line = None;
                                row.reason = format!(
                                    "{} ({}); name a packet (tcp/22, udp/53, icmp) to see which rule decides it",
                                    if any { "some packets are allowed" } else { "every packet is denied" },
                                    if rules.is_empty() { format!("no rule names it; the default for {a} is {}", policy.model().defaults[a.index()]) } else { rules.join("; ") }
                                );
                            }
                        }
                    }
                    row
                })
                .collect();
            Reply::ok(rows)
        }
        Request::CircleList => Reply::ok(
            policy
                .circle_names()
                .filter_map(|n| circle(&policy, n))
                .collect::<Vec<_>>(),
        ),
        Request::CircleShow { name } => match circle(&policy, &name) {
            Some(c) => Reply::ok(c),
            None => Reply::err(format!(
                "there is no circle {name:?} (meshctl circle list shows them)"
            )),
        },
        Request::CircleAdd { name, member } => {
            let r = pf.edit(|t| acl::edit::add_member(t, &name, &member));
            edited(node, pf, r, format!("{member} is in circle {name}"))
        }
        Request::CircleRemove { name, member } => {
            let r = pf.edit(|t| acl::edit::remove_member(t, &name, &member).map(Some));
            edited(node, pf, r, format!("{member} removed from circle {name}"))
        }
        _ => Reply::err("internal error: request routed to the wrong handler"),
    }
}
