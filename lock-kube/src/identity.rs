//! The identity a replica holds its Leases under, when the user names none.

/// A replica's identity, as Kubernetes controllers usually name theirs: the pod's name
/// from `POD_NAME` (set it from the downward API, `fieldRef: metadata.name`) when it is
/// set and not empty, else this host's name with a random suffix (`<hostname>-<8 hex
/// digits>`, as controller-runtime's `<hostname>_<uuid>`), so that two processes on one
/// host never share an identity. Each call without `POD_NAME` gives a new suffix: call
/// it once per process.
///
/// ```
/// let identity = lock_kube::default_identity();
/// assert!(!identity.is_empty());
/// ```
pub fn default_identity() -> String {
    match std::env::var("POD_NAME") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => {
            let host = hostname::get()
                .ok()
                .and_then(|name| name.into_string().ok())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "replica".to_owned());
            format!("{host}-{:08x}", fastrand::u32(..))
        }
    }
}
