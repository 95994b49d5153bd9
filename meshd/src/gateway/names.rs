//! Which publisher holds which name on a gateway, and which connection carries each published
//! service now. Sans-IO: the daemon asks and applies; this file decides.
//!
//! * A name is **held** by the first key that publishes it (any kind), and stays held when
//!   that key disconnects, until it releases the name (`meshctl unpublish`) or the gateway's
//!   operator does (`meshctl gateway release`): a restart of the publisher never lets
//!   another key take its name. Holds are saved by the daemon and survive a restart.
//! * A **service** is a (name, kind) with the connection that carries it. The same key
//!   connecting again (a re-dial after a failure the old connection has not noticed yet)
//!   replaces its old connection at once.

use super::wire::Kind;
use std::collections::{BTreeMap, HashMap};

/// A publisher's connection, as the daemon numbers them.
pub type ConnId = u64;

/// Why a publish is refused (the message is sent to the publisher and logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The gateway's `publish` rule denies the key.
    NotAllowed,
    /// Another key holds the name.
    Held {
        /// The holder.
        by: [u8; 32],
    },
    /// `max_names` names are held already.
    Full(usize),
    /// A release of a name the key does not hold.
    NotHolder,
}

impl Refused {
    /// What the publisher is told.
    pub fn message(&self, name: &str, key: &[u8; 32]) -> String {
        match self {
            Refused::NotAllowed => format!(
                "key {} may not publish on this gateway: its circle policy has no publish \
                 rule that allows it (ask the gateway's operator to add the key to a circle \
                 with action = \"publish\")",
                hex(key)
            ),
            Refused::Held { by } => format!(
                "the name {name:?} is held on this gateway by key {}; choose another name, or \
                 have that key unpublish it",
                hex(by)
            ),
            Refused::Full(n) => {
                format!("this gateway holds its most names already ({n}, gateway.max_names)")
            }
            Refused::NotHolder => format!("key {} does not hold {name:?} here", hex(key)),
        }
    }
}

