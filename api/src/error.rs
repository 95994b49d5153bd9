//! A refused request: who is at fault ([`ErrorKind`]), what went wrong (`message`) and what to
//! do about it (`hint`).
//!
//! The kinds follow rustls's habit of error families: a script can tell "you asked for
//! something that does not exist" from "meshd is busy, try again" from "meshd failed" without
//! reading the message, and the message stays free to improve.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Who is at fault, and so what a client can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or names something invalid (a bad URI, key, address, packet,
    /// manifest, policy edit): the caller must change it.
    BadRequest,
    /// The request names something that does not exist here (a circle, a znet, a peer, an
    /// attachment).
    NotFound,
    /// The request conflicts with the current state (a peer added twice, a znet that exists).
    Conflict,
    /// The request is understood but refused (by the policy, by permissions).
    Denied,
    /// meshd cannot do it now (shutting down, busy, a feature that is off): try again later.
    Unavailable,
    /// meshd failed doing it (a file or system call failed, a bug). Unknown kinds sent by a
    /// newer meshd are read as this one.
    #[serde(other)]
    Internal,
}

impl ErrorKind {
    /// The name on the wire (`bad_request`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Denied => "denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// Who is at fault.
    pub kind: ErrorKind,
    /// What went wrong, for a person: one line, or a located report (a policy file's errors).
    pub message: String,
    /// What to do about it, if meshd knows (`meshctl circle list shows them`).
    #[serde(default)]
    pub hint: Option<String>,
}

impl Error {
    /// An error of `kind` saying `message`, without a hint.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// [`ErrorKind::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadRequest, message)
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict, message)
    }

    /// [`ErrorKind::Denied`].
    pub fn denied(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Denied, message)
    }

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// The same error with `hint` saying what to do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }
}

/// The message only; the hint is for the client to show on its own line.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
