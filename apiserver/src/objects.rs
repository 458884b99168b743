//! Objects over the raw store: JSON encoding, and `metadata.resourceVersion` taken from the
//! store's modification revision (it is never persisted inside the value, as upstream).

use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use skiff_storage::{KeyValue, ListOptions, Revision, Storage, StorageError};

/// A decoded object with the revision it was last written at.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub object: Value,
    pub revision: Revision,
}

#[derive(Clone)]
pub struct ObjectStore {
    raw: Arc<dyn Storage>,
}

/// Set `metadata.resourceVersion` to a revision.
pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".to_string(),
            Value::String(revision.to_string()),
        );
    }
}

pub fn decode(kv: &KeyValue) -> Result<Stored, StorageError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| StorageError::Internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(Stored {
        key: kv.key.clone(),
        object,
        revision: kv.mod_revision,
    })
}

/// The bytes to store for `obj`, which loses its `metadata.resourceVersion` on the way (the
/// caller sets the new one after the write, which leaves `obj` equal to what decoding the
/// stored bytes gives).
fn encode(obj: &mut Value) -> Vec<u8> {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    // Serializing a serde_json::Value cannot fail.
    serde_json::to_vec(obj).unwrap_or_default()
}

/// Where [`encode_locating_metadata`] left `metadata` in its output: the offset of its
/// closing brace, and whether it has members (a new member then needs a comma).
#[derive(Debug, Clone, Copy)]
struct MetadataEnd {
    close: usize,
    has_members: bool,
}

/// [`encode`], noting where `metadata` ends so that the object's JSON with its new
/// resourceVersion can be spliced from the stored bytes ([`splice_resource_version`]) instead
/// of encoding the object a second time for the response. The bytes are serde_json's compact
/// encoding of `obj`, member by member, so they equal what [`encode`] gives.
fn encode_locating_metadata(obj: &mut Value) -> (Vec<u8>, Option<MetadataEnd>) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let Value::Object(members) = &*obj else {
        return (serde_json::to_vec(obj).unwrap_or_default(), None);
    };
    let mut out = Vec::with_capacity(2048);
    let mut metadata_end = None;
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a string or a serde_json::Value into a Vec cannot fail.
        if serde_json::to_writer(&mut out, key).is_err() {
            return (serde_json::to_vec(obj).unwrap_or_default(), None);
        }
        out.push(b':');
        if serde_json::to_writer(&mut out, value).is_err() {
            return (serde_json::to_vec(obj).unwrap_or_default(), None);
        }
        if key == "metadata"
            && let Value::Object(meta) = value
        {
            metadata_end = Some(MetadataEnd {
                close: out.len() - 1,
                has_members: !meta.is_empty(),
            });
        }
    }
    out.push(b'}');
    (out, metadata_end)
}

/// `raw`, as [`encode_locating_metadata`] wrote it, with `metadata.resourceVersion` set to
/// `revision` as the last member of `metadata`, where [`set_resource_version`] puts it.
fn splice_resource_version(raw: &[u8], end: MetadataEnd, revision: Revision) -> Option<Vec<u8>> {
    let rv = revision.to_string();
    let mut out = Vec::with_capacity(raw.len() + rv.len() + 24);
    out.extend_from_slice(raw.get(..end.close)?);
    if end.has_members {
        out.push(b',');
    }
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(rv.as_bytes());
    out.push(b'"');
    out.extend_from_slice(raw.get(end.close..)?);
    Some(out)
}

/// The object just written as `kv`: `obj` went through [`encode`], so decoding `kv` again
/// would only rebuild it.
fn written(kv: KeyValue, mut obj: Value) -> Stored {
    set_resource_version(&mut obj, kv.mod_revision);
    Stored {
        key: kv.key,
        object: obj,
        revision: kv.mod_revision,
    }
}

