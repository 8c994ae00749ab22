//! Start-up of the real `ferrocd` binary: etcd's flags, `ETCD_*` environment, the YAML config
//! file, defaults, start-up errors and clean shutdown. Every child started here is killed on drop.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `ferrocd` command with no inherited `ETCD_*` variables.
fn ferrocd() -> Command {
    let mut cmd = Command::new(common::ferrocd_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("FERROCD_LOG", "info").stdin(Stdio::null());
    cmd
}

/// Fresh client and peer URLs on free loopback ports.
struct Urls {
    client: String,
    peer: String,
}

impl Urls {
    fn new() -> Urls {
        Urls {
            client: format!("http://127.0.0.1:{}", common::free_port()),
            peer: format!("http://127.0.0.1:{}", common::free_port()),
        }
    }

    fn endpoint(&self) -> String {
        self.client.trim_start_matches("http://").to_string()
    }
}

/// Flags for a one-member cluster named `name` on `u` (no --data-dir).
fn member_flags(name: &str, u: &Urls) -> Vec<String> {
    vec![
        "--name".into(),
        name.into(),
        "--listen-client-urls".into(),
        u.client.clone(),
        "--advertise-client-urls".into(),
        u.client.clone(),
        "--listen-peer-urls".into(),
        u.peer.clone(),
        "--initial-advertise-peer-urls".into(),
        u.peer.clone(),
        "--initial-cluster".into(),
        format!("{name}={}", u.peer),
    ]
}

/// What a process that was expected to exit did.
struct Exited {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion, killing it (and failing) if it is still running after `timeout`.
/// Output goes through files so a chatty child can never block on a full pipe.
fn run_to_exit(mut cmd: Command, timeout: Duration) -> Exited {
    let logs = tempfile::tempdir().expect("tempdir");
    let out_path = logs.path().join("stdout");
    let err_path = logs.path().join("stderr");
    cmd.stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    let mut child = cmd.spawn().expect("spawn ferrocd");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ferrocd was expected to exit within {timeout:?} but kept running\nstderr: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Exited {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Asserts a non-zero exit with something on stderr; returns stderr.
fn failed(e: &Exited) -> String {
    assert!(
        !e.status.success(),
        "ferrocd was expected to fail but exited with {}\nstdout: {}\nstderr: {}",
        e.status,
        e.stdout,
        e.stderr
    );
    assert!(
        !e.stderr.trim().is_empty(),
        "a failure must explain itself on stderr ({})",
        e.status
    );
    e.stderr.clone()
}

/// A running ferrocd started by a test; killed on drop.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
    endpoint: String,
}

impl Proc {
    /// Spawns `cmd` (stderr to `log`) serving clients on `endpoint` (host:port).
    fn spawn(mut cmd: Command, log: &Path, endpoint: &str) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        cmd.stdout(Stdio::null()).stderr(f);
        let child = cmd.spawn().expect("spawn ferrocd");
        Proc {
            child: Some(child),
            log: log.to_path_buf(),
            endpoint: endpoint.to_string(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait up to `timeout` for the exit; SIGKILL and `None` if it did not come.
    fn sigterm(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        common::etcdctl(&self.endpoint, args)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a member with `cmd` (fresh `Urls` from `mk` on each attempt), retrying a port collision.
fn start_healthy(tmp: &Path, mut mk: impl FnMut(&Urls) -> Command) -> (Proc, Urls) {
    for attempt in 0..5 {
        let u = Urls::new();
        let log = tmp.join(format!("ferrocd-{attempt}.log"));
        let mut p = Proc::spawn(mk(&u), &log, &u.endpoint());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = p.child.as_mut().unwrap().try_wait() {
                let log = p.log();
                if attempt < 4 && log.contains("in use") {
                    break;
                }
                panic!("ferrocd exited with {st} before becoming healthy\n--- log ---\n{log}");
            }
            if let Ok((200, _)) = common::http_get(&u.endpoint(), "/health") {
                return (p, u);
            }
            if Instant::now() > deadline {
                panic!(
                    "ferrocd did not become healthy in 20s\n--- log ---\n{}",
                    p.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    unreachable!()
}

/// `member list -w json` → the members array.
fn members(p: &Proc) -> Vec<Value> {
    let out = common::ok(p.etcdctl(&["member", "list", "-w", "json"]));
    let v: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad json ({e}): {out}"));
    v["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members: {v}"))
        .clone()
}

#[test]
fn version_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = ferrocd();
    cmd.arg("--version").current_dir(tmp.path());
    let e = run_to_exit(cmd, Duration::from_secs(10));
    assert!(
        e.status.success(),
        "--version exited with {}: {}",
        e.status,
        e.stderr
    );
    assert!(
        e.stdout.lines().any(|l| l.starts_with("ferrocd Version:")),
        "{:?}",
        e.stdout
    );
    assert!(
        e.stdout.lines().any(|l| l.contains("API Version: 3.5")),
        "{:?}",
        e.stdout
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "--version must not create anything: {left:?}"
    );
}

#[test]
fn unknown_flag_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cmd = ferrocd();
    cmd.args(member_flags("a", &Urls::new()))
        .arg("--data-dir")
        .arg(&data)
        .arg("--no-such-flag=1");
    let e = run_to_exit(cmd, Duration::from_secs(10));
    let err = failed(&e);
    assert!(
        err.contains("no-such-flag"),
        "stderr should name the flag: {err}"
    );
    assert!(
        !data.exists(),
        "the data dir must not be created on a bad command line"
    );
}

#[test]
fn bad_flag_value_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cmd = ferrocd();
    cmd.args(member_flags("a", &Urls::new()))
        .arg("--data-dir")
        .arg(&data)
        .arg("--snapshot-count=abc");
    let e = run_to_exit(cmd, Duration::from_secs(10));
    let err = failed(&e);
    assert!(
        err.contains("snapshot-count"),
        "stderr should name the flag: {err}"
    );
    assert!(
        !data.exists(),
        "the data dir must not be created on a bad command line"
    );
}

#[test]
fn election_timeout_must_exceed_heartbeat() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cmd = ferrocd();
    cmd.args(member_flags("a", &Urls::new()))
        .arg("--data-dir")
        .arg(&data)
        .args(["--election-timeout=100", "--heartbeat-interval=100"]);
    let e = run_to_exit(cmd, Duration::from_secs(10));
    let err = failed(&e);
    let lower = err.to_lowercase();
    assert!(
        lower.contains("election"),
        "stderr should mention the election timeout: {err}"
    );
    assert!(
        lower.contains("heartbeat"),
        "stderr should mention the heartbeat interval: {err}"
    );
    assert!(
        !data.exists(),
        "the data dir must not be created on a bad configuration"
    );
}

/// etcd only says "error listing data dir: <path>"; ferrocd must say what is wrong.
#[test]
fn data_dir_that_is_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"precious bytes\n").unwrap();
    let mut cmd = ferrocd();
    cmd.args(member_flags("a", &Urls::new()))
        .arg("--data-dir")
        .arg(&file);
    let e = run_to_exit(cmd, Duration::from_secs(10));
    let err = failed(&e);
    let lower = err.to_lowercase();
    assert!(
        lower.contains("file") || lower.contains("not a directory"),
        "stderr should say the data dir is a file: {err}"
    );
    assert!(
        err.contains("not-a-dir"),
        "stderr should name the path: {err}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"precious bytes\n",
        "the file must be left alone"
    );
}

#[test]
fn client_port_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let mut cmd = ferrocd();
    cmd.args(["--name", "a"])
        .arg("--data-dir")
        .arg(&data)
        .arg(format!("--listen-client-urls=http://{addr}"))
        .arg(format!("--advertise-client-urls=http://{addr}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=a={peer}"));
    let started = Instant::now();
    let e = run_to_exit(cmd, Duration::from_secs(10));
    let err = failed(&e);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "should fail fast, took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&addr) || err.contains("in use"),
        "stderr should name {addr} or say it is in use: {err}"
    );
    assert!(
        !data.exists(),
        "the data dir must not be created when the port is taken"
    );
    drop(taken);
}

#[test]
fn name_missing_from_initial_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let u = Urls::new();
    let mut cmd = ferrocd();
    cmd.args(["--name", "a"])
        .arg("--data-dir")
        .arg(&data)
        .arg(format!("--listen-client-urls={}", u.client))
        .arg(format!("--advertise-client-urls={}", u.client))
        .arg(format!("--listen-peer-urls={}", u.peer))
        .arg(format!("--initial-advertise-peer-urls={}", u.peer))
        .arg(format!("--initial-cluster=b={}", u.peer));
    let e = run_to_exit(cmd, Duration::from_secs(10));
    let err = failed(&e);
    let lower = err.to_lowercase();
    assert!(
        lower.contains("initial-cluster") || lower.contains("initial cluster"),
        "stderr should point at --initial-cluster: {err}"
    );
    assert!(
        err.contains("\"a\"") || err.contains("'a'") || err.contains("`a`") || err.contains(" a "),
        "stderr should name the member: {err}"
    );
}

