//! [`RaftStore`]: the node's raft groups, their lifecycle and leadership tracking.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::RaftMetrics;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::errors::InitializeError;
use openraft::errors::RaftError;
use tokio::sync::watch;

use crate::Application;
use crate::Durability;
use crate::Error;
use crate::GroupId;
use crate::GroupView;
use crate::ProposeError;
use crate::StateReader;
use crate::StoreOptions;
use crate::config::raft_config;
use crate::db::DbSlot;
use crate::db::flush_all;
use crate::db::open_db;
use crate::db::wait_sole_owner;
use crate::log_store::LogStore;
use crate::peer::PeerConnections;
use crate::peer::PeerNetwork;
use crate::state_machine::StateMachine;
use crate::types::C;
use crate::types::Command;
use crate::types::Raft;
use crate::writer::Writer;

/// How long `shutdown` waits for in-flight storage calls to release the database.
const RELEASE_DB_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `trigger_snapshot` waits for the snapshot to be built.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The raft groups of this node, all stored in one RocksDB. Cheap to clone (shared handle).
///
/// Call [`RaftStore::shutdown`] before dropping the last handle: it stops the groups and closes
/// RocksDB. Without it, the groups' background tasks keep running (and keep the database open)
/// until the tokio runtime shuts down.
#[derive(Clone)]
pub struct RaftStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) node_id: u64,
    /// The connections to the peers, shared by every group (and forwarded proposals).
    pub(crate) connections: PeerConnections,
    db: Arc<DbSlot>,
    writer: Arc<Writer>,
    pub(crate) groups: BTreeMap<GroupId, Group>,
    /// Spreads leaderships over the voters (see `balance`).
    balancer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set by [`RaftStore::hand_off_leadership`]: this node is stopping and takes no group.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// Groups an operator moved here (`dura cluster transfer-leader`): the balancer leaves
    /// them where they were put, and balances with the others.
    pub(crate) pinned: std::sync::Mutex<BTreeSet<GroupId>>,
    /// Where the groups this node does not hold live (see `routes`).
    pub(crate) routes: crate::routes::Routes,
    /// How many groups the cluster has, held here or not: the balancer's measure of a share.
    pub(crate) cluster_groups: usize,
    /// `true` once shutdown has run.
    shut_down: tokio::sync::Mutex<bool>,
}

pub(crate) struct Group {
    pub(crate) raft: Raft,
    /// `Some(term)` while this node is the group's leader and has applied its term's first entry.
    pub(crate) leadership: watch::Receiver<Option<u64>>,
    status: watch::Receiver<GroupStatus>,
    monitor: Monitor,
}

/// The task mirroring a group's openraft metrics into its watches.
struct Monitor {
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    leadership: Arc<watch::Sender<Option<u64>>>,
    status: Arc<watch::Sender<GroupStatus>>,
}

