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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::event::{Actor, Fields, KEY_MATERIAL_LEN, Outcome};

    fn keys(b: u8) -> Keys {
        Keys::from_material(&[b; KEY_MATERIAL_LEN]).unwrap()
    }

    /// A chain of events `first..first+n` after `prev`, signed with `keys` if given.
    fn chain_from(first: u64, n: u64, prev: Hash, keys: Option<&Keys>) -> Vec<Event> {
        let mut prev = prev;
        (first..first + n)
            .map(|seq| {
                let fields = Fields {
                    id: format!("default-{seq}"),
                    ts_ms: 1_000 + seq as i64,
                    org_id: "default".into(),
                    actor: Actor::admin(),
                    action: "token.create".into(),
                    target: format!("tok{seq}"),
                    outcome: Outcome::Success,
                    source_ip: None,
                    key_id: keys.map(|k| k.key_id().to_owned()),
                    details: serde_json::json!({}),
                };
                let hash = Event::hash_parts(seq, &prev, &Event::fields_json(&fields));
                let e = Event {
                    seq,
                    prev_hash: hex::encode(prev),
                    fields,
                    signature: keys.map(|k| k.sign_event(&hash)),
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn chain(n: u64, keys: Option<&Keys>) -> Vec<Event> {
        chain_from(1, n, [0; 32], keys)
    }

    fn links(events: &[Event], keys: Option<&Keys>) -> Vec<Link> {
        events
            .iter()
            .map(|e| Link::of(e, None, keys).unwrap())
            .collect()
    }

    fn checkpoint(events: &[Event], tree_size: u64, keys: Option<&Keys>) -> Checkpoint {
        let head = events.iter().find(|e| e.seq == tree_size).unwrap();
        let mut cp = Checkpoint {
            org_id: "default".into(),
            tree_size,
            head_hash: hex::encode(head.hash().unwrap()),
            ts_ms: 9_999,
            public_key: None,
            signature: None,
        };
        if let Some(k) = keys {
            k.sign_checkpoint(&mut cp);
        }
        cp
    }

    fn run(links: &[Link], cps: &[Checkpoint], pk: Option<&str>) -> Report {
        check(
            links,
            &Anchors {
                prev: None,
                checkpoints: cps,
                public_key: pk,
            },
        )
    }

    #[track_caller]
    fn bad(r: &Report, seq: u64, reason: Reason) {
        let p = r
            .problem
            .as_ref()
            .unwrap_or_else(|| panic!("no problem: {r:?}"));
        assert_eq!((p.seq, p.reason), (seq, reason), "{p:?}");
        assert_eq!(r.state, State::Failed);
        assert_eq!(r.checkpoint, None);
    }

    #[test]
    fn an_intact_chain_is_verified_chain_only_or_unsigned_by_what_could_be_checked() {
        let k = keys(1);
        let events = chain(10, Some(&k));
        let cps = [
            checkpoint(&events, 5, Some(&k)),
            checkpoint(&events, 10, Some(&k)),
        ];
        let pk = k.public_key();
        let r = run(&links(&events, Some(&k)), &cps, Some(&pk));
        assert_eq!(r.problem, None, "{r:?}");
        assert_eq!(r.state, State::Verified);
        assert_eq!(
            (r.checked, r.first_seq, r.last_seq, r.unsigned, r.checkpoint),
            (10, Some(1), Some(10), 0, Some(10))
        );
        // Without the HMAC key only the chain and checkpoints are checked.
        let r = run(&links(&events, None), &cps, None);
        assert_eq!(r.state, State::ChainOnly, "{r:?}");
        // Unsigned events never make "verified", with or without a key at hand.
        let unsigned = chain(4, None);
        for keys in [None, Some(&k)] {
            let r = run(&links(&unsigned, keys), &[], None);
            assert_eq!((r.state, r.unsigned, r.problem), (State::Unsigned, 4, None));
        }
        // An empty run against no checkpoint has nothing wrong with it.
        let r = run(&[], &[], None);
        assert_eq!(
            (r.state, r.checked, r.first_seq),
            (State::Verified, 0, None)
        );
    }

    #[test]
    fn an_edit_is_named_by_signature_by_recorded_hash_and_by_the_next_link() {
        let k = keys(1);
        let mut events = chain(8, Some(&k));
        events[3].fields.target = "someone-else".into();
        // With the key: the signature no longer matches event 4.
        bad(
            &run(&links(&events, Some(&k)), &[], None),
            4,
            Reason::Edited,
        );
        // Without it: event 5 recorded another hash for event 4.
        let r = run(&links(&events, None), &[], None);
        bad(&r, 4, Reason::Edited);
        assert!(r.problem.unwrap().detail.contains("event 4"));
        // An export line's own hash gives the edit away at once, even on the last event.
        let original = chain(8, None);
        let mut last = original[7].clone();
        last.fields.action = "token.revoke".into();
        let claimed = hex::encode(original[7].hash().unwrap());
        let mut l = links(&original[..7], None);
        l.push(Link::of(&last, Some(&claimed), None).unwrap());
        bad(&run(&l, &[], None), 8, Reason::Edited);
        // An unreadable prev_hash makes no link (callers report an edit).
        let mut broken = original[2].clone();
        broken.prev_hash = "zz".into();
        assert!(Link::of(&broken, None, None).is_none());
    }

    #[test]
    fn a_gap_is_missing_and_a_swap_or_move_is_reordered() {
        let events = chain(10, None);
        let mut l = links(&events, None);
        l.remove(4);
        bad(&run(&l, &[], None), 5, Reason::Missing);
        let mut l = links(&events, None);
        l.drain(2..5);
        let r = run(&l, &[], None);
        bad(&r, 3, Reason::Missing);
        assert!(r.problem.unwrap().detail.contains("3 event(s) from 3"));

        let mut l = links(&events, None);
        l.swap(5, 6);
        bad(&run(&l, &[], None), 6, Reason::Reordered);
        // An event moved to another position (as a store key would hold it) names its own seq.
        let mut moved = events[6].clone();
        moved.seq = 6;
        let mut l = links(&events[..5], None);
        l.push(Link::of(&moved, None, None).unwrap());
        let r = run(&l, &[], None);
        bad(&r, 6, Reason::Reordered);
        assert!(r.problem.unwrap().detail.contains("holds event 7"));
    }

    #[test]
    fn a_checkpoint_past_the_end_exposes_truncation_even_unsigned() {
        let k = keys(2);
        let events = chain(10, Some(&k));
        let cps = [checkpoint(&events, 10, Some(&k))];
        let r = run(&links(&events[..7], Some(&k)), &cps, None);
        bad(&r, 8, Reason::Truncated);
        assert!(r.problem.unwrap().detail.contains("ends at 7"));
        let unsigned = chain(6, None);
        let cps = [checkpoint(&unsigned, 6, None)];
        bad(
            &run(&links(&unsigned[..3], None), &cps, None),
            4,
            Reason::Truncated,
        );
        // Without a checkpoint a shorter log looks complete: that is what checkpoints are for.
        assert_eq!(run(&links(&unsigned[..3], None), &[], None).problem, None);
    }

    #[test]
    fn a_checkpoint_must_match_the_chain_and_carry_a_valid_signature() {
        let k = keys(3);
        let events = chain(10, Some(&k));
        let l = links(&events, None);
        // A head hash other than the event's.
        let mut cp = checkpoint(&events, 6, None);
        cp.head_hash = hex::encode([7u8; 32]);
        bad(&run(&l, &[cp], None), 6, Reason::Edited);
        // A signature that no longer matches its statement.
        let mut cp = checkpoint(&events, 6, Some(&k));
        cp.ts_ms += 1;
        let r = run(&l, &[cp.clone()], None);
        bad(&r, 6, Reason::Edited);
        assert!(r.problem.unwrap().detail.contains("invalid signature"));
        let pk = k.public_key();
        bad(&run(&l, &[cp], Some(&pk)), 6, Reason::Edited);
        // The lowest bad sequence number wins across events and checkpoints.
        let mut edited = events.clone();
        edited[8].fields.target = "x".into();
        let cps = [checkpoint(&events, 4, Some(&k))];
        let mut wrong = cps[0].clone();
        wrong.ts_ms += 1;
        bad(
            &run(&links(&edited, None), &[wrong], None),
            4,
            Reason::Edited,
        );
        bad(&run(&links(&edited, None), &cps, None), 9, Reason::Edited);
    }

    #[test]
    fn another_key_is_named_for_events_and_checkpoints() {
        let (ours, theirs) = (keys(4), keys(5));
        let events = chain(6, Some(&theirs));
        // Events signed with another HMAC key than the verifier's.
        let r = run(&links(&events, Some(&ours)), &[], None);
        bad(&r, 1, Reason::KeyReplaced);
        // A checkpoint signed with another key than the trusted one, self-consistent or not.
        let cp = checkpoint(&events, 4, Some(&theirs));
        let pk = ours.public_key();
        bad(
            &run(&links(&events, None), std::slice::from_ref(&cp), Some(&pk)),
            4,
            Reason::KeyReplaced,
        );
        assert_eq!(
            run(&links(&events, None), std::slice::from_ref(&cp), None).problem,
            None
        );
        let theirs_pk = theirs.public_key();
        assert_eq!(
            run(&links(&events, None), &[cp], Some(&theirs_pk)).state,
            State::ChainOnly
        );
        // A signature that matches neither key nor names another key id is an edit.
        let mut forged = events.clone();
        forged[2].signature = Some(hex::encode([1u8; 32]));
        forged[2].fields.key_id = Some(theirs.key_id().to_owned());
        bad(
            &run(&links(&forged, Some(&theirs)), &[], None),
            3,
            Reason::Edited,
        );
    }

    #[test]
    fn a_run_after_the_start_is_anchored_by_prev_or_a_bridge_checkpoint() {
        let k = keys(6);
        let all = chain(10, Some(&k));
        let tail = &all[4..];
        let real_prev = all[3].hash().unwrap();
        // Unanchored: the first link cannot be checked, the rest can.
        assert_eq!(run(&links(tail, None), &[], None).problem, None);
        for prev in [real_prev, [9; 32]] {
            let r = check(
                &links(tail, None),
                &Anchors {
                    prev: Some(prev),
                    ..Anchors::default()
                },
            );
            if prev == real_prev {
                assert_eq!(r.problem, None);
            } else {
                bad(&r, 5, Reason::Edited);
            }
        }
        // A bridge checkpoint at 4 anchors event 5 (a log pruned up to 4).
        let bridge = checkpoint(&all, 4, Some(&k));
        let r = run(&links(tail, None), std::slice::from_ref(&bridge), None);
        assert_eq!((r.problem, r.first_seq), (None, Some(5)));
        let rechained = chain_from(5, 6, [8; 32], Some(&k));
        bad(
            &run(&links(&rechained, None), &[bridge], None),
            5,
            Reason::Edited,
        );
    }
}
