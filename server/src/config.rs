//! Server configuration: the TOML file (`/etc/warden/server.toml`), loaded in two phases
//! (raw serde struct, then `validate()` into typed values collecting every problem),
//! with command-line overrides applied in between.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use warden_io::config::ConfigError;
use warden_shared::proto::ProtocolVersion;

/// Default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/warden/server.toml";

/// The file as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Where the CA, the admin token and the database live.
    pub data_dir: PathBuf,
    /// HTTP API listen address.
    pub http_listen: String,
    /// QUIC listen address for agents.
    pub quic_listen: String,
    /// `host:port` values written into join tokens; default: derived from `quic_listen`.
    pub advertise: Vec<String>,
    /// Lifetime of agent client certificates, e.g. "30d".
    pub cert_ttl: String,
    /// Default lifetime of join tokens, e.g. "1h".
    pub token_ttl: String,
    /// Extra names for the server certificate (informational; agents verify `warden-server`).
    pub server_names: Vec<String>,
    /// Time between scheduled Patrol runs, `10m` to `7d`; `0` disables the schedule.
    pub patrol_interval: String,
    /// Time between alert rule evaluations, `1s` to `10m`.
    pub alert_interval: String,
    /// How long audit events are kept, at least `1h` (default `90d`).
    pub audit_retention: String,
    /// A signed audit checkpoint every this many events of a chain (default 1000) ...
    pub audit_checkpoint_every: u64,
    /// ... or after this long with new events, whichever comes first (default `60s`).
    pub audit_checkpoint_interval: String,
    /// The 0600 file holding the audit key-encryption key, used when neither the systemd
    /// credential `audit-kek` nor `WARDEN_AUDIT_KEK` is set.
    pub audit_kek_file: PathBuf,
    /// How long a webhook receiver may take to answer one delivery (default `10s`).
    pub webhook_timeout: String,
    /// First retry delay of a failed webhook delivery, doubled per attempt (default `1s`).
    pub webhook_retry_base: String,
    /// Longest retry delay (default `5m`).
    pub webhook_retry_max: String,
    /// Attempts before a delivery moves to the dead-letter list (default 20, ~1 h at the
    /// default delays).
    pub webhook_max_attempts: u32,
    /// Free space, in MiB, kept on the data directory's disk for the audit log: telemetry is
    /// refused below it. Unset: 2 % of the disk, from 8 MiB to 512 MiB; 0: no reserve.
    pub store_reserve_mb: Option<u64>,
    /// How long raw metric samples are kept (default `7d`; beyond `7d` needs the
    /// `long_term_metrics` licence feature, up to `90d`).
    pub metrics_retention_raw: String,
    /// How long per-minute aggregates are kept (default `50h`, what Patrol reads).
    pub metrics_retention_minute: String,
    /// How long per-hour aggregates are kept (default `7d`); at least as long as the others.
    pub metrics_retention_hour: String,
    /// How long a client may take to send a request's headers, and the longest a kept-alive
    /// connection may sit idle (default `10s`).
    pub http_header_timeout: String,
    /// How long a client may take to send a whole request body (default `30s`).
    pub http_body_timeout: String,
    /// `[remote_write]`: ship every stored sample to a Prometheus remote-write receiver;
    /// off when absent.
    pub remote_write: Option<RawRemoteWrite>,
}

/// The `[remote_write]` section as written (docs/operations.md, "Remote write").
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRemoteWrite {
    /// The receiver's write URL, e.g. `http://vm:8428/api/v1/write`.
    pub url: String,
    /// Bearer token sent as `Authorization: Bearer ...` ...
    pub bearer_token: Option<String>,
    /// ... or read from this file.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic-auth user name.
    pub basic_auth_user: Option<String>,
    /// Basic-auth password ...
    pub basic_auth_password: Option<String>,
    /// ... or read from this file.
    pub basic_auth_password_file: Option<PathBuf>,
    /// Samples per request at most (default 5000).
    pub batch_samples: usize,
    /// Samples kept waiting at most; past it the oldest are dropped (default 10,000,000).
    pub max_backlog_samples: u64,
    /// How long one request may take (default `30s`).
    pub timeout: String,
    /// First retry delay, doubled per failed attempt (default `500ms`).
    pub retry_base: String,
    /// Longest retry delay (default `1m`).
    pub retry_max: String,
}

