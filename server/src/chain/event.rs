//! Audit events and checkpoints: their fields, the canonical bytes that are hashed, and the
//! signing keys (HMAC-SHA256 for events, Ed25519 for checkpoints). Pure: no IO, no clock.
//!
//! # Hashing (the format external verifiers implement)
//!
//! `hash = SHA-256("warden-audit-v1\n" || seq as u64 big-endian || prev_hash (32 bytes) ||
//! fields)`, where `fields` is the compact JSON of [`Fields`] with its members in declaration
//! order (`id, ts_ms, org_id, actor, action, target, outcome, source_ip, key_id, details`)
//! and object keys inside `details` sorted. `prev_hash` is the previous event's hash in the
//! org's chain, or 32 zero bytes for sequence number 1. `signature = HMAC-SHA256(key, hash)`.
//!
//! A checkpoint signs `"warden-audit-checkpoint-v1\n{org}\n{tree_size}\n{head_hash hex}\n
//! {ts_ms}"` with Ed25519; `head_hash` is the hash of event `tree_size`.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use ring::{hkdf, hmac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain prefix of an event hash.
const EVENT_DOMAIN: &[u8] = b"warden-audit-v1\n";
/// Domain prefix of a checkpoint signature.
const CHECKPOINT_DOMAIN: &str = "warden-audit-checkpoint-v1";

/// A 32-byte SHA-256 value.
pub type Hash = [u8; 32];

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A signed-in person.
    User,
    /// An API token (the admin token is `token:admin`).
    Token,
    /// An enrolled agent.
    Agent,
    /// The server itself (scheduled work, retention).
    System,
    /// Someone not authenticated (a failed login, an enrollment with a bad token).
    Anonymous,
}

/// Who acted: kind plus an id (token id, agent id, user name; `-` when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Kind of actor.
    pub kind: ActorKind,
    /// Its id within the kind.
    pub id: String,
}

impl Actor {
    /// The admin API token.
    pub fn admin() -> Self {
        Self {
            kind: ActorKind::Token,
            id: "admin".into(),
        }
    }
    /// The server itself; `what` names the task (`retention`, `checkpoint`).
    pub fn system(what: &str) -> Self {
        Self {
            kind: ActorKind::System,
            id: what.into(),
        }
    }
    /// An agent by id.
    pub fn agent(id: &str) -> Self {
        Self {
            kind: ActorKind::Agent,
            id: id.into(),
        }
    }
    /// Someone unauthenticated.
    pub fn anonymous() -> Self {
        Self {
            kind: ActorKind::Anonymous,
            id: "-".into(),
        }
    }
    /// `kind:id`, the form the `actor` filter matches.
    pub fn label(&self) -> String {
        let kind = serde_json::to_value(&self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("{kind}:{}", self.id)
    }
}

/// Whether the act succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    /// It worked.
    Success,
    /// It was refused or failed; `reason` says why (never a secret).
    Failure {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// `success` or `failure`, the form the `outcome` filter matches.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure { .. } => "failure",
        }
    }
}

/// What a caller records: everything but the chain position, time and key, which the
/// auditor assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Organisation whose chain it joins.
    pub org_id: String,
    /// Who acted.
    pub actor: Actor,
    /// Dotted action name, e.g. `token.create`, `patrol.settings.update`.
    pub action: String,
    /// What was acted on (a token id, agent id, finding id, `patrol-settings`).
    pub target: String,
    /// Result.
    pub outcome: Outcome,
    /// Client address, when known.
    pub source_ip: Option<String>,
    /// Further facts (never secrets).
    pub details: serde_json::Value,
}

