//! Fenced writes to any Kubernetes object: update, server-side apply, status, patch,
//! delete, and create.
//!
//! One check decides whether a token is stale for an object ([`check`]), and one loop
//! ([`fenced`]) reads the object, checks, sends the write conditional on the
//! resourceVersion it checked, and, when another writer wrote in between (409), reads and
//! checks again. Whatever the kind of write, a newer writer changes the resourceVersion,
//! so a stale writer's write conflicts and, read again, is stale.

use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};
use lock_core::{Error, FencingToken};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

use crate::error::{Access, CONFLICT_RETRIES, kept_changing, kube_error, status};

/// The annotation that records, on a fenced object, the highest fencing token whose
/// write it has accepted.
pub const FENCING_TOKEN_ANNOTATION: &str = "locks.fencing/token";

/// The body of a [`fenced_patch`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FencedPatch {
    /// A JSON merge patch (RFC 7386): an object.
    Merge(Value),
    /// A JSON patch (RFC 6902): an array of operations.
    Json(Value),
}

/// The object types fenced writes work on: typed resources and `DynamicObject`.
pub trait Fenceable: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug {}

impl<K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug> Fenceable for K {}

/// Applies `change` to the object `name` only if `token` is not below the token recorded
/// on it, and records `token` in the same write: a GET, then a PUT conditional on the
/// resourceVersion read.
///
/// A former holder, paused past its lease while a newer holder wrote, gets
/// [`Error::StaleToken`] and changes nothing. `change` may edit the object in place or
/// replace it whole (`*object = desired.clone()`): whatever it does, the write carries
/// the resourceVersion that was checked (never none, which most types accept as an
/// unconditional update) and the annotation with `token`, so the recorded token never
/// goes down.
///
/// # Errors
///
/// [`Error::StaleToken`] for a former holder; otherwise an apiserver error is an
/// [`Error::Backend`] whose source is the `kube::Error` ([`api_status`](crate::api_status)
/// reads it: 404 if the object does not exist, 403 if RBAC forbids the request); after
/// losing the race to other writers several times in a row it is a transient error whose
/// source is the last 409. The same holds for every fenced write of this module.
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
pub async fn fenced_update<K: Fenceable>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
    mut change: impl FnMut(&mut K),
) -> Result<K, Error> {
    object(
        fenced(api, name, token, Write::Update(&mut change)).await?,
        name,
    )
}

/// Server-side applies `config` to the object `name` (field manager and force as in
/// `params`, e.g. `PatchParams::apply("my-controller").force()`) only if `token` is not
/// below the token recorded on it. The applied configuration carries the token
/// annotation and `metadata.resourceVersion` set to the version checked, so the apply
/// conflicts if the object changed since; then it is read and checked again.
///
/// `config` is the applied configuration: `apiVersion`, `kind` and the fields this
/// manager owns (a typed object with only those fields set, a `DynamicObject`, or
/// `serde_json::json!`). Its `metadata.name` is set to `name`.
///
/// An object that does not exist yet is created with `config` (a POST, which fails if
/// another writer created it first; then it is read and checked): see
/// [`fenced_create`] for what fencing can promise for a create.
///
/// ```no_run
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::{Api, api::PatchParams};
/// use lock_kube::fenced_apply;
///
/// # async fn run(client: kube::Client, guard: lock_core::Guard) -> lock_core::Result<()> {
/// // Only the fields this controller owns; apiVersion and kind come with the type.
/// let owned = ConfigMap {
///     data: Some([("phase".to_owned(), "done".to_owned())].into()),
///     ..ConfigMap::default()
/// };
/// let params = PatchParams::apply("my-controller").force();
/// let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
/// fenced_apply(&config_maps, "state", guard.token(), &params, &owned).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_apply<K: Fenceable>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
    params: &PatchParams,
    config: &impl Serialize,
) -> Result<K, Error> {
    let config = serde_json::to_value(config).map_err(|error| Error::InvalidOption {
        reason: format!("the applied configuration of {name} cannot be serialized: {error}"),
    })?;
    let write: Write<'_, fn(&mut K)> = Write::Apply {
        params,
        config: &config,
    };
    object(fenced(api, name, token, write).await?, name)
}

