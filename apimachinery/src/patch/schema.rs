//! Merge metadata of the built-in kinds: the `patchStrategy`/`patchMergeKey` struct tags that
//! strategic merge patch reads, and the `+listType`/`+listMapKey`/`+structType`/`+mapType`
//! markers that server-side apply reads.
//!
//! Upstream derives both from Go struct tags by reflection. Skiff has no Go structs, so the
//! tables below transcribe the tags of k8s.io/api core/v1, apps/v1, batch/v1,
//! coordination.k8s.io/v1, discovery.k8s.io/v1 and meta/v1 for every field of the served kinds
//! whose behaviour differs from the default. The default is what upstream uses for an untagged
//! field: objects merge key by key, lists are replaced whole (atomic).

/// A (group, version, kind) triple that names the schema of an object.
///
/// The core group is the empty string, as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gvk<'a> {
    /// API group, `""` for the core group.
    pub group: &'a str,
    /// API version, e.g. `v1`.
    pub version: &'a str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'a str,
}

impl<'a> Gvk<'a> {
    /// Builds a GVK from its three parts.
    pub const fn new(group: &'a str, version: &'a str, kind: &'a str) -> Self {
        Gvk {
            group,
            version,
            kind,
        }
    }

    /// Builds a GVK from an object's `apiVersion` (`apps/v1`, or `v1` for the core group) and
    /// `kind`.
    pub fn from_api_version(api_version: &'a str, kind: &'a str) -> Self {
        match api_version.split_once('/') {
            Some((group, version)) => Gvk::new(group, version, kind),
            None => Gvk::new("", api_version, kind),
        }
    }

    /// The `apiVersion` string of this GVK: `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// How server-side apply treats a list (`x-kubernetes-list-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The list is one value: whoever sets it owns all of it, and it is replaced whole.
    Atomic,
    /// Items are objects identified by the values of `keys` (`+listMapKey`); each item and
    /// each of its fields can have its own owner.
    Map {
        /// Names of the key fields, in the order upstream declares them.
        keys: &'static [&'static str],
    },
    /// Items are scalars that each can have their own owner (`+listType=set`).
    Set,
}

/// How strategic merge patch treats a list (`patchStrategy`/`patchMergeKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// The patch's list replaces the original list (no `patchStrategy` tag).
    Replace,
    /// `patchStrategy:"merge"` with a `patchMergeKey`: objects are matched by that key.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of scalars: the lists are merged as sets.
    MergePrimitives,
}

