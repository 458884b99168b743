//! FieldError formatting and object metadata, labels, annotations and selector validation.

use serde_json::{Value, json};
use skiff_apimachinery::validation::{
    BadValue, FieldError, FieldErrorKind, aggregate_message, name_is_dns_subdomain,
    name_is_dns1035_label, validate_annotations, validate_label_selector, validate_labels,
    validate_object_meta, validate_object_meta_at, validate_object_meta_update,
};

const SUBDOMAIN_MSG: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const KEY_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn field_error_messages_and_reasons() {
    let e = FieldError::invalid("metadata.name", "Foo_bar", SUBDOMAIN_MSG);
    assert_eq!(
        e.to_string(),
        format!("metadata.name: Invalid value: \"Foo_bar\": {SUBDOMAIN_MSG}")
    );
    assert_eq!(
        e.cause_message(),
        format!("Invalid value: \"Foo_bar\": {SUBDOMAIN_MSG}")
    );
    assert_eq!(e.reason(), "FieldValueInvalid");
    assert_eq!(e.kind, FieldErrorKind::Invalid);
    assert_eq!(e.field, "metadata.name");
    assert_eq!(e.value, Some(BadValue::String("Foo_bar".into())));

    let cases: Vec<(FieldError, &str, &str)> = vec![
        (
            FieldError::required("spec.containers", ""),
            "spec.containers: Required value",
            "FieldValueRequired",
        ),
        (
            FieldError::required("metadata.name", "name or generateName is required"),
            "metadata.name: Required value: name or generateName is required",
            "FieldValueRequired",
        ),
        (
            FieldError::duplicate("spec.ports[1].name", "http"),
            "spec.ports[1].name: Duplicate value: \"http\"",
            "FieldValueDuplicate",
        ),
        (
            FieldError::not_supported(
                "spec.restartPolicy",
                "Sometimes",
                &["Always", "OnFailure", "Never"],
            ),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            "FieldValueNotSupported",
        ),
        (
            FieldError::forbidden("metadata.namespace", "not allowed on this type"),
            "metadata.namespace: Forbidden: not allowed on this type",
            "FieldValueForbidden",
        ),
        (
            FieldError::too_long("metadata.annotations", Some(262144)),
            "metadata.annotations: Too long: may not be more than 262144 bytes",
            "FieldValueTooLong",
        ),
        (
            FieldError::too_long("x", Some(1)),
            "x: Too long: may not be more than 1 byte",
            "FieldValueTooLong",
        ),
        (
            FieldError::too_many("spec.items", Some(5), Some(4)),
            "spec.items: Too many: 5: must have at most 4 items",
            "FieldValueTooMany",
        ),
        (
            FieldError::not_found("spec.volumes[0]", "data"),
            "spec.volumes[0]: Not found: \"data\"",
            "FieldValueNotFound",
        ),
        (
            FieldError::internal("metadata", "boom"),
            "metadata: Internal error: boom",
            "InternalError",
        ),
        (
            FieldError::invalid(
                "spec.replicas",
                json!(-1),
                "must be greater than or equal to 0",
            ),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "FieldValueInvalid",
        ),
        (
            FieldError::invalid("spec.x", json!({"a": [1, true]}), "bad"),
            "spec.x: Invalid value: {\"a\":[1,true]}: bad",
            "FieldValueInvalid",
        ),
        (
            FieldError::type_invalid("spec.x", json!(3), "must be of type string"),
            "spec.x: Invalid value: 3: must be of type string",
            "FieldValueTypeInvalid",
        ),
        (
            FieldError::invalid("x", "tab\there \"q\"", "bad"),
            "x: Invalid value: \"tab\\there \\\"q\\\"\": bad",
            "FieldValueInvalid",
        ),
    ];
    for (err, message, reason) in cases {
        assert_eq!(err.to_string(), message);
        assert_eq!(err.reason(), reason, "{message}");
        assert_eq!(
            format!("{}: {}", err.field, err.cause_message()),
            message,
            "cause message is the message without the field"
        );
    }
}

#[test]
fn aggregate_joins_and_dedupes() {
    let a = FieldError::required("a", "");
    let b = FieldError::required("b", "");
    assert_eq!(aggregate_message(&[]), "");
    assert_eq!(
        aggregate_message(std::slice::from_ref(&a)),
        "a: Required value"
    );
    assert_eq!(
        aggregate_message(&[a.clone(), b.clone(), a.clone()]),
        "[a: Required value, b: Required value]"
    );
    assert_eq!(aggregate_message(&[a.clone(), a]), "a: Required value");
}

