//! openraft `RaftLogStorage` / `RaftLogReader` for one group, on the shared RocksDB.
//!
//! Writes never touch RocksDB directly: they go through the node-wide [`Writer`] (group commit).
//! openraft requires appended entries to be readable as soon as `append` returns, before they
//! are flushed; they are kept in a per-group in-memory `pending` overlay until the writer has put
//! them into RocksDB. Readers copy the overlay *before* reading RocksDB, and the writer inserts
//! into RocksDB *before* removing from the overlay, so an entry is always visible in at least one
//! of the two.
//!
//! Truncations, purges and vote saves are queued behind earlier appends and awaited, so when
//! they return every earlier append is on disk and nothing older can reappear.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;

use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;

use crate::GroupId;
use crate::db::DbSlot;
use crate::db::bounded_read_opts;
use crate::db::cf;
use crate::db::decode;
use crate::db::encode;
use crate::db::get_decoded;
use crate::db::scan;
use crate::error::io_err;
use crate::keys::CF_LOG;
use crate::keys::CF_META;
use crate::keys::MetaKind;
use crate::keys::log_key;
use crate::keys::meta_key;
use crate::types::C;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::Vote;
use crate::writer::Op;
use crate::writer::WriteReq;
use crate::writer::Writer;

/// State shared between a group's log store and its readers.
pub(crate) struct LogShared {
    group: GroupId,
    db: Arc<DbSlot>,
    /// Appended entries not yet written to RocksDB, by index.
    pending: Mutex<BTreeMap<u64, Entry>>,
}

impl LogShared {
    fn pending(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // The map is always left consistent; recover from a poisoned lock.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries with index in `[start, end)` (`end = None`: unbounded), consecutive.
    fn read_range(&self, start: u64, end: Option<u64>) -> io::Result<Vec<Entry>> {
        if end.is_some_and(|end| start >= end) {
            return Ok(Vec::new());
        }
        // 1. Copy the overlay first (see the module docs for why this order matters).
        let pending: Vec<Entry> = match end {
            Some(end) => self
                .pending()
                .range(start..end)
                .map(|(_, e)| e.clone())
                .collect(),
            None => self
                .pending()
                .range(start..)
                .map(|(_, e)| e.clone())
                .collect(),
        };

        // 2. Read RocksDB.
        let db = self.db.get()?;
        let log_cf = cf(&db, CF_LOG)?;
        let lo = log_key(self.group, start);
        let hi = log_key(self.group, end.unwrap_or(u64::MAX));
        let mut merged: BTreeMap<u64, Entry> = BTreeMap::new();
        scan(
            db.raw_iterator_cf_opt(log_cf, bounded_read_opts(Some(&hi))),
            &lo,
            Some(&hi),
            |_, v| {
                let e: Entry = decode(v)?;
                merged.insert(e.index(), e);
                Ok(true)
            },
        )?;
        if end.is_none()
            && let Some(v) = db.get_pinned_cf(log_cf, hi).map_err(crate::error::db_err)?
        {
            let e: Entry = decode(&v)?;
            merged.insert(e.index(), e);
        }

        // 3. The overlay is newer than RocksDB.
        for e in pending {
            merged.insert(e.index(), e);
        }

        let mut out = Vec::with_capacity(merged.len());
        for (index, e) in merged {
            if let Some(prev) = out.last().map(|p: &Entry| p.index())
                && prev + 1 != index
            {
                return Err(io_err(format!(
                    "group {}: hole in raft log between index {prev} and {index}",
                    self.group
                )));
            }
            out.push(e);
        }
        Ok(out)
    }

    fn read_vote(&self) -> io::Result<Option<Vote>> {
        let db = self.db.get()?;
        get_decoded(&db, CF_META, &meta_key(self.group, MetaKind::Vote))
    }
}

/// The log store of one group. Owned by that group's openraft core.
pub(crate) struct LogStore {
    shared: Arc<LogShared>,
    writer: Arc<Writer>,
    /// Whether appends/truncations are fsynced ([`crate::Durability::Fsync`]).
    sync_appends: bool,
    last_log_id: Option<LogId>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

/// A log reader of one group (used by openraft's state machine worker and replication).
#[derive(Clone)]
pub(crate) struct LogReader {
    shared: Arc<LogShared>,
}

impl LogStore {
    /// Loads the group's log state from RocksDB.
    pub(crate) fn open(
        group: GroupId,
        db: Arc<DbSlot>,
        writer: Arc<Writer>,
        sync_appends: bool,
    ) -> io::Result<Self> {
        let (last_purged, committed, last_entry) = {
            let db = db.get()?;
            let last_purged: Option<LogId> =
                get_decoded(&db, CF_META, &meta_key(group, MetaKind::LastPurged))?;
            let committed: Option<Option<LogId>> =
                get_decoded(&db, CF_META, &meta_key(group, MetaKind::Committed))?;

            // The last entry of the group: seek to the last possible key of the group and step back.
            let mut it = db.raw_iterator_cf(cf(&db, CF_LOG)?);
            it.seek_for_prev(log_key(group, u64::MAX));
            let mut last_entry: Option<LogId> = None;
            if it.valid()
                && let (Some(k), Some(v)) = (it.key(), it.value())
                && crate::keys::decode_log_key(k).is_some_and(|(g, _)| g == group)
            {
                let e: Entry = decode(v)?;
                last_entry = Some(e.log_id());
            }
            it.status().map_err(crate::error::db_err)?;
            (last_purged, committed.flatten(), last_entry)
        };

        let last_log_id = std::cmp::max(last_entry, last_purged);
        Ok(Self {
            shared: Arc::new(LogShared {
                group,
                db,
                pending: Mutex::new(BTreeMap::new()),
            }),
            writer,
            sync_appends,
            last_log_id,
            last_purged,
            committed,
        })
    }

