//! Beckon's server: the only place that knows HTTP, WebSocket and the JSON wire shapes.
//!
//! [`app`] builds the router from an [`AppState`] (tests call it without a socket);
//! [`start`] starts the background parts (engine shards with their timers, the group-commit
//! writer) and [`Server::serve`] runs until the shutdown future resolves, then drains the
//! requests in flight and flushes.

pub mod backtest;
pub mod body;
pub mod chat;
pub mod chat_context;
pub mod clock;
pub mod edge;
pub mod error;
pub mod forward;
pub mod greet;
pub mod ids;
pub mod intake;
pub mod lead_capture;
pub mod limits;
pub mod liveness;
pub mod metrics;
pub mod news;
pub mod origins;
pub mod placement;
pub mod preview;
pub mod prune;
pub mod refusals;
pub mod replay;
pub mod routes;
pub mod serve;
pub mod shard;
pub mod shared_limit;
pub mod sites;
pub mod throttle;
pub mod to_desk;
pub mod token;
pub mod visit;
pub mod wire;
pub mod wire_chat;
pub mod wire_message;
pub mod writer;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use beckon_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody, TimeoutLayer};

use crate::clock::Clock;
use crate::limits::Limits;
use crate::liveness::Liveness;
use crate::shard::{IDLE_EVICT, ShardConfig, ShardMsg, Shards};
use crate::sites::Sites;
use crate::throttle::Throttle;
use crate::token::Tokens;
use crate::writer::Writer;

