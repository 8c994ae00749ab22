//! The Election service (`v3electionpb.Election`) through the etcd-client crate, and
//! `etcdctl elect` (which runs its own election over leases, txns and watches) against a real
//! ferrocd.
//!
//! Expected keys, errors and codes follow etcd 3.5's election server (`v3election`, running
//! `clientv3/concurrency.Election`): key `name/<lease hex>`, LeaderKey.rev = the key's create
//! revision, `election: no leader` / `election: not leader` with code Unknown.

mod common;

use std::time::{Duration, Instant};

use common::{grpc_status, ok, BackgroundEtcdctl, Member};
use etcd_client::{Client, LeaderKey, ObserveStream, ProclaimOptions, ResignOptions};

/// A generous bound for things that should happen "soon" (never a performance assertion).
const SOON: Duration = Duration::from_secs(10);

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.expect("lease grant").id()
}

/// The next observed leader as (key, value, create revision).
async fn observed(s: &mut ObserveStream) -> (String, String, i64) {
    let msg = tokio::time::timeout(SOON, s.message())
        .await
        .expect("observe delivers the change")
        .expect("observe stream")
        .expect("observe stream ended");
    let kv = msg.kv().expect("leader kv");
    (
        kv.key_str().unwrap().to_string(),
        kv.value_str().unwrap().to_string(),
        kv.create_revision(),
    )
}

fn leader_of(resp: &etcd_client::CampaignResponse) -> LeaderKey {
    resp.leader()
        .expect("campaign returns the leader key")
        .clone()
}

/// Waits until `n` candidates have keys under `prefix`.
async fn wait_candidates(c: &mut Client, prefix: &str, n: usize) {
    let deadline = Instant::now() + SOON;
    loop {
        let got = c
            .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .kvs()
            .len();
        if got >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{got} of {n} candidates queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn campaign_leads_and_proclaim_changes_the_value_observers_see() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    // An observer that starts before anyone campaigns waits for the first candidate.
    let mut obs = c.observe("svc").await.expect("observe");
    let lease = grant(&mut c, 30).await;
    let camp = c.campaign("svc", "v1", lease).await.expect("campaign");
    let lk = leader_of(&camp);
    let key = format!("svc/{lease:x}");
    assert_eq!(lk.name(), b"svc");
    assert_eq!(lk.key(), key.as_bytes());
    assert_eq!(lk.lease(), lease);
    // Uncontended: created by the campaign txn, whose header the response carries.
    assert_eq!(lk.rev(), camp.header().unwrap().revision());
    assert_eq!(
        observed(&mut obs).await,
        (key.clone(), "v1".into(), lk.rev())
    );

    let leader = c.leader("svc").await.expect("leader");
    let kv = leader.kv().unwrap();
    assert_eq!(
        (kv.key(), kv.value(), kv.create_revision(), kv.lease()),
        (key.as_bytes(), &b"v1"[..], lk.rev(), lease)
    );

    let pr = c
        .proclaim("v2", Some(ProclaimOptions::new().with_leader(lk.clone())))
        .await
        .expect("proclaim");
    assert_eq!(
        observed(&mut obs).await,
        (key.clone(), "v2".into(), lk.rev())
    );
    let leader = c.leader("svc").await.unwrap();
    let kv = leader.kv().unwrap();
    assert_eq!(kv.value(), b"v2");
    assert_eq!(kv.mod_revision(), pr.header().unwrap().revision());
    assert_eq!(kv.create_revision(), lk.rev());

    // Campaigning again with the same lease resumes the candidacy and proclaims the value.
    let again = c.campaign("svc", "v3", lease).await.expect("re-campaign");
    assert_eq!(leader_of(&again).rev(), lk.rev());
    assert_eq!(observed(&mut obs).await, (key, "v3".into(), lk.rev()));
}

#[tokio::test]
async fn resign_hands_leadership_to_the_next_candidate() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let (la, lb) = (grant(&mut c, 30).await, grant(&mut c, 30).await);
    let a = leader_of(&c.campaign("job", "a", la).await.expect("a campaigns"));
    let mut obs = c.observe("job").await.expect("observe");
    assert_eq!(observed(&mut obs).await.1, "a");

    let mut cb = m.client().await;
    let b = tokio::spawn(async move { cb.campaign("job", "b", lb).await });
    wait_candidates(&mut c, "job/", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "b leads while a has not resigned");
    assert_eq!(c.leader("job").await.unwrap().kv().unwrap().value(), b"a");

    let rs = c
        .resign(Some(ResignOptions::new().with_leader(a.clone())))
        .await
        .expect("a resigns");
    let b = tokio::time::timeout(SOON, b)
        .await
        .expect("b leads once a resigns")
        .unwrap()
        .expect("b campaigns");
    let bk = leader_of(&b);
    assert_eq!(bk.key(), format!("job/{lb:x}").as_bytes());
    assert!(bk.rev() > a.rev() && bk.rev() < rs.header().unwrap().revision());
    let (key, value, rev) = observed(&mut obs).await;
    assert_eq!(
        (key.as_str(), value.as_str(), rev),
        (bk.key_str().unwrap(), "b", bk.rev())
    );
    assert_eq!(c.leader("job").await.unwrap().kv().unwrap().value(), b"b");

    // The old leader key is stale now: it can neither proclaim nor take anything back.
    let err = c
        .proclaim(
            "a again",
            Some(ProclaimOptions::new().with_leader(a.clone())),
        )
        .await
        .expect_err("stale proclaim");
    let st = grpc_status(err);
    assert_eq!(
        (st.code(), st.message()),
        (tonic::Code::Unknown, "election: not leader")
    );
    // Resigning a key that is gone is not an error, and changes nothing.
    let before = c.leader("job").await.unwrap().header().unwrap().revision();
    let again = c
        .resign(Some(ResignOptions::new().with_leader(a)))
        .await
        .expect("resign twice");
    assert_eq!(again.header().unwrap().revision(), before);
    assert_eq!(c.leader("job").await.unwrap().kv().unwrap().value(), b"b");
}

