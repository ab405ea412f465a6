//! The on-disk spool: every telemetry batch is written here before it is sent, and
//! removed only after the server acknowledged it as durably stored.
//!
//! Format: one file per batch, `<seq as 20 digits>.batch`, holding the postcard-encoded
//! [`ProvenancedBatch`] (the [`TelemetryBatch`] with its `seq`, then the provenance table of
//! its metrics), written to a temp file, fsynced and renamed, so a crash leaves either the
//! whole batch or nothing. `state.json` records the highest acknowledged sequence and the
//! cumulative count of dropped samples.
//!
//! Telemetry names hosts, guests and their state, so the spool is private to the agent's user:
//! the directory is 0700 and every file 0600. Opening a spool tightens what an older agent (or a
//! hand-made directory) left wider, and logs what it changed.
//!
//! Versions of the file format, told apart by what follows the batch:
//! - v1 (agents before protocol 1.2): the bare `TelemetryBatch`, nothing after it. Read as a
//!   batch without provenance, so a spool survives the upgrade.
//! - v2: the batch, then the table (postcard encodes [`ProvenancedBatch`] exactly that way;
//!   an empty table is one zero byte). A v1 agent reading a v2 file ignores the table, so a
//!   downgrade keeps the batches too.
//!
//! Invariants:
//! - sequence numbers are assigned here, strictly increasing across restarts;
//! - batches are sent in sequence order and replayed from the first unacknowledged one;
//! - when the files exceed the budget, the *oldest* batches go first (their resource state
//!   is superseded by newer batches; their samples are lost) and every dropped sample is
//!   counted in `dropped_samples`, which later batches carry to the server. The newest batch
//!   always stays. (Audit and journal records, when they exist, must never be dropped: they
//!   will need their own spool class.)

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tracing::warn;
use warden_shared::telemetry::{ProvenancedBatch, TelemetryBatch};

const STATE: &str = "state.json";
const EXT: &str = "batch";
/// Mode of the spool (and data) directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every spool file.
pub const FILE_MODE: u32 = 0o600;

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file could not be read or written.
    #[error("spool file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A batch could not be encoded.
    #[error("encoding batch: {0}")]
    Encode(#[from] postcard::Error),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    acked: u64,
    dropped_samples: u64,
    /// No batch above this sequence was ever sent (recorded before sending, a window ahead).
    /// Absent in the state of older agents: then every spooled batch may have been sent.
    #[serde(default)]
    sent: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    samples: usize,
}

/// The spool of one agent.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    files: BTreeMap<u64, Entry>,
    total: u64,
    next_seq: u64,
    state: State,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one that group
/// or others can use to 0700, logging the change.
///
/// # Errors
/// IO failures creating or changing the directory.
pub fn private_dir(dir: &Path) -> Result<(), SpoolError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io(dir))?;
    if let Some(was) = tighten(dir, DIR_MODE)? {
        warn!(path = %dir.display(), was = %format!("{was:o}"), now = %format!("{DIR_MODE:o}"), "tightened directory permissions");
    }
    Ok(())
}

