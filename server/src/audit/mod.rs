//! The audit log: the one entry point every security-relevant or mutating act goes through
//! ([`Auditor::record`]), its group-committing writer, and the maintenance task that writes
//! checkpoints on time and prunes by retention. Events, hashing, keys and chain verification
//! are in `crate::chain`, the key file in `keys.rs`, tables in `store/audit.rs`.
//!
//! # Invariants
//! - `record` returns only after the event is durable (committed), so an audited request
//!   answers after its event is stored; concurrent events share one commit.
//! - Every event of an org joins that org's chain in commit order; nothing else writes the
//!   audit tables except pruning, which only removes a prefix behind a bridge checkpoint.
//! - Secrets never enter `details`: callers pass ids, names and counts, never token values,
//!   keys or webhook secrets.

use crate::chain::{event, verify};
pub mod export;
pub mod keys;
pub mod limit;

use crate::store::Store;
use event::{Actor, Event, Keys, NewEvent};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

/// Audit settings from the config file.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// How long events are kept.
    pub retention: Duration,
    /// A checkpoint every this many events of a chain.
    pub checkpoint_every: u64,
    /// ... or after this long with new events, whichever comes first.
    pub checkpoint_interval: Duration,
    /// The KEK file (after the systemd credential and the environment variable).
    pub kek_file: std::path::PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(90 * 86_400),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            kek_file: keys::DEFAULT_KEK_FILE.into(),
        }
    }
}

/// Events a commit takes at most.
const BATCH: usize = 1024;
/// Pending events before `record` waits (backpressure).
const QUEUE: usize = 8192;
/// Events one pruning transaction deletes at most.
const PRUNE_STEP: usize = 10_000;

struct Pending {
    event: NewEvent,
    done: oneshot::Sender<Option<Event>>,
}

