//! `warden findings`: Patrol's findings through the running server, every page, as a table
//! (most severe first, the recommendation under each) or as the API's JSON.

use super::Cli;
use super::client::Api;

pub(super) async fn run(cli: &Cli, json: bool, all: bool) -> anyhow::Result<()> {
    let api = Api::new(cli)?;
    let filter = if all {
        "include_linked=true"
    } else {
        "status=active"
    };
    // Every page, so the table and the JSON hold all of them.
    let found = api
        .list_all(&format!("/api/ai/patrol/findings?{filter}"))
        .await?;
    let v = serde_json::json!({ "total": found.len(), "findings": found });
    if json {
        println!("{}", serde_json::to_string_pretty(&v["findings"])?);
    } else {
        print!("{}", findings_table(&v));
    }
    Ok(())
}

/// The findings list as a table: severity, resource, title and how often it was seen, most
/// severe first (the API's order), with the recommendation under each.
fn findings_table(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let list = v["findings"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no findings\n".into();
    }
    let s = |f: &serde_json::Value, k: &str| f[k].as_str().unwrap_or("").to_owned();
    let width = list
        .iter()
        .map(|f| s(f, "resource_id").chars().count())
        .max()
        .unwrap_or(8)
        .clamp(8, 48);
    let mut out = format!(
        "{:<9} {:<width$} {:>5}  {}\n",
        "SEVERITY", "RESOURCE", "SEEN", "TITLE"
    );
    for f in &list {
        let mut title = s(f, "title");
        let related = f["related"].as_array().map_or(0, Vec::len);
        if related > 0 {
            let _ = write!(title, " [{related} linked]");
        }
        if f["status"] != "active" {
            let _ = write!(title, " ({})", s(f, "status"));
        }
        let _ = writeln!(
            out,
            "{:<9} {:<width$} {:>4}x  {title}",
            s(f, "severity").to_uppercase(),
            s(f, "resource_id"),
            f["times_raised"].as_u64().unwrap_or(0),
        );
        let _ = writeln!(
            out,
            "{:<9} {:<width$}        -> {}",
            "",
            "",
            s(f, "recommendation")
        );
    }
    let total = v["total"].as_u64().unwrap_or(list.len() as u64);
    if total > list.len() as u64 {
        let _ = writeln!(
            out,
            "({} of {total} shown; use --json for all fields)",
            list.len()
        );
    }
    out
}
