//! House rules checked on the source tree: every non-test Rust file opens with a `//!` line
//! saying what it owns, no test is ignored or expects a panic, and every `crate::` import in
//! the server follows the layering table (which must match docs/ARCHITECTURE.md).

use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Every file below `dir` (skipping `target/`) whose extension is one of `exts`.
fn files_below(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("target") {
                files_below(&path, exts, out);
            }
        } else if path
            .extension()
            .is_some_and(|e| exts.iter().any(|x| e == *x))
        {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["shared", "agent", "server", "tests"] {
        files_below(&root().join(dir), &["rs"], &mut files);
    }
    assert!(files.len() > 30, "found only {} files", files.len());
    files
}

#[test]
fn every_file_says_what_it_owns() {
    let missing: Vec<_> = workspace_files()
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != "tests.rs"))
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! line: {missing:?}"
    );
}

#[test]
fn no_ignored_or_should_panic_tests() {
    let (ignore, should_panic) = (concat!("#[", "ignore"), concat!("#[", "should_panic"));
    let offenders: Vec<_> = workspace_files()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.contains(ignore) || text.contains(should_panic)
        })
        .collect();
    assert!(offenders.is_empty(), "{offenders:?}");
}

/// The server's layering (docs/ARCHITECTURE.md, "Layering"), lowest first: `(floor, module)`.
/// A module may use the modules listed before it: every lower floor, and the modules before
/// it on its own floor. `lib` is the crate root's `start` and `Server`.
const LAYERS: &[(u8, &str)] = &[
    (0, "clock"),
    (0, "task"),
    (0, "model"),
    (0, "chain"),
    (1, "store"),
    (2, "pki"),
    (2, "audit"),
    (2, "alerts"),
    (2, "patrol"),
    (3, "config"),
    (3, "ingest"),
    (3, "context"),
    (3, "enroll"),
    (3, "quic"),
    (3, "webhooks"),
    (3, "remote_write"),
    (4, "api"),
    (4, "lib"),
    (4, "demo"),
    (4, "cli"),
];

/// Items of the crate root and the module of the table they count as: the data-directory
/// file names are constants anyone may use; `start` and `Server` are the `lib` entry.
/// `now_ms`, `rfc3339_ms` and `spawn_named` are temporary re-exports of `clock` and `task`.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("ADMIN_TOKEN_FILE", "clock"),
    ("RESET_KEY_FILE", "clock"),
    ("DB_FILE", "clock"),
    ("HTTP_ADDR_FILE", "clock"),
    ("start", "lib"),
    ("Server", "lib"),
];

