//! Tokens handed to clients and workers and sent back by them: opaque to them, so whatever
//! bytes come back are decoded defensively and refused as `INVALID_ARGUMENT`.
//!
//! Task tokens name the run and the exact task instance, so a stale or replayed completion is
//! recognised by the state machine and rejected.

use dura_codec::{Kind, Persisted};
use serde::{Deserialize, Serialize};

use crate::{HistoryError, keys::RunKey};

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
    pub fn parse(bytes: &[u8]) -> Result<Self, HistoryError> {
        if bytes.is_empty() {
            return Err(HistoryError::InvalidArgument(
                "Task token not set on request.".into(),
            ));
        }
        Self::decode(bytes)
            .map_err(|_| HistoryError::InvalidArgument("Error deserializing task token.".into()))
    }
}

/// A GetWorkflowExecutionHistory page token: the event id the next page starts at (reading
/// forward) or ends before (in reverse).
pub fn encode_event_cursor(event_id: i64) -> Vec<u8> {
    event_id.to_be_bytes().to_vec()
}

/// None for an empty token (the first page).
pub fn decode_event_cursor(token: &[u8]) -> Result<Option<i64>, HistoryError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes: [u8; 8] = token
        .try_into()
        .map_err(|_| HistoryError::InvalidArgument("Invalid NextPageToken.".into()))?;
    Ok(Some(i64::from_be_bytes(bytes)))
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
        assert_eq!(
            decode_event_cursor(&encode_event_cursor(7)).unwrap(),
            Some(7)
        );
        assert!(decode_event_cursor(b"\x01").is_err());
    }
}
