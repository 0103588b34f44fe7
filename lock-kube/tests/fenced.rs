//! Fenced writes of every kind a controller makes (update, server-side apply, status,
//! merge and JSON patch, delete, create), on a real kube-apiserver, through the
//! interleaving that breaks naive fencing: the stale writer reads and passes its check,
//! a newer writer writes, then the stale writer sends. The stale write is rejected, the
//! newer data stands, and the recorded token never goes down; on typed and dynamic
//! objects, namespaced and cluster-scoped, a custom resource included.

use std::{future::Future, time::Duration};

use k8s_openapi::api::{core::v1::ConfigMap, rbac::v1::ClusterRole};
use kube::{
    Api,
    api::{DynamicObject, ObjectMeta, PatchParams},
};
use lock_core::{Error, FencingToken, conformance::unique_name};
use lock_kube::{
    FencedPatch, api_status, fenced_apply, fenced_create, fenced_delete, fenced_patch,
    fenced_status, fenced_update, recorded_token,
};
use lock_tests::{Kube, widget_resource};
use serde_json::{Value, json};

const STALE: FencingToken = FencingToken::new(7);
const NEWER: FencingToken = FencingToken::new(8);

/// A ConfigMap recorded with token 5 and `owner: nobody`; its name.
async fn config_map(api: &Api<ConfigMap>, prefix: &str) -> String {
    let name = unique_name(prefix);
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        data: Some([("owner".to_owned(), "nobody".to_owned())].into()),
        ..ConfigMap::default()
    };
    fenced_create(api, FencingToken::new(5), &map)
        .await
        .expect("create the ConfigMap");
    name
}

async fn config_maps(client: kube::Client) -> Api<ConfigMap> {
    Api::namespaced(client, Kube::shared().await.namespace())
}

/// Runs `stale` through a client whose `nth` write is held; once the stale writer has
/// read, checked and sent that write, runs `newer` to its end, then lets the stale write
/// go. Returns the stale writer's outcome.
async fn interleave<T, S, N>(
    nth: usize,
    stale: impl FnOnce(kube::Client) -> S,
    newer: N,
) -> Result<T, Error>
where
    S: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
    N: Future<Output = ()>,
{
    let (client, held) = Kube::shared().await.holding_write(nth).await;
    let stale = tokio::spawn(stale(client));
    held.reached().await;
    newer.await;
    held.release();
    tokio::time::timeout(Duration::from_secs(30), stale)
        .await
        .expect("the stale write ends")
        .expect("the stale writer ran")
}

/// The stale outcome is `StaleToken { 7, 8 }`.
fn assert_stale<T: std::fmt::Debug>(outcome: Result<T, Error>) {
    match outcome {
        Err(Error::StaleToken { presented, current }) => {
            assert_eq!((presented, current), (STALE, NEWER))
        }
        other => panic!("expected StaleToken {{ 7, 8 }}, got {other:?}"),
    }
}

/// The ConfigMap `name` shows the newer writer's data and token.
async fn assert_newer_stands(api: &Api<ConfigMap>, name: &str) {
    let map = api.get(name).await.expect("get");
    let owner = map
        .data
        .as_ref()
        .and_then(|data| data.get("owner").cloned());
    assert_eq!(owner.as_deref(), Some("newer"), "{map:?}");
    assert_eq!(recorded_token(&map, name).expect("a token"), Some(NEWER));
}