impl Default for RawRemoteWrite {
    fn default() -> Self {
        Self {
            url: String::new(),
            bearer_token: None,
            bearer_token_file: None,
            basic_auth_user: None,
            basic_auth_password: None,
            basic_auth_password_file: None,
            batch_samples: 5000,
            max_backlog_samples: 10_000_000,
            timeout: "30s".into(),
            retry_base: "500ms".into(),
            retry_max: "1m".into(),
        }
    }
}

/// Secrets stay out of logs and `Debug`.
impl std::fmt::Debug for RawRemoteWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRemoteWrite")
            .field("url", &self.url)
            .field("batch_samples", &self.batch_samples)
            .field("max_backlog_samples", &self.max_backlog_samples)
            .finish_non_exhaustive()
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/warden"),
            http_listen: "127.0.0.1:8080".into(),
            quic_listen: "0.0.0.0:4433".into(),
            advertise: Vec::new(),
            cert_ttl: "30d".into(),
            token_ttl: "1h".into(),
            server_names: Vec::new(),
            patrol_interval: "6h".into(),
            alert_interval: "15s".into(),
            audit_retention: "90d".into(),
            audit_checkpoint_every: 1000,
            audit_checkpoint_interval: "60s".into(),
            audit_kek_file: crate::audit::keys::DEFAULT_KEK_FILE.into(),
            webhook_timeout: "10s".into(),
            webhook_retry_base: "1s".into(),
            webhook_retry_max: "5m".into(),
            webhook_max_attempts: 20,
            store_reserve_mb: None,
            metrics_retention_raw: "7d".into(),
            metrics_retention_minute: "50h".into(),
            metrics_retention_hour: "7d".into(),
            http_header_timeout: "10s".into(),
            http_body_timeout: "30s".into(),
            remote_write: None,
        }
    }
}

/// Command-line overrides, applied after the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--http`.
    pub http_listen: Option<String>,
    /// `--quic`.
    pub quic_listen: Option<String>,
    /// `--cert-ttl` (hidden; tests use short lifetimes).
    pub cert_ttl: Option<String>,
    /// `--protocol-minor` (hidden; compatibility tests pose as an older server).
    pub protocol_minor: Option<u16>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// QUIC listen address.
    pub quic_listen: SocketAddr,
    /// Addresses for join tokens.
    pub advertise: Vec<String>,
    /// Agent certificate lifetime.
    pub cert_ttl: Duration,
    /// Default join token lifetime.
    pub token_ttl: Duration,
    /// Extra server certificate names.
    pub server_names: Vec<String>,
    /// Highest protocol version offered to agents.
    pub protocol: ProtocolVersion,
    /// Time between scheduled Patrol runs; `None` = no schedule.
    pub patrol_interval: Option<Duration>,
    /// Time between alert rule evaluations.
    pub alert_interval: Duration,
    /// Audit log settings.
    pub audit: crate::audit::AuditConfig,
    /// Webhook delivery settings.
    pub webhooks: WebhookConfig,
    /// Free bytes kept for the audit log (`None`: automatic).
    pub store_reserve: Option<u64>,
    /// How long each tier of metric history is kept, before the licence bounds it.
    pub metrics_retention: crate::store::Retention,
    /// HTTP listener timeouts.
    pub http: HttpConfig,
    /// The Prometheus remote-write sink; `None`: off.
    pub remote_write: Option<RemoteWriteConfig>,
}

/// The Prometheus remote-write sink (`crate::remote_write`).
#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    /// The receiver's write URL.
    pub url: String,
    /// How requests authenticate, if at all.
    pub auth: Option<RemoteWriteAuth>,
    /// Samples per request at most.
    pub batch_samples: usize,
    /// Samples kept waiting at most.
    pub max_backlog_samples: u64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay (doubled per attempt, with jitter).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

/// Credentials for the remote-write receiver; `Debug` does not show them.
#[derive(Clone)]
pub enum RemoteWriteAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic auth.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for RemoteWriteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

