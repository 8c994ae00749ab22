//! etcdctl's everyday commands against a real single-member ferrocd, with exact outputs.
//!
//! Every expected output here was checked against etcdctl 3.4.23 talking to a real etcd
//! (Debian's `etcd-server`), only the version strings differ (ferrocd reports 3.5.x).
//! Note: etcdctl 3.4 writes `endpoint health` results to stderr, has no `get --count-only`
//! (we read `count`/`more` from `get -w json` instead), and its non-interactive `txn` needs a
//! blank line after the failure ops too (otherwise it exits with `Error: EOF`).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{ok, Member};
use serde_json::Value;

/// stderr of a failed etcdctl run; panics with stdout if it succeeded.
fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "etcdctl was expected to fail but succeeded\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses etcdctl's `-w json` output.
fn json(out: Output) -> Value {
    let s = ok(out);
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("bad json from etcdctl ({e}): {s:?}"))
}

/// Standard base64 (what Go's encoding/json does with []byte).
fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

/// `etcdctl txn` in its non-interactive form: `input` is fed on stdin.
fn txn(m: &Member, input: &str) -> Output {
    let mut child = Command::new(common::etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", m.endpoint()))
        .arg("--command-timeout=10s")
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcdctl txn");
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).expect("write txn input");
    }
    child.wait_with_output().expect("etcdctl txn output")
}

fn put(m: &Member, k: &str, v: &str) {
    assert_eq!(ok(m.etcdctl(&["put", k, v])), "OK\n", "put {k} {v}");
}

fn i64_of(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

/// `endpoint status -w json` → the single entry's `Status`.
fn endpoint_status(m: &Member) -> Value {
    let v = json(m.etcdctl(&["endpoint", "status", "-w", "json"]));
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("endpoint status json is not a list: {v}"));
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["Endpoint"], Value::from(m.endpoint()), "{v}");
    list[0]["Status"].clone()
}

#[test]
fn put_get_del() {
    let m = Member::start(&[]);
    assert_eq!(ok(m.etcdctl(&["put", "k", "v"])), "OK\n");
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "k\nv\n");
    assert_eq!(
        ok(m.etcdctl(&["get", "missing"])),
        "",
        "a missing key prints nothing"
    );

    // --prev-kv prints the previous pair after OK.
    assert_eq!(
        ok(m.etcdctl(&["put", "--prev-kv", "k", "v2"])),
        "OK\nk\nv\n"
    );
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "k\nv2\n");
    // ...and nothing more when there was none.
    assert_eq!(ok(m.etcdctl(&["put", "--prev-kv", "fresh", "x"])), "OK\n");

    assert_eq!(ok(m.etcdctl(&["del", "--prev-kv", "k"])), "1\nk\nv2\n");
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "");
    assert_eq!(ok(m.etcdctl(&["del", "missing"])), "0\n");
    assert_eq!(ok(m.etcdctl(&["del", "fresh"])), "1\n");
    assert_eq!(ok(m.etcdctl(&["get", "fresh"])), "");
}

