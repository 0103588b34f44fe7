//! What etcd's answers mean for a lock: which errors are transient.

use etcd_client::Error as EtcdError;
use lock_core::Error;

/// gRPC status codes after which trying again may succeed: Cancelled 1,
/// DeadlineExceeded 4, ResourceExhausted 8, Aborted 10, Unavailable 14.
fn transient_code(code: i32) -> bool {
    matches!(code, 1 | 4 | 8 | 10 | 14)
}

/// Turns an etcd client error into a lock error that says what failed and keeps the
/// client error as its source.
pub(crate) fn lock_error(error: EtcdError, what: &str) -> Error {
    let transient = match &error {
        EtcdError::GRpcStatus(status) => transient_code(status.code() as i32),
        EtcdError::TransportError(_)
        | EtcdError::IoError(_)
        | EtcdError::WatchError(_)
        | EtcdError::LeaseKeepAliveError(_) => true,
        _ => false,
    };
    Error::backend(format!("cannot {what}"), transient, error)
}
