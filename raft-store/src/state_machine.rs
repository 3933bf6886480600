//! openraft `RaftStateMachine` / `RaftSnapshotBuilder` for one group, on the shared RocksDB.
//!
//! # Durability of applied state
//!
//! A batch of applied entries is written as ONE RocksDB `WriteBatch` holding the application's
//! state changes *and* the group's last applied log id (and membership), so state and applied
//! index can never disagree. That write uses `sync = false`. This is safe because:
//!
//! * every column family shares RocksDB's single write-ahead log, which is replayed in order and
//!   recovers a prefix of it after a crash: an unsynced state write becomes durable no later than
//!   the next synced write (the group-committed log appends, vote saves, purges);
//! * a lost tail of state writes is recovered by re-applying the raft log from the durable
//!   last-applied id: openraft re-applies up to the saved `committed` id on startup, and the new
//!   leader re-commits (and re-applies) everything after that. Entries are only purged once a
//!   *snapshot* covers them, and snapshots are written with `sync = true`.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use futures::StreamExt;
use futures::stream::Stream;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::storage::ApplyResponder;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;
use rocksdb::DB;
use rocksdb::WriteBatch;
use rocksdb::WriteOptions;
use serde::Deserialize;
use serde::Serialize;

use crate::Application;
use crate::GroupId;
use crate::db::DbSlot;
use crate::db::cf;
use crate::db::decode;
use crate::db::encode;
use crate::db::get_decoded;
use crate::db::scan;
use crate::error::db_err;
use crate::error::io_err;
use crate::keys::CF_META;
use crate::keys::CF_STATE;
use crate::keys::MetaKind;
use crate::keys::group_prefix;
use crate::keys::meta_key;
use crate::keys::prefix_upper_bound;
use crate::snapshot_file;
use crate::snapshot_file::SnapshotFile;
use crate::txn::ApplyTxn;
use crate::types::C;
use crate::types::LogId;
use crate::types::Snapshot;
use crate::types::SnapshotData;
use crate::types::SnapshotMeta;
use crate::types::StoredMembership;

/// What `raft_meta/<group>/SnapshotFile` (and `Installing`) holds.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    /// The file's name in the snapshot directory.
    pub(crate) file: String,
}

/// State shared between a group's state machine and its snapshot builders.
pub(crate) struct SmShared {
    group: GroupId,
    db: Arc<DbSlot>,
    /// Serializes replacing the group's current snapshot.
    snapshot_lock: Mutex<()>,
}

impl SmShared {
    /// Builds a snapshot from a consistent RocksDB snapshot and stores it as current (if it is
    /// newer than the stored one). Blocking.
    fn build_snapshot_blocking(&self) -> io::Result<Snapshot> {
        let db = self.db.get()?;
        let meta_cf = cf(&db, CF_META)?;
        let dir = snapshot_file::directory(&db)?;
        let building = dir.join(format!(
            "tmp-g{}-{}",
            self.group.0,
            BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));

        let meta = {
            let view = db.snapshot();
            let last_applied: Option<LogId> = match view
                .get_cf(meta_cf, meta_key(self.group, MetaKind::Applied))
                .map_err(db_err)?
            {
                Some(v) => decode::<Option<LogId>>(&v)?,
                None => None,
            };
            let membership: StoredMembership = match view
                .get_cf(meta_cf, meta_key(self.group, MetaKind::Membership))
                .map_err(db_err)?
            {
                Some(v) => decode(&v)?,
                None => StoredMembership::default(),
            };
            snapshot_file::write_sst(&db, &view, self.group, &building)?;
            SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
            }
        };
        // A crash here leaves a half-built file behind, never a snapshot that counts.
        fail::fail_point!("snapshot-build-mid", |_| Err(io_err(
            "failpoint snapshot-build-mid"
        )));
        let name = snapshot_file::file_name(self.group, index_of(&meta));
        let path = dir.join(&name);
        std::fs::rename(&building, &path)?;
        // Opened before it can be replaced by a newer snapshot.
        let file = SnapshotFile::open(path)?;
        self.store_snapshot(&db, &meta, &name)?;
        Ok(Snapshot {
            meta,
            snapshot: file,
        })
    }

    /// Stores a built snapshot as the group's current one, unless a newer one is already stored
    /// (e.g. installed from a leader while this one was being built), and removes the file it
    /// replaces.
    fn store_snapshot(&self, db: &DB, meta: &SnapshotMeta, name: &str) -> io::Result<()> {
        let _guard = self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
        let key = meta_key(self.group, MetaKind::SnapshotFile);
        let current: Option<StoredSnapshot> = get_decoded(db, CF_META, &key)?;
        if let Some(current) = &current {
            if current.meta.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(db, CF_META)?,
            key,
            encode(&StoredSnapshot {
                meta: meta.clone(),
                file: name.to_string(),
            })?,
        );
        db.write_opt(batch, &synced()).map_err(db_err)?;
        remove_replaced(db, current, name)
    }

    fn current_snapshot(&self) -> io::Result<Option<Snapshot>> {
        let db = self.db.get()?;
        let stored: Option<StoredSnapshot> =
            get_decoded(&db, CF_META, &meta_key(self.group, MetaKind::SnapshotFile))?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let path = snapshot_file::directory(&db)?.join(&stored.file);
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: SnapshotFile::open(path)?,
        }))
    }
}

