//! Chain verification, shared by the store (`GET /api/audit/verify`), the API's per-event
//! badges and the offline verifier (`warden audit verify`). Pure: callers turn events into
//! [`Link`]s (hashing, checking signatures, in parallel if they like), then [`check`] walks
//! them in order and names the first broken sequence number and why.

use super::event::{Checkpoint, Event, Hash, Keys, parse_hash};
use serde::Serialize;

/// What verification found out about one event's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sig {
    /// Signed, and the signature matches with the verifier's key.
    Valid,
    /// Signed, but the signature does not match this content.
    Invalid,
    /// Signed by another key than the verifier's (the key was replaced).
    OtherKey,
    /// Stored without a signature (signing was unavailable).
    Unsigned,
    /// Signed, but no key was available to check it.
    NotChecked,
}

/// One event reduced to what the chain walk needs.
#[derive(Debug, Clone)]
pub struct Link {
    /// The sequence number at this position (the store key, or the file's `seq`).
    pub seq: u64,
    /// The sequence number the event's own `id` names (`{org}-{seq}`), if readable.
    pub id_seq: Option<u64>,
    /// The previous hash the event records.
    pub prev: Hash,
    /// Its hash, recomputed from its content.
    pub hash: Hash,
    /// The hash the file claims for it, if any (exports carry one).
    pub claimed: Option<Hash>,
    /// Its signature.
    pub sig: Sig,
}

impl Link {
    /// Builds the link of a parsed event; `claimed` is the `hash` its line carried.
    /// `None` if `prev_hash` is malformed (treated as an edit by callers).
    pub fn of(event: &Event, claimed: Option<&str>, keys: Option<&Keys>) -> Option<Self> {
        let hash = event.hash()?;
        Some(Self {
            seq: event.seq,
            id_seq: id_seq(&event.fields.id),
            prev: parse_hash(&event.prev_hash)?,
            hash,
            claimed: claimed.and_then(parse_hash),
            sig: sig_state(
                keys,
                &hash,
                event.signature.as_deref(),
                event.fields.key_id.as_deref(),
            ),
        })
    }
}

/// The signature state of an event with `hash`.
pub fn sig_state(
    keys: Option<&Keys>,
    hash: &Hash,
    signature: Option<&str>,
    key_id: Option<&str>,
) -> Sig {
    match (signature, keys) {
        (None, _) => Sig::Unsigned,
        (Some(_), None) => Sig::NotChecked,
        (Some(sig), Some(k)) if k.verify_event(hash, sig) => Sig::Valid,
        (Some(_), Some(k)) if key_id.is_some_and(|id| id != k.key_id()) => Sig::OtherKey,
        (Some(_), Some(_)) => Sig::Invalid,
    }
}

/// The sequence number in an event id `{org}-{seq}`.
pub fn id_seq(id: &str) -> Option<u64> {
    id.rsplit_once('-')?.1.parse().ok()
}

/// Why verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The event's content changed after it was written.
    Edited,
    /// The event is gone; later ones follow it.
    Missing,
    /// The event is not where its sequence number says.
    Reordered,
    /// The log ends before a checkpoint says it should.
    Truncated,
    /// The event (or checkpoint) was signed with a key other than the verifier's.
    KeyReplaced,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// First bad sequence number.
    pub seq: u64,
    /// Why.
    pub reason: Reason,
    /// A sentence for people.
    pub detail: String,
}

/// Overall state, as shown on badges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Chain intact and every signature checked and valid.
    Verified,
    /// Chain intact, but signatures could not be checked (no key here).
    ChainOnly,
    /// Chain intact, but some events carry no signature: never reported as verified.
    Unsigned,
    /// Something is wrong; see the problem.
    Failed,
}

/// The result of checking a run of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Overall state.
    pub state: State,
    /// Events checked.
    pub checked: u64,
    /// First and last sequence number seen.
    pub first_seq: Option<u64>,
    /// Last sequence number seen.
    pub last_seq: Option<u64>,
    /// Events without a signature.
    pub unsigned: u64,
    /// Highest tree size of a valid checkpoint that matched the chain.
    pub checkpoint: Option<u64>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

/// What the walk may rely on besides the events.
#[derive(Debug, Default)]
pub struct Anchors<'a> {
    /// Hash of the event before the first one, when known (from the store, or a bridge
    /// checkpoint after pruning); without it the first event's link is not checked.
    pub prev: Option<Hash>,
    /// Checkpoints to hold the events against.
    pub checkpoints: &'a [Checkpoint],
    /// The public key checkpoints must be signed with (hex); `None`: the key each names.
    pub public_key: Option<&'a str>,
}

/// Walks `links` in order and reports the first problem.
pub fn check(links: &[Link], anchors: &Anchors<'_>) -> Report {
    let problem = first_problem(links, anchors);
    let unsigned = links.iter().filter(|l| l.sig == Sig::Unsigned).count() as u64;
    let last = links.last().map(|l| l.seq);
    let checkpoint = if problem.is_some() {
        None
    } else {
        anchors
            .checkpoints
            .iter()
            .filter(|cp| last.is_some_and(|l| cp.tree_size <= l))
            .map(|cp| cp.tree_size)
            .max()
    };
    let state = if problem.is_some() {
        State::Failed
    } else if unsigned > 0 {
        State::Unsigned
    } else if links.iter().any(|l| l.sig == Sig::NotChecked) {
        State::ChainOnly
    } else {
        State::Verified
    };
    Report {
        state,
        checked: links.len() as u64,
        first_seq: links.first().map(|l| l.seq),
        last_seq: last,
        unsigned,
        checkpoint,
        problem,
    }
}

