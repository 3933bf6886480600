//! Wires one node: the Raft store, the state machine, and the gRPC frontend.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use dura_raft_store::{RaftStore, StoreOptions};
use dura_tls::{ClientTls, ServerTls};
use futures::FutureExt;
use tokio::net::TcpListener;
use tonic::{
    codec::CompressionEncoding,
    transport::{Server, server::TcpIncoming},
};

use crate::{
    app::NodeApplication,
    clock::{Clock, VirtualClock},
    config::NodeConfig,
    engine::Engine,
    frontend::{ClusterFacts, Forwarder, Frontend, NamespaceRateLimiter, RpcEdgeLayer, Workflows},
    grpc::{
        operatorservice::operator_service_server::OperatorServiceServer,
        testservice::test_service_server::TestServiceServer,
        workflowservice::workflow_service_server::WorkflowServiceServer,
    },
    leader::{AppliedEffects, ShardLeaders},
    metrics,
    namespace::{MetaCommand, NamespaceRecord, NamespaceRegistry},
    once_ready::OnceReady,
    placement::Placement,
    test_server::TestService,
};

/// The dev server's namespaces keep closed workflows for a day, like the real one's.
const DEV_NAMESPACE_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Temporal payloads may be large (2 MiB blobs, 40 MiB task completions); tonic's default is 4 MiB.
const MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;
/// How long a stopping node waits for its peers to take over the groups it leads.
const HAND_OFF_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open calls may take to finish after SIGTERM before the store is closed anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Remembers the shard count chosen when the database was created; it can never change.
const SHARDS_FILE: &str = "DURA_SHARDS";