/// Distinguishes concurrent builds' temporary files.
static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn index_of(meta: &SnapshotMeta) -> u64 {
    meta.last_log_id.as_ref().map_or(0, |l| l.index())
}

/// Deletes the file of the snapshot `replaced`, unless it is `kept` (a same-index rebuild).
fn remove_replaced(db: &DB, replaced: Option<StoredSnapshot>, kept: &str) -> io::Result<()> {
    if let Some(old) = replaced.filter(|old| old.file != kept) {
        let _ = std::fs::remove_file(snapshot_file::directory(db)?.join(old.file));
    }
    Ok(())
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

/// The state machine of one group. Owned by that group's openraft state-machine worker.
pub(crate) struct StateMachine {
    shared: Arc<SmShared>,
    app: Arc<dyn Application>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// Builds a snapshot of one group (runs on its own task, reads a RocksDB snapshot).
pub(crate) struct SnapshotBuilder {
    shared: Arc<SmShared>,
}

impl StateMachine {
    /// Loads the group's applied state from RocksDB.
    pub(crate) fn open(
        group: GroupId,
        db: Arc<DbSlot>,
        app: Arc<dyn Application>,
    ) -> io::Result<Self> {
        let shared = Arc::new(SmShared {
            group,
            db: db.clone(),
            snapshot_lock: Mutex::new(()),
        });
        {
            let handle = db.get()?;
            let installing: Option<StoredSnapshot> =
                get_decoded(&handle, CF_META, &meta_key(group, MetaKind::Installing))?;
            if let Some(stored) = installing {
                tracing::warn!(%group, "finishing a snapshot install a crash interrupted");
                let path = snapshot_file::directory(&handle)?.join(&stored.file);
                install_blocking(&shared, &stored.meta, &path)?;
            }
        }
        let (last_applied, membership) = {
            let db = db.get()?;
            let applied: Option<Option<LogId>> =
                get_decoded(&db, CF_META, &meta_key(group, MetaKind::Applied))?;
            let membership: Option<StoredMembership> =
                get_decoded(&db, CF_META, &meta_key(group, MetaKind::Membership))?;
            (applied.flatten(), membership.unwrap_or_default())
        };
        Ok(Self {
            shared,
            app,
            last_applied,
            membership,
        })
    }

    fn group(&self) -> GroupId {
        self.shared.group
    }
}

impl RaftSnapshotBuilder<C> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let shared = self.shared.clone();
        let started = std::time::Instant::now();
        let built = tokio::task::spawn_blocking(move || shared.build_snapshot_blocking())
            .await
            .map_err(|e| io_err(format!("snapshot build task failed: {e}")))??;
        crate::metrics::snapshot_done(
            "build",
            built.snapshot.len().unwrap_or(0),
            started.elapsed(),
        );
        Ok(built)
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let group = self.group();
        let db = self.shared.db.get()?;
        let state_cf = cf(&db, CF_STATE)?;
        let meta_cf = cf(&db, CF_META)?;

        let mut txn = ApplyTxn::new(&db, state_cf, group);
        let mut responses: Vec<(ApplyResponder<C>, Vec<u8>)> = Vec::new();
        let mut last: Option<LogId> = None;
        let mut membership: Option<StoredMembership> = None;

        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let response = match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(command) => {
                    self.app
                        .apply(group, entry.log_id.index(), &command.0, &mut txn)
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    Vec::new()
                }
            };
            last = Some(entry.log_id);
            if let Some(responder) = responder {
                responses.push((responder, response));
            }
        }

        let Some(last) = last else {
            return Ok(());
        };

        // The entries are in the durable log, their effects not yet in the state: a crash
        // here must re-apply them on reopen, exactly once.
        fail::fail_point!("apply-before-write", |_| Err(io_err(
            "failpoint apply-before-write"
        )));
        // State changes + applied id (+ membership) in one atomic batch.
        let mut batch = txn.finish()?;
        batch.put_cf(
            meta_cf,
            meta_key(group, MetaKind::Applied),
            encode(&Some(last))?,
        );
        if let Some(m) = &membership {
            batch.put_cf(meta_cf, meta_key(group, MetaKind::Membership), encode(m)?);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(false); // see the module docs
        db.write_opt(batch, &wo).map_err(db_err)?;
        drop(db);

        self.last_applied = Some(last);
        if let Some(m) = membership {
            self.membership = m;
        }
        for (responder, response) in responses {
            responder.send(response);
        }
        self.app.after_apply(group);
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        Some(self.get_snapshot_builder().await)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let group = self.group();
        let shared = self.shared.clone();
        let meta_owned = meta.clone();
        let started = std::time::Instant::now();
        let bytes = snapshot.len().unwrap_or(0);
        tokio::task::spawn_blocking(move || {
            let db = shared.db.get()?;
            // The received file becomes the group's snapshot file (also for serving others).
            let name = snapshot_file::file_name(group, index_of(&meta_owned));
            let path = snapshot_file::directory(&db)?.join(&name);
            std::fs::rename(&snapshot.path, &path)?;
            drop(db);
            install_blocking(&shared, &meta_owned, &path)
        })
        .await
        .map_err(|e| io_err(format!("snapshot install task failed: {e}")))??;
        crate::metrics::snapshot_done("install", bytes, started.elapsed());

        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.app.on_snapshot_installed(group);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.current_snapshot())
            .await
            .map_err(|e| io_err(format!("snapshot read task failed: {e}")))?
    }
}

