//! A pod's volumes on the node, under `<pod dir>/volumes/<plugin>/<name>` as kubelet lays them
//! out: emptyDir (a directory, or a tmpfs for medium Memory sized by sizeLimit), configMap,
//! secret, downwardAPI and projected volumes written by an atomic writer (files are symlinks
//! into a `..data` directory swapped in one rename, so a reader never sees half an update;
//! rewritten when the source changes), hostPath (bind-mounted as it is), and the
//! service-account directory at /var/run/secrets/kubernetes.io/serviceaccount.
//!
//! Secret and projected volumes (the service-account directory is one) sit on a tmpfs of their
//! own, as kubelet wraps them in a medium-Memory emptyDir: secrets never reach the node's disk,
//! and a pod start allocates no disk inodes for them.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};
use nix::mount::{MntFlags, MsFlags};

use super::env::{self, SourceKind, Sources};

pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The volume name Skiff uses for the service-account directory it adds.
pub const SERVICE_ACCOUNT_VOLUME: &str = "skiff-service-account";

/// Files of a volume: relative path → (content, mode).
type Payload = BTreeMap<String, (Vec<u8>, u32)>;

fn plugin_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(plugin).join(name)
}

/// Whether the service-account directory is mounted into this pod's containers.
pub fn wants_service_account(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token)
        .unwrap_or(true)
}

/// Sets up (or refreshes) every volume of `pod`; returns volume name → host path.
/// An error is the FailedMount message; the pod's containers wait for it.
pub async fn setup(
    pod: &Pod,
    pod_dir: &Path,
    sources: &mut Sources,
) -> Result<HashMap<String, PathBuf>, String> {
    let mut out = HashMap::new();
    let spec = pod.spec.clone().unwrap_or_default();
    for v in spec.volumes.iter().flatten() {
        let path = setup_one(pod, v, pod_dir, sources)
            .await
            .map_err(|e| format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name))?;
        out.insert(v.name.clone(), path);
    }
    if wants_service_account(pod) {
        let dir = plugin_dir(pod_dir, "kubernetes.io~projected", SERVICE_ACCOUNT_VOLUME);
        let mut payload = Payload::new();
        payload.insert(
            "namespace".into(),
            (sources.namespace().as_bytes().to_vec(), 0o644),
        );
        if let Some(cm) = sources.config_map("kube-root-ca.crt").await? {
            for (k, v) in env::config_map_entries(cm) {
                if k == "ca.crt" {
                    payload.insert(k, (v, 0o644));
                }
            }
        }
        write_in_memory(&dir, &payload)?;
        out.insert(SERVICE_ACCOUNT_VOLUME.into(), dir);
    }
    Ok(out)
}

