//! Namespaces: the cluster-metadata Raft group (`GroupId::META`) is their only home.
//!
//! Registration and updates are Raft commands applied deterministically on every replica
//! ([`apply`]); the namespace id and every timestamp travel inside the command, so replicas
//! agree byte for byte. Static validation (name set, retention ≥ 1 h) happens in the frontend
//! before proposing, so a rejected request never reaches the log; the checks that depend on
//! state (duplicate name, unknown namespace) happen in `apply`, where the state is.

mod registry;

use std::{collections::BTreeMap, time::Duration};

use dura_codec::{Kind, Persisted};
use serde::{Deserialize, Serialize};

pub use registry::NamespaceRegistry;

/// The namespace every dev server starts with unless `--namespace` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Same floor as the real server's `system.namespaceMinRetentionLocal`.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);
/// Same limit as the real server's `limit.maxIDLength`.
pub const MAX_NAME_LEN: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceState {
    Registered,
    Deprecated,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ArchivalState {
    #[default]
    Disabled,
    Enabled,
}

pub use dura_history::visibility::SearchAttributeType;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub id: String,
    pub name: String,
    pub state: NamespaceState,
    pub description: String,
    pub owner_email: String,
    pub data: BTreeMap<String, String>,
    pub retention: Duration,
    pub history_archival: (ArchivalState, String),
    pub visibility_archival: (ArchivalState, String),
    pub custom_search_attributes: BTreeMap<String, SearchAttributeType>,
    /// Bumped on every update, like the real server's `ConfigVersion`.
    pub config_version: i64,
}

impl NamespaceRecord {
    pub fn new(id: String, name: String, retention: Duration) -> Self {
        Self {
            id,
            name,
            state: NamespaceState::Registered,
            description: String::new(),
            owner_email: String::new(),
            data: BTreeMap::new(),
            retention,
            history_archival: Default::default(),
            visibility_archival: Default::default(),
            custom_search_attributes: BTreeMap::new(),
            config_version: 0,
        }
    }
}

/// A partial update: `None` leaves the field as it is (the real server's semantics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamespaceUpdate {
    pub description: Option<String>,
    pub owner_email: Option<String>,
    /// Merged into the existing data, never replacing it.
    pub data: BTreeMap<String, String>,
    pub state: Option<NamespaceState>,
    pub retention: Option<Duration>,
    pub history_archival: Option<(ArchivalState, String)>,
    pub visibility_archival: Option<(ArchivalState, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NamespaceError {
    #[error("Namespace {0} is not found.")]
    NotFound(String),
    #[error("Namespace id {0} is not found.")]
    IdNotFound(String),
    #[error("Namespace {0:?} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    /// Stored metadata or a logged command this build cannot read, or a failed apply.
    #[error("{0}")]
    Internal(String),
}

/// Commands of the cluster-metadata group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Creates the namespace; with `if_absent` an existing one is left alone (start-dev).
    Register {
        record: NamespaceRecord,
        if_absent: bool,
    },
    Update {
        name: String,
        update: NamespaceUpdate,
    },
    AddSearchAttributes {
        name: String,
        attributes: BTreeMap<String, SearchAttributeType>,
    },
    RemoveSearchAttributes {
        name: String,
        attributes: Vec<String>,
    },
    /// Written once, on the first start of a cluster.
    InitCluster { cluster_id: String },
    /// A node's client gRPC address, (re)written whenever it starts: where other nodes forward
    /// the calls it must serve (task-queue polls of the partitions it leads).
    RegisterNode {
        node_id: u64,
        client_address: String,
    },
    /// The cluster's placement (`crate::placement`), kept as the first one proposed: every
    /// member proposes the one it started with when it starts, and refuses to serve if the
    /// recorded one differs.
    RecordPlacement { placement: Vec<u8> },
}

pub type MetaReply = Result<Option<NamespaceRecord>, NamespaceError>;

/// Key/value access the metadata apply needs; implemented by the Raft apply transaction.
pub trait MetaState {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn put(&mut self, key: &[u8], value: &[u8]);
}

impl MetaState for dura_raft_store::ApplyTxn<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        dura_raft_store::ApplyTxn::get(self, key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        dura_raft_store::ApplyTxn::put(self, key, value)
    }
}