/// The shard count is fixed at creation: a database created with N shards always has N.
fn shard_count(dir: &Path, requested: u32) -> anyhow::Result<u32> {
    let file = dir.join(SHARDS_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let stored: u32 = text
                .trim()
                .parse()
                .with_context(|| format!("corrupt {}", file.display()))?;
            if stored != requested {
                tracing::warn!(
                    stored,
                    requested,
                    "database was created with a different shard count; keeping it"
                );
            }
            Ok(stored)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(&file, format!("{requested}\n"))?;
            Ok(requested)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// The node's side of the cluster's mutual TLS: what its peer port presents and requires, and
/// what its channels to the other peer ports present and verify.
struct PeerCredentials {
    server: ServerTls,
    client: ClientTls,
}

/// Loads the TLS files the configuration names; a file that does not load stops the start.
fn load_tls(config: &NodeConfig) -> anyhow::Result<(Option<ServerTls>, Option<PeerCredentials>)> {
    let client_port = match &config.client_tls {
        Some(tls) => Some(
            ServerTls::new(tls.identity.clone(), tls.client_ca.clone())
                .context("loading the client port's TLS files")?,
        ),
        None => None,
    };
    let peer = match &config.peer_tls {
        Some(tls) => Some(PeerCredentials {
            server: ServerTls::new(tls.identity.clone(), Some(tls.ca.clone()))
                .context("loading the peer TLS files")?,
            client: ClientTls::new(tls.ca.clone(), Some(tls.identity.clone()), None)
                .context("loading the peer TLS files")?,
        }),
        None => None,
    };
    Ok((client_port, peer))
}

fn workflow_service(frontend: &Frontend) -> WorkflowServiceServer<Frontend> {
    WorkflowServiceServer::new(frontend.clone())
        // The SDKs' Rust core sends gzip-compressed requests.
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

fn operator_service(frontend: &Frontend) -> OperatorServiceServer<Frontend> {
    OperatorServiceServer::new(frontend.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// Temporal's HTTP API on `listen`: its calls reach the same services through the same edge
/// (authorization, rate limits, metrics) as the client port's, over the same TLS.
async fn serve_http_api(
    listen: SocketAddr,
    frontend: &Frontend,
    edge: RpcEdgeLayer,
    tls: Option<ServerTls>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let services = tonic::service::Routes::new(workflow_service(frontend))
        .add_service(operator_service(frontend));
    let grpc = tower::ServiceBuilder::new().layer(edge).service(services);
    let api = dura_http_api::HttpApi::new(grpc).context("reading the HTTP API's routes")?;
    let server = dura_http_api::HttpApiServer::bind(dura_http_api::HttpApiOptions { listen })
        .await
        .with_context(|| format!("binding the HTTP API port {listen}"))?;
    let bound = server.local_addr()?;
    let served = match tls {
        // The client port's certificates (and client CA), re-read when renewed alike.
        Some(tls) => server.run_with(|l| dura_tls::incoming(l, tls), api.router(), stop)?,
        None => server.run(api.router(), stop),
    };
    Ok((bound, served))
}

/// Runs one node — the single-node dev server, or a member of a cluster when the config has a
/// peer address — serving clients on `listener` until `shutdown` resolves.
pub async fn run_node(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (client_tls, peer_tls) = load_tls(&config)?;
    let authority = match &config.auth_jwks {
        Some(path) => {
            let mapper = crate::auth::JwtClaimMapper::from_jwks_file(path)
                .map_err(anyhow::Error::msg)
                .context("loading --auth-jwks")?;
            Some(crate::auth::Authority::new(Arc::new(mapper)))
        }
        None => None,
    };
    let peer_client_tls = peer_tls.as_ref().map(|tls| tls.client.clone());
    // Without --db-filename the state lives in a directory that is removed on exit.
    let temp_dir;
    let dir = match &config.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp_dir = match config.time_skipping {
                Some(_) => crate::test_server::state_dir()?,
                None => tempfile::Builder::new().prefix("dura-dev-").tempdir()?,
            };
            temp_dir.path().to_path_buf()
        }
    };
    let clock = match config.time_skipping {
        Some(unlocked) => Clock::Virtual(VirtualClock::new(unlocked)),
        None => Clock::Wall,
    };
    let shards = shard_count(&dir, config.shards)?;
    let listen: SocketAddr = listener.local_addr()?;
    let advertise_addr = match config.peer_listen {
        Some(_) => config.advertise_peer.clone(),
        None => listen.to_string(),
    };
    let effects = Arc::new(AppliedEffects::new(clock.clone()));
    let members: Vec<u64> = match config.initial_members.is_empty() {
        true => vec![config.node_id],
        false => config.initial_members.keys().copied().collect(),
    };
    let placement = Placement::keep(
        &dir,
        Placement::spread(&members, shards, config.replication),
    )?;
    let groups = placement.held_by(config.node_id);
    if groups.is_empty() {
        anyhow::bail!(
            "node {} is not a member of the cluster this data directory was created for",
            config.node_id
        );
    }
    let namespace_names = Arc::new(std::sync::OnceLock::new());
    let store = RaftStore::open(
        StoreOptions {
            dir: dir.join("rocksdb"),
            node_id: config.node_id,
            advertise_addr,
            initial_members: config.initial_members.clone(),
            groups,
            placement: placement.by_group(),
            durability: config.durability,
            snapshot_every: config.snapshot_every,
            fault_injection: config.fault_injection,
            peer_tls: peer_client_tls.clone(),
        },
        Arc::new(NodeApplication {
            effects: effects.clone(),
            clock: clock.clone(),
            namespaces: namespace_names.clone(),
        }),
    )
    .await
    .context("opening the Raft store")?;
    let namespaces = NamespaceRegistry::new(store.clone());
    let _ = namespace_names.set(namespaces.clone());
    let admin = crate::admin::AdminService {
        store: store.clone(),
        namespaces: namespaces.clone(),
        peer_tls: peer_client_tls.clone(),
    };
    let forwarded_here = OnceReady::new();
    // The peer service must answer before any election can finish: the other voters' votes
    // and appends come through it.
    let peers = match config.peer_listen {
        Some(addr) => {
            let services = PeerServices {
                raft: store.peer_service(),
                admin: crate::admin::ClusterAdminServer::new(admin.clone()),
                forwarded: forwarded_here.clone(),
            };
            let tls = peer_tls.as_ref().map(|tls| tls.server.clone());
            Some(serve_peers(addr, services, tls).await?)
        }
        None => None,
    };
    // A data directory that was ever part of a cluster knows its id before any quorum.
    let known = namespaces.cluster_id()?;
    if !known.is_empty() {
        refuse_a_foreign_data_dir(&config, &known, peer_client_tls.as_ref()).await?;
        store.set_cluster_id(&known);
    }
    wait_for_leaders(&store, peers.is_some()).await?;
    bootstrap(&namespaces, &config, &placement).await?;
    // Bootstrap's commands are applied on the metadata leader when they return; this node's
    // replica must hold them too before it serves, or it would answer "namespace not found".
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Err(e) = namespaces.read_barrier().await {
        if tokio::time::Instant::now() >= deadline {
            return Err(e).context("catching up with the metadata group");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.set_cluster_id(&namespaces.cluster_id()?);
    refuse_another_placement(&namespaces, &placement)?;
    let engine = Engine::new(
        store.clone(),
        shards,
        effects,
        clock.clone(),
        namespaces.clone(),
        config.dynamic.limits.clone(),
    );
    let leaders = ShardLeaders::start(&engine).context("following shard leadership")?;
    let stop_learning = tokio_util::sync::CancellationToken::new();
    let learning = tokio::spawn(
        admin
            .clone()
            .learn_entry_format(engine.clone(), stop_learning.clone()),
    );
    let stop_clock = tokio_util::sync::CancellationToken::new();
    let (clock_pump, test_service) = match &clock {
        Clock::Virtual(v) => (
            Some(tokio::spawn(v.clone().run(stop_clock.clone()))),
            Some(
                TestServiceServer::new(TestService { clock: v.clone() })
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip),
            ),
        ),
        Clock::Wall => (None, None),
    };

    let metrics_addr = metrics::serve(
        config.metrics_listen,
        store.clone(),
        engine.matcher().clone(),
    )
    .await
    .context("binding the metrics port")?;
    let workflows = Workflows {
        engine,
        namespaces: namespaces.clone(),
        queries: Default::default(),
        eager_workflow_start: config.dynamic.eager_workflow_start,
        limits: config.dynamic.limits.clone(),
        stopping: Default::default(),
    };
    let forwarder = Forwarder::new(store.clone(), namespaces.clone(), peer_client_tls);
    let frontend = Frontend::new(
        namespaces,
        workflows,
        ClusterFacts {
            shard_count: shards,
        },
        forwarder,
    );
    forwarded_here.set(workflow_service(&frontend));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(
            "temporal.api.workflowservice.v1.WorkflowService",
            tonic_health::ServingStatus::Serving,
        )
        .await;
    health_reporter
        .set_service_status(
            "temporal.api.operatorservice.v1.OperatorService",
            tonic_health::ServingStatus::Serving,
        )
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(());
    let (rate, burst) = config
        .dynamic
        .namespace_rate
        .for_node(store.peer_addresses().len());
    let edge = RpcEdgeLayer::new(authority, NamespaceRateLimiter::new(rate, burst));
    let stop_http = tokio_util::sync::CancellationToken::new();
    let http_api = match config.http_listen {
        Some(addr) => {
            let tls = client_tls.clone();
            let stop = stop_http.clone();
            Some(serve_http_api(addr, &frontend, edge.clone(), tls, stop).await?)
        }
        None => None,
    };
    let http_addr = http_api.as_ref().map(|(addr, _)| addr.to_string());
    tracing::info!(%listen, %metrics_addr, http_api = http_addr.as_deref().unwrap_or("off"), data_dir = %dir.display(), shards, node_id = config.node_id, "Dura node ready");
    let router = Server::builder()
        .layer(edge)
        .add_service(workflow_service(&frontend))
        .add_service(operator_service(&frontend))
        .add_service(
            health_service
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_optional_service(test_service)
        .add_service(crate::admin::ClusterAdminServer::new(admin));
    let stopped = async move {
        let _ = stop_rx.changed().await;
    };
    let serve = match client_tls {
        Some(tls) => router
            .serve_with_incoming_shutdown(dura_tls::incoming(listener, tls), stopped)
            .boxed(),
        // Nagle's algorithm would hold small responses back until the client's delayed ACK
        // (~40 ms on Linux): every short RPC paid that wait. gRPC servers disable it.
        None => router
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                stopped,
            )
            .boxed(),
    };
    // Graceful shutdown waits for open calls (e.g. long polls) to finish, but only for so
    // long: the store must still be closed cleanly if a client never lets go.
    tokio::pin!(serve);
    let served = tokio::select! {
        served = &mut serve => served,
        () = shutdown => {
            // Still serving while the groups move, so calls forwarded here meanwhile land.
            store.hand_off_leadership(HAND_OFF_TIMEOUT).await;
            frontend.stop_polls();
            let _ = stop_tx.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!("clients still connected after the grace period; closing anyway");
                    Ok(())
                }
            }
        }
    };
    tracing::info!("shutting down");
    stop_http.cancel();
    if let Some((_, served)) = http_api {
        match served.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP API stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "the HTTP API task failed"),
            Ok(Ok(())) => {}
        }
    }
    stop_learning.cancel();
    let _ = learning.await;
    leaders.shutdown().await;
    stop_clock.cancel();
    if let Some(pump) = clock_pump {
        let _ = pump.await;
    }
    if let Some(peers) = peers {
        peers.abort();
        let _ = peers.await;
    }
    let stopped = store.shutdown().await;
    served.context("serving gRPC")?;
    stopped.context("stopping the Raft store")?;
    Ok(())
}

