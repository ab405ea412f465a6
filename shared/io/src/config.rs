//! Loading TOML config files: a missing *default* path means built-in defaults, a missing
//! explicit path is an error, and every problem is reported with the file's path.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Everything wrong with a config file, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{}:\n  - {}", path.display(), problems.join("\n  - "))]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// One line per problem.
    pub problems: Vec<String>,
}

/// Reads `path`, or `default_path` when none was given (missing → `T::default()`).
/// Returns the config and the path it came from.
///
/// # Errors
/// An unreadable file or TOML that does not match the schema.
pub fn load<T: DeserializeOwned + Default>(
    path: Option<&Path>,
    default_path: &str,
) -> Result<(T, PathBuf), ConfigError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(default_path), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((T::default(), path));
        }
        Err(e) => {
            return Err(ConfigError {
                path,
                problems: vec![format!("cannot read: {e}")],
            });
        }
    };
    match toml::from_str(&text) {
        Ok(v) => Ok((v, path)),
        Err(e) => Err(ConfigError {
            path,
            problems: vec![e.to_string()],
        }),
    }
}

/// Checks that each entry looks like `host:port`, adding a problem per bad one.
pub fn check_host_ports(key: &str, entries: &[String], problems: &mut Vec<String>) {
    for e in entries {
        if e.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            problems.push(format!("{key} entry {e:?} must be host:port"));
        }
    }
}