/// Writes `status` as the status of the object `name` (its `/status` subresource), only
/// if `token` is not below the token recorded on the object. `status` is the whole
/// status: a typed status (`DeploymentStatus`) or JSON.
///
/// A status write ignores metadata, so the token cannot ride along. The first status
/// write of a term therefore raises the token on the object itself (a merge patch of the
/// annotation, conditional on the resourceVersion checked), then writes `/status`
/// conditional on the resourceVersion that write returned; later writes of the term
/// find the token already raised and write `/status` conditional on the version read.
/// Any newer writer raises the token and changes the resourceVersion, so a stale
/// status write conflicts and, read again, is [`Error::StaleToken`].
///
/// ```no_run
/// use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
/// use kube::Api;
/// use lock_kube::fenced_status;
///
/// # async fn run(client: kube::Client, guard: lock_core::Guard) -> lock_core::Result<()> {
/// let deployments: Api<Deployment> = Api::namespaced(client, "default");
/// let status = DeploymentStatus { observed_generation: Some(3), ..DeploymentStatus::default() };
/// fenced_status(&deployments, "web", guard.token(), &status).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_status<K: Fenceable>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
    status: &impl Serialize,
) -> Result<K, Error> {
    let status = serde_json::to_value(status).map_err(|error| unserializable(name, &error))?;
    let write = Write::<'_, fn(&mut K)>::Status(&status);
    object(fenced(api, name, token, write).await?, name)
}

/// Patches the object `name` with `patch` (a merge or JSON patch) only if `token` is
/// not below the token recorded on it, and records `token` in the same patch: for large
/// objects, where a whole-object PUT is wasteful.
///
/// The patch sent also sets `metadata.resourceVersion` to the version checked (so it
/// conflicts if the object changed since; then it is read and checked again) and the
/// token annotation, after your operations: a patch cannot lower or remove the recorded
/// token.
///
/// ```no_run
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::Api;
/// use lock_kube::{FencedPatch, fenced_patch};
///
/// # async fn run(client: kube::Client, guard: lock_core::Guard) -> lock_core::Result<()> {
/// let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
/// let patch = FencedPatch::Merge(serde_json::json!({ "data": { "phase": "done" } }));
/// fenced_patch(&config_maps, "state", guard.token(), &patch).await?;
/// let patch = FencedPatch::Json(serde_json::json!([
///     { "op": "add", "path": "/data/step", "value": "2" },
/// ]));
/// fenced_patch(&config_maps, "state", guard.token(), &patch).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_patch<K: Fenceable>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
    patch: &FencedPatch,
) -> Result<K, Error> {
    let write = Write::<'_, fn(&mut K)>::Patch(patch);
    object(fenced(api, name, token, write).await?, name)
}

