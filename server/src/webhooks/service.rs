//! The webhook tasks: a supervisor that keeps one dispatcher per enabled endpoint (started,
//! updated and stopped as the configuration changes), and the dispatcher, which walks its
//! endpoint's outbox cursor along the audit chain, sends, retries and dead-letters.

use super::plan::{self, Message};
use crate::audit::Auditor;
use crate::chain::event::open_stored_secret;
use crate::config::WebhookConfig;
use crate::store::{
    DeadLetter, DeliveryLog, Requeued, RequeuedChange, Retry, Store, StoreError, WebhookCommit,
    WebhookEndpoint, WebhookState,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error, info, warn};

/// Chain messages read per store round trip.
const FETCH: usize = 256;
/// Pause after a store failure before trying again.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// Longest error text kept per attempt.
const MAX_ERROR: usize = 512;

/// A running dispatcher.
struct Running {
    revision: u64,
    endpoint: watch::Sender<Arc<WebhookEndpoint>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            error!(error = %e, "webhook dispatcher panicked");
        }
    }
}

/// Runs the webhook dispatchers until shutdown: re-reads the endpoints whenever the audit log
/// commits (every configuration change is audited, so that covers them) and reconciles.
pub async fn run(cfg: WebhookConfig, auditor: Arc<Auditor>, mut shutdown: watch::Receiver<bool>) {
    let client = match super::http_client(cfg.timeout) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "webhook delivery is off: cannot build the HTTP client");
            return;
        }
    };
    let store = auditor.store().clone();
    let mut audit = auditor.subscribe();
    let mut running: HashMap<(String, String), Running> = HashMap::new();
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.webhook_all()).await {
            Ok(Ok(all)) => {
                reconcile(&mut running, all, &store, &cfg, &client, &auditor).await;
            }
            Ok(Err(e)) => error!(error = %e, "cannot read webhook endpoints"),
            Err(e) => error!(error = %e, "reading webhook endpoints panicked"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|v| *v) => break,
            r = audit.changed() => if r.is_err() { break },
        }
    }
    for (_, r) in running.drain() {
        r.stop().await;
    }
    debug!("webhook dispatchers stopped");
}

async fn reconcile(
    running: &mut HashMap<(String, String), Running>,
    all: Vec<WebhookEndpoint>,
    store: &Arc<Store>,
    cfg: &WebhookConfig,
    client: &reqwest::Client,
    auditor: &Arc<Auditor>,
) {
    let mut wanted: HashMap<(String, String), WebhookEndpoint> = all
        .into_iter()
        .filter(|e| e.enabled)
        .map(|e| ((e.org_id.clone(), e.id.clone()), e))
        .collect();
    let gone: Vec<_> = running
        .iter()
        .filter(|(k, r)| !wanted.contains_key(*k) || r.task.is_finished())
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        if let Some(r) = running.remove(&k) {
            info!(endpoint_id = %k.1, "webhook dispatcher stopping");
            r.stop().await;
        }
    }
    for (k, ep) in wanted.drain() {
        if let Some(r) = running.get_mut(&k) {
            if r.revision != ep.revision {
                r.revision = ep.revision;
                let _ = r.endpoint.send(Arc::new(ep));
            }
            continue;
        }
        info!(endpoint_id = %ep.id, org_id = %ep.org_id, "webhook dispatcher starting");
        let span = tracing::info_span!("webhook", endpoint_id = %ep.id);
        let revision = ep.revision;
        let (endpoint, endpoint_rx) = watch::channel(Arc::new(ep));
        let (stop, stop_rx) = watch::channel(false);
        let d = Dispatcher {
            store: store.clone(),
            cfg: cfg.clone(),
            client: client.clone(),
            auditor: auditor.clone(),
        };
        let signals = Signals {
            endpoint: endpoint_rx,
            audit: auditor.subscribe(),
            stop: stop_rx,
        };
        let task = crate::task::spawn_named("webhook", d.run(signals).instrument(span));
        running.insert(
            k,
            Running {
                revision,
                endpoint,
                stop,
                task,
            },
        );
    }
}

/// What a dispatcher listens to.
struct Signals {
    endpoint: watch::Receiver<Arc<WebhookEndpoint>>,
    audit: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
}

impl Signals {
    /// Waits for new audit commits, an endpoint change, `timeout` or a stop. `true`: stop.
    async fn wait(&mut self, timeout: Option<Duration>) -> bool {
        let sleep = async move {
            match timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.stop.wait_for(|v| *v) => true,
            r = self.audit.changed() => r.is_err(),
            r = self.endpoint.changed() => r.is_err(),
            () = sleep => false,
        }
    }
}

