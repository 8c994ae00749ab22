//! Test harness: real `ferrocd` processes on free loopback ports, real clients.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; collisions are retried by `Member::start`).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// One ferrocd process and its data dir.
pub struct Member {
    child: Option<Child>,
    /// --name.
    pub name: String,
    /// --initial-cluster (empty: just this member).
    pub initial_cluster: String,
    /// --initial-cluster-state.
    pub cluster_state: String,
    /// e.g. http://127.0.0.1:23791
    pub client_url: String,
    /// e.g. http://127.0.0.1:23801
    pub peer_url: String,
    /// The member's --data-dir.
    pub data_dir: PathBuf,
    /// Extra flags given at start (reused on restart).
    pub extra: Vec<String>,
    /// Where stderr goes.
    pub log_path: PathBuf,
    /// Extra environment for the process (empty unless a test sets it; reused on restart).
    pub env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

/// The server binary under test.
pub fn ferrocd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferrocd")
}

impl Member {
    /// Starts a single member in a fresh temp dir and waits until it serves.
    pub fn start(extra: &[&str]) -> Member {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut m = Member::with_dir(data_dir, extra);
        m._tmp = Some(tmp);
        m
    }

    /// Starts a member on `data_dir` (which may already hold data).
    pub fn with_dir(data_dir: PathBuf, extra: &[&str]) -> Member {
        let log_path = data_dir.with_extension("log");
        let mut m = Member {
            child: None,
            name: "m1".into(),
            initial_cluster: String::new(),
            cluster_state: "new".into(),
            client_url: String::new(),
            peer_url: String::new(),
            data_dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log_path,
            env: Vec::new(),
            _tmp: None,
        };
        m.spawn_and_wait();
        m
    }

    /// A cluster member that is not started yet (see [`Cluster`]).
    pub fn unstarted(
        name: &str,
        data_dir: PathBuf,
        client_url: String,
        peer_url: String,
        extra: &[&str],
    ) -> Member {
        Member {
            child: None,
            name: name.into(),
            initial_cluster: String::new(),
            cluster_state: "new".into(),
            client_url,
            peer_url,
            log_path: data_dir.with_extension("log"),
            data_dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            _tmp: None,
        }
    }

    /// Starts the process without waiting for it.
    pub fn launch(&mut self) {
        self.child = Some(self.spawn());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the process to exit on its own; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return Some(st);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Restarts on the same data dir and the same URLs (a member's peer URL is its identity).
    pub fn restart_same_urls(&mut self) {
        self.kill9();
        self.launch();
        if let Err(e) = self.wait_ready(Duration::from_secs(30)) {
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            panic!("{} did not come back: {e}\n--- log ---\n{log}", self.name);
        }
    }

    fn spawn_and_wait(&mut self) {
        for attempt in 0..5 {
            self.client_url = format!("http://127.0.0.1:{}", free_port());
            self.peer_url = format!("http://127.0.0.1:{}", free_port());
            self.child = Some(self.spawn());
            match self.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return,
                Err(e) => {
                    let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                    self.kill9();
                    if attempt < 4 && log.contains("Address already in use") {
                        continue;
                    }
                    panic!("ferrocd did not become ready: {e}\n--- log ---\n{log}");
                }
            }
        }
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let initial_cluster = if self.initial_cluster.is_empty() {
            format!("{}={}", self.name, self.peer_url)
        } else {
            self.initial_cluster.clone()
        };
        Command::new(ferrocd_bin())
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(&self.client_url)
            .arg("--advertise-client-urls")
            .arg(&self.client_url)
            .arg("--listen-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-cluster")
            .arg(initial_cluster)
            .arg("--initial-cluster-state")
            .arg(&self.cluster_state)
            .args(&self.extra)
            .env("FERROCD_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ferrocd")
    }

    /// The client endpoint without scheme (what etcd-client wants).
    pub fn endpoint(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }

    /// Polls `/health` until it answers 200 or the process dies.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("process exited with {status}"));
                }
            }
            if let Ok((200, _)) = http_get(&self.endpoint(), "/health") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("timed out waiting for /health".into())
    }

    /// The server's process id (for /proc checks).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (e.g. "STOP", "CONT") to the running process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// SIGKILL, no clean shutdown.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe_sigterm(c.id());
        c.wait().expect("wait")
    }

    /// Restarts on the same data dir and ports' fresh choice.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn_and_wait();
    }

    /// A connected etcd-client.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None)
            .await
            .expect("connect etcd-client")
    }

    /// Runs etcdctl against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.endpoint(), args)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// Path to etcdctl, or a panic that says how to get it.
