//! [`ApplyTxn`]: the application's view of one group's state while applying a batch of entries.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use rocksdb::ColumnFamily;
use rocksdb::DB;
use rocksdb::WriteBatch;

use crate::GroupId;
use crate::db::bounded_read_opts;
use crate::db::scan;
use crate::error::db_err;
use crate::keys::GROUP_PREFIX_LEN;
use crate::keys::prefix_upper_bound;
use crate::keys::state_key;

/// A write transaction over one group's application state, spanning every entry of one apply
/// batch.
///
/// Writes go into a RocksDB `WriteBatch` (committed atomically together with the group's last
/// applied log id once the whole batch has been applied) and into an in-memory overlay, so reads
/// see this batch's own earlier puts and deletes merged over the state in RocksDB
/// (read-your-writes).
///
/// Keys are application keys: the store prefixes them with the group, so groups never see each
/// other's keys.
///
/// Reads cannot fail from the application's point of view. If RocksDB does fail a read, the read
/// returns nothing, the error is remembered and the whole batch is rejected: nothing is written,
/// no proposal is answered, and the group stops with a storage error instead of applying a
/// command that saw a wrong state.
pub struct ApplyTxn<'a> {
    db: &'a DB,
    state_cf: &'a ColumnFamily,
    group: GroupId,
    batch: WriteBatch,
    /// `Some(value)`: put in this batch; `None`: deleted in this batch.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// First RocksDB read error (reads take `&self`, hence the lock).
    read_error: Mutex<Option<io::Error>>,
}

impl std::fmt::Debug for ApplyTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyTxn")
            .field("group", &self.group)
            .field("pending_writes", &self.overlay.len())
            .finish_non_exhaustive()
    }
}

impl<'a> ApplyTxn<'a> {
    pub(crate) fn new(db: &'a DB, state_cf: &'a ColumnFamily, group: GroupId) -> Self {
        Self {
            db,
            state_cf,
            group,
            batch: WriteBatch::default(),
            overlay: BTreeMap::new(),
            read_error: Mutex::new(None),
        }
    }

    /// The group this transaction writes to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The value of `key`: this batch's own write if any, else the applied state.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.overlay.get(key) {
            return v.clone();
        }
        match self.db.get_cf(self.state_cf, state_key(self.group, key)) {
            Ok(v) => v,
            Err(e) => {
                self.note_error(db_err(e));
                None
            }
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.batch
            .put_cf(self.state_cf, state_key(self.group, key), value);
        self.overlay.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Removes `key` (no-op if absent).
    pub fn delete(&mut self, key: &[u8]) {
        self.batch
            .delete_cf(self.state_cf, state_key(self.group, key));
        self.overlay.insert(key.to_vec(), None);
    }

    /// Every `(key, value)` whose key starts with `prefix`, ascending by key, with this batch's
    /// writes merged in. Keys are application keys (no group prefix).
    pub fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let start = state_key(self.group, prefix);
        let end = prefix_upper_bound(&start);
        let it = self
            .db
            .raw_iterator_cf_opt(self.state_cf, bounded_read_opts(end.as_deref()));
        let res = scan(it, &start, end.as_deref(), |k, v| {
            if !k.starts_with(&start) {
                return Ok(false);
            }
            out.insert(k[GROUP_PREFIX_LEN..].to_vec(), v.to_vec());
            Ok(true)
        });
        if let Err(e) = res {
            self.note_error(e);
            return Vec::new();
        }
        for (k, v) in self.overlay.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        out.into_iter().collect()
    }

    fn note_error(&self, e: io::Error) {
        tracing::error!("group {}: state read failed during apply: {e}", self.group);
        let mut slot = self.read_error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// Consumes the transaction, returning the batch to commit, or the first read error.
    pub(crate) fn finish(self) -> io::Result<WriteBatch> {
        let err = self
            .read_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        match err {
            Some(e) => Err(e),
            None => Ok(self.batch),
        }
    }
}