/// Validates `[remote_write]`, pushing each problem; `None` when absent or invalid.
fn remote_write(
    raw: Option<RawRemoteWrite>,
    problems: &mut Vec<String>,
) -> Option<RemoteWriteConfig> {
    let raw = raw?;
    let before = problems.len();
    match reqwest::Url::parse(&raw.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => problems.push(format!(
            "remote_write.url = {:?} must be an http:// or https:// URL",
            raw.url
        )),
    }
    let mut secret =
        |name: &str, inline: Option<String>, file: Option<PathBuf>| match (inline, file) {
            (Some(_), Some(_)) => {
                problems.push(format!("remote_write: set {name} or {name}_file, not both"));
                None
            }
            (Some(v), None) => Some(v),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
                Ok(_) => {
                    problems.push(format!(
                        "remote_write.{name}_file {} is empty",
                        path.display()
                    ));
                    None
                }
                Err(e) => {
                    problems.push(format!("remote_write.{name}_file {}: {e}", path.display()));
                    None
                }
            },
            (None, None) => None,
        };
    let bearer = secret("bearer_token", raw.bearer_token, raw.bearer_token_file);
    let password = secret(
        "basic_auth_password",
        raw.basic_auth_password,
        raw.basic_auth_password_file,
    );
    let auth = match (bearer, raw.basic_auth_user, password) {
        (None, None, None) => None,
        (Some(t), None, None) => Some(RemoteWriteAuth::Bearer(t)),
        (None, Some(user), Some(password)) => Some(RemoteWriteAuth::Basic { user, password }),
        (None, Some(_), None) | (None, None, Some(_)) => {
            problems.push(
                "remote_write: basic auth needs basic_auth_user and basic_auth_password(_file)"
                    .into(),
            );
            None
        }
        (Some(_), _, _) => {
            problems.push("remote_write: use a bearer token or basic auth, not both".into());
            None
        }
    };
    if !(1..=100_000).contains(&raw.batch_samples) {
        problems.push(format!(
            "remote_write.batch_samples = {} must be from 1 to 100000",
            raw.batch_samples
        ));
    }
    if raw.max_backlog_samples < raw.batch_samples as u64 {
        problems.push(format!(
            "remote_write.max_backlog_samples = {} must be at least batch_samples",
            raw.max_backlog_samples
        ));
    }
    let mut dur = |name: &str, v: &str, min: Duration| match humantime::parse_duration(v) {
        Ok(d) if d >= min => Some(d),
        _ => {
            problems.push(format!(
                "remote_write.{name} = {v:?} must be a duration of at least {}",
                humantime::format_duration(min)
            ));
            None
        }
    };
    let timeout = dur("timeout", &raw.timeout, Duration::from_secs(1));
    let retry_base = dur("retry_base", &raw.retry_base, Duration::from_millis(10));
    let retry_max = dur("retry_max", &raw.retry_max, Duration::from_millis(10));
    if let (Some(b), Some(m)) = (retry_base, retry_max)
        && m < b
    {
        problems.push("remote_write.retry_max must not be shorter than retry_base".into());
    }
    if problems.len() > before {
        return None;
    }
    Some(RemoteWriteConfig {
        url: raw.url,
        auth,
        batch_samples: raw.batch_samples,
        max_backlog_samples: raw.max_backlog_samples,
        timeout: timeout?,
        retry_base: retry_base?,
        retry_max: retry_max?,
    })
}

/// HTTP listener timeouts (the connection cap follows from the open file limit).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Time to send a request's headers; also bounds an idle kept-alive connection.
    pub header_timeout: Duration,
    /// Time to send a whole request body.
    pub body_timeout: Duration,
}

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay (doubled per attempt, with jitter).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_attempts: 20,
        }
    }
}

/// Bounds and default of `alert_interval`.
const ALERT_MIN: Duration = Duration::from_secs(1);
const ALERT_MAX: Duration = Duration::from_secs(600);
const ALERT_DEFAULT: Duration = Duration::from_secs(15);

/// Parses `alert_interval`; the error is the problem to report.
fn parse_alert_interval(v: &str) -> Result<Duration, String> {
    match humantime::parse_duration(v.trim()) {
        Ok(d) if (ALERT_MIN..=ALERT_MAX).contains(&d) => Ok(d),
        _ => Err(format!("alert_interval = {v:?} must be from 1s to 10m")),
    }
}

