//! Group commit: many shards' writes, one transaction, one sync — and fences, so that a failed
//! write of a visitor is never followed by a later one built on top of it.
//!
//! Every batch a client sends is acknowledged only after it is on disk. Syncing once per batch
//! would cap throughput at the disk's sync rate; instead the writer takes everything queued
//! while the previous transaction was being written and commits it together. Nor does it wait
//! for the disk: it commits a group with [`Store::commit_unsynced`] and hands it to a syncer,
//! which calls [`Store::sync`] once for every group landed meanwhile and only then answers their
//! jobs, while the writer commits the next group. A sync that fails stops the writer.
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
    /// While merged into a group: how many batches, exposures and visitors it brought.
    sizes: (usize, usize, usize, usize),
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
    ///
    /// The writer runs on a thread of its own, with a single-threaded runtime that nothing else
    /// uses. A commit is a chain of statements, each a hop to the database's thread and back;
    /// woken from that thread, a task of the server's runtime waits behind the socket and shard
    /// tasks queued there at every hop, and the commit (which every acknowledgement waits for)
    /// stretches with the load. Here each hop is answered at once.
    pub fn start(
        store: Arc<dyn Store>,
        stop: CancellationToken,
        kick: Option<Arc<tokio::sync::Notify>>,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        // A thread of Beckon's own rather than `spawn_blocking`: a blocking task that never
        // ends would stop a paused test clock from ever advancing. The returned task ends when
        // the thread does (the sender is dropped then, a panic included).
        let (ended, thread_ended) = oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("beckon-writer".to_owned())
            .spawn(move || {
                let _ended = ended;
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(run(store, rx, stop, kick)),
                    Err(e) => tracing::error!(error = %e, "cannot start the writer's runtime"),
                }
            });
        if let Err(e) = spawned {
            // No thread, no writer: every write fails as `Stopped`, and `/readyz` says so.
            tracing::error!(error = %e, "cannot start the writer's thread");
        }
        let task = tokio::spawn(async move {
            let _ = thread_ended.await;
        });
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
                sizes: (0, 0, 0, 0),
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

/// Moves every job's batch into one, keeping how much each brought so that [`split`] can give
/// it back.
fn merge(jobs: Vec<Job>) -> (Vec<Job>, WriteBatch) {
    let mut merged = WriteBatch::default();
    let jobs = jobs
        .into_iter()
        .map(|mut job| {
            let batch = std::mem::take(&mut job.batch);
            job.sizes = (
                batch.batches.len(),
                batch.exposures.len(),
                batch.visitors.len(),
                batch.leads.len(),
            );
            merged.append(batch);
            job
        })
        .collect();
    (jobs, merged)
}

/// Gives each job back the part of `merged` that [`merge`] took from it.
fn split(jobs: &mut [Job], merged: &mut WriteBatch) {
    let mut batches = std::mem::take(&mut merged.batches).into_iter();
    let mut exposures = std::mem::take(&mut merged.exposures).into_iter();
    let mut visitors = std::mem::take(&mut merged.visitors).into_iter();
    let mut leads = std::mem::take(&mut merged.leads).into_iter();
    for job in jobs {
        let (b, e, v, l) = job.sizes;
        job.batch = WriteBatch {
            batches: batches.by_ref().take(b).collect(),
            exposures: exposures.by_ref().take(e).collect(),
            visitors: visitors.by_ref().take(v).collect(),
            leads: leads.by_ref().take(l).collect(),
        };
    }
}

/// A group (or the jobs of one, retried alone) that the store committed but has not yet synced:
/// its jobs are answered once a sync after it returns.
struct Landed {
    answers: Vec<(
        oneshot::Sender<Result<CommitReport, WriteError>>,
        CommitReport,
    )>,
    leads: bool,
}

