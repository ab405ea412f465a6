//! `audit_bench`: the audit log's targets (issue 5), measured with the `warden_server` library.
//!
//! 1. **Append** (target ≥ 50,000 events/s, signed, chained, durable): `--events` events
//!    through [`Store::audit_append`] in batches of `--batch` (one fsynced redb transaction
//!    each, as the auditor's writer commits them), into a fresh store.
//! 2. **Verify** (target: 1,000,000 events in ≤ 2 s): that chain verified `--verify-runs`
//!    times with [`Store::audit_verify`] (whole chain, HMAC key and checkpoints checked) after
//!    reopening the store (redb's cache starts cold; the OS page cache is warm). Then the
//!    offline path: the chain exported to a file and verified from it, with the verifier's
//!    time and peak memory.
//! 3. **Through the auditor**: [`Auditor::record`] from 1, 8, 64, ... concurrent tokio tasks
//!    for `--record-seconds` each, into another fresh store: events/s (group commit) and the
//!    latency distribution of one call, which is exactly what an audited handler waits for
//!    (target: < 1 ms added at p99).
//! 4. **HTTP, end to end**: an in-process server ([`warden_server::start`] with a temporary
//!    data directory and a KEK file, so events are signed) answering, interleaved, the
//!    unaudited `GET /api/ai/patrol/settings`, the audited `PUT` of the same body (a store
//!    write plus an audit event) and an audited `PUT` that fails validation (an audit event
//!    and no other write), each `--http-requests` times per client.
//!
//! Events look like operator acts: an admin token actor, one of five actions, a 16-hex-digit
//! target, a client address and three details; their canonical fields JSON is about 330
//! bytes. It is a benchmark, not a test: result lines start with `audit-bench:` and are
//! `key=value` pairs.
//!
//! ```text
//! cargo build --release -p warden-tests --bin audit_bench
//! target/release/audit_bench --events 1000000
//! ```

use anyhow::{Context, bail, ensure};
use clap::Parser;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use warden_server::audit::export::{self, ExportSpec, Trust};
use warden_server::audit::keys::{self as audit_keys, Signing};
use warden_server::audit::{AuditConfig, Auditor};
use warden_server::chain::event::{Actor, Event, Keys, NewEvent};
use warden_server::chain::verify::State;
use warden_server::config::{Overrides, RawConfig};
use warden_server::store::Store;

const ORG: &str = warden_shared::DEFAULT_ORG;
/// The benchmark's key-encryption key (only ever in its temporary directory).
const KEK: &[u8] = b"audit-bench key-encryption key, not a secret";
const MIB: f64 = (1u64 << 20) as f64;

