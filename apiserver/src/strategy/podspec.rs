//! Pod specs, shared by Pods and every pod template (Deployment, ReplicaSet, DaemonSet,
//! Job): upstream's `SetDefaults_PodSpec`/`SetDefaults_Container`/… and `ValidatePodSpec`.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};
use skiff_apimachinery::validation::{self as v, FieldError};

use super::quantity::{self, Quantity};
use super::util::{
    arr_of, bool_of, child_obj, default_str, each_mut, has, int_of, is_empty, obj_of, set_default,
    str_of,
};
use super::{checks, inclusive_range_error};

/// Where a pod spec sits; a few defaults and checks differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    /// A Pod's own spec.
    Pod,
    /// The template of a Deployment, ReplicaSet or DaemonSet.
    Template,
    /// A Job's template: upstream defaults its restartPolicy to Always like any other, and
    /// Job validation then rejects it; not defaulting gives the same error for an unset
    /// policy and keeps a Job from ever holding `Always`.
    JobTemplate,
}

const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

// ---------------------------------------------------------------------------------------
// Defaulting.

/// Fill a pod spec's defaults. For `SpecKind::Pod` also the Pod-only ones
/// (`SetDefaults_Pod`): requests from limits, enableServiceLinks, host-network host ports.
pub fn default_pod_spec(spec: &mut Value, kind: SpecKind) {
    if !spec.is_object() {
        return;
    }
    default_str(spec, "dnsPolicy", "ClusterFirst");
    if kind != SpecKind::JobTemplate {
        default_str(spec, "restartPolicy", "Always");
    }
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    // The v1 conversion keeps the deprecated serviceAccount in step with
    // serviceAccountName, reading the old field when only it is set.
    let sa = str_of(spec, "serviceAccountName").to_string();
    let deprecated = str_of(spec, "serviceAccount").to_string();
    if sa.is_empty() && !deprecated.is_empty() {
        spec["serviceAccountName"] = json!(deprecated);
    }
    sync_deprecated_service_account(spec);

    for vol in each_mut(spec, "volumes") {
        default_volume(vol);
    }
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each_mut(spec, key) {
            default_container(c);
        }
    }
    if let Some(overhead) = spec.get_mut("overhead") {
        quantity::canonicalize_list(overhead);
    }
    if let Some(res) = spec.get_mut("resources").filter(|r| r.is_object()) {
        for key in ["limits", "requests"] {
            if let Some(list) = res.get_mut(key) {
                quantity::canonicalize_list(list);
            }
        }
    }

    if kind == SpecKind::Pod {
        for key in ["containers", "initContainers"] {
            for c in each_mut(spec, key) {
                requests_from_limits(c);
            }
        }
        set_default(spec, "enableServiceLinks", json!(true));
        if bool_of(spec, "hostNetwork") {
            for key in ["containers", "initContainers"] {
                for c in each_mut(spec, key) {
                    for p in each_mut(c, "ports") {
                        if int_of(p, "hostPort").unwrap_or(0) == 0
                            && let Some(cp) = int_of(p, "containerPort")
                        {
                            p["hostPort"] = json!(cp);
                        }
                    }
                }
            }
        }
    }
}

/// Output conversion writes `serviceAccount` as a copy of `serviceAccountName`.
pub fn sync_deprecated_service_account(spec: &mut Value) {
    let sa = str_of(spec, "serviceAccountName").to_string();
    if let Some(m) = spec.as_object_mut() {
        if sa.is_empty() {
            m.remove("serviceAccount");
        } else {
            m.insert("serviceAccount".into(), json!(sa));
        }
    }
}

