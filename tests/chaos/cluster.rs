//! The cluster under test: real ferrocd processes started with `FERROCD_FAULT_INJECTION=1`,
//! controlled as processes (SIGKILL, SIGSTOP/SIGCONT, restart, remove and re-add) and through
//! each member's fault switch (`/debug/faults` on its client port).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};

use crate::common::{http_request, Cluster};

/// Raft entries between snapshot points in the cluster under test (`--snapshot-count`), and
/// entries kept behind one for slow followers: small, so snapshots are sent often.
pub const SNAPSHOT_COUNT: u64 = 200;
/// See [`SNAPSHOT_COUNT`].
pub const CATCHUP_ENTRIES: u64 = 20;
/// Entries a stopped follower must miss to be sure to need a snapshot.
pub const SNAPSHOT_GAP: u64 = SNAPSHOT_COUNT + CATCHUP_ENTRIES + 50;

/// Short per-call timeouts for the harness's own control calls.
fn opts() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
}

/// A connected client to one endpoint, or None if it cannot connect in time.
pub async fn connect(endpoint: &str) -> Option<Client> {
    tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect([endpoint.to_string()], Some(opts())),
    )
    .await
    .ok()?
    .ok()
}

/// The cluster and what the harness knows about each member.
pub struct Chaos {
    /// The processes.
    pub c: Cluster,
    /// Member ids, by index (refreshed after a member is re-added).
    pub ids: Vec<u64>,
    /// Which members are SIGSTOPped now.
    pub paused: Vec<bool>,
}

impl Chaos {
    /// Starts `n` members with the fault switch on (and a planted bug if asked).
    pub async fn start(n: usize, plant_bug: Option<&str>) -> Chaos {
        let mut env = vec![("FERROCD_FAULT_INJECTION", "1")];
        if let Some(b) = plant_bug {
            env.push(("FERROCD_PLANT_BUG", b));
        }
        let (snapshot_count, catchup) = (SNAPSHOT_COUNT.to_string(), CATCHUP_ENTRIES.to_string());
        let flags = [
            "--snapshot-count",
            snapshot_count.as_str(),
            "--experimental-snapshot-catchup-entries",
            catchup.as_str(),
        ];
        let c = tokio::task::block_in_place(|| Cluster::start_with_env(n, &flags, &env));
        let mut ch = Chaos {
            ids: vec![0; n],
            paused: vec![false; n],
            c,
        };
        for i in 0..n {
            ch.refresh_id(i).await;
        }
        ch
    }

    /// Number of members.
    pub fn n(&self) -> usize {
        self.c.members.len()
    }

    /// Whether the binary has the fault switch (a debug build).
    pub fn has_fault_switch(&self) -> bool {
        matches!(
            http_request(
                &self.c.members[0].endpoint(),
                "GET",
                "/debug/faults",
                None,
                Duration::from_secs(5)
            ),
            Ok((200, _))
        )
    }