impl RawConfig {
    /// Reads the file at `path`; a missing default path yields defaults.
    ///
    /// # Errors
    /// Unreadable file or TOML that does not match the schema.
    pub fn load(path: Option<&Path>) -> Result<(Self, PathBuf), ConfigError> {
        warden_io::config::load(path, DEFAULT_PATH)
    }

    /// Applies overrides, then validates everything, reporting all problems at once.
    ///
    /// # Errors
    /// [`ConfigError`] listing each problem.
    pub fn validate(mut self, o: &Overrides, path: &Path) -> Result<Config, ConfigError> {
        if let Some(d) = &o.data_dir {
            self.data_dir.clone_from(d);
        }
        if let Some(v) = &o.http_listen {
            self.http_listen.clone_from(v);
        }
        if let Some(v) = &o.quic_listen {
            self.quic_listen.clone_from(v);
        }
        if let Some(v) = &o.cert_ttl {
            self.cert_ttl.clone_from(v);
        }
        let mut problems = Vec::new();
        let mut addr = |name: &str, v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|_| problems.push(format!("{name} = {v:?} is not an ip:port address")))
                .ok()
        };
        let http = addr("http_listen", &self.http_listen);
        let quic = addr("quic_listen", &self.quic_listen);
        let patrol_interval = crate::patrol::settings::parse_interval(&self.patrol_interval)
            .unwrap_or_else(|e| {
                problems.push(format!("patrol_{e}"));
                None
            });
        let alert_interval = parse_alert_interval(&self.alert_interval).unwrap_or_else(|e| {
            problems.push(e);
            ALERT_DEFAULT
        });
        let mut dur = |name: &str, v: &str, min: Duration| match humantime::parse_duration(v) {
            Ok(d) if d >= min => Some(d),
            Ok(_) => {
                problems.push(format!(
                    "{name} = {v:?} must be at least {}",
                    humantime::format_duration(min)
                ));
                None
            }
            Err(e) => {
                problems.push(format!("{name} = {v:?}: {e} (use e.g. \"30d\", \"1h\")"));
                None
            }
        };
        let cert_ttl = dur("cert_ttl", &self.cert_ttl, Duration::from_secs(10));
        let token_ttl = dur("token_ttl", &self.token_ttl, Duration::from_secs(10));
        let retention = dur(
            "audit_retention",
            &self.audit_retention,
            Duration::from_secs(3600),
        );
        let cp_interval = dur(
            "audit_checkpoint_interval",
            &self.audit_checkpoint_interval,
            Duration::from_secs(1),
        );
        let wh_timeout = dur(
            "webhook_timeout",
            &self.webhook_timeout,
            Duration::from_secs(1),
        );
        let wh_base = dur(
            "webhook_retry_base",
            &self.webhook_retry_base,
            Duration::from_millis(10),
        );
        let wh_max = dur(
            "webhook_retry_max",
            &self.webhook_retry_max,
            Duration::from_millis(10),
        );
        let http_header = dur(
            "http_header_timeout",
            &self.http_header_timeout,
            Duration::from_millis(100),
        );
        let http_body = dur(
            "http_body_timeout",
            &self.http_body_timeout,
            Duration::from_millis(100),
        );
        let hour = Duration::from_secs(3600);
        let tiers = [
            ("metrics_retention_raw", &self.metrics_retention_raw),
            ("metrics_retention_minute", &self.metrics_retention_minute),
            ("metrics_retention_hour", &self.metrics_retention_hour),
        ]
        .map(|(name, v)| {
            dur(name, v, hour).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        });
        let metrics_retention = match tiers {
            [Some(raw_ms), Some(minute_ms), Some(hour_ms)] => {
                let r = crate::store::Retention {
                    raw_ms,
                    minute_ms,
                    hour_ms,
                };
                if let Err(e) = r.validate() {
                    problems.push(format!("metrics_retention_*: {e}"));
                }
                r
            }
            _ => crate::store::Retention::default(),
        };
        if !(1..=1_000_000).contains(&self.audit_checkpoint_every) {
            problems.push(format!(
                "audit_checkpoint_every = {} must be from 1 to 1000000",
                self.audit_checkpoint_every
            ));
        }
        if !(1..=1000).contains(&self.webhook_max_attempts) {
            problems.push(format!(
                "webhook_max_attempts = {} must be from 1 to 1000",
                self.webhook_max_attempts
            ));
        }
        if let (Some(b), Some(m)) = (wh_base, wh_max)
            && m < b
        {
            problems.push("webhook_retry_max must not be shorter than webhook_retry_base".into());
        }
        for a in &self.advertise {
            if a.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                problems.push(format!("advertise entry {a:?} must be host:port"));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            problems.push("data_dir must not be empty".into());
        }
        let protocol = match o.protocol_minor {
            Some(minor) if minor > ProtocolVersion::CURRENT.minor => {
                problems.push(format!(
                    "--protocol-minor {minor} is newer than this server's protocol {}",
                    ProtocolVersion::CURRENT
                ));
                ProtocolVersion::CURRENT
            }
            Some(minor) => ProtocolVersion {
                major: ProtocolVersion::CURRENT.major,
                minor,
            },
            None => ProtocolVersion::CURRENT,
        };
        let audit = retention
            .zip(cp_interval)
            .map(
                |(retention, checkpoint_interval)| crate::audit::AuditConfig {
                    retention,
                    checkpoint_every: self.audit_checkpoint_every,
                    checkpoint_interval,
                    kek_file: self.audit_kek_file.clone(),
                },
            );
        let webhooks = match (wh_timeout, wh_base, wh_max) {
            (Some(timeout), Some(retry_base), Some(retry_max)) => Some(WebhookConfig {
                timeout,
                retry_base,
                retry_max,
                max_attempts: self.webhook_max_attempts,
            }),
            _ => None,
        };
        let remote_write = remote_write(self.remote_write.take(), &mut problems);
        let http_timeouts = http_header
            .zip(http_body)
            .map(|(header_timeout, body_timeout)| HttpConfig {
                header_timeout,
                body_timeout,
            });
        match (
            http,
            quic,
            cert_ttl,
            token_ttl,
            audit,
            webhooks,
            http_timeouts,
        ) {
            (
                Some(http_listen),
                Some(quic_listen),
                Some(cert_ttl),
                Some(token_ttl),
                Some(audit),
                Some(webhooks),
                Some(http_timeouts),
            ) if problems.is_empty() => {
                let advertise = if self.advertise.is_empty() {
                    vec![default_advertise(quic_listen)]
                } else {
                    self.advertise
                };
                Ok(Config {
                    data_dir: self.data_dir,
                    http_listen,
                    quic_listen,
                    advertise,
                    cert_ttl,
                    token_ttl,
                    server_names: self.server_names,
                    patrol_interval,
                    alert_interval,
                    protocol,
                    audit,
                    webhooks,
                    store_reserve: self.store_reserve_mb.map(|mb| mb.saturating_mul(1 << 20)),
                    metrics_retention,
                    http: http_timeouts,
                    remote_write,
                })
            }
            _ => Err(ConfigError {
                path: path.to_path_buf(),
                problems,
            }),
        }
    }
}

