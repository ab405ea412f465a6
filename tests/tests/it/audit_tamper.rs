//! Tampering with the audit log, the way someone with disk access or a copy of an export
//! would, is detected and named (first bad sequence number and reason): in the server's own
//! store (edited, deleted, swapped, truncated events, a replaced signing key) through
//! `GET /api/audit/verify`, and in exported files (edited, deleted, swapped, dropped lines, a
//! re-signed chain) through `warden audit verify`. Untouched logs verify; an unsigned
//! server's export never does.

use redb::{ReadableTable, TableDefinition};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use warden_server::chain::event::{Checkpoint, Event, KEY_MATERIAL_LEN, Keys};
use warden_tests::{ServerProc, TEST_KEK};

const ORG: &str = "default";
/// The store's audit tables, as an attacker would open them.
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_events");
const HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_heads");
/// Events generated: the admin's first sign-in plus 29 token creations.
const N: u64 = 30;

fn key(seq: u64) -> String {
    format!("{ORG}\u{1f}{seq:016x}")
}

/// A config that keeps time-based checkpoints out of the way (count-based ones stay off at
/// the default of 1000), so checkpoints sit exactly where the tests put them.
fn config(root: &Path) -> PathBuf {
    let p = root.join("server.toml");
    std::fs::write(&p, "audit_checkpoint_interval = \"1h\"\n").unwrap();
    p
}

/// Starts a server on `dir` with `cfg`.
fn start(dir: &Path, cfg: &Path, kek: Option<&str>) -> ServerProc {
    ServerProc::start_with_kek(dir, &["--config", cfg.to_str().unwrap()], kek)
}

