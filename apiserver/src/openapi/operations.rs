//! The REST operations of each resource, rendered as OpenAPI v2 and v3 path items.
//!
//! What clients depend on: every operation carries `x-kubernetes-group-version-kind` (kubectl
//! explain finds a resource's kind through its list/read operations) and `x-kubernetes-action`,
//! and the write operations list `fieldValidation`, `dryRun` and `fieldManager` (kubectl only
//! relies on server-side field validation when the PATCH operation lists `fieldValidation`).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::schemas::{
    self, API_RESOURCE_LIST, BINDING, DELETE_OPTIONS, EVICTION, Gvk, PATCH, SCALE, STATUS,
    SchemaSet,
};
use super::{GroupVersion, OpenApiResource};

#[derive(Clone, Copy, PartialEq, Eq)]
enum In {
    Query,
    Path,
}

#[derive(Clone, Copy)]
struct Param {
    name: &'static str,
    location: In,
    ty: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: In::Query,
        ty,
        description,
    }
}

const PRETTY: Param = query(
    "pretty",
    "string",
    "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
);
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
);
const FIELD_MANAGER_PATCH: Param = query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const GRACE_PERIOD_SECONDS: Param = query(
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.",
);
const ORPHAN_DEPENDENTS: Param = query(
    "orphanDependents",
    "boolean",
    "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.",
);
const PROPAGATION_POLICY: Param = query(
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.",
);
const ALLOW_WATCH_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    "boolean",
    "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.",
);
const CONTINUE: Param = query(
    "continue",
    "string",
    "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize.",
);
const FIELD_SELECTOR: Param = query(
    "fieldSelector",
    "string",
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
);
const LABEL_SELECTOR: Param = query(
    "labelSelector",
    "string",
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
);
const LIMIT: Param = query(
    "limit",
    "integer",
    "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.",
);
const RESOURCE_VERSION: Param = query(
    "resourceVersion",
    "string",
    "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
);
const RESOURCE_VERSION_MATCH: Param = query(
    "resourceVersionMatch",
    "string",
    "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
);
const SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    "boolean",
    "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event will be sent.",
);
const TIMEOUT_SECONDS: Param = query(
    "timeoutSeconds",
    "integer",
    "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
);
const WATCH: Param = query(
    "watch",
    "boolean",
    "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
);
const NAMESPACE: Param = Param {
    name: "namespace",
    location: In::Path,
    ty: "string",
    description: "object name and auth scope, such as for teams and projects",
};

const LIST_PARAMS: &[Param] = &[
    ALLOW_WATCH_BOOKMARKS,
    CONTINUE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
    LIMIT,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
    WATCH,
];
const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER_PATCH, FIELD_VALIDATION, FORCE];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    GRACE_PERIOD_SECONDS,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
];
const DELETE_COLLECTION_PARAMS: &[Param] = &[
    CONTINUE,
    DRY_RUN,
    FIELD_SELECTOR,
    GRACE_PERIOD_SECONDS,
    LABEL_SELECTOR,
    LIMIT,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
];

// pods/log and pods/exec, with upstream's parameter descriptions.
const LOG_PARAMS: &[Param] = &[
    query(
        "container",
        "string",
        "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
    ),
    query(
        "follow",
        "boolean",
        "Follow the log stream of the pod. Defaults to false.",
    ),
    query(
        "insecureSkipTLSVerifyBackend",
        "boolean",
        "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.  This will make the HTTPS connection between the apiserver and the backend insecure. This means the apiserver cannot verify the log data it is receiving came from the real kubelet.  If the kubelet is configured to verify the apiserver's TLS credentials, it does not mean the connection to the real kubelet is vulnerable to a man in the middle attack (e.g. an attacker could not intercept the actual log data coming from the real kubelet).",
    ),
    query(
        "limitBytes",
        "integer",
        "If set, the number of bytes to read from the server before terminating the log output. This may not display a complete final line of logging, and may return slightly more or slightly less than the specified limit.",
    ),
    query(
        "previous",
        "boolean",
        "Return previous terminated container logs. Defaults to false.",
    ),
    query(
        "sinceSeconds",
        "integer",
        "A relative time in seconds before the current time from which to show logs. If this value precedes the time a pod was started, only logs since the pod start will be returned. If this value is in the future, no logs will be returned. Only one of sinceSeconds or sinceTime may be specified.",
    ),
    query(
        "stream",
        "string",
        "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\". If not specified, \"All\" is used, and both stdout and stderr are returned interleaved. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\".",
    ),
    query(
        "tailLines",
        "integer",
        "If set, the number of lines from the end of the logs to show. If not specified, logs are shown from the creation of the container or sinceSeconds or sinceTime. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\".",
    ),
    query(
        "timestamps",
        "boolean",
        "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
    ),
];
const EXEC_PARAMS: &[Param] = &[
    query(
        "command",
        "string",
        "Command is the remote command to execute. argv array. Not executed within a shell.",
    ),
    query(
        "container",
        "string",
        "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
    ),
    query(
        "stderr",
        "boolean",
        "Redirect the standard error stream of the pod for this call.",
    ),
    query(
        "stdin",
        "boolean",
        "Redirect the standard input stream of the pod for this call. Defaults to false.",
    ),
    query(
        "stdout",
        "boolean",
        "Redirect the standard output stream of the pod for this call.",
    ),
    query(
        "tty",
        "boolean",
        "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
    ),
];
const LOG_PRODUCES: &[&str] = &[
    "text/plain",
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
/// A response body that is a plain string (logs, streams), not a definition.
const STRING_RESPONSE: &str = "string";

const JSON_YAML: &[&str] = &["application/json", "application/yaml"];
const LIST_PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json;stream=watch",
];
const ANY: &[&str] = &["*/*"];
const PATCH_CONSUMES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