/// What goes into tokens when the operator did not say: the listen address itself, or
/// this machine's host name when listening on all interfaces.
fn default_advertise(listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        let host = sysname().unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", listen.port())
    } else {
        listen.to_string()
    }
}

fn sysname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_problem() {
        let raw: RawConfig = toml::from_str(
            "http_listen = \"nope\"\nquic_listen = \"127.0.0.1:1\"\ncert_ttl = \"1s\"\nadvertise = [\"x\"]",
        )
        .unwrap();
        let err = raw
            .validate(&Overrides::default(), Path::new("s.toml"))
            .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(toml::from_str::<RawConfig>("bogus = 1").is_err());
    }

    #[test]
    fn defaults_and_overrides() {
        let o = Overrides {
            quic_listen: Some("127.0.0.1:9".into()),
            ..Default::default()
        };
        let c = RawConfig::default().validate(&o, Path::new("-")).unwrap();
        assert_eq!(c.advertise, vec!["127.0.0.1:9".to_owned()]);
        assert_eq!(c.cert_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(c.protocol, ProtocolVersion::CURRENT);
        let older = Overrides {
            protocol_minor: Some(1),
            ..Default::default()
        };
        let c = RawConfig::default()
            .validate(&older, Path::new("-"))
            .unwrap();
        assert_eq!(c.protocol, ProtocolVersion { major: 1, minor: 1 });
        let newer = Overrides {
            protocol_minor: Some(ProtocolVersion::CURRENT.minor + 1),
            ..Default::default()
        };
        let err = RawConfig::default()
            .validate(&newer, Path::new("-"))
            .unwrap_err();
        assert!(err.to_string().contains("--protocol-minor"), "{err}");
    }

    #[test]
    fn http_timeouts_parse_and_have_a_floor() {
        let c = RawConfig::default()
            .validate(&Overrides::default(), Path::new("-"))
            .unwrap();
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert_eq!(c.http.body_timeout, Duration::from_secs(30));
        let raw: RawConfig =
            toml::from_str("http_header_timeout = \"50ms\"\nhttp_body_timeout = \"soon\"").unwrap();
        let err = raw
            .validate(&Overrides::default(), Path::new("-"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http_header_timeout") && err.contains("http_body_timeout"),
            "{err}"
        );
    }

    #[test]
    fn alert_interval_is_bounded() {
        let check = |v: &str| {
            let raw = RawConfig {
                alert_interval: v.into(),
                ..RawConfig::default()
            };
            raw.validate(&Overrides::default(), Path::new("-"))
                .map(|c| c.alert_interval)
        };
        assert_eq!(check("15s").unwrap(), ALERT_DEFAULT);
        assert_eq!(check("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(check("10m").unwrap(), Duration::from_secs(600));
        for bad in ["0", "500ms", "11m", "often"] {
            let err = check(bad).unwrap_err().to_string();
            assert!(
                err.contains("alert_interval") && err.contains("1s to 10m"),
                "{err}"
            );
        }
    }

    #[test]
    fn patrol_interval_is_bounded_or_off() {
        let check = |v: &str| {
            let raw = RawConfig {
                patrol_interval: v.into(),
                ..RawConfig::default()
            };
            raw.validate(&Overrides::default(), Path::new("-"))
                .map(|c| c.patrol_interval)
        };
        assert_eq!(check("6h").unwrap(), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(check("10m").unwrap(), Some(Duration::from_secs(600)));
        assert_eq!(check("0").unwrap(), None);
        for bad in ["5m", "8d", "often"] {
            let err = check(bad).unwrap_err().to_string();
            assert!(
                err.contains("patrol_interval") && err.contains("10m to 7d"),
                "{err}"
            );
        }
    }

    #[test]
    fn remote_write_is_off_by_default_and_checked() {
        let c = RawConfig::default()
            .validate(&Overrides::default(), Path::new("-"))
            .unwrap();
        assert!(c.remote_write.is_none());
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let raw: RawConfig = toml::from_str(&format!(
            "[remote_write]\nurl = \"http://127.0.0.1:9090/api/v1/write\"\nbearer_token_file = \"{}\"\nbatch_samples = 100\nretry_max = \"2s\"\n",
            secret.display()
        ))
        .unwrap();
        let rw = raw
            .validate(&Overrides::default(), Path::new("-"))
            .unwrap()
            .remote_write
            .unwrap();
        assert!(matches!(&rw.auth, Some(RemoteWriteAuth::Bearer(t)) if t == "s3cret"));
        assert!(!format!("{rw:?}").contains("s3cret"));
        assert_eq!(
            (rw.batch_samples, rw.max_backlog_samples, rw.retry_max),
            (100, 10_000_000, Duration::from_secs(2))
        );
        let raw: RawConfig = toml::from_str(
            "[remote_write]\nurl = \"ftp://x\"\nbearer_token = \"a\"\nbasic_auth_user = \"u\"\nbatch_samples = 0\nmax_backlog_samples = 0\nretry_base = \"soon\"\n",
        )
        .unwrap();
        let err = raw
            .validate(&Overrides::default(), Path::new("-"))
            .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        assert!(
            toml::from_str::<RawConfig>("[remote_write]\nurl = \"http://x\"\nbogus = 1").is_err()
        );
    }
}
