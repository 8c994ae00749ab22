//! etcd's bootstrap checks of `--initial-cluster` against `--name` and
//! `--initial-advertise-peer-urls` (etcd's `VerifyBootstrap` / `VerifyJoinExisting`).
//!
//! Like etcd, they apply only while the member has no WAL: once it has one, the cluster
//! membership comes from the log and these flags are ignored on restart.

use std::collections::BTreeSet;
use std::path::Path;

use url::Url;

use super::values::{members_to_string, resolve_url, url_to_string};
use super::{ClusterState, Config, ConfigError};

/// Runs the bootstrap checks unless a WAL already exists. Called last by `build`, after
/// every flag has been validated on its own, so its errors are about how they combine.
pub(crate) fn check(c: &Config) -> Result<(), ConfigError> {
    if wal_exists(&c.wal_path()) {
        return Ok(());
    }
    let mut seen = BTreeSet::new();
    for (_, url) in &c.initial_cluster {
        if !seen.insert(url_to_string(url)) {
            return Err(ConfigError::Invalid(format!(
                "initial cluster {} has duplicate url",
                members_to_string(&c.initial_cluster)
            )));
        }
    }
    let mine: Vec<&Url> = c
        .initial_cluster
        .iter()
        .filter(|(name, _)| *name == c.name)
        .map(|(_, url)| url)
        .collect();
    if mine.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "couldn't find local name {:?} in the initial cluster configuration \
             (--initial-cluster={:?}); add {}=<peer URL> to --initial-cluster or fix --name",
            c.name,
            members_to_string(&c.initial_cluster),
            c.name
        )));
    }
    if c.initial_cluster_state == ClusterState::New {
        advertise_matches_cluster(c, &mine)?;
    }
    Ok(())
}

/// etcd's WAL detection: any `*.wal` file in the WAL directory.
fn wal_exists(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
    })
}

/// The URLs `--initial-cluster` lists for this member must be exactly its
/// `--initial-advertise-peer-urls`, compared as strings and then, like etcd, after
/// resolving host names. The error texts are etcd's.
fn advertise_matches_cluster(c: &Config, mine: &[&Url]) -> Result<(), ConfigError> {
    let mut want: Vec<String> = mine.iter().map(|u| url_to_string(u)).collect();
    let mut have: Vec<String> = c
        .initial_advertise_peer_urls
        .iter()
        .map(url_to_string)
        .collect();
    want.sort();
    want.dedup();
    have.sort();
    have.dedup();
    if want == have {
        return Ok(());
    }
    let detail = match resolved_equal(mine, &c.initial_advertise_peer_urls) {
        Ok(()) => return Ok(()),
        Err(detail) => detail,
    };
    let missing_from_advertise: Vec<String> = want
        .iter()
        .filter(|u| !have.contains(u))
        .map(|u| format!("{}={u}", c.name))
        .collect();
    if !missing_from_advertise.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({detail})",
            missing_from_advertise.join(","),
            have.join(",")
        )));
    }
    let mine_in_cluster = want
        .iter()
        .map(|u| format!("{}={u}", c.name))
        .collect::<Vec<_>>()
        .join(",");
    let missing_from_cluster: Vec<&String> = have.iter().filter(|u| !want.contains(u)).collect();
    if !missing_from_cluster.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={mine_in_cluster}",
            missing_from_cluster
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    Err(ConfigError::Invalid(format!(
        "failed to resolve {} to match --initial-cluster={mine_in_cluster} ({detail})",
        have.join(",")
    )))
}

/// etcd's `URLStringsEqual`: equal length, and equal after resolving each host.
fn resolved_equal(a: &[&Url], b: &[Url]) -> Result<(), String> {
    let a_str: Vec<String> = a.iter().map(|u| url_to_string(u)).collect();
    let b_str: Vec<String> = b.iter().map(url_to_string).collect();
    if a.len() != b.len() {
        return Err(format!("len({a_str:?}) != len({b_str:?})"));
    }
    let resolve = |urls: Vec<&Url>| -> Result<Vec<(String, String)>, String> {
        let mut out = urls
            .into_iter()
            .map(|u| Ok((resolve_url(u)?, url_to_string(u))))
            .collect::<Result<Vec<_>, String>>()?;
        out.sort();
        Ok(out)
    };
    let ra = resolve(a.to_vec())?;
    let rb = resolve(b.iter().collect())?;
    for ((x, x_from), (y, y_from)) in rb.iter().zip(&ra) {
        if x != y {
            return Err(format!(
                "{x:?}(resolved from {x_from:?}) != {y:?}(resolved from {y_from:?})"
            ));
        }
    }
    Ok(())
}
