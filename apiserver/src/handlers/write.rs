//! Writing: create, update, patch and apply, the scale and binding subresources.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use skiff_apimachinery::{apply, patch, validation};
use skiff_storage::StorageError;

use super::*;
use crate::admission::AdmissionRequest;
use crate::allocator;
use crate::error::{ApiError, ApiResult};
use crate::objects::{Stored, set_resource_version};
use crate::registry::{Resource, Subresource};
use crate::request::Verb;
use crate::server::{ApiServer, json_response};

impl ApiServer {
    pub(crate) async fn create_object(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        body: Value,
        ctx: &WriteContext,
    ) -> ApiResult<Value> {
        let mut ctx = ctx.clone();
        self.create_with(res, ns, body, &mut ctx).await
    }

    /// Decode a body through the resource's type, checking apiVersion/kind, and applying
    /// the field validation level to unknown fields.
    pub(super) fn decode(
        &self,
        res: &Resource,
        mut body: Value,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a {} object",
                res.kind
            )));
        }
        let expected_av = res.api_version();
        match body.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => body["apiVersion"] = json!(expected_av),
            Some(av) if av != expected_av => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({expected_av})"
                )));
            }
            _ => {}
        }
        match body.get("kind").and_then(Value::as_str) {
            None | Some("") => body["kind"] = json!(res.kind),
            Some(k) if k != res.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    res.kind
                )));
            }
            _ => {}
        }
        let decoded = (res.decode)(body).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                res.kind, res.version, res.kind
            ))
        })?;
        if !decoded.unknown_fields.is_empty() {
            match ctx.field_validation {
                FieldValidation::Strict => {
                    let list: Vec<String> = decoded
                        .unknown_fields
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                FieldValidation::Warn => {
                    for f in &decoded.unknown_fields {
                        ctx.warnings.push(format!("unknown field \"{f}\""));
                    }
                }
                FieldValidation::Ignore => {}
            }
        }
        Ok(decoded.object)
    }

    pub(super) fn validate_meta(&self, res: &Resource, obj: &Value) -> Vec<validation::FieldError> {
        let strategy = res.strategy;
        validation::validate_object_meta(
            &obj["metadata"],
            res.namespaced,
            |n: &str, prefix: bool| {
                // A generateName prefix may end in '-', as upstream's maskTrailingDash allows.
                match n.strip_suffix('-') {
                    Some(stem) if prefix && !stem.is_empty() => {
                        strategy.validate_name(&format!("{stem}a"))
                    }
                    _ => strategy.validate_name(n),
                }
            },
        )
    }

    pub(super) async fn create_with(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        body: Value,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        self.create_inner(res, ns, body, ctx, false).await
    }

    /// Create; `applied` keeps the managedFields server-side apply computed.
    pub(super) async fn create_inner(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        body: Value,
        ctx: &mut WriteContext,
        applied: bool,
    ) -> ApiResult<Value> {
        self.create_encoded(res, ns, CreateBody::Parsed(body), ctx, applied)
            .await
            .map(|(obj, _)| obj)
    }

    /// Creates the object, returning it and, when the store gives it for free, its JSON.
    pub(super) async fn create_encoded(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        body: CreateBody,
        ctx: &mut WriteContext,
        applied: bool,
    ) -> ApiResult<(Value, Option<Vec<u8>>)> {
        let mut obj = match body {
            CreateBody::Parsed(body) => self.decode(res, body, ctx)?,
            CreateBody::Decoded(obj) => obj,
        };
        // The namespace comes from the URL; a different one in the body is a client error.
        {
            let meta = meta_mut(&mut obj);
            if res.namespaced {
                match meta.get("namespace").and_then(Value::as_str) {
                    Some(body_ns) if !body_ns.is_empty() && Some(body_ns) != ns => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {}
                }
                if let Some(ns) = ns {
                    meta.insert("namespace".into(), json!(ns));
                }
            } else {
                meta.remove("namespace");
            }
            let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty()
                && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
                && !prefix.is_empty()
            {
                let generated = format!("{prefix}{}", random_suffix());
                meta.insert("name".into(), json!(generated));
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            if !applied {
                meta.remove("managedFields");
            }
            if res.tracks_generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        res.strategy.default(&mut obj);
        res.strategy.prepare_for_create(&mut obj);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let mut errs = self.validate_meta(res, &obj);
        errs.extend(res.strategy.validate(&obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(res.kind, res.group, &name, &errs));
        }
        self.admission
            .admit(&AdmissionRequest {
                resource: res,
                subresource: None,
                verb: Verb::Create,
                namespace: ns,
                name: &name,
                object: Some(&obj),
                old: None,
                dry_run: ctx.dry_run,
            })
            .await?;
        if !applied {
            let now = now_rfc3339();
            obj = apply::update_managed_fields(None, obj, &ctx.field_manager, &gvk(res), &now);
        }
        let key = res.key(ns, &name);
        let _allocation_lock;
        if res.kind == "Service" {
            let mut used = self
                .allocator
                .in_use(&self.store, None)
                .await
                .map_err(ApiError::storage)?;
            allocator::allocate(&self.allocator, &mut used, &mut obj, None)
                .map_err(|e| alloc_error(res, &name, e))?;
            _allocation_lock = Some(used);
        }
        if ctx.dry_run {
            return Ok((obj, None));
        }
        let (stored, json) = self
            .store
            .create(&key, obj)
            .await
            .map_err(|e| ApiError::from_storage(e, subject(res, &name)))?;
        Ok((stored.object, json))
    }

    /// PUT of the object or its status.
    pub(super) async fn update(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        body: Value,
        sub: Option<Subresource>,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        let obj = self.decode(res, body, ctx)?;
        if let Some(body_name) = meta_str(&obj, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if res.namespaced
            && let Some(body_ns) = meta_str(&obj, "namespace")
            && !body_ns.is_empty()
            && Some(body_ns) != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let current = self.get_stored(res, ns, name).await?;
        // A PUT's uid is a precondition (upstream's `defaultUpdatedObjectInfo.Preconditions`).
        if let Some(uid) = meta_str(&obj, "uid")
            && !uid.is_empty()
            && Some(uid) != meta_str(&current.object, "uid")
        {
            return Err(ApiError::conflict(
                subject(res, name),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&current.object, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = meta_str(&obj, "resourceVersion")
            && !rv.is_empty()
            && rv != current.revision.to_string()
        {
            return Err(ApiError::modified(subject(res, name)));
        }
        self.write_update(res, ns, name, obj, current, sub, ctx)
            .await
    }

    /// The common tail of PUT, patch and apply: carry over what the endpoint may not change,
    /// default, validate, admit, and store guarded by the revision read.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_update(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        current: Stored,
        sub: Option<Subresource>,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        let old = &current.object;
        // The status and finalize endpoints change their part of the object only.
        let partial = matches!(sub, Some(Subresource::Status | Subresource::Finalize));
        if sub == Some(Subresource::Status) {
            let mut merged = old.clone();
            merged["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            if merged["status"].is_null() {
                merged.as_object_mut().map(|m| m.remove("status"));
            }
            obj = merged;
        } else if sub == Some(Subresource::Finalize) {
            let mut merged = old.clone();
            match obj["spec"].get("finalizers") {
                Some(f) => merged["spec"]["finalizers"] = f.clone(),
                None => {
                    merged["spec"]
                        .as_object_mut()
                        .map(|m| m.remove("finalizers"));
                }
            }
            obj = merged;
        } else if res.has(Subresource::Status) {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        {
            let old_meta = &old["metadata"];
            // As upstream's BeforeUpdate, a body's uid is kept only when it is empty: a uid
            // that names another object fails validation (immutable), which is what makes a
            // uid in a patch a precondition (the garbage collector's and the controllers'
            // ownerReference patches rely on it).
            let uid_given = meta_str(&obj, "uid").is_some_and(|u| !u.is_empty());
            let meta = meta_mut(&mut obj);
            if !uid_given {
                match old_meta.get("uid") {
                    Some(v) => meta.insert("uid".into(), v.clone()),
                    None => meta.remove("uid"),
                };
            }
            for keep in [
                "name",
                "namespace",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(keep) {
                    Some(v) => meta.insert(keep.to_string(), v.clone()),
                    None => meta.remove(keep),
                };
            }
            // The stored value never holds it; it is set here for validation only.
            meta.insert(
                "resourceVersion".into(),
                json!(current.revision.to_string()),
            );
            if meta.get("managedFields").is_none()
                && let Some(mf) = old_meta.get("managedFields")
            {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
        // Upstream defaults every request body, the status subresource's too.
        res.strategy.default(&mut obj);
        if !partial {
            res.strategy.prepare_for_update(&mut obj, old);
        }
        let mut errs = self.validate_meta(res, &obj);
        errs.extend(validation::validate_object_meta_update(
            &obj["metadata"],
            &old["metadata"],
        ));
        if sub == Some(Subresource::Status) {
            errs.extend(res.strategy.validate_status_update(&obj, old));
        } else {
            errs.extend(res.strategy.validate(&obj));
            if errs.is_empty() {
                errs.extend(res.strategy.validate_update(&obj, old));
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(res.kind, res.group, name, &errs));
        }
        if res.tracks_generation && obj.get("spec") != old.get("spec") {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut obj).insert("generation".into(), json!(g));
        }
        self.admission
            .admit(&AdmissionRequest {
                resource: res,
                subresource: sub.map(|s| s.name()),
                verb: Verb::Update,
                namespace: ns,
                name,
                object: Some(&obj),
                old: Some(old),
                dry_run: ctx.dry_run,
            })
            .await?;
        let key = res.key(ns, name);
        let _allocation_lock;
        if res.kind == "Service" && !partial {
            let mut used = self
                .allocator
                .in_use(&self.store, Some(&key))
                .await
                .map_err(ApiError::storage)?;
            allocator::allocate(&self.allocator, &mut used, &mut obj, Some(old))
                .map_err(|e| alloc_error(res, name, e))?;
            _allocation_lock = Some(used);
        }
        if same_but_bookkeeping(&obj, old) {
            // Nothing changed: no write, no new resourceVersion, as upstream.
            return Ok(current.object);
        }
        // Server-side apply has recorded its own ownership already.
        if !ctx.applying {
            let now = now_rfc3339();
            obj = match sub {
                Some(Subresource::Status) => apply::update_managed_fields_for_subresource(
                    Some(old),
                    obj,
                    &ctx.field_manager,
                    "status",
                    &gvk(res),
                    &now,
                ),
                _ => apply::update_managed_fields(
                    Some(old),
                    obj,
                    &ctx.field_manager,
                    &gvk(res),
                    &now,
                ),
            };
        }
        // An object being deleted goes once an update removes its last finalizer (upstream's
        // ShouldDeleteDuringUpdate): not on any update of a terminating object — a pod in its
        // grace period keeps getting status updates from its node until the node deletes it.
        let grace_over = old["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .is_none_or(|g| g == 0);
        if old["metadata"].get("deletionTimestamp").is_some()
            && grace_over
            && !finalizers_empty(old)
            && finalizers_empty(&obj)
        {
            if ctx.dry_run {
                return Ok(obj);
            }
            let deleted = self
                .store
                .delete(&key, Some(current.revision))
                .await
                .map_err(|e| ApiError::from_storage(e, subject(res, name)))?;
            let mut out = obj;
            set_resource_version(&mut out, deleted.revision);
            return Ok(out);
        }
        if ctx.dry_run {
            set_resource_version(&mut obj, current.revision);
            return Ok(obj);
        }
        let stored = self
            .store
            .update(&key, obj, current.revision)
            .await
            .map_err(|e| ApiError::from_storage(e, subject(res, name)))?;
        Ok(stored.object)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn patch(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        content_type: &str,
        body: &[u8],
        force: bool,
        ctx: &mut WriteContext,
    ) -> ApiResult<(Value, bool)> {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let patch_doc: Value = match ct.as_str() {
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                parse_body("application/apply-patch+yaml", body)?
            }
            "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => parse_body("application/json", body)?,
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                    ),
                ));
            }
        };
        let is_apply = ct == "application/apply-patch+yaml";
        ctx.applying = is_apply;
        for _attempt in 0..8 {
            let current = match self.store.get(&res.key(ns, name)).await {
                Ok(Some(c)) => c,
                Ok(None) if is_apply && sub.is_none() => {
                    // Apply to a missing object creates it, owned by this manager.
                    let mut obj = apply::apply(
                        None,
                        &patch_doc,
                        &ctx.field_manager,
                        force,
                        &gvk(res),
                        &now_rfc3339(),
                    )
                    .map_err(|e| apply_error(res, name, e))?;
                    if meta_str(&obj, "name").is_none_or(str::is_empty) {
                        meta_mut(&mut obj).insert("name".into(), json!(name));
                    }
                    if meta_str(&obj, "name") != Some(name) {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({}) does not match the name on the URL ({name})",
                            meta_str(&obj, "name").unwrap_or_default()
                        )));
                    }
                    match self.create_inner(res, ns, obj, ctx, true).await {
                        Err(e) if e.reason == "AlreadyExists" => continue,
                        other => return other.map(|v| (v, true)),
                    }
                }
                Ok(None) => return Err(ApiError::not_found(subject(res, name))),
                Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
            };
            if sub == Some(Subresource::Scale) {
                // A resourceVersion in the patch is a precondition; without one a conflict
                // with a concurrent writer is retried on the newer object.
                let precondition = patch_doc["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
                if let Some(rv) = &precondition
                    && *rv != current.revision.to_string()
                {
                    return Err(ApiError::modified(subject(res, name)));
                }
                let scale = to_scale(res, &current.object);
                let patched = apply_patch_doc(&ct, &scale, &patch_doc, None)?;
                let result = self
                    .write_scale(res, ns, name, current, &patched, ctx)
                    .await;
                match result {
                    Err(e) if e.reason == "Conflict" && precondition.is_none() => continue,
                    other => return other.map(|v| (v, false)),
                }
            }
            let live = current.object.clone();
            let patched = if is_apply {
                apply::apply(
                    Some(&live),
                    &patch_doc,
                    &ctx.field_manager,
                    force,
                    &gvk(res),
                    &now_rfc3339(),
                )
                .map_err(|e| apply_error(res, name, e))?
            } else {
                apply_patch_doc(&ct, &live, &patch_doc, Some(res))?
            };
            let precondition = patch_doc["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            if let Some(rv) = &precondition
                && *rv != current.revision.to_string()
            {
                return Err(ApiError::modified(subject(res, name)));
            }
            let mut patched = patched;
            if let Some(m) = patched.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert(
                    "resourceVersion".into(),
                    json!(current.revision.to_string()),
                );
            }
            let decoded = self.decode(res, patched, ctx)?;
            match self
                .write_update(res, ns, name, decoded, current, sub, ctx)
                .await
            {
                Err(e) if e.reason == "Conflict" && precondition.is_none() => continue,
                other => return other.map(|v| (v, false)),
            }
        }
        Err(ApiError::modified(subject(res, name)))
    }

    pub(super) async fn update_scale(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        body: Value,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        let current = self.get_stored(res, ns, name).await?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && rv != current.revision.to_string()
        {
            return Err(ApiError::modified(subject(res, name)));
        }
        self.write_scale(res, ns, name, current, &body, ctx).await
    }

    pub(super) async fn write_scale(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        current: Stored,
        scale: &Value,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        let replicas = match &scale["spec"]["replicas"] {
            Value::Null => 0,
            v => v
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("Scale.spec.replicas must be an integer"))?,
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                "autoscaling",
                name,
                &[validation::FieldError::invalid(
                    "spec.replicas",
                    replicas.to_string(),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut obj = current.object.clone();
        obj["spec"]["replicas"] = json!(replicas);
        let updated = self
            .write_update(res, ns, name, obj, current, None, ctx)
            .await?;
        Ok(to_scale(res, &updated))
    }

    /// pods/binding: set spec.nodeName once, copy the binding's annotations, and mark the pod
    /// PodScheduled=True (upstream's `setPodNodeAndMetadata`).
    pub(super) async fn bind(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        body: Value,
    ) -> ApiResult<Response> {
        let target = body["target"]["name"].as_str().unwrap_or("").to_string();
        if target.is_empty() {
            return Err(ApiError::invalid(
                "Binding",
                "",
                name,
                &[validation::FieldError::required("target.name", "")],
            ));
        }
        let key = res.key(ns, name);
        // The common binding (no annotations) edits the stored bytes: decoding and encoding
        // the whole pod was most of its cost.
        if body["metadata"]["annotations"].as_object().is_none() {
            'raw: {
                for _ in 0..8 {
                    let current = self
                        .store
                        .raw()
                        .get(&key)
                        .await
                        .map_err(|e| ApiError::from_storage(e, subject(res, name)))?
                        .ok_or_else(|| ApiError::not_found(subject(res, name)))?;
                    let Some(edit) = crate::objects::bind_stored(&current.value) else {
                        // Not the shape this server stores: the general path below decides.
                        break 'raw;
                    };
                    let value = match edit {
                        crate::objects::BindEdit::Deleting => {
                            return Err(ApiError::conflict(
                                subject(res, name),
                                "pod is being deleted, cannot be assigned to a host",
                            ));
                        }
                        crate::objects::BindEdit::Assigned(assigned) => {
                            return Err(ApiError::conflict(
                                subject(res, name),
                                &format!("pod {name} is already assigned to node \"{assigned}\""),
                            ));
                        }
                        crate::objects::BindEdit::Bind(edit) => {
                            edit.finish(&target, mark_scheduled)
                        }
                    };
                    match self
                        .store
                        .raw()
                        .update(&key, value, current.mod_revision)
                        .await
                    {
                        Ok(_) => return Ok(bound()),
                        Err(StorageError::Conflict { .. }) => continue,
                        Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
                    }
                }
                return Err(ApiError::modified(subject(res, name)));
            }
        }
        for _ in 0..8 {
            let current = self.get_stored(res, ns, name).await?;
            if current.object["metadata"]
                .get("deletionTimestamp")
                .is_some()
            {
                return Err(ApiError::conflict(
                    subject(res, name),
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let assigned = current.object["spec"]["nodeName"].as_str().unwrap_or("");
            if !assigned.is_empty() {
                return Err(ApiError::conflict(
                    subject(res, name),
                    &format!("pod {name} is already assigned to node \"{assigned}\""),
                ));
            }
            let revision = current.revision;
            let mut obj = current.object;
            obj["spec"]["nodeName"] = json!(target);
            if let Some(annotations) = body["metadata"]["annotations"].as_object() {
                let meta = &mut obj["metadata"];
                if !meta["annotations"].is_object() {
                    meta["annotations"] = json!({});
                }
                for (k, v) in annotations {
                    meta["annotations"][k] = v.clone();
                }
            }
            if !obj["status"].is_object() {
                obj["status"] = json!({});
            }
            mark_scheduled(&mut obj["status"]);
            match self.store.update(&key, obj, revision).await {
                Ok(_) => return Ok(bound()),
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
            }
        }
        Err(ApiError::modified(subject(res, name)))
    }
}

/// The answer to a binding.
fn bound() -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    json_response(StatusCode::CREATED, &status)
}

/// Sets the PodScheduled condition of a pod's `status` (an object) to True, replacing an
/// earlier False (Unschedulable) one; the transition time moves only when the status changes,
/// as upstream's `UpdatePodCondition`.
fn mark_scheduled(status: &mut Value) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    let scheduled = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": super::now_rfc3339(),
    });
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(existing) if existing["status"] == "True" => {}
        Some(existing) => *existing = scheduled,
        None => conditions.push(scheduled),
    }
}