/// Sets `path` to `mode` if group or others have any access; returns the mode it had then.
/// Not owning it (a Kubernetes volume's root with `fsGroup`, files root left) is logged, not an
/// error: the agent still runs, and what it creates inside is private.
fn tighten(path: &Path, mode: u32) -> Result<Option<u32>, SpoolError> {
    let was = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o777;
    if was & 0o077 == 0 {
        return Ok(None);
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        Ok(()) => Ok(Some(was)),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            warn!(path = %path.display(), mode = %format!("{was:o}"), error = %e, "cannot tighten permissions (not the owner?); other local users may read it");
            Ok(None)
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes `bytes` to `tmp` (mode 0600), optionally syncs it, and renames it to `path`.
fn write_private(tmp: &Path, path: &Path, bytes: &[u8], sync: bool) -> Result<(), SpoolError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(tmp)
        .map_err(io(tmp))?;
    f.write_all(bytes)
        .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
        .map_err(io(tmp))?;
    std::fs::rename(tmp, path).map_err(io(path))
}

impl Spool {
    /// Opens (or creates) the spool in `dir` with a budget of `max_bytes`.
    ///
    /// # Errors
    /// IO failures on the directory or state file.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        private_dir(dir)?;
        let state_path = dir.join(STATE);
        let mut tightened = 0usize;
        if state_path.exists() && tighten(&state_path, FILE_MODE)?.is_some() {
            tightened += 1;
        }
        let state: State = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                warn!(error = %e, "spool state unreadable; starting from the files present");
                State::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(&state_path)(e)),
        };
        let mut spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            files: BTreeMap::new(),
            total: 0,
            next_seq: 1,
            state,
        };
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let seq = path
                .extension()
                .filter(|e| *e == EXT)
                .and_then(|_| path.file_stem())
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            let Some(seq) = seq else {
                if path.extension().is_some_and(|e| e == "tmp") {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            };
            if seq <= spool.state.acked {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match spool.read_file(&path) {
                Some(batch) => {
                    if tighten(&path, FILE_MODE)?.is_some() {
                        tightened += 1;
                    }
                    let bytes = entry.metadata().map_err(io(&path))?.len();
                    spool.files.insert(
                        seq,
                        Entry {
                            bytes,
                            samples: batch.batch.samples.len(),
                        },
                    );
                    spool.total += bytes;
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        if tightened > 0 {
            warn!(dir = %dir.display(), files = tightened, now = %format!("{FILE_MODE:o}"), "tightened spool file permissions");
        }
        spool.next_seq = spool
            .files
            .keys()
            .next_back()
            .map_or(spool.state.acked, |s| *s.max(&spool.state.acked))
            + 1;
        if spool.state.sent.is_none() {
            spool.state.sent = Some(spool.next_seq - 1);
        }
        Ok(spool)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{EXT}"))
    }

    fn read_file(&self, path: &Path) -> Option<ProvenancedBatch> {
        let bytes = std::fs::read(path).ok()?;
        match decode_file(&bytes) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "discarding damaged spool file");
                None
            }
        }
    }

    fn write_file(&self, seq: u64, batch: &ProvenancedBatch) -> Result<u64, SpoolError> {
        let bytes = postcard::to_stdvec(batch)?;
        let path = self.path(seq);
        write_private(&path.with_extension("tmp"), &path, &bytes, true)?;
        Ok(bytes.len() as u64)
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        let path = self.dir.join(STATE);
        let body = serde_json::to_vec(&self.state).unwrap_or_default();
        // Not synced (as before): the server's resync on connect corrects a stale state.
        write_private(&path.with_extension("tmp"), &path, &body, false)
    }

    /// Numbers `batch`, writes it durably, enforces the budget; returns its sequence.
    ///
    /// # Errors
    /// IO failures; the batch is then not spooled.
    pub fn push(&mut self, mut batch: ProvenancedBatch) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        batch.batch.seq = seq;
        batch.batch.dropped_samples = self.state.dropped_samples;
        let bytes = self.write_file(seq, &batch)?;
        self.next_seq += 1;
        self.files.insert(
            seq,
            Entry {
                bytes,
                samples: batch.batch.samples.len(),
            },
        );
        self.total += bytes;
        self.enforce_budget()?;
        Ok(seq)
    }

    fn enforce_budget(&mut self) -> Result<(), SpoolError> {
        let before = self.state.dropped_samples;
        // The newest batch always stays, even if it alone is over budget.
        while self.total > self.max_bytes && self.files.len() > 1 {
            let Some((&seq, entry)) = self.files.iter().next() else {
                break;
            };
            self.state.dropped_samples += entry.samples as u64;
            self.remove(seq);
        }
        if self.state.dropped_samples != before {
            warn!(
                dropped_total = self.state.dropped_samples,
                budget_bytes = self.max_bytes,
                "spool full: dropped the oldest batches"
            );
            self.save_state()?;
        }
        Ok(())
    }

    fn remove(&mut self, seq: u64) {
        if let Some(e) = self.files.remove(&seq) {
            self.total -= e.bytes;
            let _ = std::fs::remove_file(self.path(seq));
        }
    }

    /// Records that the server stored everything up to `seq` and deletes those batches.
    /// Sequences beyond what was ever assigned are clamped: a server cannot make the
    /// agent skip batches it has not written.
    ///
    /// # Errors
    /// IO failure writing the state file.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let seq = seq.min(self.next_seq - 1);
        if seq <= self.state.acked {
            return Ok(());
        }
        self.state.acked = seq;
        let done: Vec<u64> = self.files.range(..=seq).map(|(s, _)| *s).collect();
        for s in done {
            self.remove(s);
        }
        self.save_state()
    }

    /// Records that batches up to `seq` are about to be sent. The state is written a
    /// `window` ahead, so this costs one small write per window of batches.
    ///
    /// # Errors
    /// IO failure writing the state file.
    pub fn will_send(&mut self, seq: u64, window: u64) -> Result<(), SpoolError> {
        if self.state.sent.is_some_and(|sent| seq <= sent) {
            return Ok(());
        }
        self.state.sent = Some(seq.saturating_add(window));
        self.save_state()
    }

    /// After a server says what it already stored: acknowledge that much and make sure
    /// new sequences continue above it. Returns how many waiting batches had to be
    /// renumbered.
    ///
    /// A server that stored a sequence this agent never sent has batches from another
    /// process with this identity (a copied key and certificate). The batches waiting here
    /// that were never sent were then not stored under their numbers: they are renumbered
    /// above the server's sequence, in order, and sent, never discarded as replays. (A
    /// crash in the middle of renumbering loses the batches not yet renamed.)
    ///
    /// # Errors
    /// IO failure renaming a batch or writing the state file.
    pub fn resync(&mut self, server_last: u64) -> Result<usize, SpoolError> {
        let sent = self.state.sent.unwrap_or(0).max(self.state.acked);
        let collides =
            sent < server_last && self.files.range(sent + 1..=server_last).next().is_some();
        if !collides {
            if server_last >= self.next_seq {
                self.next_seq = server_last + 1;
            }
            self.ack(server_last)?;
            return Ok(0);
        }
        let unsent: Vec<(u64, Entry)> = self
            .files
            .range(sent + 1..)
            .map(|(s, e)| (*s, *e))
            .collect();
        let renumbered = unsent.len();
        // Highest first, so a crash part-way keeps the newest batches.
        let mut next = server_last + renumbered as u64;
        for (seq, entry) in unsent.into_iter().rev() {
            let (from, to) = (self.path(seq), self.path(next));
            std::fs::rename(&from, &to).map_err(io(&to))?;
            self.files.remove(&seq);
            self.files.insert(next, entry);
            next -= 1;
        }
        self.next_seq = server_last + renumbered as u64 + 1;
        self.state.sent = Some(server_last);
        // What this agent sent before (at or below `sent`) was stored or superseded.
        self.ack(server_last)?;
        tracing::error!(
            server_last,
            renumbered,
            "the server stored batches this agent never sent: another process may be using this agent's identity; waiting batches renumbered and sent"
        );
        Ok(renumbered)
    }

    /// The first spooled sequence at or after `from`.
    pub fn next_from(&self, from: u64) -> Option<u64> {
        self.files.range(from..).next().map(|(s, _)| *s)
    }

    /// Reads a spooled batch (None if it was dropped or damaged).
    pub fn get(&self, seq: u64) -> Option<ProvenancedBatch> {
        let mut batch = self
            .files
            .contains_key(&seq)
            .then(|| self.read_file(&self.path(seq)))
            .flatten()?;
        // The file's name is its number: `resync` renumbers by renaming.
        batch.batch.seq = seq;
        Some(batch)
    }

    /// Highest acknowledged sequence.
    pub fn acked(&self) -> u64 {
        self.state.acked
    }

    /// Batches waiting for acknowledgement.
    pub fn pending(&self) -> usize {
        self.files.len()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// Samples dropped so far to stay in budget.
    pub fn dropped_samples(&self) -> u64 {
        self.state.dropped_samples
    }
}

