//! `warden token`: create, list and revoke join tokens through the running server.

use super::Cli;
use super::client::Api;
use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub(super) enum TokenCmd {
    /// Create a one-time join token (the server must be running).
    Create {
        /// Token lifetime, e.g. 30m, 1h, 2d.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List join tokens (ids and state; secrets are never stored).
    List,
    /// Revoke an unused join token.
    Revoke {
        /// Token id, as shown by `warden token list`.
        id: String,
    },
}

pub(super) async fn run(cli: &Cli, cmd: &TokenCmd) -> anyhow::Result<()> {
    let api = Api::new(cli)?;
    match cmd {
        TokenCmd::Create { ttl } => {
            let body = match ttl {
                Some(t) => serde_json::json!({ "ttl": t }),
                None => serde_json::json!({}),
            };
            let v = api
                .call(reqwest::Method::POST, "/api/tokens", Some(body))
                .await?;
            let token = v["token"]
                .as_str()
                .context("server answered without a token")?;
            println!("{token}");
            eprintln!(
                "one-time join token, expires {}. On the new host run:\n  warden-agent enroll --token {token}",
                v["expires_at"].as_str().unwrap_or("?")
            );
        }
        TokenCmd::List => {
            let tokens = api.list_all("/api/tokens").await?;
            let s = |t: &serde_json::Value, k: &str| t[k].as_str().unwrap_or("-").to_owned();
            println!("{:<18} {:<8} {:<26} USED BY", "ID", "STATE", "EXPIRES");
            for t in &tokens {
                println!(
                    "{:<18} {:<8} {:<26} {}",
                    s(t, "id"),
                    s(t, "state"),
                    s(t, "expires_at"),
                    s(t, "used_by")
                );
            }
        }
        TokenCmd::Revoke { id } => {
            api.call(reqwest::Method::DELETE, &format!("/api/tokens/{id}"), None)
                .await?;
            println!("join token {id} revoked");
        }
    }
    Ok(())
}
