//! etcd's Range: what a range request returns from a view.

use super::{header, mvcc_err, to_pb, ReadView};
use crate::error::EtcdError;
use crate::mvcc::RangeOptions;
use crate::proto::etcdserverpb::{range_request, RangeRequest, RangeResponse};

/// etcd's Range: fetch (limit+1 unless sorting or filtering), filter, sort, cut to limit.
pub fn range(view: &dyn ReadView, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    use range_request::{SortOrder, SortTarget};
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let mut limit = r.limit;
    if r.sort_order != SortOrder::None as i32 || filtered {
        limit = 0;
    }
    if limit > 0 {
        limit += 1;
    }
    let opts = RangeOptions {
        limit: limit.max(0) as usize,
        rev: r.revision,
        count_only: r.count_only,
    };
    let rr = view.range(&r.key, &r.range_end, &opts).map_err(mvcc_err)?;
    let mut kvs = rr.kvs;
    if filtered {
        kvs.retain(|kv| {
            !(r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision
                || r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision
                || r.max_create_revision != 0 && kv.create_revision > r.max_create_revision
                || r.min_create_revision != 0 && kv.create_revision < r.min_create_revision)
        });
    }
    let mut order = SortOrder::try_from(r.sort_order).map_err(|_| EtcdError::InvalidSortOption)?;
    let target = SortTarget::try_from(r.sort_target).map_err(|_| EtcdError::InvalidSortOption)?;
    if target != SortTarget::Key && order == SortOrder::None {
        // The store returns keys ascending; any other target needs an explicit sort.
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        kvs.sort_by(|a, b| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        });
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: header(rr.rev),
        kvs: kvs.into_iter().map(to_pb).collect(),
        more,
        count: rr.count as i64,
    })
}