/// Replaces the group's whole state with the snapshot file's at `path` (in the snapshot
/// directory). First a synced batch marks the install begun and deletes the group's state,
/// then the file is ingested, then a synced batch records the applied id, membership and the
/// snapshot and clears the mark: a crash in between leaves the mark, and opening the group
/// runs the install again.
fn install_blocking(shared: &SmShared, meta: &SnapshotMeta, path: &Path) -> io::Result<()> {
    let group = shared.group;
    let db = shared.db.get()?;
    let state_cf = cf(&db, CF_STATE)?;
    let meta_cf = cf(&db, CF_META)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stored = StoredSnapshot {
        meta: meta.clone(),
        file: name.clone(),
    };

    let mut batch = WriteBatch::default();
    batch.put_cf(
        meta_cf,
        meta_key(group, MetaKind::Installing),
        encode(&stored)?,
    );
    let prefix = group_prefix(group);
    match prefix_upper_bound(&prefix) {
        Some(end) => batch.delete_range_cf(state_cf, prefix.to_vec(), end),
        None => {
            // The last possible group: no exclusive upper bound exists, delete key by key.
            scan(db.raw_iterator_cf(state_cf), &prefix, None, |k, _| {
                if !k.starts_with(&prefix) {
                    return Ok(false);
                }
                batch.delete_cf(state_cf, k);
                Ok(true)
            })?;
        }
    }
    db.write_opt(batch, &synced()).map_err(db_err)?;
    // Tests interrupt an install here, the group's state gone and the file not yet in, as a
    // crash would (`tests/snapshot_failpoint.rs`).
    fail::fail_point!("snapshot-install-mid", |_| Err(io_err(
        "failpoint snapshot-install-mid: install interrupted"
    )));

    if std::fs::metadata(path)?.len() > 0 {
        // Copied, not moved: the file stays the group's snapshot, to serve to others.
        let mut ingest = rocksdb::IngestExternalFileOptions::default();
        ingest.set_move_files(false);
        db.ingest_external_file_cf_opts(state_cf, &ingest, vec![path])
            .map_err(db_err)?;
    }

    let _guard = shared
        .snapshot_lock
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let snapshot_key = meta_key(group, MetaKind::SnapshotFile);
    let replaced: Option<StoredSnapshot> = get_decoded(&db, CF_META, &snapshot_key)?;
    let mut batch = WriteBatch::default();
    batch.put_cf(
        meta_cf,
        meta_key(group, MetaKind::Applied),
        encode(&meta.last_log_id)?,
    );
    batch.put_cf(
        meta_cf,
        meta_key(group, MetaKind::Membership),
        encode(&meta.last_membership)?,
    );
    batch.put_cf(meta_cf, snapshot_key, encode(&stored)?);
    batch.delete_cf(meta_cf, meta_key(group, MetaKind::Installing));
    db.write_opt(batch, &synced()).map_err(db_err)?;
    remove_replaced(&db, replaced, &name)
}
