//! The command lines: help, version, `validate` on the shipped example configs and on
//! broken ones, and the admin commands finding the running server.

use std::process::Command;
use warden_tests::{ServerProc, bin};

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

#[test]
fn a_one_second_interval_is_valid_without_a_timeout_but_not_with_a_longer_one() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = tmp.path().join("agent.toml");
    std::fs::write(&agent, "[collectors.host]\ninterval = \"1s\"\n").unwrap();
    let (ok, out, err) = run(
        "warden-agent",
        &["--config", agent.to_str().unwrap(), "validate"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("host     = every 1s, timeout 1s"), "{out}");
    assert!(out.contains("docker   = every 10s, timeout 5s"), "{out}");

    std::fs::write(
        &agent,
        "[collectors.host]\ninterval = \"1s\"\ntimeout = \"3s\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(
        "warden-agent",
        &["--config", agent.to_str().unwrap(), "validate"],
    );
    assert!(!ok);
    assert!(
        err.contains("collectors.host.timeout (3s) must not exceed collectors.host.interval (1s)"),
        "{err}"
    );
}

#[test]
fn admin_commands_find_the_server_from_its_data_directory_or_server_flag() {
    let tmp = tempfile::tempdir().unwrap();
    // The harness gives the server a free port, never the default one.
    let server = ServerProc::start(&tmp.path().join("server"), &[]);
    // A config that does not repeat where the server listens (as `warden run --http` allows).
    let empty = tmp.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let dir = server.dir.to_str().unwrap().to_owned();
    let warden = |args: &[&str]| {
        let out = server
            .command()
            .args(["--config", empty.to_str().unwrap(), "--data-dir", &dir])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, out, err) = warden(&["token", "create", "--ttl", "10m"]);
    assert!(ok && out.starts_with("wdn1_"), "{out}{err}");
    let (ok, out, err) = warden(&["findings"]);
    assert!(ok && out.contains("no findings"), "{out}{err}");
    let (ok, out, err) = warden(&["token", "list"]);
    assert!(ok && out.lines().count() == 2, "{out}{err}");
    let export = tmp.path().join("audit.jsonl");
    let (ok, out, err) = warden(&["audit", "export", "-o", export.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        std::fs::read_to_string(&export)
            .unwrap()
            .contains("token.create"),
        "{err}"
    );

    // A stale address file: a clear error naming it, and --server wins over it.
    let stale = warden_tests::free_tcp();
    std::fs::write(server.dir.join("http.addr"), format!("{stale}\n")).unwrap();
    let (ok, _, err) = warden(&["findings"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot reach the server at http://{stale}"))
            && err.contains("http.addr")
            && err.contains("pass --server"),
        "{err}"
    );
    let url = format!("http://{}", server.http);
    let (ok, out, err) = warden(&["--server", &url, "token", "create"]);
    assert!(ok && out.starts_with("wdn1_"), "{out}{err}");
    let (ok, out, err) = warden(&["--server", &url, "findings", "--json"]);
    assert!(ok && out.trim() == "[]", "{out}{err}");
    let (ok, _, err) = warden(&["--server", "not a url", "findings"]);
    assert!(!ok && err.contains("--server"), "{err}");
}
