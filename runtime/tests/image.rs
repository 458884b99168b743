//! Image store tests against a real local registry (docker-registry + skopeo) and the busybox
//! fixture image. They need root (mounts, mknod, chown); without the tools they are skipped,
//! except under CI=true.

mod support;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use skiff_runtime::image::{
    Image, ImageError, ImageStore, Platform, PullOptions, PullProgress, PullStatus, is_mount_point,
    remove_rootfs,
};
use support::{Format, Registry};

const TOOLS: &[&str] = &["docker-registry", "skopeo", "umoci", "busybox"];

fn options(reg: &Registry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![reg.host()],
        ..Default::default()
    }
}

/// Records progress events.
#[derive(Default)]
struct Events(Mutex<Vec<PullProgress>>);

impl Events {
    fn push(&self, p: PullProgress) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }
    fn take(&self) -> Vec<PullProgress> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn pull(
    store: &ImageStore,
    reference: &str,
    opts: &PullOptions,
    events: &Events,
) -> Result<Image, ImageError> {
    store.pull(reference, opts, &|p| events.push(p)).await
}

fn blob_mtimes(store: &ImageStore) -> Vec<(String, i64, i64)> {
    let mut out: Vec<_> = fs::read_dir(store.root().join("blobs/sha256"))
        .expect("read blobs")
        .map(|e| {
            let e = e.expect("entry");
            let m = e.metadata().expect("meta");
            (
                e.file_name().to_string_lossy().into_owned(),
                m.mtime(),
                m.mtime_nsec(),
            )
        })
        .collect();
    out.sort();
    out
}

fn tmp_is_empty(store: &ImageStore) -> bool {
    fs::read_dir(store.root().join("tmp"))
        .expect("read tmp")
        .next()
        .is_none()
}