/// One import against the table.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// `text` with comments, string and char literals blanked (newlines kept, so line numbers
/// stay), leaving only code.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_'))
        {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime or label.
            let end = if next == Some('\\') {
                (i + 2..b.len()).find(|&j| b[j] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for &ch in &b[i..=e] {
                        out.push(blank(ch));
                    }
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_at(b: &[char], mut i: usize) -> (String, usize) {
    while i < b.len() && b[i].is_whitespace() {
        i += 1;
    }
    let start = i;
    while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
        i += 1;
    }
    (b[start..i].iter().collect(), i)
}

/// The first path segment after every `crate::` in `code` (each member of a `crate::{..}`
/// group), with its 1-based line.
fn crate_refs(code: &str) -> Vec<(usize, String)> {
    let b: Vec<char> = code.chars().collect();
    let pat: Vec<char> = "crate".chars().collect();
    let mut refs = Vec::new();
    let line_of = |i: usize| b[..i].iter().filter(|&&c| c == '\n').count() + 1;
    let mut i = 0;
    while i + pat.len() < b.len() {
        let boundary =
            i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_' || b[i - 1] == '$');
        if !(boundary && b[i..i + pat.len()] == pat[..]) {
            i += 1;
            continue;
        }
        let mut j = i + pat.len();
        while j < b.len() && b[j].is_whitespace() {
            j += 1;
        }
        if !(b.get(j) == Some(&':') && b.get(j + 1) == Some(&':')) {
            i += 1;
            continue;
        }
        j += 2;
        while j < b.len() && b[j].is_whitespace() {
            j += 1;
        }
        if b.get(j) == Some(&'{') {
            // A group: the first segment of each top-level member.
            let mut depth = 0;
            let mut expect = true;
            let mut k = j;
            while k < b.len() {
                match b[k] {
                    '{' => {
                        depth += 1;
                        k += 1;
                        expect = depth == 1;
                        continue;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        expect = true;
                        k += 1;
                        continue;
                    }
                    c if expect && depth == 1 && !c.is_whitespace() => {
                        let (name, end) = ident_at(&b, k);
                        if !name.is_empty() {
                            refs.push((line_of(k), name));
                        }
                        expect = false;
                        k = end.max(k + 1);
                        continue;
                    }
                    _ => {}
                }
                k += 1;
            }
            i = k;
        } else {
            let (name, end) = ident_at(&b, j);
            if !name.is_empty() {
                refs.push((line_of(j), name));
            } else if b.get(j) == Some(&'*') {
                // A glob of the crate root reaches every module: never allowed.
                refs.push((line_of(j), "*".to_owned()));
            }
            i = end.max(i + 1);
        }
    }
    refs
}

/// The top-level module a file under `server/src` belongs to (`lib` for the crate root).
fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    match first.strip_suffix(".rs") {
        Some("lib") => "lib".into(),
        Some(stem) => stem.into(),
        None => first.into_owned(),
    }
}

/// Every import in `files` (path relative to `server/src`, text) against `layers`.
fn layering_violations(
    files: &[(PathBuf, String)],
    layers: &[(u8, &str)],
    root_items: &[(&str, &str)],
) -> Vec<Violation> {
    let rank = |m: &str| layers.iter().position(|(_, name)| *name == m);
    let floor = |r: usize| layers[r].0;
    let mut out = Vec::new();
    for (rel, text) in files {
        let file = format!("server/src/{}", rel.display());
        let from = top_module(rel);
        let Some(from_rank) = rank(&from) else {
            out.push(Violation {
                file,
                line: 1,
                message: format!(
                    "top-level module `{from}` is not in the layering table (tidy.rs LAYERS \
                     and docs/ARCHITECTURE.md, \"Layering\")"
                ),
            });
            continue;
        };
        for (line, name) in crate_refs(&code_only(text)) {
            let target = root_items
                .iter()
                .find(|(item, _)| *item == name)
                .map_or(name.as_str(), |(_, m)| m);
            let message = match rank(target) {
                None => format!("`crate::{name}` names no module of the layering table"),
                Some(to_rank) if to_rank > from_rank => format!(
                    "forbidden edge {from} (floor {}) -> {target} (floor {}): `{from}` may \
                     only use modules below it in the table",
                    floor(from_rank),
                    floor(to_rank)
                ),
                Some(_) => continue,
            };
            out.push(Violation {
                file: file.clone(),
                line,
                message,
            });
        }
    }
    out
}

#[test]
fn server_imports_follow_the_layering() {
    let src = root().join("server/src");
    let mut paths = Vec::new();
    files_below(&src, &["rs"], &mut paths);
    let files: Vec<(PathBuf, String)> = paths
        .into_iter()
        .map(|p| (p.strip_prefix(&src).unwrap().to_path_buf(), p))
        // The binary's root is its own crate: it only calls `warden_server::cli::main`.
        .filter(|(rel, _)| rel != Path::new("main.rs"))
        .map(|(rel, p)| (rel, std::fs::read_to_string(p).unwrap()))
        .collect();
    assert!(files.len() > 50, "found only {} files", files.len());
    let violations = layering_violations(&files, LAYERS, ROOT_ITEMS);
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "imports against the layering table (docs/ARCHITECTURE.md, \"Layering\"):\n{}",
        report.join("\n")
    );
}

/// The rows of the "Layering" table in docs/ARCHITECTURE.md: `(floor, module)` in order.
fn documented_layers() -> Vec<(u8, String)> {
    let doc = root().join("docs/ARCHITECTURE.md");
    let text = std::fs::read_to_string(doc).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Layering"))
        .expect("docs/ARCHITECTURE.md has a \"Layering\" section");
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let floor = cells.get(1)?.parse().ok()?;
            let module = cells.get(2)?.trim_matches('`').to_owned();
            Some((floor, module))
        })
        .collect()
}

#[test]
fn layering_table_matches_architecture_doc() {
    let table: Vec<(u8, String)> = LAYERS.iter().map(|(f, m)| (*f, (*m).to_owned())).collect();
    assert_eq!(
        documented_layers(),
        table,
        "docs/ARCHITECTURE.md's Layering table and tidy.rs LAYERS differ"
    );
}

