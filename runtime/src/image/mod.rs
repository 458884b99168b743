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
