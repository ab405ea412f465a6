//! Audit export files and their offline verification: the JSONL format `warden audit export`
//! writes (from the store here, from API pages in `main.rs`), parsing it back, and checking
//! it against trusted anchors for `warden audit verify`. The chain walk itself is
//! `verify.rs`; this file turns lines into [`Link`]s and anchors, and adds what only a file
//! can get wrong (unparsable lines, a header that promises more than the file holds).
//!
//! # File format (version 1)
//!
//! One JSON object per line, in this order:
//! 1. `{"type":"export","version":1,"org_id","public_key","from_seq","to_seq","exported_at"}`;
//!    `public_key` is the server's Ed25519 checkpoint key (hex, `null` when unsigned).
//! 2. One `{"type":"event", ...Event fields..., "hash"}` per event, in seq order
//!    (`seq`, `prev_hash`, the hashed fields, `signature`; `hash` is the server's hash of it).
//! 3. `{"type":"checkpoint", ...Checkpoint fields...}` for each checkpoint with
//!    `from_seq - 1 <= tree_size` (the bridge before the first event) and
//!    `tree_size <= to_seq`; an export to the head also carries any checkpoint beyond it
//!    (one there means the log lost its tail).
//!
//! A stored event whose fields no longer parse is exported as
//! `{"type":"event","seq","unparsable":"<the raw bytes, lossy UTF-8>"}` so the verifier can
//! name it.
//!
//! # Trust
//! The file's own `public_key` is only what the file claims. The verifier trusts, in this
//! order: `--public-key`, the keys in an explicitly given `--data-dir`, the `--checkpoint`'s
//! key, and only then the header's. HMAC signatures need the HMAC key (the data directory and
//! its KEK); without it the result is at best `chain_only`.

use super::event::{Checkpoint, Event, Hash, Keys};
use super::verify::{self, Anchors, Link, Problem, Reason, Report, State};
use crate::store::{AuditFilter, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Version of the export file format.
pub const FORMAT_VERSION: u32 = 1;
/// Events read from the store per transaction while exporting.
const CHUNK: usize = 1000;
/// Progress is reported every this many events.
pub const PROGRESS_EVERY: u64 = 10_000;

const TYPE_EXPORT: &str = "export";
const TYPE_EVENT: &str = "event";
const TYPE_CHECKPOINT: &str = "checkpoint";

/// Why an export or a verification could not be done (not: the log is bad).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or writing a file or stream failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error("audit store")]
    Store(#[from] StoreError),
    /// The store is open in a running server.
    #[error(
        "the store {0} is in use (is the server running?): stop the server for an offline \
         export, or export online without --offline"
    )]
    Locked(PathBuf),
    /// There is no store in the data directory.
    #[error("no store at {0}: is --data-dir the server's data directory?")]
    NoStore(PathBuf),
    /// The requested range holds no events.
    #[error("nothing to export: {0}")]
    Empty(String),
    /// A `--from`/`--to` value is neither a sequence number nor an RFC 3339 time.
    #[error("{name} = {value:?} is neither a sequence number nor an RFC 3339 time")]
    Bound {
        /// `from` or `to`.
        name: &'static str,
        /// What was given.
        value: String,
    },
    /// The file is not an export this build reads.
    #[error("not a warden audit export: {0}")]
    NotAnExport(String),
    /// The trusted checkpoint cannot be used with this file.
    #[error("the trusted checkpoint does not fit this file: {0}")]
    Checkpoint(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExportError {
    let what = what.into();
    move |source| ExportError::Io { what, source }
}

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Organisation whose chain this is.
    pub org_id: String,
    /// The server's checkpoint key (hex), as the file claims it.
    pub public_key: Option<String>,
    /// First sequence number exported.
    pub from_seq: u64,
    /// Last sequence number exported.
    pub to_seq: u64,
    /// When (RFC 3339).
    pub exported_at: String,
}

/// A line with its `type` first.
#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    inner: &'a T,
}

#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(flatten)]
    event: &'a Event,
    hash: String,
}

#[derive(Serialize)]
struct UnparsableLine {
    seq: u64,
    unparsable: String,
    hash: String,
}

