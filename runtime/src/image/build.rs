//! Images built on this machine from a static multi-call binary (Debian's `busybox-static`):
//! one layer with the binary, a symlink per applet and a minimal /etc, so containers run with
//! no registry at all. The result is written as an OCI image layout and imported like any
//! other, so it lands in the store through the same verification as a pull.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde_json::json;

use super::fsutil::{self, io_err};
use super::reference::Reference;
use super::{Image, ImageError, ImageStore};

const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What goes into an image built from a static binary.
#[derive(Debug, Clone)]
pub struct StaticBinaryImage<'a> {
    /// The binary, installed as `/bin/<file name>` (mode 0755).
    pub binary: &'a Path,
    /// Names linked to it in `/bin` (a multi-call binary's applets).
    pub links: &'a [String],
    /// The image's default command.
    pub cmd: &'a [String],
    /// One image per entry: its reference and environment beyond `PATH`. Every image shares
    /// the one layer; a different environment makes a different image id, so two tags can
    /// stand for two versions of an application.
    pub tags: &'a [(String, Vec<String>)],
}

impl ImageStore {
    /// Builds the images `spec` describes and imports them. Building is deterministic (fixed
    /// timestamps, sorted entries): the same binary always gives the same digests.
    pub fn import_static_binary(
        &self,
        spec: &StaticBinaryImage<'_>,
    ) -> Result<Vec<Image>, ImageError> {
        let layout = self.tmp_dir().join(format!(
            "build-{}-{}",
            std::process::id(),
            fsutil::unique_suffix()
        ));
        let result = write_layout(spec, &layout).and_then(|()| self.import(&layout));
        if let Err(e) = fsutil::remove_any(&layout) {
            tracing::warn!(path = %layout.display(), error = %e, "could not remove build dir");
        }
        result
    }
}

fn write_layout(spec: &StaticBinaryImage<'_>, layout: &Path) -> Result<(), ImageError> {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err(format!("create {}", blobs.display())))?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(io_err("write oci-layout"))?;

    let tar = layer_tar(spec)?;
    let diff_id = fsutil::sha256_digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).map_err(io_err("compress the layer"))?;
    let compressed = gz.finish().map_err(io_err("compress the layer"))?;
    let layer_digest = put_blob(&blobs, &compressed)?;

    let mut manifests = Vec::new();
    for (reference, env) in spec.tags {
        let name = Reference::parse(reference)?.to_string();
        let mut full_env = vec![DEFAULT_PATH.to_string()];
        full_env.extend(env.iter().cloned());
        let config = json!({
            "architecture": oci_architecture(),
            "os": "linux",
            "config": {"Cmd": spec.cmd, "Env": full_env, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": format!("skiff: {} with {} links", spec.binary.display(), spec.links.len())}],
        });
        let config_bytes = to_json(&config)?;
        let config_digest = put_blob(&blobs, &config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_bytes.len()},
            "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer_digest, "size": compressed.len()}],
        });
        let manifest_bytes = to_json(&manifest)?;
        let manifest_digest = put_blob(&blobs, &manifest_bytes)?;
        manifests.push(json!({
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {REF_NAME: name},
        }));
    }
    let index = json!({"schemaVersion": 2, "manifests": manifests});
    fs::write(layout.join("index.json"), to_json(&index)?).map_err(io_err("write index.json"))
}

