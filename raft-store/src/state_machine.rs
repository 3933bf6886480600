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
use crate::db::bounded_read_opts;
use crate::db::cf;
use crate::db::decode;
use crate::db::encode;
use crate::db::get_decoded;
use crate::db::scan;
use crate::error::db_err;
use crate::error::io_err;
use crate::keys::CF_META;
use crate::keys::CF_STATE;
use crate::keys::GROUP_PREFIX_LEN;
use crate::keys::MetaKind;
use crate::keys::group_prefix;
use crate::keys::meta_key;
use crate::keys::prefix_upper_bound;
use crate::keys::state_key;
use crate::txn::ApplyTxn;
use crate::types::C;
use crate::types::LogId;
use crate::types::Snapshot;
use crate::types::SnapshotData;
use crate::types::SnapshotMeta;
use crate::types::StoredMembership;

/// The snapshot data format: the group's whole application state at `last_applied`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotPayload {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
    /// `(application key, value)`, ascending by key.
    pub(crate) kvs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What `raft_meta/<group>/Snapshot` holds.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: SnapshotData,
}

/// Decodes only the meta of a [`StoredSnapshot`] (bincode 1 allows trailing bytes).
#[derive(Deserialize)]
struct StoredSnapshotHead {
    meta: SnapshotMeta,
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
        let state_cf = cf(&db, CF_STATE)?;

        let (payload, meta) = {
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
            let prefix = group_prefix(self.group);
            let end = prefix_upper_bound(&prefix);
            let mut kvs = Vec::new();
            scan(
                view.raw_iterator_cf_opt(state_cf, bounded_read_opts(end.as_deref())),
                &prefix,
                end.as_deref(),
                |k, v| {
                    if !k.starts_with(&prefix) {
                        return Ok(false);
                    }
                    kvs.push((k[GROUP_PREFIX_LEN..].to_vec(), v.to_vec()));
                    Ok(true)
                },
            )?;
            let meta = SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership.clone(),
            };
            (
                SnapshotPayload {
                    last_applied,
                    membership,
                    kvs,
                },
                meta,
            )
        };

        let data = encode(&payload)?;
        self.store_snapshot(&db, &meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }

    /// Stores a built snapshot as the group's current one, unless a newer one is already stored
    /// (e.g. installed from a leader while this one was being built).
    fn store_snapshot(&self, db: &DB, meta: &SnapshotMeta, data: &SnapshotData) -> io::Result<()> {
        let _guard = self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
        let key = meta_key(self.group, MetaKind::Snapshot);
        if let Some(current) = db.get_pinned_cf(cf(db, CF_META)?, key).map_err(db_err)? {
            let head: StoredSnapshotHead = decode(&current)?;
            if head.meta.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
        let blob = encode(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(db, CF_META)?, key, blob);
        db.write_opt(batch, &synced()).map_err(db_err)
    }

    fn current_snapshot(&self) -> io::Result<Option<Snapshot>> {
        let db = self.db.get()?;
        let stored: Option<StoredSnapshot> =
            get_decoded(&db, CF_META, &meta_key(self.group, MetaKind::Snapshot))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
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
        let (last_applied, membership) = {
            let db = db.get()?;
            let applied: Option<Option<LogId>> =
                get_decoded(&db, CF_META, &meta_key(group, MetaKind::Applied))?;
            let membership: Option<StoredMembership> =
                get_decoded(&db, CF_META, &meta_key(group, MetaKind::Membership))?;
            (applied.flatten(), membership.unwrap_or_default())
        };
        Ok(Self {
            shared: Arc::new(SmShared {
                group,
                db,
                snapshot_lock: Mutex::new(()),
            }),
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
        tokio::task::spawn_blocking(move || shared.build_snapshot_blocking())
            .await
            .map_err(|e| io_err(format!("snapshot build task failed: {e}")))?
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
        let payload: SnapshotPayload = decode(&snapshot)?;
        if payload.last_applied != meta.last_log_id {
            return Err(io_err(format!(
                "group {group}: snapshot data is at {:?} but its meta says {:?}",
                payload.last_applied, meta.last_log_id
            )));
        }

        let shared = self.shared.clone();
        let meta_owned = meta.clone();
        tokio::task::spawn_blocking(move || {
            install_blocking(&shared, &meta_owned, payload, snapshot)
        })
        .await
        .map_err(|e| io_err(format!("snapshot install task failed: {e}")))??;

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

/// Replaces the group's whole state with the snapshot's, in one synced batch that also records
/// the applied id, membership and the snapshot itself.
fn install_blocking(
    shared: &SmShared,
    meta: &SnapshotMeta,
    payload: SnapshotPayload,
    data: SnapshotData,
) -> io::Result<()> {
    let group = shared.group;
    let db = shared.db.get()?;
    let state_cf = cf(&db, CF_STATE)?;
    let meta_cf = cf(&db, CF_META)?;

    let mut batch = WriteBatch::default();
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
    for (k, v) in payload.kvs {
        batch.put_cf(state_cf, state_key(group, &k), v);
    }
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

    let _guard = shared
        .snapshot_lock
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    batch.put_cf(
        meta_cf,
        meta_key(group, MetaKind::Snapshot),
        encode(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?,
    );
    db.write_opt(batch, &synced()).map_err(db_err)
}
