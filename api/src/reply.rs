//! The answer envelope: `{"ok":true,"data":…}` or `{"ok":false,"error":{kind,message,hint}}`.
//!
//! `data` travels as JSON because one envelope answers every request; each request's data is
//! one of this crate's structs, built by meshd with [`Reply::ok`] and read back by a client
//! with [`Reply::decode`].

use crate::error::{Error, ErrorKind};
use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// The answer to a [`crate::Request`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reply {
    /// True on success.
    pub ok: bool,
    /// On failure, why.
    #[serde(default)]
    pub error: Option<Error>,
    /// On success, the result (a [`crate::Status`], a list of [`crate::PeerInfo`], …).
    #[serde(default)]
    pub data: serde_json::Value,
}

/// `ok` and `data` on success, `ok` and `error` on failure.
impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Reply", 2)?;
        st.serialize_field("ok", &self.ok)?;
        match (&self.error, self.ok) {
            (Some(e), _) => st.serialize_field("error", e)?,
            (None, true) => st.serialize_field("data", &self.data)?,
            (None, false) => st.serialize_field(
                "error",
                &Error::internal("meshd refused the request without saying why"),
            )?,
        }
        st.end()
    }
}

impl Reply {
    /// A success carrying `data`.
    pub fn ok(data: impl Serialize) -> Reply {
        match serde_json::to_value(data) {
            Ok(data) => Reply {
                ok: true,
                error: None,
                data,
            },
            Err(e) => Reply::error(Error::internal(format!(
                "meshd could not encode its answer: {e}"
            ))),
        }
    }

    /// A failure from a plain message: the request could not be done as asked
    /// ([`ErrorKind::BadRequest`]). Prefer [`Reply::error`] with the right kind and a hint.
    pub fn err(message: impl Into<String>) -> Reply {
        Reply::error(Error::bad_request(message))
    }

    /// A failure.
    pub fn error(error: Error) -> Reply {
        Reply {
            ok: false,
            error: Some(error),
            data: serde_json::Value::Null,
        }
    }

    /// A success's data, or the error.
    pub fn into_result(self) -> Result<serde_json::Value, Error> {
        match (self.ok, self.error) {
            (true, _) => Ok(self.data),
            (false, Some(e)) => Err(e),
            (false, None) => Err(Error::internal(
                "meshd refused the request without saying why",
            )),
        }
    }

    /// A success's data read as `T`, or the error. Data that is not a `T` is an
    /// [`ErrorKind::Internal`] error naming the mismatch (a client and a meshd of different
    /// versions).
    pub fn decode<T: DeserializeOwned>(self) -> Result<T, Error> {
        let data = self.into_result()?;
        serde_json::from_value(data).map_err(|e| {
            Error::internal(format!(
                "meshd sent an answer this client does not understand: {e}"
            ))
            .with_hint("meshctl and meshd should come from the same release")
        })
    }
}

impl From<Error> for Reply {
    fn from(e: Error) -> Reply {
        Reply::error(e)
    }
}

impl<T: Serialize> From<Result<T, Error>> for Reply {
    fn from(r: Result<T, Error>) -> Reply {
        match r {
            Ok(v) => Reply::ok(v),
            Err(e) => Reply::error(e),
        }
    }
}

/// Used by tests and clients that match on kinds.
impl Reply {
    /// The kind of a failure (`None` on success).
    pub fn kind(&self) -> Option<ErrorKind> {
        self.error.as_ref().map(|e| e.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shapes() {
        let ok = serde_json::to_value(Reply::ok(json!({"a": 1}))).unwrap_or_default();
        assert_eq!(ok, json!({"ok": true, "data": {"a": 1}}));
        let err = Reply::error(Error::not_found("no circle x").with_hint("meshctl circle list"));
        let v = serde_json::to_value(&err).unwrap_or_default();
        assert_eq!(
            v,
            json!({"ok": false, "error": {"kind": "not_found", "message": "no circle x",
                   "hint": "meshctl circle list"}})
        );
        let back: Reply = serde_json::from_value(v).unwrap_or_else(|_| Reply::ok(()));
        assert_eq!(back, err);
        assert_eq!(
            serde_json::to_value(Reply::err("bad")).unwrap_or_default()["error"]["kind"],
            "bad_request"
        );
    }

    #[test]
    fn decode_reports_kinds_and_mismatches() {
        let e = Reply::err("x").decode::<u64>();
        assert_eq!(e.map_err(|e| e.kind), Err(ErrorKind::BadRequest));
        let e = Reply::ok("text").decode::<u64>();
        assert_eq!(e.map_err(|e| e.kind), Err(ErrorKind::Internal));
        assert_eq!(Reply::ok(7u64).decode::<u64>(), Ok(7));
        let newer: Reply =
            serde_json::from_str(r#"{"ok":false,"error":{"kind":"quota_exceeded","message":"m"}}"#)
                .unwrap_or_else(|_| Reply::ok(()));
        assert_eq!(newer.kind(), Some(ErrorKind::Internal));
        assert_eq!(newer.error.and_then(|e| e.hint), None);
    }
}
