//! CNI error objects and their codes.

use crate::*;

/// Well-known and plugin error codes (see the crate documentation).
pub(crate) mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Invalid environment variable.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Cannot decode the input.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// Plugin not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// meshd refused the request.
    pub const REFUSED: u32 = 100;
    /// Cannot talk to meshd.
    pub const DAEMON: u32 = 101;
    /// CHECK: the attachment is missing or not as expected.
    pub const CHECK_FAILED: u32 = 102;
    /// A bug in the plugin.
    pub const INTERNAL: u32 = 110;
}

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CniError {
    pub(crate) code: u32,
    pub(crate) msg: String,
    pub(crate) details: String,
}

impl CniError {
    pub(crate) fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error object, for `version`.
    pub(crate) fn to_json(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}
