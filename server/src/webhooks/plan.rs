//! The pure parts of webhook delivery: action filters, retry backoff with jitter, the
//! request body and the `X-Warden-Signature` header. No IO, no clock: times and jitter are
//! parameters.

use crate::chain::event::Checkpoint;
use crate::store::StoredEvent;
use ring::hmac;
use serde_json::{Value, json};
use std::time::Duration;

/// `type` of an event message (also its `X-Warden-Event` header).
pub const EVENT: &str = "audit.event";
/// `type` of a checkpoint message.
pub const CHECKPOINT: &str = "audit.checkpoint";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-warden-signature";
/// The delivery id header: `<endpoint_id>-<delivery_seq>`.
pub const DELIVERY_HEADER: &str = "x-warden-delivery";
/// The message type header.
pub const EVENT_HEADER: &str = "x-warden-event";

/// Whether an action passes an endpoint's filters: no filters, `*`, the exact action, or a
/// `prefix.*` whose prefix (with the dot) starts the action.
pub fn matches(filters: &[String], action: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            f == "*"
                || f == action
                || f.strip_suffix('*')
                    .is_some_and(|p| p.ends_with('.') && action.starts_with(p))
        })
}

/// The delay before retry number `attempt` (1 = the first retry, after the first failure):
/// `base * 2^(attempt - 1)` capped at `max`, then scaled into `[d/2, d]` by `jitter` (in
/// `[0, 1)`), so a fleet of endpoints that failed together does not retry in lockstep and no
/// delay exceeds `max`.
pub fn backoff(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1);
    let d = if exp >= 31 {
        max
    } else {
        base.saturating_mul(1u32 << exp).min(max)
    };
    d.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0).min(max)
}

/// The value of `X-Warden-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
/// "<t>.<body>")>`.
pub fn signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// A message of an endpoint's outbox, in chain order: event `seq`, then the checkpoint at
/// `seq` if there is one.
#[derive(Debug, Clone)]
pub enum Message {
    /// An audit event.
    Event(StoredEvent),
    /// A checkpoint.
    Checkpoint(Checkpoint),
}

impl Message {
    /// The order key: `(seq, 0)` for event `seq`, `(tree_size, 1)` for its checkpoint.
    pub fn key(&self) -> (u64, u8) {
        match self {
            Self::Event(e) => (e.seq, 0),
            Self::Checkpoint(c) => (c.tree_size, 1),
        }
    }

    /// [`EVENT`] or [`CHECKPOINT`].
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Event(_) => EVENT,
            Self::Checkpoint(_) => CHECKPOINT,
        }
    }

    /// The request body. An event is its API JSON plus `hash`; `None` if the stored event
    /// does not decode (reported by the caller).
    pub fn body(&self, endpoint_id: &str, delivery_seq: u64) -> Option<Value> {
        let (field, value) = match self {
            Self::Event(e) => {
                let mut v = serde_json::to_value(e.event().ok()?).ok()?;
                v["hash"] = hex::encode(e.hash()).into();
                ("event", v)
            }
            Self::Checkpoint(c) => ("checkpoint", serde_json::to_value(c).ok()?),
        };
        Some(json!({
            "type": self.kind(),
            "endpoint_id": endpoint_id,
            "delivery_seq": delivery_seq,
            field: value,
        }))
    }
}

/// Merges a range of events (ascending) and checkpoints (ascending) into chain order.
pub fn merge(events: Vec<StoredEvent>, checkpoints: Vec<Checkpoint>) -> Vec<Message> {
    let mut out: Vec<Message> = events
        .into_iter()
        .map(Message::Event)
        .chain(checkpoints.into_iter().map(Message::Checkpoint))
        .collect();
    out.sort_by_key(Message::key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn filters_match_exact_actions_and_dotted_prefixes() {
        assert!(matches(&[], "token.create"));
        assert!(matches(&f(&["*"]), "token.create"));
        assert!(matches(&f(&["token.*"]), "token.create"));
        assert!(matches(&f(&["token.*"]), "token.use.retry"));
        assert!(!matches(&f(&["token.*"]), "tokens.create"));
        assert!(!matches(&f(&["token.*"]), "token"));
        assert!(matches(&f(&["agent.revoke"]), "agent.revoke"));
        assert!(!matches(&f(&["agent.revoke"]), "agent.revoked"));
        assert!(!matches(&f(&["agent.rev*"]), "agent.revoke"));
        assert!(matches(&f(&["x.y", "webhook.*"]), "webhook.create"));
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_caps() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(300));
        for attempt in 1..=40 {
            let nominal = if attempt > 20 {
                max
            } else {
                (base * (1 << (attempt - 1))).min(max)
            };
            let lo = backoff(base, max, attempt, 0.0);
            let hi = backoff(base, max, attempt, 0.999_999);
            assert_eq!(lo, nominal / 2, "attempt {attempt}");
            assert!(
                hi <= nominal && hi > nominal.mul_f64(0.99),
                "attempt {attempt}"
            );
            for j in [0.1, 0.5, 0.9] {
                let d = backoff(base, max, attempt, j);
                assert!(
                    d >= lo && d <= hi && d <= max,
                    "attempt {attempt} jitter {j}"
                );
            }
        }
        assert_eq!(backoff(base, max, 0, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(base, max, u32::MAX, 1.0), max);
        assert_eq!(backoff(base, max, 3, 7.0), Duration::from_secs(4));
    }

    #[test]
    fn signature_header_is_hmac_over_time_dot_body() {
        // RFC 4231 test case 2 has key "Jefe"; here the message is "<t>.<body>".
        let h = signature_header(b"Jefe", 1_700_000_000, b"{}");
        let (t, v1) = h.split_once(',').unwrap();
        assert_eq!(t, "t=1700000000");
        let v1 = v1.strip_prefix("v1=").unwrap();
        assert_eq!(v1.len(), 64);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hex::decode(v1).unwrap();
        assert!(hmac::verify(&key, b"1700000000.{}", &tag).is_ok());
        assert_ne!(h, signature_header(b"Jefe", 1_700_000_001, b"{}"));
        assert_ne!(h, signature_header(b"jefe", 1_700_000_000, b"{}"));
        // Known answer from RFC 4231 case 2, to pin the algorithm.
        let known = signature_header(b"Jefe", 0, b"");
        let expected = hex::encode(hmac::sign(&key, b"0.").as_ref());
        assert_eq!(known, format!("t=0,v1={expected}"));
        let rfc = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(rfc.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn merge_puts_each_checkpoint_right_after_its_event() {
        let ev = |seq| StoredEvent {
            seq,
            prev: [0; 32],
            signature: None,
            fields_json: b"{}".to_vec(),
        };
        let cp = |tree_size| Checkpoint {
            org_id: "default".into(),
            tree_size,
            head_hash: String::new(),
            ts_ms: 0,
            public_key: None,
            signature: None,
        };
        let keys: Vec<_> = merge(vec![ev(4), ev(5), ev(6)], vec![cp(3), cp(5)])
            .iter()
            .map(Message::key)
            .collect();
        assert_eq!(keys, vec![(3, 1), (4, 0), (5, 0), (5, 1), (6, 0)]);
    }
}
