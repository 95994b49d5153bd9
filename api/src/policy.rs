//! What `policy show|reload|explain|check` and `circle list|show|add|remove` answer.

use serde::{Deserialize, Serialize};

/// Answer to `policy_show` (and part of `status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The policy file (null: none configured, everything allowed).
    pub file: Option<String>,
    /// When the policy in force was loaded (Unix seconds).
    pub loaded_unix: Option<u64>,
    /// Circles defined.
    pub circles: usize,
    /// Rules.
    pub rules: usize,
    /// Tests the policy carries (all passed, or it would not be in force).
    pub tests: usize,
    /// The default verdict of each action.
    pub defaults: Vec<(String, String)>,
    /// Reloads since start.
    pub reloads: u64,
    /// Reloads refused (a bad file).
    pub reload_failures: u64,
    /// Why the last reload was refused, if it was (the policy in force is the previous one).
    pub last_error: Option<String>,
    /// What the policy did.
    pub counters: PolicyCounters,
}

/// One circle, for `circle_list` and `circle_show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircleInfo {
    /// Its name.
    pub name: String,
    /// The line it is defined on.
    pub line: u32,
    /// Members as written (keys, addresses, `circle:NAME`).
    pub members: Vec<String>,
    /// Everybody in it, nesting resolved.
    pub resolved: Vec<String>,
}

/// One line of `policy_explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainRow {
    /// `peer`, `traffic`, `root`, `outbound`.
    pub action: String,
    /// The packet judged (traffic and outbound).
    pub packet: Option<String>,
    /// `allow` or `deny`.
    pub verdict: String,
    /// The line of the deciding rule (null: the default decided).
    pub rule_line: Option<u32>,
    /// The reasoning.
    pub reason: String,
    /// The circles the identity is in.
    pub circles: Vec<String>,
}

/// What the circle policy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounters {
    /// Links refused at the handshake (`peer` rules).
    pub links_refused: u64,
    /// End-to-end sessions refused at their handshake (`traffic` rules).
    pub sessions_refused: u64,
    /// Packets from the overlay dropped (`traffic` rules).
    pub dropped_in: u64,
    /// Packets from this host dropped (`outbound` rules).
    pub dropped_out: u64,
    /// Links closed because a reload denied their peer.
    pub links_closed: u64,
    /// Sessions closed because a reload denied their remote.
    pub sessions_closed: u64,
    /// Flows tracked now.
    pub flows: usize,
    /// Flows not tracked because the table was full.
    pub flows_full: u64,
}

impl PolicyCounters {
    /// Every counter with its JSON key, in key order.
    pub fn entries(&self) -> [(&'static str, u64); 8] {
        [
            ("dropped_in", self.dropped_in),
            ("dropped_out", self.dropped_out),
            ("flows", self.flows as u64),
            ("flows_full", self.flows_full),
            ("links_closed", self.links_closed),
            ("links_refused", self.links_refused),
            ("sessions_closed", self.sessions_closed),
            ("sessions_refused", self.sessions_refused),
        ]
    }
}

/// The answer to `circle_add` and `circle_remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircleEdited {
    /// What was done, or `nothing to change: …`.
    pub done: String,
    /// The policy now in force (absent when nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyInfo>,
}

/// What `meshctl policy check FILE --json` prints (computed offline, without meshd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCheck {
    /// Whether the file is a valid policy whose tests pass.
    pub valid: bool,
    /// The summary, or every problem with its place.
    pub report: String,
}
