//! `warden agent`: list and revoke enrolled agents through the running server.

use super::Cli;
use super::client::Api;
use clap::Subcommand;

#[derive(Subcommand)]
pub(super) enum AgentCmd {
    /// List agents.
    List,
    /// Revoke an agent: it is disconnected and cannot connect again.
    Revoke {
        /// Agent id, as shown by `warden agent list`.
        id: String,
    },
}

pub(super) async fn run(cli: &Cli, cmd: &AgentCmd) -> anyhow::Result<()> {
    let api = Api::new(cli)?;
    match cmd {
        AgentCmd::List => {
            let agents = api.list_all("/api/agents").await?;
            println!("{}", serde_json::to_string_pretty(&agents)?);
        }
        AgentCmd::Revoke { id } => {
            api.call(
                reqwest::Method::POST,
                &format!("/api/agents/{id}/revoke"),
                None,
            )
            .await?;
            println!("agent {id} revoked");
        }
    }
    Ok(())
}
