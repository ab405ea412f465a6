//! Metric history reads and store figures on a real server fed by a real (simulated) agent:
//! raw and downsampled history, the tier that answers a step, several series in one
//! `POST /api/metrics/query` equal to one-series answers, every refusal, `GET /api/store` and
//! the store's lines in `/metrics`.

use serde_json::{Value, json};
use std::time::Duration;
use warden_shared::metric;
use warden_tests::{AgentProc, ServerProc, eventually, now_ms};

const HOST: &str = "mqnode";

fn history(server: &ServerProc, metric: &str, query: &str) -> Value {
    let (s, v) = server.get(&format!(
        "/api/metrics/history?resource_id=node:{HOST}&metric={metric}&{query}"
    ));
    assert_eq!(s, 200, "{query}: {v}");
    v
}

/// `(ms, value)` of an answer's points.
fn points(v: &Value) -> Vec<(i64, f64)> {
    v["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points: {v}"))
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

/// Means, minima and maxima of `raw` per bucket of `step`.
fn by_bucket(raw: &[(i64, f64)], step: i64) -> Vec<(i64, f64, f64, f64)> {
    let mut out: Vec<(i64, Vec<f64>)> = Vec::new();
    for &(t, v) in raw {
        let b = t.div_euclid(step) * step;
        match out.last_mut() {
            Some((last, vs)) if *last == b => vs.push(v),
            _ => out.push((b, vec![v])),
        }
    }
    out.into_iter()
        .map(|(b, vs)| {
            let mean = vs.iter().sum::<f64>() / vs.len() as f64;
            let min = vs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (b, mean, min, max)
        })
        .collect()
}

/// Asserts a stepped answer holds exactly the per-bucket aggregates of `raw`.
fn assert_buckets_of(v: &Value, raw: &[(i64, f64)], step: i64) {
    let want = by_bucket(raw, step);
    let got = points(v);
    assert_eq!(got.len(), want.len(), "{v}");
    let (min, max) = (v["min"].as_array().unwrap(), v["max"].as_array().unwrap());
    assert_eq!((min.len(), max.len()), (got.len(), got.len()), "{v}");
    for (i, ((t, mean), (wt, wmean, wmin, wmax))) in got.iter().zip(&want).enumerate() {
        assert_eq!(t, wt, "{v}");
        assert!((mean - wmean).abs() <= 1e-9 * wmean.abs().max(1.0), "{v}");
        assert_eq!(min[i].as_f64(), Some(*wmin), "{v}");
        assert_eq!(max[i].as_f64(), Some(*wmax), "{v}");
    }
}

