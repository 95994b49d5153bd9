//! Status codes, the per-thread last error message, and the guard every entry point runs in:
//! a panic becomes [`PlStatus::Panic`] with its message, never an unwind into C.

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What every function returns. `PL_OK` is 0; on any other value, `pl_last_error` gives a
/// message saying what went wrong and what to do.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlStatus {
    /// Success.
    PlOk = 0,
    /// A required pointer argument was NULL.
    PlErrNullPointer = 1,
    /// An argument is malformed: not UTF-8, invalid JSON, an invalid configuration, a packet
    /// that is not IPv6 or exceeds the MTU, an invalid peer URI.
    PlErrInvalidArgument = 2,
    /// The handle names no node (never made, or already freed).
    PlErrInvalidHandle = 3,
    /// The node is running already.
    PlErrAlreadyRunning = 4,
    /// The node is not running (never started, stopped, or it stopped by itself: see the
    /// `stopped` event).
    PlErrNotRunning = 5,
    /// The TUN descriptor is closed, not a TUN device, or opened with flags the node cannot use.
    PlErrBadDescriptor = 6,
    /// The node could not start (a listen port in use, an unreadable key file, ...).
    PlErrStartFailed = 7,
    /// Packet mode: the node's inbound queue is full and the packet was dropped. Not fatal.
    PlErrQueueFull = 8,
    /// The node did not answer in time.
    PlErrTimeout = 9,
    /// A call that waits for the node was made from the node's own thread (inside a callback).
    PlErrWrongThread = 10,
    /// The node refused the request (the message says why: a peer already added, ...).
    PlErrRefused = 11,
    /// A file or system call failed.
    PlErrIo = 12,
    /// A bug: the library panicked. The message has the panic's text; the node may be stopped.
    PlErrPanic = 13,
}

/// A failed call: its status and message.
#[derive(Debug)]
pub struct Error {
    /// The code returned.
    pub status: PlStatus,
    /// The message `pl_last_error` gives.
    pub message: String,
}

impl Error {
    /// An error with this status and message.
    pub fn new(status: PlStatus, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    // A NUL inside the message would cut it; such bytes are replaced.
    let clean = message.replace('\0', "\u{FFFD}");
    let c = CString::new(clean).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

/// Copies this thread's last error message (NUL-terminated, truncated to fit) into `buf`;
/// returns its full length without the NUL. `buf` may be NULL (or `len` 0) to ask the length.
pub(crate) fn copy_last_error(buf: *mut u8, len: usize) -> usize {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        let bytes = e.as_ref().map_or(&b""[..], |c| c.as_bytes());
        if !buf.is_null() && len > 0 {
            let n = bytes.len().min(len - 1);
            // SAFETY: the caller gives `buf` with room for `len` bytes (the documented
            // contract of pl_last_error); n + 1 <= len.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, n);
                *buf.add(n) = 0;
            }
        }
        bytes.len()
    })
}

/// Runs one entry point: catches panics, records the message of a failure for
/// `pl_last_error`, and returns the status.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Error>) -> PlStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => PlStatus::PlOk,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(panic) => {
            set_last_error(&panic_message(panic.as_ref()));
            PlStatus::PlErrPanic
        }
    }
}

/// What a caught panic says, as the message an app sees.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error (a bug in Planetary LAN, please report it): {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_with_their_message() {
        let s = guard(|| panic!("boom"));
        assert_eq!(s, PlStatus::PlErrPanic);
        let mut buf = [0u8; 128];
        let n = copy_last_error(buf.as_mut_ptr(), buf.len());
        let msg = std::str::from_utf8(&buf[..n]).expect("utf-8");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn messages_are_truncated_to_the_buffer() {
        let s = guard(|| Err(Error::new(PlStatus::PlErrIo, "abcdef")));
        assert_eq!(s, PlStatus::PlErrIo);
        let mut buf = [0xffu8; 4];
        assert_eq!(copy_last_error(buf.as_mut_ptr(), buf.len()), 6);
        assert_eq!(&buf, b"abc\0");
        assert_eq!(copy_last_error(std::ptr::null_mut(), 0), 6);
    }
}