fn set_owner(owner: &'static str) -> impl FnMut(&mut ConfigMap) + Send + 'static {
    move |map| {
        map.data
            .get_or_insert_with(Default::default)
            .insert("owner".into(), owner.into());
    }
}

#[tokio::test]
async fn a_stale_update_is_rejected_even_when_its_change_replaces_the_whole_object() {
    let api = config_maps(Kube::shared().await.admin().await).await;
    let name = config_map(&api, "update").await;
    let stale_name = name.clone();
    let outcome = interleave(
        1,
        move |client| async move {
            let api = config_maps(client).await;
            fenced_update(&api, &stale_name.clone(), STALE, move |map| {
                // The whole object replaced: no resourceVersion, no annotations.
                *map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(stale_name.clone()),
                        ..ObjectMeta::default()
                    },
                    data: Some([("owner".to_owned(), "stale".to_owned())].into()),
                    ..ConfigMap::default()
                };
            })
            .await
        },
        async {
            fenced_update(&api, &name, NEWER, set_owner("newer"))
                .await
                .expect("the newer writer writes");
        },
    )
    .await;
    assert_stale(outcome);
    assert_newer_stands(&api, &name).await;
}

#[tokio::test]
async fn a_stale_apply_is_rejected_even_when_its_configuration_sets_the_metadata() {
    let api = config_maps(Kube::shared().await.admin().await).await;
    let name = config_map(&api, "apply").await;
    let applied = |owner: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            // Metadata of its own: a version of none, a token of 0.
            "metadata": {
                "name": "ignored",
                "resourceVersion": "",
                "annotations": { lock_kube::FENCING_TOKEN_ANNOTATION: "0" },
            },
            "data": { "owner": owner },
        })
    };
    let params = PatchParams::apply("fenced-test").force();
    let (stale_name, stale_params, stale_config) = (name.clone(), params.clone(), applied("stale"));
    let outcome = interleave(
        1,
        move |client| async move {
            let api = config_maps(client).await;
            fenced_apply(&api, &stale_name, STALE, &stale_params, &stale_config).await
        },
        async {
            fenced_apply(&api, &name, NEWER, &params, &applied("newer"))
                .await
                .expect("the newer writer applies");
        },
    )
    .await;
    assert_stale(outcome);
    assert_newer_stands(&api, &name).await;
}

#[tokio::test]
async fn an_apply_of_a_missing_object_creates_it_with_the_token() {
    let api = config_maps(Kube::shared().await.admin().await).await;
    let name = unique_name("apply-new");
    let config = json!({ "apiVersion": "v1", "kind": "ConfigMap", "data": { "owner": "newer" } });
    let params = PatchParams::apply("fenced-test").force();
    let created = fenced_apply(&api, &name, NEWER, &params, &config)
        .await
        .expect("created");
    assert_eq!(recorded_token(&created, &name).expect("token"), Some(NEWER));
    // Applied again by the same manager: still one owner of its fields.
    let again = json!({ "apiVersion": "v1", "kind": "ConfigMap", "data": { "owner": "newer", "step": "2" } });
    fenced_apply(&api, &name, NEWER, &params, &again)
        .await
        .expect("applied again");
    assert_stale(fenced_apply(&api, &name, STALE, &params, &config).await);
    assert_newer_stands(&api, &name).await;
}

#[tokio::test]
async fn a_stale_merge_patch_is_rejected_even_when_it_sets_the_metadata() {
    let api = config_maps(Kube::shared().await.admin().await).await;
    let name = config_map(&api, "merge").await;
    let stale_name = name.clone();
    let outcome = interleave(
        1,
        move |client| async move {
            let api = config_maps(client).await;
            let patch = FencedPatch::Merge(json!({
                "metadata": { "resourceVersion": null, "annotations": null },
                "data": { "owner": "stale" },
            }));
            fenced_patch(&api, &stale_name, STALE, &patch).await
        },
        async {
            let patch = FencedPatch::Merge(json!({ "data": { "owner": "newer" } }));
            fenced_patch(&api, &name, NEWER, &patch)
                .await
                .expect("the newer writer patches");
        },
    )
    .await;
    assert_stale(outcome);
    assert_newer_stands(&api, &name).await;
}

