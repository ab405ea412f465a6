//! `chunk_bench`: bytes per sample of the server's chunk codec on what real agents send.
//!
//! `capture` reads every series of a running `warden` (e.g. `warden demo`: this machine's host
//! and Docker collectors, the PVE, PBS and Kubernetes simulators) through the HTTP API over
//! a time range and writes them as one JSON document. `measure` cuts each series of such a
//! document into chunk windows (aligned like the store's: multiples of `--window` since the
//! epoch), encodes every window with `warden_server::store::chunk`, checks that it decodes
//! bit for bit, and prints the encoded size per sample, per collector family and overall:
//! once for the values as captured and once rounded to the precision the agent now sends
//! (`warden_shared::metric::round`; see `docs/metrics-precision.md`).
//!
//! It is a benchmark, not a test: it prints figures. Every result line starts with
//! `chunk-bench:` and is a list of `key=value` pairs, so scripts can grep them.
//!
//! ```text
//! scripts/bench-chunks.sh                     # the committed dataset
//! target/debug/chunk_bench capture --url http://127.0.0.1:8080 \
//!     --token-file /tmp/warden-demo/server/admin-token --from <ms> --to <ms> > data.json
//! target/debug/chunk_bench measure --input data.json --by-metric
//! ```

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_server::store::chunk;
use warden_shared::metric;

/// Bytes per sample of the store before chunks (`docs/PERFORMANCE.md`, the ingest bench's
/// `store_bytes_per_sample`): one redb entry per sample.
const OLD_STORE_BYTES_PER_SAMPLE: f64 = 86.4;