#[derive(Debug, Parser)]
#[command(
    name = "audit_bench",
    about = "Audit log benchmark: append rate, verification of a long chain, added latency"
)]
struct Args {
    /// Events appended (and then verified) in phases 1 and 2.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per `audit_append` transaction (the auditor's writer takes up to 1024).
    #[arg(long, default_value_t = 1024)]
    batch: u64,
    /// Whole-chain verifications to time.
    #[arg(long, default_value_t = 3)]
    verify_runs: usize,
    /// Concurrent `Auditor::record` callers, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    concurrency: Vec<usize>,
    /// Seconds each concurrency level runs.
    #[arg(long, default_value_t = 5.0)]
    record_seconds: f64,
    /// Rounds (one GET, one PUT, one rejected PUT) per HTTP client.
    #[arg(long, default_value_t = 2000)]
    http_requests: usize,
    /// Concurrent HTTP clients, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    http_clients: Vec<usize>,
    /// Skip phases 1 and 2 (append and verify).
    #[arg(long)]
    skip_chain: bool,
    /// Skip phase 3 (the auditor).
    #[arg(long)]
    skip_record: bool,
    /// Skip phase 4 (HTTP).
    #[arg(long)]
    skip_http: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("audit-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> anyhow::Result<()> {
    if args.events == 0 || args.batch == 0 || args.verify_runs == 0 || args.http_requests == 0 {
        bail!("--events, --batch, --verify-runs and --http-requests must be at least 1");
    }
    if args.concurrency.contains(&0) || args.http_clients.contains(&0) {
        bail!("--concurrency and --http-clients must be at least 1");
    }
    // reqwest uses rustls; with one provider installed nothing can panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::Builder::new()
        .prefix("audit-bench-")
        .tempdir()
        .context("creating the temporary directory")?;
    println!(
        "audit-bench: events={} batch={} cores={} pid={}",
        args.events,
        args.batch,
        std::thread::available_parallelism().map_or(0, usize::from),
        std::process::id()
    );
    let mut verdicts = Vec::new();
    if !args.skip_chain {
        let dir = tmp.path().join("chain");
        let (rate, verify_s) = chain(args, &dir)?;
        verdicts.push(format!(
            "append_per_s={rate:.0}/50000:{}",
            verdict(rate >= 50_000.0)
        ));
        verdicts.push(format!(
            "verify_1m_s={verify_s:.2}/2:{}",
            verdict(verify_s <= 2.0 * args.events as f64 / 1e6)
        ));
        std::fs::remove_dir_all(&dir).context("removing the chain store")?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    if !args.skip_record {
        let dir = tmp.path().join("record");
        let levels = rt.block_on(record(args, &dir))?;
        // Throughput is a target with many callers (group commit), latency with one: the
        // other levels are reported above for information.
        if let Some(l) = levels.iter().find(|l| l.tasks == 64) {
            verdicts.push(format!(
                "record_c64_per_s={:.0}/50000:{}",
                l.per_s,
                verdict(l.per_s >= 50_000.0)
            ));
        }
        if let Some(l) = levels.iter().find(|l| l.tasks == 1) {
            verdicts.push(format!(
                "record_c1_p99_ms={:.3}/1:{}",
                l.p99_ms,
                verdict(l.p99_ms < 1.0)
            ));
        }
        std::fs::remove_dir_all(&dir).context("removing the auditor's store")?;
    }
    if !args.skip_http {
        let dir = tmp.path().join("http");
        rt.block_on(http(args, &dir))?;
        std::fs::remove_dir_all(&dir).context("removing the server's data directory")?;
    }
    drop(rt);
    println!("audit-bench: verdicts {}", verdicts.join(" "));
    tmp.close().context("removing the temporary directory")?;
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

// ---------------------------------------------------------------------------------------
// Phases 1 and 2: the raw append rate and verification of the chain it built.

/// Appends `--events` events and verifies them; returns the append rate and the median
/// verification time.
fn chain(args: &Args, dir: &Path) -> anyhow::Result<(f64, f64)> {
    let signing = signing(dir)?;
    let keys = signing
        .keys()
        .context("audit signing is unavailable in the benchmark's directory")?;
    let path = dir.join("warden.redb");
    let store = Store::open(&path).context("opening the store")?;
    let every = AuditConfig::default().checkpoint_every;
    let (mut appending, mut building) = (Duration::ZERO, Duration::ZERO);
    let mut commit_ms = Vec::new();
    let mut fields_bytes = 0usize;
    let mut i = 0u64;
    let (s0, wall) = (sched(), Instant::now());
    while i < args.events {
        let k = args.batch.min(args.events - i);
        let t = Instant::now();
        let batch: Vec<NewEvent> = (i..i + k).map(event).collect();
        building += t.elapsed();
        let t = Instant::now();
        let stored =
            store.audit_append(batch, Some(keys), warden_server::clock::now_ms(), every)?;
        let took = t.elapsed();
        appending += took;
        commit_ms.push(took.as_secs_f64() * 1000.0);
        ensure!(
            stored.len() as u64 == k,
            "a batch stored {} events",
            stored.len()
        );
        if i == 0 {
            fields_bytes = stored
                .iter()
                .map(|e| Event::fields_json(&e.fields).len())
                .sum::<usize>()
                / stored.len();
        }
        i += k;
    }
    let (s1, wall) = (sched(), wall.elapsed().as_secs_f64());
    drop(store);
    let bytes = std::fs::metadata(&path)?.len();
    let rate = args.events as f64 / appending.as_secs_f64();
    commit_ms.sort_by(f64::total_cmp);
    println!(
        "audit-bench: append events={} commits={} append_s={:.2} append_events_per_s={rate:.0} build_s={:.2} commit_ms_p50={:.2} commit_ms_p99={:.2} commit_ms_max={:.2} {}",
        args.events,
        commit_ms.len(),
        appending.as_secs_f64(),
        building.as_secs_f64(),
        pct(&commit_ms, 50.0),
        pct(&commit_ms, 99.0),
        commit_ms.last().copied().unwrap_or_default(),
        s0.since(&s1, wall)
    );
    println!(
        "audit-bench: store_mib={:.1} bytes_per_event={:.0} fields_json_bytes_avg={fields_bytes} checkpoint_every={every}",
        bytes as f64 / MIB,
        bytes as f64 / args.events as f64
    );

    // Reopened, as after a restart: redb's cache starts cold (the OS page cache does not).
    let store = Store::open(&path).context("reopening the store")?;
    let mut runs = Vec::new();
    for run in 1..=args.verify_runs {
        let (s0, t) = (sched(), Instant::now());
        let report = store.audit_verify(ORG, None, None, Some(keys))?;
        let (secs, s1) = (t.elapsed().as_secs_f64(), sched());
        ensure!(
            report.state == State::Verified
                && report.checked == args.events
                && report.problem.is_none(),
            "the chain did not verify: {report:?}"
        );
        println!(
            "audit-bench: verify run={run} events={} verify_s={secs:.3} events_per_s={:.0} state=verified checkpoint={} {}",
            report.checked,
            report.checked as f64 / secs,
            report.checkpoint.unwrap_or_default(),
            s0.since(&s1, secs)
        );
        runs.push(secs);
    }
    let first = runs[0];
    runs.sort_by(f64::total_cmp);
    let median = runs[runs.len() / 2];
    println!(
        "audit-bench: verify_s_median={median:.3} verify_s_first={first:.3} runs={}",
        runs.len()
    );
    offline(args, &store, keys, &dir.join("export.jsonl"))?;
    Ok((rate, median))
}

/// `warden audit export` and `warden audit verify` of the whole chain, in-process: the
/// export's time and size, and the verifier's time and peak memory above what the process
/// held before it (the kernel's high-water mark, reset first).
fn offline(args: &Args, store: &Store, keys: &Keys, path: &Path) -> anyhow::Result<()> {
    let t = Instant::now();
    let out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let spec = ExportSpec {
        org: ORG.into(),
        from: None,
        to: None,
        public_key: Some(keys.public_key()),
        exported_at: "2026-01-01T00:00:00Z".into(),
    };
    export::export_store(store, spec, out, &mut |_, _| {})?;
    let export_s = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path)?.len();
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
    let before = status_kib("VmRSS")?;
    let t = Instant::now();
    let trust = Trust {
        checkpoint: None,
        public_key: None,
        keys: Some(keys),
    };
    let verdict = export::verify_path(path, &trust)?;
    let verify_s = t.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM")?;
    ensure!(
        verdict.report.state == State::Verified && verdict.report.checked == args.events,
        "the export did not verify: {:?}",
        verdict.report
    );
    println!(
        "audit-bench: offline events={} export_s={export_s:.2} file_mib={:.1} verify_s={verify_s:.2} verify_peak_mib_above_base={:.1} bytes_per_event_held={:.0}",
        args.events,
        bytes as f64 / MIB,
        peak.saturating_sub(before) as f64 / 1024.0,
        peak.saturating_sub(before) as f64 * 1024.0 / args.events as f64
    );
    std::fs::remove_file(path)?;
    Ok(())
}

/// A `/proc/self/status` memory line, in KiB.
fn status_kib(key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/self/status"))
}

// ---------------------------------------------------------------------------------------
// Phase 3: through the auditor.

/// One concurrency level of [`record`].
struct Level {
    tasks: usize,
    per_s: f64,
    p99_ms: f64,
}

/// Records through [`Auditor::record`] at each concurrency level.
async fn record(args: &Args, dir: &Path) -> anyhow::Result<Vec<Level>> {
    let signing = signing(dir)?;
    ensure!(signing.keys().is_some(), "audit signing is unavailable");
    let store = Arc::new(Store::open(&dir.join("warden.redb")).context("opening the store")?);
    let auditor = Auditor::start(store.clone(), signing, AuditConfig::default())
        .context("starting the auditor")?;
    // Warm-up: the first commits create the tables' pages.
    for i in 0..200 {
        auditor
            .record(event(i))
            .await
            .context("an event was not stored")?;
    }
    let next = Arc::new(AtomicU64::new(200));
    let mut levels = Vec::new();
    for &tasks in &args.concurrency {
        let deadline = Instant::now() + Duration::from_secs_f64(args.record_seconds);
        let (s0, started) = (sched(), Instant::now());
        let mut handles = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let (auditor, next) = (auditor.clone(), next.clone());
            handles.push(warden_server::task::spawn_named(
                "audit-bench",
                async move {
                    let mut lat = Vec::new();
                    let mut failed = 0u64;
                    while Instant::now() < deadline {
                        let e = event(next.fetch_add(1, Ordering::Relaxed));
                        let t = Instant::now();
                        let stored = auditor.record(e).await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        failed += u64::from(stored.is_none());
                    }
                    (lat, failed)
                },
            ));
        }
        let (mut lat, mut failed) = (Vec::new(), 0);
        for h in handles {
            let (l, f) = h.await?;
            lat.extend(l);
            failed += f;
        }
        let (secs, s1) = (started.elapsed().as_secs_f64(), sched());
        ensure!(failed == 0, "{failed} events were not stored");
        lat.sort_by(f64::total_cmp);
        let per_s = lat.len() as f64 / secs;
        println!(
            "audit-bench: record tasks={tasks} events={} seconds={secs:.1} events_per_s={per_s:.0} latency_ms_p50={:.3} latency_ms_p90={:.3} latency_ms_p99={:.3} latency_ms_p999={:.3} latency_ms_max={:.3} {}",
            lat.len(),
            pct(&lat, 50.0),
            pct(&lat, 90.0),
            pct(&lat, 99.0),
            pct(&lat, 99.9),
            lat.last().copied().unwrap_or_default(),
            s0.since(&s1, secs)
        );
        levels.push(Level {
            tasks,
            per_s,
            p99_ms: pct(&lat, 99.0),
        });
    }
    let keys = auditor.keys().context("the auditor has no keys")?;
    let t = Instant::now();
    let report = store.audit_verify(ORG, None, None, Some(keys))?;
    ensure!(
        report.state == State::Verified && report.checked == next.load(Ordering::Relaxed),
        "the auditor's chain did not verify: {report:?}"
    );
    println!(
        "audit-bench: record_chain events={} state=verified verify_s={:.3} stored_counter={}",
        report.checked,
        t.elapsed().as_secs_f64(),
        auditor.stats().stored.load(Ordering::Relaxed)
    );
    Ok(levels)
}

// ---------------------------------------------------------------------------------------
// Phase 4: HTTP, end to end.

/// What one request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `GET /api/ai/patrol/settings`: unaudited, one store read.
    Get,
    /// `PUT` of the same settings: one store write and one audit event.
    Put,
    /// `PUT` that fails validation: one audit event (a failure), no other write.
    Rejected,
}

