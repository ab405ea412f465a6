//! `warden audit`: export the audit log (offline from a stopped server's store, or online
//! through the running server's API, page by page) and verify an export offline, with the
//! verifier's exit codes.

use super::client::Api;
use super::{Cli, load};
use crate::audit::{export as audit_export, keys as audit_keys};
use crate::config::{self, Overrides};
use anyhow::{Context, bail};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum AuditCmd {
    /// Write the audit log as JSONL: a header, the events in order, then the checkpoints
    /// covering them. Online (through the running server) unless --offline.
    Export {
        /// First event: a sequence number or an RFC 3339 time (default: the oldest kept).
        #[arg(long)]
        from: Option<String>,
        /// Last event: a sequence number or an RFC 3339 time (default: the head, after
        /// asking the server for a checkpoint there).
        #[arg(long)]
        to: Option<String>,
        /// Read the store of a stopped server in --data-dir directly.
        #[arg(long)]
        offline: bool,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify an export file offline. Exit 0: intact and complete up to its checkpoints;
    /// 1: tampered; 2: usage or IO error; 3: intact but unsigned events. HMAC signatures are
    /// checked only with an explicit --data-dir whose keys load (KEK available).
    Verify {
        /// The export (JSONL).
        file: PathBuf,
        /// A checkpoint received outside the file (e.g. by webhook); the file must reach it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The trusted checkpoint public key (hex); default: the --checkpoint's, else the
        /// file's own.
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// Runs an audit command; errors are usage or IO errors (exit 2).
pub(super) fn main(cli: &Cli, cmd: &AuditCmd) -> std::process::ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match rt {
        Ok(rt) => rt.block_on(audit_cmd(cli, cmd)),
        Err(e) => Err(anyhow::Error::new(e).context("starting the runtime")),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(audit_export::EXIT_USAGE)
        }
    }
}

async fn audit_cmd(cli: &Cli, cmd: &AuditCmd) -> anyhow::Result<u8> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cmd {
        AuditCmd::Export {
            from,
            to,
            offline,
            output,
        } => {
            let cfg = load(cli, Overrides::default())?;
            let from = from
                .as_deref()
                .map(|s| audit_export::Bound::parse("--from", s))
                .transpose()?;
            let to = to
                .as_deref()
                .map(|s| audit_export::Bound::parse("--to", s))
                .transpose()?;
            let out: Box<dyn std::io::Write> = match output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut progress = |done: u64, total: u64| {
                eprintln!("exported {done} of {total} events");
            };
            let done = if *offline {
                export_offline(&cfg, from, to, out, &mut progress)?
            } else {
                export_online(&Api::new(cli)?, from, to, out, &mut progress).await?
            };
            eprintln!(
                "exported {} events (seq {} to {}) and {} checkpoints{}",
                done.events,
                done.from_seq,
                done.to_seq,
                done.checkpoints,
                output
                    .as_ref()
                    .map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(audit_export::EXIT_OK)
        }
        AuditCmd::Verify {
            file,
            checkpoint,
            public_key,
        } => {
            let checkpoint = checkpoint
                .as_ref()
                .map(|p| {
                    let bytes =
                        std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                    audit_export::parse_checkpoint(&bytes)
                        .with_context(|| format!("{}", p.display()))
                })
                .transpose()?;
            if let Some(pk) = public_key
                && (pk.len() != 64 || hex::decode(pk).is_err())
            {
                bail!("--public-key must be 64 hex digits (an Ed25519 public key)");
            }
            // HMAC keys only from a data directory named on the command line: the default
            // one belongs to whatever server runs here, not necessarily the file's.
            let mut signing_note = None;
            let signing = cli.data_dir.as_ref().map(|dir| {
                let kek_file = load(cli, Overrides::default()).map_or_else(
                    |_| audit_keys::DEFAULT_KEK_FILE.into(),
                    |c| c.audit.kek_file,
                );
                audit_keys::load(dir, &kek_file, false)
            });
            if let Some(audit_keys::Signing::Unavailable(why)) = &signing {
                signing_note = Some(format!("signatures not checked: {why}"));
            }
            let trust = audit_export::Trust {
                checkpoint: checkpoint.as_ref(),
                public_key: public_key.as_deref(),
                keys: signing.as_ref().and_then(audit_keys::Signing::keys),
            };
            let verdict = audit_export::verify_path(file, &trust)?;
            println!("file: {}", file.display());
            if let Some(n) = signing_note {
                println!("note: {n}");
            }
            print!("{}", verdict.summary());
            Ok(verdict.exit_code())
        }
    }
}

/// `warden audit export --offline`: straight from the stopped server's store.
fn export_offline(
    cfg: &config::Config,
    from: Option<audit_export::Bound>,
    to: Option<audit_export::Bound>,
    out: Box<dyn std::io::Write>,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<audit_export::Exported> {
    let store = audit_export::open_store(&cfg.data_dir)?;
    let public_key = match audit_keys::load(&cfg.data_dir, &cfg.audit.kek_file, false) {
        audit_keys::Signing::Ready { keys, .. } => Some(keys.public_key()),
        audit_keys::Signing::Unavailable(why) => {
            eprintln!("warning: no public key in the export header: {why}");
            None
        }
    };
    let spec = audit_export::ExportSpec {
        org: warden_shared::DEFAULT_ORG.to_owned(),
        from,
        to,
        public_key,
        exported_at: now_rfc3339(),
    };
    Ok(audit_export::export_store(&store, spec, out, progress)?)
}

fn now_rfc3339() -> String {
    crate::clock::rfc3339_ms(crate::clock::now_ms()).unwrap_or_default()
}

/// `warden audit export` through the running server's API.
async fn export_online(
    api: &Api,
    from: Option<audit_export::Bound>,
    to: Option<audit_export::Bound>,
    out: Box<dyn std::io::Write>,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<audit_export::Exported> {
    use audit_export::Bound;
    use reqwest::Method;
    let get = async |path: String| api.call(Method::GET, &path, None).await;
    // The first or last event at a time, as the API's time filters see it.
    let first_page_seq = |query: String| async move {
        let v = api
            .call(Method::GET, &format!("/api/audit?limit=1&{query}"), None)
            .await?;
        Ok::<_, anyhow::Error>(v["items"][0]["seq"].as_u64())
    };
    // Exporting to the head: a checkpoint there first, so the export ends on one.
    let head = if to.is_none() {
        let v = api
            .call(Method::POST, "/api/audit/checkpoints", None)
            .await
            .context("asking for a checkpoint at the head (is the audit log empty?)")?;
        v["checkpoint"]["tree_size"]
            .as_u64()
            .context("the server answered without a checkpoint")?
    } else {
        let v = get("/api/audit/status".into()).await?;
        v["chains"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["org_id"] == warden_shared::DEFAULT_ORG))
            .and_then(|c| c["head_seq"].as_u64())
            .context("the audit log is empty")?
    };
    let oldest = first_page_seq("order=asc".into()).await?.unwrap_or(1);
    let from_seq = match from {
        None => oldest,
        Some(Bound::Seq(s)) => s.max(oldest),
        Some(Bound::Time(t)) => first_page_seq(format!("order=asc&since={t}"))
            .await?
            .unwrap_or(u64::MAX),
    };
    let to_seq = match to {
        None => head,
        Some(Bound::Seq(s)) => s.min(head),
        Some(Bound::Time(t)) => first_page_seq(format!("order=desc&until={t}"))
            .await?
            .unwrap_or(0),
    };
    if from_seq > to_seq {
        bail!("nothing to export: no events in that range (the log holds {oldest} to {head})");
    }
    let cp_to = if to.is_none() {
        String::new()
    } else {
        format!("&to={to_seq}")
    };
    let cps = get(format!(
        "/api/audit/checkpoints?from={}{cp_to}",
        from_seq.saturating_sub(1)
    ))
    .await?;
    let checkpoints: Vec<crate::chain::event::Checkpoint> =
        serde_json::from_value(cps["checkpoints"].clone())
            .context("the server's checkpoints did not parse")?;
    let header = audit_export::Header {
        version: audit_export::FORMAT_VERSION,
        org_id: warden_shared::DEFAULT_ORG.to_owned(),
        public_key: cps["public_key"].as_str().map(str::to_owned),
        from_seq,
        to_seq,
        exported_at: now_rfc3339(),
    };
    let mut w = audit_export::ExportWriter::new(out, &header)?;
    let total = to_seq - from_seq + 1;
    let first = format!("/api/audit?order=asc&limit=1000&after={}", from_seq - 1);
    let mut path = first.clone();
    'pages: loop {
        let page = get(path).await?;
        let events = page["items"].as_array().cloned().unwrap_or_default();
        for v in events {
            let hash = v["hash"]
                .as_str()
                .and_then(crate::chain::event::parse_hash)
                .context("an event from the server has no hash")?;
            let e: crate::chain::event::Event =
                serde_json::from_value(v).context("an event from the server did not parse")?;
            if e.seq > to_seq {
                break 'pages;
            }
            w.event(&e, &hash)?;
            if w.events().is_multiple_of(audit_export::PROGRESS_EVERY) {
                progress(w.events(), total);
            }
        }
        match page["next"].as_str() {
            Some(next) => path = format!("{first}&cursor={next}"),
            None => break,
        }
    }
    for cp in &checkpoints {
        w.checkpoint(cp)?;
    }
    let (events, checkpoints) = w.finish()?;
    Ok(audit_export::Exported {
        from_seq,
        to_seq,
        events,
        checkpoints,
    })
}