/// Groups committed ahead of their sync. The writer goes on committing while the last groups
/// sync; past this many waiting it waits too, so a slow disk slows senders down (and the edge
/// sheds) instead of letting answers pile up.
const PIPELINE: usize = 8;

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Job>,
    stop: CancellationToken,
    kick: Option<Arc<tokio::sync::Notify>>,
) {
    let (landed, to_sync) = mpsc::channel(PIPELINE);
    // Cancelled by the syncer when a sync fails: nothing more is written.
    let broken = CancellationToken::new();
    let syncer = tokio::spawn(sync(store.clone(), to_sync, kick, broken.clone()));
    let mut fences = Fences::default();
    loop {
        let first = tokio::select! {
            biased;
            _ = broken.cancelled() => break,
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
        if let Some(done) = commit_group(store.as_ref(), &mut fences, jobs).await {
            if landed.send(done).await.is_err() {
                break;
            }
        }
    }
    // Every group committed is synced (or failed) before the writer ends; jobs still queued
    // after a failed sync are dropped, which answers them `Stopped`.
    drop(landed);
    let _ = syncer.await;
}

/// Commits `jobs` as one group; when that fails, each alone, fencing the ones that still fail.
/// Failures are answered at once; what landed is returned, to be answered once synced.
async fn commit_group(store: &dyn Store, fences: &mut Fences, jobs: Vec<Job>) -> Option<Landed> {
    let (mut jobs, mut merged) = merge(jobs);
    let started = Instant::now();
    let result = store.commit_unsynced(&merged).await;
    crate::metrics::commit_seconds(started.elapsed());
    if result.is_err() && jobs.len() > 1 {
        split(&mut jobs, &mut merged);
    }
    match result {
        // Each job's own share of the report is not known; what a caller needs is whether it
        // landed.
        Ok(_) => Some(Landed {
            leads: !merged.leads.is_empty(),
            answers: jobs
                .into_iter()
                .map(|job| (job.done, CommitReport::default()))
                .collect(),
        }),
        Err(e) if jobs.len() == 1 => {
            failed(&e);
            let job = jobs.into_iter().next().expect("one job");
            fences.add(&job.fences);
            let _ = job.done.send(Err(e.into()));
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = jobs.len(), "group commit failed; committing its jobs one by one");
            let mut landed = Landed {
                answers: Vec::new(),
                leads: false,
            };
            for job in jobs {
                if fences.blocks(&job.fences) {
                    let _ = job.done.send(Err(WriteError::Fenced));
                    continue;
                }
                match store.commit_unsynced(&job.batch).await {
                    Ok(report) => {
                        landed.leads |= !job.batch.leads.is_empty();
                        landed.answers.push((job.done, report));
                    }
                    Err(e) => {
                        failed(&e);
                        fences.add(&job.fences);
                        let _ = job.done.send(Err(e.into()));
                    }
                }
            }
            (!landed.answers.is_empty()).then_some(landed)
        }
    }
}

/// Syncs what landed, each sync covering every group that landed before it, and answers their
/// jobs in the order they landed. A failed sync fails every job waiting for it and every one
/// after, and stops the writer: what the disk did with those commits is unknown, and a retried
/// sync may report success over pages it dropped.
async fn sync(
    store: Arc<dyn Store>,
    mut to_sync: mpsc::Receiver<Landed>,
    kick: Option<Arc<tokio::sync::Notify>>,
    broken: CancellationToken,
) {
    while let Some(first) = to_sync.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = to_sync.try_recv() {
            waiting.push(more);
        }
        let started = Instant::now();
        let result = store.sync().await;
        crate::metrics::sync_seconds(started.elapsed());
        match result {
            Ok(()) => {
                if waiting.iter().any(|l| l.leads) {
                    if let Some(k) = &kick {
                        k.notify_one();
                    }
                }
                for landed in waiting {
                    for (done, report) in landed.answers {
                        let _ = done.send(Ok(report));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sync the database: the writer stops, and nothing more is acknowledged until Beckon is restarted");
                crate::metrics::sync_failed();
                broken.cancel();
                let answer = |landed: Landed| {
                    for (done, _) in landed.answers {
                        let _ = done.send(Err(WriteError::Store(e.clone())));
                    }
                };
                waiting.into_iter().for_each(answer);
                while let Some(landed) = to_sync.recv().await {
                    answer(landed);
                }
                return;
            }
        }
    }
}

/// Logs and counts a job's failure. A stale write is not an error of this node: another node
/// took the visitor over, and the fence held.
fn failed(e: &StoreError) {
    if matches!(e, StoreError::Stale { .. }) {
        tracing::info!(error = %e, "write refused: the visitor has another owner");
        crate::metrics::stale_write();
    } else {
        tracing::error!(error = %e, "commit failed");
        crate::metrics::commit_failed();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use beckon_store::faults::Faulty;
    use beckon_store_sqlite::SqliteStore;

    use super::*;

    /// Waits until `done` holds, or fails the test after a few seconds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..1_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{what} never happened");
    }

    /// A sync makes durable only the commits that returned before it began: a group that lands
    /// while a sync runs waits for the next one, and the writer commits it meanwhile.
    #[tokio::test]
    async fn an_answer_waits_for_a_sync_begun_after_its_commit() {
        let faulty = Arc::new(Faulty::new(Arc::new(
            SqliteStore::in_memory().await.expect("a store"),
        )));
        let faults = faulty.handle();
        faults.hold_syncs();
        let (writer, task) = Writer::start(faulty.clone(), CancellationToken::new(), None);
        let first = tokio::spawn(writer.enqueue(WriteBatch::default(), Vec::new()).await);
        until("the first sync", || faults.held_syncs() == 1).await;
        let second = tokio::spawn(writer.enqueue(WriteBatch::default(), Vec::new()).await);
        until("the second commit, during the sync", || {
            faults.commits() == 2
        })
        .await;
        assert!(
            !first.is_finished() && !second.is_finished(),
            "nothing is synced yet"
        );
        faults.release_syncs();
        first.await.expect("answered").expect("committed");
        second.await.expect("answered").expect("committed");
        assert_eq!(faults.syncs(), 2, "the second commit had a sync of its own");
        drop(writer);
        task.await.expect("the writer ends");
    }
}