    fn group(&self) -> GroupId {
        self.shared.group
    }
}

/// `[start, end)` of a `RangeBounds<u64>`; `end = None` means unbounded.
fn index_range<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

/// Ops deleting the group's log entries with index in `[from, to]`.
fn delete_log_range(group: GroupId, from: u64, to_inclusive: u64) -> Vec<Op> {
    let mut ops = Vec::with_capacity(2);
    if from > to_inclusive {
        return ops;
    }
    if to_inclusive == u64::MAX {
        ops.push(Op::DeleteRange {
            cf: CF_LOG,
            from: log_key(group, from).to_vec(),
            to: log_key(group, u64::MAX).to_vec(),
        });
        ops.push(Op::Delete {
            cf: CF_LOG,
            key: log_key(group, u64::MAX).to_vec(),
        });
    } else {
        ops.push(Op::DeleteRange {
            cf: CF_LOG,
            from: log_key(group, from).to_vec(),
            to: log_key(group, to_inclusive + 1).to_vec(),
        });
    }
    ops
}

impl RaftLogReader<C> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = index_range(&range);
        self.shared.read_range(start, end)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.shared.read_vote()
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        Ok(LogState {
            last_purged_log_id: self.last_purged,
            last_log_id: self.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // A vote must be on disk before returning, whatever the durability mode.
        let op = Op::Put {
            cf: CF_META,
            key: meta_key(self.group(), MetaKind::Vote).to_vec(),
            value: encode(vote)?,
        };
        self.writer.write(vec![op], true).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Queued, not awaited and not synced: it only lets a restart re-apply up to `committed`
        // before electing; losing it is harmless (the next leader re-commits).
        let op = Op::Put {
            cf: CF_META,
            key: meta_key(self.group(), MetaKind::Committed).to_vec(),
            value: encode(&committed)?,
        };
        self.writer.submit(WriteReq {
            ops: vec![op],
            sync: false,
            done: None,
        })?;
        self.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id()) else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let group = self.group();

        let mut ops = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        for e in &entries {
            ops.push(Op::Put {
                cf: CF_LOG,
                key: log_key(group, e.index()).to_vec(),
                value: encode(e)?,
            });
            ids.push(e.log_id());
        }

        {
            let mut pending = self.shared.pending();
            for e in entries {
                pending.insert(e.index(), e);
            }
        }
        self.last_log_id = Some(last);

        let shared = self.shared.clone();
        let done = move |res: io::Result<()>| {
            if res.is_ok() {
                // Now in RocksDB: drop from the overlay unless a newer entry replaced it.
                let mut pending = shared.pending();
                for id in ids {
                    if pending.get(&id.index()).is_some_and(|e| e.log_id() == id) {
                        pending.remove(&id.index());
                    }
                }
            }
            callback.io_completed(res);
        };

        self.writer.submit(WriteReq {
            ops,
            sync: self.sync_appends,
            done: Some(Box::new(done)),
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map(|l| l.index() + 1).unwrap_or(0);
        {
            let mut pending = self.shared.pending();
            drop(pending.split_off(&from));
        }
        let ops = delete_log_range(self.group(), from, u64::MAX);
        self.writer.write(ops, self.sync_appends).await?;
        // Truncating past the end changes nothing; never below the purged point.
        let kept = std::cmp::min(last_log_id, self.last_log_id);
        self.last_log_id = std::cmp::max(kept, self.last_purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The snapshot covering these entries is stored; a crash before the purge is
        // recorded leaves them in the log, which is harmless.
        fail::fail_point!("purge-before-write", |_| Err(crate::error::io_err(
            "failpoint purge-before-write"
        )));
        let upto = log_id.index();
        {
            let mut pending = self.shared.pending();
            let keep = pending.split_off(&upto.saturating_add(1));
            *pending = keep;
            if upto == u64::MAX {
                pending.clear();
            }
        }
        let mut ops = delete_log_range(self.group(), 0, upto);
        ops.push(Op::Put {
            cf: CF_META,
            key: meta_key(self.group(), MetaKind::LastPurged).to_vec(),
            value: encode(&log_id)?,
        });
        // The purge record is always synced: it is rare and must survive a crash.
        self.writer.write(ops, true).await?;

        if self.last_log_id < Some(log_id) {
            self.last_log_id = Some(log_id);
        }
        self.last_purged = Some(log_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_ranges() {
        assert_eq!(index_range(&(3..7)), (3, Some(7)));
        assert_eq!(index_range(&(3..=7)), (3, Some(8)));
        assert_eq!(index_range(&(3..)), (3, None));
        assert_eq!(index_range(&(..)), (0, None));
        assert_eq!(index_range(&(0..=u64::MAX)), (0, None));
    }

    #[test]
    fn delete_ranges() {
        assert!(delete_log_range(GroupId(1), 5, 4).is_empty());
        assert_eq!(delete_log_range(GroupId(1), 0, 9).len(), 1);
        assert_eq!(delete_log_range(GroupId(1), 0, u64::MAX).len(), 2);
    }
}
