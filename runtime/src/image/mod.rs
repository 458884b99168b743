//! Images: Docker-style references, pulls over the OCI distribution API, a content-addressed blob
//! store, layers unpacked once each (overlay format), container root filesystems, and import of
//! OCI layouts and `docker save` archives.
//!
//! CONTRACT used by the rest of the crate (helper owning this module may add, not break):
//! - `ImageStore::open(root: &Path) -> Result<ImageStore, ImageError>`
//! - `ImageStore::pull(&self, reference: &str, options: &PullOptions, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<Image, ImageError>` (async)
//! - `ImageStore::import(&self, path: &Path) -> Result<Vec<Image>, ImageError>`
//! - `ImageStore::get(&self, reference: &str) -> Result<Image, ImageError>` (by name, digest or id)
//! - `ImageStore::list(&self) -> Result<Vec<Image>, ImageError>`
//! - `ImageStore::remove(&self, reference: &str) -> Result<(), ImageError>`
//! - `ImageStore::prune(&self, keep_layers: &HashSet<String>) -> Result<PruneReport, ImageError>`
//! - `ImageStore::create_rootfs(&self, image: &Image, container_dir: &Path) -> Result<PathBuf, ImageError>`
//!   (overlay of the image's layers with container_dir/upper + work, mounted at container_dir/rootfs;
//!   a copy there when overlayfs is unavailable) and `remove_rootfs(container_dir)`.
//! - `Image { reference, digest, id, config: ImageConfig, layers: Vec<String> (diff ids), size }`
//! - `ImageConfig { entrypoint, cmd, env, working_dir, user }` with
//!   `command_line(&self, command: &[String], args: &[String]) -> Vec<String>` (Kubernetes rules).
//!
//! Store layout under ROOT:
//! - `blobs/sha256/<hex>`: manifests, configs and compressed layers, content-addressed;
//! - `layers/<diff id hex>/`: each layer unpacked once, in overlayfs format;
//! - `images.json`: reference → manifest digest, config digest (the image id), diff ids, size;
//! - `tmp/`: temp files and directories, renamed into place when complete;
//! - `index.lock` (flock around read-modify-write of `images.json`) and `gc.lock` (shared by
//!   pulls and imports, exclusive for prune).

mod build;
mod config;
mod fsutil;
mod import;
mod manifest;
mod pull;
mod reference;
mod rootfs;
mod unpack;

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

pub use build::StaticBinaryImage;
pub use config::ImageConfig;
pub use manifest::{Platform, select_platform};
pub use pull::{Credentials, PullOptions, PullProgress, PullStatus, load_credentials};
pub use reference::{DEFAULT_REGISTRY, Reference, normalize};
pub use rootfs::{apply_layers_copy, is_mount_point, remove_rootfs};
pub use unpack::{Compression, unpack_layer_blob, unpack_layer_stream};

use fsutil::io_err;

/// Everything that can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// No such image (locally, or in the registry).
    #[error("image {0:?} not found")]
    NotFound(String),
    /// An id prefix matches more than one image.
    #[error("image id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// The registry cannot be reached.
    #[error("registry {registry} unreachable: {message}")]
    Unreachable {
        /// Host (and port).
        registry: String,
        /// The underlying error.
        message: String,
    },
    /// The registry refused our credentials (or demands some).
    #[error("registry {registry} denied access: {message}")]
    Unauthorized {
        /// Host (and port).
        registry: String,
        /// The underlying error.
        message: String,
    },
    /// Another registry failure.
    #[error("registry {registry}: {message}")]
    Registry {
        /// Host (and port).
        registry: String,
        /// The underlying error.
        message: String,
    },
    /// Content did not hash to its digest.
    #[error("blob {expected} digest mismatch: got {actual}")]
    DigestMismatch {
        /// The digest the content was addressed by.
        expected: String,
        /// What it hashed to.
        actual: String,
    },
    /// An uncompressed layer did not hash to the diff id in the image config.
    #[error("layer diff id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diff id from the image config.
        expected: String,
        /// What the uncompressed tar hashed to.
        actual: String,
    },
    /// A layer tar entry that would escape the layer root (or is otherwise unusable).
    #[error("layer entry {path:?} refused: {reason}")]
    UnsafeEntry {
        /// The entry's path in the tar.
        path: String,
        /// Why.
        reason: String,
    },
    /// A manifest, index, config or archive that cannot be used.
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// The credentials file cannot be used.
    #[error("credentials file {path}: {message}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Mounting or unmounting a container root filesystem failed.
    #[error("rootfs {path}: {message}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Normalized reference (`docker.io/library/busybox:latest`, or `name@sha256:…` when pulled by
    /// digest).
    pub reference: String,
    /// Manifest digest (`sha256:…`).
    pub digest: String,
    /// Image id: the config digest (`sha256:…`).
    pub id: String,
    /// Process defaults from the image config.
    pub config: ImageConfig,
    /// Layer diff ids, bottom layer first.
    pub layers: Vec<String>,
    /// Size in bytes: config plus (compressed) layer blobs, as listed in the manifest.
    pub size: u64,
}