/// Deletes the object `name` only if `token` is not below the token recorded on it: a
/// delete with the resourceVersion checked (and the uid read) as its preconditions.
///
/// Returns the object while its deletion waits for finalizers, `None` once it is gone.
/// An object that is already gone is an error whose [`api_status`](crate::api_status) is
/// 404. Once deleted, the object keeps no token: see [`fenced_create`].
///
/// ```no_run
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::Api;
/// use lock_kube::fenced_delete;
///
/// # async fn run(client: kube::Client, guard: lock_core::Guard) -> lock_core::Result<()> {
/// let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
/// fenced_delete(&config_maps, "state", guard.token()).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_delete<K: Fenceable>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
) -> Result<Option<K>, Error> {
    fenced(api, name, token, Write::<'_, fn(&mut K)>::Delete).await
}

/// Creates `object`, recording `token` on it.
///
/// # What fencing can and cannot promise for a create
///
/// A create is conditional only on the name being free: the apiserver has no
/// precondition that another object says. So a former leader, paused past its lease,
/// **can** create an object that a newer leader deleted, or never created: nothing is
/// left to check its token against. What fencing does promise: the created object
/// carries the creator's token, so every later fenced write to it by a former leader is
/// rejected once the newer leader wrote to it, and a create never overwrites an object
/// that exists (409, a typed error).
///
/// The safe pattern is **stamp and sweep**: create only through `fenced_create` (or
/// [`fenced_apply`]), and let the leader's reconcile of the owner delete, with
/// [`fenced_delete`], the objects it does not want, which includes any object whose
/// [`recorded_token`] is below its own token and that it did not ask for. A stale create
/// then lives until the newer leader's next reconcile of its owner, and it cannot change
/// anything the newer leader wrote.
///
/// ```no_run
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::{Api, api::ObjectMeta};
/// use lock_kube::fenced_create;
///
/// # async fn run(client: kube::Client, guard: lock_core::Guard) -> lock_core::Result<()> {
/// let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
/// let child = ConfigMap {
///     metadata: ObjectMeta { name: Some("child".into()), ..ObjectMeta::default() },
///     ..ConfigMap::default()
/// };
/// fenced_create(&config_maps, guard.token(), &child).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_create<K: Fenceable>(
    api: &Api<K>,
    token: FencingToken,
    object: &K,
) -> Result<K, Error> {
    let mut object = object.clone();
    object
        .annotations_mut()
        .insert(FENCING_TOKEN_ANNOTATION.to_owned(), token.to_string());
    let name = object.name_any();
    api.create(&PostParams::default(), &object)
        .await
        .map_err(|error| {
            kube_error(
                error,
                &format!("create {name}"),
                &access(api, "create"),
                None,
            )
        })
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

/// What [`check`] found on the object read.
struct Checked {
    /// The version checked: every write is conditional on it.
    resource_version: String,
    /// The token recorded then.
    recorded: Option<FencingToken>,
}

/// Whether `token` may write `object`: the one place that decides it, for every kind of
/// write. Stale if a higher token is recorded; an object read without a resourceVersion
/// cannot be written conditionally, so it is not written at all.
fn check<K: Resource>(object: &K, name: &str, token: FencingToken) -> Result<Checked, Error> {
    let recorded = recorded_token(object, name)?;
    if let Some(current) = recorded.filter(|current| token < *current) {
        return Err(Error::StaleToken {
            presented: token,
            current,
        });
    }
    let resource_version = object.meta().resource_version.clone().ok_or_else(|| {
        Error::Unsupported {
            reason: format!(
                "{name} was read without a resourceVersion: a fenced write must be conditional on it"
            ),
        }
    })?;
    Ok(Checked {
        resource_version,
        recorded,
    })
}

/// One kind of fenced write, as the loop sends it.
enum Write<'a, F> {
    Update(&'a mut F),
    Apply {
        params: &'a PatchParams,
        config: &'a Value,
    },
    Status(&'a Value),
    Patch(&'a FencedPatch),
    Delete,
}

impl<F> Write<'_, F> {
    /// What the write is called, and the RBAC verbs it needs (for a 403's advice).
    fn describe(&self) -> (&'static str, &'static str) {
        match self {
            Self::Update(_) => ("update", "get, update"),
            Self::Apply { .. } => ("apply", "get, create, patch"),
            Self::Status(_) => (
                "status write",
                "get, patch, and update on the status subresource",
            ),
            Self::Patch(_) => ("patch", "get, patch"),
            Self::Delete => ("delete", "get, delete"),
        }
    }
}

fn access<'a, K: Resource>(api: &'a Api<K>, verbs: &'static str) -> Access<'a> {
    Access {
        who: "a fenced writer",
        verbs,
        // The resource's URL names its namespace.
        resource: api.resource_url(),
    }
}

/// The one fenced-write loop: read, [`check`], send conditional on the version checked;
/// a conflict (409) or a deletion in between (404 on the write) reads and checks again.
async fn fenced<K: Fenceable, F: FnMut(&mut K)>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
    mut write: Write<'_, F>,
) -> Result<Option<K>, Error> {
    let (kind, verbs) = write.describe();
    let access = access(api, verbs);
    let what = format!("make the fenced {kind} of {name}");
    let mut lost = 0;
    loop {
        let read = match api.get(name).await {
            Ok(object) => Some(object),
            Err(error) if status(&error) == Some(404) && matches!(write, Write::Apply { .. }) => {
                None
            }
            Err(error) => {
                return Err(kube_error(
                    error,
                    &format!("read {name} for a fenced {kind}"),
                    &access,
                    None,
                ));
            }
        };
        let sent = match read {
            Some(object) => {
                let checked = check(&object, name, token)?;
                send(api, name, token, object, checked, &mut write).await?
            }
            None => create_applied(api, name, token, &write).await?,
        };
        match sent {
            Ok(written) => return Ok(written),
            Err(error) if lost_race(&error) => {
                lost += 1;
                if lost == CONFLICT_RETRIES {
                    return Err(kept_changing(&what, error));
                }
            }
            Err(error) => return Err(kube_error(error, &what, &access, None)),
        }
    }
}

/// Whether a write failed because another writer wrote (409) or deleted the object (404)
/// since it was read; not a server-side apply's conflict with another field manager,
/// which reading again cannot settle.
fn lost_race(error: &kube::Error) -> bool {
    let kube::Error::Api(answer) = error else {
        return false;
    };
    let field_conflict = answer.details.as_ref().is_some_and(|details| {
        details
            .causes
            .iter()
            .any(|cause| cause.reason == "FieldManagerConflict")
    });
    matches!(status(error), Some(409 | 404)) && !field_conflict
}

/// The apiserver's answer to one write, or a lock error found before sending.
type Sent<K> = Result<Result<Option<K>, kube::Error>, Error>;

/// Sends `write` of `object`, conditional on `checked`, recording `token`.
async fn send<K: Fenceable, F: FnMut(&mut K)>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
    object: K,
    checked: Checked,
    write: &mut Write<'_, F>,
) -> Sent<K> {
    let version = checked.resource_version.clone();
    let answer = match write {
        Write::Update(change) => {
            let object = conditional(changed(object, change, name)?, version, token);
            api.replace(name, &PostParams::default(), &object).await
        }
        Write::Apply { params, config } => {
            let mut config = json_object(config, name)?;
            let metadata = object_at(&mut config, "metadata");
            metadata.insert("name".to_owned(), json!(name));
            metadata.insert("resourceVersion".to_owned(), json!(version));
            let annotations = object_at_in(metadata, "annotations");
            annotations.insert(
                FENCING_TOKEN_ANNOTATION.to_owned(),
                json!(token.to_string()),
            );
            api.patch(name, params, &Patch::Apply(config)).await
        }
        Write::Status(status) => {
            let marked = if checked.recorded == Some(token) {
                object
            } else {
                // First status write of this term: raise the token on the object.
                let mark = json!({
                    "metadata": {
                        "resourceVersion": version,
                        "annotations": { FENCING_TOKEN_ANNOTATION: token.to_string() },
                    }
                });
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(mark))
                    .await
                {
                    Ok(marked) => marked,
                    Err(error) => return Ok(Err(error)),
                }
            };
            let version = marked.meta().resource_version.clone().unwrap_or(version);
            let mut object = serde_json::to_value(&marked).map_err(|e| unserializable(name, &e))?;
            *object_at(&mut object, "metadata")
                .entry("resourceVersion")
                .or_insert(Value::Null) = json!(version);
            if let Value::Object(fields) = &mut object {
                fields.insert("status".to_owned(), (*status).clone());
            }
            let object: K = serde_json::from_value(object).map_err(|e| Error::InvalidOption {
                reason: format!("the status written to {name} does not fit the object: {e}"),
            })?;
            api.replace_status(name, &PostParams::default(), &object)
                .await
        }
        Write::Patch(FencedPatch::Merge(patch)) => {
            let mut patch = json_object(patch, name)?;
            let metadata = object_at(&mut patch, "metadata");
            metadata.insert("resourceVersion".to_owned(), json!(version));
            object_at_in(metadata, "annotations").insert(
                FENCING_TOKEN_ANNOTATION.to_owned(),
                json!(token.to_string()),
            );
            api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
        }
        Write::Patch(FencedPatch::Json(operations)) => {
            let patch = fenced_json_patch(&object, operations, &version, token, name)?;
            api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await
        }
        Write::Delete => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(version),
                    uid: object.uid(),
                }),
                ..DeleteParams::default()
            };
            return Ok(api
                .delete(name, &params)
                .await
                .map(|deleted| deleted.left()));
        }
    };
    Ok(answer.map(Some))
}