#[derive(Debug, Parser)]
#[command(name = "chunk_bench", about = "Chunk codec size on real agent data")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reads every series of a running server over a time range; writes JSON to stdout.
    Capture {
        /// The server's HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// A file holding an admin API token.
        #[arg(long)]
        token_file: PathBuf,
        /// Start of the range, Unix ms (inclusive).
        #[arg(long)]
        from: i64,
        /// End of the range, Unix ms (inclusive).
        #[arg(long)]
        to: i64,
        /// Free text saying where the data came from, kept in the document.
        #[arg(long, default_value = "")]
        provenance: String,
    },
    /// Encodes a captured document in chunks and prints bytes per sample.
    Measure {
        /// The JSON document (`-` for stdin).
        #[arg(long, default_value = "-")]
        input: String,
        /// Chunk window, in seconds.
        #[arg(long, default_value_t = 3600)]
        window_secs: i64,
        /// Which values to encode.
        #[arg(long, value_enum, default_value_t = Precision::Both)]
        precision: Precision,
        /// Also print one line per metric name (labels stripped).
        #[arg(long)]
        by_metric: bool,
        /// Also measure with the timestamps rounded to this many ms (a what-if: the agent
        /// sends millisecond timestamps; samples that then share a timestamp keep the first).
        #[arg(long)]
        round_ts_ms: Option<i64>,
        /// Also store the rounded dataset in a real store (a temporary redb file), seal it and
        /// print what each tier takes on disk per sample, redb's overhead included.
        #[arg(long)]
        store: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Precision {
    /// The values as captured.
    Captured,
    /// Rounded as the agent rounds at the source (`metric::round`).
    Source,
    /// Both, one after the other.
    Both,
}

/// A captured dataset.
#[derive(Debug, Serialize, Deserialize)]
struct Dataset {
    provenance: String,
    from_ms: i64,
    to_ms: i64,
    series: Vec<Series>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Series {
    /// host, docker, pve, pbs, k8s.
    family: String,
    resource_id: String,
    metric: String,
    /// Timestamp (Unix ms) and value, ascending.
    points: Vec<(i64, f64)>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Capture {
            url,
            token_file,
            from,
            to,
            provenance,
        } => capture(&url, &token_file, from, to, provenance),
        Command::Measure {
            input,
            window_secs,
            precision,
            by_metric,
            round_ts_ms,
            store,
        } => measure(&input, window_secs, precision, by_metric, round_ts_ms)
            .and_then(|doc| if store { store_figures(&doc) } else { Ok(()) }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chunk-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The family a resource's collector belongs to.
fn family(collector: &str) -> &str {
    match collector {
        "proxmox" => "pve",
        "kubernetes" => "k8s",
        other => other,
    }
}

fn capture(
    url: &str,
    token_file: &PathBuf,
    from: i64,
    to: i64,
    provenance: String,
) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading {}", token_file.display()))?;
    let token = token.trim().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let series = runtime.block_on(fetch(url, &token, from, to))?;
    let doc = Dataset {
        provenance,
        from_ms: from,
        to_ms: to,
        series,
    };
    let samples: usize = doc.series.iter().map(|s| s.points.len()).sum();
    eprintln!(
        "chunk-bench: captured series={} samples={samples}",
        doc.series.len()
    );
    serde_json::to_writer(std::io::stdout().lock(), &doc)?;
    Ok(())
}

async fn fetch(url: &str, token: &str, from: i64, to: i64) -> anyhow::Result<Vec<Series>> {
    // reqwest uses rustls; with one provider installed nothing can panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let get = |path: String, query: Vec<(&'static str, String)>| {
        let client = client.clone();
        async move {
            let target = reqwest::Url::parse_with_params(&format!("{url}{path}"), &query)?;
            let resp = client.get(target).bearer_auth(token).send().await?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await?;
            if !status.is_success() {
                bail!("GET {path}: {status}: {body}");
            }
            anyhow::Ok(body)
        }
    };
    let mut resources = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "1000".to_owned())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page = get("/api/resources".into(), query).await?;
        if let Some(items) = page["items"].as_array() {
            resources.extend(items.iter().cloned());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut out = Vec::new();
    for r in &resources {
        let (Some(id), Some(collector)) = (r["id"].as_str(), r["collector"].as_str()) else {
            continue;
        };
        let Some(metrics) = r["metrics"].as_object() else {
            continue;
        };
        for name in metrics.keys() {
            let query = vec![
                ("resource_id", id.to_owned()),
                ("metric", name.clone()),
                ("from", from.to_string()),
                ("to", to.to_string()),
            ];
            let body = get("/api/metrics/history".into(), query).await?;
            let points: Vec<(i64, f64)> = serde_json::from_value(body["points"].clone())
                .with_context(|| format!("points of {id} {name}"))?;
            if !points.is_empty() {
                out.push(Series {
                    family: family(collector).to_owned(),
                    resource_id: id.to_owned(),
                    metric: name.clone(),
                    points,
                });
            }
        }
    }
    Ok(out)
}

/// Encoded size of a set of series.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    series: usize,
    samples: usize,
    chunks: usize,
    bytes: usize,
}

impl Tally {
    fn add(&mut self, other: Self) {
        self.series += other.series;
        self.samples += other.samples;
        self.chunks += other.chunks;
        self.bytes += other.bytes;
    }

    fn print(&self, precision: &str, what: &str) {
        let per = self.bytes as f64 / self.samples.max(1) as f64;
        println!(
            "chunk-bench: precision={precision} {what} series={} samples={} chunks={} \
             samples_per_chunk={:.0} bytes={} bytes_per_sample={per:.3} ratio_vs_old_store={:.0}",
            self.series,
            self.samples,
            self.chunks,
            self.samples as f64 / self.chunks.max(1) as f64,
            self.bytes,
            OLD_STORE_BYTES_PER_SAMPLE / per.max(f64::MIN_POSITIVE),
        );
    }
}

/// Encodes one series in windows and checks each chunk decodes to the same bits.
fn encode_series(points: &[(i64, f64)], window_ms: i64) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        series: 1,
        ..Tally::default()
    };
    let mut rest = points;
    while let Some(&(t, _)) = rest.first() {
        let end = t.div_euclid(window_ms) * window_ms + window_ms;
        let n = rest.partition_point(|&(ts, _)| ts < end);
        let (window, tail) = rest.split_at(n);
        let bytes = chunk::encode(window);
        let back = chunk::decode(&bytes).context("decoding a chunk just encoded")?;
        let same = back.len() == window.len()
            && back
                .iter()
                .zip(window)
                .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits());
        if !same {
            bail!("chunk did not round-trip ({} samples)", window.len());
        }
        tally.samples += window.len();
        tally.chunks += 1;
        tally.bytes += bytes.len();
        rest = tail;
    }
    Ok(tally)
}