/// A node of the schema tree: what is known about a field's value.
#[derive(Debug)]
pub(crate) enum Node {
    /// An object whose fields merge (and are owned) one by one. Only the fields that behave
    /// differently from the default are listed.
    Struct(&'static [(&'static str, &'static Node)]),
    /// An object that server-side apply treats as one value (`+structType=atomic` or
    /// `+mapType=atomic`). Strategic merge patch still merges it key by key, as upstream does.
    Atomic,
    /// A list with explicit strategies.
    List {
        smp: PatchStrategy,
        ssa: ListStrategy,
        elem: &'static Node,
    },
}

/// Anything not described: objects merge by key, lists are atomic.
pub(crate) const DEFAULT: Node = Node::Struct(&[]);

/// The list behaviour of a field not described by the table.
const DEFAULT_LIST: (PatchStrategy, ListStrategy, &Node) =
    (PatchStrategy::Replace, ListStrategy::Atomic, &DEFAULT);

impl Node {
    /// The node of field `name` of this object.
    pub(crate) fn field(&'static self, name: &str) -> &'static Node {
        match self {
            Node::Struct(fields) => fields
                .iter()
                .find(|(field, _)| *field == name)
                .map_or(&DEFAULT, |(_, node)| *node),
            Node::Atomic | Node::List { .. } => &DEFAULT,
        }
    }

    /// The strategies of this node when its value is a list.
    pub(crate) fn list(&'static self) -> (PatchStrategy, ListStrategy, &'static Node) {
        match self {
            Node::List { smp, ssa, elem } => (*smp, *ssa, elem),
            Node::Struct(_) | Node::Atomic => DEFAULT_LIST,
        }
    }

    /// True for objects that server-side apply owns as a whole.
    pub(crate) fn is_atomic(&self) -> bool {
        matches!(self, Node::Atomic)
    }
}

const fn list(smp: PatchStrategy, ssa: ListStrategy, elem: &'static Node) -> Node {
    Node::List { smp, ssa, elem }
}

/// A list merged by `key` in both strategic merge patch and server-side apply.
const fn keyed(key: &'static str, keys: &'static [&'static str], elem: &'static Node) -> Node {
    list(
        PatchStrategy::MergeByKey(key),
        ListStrategy::Map { keys },
        elem,
    )
}

/// `patchStrategy:"merge"` + `+listType=set`, e.g. `metadata.finalizers`.
const MERGED_SET: Node = list(PatchStrategy::MergePrimitives, ListStrategy::Set, &DEFAULT);
/// No patch strategy but `+listType=set`, e.g. `volumeMounts[].bindMountOptions`.
const SET: Node = list(PatchStrategy::Replace, ListStrategy::Set, &DEFAULT);

/// `conditions` lists merged by `type` (most status types).
const CONDITIONS: Node = keyed("type", &["type"], &DEFAULT);

const OBJECT_META: Node = Node::Struct(&[
    // OwnerReference is +structType=atomic: an owner reference is owned as a whole.
    ("ownerReferences", &keyed("uid", &["uid"], &Node::Atomic)),
    ("finalizers", &MERGED_SET),
    // managedFields has no patch strategy and +listType=atomic.
]);

/// metav1.LabelSelector is +structType=atomic.
const LABEL_SELECTOR: Node = Node::Atomic;

const ENV_VAR: Node = Node::Struct(&[(
    "valueFrom",
    &Node::Struct(&[
        ("fieldRef", &Node::Atomic),
        ("resourceFieldRef", &Node::Atomic),
        ("configMapKeyRef", &Node::Atomic),
        ("secretKeyRef", &Node::Atomic),
        ("fileKeyRef", &Node::Atomic),
    ]),
)]);

const RESOURCE_REQUIREMENTS: Node = Node::Struct(&[(
    "claims",
    &list(
        PatchStrategy::Replace,
        ListStrategy::Map { keys: &["name"] },
        &DEFAULT,
    ),
)]);

const CONTAINER: Node = Node::Struct(&[
    (
        "ports",
        &keyed("containerPort", &["containerPort", "protocol"], &DEFAULT),
    ),
    ("env", &keyed("name", &["name"], &ENV_VAR)),
    ("resources", &RESOURCE_REQUIREMENTS),
    (
        "volumeMounts",
        &keyed(
            "mountPath",
            &["mountPath"],
            &Node::Struct(&[("bindMountOptions", &SET)]),
        ),
    ),
    (
        "volumeDevices",
        &keyed("devicePath", &["devicePath"], &DEFAULT),
    ),
    (
        "restartPolicyRules",
        &list(
            PatchStrategy::Replace,
            ListStrategy::Atomic,
            &Node::Struct(&[("exitCodes", &Node::Struct(&[("values", &SET)]))]),
        ),
    ),
]);

/// Volume sources whose `secretRef` is a LocalObjectReference (+structType=atomic).
const SECRET_REF_SOURCE: Node = Node::Struct(&[("secretRef", &Node::Atomic)]);

const VOLUME: Node = Node::Struct(&[
    ("iscsi", &SECRET_REF_SOURCE),
    ("rbd", &SECRET_REF_SOURCE),
    ("flexVolume", &SECRET_REF_SOURCE),
    ("cinder", &SECRET_REF_SOURCE),
    ("cephfs", &SECRET_REF_SOURCE),
    ("scaleIO", &SECRET_REF_SOURCE),
    ("storageos", &SECRET_REF_SOURCE),
    (
        "csi",
        &Node::Struct(&[("nodePublishSecretRef", &Node::Atomic)]),
    ),
    (
        "ephemeral",
        &Node::Struct(&[(
            "volumeClaimTemplate",
            &Node::Struct(&[
                ("metadata", &OBJECT_META),
                (
                    "spec",
                    &Node::Struct(&[("selector", &LABEL_SELECTOR), ("dataSource", &Node::Atomic)]),
                ),
            ]),
        )]),
    ),
]);

const POD_SPEC: Node = Node::Struct(&[
    // patchStrategy "merge,retainKeys": items merge by name; kubectl sends $retainKeys in them.
    ("volumes", &keyed("name", &["name"], &VOLUME)),
    ("initContainers", &keyed("name", &["name"], &CONTAINER)),
    ("containers", &keyed("name", &["name"], &CONTAINER)),
    ("ephemeralContainers", &keyed("name", &["name"], &CONTAINER)),
    ("nodeSelector", &Node::Atomic),
    // LocalObjectReference is +structType=atomic.
    ("imagePullSecrets", &keyed("name", &["name"], &Node::Atomic)),
    (
        "affinity",
        &Node::Struct(&[(
            "nodeAffinity",
            &Node::Struct(&[(
                "requiredDuringSchedulingIgnoredDuringExecution",
                &Node::Atomic,
            )]),
        )]),
    ),
    ("hostAliases", &keyed("ip", &["ip"], &DEFAULT)),
    (
        "topologySpreadConstraints",
        &keyed(
            "topologyKey",
            &["topologyKey", "whenUnsatisfiable"],
            &Node::Struct(&[("labelSelector", &LABEL_SELECTOR)]),
        ),
    ),
    ("schedulingGates", &keyed("name", &["name"], &DEFAULT)),
    ("resourceClaims", &keyed("name", &["name"], &DEFAULT)),
    ("resources", &RESOURCE_REQUIREMENTS),
]);

const POD_TEMPLATE_SPEC: Node = Node::Struct(&[("metadata", &OBJECT_META), ("spec", &POD_SPEC)]);

const POD: Node = Node::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &POD_SPEC),
    (
        "status",
        &Node::Struct(&[
            ("conditions", &CONDITIONS),
            // hostIPs: patchMergeKey ip but +listType=atomic.
            (
                "hostIPs",
                &list(
                    PatchStrategy::MergeByKey("ip"),
                    ListStrategy::Atomic,
                    &DEFAULT,
                ),
            ),
            ("podIPs", &keyed("ip", &["ip"], &DEFAULT)),
            ("resourceClaimStatuses", &keyed("name", &["name"], &DEFAULT)),
        ]),
    ),
]);

