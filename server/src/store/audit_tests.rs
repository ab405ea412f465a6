//! Unit tests of the audit tables against a real redb file: appends, checkpoints, queries,
//! per-row and whole-chain verification, pruning, and the chain across a reopen.

use super::audit::AUDIT_EVENTS;
use super::*;
use crate::chain::event::{Actor, KEY_MATERIAL_LEN, Keys, NewEvent};
use crate::chain::verify::{Reason, Sig, State};

const ORG: &str = "default";
const NOW: i64 = 1_800_000_000_000;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("warden.redb")).unwrap()
}

fn keys() -> Keys {
    Keys::from_material(&[9; KEY_MATERIAL_LEN]).unwrap()
}

fn ev(action: &str, target: &str) -> NewEvent {
    NewEvent::new(Actor::admin(), action, target)
}

/// `n` events `token.create` on `t{i}`.
fn many(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| ev("token.create", &format!("t{i}")))
        .collect()
}

fn seqs(rows: &[AuditRow]) -> Vec<u64> {
    rows.iter().map(|r| r.event.seq).collect()
}

#[test]
fn appends_get_contiguous_seqs_linked_hashes_and_times_that_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let k = keys();
    let a = store.audit_append(many(3), Some(&k), NOW, 0).unwrap();
    // The clock stepped back: the chain keeps the last time.
    let b = store
        .audit_append(many(2), Some(&k), NOW - 5_000, 0)
        .unwrap();
    let c = store.audit_append(many(1), Some(&k), NOW + 1, 0).unwrap();
    let all: Vec<_> = a.iter().chain(&b).chain(&c).collect();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        all.iter().map(|e| e.fields.ts_ms - NOW).collect::<Vec<_>>(),
        [0, 0, 0, 0, 0, 1]
    );
    assert_eq!(all[0].prev_hash, hex::encode([0u8; 32]));
    for w in all.windows(2) {
        assert_eq!(w[1].prev_hash, hex::encode(w[0].hash().unwrap()));
    }
    assert!(all.iter().all(|e| e.fields.id == format!("{ORG}-{}", e.seq)
        && e.fields.key_id.as_deref() == Some(k.key_id())
        && e.signature.is_some()));
    // What is stored is what was returned, byte for byte.
    let stored = store.audit_range(ORG, 1, 6, 100).unwrap();
    for (s, e) in stored.iter().zip(&all) {
        assert_eq!(&s.event().unwrap(), *e);
        assert_eq!(s.hash(), e.hash().unwrap());
    }
    let head = store.audit_head(ORG).unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (6, all[5].hash().unwrap()));
    // Orgs have separate chains.
    let mut other = ev("token.create", "x");
    other.org_id = "acme".into();
    assert_eq!(
        store.audit_append(vec![other], None, NOW, 0).unwrap()[0].seq,
        1
    );
    assert_eq!(store.audit_heads().unwrap().len(), 2);
    let r = store.audit_verify(ORG, None, None, Some(&k)).unwrap();
    assert_eq!((r.state, r.checked), (State::Verified, 6), "{r:?}");
}

#[test]
fn a_checkpoint_every_n_events_and_one_on_demand_at_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let k = keys();
    store.audit_append(many(7), Some(&k), NOW, 3).unwrap();
    store.audit_append(many(3), Some(&k), NOW, 3).unwrap();
    let cps = store.audit_checkpoints(ORG, 0, u64::MAX).unwrap();
    assert_eq!(
        cps.iter().map(|c| c.tree_size).collect::<Vec<_>>(),
        [3, 6, 9]
    );
    assert!(
        cps.iter()
            .all(|c| c.verify_with(&k.public_key()) == Some(true))
    );
    let head_hash = hex::encode(store.audit_head(ORG).unwrap().unwrap().hash);
    let (cp, made) = store
        .audit_checkpoint(ORG, Some(&k), NOW + 1)
        .unwrap()
        .unwrap();
    assert!(made);
    assert_eq!((cp.tree_size, &cp.head_hash), (10, &head_hash));
    let (again, made) = store
        .audit_checkpoint(ORG, Some(&k), NOW + 2)
        .unwrap()
        .unwrap();
    assert!(!made);
    assert_eq!(again, cp);
    assert_eq!(store.audit_checkpoints(ORG, 4, 9).unwrap().len(), 2);
    assert!(
        store
            .audit_checkpoint("nobody", Some(&k), NOW)
            .unwrap()
            .is_none()
    );
    let r = store.audit_verify(ORG, None, None, Some(&k)).unwrap();
    assert_eq!(
        (r.state, r.checkpoint),
        (State::Verified, Some(10)),
        "{r:?}"
    );
}

