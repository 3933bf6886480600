//! Group commit: one writer thread for the raft-log I/O of every group.
//!
//! Log appends, truncations, purges and vote saves of all groups are sent to one dedicated OS
//! thread as [`WriteReq`]s. The thread blocks for the first request, then drains everything else
//! already queued (up to [`MAX_REQS_PER_BATCH`]), merges all of it into **one** RocksDB
//! `WriteBatch`, writes it — with `sync = true` if any request in the batch asked for it — and
//! only then runs every request's completion callback (which fires openraft's `IOFlushed`).
//!
//! While one batch is being fsynced, new requests pile up in the queue and become the next batch,
//! so N concurrent proposals across any number of groups cost roughly one fsync per disk
//! round-trip instead of N: throughput stays flat as concurrency grows.
//!
//! The queue is FIFO and batches are written in order, which gives openraft the ordering it
//! requires ("all write-IO must be serialized"): a vote saved after an append is never durable
//! before that append, a truncation never overtakes the append it truncates.

use std::io;
use std::sync::Arc;

use crate::metrics;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rocksdb::DB;
use rocksdb::WriteBatch;
use rocksdb::WriteOptions;

use crate::db::cf;
use crate::error::db_err;
use crate::error::io_err;
use crate::error::shut_down;

/// Upper bound on requests merged into one batch, to bound the latency of a single write.
pub(crate) const MAX_REQS_PER_BATCH: usize = 4096;

/// One mutation, addressed by column family name.
#[derive(Debug)]
pub(crate) enum Op {
    Put {
        cf: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: &'static str,
        key: Vec<u8>,
    },
    /// Deletes `[from, to)`.
    DeleteRange {
        cf: &'static str,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// Called on the writer thread once the request's batch is written (and synced if requested).
pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// A unit of log I/O: its ops are applied atomically (they always land in one batch).
pub(crate) struct WriteReq {
    pub(crate) ops: Vec<Op>,
    /// Whether the request needs an fsync before `done` runs.
    pub(crate) sync: bool,
    pub(crate) done: Option<Done>,
}

enum Msg {
    Write(WriteReq),
    Stop,
}

/// Counters, for tests and diagnostics.
#[derive(Default)]
pub(crate) struct WriterStats {
    /// RocksDB writes performed.
    pub(crate) batches: AtomicU64,
    /// Of which were synced.
    pub(crate) synced_batches: AtomicU64,
    /// Requests completed.
    pub(crate) requests: AtomicU64,
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    tx: mpsc::Sender<Msg>,
    join: Mutex<Option<JoinHandle<()>>>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread. It holds `db` until [`Writer::stop`].
    pub(crate) fn spawn(db: Arc<DB>) -> io::Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let join = std::thread::Builder::new()
            .name("raft-log-writer".to_string())
            .spawn(move || run(db, rx, &thread_stats))?;
        Ok(Arc::new(Self {
            tx,
            join: Mutex::new(Some(join)),
            stats,
        }))
    }

    /// Queues `req`; its `done` runs on the writer thread after the write.
    ///
    /// Fails (and drops `req` without running `done`) once the writer has stopped.
    pub(crate) fn submit(&self, req: WriteReq) -> io::Result<()> {
        self.tx.send(Msg::Write(req)).map_err(|_| shut_down())
    }

    /// Queues `ops` and waits until they are written (and synced if `sync`).
    pub(crate) async fn write(&self, ops: Vec<Op>, sync: bool) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(WriteReq {
            ops,
            sync,
            done: Some(Box::new(move |res| {
                let _ = tx.send(res);
            })),
        })?;
        rx.await.map_err(|_| shut_down())?
    }

    /// Writes everything queued so far, stops the thread and waits for it (blocking).
    /// Requests submitted afterwards fail. Idempotent.
    pub(crate) fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
        let join = match self.join.lock() {
            Ok(mut j) => j.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(join) = join
            && join.join().is_err()
        {
            tracing::error!("raft log writer thread panicked");
        }
    }
}

