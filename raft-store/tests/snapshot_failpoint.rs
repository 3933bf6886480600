//! "Mid snapshot install": a follower that fell behind the leader's purged log receives a
//! snapshot, and its install is interrupted (failpoint `snapshot-install-mid`) after the
//! group's old state was deleted and before the file was ingested — where a crash would
//! leave it. Reopened, the node finishes the install from the file it kept, then catches up.
//!
//! Its own test binary: failpoints are process-wide, and other tests install snapshots too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dura_raft_store::{
    Application, ApplyTxn, Durability, GroupId, ProposeError, RaftStore, StoreOptions,
};

const GROUP: GroupId = GroupId(1);

/// `key=value` puts.
struct PutApp;

impl Application for PutApp {
    fn apply(
        &self,
        _group: GroupId,
        _index: u64,
        command: &[u8],
        txn: &mut ApplyTxn<'_>,
    ) -> Vec<u8> {
        let text = String::from_utf8_lossy(command);
        if let Some((key, value)) = text.split_once('=') {
            txn.put(key.as_bytes(), value.as_bytes());
        }
        Vec::new()
    }

    fn on_snapshot_installed(&self, _group: GroupId) {}
}

struct Node {
    store: RaftStore,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(dir: &Path, id: u64, members: &BTreeMap<u64, String>) -> Node {
    let store = RaftStore::open(
        StoreOptions {
            dir: dir.join(format!("node-{id}")),
            node_id: id,
            advertise_addr: members[&id].clone(),
            initial_members: members.clone(),
            groups: vec![GROUP],
            placement: Default::default(),
            durability: Durability::Fsync,
            snapshot_every: 20,
            fault_injection: false,
            peer_tls: None,
        },
        Arc::new(PutApp),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind(&members[&id]).await.unwrap();
    let service = store.peer_service();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    Node {
        store,
        stop,
        server,
    }
}

impl Node {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
        // A group whose install failed has stopped already; closing the store still works.
        let _ = self.store.shutdown().await;
    }

    fn get(&self, key: &str) -> Option<String> {
        let reader = self.store.reader(GROUP).ok()?;
        let value = reader.get(key.as_bytes()).ok()??;
        Some(String::from_utf8(value).unwrap())
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Node) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Proposes `command` through whichever node leads the group, following a change of leader:
/// a refusal (`NotLeader`) appended nothing, so trying again cannot apply it twice. A group
/// just formed may depose its first leader right after electing it.
async fn propose(nodes: &[Node], command: String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let node = &nodes[leader(nodes).await];
        let proposed = tokio::time::timeout(
            Duration::from_secs(60),
            node.store.propose(GROUP, command.clone().into_bytes()),
        )
        .await
        .unwrap_or_else(|_| panic!("proposal {command:?} hung"));
        match proposed {
            Ok(_) => return,
            Err(ProposeError::NotLeader { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("proposal {command:?}: {e}"),
        }
    }
}

async fn leader(nodes: &[Node]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(i) = (0..nodes.len()).find(|i| nodes[*i].store.leader_term(GROUP).is_some()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_install_finishes_when_the_node_reopens() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            (id, format!("127.0.0.1:{port}"))
        })
        .collect();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(dir.path(), id, &members).await);
    }
    for i in 0..5 {
        propose(&nodes, format!("k{i}=early")).await;
    }
    let behind = (leader(&nodes).await + 1) % 3;
    let behind_id = behind as u64 + 1;
    nodes[behind]
        .wait_for("it holds the early writes", |n| n.get("k4").is_some())
        .await;
    nodes.remove(behind).stop().await;

    // Far past the log the leader keeps behind its snapshots (every 20 entries).
    for i in 0..200 {
        propose(&nodes, format!("k{i}=v{i}")).await;
    }

    fail::cfg("snapshot-install-mid", "return").unwrap();
    let back = start(dir.path(), behind_id, &members).await;
    // The install began (the early state is gone) and stopped before the file went in.
    back.wait_for("the install was interrupted", |n| n.get("k0").is_none())
        .await;
    // And stays stopped: the failed install takes the group down on this node.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(back.get("k199"), None);
    fail::remove("snapshot-install-mid");
    back.stop().await;

    let back = start(dir.path(), behind_id, &members).await;
    back.wait_for("it caught up", |n| n.get("k199").as_deref() == Some("v199"))
        .await;
    for i in 0..200 {
        assert_eq!(back.get(&format!("k{i}")), Some(format!("v{i}")), "k{i}");
    }
    back.stop().await;
    for node in nodes {
        node.stop().await;
    }
    scenario.teardown();
}