#[test]
fn get_range_options() {
    let m = Member::start(&[]);
    // Revisions: b=2, a=3, c=4, b=5 (again), x/1=6, x/2=7.
    put(&m, "b", "2");
    put(&m, "a", "1");
    put(&m, "c", "3");
    put(&m, "b", "22");
    put(&m, "x/1", "p");
    put(&m, "x/2", "q");

    assert_eq!(
        ok(m.etcdctl(&["get", "--prefix", "x/"])),
        "x/1\np\nx/2\nq\n"
    );
    assert_eq!(ok(m.etcdctl(&["get", "--prefix", "nope"])), "");
    assert_eq!(
        ok(m.etcdctl(&["get", "--from-key", "c"])),
        "c\n3\nx/1\np\nx/2\nq\n"
    );
    // key + range_end: [a, c)
    assert_eq!(ok(m.etcdctl(&["get", "a", "c"])), "a\n1\nb\n22\n");
    assert_eq!(
        ok(m.etcdctl(&["get", "--prefix", "", "--limit=2"])),
        "a\n1\nb\n22\n"
    );
    assert_eq!(
        ok(m.etcdctl(&["get", "--from-key", "", "--limit", "1"])),
        "a\n1\n"
    );

    // Sort by mod revision, newest first: x/2(7), x/1(6), b(5), c(4), a(3).
    assert_eq!(
        ok(m.etcdctl(&["get", "--prefix", "", "--sort-by=MODIFY", "--order=DESCEND"])),
        "x/2\nq\nx/1\np\nb\n22\nc\n3\na\n1\n"
    );
    // Sort by version, descending; b has version 2, the rest 1 (ties keep key order).
    let out = ok(m.etcdctl(&["get", "a", "d", "--sort-by=VERSION", "--order=DESCEND"]));
    assert!(out.starts_with("b\n22\n"), "{out:?}");
    assert_eq!(
        ok(m.etcdctl(&["get", "--prefix", "", "--order=DESCEND"])),
        "x/2\nq\nx/1\np\nc\n3\nb\n22\na\n1\n",
        "--order alone sorts by key"
    );

    // --keys-only prints each key followed by an empty value line.
    assert_eq!(
        ok(m.etcdctl(&["get", "--prefix", "x/", "--keys-only"])),
        "x/1\n\nx/2\n\n"
    );
    assert_eq!(
        ok(m.etcdctl(&["get", "--prefix", "x/", "--print-value-only"])),
        "p\nq\n"
    );
    assert_eq!(ok(m.etcdctl(&["get", "b", "--print-value-only"])), "22\n");

    // del --prefix prints how many keys went.
    assert_eq!(ok(m.etcdctl(&["del", "--prefix", "x/"])), "2\n");
    assert_eq!(ok(m.etcdctl(&["get", "--prefix", "x/"])), "");
    assert_eq!(ok(m.etcdctl(&["del", "--prefix", "x/"])), "0\n");
    assert_eq!(
        ok(m.etcdctl(&["del", "a", "c"])),
        "2\n",
        "range delete [a, c)"
    );
    assert_eq!(ok(m.etcdctl(&["get", "--prefix", ""])), "c\n3\n");
}

