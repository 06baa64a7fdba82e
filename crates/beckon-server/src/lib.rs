//! Beckon's server: the only place that knows HTTP, WebSocket and the JSON wire shapes.
//!
//! [`app`] builds the router from an [`AppState`] (tests call it without a socket);
//! [`start`] starts the background parts (engine shards with their timers, the group-commit
//! writer) and [`Server::serve`] runs until the shutdown future resolves, then flushes.

pub mod clock;
pub mod edge;
pub mod error;
pub mod ids;
pub mod intake;
pub mod limits;
pub mod routes;
pub mod shard;
pub mod sites;
pub mod wire;
pub mod writer;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use beckon_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::limits::Limits;
use crate::shard::{IDLE_EVICT, ShardMsg, Shards};
use crate::sites::Sites;
use crate::writer::Writer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The sites and their engines.
    pub sites: Sites,
    /// The engine shards.
    pub shards: Shards,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Serve the demo shop at `/`.
    pub demo_shop: bool,
    /// Cancelled when the server shuts down; connection loops select on it.
    pub shutdown: CancellationToken,
    /// Every bound the server keeps.
    pub limits: Limits,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Engine shards (default: one per core).
    pub shards: usize,
    /// Serve the demo shop at `/`.
    pub demo_shop: bool,
    /// Every bound the server keeps.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shards: std::thread::available_parallelism().map_or(2, |n| n.get()),
            demo_shop: false,
            limits: Limits::default(),
        }
    }
}

/// A started server: its state and background tasks.
pub struct Server {
    /// Shared state.
    pub state: AppState,
    tasks: Vec<JoinHandle<()>>,
    writer: JoinHandle<()>,
}

/// Loads the sites, starts the writer and the shards, and resumes the sessions that were live
/// when the server last stopped (their timers are re-armed).
pub async fn start(store: Arc<dyn Store>, options: Options) -> Result<Server, String> {
    let sites = Sites::load(store.as_ref()).await?;
    let shutdown = CancellationToken::new();
    let (writer, writer_task) = Writer::start(store.clone());
    let (shards, tasks) = Shards::start(options.shards, store.clone(), writer, shutdown.clone());
    let since = clock::now().plus_ms(-(IDLE_EVICT.as_millis() as i64));
    let active = store
        .active_visitors(since)
        .await
        .map_err(|e| e.to_string())?;
    for record in active {
        if let Some(site) = sites.get(record.site.as_str()) {
            let visitor = record.visitor.clone();
            shards
                .send(&visitor, ShardMsg::Resume(site, Box::new(record)))
                .await?;
        }
    }
    Ok(Server {
        state: AppState {
            sites,
            shards,
            store,
            demo_shop: options.demo_shop,
            shutdown,
            limits: options.limits,
        },
        tasks,
        writer: writer_task,
    })
}

/// The router.
pub fn app(state: AppState) -> Router {
    use routes::*;
    let mut router = Router::new()
        .route("/v1/events", post(events::post).options(events::preflight))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/conversions", post(server_events::conversion))
        .route("/v1/track", post(server_events::track))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/widget.js", get(assets::widget));
    if state.demo_shop {
        router = router
            .route("/", get(assets::shop_index))
            .route("/{*path}", get(assets::shop_file));
    }
    router
        .layer(DefaultBodyLimit::max(wire::MAX_BODY_BYTES))
        // The widget travels gzipped (its budget is counted that way), and so do the shop's pages.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

impl Server {
    /// Serves on `listener` until `shutdown` resolves, then stops the shards and waits for the
    /// writer to flush everything already accepted.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let token = self.state.shutdown.clone();
        let router = app(self.state.clone());
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                token.cancel();
            })
            .await;
        self.state.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        drop(self.state);
        let _ = self.writer.await;
        result
    }
}