/// The busybox layer: /bin/busybox executable, applet symlinks, no self-link.
fn check_busybox_layer(store: &ImageStore, image: &Image) {
    assert_eq!(image.layers.len(), 1, "{image:?}");
    let layer = store.layer_path(&image.layers[0]).expect("layer path");
    let bb = fs::symlink_metadata(layer.join("bin/busybox")).expect("bin/busybox");
    assert!(bb.is_file());
    assert_eq!(bb.permissions().mode() & 0o7777, 0o755);
    assert_eq!((bb.uid(), bb.gid()), (0, 0));
    for applet in ["sh", "ls", "cat", "echo"] {
        let target = fs::read_link(layer.join("bin").join(applet)).expect("applet symlink");
        assert_eq!(target, PathBuf::from("busybox"), "{applet}");
    }
    let tmp = fs::metadata(layer.join("tmp")).expect("tmp");
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_oci_by_tag_and_digest_second_pull_fetches_nothing() {
    if !support::require(TOOLS) {
        return;
    }
    let layout = support::busybox_layout();
    let reg = Registry::start();
    let digest = reg.push(
        &layout,
        "busybox",
        "library/busybox:1.0",
        Format::Oci,
        false,
    );
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let opts = options(&reg);
    let events = Events::default();

    let reference = format!("{}/library/busybox:1.0", reg.host());
    let image = pull(&store, &reference, &opts, &events)
        .await
        .expect("pull by tag");
    assert_eq!(image.reference, reference);
    assert_eq!(image.digest, digest);
    assert!(image.id.starts_with("sha256:"));
    assert_eq!(image.config.cmd, vec!["/bin/sh".to_string()]);
    assert!(image.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert!(image.size > 500_000, "{}", image.size);
    check_busybox_layer(&store, &image);
    let first = events.take();
    let downloaded: HashSet<&str> = first
        .iter()
        .filter(|e| e.status == PullStatus::Downloaded)
        .map(|e| e.digest.as_str())
        .collect();
    assert_eq!(
        downloaded.len(),
        2,
        "config and layer downloaded: {first:?}"
    );
    assert!(
        first
            .iter()
            .any(|e| e.status == PullStatus::Downloading && e.bytes_done > 0 && e.total > 0)
    );
    assert!(tmp_is_empty(&store));

    // Again: nothing is fetched, nothing rewritten.
    let before = blob_mtimes(&store);
    let again = pull(&store, &reference, &opts, &events)
        .await
        .expect("second pull");
    assert_eq!(again, image);
    let second = events.take();
    assert!(
        second
            .iter()
            .all(|e| matches!(e.status, PullStatus::AlreadyPresent | PullStatus::Extracted)),
        "second pull fetched: {second:?}"
    );
    assert_eq!(
        second
            .iter()
            .filter(|e| e.status == PullStatus::AlreadyPresent)
            .count(),
        2
    );
    assert_eq!(blob_mtimes(&store), before);

    // By digest.
    let by_digest = format!("{}/library/busybox@{digest}", reg.host());
    let pinned = pull(&store, &by_digest, &opts, &events)
        .await
        .expect("pull by digest");
    assert_eq!(pinned.reference, by_digest);
    assert_eq!(pinned.digest, digest);
    assert_eq!(pinned.id, image.id);
    assert_eq!(store.get(&by_digest).expect("get by digest").digest, digest);
    assert_eq!(store.list().expect("list").len(), 2);
    // A wrong digest for an existing repository is "not found".
    let missing = format!("{}/library/busybox@sha256:{}", reg.host(), "0".repeat(64));
    let err = pull(&store, &missing, &opts, &events)
        .await
        .expect_err("missing digest");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_docker_v2s2_and_concurrent_pulls() {
    if !support::require(TOOLS) {
        return;
    }
    let layout = support::busybox_layout();
    let reg = Registry::start();
    let digest = reg.push(&layout, "busybox", "bb:v2", Format::V2s2, false);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let opts = options(&reg);
    let reference = format!("{}/bb:v2", reg.host());

    // Two pulls of the same image at once into an empty store.
    let (e1, e2) = (Events::default(), Events::default());
    let (a, b) = tokio::join!(
        pull(&store, &reference, &opts, &e1),
        pull(&store, &reference, &opts, &e2)
    );
    let (a, b) = (a.expect("pull a"), b.expect("pull b"));
    assert_eq!(a, b);
    assert_eq!(a.digest, digest);
    let manifest = fs::read(store.blob_path(&digest).expect("path")).expect("manifest blob");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    check_busybox_layer(&store, &a);
    assert_eq!(store.list().expect("list").len(), 1);
    assert!(tmp_is_empty(&store));
    // Every blob in the store hashes to its name.
    for entry in fs::read_dir(store.root().join("blobs/sha256")).expect("blobs") {
        let entry = entry.expect("entry");
        let out = std::process::Command::new("sha256sum")
            .arg(entry.path())
            .output()
            .expect("sha256sum");
        let sum = String::from_utf8_lossy(&out.stdout);
        assert!(
            sum.starts_with(&*entry.file_name().to_string_lossy()),
            "{sum}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_leaves_the_store_intact() {
    if !support::require(TOOLS) {
        return;
    }
    let layout = support::busybox_layout();
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let events = Events::default();
    // Something already in the store, which must survive every failure below.
    let imported = store.import(&layout).expect("import");
    let listed = store.list().expect("list");
    let index_before = fs::read(store.root().join("images.json")).expect("index");

    // Malformed reference.
    let err = pull(&store, "Not/A:Valid:Ref", &PullOptions::default(), &events)
        .await
        .expect_err("malformed");
    assert!(
        err.to_string()
            .starts_with("invalid reference \"Not/A:Valid:Ref\""),
        "{err}"
    );

    // Registry down: connection refused.
    let port = support::free_port();
    let down = PullOptions {
        insecure_registries: vec![format!("127.0.0.1:{port}")],
        ..Default::default()
    };
    let err = pull(
        &store,
        &format!("127.0.0.1:{port}/busybox:latest"),
        &down,
        &events,
    )
    .await
    .expect_err("registry down");
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("registry 127.0.0.1:{port} unreachable: ")),
        "{err}"
    );

    let reg = Registry::start();
    let opts = options(&reg);
    let digest = reg.push(&layout, "busybox", "busybox:latest", Format::Oci, false);

    // Missing image (404).
    let err = pull(
        &store,
        &format!("{}/nothere:latest", reg.host()),
        &opts,
        &events,
    )
    .await
    .expect_err("missing");
    assert!(matches!(err, ImageError::NotFound(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("image \"{}/nothere:latest\" not found", reg.host())
    );
    let err = pull(
        &store,
        &format!("{}/busybox:nosuchtag", reg.host()),
        &opts,
        &events,
    )
    .await
    .expect_err("missing tag");
    assert!(matches!(err, ImageError::NotFound(_)), "{err:?}");

    // A corrupt layer blob in the registry: same size, one byte flipped.
    let manifest_path = reg.blob_file(&digest);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).expect("manifest")).expect("json");
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_string();
    let blob_file = reg.blob_file(&layer_digest);
    let original = fs::read(&blob_file).expect("registry blob");
    let mut corrupt = original.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    fs::write(&blob_file, &corrupt).expect("tamper");
    // A fresh store, so the layer is really fetched.
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh = ImageStore::open(fresh_dir.path()).expect("open");
    let reference = format!("{}/busybox:latest", reg.host());
    let err = pull(&fresh, &reference, &opts, &events)
        .await
        .expect_err("corrupt blob");
    match &err {
        ImageError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, &layer_digest);
            assert_ne!(actual, &layer_digest);
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("blob {layer_digest} digest mismatch: got sha256:")),
        "{err}"
    );
    assert!(
        !fresh.blob_path(&layer_digest).expect("path").exists(),
        "corrupt blob stored"
    );
    assert!(tmp_is_empty(&fresh), "temp file left behind");
    assert!(fresh.list().expect("list").is_empty());
    assert_eq!(
        fs::read_dir(fresh.root().join("layers"))
            .expect("layers")
            .count(),
        0
    );

    // The original store is untouched by all of that.
    assert_eq!(store.list().expect("list"), listed);
    assert_eq!(
        fs::read(store.root().join("images.json")).expect("index"),
        index_before
    );
    assert!(tmp_is_empty(&store));

    // Repaired: a later good pull works in both stores.
    fs::write(&blob_file, &original).expect("restore");
    let good = pull(&fresh, &reference, &opts, &events)
        .await
        .expect("good pull");
    check_busybox_layer(&fresh, &good);
    let good = pull(&store, &reference, &opts, &events)
        .await
        .expect("good pull");
    assert_eq!(good.id, imported[0].id);
    assert_eq!(store.list().expect("list").len(), listed.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_resolves_to_this_platform() {
    if !support::require(TOOLS) {
        return;
    }
    let current = Platform::current();
    let other_arch = if current.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let layout = support::busybox_layout();
    let work = tempfile::tempdir().expect("tempdir");
    let multi = work.path().join("multi");
    copy_tree(&layout, &multi);
    let blobs = multi.join("blobs/sha256");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(multi.join("index.json")).expect("index")).expect("json");
    // "amd64" below is the running platform's manifest (the fixture is built for it).
    let amd64 = index["manifests"][0].clone();
    let amd64_digest = amd64["digest"].as_str().expect("digest").to_string();
    // An "arm64" manifest: the same content with an annotation, so a different digest.
    let mut other: serde_json::Value =
        serde_json::from_slice(&fs::read(blobs.join(&amd64_digest[7..])).expect("manifest"))
            .expect("json");
    other["annotations"] = serde_json::json!({"skiff.test/arch": other_arch});
    let arm64 = write_blob(&blobs, &serde_json::to_vec(&other).expect("json"));
    let image_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm64.0, "size": arm64.1,
             "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64_digest, "size": amd64["size"],
             "platform": {"os": "linux", "architecture": current.architecture}},
        ]
    });
    let (index_digest, index_size) =
        write_blob(&blobs, &serde_json::to_vec(&image_index).expect("json"));
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
                       "size": index_size, "annotations": {"org.opencontainers.image.ref.name": "localhost/multi:1"}}]
    });
    fs::write(
        multi.join("index.json"),
        serde_json::to_vec(&top).expect("json"),
    )
    .expect("index.json");

    // Import resolves the nested index too.
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let imported = store.import(&multi).expect("import multi");
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].reference, "localhost/multi:1");
    assert_eq!(imported[0].digest, amd64_digest);

    let reg = Registry::start();
    let pushed = reg.push(
        &multi,
        "localhost/multi:1",
        "multi:latest",
        Format::Oci,
        true,
    );
    assert_eq!(pushed, index_digest, "skopeo --all keeps the index");
    let events = Events::default();
    let image = pull(
        &store,
        &format!("{}/multi:latest", reg.host()),
        &options(&reg),
        &events,
    )
    .await
    .expect("pull index");
    assert_eq!(image.digest, amd64_digest);
    check_busybox_layer(&store, &image);
    // The index itself is kept too (prune must not drop it while the image exists).
    assert!(store.blob_path(&index_digest).expect("path").exists());
    store.prune(&HashSet::new()).expect("prune");
    assert!(store.blob_path(&index_digest).expect("path").exists());
}

