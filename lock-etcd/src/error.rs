//! What etcd's answers mean for a lock.

use etcd_client::Error as EtcdError;
use lock_core::Error;
use tonic_code::transient_code;

mod tonic_code {
    /// gRPC status codes after which trying again may succeed.
    pub(super) fn transient_code(code: i32) -> bool {
        // Cancelled 1, DeadlineExceeded 4, ResourceExhausted 8, Aborted 10, Unavailable 14.
        matches!(code, 1 | 4 | 8 | 10 | 14)
    }
}

/// Turns an etcd client error into a lock error that says what failed.
pub(crate) fn lock_error(error: EtcdError, what: &str) -> Error {
    let transient = match &error {
        EtcdError::GRpcStatus(status) => transient_code(status.code() as i32),
        EtcdError::TransportError(_) | EtcdError::IoError(_) | EtcdError::WatchError(_) => true,
        EtcdError::LeaseKeepAliveError(_) => true,
        _ => false,
    };
    let message = format!("cannot {what}: {error}");
    if transient {
        Error::transient(message)
    } else {
        Error::permanent(message)
    }
}