#[test]
fn object_meta_name_rules() {
    let errs = validate_object_meta(
        &json!({"name": "Foo_bar", "namespace": "default"}),
        true,
        name_is_dns_subdomain,
    );
    assert_eq!(
        messages(&errs),
        vec![format!(
            "metadata.name: Invalid value: \"Foo_bar\": {SUBDOMAIN_MSG}"
        )]
    );

    let errs = validate_object_meta(&json!({}), true, name_is_dns_subdomain);
    assert_eq!(
        messages(&errs),
        vec![
            "metadata.name: Required value: name or generateName is required",
            "metadata.namespace: Required value",
        ]
    );
    assert_eq!(errs[0].reason(), "FieldValueRequired");

    // A null metadata is the same as an empty one.
    assert_eq!(
        validate_object_meta(&Value::Null, false, name_is_dns_subdomain).len(),
        1
    );

    assert!(
        validate_object_meta(
            &json!({"name": "web-1", "namespace": "default"}),
            true,
            name_is_dns_subdomain
        )
        .is_empty()
    );
    assert!(
        validate_object_meta(
            &json!({"name": "a.b.c", "generateName": "a-", "namespace": "x"}),
            true,
            name_is_dns_subdomain
        )
        .is_empty()
    );

    // Service names are DNS-1035 labels.
    let errs = validate_object_meta(
        &json!({"name": "1svc", "namespace": "default"}),
        true,
        name_is_dns1035_label,
    );
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .starts_with("metadata.name: Invalid value: \"1svc\": a DNS-1035 label")
    );

    // A bad generateName is reported on generateName (and the name made from it on name).
    let errs = validate_object_meta(
        &json!({"generateName": "Web-", "name": "Web-abcde", "namespace": "d"}),
        true,
        name_is_dns_subdomain,
    );
    assert_eq!(
        messages(&errs),
        vec![
            format!("metadata.generateName: Invalid value: \"Web-\": {SUBDOMAIN_MSG}"),
            format!("metadata.name: Invalid value: \"Web-abcde\": {SUBDOMAIN_MSG}"),
        ]
    );
}

#[test]
fn object_meta_namespace_rules() {
    let errs = validate_object_meta(
        &json!({"name": "n1", "namespace": "default"}),
        false,
        name_is_dns_subdomain,
    );
    assert_eq!(
        messages(&errs),
        vec!["metadata.namespace: Forbidden: not allowed on this type"]
    );
    assert_eq!(errs[0].reason(), "FieldValueForbidden");

    let errs = validate_object_meta(
        &json!({"name": "p", "namespace": "Bad.NS"}),
        true,
        name_is_dns_subdomain,
    );
    assert_eq!(
        messages(&errs),
        vec![format!(
            "metadata.namespace: Invalid value: \"Bad.NS\": {LABEL_MSG}"
        )]
    );
    let errs = validate_object_meta(
        &json!({"name": "p", "namespace": "a.b"}),
        true,
        name_is_dns_subdomain,
    );
    assert_eq!(
        messages(&errs),
        vec!["metadata.namespace: Invalid value: \"a.b\": must not contain dots"]
    );
}

#[test]
fn object_meta_other_fields() {
    let meta = json!({
        "name": "ok",
        "generation": -1,
        "labels": {"-bad": "x"},
        "annotations": {"Example.COM/Key": "fine", "a b": ""},
        "finalizers": ["orphan", "foregroundDeletion", "bad/fin/alizer"],
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"},
            {"apiVersion": "", "kind": "", "name": "", "uid": ""}
        ]
    });
    let errs = validate_object_meta(&meta, false, name_is_dns_subdomain);
    let msgs = messages(&errs);
    assert_eq!(
        msgs[0],
        "metadata.generation: Invalid value: -1: must be greater than or equal to 0"
    );
    assert_eq!(
        msgs[1],
        format!("metadata.labels: Invalid value: \"-bad\": {KEY_NAME_MSG}")
    );
    // Annotation keys are checked case-insensitively; the message shows the original key.
    assert_eq!(
        msgs[2],
        format!("metadata.annotations: Invalid value: \"a b\": {KEY_NAME_MSG}")
    );
    assert_eq!(
        msgs[3],
        "metadata.ownerReferences: Invalid value: {\"apiVersion\":\"v1\",\"kind\":\"Event\",\"name\":\"e\",\"uid\":\"u\"}: /v1, Kind=Event is disallowed from being an owner"
    );
    assert_eq!(
        &msgs[4..8],
        &[
            "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty",
            "metadata.ownerReferences.kind: Invalid value: \"\": must not be empty",
            "metadata.ownerReferences.name: Invalid value: \"\": must not be empty",
            "metadata.ownerReferences.uid: Invalid value: \"\": must not be empty",
        ]
    );
    assert!(msgs[8].starts_with(
        "metadata.finalizers: Invalid value: \"bad/fin/alizer\": a valid label key must consist"
    ));
    assert_eq!(
        msgs[9],
        "metadata.finalizers: Invalid value: [\"orphan\",\"foregroundDeletion\",\"bad/fin/alizer\"]: finalizer orphan and foregroundDeletion cannot be both set"
    );
    assert_eq!(msgs.len(), 10);
}

