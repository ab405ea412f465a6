//! The audit signing key file (`<data-dir>/.audit-signing.key`) and the key-encryption key
//! (KEK) that protects it. The KEK comes from, in this order: the systemd credential
//! `audit-kek` (`$CREDENTIALS_DIRECTORY/audit-kek`), the environment variable
//! `WARDEN_AUDIT_KEK`, or a 0600 file (`audit_kek_file`, default `/etc/warden/audit-kek`).
//! The key material is generated on first start and stored AES-256-GCM encrypted under
//! HKDF-SHA256(KEK); it is never written anywhere in the clear.

use super::event::{KEY_MATERIAL_LEN, Keys};
use anyhow::{Context, bail};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use warden_io::fs as fsutil;

/// File name of the encrypted key in the data directory.
pub const KEY_FILE: &str = ".audit-signing.key";
/// Environment variable holding the KEK.
pub const KEK_ENV: &str = "WARDEN_AUDIT_KEK";
/// Name of the systemd credential holding the KEK.
pub const KEK_CREDENTIAL: &str = "audit-kek";
/// Default KEK file.
pub const DEFAULT_KEK_FILE: &str = "/etc/warden/audit-kek";
/// Shortest KEK accepted, in bytes.
const KEK_MIN: usize = 16;

/// Where the KEK came from (for logs; never the KEK itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// A systemd credential file.
    Credential(PathBuf),
    /// `WARDEN_AUDIT_KEK`.
    Env,
    /// A 0600 file.
    File(PathBuf),
}

impl std::fmt::Display for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Credential(p) => write!(f, "systemd credential {}", p.display()),
            Self::Env => write!(f, "environment variable {KEK_ENV}"),
            Self::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// Whether events can be signed, and if not, why.
#[derive(Debug)]
pub enum Signing {
    /// Keys loaded (or created) with the KEK from `source`.
    Ready {
        /// The keys.
        keys: Box<Keys>,
        /// Where the KEK came from.
        source: KekSource,
    },
    /// Signing is unavailable; events are stored unsigned.
    Unavailable(String),
}

impl Signing {
    /// The keys, if signing works.
    pub fn keys(&self) -> Option<&Keys> {
        match self {
            Self::Ready { keys, .. } => Some(keys),
            Self::Unavailable(_) => None,
        }
    }
}

/// The encrypted key file.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    alg: String,
    nonce: String,
    ciphertext: String,
}

/// Finds the KEK, trying the sources in order. `Ok(None)` when none is configured.
///
/// # Errors
/// A source that exists but cannot be used (unreadable, too short, a KEK file with a mode
/// wider than 0600).
pub fn find_kek(kek_file: &Path) -> anyhow::Result<Option<(Vec<u8>, KekSource)>> {
    let trimmed = |b: Vec<u8>| -> Vec<u8> { b.trim_ascii().to_vec() };
    let long_enough = |kek: Vec<u8>, src: KekSource| {
        if kek.len() < KEK_MIN {
            bail!("the audit KEK from {src} is shorter than {KEK_MIN} bytes");
        }
        Ok(Some((kek, src)))
    };
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(KEK_CREDENTIAL);
        if path.exists() {
            let kek = std::fs::read(&path)
                .with_context(|| format!("reading credential {}", path.display()))?;
            return long_enough(trimmed(kek), KekSource::Credential(path));
        }
    }
    if let Some(v) = std::env::var_os(KEK_ENV).filter(|v| !v.is_empty()) {
        return long_enough(trimmed(v.into_encoded_bytes()), KekSource::Env);
    }
    if kek_file.exists() {
        fsutil::check_private(kek_file)?;
        let kek =
            std::fs::read(kek_file).with_context(|| format!("reading {}", kek_file.display()))?;
        return long_enough(trimmed(kek), KekSource::File(kek_file.to_owned()));
    }
    Ok(None)
}

fn cipher(kek: &[u8]) -> LessSafeKey {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"warden-audit-kek-v1");
    let prk = salt.extract(kek);
    let okm = prk
        .expand(&[b"audit-signing-key"], &AES_256_GCM)
        .expect("hkdf output length matches AES-256");
    let mut key = [0u8; 32];
    okm.fill(&mut key).expect("32-byte key");
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte key"))
}

/// Encrypts key material under `kek` into the key file's bytes.
fn seal(kek: &[u8], material: &[u8; KEY_MATERIAL_LEN]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut buf = material.to_vec();
    cipher(kek)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(KEY_FILE),
            &mut buf,
        )
        .expect("sealing 64 bytes cannot fail");
    let file = KeyFile {
        version: 1,
        alg: "aes-256-gcm+hkdf-sha256".into(),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(buf),
    };
    let mut out = serde_json::to_vec_pretty(&file).expect("key file serializes");
    out.push(b'\n');
    out
}

/// Decrypts the key file's bytes with `kek`.
fn open(kek: &[u8], bytes: &[u8]) -> anyhow::Result<[u8; KEY_MATERIAL_LEN]> {
    let file: KeyFile = serde_json::from_slice(bytes).context("not a warden audit key file")?;
    if file.version != 1 {
        bail!("unsupported audit key file version {}", file.version);
    }
    let mut nonce = [0u8; NONCE_LEN];
    hex::decode_to_slice(&file.nonce, &mut nonce).context("bad nonce in the audit key file")?;
    let mut buf = hex::decode(&file.ciphertext).context("bad ciphertext in the audit key file")?;
    let plain = cipher(kek)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(KEY_FILE),
            &mut buf,
        )
        .map_err(|_| {
            anyhow::anyhow!(
                "the KEK does not decrypt the audit key file (wrong KEK, or the file was altered)"
            )
        })?;
    plain
        .try_into()
        .map_err(|_| anyhow::anyhow!("the audit key file holds a key of the wrong length"))
}