/// Decodes a spool file of either format version (see the module header).
fn decode_file(bytes: &[u8]) -> Result<ProvenancedBatch, postcard::Error> {
    let (batch, rest) = postcard::take_from_bytes::<TelemetryBatch>(bytes)?;
    if rest.is_empty() {
        // v1: written before provenance existed.
        return Ok(ProvenancedBatch {
            batch,
            provenance: Vec::new(),
        });
    }
    let (provenance, rest) = postcard::take_from_bytes(rest)?;
    if !rest.is_empty() {
        return Err(postcard::Error::DeserializeBadEncoding);
    }
    Ok(ProvenancedBatch { batch, provenance })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_shared::ResourceId;
    use warden_shared::resource::ResourceKind;
    use warden_shared::telemetry::{Provenance, Sample};

    fn bare(n: usize) -> TelemetryBatch {
        let rid = ResourceId::new("node:h").unwrap();
        TelemetryBatch {
            collector: "host".into(),
            samples: (0..n)
                .map(|i| Sample {
                    resource_id: rid.clone(),
                    metric: "m".into(),
                    ts_ms: i as i64,
                    value: 1.0,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn batch(n: usize) -> ProvenancedBatch {
        ProvenancedBatch {
            batch: bare(n),
            provenance: vec![Provenance::new(ResourceKind::Node, "m", "host", "a test")],
        }
    }

    #[test]
    fn files_of_the_previous_agent_version_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        // What the agent wrote before provenance existed: a bare batch per file.
        let mut old = bare(2);
        old.seq = 1;
        std::fs::write(
            dir.path().join(format!("{:020}.batch", 1)),
            postcard::to_stdvec(&old).unwrap(),
        )
        .unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((s.pending(), s.next_from(0)), (1, Some(1)));
        let read = s.get(1).unwrap();
        assert_eq!(read.batch, old);
        assert!(read.provenance.is_empty());
        // New batches keep their provenance across a reopen, after the old ones.
        assert_eq!(s.push(batch(1)).unwrap(), 2);
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        let new = s.get(2).unwrap();
        assert_eq!(new.provenance, batch(1).provenance);
        assert_eq!(new.batch.seq, 2);
        // And an agent downgraded to the old format reads the new file as its batch.
        let bytes = std::fs::read(dir.path().join(format!("{:020}.batch", 2))).unwrap();
        let downgraded: TelemetryBatch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(downgraded, new.batch);
    }

    #[test]
    fn a_damaged_provenance_table_discards_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(batch(1)).unwrap();
        s.push(batch(1)).unwrap();
        drop(s);
        let path = dir.path().join(format!("{:020}.batch", 1));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(0xff);
        std::fs::write(&path, bytes).unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.next_from(0), Some(2));
    }

    #[test]
    fn numbers_persists_acks_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            (
                s.push(batch(3)).unwrap(),
                s.push(batch(3)).unwrap(),
                s.push(batch(3)).unwrap()
            ),
            (1, 2, 3)
        );
        s.ack(1).unwrap();
        assert_eq!(s.next_from(0), Some(2));
        drop(s);
        // A crash between write and rename leaves a temp file, which is ignored.
        std::fs::write(dir.path().join("00000000000000000009.tmp"), b"junk").unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((s.acked(), s.pending()), (1, 2));
        assert_eq!(s.get(2).unwrap().batch.seq, 2);
        assert_eq!(s.push(batch(1)).unwrap(), 4);
        // A server cannot acknowledge what was never sent.
        s.ack(100).unwrap();
        assert_eq!((s.acked(), s.pending()), (4, 0));
        assert_eq!(s.push(batch(1)).unwrap(), 5);
    }

    #[test]
    fn damaged_files_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(batch(2)).unwrap();
        s.push(batch(2)).unwrap();
        drop(s);
        std::fs::write(dir.path().join(format!("{:020}.batch", 1)), [0xff; 3]).unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.next_from(0), Some(2));
    }

    #[test]
    fn budget_drops_the_oldest_batches_and_counts_their_samples() {
        let dir = tempfile::tempdir().unwrap();
        let one = postcard::to_stdvec(&batch(100)).unwrap().len() as u64;
        let mut s = Spool::open(dir.path(), one * 3 + one / 2).unwrap();
        for _ in 0..5 {
            s.push(batch(100)).unwrap();
        }
        assert!(s.bytes() <= one * 3 + one / 2);
        assert_eq!(
            (s.next_from(0), s.pending()),
            (Some(3), 3),
            "the two oldest went"
        );
        assert_eq!(s.dropped_samples(), 200);
        assert_eq!(
            s.get(5).unwrap().batch.samples.len(),
            100,
            "newest kept whole"
        );
        let next = s.push(batch(0)).unwrap();
        assert_eq!(
            s.get(next).unwrap().batch.dropped_samples,
            s.dropped_samples()
        );
        drop(s);
        assert_eq!(
            Spool::open(dir.path(), one * 3).unwrap().dropped_samples(),
            200
        );
    }

    #[test]
    fn a_single_batch_over_budget_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 10).unwrap();
        s.push(batch(50)).unwrap();
        assert_eq!((s.pending(), s.dropped_samples()), (1, 0));
        s.push(batch(50)).unwrap();
        assert_eq!((s.pending(), s.dropped_samples()), (1, 50));
    }

    #[test]
    fn opening_tightens_a_world_readable_spool() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        s.push(batch(1)).unwrap();
        s.ack(1).unwrap();
        s.push(batch(1)).unwrap();
        drop(s);
        let file = dir.join(format!("{:020}.batch", 2));
        assert_eq!(
            (mode(&dir), mode(&file), mode(&dir.join(STATE))),
            (0o700, 0o600, 0o600)
        );
        // What an older agent left behind.
        for (p, m) in [(&dir, 0o755), (&file, 0o644), (&dir.join(STATE), 0o644)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(s.pending(), 1);
        assert_eq!(
            (mode(&dir), mode(&file), mode(&dir.join(STATE))),
            (0o700, 0o600, 0o600)
        );
    }

    #[test]
    fn resync_moves_past_the_servers_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.resync(41).unwrap(), 0);
        assert_eq!(s.push(batch(1)).unwrap(), 42);
    }

    #[test]
    fn resync_renumbers_waiting_batches_a_server_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=4 {
            s.push(batch(n)).unwrap();
        }
        s.will_send(1, 0).unwrap();
        s.ack(1).unwrap();
        // Another process with this identity got the server to 10; batches 2..=4 of this
        // spool were never sent and must be sent as 11..=13, in order.
        assert_eq!(s.resync(10).unwrap(), 3);
        assert_eq!(s.acked(), 10);
        let sent: Vec<(u64, usize)> = (11..=13)
            .map(|q| {
                let b = s.get(q).unwrap();
                (b.batch.seq, b.batch.samples.len())
            })
            .collect();
        assert_eq!(sent, vec![(11, 2), (12, 3), (13, 4)]);
        assert_eq!(s.push(batch(9)).unwrap(), 14);
        // The renumbering survives a restart.
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((s.acked(), s.pending()), (10, 4));
        assert_eq!(s.get(11).unwrap().batch.samples.len(), 2);
        // An ordinary resync (the server stored part of what was sent) renumbers nothing.
        let mut s = s;
        s.will_send(14, 0).unwrap();
        assert_eq!(s.resync(12).unwrap(), 0);
        assert_eq!(s.pending(), 2);
    }

    #[test]
    fn resync_renumbers_a_copy_whose_sequences_overlap_the_servers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=6 {
            s.push(batch(n)).unwrap();
        }
        // Never sent anything; the server holds 1..=4 from the other process.
        assert_eq!(s.resync(4).unwrap(), 6);
        let sizes: Vec<usize> = (5..=10)
            .map(|q| s.get(q).unwrap().batch.samples.len())
            .collect();
        assert_eq!(sizes, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn resync_after_a_lost_ack_renumbers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=6 {
            s.push(batch(n)).unwrap();
        }
        s.will_send(1, 64).unwrap();
        // Batches 1..=4 were sent and stored, their acks lost with the connection.
        assert_eq!(s.resync(4).unwrap(), 0);
        assert_eq!((s.acked(), s.pending()), (4, 2));
        assert_eq!(s.next_from(0), Some(5));
    }

    #[test]
    fn a_spool_of_an_older_agent_counts_every_batch_as_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=3 {
            s.push(batch(n)).unwrap();
        }
        s.ack(1).unwrap();
        drop(s);
        std::fs::write(dir.path().join(STATE), r#"{"acked":1,"dropped_samples":0}"#).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.resync(3).unwrap(), 0);
        assert_eq!(s.pending(), 0);
    }
}