/// A range bound: a sequence number or a time (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A sequence number.
    Seq(u64),
    /// A time: `from` is the first event at or after it, `to` the last one before it.
    Time(i64),
}

impl Bound {
    /// Parses a sequence number or an RFC 3339 time.
    ///
    /// # Errors
    /// [`ExportError::Bound`] for anything else.
    pub fn parse(name: &'static str, s: &str) -> Result<Self, ExportError> {
        if let Ok(seq) = s.parse() {
            return Ok(Self::Seq(seq));
        }
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| Self::Time((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|_| ExportError::Bound {
                name,
                value: s.to_owned(),
            })
    }
}

/// Writes an export: header, events, then checkpoints.
pub struct ExportWriter<W: Write> {
    out: W,
    events: u64,
    checkpoints: u64,
}

impl<W: Write> ExportWriter<W> {
    /// Starts a file with its header.
    ///
    /// # Errors
    /// Write failures.
    pub fn new(mut out: W, header: &Header) -> Result<Self, ExportError> {
        line(&mut out, TYPE_EXPORT, header)?;
        Ok(Self {
            out,
            events: 0,
            checkpoints: 0,
        })
    }

    /// Writes one event with its hash.
    ///
    /// # Errors
    /// Write failures.
    pub fn event(&mut self, event: &Event, hash: &Hash) -> Result<(), ExportError> {
        let l = EventLine {
            event,
            hash: hex::encode(hash),
        };
        line(&mut self.out, TYPE_EVENT, &l)?;
        self.events += 1;
        Ok(())
    }

    /// Writes a stored event whose fields do not parse, raw.
    ///
    /// # Errors
    /// Write failures.
    pub fn unparsable(&mut self, seq: u64, raw: &[u8], hash: &Hash) -> Result<(), ExportError> {
        let l = UnparsableLine {
            seq,
            unparsable: String::from_utf8_lossy(raw).into_owned(),
            hash: hex::encode(hash),
        };
        line(&mut self.out, TYPE_EVENT, &l)?;
        self.events += 1;
        Ok(())
    }