#[test]
fn layering_check_catches_bad_edges() {
    let layers: &[(u8, &str)] = &[(0, "model"), (1, "store"), (2, "patrol"), (3, "api")];
    let file = |path: &str, text: &str| (PathBuf::from(path), text.to_owned());
    let files = [
        file(
            "store/findings.rs",
            "//! Findings.\n\
             use crate::{model::Finding, patrol::lifecycle::apply};\n\
             // crate::api::router() in a comment is not an import\n\
             const S: &str = \"crate::api::x\";\n\
             fn f<'a>(x: &'a str) -> char { let _ = crate::model::new(); 'c' }\n\
             fn g() { crate :: api::serve(); }\n",
        ),
        file(
            "patrol/mod.rs",
            "use crate::store::Store;\nuse crate::model::X;\n",
        ),
        file("api/mod.rs", "pub use crate::patrol::{self, run};\n"),
        file("webhooks.rs", "use crate::model::X;\n"),
        file("model/mod.rs", "pub fn f() { crate::nowhere::g() }\n"),
        file("patrol/run.rs", "\nuse crate::*;\n"),
    ];
    let found: Vec<(String, usize, bool)> = layering_violations(&files, layers, &[])
        .into_iter()
        .map(|v| {
            let edge = v.message.contains("forbidden edge");
            (v.file, v.line, edge)
        })
        .collect();
    assert_eq!(
        found,
        [
            ("server/src/store/findings.rs".to_owned(), 2, true),
            ("server/src/store/findings.rs".to_owned(), 6, true),
            ("server/src/webhooks.rs".to_owned(), 1, false),
            ("server/src/model/mod.rs".to_owned(), 1, false),
            ("server/src/patrol/run.rs".to_owned(), 2, false),
        ]
    );
    let message = layering_violations(&files[..1], layers, &[])[0].to_string();
    assert_eq!(
        message,
        "server/src/store/findings.rs:2: forbidden edge store (floor 1) -> patrol (floor 2): \
         `store` may only use modules below it in the table"
    );
}

/// Metric names are part of the agent↔server contract: outside `shared/src/metric.rs` they are
/// named through its constants, never spelled as string literals, so a typo cannot compile.
/// Names that are one plain word (`nodes`, `pods`, `ready`, `restarts`) are not checked: the
/// same words are Kubernetes and Proxmox API fields, command-line arguments and attribute keys.
/// The API simulators are exempt: they speak Proxmox's and Kubernetes' APIs, not ours, and so
/// is the test of the Kubernetes simulator's own answers.
#[test]
fn metric_names_are_spelled_only_in_the_metric_module() {
    const EXEMPT: [&str; 6] = [
        "shared/src/metric.rs",
        "tests/sim/src/lib.rs",
        "tests/sim/src/pve.rs",
        "tests/sim/src/pbs.rs",
        "tests/sim/src/k8s.rs",
        "tests/tests/it/k8s_sim.rs",
    ];
    let root = root();
    let needles: Vec<(String, String, &str)> = warden_shared::metric::ALL
        .iter()
        .filter(|(name, _)| !name.chars().all(|c| c.is_ascii_lowercase()))
        .map(|(name, _)| (format!("\"{name}\""), format!("\"{name}{{"), *name))
        .collect();
    let mut offenders = Vec::new();
    for path in workspace_files() {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if EXEMPT.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (plain, labelled, name) in &needles {
                if line.contains(plain.as_str()) || line.contains(labelled.as_str()) {
                    offenders.push(format!("{rel}:{}: {name}", n + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "metric names spelled as literals; use warden_shared::metric's constants: {offenders:#?}"
    );
}

/// The repository stands alone: nothing a user reads or builds points outside it.
#[test]
fn nothing_points_outside_the_repository() {
    let mut files = workspace_files();
    files.push(root().join("README.md"));
    files_below(&root().join("docs"), &["md"], &mut files);
    let (up, abs) = (concat!("../", "shared/"), concat!("/work/", "shared"));
    let offenders: Vec<_> = files
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.contains(up) || text.contains(abs)
        })
        .collect();
    assert!(offenders.is_empty(), "{offenders:?}");
}
