//! The policy file: loaded at start (a bad file stops the start, with the reason), reloaded
//! when it changes or on request (a bad file is refused and the policy in force stays), and
//! edited on behalf of `meshctl circle add/remove` (checked before it is written, written
//! atomically, then put in force).
//!
//! Reads, compiles and writes run on the policy worker thread ([`super::policy_worker`]), never
//! on the event loop: a request that changes the policy is queued, and answered when the
//! compiled policy comes back and is in force ([`PolicyFile::finish`]). This file owns the
//! file's state (stamp, counters, last error) and the answers; it must not block.
//!
//! ```text
//!  meshctl policy reload / circle add ─▶ request ─▶ Queue ─▶ worker: read, edit, write, compile
//!  poller (file changed, queue idle)  ─▶ poll ───────┘                     │
//!  reply ◀── finish: node.set_policy, counters ◀── done() ◀────────────────┘
//! ```

use super::Responder;
use super::blocking::{Refused, Worker};
use super::policy_worker::{self as work, CircleEdit, Outcome, Queue, Stamp, Task};
use crate::admin::{Error, PolicyInfo, Reply, Request};
use crate::node::Node;
use acl::Policy;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

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
    queue: Queue<Responder>,
    /// Runs the jobs; `None` without a file.
    worker: Option<Worker<Job, Option<Outcome>>>,
    /// The file's stamp as the watcher thread last saw it; `None` without a file.
    watched: Option<tokio::sync::watch::Receiver<Option<Stamp>>>,
}

/// What the worker thread is given.
enum Job {
    /// A policy job.
    Run(Task),
    /// A policy no longer in force, to free there: freeing 10,000 identities takes
    /// milliseconds, which the event loop does not have.
    Release(Arc<Policy>),
}

/// A change asked of a daemon without a policy file.
fn no_file() -> Error {
    Error::unavailable("no policy file is configured").with_hint(
        "set policy_file in meshd's config file (for example policy_file = \"/etc/meshd/policy.toml\") and restart meshd",
    )
}

impl PolicyFile {
    /// Loads the configured file (none: everything allowed). An error here stops the daemon:
    /// there is no previous policy to keep, and starting without the one configured would
    /// open what it closes. This first load blocks: it happens before the event loop runs.
    pub fn open(path: Option<PathBuf>) -> anyhow::Result<(PolicyFile, Arc<Policy>)> {
        let mut f = PolicyFile {
            path,
            stamp: None,
            pending: None,
            loaded_at: None,
            last_error: None,
            reloads: 0,
            failures: 0,
            queue: Queue::default(),
            worker: None,
            watched: None,
        };
        let Some(path) = f.path.clone() else {
            return Ok((f, Arc::new(Policy::allow_all())));
        };
        let (text, st) = work::read(&path).map_err(anyhow::Error::msg)?;
        let p = work::load(&path, &text).map_err(|e| {
            anyhow::anyhow!("the policy file has errors (fix them, then start again):\n{e}")
        })?;
        f.stamp = st;
        f.watched = Some(work::watch(path.clone(), st).map_err(|e| {
            anyhow::anyhow!("cannot start the thread that watches the policy file: {e}")
        })?);
        f.loaded_at = Some(SystemTime::now());
        tracing::info!(file = %path.display(), circles = p.model().circles.len(), rules = p.model().rules.len(), tests = p.model().tests.len(), "circle policy loaded");
        // One job runs at a time (the queue sees to it), with at most one release before it.
        f.worker = Some(Worker::new("meshd-policy", 2, move |job| match job {
            Job::Run(task) => Some(work::run(&path, task)),
            Job::Release(p) => {
                drop(p);
                None
            }
        }));
        Ok((f, Arc::new(p)))
    }

    /// Looks at the file: if it changed since it was last read, and has not changed since the
    /// previous look, and no job runs or waits, starts a reload (a refused file keeps the
    /// policy in force). While a job runs the file is not looked at: the change is seen once
    /// it is done.
    pub fn poll(&mut self, node: &mut Node) {
        let Some(watched) = self.watched.as_ref() else {
            return;
        };
        if self.queue.busy() {
            return;
        }
        let st = *watched.borrow();
        if st == self.stamp {
            self.pending = None;
            return;
        }
        if self.pending != Some(st) {
            self.pending = Some(st);
            return;
        }
        self.pending = None;
        self.stamp = st;
        let next = self.queue.file_changed();
        self.launch(next, node);
    }