/// `raw`, an object as stored (without `metadata.resourceVersion`), encoded with
/// `metadata.resourceVersion` set to `revision`: byte for byte what encoding [`decode`]'s
/// result gives, since stored bytes are serde_json's compact output, but without building the
/// object. `None` when `raw` does not have that shape (the caller then decodes it).
pub fn encode_with_resource_version(raw: &[u8], revision: Revision) -> Option<Vec<u8>> {
    let top: TopLevel<'_> = serde_json::from_slice(raw).ok()?;
    let meta = top.metadata?.get();
    let shape: MetaShape = serde_json::from_str(meta).ok()?;
    if shape.has_resource_version {
        return None;
    }
    let start = (meta.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    // The raw value spans `{...}` exactly; the new member goes last, as `insert` puts it.
    let close = start + meta.len().checked_sub(1)?;
    let rv = revision.to_string();
    let mut out = Vec::with_capacity(raw.len() + rv.len() + 24);
    out.extend_from_slice(raw.get(..close)?);
    if shape.members > 0 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(rv.as_bytes());
    out.push(b'"');
    out.extend_from_slice(raw.get(close..)?);
    Some(out)
}

/// A JSON object's `metadata` member, unparsed; every other member is only validated.
struct TopLevel<'a> {
    metadata: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut metadata = None;
                while let Some(is_metadata) = map.next_key_seed(IsKey("metadata"))? {
                    if !is_metadata {
                        map.next_value::<IgnoredAny>()?;
                    } else if metadata.is_some() {
                        return Err(de::Error::custom("duplicate metadata"));
                    } else {
                        metadata = Some(map.next_value::<&'de RawValue>()?);
                    }
                }
                Ok(TopLevel { metadata })
            }
        }
        d.deserialize_map(V)
    }
}

/// How many members an object has and whether one is `resourceVersion`.
struct MetaShape {
    members: usize,
    has_resource_version: bool,
}

impl<'de> Deserialize<'de> for MetaShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetaShape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut shape = MetaShape {
                    members: 0,
                    has_resource_version: false,
                };
                while let Some(is_rv) = map.next_key_seed(IsKey("resourceVersion"))? {
                    map.next_value::<IgnoredAny>()?;
                    shape.members += 1;
                    shape.has_resource_version |= is_rv;
                }
                Ok(shape)
            }
        }
        d.deserialize_map(V)
    }
}

/// What a pod binding comes to, worked out on the stored bytes of the pod.
pub enum BindEdit<'a> {
    /// The pod has a deletionTimestamp.
    Deleting,
    /// The pod is on this node already.
    Assigned(String),
    /// The pod may be bound.
    Bind(PodBinding<'a>),
}

/// A stored pod split into its members, every one left as stored except `spec` (split once
/// more) and `status` (decoded), the two a binding changes.
pub struct PodBinding<'a> {
    members: Vec<(String, &'a RawValue)>,
    spec_at: usize,
    spec: Vec<(String, &'a RawValue)>,
    status_at: Option<usize>,
}

/// A binding on the stored bytes of a pod (no resourceVersion inside, serde_json's compact
/// output): everything but `spec` and `status` is copied as is, so the result is byte for byte
/// what decoding, editing and encoding the whole pod gives. `None` when the pod does not have
/// that shape (the caller then takes the decoding path).
pub fn bind_stored(raw: &[u8]) -> Option<BindEdit<'_>> {
    let Members(members) = serde_json::from_slice(raw).ok()?;
    let meta = members.iter().find(|(k, _)| k == "metadata")?.1;
    let Members(meta) = serde_json::from_str(meta.get()).ok()?;
    if meta.iter().any(|(k, _)| k == "resourceVersion") {
        return None;
    }
    if meta.iter().any(|(k, _)| k == "deletionTimestamp") {
        return Some(BindEdit::Deleting);
    }
    let spec_at = members.iter().position(|(k, _)| k == "spec")?;
    let Members(spec) = serde_json::from_str(members[spec_at].1.get()).ok()?;
    if let Some((_, node)) = spec.iter().find(|(k, _)| k == "nodeName")
        && let Ok(Value::String(node)) = serde_json::from_str::<Value>(node.get())
        && !node.is_empty()
    {
        return Some(BindEdit::Assigned(node));
    }
    let status_at = members.iter().position(|(k, _)| k == "status");
    Some(BindEdit::Bind(PodBinding {
        members,
        spec_at,
        spec,
        status_at,
    }))
}