/// What the peer port serves: Raft traffic, the other nodes' questions for `dura cluster
/// status`, and client calls other nodes forward here (once the frontend exists).
struct PeerServices {
    raft: dura_raft_store::RaftPeerServer<dura_raft_store::PeerService>,
    admin: crate::admin::ClusterAdminServer<crate::admin::AdminService>,
    forwarded: OnceReady<WorkflowServiceServer<Frontend>>,
}

/// Serves the node-to-node services on `addr`, over mutual TLS when `tls` is given.
async fn serve_peers(
    addr: SocketAddr,
    services: PeerServices,
    tls: Option<ServerTls>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the peer port {addr}"))?;
    let router = Server::builder()
        .add_service(services.raft)
        .add_service(services.admin)
        .add_service(services.forwarded);
    Ok(tokio::spawn(async move {
        let served = match tls {
            Some(tls) => {
                router
                    .serve_with_incoming(dura_tls::incoming(listener, tls))
                    .await
            }
            None => {
                router
                    .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "peer service stopped");
        }
    }))
}

/// A data directory of cluster `known` must not join peers of another cluster (nor serve as
/// a cluster of its own next to them): each initial member that answers must know no cluster
/// yet or the same one. One that does not answer cannot tell, and is not waited for.
async fn refuse_a_foreign_data_dir(
    config: &NodeConfig,
    known: &str,
    tls: Option<&ClientTls>,
) -> anyhow::Result<()> {
    for (id, addr) in &config.initial_members {
        if *id == config.node_id {
            continue;
        }
        if let Ok(theirs) = dura_raft_store::cluster_id_of(addr, tls, Duration::from_secs(2)).await
        {
            if !theirs.is_empty() && theirs != known {
                anyhow::bail!(
                    "the data directory belongs to cluster {known}, but node {id} ({addr}) \
                     belongs to cluster {theirs}: refusing to start"
                );
            }
        }
    }
    Ok(())
}

