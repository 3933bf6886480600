//! Crash points chosen by the test, not by luck: a failpoint fails the storage step a crash
//! could interrupt, which stops the group as a crash would, and the store is reopened on the
//! same directory. Whatever was committed comes back exactly once; whatever was half done is
//! redone or discarded, and the group keeps working.
//!
//! - `apply-before-write`: an entry is in the durable log, its effects not yet in the state.
//! - `snapshot-build-mid`: a snapshot file is written but not yet made the group's snapshot.
//! - `purge-before-write`: a snapshot is stored, the log behind it not yet purged.
//!
//! Its own test binary: failpoints are process-wide. Each test holds a `fail::FailScenario`,
//! which serializes them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dura_raft_store::{
    Application, ApplyTxn, Durability, GroupId, ProposeError, RaftStore, StoreOptions,
};

const GROUP: GroupId = GroupId(1);
/// Generous: a step that takes longer on a loaded machine is hung, not slow.
const DEADLINE: Duration = Duration::from_secs(60);

/// `put K V` stores V under K; `incr K` adds one to the counter K and returns it. Every
/// command also appends its log index to the key `applied`, so a double apply shows.
struct CounterApp;

impl Application for CounterApp {
    fn apply(&self, _: GroupId, index: u64, command: &[u8], txn: &mut ApplyTxn<'_>) -> Vec<u8> {
        let mut applied = txn.get(b"applied").unwrap_or_default();
        applied.extend_from_slice(format!("{index},").as_bytes());
        txn.put(b"applied", &applied);
        let text = String::from_utf8_lossy(command).into_owned();
        match text.split(' ').collect::<Vec<_>>().as_slice() {
            ["put", key, value] => {
                txn.put(key.as_bytes(), value.as_bytes());
                Vec::new()
            }
            ["incr", key] => {
                let n: u64 = txn
                    .get(key.as_bytes())
                    .map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap());
                let next = (n + 1).to_string();
                txn.put(key.as_bytes(), next.as_bytes());
                next.into_bytes()
            }
            other => panic!("unknown command {other:?}"),
        }
    }

    fn on_snapshot_installed(&self, _: GroupId) {}
}

async fn open(dir: &Path) -> RaftStore {
    let store = RaftStore::open(
        StoreOptions {
            dir: dir.to_path_buf(),
            node_id: 1,
            advertise_addr: "127.0.0.1:7234".into(),
            initial_members: Default::default(),
            groups: vec![GROUP],
            placement: Default::default(),
            durability: Durability::Fsync,
            snapshot_every: 0,
            fault_injection: false,
            peer_tls: None,
        },
        Arc::new(CounterApp),
    )
    .await
    .unwrap();
    store.wait_for_leaders(DEADLINE).await.unwrap();
    store
}

async fn propose(store: &RaftStore, command: &str) -> Result<String, ProposeError> {
    let reply = tokio::time::timeout(DEADLINE, store.propose(GROUP, command.as_bytes().into()))
        .await
        .unwrap_or_else(|_| panic!("proposal {command:?} hung"))?;
    Ok(String::from_utf8(reply).unwrap())
}

fn get(store: &RaftStore, key: &str) -> Option<String> {
    let value = store.reader(GROUP).unwrap().get(key.as_bytes()).unwrap()?;
    Some(String::from_utf8(value).unwrap())
}

/// The log indexes applied so far, each once.
fn applied_once(store: &RaftStore) -> Vec<u64> {
    let applied: Vec<u64> = get(store, "applied")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let mut unique = applied.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique, applied,
        "an entry was applied twice or out of order"
    );
    applied
}

/// Proposes until the group, stopped by the failpoint, refuses: the interrupted step has run.
async fn until_refused(store: &RaftStore) -> ProposeError {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match propose(store, "put probe x").await {
            Ok(_) => {}
            Err(refused) => return refused,
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group kept working"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn is_unavailable(refused: &ProposeError) -> bool {
    matches!(refused, ProposeError::Unavailable { group, .. } if *group == GROUP)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_entry_whose_apply_was_interrupted_is_applied_once_on_reopen() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for expected in ["1", "2", "3"] {
        assert_eq!(propose(&store, "incr n").await.unwrap(), expected);
    }
    let before = applied_once(&store).len();

    fail::cfg("apply-before-write", "return").unwrap();
    let refused = propose(&store, "incr n").await.unwrap_err();
    assert!(is_unavailable(&refused), "{refused:?}");
    // Nothing of the entry reached the state.
    assert_eq!(get(&store, "n").as_deref(), Some("3"));
    fail::remove("apply-before-write");
    let _ = store.shutdown().await;

    // Reopened, the entry is in the log and committed: applied now, and only now.
    let store = open(dir.path()).await;
    assert_eq!(get(&store, "n").as_deref(), Some("4"));
    assert_eq!(applied_once(&store).len(), before + 1);
    assert_eq!(propose(&store, "incr n").await.unwrap(), "5");
    store.shutdown().await.unwrap();
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_build_is_discarded_and_the_next_one_is_kept() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..50 {
        propose(&store, &format!("put k{i} v{i}")).await.unwrap();
    }

    fail::cfg("snapshot-build-mid", "return").unwrap();
    let interrupted = store.trigger_snapshot(GROUP).await.unwrap_err();
    assert!(
        matches!(interrupted, dura_raft_store::Error::Raft(_)),
        "{interrupted:?}"
    );
    let _ = until_refused(&store).await;
    fail::remove("snapshot-build-mid");
    let _ = store.shutdown().await;
    // Where the crash left it: a half-built file, no snapshot.
    let files = snapshot_files(dir.path());
    assert!(
        files.len() == 1 && files[0].starts_with("tmp-"),
        "{files:?}"
    );

    let store = open(dir.path()).await;
    assert_eq!(snapshot_files(dir.path()), Vec::<String>::new());
    for i in 0..50 {
        assert_eq!(get(&store, &format!("k{i}")), Some(format!("v{i}")));
    }
    applied_once(&store);
    store.trigger_snapshot(GROUP).await.unwrap();
    let files = snapshot_files(dir.path());
    assert!(files.len() == 1 && files[0].starts_with("g1-"), "{files:?}");
    store.shutdown().await.unwrap();
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_purge_keeps_the_log_and_the_next_purge_goes_through() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Beyond the entries kept behind a snapshot, so the snapshot is followed by a purge.
    for i in 0..100 {
        propose(&store, &format!("put k{i} v{i}")).await.unwrap();
    }

    fail::cfg("purge-before-write", "return").unwrap();
    store.trigger_snapshot(GROUP).await.unwrap();
    let refused = until_refused(&store).await;
    assert!(is_unavailable(&refused), "{refused:?}");
    fail::remove("purge-before-write");
    let _ = store.shutdown().await;

    // The snapshot and the unpurged log agree: everything acknowledged is there, once.
    let store = open(dir.path()).await;
    for i in 0..100 {
        assert_eq!(get(&store, &format!("k{i}")), Some(format!("v{i}")));
    }
    applied_once(&store);
    for i in 100..200 {
        propose(&store, &format!("put k{i} v{i}")).await.unwrap();
    }
    store.trigger_snapshot(GROUP).await.unwrap();
    store.shutdown().await.unwrap();

    // Snapshot plus purged log: still everything, still once.
    let store = open(dir.path()).await;
    for i in 0..200 {
        assert_eq!(get(&store, &format!("k{i}")), Some(format!("v{i}")));
    }
    applied_once(&store);
    store.shutdown().await.unwrap();
    scenario.teardown();
}