impl Monitor {
    /// Stops mirroring and reports "not leader" from now on.
    async fn stop(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await; // cancelled
        }
        self.leadership.send_replace(None);
        self.status.send_replace(GroupStatus::default());
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct GroupStatus {
    /// The leader this node knows of.
    leader: Option<u64>,
    /// See [`Group::leadership`].
    ready_term: Option<u64>,
}

impl GroupStatus {
    /// The group has a leader, and if it is this node, this node is ready to serve.
    fn has_leader(&self, node_id: u64) -> bool {
        match self.leader {
            None => false,
            Some(l) if l == node_id => self.ready_term.is_some(),
            Some(_) => true,
        }
    }
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore")
            .field("node_id", &self.inner.node_id)
            .field("groups", &self.inner.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RaftStore {
    /// Opens (or creates) the store at `opts.dir` and starts one raft group per `opts.groups`.
    ///
    /// A group seen for the first time is initialized with `opts.initial_members` as its voters
    /// (this node alone when none are given); a group with state on disk recovers it
    /// (re-applying committed entries that the state machine had not durably applied) and takes
    /// part in an election again within one election timeout.
    pub async fn open(opts: StoreOptions, app: Arc<dyn Application>) -> Result<Self, Error> {
        let config = raft_config(opts.snapshot_every)?;
        let dir = opts.dir.clone();
        let db = tokio::task::spawn_blocking(move || {
            let db = open_db(&dir)?;
            crate::snapshot_file::remove_unfinished_builds(&db)?;
            Ok::<_, std::io::Error>(db)
        })
        .await
        .map_err(|e| Error::Storage(format!("open task failed: {e}")))?
        .map_err(|e| Error::Storage(format!("opening {}: {e}", opts.dir.display())))?;
        let slot = DbSlot::new(db);
        let writer = match slot.get().and_then(Writer::spawn) {
            Ok(w) => w,
            Err(e) => {
                drop(slot.take());
                return Err(e.into());
            }
        };

        let sync_appends = opts.durability == Durability::Fsync;
        let wanted: BTreeSet<GroupId> = opts.groups.iter().copied().collect();
        let mut groups: BTreeMap<GroupId, Group> = BTreeMap::new();
        let connections = PeerConnections::new(
            opts.node_id,
            crate::faults::Faults::new(opts.fault_injection),
            opts.peer_tls.clone(),
        );
        for group in wanted {
            let network = PeerNetwork {
                group,
                connections: connections.clone(),
            };
            let res = open_group(
                group,
                &opts,
                &config,
                &slot,
                &writer,
                &app,
                network,
                sync_appends,
            )
            .await;
            match res {
                Ok(g) => {
                    groups.insert(group, g);
                }
                Err(e) => {
                    if let Err(te) = teardown(&groups, &writer, &slot).await {
                        tracing::error!("teardown after failed open: {te}");
                    }
                    return Err(e);
                }
            }
        }

        let store = Self {
            inner: Arc::new(Inner {
                node_id: opts.node_id,
                connections,
                db: slot,
                writer,
                groups,
                balancer: std::sync::Mutex::new(None),
                draining: std::sync::atomic::AtomicBool::new(false),
                pinned: Default::default(),
                cluster_groups: opts.placement.len().max(opts.groups.len()),
                routes: crate::routes::Routes::new(opts.placement.clone()),
                shut_down: tokio::sync::Mutex::new(false),
            }),
        };
        let balancer = tokio::spawn(crate::balance::run(Arc::downgrade(&store.inner)));
        // Back after a stop: peers may hand this node groups again.
        tokio::spawn({
            let store = store.clone();
            async move { store.tell_peers_draining(false).await }
        });
        *store
            .inner
            .balancer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(balancer);
        Ok(store)
    }

    fn group(&self, group: GroupId) -> Option<&Group> {
        self.inner.groups.get(&group)
    }

    pub(crate) fn connections(&self) -> &PeerConnections {
        &self.inner.connections
    }

    /// The peer address of `node` as `group`'s membership records it (the metadata group's,
    /// which every member holds, for a group this node holds no replica of).
    pub(crate) fn peer_address(&self, group: GroupId, node: u64) -> Option<String> {
        let Some(g) = self.group(group) else {
            return self.peer_addresses().remove(&node);
        };
        let raft = &g.raft;
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        m.membership_config.get_node(&node).map(|n| n.addr.clone())
    }

    /// What this node knows of each of its groups, from its own Raft metrics.
    pub fn group_views(&self) -> Vec<GroupView> {
        self.inner
            .groups
            .iter()
            .map(|(id, g)| {
                let metrics = g.raft.metrics();
                let m = metrics.borrow_watched();
                let last = m.last_log_index.unwrap_or(0);
                GroupView {
                    group: *id,
                    leader: m.current_leader,
                    term: m.current_term,
                    voters: m.membership_config.membership().voter_ids().collect(),
                    applied: m.last_applied.as_ref().map_or(0, |l| l.index()),
                    committed: m.local_committed.as_ref().map_or(0, |l| l.index()),
                    last_log: last,
                    snapshot: m.snapshot.as_ref().map_or(0, |l| l.index()),
                    lag: m.replication.as_ref().map(|r| {
                        r.iter()
                            .map(|(node, matched)| {
                                let matched = matched.as_ref().map_or(0, |l| l.index());
                                (*node, last.saturating_sub(matched))
                            })
                            .filter(|(node, _)| *node != self.inner.node_id)
                            .collect()
                    }),
                }
            })
            .collect()
    }

    /// RocksDB's own numbers for the node's database (sizes, memtables, compaction debt, write
    /// stalls), each summed over the column families; empty once the store is shut down.
    pub fn rocksdb_properties(&self) -> Vec<(&'static str, u64)> {
        crate::db::properties(&self.inner.db)
    }

    /// The peer address of every voter of the metadata group, by node id.
    pub fn peer_addresses(&self) -> BTreeMap<u64, String> {
        let Some(g) = self.group(GroupId::META) else {
            return BTreeMap::new();
        };
        let metrics = g.raft.metrics();
        let m = metrics.borrow_watched();
        m.membership_config
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect()
    }

    /// Whether this node is `group`'s only voter (a dev server's groups).
    pub(crate) fn is_sole_voter(&self, group: GroupId) -> bool {
        let Some(g) = self.group(group) else {
            return false;
        };
        let metrics = g.raft.metrics();
        let m = metrics.borrow_watched();
        let mut voters = m.membership_config.membership().voter_ids();
        voters.next() == Some(self.inner.node_id) && voters.next().is_none()
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// The leader of `group` this node knows of (possibly itself), if any.
    pub fn leader_of(&self, group: GroupId) -> Option<u64> {
        self.group(group).and_then(|g| g.status.borrow().leader)
    }

    /// The openraft instance of `group`, for the peer service.
    pub(crate) fn raft_of(&self, group: GroupId) -> Option<&Raft> {
        self.group(group).map(|g| &g.raft)
    }

    /// Proposes `command` to `group` and returns what [`Application::apply`] returned for it,
    /// once the entry is committed (durable per [`Durability`]) and applied.
    pub async fn propose(&self, group: GroupId, command: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let g = self.group(group).ok_or(ProposeError::UnknownGroup(group))?;
        let started = std::time::Instant::now();
        let written = g.raft.client_write(Command(command)).await;
        crate::metrics::PROPOSAL_SECONDS.observe(started.elapsed().as_secs_f64());
        match written {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    group,
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ProposeError::Unavailable {
                group,
                reason: e.to_string(),
            }),
        }
    }

    /// Proposes `command` only if this node leads `group` in `term`, and never elsewhere: the
    /// fence for a leader's own work. A deposed leader's late proposal is refused (`NotLeader`)
    /// instead of being handed to the new leader, which rebuilt that work from state.
    pub async fn propose_in_term(
        &self,
        group: GroupId,
        term: u64,
        command: Vec<u8>,
    ) -> Result<Vec<u8>, ProposeError> {
        if self.leader_term(group) != Some(term) {
            return Err(ProposeError::NotLeader {
                group,
                leader: self.leader_of(group),
            });
        }
        self.propose(group, command).await
    }

    /// A reader of `group`'s applied state.
    pub fn reader(&self, group: GroupId) -> Result<StateReader, Error> {
        if !self.inner.groups.contains_key(&group) {
            return Err(Error::UnknownGroup(group));
        }
        Ok(StateReader::new(self.inner.db.clone(), group))
    }

    /// The groups this node hosts, ascending.
    pub fn groups(&self) -> Vec<GroupId> {
        self.inner.groups.keys().copied().collect()
    }

    /// `Some(term)` when this node is `group`'s leader in `term` and has applied every entry
    /// committed before it took over (its term's first entry); `None` otherwise.
    pub fn leader_term(&self, group: GroupId) -> Option<u64> {
        self.group(group).and_then(|g| *g.leadership.borrow())
    }

    /// A watch of [`RaftStore::leader_term`] for `group`.
    pub fn watch_leadership(
        &self,
        group: GroupId,
    ) -> Result<tokio::sync::watch::Receiver<Option<u64>>, Error> {
        self.group(group)
            .map(|g| g.leadership.clone())
            .ok_or(Error::UnknownGroup(group))
    }

    /// Waits until every group has a leader (when the leader is this node: until
    /// [`RaftStore::leader_term`] is `Some`).
    pub async fn wait_for_leaders(&self, timeout: std::time::Duration) -> Result<(), Error> {
        let node_id = self.inner.node_id;
        let wait_all = async {
            for g in self.inner.groups.values() {
                let mut rx = g.status.clone();
                if rx.wait_for(|s| s.has_leader(node_id)).await.is_err() {
                    return Err(Error::Raft("raft group stopped".to_string()));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, wait_all).await {
            Ok(res) => res,
            Err(_) => {
                let missing: Vec<GroupId> = self
                    .inner
                    .groups
                    .iter()
                    .filter(|(_, g)| !g.status.borrow().has_leader(node_id))
                    .map(|(id, _)| *id)
                    .collect();
                Err(Error::Raft(format!(
                    "timed out after {timeout:?} waiting for leaders of groups {missing:?}"
                )))
            }
        }
    }

    /// For a graceful stop: hands every group this node leads to a caught-up voter and waits,
    /// up to `timeout`, until it leads none, so clients see no election timeout. From now on
    /// this node refuses leadership transfers to itself and stops balancing. One-voter groups
    /// (start-dev) stay as they are.
    pub async fn hand_off_leadership(&self, timeout: Duration) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
        // Peers hand nothing to a node that is stopping.
        self.tell_peers_draining(true).await;
        let me = self.inner.node_id;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut leading = 0;
            for (id, g) in &self.inner.groups {
                if g.status.borrow().leader != Some(me) || self.is_sole_voter(*id) {
                    continue;
                }
                leading += 1;
                let targets = crate::balance::caught_up_voters(&g.raft, me, self.connections());
                if let Some(to) = targets.first() {
                    let _ = g.raft.trigger().transfer_leader(*to).await;
                }
            }
            if leading == 0 || tokio::time::Instant::now() >= deadline {
                if leading > 0 {
                    tracing::warn!(leading, "stopping while still leading groups");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Records which cluster this node belongs to (its metadata group's cluster id). From
    /// then on its peer messages carry it and messages of another cluster are refused.
    pub fn set_cluster_id(&self, id: &str) {
        self.inner.connections.set_cluster_id(id);
    }

    /// Why this node refused a peer of another cluster, if it did.
    pub fn foreign_cluster(&self) -> Option<String> {
        self.inner.connections.foreign_cluster()
    }

    /// The file a snapshot of `group` sent by node `from` is received into.
    pub(crate) fn incoming_snapshot_path(
        &self,
        group: GroupId,
        from: u64,
    ) -> std::io::Result<std::path::PathBuf> {
        let db = self.inner.db.get()?;
        crate::snapshot_file::incoming_path(&db, group, from)
    }

    /// Keeps `group` from the balancer (see `balance`).
    pub(crate) fn pin(&self, group: GroupId) {
        self.inner
            .pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group);
    }

    /// Whether this node is stopping (see [`RaftStore::hand_off_leadership`]).
    pub(crate) fn is_draining(&self) -> bool {
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Builds a snapshot of `group` covering at least everything applied so far, and waits until
    /// it exists (the log behind it is then purged asynchronously).
    pub async fn trigger_snapshot(&self, group: GroupId) -> Result<(), Error> {
        let raft = &self.group(group).ok_or(Error::UnknownGroup(group))?.raft;
        let target = {
            let metrics = raft.metrics();
            let m = metrics.borrow_watched();
            m.last_applied.as_ref().map(|l| l.index())
        };
        let Some(target) = target else {
            return Ok(()); // nothing applied, nothing to snapshot
        };
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Raft(format!("group {group}: trigger snapshot: {e}")))?;
        raft.wait(Some(SNAPSHOT_TIMEOUT))
            .metrics(
                |m| m.snapshot.as_ref().is_some_and(|s| s.index() >= target),
                format!("group {group}: snapshot at index >= {target}"),
            )
            .await
            .map_err(|e| Error::Raft(format!("group {group}: waiting for snapshot: {e}")))?;
        Ok(())
    }

    /// Stops every group, stops the log writer, flushes RocksDB (WAL and memtables) and closes it.
    /// Afterwards every call fails and the directory can be opened again. Idempotent.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let mut shut_down = self.inner.shut_down.lock().await;
        if *shut_down {
            return Ok(());
        }
        *shut_down = true;
        let balancer = self
            .inner
            .balancer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(balancer) = balancer {
            balancer.abort();
            let _ = balancer.await;
        }
        teardown(&self.inner.groups, &self.inner.writer, &self.inner.db).await
    }

    #[cfg(test)]
    pub(crate) fn raft(&self, group: GroupId) -> &Raft {
        &self.inner.groups[&group].raft
    }

    #[cfg(test)]
    pub(crate) fn writer_stats(&self) -> &crate::writer::WriterStats {
        &self.inner.writer.stats
    }
}

async fn open_group(
    group: GroupId,
    opts: &StoreOptions,
    config: &Arc<openraft::Config>,
    slot: &Arc<DbSlot>,
    writer: &Arc<Writer>,
    app: &Arc<dyn Application>,
    network: PeerNetwork,
    sync_appends: bool,
) -> Result<Group, Error> {
    let log_store = LogStore::open(group, slot.clone(), writer.clone(), sync_appends)?;
    let sm = StateMachine::open(group, slot.clone(), app.clone())?;
    let raft = Raft::new(opts.node_id, config.clone(), network, log_store, sm)
        .await
        .map_err(|e| Error::Raft(format!("group {group}: starting raft: {e}")))?;

    if let Err(e) = initialize_if_new(group, &raft, opts).await {
        let _ = raft.shutdown().await;
        return Err(e);
    }

    let (monitor, leadership, status) = spawn_monitor(&raft, group, opts.node_id);
    Ok(Group {
        raft,
        leadership,
        status,
        monitor,
    })
}

/// First open of a group: make it a cluster of the initial members that hold it (this node
/// alone when none are given). Every initial member does this with the same members, which openraft allows:
/// they all start from the same membership entry, and one election decides the leader.
async fn initialize_if_new(group: GroupId, raft: &Raft, opts: &StoreOptions) -> Result<(), Error> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| Error::Raft(format!("group {group}: {e}")))?;
    if initialized {
        return Ok(());
    }
    let placed = opts.placement.get(&group);
    let mut nodes: BTreeMap<u64, BasicNode> = opts
        .initial_members
        .iter()
        .filter(|(id, _)| placed.is_none_or(|replicas| replicas.contains(id)))
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    nodes
        .entry(opts.node_id)
        .or_insert_with(|| BasicNode::new(&opts.advertise_addr));
    match raft.initialize(nodes).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(Error::Raft(format!("group {group}: initialize: {e}"))),
    }
}

fn status_of(m: &RaftMetrics<C>, node_id: u64) -> GroupStatus {
    if m.running_state.is_err() {
        return GroupStatus::default();
    }
    let is_leader = m.state == ServerState::Leader && m.current_leader == Some(node_id);
    let caught_up = m
        .last_applied
        .as_ref()
        .is_some_and(|l| l.committed_leader_id().term == m.current_term);
    GroupStatus {
        leader: m.current_leader,
        ready_term: (is_leader && caught_up).then_some(m.current_term),
    }
}

/// Mirrors the group's openraft metrics into the leadership watches until the group stops.
fn spawn_monitor(
    raft: &Raft,
    group: GroupId,
    node_id: u64,
) -> (
    Monitor,
    watch::Receiver<Option<u64>>,
    watch::Receiver<GroupStatus>,
) {
    let mut metrics = raft.metrics();
    let (lead_tx, lead_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(GroupStatus::default());
    let lead_tx = Arc::new(lead_tx);
    let status_tx = Arc::new(status_tx);
    let (task_lead_tx, task_status_tx) = (lead_tx.clone(), status_tx.clone());
    let task = tokio::spawn(async move {
        loop {
            let status = status_of(&metrics.borrow_watched(), node_id);
            let led = status.ready_term;
            if task_lead_tx.send_if_modified(|cur| replace_if_changed(cur, led)) && led.is_some() {
                crate::metrics::LEADERSHIPS_TAKEN
                    .with_label_values(&[&group.0.to_string()])
                    .inc();
            }
            task_status_tx.send_if_modified(|cur| replace_if_changed(cur, status));
            if metrics.changed().await.is_err() {
                break;
            }
        }
        task_lead_tx.send_replace(None);
        task_status_tx.send_replace(GroupStatus::default());
    });
    let monitor = Monitor {
        task: std::sync::Mutex::new(Some(task)),
        leadership: lead_tx,
        status: status_tx,
    };
    (monitor, lead_rx, status_rx)
}

fn replace_if_changed<T: PartialEq>(cur: &mut T, new: T) -> bool {
    if *cur == new {
        false
    } else {
        *cur = new;
        true
    }
}

/// Stops the groups (leadership reads `None` from here on), the writer, and closes the database
/// (flushing it first).
async fn teardown(
    groups: &BTreeMap<GroupId, Group>,
    writer: &Arc<Writer>,
    slot: &Arc<DbSlot>,
) -> Result<(), Error> {
    for g in groups.values() {
        g.monitor.stop().await;
    }
    let results = futures::future::join_all(groups.values().map(|g| g.raft.shutdown())).await;
    for r in results {
        if let Err(e) = r {
            tracing::error!("raft group shutdown: {e}");
        }
    }

    let w = writer.clone();
    tokio::task::spawn_blocking(move || w.stop())
        .await
        .map_err(|e| Error::Storage(format!("stopping log writer: {e}")))?;

    let Some(db) = slot.take() else {
        return Ok(());
    };
    if !wait_sole_owner(&db, RELEASE_DB_TIMEOUT).await {
        tracing::warn!(
            "raft store: {} database references still held after {RELEASE_DB_TIMEOUT:?}; \
             the database stays open until they are released",
            Arc::strong_count(&db) - 1
        );
    }
    tokio::task::spawn_blocking(move || {
        let res = flush_all(&db);
        drop(db); // the last reference: closes RocksDB and releases its lock
        res
    })
    .await
    .map_err(|e| Error::Storage(format!("closing database: {e}")))??;
    Ok(())
}