#[test]
fn object_meta_controller_refs_and_custom_path() {
    let meta = json!({
        "name": "rs-1",
        "namespace": "d",
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "b", "uid": "2", "controller": true}
        ]
    });
    let errs =
        validate_object_meta_at(&meta, true, name_is_dns_subdomain, "spec.template.metadata");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec.template.metadata.ownerReferences");
    assert!(errs[0].detail.starts_with(
        "Only one reference can have Controller set to true. Found \"true\" in references for Deployment/a and StatefulSet/b"
    ));
}

#[test]
fn object_meta_wrong_types() {
    let errs = validate_object_meta(
        &json!({"name": 5, "namespace": "d", "labels": ["x"]}),
        true,
        name_is_dns_subdomain,
    );
    assert_eq!(
        messages(&errs),
        vec![
            "metadata.name: Invalid value: 5: must be of type string",
            "metadata.name: Required value: name or generateName is required",
            "metadata.labels: Invalid value: [\"x\"]: must be of type object",
        ]
    );
    assert_eq!(errs[0].reason(), "FieldValueTypeInvalid");
    let errs = validate_object_meta(&json!("x"), true, name_is_dns_subdomain);
    assert_eq!(
        messages(&errs),
        vec!["metadata: Invalid value: \"x\": must be of type object"]
    );
}

#[test]
fn labels_and_annotations() {
    assert!(
        validate_labels(
            &json!({"app": "web", "example.com/tier": ""}),
            "metadata.labels"
        )
        .is_empty()
    );
    assert!(validate_labels(&Value::Null, "metadata.labels").is_empty());
    let errs = validate_labels(&json!({"app": "-web", "n": 1}), "metadata.labels");
    assert_eq!(
        messages(&errs),
        // Wrong types are reported before format problems.
        vec![
            "metadata.labels[n]: Invalid value: 1: must be of type string".to_string(),
            format!("metadata.labels: Invalid value: \"-web\": {VALUE_MSG}"),
        ]
    );

    let at_limit = json!({"k": "v".repeat(256 * 1024 - 1)});
    assert!(validate_annotations(&at_limit, "metadata.annotations").is_empty());
    let over = json!({"k": "v".repeat(256 * 1024)});
    let errs = validate_annotations(&over, "metadata.annotations");
    assert_eq!(
        messages(&errs),
        vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
    assert_eq!(errs[0].reason(), "FieldValueTooLong");
    assert!(validate_annotations(&json!({"Upper/Case": "x"}), "a").is_empty());
}

#[test]
fn label_selector_validation() {
    assert!(validate_label_selector(&Value::Null, "spec.selector").is_empty());
    assert!(
        validate_label_selector(
            &json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]}),
            "spec.selector"
        )
        .is_empty()
    );
    let errs = validate_label_selector(
        &json!({
            "matchLabels": {"app": "-web"},
            "matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "-c", "operator": "Foo", "values": ["-v"]}
            ]
        }),
        "spec.selector",
    );
    assert_eq!(
        messages(&errs),
        vec![
            format!("spec.selector.matchLabels: Invalid value: \"-web\": {VALUE_MSG}"),
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'".to_string(),
            "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_string(),
            "spec.selector.matchExpressions[2].operator: Invalid value: \"Foo\": not a valid selector operator".to_string(),
            format!("spec.selector.matchExpressions[2].key: Invalid value: \"-c\": {KEY_NAME_MSG}"),
            format!("spec.selector.matchExpressions[2].values[0]: Invalid value: \"-v\": {VALUE_MSG}"),
        ]
    );
}

#[test]
fn object_meta_update() {
    let old = json!({
        "name": "a", "namespace": "d", "uid": "u1", "resourceVersion": "5",
        "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 3
    });
    let mut new = old.clone();
    assert!(validate_object_meta_update(&new, &old).is_empty());

    new["name"] = json!("b");
    new["uid"] = json!("u2");
    new["generation"] = json!(2);
    new["resourceVersion"] = json!("");
    new["creationTimestamp"] = Value::Null;
    assert_eq!(
        messages(&validate_object_meta_update(&new, &old)),
        vec![
            "metadata.resourceVersion: Invalid value: \"\": must be specified for an update",
            "metadata.generation: Invalid value: 2: must not be decremented",
            "metadata.name: Invalid value: \"b\": field is immutable",
            "metadata.uid: Invalid value: \"u2\": field is immutable",
            "metadata.creationTimestamp: Invalid value: null: field is immutable",
        ]
    );

    // Once deletion started, finalizers may only be removed.
    let deleting = json!({"name": "a", "resourceVersion": "1", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x"]});
    let mut upd = deleting.clone();
    upd["finalizers"] = json!(["x", "z", "y"]);
    assert_eq!(
        messages(&validate_object_meta_update(&upd, &deleting)),
        vec![
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"y\", \"z\"}"
        ]
    );
    upd["finalizers"] = json!([]);
    assert!(validate_object_meta_update(&upd, &deleting).is_empty());
}
