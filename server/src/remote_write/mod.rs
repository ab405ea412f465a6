//! The optional Prometheus remote-write (1.0) sink: ships every sample the server stores to
//! an external TSDB (VictoriaMetrics, Mimir, Thanos receive, Prometheus with its receiver on)
//! so a fleet can keep long-term history outside the server. The durable queue is the store's
//! outbox (`store/outbox.rs`); the pure parts (messages, labels, body, verdicts, backoff) are in
//! `plan.rs`; this file has the sender task. Users' side: docs/operations.md, "Remote write".
//!
//! # Invariants
//! - **Every stored sample, at least once, in order.** Ingest appends a commit's samples to the
//!   outbox in its own transaction; the sender reads the oldest rows, posts them and deletes
//!   them only after a 2xx, so a crash or restart resends what was not acknowledged
//!   (Prometheus treats an identical sample as a no-op; VictoriaMetrics keeps it twice unless
//!   it runs with `-dedup.minScrapeInterval`). One request is in flight at a time.
//! - **Failures wait, refusals do not block.** 429, 5xx, timeouts and connection errors retry
//!   the same batch after [`plan::Schedule`]'s backoff, or after the receiver's `Retry-After`
//!   when that is longer (capped at [`plan::MAX_RETRY_AFTER`]); parts of it already stored go
//!   again, harmlessly. A 400 is retried as halves down to single series ([`plan::Bisect`]),
//!   so only the series the receiver refuses are dropped; any other status drops the part.
//!   Dropped samples are counted as rejected and each refusing status is logged once.
//! - **Bounded.** The outbox holds at most `max_backlog_samples`; past it ingest drops the
//!   oldest rows (counted). Ingest never waits for the receiver.
//! - **Secrets stay put.** The bearer token or basic-auth password is only put on requests,
//!   never logged.

pub mod plan;

use crate::config::{RemoteWriteAuth, RemoteWriteConfig};
use crate::store::{OutboxAck, OutboxLimits, Store, StoreError};
use plan::{Schedule, Verdict};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// Pause between looks at an empty outbox.
const IDLE: Duration = Duration::from_millis(250);
/// Pause after a store failure.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// Longest part of a refusing receiver's answer that is logged.
const MAX_ERROR: usize = 512;

/// Turns the store's outbox on when the sink is configured; run before ingest starts. With the
/// sink off, rows an earlier run left are kept (and reported) for when it is on again.
pub fn configure(store: &Store, cfg: Option<&RemoteWriteConfig>) {
    store.set_outbox(cfg.map(|c| OutboxLimits {
        max_backlog_samples: c.max_backlog_samples,
        row_samples: c.batch_samples,
    }));
    if cfg.is_none()
        && let Ok(stats) = store.outbox_stats()
        && stats.backlog_samples > 0
    {
        warn!(
            backlog_samples = stats.backlog_samples,
            "remote_write is off; samples of an earlier run wait in its outbox"
        );
    }
}

/// Ships the outbox to the receiver until shutdown.
pub async fn run(cfg: RemoteWriteConfig, store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    let client = match crate::webhooks::http_client(cfg.timeout) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "remote write is off: cannot build the HTTP client");
            return;
        }
    };
    info!(url = %cfg.url, batch_samples = cfg.batch_samples, "remote write on");
    let mut sender = Sender {
        schedule: Schedule::new(cfg.retry_base, cfg.retry_max),
        cfg,
        client,
        store,
        refused: HashSet::new(),
    };
    loop {
        let pause = sender.step().await;
        if let Some(pause) = pause {
            tokio::select! {
                _ = shutdown.wait_for(|v| *v) => break,
                () = tokio::time::sleep(pause) => {}
            }
        } else if *shutdown.borrow() {
            break;
        }
    }
    debug!("remote write stopped");
}

/// A receiver's answer to one request.
struct Answer {
    status: u16,
    /// The start of a failure's body (empty on success).
    text: String,
    /// The wait its `Retry-After` asks for, if it sent a valid one.
    retry_after: Option<Duration>,
}

struct Sender {
    cfg: RemoteWriteConfig,
    client: reqwest::Client,
    store: Arc<Store>,
    schedule: Schedule,
    /// Statuses already logged as refusals.
    refused: HashSet<u16>,
}