pub fn etcdctl_bin() -> String {
    for p in ["/usr/bin/etcdctl", "/usr/local/bin/etcdctl"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("etcdctl not found: install it with `apt-get install etcd-client` (.ci/run does this)");
}

/// Runs etcdctl (API v3) against `endpoint`.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// stdout of a successful etcdctl run; panics with stderr otherwise.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// A minimal HTTP/1.1 GET; returns (status, body).
pub fn http_get(endpoint: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(endpoint).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {buf:?}"))?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// A minimal HTTP/1.1 request with an optional JSON body; returns (status, body).
pub fn http_request(
    endpoint: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let addr: std::net::SocketAddr = endpoint.parse().map_err(|e| format!("{endpoint}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {buf:?}"))?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// Several members forming one cluster, each in its own dir under one temp dir.
pub struct Cluster {
    /// The members, in --initial-cluster order.
    pub members: Vec<Member>,
    /// Where their dirs live.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members (m1..mn) together and waits until each serves.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with_env(n, extra, &[])
    }

    /// [`Cluster::start`] with extra environment for every member's process.
    pub fn start_with_env(n: usize, extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut members: Vec<Member> = (1..=n)
            .map(|i| {
                Member::unstarted(
                    &format!("m{i}"),
                    dir.path().join(format!("m{i}")),
                    format!("http://127.0.0.1:{}", free_port()),
                    format!("http://127.0.0.1:{}", free_port()),
                    extra,
                )
            })
            .collect();
        let ic: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        for m in &mut members {
            m.initial_cluster = ic.join(",");
            m.env = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            m.launch();
        }
        for m in &mut members {
            if let Err(e) = m.wait_ready(Duration::from_secs(30)) {
                let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
                panic!("{} did not become ready: {e}\n--- log ---\n{log}", m.name);
            }
        }
        Cluster { members, dir }
    }

    /// Every member's client endpoint (host:port).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint()).collect()
    }

    /// The index of the member that currently leads, asked of member `via`.
    pub async fn leader(&self, via: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) =
                etcd_client::Client::connect([self.members[via].endpoint()], None).await
            {
                if let Ok(st) = c.status().await {
                    let leader = st.leader();
                    for (i, m) in self.members.iter().enumerate() {
                        if let Ok(mut mc) = etcd_client::Client::connect([m.endpoint()], None).await
                        {
                            if let Ok(s) = mc.status().await {
                                if s.header().map(|h| h.member_id()) == Some(leader) && leader != 0
                                {
                                    return i;
                                }
                            }
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader found");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A long-running etcdctl command (`lock`, `elect`) in the background: stdout lines arrive on
/// a channel as it prints them; stderr is collected for failure messages.
pub struct BackgroundEtcdctl {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl BackgroundEtcdctl {
    /// Starts `etcdctl --endpoints=<endpoint> <args...>` with extra environment `envs`.
    pub fn spawn(endpoint: &str, args: &[&str], envs: &[(&str, &str)]) -> BackgroundEtcdctl {
        use std::io::BufRead;
        let mut child = Command::new(etcdctl_bin())
            .env("ETCDCTL_API", "3")
            .envs(envs.iter().copied())
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn etcdctl");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Drained as it comes, so a chatty etcdctl never blocks on a full pipe.
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = err.read_to_string(&mut buf);
            sink.lock().unwrap().push_str(&buf);
        });
        BackgroundEtcdctl {
            child,
            lines,
            stderr,
        }
    }

    /// The next stdout line, or None after `timeout`.
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Sends `sig` (e.g. "INT", "KILL") to the process.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(st.success());
    }

    /// Kills the process and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "etcdctl did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a clean exit; panics with etcdctl's stderr otherwise.
    pub fn wait_success(mut self, timeout: Duration) {
        let st = self.wait_exit(timeout);
        if !st.success() {
            // The drain thread finishes once the process has closed stderr.
            std::thread::sleep(Duration::from_millis(100));
            panic!("etcdctl exited with {st}: {}", self.stderr.lock().unwrap());
        }
    }
}

impl Drop for BackgroundEtcdctl {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The gRPC status inside an etcd-client error (panics on any other kind of error).
pub fn grpc_status(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// The code and message of the gRPC status inside an etcd-client error.
pub fn code_and_message(e: etcd_client::Error) -> (tonic::Code, String) {
    let s = grpc_status(e);
    (s.code(), s.message().to_string())
}

/// HashKV of member `m` at `rev`.
pub async fn hash_kv(m: &Member, rev: i64) -> u32 {
    m.client().await.hash_kv(rev).await.expect("hashkv").hash()
}

/// Member `m`'s current revision, read serializably (what it has applied).
pub async fn revision(m: &Member) -> i64 {
    let r = m
        .client()
        .await
        .get(
            "x",
            Some(etcd_client::GetOptions::new().with_serializable()),
        )
        .await
        .unwrap();
    r.header().unwrap().revision()
}

/// Waits until every member given reports the same revision (serializable), then returns it.
pub async fn converge(members: &[&Member]) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut revs = Vec::new();
        for m in members {
            revs.push(revision(m).await);
        }
        if revs.windows(2).all(|w| w[0] == w[1]) {
            return revs[0];
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge: {revs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The member id of `m` (from its Status response header).
pub async fn member_id(m: &Member) -> u64 {
    m.client()
        .await
        .status()
        .await
        .expect("status")
        .header()
        .expect("header")
        .member_id()
}
