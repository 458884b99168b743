//! Recording core/v1 Events, as client-go's `record.EventRecorder` does for
//! kube-controller-manager and the kubelet: one Event per occurrence, in the involved object's namespace
//! (`default` for cluster-scoped objects), named `<object>.<nanoseconds in hex>`. A failure to
//! record is logged and otherwise ignored: an Event is never worth failing a sync for.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

/// `Normal` or `Warning`, as upstream's `v1.EventTypeNormal`/`EventTypeWarning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records Events as `component` (the `source.component` kubectl describe shows).
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: &'static str,
    host: Option<String>,
}

impl EventRecorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        EventRecorder {
            client,
            component,
            host: None,
        }
    }

    /// Events from a component of one node (the kubelet): `source.host` names it.
    pub fn on_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// Records an Event about `object`.
    pub async fn record<K>(&self, object: &K, kind: EventType, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record_for(object_reference(object), kind, reason, message)
            .await;
    }

    /// Records an Event about the object `involved` names.
    pub async fn record_for(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        let now = Timestamp::now();
        let namespace = involved
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".into());
        let object_name = involved.name.clone().unwrap_or_default();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{object_name}.{:x}", now.as_nanosecond() as u64)),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(kind.as_str().into()),
            source: Some(EventSource {
                component: Some(self.component.into()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = events.create(&PostParams::default(), &event).await {
            tracing::warn!(component = self.component, object = %object_name, reason,
                error = %e, "recording an event");
        }
    }
}

/// The reference an Event's `involvedObject` holds for `object`.
pub fn object_reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(object.name_any()),
        namespace: object.namespace(),
        uid: object.uid(),
        resource_version: object.resource_version(),
        ..Default::default()
    }
}
