//! What a detector reports: a [`Detection`], in the vocabulary of the fixed finding contract
//! (DESIGN §1.1: severity, category, source, resource, title, description, recommendation,
//! evidence). The findings lifecycle (ids in the store, `times_raised`, dismissal) builds on it.

use crate::model::ResourceRecord;
use crate::model::finding::{Category, Detection, Severity, Source};
use sha2::{Digest, Sha256};

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
