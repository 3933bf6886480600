//! Crate tests: openraft's storage suite against the RocksDB log store + state machine, and
//! end-to-end tests of [`RaftStore`] with a small key-value application.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use openraft::StorageError;
use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use openraft::testing::log::StoreBuilder;
use openraft::testing::log::Suite;
use rocksdb::DB;

use crate::Application;
use crate::ApplyTxn;
use crate::Durability;
use crate::GroupId;
use crate::ProposeError;
use crate::RaftStore;
use crate::StoreOptions;
use crate::db::DbSlot;
use crate::db::cf;
use crate::db::open_db;
use crate::keys;
use crate::log_store::LogStore;
use crate::state_machine::StateMachine;
use crate::types::C;
use crate::writer::Writer;

// ---------------------------------------------------------------------------------------------
// A test application: a KV store with a per-group apply counter.
// ---------------------------------------------------------------------------------------------

/// Commands (UTF-8, space separated):
/// - `put K V`      → returns the previous value (or empty)
/// - `del K`        → returns the deleted value (or empty)
/// - `incr K`       → increments a decimal counter, returns the new value
/// - `scan P`       → returns `k=v;` for every key with prefix P (read through the txn)
/// - `putget K V`   → put then get in the same command, returns what the txn read back
///
/// Every command also appends its index to the key `log` so tests can check apply order.
#[derive(Default)]
struct KvApp {
    events: Mutex<Vec<String>>,
}

impl KvApp {
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

impl Application for KvApp {
    fn apply(&self, group: GroupId, index: u64, command: &[u8], txn: &mut ApplyTxn<'_>) -> Vec<u8> {
        assert_eq!(txn.group(), group);
        let cmd = String::from_utf8(command.to_vec()).unwrap();
        let parts: Vec<&str> = cmd.split(' ').collect();

        let mut log = txn.get(b"log").unwrap_or_default();
        log.extend_from_slice(format!("{index},").as_bytes());
        txn.put(b"log", &log);

        match parts.as_slice() {
            ["put", k, v] => {
                let prev = txn.get(k.as_bytes()).unwrap_or_default();
                txn.put(k.as_bytes(), v.as_bytes());
                prev
            }
            ["del", k] => {
                let prev = txn.get(k.as_bytes()).unwrap_or_default();
                txn.delete(k.as_bytes());
                prev
            }
            ["incr", k] => {
                let n: u64 = txn
                    .get(k.as_bytes())
                    .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
                    .unwrap_or(0);
                let v = (n + 1).to_string();
                txn.put(k.as_bytes(), v.as_bytes());
                v.into_bytes()
            }
            ["scan", p] => {
                let mut out = Vec::new();
                for (k, v) in txn.scan_prefix(p.as_bytes()) {
                    out.extend_from_slice(&k);
                    out.push(b'=');
                    out.extend_from_slice(&v);
                    out.push(b';');
                }
                out
            }
            ["putget", k, v] => {
                txn.put(k.as_bytes(), v.as_bytes());
                txn.get(k.as_bytes()).unwrap_or_default()
            }
            _ => b"?".to_vec(),
        }
    }

    fn after_apply(&self, group: GroupId) {
        self.events
            .lock()
            .unwrap()
            .push(format!("after_apply {group}"));
    }

    fn on_snapshot_installed(&self, group: GroupId) {
        self.events
            .lock()
            .unwrap()
            .push(format!("snapshot_installed {group}"));
    }
}

fn opts(dir: &Path, groups: &[u32], snapshot_every: u64) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        node_id: 1,
        advertise_addr: "127.0.0.1:7233".to_string(),
        initial_members: Default::default(),
        groups: groups.iter().map(|g| GroupId(*g)).collect(),
        placement: Default::default(),
        durability: Durability::Fsync,
        snapshot_every,
        fault_injection: false,
        peer_tls: None,
    }
}

async fn open_ready(opts: StoreOptions, app: Arc<dyn Application>) -> RaftStore {
    let store = RaftStore::open(opts, app).await.unwrap();
    store
        .wait_for_leaders(Duration::from_secs(5))
        .await
        .unwrap();
    store
}

/// Generous enough for a loaded machine; a proposal that takes longer is hung.
const PROPOSE_DEADLINE: Duration = Duration::from_secs(60);

async fn propose(store: &RaftStore, group: u32, cmd: &str) -> String {
    let out = tokio::time::timeout(
        PROPOSE_DEADLINE,
        store.propose(GroupId(group), cmd.as_bytes().to_vec()),
    )
    .await
    .unwrap_or_else(|_| panic!("proposal {cmd:?} to group {group} hung"))
    .unwrap();
    String::from_utf8(out).unwrap()
}