/// The message at the head of the outbox.
enum Head {
    /// A dead letter an operator re-queued.
    Requeued(Requeued),
    /// The next chain message.
    Chain(Message),
}

/// A failed attempt: the status, if the receiver answered, and why.
type Failure = (Option<u16>, String);

struct Dispatcher {
    store: Arc<Store>,
    cfg: WebhookConfig,
    client: reqwest::Client,
    /// Opens sealed endpoint secrets.
    auditor: Arc<Auditor>,
}

impl Dispatcher {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        crate::store::call(&self.store, "webhook", f).await
    }

    async fn run(self, mut sig: Signals) {
        let first = sig.endpoint.borrow_and_update().clone();
        let (org, id) = (first.org_id.clone(), first.id.clone());
        let mut state = loop {
            let (o, i) = (org.clone(), id.clone());
            match self.blocking(move |s| s.webhook_state(&o, &i)).await {
                Ok(Some(s)) => break s,
                Ok(None) => return,
                Err(e) => {
                    error!(error = %e, "cannot read the webhook outbox");
                    if sig.wait(Some(STORE_RETRY)).await {
                        return;
                    }
                }
            }
        };
        let mut buf: VecDeque<Message> = VecDeque::new();
        let mut requeued: Option<Requeued> = None;
        let mut check_requeued = true;
        let mut saved_cursor = (state.event_seq, state.checkpoint);
        loop {
            if *sig.stop.borrow() {
                return;
            }
            if sig.audit.has_changed().unwrap_or(false) {
                sig.audit.borrow_and_update();
                check_requeued = true;
            }
            if check_requeued {
                let (o, i) = (org.clone(), id.clone());
                match self
                    .blocking(move |s| s.webhook_next_requeued(&o, &i))
                    .await
                {
                    Ok(r) => {
                        requeued = r;
                        check_requeued = false;
                    }
                    Err(e) => {
                        error!(error = %e, "cannot read re-queued webhook letters");
                        if sig.wait(Some(STORE_RETRY)).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let ep = sig.endpoint.borrow_and_update().clone();
            let head = match &requeued {
                Some(r) => Some(Head::Requeued(r.clone())),
                None => match self.next_chain(&ep, &mut state, &mut buf).await {
                    Ok(m) => m.map(Head::Chain),
                    Err(e) => {
                        error!(error = %e, "cannot read the audit chain for webhooks");
                        if sig.wait(Some(STORE_RETRY)).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let Some(head) = head else {
                // Idle: keep the progress over filtered events, so a restart need not rescan.
                if (state.event_seq, state.checkpoint) != saved_cursor {
                    let c = WebhookCommit {
                        state: state.clone(),
                        log: None,
                        dead: None,
                        requeued: None,
                    };
                    match self.commit(&org, &id, c).await {
                        Ok(true) => saved_cursor = (state.event_seq, state.checkpoint),
                        Ok(false) => return,
                        Err(e) => error!(error = %e, "cannot save the webhook cursor"),
                    }
                }
                if sig.wait(None).await {
                    return;
                }
                check_requeued = true;
                continue;
            };
            let retry = match &head {
                Head::Requeued(r) => &r.retry,
                Head::Chain(_) => &state.retry,
            };
            let now = crate::clock::now_ms();
            if let Some(at) = retry.retry_at_ms.filter(|at| *at > now) {
                let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
                if sig.wait(Some(wait)).await {
                    return;
                }
                check_requeued = true;
                continue;
            }
            let (message, delivery_seq) = match &head {
                Head::Requeued(r) => (r.letter.message.clone(), r.letter.delivery_seq),
                Head::Chain(m) => match m.body(&ep.id, state.next_delivery_seq) {
                    Some(b) => (b, state.next_delivery_seq),
                    None => {
                        // Verification of the chain reports it; the receiver sees the seq gap.
                        error!(key = ?m.key(), "audit record does not decode; not delivered");
                        pass(&mut state, m);
                        buf.pop_front();
                        continue;
                    }
                },
            };
            let kind = match &head {
                Head::Requeued(r) => r.letter.kind.clone(),
                Head::Chain(m) => m.kind().to_owned(),
            };
            let body = serde_json::to_vec(&message).unwrap_or_default();
            let at_ms = crate::clock::now_ms();
            let started = Instant::now();
            let result = tokio::select! {
                r = self.send(&ep, &body, delivery_seq, &kind) => r,
                _ = sig.stop.wait_for(|v| *v) => return,
                r = sig.endpoint.changed() => {
                    if r.is_err() {
                        return;
                    }
                    // Changed mid-flight (new URL or secret): not an attempt; resend with it.
                    continue;
                }
            };
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let retry_flag = matches!(head, Head::Requeued(_));
            let prior = match &head {
                Head::Requeued(r) => r.retry.attempts,
                Head::Chain(_) => state.retry.attempts,
            };
            let attempt = prior + 1;
            let mut next = state.clone();
            let (audit_seq, tree_size) = match &head {
                Head::Requeued(r) => (r.letter.audit_seq, r.letter.tree_size),
                Head::Chain(Message::Event(e)) => (Some(e.seq), None),
                Head::Chain(Message::Checkpoint(c)) => (None, Some(c.tree_size)),
            };
            let dead_now = result.is_err() && attempt >= self.cfg.max_attempts;
            let outcome = match (&result, dead_now) {
                (Ok(_), _) => "delivered",
                (Err(_), true) => "dead_lettered",
                (Err(_), false) => "failed",
            };
            let log = DeliveryLog {
                log_seq: next.next_log,
                delivery_seq,
                kind: kind.clone(),
                audit_seq,
                tree_size,
                attempt,
                retry: retry_flag,
                at_ms,
                status: match &result {
                    Ok(s) => Some(*s),
                    Err((s, _)) => *s,
                },
                error: result.as_ref().err().map(|(_, e)| e.clone()),
                duration_ms,
                outcome: outcome.to_owned(),
            };
            next.next_log += 1;
            let failed_retry = match &result {
                Err((_, e)) if !dead_now => Some(Retry {
                    attempts: attempt,
                    retry_at_ms: Some(
                        at_ms.saturating_add(
                            i64::try_from(
                                plan::backoff(
                                    self.cfg.retry_base,
                                    self.cfg.retry_max,
                                    attempt,
                                    rand::random::<f64>(),
                                )
                                .as_millis(),
                            )
                            .unwrap_or(i64::MAX),
                        ),
                    ),
                    last_error: Some(e.clone()),
                }),
                _ => None,
            };
            match &result {
                Ok(_) => {
                    next.delivered += 1;
                    next.last_success_ms = Some(at_ms);
                }
                Err(_) => {
                    next.failed_attempts += 1;
                    next.last_failure_ms = Some(at_ms);
                }
            }
            let dead = match (&result, dead_now) {
                (Err((_, e)), true) => {
                    next.dead_lettered += 1;
                    Some(DeadLetter {
                        delivery_seq,
                        kind: kind.clone(),
                        audit_seq,
                        tree_size,
                        attempts: attempt,
                        last_error: e.clone(),
                        dead_at_ms: crate::clock::now_ms(),
                        message: message.clone(),
                    })
                }
                _ => None,
            };
            let requeued_change = match &head {
                Head::Requeued(r) => Some(match failed_retry.clone() {
                    Some(retry) => RequeuedChange::Put(Requeued { retry, ..r.clone() }),
                    None => RequeuedChange::Remove(r.letter.delivery_seq),
                }),
                Head::Chain(m) => {
                    match failed_retry {
                        Some(retry) => next.retry = retry,
                        None => {
                            // Delivered or dead: the cursor moves on and the seq is used.
                            pass(&mut next, m);
                            next.next_delivery_seq += 1;
                            next.retry = Retry::default();
                        }
                    }
                    None
                }
            };
            match &result {
                Ok(status) => debug!(delivery_seq, attempt, status, "webhook delivered"),
                Err((_, e)) if dead_now => error!(
                    delivery_seq,
                    attempts = attempt,
                    error = %e,
                    "webhook delivery failed for the last time; moved to the dead letters"
                ),
                Err((_, e)) => warn!(delivery_seq, attempt, error = %e, "webhook delivery failed"),
            }
            let c = WebhookCommit {
                state: next.clone(),
                log: Some(log),
                dead,
                requeued: requeued_change,
            };
            match self.commit(&org, &id, c).await {
                Ok(true) => {
                    let moved =
                        (next.event_seq, next.checkpoint) != (state.event_seq, state.checkpoint);
                    state = next;
                    match head {
                        Head::Requeued(_) => {
                            requeued = None;
                            check_requeued = true;
                        }
                        Head::Chain(_) if moved => {
                            buf.pop_front();
                            saved_cursor = (state.event_seq, state.checkpoint);
                        }
                        Head::Chain(_) => {}
                    }
                }
                Ok(false) => return,
                Err(e) => {
                    // Not recorded: the same message goes again (at least once).
                    error!(error = %e, "cannot record a webhook attempt");
                    if sig.wait(Some(STORE_RETRY)).await {
                        return;
                    }
                }
            }
        }
    }

    async fn commit(&self, org: &str, id: &str, c: WebhookCommit) -> Result<bool, StoreError> {
        let (o, i) = (org.to_owned(), id.to_owned());
        self.blocking(move |s| s.webhook_commit(&o, &i, &c)).await
    }

    /// The next chain message that passes the filter, reading ahead in `buf`; moves
    /// `state`'s cursor over filtered events.
    async fn next_chain(
        &self,
        ep: &WebhookEndpoint,
        state: &mut WebhookState,
        buf: &mut VecDeque<Message>,
    ) -> Result<Option<Message>, StoreError> {
        loop {
            if buf.is_empty() {
                let (org, from_seq, from_cp) =
                    (ep.org_id.clone(), state.event_seq, state.checkpoint);
                // Events first, then checkpoints up to the last event read: a checkpoint at
                // tree size n is written before event n + 1, so none is missed.
                let fetched = self
                    .blocking(move |s| {
                        let events = s.audit_range(&org, from_seq + 1, u64::MAX, FETCH)?;
                        let hi = events.last().map_or(from_seq, |e| e.seq);
                        let cps = if hi > from_cp {
                            s.audit_checkpoints(&org, from_cp + 1, hi)?
                        } else {
                            Vec::new()
                        };
                        Ok(plan::merge(events, cps))
                    })
                    .await?;
                if let Some(Message::Event(e)) =
                    fetched.iter().find(|m| matches!(m, Message::Event(_)))
                    && e.seq > state.event_seq + 1
                {
                    warn!(
                        from = state.event_seq + 1,
                        to = e.seq - 1,
                        "audit events were pruned before they could be delivered"
                    );
                }
                if fetched.is_empty() {
                    return Ok(None);
                }
                buf.extend(fetched);
            }
            let Some(front) = buf.front() else {
                return Ok(None);
            };
            if let Message::Event(e) = front {
                let pass_it = match e.event() {
                    Ok(ev) => !plan::matches(&ep.events, &ev.fields.action),
                    Err(err) => {
                        error!(seq = e.seq, error = %err, "audit event does not decode; not delivered");
                        true
                    }
                };
                if pass_it {
                    pass(state, front);
                    // A retry schedule belonged to the message that is no longer next.
                    state.retry = Retry::default();
                    buf.pop_front();
                    continue;
                }
            }
            return Ok(Some(front.clone()));
        }
    }

    /// Sends one message. `Ok(status)` for a 2xx answer.
    async fn send(
        &self,
        ep: &WebhookEndpoint,
        body: &[u8],
        delivery_seq: u64,
        kind: &str,
    ) -> Result<u16, Failure> {
        let t = crate::clock::now_ms() / 1000;
        let secret = open_stored_secret(self.auditor.keys(), &ep.secret)
            .map_err(|e| (None, e.to_owned()))?;
        let resp = self
            .client
            .post(&ep.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                plan::SIGNATURE_HEADER,
                plan::signature_header(secret.as_bytes(), t, body),
            )
            .header(plan::DELIVERY_HEADER, format!("{}-{delivery_seq}", ep.id))
            .header(plan::EVENT_HEADER, kind)
            .body(body.to_vec())
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) => Err((
                Some(r.status().as_u16()),
                format!("receiver answered HTTP {}", r.status()),
            )),
            Err(e) if e.is_timeout() => Err((
                None,
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.cfg.timeout)
                ),
            )),
            Err(e) => Err((None, describe(e))),
        }
    }
}

/// Moves the cursor past `m`.
fn pass(state: &mut WebhookState, m: &Message) {
    match m {
        Message::Event(e) => state.event_seq = state.event_seq.max(e.seq),
        Message::Checkpoint(c) => state.checkpoint = state.checkpoint.max(c.tree_size),
    }
}

/// A request error with its causes, without the URL (it may carry a query credential).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    if text.len() > MAX_ERROR {
        let mut cut = MAX_ERROR;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