fn write_blob(dir: &Path, bytes: &[u8]) -> (String, usize) {
    use sha2::Digest;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    fs::write(dir.join(&hex), bytes).expect("write blob");
    (format!("sha256:{hex}"), bytes.len())
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

/// A `docker save` style archive: manifest.json + config + two layer tars, the second one
/// whiting out a file of the first.
fn docker_save_archive(dir: &Path) -> PathBuf {
    use sha2::Digest;
    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
            }
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }
    let l1 = layer(&[
        ("data/", b""),
        ("data/keep.txt", b"keep\n"),
        ("data/gone.txt", b"gone\n"),
    ]);
    let l2 = layer(&[
        ("data/", b""),
        ("data/.wh.gone.txt", b""),
        ("data/new.txt", b"new\n"),
    ]);
    let diff = |l: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(l)));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=1"], "WorkingDir": "/data", "User": "1000"},
        "rootfs": {"type": "layers", "diff_ids": [diff(&l1), diff(&l2)]}
    });
    let config = serde_json::to_vec(&config).expect("json");
    let config_hex = hex::encode(sha2::Sha256::digest(&config));
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["example.com/app:v1", "localhost/app:latest"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"],
    }]);
    let out = dir.join("docker-save.tar");
    let mut b = tar::Builder::new(fs::File::create(&out).expect("create"));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).expect("append");
    };
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    add(&format!("{config_hex}.json"), &config);
    add("l1/layer.tar", &l1);
    add("l2/layer.tar", &l2);
    b.finish().expect("finish");
    out
}