    /// Writes a checkpoint.
    ///
    /// # Errors
    /// Write failures.
    pub fn checkpoint(&mut self, cp: &Checkpoint) -> Result<(), ExportError> {
        line(&mut self.out, TYPE_CHECKPOINT, cp)?;
        self.checkpoints += 1;
        Ok(())
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Flushes; returns the number of events and checkpoints written.
    ///
    /// # Errors
    /// Write failures.
    pub fn finish(mut self) -> Result<(u64, u64), ExportError> {
        self.out.flush().map_err(io("flushing the export"))?;
        Ok((self.events, self.checkpoints))
    }
}

fn line<T: Serialize>(out: &mut impl Write, kind: &'static str, v: &T) -> Result<(), ExportError> {
    let mut bytes = serde_json::to_vec(&Tagged { kind, inner: v })
        .map_err(|e| io("encoding an export line")(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    out.write_all(&bytes).map_err(io("writing the export"))
}

/// Opens the store of a stopped server for an offline export.
///
/// # Errors
/// [`ExportError::NoStore`] if there is none, [`ExportError::Locked`] if a server has it
/// open, [`ExportError::Store`] otherwise.
pub fn open_store(data_dir: &Path) -> Result<Store, ExportError> {
    let path = data_dir.join(crate::DB_FILE);
    if !path.exists() {
        return Err(ExportError::NoStore(path));
    }
    Store::open(&path).map_err(|e| match e {
        StoreError::Open {
            source: redb::DatabaseError::DatabaseAlreadyOpen,
            ..
        } => ExportError::Locked(path),
        e => ExportError::Store(e),
    })
}

/// What [`export_store`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// First and last sequence number of the range.
    pub from_seq: u64,
    /// Last sequence number of the range.
    pub to_seq: u64,
    /// Events written.
    pub events: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// Organisation.
    pub org: String,
    /// First event (default: the oldest kept).
    pub from: Option<Bound>,
    /// Last event (default: the head; then checkpoints beyond it are exported too).
    pub to: Option<Bound>,
    /// The checkpoint key for the header.
    pub public_key: Option<String>,
    /// When (RFC 3339), for the header.
    pub exported_at: String,
}

/// Exports the events `spec` names from the store to `out`; `progress(done, total)` is
/// called every [`PROGRESS_EVERY`] events.
///
/// # Errors
/// Store and write failures; [`ExportError::Empty`] if the range holds no events.
pub fn export_store(
    store: &Store,
    spec: ExportSpec,
    out: impl Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Exported, ExportError> {
    let ExportSpec {
        org,
        from,
        to,
        public_key,
        exported_at,
    } = spec;
    let org = org.as_str();
    let Some(head) = store.audit_head(org)? else {
        return Err(ExportError::Empty(format!("org {org} has no audit events")));
    };
    let first = store
        .audit_range(org, 0, u64::MAX, 1)?
        .first()
        .map_or(1, |s| s.seq);
    let by_time = |t: i64, upper: bool| -> Result<u64, ExportError> {
        let filter = if upper {
            AuditFilter {
                until_ms: Some(t),
                ..AuditFilter::default()
            }
        } else {
            AuditFilter {
                since_ms: Some(t),
                ..AuditFilter::default()
            }
        };
        let (rows, _) = store.audit_query(org, &filter, None, !upper, 1, None)?;
        Ok(rows
            .first()
            .map_or(if upper { 0 } else { u64::MAX }, |r| r.event.seq))
    };
    let from_seq = match from {
        None => first,
        Some(Bound::Seq(s)) => s.max(first),
        Some(Bound::Time(t)) => by_time(t, false)?,
    };
    let to_seq = match to {
        None => head.seq,
        Some(Bound::Seq(s)) => s.min(head.seq),
        Some(Bound::Time(t)) => by_time(t, true)?,
    };
    if from_seq > to_seq {
        return Err(ExportError::Empty(format!(
            "no events in that range (the log holds {first} to {})",
            head.seq
        )));
    }
    let header = Header {
        version: FORMAT_VERSION,
        org_id: org.to_owned(),
        public_key,
        from_seq,
        to_seq,
        exported_at,
    };
    let mut w = ExportWriter::new(out, &header)?;
    let total = to_seq - from_seq + 1;
    let mut next = from_seq;
    while next <= to_seq {
        let chunk = store.audit_range(org, next, to_seq, CHUNK)?;
        let Some(last) = chunk.last().map(|s| s.seq) else {
            break;
        };
        for s in &chunk {
            let hash = s.hash();
            match s.event() {
                Ok(e) => w.event(&e, &hash)?,
                Err(_) => w.unparsable(s.seq, &s.fields_json, &hash)?,
            }
            if w.events().is_multiple_of(PROGRESS_EVERY) {
                progress(w.events(), total);
            }
        }
        next = last + 1;
    }
    let cp_to = if to.is_none() { u64::MAX } else { to_seq };
    for cp in store.audit_checkpoints(org, from_seq.saturating_sub(1), cp_to)? {
        w.checkpoint(&cp)?;
    }
    let (events, checkpoints) = w.finish()?;
    Ok(Exported {
        from_seq,
        to_seq,
        events,
        checkpoints,
    })
}

/// A line that is not a valid event or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Line number (from 1).
    pub line: usize,
    /// The sequence number it seems to hold, if that can be read.
    pub seq: Option<u64>,
    /// What is wrong with it.
    pub error: String,
}

/// An export file, parsed.
#[derive(Debug, Clone)]
pub struct ExportFile {
    /// The header.
    pub header: Header,
    /// The chain links of the event lines, in file order (an export of millions of events
    /// is never held whole).
    pub links: Vec<Link>,
    /// The line number (from 1) of each link.
    pub lines: Vec<usize>,
    /// Checkpoint lines.
    pub checkpoints: Vec<Checkpoint>,
    /// Lines that did not parse.
    pub bad: Vec<BadLine>,
}

/// The sequence number a broken line seems to hold: its `seq` member, or the number in
/// its `id` (`{org}-{seq}`), even when the JSON itself is broken.
fn recover_seq(text: &str) -> Option<u64> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(s) = v.get("seq").and_then(serde_json::Value::as_u64) {
            return Some(s);
        }
        if let Some(s) = v
            .get("id")
            .and_then(|i| i.as_str())
            .and_then(verify::id_seq)
        {
            return Some(s);
        }
    }
    // The value after `"key"`, up to the next delimiter.
    let value_of = |key: &str| -> Option<String> {
        let rest = &text[text.find(key)? + key.len()..];
        let rest = rest.trim_start_matches([' ', ':', '"']);
        Some(
            rest.chars()
                .take_while(|c| !matches!(c, ',' | '"' | '}'))
                .collect(),
        )
    };
    value_of("\"seq\"")
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| value_of("\"id\"").and_then(|v| verify::id_seq(&v)))
}

