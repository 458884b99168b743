//! The parts of an image's config JSON that running a container needs, and the Kubernetes rules
//! for combining them with a container's `command` and `args`.

use serde::{Deserialize, Serialize};

/// Process defaults from the image config (`config` object of the OCI image configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `Env`, `NAME=value` entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// `WorkingDir`, empty when unset.
    #[serde(default)]
    pub working_dir: String,
    /// `User` (`uid`, `uid:gid`, `name`, ...), empty when unset.
    #[serde(default)]
    pub user: String,
}

/// The image configuration JSON (only the fields Skiff reads).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub config: Option<RawProcessConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RawProcessConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    pub(crate) fn image_config(&self) -> ImageConfig {
        let c = self.config.clone().unwrap_or_default();
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
        }
    }
}

impl ImageConfig {
    /// Parses an image configuration JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        let file: ConfigFile = serde_json::from_slice(bytes)?;
        Ok(file.image_config())
    }

    /// The process to run, with Kubernetes semantics:
    /// - neither `command` nor `args`: the image's Entrypoint + Cmd;
    /// - `command` only: `command` (the image's Entrypoint and Cmd are ignored);
    /// - `args` only: the image's Entrypoint + `args`;
    /// - both: `command` + `args`.
    pub fn command_line(&self, command: &[String], args: &[String]) -> Vec<String> {
        let (head, tail) = match (command.is_empty(), args.is_empty()) {
            (true, true) => (&self.entrypoint, &self.cmd),
            (false, true) => return command.to_vec(),
            (true, false) => (&self.entrypoint, &args.to_vec()),
            (false, false) => return command.iter().chain(args).cloned().collect(),
        };
        head.iter().chain(tail.iter()).cloned().collect()
    }

    /// The image's `Env` overridden by `overrides` (`NAME=value`; a later entry wins, order of
    /// first appearance kept). Entries without `=` are treated as `NAME=`.
    pub fn env_with(&self, overrides: &[String]) -> Vec<String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for entry in self.env.iter().chain(overrides) {
            let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.to_string(),
                None => out.push((name.to_string(), value.to_string())),
            }
        }
        out.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubernetes_command_rules() {
        let c = ImageConfig {
            entrypoint: v(&["/entry"]),
            cmd: v(&["default", "cmd"]),
            ..Default::default()
        };
        assert_eq!(c.command_line(&[], &[]), v(&["/entry", "default", "cmd"]));
        assert_eq!(c.command_line(&v(&["/bin/x"]), &[]), v(&["/bin/x"]));
        assert_eq!(
            c.command_line(&[], &v(&["a", "b"])),
            v(&["/entry", "a", "b"])
        );
        assert_eq!(
            c.command_line(&v(&["/bin/x"]), &v(&["a"])),
            v(&["/bin/x", "a"])
        );
        let no_entry = ImageConfig {
            cmd: v(&["/bin/sh"]),
            ..Default::default()
        };
        assert_eq!(no_entry.command_line(&[], &[]), v(&["/bin/sh"]));
        assert_eq!(no_entry.command_line(&[], &v(&["ls"])), v(&["ls"]));
    }

    #[test]
    fn parses_config_json() {
        let json =
            br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/e"],"Cmd":null,
            "Env":["PATH=/bin","A=1"],"WorkingDir":"/w","User":"1000:1000"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let c = ImageConfig::from_json(json).unwrap();
        assert_eq!(c.entrypoint, v(&["/e"]));
        assert!(c.cmd.is_empty());
        assert_eq!(c.working_dir, "/w");
        assert_eq!(c.user, "1000:1000");
        assert_eq!(
            c.env_with(&v(&["A=2", "B=x=y", "C"])),
            v(&["PATH=/bin", "A=2", "B=x=y", "C="])
        );
        assert_eq!(
            ImageConfig::from_json(b"{}").unwrap(),
            ImageConfig::default()
        );
        assert!(ImageConfig::from_json(b"[").is_err());
    }
}