pub(super) fn finalizers_empty(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|a| a.is_empty())
        && (obj["kind"] != "Namespace"
            || obj["spec"]["finalizers"]
                .as_array()
                .is_none_or(|a| a.is_empty()))
}

/// Whether `new` differs from `old` in nothing but `metadata.resourceVersion` and the times
/// of managedFields entries: such an update is not written (compared in place: copying both
/// objects to blank those fields out was a good part of a Lease renewal's cost).
pub(super) fn same_but_bookkeeping(new: &Value, old: &Value) -> bool {
    match (new, old) {
        (Value::Object(new), Value::Object(old)) => {
            same_map_except(new, old, &[], |key, n, o| match key {
                "metadata" => match (n, o) {
                    (Value::Object(n), Value::Object(o)) => {
                        same_map_except(n, o, &["resourceVersion"], |key, n, o| match key {
                            "managedFields" => same_managed_fields_but_times(n, o),
                            _ => n == o,
                        })
                    }
                    _ => n == o,
                },
                _ => n == o,
            })
        }
        _ => new == old,
    }
}

fn same_managed_fields_but_times(new: &Value, old: &Value) -> bool {
    match (new, old) {
        (Value::Array(new), Value::Array(old)) => {
            new.len() == old.len()
                && new.iter().zip(old).all(|pair| match pair {
                    (Value::Object(n), Value::Object(o)) => {
                        same_map_except(n, o, &["time"], |_, n, o| n == o)
                    }
                    (n, o) => n == o,
                })
        }
        _ => new == old,
    }
}