    /// Asks member `i` its own id.
    pub async fn refresh_id(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(mut cl) = connect(&self.c.members[i].endpoint()).await {
                if let Ok(st) = cl.status().await {
                    if let Some(h) = st.header() {
                        self.ids[i] = h.member_id();
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("member {} does not answer Status", i + 1);
    }

    /// The index of the leader as a majority of running, unpaused members sees it (None if
    /// they do not agree or have none).
    pub async fn leader(&self) -> Option<usize> {
        let mut votes: Vec<u64> = Vec::new();
        for i in 0..self.n() {
            if self.paused[i] {
                continue;
            }
            if let Some(mut cl) = connect(&self.c.members[i].endpoint()).await {
                if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(3), cl.status()).await
                {
                    votes.push(st.leader());
                }
            }
        }
        let quorum = self.n() / 2 + 1;
        for v in &votes {
            if *v != 0 && votes.iter().filter(|x| *x == v).count() >= quorum {
                return self.ids.iter().position(|id| id == v);
            }
        }
        None
    }

    /// Waits (up to `timeout`) for a leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sets member `i`'s fault table (member ids).
    pub fn set_faults(&self, i: usize, drop_to: &BTreeSet<u64>, drop_from: &BTreeSet<u64>) {
        let body = format!(
            "{{\"drop_to\":{:?},\"drop_from\":{:?}}}",
            drop_to.iter().collect::<Vec<_>>(),
            drop_from.iter().collect::<Vec<_>>()
        );
        let r = http_request(
            &self.c.members[i].endpoint(),
            "POST",
            "/debug/faults",
            Some(&body),
            Duration::from_secs(5),
        );
        if !matches!(r, Ok((200, _))) {
            eprintln!("chaos: setting faults on m{} failed: {r:?}", i + 1);
        }
    }

    /// Drops raft traffic between the member sets `a` and `b` (both directions), or only from
    /// `a` to `b` when `one_way`. Set on both sides.
    pub fn partition(&self, a: &[usize], b: &[usize], one_way: bool) {
        let ids = |s: &[usize]| -> BTreeSet<u64> { s.iter().map(|&i| self.ids[i]).collect() };
        let none = BTreeSet::new();
        for &i in a {
            let from = if one_way { none.clone() } else { ids(b) };
            self.set_faults(i, &ids(b), &from);
        }
        for &i in b {
            let to = if one_way { none.clone() } else { ids(a) };
            self.set_faults(i, &to, &ids(a));
        }
    }

    /// Heals every member's fault table.
    pub fn heal(&self) {
        for (i, m) in self.c.members.iter().enumerate() {
            if self.paused[i] {
                continue;
            }
            let _ = http_request(
                &m.endpoint(),
                "DELETE",
                "/debug/faults",
                None,
                Duration::from_secs(5),
            );
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) {
        self.c.members[i].signal("STOP");
        self.paused[i] = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        self.c.members[i].signal("CONT");
        self.paused[i] = false;
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        self.c.members[i].kill9();
    }

    /// Starts member `i` again on its data dir and URLs; Err if it does not serve in time.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let m = &mut self.c.members[i];
        m.kill9();
        m.launch();
        tokio::task::block_in_place(|| m.wait_ready(Duration::from_secs(60)))
            .map_err(|e| format!("m{} did not come back: {e}", i + 1))
    }

    /// Starts every member again together (none can serve alone), then waits for each.
    pub fn restart_all(&mut self) -> Vec<String> {
        for m in &mut self.c.members {
            m.kill9();
            m.launch();
        }
        let mut errors = Vec::new();
        for (i, m) in self.c.members.iter_mut().enumerate() {
            if let Err(e) = tokio::task::block_in_place(|| m.wait_ready(Duration::from_secs(60))) {
                errors.push(format!("m{} did not come back: {e}", i + 1));
            }
        }
        errors
    }

    /// Makes sure every member runs and none is paused (after a failed step).
    pub fn ensure_all_running(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for i in 0..self.n() {
            if self.paused[i] {
                self.resume(i);
            }
            if !self.c.members[i].is_running() {
                if let Err(e) = self.restart(i) {
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// Moves leadership from `leader` to member `to`.
    pub async fn move_leader(&self, leader: usize, to: usize) -> Result<(), String> {
        let mut cl = connect(&self.c.members[leader].endpoint())
            .await
            .ok_or("cannot connect to the leader")?;
        cl.move_leader(self.ids[to])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Removes member `i` (not the leader), wipes its data dir, adds it back with the same
    /// URLs and starts it with `--initial-cluster-state existing`.
    pub async fn remove_and_readd(&mut self, i: usize) -> Result<(), String> {
        let via = (0..self.n()).find(|&j| j != i).unwrap();
        let ep = self.c.members[via].endpoint();
        retry(|| async {
            let mut cl = connect(&ep).await.ok_or("connect")?;
            match cl.member_remove(self.ids[i]).await {
                Ok(_) => Ok(()),
                // An earlier attempt went through but its answer was lost.
                Err(e) if e.to_string().contains("member not found") => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|e| format!("member remove m{}: {e}", i + 1))?;
        // A removed member stops itself; make sure.
        let m = &mut self.c.members[i];
        let _ = tokio::task::block_in_place(|| m.wait_exit(Duration::from_secs(10)));
        m.kill9();
        let _ = std::fs::remove_dir_all(&m.data_dir);
        let peer = m.peer_url.clone();
        retry(|| async {
            let mut cl = connect(&ep).await.ok_or("connect")?;
            match cl.member_add([peer.clone()], None).await {
                Ok(_) => Ok(()),
                Err(e) if e.to_string().contains("Peer URLs already exists") => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|e| format!("member add m{}: {e}", i + 1))?;
        let ic: Vec<String> = self
            .c
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        let m = &mut self.c.members[i];
        m.initial_cluster = ic.join(",");
        m.cluster_state = "existing".into();
        m.launch();
        tokio::task::block_in_place(|| m.wait_ready(Duration::from_secs(60)))
            .map_err(|e| format!("re-added m{} did not serve: {e}", i + 1))?;
        self.refresh_id(i).await;
        Ok(())
    }

    /// The raft index member `i` has reached (its Status), if it answers.
    pub async fn raft_index(&self, i: usize) -> Option<u64> {
        let mut cl = connect(&self.c.members[i].endpoint()).await?;
        let st = tokio::time::timeout(Duration::from_secs(3), cl.status())
            .await
            .ok()?
            .ok()?;
        Some(st.raft_index())
    }

    /// How often member `i`'s log (all its runs) says `needle`.
    fn log_count(&self, i: usize, needle: &str) -> usize {
        std::fs::read_to_string(&self.c.members[i].log_path)
            .map(|l| l.matches(needle).count())
            .unwrap_or(0)
    }

    /// Issue 21's sequence: SIGKILL follower `f` and keep it down until the cluster has moved
    /// [`SNAPSHOT_GAP`] entries on (so the leader must send it a snapshot), start it with its
    /// applier stalled for a moment before the install (fault point `snap-install-begin`), ask
    /// `leader` to hand it leadership meanwhile, wait until it serves, check that a lease
    /// granted on it expires on time, then SIGKILL and restart it once more. Err if it does
    /// not come back or its lease clock does not run.
    pub async fn snapshot_catch_up(&mut self, f: usize, leader: usize) -> Result<String, String> {
        let name = format!("m{}", f + 1);
        let from = self
            .raft_index(leader)
            .await
            .ok_or("the leader does not answer")?;
        self.kill(f);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut reached = from;
        while reached < from + SNAPSHOT_GAP && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(i) = self.raft_index(leader).await {
                reached = reached.max(i);
            }
        }
        let installs = self.log_count(f, "installing snapshot from the leader");
        let stall = (
            "FERROCD_FAULT_POINT".to_string(),
            "snap-install-begin:sleep=1500".to_string(),
        );
        self.c.members[f].env.push(stall.clone());
        self.c.members[f].launch();
        self.c.members[f].env.retain(|e| *e != stall);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut installing = false;
        while Instant::now() < deadline {
            if self.log_count(f, "installing snapshot from the leader") > installs {
                installing = true;
                break;
            }
            if !self.c.members[f].is_running() {
                return Err(format!("{name} exited after catching up by snapshot"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Leadership to it at once, while it may still be installing.
        let deadline = Instant::now() + Duration::from_secs(10);
        let moved = loop {
            match self.move_leader(leader, f).await {
                Ok(()) => break "made leader".to_string(),
                Err(e) if Instant::now() > deadline => break format!("not made leader ({e})"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let m = &mut self.c.members[f];
        tokio::task::block_in_place(|| m.wait_ready(Duration::from_secs(60)))
            .map_err(|e| format!("{name} did not serve after catching up by snapshot: {e}"))?;
        if self.leader().await == Some(f) {
            self.lease_expires_on(f).await?;
        }
        self.restart(f)
            .map_err(|e| format!("after catching up by snapshot: {e}"))?;
        Ok(format!(
            "{name} down for {} entries, {}, {moved}, restarted",
            reached.saturating_sub(from),
            if installing {
                "installed a snapshot"
            } else {
                "no snapshot needed"
            }
        ))
    }

    /// Grants a lease of the minimum TTL (2 s) on member `i` and checks it is gone within its
    /// TTL plus an election timeout and some slack (no other fault runs meanwhile).
    async fn lease_expires_on(&self, i: usize) -> Result<(), String> {
        let name = format!("m{}", i + 1);
        let mut cl = connect(&self.c.members[i].endpoint())
            .await
            .ok_or(format!("cannot connect to {name}"))?;
        let id = cl
            .lease_grant(2, None)
            .await
            .map_err(|e| format!("lease grant on {name}: {e}"))?
            .id();
        let granted = Instant::now();
        let limit = Duration::from_secs(2 + 1 + 3);
        loop {
            if let Ok(r) = cl.lease_time_to_live(id, None).await {
                if r.ttl() == -1 {
                    return Ok(());
                }
            }
            if granted.elapsed() > limit {
                return Err(format!(
                    "a TTL-2 lease granted on {name}, the leader after its snapshot catch-up, \
                     was still there after {:?}: its lease clock does not run",
                    granted.elapsed()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every member reports the same revision (serializable reads); returns it.
    pub async fn converge(&self, timeout: Duration) -> Result<i64, String> {
        let deadline = Instant::now() + timeout;
        let mut revs = Vec::new();
        while Instant::now() < deadline {
            revs.clear();
            for m in &self.c.members {
                let r = match connect(&m.endpoint()).await {
                    Some(mut cl) => cl
                        .get("chaos-probe", Some(GetOptions::new().with_serializable()))
                        .await
                        .ok()
                        .and_then(|r| r.header().map(|h| h.revision())),
                    None => None,
                };
                revs.push(r);
            }
            if revs.iter().all(|r| r.is_some() && *r == revs[0]) {
                return Ok(revs[0].unwrap());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(format!("members did not converge: revisions {revs:?}"))
    }

    /// Every member's HashKV at `rev`.
    pub async fn hash_kvs(&self, rev: i64) -> Vec<Result<u32, String>> {
        let mut out = Vec::new();
        for m in &self.c.members {
            out.push(match connect(&m.endpoint()).await {
                Some(mut cl) => cl
                    .hash_kv(rev)
                    .await
                    .map(|h| h.hash())
                    .map_err(|e| e.to_string()),
                None => Err("cannot connect".into()),
            });
        }
        out
    }
}

/// Retries a cluster call for up to 30 s (etcd answers `unhealthy cluster` to reconfiguration
/// until peers have been connected for a while; users retry).
async fn retry<F, Fut>(mut f: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