#[tokio::test]
async fn a_stale_json_patch_is_rejected_even_when_it_removes_the_annotations() {
    let api = config_maps(Kube::shared().await.admin().await).await;
    let name = config_map(&api, "json-patch").await;
    let stale_name = name.clone();
    let outcome = interleave(
        1,
        move |client| async move {
            let api = config_maps(client).await;
            let patch = FencedPatch::Json(json!([
                { "op": "remove", "path": "/metadata/annotations" },
                { "op": "replace", "path": "/data/owner", "value": "stale" },
            ]));
            fenced_patch(&api, &stale_name, STALE, &patch).await
        },
        async {
            let patch = FencedPatch::Json(json!([
                { "op": "replace", "path": "/data/owner", "value": "newer" },
            ]));
            fenced_patch(&api, &name, NEWER, &patch)
                .await
                .expect("the newer writer patches");
        },
    )
    .await;
    assert_stale(outcome);
    assert_newer_stands(&api, &name).await;
    // The same removal by the current holder keeps the token: a patch cannot drop it.
    let patch = FencedPatch::Json(json!([{ "op": "remove", "path": "/metadata/annotations" }]));
    let written = fenced_patch(&api, &name, NEWER, &patch)
        .await
        .expect("patch");
    assert_eq!(recorded_token(&written, &name).expect("token"), Some(NEWER));
}

#[tokio::test]
async fn a_stale_delete_is_rejected_and_the_newer_data_stands() {
    let api = config_maps(Kube::shared().await.admin().await).await;
    let name = config_map(&api, "delete").await;
    let stale_name = name.clone();
    let outcome = interleave(
        1,
        move |client| async move {
            let api = config_maps(client).await;
            fenced_delete(&api, &stale_name, STALE).await
        },
        async {
            fenced_update(&api, &name, NEWER, set_owner("newer"))
                .await
                .expect("the newer writer writes");
        },
    )
    .await;
    assert_stale(outcome);
    assert_newer_stands(&api, &name).await;
    assert!(
        fenced_delete(&api, &name, NEWER)
            .await
            .expect("the newer writer deletes")
            .is_none(),
        "gone"
    );
    let missing = fenced_delete(&api, &name, NEWER)
        .await
        .expect_err("already gone");
    assert_eq!(api_status(&missing), Some(404), "{missing}");
}

/// A Widget recorded with token `token` and status `owner: nobody`; its name.
async fn widget(api: &Api<DynamicObject>, namespaced: bool, token: u64) -> String {
    let name = unique_name("widget");
    let mut object = DynamicObject::new(&name, &widget_resource(namespaced));
    object.data = json!({ "spec": { "size": 1 } });
    fenced_create(api, FencingToken::new(token), &object)
        .await
        .expect("create the widget");
    fenced_status(
        api,
        &name,
        FencingToken::new(token),
        &json!({ "owner": "nobody" }),
    )
    .await
    .expect("its first status");
    name
}

/// The widget shows the newer writer's status and token.
async fn assert_newer_status_stands(api: &Api<DynamicObject>, name: &str) {
    let object = api.get(name).await.expect("get");
    assert_eq!(
        object.data["status"]["owner"],
        Value::from("newer"),
        "{object:?}"
    );
    assert_eq!(recorded_token(&object, name).expect("a token"), Some(NEWER));
}

/// A status write raises the token on the object first; the stale writer is held at
/// that first write (`raise`: its token is not recorded yet) or at the status write
/// itself (the token was already recorded by its term), and rejected either way.
async fn a_stale_status_write_is_rejected(namespaced: bool, recorded: u64, held: usize) {
    let api = Kube::shared().await.widgets(namespaced).await;
    let name = widget(&api, namespaced, recorded).await;
    let stale_name = name.clone();
    let outcome = interleave(
        held,
        move |client| async move {
            let url_api = Kube::shared().await.widgets_of(client, namespaced);
            fenced_status(&url_api, &stale_name, STALE, &json!({ "owner": "stale" })).await
        },
        async {
            fenced_status(&api, &name, NEWER, &json!({ "owner": "newer" }))
                .await
                .expect("the newer writer writes its status");
        },
    )
    .await;
    assert_stale(outcome);
    assert_newer_status_stands(&api, &name).await;
}