#[test]
fn etcd_environment_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("envdata");
    let (p, u) = start_healthy(tmp.path(), |u| {
        let mut cmd = ferrocd();
        cmd.env("ETCD_NAME", "envname")
            .env("ETCD_DATA_DIR", &data)
            .env("ETCD_LISTEN_CLIENT_URLS", &u.client)
            .env("ETCD_ADVERTISE_CLIENT_URLS", &u.client)
            .env("ETCD_LISTEN_PEER_URLS", &u.peer)
            .env("ETCD_INITIAL_ADVERTISE_PEER_URLS", &u.peer)
            .env("ETCD_INITIAL_CLUSTER", format!("envname={}", u.peer));
        cmd
    });
    let ms = members(&p);
    assert_eq!(ms.len(), 1, "{ms:?}");
    assert_eq!(ms[0]["name"], Value::from("envname"), "{ms:?}");
    assert_eq!(ms[0]["peerURLs"], serde_json::json!([u.peer]), "{ms:?}");
    assert_eq!(ms[0]["clientURLs"], serde_json::json!([u.client]), "{ms:?}");
    assert!(
        data.join("member").join("wal").is_dir(),
        "ETCD_DATA_DIR was not used"
    );
}

/// ferrocd's choice: the flag wins and the shadowed variable is only warned about, with etcd's
/// words. (Real etcd 3.4/3.5 treat this as fatal: "conflicting environment variable ... is
/// shadowed by corresponding command-line flag", exit 1.)
#[test]
fn env_shadowed_by_a_flag_is_refused_like_etcd() {
    // etcd exits 1 when a command-line flag shadows an ETCD_* variable.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cmd = ferrocd();
    cmd.env("ETCD_NAME", "x")
        .args(member_flags("y", &Urls::new()))
        .arg("--data-dir")
        .arg(&data);
    let e = run_to_exit(cmd, Duration::from_secs(10));
    let err = failed(&e);
    assert!(
        err.contains(
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag"
        ),
        "etcd's message expected: {err}"
    );
    assert_eq!(e.status.code(), Some(1));
    assert!(!data.exists(), "nothing written on a bad configuration");
}

