//! What Redis's answers mean for a lock: which errors are transient, and what to say.

use lock_core::Error;
use redis::RedisError;

/// Turns a Redis error on lock (or key) `name` into a lock error that keeps it as its
/// source: records not written by lock-redis are `Malformed`, everything else goes
/// through [`Error::backend`].
pub(crate) fn lock_error(error: RedisError, name: &str, what: &str) -> Error {
    let (transient, hint) = match error.code() {
        Some("WRONGTYPE") => {
            return Error::Malformed {
                name: name.to_owned(),
                reason: format!(
                    "a key at the lock's location has the wrong type, not written by lock-redis ({error})"
                ),
            };
        }
        Some("LOCK_MALFORMED") => {
            return Error::Malformed {
                name: name.to_owned(),
                reason: error.detail().unwrap_or_default().to_owned(),
            };
        }
        Some("NOPERM" | "NOSCRIPT") => (
            false,
            ": this Redis user may not run scripts (EVAL, EVALSHA and SCRIPT LOAD are needed)",
        ),
        Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY") => {
            (true, " now")
        }
        _ => (
            error.is_io_error()
                || error.is_timeout()
                || error.is_connection_dropped()
                || error.is_connection_refusal(),
            "",
        ),
    };
    Error::backend(format!("cannot {what}{hint}"), transient, error)
}