fn problem(seq: u64, reason: Reason, detail: impl Into<String>) -> Option<Problem> {
    Some(Problem {
        seq,
        reason,
        detail: detail.into(),
    })
}

fn first_problem(links: &[Link], anchors: &Anchors<'_>) -> Option<Problem> {
    // A checkpoint with a bad or foreign signature is a problem at its tree size; it is not
    // trusted for anything else. The lowest bad sequence number wins.
    let mut trusted = Vec::new();
    let mut bad_checkpoint: Option<Problem> = None;
    for cp in anchors.checkpoints {
        let ok = match anchors.public_key {
            Some(pk) => cp.verify_with(pk),
            None => cp.verify_self(),
        };
        let found = match ok {
            // Unsigned checkpoints still bound the length of the log.
            Some(true) | None => {
                trusted.push(cp);
                continue;
            }
            Some(false)
                if anchors.public_key.is_some()
                    && cp.public_key.as_deref() != anchors.public_key =>
            {
                problem(
                    cp.tree_size,
                    Reason::KeyReplaced,
                    format!(
                        "checkpoint at {} is signed with another key than the trusted one",
                        cp.tree_size
                    ),
                )
            }
            Some(false) => problem(
                cp.tree_size,
                Reason::Edited,
                format!("checkpoint at {} has an invalid signature", cp.tree_size),
            ),
        };
        if bad_checkpoint
            .as_ref()
            .is_none_or(|b| found.as_ref().is_some_and(|f| f.seq < b.seq))
        {
            bad_checkpoint = found;
        }
    }
    match (walk(links, anchors, &trusted), bad_checkpoint) {
        (Some(a), Some(b)) => Some(if b.seq < a.seq { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The events in order, against the trusted checkpoints.
fn walk(links: &[Link], anchors: &Anchors<'_>, trusted: &[&Checkpoint]) -> Option<Problem> {
    let first_seq = links.first().map_or(0, |l| l.seq);
    let mut prev = anchors.prev.or_else(|| {
        trusted
            .iter()
            .find(|cp| cp.tree_size + 1 == first_seq)
            .and_then(|cp| parse_hash(&cp.head_hash))
    });
    if first_seq == 1 {
        prev = Some([0; 32]);
    }
    for (i, l) in links.iter().enumerate() {
        if i > 0 {
            let expected = links[i - 1].seq + 1;
            if l.seq != expected {
                let later = links[i..]
                    .iter()
                    .any(|m| m.seq < l.seq && m.seq >= expected);
                return if l.seq > expected && !later {
                    let n = l.seq - expected;
                    problem(
                        expected,
                        Reason::Missing,
                        format!(
                            "{n} event(s) from {expected} are missing; {} follows {}",
                            l.seq,
                            expected - 1
                        ),
                    )
                } else {
                    problem(
                        expected.min(l.seq),
                        Reason::Reordered,
                        format!(
                            "event {} is out of order: found {} after {}",
                            expected.min(l.seq),
                            l.seq,
                            expected - 1
                        ),
                    )
                };
            }
        }
        if l.id_seq.is_some_and(|s| s != l.seq) {
            return problem(
                l.seq,
                Reason::Reordered,
                format!(
                    "position {} holds event {}",
                    l.seq,
                    l.id_seq.unwrap_or_default()
                ),
            );
        }
        match l.sig {
            Sig::OtherKey => {
                return problem(
                    l.seq,
                    Reason::KeyReplaced,
                    format!(
                        "event {} is signed with another key than this server's",
                        l.seq
                    ),
                );
            }
            Sig::Invalid => {
                return problem(
                    l.seq,
                    Reason::Edited,
                    format!("event {} does not match its signature", l.seq),
                );
            }
            Sig::Valid | Sig::Unsigned | Sig::NotChecked => {}
        }
        if l.claimed.is_some_and(|c| c != l.hash) {
            return problem(
                l.seq,
                Reason::Edited,
                format!("event {} does not match its recorded hash", l.seq),
            );
        }
        if let Some(p) = prev
            && p != l.prev
        {
            // The link breaks here: the previous event's content changed (or this one's
            // record of it did); with signatures checked the edit shows up above.
            let at = if i > 0 { l.seq - 1 } else { l.seq };
            return problem(
                at,
                Reason::Edited,
                format!(
                    "event {} no longer matches the hash event {} recorded",
                    l.seq.saturating_sub(1),
                    l.seq
                ),
            );
        }
        prev = Some(l.hash);
    }
    let last = links.last().map_or(first_seq.saturating_sub(1), |l| l.seq);
    for cp in trusted {
        if cp.tree_size > last {
            return problem(
                last + 1,
                Reason::Truncated,
                format!(
                    "the log ends at {last} but a checkpoint covers {} events",
                    cp.tree_size
                ),
            );
        }
        if cp.tree_size >= first_seq && cp.tree_size > 0 {
            let at = &links[(cp.tree_size - first_seq) as usize];
            if Some(at.hash) != parse_hash(&cp.head_hash) {
                return problem(
                    cp.tree_size,
                    Reason::Edited,
                    format!(
                        "event {} does not match the checkpoint's head hash",
                        cp.tree_size
                    ),
                );
            }
        }
    }
    None
}
