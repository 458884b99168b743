//! Deployments, ReplicaSets and DaemonSets (apps/v1) and Jobs (batch/v1): upstream's
//! defaults, strategies and `pkg/apis/apps/validation` / `pkg/apis/batch/validation`.

use std::collections::HashSet;

use serde_json::{Value, json};
use skiff_apimachinery::labels::Selector;
use skiff_apimachinery::validation::{self as v, FieldError, FieldErrorKind};

use super::podspec::{self, SpecKind};
use super::util::{arr_of, at, child_obj, default_str, has, int_of, is_empty, set_default, str_of};
use super::{
    Strategy, checks, go_label_selector, go_string_map, immutable, immutable_selector, invalid_raw,
    raw_error,
};

pub struct DeploymentStrategy;
pub struct ReplicaSetStrategy;
pub struct DaemonSetStrategy;
pub struct JobStrategy;
pub struct ControllerRevisionStrategy;

/// The annotation apps/v1 uses for the DaemonSet's internal `templateGeneration`.
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

fn default_template(obj: &mut Value, kind: SpecKind) {
    if let Some(spec) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| child_obj(t, "spec"))
    {
        podspec::default_pod_spec(spec, kind);
    }
}

/// Status is reset on create; upstream writes the empty struct as `{}`.
fn reset_status(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({}));
    }
}

fn nonnegative(obj: &Value, key: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = int_of(obj, key)
        && n < 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.{key}"),
            n,
            v::IS_NEGATIVE_ERROR_MSG,
        ));
    }
}

/// Go's `%#v` of an `intstr.IntOrString`.
fn go_int_or_string(val: &Value) -> String {
    match val {
        Value::String(s) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            v::go_quote(s)
        ),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        ),
    }
}

