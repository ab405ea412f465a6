//! The command lines: help, version, and `validate` on the shipped example configs and on
//! broken ones.

use std::process::Command;
use warden_tests::bin;

fn run(name: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin(name)).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_and_version() {
    for name in ["warden", "warden-agent"] {
        let (ok, out, _) = run(name, &["--help"]);
        assert!(ok && out.contains("validate"), "{out}");
        let (ok, out, _) = run(name, &["--version"]);
        assert!(ok && out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    }
}

#[test]
fn shipped_example_configs_validate() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging");
    let (ok, out, err) = run(
        "warden",
        &["--config", &format!("{root}/server.toml"), "validate"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("config ok") && out.contains("cert_ttl    = 30days"),
        "{out}"
    );
    let (ok, out, err) = run(
        "warden-agent",
        &["--config", &format!("{root}/agent.toml"), "validate"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("spool    = 65536 KiB"), "{out}");

    // The agent.toml inside the Kubernetes manifest's ConfigMap.
    let manifest = std::fs::read_to_string(format!("{root}/kubernetes/warden-agent.yaml")).unwrap();
    let embedded: String = manifest
        .lines()
        .skip_while(|l| l.trim() != "agent.toml: |")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    assert!(embedded.contains("[collectors.kubernetes]"), "{embedded}");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("agent.toml");
    std::fs::write(&path, embedded).unwrap();
    let (ok, out, err) = run(
        "warden-agent",
        &["--config", path.to_str().unwrap(), "validate"],
    );
    assert!(ok && out.contains("config ok"), "{out}{err}");
}

#[test]
fn broken_configs_name_every_problem_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let server = tmp.path().join("server.toml");
    std::fs::write(&server, "http_listen = \"nowhere\"\ncert_ttl = \"soon\"\n").unwrap();
    let (ok, _, err) = run(
        "warden",
        &["--config", server.to_str().unwrap(), "validate"],
    );
    assert!(!ok);
    assert!(
        err.contains("server.toml") && err.contains("http_listen") && err.contains("cert_ttl"),
        "{err}"
    );

    let agent = tmp.path().join("agent.toml");
    std::fs::write(
        &agent,
        "[collectors.host]\ninterval = \"0s\"\n[spool]\nmax_size = \"lots\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(
        "warden-agent",
        &["--config", agent.to_str().unwrap(), "validate"],
    );
    assert!(!ok);
    assert!(
        err.contains("agent.toml") && err.contains("interval") && err.contains("max_size"),
        "{err}"
    );

    std::fs::write(&agent, "surprise = true\n").unwrap();
    let (ok, _, err) = run(
        "warden-agent",
        &["--config", agent.to_str().unwrap(), "validate"],
    );
    assert!(!ok && err.contains("surprise"), "{err}");

    // A missing explicit config file is an error, not silent defaults.
    let (ok, _, err) = run(
        "warden",
        &["--config", "/nonexistent/warden.toml", "validate"],
    );
    assert!(!ok && err.contains("cannot read"), "{err}");
}
