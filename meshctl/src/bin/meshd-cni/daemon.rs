//! Talking to meshd over its admin socket: one request, one reply, with a deadline.

use crate::*;

/// Why a request to meshd failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// meshd is not running (no socket, connection refused) or did not answer in time.
    Unavailable(String),
    /// meshd answered with an error (its message).
    Refused(String),
    /// Anything else: no permission, a broken answer.
    Failed(String),
}

/// Sends one request to meshd and returns the `data` of its successful reply.
pub(crate) fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<Value, CallError> {
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => CallError::Unavailable(format!(
            "meshd is not running (nothing answers on {}): {e}",
            socket.display()
        )),
        ErrorKind::PermissionDenied => CallError::Failed(format!(
            "permission denied on {}: the plugin must run as root or as a member of meshd's \
             admin_group",
            socket.display()
        )),
        _ => CallError::Failed(format!("cannot connect to {}: {e}", socket.display())),
    })?;
    let io = |what: &str, e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => CallError::Unavailable(format!(
            "meshd did not answer within {} s on {}",
            timeout.as_secs(),
            socket.display()
        )),
        _ => CallError::Failed(format!("{what} {}: {e}", socket.display())),
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| io("cannot set a timeout on", e))?;
    let mut line =
        serde_json::to_vec(req).map_err(|e| CallError::Failed(format!("cannot encode: {e}")))?;
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .map_err(|e| io("cannot send the request to", e))?;
    let mut answer = String::new();
    BufReader::new((&stream).take(MAX_ANSWER))
        .read_line(&mut answer)
        .map_err(|e| io("cannot read the answer from", e))?;
    if answer.is_empty() {
        return Err(CallError::Failed(format!(
            "meshd closed the connection on {} without answering",
            socket.display()
        )));
    }
    let reply: Reply = serde_json::from_str(&answer).map_err(|e| {
        CallError::Failed(format!(
            "meshd sent an answer the plugin does not understand: {e}"
        ))
    })?;
    reply.into_result().map_err(|e| {
        CallError::Refused(match e.hint {
            Some(hint) => format!("{} ({hint})", e.message),
            None => e.message,
        })
    })
}

/// The CNI error for a failed request meant to `what`.
pub(crate) fn daemon_error(what: &str, e: CallError) -> CniError {
    match e {
        CallError::Unavailable(d) => CniError::new(
            code::TRY_AGAIN,
            format!("meshd is not available to {what}"),
            d,
        ),
        CallError::Refused(m) => {
            CniError::new(code::REFUSED, format!("meshd refused to {what}"), m)
        }
        CallError::Failed(d) => {
            CniError::new(code::DAEMON, format!("cannot ask meshd to {what}"), d)
        }
    }
}

/// What meshd knows of one attachment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    /// The znet is not in force on this node.
    NoZnet,
    /// The znet has no attachment of this container on this interface.
    Absent,
    /// The attachment.
    Found(Box<Attachment>),
}

/// The part of an [`api::ZnetInfo`] the plugin reads: a partial view, so that an answer with
/// fields this plugin does not know (a newer meshd) still works. The field names are the
/// `api` crate's, pinned by its `json_keys` test.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ZnetView {
    /// The znet's name.
    pub(crate) name: Option<String>,
    /// Its attachments on this node.
    pub(crate) attachments: Option<Vec<Attachment>>,
}

/// The names in a `znet_list` answer.
pub(crate) fn znet_names(data: Value) -> Result<Vec<String>, CallError> {
    let text = data.to_string();
    serde_json::from_value::<Vec<ZnetView>>(data)
        .ok()
        .and_then(|rows| rows.into_iter().map(|r| r.name).collect::<Option<Vec<_>>>())
        .ok_or_else(|| CallError::Failed(format!("unexpected znet_list answer: {text}")))
}

/// Finds the attachment `(container_id, ifname)` of `znet`.
pub(crate) fn find_attachment(
    socket: &Path,
    znet: &str,
    container_id: &str,
    ifname: &str,
) -> Result<Lookup, CallError> {
    let show = Request::ZnetShow {
        name: znet.to_string(),
    };
    let data = match call(socket, &show, TIMEOUT) {
        Ok(d) => d,
        Err(CallError::Refused(msg)) => {
            // Most likely an unknown znet; the list tells without reading the message.
            let names = znet_names(call(socket, &Request::ZnetList, TIMEOUT)?)?;
            return if names.iter().any(|n| n == znet) {
                Err(CallError::Refused(msg))
            } else {
                Ok(Lookup::NoZnet)
            };
        }
        Err(e) => return Err(e),
    };
    // Only `attachments` of the `ZnetInfo` is needed; the rest is left unparsed.
    let text = data.to_string();
    let attachments = serde_json::from_value::<ZnetView>(data)
        .map_err(|e| CallError::Failed(format!("unexpected znet_show answer: {e}")))?
        .attachments
        .ok_or_else(|| CallError::Failed(format!("znet_show answered no attachments: {text}")))?;
    Ok(attachments
        .into_iter()
        .find(|a| a.container_id.as_deref() == Some(container_id) && a.ifname == ifname)
        .map_or(Lookup::Absent, |a| Lookup::Found(Box::new(a))))
}
