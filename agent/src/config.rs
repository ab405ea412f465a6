//! Agent configuration: the TOML file (`/etc/warden/agent.toml`), loaded as a raw serde
//! struct and then validated into [`Config`], collecting every problem.

use crate::collectors::CollectorsConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
pub use warden_io::config::ConfigError;

/// Default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/warden/agent.toml";

/// The file as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Identity, spool and state live here.
    pub data_dir: PathBuf,
    /// Name this host reports as; default: the OS host name.
    pub hostname: Option<String>,
    /// Server addresses (`host:port`); default: those from the join token.
    pub servers: Vec<String>,
    /// The on-disk spool for telemetry while the server is unreachable.
    pub spool: SpoolConfig,
    /// What to collect.
    pub collectors: CollectorsConfig,
}

/// `[spool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Budget in MiB; past it the oldest metric samples are dropped (and counted).
    pub max_mib: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { max_mib: 64 }
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/warden-agent"),
            hostname: None,
            servers: Vec::new(),
            spool: SpoolConfig::default(),
            collectors: CollectorsConfig::default(),
        }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Reported host name.
    pub hostname: String,
    /// Server address override.
    pub servers: Vec<String>,
    /// Spool budget in bytes.
    pub spool_max_bytes: u64,
    /// Collectors.
    pub collectors: CollectorsConfig,
}

impl RawConfig {
    /// Reads `path`; when no path is given and the default file is missing, defaults.
    ///
    /// # Errors
    /// Unreadable file or TOML that does not match the schema.
    pub fn load(path: Option<&Path>) -> Result<(Self, PathBuf), ConfigError> {
        warden_io::config::load(path, DEFAULT_PATH)
    }

    /// Validates, reporting every problem at once.
    ///
    /// # Errors
    /// [`ConfigError`] listing each problem.
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let mut problems = self.collectors.validate();
        if self.spool.max_mib == 0 {
            problems.push("spool.max_mib must be at least 1".into());
        }
        for s in &self.servers {
            if s.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                problems.push(format!("servers entry {s:?} must be host:port"));
            }
        }
        let hostname = self
            .hostname
            .clone()
            .or_else(|| sysinfo::System::host_name().ok())
            .unwrap_or_default();
        if hostname.is_empty()
            || hostname.len() > 253
            || hostname.chars().any(|c| c.is_control() || c == '/')
        {
            problems.push(format!(
                "hostname {hostname:?} is empty or has characters that cannot be used"
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError {
                path: path.to_path_buf(),
                problems,
            });
        }
        Ok(Config {
            data_dir: self.data_dir,
            hostname,
            servers: self.servers,
            spool_max_bytes: self.spool.max_mib * 1024 * 1024,
            collectors: self.collectors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_keys_and_collects_problems() {
        assert!(toml::from_str::<RawConfig>("nope = 1").is_err());
        let raw: RawConfig = toml::from_str("servers = [\"x\"]\n[spool]\nmax_mib = 0").unwrap();
        let err = raw.validate(Path::new("a.toml")).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    #[test]
    fn defaults_are_valid() {
        let c = RawConfig {
            hostname: Some("h1".into()),
            ..Default::default()
        }
        .validate(Path::new("-"))
        .unwrap();
        assert_eq!(c.spool_max_bytes, 64 << 20);
    }
}