/// Lines parsed together, on [`parse_threads`] threads.
const PARSE_CHUNK: usize = 16_384;

/// One line of a parsed file.
enum Parsed {
    Event(usize, Link),
    Checkpoint(Checkpoint),
    Bad(BadLine),
}

/// Parses line `line` (numbered from 1) of an export; `keys` check its signature.
fn parse_line(line: usize, text: &str, keys: Option<&Keys>) -> Parsed {
    let bad = |error: String| {
        Parsed::Bad(BadLine {
            line,
            seq: recover_seq(text),
            error,
        })
    };
    // The line's kind first (other members skipped), then the whole line as what it is:
    // no JSON tree is built, which halves the cost of a line.
    let meta: LineMeta<'_> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return bad(format!("not JSON: {e}")),
    };
    match meta.kind.as_deref() {
        Some(TYPE_EVENT) if meta.unparsable.is_some() => {
            bad("its fields did not parse in the store".into())
        }
        Some(TYPE_EVENT) => match serde_json::from_str::<Event>(text) {
            Ok(event) => match Link::of(&event, meta.hash.as_deref(), keys) {
                Some(link) => Parsed::Event(line, link),
                None => bad("its prev_hash is malformed".into()),
            },
            Err(e) => bad(format!("not an event: {e}")),
        },
        Some(TYPE_CHECKPOINT) => match serde_json::from_str::<Checkpoint>(text) {
            Ok(cp) => Parsed::Checkpoint(cp),
            Err(e) => bad(format!("not a checkpoint: {e}")),
        },
        _ => bad("unknown line type".into()),
    }
}

/// The members of a line that say what it is.
#[derive(Deserialize)]
struct LineMeta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    hash: Option<std::borrow::Cow<'a, str>>,
    unparsable: Option<serde::de::IgnoredAny>,
}

/// Threads that parse (and hash) lines: parsing JSON is most of a verification's cost.
fn parse_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

impl ExportFile {
    /// Parses an export, checking event signatures with `keys`. Lines that do not parse are
    /// collected in `bad`, not errors. Memory stays near 150 bytes per event whatever the
    /// events hold.
    ///
    /// # Errors
    /// Read failures, and [`ExportError::NotAnExport`] if the first line is not a version 1
    /// header.
    pub fn parse(reader: impl BufRead, keys: Option<&Keys>) -> Result<Self, ExportError> {
        let mut lines = reader.lines().enumerate();
        let header = loop {
            let Some((_, l)) = lines.next() else {
                return Err(ExportError::NotAnExport("the file is empty".into()));
            };
            let l = l.map_err(io("reading the export"))?;
            if l.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&l)
                .map_err(|e| ExportError::NotAnExport(format!("the first line: {e}")))?;
            if v["type"] != TYPE_EXPORT {
                return Err(ExportError::NotAnExport(
                    "the first line is not an export header".into(),
                ));
            }
            let h: Header = serde_json::from_value(v)
                .map_err(|e| ExportError::NotAnExport(format!("the header: {e}")))?;
            if h.version != FORMAT_VERSION {
                return Err(ExportError::NotAnExport(format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    h.version
                )));
            }
            break h;
        };
        let mut file = Self {
            header,
            links: Vec::new(),
            lines: Vec::new(),
            checkpoints: Vec::new(),
            bad: Vec::new(),
        };
        let threads = parse_threads();
        let mut chunk: Vec<(usize, String)> = Vec::with_capacity(PARSE_CHUNK);
        loop {
            chunk.clear();
            for (i, l) in lines.by_ref() {
                let l = l.map_err(io("reading the export"))?;
                if !l.trim().is_empty() {
                    chunk.push((i + 1, l));
                    if chunk.len() == PARSE_CHUNK {
                        break;
                    }
                }
            }
            if chunk.is_empty() {
                return Ok(file);
            }
            let per = chunk.len().div_ceil(threads);
            let parsed: Vec<Vec<Parsed>> = std::thread::scope(|s| {
                let parts: Vec<_> = chunk
                    .chunks(per)
                    .map(|part| {
                        s.spawn(move || {
                            part.iter()
                                .map(|(n, l)| parse_line(*n, l, keys))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                parts
                    .into_iter()
                    .map(|h| h.join().expect("a parse thread panicked"))
                    .collect()
            });
            for p in parsed.into_iter().flatten() {
                match p {
                    Parsed::Event(line, link) => {
                        file.lines.push(line);
                        file.links.push(link);
                    }
                    Parsed::Checkpoint(cp) => file.checkpoints.push(cp),
                    Parsed::Bad(b) => file.bad.push(b),
                }
            }
        }
    }
}

/// Reads a trusted checkpoint: a checkpoint JSON, or an object holding one under
/// `checkpoint` (the answer of `POST /api/audit/checkpoints`, a webhook payload).
///
/// # Errors
/// [`ExportError::Checkpoint`] if it is neither.
pub fn parse_checkpoint(bytes: &[u8]) -> Result<Checkpoint, ExportError> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ExportError::Checkpoint(format!("not JSON: {e}")))?;
    let v = match v.get("checkpoint") {
        Some(inner) if inner.is_object() => inner.clone(),
        _ => v,
    };
    serde_json::from_value(v).map_err(|e| ExportError::Checkpoint(format!("not a checkpoint: {e}")))
}

