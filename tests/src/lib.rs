//! Test harness: starts the real `warden` and `warden-agent` binaries on loopback with
//! temporary data directories, talks to the HTTP API, and waits for conditions.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, which also builds
//! `warden-sim` from the simulator crate `tests/sim`; `scripts/test.sh` does it). Processes are
//! killed when their handle drops.

pub mod collect;

use anyhow::Context;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Milliseconds since the Unix epoch, as the server stamps samples.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit in i64")
}

/// Path of a workspace binary next to the test executable's target directory.
///
/// # Panics
/// If the binary was not built, with the command to build it.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A free loopback address for TCP (HTTP).
pub fn free_tcp() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    l.local_addr().expect("addr")
}

/// A free loopback address for UDP (QUIC).
pub fn free_udp() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.local_addr().expect("addr")
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout` with `what`.
///
/// # Panics
/// On timeout.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = nix::sys::signal::kill(pid, sig);
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `warden` server process.
pub struct ServerProc {
    /// Data directory.
    pub dir: PathBuf,
    /// HTTP address.
    pub http: SocketAddr,
    /// QUIC address.
    pub quic: SocketAddr,
    extra: Vec<String>,
    /// The audit key-encryption key passed as `WARDEN_AUDIT_KEK` (`None`: signing is
    /// unavailable).
    pub kek: Option<String>,
    /// `CREDENTIALS_DIRECTORY` for the server (systemd credentials), if any.
    pub credentials: Option<PathBuf>,
    child: Option<Child>,
    runs: u32,
}

/// The audit key-encryption key test servers get.
pub const TEST_KEK: &str = "warden-tests-audit-kek-0123456789";

impl ServerProc {
    /// Starts a server with fresh ports in `dir`; `extra` goes after `run`.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_kek(dir, extra, Some(TEST_KEK))
    }

    /// [`ServerProc::start`] with another audit KEK, or none (signing unavailable).
    pub fn start_with_kek(dir: &Path, extra: &[&str], kek: Option<&str>) -> Self {
        let mut s = Self {
            dir: dir.to_path_buf(),
            http: free_tcp(),
            quic: free_udp(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            kek: kek.map(str::to_owned),
            credentials: None,
            child: None,
            runs: 0,
        };
        s.spawn();
        s
    }

    /// The `warden` command with this server's audit KEK in its environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin("warden"));
        cmd.env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("WARDEN_AUDIT_KEK")
            .env("RUST_LOG", "info,warden_server=debug");
        if let Some(k) = &self.kek {
            cmd.env("WARDEN_AUDIT_KEK", k);
        }
        if let Some(c) = &self.credentials {
            cmd.env("CREDENTIALS_DIRECTORY", c);
        }
        cmd
    }

    /// The log file of the current run.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("server-{}.log", self.runs))
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("mkdir");
        self.runs += 1;
        let log = std::fs::File::create(self.log_path()).expect("log");
        let child = self
            .command()
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("run")
            .arg("--http")
            .arg(self.http.to_string())
            .arg("--quic")
            .arg(self.quic.to_string())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn warden");
        self.child = Some(child);
        let url = format!("http://{}/healthz", self.http);
        eventually(Duration::from_secs(20), "server /healthz", || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "warden exited early with {status}: {}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            healthy(&url)
        });
    }

    /// The admin token.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin-token"))
            .expect("admin token")
            .trim()
            .to_owned()
    }

    /// GET `path` with the admin token; returns status and JSON.
    pub fn get(&self, path: &str) -> (u16, Value) {
        http(
            &format!("http://{}{path}", self.http),
            "GET",
            Some(&self.admin_token()),
            None,
        )
    }

    /// GET `path` with the admin token as text (e.g. `/metrics`).
    pub fn get_text(&self, path: &str) -> String {
        install_crypto();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            reqwest::Client::new()
                .get(format!("http://{}{path}", self.http))
                .bearer_auth(self.admin_token())
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .expect("GET")
                .text()
                .await
                .expect("body")
        })
    }

    /// POST `path` with the admin token and optional JSON body.
    pub fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        http(
            &format!("http://{}{path}", self.http),
            "POST",
            Some(&self.admin_token()),
            body,
        )
    }

    /// Creates a join token through the API.
    pub fn token(&self, ttl: &str) -> String {
        let (status, v) = self.post("/api/tokens", Some(serde_json::json!({ "ttl": ttl })));
        assert_eq!(status, 200, "token create: {v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// The agent list.
    pub fn agents(&self) -> Vec<Value> {
        let (status, v) = self.get("/api/agents");
        assert_eq!(status, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    }

    /// One agent's entry.
    pub fn agent(&self, id: &str) -> Option<Value> {
        self.agents().into_iter().find(|a| a["id"] == id)
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, nix::sys::signal::Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Starts again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM and wait; returns the exit status.
    ///
    /// # Panics
    /// If it does not exit within 15 s.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(&c, nix::sys::signal::Signal::SIGTERM);
        wait_exit(&mut c, Duration::from_secs(15)).expect("warden did not stop on SIGTERM")
    }

    /// Runs a `warden` CLI command against this server's data directory.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let cfg = self.dir.join("cli.toml");
        std::fs::write(
            &cfg,
            format!(
                "http_listen = \"{}\"\nquic_listen = \"{}\"\n",
                self.http, self.quic
            ),
        )
        .expect("cli cfg");
        self.command()
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run warden cli")
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            dump_tail("warden", &self.log_path());
        }
    }
}

/// On a failing test, shows the end of a process log (the temp dir is about to go).
fn dump_tail(what: &str, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    eprintln!(
        "--- last lines of {what} log {} ---\n{tail}\n---",
        path.display()
    );
}

/// A `warden-agent` with its own data directory and config.
pub struct AgentProc {
    /// Data directory.
    pub dir: PathBuf,
    /// Config path.
    pub config: PathBuf,
    child: Option<Child>,
    runs: u32,
}

impl AgentProc {
    /// Prepares an agent whose config body (after `data_dir`) is `body`.
    pub fn new(dir: &Path, body: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        let config = dir.join("agent.toml");
        std::fs::write(&config, format!("data_dir = \"{}\"\n{body}", dir.display()))
            .expect("write config");
        Self {
            dir: dir.to_path_buf(),
            config,
            child: None,
            runs: 0,
        }
    }

    /// A simulated node reporting every `interval` with no host or docker collection.
    pub fn simulated(dir: &Path, hostname: &str, interval: &str) -> Self {
        Self::new(
            dir,
            &format!(
                "hostname = \"{hostname}\"\n[collectors.host]\nenabled = false\n[collectors.docker]\nenabled = false\n[collectors.simulated]\nseed = 7\nguests = 3\ninterval = \"{interval}\"\n"
            ),
        )
    }

    /// The agent of PVE node `node1` reading `sim` every 2 s (host and docker off); the API
    /// token's secret is written next to `dir`.
    pub fn proxmox(dir: &Path, sim: &warden_sim::pve::PveSim) -> Self {
        let token = warden_sim::pve::PveSimOptions::fast().token;
        let (token_id, secret) = token.split_once('=').expect("a PVE token id=secret");
        let secret_file = dir.with_extension("pve-secret");
        warden_io::fs::write_private(&secret_file, format!("{secret}\n").as_bytes())
            .expect("write the PVE token secret");
        Self::new(
            dir,
            &format!(
                "hostname = \"node1\"\n[collectors.host]\nenabled = false\n[collectors.docker]\nenabled = false\n\
                 [collectors.proxmox]\nenabled = true\nurl = \"{}\"\ntoken_id = \"{token_id}\"\n\
                 token_secret_file = \"{}\"\nfingerprint = \"{}\"\nnode = \"node1\"\ninterval = \"2s\"\ntimeout = \"2s\"\n",
                sim.base_url(),
                secret_file.display(),
                sim.cert_fingerprint()
            ),
        )
    }

    /// Runs `warden-agent enroll`; returns the process output.
    pub fn enroll(&self, token: &str, server: Option<SocketAddr>) -> std::process::Output {
        let mut cmd = Command::new(bin("warden-agent"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(["enroll", "--token", token]);
        if let Some(s) = server {
            cmd.args(["--server", &s.to_string()]);
        }
        cmd.output().expect("run enroll")
    }

    /// Enrolls and asserts success; returns the agent id.
    pub fn enroll_ok(&self, token: &str) -> String {
        let out = self.enroll(token, None);
        assert!(
            out.status.success(),
            "enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.agent_id()
    }

    /// The enrolled agent id.
    pub fn agent_id(&self) -> String {
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.join("identity/enrollment.json"))
                .expect("enrollment.json"),
        )
        .expect("json");
        meta["agent_id"].as_str().expect("agent_id").to_owned()
    }

    /// The log of the current run.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("agent-{}.log", self.runs))
    }

    /// The current run's log text.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts `warden-agent run` with extra args.
    pub fn start(&mut self, extra: &[&str]) {
        self.runs += 1;
        let log = std::fs::File::create(self.log_path()).expect("log");
        let child = Command::new(bin("warden-agent"))
            .env("RUST_LOG", "info,warden_agent=debug")
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        self.child = Some(child);
    }

    /// SIGTERM and wait; returns the exit status.
    ///
    /// # Panics
    /// If it does not exit within 15 s.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(&c, nix::sys::signal::Signal::SIGTERM);
        wait_exit(&mut c, Duration::from_secs(15)).expect("agent did not stop on SIGTERM")
    }

    /// The process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, nix::sys::signal::Signal::SIGKILL);
            let _ = c.wait();
        }
        if std::thread::panicking() && self.runs > 0 {
            dump_tail("warden-agent", &self.log_path());
        }
    }
}

/// A blocking HTTP call with an optional bearer token; returns status and JSON body
/// (Null when the body is not JSON).
pub fn http(url: &str, method: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    try_http(url, method, token, body).unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
}

/// Installs ring as the process's rustls provider (reqwest is built with
/// `rustls-no-provider` because the agent's Proxmox collector needs TLS); idempotent.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn try_http(
    url: &str,
    method: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    install_crypto();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client
            .request(method.parse().context("method")?, url)
            .timeout(Duration::from_secs(20));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    })
}

fn healthy(url: &str) -> Option<()> {
    matches!(try_http(url, "GET", None, None), Ok((200, _))).then_some(())
}
