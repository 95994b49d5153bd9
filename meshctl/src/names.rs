//! `meshctl name …`: claims, releases, resolutions, delegations and published records.

use anyhow::Context;
use api::{NameDelegation, NameInfo, NamePublished, NameReleasedInfo, NameResolution, Request};
use clap::Subcommand;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The largest record file `name publish` reads (a record is well under 1 KiB).
const MAX_RECORD_FILE: u64 = 64 * 1024;

#[derive(Subcommand)]
pub enum NameCmd {
    /// Claim a name for this node (kept across restarts, renewed until released).
    Claim {
        /// The name: one DNS label, 1-63 of a-z, 0-9 and '-'.
        name: String,
        /// Answer AAAA with this address (a service address) instead of the node's.
        #[arg(long)]
        addr: Option<std::net::Ipv6Addr>,
        /// A delegation token from a name authority (`meshctl name delegate` on its node).
        #[arg(long)]
        delegation: Option<String>,
    },
    /// Stop claiming a name: it frees at once.
    Release {
        /// The name.
        name: String,
    },
    /// Resolve a name as the DNS responder does (policy pins, delegations, claims).
    Resolve {
        /// The name (shop or shop.<suffix>).
        name: String,
    },
    /// The names this node claims and their state.
    List,
    /// As a name authority (this node's key), delegate NAME to KEY; prints the token.
    Delegate {
        /// The name.
        name: String,
        /// The delegate's public key (64 hex digits).
        key: String,
        /// Days the delegation is valid.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Send a name record signed elsewhere (a file of its bytes) to its storing nodes.
    Publish {
        /// The record file.
        file: PathBuf,
    },
}

/// The request of a `name` command.
pub fn request(cmd: &NameCmd) -> anyhow::Result<Request> {
    Ok(match cmd {
        NameCmd::Claim {
            name,
            addr,
            delegation,
        } => Request::NameClaim {
            name: name.clone(),
            addr: addr.map(|a| a.to_string()),
            delegation: delegation.clone(),
        },
        NameCmd::Release { name } => Request::NameRelease { name: name.clone() },
        NameCmd::Resolve { name } => Request::NameResolve { name: name.clone() },
        NameCmd::List => Request::NameList,
        NameCmd::Delegate { name, key, days } => Request::NameDelegate {
            name: name.clone(),
            key: key.clone(),
            days: Some(*days),
        },
        NameCmd::Publish { file } => {
            use std::io::Read;
            let mut bytes = Vec::new();
            std::fs::File::open(file)
                .and_then(|f| f.take(MAX_RECORD_FILE).read_to_end(&mut bytes))
                .with_context(|| format!("cannot read {}", file.display()))?;
            Request::NamePublish {
                record: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            }
        }
    })
}

fn state(n: &NameInfo) -> String {
    match (n.state.as_str(), n.storers, &n.taken_by) {
        ("held", Some(1), _) => "held (1 storing node)".into(),
        ("held", Some(s), _) => format!("held ({s} storing nodes)"),
        ("taken", _, Some(by)) => format!("taken by {by}"),
        ("no_storers", ..) => "no storing node answered (retrying)".into(),
        (s, ..) => s.to_string(),
    }
}

/// `name list` (and the names of `self`).
pub fn list(names: &[NameInfo]) -> String {
    if names.is_empty() {
        return "no names claimed (meshctl name claim NAME)\n".into();
    }
    let mut o = String::new();
    for n in names {
        let mut extra = String::new();
        if let Some(a) = &n.addr {
            let _ = write!(extra, "  addr {a}");
        }
        if let Some(d) = &n.delegated_by {
            let _ = write!(extra, "  delegated by {d}");
        }
        let _ = writeln!(o, "{:<24} {}{extra}", n.name, state(n));
    }
    o
}

/// `name claim`.
pub fn claimed(n: &NameInfo) -> String {
    let mut o = format!("claimed {}: {}\n", n.name, state(n));
    if n.state == "taken" {
        o.push_str("another key holds this name; it frees when its owner releases it or stops renewing it\n");
    }
    o
}

/// `name resolve`.
pub fn resolved(r: &NameResolution) -> String {
    if !r.found {
        return format!("{}: no such name\n", r.name);
    }
    let mut o = String::new();
    let _ = writeln!(o, "name        {}", r.name);
    let _ = writeln!(o, "address     {}", r.address.as_deref().unwrap_or("-"));
    let _ = writeln!(o, "public key  {}", r.public_key.as_deref().unwrap_or("-"));
    let source = match (r.source.as_deref(), &r.authority) {
        (Some("delegated"), Some(a)) => format!("delegated by {a}"),
        (Some(s), _) => s.to_string(),
        (None, _) => "-".into(),
    };
    let _ = writeln!(o, "source      {source}");
    if let Some(e) = r.expires {
        let _ = writeln!(o, "expires     {e} (unix seconds)");
    }
    o
}

/// `name delegate`: the token alone on a line, so that scripts can take it.
pub fn delegated(d: &NameDelegation) -> String {
    format!("{}\n", d.token)
}

/// `name release`.
pub fn released(r: &NameReleasedInfo) -> String {
    format!("released {}\n", r.released)
}

/// `name publish`.
pub fn published(p: &NamePublished) -> String {
    format!(
        "published {} (key {}, seq {}, expires {})\n",
        p.name, p.public_key, p.seq, p.expires
    )
}
