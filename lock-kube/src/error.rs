//! What the apiserver's answers mean for a lock: whether trying again may help, and what
//! to tell the caller about it. Every kube client error becomes a
//! [`lock_core::Error::Backend`] made by [`Error::backend`], whose source is the
//! `kube::Error` itself; [`api_status`] reads the apiserver's status back.

use lock_core::Error;

/// The RBAC verbs a controller needs on `leases` (coordination.k8s.io) in its namespace.
pub const REQUIRED_VERBS: &str = "get, list, watch, create, update";

/// How many lost races in a row (a 409 because another writer wrote first, or a 404
/// because it deleted the object) a compare-and-set accepts before it reports a transient
/// error: the Lease writes' one loop and fenced writes alike.
pub(crate) const CONFLICT_RETRIES: usize = 5;

/// The HTTP status of the apiserver's answer behind a lock-kube error, if it was an
/// apiserver error: e.g. 403 (RBAC forbids the request), 404 (the namespace or object
/// does not exist), 409 (other writers kept changing the object between our read and our
/// write, more times in a row than lock-kube retries), 429 or 5xx (busy or failing).
/// `None` for errors that are not the apiserver's answer: no answer at all, or an error
/// lock-kube found by itself ([`Error::Held`], [`Error::StaleToken`],
/// [`Error::Malformed`]...).
///
/// Every apiserver error lock-kube reports (from a [`KubeBackend`](crate::KubeBackend),
/// [`fenced_update`](crate::fenced_update) or a [`Candidate`](crate::Candidate)) is an
/// [`Error::Backend`] whose [`source`](std::error::Error::source) is the `kube::Error`
/// itself (also [`Error::client_error`]`::<kube::Error>()`), so the whole `Status`
/// (reason, details) is there too; an error lock-kube makes after repeated conflicts keeps
/// the last 409 as its source.
///
/// ```
/// use lock_core::Error;
/// use lock_kube::api_status;
///
/// fn advice(error: &Error) -> &'static str {
///     match api_status(error) {
///         Some(403) => "grant the verbs in lock_kube::REQUIRED_VERBS",
///         Some(404) => "create the namespace",
///         Some(409) => "others keep writing it: try again later",
///         _ if error.is_transient() => "try again",
///         _ => "give up",
///     }
/// }
///
/// let conflict = kube::core::Status { code: 409, reason: "Conflict".into(), ..Default::default() };
/// let error = Error::backend("cannot take lease a", true, kube::Error::Api(Box::new(conflict)));
/// assert_eq!(api_status(&error), Some(409));
/// assert_eq!(advice(&error), "others keep writing it: try again later");
/// assert_eq!(api_status(&Error::transient("no answer")), None);
/// ```
pub fn api_status(error: &Error) -> Option<u16> {
    status(error.client_error::<kube::Error>()?)
}

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

/// Who needs which RBAC verbs on which resource: what a 403 tells the caller to grant.
pub(crate) struct Access<'a> {
    /// Who makes the requests, e.g. "the controller".
    pub who: &'a str,
    /// The verbs needed, e.g. [`REQUIRED_VERBS`].
    pub verbs: &'a str,
    /// The resource, e.g. "leases.coordination.k8s.io".
    pub resource: &'a str,
}

/// What a [`KubeBackend`](crate::KubeBackend) needs on Leases.
pub(crate) const LEASES: Access<'static> = Access {
    who: "the controller",
    verbs: REQUIRED_VERBS,
    resource: "leases.coordination.k8s.io",
};

/// Turns the kube error of a request to `what` into a lock error, transient or not by
/// [`is_transient`], whose context says what failed and what to do about it (for a 403
/// the verbs `access` needs, in `namespace` unless its resource names it; for a 404 what
/// does not exist), with the kube error itself as its source.
pub(crate) fn kube_error(
    error: kube::Error,
    what: &str,
    access: &Access<'_>,
    namespace: Option<&str>,
) -> Error {
    let transient = is_transient(&error);
    let context = match &error {
        kube::Error::Api(status) => match status.code {
            403 => {
                let Access {
                    who,
                    verbs,
                    resource,
                } = access;
                let needs = format!("{who} needs the verbs {verbs} on {resource}");
                match namespace {
                    Some(namespace) => {
                        format!("forbidden to {what} in namespace {namespace:?}: {needs} there")
                    }
                    None => format!("forbidden to {what}: {needs}"),
                }
            }
            404 => match status
                .details
                .as_ref()
                .filter(|details| !details.name.is_empty())
            {
                Some(details) if details.kind == "namespaces" => {
                    format!("cannot {what}: namespace {:?} does not exist", details.name)
                }
                Some(details) => {
                    format!(
                        "cannot {what}: {} {:?} does not exist",
                        details.kind, details.name
                    )
                }
                None => format!("cannot {what}: not found"),
            },
            401 => format!("cannot {what}: not authenticated"),
            409 => format!("cannot {what}: another writer changed it first"),
            _ if transient => format!("cannot {what} now, the apiserver is busy or failing"),
            _ => format!("cannot {what}"),
        },
        kube::Error::SerdeError(_) => {
            format!("cannot {what}: the apiserver's answer cannot be read")
        }
        _ => format!("cannot {what}: the apiserver is unreachable"),
    };
    Error::backend(context, transient, error)
}

/// The transient error of a compare-and-set on `what` that lost the race
/// [`CONFLICT_RETRIES`] times in a row; `last` (the last 409 or 404) is its source.
pub(crate) fn kept_changing(what: &str, last: kube::Error) -> Error {
    Error::backend(
        format!(
            "could not {what}: other writers kept changing it ({CONFLICT_RETRIES} lost races in a row)"
        ),
        true,
        last,
    )
}
