//! Names in the daemon: the `name` requests of `meshctl`, the claims kept across restarts
//! ([`super::name_store`]), the DNS responder's queries, and the router's name events.
//!
//! ```text
//!  meshctl name claim ─► Router::claim_name ─► NameStore::put (writer thread) ─┐
//!                       NameEvent::Claimed (not Pending) ──────────────────────┴─► reply
//!  meshctl name resolve / DNS query ─► Waiting::ask ─► Router::resolve_name
//!                       Some: answered now │ None: NameEvent::Resolved ─► every waiter
//! ```
//!
//! The loop never waits here: a reply that needs a save or an outcome is sent by a small
//! task holding oneshots, each with a deadline.

use super::Responder;
use super::name_store::{NameStore, SaveDone, Saved, SavedClaim};
use crate::admin::{Error, Reply, Request};
use crate::dns::waiting::{Ask, LOOKUP_DEADLINE, Waiting};
use crate::dns::{NameAnswer, RouterNames, answer_of, keyname};
use crate::identity::{Identity, PublicKey};
use crate::node::{NameEvent, Node};
use api::{NameDelegation, NameInfo, NamePublished, NameReleasedInfo, NameResolution};
use routing::name_record::{Delegation, NameRecord, Service, validate_name};
use routing::names::{ClaimState, NameSource, Resolution};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long `name claim` waits for the storing nodes' verdict before answering `pending`.
pub const CLAIM_PATIENCE: Duration = Duration::from_secs(5);
/// Claims waiting for their verdict, at most (per name: [`MAX_CLAIM_WAITERS`]).
const MAX_CLAIM_WAITERS: usize = 16;
/// Days a delegation is valid by default, and at most.
pub const DELEGATION_DAYS: (u32, u32) = (30, 3650);

/// Names in the daemon.
pub struct Names {
    /// The claims kept across restarts.
    pub store: NameStore,
    suffix: String,
    dns: Waiting<NameAnswer>,
    admin: Waiting<NameResolution>,
    claim_waiters: HashMap<String, Vec<oneshot::Sender<NameInfo>>>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// The claim's state as `meshctl` shows it.
fn info(name: &str, state: &ClaimState, saved: Option<&SavedClaim>) -> NameInfo {
    let (s, storers, taken_by) = match state {
        ClaimState::Pending => ("pending", None, None),
        ClaimState::Held { storers } => ("held", Some(*storers), None),
        ClaimState::Taken { by } => ("taken", None, Some(hex(by))),
        ClaimState::NoStorers => ("no_storers", None, None),
    };
    let delegated_by = saved
        .and_then(|c| c.delegation.as_deref())
        .and_then(|t| Delegation::from_text(t).ok())
        .map(|d| hex(&d.authority));
    NameInfo {
        name: name.to_string(),
        state: s.into(),
        storers,
        taken_by,
        addr: saved.and_then(|c| c.addr).map(|a| a.to_string()),
        delegated_by,
    }
}

/// A resolution as `meshctl name resolve` shows it.
fn resolution(r: &Resolution) -> NameResolution {
    let (source, authority) = match &r.source {
        NameSource::Pinned => ("pinned", None),
        NameSource::Delegated { authority } => ("delegated", Some(hex(authority))),
        NameSource::Claim => ("claim", None),
    };
    NameResolution {
        name: r.name.clone(),
        found: true,
        public_key: Some(hex(&r.key)),
        address: Some(answer_of(r).addr.to_string()),
        source: Some(source.into()),
        authority,
        expires: r.record.as_ref().map(|rec| rec.expires),
    }
}

fn not_found(name: &str) -> NameResolution {
    NameResolution {
        name: name.to_string(),
        found: false,
        public_key: None,
        address: None,
        source: None,
        authority: None,
        expires: None,
    }
}

impl Names {
    /// Names with the claims saved in `state_dir`; `suffix` is the DNS suffix.
    pub fn open(state_dir: &std::path::Path, suffix: &str) -> anyhow::Result<Names> {
        Ok(Names {
            store: NameStore::open(state_dir)?,
            suffix: suffix.to_string(),
            dns: Waiting::default(),
            admin: Waiting::default(),
            claim_waiters: HashMap::new(),
        })
    }

    /// Claims every saved name again (the router has its wall clock).
    pub fn restore(&mut self, node: &mut Node, now: Instant) {
        for c in self.store.claims().to_vec() {
            let delegation = c
                .delegation
                .as_deref()
                .and_then(|t| Delegation::from_text(t).ok());
            let services = c.addr.map(Service::Addr).into_iter().collect();
            match node.router.claim_name(now, &c.name, services, delegation) {
                Ok(()) => tracing::info!(name = %c.name, "name claimed again after the restart"),
                Err(e) => tracing::warn!(name = %c.name, "a saved name cannot be claimed: {e}"),
            }
        }
    }

    /// The names this node claims, for `self` and `name list`.
    pub fn list(&self, node: &Node) -> Vec<NameInfo> {
        node.router
            .claims()
            .map(|(n, s)| info(n, s, self.store.get(n)))
            .collect()
    }