/// The audit log's entry point. Shared in an `Arc`.
pub struct Auditor {
    store: Arc<Store>,
    keys: Option<Arc<Keys>>,
    unavailable: Option<String>,
    tx: mpsc::Sender<Pending>,
    appended: watch::Sender<u64>,
    cfg: AuditConfig,
    limiter: limit::Limiter,
    stats: Arc<Stats>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events durably stored.
    pub stored: AtomicU64,
    /// Events that could not be stored.
    pub failed: AtomicU64,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("signed", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// Starts the writer thread. With signing unavailable, logs a loud warning: events are
    /// then stored unsigned and never verify as `verified`.
    ///
    /// # Errors
    /// If the writer thread cannot be spawned.
    pub fn start(
        store: Arc<Store>,
        signing: keys::Signing,
        cfg: AuditConfig,
    ) -> std::io::Result<Arc<Self>> {
        let (keys, unavailable) = match signing {
            keys::Signing::Ready { keys, source } => {
                info!(kek = %source, key_id = keys.key_id(), "audit events are signed");
                (Some(Arc::from(keys)), None)
            }
            keys::Signing::Unavailable(why) => {
                warn!(
                    reason = %why,
                    "AUDIT SIGNING UNAVAILABLE: audit events are stored UNSIGNED and will \
                     verify as \"unsigned\", never \"verified\"; see docs/audit.md"
                );
                (None, Some(why))
            }
        };
        // A checkpoint beyond the head means the tail was cut off while the server was down.
        for (org, _) in store.audit_heads().unwrap_or_default() {
            match store.audit_guard_head(&org) {
                Ok(Some((head, covered))) => error!(
                    org = %org,
                    head,
                    checkpoint = covered,
                    "AUDIT LOG TRUNCATED: events after {head} are gone but a signed checkpoint \
                     covers {covered}; new events continue after {covered} and verification \
                     reports the gap"
                ),
                Ok(None) => {}
                Err(e) => error!(org = %org, error = %e, "cannot check the audit head"),
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let (appended, _) = watch::channel(0);
        let me = Arc::new(Self {
            store,
            keys,
            unavailable,
            tx,
            appended,
            cfg,
            limiter: limit::Limiter::default(),
            stats: Arc::default(),
        });
        let writer = Writer {
            store: me.store.clone(),
            keys: me.keys.clone(),
            every: me.cfg.checkpoint_every,
            appended: me.appended.clone(),
            stats: me.stats.clone(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(me)
    }

    /// Records an event and waits until it is durable. A failure to store it is logged
    /// (never returned: the act itself already happened) and gives `None`.
    pub async fn record(&self, event: NewEvent) -> Option<Event> {
        let action = event.action.clone();
        let (done, rx) = oneshot::channel();
        if self.tx.send(Pending { event, done }).await.is_err() {
            error!(action = %action, "audit writer is gone; event not recorded");
            return None;
        }
        rx.await.ok().flatten()
    }

    /// [`Auditor::record`] for synchronous callers (never from an async thread).
    pub fn record_blocking(&self, event: NewEvent) -> Option<Event> {
        let (done, rx) = oneshot::channel();
        self.tx.blocking_send(Pending { event, done }).ok()?;
        rx.blocking_recv().ok().flatten()
    }

    /// The signing keys, if signing works.
    pub fn keys(&self) -> Option<&Keys> {
        self.keys.as_deref()
    }

    /// Why signing is unavailable (`None`: events are signed).
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Changes whenever events or checkpoints were committed (webhook delivery waits on it).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Wakes the subscribers (after a checkpoint written outside the maintenance task).
    pub fn notify(&self) {
        self.appended.send_modify(|n| *n += 1);
    }

    /// Rate limits for audited failures of unauthenticated clients.
    pub fn limiter(&self) -> &limit::Limiter {
        &self.limiter
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &AuditConfig {
        &self.cfg
    }

    /// Writes a checkpoint at every chain's head that has none yet. Returns how many.
    ///
    /// # Errors
    /// Storage failures.
    pub fn checkpoint_all(&self, now_ms: i64) -> Result<usize, crate::store::StoreError> {
        let mut made = 0;
        for (org, _) in self.store.audit_heads()? {
            if let Some((_, true)) = self.store.audit_checkpoint(&org, self.keys(), now_ms)? {
                made += 1;
            }
        }
        if made > 0 {
            self.notify();
        }
        Ok(made)
    }

    /// Prunes every chain's events older than the retention; records what it removed.
    ///
    /// # Errors
    /// Storage failures.
    pub fn prune(&self, now_ms: i64) -> Result<u64, crate::store::StoreError> {
        let before = now_ms
            .saturating_sub(i64::try_from(self.cfg.retention.as_millis()).unwrap_or(i64::MAX));
        let mut total = 0;
        for (org, _) in self.store.audit_heads()? {
            let (mut events, mut bridge) = (0, None);
            loop {
                let p = self
                    .store
                    .audit_prune(&org, before, PRUNE_STEP, self.keys(), now_ms)?;
                events += p.events;
                bridge = p.bridge.or(bridge);
                if p.events < PRUNE_STEP as u64 {
                    break;
                }
            }
            if events > 0 {
                total += events;
                let mut e = NewEvent::new(
                    Actor::system("retention"),
                    "audit.prune",
                    format!("audit:{org}"),
                )
                .details(serde_json::json!({
                    "events": events,
                    "bridge_checkpoint": bridge,
                    "retention_days": self.cfg.retention.as_secs() / 86_400,
                }));
                e.org_id = org;
                self.record_blocking(e);
            }
        }
        Ok(total)
    }
}

struct Writer {
    store: Arc<Store>,
    keys: Option<Arc<Keys>>,
    every: u64,
    appended: watch::Sender<u64>,
    stats: Arc<Stats>,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Pending>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let (events, waiters): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.event, p.done)).unzip();
            let n = events.len();
            match self.store.audit_append(
                events,
                self.keys.as_deref(),
                crate::clock::now_ms(),
                self.every,
            ) {
                Ok(stored) => {
                    self.stats.stored.fetch_add(n as u64, Ordering::Relaxed);
                    self.appended.send_modify(|c| *c += n as u64);
                    for (done, e) in waiters.into_iter().zip(stored) {
                        let _ = done.send(Some(e));
                    }
                }
                Err(e) => {
                    self.stats.failed.fetch_add(n as u64, Ordering::Relaxed);
                    error!(error = %e, events = n, "audit events could not be stored");
                    for done in waiters {
                        let _ = done.send(None);
                    }
                }
            }
        }
    }
}

/// Writes checkpoints every `checkpoint_interval` (when a chain has new events) and prunes
/// by retention hourly, until shutdown.
pub async fn maintain(auditor: Arc<Auditor>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(auditor.cfg.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|v| *v) => return,
            _ = tick.tick() => {}
        }
        let prune_due = last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
        let a = auditor.clone();
        let done = tokio::task::spawn_blocking(move || {
            let now = crate::clock::now_ms();
            let pruned = if prune_due { a.prune(now)? } else { 0 };
            let made = a.checkpoint_all(now)?;
            Ok::<_, crate::store::StoreError>((pruned, made))
        })
        .await;
        match done {
            Ok(Ok((pruned, made))) => {
                if prune_due {
                    last_prune = Some(tokio::time::Instant::now());
                }
                if pruned > 0 || made > 0 {
                    info!(pruned, checkpoints = made, "audit maintenance");
                }
            }
            Ok(Err(e)) => error!(error = %e, "audit maintenance failed"),
            Err(e) => error!(error = %e, "audit maintenance panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event::KEY_MATERIAL_LEN;

    const DAY: i64 = 86_400_000;

    fn auditor(dir: &std::path::Path) -> Arc<Auditor> {
        try_auditor(dir).expect("store opens")
    }

    fn try_auditor(dir: &std::path::Path) -> Option<Arc<Auditor>> {
        let store = Arc::new(Store::open(&dir.join("a.redb")).ok()?);
        let keys = Keys::from_material(&[3; KEY_MATERIAL_LEN]).unwrap();
        let signing = keys::Signing::Ready {
            keys: Box::new(keys),
            source: keys::KekSource::Env,
        };
        let cfg = AuditConfig {
            checkpoint_every: 4,
            ..AuditConfig::default()
        };
        Auditor::start(store, signing, cfg).ok()
    }

    #[test]
    fn retention_prunes_behind_a_bridge_and_the_rest_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let a = auditor(dir.path());
        let now = 400 * DAY;
        // 10 events 100 days ago, 5 events yesterday (appended directly with their time).
        for (n, at) in [(10, now - 100 * DAY), (5, now - DAY)] {
            let events = (0..n)
                .map(|i| NewEvent::new(Actor::admin(), "token.create", format!("t{i}")))
                .collect();
            a.store().audit_append(events, a.keys(), at, 4).unwrap();
        }
        let pruned = a.prune(now).unwrap();
        assert_eq!(pruned, 10);
        let org = warden_shared::DEFAULT_ORG;
        let left = a.store().audit_range(org, 0, u64::MAX, 100).unwrap();
        assert_eq!(left.first().unwrap().seq, 11);
        // The prune itself is on record, and the bridge checkpoint anchors the rest.
        let last = left.last().unwrap().event().unwrap();
        assert_eq!(last.fields.action, "audit.prune");
        assert_eq!(last.fields.details["events"], 10);
        assert_eq!(last.fields.details["bridge_checkpoint"], 10);
        let cps = a.store().audit_checkpoints(org, 0, u64::MAX).unwrap();
        assert_eq!(cps.first().unwrap().tree_size, 10);
        assert_eq!(cps[0].verify_self(), Some(true));
        let report = a.store().audit_verify(org, None, None, a.keys()).unwrap();
        assert_eq!(report.state, verify::State::Verified, "{report:?}");
        assert_eq!((report.first_seq, report.checked), (Some(11), 6));
        // Nothing more is old enough.
        assert_eq!(a.prune(now).unwrap(), 0);
    }

    #[test]
    fn checkpoints_come_by_count_and_on_demand_and_recording_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let a = auditor(dir.path());
        let mut rx = a.subscribe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let stored = rt.block_on(async {
            let mut out = Vec::new();
            for i in 0..5 {
                out.push(
                    a.record(NewEvent::new(
                        Actor::admin(),
                        "token.create",
                        format!("t{i}"),
                    ))
                    .await
                    .unwrap(),
                );
            }
            out
        });
        assert_eq!(
            stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let org = warden_shared::DEFAULT_ORG;
        let sizes = |a: &Auditor| -> Vec<u64> {
            a.store()
                .audit_checkpoints(org, 0, u64::MAX)
                .unwrap()
                .iter()
                .map(|c| c.tree_size)
                .collect()
        };
        assert_eq!(sizes(&a), [4]);
        assert_eq!(a.checkpoint_all(1).unwrap(), 1);
        assert_eq!(sizes(&a), [4, 5]);
        assert!(rx.has_changed().unwrap());
        assert_eq!(a.checkpoint_all(2).unwrap(), 0, "the head already has one");
        assert_eq!(a.stats().stored.load(Ordering::Relaxed), 5);
        // Reopened, the chain continues (the writer thread lets go of the store once the
        // auditor is gone).
        drop(a);
        let again = (0..200)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(10));
                try_auditor(dir.path())
            })
            .expect("store reopens");
        let e = again
            .record_blocking(NewEvent::new(Actor::admin(), "token.revoke", "t0"))
            .unwrap();
        assert_eq!(e.seq, 6);
        let report = again
            .store()
            .audit_verify(org, None, None, again.keys())
            .unwrap();
        assert_eq!(report.state, verify::State::Verified, "{report:?}");
    }
}