fn default_volume(vol: &mut Value) {
    let Some(m) = vol.as_object_mut() else {
        return;
    };
    if !VOLUME_SOURCES
        .iter()
        .any(|s| m.get(*s).is_some_and(|x| !x.is_null()))
    {
        m.insert("emptyDir".into(), json!({}));
    }
    for (source, mode) in [
        ("secret", 420),
        ("configMap", 420),
        ("downwardAPI", 420),
        ("projected", 420),
    ] {
        if let Some(s) = m.get_mut(source).filter(|s| s.is_object()) {
            set_default(s, "defaultMode", json!(mode));
        }
    }
    if let Some(hp) = m.get_mut("hostPath").filter(|s| s.is_object()) {
        set_default(hp, "type", json!(""));
    }
    if let Some(d) = m.get_mut("downwardAPI").filter(|s| s.is_object()) {
        for item in each_mut(d, "items") {
            default_field_ref(item);
        }
    }
    if let Some(p) = m.get_mut("projected").filter(|s| s.is_object()) {
        for src in each_mut(p, "sources") {
            if let Some(d) = src.get_mut("downwardAPI").filter(|s| s.is_object()) {
                for item in each_mut(d, "items") {
                    default_field_ref(item);
                }
            }
            if let Some(t) = src.get_mut("serviceAccountToken").filter(|s| s.is_object()) {
                set_default(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(spec) = m
        .get_mut("ephemeral")
        .and_then(|e| e.get_mut("volumeClaimTemplate"))
        .and_then(|t| t.get_mut("spec"))
        .filter(|s| s.is_object())
    {
        set_default(spec, "volumeMode", json!("Filesystem"));
        if let Some(res) = spec.get_mut("resources") {
            for key in ["limits", "requests"] {
                if let Some(list) = res.get_mut(key) {
                    quantity::canonicalize_list(list);
                }
            }
        }
    }
    if let Some(img) = m.get_mut("image").filter(|s| s.is_object())
        && str_of(img, "pullPolicy").is_empty()
    {
        let policy = pull_policy_for(str_of(img, "reference"));
        img["pullPolicy"] = json!(policy);
    }
    if let Some(iscsi) = m.get_mut("iscsi").filter(|s| s.is_object()) {
        default_str(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = m.get_mut("rbd").filter(|s| s.is_object()) {
        default_str(rbd, "pool", "rbd");
        default_str(rbd, "user", "admin");
        default_str(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(az) = m.get_mut("azureDisk").filter(|s| s.is_object()) {
        set_default(az, "cachingMode", json!("ReadWrite"));
        set_default(az, "fsType", json!("ext4"));
        set_default(az, "readOnly", json!(false));
        set_default(az, "kind", json!("Shared"));
    }
    if let Some(sio) = m.get_mut("scaleIO").filter(|s| s.is_object()) {
        default_str(sio, "storageMode", "ThinProvisioned");
        default_str(sio, "fsType", "xfs");
    }
}

fn default_field_ref(holder: &mut Value) {
    if let Some(f) = holder.get_mut("fieldRef").filter(|f| f.is_object()) {
        default_str(f, "apiVersion", "v1");
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    if str_of(c, "imagePullPolicy").is_empty() {
        let policy = pull_policy_for(str_of(c, "image"));
        c["imagePullPolicy"] = json!(policy);
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for p in each_mut(c, "ports") {
        default_str(p, "protocol", "TCP");
    }
    for e in each_mut(c, "env") {
        if let Some(vf) = e.get_mut("valueFrom").filter(|x| x.is_object()) {
            default_field_ref(vf);
        }
    }
    // Resources is a plain struct upstream, so it is always written, if only as `{}`.
    if let Some(res) = child_obj(c, "resources") {
        for key in ["limits", "requests"] {
            if let Some(list) = res.get_mut(key) {
                quantity::canonicalize_list(list);
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            for (k, d) in [
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ] {
                if int_of(p, k).unwrap_or(0) == 0 {
                    p[k] = json!(d);
                }
            }
            default_http_get(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").filter(|l| l.is_object()) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).filter(|h| h.is_object()) {
                default_http_get(h);
            }
        }
    }
}

fn default_http_get(handler: &mut Value) {
    if let Some(h) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        default_str(h, "path", "/");
        default_str(h, "scheme", "HTTP");
    }
}

/// Requests default to limits for resources with only a limit (Pods only).
fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let Some(res) = child_obj(c, "resources") else {
        return;
    };
    let Some(requests) = child_obj(res, "requests").and_then(Value::as_object_mut) else {
        return;
    };
    for (k, q) in limits {
        requests.entry(k).or_insert(q);
    }
}

/// `Always` for `:latest` or an untagged image without digest, else `IfNotPresent`; an
/// unparsable reference counts as untagged-with-error, i.e. `IfNotPresent`, as upstream
/// ignores the parse error and sees no tag.
pub fn pull_policy_for(image: &str) -> &'static str {
    match image_tag(image) {
        Some(t) if t == "latest" => "Always",
        _ => "IfNotPresent",
    }
}

/// The tag of a docker reference: `Some("latest")` when there is neither tag nor digest,
/// `None` when only a digest is given or the reference does not parse.
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.trim() != image {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d.split_once(':')?;
        if algo.is_empty() || hex.len() < 32 {
            return None;
        }
    }
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if !valid_repository(repo) {
        return None;
    }
    match tag {
        Some(t) => {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.as_bytes()[0] != b'.'
                && t.as_bytes()[0] != b'-'
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            ok.then(|| t.to_string())
        }
        None if digest.is_some() => None,
        None => Some("latest".to_string()),
    }
}

/// Docker's reference grammar for the repository: an optional domain (with dots, a port or
/// `localhost`), then lower-case path components joined by `.`, `_`, `__` or dashes.
fn valid_repository(repo: &str) -> bool {
    if repo.is_empty() || repo.len() > 255 {
        return false;
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let host = first.split(':').next().unwrap_or("");
            let port_ok = first
                .split_once(':')
                .is_none_or(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if host.is_empty()
                || !port_ok
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return false;
            }
            parts.remove(0);
        }
    }
    parts.iter().all(|c| {
        let b = c.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.last()
                .is_some_and(|l| l.is_ascii_lowercase() || l.is_ascii_digit())
            && b.iter().all(|&x| {
                x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
            })
    })
}

// ---------------------------------------------------------------------------------------
// QoS.

/// Upstream's `ComputePodQOS`: BestEffort without any cpu/memory request or limit,
/// Guaranteed when every container limits both and requests equal limits, else Burstable.
pub fn compute_qos(spec: &Value) -> &'static str {
    // Pod-level resources, when set, decide alone.
    if let Some(res) = spec.get("resources").filter(|r| r.is_object())
        && (!is_empty(res, "requests") || !is_empty(res, "limits"))
    {
        return qos_of(&[res], true);
    }
    let resources: Vec<&Value> = arr_of(spec, "containers")
        .iter()
        .chain(arr_of(spec, "initContainers"))
        .map(|c| c.get("resources").unwrap_or(&Value::Null))
        .collect();
    qos_of(&resources, false)
}

fn qos_of(all: &[&Value], pod_level: bool) -> &'static str {
    const SUPPORTED: [&str; 2] = ["cpu", "memory"];
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    for res in all {
        for (name, q) in obj_of(res, "requests").into_iter().flatten() {
            let Some(name) = SUPPORTED.iter().copied().find(|s| s == name) else {
                continue;
            };
            if let Some(q) = quantity::parse_value(q).filter(|q| q.nanos > 0) {
                let sum = requests.get(name).map_or(q, |prev| prev.plus(q));
                requests.insert(name, sum);
            }
        }
        let mut found: HashSet<&str> = HashSet::new();
        for (name, q) in obj_of(res, "limits").into_iter().flatten() {
            let Some(name) = SUPPORTED.iter().copied().find(|s| s == name) else {
                continue;
            };
            if let Some(q) = quantity::parse_value(q).filter(|q| q.nanos > 0) {
                found.insert(name);
                let sum = limits.get(name).map_or(q, |prev| prev.plus(q));
                limits.insert(name, sum);
            }
        }
        if !pod_level && found.len() != SUPPORTED.len() {
            guaranteed = false;
        }
    }
    if pod_level && limits.len() != SUPPORTED.len() {
        guaranteed = false;
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (name, req) in &requests {
            match limits.get(name) {
                Some(lim) if lim.nanos == req.nanos => {}
                _ => {
                    guaranteed = false;
                    break;
                }
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

// ---------------------------------------------------------------------------------------
// Validation.

/// Upstream's `ValidatePodTemplateSpec` for a template at `path` (e.g. `spec.template`):
/// template labels and annotations, then the pod spec at `<path>.spec`.
pub fn validate_template(template: &Value, path: &str, kind: SpecKind) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    errs.extend(v::validate_labels(
        meta.get("labels").unwrap_or(&Value::Null),
        &format!("{path}.labels"),
    ));
    errs.extend(v::validate_annotations(
        meta.get("annotations").unwrap_or(&Value::Null),
        &format!("{path}.annotations"),
    ));
    errs.extend(validate_pod_annotations(
        meta.get("annotations").unwrap_or(&Value::Null),
        &format!("{path}.annotations"),
    ));
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let spec_path = format!("{path}.spec");
    errs.extend(validate_pod_spec(spec, &spec_path, kind));
    if !is_empty(spec, "ephemeralContainers") {
        errs.push(FieldError::forbidden(
            format!("{spec_path}.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// Pod annotations with meaning (`ValidatePodSpecificAnnotations`): the deletion cost must
/// be an int32.
pub fn validate_pod_annotations(annotations: &Value, path: &str) -> Vec<FieldError> {
    const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
    match annotations.get(DELETION_COST).and_then(Value::as_str) {
        Some(cost) if cost.parse::<i32>().is_err() || cost.starts_with('+') => {
            vec![FieldError::invalid(
                format!("{path}[{DELETION_COST}]"),
                cost,
                "must be a 32bit integer",
            )]
        }
        _ => Vec::new(),
    }
}

/// Upstream's `ValidatePodSpec` for the spec at `path`.
pub fn validate_pod_spec(spec: &Value, path: &str, kind: SpecKind) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !has(spec, "terminationGracePeriodSeconds") {
        errs.push(FieldError::required(
            format!("{path}.terminationGracePeriodSeconds"),
            "",
        ));
    }
    let grace = int_of(spec, "terminationGracePeriodSeconds");
    let restart_policy = str_of(spec, "restartPolicy");
    let volumes = validate_volumes(
        arr_of(spec, "volumes"),
        &format!("{path}.volumes"),
        &mut errs,
    );
    validate_containers(spec, path, &volumes, grace, &mut errs);
    validate_init_containers(spec, path, &volumes, grace, &mut errs);
    validate_host_network_ports(spec, path, kind, &mut errs);
    if kind != SpecKind::JobTemplate || !restart_policy.is_empty() {
        validate_enum(
            restart_policy,
            &format!("{path}.restartPolicy"),
            &["Always", "OnFailure", "Never"],
            &mut errs,
        );
    }
    validate_enum(
        str_of(spec, "dnsPolicy"),
        &format!("{path}.dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        &mut errs,
    );
    errs.extend(v::validate_labels(
        spec.get("nodeSelector").unwrap_or(&Value::Null),
        &format!("{path}.nodeSelector"),
    ));
    validate_pod_security_context(spec, path, &mut errs);
    for (i, s) in arr_of(spec, "imagePullSecrets").iter().enumerate() {
        if obj_of_value(s).is_some_and(|m| m.keys().any(|k| k != "name")) {
            errs.push(FieldError::invalid(
                format!("{path}.imagePullSecrets[{i}]"),
                s.clone(),
                "only name may be set",
            ));
        }
    }
    validate_dns_config(spec, path, &mut errs);
    for (i, g) in arr_of(spec, "readinessGates").iter().enumerate() {
        qualified_name(
            str_of(g, "conditionType"),
            &format!("{path}.readinessGates[{i}].conditionType"),
            &mut errs,
        );
    }
    let mut gates = HashSet::new();
    for (i, g) in arr_of(spec, "schedulingGates").iter().enumerate() {
        let name = str_of(g, "name");
        let p = format!("{path}.schedulingGates[{i}]");
        qualified_name(name, &p, &mut errs);
        if !gates.insert(name) {
            errs.push(FieldError::duplicate(p, name));
        }
    }
    validate_topology_spread(spec, path, &mut errs);
    for (key, what) in [
        ("serviceAccountName", "serviceAccountName"),
        ("nodeName", "nodeName"),
    ] {
        let value = str_of(spec, key);
        if !value.is_empty() {
            for msg in v::name_is_dns_subdomain(value, false) {
                errs.push(FieldError::invalid(format!("{path}.{what}"), value, msg));
            }
        }
    }
    if let Some(ads) = int_of(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            ads,
            inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    for key in ["hostname", "subdomain"] {
        let value = str_of(spec, key);
        if !value.is_empty() {
            dns_label(value, &format!("{path}.{key}"), &mut errs);
        }
    }
    errs.extend(validate_tolerations(
        arr_of(spec, "tolerations"),
        &format!("{path}.tolerations"),
    ));
    for (i, alias) in arr_of(spec, "hostAliases").iter().enumerate() {
        let p = format!("{path}.hostAliases[{i}]");
        errs.extend(checks::valid_ip(&format!("{p}.ip"), str_of(alias, "ip")));
        for (j, h) in arr_of(alias, "hostnames").iter().enumerate() {
            let h = h.as_str().unwrap_or("");
            for msg in v::is_dns1123_subdomain(h) {
                errs.push(FieldError::invalid(format!("{p}.hostnames[{j}]"), h, msg));
            }
        }
    }
    for key in ["priorityClassName", "runtimeClassName"] {
        let value = str_of(spec, key);
        if has(spec, key) && (key == "runtimeClassName" || !value.is_empty()) {
            for msg in v::name_is_dns_subdomain(value, false) {
                errs.push(FieldError::invalid(format!("{path}.{key}"), value, msg));
            }
        }
    }
    if has(spec, "preemptionPolicy") {
        validate_enum(
            str_of(spec, "preemptionPolicy"),
            &format!("{path}.preemptionPolicy"),
            &["PreemptLowerPriority", "Never"],
            &mut errs,
        );
    }
    if let Some(os) = spec.get("os").filter(|o| o.is_object()) {
        let name = str_of(os, "name");
        if name.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.os.name"),
                "cannot be empty",
            ));
        } else if name != "linux" && name != "windows" {
            errs.push(FieldError::not_supported(
                format!("{path}.os"),
                name,
                &["linux", "windows"],
            ));
        }
    }
    errs
}

fn obj_of_value(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

/// Required when empty, NotSupported (listing `valid` in this order) when unknown.
fn validate_enum(value: &str, field: &str, valid: &[&str], errs: &mut Vec<FieldError>) {
    if value.is_empty() {
        errs.push(FieldError::required(field, ""));
    } else if !valid.contains(&value) {
        errs.push(FieldError::not_supported(field, value, valid));
    }
}

fn dns_label(value: &str, field: &str, errs: &mut Vec<FieldError>) {
    for msg in v::is_dns1123_label(value) {
        errs.push(FieldError::invalid(field, value, msg));
    }
}

fn qualified_name(value: &str, field: &str, errs: &mut Vec<FieldError>) {
    for msg in v::is_qualified_name(value) {
        errs.push(FieldError::invalid(field, value, msg));
    }
}

/// Volumes: source checks, then names (DNS labels, unique). Returns the names of the valid
/// volumes and whether each is a claim (for volumeDevices).
fn validate_volumes(
    volumes: &[Value],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> BTreeMap<String, bool> {
    let mut names = BTreeMap::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_of(vol, "name");
        let mut el = validate_volume_source(vol, &p);
        if name.is_empty() {
            el.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            dns_label(name, &format!("{p}.name"), &mut el);
        }
        if names.contains_key(name) {
            el.push(FieldError::duplicate(format!("{p}.name"), name));
        }
        if el.is_empty() {
            let claim = has(vol, "persistentVolumeClaim") || has(vol, "ephemeral");
            names.insert(name.to_string(), claim);
        } else {
            errs.extend(el);
        }
    }
    names
}

fn validate_volume_source(vol: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut count = 0;
    for source in VOLUME_SOURCES {
        let Some(s) = vol.get(*source).filter(|s| !s.is_null()) else {
            continue;
        };
        let sp = format!("{p}.{source}");
        if count > 0 {
            errs.push(FieldError::forbidden(
                sp,
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let required = |key: &str, errs: &mut Vec<FieldError>| {
            if str_of(s, key).is_empty() {
                errs.push(FieldError::required(format!("{sp}.{key}"), ""));
            }
        };
        match *source {
            "hostPath" => {
                let hp = str_of(s, "path");
                if hp.is_empty() {
                    errs.push(FieldError::required(format!("{sp}.path"), ""));
                } else {
                    errs.extend(checks::path_no_backsteps(hp, &format!("{sp}.path")));
                    let t = str_of(s, "type");
                    const TYPES: [&str; 8] = [
                        "",
                        "BlockDevice",
                        "CharDevice",
                        "Directory",
                        "DirectoryOrCreate",
                        "File",
                        "FileOrCreate",
                        "Socket",
                    ];
                    if !TYPES.contains(&t) {
                        errs.push(FieldError::not_supported(format!("{sp}.type"), t, &TYPES));
                    }
                }
            }
            "secret" => {
                required("secretName", &mut errs);
                file_mode(s, "defaultMode", &sp, &mut errs);
                key_to_paths(s, &sp, &mut errs);
            }
            "configMap" => {
                required("name", &mut errs);
                file_mode(s, "defaultMode", &sp, &mut errs);
                key_to_paths(s, &sp, &mut errs);
            }
            "persistentVolumeClaim" => required("claimName", &mut errs),
            "nfs" => {
                required("server", &mut errs);
                required("path", &mut errs);
                let np = str_of(s, "path");
                if !np.starts_with('/') {
                    errs.push(FieldError::invalid(
                        format!("{sp}.path"),
                        np,
                        "must be an absolute path",
                    ));
                }
            }
            "downwardAPI" => {
                file_mode(s, "defaultMode", &sp, &mut errs);
                for item in arr_of(s, "items") {
                    let path_val = str_of(item, "path");
                    if path_val.is_empty() {
                        errs.push(FieldError::required(format!("{sp}.path"), ""));
                    }
                    errs.extend(checks::local_non_reserved_path(
                        path_val,
                        &format!("{sp}.path"),
                    ));
                }
            }
            "projected" => {
                file_mode(s, "defaultMode", &sp, &mut errs);
                for (j, src) in arr_of(s, "sources").iter().enumerate() {
                    let srcp = format!("{sp}.sources[{j}]");
                    for kind in ["secret", "configMap"] {
                        if let Some(x) = src.get(kind).filter(|x| x.is_object()) {
                            if str_of(x, "name").is_empty() {
                                errs.push(FieldError::required(format!("{srcp}.{kind}.name"), ""));
                            }
                            key_to_paths(x, &format!("{srcp}.{kind}"), &mut errs);
                        }
                    }
                    if let Some(t) = src.get("serviceAccountToken").filter(|x| x.is_object()) {
                        let tp = format!("{srcp}.serviceAccountToken");
                        let exp = int_of(t, "expirationSeconds").unwrap_or(0);
                        if exp < 600 {
                            errs.push(FieldError::invalid(
                                format!("{tp}.expirationSeconds"),
                                exp,
                                "may not specify a duration less than 10 minutes",
                            ));
                        } else if exp > 1 << 32 {
                            errs.push(FieldError::invalid(
                                format!("{tp}.expirationSeconds"),
                                exp,
                                "may not specify a duration larger than 2^32 seconds",
                            ));
                        }
                        if str_of(t, "path").is_empty() {
                            errs.push(FieldError::required(format!("{tp}.path"), ""));
                        }
                    }
                }
            }
            "csi" => required("driver", &mut errs),
            "ephemeral" if !has(s, "volumeClaimTemplate") => {
                errs.push(FieldError::required(
                    format!("{sp}.volumeClaimTemplate"),
                    "",
                ));
            }
            "emptyDir" => {
                if let Some(q) = s.get("sizeLimit").and_then(quantity::parse_value)
                    && q.nanos < 0
                {
                    errs.push(FieldError::forbidden(
                        format!("{sp}.sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
            "image" => {
                if str_of(s, "reference").is_empty() {
                    errs.push(FieldError::required(format!("{sp}.reference"), ""));
                }
                let pp = str_of(s, "pullPolicy");
                if !["Always", "IfNotPresent", "Never"].contains(&pp) {
                    errs.push(FieldError::not_supported(
                        format!("{sp}.pullPolicy"),
                        pp,
                        &["Always", "IfNotPresent", "Never"],
                    ));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(p, "must specify a volume type"));
    }
    errs
}

fn file_mode(s: &Value, key: &str, sp: &str, errs: &mut Vec<FieldError>) {
    if let Some(mode) = int_of(s, key)
        && !(0..=0o777).contains(&mode)
    {
        errs.push(FieldError::invalid(
            format!("{sp}.{key}"),
            mode,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}

fn key_to_paths(s: &Value, sp: &str, errs: &mut Vec<FieldError>) {
    for (i, kp) in arr_of(s, "items").iter().enumerate() {
        let ip = format!("{sp}.items[{i}]");
        if str_of(kp, "key").is_empty() {
            errs.push(FieldError::required(format!("{ip}.key"), ""));
        }
        let path = str_of(kp, "path");
        if path.is_empty() {
            errs.push(FieldError::required(format!("{ip}.path"), ""));
        }
        errs.extend(checks::local_non_reserved_path(path, &format!("{ip}.path")));
        file_mode(kp, "mode", &ip, errs);
    }
}

fn validate_containers(
    spec: &Value,
    path: &str,
    volumes: &BTreeMap<String, bool>,
    grace: Option<i64>,
    errs: &mut Vec<FieldError>,
) {
    let cpath = format!("{path}.containers");
    let containers = arr_of(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(cpath, ""));
        return;
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{cpath}[{i}]");
        validate_container_common(c, &p, volumes, str_of(spec, "restartPolicy"), errs);
        let name = str_of(c, "name");
        if !names.insert(name) {
            errs.push(FieldError::duplicate(format!("{p}.name"), name));
        }
        validate_probes_and_lifecycle(c, &p, grace, errs);
        if has(c, "restartPolicy") {
            errs.push(FieldError::forbidden(
                format!("{p}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(host_port_conflicts(containers, &cpath));
}

fn validate_init_containers(
    spec: &Value,
    path: &str,
    volumes: &BTreeMap<String, bool>,
    grace: Option<i64>,
    errs: &mut Vec<FieldError>,
) {
    let ipath = format!("{path}.initContainers");
    let mut names: HashSet<&str> = arr_of(spec, "containers")
        .iter()
        .map(|c| str_of(c, "name"))
        .collect();
    for (i, c) in arr_of(spec, "initContainers").iter().enumerate() {
        let p = format!("{ipath}[{i}]");
        validate_container_common(c, &p, volumes, str_of(spec, "restartPolicy"), errs);
        let restart = str_of(c, "restartPolicy");
        let restart_always = restart == "Always";
        if has(c, "restartPolicy") && !restart_always {
            errs.push(FieldError::not_supported(
                format!("{p}.restartPolicy"),
                restart,
                &["Always"],
            ));
        }
        let name = str_of(c, "name");
        if names.contains(name) {
            errs.push(FieldError::duplicate(format!("{p}.name"), name));
        } else if !name.is_empty() {
            names.insert(name);
        }
        errs.extend(host_port_conflicts(std::slice::from_ref(c), &ipath));
        if restart_always {
            validate_probes_and_lifecycle(c, &p, grace, errs);
        } else {
            for key in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if has(c, key) {
                    errs.push(FieldError::forbidden(
                        format!("{p}.{key}"),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

/// Checks shared by every kind of container: name, image, ports, env, mounts, pull policy,
/// resources and security context.
fn validate_container_common(
    c: &Value,
    p: &str,
    volumes: &BTreeMap<String, bool>,
    pod_restart_policy: &str,
    errs: &mut Vec<FieldError>,
) {
    let name = str_of(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{p}.name"), ""));
    } else {
        dns_label(name, &format!("{p}.name"), errs);
    }
    if str_of(c, "image").is_empty() {
        errs.push(FieldError::required(format!("{p}.image"), ""));
    }
    validate_enum(
        str_of(c, "terminationMessagePolicy"),
        &format!("{p}.terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        errs,
    );
    validate_container_ports(arr_of(c, "ports"), &format!("{p}.ports"), errs);
    validate_env(arr_of(c, "env"), &format!("{p}.env"), errs);
    validate_env_from(arr_of(c, "envFrom"), &format!("{p}.envFrom"), errs);
    validate_volume_mounts(c, p, volumes, errs);
    let pull = str_of(c, "imagePullPolicy");
    validate_enum(
        pull,
        &format!("{p}.imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
        errs,
    );
    validate_resources(
        c.get("resources").unwrap_or(&Value::Null),
        &format!("{p}.resources"),
        errs,
    );
    for rp in arr_of(c, "resizePolicy") {
        let rpp = format!("{p}.resizePolicy");
        let res = str_of(rp, "resourceName");
        if res.is_empty() {
            errs.push(FieldError::required(&rpp, ""));
        } else if res != "cpu" && res != "memory" {
            errs.push(FieldError::not_supported(&rpp, res, &["cpu", "memory"]));
        }
        let policy = str_of(rp, "restartPolicy");
        if policy.is_empty() {
            errs.push(FieldError::required(&rpp, ""));
        } else if policy != "NotRequired" && policy != "RestartContainer" {
            errs.push(FieldError::not_supported(
                &rpp,
                policy,
                &["NotRequired", "RestartContainer"],
            ));
        }
        if pod_restart_policy == "Never" && policy != "NotRequired" {
            errs.push(FieldError::invalid(
                &rpp,
                policy,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
    if let Some(sc) = c.get("securityContext").filter(|s| s.is_object()) {
        let sp = format!("{p}.securityContext");
        for key in ["runAsUser", "runAsGroup"] {
            if let Some(id) = int_of(sc, key) {
                for msg in checks::is_valid_id(id) {
                    errs.push(FieldError::invalid(format!("{sp}.{key}"), id, msg));
                }
            }
        }
        if let Some(pm) = sc.get("procMount").and_then(Value::as_str)
            && pm != "Default"
            && pm != "Unmasked"
        {
            errs.push(FieldError::not_supported(
                format!("{sp}.procMount"),
                pm,
                &["Default", "Unmasked"],
            ));
        }
        if sc.get("allowPrivilegeEscalation") == Some(&Value::Bool(false))
            && bool_of(sc, "privileged")
        {
            errs.push(FieldError::invalid(
                &sp,
                sc.clone(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        validate_seccomp_profile(
            sc.get("seccompProfile"),
            &format!("{sp}.seccompProfile"),
            errs,
        );
    }
}

fn validate_seccomp_profile(profile: Option<&Value>, p: &str, errs: &mut Vec<FieldError>) {
    let Some(sp) = profile.filter(|x| x.is_object()) else {
        return;
    };
    let t = str_of(sp, "type");
    const TYPES: [&str; 3] = ["Localhost", "RuntimeDefault", "Unconfined"];
    if t.is_empty() {
        errs.push(FieldError::required(
            format!("{p}.type"),
            "type is required when seccompProfile is set",
        ));
    } else if !TYPES.contains(&t) {
        errs.push(FieldError::not_supported(format!("{p}.type"), t, &TYPES));
    }
    if t == "Localhost" {
        match sp.get("localhostProfile").and_then(Value::as_str) {
            None => errs.push(FieldError::required(
                format!("{p}.localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(lp) => errs.extend(checks::local_descending_path(
                lp,
                &format!("{p}.localhostProfile"),
            )),
        }
    } else if has(sp, "localhostProfile") {
        errs.push(FieldError::invalid(
            format!("{p}.localhostProfile"),
            sp.clone(),
            "can only be set when seccomp type is Localhost",
        ));
    }
}

fn validate_container_ports(ports: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = checks::is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(format!("{p}.name"), name, msg));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{p}.name"), name));
            }
        }
        let cp = int_of(port, "containerPort").unwrap_or(0);
        if cp == 0 {
            errs.push(FieldError::required(format!("{p}.containerPort"), ""));
        } else {
            for msg in checks::is_valid_port_num(cp) {
                errs.push(FieldError::invalid(format!("{p}.containerPort"), cp, msg));
            }
        }
        let hp = int_of(port, "hostPort").unwrap_or(0);
        if hp != 0 {
            for msg in checks::is_valid_port_num(hp) {
                errs.push(FieldError::invalid(format!("{p}.hostPort"), hp, msg));
            }
        }
        validate_protocol(str_of(port, "protocol"), &format!("{p}.protocol"), errs);
    }
}

/// Protocols of container and service ports: Required, or one of SCTP, TCP, UDP.
pub fn validate_protocol(protocol: &str, field: &str, errs: &mut Vec<FieldError>) {
    if protocol.is_empty() {
        errs.push(FieldError::required(field, ""));
    } else if !["SCTP", "TCP", "UDP"].contains(&protocol) {
        errs.push(FieldError::not_supported(
            field,
            protocol,
            &["SCTP", "TCP", "UDP"],
        ));
    }
}

/// Host ports may not repeat across the given containers (`protocol/hostIP/port`).
fn host_port_conflicts(containers: &[Value], path: &str) -> Vec<FieldError> {
    let mut seen = HashSet::new();
    let mut errs = Vec::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in arr_of(c, "ports").iter().enumerate() {
            let hp = int_of(port, "hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{}",
                str_of(port, "protocol"),
                str_of(port, "hostIP"),
                hp
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    format!("{path}[{ci}].ports[{pi}].hostPort"),
                    key,
                ));
            }
        }
    }
    errs
}

/// With hostNetwork, host ports must equal container ports (a template may leave them 0,
/// they are defaulted when the Pod is created).
fn validate_host_network_ports(
    spec: &Value,
    path: &str,
    kind: SpecKind,
    errs: &mut Vec<FieldError>,
) {
    let host_network = bool_of(spec, "hostNetwork");
    if !host_network {
        return;
    }
    for (i, c) in arr_of(spec, "containers").iter().enumerate() {
        for (j, port) in arr_of(c, "ports").iter().enumerate() {
            let hp = int_of(port, "hostPort").unwrap_or(0);
            let cp = int_of(port, "containerPort").unwrap_or(0);
            if (kind == SpecKind::Pod || hp != 0) && hp != cp {
                errs.push(FieldError::invalid(
                    format!("{path}.containers[{i}].ports[{j}].hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn validate_env(env: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    for (i, e) in env.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_of(e, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            for msg in checks::is_env_var_name(name) {
                errs.push(FieldError::invalid(format!("{p}.name"), name, msg));
            }
        }
        let Some(vf) = e.get("valueFrom").filter(|x| x.is_object()) else {
            continue;
        };
        let vp = format!("{p}.valueFrom");
        let mut sources = 0;
        if let Some(fr) = vf.get("fieldRef").filter(|x| x.is_object()) {
            sources += 1;
            validate_field_ref(fr, &format!("{vp}.fieldRef"), errs);
        }
        if let Some(rr) = vf.get("resourceFieldRef").filter(|x| x.is_object()) {
            sources += 1;
            let res = str_of(rr, "resource");
            let rp = format!("{vp}.resourceFieldRef");
            const RESOURCES: [&str; 6] = [
                "limits.cpu",
                "limits.ephemeral-storage",
                "limits.memory",
                "requests.cpu",
                "requests.ephemeral-storage",
                "requests.memory",
            ];
            if res.is_empty() {
                errs.push(FieldError::required(format!("{rp}.resource"), ""));
            } else if !RESOURCES.contains(&res)
                && !res.starts_with("requests.hugepages-")
                && !res.starts_with("limits.hugepages-")
            {
                errs.push(FieldError::not_supported(
                    format!("{rp}.resource"),
                    res,
                    &RESOURCES,
                ));
            }
        }
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = vf.get(kind).filter(|x| x.is_object()) {
                sources += 1;
                let rp = format!("{vp}.{kind}");
                let rname = str_of(r, "name");
                for msg in v::name_is_dns_subdomain(rname, false) {
                    errs.push(FieldError::invalid(format!("{rp}.name"), rname, msg));
                }
                let key = str_of(r, "key");
                if key.is_empty() {
                    errs.push(FieldError::required(format!("{rp}.key"), ""));
                } else {
                    for msg in checks::is_config_map_key(key) {
                        errs.push(FieldError::invalid(format!("{rp}.key"), key, msg));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                &vp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_of(e, "value").is_empty() {
            errs.push(FieldError::invalid(
                &vp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &vp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_field_ref(fr: &Value, p: &str, errs: &mut Vec<FieldError>) {
    if str_of(fr, "apiVersion").is_empty() {
        errs.push(FieldError::required(format!("{p}.apiVersion"), ""));
        return;
    }
    let fp = str_of(fr, "fieldPath");
    if fp.is_empty() {
        errs.push(FieldError::required(format!("{p}.fieldPath"), ""));
        return;
    }
    if let Some((base, rest)) = fp.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .map(|s| s.trim_matches('\'').to_string())
            .unwrap_or_default();
        match base {
            "metadata.annotations" => qualified_name(&subscript.to_lowercase(), p, errs),
            "metadata.labels" => qualified_name(&subscript, p, errs),
            _ => errs.push(FieldError::invalid(p, base, "does not support subscript")),
        }
    } else if !ENV_FIELD_PATHS.contains(&fp) {
        errs.push(FieldError::not_supported(
            format!("{p}.fieldPath"),
            fp,
            &ENV_FIELD_PATHS,
        ));
    }
}

fn validate_env_from(env_from: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    for (i, e) in env_from.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let prefix = str_of(e, "prefix");
        if !prefix.is_empty() {
            for msg in checks::is_env_var_name(prefix) {
                errs.push(FieldError::invalid(format!("{p}.prefix"), prefix, msg));
            }
        }
        let mut sources = 0;
        for kind in ["configMapRef", "secretRef"] {
            if let Some(r) = e.get(kind).filter(|x| x.is_object()) {
                sources += 1;
                let name = str_of(r, "name");
                let np = format!("{p}.{kind}.name");
                if name.is_empty() {
                    errs.push(FieldError::required(np, ""));
                } else {
                    for msg in v::name_is_dns_subdomain(name, true) {
                        errs.push(FieldError::invalid(&np, name, msg));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(
    c: &Value,
    p: &str,
    volumes: &BTreeMap<String, bool>,
    errs: &mut Vec<FieldError>,
) {
    let mpath = format!("{p}.volumeMounts");
    let devices: Vec<(&str, &str)> = arr_of(c, "volumeDevices")
        .iter()
        .map(|d| (str_of(d, "name"), str_of(d, "devicePath")))
        .collect();
    let mounts: Vec<(&str, &str)> = arr_of(c, "volumeMounts")
        .iter()
        .map(|m| (str_of(m, "name"), str_of(m, "mountPath")))
        .collect();
    let mut mount_points = HashSet::new();
    for (i, m) in arr_of(c, "volumeMounts").iter().enumerate() {
        let ip = format!("{mpath}[{i}]");
        let name = str_of(m, "name");
        let mount_path = str_of(m, "mountPath");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{ip}.name"), ""));
        }
        if !volumes.contains_key(name) {
            errs.push(FieldError::not_found(format!("{ip}.name"), name));
        }
        if mount_path.is_empty() {
            errs.push(FieldError::required(format!("{ip}.mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            errs.push(FieldError::invalid(
                format!("{ip}.mountPath"),
                mount_path,
                "must be unique",
            ));
        }
        if devices.iter().any(|(n, _)| *n == name) {
            errs.push(FieldError::invalid(
                format!("{ip}.name"),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices.iter().any(|(_, dp)| *dp == mount_path) {
            errs.push(FieldError::invalid(
                format!("{ip}.mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub = str_of(m, "subPath");
        if !sub.is_empty() {
            errs.extend(checks::local_descending_path(
                sub,
                &format!("{mpath}.subPath"),
            ));
        }
        let sub_expr = str_of(m, "subPathExpr");
        if !sub_expr.is_empty() {
            if !sub.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{ip}.subPathExpr"),
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(checks::local_descending_path(
                sub_expr,
                &format!("{mpath}.subPathExpr"),
            ));
        }
        if let Some(prop) = m.get("mountPropagation").and_then(Value::as_str) {
            const MODES: [&str; 3] = ["Bidirectional", "HostToContainer", "None"];
            let mp = format!("{mpath}.mountPropagation");
            if !MODES.contains(&prop) {
                errs.push(FieldError::not_supported(&mp, prop, &MODES));
            } else if prop == "Bidirectional"
                && !c
                    .pointer("/securityContext/privileged")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            {
                errs.push(FieldError::forbidden(
                    mp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        if let Some(rro) = m.get("recursiveReadOnly").and_then(Value::as_str) {
            let rp = format!("{mpath}.recursiveReadOnly");
            const MODES: [&str; 3] = ["Disabled", "IfPossible", "Enabled"];
            if !MODES.contains(&rro) {
                errs.push(FieldError::not_supported(&rp, rro, &MODES));
            } else if rro != "Disabled" && !bool_of(m, "readOnly") {
                errs.push(FieldError::forbidden(
                    rp,
                    "may only be specified when readOnly is true",
                ));
            }
        }
    }
    let dpath = format!("{p}.volumeDevices");
    let mut device_paths = HashSet::new();
    let mut device_names = HashSet::new();
    for (i, (name, dev_path)) in devices.iter().enumerate() {
        let ip = format!("{dpath}[{i}]");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{ip}.name"), ""));
        }
        if !device_names.insert(*name) {
            errs.push(FieldError::invalid(
                format!("{ip}.name"),
                *name,
                "must be unique",
            ));
        }
        match volumes.get(*name) {
            Some(false) => errs.push(FieldError::invalid(
                format!("{ip}.name"),
                *name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            Some(true) => {}
            None => errs.push(FieldError::not_found(format!("{ip}.name"), *name)),
        }
        if dev_path.is_empty() {
            errs.push(FieldError::required(format!("{ip}.devicePath"), ""));
        }
        if !device_paths.insert(*dev_path) {
            errs.push(FieldError::invalid(
                format!("{ip}.devicePath"),
                *dev_path,
                "must be unique",
            ));
        }
        if mounts.iter().any(|(n, _)| n == name) {
            errs.push(FieldError::invalid(
                format!("{ip}.name"),
                *name,
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.iter().any(|(_, mp)| mp == dev_path) {
            errs.push(FieldError::invalid(
                format!("{ip}.devicePath"),
                *dev_path,
                "must not already exist as a path in volumeMounts",
            ));
        }
    }
}

/// Resource names a container may request without a domain prefix.
fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Native resources (no domain, or a kubernetes.io domain) may be overcommitted, except
/// huge pages; extended resources may not.
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

fn validate_resources(res: &Value, p: &str, errs: &mut Vec<FieldError>) {
    let lim_path = format!("{p}.limits");
    let req_path = format!("{p}.requests");
    let limits = obj_of(res, "limits");
    let mut lim_cpu_mem = false;
    let mut req_cpu_mem = false;
    let mut huge = false;
    let mut check_entry = |name: &str, q: &Value, fp: &str, errs: &mut Vec<FieldError>| {
        validate_resource_name(name, fp, errs);
        let parsed = quantity::parse_value(q);
        match parsed {
            None => errs.push(FieldError::invalid(
                fp,
                q.as_str().unwrap_or("").to_string(),
                quantity::PARSE_ERROR,
            )),
            Some(q) if q.nanos < 0 => errs.push(FieldError::invalid(
                fp,
                q.canonical(),
                v::IS_NEGATIVE_ERROR_MSG,
            )),
            Some(q)
                if !overcommit_allowed(name)
                    && !name.starts_with("hugepages-")
                    && q.nanos % 1_000_000_000 != 0 =>
            {
                errs.push(FieldError::invalid(fp, q.canonical(), "must be an integer"));
            }
            _ => {}
        }
        if name.starts_with("hugepages-") {
            huge = true;
        }
        parsed
    };
    for (name, q) in limits.into_iter().flatten() {
        check_entry(name, q, &format!("{lim_path}[{name}]"), errs);
        if name == "cpu" || name == "memory" {
            lim_cpu_mem = true;
        }
    }
    for (name, q) in obj_of(res, "requests").into_iter().flatten() {
        let parsed = check_entry(name, q, &format!("{req_path}[{name}]"), errs);
        let limit = limits
            .and_then(|l| l.get(name))
            .and_then(quantity::parse_value);
        match (parsed, limit) {
            (Some(r), Some(l)) => {
                if r.nanos != l.nanos && !overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        &req_path,
                        r.canonical(),
                        format!("must be equal to {name} limit of {}", l.canonical()),
                    ));
                } else if r.nanos > l.nanos {
                    errs.push(FieldError::invalid(
                        &req_path,
                        r.canonical(),
                        format!(
                            "must be less than or equal to {name} limit of {}",
                            l.canonical()
                        ),
                    ));
                }
            }
            (_, None) if !overcommit_allowed(name) => errs.push(FieldError::required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            _ => {}
        }
        if name == "cpu" || name == "memory" {
            req_cpu_mem = true;
        }
    }
    if huge && !lim_cpu_mem && !req_cpu_mem {
        errs.push(FieldError::forbidden(p, "HugePages require cpu or memory"));
    }
}

fn validate_resource_name(name: &str, fp: &str, errs: &mut Vec<FieldError>) {
    let msgs = v::is_qualified_name(name);
    if !msgs.is_empty() {
        for msg in msgs {
            errs.push(FieldError::invalid(fp, name, msg));
        }
        return;
    }
    if !name.contains('/') {
        if !is_standard_container_resource(name) {
            errs.push(FieldError::invalid(
                fp,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !name.contains("kubernetes.io/") && name.starts_with("requests.") {
        errs.push(FieldError::invalid(
            fp,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

fn validate_probes_and_lifecycle(
    c: &Value,
    p: &str,
    grace: Option<i64>,
    errs: &mut Vec<FieldError>,
) {
    if let Some(lc) = c.get("lifecycle").filter(|l| l.is_object()) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get(hook).filter(|h| h.is_object()) {
                validate_handler(h, &format!("{p}.lifecycle.{hook}"), grace, true, errs);
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(pr) = c.get(probe).filter(|x| x.is_object()) else {
            continue;
        };
        let pp = format!("{p}.{probe}");
        validate_handler(pr, &pp, grace, false, errs);
        for key in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            let n = int_of(pr, key).unwrap_or(0);
            if n < 0 {
                errs.push(FieldError::invalid(
                    format!("{pp}.{key}"),
                    n,
                    v::IS_NEGATIVE_ERROR_MSG,
                ));
            }
        }
        if let Some(t) = int_of(pr, "terminationGracePeriodSeconds")
            && t <= 0
        {
            errs.push(FieldError::invalid(
                format!("{pp}.terminationGracePeriodSeconds"),
                t,
                "must be greater than 0",
            ));
        }
        let success = int_of(pr, "successThreshold").unwrap_or(0);
        if probe != "readinessProbe" && success != 1 {
            errs.push(FieldError::invalid(
                format!("{pp}.successThreshold"),
                success,
                "must be 1",
            ));
        }
        if probe == "readinessProbe" && has(pr, "terminationGracePeriodSeconds") {
            errs.push(FieldError::invalid(
                format!("{pp}.terminationGracePeriodSeconds"),
                pr.get("terminationGracePeriodSeconds")
                    .cloned()
                    .unwrap_or(Value::Null),
                "must not be set for readinessProbes",
            ));
        }
    }
}

fn validate_handler(
    h: &Value,
    p: &str,
    grace: Option<i64>,
    lifecycle: bool,
    errs: &mut Vec<FieldError>,
) {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut count = 0;
    for kind in kinds {
        let Some(x) = h.get(*kind).filter(|x| !x.is_null()) else {
            continue;
        };
        let kp = format!("{p}.{kind}");
        if count > 0 {
            errs.push(FieldError::forbidden(
                kp,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        count += 1;
        match *kind {
            "exec" if is_empty(x, "command") => {
                errs.push(FieldError::required(format!("{kp}.command"), ""));
            }
            "httpGet" => {
                if str_of(x, "path").is_empty() {
                    errs.push(FieldError::required(format!("{kp}.path"), ""));
                }
                validate_port_num_or_name(x.get("port"), &format!("{kp}.port"), errs);
                let scheme = str_of(x, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(FieldError::not_supported(
                        format!("{kp}.scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in arr_of(x, "httpHeaders") {
                    let name = str_of(header, "name");
                    for msg in checks::is_http_header_name(name) {
                        errs.push(FieldError::invalid(format!("{kp}.httpHeaders"), name, msg));
                    }
                }
            }
            "tcpSocket" => validate_port_num_or_name(x.get("port"), &format!("{kp}.port"), errs),
            "grpc" => {
                let port = int_of(x, "port").unwrap_or(0);
                for msg in checks::is_valid_port_num(port) {
                    errs.push(FieldError::invalid(format!("{kp}.port"), port, msg));
                }
            }
            "sleep" => {
                let secs = int_of(x, "seconds").unwrap_or(0);
                if let Some(g) = grace
                    && (secs < 0 || secs > g)
                {
                    errs.push(FieldError::invalid(
                        &kp,
                        secs,
                        format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(p, "must specify a handler type"));
    }
}

/// Upstream's `ValidatePortNumOrName` for an IntOrString port.
pub fn validate_port_num_or_name(port: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) {
    match port {
        Some(Value::String(s)) => {
            for msg in checks::is_valid_port_name(s) {
                errs.push(FieldError::invalid(field, s.as_str(), msg));
            }
        }
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            for msg in checks::is_valid_port_num(n) {
                errs.push(FieldError::invalid(field, n, msg));
            }
        }
    }
}

fn validate_pod_security_context(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(sc) = spec.get("securityContext").filter(|s| s.is_object()) else {
        return;
    };
    let sp = format!("{path}.securityContext");
    for key in ["fsGroup", "runAsUser", "runAsGroup"] {
        if let Some(id) = int_of(sc, key) {
            for msg in checks::is_valid_id(id) {
                errs.push(FieldError::invalid(format!("{sp}.{key}"), id, msg));
            }
        }
    }
    for (i, g) in arr_of(sc, "supplementalGroups").iter().enumerate() {
        let id = g.as_i64().unwrap_or(-1);
        for msg in checks::is_valid_id(id) {
            errs.push(FieldError::invalid(
                format!("{sp}.supplementalGroups[{i}]"),
                id,
                msg,
            ));
        }
    }
    if bool_of(spec, "shareProcessNamespace") && bool_of(spec, "hostPID") {
        errs.push(FieldError::invalid(
            format!("{sp}.shareProcessNamespace"),
            Value::Bool(true),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut sysctl_names = HashSet::new();
    for (i, s) in arr_of(sc, "sysctls").iter().enumerate() {
        let name = str_of(s, "name");
        let np = format!("{sp}.sysctls[{i}].name");
        if name.is_empty() {
            errs.push(FieldError::required(np, ""));
        } else if !sysctl_names.insert(name) {
            errs.push(FieldError::duplicate(np, name));
        }
    }
    if let Some(p) = sc.get("fsGroupChangePolicy").and_then(Value::as_str)
        && p != "OnRootMismatch"
        && p != "Always"
    {
        errs.push(FieldError::not_supported(
            format!("{sp}.fsGroupChangePolicy"),
            p,
            &["Always", "OnRootMismatch"],
        ));
    }
    validate_seccomp_profile(
        sc.get("seccompProfile"),
        &format!("{sp}.seccompProfile"),
        errs,
    );
}

fn validate_dns_config(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let dp = format!("{path}.dnsConfig");
    let config = spec.get("dnsConfig").filter(|c| c.is_object());
    if str_of(spec, "dnsPolicy") == "None" {
        match config {
            None => {
                errs.push(FieldError::required(
                    dp,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
                return;
            }
            Some(c) if is_empty(c, "nameservers") => {
                errs.push(FieldError::required(
                    format!("{dp}.nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            _ => {}
        }
    }
    let Some(c) = config else {
        return;
    };
    let ns = arr_of(c, "nameservers");
    if ns.len() > 3 {
        errs.push(FieldError::invalid(
            format!("{dp}.nameservers"),
            Value::Array(ns.to_vec()),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        errs.extend(checks::valid_ip(
            &format!("{dp}.nameservers[{i}]"),
            n.as_str().unwrap_or(""),
        ));
    }
    let searches = arr_of(c, "searches");
    if searches.len() > 32 {
        errs.push(FieldError::invalid(
            format!("{dp}.searches"),
            Value::Array(searches.to_vec()),
            "must not have more than 32 search paths",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let s = s.as_str().unwrap_or("");
        if s == "." {
            continue;
        }
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        // Relaxed DNS search validation (GA in v1.34) also allows underscores.
        let check = trimmed.replace('_', "a");
        for msg in v::is_dns1123_subdomain(&check.to_lowercase()) {
            errs.push(FieldError::invalid(
                format!("{dp}.searches[{i}]"),
                trimmed,
                msg,
            ));
        }
    }
    for (i, o) in arr_of(c, "options").iter().enumerate() {
        if str_of(o, "name").is_empty() {
            errs.push(FieldError::required(
                format!("{dp}.options[{i}]"),
                "must not be empty",
            ));
        }
    }
}

fn validate_topology_spread(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let constraints = arr_of(spec, "topologySpreadConstraints");
    for (i, c) in constraints.iter().enumerate() {
        let p = format!("{path}.topologySpreadConstraints[{i}]");
        let skew = int_of(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            errs.push(FieldError::invalid(
                format!("{p}.maxSkew"),
                skew,
                "must be greater than zero",
            ));
        }
        let key = str_of(c, "topologyKey");
        if key.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.topologyKey"),
                "can not be empty",
            ));
        }
        let action = str_of(c, "whenUnsatisfiable");
        if action != "DoNotSchedule" && action != "ScheduleAnyway" {
            errs.push(FieldError::not_supported(
                format!("{p}.whenUnsatisfiable"),
                action,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if constraints[i + 1..]
            .iter()
            .any(|o| str_of(o, "topologyKey") == key && str_of(o, "whenUnsatisfiable") == action)
        {
            errs.push(FieldError::duplicate(
                format!("{p}.{{topologyKey, whenUnsatisfiable}}"),
                format!("{{{key}, {action}}}"),
            ));
        }
        if let Some(min) = int_of(c, "minDomains") {
            if min <= 0 {
                errs.push(FieldError::invalid(
                    format!("{p}.minDomains"),
                    min,
                    "must be greater than zero",
                ));
            }
            if action != "DoNotSchedule" {
                errs.push(FieldError::invalid(
                    format!("{p}.minDomains"),
                    min,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"
                    ),
                ));
            }
        }
        if let Some(sel) = c.get("labelSelector") {
            errs.extend(v::validate_label_selector(
                sel,
                &format!("{p}.labelSelector"),
            ));
        }
    }
}

/// Upstream's `ValidateTolerations`.
pub fn validate_tolerations(tolerations: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        let value = str_of(t, "value");
        if !key.is_empty() {
            errs.extend(v::validate_label_name(key, &format!("{p}.key")));
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                format!("{p}.operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if has(t, "tolerationSeconds") && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{p}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = v::is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{p}.operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{p}.operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{p}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errs.push(FieldError::not_supported(
                format!("{p}.effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

/// Pod-only container checks (`validateContainersOnlyForPod`): images may not carry
/// leading or trailing whitespace.
pub fn validate_images_trimmed(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["containers", "initContainers"] {
        for (i, c) in arr_of(spec, key).iter().enumerate() {
            let image = str_of(c, "image");
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    format!("{path}.{key}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}
