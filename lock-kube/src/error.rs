//! What the apiserver's answers mean for a lock.

use lock_core::Error;

/// The RBAC verbs a controller needs on `leases` (coordination.k8s.io) in its namespace.
pub const REQUIRED_VERBS: &str = "get, list, watch, create, update";

/// The HTTP status of an apiserver error, if the apiserver answered.
pub(crate) fn status(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Whether trying again later may help: the apiserver was busy or failing (429, 5xx),
/// or did not answer at all (connection refused or reset, timeouts), but not an answer
/// that cannot be read.
pub(crate) fn is_transient(error: &kube::Error) -> bool {
    match status(error) {
        Some(code) => code == 429 || code >= 500,
        None => !matches!(error, kube::Error::SerdeError(_)),
    }
}

/// Turns a kube error on a Lease into a lock error that says what to do about it.
pub(crate) fn lock_error(error: kube::Error, namespace: &str, what: &str) -> Error {
    let message = match status(&error) {
        Some(403) => format!(
            "forbidden to {what} in namespace {namespace:?}: the controller needs the verbs \
             {REQUIRED_VERBS} on leases.coordination.k8s.io there ({error})"
        ),
        Some(404) => format!("cannot {what}: namespace {namespace:?} does not exist ({error})"),
        Some(401) => format!("cannot {what}: not authenticated ({error})"),
        Some(_) if is_transient(&error) => {
            format!("cannot {what} now, the apiserver is busy or failing ({error})")
        }
        Some(_) => format!("cannot {what}: {error}"),
        None if is_transient(&error) => {
            format!("cannot {what}: the apiserver is unreachable ({error})")
        }
        None => format!("cannot {what}: the apiserver's answer is not a Lease ({error})"),
    };
    if is_transient(&error) {
        Error::transient(message)
    } else {
        Error::permanent(message)
    }
}
