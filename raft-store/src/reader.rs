//! [`StateReader`]: read-only access to one group's applied state.

use std::sync::Arc;

use crate::Error;
use crate::GroupId;
use crate::db::DbSlot;
use crate::db::bounded_read_opts;
use crate::db::cf;
use crate::db::scan;
use crate::error::db_err;
use crate::keys::CF_STATE;
use crate::keys::GROUP_PREFIX_LEN;
use crate::keys::group_prefix;
use crate::keys::prefix_upper_bound;
use crate::keys::state_key;

/// Key/value pairs in key order, keys without the group prefix.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads one group's applied state directly from RocksDB.
///
/// Keys are application keys (the group prefix is stripped). Each call reads the latest applied
/// state; a scan sees one consistent point in time (a RocksDB iterator's implicit snapshot).
/// Reads are synchronous RocksDB calls. After [`crate::RaftStore::shutdown`] every call fails.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DbSlot>,
    group: GroupId,
}

impl std::fmt::Debug for StateReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateReader")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl StateReader {
    pub(crate) fn new(db: Arc<DbSlot>, group: GroupId) -> Self {
        Self { db, group }
    }

    /// The group this reader reads.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The applied value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let db = self.db.get()?;
        let v = db
            .get_cf(cf(&db, CF_STATE)?, state_key(self.group, key))
            .map_err(db_err)?;
        Ok(v)
    }

    /// Every `(key, value)` whose key starts with `prefix`, ascending by key.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, Error> {
        let start = state_key(self.group, prefix);
        let end = prefix_upper_bound(&start);
        self.scan_raw(&start, end.as_deref(), usize::MAX)
    }

    /// Up to `limit` `(key, value)` pairs with `start <= key < end`, ascending by key.
    /// An empty `end` means "no upper bound" (up to the group's last key).
    pub fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KvPairs, Error> {
        let raw_start = state_key(self.group, start);
        let raw_end = if end.is_empty() {
            prefix_upper_bound(&group_prefix(self.group))
        } else {
            Some(state_key(self.group, end))
        };
        self.scan_raw(&raw_start, raw_end.as_deref(), limit)
    }

    fn scan_raw(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<KvPairs, Error> {
        let mut out = Vec::new();
        if limit == 0 || end.is_some_and(|end| start >= end) {
            return Ok(out);
        }
        let prefix = group_prefix(self.group);
        let db = self.db.get()?;
        let it = db.raw_iterator_cf_opt(cf(&db, CF_STATE)?, bounded_read_opts(end));
        scan(it, start, end, |k, v| {
            if !k.starts_with(&prefix) {
                return Ok(false);
            }
            out.push((k[GROUP_PREFIX_LEN..].to_vec(), v.to_vec()));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }
}