/// A dev server's one-voter groups elect themselves at once; a cluster member waits for a
/// quorum of its peers, which may start in any order and at any time.
async fn wait_for_leaders(store: &RaftStore, clustered: bool) -> anyhow::Result<()> {
    if !clustered {
        return store
            .wait_for_leaders(Duration::from_secs(10))
            .await
            .context("electing group leaders");
    }
    loop {
        match store.wait_for_leaders(Duration::from_secs(10)).await {
            Ok(()) => return Ok(()),
            Err(e) => tracing::warn!(error = %e, "waiting for a quorum of the cluster"),
        }
        // Only once no quorum formed: the majority's nodes may see this node's messages
        // refused too, but they elect leaders among themselves and never get here.
        if let Some(why) = store.foreign_cluster() {
            anyhow::bail!(
                "this node's data directory belongs to another cluster than its peers ({why}); \
                 refusing to start"
            );
        }
    }
}

/// Proposes a bootstrap command, retrying while the cluster is still forming (a leader that
/// was just elected may not serve its peer port yet). Every bootstrap command is idempotent.
async fn execute_while_forming(
    namespaces: &NamespaceRegistry,
    command: MetaCommand,
) -> Result<Option<NamespaceRecord>, crate::error::ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match namespaces.execute(command.clone()).await {
            Err(
                e @ (crate::error::ApiError::Unavailable(_)
                | crate::error::ApiError::NotLeader { .. }),
            ) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "bootstrap command not applied yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// A node whose data directory places the groups otherwise than the cluster recorded would
/// look for replicas where they are not (its members, shards or replication flags differed
/// when it was created).
fn refuse_another_placement(
    namespaces: &NamespaceRegistry,
    placement: &Placement,
) -> anyhow::Result<()> {
    let recorded = namespaces
        .placement()?
        .context("the metadata group holds no placement")?;
    let recorded = Placement::decode(&recorded).context("decoding the cluster's placement")?;
    if recorded != *placement {
        anyhow::bail!(
            "this node's data directory places the groups as {placement:?}, but the cluster \
             recorded {recorded:?}: it was created with other --initial-cluster, --shards or \
             --replication flags; refusing to start"
        );
    }
    Ok(())
}

/// Creates what `start-dev` promises: the cluster id, its placement and the launch namespaces.
async fn bootstrap(
    namespaces: &NamespaceRegistry,
    config: &NodeConfig,
    placement: &Placement,
) -> anyhow::Result<()> {
    execute_while_forming(
        namespaces,
        MetaCommand::InitCluster {
            cluster_id: uuid::Uuid::new_v4().to_string(),
        },
    )
    .await?;
    execute_while_forming(
        namespaces,
        MetaCommand::RecordPlacement {
            placement: placement.encode(),
        },
    )
    .await?;
    execute_while_forming(
        namespaces,
        MetaCommand::RegisterNode {
            node_id: config.node_id,
            client_address: config.advertise_client.clone(),
        },
    )
    .await?;
    for name in &config.namespaces {
        let record = NamespaceRecord::new(
            uuid::Uuid::new_v4().to_string(),
            name.clone(),
            DEV_NAMESPACE_RETENTION,
        );
        execute_while_forming(
            namespaces,
            MetaCommand::Register {
                record,
                if_absent: true,
            },
        )
        .await?;
        if !config.search_attributes.is_empty() {
            execute_while_forming(
                namespaces,
                MetaCommand::AddSearchAttributes {
                    name: name.clone(),
                    attributes: config.search_attributes.iter().cloned().collect(),
                },
            )
            .await?;
        }
    }
    Ok(())
}