fn hex(k: &[u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names of one gateway.
#[derive(Debug, Default)]
pub struct Names {
    held: BTreeMap<String, [u8; 32]>,
    services: HashMap<(String, Kind), ConnId>,
    max_names: usize,
}

impl Names {
    /// An empty table holding at most `max_names` names.
    pub fn new(max_names: usize) -> Names {
        Names {
            max_names,
            ..Names::default()
        }
    }

    /// The holds saved before a restart (the newest state wins over the limit: nothing saved
    /// is dropped).
    pub fn restore(&mut self, held: impl IntoIterator<Item = (String, [u8; 32])>) {
        self.held.extend(held);
    }

    /// Every hold, to save.
    pub fn held(&self) -> impl Iterator<Item = (&String, &[u8; 32])> {
        self.held.iter()
    }

    /// Who holds `name`.
    pub fn holder(&self, name: &str) -> Option<&[u8; 32]> {
        self.held.get(name)
    }

    /// `key` publishes (`name`, `kind`) on connection `conn` (`allowed`: the `publish` rule's
    /// verdict). Answers the connection it replaces, if any, and whether the holds changed.
    pub fn publish(
        &mut self,
        key: &[u8; 32],
        name: &str,
        kind: Kind,
        allowed: bool,
        conn: ConnId,
    ) -> Result<(Option<ConnId>, bool), Refused> {
        if !allowed {
            return Err(Refused::NotAllowed);
        }
        let new = match self.held.get(name) {
            Some(by) if by != key => return Err(Refused::Held { by: *by }),
            Some(_) => false,
            None if self.held.len() >= self.max_names => {
                return Err(Refused::Full(self.max_names));
            }
            None => {
                self.held.insert(name.to_string(), *key);
                true
            }
        };
        let old = self.services.insert((name.to_string(), kind), conn);
        Ok((old.filter(|o| *o != conn), new))
    }

    /// `key` releases `name`: its services end and the name is free. Answers the connections
    /// that carried them.
    pub fn release(&mut self, key: &[u8; 32], name: &str) -> Result<Vec<ConnId>, Refused> {
        match self.held.get(name) {
            Some(by) if by == key => Ok(self.force_release(name)),
            _ => Err(Refused::NotHolder),
        }
    }

    /// The operator frees `name` whoever holds it. Answers the connections that carried it.
    pub fn force_release(&mut self, name: &str) -> Vec<ConnId> {
        self.held.remove(name);
        let mut conns = Vec::new();
        self.services.retain(|(n, _), c| {
            let keep = n != name;
            if !keep {
                conns.push(*c);
            }
            keep
        });
        conns
    }

    /// Connection `conn` closed: its services wait for their publisher (the names stay held).
    pub fn closed(&mut self, conn: ConnId) {
        self.services.retain(|_, c| *c != conn);
    }

    /// The connection carrying (`name`, `kind`) now.
    pub fn route(&self, name: &str, kind: Kind) -> Option<ConnId> {
        self.services.get(&(name.to_string(), kind)).copied()
    }

    /// Every published service with its connection (none: its publisher is away).
    pub fn services(&self) -> Vec<(String, Kind, [u8; 32], Option<ConnId>)> {
        let mut out: Vec<_> = self
            .services
            .iter()
            .filter_map(|((n, k), c)| Some((n.clone(), *k, *self.held.get(n)?, Some(*c))))
            .collect();
        for (n, key) in &self.held {
            if !self.services.keys().any(|(m, _)| m == n) {
                out.push((n.clone(), Kind::Tls, *key, None));
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    #[test]
    fn the_first_publisher_holds_the_name_across_disconnects() {
        let mut n = Names::new(10);
        assert_eq!(
            n.publish(&A, "shop.test", Kind::Tls, true, 1),
            Ok((None, true))
        );
        assert_eq!(
            n.publish(&A, "shop.test", Kind::Http, true, 1),
            Ok((None, false))
        );
        assert_eq!(
            n.publish(&B, "shop.test", Kind::Tls, true, 2),
            Err(Refused::Held { by: A })
        );
        assert_eq!(n.route("shop.test", Kind::Tls), Some(1));
        // A disconnects: nobody carries the service, B still cannot take the name.
        n.closed(1);
        assert_eq!(n.route("shop.test", Kind::Tls), None);
        assert!(n.publish(&B, "shop.test", Kind::Tls, true, 2).is_err());
        // A comes back on a new connection; a second re-dial replaces the first.
        assert_eq!(
            n.publish(&A, "shop.test", Kind::Tls, true, 3),
            Ok((None, false))
        );
        assert_eq!(
            n.publish(&A, "shop.test", Kind::Tls, true, 4),
            Ok((Some(3), false))
        );
        assert_eq!(n.route("shop.test", Kind::Tls), Some(4));
        // Only A releases it; then B may have it.
        assert_eq!(n.release(&B, "shop.test"), Err(Refused::NotHolder));
        assert_eq!(n.release(&A, "shop.test"), Ok(vec![4]));
        assert_eq!(
            n.publish(&B, "shop.test", Kind::Tls, true, 5),
            Ok((None, true))
        );
    }

    #[test]
    fn policy_and_limits_refuse_with_a_reason() {
        let mut n = Names::new(1);
        let e = n
            .publish(&A, "a.test", Kind::Tls, false, 1)
            .expect_err("denied");
        assert!(e.message("a.test", &A).contains("action = \"publish\""));
        n.publish(&A, "a.test", Kind::Tls, true, 1).expect("first");
        let e = n
            .publish(&A, "b.test", Kind::Tls, true, 1)
            .expect_err("full");
        assert!(e.message("b.test", &A).contains("max_names"));
        let e = n
            .publish(&B, "a.test", Kind::Tls, true, 2)
            .expect_err("held");
        assert!(e.message("a.test", &B).contains(&hex(&A)));
        // The operator frees the name.
        assert_eq!(n.force_release("a.test"), vec![1]);
        assert!(n.holder("a.test").is_none());
    }
}