#[test]
fn import_layout_dir_tar_and_docker_save_then_rmi_and_prune() {
    if !support::require(&["umoci", "busybox"]) {
        return;
    }
    let layout = support::busybox_layout();
    let work = tempfile::tempdir().expect("tempdir");
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");

    // OCI layout directory.
    let images = store.import(&layout).expect("import dir");
    assert_eq!(images.len(), 1);
    let busybox = &images[0];
    assert_eq!(busybox.reference, "docker.io/library/busybox:latest");
    check_busybox_layer(&store, busybox);

    // A tar of the layout (re-tagged so it is a second record).
    let retagged = work.path().join("retagged");
    copy_tree(&layout, &retagged);
    let index_path = retagged.join("index.json");
    let index = fs::read_to_string(&index_path).expect("index");
    fs::write(
        &index_path,
        index.replace("\"busybox\"", "\"localhost/bb:tar\""),
    )
    .expect("write");
    let tar_path = work.path().join("layout.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&tar_path).expect("create"));
        b.append_dir_all(".", &retagged).expect("append");
        b.finish().expect("finish");
    }
    let from_tar = store.import(&tar_path).expect("import tar");
    assert_eq!(from_tar.len(), 1);
    assert_eq!(from_tar[0].reference, "localhost/bb:tar");
    assert_eq!(from_tar[0].id, busybox.id);

    // docker save archive.
    let archive = docker_save_archive(work.path());
    let saved = store.import(&archive).expect("import docker save");
    let refs: Vec<&str> = saved.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(refs, ["example.com/app:v1", "localhost/app:latest"]);
    let app = &saved[0];
    assert_eq!(app.config.entrypoint, ["/bin/app"]);
    assert_eq!(app.config.working_dir, "/data");
    assert_eq!(app.config.user, "1000");
    assert_eq!(
        app.config.command_line(&[], &["x".into()]),
        ["/bin/app", "x"]
    );
    let top = store.layer_path(&app.layers[1]).expect("layer");
    let wh = fs::symlink_metadata(top.join("data/gone.txt")).expect("whiteout");
    assert_eq!(wh.rdev(), 0);
    assert!(tmp_is_empty(&store), "import temp dir left behind");

    // Lookups.
    assert_eq!(store.get("busybox").expect("get name").id, busybox.id);
    assert_eq!(store.get("localhost/app").expect("get app").id, app.id);
    assert_eq!(store.get(&app.id).expect("get id").id, app.id);
    assert_eq!(store.get(&app.id[7..19]).expect("get prefix").id, app.id);
    assert_eq!(store.get(&app.digest).expect("get digest").id, app.id);
    assert!(matches!(store.get("nothere"), Err(ImageError::NotFound(_))));
    assert_eq!(store.list().expect("list").len(), 4);

    // Untag one name of busybox: its blobs stay (the other name still uses them).
    store.remove("localhost/bb:tar").expect("rmi");
    assert!(matches!(
        store.remove("localhost/bb:tar"),
        Err(ImageError::NotFound(_))
    ));
    let report = store.prune(&HashSet::new()).expect("prune");
    assert!(
        report.blobs.is_empty() && report.layers.is_empty(),
        "{report:?}"
    );
    assert_eq!(store.list().expect("list").len(), 3);

    // Removing app by id drops both of its names; with its top layer kept for a container,
    // prune removes the other layer and the blobs.
    store.remove(&app.id).expect("rmi by id");
    assert_eq!(store.list().expect("list").len(), 1);
    let keep: HashSet<String> = [app.layers[1].clone()].into_iter().collect();
    let report = store.prune(&keep).expect("prune");
    assert_eq!(report.layers, vec![app.layers[0].clone()]);
    assert!(
        report.blobs.contains(&app.id) && report.blobs.contains(&app.digest),
        "{report:?}"
    );
    assert!(report.bytes_freed > 0);
    assert!(store.layer_path(&app.layers[1]).expect("path").exists());
    assert!(!store.layer_path(&app.layers[0]).expect("path").exists());
    // busybox is intact and still usable.
    check_busybox_layer(&store, busybox);
    assert!(store.blob_path(&busybox.digest).expect("path").exists());
    let report = store.prune(&HashSet::new()).expect("prune");
    assert_eq!(report.layers, vec![app.layers[1].clone()]);
    assert_eq!(store.list().expect("list"), vec![busybox.clone()]);

    // Bad archives. A layout with a corrupt layer blob: refused, nothing stored.
    let corrupt = work.path().join("corrupt");
    copy_tree(&layout, &corrupt);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(corrupt.join("index.json")).expect("index"))
            .expect("json");
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(corrupt.join("blobs/sha256").join(&manifest_digest[7..])).expect("manifest"),
    )
    .expect("json");
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let layer_file = corrupt.join("blobs/sha256").join(&layer_digest[7..]);
    let mut bytes = fs::read(&layer_file).expect("layer");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&layer_file, &bytes).expect("tamper");
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh = ImageStore::open(fresh_dir.path()).expect("open");
    let err = fresh.import(&corrupt).expect_err("corrupt layout");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
    assert!(fresh.list().expect("list").is_empty());
    assert!(!fresh.blob_path(&layer_digest).expect("path").exists());
    assert!(tmp_is_empty(&fresh));

    let not_image = work.path().join("empty");
    fs::create_dir(&not_image).expect("mkdir");
    let err = store.import(&not_image).expect_err("not an image");
    assert!(
        err.to_string().contains("neither an OCI image layout"),
        "{err}"
    );
}