const NAMESPACE: Node = Node::Struct(&[
    ("metadata", &OBJECT_META),
    ("status", &Node::Struct(&[("conditions", &CONDITIONS)])),
]);

const NODE: Node = Node::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "spec",
        &Node::Struct(&[
            ("podCIDRs", &MERGED_SET),
            (
                "podPreemptionPolicy",
                &Node::Struct(&[("disableResizePreemption", &SET)]),
            ),
        ]),
    ),
    (
        "status",
        &Node::Struct(&[
            ("conditions", &CONDITIONS),
            ("addresses", &keyed("type", &["type"], &DEFAULT)),
        ]),
    ),
]);

const SERVICE: Node = Node::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "spec",
        &Node::Struct(&[
            ("ports", &keyed("port", &["port", "protocol"], &DEFAULT)),
            ("selector", &Node::Atomic),
        ]),
    ),
    ("status", &Node::Struct(&[("conditions", &CONDITIONS)])),
]);

/// Kinds whose only special fields are in metadata (ConfigMap, Secret, Lease, Endpoints,
/// EndpointSlice: their lists are all atomic).
const METADATA_ONLY: Node = Node::Struct(&[("metadata", &OBJECT_META)]);

const SERVICE_ACCOUNT: Node = Node::Struct(&[
    ("metadata", &OBJECT_META),
    // ObjectReference is +structType=atomic.
    ("secrets", &keyed("name", &["name"], &Node::Atomic)),
]);

const EVENT: Node = Node::Struct(&[
    ("metadata", &OBJECT_META),
    ("involvedObject", &Node::Atomic),
    ("related", &Node::Atomic),
]);

const DEPLOYMENT: Node = Node::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "spec",
        &Node::Struct(&[
            ("selector", &LABEL_SELECTOR),
            ("template", &POD_TEMPLATE_SPEC),
        ]),
    ),
    ("status", &Node::Struct(&[("conditions", &CONDITIONS)])),
]);

const JOB: Node = Node::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "spec",
        &Node::Struct(&[
            ("selector", &LABEL_SELECTOR),
            ("template", &POD_TEMPLATE_SPEC),
        ]),
    ),
    (
        "status",
        &Node::Struct(&[
            // Job conditions: patchMergeKey type but +listType=atomic.
            (
                "conditions",
                &list(
                    PatchStrategy::MergeByKey("type"),
                    ListStrategy::Atomic,
                    &DEFAULT,
                ),
            ),
            (
                "uncountedTerminatedPods",
                &Node::Struct(&[("succeeded", &SET), ("failed", &SET)]),
            ),
        ]),
    ),
]);

/// Unknown kinds: only the metadata common to every object is known.
const UNKNOWN: Node = METADATA_ONLY;