#[tokio::test]
async fn config_file_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cfgdata");
    let cfg = tmp.path().join("ferrocd.yaml");
    let (p, u) = start_healthy(tmp.path(), |u| {
        let yaml = format!(
            "# etcd's configuration file keys\n\
             name: cfgname\n\
             data-dir: {data}\n\
             listen-client-urls: {c}\n\
             advertise-client-urls: {c}\n\
             listen-peer-urls: {p}\n\
             initial-advertise-peer-urls: {p}\n\
             initial-cluster: cfgname={p}\n\
             initial-cluster-state: new\n\
             snapshot-count: 5000\n\
             max-txn-ops: 3\n",
            data = data.display(),
            c = u.client,
            p = u.peer,
        );
        std::fs::write(&cfg, yaml).unwrap();
        let mut cmd = ferrocd();
        cmd.arg("--config-file").arg(&cfg);
        cmd
    });
    let ms = members(&p);
    assert_eq!(ms.len(), 1, "{ms:?}");
    assert_eq!(ms[0]["name"], Value::from("cfgname"), "{ms:?}");
    assert!(
        data.join("member").join("wal").is_dir(),
        "data-dir from the file was not used"
    );

    use etcd_client::{Txn, TxnOp};
    let mut c = etcd_client::Client::connect([u.endpoint()], None)
        .await
        .expect("connect");
    let three = Txn::new().and_then([
        TxnOp::put("a", "1", None),
        TxnOp::put("b", "2", None),
        TxnOp::put("c", "3", None),
    ]);
    let r = c
        .txn(three)
        .await
        .expect("a txn of 3 ops is within max-txn-ops: 3");
    assert!(r.succeeded());
    let four = Txn::new().and_then([
        TxnOp::put("a", "1", None),
        TxnOp::put("b", "2", None),
        TxnOp::put("c", "3", None),
        TxnOp::put("d", "4", None),
    ]);
    let err = c.txn(four).await.expect_err("4 ops exceed max-txn-ops: 3");
    match err {
        etcd_client::Error::GRpcStatus(s) => {
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
            assert_eq!(
                s.message(),
                "etcdserver: too many operations in txn request",
                "{s:?}"
            );
        }
        other => panic!("expected a gRPC status, got {other:?}"),
    }
    drop(p);
}

