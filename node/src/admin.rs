//! `dura cluster status` and `dura cluster transfer-leader`.
//!
//! Status is the cluster as its nodes see it. The node the CLI reaches (on its client port)
//! asks every member (on its peer port, which serves `dura.admin.ClusterAdmin` too) for its
//! own view of its groups and merges them: a group's line comes from the node that leads it,
//! which alone knows its followers' lag; a node that does not answer is unreachable.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context;

use dura_raft_store::{GroupId, GroupView, RaftStore};
use dura_tls::ClientTls;
use serde::{Deserialize, Serialize};

use crate::{cli::ClientConnection, namespace::NamespaceRegistry};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/dura.admin.ClusterAdmin.rs"));
}

pub use generated::cluster_admin_client::ClusterAdminClient;
use generated::cluster_admin_server::ClusterAdmin;
pub use generated::cluster_admin_server::ClusterAdminServer;

/// How long the CLI waits to reach the node it was pointed at.
const CLI_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the answering node waits for each other node's view.
const PEER_VIEW_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {
    /// Only this node's own view (what one node asks the others).
    #[prost(bool, tag = "1")]
    pub local_only: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusReply {
    /// [`ClusterStatus`] (or, for `local_only`, a [`NodeView`]) as JSON.
    #[prost(string, tag = "1")]
    pub json: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TransferLeaderRequest {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    #[prost(uint64, tag = "2")]
    pub to: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TransferLeaderReply {}

/// How long a transfer may take before the CLI hears it failed.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// One node's own view.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeView {
    pub node_id: u64,
    pub groups: Vec<GroupView>,
    /// The highest version of shard log entries the node reads (earlier builds say nothing:
    /// they read version 1).
    #[serde(default = "first_entry_version")]
    pub reads_entries: u8,
}

fn first_entry_version() -> u8 {
    1
}

/// How often a node asks the members what they read until all read what it would write.
const ENTRY_FORMAT_EVERY: Duration = Duration::from_secs(5);

/// What `dura cluster status --output json` prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub nodes: Vec<NodeStatus>,
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub client_address: String,
    pub peer_address: String,
    pub reachable: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GroupStatus {
    pub id: u32,
    pub kind: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: Vec<u64>,
    pub applied: u64,
    /// Follower id → entries behind the leader; empty when no leader answered.
    pub lag: BTreeMap<String, u64>,
}

#[derive(Clone)]
pub struct AdminService {
    pub store: RaftStore,
    pub namespaces: NamespaceRegistry,
    /// How this node reaches the other nodes' peer ports.
    pub peer_tls: Option<ClientTls>,
}

impl AdminService {
    fn local(&self) -> NodeView {
        NodeView {
            node_id: self.store.node_id(),
            groups: self.store.group_views(),
            reads_entries: crate::shard::ENTRY_VERSION,
        }
    }

    /// Lets `engine` write each log entry version once every member says it reads it; until
    /// `stop`. A member that does not answer is asked again: it may be of an earlier build.
    pub async fn learn_entry_format(
        self,
        engine: crate::engine::Engine,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let me = self.store.node_id();
        loop {
            let mut all_read = crate::shard::ENTRY_VERSION;
            for (id, peer_address) in self.store.peer_addresses() {
                if id == me {
                    continue;
                }
                // Not answering: ask again, and write what all the others read meanwhile.
                let reads = self
                    .view_of(&peer_address)
                    .await
                    .map_or(1, |v| v.reads_entries);
                all_read = all_read.min(reads);
            }
            engine.entry_format().allow(all_read);
            if all_read >= crate::shard::ENTRY_VERSION {
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(ENTRY_FORMAT_EVERY) => {}
            }
        }
    }

    async fn view_of(&self, peer_address: &str) -> Option<NodeView> {
        let channel = dura_tls::connect(peer_address, self.peer_tls.as_ref(), PEER_VIEW_TIMEOUT)
            .await
            .ok()?;
        let mut request = tonic::Request::new(StatusRequest { local_only: true });
        request.set_timeout(PEER_VIEW_TIMEOUT);
        let reply = ClusterAdminClient::new(channel)
            .status(request)
            .await
            .ok()?;
        serde_json::from_str(&reply.into_inner().json).ok()
    }

    async fn cluster(&self) -> ClusterStatus {
        let me = self.store.node_id();
        let mut nodes = Vec::new();
        let mut views = vec![];
        for (id, peer_address) in self.store.peer_addresses() {
            let client_address = self
                .namespaces
                .node_client_address(id)
                .ok()
                .flatten()
                .unwrap_or_default();
            let view = if id == me {
                Some(self.local())
            } else {
                self.view_of(&peer_address).await
            };
            nodes.push(NodeStatus {
                id,
                client_address,
                peer_address,
                reachable: view.is_some(),
            });
            views.extend(view);
        }
        // Every group some reachable node holds (with fewer replicas than members, this node
        // holds only some of them).
        let ids: std::collections::BTreeSet<GroupId> = views
            .iter()
            .flat_map(|v| v.groups.iter().map(|g| g.group))
            .collect();
        let groups = ids
            .into_iter()
            .filter_map(|id| {
                let views_of = || {
                    views
                        .iter()
                        .flat_map(|v| v.groups.iter().map(move |g| (v, g)))
                };
                // The leader's own view when it answered; else the freshest one.
                let led = views_of()
                    .filter(|(v, g)| g.group == id && g.leader == Some(v.node_id))
                    .map(|(_, g)| g)
                    .max_by_key(|g| g.term);
                let view = led.or_else(|| {
                    views_of()
                        .filter(|(_, g)| g.group == id)
                        .map(|(_, g)| g)
                        .max_by_key(|g| (g.term, g.applied))
                })?;
                Some(GroupStatus {
                    id: view.group.0,
                    kind: if view.group == GroupId::META {
                        "meta".into()
                    } else {
                        "shard".into()
                    },
                    leader: view.leader,
                    term: view.term,
                    voters: view.voters.clone(),
                    applied: view.applied,
                    lag: view
                        .lag
                        .iter()
                        .flatten()
                        .map(|(node, lag)| (node.to_string(), *lag))
                        .collect(),
                })
            })
            .collect();
        ClusterStatus {
            cluster_id: self.namespaces.cluster_id().unwrap_or_default(),
            nodes,
            groups,
        }
    }
}

#[tonic::async_trait]
impl ClusterAdmin for AdminService {
    async fn status(
        &self,
        request: tonic::Request<StatusRequest>,
    ) -> Result<tonic::Response<StatusReply>, tonic::Status> {
        let json = if request.get_ref().local_only {
            serde_json::to_string(&self.local())
        } else {
            serde_json::to_string(&self.cluster().await)
        }
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(tonic::Response::new(StatusReply { json }))
    }

    async fn transfer_leader(
        &self,
        request: tonic::Request<TransferLeaderRequest>,
    ) -> Result<tonic::Response<TransferLeaderReply>, tonic::Status> {
        let TransferLeaderRequest { group, to } = request.into_inner();
        let group = GroupId(group);
        let view = self
            .store
            .group_views()
            .into_iter()
            .find(|v| v.group == group)
            .ok_or_else(|| tonic::Status::not_found(format!("no group {group}")))?;
        if !view.voters.contains(&to) {
            return Err(tonic::Status::invalid_argument(format!(
                "node {to} is not a voter of group {group} (voters {:?})",
                view.voters
            )));
        }
        self.store
            .transfer_leader(group, to, TRANSFER_TIMEOUT)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(tonic::Response::new(TransferLeaderReply {}))
    }
}

/// A channel to the node the CLI was pointed at, over TLS when a CA is given.
async fn connect(connection: &ClientConnection) -> anyhow::Result<tonic::transport::Channel> {
    let tls = match &connection.tls_ca_path {
        Some(ca) => Some(ClientTls::new(
            ca.clone(),
            connection
                .tls_cert_path
                .clone()
                .zip(connection.tls_key_path.clone())
                .map(|(cert, key)| dura_tls::Identity { cert, key }),
            connection.tls_server_name.clone(),
        )?),
        None => None,
    };
    let address = &connection.address;
    dura_tls::connect(address, tls.as_ref(), CLI_CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("connecting to {address}"))
}

/// `message` with the connection's API key, if any, as `authorization: Bearer`.
fn authorized<T>(connection: &ClientConnection, message: T) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = &connection.api_key {
        let value = format!("Bearer {key}")
            .parse()
            .context("--api-key is not a valid header value")?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// `dura cluster transfer-leader`: moves `group`'s leadership to node `to` and waits until
/// it leads.
pub async fn transfer_leader(
    connection: &ClientConnection,
    group: u32,
    to: u64,
) -> anyhow::Result<()> {
    let mut client = ClusterAdminClient::new(connect(connection).await?);
    client
        .transfer_leader(authorized(connection, TransferLeaderRequest { group, to })?)
        .await?;
    println!("group {group} is led by node {to}");
    Ok(())
}

/// `dura cluster status`: prints the cluster as the node at `address` gathers it.
pub async fn print_status(connection: &ClientConnection, json: bool) -> anyhow::Result<()> {
    let mut client = ClusterAdminClient::new(connect(connection).await?);
    let reply = client
        .status(authorized(connection, StatusRequest { local_only: false })?)
        .await?
        .into_inner();
    if json {
        println!("{}", reply.json);
        return Ok(());
    }
    let status: ClusterStatus = serde_json::from_str(&reply.json)?;
    println!("cluster {}", status.cluster_id);
    for n in &status.nodes {
        println!(
            "node {}  client {}  peer {}  {}",
            n.id,
            n.client_address,
            n.peer_address,
            if n.reachable {
                "reachable"
            } else {
                "UNREACHABLE"
            }
        );
    }
    for g in &status.groups {
        let leader = g.leader.map_or("none".to_string(), |l| l.to_string());
        println!(
            "group {:>3} {:<5} leader {:<4} term {:<4} voters {:?} applied {} lag {:?}",
            g.id, g.kind, leader, g.term, g.voters, g.applied, g.lag
        );
    }
    Ok(())
}
