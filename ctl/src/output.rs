//! `-o yaml|json|name|jsonpath=…|wide`: the formats kubectl prints objects in. Keys are
//! sorted as kubectl's (Go maps marshal sorted), JSON is indented by four spaces.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    Table { wide: bool },
    Yaml,
    Json,
    Name,
    JsonPath(String),
}

impl OutputFormat {
    pub fn parse(flag: Option<&str>) -> Result<OutputFormat> {
        Ok(match flag {
            None | Some("") => OutputFormat::Table { wide: false },
            Some("wide") => OutputFormat::Table { wide: true },
            Some("yaml") => OutputFormat::Yaml,
            Some("json") => OutputFormat::Json,
            Some("name") => OutputFormat::Name,
            Some(other) => match other
                .strip_prefix("jsonpath=")
                .or_else(|| other.strip_prefix("jsonpath-as-json="))
            {
                Some(template) => OutputFormat::JsonPath(template.to_string()),
                None => {
                    return Err(Error::usage(format!(
                        "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,jsonpath,name,wide,yaml"
                    )));
                }
            },
        })
    }
}

/// `value` with every object's keys in sorted order.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

pub fn to_yaml(value: &Value) -> Result<String> {
    serde_saphyr::to_string(&sorted(value)).map_err(|e| Error::Other(e.to_string()))
}

pub fn to_json(value: &Value) -> Result<String> {
    to_json_indented(value, b"    ")
}

/// JSON with another indent (`kubectl version -o json` uses two spaces).
pub fn to_json_indented(value: &Value, indent: &[u8]) -> Result<String> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut serializer = serde_json::Serializer::with_formatter(&mut buf, formatter);
    sorted(value)
        .serialize(&mut serializer)
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    text.push('\n');
    Ok(text)
}

/// Several objects as kubectl prints them: a `v1 List`.
pub fn list_of(items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_and_json_sort_keys_like_kubectl() {
        let object = json!({"kind": "ConfigMap", "apiVersion": "v1", "data": {"b": "2", "a": "1"}, "metadata": {"name": "x", "labels": {"z": "1"}}, "list": [{"name": "n", "image": "i"}]});
        assert_eq!(
            to_yaml(&object).unwrap(),
            "apiVersion: v1\ndata:\n  a: \"1\"\n  b: \"2\"\nkind: ConfigMap\nlist:\n- image: i\n  name: \"n\"\nmetadata:\n  labels:\n    z: \"1\"\n  name: x\n"
        );
        assert_eq!(
            to_json(&json!({"b": 1, "a": [true]})).unwrap(),
            "{\n    \"a\": [\n        true\n    ],\n    \"b\": 1\n}\n"
        );
    }

    #[test]
    fn output_flags() {
        assert_eq!(
            OutputFormat::parse(Some("jsonpath={.a}")).unwrap(),
            OutputFormat::JsonPath("{.a}".into())
        );
        assert_eq!(
            OutputFormat::parse(Some("wide")).unwrap(),
            OutputFormat::Table { wide: true }
        );
        assert!(OutputFormat::parse(Some("xml")).is_err());
    }
}
