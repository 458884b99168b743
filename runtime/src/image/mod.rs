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
// STUB (main only, replaced by rt-image)
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("image stub")]
pub struct ImageError;
#[derive(Debug, Clone)]
pub struct Image { pub layers: Vec<String>, pub reference: String, pub id: String, pub digest: String, pub size: u64 }
pub struct ImageStore;
impl ImageStore {
    pub fn open(_: &Path) -> Result<Self, ImageError> { Ok(Self) }
    pub fn create_rootfs(&self, _: &Image, _: &Path) -> Result<PathBuf, ImageError> { Err(ImageError) }
    pub fn remove_rootfs(&self, _: &Path) -> Result<(), ImageError> { Ok(()) }
}
#[derive(Debug, Default)]
pub struct PullOptions { pub insecure_registries: Vec<String>, pub credentials_file: Option<PathBuf> }
pub struct PullProgress;
pub fn print_progress_line(_: &PullProgress) {}
#[derive(Debug)]
pub struct PruneReport;
impl std::fmt::Display for PruneReport { fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
impl ImageStore {
    pub async fn pull(&self, _: &str, _: &PullOptions, _: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<Image, ImageError> { Err(ImageError) }
    pub fn import(&self, _: &Path) -> Result<Vec<Image>, ImageError> { Err(ImageError) }
    pub fn list(&self) -> Result<Vec<Image>, ImageError> { Err(ImageError) }
    pub fn remove(&self, _: &str) -> Result<(), ImageError> { Err(ImageError) }
    pub fn prune(&self, _: &std::collections::HashSet<String>) -> Result<PruneReport, ImageError> { Err(ImageError) }
}
