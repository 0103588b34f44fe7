//! A custom resource with a status subresource, for tests of fenced writes and of
//! controllers over custom resources.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{DynamicObject, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::json;

use crate::Kube;

/// The API group of the test's custom resources.
pub const WIDGET_GROUP: &str = "fencing.test";

impl Kube {
    /// The custom resource `Widget` (`widgets.fencing.test`, namespaced) or
    /// `ClusterWidget` (`clusterwidgets.fencing.test`, cluster-scoped), with a status
    /// subresource and any fields: defined on first use (again is harmless) and served
    /// once this returns. Objects through the admin client, in [`Kube::namespace`].
    pub async fn widgets(&self, namespaced: bool) -> Api<DynamicObject> {
        let client = self.admin().await;
        let resource = widget_resource(namespaced);
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": { "name": format!("{}.{WIDGET_GROUP}", resource.plural) },
            "spec": {
                "group": WIDGET_GROUP,
                "names": {
                    "plural": resource.plural,
                    "singular": resource.kind.to_lowercase(),
                    "kind": resource.kind,
                },
                "scope": if namespaced { "Namespaced" } else { "Cluster" },
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "subresources": { "status": {} },
                    "schema": { "openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    } },
                }],
            },
        }))
        .unwrap_or_else(|error| panic!("the widget CRD does not parse: {error}"));
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => panic!("cannot create the widget CRD: {error}"),
        }
        let api = self.widgets_of(client, namespaced);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while api.list(&Default::default()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the custom resource {} was not served within 30 s",
                resource.plural
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api
    }

    /// Widgets (or cluster widgets) through `client`; [`Kube::widgets`] defines them.
    pub fn widgets_of(&self, client: kube::Client, namespaced: bool) -> Api<DynamicObject> {
        let resource = widget_resource(namespaced);
        if namespaced {
            Api::namespaced_with(client, self.namespace(), &resource)
        } else {
            Api::all_with(client, &resource)
        }
    }
}

/// The API resource of widgets or cluster widgets.
pub fn widget_resource(namespaced: bool) -> ApiResource {
    let (kind, plural) = if namespaced {
        ("Widget", "widgets")
    } else {
        ("ClusterWidget", "clusterwidgets")
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(WIDGET_GROUP, "v1", kind), plural)
}
