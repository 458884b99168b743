//! Deleting: finalizers, graceful pod deletion, preconditions and propagation.

use std::collections::HashMap;

use serde_json::{Value, json};
use skiff_storage::StorageError;

use super::*;
use crate::admission::AdmissionRequest;
use crate::error::{ApiError, ApiResult};
use crate::registry::Resource;
use crate::request::Verb;
use crate::server::ApiServer;

impl ApiServer {
    /// Delete one object. Returns the object and whether it is gone (false when it only got
    /// a deletionTimestamp because finalizers or a grace period hold it).
    pub(super) async fn delete(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<(Value, bool)> {
        for _ in 0..8 {
            let current = self.get_stored(res, ns, name).await?;
            let obj = &current.object;
            if let Some(uid) = &opts.precondition_uid
                && meta_str(obj, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    subject(res, name),
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(obj, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = &opts.precondition_rv
                && *rv != current.revision.to_string()
            {
                return Err(ApiError::conflict(
                    subject(res, name),
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        current.revision
                    ),
                ));
            }
            self.admission
                .admit(&AdmissionRequest {
                    resource: res,
                    subresource: None,
                    verb: Verb::Delete,
                    namespace: ns,
                    name,
                    object: None,
                    old: Some(obj),
                    dry_run: opts.dry_run,
                })
                .await?;
            let mut updated = obj.clone();
            let graceful = self.graceful_period(res, obj, opts);
            let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match opts.propagation.as_deref() {
                Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                    finalizers.push(json!("orphan"))
                }
                Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                    finalizers.push(json!("foregroundDeletion"))
                }
                _ => {}
            }
            let already_deleting = obj["metadata"].get("deletionTimestamp").is_some();
            // A namespace's first delete only marks it Terminating (its content is the
            // namespace controller's to remove); a later one deletes it for real once
            // `spec.finalizers` is empty, as upstream's namespace REST `Delete`.
            let namespace_held = res.kind == "Namespace"
                && (!already_deleting
                    || obj["spec"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty()));
            let hold = !finalizers.is_empty() || namespace_held || graceful.is_some();
            if hold {
                if already_deleting && graceful.is_none() {
                    return Ok((obj.clone(), false));
                }
                let now = chrono::Utc::now();
                let grace = graceful.unwrap_or(0);
                let meta = meta_mut(&mut updated);
                if !already_deleting || graceful.is_some() {
                    let ts = (now + chrono::Duration::seconds(grace))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    // A second graceful delete may only shorten the period.
                    let keep_old = already_deleting
                        && obj["metadata"]["deletionGracePeriodSeconds"]
                            .as_i64()
                            .is_some_and(|g| g <= grace);
                    if !keep_old {
                        meta.insert("deletionTimestamp".into(), json!(ts));
                        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    }
                }
                if !finalizers.is_empty() {
                    meta.insert("finalizers".into(), Value::Array(finalizers));
                }
                if namespace_held {
                    updated["status"]["phase"] = json!("Terminating");
                }
                if updated == *obj {
                    // A repeated graceful delete that shortens nothing (the namespace
                    // controller sends one each pass over a namespace whose pods are still
                    // terminating): nothing to write, as upstream's BeforeDelete.
                    return Ok((updated, false));
                }
                if opts.dry_run {
                    return Ok((updated, false));
                }
                match self
                    .store
                    .update(&res.key(ns, name), updated, current.revision)
                    .await
                {
                    Ok(stored) => return Ok((stored.object, false)),
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
                }
            }
            if opts.dry_run {
                return Ok((obj.clone(), true));
            }
            match self
                .store
                .delete(&res.key(ns, name), Some(current.revision))
                .await
            {
                Ok(stored) => return Ok((stored.object, true)),
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
            }
        }
        Err(ApiError::modified(subject(res, name)))
    }

    /// The grace period a delete waits for, if any: pods bound to a node wait for their
    /// node agent to confirm, unless the period is zero or the pod never ran.
    pub(super) fn graceful_period(
        &self,
        res: &Resource,
        obj: &Value,
        opts: &DeleteOptions,
    ) -> Option<i64> {
        if res.kind != "Pod" {
            return None;
        }
        let node = obj["spec"]["nodeName"].as_str().unwrap_or("");
        let phase = obj["status"]["phase"].as_str().unwrap_or("");
        if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        let grace = opts
            .grace_period
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        if grace <= 0 { None } else { Some(grace) }
    }
}

/// metav1.DeleteOptions from the body or the query.
#[derive(Debug, Default)]
pub(super) struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    dry_run: bool,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
}

impl DeleteOptions {
    pub(super) fn parse(query: &HashMap<String, String>, body: &[u8]) -> ApiResult<DeleteOptions> {
        let mut o = DeleteOptions::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            // client-go's typed clients (helm's among them) send DeleteOptions as protobuf.
            let v: Value = if crate::protobuf::has_prefix(body) {
                crate::protobuf::decode_body(body).map_err(protobuf_error)?
            } else {
                serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
            };
            o.grace_period = v["gracePeriodSeconds"].as_i64();
            o.propagation = v["propagationPolicy"].as_str().map(str::to_string);
            if v["orphanDependents"] == json!(true) {
                o.propagation = Some("Orphan".into());
            }
            o.dry_run = v["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "All"));
            o.precondition_uid = v["preconditions"]["uid"].as_str().map(str::to_string);
            o.precondition_rv = v["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
        }
        if let Some(g) = query.get("gracePeriodSeconds") {
            o.grace_period = Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
        }
        if let Some(p) = query.get("propagationPolicy") {
            o.propagation = Some(p.clone());
        }
        if query.get("dryRun").map(String::as_str) == Some("All") {
            o.dry_run = true;
        }
        if let Some(p) = &o.propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        Ok(o)
    }
}