#[test]
fn default_data_dir_is_name_dot_ferrocd() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (p, _u) = start_healthy(logs.path(), |u| {
        let mut cmd = ferrocd();
        cmd.args(member_flags("d", u)).current_dir(tmp.path());
        cmd
    });
    let dir = tmp.path().join("d.ferrocd");
    assert!(
        dir.join("member").join("wal").is_dir(),
        "expected {}/member/wal",
        dir.display()
    );
    assert!(
        dir.join("member").join("db").exists(),
        "expected {}/member/db",
        dir.display()
    );
    drop(p);
}

/// SIGTERM: a clean stop with exit status 0 within 10 s. (etcd itself re-raises the signal after
/// its clean stop, so its status reads "killed by SIGTERM"; ferrocd returns success instead, which
/// also proves the signal was handled rather than fatal.)
#[test]
fn sigterm_is_a_clean_shutdown_and_data_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mk = |u: &Urls| {
        let mut cmd = ferrocd();
        cmd.args(member_flags("m1", u)).arg("--data-dir").arg(&data);
        cmd
    };
    let (mut p, _u) = start_healthy(tmp.path(), mk);
    assert_eq!(common::ok(p.etcdctl(&["put", "k", "before"])), "OK\n");
    let out = common::ok(p.etcdctl(&["get", "k", "-w", "json"]));
    let before: Value = serde_json::from_str(out.trim()).unwrap();
    let rev_before = before["header"]["revision"].as_i64().unwrap();
    let mod_before = before["kvs"][0]["mod_revision"].as_i64().unwrap();

    let started = Instant::now();
    let st = p.sigterm(Duration::from_secs(10));
    let log = p.log();
    let st = st.unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM\n--- log ---\n{log}"));
    assert!(
        st.success(),
        "SIGTERM must be a clean exit, got {st} after {:?}\n--- log ---\n{log}",
        started.elapsed()
    );
    drop(p);

    let (p, _u) = start_healthy(tmp.path(), mk);
    let out = common::ok(p.etcdctl(&["get", "k", "-w", "json"]));
    let after: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        after["kvs"][0]["value"], before["kvs"][0]["value"],
        "{after}"
    );
    assert_eq!(
        after["kvs"][0]["mod_revision"].as_i64(),
        Some(mod_before),
        "{after}"
    );
    assert_eq!(
        after["header"]["revision"].as_i64(),
        Some(rev_before),
        "{after}"
    );
    // The revision continues where it stopped.
    let out = common::ok(p.etcdctl(&["put", "k", "after", "-w", "json"]));
    let put: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        put["header"]["revision"].as_i64(),
        Some(rev_before + 1),
        "{put}"
    );
}
