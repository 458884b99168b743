//! Manifests and indexes (OCI and Docker v2 schema 2), parsed leniently, and platform selection.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::ImageError;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// What registries are asked for.
pub(crate) const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A content descriptor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// An image's platform as listed in an index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `os`, e.g. `linux`.
    #[serde(default)]
    pub os: String,
    /// `architecture` (Go names: `amd64`, `arm64`, ...).
    #[serde(default)]
    pub architecture: String,
    /// `variant`, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on.
    pub fn current() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }
}

/// A manifest or an index: whichever fields are present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AnyManifest {
    #[serde(default)]
    pub schema_version: Option<i64>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

/// A single-platform manifest.
#[derive(Debug, Clone)]
pub(crate) struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

pub(crate) enum Parsed {
    Index(Vec<Descriptor>),
    Image(ImageManifest),
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, ImageError> {
    let m: AnyManifest = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::InvalidImage(format!("manifest is not valid JSON: {e}")))?;
    if let Some(v) = m.schema_version
        && v != 2
    {
        return Err(ImageError::InvalidImage(format!(
            "unsupported manifest schemaVersion {v}"
        )));
    }
    match m.media_type.as_deref() {
        None | Some(OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST) => {}
        Some(other) => {
            return Err(ImageError::InvalidImage(format!(
                "unsupported manifest media type {other}"
            )));
        }
    }
    if let Some(manifests) = m.manifests {
        return Ok(Parsed::Index(manifests));
    }
    match (m.config, m.layers) {
        (Some(config), Some(layers)) => {
            for d in std::iter::once(&config).chain(&layers) {
                super::reference::validate_digest(&d.digest).map_err(ImageError::InvalidImage)?;
            }
            Ok(Parsed::Image(ImageManifest { config, layers }))
        }
        _ => Err(ImageError::InvalidImage(
            "manifest has neither manifests nor config and layers".into(),
        )),
    }
}

/// Picks the manifest for `want` from an index: same os and architecture; a matching variant
/// wins over none, and `arm64` without a variant matches `v8`. Entries without a platform are
/// ignored (attestations and the like).
pub fn select_platform_entry<'a>(
    entries: &'a [Descriptor],
    want: &Platform,
) -> Option<&'a Descriptor> {
    let candidates = entries.iter().filter(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
    });
    let mut best: Option<(&Descriptor, u8)> = None;
    for d in candidates {
        let variant = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        let score = match (want.variant.as_deref(), variant) {
            (Some(w), Some(v)) if w == v => 3,
            (None, None) => 3,
            (None, Some("v8")) if want.architecture == "arm64" => 2,
            (_, None) => 1,
            _ => 0,
        };
        if score > 0 && best.is_none_or(|(_, s)| score > s) {
            best = Some((d, score));
        }
    }
    best.map(|(d, _)| d)
}

/// Public form of platform selection over raw index JSON: returns the chosen manifest digest.
pub fn select_platform(index_json: &[u8], want: &Platform) -> Result<String, ImageError> {
    match parse(index_json)? {
        Parsed::Index(entries) => select_platform_entry(&entries, want)
            .map(|d| d.digest.clone())
            .ok_or_else(|| no_platform(want)),
        Parsed::Image(_) => Err(ImageError::InvalidImage("not an image index".into())),
    }
}

pub(crate) fn no_platform(want: &Platform) -> ImageError {
    ImageError::InvalidImage(format!(
        "image index has no manifest for {}/{}{}",
        want.os,
        want.architecture,
        want.variant
            .as_deref()
            .map(|v| format!("/{v}"))
            .unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn index() -> Vec<u8> {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:arm", "size": 1,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:arm64", "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:unknown", "size": 1,
                 "platform": {"os": "unknown", "architecture": "unknown"}},
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:amd64", "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": DOCKER_MANIFEST, "digest": "sha256:win", "size": 1,
                 "platform": {"os": "windows", "architecture": "amd64"}},
            ]
        })
        .to_string()
        .into_bytes()
    }

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(String::from),
        }
    }

    #[test]
    fn selects_platform() {
        let idx = index();
        assert_eq!(
            select_platform(&idx, &p("linux", "amd64", None)).unwrap(),
            "sha256:amd64"
        );
        assert_eq!(
            select_platform(&idx, &p("windows", "amd64", None)).unwrap(),
            "sha256:win"
        );
        assert_eq!(
            select_platform(&idx, &p("linux", "arm64", None)).unwrap(),
            "sha256:arm64"
        );
        assert_eq!(
            select_platform(&idx, &p("linux", "arm", Some("v7"))).unwrap(),
            "sha256:arm"
        );
        let err = select_platform(&idx, &p("linux", "s390x", None)).unwrap_err();
        assert!(err.to_string().contains("linux/s390x"), "{err}");
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                select_platform(&idx, &Platform::current()).unwrap(),
                "sha256:amd64"
            );
        }
    }

    #[test]
    fn parses_manifests() {
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": A, "size": 3},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": A, "size": 5}]
        });
        match parse(m.to_string().as_bytes()).unwrap() {
            Parsed::Image(m) => assert_eq!(m.layers.len(), 1),
            Parsed::Index(_) => panic!("not an index"),
        }
        assert!(parse(br#"{"schemaVersion":1}"#).is_err());
        assert!(
            parse(br#"{"schemaVersion":2,"mediaType":"text/plain","config":{},"layers":[]}"#)
                .is_err()
        );
        assert!(parse(b"not json").is_err());
        let bad = serde_json::json!({"schemaVersion": 2, "config": {"digest": "sha256:../../x"}, "layers": []});
        assert!(parse(bad.to_string().as_bytes()).is_err());
    }
}