/// Loads the signing keys from `data_dir`, creating them when `create` is set and no key
/// file exists yet. Never overwrites an existing key file, and never fails: a problem makes
/// signing unavailable and says why.
pub fn load(data_dir: &Path, kek_file: &Path, create: bool) -> Signing {
    load_strict(data_dir, kek_file, create)
        .unwrap_or_else(|e| Signing::Unavailable(format!("{e:#}")))
}

/// [`load`] for the server's start: a key file or KEK file that group or others can read
/// is refused (the server does not start) instead of making signing unavailable.
///
/// # Errors
/// [`fsutil::InsecureMode`] for such a file.
pub fn load_strict(data_dir: &Path, kek_file: &Path, create: bool) -> anyhow::Result<Signing> {
    let path = data_dir.join(KEY_FILE);
    let attempt = || -> anyhow::Result<Signing> {
        if path.exists() {
            fsutil::check_private(&path)?;
        }
        let Some((kek, source)) = find_kek(kek_file)? else {
            return Ok(Signing::Unavailable(format!(
                "no audit key-encryption key: provide the systemd credential {KEK_CREDENTIAL}, \
                 set {KEK_ENV}, or create the 0600 file {}",
                kek_file.display()
            )));
        };
        let material = if path.exists() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            open(&kek, &bytes).with_context(|| format!("{}", path.display()))?
        } else if create {
            let material: [u8; KEY_MATERIAL_LEN] = std::array::from_fn(|_| rand::random());
            fsutil::write_private(&path, &seal(&kek, &material))?;
            tracing::info!(path = %path.display(), kek = %source, "created the audit signing key");
            material
        } else {
            bail!("{} does not exist", path.display());
        };
        let keys = Keys::from_material(&material).map_err(anyhow::Error::msg)?;
        Ok(Signing::Ready {
            keys: Box::new(keys),
            source,
        })
    };
    match attempt() {
        Err(e) if e.downcast_ref::<fsutil::InsecureMode>().is_some() => Err(e),
        Err(e) => Ok(Signing::Unavailable(format!("{e:#}"))),
        Ok(s) => Ok(s),
    }
}

/// Writes a new key file sealed with `kek` (tests and benchmarks build stores with it).
///
/// # Errors
/// IO failures.
pub fn create_with(data_dir: &Path, kek: &[u8]) -> anyhow::Result<()> {
    let material: [u8; KEY_MATERIAL_LEN] = std::array::from_fn(|_| rand::random());
    fsutil::write_private(&data_dir.join(KEY_FILE), &seal(kek, &material))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_material_opens_only_with_its_kek_and_intact_bytes() {
        let material = [7u8; KEY_MATERIAL_LEN];
        let sealed = seal(b"correct horse battery staple", &material);
        assert_eq!(
            open(b"correct horse battery staple", &sealed).unwrap(),
            material
        );
        let err = open(b"another key-encryption key", &sealed).unwrap_err();
        assert!(err.to_string().contains("wrong KEK"), "{err}");
        let mut file: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        let mut ct = file["ciphertext"].as_str().unwrap().to_owned();
        ct.replace_range(0..2, if ct.starts_with("00") { "11" } else { "00" });
        file["ciphertext"] = ct.into();
        let altered = serde_json::to_vec(&file).unwrap();
        assert!(open(b"correct horse battery staple", &altered).is_err());
        assert!(
            !String::from_utf8(sealed)
                .unwrap()
                .contains(&hex::encode(material))
        );
    }

    #[test]
    fn a_missing_kek_makes_signing_unavailable_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The env var and credential are process-wide; this test only relies on the file.
        if std::env::var_os(KEK_ENV).is_some()
            || std::env::var_os("CREDENTIALS_DIRECTORY").is_some()
        {
            return;
        }
        let kek_file = dir.path().join("kek");
        let s = load(dir.path(), &kek_file, true);
        assert!(
            matches!(&s, Signing::Unavailable(why) if why.contains("no audit key-encryption key")),
            "{s:?}"
        );
        assert!(!dir.path().join(KEY_FILE).exists());

        fsutil::write_private(&kek_file, b"0123456789abcdef0123\n").unwrap();
        let s = load(dir.path(), &kek_file, true);
        let id = s.keys().expect("created").key_id().to_owned();
        assert!(matches!(
            &s,
            Signing::Ready {
                source: KekSource::File(_),
                ..
            }
        ));
        // Loading again reads the same key; a wrong KEK never replaces the file.
        assert_eq!(
            load(dir.path(), &kek_file, false).keys().unwrap().key_id(),
            id
        );
        fsutil::write_private(&kek_file, b"another kek of enough length").unwrap();
        assert!(
            matches!(load(dir.path(), &kek_file, true), Signing::Unavailable(why) if why.contains("wrong KEK"))
        );
        fsutil::write_private(&kek_file, b"0123456789abcdef0123").unwrap();
        assert_eq!(
            load(dir.path(), &kek_file, true).keys().unwrap().key_id(),
            id
        );
    }
}
