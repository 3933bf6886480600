//! The node's single RocksDB instance: opening it, sharing it, and small read helpers.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;
use std::time::Instant;

use dura_codec::Kind;
use rocksdb::ColumnFamily;
use rocksdb::ColumnFamilyDescriptor;
use rocksdb::DB;
use rocksdb::DBRawIterator;
use rocksdb::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::codec_err;
use crate::error::db_err;
use crate::error::io_err;
use crate::error::shut_down;
use crate::keys::ALL_CFS;

/// The shared handle to the node's RocksDB.
///
/// Everything that reads or writes the database (log stores, state machines, snapshot builders,
/// [`crate::StateReader`]s) holds this slot rather than an `Arc<DB>`, and clones the `Arc<DB>` only
/// for the duration of one operation. [`crate::RaftStore::shutdown`] empties the slot, waits for
/// those short-lived clones to go away and then drops the last reference, which closes RocksDB and
/// releases its `LOCK` file — even if the application still holds `RaftStore`/`StateReader` clones.
pub(crate) struct DbSlot {
    db: RwLock<Option<Arc<DB>>>,
}

impl DbSlot {
    pub(crate) fn new(db: DB) -> Arc<Self> {
        Arc::new(Self {
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// The database, or an error once the store has been shut down.
    pub(crate) fn get(&self) -> io::Result<Arc<DB>> {
        let guard = self
            .db
            .read()
            .map_err(|_| io_err("db slot lock poisoned"))?;
        guard.clone().ok_or_else(shut_down)
    }

    /// Empties the slot; later [`DbSlot::get`] calls fail.
    pub(crate) fn take(&self) -> Option<Arc<DB>> {
        match self.db.write() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// Opens (creating if needed) the RocksDB at `dir` with every column family.
pub(crate) fn open_db(dir: &Path) -> io::Result<DB> {
    std::fs::create_dir_all(dir)?;

    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(4);
    opts.increase_parallelism(2);

    let cfs = ALL_CFS
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_options()));

    DB::open_cf_descriptors(&opts, dir, cfs).map_err(db_err)
}

/// The options of every column family (also those of the SST files snapshots are made of).
pub(crate) fn cf_options() -> Options {
    let mut cf_opts = Options::default();
    cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    cf_opts
}

/// Flushes the WAL (fsync) and every memtable, so that a reopen needs no WAL replay.
pub(crate) fn flush_all(db: &DB) -> io::Result<()> {
    db.flush_wal(true).map_err(db_err)?;
    for name in ALL_CFS {
        db.flush_cf(cf(db, name)?).map_err(db_err)?;
    }
    Ok(())
}

/// Waits (bounded) until `db` is the only reference, so dropping it closes RocksDB.
pub(crate) async fn wait_sole_owner(db: &Arc<DB>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Arc::strong_count(db) > 1 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// The RocksDB properties `/metrics` shows (as `dura_rocksdb{property=…}`).
const PROPERTIES: &[&str] = &[
    "rocksdb.live-sst-files-size",
    "rocksdb.estimate-live-data-size",
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.num-immutable-mem-table",
    "rocksdb.estimate-pending-compaction-bytes",
    "rocksdb.num-running-compactions",
    "rocksdb.num-running-flushes",
    "rocksdb.estimate-num-keys",
];
/// Properties of the whole database (write stalls), not of a column family.
const DB_PROPERTIES: &[&str] = &[
    "rocksdb.actual-delayed-write-rate",
    "rocksdb.is-write-stopped",
];

/// Each of [`PROPERTIES`] summed over the column families, then the [`DB_PROPERTIES`].
pub(crate) fn properties(slot: &DbSlot) -> Vec<(&'static str, u64)> {
    let Ok(db) = slot.get() else {
        return Vec::new();
    };
    let per_cf = PROPERTIES.iter().map(|property| {
        let total = ALL_CFS
            .iter()
            .filter_map(|name| db.cf_handle(name))
            .filter_map(|cf| db.property_int_value_cf(cf, *property).ok().flatten())
            .sum();
        (*property, total)
    });
    let whole = DB_PROPERTIES.iter().map(|property| {
        let value = db.property_int_value(*property).ok().flatten().unwrap_or(0);
        (*property, value)
    });
    per_cf.chain(whole).collect()
}

/// The handle of column family `name`.
pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> io::Result<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| io_err(format!("missing column family {name}")))
}

/// The version of raft-store's own stored shapes (log entries, vote, applied id, membership,
/// snapshots), all under one codec kind: the RocksDB key says which shape a value has.
const STORED_VERSION: u8 = 1;

/// Serializes a stored value in its versioned envelope (see `dura_codec`).
pub(crate) fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    Ok(dura_codec::encode_as(Kind::RaftStore, STORED_VERSION, v))
}

/// Deserializes a stored value.
pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    dura_codec::decode_as(Kind::RaftStore, STORED_VERSION, b).map_err(codec_err)
}

/// Reads and decodes one value.
pub(crate) fn get_decoded<T: DeserializeOwned>(
    db: &DB,
    cf_name: &str,
    key: &[u8],
) -> io::Result<Option<T>> {
    match db.get_pinned_cf(cf(db, cf_name)?, key).map_err(db_err)? {
        None => Ok(None),
        Some(v) => decode(&v).map(Some),
    }
}

/// Walks `it` over `[start, end)` (`end = None`: to the end of the column family) in key order,
/// calling `f(key, value)` until it returns `false`.
pub(crate) fn scan(
    mut it: DBRawIterator<'_>,
    start: &[u8],
    end: Option<&[u8]>,
    mut f: impl FnMut(&[u8], &[u8]) -> io::Result<bool>,
) -> io::Result<()> {
    it.seek(start);
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        if end.is_some_and(|end| k >= end) {
            break;
        }
        if !f(k, v)? {
            break;
        }
        it.next();
    }
    it.status().map_err(db_err)
}

/// Read options bounded above by `end` (lets RocksDB skip tombstones past the range).
pub(crate) fn bounded_read_opts(end: Option<&[u8]>) -> rocksdb::ReadOptions {
    let mut ro = rocksdb::ReadOptions::default();
    if let Some(end) = end {
        ro.set_iterate_upper_bound(end.to_vec());
    }
    ro
}