/// The schema root of a kind.
pub(crate) fn root(gvk: &Gvk<'_>) -> &'static Node {
    match (gvk.group, gvk.version, gvk.kind) {
        ("", "v1", "Pod") => &POD,
        ("", "v1", "Namespace") => &NAMESPACE,
        ("", "v1", "Node") => &NODE,
        ("", "v1", "Service") => &SERVICE,
        ("", "v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "v1", "Event") => &EVENT,
        ("", "v1", "Endpoints" | "ConfigMap" | "Secret") => &METADATA_ONLY,
        ("apps", "v1", "Deployment" | "ReplicaSet" | "DaemonSet") => &DEPLOYMENT,
        ("batch", "v1", "Job") => &JOB,
        ("coordination.k8s.io", "v1", "Lease") => &METADATA_ONLY,
        ("discovery.k8s.io", "v1", "EndpointSlice") => &METADATA_ONLY,
        _ => &UNKNOWN,
    }
}

/// The node at `path` (field names from the object root; list items are transparent, so
/// `["spec", "containers", "ports"]` is the ports list of any container).
pub(crate) fn node_at(gvk: &Gvk<'_>, path: &[&str]) -> &'static Node {
    path.iter().fold(root(gvk), |node, field| match node {
        Node::List { elem, .. } => elem.field(field),
        _ => node.field(field),
    })
}

/// How server-side apply treats the list at `path` (field names from the object root, e.g.
/// `["spec", "template", "spec", "containers"]`) of kind `gvk`. Fields not in the table, and
/// every list of an unknown kind, are [`ListStrategy::Atomic`].
pub fn list_strategy(gvk: &Gvk<'_>, path: &[&str]) -> ListStrategy {
    node_at(gvk, path).list().1
}

/// How strategic merge patch treats the list at `path` of kind `gvk` (same path convention as
/// [`list_strategy`]). Fields not in the table are [`PatchStrategy::Replace`].
pub fn patch_strategy(gvk: &Gvk<'_>, path: &[&str]) -> PatchStrategy {
    node_at(gvk, path).list().0
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: Gvk<'static> = Gvk::new("apps", "v1", "Deployment");

    #[test]
    fn containers_are_keyed_by_name() {
        let path = ["spec", "template", "spec", "containers"];
        assert_eq!(
            list_strategy(&DEPLOY, &path),
            ListStrategy::Map { keys: &["name"] }
        );
        assert_eq!(
            patch_strategy(&DEPLOY, &path),
            PatchStrategy::MergeByKey("name")
        );
    }

    #[test]
    fn container_ports_use_protocol_in_apply_but_not_in_patch() {
        let path = ["spec", "template", "spec", "containers", "ports"];
        assert_eq!(
            list_strategy(&DEPLOY, &path),
            ListStrategy::Map {
                keys: &["containerPort", "protocol"]
            }
        );
        assert_eq!(
            patch_strategy(&DEPLOY, &path),
            PatchStrategy::MergeByKey("containerPort")
        );
    }

    #[test]
    fn finalizers_merge_as_sets_everywhere() {
        for gvk in [
            Gvk::new("", "v1", "ConfigMap"),
            Gvk::new("example.com", "v1", "Widget"),
        ] {
            assert_eq!(
                list_strategy(&gvk, &["metadata", "finalizers"]),
                ListStrategy::Set
            );
            assert_eq!(
                patch_strategy(&gvk, &["metadata", "finalizers"]),
                PatchStrategy::MergePrimitives
            );
        }
    }

    #[test]
    fn job_conditions_differ_between_patch_and_apply() {
        let job = Gvk::new("batch", "v1", "Job");
        assert_eq!(
            list_strategy(&job, &["status", "conditions"]),
            ListStrategy::Atomic
        );
        assert_eq!(
            patch_strategy(&job, &["status", "conditions"]),
            PatchStrategy::MergeByKey("type")
        );
    }

    #[test]
    fn unknown_fields_and_kinds_are_atomic() {
        assert_eq!(
            list_strategy(&DEPLOY, &["spec", "template", "spec", "tolerations"]),
            ListStrategy::Atomic
        );
        let widget = Gvk::new("example.com", "v1", "Widget");
        assert_eq!(
            patch_strategy(&widget, &["spec", "containers"]),
            PatchStrategy::Replace
        );
    }

    #[test]
    fn api_version_round_trips() {
        assert_eq!(Gvk::from_api_version("apps/v1", "Deployment"), DEPLOY);
        assert_eq!(DEPLOY.api_version(), "apps/v1");
        assert_eq!(
            Gvk::from_api_version("v1", "Pod"),
            Gvk::new("", "v1", "Pod")
        );
        assert_eq!(Gvk::new("", "v1", "Pod").api_version(), "v1");
    }
}