impl PodBinding<'_> {
    /// The pod with `spec.nodeName` set to `node` and `edit_status` applied to its status (an
    /// object; a missing or non-object status starts empty), encoded for storage. Members
    /// keep their places; new ones go last, as `serde_json::Map::insert` puts them.
    pub fn finish(self, node: &str, edit_status: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut status = match self.status_at {
            Some(i) => serde_json::from_str(self.members[i].1.get()).unwrap_or(Value::Null),
            None => Value::Null,
        };
        if !status.is_object() {
            status = Value::Object(serde_json::Map::new());
        }
        edit_status(&mut status);
        let node = Value::String(node.to_string());
        let mut out = Vec::with_capacity(
            self.members
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
                + 256,
        );
        out.push(b'{');
        for (i, (key, value)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(&mut out, key);
            if i == self.spec_at {
                out.push(b'{');
                let mut set = false;
                for (j, (k, v)) in self.spec.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_key(&mut out, k);
                    if k == "nodeName" {
                        write_value(&mut out, &node);
                        set = true;
                    } else {
                        out.extend_from_slice(v.get().as_bytes());
                    }
                }
                if !set {
                    if !self.spec.is_empty() {
                        out.push(b',');
                    }
                    write_key(&mut out, "nodeName");
                    write_value(&mut out, &node);
                }
                out.push(b'}');
            } else if Some(i) == self.status_at {
                write_value(&mut out, &status);
            } else {
                out.extend_from_slice(value.get().as_bytes());
            }
        }
        if self.status_at.is_none() {
            if !self.members.is_empty() {
                out.push(b',');
            }
            write_key(&mut out, "status");
            write_value(&mut out, &status);
        }
        out.push(b'}');
        out
    }
}

/// `"key":`, escaped as serde_json escapes it.
fn write_key(out: &mut Vec<u8>, key: &str) {
    write_value(out, &Value::String(key.to_string()));
    out.push(b':');
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// An object's members in order, their values unparsed. Duplicate names fail, since a
/// decoded object would keep only one of them.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members: Vec<(String, &'de RawValue)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom("duplicate member"));
                    }
                    let value = map.next_value::<&'de RawValue>()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// A map key, compared with a name without being copied.