#[test]
fn get_historical_and_json() {
    let m = Member::start(&[]);
    put(&m, "k", "v1"); // rev 2
    put(&m, "k", "v2"); // rev 3
    put(&m, "other", "o"); // rev 4
    put(&m, "k", "v3"); // rev 5

    assert_eq!(ok(m.etcdctl(&["get", "k", "--rev=2"])), "k\nv1\n");
    assert_eq!(ok(m.etcdctl(&["get", "k", "--rev=3"])), "k\nv2\n");
    assert_eq!(ok(m.etcdctl(&["get", "k", "--rev=4"])), "k\nv2\n");
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "k\nv3\n");
    assert_eq!(
        ok(m.etcdctl(&["get", "other", "--rev=3"])),
        "",
        "not yet created at rev 3"
    );
    assert_eq!(
        ok(m.etcdctl(&["get", "--prefix", "", "--rev=4"])),
        "k\nv2\nother\no\n"
    );

    let v = json(m.etcdctl(&["get", "k", "-w", "json"]));
    assert_eq!(i64_of(&v["header"]["revision"]), 5, "{v}");
    assert!(u64_of(&v["header"]["cluster_id"]) != 0, "{v}");
    assert!(u64_of(&v["header"]["member_id"]) != 0, "{v}");
    assert!(i64_of(&v["header"]["raft_term"]) >= 1, "{v}");
    assert_eq!(i64_of(&v["count"]), 1, "{v}");
    let kvs = v["kvs"].as_array().unwrap_or_else(|| panic!("no kvs: {v}"));
    assert_eq!(kvs.len(), 1, "{v}");
    assert_eq!(kvs[0]["key"], Value::from(b64(b"k")), "{v}");
    assert_eq!(kvs[0]["value"], Value::from(b64(b"v3")), "{v}");
    assert_eq!(i64_of(&kvs[0]["create_revision"]), 2, "{v}");
    assert_eq!(i64_of(&kvs[0]["mod_revision"]), 5, "{v}");
    assert_eq!(i64_of(&kvs[0]["version"]), 3, "{v}");

    // Historical read: the kv as of rev 3, header still at the current revision.
    let v = json(m.etcdctl(&["get", "k", "--rev=3", "-w", "json"]));
    assert_eq!(
        i64_of(&v["header"]["revision"]),
        5,
        "a read's header is the current revision: {v}"
    );
    let kv = &v["kvs"][0];
    assert_eq!(kv["value"], Value::from(b64(b"v2")), "{v}");
    assert_eq!(
        (
            i64_of(&kv["create_revision"]),
            i64_of(&kv["mod_revision"]),
            i64_of(&kv["version"])
        ),
        (2, 3, 2),
        "{v}"
    );

    // count ignores limit; more says the result was cut (etcdctl 3.4 has no --count-only).
    let v = json(m.etcdctl(&["get", "--prefix", "", "--limit=1", "-w", "json"]));
    assert_eq!(i64_of(&v["count"]), 2, "{v}");
    assert_eq!(v["more"], Value::Bool(true), "{v}");
    assert_eq!(v["kvs"].as_array().map(|a| a.len()), Some(1), "{v}");
    let v = json(m.etcdctl(&["get", "--prefix", "", "-w", "json"]));
    assert_eq!(i64_of(&v["count"]), 2, "{v}");
    assert!(
        v.get("more").is_none() || v["more"] == Value::Bool(false),
        "{v}"
    );

    // A missing key: no kvs, count omitted (0), header revision current.
    let v = json(m.etcdctl(&["get", "missing", "-w", "json"]));
    assert_eq!(i64_of(&v["header"]["revision"]), 5, "{v}");
    assert!(
        v.get("kvs").is_none() || v["kvs"].as_array().is_some_and(|a| a.is_empty()),
        "{v}"
    );
    assert!(v.get("count").is_none() || v["count"] == 0, "{v}");

    // put/del -w json carry the new revision.
    let v = json(m.etcdctl(&["put", "k", "v4", "-w", "json"]));
    assert_eq!(i64_of(&v["header"]["revision"]), 6, "{v}");
    let v = json(m.etcdctl(&["del", "k", "-w", "json"]));
    assert_eq!(i64_of(&v["header"]["revision"]), 7, "{v}");
    assert_eq!(i64_of(&v["deleted"]), 1, "{v}");
}

#[test]
fn txn_from_stdin() {
    let m = Member::start(&[]);
    put(&m, "k", "v"); // rev 2

    // Compare holds: success branch runs.
    let out = ok(txn(&m, "value(\"k\") = \"v\"\n\nput k v2\n\nput k v3\n\n"));
    assert_eq!(out, "SUCCESS\n\nOK\n");
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "k\nv2\n");

    // Compare fails now (k is v2): failure branch runs.
    let out = ok(txn(&m, "value(\"k\") = \"v\"\n\nput k v2\n\nput k v3\n\n"));
    assert_eq!(out, "FAILURE\n\nOK\n");
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "k\nv3\n");

    // Several ops, a get inside the txn sees the txn's own put.
    let out = ok(txn(
        &m,
        "value(\"k\") = \"v3\"\n\nput a 1\nput b 2\nget k\n\nput k nope\n\n",
    ));
    assert_eq!(out, "SUCCESS\n\nOK\n\nOK\n\nk\nv3\n");
    let v = json(m.etcdctl(&["get", "a", "c", "-w", "json"]));
    let mods: Vec<i64> = v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| i64_of(&kv["mod_revision"]))
        .collect();
    assert_eq!(mods, vec![5, 5], "all ops of one txn share a revision: {v}");

    // Other compare kinds: version, mod, create; a missing key has version 0.
    let out = ok(txn(&m, "version(\"k\") = \"3\"\nmod(\"a\") = \"5\"\ncreate(\"b\") = \"5\"\nversion(\"missing\") = \"0\"\n\ndel a\n\n\n"));
    assert_eq!(out, "SUCCESS\n\n1\n");
    assert_eq!(ok(m.etcdctl(&["get", "a"])), "");

    // A VALUE compare on a missing key is false, even against "".
    let out = ok(txn(
        &m,
        "value(\"missing\") = \"\"\n\nput k bad\n\nget k\n\n",
    ));
    assert_eq!(out, "FAILURE\n\nk\nv3\n");

    // An empty compare list always succeeds; a read-only txn leaves the revision alone.
    let before = i64_of(&json(m.etcdctl(&["get", "k", "-w", "json"]))["header"]["revision"]);
    let out = ok(txn(&m, "\nget k\n\n\n"));
    assert_eq!(out, "SUCCESS\n\nk\nv3\n");
    let after = i64_of(&json(m.etcdctl(&["get", "k", "-w", "json"]))["header"]["revision"]);
    assert_eq!(before, after);

    // Two puts of one key in a branch is refused.
    let err = fails(txn(&m, "\nput d 1\nput d 2\n\n\n"));
    assert!(
        err.contains("etcdserver: duplicate key given in txn request"),
        "{err}"
    );
}