struct Response {
    code: &'static str,
    description: &'static str,
    definition: String,
}

struct Operation {
    method: &'static str,
    id: String,
    description: String,
    action: &'static str,
    gvk: Option<Gvk>,
    params: Vec<Param>,
    body: Option<(String, bool)>,
    consumes: &'static [&'static str],
    produces: &'static [&'static str],
    responses: Vec<Response>,
    tag: String,
}

/// One path and its operations.
pub(super) struct PathItem {
    pub path: String,
    params: Vec<Param>,
    /// The `{name}` parameter's description names the kind ("name of the Pod").
    name_description: Option<String>,
    ops: Vec<Operation>,
}

impl PathItem {
    /// The v2 (swagger) path item.
    pub fn to_v2(&self) -> Value {
        let mut item = Map::new();
        for op in &self.ops {
            item.insert(op.method.into(), op.to_v2());
        }
        item.insert("parameters".into(), Value::Array(self.params_json(false)));
        Value::Object(item)
    }

    /// The v3 path item.
    pub fn to_v3(&self) -> Value {
        let mut item = Map::new();
        for op in &self.ops {
            item.insert(op.method.into(), op.to_v3());
        }
        item.insert("parameters".into(), Value::Array(self.params_json(true)));
        Value::Object(item)
    }

    /// Adds the definitions the operations' bodies and responses refer to.
    pub fn collect_refs(&self, out: &mut BTreeSet<String>) {
        for op in &self.ops {
            if let Some((def, _)) = &op.body {
                out.insert(def.clone());
            }
            for r in op
                .responses
                .iter()
                .filter(|r| r.definition != STRING_RESPONSE)
            {
                out.insert(r.definition.clone());
            }
        }
    }

    fn params_json(&self, v3: bool) -> Vec<Value> {
        self.params
            .iter()
            .map(|p| {
                let description = match (&self.name_description, p.name) {
                    (Some(d), "name") => d.as_str(),
                    _ => p.description,
                };
                param_json(p, description, v3)
            })
            .collect()
    }
}

fn param_json(p: &Param, description: &str, v3: bool) -> Value {
    let location = match p.location {
        In::Query => "query",
        In::Path => "path",
    };
    let mut out = Map::new();
    out.insert("description".into(), json!(description));
    out.insert("in".into(), json!(location));
    out.insert("name".into(), json!(p.name));
    if p.location == In::Path {
        out.insert("required".into(), json!(true));
    }
    if v3 {
        out.insert("schema".into(), json!({"type": p.ty, "uniqueItems": true}));
    } else {
        out.insert("type".into(), json!(p.ty));
        out.insert("uniqueItems".into(), json!(true));
    }
    Value::Object(out)
}

impl Operation {
    fn extensions(&self, out: &mut Map<String, Value>) {
        out.insert("x-kubernetes-action".into(), json!(self.action));
        if let Some(gvk) = &self.gvk {
            out.insert("x-kubernetes-group-version-kind".into(), gvk.to_json());
        }
    }