/// What the verifier may trust besides the file.
#[derive(Debug, Default)]
pub struct Trust<'a> {
    /// A checkpoint received outside the file (`--checkpoint`).
    pub checkpoint: Option<&'a Checkpoint>,
    /// The checkpoint public key (`--public-key`), hex.
    pub public_key: Option<&'a str>,
    /// The signing keys (from an explicit `--data-dir`): HMAC signatures are checked.
    pub keys: Option<&'a Keys>,
}

/// Where the trusted public key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `--public-key`.
    Argument,
    /// The keys in `--data-dir`.
    DataDir,
    /// The `--checkpoint`.
    Checkpoint,
    /// Only the file's own header (self-asserted).
    FileHeader,
    /// None anywhere (an unsigned log).
    None,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Argument => "--public-key",
            Self::DataDir => "the keys in --data-dir",
            Self::Checkpoint => "the --checkpoint",
            Self::FileHeader => {
                "the file's own header (not independent: pass --checkpoint or --public-key)"
            }
            Self::None => "none",
        })
    }
}

/// The outcome of verifying a file.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The chain report, with file-level problems merged in.
    pub report: Report,
    /// The trusted checkpoint key, if any.
    pub public_key: Option<String>,
    /// Where it came from.
    pub key_source: KeySource,
    /// Whether HMAC signatures were checked.
    pub signatures_checked: bool,
    /// Checkpoint lines in the file.
    pub file_checkpoints: usize,
    /// The trusted checkpoint's tree size, if one was given.
    pub trusted_checkpoint: Option<u64>,
    /// Things a reader should know that are not failures.
    pub notes: Vec<String>,
}

/// Exit code when the log is intact and complete up to its checkpoints.
pub const EXIT_OK: u8 = 0;
/// Exit code when something was tampered with.
pub const EXIT_TAMPERED: u8 = 1;
/// Exit code for usage and IO errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the chain is intact but events are unsigned.
pub const EXIT_UNSIGNED: u8 = 3;

impl Verdict {
    /// The process exit code for this verdict.
    pub fn exit_code(&self) -> u8 {
        match self.report.state {
            State::Failed => EXIT_TAMPERED,
            State::Unsigned => EXIT_UNSIGNED,
            State::Verified | State::ChainOnly => EXIT_OK,
        }
    }

