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

    /// Writes `batch` durably; resolves once it is committed.
    pub async fn commit(&self, batch: WriteBatch) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((batch, done))
            .await
            .map_err(|_| "the writer has stopped".to_owned())?;
        wait.await
            .map_err(|_| "the writer has stopped".to_owned())?
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
        let result = store.commit(&batch).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, batches = waiting.len(), "group commit failed");
            e.to_string()
        });
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}
