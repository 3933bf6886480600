//! Coalescing the Raft messages of many groups to one peer into one request.
//!
//! Every group heartbeats each follower every 50 ms; with tens of groups that is hundreds of
//! tiny gRPC calls a second per peer, each costing more CPU than its payload. Instead, one
//! batcher task per peer takes the groups' appends, votes and pre-votes from a bounded queue
//! and sends whatever is queued together as one `CallBatch` request, with the replies routed
//! back to their callers. A heartbeat (an append with no entries) may wait up to [`LINGER`]
//! for company; anything carrying entries or a vote goes at once, taking the waiting
//! heartbeats with it. Batches are sent concurrently, so one slow batch holds up no other. A
//! peer that does not know `CallBatch` (an earlier build) gets the messages one by one.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::peer::PeerBatch;
use crate::peer::PeerRequest;
use crate::peer::RaftPeerClient;

/// How long a heartbeat waits for other messages to share its request.
const LINGER: Duration = Duration::from_millis(5);
/// Messages per request at most.
const MAX_BATCH: usize = 64;
/// Messages queued for one peer at most (callers wait for room: back-pressure, not loss).
const QUEUE: usize = 1024;

/// One message waiting for its batch.
pub(crate) struct Queued {
    pub(crate) request: PeerRequest,
    /// How long the caller waits; the batch's deadline is its longest member's.
    pub(crate) ttl: Duration,
    /// Sent at once (entries, votes) rather than lingering (heartbeats).
    pub(crate) urgent: bool,
    pub(crate) reply: oneshot::Sender<Result<Vec<u8>, tonic::Status>>,
}

/// Requests and the messages in them, over every peer's batcher of a node.
#[derive(Debug, Default)]
pub(crate) struct BatchStats {
    pub(crate) batches: AtomicU64,
    pub(crate) messages: AtomicU64,
}

/// The sending side of one peer's batcher.
#[derive(Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Queued>,
}

impl Batcher {
    /// Starts the batcher of the peer at `channel`; it stops once every sender is dropped.
    pub(crate) fn spawn(channel: Channel, stats: Arc<BatchStats>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, channel, stats));
        Batcher { queue }
    }

    /// Sends `request` in the next batch and waits for its own reply.
    pub(crate) async fn call(
        &self,
        request: PeerRequest,
        ttl: Duration,
        urgent: bool,
    ) -> Result<Vec<u8>, tonic::Status> {
        let (reply, replied) = oneshot::channel();
        let queued = Queued {
            request,
            ttl,
            urgent,
            reply,
        };
        self.queue
            .send(queued)
            .await
            .map_err(|_| tonic::Status::unavailable("peer batcher stopped"))?;
        match tokio::time::timeout(ttl, replied).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(tonic::Status::unavailable("batch dropped")),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "no reply within the deadline",
            )),
        }
    }
}

async fn run(mut rx: mpsc::Receiver<Queued>, channel: Channel, stats: Arc<BatchStats>) {
    let client = RaftPeerClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let unary = Arc::new(AtomicBool::new(false));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        if !batch[0].urgent {
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    () = &mut linger => break,
                    next = rx.recv() => match next {
                        Some(next) => {
                            let urgent = next.urgent;
                            batch.push(next);
                            if urgent {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .messages
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        tokio::spawn(send(client.clone(), batch, unary.clone()));
    }
}

async fn send(mut client: RaftPeerClient<Channel>, batch: Vec<Queued>, unary: Arc<AtomicBool>) {
    let ttl = batch.iter().map(|q| q.ttl).max().unwrap_or(LINGER);
    let (requests, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|q| (q.request, q.reply)).unzip();
    if unary.load(Ordering::Relaxed) {
        for (message, reply) in requests.into_iter().zip(replies) {
            let mut request = tonic::Request::new(message);
            request.set_timeout(ttl);
            let _ = reply.send(client.call(request).await.map(|r| r.into_inner().body));
        }
        return;
    }
    let mut request = tonic::Request::new(PeerBatch { requests });
    request.set_timeout(ttl);
    let failure = match client.call_batch(request).await {
        Ok(answer) => {
            let items = answer.into_inner().replies;
            for (reply, item) in replies.into_iter().zip(items) {
                let result = match item.code {
                    0 => Ok(item.body),
                    code => Err(tonic::Status::new(tonic::Code::from(code), item.message)),
                };
                let _ = reply.send(result);
            }
            return;
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            // A peer of an earlier build (a rolling upgrade): from now on one call per
            // message; this batch's callers retry as after any lost message.
            unary.store(true, Ordering::Relaxed);
            tonic::Status::unavailable("peer takes no batches; retry")
        }
        Err(status) => status,
    };
    for reply in replies {
        let _ = reply.send(Err(failure.clone()));
    }
}
