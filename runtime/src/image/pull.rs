//! Pulling images over the OCI distribution API (via oci-client: anonymous bearer tokens, basic
//! auth), hashing every blob ourselves while writing it, layers fetched and unpacked concurrently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use super::fsutil::{self, io_err};
use super::manifest::{self, Descriptor, Parsed, Platform};
use super::reference::Reference;
use super::{Image, ImageError, ImageStore};

/// How many layers are fetched and unpacked at once.
const CONCURRENT_LAYERS: usize = 4;

/// Options for [`ImageStore::pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `HOST:PORT` registries spoken to over plain HTTP; all others use HTTPS.
    pub insecure_registries: Vec<String>,
    /// A Docker `config.json` with `{"auths": {"host": {"auth": base64(user:pass)}}}` (or
    /// `username`/`password` fields).
    pub credentials_file: Option<PathBuf>,
    /// Platform to pick from an index; the running one when `None`.
    pub platform: Option<Platform>,
}

/// What a pull is doing with one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// Bytes are arriving.
    Downloading,
    /// The blob is complete and verified.
    Downloaded,
    /// The blob was already in the store; nothing fetched.
    AlreadyPresent,
    /// The layer was unpacked (or already was).
    Extracted,
}

/// A progress event of a pull, for callers to display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The blob (`sha256:…`).
    pub digest: String,
    /// Bytes fetched so far.
    pub bytes_done: u64,
    /// Size from the manifest.
    pub total: u64,
    /// What happened.
    pub status: PullStatus,
}