async fn setup_one(
    pod: &Pod,
    v: &Volume,
    pod_dir: &Path,
    sources: &mut Sources,
) -> Result<PathBuf, String> {
    if let Some(e) = &v.empty_dir {
        let dir = plugin_dir(pod_dir, "kubernetes.io~empty-dir", &v.name);
        create_dir(&dir)?;
        if e.medium.as_deref() == Some("Memory") {
            let size = e
                .size_limit
                .as_ref()
                .and_then(|q| super::containers::bytes(&q.0));
            mount_tmpfs(&dir, size)?;
        }
        // World-writable as upstream makes emptyDirs, so any runAsUser can use it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        return Ok(dir);
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => {
                create_dir(&path)?;
            }
            "FileOrCreate" if !path.exists() => {
                if let Some(parent) = path.parent() {
                    create_dir(parent)?;
                }
                std::fs::File::create(&path)
                    .map_err(|e| format!("creating {}: {e}", path.display()))?;
            }
            "Directory" if !path.is_dir() => {
                return Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    h.path
                ));
            }
            "File" if !path.is_file() => {
                return Err(format!(
                    "hostPath type check failed: {} is not a file",
                    h.path
                ));
            }
            _ => {}
        }
        return Ok(path);
    }
    if let Some(cm) = &v.config_map {
        let dir = plugin_dir(pod_dir, "kubernetes.io~configmap", &v.name);
        let mode = cm.default_mode.map_or(0o644, |m| m as u32);
        let payload = source_files(
            sources,
            SourceKind::ConfigMap,
            &cm.name,
            cm.items.as_deref(),
            mode,
            cm.optional,
        )
        .await?;
        write_atomic(&dir, &payload).map_err(|e| format!("writing {}: {e}", dir.display()))?;
        return Ok(dir);
    }
    if let Some(s) = &v.secret {
        let dir = plugin_dir(pod_dir, "kubernetes.io~secret", &v.name);
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.map_or(0o644, |m| m as u32);
        let payload = source_files(
            sources,
            SourceKind::Secret,
            &name,
            s.items.as_deref(),
            mode,
            s.optional,
        )
        .await?;
        write_in_memory(&dir, &payload)?;
        return Ok(dir);
    }
    if let Some(d) = &v.downward_api {
        let dir = plugin_dir(pod_dir, "kubernetes.io~downward-api", &v.name);
        let mode = d.default_mode.map_or(0o644, |m| m as u32);
        let mut payload = Payload::new();
        for item in d.items.iter().flatten() {
            let value = downward_item(
                pod,
                item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                item.resource_field_ref.as_ref(),
            )?;
            payload.insert(
                item.path.clone(),
                (value.into_bytes(), item.mode.map_or(mode, |m| m as u32)),
            );
        }
        write_atomic(&dir, &payload).map_err(|e| format!("writing {}: {e}", dir.display()))?;
        return Ok(dir);
    }
    if let Some(p) = &v.projected {
        let dir = plugin_dir(pod_dir, "kubernetes.io~projected", &v.name);
        let mode = p.default_mode.map_or(0o644, |m| m as u32);
        let mut payload = Payload::new();
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                payload.extend(
                    source_files(
                        sources,
                        SourceKind::ConfigMap,
                        &cm.name,
                        cm.items.as_deref(),
                        mode,
                        cm.optional,
                    )
                    .await?,
                );
            }
            if let Some(s) = &source.secret {
                payload.extend(
                    source_files(
                        sources,
                        SourceKind::Secret,
                        &s.name,
                        s.items.as_deref(),
                        mode,
                        s.optional,
                    )
                    .await?,
                );
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.iter().flatten() {
                    let value = downward_item(
                        pod,
                        item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                        item.resource_field_ref.as_ref(),
                    )?;
                    payload.insert(
                        item.path.clone(),
                        (value.into_bytes(), item.mode.map_or(mode, |m| m as u32)),
                    );
                }
            }
            // serviceAccountToken sources: token issuance comes with the security work;
            // the rest of the projection is mounted.
        }
        write_in_memory(&dir, &payload)?;
        return Ok(dir);
    }
    Err("volume type is not supported by this node".into())
}

fn downward_item(
    pod: &Pod,
    field: Option<&str>,
    resource: Option<&k8s_openapi::api::core::v1::ResourceFieldSelector>,
) -> Result<String, String> {
    if let Some(path) = field {
        return env::field_value(pod, path);
    }
    if let Some(r) = resource {
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        let name = r.container_name.as_deref().unwrap_or_default();
        let c = containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("container {name:?} of resourceFieldRef not found"))?;
        return env::resource_value(
            c,
            &r.resource,
            r.divisor.as_ref().map(|d| d.0.as_str()),
            &HashMap::new(),
        );
    }
    Ok(String::new())
}

/// The files a configMap or secret source contributes (none when it is missing and optional).
async fn source_files(
    sources: &mut Sources,
    kind: SourceKind,
    name: &str,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: Option<bool>,
) -> Result<Payload, String> {
    match sources
        .entries(kind, name, optional.unwrap_or(false))
        .await?
    {
        Some(entries) => select(entries, items, mode, kind.noun(), name),
        None => Ok(Payload::new()),
    }
}