#[test]
fn queries_filter_and_paginate_with_a_cursor_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let k = keys();
    let mut batch = Vec::new();
    for i in 0..12 {
        let mut e = if i % 3 == 0 {
            ev("token.revoke", &format!("t{i}"))
        } else {
            ev("token.create", &format!("t{i}"))
        };
        if i % 4 == 0 {
            e = e.failed("no such token");
        }
        if i == 5 {
            e.actor = Actor::agent("a5");
        }
        batch.push(e);
    }
    // Three batches a second apart, so time filters have something to cut.
    for (n, chunk) in batch.chunks(4).enumerate() {
        store
            .audit_append(chunk.to_vec(), Some(&k), NOW + n as i64 * 1000, 0)
            .unwrap();
    }
    let q = |f: &AuditFilter, cursor, asc, limit| {
        store
            .audit_query(ORG, f, cursor, asc, limit, Some(&k))
            .unwrap()
    };
    let all = AuditFilter::default();
    // Newest first by default; cursor pages never repeat or skip.
    let (page, next) = q(&all, None, false, 5);
    assert_eq!((seqs(&page), next), (vec![12, 11, 10, 9, 8], Some(8)));
    let (page, next) = q(&all, next, false, 5);
    assert_eq!((seqs(&page), next), (vec![7, 6, 5, 4, 3], Some(3)));
    let (page, next) = q(&all, next, false, 5);
    assert_eq!((seqs(&page), next), (vec![2, 1], None));
    let mut asc = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = q(&all, cursor, true, 5);
        asc.extend(seqs(&page));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(asc, (1..=12).collect::<Vec<_>>());
    // Filters, each alone.
    let f = |f: AuditFilter| seqs(&q(&f, None, true, 100).0);
    let revokes = f(AuditFilter {
        action: Some("token.revoke".into()),
        ..AuditFilter::default()
    });
    assert_eq!(revokes, [1, 4, 7, 10]);
    let prefix = f(AuditFilter {
        action: Some("token.*".into()),
        ..AuditFilter::default()
    });
    assert_eq!(prefix.len(), 12);
    let not_a_prefix = f(AuditFilter {
        action: Some("token".into()),
        ..AuditFilter::default()
    });
    assert!(not_a_prefix.is_empty());
    let failures = f(AuditFilter {
        outcome: Some("failure".into()),
        ..AuditFilter::default()
    });
    assert_eq!(failures, [1, 5, 9]);
    let agents = f(AuditFilter {
        actor: Some("agent".into()),
        ..AuditFilter::default()
    });
    assert_eq!(agents, [6]);
    let admin = f(AuditFilter {
        actor: Some("token:admin".into()),
        ..AuditFilter::default()
    });
    assert_eq!(admin.len(), 11);
    let target = f(AuditFilter {
        target: Some("t3".into()),
        ..AuditFilter::default()
    });
    assert_eq!(target, [4]);
    let window = f(AuditFilter {
        since_ms: Some(NOW + 1000),
        until_ms: Some(NOW + 2000),
        ..AuditFilter::default()
    });
    assert_eq!(window, [5, 6, 7, 8]);
    // Combined with paging: a filter page's cursor skips non-matching events correctly.
    let creates = AuditFilter {
        action: Some("token.create".into()),
        ..AuditFilter::default()
    };
    let (page, next) = q(&creates, None, true, 3);
    assert_eq!((seqs(&page), next), (vec![2, 3, 5], Some(5)));
    let (page, _) = q(&creates, next, true, 3);
    assert_eq!(seqs(&page), [6, 8, 9]);
}

