//! Group commit: many shards' writes, one transaction, one sync — and fences, so that a failed
//! write of a visitor is never followed by a later one built on top of it.
//!
//! Every batch a client sends is acknowledged only after it is on disk. Syncing once per batch
//! would cap throughput at the disk's sync rate; instead the writer takes everything queued
//! while the previous transaction was syncing and commits it together.
//!
//! Each job names the (visitor, load generation) pairs whose state it writes. When a group
//! fails, each of its jobs is retried alone, so that one bad job cannot fail the others; a job
//! that still fails *fences* its pairs: every later job of the same pair fails unwritten. The
//! shard that owns the visitor learns of the failure, drops the state from memory and reloads it
//! from the store under a new generation, whose writes pass again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use beckon_store::{CommitReport, Store, StoreError, WriteBatch};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::shard::VisitorKey;

/// The most jobs merged into one transaction.
pub const MAX_GROUP: usize = 512;
/// Jobs that may wait for the writer before senders are slowed down.
pub const QUEUE: usize = 4096;
/// The most fences remembered; a fence is dropped once its visitor is reloaded, so this only
/// bounds visitors that failed and never came back.
pub const MAX_FENCES: usize = 100_000;

/// A visitor's state at one load generation.
pub type Fence = (VisitorKey, u64);

/// Why a write did not happen.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An earlier write of the same visitor state failed; this one was not attempted.
    #[error("an earlier write of this visitor failed")]
    Fenced,
    /// The writer has stopped.
    #[error("the writer has stopped")]
    Stopped,
}

struct Job {
    batch: WriteBatch,
    fences: Vec<Fence>,
    done: oneshot::Sender<Result<CommitReport, WriteError>>,
}

/// A handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer. It stops when `stop` is cancelled (or every handle is dropped),
    /// after committing everything already queued, so shutting down flushes everything
    /// accepted. Cancel `stop` only once nothing more will be queued (the shards have ended).
    pub fn start(
        store: Arc<dyn Store>,
        stop: CancellationToken,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, rx, stop));
        (Writer { tx }, task)
    }

    /// Queues `batch`, which writes the states named by `fences`; the returned future
    /// resolves once it is committed (or refused). Jobs are committed in the order they are
    /// queued, so a shard that queues its writes in the order it applied them never lets an
    /// older snapshot of a visitor overwrite a newer one. An empty batch resolves once every
    /// job queued before it has.
    pub async fn enqueue(
        &self,
        batch: WriteBatch,
        fences: Vec<Fence>,
    ) -> impl std::future::Future<Output = Result<CommitReport, WriteError>> + use<> {
        let (done, wait) = oneshot::channel();
        let queued = self
            .tx
            .send(Job {
                batch,
                fences,
                done,
            })
            .await
            .is_ok();
        async move {
            if !queued {
                return Err(WriteError::Stopped);
            }
            wait.await.map_err(|_| WriteError::Stopped)?
        }
    }

    /// Whether the writer task is still running.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// The fenced states, with their order of arrival for the bound.
#[derive(Default)]
struct Fences {
    by_key: HashMap<VisitorKey, u64>,
    order: VecDeque<Fence>,
}

impl Fences {
    /// Whether any of `fences` is fenced; a fence older than the job's generation is dropped
    /// (the visitor has been reloaded since).
    fn blocks(&mut self, fences: &[Fence]) -> bool {
        let mut blocked = false;
        for (key, generation) in fences {
            match self.by_key.get(key) {
                Some(g) if g == generation => blocked = true,
                Some(g) if g < generation => {
                    self.by_key.remove(key);
                }
                _ => {}
            }
        }
        blocked
    }

    fn add(&mut self, fences: &[Fence]) {
        for fence in fences {
            self.by_key.insert(fence.0.clone(), fence.1);
            self.order.push_back(fence.clone());
        }
        while self.order.len() > MAX_FENCES {
            if let Some((key, generation)) = self.order.pop_front() {
                if self.by_key.get(&key) == Some(&generation) {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    let mut fences = Fences::default();
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => match job {
                Some(job) => job,
                None => break,
            },
            _ = stop.cancelled() => match rx.try_recv() {
                // Stopping: what is queued is still committed, then the writer ends.
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(more) => group.push(more),
                Err(_) => break,
            }
        }
        let jobs: Vec<Job> = group
            .into_iter()
            .filter_map(|job| {
                if fences.blocks(&job.fences) {
                    let _ = job.done.send(Err(WriteError::Fenced));
                    None
                } else {
                    Some(job)
                }
            })
            .collect();
        if jobs.is_empty() {
            continue;
        }
        let mut merged = WriteBatch::default();
        for job in &jobs {
            merged.append(job.batch.clone());
        }
        let started = Instant::now();
        let result = store.commit(&merged).await;
        crate::metrics::commit_seconds(started.elapsed());
        match result {
            Ok(_) => {
                // Each job's own share of the report is not known; what a caller needs is
                // whether it landed.
                for job in jobs {
                    let _ = job.done.send(Ok(CommitReport::default()));
                }
            }
            Err(e) if jobs.len() == 1 => {
                tracing::error!(error = %e, "commit failed");
                crate::metrics::commit_failed();
                let job = jobs.into_iter().next().expect("one job");
                fences.add(&job.fences);
                let _ = job.done.send(Err(e.into()));
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = jobs.len(), "group commit failed; committing its jobs one by one");
                for job in jobs {
                    if fences.blocks(&job.fences) {
                        let _ = job.done.send(Err(WriteError::Fenced));
                        continue;
                    }
                    match store.commit(&job.batch).await {
                        Ok(report) => {
                            let _ = job.done.send(Ok(report));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "commit failed");
                            crate::metrics::commit_failed();
                            fences.add(&job.fences);
                            let _ = job.done.send(Err(e.into()));
                        }
                    }
                }
            }
        }
    }
}