    /// The summary printed for people. Never says "verified" unless the state is.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let r = &self.report;
        let mut s = String::new();
        let range = match (r.first_seq, r.last_seq) {
            (Some(a), Some(b)) => format!("seq {a} to {b}"),
            _ => "none".into(),
        };
        let _ = writeln!(s, "events checked: {} ({range})", r.checked);
        let _ = writeln!(
            s,
            "checkpoints: {} in the file{}; highest matched: {}",
            self.file_checkpoints,
            self.trusted_checkpoint
                .map(|t| format!(", trusted one at {t}"))
                .unwrap_or_default(),
            r.checkpoint.map_or("none".into(), |c| c.to_string())
        );
        let _ = writeln!(
            s,
            "checkpoint key: {} (from {})",
            self.public_key.as_deref().unwrap_or("-"),
            self.key_source
        );
        let _ = writeln!(
            s,
            "signatures: {}",
            if self.signatures_checked {
                "HMAC signatures checked with the keys in --data-dir"
            } else {
                "not checked (no --data-dir with its KEK); hash chain and checkpoints only"
            }
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        match (&r.problem, r.state) {
            (Some(p), _) => {
                let _ = writeln!(s, "result: TAMPERED");
                let reason = serde_json::to_value(p.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let _ = writeln!(s, "first bad seq {}: {reason}: {}", p.seq, p.detail);
            }
            (None, State::Verified) => {
                let _ = writeln!(s, "result: verified");
            }
            (None, State::ChainOnly) => {
                let _ = writeln!(
                    s,
                    "result: chain_only (chain and checkpoints intact; signatures not checked)"
                );
            }
            (None, State::Unsigned | State::Failed) => {
                let _ = writeln!(
                    s,
                    "result: unsigned ({} events carry no signature: the chain is intact, but \
                     they cannot be authenticated)",
                    r.unsigned
                );
            }
        }
        s
    }
}

fn problem(seq: u64, reason: Reason, detail: String) -> Problem {
    Problem {
        seq,
        reason,
        detail,
    }
}

/// Verifies an export parsed with `trust.keys` against `trust`.
///
/// # Errors
/// [`ExportError::Checkpoint`] when the trusted checkpoint belongs to another org or lies
/// before the file's range (it can then prove nothing about it).
pub fn verify_file(file: &ExportFile, trust: &Trust<'_>) -> Result<Verdict, ExportError> {
    let h = &file.header;
    let mut notes = Vec::new();
    let data_dir_key = trust.keys.map(Keys::public_key);
    let (public_key, key_source) = if let Some(pk) = trust.public_key {
        (Some(pk.to_ascii_lowercase()), KeySource::Argument)
    } else if let Some(pk) = data_dir_key {
        (Some(pk), KeySource::DataDir)
    } else if let Some(pk) = trust.checkpoint.and_then(|c| c.public_key.clone()) {
        (Some(pk), KeySource::Checkpoint)
    } else if let Some(pk) = h.public_key.clone() {
        (Some(pk), KeySource::FileHeader)
    } else {
        (None, KeySource::None)
    };
    if let Some(cp) = trust.checkpoint {
        if cp.org_id != h.org_id {
            return Err(ExportError::Checkpoint(format!(
                "it is for org {}, the file for {}",
                cp.org_id, h.org_id
            )));
        }
        if cp.tree_size + 1 < h.from_seq {
            return Err(ExportError::Checkpoint(format!(
                "it covers {} events but the file starts at {}: export from {} or earlier",
                cp.tree_size,
                h.from_seq,
                cp.tree_size.max(1)
            )));
        }
        if cp.signature.is_none() {
            notes.push(format!(
                "the trusted checkpoint at {} is unsigned: it bounds the log only as far as \
                 its channel is trusted",
                cp.tree_size
            ));
        }
    }

    // Problems only the file can have; on the same seq they win over the walk's (they say
    // more precisely what happened).
    let mut found: Vec<Problem> = Vec::new();
    for b in &file.bad {
        // A line whose seq cannot be read is placed after the event line before it.
        let seq = b.seq.unwrap_or_else(|| {
            let before = file.lines.partition_point(|&l| l < b.line);
            before
                .checked_sub(1)
                .map_or(h.from_seq, |i| file.links[i].seq + 1)
        });
        found.push(problem(
            seq,
            Reason::Edited,
            format!("line {} is not a valid event: {}", b.line, b.error),
        ));
    }
    if let Some(pk) = public_key.as_deref() {
        for cp in &file.checkpoints {
            if cp.signature.is_some()
                && cp.public_key.as_deref().is_some_and(|k| k != pk)
                && cp.verify_with(pk) != Some(true)
            {
                found.push(problem(
                    cp.tree_size,
                    Reason::KeyReplaced,
                    format!(
                        "the file's checkpoint at {} is signed with another key than the \
                         trusted one (the log was re-signed)",
                        cp.tree_size
                    ),
                ));
            }
        }
    }
    let mut checkpoints = file.checkpoints.clone();
    checkpoints.extend(trust.checkpoint.cloned());
    let mut report = verify::check(
        &file.links,
        &Anchors {
            prev: None,
            checkpoints: &checkpoints,
            public_key: public_key.as_deref(),
        },
    );
    found.extend(report.problem.take());
    // The header says which range the file holds; a shorter file lost lines at an end.
    let first = file.links.iter().map(|l| l.seq).min();
    let last = file.links.iter().map(|l| l.seq).max();
    match (first, last) {
        (Some(f), _) if f > h.from_seq => found.push(problem(
            h.from_seq,
            Reason::Missing,
            format!(
                "the file's header says it starts at {} but its first event is {f}",
                h.from_seq
            ),
        )),
        (_, Some(l)) if l < h.to_seq => found.push(problem(
            l + 1,
            Reason::Truncated,
            format!(
                "the file ends at {l} but its header says it runs to {}",
                h.to_seq
            ),
        )),
        (None, None) => found.push(problem(
            h.from_seq,
            Reason::Truncated,
            "the file holds no events".into(),
        )),
        _ => {}
    }
    let first_bad = found
        .into_iter()
        .enumerate()
        .min_by_key(|(i, p)| (p.seq, *i))
        .map(|(_, p)| p);
    if let Some(p) = first_bad {
        report.state = State::Failed;
        report.checkpoint = None;
        report.problem = Some(p);
    }
    if h.from_seq > 1 && !checkpoints.iter().any(|c| c.tree_size + 1 == h.from_seq) {
        notes.push(format!(
            "no checkpoint at {} anchors the first event's link to the events before it",
            h.from_seq - 1
        ));
    }
    if report.problem.is_none()
        && checkpoints
            .iter()
            .all(|c| last.is_none_or(|l| c.tree_size < l))
    {
        notes.push(format!(
            "no checkpoint covers the last event{}: a lost tail after the last checkpoint \
             cannot be detected",
            last.map(|l| format!(" ({l})")).unwrap_or_default()
        ));
    }
    Ok(Verdict {
        report,
        public_key,
        key_source,
        signatures_checked: trust.keys.is_some(),
        file_checkpoints: file.checkpoints.len(),
        trusted_checkpoint: trust.checkpoint.map(|c| c.tree_size),
        notes,
    })
}

/// Parses `path` and verifies it.
///
/// # Errors
/// As [`ExportFile::parse`] and [`verify_file`], and opening the file.
pub fn verify_path(path: &Path, trust: &Trust<'_>) -> Result<Verdict, ExportError> {
    let f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let file = ExportFile::parse(std::io::BufReader::new(f), trust.keys)?;
    verify_file(&file, trust)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::event::{Actor, KEY_MATERIAL_LEN, NewEvent};

    fn exported(n: usize) -> (tempfile::TempDir, Keys, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.redb")).unwrap();
        let keys = Keys::from_material(&[4; KEY_MATERIAL_LEN]).unwrap();
        let events = (0..n)
            .map(|i| NewEvent::new(Actor::admin(), "token.create", format!("t{i}")))
            .collect();
        store.audit_append(events, Some(&keys), 1_000, 4).unwrap();
        let mut out = Vec::new();
        let spec = ExportSpec {
            org: "default".into(),
            from: None,
            to: None,
            public_key: Some(keys.public_key()),
            exported_at: "now".into(),
        };
        let done = export_store(&store, spec, &mut out, &mut |_, _| {}).unwrap();
        assert_eq!((done.events, done.checkpoints), (n as u64, (n / 4) as u64));
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        (dir, keys, lines)
    }

    fn verdict(lines: &[String], trust: &Trust<'_>) -> Verdict {
        let file = ExportFile::parse((lines.join("\n") + "\n").as_bytes(), trust.keys).unwrap();
        verify_file(&file, trust).unwrap()
    }

    fn first_bad(v: &Verdict) -> (u64, Reason) {
        let p = v.report.problem.as_ref().expect("a problem");
        (p.seq, p.reason)
    }

    #[test]
    fn an_export_round_trips_and_verifies_with_and_without_the_hmac_key() {
        let (_dir, keys, lines) = exported(9);
        assert!(
            lines[0].starts_with(r#"{"type":"export","version":1,"#),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with(r#"{"type":"event","seq":1,"#),
            "{}",
            lines[1]
        );
        let v = verdict(&lines, &Trust::default());
        assert_eq!((v.report.state, v.exit_code()), (State::ChainOnly, EXIT_OK));
        assert_eq!(v.key_source, KeySource::FileHeader);
        assert!(v.notes.iter().any(|n| n.contains("no checkpoint covers")));
        let trust = Trust {
            keys: Some(&keys),
            ..Trust::default()
        };
        let v = verdict(&lines, &trust);
        assert_eq!(
            (v.report.state, v.report.checkpoint),
            (State::Verified, Some(8))
        );
        assert!(v.summary().contains("result: verified"));
    }

    #[test]
    fn broken_lines_and_a_short_file_are_named() {
        let (_dir, _keys, lines) = exported(9);
        let mut l = lines.clone();
        l[5] = l[5][..40].to_owned();
        assert_eq!(
            first_bad(&verdict(&l, &Trust::default())),
            (5, Reason::Edited)
        );
        let mut l = lines.clone();
        l[5] = "garbage".into();
        assert_eq!(
            first_bad(&verdict(&l, &Trust::default())),
            (5, Reason::Edited)
        );
        // The tail gone (with its checkpoint): the header still says 9.
        let l: Vec<String> = lines[..7].to_vec();
        let v = verdict(&l, &Trust::default());
        assert_eq!(
            (first_bad(&v), v.exit_code()),
            ((7, Reason::Truncated), EXIT_TAMPERED)
        );
        // The head gone.
        let mut l = lines.clone();
        l.remove(1);
        assert_eq!(
            first_bad(&verdict(&l, &Trust::default())),
            (1, Reason::Missing)
        );
    }

    #[test]
    fn a_trusted_checkpoint_must_fit_the_file() {
        let (_dir, keys, lines) = exported(9);
        let cp: Checkpoint = serde_json::from_str(lines.last().unwrap()).unwrap();
        let wrapped = serde_json::json!({ "checkpoint": cp, "created": true }).to_string();
        assert_eq!(parse_checkpoint(wrapped.as_bytes()).unwrap(), cp);
        let mut other = cp.clone();
        other.org_id = "acme".into();
        let file = ExportFile::parse((lines.join("\n")).as_bytes(), None).unwrap();
        let trust = Trust {
            checkpoint: Some(&other),
            ..Trust::default()
        };
        assert!(matches!(
            verify_file(&file, &trust),
            Err(ExportError::Checkpoint(_))
        ));
        // Beyond the file: it was cut.
        let mut later = cp.clone();
        later.tree_size = 12;
        keys.sign_checkpoint(&mut later);
        let trust = Trust {
            checkpoint: Some(&later),
            ..Trust::default()
        };
        let v = verify_file(&file, &trust).unwrap();
        assert_eq!(first_bad(&v), (10, Reason::Truncated));
        assert_eq!(v.key_source, KeySource::Checkpoint);
    }

    #[test]
    fn bounds_are_seqs_or_rfc3339_times() {
        assert_eq!(Bound::parse("from", "12").unwrap(), Bound::Seq(12));
        assert_eq!(
            Bound::parse("from", "1970-01-01T00:00:01Z").unwrap(),
            Bound::Time(1000)
        );
        assert!(Bound::parse("from", "yesterday").is_err());
        assert_eq!(recover_seq(r#"{"type":"event","seq":17,"prev"#), Some(17));
        assert_eq!(recover_seq(r#"{"id":"default-23","ts_ms""#), Some(23));
        assert_eq!(recover_seq("garbage"), None);
    }
}
