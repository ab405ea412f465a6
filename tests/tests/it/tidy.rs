//! House rules checked on the source tree: every non-test Rust file opens with a `//!` line
//! saying what it owns, and no test is ignored or expects a panic.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in ["shared", "agent", "server", "tests"] {
        rust_files(&root.join(dir), &mut files);
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