#[tokio::test]
async fn a_stale_status_write_is_rejected_when_held_at_raising_its_token() {
    a_stale_status_write_is_rejected(true, 5, 1).await;
}

#[tokio::test]
async fn a_stale_status_write_is_rejected_when_held_at_the_status_write_after_raising() {
    a_stale_status_write_is_rejected(true, 5, 2).await;
}

#[tokio::test]
async fn a_stale_status_write_is_rejected_when_its_term_had_already_raised_the_token() {
    a_stale_status_write_is_rejected(true, 7, 1).await;
}

#[tokio::test]
async fn a_stale_status_write_to_a_cluster_scoped_custom_resource_is_rejected() {
    a_stale_status_write_is_rejected(false, 5, 2).await;
}

#[tokio::test]
async fn a_stale_write_to_a_cluster_scoped_typed_object_is_rejected() {
    let kube = Kube::shared().await;
    let roles: Api<ClusterRole> = Api::all(kube.admin().await);
    let name = unique_name("role");
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..ClusterRole::default()
    };
    fenced_create(&roles, FencingToken::new(5), &role)
        .await
        .expect("create");
    let label = |owner: &'static str| {
        move |role: &mut ClusterRole| {
            role.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("owner".into(), owner.into());
        }
    };
    let stale_name = name.clone();
    let outcome = interleave(
        1,
        move |client| async move {
            fenced_update(
                &Api::<ClusterRole>::all(client),
                &stale_name,
                STALE,
                label("stale"),
            )
            .await
        },
        async {
            fenced_update(&roles, &name, NEWER, label("newer"))
                .await
                .expect("the newer writer writes");
        },
    )
    .await;
    assert_stale(outcome);
    let role = roles.get(&name).await.expect("get");
    assert_eq!(
        role.metadata
            .labels
            .and_then(|labels| labels.get("owner").cloned())
            .as_deref(),
        Some("newer")
    );
    fenced_delete(&roles, &name, NEWER).await.expect("clean up");
}

/// What fencing cannot promise for a create, and the pattern that makes it safe: a
/// former leader can create an object a newer leader deleted (nothing is left to check
/// its token against), but the object carries its token, so the newer leader's sweep
/// removes it, and a create never overwrites an object that exists.
#[tokio::test]
async fn a_stale_create_is_stamped_with_its_token_and_swept_by_the_newer_leader() {
    let api = config_maps(Kube::shared().await.admin().await).await;
    let name = config_map(&api, "create").await;
    fenced_update(&api, &name, NEWER, set_owner("newer"))
        .await
        .expect("the newer leader writes");

    // A create of an object that exists is a typed 409 and changes nothing.
    let again = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let exists = fenced_create(&api, STALE, &again)
        .await
        .expect_err("exists");
    assert_eq!(api_status(&exists), Some(409), "{exists}");
    assert_newer_stands(&api, &name).await;

    // The newer leader deletes it; the former leader, late, creates it again.
    fenced_delete(&api, &name, NEWER)
        .await
        .expect("the newer leader deletes");
    let recreated = fenced_create(&api, STALE, &again)
        .await
        .expect("a stale create succeeds");
    assert_eq!(
        recorded_token(&recreated, &name).expect("token"),
        Some(STALE)
    );

    // The newer leader's sweep: an object it does not want, stamped below its token.
    let swept = api.get(&name).await.expect("get");
    assert!(recorded_token(&swept, &name).expect("token") < Some(NEWER));
    fenced_delete(&api, &name, NEWER).await.expect("swept");
    let gone = fenced_update(&api, &name, STALE, set_owner("stale"))
        .await
        .expect_err("gone");
    assert_eq!(api_status(&gone), Some(404), "{gone}");
}