#[tokio::test]
async fn revoking_the_leaders_lease_elects_the_next_candidate() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let (la, lb) = (grant(&mut c, 30).await, grant(&mut c, 30).await);
    c.campaign("rv", "a", la).await.expect("a campaigns");
    let mut cb = m.client().await;
    let b = tokio::spawn(async move { cb.campaign("rv", "b", lb).await });
    wait_candidates(&mut c, "rv/", 2).await;
    c.lease_revoke(la).await.expect("revoke a's lease");
    let b = tokio::time::timeout(SOON, b)
        .await
        .expect("b leads once a's lease is gone")
        .unwrap()
        .expect("b campaigns");
    assert_eq!(leader_of(&b).key(), format!("rv/{lb:x}").as_bytes());
    assert_eq!(c.leader("rv").await.unwrap().kv().unwrap().value(), b"b");
}

#[tokio::test]
async fn a_cancelled_campaign_resigns_and_a_candidate_without_lease_is_not_leader() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let (la, lb, lc) = (
        grant(&mut c, 30).await,
        grant(&mut c, 30).await,
        grant(&mut c, 30).await,
    );
    c.campaign("cx", "a", la).await.expect("a campaigns");

    // b gives up waiting: the server resigns its candidacy.
    let mut cb = m.client().await;
    let gave_up =
        tokio::time::timeout(Duration::from_millis(500), cb.campaign("cx", "b", lb)).await;
    assert!(gave_up.is_err(), "b cannot lead while a does");
    let deadline = Instant::now() + SOON;
    loop {
        let keys = c
            .get("cx/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .unwrap();
        if keys.kvs().len() == 1 {
            assert_eq!(keys.kvs()[0].key(), format!("cx/{la:x}").as_bytes());
            break;
        }
        assert!(Instant::now() < deadline, "b's candidacy stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // c's lease ends while it waits: it is told at once that it does not lead.
    let mut cc = m.client().await;
    let cand = tokio::spawn(async move { cc.campaign("cx", "c", lc).await });
    wait_candidates(&mut c, "cx/", 2).await;
    c.lease_revoke(lc).await.expect("revoke c's lease");
    let err = tokio::time::timeout(SOON, cand)
        .await
        .expect("c's campaign ends once its lease is gone")
        .unwrap()
        .expect_err("c must not lead");
    let st = grpc_status(err);
    assert_eq!(
        (st.code(), st.message()),
        (tonic::Code::Unknown, "election: not leader")
    );
    assert_eq!(c.leader("cx").await.unwrap().kv().unwrap().value(), b"a");
}

#[tokio::test]
async fn errors_match_etcd() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let st = grpc_status(c.leader("nobody").await.expect_err("no candidates"));
    assert_eq!(
        (st.code(), st.message()),
        (tonic::Code::Unknown, "election: no leader")
    );

    let st = grpc_status(c.proclaim("x", None).await.expect_err("no leader key"));
    assert_eq!(
        (st.code(), st.message()),
        (tonic::Code::Unknown, "\"leader\" field must be provided")
    );
    let st = grpc_status(c.resign(None).await.expect_err("no leader key"));
    assert_eq!(st.message(), "\"leader\" field must be provided");

    let st = grpc_status(
        c.campaign("x", "v", 0x4242)
            .await
            .expect_err("unknown lease"),
    );
    assert_eq!(
        (st.code(), st.message()),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// etcdctl elect

/// `etcdctl elect <args...>` in the background.
fn ctl_elect(endpoint: &str, args: &[&str]) -> BackgroundEtcdctl {
    let mut all = vec!["elect"];
    all.extend_from_slice(args);
    BackgroundEtcdctl::spawn(endpoint, &all, &[])
}

/// The next (key, value) pair etcdctl elect prints, within `timeout`.
fn elected(ctl: &BackgroundEtcdctl, timeout: Duration) -> Option<(String, String)> {
    let key = ctl.line(timeout)?;
    let value = ctl.line(SOON)?;
    Some((key, value))
}

#[tokio::test]
async fn etcdctl_elect_leader_changes_on_resign_and_on_death() {
    let m = Member::start(&[]);
    let ep = m.endpoint();
    let observer = ctl_elect(&ep, &["-l", "ctl"]);
    let mut p1 = ctl_elect(&ep, &["ctl", "p1"]);
    let (k1, v1) = elected(&p1, SOON).expect("p1 is elected");
    assert!(k1.starts_with("ctl/"), "{k1}");
    assert_eq!(v1, "p1");
    assert_eq!(elected(&observer, SOON), Some((k1.clone(), "p1".into())));

    let mut c = m.client().await;
    let p2 = ctl_elect(&ep, &["ctl", "p2"]);
    wait_candidates(&mut c, "ctl/", 2).await;
    assert_eq!(
        elected(&p2, Duration::from_millis(500)),
        None,
        "two leaders"
    );

    // SIGINT makes etcdctl resign: p2 leads.
    p1.signal("INT");
    assert!(p1.wait_exit(SOON).success(), "p1 resigns cleanly");
    let (k2, v2) = elected(&p2, SOON).expect("p2 is elected after p1 resigned");
    assert_eq!(v2, "p2");
    assert_ne!(k2, k1);
    assert_eq!(elected(&observer, SOON), Some((k2.clone(), "p2".into())));

    // A leader that dies keeps leading until its session lease ends. etcdctl elect's session
    // has the client library's fixed 60 s TTL, so the test ends the lease itself (what its
    // expiry does) once the process is gone.
    let p3 = ctl_elect(&ep, &["ctl", "p3"]);
    wait_candidates(&mut c, "ctl/", 2).await;
    let mut p2 = p2;
    p2.signal("KILL");
    p2.wait_exit(SOON);
    assert_eq!(
        elected(&p3, Duration::from_millis(500)),
        None,
        "p3 leads while p2's lease lives"
    );
    let lease_hex = k2.strip_prefix("ctl/").unwrap();
    let out = ok(m.etcdctl(&["lease", "revoke", lease_hex]));
    assert!(out.contains("revoked"), "{out}");
    let (k3, v3) = elected(&p3, SOON).expect("p3 is elected after p2's lease ended");
    assert_eq!(v3, "p3");
    assert_eq!(elected(&observer, SOON), Some((k3, "p3".into())));
}

/// etcd's `hasleader` for Observe streams: on a member that lost its leader an open observer
/// ends with `no leader` after three election timeouts.
#[tokio::test]
async fn require_leader_observe_ends_without_a_leader() {
    let mut cluster = common::Cluster::start(3, &[]);
    let leader = cluster.leader(0).await;
    let keep = (leader + 1) % 3;
    let require = etcd_client::ConnectOptions::new().with_require_leader(true);
    let mut c = Client::connect([cluster.members[keep].endpoint()], Some(require))
        .await
        .unwrap();
    let lease = grant(&mut c, 60).await;
    c.campaign("hl", "v1", lease).await.unwrap();
    let mut obs = c.observe("hl").await.expect("observe");
    let (_, value, _) = observed(&mut obs).await;
    assert_eq!(value, "v1");
    cluster.members[leader].kill9();
    cluster.members[(leader + 2) % 3].kill9();
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(20), obs.message())
        .await
        .expect("the observer is canceled")
        .expect_err("canceled with an error");
    let s = grpc_status(end);
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::Unavailable, "etcdserver: no leader")
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
