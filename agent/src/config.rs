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
    /// Budget like "64MiB"; past it the oldest metric samples are dropped (and counted).
    pub max_size: String,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_size: "64MiB".into(),
        }
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
        let spool_max_bytes = match parse_size(&self.spool.max_size) {
            Some(b) if b >= MIN_SPOOL => b,
            Some(_) => {
                problems.push(format!(
                    "spool.max_size = {:?} must be at least 16KiB",
                    self.spool.max_size
                ));
                0
            }
            None => {
                problems.push(format!(
                    "spool.max_size = {:?} is not a size (use e.g. \"64MiB\", \"512KiB\", \"1GiB\")",
                    self.spool.max_size
                ));
                0
            }
        };
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
            spool_max_bytes,
            collectors: self.collectors,
        })
    }
}

/// Smallest spool budget: a few batches.
const MIN_SPOOL: u64 = 16 * 1024;

/// Parses `123`, `512KiB`, `64MiB`, `1GiB` (also `KB`/`MB`/`GB`, taken as binary units).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_keys_and_collects_problems() {
        assert!(toml::from_str::<RawConfig>("nope = 1").is_err());
        let raw: RawConfig =
            toml::from_str("servers = [\"x\"]\n[spool]\nmax_size = \"1\"").unwrap();
        let err = raw.validate(Path::new("a.toml")).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_size("99999999999999GiB"), None);
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