impl NewEvent {
    /// A successful act in the default organisation with empty details.
    pub fn new(actor: Actor, action: &str, target: impl Into<String>) -> Self {
        Self {
            org_id: warden_shared::DEFAULT_ORG.to_owned(),
            actor,
            action: action.to_owned(),
            target: target.into(),
            outcome: Outcome::Success,
            source_ip: None,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
    /// Sets the details.
    #[must_use]
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
    /// Marks the act failed with `reason`.
    #[must_use]
    pub fn failed(mut self, reason: impl Into<String>) -> Self {
        self.outcome = Outcome::Failure {
            reason: reason.into(),
        };
        self
    }
    /// Sets the client address.
    #[must_use]
    pub fn from_ip(mut self, ip: Option<std::net::IpAddr>) -> Self {
        self.source_ip = ip.map(|ip| ip.to_string());
        self
    }
}

/// The hashed fields of an event besides `seq` and `prev_hash`, in canonical order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fields {
    /// `{org}-{seq}`: unique across orgs, and names the chain position.
    pub id: String,
    /// Milliseconds since the epoch; never decreases along a chain.
    pub ts_ms: i64,
    /// Organisation.
    pub org_id: String,
    /// Who acted.
    pub actor: Actor,
    /// What they did.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Result.
    pub outcome: Outcome,
    /// Client address.
    pub source_ip: Option<String>,
    /// First 8 bytes of SHA-256 of the HMAC key, hex; `None` when unsigned.
    pub key_id: Option<String>,
    /// Further facts.
    pub details: serde_json::Value,
}

/// An event as stored and exported: position, fields, hash link and signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the org's chain, from 1, without gaps.
    pub seq: u64,
    /// Hash of event `seq - 1` (zeros for 1), hex.
    pub prev_hash: String,
    /// The hashed fields.
    #[serde(flatten)]
    pub fields: Fields,
    /// HMAC-SHA256 of the hash, hex; `None` when signing was unavailable.
    pub signature: Option<String>,
}

impl Event {
    /// The canonical JSON of the fields (what is hashed).
    ///
    /// # Panics
    /// Never: the fields are plain data that always serialize.
    pub fn fields_json(fields: &Fields) -> Vec<u8> {
        serde_json::to_vec(fields).expect("audit fields serialize")
    }

    /// The event hash over already-canonical field bytes.
    pub fn hash_parts(seq: u64, prev: &Hash, fields_json: &[u8]) -> Hash {
        let mut h = Sha256::new();
        h.update(EVENT_DOMAIN);
        h.update(seq.to_be_bytes());
        h.update(prev);
        h.update(fields_json);
        h.finalize().into()
    }

    /// This event's hash, recomputed from its fields. `None` if `prev_hash` is not 64 hex
    /// digits.
    pub fn hash(&self) -> Option<Hash> {
        let prev = parse_hash(&self.prev_hash)?;
        Some(Self::hash_parts(
            self.seq,
            &prev,
            &Self::fields_json(&self.fields),
        ))
    }
}

/// Parses 64 hex digits.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A signed statement "the org's chain had `tree_size` events and its head hash was
/// `head_hash`". Handed to outside parties (webhooks, exports) so truncation is detectable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Organisation.
    pub org_id: String,
    /// Number of events covered (the seq of the head event).
    pub tree_size: u64,
    /// Hash of event `tree_size`, hex.
    pub head_hash: String,
    /// When it was made.
    pub ts_ms: i64,
    /// Ed25519 public key, hex; `None` when unsigned.
    pub public_key: Option<String>,
    /// Ed25519 signature, hex; `None` when unsigned.
    pub signature: Option<String>,
}

impl Checkpoint {
    /// The signed message.
    pub fn message(&self) -> String {
        format!(
            "{CHECKPOINT_DOMAIN}\n{}\n{}\n{}\n{}",
            self.org_id, self.tree_size, self.head_hash, self.ts_ms
        )
    }

    /// Whether the signature is valid for `public_key` (hex). `None` if unsigned.
    pub fn verify_with(&self, public_key: &str) -> Option<bool> {
        let sig = hex::decode(self.signature.as_deref()?).ok();
        let pk = hex::decode(public_key).ok();
        let (Some(sig), Some(pk)) = (sig, pk) else {
            return Some(false);
        };
        Some(
            signature::UnparsedPublicKey::new(&signature::ED25519, pk)
                .verify(self.message().as_bytes(), &sig)
                .is_ok(),
        )
    }