    /// A query of the DNS responder.
    pub fn dns_ask(&mut self, node: &mut Node, ask: Ask<NameAnswer>) {
        let mut src = RouterNames {
            router: &mut node.router,
            f: answer_of,
        };
        self.dns.ask(&mut src, Instant::now(), ask);
    }

    /// A name event of the router.
    pub fn on_event(&mut self, e: NameEvent) {
        match e {
            NameEvent::Claimed { name, state } => {
                match &state {
                    ClaimState::Taken { by } => {
                        tracing::warn!(%name, by = %hex(by), "name claim refused: another key holds it")
                    }
                    ClaimState::Held { storers } => {
                        tracing::debug!(%name, storers, "name claim held")
                    }
                    _ => {}
                }
                if state != ClaimState::Pending
                    && let Some(list) = self.claim_waiters.remove(&name)
                {
                    let i = info(&name, &state, self.store.get(&name));
                    for tx in list {
                        let _ = tx.send(i.clone());
                    }
                }
            }
            NameEvent::Resolved { name, result } => {
                self.dns.resolved(&name, result.as_deref().map(answer_of));
                let r = result
                    .as_deref()
                    .map_or_else(|| not_found(&name), resolution);
                self.admin.resolved(&name, Some(r));
            }
        }
        if self.dns.len() > crate::dns::waiting::MAX_WAITING_NAMES / 2 {
            self.dns.sweep(Instant::now());
        }
    }

