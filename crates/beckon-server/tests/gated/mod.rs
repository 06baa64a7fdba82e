//! SQLite behind two switches, for the tests of what the socket does when storage misbehaves:
//! a closed gate makes reading a visitor hang until it opens (a shard stuck on it, its queue
//! filling up), and `fail_commits` makes every group commit fail; and a server over it whose
//! state the test can reach (to fill a shard's queue).
#![allow(dead_code)]

use std::sync::Arc;

use beckon_server::limits::Limits;
use beckon_server::{AppState, Options};
use beckon_store::faults::{FaultHandle, Faulty};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{PATIENCE, Site, install, memory_store};

/// A server over a [`Gated`] store on a real socket, with its state at hand.
pub struct GatedServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's state.
    pub state: AppState,
    /// The store's switches.
    pub store: Arc<Gated>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl GatedServer {
    /// Serves `sites` under `limits` with two shards. The listener is bound before this
    /// returns, so a client's connection waits in the backlog until the server accepts it.
    pub async fn start(sites: &[Site], limits: Limits) -> GatedServer {
        let inner = memory_store().await;
        for site in sites {
            install(inner.as_ref(), site).await;
        }
        let faulty = Faulty::new(inner);
        let store = Arc::new(Gated {
            faults: faulty.handle(),
        });
        let options = Options {
            shards: 2,
            limits,
            ..Options::default()
        };
        let server = beckon_server::start(Arc::new(faulty), options)
            .await
            .expect("server starts");
        let state = server.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        GatedServer {
            base,
            state,
            store,
            stop: Some(stop),
            task,
        }
    }

    /// Opens the gate, stops the server and waits until it has flushed.
    pub async fn shutdown(mut self) {
        self.store.open_gate();
        self.store.fail_commits(false);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("the server stops within the bound")
            .expect("the server task does not panic")
            .expect("serve returns Ok");
    }
}

/// A store with switches: the real store in [`Faulty`], steered through its handle.
pub struct Gated {
    faults: FaultHandle,
}

impl Gated {
    /// Reading a visitor hangs from now on.
    pub fn close_gate(&self) {
        self.faults.hold_reads();
    }

    /// Reading a visitor answers again (the reads that hung go on).
    pub fn open_gate(&self) {
        self.faults.release_reads();
    }

    /// How many visitor reads have waited at the closed gate so far.
    pub fn parked(&self) -> usize {
        self.faults.held_reads()
    }

    /// Commits fail (or work again).
    pub fn fail_commits(&self, fail: bool) {
        self.faults.fail_every_commit(fail);
    }
}
