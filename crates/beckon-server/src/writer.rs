//! Group commit: many shards' writes, one transaction, one sync.
//!
//! Every batch a client sends is acknowledged only after it is on disk. Syncing once per batch
//! would cap throughput at the disk's sync rate; instead the writer takes everything queued
//! while the previous transaction was syncing and commits it together.

use std::sync::Arc;

use beckon_store::{Store, WriteBatch};
use tokio::sync::{mpsc, oneshot};

/// The most batches merged into one transaction.
pub const MAX_GROUP: usize = 512;
/// Batches that may wait for the writer before senders are slowed down.
pub const QUEUE: usize = 4096;

type Job = (WriteBatch, oneshot::Sender<Result<(), String>>);

/// A handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer. It stops once every handle is dropped and the queue is drained, so
    /// shutting down flushes everything already accepted.
    pub fn start(store: Arc<dyn Store>) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, rx));
        (Writer { tx }, task)
    }

    /// Queues `batch`; the returned future resolves once it is committed. Batches are
    /// committed in the order they are queued, so a shard that queues its writes in the order
    /// it applied them never lets an older snapshot of a visitor overwrite a newer one.
    pub async fn enqueue(
        &self,
        batch: WriteBatch,
    ) -> impl std::future::Future<Output = Result<(), String>> + use<> {
        let (done, wait) = oneshot::channel();
        let queued = self.tx.send((batch, done)).await.is_ok();
        async move {
            if !queued {
                return Err("the writer has stopped".to_owned());
            }
            wait.await
                .map_err(|_| "the writer has stopped".to_owned())?
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>) {
    while let Some((first, done)) = rx.recv().await {
        let mut batch = first;
        let mut waiting = vec![done];
        while waiting.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok((more, done)) => {
                    batch.append(more);
                    waiting.push(done);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let result = store.commit(&batch).await.map(|_| ()).map_err(|e| {
            crate::metrics::commit_failed();
            tracing::error!(error = %e, batches = waiting.len(), "group commit failed");
            e.to_string()
        });
        crate::metrics::commit_seconds(started.elapsed());
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}