/// An apply of an object that does not exist: a create of the applied configuration
/// with the token, which fails (409) if another writer created it first.
async fn create_applied<K: Fenceable, F>(
    api: &Api<K>,
    name: &str,
    token: FencingToken,
    write: &Write<'_, F>,
) -> Sent<K> {
    let Write::Apply { params, config } = write else {
        return Ok(Ok(None));
    };
    let mut config = json_object(config, name)?;
    object_at(&mut config, "metadata").insert("name".to_owned(), json!(name));
    let mut object: K = serde_json::from_value(config).map_err(|error| Error::InvalidOption {
        reason: format!("the applied configuration of {name} is not a valid object: {error}"),
    })?;
    object
        .annotations_mut()
        .insert(FENCING_TOKEN_ANNOTATION.to_owned(), token.to_string());
    let post = PostParams {
        field_manager: params.field_manager.clone(),
        ..PostParams::default()
    };
    Ok(api.create(&post, &object).await.map(Some))
}

/// `object` after `change`, through JSON and back, so that metadata the change put
/// elsewhere (a `DynamicObject`'s flattened data) is the metadata that is sent.
fn changed<K: Fenceable>(
    mut object: K,
    change: &mut impl FnMut(&mut K),
    name: &str,
) -> Result<K, Error> {
    change(&mut object);
    serde_json::to_value(&object)
        .and_then(serde_json::from_value)
        .map_err(|error| unserializable(name, &error))
}

