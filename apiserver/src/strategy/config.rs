//! ConfigMaps and Secrets: `stringData` folding and the Opaque default, key and size
//! validation, Secret type requirements and immutability.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use skiff_apimachinery::validation::FieldError;

use super::util::{at, obj_of, semantic_eq, str_of};
use super::{Strategy, checks, immutable};

pub struct ConfigMapStrategy;
pub struct SecretStrategy;

/// Upstream's `MaxSecretSize`, also the ConfigMap limit.
const MAX_SIZE: usize = 1024 * 1024;

const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

fn decoded_len(v: &Value) -> usize {
    v.as_str()
        .and_then(|s| STANDARD.decode(s).ok())
        .map(|b| b.len())
        .unwrap_or(0)
}

fn config_key_errors(key: &str, field: String, errs: &mut Vec<FieldError>) {
    for msg in checks::is_config_map_key(key) {
        errs.push(FieldError::invalid(&field, key, msg));
    }
}

/// Changes to data of an object marked immutable, and unmarking it, are forbidden.
fn immutability(new: &Value, old: &Value, keys: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_MSG));
    }
    for key in keys {
        if !semantic_eq(
            new.get(*key).unwrap_or(&Value::Null),
            old.get(*key).unwrap_or(&Value::Null),
        ) {
            errs.push(FieldError::forbidden(*key, IMMUTABLE_MSG));
        }
    }
    errs
}

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let data = obj_of(obj, "data");
        let binary = obj_of(obj, "binaryData");
        let mut total = 0;
        for (key, value) in data.into_iter().flatten() {
            config_key_errors(key, format!("data[{key}]"), &mut errs);
            if binary.is_some_and(|b| b.contains_key(key)) {
                errs.push(FieldError::invalid(
                    format!("data[{key}]"),
                    key.as_str(),
                    "duplicate of key present in binaryData",
                ));
            }
            total += value.as_str().map_or(0, str::len);
        }
        for (key, value) in binary.into_iter().flatten() {
            config_key_errors(key, format!("binaryData[{key}]"), &mut errs);
            total += decoded_len(value);
        }
        if total > MAX_SIZE {
            // Upstream reports this against the whole object (an empty path).
            errs.push(FieldError::too_long("", Some(MAX_SIZE)));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        immutability(new, old, &["data", "binaryData"])
    }
}

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else {
            return;
        };
        // The v1 conversion folds stringData into data (winning over data) and drops it.
        if let Some(Value::Object(string_data)) = m.remove("stringData") {
            let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
            if !data.is_object() {
                *data = Value::Object(Map::new());
            }
            if let Some(d) = data.as_object_mut() {
                for (k, v) in string_data {
                    let raw = v.as_str().unwrap_or("").to_string();
                    d.insert(k, json!(STANDARD.encode(raw.as_bytes())));
                }
            }
        }
        if str_of(obj, "type").is_empty()
            && let Some(m) = obj.as_object_mut()
        {
            m.insert("type".into(), json!("Opaque"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let data = obj_of(obj, "data");
        let mut total = 0;
        for (key, value) in data.into_iter().flatten() {
            config_key_errors(key, format!("data[{key}]"), &mut errs);
            total += decoded_len(value);
        }
        if total > MAX_SIZE {
            errs.push(FieldError::too_long("data", Some(MAX_SIZE)));
        }
        let has_key = |k: &str| data.is_some_and(|d| d.contains_key(k));
        let required = |k: &str| FieldError::required(format!("data[{k}]"), "");
        match str_of(obj, "type") {
            "kubernetes.io/service-account-token"
                if str_of(
                    at(obj, &["metadata", "annotations"]),
                    "kubernetes.io/service-account.name",
                )
                .is_empty() =>
            {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
            "kubernetes.io/dockercfg" => json_key(data, ".dockercfg", &mut errs),
            "kubernetes.io/dockerconfigjson" => json_key(data, ".dockerconfigjson", &mut errs),
            "kubernetes.io/basic-auth" if !has_key("username") && !has_key("password") => {
                errs.push(required("username"));
                errs.push(required("password"));
            }
            "kubernetes.io/ssh-auth"
                if data
                    .and_then(|d| d.get("ssh-privatekey"))
                    .is_none_or(|v| decoded_len(v) == 0) =>
            {
                errs.push(required("ssh-privatekey"));
            }
            "kubernetes.io/tls" => {
                for k in ["tls.crt", "tls.key"] {
                    if !has_key(k) {
                        errs.push(required(k));
                    }
                }
            }
            _ => {}
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = immutable(
            new.get("type").unwrap_or(&Value::Null),
            old.get("type").unwrap_or(&Value::Null),
            "type",
        );
        errs.extend(immutability(new, old, &["data"]));
        errs
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["type"]
    }
}

/// A docker config key must be present and hold a JSON object.
fn json_key(data: Option<&Map<String, Value>>, key: &str, errs: &mut Vec<FieldError>) {
    let field = format!("data[{key}]");
    let Some(value) = data.and_then(|d| d.get(key)) else {
        errs.push(FieldError::required(field, ""));
        return;
    };
    let bytes = value
        .as_str()
        .and_then(|s| STANDARD.decode(s).ok())
        .unwrap_or_default();
    if let Err(e) = serde_json::from_slice::<Map<String, Value>>(&bytes) {
        errs.push(FieldError::invalid(
            field,
            "<secret contents redacted>",
            e.to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn secret(body: Value) -> Value {
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}});
        if let (Some(m), Some(b)) = (s.as_object_mut(), body.as_object()) {
            m.extend(b.clone());
        }
        SecretStrategy.default(&mut s);
        s
    }

    #[test]
    fn string_data_is_folded_into_data() {
        let s = secret(
            json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "hello", "c": "x"}}),
        );
        assert_eq!(
            s,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "default"},
                "data": {"a": "eA==", "b": "aGVsbG8=", "c": "eA=="},
                "type": "Opaque",
            })
        );
        assert!(SecretStrategy.validate(&s).is_empty());
    }

    #[test]
    fn secret_checks() {
        let s = secret(json!({"type": "kubernetes.io/tls", "data": {"bad key": "eA=="}}));
        assert_eq!(
            messages(&SecretStrategy.validate(&s)),
            vec![
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "data[tls.crt]: Required value",
                "data[tls.key]: Required value",
            ]
        );
        let big = STANDARD.encode(vec![0u8; MAX_SIZE + 1]);
        let s = secret(json!({"data": {"k": big}}));
        assert_eq!(
            messages(&SecretStrategy.validate(&s)),
            vec!["data: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn secret_type_and_immutability() {
        let old = secret(json!({"immutable": true, "data": {"a": "eA=="}}));
        let new = secret(
            json!({"type": "kubernetes.io/basic-auth", "data": {"a": "eQ==", "username": ""}}),
        );
        assert_eq!(
            messages(&SecretStrategy.validate_update(&new, &old)),
            vec![
                "type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable",
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
    }

    fn cm(body: Value) -> Value {
        let mut c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
        if let (Some(m), Some(b)) = (c.as_object_mut(), body.as_object()) {
            m.extend(b.clone());
        }
        c
    }

    #[test]
    fn configmap_checks() {
        let c = cm(
            json!({"data": {"app.conf": "x", "dup": "y", "..": "z"}, "binaryData": {"dup": "eA=="}}),
        );
        assert_eq!(
            messages(&ConfigMapStrategy.validate(&c)),
            vec![
                "data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData",
                "data[..]: Invalid value: \"..\": must not be '..'",
            ]
        );
        let c = cm(json!({"data": {"k": "x".repeat(MAX_SIZE + 1)}}));
        assert_eq!(
            messages(&ConfigMapStrategy.validate(&c)),
            vec![": Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn immutable_configmap() {
        let old = cm(json!({"immutable": true, "data": {"a": "1"}}));
        let same = old.clone();
        assert!(ConfigMapStrategy.validate_update(&same, &old).is_empty());
        let new = cm(json!({"immutable": true, "data": {"a": "2"}}));
        assert_eq!(
            messages(&ConfigMapStrategy.validate_update(&new, &old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        // Making a mutable ConfigMap immutable is allowed.
        let mutable = cm(json!({"data": {"a": "1"}}));
        assert!(ConfigMapStrategy.validate_update(&old, &mutable).is_empty());
    }
}