    /// Whether the signature is valid for the key it names. `None` if unsigned.
    pub fn verify_self(&self) -> Option<bool> {
        self.verify_with(self.public_key.as_deref()?)
    }
}

/// The audit signing keys: HMAC for events, Ed25519 for checkpoints, and an AES-256-GCM
/// key (derived from the same material) that seals other secrets at rest, such as webhook
/// secrets.
pub struct Keys {
    hmac: hmac::Key,
    key_id: String,
    ed: Ed25519KeyPair,
    sealing: LessSafeKey,
}

/// Prefix of a secret sealed with [`Keys::seal_secret`].
const SEALED_PREFIX: &str = "sealed1:";

/// A stored secret in the clear: sealed ones are opened with `keys`, others (stored while
/// signing was unavailable) are returned as they are.
///
/// # Errors
/// A sealed secret without keys, or one the keys cannot open.
pub fn open_stored_secret(keys: Option<&Keys>, stored: &str) -> Result<String, &'static str> {
    let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
        return Ok(stored.to_owned());
    };
    let keys = keys.ok_or("the secret is sealed and the audit keys are unavailable (no KEK)")?;
    let mut buf = hex::decode(sealed).map_err(|_| "the sealed secret is damaged")?;
    if buf.len() < NONCE_LEN {
        return Err("the sealed secret is damaged");
    }
    let (nonce, ct) = buf.split_at_mut(NONCE_LEN);
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| "the sealed secret is damaged")?;
    let plain = keys
        .sealing
        .open_in_place(nonce, Aad::empty(), ct)
        .map_err(|_| "the sealed secret does not open with these audit keys")?;
    String::from_utf8(plain.to_vec()).map_err(|_| "the sealed secret is damaged")
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Length of the key material: 32 bytes HMAC key, 32 bytes Ed25519 seed.
pub const KEY_MATERIAL_LEN: usize = 64;