const KINDS: [Kind; 3] = [Kind::Get, Kind::Put, Kind::Rejected];

async fn http(args: &Args, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let kek_file = dir.join("audit-kek");
    warden_io::fs::write_private(&kek_file, KEK)?;
    let raw = RawConfig {
        data_dir: dir.join("data"),
        http_listen: "127.0.0.1:0".into(),
        quic_listen: "127.0.0.1:0".into(),
        patrol_interval: "0".into(),
        audit_kek_file: kek_file,
        ..RawConfig::default()
    };
    let cfg = raw
        .validate(&Overrides::default(), Path::new("audit-bench"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let server = warden_server::start(cfg).await?;
    ensure!(
        server.ctx.audit.keys().is_some(),
        "audit signing is unavailable: {:?}",
        server.ctx.audit.unavailable()
    );
    let token = std::fs::read_to_string(&server.admin_token_path)?
        .trim()
        .to_owned();
    let url = format!("http://{}/api/ai/patrol/settings", server.http_addr);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let settings: Value = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut bad = settings.clone();
    bad["interval"] = json!("1s");
    let bodies = Arc::new((
        serde_json::to_vec(&settings)?,
        serde_json::to_vec(&bad)?,
        url,
        token,
    ));
    let store = server.ctx.store.clone();
    let seq = |s: &Store| s.audit_head(ORG).map(|h| h.map_or(0, |h| h.seq));
    // Warm-up (the first request also records the admin's sign-in).
    for round in 0..100 {
        one(&client, &bodies, KINDS[round % 3]).await?;
    }
    for &clients in &args.http_clients {
        let before = seq(&store)?;
        let (s0, started) = (sched(), Instant::now());
        let mut handles = Vec::new();
        for c in 0..clients {
            let (client, bodies) = (client.clone(), bodies.clone());
            let rounds = args.http_requests;
            handles.push(warden_server::task::spawn_named(
                "audit-bench-http",
                async move {
                    let mut lat: [Vec<f64>; 3] = Default::default();
                    for round in 0..rounds {
                        // Rotate the order so no kind always follows another.
                        for k in 0..3 {
                            let kind = KINDS[(round + c + k) % 3];
                            let t = Instant::now();
                            one(&client, &bodies, kind).await?;
                            lat[kind as usize].push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    Ok::<_, anyhow::Error>(lat)
                },
            ));
        }
        let mut lat: [Vec<f64>; 3] = Default::default();
        for h in handles {
            let l = h.await??;
            for (all, l) in lat.iter_mut().zip(l) {
                all.extend(l);
            }
        }
        let (secs, s1) = (started.elapsed().as_secs_f64(), sched());
        let events = seq(&store)? - before;
        ensure!(
            events == (2 * clients * args.http_requests) as u64,
            "{events} audit events for {} audited requests",
            2 * clients * args.http_requests
        );
        for l in &mut lat {
            l.sort_by(f64::total_cmp);
        }
        let [get, put, rejected] = &lat;
        for (name, l) in [("get", get), ("put", put), ("put_rejected", rejected)] {
            println!(
                "audit-bench: http clients={clients} route={name} requests={} latency_ms_p50={:.3} latency_ms_p90={:.3} latency_ms_p99={:.3} latency_ms_max={:.3}",
                l.len(),
                pct(l, 50.0),
                pct(l, 90.0),
                pct(l, 99.0),
                l.last().copied().unwrap_or_default()
            );
        }
        println!(
            "audit-bench: http clients={clients} seconds={secs:.1} audit_events={events} put_minus_get_ms_p50={:.3} put_minus_get_ms_p99={:.3} rejected_minus_get_ms_p50={:.3} rejected_minus_get_ms_p99={:.3} put_over_get_p99={:.2} rejected_over_get_p99={:.2} {}",
            pct(put, 50.0) - pct(get, 50.0),
            pct(put, 99.0) - pct(get, 99.0),
            pct(rejected, 50.0) - pct(get, 50.0),
            pct(rejected, 99.0) - pct(get, 99.0),
            pct(put, 99.0) / pct(get, 99.0),
            pct(rejected, 99.0) / pct(get, 99.0),
            s0.since(&s1, secs)
        );
    }
    // What a settings write costs without the audit event, measured on the same store.
    let mut write_ms = Vec::new();
    let saved = store
        .patrol_settings(ORG)?
        .context("the settings were not saved")?;
    for _ in 0..200 {
        let t = Instant::now();
        store.set_patrol_settings(ORG, &saved)?;
        write_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    write_ms.sort_by(f64::total_cmp);
    println!(
        "audit-bench: settings_write_only_ms_p50={:.3} settings_write_only_ms_p99={:.3} (Store::set_patrol_settings, the PUT's non-audit write)",
        pct(&write_ms, 50.0),
        pct(&write_ms, 99.0)
    );
    drop(store);
    server.shutdown().await;
    Ok(())
}

/// Sends one request of `kind` and checks its status.
async fn one(
    client: &reqwest::Client,
    bodies: &(Vec<u8>, Vec<u8>, String, String),
    kind: Kind,
) -> anyhow::Result<()> {
    let (good, bad, url, token) = bodies;
    let (req, want) = match kind {
        Kind::Get => (client.get(url), 200),
        Kind::Put => (client.put(url).body(good.clone()), 200),
        Kind::Rejected => (client.put(url).body(bad.clone()), 400),
    };
    let resp = req
        .bearer_auth(token)
        .header("content-type", "application/json")
        .send()
        .await?;
    let status = resp.status().as_u16();
    resp.bytes().await?;
    ensure!(status == want, "{kind:?} answered {status}, not {want}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// Creates (or loads) the signing key in `dir` with the benchmark's KEK file.
fn signing(dir: &Path) -> anyhow::Result<Signing> {
    std::fs::create_dir_all(dir)?;
    let kek_file = dir.join("audit-kek");
    if !kek_file.exists() {
        warden_io::fs::write_private(&kek_file, KEK)?;
    }
    Ok(audit_keys::load(dir, &kek_file, true))
}

/// The `i`th benchmark event.
fn event(i: u64) -> NewEvent {
    const ACTIONS: [&str; 5] = [
        "patrol.finding.acknowledge",
        "token.create",
        "agent.revoke",
        "alert.acknowledge",
        "patrol.settings.update",
    ];
    NewEvent::new(
        Actor::admin(),
        ACTIONS[(i % 5) as usize],
        format!("{:016x}", mix(i)),
    )
    .from_ip(Some(IpAddr::V4(Ipv4Addr::new(
        10,
        0,
        (i >> 8) as u8,
        i as u8,
    ))))
    .details(json!({
        "reason": "expected_behavior",
        "note": "checked by the on-call operator",
        "n": i,
    }))
}

/// The `p`th percentile of sorted values (nearest rank; 0 when empty).
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// This process's CPU time (from `/proc/self/stat`, exited threads included), the run-queue
/// wait of each of its live threads (from `/proc/self/task/*/schedstat`), and the machine's
/// CPU counters, so far.
fn sched() -> Sched {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start with field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime and stime (fields 14 and 15) in clock ticks of 10 ms.
    let cpu_ms = 10.0 * (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0));
    let mut wait_ms = std::collections::HashMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            let wait = text
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1e6;
            wait_ms.insert(t.file_name(), wait);
        }
    }
    Sched {
        cpu_ms,
        wait_ms,
        machine: machine(),
    }
}

/// Readings of [`sched`].
#[derive(Debug, Default, Clone)]
struct Sched {
    cpu_ms: f64,
    /// Run-queue wait by thread id.
    wait_ms: std::collections::HashMap<std::ffi::OsString, f64>,
    /// Busy, iowait and total jiffies of the whole machine.
    machine: [f64; 3],
}

impl Sched {
    /// `process_cpu_pct` (of one core), `runqueue_wait_pct` (of wall time, summed over the
    /// threads alive at the end; threads that exited in between are not counted) and the
    /// machine's busy and iowait percentages between `self` and `later`, as result fields.
    fn since(&self, later: &Self, secs: f64) -> String {
        let [b0, w0, t0] = self.machine;
        let [b1, w1, t1] = later.machine;
        let total = (t1 - t0).max(1.0);
        let wait: f64 = later
            .wait_ms
            .iter()
            .map(|(tid, w)| w - self.wait_ms.get(tid).copied().unwrap_or(0.0))
            .sum();
        format!(
            "process_cpu_pct={:.0} runqueue_wait_pct={:.0} machine_busy_pct={:.0} machine_iowait_pct={:.0}",
            (later.cpu_ms - self.cpu_ms) / (10.0 * secs),
            wait / (10.0 * secs),
            100.0 * (b1 - b0) / total,
            100.0 * (w1 - w0) / total
        )
    }
}

/// Busy, iowait and total jiffies of all CPUs, from `/proc/stat`.
fn machine() -> [f64; 3] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    [busy, get(4), busy + get(3) + get(4)]
}

/// splitmix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