struct IsKey(&'static str);

impl<'de> DeserializeSeed<'de> for IsKey {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for IsKey {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

pub struct ListPage {
    pub items: Vec<Stored>,
    pub revision: Revision,
    pub more: bool,
}

impl ObjectStore {
    pub fn new(raw: Arc<dyn Storage>) -> Self {
        ObjectStore { raw }
    }

    pub fn raw(&self) -> &Arc<dyn Storage> {
        &self.raw
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        match self.raw.get(key).await? {
            Some(kv) => decode(&kv).map(Some),
            None => Ok(None),
        }
    }

    pub async fn list(&self, opts: ListOptions) -> Result<ListPage, StorageError> {
        let res = self.raw.list(opts).await?;
        let items = res.kvs.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(ListPage {
            items,
            revision: res.revision,
            more: res.more,
        })
    }

    /// Creates `obj` under `key`; also returns the created object's JSON (what encoding
    /// `Stored::object` gives), spliced from the stored bytes.
    pub async fn create(
        &self,
        key: &str,
        mut obj: Value,
    ) -> Result<(Stored, Option<Vec<u8>>), StorageError> {
        let (bytes, metadata_end) = encode_locating_metadata(&mut obj);
        let kv = self.raw.create(key, bytes).await?;
        let json =
            metadata_end.and_then(|end| splice_resource_version(&kv.value, end, kv.mod_revision));
        Ok((written(kv, obj), json))
    }

    pub async fn update(
        &self,
        key: &str,
        mut obj: Value,
        expected: Revision,
    ) -> Result<Stored, StorageError> {
        let kv = self.raw.update(key, encode(&mut obj), expected).await?;
        Ok(written(kv, obj))
    }

    /// Delete, returning the object as it was with the resourceVersion of the delete.
    pub async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<Stored, StorageError> {
        let (kv, rev) = self.raw.delete(key, expected).await?;
        let mut stored = decode(&kv)?;
        set_resource_version(&mut stored.object, rev);
        stored.revision = rev;
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: Option<Value>) -> Value {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p\u{e9}\"q", "namespace": "ns", "labels": {"a": "b"},
                         "managedFields": [{"manager": "x", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
                     "priority": 0, "weight": 1.5},
        });
        if let Some(status) = status {
            pod["status"] = status;
        }
        pod
    }

    #[test]
    fn encoded_with_resource_version_matches_decoding() {
        for obj in [
            pod(None),
            json!({"metadata": {}}),
            json!({"a": [1, {"b": null}], "metadata": {"x": "\n"}}),
        ] {
            let raw = serde_json::to_vec(&obj).unwrap();
            let kv = KeyValue {
                key: "k".into(),
                value: raw.clone(),
                create_revision: 3,
                mod_revision: 7,
            };
            let expected = serde_json::to_vec(&decode(&kv).unwrap().object).unwrap();
            assert_eq!(encode_with_resource_version(&raw, 7), Some(expected));
        }
        assert_eq!(encode_with_resource_version(b"{\"metadata\":[]}", 1), None);
        assert_eq!(
            encode_with_resource_version(b"{\"metadata\":{\"resourceVersion\":\"1\"}}", 1),
            None
        );
        assert_eq!(encode_with_resource_version(b"{\"metadata\":{}", 1), None);
    }

    #[test]
    fn spliced_create_json_matches_encoding_the_written_object() {
        for obj in [
            pod(None),
            json!({"metadata": {}, "spec": {"x": 1}}),
            json!({"kind": "K", "metadata": {"resourceVersion": "5", "name": "n"}, "z": "\u{2028}"}),
            json!({"metadata": {"resourceVersion": "5"}}),
        ] {
            let mut written_obj = obj.clone();
            let (raw, end) = encode_locating_metadata(&mut written_obj);
            assert_eq!(raw, encode(&mut obj.clone()), "stored bytes unchanged");
            let kv = KeyValue {
                key: "k".into(),
                value: raw.clone(),
                create_revision: 9,
                mod_revision: 9,
            };
            let expected = serde_json::to_vec(&written(kv, written_obj).object).unwrap();
            let end = end.expect("metadata located");
            assert_eq!(splice_resource_version(&raw, end, 9), Some(expected));
        }
        // No metadata object: nothing to splice into.
        assert!(
            encode_locating_metadata(&mut json!({"metadata": 1}))
                .1
                .is_none()
        );
        assert!(encode_locating_metadata(&mut json!([1])).1.is_none());
    }

    #[test]
    fn binding_the_stored_bytes_matches_editing_the_object() {
        let mark = |status: &mut Value| {
            status["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
        };
        for status in [
            None,
            Some(json!({"phase": "Pending", "qosClass": "Guaranteed"})),
            Some(Value::Null),
        ] {
            for node_name in [None, Some(json!("")), Some(Value::Null)] {
                let mut obj = pod(status.clone());
                if let Some(n) = &node_name {
                    obj["spec"]["nodeName"] = n.clone();
                }
                let raw = serde_json::to_vec(&obj).unwrap();
                let Some(BindEdit::Bind(edit)) = bind_stored(&raw) else {
                    panic!("not bindable");
                };
                let got = edit.finish("node-1", mark);
                let mut expected = obj.clone();
                expected["spec"]["nodeName"] = json!("node-1");
                if !expected["status"].is_object() {
                    expected["status"] = json!({});
                }
                mark(&mut expected["status"]);
                assert_eq!(got, serde_json::to_vec(&expected).unwrap());
            }
        }
        let mut assigned = pod(None);
        assigned["spec"]["nodeName"] = json!("n");
        let raw = serde_json::to_vec(&assigned).unwrap();
        assert!(matches!(bind_stored(&raw), Some(BindEdit::Assigned(n)) if n == "n"));
        let mut deleting = pod(None);
        deleting["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        let raw = serde_json::to_vec(&deleting).unwrap();
        assert!(matches!(bind_stored(&raw), Some(BindEdit::Deleting)));
        assert!(bind_stored(b"{\"metadata\":{},\"spec\":[]}").is_none());
        assert!(bind_stored(b"{\"metadata\":{},\"spec\":{},\"spec\":{}}").is_none());
    }
}