pub(crate) mod keys {
    /// `ns/name/<name>` → bincode `NamespaceRecord`; names sort, so listing pages by name.
    pub const BY_NAME: &[u8] = b"ns/name/";
    /// `ns/id/<id>` → name.
    pub const BY_ID: &[u8] = b"ns/id/";
    pub const CLUSTER_ID: &[u8] = b"cluster/id";
    /// The cluster's placement, as `crate::placement::Placement::encode` wrote it.
    pub const PLACEMENT: &[u8] = b"cluster/placement";
    /// `node/<id BE>` → the node's client address.
    pub const NODE: &[u8] = b"node/";

    pub fn node(id: u64) -> Vec<u8> {
        [NODE, &id.to_be_bytes()[..]].concat()
    }

    pub fn by_name(name: &str) -> Vec<u8> {
        [BY_NAME, name.as_bytes()].concat()
    }
    pub fn by_id(id: &str) -> Vec<u8> {
        [BY_ID, id.as_bytes()].concat()
    }
}

fn load(state: &impl MetaState, name: &str) -> Result<NamespaceRecord, NamespaceError> {
    let bytes = state
        .get(&keys::by_name(name))
        .ok_or_else(|| NamespaceError::NotFound(name.to_string()))?;
    NamespaceRecord::decode(&bytes)
        .map_err(|e| NamespaceError::Internal(format!("corrupt namespace record: {e}")))
}

fn store(state: &mut impl MetaState, record: &NamespaceRecord) {
    state.put(&keys::by_name(&record.name), &record.encode());
    state.put(&keys::by_id(&record.id), record.name.as_bytes());
}

/// Applies one metadata command. Deterministic: reads and writes only through `state`.
pub fn apply(state: &mut impl MetaState, command: MetaCommand) -> MetaReply {
    match command {
        MetaCommand::Register { record, if_absent } => match load(state, &record.name) {
            Ok(existing) if if_absent => Ok(Some(existing)),
            Ok(_) => Err(NamespaceError::AlreadyExists(record.name)),
            Err(NamespaceError::NotFound(_)) => {
                store(state, &record);
                Ok(Some(record))
            }
            Err(other) => Err(other),
        },
        MetaCommand::Update { name, update } => {
            let mut record = load(state, &name)?;
            if let Some(next) = update.state {
                validate_state_change(record.state, next)?;
                record.state = next;
            }
            if let Some(description) = update.description {
                record.description = description;
            }
            if let Some(owner) = update.owner_email {
                record.owner_email = owner;
            }
            record.data.extend(update.data);
            if let Some(retention) = update.retention {
                record.retention = retention;
            }
            if let Some(archival) = update.history_archival {
                record.history_archival = archival;
            }
            if let Some(archival) = update.visibility_archival {
                record.visibility_archival = archival;
            }
            record.config_version += 1;
            store(state, &record);
            Ok(Some(record))
        }
        MetaCommand::AddSearchAttributes { name, attributes } => {
            let mut record = load(state, &name)?;
            // Like the real server: a name already in use is skipped, whatever its type.
            for (key, kind) in attributes {
                record.custom_search_attributes.entry(key).or_insert(kind);
            }
            store(state, &record);
            Ok(Some(record))
        }
        MetaCommand::RemoveSearchAttributes { name, attributes } => {
            let mut record = load(state, &name)?;
            // Unknown names are ignored, as the real server does.
            for key in &attributes {
                record.custom_search_attributes.remove(key);
            }
            store(state, &record);
            Ok(Some(record))
        }
        MetaCommand::InitCluster { cluster_id } => {
            if state.get(keys::CLUSTER_ID).is_none() {
                state.put(keys::CLUSTER_ID, cluster_id.as_bytes());
            }
            Ok(None)
        }
        MetaCommand::RegisterNode {
            node_id,
            client_address,
        } => {
            state.put(&keys::node(node_id), client_address.as_bytes());
            Ok(None)
        }
        MetaCommand::RecordPlacement { placement } => {
            if state.get(keys::PLACEMENT).is_none() {
                state.put(keys::PLACEMENT, &placement);
            }
            Ok(None)
        }
    }
}