#[test]
fn compaction_and_revision_errors() {
    let m = Member::start(&[]);
    put(&m, "k", "a"); // rev 2
    put(&m, "k", "b"); // rev 3
    put(&m, "k", "c"); // rev 4

    assert_eq!(
        ok(m.etcdctl(&["compaction", "3"])),
        "compacted revision 3\n"
    );
    // The compacted revision itself can still be read.
    assert_eq!(ok(m.etcdctl(&["get", "k", "--rev=3"])), "k\nb\n");
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "k\nc\n");
    let err = fails(m.etcdctl(&["get", "k", "--rev=2"]));
    assert!(
        err.contains("Error: etcdserver: mvcc: required revision has been compacted"),
        "{err}"
    );
    let err = fails(m.etcdctl(&["get", "k", "--rev=1000000"]));
    assert!(
        err.contains("Error: etcdserver: mvcc: required revision is a future revision"),
        "{err}"
    );

    // Compacting again at or below the compacted revision, or in the future, is refused.
    let err = fails(m.etcdctl(&["compaction", "2"]));
    assert!(
        err.contains("required revision has been compacted"),
        "{err}"
    );
    let err = fails(m.etcdctl(&["compaction", "100"]));
    assert!(
        err.contains("required revision is a future revision"),
        "{err}"
    );
    // Compacting up to the current revision works.
    assert_eq!(
        ok(m.etcdctl(&["compaction", "4"])),
        "compacted revision 4\n"
    );
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "k\nc\n");
}

#[test]
fn put_with_unknown_lease() {
    let m = Member::start(&[]);
    let err = fails(m.etcdctl(&["put", "k", "v", "--lease=1234"]));
    assert!(
        err.contains("Error: etcdserver: requested lease not found"),
        "{err}"
    );
    assert_eq!(ok(m.etcdctl(&["get", "k"])), "", "nothing was written");
}

