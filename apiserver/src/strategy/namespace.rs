//! Namespaces: the `kubernetes.io/metadata.name` label, the `kubernetes` finalizer and the
//! Active phase, as upstream's defaults and namespace strategy set them.

use serde_json::{Value, json};
use skiff_apimachinery::validation::{self as v, FieldError};

use super::Strategy;
use super::util::{arr_of, at, child_obj, has, str_of};

pub struct NamespaceStrategy;

const NAME_LABEL: &str = "kubernetes.io/metadata.name";
const KUBERNETES_FINALIZER: &str = "kubernetes";
const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

impl Strategy for NamespaceStrategy {
    fn default(&self, obj: &mut Value) {
        let name = str_of(at(obj, &["metadata"]), "name").to_string();
        if !name.is_empty()
            && let Some(labels) = child_obj(obj, "metadata").and_then(|m| child_obj(m, "labels"))
        {
            labels[NAME_LABEL] = json!(name);
        }
        if str_of(at(obj, &["status"]), "phase").is_empty()
            && let Some(status) = child_obj(obj, "status")
        {
            status["phase"] = json!("Active");
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"phase": "Active"}));
        }
        // The finalizer is added at create only; it is removed over the object's life.
        if let Some(spec) = child_obj(obj, "spec") {
            let present = arr_of(spec, "finalizers")
                .iter()
                .any(|f| f.as_str() == Some(KUBERNETES_FINALIZER));
            if !present {
                if !spec.get("finalizers").is_some_and(Value::is_array) {
                    spec["finalizers"] = json!([]);
                }
                if let Some(list) = spec["finalizers"].as_array_mut() {
                    list.push(json!(KUBERNETES_FINALIZER));
                }
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers changes only through the finalize subresource.
        let old_finalizers = at(old, &["spec", "finalizers"]).clone();
        if let Some(spec) = child_obj(new, "spec")
            && let Some(m) = spec.as_object_mut()
        {
            if old_finalizers.is_null() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), old_finalizers);
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        // Upstream reports these against the list, without an index.
        let path = "spec.finalizers";
        for f in arr_of(at(obj, &["spec"]), "finalizers") {
            let f = f.as_str().unwrap_or("");
            for msg in v::is_qualified_name(f) {
                errs.push(FieldError::invalid(path, f, msg));
            }
            if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
                errs.push(FieldError::invalid(
                    path,
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        errs
    }

    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        // An empty phase is defaulted to Active upstream before validation.
        let phase = match str_of(at(new, &["status"]), "phase") {
            "" => "Active",
            p => p,
        };
        let deleting = has(at(new, &["metadata"]), "deletionTimestamp");
        let (want, msg) = if deleting {
            (
                "Terminating",
                "may only be 'Terminating' if `deletionTimestamp` is not empty",
            )
        } else {
            (
                "Active",
                "may only be 'Active' if `deletionTimestamp` is empty",
            )
        };
        if phase != want {
            // Upstream's path has a capital P.
            return vec![FieldError::invalid("status.Phase", phase, msg)];
        }
        Vec::new()
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        v::validate_namespace_name(name, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn create_sets_label_finalizer_and_phase() {
        let mut ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}});
        NamespaceStrategy.default(&mut ns);
        NamespaceStrategy.prepare_for_create(&mut ns);
        assert_eq!(
            ns,
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
                "status": {"phase": "Active"},
                "spec": {"finalizers": ["kubernetes"]},
            })
        );
        assert!(NamespaceStrategy.validate(&ns).is_empty());
    }

    #[test]
    fn label_cannot_be_overridden_and_finalizers_are_kept() {
        let mut old = json!({"metadata": {"name": "a"}});
        NamespaceStrategy.default(&mut old);
        NamespaceStrategy.prepare_for_create(&mut old);
        let mut new = json!({"metadata": {"name": "a", "labels": {"kubernetes.io/metadata.name": "b", "x": "y"}}, "spec": {"finalizers": []}});
        NamespaceStrategy.default(&mut new);
        NamespaceStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(
            new["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "a", "x": "y"})
        );
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
    }

    #[test]
    fn finalizer_names_and_status() {
        let ns = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["custom"]}});
        assert_eq!(
            messages(&NamespaceStrategy.validate(&ns)),
            vec![
                "spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
            ]
        );
        let new = json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}});
        assert_eq!(
            messages(&NamespaceStrategy.validate_status_update(&new, &ns)),
            vec![
                "status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"
            ]
        );
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(NamespaceStrategy.validate_name("team-a").is_empty());
        assert_eq!(
            NamespaceStrategy.validate_name("team.a"),
            vec!["must not contain dots".to_string()]
        );
    }
}