/// Map equality ignoring the keys in `skip`, comparing the values with `same`.
fn same_map_except(
    new: &Map<String, Value>,
    old: &Map<String, Value>,
    skip: &[&str],
    same: impl Fn(&str, &Value, &Value) -> bool,
) -> bool {
    let counted = |m: &Map<String, Value>| m.keys().filter(|k| !skip.contains(&k.as_str())).count();
    counted(new) == counted(old)
        && new
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, n)| old.get(k).is_some_and(|o| same(k, n, o)))
}

pub(super) fn gvk(res: &Resource) -> patch::Gvk<'static> {
    patch::Gvk::new(res.group, res.version, res.kind)
}

pub(super) fn apply_patch_doc(
    ct: &str,
    doc: &Value,
    patch_doc: &Value,
    res: Option<&Resource>,
) -> ApiResult<Value> {
    let result = match ct {
        "application/json-patch+json" => patch::json_patch(doc, patch_doc),
        "application/merge-patch+json" => patch::merge_patch(doc, patch_doc),
        _ => match res {
            Some(r) => patch::strategic_merge_patch(doc, patch_doc, &gvk(r)),
            None => patch::merge_patch(doc, patch_doc),
        },
    };
    result.map_err(|e| ApiError::new(422, "Invalid", e.to_string()))
}