/// What [`ImageStore::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blob digests removed.
    pub blobs: Vec<String>,
    /// Layer diff ids removed.
    pub layers: Vec<String>,
    /// Bytes freed (blob sizes plus regular files in removed layer dirs).
    pub bytes_freed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageRecord {
    #[serde(flatten)]
    image: Image,
    /// Every blob the image needs (index, manifest, config, layers).
    #[serde(default)]
    blobs: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    #[serde(default)]
    images: Vec<ImageRecord>,
}

/// The image store rooted at a directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

const INDEX_FILE: &str = "images.json";

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(io_err(format!("create {}", p.display())))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether present or not).
    /// The stored image config `digest` and its layers' diff ids, checked against the number of
    /// layers the manifest lists.
    pub(crate) fn read_config_blob(
        &self,
        digest: &str,
        layer_count: usize,
    ) -> Result<(config::ConfigFile, Vec<String>), ImageError> {
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
        let file: config::ConfigFile = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::InvalidImage(format!("image config: {e}")))?;
        let diff_ids = file
            .rootfs
            .as_ref()
            .map(|r| r.diff_ids.clone())
            .unwrap_or_default();
        if diff_ids.len() != layer_count {
            return Err(ImageError::InvalidImage(format!(
                "manifest lists {layer_count} layers but the config {} diff ids",
                diff_ids.len()
            )));
        }
        for d in &diff_ids {
            reference::validate_digest(d).map_err(ImageError::InvalidImage)?;
        }
        Ok((file, diff_ids))
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        reference::validate_digest(digest).map_err(ImageError::InvalidImage)?;
        Ok(self.root.join("blobs/sha256").join(&digest[7..]))
    }

    /// Where the layer with `diff_id` is unpacked (whether present or not).
    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        reference::validate_digest(diff_id).map_err(ImageError::InvalidImage)?;
        Ok(self.root.join("layers").join(&diff_id[7..]))
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn lock(&self, name: &str, arg: FlockArg) -> Result<Flock<File>, ImageError> {
        let path = self.root.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("open {}", path.display())))?;
        Flock::lock(file, arg).map_err(|(_, errno)| ImageError::Io {
            context: format!("lock {}", path.display()),
            source: io::Error::from_raw_os_error(errno as i32),
        })
    }

    /// Shared while pulling/importing, exclusive while pruning.
    pub(crate) fn gc_lock(&self, exclusive: bool) -> Result<Flock<File>, ImageError> {
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        self.lock("gc.lock", arg)
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Io {
                context: format!("parse {}", path.display()),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::Io {
                context: format!("read {}", path.display()),
                source: e,
            }),
        }
    }

    /// Read-modify-write of the index under the index lock; written atomically.
    fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Index) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        let bytes = serde_json::to_vec_pretty(&index).map_err(|e| ImageError::Io {
            context: "serialize image index".into(),
            source: io::Error::other(e),
        })?;
        let path = self.root.join(INDEX_FILE);
        fsutil::write_atomic(&path, &bytes).map_err(io_err(format!("write {}", path.display())))?;
        Ok(out)
    }

    /// Records `image` (replacing any record with the same reference).
    fn record(&self, image: Image, blobs: Vec<String>) -> Result<Image, ImageError> {
        let stored = image.clone();
        self.update_index(move |index| {
            index.images.retain(|r| r.image.reference != image.reference);
            info!(reference = %image.reference, id = %image.id, digest = %image.digest, "image recorded");
            index.images.push(ImageRecord { image, blobs });
            Ok(())
        })?;
        Ok(stored)
    }

    /// Looks an image up by reference (normalized), `name@sha256:…`, manifest digest, image id
    /// (`sha256:…`), or a unique id prefix (with or without `sha256:`).
    pub fn get(&self, reference: &str) -> Result<Image, ImageError> {
        let index = self.read_index()?;
        let matches = find(&index, reference)?;
        matches
            .first()
            .map(|r| r.image.clone())
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))
    }

    /// All images, one per reference, sorted by reference.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut images: Vec<Image> = self
            .read_index()?
            .images
            .into_iter()
            .map(|r| r.image)
            .collect();
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(images)
    }

    /// Removes the record(s) `reference` names: one reference when given a name, every reference
    /// of the image when given an id or digest. Blobs and layers stay until [`ImageStore::prune`].
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        self.update_index(|index| {
            let doomed: Vec<String> = find(index, reference)?
                .iter()
                .map(|r| r.image.reference.clone())
                .collect();
            if doomed.is_empty() {
                return Err(ImageError::NotFound(reference.to_string()));
            }
            index
                .images
                .retain(|r| !doomed.contains(&r.image.reference));
            info!(removed = ?doomed, "images removed");
            Ok(())
        })
    }

    /// Removes blobs and layer directories that no image record references and that are not in
    /// `keep_layers` (diff ids still used by containers), plus stale temp files.
    pub fn prune(&self, keep_layers: &HashSet<String>) -> Result<PruneReport, ImageError> {
        let _gc = self.gc_lock(true)?;
        let index = self.read_index()?;
        let mut keep_blobs: HashSet<String> = HashSet::new();
        let mut keep: HashSet<String> = keep_layers
            .iter()
            .map(|d| d.trim_start_matches("sha256:").to_string())
            .collect();
        for r in &index.images {
            keep_blobs.extend(
                r.blobs
                    .iter()
                    .map(|d| d.trim_start_matches("sha256:").to_string()),
            );
            keep_blobs.insert(r.image.digest.trim_start_matches("sha256:").to_string());
            keep_blobs.insert(r.image.id.trim_start_matches("sha256:").to_string());
            keep.extend(
                r.image
                    .layers
                    .iter()
                    .map(|d| d.trim_start_matches("sha256:").to_string()),
            );
        }
        let mut report = PruneReport::default();
        let blob_dir = self.root.join("blobs/sha256");
        for name in dir_names(&blob_dir)? {
            if keep_blobs.contains(&name) {
                continue;
            }
            let path = blob_dir.join(&name);
            let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(io_err(format!("remove {}", path.display())))?;
            debug!(blob = %name, size, "pruned blob");
            report.bytes_freed += size;
            report.blobs.push(format!("sha256:{name}"));
        }
        let layer_dir = self.root.join("layers");
        for name in dir_names(&layer_dir)? {
            if keep.contains(&name) {
                continue;
            }
            let path = layer_dir.join(&name);
            let size = fsutil::tree_size(&path);
            fsutil::remove_any(&path).map_err(io_err(format!("remove {}", path.display())))?;
            debug!(layer = %name, size, "pruned layer");
            report.bytes_freed += size;
            report.layers.push(format!("sha256:{name}"));
        }
        // Temp leftovers of crashed pulls: nobody holds the shared lock now, so all are stale.
        let tmp = self.tmp_dir();
        for name in dir_names(&tmp)? {
            let path = tmp.join(&name);
            report.bytes_freed += fsutil::tree_size(&path);
            if let Err(e) = fsutil::remove_any(&path) {
                warn!(path = %path.display(), error = %e, "could not remove temp leftover");
            }
        }
        report.blobs.sort();
        report.layers.sort();
        info!(
            blobs = report.blobs.len(),
            layers = report.layers.len(),
            bytes = report.bytes_freed,
            "pruned"
        );
        Ok(report)
    }

    /// Copies `reader` into the blob store as `digest`, hashing while writing; nothing lands
    /// unless the content matches. Returns the size.
    pub(crate) fn store_blob(
        &self,
        digest: &str,
        reader: &mut dyn Read,
    ) -> Result<u64, ImageError> {
        let dest = self.blob_path(digest)?;
        let tmp = self.tmp_dir().join(format!(
            "blob-{}-{}-{}",
            &digest[7..],
            std::process::id(),
            fsutil::unique_suffix()
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err(format!("create {}", tmp.display())))?;
            let mut hashing = fsutil::HashingReader::new(reader);
            io::copy(&mut hashing, &mut file).map_err(io_err(format!("write blob {digest}")))?;
            let (actual, size) = hashing
                .finish()
                .map_err(io_err(format!("read blob {digest}")))?;
            if actual != digest {
                return Err(ImageError::DigestMismatch {
                    expected: digest.to_string(),
                    actual,
                });
            }
            file.flush()
                .map_err(io_err(format!("write blob {digest}")))?;
            file.sync_all()
                .map_err(io_err(format!("sync blob {digest}")))?;
            fs::rename(&tmp, &dest).map_err(io_err(format!("rename blob {digest}")))?;
            Ok(size)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Unpacks layer `diff_id` from blob `blob_digest` unless it is already unpacked.
    /// Returns whether it unpacked anything.
    pub(crate) fn ensure_layer(
        &self,
        blob_digest: &str,
        media_type: Option<&str>,
        diff_id: &str,
    ) -> Result<bool, ImageError> {
        let dest = self.layer_path(diff_id)?;
        if dest.is_dir() {
            return Ok(false);
        }
        let blob = self.blob_path(blob_digest)?;
        unpack::unpack_layer_blob(&blob, media_type, diff_id, &dest, &self.tmp_dir())?;
        Ok(true)
    }
}

fn dir_names(dir: &Path) -> Result<Vec<String>, ImageError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("read {}", dir.display())))? {
        let entry = entry.map_err(io_err(format!("read {}", dir.display())))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// The records `query` names (see [`ImageStore::get`]).
fn find<'a>(index: &'a Index, query: &str) -> Result<Vec<&'a ImageRecord>, ImageError> {
    let by = |pred: &dyn Fn(&ImageRecord) -> bool| -> Vec<&'a ImageRecord> {
        index.images.iter().filter(|r| pred(r)).collect()
    };
    // A full digest: an image id or a manifest digest.
    if reference::validate_digest(query).is_ok() {
        return Ok(by(&|r| r.image.id == query || r.image.digest == query));
    }
    // An id prefix (hex, at least 4 characters, optionally with "sha256:").
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    let is_hex_prefix = hex.len() >= 4
        && hex.len() < 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match Reference::parse(query) {
        Ok(r) => {
            let full = r.to_string();
            let exact = by(&|rec| rec.image.reference == full);
            if !exact.is_empty() {
                return Ok(exact);
            }
            if let Some(digest) = &r.digest {
                let name = r.name();
                let same = by(&|rec| {
                    &rec.image.digest == digest
                        && Reference::parse(&rec.image.reference).is_ok_and(|x| x.name() == name)
                });
                if !same.is_empty() {
                    return Ok(same[..1].to_vec());
                }
            }
        }
        Err(e) if !is_hex_prefix => return Err(e),
        Err(_) => {}
    }
    if is_hex_prefix {
        let ids: BTreeSet<&str> = index
            .images
            .iter()
            .filter(|r| r.image.id[7..].starts_with(hex))
            .map(|r| r.image.id.as_str())
            .collect();
        if ids.len() > 1 {
            return Err(ImageError::Ambiguous(query.to_string()));
        }
        if let Some(id) = ids.first() {
            return Ok(by(&|r| r.image.id == *id));
        }
    }
    Ok(Vec::new())
}
