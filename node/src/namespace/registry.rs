//! Read side and command submission for namespaces.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use dura_codec::Persisted;
use dura_raft_store::{GroupId, RaftStore};

use super::{MetaCommand, MetaReply, NamespaceError, NamespaceRecord, keys};
use crate::error::{ApiError, ApiResult};

/// Looks namespaces up in the metadata group's applied state and submits metadata commands.
#[derive(Clone)]
pub struct NamespaceRegistry {
    store: RaftStore,
    /// Name -> id for every namespace seen. Every workflow RPC needs the id, and it is fixed
    /// at registration (Dura neither renames nor deletes namespaces; deleting one must evict
    /// it here), so the hot path skips reading and decoding the whole record.
    ids: Arc<RwLock<HashMap<String, String>>>,
    /// Id -> name, the other way, for the same reason.
    names: Arc<RwLock<HashMap<String, String>>>,
}

impl NamespaceRegistry {
    pub fn new(store: RaftStore) -> Self {
        Self {
            store,
            ids: Arc::default(),
            names: Arc::default(),
        }
    }

    /// The id of the namespace called `name`. A request's handler resolves its namespace
    /// here (or with [`Self::by_name`]), which labels the request's metrics with it.
    pub fn id_of(&self, name: &str) -> ApiResult<String> {
        let cached = self
            .ids
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let id = match cached {
            Some(id) => id,
            None => {
                let id = self.by_name(name)?.id;
                self.ids
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_string(), id.clone());
                id
            }
        };
        crate::metrics::note_request_namespace(name);
        Ok(id)
    }

    /// The `namespace` label of a metric about namespace `id`: its name, from this node's
    /// replica of the metadata group (every node holds one), cached once found.
    pub fn metric_label(&self, id: &str) -> String {
        self.name_of(id)
            .unwrap_or_else(|| crate::metrics::UNKNOWN_NAMESPACE.to_string())
    }

    /// Labels the request being served with namespace `id`, when it exists.
    pub fn note_request_namespace_id(&self, id: &str) {
        if let Some(name) = self.name_of(id) {
            crate::metrics::note_request_namespace(&name);
        }
    }

    fn name_of(&self, id: &str) -> Option<String> {
        if let Some(name) = self.names.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Some(name.clone());
        }
        let name = self.by_id(id).ok()?.name;
        crate::metrics::namespace_known(&name);
        self.names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), name.clone());
        Some(name)
    }

    /// Proposes a metadata command and returns its outcome once it is committed and applied.
    pub async fn execute(&self, command: MetaCommand) -> ApiResult<Option<NamespaceRecord>> {
        let reply = crate::router::propose(&self.store, GroupId::META, command.encode()).await?;
        let reply: MetaReply =
            bincode::deserialize(&reply).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(reply?)
    }

    pub fn by_name(&self, name: &str) -> ApiResult<NamespaceRecord> {
        let reader = self.store.reader(GroupId::META)?;
        let bytes = reader
            .get(&keys::by_name(name))?
            .ok_or_else(|| NamespaceError::NotFound(name.to_string()))?;
        crate::metrics::note_request_namespace(name);
        decode(&bytes)
    }

    pub fn by_id(&self, id: &str) -> ApiResult<NamespaceRecord> {
        let reader = self.store.reader(GroupId::META)?;
        let name = reader
            .get(&keys::by_id(id))?
            .ok_or_else(|| NamespaceError::IdNotFound(id.to_string()))?;
        self.by_name(&String::from_utf8_lossy(&name))
    }

    /// One page of namespaces in name order, starting after `after`; the second value is
    /// the name to continue after, if there may be more.
    pub fn list(
        &self,
        after: Option<&str>,
        page_size: usize,
    ) -> ApiResult<(Vec<NamespaceRecord>, Option<String>)> {
        let reader = self.store.reader(GroupId::META)?;
        let start = match after {
            // The smallest key strictly greater than the last name returned.
            Some(name) => [keys::by_name(name), vec![0]].concat(),
            None => keys::BY_NAME.to_vec(),
        };
        let mut end = keys::BY_NAME.to_vec();
        *end.last_mut().expect("non-empty prefix") += 1;
        let rows = reader.scan_range(&start, &end, page_size + 1)?;
        let mut records = rows
            .iter()
            .map(|(_, v)| decode(v))
            .collect::<ApiResult<Vec<_>>>()?;
        let next = if records.len() > page_size {
            records.truncate(page_size);
            records.last().map(|r| r.name.clone())
        } else {
            None
        };
        Ok((records, next))
    }

    /// Brings this node's replica of the metadata group up to every acknowledged change, for
    /// a client's read of namespaces (see `router::read_barrier`).
    pub async fn read_barrier(&self) -> ApiResult<()> {
        crate::router::read_barrier(&self.store, GroupId::META).await
    }

    /// The client address node `node_id` registered, from this node's replica.
    pub fn node_client_address(&self, node_id: u64) -> ApiResult<Option<String>> {
        let reader = self.store.reader(GroupId::META)?;
        Ok(reader
            .get(&keys::node(node_id))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The placement the cluster recorded (see `crate::placement`), once one is.
    pub fn placement(&self) -> ApiResult<Option<Vec<u8>>> {
        let reader = self.store.reader(GroupId::META)?;
        Ok(reader.get(keys::PLACEMENT)?)
    }

    pub fn cluster_id(&self) -> ApiResult<String> {
        let reader = self.store.reader(GroupId::META)?;
        Ok(reader
            .get(keys::CLUSTER_ID)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    }
}

fn decode(bytes: &[u8]) -> ApiResult<NamespaceRecord> {
    NamespaceRecord::decode(bytes)
        .map_err(|e| ApiError::Internal(format!("corrupt namespace record: {e}")))
}