/// The value of an int-or-percent: the percentage number for `"25%"`, else the integer.
fn int_or_percent_value(val: &Value) -> i64 {
    match val {
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

/// Upstream's `ValidatePositiveIntOrPercent`.
fn positive_int_or_percent(val: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match val {
        Value::String(s) => {
            for msg in checks::is_valid_percent(s) {
                errs.push(invalid_raw(path, &go_int_or_string(val), &msg));
            }
        }
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            if n < 0 {
                errs.push(FieldError::invalid(path, n, v::IS_NEGATIVE_ERROR_MSG));
            }
        }
        _ => {}
    }
}

/// Upstream's `IsNotMoreThan100Percent`.
fn not_more_than_100_percent(val: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Value::String(s) = val
        && checks::is_valid_percent(s).is_empty()
        && int_or_percent_value(val) > 100
    {
        errs.push(invalid_raw(
            path,
            &go_int_or_string(val),
            "must not be greater than 100%",
        ));
    }
}

/// Selector checks shared by Deployments and ReplicaSets, then the template against it.
/// `what` names the kind in upstream's (copied) empty-selector message.
fn validate_selector_and_template(spec: &Value, what: &str, errs: &mut Vec<FieldError>) {
    let selector = spec.get("selector").unwrap_or(&Value::Null);
    if selector.is_null() {
        errs.push(FieldError::required("spec.selector", ""));
    } else {
        errs.extend(v::validate_label_selector(selector, "spec.selector"));
        if is_empty(selector, "matchLabels") && is_empty(selector, "matchExpressions") {
            errs.push(invalid_raw(
                "spec.selector",
                &go_label_selector(selector),
                &format!("empty selector is invalid for {what}"),
            ));
        }
    }
    match Selector::from_label_selector_value(selector) {
        Err(_) => errs.push(invalid_raw(
            "spec.selector",
            &go_label_selector(selector),
            "invalid label selector",
        )),
        Ok(sel) => {
            let template = spec.get("template").unwrap_or(&Value::Null);
            let labels = at(template, &["metadata", "labels"]);
            if !sel.is_empty() && !sel.matches(labels) {
                errs.push(selector_mismatch(labels));
            }
            validate_replicated_template(template, what, errs);
        }
    }
}

fn selector_mismatch(labels: &Value) -> FieldError {
    invalid_raw(
        "spec.template.metadata.labels",
        &go_string_map(labels),
        "`selector` does not match template `labels`",
    )
}

/// The template of something that keeps Pods running: restartPolicy Always, no deadline.
fn validate_replicated_template(template: &Value, what: &str, errs: &mut Vec<FieldError>) {
    errs.extend(podspec::validate_template(
        template,
        "spec.template",
        SpecKind::Template,
    ));
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let policy = str_of(spec, "restartPolicy");
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if has(spec, "activeDeadlineSeconds") {
        let kind = match what {
            "daemonset" => "DaemonSet",
            _ => "ReplicaSet",
        };
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn replica_status_checks(status: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    for key in fields {
        nonnegative(status, key, "status", errs);
    }
    let replicas = int_of(status, "replicas").unwrap_or(0);
    for key in [
        "updatedReplicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        if fields.contains(&key)
            && let Some(n) = int_of(status, key)
            && n > replicas
        {
            errs.push(FieldError::invalid(
                format!("status.{key}"),
                n,
                "cannot be greater than status.replicas",
            ));
        }
    }
    let available = int_of(status, "availableReplicas").unwrap_or(0);
    if available > int_of(status, "readyReplicas").unwrap_or(0) {
        errs.push(FieldError::invalid(
            "status.availableReplicas",
            available,
            "cannot be greater than readyReplicas",
        ));
    }
}

fn collision_count_not_decremented(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let n = at(new, &["status", "collisionCount"]).as_i64();
    let o = at(old, &["status", "collisionCount"]).as_i64();
    let decremented = match (n, o) {
        (None, Some(_)) => true,
        (Some(n), Some(o)) => n < o,
        _ => false,
    };
    if decremented {
        errs.push(FieldError::invalid(
            "status.collisionCount",
            n.unwrap_or(0),
            "cannot be decremented",
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Deployment.

impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = child_obj(obj, "spec") {
            set_default(spec, "replicas", json!(1));
            if let Some(strategy) = child_obj(spec, "strategy") {
                default_str(strategy, "type", "RollingUpdate");
                if str_of(strategy, "type") == "RollingUpdate"
                    && let Some(ru) = child_obj(strategy, "rollingUpdate")
                {
                    set_default(ru, "maxUnavailable", json!("25%"));
                    set_default(ru, "maxSurge", json!("25%"));
                }
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
        }
        default_template(obj, SpecKind::Template);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        nonnegative(spec, "replicas", "spec", &mut errs);
        validate_selector_and_template(spec, "deployment", &mut errs);
        validate_deployment_strategy(spec, &mut errs);
        nonnegative(spec, "minReadySeconds", "spec", &mut errs);
        nonnegative(spec, "revisionHistoryLimit", "spec", &mut errs);
        if let Some(pds) = int_of(spec, "progressDeadlineSeconds") {
            nonnegative(spec, "progressDeadlineSeconds", "spec", &mut errs);
            if pds <= int_of(spec, "minReadySeconds").unwrap_or(0) {
                errs.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    pds,
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable_selector(
            at(new, &["spec", "selector"]),
            at(old, &["spec", "selector"]),
            "spec.selector",
        )
    }

    fn validate_status_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let status = new.get("status").unwrap_or(&Value::Null);
        nonnegative(status, "observedGeneration", "status", &mut errs);
        replica_status_checks(
            status,
            &[
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
            ],
            &mut errs,
        );
        nonnegative(status, "collisionCount", "status", &mut errs);
        collision_count_not_decremented(new, old, &mut errs);
        errs
    }
}

fn validate_deployment_strategy(spec: &Value, errs: &mut Vec<FieldError>) {
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    let t = str_of(strategy, "type");
    let ru = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match t {
        "Recreate" => {
            if ru.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match ru {
            None => errs.push(FieldError::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = "spec.strategy.rollingUpdate";
                let unavailable = ru.get("maxUnavailable").unwrap_or(&Value::Null);
                let surge = ru.get("maxSurge").unwrap_or(&Value::Null);
                positive_int_or_percent(unavailable, &format!("{p}.maxUnavailable"), errs);
                positive_int_or_percent(surge, &format!("{p}.maxSurge"), errs);
                if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
                    errs.push(invalid_raw(
                        format!("{p}.maxUnavailable"),
                        &go_int_or_string(unavailable),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(unavailable, &format!("{p}.maxUnavailable"), errs);
            }
        },
        _ => errs.push(raw_error(
            FieldErrorKind::NotSupported,
            "spec.strategy",
            &format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                v::go_quote(t)
            ),
            "supported values: \"Recreate\", \"RollingUpdate\"",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// ReplicaSet.

impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = child_obj(obj, "spec") {
            set_default(spec, "replicas", json!(1));
        }
        default_template(obj, SpecKind::Template);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        nonnegative(spec, "replicas", "spec", &mut errs);
        nonnegative(spec, "minReadySeconds", "spec", &mut errs);
        // Upstream's ReplicaSet check reuses the Deployment's wording.
        validate_selector_and_template(spec, "deployment", &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable_selector(
            at(new, &["spec", "selector"]),
            at(old, &["spec", "selector"]),
            "spec.selector",
        )
    }

    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let status = new.get("status").unwrap_or(&Value::Null);
        replica_status_checks(
            status,
            &[
                "replicas",
                "fullyLabeledReplicas",
                "readyReplicas",
                "availableReplicas",
                "observedGeneration",
            ],
            &mut errs,
        );
        errs
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn field_label_value(&self, obj: &Value, label: &str) -> String {
        match label {
            // A Go int32: unset reads as 0.
            "status.replicas" => at(obj, &["status", "replicas"])
                .as_i64()
                .unwrap_or(0)
                .to_string(),
            _ => super::field_value(obj, label),
        }
    }
}

// ---------------------------------------------------------------------------------------
// DaemonSet.

impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = child_obj(obj, "spec") {
            if let Some(strategy) = child_obj(spec, "updateStrategy") {
                default_str(strategy, "type", "RollingUpdate");
                if str_of(strategy, "type") == "RollingUpdate"
                    && let Some(ru) = child_obj(strategy, "rollingUpdate")
                {
                    set_default(ru, "maxUnavailable", json!(1));
                    set_default(ru, "maxSurge", json!(0));
                }
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
        }
        default_template(obj, SpecKind::Template);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj);
        let current = template_generation(obj);
        set_template_generation(obj, current.max(1));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // The template generation is the server's; it moves only when the template does.
        let mut generation = template_generation(old);
        if !super::util::semantic_eq(
            at(new, &["spec", "template"]),
            at(old, &["spec", "template"]),
        ) {
            generation += 1;
        }
        set_template_generation(new, generation);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        let selector = spec.get("selector").unwrap_or(&Value::Null);
        errs.extend(v::validate_label_selector(selector, "spec.selector"));
        if let Ok(sel) = Selector::from_label_selector_value(selector) {
            let labels = at(spec, &["template", "metadata", "labels"]);
            if !sel.matches(labels) {
                errs.push(selector_mismatch(labels));
            }
        }
        if selector.is_object()
            && is_empty(selector, "matchLabels")
            && is_empty(selector, "matchExpressions")
        {
            errs.push(invalid_raw(
                "spec.selector",
                &go_label_selector(selector),
                "empty selector is invalid for daemonset",
            ));
        }
        validate_replicated_template(
            spec.get("template").unwrap_or(&Value::Null),
            "daemonset",
            &mut errs,
        );
        nonnegative(spec, "minReadySeconds", "spec", &mut errs);
        validate_daemonset_strategy(spec, &mut errs);
        nonnegative(spec, "revisionHistoryLimit", "spec", &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable_selector(
            at(new, &["spec", "selector"]),
            at(old, &["spec", "selector"]),
            "spec.selector",
        )
    }

    fn validate_status_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let status = new.get("status").unwrap_or(&Value::Null);
        for key in [
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "observedGeneration",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
            "collisionCount",
        ] {
            nonnegative(status, key, "status", &mut errs);
        }
        collision_count_not_decremented(new, old, &mut errs);
        errs
    }
}

fn template_generation(obj: &Value) -> i64 {
    str_of(
        at(obj, &["metadata", "annotations"]),
        TEMPLATE_GENERATION_ANNOTATION,
    )
    .parse()
    .unwrap_or(0)
}

fn set_template_generation(obj: &mut Value, generation: i64) {
    if let Some(annotations) = child_obj(obj, "metadata").and_then(|m| child_obj(m, "annotations"))
    {
        annotations[TEMPLATE_GENERATION_ANNOTATION] = json!(generation.to_string());
    }
}

fn validate_daemonset_strategy(spec: &Value, errs: &mut Vec<FieldError>) {
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    let p = "spec.updateStrategy";
    match str_of(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = strategy.get("rollingUpdate").filter(|r| !r.is_null()) else {
                errs.push(FieldError::required(format!("{p}.rollingUpdate"), ""));
                return;
            };
            let rp = format!("{p}.rollingUpdate");
            let unavailable = ru.get("maxUnavailable").unwrap_or(&Value::Null);
            let surge = ru.get("maxSurge").unwrap_or(&Value::Null);
            positive_int_or_percent(unavailable, &format!("{rp}.maxUnavailable"), errs);
            positive_int_or_percent(surge, &format!("{rp}.maxSurge"), errs);
            not_more_than_100_percent(unavailable, &format!("{rp}.maxUnavailable"), errs);
            not_more_than_100_percent(surge, &format!("{rp}.maxSurge"), errs);
            let has_unavailable = int_or_percent_value(unavailable) != 0;
            let has_surge = int_or_percent_value(surge) != 0;
            if has_unavailable && has_surge {
                errs.push(invalid_raw(
                    format!("{rp}.maxSurge"),
                    &go_int_or_string(surge),
                    "may not be set when maxUnavailable is non-zero",
                ));
            } else if !has_unavailable && !has_surge {
                errs.push(FieldError::required(
                    format!("{rp}.maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                ));
            }
        }
        other => errs.push(raw_error(
            FieldErrorKind::NotSupported,
            p,
            &format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                v::go_quote(other)
            ),
            "supported values: \"RollingUpdate\", \"OnDelete\"",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// ControllerRevision: a snapshot of a DaemonSet's (or StatefulSet's) template. Upstream's
// `ValidateControllerRevision(Update)`: data is required and immutable, the revision is not
// negative.

impl Strategy for ControllerRevisionStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if obj.get("data").is_none_or(Value::is_null) {
            errs.push(FieldError::required("data", "data is mandatory"));
        }
        nonnegative(obj, "revision", "", &mut errs);
        // `nonnegative` names fields under a parent; the revision is at the root.
        for e in &mut errs {
            if e.field == ".revision" {
                e.field = "revision".into();
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutable(
            new.get("data").unwrap_or(&Value::Null),
            old.get("data").unwrap_or(&Value::Null),
            "data",
        )
    }
}

// ---------------------------------------------------------------------------------------
// Job.

const LEGACY_JOB_NAME_LABEL: &str = "job-name";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = child_obj(obj, "spec") {
            if !has(spec, "completions") && !has(spec, "parallelism") {
                spec["completions"] = json!(1);
                spec["parallelism"] = json!(1);
            }
            set_default(spec, "parallelism", json!(1));
            if !has(spec, "backoffLimit") {
                // Per-index backoff makes the global limit effectively unlimited.
                let limit = if has(spec, "backoffLimitPerIndex") {
                    i64::from(i32::MAX)
                } else {
                    6
                };
                spec["backoffLimit"] = json!(limit);
            }
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            if let Some(rules) = spec
                .get_mut("podFailurePolicy")
                .and_then(|p| p.get_mut("rules"))
                .and_then(Value::as_array_mut)
            {
                for rule in rules {
                    if let Some(patterns) = rule
                        .get_mut("onPodConditions")
                        .and_then(Value::as_array_mut)
                    {
                        for pattern in patterns {
                            default_str(pattern, "status", "True");
                        }
                    }
                }
            }
            if !has(spec, "podReplacementPolicy") {
                let policy = if has(spec, "podFailurePolicy") {
                    "Failed"
                } else {
                    "TerminatingOrFailed"
                };
                spec["podReplacementPolicy"] = json!(policy);
            }
            set_default(spec, "manualSelector", json!(false));
        }
        default_template(obj, SpecKind::JobTemplate);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if at(obj, &["spec", "manualSelector"]).as_bool() != Some(true) {
            generate_selector(obj);
        }
        reset_status(obj);
        // Upstream's defaulting hands a Job without labels its template's label map itself,
        // so the labels generated afterwards show on the Job too.
        copy_template_labels(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        copy_template_labels(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_generated_selector(obj);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_job_spec(spec, &mut errs);
        let name = str_of(at(obj, &["metadata"]), "name");
        if str_of(spec, "completionMode") == "Indexed"
            && let Some(completions) = int_of(spec, "completions").filter(|c| *c > 0)
        {
            let hostname = format!("{name}-{}", completions - 1);
            if !v::is_dns1123_label(&hostname).is_empty() {
                errs.push(FieldError::invalid(
                    "metadata.name",
                    name,
                    format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let (spec, old_spec) = (
            new.get("spec").unwrap_or(&Value::Null),
            old.get("spec").unwrap_or(&Value::Null),
        );
        let mut errs = Vec::new();
        let completions = spec.get("completions").unwrap_or(&Value::Null);
        let old_completions = old_spec.get("completions").unwrap_or(&Value::Null);
        if str_of(spec, "completionMode") == "Indexed" {
            // Elastic Indexed Jobs: completions may change together with parallelism.
            if !super::util::semantic_eq(completions, old_completions)
                && let Some(c) = completions.as_i64()
                && Some(c) != int_of(spec, "parallelism")
            {
                errs.push(FieldError::invalid(
                    "spec.completions",
                    c,
                    "can only be modified in tandem with spec.parallelism",
                ));
            }
        } else {
            errs.extend(immutable(completions, old_completions, "spec.completions"));
        }
        errs.extend(immutable_selector(
            spec.get("selector").unwrap_or(&Value::Null),
            old_spec.get("selector").unwrap_or(&Value::Null),
            "spec.selector",
        ));
        errs.extend(validate_template_update(new, old));
        for key in [
            "completionMode",
            "podFailurePolicy",
            "backoffLimitPerIndex",
            "managedBy",
            "successPolicy",
        ] {
            errs.extend(immutable(
                spec.get(key).unwrap_or(&Value::Null),
                old_spec.get(key).unwrap_or(&Value::Null),
                &format!("spec.{key}"),
            ));
        }
        errs
    }

    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let status = new.get("status").unwrap_or(&Value::Null);
        for key in ["active", "succeeded", "failed", "ready", "terminating"] {
            nonnegative(status, key, "status", &mut errs);
        }
        let mut seen = HashSet::new();
        for kind in ["succeeded", "failed"] {
            for (i, uid) in arr_of(at(status, &["uncountedTerminatedPods"]), kind)
                .iter()
                .enumerate()
            {
                let uid = uid.as_str().unwrap_or("");
                let p = format!("status.uncountedTerminatedPods.{kind}[{i}]");
                if uid.is_empty() {
                    errs.push(FieldError::invalid(p, uid, "must not be empty"));
                } else if !seen.insert(uid) {
                    errs.push(FieldError::duplicate(p, uid));
                }
            }
        }
        if let Some(ready) = int_of(status, "ready")
            && ready > int_of(status, "active").unwrap_or(0)
        {
            errs.push(FieldError::invalid(
                "status.ready",
                ready,
                "cannot set more ready pods than active",
            ));
        }
        errs
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["status.successful"]
    }

    fn field_label_value(&self, obj: &Value, label: &str) -> String {
        match label {
            // Upstream's label for the succeeded counter, a Go int32.
            "status.successful" => at(obj, &["status", "succeeded"])
                .as_i64()
                .unwrap_or(0)
                .to_string(),
            _ => super::field_value(obj, label),
        }
    }
}

/// `SetDefaults_Job`: a Job without labels takes its template's.
fn copy_template_labels(obj: &mut Value) {
    let template_labels = at(obj, &["spec", "template", "metadata", "labels"]).clone();
    if template_labels.is_object()
        && is_empty(at(obj, &["metadata"]), "labels")
        && let Some(meta) = child_obj(obj, "metadata")
    {
        meta["labels"] = template_labels;
    }
}

/// Label the template with the Job's name and uid and select on the uid, keeping labels
/// the user set (validation rejects conflicting ones).
fn generate_selector(obj: &mut Value) {
    let name = str_of(at(obj, &["metadata"]), "name").to_string();
    let uid = str_of(at(obj, &["metadata"]), "uid").to_string();
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    if let Some(labels) = child_obj(spec, "template")
        .and_then(|t| child_obj(t, "metadata"))
        .and_then(|m| child_obj(m, "labels"))
        .and_then(Value::as_object_mut)
    {
        for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
            labels.entry(key).or_insert_with(|| json!(name));
        }
        for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
            labels.entry(key).or_insert_with(|| json!(uid));
        }
    }
    if let Some(match_labels) = child_obj(spec, "selector")
        .and_then(|s| child_obj(s, "matchLabels"))
        .and_then(Value::as_object_mut)
    {
        match_labels
            .entry(CONTROLLER_UID_LABEL)
            .or_insert_with(|| json!(uid));
    }
}

/// Upstream's `validateGeneratedSelector` (with the prefixed labels required, as for every
/// Job created since v1.27).
fn validate_generated_selector(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return errs;
    }
    let selector = spec.get("selector").unwrap_or(&Value::Null);
    if selector.is_null() {
        return errs;
    }
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let (name, uid) = (str_of(meta, "name"), str_of(meta, "uid"));
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    let labels = at(spec, &["template", "metadata", "labels"]);
    for (key, want) in [
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
        (CONTROLLER_UID_LABEL, uid),
        (JOB_NAME_LABEL, name),
    ] {
        let p = format!("spec.template.metadata.labels[{key}]");
        match labels.get(key).and_then(Value::as_str) {
            None => errs.push(FieldError::required(p, format!("must be '{want}'"))),
            Some(have) if have != want => errs.push(invalid_raw(
                p,
                &go_string_map(labels),
                &format!("must be '{want}'"),
            )),
            Some(_) => {}
        }
    }
    let expected = json!({
        CONTROLLER_UID_LABEL: uid,
        JOB_NAME_LABEL: name,
        LEGACY_CONTROLLER_UID_LABEL: uid,
        LEGACY_JOB_NAME_LABEL: name,
    });
    if let Ok(sel) = Selector::from_label_selector_value(selector)
        && !sel.matches(&expected)
    {
        errs.push(invalid_raw(
            "spec.selector",
            &go_label_selector(selector),
            "`selector` not auto-generated",
        ));
    }
    errs
}

fn validate_job_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ] {
        nonnegative(spec, key, "spec", errs);
    }
    if has(spec, "maxFailedIndexes") {
        nonnegative(spec, "maxFailedIndexes", "spec", errs);
        if !has(spec, "backoffLimitPerIndex") {
            errs.push(FieldError::required(
                "spec.backoffLimitPerIndex",
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(managed_by) = spec.get("managedBy").and_then(Value::as_str) {
        validate_domain_prefixed_path(managed_by, "spec.managedBy", errs);
        if managed_by.len() > 63 {
            errs.push(FieldError::too_long("spec.managedBy", Some(63)));
        }
    }
    let mode = str_of(spec, "completionMode");
    let indexed = mode == "Indexed";
    if has(spec, "completionMode") {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                "spec.completionMode",
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if indexed {
            let completions = int_of(spec, "completions");
            if completions.is_none() {
                errs.push(FieldError::required(
                    "spec.completions",
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = int_of(spec, "parallelism")
                && p > 100_000
            {
                errs.push(FieldError::invalid(
                    "spec.parallelism",
                    p,
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
            if let (Some(c), Some(m)) = (completions, int_of(spec, "maxFailedIndexes"))
                && m > c
            {
                errs.push(FieldError::invalid(
                    "spec.maxFailedIndexes",
                    m,
                    "must be less than or equal to completions",
                ));
            }
        }
    }
    if !indexed {
        for key in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(n) = int_of(spec, key) {
                errs.push(FieldError::invalid(
                    format!("spec.{key}"),
                    n,
                    "requires indexed completion mode",
                ));
            }
        }
    }
    if let Some(pfp) = spec.get("podFailurePolicy").filter(|p| p.is_object()) {
        validate_pod_failure_policy(spec, pfp, errs);
    }
    if let Some(sp) = spec.get("successPolicy").filter(|p| p.is_object()) {
        if !indexed {
            errs.push(FieldError::invalid(
                "spec.successPolicy",
                sp.clone(),
                "requires indexed completion mode",
            ));
        } else {
            let rules = arr_of(sp, "rules");
            if rules.is_empty() {
                errs.push(FieldError::required(
                    "spec.successPolicy.rules",
                    "at least one rules must be specified when the successPolicy is specified",
                ));
            }
            if rules.len() > 20 {
                errs.push(FieldError::too_many(
                    "spec.successPolicy.rules",
                    Some(rules.len()),
                    Some(20),
                ));
            }
            for (i, rule) in rules.iter().enumerate() {
                let rp = format!("spec.successPolicy.rules[{i}]");
                if !has(rule, "succeededCount") && !has(rule, "succeededIndexes") {
                    errs.push(FieldError::required(
                        rp.clone(),
                        "at least one of succeededCount or succeededIndexes must be specified",
                    ));
                }
                if let Some(count) = int_of(rule, "succeededCount") {
                    nonnegative(rule, "succeededCount", &rp, errs);
                    if let Some(c) = int_of(spec, "completions")
                        && count > c
                    {
                        errs.push(FieldError::invalid(
                            format!("{rp}.succeededCount"),
                            count,
                            format!(
                                "must be less than or equal to {c} (the number of specified completions)"
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(policy) = spec.get("podReplacementPolicy").and_then(Value::as_str) {
        if has(spec, "podFailurePolicy") {
            if policy != "Failed" {
                errs.push(FieldError::not_supported(
                    "spec.podReplacementPolicy",
                    policy,
                    &["Failed"],
                ));
            }
        } else if policy != "Failed" && policy != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(
                "spec.podReplacementPolicy",
                policy,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    errs.extend(podspec::validate_template(
        template,
        "spec.template",
        SpecKind::JobTemplate,
    ));
    let restart = str_of(at(template, &["spec"]), "restartPolicy");
    let rp = "spec.template.spec.restartPolicy";
    if restart == "Always" || restart.is_empty() {
        errs.push(FieldError::required(
            rp,
            "valid values: \"OnFailure\", \"Never\"",
        ));
    } else if restart != "OnFailure" && restart != "Never" {
        errs.push(FieldError::not_supported(
            rp,
            restart,
            &["OnFailure", "Never"],
        ));
    } else if has(spec, "podFailurePolicy") && restart != "Never" {
        errs.push(FieldError::invalid(
            rp,
            restart,
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
    // ValidateJobSpec: the selector is required and must select the template.
    let selector = spec.get("selector").unwrap_or(&Value::Null);
    if selector.is_null() {
        errs.push(FieldError::required("spec.selector", ""));
    } else {
        errs.extend(v::validate_label_selector(selector, "spec.selector"));
    }
    if let Ok(sel) = Selector::from_label_selector_value(selector) {
        let labels = at(template, &["metadata", "labels"]);
        if !sel.matches(labels) {
            errs.push(selector_mismatch(labels));
        }
    }
}

fn validate_domain_prefixed_path(value: &str, field: &str, errs: &mut Vec<FieldError>) {
    let Some((domain, path)) = value.split_once('/') else {
        errs.push(FieldError::invalid(
            field,
            value,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    for msg in v::is_dns1123_subdomain(domain) {
        errs.push(FieldError::invalid(field, domain, msg));
    }
    let ok = !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b));
    if !ok {
        errs.push(FieldError::invalid(
            field,
            path,
            "Invalid path: must contain only valid characters (a-z, A-Z, 0-9, -, ., _, ~, %, !, $, &, ', (, ), *, +, ,, ;, =, :)",
        ));
    }
}

fn validate_pod_failure_policy(spec: &Value, pfp: &Value, errs: &mut Vec<FieldError>) {
    let rules = arr_of(pfp, "rules");
    let rules_path = "spec.podFailurePolicy.rules";
    if rules.len() > 20 {
        errs.push(FieldError::too_many(
            rules_path,
            Some(rules.len()),
            Some(20),
        ));
    }
    let template_spec = at(spec, &["template", "spec"]);
    let containers: HashSet<&str> = arr_of(template_spec, "containers")
        .iter()
        .chain(arr_of(template_spec, "initContainers"))
        .map(|c| str_of(c, "name"))
        .collect();
    const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{rules_path}[{i}]");
        let action = str_of(rule, "action");
        if action.is_empty() {
            errs.push(FieldError::required(
                format!("{rp}.action"),
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            ));
        } else if action == "FailIndex" {
            if !has(spec, "backoffLimitPerIndex") {
                errs.push(FieldError::invalid(
                    format!("{rp}.action"),
                    action,
                    "requires the backoffLimitPerIndex to be set",
                ));
            }
        } else if !ACTIONS.contains(&action) {
            errs.push(FieldError::not_supported(
                format!("{rp}.action"),
                action,
                &ACTIONS,
            ));
        }
        let on_exit = rule.get("onExitCodes").filter(|x| x.is_object());
        let on_conditions = arr_of(rule, "onPodConditions");
        if let Some(oe) = on_exit {
            let ep = format!("{rp}.onExitCodes");
            let op = str_of(oe, "operator");
            if op.is_empty() {
                errs.push(FieldError::required(
                    format!("{ep}.operator"),
                    "valid values: [\"In\" \"NotIn\"]",
                ));
            } else if op != "In" && op != "NotIn" {
                errs.push(FieldError::not_supported(
                    format!("{ep}.operator"),
                    op,
                    &["In", "NotIn"],
                ));
            }
            if let Some(cn) = oe.get("containerName").and_then(Value::as_str)
                && !containers.contains(cn)
            {
                errs.push(FieldError::invalid(
                    format!("{ep}.containerName"),
                    cn,
                    "must be one of the container or initContainer names in the pod template",
                ));
            }
            let values = arr_of(oe, "values");
            let vp = format!("{ep}.values");
            if values.is_empty() {
                errs.push(FieldError::invalid(
                    &vp,
                    Value::Array(values.to_vec()),
                    "at least one value is required",
                ));
            } else if values.len() > 255 {
                errs.push(FieldError::too_many(&vp, Some(values.len()), Some(255)));
            }
            let mut seen = HashSet::new();
            let mut ordered = true;
            for (j, code) in values.iter().enumerate() {
                let code = code.as_i64().unwrap_or(0);
                if op == "In" && code == 0 {
                    errs.push(FieldError::invalid(
                        format!("{vp}[{j}]"),
                        code,
                        "must not be 0 for the In operator",
                    ));
                }
                if !seen.insert(code) {
                    errs.push(FieldError::duplicate(format!("{vp}[{j}]"), code));
                }
                if j > 0 && values[j - 1].as_i64().unwrap_or(0) > code {
                    ordered = false;
                }
            }
            if !ordered {
                errs.push(FieldError::invalid(
                    &vp,
                    Value::Array(values.to_vec()),
                    "must be ordered",
                ));
            }
        }
        for (j, pattern) in on_conditions.iter().enumerate() {
            let pp = format!("{rp}.onPodConditions[{j}]");
            let t = str_of(pattern, "type");
            for msg in v::is_qualified_name(t) {
                errs.push(FieldError::invalid(format!("{pp}.type"), t, msg));
            }
            let status = str_of(pattern, "status");
            if status.is_empty() {
                errs.push(FieldError::required(
                    format!("{pp}.status"),
                    "valid values: [\"False\" \"True\" \"Unknown\"]",
                ));
            } else if !["False", "True", "Unknown"].contains(&status) {
                errs.push(FieldError::not_supported(
                    format!("{pp}.status"),
                    status,
                    &["False", "True", "Unknown"],
                ));
            }
        }
        if on_exit.is_some() && !on_conditions.is_empty() {
            errs.push(raw_error(
                FieldErrorKind::Invalid,
                &rp,
                "specifying both OnExitCodes and OnPodConditions is not supported",
                "",
            ));
        }
        if on_exit.is_none() && on_conditions.is_empty() {
            errs.push(raw_error(
                FieldErrorKind::Invalid,
                &rp,
                "specifying one of OnExitCodes and OnPodConditions is required",
                "",
            ));
        }
    }
}

/// The template is immutable, except that a suspended Job that never started may change
/// its scheduling directives (node affinity, node selector, tolerations, scheduling gates)
/// and its template labels and annotations.
fn validate_template_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let template = at(new, &["spec", "template"]);
    let mut old_template = at(old, &["spec", "template"]).clone();
    let suspended = at(old, &["spec", "suspend"]).as_bool() == Some(true);
    let not_started = at(old, &["status", "startTime"]).is_null();
    if suspended && not_started {
        if let Some(spec) = old_template.get_mut("spec").and_then(Value::as_object_mut) {
            for key in ["nodeSelector", "tolerations", "schedulingGates"] {
                match template.pointer(&format!("/spec/{key}")) {
                    Some(val) => spec.insert(key.into(), val.clone()),
                    None => spec.remove(key),
                };
            }
            let new_node_affinity = template.pointer("/spec/affinity/nodeAffinity").cloned();
            let old_affinity = spec.get("affinity").cloned().filter(|a| !a.is_null());
            match (
                template.pointer("/spec/affinity").filter(|a| !a.is_null()),
                old_affinity,
            ) {
                (None, Some(mut a)) => {
                    if let Some(m) = a.as_object_mut() {
                        m.remove("nodeAffinity");
                    }
                    if super::util::semantic_eq(&a, &json!({})) {
                        spec.remove("affinity");
                    } else {
                        spec.insert("affinity".into(), a);
                    }
                }
                (Some(_), None) => {
                    spec.insert(
                        "affinity".into(),
                        json!({"nodeAffinity": new_node_affinity.unwrap_or(Value::Null)}),
                    );
                }
                (Some(_), Some(mut a)) => {
                    a["nodeAffinity"] = new_node_affinity.unwrap_or(Value::Null);
                    spec.insert("affinity".into(), a);
                }
                (None, None) => {}
            }
        }
        if let Some(meta) = child_obj(&mut old_template, "metadata") {
            for key in ["labels", "annotations"] {
                meta[key] = template
                    .pointer(&format!("/metadata/{key}"))
                    .cloned()
                    .unwrap_or(Value::Null);
            }
        }
    }
    immutable(template, &old_template, "spec.template")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn create(s: &dyn Strategy, mut obj: Value) -> Value {
        s.default(&mut obj);
        s.prepare_for_create(&mut obj);
        obj
    }

    fn update(s: &dyn Strategy, mut new: Value, old: &Value) -> Value {
        s.default(&mut new);
        s.prepare_for_update(&mut new, old);
        new
    }

    fn deployment(selector: Value, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {
                "selector": selector,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]},
                },
            },
        })
    }

    fn template_spec_defaults() -> Value {
        json!({
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.27",
                "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "resources": {},
            }],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
            "schedulerName": "default-scheduler",
        })
    }

    #[test]
    fn deployment_defaults() {
        let d = create(
            &DeploymentStrategy,
            deployment(
                json!({"matchLabels": {"app": "web"}}),
                json!({"app": "web"}),
            ),
        );
        assert_eq!(
            d["spec"],
            json!({
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": template_spec_defaults()},
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            })
        );
        assert_eq!(d["status"], json!({}));
        assert!(
            DeploymentStrategy.validate(&d).is_empty(),
            "{:?}",
            DeploymentStrategy.validate(&d)
        );
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let d = create(
            &DeploymentStrategy,
            deployment(
                json!({"matchLabels": {"app": "other"}}),
                json!({"app": "x"}),
            ),
        );
        assert_eq!(
            messages(&DeploymentStrategy.validate(&d)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"
            ]
        );
        let mut no_sel = deployment(json!(null), json!({"app": "x"}));
        no_sel["spec"].as_object_mut().map(|m| m.remove("selector"));
        let d = create(&DeploymentStrategy, no_sel);
        assert_eq!(
            messages(&DeploymentStrategy.validate(&d)),
            vec![
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
            ]
        );
        let d = create(
            &DeploymentStrategy,
            deployment(json!({}), json!({"app": "x"})),
        );
        assert_eq!(
            messages(&DeploymentStrategy.validate(&d)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
    }

    #[test]
    fn deployment_spec_checks() {
        let mut d = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "120"}});
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let d = create(&DeploymentStrategy, d);
        assert_eq!(
            messages(&DeploymentStrategy.validate(&d)),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.spec.containers[0].image: Required value",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"120\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
            ]
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let old = create(
            &DeploymentStrategy,
            deployment(
                json!({"matchLabels": {"app": "web"}}),
                json!({"app": "web", "v": "2"}),
            ),
        );
        let new = update(
            &DeploymentStrategy,
            deployment(
                json!({"matchLabels": {"app": "web", "v": "2"}}),
                json!({"app": "web", "v": "2"}),
            ),
            &old,
        );
        assert_eq!(
            messages(&DeploymentStrategy.validate_update(&new, &old)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
    }

    #[test]
    fn replicaset_defaults_and_status() {
        let mut rs = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        rs["kind"] = json!("ReplicaSet");
        let rs = create(&ReplicaSetStrategy, rs);
        assert_eq!(rs["spec"]["replicas"], json!(1));
        assert!(rs["spec"].get("strategy").is_none());
        assert!(ReplicaSetStrategy.validate(&rs).is_empty());
        let mut bad = rs.clone();
        bad["status"] = json!({"replicas": 1, "readyReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            messages(&ReplicaSetStrategy.validate_status_update(&bad, &rs)),
            vec![
                "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas",
                "status.availableReplicas: Invalid value: 2: cannot be greater than status.replicas"
            ]
        );
        assert_eq!(
            ReplicaSetStrategy.field_label_value(&rs, "status.replicas"),
            "0"
        );
    }

    #[test]
    fn daemonset_defaults_and_template_generation() {
        let mut ds = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        ds["kind"] = json!("DaemonSet");
        let ds = create(&DaemonSetStrategy, ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], json!(10));
        assert_eq!(
            ds["metadata"]["annotations"],
            json!({"deprecated.daemonset.template.generation": "1"})
        );
        assert!(
            DaemonSetStrategy.validate(&ds).is_empty(),
            "{:?}",
            DaemonSetStrategy.validate(&ds)
        );

        let mut changed = ds.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        let changed = update(&DaemonSetStrategy, changed, &ds);
        assert_eq!(
            changed["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
            json!("2")
        );
        let same = update(&DaemonSetStrategy, ds.clone(), &ds);
        assert_eq!(
            same["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
            json!("1")
        );
    }

    #[test]
    fn daemonset_strategy_checks() {
        let mut ds = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        ds["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}});
        let ds = create(&DaemonSetStrategy, ds);
        assert_eq!(
            messages(&DaemonSetStrategy.validate(&ds)),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
            ]
        );
    }

    fn job(template_spec: Value) -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "0f6c"},
            "spec": {"template": {"spec": template_spec}},
        })
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let j = create(
            &JobStrategy,
            job(
                json!({"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}),
            ),
        );
        let labels = json!({
            "batch.kubernetes.io/controller-uid": "0f6c",
            "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "0f6c",
            "job-name": "pi",
        });
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "0f6c"}})
        );
        assert_eq!(j["spec"]["template"]["metadata"]["labels"], labels);
        for (k, want) in [
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("manualSelector", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ] {
            assert_eq!(j["spec"][k], want, "{k}");
        }
        assert_eq!(
            j["spec"]["template"]["spec"]["restartPolicy"],
            json!("Never")
        );
        assert_eq!(j["status"], json!({}));
        assert!(
            JobStrategy.validate(&j).is_empty(),
            "{:?}",
            JobStrategy.validate(&j)
        );
    }

    #[test]
    fn job_restart_policy() {
        let j = create(
            &JobStrategy,
            job(json!({"containers": [{"name": "pi", "image": "perl"}]})),
        );
        assert_eq!(
            messages(&JobStrategy.validate(&j)),
            vec![
                "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
            ]
        );
        let j = create(
            &JobStrategy,
            job(
                json!({"restartPolicy": "Always", "containers": [{"name": "pi", "image": "perl"}]}),
            ),
        );
        assert_eq!(
            messages(&JobStrategy.validate(&j)),
            vec![
                "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
            ]
        );
    }

    #[test]
    fn job_counts_are_nonnegative() {
        let mut j = job(
            json!({"restartPolicy": "OnFailure", "containers": [{"name": "pi", "image": "perl"}]}),
        );
        j["spec"]["parallelism"] = json!(-1);
        j["spec"]["backoffLimit"] = json!(-2);
        let j = create(&JobStrategy, j);
        assert_eq!(
            messages(&JobStrategy.validate(&j)),
            vec![
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn job_update_rules() {
        let old = create(
            &JobStrategy,
            job(json!({"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]})),
        );
        // A client re-sending its manifest keeps working: the stored defaults and the
        // generated selector come back from the old object through the client's merge.
        let same = update(&JobStrategy, old.clone(), &old);
        assert!(JobStrategy.validate_update(&same, &old).is_empty());

        let mut changed = old.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
        changed["spec"]["selector"]["matchLabels"]["x"] = json!("y");
        changed["spec"]["completions"] = json!(3);
        let changed = update(&JobStrategy, changed, &old);
        let msgs = messages(&JobStrategy.validate_update(&changed, &old));
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(
            msgs[0],
            "spec.completions: Invalid value: 3: field is immutable"
        );
        assert_eq!(
            msgs[1],
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"batch.kubernetes.io/controller-uid\":\"0f6c\", \"x\":\"y\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
        assert!(
            msgs[2].starts_with("spec.template: Invalid value: {"),
            "{}",
            msgs[2]
        );
        assert!(msgs[2].ends_with(": field is immutable"));
    }

    #[test]
    fn job_manual_selector_skips_generation() {
        let mut j =
            job(json!({"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}));
        j["spec"]["manualSelector"] = json!(true);
        j["spec"]["selector"] = json!({"matchLabels": {"app": "pi"}});
        j["spec"]["template"]["metadata"] = json!({"labels": {"app": "pi"}});
        let j = create(&JobStrategy, j);
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi"})
        );
        assert_eq!(j["metadata"]["labels"], json!({"app": "pi"}));
        assert!(JobStrategy.validate(&j).is_empty());
    }

    #[test]
    fn job_conflicting_generated_label() {
        let mut j =
            job(json!({"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}));
        j["spec"]["template"]["metadata"] = json!({"labels": {"job-name": "other"}});
        let j = create(&JobStrategy, j);
        assert_eq!(
            messages(&JobStrategy.validate(&j)),
            vec![
                "spec.template.metadata.labels[job-name]: Invalid value: map[string]string{\"batch.kubernetes.io/controller-uid\":\"0f6c\", \"batch.kubernetes.io/job-name\":\"pi\", \"controller-uid\":\"0f6c\", \"job-name\":\"other\"}: must be 'pi'"
            ]
        );
    }

    #[test]
    fn job_field_label() {
        let mut j = create(
            &JobStrategy,
            job(json!({"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]})),
        );
        assert_eq!(JobStrategy.field_label_value(&j, "status.successful"), "0");
        j["status"]["succeeded"] = json!(1);
        assert_eq!(JobStrategy.field_label_value(&j, "status.successful"), "1");
    }

    #[test]
    fn controller_revisions_keep_their_data() {
        let s = ControllerRevisionStrategy;
        let rev = json!({
            "metadata": {"name": "ds-abc", "namespace": "default"},
            "data": {"spec": {"template": {"$patch": "replace"}}},
            "revision": 2,
        });
        assert!(s.validate(&rev).is_empty());
        assert_eq!(
            messages(&s.validate(&json!({"metadata": {"name": "x"}, "revision": -1}))),
            vec![
                "data: Required value: data is mandatory".to_string(),
                "revision: Invalid value: -1: must be greater than or equal to 0".into(),
            ]
        );
        let mut changed = rev.clone();
        changed["revision"] = json!(3);
        assert!(
            s.validate_update(&changed, &rev).is_empty(),
            "revisions move"
        );
        changed["data"] = json!({"spec": {}});
        assert_eq!(
            messages(&s.validate_update(&changed, &rev)),
            vec!["data: Invalid value: {\"spec\":{}}: field is immutable".to_string()]
        );
    }
}