#[test]
fn each_row_carries_its_signature_state_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let k = keys();
    store.audit_append(many(5), Some(&k), NOW, 0).unwrap();
    let rows = store
        .audit_query(ORG, &AuditFilter::default(), None, true, 10, Some(&k))
        .unwrap()
        .0;
    assert!(
        rows.iter()
            .all(|r| r.sig == Sig::Valid && r.linked == Some(true))
    );
    assert_eq!(rows[2].hash, rows[2].event.hash().unwrap());
    // Without the key signatures are not checked; another key is named as such.
    let rows = store
        .audit_query(ORG, &AuditFilter::default(), None, true, 10, None)
        .unwrap()
        .0;
    assert!(rows.iter().all(|r| r.sig == Sig::NotChecked));
    let other = Keys::from_material(&[1; KEY_MATERIAL_LEN]).unwrap();
    let rows = store
        .audit_query(ORG, &AuditFilter::default(), None, true, 10, Some(&other))
        .unwrap()
        .0;
    assert!(rows.iter().all(|r| r.sig == Sig::OtherKey));
    // Unsigned events say so.
    store.audit_append(many(1), None, NOW, 0).unwrap();
    let (rows, _) = store
        .audit_query(ORG, &AuditFilter::default(), None, false, 1, Some(&k))
        .unwrap();
    assert_eq!((rows[0].event.seq, rows[0].sig), (6, Sig::Unsigned));
    let r = store.audit_verify(ORG, None, None, Some(&k)).unwrap();
    assert_eq!((r.state, r.unsigned), (State::Unsigned, 1));

    // Edit event 3's target in place: its row fails its signature, event 4's link breaks.
    {
        let txn = store.write_txn().unwrap();
        {
            let mut t = txn.open_table(AUDIT_EVENTS).unwrap();
            let key = format!("{ORG}\u{1f}{:016x}", 3);
            let v = t.get(key.as_str()).unwrap().unwrap().value().to_vec();
            let text = String::from_utf8_lossy(&v).replace("\"t2\"", "\"t9\"");
            let mut edited = v[..65].to_vec();
            edited.extend_from_slice(&text.as_bytes()[text.find("{\"id\"").unwrap()..]);
            t.insert(key.as_str(), edited.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let rows = store
        .audit_query(ORG, &AuditFilter::default(), None, true, 10, Some(&k))
        .unwrap()
        .0;
    assert_eq!(rows[2].event.fields.target, "t9");
    assert_eq!((rows[2].sig, rows[2].linked), (Sig::Invalid, Some(true)));
    assert_eq!((rows[3].sig, rows[3].linked), (Sig::Valid, Some(false)));
    let r = store.audit_verify(ORG, None, None, Some(&k)).unwrap();
    let p = r.problem.unwrap();
    assert_eq!((p.seq, p.reason), (3, Reason::Edited));
    let r = store.audit_verify(ORG, None, None, None).unwrap();
    let p = r.problem.unwrap();
    assert_eq!((p.seq, p.reason), (3, Reason::Edited));
}

#[test]
fn pruning_leaves_a_bridge_and_the_rest_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let k = keys();
    store.audit_append(many(6), Some(&k), NOW, 4).unwrap();
    store
        .audit_append(many(4), Some(&k), NOW + 10_000, 4)
        .unwrap();
    // At most 3 per call: two calls to remove the 6 old ones.
    let p = store
        .audit_prune(ORG, NOW + 5_000, 3, Some(&k), NOW + 20_000)
        .unwrap();
    assert_eq!(
        p,
        Pruned {
            events: 3,
            bridge: Some(3)
        }
    );
    let p = store
        .audit_prune(ORG, NOW + 5_000, 3, Some(&k), NOW + 20_000)
        .unwrap();
    assert_eq!(
        p,
        Pruned {
            events: 3,
            bridge: Some(6)
        }
    );
    let p = store
        .audit_prune(ORG, NOW + 5_000, 3, Some(&k), NOW + 20_000)
        .unwrap();
    assert_eq!(p, Pruned::default());
    let left = store.audit_range(ORG, 0, u64::MAX, 100).unwrap();
    assert_eq!(left.first().map(|s| s.seq), Some(7));
    let cps: Vec<u64> = store
        .audit_checkpoints(ORG, 0, u64::MAX)
        .unwrap()
        .iter()
        .map(|c| c.tree_size)
        .collect();
    assert_eq!(cps, [6, 8], "older checkpoints go, the bridge stays");
    let r = store.audit_verify(ORG, None, None, Some(&k)).unwrap();
    assert_eq!(
        (r.state, r.first_seq, r.checked, r.checkpoint),
        (State::Verified, Some(7), 4, Some(8)),
        "{r:?}"
    );
    // The first kept row links through the bridge.
    let rows = store
        .audit_query(ORG, &AuditFilter::default(), None, true, 1, Some(&k))
        .unwrap()
        .0;
    assert_eq!((rows[0].event.seq, rows[0].linked), (7, Some(true)));
    // A range verification inside the chain works too.
    let r = store.audit_verify(ORG, Some(8), Some(9), Some(&k)).unwrap();
    assert_eq!((r.state, r.checked), (State::Verified, 2), "{r:?}");
}

#[test]
fn the_chain_continues_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let last = {
        let store = open(&dir);
        store
            .audit_append(many(3), Some(&k), NOW, 2)
            .unwrap()
            .pop()
            .unwrap()
    };
    let store = open(&dir);
    let next = store.audit_append(many(2), Some(&k), NOW - 1, 2).unwrap();
    assert_eq!(next[0].seq, 4);
    assert_eq!(next[0].prev_hash, hex::encode(last.hash().unwrap()));
    assert_eq!(
        next[0].fields.ts_ms, NOW,
        "time does not go back across a reopen"
    );
    let r = store.audit_verify(ORG, None, None, Some(&k)).unwrap();
    assert_eq!(
        (r.state, r.checked, r.checkpoint),
        (State::Verified, 5, Some(4)),
        "{r:?}"
    );
}