fn get(store: &RaftStore, group: u32, key: &str) -> Option<String> {
    store
        .reader(GroupId(group))
        .unwrap()
        .get(key.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

/// Log indexes recorded by the test application, in apply order.
fn applied_indexes(store: &RaftStore, group: u32) -> Vec<u64> {
    get(store, group, "log")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Raw log indexes of `group` present in the `raft_log` column family.
fn raw_log_indexes(db: &DB, group: u32) -> Vec<u64> {
    let mut out = Vec::new();
    let it = db.iterator_cf(cf(db, keys::CF_LOG).unwrap(), rocksdb::IteratorMode::Start);
    for kv in it {
        let (k, _) = kv.unwrap();
        let (g, i) = keys::decode_log_key(&k).unwrap();
        if g == GroupId(group) {
            out.push(i);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// openraft's storage test suite.
// ---------------------------------------------------------------------------------------------

struct NoopApp;

impl Application for NoopApp {
    fn apply(&self, _: GroupId, _: u64, _: &[u8], _: &mut ApplyTxn<'_>) -> Vec<u8> {
        Vec::new()
    }
    fn on_snapshot_installed(&self, _: GroupId) {}
}

/// Keeps the tempdir and the writer alive for the duration of one suite case.
struct SuiteGuard {
    writer: Arc<Writer>,
    _dir: tempfile::TempDir,
}

impl Drop for SuiteGuard {
    fn drop(&mut self) {
        self.writer.stop();
    }
}

struct RocksBuilder;

impl StoreBuilder<C, LogStore, StateMachine, SuiteGuard> for RocksBuilder {
    async fn build(&self) -> Result<(SuiteGuard, LogStore, StateMachine), StorageError<C>> {
        let dir = tempfile::tempdir().unwrap();
        let slot = DbSlot::new(open_db(dir.path()).unwrap());
        let writer = Writer::spawn(slot.get().unwrap()).unwrap();
        // Use a non-zero group so key prefixes are exercised.
        let group = GroupId(7);
        let log = LogStore::open(group, slot.clone(), writer.clone(), true).unwrap();
        let sm = StateMachine::open(group, slot, Arc::new(NoopApp)).unwrap();
        Ok((SuiteGuard { writer, _dir: dir }, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(RocksBuilder).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// RaftStore end-to-end.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_apply_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(KvApp::default());
    let store = open_ready(opts(dir.path(), &[0, 1], 0), app.clone()).await;

    assert_eq!(store.groups(), vec![GroupId(0), GroupId(1)]);
    assert!(store.leader_term(GroupId(0)).is_some());
    assert!(store.leader_term(GroupId(1)).is_some());
    assert_eq!(store.leader_term(GroupId(9)), None);

    assert_eq!(propose(&store, 1, "put a 1").await, "");
    assert_eq!(propose(&store, 1, "put a 2").await, "1");
    assert_eq!(propose(&store, 1, "incr n").await, "1");
    assert_eq!(propose(&store, 1, "incr n").await, "2");
    assert_eq!(get(&store, 1, "a").as_deref(), Some("2"));
    assert_eq!(get(&store, 1, "n").as_deref(), Some("2"));
    assert_eq!(propose(&store, 1, "del a").await, "2");
    assert_eq!(get(&store, 1, "a"), None);
    assert!(app.events().iter().any(|e| e == "after_apply 1"));

    // Unknown groups.
    assert!(matches!(
        tokio::time::timeout(PROPOSE_DEADLINE, store.propose(GroupId(9), b"x".to_vec()))
            .await
            .unwrap(),
        Err(ProposeError::UnknownGroup(GroupId(9)))
    ));
    assert!(matches!(
        store.reader(GroupId(9)),
        Err(crate::Error::UnknownGroup(GroupId(9)))
    ));
    assert!(matches!(
        store.watch_leadership(GroupId(9)),
        Err(crate::Error::UnknownGroup(GroupId(9)))
    ));

    store.shutdown().await.unwrap();
    // Idempotent, and every later call fails cleanly.
    store.shutdown().await.unwrap();
    assert!(matches!(
        tokio::time::timeout(
            PROPOSE_DEADLINE,
            store.propose(GroupId(1), b"put a 1".to_vec())
        )
        .await
        .unwrap(),
        Err(ProposeError::Unavailable { .. })
    ));
    let closed = store.reader(GroupId(1)).unwrap().get(b"n").unwrap_err();
    assert!(closed.to_string().contains("shut down"), "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_ready(
        opts(dir.path(), &[1, 2, u32::MAX], 0),
        Arc::new(KvApp::default()),
    )
    .await;

    propose(&store, 1, "put k one").await;
    propose(&store, 2, "put k two").await;
    propose(&store, u32::MAX, "put k max").await;
    propose(&store, 1, "put k/x 1").await;

    assert_eq!(get(&store, 1, "k").as_deref(), Some("one"));
    assert_eq!(get(&store, 2, "k").as_deref(), Some("two"));
    assert_eq!(get(&store, u32::MAX, "k").as_deref(), Some("max"));

    // Scans never cross groups and return keys without the group prefix.
    let r1 = store.reader(GroupId(1)).unwrap();
    let r2 = store.reader(GroupId(2)).unwrap();
    assert_eq!(
        r1.scan_prefix(b"k").unwrap(),
        vec![
            (b"k".to_vec(), b"one".to_vec()),
            (b"k/x".to_vec(), b"1".to_vec())
        ]
    );
    assert_eq!(
        r2.scan_prefix(b"k").unwrap(),
        vec![(b"k".to_vec(), b"two".to_vec())]
    );
    assert_eq!(r2.scan_prefix(b"").unwrap().len(), 2); // "k" and "log"
    let rmax = store.reader(GroupId(u32::MAX)).unwrap();
    assert_eq!(rmax.scan_prefix(b"").unwrap().len(), 2);
    assert_eq!(rmax.scan_range(b"k", b"", 10).unwrap().len(), 2);

    // scan_range: [start, end), limit, empty end = unbounded.
    assert_eq!(
        r1.scan_range(b"k", b"k/", 10).unwrap(),
        vec![(b"k".to_vec(), b"one".to_vec())]
    );
    assert_eq!(r1.scan_range(b"", b"", 2).unwrap().len(), 2);
    assert_eq!(r1.scan_range(b"", b"", 0).unwrap().len(), 0);
    assert_eq!(r1.scan_range(b"l", b"", 10).unwrap().len(), 1); // "log"
    assert_eq!(r1.scan_range(b"z", b"a", 10).unwrap().len(), 0);

    // The txn's scan is group-scoped too.
    assert_eq!(propose(&store, 2, "scan k").await, "k=two;");
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_txn_reads_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(KvApp::default());
    let store = open_ready(opts(dir.path(), &[1], 0), app.clone()).await;

    propose(&store, 1, "put p/a 1").await;
    propose(&store, 1, "put p/c 3").await;
    // Within one command.
    assert_eq!(propose(&store, 1, "putget p/b 2").await, "2");

    // Across the commands of one apply batch: propose concurrently so openraft applies several
    // entries in one `apply` call; every `incr` must see the previous one's uncommitted write.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(
            async move { propose(&s, 1, "incr ctr").await },
        ));
    }
    let mut results: Vec<u64> = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().parse().unwrap());
    }
    results.sort();
    assert_eq!(results, (1..=50).collect::<Vec<u64>>());
    assert_eq!(get(&store, 1, "ctr").as_deref(), Some("50"));

    // scan_prefix through the txn sees the applied state (in-batch merging: see
    // `apply_txn_overlay_unit`).
    propose(&store, 1, "del p/a").await;
    propose(&store, 1, "put p/d 4").await;
    assert_eq!(propose(&store, 1, "scan p/").await, "p/b=2;p/c=3;p/d=4;");
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_txn_overlay_unit() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).unwrap();
    let state_cf = cf(&db, keys::CF_STATE).unwrap();
    db.put_cf(state_cf, keys::state_key(GroupId(3), b"a"), b"db-a")
        .unwrap();
    db.put_cf(state_cf, keys::state_key(GroupId(3), b"b"), b"db-b")
        .unwrap();
    db.put_cf(state_cf, keys::state_key(GroupId(4), b"a"), b"other")
        .unwrap();

    let mut txn = ApplyTxn::new(&db, state_cf, GroupId(3));
    assert_eq!(txn.get(b"a"), Some(b"db-a".to_vec()));
    txn.put(b"a", b"new-a");
    txn.delete(b"b");
    txn.put(b"c", b"new-c");
    assert_eq!(txn.get(b"a"), Some(b"new-a".to_vec()));
    assert_eq!(txn.get(b"b"), None);
    assert_eq!(
        txn.scan_prefix(b""),
        vec![
            (b"a".to_vec(), b"new-a".to_vec()),
            (b"c".to_vec(), b"new-c".to_vec())
        ]
    );
    // Nothing reached the DB before commit.
    assert_eq!(
        db.get_cf(state_cf, keys::state_key(GroupId(3), b"b"))
            .unwrap(),
        Some(b"db-b".to_vec())
    );
    let batch = txn.finish().unwrap();
    db.write(batch).unwrap();
    assert_eq!(
        db.get_cf(state_cf, keys::state_key(GroupId(3), b"b"))
            .unwrap(),
        None
    );
    assert_eq!(
        db.get_cf(state_cf, keys::state_key(GroupId(4), b"a"))
            .unwrap(),
        Some(b"other".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_state_and_leadership() {
    let dir = tempfile::tempdir().unwrap();
    let n = 30;
    let term_before;
    {
        let store = open_ready(opts(dir.path(), &[0, 1], 1000), Arc::new(KvApp::default())).await;
        for i in 0..n {
            propose(&store, 1, &format!("put k{i} v{i}")).await;
            propose(&store, 0, "incr meta").await;
        }
        term_before = store.leader_term(GroupId(1)).unwrap();
        store.shutdown().await.unwrap();
    }

    // Same process, same directory: the RocksDB lock was released.
    let app = Arc::new(KvApp::default());
    let store = RaftStore::open(opts(dir.path(), &[0, 1], 1000), app.clone())
        .await
        .unwrap();
    store
        .wait_for_leaders(Duration::from_secs(30))
        .await
        .unwrap();
    let term_after = store.leader_term(GroupId(1)).unwrap();
    assert!(term_after > term_before, "{term_after} > {term_before}");

    for i in 0..n {
        assert_eq!(get(&store, 1, &format!("k{i}")), Some(format!("v{i}")));
    }
    assert_eq!(get(&store, 0, "meta"), Some(n.to_string()));

    // New proposals continue applying in log order.
    let before = applied_indexes(&store, 1);
    assert_eq!(propose(&store, 1, "put k0 again").await, "v0");
    assert_eq!(propose(&store, 0, "incr meta").await, (n + 1).to_string());
    let after = applied_indexes(&store, 1);
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");

    // Leadership watch agrees.
    let rx = store.watch_leadership(GroupId(1)).unwrap();
    assert_eq!(*rx.borrow(), Some(term_after));
    store.shutdown().await.unwrap();
    assert_eq!(*rx.borrow(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reapplies_state_lost_from_the_memtable() {
    // Simulate losing unsynced state writes: after a clean shutdown, roll the applied state of
    // group 1 back (delete its state keys and applied id) and check reopening re-applies the log.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_ready(opts(dir.path(), &[1], 0), Arc::new(KvApp::default())).await;
        for i in 0..10 {
            propose(&store, 1, &format!("incr c{}", i % 3)).await;
        }
        store.shutdown().await.unwrap();
    }
    {
        let db = open_db(dir.path()).unwrap();
        let state_cf = cf(&db, keys::CF_STATE).unwrap();
        let meta_cf = cf(&db, keys::CF_META).unwrap();
        let keys: Vec<Box<[u8]>> = db
            .iterator_cf(state_cf, rocksdb::IteratorMode::Start)
            .map(|kv| kv.unwrap().0)
            .collect();
        for k in keys {
            db.delete_cf(state_cf, k).unwrap();
        }
        db.delete_cf(meta_cf, keys::meta_key(GroupId(1), keys::MetaKind::Applied))
            .unwrap();
        db.flush_wal(true).unwrap();
    }
    let store = open_ready(opts(dir.path(), &[1], 0), Arc::new(KvApp::default())).await;
    assert_eq!(get(&store, 1, "c0").as_deref(), Some("4"));
    assert_eq!(get(&store, 1, "c1").as_deref(), Some("3"));
    assert_eq!(get(&store, 1, "c2").as_deref(), Some("3"));
    assert_eq!(applied_indexes(&store, 1).len(), 10);
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_purges_log_and_purge_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let purged;
    {
        let store = open_ready(opts(dir.path(), &[1, 2], 0), Arc::new(KvApp::default())).await;
        for i in 0..120 {
            propose(&store, 1, &format!("put k{i} v{i}")).await;
        }
        propose(&store, 2, "put other 1").await;
        store.trigger_snapshot(GroupId(1)).await.unwrap();

        let raft = store.raft(GroupId(1)).clone();
        let m = raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(|m| m.purged.is_some(), "purged")
            .await
            .unwrap();
        purged = m.purged.unwrap().index();
        let snapshot = m.snapshot.unwrap().index();
        assert!(purged + crate::config::MAX_IN_SNAPSHOT_LOG_TO_KEEP >= snapshot);
        assert!(purged > 50, "purged up to {purged}");
        store.shutdown().await.unwrap();
    }
    {
        // The entries are gone from RocksDB, the purge record is durable, the other group is
        // untouched.
        let db = open_db(dir.path()).unwrap();
        let idx = raw_log_indexes(&db, 1);
        assert!(idx.iter().all(|i| *i > purged), "{:?}", &idx[..3]);
        assert_eq!(idx.first().copied(), Some(purged + 1));
        assert!(!raw_log_indexes(&db, 2).is_empty());
        let stored: crate::types::LogId = crate::db::get_decoded(
            &db,
            keys::CF_META,
            &keys::meta_key(GroupId(1), keys::MetaKind::LastPurged),
        )
        .unwrap()
        .unwrap();
        assert_eq!(stored.index(), purged);
    }
    // Reopen: the log state starts after the purged id and the state is intact.
    let store = open_ready(opts(dir.path(), &[1, 2], 0), Arc::new(KvApp::default())).await;
    let m = store.raft(GroupId(1)).metrics().borrow_watched().clone();
    assert_eq!(m.purged.map(|p| p.index()), Some(purged));
    assert!(m.snapshot.is_some());
    for i in 0..120 {
        assert_eq!(get(&store, 1, &format!("k{i}")), Some(format!("v{i}")));
    }
    assert_eq!(propose(&store, 1, "put k0 x").await, "v0");
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_snapshots_follow_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_ready(opts(dir.path(), &[1], 20), Arc::new(KvApp::default())).await;
    for i in 0..100 {
        propose(&store, 1, &format!("put k{i} v{i}")).await;
    }
    let m = store
        .raft(GroupId(1))
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index() >= 60) && m.purged.is_some(),
            "auto snapshot",
        )
        .await
        .unwrap();
    assert!(m.purged.unwrap().index() > 0);
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_build_then_install_into_fresh_store() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();

    // Source: a running store with state in group 1 (and other groups' keys around it).
    let src = open_ready(
        opts(src_dir.path(), &[0, 1, 2], 0),
        Arc::new(KvApp::default()),
    )
    .await;
    for i in 0..25 {
        propose(&src, 1, &format!("put k{i} v{i}")).await;
    }
    propose(&src, 1, "del k3").await;
    propose(&src, 0, "put meta m").await;
    propose(&src, 2, "put k1 group2").await;
    src.trigger_snapshot(GroupId(1)).await.unwrap();
    let expected = src.reader(GroupId(1)).unwrap().scan_prefix(b"").unwrap();
    let snap = src.raft(GroupId(1)).get_snapshot().await.unwrap().unwrap();
    src.shutdown().await.unwrap();

    // Destination: a bare state machine for group 1 over a fresh DB that already holds stale
    // keys for group 1 (must be wiped) and keys of group 2 (must survive).
    let slot = DbSlot::new(open_db(dst_dir.path()).unwrap());
    {
        let db = slot.get().unwrap();
        let state_cf = cf(&db, keys::CF_STATE).unwrap();
        db.put_cf(state_cf, keys::state_key(GroupId(1), b"stale"), b"x")
            .unwrap();
        db.put_cf(state_cf, keys::state_key(GroupId(2), b"keep"), b"y")
            .unwrap();
    }
    let app = Arc::new(KvApp::default());
    let mut sm = StateMachine::open(GroupId(1), slot.clone(), app.clone()).unwrap();
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
    // As received from the leader: a copy of its file in the incoming place.
    let db = slot.get().unwrap();
    let incoming = crate::snapshot_file::incoming_path(&db, GroupId(1), 7).unwrap();
    drop(db);
    std::fs::copy(&snap.snapshot.path, &incoming).unwrap();
    let received = crate::snapshot_file::finish_incoming(incoming).unwrap();
    sm.install_snapshot(&snap.meta, received).await.unwrap();

    assert_eq!(app.events(), vec!["snapshot_installed 1".to_string()]);
    let reader = crate::StateReader::new(slot.clone(), GroupId(1));
    assert_eq!(reader.scan_prefix(b"").unwrap(), expected);
    assert_eq!(reader.get(b"k3").unwrap(), None);
    assert_eq!(reader.get(b"stale").unwrap(), None);
    assert_eq!(
        crate::StateReader::new(slot.clone(), GroupId(2))
            .get(b"keep")
            .unwrap(),
        Some(b"y".to_vec())
    );
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, snap.meta.last_log_id);
    assert_eq!(membership, snap.meta.last_membership);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    assert_eq!(
        std::fs::read(&current.snapshot.path).unwrap(),
        std::fs::read(&snap.snapshot.path).unwrap(),
        "the installed file is the group's snapshot, to serve to others"
    );

    // A reopened state machine sees the installed state.
    drop(sm);
    let mut sm = StateMachine::open(GroupId(1), slot.clone(), app.clone()).unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, snap.meta.last_log_id);
    drop(sm);

    // A crash after an install began (its mark written, the group's state deleted, nothing
    // ingested yet): opening the group finishes the install from the file.
    {
        let db = slot.get().unwrap();
        let state_cf = cf(&db, keys::CF_STATE).unwrap();
        let meta_cf = cf(&db, keys::CF_META).unwrap();
        db.delete_range_cf(
            state_cf,
            keys::state_key(GroupId(1), b""),
            keys::state_key(GroupId(2), b""),
        )
        .unwrap();
        db.put_cf(
            meta_cf,
            keys::meta_key(GroupId(1), keys::MetaKind::Applied),
            crate::db::encode(&None::<crate::types::LogId>).unwrap(),
        )
        .unwrap();
        let mark = crate::state_machine::StoredSnapshot {
            meta: snap.meta.clone(),
            file: current
                .snapshot
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into(),
        };
        db.put_cf(
            meta_cf,
            keys::meta_key(GroupId(1), keys::MetaKind::Installing),
            crate::db::encode(&mark).unwrap(),
        )
        .unwrap();
    }
    let mut sm = StateMachine::open(GroupId(1), slot.clone(), app).unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, snap.meta.last_log_id);
    assert_eq!(reader.scan_prefix(b"").unwrap(), expected);
    drop(sm);
    drop(slot.take());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_of_many_groups_share_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let groups: Vec<u32> = (1..=8).collect();
    let store = open_ready(opts(dir.path(), &groups, 0), Arc::new(KvApp::default())).await;
    // Whether proposals of different groups share an fsync depends on scheduling; the
    // deterministic batching check is `writer::tests`, throughput belongs to benchmarks.
    // This test proves the shared writer loses and mixes up nothing across groups.
    let mut tasks = Vec::new();
    for g in &groups {
        for i in 0..25 {
            let s = store.clone();
            let g = *g;
            tasks.push(tokio::spawn(async move {
                propose(&s, g, &format!("put k{i} v{g}")).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for g in &groups {
        let stored = store
            .reader(GroupId(*g))
            .unwrap()
            .scan_prefix(b"k")
            .unwrap();
        assert_eq!(stored.len(), 25);
        for i in 0..25 {
            assert_eq!(get(&store, *g, &format!("k{i}")), Some(format!("v{g}")));
        }
    }
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_reads_pending_appends_and_truncates() {
    use openraft::entry::RaftEntry;
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::blank_ent;

    let dir = tempfile::tempdir().unwrap();
    let slot = DbSlot::new(open_db(dir.path()).unwrap());
    let writer = Writer::spawn(slot.get().unwrap()).unwrap();
    let mut log = LogStore::open(GroupId(3), slot.clone(), writer.clone(), true).unwrap();
    log.blocking_append((0..10).map(|i| blank_ent::<C>(1, 1, i)))
        .await
        .unwrap();
    log.truncate_after(Some(blank_ent::<C>(1, 1, 4).log_id()))
        .await
        .unwrap();
    log.blocking_append((5..8).map(|i| blank_ent::<C>(2, 1, i)))
        .await
        .unwrap();
    drop(log);

    // Reopen from disk.
    let mut log = LogStore::open(GroupId(3), slot.clone(), writer.clone(), true).unwrap();
    let st = log.get_log_state().await.unwrap();
    assert_eq!(
        st.last_log_id
            .map(|l| (l.committed_leader_id().term, l.index())),
        Some((2, 7))
    );
    let mut reader = log.get_log_reader().await;
    let entries = openraft::RaftLogReader::try_get_log_entries(&mut reader, 0..100)
        .await
        .unwrap();
    let ids: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (e.log_id().committed_leader_id().term, e.index()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (1, 0),
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 4),
            (2, 5),
            (2, 6),
            (2, 7)
        ]
    );
    drop(reader);
    drop(log);
    writer.stop();
    drop(slot.take());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_durability_skips_fsync_for_appends() {
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir().unwrap();
    let relaxed = StoreOptions {
        durability: Durability::Relaxed,
        ..opts(dir.path(), &[1], 0)
    };
    let store = open_ready(relaxed.clone(), Arc::new(KvApp::default())).await;
    let synced = || store.writer_stats().synced_batches.load(Ordering::Relaxed);
    let before = synced();
    for i in 0..20 {
        propose(&store, 1, &format!("put k{i} v{i}")).await;
    }
    assert_eq!(
        synced(),
        before,
        "no fsync for appends under Durability::Relaxed"
    );
    store.shutdown().await.unwrap();

    // A clean shutdown flushes everything.
    let store = open_ready(relaxed, Arc::new(KvApp::default())).await;
    assert_eq!(get(&store, 1, "k19").as_deref(), Some("v19"));
    store.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Three nodes in one process, each with its own RocksDB, talking over real gRPC on loopback.
// ---------------------------------------------------------------------------------------------

struct PeerNode {
    store: RaftStore,
    server: tokio::task::JoinHandle<()>,
    stop_serving: tokio::sync::oneshot::Sender<()>,
}

impl PeerNode {
    /// Stops serving and closes every connection peers hold to this node (aborting the
    /// server task would leave its connections answering for the stopped store), then
    /// closes the store.
    async fn stop(self) {
        let _ = self.stop_serving.send(());
        let _ = self.server.await;
        self.store.shutdown().await.unwrap();
    }
}

/// Starts node `id` of a cluster whose peer services listen on `listeners` (node i+1 on the
/// i-th), serving its peer service on its own listener.
async fn start_peer_node(
    dir: &Path,
    id: u64,
    members: &BTreeMap<u64, String>,
    listener: std::net::TcpListener,
    groups: &[u32],
) -> PeerNode {
    let opts = StoreOptions {
        node_id: id,
        advertise_addr: members[&id].clone(),
        initial_members: members.clone(),
        fault_injection: true,
        peer_tls: None,
        ..opts(&dir.join(format!("node-{id}")), groups, 0)
    };
    let store = RaftStore::open(opts, Arc::new(KvApp::default()))
        .await
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(
        tokio::net::TcpListener::from_std(listener).unwrap(),
    );
    let service = store.peer_service();
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    PeerNode {
        store,
        server,
        stop_serving,
    }
}

/// Three nodes (ids 1..=3) on loopback ports, each hosting `groups`; also their peer addresses.
async fn start_three_nodes(dir: &Path, groups: &[u32]) -> (Vec<PeerNode>, BTreeMap<u64, String>) {
    let listeners: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let members: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        nodes.push(start_peer_node(dir, i as u64 + 1, &members, listener, groups).await);
    }
    (nodes, members)
}

/// The node leading `group` once the nodes agree on one, within `timeout`.
async fn agreed_leader(nodes: &[&PeerNode], group: u32, timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let leaders: Vec<usize> = (0..nodes.len())
            .filter(|i| nodes[*i].store.leader_term(GroupId(group)).is_some())
            .collect();
        if let [leader] = leaders[..] {
            return leader;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no single leader of group {group}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A read barrier on `store` through `leader`. A leader may refuse reads for a moment around
/// an election (`NotLeader`, as the node's router expects); that is retried.
async fn read_barrier(store: &RaftStore, leader: u64, group: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match store
            .read_barrier_via(Some(leader), GroupId(group), Duration::from_secs(10))
            .await
        {
            Ok(()) => return,
            Err(ProposeError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("read barrier of group {group}: {e}"),
        }
    }
}

/// Waits until `node` has applied `key = value` in `group`.
async fn replicated(node: &PeerNode, group: u32, key: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while get(&node.store, group, key).as_deref() != Some(value) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} never reached a follower"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_over_grpc_and_survive_the_leaders_loss() {
    let dir = tempfile::tempdir().unwrap();
    let groups = [0, 1, 2];
    let (mut nodes, _) = start_three_nodes(dir.path(), &groups).await;

    // Every group elects one leader among the three, and what it commits reaches every node.
    for group in groups {
        let refs: Vec<&PeerNode> = nodes.iter().collect();
        let leader = agreed_leader(&refs, group, Duration::from_secs(30)).await;
        let value = format!("v{group}");
        propose(&nodes[leader].store, group, &format!("put k {value}")).await;
        // After a read barrier every replica serves the write at once (ReadIndex).
        for node in &nodes {
            read_barrier(&node.store, leader as u64 + 1, group).await;
            assert_eq!(
                get(&node.store, group, "k").as_deref(),
                Some(value.as_str())
            );
        }
        // A follower refuses to propose and names the leader.
        let follower = (leader + 1) % 3;
        match tokio::time::timeout(
            PROPOSE_DEADLINE,
            nodes[follower]
                .store
                .propose(GroupId(group), b"put x y".to_vec()),
        )
        .await
        .expect("a follower's refusal hung")
        {
            Err(ProposeError::NotLeader { leader: hint, .. }) => {
                assert_eq!(hint, Some(leader as u64 + 1));
            }
            other => panic!("a follower proposed: {other:?}"),
        }
        // Forwarded to the hinted leader, the follower's command applies once, everywhere.
        let reply = nodes[follower]
            .store
            .propose_via(
                leader as u64 + 1,
                GroupId(group),
                format!("put k forwarded{group}").into_bytes(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(
            reply,
            value.as_bytes(),
            "the previous value, as apply returned it"
        );
        for node in &nodes {
            replicated(node, group, "k", &format!("forwarded{group}")).await;
        }
    }

    // The leader of group 1 goes away: the other two elect a new one and keep committing.
    let refs: Vec<&PeerNode> = nodes.iter().collect();
    let old = agreed_leader(&refs, 1, Duration::from_secs(30)).await;
    let stopped = nodes.remove(old);
    stopped.stop().await;
    let refs: Vec<&PeerNode> = nodes.iter().collect();
    let new = agreed_leader(&refs, 1, Duration::from_secs(30)).await;
    propose(&nodes[new].store, 1, "put after failover").await;
    for node in &nodes {
        replicated(node, 1, "after", "failover").await;
        // Nothing committed before the loss is lost.
        assert_eq!(get(&node.store, 1, "k").as_deref(), Some("forwarded1"));
    }
    for node in nodes {
        node.stop().await;
    }
}

/// How many of `groups` each node leads, by its own leadership (ready leaders only).
fn leaders_per_node(nodes: &[&PeerNode], groups: &[u32]) -> Vec<usize> {
    nodes
        .iter()
        .map(|n| {
            groups
                .iter()
                .filter(|g| n.store.leader_term(GroupId(**g)).is_some())
                .count()
        })
        .collect()
}

/// Waits until every node leads exactly `each` of `groups`.
async fn spread(nodes: &[&PeerNode], groups: &[u32], each: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let led = leaders_per_node(nodes, groups);
        if led.iter().all(|n| *n == each) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leaders never spread: {led:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_spread_evenly_and_come_back_to_a_restarted_node() {
    let dir = tempfile::tempdir().unwrap();
    let groups = [0, 1, 2, 3, 4, 5];
    let (mut nodes, members) = start_three_nodes(dir.path(), &groups).await;
    spread(&nodes.iter().collect::<Vec<_>>(), &groups, 2).await;

    // Node 1 goes away: the others lead everything, three each once balanced.
    let stopped = nodes.remove(0);
    stopped.stop().await;
    spread(&nodes.iter().collect::<Vec<_>>(), &groups, 3).await;

    // It comes back on its data: it is handed its share again.
    let listener = std::net::TcpListener::bind(&members[&1]).unwrap();
    nodes.insert(
        0,
        start_peer_node(dir.path(), 1, &members, listener, &groups).await,
    );
    spread(&nodes.iter().collect::<Vec<_>>(), &groups, 2).await;
    for node in nodes {
        node.stop().await;
    }
}

/// Cuts `node` off from every other member (both directions) or, with `None`, heals it.
async fn isolate(members: &BTreeMap<u64, String>, node: u64, cut: bool) {
    let others: std::collections::BTreeSet<u64> =
        members.keys().copied().filter(|n| *n != node).collect();
    let rules = if cut {
        crate::FaultRules {
            drop_to: others.clone(),
            drop_from: others,
            ..Default::default()
        }
    } else {
        crate::FaultRules::default()
    };
    crate::set_peer_faults(&members[&node], &rules, Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_commits_nothing_and_the_replicas_converge_after_healing() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_three_nodes(dir.path(), &[1]).await;
    let refs: Vec<&PeerNode> = nodes.iter().collect();
    let old = agreed_leader(&refs, 1, Duration::from_secs(30)).await;
    propose(&nodes[old].store, 1, "put k before").await;

    isolate(&members, old as u64 + 1, true).await;
    // Cut off from its quorum, the old leader cannot commit: its proposal never succeeds.
    let cut_off = tokio::spawn({
        let store = nodes[old].store.clone();
        async move { store.propose(GroupId(1), b"put k cut-off".to_vec()).await }
    });
    // The majority elects a leader of its own and goes on committing.
    let majority: Vec<&PeerNode> = (0..3).filter(|i| *i != old).map(|i| &nodes[i]).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let new = loop {
        if let Some(i) = (0..2).find(|i| majority[*i].store.leader_term(GroupId(1)).is_some()) {
            break i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the majority never elected a leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    propose(&majority[new].store, 1, "put k majority").await;
    for node in &majority {
        replicated(node, 1, "k", "majority").await;
    }

    isolate(&members, old as u64 + 1, false).await;
    // Healed, the old leader learns the new term: its proposal fails, never applied, and
    // every replica holds the majority's value.
    let outcome = tokio::time::timeout(Duration::from_secs(30), cut_off)
        .await
        .expect("the cut-off proposal ends once healed")
        .unwrap();
    assert!(
        outcome.is_err(),
        "a cut-off proposal succeeded: {outcome:?}"
    );
    for node in &nodes {
        replicated(node, 1, "k", "majority").await;
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_purged_log_catches_up_by_a_streamed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, members) = start_three_nodes(dir.path(), &[1]).await;
    let refs: Vec<&PeerNode> = nodes.iter().collect();
    let leader = agreed_leader(&refs, 1, Duration::from_secs(30)).await;
    let behind = (leader + 1) % 3;
    let behind_id = behind as u64 + 1;
    let stopped = nodes.remove(behind);
    stopped.stop().await;

    // Far more than the log the leader keeps behind a snapshot, and many 64-byte chunks of
    // snapshot (the test chunk size).
    let leader = agreed_leader(
        &nodes.iter().collect::<Vec<_>>(),
        1,
        Duration::from_secs(30),
    )
    .await;
    for i in 0..100 {
        propose(&nodes[leader].store, 1, &format!("put k{i} value-{i}")).await;
    }
    nodes[leader]
        .store
        .trigger_snapshot(GroupId(1))
        .await
        .unwrap();
    let leader_store = nodes[leader].store.clone();
    leader_store
        .raft(GroupId(1))
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index() > 50),
            "purged behind the snapshot",
        )
        .await
        .unwrap();

    let listener = std::net::TcpListener::bind(&members[&behind_id]).unwrap();
    let back = start_peer_node(dir.path(), behind_id, &members, listener, &[1]).await;
    replicated(&back, 1, "k99", "value-99").await;
    assert_eq!(get(&back.store, 1, "k0").as_deref(), Some("value-0"));
    // It never builds snapshots itself (snapshot_every 0): this one came from the leader.
    // Metrics are published after the install is applied, so wait for them rather than peek.
    back.store
        .raft(GroupId(1))
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.snapshot.is_some(), "installed the leader's snapshot")
        .await
        .unwrap();
    back.stop().await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_groups_heartbeats_share_requests() {
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir().unwrap();
    let groups: Vec<u32> = (0..8).collect();
    let (nodes, _) = start_three_nodes(dir.path(), &groups).await;
    for group in &groups {
        agreed_leader(
            &nodes.iter().collect::<Vec<_>>(),
            *group,
            Duration::from_secs(30),
        )
        .await;
    }
    // Idle groups only heartbeat, each node hundreds a second: soon some share a request.
    let counts = || {
        nodes.iter().fold((0, 0), |(b, m), n| {
            let stats = &n.store.connections().batch_stats;
            (
                b + stats.batches.load(Ordering::Relaxed),
                m + stats.messages.load(Ordering::Relaxed),
            )
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (batches, messages) = counts();
        if messages > batches {
            eprintln!("{messages} messages in {batches} requests");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{messages} messages in {batches} requests: none shared a request"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_fenced_by_an_old_term_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_ready(opts(dir.path(), &[1], 0), Arc::new(KvApp::default())).await;
    let term = store.leader_term(GroupId(1)).unwrap();
    store
        .propose_in_term(GroupId(1), term, b"put k now".to_vec())
        .await
        .unwrap();
    match store
        .propose_in_term(GroupId(1), term - 1, b"put k stale".to_vec())
        .await
    {
        Err(ProposeError::NotLeader { .. }) => {}
        other => panic!("a proposal of an earlier term went through: {other:?}"),
    }
    assert_eq!(get(&store, 1, "k").as_deref(), Some("now"));
    store.shutdown().await.unwrap();
}
