//! What a detector reports: a [`Detection`], in the vocabulary of the fixed finding contract
//! (DESIGN §1.1: severity, category, source, resource, title, description, recommendation,
//! evidence). The findings lifecycle (ids in the store, `times_raised`, dismissal) builds on it.

use crate::store::ResourceRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How bad it is. Ordered: `Info < Watch < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Trending the wrong way.
    Watch,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

/// What area a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Saturation and slowness.
    Performance,
    /// Running out of space.
    Capacity,
    /// Things failing or about to.
    Reliability,
    /// Backups missing or failing.
    Backup,
    /// Certificates, exposure.
    Security,
    /// Anything else.
    General,
}

/// Which kind of reasoning produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A threshold rule.
    Heuristic,
    /// A capacity forecast.
    Forecast,
    /// An anomaly score against a baseline.
    Anomaly,
    /// Several findings sharing a root cause.
    Correlation,
    /// Enriched by an AI provider.
    AiAnalysis,
}

/// One problem a detector found on one resource, with its evidence and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Stable issue key within the resource and category, e.g. `storage-usage`.
    pub key: String,
    /// How bad.
    pub severity: Severity,
    /// Which area.
    pub category: Category,
    /// Which reasoning.
    pub source: Source,
    /// `<type>:<name>`.
    pub resource_id: String,
    /// Human name of the resource.
    pub resource_name: String,
    /// The id's type.
    pub resource_type: String,
    /// The node the resource lives on, when known.
    pub node: Option<String>,
    /// One line.
    pub title: String,
    /// What is going on.
    pub description: String,
    /// What to do about it.
    pub recommendation: String,
    /// The concrete numbers behind it.
    pub evidence: String,
    /// For capacity forecasts: the fit behind the finding.
    pub capacity_forecast: Option<CapacityForecast>,
    /// The alert whose firing raised it, if a run triggered by an alert found it.
    #[serde(default)]
    pub alert_id: Option<String>,
    /// The root-cause finding this one is linked under (its id), if correlation found one.
    #[serde(default)]
    pub root_id: Option<String>,
    /// For a root-cause finding: the ids of the findings linked under it.
    #[serde(default)]
    pub related: Vec<String>,
}

/// The contract's `capacity_forecast` object (DESIGN §1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityForecast {
    /// The metric forecast, e.g. `storage_used_pct`.
    pub metric: String,
    /// Fitted level now, percent.
    pub current_pct: f64,
    /// Growth, percentage points per day.
    pub daily_change_pct: f64,
    /// Days until 100 %.
    pub days_to_full: f64,
}

impl Detection {
    /// A detection about `r`, with the resource fields filled in.
    pub fn on(r: &ResourceRecord, key: &str, severity: Severity, category: Category) -> Self {
        Self {
            key: key.to_owned(),
            severity,
            category,
            source: Source::Heuristic,
            resource_id: r.id.clone(),
            resource_name: r.name.clone(),
            resource_type: r.kind.clone(),
            node: r.node(),
            title: String::new(),
            description: String::new(),
            recommendation: String::new(),
            evidence: String::new(),
            capacity_forecast: None,
            alert_id: None,
            root_id: None,
            related: Vec::new(),
        }
    }

    /// The stable finding id for (resource, category, key): the same problem found again
    /// gets the same id.
    pub fn finding_id(&self) -> String {
        let category = serde_json::to_value(self.category).unwrap_or_default();
        let digest = Sha256::digest(
            format!(
                "{}\n{}\n{}",
                self.resource_id,
                category.as_str().unwrap_or(""),
                self.key
            )
            .as_bytes(),
        );
        hex::encode(&digest[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_words_and_stable_ids() {
        assert_eq!(serde_json::to_value(Severity::Watch).unwrap(), "watch");
        assert_eq!(serde_json::to_value(Category::Backup).unwrap(), "backup");
        assert_eq!(
            serde_json::to_value(Source::AiAnalysis).unwrap(),
            "ai-analysis"
        );
        assert!(Severity::Critical > Severity::Warning && Severity::Watch > Severity::Info);
        let r = ResourceRecord {
            id: "storage:pve2/local-zfs".into(),
            kind: "storage".into(),
            name: "local-zfs".into(),
            parent: Some("node:pve2".into()),
            ..ResourceRecord::default()
        };
        let a = Detection::on(&r, "storage-usage", Severity::Warning, Category::Capacity);
        let mut b = a.clone();
        b.severity = Severity::Critical;
        b.evidence = "91 %".into();
        assert_eq!(
            a.finding_id(),
            b.finding_id(),
            "severity and text do not change the id"
        );
        assert_eq!(a.finding_id().len(), 16);
        assert_eq!(a.node.as_deref(), Some("pve2"));
        b.key = "storage-forecast".into();
        assert_ne!(a.finding_id(), b.finding_id());
    }
}
