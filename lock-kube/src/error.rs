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

/// Turns a kube error on a Lease into a lock error that says what to do about it.
pub(crate) fn lock_error(error: kube::Error, namespace: &str, what: &str) -> Error {
    match status(&error) {
        Some(403) => Error::permanent(format!(
            "forbidden to {what} in namespace {namespace:?}: the controller needs the verbs \
             {REQUIRED_VERBS} on leases.coordination.k8s.io there ({error})"
        )),
        Some(404) => Error::permanent(format!(
            "cannot {what}: namespace {namespace:?} does not exist ({error})"
        )),
        Some(401) => Error::permanent(format!("cannot {what}: not authenticated ({error})")),
        Some(code) if code == 429 || code >= 500 => Error::transient(format!(
            "cannot {what} now, the apiserver is busy or failing ({error})"
        )),
        Some(_) => Error::permanent(format!("cannot {what}: {error}")),
        // No answer: connection refused or reset, timeouts, TLS, decoding.
        None => match error {
            kube::Error::SerdeError(_) => Error::permanent(format!(
                "cannot {what}: the apiserver's answer is not a Lease ({error})"
            )),
            _ => Error::transient(format!(
                "cannot {what}: the apiserver is unreachable ({error})"
            )),
        },
    }
}
