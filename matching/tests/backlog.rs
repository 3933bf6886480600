//! The durable backlog through a real Raft group on RocksDB: adds are idempotent, FIFO per
//! queue, and what was added survives a reopen until it is completed.

use std::{sync::Arc, time::Duration};

use dura_matching::{
    TaskKind, TaskQueueKey,
    backlog::{self, BacklogCommand, BacklogReply},
};
use dura_raft_store::{Application, ApplyTxn, Durability, GroupId, RaftStore, StoreOptions};

struct BacklogApp;

impl Application for BacklogApp {
    fn apply(&self, _: GroupId, _: u64, command: &[u8], txn: &mut ApplyTxn<'_>) -> Vec<u8> {
        let command: BacklogCommand = bincode::deserialize(command).unwrap();
        bincode::serialize(&backlog::apply(txn, command)).unwrap()
    }
    fn on_snapshot_installed(&self, _: GroupId) {}
}

const SHARD: GroupId = GroupId(1);

async fn open(dir: &std::path::Path) -> RaftStore {
    let opts = StoreOptions {
        dir: dir.to_path_buf(),
        node_id: 1,
        advertise_addr: "127.0.0.1:0".into(),
        initial_members: Default::default(),
        groups: vec![SHARD],
        placement: Default::default(),
        durability: Durability::Fsync,
        snapshot_every: 0,
        fault_injection: false,
        peer_tls: None,
    };
    let store = RaftStore::open(opts, Arc::new(BacklogApp)).await.unwrap();
    store
        .wait_for_leaders(Duration::from_secs(5))
        .await
        .unwrap();
    store
}

async fn run(store: &RaftStore, command: BacklogCommand) -> BacklogReply {
    let reply = store
        .propose(SHARD, bincode::serialize(&command).unwrap())
        .await
        .unwrap();
    bincode::deserialize(&reply).unwrap()
}

fn add(queue: &TaskQueueKey, task: &str) -> BacklogCommand {
    BacklogCommand::Add {
        queue: queue.clone(),
        task: task.as_bytes().to_vec(),
    }
}

fn queued(store: &RaftStore) -> Vec<(String, u64, String)> {
    backlog::scan(&store.reader(SHARD).unwrap())
        .unwrap()
        .into_iter()
        .map(|t| (t.queue.name, t.seq, String::from_utf8(t.task).unwrap()))
        .collect()
}

#[tokio::test]
async fn adds_are_idempotent_fifo_and_durable_until_completed() {
    let dir = tempfile::tempdir().unwrap();
    let a = TaskQueueKey::new("ns", "a", TaskKind::Activity);
    let b = TaskQueueKey::new("ns", "b", TaskKind::Workflow);
    {
        let store = open(dir.path()).await;
        assert_eq!(
            run(&store, add(&a, "t1")).await,
            BacklogReply::Added {
                seq: 1,
                fresh: true
            }
        );
        assert_eq!(
            run(&store, add(&b, "t2")).await,
            BacklogReply::Added {
                seq: 2,
                fresh: true
            }
        );
        assert_eq!(
            run(&store, add(&a, "t3")).await,
            BacklogReply::Added {
                seq: 3,
                fresh: true
            }
        );
        // The same task re-sent (an outbox record dispatched again after a crash).
        assert_eq!(
            run(&store, add(&a, "t1")).await,
            BacklogReply::Added {
                seq: 1,
                fresh: false
            }
        );
        store.shutdown().await.unwrap();
    }
    let store = open(dir.path()).await;
    assert_eq!(
        queued(&store),
        vec![
            ("a".into(), 1, "t1".into()),
            ("a".into(), 3, "t3".into()),
            ("b".into(), 2, "t2".into()),
        ]
    );
    let complete = BacklogCommand::Complete(vec![(a.clone(), 1), (a.clone(), 99)]);
    assert_eq!(run(&store, complete).await, BacklogReply::Completed);
    assert_eq!(
        queued(&store),
        vec![("a".into(), 3, "t3".into()), ("b".into(), 2, "t2".into())]
    );
    // Completed tasks are forgotten, so the same bytes queue again as a new task.
    assert_eq!(
        run(&store, add(&a, "t1")).await,
        BacklogReply::Added {
            seq: 4,
            fresh: true
        }
    );
    // Closed before the runtime goes: RocksDB torn down by process exit instead may abort.
    store.shutdown().await.unwrap();
}
