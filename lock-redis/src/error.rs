//! What Redis's answers mean for a lock.

use lock_core::Error;
use redis::RedisError;

/// Turns a Redis error on lock (or key) `name` into a lock error that says what failed.
pub(crate) fn lock_error(error: RedisError, name: &str, what: &str) -> Error {
    match error.code() {
        Some("WRONGTYPE") => {
            return Error::Malformed {
                name: what.to_owned(),
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
        Some("NOPERM" | "NOSCRIPT") => {
            return Error::permanent(format!(
                "cannot {what}: this Redis user may not run scripts (EVAL, EVALSHA and SCRIPT LOAD are needed) ({error})"
            ));
        }
        Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY") => {
            return Error::transient(format!("cannot {what} now: {error}"));
        }
        _ => {}
    }
    let message = format!("cannot {what}: {error}");
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        Error::transient(message)
    } else {
        Error::permanent(message)
    }
}