#[test]
fn endpoint_status_and_health() {
    let m = Member::start(&[]);
    put(&m, "k", "v");
    let st = endpoint_status(&m);
    let version = st["version"]
        .as_str()
        .unwrap_or_else(|| panic!("no version: {st}"));
    assert!(
        version.starts_with("3.5."),
        "Status.version must look like etcd 3.5: {st}"
    );
    let member_id = u64_of(&st["header"]["member_id"]);
    assert_ne!(member_id, 0, "{st}");
    assert_ne!(u64_of(&st["header"]["cluster_id"]), 0, "{st}");
    assert_eq!(
        u64_of(&st["leader"]),
        member_id,
        "a single member leads itself: {st}"
    );
    assert!(i64_of(&st["header"]["revision"]) >= 2, "{st}");
    assert!(u64_of(&st["raftTerm"]) >= 1, "{st}");
    assert!(u64_of(&st["raftIndex"]) >= 1, "{st}");
    assert!(i64_of(&st["dbSize"]) > 0, "{st}");

    // The simple form: endpoint, hex id, version, db size, is leader, is learner, term, index, applied.
    let out = ok(m.etcdctl(&["endpoint", "status"]));
    let line = out.trim_end();
    let fields: Vec<&str> = line.split(", ").collect();
    assert!(fields.len() >= 9, "{out:?}");
    assert_eq!(fields[0], m.endpoint(), "{out:?}");
    assert_eq!(fields[1], format!("{member_id:x}"), "{out:?}");
    assert_eq!(fields[2], version, "{out:?}");
    assert_eq!(fields[4], "true", "is leader: {out:?}");
    assert_eq!(fields[5], "false", "is learner: {out:?}");

    let out = ok(m.etcdctl(&["endpoint", "status", "-w", "table"]));
    assert!(out.contains(&m.endpoint()), "{out}");
    assert!(out.contains(&format!("{member_id:x}")), "{out}");

    // etcdctl 3.4 writes the health line to stderr.
    let o = m.etcdctl(&["endpoint", "health"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{all}");
    assert!(
        all.contains(&format!("{} is healthy", m.endpoint())),
        "{all}"
    );
    let v = json(m.etcdctl(&["endpoint", "health", "-w", "json"]));
    assert_eq!(v[0]["health"], Value::Bool(true), "{v}");
}

#[test]
fn member_list() {
    let m = Member::start(&[]);
    let st = endpoint_status(&m);
    let member_id = u64_of(&st["header"]["member_id"]);

    let v = json(m.etcdctl(&["member", "list", "-w", "json"]));
    let members = v["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members: {v}"));
    assert_eq!(members.len(), 1, "{v}");
    let mem = &members[0];
    assert_eq!(mem["name"], Value::from("m1"), "{v}");
    assert_eq!(mem["peerURLs"], serde_json::json!([m.peer_url]), "{v}");
    assert_eq!(mem["clientURLs"], serde_json::json!([m.client_url]), "{v}");
    assert_eq!(u64_of(&mem["ID"]), member_id, "{v}");
    assert_eq!(u64_of(&v["header"]["member_id"]), member_id, "{v}");
    assert_eq!(v["header"]["cluster_id"], st["header"]["cluster_id"], "{v}");
    assert!(
        mem.get("isLearner").is_none() || mem["isLearner"] == Value::Bool(false),
        "{v}"
    );

    let out = ok(m.etcdctl(&["member", "list"]));
    assert_eq!(
        out,
        format!(
            "{member_id:x}, started, m1, {}, {}, false\n",
            m.peer_url, m.client_url
        )
    );
    assert!(out.contains("started, m1,"), "{out}");
}

#[test]
fn alarm_list_is_empty() {
    let m = Member::start(&[]);
    assert_eq!(ok(m.etcdctl(&["alarm", "list"])), "");
}

#[test]
fn http_version_and_health() {
    let m = Member::start(&[]);
    let (code, body) = common::http_get(&m.endpoint(), "/version").expect("GET /version");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("/version is not json ({e}): {body:?}"));
    let server = v["etcdserver"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(server.starts_with("3.5."), "{v}");
    let cluster = v["etcdcluster"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(cluster.starts_with("3.5"), "{v}");

    let (code, body) = common::http_get(&m.endpoint(), "/health").expect("GET /health");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("/health is not json ({e}): {body:?}"));
    assert_eq!(v["health"], Value::from("true"), "{v}");
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> f64 {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(name) {
            if let Some(val) = rest.strip_prefix(' ') {
                return val
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
            }
        }
    }
    panic!("metric {name} not found in /metrics:\n{text}");
}

#[test]
fn http_metrics() {
    let m = Member::start(&[]);
    put(&m, "m/1", "a");
    put(&m, "m/2", "b");
    put(&m, "m/3", "c");
    let (code, body) = common::http_get(&m.endpoint(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    assert!(body.contains("\netcd_server_has_leader 1\n"), "{body}");
    assert!(body.contains("\netcd_server_is_leader 1\n"), "{body}");
    assert_eq!(
        metric(&body, "etcd_mvcc_put_total"),
        3.0,
        "one per put on a fresh member"
    );
    assert_eq!(
        metric(&body, "etcd_debugging_mvcc_keys_total"),
        3.0,
        "three distinct keys"
    );
    assert!(
        metric(&body, "etcd_disk_wal_fsync_duration_seconds_count") >= 1.0,
        "puts fsync the WAL"
    );
    assert!(metric(&body, "etcd_disk_backend_commit_duration_seconds_count") >= 0.0);
    assert!(metric(&body, "process_resident_memory_bytes") > 0.0);
}
