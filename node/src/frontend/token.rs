//! Task tokens: opaque to workers, they name the run and the exact task instance, so a stale
//! or replayed completion is recognised by the state machine and rejected.

use dura_codec::{Kind, Persisted};
use dura_history::keys::RunKey;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskToken {
    Workflow {
        run: RunKey,
        scheduled_event_id: i64,
        started_event_id: i64,
        attempt: i32,
        stamp: i32,
    },
    Activity {
        run: RunKey,
        scheduled_event_id: i64,
        attempt: i32,
        activity_id: String,
    },
    /// A query task of an older build (answered where it was issued).
    Query { run: RunKey, query_id: u64 },
    /// A query task: answered, never recorded, by node `node`, which waits for the answer.
    QueryOn {
        node: u64,
        run: RunKey,
        query_id: u64,
    },
}

/// A token outlives the node that made it: a worker may hand it to any node of the cluster.
impl Persisted for TaskToken {
    const KIND: Kind = Kind::TaskToken;
}

impl TaskToken {
    pub fn parse(bytes: &[u8]) -> ApiResult<Self> {
        if bytes.is_empty() {
            return Err(ApiError::InvalidArgument(
                "Task token not set on request.".into(),
            ));
        }
        Self::decode(bytes)
            .map_err(|_| ApiError::InvalidArgument("Error deserializing task token.".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let token = TaskToken::Activity {
            run: RunKey::new("ns", "wf", "run"),
            scheduled_event_id: 5,
            attempt: 2,
            activity_id: "1".into(),
        };
        assert_eq!(TaskToken::parse(&token.encode()).unwrap(), token);
        assert!(TaskToken::parse(b"\xff\xff").is_err());
        assert!(TaskToken::parse(b"").is_err());
    }
}
