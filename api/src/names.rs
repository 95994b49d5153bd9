//! What the `name` commands answer: claims, resolutions, delegations, published records, and
//! the names part of `status`.

use serde::{Deserialize, Serialize};

/// One name this node claims (`name list`, `name claim`, and `self`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameInfo {
    /// The name (one DNS label, lowercase).
    pub name: String,
    /// `pending` (not confirmed yet), `held` (stored by `storers` nodes), `taken` (another key
    /// holds it: `taken_by`), `no_storers` (no storing node answered; retried).
    pub state: String,
    /// How many storing nodes hold our record (`held`).
    #[serde(default)]
    pub storers: Option<usize>,
    /// The key that holds the name (`taken`).
    #[serde(default)]
    pub taken_by: Option<String>,
    /// The service address the record carries, if any.
    #[serde(default)]
    pub addr: Option<String>,
    /// The authority whose delegation the record carries, if any.
    #[serde(default)]
    pub delegated_by: Option<String>,
}

/// Answer to `name resolve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameResolution {
    /// The name asked for.
    pub name: String,
    /// Whether it exists (the other fields are empty if not).
    pub found: bool,
    /// The owner's key.
    #[serde(default)]
    pub public_key: Option<String>,
    /// The address the DNS responder answers: the service address, else the owner's node
    /// address.
    #[serde(default)]
    pub address: Option<String>,
    /// Why this key: `pinned` (this node's policy), `delegated` (a trusted authority signed
    /// it), `claim` (the first valid claim the storing nodes saw).
    #[serde(default)]
    pub source: Option<String>,
    /// The authority, for `delegated`.
    #[serde(default)]
    pub authority: Option<String>,
    /// The record's expiry (unix seconds), if a record was found.
    #[serde(default)]
    pub expires: Option<u64>,
}

/// Answer to `name delegate`: a token the delegate passes to `name claim --delegation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameDelegation {
    /// The name.
    pub name: String,
    /// The key it is delegated to.
    pub public_key: String,
    /// The authority that signed it (this node).
    pub authority: String,
    /// Until when (unix seconds).
    pub expires: u64,
    /// The delegation, as text.
    pub token: String,
}

/// Answer to `name release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameReleasedInfo {
    /// The name, which this node no longer claims (an expired record went out, so it frees
    /// at once at the storing nodes).
    pub released: String,
}

/// Answer to `name publish`: a record signed elsewhere, sent to its storing nodes as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamePublished {
    /// The record's name.
    pub name: String,
    /// The key that signed it.
    pub public_key: String,
    /// Its sequence number.
    pub seq: u64,
    /// Its expiry (unix seconds).
    pub expires: u64,
}

/// The names part of `status`: records this node stores for others, and what it dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameCounters {
    /// Name records this node stores now (it is among the nodes closest to their names).
    pub stored: u64,
    /// Claims refused because another key holds the name.
    pub taken: u64,
    /// Records refused because this node's name table (or the owner's share) was full.
    pub full: u64,
    /// Records dropped: bad signature.
    pub bad_signature: u64,
    /// Records dropped: a sequence number not newer than the one stored.
    pub old_sequence: u64,
    /// Records dropped: past their expiry (or expiring too far ahead).
    pub expired: u64,
    /// Name lookups this node started.
    pub lookups: u64,
    /// Names this node claims.
    pub claims: u64,
}