/// The layer: `/bin/<binary>`, its links, `/tmp` (sticky), `/etc/passwd` and `/etc/group`
/// with root and nobody, and most other top-level directories of Docker Hub's busybox (so a
/// container's /proc, /sys and /dev mount points come with the image), as
/// `scripts/fixtures/busybox-image.sh` makes it.
fn layer_tar(spec: &StaticBinaryImage<'_>) -> Result<Vec<u8>, ImageError> {
    let file_name = spec
        .binary
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            ImageError::InvalidImage(format!("{} has no file name", spec.binary.display()))
        })?
        .to_string();
    let content =
        fs::read(spec.binary).map_err(io_err(format!("read {}", spec.binary.display())))?;
    let mut builder = tar::Builder::new(Vec::new());
    let tar_err = |what: &str| io_err(format!("write {what} into the layer"));
    for (dir, mode) in [
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("home/", 0o755),
        ("proc/", 0o755),
        ("root/", 0o700),
        ("sys/", 0o755),
        ("tmp/", 0o1777),
        ("var/", 0o755),
    ] {
        let mut header = entry_header(tar::EntryType::Directory, mode, 0);
        builder
            .append_data(&mut header, dir, io::empty())
            .map_err(tar_err(dir))?;
    }
    let binary_path = format!("bin/{file_name}");
    let mut header = entry_header(tar::EntryType::Regular, 0o755, content.len() as u64);
    builder
        .append_data(&mut header, &binary_path, content.as_slice())
        .map_err(tar_err(&binary_path))?;
    let mut links: Vec<&String> = spec
        .links
        .iter()
        .filter(|l| **l != file_name && !l.is_empty() && !l.contains('/'))
        .collect();
    links.sort();
    links.dedup();
    for link in links {
        let path = format!("bin/{link}");
        let mut header = entry_header(tar::EntryType::Symlink, 0o777, 0);
        builder
            .append_link(&mut header, &path, &file_name)
            .map_err(tar_err(&path))?;
    }
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let mut header = entry_header(tar::EntryType::Regular, 0o644, text.len() as u64);
        builder
            .append_data(&mut header, path, text.as_bytes())
            .map_err(tar_err(path))?;
    }
    builder.into_inner().map_err(io_err("finish the layer"))
}

fn entry_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn put_blob(blobs: &Path, bytes: &[u8]) -> Result<String, ImageError> {
    let digest = fsutil::sha256_digest(bytes);
    let path = blobs.join(&digest[7..]);
    fs::write(&path, bytes).map_err(io_err(format!("write {}", path.display())))?;
    Ok(digest)
}

fn to_json(value: &serde_json::Value) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|e| ImageError::InvalidImage(format!("encode: {e}")))
}

/// The running machine's architecture in OCI's (Go's) words.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_binary_becomes_two_tagged_images_sharing_one_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join("tool");
        fs::write(&binary, b"#!/bin/sh\necho tool\n").expect("binary");
        let store = ImageStore::open(&dir.path().join("store")).expect("store");
        let links = vec!["sh".to_string(), "echo".to_string(), "tool".to_string()];
        let cmd = vec!["/bin/sh".to_string()];
        let tags = vec![
            (
                "example.local/tool:v1".to_string(),
                vec!["VERSION=v1".to_string()],
            ),
            (
                "example.local/tool:v2".to_string(),
                vec!["VERSION=v2".to_string()],
            ),
        ];
        let spec = StaticBinaryImage {
            binary: &binary,
            links: &links,
            cmd: &cmd,
            tags: &tags,
        };
        let images = store.import_static_binary(&spec).expect("build");
        assert_eq!(images.len(), 2);
        let v1 = store.get("example.local/tool:v1").expect("v1");
        let v2 = store.get("example.local/tool:v2").expect("v2");
        assert_ne!(v1.id, v2.id, "the environments differ, so the configs do");
        assert_eq!(v1.layers, v2.layers);
        assert_eq!(v1.config.env.last().map(String::as_str), Some("VERSION=v1"));
        assert_eq!(v1.config.cmd, cmd);
        let layer = store.layer_path(&v1.layers[0]).expect("layer path");
        assert_eq!(
            fs::read(layer.join("bin/tool")).expect("binary in layer"),
            b"#!/bin/sh\necho tool\n"
        );
        assert_eq!(
            fs::read_link(layer.join("bin/sh")).expect("link"),
            Path::new("tool")
        );
        use std::os::unix::fs::PermissionsExt;
        let tmp_mode = fs::metadata(layer.join("tmp"))
            .expect("tmp")
            .permissions()
            .mode();
        assert_eq!(tmp_mode & 0o7777, 0o1777);
        assert!(
            fs::read_to_string(layer.join("etc/passwd"))
                .expect("passwd")
                .starts_with("root:x:0:0:")
        );

        // Deterministic: building again gives the same image.
        store.import_static_binary(&spec).expect("rebuild");
        assert_eq!(
            store.get("example.local/tool:v1").expect("v1 again").id,
            v1.id
        );
        assert!(
            fs::read_dir(store.tmp_dir()).expect("tmp").next().is_none(),
            "the build leaves nothing in tmp"
        );
    }
}
