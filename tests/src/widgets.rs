//! A custom resource with a status subresource, for tests of fenced writes and of
//! controllers over custom resources.

use std::{borrow::Cow, time::Duration};

use k8s_openapi::{
    NamespaceResourceScope,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Resource,
    api::{DynamicObject, PostParams, TypeMeta},
    core::{ApiResource, GroupVersionKind},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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

/// A namespaced [`Kube::widgets`] object as a type of its own, for what needs a static
/// type (kube-runtime's shared reflector streams do).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Widget {
    /// `apiVersion` and `kind`, as read.
    #[serde(flatten, default)]
    pub types: Option<TypeMeta>,
    /// The object's metadata.
    pub metadata: ObjectMeta,
    /// Anything.
    #[serde(default)]
    pub spec: Value,
    /// Anything, written through the status subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

impl Widget {
    /// A widget named `name` with `spec`.
    pub fn new(name: &str, spec: Value) -> Self {
        Self {
            types: Some(TypeMeta {
                api_version: format!("{WIDGET_GROUP}/v1"),
                kind: "Widget".to_owned(),
            }),
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }
}

impl Resource for Widget {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        "Widget".into()
    }
    fn group((): &()) -> Cow<'_, str> {
        WIDGET_GROUP.into()
    }
    fn version((): &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural((): &()) -> Cow<'_, str> {
        "widgets".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