impl Keys {
    /// Builds the keys from 64 bytes of material.
    ///
    /// # Errors
    /// If the Ed25519 seed is rejected (it never is for 32 bytes).
    pub fn from_material(material: &[u8; KEY_MATERIAL_LEN]) -> Result<Self, String> {
        let (mac, seed) = material.split_at(32);
        let ed = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| e.to_string())?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"warden-sealed-secrets-v1").extract(material);
        let okm = prk
            .expand(&[b"aes-256-gcm"], &AES_256_GCM)
            .map_err(|_| "hkdf output length".to_owned())?;
        Ok(Self {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, mac),
            key_id: hex::encode(&Sha256::digest(mac)[..8]),
            ed,
            sealing: LessSafeKey::new(UnboundKey::from(okm)),
        })
    }

    /// Id of the HMAC key, stored in every event it signs.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// HMAC of an event hash, hex.
    pub fn sign_event(&self, hash: &Hash) -> String {
        hex::encode(hmac::sign(&self.hmac, hash).as_ref())
    }

    /// Whether `signature` (hex) is this key's HMAC of `hash`.
    pub fn verify_event(&self, hash: &Hash, signature: &str) -> bool {
        let mut sig = [0u8; 32];
        hex::decode_to_slice(signature, &mut sig).is_ok()
            && hmac::verify(&self.hmac, hash, &sig).is_ok()
    }

    /// Ed25519 public key, hex.
    pub fn public_key(&self) -> String {
        hex::encode(self.ed.public_key().as_ref())
    }

    /// Seals a secret for storage (AES-256-GCM, random nonce); [`open_stored_secret`] opens
    /// it.
    pub fn seal_secret(&self, plain: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut buf = plain.as_bytes().to_vec();
        self.sealing
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .expect("sealing a short secret cannot fail");
        format!("{SEALED_PREFIX}{}{}", hex::encode(nonce), hex::encode(buf))
    }

    /// Signs a checkpoint in place (sets `public_key` and `signature`).
    pub fn sign_checkpoint(&self, cp: &mut Checkpoint) {
        cp.public_key = Some(self.public_key());
        cp.signature = Some(hex::encode(self.ed.sign(cp.message().as_bytes()).as_ref()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> Keys {
        Keys::from_material(&[b; KEY_MATERIAL_LEN]).unwrap()
    }

    fn event() -> Event {
        Event {
            seq: 1,
            prev_hash: hex::encode([0u8; 32]),
            fields: Fields {
                id: "default-1".into(),
                ts_ms: 1_700_000_000_000,
                org_id: "default".into(),
                actor: Actor::admin(),
                action: "token.create".into(),
                target: "tok1".into(),
                outcome: Outcome::Success,
                source_ip: Some("127.0.0.1".into()),
                key_id: None,
                details: serde_json::json!({ "z": 1, "a": [1.5, "x"] }),
            },
            signature: None,
        }
    }

    #[test]
    fn hash_survives_a_json_round_trip_and_covers_every_field() {
        let e = event();
        let h = e.hash().unwrap();
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back.hash().unwrap(), h);
        let mut edited = e.clone();
        edited.fields.target = "tok2".into();
        assert_ne!(edited.hash().unwrap(), h);
        let mut moved = e.clone();
        moved.seq = 2;
        assert_ne!(moved.hash().unwrap(), h);
        let mut relinked = e;
        relinked.prev_hash = hex::encode([1u8; 32]);
        assert_ne!(relinked.hash().unwrap(), h);
    }

    #[test]
    fn canonical_json_has_a_fixed_shape() {
        let json = String::from_utf8(Event::fields_json(&event().fields)).unwrap();
        assert!(json.starts_with(r#"{"id":"default-1","ts_ms":1700000000000,"org_id":"default","actor":{"kind":"token","id":"admin"},"action":"token.create""#), "{json}");
        assert!(
            json.ends_with(r#""key_id":null,"details":{"a":[1.5,"x"],"z":1}}"#),
            "{json}"
        );
    }

    #[test]
    fn sealed_secrets_open_only_with_their_keys_and_plain_ones_pass_through() {
        let (a, b) = (keys(1), keys(2));
        let sealed = a.seal_secret("whsec_0123456789abcdef");
        assert!(!sealed.contains("0123456789abcdef"), "{sealed}");
        assert_ne!(
            sealed,
            a.seal_secret("whsec_0123456789abcdef"),
            "random nonce"
        );
        assert_eq!(
            open_stored_secret(Some(&a), &sealed).unwrap(),
            "whsec_0123456789abcdef"
        );
        assert!(open_stored_secret(Some(&b), &sealed).is_err());
        assert!(
            open_stored_secret(None, &sealed)
                .unwrap_err()
                .contains("no KEK")
        );
        assert_eq!(
            open_stored_secret(None, "plain-secret").unwrap(),
            "plain-secret"
        );
        let mut damaged = sealed.clone();
        damaged.push('0');
        assert!(open_stored_secret(Some(&a), &damaged).is_err());
    }

    #[test]
    fn hmac_and_checkpoint_signatures_verify_only_with_their_key() {
        let (a, b) = (keys(1), keys(2));
        let h = event().hash().unwrap();
        let sig = a.sign_event(&h);
        assert!(a.verify_event(&h, &sig));
        assert!(!b.verify_event(&h, &sig));
        assert!(!a.verify_event(&[9; 32], &sig));
        assert!(!a.verify_event(&h, "zz"));
        assert_ne!(a.key_id(), b.key_id());

        let mut cp = Checkpoint {
            org_id: "default".into(),
            tree_size: 10,
            head_hash: hex::encode(h),
            ts_ms: 5,
            public_key: None,
            signature: None,
        };
        assert_eq!(cp.verify_self(), None);
        a.sign_checkpoint(&mut cp);
        assert_eq!(cp.verify_self(), Some(true));
        assert_eq!(cp.verify_with(&b.public_key()), Some(false));
        cp.tree_size = 9;
        assert_eq!(cp.verify_self(), Some(false));
    }
}