/// `object` conditional on `version`, recording `token`.
fn conditional<K: Resource>(mut object: K, version: String, token: FencingToken) -> K {
    object.meta_mut().resource_version = Some(version);
    object
        .annotations_mut()
        .insert(FENCING_TOKEN_ANNOTATION.to_owned(), token.to_string());
    object
}

/// A copy of `value`, which must be a JSON object (an applied configuration or a merge
/// patch).
fn json_object(value: &Value, name: &str) -> Result<Value, Error> {
    match value {
        Value::Object(_) => Ok(value.clone()),
        other => Err(Error::InvalidOption {
            reason: format!(
                "a fenced apply or merge patch of {name} must be a JSON object, not {other}"
            ),
        }),
    }
}

/// The object at `key` of the JSON object `value`, made one if missing or not an object.
fn object_at<'v>(value: &'v mut Value, key: &str) -> &'v mut Map<String, Value> {
    object_at_in(object_at_entry(value), key)
}

/// The object at `key` of `map`, made one if missing or not an object.
fn object_at_in<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let entry = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    object_at_entry(entry)
}

fn object_at_entry(value: &mut Value) -> &mut Map<String, Value> {
    if let Value::Object(map) = value {
        return map;
    }
    *value = Value::Object(Map::new());
    object_at_entry(value)
}

/// `operations` followed by the operations that make the patch conditional on
/// `version` and record `token`. Whether the annotations exist after `operations` is
/// found by running them on the object read: the patch is conditional on that version,
/// so the server runs them on the same object.
fn fenced_json_patch<K: Serialize>(
    object: &K,
    operations: &Value,
    version: &str,
    token: FencingToken,
    name: &str,
) -> Result<json_patch::Patch, Error> {
    let invalid = |error: &dyn std::fmt::Display| Error::InvalidOption {
        reason: format!("the JSON patch of {name} is not valid: {error}"),
    };
    let user: json_patch::Patch =
        serde_json::from_value(operations.clone()).map_err(|error| invalid(&error))?;
    let mut after = serde_json::to_value(object).map_err(|error| unserializable(name, &error))?;
    json_patch::patch(&mut after, &user).map_err(|error| invalid(&error))?;
    let annotations = after
        .pointer("/metadata/annotations")
        .is_some_and(Value::is_object);
    let mark = if annotations {
        json!({ "op": "add", "path": format!("/metadata/annotations/{}", FENCING_TOKEN_ANNOTATION.replace('~', "~0").replace('/', "~1")), "value": token.to_string() })
    } else {
        json!({ "op": "add", "path": "/metadata/annotations", "value": { FENCING_TOKEN_ANNOTATION: token.to_string() } })
    };
    let mut all = operations.as_array().cloned().unwrap_or_default();
    all.push(mark);
    all.push(json!({ "op": "replace", "path": "/metadata/resourceVersion", "value": version }));
    serde_json::from_value(Value::Array(all)).map_err(|error| invalid(&error))
}

fn unserializable(name: &str, error: &serde_json::Error) -> Error {
    Error::InvalidOption {
        reason: format!("the fenced change made {name} unserializable: {error}"),
    }
}

/// The object a write answered with.
fn object<K>(written: Option<K>, name: &str) -> Result<K, Error> {
    written.ok_or_else(|| Error::Malformed {
        name: name.to_owned(),
        reason: "the apiserver answered the write without the object".to_owned(),
    })
}