/// Username and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Strips scheme and path from a config.json key; Docker Hub's aliases become `docker.io`.
fn auth_key_host(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

/// Reads the credentials for `registry` from a Docker `config.json`.
pub fn load_credentials(path: &Path, registry: &str) -> Result<Option<Credentials>, ImageError> {
    let err = |message: String| ImageError::Credentials {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let config: DockerConfig =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let want = auth_key_host(registry);
    let Some(entry) = config
        .auths
        .iter()
        .find(|(k, _)| auth_key_host(k) == want)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| err(format!("auth for {registry} is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| err(format!("auth for {registry} is not UTF-8")))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| err(format!("auth for {registry} is not user:password")))?;
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Err(err(format!(
            "entry for {registry} has neither auth nor username and password"
        ))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let msg = src.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = src.source();
    }
    s
}

/// Maps an oci-client error to ours; `what` names the image or blob for "not found".
fn map_err(e: OciDistributionError, registry: &str, what: &str) -> ImageError {
    let registry = registry.to_string();
    match &e {
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) =>
        {
            ImageError::NotFound(what.to_string())
        }
        OciDistributionError::ServerError { code: 404, .. } => {
            ImageError::NotFound(what.to_string())
        }
        OciDistributionError::ImageManifestNotFoundError(_) => {
            ImageError::NotFound(what.to_string())
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => ImageError::Unauthorized {
            registry,
            message: error_chain(&e),
        },
        OciDistributionError::RequestError(re) if re.is_connect() || re.is_timeout() => {
            ImageError::Unreachable {
                registry,
                message: error_chain(re),
            }
        }
        _ => ImageError::Registry {
            registry,
            message: error_chain(&e),
        },
    }
}

struct Session {
    client: Client,
    auth: RegistryAuth,
    reference: Reference,
    oci_ref: oci_client::Reference,
}

impl Session {
    fn new(reference: Reference, options: &PullOptions) -> Result<Session, ImageError> {
        let auth = match &options.credentials_file {
            Some(path) => match load_credentials(path, &reference.registry)? {
                Some(c) => RegistryAuth::Basic(c.username, c.password),
                None => RegistryAuth::Anonymous,
            },
            None => RegistryAuth::Anonymous,
        };
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(options.insecure_registries.clone()),
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        });
        let oci_ref = reference.to_oci();
        Ok(Session {
            client,
            auth,
            reference,
            oci_ref,
        })
    }

    fn registry(&self) -> &str {
        &self.reference.registry
    }

    /// Fetches a manifest (by tag or digest), verifying it against `digest` when given.
    /// Returns (bytes, digest).
    async fn manifest(&self, digest: Option<&str>) -> Result<(Vec<u8>, String), ImageError> {
        let r = match digest {
            Some(d) => self.oci_ref.clone_with_digest(d.to_string()),
            None => self.oci_ref.clone(),
        };
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&r, &self.auth, manifest::ACCEPTED)
            .await
            .map_err(|e| map_err(e, self.registry(), &self.reference.to_string()))?;
        let actual = fsutil::sha256_digest(&bytes);
        if let Some(expected) = digest.or(self.reference.digest.as_deref())
            && actual != expected
        {
            return Err(ImageError::DigestMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        Ok((bytes.to_vec(), actual))
    }
}

impl ImageStore {
    /// Pulls `reference` from its registry into the store and records it.
    pub async fn pull(
        &self,
        reference: &str,
        options: &PullOptions,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<Image, ImageError> {
        let parsed = Reference::parse(reference)?;
        info!(reference = %parsed, "pulling image");
        let session = Session::new(parsed.clone(), options)?;
        // Authenticate up front (anonymous bearer tokens as Docker Hub hands out, or basic).
        session
            .client
            .auth(&session.oci_ref, &session.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| map_err(e, session.registry(), &parsed.to_string()))?;

        let store = self.clone();
        let _gc = tokio::task::spawn_blocking(move || store.gc_lock(false))
            .await
            .map_err(|e| ImageError::Io {
                context: "lock the store".into(),
                source: std::io::Error::other(e),
            })??;

        let mut blobs = Vec::new();
        let (mut bytes, mut digest) = session.manifest(None).await?;
        let mut parsed_manifest = manifest::parse(&bytes)?;
        if let Parsed::Index(entries) = &parsed_manifest {
            let want = options.platform.clone().unwrap_or_else(Platform::current);
            let entry = manifest::select_platform_entry(entries, &want)
                .ok_or_else(|| manifest::no_platform(&want))?;
            debug!(index = %digest, manifest = %entry.digest, "resolved image index");
            self.store_bytes(&digest, &bytes)?;
            blobs.push(digest.clone());
            let chosen = entry.digest.clone();
            (bytes, digest) = session.manifest(Some(&chosen)).await?;
            parsed_manifest = manifest::parse(&bytes)?;
        }
        let Parsed::Image(image_manifest) = parsed_manifest else {
            return Err(ImageError::InvalidImage(
                "image index points at another index".into(),
            ));
        };
        self.store_bytes(&digest, &bytes)?;
        blobs.push(digest.clone());

        // The config first: it carries the diff ids.
        let config_desc = &image_manifest.config;
        self.fetch_blob(&session, config_desc, progress).await?;
        blobs.push(config_desc.digest.clone());
        let (config_file, diff_ids) =
            self.read_config_blob(&config_desc.digest, image_manifest.layers.len())?;

        // Collected first (futures are lazy; buffer_unordered bounds how many run) so that no
        // closure over borrowed items ends up in this future's type, which would keep it from
        // being Send.
        let jobs: Vec<_> = image_manifest
            .layers
            .iter()
            .zip(&diff_ids)
            .map(|(desc, diff_id)| self.fetch_layer(&session, desc, diff_id, progress))
            .collect();
        futures::stream::iter(jobs)
            .buffer_unordered(CONCURRENT_LAYERS)
            .try_collect::<Vec<()>>()
            .await?;
        blobs.extend(image_manifest.layers.iter().map(|d| d.digest.clone()));

        let size = std::iter::once(config_desc)
            .chain(&image_manifest.layers)
            .map(|d| u64::try_from(d.size).unwrap_or(0))
            .sum();
        let name = match (&parsed.tag, &parsed.digest) {
            (Some(_), _) => Reference {
                digest: None,
                ..parsed.clone()
            }
            .to_string(),
            (None, _) => parsed.to_string(),
        };
        let image = Image {
            reference: name,
            digest,
            id: config_desc.digest.clone(),
            config: config_file.image_config(),
            layers: diff_ids,
            size,
        };
        self.record(image, blobs)
    }

    async fn fetch_layer(
        &self,
        session: &Session,
        desc: &Descriptor,
        diff_id: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), ImageError> {
        let layer_dir = self.layer_path(diff_id)?;
        self.fetch_blob(session, desc, progress).await?;
        if !layer_dir.is_dir() {
            let store = self.clone();
            let (blob, media, diff) = (
                desc.digest.clone(),
                desc.media_type.clone(),
                diff_id.to_string(),
            );
            tokio::task::spawn_blocking(move || store.ensure_layer(&blob, Some(&media), &diff))
                .await
                .map_err(|e| ImageError::Io {
                    context: format!("unpack layer {diff_id}"),
                    source: std::io::Error::other(e),
                })??;
        }
        let total = u64::try_from(desc.size).unwrap_or(0);
        progress(PullProgress {
            digest: desc.digest.clone(),
            bytes_done: total,
            total,
            status: PullStatus::Extracted,
        });
        Ok(())
    }

    /// Stores `bytes` as blob `digest` (already verified by the caller) unless present.
    fn store_bytes(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        if self.blob_path(digest)?.exists() {
            return Ok(());
        }
        self.store_blob(digest, &mut &bytes[..]).map(|_| ())
    }

    /// Downloads blob `desc` into the store unless present, hashing while writing to a temp file
    /// that is renamed into place only when the digest matches.
    async fn fetch_blob(
        &self,
        session: &Session,
        desc: &Descriptor,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), ImageError> {
        let dest = self.blob_path(&desc.digest)?;
        let total = u64::try_from(desc.size).unwrap_or(0);
        if dest.exists() {
            debug!(blob = %desc.digest, "blob already present");
            progress(PullProgress {
                digest: desc.digest.clone(),
                bytes_done: 0,
                total,
                status: PullStatus::AlreadyPresent,
            });
            return Ok(());
        }
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            ..Default::default()
        };
        let mut stream = session
            .client
            .pull_blob_stream(&session.oci_ref, &oci_desc)
            .await
            .map_err(|e| match map_err(e, session.registry(), &desc.digest) {
                ImageError::NotFound(_) => ImageError::Registry {
                    registry: session.registry().to_string(),
                    message: format!("blob {} of {} not found", desc.digest, session.reference),
                },
                other => other,
            })?;
        let tmp = self.tmp_dir().join(format!(
            "blob-{}-{}-{}",
            &desc.digest[7..],
            std::process::id(),
            fsutil::unique_suffix()
        ));
        let guard = TempFile(Some(tmp.clone()));
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io_err(format!("create {}", tmp.display())))?;
        let mut hasher = Sha256::new();
        let mut done: u64 = 0;
        let mut stream_error = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    hasher.update(&bytes);
                    done += bytes.len() as u64;
                    file.write_all(&bytes)
                        .await
                        .map_err(io_err(format!("write {}", tmp.display())))?;
                    progress(PullProgress {
                        digest: desc.digest.clone(),
                        bytes_done: done,
                        total,
                        status: PullStatus::Downloading,
                    });
                }
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(e) = stream_error {
            // oci-client's own check fails at the end of the stream; report it our way.
            if done >= total && actual != desc.digest {
                return Err(ImageError::DigestMismatch {
                    expected: desc.digest.clone(),
                    actual,
                });
            }
            return Err(ImageError::Registry {
                registry: session.registry().to_string(),
                message: format!("fetch blob {}: {}", desc.digest, error_chain(&e)),
            });
        }
        if actual != desc.digest {
            return Err(ImageError::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
            });
        }
        if total != 0 && done != total {
            return Err(ImageError::Registry {
                registry: session.registry().to_string(),
                message: format!(
                    "blob {} is {done} bytes, manifest says {total}",
                    desc.digest
                ),
            });
        }
        file.sync_all()
            .await
            .map_err(io_err(format!("sync {}", tmp.display())))?;
        drop(file);
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(io_err(format!("rename {} into the store", tmp.display())))?;
        guard.disarm();
        debug!(blob = %desc.digest, bytes = done, "blob fetched");
        progress(PullProgress {
            digest: desc.digest.clone(),
            bytes_done: done,
            total,
            status: PullStatus::Downloaded,
        });
        Ok(())
    }
}

struct TempFile(Option<PathBuf>);

impl TempFile {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers spawn pulls on tokio: the future must be Send.
    #[test]
    fn pull_future_is_send() {
        fn is_send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let options = PullOptions::default();
        let future = store.pull("busybox", &options, &|_| {});
        is_send(&future);
    }

    #[test]
    fn credentials_from_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        std::fs::write(
            &path,
            serde_json::json!({"auths": {
                "127.0.0.1:5000": {"auth": auth},
                "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
                "broken.example": {"auth": "!!!"},
            }})
            .to_string(),
        )
        .unwrap();
        let c = load_credentials(&path, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr:et")
        );
        let c = load_credentials(&path, "docker.io").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
        assert!(load_credentials(&path, "quay.io").unwrap().is_none());
        assert!(load_credentials(&path, "broken.example").is_err());
        assert!(!format!("{c:?}").contains("pw"));
        let missing = load_credentials(&dir.path().join("nope"), "x").unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }
}