/// What every handler can reach: one shared [`Shared`], so that a copy (one per request and
/// one per open socket's task) is a pointer.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The server's shared state, reached through [`AppState`].
pub struct Shared {
    /// The sites and their engines.
    pub sites: Sites,
    /// The engine shards.
    pub shards: Shards,
    /// The group-commit writer.
    pub writer: Writer,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Visitor tokens.
    pub tokens: Tokens,
    /// The clock.
    pub clock: Clock,
    /// Serve the demo shop at `/`.
    pub demo_shop: bool,
    /// Cancelled when the server shuts down; connection loops select on it.
    pub shutdown: CancellationToken,
    /// Every bound the server keeps.
    pub limits: Limits,
    /// The rate limits per client address and per site.
    pub throttle: Throttle,
    /// Whether the shards and the writer still run (for `/readyz`).
    pub liveness: Liveness,
    /// The open WebSockets, counted per visitor.
    pub sockets: routes::ws::Sockets,
    /// Rule previews for the editor, served to the widget in a frame.
    pub previews: preview::Previews,
    /// The origins each site's events came from, for the install check.
    pub origins: origins::Origins,
    /// The help desk, for the chat.
    pub desk: Option<beckon_agent::Desk>,
    /// Which node serves each visitor.
    pub placement: placement::Placement,
    /// The client that forwards to other nodes.
    pub forwarder: reqwest::Client,
    /// The bus to the other nodes, in a cluster.
    pub bus: Option<beckon_cluster::Bus>,
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
    /// The clock (tests use tokio's, to run timers on paused time).
    pub clock: Clock,
    /// How often the store is asked for changed sites.
    pub watch_sites: std::time::Duration,
    /// The help desk the chat's frames go to (none: the chat answers that it is not
    /// available).
    pub desk: Option<beckon_agent::Desk>,
    /// Woken after every commit that captured a lead, so that the outbox's worker delivers it
    /// at once instead of at its next look.
    pub outbox_kick: Option<Arc<tokio::sync::Notify>>,
    /// The cluster's views, when this node is one of several (none: it serves every
    /// visitor).
    pub cluster: Option<tokio::sync::watch::Receiver<Arc<beckon_cluster::View>>>,
    /// The bus to the other nodes (with `cluster`): the desk's news, sites changed, the
    /// shared per-site rate limit.
    pub bus: Option<beckon_cluster::Bus>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shards: std::thread::available_parallelism().map_or(2, |n| n.get()),
            demo_shop: false,
            limits: Limits::default(),
            clock: Clock::System,
            watch_sites: sites::WATCH_EVERY,
            desk: None,
            outbox_kick: None,
            cluster: None,
            bus: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store failed.
    #[error("storage: {0}")]
    Store(#[from] beckon_store::StoreError),
    /// The shards stopped while resuming.
    #[error(transparent)]
    Shard(#[from] shard::BatchError),
    /// The desk could not pick up its open conversations.
    #[error("the desk: {0}")]
    Desk(#[from] beckon_agent::desk::DeskError),
}

/// A started server: its state and background tasks.
pub struct Server {
    /// Shared state.
    pub state: AppState,
    tasks: Vec<JoinHandle<()>>,
    writer: JoinHandle<()>,
    /// Stops the writer once the shards have ended.
    writer_stop: CancellationToken,
}

/// Loads the sites, starts the writer and the shards, and resumes the sessions that were live
/// when the server last stopped (their timers are re-armed).
pub async fn start(store: Arc<dyn Store>, options: Options) -> Result<Server, StartError> {
    metrics::install();
    // The bot patterns and uap-core's regexes are compiled before the first visitor, off the
    // async threads, not in the first visitor's request.
    // (They are vendored and compiled by beckon-bots' tests: failing here is a build's bug.)
    tokio::task::spawn_blocking(beckon_bots::warm)
        .await
        .expect("the vendored bot patterns and uap-core regexes compile");
    let server_key = store.server_key().await?;
    let tokens = Tokens::new(server_key);
    let placement = placement::Placement::new(options.cluster.clone(), &server_key);
    let sites = Sites::load(store.as_ref()).await?;
    let shutdown = CancellationToken::new();
    let clock = options.clock.clone();
    let writer_stop = CancellationToken::new();
    let (writer, writer_task) = Writer::start(
        store.clone(),
        writer_stop.clone(),
        options.outbox_kick.clone(),
    );
    let shard_count = options.shards.max(1);
    let config = ShardConfig {
        store: store.clone(),
        writer: writer.clone(),
        sites: sites.clone(),
        clock: clock.clone(),
        max_live: options
            .limits
            .max_live_sessions
            .div_ceil(shard_count)
            .max(1),
        desk: options.desk.clone(),
        placement: placement.clone(),
    };
    let (shards, mut tasks) = Shards::start(shard_count, config, shutdown.clone());
    tasks.push(tokio::spawn(sites::watch(
        sites.clone(),
        store.clone(),
        options.watch_sites,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(prune::run(
        store.clone(),
        clock.clone(),
        options.limits.retention,
        shutdown.clone(),
    )));
    if let Some(bus) = options.bus.clone() {
        let stop = shutdown.clone();
        let runner = bus.clone();
        tasks.push(tokio::spawn(async move { runner.run(stop).await }));
        if let Some(desk) = &options.desk {
            desk.set_relay(Arc::new(news::BusRelay(bus.clone())));
        }
        tasks.push(tokio::spawn(news::listen(
            bus,
            options.desk.clone(),
            sites.clone(),
            store.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(desk) = options.desk.clone() {
        // Each site's open conversations are picked up by the node its desk is placed on
        // (every site, alone), and follow it when the view changes.
        desk.resume_where(|site| placement.desk_is_here(site))
            .await?;
        if let Some(views) = placement.watch() {
            tasks.push(tokio::spawn(news::follow_views(
                desk.clone(),
                placement.clone(),
                views,
                shutdown.clone(),
            )));
        }
        let stop = shutdown.clone();
        let clock = desk.clone();
        tasks.push(tokio::spawn(async move {
            clock.run(stop.cancelled_owned()).await;
        }));
        tasks.push(tokio::spawn(chat::invite_tabs(
            desk,
            shards.clone(),
            shutdown.clone(),
        )));
    }
    let since = clock.now().plus_ms(-(IDLE_EVICT.as_millis() as i64));
    let active = store.active_visitors(since).await?;
    if active.undecodable > 0 {
        tracing::warn!(
            visitors = active.undecodable,
            "stored visitor states could not be read; those visitors start afresh"
        );
        for _ in 0..active.undecodable {
            metrics::undecodable_state();
        }
    }
    if let Some(mut views) = placement.watch() {
        // The view the visitors resumed below are judged by: a later one is compared with it.
        let first = views.borrow_and_update().clone();
        tasks.push(tokio::spawn(disown_on_change(
            views,
            first,
            Takeover {
                store: store.clone(),
                sites: sites.clone(),
                clock: clock.clone(),
                placement: placement.clone(),
            },
            shards.clone(),
            shutdown.clone(),
        )));
    }
    for record in active.records {
        // In a cluster, each node resumes only the visitors it owns.
        if sites.get_id(&record.site).is_some() && placement.is_mine(&record.site, &record.visitor)
        {
            let visitor = record.visitor.clone();
            shards
                .send(&visitor, ShardMsg::Resume(Box::new(record)))
                .await?;
        }
    }
    let liveness = Liveness::new(
        tasks.iter().map(JoinHandle::abort_handle).collect(),
        writer_task.abort_handle(),
    );
    let state = AppState(Arc::new(Shared {
        sites,
        shards,
        writer,
        store,
        tokens,
        clock,
        demo_shop: options.demo_shop,
        shutdown,
        throttle: {
            let throttle = Throttle::new(
                &options.limits,
                placement.clustered().then(|| placement.secret()),
            );
            match &options.bus {
                Some(bus) => throttle.shared(bus),
                None => throttle,
            }
        },
        liveness,
        limits: options.limits,
        sockets: Default::default(),
        previews: Default::default(),
        origins: Default::default(),
        desk: options.desk.clone(),
        placement,
        forwarder: forward::client(),
        bus: options.bus.clone(),
    }));
    // Taken here, before anything can open a conversation on this server, so none is missed.
    if let Some(lifecycle) = options.desk.as_ref().and_then(|d| d.take_lifecycle()) {
        tokio::spawn(chat::tell_the_engine(state.clone(), lifecycle));
    }
    Ok(Server {
        state,
        tasks,
        writer: writer_task,
        writer_stop,
    })
}

/// What a node needs to take over a dead node's visitors: their stored states, read again.
struct Takeover {
    store: Arc<dyn Store>,
    sites: Sites,
    clock: Clock,
    placement: placement::Placement,
}

/// Tells the shards whenever the cluster's view changes, so that visitors another node now
/// owns leave this one; and, when a node left the view, resumes the active visitors it owned
/// that are now this node's (their timers re-armed, as at start), with one read of the store.
async fn disown_on_change(
    mut views: tokio::sync::watch::Receiver<Arc<beckon_cluster::View>>,
    mut previous: Arc<beckon_cluster::View>,
    takeover: Takeover,
    shards: Shards,
    stop: CancellationToken,
) {
    // Whether the last takeover's read failed: it is tried again shortly.
    let mut retry = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = views.changed() => {
                if changed.is_err() {
                    return;
                }
                shards.disown().await;
            }
            () = tokio::time::sleep(std::time::Duration::from_secs(1)), if retry => {}
        }
        let current = views.borrow_and_update().clone();
        // Queued after the shards let go, so that each shard sees them in that order.
        let taken = tokio::select! {
            () = stop.cancelled() => return,
            taken = take_over(&takeover, &shards, &previous, &current) => taken,
        };
        retry = taken.is_err();
        if !retry {
            previous = current;
        }
    }
}

/// Resumes the active visitors whose owner in `previous` is no longer in `current` and that
/// are this node's now. Nothing is read when no node left. A read that fails is logged, and
/// the caller tries again, still from `previous` (the shard ignores a resume of a visitor it
/// holds live, so nothing is resumed twice).
async fn take_over(
    takeover: &Takeover,
    shards: &Shards,
    previous: &beckon_cluster::View,
    current: &beckon_cluster::View,
) -> Result<(), ()> {
    // The node's own earlier lease (it rejoined, or had no view yet) is not a dead node: its
    // visitors were resumed at start, or are live here.
    let gone = |owner: &beckon_store::cluster::NodeLease| {
        *owner != previous.me && !current.nodes.contains(owner)
    };
    if !previous.nodes.iter().any(gone) {
        return Ok(());
    }
    let since = takeover
        .clock
        .now()
        .plus_ms(-(IDLE_EVICT.as_millis() as i64));
    let active = match takeover.store.active_visitors(since).await {
        Ok(active) => active,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the visitors of a node that left; trying again");
            return Err(());
        }
    };
    let mut resumed = 0usize;
    for record in active.records {
        let (site, visitor) = (&record.site, &record.visitor);
        let was_a_dead_node_s = previous
            .owner(site.as_str(), visitor.as_str())
            .is_some_and(gone);
        if was_a_dead_node_s
            && takeover.placement.is_mine(site, visitor)
            && takeover.sites.get_id(site).is_some()
        {
            let visitor = visitor.clone();
            if shards
                .send(&visitor, ShardMsg::Resume(Box::new(record)))
                .await
                .is_err()
            {
                return Ok(()); // the shards are stopping
            }
            resumed += 1;
        }
    }
    tracing::info!(
        visitors = resumed,
        "took over the visitors of a node that left"
    );
    Ok(())
}

/// The router, with the edge's layers. From the outside in: CORS (so that every answer to an
/// allowed origin, a refusal too, is readable), compression, JSON refusals, then, for all but
/// the probes, the per-address rate limit, the request timeout and the body timeout.
pub fn app(state: AppState) -> Router {
    use routes::*;
    let limits = &state.limits;
    let mut api = Router::new()
        .route("/v1/events", post(events::post))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/chat", post(chat::post).get(chat::poll))
        .route("/v1/chat/config", get(chat::config))
        .route(
            "/v1/chat/files",
            post(chat::upload)
                .route_layer(DefaultBodyLimit::max(beckon_agent::files::MAX_FILE_BYTES)),
        )
        .route("/v1/chat/files/{id}", get(chat::file))
        .route("/v1/conversions", post(server_events::conversion))
        .route("/v1/track", post(server_events::track))
        .route("/metrics", get(crate::metrics::route))
        .route("/widget.js", get(assets::widget))
        .route("/chat.js", get(assets::chat))
        .route("/preview/{token}/v1/events", post(crate::preview::events))
        .route("/preview/{token}/v1/ws", get(crate::preview::socket));
    if state.demo_shop {
        api = api
            .route("/", get(assets::shop_index))
            .route("/{*path}", get(assets::shop_file));
    }
    let body_timeout = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .map_request(|req: Request<TimeoutBody<Body>>| req.map(Body::new));
    api = api
        .fallback(refusals::not_found)
        .layer(DefaultBodyLimit::max(wire::MAX_BODY_BYTES))
        .layer(body_timeout.clone())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    if let Some(per_address) = state.throttle.layer() {
        api = api.layer(per_address);
    }
    // The nodes' own routes: only a node of this installation is answered (refused before
    // its body is read), and its client was limited by the node it reached first.
    let nodes = Router::new()
        .route(
            server_events::CONVERSATION_NEWS,
            post(server_events::conversation_news),
        )
        .route(crate::chat::DESK_FRAME, post(chat::carried))
        .layer(DefaultBodyLimit::max(wire::MAX_BODY_BYTES))
        .layer(body_timeout)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            placement::nodes_only,
        ));
    // A load balancer probes from one address, often; the probes are never throttled.
    let probes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    api.merge(probes)
        .merge(nodes)
        .layer(axum::middleware::map_response_with_state(
            limits.retry_after,
            refusals::as_json,
        ))
        // The widget travels gzipped (its budget is counted that way), and so do the shop's pages.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(events::cors(state.sites.clone()))
        .with_state(state)
}

impl Server {
    /// Serves on `listener` until `shutdown` resolves, then shuts down in order: stop
    /// accepting; let the HTTP requests in flight finish (at most `drain_timeout`); cancel the
    /// shutdown token (WebSockets close with 1001, the shards stop); wait for the writer to
    /// flush everything already accepted.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(listener, Router::new(), shutdown).await
    }

    /// As [`Server::serve`], with `extra` routes beside the server's own (the admin API and
    /// the dashboard, which bring their own layers). `extra` must have no fallback.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        extra: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.state.limits.clone();
        tokio::spawn(
            self.state
                .throttle
                .clone()
                .sweep(self.state.shutdown.clone()),
        );
        let router = app(self.state.clone()).merge(extra);
        let result = serve::run(listener, router, &limits, shutdown).await;
        self.stop().await;
        result
    }

    /// Stops the background parts: the shards and the watchers stop, then the writer flushes
    /// everything already accepted.
    pub async fn stop(self) {
        self.state.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        drop(self.state);
        // Nothing queues writes once the shards have ended; what is queued is committed.
        self.writer_stop.cancel();
        let _ = self.writer.await;
        tracing::info!("stopped: everything accepted is stored");
    }
}
