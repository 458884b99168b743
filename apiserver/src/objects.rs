//! Objects over the raw store: JSON encoding, and `metadata.resourceVersion` taken from the
//! store's modification revision (it is never persisted inside the value, as upstream).

use std::sync::Arc;

use serde_json::Value;
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

fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    // Serializing a serde_json::Value cannot fail.
    serde_json::to_vec(&obj).unwrap_or_default()
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

    pub async fn create(&self, key: &str, obj: &Value) -> Result<Stored, StorageError> {
        let kv = self.raw.create(key, encode(obj)).await?;
        decode(&kv)
    }

    pub async fn update(
        &self,
        key: &str,
        obj: &Value,
        expected: Revision,
    ) -> Result<Stored, StorageError> {
        let kv = self.raw.update(key, encode(obj), expected).await?;
        decode(&kv)
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