/// Unmounts and removes a container dir even when an assertion fails first.
struct RootfsGuard(PathBuf);

impl Drop for RootfsGuard {
    fn drop(&mut self) {
        if let Err(e) = remove_rootfs(&self.0) {
            eprintln!("cleanup of {}: {e}", self.0.display());
        }
    }
}

#[test]
fn rootfs_overlay_and_copy() {
    if !support::require(&["umoci", "busybox"]) {
        return;
    }
    let layout = support::busybox_layout();
    let work = tempfile::tempdir().expect("tempdir");
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let busybox = store.import(&layout).expect("import").remove(0);
    let app = store
        .import(&docker_save_archive(work.path()))
        .expect("import app")
        .remove(0);

    // Overlay of one layer.
    let c1 = work.path().join("c1");
    let _c1_guard = RootfsGuard(c1.clone());
    let rootfs = store.create_rootfs(&busybox, &c1).expect("create_rootfs");
    assert_eq!(rootfs, c1.join("rootfs"));
    assert!(
        is_mount_point(&rootfs).expect("mountinfo"),
        "overlay not mounted"
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(rootfs.to_str().expect("utf8")))
        .expect("mountinfo line");
    assert!(line.contains(" - overlay "), "{line}");
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).expect("sh"),
        PathBuf::from("busybox")
    );
    fs::write(rootfs.join("tmp/written"), b"hi").expect("write into rootfs");
    assert!(c1.join("upper/tmp/written").exists(), "writes go to upper");
    let layer = store.layer_path(&busybox.layers[0]).expect("layer");
    assert!(!layer.join("tmp/written").exists(), "layer untouched");

    // Overlay of two layers with a whiteout: lowerdir order puts the top layer first.
    let c2 = work.path().join("c2");
    let _c2_guard = RootfsGuard(c2.clone());
    let rootfs2 = store.create_rootfs(&app, &c2).expect("create_rootfs app");
    assert!(is_mount_point(&rootfs2).expect("mountinfo"));
    assert_eq!(
        fs::read(rootfs2.join("data/keep.txt")).expect("keep"),
        b"keep\n"
    );
    assert_eq!(
        fs::read(rootfs2.join("data/new.txt")).expect("new"),
        b"new\n"
    );
    assert!(!rootfs2.join("data/gone.txt").exists(), "whited out");

    // Busy rootfs: lazy unmount.
    let busy = fs::File::open(rootfs2.join("data/keep.txt")).expect("open");
    remove_rootfs(&c1).expect("remove_rootfs");
    remove_rootfs(&c2).expect("remove_rootfs busy");
    drop(busy);
    assert!(!c1.exists() && !c2.exists());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(c1.to_str().expect("utf8")),
        "still mounted"
    );
    assert!(
        !mountinfo.contains(c2.to_str().expect("utf8")),
        "still mounted"
    );
    assert!(
        layer.join("bin/busybox").exists(),
        "layers survive remove_rootfs"
    );
    remove_rootfs(&c1).expect("absent is fine");

    // The copy fallback, called directly.
    let c3 = work.path().join("c3");
    let _c3_guard = RootfsGuard(c3.clone());
    let copy = store.create_rootfs_copy(&app, &c3).expect("copy rootfs");
    assert!(!is_mount_point(&copy).expect("mountinfo"));
    assert_eq!(
        fs::read(copy.join("data/keep.txt")).expect("keep"),
        b"keep\n"
    );
    assert!(copy.join("data/new.txt").exists());
    assert!(
        fs::symlink_metadata(copy.join("data/gone.txt")).is_err(),
        "whiteout applied"
    );
    let c4 = work.path().join("c4");
    let _c4_guard = RootfsGuard(c4.clone());
    let copy = store
        .create_rootfs_copy(&busybox, &c4)
        .expect("copy busybox");
    let bb = fs::metadata(copy.join("bin/busybox")).expect("busybox");
    assert_eq!(bb.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(copy.join("bin/ls")).expect("ls"),
        PathBuf::from("busybox")
    );
    let out = std::process::Command::new("chroot")
        .arg(&copy)
        .args(["/bin/sh", "-c", "echo hello from busybox"])
        .output()
        .expect("chroot");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from busybox"
    );
    remove_rootfs(&c3).expect("remove copy");
    remove_rootfs(&c4).expect("remove copy");
    assert!(!c3.exists() && !c4.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_a_credentials_file() {
    if !support::require(&[TOOLS, &["python3"]].concat()) {
        return;
    }
    let layout = support::busybox_layout();
    let reg = Registry::start_with_auth("skiff", "s3cret");
    reg.push(&layout, "busybox", "private/busybox:1", Format::Oci, false);
    let reference = format!("{}/private/busybox:1", reg.host());
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let events = Events::default();

    let anonymous = pull(&store, &reference, &options(&reg), &events).await;
    let message = anonymous
        .expect_err("anonymous pull of a private image")
        .to_string();
    assert!(
        message.contains("denied") || message.contains("nauthorized"),
        "{message}"
    );

    let creds_dir = tempfile::tempdir().expect("tempdir");
    let write_creds = |name: &str, user_pass: &str| {
        use base64::Engine as _;
        let path = creds_dir.path().join(name);
        let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
        fs::write(
            &path,
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
        )
        .expect("write creds");
        path
    };
    let wrong = PullOptions {
        credentials_file: Some(write_creds("wrong.json", "skiff:nope")),
        ..options(&reg)
    };
    let message = pull(&store, &reference, &wrong, &events)
        .await
        .expect_err("wrong password")
        .to_string();
    assert!(
        message.contains("denied") || message.contains("nauthorized"),
        "{message}"
    );
    assert!(store.list().expect("list").is_empty());

    let right = PullOptions {
        credentials_file: Some(write_creds("right.json", "skiff:s3cret")),
        ..options(&reg)
    };
    let image = pull(&store, &reference, &right, &events)
        .await
        .expect("pull with credentials");
    assert_eq!(image.reference, reference);
    check_busybox_layer(&store, &image);
}

/// Docker Hub's flow: the registry answers 401 with `WWW-Authenticate: Bearer realm=…`, the
/// client fetches a token from the realm anonymously and retries with `Authorization: Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_bearer_token_as_docker_hub_does_it() {
    if !support::require(&[TOOLS, &["python3", "openssl"]].concat()) {
        return;
    }
    let layout = support::busybox_layout();
    let reg = Registry::start_with_token_auth();
    // Without a token the registry turns everyone away.
    assert_eq!(support::http_status(reg.port(), "/v2/"), Some(401));
    // skopeo pushes as the push user, through the same token flow.
    let digest = reg.push(&layout, "busybox", "library/busybox:1", Format::Oci, false);
    reg.push(&layout, "busybox", "forbidden/x:1", Format::Oci, false);
    let pushes = reg.token_requests();
    assert!(
        pushes
            .iter()
            .any(|r| r.auth == "basic" && r.scopes.iter().any(|s| s.ends_with(":pull,push"))),
        "skopeo got a push token: {pushes:?}"
    );

    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let events = Events::default();
    let opts = options(&reg);
    assert!(opts.credentials_file.is_none());

    let reference = format!("{}/library/busybox:1", reg.host());
    let image = pull(&store, &reference, &opts, &events)
        .await
        .unwrap_or_else(|e| panic!("anonymous pull: {e}\n{}", reg.log()));
    assert_eq!(image.reference, reference);
    assert_eq!(image.digest, digest);
    check_busybox_layer(&store, &image);
    assert!(tmp_is_empty(&store));

    // The bearer flow ran: an anonymous token request for exactly this repository's pull scope,
    // granted pull.
    let requests = reg.token_requests()[pushes.len()..].to_vec();
    let ours: Vec<_> = requests
        .iter()
        .filter(|r| r.scopes == ["repository:library/busybox:pull"])
        .collect();
    assert!(
        !ours.is_empty(),
        "no token request for the pull: {requests:?}"
    );
    for r in &ours {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/token"));
        assert_eq!(r.auth, "none", "{r:?}");
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.query
                .contains(&format!("service={}", support::TOKEN_SERVICE)),
            "{r:?}"
        );
        assert_eq!(
            r.granted,
            Some(serde_json::json!([
                {"type": "repository", "name": "library/busybox", "actions": ["pull"]}
            ])),
            "{r:?}"
        );
    }
    assert!(
        requests.iter().all(|r| r.auth == "none"),
        "the anonymous pull sent credentials: {requests:?}"
    );

    // A private repository: the token server hands out a token granting nothing (as Docker Hub
    // does), the registry then refuses the manifest.
    let seen = reg.token_requests().len();
    let forbidden = format!("{}/forbidden/x:1", reg.host());
    let err = pull(&store, &forbidden, &opts, &events)
        .await
        .expect_err("pull of a repository the token grants nothing on");
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("denied") || message.contains("nauthorized"),
        "{message}"
    );
    let asked = reg.token_requests()[seen..].to_vec();
    assert!(
        asked.iter().any(|r| r.auth == "none"
            && r.status == 200
            && r.scopes == ["repository:forbidden/x:pull"]),
        "{asked:?}"
    );

    // The token server itself says no: its answer reaches the error.
    let refused = format!("{}/refused/x:1", reg.host());
    let err = pull(&store, &refused, &opts, &events)
        .await
        .expect_err("pull the token server refuses");
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("denied") && message.contains("refuses anonymous access to refused/x"),
        "{message}"
    );

    let images = store.list().expect("list");
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].reference, reference);
}

