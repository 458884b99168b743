//! Importing images from an OCI image layout (directory or tar) or a `docker save` archive
//! (`manifest.json` with Config/RepoTags/Layers; newer Docker writes an OCI layout plus
//! `manifest.json`, which the same code reads).

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use tracing::info;

use super::fsutil::{self, io_err};
use super::manifest::{self, Descriptor, Parsed, Platform};
use super::reference::{self, Reference};
use super::unpack::{self, Compression};
use super::{Image, ImageError, ImageStore};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image in `path`: an OCI image layout directory, a tar of one, or a
    /// `docker save` archive (tar or extracted directory). Blobs are verified and layers
    /// unpacked as for a pull.
    pub fn import(&self, path: &Path) -> Result<Vec<Image>, ImageError> {
        let _gc = self.gc_lock(false)?;
        let meta = fs::metadata(path).map_err(io_err(format!("import {}", path.display())))?;
        if meta.is_dir() {
            return self.import_dir(path);
        }
        let tmp = self.tmp_dir().join(format!(
            "import-{}-{}",
            std::process::id(),
            fsutil::unique_suffix()
        ));
        fs::create_dir(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
        let result = (|| {
            let reader = unpack::open_layer(path, None)?;
            unpack::apply_tar(reader, &tmp)?;
            self.import_dir(&tmp)
        })();
        if let Err(e) = fsutil::remove_any(&tmp) {
            tracing::warn!(path = %tmp.display(), error = %e, "could not remove import temp dir");
        }
        result
    }

    fn import_dir(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        if dir.join("manifest.json").is_file() {
            self.import_docker(dir)
        } else if dir.join("index.json").is_file() {
            self.import_oci(dir)
        } else {
            Err(ImageError::InvalidImage(format!(
                "{} is neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
                dir.display()
            )))
        }
    }

    fn import_oci(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        let index_path = dir.join("index.json");
        let bytes =
            fs::read(&index_path).map_err(io_err(format!("read {}", index_path.display())))?;
        let entries = match manifest::parse(&bytes)? {
            Parsed::Index(entries) => entries,
            Parsed::Image(_) => {
                return Err(ImageError::InvalidImage(
                    "index.json is not an image index".into(),
                ));
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let names = names_from_annotations(&entry)?;
            let mut blobs = Vec::new();
            let mut digest = entry.digest.clone();
            let mut bytes = self.copy_from_layout(dir, &digest)?;
            blobs.push(digest.clone());
            let mut parsed = manifest::parse(&bytes)?;
            if let Parsed::Index(children) = &parsed {
                let want = Platform::current();
                let child = manifest::select_platform_entry(children, &want)
                    .ok_or_else(|| manifest::no_platform(&want))?;
                digest = child.digest.clone();
                bytes = self.copy_from_layout(dir, &digest)?;
                blobs.push(digest.clone());
                parsed = manifest::parse(&bytes)?;
            }
            let Parsed::Image(m) = parsed else {
                return Err(ImageError::InvalidImage(
                    "image index points at another index".into(),
                ));
            };
            self.copy_from_layout(dir, &m.config.digest)?;
            for layer in &m.layers {
                self.copy_from_layout(dir, &layer.digest)?;
            }
            out.extend(self.finish_import(names, digest, &m.config, &m.layers, blobs)?);
        }
        Ok(out)
    }

    fn import_docker(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        let path = dir.join("manifest.json");
        let bytes = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
        let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::InvalidImage(format!("manifest.json: {e}")))?;
        let mut out = Vec::new();
        for entry in entries {
            let config = self.store_file(&archive_path(dir, &entry.config)?)?;
            let config_desc = Descriptor {
                media_type: manifest::OCI_CONFIG.into(),
                digest: config.0,
                size: config.1,
                ..Default::default()
            };
            let mut layers = Vec::new();
            for layer in &entry.layers {
                let file = archive_path(dir, layer)?;
                let (digest, size) = self.store_file(&file)?;
                let mut magic = [0u8; 4];
                let n = fs::File::open(&file)
                    .and_then(|mut f| f.read(&mut magic))
                    .map_err(io_err(format!("read {}", file.display())))?;
                let media_type = match Compression::detect(&magic[..n], None) {
                    Compression::None => manifest::OCI_LAYER_TAR.to_string(),
                    Compression::Gzip => format!("{}+gzip", manifest::OCI_LAYER_TAR),
                    Compression::Zstd => format!("{}+zstd", manifest::OCI_LAYER_TAR),
                };
                layers.push(Descriptor {
                    media_type,
                    digest,
                    size,
                    ..Default::default()
                });
            }
            // docker save has no manifest: write the equivalent OCI one.
            let manifest_json = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::OCI_MANIFEST,
                "config": &config_desc,
                "layers": &layers,
            });
            let manifest_bytes = serde_json::to_vec(&manifest_json)
                .map_err(|e| ImageError::InvalidImage(format!("serialize manifest: {e}")))?;
            let digest = fsutil::sha256_digest(&manifest_bytes);
            if !self.blob_path(&digest)?.exists() {
                self.store_blob(&digest, &mut &manifest_bytes[..])?;
            }
            let mut names = Vec::new();
            for tag in entry.repo_tags.unwrap_or_default() {
                names.push(reference::normalize(&tag)?);
            }
            out.extend(self.finish_import(
                names,
                digest.clone(),
                &config_desc,
                &layers,
                vec![digest],
            )?);
        }
        Ok(out)
    }

    /// Unpacks the layers and records one image per name (or one under its id when unnamed).
    fn finish_import(
        &self,
        names: Vec<String>,
        manifest_digest: String,
        config: &Descriptor,
        layers: &[Descriptor],
        mut blobs: Vec<String>,
    ) -> Result<Vec<Image>, ImageError> {
        let (config_file, diff_ids) = self.read_config_blob(&config.digest, layers.len())?;
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            self.ensure_layer(&layer.digest, Some(&layer.media_type), diff_id)?;
        }
        blobs.push(config.digest.clone());
        blobs.extend(layers.iter().map(|l| l.digest.clone()));
        let size = std::iter::once(config)
            .chain(layers)
            .map(|d| u64::try_from(d.size).unwrap_or(0))
            .sum();
        let names = if names.is_empty() {
            vec![config.digest.clone()]
        } else {
            names
        };
        let mut out = Vec::new();
        for name in names {
            let image = Image {
                reference: name,
                digest: manifest_digest.clone(),
                id: config.digest.clone(),
                config: config_file.image_config(),
                layers: diff_ids.clone(),
                size,
            };
            info!(reference = %image.reference, id = %image.id, "image imported");
            out.push(self.record(image, blobs.clone())?);
        }
        Ok(out)
    }

    /// Copies blob `digest` from an OCI layout into the store (verified) unless present; returns
    /// its bytes when small enough to be a manifest (always read from the store copy).
    fn copy_from_layout(&self, dir: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
        reference::validate_digest(digest).map_err(ImageError::InvalidImage)?;
        let dest = self.blob_path(digest)?;
        if !dest.exists() {
            let src = dir.join("blobs/sha256").join(&digest[7..]);
            let mut f = fs::File::open(&src).map_err(|e| {
                ImageError::InvalidImage(format!(
                    "blob {digest} missing from {}: {e}",
                    dir.display()
                ))
            })?;
            self.store_blob(digest, &mut f)?;
        }
        let meta = fs::metadata(&dest).map_err(io_err(format!("stat {}", dest.display())))?;
        if meta.len() > 4 * 1024 * 1024 {
            return Ok(Vec::new());
        }
        fs::read(&dest).map_err(io_err(format!("read {}", dest.display())))
    }

    /// Stores a file under its own sha256; returns (digest, size).
    fn store_file(&self, path: &Path) -> Result<(String, i64), ImageError> {
        let f = fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?;
        let (digest, _) = fsutil::HashingReader::new(f)
            .finish()
            .map_err(io_err(format!("read {}", path.display())))?;
        let size = if self.blob_path(&digest)?.exists() {
            fs::metadata(path)
                .map_err(io_err(format!("stat {}", path.display())))?
                .len()
        } else {
            let mut f = fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?;
            self.store_blob(&digest, &mut f)?
        };
        Ok((digest, i64::try_from(size).unwrap_or(i64::MAX)))
    }
}

/// A path named inside an archive, confined to the archive directory.
fn archive_path(dir: &Path, name: &str) -> Result<PathBuf, ImageError> {
    let rel = Path::new(name);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ImageError::InvalidImage(format!(
            "manifest.json names {name:?} outside the archive"
        )));
    }
    Ok(dir.join(rel))
}

/// Normalized names from a layout's descriptor annotations.
fn names_from_annotations(d: &Descriptor) -> Result<Vec<String>, ImageError> {
    if let Some(full) = d.annotations.get(CONTAINERD_NAME) {
        return Ok(vec![reference::normalize(full)?]);
    }
    match d.annotations.get(REF_NAME) {
        Some(name) => {
            let r = Reference::parse(name)?;
            Ok(vec![r.to_string()])
        }
        None => Ok(Vec::new()),
    }
}