pub(super) fn apply_error(res: &Resource, name: &str, e: apply::ApplyError) -> ApiError {
    match &e {
        apply::ApplyError::Conflicts(conflicts) => {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| {
                    json!({"reason": "FieldManagerConflict",
                           "message": format!("conflict with {}", c.manager_description()),
                           "field": c.field_path})
                })
                .collect();
            let mut err = ApiError::new(409, "Conflict", e.to_string());
            err.details = Some(
                json!({"name": name, "group": res.group, "kind": res.plural, "causes": causes}),
            );
            err
        }
        _ => ApiError::new(422, "Invalid", e.to_string()),
    }
}

pub(super) fn alloc_error(res: &Resource, name: &str, e: allocator::AllocationError) -> ApiError {
    ApiError::invalid(
        res.kind,
        res.group,
        name,
        &[validation::FieldError::invalid(
            &e.field, &e.value, &e.detail,
        )],
    )
}

/// autoscaling/v1 Scale for a resource with replicas.
pub(super) fn to_scale(res: &Resource, obj: &Value) -> Value {
    let selector = selector_string(&obj["spec"]["selector"]);
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(if res.kind == "Deployment" { 1 } else { 0 })},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// A metav1.LabelSelector as the string form Scale.status.selector carries (upstream's
/// canonical selector string).
fn selector_string(sel: &Value) -> String {
    skiff_apimachinery::labels::Selector::from_label_selector_value(sel)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five characters from upstream's generateName alphabet (no vowels, no look-alikes).
pub(super) fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_resource_version_and_managed_times_are_bookkeeping() {
        let old = json!({
            "kind": "Lease",
            "metadata": {"name": "n1", "resourceVersion": "7", "managedFields": [
                {"manager": "kubelet", "operation": "Update", "time": "2026-01-01T00:00:00Z"}
            ]},
            "spec": {"holderIdentity": "n1", "renewTime": "2026-01-01T00:00:00.000000Z"}
        });
        let mut same = old.clone();
        same["metadata"]["resourceVersion"] = json!("8");
        same["metadata"]["managedFields"][0]["time"] = json!("2026-01-01T00:00:10Z");
        assert!(same_but_bookkeeping(&same, &old));
        let mut without_rv = old.clone();
        without_rv["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        assert!(same_but_bookkeeping(&without_rv, &old));

        let mut renewed = old.clone();
        renewed["spec"]["renewTime"] = json!("2026-01-01T00:00:10.000000Z");
        assert!(!same_but_bookkeeping(&renewed, &old));
        let mut other_manager = old.clone();
        other_manager["metadata"]["managedFields"][0]["manager"] = json!("me");
        assert!(!same_but_bookkeeping(&other_manager, &old));
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        assert!(!same_but_bookkeeping(&labelled, &old));
        let mut no_spec = old.clone();
        no_spec.as_object_mut().unwrap().remove("spec");
        assert!(!same_but_bookkeeping(&no_spec, &old));
    }
}