/// Plain HTTP is used only for registries listed as insecure: an unlisted one is spoken to over
/// TLS, which a plain-HTTP registry cannot answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_for_listed_registries() {
    if !support::require(TOOLS) {
        return;
    }
    let layout = support::busybox_layout();
    let reg = Registry::start();
    reg.push(&layout, "busybox", "library/busybox:1", Format::Oci, false);
    let reference = format!("{}/library/busybox:1", reg.host());
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let events = Events::default();
    let not_listed = PullOptions::default();
    let err = pull(&store, &reference, &not_listed, &events)
        .await
        .expect_err("TLS to a plain-HTTP registry");
    assert!(err.to_string().contains(&reg.host()), "{err}");
    assert!(store.list().expect("list").is_empty());
    pull(&store, &reference, &options(&reg), &events)
        .await
        .expect("listed as insecure");
}

/// An OCI layout tagged `multi` with `count` gzip layers of `size` incompressible bytes each
/// (`/layer-N.bin` in layer N).
fn multi_layer_layout(dir: &Path, count: usize, size: usize) -> PathBuf {
    use sha2::Digest;
    use std::io::Write as _;
    let layout = dir.join("multi-layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for n in 0..count {
        let data: Vec<u8> = (0..size)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("layer-{n}.bin"), data.as_slice())
            .expect("append");
        let tar = b.into_inner().expect("tar");
        diff_ids.push(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&tar))
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let (digest, len) = write_blob(&blobs, &gz.finish().expect("gzip"));
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest, "size": len,
        }));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_len) =
        write_blob(&blobs, &serde_json::to_vec(&config).expect("json"));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_len},
        "layers": layers,
    });
    let (manifest_digest, manifest_len) =
        write_blob(&blobs, &serde_json::to_vec(&manifest).expect("json"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_len,
                       "annotations": {"org.opencontainers.image.ref.name": "multi"}}],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    layout
}

