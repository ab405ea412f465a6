//! Plain records shared by the store and the domain cores: types, serde and trivial
//! accessors only, no logic and no IO. `records` (agents, tokens, resources, samples, ingest
//! input and output), `finding` (detections and findings), `alert` (alert episodes, rule
//! severities, the trigger Patrol receives).

pub mod alert;
pub mod finding;
pub mod records;

pub use records::{
    AgentRecord, CollectorHealthRecord, IdentityConflict, IngestItem, IngestOutcome, LatestSample,
    ProvenanceRecord, ResourceRecord, TokenRecord, TokenRefusal,
};