fn measure(
    input: &str,
    window_secs: i64,
    precision: Precision,
    by_metric: bool,
    round_ts_ms: Option<i64>,
) -> anyhow::Result<Dataset> {
    let mut text = String::new();
    if input == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(input).with_context(|| format!("reading {input}"))?;
    }
    let doc: Dataset = serde_json::from_str(&text).context("parsing the dataset")?;
    let window_ms = window_secs.saturating_mul(1000);
    if window_ms <= 0 {
        bail!("--window-secs must be positive");
    }
    println!(
        "chunk-bench: dataset series={} from_ms={} to_ms={} window_ms={window_ms} provenance={:?}",
        doc.series.len(),
        doc.from_ms,
        doc.to_ms,
        doc.provenance
    );
    if round_ts_ms.is_some_and(|ms| ms <= 0) {
        bail!("--round-ts-ms must be positive");
    }
    let mut runs: Vec<(String, bool, Option<i64>)> = match precision {
        Precision::Captured => vec![("captured".into(), false, None)],
        Precision::Source => vec![("source".into(), true, None)],
        Precision::Both => vec![
            ("captured".into(), false, None),
            ("source".into(), true, None),
        ],
    };
    if let Some(ms) = round_ts_ms {
        runs.push((format!("source+ts{ms}ms"), true, Some(ms)));
    }
    for (name, round, ts_step) in &runs {
        let name = name.as_str();
        let mut families: BTreeMap<&str, Tally> = BTreeMap::new();
        let mut metrics: BTreeMap<(&str, &str), Tally> = BTreeMap::new();
        let mut all = Tally::default();
        for s in &doc.series {
            let mut points: Vec<(i64, f64)> = s
                .points
                .iter()
                .map(|&(t, v)| {
                    let t = ts_step.map_or(t, |step| (t + step / 2).div_euclid(step) * step);
                    let v = if *round {
                        metric::round(&s.metric, v)
                    } else {
                        v
                    };
                    (t, v)
                })
                .collect();
            points.dedup_by_key(|p| p.0);
            let t = encode_series(&points, window_ms)
                .with_context(|| format!("{} {}", s.resource_id, s.metric))?;
            families.entry(&s.family).or_default().add(t);
            metrics
                .entry((&s.family, metric::base(&s.metric)))
                .or_default()
                .add(t);
            all.add(t);
        }
        for (f, t) in &families {
            t.print(name, &format!("family={f}"));
        }
        all.print(name, "family=all");
        if by_metric {
            for ((f, m), t) in &metrics {
                t.print(name, &format!("family={f} metric={m}"));
            }
        }
    }
    Ok(doc)
}

/// Stores the dataset, rounded at the source, in a fresh store through `Store::ingest`
/// (batches of 5,000 samples), measures the head (one row per sample: the layout before
/// chunks) and the minute tier as rolled up (one row per series and minute), then runs the
/// server's upkeep (packing the minute tier's final hours, sealing) and measures each tier,
/// per stored sample.
fn store_figures(doc: &Dataset) -> anyhow::Result<()> {
    use warden_server::model::IngestItem;
    use warden_server::store::Store;
    use warden_shared::ResourceId;
    use warden_shared::telemetry::{Sample, TelemetryBatch};

    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("warden.redb"))?;
    let samples: Vec<Sample> = doc
        .series
        .iter()
        .map(|s| Ok((ResourceId::new(s.resource_id.clone())?, s)))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flat_map(|(id, s)| {
            s.points.iter().map(move |&(ts_ms, v)| Sample {
                resource_id: id.clone(),
                metric: s.metric.clone(),
                ts_ms,
                value: metric::round(&s.metric, v),
            })
        })
        .collect();
    let n = samples.len() as f64;
    let now = doc.to_ms + 2 * 3_600_000;
    for (seq, part) in samples.chunks(5000).enumerate() {
        let item = IngestItem {
            agent_id: "bench".into(),
            org_id: warden_shared::DEFAULT_ORG.into(),
            batch: TelemetryBatch {
                seq: seq as u64 + 1,
                collector: "bench".into(),
                collected_at_ms: doc.to_ms,
                samples: part.to_vec(),
                ..Default::default()
            },
            provenance: Vec::new(),
        };
        store.ingest(&[item], now)?;
    }
    let before = store.usage()?;
    // The minute tier as rows (rolled up, not packed yet), then the whole upkeep: roll-up,
    // packing of the final hours' minutes, sealing.
    while store.roll_up(now)?.pending {}
    let rolled = store.usage()?;
    while store.pass(now)?.more {}
    let after = store.usage()?;
    let per = |bytes: u64| bytes as f64 / n;
    println!(
        "chunk-bench: store samples={n} series={} head_bytes_per_sample={:.2} chunks={} chunk_bytes_per_sample={:.2} minute_bytes_per_sample={:.2} hour_bytes_per_sample={:.2} head_left={} ratio_head_to_chunks={:.0} minute_rows={} minute_rows_bytes_per_sample={:.2} minute_packed_rows={}",
        after.series,
        per(before.head.bytes),
        after.chunks.entries,
        per(after.chunks.bytes),
        per(after.minute.bytes),
        per(after.hour.bytes),
        after.head.entries,
        before.head.bytes as f64 / after.chunks.bytes.max(1) as f64,
        rolled.minute.entries,
        per(rolled.minute.bytes),
        after.minute.entries,
    );
    Ok(())
}