/// The real server allows Registered ⇄ Deprecated and anything → Deleted, nothing back.
fn validate_state_change(from: NamespaceState, to: NamespaceState) -> Result<(), NamespaceError> {
    use NamespaceState::*;
    match (from, to) {
        (a, b) if a == b => Ok(()),
        (Registered, Deprecated)
        | (Registered, Deleted)
        | (Deprecated, Deleted)
        | (Deprecated, Registered) => Ok(()),
        _ => Err(NamespaceError::Invalid(
            "Invalid namespace state update.".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct MemState(BTreeMap<Vec<u8>, Vec<u8>>);

    impl MetaState for MemState {
        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.0.get(key).cloned()
        }
        fn put(&mut self, key: &[u8], value: &[u8]) {
            self.0.insert(key.to_vec(), value.to_vec());
        }
    }

    fn register(state: &mut MemState, name: &str) -> MetaReply {
        let record = NamespaceRecord::new(
            format!("id-{name}"),
            name.into(),
            Duration::from_secs(86400),
        );
        apply(
            state,
            MetaCommand::Register {
                record,
                if_absent: false,
            },
        )
    }

    #[test]
    fn duplicate_name_is_rejected_and_changes_nothing() {
        let mut state = MemState::default();
        register(&mut state, "a").unwrap();
        let before = state.0.clone();
        assert_eq!(
            register(&mut state, "a"),
            Err(NamespaceError::AlreadyExists("a".into()))
        );
        assert_eq!(state.0, before);
    }

    #[test]
    fn register_if_absent_keeps_the_existing_record() {
        let mut state = MemState::default();
        let first = register(&mut state, "a").unwrap().unwrap();
        let other = NamespaceRecord::new("other-id".into(), "a".into(), Duration::from_secs(7200));
        let kept = apply(
            &mut state,
            MetaCommand::Register {
                record: other,
                if_absent: true,
            },
        )
        .unwrap();
        assert_eq!(kept, Some(first));
    }

    #[test]
    fn update_merges_data_and_bumps_version() {
        let mut state = MemState::default();
        register(&mut state, "a").unwrap();
        let update = NamespaceUpdate {
            description: Some("d".into()),
            data: [("k".to_string(), "v".to_string())].into(),
            retention: Some(Duration::from_secs(7200)),
            ..Default::default()
        };
        let record = apply(
            &mut state,
            MetaCommand::Update {
                name: "a".into(),
                update,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(record.description, "d");
        assert_eq!(record.data["k"], "v");
        assert_eq!(record.retention, Duration::from_secs(7200));
        assert_eq!(record.config_version, 1);
        assert_eq!(load(&state, "a").unwrap(), record);
    }

    #[test]
    fn update_of_unknown_namespace_is_not_found() {
        let mut state = MemState::default();
        let err = apply(
            &mut state,
            MetaCommand::Update {
                name: "x".into(),
                update: Default::default(),
            },
        );
        assert_eq!(err, Err(NamespaceError::NotFound("x".into())));
    }

    #[test]
    fn deleted_namespace_cannot_come_back() {
        let mut state = MemState::default();
        register(&mut state, "a").unwrap();
        let delete = NamespaceUpdate {
            state: Some(NamespaceState::Deleted),
            ..Default::default()
        };
        apply(
            &mut state,
            MetaCommand::Update {
                name: "a".into(),
                update: delete,
            },
        )
        .unwrap();
        let revive = NamespaceUpdate {
            state: Some(NamespaceState::Registered),
            ..Default::default()
        };
        assert!(matches!(
            apply(
                &mut state,
                MetaCommand::Update {
                    name: "a".into(),
                    update: revive
                }
            ),
            Err(NamespaceError::Invalid(_))
        ));
    }

    #[test]
    fn existing_search_attribute_keeps_its_type() {
        let mut state = MemState::default();
        register(&mut state, "a").unwrap();
        let add = |kind| MetaCommand::AddSearchAttributes {
            name: "a".into(),
            attributes: [("Tag".to_string(), kind)].into(),
        };
        apply(&mut state, add(SearchAttributeType::Keyword)).unwrap();
        let record = apply(&mut state, add(SearchAttributeType::Int))
            .unwrap()
            .unwrap();
        assert_eq!(
            record.custom_search_attributes["Tag"],
            SearchAttributeType::Keyword
        );
    }
}

impl Persisted for NamespaceRecord {
    const KIND: Kind = Kind::NamespaceRecord;
}

impl Persisted for MetaCommand {
    const KIND: Kind = Kind::MetaCommand;
}