    /// A `name …` request.
    pub fn request(&mut self, req: Request, reply: Responder, node: &mut Node, id: &Identity) {
        let now = Instant::now();
        match req {
            Request::NameClaim {
                name,
                addr,
                delegation,
            } => self.claim(&name, addr, delegation, reply, node, id, now),
            Request::NameRelease { name } => self.release(&name, reply, node, now),
            Request::NameResolve { name } => self.resolve(&name, reply, node, now),
            Request::NameList => reply(Reply::ok(self.list(node))),
            Request::NameDelegate { name, key, days } => {
                reply(Reply::from(delegate(&name, &key, days, id)))
            }
            Request::NamePublish { record } => reply(Reply::from(publish(&record, node, now))),
            _ => reply(Reply::error(Error::internal(
                "internal error: request routed to the wrong handler",
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn claim(
        &mut self,
        name: &str,
        addr: Option<String>,
        delegation: Option<String>,
        reply: Responder,
        node: &mut Node,
        id: &Identity,
        now: Instant,
    ) {
        let r = (|| {
            let name = validate_name(name).map_err(|e| Error::bad_request(e.to_string()))?;
            let addr: Option<std::net::Ipv6Addr> = addr
                .map(|a| {
                    a.parse().map_err(|_| {
                        Error::bad_request(format!("--addr {a:?} is not an IPv6 address"))
                    })
                })
                .transpose()?;
            let d = delegation
                .as_deref()
                .map(|t| Delegation::from_text(t).map_err(|e| Error::bad_request(e.to_string())))
                .transpose()?;
            if let Some(d) = &d
                && !d.verify(&name, &id.public_key().0)
            {
                return Err(Error::bad_request(format!(
                    "this delegation is not for {name:?} and this node's key"
                ))
                .with_hint(format!(
                    "ask the authority for `meshctl name delegate {name} {}`",
                    id.public_key()
                )));
            }
            let services = addr.map(Service::Addr).into_iter().collect();
            node.router
                .claim_name(now, &name, services, d)
                .map_err(|e| Error::bad_request(e.to_string()))?;
            let saved = self
                .store
                .put(SavedClaim {
                    name: name.clone(),
                    addr,
                    delegation: delegation.map(|t| t.trim().to_string()),
                })
                .map_err(|e| Error::unavailable(format!("{e:#}")))?;
            Ok((name, saved))
        })();
        let (name, saved) = match r {
            Ok(x) => x,
            Err(e) => return reply(Reply::error(e)),
        };
        let pending = info(&name, &ClaimState::Pending, self.store.get(&name));
        let list = self.claim_waiters.entry(name).or_default();
        list.retain(|tx| !tx.is_closed());
        let (tx, rx) = oneshot::channel();
        if list.len() < MAX_CLAIM_WAITERS {
            list.push(tx);
        }
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(CLAIM_PATIENCE, rx).await;
            let i = match outcome {
                Ok(Ok(i)) => i,
                _ => pending,
            };
            reply(after_save(saved, i, "claimed").await);
        });
    }

    fn release(&mut self, name: &str, reply: Responder, node: &mut Node, now: Instant) {
        let name = match validate_name(name) {
            Ok(n) => n,
            Err(e) => return reply(Reply::error(Error::bad_request(e.to_string()))),
        };
        let claimed = node.router.release_name(now, &name);
        let saved = self.store.remove(&name);
        if !claimed && saved.is_none() {
            return reply(Reply::error(
                Error::not_found(format!("this node does not claim {name:?}"))
                    .with_hint("meshctl name list shows the names this node claims"),
            ));
        }
        let done = NameReleasedInfo { released: name };
        match saved {
            None => reply(Reply::ok(done)),
            Some(Err(e)) => reply(Reply::error(Error::unavailable(format!(
                "released, but not saved for restarts: {e:#}"
            )))),
            Some(Ok(rx)) => {
                tokio::spawn(async move { reply(after_save(rx, done, "released").await) });
            }
        }
    }

    fn resolve(&mut self, name: &str, reply: Responder, node: &mut Node, now: Instant) {
        let label = name.trim_end_matches('.');
        let label = label
            .strip_suffix(&format!(".{}", self.suffix))
            .unwrap_or(label);
        if let Some(key) = keyname::decode(label) {
            return reply(Reply::ok(NameResolution {
                name: label.to_string(),
                found: true,
                public_key: Some(hex(&key)),
                address: Some(routing::address::node_address(&key).to_string()),
                source: Some("key".into()),
                authority: None,
                expires: None,
            }));
        }
        let label = match validate_name(label) {
            Ok(n) => n,
            Err(e) => return reply(Reply::error(Error::bad_request(e.to_string()))),
        };
        let (tx, rx) = oneshot::channel();
        let mut src = RouterNames {
            router: &mut node.router,
            f: resolution,
        };
        self.admin.ask(
            &mut src,
            now,
            Ask {
                name: label.clone(),
                reply: tx,
            },
        );
        tokio::spawn(async move {
            reply(match tokio::time::timeout(LOOKUP_DEADLINE, rx).await {
                Ok(Ok(Some(r))) => Reply::ok(r),
                Ok(Ok(None)) => Reply::ok(not_found(&label)),
                _ => Reply::error(
                    Error::unavailable(format!("no answer about {label:?} within {} s", LOOKUP_DEADLINE.as_secs()))
                        .with_hint("the mesh may be young or partitioned; try again (meshctl tree shows this node's place)"),
                ),
            });
        });
    }
}

/// The reply once the save is written (or an error naming what was done and what was not).
async fn after_save(saved: SaveDone, data: impl serde::Serialize, done: &str) -> Reply {
    match saved.await {
        Ok(Ok(())) => Reply::ok(data),
        Ok(Err(e)) => Reply::error(Error::internal(format!(
            "{done}, but not saved for restarts: {e}"
        ))),
        Err(_) => Reply::error(Error::internal(format!(
            "{done}, but the names writer stopped (see the log); not saved for restarts"
        ))),
    }
}

/// `name delegate`: this node, as an authority, signs `name → key` for `days`.
fn delegate(
    name: &str,
    key: &str,
    days: Option<u32>,
    id: &Identity,
) -> Result<NameDelegation, Error> {
    let name = validate_name(name).map_err(|e| Error::bad_request(e.to_string()))?;
    let key: PublicKey = key.parse().map_err(|e| {
        Error::bad_request(format!("{key:?} is not a public key: {e}"))
            .with_hint("copy the delegate's key from `meshctl self` on its node")
    })?;
    let days = days.unwrap_or(DELEGATION_DAYS.0);
    if days == 0 || days > DELEGATION_DAYS.1 {
        return Err(Error::bad_request(format!(
            "--days {days}: give 1 to {} days",
            DELEGATION_DAYS.1
        )));
    }
    let expires = unix_now() + u64::from(days) * 86_400;
    let sk = ed25519_dalek::SigningKey::from_bytes(&id.secret_seed());
    let d = Delegation::new(&sk, &name, &key.0, expires)
        .map_err(|e| Error::bad_request(e.to_string()))?;
    Ok(NameDelegation {
        name,
        public_key: key.to_string(),
        authority: id.public_key().to_string(),
        expires,
        token: d.to_text(),
    })
}

/// `name publish`: a record signed elsewhere, sent as it is.
fn publish(record: &str, node: &mut Node, now: Instant) -> Result<NamePublished, Error> {
    let s = record.trim();
    let bytes: Option<Vec<u8>> = (s.len().is_multiple_of(2) && s.len() <= 2 * 4096)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect()
        })
        .flatten();
    let bytes =
        bytes.ok_or_else(|| Error::bad_request("the record is not hex of at most 4096 bytes"))?;
    let rec = NameRecord::from_bytes(&bytes).map_err(|e| {
        Error::bad_request(format!("not a name record: {e:?}"))
            .with_hint("the file holds a record's bytes as NameRecord::to_bytes writes them")
    })?;
    let out = NamePublished {
        name: rec.name.clone(),
        public_key: hex(&rec.key),
        seq: rec.seq,
        expires: rec.expires,
    };
    node.router.publish_name_record(now, rec);
    Ok(out)
}

/// The names part of `status`.
pub fn counters(node: &Node) -> api::NameCounters {
    let r = &node.router;
    let s = r.stats();
    api::NameCounters {
        stored: r.stored_names() as u64,
        taken: s.names_taken,
        full: s.names_full,
        bad_signature: s.names_bad_sig,
        old_sequence: s.names_old_seq,
        expired: s.names_expired,
        lookups: s.name_lookups,
        claims: r.claims().count() as u64,
    }
}

/// Finishes a save of the store (the loop got it from [`NameStore::saved`]).
pub fn finish(names: &mut Names, s: Saved) {
    names.store.finish(s);
}
