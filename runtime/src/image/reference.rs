//! Docker-style image references, normalized the way Docker does it.
//!
//! `busybox` → `docker.io/library/busybox:latest`, `user/app` → `docker.io/user/app:latest`,
//! `host:5000/app` → `host:5000/app:latest`, `app@sha256:<64 hex>` keeps the digest (and no
//! default tag). The first path component is a registry host when it contains a `.` or a `:`,
//! or is `localhost`; otherwise the image lives on Docker Hub.

use std::fmt;

use super::ImageError;

/// The registry that references without a host name point at.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const OFFICIAL_NAMESPACE: &str = "library";

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    /// Tag, `None` when the reference is by digest only.
    pub tag: Option<String>,
    /// Digest (`sha256:<64 hex>`), when given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalizes `input`.
    pub fn parse(input: &str) -> Result<Reference, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(invalid("empty reference"));
        }
        if input.len() > 4096 {
            return Err(invalid("reference is too long"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains whitespace or control characters"));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|reason| invalid(&reason))?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };

        // A tag follows the last ':' unless that ':' is part of the host (a '/' comes after it).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|reason| invalid(&reason))?;
        }
        if name.is_empty() {
            return Err(invalid("missing repository name"));
        }

        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_host(first).map_err(|reason| invalid(&reason))?;
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
            _ => registry,
        };
        validate_path(&path).map_err(|reason| invalid(&reason))?;
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest` (tag dropped).
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }

    /// The form oci-client wants.
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
                digest.clone(),
            ),
            (_, Some(digest)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_string()),
            ),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalizes `input` to its full string form (`docker.io/library/busybox:latest`).
pub fn normalize(input: &str) -> Result<String, ImageError> {
    Ok(Reference::parse(input)?.to_string())
}

/// Checks `sha256:<64 lowercase hex>`.
pub fn validate_digest(digest: &str) -> Result<(), String> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!(
            "unsupported digest {digest:?} (only sha256:<64 hex> is supported)"
        ));
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {digest:?} is not sha256:<64 lowercase hex>"
        ));
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag {tag:?}"))
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!("invalid port in registry host {host:?}"));
    }
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid registry host {host:?}"))
    }
}

/// Repository path: `/`-separated components of lowercase alphanumerics joined by `.`, `_`, `__`
/// or runs of `-`.
fn validate_path(path: &str) -> Result<(), String> {
    if path.len() > 255 {
        return Err("repository name is longer than 255 characters".to_string());
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!("empty path component in {path:?}"));
        }
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("repository name must be lowercase".to_string());
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!(
                "path component {component:?} must start and end with a lowercase letter or digit"
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            // A separator run: ".", "_", "__", or one or more "-".
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            let valid = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
            if !valid {
                return Err(format!("invalid characters {sep:?} in repository name"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("user/app"), "docker.io/user/app:latest");
        assert_eq!(n("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            n("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(n("a/b/c:v1"), "docker.io/a/b/c:v1");
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(n("127.0.0.1:5000/busybox:t1"), "127.0.0.1:5000/busybox:t1");
        assert_eq!(n("127.0.0.1:5000/busybox"), "127.0.0.1:5000/busybox:latest");
        assert_eq!(n("localhost/x"), "localhost/x:latest");
        assert_eq!(n("localhost:5000/x:tag"), "localhost:5000/x:tag");
        assert_eq!(n("quay.io/org/app"), "quay.io/org/app:latest");
        let r = Reference::parse("127.0.0.1:5000/a/b:c").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("c"));
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{HEX}");
        assert_eq!(
            n(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            n(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        let r = Reference::parse(&format!("127.0.0.1:5000/x@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(Reference::parse("busybox@sha256:abc").is_err());
        assert!(Reference::parse(&format!("busybox@md5:{HEX}")).is_err());
        assert!(Reference::parse(&format!("busybox@sha256:{}", HEX.to_uppercase())).is_err());
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "BusyBox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-tag",
            "busybox:tag with space",
            "a//b",
            "/busybox",
            "busybox/",
            "-busybox",
            "busy..box",
            "host:99999/x",
            "bad host/x",
            "busybox:a:b",
        ] {
            match Reference::parse(bad) {
                Err(ImageError::InvalidReference { reference, .. }) => assert_eq!(reference, bad),
                other => panic!("{bad:?} should be invalid, got {other:?}"),
            }
        }
        let msg = Reference::parse("BusyBox").unwrap_err().to_string();
        assert!(msg.starts_with("invalid reference \"BusyBox\": "), "{msg}");
        assert!(msg.contains("lowercase"), "{msg}");
    }

    #[test]
    fn separators() {
        assert_eq!(
            n("a_b__c-d---e.f"),
            "docker.io/library/a_b__c-d---e.f:latest"
        );
        assert!(Reference::parse("a___b").is_err());
        assert!(Reference::parse("a-.b").is_err());
    }
}
