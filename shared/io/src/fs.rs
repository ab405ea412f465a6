//! File helpers: atomic writes and private (0600) key files, checked on load.

use anyhow::Context;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `data` to `path` atomically (temp file, fsync, rename) with mode 0600.
///
/// # Errors
/// Any IO failure, with the path in the message.
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    write_with_mode(path, data, 0o600)
}

/// Writes `data` to `path` atomically with mode 0644.
///
/// # Errors
/// Any IO failure, with the path in the message.
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    write_with_mode(path, data, 0o644)
}

fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// A key file that group or others can read (callers that otherwise degrade find it with
/// `anyhow::Error::downcast_ref` and refuse to start instead).
#[derive(Debug, thiserror::Error)]
#[error("{} has mode {mode:o}; key files must be 0600 (run: chmod 600 {})", path.display(), path.display())]
pub struct InsecureMode {
    /// The file.
    pub path: std::path::PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

/// Refuses a key file that group or others can read.
///
/// # Errors
/// If the file is missing, or [`InsecureMode`] when its mode is wider than 0600.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(InsecureMode {
            path: path.to_owned(),
            mode: mode & 0o777,
        }
        .into());
    }
    Ok(())
}
