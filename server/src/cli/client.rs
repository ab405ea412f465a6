//! The HTTP client of the commands that call the running server: where it is (`--server`,
//! the address it wrote to its data directory, the config), the admin token, and one call
//! with the server's error message on failure.

use super::{Cli, load};
use crate::config::Overrides;
use anyhow::{Context, bail};

/// The running server's HTTP API, called with the admin token from the data directory.
pub(super) struct Api {
    /// Base URL, without a trailing slash.
    base: String,
    /// Where `base` came from, for the error when nothing answers there.
    origin: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    /// Finds the server: `--server`, else the address it wrote to its data directory, else
    /// the config's `http_listen`.
    pub(super) fn new(cli: &Cli) -> anyhow::Result<Self> {
        let cfg = load(cli, Overrides::default())?;
        let token = read_admin_token(&cfg.data_dir)?;
        let (base, origin) = match &cli.server {
            Some(url) => (server_url(url)?, "--server".to_owned()),
            None => {
                let file = cfg.data_dir.join(crate::HTTP_ADDR_FILE);
                match std::fs::read_to_string(&file) {
                    Ok(text) => {
                        let addr = text.trim().parse().with_context(|| {
                            format!(
                                "{} does not hold an address; pass --server URL",
                                file.display()
                            )
                        })?;
                        (loopback_url(addr), file.display().to_string())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                        loopback_url(cfg.http_listen),
                        "the config's http_listen".to_owned(),
                    ),
                    Err(e) => {
                        return Err(
                            anyhow::Error::new(e).context(format!("reading {}", file.display()))
                        );
                    }
                }
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            origin,
            token,
            client,
        })
    }

    /// Every item of a list route, walking its pages.
    pub(super) async fn list_all(&self, path: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let first = format!("{path}{sep}limit=1000");
        let (mut items, mut url) = (Vec::new(), first.clone());
        loop {
            let page = self.call(reqwest::Method::GET, &url, None).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => url = format!("{first}&cursor={next}"),
                None => return Ok(items),
            }
        }
    }

    /// Calls `path`; a non-2xx answer is an error with the server's message.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the server at {} (from {}); is it running? pass --server URL",
                self.base, self.origin
            )
        })?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or("no details");
            bail!("server answered {status}: {msg}");
        }
        Ok(v)
    }
}

/// `http://addr`, with an unspecified listen address (`0.0.0.0`, `::`) taken as loopback.
fn loopback_url(mut addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// The `--server` value as a base URL: `http(s)://host:port[/prefix]`, or `host:port`.
fn server_url(s: &str) -> anyhow::Result<String> {
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    };
    match reqwest::Url::parse(&with_scheme) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(with_scheme.trim_end_matches('/').to_owned())
        }
        _ => bail!("--server {s:?} is not a server URL (e.g. http://127.0.0.1:8080)"),
    }
}

/// Reads the admin token for CLI commands.
///
/// # Errors
/// If the file is missing or unreadable.
fn read_admin_token(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join(crate::ADMIN_TOKEN_FILE);
    let t = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (has the server run with this data directory?)",
            path.display()
        )
    })?;
    Ok(t.trim().to_owned())
}