#[test]
fn a_lost_head_row_never_reuses_a_seq_and_a_head_behind_a_checkpoint_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let k = keys();
    store.audit_append(many(5), Some(&k), NOW, 5).unwrap();
    // Someone deletes the head row: the next event still follows the last stored one.
    {
        let txn = store.write_txn().unwrap();
        txn.open_table(audit::AUDIT_HEADS)
            .unwrap()
            .remove(ORG)
            .unwrap();
        txn.commit().unwrap();
    }
    let e = store.audit_append(many(1), Some(&k), NOW, 5).unwrap();
    assert_eq!(e[0].seq, 6);
    assert_eq!(store.audit_guard_head(ORG).unwrap(), None);
    // The tail (4..=6) cut off and the head rewritten to 3; the checkpoint at 5 remains.
    {
        let txn = store.write_txn().unwrap();
        {
            let mut t = txn.open_table(AUDIT_EVENTS).unwrap();
            for seq in 4..=6u64 {
                t.remove(format!("{ORG}\u{1f}{seq:016x}").as_str()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let head3 = store.audit_range(ORG, 3, 3, 1).unwrap()[0].hash();
    {
        let txn = store.write_txn().unwrap();
        let head = serde_json::json!({ "seq": 3, "hash": hex::encode(head3), "ts_ms": NOW });
        txn.open_table(audit::AUDIT_HEADS)
            .unwrap()
            .insert(ORG, serde_json::to_vec(&head).unwrap().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(store.audit_guard_head(ORG).unwrap(), Some((3, 5)));
    let e = store.audit_append(many(1), Some(&k), NOW, 0).unwrap();
    assert_eq!(e[0].seq, 6, "new events continue after the checkpoint");
    let r = store.audit_verify(ORG, None, None, Some(&k)).unwrap();
    let p = r.problem.expect("the gap is reported");
    assert_eq!((p.seq, p.reason), (4, Reason::Missing));
}

#[test]
fn a_long_chain_verifies_in_two_halves_and_names_problems_in_either() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let k = keys();
    for _ in 0..5 {
        store
            .audit_append(many(5_000), Some(&k), NOW, 1000)
            .unwrap();
    }
    let r = store.audit_verify(ORG, None, None, Some(&k)).unwrap();
    assert_eq!(
        (r.state, r.checked, r.checkpoint),
        (State::Verified, 25_000, Some(25_000))
    );
    let delete = |seq: u64| {
        let txn = store.write_txn().unwrap();
        txn.open_table(AUDIT_EVENTS)
            .unwrap()
            .remove(format!("{ORG}\u{1f}{seq:016x}").as_str())
            .unwrap();
        txn.commit().unwrap();
    };
    // The split falls at 12,500: a gap in the upper half, then one in the lower half.
    delete(20_000);
    let p = store
        .audit_verify(ORG, None, None, Some(&k))
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((p.seq, p.reason), (20_000, Reason::Missing));
    delete(12_501);
    let p = store
        .audit_verify(ORG, None, None, Some(&k))
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((p.seq, p.reason), (12_501, Reason::Missing));
    delete(3);
    let p = store
        .audit_verify(ORG, None, None, Some(&k))
        .unwrap()
        .problem
        .unwrap();
    assert_eq!((p.seq, p.reason), (3, Reason::Missing));
}
