//! Fenced writes to any Kubernetes object.

use kube::{Api, Resource, ResourceExt, api::PostParams};
use lock_core::{Error, FencingToken};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Access, CONFLICT_RETRIES, kept_changing, kube_error, status};

/// The annotation that records, on a fenced object, the highest fencing token whose
/// write it has accepted.
pub const FENCING_TOKEN_ANNOTATION: &str = "locks.fencing/token";

/// Applies `change` to the object `name` only if `token` is not below the token recorded
/// on it, and records `token` in the same write.
///
/// The write is a replace guarded by the resourceVersion that was read, retried on
/// conflict, so the check and the write are atomic. A former holder, paused past its
/// lease while a newer holder wrote, gets [`Error::StaleToken`] and changes nothing.
/// Works with typed `Api<K>` and with `Api<DynamicObject>`.
///
/// An apiserver error is an [`Error::Backend`] whose source is the `kube::Error`
/// ([`api_status`](crate::api_status) reads its status: 404 if the object does not
/// exist, 403 if RBAC forbids `get` or `update` on it); after losing the race to other
/// writers several times in a row it is a transient error whose source is the last 409.
///
/// `change` may edit the object in place or replace it whole (`*object =
/// desired.clone()`): whatever it does, the write carries the resourceVersion that was
/// checked (never none, which most types accept as an unconditional update) and the
/// annotation with `token`, so the recorded token never goes down.
///
/// ```no_run
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::Api;
/// use lock_kube::fenced_update;
///
/// # async fn run(client: kube::Client, guard: lock_core::Guard) -> lock_core::Result<()> {
/// let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
/// fenced_update(&config_maps, "state", guard.token(), |map| {
///     map.data.get_or_insert_with(Default::default).insert("phase".into(), "done".into());
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn fenced_update<K>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
    mut change: impl FnMut(&mut K),
) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    // The resource's URL names its namespace.
    let access = Access {
        who: "a fenced writer",
        verbs: "get, update",
        resource: api.resource_url(),
    };
    let mut lost = 0;
    loop {
        let mut object = api.get(name).await.map_err(|error| {
            kube_error(
                error,
                &format!("read {name} for a fenced write"),
                &access,
                None,
            )
        })?;
        if let Some(current) = recorded_token(&object, name)?
            && token < current
        {
            return Err(Error::StaleToken {
                presented: token,
                current,
            });
        }
        let Some(checked) = object.meta().resource_version.clone() else {
            return Err(Error::Unsupported {
                reason: format!(
                    "{name} was read without a resourceVersion: a fenced write must be conditional on it"
                ),
            });
        };
        change(&mut object);
        // Through JSON and back, so that metadata the change put elsewhere (a
        // `DynamicObject`'s flattened data) is the metadata that is sent, then fixed.
        let mut object: K = serde_json::to_value(&object)
            .and_then(serde_json::from_value)
            .map_err(|error| Error::InvalidOption {
                reason: format!("the fenced change made {name} unserializable: {error}"),
            })?;
        object.meta_mut().resource_version = Some(checked);
        object
            .annotations_mut()
            .insert(FENCING_TOKEN_ANNOTATION.to_owned(), token.to_string());
        match api.replace(name, &PostParams::default(), &object).await {
            Ok(written) => return Ok(written),
            // Another writer wrote since our read: read and check again.
            Err(error) if status(&error) == Some(409) => {
                lost += 1;
                if lost == CONFLICT_RETRIES {
                    return Err(kept_changing(
                        &format!("make the fenced write to {name}"),
                        error,
                    ));
                }
            }
            Err(error) => {
                return Err(kube_error(
                    error,
                    &format!("make the fenced write to {name}"),
                    &access,
                    None,
                ));
            }
        }
    }
}

/// The token recorded on `object`, if any; a value that is not a token is reported.
pub fn recorded_token<K: Resource>(object: &K, name: &str) -> Result<Option<FencingToken>, Error> {
    let Some(value) = object.annotations().get(FENCING_TOKEN_ANNOTATION) else {
        return Ok(None);
    };
    value
        .parse::<u64>()
        .map(|token| Some(FencingToken::new(token)))
        .map_err(|_| Error::Malformed {
            name: name.to_owned(),
            reason: format!(
                "annotation {FENCING_TOKEN_ANNOTATION} is {value:?}, not a fencing token"
            ),
        })
}