    /// Takes a policy or circle request: answered at once if it only reads; queued for the
    /// worker if it changes the policy, and answered once the result is in force.
    pub fn request(&mut self, req: Request, reply: Responder, node: &mut Node) {
        let task = match req {
            Request::PolicyReload => Task::Reload,
            Request::CircleAdd { name, member } => Task::Edit(CircleEdit::Add {
                circle: name,
                member,
            }),
            Request::CircleRemove { name, member } => Task::Edit(CircleEdit::Remove {
                circle: name,
                member,
            }),
            req => return reply(answer(req, node, self)),
        };
        if self.path.is_none() {
            return reply(Reply::error(no_file()));
        }
        match self.queue.push(task, reply) {
            Ok(next) => self.launch(next, node),
            Err(reply) => reply(Reply::error(
                Error::unavailable(format!(
                    "{} policy changes are waiting already",
                    work::MAX_WAITING
                ))
                .with_hint("try again when they are done"),
            )),
        }
    }

    /// The next finished job (pending forever without a file).
    pub async fn done(&mut self) -> Outcome {
        let Some(w) = self.worker.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            if let Some(o) = w.done().await {
                return o;
            }
        }
    }

    /// A job is done: puts its policy in force, answers who waited, starts the next job.
    pub fn finish(&mut self, outcome: Outcome, node: &mut Node) {
        let next = self.settle(outcome, node);
        self.launch(next, node);
    }

    /// Hands `next` (and, if it cannot run, the jobs after it) to the worker.
    fn launch(&mut self, mut next: Option<Task>, node: &mut Node) {
        while let Some(task) = next.take() {
            let Some(worker) = self.worker.as_mut() else {
                next = self.settle(Outcome::not_run(task, no_file()), node);
                continue;
            };
            match worker.submit(Job::Run(task)) {
                Ok(()) => return,
                // Not reached (one job at a time); answered rather than lost.
                Err(Refused::Full(Job::Run(task))) => {
                    let why =
                        Error::internal("internal error: the policy worker is busy; try again");
                    next = self.settle(Outcome::not_run(task, why), node);
                }
                Err(Refused::Gone(Job::Run(task), why)) => {
                    next = self.settle(Outcome::not_run(task, Error::internal(why)), node);
                }
                Err(Refused::Full(Job::Release(_)) | Refused::Gone(Job::Release(_), _)) => {}
            }
        }
    }

    /// Applies what a job came to and answers those who waited; returns the next job.
    fn settle(&mut self, o: Outcome, node: &mut Node) -> Option<Task> {
        let (waiters, next) = self.queue.finished();
        if let Some(st) = o.stamp {
            self.stamp = st;
        }
        let compile_ms = o.took.as_secs_f64() * 1000.0;
        let reply = match (o.task, o.result) {
            (Task::Reload, Ok(Some(p))) => {
                let p = self.put_in_force(p, node, compile_ms);
                Reply::ok(self.info(&p, node.policy_counters()))
            }
            (Task::Reload, Ok(None)) => {
                Reply::ok(self.info(node.firewall.policy(), node.policy_counters()))
            }
            (Task::Reload, Err(e)) => {
                self.failures += 1;
                tracing::error!("policy file refused, the previous policy stays in force:\n{e}");
                self.last_error = Some(e.message.clone());
                let mut e = e;
                e.message.push_str("\n(the previous policy stays in force)");
                Reply::error(e)
            }
            (Task::Edit(edit), Ok(Some(p))) => {
                let what = edit.describe();
                let p = self.put_in_force(p, node, compile_ms);
                tracing::info!("{what}");
                Reply::ok(crate::admin::CircleEdited {
                    done: what,
                    policy: Some(self.info(&p, node.policy_counters())),
                })
            }
            (Task::Edit(edit), Ok(None)) => Reply::ok(crate::admin::CircleEdited {
                done: format!("nothing to change: {} already", edit.describe()),
                policy: None,
            }),
            (Task::Edit(_), Err(e)) => Reply::error(e),
        };
        for w in waiters {
            w(reply.clone());
        }
        next
    }

    fn put_in_force(&mut self, p: Policy, node: &mut Node, compile_ms: f64) -> Arc<Policy> {
        self.reloads += 1;
        self.loaded_at = Some(SystemTime::now());
        self.last_error = None;
        let (circles, rules) = (p.model().circles.len(), p.model().rules.len());
        let p = Arc::new(p);
        let old = node.firewall.policy().clone();
        let t0 = Instant::now();
        node.set_policy(t0, p.clone());
        let apply_ms = t0.elapsed().as_secs_f64() * 1000.0;
        // Freed on the worker (or here if it cannot take it).
        if let Some(w) = self.worker.as_mut() {
            let _ = w.submit(Job::Release(old));
        }
        tracing::info!(
            circles,
            rules,
            compile_ms = format!("{compile_ms:.1}"),
            apply_ms = format!("{apply_ms:.2}"),
            "circle policy reloaded"
        );
        p
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

/// Answers the policy and circle requests that only read.
fn answer(req: Request, node: &Node, pf: &PolicyFile) -> Reply {
    use crate::admin::{CircleInfo, ExplainRow};
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
    match req {
        Request::PolicyShow => Reply::ok(pf.info(&policy, node.policy_counters())),
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
        _ => Reply::err("internal error: request routed to the wrong handler"),
    }
}