#[test]
fn history_and_queries_are_bounded_say_their_tier_and_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    let from = now_ms() - 1000;
    let mut agent = AgentProc::simulated(&tmp.path().join("a"), HOST, "1s");
    agent.enroll_ok(&server.token("10m"));
    agent.start(&[]);
    let range = |to: i64| format!("from={from}&to={to}");
    eventually(Duration::from_secs(30), "a dozen cpu samples", || {
        let v = history(&server, metric::CPU_PCT, &range(now_ms()));
        (points(&v).len() >= 12).then_some(())
    });
    // Stop the data: every read below sees the same samples.
    agent.terminate();
    std::thread::sleep(Duration::from_secs(1));
    let to = now_ms();
    let q = range(to);

    // Raw: every point, no step.
    let raw_answer = history(&server, metric::CPU_PCT, &q);
    let raw = points(&raw_answer);
    assert!(raw.len() >= 12, "{raw_answer}");
    assert_eq!(raw_answer["tier"], "raw", "{raw_answer}");
    assert_eq!(raw_answer["downsampled"], false, "{raw_answer}");
    assert!(raw_answer["step_ms"].is_null(), "{raw_answer}");
    assert_eq!(raw_answer["resource_id"], format!("node:{HOST}"));
    assert_eq!(raw_answer["metric"], metric::CPU_PCT);
    assert!(raw_answer["source"].is_string(), "{raw_answer}");
    assert!(raw_answer.get("min").is_none(), "{raw_answer}");
    // Just enough room: still raw.
    let exact = history(
        &server,
        metric::CPU_PCT,
        &format!("{q}&max_points={}", raw.len()),
    );
    assert_eq!(exact["downsampled"], false, "{exact}");
    assert_eq!(points(&exact), raw);

    // Too many raw points: downsampled to the finest step that fits, from the tiers, with the
    // per-bucket means, minima and maxima of the raw points.
    let down = history(&server, metric::CPU_PCT, &format!("{q}&max_points=3"));
    assert_eq!(down["downsampled"], true, "{down}");
    let step = down["step_ms"].as_i64().unwrap();
    let buckets = to.div_euclid(60_000) - from.div_euclid(60_000) + 1;
    if buckets <= 3 {
        assert_eq!(step, 60_000, "{down}");
        assert_eq!(down["tier"], "minute", "{down}");
    }
    assert!(points(&down).len() <= 3, "{down}");
    assert_buckets_of(&down, &raw, step);
    let one = history(&server, metric::CPU_PCT, &format!("{q}&max_points=1"));
    assert_eq!(one["downsampled"], true, "{one}");
    assert_eq!(points(&one).len(), 1, "{one}");
    assert_buckets_of(&one, &raw, one["step_ms"].as_i64().unwrap());

    // An explicit step names its tier and is never downsampled.
    for (step, ms, tier) in [
        ("1m", 60_000, "minute"),
        ("1h", 3_600_000, "hour"),
        ("5", 5_000, "raw"),
        ("90s", 90_000, "raw"),
    ] {
        let v = history(&server, metric::CPU_PCT, &format!("{q}&step={step}"));
        assert_eq!(v["tier"], tier, "{step}: {v}");
        assert_eq!(v["step_ms"], ms, "{step}: {v}");
        assert_eq!(v["downsampled"], false, "{step}: {v}");
        assert_buckets_of(&v, &raw, ms);
    }

    // Several series in one call equal the one-series answers, raw and stepped; an unknown
    // series has no points. A read writes no audit event.
    let audit_head = || server.get("/api/audit?limit=1").1["items"][0]["seq"].clone();
    let before = audit_head();
    let series = [
        (format!("node:{HOST}"), metric::CPU_PCT),
        (format!("node:{HOST}"), metric::MEM_USED_PCT),
        ("node:nobody".to_owned(), metric::CPU_PCT),
    ];
    let list: Vec<Value> = series
        .iter()
        .map(|(r, m)| json!({ "resource_id": r, "metric": m }))
        .collect();
    for step in [None, Some("1m"), Some("1h")] {
        let mut body = json!({ "series": list, "from": from, "to": to.to_string() });
        if let Some(s) = step {
            body["step"] = json!(s);
        }
        let (s, all) = server.post("/api/metrics/query", Some(body));
        assert_eq!(s, 200, "{all}");
        let got = all["series"].as_array().unwrap();
        assert_eq!(got.len(), 3, "{all}");
        let extra = step.map_or(String::new(), |s| format!("&step={s}"));
        for ((r, m), g) in series.iter().zip(got) {
            let (s, one) = server.get(&format!(
                "/api/metrics/history?resource_id={r}&metric={m}&{q}{extra}"
            ));
            assert_eq!(s, 200, "{one}");
            assert_eq!((&g["resource_id"], &g["metric"]), (&json!(r), &json!(m)));
            for field in ["points", "min", "max", "source", "method"] {
                assert_eq!(g.get(field), one.get(field), "{field} of {r} {m}: {all}");
            }
            for field in ["from", "to", "step_ms", "tier", "downsampled"] {
                assert_eq!(all[field], one[field], "{field}: {all}");
            }
        }
        assert!(!points(&got[0]).is_empty() && !points(&got[1]).is_empty());
        assert!(points(&got[2]).is_empty(), "{all}");
    }
    // Downsampled: one step for every series.
    let (s, all) = server.post(
        "/api/metrics/query",
        Some(json!({ "series": list, "from": from, "to": to, "max_points": 2 })),
    );
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["downsampled"], true, "{all}");
    let step = all["step_ms"].as_i64().unwrap();
    for g in all["series"].as_array().unwrap() {
        assert!(points(g).len() <= 2, "{all}");
    }
    assert_buckets_of(&all["series"][0], &raw, step);
    assert_eq!(audit_head(), before, "a query is not audited");

    // Refusals, each a 400 that says why.
    let bad_queries = [
        "max_points=0".to_owned(),
        "max_points=20001".to_owned(),
        "max_points=x".to_owned(),
        format!("from={to}&to={from}"),
        "step=soon".to_owned(),
        "step=0".to_owned(),
        // 3,601 one-second buckets, more than max_points.
        "from=0&to=3600000&step=1&max_points=3600".to_owned(),
        "from=0&to=8640000000&step=1s".to_owned(),
    ];
    for bad in &bad_queries {
        let (s, v) = server.get(&format!(
            "/api/metrics/history?resource_id=node:{HOST}&metric={}&{bad}",
            metric::CPU_PCT
        ));
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{bad}: {v}");
    }
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({ "resource_id": format!("node:n{i}"), "metric": metric::CPU_PCT }))
        .collect();
    let one_series = json!([{ "resource_id": "node:x", "metric": metric::CPU_PCT }]);
    let bad_bodies = [
        json!({ "series": [] }),
        json!({ "series": too_many }),
        json!({}),
        json!({ "series": one_series, "bogus": 1 }),
        json!({ "series": [{ "resource_id": "node:x", "metric": "m", "step": "1m" }] }),
        json!({ "series": [{ "resource_id": "node:x" }] }),
        json!({ "series": one_series, "from": 10, "to": 5 }),
        json!({ "series": one_series, "from": "yesterday" }),
        json!({ "series": one_series, "step": "soon" }),
        json!({ "series": one_series, "step": 0 }),
        json!({ "series": one_series, "from": 0, "to": 3_600_000, "step": "1s", "max_points": 100 }),
        json!({ "series": one_series, "max_points": 0 }),
        json!({ "series": one_series, "max_points": 20_001 }),
        json!({ "series": one_series, "max_points": -1 }),
    ];
    for bad in &bad_bodies {
        let (s, v) = server.post("/api/metrics/query", Some(bad.clone()));
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{bad}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    // The store's figures.
    let (s, store) = server.get("/api/store");
    assert_eq!(s, 200, "{store}");
    let r = &store["retention"];
    assert_eq!(
        (&r["raw"], &r["minute"], &r["hour"]),
        (&json!("7d"), &json!("50h"), &json!("7d")),
        "{store}"
    );
    assert_eq!(r["raw_ms"], 7 * 86_400_000_i64, "{store}");
    assert_eq!(r["minute_ms"], 50 * 3_600_000_i64, "{store}");
    assert_eq!(store["licensed_history_days"], 7, "{store}");
    let tiers = &store["tiers"];
    for t in ["head", "chunks", "minute", "hour"] {
        assert!(tiers[t]["entries"].is_u64(), "{t}: {store}");
        assert!(tiers[t]["bytes"].is_u64(), "{t}: {store}");
    }
    assert!(tiers["head"]["entries"].as_u64().unwrap() > 0, "{store}");
    assert!(tiers["head"]["bytes"].as_u64().unwrap() > 0, "{store}");
    assert!(store["series"].as_u64().unwrap() >= 2, "{store}");
    // One org here (two are in the store's unit tests): all the series, all the bytes.
    let orgs = store["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 1, "{store}");
    assert_eq!(orgs[0]["org"], "default", "{store}");
    assert_eq!(orgs[0]["series"], store["series"], "{store}");
    let tier_bytes: u64 = ["head", "chunks", "minute", "hour"]
        .iter()
        .map(|t| tiers[*t]["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(orgs[0]["bytes_estimated"], tier_bytes, "{store}");
    let file = store["file_bytes"].as_u64().unwrap();
    assert!(file > 0, "{store}");
    assert_eq!(store["refused_too_old"], 0, "{store}");
    assert!(store["sealed_samples"].is_u64() && store["expired_chunks"].is_u64());
    assert!(
        store["path"].as_str().unwrap().ends_with(".redb"),
        "{store}"
    );
    let disk = &store["disk"];
    assert!(disk["total"].as_u64().unwrap() >= disk["free"].as_u64().unwrap());
    assert!(disk["reserve"].is_u64(), "{store}");

    // The same in /metrics (the usage GET /api/store measured is the one cached).
    let text = server.get_text("/metrics");
    for line in [
        "warden_store_retention_seconds{tier=\"raw\"} 604800",
        "warden_store_retention_seconds{tier=\"minute\"} 180000",
        "warden_store_retention_seconds{tier=\"hour\"} 604800",
        "warden_store_refused_samples_total{reason=\"too_old\"} 0",
        "# TYPE warden_store_sealed_samples_total counter",
        "# TYPE warden_store_expired_chunks_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    for t in ["head", "chunks", "minute", "hour"] {
        for name in ["warden_store_tier_bytes", "warden_store_tier_entries"] {
            let prefix = format!("{name}{{tier=\"{t}\"}} ");
            assert!(
                text.lines().any(|l| l
                    .strip_prefix(&prefix)
                    .is_some_and(|v| v.parse::<u64>().is_ok())),
                "{prefix} missing:\n{text}"
            );
        }
    }
    let head_entries: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("warden_store_tier_entries{tier=\"head\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(head_entries > 0, "{text}");
    let org_series = format!(
        "warden_store_org_series{{org=\"default\"}} {}",
        store["series"]
    );
    assert!(
        text.lines().any(|l| l == org_series),
        "{org_series} missing:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("warden_store_org_bytes_estimated{org=\"default\"} ")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l
            .strip_prefix("warden_store_file_bytes ")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n > 0))),
        "{text}"
    );
}
