//! Queries, the way the real server answers them when no workflow task is in flight: a
//! *query task* goes through matching to a worker (sticky if its worker is alive), is never
//! persisted, and the worker's RespondQueryTaskCompleted wakes the waiting QueryWorkflow call.

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use temporalio_protos::temporal::api::{
    query::v1::WorkflowQuery, workflowservice::v1::RespondQueryTaskCompletedRequest,
};
use tokio::sync::oneshot;

/// Queries waiting for a worker's answer, by query id. In memory only: a query is a read,
/// and a caller whose server restarted simply asks again.
#[derive(Default)]
pub struct QueryRegistry {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, PendingQuery>>,
}

struct PendingQuery {
    query: WorkflowQuery,
    reply: oneshot::Sender<RespondQueryTaskCompletedRequest>,
}

impl QueryRegistry {
    /// No section under this lock panics; a poisoned lock is as good as any.
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, PendingQuery>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(
        &self,
        query: WorkflowQuery,
    ) -> (u64, oneshot::Receiver<RespondQueryTaskCompletedRequest>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, rx) = oneshot::channel();
        self.pending().insert(id, PendingQuery { query, reply });
        (id, rx)
    }

    /// The query a task carries, if its caller is still waiting.
    pub fn query(&self, id: u64) -> Option<WorkflowQuery> {
        self.pending().get(&id).map(|p| p.query.clone())
    }

    /// Delivers a worker's answer; false when nobody waits any more (timed out).
    pub fn answer(&self, id: u64, answer: RespondQueryTaskCompletedRequest) -> bool {
        match self.pending().remove(&id) {
            Some(pending) => pending.reply.send(answer).is_ok(),
            None => false,
        }
    }

    pub fn forget(&self, id: u64) {
        self.pending().remove(&id);
    }
}
