//! What the nodes of a cluster tell each other over the bus (`beckon_cluster::Bus`), and where
//! each site's desk runs.
//!
//! Two topics, both news of something already stored:
//! - [`DESK`]: what a site's desk told its watchers (a message stored, a conversation changed,
//!   the board, an invitation, saved settings), for the tabs and consoles on every other node;
//! - [`SITES`]: a site's rules or policy were saved; every node swaps in the new engines now
//!   (each also polls the store, so a lost note costs seconds).
//!
//! When notes may have been missed (the subscription broke, or this node fell behind), every
//! tab here syncs again, every console reloads, and the sites are read again.
//!
//! A site's desk runs on one node ([`crate::placement::Placement::desk`]); [`follow_views`]
//! lets go of the sites that moved away and picks up those that came here.

use std::sync::Arc;

use beckon_agent::desk::{Desk, News, Relay};
use beckon_cluster::{Bus, Heard, View};
use beckon_store::Store;
use tokio::sync::{broadcast::error::RecvError, watch};
use tokio_util::sync::CancellationToken;

use crate::placement::{DESK as DESK_KEY, Placement};
use crate::sites::Sites;

/// The desk's news.
pub const DESK: &str = "desk";
/// A site's rules or policy changed.
pub const SITES: &str = "sites";

/// The bus's namespace for an installation: every node of it derives the same from the
/// installation's key, and nothing of the key can be read from it.
pub fn namespace(server_key: &[u8; 32]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(server_key).expect("HMAC takes any key");
    mac.update(b"beckon: the bus between nodes");
    mac.finalize().into_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hands the desk's news to the bus.
pub struct BusRelay(pub Bus);

impl Relay for BusRelay {
    fn relay(&self, news: &News) {
        self.0.publish(DESK, news);
    }
}

/// Tells the other nodes that sites changed in the store.
pub fn sites_changed(bus: Option<&Bus>) {
    if let Some(bus) = bus {
        bus.publish(SITES, &serde_json::Value::Null);
    }
}

/// Acts on what the other nodes tell, until `shutdown`.
pub async fn listen(
    bus: Bus,
    desk: Option<Desk>,
    sites: Sites,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) {
    let mut heard = bus.listen();
    loop {
        let next = tokio::select! {
            next = heard.recv() => next,
            () = shutdown.cancelled() => return,
        };
        match next {
            Ok(Heard::Note(note)) => match note.topic.as_str() {
                DESK => match (&desk, serde_json::from_value::<News>(note.body.clone())) {
                    (Some(desk), Ok(news)) => desk.hear(news).await,
                    (None, _) => {}
                    (_, Err(e)) => {
                        tracing::warn!(from = %note.from, error = %e, "desk news did not parse");
                    }
                },
                SITES => refresh(&sites, store.as_ref()).await,
                other => tracing::debug!(topic = other, "a note of no topic known here"),
            },
            Ok(Heard::Resync) | Err(RecvError::Lagged(_)) => {
                if let Some(desk) = &desk {
                    desk.resync();
                }
                refresh(&sites, store.as_ref()).await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn refresh(sites: &Sites, store: &dyn Store) {
    if let Err(e) = sites.refresh(store).await {
        tracing::warn!(error = %e, "cannot read the sites again; the poll will");
    }
}

/// How often the desk lets go of what it holds of sites placed elsewhere, between views: a
/// request that was already under way when the view changed may have touched one.
const LET_GO_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps each site's desk where the view places it: on every new view, the desk lets go of the
/// sites now placed on another node and picks up the open conversations of those placed here
/// (and every [`LET_GO_EVERY`] lets go again, of anything a late request left). A pick-up
/// that fails is tried again shortly.
pub async fn follow_views(
    desk: Desk,
    placement: Placement,
    mut views: watch::Receiver<Arc<View>>,
    shutdown: CancellationToken,
) {
    let mut retry = false;
    // The view the desks were last picked up by: only sites that came here since are picked up
    // (those that stayed run here already, and a pick-up must never race their closes).
    let mut previous = views.borrow().clone();
    let mut sweep = tokio::time::interval(LET_GO_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = views.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = sweep.tick() => {
                let stray = desk.let_go_where(|site| placement.desk_is_here(site));
                if !stray.is_empty() {
                    tracing::info!(sites = stray.len(), "let go of desks a late request had touched");
                }
                continue;
            }
            () = tokio::time::sleep(std::time::Duration::from_secs(1)), if retry => {}
        }
        let current = views.borrow_and_update().clone();
        let gone = desk.let_go_where(|site| placement.desk_is_here(site));
        if !gone.is_empty() {
            tracing::info!(
                sites = gone.len(),
                "the desks of sites moved to other nodes"
            );
        }
        let was_here = |site: &beckon_engine::SiteId| {
            beckon_cluster::rendezvous::owner(site.as_str(), DESK_KEY, &previous.nodes)
                == Some(&previous.me)
        };
        match desk
            .resume_where(|site| placement.desk_is_here(site) && !was_here(site))
            .await
        {
            Ok(n) => {
                retry = false;
                previous = current;
                if n > 0 {
                    tracing::info!(
                        conversations = n,
                        "picked up the desks of sites that came here"
                    );
                }
            }
            Err(e) => {
                retry = true;
                tracing::warn!(error = %e, "cannot pick up the desks of sites that came here; trying again");
            }
        }
    }
}