/// The files of a configMap/secret volume: all keys, or the listed items.
fn select(
    entries: Vec<(String, Vec<u8>)>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    kind: &str,
    name: &str,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    match items {
        None | Some([]) => {
            for (k, v) in entries {
                out.insert(k, (v, mode));
            }
        }
        Some(items) => {
            for item in items {
                match entries.iter().find(|(k, _)| *k == item.key) {
                    Some((_, v)) => {
                        out.insert(
                            item.path.clone(),
                            (v.clone(), item.mode.map_or(mode, |m| m as u32)),
                        );
                    }
                    None => {
                        return Err(format!(
                            "configured to use key {} of {kind} {name:?}, but it has no such key",
                            item.key
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Mounts a tmpfs at `dir` (created if need be) unless one is there already, as after an agent
/// restart.
fn mount_tmpfs(dir: &Path, size_bytes: Option<i64>) -> Result<(), String> {
    create_dir(dir)?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let size = size_bytes.map(|b| format!("size={b}"));
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        size.as_deref(),
    )
    .map_err(|e| format!("mounting tmpfs at {}: {e}", dir.display()))
}

/// The atomic writer on a tmpfs of the volume's own (secret and projected volumes).
fn write_in_memory(dir: &Path, payload: &Payload) -> Result<(), String> {
    mount_tmpfs(dir, None)?;
    write_atomic(dir, payload)
        .map(drop)
        .map_err(|e| format!("writing {}: {e}", dir.display()))
}

fn create_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// Whether something is mounted at `path`: its device differs from its parent's. Enough for the
/// tmpfs volumes mounted here, and a stat of each instead of a read of the whole mount table on
/// every sync of every pod.
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let device = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.dev());
    match (path.parent().map(device), device(path)) {
        (Some(Ok(parent)), Ok(own)) => parent != own,
        _ => false,
    }
}

/// What `..data` holds now, read back for comparison.
fn current_payload(dir: &Path) -> Option<Payload> {
    let data = dir.join("..data");
    let target = std::fs::read_link(&data).ok()?;
    let base = dir.join(target);
    let mut out = Payload::new();
    fn walk(base: &Path, rel: &Path, out: &mut Payload) -> io::Result<()> {
        for entry in std::fs::read_dir(base.join(rel))? {
            let entry = entry?;
            let rel_path = rel.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(base, &rel_path, out)?;
            } else {
                let content = std::fs::read(base.join(&rel_path))?;
                out.insert(
                    rel_path.to_string_lossy().into_owned(),
                    (content, meta.permissions().mode() & 0o7777),
                );
            }
        }
        Ok(())
    }
    walk(&base, Path::new(""), &mut out).ok()?;
    Some(out)
}

/// kubelet's AtomicWriter: writes `payload` into a fresh timestamped directory, points
/// `..data` at it with one rename, links each top-level name through `..data`, and removes
/// the previous generation. Nothing is written when the payload is unchanged.
pub fn write_atomic(dir: &Path, payload: &Payload) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    if current_payload(dir).as_ref() == Some(payload) {
        return Ok(false);
    }
    for path in payload.keys() {
        if path.starts_with('/')
            || path.split('/').any(|p| p == ".." || p.is_empty())
            || path.starts_with("..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid file path {path:?}"),
            ));
        }
    }
    let now = chrono::Utc::now();
    let generation = format!("..{}", now.format("%Y_%m_%d_%H_%M_%S.%f"));
    let gen_dir = dir.join(&generation);
    std::fs::create_dir(&gen_dir)?;
    for (path, (content, mode)) in payload {
        let file = gen_dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&generation, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    // Top-level names: links through ..data; stale ones go.
    let wanted: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !wanted.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let old_dir = dir.join(old);
        if old_dir != gen_dir {
            let _ = std::fs::remove_dir_all(old_dir);
        }
    }
    Ok(true)
}

/// Unmounts the pod's tmpfs volumes and removes its volume directories (hostPaths are the
/// host's and stay).
pub fn teardown(pod_dir: &Path) -> io::Result<()> {
    let plugins = std::fs::read_dir(pod_dir.join("volumes"))
        .into_iter()
        .flatten();
    for plugin in plugins.flatten() {
        for volume in std::fs::read_dir(plugin.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = volume.path();
            if is_mount_point(&path) {
                nix::mount::umount2(&path, MntFlags::MNT_DETACH).map_err(io::Error::from)?;
            }
        }
    }
    match std::fs::remove_dir_all(pod_dir.join("volumes")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(entries: &[(&str, &str, u32)]) -> Payload {
        entries
            .iter()
            .map(|(k, v, m)| (k.to_string(), (v.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_generations() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("vol");
        assert!(
            write_atomic(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]))
                .expect("write")
        );
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).expect("b"), "2");
        let mode = std::fs::metadata(dir.join("sub/b"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // Unchanged: nothing written.
        assert!(
            !write_atomic(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]))
                .expect("write")
        );
        // Changed: new content, the removed key's link is gone, one generation left.
        assert!(write_atomic(&dir, &payload(&[("a", "changed", 0o644)])).expect("write"));
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).expect("a"),
            "changed"
        );
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        let generations = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(generations, 1);
        assert!(write_atomic(&dir, &payload(&[("../x", "no", 0o644)])).is_err());
    }

    #[test]
    fn items_select_keys_and_report_missing_ones() {
        let entries = vec![
            ("k1".to_string(), b"v1".to_vec()),
            ("k2".to_string(), b"v2".to_vec()),
        ];
        let all = select(entries.clone(), None, 0o644, "configmap", "cm").expect("all");
        assert_eq!(all.len(), 2);
        let items: Vec<KeyToPath> = vec![KeyToPath {
            key: "k2".into(),
            path: "dir/file".into(),
            mode: Some(0o400),
            ..Default::default()
        }];
        let some = select(entries.clone(), Some(&items), 0o644, "configmap", "cm").expect("some");
        assert_eq!(some.get("dir/file"), Some(&(b"v2".to_vec(), 0o400)));
        let missing: Vec<KeyToPath> = vec![KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
            ..Default::default()
        }];
        assert!(select(entries, Some(&missing), 0o644, "configmap", "cm").is_err());
    }
}