fn run(db: Arc<DB>, rx: mpsc::Receiver<Msg>, stats: &WriterStats) {
    let mut stopping = false;
    while !stopping {
        let mut reqs = match rx.recv() {
            Ok(Msg::Write(req)) => vec![req],
            Ok(Msg::Stop) | Err(_) => break,
        };
        while reqs.len() < MAX_REQS_PER_BATCH {
            match rx.try_recv() {
                Ok(Msg::Write(req)) => reqs.push(req),
                Ok(Msg::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }

        let sync = reqs.iter().any(|r| r.sync);
        let started = std::time::Instant::now();
        let res = write_batch(&db, &mut reqs, sync);
        let took = started.elapsed().as_secs_f64();
        metrics::PERSISTENCE_REQUESTS
            .with_label_values(&["write"])
            .inc_by(reqs.len() as u64);
        metrics::PERSISTENCE_LATENCY
            .with_label_values(&["write"])
            .observe(took);
        metrics::BATCH_SIZE.observe(reqs.len() as f64);
        if sync {
            metrics::FSYNC_SECONDS.observe(took);
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        if sync {
            stats.synced_batches.fetch_add(1, Ordering::Relaxed);
        }
        stats
            .requests
            .fetch_add(reqs.len() as u64, Ordering::Relaxed);
        if let Err(e) = &res {
            metrics::PERSISTENCE_ERRORS
                .with_label_values(&["write"])
                .inc_by(reqs.len() as u64);
            tracing::error!("raft log write of {} requests failed: {e}", reqs.len());
        }

        for req in reqs {
            if let Some(done) = req.done {
                done(match &res {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io_err(e)),
                });
            }
        }
    }
    // `db` (this thread's reference) is dropped here.
}

fn write_batch(db: &DB, reqs: &mut [WriteReq], sync: bool) -> io::Result<()> {
    let mut batch = WriteBatch::default();
    for req in reqs.iter_mut() {
        for op in std::mem::take(&mut req.ops) {
            match op {
                Op::Put {
                    cf: name,
                    key,
                    value,
                } => batch.put_cf(cf(db, name)?, key, value),
                Op::Delete { cf: name, key } => batch.delete_cf(cf(db, name)?, key),
                Op::DeleteRange { cf: name, from, to } => {
                    batch.delete_range_cf(cf(db, name)?, from, to)
                }
            }
        }
    }
    if batch.is_empty() && !sync {
        return Ok(());
    }
    let mut wo = WriteOptions::default();
    wo.set_sync(sync);
    db.write_opt(batch, &wo).map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open_db;
    use crate::keys::CF_META;

    fn put(i: u32) -> Op {
        Op::Put {
            cf: CF_META,
            key: i.to_be_bytes().to_vec(),
            value: vec![1],
        }
    }

    #[tokio::test]
    async fn concurrent_writes_are_group_committed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open_db(dir.path()).unwrap());
        let writer = Writer::spawn(db.clone()).unwrap();

        // Hold the writer thread inside the first request's completion (completions run on
        // it), so everything submitted meanwhile is queued when it next looks: exactly one
        // more batch, one fsync, however the threads were scheduled.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (holding, writer_held) = std::sync::mpsc::channel::<()>();
        writer
            .submit(WriteReq {
                ops: vec![put(u32::MAX)],
                sync: true,
                done: Some(Box::new(move |res| {
                    res.unwrap();
                    holding.send(()).unwrap();
                    held.recv().unwrap();
                })),
            })
            .unwrap();
        writer_held
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the first write never completed");
        let mut waiting = Vec::new();
        for i in 0..200u32 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            writer
                .submit(WriteReq {
                    ops: vec![put(i)],
                    sync: true,
                    done: Some(Box::new(move |res| tx.send(res).unwrap())),
                })
                .unwrap();
            waiting.push(rx);
        }
        release.send(()).unwrap();
        for rx in waiting {
            rx.await.unwrap().unwrap();
        }
        assert_eq!(writer.stats.requests.load(Ordering::Relaxed), 201);
        assert_eq!(writer.stats.batches.load(Ordering::Relaxed), 2);
        assert_eq!(writer.stats.synced_batches.load(Ordering::Relaxed), 2);
        for i in 0..200u32 {
            assert_eq!(
                db.get_cf(cf(&db, CF_META).unwrap(), i.to_be_bytes())
                    .unwrap(),
                Some(vec![1])
            );
        }

        // FIFO: a later delete overrides an earlier put queued without waiting.
        writer
            .submit(WriteReq {
                ops: vec![Op::Put {
                    cf: CF_META,
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                }],
                sync: false,
                done: None,
            })
            .unwrap();
        writer
            .write(
                vec![Op::Delete {
                    cf: CF_META,
                    key: b"k".to_vec(),
                }],
                true,
            )
            .await
            .unwrap();
        assert_eq!(db.get_cf(cf(&db, CF_META).unwrap(), b"k").unwrap(), None);
        assert_eq!(
            db.get_cf(cf(&db, CF_META).unwrap(), 7u32.to_be_bytes())
                .unwrap(),
            Some(vec![1])
        );

        writer.stop();
        assert!(writer.write(vec![], true).await.is_err());
        assert_eq!(Arc::strong_count(&db), 1, "writer thread released the db");
    }
}