    fn to_v2(&self) -> Value {
        let mut params = Vec::new();
        if let Some((def, required)) = &self.body {
            params.push(json!({
                "in": "body",
                "name": "body",
                "required": required,
                "schema": schemas::v2_ref(def),
            }));
        }
        params.extend(
            self.params
                .iter()
                .map(|p| param_json(p, p.description, false)),
        );
        let mut responses = Map::new();
        for r in &self.responses {
            responses.insert(
                r.code.into(),
                json!({"description": r.description, "schema": response_schema(&r.definition)}),
            );
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        let mut out = Map::new();
        out.insert("consumes".into(), json!(self.consumes));
        out.insert("description".into(), json!(self.description));
        out.insert("operationId".into(), json!(self.id));
        out.insert("parameters".into(), Value::Array(params));
        out.insert("produces".into(), json!(self.produces));
        out.insert("responses".into(), Value::Object(responses));
        out.insert("schemes".into(), json!(["https"]));
        out.insert("tags".into(), json!([self.tag]));
        self.extensions(&mut out);
        Value::Object(out)
    }

    fn to_v3(&self) -> Value {
        let mut out = Map::new();
        out.insert("description".into(), json!(self.description));
        out.insert("operationId".into(), json!(self.id));
        let params: Vec<Value> = self
            .params
            .iter()
            .map(|p| param_json(p, p.description, true))
            .collect();
        out.insert("parameters".into(), Value::Array(params));
        if let Some((def, required)) = &self.body {
            let schema = schemas::to_v3(&schemas::v2_ref(def));
            let content: Map<String, Value> = self
                .consumes
                .iter()
                .map(|ct| (ct.to_string(), json!({ "schema": schema })))
                .collect();
            out.insert(
                "requestBody".into(),
                json!({"content": content, "required": required}),
            );
        }
        let mut responses = Map::new();
        for r in &self.responses {
            let schema = schemas::to_v3(&response_schema(&r.definition));
            let content: Map<String, Value> = self
                .produces
                .iter()
                .map(|ct| (ct.to_string(), json!({ "schema": schema })))
                .collect();
            responses.insert(
                r.code.into(),
                json!({"content": content, "description": r.description}),
            );
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        out.insert("responses".into(), Value::Object(responses));
        out.insert("tags".into(), json!([self.tag]));
        self.extensions(&mut out);
        Value::Object(out)
    }
}

fn response_schema(definition: &str) -> Value {
    if definition == STRING_RESPONSE {
        json!({"type": "string"})
    } else {
        schemas::v2_ref(definition)
    }
}

/// `apps` → `apps`, `coordination.k8s.io` → `coordination`, `rbac.authorization.k8s.io` →
/// `rbacAuthorization`, `""` → `core`: how upstream spells a group in tags and operation ids.
fn group_ident(group: &str) -> String {
    if group.is_empty() {
        return "core".into();
    }
    let short = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut out = String::new();
    for (i, part) in short.split(['.', '-']).enumerate() {
        if i == 0 {
            out.push_str(part);
        } else {
            out.push_str(&capitalize(part));
        }
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn ok(definition: &str) -> Response {
    Response {
        code: "200",
        description: "OK",
        definition: definition.to_string(),
    }
}

fn created(definition: &str) -> Response {
    Response {
        code: "201",
        description: "Created",
        definition: definition.to_string(),
    }
}

fn accepted(definition: &str) -> Response {
    Response {
        code: "202",
        description: "Accepted",
        definition: definition.to_string(),
    }
}

/// How a subresource is served: which kind its body is and which verbs it has.
enum SubresourceShape {
    /// Same kind as the parent; read, replace and patch (`status`, `resize`, ...).
    Parent,
    /// A different kind; read, replace and patch (`scale`).
    Other(&'static str, Gvk),
    /// A different kind; create only (`binding`, `eviction`).
    Create(&'static str, Gvk),
    /// Pods' `log`: a plain-text stream read with GET.
    Log,
    /// Pods' `exec`: a stream protocol reached by upgrading a GET or POST ("connect").
    Connect(Gvk),
}

fn subresource_shape(name: &str) -> Option<SubresourceShape> {
    Some(match name {
        "status" | "ephemeralcontainers" | "resize" => SubresourceShape::Parent,
        "scale" => SubresourceShape::Other(SCALE, Gvk::new("autoscaling", "v1", "Scale")),
        "binding" => SubresourceShape::Create(BINDING, Gvk::new("", "v1", "Binding")),
        "eviction" => SubresourceShape::Create(EVICTION, Gvk::new("policy", "v1", "Eviction")),
        "log" => SubresourceShape::Log,
        "exec" => SubresourceShape::Connect(Gvk::new("", "v1", "PodExecOptions")),
        _ => return None,
    })
}

/// Every path of one group-version.
pub(super) fn paths_for(
    gv: &GroupVersion,
    resources: &[OpenApiResource],
    set: &SchemaSet,
) -> Vec<PathItem> {
    let prefix = gv.url_prefix();
    let gv_ident = format!(
        "{}{}",
        capitalize(&group_ident(gv.group)),
        capitalize(gv.version)
    );
    let tag = format!("{}_{}", group_ident(gv.group), gv.version);

    let mut items = vec![PathItem {
        path: format!("{prefix}/"),
        params: vec![],
        name_description: None,
        ops: vec![Operation {
            method: "get",
            id: format!("get{gv_ident}APIResources"),
            description: "get available resources".into(),
            action: "get",
            gvk: None,
            params: vec![],
            body: None,
            consumes: JSON_YAML,
            produces: JSON_YAML,
            responses: vec![ok(API_RESOURCE_LIST)],
            tag: tag.clone(),
        }],
    }];

    for r in resources
        .iter()
        .filter(|r| r.group == gv.group && r.version == gv.version)
    {
        let kind = r.kind;
        let def = set.kind_definition(r);
        let list_def = set.list_definition(r);
        let gvk = Gvk::new(r.group, r.version, kind);
        let scope = if r.namespaced { "Namespaced" } else { "" };
        let collection = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let mut collection_params = Vec::new();
        if r.namespaced {
            collection_params.push(NAMESPACE);
        }
        collection_params.push(PRETTY);
        let mut item_params = vec![Param {
            name: "name",
            location: In::Path,
            ty: "string",
            description: "name of the object",
        }];
        item_params.extend(collection_params.iter().copied());
        let name_description = Some(format!("name of the {kind}"));

        let op = |method: &'static str,
                  id: String,
                  description: String,
                  action: &'static str,
                  params: &[Param]| Operation {
            method,
            id,
            description,
            action,
            gvk: Some(gvk.clone()),
            params: params.to_vec(),
            body: None,
            consumes: ANY,
            produces: JSON_YAML,
            responses: vec![],
            tag: tag.clone(),
        };

        items.push(PathItem {
            path: collection.clone(),
            params: collection_params.clone(),
            name_description: None,
            ops: vec![
                Operation {
                    produces: LIST_PRODUCES,
                    responses: vec![ok(&list_def)],
                    ..op(
                        "get",
                        format!("list{gv_ident}{scope}{kind}"),
                        format!("list or watch objects of kind {kind}"),
                        "list",
                        LIST_PARAMS,
                    )
                },
                Operation {
                    body: Some((def.clone(), true)),
                    responses: vec![ok(&def), created(&def), accepted(&def)],
                    ..op(
                        "post",
                        format!("create{gv_ident}{scope}{kind}"),
                        format!("create a {kind}"),
                        "post",
                        WRITE_PARAMS,
                    )
                },
                Operation {
                    body: Some((DELETE_OPTIONS.to_string(), false)),
                    responses: vec![ok(STATUS)],
                    ..op(
                        "delete",
                        format!("delete{gv_ident}Collection{scope}{kind}"),
                        format!("delete collection of {kind}"),
                        "deletecollection",
                        DELETE_COLLECTION_PARAMS,
                    )
                },
            ],
        });

        let item_path = format!("{collection}/{{name}}");
        items.push(PathItem {
            path: item_path.clone(),
            params: item_params.clone(),
            name_description: name_description.clone(),
            ops: vec![
                Operation {
                    responses: vec![ok(&def)],
                    ..op(
                        "get",
                        format!("read{gv_ident}{scope}{kind}"),
                        format!("read the specified {kind}"),
                        "get",
                        &[],
                    )
                },
                Operation {
                    body: Some((def.clone(), true)),
                    responses: vec![ok(&def), created(&def)],
                    ..op(
                        "put",
                        format!("replace{gv_ident}{scope}{kind}"),
                        format!("replace the specified {kind}"),
                        "put",
                        WRITE_PARAMS,
                    )
                },
                Operation {
                    body: Some((PATCH.to_string(), true)),
                    consumes: PATCH_CONSUMES,
                    responses: vec![ok(&def), created(&def)],
                    ..op(
                        "patch",
                        format!("patch{gv_ident}{scope}{kind}"),
                        format!("partially update the specified {kind}"),
                        "patch",
                        PATCH_PARAMS,
                    )
                },
                Operation {
                    body: Some((DELETE_OPTIONS.to_string(), false)),
                    responses: vec![ok(STATUS), accepted(STATUS)],
                    ..op(
                        "delete",
                        format!("delete{gv_ident}{scope}{kind}"),
                        format!("delete a {kind}"),
                        "delete",
                        DELETE_PARAMS,
                    )
                },
            ],
        });

        if r.namespaced {
            items.push(PathItem {
                path: format!("{prefix}/{}", r.plural),
                params: vec![PRETTY],
                name_description: None,
                ops: vec![Operation {
                    produces: LIST_PRODUCES,
                    responses: vec![ok(&list_def)],
                    ..op(
                        "get",
                        format!("list{gv_ident}{kind}ForAllNamespaces"),
                        format!("list or watch objects of kind {kind}"),
                        "list",
                        LIST_PARAMS,
                    )
                }],
            });
        }

        for sub in r.subresources.iter().copied() {
            let Some(shape) = subresource_shape(sub) else {
                continue;
            };
            let suffix = capitalize(sub);
            let path = format!("{item_path}/{sub}");
            let mut params = item_params.clone();
            let mut name_description = name_description.clone();
            let ops = match shape {
                SubresourceShape::Parent => read_replace_patch(&op, &def, gvk.clone(), |verb| {
                    (
                        format!("{verb}{gv_ident}{scope}{kind}{suffix}"),
                        format!("{sub} of the specified {kind}"),
                    )
                }),
                SubresourceShape::Other(body_def, body_gvk) => {
                    read_replace_patch(&op, body_def, body_gvk, |verb| {
                        (
                            format!("{verb}{gv_ident}{scope}{kind}{suffix}"),
                            format!("{sub} of the specified {kind}"),
                        )
                    })
                }
                SubresourceShape::Create(body_def, body_gvk) => vec![Operation {
                    gvk: Some(body_gvk),
                    body: Some((body_def.to_string(), true)),
                    responses: vec![ok(body_def), created(body_def), accepted(body_def)],
                    ..op(
                        "post",
                        format!("create{gv_ident}{scope}{kind}{suffix}"),
                        format!("create {sub} of a {kind}"),
                        "post",
                        WRITE_PARAMS,
                    )
                }],
                SubresourceShape::Log => vec![Operation {
                    produces: LOG_PRODUCES,
                    responses: vec![ok(STRING_RESPONSE)],
                    ..op(
                        "get",
                        format!("read{gv_ident}{scope}{kind}{suffix}"),
                        format!("read {sub} of the specified {kind}"),
                        "get",
                        LOG_PARAMS,
                    )
                }],
                SubresourceShape::Connect(options_gvk) => {
                    params.retain(|p| p.name != PRETTY.name);
                    name_description = Some(format!("name of the {}", options_gvk.kind));
                    ["get", "post"]
                        .into_iter()
                        .map(|method| Operation {
                            gvk: Some(options_gvk.clone()),
                            produces: ANY,
                            responses: vec![ok(STRING_RESPONSE)],
                            ..op(
                                method,
                                format!(
                                    "connect{gv_ident}{}{scope}{kind}{suffix}",
                                    capitalize(method)
                                ),
                                format!("connect {method} requests to {sub} of {kind}"),
                                "connect",
                                EXEC_PARAMS,
                            )
                        })
                        .collect()
                }
            };
            items.push(PathItem {
                path,
                params,
                name_description,
                ops,
            });
        }
    }
    items
}

/// Makes an operation of the resource at hand from method, id, description, action and
/// parameters; the other fields start empty.
type OperationBuilder<'a> =
    dyn Fn(&'static str, String, String, &'static str, &[Param]) -> Operation + 'a;

/// GET, PUT and PATCH of a subresource whose body is `def` of kind `gvk`; `names` gives the
/// operation id and the description's tail for a verb.
fn read_replace_patch(
    op: &OperationBuilder<'_>,
    def: &str,
    gvk: Gvk,
    names: impl Fn(&str) -> (String, String),
) -> Vec<Operation> {
    let (read_id, what) = names("read");
    let (replace_id, _) = names("replace");
    let (patch_id, _) = names("patch");
    vec![
        Operation {
            gvk: Some(gvk.clone()),
            responses: vec![ok(def)],
            ..op("get", read_id, format!("read {what}"), "get", &[])
        },
        Operation {
            gvk: Some(gvk.clone()),
            body: Some((def.to_string(), true)),
            responses: vec![ok(def), created(def)],
            ..op(
                "put",
                replace_id,
                format!("replace {what}"),
                "put",
                WRITE_PARAMS,
            )
        },
        Operation {
            gvk: Some(gvk),
            body: Some((PATCH.to_string(), true)),
            consumes: PATCH_CONSUMES,
            responses: vec![ok(def), created(def)],
            ..op(
                "patch",
                patch_id,
                format!("partially update {what}"),
                "patch",
                PATCH_PARAMS,
            )
        },
    ]
}
