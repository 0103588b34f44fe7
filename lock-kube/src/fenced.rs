//! Fenced writes to any Kubernetes object.

use kube::{Api, Resource, ResourceExt, api::PostParams};
use lock_core::{Error, FencingToken};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{is_transient, status};

/// The annotation that records, on a fenced object, the highest fencing token whose
/// write it has accepted.
pub const FENCING_TOKEN_ANNOTATION: &str = "locks.fencing/token";

/// How many times a fenced write is retried after losing a race with another writer.
const CONFLICT_RETRIES: usize = 5;

/// Applies `change` to the object `name` only if `token` is not below the token recorded
/// on it, and records `token` in the same write.
///
/// The write is a replace guarded by the resourceVersion that was read, retried on
/// conflict, so the check and the write are atomic. A former holder, paused past its
/// lease while a newer holder wrote, gets [`Error::StaleToken`] and changes nothing.
/// Works with typed `Api<K>` and with `Api<DynamicObject>`.
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
    for _ in 0..CONFLICT_RETRIES {
        let mut object = api
            .get(name)
            .await
            .map_err(|error| write_error(error, name))?;
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
            Err(error) if status(&error) == Some(409) => continue,
            Err(error) => return Err(write_error(error, name)),
        }
    }
    Err(Error::transient(format!(
        "fenced write to {name} lost the race with other writers {CONFLICT_RETRIES} times"
    )))
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

fn write_error(error: kube::Error, name: &str) -> Error {
    let message = format!("fenced write to {name}: {error}");
    if is_transient(&error) {
        Error::transient(message)
    } else {
        Error::permanent(message)
    }
}