impl Sender {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        crate::store::call(&self.store, "remote-write", f).await
    }

    /// Sends the oldest batch once; returns how long to wait before the next step (`None`:
    /// go on at once).
    async fn step(&mut self) -> Option<Duration> {
        let max = self.cfg.batch_samples as u64;
        let started = std::time::Instant::now();
        let batch = match self.blocking(move |s| s.outbox_next(max)).await {
            Ok(Some(b)) => b,
            Ok(None) => return Some(IDLE),
            Err(e) => {
                error!(error = %e, "cannot read the remote-write outbox");
                return Some(STORE_RETRY);
            }
        };
        let read = started.elapsed();
        let mut bisect = plan::Bisect::new(plan::request(&batch));
        let (mut bytes, mut requests) = (0, 0);
        // Why the batch failed, and how long the receiver asked us to wait.
        let mut failure: Option<(String, Option<Duration>)> = None;
        while let Some(part) = bisect.next_part() {
            let body = match plan::body(&part) {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, "cannot encode a remote-write request; dropping it");
                    bisect.record(part, Verdict::Rejected, 0);
                    continue;
                }
            };
            bytes += body.len();
            requests += 1;
            match self.post(body).await {
                Ok(Answer {
                    status,
                    text: answer,
                    retry_after,
                }) => {
                    let verdict = plan::verdict(status);
                    if verdict == Verdict::Retry {
                        failure = Some((format!("status {status}: {answer}"), retry_after));
                        break;
                    }
                    if verdict == Verdict::Rejected && self.refused.insert(status) {
                        error!(
                            status,
                            answer = %answer,
                            series = part.timeseries.len(),
                            "remote write receiver refused a request; its samples are dropped \
                             (a 400 is retried as halves to keep the rest; logged once per status)"
                        );
                    }
                    bisect.record(part, verdict, status);
                }
                Err(e) => {
                    failure = Some((e, None));
                    break;
                }
            }
        }
        let Some((failure, retry_after)) = failure else {
            if self.schedule.failures() > 0 {
                info!(
                    failures = self.schedule.failures(),
                    "remote write receiver recovered"
                );
            }
            self.schedule.succeeded();
            let ack = if bisect.rejected == 0 {
                OutboxAck {
                    sent: batch.samples,
                    rejected: 0,
                }
            } else {
                OutboxAck {
                    sent: bisect.sent,
                    rejected: batch.samples.saturating_sub(bisect.sent),
                }
            };
            let sent = started.elapsed();
            let next = self.ack(batch.last_key, ack).await;
            debug!(
                samples = batch.samples,
                rejected = ack.rejected,
                bytes,
                requests,
                read_ms = read.as_millis(),
                post_ms = (sent - read).as_millis(),
                ack_ms = (started.elapsed() - sent).as_millis(),
                "remote write batch done"
            );
            return next;
        };
        self.store.outbox_failed();
        let now = crate::clock::now_ms();
        let at = self
            .schedule
            .failed(now, rand::random::<f64>(), retry_after);
        let wait_ms = at - now;
        if let Some(asked) = retry_after {
            // Logged each time: a receiver that sheds load says so on every answer.
            warn!(
                error = %failure,
                failures = self.schedule.failures(),
                retry_after_ms = asked.as_millis(),
                wait_ms,
                "remote write receiver asked to retry later (retry-after); waiting"
            );
        } else if self.schedule.failures() == 1 {
            warn!(error = %failure, wait_ms, "remote write failed; retrying with backoff");
        } else {
            debug!(error = %failure, failures = self.schedule.failures(), wait_ms, "remote write failed again");
        }
        Some(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
    }

    /// Posts one request body; the receiver's answer, or why there is none.
    async fn post(&self, body: Vec<u8>) -> Result<Answer, String> {
        let mut req = self
            .client
            .post(&self.cfg.url)
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        req = match &self.cfg.auth {
            Some(RemoteWriteAuth::Bearer(t)) => req.bearer_auth(t),
            Some(RemoteWriteAuth::Basic { user, password }) => req.basic_auth(user, Some(password)),
            None => req,
        };
        let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(Answer {
                status,
                text: String::new(),
                retry_after: None,
            });
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| plan::retry_after(v, crate::clock::now_ms()));
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(MAX_ERROR).collect();
        debug!(status, answer = %text, ?retry_after, "remote write receiver answered");
        Ok(Answer {
            status,
            text,
            retry_after,
        })
    }

    /// Records what became of the rows up to `last_key`.
    async fn ack(&self, last_key: u64, ack: OutboxAck) -> Option<Duration> {
        match self.blocking(move |s| s.outbox_ack(last_key, ack)).await {
            Ok(_) => None,
            Err(e) => {
                // The rows stay and go out again: at least once.
                error!(error = %e, "cannot record a remote-write batch; it will be sent again");
                Some(STORE_RETRY)
            }
        }
    }
}