/// `N` events and a checkpoint at the head; returns the checkpoint API answer.
fn generate(server: &ServerProc) -> Value {
    for _ in 1..N {
        let (s, v) = server.post("/api/tokens", Some(json!({ "ttl": "1h" })));
        assert_eq!(s, 200, "{v}");
    }
    let (s, cp) = server.post("/api/audit/checkpoints", None);
    assert_eq!(s, 200, "{cp}");
    assert_eq!(cp["checkpoint"]["tree_size"], N, "{cp}");
    cp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Opens the stopped server's store and runs `f` in one write transaction on the events
/// table and the heads table.
fn tamper(
    dir: &Path,
    f: impl FnOnce(&mut redb::Table<&str, &[u8]>, &mut redb::Table<&str, &[u8]>),
) {
    let db = redb::Database::open(dir.join(warden_server::DB_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut events = txn.open_table(EVENTS).unwrap();
        let mut heads = txn.open_table(HEADS).unwrap();
        f(&mut events, &mut heads);
    }
    txn.commit().unwrap();
}

fn stored(t: &redb::Table<&str, &[u8]>, seq: u64) -> Vec<u8> {
    t.get(key(seq).as_str()).unwrap().unwrap().value().to_vec()
}

/// The canonical fields JSON inside a stored event value.
fn fields_of(v: &[u8]) -> &[u8] {
    &v[33 + usize::from(v[32])..]
}

/// Replaces `from` with `to` once inside a stored event's JSON, keeping prev hash and
/// signature (an edit by someone without the key).
fn edit_stored(t: &mut redb::Table<&str, &[u8]>, seq: u64, from: &str, to: &str) {
    let v = stored(t, seq);
    let head = v.len() - fields_of(&v).len();
    let json = String::from_utf8(fields_of(&v).to_vec()).unwrap();
    assert_eq!(json.matches(from).count(), 1, "{json}");
    let mut edited = v[..head].to_vec();
    edited.extend_from_slice(json.replace(from, to).as_bytes());
    t.insert(key(seq).as_str(), edited.as_slice()).unwrap();
}

fn target_of(v: &[u8]) -> String {
    let f: Value = serde_json::from_slice(fields_of(v)).unwrap();
    f["target"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_bad(report: &Value, seq: u64, reason: &str) {
    assert_eq!(report["verified"], false, "{report}");
    assert_eq!(report["state"], "failed", "{report}");
    assert_eq!(report["first_bad_seq"], seq, "{report}");
    assert_eq!(report["problem"]["seq"], seq, "{report}");
    assert_eq!(report["problem"]["reason"], reason, "{report}");
}

fn verify_api(server: &ServerProc) -> Value {
    let (s, v) = server.get("/api/audit/verify");
    assert_eq!(s, 200, "{v}");
    v
}

/// Runs `warden [--data-dir DIR] audit verify ARGS`; returns the exit code and the output.
fn verify_file(server: &ServerProc, data_dir: Option<&Path>, args: &[&str]) -> (i32, String) {
    let mut cmd = server.command();
    if let Some(d) = data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    let out = cmd.args(["audit", "verify"]).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("exit code"), text)
}

#[track_caller]
fn assert_file_bad((code, out): (i32, String), seq: u64, reason: &str) {
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("first bad seq {seq}: {reason}: ")),
        "expected seq {seq} {reason}:\n{out}"
    );
}

/// `warden --data-dir DIR audit export --offline --output FILE` of a stopped server.
fn export_offline(server: &ServerProc, dir: &Path, file: &Path) -> std::process::Output {
    server
        .command()
        .arg("--data-dir")
        .arg(dir)
        .args(["audit", "export", "--offline", "--output"])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn tampering_with_the_store_is_named_by_seq_and_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let pristine = tmp.path().join("pristine");
    let mut server = start(&pristine, &cfg, Some(TEST_KEK));
    generate(&server);
    assert_eq!(verify_api(&server)["state"], "verified");
    server.terminate();
    let case = |name: &str| {
        let d = tmp.path().join(name);
        copy_dir(&pristine, &d);
        d
    };

    // Untouched: verifies after a restart, offline too.
    let dir = case("untouched");
    let file = tmp.path().join("untouched.jsonl");
    let out = export_offline(&server, &dir, &file);
    assert!(out.status.success(), "{out:?}");
    let (code, text) = verify_file(&server, Some(&dir), &[file.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("result: verified"), "{text}");
    let s = start(&dir, &cfg, Some(TEST_KEK));
    let r = verify_api(&s);
    assert_eq!(
        (&r["state"], &r["first_bad_seq"]),
        (&json!("verified"), &Value::Null),
        "{r}"
    );
    drop(s);

    // (a) An edited field: the event fails its signature, the next one's link breaks.
    let dir = case("edited");
    tamper(&dir, |events, _| {
        let old = target_of(&stored(events, 10));
        edit_stored(
            events,
            10,
            &format!("\"target\":\"{old}\""),
            "\"target\":\"tok_innocent\"",
        );
    });
    let s = start(&dir, &cfg, Some(TEST_KEK));
    assert_bad(&verify_api(&s), 10, "edited");
    let (st, one) = s.get("/api/audit/default-10/verify");
    assert_eq!(st, 200, "{one}");
    assert_eq!(
        (&one["state"], &one["signature"]),
        (&json!("failed"), &json!("invalid")),
        "{one}"
    );
    let (_, next) = s.get("/api/audit/default-11/verify");
    assert_eq!(
        (&next["state"], &next["chain"]),
        (&json!("failed"), &json!("broken")),
        "{next}"
    );
    let (_, before) = s.get("/api/audit/default-9/verify");
    assert_eq!(before["state"], "verified", "{before}");
    drop(s);

    // (b) An event deleted from the middle.
    let dir = case("deleted");
    tamper(&dir, |events, _| {
        events.remove(key(15).as_str()).unwrap();
    });
    let s = start(&dir, &cfg, Some(TEST_KEK));
    assert_bad(&verify_api(&s), 15, "missing");
    drop(s);

    // (c) Two adjacent events swapped.
    let dir = case("swapped");
    tamper(&dir, |events, _| {
        let (a, b) = (stored(events, 20), stored(events, 21));
        events.insert(key(20).as_str(), b.as_slice()).unwrap();
        events.insert(key(21).as_str(), a.as_slice()).unwrap();
    });
    let s = start(&dir, &cfg, Some(TEST_KEK));
    assert_bad(&verify_api(&s), 20, "reordered");
    drop(s);

    // (d) The tail cut off and the head rewritten to match; the checkpoint at N (taken
    // before) still says how long the log was.
    let dir = case("truncated");
    tamper(&dir, |events, heads| {
        for seq in 26..=N {
            events.remove(key(seq).as_str()).unwrap();
        }
        let v = stored(events, 25);
        let prev: [u8; 32] = v[..32].try_into().unwrap();
        let fields: Value = serde_json::from_slice(fields_of(&v)).unwrap();
        let head = json!({
            "seq": 25,
            "hash": hex::encode(Event::hash_parts(25, &prev, fields_of(&v))),
            "ts_ms": fields["ts_ms"],
        });
        heads
            .insert(ORG, serde_json::to_vec(&head).unwrap().as_slice())
            .unwrap();
    });
    // Offline, before any server touches it: the first lost event is named.
    let file = tmp.path().join("truncated.jsonl");
    let out = export_offline(&server, &dir, &file);
    assert!(out.status.success(), "{out:?}");
    assert_file_bad(
        verify_file(&server, None, &[file.to_str().unwrap()]),
        26,
        "truncated",
    );
    // Restarted, the server sees the checkpoint beyond its head, says so loudly, and new
    // events continue after the checkpoint: the cut-off events stay a gap named from 26.
    let s = start(&dir, &cfg, Some(TEST_KEK));
    let r = verify_api(&s);
    assert_bad(&r, 26, "missing");
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    assert!(log.contains("AUDIT LOG TRUNCATED"), "{log}");
    let (_, newest) = s.get("/api/audit?limit=1");
    assert!(newest["items"][0]["seq"].as_u64().unwrap() > N, "{newest}");
    drop(s);

    // (e) The signing key replaced by another one sealed with the same KEK.
    let dir = case("rekeyed");
    let other = tmp.path().join("other-key");
    std::fs::create_dir_all(&other).unwrap();
    warden_server::audit::keys::create_with(&other, TEST_KEK.as_bytes()).unwrap();
    std::fs::copy(
        other.join(warden_server::audit::keys::KEY_FILE),
        dir.join(warden_server::audit::keys::KEY_FILE),
    )
    .unwrap();
    let s = start(&dir, &cfg, Some(TEST_KEK));
    assert_bad(&verify_api(&s), 1, "key_replaced");
    let (_, one) = s.get("/api/audit/default-1/verify");
    assert_eq!(
        (&one["state"], &one["signature"]),
        (&json!("failed"), &json!("other_key")),
        "{one}"
    );
}

/// An export's lines.
fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) -> String {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    path.to_str().unwrap().to_owned()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// Index of the event line with `seq`.
fn at(lines: &[String], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| {
            let v = parse(l);
            v["type"] == "event" && v["seq"] == seq
        })
        .unwrap()
}

/// The export's events and checkpoints re-chained from `from` on with `keys`, the events'
/// target at `from` changed: what someone who cannot forge the server's keys must do to
/// hide an edit from a self-contained check.
fn rechain(lines: &[String], from: u64, keys: &Keys) -> Vec<String> {
    let mut out = Vec::new();
    let mut prev: Option<[u8; 32]> = None;
    let mut hashes = std::collections::HashMap::new();
    for l in lines {
        let mut v = parse(l);
        match v["type"].as_str().unwrap() {
            "export" => v["public_key"] = keys.public_key().into(),
            "event" => {
                let mut e: Event = serde_json::from_value(v.clone()).unwrap();
                if e.seq == from {
                    e.fields.target = "tok_innocent".into();
                }
                if e.seq >= from {
                    if let Some(p) = prev {
                        e.prev_hash = hex::encode(p);
                    }
                    e.fields.key_id = Some(keys.key_id().to_owned());
                    let h = e.hash().unwrap();
                    e.signature = Some(keys.sign_event(&h));
                }
                let h = e.hash().unwrap();
                hashes.insert(e.seq, h);
                prev = Some(h);
                v = serde_json::to_value(&e).unwrap();
                v["type"] = "event".into();
                v["hash"] = hex::encode(h).into();
            }
            _ => {
                let mut cp: Checkpoint = serde_json::from_value(v.clone()).unwrap();
                cp.head_hash = hex::encode(hashes[&cp.tree_size]);
                keys.sign_checkpoint(&mut cp);
                v = serde_json::to_value(&cp).unwrap();
                v["type"] = "checkpoint".into();
            }
        }
        out.push(v.to_string());
    }
    out
}

#[test]
fn tampering_with_an_export_is_named_and_a_trusted_checkpoint_exposes_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let dir = tmp.path().join("server");
    let mut server = start(&dir, &cfg, Some(TEST_KEK));
    // The checkpoint an outside party received (as a webhook would deliver it).
    let trusted = tmp.path().join("trusted-checkpoint.json");
    std::fs::write(&trusted, generate(&server).to_string()).unwrap();
    let trusted = trusted.to_str().unwrap().to_owned();

    let online = tmp.path().join("online.jsonl");
    let out = server.cli(&["audit", "export", "--output", online.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let pristine = lines(&online);
    let header = parse(&pristine[0]);
    assert_eq!(
        (&header["type"], &header["from_seq"], &header["to_seq"]),
        (&json!("export"), &json!(1), &json!(N)),
        "{header}"
    );
    assert_eq!(
        pristine.len() as u64,
        1 + N + 1,
        "header, events, the checkpoint at the head"
    );
    assert_eq!(parse(&pristine[1])["hash"].as_str().map(str::len), Some(64));
    // A part of the log, by seq or time.
    let part = tmp.path().join("part.jsonl");
    let out = server.cli(&[
        "audit",
        "export",
        "--from",
        "5",
        "--to",
        "12",
        "--output",
        part.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let p = lines(&part);
    assert_eq!(
        (
            parse(&p[1])["seq"].as_u64(),
            parse(&p[8])["seq"].as_u64(),
            p.len()
        ),
        (Some(5), Some(12), 9)
    );
    let (code, text) = verify_file(&server, None, &[part.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    // Offline export needs the server stopped, and says so.
    let out = export_offline(&server, &dir, &tmp.path().join("nope.jsonl"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );

    let f = |name: &str| tmp.path().join(name);
    let path = online.to_str().unwrap();
    // Untouched: intact chain-only without the HMAC key, verified with it.
    let (code, text) = verify_file(&server, None, &[path, "--checkpoint", &trusted]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("result: chain_only"), "{text}");
    let (code, text) = verify_file(&server, Some(&dir), &[path, "--checkpoint", &trusted]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("result: verified") && text.contains("HMAC signatures checked"),
        "{text}"
    );

    // An edited field.
    let mut l = pristine.clone();
    let i = at(&l, 10);
    let target = parse(&l[i])["target"].as_str().unwrap().to_owned();
    l[i] = l[i].replace(
        &format!("\"target\":\"{target}\""),
        "\"target\":\"tok_innocent\"",
    );
    let p = write_lines(&f("edited.jsonl"), &l);
    assert_file_bad(verify_file(&server, None, &[&p]), 10, "edited");
    // A line cut short (no longer JSON) is named by the seq it still shows.
    let mut l = pristine.clone();
    let i = at(&l, 7);
    let half = l[i].len() / 2;
    l[i].truncate(half);
    let p = write_lines(&f("cut.jsonl"), &l);
    assert_file_bad(verify_file(&server, None, &[&p]), 7, "edited");

    // A line deleted from the middle.
    let mut l = pristine.clone();
    l.remove(at(&l, 15));
    let p = write_lines(&f("deleted.jsonl"), &l);
    assert_file_bad(verify_file(&server, None, &[&p]), 15, "missing");

    // Two lines swapped.
    let mut l = pristine.clone();
    let i = at(&l, 20);
    l.swap(i, i + 1);
    let p = write_lines(&f("swapped.jsonl"), &l);
    assert_file_bad(verify_file(&server, None, &[&p]), 20, "reordered");

    // The tail dropped, with its checkpoint, and the header made to agree: the file alone
    // looks complete; the trusted checkpoint says otherwise.
    let mut l: Vec<String> = pristine
        .iter()
        .filter(|l| {
            let v = parse(l);
            v["type"] == "export" || (v["type"] == "event" && v["seq"].as_u64().unwrap() <= 25)
        })
        .cloned()
        .collect();
    let mut h = parse(&l[0]);
    h["to_seq"] = 25.into();
    l[0] = h.to_string();
    let p = write_lines(&f("truncated.jsonl"), &l);
    let (code, text) = verify_file(&server, None, &[&p]);
    assert_eq!(
        code, 0,
        "without an outside checkpoint a cut tail is invisible: {text}"
    );
    assert!(
        text.contains("no checkpoint covers the last event"),
        "{text}"
    );
    assert_file_bad(
        verify_file(&server, None, &[&p, "--checkpoint", &trusted]),
        26,
        "truncated",
    );
    // Without touching the header, the file gives itself away.
    l[0].clone_from(&pristine[0]);
    let p = write_lines(&f("truncated2.jsonl"), &l);
    assert_file_bad(verify_file(&server, None, &[&p]), 26, "truncated");

    // Event 12 edited and everything from it re-chained and re-signed with another key
    // (checkpoints and the header's key too): self-consistent, so only trust anchors help.
    let attacker = Keys::from_material(&[7; KEY_MATERIAL_LEN]).unwrap();
    let l = rechain(&pristine, 12, &attacker);
    let p = write_lines(&f("resigned.jsonl"), &l);
    let (code, text) = verify_file(&server, None, &[&p]);
    assert_eq!(
        code, 0,
        "a self-signed file proves nothing about who signed it: {text}"
    );
    assert!(text.contains("not independent"), "{text}");
    assert_file_bad(
        verify_file(&server, None, &[&p, "--checkpoint", &trusted]),
        N,
        "key_replaced",
    );
    let pk = parse(&pristine[0])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_file_bad(
        verify_file(&server, None, &[&p, "--public-key", &pk]),
        N,
        "key_replaced",
    );
    // With the server's keys the first re-signed event is named.
    assert_file_bad(verify_file(&server, Some(&dir), &[&p]), 12, "key_replaced");

    // Usage errors exit 2.
    let (code, text) = verify_file(&server, None, &[f("missing.jsonl").to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");

    // Offline from the stopped server: the same events and checkpoints as online.
    server.terminate();
    let offline = f("offline.jsonl");
    let out = export_offline(&server, &dir, &offline);
    assert!(out.status.success(), "{out:?}");
    let off = lines(&offline);
    assert_eq!(off[1..], pristine[1..]);
    assert_eq!(parse(&off[0])["public_key"], header["public_key"]);
    let (code, text) = verify_file(
        &server,
        Some(&dir),
        &[offline.to_str().unwrap(), "--checkpoint", &trusted],
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn an_unsigned_servers_export_is_intact_but_never_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let server = start(&tmp.path().join("server"), &cfg, None);
    for _ in 0..4 {
        let (s, v) = server.post("/api/tokens", None);
        assert_eq!(s, 200, "{v}");
    }
    let file = tmp.path().join("unsigned.jsonl");
    let out = server.cli(&["audit", "export", "--output", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let (code, text) = verify_file(&server, None, &[file.to_str().unwrap()]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("result: unsigned (5 events"), "{text}");
    assert!(!text.to_lowercase().contains("verified"), "{text}");
    // Edits are still caught on an unsigned chain.
    let mut l = lines(&file);
    let i = at(&l, 3);
    l.remove(i);
    let p = write_lines(&tmp.path().join("deleted.jsonl"), &l);
    assert_file_bad(verify_file(&server, None, &[&p]), 3, "missing");
}