/// Layers are fetched concurrently: the download windows (first bytes → verified) of different
/// layers overlap, and every layer lands whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_are_fetched_concurrently() {
    if !support::require(TOOLS) {
        return;
    }
    const LAYERS: usize = 3;
    const SIZE: usize = 6 << 20;
    let work = tempfile::tempdir().expect("tempdir");
    let layout = multi_layer_layout(work.path(), LAYERS, SIZE);
    let reg = Registry::start();
    reg.push(&layout, "multi", "multi/layers:1", Format::Oci, false);
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path()).expect("open");
    let timeline = Mutex::new(Vec::<(std::time::Instant, PullProgress)>::new());
    let record = |p: PullProgress| {
        timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((std::time::Instant::now(), p));
    };
    let reference = format!("{}/multi/layers:1", reg.host());
    let image = store
        .pull(&reference, &options(&reg), &record)
        .await
        .expect("pull");
    assert_eq!(image.layers.len(), LAYERS);
    for (n, diff_id) in image.layers.iter().enumerate() {
        let file = store
            .layer_path(diff_id)
            .expect("layer path")
            .join(format!("layer-{n}.bin"));
        let len = fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .len();
        assert_eq!(len, SIZE as u64);
    }
    let timeline = timeline.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut windows: Vec<(std::time::Instant, std::time::Instant)> = Vec::new();
    for layer in &image_layer_digests(&store, &image) {
        let mine = || timeline.iter().filter(|(_, p)| &p.digest == layer);
        let first = mine()
            .find(|(_, p)| p.status == PullStatus::Downloading)
            .map(|(t, _)| *t)
            .expect("downloading events");
        let done = mine()
            .find(|(_, p)| p.status == PullStatus::Downloaded)
            .map(|(t, _)| *t)
            .expect("downloaded event");
        windows.push((first, done));
    }
    let overlapping = windows
        .iter()
        .enumerate()
        .any(|(i, a)| windows.iter().skip(i + 1).any(|b| a.0 < b.1 && b.0 < a.1));
    assert!(
        overlapping,
        "layer downloads ran one after another: {windows:?}"
    );
}

/// The compressed layer digests of a pulled image, from its stored manifest.
fn image_layer_digests(store: &ImageStore, image: &Image) -> Vec<String> {
    let bytes = fs::read(store.blob_path(&image.digest).expect("path")).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}
